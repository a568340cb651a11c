"""The tiny instruction demos: text-video prediction with FCA on a frozen Wan, and with AID on a frozen SVD, of the
pack's miniature world, with no downloads. Five small nodes around the real ones (Load Adapters, Initial Frames
Conditioning, SVD_img2vid_Conditioning, MLLM State Prompt, AID Conditioning, Dual CFG Guider, KSampler, VAE Decode):

* ``VA_TinyInstructionModels``: a shipped frozen base (MODEL) and the VAE of its latent code;
* ``VA_TinyInstructionEncoders``: for the SVD base, the stand-ins of its image encoder, of the text encoder its
  AID adapters read and of the multimodal LLM that writes state prompts;
* ``VA_TinyInstructionScene``: a held-out first frame, an instruction that fits it and the same with its phases
  swapped, and the true clip of each;
* ``VA_TinyInstructionPrompt``: an instruction as the base's stand-in text encoder reads it (positive, negative);
* ``VA_TinyInstructionLatent``: the video latent to sample, its first frame kept.

The work is in ``binding/instruction_demo.py``; the bases and adapters are measured in docs/fca.md and docs/aid.md.
"""

from __future__ import annotations

from comfy_api.latest import io

from .binding import instruction_demo as demo
from .common import CATEGORY, MLLM

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
                "A frozen base of the pack's instruction miniature (32 x 32 videos of coloured shapes, 8 frames; "
                "shipped in the pack) and the VAE of its latent code. turns and single-phase: Wan 2.1-architecture "
                "text-to-video bases (1.2M parameters) pretrained with the clip's first frame given, so they predict "
                "a video from a first frame and an instruction by themselves; FCA adapters for them ship too (Load "
                "Adapters: tvp_fca_*). svd-aid: an SVD-architecture image-to-video base (2.2M parameters) that never "
                "saw an instruction, for AID (Load Adapters: tvp_aid_full; its encoders: Tiny Instruction "
                "Encoders). Runs on a CPU in seconds."),
            inputs=[
                io.Combo.Input("base", options=list(demo.BASES), default="turns",
                               tooltip="turns: pretrained on one- and two-phase instructions (follows both phases "
                                       "by itself; adapters: tvp_fca_turns). single-phase: pretrained on one-phase "
                                       "instructions only (a second phase is what FCA must add; adapters: "
                                       "tvp_fca_full). svd-aid: an SVD that animates its first frame without "
                                       "any instruction (adapters: tvp_aid_full)."),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="The frozen base. Sample it with a latent from Tiny "
                                "Instruction Latent (its first frame is handed to the model clean at every step)."),
                io.Vae.Output(display_name="vae", tooltip="The base's latent code (4 x 4 pixels per latent cell, no "
                              "temporal compression) for VAE Decode, VAE Encode and Initial Frames Conditioning "
                              "(svd-aid: an image VAE, one latent per frame, for SVD_img2vid_Conditioning)."),
            ],
        )

    @classmethod
    def execute(cls, base) -> io.NodeOutput:
        model, vae = demo.instruction_models(base)
        return io.NodeOutput(model, vae)


class TinyInstructionEncoders(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_TinyInstructionEncoders",
            display_name="Tiny Instruction Encoders (AID, no download)",
            category=CAT,
            description=(
                "The encoders the svd-aid base and its AID adapters were trained with, as the real nodes take them "
                "(the miniature has no real ones): an image encoder for SVD_img2vid_Conditioning, a text encoder "
                "for AID Conditioning, and a rule-based stand-in for the multimodal LLM of MLLM State Prompt, which "
                "writes one state per phase of an instruction (the states the adapters were trained with). With "
                "real SVD, use the checkpoint's CLIP vision, a CLIP loader and Load MLLM or MLLM Endpoint instead."),
            inputs=[io.Model.Input("model", tooltip="The Tiny Instruction Models' svd-aid MODEL (before or after Load "
                                   "Adapters): it says how its images and texts are encoded.")],
            outputs=[
                io.Clip.Output(display_name="clip", tooltip="Text encoder for AID Conditioning (the instruction and "
                               "the state prompts)."),
                io.ClipVision.Output(display_name="clip_vision", tooltip="Image encoder for SVD_img2vid_Conditioning."),
                MLLM.Output(display_name="mllm", tooltip="For MLLM State Prompt: instructions of the demo's grammar "
                            "(" + GRAMMAR + ") to their states."),
            ],
        )

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        return io.NodeOutput(*demo.encoders(model))


class TinyInstructionScene(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_TinyInstructionScene",
            display_name="Tiny Instruction Scene",
            category=CAT,
            description=(
                "A scene the demo's models never saw (a held-out draw of the miniature world): its first frame, two "
                "instructions that fit it and the true clip of each. By default a two-phase instruction and the "
                "same with its phases swapped; or one motion each, the same object moved in each of those two "
                "directions alone. Two instructions for one start: a model that follows them draws two different "
                "motions."),
            inputs=[io.Int.Input("seed", default=0, min=0, max=100_000, tooltip="Which held-out scene."),
                    io.Combo.Input("pair", options=list(demo.world.DEMO_PAIRS), default=demo.world.DEMO_PAIRS[0],
                                   optional=True,
                                   tooltip="phases swapped: 'move the red circle left, then up' and 'move the red "
                                           "circle up, then left'. one motion each: 'move the red circle left' and "
                                           "'move the red circle up'.")],
            outputs=[
                io.Image.Output(display_name="first_frame", tooltip="The first frame [1, 32, 32, 3]."),
                io.String.Output(display_name="instruction", tooltip="The first instruction for the scene."),
                io.String.Output(display_name="swapped_instruction", tooltip="The second: the first with its phases "
                                 "swapped, or (one motion each) the other direction alone."),
                io.Image.Output(display_name="truth", tooltip="The true clip of instruction (8 frames)."),
                io.Image.Output(display_name="swapped_truth", tooltip="The true clip of swapped_instruction."),
            ],
        )

    @classmethod
    def execute(cls, seed, pair=None) -> io.NodeOutput:
        return io.NodeOutput(*demo.scene(int(seed), pair or demo.world.DEMO_PAIRS[0]))


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


NODES = [TinyInstructionModels, TinyInstructionEncoders, TinyInstructionScene, TinyInstructionPrompt, TinyInstructionLatent]
