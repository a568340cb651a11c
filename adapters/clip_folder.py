"""Pure helpers of the clip-folder dataset (no ComfyUI): which files are videos, where their captions are,
and where the training clips are cut."""

from __future__ import annotations

import os

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v", ".gif", ".webp")


def caption_for(video_path: str, default: str) -> str:
    """The text of ``<video name>.txt`` next to the video, else ``default``."""
    txt = os.path.splitext(video_path)[0] + ".txt"
    if os.path.isfile(txt):
        with open(txt, encoding="utf-8") as f:
            text = " ".join(f.read().split())
        if text:
            return text
    return default


def clip_windows(n_frames: int, frames: int, stride: int, per_video: int) -> list[int]:
    """Start frames of up to ``per_video`` non-overlapping windows of ``frames`` frames (every ``stride``-th
    frame) in a video of ``n_frames`` frames, spread evenly over the video."""
    span = (frames - 1) * stride + 1
    if n_frames < span:
        return []
    fits = 1 + (n_frames - span) // span
    k = min(per_video, fits)
    if k <= 1:
        return [0]
    spare = n_frames - k * span
    return [i * span + (spare * i) // (k - 1) for i in range(k)]
