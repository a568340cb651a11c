"""Prior-strength schedules and the map between noise level (sigma) and sampling percent.

ComfyUI expresses "when" in a sampling run as a *sampling percent* (0 = the first, noisiest step,
1 = the end), converted to a noise level by each model's ``percent_to_sigma``. A schedule here is a
function of that percent, so it means the same thing for every model family and scheduler.

Host-free: the percent-to-sigma function is passed in as a plain callable.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Callable

SCHEDULE_KINDS = ("constant", "linear", "cosine", "piecewise")


@dataclass(frozen=True)
class StrengthSchedule:
    """A multiplier m(p) >= 0 of the prior strength, as a function of sampling percent p in [0, 1].

    kinds:
      * ``constant``: m = start_value everywhere.
      * ``linear`` / ``cosine``: start_value before start_percent, end_value after end_percent, and a
        linear or half-cosine ramp in between.
      * ``piecewise``: ``points`` = ((p0, m0), (p1, m1), ...) sorted by p; m is the value of the last
        point whose percent is <= p (m0 before the first point).
    """

    kind: str = "constant"
    start_value: float = 1.0
    end_value: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    points: tuple[tuple[float, float], ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind '{self.kind}'; use one of {', '.join(SCHEDULE_KINDS)}")
        if self.kind in ("linear", "cosine") and not self.start_percent < self.end_percent:
            raise ValueError(
                f"a {self.kind} schedule needs start_percent < end_percent "
                f"(got {self.start_percent} and {self.end_percent})")
        if self.kind == "piecewise":
            if not self.points:
                raise ValueError("a piecewise schedule needs at least one 'percent:value' point")
            ps = [p for p, _ in self.points]
            if ps != sorted(ps):
                raise ValueError(f"piecewise points must be sorted by percent, got {ps}")
        values = [self.start_value, self.end_value] + [v for _, v in self.points]
        if any(v < 0 or not math.isfinite(v) for v in values):
            raise ValueError(f"schedule values must be finite and >= 0, got {values}")

    def __call__(self, percent: float) -> float:
        p = min(max(float(percent), 0.0), 1.0)
        if self.kind == "constant":
            return self.start_value
        if self.kind == "piecewise":
            i = bisect.bisect_right([q for q, _ in self.points], p) - 1
            return self.points[max(i, 0)][1]
        if p <= self.start_percent:
            return self.start_value
        if p >= self.end_percent:
            return self.end_value
        u = (p - self.start_percent) / (self.end_percent - self.start_percent)
        if self.kind == "cosine":
            u = 0.5 - 0.5 * math.cos(math.pi * u)
        return self.start_value + (self.end_value - self.start_value) * u


CONSTANT_ONE = StrengthSchedule()


def parse_points(text: str) -> tuple[tuple[float, float], ...]:
    """Parse ``"0.0:1.0, 0.5:0.5, 0.8:0"`` (percent:value pairs, commas or new lines) into sorted points."""
    points = []
    for chunk in text.replace("\n", ",").split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        if ":" not in chunk:
            raise ValueError(f"'{chunk}' is not a 'percent:value' pair (example: 0.0:1.0, 0.5:0.5)")
        p, v = chunk.split(":", 1)
        try:
            p, v = float(p), float(v)
        except ValueError:
            raise ValueError(f"'{chunk}' is not a 'percent:value' pair of numbers") from None
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"percent {p} in '{chunk}' is outside 0..1")
        points.append((p, v))
    return tuple(sorted(points))


class SigmaPercentMap:
    """Inverts a model's monotone ``percent_to_sigma`` by tabulation, so a sigma met during sampling
    (including the in-between sigmas of multi-evaluation samplers) maps to a sampling percent.

    Interpolation is linear in log-sigma between ``n`` tabulated percents.
    """

    def __init__(self, percent_to_sigma: Callable[[float], float], n: int = 1001):
        self.percents = [i / (n - 1) for i in range(n)]
        sig = [float(percent_to_sigma(p)) for p in self.percents]
        # percent_to_sigma decreases with percent; ComfyUI returns a huge value at 0 and 0.0 at 1.
        self.log_sigmas = [math.log(max(s, 1e-12)) for s in sig]

    def percent(self, sigma: float) -> float:
        ls = math.log(max(float(sigma), 1e-12))
        xs = self.log_sigmas  # decreasing
        if ls >= xs[0]:
            return 0.0
        if ls <= xs[-1]:
            return 1.0
        # binary search on the decreasing table
        lo, hi = 0, len(xs) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if xs[mid] >= ls:
                lo = mid
            else:
                hi = mid
        span = xs[lo] - xs[hi]
        u = 0.0 if span <= 0 else (xs[lo] - ls) / span
        return self.percents[lo] + u * (self.percents[hi] - self.percents[lo])


def flow_percent_to_sigma(shift: float = 1.0, multiplier: float = 1000.0) -> Callable[[float], float]:
    """Percent-to-sigma of a rectified-flow model with time shift ``shift`` (as ComfyUI's flow sampling
    defines it): sigma(t) = shift * t / (1 + (shift - 1) * t), t = 1 - percent. Used by host-free tests."""

    def f(percent: float) -> float:
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        t = 1.0 - percent
        return shift * t / (1 + (shift - 1) * t)

    return f


def sigma_window(percent_to_sigma: Callable[[float], float], end_percent: float) -> float:
    """The sigma threshold of a window that ends at ``end_percent``: compose while sigma > threshold."""
    if end_percent >= 1.0:
        return 0.0
    return float(percent_to_sigma(max(0.0, end_percent)))
