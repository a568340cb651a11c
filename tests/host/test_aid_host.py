"""AID on a tiny SVD inside a real ComfyUI: the instruction and state features travel in the conditioning to the
DQFormer, its tokens and the cross-attention deltas equal a hand-written cross-attention, the adapters are the
identity at init, training lowers the loss and resumes exactly, files round-trip, and the Dual CFG Guider's three
predictions are the native evaluations combined by the rule."""

import os

import pytest
import torch

from devtools.harness import cond, probe
from devtools.tiny_models import SVD_CONTEXT, ToyTextEncoder, tiny_svd, toy_text_embedding

TEXT = 32
FRAMES = 4
SCHEDULE = '"0": "the red square moves left",\n"2": "the red square moves up"'
INSTRUCTION = "move the red square left, then up"
CFG = dict(width=32, heads=4, depth=1, queries_per_frame=2, text_dim=TEXT, vision_dim=SVD_CONTEXT,
           context_dim=SVD_CONTEXT, frames=FRAMES)


def svd_conds(seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(1, 4, 4, 4, generator=g)
    extra = dict(fps=6, motion_bucket_id=127, augmentation_level=0.0)
    pos = cond(SVD_CONTEXT, seed + 1, tokens=1, concat_latent_image=image, **extra)
    neg = [[torch.zeros(1, 1, SVD_CONTEXT), dict(concat_latent_image=torch.zeros_like(image), **extra)]]
    return pos, neg


def aid_conditioning(host, pos, neg, schedule=SCHEDULE, model=None, instruction=INSTRUCTION):
    kw = {} if model is None else {"model": model}
    return host.call("VA_AIDConditioning", pos, neg, ToyTextEncoder(TEXT), instruction, schedule, FRAMES, **kw)


def perturb(module, seed, std=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))


def aid_model(host, model, seed=3, **config):
    attach = host.pack_module("nodes.binding.attach")
    adapters = attach.new_adapters("aid", model, {**CFG, **config})
    perturb(adapters, seed)
    return attach.attach_adapters(model, adapters), adapters


class RefCrossAttention(torch.nn.Module):
    """A hand-written cross-attention: context extended by ``tokens`` and projections ``W + delta``."""

    def __init__(self, original, tokens, deltas):
        super().__init__()
        self.o, self.tokens, self.d = [original], tokens, deltas

    def forward(self, x, context=None, value=None, mask=None, transformer_options={}):
        a = self.o[0]
        ctx = context if self.tokens is None else torch.cat([context, self.tokens.to(context)], 1)

        def lin(layer, d, u):
            y = u @ layer.weight.T + (layer.bias if layer.bias is not None else 0)
            return y if d is None else y + u @ d.T

        dq, dk, dv, do = ((None,) * 4 if self.d is None else
                          (self.d.weight("q"), self.d.weight("k"), self.d.weight("v"), self.d.weight("out")))
        q, k, v = lin(a.to_q, dq, x), lin(a.to_k, dk, ctx), lin(a.to_v, dv, ctx)
        h = a.heads
        b, n, c = q.shape
        q, k, v = (t.reshape(b, -1, h, c // h).transpose(1, 2) for t in (q, k, v))
        w = torch.softmax(q @ k.transpose(-1, -2) / (c // h) ** 0.5, dim=-1)
        out = (w @ v).transpose(1, 2).reshape(b, n, c)
        return lin(a.to_out[0], do, out)


def reference_model(host, model, adapters, tokens):
    ref = model.clone()
    for b in host.pack_module("nodes.binding.host").describe(model).blocks_of("spatial"):
        key = f"diffusion_model.{b.name}.attn2"
        deltas = adapters[b.name].cross_attn if adapters is not None else None
        ref.add_object_patch(key, RefCrossAttention(ref.get_model_object(key), tokens, deltas))
    return ref


def expected_tokens(adapters, pos):
    """The DQFormer's tokens computed here from the texts (not from the conditioning)."""
    t1 = toy_text_embedding(INSTRUCTION, TEXT)
    a, b = (toy_text_embedding(t, TEXT)[0] for t in ("the red square moves left", "the red square moves up"))
    t2 = torch.stack([a, a, b, b])[None]
    with torch.no_grad():
        return adapters.dqformer.tokens(t1, pos[0][0], t2)


def test_tokens_and_deltas_equal_hand_written_cross_attention(host):
    model = tiny_svd()
    patched, adapters = aid_model(host, model, spatial_adapter=False, short_term_adapter=False,
                                  long_term_adapter=False)
    pos, neg = svd_conds()
    apos, aneg, summary = aid_conditioning(host, pos, neg, model=patched)
    assert "1 state schedule" in summary
    latent = torch.zeros(FRAMES, 4, 4, 4)
    got = probe(host, host.call("CFGGuider", patched, apos, aneg, 1.0)[0], patched, latent)
    tokens = expected_tokens(adapters, pos)
    assert tokens.shape == (FRAMES, 6 + 2, SVD_CONTEXT)  # 6 multimodal (the instruction's length) + 2 per frame
    ref = reference_model(host, model, adapters, tokens)
    want = probe(host, host.call("CFGGuider", ref, pos, neg, 1.0)[0], ref, latent)
    torch.testing.assert_close(got["d"], want["d"], rtol=1e-4, atol=1e-5)
    # the uncond entries carry zero instruction features: the same rule with zero texts
    z = host.pack_module("nodes.binding.attach").without_adapter_text(apos)
    got0 = probe(host, host.call("CFGGuider", patched, z, aneg, 1.0)[0], patched, latent)
    with torch.no_grad():
        t0 = adapters.dqformer.tokens(torch.zeros(1, 6, TEXT), pos[0][0], torch.zeros(1, FRAMES, 6, TEXT))
    ref0 = reference_model(host, model, adapters, t0)
    want0 = probe(host, host.call("CFGGuider", ref0, pos, neg, 1.0)[0], ref0, latent)
    torch.testing.assert_close(got0["d"], want0["d"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ablation", [dict(multimodal_branch=False), dict(decomposed_branch=False),
                                      dict(state_prompts=False)])
def test_ablations_change_the_tokens_as_named(host, ablation):
    model = tiny_svd()
    patched, adapters = aid_model(host, model, **ablation)
    pos, _ = svd_conds()
    tokens = expected_tokens(adapters, pos)
    width = {"multimodal_branch": 2, "decomposed_branch": 6, "state_prompts": 8}[next(iter(ablation))]
    assert tokens.shape[1] == width
    if "state_prompts" in ablation:  # the states do not matter
        t1 = toy_text_embedding(INSTRUCTION, TEXT)
        with torch.no_grad():
            other = adapters.dqformer.tokens(t1, pos[0][0], torch.randn(1, FRAMES, 6, TEXT))
        torch.testing.assert_close(other, tokens)


def test_adapters_are_the_identity_at_init(host):
    model = tiny_svd()
    attach = host.pack_module("nodes.binding.attach")
    adapters = attach.new_adapters("aid", model, CFG)
    perturb(adapters.dqformer, 1)  # the DQFormer is not zero; everything added to the UNet is
    patched = attach.attach_adapters(model, adapters)
    pos, neg = svd_conds()
    latent = torch.zeros(FRAMES, 4, 4, 4)
    want = probe(host, host.call("CFGGuider", model, pos, neg, 2.0)[0], model, latent)
    got = probe(host, host.call("CFGGuider", patched, pos, neg, 2.0)[0], patched, latent)  # no instruction: no tokens
    torch.testing.assert_close(got["d"], want["d"], rtol=1e-5, atol=1e-6)
    apos, aneg, _ = aid_conditioning(host, pos, neg)
    # with an instruction only the tokens act (deltas and adapters are zero): the hand-written reference
    ref = reference_model(host, model, None, expected_tokens(adapters, pos))
    got = probe(host, host.call("CFGGuider", patched, apos, apos, 1.0)[0], patched, latent)
    want = probe(host, host.call("CFGGuider", ref, pos, pos, 1.0)[0], ref, latent)
    torch.testing.assert_close(got["d"], want["d"], rtol=1e-4, atol=1e-5)


def test_adapters_in_a_block_equal_hand_written_block(host):
    """One spatial block of the tiny SVD with every AID part: spatial adapter beside self-attention, short- then
    long-term temporal adapters on the frame tokens, tokens and deltas in cross-attention."""
    import comfy.model_management

    model = tiny_svd()
    patched, adapters = aid_model(host, model, seed=5)
    name = host.pack_module("nodes.binding.host").describe(model).blocks_of("spatial")[0].name
    for part in ("spatial", "short_term", "long_term"):
        with torch.no_grad():
            getattr(adapters[name], part).up.weight.normal_(0, 0.2)
    comfy.model_management.load_models_gpu([patched])
    blk = patched.model.diffusion_model.get_submodule(name)
    c = blk.norm1.normalized_shape[0]
    g = torch.Generator().manual_seed(4)
    x = torch.randn(FRAMES, 4, c, generator=g)  # 4 frames of 2x2 tokens
    ctx = torch.randn(FRAMES, 1, SVD_CONTEXT, generator=g)
    tokens = torch.randn(FRAMES, 3, SVD_CONTEXT, generator=g)
    key = next(b.key for b in host.pack_module("nodes.binding.host").describe(model).blocks if b.name == name)
    to = dict(patched.model_options["transformer_options"])
    to.update(block=key[:2], block_index=key[2], activations_shape=[FRAMES, c, 2, 2], cond_or_uncond=[0],
              n_heads=blk.attn1.heads, dim_head=c // blk.attn1.heads)
    protocol = host.pack_module("adapters.protocol")

    class Left(dict):  # the call scope as the DQFormer leaves it: these tokens for the cross-attention
        def get(self, key, default=None):
            return tokens

    to[protocol.SCOPES_KEY] = protocol.Scopes(call=Left())
    a = adapters[name]
    with torch.no_grad():
        got = blk(x, context=ctx, transformer_options=to)
        h = blk.attn1(blk.norm1(x))
        h = a.spatial(h)
        hh = x + h
        hh = a.long_term(a.short_term(hh, FRAMES, 2, 2), FRAMES)
        ref = RefCrossAttention(blk.attn2._original[0], tokens, a.cross_attn)
        hh = hh + ref(blk.norm2(hh), context=ctx)
        want = blk.ff(blk.norm3(hh)) + hh
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    comfy.model_management.unload_all_models()


def training_clips():
    """Two clips of a smooth pattern moving one way per clip, plus a little noise: something to learn."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    frames = []
    for direction in (1, -1):
        for f in range(FRAMES):
            base = torch.sin(0.9 * (xx + direction * f)) + torch.cos(0.7 * yy)
            frames.append(torch.stack([base, -base, 0.5 * base, base.flip(0)]))
    return 3.0 * torch.stack(frames) + 0.1 * torch.randn(2 * FRAMES, 4, 4, 4, generator=g)


def training_conditioning(host):
    pos = svd_conds(0)[0] + svd_conds(1)[0]
    neg = svd_conds(0)[1] + svd_conds(1)[1]
    return aid_conditioning(host, pos, neg, schedule=SCHEDULE + "\n---\n" + '"0": "the blue circle rises"',
                            instruction="move the red square left, then up\nlift the blue circle")[0]


def objective(host, model, trained):
    """The denoising loss of AID on the two training clips at sigma 0.3, 1, 3 and 30 with fixed noise; ``trained``
    None: the adapters as Train Adapters creates them (same seed)."""
    simda, attach = host.pack_module("nodes.binding.training"), host.pack_module("nodes.binding.attach")
    training = host.pack_module("adapters.training")
    describe = host.pack_module("nodes.binding.host").describe
    if trained is None:
        torch.manual_seed(0)
        config = {**CFG, "width": 32, "heads": 4, "queries_per_frame": 2}
        trained = attach.attach_adapters(model, attach.new_adapters("aid", model, config))
    conditions = simda.clip_conditions(training_conditioning(host), 2)
    x0 = model.model.process_latent_in(training_clips()).reshape(2, FRAMES, 4, 4, 4)
    forward = simda.AdapterForward(trained, "v", conditions, describe(model))
    g = torch.Generator().manual_seed(9)
    total = 0.0
    with torch.no_grad():
        for sigma in (0.3, 1.0, 3.0, 30.0):
            noise = torch.randn(x0.shape, generator=g)
            s = torch.full((2,), sigma)
            total += float(training.diffusion_loss(forward, x0, None, s, noise, "v", clip=torch.arange(2)))
    return total


def _train(host, model, steps, name, resume="none", seed=0):
    clips = {"samples": training_clips()}
    apos = training_conditioning(host)
    settings = '{"width": 32, "heads": 4, "queries_per_frame": 2}'
    return host.call("VA_TrainAdapter", model, clips, apos, "aid", FRAMES, steps, 2e-3, 2, seed, "none", 0, name,
                     resume_from=resume, settings=settings, text_dropout=0.1, image_dropout=0.1, both_dropout=0.1)


def test_training_lowers_the_loss(host):
    import folder_paths

    model = tiny_svd()
    out = _train(host, model, 60, "test/aid_full")
    summary = out[3]
    assert "aid adapters for svd" in summary
    folder = folder_paths.get_folder_paths("video_adapters")[0]
    meta = host.pack_module("adapters.files").read_metadata(os.path.join(folder, "test/aid_full.safetensors"))
    # the training objective on fixed draws (both clips, three noise levels, fixed noise): trained vs at init
    trained, init = objective(host, model, out[0]), objective(host, model, None)
    assert trained < 0.99 * init, (trained, init)  # a random tiny SVD learns slowly; the benchmark trains a real one
    cfg = meta["config"]
    assert cfg["text_dim"] == TEXT and cfg["context_dim"] == SVD_CONTEXT and cfg["frames"] == FRAMES
    # SVD's noise levels were drawn from its own log-normal recipe, inside its sigma range
    tc = meta["training"]["train_config"]
    assert (tc["sigma_sampling"], tc["lognormal_mean"], tc["lognormal_std"]) == ("lognormal", 0.7, 1.6)
    assert tc["sigma_levels"]["min"] == pytest.approx(0.002, rel=1e-3)
    # resume and reload: tests/host/test_kinds_host.py, for every kind


def test_dual_cfg_with_an_instruction_is_three_native_predictions(host):
    model = tiny_svd()
    patched, adapters = aid_model(host, model)
    pos, neg = svd_conds()
    apos, aneg, _ = aid_conditioning(host, pos, neg)
    guider, summary = host.call("VA_DualCFGGuider", patched, apos, aneg, 2.0, 4.0)
    assert "AID" in summary
    latent = torch.zeros(FRAMES, 4, 4, 4)
    z = host.pack_module("nodes.binding.attach").without_adapter_text(apos)

    def single(c):
        return probe(host, host.call("CFGGuider", patched, c, c, 1.0)[0], patched, latent)["d"]

    d_full, d_img, d_none = single(apos), single(z), single(aneg)
    want = d_none + 2.0 * (d_img - d_none) + 4.0 * (d_full - d_img)
    torch.testing.assert_close(probe(host, guider, patched, latent)["d"], want, rtol=1e-4, atol=1e-5)
    assert (d_full - d_img).abs().max() > 1e-4  # the instruction matters


def test_wrong_inputs_are_refused_with_what_to_fix(host):
    model = tiny_svd()
    patched, _ = aid_model(host, model)
    pos, neg = svd_conds()
    with pytest.raises(Exception, match="width 16.*width 32"):
        host.call("VA_AIDConditioning", pos, neg, ToyTextEncoder(16), INSTRUCTION, SCHEDULE, FRAMES, model=patched)
    with pytest.raises(Exception, match="no AID adapters"):
        aid_conditioning(host, pos, neg, model=model)
    with pytest.raises(Exception, match="must start at"):
        aid_conditioning(host, pos, neg, schedule='"1": "late"')
    with pytest.raises(Exception, match="past the video's last frame 3"):
        aid_conditioning(host, pos, neg, schedule='"0": "a",\n"9": "b"')
    g = torch.Generator().manual_seed(0)
    clips = {"samples": torch.randn(FRAMES, 4, 4, 4, generator=g)}
    with pytest.raises(Exception, match="no instruction.*AID Conditioning"):
        host.call("VA_TrainAdapter", model, clips, pos, "aid", FRAMES, 2, 1e-3, 1, 0, "none", 0, "test/aid_bad")


def test_svd_conditioning_per_clip_equals_the_native_node_per_image(host):
    from devtools.tiny_models import ToyClipVision, ToyVAE

    frames = torch.rand(3, 32, 32, 3, generator=torch.Generator().manual_seed(2))
    cv, vae = ToyClipVision(SVD_CONTEXT), ToyVAE(video=False)  # SVD's image VAE: 4 channels
    pos, neg = host.call("VA_SVDClipConditioning", cv, vae, frames, 32, 32, 100, 8, 0.0)
    assert len(pos) == len(neg) == 3
    for i in range(3):
        want_pos, want_neg, _ = host.call("SVD_img2vid_Conditioning", cv, frames[i:i + 1], vae, 32, 32, FRAMES, 100, 8,
                                          0.0)
        for got, want in ((pos[i], want_pos[0]), (neg[i], want_neg[0])):
            torch.testing.assert_close(got[0], want[0])
            assert set(got[1]) == set(want[1])
            for k, v in want[1].items():
                assert torch.equal(got[1][k], v) if torch.is_tensor(v) else got[1][k] == v


def test_encoded_instructions_replace_the_text(host):
    pos = svd_conds(0)[0] + svd_conds(1)[0]
    neg = svd_conds(0)[1] + svd_conds(1)[1]
    enc = [[toy_text_embedding("a", TEXT), {}], [toy_text_embedding("b", TEXT), {}]]
    out = host.call("VA_AIDConditioning", pos, neg, ToyTextEncoder(TEXT), "", "", FRAMES, instructions=enc)[0]
    key = host.pack_module("nodes.binding.attach").ADAPTER_COND_PREFIX + "aid_text"
    for entry, (t, _) in zip(out, enc):
        torch.testing.assert_close(entry[1]["model_conds"][key].cond, t)
    with pytest.raises(Exception, match="3 conditioning entries"):
        host.call("VA_AIDConditioning", pos + pos[:1], neg, ToyTextEncoder(TEXT), "", "", FRAMES, instructions=enc)


def test_latent_shift_with_aid_is_refused(host):
    """latent_shift is SimDA's option: other kinds take it at its default or none, and refuse another mode."""
    model = tiny_svd()
    with pytest.raises(Exception, match="latent_shift=previous_frame.*set latent_shift to none"):
        host.call("VA_TrainAdapter", model, {"samples": training_clips()}, training_conditioning(host), "aid", FRAMES,
                  2, 1e-3, 1, 0, "previous_frame", 0, "test/aid_bad_shift")
