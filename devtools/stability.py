"""The Score Composer stability sweep's core: every combination of the composer's settings on the shipped tiny
pair either refused before sampling or sampled to the end finite and bounded. ``benchmarks/composer_stability_sweep.py``
runs the full grid, ``tests/test_composer_stability.py`` the small one."""

from __future__ import annotations

import itertools
import os

import torch

from adapters.domain_model import load_domain_model
from adapters.synthetic_video import SYNTHETIC_TEXT_DIM, caption_context, style_tokens
from samplers.composition import (DIVERGENCE_LIMIT, CompositionDiverged, CompositionSettingsError,
                                  Composition, PriorTerm, cfg_combine, check_settings, next_sigma)
from samplers.schedules import StrengthSchedule, flow_percent_to_sigma, sigma_window, SigmaPercentMap

WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "adapters", "weights")
# "bounded": no composed estimate and no latent beyond the guider's divergence guard at any step (latents of the
# synthetic space are of order 1; the table's settings peak near 1e1, the largest allowed weights near 6e3)
BOUND = DIVERGENCE_LIMIT
SHIFT = 3.0

FULL_GRID = dict(
    strength=(0.0, 0.2, 1.0, 3.0, 10.0),
    cfg=(0.0, 1.0, 5.0, 20.0, 100.0),
    schedule=("constant", "linear 1->0", "piecewise peak 10"),
    composition_end=(0.0, 0.5, 0.9, 1.0),
    mcmc=((0, 0.05), (2, 0.05), (5, 0.3), (20, 1.0)),
    flow_space=("velocity", "noise"),
)
SMALL_GRID = dict(
    strength=(0.0, 0.4, 10.0),
    cfg=(0.0, 5.0, 100.0),
    schedule=("constant", "piecewise peak 10"),
    composition_end=(0.0, 0.9, 1.0),
    mcmc=((0, 0.05), (3, 0.05), (20, 1.0)),
    flow_space=("velocity", "noise"),
)
SCHEDULES = {
    "constant": StrengthSchedule(),
    "linear 1->0": StrengthSchedule("linear", 1.0, 0.0),
    "piecewise peak 10": StrengthSchedule("piecewise", points=((0.0, 10.0), (0.5, 0.5))),
}


def tiny_pair():
    domain, _ = load_domain_model(os.path.join(WEIGHTS, "tiny_synthetic_domain.safetensors"), dtype=torch.float32)
    prior, _ = load_domain_model(os.path.join(WEIGHTS, "tiny_synthetic_prior.safetensors"), dtype=torch.float32)
    return domain, prior


def composition(strength, cfg, schedule, composition_end, mcmc, flow_space, check=True) -> Composition:
    """The composer node's Composition for these settings (``check``: refuse before sampling as the node does)."""
    p2s = flow_percent_to_sigma(SHIFT)
    terms = [PriorTerm(strength=float(strength), schedule=SCHEDULES[schedule])]
    comp = Composition(cfg=float(cfg), priors=terms, window_sigma=sigma_window(p2s, composition_end),
                       sigma_to_percent=SigmaPercentMap(p2s, n=201).percent, parameterisation="flow",
                       flow_space=flow_space, mcmc_steps=int(mcmc[0]), mcmc_step_size=float(mcmc[1]))
    if check:
        check_settings(comp)
    return comp


def run_one(domain, prior, comp: Composition, steps=6, shape=(2, 16, 4, 4, 4), seed=0) -> float:
    """Sample with ``comp``; returns the largest magnitude met (estimates and latents). Raises
    CompositionDiverged as the guider does."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    ctx = caption_context(style_tokens("sunset", shape[0]), SYNTHETIC_TEXT_DIM)
    sig = [SHIFT * u / (1 + (SHIFT - 1) * u) for u in torch.linspace(1, 0, steps + 1).tolist()]
    sched = torch.tensor(sig)
    peak = float(x.abs().max())

    def den(model, xx, s, c):
        sv = torch.full((xx.shape[0],), s)
        return xx - sv.reshape(-1, 1, 1, 1, 1) * model(xx, sv, c)

    def guided(xx, sigma):
        s = float(sigma)
        d_c = den(domain, xx, s, ctx)
        return cfg_combine(d_c, den(domain, xx, s, None) if comp.needs_uncond() else None, comp.cfg)

    def prior_fn(_i, xx, sigma):
        return den(prior, xx, float(sigma), ctx)

    with torch.no_grad():
        for s, sn in zip(sig[:-1], sig[1:]):
            d = comp.evaluate(x, torch.tensor(s), guided, prior_fn, sigma_next=next_sigma(sched, s),
                              noise_fn=lambda y: torch.randn(y.shape, generator=g))
            d = comp.check(d, s)
            peak = max(peak, float(d.abs().max()))
            x = x + (sn - s) * (x - d) / s
            if not bool(torch.isfinite(x).all()):
                raise CompositionDiverged(f"the latent is not finite after sigma {s:.4g}")
            peak = max(peak, float(x.abs().max()))
    return peak


def sweep(grid: dict, check: bool = True, domain=None, prior=None, verbose: bool = False) -> dict:
    """Every combination of ``grid``; returns counts and the failures (combinations that were neither refused
    nor finite and bounded) with their settings."""
    if domain is None:
        domain, prior = tiny_pair()
    keys = list(grid)
    out = {"total": 0, "refused": 0, "ok": 0, "failures": [], "messages": {}, "peak": 0.0}
    for combo in itertools.product(*(grid[k] for k in keys)):
        settings = dict(zip(keys, combo))
        out["total"] += 1
        try:
            comp = composition(**settings, check=check)
        except CompositionSettingsError as e:
            out["refused"] += 1
            out["messages"].setdefault(str(e).split(":")[0], str(e))
            continue
        try:
            peak = run_one(domain, prior, comp)
        except CompositionDiverged as e:
            out["failures"].append((settings, f"diverged: {e}"))
            continue
        if peak > BOUND:
            out["failures"].append((settings, f"peak {peak:.3g} > {BOUND:g}"))
            continue
        out["ok"] += 1
        out["peak"] = max(out["peak"], peak)
        if verbose:
            print(settings, f"peak {peak:.3g}", flush=True)
    return out
