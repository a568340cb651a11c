"""Pure helpers of the clip-folder dataset (no ComfyUI): which files are videos, where their captions and state
prompts are, and where the training clips are cut."""

from __future__ import annotations

import os

from .state_prompts import format_schedule, parse_schedule, state_frames

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v", ".gif", ".webp")
STATES_SUFFIX = ".states.txt"  # <video name>.states.txt: the video's state prompts (AID)


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


def states_for(video_path: str) -> str | None:
    """The text of ``<video name>.states.txt`` next to the video, or None when there is none (or it is empty)."""
    path = os.path.splitext(video_path)[0] + STATES_SUFFIX
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        text = f.read().strip()
    return text or None


def clip_states(text: str, start: int, frames: int, stride: int) -> str:
    """The state schedule of one training clip (``frames`` frames taken every ``stride``-th frame from video frame
    ``start``), in the clip's own frame numbers, from a video's states file. The file holds either

    * a schedule in the video's frame numbers, as MLLM State Prompt writes it (``"0": "a hand holds the corn",``
      one per line): each clip frame gets the state in force at its video frame, so a clip cut from the middle
      of the video starts with the state reached by then; or
    * one state per line, in order: spread evenly over every clip, as MLLM State Prompt places its states.

    Raises ValueError (with the reason) when the file cannot be read either way."""
    body = text.strip()
    if body.startswith('"'):
        entries = parse_schedule(body)
        if not entries:
            raise ValueError("the schedule is empty")
        out: list[tuple[int, str]] = []
        for j in range(frames):
            frame = start + j * stride
            active = [s for f, s in entries if f <= frame]
            state = active[-1] if active else entries[0][1]
            if not out or out[-1][1] != state:
                out.append((j, state))
        return format_schedule(out)
    lines = [" ".join(line.split()) for line in body.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError("no states")
    return format_schedule(list(zip(state_frames(len(lines), frames), lines)))
