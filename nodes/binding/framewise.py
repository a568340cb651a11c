"""Frame-wise prompts on Wan: the state tokens of a schedule, handed to every cross-attention with the
frame-wise mask (the attach table's cross_context point)."""

from __future__ import annotations

import torch

from .attach import FrameTokens
from ..common import VideoAdapterError


class StateTokens:
    """``cross_context`` callable: the states' text embedded by the model's own text embedding, with the
    per-latent-frame weights."""

    def __init__(self, raw: list[torch.Tensor], weights: torch.Tensor, text_embedding):
        self.raw, self.weights, self.text_embedding = raw, weights, [text_embedding]
        self._cache = {}

    def __call__(self, context, site):
        key = (context.device, context.dtype)
        if key not in self._cache:
            emb = self.text_embedding[0]
            with torch.no_grad():  # in the compute dtype, as Wan embeds its own text (ComfyUI's ops cast the weights)
                self._cache[key] = [emb(r.to(device=context.device, dtype=context.dtype)) for r in self.raw]
        weights = self.weights
        window = (site.transformer_options or {}).get("context_window")  # core's context windows: one slice of frames
        index = getattr(window, "index_list", None)
        if index is not None and len(index) == site.grid[0] and max(index) < weights.shape[0]:
            weights = weights[list(index)]
        if site.grid[0] != weights.shape[0]:
            raise VideoAdapterError(
                f"Framewise Prompts was set for {self.weights.shape[0]} latent frames, but the video has {site.grid[0]}; "
                "set frames to the video length in pixel frames (Wan: 1 + 4k)")
        return FrameTokens(self._cache[key], weights)
