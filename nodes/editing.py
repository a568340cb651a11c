"""One-shot video editing (SimDA section 3.4): deterministic DDIM inversion of a clip's latents, so the
clip can be regenerated with an edited prompt from its own inverted noise.

Use: Train Adapters on the clip (optional, one-shot tuning) -> DDIM Inversion with the clip's caption ->
SamplerCustomAdvanced with Disable Noise, the returned SIGMAS, the returned LATENT and the edited prompt.

DDIM in ComfyUI's sigma space is Euler's method on the probability-flow ODE, ``x' = x + (s' - s) d`` with
``d = (x - D(x, s)) / s`` for noise (EPS/V/EDM) and rectified-flow models alike. Inversion runs it from
``s = 0`` upwards and, as DDIM inversion does, evaluates ``d`` with the current latent at the next (higher)
noise level, which makes regeneration with euler (or ComfyUI's ddim) on the same sigmas retrace it.
"""

from __future__ import annotations

import torch

import comfy.sample
import comfy.samplers
from comfy_api.latest import io

from .common import CATEGORY, VideoAdapterError
from .binding.editing import ddim_inversion_sampler_function, inversion_sigmas

CAT_EDIT = f"{CATEGORY}/editing"


class DDIMInversion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_DDIMInversion",
            display_name="DDIM Inversion (video editing)",
            category=CAT_EDIT,
            description=(
                "Runs deterministic DDIM backwards from a clip's latents to noise, under any MODEL (noise or "
                "rectified-flow models, patches and adapters included). Regenerate with SamplerCustomAdvanced: "
                "Disable Noise, these SIGMAS and this LATENT, and an edited prompt (SimDA one-shot editing); "
                "with the same prompt and the euler or ddim sampler it reconstructs the clip."),
            inputs=[
                io.Model.Input("model", tooltip="The model used for regeneration (with its adapters, if tuned)."),
                io.Conditioning.Input("positive", tooltip="The caption of the source clip (not the edited prompt)."),
                io.Latent.Input("latent", tooltip="The source clip's latents (VAE Encode)."),
                io.Int.Input("steps", default=50, min=1, max=1000,
                             tooltip="Inversion steps; regenerate on the same number (the returned SIGMAS)."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=30.0, step=0.1,
                               tooltip="Guidance during inversion. 1 (no guidance) inverts most faithfully; above 1 "
                                       "needs negative."),
                io.Combo.Input("scheduler", options=list(comfy.samplers.SCHEDULER_NAMES), default="simple",
                               tooltip="Noise schedule of inversion and regeneration (ddim_uniform is DDIM's own)."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Negative prompt, used only when cfg is not 1."),
            ],
            outputs=[
                io.Latent.Output(display_name="noised_latent", tooltip="The inverted latent: start of regeneration "
                                 "(with Disable Noise)."),
                io.Sigmas.Output(display_name="sigmas", tooltip="The schedule to regenerate on (high to low)."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, latent, steps, cfg, scheduler, negative=None) -> io.NodeOutput:
        if cfg != 1.0 and negative is None:
            raise VideoAdapterError(f"cfg={cfg}: guidance needs the negative input; connect a negative prompt or "
                                    "set cfg to 1")
        sigmas = inversion_sigmas(model, scheduler, int(steps))
        samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, negative if negative is not None else positive)
        guider.set_cfg(float(cfg))
        sampler = comfy.samplers.KSAMPLER(ddim_inversion_sampler_function)
        ascending = sigmas.flip(0)
        noise = torch.zeros_like(samples)
        out = guider.sample(noise, samples, sampler, ascending, denoise_mask=latent.get("noise_mask"),
                            disable_pbar=False, seed=0)
        result = dict(latent)
        result["samples"] = out.to(samples.dtype).cpu()
        result.pop("noise_mask", None)
        return io.NodeOutput(result, sigmas)


NODES = [DDIMInversion]
