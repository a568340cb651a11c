"""Framewise Prompts on a tiny Wan: at every block's cross-attention the video tokens of latent frame p attend to
the positive prompt plus their own state's tokens only (checked against the native cross-attention run frame by
frame by hand), cross-fades mix the two states' outputs, and the unconditional branch keeps its prompt."""

import pytest
import torch

from devtools.tiny_models import WAN_TEXT_DIM, ToyTextEncoder, toy_text_embedding

SCHEDULE = '"0": "a closed box",\n"1": "the lid opens",\n"5": "the box is open"'  # latent frames 0, 1, 2 of 9 frames
STATES = ["a closed box", "the lid opens", "the box is open"]


@pytest.fixture(scope="module")
def wan(host, tiny):
    return tiny.load("tiny_wan_domain.safetensors")


def run_cross_attention(host, patched, block=0, seed=0):
    attach = host.pack_module("nodes.binding.attach")
    wrapped = patched.get_model_object(f"diffusion_model.blocks.{block}.cross_attn")
    dim = patched.get_model_object("diffusion_model").dim
    g = torch.Generator().manual_seed(seed)
    x, ctx = torch.randn(2, 3 * 2 * 2, dim, generator=g), torch.randn(2, 8, dim, generator=g)
    to = {attach.SCOPES_KEY: attach.Scopes(grid=(3, 2, 2)), "cond_or_uncond": [0, 1]}
    with torch.no_grad():
        return wrapped(x, ctx, transformer_options=to), wrapped._original[0], x, ctx, to


def state_tokens(wan):
    emb = wan.get_model_object("diffusion_model").text_embedding
    with torch.no_grad():
        return [emb(toy_text_embedding(s, WAN_TEXT_DIM)[:1]) for s in STATES]


def test_each_latent_frame_sees_only_its_state(host, wan):
    patched = host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), SCHEDULE, 9, 0, 4)[0]
    got, attn, x, ctx, to = run_cross_attention(host, patched)
    toks = state_tokens(wan)
    with torch.no_grad():
        for p in range(3):  # the conditional entry, frame by frame
            frame = slice(4 * p, 4 * p + 4)
            want = attn(x[:1, frame], torch.cat([ctx[:1], toks[p]], 1), transformer_options=to)
            torch.testing.assert_close(got[:1, frame], want, rtol=1e-5, atol=1e-5)
        # the unconditional entry keeps its plain context
        torch.testing.assert_close(got[1:], attn(x[1:], ctx[1:], transformer_options=to), rtol=1e-5, atol=1e-5)


def test_blend_mixes_neighbouring_states(host, wan):
    patched = host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), SCHEDULE, 9, 1, 4)[0]
    got, attn, x, ctx, to = run_cross_attention(host, patched, block=0, seed=1)
    weights = host.pack_module("adapters.state_prompts").frame_weights([0, 1, 2], 3, 1)
    toks = state_tokens(wan)
    with torch.no_grad():
        for p in range(3):
            frame = slice(4 * p, 4 * p + 4)
            want = sum(float(weights[p, s]) * attn(x[:1, frame], torch.cat([ctx[:1], toks[s]], 1), transformer_options=to)
                       for s in range(3) if weights[p, s] > 0)
            torch.testing.assert_close(got[:1, frame], want, rtol=1e-5, atol=1e-5)
    assert 0 < float(weights[1, 0]) < 1


def test_sampling_and_errors(host, wan):
    patched = host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), SCHEDULE, 9, 1, 4)[0]
    g = torch.Generator().manual_seed(0)
    pos, neg = [[torch.randn(1, 8, WAN_TEXT_DIM, generator=g), {}]], [[torch.randn(1, 8, WAN_TEXT_DIM, generator=g), {}]]
    latent = {"samples": torch.zeros(1, 16, 3, 4, 4)}

    def sample(m):
        guider = host.call("CFGGuider", m, pos, neg, 3.0)[0]
        sigmas = host.call("BasicScheduler", m, "simple", 2, 1.0)[0]
        return host.call("SamplerCustomAdvanced", host.call("RandomNoise", 0)[0], guider,
                         host.call("KSamplerSelect", "euler")[0], sigmas, latent)[0]["samples"]

    a, b = sample(patched), sample(wan)
    assert torch.isfinite(a).all() and (a - b).abs().max() > 1e-4
    with pytest.raises(Exception, match="latent frames"):  # 13 pixel frames = 4 latent frames, the latent has 3
        sample(host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), SCHEDULE, 13, 1, 4)[0])
    with pytest.raises(Exception, match='schedule: the schedule starts at frame 4; it must start at 0'):
        host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), '"4": "x"', 9, 0, 4)
    with pytest.raises(Exception, match="own latent frame"):
        host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), '"0": "a", "2": "b", "3": "c"', 9, 0, 4)
    with pytest.raises(Exception, match="width"):
        host.call("VA_FramewisePrompts", wan, ToyTextEncoder(768), SCHEDULE, 9, 0, 4)


def test_context_windows_get_their_frames_states(host, wan):
    """Under core's context windows each call sees a window of latent frames (transformer_options
    ["context_window"].index_list); the states follow the window's frames."""
    import types

    attach = host.pack_module("nodes.binding.attach")
    patched = host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), SCHEDULE, 9, 0, 4)[0]
    wrapped = patched.get_model_object("diffusion_model.blocks.0.cross_attn")
    fn = wrapped._fns[0]
    window = types.SimpleNamespace(index_list=[1, 2])
    site = attach.Site(None, 2, (2, 2, 2), [0], None, {"context_window": window})
    tokens = fn(torch.zeros(1, 8, patched.get_model_object("diffusion_model").dim), site)
    torch.testing.assert_close(tokens.weights, torch.eye(3)[[1, 2]])


def test_states_go_only_to_the_text_conditional_branch_of_dual_cfg(host, wan):
    """Dual CFG batches [no image, image, image + text]: only the last carries the prompt, so only it gets the
    states (cond_or_uncond holds list positions, not a cond/uncond flag)."""
    attach = host.pack_module("nodes.binding.attach")
    patched = host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), SCHEDULE, 9, 0, 4)[0]
    wrapped = patched.get_model_object("diffusion_model.blocks.0.cross_attn")
    dim = patched.get_model_object("diffusion_model").dim
    g = torch.Generator().manual_seed(4)
    x, ctx = torch.randn(3, 12, dim, generator=g), torch.randn(3, 8, dim, generator=g)
    protocol = host.pack_module("adapters.protocol")
    to = {protocol.SCOPES_KEY: protocol.Scopes(grid=(3, 2, 2)), "cond_or_uncond": [0, 1, 2], protocol.TEXT_CONDS_KEY: (2,)}
    with torch.no_grad():
        got = wrapped(x, ctx, transformer_options=to)
        plain = wrapped._original[0](x, ctx, transformer_options=to)
    torch.testing.assert_close(got[:2], plain[:2])
    assert (got[2] - plain[2]).abs().max() > 1e-4


def test_stride_one_schedules(host, wan):
    patched = host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), '"0": "a", "2": "b"', 3, 0, 1)[0]
    assert patched is not wan


def test_a_second_framewise_node_is_refused(host, wan):
    once = host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), SCHEDULE, 9, 0, 4)[0]
    with pytest.raises(Exception, match="already has Framewise Prompts"):
        host.call("VA_FramewisePrompts", once, ToyTextEncoder(WAN_TEXT_DIM), SCHEDULE, 9, 0, 4)


def test_state_tokens_follow_the_compute_dtype(host, tiny):
    """The states are embedded in the dtype the model computes in, not the weights' storage dtype (fp8 weights
    here, whose ops cast on the fly), one cached set per dtype."""
    import nodes as comfy_nodes

    attach = host.pack_module("nodes.binding.attach")
    fp8 = comfy_nodes.UNETLoader().load_unet("tiny_wan_domain.safetensors", "fp8_e4m3fn")[0]
    patched = host.call("VA_FramewisePrompts", fp8, ToyTextEncoder(WAN_TEXT_DIM), SCHEDULE, 9, 0, 4)[0]
    fn = patched.get_model_object("diffusion_model.blocks.0.cross_attn")._fns[0]
    site = attach.Site(None, 3, (3, 2, 2), [0], None, {})
    dim = patched.get_model_object("diffusion_model").dim
    a = fn(torch.zeros(1, 8, dim), site)
    b = fn(torch.zeros(1, 8, dim, dtype=torch.bfloat16), site)
    assert a.tokens[0].dtype == torch.float32 and b.tokens[0].dtype == torch.bfloat16
    torch.testing.assert_close(b.tokens[0].float(), a.tokens[0], rtol=0.05, atol=0.02)
