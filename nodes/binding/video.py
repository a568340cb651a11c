"""Reading training clips for the dataset nodes: the folders a user may read, the videos in them, frame windows
decoded and fitted to the training size with PyAV through ComfyUI's video types, and their latents."""

from __future__ import annotations

import os

import torch

import comfy.utils
import folder_paths

from ...adapters.clip_folder import STATES_SUFFIX, VIDEO_EXTENSIONS, states_for, video_states
from ..common import VideoAdapterError

ANY_FOLDER_ENV = "VIDEO_ADAPTERS_ALLOW_ANY_FOLDER"
DEFAULT_FOLDER = "training_clips"


def any_folder_allowed() -> bool:
    return os.environ.get(ANY_FOLDER_ENV, "").strip().lower() in ("1", "true", "yes")


def input_subfolders(depth: int = 2) -> list[str]:
    """Folders inside ComfyUI's input folder (up to ``depth`` levels), for the folder list; the default name is
    always offered so a new install has something to create."""
    root = folder_paths.get_input_directory()
    found = {DEFAULT_FOLDER}
    for dirpath, dirnames, _ in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        level = 0 if rel == "." else rel.count(os.sep) + 1
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if level >= depth:
            dirnames[:] = []
        if rel != ".":
            found.add(rel.replace(os.sep, "/"))
    return sorted(found)


def resolve_folder(folder: str) -> str:
    """``folder`` inside ComfyUI's input directory (a full path only where the server allows it); clear errors
    for missing folders and for paths that leave the input folder."""
    name = folder.strip()
    if not name:
        raise VideoAdapterError("folder: give a folder of video files inside ComfyUI's input folder")
    root = os.path.realpath(folder_paths.get_input_directory())
    if os.path.isabs(name) or name.startswith("~"):
        if not any_folder_allowed():
            raise VideoAdapterError(
                f"folder: '{name}' is a full path; Load Training Clips reads folders inside ComfyUI's input folder "
                f"({root}). Move or link the clips there, or start the server with {ANY_FOLDER_ENV}=1 to allow full "
                "paths")
        path = os.path.realpath(os.path.expanduser(name))
    else:
        path = os.path.realpath(os.path.join(root, name))
        if os.path.commonpath([path, root]) != root and not any_folder_allowed():
            raise VideoAdapterError(f"folder: '{name}' leads outside ComfyUI's input folder ({root}); give a folder "
                                    "inside it")
    if os.path.isdir(path):
        return path
    raise VideoAdapterError(
        f"folder: '{name}' does not exist (looked for {path}). Put your clips in a folder inside ComfyUI's input "
        "folder and pick it")


def list_videos(path: str) -> list[str]:
    """Video files directly inside ``path``, sorted by name (the clip order)."""
    files = sorted(f for f in os.listdir(path) if f.lower().endswith(VIDEO_EXTENSIONS) and not f.startswith("."))
    if not files:
        raise VideoAdapterError(
            f"folder: no video files in {path} (looked for {', '.join(VIDEO_EXTENSIONS)})")
    return [os.path.join(path, f) for f in files]


def read_windows(video_path: str, starts: list[int], count: int, stride: int, width: int,
                 height: int) -> dict[int, list[torch.Tensor]]:
    """Frames of every window in one decoding pass: ``{start: [frame [height, width, 3] in 0..1, ...]}``, each
    window ``count`` frames from ``start`` at ``stride`` (fewer at the end of the file). Frames are resized
    as they are decoded, so long high-resolution videos never sit in memory; decoding stops after the last
    window."""
    import av

    wanted = {s: [] for s in starts}
    last = max(starts) + (count - 1) * stride
    try:
        with av.open(video_path, mode="r") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index > last:
                    break
                hits = [s for s in starts if s <= index < s + count * stride and (index - s) % stride == 0]
                if hits:
                    img = torch.from_numpy(frame.to_ndarray(format="rgb24")).float() / 255.0
                    img = fit_frames(img[None], width, height)[0]
                    for s in hits:
                        wanted[s].append(img)
    except (av.error.FFmpegError, IndexError) as e:
        raise VideoAdapterError(f"{os.path.basename(video_path)}: cannot decode the video ({e})") from None
    return wanted


def fit_frames(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``[T, H, W, 3]`` -> ``[T, height, width, 3]``: scale to cover, then centre-crop (ComfyUI's own resize)."""
    x = frames.movedim(-1, 1)
    x = comfy.utils.common_upscale(x, width, height, "bilinear", "center")
    return x.movedim(1, -1).clamp(0.0, 1.0)


def count_frames(video_path: str) -> int:
    import av

    try:
        with av.open(video_path, mode="r") as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for _ in container.decode(stream))
    except (av.error.FFmpegError, IndexError) as e:
        raise VideoAdapterError(f"{os.path.basename(video_path)}: cannot decode the video ({e})") from None


def encode_clip(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Frames ``[T, H, W, 3]`` -> a video VAE's ``[1, C, T', h, w]`` or an image VAE's ``[T, C, h, w]``."""
    return vae.encode(pixels[..., :3])


def check_geometry(vae, frames: int, width: int, height: int) -> None:
    """Frame count and size the VAE can encode exactly (errors name the nearest valid values)."""
    spatial = vae.spacial_compression_encode() if hasattr(vae, "spacial_compression_encode") else 8
    spatial = int(spatial or 8)
    for label, v in (("width", width), ("height", height)):
        if v % spatial:
            lo, hi = v - v % spatial, v - v % spatial + spatial
            raise VideoAdapterError(f"{label} {v} is not a multiple of this VAE's {spatial}-pixel compression; "
                                    f"use {lo or hi} or {hi}")
    temporal = vae.temporal_compression_decode() if hasattr(vae, "temporal_compression_decode") else None
    if temporal and temporal > 1 and (frames - 1) % temporal:
        lo = frames - (frames - 1) % temporal
        raise VideoAdapterError(f"frames {frames}: this VAE compresses time {temporal}x and needs 1 + {temporal}k "
                                f"frames; use {lo if lo >= 1 else lo + temporal} or {lo + temporal}")


def _states_per_video(by_video: dict, lengths: dict) -> dict:
    """``{video: [(frame, state)]}`` from the videos' states files; empty when no video has one. Every video
    needs one once any has, and each must read (see ``video_states``)."""
    try:
        texts = {video: states_for(video) for video in by_video}
    except ValueError as e:  # a file that is not UTF-8: the message names it
        raise VideoAdapterError(f"state prompts: {e}") from None
    missing = sorted(os.path.basename(v) for v, t in texts.items() if t is None)
    if len(missing) == len(texts):
        return {}
    if missing:
        raise VideoAdapterError(
            f"state prompts: some videos have a <video name>{STATES_SUFFIX} and these do not: {', '.join(missing)}. "
            "Give every video one (AID trains each clip with its states), or none")
    out = {}
    for video, text in texts.items():
        try:
            out[video] = video_states(text, lengths[video])
        except ValueError as e:
            name = os.path.splitext(os.path.basename(video))[0] + STATES_SUFFIX
            raise VideoAdapterError(f"{name}: {e}") from None
    return out
