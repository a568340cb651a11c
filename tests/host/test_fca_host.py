"""FCA on a tiny real-architecture Wan 2.1 T2V inside ComfyUI: the attached branches equal a hand-written
model (the frozen blocks plus an explicit masked attention over [text; initial-frame states; frame-wise text]),
the captured states equal a forward instrumented by hand, the initial-frames pass runs once per sampling run
with KSampler and SamplerCustomAdvanced, the negative keeps the initial frames, and training through Train
Adapters lowers the loss and round-trips through Load Adapters."""

import gc
import math
import os

import pytest
import torch

from devtools.tiny_models import WAN_TEXT_DIM

SETTINGS = dict(frames=3, queries_per_frame=2, text_width=32, text_heads=2)
T, H, W = 3, 4, 4  # latent frames and size: grid (3, 2, 2) with Wan's (1, 2, 2) patches


def cond(seed, tokens=8):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, WAN_TEXT_DIM, generator=g), {}]]


def fca_set(host, model, seed=0, **cfg):
    attach = host.pack_module("nodes.binding.attach")
    torch.manual_seed(seed)
    ad = attach.new_adapters("fca", model, {**SETTINGS, **cfg})
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in ad.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return ad


def forward(m, x, sigma, ctx, conds=None, cond_or_uncond=(0,)):
    """``apply_model`` of a patched MODEL with its patches and wrappers, and adapter conditions ``conds``."""
    import comfy.model_management
    import comfy.patcher_extension

    comfy.model_management.load_models_gpu([m])
    opts = dict(m.model_options["transformer_options"])
    opts["wrappers"] = {}
    comfy.patcher_extension.merge_nested_dicts(opts["wrappers"], m.wrappers, copy_dict1=False)
    opts["cond_or_uncond"] = list(cond_or_uncond)
    extra = {"video_adapters_" + k: v for k, v in (conds or {}).items()}
    with torch.no_grad():
        return m.model.apply_model(x, sigma, c_crossattn=ctx, transformer_options=opts, **extra), opts


def hand_states(model, frames, timestep, ctx):
    """Every block's output of the frozen Wan on the initial frames, by a forward instrumented by hand."""
    dm = model.get_model_object("diffusion_model")
    seen = []
    patches = {}
    for i in range(len(dm.blocks)):
        def rec(args, extra):
            out = extra["original_block"](args)
            seen.append(out["img"].clone())
            return out
        patches[("double_block", i)] = rec
    with torch.no_grad():
        dm(frames, timestep, ctx, transformer_options={"patches_replace": {"dit": patches}})
    return seen


def reference_branch(br, x, text, init, frame_text, frames, pe=None):
    """The branch written out with an explicit [N, M] frame-wise identity mask and a softmax by hand; with ``pe``
    (the block's rotary table) the queries and the initial-frame keys rotated by ComfyUI's own ``apply_rope1``, as
    Wan's self-attention rotates its queries and keys."""
    b, n, c = x.shape
    heads, d = br.heads, c // br.heads
    m = frame_text.shape[2]
    kv = torch.cat([br.norm_text(text), br.norm_init(init), br.norm_frames(frame_text).flatten(1, 2)], 1)
    shared = text.shape[1] + init.shape[1]
    allowed = torch.ones(n, kv.shape[1], dtype=torch.bool)
    allowed[:, shared:] = (torch.arange(n) // (n // frames))[:, None] == (torch.arange(frames * m) // m)[None, :]
    q = br.q(br.norm_x(x)).reshape(b, n, heads, d)
    k = br.k(kv).reshape(b, -1, heads, d)
    if pe is not None:
        from comfy.ldm.flux.math import apply_rope1

        lt, li = text.shape[1], init.shape[1]
        q = apply_rope1(q, pe[:, :n])
        k = torch.cat([k[:, :lt], apply_rope1(k[:, lt:lt + li], pe[:, :li]), k[:, lt + li:]], 1)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    v = br.v(kv).reshape(b, -1, heads, d).transpose(1, 2)
    s = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~allowed, float("-inf"))
    return br.scale * br.o((s.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


@pytest.fixture(scope="module")
def wan(host, tiny):
    return tiny.load("tiny_wan_prior.safetensors")


def _inputs(host, seed=3, batch=1):
    fca = host.pack_module("adapters.fca")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 16, T, H, W, generator=g)
    ctx = torch.randn(batch, 8, WAN_TEXT_DIM, generator=g)
    first = torch.randn(batch, 16, 1, H, W, generator=g)
    return x, ctx, fca.initial_frame_conds(first, noise_step=1, seed=seed)


def test_capture_returns_the_frozen_models_hidden_states(host, wan):
    fca = host.pack_module("adapters.fca")
    ad = fca_set(host, wan)
    patched = host.pack_module("nodes.binding.attach").attach_adapters(wan, ad, 0.8)
    x, ctx, conds = _inputs(host)
    computed = []
    original = fca.InitialFrameStates._compute

    def spy(self, *a, **k):
        computed.append(original(self, *a, **k))
        return computed[-1]

    fca.InitialFrameStates._compute = spy
    try:
        forward(patched, x, torch.tensor([0.6]), ctx, conds)
    finally:
        fca.InitialFrameStates._compute = original
    entry, = computed
    want = hand_states(wan, conds[fca.FRAMES_COND], conds[fca.TIMESTEP_COND][:, 0], ctx)
    assert entry["grid"] == (1, 2, 2) and len(want) == len(ad)
    for i, name in enumerate(ad.block_names()):
        torch.testing.assert_close(entry["states"][name], want[i], rtol=0, atol=0)


@pytest.mark.parametrize("positions", ["none", "rope"])
def test_fca_model_equals_hand_written_model(host, wan, positions):
    """Wan with FCA attached (strength 0.7), against the frozen Wan patched by hand: each block's output plus
    0.7 times the explicit masked attention over [text; that block's initial-frame states; its frame-wise text]
    (``rope``: queries and initial-frame keys rotated by the block's own rotary table with ComfyUI's function)."""
    attach = host.pack_module("nodes.binding.attach")
    fca = host.pack_module("adapters.fca")
    ad = fca_set(host, wan, seed=4, positions=positions, head_dim=wan.model.diffusion_model.dim // wan.model.diffusion_model.num_heads)
    patched = attach.attach_adapters(wan, ad, 0.7)
    x, ctx, conds = _inputs(host, seed=5, batch=2)
    sigma = torch.tensor([0.6, 0.3])
    got, _ = forward(patched, x, sigma, ctx, conds, cond_or_uncond=(0, 1))
    states = hand_states(wan, conds[fca.FRAMES_COND].expand(2, -1, -1, -1, -1),
                         conds[fca.TIMESTEP_COND][:, 0].expand(2), ctx)
    ref = wan.clone()
    for i, name in enumerate(ad.block_names()):
        blk = ad[name]

        def block(args, extra, i=i, blk=blk):
            out = extra["original_block"](args)
            text, init = args["txt"], states[i]
            ft = blk.text(text, init[:, :4], T)  # image features: the first initial frame's 2x2 tokens
            pe = args["pe"] if positions == "rope" else None
            return {**out, "img": out["img"] + 0.7 * reference_branch(blk.branch, args["img"], text, init, ft, T, pe)}

        ref.set_model_patch_replace(block, "dit", "double_block", i)
    want, _ = forward(ref, x, sigma, ctx)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    base, _ = forward(wan, x, sigma, ctx)
    assert (got - base).abs().max() > 1e-3
    # without the initial frames the FCA model refuses to guess
    with pytest.raises(Exception, match="Initial Frames Conditioning"):
        forward(patched, x, sigma, ctx)


def _save_fca(host, wan, name, **cfg):
    import folder_paths

    ad = fca_set(host, wan, seed=6, **cfg)
    folder = folder_paths.get_folder_paths("video_adapters")[0]
    os.makedirs(os.path.join(folder, "test"), exist_ok=True)
    ad.save(os.path.join(folder, name))
    return ad


def test_initial_frames_once_per_run_with_ksampler_and_sampler_custom_advanced(host, tiny, wan):
    import comfy.samplers

    fca = host.pack_module("adapters.fca")
    _save_fca(host, wan, "test/fca_sampling.safetensors")
    model = host.call("VA_LoadAdapter", wan, "test/fca_sampling.safetensors", 1.0)[0]
    ad = model.get_additional_models_with_key("video_adapters")[-1].model
    assert isinstance(ad, fca.FCAAdapterSet)
    vae = host.call("VATest_ToyVAE", "video")[0]
    image = torch.rand(1, H * 8, W * 8, 3, generator=torch.Generator().manual_seed(0))
    pos, neg = host.call("VA_InitialFramesConditioning", cond(0), cond(1), vae, image, 1, 1, seed=0)
    # the negative keeps the initial frames (only its text differs)
    key = "video_adapters_" + fca.FRAMES_COND
    torch.testing.assert_close(pos[0][1]["model_conds"][key].cond, neg[0][1]["model_conds"][key].cond)
    latent = {"samples": torch.zeros(1, 16, T, H, W)}
    before = ad.initial_frame_passes
    out = host.call("KSampler", model, 0, 3, 4.0, "euler", "simple", pos, neg, latent, 1.0)[0]["samples"]
    assert ad.initial_frame_passes == before + 1      # 3 steps x (cond + uncond): one initial-frames pass
    host.call("KSampler", model, 0, 3, 4.0, "euler", "simple", pos, neg, latent, 1.0)
    assert ad.initial_frame_passes == before + 2      # a new run computes them again
    gc.collect()
    assert ad.cached_initial_states() == 0            # and frees them when it ends
    guider = host.call("CFGGuider", model, pos, neg, 4.0)[0]
    sigmas = host.call("BasicScheduler", model, "simple", 3, 1.0)[0]
    again = host.call("SamplerCustomAdvanced", host.call("RandomNoise", 0)[0], guider,
                      comfy.samplers.sampler_object("euler"), sigmas, latent)[0]["samples"]
    assert ad.initial_frame_passes == before + 3
    torch.testing.assert_close(again, out, rtol=1e-4, atol=1e-4)  # the same sampling, the other sampler node
    # the run scope is cleared by the model's cleanup callback when sampling ends, although the sigmas and the
    # guider are still held (as ComfyUI's cache holds a scheduler's output)
    assert ad.cached_initial_states() == 0
    del sigmas, guider


def test_initial_frames_conditioning_checks_its_inputs(host):
    vae = host.call("VATest_ToyVAE", "video")[0]
    two = torch.rand(2, 32, 32, 3)
    with pytest.raises(Exception, match="5 images"):
        host.call("VA_InitialFramesConditioning", cond(0), cond(1), vae, two, 2, 1)
    pos, _ = host.call("VA_InitialFramesConditioning", cond(0), cond(1), vae, torch.rand(5, 32, 32, 3), 2, 1)
    assert pos[0][1]["model_conds"]["video_adapters_fca_frames"].cond.shape == (1, 16, 2, 4, 4)
    with pytest.raises(Exception, match="Wan 2.1"):
        host.call("VA_InitialFramesConditioning", cond(0), cond(1), host.call("VATest_ToyVAE", "image")[0],
                  torch.rand(1, 32, 32, 3), 1, 1)


def _clips():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 16, 1, H, W, generator=g)
    return {"samples": base + 0.3 * torch.randn(2, 16, T, H, W, generator=g)}  # later frames follow the first


@pytest.fixture(scope="module")
def clips_node(host):
    """Test-only node: the two training clips of :func:`_clips` (stands in for Load Training Clips)."""
    from comfy_api.latest import io

    class FCAClips(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_FCAClips", category="_for_testing", outputs=[io.Latent.Output()])

        @classmethod
        def execute(cls):
            return io.NodeOutput(_clips())

    host.nodes.NODE_CLASS_MAPPINGS["VATest_FCAClips"] = FCAClips
    return "VATest_FCAClips"


def train_prompt(name, steps, resume="none"):
    """Train Adapters (kind fca) on the two clips with one caption each, through the executor."""
    conditioning = lambda seed: {"class_type": "VATest_Conditioning",  # noqa: E731  (= cond(seed))
                                 "inputs": {"dim": WAN_TEXT_DIM, "tokens": 8, "seed": seed}}
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_wan_prior.safetensors",
                                                     "weight_dtype": "default"}},
        "2": {"class_type": "VATest_FCAClips", "inputs": {}},
        "3": conditioning(0), "4": conditioning(1),
        "5": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["3", 0], "conditioning_2": ["4", 0]}},
        "6": {"class_type": "VA_TrainAdapter", "inputs": {
            "model": ["1", 0], "clips": ["2", 0], "positive": ["5", 0], "kind": "fca", "frames": 0, "steps": steps,
            "learning_rate": 3e-3, "batch_size": 2, "seed": 0, "latent_shift": "none", "checkpoint_every": 0,
            "file_name": name, "resume_from": resume,
            "settings": '{"queries_per_frame": 2, "text_width": 32, "text_heads": 2}'}},
    }


def test_training_follows_the_recipe_and_lowers_the_loss(host, wan, clips_node):
    """The paper's recipe (cosine after a warm-up, betas 0.9/0.95, clipping) is used and recorded."""
    import folder_paths

    files = host.pack_module("adapters.files")
    steps = 40
    out = host.run(train_prompt("test/fca_full", steps), ["6"])["6"]
    folder = folder_paths.get_folder_paths("video_adapters")[0]
    meta = files.read_metadata(os.path.join(folder, "test/fca_full.safetensors"))
    assert meta["kind"] == "fca" and meta["config"]["frames"] == T     # the query table fits the clips
    tr = meta["training"]
    assert tr["final_loss"] < tr["first_loss"], tr
    assert tr["train_recipe"] == {"lr_schedule": "cosine", "warmup_steps": 4, "betas": [0.9, 0.95], "grad_clip": 1.0}
    assert tr["train_config"]["lr_schedule"] == "cosine" and tr["train_config"]["warmup_steps"] == 4
    assert "cosine learning rate after 4 warm-up steps" in out[3]
    # the denoising error on the training clips at fixed noise and levels: trained FCA vs the frozen base
    ad = out[0].get_additional_models_with_key("video_adapters")[-1].model
    x0 = wan.model.process_latent_in(_clips()["samples"])
    conds = host.pack_module("adapters.registry").get("fca").training_conds(ad, x0, torch.tensor([0, 1]))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    ctx = torch.cat([cond(0)[0][0], cond(1)[0][0]])

    def error(m):
        total = 0.0
        for s in (0.3, 0.5, 0.7):
            d, _ = forward(m, (1 - s) * x0 + s * noise, torch.tensor([s, s]), ctx, conds)
            total += float(((d - x0) ** 2).mean())
        return total

    assert error(out[0]) < 0.9 * error(wan)
    # Cancel, resume to the same total and reload: tests/host/test_kinds_host.py, for every kind
