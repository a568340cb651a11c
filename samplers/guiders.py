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

import math
from dataclasses import dataclass, field

import torch

import comfy.hooks
import comfy.model_management
import comfy.model_patcher
import comfy.sampler_helpers
import comfy.samplers

from .composition import Composition, next_sigma
from .dual_cfg import dual_cfg, frame_scales

try:  # inside ComfyUI the pack is one package; host-free tests import the core packages directly
    from ..adapters.protocol import TEXT_CONDS_KEY
except ImportError:
    from adapters.protocol import TEXT_CONDS_KEY

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
    inner: object = None
    loaded: list = field(default_factory=list)
    hook_mode: object = None


# Model-option entries that belong to one model's own multi-GPU set-up; a prior must never run on the domain
# model's clones (and the guider does not prepare clones of the priors), as core's Guider_DualModel does.
_NOT_FOR_PRIORS = ("multigpu_clones", "multigpu_thread_pool")


def _process_conds_keywords() -> set[str]:
    """Keyword arguments this host's ``process_conds`` takes (``latent_shapes`` on newer ComfyUI)."""
    import inspect

    return set(inspect.signature(comfy.samplers.process_conds).parameters)


def _prepare_prior(p: PriorModel, noise_shape) -> None:
    """What ``CFGGuider.sample`` and ``outer_sample`` do for their own conds, done for one prior."""
    conds = {"positive": comfy.sampler_helpers.convert_cond(p.positive)}
    if p.negative is not None:
        conds["negative"] = comfy.sampler_helpers.convert_cond(p.negative)
    comfy.samplers.preprocess_conds_hooks(conds)
    p.options = comfy.model_patcher.create_model_options_clone(p.model.model_options)
    for key in _NOT_FOR_PRIORS:
        p.options.pop(key, None)
    p.options.setdefault("transformer_options", {})
    p.hook_mode = p.model.hook_mode
    if comfy.samplers.get_total_hook_groups_in_conds(conds) <= 1:
        p.model.hook_mode = comfy.hooks.EnumHookMode.MinVram
    comfy.sampler_helpers.prepare_model_patcher(p.model, conds, p.options)
    comfy.samplers.filter_registered_hooks_on_conds(conds, p.options)
    # The prior itself was loaded with the domain model (it is one of its additional models). Only models carried
    # by its conds (ControlNets, hook models) still need loading, as prepare_sampling does for CFGGuider's own.
    carried, _ = comfy.sampler_helpers.get_additional_models(conds, p.model.model_dtype())
    if carried:
        p.inner, p.conds, p.loaded = comfy.sampler_helpers.prepare_sampling(p.model, noise_shape, conds, p.options)
    else:
        p.inner, p.conds, p.loaded = p.model.model, conds, []
    p.model.pre_run()


def _release_prior(p: PriorModel) -> None:
    try:
        p.model.cleanup()
        comfy.sampler_helpers.cleanup_models(p.conds, p.loaded)
    finally:
        if p.hook_mode is not None:
            p.model.hook_mode = p.hook_mode
        p.model.restore_hook_patches()
        p.conds, p.options, p.inner, p.loaded, p.hook_mode = {}, {}, None, [], None


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
    # Both overrides take the arguments every ComfyUI version passes positionally and hand everything else
    # (``latent_shapes`` since 2026, whatever comes next) on unchanged, so a new keyword never breaks them.
    def outer_sample(self, noise, latent_image, sampler, sigmas, *args, **kwargs):
        self.prior_evaluations = 0
        self._mcmc_calls = 0
        return super().outer_sample(noise, latent_image, sampler, sigmas, *args, **kwargs)

    def inner_sample(self, noise, latent_image, device, sampler, sigmas, *args, **kwargs):
        # Runs after ``prepare_sampling`` loaded the domain model and, as its additional models, every prior.
        # Each prior's conditioning then goes through the same steps CFGGuider applies to its own: hooks are
        # registered on the prior, models carried by the conds (ControlNets, hook models) are loaded by
        # ``prepare_sampling`` of the prior, and ``process_conds`` runs with the prior's own ``extra_conds``.
        named = dict(zip(("denoise_mask", "callback", "disable_pbar", "seed"), args))
        denoise_mask, seed = kwargs.get("denoise_mask", named.get("denoise_mask")), kwargs.get("seed", named.get("seed"))
        extra = {k: v for k, v in kwargs.items() if k in _process_conds_keywords()}
        latent = latent_image
        if latent is not None and torch.count_nonzero(latent) > 0:
            latent = self.inner_model.process_latent_in(latent)
        started = []
        try:
            for p in self.priors:
                _prepare_prior(p, noise.shape)
                started.append(p)
                p.conds = comfy.samplers.process_conds(p.inner, noise, p.conds, device, latent, denoise_mask, seed,
                                                       **extra)
                p.options["transformer_options"]["sample_sigmas"] = sigmas
                comfy.samplers.cast_to_load_options(p.options, device=device, dtype=p.model.model_dtype())
            return super().inner_sample(noise, latent_image, device, sampler, sigmas, *args, **kwargs)
        finally:
            for p in started:
                _release_prior(p)

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
                return comfy.samplers.sampling_function(p.inner, xx, sigma, p.conds.get("negative"),
                                                        p.conds["positive"], p.cfg, model_options=p.options,
                                                        seed=seed)
            return comfy.samplers.calc_cond_batch(p.inner, [p.conds["positive"]], xx, sigma, p.options)[0]

        sigma_next, noise_fn = None, None
        if comp.mcmc_steps > 0:
            sched = model_options.get("transformer_options", {}).get("sample_sigmas")
            sigma_next = next_sigma(sched, float(timestep.max()))
            gen = torch.Generator(device="cpu").manual_seed(int(seed or 0) * 1000003 + self._mcmc_calls)
            self._mcmc_calls += 1

            def draw(xx):
                return torch.randn(xx.shape, generator=gen, dtype=torch.float32).to(xx.device, xx.dtype)

            noise_fn = draw

        out = comp.evaluate(x, timestep, guided_fn, prior_fn, sigma_next=sigma_next, noise_fn=noise_fn)
        return comp.check(out, float(timestep.max()))


class DualCFGGuider(comfy.samplers.CFGGuider):
    """GUIDER for dual classifier-free guidance (``dual_cfg.py``) on one model with three conditionings:
    ``positive`` (image and text), ``middle`` (image, no text) and ``negative`` (no image, no text). With
    ``image_only`` (SVD: no text) ``middle`` is unused and the image term alone guides. The three predictions
    come from one batched ``calc_cond_batch``; the image term goes through ComfyUI's ``cfg_function``, so
    custom CFG functions and post-CFG hooks apply as in core's DualCFGGuider, which this equals given the
    same three conditionings."""

    def __init__(self, model_patcher, image_cfg: float, text_cfg: float, image_cfg_first: float | None = None,
                 frame_axis: int = 2, image_only: bool = False):
        super().__init__(model_patcher)
        self.image_cfg, self.text_cfg = float(image_cfg), float(text_cfg)
        self.image_cfg_first, self.frame_axis, self.image_only = image_cfg_first, frame_axis, image_only
        self.cfg = self.image_cfg

    def set_conds(self, positive, middle, negative):
        import node_helpers

        conds = {"positive": positive, "negative": negative}
        if not self.image_only:
            conds["middle"] = node_helpers.conditioning_set_values(middle, {"prompt_type": "negative"})
        self.inner_set_conds(conds)

    def _image_scale(self, x):
        if self.image_cfg_first is None:
            return self.image_cfg
        frames = x.shape[self.frame_axis]
        shape = [1] * x.ndim
        shape[self.frame_axis] = frames
        return frame_scales(self.image_cfg_first, self.image_cfg, frames).reshape(shape).to(x)

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        full, none = self.conds.get("positive"), self.conds.get("negative")
        middle = None if self.image_only else self.conds.get("middle")
        s_v = self._image_scale(x)
        s_t = 0.0 if self.image_only else self.text_cfg
        constant_one = not torch.is_tensor(s_v) and math.isclose(s_v, 1.0)
        if constant_one and not model_options.get("disable_cfg1_optimization", False):
            none = None  # the image term is D_image itself: skip the no-image pass, as core does at cfg 1
        # entries of [none, middle, full]: only the last carries the text prompt (frame-wise text goes there)
        model_options = dict(model_options)
        model_options["transformer_options"] = dict(model_options.get("transformer_options", {}))
        model_options["transformer_options"][TEXT_CONDS_KEY] = (2,) if not self.image_only else ()
        out = comfy.samplers.calc_cond_batch(self.inner_model, [none, middle, full], x, timestep, model_options)
        d_none, d_full = out[0], out[2]
        d_image = d_full if self.image_only else out[1]
        image_cond = full if self.image_only else middle

        def image_guidance(d_img, d_no, scale):
            return comfy.samplers.cfg_function(self.inner_model, d_img, d_no, scale, x, timestep,
                                               model_options=model_options, cond=image_cond, uncond=none)

        return dual_cfg(d_none, d_image, d_full, s_v, s_t, image_guidance)
