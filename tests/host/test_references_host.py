"""Every binding of the pack against an independent numeric reference, inside a real ComfyUI.

* the Score Composer at one noise level equals ``D_cfg + cfg * gamma * (D_prior(prior_positive) - x)`` built
  from native CFGGuider evaluations of each model on its own prompts (a probe sampler reads the guider's
  denoised estimate at the first sigma);
* a prior's conditioning goes through the path CFGGuider uses for its own: a control object on
  ``prior_positive`` is prepared with the prior and consulted when the prior runs;
* each SimDA adapter placement equals a hand-written block: the SD 1.5 transformer block computed by hand
  from its own sub-modules, and the Wan block with the temporal adapter applied to [B, C, T, H, W] video
  features by the 5-D convolution path (not the token path the binding uses);
* the domain model's native forward equals the network in eps and v, and first-frame conditioning reaches it.
"""

import os

import pytest
import torch

from devtools.harness import cond, probe
from devtools.tiny_models import SD_TEXT_DIM, WAN_TEXT_DIM


def apply_patched(m, x, sigma, ctx):
    """``apply_model`` of a patched MODEL with its patches, wrappers and object patches in place."""
    import comfy.model_management
    import comfy.patcher_extension

    comfy.model_management.load_models_gpu([m])
    opts = dict(m.model_options["transformer_options"])
    opts["wrappers"] = {}
    comfy.patcher_extension.merge_nested_dicts(opts["wrappers"], m.wrappers, copy_dict1=False)
    opts["cond_or_uncond"] = [0]
    try:
        with torch.no_grad():
            return m.model.apply_model(x, sigma, c_crossattn=ctx, transformer_options=opts)
    finally:
        comfy.model_management.unload_all_models()


@pytest.fixture(scope="module")
def wan_pair(host, tiny):
    return tiny.load("tiny_wan_domain.safetensors"), tiny.load("tiny_wan_prior.safetensors")


@pytest.fixture(scope="module")
def sd_pair(host, tiny):
    return tiny.load("tiny_sd15_domain.safetensors"), tiny.load("tiny_sd15_prior.safetensors")


@pytest.mark.parametrize("pair", ["wan", "sd"])
def test_composer_equals_native_evaluations(host, request, pair):
    domain, prior = request.getfixturevalue(f"{pair}_pair")
    dim = WAN_TEXT_DIM if pair == "wan" else SD_TEXT_DIM
    latent = torch.zeros(1, 16, 2, 4, 4) if pair == "wan" else torch.zeros(2, 4, 4, 4)
    pos, neg, prior_pos = cond(dim, 0), cond(dim, 1), cond(dim, 2)
    cfg, gamma = 3.0, 0.4
    composed = host.call("VA_ScoreComposer", domain, prior, pos, neg, prior_strength=gamma, cfg=cfg,
                         composition_end=1.0, prior_positive=prior_pos, mcmc_steps=0, mcmc_step_size=0.05)[0]
    got = probe(host, composed, domain, latent)
    d_cfg = probe(host, host.call("CFGGuider", domain, pos, neg, cfg)[0], domain, latent)
    d_prior = probe(host, host.call("CFGGuider", prior, prior_pos, neg, 1.0)[0], domain, latent)
    torch.testing.assert_close(got["x"], d_cfg["x"], rtol=0, atol=0)
    want = d_cfg["d"] + cfg * gamma * (d_prior["d"] - got["x"])
    torch.testing.assert_close(got["d"], want, rtol=1e-5, atol=1e-5)
    # the prior's own prompt matters: the same graph with the domain prompt for the prior differs
    d_prior_pos = probe(host, host.call("CFGGuider", prior, pos, neg, 1.0)[0], domain, latent)
    assert (d_prior_pos["d"] - d_prior["d"]).abs().max() > 1e-3


def test_composer_schedule_scales_gamma_by_percent(host, sd_pair):
    """A cosine schedule at the probed sigma multiplies gamma by its value at that sigma's percent."""
    import math

    domain, prior = sd_pair
    latent = torch.zeros(2, 4, 4, 4)
    pos, neg = cond(SD_TEXT_DIM, 0), cond(SD_TEXT_DIM, 1)
    sched = host.call("VA_PriorStrengthSchedule", "cosine", 1.0, 0.0, 0.0, 1.0, "")[0]
    composed = host.call("VA_ScoreComposer", domain, prior, pos, neg, prior_strength=0.5, cfg=2.0,
                         composition_end=1.0, prior_schedule=sched, mcmc_steps=0, mcmc_step_size=0.05)[0]
    got = probe(host, composed, domain, latent, sigma_index=2, steps=6)
    ms = domain.get_model_object("model_sampling")
    # the sigma's percent, found by bisection on the model's own percent_to_sigma
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float(ms.percent_to_sigma(mid)) > got["sigma"] else (lo, mid)
    pct = (lo + hi) / 2
    mult = 0.5 * (1 + math.cos(math.pi * pct))
    d_cfg = probe(host, host.call("CFGGuider", domain, pos, neg, 2.0)[0], domain, latent, sigma_index=2, steps=6)
    d_prior = probe(host, host.call("CFGGuider", prior, pos, neg, 1.0)[0], domain, latent, sigma_index=2, steps=6)
    want = d_cfg["d"] + 2.0 * 0.5 * mult * (d_prior["d"] - got["x"])
    torch.testing.assert_close(got["d"], want, rtol=1e-4, atol=1e-4)


def test_prior_conds_take_the_native_path(host, wan_pair):
    """A control object on prior_positive is pre-run with the prior and consulted at the prior's passes only."""
    import comfy.controlnet

    domain, prior = wan_pair
    seen = {"pre_run": [], "get_control": []}

    class Recorder(comfy.controlnet.ControlBase):
        def pre_run(self, model, percent_to_sigma):
            seen["pre_run"].append(model)
            super().pre_run(model, percent_to_sigma)

        def get_control(self, x_noisy, t, cond, batched_number, transformer_options=None):
            seen["get_control"].append(tuple(x_noisy.shape))
            return None

        def copy(self):
            c = Recorder()
            self.copy_to(c)
            return c

        def get_models(self):
            return []

    pos, neg = cond(WAN_TEXT_DIM, 0), cond(WAN_TEXT_DIM, 1)
    prior_pos = cond(WAN_TEXT_DIM, 2, control=Recorder())
    composed = host.call("VA_ScoreComposer", domain, prior, pos, neg, prior_strength=0.3, cfg=2.0,
                         composition_end=1.0, prior_positive=prior_pos, mcmc_steps=0, mcmc_step_size=0.05)[0]
    probe(host, composed, domain, torch.zeros(1, 16, 2, 4, 4))
    assert seen["pre_run"] and all(m is prior.model for m in seen["pre_run"])
    assert len(seen["get_control"]) == 1  # one prior pass; the domain's passes carry no control


# ----------------------------------------------------------------------------------------------------
# adapter placements against hand-written blocks


def _perturbed_simda(host, model, seed=0):
    adapters = host.pack_module("nodes.binding.attach").new_adapters("simda", model, {"shift_mode": "none"})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapters.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return adapters


def test_sd_block_equals_hand_written_block(host, tiny):
    """SD 1.5 BasicTransformerBlock with SimDA attached, against the block computed by hand."""
    import comfy.model_management

    model = tiny.load("tiny_sd15_prior.safetensors")
    adapters = _perturbed_simda(host, model)
    patched = host.pack_module("nodes.binding.attach").attach_adapters(model, adapters, 1.0)
    comfy.model_management.load_models_gpu([patched])
    name = "input_blocks.1.1.transformer_blocks.0"
    blk = patched.model.diffusion_model.get_submodule(name)
    ad = adapters[name]
    frames, h, w, c = 4, 2, 2, blk.norm1.normalized_shape[0]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(frames, h * w, c, generator=g)
    ctx = torch.randn(frames, 8, SD_TEXT_DIM, generator=g)
    to = dict(patched.model_options["transformer_options"])
    to.update(block=("input", 1), block_index=0, activations_shape=[frames, c, h, w], cond_or_uncond=[0],
              n_heads=blk.attn1.heads, dim_head=c // blk.attn1.heads)
    with torch.no_grad():
        got = blk(x, context=ctx, transformer_options=to)
        ff = blk.ff._original[0]  # the native FFN behind the object patch
        hh = x + ad.attention(blk.attn1(blk.norm1(x)))          # adapter wraps the self-attention output
        hh = ad.temporal(hh, frames, h, w)                       # residual temporal conv after self-attention
        hh = hh + blk.attn2(blk.norm2(hh), context=ctx)
        u = blk.norm3(hh)
        want = ff(u) + ad.ffn(u) + hh                            # FFN adapter in parallel on the FFN's input
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    comfy.model_management.unload_all_models()


def test_wan_model_equals_hand_written_blocks(host, tiny):
    """Wan with SimDA attached, against the same model patched by hand: attention adapter on the self-attention
    output, FFN adapter on the FFN input, temporal adapter on [B, C, T, H, W] features of the block output."""
    import comfy.model_management

    model = tiny.load("tiny_wan_domain.safetensors")
    adapters = _perturbed_simda(host, model, seed=1)
    patched = host.pack_module("nodes.binding.attach").attach_adapters(model, adapters, 0.7)
    s = 0.7
    ref = model.clone()
    dm = model.get_model_object("diffusion_model")
    t, hh, ww = 2, 2, 2  # latent [1, 16, 2, 4, 4] with patch (1, 2, 2)

    class Wrap(torch.nn.Module):
        def __init__(self, orig, fn):
            super().__init__()
            self.orig, self.fn = [orig], fn

        def forward(self, x, *a, **k):
            return self.fn(x, self.orig[0](x, *a, **k))

    for i, blk in enumerate(dm.blocks):
        ad = adapters[f"blocks.{i}"]
        ref.add_object_patch(f"diffusion_model.blocks.{i}.self_attn",
                             Wrap(blk.self_attn, lambda x, y, ad=ad: y + s * (ad.attention(y) - y)))
        ref.add_object_patch(f"diffusion_model.blocks.{i}.ffn", Wrap(blk.ffn, lambda x, y, ad=ad: y + s * ad.ffn(x)))

        def block(args, extra, ad=ad):
            out = extra["original_block"](args)
            img = out["img"]
            b, n, c = img.shape
            video = img.reshape(b, t, hh, ww, c).permute(0, 4, 1, 2, 3)      # [B, C, T, H, W]
            y = ad.temporal(video).permute(0, 2, 3, 4, 1).reshape(b, n, c)  # the 5-D convolution path
            return {**out, "img": img + s * (y - img)}

        ref.set_model_patch_replace(block, "dit", "double_block", i)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 16, t, 4, 4, generator=g)
    ctx = torch.randn(1, 8, WAN_TEXT_DIM, generator=g)
    sigma = torch.tensor([0.6])
    outs = [apply_patched(m, x, sigma, ctx) for m in (patched, ref)]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    base = model.model.apply_model(x, sigma, c_crossattn=ctx, transformer_options={"cond_or_uncond": [0]})
    assert (outs[0] - base).abs().max() > 1e-3


# ----------------------------------------------------------------------------------------------------
# the domain model as a native MODEL


@pytest.mark.parametrize("param", ["eps", "v"])
def test_domain_model_native_forward_equals_network(host, tiny, param):
    import comfy.model_base

    domain = host.pack_module("nodes.binding.domain")
    dm_core = host.pack_module("adapters.domain_model")
    prior = tiny.load("tiny_sd15_prior.safetensors")
    config = dm_core.size_config("xs", "sd15", prior_params=2.6e7, parameterisation=param, first_frame_cond=True)
    torch.manual_seed(0)
    net = dm_core.DomainVideoModel(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    mtype = comfy.model_base.ModelType.EPS if param == "eps" else comfy.model_base.ModelType.V_PREDICTION
    ms = comfy.model_base.model_sampling(prior.model.model_config, mtype)
    patcher = domain.domain_patcher(net, prior.model.model_config, mtype, ms)
    g = torch.Generator().manual_seed(1)
    frames = 3
    x = torch.randn(frames, 4, 4, 4, generator=g) * 3.0
    ctx = torch.randn(1, 8, SD_TEXT_DIM, generator=g)
    first = torch.randn(1, 4, 4, 4, generator=g)
    # a level of the discrete schedule: ComfyUI's timestep is the nearest level, so the network sees this sigma
    sigma = ms.sigmas[600].float().expand(frames).clone()
    base = patcher.model
    conds = base.extra_conds(cross_attn=ctx.expand(frames, -1, -1), noise=x, device=x.device, va_first_frame=first)
    c = {k: v.process_cond(batch_size=frames, device=x.device).cond for k, v in conds.items()}
    with torch.no_grad():
        got = base.apply_model(x, sigma, transformer_options={"cond_or_uncond": [0]}, **c)
        ff = base.process_latent_in(first)[:1]
        pred = net(dm_core.frames_to_video(x), sigma[:1], ctx, first_frame=ff)
        want = dm_core.video_to_frames(dm_core.prediction_to_denoised(dm_core.frames_to_video(x), pred, sigma[:1], param))
        without = base.apply_model(x, sigma, transformer_options={"cond_or_uncond": [0]},
                                   **{k: v for k, v in c.items() if k != "first_frame"})
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert (got - without).abs().max() > 1e-4  # the first frame reaches the network


# ----------------------------------------------------------------------------------------------------
# the other hook points of the attach table


def test_wan_parallel_branch_capture_and_cross_context_equal_hand_written(host, tiny):
    import comfy.model_management
    import comfy.patcher_extension

    attach = host.pack_module("nodes.binding.attach")
    model = tiny.load("tiny_wan_prior.safetensors")
    dm = model.get_model_object("diffusion_model")
    dim = dm.dim
    g = torch.Generator().manual_seed(11)
    branch = torch.nn.Linear(dim, dim)
    with torch.no_grad():
        branch.weight.copy_(0.05 * torch.randn(dim, dim, generator=g))
    extra_tokens = torch.randn(1, 3, dim, generator=g)
    captured, sites = [], []
    plan = [attach.Attachment("blocks.0", "block_parallel", lambda args, site: branch(args["img"])),
            attach.Attachment("blocks.1", "capture", lambda h, site: (captured.append(h.clone()), sites.append(site))),
            attach.Attachment("blocks.1", "cross_context", lambda ctx, site: extra_tokens.expand(ctx.shape[0], -1, -1))]
    patched = attach.attach(model, torch.nn.ModuleList([branch]), plan, strength=0.5)

    ref = model.clone()
    reference_hidden = []

    def block0(args, extra):
        out = extra["original_block"](args)
        return {**out, "img": out["img"] + 0.5 * branch(args["img"])}

    def block1(args, extra):
        out = extra["original_block"](args)
        reference_hidden.append(out["img"].clone())
        return out

    class CrossWithExtra(torch.nn.Module):
        def __init__(self, orig):
            super().__init__()
            self.orig = [orig]

        def forward(self, x, context, *a, **k):
            return self.orig[0](x, torch.cat([context, extra_tokens.expand(context.shape[0], -1, -1)], 1), *a, **k)

    ref.set_model_patch_replace(block0, "dit", "double_block", 0)
    ref.set_model_patch_replace(block1, "dit", "double_block", 1)
    ref.add_object_patch("diffusion_model.blocks.1.cross_attn", CrossWithExtra(dm.blocks[1].cross_attn))
    x = torch.randn(1, 16, 2, 4, 4, generator=g)
    ctx = torch.randn(1, 8, WAN_TEXT_DIM, generator=g)
    outs = [apply_patched(m, x, torch.tensor([0.5]), ctx) for m in (patched, ref)]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(captured[0], reference_hidden[0], rtol=1e-5, atol=1e-5)
    assert sites[0].grid == (2, 2, 2) and sites[0].frames == 2 and sites[0].block.name == "blocks.1"


def test_unet_cross_context_equals_hand_written(host, tiny):
    import comfy.model_management

    attach = host.pack_module("nodes.binding.attach")
    model = tiny.load("tiny_sd15_prior.safetensors")
    name = "input_blocks.1.1.transformer_blocks.0"
    g = torch.Generator().manual_seed(3)
    extra = torch.randn(1, 4, SD_TEXT_DIM, generator=g)
    plan = [attach.Attachment(name, "cross_context", lambda ctx, site: extra.expand(ctx.shape[0], -1, -1))]
    patched = attach.attach(model, torch.nn.ModuleList(), plan)
    comfy.model_management.load_models_gpu([patched])
    blk = patched.model.diffusion_model.get_submodule(name)
    c = blk.norm1.normalized_shape[0]
    x = torch.randn(2, 4, c, generator=g)
    ctx = torch.randn(2, 8, SD_TEXT_DIM, generator=g)
    to = dict(patched.model_options["transformer_options"])
    to.update(block=("input", 1), block_index=0, activations_shape=[2, c, 2, 2], cond_or_uncond=[0],
              n_heads=blk.attn1.heads, dim_head=c // blk.attn1.heads)
    with torch.no_grad():
        got = blk(x, context=ctx, transformer_options=to)
        hh = x + blk.attn1(blk.norm1(x))
        hh = hh + blk.attn2(blk.norm2(hh), context=torch.cat([ctx, extra.expand(2, -1, -1)], 1))
        want = blk.ff(blk.norm3(hh)) + hh
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    comfy.model_management.unload_all_models()


def test_temporal_layers_see_frame_by_frame_tokens(host):
    """SVD's temporal layers hold [videos*H*W, F, C]; temporal hooks get [videos*F, H*W, C] and the result goes back."""
    attach = host.pack_module("nodes.binding.attach")
    blk = host.pack_module("nodes.binding.host").Block("x.time_stack.0", "temporal", 3, 1, None, ("input", 1, 0))
    site = attach.Site(blk, 4, (4, 2, 3), [0], None, {})
    x = torch.randn(2 * 6, 4, 3)  # 2 videos, 2x3 positions, 4 frames
    seen = []

    def add_frame_index(tokens, s):
        seen.append(tokens.shape)
        frame = torch.arange(tokens.shape[0]) % 4
        return tokens + frame.reshape(-1, 1, 1)

    out = attach._UNetRouter._frame_tokens(add_frame_index, x, site)
    assert seen == [torch.Size([8, 6, 3])]
    torch.testing.assert_close(out - x, torch.arange(4.0).reshape(1, 4, 1).expand_as(x))


# ----------------------------------------------------------------------------------------------------
# the trainer's forward: each clip's own caption, text and image dropout


def test_adapter_forward_uses_each_clips_caption_and_null_text(host, tiny):
    simda = host.pack_module("nodes.binding.training")
    describe = host.pack_module("nodes.binding.host").describe
    model = tiny.load("tiny_sd15_prior.safetensors")
    g = torch.Generator().manual_seed(2)
    ctx = [torch.randn(1, 8, SD_TEXT_DIM, generator=g) for _ in range(2)]
    null = torch.randn(1, 8, SD_TEXT_DIM, generator=g)
    fwd = simda.AdapterForward(model, "eps", [(ctx[0], {}), (ctx[1], {})], describe(model), null_text=null)
    x = torch.randn(2, 3, 4, 4, 4, generator=g)  # 2 clips of 3 frames
    sigma = torch.tensor([1.5, 4.0])

    def native(xb, sb, cb):
        d = model.model.apply_model(xb, sb.expand(xb.shape[0]), c_crossattn=cb.expand(xb.shape[0], -1, -1),
                                    transformer_options={"cond_or_uncond": [0]})
        return (xb - d) / sb

    with torch.no_grad():
        got = fwd(x, sigma, clip=torch.tensor([1, 0]), drop_text=torch.tensor([False, True]),
                  drop_image=torch.tensor([False, False]))
        torch.testing.assert_close(got[0], native(x[0], sigma[0], ctx[1]), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got[1], native(x[1], sigma[1], null), rtol=1e-4, atol=1e-4)


def test_train_adapters_settings_are_checked(host, tiny):
    simda = host.pack_module("nodes.binding.training")
    with pytest.raises(Exception, match="known settings"):
        simda.kind_settings(host.pack_module("adapters.registry").get("simda"), '{"spatial_ratoi": 0.5}')[0]
    with pytest.raises(Exception, match="JSON"):
        simda.kind_settings(host.pack_module("adapters.registry").get("simda"), "{spatial_ratio: 0.5}")[0]
    assert simda.kind_settings(host.pack_module("adapters.registry").get("simda"), '{"spatial_ratio": 0.5}')[0]["spatial_ratio"] == 0.5


# ----------------------------------------------------------------------------------------------------
# more of the composer's wiring: CFG mix, model checks, the prior's own wrappers


def test_cfg_mix_equals_native_evaluations(host, sd_pair):
    domain, prior = sd_pair
    latent = torch.zeros(2, 4, 4, 4)
    pos, neg, prior_pos, prior_neg = (cond(SD_TEXT_DIM, i) for i in range(4))
    mix = host.call("VA_CFGMixGuider", domain, prior, pos, neg, 0.3, 3.0, 5.0, 1.0, prior_positive=prior_pos,
                    prior_negative=prior_neg)[0]
    got = probe(host, mix, domain, latent)
    d_domain = probe(host, host.call("CFGGuider", domain, pos, neg, 3.0)[0], domain, latent)
    d_prior = probe(host, host.call("CFGGuider", prior, prior_pos, prior_neg, 5.0)[0], domain, latent)
    torch.testing.assert_close(got["d"], 0.7 * d_domain["d"] + 0.3 * d_prior["d"], rtol=1e-5, atol=1e-5)


def test_models_from_different_latent_spaces_are_refused(host, wan_pair):
    """Same parameterisation (both rectified flow), different latent spaces: the pack's synthetic demo space
    and Wan 2.1's."""
    synthetic_domain, _, pos, neg = host.call("VA_TinyTrainedPair", "sunset, stripes, blob, orbit, pan right")
    with pytest.raises(Exception, match="latent spaces differ"):
        host.call("VA_ScoreComposer", synthetic_domain, wan_pair[1], pos, neg, prior_strength=0.2, cfg=2.0,
                  composition_end=0.9, mcmc_steps=0, mcmc_step_size=0.05)


def test_prior_with_its_own_wrappers_and_patches(host, wan_pair):
    """A prior carrying adapters (object patches, a replace patch and a DIFFUSION_MODEL wrapper) is evaluated
    inside the composer exactly as the native CFGGuider evaluates it."""
    domain, prior = wan_pair
    adapted = host.pack_module("nodes.binding.attach").attach_adapters(prior, _perturbed_simda(host, prior, seed=3), 1.0)
    latent = torch.zeros(1, 16, 2, 4, 4)
    pos, neg, prior_pos = cond(WAN_TEXT_DIM, 0), cond(WAN_TEXT_DIM, 1), cond(WAN_TEXT_DIM, 2)
    composed = host.call("VA_ScoreComposer", domain, adapted, pos, neg, prior_strength=0.5, cfg=2.0,
                         composition_end=1.0, prior_positive=prior_pos, mcmc_steps=0, mcmc_step_size=0.05)[0]
    got = probe(host, composed, domain, latent)
    d_cfg = probe(host, host.call("CFGGuider", domain, pos, neg, 2.0)[0], domain, latent)
    d_prior = probe(host, host.call("CFGGuider", adapted, prior_pos, neg, 1.0)[0], domain, latent)
    torch.testing.assert_close(got["d"], d_cfg["d"] + 2.0 * 0.5 * (d_prior["d"] - got["x"]), rtol=1e-5, atol=1e-5)


def test_train_adapters_text_dropout_trains_on_the_null_text(host, tiny):
    """text_dropout = 1: every sample sees negative instead of its caption, so the run equals one whose caption
    is negative itself."""
    from safetensors.torch import load_file

    import folder_paths

    model = tiny.load("tiny_sd15_prior.safetensors")
    g = torch.Generator().manual_seed(0)
    clips = {"samples": torch.randn(4, 4, 4, 4, generator=g)}
    caption, null = cond(SD_TEXT_DIM, 5), cond(SD_TEXT_DIM, 6)
    names = []
    for positive in (caption, null):
        name = f"test/dropout_{len(names)}"
        host.call("VA_TrainAdapter", model, clips, positive, "simda", 0, 3, 1e-2, 1, 0, "simda", 0, name,
                  text_dropout=1.0, negative=null)
        names.append(name)
    folder = folder_paths.get_folder_paths("video_adapters")[0]
    a, b = (load_file(os.path.join(folder, n + ".safetensors")) for n in names)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
