"""ComfyUI binding of the composition core: a GUIDER that SamplerCustomAdvanced drives with any sampler
and scheduler.

Only this module (and the node layer) imports ComfyUI. The math is in ``composition.py``; here we only
decide what to evaluate and hand ComfyUI's own machinery the rest:

* the domain model is the guider's main model; every prior is registered as an *additional model* of it,
  so ``prepare_sampling`` loads and offloads them together under ComfyUI's memory management;
* the domain model's classifier-free guided estimate comes from ComfyUI's own ``sampling_function`` (one
  batched cond/uncond pass, the cfg = 1 shortcut, pre/post-CFG hooks and custom CFG functions all apply),
  so with every prior strength at 0 the guider equals the native ``CFGGuider`` exactly;
* each prior's conditioning is processed by the prior model itself (``process_conds``) and its wrappers
  and hooks are registered with ``prepare_model_patcher``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.sampler_helpers
import comfy.samplers

from .composition import Composition, next_sigma

PRIORS_KEY = "video_adapters_priors"


@dataclass
class PriorModel:
    """A prior as the guider needs it: the patcher, its raw CONDITIONING and (for CFG mix) its own cfg."""

    model: object
    positive: list
    negative: list | None = None
    cfg: float = 1.0
    label: str = "prior"
    # filled per sampling run
    conds: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


class ComposedGuider(comfy.samplers.CFGGuider):
    """GUIDER for the score composer (rule "product") and the CFG-mix baseline (rule "cfg_mix")."""

    def __init__(self, domain_patcher, priors: list[PriorModel], composition: Composition):
        patcher = domain_patcher.clone()
        patcher.set_additional_models(PRIORS_KEY, [p.model for p in priors])
        super().__init__(patcher)
        self.priors = priors
        self.composition = composition
        self.cfg = composition.cfg
        self.prior_evaluations = 0  # counted per run, for tests and reports
        self._mcmc_calls = 0

    # --- setup around one sampling run -----------------------------------------------------------
    def outer_sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                     disable_pbar=False, seed=None):
        self.prior_evaluations = 0
        self._mcmc_calls = 0
        for p in self.priors:
            conds = {"positive": comfy.sampler_helpers.convert_cond(p.positive)}
            if p.negative is not None:
                conds["negative"] = comfy.sampler_helpers.convert_cond(p.negative)
            p.conds = conds
            p.options = comfy.model_patcher.create_model_options_clone(p.model.model_options)
            p.options.setdefault("transformer_options", {})
            comfy.sampler_helpers.prepare_model_patcher(p.model, p.conds, p.options)
        started = []
        try:
            for p in self.priors:
                p.model.pre_run()
                started.append(p)
            return super().outer_sample(noise, latent_image, sampler, sigmas, denoise_mask, callback,
                                        disable_pbar, seed)
        finally:
            for p in started:
                p.model.cleanup()
            for p in self.priors:
                p.conds, p.options = {}, {}

    def inner_sample(self, noise, latent_image, device, sampler, sigmas, denoise_mask, callback,
                     disable_pbar, seed):
        latent = latent_image
        if latent is not None and torch.count_nonzero(latent) > 0:
            latent = self.inner_model.process_latent_in(latent)
        for p in self.priors:
            p.conds = comfy.samplers.process_conds(p.model.model, noise, p.conds, device, latent,
                                                   denoise_mask, seed)
            p.options["transformer_options"]["sample_sigmas"] = sigmas
            comfy.samplers.cast_to_load_options(p.options, device=device, dtype=p.model.model_dtype())
        return super().inner_sample(noise, latent_image, device, sampler, sigmas, denoise_mask, callback,
                                    disable_pbar, seed)

    # --- one evaluation ---------------------------------------------------------------------------
    def predict_noise(self, x, timestep, model_options={}, seed=None):
        comfy.model_management.throw_exception_if_processing_interrupted()
        comp = self.composition

        def guided_fn(xx, sigma):
            return comfy.samplers.sampling_function(self.inner_model, xx, sigma, self.conds.get("negative"),
                                                    self.conds.get("positive"), comp.cfg,
                                                    model_options=model_options, seed=seed)

        def prior_fn(i, xx, sigma):
            p = self.priors[i]
            self.prior_evaluations += 1
            if comp.rule == "cfg_mix":
                return comfy.samplers.sampling_function(p.model.model, xx, sigma, p.conds.get("negative"),
                                                        p.conds["positive"], p.cfg, model_options=p.options,
                                                        seed=seed)
            return comfy.samplers.calc_cond_batch(p.model.model, [p.conds["positive"]], xx, sigma, p.options)[0]

        sigma_next, noise_fn = None, None
        if comp.mcmc_steps > 0:
            sched = model_options.get("transformer_options", {}).get("sample_sigmas")
            sigma_next = next_sigma(sched, float(timestep.max()))
            gen = torch.Generator(device="cpu").manual_seed(int(seed or 0) * 1000003 + self._mcmc_calls)
            self._mcmc_calls += 1

            def draw(xx):
                return torch.randn(xx.shape, generator=gen, dtype=torch.float32).to(xx.device, xx.dtype)

            noise_fn = draw

        return comp.evaluate(x, timestep, guided_fn, prior_fn, sigma_next=sigma_next, noise_fn=noise_fn)
