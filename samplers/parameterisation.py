"""The one place where noise parameterisations are converted (host-free).

Two *sampler spaces* describe how a noisy latent ``x`` at noise level ``s`` (sigma) is made from clean data
``x0`` and standard noise ``n``:

* ``"eps"``: ``x = x0 + s * n``. ComfyUI's EPS, V and EDM models all sample in this space.
* ``"flow"``: ``x = (1 - s) * x0 + s * n`` (rectified flow: Wan, HunyuanVideo, LTXV, Mochi).

Three *predictions* say what a network outputs:

* ``"eps"``: the noise ``n``;
* ``"v"``: ``(n - s * x0) / sqrt(1 + s^2)`` (v prediction with sigma_data = 1, in sigma form; ComfyUI's
  V_PREDICTION and V_PREDICTION_EDM with SVD's sigma_data = 1 both read it this way);
* ``"flow"``: the velocity ``n - x0``.

Everything the pack converts (the trainer's noisy inputs and targets, the domain model's output, the
composer's scores, the adapter trainer's readout of ComfyUI's denoised estimate) goes through the functions
below. Tensors are broadcast against ``x``; ``sigma`` may be a float, a 0-d tensor or one value per batch
entry ``[B]``.
"""

from __future__ import annotations

import torch

SPACES = ("eps", "flow")
PREDICTIONS = ("eps", "v", "flow")


def space_of(prediction: str) -> str:
    """The sampler space a prediction lives in: ``"flow"`` for flow, ``"eps"`` for eps and v."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction '{prediction}'; expected one of {PREDICTIONS}")
    return "flow" if prediction == "flow" else "eps"


def bcast(sigma, like: torch.Tensor) -> torch.Tensor:
    """``sigma`` as a tensor broadcastable against ``like`` (``[B] -> [B, 1, 1, ...]``)."""
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if s.ndim == 0:
        return s
    return s.reshape(s.shape[0], *([1] * (like.ndim - 1)))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma, prediction_or_space: str) -> torch.Tensor:
    """The noisy latent at ``sigma``: ``(1 - s) x0 + s n`` (flow) or ``x0 + s n`` (eps / v)."""
    s = bcast(sigma, x0)
    if space_of_any(prediction_or_space) == "flow":
        return (1.0 - s) * x0 + s * noise
    return x0 + s * noise


def target(x0: torch.Tensor, noise: torch.Tensor, sigma, prediction: str) -> torch.Tensor:
    """What a network of ``prediction`` should output for ``x0`` noised with ``noise`` at ``sigma``."""
    if prediction == "flow":
        return noise - x0
    if prediction == "eps":
        return noise
    if prediction == "v":
        s = bcast(sigma, x0)
        return (noise - s * x0) / torch.sqrt(1.0 + s * s)
    raise ValueError(f"unknown prediction '{prediction}'")


def prediction_to_denoised(x: torch.Tensor, pred: torch.Tensor, sigma, prediction: str) -> torch.Tensor:
    """The clean estimate ``D`` implied by a network output ``pred`` at ``sigma``."""
    s = bcast(sigma, x)
    if prediction in ("flow", "eps"):  # flow: x - s (n - x0) = x0 exactly as eps: x - s n = x0
        return x - s * pred
    if prediction == "v":
        return x / (s * s + 1.0) - pred * s / torch.sqrt(s * s + 1.0)
    raise ValueError(f"unknown prediction '{prediction}'")


def denoised_to_prediction(x: torch.Tensor, denoised: torch.Tensor, sigma, prediction: str) -> torch.Tensor:
    """Inverse of :func:`prediction_to_denoised` (undefined at sigma = 0)."""
    s = bcast(sigma, x)
    if prediction in ("flow", "eps"):
        return (x - denoised) / s
    if prediction == "v":
        eps = (x - denoised) / s
        return (eps - s * denoised) / torch.sqrt(1.0 + s * s)
    raise ValueError(f"unknown prediction '{prediction}'")


def denoised_to_eps(x: torch.Tensor, denoised: torch.Tensor, sigma, space: str) -> torch.Tensor:
    """The noise ``n`` implied by a denoised estimate in a sampler ``space`` (undefined at sigma = 0)."""
    s = bcast(sigma, x)
    if space == "flow":
        return (x - (1.0 - s) * denoised) / s
    if space == "eps":
        return (x - denoised) / s
    raise ValueError(f"unknown sampler space '{space}'")


def eps_to_denoised(x: torch.Tensor, eps: torch.Tensor, sigma, space: str) -> torch.Tensor:
    """Inverse of :func:`denoised_to_eps` (for flow, singular at sigma = 1)."""
    s = bcast(sigma, x)
    if space == "flow":
        return (x - s * eps) / (1.0 - s)
    if space == "eps":
        return x - s * eps
    raise ValueError(f"unknown sampler space '{space}'")


def space_of_any(name: str) -> str:
    """A sampler space from either a space or a prediction name."""
    if name in SPACES:
        return name
    return space_of(name)
