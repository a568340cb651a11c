"""Adapter kinds: one entry per kind of trainable adapter the pack can inject into a frozen model.

The trainer node, the loader node and the command-line trainer look kinds up here instead of knowing
them, so a new kind (AID temporal adapters, FCA parallel attention, ...) plugs in by registering

* ``build(blocks, config, family) -> nn.Module``: a fresh (zero-initialised) adapter module for the
  host model's blocks ``{block name: width}``, from a JSON ``config`` dict;
* ``load(path, device) -> nn.Module``: the module stored in a pack file of this kind;
* ``block_kinds``: which of the host's transformer blocks get adapters (``spatial``: UNet spatial blocks,
  ``temporal``: SVD's temporal blocks, ``dit``: Wan blocks).

The module returned by ``build``/``load`` must provide ``attachments(architecture, options)`` (where its
parts attach: ``(block name or None, hook point, callable)``, see ``nodes/attach.py``), ``save(path,
extra=None)``, ``metadata()`` (with ``kind``, ``family`` and ``blocks``), ``num_trainable_parameters()`` and a
``config`` with ``to_dict()``. Attaching, training and loading are the same for every kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn


@dataclass
class AdapterKind:
    kind: str
    description: str
    build: Callable[[dict[str, int], dict[str, Any], str], nn.Module]
    load: Callable[..., nn.Module]
    default_config: dict[str, Any] = field(default_factory=dict)
    block_kinds: tuple[str, ...] = ("spatial", "dit")
    # ``configure(config, host, conditions, frames, given) -> config``: fill in what the kind reads off the host
    # model (``nodes.host.HostModel``), the training conditions (``[(context, extras)]`` per clip) and the clip
    # length, leaving the keys the user gave (``given``) alone
    configure: Callable[..., dict[str, Any]] | None = None
    # the kind's training recipe (see :func:`training_recipe`): TrainConfig fields the trainer node sets for this
    # kind, e.g. ``{"lr_schedule": "cosine", "betas": (0.9, 0.95)}``; ``warmup_steps`` with ``warmup_fraction``
    # means ``min(warmup_steps, int(warmup_fraction * steps))``. None: the trainer's defaults (constant rate)
    train_recipe: dict[str, Any] | None = None


def training_recipe(kind: str, steps: int) -> dict[str, Any]:
    """The TrainConfig fields of ``kind``'s recipe for a run of ``steps`` total steps (``{}`` without a recipe).
    The warm-up may depend on the total steps, so a resumed run must be given the same total to follow the same
    schedule (Train Adapters' ``steps`` counts the resumed steps, so it is)."""
    recipe = dict(get(kind).train_recipe or {})
    fraction = recipe.pop("warmup_fraction", None)
    if fraction is not None:
        cap = int(recipe.get("warmup_steps", steps))
        recipe["warmup_steps"] = min(cap, int(float(fraction) * int(steps)))
    if "betas" in recipe:
        recipe["betas"] = tuple(float(b) for b in recipe["betas"])
    return recipe


_KINDS: dict[str, AdapterKind] = {}


def register(entry: AdapterKind) -> AdapterKind:
    """Add a kind; registering the same name twice is an error (kinds are stored in files)."""
    if entry.kind in _KINDS:
        raise ValueError(f"adapter kind '{entry.kind}' is already registered")
    _KINDS[entry.kind] = entry
    return entry


def get(kind: str) -> AdapterKind:
    if kind not in _KINDS:
        raise KeyError(f"unknown adapter kind '{kind}'; known kinds: {', '.join(kinds()) or 'none'}")
    return _KINDS[kind]


def kinds() -> list[str]:
    return sorted(_KINDS)


# ----------------------------------------------------------------------------------------------------
# built-in kinds


class _Lazy:
    """``build``, ``load`` and ``configure`` of a kind whose module is imported on first use (the registry is
    imported by every node; the kinds' torch modules only when a kind is used)."""

    def __init__(self, module: str, set_class: str):
        self.module, self.set_class = module, set_class

    def _get(self, name: str):
        import importlib

        return getattr(importlib.import_module(f".{self.module}", __package__), name)

    def build(self, blocks: dict[str, int], config: dict[str, Any], family: str) -> nn.Module:
        return self._get(self.set_class).build(blocks, config, family)

    def load(self, path: str, device="cpu") -> nn.Module:
        return self._get(self.set_class).load(path, device=device)

    def configure(self, config, host, conditions, frames, given):
        return self._get("configure")(config, host, conditions, frames, given)


_SIMDA, _AID, _FCA = _Lazy("simda", "SimDAAdapterSet"), _Lazy("aid", "AIDAdapterSet"), _Lazy("fca", "FCAAdapterSet")


register(AdapterKind(
    kind="simda",
    description="SimDA: attention/FFN spatial adapters and a temporal adapter per transformer block, "
                "trained with latent-shift self-attention",
    build=_SIMDA.build,
    load=_SIMDA.load,
    default_config={},
))


register(AdapterKind(
    kind="aid",
    description="AID: a Dual-Query Transformer whose instruction / state-prompt tokens join the cross-attention, "
                "cross-attention weight deltas, and spatial, short-term and long-term temporal adapters in every "
                "spatial block of a frozen SVD",
    build=_AID.build,
    load=_AID.load,
    default_config={},
    block_kinds=("spatial",),
    configure=_AID.configure,
))


register(AdapterKind(
    kind="fca",
    description="FCA: a parallel cross-attention branch beside every DiT block (scale 0.1 at init) over the text, "
                "the initial frames' hidden states from the frozen model and per-layer frame-wise text, for "
                "text-video prediction on a frozen text-to-video Wan",
    build=_FCA.build,
    load=_FCA.load,
    default_config={},
    block_kinds=("dit",),
    configure=_FCA.configure,
    # the FCA paper's fine-tuning table: cosine schedule after a 200-step warm-up, AdamW betas (0.9, 0.95),
    # gradient clipping at 1.0 (warm-up capped at a tenth of the run for short runs)
    train_recipe={"lr_schedule": "cosine", "warmup_steps": 200, "warmup_fraction": 0.1, "betas": (0.9, 0.95),
                  "grad_clip": 1.0},
))
