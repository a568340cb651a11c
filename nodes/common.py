"""Shared pieces of the node layer: category names, custom socket types, model inspection and the
compatibility checks every multi-model node runs before it builds anything."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import comfy.model_base
import comfy.model_sampling
import folder_paths
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


_PREDICTIONS = {comfy.model_base.ModelType.FLOW: "flow", comfy.model_base.ModelType.EPS: "eps",
                comfy.model_base.ModelType.V_PREDICTION: "v"}


def prediction_type(model, supported_by: str, v_edm: bool = False) -> str:
    """The model's prediction as a trainer parameterisation: "flow", "eps" or "v" (``v_edm``: EDM-scaled v
    models count as "v"). ``supported_by`` names what refuses the others, for the error message."""
    mapping = dict(_PREDICTIONS)
    if v_edm:
        mapping[comfy.model_base.ModelType.V_PREDICTION_EDM] = "v"
    mt = model.model.model_type
    if mt not in mapping:
        raise VideoAdapterError(f"the model predicts {getattr(mt, 'name', mt)}; {supported_by} supports rectified "
                                "flow, eps and v prediction")
    return mapping[mt]


def flow_shift(model) -> float:
    """The shift of the model's sampling schedule as it is now (1.0 for unshifted and noise models)."""
    return float(getattr(model.get_model_object("model_sampling"), "shift", 1.0))


# ----------------------------------------------------------------------------------------------------
# the pack's model folder (models/video_adapters): listings, output names, training checkpoints


def model_files() -> list[str]:
    """Files in models/video_adapters, for the loaders' and trainers' file widgets."""
    from . import MODEL_FOLDER

    return sorted(folder_paths.get_filename_list(MODEL_FOLDER))


def safe_name(prefix: str) -> str:
    """A user-typed output name as a relative path without extension; refuses empty names and '..'."""
    name = re.sub(r"[^A-Za-z0-9_.\-/]", "_", prefix.strip()).strip("/")
    if not name or ".." in name.split("/"):
        raise VideoAdapterError(f"file name '{prefix}' is not usable; use letters, digits, '_', '-' and '/'")
    return name[: -len(".safetensors")] if name.endswith(".safetensors") else name


def training_outputs(file_name: str) -> tuple[str, str, str]:
    """``(folder, model file, checkpoint file)`` of a training run named ``file_name`` in models/video_adapters."""
    from . import MODEL_FOLDER

    name = safe_name(file_name)
    folder = folder_paths.get_folder_paths(MODEL_FOLDER)[0]
    return folder, os.path.join(folder, name + ".safetensors"), os.path.join(folder, name + "_checkpoint.safetensors")


def resume_checkpoint(resume_from: str, what: str, family: str, **expect) -> tuple[str | None, dict]:
    """``(path, metadata)`` of the training checkpoint picked in a ``resume_from`` widget (``(None, {})`` for
    "none"). Refuses files that are not ``what`` checkpoints (every ``expect`` key must be present and, unless
    its value is None, equal) or that were trained for another ``family``."""
    from ..adapters.files import read_metadata
    from . import MODEL_FOLDER

    if not resume_from or resume_from == "none":
        return None, {}
    path = folder_paths.get_full_path_or_raise(MODEL_FOLDER, resume_from)
    meta = read_metadata(path)
    if meta.get("kind") != "checkpoint" or any(k not in meta or (v is not None and meta[k] != v)
                                               for k, v in expect.items()):
        raise VideoAdapterError(f"resume_from: {resume_from} is not a {what} training checkpoint (pick a "
                                "*_checkpoint.safetensors file)")
    if meta.get("family") != family:
        raise VideoAdapterError(f"resume_from: {resume_from} was trained for '{meta.get('family')}', but the "
                                f"connected model is '{family}'")
    return path, meta


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
