"""DDIM inversion for SimDA's one-shot editing: the deterministic inversion step as a ComfyUI sampler function
and the sigmas it walks up."""

from __future__ import annotations

import torch

import comfy.sample
import comfy.samplers

from .host import describe


def ddim_inversion_sampler_function(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """KSAMPLER function: integrate from ``sigmas[0]`` (low) to ``sigmas[-1]`` (high) deterministically."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    steps = len(sigmas) - 1
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, s_next * s_in, **extra_args)
        d = (x - denoised) / s_next
        x = x + (s_next - s) * d
        if callback is not None:
            callback({"x": x, "i": i, "sigma": s_next, "sigma_hat": s_next, "denoised": denoised})
    return x


def inversion_sigmas(model, scheduler: str, steps: int) -> torch.Tensor:
    """The descending schedule the inverted latent is regenerated on. For rectified flow the top sigma must
    stay below 1 (at 1 the latent is pure noise and ComfyUI's noise scaling erases the input), so the
    schedule gets one extra step and loses its first sigma when that is 1."""
    ms = model.get_model_object("model_sampling")
    flow = describe(model).sampler_space == "flow"
    sigmas = comfy.samplers.calculate_sigmas(ms, scheduler, steps + (1 if flow else 0)).cpu()
    if flow:
        sigmas = sigmas[1:] if float(sigmas[0]) >= 1.0 - 1e-6 else sigmas[:-1].clone()
        if float(sigmas[-1]) != 0.0:
            sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas
