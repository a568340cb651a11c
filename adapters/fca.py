"""FCA (Frame-wise Conditioning Adaptation) for text-video prediction on a frozen DiT, host-free.

Beside every block of the frozen DiT runs a parallel cross-attention branch, added to the block output::

    out = block(x) + s * scale * W_o Attn(q = W_q LN(x),  k, v = W_k, W_v [LN(text); LN(X_init^i); PN(Y^i)])

* ``text``: the block's text tokens ``[B, L, C]`` (on Wan already embedded to the block width);
* ``X_init^i``: the hidden states of the initial frames at this block, from the same frozen model run on the
  (slightly noised) initial-frame latents with every FCA branch switched off (:class:`InitialFrameStates`);
* ``Y^i [B, T, n, C]``: this block's frame-wise text, made by its own :class:`FrameTextModule` (learnable
  queries, ``n`` per latent frame, with the text tokens -> self-attention -> cross-attention to the first
  frame's features -> feed-forward), pre-normalised by a learned LayerNorm ``PN``;
* the frame-wise identity mask: video tokens of latent frame p see frame p's ``Y^i[:, p]`` only, while every
  token sees the text and the initial-frame states (computed exactly by attending frame by frame);
* ``scale``: one learnable scalar per block, 0.1 at init (the paper; ``init="zero"`` also zeroes ``W_o`` so a
  fresh set is the identity), ``s`` the attach strength.

Image features of the frame-wise text module: the first initial frame's hidden states at the same block (the
tokens of latent frame 0 in ``X_init^i``). They exist for text-to-video Wan (which has no CLIP-vision input),
are the same in training and inference, cost nothing extra (the states are computed anyway), and are already
at the block's width and in the space of the video tokens the branch reads.

Runtime (the attach table's ``conditions``, ``block_parallel`` and ``capture`` points):

* :class:`InitialFrameStates` (``conditions``) receives the initial-frame latents the conditioning carries
  (``fca_frames [B, C, k, H, W]``, already noised, and ``fca_timestep [B, 1]``), runs the frozen model on them
  once (a nested forward) with the branches off and the captures on, and leaves the per-block states in the
  forward's call scope (``adapters/protocol.Scopes``). States are cached by content (initial frames, timestep
  and text) in the run scope, which the binding clears when a sampling run starts and when it ends; outside
  sampling (training) they stay for as long as the same clips come back: the frozen model does not change. The
  cache holds at most ``cache_size`` entries (cond and uncond of a run are two); ``FCAAdapterSet.release()``
  frees them at once.
* :class:`FCABranchHook` (``block_parallel``) and :class:`StateCapture` (``capture``) per block.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import registry
from .adapter_set import BlockAdapterSet, JsonConfig
from .kind import AdapterKind
from .layers import ResidualFeedForward

KIND = "fca"
PARTS = ("branch", "text")
TEXT_MODULES = ("layerwise", "uniform", "none")
INITS = ("scale", "zero")
POSITIONS = ("none", "rope")

# adapter-condition names (the conditioning node and training_conds write them)
FRAMES_COND = "fca_frames"
TIMESTEP_COND = "fca_timestep"
TIMESTEPS = 1000.0  # Wan's flow models: timestep = 1000 sigma


@dataclass
class FCAConfig(JsonConfig):
    """Hyper-parameters of an FCA adapter set (stored as JSON in the file metadata).

    Attributes:
        head_dim: width of one attention head of the branch (Wan: 128, so 12 heads on 1.3B, 40 on 14B).
        scale_init: initial value of the learnable output scale (the paper: 0.1; training fails without it).
        init: ``"scale"`` (the paper: default-initialised out projection, output times ``scale_init``) or
            ``"zero"`` (out projection zero as well: the identity at init).
        frames: latent frames the frame-wise queries are made for (Wan: 21 for 81 frames); other lengths resample
            the query table linearly over frames.
        queries_per_frame: frame-wise text tokens per latent frame (``n``).
        text_width / text_heads / text_layers: width, heads and depth of the frame-wise text module.
        text_module: ``"layerwise"`` (one module per block, the paper's choice), ``"uniform"`` (one module for all
            blocks, fed with the first block's states) or ``"none"`` (no frame-wise text).
        mask: the frame-wise identity mask (False: every video token sees every frame's frame-wise text).
        prenorm: learned pre-normalisation of the frame-wise text (the paper's ablation: 105.4 -> 94.1 FVD).
        initial_frames: latent frames of each training clip given as initial frames (1 or 2).
        noise_step: the small noise of the initial frames in training, as a timestep of 1000 (sigma = step/1000).
        positions: ``"rope"``: the branch's queries (every video token) and its keys of the initial-frame states
            are rotated by the host's own rotary position table (Wan's 3-D RoPE), as the host's self-attention
            rotates them, so a video token can find the initial-frame token at its own place. ``"none"`` (files
            written before this option, and the paper's branch): no positions. Wan keeps positions only inside
            its attention (RoPE), not in the hidden states the branch reads, so without them the branch can match
            places only through content (docs/fca.md: with them the miniature copies its first frame 0.6-2.5 dB
            better after 1,500 steps). Text and frame-wise text keys are never rotated.
    """
    head_dim: int = 128
    scale_init: float = 0.1
    init: str = "scale"
    frames: int = 21
    queries_per_frame: int = 32
    text_width: int = 256
    text_heads: int = 4
    text_layers: int = 1
    text_module: str = "layerwise"
    mask: bool = True
    prenorm: bool = True
    initial_frames: int = 1
    noise_step: int = 1
    positions: str = "none"

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.text_module not in TEXT_MODULES:
            raise ValueError(f"text_module must be one of {TEXT_MODULES}, got {self.text_module!r}")
        if self.head_dim < 1 or self.frames < 1 or self.queries_per_frame < 1 or self.text_layers < 1:
            raise ValueError("head_dim, frames, queries_per_frame and text_layers must be positive")
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width {self.text_width} is not divisible by text_heads {self.text_heads}")
        if self.initial_frames not in (1, 2):
            raise ValueError(f"initial_frames must be 1 or 2, got {self.initial_frames}")
        if not 0 <= self.noise_step < TIMESTEPS:
            raise ValueError(f"noise_step must lie in [0, {int(TIMESTEPS)}), got {self.noise_step}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")

    def heads(self, dim: int) -> int:
        h = max(1, dim // self.head_dim)
        if dim % h:
            raise ValueError(f"block width {dim} is not a multiple of head_dim {self.head_dim}")
        return h


# ----------------------------------------------------------------------------------------------------
# modules


def rotate(x: torch.Tensor, table: torch.Tensor, heads: int) -> torch.Tensor:
    """Rotary positions on ``x [B, N, C]`` split into ``heads``: ``table [1 or B, N, 1, D/2, 2, 2]`` holds one 2 x 2
    rotation per pair of a head's channels and token (the layout of ComfyUI's Wan RoPE table, D the head width)."""
    b, n, c = x.shape
    d = c // heads
    if table.shape[-3] * 2 != d or table.shape[1] != n:
        raise ValueError(f"rotary table {list(table.shape)} does not fit {n} tokens of {heads} heads of width {d} "
                         "(FCA's head_dim must be the host's head width for positions='rope')")
    pairs = x.reshape(b, n, heads, d // 2, 1, 2).to(table.dtype)
    out = table[..., 0] * pairs[..., 0] + table[..., 1] * pairs[..., 1]
    return out.reshape(b, n, c).to(x.dtype)


def attention(q, k, v, heads: int, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Multi-head scaled dot-product attention. ``q [B, N, C]``, ``k, v [B, M, C]``, ``mask`` (True = may
    attend) ``[N, M]`` or ``[B, N, M]`` -> ``[B, N, C]``."""
    b, n, c = q.shape
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, c // heads).transpose(1, 2)  # noqa: E731
    if mask is not None and mask.ndim == 3:
        mask = mask[:, None]
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
    return out.transpose(1, 2).reshape(b, n, c)


class _Attention(nn.Module):
    """Pre-norm residual attention ``x + W_o Attn(W_q LN(x), W_k LN(ctx), W_v LN(ctx))`` (self-attention when
    ``ctx`` is None). ``x [B, N, W]``, ``ctx [B, M, W]``."""

    def __init__(self, width: int, heads: int, self_attention: bool = False):
        super().__init__()
        self.heads = heads
        self.norm, self.norm_ctx = nn.LayerNorm(width), nn.LayerNorm(width)
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        if self_attention:  # keys and values come from ``norm``: norm_ctx stays in the file, untrained
            self.norm_ctx.requires_grad_(False)

    def forward(self, x, ctx=None):
        h = self.norm(x)
        c = h if ctx is None else self.norm_ctx(ctx)
        return x + self.o(attention(self.q(h), self.k(c), self.v(c), self.heads))


class FrameTextModule(nn.Module):
    """Frame-wise text of one block (Q-Former-like): learnable queries ``[frames, n, W]`` are concatenated with the
    projected text tokens; self-attention over both, then the queries cross-attend to the projected image
    features, then a feed-forward, then a projection to the block width.

    ``forward(text [B, L, C], image [B, M, C], frames T)`` -> ``[B, T, n, C]``."""

    def __init__(self, dim: int, config: FCAConfig):
        super().__init__()
        c = config
        w = c.text_width
        self.dim, self.frames, self.n = dim, c.frames, c.queries_per_frame
        self.text_in = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, w))
        self.image_in = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, w))
        self.queries = nn.Parameter(0.02 * torch.randn(c.frames, c.queries_per_frame, w))
        self.layers = nn.ModuleList(nn.ModuleList([_Attention(w, c.text_heads, self_attention=True),
                                                   _Attention(w, c.text_heads),
                                                   ResidualFeedForward(w)]) for _ in range(c.text_layers))
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, dim))

    def frame_queries(self, frames: int) -> torch.Tensor:
        """The query table for ``frames`` latent frames ``[frames, n, W]`` (resampled linearly over frames when
        the video is not as long as the table)."""
        q = self.queries
        if frames == q.shape[0]:
            return q
        if q.shape[0] == 1:
            return q.expand(frames, -1, -1)
        flat = q.permute(1, 2, 0).reshape(1, -1, q.shape[0])
        return F.interpolate(flat, size=frames, mode="linear", align_corners=True).reshape(
            q.shape[1], q.shape[2], frames).permute(2, 0, 1)

    def forward(self, text: torch.Tensor, image: torch.Tensor, frames: int) -> torch.Tensor:
        b = text.shape[0]
        t = self.text_in(text)
        v = self.image_in(image)
        q = self.frame_queries(frames).reshape(1, frames * self.n, -1).expand(b, -1, -1)
        nq = q.shape[1]
        for self_attn, cross_attn, ff in self.layers:
            z = self_attn(torch.cat([q, t], dim=1))
            q, t = z[:, :nq], z[:, nq:]
            q = ff(cross_attn(q, v))
        return self.out(q).reshape(b, frames, self.n, self.dim)


class FCABranch(nn.Module):
    """The parallel attention branch of one block (see the module docstring).

    ``forward(x [B, N, C], text [B, L, C], init [B, M, C], frame_text [B, T, n, C] or None, frames T, pe)`` ->
    ``delta [B, N, C]`` with ``N = T * tokens per frame``. ``pe``: the host's rotary table of the N video tokens
    (``positions="rope"``; the initial frames' M tokens take the first M rows: they are the video's first frames)."""

    def __init__(self, dim: int, config: FCAConfig):
        super().__init__()
        self.dim, self.heads, self.mask = dim, config.heads(dim), bool(config.mask)
        self.rope = config.positions == "rope"
        self.norm_x, self.norm_text, self.norm_init = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm_frames = nn.LayerNorm(dim) if config.prenorm else nn.Identity()
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        if config.init == "zero":
            nn.init.zeros_(self.o.weight)
            nn.init.zeros_(self.o.bias)
        self.scale = nn.Parameter(torch.tensor(float(config.scale_init)))

    def forward(self, x, text, init, frame_text=None, frames: int = 1, frame_chunk: int = 4, pe=None):
        b, n, c = x.shape
        q = self.q(self.norm_x(x))
        shared = torch.cat([self.norm_text(text), self.norm_init(init)], dim=1)
        ks, vs = self.k(shared), self.v(shared)
        if self.rope:
            if pe is None:
                raise ValueError("these FCA adapters use the host's rotary positions (positions='rope'), which this "
                                 "model did not pass to its blocks")
            m = init.shape[1]
            q = rotate(q, pe, self.heads)
            ks = torch.cat([ks[:, :-m], rotate(ks[:, -m:], pe[:, :m], self.heads)], 1) if m else ks
        if frame_text is None:
            out = attention(q, ks, vs, self.heads)
        else:
            y = self.norm_frames(frame_text)                          # [B, T, n, C]
            t, m = y.shape[1], y.shape[2]
            if t != frames or n % t:
                raise ValueError(f"frame-wise text for {t} frames, the video has {frames} latent frames of "
                                 f"{n / max(frames, 1):g} tokens")
            kf, vf = self.k(y), self.v(y)
            if not self.mask:
                out = attention(q, torch.cat([ks, kf.flatten(1, 2)], 1), torch.cat([vs, vf.flatten(1, 2)], 1),
                                self.heads)
            else:  # frame p's queries see [shared ; frame p's tokens]: the identity mask, one frame group at a time
                per = n // t
                qf = q.reshape(b, t, per, c)
                parts = []
                for s in range(0, t, frame_chunk):
                    e = min(t, s + frame_chunk)
                    g = e - s
                    kk = torch.cat([ks[:, None].expand(-1, g, -1, -1), kf[:, s:e]], 2).flatten(0, 1)
                    vv = torch.cat([vs[:, None].expand(-1, g, -1, -1), vf[:, s:e]], 2).flatten(0, 1)
                    parts.append(attention(qf[:, s:e].flatten(0, 1), kk, vv, self.heads).reshape(b, g, per, c))
                out = torch.cat(parts, 1).reshape(b, n, c)
        return self.scale * self.o(out)


class FCABlockAdapters(nn.Module):
    """FCA of one block: the branch, and (layer-wise design) the block's frame-wise text module."""

    def __init__(self, dim: int, config: FCAConfig, parts: Iterable[str] | None = None):
        super().__init__()
        default = ("branch", "text") if config.text_module == "layerwise" else ("branch",)
        parts = tuple(default if parts is None else parts)
        unknown = set(parts) - set(PARTS)
        if unknown or "branch" not in parts:
            raise ValueError(f"FCA block parts {sorted(parts)}: expected 'branch' and optionally 'text'")
        self.dim, self.parts = dim, tuple(p for p in PARTS if p in parts)
        self.branch = FCABranch(dim, config)
        self.text = FrameTextModule(dim, config) if "text" in parts else None


# ----------------------------------------------------------------------------------------------------
# runtime: initial-frame states, captures, branches


def noised_initial_frames(latents: torch.Tensor, noise: torch.Tensor, step: float) -> torch.Tensor:
    """The initial-frame latents with the small noise of timestep ``step`` (of 1000) in flow form,
    ``(1 - s) x + s n`` with ``s = step / 1000``."""
    s = float(step) / TIMESTEPS
    return (1.0 - s) * latents + s * noise.to(latents)


def _checksum(tensors) -> list:
    """A cheap content key: shapes and two weighted sums of every tensor (one device sync)."""
    sums = []
    for t in tensors:
        f = t.detach().float().flatten()
        w = torch.linspace(1.0, 2.0, f.numel(), device=f.device) if f.numel() else f
        sums.append(torch.stack([f.sum(), (f * w).sum()]) if f.numel() else f.new_zeros(2))
    values = torch.cat(sums).tolist() if sums else []
    return [tuple(tuple(t.shape) for t in tensors), tuple(values)]


class _Cache(OrderedDict):
    """The initial-frame states of one run (a dict subclass, so the adapter set can hold it weakly)."""

    __hash__ = object.__hash__  # by identity, for the adapter set's WeakSet


class InitialFrameStates:
    """``conditions`` callable: the initial-frame states of every block, cached in the run scope (see the module
    docstring). It is also the key of its values in the run and call scopes; the branch and capture hooks of the
    same attachment read them there. ``owner.initial_frame_passes`` counts the passes actually run."""

    def __init__(self, owner: "FCAAdapterSet", cache_size: int = 4):
        self.owner, self.cache_size = owner, int(cache_size)

    def __call__(self, conds: dict, x: torch.Tensor, context, site, run) -> None:
        frames = conds.get(FRAMES_COND)
        if frames is None:
            site.call[self] = None
            return
        if frames.ndim != 5 or frames.shape[1] != x.shape[1] or frames.shape[0] != x.shape[0]:
            raise ValueError(
                f"FCA: initial frames of shape {list(frames.shape)} do not fit the video latent {list(x.shape)}; FCA "
                "takes text-to-video Wan latents [B, C, T, H, W] with initial frames encoded by the same VAE")
        if frames.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"FCA: the initial frames are {frames.shape[-1]}x{frames.shape[-2]} latent cells, the video "
                f"{x.shape[-1]}x{x.shape[-2]} (x8 pixels with Wan's VAE): give Initial Frames Conditioning an image "
                "of the video's size (Image Scale to the video's width and height)")
        timestep = conds.get(TIMESTEP_COND)
        timestep = (torch.zeros(x.shape[0]) if timestep is None else timestep.reshape(x.shape[0], -1)[:, 0])
        cache = site.run.get(self)
        if cache is None:
            cache = site.run[self] = _Cache()
            self.owner._caches.add(cache)
        key = repr(_checksum([frames, timestep, context]))
        entry = cache.get(key)
        if entry is None:
            entry = self._compute(frames.to(x), timestep.to(device=x.device, dtype=torch.float32), context, x,
                                  site.grid, run)
            cache[key] = entry
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
        site.call[self] = entry

    def _compute(self, frames, timestep, context, x, grid, run) -> dict:
        if len(grid) == 3 and grid[1] and grid[2]:
            patch = (x.shape[-2] // grid[1], x.shape[-1] // grid[2])
        else:
            patch = (1, 1)
        init_grid = (frames.shape[2], frames.shape[-2] // patch[0], frames.shape[-1] // patch[1])
        collected: dict[str, torch.Tensor] = {}
        with torch.no_grad():  # the nested forward: branches off, captures on
            run(frames, timestep, context, call={self: _InitialPass(collected)})
        self.owner.initial_frame_passes += 1
        missing = [n for n in self.owner.block_names() if n not in collected]
        if missing:
            raise RuntimeError(f"FCA: the initial-frames pass captured no states for {missing[:3]}")
        return {"states": collected, "grid": init_grid, "frame_text": {}}


class _InitialPass:
    """The call-scope value during the initial-frames pass: branches return nothing, captures write here."""

    def __init__(self, collected: dict):
        self.collected = collected


class StateCapture:
    """``capture`` callable of one block: stores the block output during the initial-frames pass."""

    def __init__(self, states: InitialFrameStates, name: str):
        self.states, self.name = states, name

    def __call__(self, hidden: torch.Tensor, site) -> None:
        found = site.call.get(self.states)
        if isinstance(found, _InitialPass):
            found.collected[self.name] = hidden.detach()


class FCABranchHook:
    """``block_parallel`` callable of one block: the branch on the block's input and text, in the adapters' own
    dtype and device; zero during the initial-frames pass."""

    def __init__(self, states: InitialFrameStates, name: str):
        self.states, self.owner, self.name = states, states.owner, name

    def __call__(self, args: dict, site) -> torch.Tensor:
        x_in, context = args["img"], args["txt"]
        entry = site.call.get(self.states)
        if isinstance(entry, _InitialPass):
            return x_in.new_zeros(())
        if entry is None:
            raise ValueError("FCA adapters need the initial frames: add them to both positive and negative with "
                             "Initial Frames Conditioning (FCA)")
        blk = self.owner[self.name]
        p = next(blk.parameters())
        cast = lambda t: t.to(device=p.device, dtype=p.dtype)  # noqa: E731
        frames = int(site.grid[0])
        x, text, init = cast(x_in), cast(context), cast(entry["states"][self.name])
        frame_text = self.owner.frame_text(self.name, text, entry, frames, cast)
        pe = args.get("pe")
        if pe is not None and blk.branch.rope:  # the video tokens' rows (a host may append reference tokens)
            pe = pe[:, : x.shape[1]].to(device=p.device)
        return blk.branch(x, text, init, frame_text, frames, pe=pe).to(device=x_in.device, dtype=x_in.dtype)


class FCAAdapterSet(BlockAdapterSet):
    """FCA's branch (and layer-wise frame-wise text module) per DiT block; the uniform design keeps its one
    frame-wise text module in ``shared["text"]``."""

    KIND = KIND
    config_class = FCAConfig

    def __init__(self, config=None, family: str = "wan21"):
        super().__init__(config, family)
        self.initial_frame_passes = 0
        self._caches = weakref.WeakSet()  # the initial-frame caches of the runs of every attach of this set

    def cached_initial_states(self) -> int:
        """Initial-frame state entries held now, over every model this set is attached to."""
        return sum(len(c) for c in list(self._caches))

    def release(self) -> None:
        """Free the cached initial-frame states now (they are recomputed when needed)."""
        for c in list(self._caches):
            c.clear()

    def make_block(self, dim: int, parts: Iterable[str] | None) -> FCABlockAdapters:
        return FCABlockAdapters(dim, self.config, parts)

    def make_shared(self) -> None:
        if self.config.text_module == "uniform" and "text" not in self.shared and len(self):
            self.shared["text"] = FrameTextModule(self[self.block_names()[0]].dim, self.config)

    # -- frame-wise text ----------------------------------------------------------------------------------
    def frame_text(self, name: str, text: torch.Tensor, entry: dict, frames: int, cast=lambda t: t):
        """Block ``name``'s frame-wise text ``[B, T, n, C]`` (None without a text module). Its image features are
        the first initial frame's states at that block (uniform: at the first block). Cached per run when no
        gradient is needed (it depends only on the text and the initial frames)."""
        if self.config.text_module == "none":
            return None
        uniform = self.config.text_module == "uniform"
        module = self.shared["text"] if uniform else self[name].text
        source = self.block_names()[0] if uniform else name
        key = (source if uniform else name, frames)
        cache = entry.get("frame_text")
        if cache is not None and not torch.is_grad_enabled() and key in cache:
            return cache[key]
        grid = entry["grid"]
        first = cast(entry["states"][source][:, : grid[1] * grid[2]])
        out = module(text, first, frames)
        if cache is not None and not torch.is_grad_enabled():
            cache[key] = out
        return out

    # -- where it attaches ----------------------------------------------------------------------------------
    def attachments(self, architecture: str, options: dict[str, Any] | None = None) -> list[tuple]:
        """The initial-frames pass (``conditions``), then per block the parallel branch and the state capture."""
        if architecture != "wan":
            raise ValueError(f"FCA attaches beside DiT blocks (Wan); this model's architecture is {architecture}")
        states = InitialFrameStates(self)
        out: list[tuple] = [(None, "conditions", states)]
        for name in self.block_names():
            out.append((name, "block_parallel", FCABranchHook(states, name)))
            out.append((name, "capture", StateCapture(states, name)))
        return out


def initial_frame_conds(latents: torch.Tensor, noise_step: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Adapter conditions for the initial-frame latents ``[1, C, k, H, W]`` (in the model's latent space) noised by
    ``noise_step`` of 1000 with noise drawn from ``seed``."""
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(int(seed))).to(latents)
    return {FRAMES_COND: noised_initial_frames(latents.float(), noise.float(), noise_step),
            TIMESTEP_COND: torch.full((latents.shape[0], 1), float(noise_step))}


def parameter_count(dim: int, layers: int, config: FCAConfig | None = None) -> int:
    """Trainable parameters of an FCA set for ``layers`` blocks of width ``dim`` (without building the blocks)."""
    config = config or FCAConfig()
    with torch.device("meta"):
        one = sum(p.numel() for p in FCABlockAdapters(dim, config).parameters())
        shared = sum(p.numel() for p in FrameTextModule(dim, config).parameters()) \
            if config.text_module == "uniform" else 0
    return layers * one + shared


@registry.register
class FCA(AdapterKind):
    name = KIND
    description = ("FCA: a parallel cross-attention branch beside every DiT block (scale 0.1 at init) over the text, "
                   "the initial frames' hidden states from the frozen model and per-layer frame-wise text, for "
                   "text-video prediction on a frozen text-to-video Wan")
    architectures = ("wan",)
    block_kinds = ("dit",)
    adapter_set = FCAAdapterSet
    example = {"queries_per_frame": 32, "text_module": "layerwise"}
    # the FCA paper's fine-tuning table: cosine schedule after a 200-step warm-up, AdamW betas (0.9, 0.95),
    # gradient clipping at 1.0 (warm-up capped at a tenth of the run for short runs)
    recipe = {"lr_schedule": "cosine", "warmup_steps": 200, "warmup_fraction": 0.1, "betas": (0.9, 0.95),
              "grad_clip": 1.0}

    def check_host(self, host) -> None:
        super().check_host(host)
        if getattr(host, "takes_image", False):
            raise ValueError(f"{host.model_config} is an image-to-video model; FCA turns a text-to-video Wan into a "
                             "text-video predictor (use Wan 2.1 T2V 1.3B or 14B)")

    def configure(self, config: dict, host, conditions, frames: int, given) -> dict:
        """The frame-wise query table is made for the training clips' latent frames, unless ``frames`` was set."""
        out = dict(config)
        if "frames" not in given and frames > 0:
            out["frames"] = int(frames)
        k = int(out.get("initial_frames", FCAConfig.initial_frames))
        if frames and frames <= k:
            raise ValueError(f"clips of {frames} latent frame(s) leave nothing to predict after {k} initial frame(s); "
                             "use longer clips (Wan: 5 pixel frames or more per clip)")
        return out

    def training_conds(self, adapters, x0: torch.Tensor, clip_index) -> dict[str, torch.Tensor]:
        """The initial frames of training clips ``x0 [B, C, T, H, W]`` (latent frames ``0..initial_frames-1``),
        noised by ``noise_step`` with noise fixed per clip (``clip_index [B]``), as adapter conditions."""
        k = adapters.config.initial_frames
        if x0.ndim != 5 or x0.shape[2] <= k:
            raise ValueError(f"FCA trains on clips longer than its {k} initial latent frame(s), got {list(x0.shape)}")
        first = x0[:, :, :k]
        idx = torch.as_tensor(clip_index).reshape(-1).tolist() if clip_index is not None else [0] * x0.shape[0]
        noise = torch.stack([torch.randn(first.shape[1:], generator=torch.Generator().manual_seed(1000 + int(i)))
                             for i in idx]).to(first)
        step = float(adapters.config.noise_step)
        return {FRAMES_COND: noised_initial_frames(first, noise, step),
                TIMESTEP_COND: torch.full((x0.shape[0], 1), step, device=x0.device)}
