"""SimDA's node: latent-shift attention for frame-wise models. Training and loading adapters of every kind (SimDA's
included) are Train Adapters and Load Adapters in ``adapters.py``."""

from __future__ import annotations

from comfy_api.latest import io

from ..adapters.latent_shift import MODES
from .binding.latent_shift import UNET_BLOCK_KINDS, apply_latent_shift
from .common import CATEGORY

CAT_SIMDA = f"{CATEGORY}/simda"
BLOCK_CHOICES = ["all", "input", "middle", "output", "input_middle", "middle_output"]


def _block_kinds(choice: str) -> tuple[str, ...]:
    return UNET_BLOCK_KINDS if choice == "all" else tuple(choice.split("_"))


# ----------------------------------------------------------------------------------------------------
# latent-shift attention


class LatentShiftPatcher(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_LatentShiftPatcher",
            display_name="Latent-Shift Attention (SimDA)",
            category=CAT_SIMDA,
            description=(
                "Training-free temporal consistency for frame-wise models (SD 1.5 / SDXL with the video's frames "
                "in the batch, SVD's spatial blocks): every frame's self-attention also sees the previous frame "
                "through SimDA's latent shift, at twice the keys of per-frame attention instead of all frames'. "
                "Frame 0 is unchanged. Refuses DiTs such as Wan, whose attention already spans all frames."),
            inputs=[
                io.Model.Input("model", tooltip="A frame-wise model: SD 1.5, SDXL or SVD."),
                io.Combo.Input("mode", options=list(MODES), default="simda",
                               tooltip="simda: keys/values from shifted frames t-1 and t (4x4 shift pattern); "
                                       "previous_frame: keys/values from frames t and t-1 unshifted."),
                io.Int.Input("frames", default=0, min=0, max=4096,
                             tooltip="Frames per video. 0: the whole batch (of each cond/uncond pass) is one video; "
                                     "n: the batch holds several videos of n consecutive frames."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Sampling progress where latent shift starts (0 = first step)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Sampling progress where latent shift ends (1 = last step)."),
                io.Combo.Input("blocks", options=BLOCK_CHOICES, default="all", optional=True,
                               tooltip="Which UNet blocks get latent shift: all, or only the input (down), middle "
                                       "or output (up) blocks."),
            ],
            outputs=[io.Model.Output(tooltip="The model with latent-shift self-attention; the input model is "
                                             "unchanged.")],
        )

    @classmethod
    def execute(cls, model, mode, frames, start_percent, end_percent, blocks="all") -> io.NodeOutput:
        return io.NodeOutput(apply_latent_shift(model, mode, frames, start_percent, end_percent,
                                                _block_kinds(blocks)))


# ----------------------------------------------------------------------------------------------------
# training


NODES = [LatentShiftPatcher]
