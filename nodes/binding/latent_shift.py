"""ComfyUI binding of SimDA's training-free part: latent-shift self-attention for frame-wise models.

An ``attn1_patch`` replaces the key/value input of each spatial self-attention (before the K/V projections)
by the latent-shift token sequence ``[B*F, 2N, C]``; projecting that equals projecting first and shifting
after, so this is latent-shift K/V exactly. SVD's temporal transformer blocks receive the same patch under
the same block keys; they are told apart by their token layout and left alone. SimDA's adapters attach
through the pack's one attach table (``attach.py``) like every other adapter kind.

Frames per video: ``frames`` if given, else the batch of one cond chunk (``batch / len(cond_or_uncond)``),
which keeps videos correct under CFG batching and split passes.
"""

from __future__ import annotations

import torch

from ...adapters.latent_shift import MODES
from ...adapters.simda import LatentShiftKV
from ...adapters.protocol import Site, VideoAdapterError
from .attach import frames_per_video, unet_layout
from .host import describe

UNET_BLOCK_KINDS = ("input", "middle", "output")


def refuse_full_attention(model, label: str = "model") -> None:
    """Latent-shift attention is for frame-wise models; say so for DiTs that attend over all frames."""
    host = describe(model, label)
    if host.architecture == "unet":
        return
    name = host.model_config
    if host.architecture == "wan":
        raise VideoAdapterError(
            f"{label} is {name}, a DiT whose self-attention already spans all frames (full 3D attention): "
            "latent-shift attention would only remove information. Use it with frame-wise models "
            "(SD 1.5 or SDXL with frames in the batch, SVD); for Wan use the SimDA adapters without latent shift")
    raise VideoAdapterError(
        f"{label} is {name}, which has no UNet spatial self-attention to patch; latent-shift attention "
        "supports SD 1.5, SDXL (frames in the batch) and SVD")


class SigmaWindow:
    """Active for sigmas in ``[sigma_end, sigma_start]`` (the percent window of the schedule)."""

    def __init__(self, model, start_percent: float = 0.0, end_percent: float = 1.0):
        if not 0.0 <= start_percent <= end_percent <= 1.0:
            raise VideoAdapterError(
                f"start_percent={start_percent} and end_percent={end_percent}: need 0 <= start <= end <= 1")
        ms = model.get_model_object("model_sampling")
        self.full = start_percent <= 0.0 and end_percent >= 1.0
        self.high = float(ms.percent_to_sigma(start_percent))
        self.low = float(ms.percent_to_sigma(end_percent))

    def active(self, extra_options: dict) -> bool:
        if self.full:
            return True
        sig = extra_options.get("sigmas")
        if sig is None:
            return True
        s = float(sig.max()) if torch.is_tensor(sig) else float(sig)
        return self.low <= s <= self.high * (1 + 1e-5)


class LatentShiftPatch:
    """``attn1_patch``: keys/values of spatial self-attention become latent-shift tokens ``[B*F, 2N, C]``."""

    def __init__(self, mode: str, frames: int = 0, window: SigmaWindow | None = None,
                 block_kinds: tuple[str, ...] = UNET_BLOCK_KINDS):
        if mode not in MODES:
            raise VideoAdapterError(f"mode '{mode}' is not a latent-shift mode; use one of {', '.join(MODES)}")
        self.mode, self.frames, self.window, self.block_kinds = mode, int(frames), window, tuple(block_kinds)
        self.kv = LatentShiftKV(mode)

    def __call__(self, n, context, value, extra_options):
        layout = unet_layout(n, extra_options)
        if layout is None or layout[0] != "spatial":
            return n, context, value
        block = extra_options.get("block")
        if block is not None and block[0] not in self.block_kinds:
            return n, context, value
        if self.window is not None and not self.window.active(extra_options):
            return n, context, value
        f = frames_per_video(n.shape[0], extra_options, self.frames)
        return self.kv(n, context, value, Site(None, f, (f, layout[1], layout[2]), [], None, extra_options))


def apply_latent_shift(model, mode: str, frames: int = 0, start_percent: float = 0.0, end_percent: float = 1.0,
                       block_kinds: tuple[str, ...] = UNET_BLOCK_KINDS, label: str = "model"):
    """A clone of ``model`` with latent-shift attention in its spatial self-attention."""
    refuse_full_attention(model, label)
    m = model.clone()
    m.set_model_attn1_patch(LatentShiftPatch(mode, frames, SigmaWindow(model, start_percent, end_percent),
                                             block_kinds))
    return m
