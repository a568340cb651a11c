"""The FCA and AID tiny demos in a real ComfyUI: their nodes give what a hand-written sampler of the shipped base gives
(Euler on the flow schedule, CFG against the empty prompt or AID's dual CFG written out, the clean first frame
handed to the model at every step), the FCA graph makes the base follow instructions (and FCA the single-phase
base) on held-out scenes, and the nodes say what to fix when they are misused."""

import os

import pytest
import torch

from devtools import tvp_task as tvp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEIGHTS = os.path.join(ROOT, "adapters", "weights")


def _run(host, node, **inputs):
    out = host.nodes.NODE_CLASS_MAPPINGS[node].execute(**inputs)
    return out.result if hasattr(out, "result") else out


def _flow_simple_sigmas(steps, shift):
    """ComfyUI's 'simple' schedule on a 1000-step discrete flow table, written out: t = (1000 - floor(k 1000 /
    steps)) / 1000, sigma = shift t / (1 + (shift - 1) t), then 0."""
    ts = [(1000 - int(k * 1000 / steps)) / 1000 for k in range(steps)]
    return [shift * t / (1 + (shift - 1) * t) for t in ts] + [0.0]


@torch.no_grad()
def _reference(base_file, first_frame, text, code, steps=12, cfg=2.0, shift=3.0, seed=0):
    """The demo's sample written from scratch in the base's own latent space: its patch code and normalisation
    straight from the file, ComfyUI's Wan DiT called directly."""
    from safetensors.torch import load_file

    from devtools.tiny_models import tvp_base

    tensors = load_file(base_file)
    code_ = tvp.PatchCode.from_state_dict(tensors)
    mean, std = tensors["norm/mean"].float().reshape(1, -1, 1, 1, 1), tensors["norm/std"].float().reshape(1, -1, 1, 1, 1)
    net = tvp_base(base_file).model.diffusion_model
    video = first_frame.permute(0, 3, 1, 2)[None]  # [1, 1, 3, H, W]
    first = (code_.encode(video).permute(0, 2, 1, 3, 4) - mean) / std  # [1, C, 1, h, w]
    shape = [1, first.shape[1], 8, *first.shape[3:]]
    noise = torch.randn(shape, generator=torch.manual_seed(seed))
    ctx = tvp.text_batch([text], 32, 24, code=code)[0]
    sig = _flow_simple_sigmas(steps, shift)
    x = noise * sig[0]
    for i in range(steps):
        inp = x.clone()
        inp[:, :, :1] = first
        t = torch.tensor([sig[i] * 1000.0])
        d_c = inp - sig[i] * net(inp, t, ctx)
        d_u = inp - sig[i] * net(inp, t, torch.zeros_like(ctx))
        den = d_u + cfg * (d_c - d_u)
        den[:, :, :1] = first
        x = x + (x - den) / sig[i] * (sig[i + 1] - sig[i])
    return code_.decode((x * std + mean).permute(0, 2, 1, 3, 4))[0]  # [T, 3, H, W]


@pytest.mark.parametrize("base, code", [("turns", 2), ("single-phase", 2)])
def test_demo_nodes_give_the_hand_written_sample(host, base, code):
    import nodes as core

    demo = host.pack_module("nodes.binding.instruction_demo")
    model, vae = _run(host, "VA_TinyInstructionModels", base=base)
    first, text, _, _, _ = _run(host, "VA_TinyInstructionScene", seed=3)
    pos, neg = _run(host, "VA_TinyInstructionPrompt", model=model, instruction=text)
    latent = _run(host, "VA_TinyInstructionLatent", vae=vae, image=first, frames=8)[0]
    (samples,) = core.common_ksampler(model, 0, 12, 2.0, "euler", "simple", pos, neg, latent)
    got = core.VAEDecode().decode(vae, samples)[0]  # the native decode node: [T, H, W, 3]
    want = _reference(os.path.join(WEIGHTS, demo.BASES[base][0]), first, text, code)
    assert got.shape == (8, 32, 32, 3)
    assert torch.allclose(got.permute(0, 3, 1, 2), want, atol=2e-3), (got.permute(0, 3, 1, 2) - want).abs().max()
    # the kept first frame comes back as the code reconstructs it (about 33 dB), not as a sample of it
    assert float(tvp.first_frame_psnr(got.permute(0, 3, 1, 2)[None], first.permute(0, 3, 1, 2))) > 30


def test_demo_text_codes_follow_the_shipped_adapters(host):
    """Both bases read prompts under code 2: the turns base was trained with it, the single-phase base's adapters
    were (and that base never saw a "then", where the codes differ)."""
    demo = host.pack_module("nodes.binding.instruction_demo")
    for base in tvp.DEMO_FILES:  # the Wan bases (the SVD base's AID adapters read code 1: see the AID test)
        model, _ = _run(host, "VA_TinyInstructionModels", base=base)
        assert model.attachments[demo.TEXT_KEY].code == 2
        adapted = _run(host, "VA_LoadAdapter", model=model, adapter_name=demo.BASES[base][1], strength=1.0, frames=0)[0]
        assert adapted.attachments[demo.TEXT_KEY].code == 2  # survives Load Adapters' clone


def test_demo_graph_follows_instructions_on_held_out_scenes(host):
    """8 held-out scenes x 2 instructions through the demo's nodes (the docs' table runs 32 x 3 seeds): the turns
    base follows both phases by itself; on the single-phase base, FCA makes the first phase happen."""
    from devtools.tvp_demo import graph_videos, scores

    videos, plans = graph_videos(host, "turns", range(8), fca=False)
    assert scores(videos["alone"], plans)["both"] >= 0.75  # measured 0.94 on these scenes
    videos, plans = graph_videos(host, "single-phase", range(8))
    alone, fca = scores(videos["alone"], plans), scores(videos["fca"], plans)
    assert fca["phase 1"] >= alone["phase 1"] + 0.3, (alone, fca)  # measured 0.06 -> 0.75 on these scenes


def test_scene_gives_one_start_and_two_instructions(host):
    first, text, swapped, truth, swapped_truth = _run(host, "VA_TinyInstructionScene", seed=0)
    assert text == tvp.demo_scene(0).plans[0].instruction and text != swapped
    assert tvp.reverse_directions(text) == swapped or ", then" in swapped
    assert torch.equal(truth[0], first[0]) and torch.equal(swapped_truth[0], first[0])
    assert not torch.equal(truth[-1], swapped_truth[-1])
    assert all(tvp.phase_correct(truth.permute(0, 3, 1, 2), tvp.demo_scene(0).plans[0]))
    # one motion each: the same start, each direction of the scene's instruction alone
    first1, a, b, truth_a, truth_b = _run(host, "VA_TinyInstructionScene", seed=0, pair="one motion each")
    assert [a, b] == [p.instruction for p in tvp.demo_scene(0, "one motion each").plans]
    assert torch.equal(first1, first) and not torch.equal(truth_a[-1], truth_b[-1])
    with pytest.raises(Exception, match="pair: .*phases swapped"):
        _run(host, "VA_TinyInstructionScene", seed=0, pair="both")


def test_vae_round_trip_and_latent_mask(host):
    model, vae = _run(host, "VA_TinyInstructionModels", base="turns")
    first = _run(host, "VA_TinyInstructionScene", seed=1)[0]
    latent = _run(host, "VA_TinyInstructionLatent", vae=vae, image=first, frames=8)[0]
    assert latent["samples"].shape == (1, 16, 8, 8, 8) and latent["noise_mask"].shape == (1, 1, 8, 8, 8)
    assert latent["noise_mask"][:, :, 0].eq(0).all() and latent["noise_mask"][:, :, 1:].eq(1).all()
    back = vae.decode(latent["samples"][:, :, :1])[0]  # [1, H, W, 3]
    assert float(tvp.first_frame_psnr(back.permute(0, 3, 1, 2)[None], first.permute(0, 3, 1, 2))) > 30


def test_prompt_errors_say_what_to_fix(host):
    model, _ = _run(host, "VA_TinyInstructionModels", base="turns")
    with pytest.raises(Exception, match="instruction: .*move the red circle left, then up"):
        _run(host, "VA_TinyInstructionPrompt", model=model, instruction="make it dance")
    wan = host.call("VA_TinyDemoModels", "a", "", 0)[0]
    with pytest.raises(Exception, match="Tiny Instruction Models' MODEL"):
        _run(host, "VA_TinyInstructionPrompt", model=wan, instruction="move the red circle left")
    _, vae = _run(host, "VA_TinyInstructionModels", base="turns")
    with pytest.raises(Exception, match="multiples of 4"):
        vae.encode(torch.zeros(1, 30, 30, 3))


@torch.no_grad()
def _aid_reference(host, first_frame, text, seed=0, steps=12, s_v=1.5, s_t=2.0):
    """The AID demo's sample made without its nodes: the conditions built by hand from the miniature's stand-ins
    (the image embedding, the patch code straight from the base file, the text features of the instruction and of
    the decomposer's states), the adapters attached and called through the pack's training forward (the path the
    benchmark measured them on), Euler on the flow schedule, dual CFG written out (no image and no text, image,
    image and instruction), the clean first latent frame kept at every step."""
    import comfy.conds
    from safetensors.torch import load_file

    demo = host.pack_module("nodes.binding.instruction_demo")
    attach, aid = host.pack_module("nodes.binding.attach"), host.pack_module("adapters.aid")
    registry, training = host.pack_module("adapters.registry"), host.pack_module("nodes.binding.training")
    sp = host.pack_module("adapters.state_prompts")
    base_file = os.path.join(WEIGHTS, "tvp_svd_base.safetensors")
    code = tvp.PatchCode.from_state_dict(load_file(base_file))
    model = demo.base_model(base_file)
    adapters = registry.get("aid").load(os.path.join(WEIGHTS, "video_adapters", "tvp_aid_full.safetensors")).float()
    video = first_frame.permute(0, 3, 1, 2)[None]  # [1, 1, 3, H, W]
    z0 = code.encode(video)  # [1, 1, C, h, w]: what the model sees (SD's latent scale undone)
    entries = sp.parse_schedule(tvp.decompose(text, 8))
    states = aid.per_frame_states([tvp.text_features(t, 32, 12) for _, t in entries], [f for f, _ in entries], 8)
    extras = dict(concat_latent_image=z0[:, 0] / 0.18215, fps=6, motion_bucket_id=127, augmentation_level=0.0,
                  model_conds={attach.ADAPTER_COND_PREFIX + aid.TEXT_COND: comfy.conds.CONDRegular(
                                   tvp.text_features(text, 32, 12)[None]),
                               attach.ADAPTER_COND_PREFIX + aid.STATES_COND: comfy.conds.CONDRegular(states)})
    fwd = training.AdapterForward(attach.attach_adapters(model, adapters), "flow",
                                  [(tvp.image_embedding(video[0], 64)[:, None], extras)],
                                  host.pack_module("nodes.binding.host").describe(model), kind=registry.get("aid"),
                                  adapters=adapters)
    sig = _flow_simple_sigmas(steps, 3.0)
    x = torch.randn(1, 8, *z0.shape[2:], generator=torch.manual_seed(seed)) * sig[0]
    for i in range(steps):
        x[:, :1] = z0
        den = []
        for drop_text, drop_image in ((True, True), (True, False), (False, False)):
            v = fwd(x, torch.tensor([sig[i]]), None, drop_text=torch.tensor([drop_text]),
                    drop_image=torch.tensor([drop_image]))
            den.append(x - sig[i] * v)  # flow: the clean estimate from the velocity
        none, image, full = den
        guided = none + s_v * (image - none) + s_t * (full - image)
        x = x + (x - guided) / sig[i] * (sig[i + 1] - sig[i])
    x[:, :1] = z0
    return code.decode(x)[0]  # [T, 3, H, W]


def test_aid_demo_nodes_give_the_hand_written_sample(host):
    """The AID demo's chain (Tiny Instruction Encoders, SVD_img2vid_Conditioning, MLLM State Prompt with the
    rule-based writer, AID Conditioning, Dual CFG Guider, SamplerCustomAdvanced on the kept-frame latent) gives the
    sample the shipped adapters were measured with; the base alone (KSampler, image CFG) keeps the same first frame
    and reads no instruction."""
    from devtools.tvp_demo import aid_scene_graph

    model, vae = _run(host, "VA_TinyInstructionModels", base="svd-aid")
    adapted = _run(host, "VA_LoadAdapter", model=model, adapter_name="tvp_aid_full.safetensors", strength=1.0,
                   frames=0)[0]
    first, text, swapped, _, _ = _run(host, "VA_TinyInstructionScene", seed=3)
    got = aid_scene_graph(host, model, vae, adapted, 3)
    assert got["states"] == [tvp.decompose(text, 8), tvp.decompose(swapped, 8)]
    assert got["latent"]["samples"].shape == (8, 16, 8, 8) and got["latent"]["noise_mask"][1:].eq(1).all()
    for k, instruction in enumerate((text, swapped)):
        want = _aid_reference(host, first, instruction)
        video = got["aid"][k].permute(0, 3, 1, 2)
        diff = (video - want).abs()
        assert float(diff.max()) < 3e-2 and float(diff.mean()) < 2e-3, (float(diff.max()), float(diff.mean()))
    # the adapters change the video (the base alone reads no instruction); the first frame is kept in every row
    assert float((got["aid"][0] - got["alone"]).abs().mean()) > 0.01
    for frames in (got["alone"], *got["aid"]):
        assert float(tvp.first_frame_psnr(frames.permute(0, 3, 1, 2)[None], first.permute(0, 3, 1, 2))) > 30


def test_aid_demo_encoders_and_state_writer(host):
    import nodes as core

    model, vae = _run(host, "VA_TinyInstructionModels", base="svd-aid")
    clip, clip_vision, mllm = _run(host, "VA_TinyInstructionEncoders", model=model)
    first = _run(host, "VA_TinyInstructionScene", seed=1)[0]
    # the text encoder through the native CLIPTextEncode: the miniature's text features, cut to 12 words
    cond = core.CLIPTextEncode().encode(clip, "move the red circle left")[0]
    assert torch.equal(cond[0][0][0], tvp.text_features("move the red circle left", 32, 12))
    assert torch.allclose(clip_vision.encode_image(first).image_embeds,
                          tvp.image_embedding(first.permute(0, 3, 1, 2), 64))
    # asked for more states than phases, the writer repeats the last; the schedule is the decomposer's at 2
    states, schedule, _ = _run(host, "VA_MLLMStatePrompt", image=first, instruction="move the red circle left, then up",
                               states=3, frames=8, mllm=mllm, seed=0, max_tokens=512, temporal_stride=1)
    assert states.splitlines() == ["the red circle moves left", "the red circle moves up", "the red circle moves up"]
    _, schedule, _ = _run(host, "VA_MLLMStatePrompt", image=first, instruction="lift the blue square, then drop it",
                          states=2, frames=8, mllm=mllm, seed=0, max_tokens=512, temporal_stride=1)
    assert schedule == tvp.decompose("lift the blue square, then drop it", 8)
    # the image VAE: one latent per frame, the first frame kept by the mask, back at the code's quality
    latent = _run(host, "VA_TinyInstructionLatent", vae=vae, image=first, frames=8)[0]
    assert latent["samples"].shape == (8, 16, 8, 8) and latent["noise_mask"].shape == (8, 1, 8, 8)
    assert latent["noise_mask"][0].eq(0).all() and latent["noise_mask"][1:].eq(1).all()
    back = vae.decode(latent["samples"][:1])  # [1, H, W, 3]
    assert back.shape == (1, 32, 32, 3)
    assert float(tvp.first_frame_psnr(back.permute(0, 3, 1, 2)[None], first.permute(0, 3, 1, 2))) > 30


def test_aid_demo_errors_say_what_to_fix(host):
    svd, _ = _run(host, "VA_TinyInstructionModels", base="svd-aid")
    wan, _ = _run(host, "VA_TinyInstructionModels", base="turns")
    with pytest.raises(Exception, match="AID Conditioning"):
        _run(host, "VA_TinyInstructionPrompt", model=svd, instruction="move the red circle left")
    with pytest.raises(Exception, match="Tiny Instruction Prompt"):
        _run(host, "VA_TinyInstructionEncoders", model=wan)
    mllm = _run(host, "VA_TinyInstructionEncoders", model=svd)[2]
    first = _run(host, "VA_TinyInstructionScene", seed=1)[0]
    with pytest.raises(Exception, match="instruction: .*move the red circle left, then up"):
        _run(host, "VA_MLLMStatePrompt", image=first, instruction="make it dance", states=2, frames=8, mllm=mllm,
             seed=0, max_tokens=512, temporal_stride=1)
