"""A frozen base kept in fp8 storage (Load Diffusion Model's weight_dtype) trains adapters: the base stays fp8,
ComfyUI casts each weight for its layer, and the adapters learn."""

import torch

from devtools.tiny_models import WAN_TEXT_DIM


def test_adapters_train_on_an_fp8_base(host, tiny):
    tiny.load("tiny_wan_prior.safetensors")  # writes the file once
    base = host.call("UNETLoader", "tiny_wan_prior.safetensors", "fp8_e4m3fn")[0]
    dm = base.model.diffusion_model
    assert dm.blocks[0].self_attn.q.weight.dtype == torch.float8_e4m3fn
    g = torch.Generator().manual_seed(0)
    start = torch.randn(2, 16, 1, 4, 4, generator=g)
    clips = {"samples": start + 0.3 * torch.randn(2, 16, 3, 4, 4, generator=g)}
    positive = [[torch.randn(1, 8, WAN_TEXT_DIM, generator=g), {}], [torch.randn(1, 8, WAN_TEXT_DIM, generator=g), {}]]
    out = host.call("VA_TrainAdapter", base, clips, positive, "fca", 0, 30, 3e-3, 2, 0, "none", 0, "test/fp8_base",
                    settings='{"queries_per_frame": 2, "text_width": 32, "text_heads": 2}')
    assert "fca adapters for wan21" in out[3]
    losses = [float(v) for v in out[3].split("loss ")[1].split(";")[0].split(" -> ")]
    assert losses[1] < losses[0], out[3]
    assert dm.blocks[0].self_attn.q.weight.dtype == torch.float8_e4m3fn  # the base was not upcast


def test_adapters_take_cores_static_path_on_a_dynamic_vram_model(host, tiny):
    """On a GPU, core's loaders return dynamic-VRAM patchers; attaching adapters (object patches, an additional
    model) and training take core's own static clone of it, as core does when weight hooks are present."""
    attach = host.pack_module("nodes.binding.attach")
    wan = tiny.load("tiny_wan_prior.safetensors")
    calls = []

    class Dynamic:  # what a dynamic patcher adds: is_dynamic() and clone(disable_dynamic=...)
        def __init__(self, inner):
            self.inner = inner

        def is_dynamic(self):
            return True

        def clone(self, disable_dynamic=False):
            calls.append(disable_dynamic)
            return self.inner.clone()

        def __getattr__(self, name):
            return getattr(self.inner, name)

    torch.manual_seed(0)
    adapters = attach.new_adapters("fca", wan, {"frames": 3, "queries_per_frame": 2, "text_width": 32,
                                                "text_heads": 2})
    attach.attach_adapters(Dynamic(wan), adapters, 1.0)
    attach.with_gradient_checkpointing(Dynamic(wan))
    assert calls == [True, True]
