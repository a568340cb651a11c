"""AID modules (instruction-guided video prediction on a frozen image-to-video model), host-free.

* :class:`DQFormer`, the Dual-Query Transformer. The *multimodal* branch runs self-attention over the
  instruction's text features ``t1``, then cross-attention from them to the first frame's visual features
  ``v``. The *decomposed* branch has learnable queries, ``queries_per_frame`` per frame; frame f's queries
  cross-attend to ``t1`` and then to frame f's state-prompt features ``t2[f]``. Both outputs are projected to
  the host's cross-attention width: the multimodal tokens are shared by all frames, and the decomposed tokens of
  frame f are meant for frame f only.
* Adapters, each the identity at init (up projections zero):
  - spatial ``X + W_up(GELU(W_down X))`` beside spatial self-attention (the same module as SimDA's);
  - short-term temporal ``X + W_up(DWConv3D(W_down X))`` (the same module as SimDA's temporal adapter);
  - long-term temporal ``X + W_up(TemporalSelfAttn(W_down X))``: :class:`LongTermTemporalAdapter`.
* :class:`AIDAdapterSet`: the per-block adapters plus the DQFormer as a model-level module, in the pack's
  adapter file format.

The paper does not publish N_t, depth or width; the defaults here (4 queries per frame, depth 1, width 256,
4 heads) are ours, and all of them are config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import torch
import torch.nn as nn
from einops import rearrange

from .adapter_set import BlockAdapterSet, JsonConfig
from .simda import SpatialAdapter, TemporalAdapter, _bottleneck

KIND = "aid"
PARTS = ("spatial", "short_term", "long_term")


@dataclass
class AIDConfig(JsonConfig):
    text_dim: int = 1024        # width of the instruction and state-prompt text features
    vision_dim: int = 1024      # width of the first frame's visual features
    context_dim: int = 1024     # the host's cross-attention width (SVD: 1024)
    width: int = 256
    heads: int = 4
    depth: int = 1
    frames: int = 14
    queries_per_frame: int = 4
    spatial_ratio: float = 0.25
    temporal_ratio: float = 0.25
    temporal_kernel: int = 3
    long_term_heads: int = 4
    spatial_adapter: bool = True
    short_term_adapter: bool = True
    long_term_adapter: bool = True

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.frames < 1 or self.queries_per_frame < 1 or self.depth < 1:
            raise ValueError("frames, queries_per_frame and depth must be positive")

    def parts(self) -> tuple[str, ...]:
        flags = {"spatial": self.spatial_adapter, "short_term": self.short_term_adapter,
                 "long_term": self.long_term_adapter}
        return tuple(p for p in PARTS if flags[p])


class _Attention(nn.Module):
    """Pre-norm multi-head attention with a residual: ``x + Attn(LN(x), LN(ctx))``. Shapes ``[B, N, W]``,
    ``ctx [B, M, W]``, optional ``ctx_mask [B, M]`` (True = valid)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, x, ctx=None, ctx_mask: Optional[torch.Tensor] = None):
        q = self.norm_q(x)
        kv = q if ctx is None else self.norm_kv(ctx)
        pad = None if ctx_mask is None else ~ctx_mask.bool()
        return x + self.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)[0]


class _FeedForward(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        return x + self.net(x)


class DQFormer(nn.Module):
    """Dual-Query Transformer (see the module docstring).

    ``forward(t1 [B, L1, text_dim], v [B, Lv, vision_dim], t2 [B, F, L2, text_dim], t1_mask [B, L1],
    t2_mask [B, F, L2])`` -> ``(multimodal [B, L1, context_dim], decomposed [B, F, queries_per_frame,
    context_dim])``. Masks are optional (True = a real token)."""

    def __init__(self, config: AIDConfig):
        super().__init__()
        c = config
        self.config = c
        self.proj_text = nn.Linear(c.text_dim, c.width)
        self.proj_vision = nn.Linear(c.vision_dim, c.width)
        self.upper = nn.ModuleList()
        self.lower = nn.ModuleList()
        for _ in range(c.depth):
            self.upper.append(nn.ModuleList([_Attention(c.width, c.heads), _Attention(c.width, c.heads),
                                             _FeedForward(c.width)]))
            self.lower.append(nn.ModuleList([_Attention(c.width, c.heads), _Attention(c.width, c.heads),
                                             _FeedForward(c.width)]))
        self.queries = nn.Parameter(0.02 * torch.randn(c.frames, c.queries_per_frame, c.width))
        self.out_multimodal = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.context_dim))
        self.out_decomposed = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.context_dim))

    def forward(self, t1, v, t2, t1_mask=None, t2_mask=None):
        c = self.config
        b, frames = t1.shape[0], t2.shape[1]
        if frames != c.frames:
            raise ValueError(f"state prompts for {frames} frames, the DQFormer was made for {c.frames}")
        text = self.proj_text(t1)
        vision = self.proj_vision(v)
        states = rearrange(self.proj_text(t2), "b f l w -> (b f) l w")
        states_mask = None if t2_mask is None else rearrange(t2_mask, "b f l -> (b f) l")
        text_per_frame = text.repeat_interleave(frames, 0)
        text_mask_per_frame = None if t1_mask is None else t1_mask.repeat_interleave(frames, 0)
        mm = text
        q = self.queries[None].expand(b, -1, -1, -1).reshape(b * frames, c.queries_per_frame, c.width)
        for (self_attn, to_vision, ff_u), (to_text, to_state, ff_l) in zip(self.upper, self.lower):
            mm = ff_u(to_vision(self_attn(mm, None, None), vision))
            q = ff_l(to_state(to_text(q, text_per_frame, text_mask_per_frame), states, states_mask))
        decomposed = rearrange(self.out_decomposed(q), "(b f) n c -> b f n c", b=b)
        return self.out_multimodal(mm), decomposed


class LongTermTemporalAdapter(nn.Module):
    """``x + up(TemporalSelfAttn(down(x)))`` over all frames of a video, per spatial position; ``up`` starts at
    zero. Tokens ``[B*F, N, C]`` with ``frames`` -> the same shape."""

    def __init__(self, dim: int, ratio: float = 0.25, heads: int = 4):
        super().__init__()
        hidden = _bottleneck(dim, ratio)
        heads = max(1, min(heads, hidden))
        while hidden % heads:
            heads -= 1
        self.dim = dim
        self.down = nn.Linear(dim, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor, frames: int, height: int | None = None, width: int | None = None) -> torch.Tensor:
        bf, n, _ = x.shape
        if bf % frames:
            raise ValueError(f"batch of {bf} frame tokens is not a whole number of videos of {frames} frames")
        z = rearrange(self.down(x), "(b f) n c -> (b n) f c", f=frames)
        zn = self.norm(z)
        z = self.attn(zn, zn, zn, need_weights=False)[0]
        return x + self.up(rearrange(z, "(b n) f c -> (b f) n c", n=n))


class AIDBlockAdapters(nn.Module):
    def __init__(self, dim: int, config: AIDConfig, parts: Iterable[str] | None = None):
        super().__init__()
        parts = tuple(config.parts() if parts is None else parts)
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown AID adapter parts {sorted(unknown)}; expected a subset of {PARTS}")
        self.dim, self.parts = dim, tuple(p for p in PARTS if p in parts)
        self.spatial = SpatialAdapter(dim, config.spatial_ratio, skip=True) if "spatial" in parts else None
        self.short_term = (TemporalAdapter(dim, config.temporal_ratio, config.temporal_kernel)
                           if "short_term" in parts else None)
        self.long_term = (LongTermTemporalAdapter(dim, config.temporal_ratio, config.long_term_heads)
                          if "long_term" in parts else None)


class AIDAdapterSet(BlockAdapterSet):
    """AID's adapters per spatial block of the frozen model, and the DQFormer (``shared["dqformer"]``)."""

    KIND = KIND
    config_class = AIDConfig

    def make_block(self, dim: int, parts: Iterable[str] | None) -> AIDBlockAdapters:
        return AIDBlockAdapters(dim, self.config, parts)

    def make_shared(self) -> None:
        if "dqformer" not in self.shared:
            self.shared["dqformer"] = DQFormer(self.config)

    def attachments(self, architecture: str, options: dict[str, Any] | None = None) -> list[tuple]:
        """The adapters' places in the attach table: spatial beside the self-attention output, then the short-
        and the long-term temporal adapters on each block's video tokens, frame by frame."""
        from .simda import _OwnDtype

        out = []
        for name in self.block_names():
            blk = self[name]
            if blk.spatial is not None:
                out.append((name, "self_attn_out", _OwnDtype(blk.spatial)))
            if blk.short_term is not None:
                out.append((name, "temporal", _OwnDtype(blk.short_term, grid=True)))
            if blk.long_term is not None:
                out.append((name, "temporal", _OwnDtype(blk.long_term, grid=True)))
        return out
