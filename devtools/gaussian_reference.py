"""Closed-form reference for composing Gaussian "denoisers", written independently of samplers/.

Data of every model is a diagonal Gaussian N(mu, var). For a noisy x = a * x0 + s * n (a = 1 for eps
models, a = 1 - s for rectified flow) the exact denoiser is affine in x:

    D(x) = mu + a * var * (x - a * mu) / (a^2 * var + s^2)

Each model's noise eps = (x - a D) / s and velocity v = (x - D) / s are affine too, so the composed rule
of the paper applied in either space gives an affine D~(x) = k x + b, an Euler step is an affine map,
and the sampler's output mean and variance follow exactly:  m' = A m + B,  v' = A^2 v (+ C^2 for added
Gaussian noise). This module computes those moments with plain numpy, straight from the paper's rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Gauss:
    mu: np.ndarray
    var: np.ndarray

    def denoiser_coeffs(self, s: float, flow: bool):
        """(k, b) with D(x) = k x + b."""
        a = (1.0 - s) if flow else 1.0
        k = a * self.var / (a * a * self.var + s * s)
        return k, self.mu - k * a * self.mu


def composed_coeffs(s, flow, uncond, cond, priors, cfg, space="eps", floor=0.1):
    """Affine coefficients (k, b) of the composed denoiser at noise level s, from the paper's rule
    eps~ = eps_u + cfg * (eps_c + sum gamma_i eps_p_i - eps_u), applied in ``space``:
      "eps"      - noise space (exact score sum); for flow converted back with 1 - s clamped to >= floor
      "velocity" - the same weights applied to velocities (flow only)
    priors: list of (gamma, Gauss)."""
    a = (1.0 - s) if flow else 1.0
    weights = [(1.0 - cfg, uncond), (cfg, cond)] + [(cfg * g, p) for g, p in priors if g != 0.0]
    if flow and space == "velocity":
        # v_i = (x - D_i)/s = ((1 - k_i) x - b_i)/s ; D = x - s * sum w_i v_i
        v1 = sum(w * (1.0 - m.denoiser_coeffs(s, flow)[0]) / s for w, m in weights)
        v0 = sum(-w * m.denoiser_coeffs(s, flow)[1] / s for w, m in weights)
        return 1.0 - s * v1, -s * v0
    # eps_i = (x - a D_i)/s
    e1 = sum(w * (1.0 - a * m.denoiser_coeffs(s, flow)[0]) / s for w, m in weights)
    e0 = sum(-w * a * m.denoiser_coeffs(s, flow)[1] / s for w, m in weights)
    if not flow:
        return 1.0 - s * e1, -s * e0
    one_minus = 1.0 - s
    if one_minus >= floor:
        return (1.0 - s * e1) / one_minus, -s * e0 / one_minus
    # Inside the clamped region the pack defines D~ = D_cfg + cfg * sum gamma (D_p - x / floor); that is
    # the composition of the two exact pieces below, each written from its own definition.
    kc = sum(w * m.denoiser_coeffs(s, flow)[0] for w, m in weights[:2])
    bc = sum(w * m.denoiser_coeffs(s, flow)[1] for w, m in weights[:2])
    for w, m in weights[2:]:
        kp, bp = m.denoiser_coeffs(s, flow)
        kc = kc + w * (kp - 1.0 / floor)
        bc = bc + w * bp
    return kc, bc


def euler_moments(sigmas, flow, coeffs_at, mean0, var0, mcmc=None):
    """Exact output moments of the Euler sampler x <- x + (s_n - s)(x - D~(x))/s.

    coeffs_at(s) -> (k, b). ``mcmc`` = (steps, step_size, active(s)) adds Langevin steps before each
    Euler step, carried into the Euler step as if the sampler's state had moved."""
    m, v = np.array(mean0, dtype=float), np.array(var0, dtype=float)
    for s, sn in zip(sigmas[:-1], sigmas[1:]):
        k, b = coeffs_at(s)
        if mcmc is not None and mcmc[0] > 0 and mcmc[2](s):
            steps, h = mcmc[0], mcmc[1]
            a = (1.0 - s) if flow else 1.0
            for _ in range(steps):
                # eps~(x) = (x - a D~)/s ; x <- x - h s eps~ + sqrt(2h) s z
                e1, e0 = (1.0 - a * k) / s, -a * b / s
                A, B = 1.0 - h * s * e1, -h * s * e0
                m, v = A * m + B, A * A * v + 2.0 * h * s * s
        A = 1.0 + (sn - s) * (1.0 - k) / s
        B = -(sn - s) * b / s
        m, v = A * m + B, A * A * v
    return m, v


def product_target(uncond, cond, priors, cfg):
    """Moments of p_u^(1-cfg) * (p_c * prod p_i^gamma_i)^cfg, the distribution the rule aims at."""
    prec = (1.0 - cfg) / uncond.var + cfg / cond.var
    lin = (1.0 - cfg) * uncond.mu / uncond.var + cfg * cond.mu / cond.var
    for g, p in priors:
        prec = prec + cfg * g / p.var
        lin = lin + cfg * g * p.mu / p.var
    return lin / prec, 1.0 / prec


def kl_gauss(m1, v1, m2, v2):
    """KL(N(m1, v1) || N(m2, v2)), summed over dimensions."""
    return float(np.sum(0.5 * (v1 / v2 + (m2 - m1) ** 2 / v2 - 1.0 + np.log(v2 / v1))))


def flow_sigmas(n, shift=8.0):
    t = np.linspace(1.0, 0.0, n + 1)
    return shift * t / (1.0 + (shift - 1.0) * t)


def karras_sigmas(n, sigma_min=0.03, sigma_max=14.6, rho=7.0):
    r = np.linspace(0.0, 1.0, n)
    s = (sigma_max ** (1 / rho) + r * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return np.append(s, 0.0)


def percent_of_sigma_flow(s, shift=8.0):
    """Sampling percent of a flow sigma (inverse of ComfyUI's flow percent_to_sigma)."""
    if s >= 1.0:
        return 0.0
    if s <= 0.0:
        return 1.0
    t = s / (shift - (shift - 1.0) * s)
    return 1.0 - t

