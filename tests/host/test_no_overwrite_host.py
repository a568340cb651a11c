"""Queueing a trainer again never destroys a result: Train Adapters and Train Domain Model write to the next free
``<name>_00001`` when ``<name>`` or its checkpoint exists (the earlier files stay byte for byte), and Save Training
Data picks the next free folder. (Cancel and resume under the same name: tests/host/test_kinds_host.py.)"""

import hashlib
import os

import torch

from devtools.tiny_models import SD_TEXT_DIM, WAN_TEXT_DIM


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _train_simda(host, tiny, name, steps=2, seed=0):
    g = torch.Generator().manual_seed(0)
    clips = torch.randn(4, 4, 4, 4, generator=g)
    positive = [[torch.randn(1, 8, SD_TEXT_DIM, generator=g), {}]]
    return host.call("VA_TrainAdapter", tiny.load("tiny_sd15_prior.safetensors"), {"samples": clips}, positive,
                     "simda", 0, steps, 1e-3, 1, seed, "simda", 1, name)


def test_train_adapters_again_keeps_the_first_result(host, tiny):
    import folder_paths

    folder = folder_paths.get_folder_paths("video_adapters")[0]
    first = _train_simda(host, tiny, "test/keep_me")
    assert first[1] == "test/keep_me.safetensors"
    files = {f: _digest(os.path.join(folder, "test", f)) for f in ("keep_me.safetensors",
                                                                   "keep_me_checkpoint.safetensors")}
    second = _train_simda(host, tiny, "test/keep_me", seed=1)
    assert second[1] == "test/keep_me_00001.safetensors"
    assert "saved as test/keep_me_00001.safetensors" in second[3]
    third = _train_simda(host, tiny, "test/keep_me", seed=2)
    assert third[1] == "test/keep_me_00002.safetensors"
    for f, digest in files.items():  # the first run's model and checkpoint are untouched
        assert _digest(os.path.join(folder, "test", f)) == digest, f
    assert os.path.exists(os.path.join(folder, "test", "keep_me_00001_checkpoint.safetensors"))


def test_a_lone_checkpoint_also_keeps_its_name_taken(host, tiny):
    """An interrupted run's checkpoint is a result too: a new run (not resuming it) takes the next name."""
    import folder_paths

    folder = folder_paths.get_folder_paths("video_adapters")[0]
    first = _train_simda(host, tiny, "test/lone")
    os.remove(os.path.join(folder, first[1]))  # as if the run had been cancelled: only the checkpoint is left
    ckpt = os.path.join(folder, "test", "lone_checkpoint.safetensors")
    digest = _digest(ckpt)
    again = _train_simda(host, tiny, "test/lone", seed=3)
    assert again[1] == "test/lone_00001.safetensors" and _digest(ckpt) == digest


def test_train_domain_model_again_keeps_the_first_result(host, tiny):
    import folder_paths

    folder = folder_paths.get_folder_paths("video_adapters")[0]
    prior = tiny.load("tiny_wan_prior.safetensors")
    g = torch.Generator().manual_seed(0)
    clips = {"samples": torch.randn(2, 16, 2, 4, 4, generator=g)}
    captions = [[torch.randn(1, 8, WAN_TEXT_DIM, generator=g), {}]]

    def train(seed):
        return host.call("VA_TrainDomainModel", prior, clips, captions, "xs", 2, 1e-3, 1, seed, 0.0, 1,
                         "test/domain_keep")

    first = train(0)
    digest = _digest(os.path.join(folder, first[1]))
    second = train(1)
    assert (first[1], second[1]) == ("test/domain_keep.safetensors", "test/domain_keep_00001.safetensors")
    assert _digest(os.path.join(folder, first[1])) == digest


def test_save_training_data_again_keeps_the_first_folder(host, tiny):
    import folder_paths

    prior = tiny.load("tiny_wan_prior.safetensors")
    g = torch.Generator().manual_seed(0)
    clips = {"samples": torch.randn(2, 16, 2, 4, 4, generator=g)}
    captions = [[torch.randn(1, 8, WAN_TEXT_DIM, generator=g), {}]]
    a = host.call("VA_SaveTrainingData", prior, clips, captions, "test_keep_data", "xs", False, False)[0]
    digest = _digest(os.path.join(os.path.dirname(a), "latents.safetensors"))
    b = host.call("VA_SaveTrainingData", prior, clips, captions, "test_keep_data", "xs", False, False)[0]
    base = os.path.join(folder_paths.get_output_directory(), "video_adapters_data")
    assert os.path.dirname(a) == os.path.join(base, "test_keep_data")
    assert os.path.dirname(b) == os.path.join(base, "test_keep_data_00001")
    assert _digest(os.path.join(os.path.dirname(a), "latents.safetensors")) == digest
