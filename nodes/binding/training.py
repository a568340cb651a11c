"""The one trainer's binding to ComfyUI, for every adapter kind (and the domain model's shared pieces): where
training outputs go, resuming, the noise levels a model trains on, the model call the trainer differentiates, and
the run itself with ComfyUI's progress bar and Cancel.

``train_adapters`` is Train Adapters' whole work: it resolves the kind and describes the model once and hands
both down. Nothing here knows a kind by name; what differs between kinds is declared by the kind class
(``adapters/kind.py``).
"""

from __future__ import annotations

import json
import os

import torch

import comfy.conds
import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import comfy.utils
import folder_paths

from ...adapters import registry
from ...adapters.kind import AdapterKind
from ...adapters.protocol import ADAPTER_COND_PREFIX, ADDITIONAL_MODELS_KEY, VideoAdapterError
from ...adapters.training import TrainConfig, replace_inference_tensors
from ...samplers import parameterisation
from .. import MODEL_FOLDER
from ..common import FRAMES_PER_CLIP_KEY, has_image, safe_name, without_image
from .attach import adapter_conds, attach_adapters, new_adapters, with_gradient_checkpointing
from .host import HostModel, describe, training_sigmas


COUNTER_DIGITS = 5  # name_00001, as ComfyUI's own savers count


def free_name(name: str, taken) -> str:
    """``name``, or the first ``name_00001``, ``name_00002``, ... for which ``taken(candidate)`` is false: ComfyUI's
    savers' counter, so a new result never replaces an earlier one."""
    if not taken(name):
        return name
    i = 1
    while taken(f"{name}_{i:0{COUNTER_DIGITS}d}"):
        i += 1
    return f"{name}_{i:0{COUNTER_DIGITS}d}"


def training_outputs(file_name: str, resume_path: str | None = None) -> tuple[str, str, str]:
    """``(folder, model file, checkpoint file)`` of a training run named ``file_name`` in models/video_adapters.

    Nothing trained is ever replaced: when ``<name>.safetensors`` or ``<name>_checkpoint.safetensors`` exists,
    the run writes to the next free ``<name>_00001`` (as core's savers count). The one exception is the run
    continued from its own checkpoint (``resume_path`` is ``<name>_checkpoint.safetensors`` and no finished
    ``<name>.safetensors`` exists): it goes on writing that checkpoint and finishes under the same name."""
    name = safe_name(file_name)
    folder = folder_paths.get_folder_paths(MODEL_FOLDER)[0]

    def files(n):
        return os.path.join(folder, n + ".safetensors"), os.path.join(folder, n + "_checkpoint.safetensors")

    model, ckpt = files(name)
    continuing = (resume_path is not None and os.path.exists(ckpt) and not os.path.exists(model)
                  and os.path.realpath(resume_path) == os.path.realpath(ckpt))
    if not continuing:
        name = free_name(name, lambda n: any(os.path.lexists(f) for f in files(n)))
        model, ckpt = files(name)
    try:  # before any training: a folder that cannot be made is reported now, not after the run
        os.makedirs(os.path.dirname(model), exist_ok=True)
    except OSError as e:
        raise VideoAdapterError(f"file_name '{file_name}': the folder {os.path.dirname(model)} cannot be created "
                                f"({e.strerror}); pick another name") from None
    return folder, model, ckpt


def save_result(save, path: str, folder: str) -> str:
    """``save(path)``, then the saved file relative to ``folder``. If the file system still refuses the path (a
    name that passed every check, a full disk, permissions), the trained result is written to a fallback name in
    ``folder/recovered/`` instead of being lost, and a warning says where."""
    import logging
    import time

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save(path)
        final = path
    except OSError as e:
        final = os.path.join(folder, "recovered", time.strftime("%Y%m%d-%H%M%S") + ".safetensors")
        os.makedirs(os.path.dirname(final), exist_ok=True)
        save(final)
        logging.warning("video_adapters: could not write %s (%s); the trained result was saved as %s instead",
                        path, e, final)
    return os.path.relpath(final, folder).replace(os.sep, "/")


def resume_checkpoint(resume_from: str, what: str, family: str, **expect) -> tuple[str | None, dict]:
    """``(path, metadata)`` of the training checkpoint picked in a ``resume_from`` widget (``(None, {})`` for
    "none"). Refuses files that are not ``what`` checkpoints (every ``expect`` key must be present and, unless
    its value is None, equal) or that were trained for another ``family``."""
    from ...adapters.files import read_metadata

    if not resume_from or resume_from == "none":
        return None, {}
    path = folder_paths.get_full_path_or_raise(MODEL_FOLDER, resume_from)
    meta = read_metadata(path)
    if meta.get("kind") != "checkpoint":
        raise VideoAdapterError(f"resume_from: {resume_from} is not a training checkpoint (it holds "
                                f"'{meta.get('kind')}'); pick a *_checkpoint.safetensors file of a {what}")
    if any(k not in meta or (v is not None and meta[k] != v) for k, v in expect.items()):
        if "adapter_kind" in meta:
            holds = f"a checkpoint of '{meta['adapter_kind']}' adapters (Train Adapters)"
        elif "model_config" in meta:
            holds = "a checkpoint of a domain model (Train Domain Model)"
        else:
            holds = "a checkpoint of another trainer"
        raise VideoAdapterError(f"resume_from: {resume_from} is {holds}, not of a {what}; pick a checkpoint this "
                                "node wrote, or 'none' to start anew")
    if meta.get("family") != family:
        raise VideoAdapterError(f"resume_from: {resume_from} was trained for '{meta.get('family')}', but the "
                                f"connected model is '{family}'")
    from ...adapters.domain_model import check_latent_code
    from ...adapters.files import AdapterFileError

    try:
        check_latent_code(meta, f"resume_from: {resume_from}")
    except AdapterFileError as e:
        raise VideoAdapterError(str(e)) from None
    return path, meta


EDM_LOGNORMAL = (0.7, 1.6)  # ln sigma ~ N(0.7, 1.6^2): the noise levels SVD's video fine-tuning draws


def training_noise(model, info: HostModel | None = None, resume_meta: dict | None = None) -> dict:
    """TrainConfig fields for the noise levels training draws on ``model``: rectified-flow models use the
    shifted logit-normal recipe of their papers with the model's own shift; EDM models (SVD) draw ln sigma from
    a normal, the recipe they were trained with (:data:`EDM_LOGNORMAL`), inside the model's sigma range; every
    other model draws from its own ``model_sampling`` sigmas (SD's discrete schedule).

    Drawing SVD's noise uniformly from its 1000 log-spaced sigmas (0.002-700), as version 0.3.0 and earlier did, spends
    half the steps above sigma 3 or below 0.03, where a model learns almost nothing, and a small model trained
    that way never learns to remove noise below sigma 1 (docs/aid.md). A run resumed from a checkpoint keeps the
    recipe it started with."""
    info = info if info is not None else describe(model)
    if info.sampler_space == "flow":
        return {"sigma_sampling": "flow_shift", "flow_shift": float(info.shift or 1.0)}
    table = tuple(training_sigmas(model).tolist())
    started = ((resume_meta or {}).get("train_config") or {}).get("sigma_sampling")
    if info.model_type in ("V_PREDICTION_EDM", "EDM") and started in (None, "lognormal"):
        return {"sigma_sampling": "lognormal", "lognormal_mean": EDM_LOGNORMAL[0], "lognormal_std": EDM_LOGNORMAL[1],
                "sigma_table": table}
    return {"sigma_sampling": "schedule", "sigma_table": table}


def run_training(config, params, model_fn, batch_fn, parameterisation, report=None, **kwargs):
    """``adapters.training.Trainer.run`` wired to ComfyUI: the node's progress bar advances every step, and
    Cancel makes the trainer write its checkpoint and stop, after which the run is reported as interrupted
    (so an interrupted training never looks like a finished one). ``report(step, loss)``, when given, also sees
    every step (the command-line trainer's log)."""
    from ...adapters.training import Trainer

    pbar = comfy.utils.ProgressBar(int(config.steps))
    cancelled = [False]

    def on_step(step, loss):
        if report is not None:
            report(step, loss)
        try:
            pbar.update_absolute(step, int(config.steps))
        except comfy.model_management.InterruptProcessingException:
            cancelled[0] = True  # the progress hook raises on Cancel: stop after the checkpoint is written

    def should_stop():
        return cancelled[0] or comfy.model_management.processing_interrupted()

    # newer ComfyUI runs some ops (Wan's RoPE) through kernels without a backward unless core's training flag
    # is set, as core's own trainer sets it
    flag = hasattr(comfy.model_management, "in_training")
    before = getattr(comfy.model_management, "in_training", False)
    if flag:
        comfy.model_management.in_training = True
    try:
        result = Trainer(config).run(params, model_fn, batch_fn, parameterisation, on_step=on_step,
                                     should_stop=should_stop, **kwargs)
    finally:
        if flag:
            comfy.model_management.in_training = before
    if result.stopped:
        comfy.model_management.interrupt_current_processing(False)
        raise comfy.model_management.InterruptProcessingException()
    return result


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

    def __init__(self, patched, param: str, conditions: list, host, null_text=None, kind: AdapterKind | None = None,
                 adapters=None):
        self.m, self.param, self.conditions, self.host, self.null_text = patched, param, conditions, host, null_text
        self.kind, self.adapters = kind, adapters
        # adapter conditions the kind counts as text (dropped with the text)
        self.text_conds = {ADAPTER_COND_PREFIX + n for n in (kind.text_conds if kind is not None else ())}

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
        # per-batch adapter conditions the kind needs, from the clean clips (FCA: their initial frames)
        extra = self.kind.training_conds(self.adapters, clean, clip) if self.kind is not None and clean is not None \
            else None
        if extra:
            c.update({ADAPTER_COND_PREFIX + k: v.to(x.device) for k, v in extra.items()})
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


def resolve_training_dtype(choice: str, device, resume_meta: dict | None = None) -> str:
    """The trainers' ``training_dtype``: ``auto`` is bf16 on a GPU that has it (as core's trainer), fp32
    elsewhere, and, when a run is resumed, the precision that run was trained in (a checkpoint written before
    the setting existed was trained in fp32), so the loss curve continues exactly; fp16 needs a GPU."""
    cuda = torch.device(device).type == "cuda"
    if choice == "auto" and resume_meta:
        return (resume_meta.get("train_config") or {}).get("training_dtype", "fp32")
    if choice == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if choice == "fp16" and not cuda:
        raise VideoAdapterError("training_dtype: fp16 needs a GPU; on the CPU use bf16 or fp32 (or auto)")
    return choice


def check_accumulation(batch_size: int, grad_accumulation: int) -> None:
    """Refuse a ``grad_accumulation`` that does not divide ``batch_size``, naming both."""
    if int(batch_size) % int(grad_accumulation):
        raise VideoAdapterError(f"grad_accumulation: {grad_accumulation} does not divide batch_size {batch_size}; each "
                                "step's batch is split into that many micro-batches (for example batch_size 4 with "
                                "grad_accumulation 2 or 4)")


def kind_settings(kind: AdapterKind, settings: str) -> tuple[dict, set]:
    """Train Adapters' ``settings`` JSON checked by the kind (names, types, ranges) and merged over its defaults,
    and the names the user gave."""
    text = (settings or "").strip()
    example = kind.example_text()
    if not text:
        return kind.settings(), set()
    try:
        given = json.loads(text)
    except json.JSONDecodeError as e:
        raise VideoAdapterError(f"settings: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); write "
                                f"an object such as {example} for {kind.name} adapters") from None
    if not isinstance(given, dict):
        raise VideoAdapterError(f"settings: expected a JSON object such as {example} for {kind.name} adapters")
    try:
        return kind.check_settings(given), set(given)
    except (TypeError, ValueError) as e:
        raise VideoAdapterError(f"settings: {e}") from None


def train_adapters(model, clips, positive, kind_name: str, frames: int, steps: int, learning_rate: float,
                   batch_size: int, seed: int, checkpoint_every: int, file_name: str, resume_from: str = "none",
                   dropouts: dict | None = None, settings: str = "", negative=None, options: dict | None = None,
                   option_defaults: dict | None = None, gradient_checkpointing: bool = True,
                   training_dtype: str = "auto", grad_accumulation: int = 1, distributed=None, report=None):
    """Train adapters of ``kind_name`` on a frozen ``model``; returns ``(patched model, saved file name, losses,
    summary text)``. The kind is resolved and the model described once, here.

    ``distributed`` (an ``adapters.training.DataParallel``, from the command-line trainer) makes this process one
    of several data-parallel processes that run this same call: ``batch_size`` is the global batch, and only the
    main process writes files (the checkpoint and the adapter file). ``report(step, loss)`` sees every step."""
    from .host import static_clone

    kind = registry.get(kind_name)
    host = describe(model, "model")
    try:
        kind.check_host(host)
    except ValueError as e:
        raise VideoAdapterError(f"kind: {e}") from None
    arch = host.architecture
    model = static_clone(model, "model")  # training replaces the frozen weights' inference tensors
    if frames <= 0 and host.frame_layout == "batch":  # clips from Load Training Clips say how long they are
        frames = int(clips.get(FRAMES_PER_CLIP_KEY, 0))
    drops = dict(dropouts or {})
    if sum(drops.values()) > 1.0:
        raise VideoAdapterError(f"text_dropout + image_dropout + both_dropout = {sum(drops.values()):g}; the three "
                                "shares of samples must add up to at most 1")
    config, given = kind_settings(kind, settings)
    try:
        config = kind.apply_trainer_options(config, dict(options or {}), dict(option_defaults or {}), host)
    except ValueError as e:
        raise VideoAdapterError(str(e)) from None
    resume_path, resume_meta = resume_checkpoint(resume_from, f"'{kind.name}' adapter", host.family,
                                                 adapter_kind=kind.name)
    folder, out_path, ckpt_path = training_outputs(file_name, resume_path)
    param = host.require_prediction("adapter training")
    recipe = kind.training_recipe(int(steps))  # the kind's schedule, betas, clipping ({}: constant)
    dtype = resolve_training_dtype(training_dtype, model.load_device, resume_meta)
    check_accumulation(batch_size, grad_accumulation)
    tcfg = TrainConfig(steps=int(steps), lr=float(learning_rate), batch_size=int(batch_size), seed=int(seed),
                       cond_dropout=float(drops.get("text_dropout", 0.0)),
                       image_dropout=float(drops.get("image_dropout", 0.0)),
                       both_dropout=float(drops.get("both_dropout", 0.0)), checkpoint_every=int(checkpoint_every),
                       grad_accumulation=int(grad_accumulation), training_dtype=dtype,
                       **training_noise(model, host, resume_meta), **recipe)
    device = model.load_device

    with torch.inference_mode(False):
        x0 = training_clips(model.model.process_latent_in(clips["samples"].float()).clone(), arch, frames)
        if int(batch_size) > x0.shape[0]:
            raise VideoAdapterError(
                f"batch_size: {batch_size} is more than the {x0.shape[0]} clip(s) in clips; every step would repeat "
                f"clips (as slow as {batch_size} clips for the learning of {x0.shape[0]}): use a batch_size of at most "
                f"{x0.shape[0]}, or more clips")
        conditions = clip_conditions(positive, x0.shape[0])
        null_text = negative[0][0].clone().float() if negative else None
        clip_frames = int(x0.shape[1] if host.frame_layout == "batch" else x0.shape[2])
        try:  # what the kind reads off the model and the conditioning, unless set
            config = kind.configure(config, host, conditions, clip_frames, given)
        except ValueError as e:
            raise VideoAdapterError(f"{kind.name} adapters: {e}") from None
        torch.manual_seed(int(seed))
        adapters = new_adapters(kind, model, config, host=host)
        patched = attach_adapters(model, adapters, 1.0, frames if host.frame_layout == "batch" else 0, host=host,
                                  kind=kind)
        # the model trained: with every block under gradient checkpointing (the output MODEL is without it)
        trained = with_gradient_checkpointing(patched, host) if gradient_checkpointing else patched
        comfy.model_management.load_models_gpu([trained])
        replace_inference_tensors(patched.model)
        for other in patched.get_additional_models_with_key(ADDITIONAL_MODELS_KEY):  # adapters loaded earlier
            replace_inference_tensors(other.model)
        adapters.to(device)
        patched.model.requires_grad_(False)
        x0 = x0.to(device)
        conditions = [(c.to(device), _conditions_to(e, device)) for c, e in conditions]

    def batch_fn(step, generator, bs):
        idx = torch.randint(0, x0.shape[0], (bs,), generator=generator)
        return {"x0": x0[idx.to(x0.device)], "clip": idx, "clean": x0[idx.to(x0.device)]}

    meta = {"family": host.family, "adapter_kind": kind.name, "adapter_config": adapters.config.to_dict()}
    forward = AdapterForward(trained, param, conditions, host, null_text, kind=kind, adapters=adapters)
    result = run_training(tcfg, adapters, forward, batch_fn, param, report=report, checkpoint_path=ckpt_path,
                          resume_from=resume_path, checkpoint_meta=meta, distributed=distributed)
    n_train = adapters.num_trainable_parameters()  # what was trained (parts an ablation switched off are not)
    adapters.requires_grad_(False)
    n_base = host.parameters
    summary = result.summary(tcfg)
    summary.update({"trainable_parameters": n_train, "base_parameters": n_base, "base_model": host.model_config,
                    "train_recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe.items()}})
    rel = os.path.relpath(out_path, folder).replace(os.sep, "/")
    if distributed is None or distributed.is_main:
        rel = save_result(lambda path: adapters.save(path, extra={"training": summary}), out_path, folder)
    if distributed is not None:
        distributed.barrier()  # the adapter file is complete before any process goes on (or exits)
    text = (f"{kind.name} adapters for {host.family}: {n_train:,} trainable parameters "
            f"({100.0 * n_train / max(n_base, 1):.2f} % of the base model's {n_base:,}), "
            f"{len(adapters)} blocks; {result.steps_done} steps, loss {result.losses[0]:.4f} -> "
            f"{summary['final_loss']:.4f}")
    text += (f"; {tcfg.training_dtype} forward" + (", gradient checkpointing" if gradient_checkpointing else "")
             + (f", {tcfg.grad_accumulation} micro-batches per step" if tcfg.grad_accumulation > 1 else ""))
    if rel != safe_name(file_name) + ".safetensors":
        text += f"; saved as {rel} ({safe_name(file_name)}.safetensors or its checkpoint exists and is kept)"
    if recipe:
        text += (f"; {kind.name}'s recipe: {tcfg.lr_schedule} learning rate after {tcfg.warmup_steps} warm-up steps, "
                 f"betas {tcfg.betas[0]:g}/{tcfg.betas[1]:g}, gradient clipping {tcfg.grad_clip:g}")
    return patched, rel, result.losses, text


def load_adapters(model, adapter_name: str, strength: float, frames: int = 0):
    """Load Adapters' work: ``(model with the adapters, summary text)``; files of unknown kinds, checkpoints and
    files made for another family are refused, naming the file."""
    from ...adapters.files import AdapterFileError, read_metadata

    path = folder_paths.get_full_path_or_raise(MODEL_FOLDER, adapter_name)
    try:
        meta = read_metadata(path)
    except AdapterFileError as e:
        raise VideoAdapterError(f"adapter_name: {e}") from None
    name = meta.get("kind")
    if name not in registry.kinds():
        what = "a training checkpoint; load the finished adapter file" if name == "checkpoint" else f"a '{name}' file"
        raise VideoAdapterError(f"adapter_name: {adapter_name} is {what}; adapter kinds: "
                                f"{', '.join(registry.kinds())}")
    kind = registry.get(name)
    host = describe(model, "model")
    if meta.get("family") != host.family:
        raise VideoAdapterError(
            f"{adapter_name} holds {name} adapters for '{meta.get('family')}' models, but model is "
            f"'{host.family}' ({host.model_config}); connect a '{meta.get('family')}' model or train adapters for "
            "this one")
    try:
        adapters = kind.load(path)
    except AdapterFileError as e:
        raise VideoAdapterError(f"adapter_name: {e}") from None
    adapters.requires_grad_(False).eval()
    out = attach_adapters(model, adapters, float(strength), int(frames), label="model", file_label=adapter_name,
                          host=host, kind=kind)
    tr = meta.get("training", {})
    n = sum(p.numel() for p in adapters.parameters())
    summary = (f"{adapter_name}: {name} adapters for {meta.get('family')}, {len(meta.get('blocks', {}))} blocks, "
               f"{n:,} parameters; trained {tr.get('steps', '?')} steps, final loss {tr.get('final_loss')}")
    return out, summary
