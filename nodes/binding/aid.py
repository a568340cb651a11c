"""AID Conditioning's pieces: encoding an instruction and its state prompts per conditioning entry (and per
frame), splitting multi-line inputs, and finding the AID adapters attached to a model."""

from __future__ import annotations

import torch

from ...adapters import aid
from ...adapters import state_prompts as sp
from .attach import ADDITIONAL_MODELS_KEY
from ..common import VideoAdapterError

SEPARATOR = sp.SCHEDULE_SEPARATOR


def _encode(clip, text: str) -> torch.Tensor:
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(text))
    return cond[0][0][0].float()  # [L, D]


def _split(text: str, sep: str | None) -> list[str]:
    """Non-empty lines (``sep`` None), or the blocks between lines that are exactly ``sep``."""
    lines = [line.strip() for line in (text or "").splitlines()]
    if sep is None:
        return [line for line in lines if line]
    blocks, current = [], []
    for line in lines + [sep]:
        if line == sep:
            if any(current):
                blocks.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    return blocks


def aid_adapters(model):
    """The AID adapter set attached to ``model`` (None if none)."""
    for p in model.get_additional_models_with_key(ADDITIONAL_MODELS_KEY):
        if isinstance(p.model, aid.AIDAdapterSet):
            return p.model
    return None


def instruction_conds(clip, instructions: list, schedules: list[str], entries: int, frames: int):
    """Per conditioning entry ``{aid_text: [1, L, D], aid_states: [frames, L, D]}`` (no states when no schedule).
    ``instructions``: texts, or already encoded features ``[L, D]``."""
    if len(instructions) not in (1, entries):
        raise VideoAdapterError(f"instruction: {len(instructions)} instructions for {entries} conditioning entries; "
                                "give one instruction for all, or one line per entry (per training clip, in clip order)")
    if schedules and len(schedules) not in (1, entries):
        raise VideoAdapterError(f"states: {len(schedules)} schedules for {entries} conditioning entries; give one, or "
                                f"one per entry separated by lines of {SEPARATOR}")
    texts = {}

    def enc(text):
        if torch.is_tensor(text):
            return text.float()
        if text not in texts:
            texts[text] = _encode(clip, text)
        return texts[text]

    out = []
    for i in range(entries):
        conds = {aid.TEXT_COND: enc(instructions[i if len(instructions) > 1 else 0])[None]}
        if schedules:
            text = schedules[i if len(schedules) > 1 else 0]
            try:
                entries_ = sp.parse_schedule(text, frames=frames)
                sp.check_schedule(entries_)
            except ValueError as e:
                raise VideoAdapterError(f"states: {e}") from None
            starts = [f for f, _ in entries_]
            conds[aid.STATES_COND] = aid.per_frame_states([enc(t) for _, t in entries_], starts, frames)
        out.append(conds)
    return out


SVD_LATENT_CHANNELS = 4


def check_svd_conditioning(conditioning, input_name: str, model=None) -> None:
    """Refuse a conditioning that is not SVD's image conditioning (for example a text encoder's output for Wan),
    naming the input and what to connect: every entry must carry SVD's start-image latent ``[1, 4, h, w]``, and
    with ``model`` connected its features must have the model's context width (SVD: the 1024-wide image
    embedding). Without ``model``, the sampler's model checks the width downstream (Dual CFG Guider), and an image
    latent of any channel count passes (an SVD of other latent channels, such as the pack's tiny demo base)."""
    from .host import describe

    host = describe(model, "model") if model is not None else None
    width = host.text_width if host is not None else None
    channels = host.latent_channels if host is not None else None
    for i, (tensor, extras) in enumerate(conditioning):
        where = f"{input_name}" + (f" (entry {i + 1})" if len(conditioning) > 1 else "")
        latent = extras.get("concat_latent_image")
        if latent is None or latent.ndim != 4 or (channels and latent.shape[1] != channels):
            got = "none" if latent is None else list(latent.shape)
            raise VideoAdapterError(
                f"{where}: no SVD start-image latent (concat_latent_image: {got}; SVD's is "
                f"[1, {channels or SVD_LATENT_CHANNELS}, h, w]): connect SVD_img2vid_Conditioning (or SVD Conditioning "
                "per Clip), not a text encoder's or another model's conditioning")
        if width and (getattr(tensor, "ndim", 0) != 3 or tensor.shape[-1] != width):
            raise VideoAdapterError(
                f"{where}: features of shape {list(getattr(tensor, 'shape', []))}, but model's conditioning is its "
                f"{width}-wide image embedding: connect SVD_img2vid_Conditioning made with the model's CLIP vision")
