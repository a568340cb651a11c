"""Dual classifier-free guidance (AID, after InstructPix2Pix): separate scales for the image and the text
condition of an image-to-video model. Host-free; ``guiders.py`` binds it to ComfyUI.

On denoised estimates (the weights sum to one, so this is the same rule in noise, velocity or x0 space)::

    D = D(no image, no text) + s_V * (D(image, no text) - D(no image, no text))
                             + s_T * (D(image, text) - D(image, no text))

At ``s_V = 1`` it is plain CFG on the text with the image kept in both branches; at ``s_V = s_T = 1`` it is
the fully conditional prediction. ``s_V`` may vary per frame (:func:`frame_scales`), as SVD's own pipeline
ramps its guidance from the first frame to the last.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch


def dual_cfg(d_none: torch.Tensor, d_image: torch.Tensor, d_full: torch.Tensor, image_cfg, text_cfg: float,
             image_guidance: Optional[Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]] = None
             ) -> torch.Tensor:
    """The rule above. ``image_cfg`` is a float or a tensor broadcastable against the estimates (per frame).
    ``image_guidance(d_image, d_none, image_cfg)`` computes the image term ``D_none + s_V (D_image - D_none)``
    when given (the host's CFG function, so its CFG hooks apply); by default the formula itself."""
    if image_guidance is None:
        guided = d_none + (d_image - d_none) * image_cfg
    else:
        guided = image_guidance(d_image, d_none, image_cfg)
    return guided + (d_full - d_image) * text_cfg


def frame_scales(first: float, last: float, frames: int) -> torch.Tensor:
    """``[frames]`` image scales ramping linearly from the first frame to the last."""
    if frames < 1:
        raise ValueError(f"frames must be positive, got {frames}")
    if frames == 1:
        return torch.tensor([float(last)])
    return torch.linspace(float(first), float(last), frames)
