"""Every adapter kind through the one trainer and the one loader, in one parameterised test: Train Adapters
trains, a run cancelled half-way and resumed from its checkpoint ends with the same weights as the uninterrupted run, Load
Adapters gives back exactly the trained tensors and a model that predicts as the trained one, and one training
run describes the host model once and resolves its kind once. (Exact resume of the training loop itself is
proven host-free in tests/test_training.py; each kind's own behaviour is in its own test file.)"""

import os

import pytest
import torch

from devtools.tiny_models import SD_TEXT_DIM, WAN_TEXT_DIM, tiny_svd

KINDS = ("simda", "aid", "fca")


def _case(host, tiny, kind):
    """``(model, clips, positive, frames, latent_shift, settings, extra inputs)`` for one kind on its tiny base."""
    g = torch.Generator().manual_seed(0)
    if kind == "simda":
        base = torch.randn(1, 4, 4, 4, generator=g)
        clips = base + 0.5 * torch.linspace(0, 1, 4).reshape(4, 1, 1, 1) * torch.randn(1, 4, 4, 4, generator=g)
        positive = [[torch.randn(1, 8, SD_TEXT_DIM, generator=g), {}]]
        return tiny.load("tiny_sd15_prior.safetensors"), {"samples": clips}, positive, 0, "simda", "", {}
    if kind == "aid":
        from test_aid_host import FRAMES, training_clips, training_conditioning

        return (tiny_svd(), {"samples": training_clips()}, training_conditioning(host), FRAMES, "none",
                '{"width": 32, "heads": 4, "queries_per_frame": 2}', {"text_dropout": 0.1, "image_dropout": 0.1})
    base = torch.randn(2, 16, 1, 4, 4, generator=g)
    clips = base + 0.3 * torch.randn(2, 16, 3, 4, 4, generator=g)
    positive = [[torch.randn(1, 8, WAN_TEXT_DIM, generator=g), {}], [torch.randn(1, 8, WAN_TEXT_DIM, generator=g), {}]]
    return (tiny.load("tiny_wan_prior.safetensors"), {"samples": clips}, positive, 0, "none",
            '{"queries_per_frame": 2, "text_width": 32, "text_heads": 2}', {})


def _train(host, case, kind, steps, name, resume="none"):
    model, clips, positive, frames, shift, settings, extra = case
    batch = 1 if kind == "simda" else 2  # simda: one clip of 4 frames; aid and fca: two clips
    return host.call("VA_TrainAdapter", model, clips, positive, kind, frames, steps, 3e-3, batch, 0, shift, 0, name,
                     resume_from=resume, settings=settings, **extra)


@pytest.mark.parametrize("kind", KINDS)
def test_train_resume_reload(host, tiny, kind, monkeypatch):
    from safetensors.torch import load_file

    import folder_paths

    host_mod, registry = host.pack_module("nodes.binding.host"), host.pack_module("adapters.registry")
    case = _case(host, tiny, kind)
    described, resolved = [], []
    real_architecture, real_get = host_mod._architecture, registry.get
    # describe() reads the architecture once per description
    monkeypatch.setattr(host_mod, "_architecture", lambda base: described.append(1) or real_architecture(base))
    monkeypatch.setattr(registry, "get", lambda name: resolved.append(name) or real_get(name))
    out = _train(host, case, kind, 8, f"test/kinds_{kind}_full")
    assert (len(described), resolved) == (1, [kind]), "one training run describes the model and resolves its kind once"
    monkeypatch.undo()
    assert f"{kind} adapters for" in out[3]

    # Cancel after 4 of 8 steps (the checkpoint is written), then resume to the same total: a kind's recipe
    # (FCA's cosine schedule) depends on the total, so the same total gives the same run
    folder = folder_paths.get_folder_paths("video_adapters")[0]
    host.progress, host.interrupt_after = [], 4
    try:
        with pytest.raises(BaseException) as stopped:
            _train(host, case, kind, 8, f"test/kinds_{kind}_cut")
    finally:
        host.interrupt_after = None
        host.nodes.interrupt_processing(False)
    assert "Interrupt" in type(stopped.value).__name__
    assert not os.path.exists(os.path.join(folder, f"test/kinds_{kind}_cut.safetensors"))
    _train(host, case, kind, 8, f"test/kinds_{kind}_cut", resume=f"test/kinds_{kind}_cut_checkpoint.safetensors")
    full = load_file(os.path.join(folder, f"test/kinds_{kind}_full.safetensors"))
    resumed = load_file(os.path.join(folder, f"test/kinds_{kind}_cut.safetensors"))
    assert full.keys() == resumed.keys()
    for k in full:
        torch.testing.assert_close(resumed[k], full[k], rtol=0, atol=0, msg=k)

    loaded, summary = host.call("VA_LoadAdapter", case[0], f"test/kinds_{kind}_full.safetensors", 1.0)
    assert f"{kind} adapters" in summary
    got = loaded.get_additional_models_with_key("video_adapters")[-1].model
    assert got.KIND == kind
    state = got.file_state_dict()
    assert state.keys() == full.keys() and all(torch.equal(state[k].cpu(), full[k]) for k in full)
    # the loaded model is the trained one: the same denoised estimate at one noise level
    trained = out[0]
    pos = case[2] if kind != "fca" else _fca_conditioning(host, case)
    latent = case[1]["samples"][:1] if kind == "fca" else case[1]["samples"]
    if kind == "aid":
        latent = latent[: case[3]]
        pos = pos[:1]
    from devtools.harness import probe

    guider_a = host.call("CFGGuider", trained, pos, pos, 1.0)[0]
    guider_b = host.call("CFGGuider", loaded, pos, pos, 1.0)[0]
    d_trained = probe(host, guider_a, trained, latent)["d"]
    d_loaded = probe(host, guider_b, loaded, latent)["d"]
    torch.testing.assert_close(d_loaded, d_trained, rtol=1e-5, atol=1e-5)


def _fca_conditioning(host, case):
    """The first clip's caption with its first latent frame as FCA's initial frame."""
    fca, attach = host.pack_module("adapters.fca"), host.pack_module("nodes.binding.attach")
    conds = fca.initial_frame_conds(case[1]["samples"][:1, :, :1], noise_step=1, seed=0)
    return attach.add_adapter_conds(case[2][:1], conds)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_checkpointing_gives_the_same_gradients_for_less_memory(host, tiny, kind):
    """Every block of the frozen base under checkpointing, the kind's modules inside: the adapters' gradients
    equal those without it, and the tensors kept for backward take less memory."""
    import comfy.model_management

    training, attach = host.pack_module("nodes.binding.training"), host.pack_module("nodes.binding.attach")
    registry, core = host.pack_module("adapters.registry"), host.pack_module("adapters.training")
    model, clips, positive, frames, shift, settings, _ = _case(host, tiny, kind)
    info = host.pack_module("nodes.binding.host").describe(model)
    entry = registry.get(kind)
    config, given = training.kind_settings(entry, settings)
    config = entry.apply_trainer_options(config, {"latent_shift": shift}, {"latent_shift": "simda"}, info)
    x0 = training.training_clips(model.model.process_latent_in(clips["samples"].float()), info.architecture, frames)
    conditions = training.clip_conditions(positive, x0.shape[0])
    config = entry.configure(config, info, conditions, int(x0.shape[1] if info.frame_layout == "batch"
                                                            else x0.shape[2]), given)
    torch.manual_seed(0)
    adapters = attach.new_adapters(kind, model, config)
    with torch.no_grad():  # away from the identity, so every part gets a gradient
        for p in adapters.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    patched = attach.attach_adapters(model, adapters, 1.0, frames if info.frame_layout == "batch" else 0)
    comfy.model_management.load_models_gpu([patched])
    param = info.require_prediction("training")
    g = torch.Generator().manual_seed(1)
    x = x0[:1].clone()
    noise = torch.randn(x.shape, generator=g)
    sigma = torch.tensor([0.5 if param == "flow" else 2.0])

    def gradients(m):
        comfy.model_management.load_models_gpu([m])  # the object patches (UNet blocks) apply when loaded
        forward = training.AdapterForward(m, param, conditions, info, kind=entry, adapters=adapters)
        adapters.zero_grad(set_to_none=True)
        kept = []

        def pack(t):
            kept.append(t.numel() * t.element_size())
            return t

        # newer ComfyUI runs some ops (Wan's RoPE) through kernels with a backward only in training mode
        before = getattr(comfy.model_management, "in_training", None)
        comfy.model_management.in_training = True
        try:
            with torch.inference_mode(False), torch.enable_grad():
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    loss = core.diffusion_loss(forward, x, None, sigma, noise, param, clip=torch.tensor([0]), clean=x)
                loss.backward()
        finally:
            if before is None:
                del comfy.model_management.in_training
            else:
                comfy.model_management.in_training = before
        return {n: p.grad.clone() for n, p in adapters.named_parameters() if p.grad is not None}, sum(kept)

    plain, plain_bytes = gradients(patched)
    checkpointed, ckpt_bytes = gradients(attach.with_gradient_checkpointing(patched, info))
    assert plain and plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # every block checkpointed (on the UNets the ResBlocks too): a quarter at most is kept (measured on these tiny
    # models: simda 0.11, aid 0.07, fca 0.18; with the UNets' transformer blocks alone 0.60 and 0.32)
    assert ckpt_bytes < 0.25 * plain_bytes, (ckpt_bytes, plain_bytes)
