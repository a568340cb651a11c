"""A catalogue of bad inputs, sent as API prompts the way the server receives them: each is refused with a
message that names the input and what would fit, at /prompt where the value is knowable there, else before
any expensive work. After all of them the server state is intact: a good prompt still runs, and nothing was
written outside the pack's folder."""

import os

import pytest
import torch

from devtools.tiny_models import SD_TEXT_DIM, WAN_TEXT_DIM

PRIOR, DOMAIN = "tiny_wan_prior.safetensors", "tiny_wan_domain.safetensors"


def loader(name=PRIOR, dtype="default"):
    return {"class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": dtype}}


def text(dim=WAN_TEXT_DIM, seed=0):
    return {"class_type": "VATest_Conditioning", "inputs": {"dim": dim, "tokens": 8, "seed": seed}}


def composer_prompt(**overrides):
    inputs = {"domain_model": ["2", 0], "prior_model": ["1", 0], "positive": ["3", 0], "negative": ["4", 0],
              "prior_strength": 0.2, "cfg": 3.0, "composition_end": 0.9}
    inputs.update(overrides)
    return {
        "1": loader(PRIOR), "2": loader(DOMAIN), "3": text(seed=0), "4": text(seed=1),
        "5": {"class_type": "VA_ScoreComposer", "inputs": inputs},
        "6": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 32, "height": 32, "length": 5, "batch_size": 1}},
        "7": {"class_type": "BasicScheduler", "inputs": {"model": ["2", 0], "scheduler": "simple", "steps": 3, "denoise": 1.0}},
        "8": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "9": {"class_type": "RandomNoise", "inputs": {"noise_seed": 0}},
        "10": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["9", 0], "guider": ["5", 0], "sampler": ["8", 0],
                                                                 "sigmas": ["7", 0], "latent_image": ["6", 0]}},
        "11": {"class_type": "PreviewAny", "inputs": {"source": ["10", 0]}},
    }


def train_domain_prompt(file_name="bad/ok", resume_from="none"):
    return {
        "1": loader(PRIOR),
        "2": {"class_type": "VATest_Frames5D", "inputs": {}},
        "3": text(),
        "4": {"class_type": "VA_TrainDomainModel", "inputs": {
            "prior_model": ["1", 0], "clips": ["2", 0], "captions": ["3", 0], "size": "tiny", "steps": 2,
            "learning_rate": 1e-3, "batch_size": 1, "seed": 0, "cond_dropout": 0.1, "checkpoint_every": 0,
            "file_name": file_name, "resume_from": resume_from}},
    }


@pytest.fixture(scope="module")
def nodes_for_tests(host, tiny):
    from comfy_api.latest import io

    class Frames5D(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_Frames5D", category="_for_testing", outputs=[io.Latent.Output()])

        @classmethod
        def execute(cls):
            return io.NodeOutput({"samples": torch.randn(2, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))})

    class Frames4D(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_Frames4D", category="_for_testing", outputs=[io.Latent.Output()])

        @classmethod
        def execute(cls):
            return io.NodeOutput({"samples": torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(0))})

    host.nodes.NODE_CLASS_MAPPINGS["VATest_Frames5D"] = Frames5D
    host.nodes.NODE_CLASS_MAPPINGS["VATest_Frames4D"] = Frames4D
    return host


def invalid(host, prompt):
    ok, err, _, node_errors = host.validate(prompt)
    assert not ok, "the prompt was accepted"
    return str(node_errors) + str(err)


def files_under(root):
    return {os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs}


CATALOGUE = [  # (what the user did, prompt maker, expected words in the /prompt refusal)
    ("missing file in Load Frozen Video Model",
     lambda: {"1": {"class_type": "VA_LoadFrozenVideoModel", "inputs": {"model_name": "nope.safetensors",
                                                                        "weight_dtype": "default"}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}}},
     ["model_name", "nope.safetensors", PRIOR]),
    ("weight_dtype not in the list",
     lambda: {"1": {"class_type": "VA_LoadFrozenVideoModel", "inputs": {"model_name": PRIOR, "weight_dtype": "fp4"}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}}},
     ["weight_dtype", "fp4", "fp8_e4m3fn"]),
    ("missing file in Load Domain Model",
     lambda: {"1": loader(), "2": {"class_type": "VA_LoadDomainModel", "inputs": {"model_name": "gone.safetensors",
                                                                                   "prior_model": ["1", 0]}},
              "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}},
     ["model_name", "gone.safetensors"]),
    ("missing file in Load Adapters",
     lambda: {"1": loader(), "2": {"class_type": "VA_LoadAdapter", "inputs": {"model": ["1", 0], "adapter_name": "x.safetensors",
                                                                               "strength": 1.0}},
              "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}}},
     ["adapter_name", "x.safetensors"]),
    ("cfg infinite (ComfyUI's own range check)", lambda: composer_prompt(cfg=float("inf")), ["cfg", "inf"]),
    ("300-character file name", lambda: train_domain_prompt("a" * 300), ["file_name", "too long"]),
    ("absolute file name", lambda: train_domain_prompt("/tmp/x"), ["file_name", "absolute"]),
    ("home file name", lambda: train_domain_prompt("~/x"), ["file_name", "absolute or home"]),
    ("drive-letter file name", lambda: train_domain_prompt("C:\\x"), ["file_name", "absolute"]),
    ("file name '.'", lambda: train_domain_prompt("."), ["file_name", "hidden"]),
    ("file name leaving the folder", lambda: train_domain_prompt("a/../../b"), ["file_name", "'..'"]),
    ("clip folder outside input (absolute)",
     lambda: {"1": {"class_type": "VA_LoadClipFolder", "inputs": {
         "folder": "/etc", "vae": ["2", 0], "clip": ["3", 0], "frames": 9, "width": 32, "height": 32, "frame_stride": 1,
         "clips_per_video": 1, "max_clips": 0, "default_caption": ""}},
              "2": {"class_type": "VATest_ToyVAE", "inputs": {"kind": "video"}},
              "3": {"class_type": "VATest_ToyTextEncoder", "inputs": {"dim": WAN_TEXT_DIM}},
              "4": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2]}}},
     ["folder", "full path", "VIDEO_ADAPTERS_ALLOW_ANY_FOLDER"]),
    ("clip folder outside input (relative)",
     lambda: {"1": {"class_type": "VA_LoadClipFolder", "inputs": {
         "folder": "../output", "vae": ["2", 0], "clip": ["3", 0], "frames": 9, "width": 32, "height": 32,
         "frame_stride": 1, "clips_per_video": 1, "max_clips": 0, "default_caption": ""}},
              "2": {"class_type": "VATest_ToyVAE", "inputs": {"kind": "video"}},
              "3": {"class_type": "VATest_ToyTextEncoder", "inputs": {"dim": WAN_TEXT_DIM}},
              "4": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2]}}},
     ["folder", "outside ComfyUI's input folder"]),
]


@pytest.mark.parametrize("case", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_refused_at_prompt(host, tiny, nodes_for_tests, case):
    _, make, words = case
    before = files_under(os.path.dirname(host.models_dir))
    message = invalid(host, make())
    for w in words:
        assert w in message, f"{w!r} not in {message[:400]}"
    assert files_under(os.path.dirname(host.models_dir)) == before


RUNTIME = [  # refused when the node runs, before sampling or training
    # (NaN passes every min/max comparison; checked when the node starts, one message naming the input)
    ("prior_strength NaN", lambda: composer_prompt(prior_strength=float("nan")), ["prior_strength", "not a finite"]),
    ("Wan pair with conditioning of the wrong text width",
     lambda: {**composer_prompt(), "3": text(dim=SD_TEXT_DIM)},
     ["positive", "768 wide", "4096"]),
    ("composer settings that make sampling diverge",
     lambda: composer_prompt(prior_strength=10.0, cfg=100.0, composition_end=1.0, flow_space="noise"),
     ["diverge", "flow_space", "cfg (now 100)", "prior_strength (now 10)"]),
]


@pytest.mark.parametrize("case", RUNTIME, ids=[c[0] for c in RUNTIME])
def test_refused_when_run(host, tiny, case):
    _, make, words = case
    prompt = make()
    assert host.validate(prompt)[0]
    with pytest.raises(RuntimeError) as err:
        host.run(prompt)
    for w in words:
        assert w in str(err.value), f"{w!r} not in {str(err.value)[:400]}"


def test_resume_from_the_wrong_kind_of_checkpoint(host, tiny, nodes_for_tests):
    """An adapter checkpoint picked in Train Domain Model says what it is."""
    import folder_paths

    files = host.pack_module("adapters.files")
    folder = folder_paths.get_folder_paths("video_adapters")[0]
    name = "bad/adapter_checkpoint.safetensors"
    os.makedirs(os.path.join(folder, "bad"), exist_ok=True)
    files.save_tensors(os.path.join(folder, name), {"param/x": torch.zeros(1)},
                       {"kind": "checkpoint", "adapter_kind": "simda", "family": "wan21", "step": 1})
    with pytest.raises(RuntimeError, match="checkpoint of 'simda' adapters"):
        host.run(train_domain_prompt("bad/never", resume_from=name))
    assert not os.path.exists(os.path.join(folder, "bad", "never.safetensors"))


def test_state_intact_after_the_catalogue(host, tiny):
    """The pack's folder exists from the start; optional inputs can be left out; a good prompt runs."""
    import folder_paths

    assert os.path.isdir(folder_paths.get_folder_paths("video_adapters")[0])
    prompt = composer_prompt()
    assert "mcmc_steps" not in prompt["5"]["inputs"]
    out = host.run(prompt, ["10"])
    assert torch.isfinite(out["10"][0]["samples"]).all()


def test_image_conditioning_on_a_text_to_video_model(host, tiny):
    model = tiny.load(DOMAIN)
    pos = [[torch.randn(1, 8, WAN_TEXT_DIM), {"concat_latent_image": torch.zeros(1, 16, 2, 4, 4)}]]
    with pytest.raises(Exception, match="carries a start image.*takes no image condition"):
        host.call("VA_DualCFGGuider", model, pos, pos, 1.5, 5.0)
    with pytest.raises(Exception, match="carries a start image"):
        host.call("VA_ScoreComposer", model, tiny.load(PRIOR), pos, pos, prior_strength=0.2, cfg=2.0, composition_end=0.9)


def test_unwritable_names_are_refused_before_training(host, tiny, nodes_for_tests):
    """A name that passes every check but cannot be written (a folder of that name is a file) is refused when the
    node starts, before any training."""
    import folder_paths

    folder = folder_paths.get_folder_paths("video_adapters")[0]
    os.makedirs(os.path.join(folder, "bad"), exist_ok=True)
    with open(os.path.join(folder, "bad", "blocker"), "w") as f:
        f.write("a file where the training expects a folder")
    host.progress = []
    with pytest.raises(RuntimeError, match="cannot be created"):
        host.run(train_domain_prompt("bad/blocker/model"), ["4"])
    assert not host.progress  # no training step ran


def test_trained_result_is_kept_when_saving_fails(host, tiny, nodes_for_tests, monkeypatch):
    """If the file system refuses the final save anyway, the result goes to recovered/ and file_name says so."""
    import folder_paths

    domain_model = host.pack_module("adapters.domain_model")
    real = domain_model.save_domain_model
    calls = []

    def flaky(path, *a, **k):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(path, *a, **k)

    monkeypatch.setattr(host.pack_module("nodes.domain"), "save_domain_model", flaky)
    out = host.run(train_domain_prompt("bad/full_disk"), ["4"])
    rel = out["4"][1]
    folder = folder_paths.get_folder_paths("video_adapters")[0]
    assert rel.startswith("recovered/") and os.path.isfile(os.path.join(folder, rel)) and len(calls) == 2


def test_ramp_with_a_custom_cfg_function_is_refused(host):
    from devtools.tiny_models import SVD_CONTEXT, tiny_svd

    model = host.call("VideoLinearCFGGuidance", tiny_svd(), 1.0)[0]
    image = torch.zeros(1, 4, 4, 4)
    pos = [[torch.randn(1, 1, SVD_CONTEXT), {"concat_latent_image": image}]]
    neg = [[torch.zeros(1, 1, SVD_CONTEXT), {"concat_latent_image": image}]]
    with pytest.raises(Exception, match="custom CFG function"):
        host.call("VA_DualCFGGuider", model, pos, neg, 2.5, 1.0, image_cfg_ramp="linear")


def test_one_start_image_for_many_clips_is_refused(host):
    simda = host.pack_module("nodes.binding.training")
    pos = [[torch.randn(1, 8, WAN_TEXT_DIM), {"concat_latent_image": torch.zeros(1, 16, 2, 4, 4)}]]
    with pytest.raises(Exception, match="one start image for 3 clips"):
        simda.clip_conditions(pos, 3)
    assert len(simda.clip_conditions(pos, 1)) == 1


def test_train_adapters_on_a_model_that_already_has_adapters(host, tiny, nodes_for_tests):
    """Load Adapters -> Train Adapters through the executor (everything loaded under inference mode)."""
    import shutil

    import folder_paths

    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "simda_0.2.0_sd15.safetensors")
    target = os.path.join(folder_paths.get_folder_paths("video_adapters")[0], "compat", "stacked.safetensors")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(data, target)
    prompt = {
        "1": loader("tiny_sd15_prior.safetensors"),
        "2": {"class_type": "VA_LoadAdapter", "inputs": {"model": ["1", 0], "adapter_name": "compat/stacked.safetensors",
                                                         "strength": 1.0}},
        "3": {"class_type": "VATest_Frames4D", "inputs": {}},
        "4": text(dim=SD_TEXT_DIM),
        "5": {"class_type": "VA_TrainAdapter", "inputs": {
            "model": ["2", 0], "clips": ["3", 0], "positive": ["4", 0], "kind": "simda", "frames": 0, "steps": 2,
            "learning_rate": 1e-3, "batch_size": 1, "seed": 0, "latent_shift": "none", "checkpoint_every": 0,
            "file_name": "bad/stacked_train"}},
    }
    out = host.run(prompt, ["5"])
    assert out["5"][1] == "bad/stacked_train.safetensors"


def _errors_of(host, prompt, node):
    ok, _, _, node_errors = host.validate(prompt)
    assert not ok
    return node_errors[node]["errors"]


def test_one_message_per_problem_attached_to_its_input(host, tiny, nodes_for_tests):
    """A bad value is reported once, under the input it concerns (not once per input of the node). ComfyUI repeats
    a failed custom check under every input the check names: only file_name is named, and on hosts that do not
    check V3 combos themselves (0.3.x) also the combos."""
    validation = host.pack_module("nodes.validation")
    errors = _errors_of(host, train_domain_prompt("/abs/name"), "4")
    named = 1 if validation.host_checks_v3_combos() else 3  # + size and resume_from on 0.3.x
    assert len(errors) == named and "file_name" in [e["extra_info"]["input_name"] for e in errors], errors
    assert all("absolute or home path" in e["details"] for e in errors)
    prompt = train_domain_prompt("ok_name")
    prompt["4"]["inputs"]["steps"] = 0
    errors = _errors_of(host, prompt, "4")
    assert len(errors) == 1 and errors[0]["extra_info"]["input_name"] == "steps", errors
