"""Guards (inside a real ComfyUI, tiny models) against one-line mistakes a mutation study found surviving the rest
of the suite. Every expectation is written by hand or comes from an independent path (core nodes on the unpatched
model), never from the code under test."""

import math

import pytest
import torch

from devtools.harness import cond, probe
from devtools.tiny_models import (SVD_CONTEXT, WAN_TEXT_DIM, ToyTextEncoder, ToyVAE, tiny_svd,
                                  toy_clip_vision_output, toy_text_embedding)

SCHEDULE = '"0": "a closed box",\n"1": "the lid opens",\n"5": "the box is open"'  # latent frames 0, 1, 2 of 9 frames


# ----------------------------------------------------------------------------------------------------
# 2. AID's text dropout on SVD keeps the CLIP image context


def test_aid_text_dropout_on_svd_zeroes_only_the_adapter_text_and_keeps_the_image_context(host):
    """Guards: AID text dropout on SVD also zeroing the cross-attention context (there the CLIP image embedding)."""
    training = host.pack_module("nodes.binding.training")
    registry = host.pack_module("adapters.registry")
    describe = host.pack_module("nodes.binding.host").describe
    model = tiny_svd()
    g = torch.Generator().manual_seed(0)
    image, ctx = torch.randn(1, 4, 4, 4, generator=g), torch.randn(1, 1, SVD_CONTEXT, generator=g)
    extra = dict(fps=6, motion_bucket_id=127, augmentation_level=0.0)
    pos = [[ctx, dict(concat_latent_image=image, **extra)]]
    neg = [[torch.zeros(1, 1, SVD_CONTEXT), dict(concat_latent_image=torch.zeros_like(image), **extra)]]
    apos = host.call("VA_AIDConditioning", pos, neg, ToyTextEncoder(32), "move the square left",
                     '"0": "the square is right",\n"2": "the square is left"', 4)[0]
    conditions = training.clip_conditions(apos, 1)
    forward = training.AdapterForward(model, "v", conditions, describe(model), kind=registry.get("aid"))
    x = torch.zeros(4, 4, 4, 4)  # four frames in the batch
    c, e = conditions[0]
    kept = forward._sample_conds(x, c, e, False, False)
    no_text = forward._sample_conds(x, c, e, True, False)
    no_image = forward._sample_conds(x, c, e, False, True)
    want_ctx = ctx.expand(4, -1, -1)
    torch.testing.assert_close(kept["c_crossattn"].cond, want_ctx, rtol=0, atol=0)
    torch.testing.assert_close(no_text["c_crossattn"].cond, want_ctx, rtol=0, atol=0)  # the image embedding stays
    assert torch.count_nonzero(no_image["c_crossattn"].cond) == 0                     # SVD's own negative
    for name in ("video_adapters_aid_text", "video_adapters_aid_states"):
        assert kept[name].cond.abs().max() > 0 and torch.count_nonzero(no_text[name].cond) == 0, name
        torch.testing.assert_close(no_image[name].cond, kept[name].cond, rtol=0, atol=0)
    torch.testing.assert_close(no_text["c_concat"].cond, kept["c_concat"].cond, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------
# 3. the Dual CFG Guider gives frame-wise states to its text-conditional branch only


def _no_image(conditioning):
    return [[t, {k: v for k, v in e.items() if k not in ("concat_latent_image", "concat_mask")}]
            for t, e in conditioning]


def test_dual_cfg_guider_gives_framewise_states_to_the_text_branch_only(host, tiny):
    """Guards: the Dual CFG Guider marking the wrong entry of [none, image, image + text] as text-conditional."""
    model = tiny.load("tiny_wan_i2v.safetensors")
    start = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(1))
    pos, neg, latent = host.call("WanImageToVideo", cond(WAN_TEXT_DIM, 0), cond(WAN_TEXT_DIM, 1), ToyVAE(), 32, 32,
                                 9, 1, start_image=start, clip_vision_output=toy_clip_vision_output(0))
    latent = latent["samples"]
    patched = host.call("VA_FramewisePrompts", model, ToyTextEncoder(WAN_TEXT_DIM), SCHEDULE, 9, 0, 4)[0]

    def single(m, c):  # one conditioning through core's CFGGuider at cfg 1 (a conditional entry)
        return probe(host, host.call("CFGGuider", m, c, c, 1.0)[0], m, latent)["d"]

    d_full = single(patched, pos)          # image + text: with the states
    d_image = single(model, neg)           # image, no text: the plain model
    d_none = single(model, _no_image(neg))
    guider = host.call("VA_DualCFGGuider", patched, pos, neg, 2.0, 3.0)[0]
    got = probe(host, guider, patched, latent)["d"]
    want = d_none + 2.0 * (d_image - d_none) + 3.0 * (d_full - d_image)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert (d_full - single(model, pos)).abs().max() > 1e-4  # the states matter


# ----------------------------------------------------------------------------------------------------
# 5. cross_attn_delta scaled by the strength


def test_cross_attn_delta_is_scaled_by_the_attach_strength(host):
    """Guards: cross_attn_delta ignoring the strength (proj(u) + delta instead of proj(u) + s * delta)."""
    import comfy.ops
    from comfy.ldm.modules.attention import CrossAttention

    attach = host.pack_module("nodes.binding.attach")
    g = torch.Generator().manual_seed(0)
    attn = CrossAttention(query_dim=32, context_dim=16, heads=4, dim_head=8,
                          operations=comfy.ops.disable_weight_init)
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    d = {"q": torch.randn(32, 32, generator=g), "k": torch.randn(32, 16, generator=g),
         "v": torch.randn(32, 16, generator=g), "out": torch.randn(32, 32, generator=g)}
    d = {k: 0.1 * v for k, v in d.items()}
    wrapped = attach._DeltaAttention(attn, attach.UNET_CROSS_ATTENTION, lambda to: None,
                                     [lambda proj, u, site: u @ d[proj].T], 0.5)
    x, ctx = torch.randn(2, 6, 32, generator=g), torch.randn(2, 5, 16, generator=g)
    with torch.no_grad():
        got = wrapped(x, context=ctx, transformer_options={})
        # by hand: every projection W u + 0.5 D u, four heads of 8
        q = x @ (attn.to_q.weight + 0.5 * d["q"]).T
        k = ctx @ (attn.to_k.weight + 0.5 * d["k"]).T
        v = ctx @ (attn.to_v.weight + 0.5 * d["v"]).T
        split = lambda t: t.reshape(2, -1, 4, 8).transpose(1, 2)  # noqa: E731
        a = ((split(q) @ split(k).transpose(-1, -2)) / math.sqrt(8)).softmax(-1) @ split(v)
        a = a.transpose(1, 2).reshape(2, 6, 32)
        want = a @ (attn.to_out[0].weight + 0.5 * d["out"]).T + attn.to_out[0].bias
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# 6 and 9. Framewise Prompts: the cross-fade ramp, and a schedule written out of order


def _state_tokens(patched):
    return patched.get_model_object("diffusion_model.blocks.0.cross_attn")._fns[0]


def test_framewise_prompts_cross_fade_over_two_latent_frames(host, tiny):
    """Guards: the frame-wise blend ramp reversed (every other test blends over 1 latent frame, where a reversed
    ramp gives the same quarter)."""
    wan = tiny.load("tiny_wan_domain.safetensors")
    # 29 pixel frames = 8 latent frames; pixel frame 13 starts latent frame 4
    patched = host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), '"0": "a", "13": "b"', 29, 2, 4)[0]
    second = torch.tensor([0, 0, 1, 3, 5, 7, 8, 8], dtype=torch.float32) / 8
    weights = _state_tokens(patched).weights
    torch.testing.assert_close(weights, torch.stack([1 - second, second], 1), rtol=0, atol=1e-6)


def test_framewise_prompts_read_a_schedule_written_out_of_order(host, tiny):
    """Guards: an unsorted schedule (the states must follow their frames, not the order they were written in)."""
    wan = tiny.load("tiny_wan_domain.safetensors")
    shuffled = '"5": "the box is open",\n"0": "a closed box",\n"1": "the lid opens"'
    fn = _state_tokens(host.call("VA_FramewisePrompts", wan, ToyTextEncoder(WAN_TEXT_DIM), shuffled, 9, 0, 4)[0])
    for raw, text in zip(fn.raw, ["a closed box", "the lid opens", "the box is open"]):
        torch.testing.assert_close(raw, toy_text_embedding(text, WAN_TEXT_DIM)[:1], rtol=0, atol=0)
    torch.testing.assert_close(fn.weights, torch.eye(3), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------
# 7. MLLM State Prompt: exactly N states


class _Answers:
    """A scripted multimodal LLM: gives its answers in turn."""

    def __init__(self, *counts):
        self.answers = [json_states(n) for n in counts]
        self.calls = 0

    def generate(self, messages, image, seed, max_tokens, schema=None):
        self.calls += 1
        return self.answers[self.calls - 1]


def json_states(n):
    import json

    return json.dumps({"states": [f"state {i + 1}" for i in range(n)]})


def test_mllm_state_prompt_refuses_one_state_too_many_after_the_retry(host):
    """Guards: exactly-N states accepting too many (N + 1 must be retried, then refused)."""
    mllm = host.pack_module("nodes.binding.mllm")
    protocol = host.pack_module("adapters.protocol")
    with pytest.raises(protocol.VideoAdapterError, match="5 states instead of 4"):
        mllm.ask_states(_Answers(5, 5), None, "open the box", 4, 0, 256)
    asked = _Answers(5, 4)
    states, raw = mllm.ask_states(asked, None, "open the box", 4, 0, 256)
    assert states == ["state 1", "state 2", "state 3", "state 4"] and len(raw) == 2 and asked.calls == 2
