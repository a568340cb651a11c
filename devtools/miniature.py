"""The Video Adapter miniature's reference sampler: an Euler loop over the composer's own rule
(``samplers.composition.Composition``) on the pack's small domain models, without ComfyUI. The Table-1 benchmark
samples with it, and the host tests check the Score Composer node against it."""

from __future__ import annotations

import numpy as np
import torch

CFG = 3.0           # omega for every method
SAMPLE_SHIFT = 2.0  # flow schedule shift of the sampler (as Wan's shifted schedules)
COMPOSITION_END = 0.9  # percent after which only the domain model runs (the paper's last 10 %)


def flow_sigmas(steps: int, shift: float) -> list[float]:
    t = np.linspace(1.0, 0.0, steps + 1)
    return [float(shift * u / (1 + (shift - 1) * u)) for u in t]


def eps_sigmas(steps: int, smin: float = 0.03, smax: float = 14.6, rho: float = 7.0) -> list[float]:
    """Karras et al.'s schedule over SD's discrete noise range (what the eps models are trained on), then 0."""
    r = np.linspace(0, 1, steps)
    s = (smax ** (1 / rho) + r * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return [float(v) for v in s] + [0.0]


def denoised(model, x, sigma, context, first_frame=None):
    s = torch.full((x.shape[0],), float(sigma))
    kw = {"first_frame": first_frame} if first_frame is not None else {}
    pred = model(x, s, context, **kw)
    # flow: D = x - s v (x = (1 - s) x0 + s n, v = n - x0); eps: D = x - s eps (x = x0 + s n): the same form
    return x - s.reshape(-1, 1, 1, 1, 1) * pred


def percent_of_sigma(sigmas):
    """Sampling percent of a sigma of this schedule (linear in the step index, interpolated)."""
    arr = np.array(sigmas[:-1], dtype=np.float64)
    steps = len(sigmas) - 1

    def f(s):
        s = float(s)
        if s >= arr[0]:
            return 0.0
        if s <= arr[-1]:
            return (steps - 1) / steps
        i = int(np.searchsorted(-arr, -s))
        a, b = arr[i - 1], arr[i]
        return (i - 1 + (a - s) / (a - b)) / steps

    return f


def sample(method, small, prior, noise, context, steps, sigmas=None, composition_end=COMPOSITION_END,
           flow_space="velocity", schedule=None, mcmc_steps=0, mcmc_step_size=0.05, first_frame=None,
           prior_context=None, seed=0, composition=None, cfg=CFG):
    """Euler sampling; ``method`` = ("prior" | "small" | "compose" | "mix", weight). ``sigmas`` (optional)
    replaces the schedule; the host tests pass ComfyUI's to compare with the nodes. The domain model and the
    prior get the same caption unless ``prior_context`` is given; ``cfg`` is every method's guidance scale.
    ``composition``: the module of the composer's rule (default ``samplers.composition``; inside a ComfyUI
    process, where ``samplers`` is ComfyUI's own module, pass the pack's)."""
    if composition is None:
        import samplers.composition as composition
    Composition, PriorTerm = composition.Composition, composition.PriorTerm
    cfg_combine, next_sigma = composition.cfg_combine, composition.next_sigma
    kind, weight = method
    param = small.config.parameterisation
    if sigmas is None:
        sig = flow_sigmas(steps, SAMPLE_SHIFT) if param == "flow" else eps_sigmas(steps)
    else:
        sig = [float(v) for v in sigmas]
    steps = len(sig) - 1
    window = sig[min(int(round(composition_end * steps)), steps)] if composition_end < 1.0 else 0.0
    rule = "cfg_mix" if kind == "mix" else "product"
    terms = [PriorTerm(strength=weight, **({"schedule": schedule} if schedule is not None else {}))]
    comp = Composition(cfg=cfg, priors=terms if kind in ("compose", "mix") else [], window_sigma=window,
                       sigma_to_percent=percent_of_sigma(sig), parameterisation=param, flow_space=flow_space,
                       rule=rule, mcmc_steps=mcmc_steps, mcmc_step_size=mcmc_step_size)
    pctx = context if prior_context is None else prior_context
    g = torch.Generator().manual_seed(seed + 12345)
    sched = torch.tensor(sig)
    x = noise.clone() if param == "flow" else noise * sig[0]

    def guided(model, ctx):
        def fn(xx, sigma):
            s = float(sigma.max()) if torch.is_tensor(sigma) else float(sigma)
            return cfg_combine(denoised(model, xx, s, ctx, first_frame), denoised(model, xx, s, None, first_frame), cfg)
        return fn

    def prior_fn(_i, xx, sigma):
        s = float(sigma.max()) if torch.is_tensor(sigma) else float(sigma)
        return guided(prior, pctx)(xx, s) if kind == "mix" else denoised(prior, xx, s, pctx, first_frame)

    for i in range(steps):
        s, s_next = sig[i], sig[i + 1]
        if kind == "prior":
            d = guided(prior, pctx)(x, s)
        else:
            d = comp.evaluate(x, torch.tensor(s), guided(small, context), prior_fn, sigma_next=next_sigma(sched, s),
                              noise_fn=lambda y: torch.randn(y.shape, generator=g))
        x = x + (s_next - s) * (x - d) / s  # Euler step on dx/ds = (x - D) / s (both spaces)
    return x
