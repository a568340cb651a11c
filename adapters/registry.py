"""The adapter kinds the pack knows: a list of kind modules, each of which registers its own
:class:`~.kind.AdapterKind` subclass with :func:`register`.

Adding a kind is one new module under ``adapters/`` (its modules, its ``BlockAdapterSet`` and its ``AdapterKind``
subclass decorated with ``@registry.register``) plus its name in :data:`KIND_MODULES`. The trainer node, the
loader node, the command-line tools and the help-page test look kinds up here.
"""

from __future__ import annotations

import importlib
from typing import Any

from .kind import AdapterKind

# the modules that define the built-in kinds (imported on first look-up: the registry is imported by every node,
# the kinds' torch modules only when a kind is asked for)
KIND_MODULES = ("simda", "aid", "fca")

_KINDS: dict[str, AdapterKind] = {}
_loaded = False


def register(cls: type[AdapterKind] | AdapterKind):
    """Register a kind (a class decorator, or an instance); the same name twice is an error (kinds are stored in
    files)."""
    entry = cls() if isinstance(cls, type) else cls
    if not entry.name:
        raise ValueError(f"{type(entry).__name__} has no name")
    if entry.name in _KINDS:
        raise ValueError(f"adapter kind '{entry.name}' is already registered")
    _KINDS[entry.name] = entry
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in KIND_MODULES:
            importlib.import_module(f".{module}", __package__)


def get(kind: str) -> AdapterKind:
    _load()
    if kind not in _KINDS:
        raise KeyError(f"unknown adapter kind '{kind}'; known kinds: {', '.join(kinds()) or 'none'}")
    return _KINDS[kind]


def kinds() -> list[str]:
    """Registered kind names, in the order of :data:`KIND_MODULES`."""
    _load()
    return list(_KINDS)


def all_kinds() -> list[AdapterKind]:
    _load()
    return list(_KINDS.values())


def training_recipe(kind: str, steps: int) -> dict[str, Any]:
    """The TrainConfig fields of ``kind``'s recipe for a run of ``steps`` total steps (``{}`` without a recipe)."""
    return get(kind).training_recipe(steps)
