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


import torch

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

from ..adapters.domain_model import (ATTENTION_MODES, FAMILY_SPECS, SIZES, DomainModelConfig, build_domain_model, check_latent_code, clip_batches, latent_code_meta, load_domain_model, save_domain_model)
from ..adapters.files import AdapterFileError, read_metadata
from ..adapters.plots import loss_curve_image
from ..adapters.training import TrainConfig, load_checkpoint
from . import MODEL_FOLDER
from .binding.domain import (EDGE_SOURCE_KEY, FIRST_FRAME_KEY, build_domain_patcher, clip_latents, model_config_for,
                             prior_family, text_batch)
from .binding.host import describe
from .binding.training import (check_accumulation, resolve_training_dtype, resume_checkpoint, run_training,
                               save_result, training_noise, training_outputs)
from .common import (CATEGORY, FRAMES_PER_CLIP_KEY, VideoAdapterError, model_files, TRAINED_FILE_NAME_TOOLTIP,
                     training_memory_inputs)

CAT_DOMAIN = f"{CATEGORY}/domain_model"


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
                                tooltip=TRAINED_FILE_NAME_TOOLTIP),
                io.Combo.Input("attention", options=list(ATTENTION_MODES), default="factorised", optional=True,
                               tooltip="factorised: spatial then temporal attention (cheaper); full: all tokens."),
                io.Boolean.Input("first_frame_cond", default=False, optional=True,
                                 tooltip="Also condition on the clip's first latent frame (image-to-video)."),
                io.Boolean.Input("edge_cond", default=False, optional=True,
                                 tooltip="Also condition on Sobel-x edges of the latents (structure guidance)."),
                io.Combo.Input("resume_from", options=["none"] + model_files(), default="none", optional=True,
                               tooltip="A *_checkpoint.safetensors to continue from: weights, optimizer, random state "
                                       "and loss history are restored, so the loss curve continues exactly."),
                *training_memory_inputs("the model's"),
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
                resume_from="none", gradient_checkpointing=True, training_dtype="auto",
                grad_accumulation=1) -> io.NodeOutput:
        family = prior_family(prior_model)
        spec = FAMILY_SPECS[family]
        resume_path, ck_meta = resume_checkpoint(resume_from, "domain model", family, model_config=None)
        folder, model_path, ckpt_path = training_outputs(file_name, resume_path)
        if resume_path:
            config = DomainModelConfig.from_dict(ck_meta["model_config"])
        else:
            config = model_config_for(prior_model, family, size, attention, first_frame_cond, edge_cond)

        device = comfy.model_management.get_torch_device()
        parameterisation = config.parameterisation
        check_accumulation(batch_size, grad_accumulation)
        tcfg = TrainConfig(steps=int(steps), lr=float(learning_rate), batch_size=int(batch_size), seed=int(seed),
                           cond_dropout=float(cond_dropout), checkpoint_every=int(checkpoint_every),
                           grad_accumulation=int(grad_accumulation),
                           training_dtype=resolve_training_dtype(training_dtype, device, ck_meta),
                           **training_noise(prior_model))

        with torch.inference_mode(False):
            x0 = clip_latents(prior_model, clips["samples"], family, clips.get(FRAMES_PER_CLIP_KEY, 0)).clone()
            ctx, mask = text_batch(captions, x0.shape[0], spec["text_dim"])
            ctx, mask = ctx.clone(), mask.clone()
            batch_fn = clip_batches(x0, ctx, mask, config)
            torch.manual_seed(int(seed))
            net = build_domain_model(config).to(device)
            net.gradient_checkpointing = bool(gradient_checkpointing)

        meta = {"family": family, "model_config": config.to_dict(), "prior": describe(prior_model).summary(),
                **latent_code_meta(family)}
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
        try:
            check_latent_code(meta, model_name)
        except AdapterFileError as e:
            raise VideoAdapterError(str(e)) from None
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
                    net = build_domain_model(config)
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
        summary = (f"{model_name}: {config.family} domain model ({config.preset or 'custom'} size, "
                   f"{config.architecture_text()}, {n / 1e6:.1f}M parameters), {config.parameterisation}; {info}")
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
