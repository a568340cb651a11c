"""Small domain video model (Video Adapter): train it on your clips inside ComfyUI, load it, and use it as
a native MODEL.

The domain model (``adapters/domain_model.py``) is trained in the latent space and noise parameterisation of
a frozen prior. Here it becomes a plain ComfyUI ``MODEL``: a ``BaseModel`` whose latent format and
``model_sampling`` are the prior's (flow shift included) and whose diffusion model is a thin wrapper with
the signature ComfyUI calls, inside a ``ModelPatcher``. KSampler, SamplerCustomAdvanced, the Score Composer,
previews and model management therefore treat it like any other model of the prior's family.

Conditioning at sampling time:

* text: the same CONDITIONING the prior uses (Wan: umT5 features). The unconditional branch of
  classifier-free guidance uses the model's learned null text (what it saw under condition dropout), so
  the negative prompt's text does not reach the domain model;
* first frame / Sobel edges (models trained with them): attach the latents with
  ``VA_DomainModelConditioning``; they are read through the model's ``extra_conds``.
"""

from __future__ import annotations

import copy
import os

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
import folder_paths
from comfy_api.latest import io

from ..adapters.domain_model import (ATTENTION_MODES, FAMILY_SPECS, SIZES, DomainModelConfig, DomainVideoModel,
                                     clip_batches,
                                     frames_context_to_video, frames_to_video, load_domain_model, save_domain_model,
                                     size_config, sobel_edges, video_to_frames)
from ..adapters.files import AdapterFileError, read_metadata
from ..adapters.training import (TrainConfig, default_sigma_sampling, load_checkpoint,
                                 loss_curve_image)
from . import MODEL_FOLDER
from .common import (CATEGORY, FRAMES_PER_CLIP_KEY, VideoAdapterError, model_files, resume_checkpoint, run_training,
                     save_result, training_noise, training_outputs)
from .attach import text_conditional
from .host import LATENT_SPACES, describe

CAT_DOMAIN = f"{CATEGORY}/domain_model"



class VideoAdaptersSynthetic(comfy.latent_formats.LatentFormat):
    """The pack's synthetic latent space (family ``synthetic``: the tiny demo pair, the Table-1 miniature).

    Latents are a fixed linear code of 4x4-pooled RGB (``adapters/synthetic_video.synthetic_codec``), so the
    preview colours below are that code's exact inverse: previews and Latent Preview Decode show the video.
    """

    latent_channels = 16
    latent_dimensions = 3
    scale_factor = 1.0

    def __init__(self):
        from ..adapters.synthetic_video import synthetic_codec

        self.latent_rgb_factors = synthetic_codec().unproj.t().tolist()  # [16, 3]
        self.latent_rgb_factors_bias = [0.0, 0.0, 0.0]


# kept for callers of this module: the latent-space names live in host.py
FAMILY_BY_LATENT_FORMAT = LATENT_SPACES

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
        return self.net.patch_embed.weight.dtype

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


class TrainDomainModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_TrainDomainModel",
            display_name="Train Domain Model (Video Adapter)",
            category=CAT_DOMAIN,
            description=(
                "Trains a small text-to-video diffusion model on your clips in the prior's latent space and "
                "noise parameterisation (Video Adapter), so its score can be composed with the frozen prior. "
                "Saves <name>.safetensors and <name>_checkpoint.safetensors in models/video_adapters; stop it "
                "any time with Cancel (the checkpoint keeps the progress) and continue with resume_from."),
            inputs=[
                io.Model.Input("prior_model", tooltip="The frozen prior (for example Wan 2.1): gives the latent space, "
                               "the noise schedule and the text width. It is not trained and not run."),
                io.Latent.Input("clips", tooltip="Training clips from VAE Encode with the prior's VAE: a batch of "
                                "videos [clips, C, frames, H, W] (SD-style families: the frames of one clip)."),
                io.Conditioning.Input("captions", tooltip="Captions encoded with the prior's text encoder: one for "
                                      "all clips, or one per clip in clip order (combine them with Conditioning "
                                      "Combine)."),
                io.Combo.Input("size", options=list(SIZES), default="xs",
                               tooltip="xs / s / m: about 1.25 %, 2.5 % and 6 % of the prior's parameters (the "
                                       "paper's sizes); tiny: a minimal model for tests and demos."),
                io.Int.Input("steps", default=2000, min=1, max=1_000_000,
                             tooltip="Total optimisation steps, counting those of a resumed checkpoint."),
                io.Float.Input("learning_rate", default=1e-4, min=1e-7, max=1e-1, step=1e-5, round=1e-7,
                               tooltip="AdamW learning rate."),
                io.Int.Input("batch_size", default=1, min=1, max=256, tooltip="Clips per step."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed of initialisation, clip order, noise levels, noise and dropout: the same "
                                     "seed gives the same run."),
                io.Float.Input("cond_dropout", default=0.1, min=0.0, max=1.0, step=0.01,
                               tooltip="Probability of training a clip without its caption; this is what makes "
                                       "classifier-free guidance (cfg > 1) work."),
                io.Int.Input("checkpoint_every", default=250, min=0, max=1_000_000,
                             tooltip="Write the checkpoint every this many steps (0: only when stopped and at the end)."),
                io.String.Input("file_name", default="domain/my_style",
                                tooltip="Output name inside models/video_adapters (no extension); existing files of "
                                        "that name are replaced."),
                io.Combo.Input("attention", options=list(ATTENTION_MODES), default="factorised", optional=True,
                               tooltip="factorised: spatial then temporal attention (cheaper); full: all tokens."),
                io.Boolean.Input("first_frame_cond", default=False, optional=True,
                                 tooltip="Also condition on the clip's first latent frame (image-to-video)."),
                io.Boolean.Input("edge_cond", default=False, optional=True,
                                 tooltip="Also condition on Sobel-x edges of the latents (structure guidance)."),
                io.Combo.Input("resume_from", options=["none"] + model_files(), default="none", optional=True,
                               tooltip="A *_checkpoint.safetensors to continue from: weights, optimizer, random state "
                                       "and loss history are restored, so the loss curve continues exactly."),
            ],
            outputs=[
                io.Model.Output(display_name="domain_model", tooltip="The trained model as a native MODEL in the "
                                "prior's latent space (KSampler, Score Composer, ...)."),
                io.String.Output(display_name="file_name", tooltip="The saved model file, relative to "
                                 "models/video_adapters (for Load Domain Model)."),
                io.Image.Output(display_name="loss_curve", tooltip="Training loss per step (light) and its moving "
                                "average (dark)."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, prior_model, clips, captions, size, steps, learning_rate, batch_size, seed, cond_dropout,
                checkpoint_every, file_name, attention="factorised", first_frame_cond=False, edge_cond=False,
                resume_from="none") -> io.NodeOutput:
        family = prior_family(prior_model)
        spec = FAMILY_SPECS[family]
        folder, model_path, ckpt_path = training_outputs(file_name)
        resume_path, ck_meta = resume_checkpoint(resume_from, "domain model", family, model_config=None)
        if resume_path:
            config = DomainModelConfig.from_dict(ck_meta["model_config"])
        else:
            config = model_config_for(prior_model, family, size, attention, first_frame_cond, edge_cond)

        device = comfy.model_management.get_torch_device()
        parameterisation = config.parameterisation
        tcfg = TrainConfig(steps=int(steps), lr=float(learning_rate), batch_size=int(batch_size), seed=int(seed),
                           cond_dropout=float(cond_dropout), checkpoint_every=int(checkpoint_every),
                           **training_noise(prior_model))

        with torch.inference_mode(False):
            x0 = clip_latents(prior_model, clips["samples"], family, clips.get(FRAMES_PER_CLIP_KEY, 0)).clone()
            ctx, mask = text_batch(captions, x0.shape[0], spec["text_dim"])
            ctx, mask = ctx.clone(), mask.clone()
            batch_fn = clip_batches(x0, ctx, mask, config)
            torch.manual_seed(int(seed))
            net = DomainVideoModel(config).to(device)

        meta = {"family": family, "model_config": config.to_dict(), "prior": describe(prior_model).summary()}
        result = run_training(tcfg, net, net, batch_fn, parameterisation, checkpoint_path=ckpt_path,
                              resume_from=resume_path, checkpoint_meta=meta)

        summary = result.summary(tcfg)
        summary.update({"prior": meta["prior"], "clips": int(x0.shape[0]), "flow_shift": tcfg.flow_shift})
        rel = save_result(lambda path: save_domain_model(path, net, summary), model_path, folder)
        patcher = build_domain_patcher(net, prior_model)
        return io.NodeOutput(patcher, rel, loss_curve_image(result.losses))


class LoadDomainModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_LoadDomainModel",
            display_name="Load Domain Model (Video Adapter)",
            category=CAT_DOMAIN,
            description=("Loads a small domain model from models/video_adapters as a native MODEL in the prior's "
                         "latent space and noise schedule. A model trained for another latent space is refused."),
            inputs=[
                io.Combo.Input("model_name", options=model_files(),
                               tooltip="A domain model (or a training checkpoint) in models/video_adapters."),
                io.Model.Input("prior_model", tooltip="The prior the domain model was trained with (same family): "
                               "gives latent format and model sampling (for example Wan's flow shift)."),
            ],
            outputs=[
                io.Model.Output(display_name="domain_model", tooltip="The domain model as a native MODEL."),
                io.String.Output(display_name="summary", tooltip="Family, size and training summary of the file."),
            ],
        )

    @classmethod
    def execute(cls, model_name, prior_model) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise(MODEL_FOLDER, model_name)
        family = prior_family(prior_model)
        try:
            meta = read_metadata(path)
        except AdapterFileError as e:
            raise VideoAdapterError(f"{model_name}: {e}") from None
        file_family = meta.get("family")
        if file_family != family:
            raise VideoAdapterError(
                f"{model_name} was trained for '{file_family}' latents, but prior_model "
                f"({describe(prior_model).model_config}, {describe(prior_model).latent_format} "
                f"latents) is '{family}': latent spaces differ. Load it with a '{file_family}' prior, or train a "
                f"domain model on this prior")
        try:
            if meta.get("kind") == "checkpoint" and "model_config" in meta:
                ck = load_checkpoint(path)
                config = DomainModelConfig.from_dict(meta["model_config"])
                with torch.device("meta"):
                    net = DomainVideoModel(config)
                net.load_state_dict(ck.params, strict=True, assign=True)
                info = f"checkpoint at step {ck.step}"
            else:
                net, meta = load_domain_model(path, expect_family=family)
                config = net.config
                tr = meta.get("training", {})
                info = f"{tr.get('steps', '?')} steps, final loss {tr.get('final_loss')}"
        except AdapterFileError as e:
            raise VideoAdapterError(f"{model_name}: {e}") from None
        patcher = build_domain_patcher(net, prior_model)
        n = sum(p.numel() for p in net.parameters())
        summary = (f"{model_name}: {config.family} domain model ({config.preset or 'custom'} size, {config.width} wide, "
                   f"{config.depth} blocks, {n / 1e6:.1f}M parameters), {config.parameterisation}; {info}")
        return io.NodeOutput(patcher, summary)


class DomainModelConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_DomainModelConditioning",
            display_name="Domain Model Conditioning",
            category=CAT_DOMAIN,
            description=("Attaches first-frame and edge guidance to a CONDITIONING for domain models trained with "
                         "first_frame_cond / edge_cond. Other models ignore these entries."),
            inputs=[
                io.Conditioning.Input("conditioning", tooltip="The prompt conditioning to extend."),
                io.Latent.Input("first_frame", optional=True,
                                tooltip="Latent whose first frame starts the video (VAE Encode of an image or clip)."),
                io.Latent.Input("edge_source", optional=True,
                                tooltip="Latent video whose Sobel-x edges guide the structure (same size as the output)."),
            ],
            outputs=[io.Conditioning.Output(tooltip="The conditioning with the guidance attached.")],
        )

    @classmethod
    def execute(cls, conditioning, first_frame=None, edge_source=None) -> io.NodeOutput:
        out = []
        for t, d in conditioning:
            d = dict(d)
            if first_frame is not None:
                d[FIRST_FRAME_KEY] = first_frame["samples"]
            if edge_source is not None:
                d[EDGE_SOURCE_KEY] = edge_source["samples"]
            out.append([t, d])
        return io.NodeOutput(out)


NODES = [TrainDomainModel, LoadDomainModel, DomainModelConditioning]
