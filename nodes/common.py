"""Shared pieces of the node layer: category names, custom socket types, model inspection and the
compatibility checks every multi-model node runs before it builds anything."""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_sampling
from comfy_api.latest import io

CATEGORY = "video_adapters"
# LATENT dict entry set by Load Training Clips for frames-in-batch (image VAE) clips: frames per clip, so the
# trainers can split the batch into clips.
FRAMES_PER_CLIP_KEY = "va_frames_per_clip"
CAT_COMPOSE = f"{CATEGORY}/composition"
CAT_LOADERS = f"{CATEGORY}/loaders"

# Custom socket types. Their names are stored in workflow files: never rename them.
Priors = io.Custom("VA_PRIORS")
PriorSchedule = io.Custom("VA_PRIOR_SCHEDULE")


class VideoAdapterError(ValueError):
    """An input the user can fix; the message says what and how."""


@dataclass(frozen=True)
class ModelInfo:
    """What a MODEL is, in the terms that decide whether two models can be composed."""

    label: str
    family: str
    parameterisation: str  # "flow" or "eps" (sampler space; EPS, V and EDM models are all "eps")
    prediction: str  # the model's own output type (EPS, V_PREDICTION, FLOW, ...)
    latent_format: str
    latent_channels: int
    latent_dimensions: int
    parameters: int
    shift: float | None

    def summary(self) -> str:
        shift = f", shift {self.shift:g}" if self.shift is not None else ""
        return (f"{self.label}: {self.family}, {self.prediction} ({self.parameterisation} sampling{shift}), "
                f"latent {self.latent_format} with {self.latent_channels} channels "
                f"({self.latent_dimensions}D), {self.parameters / 1e6:,.1f}M parameters")


def sampler_space(model) -> str:
    ms = model.get_model_object("model_sampling")
    if isinstance(ms, comfy.model_sampling.CONST):
        return "flow"
    if isinstance(ms, comfy.model_sampling.EPS):
        return "eps"
    raise VideoAdapterError(
        f"the model's sampling ({type(ms).__name__}) is neither a noise (EPS/V/EDM) nor a rectified-flow "
        "parameterisation; score composition is defined for those two only")


def describe(model, label: str = "model") -> ModelInfo:
    base = model.model
    lf = base.latent_format
    ms = model.get_model_object("model_sampling")
    dm = getattr(base, "diffusion_model", None)
    params = sum(p.numel() for p in dm.parameters()) if dm is not None else 0
    return ModelInfo(
        label=label,
        family=type(base.model_config).__name__,
        parameterisation=sampler_space(model),
        prediction=getattr(base.model_type, "name", str(base.model_type)),
        latent_format=type(lf).__name__,
        latent_channels=int(getattr(lf, "latent_channels", 0)),
        latent_dimensions=int(getattr(lf, "latent_dimensions", 2)),
        parameters=int(params),
        shift=float(ms.shift) if hasattr(ms, "shift") else None,
    )


def check_compatible(domain, prior, domain_label: str = "domain_model", prior_label: str = "prior_model"):
    """Refuse model pairs whose scores cannot be added: the error names both models and what differs."""
    a, b = describe(domain, domain_label), describe(prior, prior_label)
    problems = []
    if (a.latent_format, a.latent_channels, a.latent_dimensions) != (b.latent_format, b.latent_channels,
                                                                      b.latent_dimensions):
        problems.append(
            f"latent spaces differ: {a.label} uses {a.latent_format} ({a.latent_channels} ch, {a.latent_dimensions}D), "
            f"{b.label} uses {b.latent_format} ({b.latent_channels} ch, {b.latent_dimensions}D)")
    if a.parameterisation != b.parameterisation:
        problems.append(
            f"sampling families differ: {a.label} is a {a.parameterisation} model ({a.prediction}), "
            f"{b.label} is a {b.parameterisation} model ({b.prediction})")
    if problems:
        raise VideoAdapterError(
            f"{a.label} ({a.family}) and {b.label} ({b.family}) cannot be composed: " + "; ".join(problems)
            + ". Both models must share the VAE latent space and the noise parameterisation "
              "(for example Wan 2.1 14B with Wan 2.1 1.3B or a domain model trained on that prior).")
    return a, b


def check_latent_shape(info: ModelInfo, shape) -> None:
    """Refuse a latent whose rank or channel count the model cannot take, naming both."""
    want_rank = info.latent_dimensions + 2
    if len(shape) != want_rank or (info.latent_channels and shape[1] != info.latent_channels):
        raise VideoAdapterError(
            f"{info.label} ({info.family}) expects latents [batch, {info.latent_channels}, "
            f"{'frames, ' if info.latent_dimensions == 3 else ''}height, width], got {list(shape)}")


def run_training(config, params, model_fn, batch_fn, parameterisation, **kwargs):
    """``adapters.training.Trainer.run`` wired to ComfyUI: the node's progress bar advances every step, and
    Cancel makes the trainer write its checkpoint and stop, after which the run is reported as interrupted
    (so an interrupted training never looks like a finished one)."""
    import comfy.model_management
    import comfy.utils

    from ..adapters.training import Trainer

    pbar = comfy.utils.ProgressBar(int(config.steps))
    cancelled = [False]

    def on_step(step, loss):
        try:
            pbar.update_absolute(step, int(config.steps))
        except comfy.model_management.InterruptProcessingException:
            cancelled[0] = True  # the progress hook raises on Cancel: stop after the checkpoint is written

    def should_stop():
        return cancelled[0] or comfy.model_management.processing_interrupted()

    result = Trainer(config).run(params, model_fn, batch_fn, parameterisation, on_step=on_step,
                                 should_stop=should_stop, **kwargs)
    if result.stopped:
        comfy.model_management.interrupt_current_processing(False)
        raise comfy.model_management.InterruptProcessingException()
    return result
