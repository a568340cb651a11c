"""Nodes that make the pack runnable with no downloads: tiny default models and a latent preview decoder.

* ``VA_TinyTrainedPair``: the trained tiny prior/domain pair shipped in ``adapters/weights`` (made by
  ``python -m devtools.train_prior`` (the prior) and ``benchmarks/table1_miniature.py --ship`` (the domain
  model)), in the pack's synthetic latent space. The demo uses it.
* ``VA_TinyDemoModels``: real Wan 2.1 architectures (ComfyUI's own classes, loaded through its own
  state-dict loader, so they behave like any Wan MODEL) with deterministic random weights, at a size that
  runs on a CPU in seconds: for trying graphs built for Wan and for tests, not for pictures.
"""

from __future__ import annotations


import torch

import comfy.model_base
import comfy.sd
from comfy_api.latest import io

from .common import CATEGORY, VideoAdapterError
from .binding.demo import _text_embedding, tiny_wan_state_dict, trained_pair_models

CAT_DEMO = f"{CATEGORY}/demo"


class TinyDemoModels(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_TinyDemoModels",
            display_name="Tiny Demo Models (no download)",
            category=CAT_DEMO,
            description=("A tiny Wan 2.1-architecture prior and domain model and stand-in text embeddings, built "
                         "in memory, so the pack's workflows run on any machine without downloads. For trying "
                         "graphs and tests, not for pictures: the weights are deterministic random numbers."),
            inputs=[
                io.String.Input("prompt", default="a red ball bouncing", multiline=True,
                                tooltip="Turned into a deterministic stand-in embedding (no text encoder)."),
                io.String.Input("negative_prompt", default="", multiline=True,
                                tooltip="Turned into the stand-in embedding of the unconditional branch."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed of the tiny models' weights."),
            ],
            outputs=[
                io.Model.Output(display_name="domain_model", tooltip="Tiny Wan 2.1 T2V, 1 block."),
                io.Model.Output(display_name="prior_model", tooltip="Tiny Wan 2.1 T2V, 2 blocks."),
                io.Conditioning.Output(display_name="positive", tooltip="Stand-in embedding of prompt."),
                io.Conditioning.Output(display_name="negative", tooltip="Stand-in embedding of negative_prompt."),
            ],
        )

    @classmethod
    def execute(cls, prompt, negative_prompt, seed) -> io.NodeOutput:
        models = []
        for offset, layers in ((1, 1), (2, 2)):
            m = comfy.sd.load_diffusion_model_state_dict(tiny_wan_state_dict(seed * 10 + offset, layers))
            if m is None:
                raise VideoAdapterError("this ComfyUI did not recognise the tiny Wan 2.1 model; update ComfyUI")
            m.model.requires_grad_(False)
            models.append(m)
        return io.NodeOutput(models[0], models[1], _text_embedding(prompt), _text_embedding(negative_prompt))


class LatentPreviewDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_LatentPreviewDecode",
            display_name="Latent Preview Decode",
            category=CAT_DEMO,
            description=("Turns video latents into preview frames with the model family's linear latent-to-RGB "
                         "map (the one ComfyUI uses for sampler previews). Instant and VAE-free; coarse colours "
                         "at latent resolution, upscaled."),
            inputs=[
                io.Model.Input("model", tooltip="Any model of the latent's family (gives the latent-to-RGB map)."),
                io.Latent.Input("samples", tooltip="Video latents [B, C, T, H, W] or frames [N, C, H, W]."),
                io.Int.Input("upscale", default=8, min=1, max=16, tooltip="Nearest-neighbour upscale factor."),
            ],
            outputs=[io.Image.Output(tooltip="Frames [N, H, W, 3] in 0..1, for Create Video or Preview Image.")],
        )

    @classmethod
    def execute(cls, model, samples, upscale) -> io.NodeOutput:
        lf = model.model.latent_format
        if lf.latent_rgb_factors is None:
            raise VideoAdapterError(f"{type(lf).__name__} latents have no preview colours; use VAE Decode")
        x = samples["samples"].float()
        if x.ndim == 5:  # [B, C, T, H, W] -> [B*T, C, H, W]
            x = x.movedim(2, 1).reshape(-1, x.shape[1], x.shape[3], x.shape[4])
        factors = torch.tensor(lf.latent_rgb_factors, dtype=x.dtype)  # [C, 3]
        if factors.shape[0] != x.shape[1]:
            raise VideoAdapterError(
                f"the latent has {x.shape[1]} channels but {type(lf).__name__} previews need {factors.shape[0]}")
        rgb = torch.einsum("nchw,ck->nhwk", x, factors)
        if lf.latent_rgb_factors_bias is not None:
            rgb = rgb + torch.tensor(lf.latent_rgb_factors_bias, dtype=x.dtype)
        img = ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)
        img = img.repeat_interleave(upscale, 1).repeat_interleave(upscale, 2)
        return io.NodeOutput(img.contiguous())




class TinyTrainedPair(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        from ..adapters.synthetic_video import ATTRIBUTES, domain_caption_text

        words = "; ".join(f"{kind}: {', '.join(w.replace('_', ' ') for w in ws)}" for kind, ws in ATTRIBUTES)
        return io.Schema(
            node_id="VA_TinyTrainedPair",
            display_name="Tiny Trained Demo Pair (synthetic style)",
            category=CAT_DEMO,
            description=(
                "A trained tiny prior/domain pair that ships with the pack (no download): the prior learned a broad "
                "set of synthetic 64 x 64 videos of shapes in motion (their captions never say the colours or "
                "textures), the domain model, a third of its size, learned 16 clips of one 'sunset' style. "
                "Compose them with the Score Composer and decode with Synthetic Latent Decode. Made by "
                "devtools/train_prior.py (prior) and benchmarks/table1_miniature.py --ship (domain model)."),
            inputs=[
                io.String.Input("prompt", default=domain_caption_text(),
                                tooltip="Name one word per attribute (any order). " + words),
            ],
            outputs=[
                io.Model.Output(display_name="domain_model", tooltip="The small model of the 'sunset' style."),
                io.Model.Output(display_name="prior_model", tooltip="The broad prior (three times the domain model's size)."),
                io.Conditioning.Output(display_name="positive", tooltip="The prompt's caption features."),
                io.Conditioning.Output(display_name="negative", tooltip="Empty caption features: these models use "
                                       "their learned 'no caption' embedding for the unconditional branch."),
            ],
        )

    @classmethod
    def execute(cls, prompt) -> io.NodeOutput:
        from ..adapters.synthetic_video import SYNTHETIC_TEXT_DIM, caption_context, parse_caption

        try:
            tokens = parse_caption(prompt)
        except ValueError as e:
            raise VideoAdapterError(f"prompt: {e}") from None
        models = trained_pair_models()
        positive = [[caption_context(tokens, SYNTHETIC_TEXT_DIM), {}]]
        negative = [[torch.zeros(1, tokens.shape[1], SYNTHETIC_TEXT_DIM), {}]]
        return io.NodeOutput(models["domain"], models["prior"], positive, negative)


class SyntheticLatentDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_SyntheticLatentDecode",
            display_name="Synthetic Latent Decode",
            category=CAT_DEMO,
            description=("Decodes latents of the pack's synthetic space (the Tiny Trained Demo Pair) into frames with "
                         "its exact decoder, a lapped PCA patch code: every latent cell describes the 16 x 16 "
                         "window around its 8 x 8 patch, edges and textures included, and neighbouring windows "
                         "blend, so 8 x 8 latents give 64 x 64 frames without seams between the cells."),
            inputs=[io.Latent.Input("samples", tooltip="Synthetic-space video latents [B, 16, T, H, W].")],
            outputs=[io.Image.Output(tooltip="Frames [B*T, 8H, 8W, 3] in 0..1, for Create Video or Preview Image.")],
        )

    @classmethod
    def execute(cls, samples) -> io.NodeOutput:
        from ..adapters.synthetic_video import synthetic_codec

        codec = synthetic_codec()
        x = samples["samples"].float().cpu()
        if x.ndim != 5 or x.shape[1] != codec.latent_channels:
            raise VideoAdapterError(
                f"Synthetic Latent Decode needs synthetic-space video latents [B, {codec.latent_channels}, T, H, W], "
                f"got shape {tuple(x.shape)}; decode other latents with VAE Decode or Latent Preview Decode")
        rgb = codec.decode(x)  # [B, 3, T, H, W]
        return io.NodeOutput(rgb.permute(0, 2, 3, 4, 1).reshape(-1, rgb.shape[3], rgb.shape[4], 3).contiguous())


NODES = [TinyDemoModels, TinyTrainedPair, LatentPreviewDecode, SyntheticLatentDecode]
