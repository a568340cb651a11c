"""Score composition of a small domain model with one or more frozen priors (Video Adapter, Algorithm 1).

Everything here works on *denoised* estimates D(x, sigma), the quantity ComfyUI's guiders exchange, and
is host-free: the model calls are passed in as callables.

The rule, per evaluation at noise level sigma (eps = predicted noise, omega = cfg, gamma_i = strengths):

    eps~ = eps_d(x) + omega * (eps_d(x | c) + sum_i gamma_i * eps_p_i(x | c_i) - eps_d(x))

and outside the composition window (or with every gamma_i = 0) plain classifier-free guidance on the
domain model.

Parameterisations (x is the sampler's latent):

* ``"eps"`` covers ComfyUI's EPS, V and EDM models, which all share x = x0 + sigma * n. There
  eps = (x - D) / sigma and the rule above is exactly a sum of scores. Written in D it reads

      D~ = D_cfg + omega * sum_i gamma_i * (D_p_i - x),    D_cfg = D_u + omega * (D_c - D_u),

  with no division by sigma, so it is finite at every sigma.
* ``"flow"`` covers rectified-flow models (Wan, HunyuanVideo, LTXV, ...): x = (1 - s) x0 + s n. The
  noise is eps = (x - (1 - s) D) / s and going back needs D = (x - s eps) / (1 - s), singular at s = 1,
  which is exactly where Wan's schedules start. Two ways are offered:

  - ``"velocity"`` (default): apply the rule to the velocity v = (x - D) / s instead of eps. In D this
    is the same formula as the eps case above, finite everywhere.
  - ``"noise"``: apply the rule to eps (an exact sum of scores) and convert back with 1 - s clamped to
    at least ``FLOW_NOISE_FLOOR``:  D~ = D_cfg + omega * sum_i gamma_i * (D_p_i - x / max(1 - s, floor)).

  Both agree whenever the weights sum to one; they differ because the composed weights sum to
  1 + omega * sum(gamma). ``benchmarks/flow_composition_space.py`` measures both against the exact
  product distribution on Gaussians; velocity space is the default because it is closer there (see README).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from . import parameterisation
from .schedules import CONSTANT_ONE, StrengthSchedule

PARAMETERISATIONS = ("eps", "flow")
# A composed denoised estimate beyond this magnitude (in the model's latent space) means the settings have
# made the sampler diverge. On the tiny test models, sound settings peak at about 3e2 (MCMC included), while
# the settings that ruin a run (flow_space "noise" with cfg 100 or prior_strength 10) reach 6e5 to 1e16 or NaN.
DIVERGENCE_LIMIT = 1e4


class CompositionDiverged(ValueError):
    """The composed estimate became non-finite or exploded; the message names the settings."""
FLOW_SPACES = ("velocity", "noise")
FLOW_NOISE_FLOOR = 0.1


class CompositionSettingsError(ValueError):
    """Settings refused before sampling (see :func:`check_settings`); the message names them and what works."""


# Limits of the composed prior weight w = cfg * sum_i strength_i * schedule_i (its peak inside the window) and
# of the Langevin step mcmc_step_size * (1 + w), measured on the shipped tiny pair by
# benchmarks/composer_stability_sweep.py: within them every combination of the composer's allowed settings
# samples to the end with every estimate finite and within DIVERGENCE_LIMIT. Measured there: velocity space
# peaks at about 5.6 * w (5.6e3 at w = 1000, diverges at 2000); noise space reaches 3.3e3 at w = 6 and
# diverges from 8; noise-space Langevin diverges from mcmc_step_size * (1 + w) = 3 (h 0.3 at w 10, h 1 at w 4).
# eps / v models use the velocity formula in D (see the module docstring) and its limits.
MAX_PRIOR_WEIGHT = {"velocity": 1000.0, "noise": 6.0, "eps": 1000.0}
MAX_LANGEVIN_STEP = {"velocity": float("inf"), "noise": 2.0, "eps": float("inf")}


_bcast = parameterisation.bcast


# The conversions live in parameterisation.py; these names are kept for callers of this module.
denoised_to_eps = parameterisation.denoised_to_eps
eps_to_denoised = parameterisation.eps_to_denoised


def cfg_combine(d_cond: torch.Tensor, d_uncond: Optional[torch.Tensor], cfg: float) -> torch.Tensor:
    """Classifier-free guidance on denoised estimates, in the same operation order as ComfyUI's."""
    if d_uncond is None:
        if not math.isclose(cfg, 1.0):
            raise ValueError("the unconditional prediction is needed when cfg != 1")
        return d_cond
    return d_uncond + (d_cond - d_uncond) * cfg


def add_priors(x: torch.Tensor, sigma, d_guided: torch.Tensor, cfg: float,
               priors: Sequence[tuple[float, torch.Tensor]], parameterisation: str = "eps",
               flow_space: str = "velocity", rule: str = "product") -> torch.Tensor:
    """Add the prior terms to the domain model's guided estimate ``d_guided``.

    rule ``"product"`` (Video Adapter): ``d_guided + cfg * sum_i gamma_i * (D_p_i - x_term)`` with
    ``x_term = x``, or ``x / max(1 - s, floor)`` for flow models in noise space (module docstring).
    rule ``"cfg_mix"`` (the paper's baseline): ``(1 - sum lambda_i) * d_guided + sum lambda_i * D_p_i``
    where D_p_i are the priors' own classifier-free guided estimates; weights sum to one, so every
    parameterisation space gives the same result.
    """
    active = [(float(g), d) for g, d in priors if g != 0.0]
    if not active:
        return d_guided
    if rule == "cfg_mix":
        out = d_guided * (1.0 - sum(g for g, _ in active))
        for g, d in active:
            out = out + d * g
        return out
    if rule != "product":
        raise ValueError(f"unknown rule '{rule}'")
    if parameterisation == "flow" and flow_space == "noise":
        x_term = x / torch.clamp(1.0 - _bcast(sigma, x), min=FLOW_NOISE_FLOOR)
    elif parameterisation in PARAMETERISATIONS:
        x_term = x
    else:
        raise ValueError(f"unknown parameterisation '{parameterisation}'")
    out = d_guided
    for g, d in active:
        out = out + (d - x_term) * (cfg * g)
    return out


def compose_denoised(x: torch.Tensor, sigma, d_cond: torch.Tensor, d_uncond: Optional[torch.Tensor],
                     cfg: float, priors: Sequence[tuple[float, torch.Tensor]] = (),
                     parameterisation: str = "eps", flow_space: str = "velocity") -> torch.Tensor:
    """The whole rule on denoised estimates: :func:`cfg_combine` then :func:`add_priors`.

    Args:
        x: the sampler's latent ``[B, ...]``; sigma: a float or a ``[B]`` tensor.
        d_cond, d_uncond: the domain model's conditional / unconditional estimates (``d_uncond`` may be
            None when ``cfg == 1``).
        cfg: omega; priors: ``(gamma_i, D_p_i)`` pairs (gamma_i == 0 ignored).
    """
    return add_priors(x, sigma, cfg_combine(d_cond, d_uncond, cfg), cfg, priors, parameterisation, flow_space)


@dataclass
class PriorTerm:
    """One prior of a composition: its strength, schedule and an opaque handle for the caller."""

    strength: float
    schedule: StrengthSchedule = CONSTANT_ONE
    handle: object = None

    def gamma(self, percent: float) -> float:
        return self.strength * self.schedule(percent)


@dataclass
class Composition:
    """Decides, per evaluation, which models run and combines their outputs.

    Args:
        cfg: omega.
        priors: the prior terms (strength and schedule each).
        window_sigma: the prior is composed while sigma > window_sigma (the composition_end percent
            converted with the domain model's percent_to_sigma). Deciding by sigma, not by step index,
            keeps multi-evaluation samplers (Heun, DPM++ SDE) inside or outside the window consistently.
        sigma_to_percent: maps a sigma to its sampling percent, for the strength schedules.
        parameterisation, flow_space: see :func:`compose_denoised`.
        mcmc_steps, mcmc_step_size: Langevin corrections per noise level (see :meth:`langevin`).
    """

    cfg: float
    priors: list[PriorTerm] = field(default_factory=list)
    window_sigma: float = 0.0
    sigma_to_percent: Callable[[float], float] = lambda s: 0.0
    parameterisation: str = "eps"
    flow_space: str = "velocity"
    mcmc_steps: int = 0
    mcmc_step_size: float = 0.05
    rule: str = "product"

    def __post_init__(self):
        if self.parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"unknown parameterisation '{self.parameterisation}'")
        if self.flow_space not in FLOW_SPACES:
            raise ValueError(f"unknown flow_space '{self.flow_space}'; use one of {FLOW_SPACES}")

    def check(self, denoised: torch.Tensor, sigma: float) -> torch.Tensor:
        """``denoised`` unchanged, or :class:`CompositionDiverged` naming the settings that made it explode."""
        finite = bool(torch.isfinite(denoised.detach()).all())
        peak = float(denoised.detach().abs().max()) if finite else float("inf")
        if finite and peak <= DIVERGENCE_LIMIT:
            return denoised
        what = "is not finite" if not finite else f"reached {peak:.3g} (limit {DIVERGENCE_LIMIT:g})"
        gammas = ", ".join(f"{t.strength:g}" for t in self.priors) or "none"
        hint = []
        if self.parameterisation == "flow" and self.flow_space == "noise":
            hint.append('flow_space "velocity" (finite at every sigma)')
        hint.append(f"a smaller cfg (now {self.cfg:g}) or prior_strength (now {gammas})")
        if self.mcmc_steps:
            hint.append(f"fewer or smaller MCMC steps (now {self.mcmc_steps} x {self.mcmc_step_size:g})")
        raise CompositionDiverged(
            f"the composed estimate {what} at sigma {sigma:.4g}: these settings make sampling diverge. Try "
            + "; ".join(hint))

    def in_window(self, sigma: float) -> bool:
        return sigma > self.window_sigma

    def gammas(self, sigma: float) -> list[float]:
        """gamma_i(sigma) for every prior, 0 outside the window."""
        if not self.in_window(sigma):
            return [0.0] * len(self.priors)
        p = self.sigma_to_percent(sigma)
        return [t.gamma(p) for t in self.priors]

    def needs_uncond(self) -> bool:
        return not math.isclose(self.cfg, 1.0)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor,
                guided_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                prior_fn: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """One composed evaluation.

        ``guided_fn(x, sigma)`` returns the domain model's classifier-free guided estimate at scale
        ``cfg`` (one batched cond/uncond pass in the ComfyUI binding, skipping uncond when cfg == 1);
        ``prior_fn(i, x, sigma)`` returns prior i's estimate. Priors whose strength is 0 at this sigma
        are not evaluated at all.
        """
        s = float(sigma.max()) if torch.is_tensor(sigma) else float(sigma)
        d_guided = guided_fn(x, sigma)
        terms = [(g, prior_fn(i, x, sigma)) for i, g in enumerate(self.gammas(s)) if g != 0.0]
        return add_priors(x, sigma, d_guided, self.cfg, terms, self.parameterisation, self.flow_space, self.rule)

    def evaluate(self, x: torch.Tensor, sigma: torch.Tensor, guided_fn, prior_fn,
                 sigma_next: Optional[float] = None,
                 noise_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
        """What a guider returns for one evaluation: the composed denoised estimate, after
        ``mcmc_steps`` Langevin corrections when they apply (inside the window, at a sigma of the schedule
        whose successor ``sigma_next`` is known). The corrections reach the sampler through
        :func:`euler_handoff`."""
        s = float(sigma.max()) if torch.is_tensor(sigma) else float(sigma)

        def den(y):
            return self.denoise(y, sigma, guided_fn, prior_fn)

        if (self.mcmc_steps > 0 and sigma_next is not None and noise_fn is not None and s > 0.0
                and s > sigma_next and self.in_window(s)):
            x_c = self.langevin(x, sigma, den, noise_fn)
            return euler_handoff(x, x_c, den(x_c), sigma, sigma_next)
        return den(x)

    def langevin(self, x: torch.Tensor, sigma: torch.Tensor, denoise_fn: Callable[[torch.Tensor], torch.Tensor],
                 noise_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``mcmc_steps`` unadjusted Langevin steps at fixed sigma on the composed score.

        score(x) = -eps~(x) / sigma for both parameterisations (x = a * x0 + sigma * n), step
        eta = mcmc_step_size * sigma^2:  x <- x + eta * score + sqrt(2 * eta) * z.
        ``denoise_fn(x)`` is the composed denoiser at this sigma, ``noise_fn(x)`` draws z.
        """
        s = _bcast(sigma, x)
        for _ in range(self.mcmc_steps):
            eps = denoised_to_eps(x, denoise_fn(x), sigma, self.parameterisation)
            x = x - self.mcmc_step_size * s * eps + math.sqrt(2.0 * self.mcmc_step_size) * s * noise_fn(x)
        return x


def next_sigma(schedule: Optional[torch.Tensor], sigma: float, rtol: float = 1e-5) -> Optional[float]:
    """The sigma after ``sigma`` in the sampler's schedule, or None when ``sigma`` is not one of its points
    (the in-between evaluations of multi-stage samplers)."""
    if schedule is None:
        return None
    sched = schedule.detach().flatten().double().cpu().tolist()
    for i in range(len(sched) - 1):
        if abs(sched[i] - sigma) <= rtol * max(abs(sigma), 1e-12):
            return sched[i + 1]
    return None


def euler_handoff(x: torch.Tensor, x_corrected: torch.Tensor, d_corrected: torch.Tensor,
                  sigma, sigma_next) -> torch.Tensor:
    """The denoised estimate to return at ``x`` so that the sampler's Euler step from ``x`` lands exactly
    where an Euler step from the corrected point ``x_corrected`` would:

        x + (s_n - s) (x - D^) / s  ==  x' + (s_n - s) (x' - D') / s   =>   D^ = D' + (x' - x) s_n / (s - s_n)

    The sampler never exposes its state to a guider; this is how Langevin corrections reach it. Exact for
    Euler-type first steps (Euler, Euler ancestral's deterministic part, DDIM, the first stage of Heun);
    other samplers see a consistent but approximate correction.
    """
    s = _bcast(sigma, x)
    sn = _bcast(sigma_next, x)
    return d_corrected + (x_corrected - x) * (sn / (s - sn))


def prior_weight(comp: "Composition", percents: int = 201) -> float:
    """The largest composed prior weight ``cfg * sum_i gamma_i(p)`` over the composition window (0 when the
    window is empty). Schedules are read at ``percents`` evenly spaced percents and at their own points."""
    if not comp.priors:
        return 0.0
    end = 1.0 if comp.window_sigma <= 0.0 else float(comp.sigma_to_percent(comp.window_sigma))
    if end <= 0.0:
        return 0.0
    grid = [end * i / (percents - 1) for i in range(percents - 1)]
    for t in comp.priors:
        grid += [p for p, _ in t.schedule.points if p < end]
    peak = max(sum(t.gamma(p) for t in comp.priors) for p in grid)
    return abs(comp.cfg) * peak


def check_settings(comp: "Composition") -> None:
    """Refuse, before sampling, settings that make the composed sampler diverge (limits measured on the
    shipped tiny pair, see ``MAX_PRIOR_WEIGHT``): raises :class:`CompositionSettingsError` naming the
    settings and what would work. The CFG-mix rule interpolates (weights sum to one) and is never refused."""
    if comp.rule == "cfg_mix":
        return
    space = comp.flow_space if comp.parameterisation == "flow" else "eps"
    w = prior_weight(comp)
    limit = MAX_PRIOR_WEIGHT[space]
    strengths = ", ".join(f"{t.strength:g}" for t in comp.priors) or "none"
    where = f'flow_space "{space}"' if space != "eps" else "an eps / v model"
    if w > limit:
        peak = w / max(abs(comp.cfg), 1e-12)
        hint = (f"use a smaller cfg (now {comp.cfg:g}) or prior_strength (now {strengths}): cfg x prior_strength x "
                f"schedule peak <= {limit:g}")
        if comp.cfg:
            hint += f", so prior_strength x schedule peak <= {limit / abs(comp.cfg):.3g} at this cfg"
        if space == "noise" and MAX_PRIOR_WEIGHT["velocity"] > limit:
            hint += f'; or flow_space "velocity", which allows up to {MAX_PRIOR_WEIGHT["velocity"]:g}'
        raise CompositionSettingsError(
            f"these settings make sampling diverge: the prior weight cfg x prior_strength x schedule peak = "
            f"{comp.cfg:g} x {peak:.3g} = {w:.3g} is above {limit:g} for {where}. To fix it, {hint}")
    lmax = MAX_LANGEVIN_STEP[space]
    if comp.mcmc_steps > 0 and w > 0.0 and comp.mcmc_step_size * (1.0 + w) > lmax:
        ok = lmax / (1.0 + w)
        raise CompositionSettingsError(
            f"these settings make the Langevin corrections diverge: mcmc_step_size (now {comp.mcmc_step_size:g}) x "
            f"(1 + prior weight {w:.3g}) is above {lmax:g} for {where} (prior weight = cfg (now {comp.cfg:g}) x "
            f"prior_strength (now {strengths}) x schedule peak). To fix it, use mcmc_step_size <= {ok:.3g} at these "
            f"settings, a smaller prior weight, mcmc_steps 0" + (', or flow_space "velocity"' if space == "noise" else ""))
