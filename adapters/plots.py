"""The loss curve Train Adapters and Train Domain Model show: a labelled line plot drawn with Pillow."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 x 10^k steps)."""
    import math

    span = max(hi - lo, 1e-12)
    raw = span / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def loss_curve_image(losses: Iterable[float], width: int = 512, height: int = 256, smoothing: float = 0.9,
                     log_scale: bool = False) -> torch.Tensor:
    """A labelled line plot of ``losses`` as a ComfyUI IMAGE ``[1, height, width, 3]`` in 0..1: the loss per
    step (light blue) and its exponential moving average (``smoothing``, dark blue) over a grid, with numbered
    axes (step; loss, or log10 of it with ``log_scale``) and the final average in the title. Drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    vals = np.asarray([float(v) for v in losses], dtype=np.float64)
    steps = np.arange(1, vals.size + 1)
    keep = np.isfinite(vals)
    vals, steps = vals[keep], steps[keep]
    if log_scale and vals.size:
        vals = np.log10(np.maximum(vals, 1e-12))
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 54, 12, 22, 30
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    ema = np.empty_like(vals)
    for i, v in enumerate(vals):
        ema[i] = v if i == 0 else smoothing * ema[i - 1] + (1 - smoothing) * v
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    s_lo, s_hi = (1.0, float(max(steps.max(), 2))) if vals.size else (1.0, 2.0)

    def px(step):
        return x0 + (x1 - x0) * (step - s_lo) / (s_hi - s_lo)

    def py(v):
        return y1 - (y1 - y0) * (v - lo) / (hi - lo)

    for t in _ticks(lo, hi):
        y = py(t)
        draw.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        draw.text((4, y - 6), _fmt(t), fill=(60, 60, 60), font=font)
    for t in _ticks(s_lo, s_hi):
        x = px(t)
        draw.line([(x, y0), (x, y1)], fill=(225, 225, 225))
        draw.text((x - 8, y1 + 4), f"{int(round(t))}", fill=(60, 60, 60), font=font)
    draw.line([(x0, y1), (x1, y1)], fill=(80, 80, 80))
    draw.line([(x0, y0), (x0, y1)], fill=(80, 80, 80))
    draw.text((x1 - 24, height - 13), "step", fill=(60, 60, 60), font=font)
    title = "log10 loss" if log_scale else "loss"
    if vals.size:
        title += f" (last average {_fmt(float(ema[-1]))}, {int(steps[-1])} steps)"
        pts = [(px(s), py(v)) for s, v in zip(steps, vals)]
        avg = [(px(s), py(v)) for s, v in zip(steps, ema)]
        if len(pts) > 1:
            draw.line(pts, fill=(158, 194, 242), width=1)
            draw.line(avg, fill=(13, 51, 153), width=2)
        else:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=(13, 51, 153))
    draw.text((x0, 5), title, fill=(30, 30, 30), font=font)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]
