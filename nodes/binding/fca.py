"""Initial Frames Conditioning's pieces: the initial frames encoded with the video VAE to FCA's latent frames."""

from __future__ import annotations

import torch

from ..common import VideoAdapterError

WAN21_CHANNELS = 16
PIXELS_PER_LATENT_FRAME = 4  # Wan 2.1's VAE: frame 0 alone, then 4 pixel frames per latent frame


def encode_initial_frames(vae, image: torch.Tensor, initial_frames: int) -> torch.Tensor:
    """IMAGE ``[F, H, W, 3]`` -> the first ``initial_frames`` latent frames ``[1, 16, k, h, w]`` in the model's
    latent space (Wan 2.1's normalisation applied, as the model applies it to its own image conditions)."""
    import comfy.latent_formats

    if image.ndim != 4:
        raise VideoAdapterError(f"image: expected an IMAGE batch [frames, H, W, C], got {list(image.shape)}")
    need = 1 + PIXELS_PER_LATENT_FRAME * (int(initial_frames) - 1)
    if image.shape[0] < need:
        raise VideoAdapterError(
            f"image: {image.shape[0]} frame(s) for initial_frames={initial_frames}; the second latent frame of Wan "
            f"2.1 holds pixel frames 1-4, so 2 initial frames need {need} images (1 initial frame: the first image)")
    latent = vae.encode(image[:need, :, :, :3])
    if latent.ndim != 5 or latent.shape[1] != WAN21_CHANNELS:
        raise VideoAdapterError(f"vae gives latents of shape {list(latent.shape)}; FCA works with Wan 2.1's VAE "
                                f"(video latents [1, {WAN21_CHANNELS}, T, H/8, W/8])")
    latent = latent[:1, :, :initial_frames].float()
    return comfy.latent_formats.Wan21().process_in(latent)
