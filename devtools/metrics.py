"""Metrics shared by the tests and benchmarks: one Frechet distance."""

from __future__ import annotations

import torch


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    m = 0.5 * (m + m.T)
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp_min(0.0).sqrt()) @ vecs.T


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor, ridge: float = 1e-6) -> float:
    """Frechet (2-Wasserstein squared) distance between Gaussians fitted to rows of ``feats_a [N, F]`` and
    ``feats_b [M, F]``: ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``.

    Computed in float64 with symmetric square roots from ``eigh`` (negative eigenvalues of round-off clamped
    to zero) and ``ridge`` times the identity added to both covariances, so it stays finite and symmetric in
    its arguments for rank-deficient sets. Needs at least two rows in each set."""
    a, b = feats_a.double(), feats_b.double()
    if a.shape[0] < 2 or b.shape[0] < 2 or a.shape[1] != b.shape[1]:
        raise ValueError("need two [N >= 2, F] feature sets of one width")
    eye = torch.eye(a.shape[1], dtype=torch.float64)
    ca = torch.cov(a.T).reshape(a.shape[1], a.shape[1]) + ridge * eye
    cb = torch.cov(b.T).reshape(b.shape[1], b.shape[1]) + ridge * eye
    ra = _sqrt_psd(ca)
    cross = _sqrt_psd(ra @ cb @ ra)
    value = (a.mean(0) - b.mean(0)).square().sum() + torch.trace(ca + cb - 2.0 * cross)
    return float(value.clamp_min(0.0))
