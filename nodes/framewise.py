"""Framewise Prompts: per-frame text on Wan without training (AID's state prompts driving a Wan run).

Each prompt of a schedule (from MLLM State Prompt, or written by hand) is encoded once; in every Wan block the
video tokens of latent frame p then attend, in cross-attention, to the global prompt (the positive
conditioning, as always) plus the tokens of the state that holds at frame p, cross-faded over ``blend_frames``
latent frames at each boundary. The unconditional branch keeps the plain negative prompt. Installed through
the attach table's ``cross_context`` point with frame-wise tokens (``attach.FrameTokens``).
"""

from __future__ import annotations

from comfy_api.latest import io

from ..adapters import state_prompts as sp
from .binding.attach import Attachment, attach
from .common import CATEGORY, VideoAdapterError
from .binding.host import describe
from .binding.framewise import StateTokens


class FramewisePrompts(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_FramewisePrompts",
            display_name="Framewise Prompts (Wan)",
            category=f"{CATEGORY}/mllm",
            description=(
                "Per-frame prompts on Wan 2.1 / 2.2 (text- or image-to-video) without training: every latent frame's "
                "cross-attention sees the positive prompt plus its own state's prompt from the schedule (MLLM State "
                "Prompt's schedule, or lines like \"0\": \"...\", \"40\": \"...\"), cross-faded at the boundaries."),
            inputs=[
                io.Model.Input("model", tooltip="A Wan model."),
                io.Clip.Input("clip", tooltip="Wan's text encoder (umT5), the one that encodes the positive prompt."),
                io.String.Input("schedule", multiline=True, default='"0": "a closed box on a table",\n"40": "the box is open"',
                                tooltip='Frame-indexed prompts: "pixel frame": "prompt", one per line (MLLM State Prompt '
                                        'gives them).'),
                io.Int.Input("frames", default=81, min=1, max=4096,
                             tooltip="Video length in pixel frames (the length of the empty latent / WanImageToVideo)."),
                io.Int.Input("blend_frames", default=1, min=0, max=64,
                             tooltip="Latent frames over which one state cross-fades into the next (0: hard cuts)."),
                io.Int.Input("temporal_stride", default=4, min=1, max=16, optional=True,
                             tooltip="Pixel frames per latent frame (Wan: 4)."),
            ],
            outputs=[io.Model.Output(tooltip="The model with per-frame prompts; the input model is unchanged.")],
        )

    @classmethod
    def execute(cls, model, clip, schedule, frames, blend_frames, temporal_stride=4) -> io.NodeOutput:
        host = describe(model, "model")
        if host.architecture != "wan":
            raise VideoAdapterError(f"model is {host.model_config}; Framewise Prompts works with Wan DiT models "
                                    "(their cross-attention sees all frames' tokens)")
        current = model.get_model_object("diffusion_model.blocks.0.cross_attn")
        if any(isinstance(fn, StateTokens) for fn in getattr(current, "_fns", [])):
            raise VideoAdapterError("model already has Framewise Prompts; use one Framewise Prompts node with one "
                                    "schedule (put every state in it)")
        try:
            entries = sp.parse_schedule(schedule, frames=int(frames))
        except ValueError as e:
            raise VideoAdapterError(f"schedule: {e}") from None
        if not entries:
            raise VideoAdapterError('schedule is empty; write one prompt per state, like "0": "a closed box"')
        latent_frames = sp.latent_index(int(frames) - 1, int(temporal_stride)) + 1
        starts = [sp.latent_index(f, int(temporal_stride)) for f, _ in entries]
        if len(set(starts)) != len(starts) or starts[-1] >= latent_frames:
            raise VideoAdapterError(
                f"schedule frames {[f for f, _ in entries]} fall on latent frames {starts}: every prompt needs its own "
                f"latent frame below {latent_frames} (frames={frames}, {temporal_stride} pixel frames per latent frame)")
        raw = []
        for _, text in entries:
            cond = clip.encode_from_tokens_scheduled(clip.tokenize(text))
            raw.append(cond[0][0][:1])
        if raw[0].shape[-1] != host.text_width:
            raise VideoAdapterError(f"clip gives text features of width {raw[0].shape[-1]}, the model takes "
                                    f"{host.text_width}: connect the Wan text encoder (umT5)")
        weights = sp.frame_weights(starts, latent_frames, int(blend_frames))
        fn = StateTokens(raw, weights, model.get_model_object("diffusion_model").text_embedding)
        return io.NodeOutput(attach(model, None, [Attachment(None, "cross_context", fn)], label="model"))


NODES = [FramewisePrompts]
