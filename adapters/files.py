"""Safetensors files with JSON metadata: the one file format of the pack.

Every file the pack writes (domain models, adapters, training checkpoints) is a safetensors file whose
string metadata holds one JSON document under the key ``video_adapters``::

    {"format_version": 1, "kind": "domain_model" | "simda" | ..., "family": "wan21" | "sd15" | ...,
     "config": {...}, ...free-form fields such as "training"...}

No pickle anywhere: tensors go through safetensors, everything else through JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

METADATA_KEY = "video_adapters"
FORMAT_VERSION = 1


class AdapterFileError(ValueError):
    """A file that is not a pack file, or is one of the wrong kind or family."""


def save_tensors(path: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and ``meta`` atomically: a crash leaves either the old file or the new one.

    ``meta`` must contain ``kind``; ``format_version`` is added. Tensors are made contiguous and moved to
    the CPU (safetensors needs both).
    """
    if "kind" not in meta:
        raise ValueError("metadata needs a 'kind'")
    meta = {"format_version": FORMAT_VERSION, **meta}
    blob = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".safetensors", dir=folder)
    os.close(fd)
    try:
        save_file(blob, tmp, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_metadata(path: str) -> dict[str, Any]:
    """The pack metadata of ``path``; raises AdapterFileError for files the pack did not write."""
    try:
        with safe_open(path, framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as e:  # not a safetensors file at all
        raise AdapterFileError(f"{os.path.basename(path)} is not a readable safetensors file ({e})") from e
    if raw is None:
        raise AdapterFileError(
            f"{os.path.basename(path)} has no '{METADATA_KEY}' metadata: it was not written by this pack "
            "(a LoRA or a full model belongs in the native loaders)")
    meta = json.loads(raw)
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise AdapterFileError(
            f"{os.path.basename(path)} uses file format {meta.get('format_version')}, newer than this pack "
            f"reads ({FORMAT_VERSION}); update the pack")
    return meta


def load_tensors(path: str, device: str | torch.device = "cpu",
                 expect_kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a pack file: ``(tensors, meta)``. With ``expect_kind`` a file of another kind is refused."""
    meta = read_metadata(path)
    if expect_kind is not None and meta.get("kind") != expect_kind:
        raise AdapterFileError(
            f"{os.path.basename(path)} is a '{meta.get('kind')}' file, but a '{expect_kind}' file is needed here")
    tensors = {}
    with safe_open(path, framework="pt", device=str(device)) as f:
        for k in f.keys():
            t = f.get_tensor(k)
            # a tensor read from the file sits wherever the header length puts it; a copy gets the allocator's
            # alignment, so the math kernels (and their rounding) do not depend on the length of the metadata
            tensors[k] = t.clone() if t.device.type == "cpu" and t.data_ptr() % 64 else t
    return tensors, meta
