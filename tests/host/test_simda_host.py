"""SimDA inside a real ComfyUI: latent-shift attention against an explicit reference on tiny SD 1.5 and SVD,
refusal on Wan, zero-initialised adapters as the identity (SD 1.5, SVD, Wan), training through the executor,
save/load round trip, wrong-family refusal, and DDIM inversion round trips."""

import os

import pytest
import torch
import torch.nn.functional as F

from devtools.tiny_models import SD_TEXT_DIM, SVD_CONTEXT, WAN_TEXT_DIM, _randomise, tiny_svd

SD = "tiny_sd15_prior.safetensors"
WAN = "tiny_wan_domain.safetensors"


def cond(dim, seed, tokens=8, **extra):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, dim, generator=g), dict(extra)]]


def smooth_frames(frames=4, size=4, seed=0, channels=4):
    """Frames in the batch with a shared base and a small drift, like consecutive video frames."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, channels, size, size, generator=g)
    drift = torch.randn(1, channels, size, size, generator=g)
    t = torch.linspace(0, 1, frames).reshape(frames, 1, 1, 1)
    return base + 0.5 * t * drift


def sample(host, model, pos, neg, latent, cfg=3.0, steps=1, sampler="euler", seed=0):
    guider = host.call("CFGGuider", model, pos, neg, cfg)[0]
    sigmas = host.call("BasicScheduler", model, "simple", steps, 1.0)[0]
    out = host.call("SamplerCustomAdvanced", host.call("RandomNoise", seed)[0], guider,
                    host.call("KSamplerSelect", sampler)[0], sigmas, {"samples": latent.clone()})
    return out[0]["samples"]


@pytest.fixture(scope="module")
def sd(host, tiny):
    return tiny.load(SD)


@pytest.fixture(scope="module")
def wan(host, tiny):
    return tiny.load(WAN)


@pytest.fixture(scope="module")
def svd(host):
    return tiny_svd()


def svd_conds(frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(1, 4, 4, 4, generator=g)
    pos = cond(SVD_CONTEXT, seed + 1, tokens=1, concat_latent_image=image, fps=6, motion_bucket_id=127,
               augmentation_level=0.0)
    neg = cond(SVD_CONTEXT, seed + 2, tokens=1, concat_latent_image=torch.zeros_like(image), fps=6,
               motion_bucket_id=127, augmentation_level=0.0)
    return pos, neg


def reference_model(host, model, mode, frames, spatial_only=False):
    """The model with every spatial self-attention replaced by attention over explicitly shifted, already
    projected keys/values (``latent_shift_attention``), with a fixed frame count."""
    ls = host.pack_module("adapters.latent_shift")
    hostdesc = host.pack_module("nodes.binding.host")
    m = model.clone()

    def attn(q, k, v, extra):
        b, _, h, w = extra["activations_shape"]
        if q.shape[0] != b or q.shape[1] != h * w:  # SVD temporal block: plain attention
            return F.scaled_dot_product_attention(*(ls._split_heads(t, extra["n_heads"]) for t in (q, k, v))) \
                .transpose(1, 2).flatten(2)
        return ls.latent_shift_attention(q, k, v, frames, h, w, mode, heads=extra["n_heads"])

    for blk in hostdesc.describe(model).blocks_of("spatial"):
        kind, bid, idx = blk.key
        m.set_model_attn1_replace(attn, kind, bid, idx)
    return m


# ----------------------------------------------------------------------------------------------------
# latent-shift attention


@pytest.mark.parametrize("mode", ["simda", "previous_frame"])
def test_sd_latent_shift_equals_explicit_reference_under_cfg(host, sd, mode):
    """cond and uncond run in one batch of 8 frames; the patch must treat them as two videos of 4."""
    x = smooth_frames(4)
    pos, neg = cond(SD_TEXT_DIM, 0), cond(SD_TEXT_DIM, 1)
    patched = host.call("VA_LatentShiftPatcher", sd, mode, 0, 0.0, 1.0)[0]
    ours = sample(host, patched, pos, neg, x)
    ref = sample(host, reference_model(host, sd, mode, 4), pos, neg, x)
    base = sample(host, sd, pos, neg, x)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours[0], base[0], rtol=1e-4, atol=1e-5)  # frame 0 unchanged
    assert (ours[1:] - base[1:]).abs().max() > 1e-4


def test_sd_several_videos_in_one_batch(host, sd):
    x = torch.cat([smooth_frames(3, seed=1), smooth_frames(3, seed=2)])
    pos, neg = cond(SD_TEXT_DIM, 0), cond(SD_TEXT_DIM, 1)
    ours = sample(host, host.call("VA_LatentShiftPatcher", sd, "simda", 3, 0.0, 1.0)[0], pos, neg, x)
    ref = sample(host, reference_model(host, sd, "simda", 3), pos, neg, x)
    base = sample(host, sd, pos, neg, x)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours[[0, 3]], base[[0, 3]], rtol=1e-4, atol=1e-5)  # first frame of each video


def test_frames_that_do_not_divide_the_batch_are_refused(host, sd):
    patched = host.call("VA_LatentShiftPatcher", sd, "simda", 3, 0.0, 1.0)[0]
    with pytest.raises(Exception, match="frames=3"):
        sample(host, patched, cond(SD_TEXT_DIM, 0), cond(SD_TEXT_DIM, 1), smooth_frames(4))


def test_percent_window_and_block_selection(host, sd):
    x = smooth_frames(4)
    pos, neg = cond(SD_TEXT_DIM, 0), cond(SD_TEXT_DIM, 1)
    base = sample(host, sd, pos, neg, x, steps=2)
    late = host.call("VA_LatentShiftPatcher", sd, "simda", 0, 0.99, 1.0)[0]  # only the very last sigmas
    torch.testing.assert_close(sample(host, late, pos, neg, x, steps=2), base, rtol=1e-4, atol=1e-5)
    full = sample(host, host.call("VA_LatentShiftPatcher", sd, "simda", 0, 0.0, 1.0)[0], pos, neg, x, steps=2)
    mid = sample(host, host.call("VA_LatentShiftPatcher", sd, "simda", 0, 0.0, 1.0, "middle")[0], pos, neg, x, steps=2)
    assert (mid - base).abs().max() > 1e-5 and (mid - full).abs().max() > 1e-5


def test_svd_spatial_blocks_only(host, svd):
    frames = 4
    x = smooth_frames(frames)
    pos, neg = svd_conds(frames)
    patched = host.call("VA_LatentShiftPatcher", svd, "simda", 0, 0.0, 1.0)[0]
    ours = sample(host, patched, pos, neg, x, cfg=2.0)
    ref = sample(host, reference_model(host, svd, "simda", frames), pos, neg, x, cfg=2.0)
    base = sample(host, svd, pos, neg, x, cfg=2.0)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    assert (ours - base).abs().max() > 1e-5


def test_wan_is_refused(host, wan):
    common = host.pack_module("nodes.common")
    with pytest.raises(common.VideoAdapterError, match="full 3D attention"):
        host.call("VA_LatentShiftPatcher", wan, "simda", 0, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------
# adapters through the patch API


def _fresh(host, model):
    return host.pack_module("nodes.binding.attach").new_adapters("simda", model, {"shift_mode": "none"})


def _perturb(adapters, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in adapters.named_parameters():
            if ".up." in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))


def _cases(host, request, family):
    if family == "sd":
        return request.getfixturevalue("sd"), cond(SD_TEXT_DIM, 0), cond(SD_TEXT_DIM, 1), smooth_frames(4)
    if family == "svd":
        pos, neg = svd_conds(4)
        return request.getfixturevalue("svd"), pos, neg, smooth_frames(4)
    g = torch.Generator().manual_seed(0)
    return (request.getfixturevalue("wan"), cond(WAN_TEXT_DIM, 0), cond(WAN_TEXT_DIM, 1),
            torch.randn(1, 16, 2, 4, 4, generator=g))


@pytest.mark.parametrize("family", ["sd", "svd", "wan"])
def test_zero_init_adapters_are_identity_and_unpatched_clone_restores(host, request, family):
    model, pos, neg, x = _cases(host, request, family)
    patch = host.pack_module("nodes.binding.attach")
    base = sample(host, model, pos, neg, x, cfg=2.0)
    adapters = _fresh(host, model)
    injected = patch.attach_adapters(model, adapters, 1.0)
    torch.testing.assert_close(sample(host, injected, pos, neg, x, cfg=2.0), base, rtol=0, atol=1e-6)
    _perturb(adapters)
    changed = sample(host, injected, pos, neg, x, cfg=2.0)
    assert torch.isfinite(changed).all() and (changed - base).abs().max() > 1e-4
    half = sample(host, patch.attach_adapters(model, adapters, 0.0), pos, neg, x, cfg=2.0)
    torch.testing.assert_close(half, base, rtol=0, atol=1e-6)  # strength 0 = base
    torch.testing.assert_close(sample(host, model, pos, neg, x, cfg=2.0), base, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------
# training, files


@pytest.fixture(scope="module")
def frames_node(host, tiny):
    from comfy_api.latest import io

    class TestFrames(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_Frames", category="_for_testing",
                             inputs=[io.Int.Input("frames", default=4), io.Int.Input("seed", default=0)],
                             outputs=[io.Latent.Output()])

        @classmethod
        def execute(cls, frames, seed):
            return io.NodeOutput({"samples": smooth_frames(frames, seed=seed)})

    host.nodes.NODE_CLASS_MAPPINGS["VATest_Frames"] = TestFrames
    return "VATest_Frames"


def train_prompt(name, steps=10, lr=1e-2):
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": SD, "weight_dtype": "default"}},
        "2": {"class_type": "VATest_Frames", "inputs": {"frames": 4, "seed": 0}},
        "3": {"class_type": "VATest_Conditioning", "inputs": {"dim": SD_TEXT_DIM, "tokens": 8, "seed": 0}},
        "4": {"class_type": "VA_TrainAdapter", "inputs": {
            "model": ["1", 0], "clips": ["2", 0], "positive": ["3", 0], "kind": "simda", "frames": 0,
            "steps": steps, "learning_rate": lr, "batch_size": 1, "seed": 0, "latent_shift": "simda",
            "checkpoint_every": 0, "file_name": name}},
    }


def eval_loss(host, model, x0, context, seed=0, n=6):
    """Loss of ``model`` on fixed noise levels and noise (eps parameterisation, frames as one video)."""
    import comfy.model_management

    simda = host.pack_module("nodes.binding.training")
    training = host.pack_module("adapters.training")
    comfy.model_management.load_models_gpu([model])
    fwd = simda.AdapterForward(model, "eps", [(context[:1], {})], host.pack_module("nodes.binding.host").describe(model))
    g = torch.Generator().manual_seed(seed)
    sig = training.discrete_sigmas(training.TrainConfig())[torch.linspace(50, 950, n).long()].float()
    total = 0.0
    with torch.no_grad():
        for s in sig:
            noise = torch.randn(x0.shape, generator=g)
            total += float(training.diffusion_loss(fwd, x0, context, s.reshape(1), noise, "eps"))
    return total / n


@pytest.fixture(scope="module")
def trained(host, tiny, frames_node):
    # Sample with latent shift through the executor first (inference mode), as a workflow would before
    # training: nothing cached then may break autograd later.
    host.pack_module("adapters.latent_shift")._flat_index.cache_clear()
    sampling = {k: v for k, v in train_prompt("unused").items() if k != "4"}
    sampling["5"] = {"class_type": "VA_LatentShiftPatcher", "inputs": {
        "model": ["1", 0], "mode": "simda", "frames": 0, "start_percent": 0.0, "end_percent": 1.0}}
    sampling["6"] = {"class_type": "KSampler", "inputs": {
        "model": ["5", 0], "seed": 0, "steps": 1, "cfg": 2.0, "sampler_name": "euler", "scheduler": "normal",
        "denoise": 1.0, "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["2", 0]}}
    host.run(sampling, ["6"])
    prompt = train_prompt("simda/test_clip")
    result = host.run(prompt, ["4"])
    return result["4"]


def test_training_through_executor_reduces_loss(host, trained, sd):
    model, rel, curve, summary = trained
    assert rel == "simda/test_clip.safetensors"
    assert curve.shape[0] == 1 and curve.shape[-1] == 3
    assert "trainable parameters" in summary and "10 steps" in summary
    folder = os.path.join(host.models_dir, "video_adapters")
    assert os.path.exists(os.path.join(folder, rel))
    assert os.path.exists(os.path.join(folder, "simda/test_clip_checkpoint.safetensors"))
    x0 = sd.model.process_latent_in(smooth_frames(4))[None]
    ctx = cond(SD_TEXT_DIM, 0)[0][0]  # VATest_Conditioning with seed 0 draws the same tensor
    before = eval_loss(host, host.call("VA_LatentShiftPatcher", sd, "simda", 0, 0.0, 1.0)[0], x0, ctx)
    after = eval_loss(host, model, x0, ctx)
    assert after < before, (before, after)


def test_load_round_trip_and_strength(host, trained, sd):
    model = trained[0]
    pos, neg, x = cond(SD_TEXT_DIM, 0), cond(SD_TEXT_DIM, 1), smooth_frames(4)
    loaded, summary = host.call("VA_LoadAdapter", sd, "simda/test_clip.safetensors", 1.0)
    assert "simda adapters for sd15" in summary
    torch.testing.assert_close(sample(host, loaded, pos, neg, x), sample(host, model, pos, neg, x), rtol=0, atol=1e-6)
    zero = host.call("VA_LoadAdapter", sd, "simda/test_clip.safetensors", 0.0)[0]  # latent shift only
    shift = host.call("VA_LatentShiftPatcher", sd, "simda", 0, 0.0, 1.0)[0]
    torch.testing.assert_close(sample(host, zero, pos, neg, x), sample(host, shift, pos, neg, x), rtol=0, atol=1e-6)


def test_wrong_family_and_kind_refused(host, trained, wan):
    common = host.pack_module("nodes.common")
    with pytest.raises(common.VideoAdapterError, match="'sd15' models, but model is 'wan21'"):
        host.call("VA_LoadAdapter", wan, "simda/test_clip.safetensors", 1.0)
    with pytest.raises(common.VideoAdapterError, match="training checkpoint"):
        host.call("VA_LoadAdapter", wan, "simda/test_clip_checkpoint.safetensors", 1.0)


def test_wan_training_needs_latent_shift_none(host, wan):
    common = host.pack_module("nodes.common")
    with pytest.raises(common.VideoAdapterError, match="latent_shift"):
        host.call("VA_TrainAdapter", wan, {"samples": torch.zeros(1, 16, 2, 4, 4)}, cond(WAN_TEXT_DIM, 0), "simda",
                  0, 2, 1e-3, 1, 0, "simda", 0, "simda/wan_test")


# ----------------------------------------------------------------------------------------------------
# DDIM inversion


def reconstruct(host, model, pos, latent, steps):
    noised, sigmas = host.call("VA_DDIMInversion", model, pos, {"samples": latent.clone()}, steps, 1.0, "simple")
    guider = host.call("CFGGuider", model, pos, pos, 1.0)[0]
    out = host.call("SamplerCustomAdvanced", host.call("DisableNoise")[0], guider,
                    host.call("KSamplerSelect", "euler")[0], sigmas, noised)
    return out[0]["samples"], noised["samples"], sigmas


@pytest.mark.parametrize("family", ["sd", "wan"])
def test_inversion_round_trip(host, request, family):
    if family == "sd":
        model, pos, x = request.getfixturevalue("sd"), cond(SD_TEXT_DIM, 0), smooth_frames(4)
    else:
        g = torch.Generator().manual_seed(3)
        model, pos, x = request.getfixturevalue("wan"), cond(WAN_TEXT_DIM, 0), torch.randn(1, 16, 2, 4, 4, generator=g)
    errors = {}
    for steps in (5, 20, 50):
        rec, noised, sigmas = reconstruct(host, model, pos, x, steps)
        assert len(sigmas) == steps + 1 and float(sigmas[-1]) == 0.0
        assert torch.isfinite(noised).all()
        errors[steps] = float((rec - x).abs().max() / x.abs().max())
    assert (noised - x).abs().max() > 0.5 * x.abs().max()  # it did move away from the input
    print(f"inversion round trip ({family}): relative max error by steps {errors}")
    # first-order method: the error shrinks about linearly with the step size
    assert errors[50] < 0.5 * errors[5] and errors[50] < 0.05, errors


def test_host_description_and_training_noise(host, sd, svd, wan):
    """One description per model; training noise levels come from each model's own schedule."""
    describe = host.pack_module("nodes.binding.host").describe
    common = host.pack_module("nodes.common")
    d = describe(sd)
    assert (d.family, d.architecture, d.prediction, d.sampler_space, d.frame_layout, d.text_width) == \
        ("sd15", "unet", "eps", "eps", "batch", SD_TEXT_DIM)
    assert {b.kind for b in d.blocks} == {"spatial"}
    v = describe(svd)
    assert v.family == "svd" and v.model_type == "V_PREDICTION_EDM" and v.prediction == "v"
    assert {b.kind for b in v.blocks} == {"spatial", "temporal"}
    w = describe(wan)
    assert (w.family, w.architecture, w.prediction, w.frame_layout, w.text_width, w.patch_size) == \
        ("wan21", "wan", "flow", "time", WAN_TEXT_DIM, (1, 2, 2))
    assert [b.name for b in w.blocks] == [f"blocks.{i}" for i in range(len(w.blocks))]
    binding = host.pack_module("nodes.binding.training")
    noise = binding.training_noise(svd)  # SVD's own EDM recipe: log-normal noise levels inside its sigma range
    assert (noise["sigma_sampling"], noise["lognormal_mean"], noise["lognormal_std"]) == ("lognormal", 0.7, 1.6)
    assert min(noise["sigma_table"]) == pytest.approx(0.002, rel=1e-3) and max(noise["sigma_table"]) == pytest.approx(700, rel=1e-3)
    # a run resumed from a checkpoint of an earlier version keeps drawing as it started
    old = binding.training_noise(svd, resume_meta={"train_config": {"sigma_sampling": "schedule"}})
    assert old["sigma_sampling"] == "schedule" and len(old["sigma_table"]) == 1000
    noise = host.pack_module("nodes.binding.training").training_noise(sd)
    assert min(noise["sigma_table"]) == pytest.approx(0.0292, rel=1e-2) and max(noise["sigma_table"]) == pytest.approx(14.61, rel=1e-2)
    assert host.pack_module("nodes.binding.training").training_noise(wan) == {"sigma_sampling": "flow_shift", "flow_shift": 8.0}
    # core's ModelSamplingSD3 before Train Adapters sets the shift training draws at (docs/aid.md: adapters that steer
    # learn at high noise)
    import importlib

    shifted = importlib.import_module("comfy_extras.nodes_model_advanced").ModelSamplingSD3().patch(wan, shift=16.0)[0]
    assert binding.training_noise(shifted) == {"sigma_sampling": "flow_shift", "flow_shift": 16.0}
    assert binding.training_noise(wan)["flow_shift"] == 8.0  # the original model is untouched


@pytest.mark.parametrize("family", ["sd15", "wan21"])
def test_files_written_by_0_2_0_load_and_sample_exactly_as_then(host, tiny, family):
    """Adapter files written by version 0.2.0 (tests/host/data, with the outputs 0.2.0 sampled from them: SD 1.5
    with latent shift, Wan with attention and FFN adapters) load through Load Adapters and give the same
    samples today."""
    import shutil

    from safetensors.torch import load_file

    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    name = f"simda_0.2.0_{family}.safetensors"
    target = os.path.join(host.models_dir, "video_adapters", "compat", name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(os.path.join(data, name), target)
    model = tiny.load(SD if family == "sd15" else WAN)
    dim, latent = (SD_TEXT_DIM, torch.zeros(4, 4, 4, 4)) if family == "sd15" else (WAN_TEXT_DIM, torch.zeros(1, 16, 2, 4, 4))
    patched = host.call("VA_LoadAdapter", model, f"compat/{name}", 0.8, 0)[0]
    got = sample(host, patched, cond(dim, 0), cond(dim, 1), latent, cfg=2.0, steps=2)
    want = load_file(os.path.join(data, "simda_0.2.0_outputs.safetensors"))[family]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # float rounding of values around 100
