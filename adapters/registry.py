"""Adapter kinds: one entry per kind of trainable adapter the pack can inject into a frozen model.

The trainer node, the loader node and the command-line trainer look kinds up here instead of knowing
them, so a new kind (AID temporal adapters, FCA parallel attention, ...) plugs in by registering

* ``build(blocks, config, family) -> nn.Module``: a fresh (zero-initialised) adapter module for the
  host model's blocks ``{block name: width}``, from a JSON ``config`` dict;
* ``load(path, device) -> nn.Module``: the module stored in a pack file of this kind;
* ``inject``: how the module is attached to a host model. It depends on the host (ComfyUI), so the core
  leaves it empty and the host binding sets it with :func:`set_injector`.

The module returned by ``build``/``load`` must provide ``save(path, extra=None)``, ``metadata()`` (with
``kind``, ``family`` and ``blocks``) and ``num_trainable_parameters()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch.nn as nn


@dataclass
class AdapterKind:
    kind: str
    description: str
    build: Callable[[dict[str, int], dict[str, Any], str], nn.Module]
    load: Callable[..., nn.Module]
    default_config: dict[str, Any] = field(default_factory=dict)
    inject: Optional[Callable[..., Any]] = None


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


def set_injector(kind: str, inject: Callable[..., Any]) -> None:
    """Attach the host-specific injection function of ``kind``."""
    get(kind).inject = inject


# ----------------------------------------------------------------------------------------------------
# built-in kinds


def _build_simda(blocks: dict[str, int], config: dict[str, Any], family: str) -> nn.Module:
    from .simda import SimDAAdapterSet, SimDAConfig

    adapters = SimDAAdapterSet(SimDAConfig.from_dict(config), family=family)
    for name, dim in blocks.items():
        adapters.add_block(name, int(dim))
    return adapters


def _load_simda(path: str, device="cpu") -> nn.Module:
    from .simda import SimDAAdapterSet

    return SimDAAdapterSet.load(path, device=device)


register(AdapterKind(
    kind="simda",
    description="SimDA: attention/FFN spatial adapters and a temporal adapter per transformer block, "
                "trained with latent-shift self-attention",
    build=_build_simda,
    load=_load_simda,
    default_config={},
))
