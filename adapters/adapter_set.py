"""The container every adapter kind uses: per-block adapter modules keyed by the host's block names, optional
model-level modules, and the pack's file format for them.

A kind subclasses :class:`BlockAdapterSet` and sets ``KIND`` (stored in files), ``config_class`` (a dataclass
with ``to_dict`` / ``from_dict``) and ``make_block(dim, config, parts)`` (the adapters of one block, a module
with ``dim`` and ``parts``); model-level modules (for example a query transformer shared by all blocks) go in
``self.shared``. It then declares where its parts attach with ``attachments(architecture, options)``.

Files: tensors ``"<block name>.<part>.<param>"`` for blocks and ``"shared.<name>.<param>"`` for model-level
modules; metadata ``kind``, ``family``, ``config`` and ``blocks`` (name -> dim, parts).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import torch
import torch.nn as nn

from .files import AdapterFileError, load_tensors, save_tensors

SHARED_PREFIX = "shared."


class JsonConfig:
    """Mixin for a kind's config dataclass: JSON round trip; keys this version does not know are ignored (files
    written by newer versions still load)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _module_key(block_name: str) -> str:
    # nn.ModuleDict keys may not contain '.', which block names such as
    # "input_blocks.1.1.transformer_blocks.0" do; ':' never occurs in module paths.
    return block_name.replace(".", ":")


class BlockAdapterSet(nn.Module):
    KIND = ""
    config_class: Any = None

    def __init__(self, config=None, family: str = "sd15"):
        super().__init__()
        self.config = config if config is not None else self.config_class()
        self.family = family
        self.blocks = nn.ModuleDict()
        self.shared = nn.ModuleDict()
        self._names: dict[str, str] = {}   # module key -> block name

    # -- what a kind provides ---------------------------------------------------------------------------
    def make_block(self, dim: int, parts: Iterable[str] | None) -> nn.Module:
        raise NotImplementedError

    def make_shared(self) -> None:
        """Create the model-level modules in ``self.shared`` (called once the blocks are known)."""

    def attachments(self, architecture: str, options: dict[str, Any] | None = None) -> list[tuple]:
        raise NotImplementedError

    # -- building / access ------------------------------------------------------------------------------
    def add_block(self, name: str, dim: int, parts: Iterable[str] | None = None) -> nn.Module:
        """Create (identity at init) adapters for block ``name`` of width ``dim`` and return them."""
        key = _module_key(name)
        if key in self.blocks:
            raise ValueError(f"block {name!r} already has adapters")
        block = self.make_block(dim, parts)
        self.blocks[key] = block
        self._names[key] = name
        return block

    def __getitem__(self, name: str) -> nn.Module:
        return self.blocks[_module_key(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _module_key(name) in self.blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def block_names(self) -> list[str]:
        """Block names in insertion order."""
        return [self._names[k] for k in self.blocks.keys()]

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # -- files ------------------------------------------------------------------------------------------
    def file_state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for key, block in self.blocks.items():
            for sub, t in block.state_dict().items():
                out[f"{self._names[key]}.{sub}"] = t
        for sub, t in self.shared.state_dict().items():
            out[SHARED_PREFIX + sub] = t
        return out

    def load_file_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`file_state_dict`; every tensor must be present and match its shape."""
        expected = self.file_state_dict()
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        if missing or extra:
            raise AdapterFileError(f"{self.KIND} tensors do not match the adapter layout "
                                   f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                                   f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''})")
        for key, block in self.blocks.items():
            prefix = self._names[key] + "."
            block.load_state_dict({sub: tensors[prefix + sub] for sub in block.state_dict()}, strict=True)
        if len(self.shared):
            self.shared.load_state_dict({k[len(SHARED_PREFIX):]: v for k, v in tensors.items()
                                         if k.startswith(SHARED_PREFIX)}, strict=True)

    def metadata(self) -> dict[str, Any]:
        return {
            "kind": self.KIND,
            "family": self.family,
            "config": self.config.to_dict(),
            "blocks": {self._names[k]: {"dim": b.dim, "parts": list(b.parts)} for k, b in self.blocks.items()},
        }

    def save(self, path: str, extra: dict[str, Any] | None = None) -> None:
        """Write a pack file of this kind; ``extra`` adds free-form JSON fields (e.g. ``"training"``)."""
        meta = dict(extra or {})
        meta.update(self.metadata())
        save_tensors(path, self.file_state_dict(), meta)

    @classmethod
    def build(cls, blocks: dict[str, int], config: dict[str, Any], family: str) -> "BlockAdapterSet":
        """Fresh adapters for ``blocks`` ``{name: width}`` from a JSON ``config``."""
        out = cls(cls.config_class.from_dict(config), family=family)
        for name, dim in blocks.items():
            out.add_block(name, int(dim))
        out.make_shared()
        return out

    @classmethod
    def load(cls, path: str, device: str | torch.device = "cpu", expect_family: str | None = None):
        """Rebuild an adapter set from a file written by :meth:`save`."""
        tensors, meta = load_tensors(path, device=device, expect_kind=cls.KIND)
        family = meta.get("family", "")
        if expect_family is not None and family != expect_family:
            raise AdapterFileError(f"{cls.KIND} adapters were trained for '{family}', not '{expect_family}'")
        blocks = meta.get("blocks")
        if not isinstance(blocks, dict):
            raise AdapterFileError(f"{cls.KIND} file metadata has no 'blocks' table")
        out = cls(cls.config_class.from_dict(meta.get("config", {})), family=family)
        for name, info in blocks.items():
            out.add_block(name, int(info["dim"]), info.get("parts"))
        out.make_shared()
        out.to(device)
        out.load_file_state_dict(tensors)
        return out
