"""SimDA adapters: spatial (attention / FFN) and temporal adapters, and a per-block container.

Where the adapters sit in a transformer block of an image model (``h``: tokens ``[B*F, N, C]``)::

    h = h + attention_adapter(attn1(norm1(h)))          # wraps the self-attention output
    h = h + attn2(norm2(h), context)                     # cross-attention, unchanged
    h = ff(norm3(h)) + h + ffn_adapter(h)                # FFN adapter parallel, on un-normalised h
    h = temporal_adapter(h, frames, height, width)       # residual depthwise temporal conv

``attention_adapter`` carries its own skip connection (``x + up(gelu(down(x)))``), ``ffn_adapter`` returns
only the branch (``up(gelu(down(x)))``), and ``temporal_adapter`` is residual. Every up projection starts
at zero, so a freshly created adapter set leaves the image model's outputs exactly unchanged.

The ComfyUI binding (``nodes/simda_patch.py``) places them with the host's patch API, which exposes
slightly different points of the block: the FFN adapter runs in parallel on the FFN's own input
(``ff(u) + ffn_adapter(u)``, ``u = norm3(h)``), and on UNets the temporal adapter runs right after the
self-attention residual (before cross-attention); on Wan it runs on the block output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from . import registry
from .adapter_set import BlockAdapterSet, JsonConfig
from .kind import AdapterKind
from .latent_shift import latent_shift_kv

KIND = "simda"
PARTS = ("attention", "ffn", "temporal")


@dataclass
class SimDAConfig(JsonConfig):
    """Hyper-parameters of a SimDA adapter set (stored as JSON in the file metadata).

    Attributes:
        spatial_ratio: bottleneck width of the spatial adapters as a fraction of ``C`` (``C -> C/4``).
        temporal_ratio: bottleneck width of the temporal adapter (``C -> C/2``).
        temporal_kernel: temporal extent of the depthwise convolution (odd; zero padded).
        attention_adapter / ffn_adapter / temporal_adapter: which adapters each block gets.
        shift_mode: key/value construction of the self-attention (``"simda"``, ``"previous_frame"`` or
            ``"none"`` for plain per-frame attention).
    """
    spatial_ratio: float = 0.25
    temporal_ratio: float = 0.5
    temporal_kernel: int = 3
    attention_adapter: bool = True
    ffn_adapter: bool = True
    temporal_adapter: bool = True
    shift_mode: str = "simda"

    def __post_init__(self) -> None:
        if not 0 < self.spatial_ratio <= 1 or not 0 < self.temporal_ratio <= 1:
            raise ValueError("adapter ratios must lie in (0, 1]")
        if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd and positive, got {self.temporal_kernel}")
        if self.shift_mode not in ("simda", "previous_frame", "none"):
            raise ValueError(f"unknown shift_mode {self.shift_mode!r}")

    def parts(self) -> tuple[str, ...]:
        """The adapter kinds enabled by this config, in :data:`PARTS` order."""
        flags = {"attention": self.attention_adapter, "ffn": self.ffn_adapter,
                 "temporal": self.temporal_adapter}
        return tuple(p for p in PARTS if flags[p])


def _bottleneck(dim: int, ratio: float) -> int:
    return max(1, int(round(dim * ratio)))


class SpatialAdapter(nn.Module):
    """Bottleneck MLP ``C -> C*ratio -> C`` with GELU; the up projection starts at zero.

    With ``skip=True`` (attention adapter) the output is ``x + up(gelu(down(x)))``; with ``skip=False``
    (FFN adapter, added in parallel to the feed-forward branch) it is ``up(gelu(down(x)))`` only.

    Shapes: ``x`` ``[..., C]`` -> ``[..., C]``.
    """

    def __init__(self, dim: int, ratio: float = 0.25, skip: bool = True):
        super().__init__()
        self.dim = dim
        self.skip = skip
        hidden = _bottleneck(dim, ratio)
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., C]`` -> ``[..., C]``."""
        branch = self.up(self.act(self.down(x)))
        return x + branch if self.skip else branch


class TemporalAdapter(nn.Module):
    """``x + up(dwconv_t(down(x)))``: 1x1x1 conv ``C -> C/2``, depthwise Conv3d ``(k, 1, 1)`` over time with
    zero padding, 1x1x1 conv ``C/2 -> C`` (zero-initialised). No activation.

    Each output frame mixes only frames ``t - k//2 .. t + k//2`` of the same video and the same spatial
    position. Parameters keep the Conv3d shapes (``[out, in, kt, 1, 1]``); on token input the 1x1x1
    convolutions run as matmuls on the channel axis without a layout change.

    Accepted inputs:
        * ``[B, C, F, H, W]`` video features;
        * ``[B*F, N, C]`` tokens with ``frames``/``height``/``width`` given (``N = height * width``,
          frames contiguous per video).
    The output has the input's shape.
    """

    def __init__(self, dim: int, ratio: float = 0.5, kernel: int = 3):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"temporal kernel must be odd and positive, got {kernel}")
        self.dim = dim
        hidden = _bottleneck(dim, ratio)
        self.down = nn.Conv3d(dim, hidden, kernel_size=1)
        self.conv = nn.Conv3d(hidden, hidden, kernel_size=(kernel, 1, 1), padding=(kernel // 2, 0, 0),
                              groups=hidden)
        self.up = nn.Conv3d(hidden, dim, kernel_size=1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor, frames: int | None = None, height: int | None = None,
                width: int | None = None) -> torch.Tensor:
        """``[B, C, F, H, W]`` -> same, or ``[B*F, N, C]`` (with frames/height/width) -> same."""
        if x.dim() == 5:
            return x + self.up(self.conv(self.down(x)))
        if x.dim() != 3:
            raise ValueError(f"expected [B, C, F, H, W] or [B*F, N, C], got {tuple(x.shape)}")
        if frames is None or height is None or width is None:
            raise ValueError("token input [B*F, N, C] needs frames, height and width")
        bf, n, _ = x.shape
        if n != height * width:
            raise ValueError(f"token count {n} does not match the grid {height}x{width}")
        if bf % frames != 0:
            raise ValueError(f"batch of {bf} frame tokens is not a whole number of videos of {frames} frames")
        # 1x1x1 convolutions are linear maps on the channel axis.
        z = F.linear(x, self.down.weight.flatten(1), self.down.bias)          # [B*F, N, C/2]
        z = rearrange(z, "(b f) n c -> b c f n 1", f=frames)                  # [B, C/2, F, N, 1]
        z = self.conv(z)
        z = rearrange(z, "b c f n 1 -> (b f) n c")                            # [B*F, N, C/2]
        return x + F.linear(z, self.up.weight.flatten(1), self.up.bias)


class SimDABlockAdapters(nn.Module):
    """The adapters of one transformer block of width ``dim``; absent parts are ``None``.

    Attributes:
        attention: :class:`SpatialAdapter` with skip, applied to the self-attention output ``[B*F, N, C]``.
        ffn: :class:`SpatialAdapter` without skip, run in parallel to the FFN on the block input.
        temporal: :class:`TemporalAdapter` applied to the block output.
    """

    def __init__(self, dim: int, config: SimDAConfig, parts: Iterable[str] | None = None):
        super().__init__()
        parts = tuple(config.parts() if parts is None else parts)
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown adapter parts {sorted(unknown)}; expected a subset of {PARTS}")
        self.dim = dim
        self.parts = tuple(p for p in PARTS if p in parts)
        self.attention = SpatialAdapter(dim, config.spatial_ratio, skip=True) if "attention" in parts else None
        self.ffn = SpatialAdapter(dim, config.spatial_ratio, skip=False) if "ffn" in parts else None
        self.temporal = (TemporalAdapter(dim, config.temporal_ratio, config.temporal_kernel)
                         if "temporal" in parts else None)


class SimDAAdapterSet(BlockAdapterSet):
    """All SimDA adapters of one model, keyed by a stable block name (``adapter_set.py`` has the container and the
    file format: tensors ``"<block name>.<part>.<param>"``, metadata ``kind="simda"``, ``family``, ``config``,
    ``blocks``). Block names are the dotted module paths of the host model's transformer blocks (for example
    ``"input_blocks.1.1.transformer_blocks.0"``)."""

    KIND = KIND
    config_class = SimDAConfig

    def __init__(self, config: SimDAConfig | None = None, family: str = "sd15"):
        super().__init__(config, family)

    def make_block(self, dim: int, parts: Iterable[str] | None) -> SimDABlockAdapters:
        return SimDABlockAdapters(dim, self.config, parts)

    # -- where the parts attach ---------------------------------------------------------------------------
    def attachments(self, architecture: str, options: dict[str, Any] | None = None) -> list[tuple]:
        """``(block name or None, hook point, callable)`` for the host's attach table (``nodes/attach.py``).

        Per block: the attention adapter on the self-attention output, the FFN adapter parallel to the FFN
        on its input, the temporal adapter on the block's video tokens frame by frame. On frame-wise models
        (``architecture == "unet"``) also latent-shift keys/values in every spatial self-attention, in the
        mode of ``options["latent_shift"]`` (default: the mode the adapters were trained with).
        """
        options = options or {}
        out: list[tuple] = []
        for name in self.block_names():
            blk = self[name]
            if blk.attention is not None:
                out.append((name, "self_attn_out", _OwnDtype(blk.attention)))
            if blk.ffn is not None:
                out.append((name, "ffn_parallel", _OwnDtype(blk.ffn)))
            if blk.temporal is not None:
                out.append((name, "temporal", _OwnDtype(blk.temporal, grid=True)))
        mode = options.get("latent_shift") or self.config.shift_mode
        if architecture == "unet" and mode != "none":
            out.append((None, "self_attn_kv", LatentShiftKV(mode)))
        return out


class _OwnDtype:
    """A hook callable ``fn(x, site)`` that runs ``module`` in its own dtype and device (``grid``: pass the
    site's frames, height and width, as the temporal adapter needs them)."""

    def __init__(self, module: nn.Module, grid: bool = False):
        self.module, self.grid = module, grid

    def __call__(self, x: torch.Tensor, site) -> torch.Tensor:
        p = next(self.module.parameters())
        args = (site.frames, site.height, site.width) if self.grid else ()
        return self.module(x.to(device=p.device, dtype=p.dtype), *args).to(device=x.device, dtype=x.dtype)


class LatentShiftKV:
    """``self_attn_kv`` hook: the keys/values of per-frame self-attention become latent-shift tokens
    ``[B*F, 2N, C]`` (see ``latent_shift.py``); frame 0 of each video and single frames are unchanged."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, n, context, value, site):
        if context is None or context.shape[:2] != n.shape[:2] or site.frames == 1:
            return n, context, value
        k = latent_shift_kv(context, site.frames, site.height, site.width, self.mode)
        v = k if value is context else latent_shift_kv(value, site.frames, site.height, site.width, self.mode)
        return n, k, v


# Short alias: the container is the pack's "adapter set" for SimDA.
AdapterSet = SimDAAdapterSet


@registry.register
class SimDA(AdapterKind):
    name = KIND
    description = ("SimDA: attention and FFN adapters plus a temporal adapter (depthwise 3D convolution) in every "
                   "transformer block, trained with latent-shift self-attention on frame-wise models")
    architectures = ("unet", "wan")
    block_kinds = ("spatial", "dit")
    adapter_set = SimDAAdapterSet
    example = {"spatial_ratio": 0.25, "temporal_kernel": 3}
    trainer_options = ("latent_shift",)

    def apply_trainer_options(self, config, options, defaults, host):
        """``latent_shift``: the self-attention the adapters train with and keep (SD 1.5, SDXL, SVD); Wan's
        self-attention already spans all frames, so there it must be none."""
        mode = options.get("latent_shift", "none")
        if host.architecture == "wan" and mode != "none":
            raise ValueError(f"latent_shift={mode}: Wan's self-attention already spans all frames; set latent_shift "
                             "to none to train simda adapters on Wan")
        out = dict(config)
        out["shift_mode"] = mode
        return out
