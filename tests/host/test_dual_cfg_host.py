"""Dual CFG Guider inside a real ComfyUI: a tiny Wan 2.1 image-to-video model with WanImageToVideo's own
conditionings, and a tiny SVD. References are native: core's DualCFGGuider given the same three
conditionings, core CFGGuider, and single-condition evaluations combined by hand."""

import pytest
import torch

from devtools.tiny_models import SVD_CONTEXT, WAN_TEXT_DIM, ToyVAE, tiny_svd, toy_clip_vision_output
from devtools.harness import cond, probe


def clip_vision(seed=0):
    return toy_clip_vision_output(seed)


@pytest.fixture(scope="module")
def wan_i2v(host, tiny):
    model = tiny.load("tiny_wan_i2v.safetensors")
    assert host.pack_module("nodes.binding.host").describe(model).family == "wan21_i2v"
    start = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(1))
    pos, neg, latent = host.call("WanImageToVideo", cond(WAN_TEXT_DIM, 0), cond(WAN_TEXT_DIM, 1), ToyVAE(), 32, 32,
                                 9, 1, start_image=start, clip_vision_output=clip_vision())
    return model, pos, neg, latent["samples"]


def no_image(conditioning):
    """The test's own "no image, no text" conditioning: negative without the start-image latent and mask."""
    return [[t, {k: v for k, v in e.items() if k not in ("concat_latent_image", "concat_mask")}] for t, e in conditioning]


def dual(host, model, pos, neg, s_v, s_t, **kw):
    return host.call("VA_DualCFGGuider", model, pos, neg, s_v, s_t, **kw)


@pytest.mark.parametrize("s_v,s_t", [(2.5, 5.0), (0.0, 3.0), (1.7, 1.0)])
def test_equals_core_dual_cfg_guider_given_the_same_three_conditionings(host, wan_i2v, s_v, s_t):
    model, pos, neg, latent = wan_i2v
    guider, summary = dual(host, model, pos, neg, s_v, s_t)
    assert "CLIP-vision features keep" in summary
    core = host.call("DualCFGGuider", model, pos, neg, no_image(neg), s_t, s_v, "regular")[0]
    got, want = probe(host, guider, model, latent), probe(host, core, model, latent)
    torch.testing.assert_close(got["d"], want["d"], rtol=1e-5, atol=1e-5)


def test_reduces_to_text_cfg_and_to_the_conditional(host, wan_i2v):
    model, pos, neg, latent = wan_i2v
    text_cfg = probe(host, host.call("CFGGuider", model, pos, neg, 4.0)[0], model, latent)
    got = probe(host, dual(host, model, pos, neg, 1.0, 4.0)[0], model, latent)
    torch.testing.assert_close(got["d"], text_cfg["d"], rtol=1e-5, atol=1e-5)
    cond_only = probe(host, host.call("CFGGuider", model, pos, neg, 1.0)[0], model, latent)
    torch.testing.assert_close(probe(host, dual(host, model, pos, neg, 1.0, 1.0)[0], model, latent)["d"],
                               cond_only["d"], rtol=1e-5, atol=1e-5)


def test_linear_ramp_per_latent_frame(host, wan_i2v):
    model, pos, neg, latent = wan_i2v
    one = lambda c: probe(host, host.call("CFGGuider", model, c, c, 1.0)[0], model, latent)["d"]  # noqa: E731
    d_full, d_image, d_none = one(pos), one(neg), one(no_image(neg))
    got = probe(host, dual(host, model, pos, neg, 3.0, 2.0, image_cfg_ramp="linear", image_cfg_first_frame=1.0)[0],
                model, latent)["d"]
    frames = latent.shape[2]
    scale = torch.linspace(1.0, 3.0, frames).reshape(1, 1, frames, 1, 1)
    want = d_none + scale * (d_image - d_none) + 2.0 * (d_full - d_image)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("choice", ["keep", "zero", "drop"])
def test_clip_vision_choice_changes_only_the_no_image_branch(host, wan_i2v, choice):
    model, pos, neg, latent = wan_i2v
    guidance = host.pack_module("nodes.binding.guidance")
    none = guidance.without_image(neg, choice)
    assert all("concat_latent_image" not in e and "concat_mask" not in e for _, e in none)
    cv = [e.get("clip_vision_output") for _, e in none]
    if choice == "drop":
        assert cv == [None]
    elif choice == "zero":
        assert float(cv[0]["penultimate_hidden_states"].abs().sum()) == 0.0
    else:
        assert cv[0] is neg[0][1]["clip_vision_output"]
    # the user's conditioning is untouched
    assert "concat_latent_image" in neg[0][1]


def test_svd_is_image_only_guidance(host):
    model = tiny_svd()
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 4, 4, 4, generator=g)
    extra = dict(fps=6, motion_bucket_id=127, augmentation_level=0.0)
    pos = cond(SVD_CONTEXT, 1, tokens=1, concat_latent_image=image, **extra)
    neg = [[torch.zeros(1, 1, SVD_CONTEXT), dict(concat_latent_image=torch.zeros_like(image), **extra)]]
    latent = torch.zeros(4, 4, 4, 4)
    guider, summary = dual(host, model, pos, neg, 2.5, 9.0)
    assert "image-only" in summary
    want = probe(host, host.call("CFGGuider", model, pos, neg, 2.5)[0], model, latent)
    torch.testing.assert_close(probe(host, guider, model, latent)["d"], want["d"], rtol=1e-5, atol=1e-5)
    # a per-frame ramp over SVD's frames (in the batch)
    ramp = dual(host, model, pos, neg, 2.5, 1.0, image_cfg_ramp="linear", image_cfg_first_frame=1.0)[0]
    d_pos = probe(host, host.call("CFGGuider", model, pos, pos, 1.0)[0], model, latent)["d"]
    d_neg = probe(host, host.call("CFGGuider", model, neg, neg, 1.0)[0], model, latent)["d"]
    scale = torch.linspace(1.0, 2.5, 4).reshape(4, 1, 1, 1)
    torch.testing.assert_close(probe(host, ramp, model, latent)["d"], d_neg + scale * (d_pos - d_neg),
                               rtol=1e-4, atol=1e-4)


def test_text_to_video_conditioning_is_refused(host, tiny):
    model = tiny.load("tiny_wan_domain.safetensors")
    with pytest.raises(Exception, match="no image condition.*WanImageToVideo"):
        dual(host, model, cond(WAN_TEXT_DIM, 0), cond(WAN_TEXT_DIM, 1), 1.5, 5.0)


def test_runs_in_a_graph(host, wan_i2v):
    model, pos, neg, latent = wan_i2v
    guider = dual(host, model, pos, neg, 1.5, 4.0)[0]
    sigmas = host.call("BasicScheduler", model, "simple", 3, 1.0)[0]
    out = host.call("SamplerCustomAdvanced", host.call("RandomNoise", 0)[0], guider,
                    host.call("KSamplerSelect", "euler")[0], sigmas, {"samples": latent})[0]["samples"]
    assert out.shape == latent.shape and torch.isfinite(out).all()
