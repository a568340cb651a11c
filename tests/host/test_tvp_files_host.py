"""The text-video prediction miniature's shipped files (``adapters/weights``) in a real ComfyUI: each Wan base
builds as ComfyUI's own Wan 2.1 model and the SVD-architecture base as ComfyUI's own SVD UNet sampled as the flow
model it was trained as, and each FCA and AID adapter file (``adapters/weights/video_adapters``) is listed by Load
Adapters and loads onto the base it was trained on, its tensors intact; on a Wan of another size Load Adapters
refuses it and says why."""

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEIGHTS = os.path.join(ROOT, "adapters", "weights")
ADAPTERS = os.path.join(WEIGHTS, "video_adapters")
PAIRS = [("tvp_fca_full.safetensors", "tvp_wan_first_frame_base.safetensors", "fca"),
         ("tvp_fca_turns.safetensors", "tvp_wan_turns_base.safetensors", "fca"),
         ("tvp_aid_full.safetensors", "tvp_svd_base.safetensors", "aid")]
ADAPTER_CLASSES = {"fca": ("adapters.fca", "FCAAdapterSet"), "aid": ("adapters.aid", "AIDAdapterSet")}


def test_shipped_adapters_are_listed_by_load_adapters(host):
    info = host.node_info("VA_LoadAdapter")
    options = info["input"]["required"]["adapter_name"]
    options = options[0] if isinstance(options[0], list) else options[1]["options"]
    for adapter_file, _, _ in PAIRS:
        assert adapter_file in options


BASES = sorted(f for f in os.listdir(WEIGHTS) if f.startswith("tvp_") and f.endswith("base.safetensors"))


def test_every_base_is_tested():
    assert {"tvp_wan_base.safetensors", "tvp_svd_base.safetensors"} <= set(BASES)


@pytest.mark.parametrize("base_file", BASES)
def test_shipped_base_builds_as_comfyuis_model(host, base_file):
    from comfy.model_base import ModelType

    from devtools.tiny_models import tvp_base

    base = tvp_base(os.path.join(WEIGHTS, base_file))
    net = base.model.diffusion_model
    with safe_open(os.path.join(WEIGHTS, base_file), "pt") as f:
        meta = f.metadata()
    if meta["architecture"] == "SVD_img2vid":
        prefix = "unet/"
        from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

        # ComfyUI's SVD model class around its UNet with SVD's temporal layers
        assert type(base.model).__name__ == "SVD_img2vid" and isinstance(net, UNetModel)
        assert any(".time_stack." in k for k in net.state_dict())
        # the head size the base was trained with (files that do not record it were trained with 16 channels)
        attn = net.input_blocks[1][1].transformer_blocks[0].attn1
        assert attn.heads == net.model_channels // int(meta.get("head_channels", 16))
        # sampled as what it was trained as: a flow model with its shift, or SVD's own EDM v-prediction
        flow = meta.get("sampling") == "flow"
        assert base.model.model_type == (ModelType.FLOW if flow else ModelType.V_PREDICTION_EDM)
        if flow:
            assert base.model.model_sampling.shift == pytest.approx(float(meta["flow_shift"]))
    else:
        prefix = "dit/"
        assert type(net).__module__ == "comfy.ldm.wan.model"
        assert list(net.patch_size) == [1] + 2 * [int(meta["patch"])]
    stored = {k[len(prefix):]: v for k, v in load_file(os.path.join(WEIGHTS, base_file)).items()
              if k.startswith(prefix)}
    state = net.state_dict()
    assert set(state) == set(stored)
    for k, v in state.items():
        assert torch.equal(v, stored[k].float()), k


@pytest.mark.parametrize("adapter_file, base_file, kind", PAIRS)
def test_shipped_adapters_load_onto_their_base(host, adapter_file, base_file, kind):
    from devtools.tiny_models import tvp_base

    with safe_open(os.path.join(ADAPTERS, adapter_file), "pt") as f:
        pack = json.loads(f.metadata()["video_adapters"])
    assert pack["kind"] == kind
    assert pack["training"]["base"] == base_file  # the file names the base it was trained on
    base = tvp_base(os.path.join(WEIGHTS, base_file))
    model, summary = host.call("VA_LoadAdapter", base, adapter_file, 1.0)
    ad = model.get_additional_models_with_key("video_adapters")[-1].model
    module, cls = ADAPTER_CLASSES[kind]
    assert isinstance(ad, getattr(host.pack_module(module), cls))
    state = ad.file_state_dict()
    file = load_file(os.path.join(ADAPTERS, adapter_file))
    assert set(file) == set(state)
    for k, v in file.items():
        assert torch.equal(state[k].to(v.dtype), v), k
    assert f"{adapter_file}: {kind} adapters for " in summary


def test_shipped_fca_adapters_refused_on_a_wan_of_another_size(host):
    wan = host.call("VA_TinyDemoModels", "a", "", 0)[0]
    with pytest.raises(Exception, match=r"tvp_fca_full.safetensors do not fit model: .*different 'wan21'"):
        host.call("VA_LoadAdapter", wan, PAIRS[0][0], 1.0)
