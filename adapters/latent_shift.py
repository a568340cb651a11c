"""Latent-shift attention (SimDA) as pure tensor functions.

SimDA replaces the per-frame spatial self-attention of an image model by an attention whose queries are
the tokens of frame ``t`` and whose keys/values are two token "frames" stacked along the sequence axis:

* the *shifted* frame ``t - 1`` and the *shifted* frame ``t``, where "shifted frame ``u``" takes, at each
  spatial position ``(h, w)``, the token of frame ``u - s(h mod 4, w mod 4)``. ``s`` is the fixed 4x4
  table :data:`SIMDA_SHIFT_TABLE`. A position whose source frame would be negative keeps the token of
  frame ``u`` itself, and ``t - 1`` is clamped to ``0``.

Each query therefore sees ``2N`` keys instead of ``N`` (cost ``O(2 L N^2)`` for ``L`` frames of ``N``
tokens) rather than the ``L N`` keys of full spatio-temporal attention (``O(L^2 N^2)``).

For frame 0 both halves are frame 0's own tokens. Attention over duplicated keys ``[a; a]`` equals
attention over ``a`` (every softmax weight is halved and every value appears twice), so frame 0 gets
exactly the original image-model self-attention.

Token layout used throughout: ``[B*F, N, C]`` with the frames of one video contiguous (batch index
``video * F + frame``) and ``N = height * width`` tokens in row-major order (index ``h * width + w``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# Rows: h mod 4, columns: w mod 4. Entry = how many frames back the token at that position is taken from.
SIMDA_SHIFT_TABLE: tuple[tuple[int, ...], ...] = (
    (4, 3, 2, 1),
    (3, 2, 1, 0),
    (2, 1, 0, 0),
    (1, 2, 3, 4),
)

MODES = ("simda", "previous_frame")


def shift_table(device: torch.device | str | None = None) -> torch.Tensor:
    """The SimDA shift table as a tensor.

    Returns:
        ``[4, 4]`` int64, entry ``[h mod 4, w mod 4]`` = frame offset ``s``.
    """
    return torch.tensor(SIMDA_SHIFT_TABLE, dtype=torch.long, device=device)


def shift_grid(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Per-position frame offsets for a ``height x width`` token grid (the table tiled over the grid).

    Returns:
        ``[height, width]`` int64 with ``out[h, w] = SIMDA_SHIFT_TABLE[h % 4][w % 4]``.
    """
    if height < 1 or width < 1:
        raise ValueError(f"token grid must be at least 1x1, got {height}x{width}")
    table = shift_table(device)
    rows = torch.arange(height, device=device) % 4
    cols = torch.arange(width, device=device) % 4
    return table[rows[:, None], cols[None, :]]


def _shifted_source(frame: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Source frame of each position of "shifted frame ``frame``".

    Args:
        frame: ``[F, 1]`` int64, the frame being shifted.
        shifts: ``[1, N]`` int64 offsets.
    Returns:
        ``[F, N]`` int64: ``frame - shift`` where that is a valid frame, else ``frame``.
    """
    src = frame - shifts
    return torch.where(src >= 0, src, frame.expand_as(src))


def kv_source_frames(frames: int, height: int, width: int, mode: str) -> torch.Tensor:
    """Which frame every key/value token comes from, per query frame.

    Returns:
        ``[frames, 2N]`` int64 (``N = height * width``): entry ``[t, j]`` is the frame index (within the
        same video) of key/value token ``j`` used by query frame ``t``. Key/value token ``j`` sits at
        spatial position ``j mod N``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown latent-shift mode {mode!r}; expected one of {MODES}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    n = height * width
    t = torch.arange(frames)[:, None]                     # [F, 1]
    prev = (t - 1).clamp(min=0)                           # [F, 1]
    if mode == "simda":
        shifts = shift_grid(height, width).reshape(1, n)  # [1, N]
        first = _shifted_source(prev, shifts)
        second = _shifted_source(t, shifts)
    else:  # previous_frame
        first = t.expand(frames, n)
        second = prev.expand(frames, n)
    return torch.cat([first, second], dim=1)


@functools.lru_cache(maxsize=64)
def _flat_index(frames: int, height: int, width: int, mode: str) -> torch.Tensor:
    """Gather index into a video's flattened ``[F*N]`` token axis.

    Returns:
        ``[F * 2N]`` int64 (CPU), ordered query frame major, key/value token minor.
    """
    n = height * width
    # Cached across calls: build it as a normal tensor even when the first call happens under
    # torch.inference_mode(), or later training (autograd) could not use it.
    with torch.inference_mode(False):
        src = kv_source_frames(frames, height, width, mode)   # [F, 2N]
        pos = torch.arange(n).repeat(2)[None, :]              # [1, 2N]
        return (src * n + pos).reshape(-1)


def _check_layout(tokens: torch.Tensor, frames: int, height: int, width: int) -> int:
    """Validate ``[B*F, N, C]`` against ``frames``/``height``/``width``; returns the number of videos B."""
    if tokens.dim() != 3:
        raise ValueError(f"expected tokens of shape [B*F, N, C], got {tuple(tokens.shape)}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    bf, n, _ = tokens.shape
    if n != height * width:
        raise ValueError(f"token count {n} does not match the grid {height}x{width} = {height * width}")
    if bf % frames != 0:
        raise ValueError(
            f"batch of {bf} frame tokens is not a whole number of videos of {frames} frames "
            f"({bf} % {frames} = {bf % frames})")
    return bf // frames


def latent_shift_kv(tokens: torch.Tensor, frames: int, height: int, width: int,
                    mode: str = "simda") -> torch.Tensor:
    """Build the key/value tokens of latent-shift attention with a single gather.

    Args:
        tokens: ``[B*F, N, C]``, frames contiguous per video, ``N = height * width``.
        frames: ``F``, frames per video.
        height, width: token grid, row-major in ``N``.
        mode: ``"simda"``: ``[shifted frame t-1 ; shifted frame t]``;
            ``"previous_frame"``: ``[frame t ; frame t-1]`` (``t-1`` clamped to 0 in both).
    Returns:
        ``[B*F, 2N, C]`` key/value tokens for every query frame (same dtype/device as ``tokens``).
    Raises:
        ValueError: unknown mode, wrong token count, or ``B*F`` not divisible by ``frames``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown latent-shift mode {mode!r}; expected one of {MODES}")
    videos = _check_layout(tokens, frames, height, width)
    n, c = tokens.shape[1], tokens.shape[2]
    index = _flat_index(frames, height, width, mode).to(tokens.device)
    flat = tokens.reshape(videos, frames * n, c)           # [B, F*N, C]
    out = flat.index_select(1, index)                      # [B, F*2N, C]
    return out.reshape(videos * frames, 2 * n, c)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, L, C]`` -> ``[B, heads, L, C/heads]``."""
    b, l, c = x.shape
    if c % heads != 0:
        raise ValueError(f"channels {c} not divisible by heads {heads}")
    return x.reshape(b, l, heads, c // heads).transpose(1, 2)


def latent_shift_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames: int, height: int,
                           width: int, mode: str = "simda", heads: int = 1) -> torch.Tensor:
    """Reference latent-shift attention on already projected queries/keys/values.

    Queries are not shifted; keys and values go through :func:`latent_shift_kv`. Scaled dot-product
    attention (``softmax(q k^T / sqrt(d)) v`` per head).

    Args:
        q, k, v: ``[B*F, N, C]`` each (``C`` divisible by ``heads``).
        frames, height, width, mode: as in :func:`latent_shift_kv`.
        heads: number of attention heads.
    Returns:
        ``[B*F, N, C]`` attention output (heads merged, no output projection).
    """
    k2 = latent_shift_kv(k, frames, height, width, mode)  # [B*F, 2N, C]
    v2 = latent_shift_kv(v, frames, height, width, mode)
    out = F.scaled_dot_product_attention(_split_heads(q, heads), _split_heads(k2, heads),
                                         _split_heads(v2, heads))  # [B*F, heads, N, C/heads]
    bf, _, n, d = out.shape
    return out.transpose(1, 2).reshape(bf, n, heads * d)
