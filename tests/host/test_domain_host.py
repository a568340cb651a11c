"""The domain model inside a real ComfyUI: training through the executor (inference mode and all), saving,
interrupting and resuming, loading as a native MODEL and sampling it with the Score Composer."""

import os

import pytest
import torch

from devtools.tiny_models import WAN_TEXT_DIM

PRIOR = "tiny_wan_prior.safetensors"


@pytest.fixture(scope="module")
def clips_node(host, tiny):
    """Test-only node: a batch of random-but-smooth Wan 2.1 latent clips (stands in for VAE Encode)."""
    from comfy_api.latest import io

    class TestClips(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_Clips", category="_for_testing",
                             inputs=[io.Int.Input("count", default=3), io.Int.Input("seed", default=0)],
                             outputs=[io.Latent.Output()])

        @classmethod
        def execute(cls, count, seed):
            g = torch.Generator().manual_seed(seed)
            base = torch.randn(count, 16, 1, 4, 4, generator=g)
            drift = torch.linspace(0, 1, 2).reshape(1, 1, 2, 1, 1)
            return io.NodeOutput({"samples": base + 0.3 * drift})

    host.nodes.NODE_CLASS_MAPPINGS["VATest_Clips"] = TestClips
    return "VATest_Clips"


def train_prompt(name, steps=20, checkpoint_every=5, resume_from="none", seed=0):
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": PRIOR, "weight_dtype": "default"}},
        "2": {"class_type": "VATest_Clips", "inputs": {"count": 3, "seed": 0}},
        "3": {"class_type": "VATest_Conditioning", "inputs": {"dim": WAN_TEXT_DIM, "tokens": 8, "seed": 0}},
        "4": {"class_type": "VA_TrainDomainModel", "inputs": {
            "prior_model": ["1", 0], "clips": ["2", 0], "captions": ["3", 0], "size": "tiny", "steps": steps,
            "learning_rate": 1e-3, "batch_size": 2, "seed": seed, "cond_dropout": 0.2,
            "checkpoint_every": checkpoint_every, "file_name": name, "resume_from": resume_from}},
    }


def folder(host):
    return os.path.join(host.models_dir, "video_adapters")


def history(host, rel):
    from safetensors import safe_open

    with safe_open(os.path.join(folder(host), rel), framework="pt") as f:
        return f.get_tensor("history/loss").tolist()


@pytest.fixture(scope="module")
def trained(host, tiny, clips_node):
    prompt = train_prompt("test/full")
    assert host.validate(prompt)[0] is True, host.validate(prompt)
    out = host.run(prompt, ["4"])["4"]
    return out


def test_training_through_the_executor(host, trained):
    model, name, curve = trained
    assert name == "test/full.safetensors"
    assert os.path.isfile(os.path.join(folder(host), "test/full.safetensors"))
    assert os.path.isfile(os.path.join(folder(host), "test/full_checkpoint.safetensors"))
    losses = history(host, "test/full_checkpoint.safetensors")
    assert len(losses) == 20 and all(map(lambda v: v == v, losses))
    assert sum(losses[-5:]) < sum(losses[:5])  # it learns
    assert curve.ndim == 4 and curve.shape[-1] == 3
    # progress reached the UI's bar once per step
    assert host.progress[-1] == (20, 20)
    # a native MODEL in the prior's latent space and sampling
    info = host.pack_module("nodes.binding.host").describe(model, "domain")
    assert info.latent_format == "Wan21" and info.sampler_space == "flow" and info.shift == 8.0
    assert info.architecture == "domain" and info.latent_space == "wan21" and info.prediction == "flow"


def test_native_model_matches_the_network(host, tiny, trained):
    """ComfyUI's apply_model (timestep conversion, calculate_denoised) gives x - sigma * v of the network."""
    model = trained[0]
    net = model.model.diffusion_model.net
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 16, 2, 4, 4, generator=g)
    ctx = torch.randn(2, 8, WAN_TEXT_DIM, generator=g)
    sigma = torch.tensor([0.93, 0.31])
    with torch.no_grad():
        d = model.model.apply_model(x, sigma, c_crossattn=ctx, transformer_options={"cond_or_uncond": [0]})
        want = x - sigma.reshape(-1, 1, 1, 1, 1) * net(x, sigma, ctx)
    assert torch.allclose(d, want, atol=1e-5)


def sample_prompt(name, strength, seed=0):
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": PRIOR, "weight_dtype": "default"}},
        "2": {"class_type": "VA_LoadDomainModel", "inputs": {"model_name": name, "prior_model": ["1", 0]}},
        "3": {"class_type": "VATest_Conditioning", "inputs": {"dim": WAN_TEXT_DIM, "tokens": 8, "seed": 0}},
        "4": {"class_type": "VATest_Conditioning", "inputs": {"dim": WAN_TEXT_DIM, "tokens": 8, "seed": 1}},
        "5": {"class_type": "VA_ScoreComposer", "inputs": {
            "domain_model": ["2", 0], "prior_model": ["1", 0], "positive": ["3", 0], "negative": ["4", 0],
            "prior_strength": strength, "cfg": 3.0, "composition_end": 0.9}},
        "6": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 32, "height": 32, "length": 5,
                                                                    "batch_size": 1}},
        "7": {"class_type": "BasicScheduler", "inputs": {"model": ["2", 0], "scheduler": "simple", "steps": 4,
                                                           "denoise": 1.0}},
        "8": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "9": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "10": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["9", 0], "guider": ["5", 0], "sampler": ["8", 0], "sigmas": ["7", 0], "latent_image": ["6", 0]}},
        "11": {"class_type": "KSampler", "inputs": {
            "model": ["2", 0], "seed": seed, "steps": 3, "cfg": 2.0, "sampler_name": "euler", "scheduler": "simple",
            "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["6", 0], "denoise": 1.0}},
    }


def test_load_and_sample_with_composer_and_ksampler(host, trained):
    composed = host.run(sample_prompt("test/full.safetensors", 0.5), ["2", "10", "11"])
    alone = host.run(sample_prompt("test/full.safetensors", 0.0), ["10"])
    assert "20 steps" in composed["2"][1]
    a = composed["10"][0]["samples"]
    b = alone["10"][0]["samples"]
    k = composed["11"][0]["samples"]
    assert a.shape == (1, 16, 2, 4, 4) and torch.isfinite(a).all() and torch.isfinite(k).all()
    assert (a - b).abs().max() > 1e-4  # the prior contributes


def test_interrupt_keeps_checkpoint_and_resume_reproduces(host, trained):
    with pytest.raises(InterruptedError):
        host.run(train_prompt("test/cut", checkpoint_every=5), ["4"], interrupt_after=7)
    ck = "test/cut_checkpoint.safetensors"
    assert os.path.isfile(os.path.join(folder(host), ck))
    assert not os.path.exists(os.path.join(folder(host), "test/cut.safetensors"))
    cut = history(host, ck)
    assert len(cut) == 7
    full = history(host, "test/full_checkpoint.safetensors")
    assert cut == full[:7]
    # the checkpoint loads as a model on its own
    out = host.call("VA_LoadDomainModel", ck, host.call("UNETLoader", PRIOR, "default")[0])
    assert "step 7" in out[1]
    # and resuming continues the same loss trajectory
    host.run(train_prompt("test/cut", resume_from=ck), ["4"])
    assert history(host, ck) == pytest.approx(full, rel=0, abs=0)


def test_other_latent_space_refused(host, tiny):
    adapters = host.pack_module("adapters.domain_model")
    common = host.pack_module("nodes.common")
    cfg = adapters.family_config("sd15", width=64, heads=1, depth=1)
    adapters.save_domain_model(os.path.join(folder(host), "test/sd_model.safetensors"), adapters.DomainVideoModel(cfg))
    prior = host.call("UNETLoader", PRIOR, "default")[0]
    with pytest.raises(common.VideoAdapterError) as e:
        host.call("VA_LoadDomainModel", "test/sd_model.safetensors", prior)
    assert "sd15" in str(e.value) and "wan21" in str(e.value)


def test_memory_settings_reach_the_trainer(host, tiny, clips_node, monkeypatch):
    """Train Domain Model's memory settings: checkpointing (each block then runs under torch's checkpoint) and
    micro-batches give the losses of the plain run, a bf16 forward gives nearby but different ones, and a
    grad_accumulation that does not divide batch_size is refused naming both."""
    import torch.utils.checkpoint

    checkpointed, real = [], torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: checkpointed.append(1) or real(*a, **k))

    def losses(name, **settings):
        checkpointed.clear()
        prompt = train_prompt(name, steps=4, checkpoint_every=0)
        prompt["4"]["inputs"].update(settings)
        host.run(prompt, ["4"])
        assert bool(checkpointed) is settings["gradient_checkpointing"], len(checkpointed)
        return torch.tensor(history(host, f"{name}_checkpoint.safetensors"))

    plain = losses("test/mem_plain", gradient_checkpointing=False, training_dtype="fp32")
    ckpt = losses("test/mem_ckpt", gradient_checkpointing=True, training_dtype="fp32")
    micro = losses("test/mem_micro", gradient_checkpointing=True, training_dtype="fp32", grad_accumulation=2)
    bf16 = losses("test/mem_bf16", gradient_checkpointing=True, training_dtype="bf16")
    torch.testing.assert_close(ckpt, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(micro, plain, rtol=1e-4, atol=1e-5)
    assert not torch.equal(bf16, plain) and torch.allclose(bf16, plain, rtol=0.05, atol=0.02), (bf16, plain)
    prompt = train_prompt("test/mem_bad", steps=1, checkpoint_every=0)
    prompt["4"]["inputs"]["grad_accumulation"] = 3
    with pytest.raises(Exception, match="grad_accumulation: 3 does not divide batch_size 2"):
        host.run(prompt, ["4"])


def test_auto_precision_of_a_resumed_run_is_its_own(host):
    """``auto`` resumes in the precision the checkpoint was trained in (fp32 for checkpoints written before the
    setting existed), so the loss curve continues exactly; a precision chosen explicitly wins."""
    resolve = host.pack_module("nodes.binding.training").resolve_training_dtype
    assert resolve("auto", "cpu", {"train_config": {"training_dtype": "bf16"}}) == "bf16"
    assert resolve("auto", "cpu", {"train_config": {"steps": 4}}) == "fp32"
    assert resolve("fp32", "cpu", {"train_config": {"training_dtype": "bf16"}}) == "fp32"
    assert resolve("auto", "cpu", {}) == "fp32"  # a fresh run on the CPU


def test_a_unet_checkpoint_loads_as_a_unet(host, tiny, clips_node):
    """Load Domain Model and Train Domain Model build a checkpoint's network from its config: a UNet checkpoint
    (here from the command-line trainer) loads as the UNet, with its architecture in the summary, and resumes
    in the training node."""
    import json

    train_cli = host.pack_module("adapters.train_cli")
    work = os.path.join(folder(host), "unet_cli")
    os.makedirs(work, exist_ok=True)
    raw = {"family": "wan21", "model": {"backbone": "unet", "unet_widths": [16, 24, 32], "width": 32, "heads": 4,
                                        "patch_size": [1, 1, 1]},
           "data": {"synthetic": {"count": 4, "frames": 2, "size": 16}},
           "train": {"steps": 2, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 2},
           "output": os.path.join(work, "unet_model"), "device": "cpu"}
    with open(os.path.join(work, "c.json"), "w") as f:
        json.dump(raw, f)
    assert train_cli.main(["--config", os.path.join(work, "c.json")]) == 0
    host.pack_module("nodes.domain")
    out = host.call("VA_LoadDomainModel", "unet_cli/unet_model_checkpoint.safetensors",
                    host.call("UNETLoader", PRIOR, "default")[0])
    assert type(out[0].model.diffusion_model.net).__name__ == "DomainVideoUNet"
    assert "UNet 16 / 24 / 32" in out[1] and "checkpoint at step 2" in out[1]
    ck = "unet_cli/unet_model_checkpoint.safetensors"
    host.run(train_prompt("unet_cli/unet_model", steps=4, resume_from=ck), ["4"])
    new = "unet_cli/unet_model_00001_checkpoint.safetensors"  # the node does not overwrite the CLI's files
    assert history(host, new)[:2] == history(host, ck) and len(history(host, new)) == 4
    resumed = host.call("VA_LoadDomainModel", new, host.call("UNETLoader", PRIOR, "default")[0])
    assert type(resumed[0].model.diffusion_model.net).__name__ == "DomainVideoUNet" and "step 4" in resumed[1]
