"""Train Adapters' data on disk: the clips (a LATENT, as the node takes it) and the conditioning (CONDITIONING
lists) in one safetensors file, for the command-line adapter trainer (``devtools/train_adapter.py``).

What a CONDITIONING entry holds is stored as it is: the text context, every tensor of its extras (SVD's and Wan
I2V's start-image latent and mask, SD's pooled output ...), their JSON values (fps, motion bucket ...), the CLIP
vision output's tensors, and the adapter conditions the kinds read (AID's instruction and states). Tensors go to
safetensors, everything else to the file's JSON metadata; an extra of any other type (a ControlNet, hooks) is
refused, naming it, rather than silently left out.
"""

from __future__ import annotations

import json

import torch

import comfy.clip_vision
import comfy.conds

from ...adapters.files import AdapterFileError, load_tensors, save_tensors
from ...adapters.protocol import VideoAdapterError
from ..common import FRAMES_PER_CLIP_KEY
from .attach import adapter_conds

DATA_KIND = "adapter_training_data"
SIDES = ("positive", "negative")


def _entry(prefix: str, context: torch.Tensor, extras: dict, tensors: dict) -> dict:
    """One CONDITIONING entry into ``tensors`` (under ``prefix``); returns its JSON description."""
    tensors[f"{prefix}/context"] = context.clone()  # clones: entries may share one tensor (one caption, twice)
    own = adapter_conds(extras)
    desc = {"values": {}, "tensors": [], "model_conds": sorted(own), "clip_vision_output": None}
    for key, value in extras.items():
        if key == "model_conds":
            continue  # only the adapter conditions are read by training (clip_conditions)
        if torch.is_tensor(value):
            tensors[f"{prefix}/extra/{key}"] = value.clone()
            desc["tensors"].append(key)
        elif key == "clip_vision_output" and isinstance(value, comfy.clip_vision.Output):
            desc["clip_vision_output"] = sorted(n for n, t in vars(value).items() if torch.is_tensor(t))
            for name in desc["clip_vision_output"]:
                tensors[f"{prefix}/clip_vision_output/{name}"] = value[name].clone()
        else:
            try:
                desc["values"][key] = json.loads(json.dumps(value))
            except (TypeError, ValueError):
                raise VideoAdapterError(f"the conditioning holds '{key}' ({type(value).__name__}), which training "
                                        "data cannot store; remove the node that adds it") from None
    for key in desc["model_conds"]:
        tensors[f"{prefix}/model_conds/{key}"] = own[key].cond.clone()
    return desc


def save_training_data(path: str, clips: dict, positive, negative=None, meta: dict | None = None) -> None:
    """Write ``clips`` (LATENT), ``positive`` and optional ``negative`` (CONDITIONING) to ``path``."""
    tensors = {"clips": clips["samples"].float()}
    entries = {}
    for side, cond in zip(SIDES, (positive, negative)):
        if cond is not None:
            entries[side] = [_entry(f"{side}/{i}", c, e, tensors) for i, (c, e) in enumerate(cond)]
    save_tensors(path, tensors, {**(meta or {}), "kind": DATA_KIND, "conditioning": entries,
                                 "frames_per_clip": int(clips.get(FRAMES_PER_CLIP_KEY, 0))})


def _restore(prefix: str, desc: dict, tensors: dict) -> list:
    extras = dict(desc["values"])
    for key in desc["tensors"]:
        extras[key] = tensors[f"{prefix}/extra/{key}"]
    if desc["clip_vision_output"] is not None:
        out = comfy.clip_vision.Output()
        for name in desc["clip_vision_output"]:
            out[name] = tensors[f"{prefix}/clip_vision_output/{name}"]
        extras["clip_vision_output"] = out
    if desc["model_conds"]:
        extras["model_conds"] = {k: comfy.conds.CONDRegular(tensors[f"{prefix}/model_conds/{k}"])
                                 for k in desc["model_conds"]}
    return [tensors[f"{prefix}/context"], extras]


def load_training_data(path: str) -> tuple[dict, list, list | None, dict]:
    """``(clips LATENT, positive, negative or None, metadata)`` of a file written by :func:`save_training_data`."""
    try:
        tensors, meta = load_tensors(path, expect_kind=DATA_KIND)
    except AdapterFileError as e:
        raise VideoAdapterError(f"data: {e}") from None
    clips = {"samples": tensors["clips"]}
    if meta.get("frames_per_clip"):
        clips[FRAMES_PER_CLIP_KEY] = int(meta["frames_per_clip"])
    conds = {side: [_restore(f"{side}/{i}", d, tensors) for i, d in enumerate(entries)]
             for side, entries in meta["conditioning"].items()}
    return clips, conds["positive"], conds.get("negative"), meta
