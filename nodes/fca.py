"""FCA nodes: the initial frames of a text-video prediction, as conditions the FCA adapters read.

The adapters themselves are trained with Train Adapters (kind ``fca``) and loaded with Load Adapters; this node
encodes the first frame(s) with the VAE, adds the small noise of one step and puts them on both positive and
negative (the unconditional branch drops the text, never the initial frames), so any sampler (KSampler,
SamplerCustomAdvanced with any guider) carries them to the model.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..adapters import fca
from .common import CATEGORY
from .binding.fca import encode_initial_frames



class InitialFramesConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_InitialFramesConditioning",
            display_name="Initial Frames Conditioning (FCA)",
            category=f"{CATEGORY}/fca",
            description=(
                "Text-video prediction with FCA adapters on Wan 2.1 text-to-video: encodes the first frame(s) with "
                "the VAE, adds the small noise of one step and attaches them to positive and negative. The FCA model "
                "(Load Adapters) runs itself on them once per sampling run and reads each block's hidden states. The "
                "negative keeps the initial frames (only the text is dropped). Works with KSampler and "
                "SamplerCustomAdvanced."),
            inputs=[
                io.Conditioning.Input("positive", tooltip="The encoded prompt describing the motion."),
                io.Conditioning.Input("negative", tooltip="The encoded negative (or empty) prompt; it gets the same "
                                      "initial frames."),
                io.Vae.Input("vae", tooltip="Wan 2.1's VAE (the one the video is decoded with)."),
                io.Image.Input("image", tooltip="The initial frame(s): the first image, or the first 5 images for "
                               "two initial latent frames. Same size as the video to generate (this node cannot see the video; the "
                               "sampler refuses another size when the FCA model runs)."),
                io.Int.Input("initial_frames", default=1, min=1, max=2,
                             tooltip="Initial latent frames: 1 = the first image; 2 = the first 5 images (Wan's "
                                     "second latent frame holds pixel frames 1-4). Use what the adapters were "
                                     "trained with."),
                io.Int.Input("noise_step", default=1, min=0, max=999,
                             tooltip="The small noise added to the initial frames, as a timestep of 1000 (sigma = "
                                     "step / 1000; 1 = one step, as in FCA; 0 = none)."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, optional=True,
                             tooltip="Seed of that small noise."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive", tooltip="positive with the initial frames."),
                io.Conditioning.Output(display_name="negative", tooltip="negative with the same initial frames."),
            ],
        )

    @classmethod
    def execute(cls, positive, negative, vae, image, initial_frames, noise_step, seed=0) -> io.NodeOutput:
        from .binding.attach import add_adapter_conds

        latent = encode_initial_frames(vae, image, int(initial_frames))
        conds = fca.initial_frame_conds(latent, int(noise_step), int(seed))
        return io.NodeOutput(add_adapter_conds(positive, conds), add_adapter_conds(negative, conds))


NODES = [InitialFramesConditioning]
