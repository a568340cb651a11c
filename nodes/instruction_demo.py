"""The tiny instruction demo: text-video prediction with FCA on a frozen Wan of the pack's miniature world, with no
downloads. Four small nodes around the real ones (Load Adapters, Initial Frames Conditioning, KSampler, VAE Decode):

* ``VA_TinyInstructionModels``: a shipped frozen base (MODEL) and the VAE of its latent code;
* ``VA_TinyInstructionScene``: a held-out first frame, an instruction that fits it and the same with its phases
  swapped, and the true clip of each;
* ``VA_TinyInstructionPrompt``: an instruction as the base's stand-in text encoder reads it (positive, negative);
* ``VA_TinyInstructionLatent``: the video latent to sample, its first frame kept.

The work is in ``binding/instruction_demo.py``; the bases and adapters are measured in docs/fca.md.
"""

from __future__ import annotations

from comfy_api.latest import io

from .binding import instruction_demo as demo
from .common import CATEGORY

CAT = f"{CATEGORY}/demo"
GRAMMAR = ("'move the <colour> <shape> <direction>' with an optional ', then <direction>' (or 'lift the ..., then "
           "drop it'); colours red, green, blue, yellow, cyan, magenta; shapes square, circle, triangle; directions "
           "left, right, up, down")


class TinyInstructionModels(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_TinyInstructionModels",
            display_name="Tiny Instruction Models (no download)",
            category=CAT,
            description=(
                "A frozen Wan 2.1-architecture base of the pack's instruction miniature (32 x 32 videos of coloured "
                "shapes, 8 frames; 1.2M parameters, shipped in the pack) and the VAE of its latent code. The base "
                "was pretrained with the clip's first frame given, so it predicts a video from a first frame and "
                "an instruction by itself; FCA adapters for it ship too (Load Adapters: tvp_fca_*). Runs on a CPU "
                "in seconds."),
            inputs=[
                io.Combo.Input("base", options=list(demo.BASES), default="turns",
                               tooltip="turns: pretrained on one- and two-phase instructions (follows both phases "
                                       "by itself; adapters: tvp_fca_turns). single-phase: pretrained on one-phase "
                                       "instructions only (a second phase is what FCA must add; adapters: "
                                       "tvp_fca_full)."),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="The frozen base. Sample it with a latent from Tiny "
                                "Instruction Latent (its first frame is handed to the model clean at every step)."),
                io.Vae.Output(display_name="vae", tooltip="The base's latent code (4 x 4 pixels per latent cell, no "
                              "temporal compression) for VAE Decode, VAE Encode and Initial Frames Conditioning."),
            ],
        )

    @classmethod
    def execute(cls, base) -> io.NodeOutput:
        model, vae = demo.instruction_models(base)
        return io.NodeOutput(model, vae)


class TinyInstructionScene(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_TinyInstructionScene",
            display_name="Tiny Instruction Scene",
            category=CAT,
            description=(
                "A scene the demo's models never saw (a held-out draw of the miniature world): its first frame, a "
                "two-phase instruction that fits it, the same instruction with its phases swapped, and the true "
                "clip of each. Two instructions for one start: a model that follows them draws two different "
                "motions."),
            inputs=[io.Int.Input("seed", default=0, min=0, max=100_000, tooltip="Which held-out scene.")],
            outputs=[
                io.Image.Output(display_name="first_frame", tooltip="The first frame [1, 32, 32, 3]."),
                io.String.Output(display_name="instruction", tooltip="A two-phase instruction for the scene."),
                io.String.Output(display_name="swapped_instruction", tooltip="The same with its phases swapped."),
                io.Image.Output(display_name="truth", tooltip="The true clip of instruction (8 frames)."),
                io.Image.Output(display_name="swapped_truth", tooltip="The true clip of swapped_instruction."),
            ],
        )

    @classmethod
    def execute(cls, seed) -> io.NodeOutput:
        return io.NodeOutput(*demo.scene(int(seed)))


class TinyInstructionPrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_TinyInstructionPrompt",
            display_name="Tiny Instruction Prompt",
            category=CAT,
            description=("Encodes an instruction with the stand-in text encoder the demo's base was trained with "
                         "(the miniature has no real text encoder). Grammar: " + GRAMMAR + "."),
            inputs=[
                io.Model.Input("model", tooltip="The Tiny Instruction Models' MODEL (before or after Load "
                               "Adapters): it says how its prompts are encoded."),
                io.String.Input("instruction", default="move the red circle left, then up", multiline=True,
                                tooltip="What the named object does: " + GRAMMAR + "."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive", tooltip="The instruction."),
                io.Conditioning.Output(display_name="negative", tooltip="The empty prompt (what the base learned "
                                       "as 'no text'; classifier-free guidance steers away from it)."),
            ],
        )

    @classmethod
    def execute(cls, model, instruction) -> io.NodeOutput:
        return io.NodeOutput(*demo.prompt_conditioning(model, instruction))


class TinyInstructionLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_TinyInstructionLatent",
            display_name="Tiny Instruction Latent (first frame kept)",
            category=CAT,
            description=("The video latent to sample: the first frame encoded as latent frame 0 and kept by a noise "
                         "mask, the other frames empty. The sampler draws only the frames after it, and the demo's "
                         "model sees the kept frame clean at every step (as it was trained)."),
            inputs=[
                io.Vae.Input("vae", tooltip="The Tiny Instruction Models' VAE."),
                io.Image.Input("image", tooltip="The first frame (its first image is used)."),
                io.Int.Input("frames", default=8, min=2, max=64, tooltip="Frames of the video, the first included "
                             "(the bases were trained on 8)."),
            ],
            outputs=[io.Latent.Output(tooltip="Video latent [1, 16, frames, H/4, W/4] with its noise mask.")],
        )

    @classmethod
    def execute(cls, vae, image, frames) -> io.NodeOutput:
        return io.NodeOutput(demo.first_frame_latent(vae, image, int(frames)))


NODES = [TinyInstructionModels, TinyInstructionScene, TinyInstructionPrompt, TinyInstructionLatent]
