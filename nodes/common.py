"""Shared pieces of the node layer: category names, custom socket types, model inspection and the
compatibility checks every multi-model node runs before it builds anything."""

from __future__ import annotations

import re

import folder_paths
from comfy_api.latest import io

CATEGORY = "video_adapters"
# LATENT dict entry set by Load Training Clips for frames-in-batch (image VAE) clips: frames per clip, so the
# trainers can split the batch into clips.
FRAMES_PER_CLIP_KEY = "va_frames_per_clip"
CAT_COMPOSE = f"{CATEGORY}/composition"
CAT_LOADERS = f"{CATEGORY}/loaders"
# the trainers' file_name input (Train Adapters, Train Domain Model): one rule, one wording
TRAINED_FILE_NAME_TOOLTIP = (
    "Output name inside models/video_adapters (no extension). Nothing trained is replaced: if <name> or its "
    "checkpoint exists, the next free <name>_00001, _00002 ... is used (the file_name output says which). Resuming "
    "an interrupted run from <name>_checkpoint finishes it under <name>.")

# Custom socket types. Their names are stored in workflow files: never rename them.
Priors = io.Custom("VA_PRIORS")
PriorSchedule = io.Custom("VA_PRIOR_SCHEDULE")
MLLM = io.Custom("VA_MLLM")  # a multimodal LLM for MLLM State Prompt


# the error every node raises for an input the user can fix (host-free, so the core can raise it too)
from ..adapters.protocol import VideoAdapterError  # noqa: E402,F401


def training_memory_inputs(what: str) -> list:
    """The trainers' memory settings, appended after every earlier input of a training node so saved workflows
    keep their widget values and links. ``what``: the blocks checkpointed ("the base model's" or "the model's")."""
    return [
        io.Boolean.Input("gradient_checkpointing", default=True, optional=True,
                         tooltip=f"Keep only the input of each of {what} blocks for backward and run the block again "
                                 "there: activation memory of one block instead of all, for about a third more time "
                                 "per step (on by default, as ComfyUI's own trainer). The result is the same."),
        io.Combo.Input("training_dtype", options=["auto", "fp32", "bf16", "fp16"], default="auto", optional=True,
                       tooltip="Precision of the forward pass (autocast); the trained weights, their gradients and "
                               "the optimizer stay fp32. auto: bf16 on a GPU that has it, fp32 on the CPU, and a "
                               "resumed run's own precision. fp16 (GPU only) scales the loss against underflow."),
        io.Int.Input("grad_accumulation", default=1, min=1, max=256, optional=True,
                     tooltip="Split each step's batch_size clips into this many micro-batches run one after the "
                             "other: the memory of a smaller batch, the gradient of the whole one. Must divide "
                             "batch_size."),
    ]


def check_compatible(domain, prior, domain_label: str = "domain_model", prior_label: str = "prior_model"):
    """Refuse model pairs whose scores cannot be added: the error names both models and what differs."""
    from .binding.host import describe

    a, b = describe(domain, domain_label), describe(prior, prior_label)
    a.require_space(), b.require_space()
    problems = []
    if (a.latent_format, a.latent_channels, a.latent_dimensions) != (b.latent_format, b.latent_channels,
                                                                      b.latent_dimensions):
        problems.append(
            f"latent spaces differ: {a.label} uses {a.latent_format} ({a.latent_channels} ch, {a.latent_dimensions}D), "
            f"{b.label} uses {b.latent_format} ({b.latent_channels} ch, {b.latent_dimensions}D)")
    if a.sampler_space != b.sampler_space:
        problems.append(
            f"sampling families differ: {a.label} is a {a.sampler_space} model ({a.model_type}), "
            f"{b.label} is a {b.sampler_space} model ({b.model_type})")
    if problems:
        raise VideoAdapterError(
            f"{a.label} ({a.model_config}) and {b.label} ({b.model_config}) cannot be composed: " + "; ".join(problems)
            + ". Both models must share the VAE latent space and the noise parameterisation "
              "(for example Wan 2.1 14B with Wan 2.1 1.3B or a domain model trained on that prior).")
    return a, b


# CONDITIONING entries of the start image that the native image-to-video nodes (and Domain Model Conditioning)
# put on a conditioning; with the CLIP-vision features they are "the image condition".
IMAGE_LATENT_KEYS = ("concat_latent_image", "concat_mask", "concat_image", "va_first_frame")
CLIP_VISION_CHOICES = ("keep", "zero", "drop")


def has_image(extras: dict) -> bool:
    return any(k in extras for k in IMAGE_LATENT_KEYS + ("clip_vision_output",))


def without_image(extras: dict, clip_vision: str = "keep") -> dict:
    """A conditioning entry's extras without the image condition: the start-image latent and mask always; the
    CLIP-vision features kept, zeroed or dropped. The one definition of "no image" for the Dual CFG Guider's
    no-image branch and for image dropout in training, so both mean the same."""
    import copy

    import torch

    out = {k: v for k, v in extras.items() if k not in IMAGE_LATENT_KEYS}
    if "clip_vision_output" in out:
        if clip_vision == "drop":
            out.pop("clip_vision_output")
        elif clip_vision == "zero":
            cv = copy.copy(out["clip_vision_output"])
            for name, value in list(vars(cv).items()):
                if torch.is_tensor(value):
                    setattr(cv, name, torch.zeros_like(value))
            out["clip_vision_output"] = cv
    return out


def check_conditioning(model, conditioning, input_name: str, model_label: str) -> None:
    """Refuse a CONDITIONING whose text features the model cannot take (another text encoder's width), naming
    the input and the model, before any sampling starts."""
    from .binding.host import describe

    if conditioning is None:
        return
    if not isinstance(conditioning, list) or not conditioning:
        raise VideoAdapterError(f"{input_name}: expected a CONDITIONING (from a text encode node), got "
                                f"{type(conditioning).__name__}")
    host = describe(model, model_label)
    for tensor, extras in conditioning:
        if "concat_latent_image" in extras and not host.takes_image and host.architecture in ("unet", "wan"):
            raise VideoAdapterError(
                f"{input_name}: it carries a start image (from an image-to-video node), but {model_label} "
                f"({host.model_config}) takes no image condition; use an image-to-video model, or a plain text "
                "conditioning")
        if not hasattr(tensor, "shape") or tensor.ndim != 3:
            raise VideoAdapterError(f"{input_name}: conditioning tensors are [batch, tokens, width], got "
                                    f"{list(getattr(tensor, 'shape', []))}")
        if host.text_width and tensor.shape[-1] != host.text_width:
            raise VideoAdapterError(
                f"{input_name}: its features are {tensor.shape[-1]} wide, but {model_label} ({host.model_config}) takes "
                f"{host.text_width}: encode the prompt with {model_label}'s own text encoder")


# ----------------------------------------------------------------------------------------------------
# the pack's model folder (models/video_adapters): listings, output names, training checkpoints


def model_files() -> list[str]:
    """Files in models/video_adapters, for the loaders' and trainers' file widgets."""
    from . import MODEL_FOLDER

    return sorted(folder_paths.get_filename_list(MODEL_FOLDER))


MAX_NAME_PART = 120  # characters per folder or file name (file systems allow 255 bytes; leave room for suffixes)
MAX_NAME = 200


def safe_name(prefix: str) -> str:
    """A user-typed output name as a relative path without extension, inside the pack's folder. Names that would
    leave the folder, absolute paths, home paths, drive letters, hidden names and names too long for a file
    system are refused (never silently rewritten), with what to type instead."""
    name = prefix.strip()
    if name.endswith(".safetensors"):
        name = name[: -len(".safetensors")]
    hint = "use letters, digits, '_', '-', '.' and '/' for subfolders, for example 'my_style/v1'"
    if not name:
        raise VideoAdapterError(f"file name is empty; {hint}")
    if name.startswith(("/", "~")) or "\\" in name or re.match(r"^[A-Za-z]:", name):
        raise VideoAdapterError(f"file name '{prefix}' is an absolute or home path; files are written inside "
                                f"models/video_adapters, so give a name relative to it: {hint}")
    bad = sorted(set(re.sub(r"[A-Za-z0-9_.\-/ ]", "", name)))
    if bad:
        raise VideoAdapterError(f"file name '{prefix}' contains {''.join(bad)!r}; {hint}")
    parts = name.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") or p != p.strip() for p in parts):
        raise VideoAdapterError(f"file name '{prefix}' has an empty, hidden ('.name') or '..' part, or spaces around "
                                f"a '/'; {hint}")
    if len(name) > MAX_NAME or any(len(p) > MAX_NAME_PART for p in parts):
        raise VideoAdapterError(f"file name '{prefix[:40]}...' is too long ({len(name)} characters); use at most "
                                f"{MAX_NAME} in all and {MAX_NAME_PART} per folder or file name")
    return name
