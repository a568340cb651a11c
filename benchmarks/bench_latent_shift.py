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

3. Temporal consistency: a tiny frame-wise (image) denoiser trained on the frames of synthetic domain clips,
   sampled with per-frame attention and with latent-shift attention (training-free), scored by the mean
   cosine similarity of consecutive frames' thumbnail features (``--only-consistency`` prints only this).

Timings are the best of a few interleaved runs. By default everything runs on one thread and is timed in
process CPU time, which other load on the machine barely disturbs; ``--threads N`` (N > 1) uses N threads
and wall-clock time instead.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

import _root  # noqa: E402,F401  (the repository root on sys.path)

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



# ----------------------------------------------------------------------------------------------------------
# Table 3: temporal consistency of a frame-wise model with and without latent-shift attention
# ----------------------------------------------------------------------------------------------------------

class FrameDenoiser(nn.Module):
    """A tiny frame-wise (image) eps-denoiser on ``[B*F, C, H, W]`` latents: 1x1 patch tokens, learned
    positions, noise-level embedding, pre-norm transformer blocks. Self-attention keys/values are the
    frame's own tokens, or latent-shift tokens (``shift_mode``) at sampling time, exactly what the
    ComfyUI patch does to SD's spatial self-attention."""

    def __init__(self, channels: int = 4, dim: int = 64, depth: int = 2, heads: int = 4, grid: int = 8):
        super().__init__()
        self.heads = heads
        self.inp = nn.Linear(channels, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(1, grid * grid, dim))
        self.sig = nn.Sequential(nn.Linear(16, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            self.blocks.append(nn.ModuleDict({
                "n1": nn.LayerNorm(dim), "qkv": nn.Linear(dim, 3 * dim), "o": nn.Linear(dim, dim),
                "n2": nn.LayerNorm(dim), "ff": nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))}))
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, channels))
        self.shift_mode: str | None = None
        self.frames = 1

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, context=None, **_) -> torch.Tensor:
        b, c, h, w = x.shape
        s = sigma.reshape(-1, 1, 1, 1).to(x)
        xin = x / torch.sqrt(1.0 + s * s)
        freqs = torch.exp(torch.linspace(0.0, 5.0, 8, device=x.device))
        ls = torch.log(sigma.to(x)).reshape(-1, 1) * freqs
        emb = self.sig(torch.cat([ls.sin(), ls.cos()], dim=1))[:, None]
        t = self.inp(xin.flatten(2).transpose(1, 2)) + self.pos + emb          # [B*F, N, dim]
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["n1"](t)).chunk(3, dim=-1)
            if self.shift_mode:
                k = latent_shift_kv(k, self.frames, h, w, self.shift_mode)
                v = latent_shift_kv(v, self.frames, h, w, self.shift_mode)
            a = F.scaled_dot_product_attention(_heads(q, self.heads), _heads(k, self.heads), _heads(v, self.heads))
            t = t + blk["o"](a.transpose(1, 2).flatten(2))
            t = t + blk["ff"](blk["n2"](t))
        return self.out(t).transpose(1, 2).reshape(b, c, h, w)


def frame_features(video: torch.Tensor, thumb: int = 8) -> torch.Tensor:
    """``[N, 3, T, H, W]`` pixels -> ``[N, T, 3*thumb*thumb]``: per-frame RGB thumbnails, mean-centred."""
    n, _, t, _, _ = video.shape
    frames = video.permute(0, 2, 1, 3, 4).flatten(0, 1)
    f = F.adaptive_avg_pool2d(frames, thumb).flatten(1)
    f = f - f.mean(dim=1, keepdim=True)
    return f.reshape(n, t, -1)


def consistency(video: torch.Tensor) -> tuple[float, float, float]:
    """(mean cosine similarity of consecutive frames' features, the same for frames of different videos,
    mean absolute pixel change between consecutive frames)."""
    f = F.normalize(frame_features(video), dim=-1)
    adjacent = float((f[:, 1:] * f[:, :-1]).sum(-1).mean())
    other = float((f[:, 1:] * f.roll(1, dims=0)[:, :-1]).sum(-1).mean())
    change = float((video[:, :, 1:] - video[:, :, :-1]).abs().mean())
    return adjacent, other, change


def consistency_table(train_steps: int, videos: int, sample_steps: int) -> None:
    from adapters.synthetic_video import ToyLatentCodec, make_clips
    from adapters.training import TrainConfig, Trainer, discrete_sigmas

    frames, size = 8, 32
    data = make_clips(96, "domain", seed=0, frames=frames, size=size)
    codec = ToyLatentCodec(4, pool=4)
    lat = codec.encode(data.video)                                       # [N, 4, T, 8, 8]
    frames_lat = lat.permute(0, 2, 1, 3, 4).flatten(0, 1)                # every frame an image
    torch.manual_seed(0)
    net = FrameDenoiser()
    cfg = TrainConfig(steps=train_steps, lr=2e-3, batch_size=64, seed=0, cond_dropout=0.0,
                      sigma_sampling="eps_discrete", warmup_steps=20)
    t0 = time.perf_counter()
    res = Trainer(cfg).run(net, net, lambda step, g, bs: frames_lat[torch.randint(0, len(frames_lat), (bs,),
                                                                                 generator=g)], "eps")
    train_s = time.perf_counter() - t0
    sig_all = discrete_sigmas(cfg).float()
    idx = torch.linspace(len(sig_all) - 1, 0, sample_steps).round().long()
    sigmas = torch.cat([sig_all[idx], torch.zeros(1)])

    def sample(mode: str | None) -> torch.Tensor:
        net.shift_mode, net.frames = mode, frames
        g = torch.Generator().manual_seed(123)
        x = torch.randn(videos * frames, 4, 8, 8, generator=g) * sigmas[0]   # independent noise per frame
        with torch.no_grad():
            for i in range(sample_steps):
                s, s_next = sigmas[i], sigmas[i + 1]
                eps = net(x, s.expand(x.shape[0]))
                x = x + (s_next - s) * eps                                # DDIM (Euler in sigma space)
        video = x.reshape(videos, frames, 4, 8, 8).permute(0, 2, 1, 3, 4)
        return codec.decode(video).clamp(0, 1)

    recent = res.losses[-50:]
    print("### Temporal consistency: frame-wise model sampled with and without latent-shift attention")
    print(f"Tiny frame-wise eps-denoiser ({sum(p.numel() for p in net.parameters()) / 1e3:.0f} k parameters, "
          f"2 blocks, 8x8 latent tokens) trained as an IMAGE model on the frames of 96 synthetic 'domain' clips "
          f"(adapters/synthetic_video.py, toy 4-channel codec), {train_steps} steps in {train_s:.0f} s, final loss "
          f"{sum(recent) / len(recent):.3f}. {videos} videos x {frames} frames, independent noise per frame, "
          f"deterministic DDIM {sample_steps} steps, same seed for every row; latent shift is applied only at "
          "sampling (training-free).")
    print("Features: mean-centred 8x8 RGB thumbnails of the decoded frames (layout and palette, which frame "
          "flicker changes and small motion does not; no pretrained network is available offline). "
          "'adjacent' = mean cosine similarity of consecutive frames of a video, 'other video' = of frame t+1 "
          "with frame t of another video (chance level); pixel change = mean |frame t+1 - frame t|.")
    print()
    print("| sampling | adjacent-frame similarity | other-video similarity | pixel change |")
    print("|---|---|---|---|")
    rows = [("training clips (reference)", codec.decode(lat[:videos]).clamp(0, 1)),
            ("per-frame attention (no shift)", sample(None)),
            ("latent shift, previous_frame", sample("previous_frame")),
            ("latent shift, simda", sample("simda"))]
    for label, video in rows:
        a, o, c = consistency(video)
        print(f"| {label} | {a:.3f} | {o:.3f} | {c:.3f} |")
    print()

def _clock_note() -> str:
    threads = torch.get_num_threads()
    return "1 CPU thread, process CPU time" if threads == 1 else f"{threads} CPU threads, wall time"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per measurement (best reported)")
    parser.add_argument("--consistency-steps", type=int, default=600,
                        help="training steps of the frame-wise model of the temporal-consistency table (0: skip)")
    parser.add_argument("--only-consistency", action="store_true", help="print only the temporal-consistency table")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; 1 (default) is timed in process CPU time, more in wall time")
    args = parser.parse_args()
    torch.set_num_threads(max(1, args.threads))
    clock = time.process_time if args.threads <= 1 else time.perf_counter
    t0 = time.perf_counter()
    if not args.only_consistency:
        attention_table(args.repeats, clock)
        adapter_table(args.repeats, clock)
    if args.consistency_steps > 0:
        consistency_table(args.consistency_steps, videos=16, sample_steps=25)
    print(f"Total benchmark time: {time.perf_counter() - t0:.0f} s (torch {torch.__version__}).")


if __name__ == "__main__":
    main()
