"""Exactness of the score composer on Gaussians.

The denoisers are the exact posterior means of Gaussian data, so the composed denoiser is affine in x and
the Euler sampler is an affine recursion: its output mean and variance are known in closed form
(devtools/gaussian_reference.py, derived from the paper's rule in noise or velocity space). We run the
pack's composition through an Euler loop on many samples and compare the empirical moments.
"""

import math

import numpy as np
import pytest
import torch

from devtools.gaussian_reference import (Gauss, composed_coeffs, euler_moments, flow_sigmas, karras_sigmas,
                                percent_of_sigma_flow, product_target)
from samplers.composition import (Composition, PriorTerm, add_priors, cfg_combine, compose_denoised, denoised_to_eps,
                                  eps_to_denoised, next_sigma)
from samplers.schedules import StrengthSchedule

N = 40000
DIM = 3
UNCOND = Gauss(np.array([0.0, 0.5, -1.0]), np.array([1.0, 2.0, 0.5]))
COND = Gauss(np.array([1.0, -0.5, 0.0]), np.array([0.5, 1.0, 0.3]))
PRIOR_A = Gauss(np.array([-0.5, 1.0, 0.5]), np.array([0.3, 0.8, 1.5]))
PRIOR_B = Gauss(np.array([0.8, 0.0, -0.4]), np.array([0.6, 0.4, 0.9]))


def torch_denoiser(g: Gauss, flow: bool):
    mu, var = torch.tensor(g.mu), torch.tensor(g.var)

    def d(x, sigma):
        s = float(sigma.max())
        a = (1.0 - s) if flow else 1.0
        return mu + a * var * (x - a * mu) / (a * a * var + s * s)

    return d


def eps_percent(s, smax=14.6, smin=0.03):
    """A monotone sigma -> percent map for the eps tests (log-linear over the schedule's range)."""
    s = min(max(s, smin), smax)
    return (math.log(smax) - math.log(s)) / (math.log(smax) - math.log(smin))


def run_sampler(comp: Composition, sigmas, flow, priors, seed=0):
    g = torch.Generator().manual_seed(seed)
    d_c, d_u = torch_denoiser(COND, flow), torch_denoiser(UNCOND, flow)
    d_p = [torch_denoiser(p, flow) for p in priors]
    calls = {"domain": 0, "prior": [0] * len(priors)}

    def guided_fn(x, sigma):
        calls["domain"] += 1
        return cfg_combine(d_c(x, sigma), d_u(x, sigma) if comp.needs_uncond() else None, comp.cfg)

    def prior_fn(i, x, sigma):
        calls["prior"][i] += 1
        return d_p[i](x, sigma)

    def noise_fn(x):
        return torch.randn(x.shape, generator=g, dtype=x.dtype)

    x = torch.randn(N, DIM, generator=g, dtype=torch.float64) * float(sigmas[0])
    sched = torch.tensor(sigmas)
    for s, sn in zip(sigmas[:-1], sigmas[1:]):
        sig = torch.full((N,), float(s), dtype=torch.float64)
        d = comp.evaluate(x, sig, guided_fn, prior_fn, sigma_next=next_sigma(sched, float(s)), noise_fn=noise_fn)
        x = x + (float(sn) - float(s)) * (x - d) / float(s)
    assert torch.isfinite(x).all()
    return x, calls


def assert_moments(x, mean, var):
    emp_m = x.mean(0).numpy()
    emp_v = x.var(0).numpy()
    tol_m = 5 * np.sqrt(var / N) + 1e-9
    tol_v = 5 * var * np.sqrt(2.0 / N) + 1e-9
    assert np.all(np.abs(emp_m - mean) < tol_m), (emp_m, mean, tol_m)
    assert np.all(np.abs(emp_v - var) < tol_v), (emp_v, var, tol_v)


def reference(sigmas, flow, cfg, prior_list, gammas_at, space, mcmc=None):
    def coeffs(s):
        return composed_coeffs(s, flow, UNCOND, COND, list(zip(gammas_at(s), prior_list)), cfg, space)

    var0 = np.full(DIM, float(sigmas[0]) ** 2)
    return euler_moments(sigmas, flow, coeffs, np.zeros(DIM), var0, mcmc)


EPS_SIGMAS = karras_sigmas(20)
FLOW_SIGMAS = flow_sigmas(20, shift=8.0)


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_eps_two_priors_window_and_schedule(cfg):
    sched = StrengthSchedule("linear", start_value=1.0, end_value=0.25, start_percent=0.1, end_percent=0.7)
    priors = [PriorTerm(0.3), PriorTerm(0.5, sched)]
    window = 0.5
    comp = Composition(cfg=cfg, priors=priors, window_sigma=window, sigma_to_percent=eps_percent)

    def gammas_at(s):
        if s <= window:
            return [0.0, 0.0]
        return [0.3, 0.5 * sched(eps_percent(s))]

    x, calls = run_sampler(comp, EPS_SIGMAS, False, [PRIOR_A, PRIOR_B])
    mean, var = reference(EPS_SIGMAS, False, cfg, [PRIOR_A, PRIOR_B], gammas_at, "eps")
    assert_moments(x, mean, var)
    # the prior runs only inside the window
    inside = sum(1 for s in EPS_SIGMAS[:-1] if s > window)
    assert calls["prior"] == [inside, inside]
    assert calls["domain"] == len(EPS_SIGMAS) - 1


@pytest.mark.parametrize("space", ["velocity", "noise"])
def test_flow_spaces_match_their_definition(space):
    cfg = 2.5
    sched = StrengthSchedule("cosine", start_value=1.0, end_value=0.0, start_percent=0.0, end_percent=0.9)
    comp = Composition(cfg=cfg, priors=[PriorTerm(0.4, sched)], window_sigma=FLOW_SIGMAS[-3],
                       sigma_to_percent=percent_of_sigma_flow, parameterisation="flow", flow_space=space)

    def gammas_at(s):
        return [0.4 * sched(percent_of_sigma_flow(s))] if s > FLOW_SIGMAS[-3] else [0.0]

    x, _ = run_sampler(comp, FLOW_SIGMAS, True, [PRIOR_A])
    mean, var = reference(FLOW_SIGMAS, True, cfg, [PRIOR_A], gammas_at, "velocity" if space == "velocity" else "eps")
    assert_moments(x, mean, var)


def test_flow_spaces_really_differ():
    """Guards the test above: the two references are far apart, so mixing them up would fail."""
    g = lambda s: [0.4]
    mv, vv = reference(FLOW_SIGMAS, True, 1.0, [PRIOR_A], g, "velocity")
    mn, vn = reference(FLOW_SIGMAS, True, 1.0, [PRIOR_A], g, "eps")
    assert np.max(np.abs(vv - vn) / vv) > 0.2


def test_mcmc_moments_and_effect():
    cfg, gamma, steps, h = 1.0, 0.4, 2, 0.1
    comp = Composition(cfg=cfg, priors=[PriorTerm(gamma)], window_sigma=0.0, sigma_to_percent=eps_percent,
                       mcmc_steps=steps, mcmc_step_size=h)
    x, calls = run_sampler(comp, EPS_SIGMAS, False, [PRIOR_A], seed=3)
    mean, var = reference(EPS_SIGMAS, False, cfg, [PRIOR_A], lambda s: [gamma], "eps",
                          mcmc=(steps, h, lambda s: s > 0.0))
    assert_moments(x, mean, var)
    # each Langevin step costs one composed evaluation more
    assert calls["domain"] == (len(EPS_SIGMAS) - 1) * (steps + 1)
    # and the corrections change the output distribution (the test could not pass by ignoring them)
    m0, v0 = reference(EPS_SIGMAS, False, cfg, [PRIOR_A], lambda s: [gamma], "eps")
    assert np.max(np.abs(v0 - var) / var) > 0.05


def test_gamma_zero_is_plain_cfg_and_prior_never_runs():
    comp = Composition(cfg=4.0, priors=[PriorTerm(0.0)], window_sigma=0.0, sigma_to_percent=eps_percent)
    x, calls = run_sampler(comp, EPS_SIGMAS, False, [PRIOR_A])
    assert calls["prior"] == [0]
    mean, var = reference(EPS_SIGMAS, False, 4.0, [], lambda s: [], "eps")
    assert_moments(x, mean, var)


def test_cfg_mix_rule():
    x = torch.randn(2, 3)
    dg, dp = torch.randn_like(x), torch.randn_like(x)
    out = add_priors(x, torch.ones(2) * 0.5, dg, 7.0, [(0.25, dp)], "flow", "noise", rule="cfg_mix")
    torch.testing.assert_close(out, 0.75 * dg + 0.25 * dp)


def test_cfg_one_needs_no_uncond():
    assert not Composition(cfg=1.0).needs_uncond()
    assert Composition(cfg=1.5).needs_uncond()
    with pytest.raises(ValueError, match="unconditional"):
        compose_denoised(torch.zeros(1), 1.0, torch.zeros(1), None, cfg=2.0)


@pytest.mark.parametrize("space", ["velocity", "noise"])
def test_flow_finite_at_sigma_one(space):
    x = torch.randn(2, 4, 3, 2, 2)
    d = torch.randn_like(x)
    out = compose_denoised(x, torch.ones(2), d, d * 0.5, 5.0, [(0.3, torch.randn_like(x)), (0.2, d)], "flow", space)
    assert torch.isfinite(out).all()


def test_eps_rule_equals_noise_space_formula():
    """The D-space formula equals the paper's rule evaluated literally in eps space."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, dtype=torch.float64)
    sigma = torch.tensor([0.7, 3.0], dtype=torch.float64)
    du, dc, dp1, dp2 = (torch.randn_like(x) for _ in range(4))
    cfg, g1, g2 = 3.0, 0.2, 0.7
    for param, s_ok in (("eps", sigma), ("flow", torch.tensor([0.3, 0.6], dtype=torch.float64))):
        e = {k: denoised_to_eps(x, v, s_ok, param) for k, v in dict(u=du, c=dc, p1=dp1, p2=dp2).items()}
        eps = e["u"] + cfg * (e["c"] + g1 * e["p1"] + g2 * e["p2"] - e["u"])
        want = eps_to_denoised(x, eps, s_ok, param)
        got = compose_denoised(x, s_ok, dc, du, cfg, [(g1, dp1), (g2, dp2)], param, flow_space="noise")
        torch.testing.assert_close(got, want)


def test_next_sigma():
    sched = torch.tensor([1.0, 0.5, 0.25, 0.0])
    assert next_sigma(sched, 0.5) == 0.25
    assert next_sigma(sched, 0.4) is None
    assert next_sigma(None, 0.5) is None


def test_product_target_sanity():
    # with cfg = 1 and no prior the target is the conditional itself
    m, v = product_target(UNCOND, COND, [], 1.0)
    np.testing.assert_allclose(m, COND.mu)
    np.testing.assert_allclose(v, COND.var)
