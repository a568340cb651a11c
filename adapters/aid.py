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
* :class:`CrossAttentionDeltas`: the cross-attention layers are trained too (the paper trains "the DQFormer,
  adapters and cross-attention layers"), as weight deltas on the frozen q/k/v/out projections, zero at init:
  full-size deltas (``cross_attn_rank`` 0, the paper's full training of those layers) or low-rank ones.
* :class:`AIDAdapterSet`: the per-block adapters plus the DQFormer as a model-level module, in the pack's
  adapter file format, and where they attach on a frozen SVD (:meth:`AIDAdapterSet.attachments`):
  the DQFormer runs once per model call on the instruction / state features the conditioning carries (the
  ``conditions`` hook point), and its tokens join every spatial block's cross-attention context, each frame's
  row with that frame's decomposed tokens (SVD's spatial blocks hold the frames in the batch).

The paper does not publish N_t, depth or width; the defaults here (4 queries per frame, depth 1, width 256,
4 heads) are ours, and all of them are config. Videos of another length than ``frames`` use the learned
per-frame queries resampled linearly along time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from . import registry
from .adapter_set import BlockAdapterSet, JsonConfig
from .kind import AdapterKind
from .layers import ResidualFeedForward
from .protocol import ADAPTER_COND_PREFIX
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
    cross_attn: bool = True      # train the cross-attention layers (as weight deltas)
    cross_attn_rank: int = 0     # 0: full-size deltas; r > 0: low-rank deltas of rank r
    multimodal_branch: bool = True
    decomposed_branch: bool = True
    state_prompts: bool = True   # False: the decomposed branch sees the instruction only (the ablation)

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.frames < 1 or self.queries_per_frame < 1 or self.depth < 1:
            raise ValueError("frames, queries_per_frame and depth must be positive")
        if self.cross_attn_rank < 0:
            raise ValueError("cross_attn_rank must be 0 (full-size deltas) or a positive rank")
        if not (self.multimodal_branch or self.decomposed_branch):
            raise ValueError("at least one DQFormer branch (multimodal_branch, decomposed_branch) must be on")

    def parts(self) -> tuple[str, ...]:
        flags = {"spatial": self.spatial_adapter, "short_term": self.short_term_adapter,
                 "long_term": self.long_term_adapter}
        return tuple(p for p in PARTS if flags[p])


class _Attention(nn.Module):
    """Pre-norm multi-head attention with a residual: ``x + Attn(LN(x), LN(ctx))``. Shapes ``[B, N, W]``,
    ``ctx [B, M, W]``, optional ``ctx_mask [B, M]`` (True = valid)."""

    def __init__(self, width: int, heads: int, self_attention: bool = False):
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        if self_attention:  # keys and values are the normalised queries: norm_kv stays in the file, untrained
            self.norm_kv.requires_grad_(False)

    def forward(self, x, ctx=None, ctx_mask: Optional[torch.Tensor] = None):
        q = self.norm_q(x)
        kv = q if ctx is None else self.norm_kv(ctx)
        pad = None if ctx_mask is None else ~ctx_mask.bool()
        return x + self.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)[0]


class DQFormer(nn.Module):
    """Dual-Query Transformer (see the module docstring).

    ``forward(t1 [B, L1, text_dim], v [B, Lv, vision_dim], t2 [B, F, L2, text_dim], t1_mask [B, L1],
    t2_mask [B, F, L2])`` -> ``(multimodal [B, L1, context_dim], decomposed [B, F, queries_per_frame,
    context_dim])``, None for a branch the config switches off. Masks are optional (True = a real token)."""

    def __init__(self, config: AIDConfig):
        super().__init__()
        c = config
        self.config = c
        self.proj_text = nn.Linear(c.text_dim, c.width)
        self.proj_vision = nn.Linear(c.vision_dim, c.width)
        self.upper = nn.ModuleList()
        self.lower = nn.ModuleList()
        for _ in range(c.depth):
            self.upper.append(nn.ModuleList([_Attention(c.width, c.heads, self_attention=True),
                                             _Attention(c.width, c.heads),
                                             ResidualFeedForward(c.width)]))
            self.lower.append(nn.ModuleList([_Attention(c.width, c.heads), _Attention(c.width, c.heads),
                                             ResidualFeedForward(c.width)]))
        self.queries = nn.Parameter(0.02 * torch.randn(c.frames, c.queries_per_frame, c.width))
        self.out_multimodal = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.context_dim))
        self.out_decomposed = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.context_dim))
        # the parts an ablation switches off stay in the file (same layout, same initialisation of the rest) but
        # are not trained and not run
        for part in self.unused_parts():
            part.requires_grad_(False)
        if not c.decomposed_branch:
            self.queries.requires_grad_(False)

    def unused_parts(self) -> list[nn.Module]:
        c = self.config
        out: list[nn.Module] = []
        if not c.multimodal_branch:
            out += [self.proj_vision, self.upper, self.out_multimodal]
        if not c.decomposed_branch:
            out += [self.lower, self.out_decomposed]
        elif not c.state_prompts:
            out += [layer[1] for layer in self.lower]  # the cross-attention to the states
        return out

    def frame_queries(self, frames: int) -> torch.Tensor:
        """The learned queries for a video of ``frames`` frames ``[frames, N_t, W]``: as learned when ``frames``
        equals the config's, else resampled linearly along time."""
        q = self.queries
        if frames == q.shape[0]:
            return q
        return F.interpolate(rearrange(q, "f n w -> (n w) f")[None], size=frames, mode="linear",
                             align_corners=True)[0].reshape(q.shape[1], q.shape[2], frames).permute(2, 0, 1)

    def forward(self, t1, v, t2=None, t1_mask=None, t2_mask=None, frames: int | None = None):
        """``t2`` None (no state prompts): the decomposed queries attend to the instruction only; then ``frames``
        gives the video length. A branch the config switches off is not computed: its output is None."""
        c = self.config
        b = t1.shape[0]
        frames = t2.shape[1] if t2 is not None else int(frames or c.frames)
        text = self.proj_text(t1)
        vision = self.proj_vision(v) if c.multimodal_branch else None
        states = states_mask = None
        if t2 is not None:
            states = rearrange(self.proj_text(t2), "b f l w -> (b f) l w")
            states_mask = None if t2_mask is None else rearrange(t2_mask, "b f l -> (b f) l")
        text_per_frame = text.repeat_interleave(frames, 0)
        text_mask_per_frame = None if t1_mask is None else t1_mask.repeat_interleave(frames, 0)
        mm = text
        q = self.frame_queries(frames)[None].expand(b, -1, -1, -1).reshape(b * frames, c.queries_per_frame, c.width)
        for (self_attn, to_vision, ff_u), (to_text, to_state, ff_l) in zip(self.upper, self.lower):
            if c.multimodal_branch:
                mm = ff_u(to_vision(self_attn(mm, None, t1_mask), vision))
            if c.decomposed_branch:
                q = to_text(q, text_per_frame, text_mask_per_frame)
                if states is not None:
                    q = to_state(q, states, states_mask)
                q = ff_l(q)
        multimodal = self.out_multimodal(mm) if c.multimodal_branch else None
        decomposed = rearrange(self.out_decomposed(q), "(b f) n c -> b f n c", b=b) if c.decomposed_branch else None
        return multimodal, decomposed

    def tokens(self, t1, v, t2=None, frames: int | None = None) -> torch.Tensor:
        """The conditioning tokens per frame ``[B*F, M, context_dim]`` (frame-major within each video): the
        multimodal tokens (shared by all frames of a video) then frame f's decomposed tokens, as the config's
        branches say."""
        c = self.config
        t2 = t2 if c.state_prompts else None
        mm, dec = self(t1, v, t2, frames=frames)
        f = t2.shape[1] if t2 is not None else int(frames or c.frames)  # as forward() counts them
        parts = []
        if mm is not None:
            parts.append(mm.repeat_interleave(f, 0))
        if dec is not None:
            parts.append(rearrange(dec, "b f n c -> (b f) n c"))
        return torch.cat(parts, dim=1)


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


class CrossAttentionDeltas(nn.Module):
    """Trainable deltas on a frozen cross-attention's projections, zero at init: ``delta(proj, u)`` is what adds
    to ``proj(u)`` for ``proj`` in q, k, v, out. ``rank`` 0: full-size ``[out, in]`` deltas; ``rank`` r: ``B A``
    with ``A [r, in]`` random and ``B [out, r]`` zero."""

    SHAPES = {"q": ("dim", "dim"), "k": ("dim", "context"), "v": ("dim", "context"), "out": ("dim", "dim")}

    def __init__(self, dim: int, context_dim: int, rank: int = 0):
        super().__init__()
        self.rank = int(rank)
        sizes = {"dim": dim, "context": context_dim}
        for proj, (o, i) in self.SHAPES.items():
            out_f, in_f = sizes[o], sizes[i]
            if self.rank == 0:
                self.register_parameter(proj, nn.Parameter(torch.zeros(out_f, in_f)))
            else:
                self.register_parameter(f"{proj}_down", nn.Parameter(torch.randn(self.rank, in_f) / in_f ** 0.5))
                self.register_parameter(f"{proj}_up", nn.Parameter(torch.zeros(out_f, self.rank)))

    def weight(self, proj: str) -> torch.Tensor:
        if self.rank == 0:
            return getattr(self, proj)
        return getattr(self, f"{proj}_up") @ getattr(self, f"{proj}_down")

    def forward(self, proj: str, u: torch.Tensor) -> torch.Tensor:
        w = self.weight(proj)
        return F.linear(u.to(device=w.device, dtype=w.dtype), w).to(device=u.device, dtype=u.dtype)


class AIDBlockAdapters(nn.Module):
    def __init__(self, dim: int, config: AIDConfig, parts: Iterable[str] | None = None):
        super().__init__()
        default = config.parts() + (("cross_attn",) if config.cross_attn else ())
        parts = tuple(default if parts is None else parts)
        unknown = set(parts) - set(PARTS) - {"cross_attn"}
        if unknown:
            raise ValueError(f"unknown AID adapter parts {sorted(unknown)}; expected a subset of "
                             f"{PARTS + ('cross_attn',)}")
        self.dim, self.parts = dim, tuple(p for p in PARTS + ("cross_attn",) if p in parts)
        self.spatial = SpatialAdapter(dim, config.spatial_ratio, skip=True) if "spatial" in parts else None
        self.short_term = (TemporalAdapter(dim, config.temporal_ratio, config.temporal_kernel)
                           if "short_term" in parts else None)
        self.long_term = (LongTermTemporalAdapter(dim, config.temporal_ratio, config.long_term_heads)
                          if "long_term" in parts else None)
        self.cross_attn = (CrossAttentionDeltas(dim, config.context_dim, config.cross_attn_rank)
                           if "cross_attn" in parts else None)


# names of the adapter conditions AID reads (the binding's ``add_adapter_conds`` writes them)
TEXT_COND, STATES_COND = "aid_text", "aid_states"


class DQFormerTokens:
    """``conditions`` hook: once per model call, the DQFormer's tokens from the instruction (``aid_text``,
    ``[rows, L1, D]``), the state prompts (``aid_states``, one row per frame) and the first frame's visual
    features, which on SVD are the cross-attention context itself (its CLIP image embedding: zero where the image
    is dropped, as in SVD's own negative). Rows are frames; each video's first row gives its instruction and
    image. Entries without an instruction get no tokens (the model's plain context). The tokens stay in the
    call scope of this forward, keyed by this object, for :class:`InjectTokens`."""

    def __init__(self, dqformer: DQFormer):
        self.dqformer = dqformer

    def __call__(self, conds, x, context, site, run):
        text = conds.get(TEXT_COND)
        if text is None or context is None:
            site.call[self] = None
            return
        q = self.dqformer
        p = next(q.parameters())
        f = site.frames
        rows = x.shape[0]
        videos = rows // f

        def own(t):
            return t.to(device=p.device, dtype=p.dtype)

        t1 = own(text[::f])
        v = own(context[::f])
        states = conds.get(STATES_COND)
        t2 = None if states is None else own(states).reshape(videos, f, *states.shape[1:])
        site.call[self] = q.tokens(t1, v, t2, frames=f)


class InjectTokens:
    """``cross_context`` hook: the tokens ``source`` (the set's :class:`DQFormerTokens`) left for this model call
    (none for entries without an instruction)."""

    def __init__(self, source: DQFormerTokens):
        self.source = source

    def __call__(self, context, site):
        tokens = site.call.get(self.source)
        if tokens is None:
            return context.new_zeros(context.shape[0], 0, context.shape[-1])
        if tokens.shape[0] != context.shape[0]:
            raise ValueError(f"AID tokens for {tokens.shape[0]} rows, the cross-attention has {context.shape[0]}")
        return tokens


class _Deltas:
    def __init__(self, module: CrossAttentionDeltas):
        self.module = module

    def __call__(self, proj, u, site):
        return self.module(proj, u)


class AIDAdapterSet(BlockAdapterSet):
    """AID's adapters per spatial block of the frozen model, and the DQFormer (``shared["dqformer"]``)."""

    KIND = KIND
    config_class = AIDConfig

    def make_block(self, dim: int, parts: Iterable[str] | None) -> AIDBlockAdapters:
        return AIDBlockAdapters(dim, self.config, parts)

    def make_shared(self) -> None:
        if "dqformer" not in self.shared:
            self.shared["dqformer"] = DQFormer(self.config)

    @property
    def dqformer(self) -> DQFormer:
        return self.shared["dqformer"]

    def attachments(self, architecture: str, options: dict[str, Any] | None = None) -> list[tuple]:
        """The adapters' places in the attach table: the DQFormer once per model call; per block its tokens in
        the cross-attention context and the cross-attention deltas, the spatial adapter beside the self-attention
        output, then the short- and the long-term temporal adapters on the block's video tokens, frame by
        frame."""
        from .simda import _OwnDtype

        if architecture != "unet":
            raise ValueError("AID adapters attach to frame-wise UNets with cross-attention (SVD)")
        source = DQFormerTokens(self.dqformer)
        out = [(None, "conditions", source)]
        inject = InjectTokens(source)
        for name in self.block_names():
            blk = self[name]
            out.append((name, "cross_context", inject))
            if blk.cross_attn is not None:
                out.append((name, "cross_attn_delta", _Deltas(blk.cross_attn)))
            if blk.spatial is not None:
                out.append((name, "self_attn_out", _OwnDtype(blk.spatial)))
            if blk.short_term is not None:
                out.append((name, "temporal", _OwnDtype(blk.short_term, grid=True)))
            if blk.long_term is not None:
                out.append((name, "temporal", _OwnDtype(blk.long_term, grid=True)))
        return out


@registry.register
class AID(AdapterKind):
    name = KIND
    description = ("AID: a Dual-Query Transformer whose instruction and state-prompt tokens join the "
                   "cross-attention, cross-attention weight deltas, and spatial, short-term and long-term temporal "
                   "adapters in every spatial block of a frozen SVD")
    architectures = ("unet",)
    families = ("svd",)
    block_kinds = ("spatial",)
    adapter_set = AIDAdapterSet
    example = {"width": 256, "queries_per_frame": 4}
    text_conds = (TEXT_COND, STATES_COND)  # dropped together when training drops the text

    def configure(self, config: dict, host, conditions, frames: int, given: set) -> dict:
        """Training settings read off the frozen model and the clips' conditioning, unless the user set them: the
        cross-attention width (SVD's context, which is also the first frame's visual features), the
        instruction's text width, the clip length, and whether the clips come with state prompts."""
        out = dict(config)
        blocks = host.blocks_of("spatial")
        ctx = next((b.context_dim for b in blocks if b.context_dim), None)
        if ctx is None:
            raise ValueError(f"{host.model_config} has no cross-attention; AID injects its tokens there (use SVD)")
        text, states = None, False
        for _, extras in conditions:
            own = extras.get("model_conds") or {}
            states = states or (ADAPTER_COND_PREFIX + STATES_COND) in own
            c = own.get(ADAPTER_COND_PREFIX + TEXT_COND)
            if c is not None and text is None:
                text = c.cond
        if text is None:
            raise ValueError("positive carries no instruction: connect the clips' conditioning through AID Conditioning "
                             "(it adds each clip's instruction and state prompts)")
        defaults = {"context_dim": int(ctx), "vision_dim": int(ctx), "text_dim": int(text.shape[-1]), "frames": int(frames),
                    "state_prompts": bool(states)}  # clips without state prompts: the decomposed branch reads the text
        out.update({k: v for k, v in defaults.items() if k not in given})
        return out


def per_frame_states(embeddings: list[torch.Tensor], starts: list[int], frames: int) -> torch.Tensor:
    """State-prompt features per frame ``[frames, L, D]``: frame f gets the state that holds at f (the last one
    starting at or before it). ``embeddings[s]`` is ``[L_s, D]``; shorter ones are zero-padded to the longest."""
    from .state_prompts import frame_weights

    if len(embeddings) != len(starts) or not embeddings:
        raise ValueError(f"{len(embeddings)} state embeddings for {len(starts)} start frames")
    length = max(e.shape[0] for e in embeddings)
    padded = torch.stack([F.pad(e, (0, 0, 0, length - e.shape[0])) for e in embeddings])
    which = frame_weights(list(starts), int(frames), 0).argmax(dim=1)
    return padded[which]
