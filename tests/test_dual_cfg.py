"""Dual classifier-free guidance on exact Gaussian denoisers.

Three conditions (no image / image / image + text) have Gaussian data with their own means and variances, so
each denoiser is exact and affine. Sampled through an Euler loop with the pack's rule, the output moments
must equal the closed form: the Euler recursion of the affine map whose coefficients are the weighted
denoisers' (devtools/gaussian_reference.py, written independently of samplers/)."""

import numpy as np
import pytest
import torch

from devtools.gaussian_reference import Gauss, euler_moments, flow_sigmas, karras_sigmas
from samplers.dual_cfg import dual_cfg, frame_scales

NONE = Gauss(np.array([0.0, 1.0]), np.array([1.0, 0.5]))
IMAGE = Gauss(np.array([2.0, -1.0]), np.array([0.6, 0.8]))
FULL = Gauss(np.array([3.0, 0.5]), np.array([0.4, 0.3]))


def denoise(g: Gauss, x: torch.Tensor, s: float, flow: bool) -> torch.Tensor:
    k, b = g.denoiser_coeffs(s, flow)
    return x * torch.tensor(k) + torch.tensor(b)


def pack_euler(x, sigmas, flow, s_v, s_t):
    for s, sn in zip(sigmas[:-1], sigmas[1:]):
        d = dual_cfg(denoise(NONE, x, s, flow), denoise(IMAGE, x, s, flow), denoise(FULL, x, s, flow), s_v, s_t)
        x = x + (sn - s) * (x - d) / s
    return x


@pytest.mark.parametrize("flow", [False, True])
@pytest.mark.parametrize("s_v,s_t", [(1.0, 1.0), (1.0, 5.0), (2.5, 7.5), (0.0, 3.0)])
def test_euler_moments_match_closed_form(flow, s_v, s_t):
    sigmas = flow_sigmas(20) if flow else karras_sigmas(20)
    sigmas = [float(s) for s in sigmas]
    if flow:
        sigmas[0] = min(sigmas[0], 0.999)

    def coeffs(s):
        parts = [(1.0 - s_v, NONE), (s_v - s_t, IMAGE), (s_t, FULL)]
        k = sum(w * g.denoiser_coeffs(s, flow)[0] for w, g in parts)
        b = sum(w * g.denoiser_coeffs(s, flow)[1] for w, g in parts)
        return k, b

    var0 = np.full(2, 1.0 if flow else sigmas[0] ** 2)
    m_ref, v_ref = euler_moments(sigmas, flow, coeffs, np.zeros(2), var0)
    # the pack's loop is affine in x: read its map off two inputs, then push the moments through it
    zero = pack_euler(torch.zeros(2, dtype=torch.float64), sigmas, flow, s_v, s_t)
    one = pack_euler(torch.ones(2, dtype=torch.float64), sigmas, flow, s_v, s_t)
    a, b = (one - zero).numpy(), zero.numpy()
    np.testing.assert_allclose(a * 0.0 + b, m_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a * a * var0, v_ref, rtol=1e-10, atol=1e-10)
    if (s_v, s_t) == (1.0, 1.0):  # the fully conditional model's own sampler
        np.testing.assert_allclose(b, euler_moments(sigmas, flow, lambda s: FULL.denoiser_coeffs(s, flow),
                                                    np.zeros(2), var0)[0], rtol=1e-10)


def test_special_cases_and_frame_ramp():
    g = torch.Generator().manual_seed(0)
    dn, di, df = (torch.randn(3, 4, generator=g) for _ in range(3))
    torch.testing.assert_close(dual_cfg(dn, di, df, 1.0, 4.0), di + 4.0 * (df - di))  # CFG on the text
    torch.testing.assert_close(dual_cfg(dn, di, df, 1.0, 1.0), df)
    torch.testing.assert_close(dual_cfg(dn, di, df, 3.0, 0.0), dn + 3.0 * (di - dn))  # image-only CFG
    torch.testing.assert_close(frame_scales(1.0, 3.0, 5), torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0]))
    per_frame = frame_scales(1.0, 3.0, 3).reshape(3, 1)
    out = dual_cfg(dn[:3], di[:3], df[:3], per_frame, 2.0)
    for f in range(3):
        torch.testing.assert_close(out[f], dual_cfg(dn[f], di[f], df[f], float(per_frame[f]), 2.0))
