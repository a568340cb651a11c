"""The text-video prediction miniature's shipped files (``adapters/weights``) in a real ComfyUI: each Wan base
builds as ComfyUI's own Wan 2.1 model, and each FCA adapter file (``adapters/weights/video_adapters``) is listed by
Load Adapters and loads onto the base it was trained on, its tensors intact; on a Wan of another size Load Adapters
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
PAIRS = [("tvp_fca_full.safetensors", "tvp_wan_first_frame_base.safetensors"),
         ("tvp_fca_turns.safetensors", "tvp_wan_turns_base.safetensors")]


def test_shipped_adapters_are_listed_by_load_adapters(host):
    info = host.node_info("VA_LoadAdapter")
    options = info["input"]["required"]["adapter_name"]
    options = options[0] if isinstance(options[0], list) else options[1]["options"]
    for adapter_file, _ in PAIRS:
        assert adapter_file in options


BASES = sorted(f for f in os.listdir(WEIGHTS) if f.startswith("tvp_wan_") and f.endswith(".safetensors"))


@pytest.mark.parametrize("base_file", BASES)
def test_shipped_base_builds_as_comfyuis_wan(host, base_file):
    from devtools.tiny_models import tvp_wan_base

    base = tvp_wan_base(os.path.join(WEIGHTS, base_file))
    net = base.model.diffusion_model
    assert type(net).__module__ == "comfy.ldm.wan.model"
    stored = {k[4:]: v for k, v in load_file(os.path.join(WEIGHTS, base_file)).items() if k.startswith("dit/")}
    state = net.state_dict()
    assert set(state) == set(stored)
    for k, v in state.items():
        assert torch.equal(v, stored[k].float()), k
    with safe_open(os.path.join(WEIGHTS, base_file), "pt") as f:
        assert list(net.patch_size) == [1] + 2 * [int(f.metadata()["patch"])]


@pytest.mark.parametrize("adapter_file, base_file", PAIRS)
def test_shipped_fca_adapters_load_onto_their_base(host, adapter_file, base_file):
    from devtools.tiny_models import tvp_wan_base

    with safe_open(os.path.join(ADAPTERS, adapter_file), "pt") as f:
        training = json.loads(f.metadata()["video_adapters"])["training"]
    assert training["base"] == base_file  # the file names the base it was trained on
    base = tvp_wan_base(os.path.join(WEIGHTS, base_file))
    model, summary = host.call("VA_LoadAdapter", base, adapter_file, 1.0)
    ad = model.get_additional_models_with_key("video_adapters")[-1].model
    assert isinstance(ad, host.pack_module("adapters.fca").FCAAdapterSet)
    state = ad.file_state_dict()
    file = load_file(os.path.join(ADAPTERS, adapter_file))
    assert set(file) == set(state)
    for k, v in file.items():
        assert torch.equal(state[k].to(v.dtype), v), k
    assert "fca" in summary


def test_shipped_fca_adapters_refused_on_a_wan_of_another_size(host):
    wan = host.call("VA_TinyDemoModels", "a", "", 0)[0]
    with pytest.raises(Exception, match=r"tvp_fca_full.safetensors do not fit model: .*different 'wan21'"):
        host.call("VA_LoadAdapter", wan, PAIRS[0][0], 1.0)
