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


def _build_simda(blocks: dict[str, int], config: dict[str, Any], family: str) -> nn.Module:
    from .simda import SimDAAdapterSet

    return SimDAAdapterSet.build(blocks, config, family)


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
