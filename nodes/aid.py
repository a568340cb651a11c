"""AID Conditioning: an instruction and its state prompts added to SVD's image-to-video conditioning, for a frozen
SVD with AID adapters (Load Adapters, or Train Adapters with kind ``aid``).

The instruction and the states are encoded here with the connected text encoder and travel in the conditioning as
adapter conditions (``attach.add_adapter_conds``): the instruction as ``[1, L, D]``, the states as one row per video
frame (SVD's frames are the batch), each frame holding the state the schedule gives it. The AID adapters' DQFormer
turns them into cross-attention tokens inside every model call. The negative output is SVD's negative with zero
instruction and state features: what training with text dropout learns as "no text"; the Dual CFG Guider then
makes its image-only prediction the same way.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..adapters import aid
from .binding.attach import add_adapter_conds
from .common import CATEGORY, VideoAdapterError
from .binding.host import describe
from .binding.aid import SVD_LATENT_CHANNELS, check_svd_conditioning
from .binding.aid import _split, aid_adapters, instruction_conds, SEPARATOR



class AIDConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_AIDConditioning",
            display_name="AID Conditioning (SVD)",
            category=f"{CATEGORY}/aid",
            description=(
                "Adds an instruction (\"put the corn in the pot\") and its state prompts (MLLM State Prompt's "
                "schedule) to SVD's image-to-video conditioning, for an SVD with AID adapters. Sample with the Dual "
                "CFG Guider (image and text scales) or any CFG sampler. For training, give one instruction line and "
                "one schedule per clip."),
            inputs=[
                io.Conditioning.Input("positive", tooltip="Positive of SVD_img2vid_Conditioning (one entry per clip "
                                      "for training)."),
                io.Conditioning.Input("negative", tooltip="Negative of the same node."),
                io.Clip.Input("clip", tooltip="The text encoder the AID adapters were trained with."),
                io.String.Input("instruction", multiline=True, default="move the red square left, then up",
                                tooltip="The instruction; several lines: one per positive entry (training clips)."),
                io.String.Input("states", multiline=True, default="",
                                tooltip='State prompts by frame, lines like "0": "...", "7": "..." (MLLM State Prompt '
                                        f'gives them); one schedule per clip separated by lines of {SEPARATOR}. Empty: '
                                        "the instruction alone."),
                io.Int.Input("video_frames", default=14, min=1, max=4096,
                             tooltip="The video length (video_frames of SVD_img2vid_Conditioning)."),
                io.Model.Input("model", optional=True,
                               tooltip="The SVD with AID adapters (Load Adapters): checks the text encoder and the "
                                       "state prompts against what the adapters were trained with."),
                io.Conditioning.Input("instructions", optional=True,
                                      tooltip="Instructions already encoded, one entry per positive entry (Load "
                                              "Training Clips' captions: each clip's caption is its instruction). "
                                              "Replaces the instruction text when connected."),
            ],
            outputs=[io.Conditioning.Output(display_name="positive",
                                            tooltip="SVD's positive with the instruction and state features."),
                     io.Conditioning.Output(display_name="negative",
                                            tooltip="SVD's negative with zero instruction features (AID's no-text)."),
                     io.String.Output(display_name="summary", tooltip="What was added, per entry.")],
        )

    @classmethod
    def execute(cls, positive, negative, clip, instruction, states, video_frames, model=None,
                instructions=None) -> io.NodeOutput:
        if model is not None:
            host = describe(model, "model")
            if host.family != "svd":
                raise VideoAdapterError(f"model is {host.model_config}; AID Conditioning is for SVD with AID adapters")
        if not positive:
            raise VideoAdapterError("positive is empty: connect SVD_img2vid_Conditioning's positive")
        check_svd_conditioning(positive, "positive", model)
        check_svd_conditioning(negative, "negative", model)
        if instructions:
            given = [t[row] for t, _ in instructions for row in range(t.shape[0])]
            instructions, label = given, f"{len(given)} encoded instruction(s)"
        else:
            instructions = _split(instruction, None) if len(positive) > 1 else [instruction.strip()]
            if not instructions or not instructions[0]:
                raise VideoAdapterError("instruction is empty")
            label = f"instruction {instructions[0]!r}" + (f" (+{len(instructions) - 1} more)" if len(instructions) > 1
                                                          else "")
        schedules = _split(states, SEPARATOR)
        frames = int(video_frames)
        conds = instruction_conds(clip, instructions, schedules, len(positive), frames)
        width = conds[0][aid.TEXT_COND].shape[-1]
        adapters = aid_adapters(model) if model is not None else None
        if model is not None and adapters is None:
            raise VideoAdapterError("model has no AID adapters: load them with Load Adapters first")
        note = ""
        if adapters is not None:
            c = adapters.config
            if width != c.text_dim:
                raise VideoAdapterError(f"clip gives text features of width {width}; these AID adapters were trained "
                                        f"with a text encoder of width {c.text_dim}: connect that encoder")
            if schedules and not c.state_prompts:
                note = "; these adapters were trained without state prompts, so the states are not used"
        out = []
        for entry, extra in zip(positive, conds):
            out.extend(add_adapter_conds([entry], extra))
        zero = {k: torch.zeros_like(v) for k, v in conds[0].items()}
        neg = add_adapter_conds(negative, zero)
        summary = (f"{len(out)} entr{'y' if len(out) == 1 else 'ies'}: {label}"
                   + (f"; {len(schedules)} state schedule(s) over {frames} frames" if schedules
                      else "; no state prompts")
                   + note)
        return io.NodeOutput(out, neg, summary)


class SVDClipConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_SVDClipConditioning",
            display_name="SVD Conditioning per Clip",
            category=f"{CATEGORY}/aid",
            description=(
                "SVD's image-to-video conditioning for every image of a batch, one entry each: what training on a "
                "folder of clips needs (each clip sees its own first frame). The same conditions as "
                "SVD_img2vid_Conditioning makes for one image: the CLIP-vision image embedding, the VAE latent of "
                "the frame, fps, motion bucket and augmentation."),
            inputs=[
                io.ClipVision.Input("clip_vision", tooltip="SVD's image encoder (the checkpoint's CLIP_VISION)."),
                io.Vae.Input("vae", tooltip="SVD's VAE."),
                io.Image.Input("first_frames", tooltip="One first frame per clip (Load Training Clips' first_frames)."),
                io.Int.Input("width", default=1024, min=16, max=8192, step=8,
                             tooltip="Width the frames are resized to (the clips' width)."),
                io.Int.Input("height", default=576, min=16, max=8192, step=8,
                             tooltip="Height the frames are resized to (the clips' height)."),
                io.Int.Input("motion_bucket_id", default=127, min=1, max=1023,
                             tooltip="SVD's motion bucket (more motion when higher), as in SVD_img2vid_Conditioning."),
                io.Int.Input("fps", default=6, min=1, max=1024, tooltip="SVD's frame-rate condition."),
                io.Float.Input("augmentation_level", default=0.0, min=0.0, max=10.0, step=0.01,
                               tooltip="Noise added to the frames before encoding, as SVD's augmentation."),
            ],
            outputs=[io.Conditioning.Output(display_name="positive", tooltip="One entry per first frame."),
                     io.Conditioning.Output(display_name="negative", tooltip="SVD's no-image condition per frame.")],
        )

    @classmethod
    def execute(cls, clip_vision, vae, first_frames, width, height, motion_bucket_id, fps,
                augmentation_level) -> io.NodeOutput:
        import comfy.utils

        positive, negative = [], []
        values = {"motion_bucket_id": int(motion_bucket_id), "fps": int(fps),
                  "augmentation_level": float(augmentation_level)}
        for i in range(first_frames.shape[0]):
            image = first_frames[i:i + 1]
            embed = clip_vision.encode_image(image).image_embeds.unsqueeze(0)
            pixels = comfy.utils.common_upscale(image.movedim(-1, 1), int(width), int(height), "bilinear",
                                                "center").movedim(1, -1)[:, :, :, :3]
            if augmentation_level > 0:
                pixels = pixels + torch.randn_like(pixels) * float(augmentation_level)
            latent = vae.encode(pixels)
            channels = int(getattr(vae, "latent_channels", SVD_LATENT_CHANNELS))
            if latent.ndim != 4 or latent.shape[1] != channels:
                raise VideoAdapterError(
                    f"vae: it encodes a frame to latents of shape {list(latent.shape)}; SVD takes its image VAE's "
                    f"[1, {channels}, h, w] latents: connect SVD's VAE (the checkpoint's VAE output), not "
                    "a video VAE")
            positive.append([embed, {**values, "concat_latent_image": latent}])
            negative.append([torch.zeros_like(embed), {**values, "concat_latent_image": torch.zeros_like(latent)}])
        return io.NodeOutput(positive, negative)


NODES = [AIDConditioning, SVDClipConditioning]
