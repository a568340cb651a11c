"""SimDA nodes: latent-shift attention for frame-wise models, adapter training on a frozen model, and
adapter loading. The patching itself lives in ``simda_patch.py``; adapters in ``adapters/``."""

from __future__ import annotations

import os

import torch

import comfy.conds
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..adapters import registry
from ..adapters.files import AdapterFileError, read_metadata
from ..adapters.latent_shift import MODES
from ..adapters.training import TrainConfig, loss_curve_image
from ..samplers import parameterisation
from . import MODEL_FOLDER
from .attach import ADAPTER_COND_PREFIX, adapter_conds, attach_adapters, check_adapters_fit, new_adapters
from .common import (CATEGORY, FRAMES_PER_CLIP_KEY, VideoAdapterError, has_image, model_files, resume_checkpoint,
                     run_training, save_result, training_noise, training_outputs, without_image)
from .host import describe, static_clone
from .simda_patch import UNET_BLOCK_KINDS, apply_latent_shift

CAT_SIMDA = f"{CATEGORY}/simda"
BLOCK_CHOICES = ["all", "input", "middle", "output", "input_middle", "middle_output"]
SHIFT_CHOICES = list(MODES) + ["none"]


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


def _replace_inference_tensors(module: torch.nn.Module) -> None:
    """Parameters/buffers loaded under inference mode cannot take part in backward: swap in normal copies
    (same values, same device). Must run under ``torch.inference_mode(False)``."""
    for name, p in list(module.named_parameters()):
        if p.is_inference():
            comfy.utils.set_attr_param(module, name, p.detach().clone())
    for name, b in list(module.named_buffers()):
        if b is not None and b.is_inference():
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            owner._buffers[leaf] = b.clone()


def training_clips(samples: torch.Tensor, arch: str, frames: int) -> torch.Tensor:
    """LATENT samples -> clips: ``[clips, F, C, H, W]`` (frames-in-batch UNets) or ``[clips, C, T, H, W]`` (Wan)."""
    if arch == "wan":
        if samples.ndim != 5:
            raise VideoAdapterError(f"clips: Wan latents are [clips, C, frames, H, W], got {list(samples.shape)}")
        return samples
    if samples.ndim != 4:
        raise VideoAdapterError(f"clips: frame-wise models take the frames in the batch [frames, C, H, W], "
                                f"got {list(samples.shape)}")
    total = samples.shape[0]
    f = total if frames <= 0 else frames
    if total % f or f < 2:
        raise VideoAdapterError(f"clips: {total} frames do not split into clips of frames={frames}; use a divisor of "
                                f"{total} that is at least 2, or 0 (all {total} frames are one clip)")
    return samples.reshape(total // f, f, *samples.shape[1:])


def clip_conditions(positive, clips: int) -> list[tuple[torch.Tensor, dict]]:
    """CONDITIONING -> one ``(context [1, L, D], extras)`` per clip: one entry for every clip, or one entry per
    clip (Load Training Clips and Conditioning Combine give one per caption)."""
    if not positive:
        raise VideoAdapterError("positive: the CONDITIONING is empty; connect the encoded caption(s)")
    entries = []
    for t, extras in positive:
        own = adapter_conds(extras)  # what the adapters read (AID's instruction and states); clones, for autograd
        extras = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in extras.items() if k != "model_conds"}
        if own:
            extras["model_conds"] = {k: comfy.conds.CONDRegular(c.cond.clone().float()) for k, c in own.items()}
        for row in range(t.shape[0]):
            entries.append((t[row:row + 1].clone().float(), extras))
    if len(entries) == 1:
        if clips > 1 and has_image(entries[0][1]):
            raise VideoAdapterError(
                f"positive: one start image for {clips} clips; an image-to-video model must see each clip's own first "
                "frame: give one conditioning per clip (one image-to-video conditioning node per clip, combined), or "
                "train on one clip")
        return entries * clips
    if len(entries) != clips:
        raise VideoAdapterError(f"positive: {len(entries)} captions for {clips} clips; give one caption for all clips "
                                "or one per clip (Load Training Clips gives one per clip)")
    return entries


class AdapterForward:
    """``model_fn(x_t, sigma, context, clip=..., drop_text=..., drop_image=...)`` for the trainer: the patched
    model through ``BaseModel.apply_model`` (every patch, wrapper and object patch takes part), with each
    sample's own clip conditions (``clip``: indices into ``conditions``), returning the prediction in ``param``
    form. ``drop_text`` / ``drop_image`` (per sample) give the condition dropout dual guidance needs: text is
    replaced by ``null_text`` (the encoded empty prompt when connected, else zeros); the image condition is
    removed exactly as the Dual CFG Guider's no-image branch removes it (``common.without_image``: start-image
    latent and mask, CLIP-vision features kept; for SVD, whose cross-attention context is the image embedding,
    that context is zeroed as in SVD's own negative)."""

    accepts_drop_flags = True

    def __init__(self, patched, param: str, conditions: list, host, null_text=None, text_conds=(), adapters=None):
        self.m, self.param, self.conditions, self.host, self.null_text = patched, param, conditions, host, null_text
        # per-batch adapter conditions of a kind, from the clean clips (FCA: their initial frames)
        self.training_conds = getattr(adapters, "training_conds", None)
        self.text_conds = {ADAPTER_COND_PREFIX + n for n in text_conds}  # adapter conditions that are "text"

    def _sample_conds(self, x, ctx, extras, drop_text, drop_image):
        base = self.m.model
        own = dict(extras.get("model_conds") or {})
        extras = {k: v for k, v in extras.items() if k != "model_conds"}
        if drop_text:  # adapter text (AID's instruction and states) dropped means zero features, as its nodes do
            own = {k: (_zeros_like_cond(c) if k in self.text_conds else c) for k, c in own.items()}
        if drop_text and not self.host.family == "svd":
            ctx = self.null_text.to(ctx) if self.null_text is not None else torch.zeros_like(ctx)
            if self.null_text is not None and ctx.shape[0] != 1:
                ctx = ctx[:1]
        if drop_image:
            extras = without_image(extras)
            if self.host.family == "svd":
                ctx = torch.zeros_like(ctx)
        if self.host.frame_layout == "batch":
            ctx = ctx.expand(x.shape[0], -1, -1)
        conds = base.extra_conds(cross_attn=ctx.to(x.device), noise=x, device=x.device, **extras)
        conds.update(own)
        return {k: v.process_cond(batch_size=x.shape[0], device=x.device, area=None) for k, v in conds.items()}

    def __call__(self, x_t, sigma, context=None, clip=None, drop_text=None, drop_image=None, clean=None, **_):
        base = self.m.model
        videos = x_t.shape[0]
        frames_in_batch = self.host.frame_layout == "batch"
        clip = torch.zeros(videos, dtype=torch.long) if clip is None else clip
        per_sample = []
        for b in range(videos):
            ctx, extras = self.conditions[int(clip[b])]
            xb = x_t[b] if frames_in_batch else x_t[b:b + 1]
            per_sample.append(self._sample_conds(xb, ctx, extras, bool(drop_text[b]) if drop_text is not None else False,
                                                 bool(drop_image[b]) if drop_image is not None else False))
        if frames_in_batch:  # [B, F, C, H, W] -> frames in the batch
            f = x_t.shape[1]
            x = x_t.flatten(0, 1)
            s = sigma.repeat_interleave(f)
        else:
            x, s = x_t, sigma
        keys = set().union(*per_sample)
        c = {}
        for k in keys:
            have = [p[k] for p in per_sample if k in p]
            items = [p.get(k) for p in per_sample]
            # a condition some samples dropped (for example CLIP-vision features) is zeros for them
            items = [it if it is not None else _zeros_like_cond(have[0]) for it in items]
            c[k] = items[0].concat(items[1:]) if len(items) > 1 else items[0].cond
        opts = comfy.model_patcher.create_model_options_clone(self.m.model_options)
        to = opts["transformer_options"]
        comfy.patcher_extension.merge_nested_dicts(to.setdefault("wrappers", {}), self.m.wrappers, copy_dict1=False)
        to["cond_or_uncond"] = [0] * videos
        to["sigmas"] = s
        if self.training_conds is not None and clean is not None:
            c.update({ADAPTER_COND_PREFIX + k: v.to(x.device) for k, v in self.training_conds(clean, clip).items()})
        denoised = base.apply_model(x, s, transformer_options=to, **c).float()
        pred = parameterisation.denoised_to_prediction(x.float(), denoised, s.float(), self.param)
        return pred.reshape(x_t.shape)


def _conditions_to(extras: dict, device) -> dict:
    out = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in extras.items()}
    if "model_conds" in out:
        out["model_conds"] = {k: comfy.conds.CONDRegular(c.cond.to(device)) for k, c in out["model_conds"].items()}
    return out


def _zeros_like_cond(cond):
    import copy

    out = copy.copy(cond)
    out.cond = torch.zeros_like(cond.cond)
    return out


def _given_settings(settings: str) -> set:
    import json

    try:
        given = json.loads((settings or "").strip() or "{}")
    except json.JSONDecodeError:
        return set()
    return set(given) if isinstance(given, dict) else set()


def kind_config(kind: str, settings: str, family: str) -> dict:
    """The ``settings`` JSON of Train Adapters merged over the kind's defaults; unknown keys are refused."""
    import json

    entry = registry.get(kind)
    config = dict(entry.default_config)
    text = (settings or "").strip()
    if not text:
        return config
    try:
        given = json.loads(text)
    except json.JSONDecodeError as e:
        raise VideoAdapterError(f"settings: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); write "
                                'an object such as {"spatial_ratio": 0.25}') from None
    if not isinstance(given, dict):
        raise VideoAdapterError('settings: expected a JSON object such as {"spatial_ratio": 0.25}')
    known = set(entry.build({}, config, family).config.to_dict())
    unknown = sorted(set(given) - known)
    if unknown:
        raise VideoAdapterError(f"settings: {kind} adapters have no setting {', '.join(unknown)}; known settings: "
                                f"{', '.join(sorted(known))}")
    config.update(given)
    try:
        entry.build({}, config, family)
    except (TypeError, ValueError) as e:
        raise VideoAdapterError(f"settings: {e}") from None
    return config


class TrainAdapter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_TrainAdapter",
            display_name="Train Adapters (SimDA)",
            category=CAT_SIMDA,
            description=(
                "Trains small adapters inside a frozen model on your clips; the model's own weights never change. "
                "simda: attention and FFN adapters plus a temporal adapter in every transformer block, with "
                "latent-shift self-attention (SD 1.5 / SDXL / SVD; on Wan the adapters alone). Saves "
                "<name>.safetensors and <name>_checkpoint.safetensors in models/video_adapters; Cancel stops "
                "after writing the checkpoint, resume_from continues. One clip is enough for one-shot editing."),
            inputs=[
                io.Model.Input("model", tooltip="The frozen base model (SD 1.5, SDXL, SVD or Wan 2.1)."),
                io.Latent.Input("clips", tooltip="Training video latents from VAE Encode with the model's VAE: the "
                                "frames of the clips in the batch [frames, C, H, W] (SD/SVD), or [clips, C, T, H, W] "
                                "(Wan)."),
                io.Conditioning.Input("positive", tooltip="The clips' captions, encoded with the model's text "
                                      "encoder: one entry for all clips, or one per clip (as Load Training Clips "
                                      "gives them). Image-to-video conditions (SVD, Wan I2V) travel in it too."),
                io.Combo.Input("kind", options=registry.kinds(), default="simda",
                               tooltip="Adapter kind. simda: spatial (attention, FFN) and temporal adapters."),
                io.Int.Input("frames", default=0, min=0, max=4096,
                             tooltip="Frames per clip when the batch holds several clips (SD/SVD); 0: the whole "
                                     "batch is one clip."),
                io.Int.Input("steps", default=300, min=1, max=1_000_000,
                             tooltip="Total optimisation steps, counting those of a resumed checkpoint (SimDA's "
                                     "editing recipe: 200-300)."),
                io.Float.Input("learning_rate", default=5e-5, min=1e-7, max=1e-1, step=1e-5, round=1e-7,
                               tooltip="AdamW learning rate (SimDA's editing recipe: 5e-5; FCA's paper: 1e-3). Kinds "
                                       "with a training recipe (fca: cosine decay after a warm-up of min(200, "
                                       "steps/10), betas 0.9/0.95, clipping 1.0) schedule it from this peak."),
                io.Int.Input("batch_size", default=1, min=1, max=64, tooltip="Clips per step."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed of clip order, noise levels and noise: the same seed gives the same run."),
                io.Combo.Input("latent_shift", options=SHIFT_CHOICES, default="simda",
                               tooltip="Self-attention during training and later use: simda / previous_frame "
                                       "latent shift, or none. Must be none for Wan."),
                io.Int.Input("checkpoint_every", default=100, min=0, max=1_000_000,
                             tooltip="Write the checkpoint every this many steps (0: only when stopped and at the end)."),
                io.String.Input("file_name", default="simda/my_clip",
                                tooltip="Output name inside models/video_adapters (no extension); files of that name "
                                        "are replaced."),
                io.Combo.Input("resume_from", options=["none"] + model_files(), default="none", optional=True,
                               tooltip="A *_checkpoint.safetensors of the same adapters to continue from."),
                io.Float.Input("text_dropout", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Share of samples trained without their text (replaced by negative, or zeros): "
                                       "what text classifier-free guidance needs. Dual guidance (image and text "
                                       "scales) uses all three dropouts, e.g. 0.05 each (InstructPix2Pix)."),
                io.Float.Input("image_dropout", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Share of samples trained without their image condition (image-to-video "
                                       "models: the start-image latent, mask and CLIP-vision features are removed)."),
                io.Float.Input("both_dropout", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Share of samples trained with neither text nor image condition."),
                io.String.Input("settings", default="", multiline=True, optional=True,
                                tooltip="Settings of the adapter kind as JSON, e.g. {\"spatial_ratio\": 0.25, "
                                        "\"temporal_kernel\": 3} for simda. Empty: the kind's defaults. Unknown "
                                        "keys are refused with the list of known ones."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="The encoded empty prompt, used for samples whose text is dropped (text "
                                              "encoders do not map an empty prompt to zeros). Default: zeros."),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="The base model with the trained adapters (strength 1)."),
                io.String.Output(display_name="file_name", tooltip="The saved adapter file, relative to "
                                 "models/video_adapters (for Load Adapters)."),
                io.Image.Output(display_name="loss_curve", tooltip="Training loss per step (light) and its moving "
                                "average (dark)."),
                io.String.Output(display_name="summary", tooltip="Trainable parameters, their share of the base "
                                 "model, steps and final loss."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, clips, positive, kind, frames, steps, learning_rate, batch_size, seed, latent_shift,
                checkpoint_every, file_name, resume_from="none", text_dropout=0.0, image_dropout=0.0,
                both_dropout=0.0, settings="", negative=None) -> io.NodeOutput:
        host = describe(model, "model")
        arch = host.architecture
        model = static_clone(model, "model")  # training replaces the frozen weights' inference tensors
        if frames <= 0 and host.frame_layout == "batch":  # clips from Load Training Clips say how long they are
            frames = int(clips.get(FRAMES_PER_CLIP_KEY, 0))
        if kind != "simda" and latent_shift != "none" and arch != "wan":
            raise VideoAdapterError(f"latent_shift={latent_shift}: latent-shift attention belongs to simda adapters; "
                                    f"set latent_shift to none to train {kind} adapters")
        if arch == "wan" and latent_shift != "none":
            raise VideoAdapterError(
                f"latent_shift={latent_shift}: Wan's self-attention already spans all frames; set latent_shift to "
                "none to train adapters on Wan")
        drops = {"text_dropout": text_dropout, "image_dropout": image_dropout, "both_dropout": both_dropout}
        if sum(drops.values()) > 1.0:
            raise VideoAdapterError(f"text_dropout + image_dropout + both_dropout = {sum(drops.values()):g}; the three "
                                    "shares of samples must add up to at most 1")
        config = kind_config(kind, settings, host.family)
        config["shift_mode"] = latent_shift
        folder, out_path, ckpt_path = training_outputs(file_name)
        resume_path, _ = resume_checkpoint(resume_from, f"'{kind}' adapter", host.family, adapter_kind=kind)
        param = host.require_prediction("adapter training")
        recipe = registry.training_recipe(kind, int(steps))  # the kind's schedule, betas, clipping ({}: constant)
        tcfg = TrainConfig(steps=int(steps), lr=float(learning_rate), batch_size=int(batch_size), seed=int(seed),
                           cond_dropout=float(text_dropout), image_dropout=float(image_dropout),
                           both_dropout=float(both_dropout), checkpoint_every=int(checkpoint_every),
                           **training_noise(model), **recipe)
        device = model.load_device

        with torch.inference_mode(False):
            x0 = training_clips(model.model.process_latent_in(clips["samples"].float()).clone(), arch, frames)
            conditions = clip_conditions(positive, x0.shape[0])
            null_text = negative[0][0].clone().float() if negative else None
            configure = registry.get(kind).configure
            if configure is not None:  # what the kind reads off the model and the conditioning, unless set
                clip_frames = int(x0.shape[1] if host.frame_layout == "batch" else x0.shape[2])
                try:
                    config = configure(config, host, conditions, clip_frames, _given_settings(settings))
                except ValueError as e:
                    raise VideoAdapterError(f"{kind} adapters: {e}") from None
            torch.manual_seed(int(seed))
            adapters = new_adapters(kind, model, config)
            patched = attach_adapters(model, adapters, 1.0, frames if host.frame_layout == "batch" else 0)
            comfy.model_management.load_models_gpu([patched])
            _replace_inference_tensors(patched.model)
            for other in patched.get_additional_models_with_key("video_adapters"):  # adapters loaded earlier
                _replace_inference_tensors(other.model)
            adapters.to(device)
            patched.model.requires_grad_(False)
            x0 = x0.to(device)
            conditions = [(c.to(device), _conditions_to(e, device)) for c, e in conditions]

        def batch_fn(step, generator, bs):
            idx = torch.randint(0, x0.shape[0], (bs,), generator=generator)
            return {"x0": x0[idx.to(x0.device)], "clip": idx, "clean": x0[idx.to(x0.device)]}

        meta = {"family": host.family, "adapter_kind": kind, "adapter_config": adapters.config.to_dict()}
        forward = AdapterForward(patched, param, conditions, host, null_text, getattr(adapters, "text_conds", ()),
                                 adapters=adapters)
        result = run_training(tcfg, adapters, forward, batch_fn, param,
                              checkpoint_path=ckpt_path, resume_from=resume_path, checkpoint_meta=meta)
        n_train = adapters.num_trainable_parameters()  # what was trained (parts an ablation switched off are not)
        adapters.requires_grad_(False)
        n_base = host.parameters
        summary = result.summary(tcfg)
        summary.update({"trainable_parameters": n_train, "base_parameters": n_base, "base_model": host.model_config,
                        "train_recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe.items()}})
        rel = save_result(lambda path: adapters.save(path, extra={"training": summary}), out_path, folder)
        text = (f"{kind} adapters for {host.family}: {n_train:,} trainable parameters "
                f"({100.0 * n_train / max(n_base, 1):.2f} % of the base model's {n_base:,}), "
                f"{len(adapters)} blocks; {result.steps_done} steps, loss {result.losses[0]:.4f} -> "
                f"{summary['final_loss']:.4f}")
        if recipe:
            text += (f"; {kind}'s recipe: {tcfg.lr_schedule} learning rate after {tcfg.warmup_steps} warm-up steps, "
                     f"betas {tcfg.betas[0]:g}/{tcfg.betas[1]:g}, gradient clipping {tcfg.grad_clip:g}")
        return io.NodeOutput(patched, rel, loss_curve_image(result.losses), text)


# ----------------------------------------------------------------------------------------------------
# loading


class LoadAdapter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_LoadAdapter",
            display_name="Load Adapters",
            category=CAT_SIMDA,
            description=("Injects trained adapters (models/video_adapters) into a model through ComfyUI's patch API; "
                         "the output is a plain MODEL for any sampler. Adapters made for another model family or "
                         "size are refused. SimDA adapters also switch on the latent-shift attention they were "
                         "trained with."),
            inputs=[
                io.Model.Input("model", tooltip="The base model the adapters were trained on."),
                io.Combo.Input("adapter_name", options=model_files(),
                               tooltip="An adapter file in models/video_adapters (from Train Adapters)."),
                io.Float.Input("strength", default=1.0, min=-2.0, max=2.0, step=0.05,
                               tooltip="Scale of the adapters' contribution: 0 = no adapter output, 1 = as trained. "
                                       "Latent-shift attention the adapters were trained with stays on at any "
                                       "strength (SD 1.5, SDXL, SVD)."),
                io.Int.Input("frames", default=0, min=0, max=4096, optional=True,
                             tooltip="Frames per video for frame-wise models (0: the whole batch of each "
                                     "cond/uncond pass is one video)."),
            ],
            outputs=[
                io.Model.Output(tooltip="The model with the adapters."),
                io.String.Output(display_name="summary", tooltip="Kind, family, blocks, parameters and training."),
            ],
        )

    @classmethod
    def execute(cls, model, adapter_name, strength, frames=0) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise(MODEL_FOLDER, adapter_name)
        try:
            meta = read_metadata(path)
        except AdapterFileError as e:
            raise VideoAdapterError(f"adapter_name: {e}") from None
        kind = meta.get("kind")
        if kind not in registry.kinds():
            what = "a training checkpoint; load the finished adapter file" if kind == "checkpoint" else f"a '{kind}' file"
            raise VideoAdapterError(f"adapter_name: {adapter_name} is {what}; adapter kinds: "
                                    f"{', '.join(registry.kinds())}")
        host = describe(model, "model")
        if meta.get("family") != host.family:
            raise VideoAdapterError(
                f"{adapter_name} holds {kind} adapters for '{meta.get('family')}' models, but model is "
                f"'{host.family}' ({host.model_config}); connect a '{meta.get('family')}' model or train adapters for "
                "this one")
        try:
            adapters = registry.get(kind).load(path)
        except AdapterFileError as e:
            raise VideoAdapterError(f"adapter_name: {e}") from None
        adapters.requires_grad_(False).eval()
        out = attach_adapters(model, adapters, float(strength), int(frames), label="model", file_label=adapter_name)
        tr = meta.get("training", {})
        n = sum(p.numel() for p in adapters.parameters())
        summary = (f"{adapter_name}: {kind} adapters for {meta.get('family')}, {len(meta.get('blocks', {}))} blocks, "
                   f"{n:,} parameters; trained {tr.get('steps', '?')} steps, final loss {tr.get('final_loss')}")
        return io.NodeOutput(out, summary)


NODES = [LatentShiftPatcher, TrainAdapter, LoadAdapter]
