"""The shipped tiny trained pair inside a real ComfyUI: the nodes reproduce the benchmark's own sampler
(so the Table-1 numbers are what the demo shows), the caption parser's errors, and the latent-space guard."""

import os
import shutil

import pytest
import torch

PACK = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def benchmark_module():
    from devtools import miniature

    return miniature


def graph(guider: dict, prompt="sunset, stripes, blob, orbit, pan right", steps=12, seed=3):
    p = {
        "1": {"class_type": "VA_TinyTrainedPair", "inputs": {"prompt": prompt}},
        "2": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 29,
                                                                  "batch_size": 1}},
        "3": guider,
        "4": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "5": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "6": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": steps,
                                                         "denoise": 1.0}},
        "7": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["4", 0], "guider": ["3", 0],
              "sampler": ["5", 0], "sigmas": ["6", 0], "latent_image": ["2", 0]}},
    }
    return p


def composer(gamma, cfg=3.0, end=0.9):
    return {"class_type": "VA_ScoreComposer", "inputs": {
        "domain_model": ["1", 0], "prior_model": ["1", 1], "positive": ["1", 2], "negative": ["1", 3],
        "prior_strength": gamma, "cfg": cfg, "composition_end": end}}


def cfg_guider(model_slot, cfg=3.0):
    return {"class_type": "CFGGuider", "inputs": {"model": ["1", model_slot], "positive": ["1", 2],
                                                  "negative": ["1", 3], "cfg": cfg}}


@pytest.mark.parametrize("method", [("compose", 0.2), ("small", 0.0), ("prior", 0.0), ("compose", 0.5)])
def test_nodes_reproduce_the_benchmark_sampler(host, method):
    """ComfyUI's SamplerCustomAdvanced with the pack's nodes == the benchmark's plain Euler loop."""
    import comfy.sample

    kind, gamma = method
    guider = composer(gamma, end=1.0) if kind == "compose" else cfg_guider(1 if kind == "prior" else 0)
    p = graph(guider)
    out = host.run(p, ["7", "6", "1"])
    latent, sigmas = out["7"][0]["samples"], out["6"][0]
    bench = benchmark_module()
    ctx = out["1"][2][0][0]
    domain = out["1"][0].model.diffusion_model.net
    prior = out["1"][1].model.diffusion_model.net
    noise = comfy.sample.prepare_noise(torch.zeros_like(latent), 3)
    with torch.no_grad():
        ref = bench.sample((kind, gamma), domain, prior, noise * float(sigmas[0]), ctx, len(sigmas) - 1,
                           sigmas=sigmas, composition_end=1.0,
                           composition=host.pack_module("samplers.composition"))
    err = (latent - ref).abs().max() / ref.abs().max()
    assert err < 1e-4, err


def test_composition_changes_the_video(host):
    """The prior's share is visible: composer samples differ from small-only ones, more so at larger gamma."""
    a = host.run(graph(cfg_guider(0)), ["7"])["7"][0]["samples"]
    b = host.run(graph(composer(0.2)), ["7"])["7"][0]["samples"]
    c = host.run(graph(composer(0.5)), ["7"])["7"][0]["samples"]
    assert 0 < (b - a).abs().mean() < (c - a).abs().mean()


def test_caption_errors_name_the_attribute(host):
    with pytest.raises(RuntimeError, match="motion names none; use one of: drift, orbit"):
        host.run(graph(cfg_guider(0), prompt="sunset stripes blob pan right"), ["7"])
    with pytest.raises(RuntimeError, match="shape names several"):
        host.run(graph(cfg_guider(0), prompt="sunset stripes blob ring orbit pan right"), ["7"])


def test_pair_is_refused_by_a_real_prior(host, tiny):
    folder = os.path.join(host.models_dir, "video_adapters", "demo")
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(PACK, "adapters", "weights", "tiny_synthetic_domain.safetensors"), folder)
    host.pack_module("nodes.domain")  # folder listing is read at call time
    p = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_wan_prior.safetensors",
                                                      "weight_dtype": "default"}},
         "2": {"class_type": "VA_LoadDomainModel", "inputs": {"model_name": "demo/tiny_synthetic_domain.safetensors",
                                                              "prior_model": ["1", 0]}}}
    with pytest.raises(RuntimeError, match="'synthetic' latents.*'wan21'"):
        host.run(p, ["2"])


def test_synthetic_latent_decode_gives_64px_frames(host):
    """Synthetic Latent Decode is the benchmark's decoder: 8x8 latents -> 64x64 frames with detail in each cell."""
    p = graph(cfg_guider(1), steps=4)
    p["8"] = {"class_type": "VA_SyntheticLatentDecode", "inputs": {"samples": ["7", 0]}}
    out = host.run(p, ["8", "7"])
    frames, latent = out["8"][0], out["7"][0]["samples"]
    assert frames.shape == (8, 64, 64, 3)
    codec = host.pack_module("adapters.synthetic_video").synthetic_codec()
    ref = codec.decode(latent)[0].permute(1, 2, 3, 0)
    assert torch.allclose(frames, ref, atol=1e-5)
    assert float(frames[:, :8, :8].std()) > 0  # not one colour per cell
    with pytest.raises(Exception, match=r"synthetic-space video latents \[B, 16, T, H, W\]"):
        host.call("VA_SyntheticLatentDecode", {"samples": torch.zeros(2, 4, 8, 8)})


def test_composer_refuses_diverging_settings_before_sampling(host):
    """The sweep's limits at the node: noise space above the measured prior weight is refused with the fix."""
    g = composer(3.0, cfg=3.0, end=1.0)
    g["inputs"]["flow_space"] = "noise"
    with pytest.raises(RuntimeError, match=r"diverge.*cfg \(now 3\).*prior_strength \(now 3\).*flow_space \"velocity\""):
        host.run(graph(g, steps=3), ["7"])
    g["inputs"]["flow_space"] = "velocity"
    out = host.run(graph(g, steps=3), ["7"])["7"][0]["samples"]
    assert torch.isfinite(out).all()


def test_files_of_the_first_synthetic_code_are_refused_by_the_node(host):
    """Load Domain Model refuses a synthetic model file and a synthetic training checkpoint written before the
    lapped code (no ``latent_code`` in their metadata), naming the file and what to do."""
    from adapters.files import load_tensors, save_tensors

    folder = os.path.join(host.models_dir, "video_adapters", "old")
    os.makedirs(folder, exist_ok=True)
    tensors, meta = load_tensors(os.path.join(PACK, "adapters", "weights", "tiny_synthetic_domain.safetensors"),
                                 expect_kind="domain_model")
    old = {k: v for k, v in meta.items() if k not in ("latent_code", "format_version")}
    save_tensors(os.path.join(folder, "old_model.safetensors"), tensors, old)
    save_tensors(os.path.join(folder, "old_checkpoint.safetensors"), tensors,
                 {"kind": "checkpoint", "family": "synthetic", "model_config": meta["config"]})
    host.pack_module("nodes.domain")
    for name in ("old/old_model.safetensors", "old/old_checkpoint.safetensors"):
        p = {"1": {"class_type": "VA_TinyTrainedPair", "inputs": {"prompt": "sunset, stripes, blob, orbit, pan right"}},
             "2": {"class_type": "VA_LoadDomainModel", "inputs": {"model_name": name, "prior_model": ["1", 1]}}}
        with pytest.raises(RuntimeError, match=f"{name.split('/')[1]} is in version 1 of the synthetic latent code.*Retrain it"):
            host.run(p, ["2"])


def test_a_unet_domain_model_loads_and_composes_as_the_benchmark_samples_it(host):
    """A domain model with the UNet backbone, written as a file, loads through Load Domain Model in the tiny
    prior's space and the Score Composer over it equals the benchmark's Euler loop with the same network."""
    import comfy.sample

    dm = host.pack_module("adapters.domain_model")
    cfg = dm.family_config("synthetic", backbone="unet", unet_widths=(16, 24, 32), width=32, heads=4,
                           patch_size=(1, 1, 1))
    torch.manual_seed(4)
    net = dm.build_domain_model(cfg)
    with torch.no_grad():  # open the zero-initialised output and frame-mixing branches
        for name, p in net.named_parameters():
            if any(k in name for k in ("cout", ".c2.", ".o1.", ".o2.", ".o3.", ".tconv.")):
                p.normal_(0, 0.05)
    folder = os.path.join(host.models_dir, "video_adapters", "unet")
    os.makedirs(folder, exist_ok=True)
    dm.save_domain_model(os.path.join(folder, "tiny_unet.safetensors"), net, {"steps": 0})
    host.pack_module("nodes.domain")
    p = graph(composer(0.3, end=1.0), steps=6)
    p["9"] = {"class_type": "VA_LoadDomainModel", "inputs": {"model_name": "unet/tiny_unet.safetensors",
                                                             "prior_model": ["1", 1]}}
    p["3"]["inputs"]["domain_model"] = ["9", 0]
    out = host.run(p, ["7", "6", "1", "9"])
    latent, sigmas = out["7"][0]["samples"], out["6"][0]
    loaded = out["9"][0].model.diffusion_model.net
    assert type(loaded).__name__ == "DomainVideoUNet"
    prior = out["1"][1].model.diffusion_model.net
    noise = comfy.sample.prepare_noise(torch.zeros_like(latent), 3)
    with torch.no_grad():
        ref = benchmark_module().sample(("compose", 0.3), net.eval(), prior, noise * float(sigmas[0]),
                                        out["1"][2][0][0], len(sigmas) - 1, sigmas=sigmas, composition_end=1.0,
                                        composition=host.pack_module("samplers.composition"))
    err = (latent - ref).abs().max() / ref.abs().max()
    assert err < 1e-4, err
