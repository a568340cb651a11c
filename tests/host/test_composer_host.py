"""The score composer inside a real ComfyUI: native sampler nodes, tiny Wan 2.1 and SD 1.5 pairs."""

import pytest
import torch

from devtools.tiny_models import SD_TEXT_DIM, WAN_TEXT_DIM


def cond(dim, seed, tokens=8):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, dim, generator=g), {}]]


def wan_latent(frames=5, size=32):
    return {"samples": torch.zeros(1, 16, (frames - 1) // 4 + 1, size // 8, size // 8)}


def sd_latent(frames=2, size=32):
    return {"samples": torch.zeros(frames, 4, size // 8, size // 8)}


def sample(host, model, guider, latent, steps=4, sampler="euler", seed=0, scheduler="simple"):
    """Run SamplerCustomAdvanced exactly as a graph would."""
    sigmas = host.call("BasicScheduler", model, scheduler, steps, 1.0)[0]
    smp = host.call("KSamplerSelect", sampler)[0]
    noise = host.call("RandomNoise", seed)[0]
    out = host.call("SamplerCustomAdvanced", noise, guider, smp, sigmas, latent)
    return out[0]["samples"], sigmas


def composer(host, domain, prior, pos, neg, **kw):
    args = dict(prior_strength=0.3, cfg=3.0, composition_end=0.9)
    args.update(kw)
    return host.call("VA_ScoreComposer", domain, prior, pos, neg, **args)[0]


def counting(model, label, log):
    """A clone of ``model`` that records every forward pass: (label, batch, cond_or_uncond, sigma)."""
    m = model.clone()

    def wrapper(apply_model, args):
        log.append((label, args["input"].shape[0], tuple(args["cond_or_uncond"]), float(args["timestep"].max())))
        return apply_model(args["input"], args["timestep"], **args["c"])

    m.set_model_unet_function_wrapper(wrapper)
    return m


@pytest.fixture(scope="module")
def wan(host, tiny):
    return tiny.load("tiny_wan_domain.safetensors"), tiny.load("tiny_wan_prior.safetensors")


@pytest.fixture(scope="module")
def sd(host, tiny):
    return tiny.load("tiny_sd15_domain.safetensors"), tiny.load("tiny_sd15_prior.safetensors")


@pytest.mark.parametrize("space", ["velocity", "noise"])
def test_wan_finite_in_both_flow_spaces_with_mcmc(host, wan, space):
    domain, prior = wan
    g = composer(host, domain, prior, cond(WAN_TEXT_DIM, 0), cond(WAN_TEXT_DIM, 1), prior_strength=1.0,
                 cfg=6.0, composition_end=1.0, mcmc_steps=1, flow_space=space)
    out, _ = sample(host, domain, g, wan_latent())
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("pair", ["wan", "sd"])
def test_gamma_zero_equals_native_cfg_guider(host, request, pair):
    domain, prior = request.getfixturevalue(pair)
    dim = WAN_TEXT_DIM if pair == "wan" else SD_TEXT_DIM
    latent = wan_latent() if pair == "wan" else sd_latent()
    pos, neg = cond(dim, 0), cond(dim, 1)
    ours, _ = sample(host, domain, composer(host, domain, prior, pos, neg, prior_strength=0.0, cfg=4.0), latent)
    native_guider = host.call("CFGGuider", domain, pos, neg, 4.0)[0]
    native, _ = sample(host, domain, native_guider, latent)
    torch.testing.assert_close(ours, native, rtol=0, atol=1e-6)


def test_model_calls_per_step_and_window(host, wan):
    """Per step: one batched cond/uncond domain pass and one prior pass; no prior pass outside the window."""
    domain, prior = wan
    log = []
    d, p = counting(domain, "domain", log), counting(prior, "prior", log)
    g = composer(host, d, p, cond(WAN_TEXT_DIM, 0), cond(WAN_TEXT_DIM, 1), composition_end=0.5)
    _, sigmas = sample(host, d, g, wan_latent(), steps=6)
    ms = domain.get_model_object("model_sampling")
    threshold = float(ms.percent_to_sigma(0.5))
    steps = [float(s) for s in sigmas[:-1]]
    dom = [e for e in log if e[0] == "domain"]
    pri = [e for e in log if e[0] == "prior"]
    assert len(dom) == len(steps) and all(e[1] == 2 and sorted(e[2]) == [0, 1] for e in dom)
    assert [round(e[3], 5) for e in pri] == [round(s, 5) for s in steps if s > threshold]
    assert all(e[1] == 1 for e in pri)
    assert 0 < len(pri) < len(steps)


def test_gamma_zero_never_runs_prior(host, wan):
    domain, prior = wan
    log = []
    g = composer(host, counting(domain, "domain", log), counting(prior, "prior", log), cond(WAN_TEXT_DIM, 0),
                 cond(WAN_TEXT_DIM, 1), prior_strength=0.0)
    sample(host, domain, g, wan_latent())
    assert not [e for e in log if e[0] == "prior"]


def test_heun_window_by_sigma(host, wan):
    """Multi-evaluation samplers: the prior runs exactly for evaluations above the window sigma."""
    domain, prior = wan
    log = []
    d, p = counting(domain, "domain", log), counting(prior, "prior", log)
    g = composer(host, d, p, cond(WAN_TEXT_DIM, 0), cond(WAN_TEXT_DIM, 1), composition_end=0.6)
    sample(host, d, g, wan_latent(), steps=5, sampler="heun")
    threshold = float(domain.get_model_object("model_sampling").percent_to_sigma(0.6))
    dom_sigmas = [e[3] for e in log if e[0] == "domain"]
    pri_sigmas = [e[3] for e in log if e[0] == "prior"]
    assert len(dom_sigmas) > 5  # Heun evaluates twice per step
    assert pri_sigmas == [s for s in dom_sigmas if s > threshold]


def test_two_priors(host, wan, tiny):
    domain, prior = wan
    prior2 = tiny.load("tiny_wan_prior.safetensors")
    log = []
    extra = host.call("VA_AddPrior", counting(prior2, "prior2", log), cond(WAN_TEXT_DIM, 5), 0.2)[0]
    g = composer(host, counting(domain, "domain", log), counting(prior, "prior", log), cond(WAN_TEXT_DIM, 0),
                 cond(WAN_TEXT_DIM, 1), extra_priors=extra, composition_end=1.0)
    out, sigmas = sample(host, domain, g, wan_latent())
    assert torch.isfinite(out).all()
    assert len([e for e in log if e[0] == "prior2"]) == len(sigmas) - 1
    assert len([e for e in log if e[0] == "prior"]) == len(sigmas) - 1


def test_mismatched_models_are_refused_with_both_names(host, wan, sd):
    with pytest.raises(ValueError) as e:
        composer(host, sd[0], wan[1], cond(SD_TEXT_DIM, 0), cond(SD_TEXT_DIM, 1))
    msg = str(e.value)
    assert "domain_model" in msg and "prior_model" in msg and "SD15" in msg and "WAN21" in msg
    assert "latent" in msg


def test_cfg_mix_guider_runs_and_differs(host, wan):
    domain, prior = wan
    pos, neg = cond(WAN_TEXT_DIM, 0), cond(WAN_TEXT_DIM, 1)
    mix = host.call("VA_CFGMixGuider", domain, prior, pos, neg, 0.5, 3.0, 3.0, 1.0)[0]
    out, _ = sample(host, domain, mix, wan_latent())
    comp, _ = sample(host, domain, composer(host, domain, prior, pos, neg, prior_strength=0.5), wan_latent())
    assert torch.isfinite(out).all() and (out - comp).abs().max() > 1e-4


def test_prior_is_an_additional_model(host, wan):
    domain, prior = wan
    g = composer(host, domain, prior, cond(WAN_TEXT_DIM, 0), cond(WAN_TEXT_DIM, 1))
    assert prior in g.model_patcher.get_nested_additional_models()


def graph(prior_strength=0.3, steps=4):
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_wan_domain.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "VA_LoadFrozenVideoModel", "inputs": {"model_name": "tiny_wan_prior.safetensors", "weight_dtype": "default"}},
        "3": {"class_type": "VATest_Conditioning", "inputs": {"dim": WAN_TEXT_DIM, "tokens": 8, "seed": 0}},
        "4": {"class_type": "VATest_Conditioning", "inputs": {"dim": WAN_TEXT_DIM, "tokens": 8, "seed": 1}},
        "5": {"class_type": "VA_ScoreComposer", "inputs": {
            "domain_model": ["1", 0], "prior_model": ["2", 0], "positive": ["3", 0], "negative": ["4", 0],
            "prior_strength": prior_strength, "cfg": 3.0, "composition_end": 0.9, "mcmc_steps": 0,
            "mcmc_step_size": 0.05}},
        "6": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "7": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": steps, "denoise": 1.0}},
        "8": {"class_type": "RandomNoise", "inputs": {"noise_seed": 0}},
        "9": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 32, "height": 32, "length": 5, "batch_size": 1}},
        "10": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["8", 0], "guider": ["5", 0], "sampler": ["6", 0], "sigmas": ["7", 0], "latent_image": ["9", 0]}},
        "11": {"class_type": "VATest_LatentToImage", "inputs": {"samples": ["10", 0]}},
        "12": {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}},
    }


def test_graph_executes_and_summary(host, tiny):
    g = graph()
    ok = host.validate(g)
    assert ok[0], ok
    assert "12" in ok[2]
    out = host.run(g, ["10", "2"])
    assert torch.isfinite(out["10"][0]["samples"]).all()
    summary = out["2"][1]
    assert "WAN21_T2V" in summary and "flow" in summary and "16 channels" in summary


def test_graph_interrupt_stops_sampling(host, tiny):
    with pytest.raises(InterruptedError):
        host.run(graph(prior_strength=0.31, steps=8), ["10"], interrupt_after=2)
    assert len(host.progress) < 8
