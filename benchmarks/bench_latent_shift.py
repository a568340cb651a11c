"""Cost of SimDA latent-shift attention and of the SimDA adapters, on the CPU.

    python benchmarks/bench_latent_shift.py [--repeats 5]

Prints two markdown tables:

1. Attention for one video of L frames on a 32x32 token grid (N = 1024) with C = 320 channels (8 heads):
   per-frame spatial attention (keys/values = own frame, N), latent-shift attention (2N) and full
   spatio-temporal attention (L*N). Totals scale as O(L N^2), O(2 L N^2) and O(L^2 N^2), so the expected
   ratios to spatial-only are 2 and L. All three run in the same process, in one run.
2. Parameters and training-step time (forward + backward) of a stand-in transformer block with and without
   the SimDA attention adapter, FFN adapter and temporal adapter, at SD1.5 widths (320/640/1280) and Wan
   widths (1536, 5120).

Timings are the best of a few interleaved runs. By default everything runs on one thread and is timed in
process CPU time, which other load on the machine barely disturbs; ``--threads N`` (N > 1) uses N threads
and wall-clock time instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from adapters.latent_shift import latent_shift_attention, latent_shift_kv  # noqa: E402
from adapters.simda import SimDABlockAdapters, SimDAConfig  # noqa: E402


def _timed(fns: dict[str, Callable[[], object]], repeats: int, slow_s: float = 1.0,
           long_s: float = 3.0, clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Best time in seconds (wall time by default, or ``clock``) of each callable in ``fns`` (name -> callable).

    Each callable gets one warm-up call; then ``repeats`` rounds run the callables interleaved, so that
    a slow-down of the machine affects all of them alike. To keep the run short, a callable whose warm-up
    took over ``slow_s`` is timed once more, and one whose warm-up took over ``long_s`` (where warm-up
    effects are negligible) is not run again: its warm-up time is the measurement.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    rounds: dict[str, int] = {}
    for name, fn in fns.items():
        t0 = clock()
        fn()
        warm = clock() - t0
        if warm > long_s:
            times[name].append(warm)
            rounds[name] = 0
        else:
            rounds[name] = 1 if warm > slow_s else repeats
    for r in range(repeats):
        for name, fn in fns.items():
            if r < rounds[name]:
                t0 = clock()
                fn()
                times[name].append(clock() - t0)
    return {name: min(t) for name, t in times.items()}


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, L, C]`` -> ``[B, heads, L, C/heads]``."""
    b, l, c = x.shape
    return x.reshape(b, l, heads, c // heads).transpose(1, 2)


# ----------------------------------------------------------------------------------------------------------
# Table 1: attention
# ----------------------------------------------------------------------------------------------------------

def attention_table(repeats: int, clock: Callable[[], float]) -> None:
    height = width = 32
    n, c, heads = height * width, 320, 8
    frame_counts = (4, 8, 16, 24)
    print(f"### Attention cost: one video, {height}x{width} tokens (N={n}), C={c}, {heads} heads, fp32, "
          f"{_clock_note()}\n")
    print("Time: torch.nn.functional.scaled_dot_product_attention on already projected q/k/v. "
          "Latent-shift time includes building K/V (one gather each for K and V, also shown alone).\n")
    print("Memory: torch exposes no CPU allocator statistics, so memory is computed analytically as the bytes "
          "of the fp32 attention-score matrix (frames x heads x queries x keys x 4) that a non-fused "
          "implementation materialises; the fused CPU kernel timed here works in blocks and never holds it "
          "whole. Latent shift also materialises K/V of 2N tokens per frame (2x the K/V bytes).\n")
    print("| L | spatial ms | latent-shift ms (gather ms) | full ms | latent-shift / spatial time "
          "(expected 2) | full / spatial time (expected L) | score-matrix MiB spatial / latent-shift / full | "
          "memory ratios (expected 2, L) |")
    print("|---|---|---|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for frames in frame_counts:
            q, k, v = (torch.randn(frames, n, c, generator=g) for _ in range(3))          # [L, N, C]
            qh, kh, vh = (_heads(x, heads) for x in (q, k, v))                           # [L, h, N, d]
            qf, kf, vf = (_heads(x.reshape(1, frames * n, c), heads) for x in (q, k, v))  # [1, h, L*N, d]
            t = _timed({
                "spatial": lambda: F.scaled_dot_product_attention(qh, kh, vh),
                "shift": lambda: latent_shift_attention(q, k, v, frames, height, width, "simda", heads),
                "gather": lambda: (latent_shift_kv(k, frames, height, width), latent_shift_kv(v, frames, height,
                                                                                              width)),
                "full": lambda: F.scaled_dot_product_attention(qf, kf, vf),
            }, repeats, clock=clock)
            mib = 4 / 2**20
            m_spatial = frames * heads * n * n * mib
            m_shift = frames * heads * n * 2 * n * mib
            m_full = heads * (frames * n) ** 2 * mib
            print(f"| {frames} | {t['spatial'] * 1e3:.1f} | {t['shift'] * 1e3:.1f} ({t['gather'] * 1e3:.1f}) | "
                  f"{t['full'] * 1e3:.1f} | {t['shift'] / t['spatial']:.2f} | "
                  f"{t['full'] / t['spatial']:.2f} (L={frames}) | "
                  f"{m_spatial:.0f} / {m_shift:.0f} / {m_full:.0f} | "
                  f"{m_shift / m_spatial:.0f}, {m_full / m_spatial:.0f} |", flush=True)
    print()


# ----------------------------------------------------------------------------------------------------------
# Table 2: adapter overhead on a stand-in transformer block
# ----------------------------------------------------------------------------------------------------------

class StandInBlock(nn.Module):
    """Pre-norm transformer block on per-frame tokens: self-attention, cross-attention, GELU FFN of width 4C.

    With ``adapters`` the SimDA wiring is used::

        h = h + attention_adapter(attn1(norm1(h)))
        h = h + attn2(norm2(h), context)
        h = ff(norm3(h)) + h + ffn_adapter(h)
        h = temporal_adapter(h)

    The text context is projected once per video and shared by its frames.
    """

    def __init__(self, dim: int, context_dim: int, heads: int, adapters: SimDABlockAdapters | None = None):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q1, self.k1, self.v1, self.o1 = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.q2 = nn.Linear(dim, dim, bias=False)
        self.k2 = nn.Linear(context_dim, dim, bias=False)
        self.v2 = nn.Linear(context_dim, dim, bias=False)
        self.o2 = nn.Linear(dim, dim, bias=False)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.adapters = adapters

    def _merge(self, out: torch.Tensor) -> torch.Tensor:
        b, h, l, d = out.shape
        return out.transpose(1, 2).reshape(b, l, h * d)

    def forward(self, h: torch.Tensor, context: torch.Tensor, frames: int, height: int,
                width: int) -> torch.Tensor:
        """``h`` ``[B*F, N, C]``, ``context`` ``[B, T, context_dim]`` -> ``[B*F, N, C]``."""
        a = self.adapters
        x = self.norm1(h)
        attn = self.o1(self._merge(F.scaled_dot_product_attention(
            _heads(self.q1(x), self.heads), _heads(self.k1(x), self.heads), _heads(self.v1(x), self.heads))))
        h = h + (a.attention(attn) if a is not None else attn)

        b, t, _ = context.shape

        def per_frame(y):  # [B, T, C] -> [B*F, heads, T, d] without copying
            y = _heads(y, self.heads)
            return y[:, None].expand(b, frames, *y.shape[1:]).reshape(b * frames, *y.shape[1:])

        x = self.norm2(h)
        h = h + self.o2(self._merge(F.scaled_dot_product_attention(
            _heads(self.q2(x), self.heads), per_frame(self.k2(context)), per_frame(self.v2(context)))))

        ff = self.ff(self.norm3(h))
        if a is None:
            return ff + h
        h = ff + h + a.ffn(h)
        return a.temporal(h, frames, height, width)


def _train_step(block: StandInBlock, x: torch.Tensor, context: torch.Tensor, frames: int, height: int,
                width: int) -> Callable[[], None]:
    """A callable running forward + backward (input gradient and any trainable parameters)."""
    def step():
        h = x.detach().requires_grad_()
        block(h, context, frames, height, width).square().mean().backward()
        block.zero_grad(set_to_none=True)
    return step


def adapter_table(repeats: int, clock: Callable[[], float]) -> None:
    # (label, width, heads, context dim, token grid per frame). Grids are reduced from real sizes
    # (SimDA's 256x256 stage has 32x32 / 16x16 / 8x8 at these SD widths) to keep the CPU run short;
    # the 5120-wide block alone has 0.4 B parameters.
    frames, ctx_len = 4, 77
    settings = [
        ("SD1.5 level 1", 320, 8, 768, 16),
        ("SD1.5 level 2", 640, 8, 768, 8),
        ("SD1.5 level 3 / mid", 1280, 8, 768, 4),
        ("Wan 1.3B width", 1536, 12, 1536, 4),
        ("Wan 14B width", 5120, 40, 5120, 2),
    ]
    config = SimDAConfig()
    print(f"### SimDA adapters on a stand-in transformer block (self-attn, cross-attn, 4C GELU FFN), "
          f"{frames} frames, {ctx_len} context tokens, fp32, {_clock_note()}\n")
    print("Step = forward + backward of one block with frozen block weights (gradient w.r.t. the input, as for "
          "an inner layer) plus, in the adapted block, the adapter weight gradients. Token grids are reduced "
          "from real sizes (N per frame below) to keep the CPU run short. Per-frame self-attention in both "
          "blocks; the temporal adapter sits after the block here (SimDA puts it in the U-Net's conv blocks).\n")
    print("| block | C | N per frame | block params | adapter params (attn + FFN + temporal) | params ratio | "
          "plain step ms | adapted step ms | step-time overhead |")
    print("|---|---|---|---|---|---|---|---|---|")
    torch.manual_seed(0)
    for label, dim, heads, ctx_dim, grid in settings:
        plain = StandInBlock(dim, ctx_dim, heads).requires_grad_(False)
        adapters = SimDABlockAdapters(dim, config)
        adapted = StandInBlock(dim, ctx_dim, heads, adapters)
        adapted.load_state_dict(plain.state_dict(), strict=False)
        adapted.requires_grad_(False)
        adapters.requires_grad_(True)
        n_block = sum(p.numel() for p in plain.parameters())
        n_adapt = sum(p.numel() for p in adapters.parameters())
        x = torch.randn(frames, grid * grid, dim)
        context = torch.randn(1, ctx_len, ctx_dim)
        t = _timed({"plain": _train_step(plain, x, context, frames, grid, grid),
                    "adapted": _train_step(adapted, x, context, frames, grid, grid)},
                   repeats + 2, slow_s=2.0, long_s=4.0, clock=clock)
        print(f"| {label} | {dim} | {grid * grid} ({grid}x{grid}) | {n_block / 1e6:.2f} M | "
              f"{n_adapt / 1e6:.2f} M | {100 * n_adapt / n_block:.1f} % | {t['plain'] * 1e3:.1f} | "
              f"{t['adapted'] * 1e3:.1f} | {100 * (t['adapted'] / t['plain'] - 1):+.1f} % |", flush=True)
        del plain, adapted, adapters
    print()


def _clock_note() -> str:
    threads = torch.get_num_threads()
    return "1 CPU thread, process CPU time" if threads == 1 else f"{threads} CPU threads, wall time"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per measurement (best reported)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; 1 (default) is timed in process CPU time, more in wall time")
    args = parser.parse_args()
    torch.set_num_threads(max(1, args.threads))
    clock = time.process_time if args.threads <= 1 else time.perf_counter
    t0 = time.perf_counter()
    attention_table(args.repeats, clock)
    adapter_table(args.repeats, clock)
    print(f"Total benchmark time: {time.perf_counter() - t0:.0f} s (torch {torch.__version__}).")


if __name__ == "__main__":
    main()
