"""What an adapter kind is: one class that declares its whole protocol.

A kind (SimDA, AID, FCA, ...) subclasses :class:`AdapterKind` in its own module, sets the class attributes and
overrides the hooks it needs, and registers itself with ``@registry.register``; ``adapters/registry.py`` lists the
kind modules. The trainer, the loader, the attach layer and the help pages read everything about a kind from
here, never from the kind's name:

=====================  ==============================================================================
``name``               stored in adapter files (``kind``); never change it
``description``        one sentence the UI shows (Train Adapters' ``kind`` tooltip, the help page)
``architectures``      the attach tables it supports (``unet``: SD 1.5 / SDXL / SVD; ``wan``: Wan DiT)
``families``           the model families it supports within those (None: every one)
``block_kinds``        which of the host's blocks get adapters (``spatial``, ``temporal``, ``dit``)
``adapter_set``        its :class:`~.adapter_set.BlockAdapterSet` subclass (modules, file format,
                       ``attachments``); its ``config_class`` is the settings dataclass with defaults
``example``            a valid ``settings`` example, shown in messages
``recipe``             TrainConfig fields of its training recipe (``warmup_fraction`` caps the warm-up)
``text_conds``         adapter conditions that count as text (dropped with the text in training; absent
                       in a guider's text-free branches)
``trainer_options``    options of the generic trainer the kind reads (SimDA: ``latent_shift``)
``check_host``         refuses a host model it cannot serve, naming what would fit
``configure``          what it reads off the host model and the training conditions
``training_conds``     adapter conditions it needs per training batch (FCA: the clips' initial frames)
=====================  ==============================================================================

Everything here is host-free: ``host`` is the binding's description of the model (``architecture``,
``family``, ``model_config``, ``takes_image``, ``blocks_of(...)``), read by attribute.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

import torch.nn as nn

# TrainConfig fields a recipe may set (checked by a test against TrainConfig)
RECIPE_FIELDS = ("lr_schedule", "warmup_steps", "warmup_fraction", "betas", "grad_clip", "weight_decay")


def _type_name(default) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, (list, tuple)):
        return "a list"
    return type(default).__name__


def _fits(value, default) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return True


class AdapterKind:
    """The protocol of one adapter kind (see the module docstring). Instances are stateless; the registry holds one
    per kind."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    architectures: ClassVar[tuple[str, ...]] = ()
    families: ClassVar[tuple[str, ...] | None] = None
    block_kinds: ClassVar[tuple[str, ...]] = ()
    adapter_set: ClassVar[type] = None
    example: ClassVar[dict[str, Any]] = {}
    recipe: ClassVar[dict[str, Any]] = {}
    text_conds: ClassVar[tuple[str, ...]] = ()
    trainer_options: ClassVar[tuple[str, ...]] = ()

    # -- settings ---------------------------------------------------------------------------------------
    @property
    def config_class(self):
        return self.adapter_set.config_class

    def settings(self) -> dict[str, Any]:
        """Every setting of the kind with its default."""
        return {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(self.config_class)}

    def example_text(self) -> str:
        return json.dumps(self.example)

    def check_settings(self, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` merged over the defaults, checked by name, type and the config's own rules without building
        any module; a ``ValueError`` names the setting, what it takes and a valid example for this kind."""
        defaults = self.settings()
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(f"{self.name} adapters have no setting {', '.join(repr(u) for u in unknown)}; known "
                             f"settings: {', '.join(sorted(defaults))} (for example {self.example_text()})")
        for key, value in given.items():
            if not _fits(value, defaults[key]):
                raise ValueError(f"setting '{key}' of {self.name} adapters takes {_type_name(defaults[key])} (default "
                                 f"{json.dumps(defaults[key])}), got {json.dumps(value)}; for example "
                                 f"{{\"{key}\": {json.dumps(defaults[key])}}}")
        merged = dict(defaults)
        merged.update(given)
        self.config_class.from_dict(merged)  # the config's own rules (ranges, choices) raise ValueError
        return merged

    # -- the host ---------------------------------------------------------------------------------------
    def check_host(self, host) -> None:
        """Refuse a model this kind cannot serve (architecture, family), naming what would fit."""
        if host.architecture not in self.architectures or (self.families is not None
                                                          and host.family not in self.families):
            fit = ", ".join(self.families) if self.families is not None else " or ".join(
                {"unet": "SD 1.5 / SDXL / SVD", "wan": "Wan 2.1"}.get(a, a) for a in self.architectures)
            raise ValueError(f"{self.name} adapters do not fit {host.model_config} ('{host.family}'); they attach to "
                             f"{fit} models")

    def configure(self, config: dict, host, conditions: list, frames: int, given: set) -> dict:
        """Settings read off the host model and the training conditions (``[(context, extras)]`` per clip) and the
        clip length, leaving those the user gave (``given``) alone."""
        return config

    def apply_trainer_options(self, config: dict, options: dict[str, Any], defaults: dict[str, Any], host) -> dict:
        """The generic trainer's kind-specific options (``options``: name -> value, ``defaults``: the widgets'
        defaults) into the config. A kind that does not read an option accepts it at its default or "none"."""
        for key, value in options.items():
            if key not in self.trainer_options and value not in ("none", defaults.get(key)):
                raise ValueError(f"{key}={value} is an option of other adapter kinds; {self.name} adapters do not "
                                 f"use it: set {key} to none")
        return config

    # -- training ---------------------------------------------------------------------------------------
    def training_recipe(self, steps: int) -> dict[str, Any]:
        """The TrainConfig fields of the recipe for a run of ``steps`` total steps (``{}`` without a recipe). The
        warm-up may depend on the total steps, so a resumed run must be given the same total."""
        recipe = dict(self.recipe)
        fraction = recipe.pop("warmup_fraction", None)
        if fraction is not None:
            cap = int(recipe.get("warmup_steps", steps))
            recipe["warmup_steps"] = min(cap, int(float(fraction) * int(steps)))
        if "betas" in recipe:
            recipe["betas"] = tuple(float(b) for b in recipe["betas"])
        return recipe

    def training_conds(self, adapters: nn.Module, x0, clip_index) -> dict | None:
        """Adapter conditions for a training batch of clean clips ``x0`` (None: the kind needs none)."""
        return None

    # -- modules ----------------------------------------------------------------------------------------
    def build(self, blocks: dict[str, int], config: dict[str, Any], family: str) -> nn.Module:
        """Fresh (identity at init, or the paper's init) adapters for ``blocks`` ``{name: width}``."""
        return self.adapter_set.build(blocks, config, family)

    def load(self, path: str, device="cpu") -> nn.Module:
        return self.adapter_set.load(path, device=device)

    def attachments(self, adapters: nn.Module, architecture: str, options: dict | None = None) -> list[tuple]:
        """``(block name or None, hook point, callable)`` of ``adapters`` on ``architecture``."""
        return adapters.attachments(architecture, options or {})
