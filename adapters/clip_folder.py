"""Pure helpers of the clip-folder dataset (no ComfyUI): which files are videos, where their captions and state
prompts are, and where the training clips are cut."""

from __future__ import annotations

import os

from .state_prompts import check_schedule, format_schedule, looks_like_schedule, parse_schedule, state_frames

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
    """The text of ``<video name>.states.txt`` next to the video ("" when the file is empty; a byte-order mark
    is dropped), or None when there is none."""
    path = os.path.splitext(video_path)[0] + STATES_SUFFIX
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError as e:
        raise ValueError(f"{os.path.basename(path)} is not UTF-8 text (byte 0x{raw[e.start]:02x} at position "
                         f"{e.start}); save it as UTF-8") from None


def video_states(text: str, video_frames: int) -> list[tuple[int, str]]:
    """The states of a video ``[(first frame, state)]`` in its own frame numbers, from its states file, which
    holds either

    * a schedule, as MLLM State Prompt writes it (``"0": "a hand holds the corn",`` one per line; unquoted
      ``0: a hand holds the corn`` and JSON braces are read too), starting at frame 0; or
    * one state per line, in order, spread evenly over the video's ``video_frames`` frames as MLLM State
      Prompt places its states.

    Raises ValueError saying what is wrong."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if not lines:
        raise ValueError('the file is empty; write one state per line, or a schedule of lines like "0": "a hand '
                         'holds the corn",')
    if any(looks_like_schedule(line) for line in lines):
        entries = parse_schedule(body, frames=video_frames)
        check_schedule(entries)
        return entries
    for line in lines:
        if line[0] in '"[{':
            raise ValueError(f"the line {line!r} looks like JSON; write one state per line without quotes, or a "
                             'schedule of lines like "0": "a hand holds the corn",')
    states = [" ".join(line.split()) for line in lines]
    return list(zip(state_frames(len(states), video_frames), states))


def clip_schedule(entries: list[tuple[int, str]], start: int, frames: int, stride: int) -> str:
    """The schedule of one training clip (``frames`` frames, every ``stride``-th frame from video frame
    ``start``) in the clip's own frame numbers, from the video's :func:`video_states`: each clip frame gets the
    state in force at its video frame, so a clip cut from the middle of a video starts with the state reached
    by then."""
    out: list[tuple[int, str]] = []
    for j in range(frames):
        frame = start + j * stride
        state = [s for f, s in entries if f <= frame][-1]  # entries start at frame 0
        if not out or out[-1][1] != state:
            out.append((j, state))
    return format_schedule(out)
