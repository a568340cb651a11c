"""Opt-in: the pack at the released model sizes. Random-weight Wan 2.1 T2V 1.3B, Wan 2.1 T2V and I2V 14B (full width,
``VA_REALSIZE_14B_BLOCKS`` of their 40 blocks), SVD-XT and SD 1.5, built once into a cache outside the repository
(``devtools/realsize.py``) and loaded through core's own loaders: every shipped workflow's graph runs on them at a
small frame size, and Train Adapters takes two steps for every kind on its base in fp32, in bf16 and on an
fp8-stored base.

    VA_REALSIZE=1 COMFYUI_PATH=/path/to/ComfyUI python -m pytest tests/host/test_realsize_host.py -q

Needs about 20 GB of memory and 11 GiB of disk for the cache (about 15 minutes on two CPU cores, most of it the
first build and the 1.5B-parameter training steps). Without ``VA_REALSIZE=1`` this file is not collected and
the run says so in one line (tests/host/conftest.py)."""

import gc
import glob
import json
import os

import pytest
import torch

from devtools import realsize
from devtools.graphs import StandIns, stand_in_prompt, write_clip_folder, write_shipped_adapters
from devtools.headless import ui_to_api
from devtools.tiny_models import ToyClipVision, ToyTextEncoder, ToyVAE

pytestmark = pytest.mark.realsize

WF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "workflows")
WORKFLOWS = sorted(glob.glob(os.path.join(WF_DIR, "*.json")))


def _free(host=None):
    """Drop every model: the executor's cached outputs (which hold the loaded models) and core's loaded list."""
    import comfy.model_management

    if host is not None:
        host.executor.reset()
    comfy.model_management.unload_all_models()
    comfy.model_management.soft_empty_cache()
    gc.collect()


@pytest.fixture(scope="module")
def files(host, tiny):
    """key -> the cached file's name, with the cache folder added to ComfyUI's diffusion_models paths (``tiny``:
    the stand-in text encoders, VAEs and CLIP vision nodes)."""
    import folder_paths

    out = {key: os.path.basename(realsize.ensure(key)) for key in realsize.FILES}
    folder_paths.add_model_folder_path("diffusion_models", realsize.cache_dir())
    return out


@pytest.fixture(scope="module")
def stand_ins(files):
    by_release = {spec.released: files[key] for key, spec in realsize.FILES.items()}
    return StandIns(models=by_release, sd15=files["sd15"], svd=files["svd_xt"], keep_weight_dtype=True, steps=2,
                    domain_size=None, size=32)


def load(name, weight_dtype="default"):
    import nodes

    return nodes.UNETLoader().load_unet(name, weight_dtype)[0]


@pytest.fixture(autouse=True)
def _unload_after(host):
    yield
    _free(host)


@pytest.mark.parametrize("key", sorted(realsize.FILES))
def test_cached_files_load_as_the_released_models(host, files, key):
    """Core's loader detects each file as the released model and loads every tensor of it; the shapes give the
    released parameter count (all 40 blocks of the 14B models counted on the meta device)."""
    from safetensors import safe_open

    spec = realsize.FILES[key]
    model = load(files[key])
    assert type(model.model.model_config).__name__ == spec.base.config_class
    with safe_open(os.path.join(realsize.cache_dir(), files[key]), "pt") as f:
        keys = {k[len(spec.prefix):] for k in f.keys()}
        assert all(k.startswith(spec.prefix) for k in f.keys())
    assert set(model.model.diffusion_model.state_dict().keys()) == keys
    full = spec.full_parameters()
    assert abs(full / spec.published - 1.0) < 0.03, f"{spec.base.label}: {full:,} parameters, published {spec.published:,.0f}"


@pytest.fixture(scope="module")
def workflow_inputs(host, files, stand_ins):
    """The clip folder and the adapter files the loading workflows read, made for the real-size models."""
    write_clip_folder(host)
    prompts = [ui_to_api(load_workflow(p), host.node_info) for p in WORKFLOWS]
    load_for = {"svd_xt.safetensors": stand_ins.svd, **stand_ins.models}
    written = write_shipped_adapters(host, prompts, lambda file: load(load_for[file]), 1024)
    _free(host)
    return written


def load_workflow(path):
    with open(path) as f:
        return json.load(f)


@pytest.mark.parametrize("path", WORKFLOWS, ids=os.path.basename)
def test_workflow_runs_at_real_size(host, stand_ins, workflow_inputs, path):
    workflow = load_workflow(path)
    if not any(n["type"] in LOADERS for n in workflow["nodes"]):
        pytest.skip("this workflow builds its own models: it has no model file to run at a real size")
    prompt = stand_in_prompt(workflow, host, stand_ins)
    ok = host.validate(prompt)
    assert ok[0], ok
    result = host.run(prompt)
    assert [p for out in result["ui"].values() for key in ("images", "video") for p in out.get(key, [])], \
        "the workflow saved nothing"
    samplers = [nid for nid, v in prompt.items() if v["class_type"] in ("SamplerCustomAdvanced", "KSampler")]
    finals = host.run(prompt, samplers)
    for nid in samplers:
        assert torch.isfinite(finals[nid][0]["samples"]).all(), f"{prompt[nid]['class_type']} {nid}: not finite"


LOADERS = ("UNETLoader", "VA_LoadFrozenVideoModel", "CheckpointLoaderSimple", "ImageOnlyCheckpointLoader")


# ----------------------------------------------------------------------------------------------------
# Train Adapters, every kind on its base


def _svd_conditioning(host, frames, h, w):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 8 * h, 8 * w, 3, generator=g)
    pos, neg, _ = host.call("SVD_img2vid_Conditioning", ToyClipVision(1024), image, ToyVAE(video=False), 8 * w,
                            8 * h, frames, 127, 6, 0.0)
    states = '"0": "the red square rests",\n"1": "the red square moves left"'
    return host.call("VA_AIDConditioning", pos, neg, ToyTextEncoder(4096), "move the red square left", states,
                     frames)[0]


def _case(host, files, kind, weight_dtype):
    """``(model, clips, positive, frames, latent_shift)`` for ``kind`` on its real-size base."""
    g = torch.Generator().manual_seed(0)
    if kind == "fca":
        model = load(files["wan1.3b_t2v"], weight_dtype)
        clips = torch.randn(1, 16, 3, 4, 4, generator=g)  # 3 latent frames of 4x4: 12 tokens
        return model, clips, [[torch.randn(1, 8, 4096, generator=g), {}]], 0, "none"
    if kind == "simda":
        model = load(files["sd15"], weight_dtype)
        clips = torch.randn(4, 4, 8, 8, generator=g)  # 4 frames of 8x8 latents
        return model, clips, [[torch.randn(1, 8, 768, generator=g), {}]], 0, "simda"
    model = load(files["svd_xt"], weight_dtype)
    frames = 4
    return model, torch.randn(frames, 4, 8, 8, generator=g), _svd_conditioning(host, frames, 8, 8), frames, "none"


MODES = {  # mode -> (weight_dtype of the loaded base, training_dtype)
    "fp32": ("default", "fp32"),
    "bf16": ("default", "bf16"),
    "fp8": ("fp8_e4m3fn", "bf16"),
}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("kind", ["fca", "simda", "aid"])
def test_train_adapters_two_steps_at_real_size(host, files, kind, mode):
    import folder_paths

    weight_dtype, training_dtype = MODES[mode]
    model, clips, positive, frames, shift = _case(host, files, kind, weight_dtype)
    stored = {p.dtype for p in model.model.diffusion_model.parameters()}
    if mode == "fp8":
        assert torch.float8_e4m3fn in stored
    name = f"test/realsize_{kind}_{mode}"
    folder = folder_paths.get_folder_paths("video_adapters")[0]
    try:
        _train_and_check(host, model, clips, positive, kind, frames, shift, training_dtype, stored, name, folder)
    finally:  # FCA's file and checkpoint on Wan 1.3B take 5 GB: keep the disk for the next case
        for suffix in ("", "_checkpoint"):
            path = os.path.join(folder, f"{name}{suffix}.safetensors")
            if os.path.exists(path):
                os.remove(path)


def _train_and_check(host, model, clips, positive, kind, frames, shift, training_dtype, stored, name, folder):
    from safetensors.torch import load_file

    _, rel, _, text = host.call("VA_TrainAdapter", model, {"samples": clips}, positive, kind, frames, 2, 1e-4, 1, 0,
                                shift, 0, name, training_dtype=training_dtype)
    ck = host.pack_module("adapters.training").load_checkpoint(os.path.join(folder, f"{name}_checkpoint.safetensors"))
    assert ck.step == 2 and len(ck.losses) == 2 and all(torch.isfinite(torch.tensor(ck.losses))), ck.losses
    assert ck.meta["train_config"]["training_dtype"] == training_dtype
    assert f"{training_dtype} forward, gradient checkpointing" in text, text
    # the base is still stored as loaded (training did not upcast the frozen weights in place)
    assert {p.dtype for p in model.model.diffusion_model.parameters()} == stored
    trained = load_file(os.path.join(folder, rel))
    assert all(torch.isfinite(v.float()).all() for v in trained.values())
    loaded, summary = host.call("VA_LoadAdapter", model, rel, 1.0)
    state = loaded.get_additional_models_with_key("video_adapters")[-1].model.file_state_dict()
    assert state.keys() == trained.keys() and all(torch.equal(state[k].cpu(), trained[k]) for k in trained)
    print(f"\n{name}: {text}")
