"""The command-line adapter trainer (devtools/train_adapter.py) in the real host: Save Adapter Training Data writes
the clips, the conditioning and a config; a one-process run of that config (in this process) and a two-process
run (``accelerate launch``, two CPU processes, gloo) train the same adapters, with the same per-step losses and
the same weights up to float rounding; the file loads through Load Adapters."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from devtools import train_adapter
from devtools.harness import find_comfyui
from devtools.launch import launch
from devtools.tiny_models import SD_TEXT_DIM, WAN_TEXT_DIM

STEPS = 3
LR = 3e-3


def _cond(g, dim, n):
    return [[torch.randn(1, 6, dim, generator=g), {}] for _ in range(n)]


def _fca_case(g):
    clips = torch.randn(4, 16, 3, 4, 4, generator=g)
    return dict(base_model="diffusion_models/tiny_wan_prior.safetensors", clips={"samples": clips},
                positive=_cond(g, WAN_TEXT_DIM, 4), negative=_cond(g, WAN_TEXT_DIM, 1), frames=0,
                settings='{"queries_per_frame": 2, "text_width": 32, "text_heads": 2}',
                train={"batch_size": 4, "grad_accumulation": 2, "text_dropout": 0.5, "latent_shift": "none"})


def _simda_case(g):
    clips = torch.randn(8, 4, 4, 4, generator=g)  # two clips of four frames, frames in the batch
    return dict(base_model="diffusion_models/tiny_sd15_prior.safetensors", clips={"samples": clips},
                positive=_cond(g, SD_TEXT_DIM, 2), negative=None, frames=4, settings="",
                train={"batch_size": 2, "text_dropout": 0.5})


CASES = {"fca": _fca_case, "simda": _simda_case}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_two_processes_train_what_one_process_trains(host, tiny, kind, tmp_path):
    pytest.importorskip("accelerate", reason="HF accelerate is not installed (multi-process training needs it)")
    import folder_paths

    case = CASES[kind](torch.Generator().manual_seed(0))
    path = host.call("VA_SaveAdapterTrainingData", case["clips"], case["positive"], kind, case["base_model"],
                     f"test_cli_{kind}", case["frames"], negative=case["negative"], settings=case["settings"])[0]
    with open(path, encoding="utf-8") as f:
        written = json.load(f)
    assert written["kind"] == kind and written["data"] == "training_data.safetensors"
    folders = {k: folder_paths.get_folder_paths(k)[0] for k in ("diffusion_models", "video_adapters")}

    def config(name):
        cfg = {**written, **case["train"], "steps": STEPS, "learning_rate": LR, "seed": 1, "checkpoint_every": 0,
               "file_name": f"test/cli_{kind}_{name}", "device": "cpu", "model_folders": folders}
        file = os.path.join(os.path.dirname(path), f"{name}.json")
        with open(file, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        return file

    # one process, here; two processes, launched as a user launches them
    rel_one, losses_one, _ = train_adapter.train(host, train_adapter.read_config(config("one")), log=lambda *a: None)
    proc = launch("accelerate", ["devtools.train_adapter", "--config", config("two")],
                  env={"COMFYUI_PATH": find_comfyui(), "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count(f"step {STEPS}/{STEPS}") == 1, proc.stdout  # only the main process logs
    rel_two = proc.stdout.strip().splitlines()[-1]
    assert rel_two == f"test/cli_{kind}_two.safetensors" and rel_one == f"test/cli_{kind}_one.safetensors"

    training = host.pack_module("adapters.training")
    folder = folders["video_adapters"]
    one = training.load_checkpoint(os.path.join(folder, f"test/cli_{kind}_one_checkpoint.safetensors"))
    two = training.load_checkpoint(os.path.join(folder, f"test/cli_{kind}_two_checkpoint.safetensors"))
    assert one.losses == pytest.approx(losses_one, rel=1e-12) and len(two.losses) == STEPS
    torch.testing.assert_close(torch.tensor(two.losses), torch.tensor(one.losses), rtol=1e-5, atol=1e-7)
    a, b = load_file(os.path.join(folder, rel_one)), load_file(os.path.join(folder, rel_two))
    assert sorted(a) == sorted(b)
    # AdamW's first steps move every weight by about the learning rate whatever the gradient's size, so a
    # gradient that is zero but for rounding (an attention key's bias) moves by rounding noise scaled up to a few
    # 1e-5 here: the weights agree to 1 % of one step's update; the gradients themselves (AdamW's running mean)
    # agree to 1e-5 of the largest
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=LR * 1e-2, msg=lambda m, k=k: f"{k}: {m}")
    assert sorted(one.optimizer_tensors) == sorted(two.optimizer_tensors)
    grads = [k for k in one.optimizer_tensors if k.endswith("/exp_avg")]
    scale = max(float(one.optimizer_tensors[k].abs().max()) for k in grads)
    for k in grads:
        torch.testing.assert_close(two.optimizer_tensors[k], one.optimizer_tensors[k], rtol=1e-4, atol=1e-5 * scale,
                                   msg=lambda m, k=k: f"{k}: {m}")

    model = tiny.load(case["base_model"].split("/", 1)[1])
    _, summary = host.call("VA_LoadAdapter", model, rel_two, 1.0)
    assert f"{kind} adapters" in summary and f"trained {STEPS} steps" in summary


def test_training_data_keeps_every_condition(host, tmp_path):
    """The data file gives back the conditioning Train Adapters would have taken: AID's adapter conditions and
    SVD's image conditions and values, a CLIP-vision output, and the frames per clip; what it cannot store is
    refused, naming it."""
    from test_aid_host import training_clips, training_conditioning

    from devtools.tiny_models import toy_clip_vision_output

    data = host.pack_module("nodes.binding.training_data")
    common = host.pack_module("nodes.common")
    positive = training_conditioning(host)
    wan_i2v = [[torch.randn(1, 6, WAN_TEXT_DIM), {"concat_latent_image": torch.randn(1, 16, 2, 4, 4),
                                                  "clip_vision_output": toy_clip_vision_output(3)}]]
    clips = {"samples": training_clips(), common.FRAMES_PER_CLIP_KEY: 4}
    path = str(tmp_path / "data.safetensors")
    data.save_training_data(path, clips, positive, wan_i2v)
    got_clips, got_pos, got_neg, _ = data.load_training_data(path)
    assert torch.equal(got_clips["samples"], clips["samples"]) and got_clips[common.FRAMES_PER_CLIP_KEY] == 4
    for (c1, e1), (c2, e2) in zip(positive + wan_i2v, got_pos + got_neg, strict=True):
        assert torch.equal(c1, c2) and sorted(e1) == sorted(e2)
        for k, v in e1.items():
            if k == "model_conds":
                assert sorted(v) == sorted(e2[k]) and all(torch.equal(v[n].cond, e2[k][n].cond) for n in v)
            elif k == "clip_vision_output":
                assert all(torch.equal(v[n], e2[k][n]) for n in ("penultimate_hidden_states", "image_embeds"))
            else:
                assert torch.equal(v, e2[k]) if torch.is_tensor(v) else v == e2[k]
    with pytest.raises(ValueError, match="'control'"):
        data.save_training_data(path, clips, [[torch.zeros(1, 2, 8), {"control": object()}]])


def test_a_config_of_the_earlier_format_is_refused_with_the_way_forward(host):
    old = {"checkpoint": "v1-5-pruned-emaonly-fp16.safetensors", "clips": "my_clip.latent", "prompt": "a corgi",
           "kind": "simda", "steps": 300}
    with pytest.raises(train_adapter.ConfigError, match="earlier format.*Save Adapter Training Data"):
        train_adapter.node_inputs(old, host.node_info)
