"""How close does each way of composing get to the product distribution? Exact numbers on Gaussians.

    python benchmarks/composition_accuracy.py

Data of the domain model (conditional and unconditional) and of the prior are Gaussians, so every
denoiser is exact and the sampler's output mean and variance are computed in closed form (no sampling
noise; see devtools/gaussian_reference.py). The target is the distribution the paper's rule aims at,
p_u^(1 - omega) * (p_c * p_prior^gamma)^omega, also Gaussian. Distances are KL(output || target) summed
over three dimensions with different means and variances.

Table 1: rectified flow (Wan-like schedule, shift 8, first sigma exactly 1): velocity-space composition
against noise-space composition with the singularity clamped, next to the same rule on an eps model
(Karras schedule, sigma_max 14.6) where noise space is an exact score sum.
Table 2: Langevin corrections (mcmc_steps) and their effect on the same distance.
"""

from __future__ import annotations


import numpy as np

import _root  # noqa: E402,F401  (the repository root on sys.path)

from devtools.gaussian_reference import (Gauss, composed_coeffs, euler_moments, flow_sigmas, karras_sigmas, kl_gauss,
                                product_target)

UNCOND = Gauss(np.array([0.0, 0.5, -1.0]), np.array([1.0, 2.0, 0.5]))
COND = Gauss(np.array([1.0, -0.5, 0.0]), np.array([0.5, 1.0, 0.3]))
PRIOR = Gauss(np.array([-0.5, 1.0, 0.5]), np.array([0.3, 0.8, 1.5]))


def moments(flow, space, cfg, gamma, steps, mcmc=None):
    sigmas = flow_sigmas(steps) if flow else karras_sigmas(steps)
    coeffs = lambda s: composed_coeffs(s, flow, UNCOND, COND, [(gamma, PRIOR)], cfg, space)
    return euler_moments(sigmas, flow, coeffs, np.zeros(3), np.full(3, sigmas[0] ** 2), mcmc)


def row(label, m, v, tm, tv):
    return (f"| {label} | {kl_gauss(m, v, tm, tv):.3f} | {np.abs(m - tm).mean():.3f} | "
            f"{np.mean(v / tv):.3f} | {'yes' if np.all(np.isfinite(m)) and np.all(np.isfinite(v)) else 'NO'} |")


def main():
    print("## Table 1: composition space (KL to the product target; lower is better)\n")
    print("| setting | method | KL | mean abs error | variance ratio | finite |")
    print("|---|---|---|---|---|---|")
    wins = {"velocity": 0, "noise": 0}
    for cfg, gamma in ((1.0, 0.2), (1.0, 0.5), (3.0, 0.2), (5.0, 0.3)):
        tm, tv = product_target(UNCOND, COND, [(gamma, PRIOR)], cfg)
        for steps in (30, 200):
            label = f"cfg {cfg:g}, gamma {gamma:g}, {steps} steps"
            res = {}
            for name, flow, space in (("flow / velocity (default)", True, "velocity"),
                                      ("flow / noise, clamped", True, "eps"),
                                      ("eps model / noise (exact score sum)", False, "eps")):
                m, v = moments(flow, space, cfg, gamma, steps)
                res[name] = kl_gauss(m, v, tm, tv)
                print(row(f"{label} | {name}", m, v, tm, tv))
            wins["velocity" if res["flow / velocity (default)"] < res["flow / noise, clamped"] else "noise"] += 1
    print(f"\nflow settings where velocity space is closer: {wins['velocity']} of {sum(wins.values())}\n")

    print("## Table 2: Langevin corrections (eps model, cfg 1, gamma 0.4, 30 steps)\n")
    print("| mcmc_steps | step size | KL to product | model evaluations per step |")
    print("|---|---|---|---|")
    cfg, gamma = 1.0, 0.4
    tm, tv = product_target(UNCOND, COND, [(gamma, PRIOR)], cfg)
    for steps_mc, h in ((0, 0.0), (1, 0.05), (2, 0.05), (4, 0.05), (2, 0.2), (8, 0.2)):
        mc = (steps_mc, h, lambda s: s > 0.0) if steps_mc else None
        m, v = moments(False, "eps", cfg, gamma, 30, mc)
        print(f"| {steps_mc} | {h:g} | {kl_gauss(m, v, tm, tv):.3f} | {1 + steps_mc} |")
    print("\nflow model, velocity space, same setting:\n")
    print("| mcmc_steps | step size | KL to product |")
    print("|---|---|---|")
    for steps_mc, h in ((0, 0.0), (2, 0.05), (4, 0.2)):
        mc = (steps_mc, h, lambda s: s > 0.0) if steps_mc else None
        m, v = moments(True, "velocity", cfg, gamma, 30, mc)
        print(f"| {steps_mc} | {h:g} | {kl_gauss(m, v, tm, tv):.3f} |")


if __name__ == "__main__":
    main()
