"""Guidance nodes: dual classifier-free guidance for image-to-video models (AID / InstructPix2Pix).

Thin: the rule is ``samplers/dual_cfg.py``, the GUIDER ``samplers/guiders.py``. This module builds the three
conditionings the rule needs from what the native image-to-video nodes already produce, per family, from the
host description.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..samplers.guiders import DualCFGGuider
from .common import CATEGORY, CLIP_VISION_CHOICES, VideoAdapterError, check_conditioning
from .binding.host import describe
from .binding.guidance import dual_conditionings

CAT_GUIDANCE = f"{CATEGORY}/guidance"
RAMPS = ("constant", "linear")


class DualCFG(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_DualCFGGuider",
            display_name="Dual CFG Guider (image + text)",
            category=CAT_GUIDANCE,
            description=(
                "Classifier-free guidance with separate scales for the start image and the text of an image-to-video "
                "model (AID, InstructPix2Pix): D = D(no image, no text) + image_cfg * (D(image) - D(no image)) + "
                "text_cfg * (D(image, text) - D(image)). Takes the positive / negative of WanImageToVideo, "
                "WanFirstLastFrameToVideo or SVD_img2vid_Conditioning and builds the three conditionings itself; the "
                "three predictions run in one batched pass. Connect to SamplerCustomAdvanced."),
            inputs=[
                io.Model.Input("model", tooltip="An image-to-video model (Wan 2.1 / 2.2 14B I2V, SVD)."),
                io.Conditioning.Input("positive", tooltip="Positive of the image-to-video conditioning node: start image "
                                      "and prompt."),
                io.Conditioning.Input("negative", tooltip="Negative of the same node: start image and negative prompt."),
                io.Float.Input("image_cfg", default=1.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="s_V: how strongly the video follows the start image. 1 = plain text CFG with the "
                                       "image in both branches. With a linear ramp: the value at the last frame."),
                io.Float.Input("text_cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="s_T: how strongly the video follows the text. SVD: the AID instruction (AID "
                                       "Conditioning); unused for plain SVD (no text)."),
                io.Combo.Input("image_cfg_ramp", options=list(RAMPS), default="constant", optional=True,
                               tooltip="linear: image_cfg ramps per latent frame from image_cfg_first_frame to "
                                       "image_cfg (as SVD's own pipeline and VideoLinearCFGGuidance ramp their CFG)."),
                io.Float.Input("image_cfg_first_frame", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               optional=True, tooltip="image_cfg at the first latent frame when the ramp is linear."),
                io.Combo.Input("clip_vision_in_no_image", options=list(CLIP_VISION_CHOICES), default="keep",
                               optional=True,
                               tooltip="Wan: what the no-image prediction gets of the CLIP-vision features. keep "
                                       "(default): only the start-image latent is removed; zero: zeroed features; "
                                       "drop: none (Wan's image cross-attention then reads text tokens, an input the "
                                       "model never saw)."),
            ],
            outputs=[io.Guider.Output(tooltip="Guider for SamplerCustomAdvanced."),
                     io.String.Output(display_name="summary", tooltip="Which three conditionings were built.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, image_cfg, text_cfg, image_cfg_ramp="constant",
                image_cfg_first_frame=1.0, clip_vision_in_no_image="keep") -> io.NodeOutput:
        for name, v in (("image_cfg", image_cfg), ("text_cfg", text_cfg), ("image_cfg_first_frame", image_cfg_first_frame)):
            if not v == v or v in (float("inf"), float("-inf")):
                raise VideoAdapterError(f"{name} is {v}; give a finite number")
        if clip_vision_in_no_image not in CLIP_VISION_CHOICES:
            raise VideoAdapterError(f"clip_vision_in_no_image '{clip_vision_in_no_image}': use one of "
                                    f"{', '.join(CLIP_VISION_CHOICES)}")
        check_conditioning(model, positive, "positive", "model")
        check_conditioning(model, negative, "negative", "model")
        full, image, none, image_only, summary = dual_conditionings(model, positive, negative, clip_vision_in_no_image)
        host = describe(model, "model")
        first = float(image_cfg_first_frame) if image_cfg_ramp == "linear" else None
        if first is not None and "sampler_cfg_function" in model.model_options:
            raise VideoAdapterError(
                "image_cfg_ramp linear: the model already carries a custom CFG function (for example from "
                "VideoLinearCFGGuidance), which expects one number as its scale, not one per frame. Remove that node "
                "(this ramp replaces it) or set image_cfg_ramp to constant")
        guider = DualCFGGuider(model, image_cfg, text_cfg, first, frame_axis=2 if host.frame_layout == "time" else 0,
                               image_only=image_only)
        guider.set_conds(full, image, none)
        if first is not None:
            summary += f"; image_cfg ramps from {first:g} (first frame) to {float(image_cfg):g} (last)"
        return io.NodeOutput(guider, summary)


NODES = [DualCFG]
