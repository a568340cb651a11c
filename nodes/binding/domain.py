"""The pack's small domain model (``adapters/domain_model.py``) as a native ComfyUI MODEL: its latent format,
model config, base model and patcher, and the shared helpers the domain-model and dataset nodes use (prior family,
clip latents, caption batches)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import comfy.supported_models_base
import comfy.utils

from ...adapters.domain_model import (FAMILY_SPECS, DomainModelConfig, DomainVideoModel, frames_context_to_video,
                                      frames_to_video, size_config, sobel_edges, video_to_frames)
from ...adapters.protocol import VideoAdapterError, text_conditional
from .host import describe




class VideoAdaptersSynthetic(comfy.latent_formats.LatentFormat):
    """The pack's synthetic latent space (family ``synthetic``: the tiny demo pair, the Table-1 miniature).

    Latents are a fixed linear code of the video (``adapters/synthetic_video.synthetic_codec``: a lapped PCA code of
    8x8 cells), whose colour directions give the preview colours below: previews and Latent Preview Decode show the video.
    """

    latent_channels = 16
    latent_dimensions = 3
    scale_factor = 1.0

    def __init__(self):
        from ...adapters.synthetic_video import synthetic_codec

        self.latent_rgb_factors = synthetic_codec().unproj.t().tolist()  # [16, 3]
        self.latent_rgb_factors_bias = [0.0, 0.0, 0.0]


# kept for callers of this module: the latent-space names live in host.py

# Extra conditioning keys (CONDITIONING dict entries set by VA_DomainModelConditioning).
FIRST_FRAME_KEY = "va_first_frame"
EDGE_SOURCE_KEY = "va_edge_source"



# ----------------------------------------------------------------------------------------------------
# the prior: family and parameterisation


def prior_family(prior, label: str = "prior_model") -> str:
    """The latent space a domain model for ``prior`` lives in (the family stored in domain-model files)."""
    return describe(prior, label).require_latent_space()


def prior_parameterisation(prior) -> str:
    """What a domain model for ``prior`` predicts: the prior's own prediction (EDM-scaled v is not supported)."""
    return describe(prior, "prior_model").require_prediction("a domain model", allow_v_edm=False)


# ----------------------------------------------------------------------------------------------------
# the native MODEL


class DomainModelFamily(comfy.supported_models_base.BASE):
    """Model config of a domain model: the prior's latent format and sampling settings, no UNet creation."""

    unet_config = {"disable_unet_model_creation": True}
    unet_extra_config = {}
    supported_inference_dtypes = [torch.float32, torch.bfloat16, torch.float16]
    memory_usage_factor = 1.0

    def __init__(self, prior_config):
        super().__init__({"disable_unet_model_creation": True})
        self.latent_format = prior_config.latent_format
        self.sampling_settings = dict(getattr(prior_config, "sampling_settings", {}))


class DomainDiffusionModel(nn.Module):
    """The ``diffusion_model`` ComfyUI calls: ``forward(x, timesteps, context, **kwargs)``.

    ComfyUI hands it ``calculate_input(sigma, x)`` and ``timestep(sigma)``; the domain model wants the
    sampler's ``x`` and ``sigma``. Flow: the input is unscaled and the timestep linear in sigma; eps / v:
    the input was divided by sqrt(1 + sigma^2), which the domain model does itself, so it is undone here.
    The output (velocity, noise or v) is what ComfyUI's ``calculate_denoised`` expects for the prior's
    model type.
    """

    def __init__(self, net: DomainVideoModel, model_sampling):
        super().__init__()
        self.net = net
        self.model_sampling_ref = [model_sampling]  # not a submodule: the BaseModel owns it

    @property
    def dtype(self):
        return self.net.dtype

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        ms = self.model_sampling_ref[0]
        if isinstance(ms, comfy.model_sampling.CONST):
            scale = float(ms.timestep(torch.ones(())))  # flow timesteps are linear in sigma
            return t.float() / scale
        return ms.sigma(t.float())

    def forward(self, x, timesteps, context=None, control=None, transformer_options={}, **kwargs):
        cfg = self.net.config
        sigma = self._sigma(timesteps).to(x.device)
        if cfg.parameterisation in ("eps", "v"):
            x = x * torch.sqrt(1.0 + sigma.float() ** 2).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        chunks = transformer_options.get("cond_or_uncond") or [0]
        frames = x.ndim == 4
        if frames:  # frames-in-batch families: one video per cond chunk
            x = frames_to_video(x, len(chunks))
            sigma = sigma[:: sigma.shape[0] // len(chunks)]
            if context is not None:
                context = frames_context_to_video(context, len(chunks))
        b = x.shape[0]
        mask = None
        with_text = text_conditional(transformer_options, chunks)
        if context is not None and not all(with_text):
            per = b // len(chunks)
            keep = torch.tensor([t for t in with_text for _ in range(per)], device=x.device)
            mask = keep[:, None].expand(b, context.shape[1])
        first_frame = kwargs.get("first_frame")
        edges = kwargs.get("edges")
        if frames:
            first_frame = None if first_frame is None else first_frame[:: first_frame.shape[0] // len(chunks)]
            edges = None if edges is None else frames_to_video(edges, len(chunks))
        out = self.net(x, sigma, context, context_mask=mask,
                       first_frame=first_frame if cfg.first_frame_cond else None,
                       edges=edges if cfg.edge_cond else None)
        return video_to_frames(out) if frames else out


class DomainBaseModel(comfy.model_base.BaseModel):
    """A ComfyUI BaseModel around a domain model, with the prior's latent format and model sampling."""

    def __init__(self, net: DomainVideoModel, model_config, model_type, model_sampling, device=None):
        super().__init__(DomainModelFamily(model_config), model_type=model_type, device=device)
        self.model_sampling = model_sampling
        self.diffusion_model = DomainDiffusionModel(net, self.model_sampling)
        self.domain_config = net.config

    def extra_conds(self, **kwargs):
        out = super().extra_conds(**kwargs)
        noise = kwargs.get("noise")
        ff = kwargs.get(FIRST_FRAME_KEY)
        if ff is not None and self.domain_config.first_frame_cond:
            ff = self.process_latent_in(ff.float())
            ff = ff[:, :, :1] if ff.ndim == 5 else ff[:1]
            out["first_frame"] = comfy.conds.CONDRegular(ff)
        src = kwargs.get(EDGE_SOURCE_KEY)
        if src is not None and self.domain_config.edge_cond:
            lat = self.process_latent_in(src.float())
            video = lat if lat.ndim == 5 else frames_to_video(lat)
            edges = sobel_edges(video)
            if noise is not None and noise.ndim == 4:
                edges = video_to_frames(edges)
            out["edges"] = comfy.conds.CONDRegular(edges)
        return out


def build_domain_patcher(net: DomainVideoModel, prior, label: str = "prior_model"):
    """A MODEL (ModelPatcher) for ``net`` in ``prior``'s latent space, after checking they match."""
    family = prior_family(prior, label)
    if net.config.family != family:
        raise VideoAdapterError(
            f"the domain model was trained for '{net.config.family}' latents, but {label} uses "
            f"'{family}' ({type(prior.model.latent_format).__name__}); they cannot be combined")
    want = prior_parameterisation(prior)
    if net.config.parameterisation != want:
        raise VideoAdapterError(
            f"the domain model predicts '{net.config.parameterisation}' but {label} is a '{want}' model")
    # the prior's sampling object as it is now (a ModelSamplingSD3 / shift patch included)
    return domain_patcher(net, prior.model.model_config, prior.model.model_type,
                          copy.deepcopy(prior.get_model_object("model_sampling")))


def domain_patcher(net: DomainVideoModel, model_config, model_type, model_sampling):
    """A MODEL (ModelPatcher) for ``net`` with the given latent format / sampling settings (``model_config``),
    model type and ``model_sampling`` object."""
    net.requires_grad_(False).eval()
    base = DomainBaseModel(net, model_config, model_type, model_sampling)
    return comfy.model_patcher.ModelPatcher(base, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


# ----------------------------------------------------------------------------------------------------
# training data from ComfyUI types


def text_batch(conditioning, clips: int, text_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CONDITIONING -> (context ``[clips, L, D]``, valid-token mask ``[clips, L]``).

    The entries' tensors are stacked along the batch (shorter ones zero-padded and masked): one caption in
    total is used for every clip, otherwise there must be exactly one caption per clip.
    """
    tensors = [c[0] for c in conditioning]
    if not tensors:
        raise VideoAdapterError("captions: the CONDITIONING is empty")
    for t in tensors:
        if t.ndim != 3 or t.shape[-1] != text_dim:
            raise VideoAdapterError(
                f"captions: text features of shape {list(t.shape)} do not fit this prior's text width {text_dim} "
                "(use the prior's own text encoder)")
    length = max(t.shape[1] for t in tensors)
    ctx, mask = [], []
    for t in tensors:
        pad = length - t.shape[1]
        ctx.append(torch.nn.functional.pad(t.float(), (0, 0, 0, pad)))
        m = torch.zeros(t.shape[0], length, dtype=torch.bool)
        m[:, : t.shape[1]] = True
        mask.append(m)
    ctx, mask = torch.cat(ctx), torch.cat(mask)
    if ctx.shape[0] == 1:
        return ctx.expand(clips, -1, -1).clone(), mask.expand(clips, -1).clone()
    if ctx.shape[0] != clips:
        raise VideoAdapterError(
            f"captions: {ctx.shape[0]} captions for {clips} clips; give one caption for all clips or one per clip "
            "(Conditioning Combine keeps one entry per caption)")
    return ctx, mask


def clip_latents(prior, samples: torch.Tensor, family: str, frames_per_clip: int = 0) -> torch.Tensor:
    """LATENT samples -> processed latents ``[N, C, T, H, W]`` (frames-in-batch families: consecutive runs of
    ``frames_per_clip`` frames are clips; 0 means the whole batch is one clip)."""
    spec = FAMILY_SPECS[family]
    if spec["layout"] == "frames":
        if samples.ndim != 4:
            raise VideoAdapterError(f"{family} clips are frames in the batch [T, C, H, W], got {list(samples.shape)}")
        per = int(frames_per_clip) or samples.shape[0]
        if samples.shape[0] % per:
            raise VideoAdapterError(f"training clips: {samples.shape[0]} frames do not split into clips of {per}")
        samples = frames_to_video(samples, samples.shape[0] // per)
    if samples.ndim != 5 or samples.shape[1] != spec["latent_channels"]:
        raise VideoAdapterError(
            f"training clips: expected {family} latents [clips, {spec['latent_channels']}, frames, height, width] "
            f"from VAE Encode with the prior's VAE, got {list(samples.shape)}")
    return prior.model.process_latent_in(samples.float())


def model_config_for(prior, family: str, size: str, attention: str, first_frame: bool, edges: bool) -> DomainModelConfig:
    return size_config(size, family, prior_params=describe(prior).parameters or None, attention=attention,
                       first_frame_cond=bool(first_frame), edge_cond=bool(edges),
                       parameterisation=prior_parameterisation(prior))


# ----------------------------------------------------------------------------------------------------
# nodes


