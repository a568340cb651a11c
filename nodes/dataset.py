"""Training data from a folder of video files with captions.

``VA_LoadClipFolder`` reads every video in a folder (inside ComfyUI's ``input`` directory, or an absolute
path), cuts fixed-length clips out of them, resizes and centre-crops the frames, encodes each clip with the
prior's VAE and each caption with the prior's text encoder, and returns what the training nodes take: a
LATENT batch of clips ``[clips, C, T, H, W]`` and a CONDITIONING with one entry per clip, in clip order.

Captions: ``<video name>.txt`` next to the video (the convention of most LoRA training sets); videos without
one use ``default_caption``. State prompts (for AID): ``<video name>.states.txt``, cut to each clip's frames
and returned as one schedule per clip for AID Conditioning. Frames are decoded with PyAV (a ComfyUI
dependency) and only as far as needed, so long videos do not fill memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import torch
from safetensors.torch import save_file

import comfy.utils
import folder_paths
from comfy_api.latest import io, ui

from ..adapters import registry
from ..adapters.clip_folder import STATES_SUFFIX, caption_for, clip_schedule, clip_windows
from ..adapters.state_prompts import SCHEDULE_SEPARATOR
from ..adapters.domain_model import FAMILY_SPECS, SIZES
from .binding.training import free_name, training_noise
from .common import CATEGORY, FRAMES_PER_CLIP_KEY, VideoAdapterError, safe_name
from .binding.domain import clip_latents, prior_family, prior_parameterisation, text_batch
from .binding.host import describe
from .binding.training_data import save_training_data
from .binding.video import (ANY_FOLDER_ENV, DEFAULT_FOLDER, _states_per_video, check_geometry, count_frames,
                            encode_clip, input_subfolders, list_videos, read_windows, resolve_folder)

CAT_DATA = f"{CATEGORY}/data"
log = logging.getLogger("video_adapters")


# Set to 1 on the server (not in a workflow) to let Load Training Clips read folders outside ComfyUI's input
# folder, given as full paths. Off by default: on a shared server a prompt could otherwise read any folder.


class LoadClipFolder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_LoadClipFolder",
            display_name="Load Training Clips (folder)",
            category=CAT_DATA,
            description=(
                "Reads a folder of video files with captions (<video name>.txt next to each video), cuts "
                "fixed-length clips, resizes and centre-crops them, and encodes them with the prior's VAE and "
                "text encoder: the training data for Train Domain Model and Train Adapters."),
            inputs=[
                io.Combo.Input("folder", options=input_subfolders(), default=DEFAULT_FOLDER,
                               tooltip="A folder inside ComfyUI's input folder holding video files (mp4, webm, mov, "
                                       "mkv, avi, gif, webp) and optional captions (<video>.txt). Full paths only "
                                       f"when the server sets {ANY_FOLDER_ENV}=1."),
                io.Vae.Input("vae", tooltip="The prior's VAE (for example wan_2.1_vae): clips must live in the "
                             "prior's latent space."),
                io.Clip.Input("clip", tooltip="The prior's text encoder (for example umT5 for Wan)."),
                io.Int.Input("frames", default=33, min=1, max=1025,
                             tooltip="Frames per clip. Wan's VAE needs 1 + 4k (17, 33, 49, 81 ...)."),
                io.Int.Input("width", default=832, min=16, max=4096, step=16,
                             tooltip="Clip width in pixels; frames are scaled to cover and centre-cropped."),
                io.Int.Input("height", default=480, min=16, max=4096, step=16, tooltip="Clip height in pixels."),
                io.Int.Input("frame_stride", default=1, min=1, max=64,
                             tooltip="Take every n-th frame (2 turns 30 fps footage into 15 fps clips)."),
                io.Int.Input("clips_per_video", default=1, min=1, max=1000,
                             tooltip="Non-overlapping clips cut from each video, spread over its length (fewer "
                                     "when the video is short)."),
                io.Int.Input("max_clips", default=0, min=0, max=100_000,
                             tooltip="Stop after this many clips (0: all)."),
                io.String.Input("default_caption", default="", multiline=True,
                                tooltip="Caption of videos that have no <video name>.txt."),
            ],
            outputs=[
                io.Latent.Output(display_name="clips", tooltip="Encoded clips for the training nodes: [clips, C, "
                                 "frames, H, W] from video VAEs (Wan); frames in the batch from image VAEs (SD)."),
                io.Conditioning.Output(display_name="captions", tooltip="One encoded caption per clip, in clip "
                                       "order (the training nodes' captions input)."),
                io.String.Output(display_name="caption_text", tooltip="One line per clip: file, start frame and "
                                 "caption, to check what was read."),
                io.Image.Output(display_name="first_frames", tooltip="The first frame of every clip, as read."),
                io.String.Output(display_name="states", tooltip=(
                    "State prompts for AID Conditioning: one schedule per clip, in clip order, separated by lines of "
                    f"{SCHEDULE_SEPARATOR}, from <video name>{STATES_SUFFIX} next to each video (a schedule in the "
                    "video's frame numbers as MLLM State Prompt writes it, or one state per line, spread over the "
                    "video), cut to each clip's frames. Empty when no video has one.")),
            ],
        )

    @classmethod
    def validate_inputs(cls, folder):
        # only ``folder``: a **kwargs signature would switch off ComfyUI's own range checks of the other inputs
        try:
            list_videos(resolve_folder(folder))
        except VideoAdapterError as e:
            return str(e)
        return True

    @classmethod
    def fingerprint_inputs(cls, folder, **kwargs):
        """Re-run when a file in the folder changes, even if no widget did."""
        try:
            path = resolve_folder(folder)
        except VideoAdapterError:
            return ""
        h = hashlib.sha256()
        for name in sorted(os.listdir(path)):
            st = os.stat(os.path.join(path, name))
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()

    @classmethod
    def execute(cls, folder, vae, clip, frames, width, height, frame_stride, clips_per_video, max_clips,
                default_caption) -> io.NodeOutput:
        path = resolve_folder(folder)
        videos = list_videos(path)
        check_geometry(vae, frames, width, height)
        plan, skipped, lengths = [], [], {}
        for video in videos:
            n = lengths[video] = count_frames(video)
            starts = clip_windows(n, frames, frame_stride, clips_per_video)
            if not starts:
                skipped.append(f"{os.path.basename(video)} ({n} frames)")
            plan.extend((video, s) for s in starts)
        if max_clips:
            plan = plan[:max_clips]
        if skipped:
            log.warning("Load Training Clips: skipped videos shorter than %d frames at stride %d: %s",
                        (frames - 1) * frame_stride + 1, frame_stride, ", ".join(skipped))
        if not plan:
            raise VideoAdapterError(
                f"no video in {path} has {(frames - 1) * frame_stride + 1} frames ({frames} frames at stride "
                f"{frame_stride}); lower frames or frame_stride. Too short: {', '.join(skipped)}")

        latents, conds, lines, firsts, schedules = [], [], [], [], []  # schedules: one per clip, if any
        encoded: dict[str, list] = {}
        bar = comfy.utils.ProgressBar(len(plan))
        by_video: dict[str, list[int]] = {}
        for video, start in plan:
            by_video.setdefault(video, []).append(start)
        states = _states_per_video(by_video, lengths)  # before any decoding: a bad file fails at once
        for video, starts in by_video.items():
            windows = read_windows(video, starts, frames, frame_stride, width, height)
            for start in starts:
                got = windows[start]
                bar.update(1)
                if len(got) < frames:  # the container reported more frames than it decodes
                    log.warning("Load Training Clips: %s has only %d frames from frame %d; skipped",
                                os.path.basename(video), len(got), start)
                    continue
                pixels = torch.stack(got)
                latents.append(encode_clip(vae, pixels).float().cpu())
                text = caption_for(video, default_caption)
                if text not in encoded:
                    encoded[text] = clip.encode_from_tokens_scheduled(clip.tokenize(text))
                conds.extend(encoded[text][:1])  # one entry per clip
                lines.append(f"{os.path.basename(video)} @ {start}: {text}")
                firsts.append(pixels[0])
                if states:
                    schedules.append(clip_schedule(states[video], start, frames, frame_stride))
        if not latents:
            raise VideoAdapterError(f"no clip could be read from {path}")
        shapes = {tuple(x.shape[1:]) for x in latents}
        if len(shapes) > 1:
            raise VideoAdapterError(f"the VAE returned clips of different shapes {sorted(shapes)}")
        latent = {"samples": torch.cat(latents)}
        if latents[0].ndim == 4:  # image VAE: frames in the batch, as ComfyUI lays out SD-style video
            latent[FRAMES_PER_CLIP_KEY] = int(latents[0].shape[0])
        return io.NodeOutput(latent, conds, "\n".join(lines), torch.stack(firsts),
                             f"\n{SCHEDULE_SEPARATOR}\n".join(schedules))


class SaveTrainingData(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_SaveTrainingData",
            display_name="Save Training Data (command-line trainer)",
            category=CAT_DATA,
            description=(
                "Writes encoded clips and captions to disk with a ready-to-run config for the command-line "
                "domain-model trainer, so the VAE and text encoder run once here and training runs anywhere, "
                "also on several GPUs: accelerate launch -m adapters.train_cli --config <the written file>."),
            inputs=[
                io.Model.Input("prior_model", tooltip="The frozen prior: gives the latent normalisation, the "
                               "noise schedule and the size the presets are measured against."),
                io.Latent.Input("clips", tooltip="Clips from Load Training Clips (or VAE Encode)."),
                io.Conditioning.Input("captions", tooltip="One caption for all clips or one per clip, in order."),
                io.String.Input("name", default="my_style",
                                tooltip="Folder name under output/video_adapters_data. An existing folder is never replaced: "
                                        "the next free name_00001, name_00002 ... is used, as ComfyUI's savers do."),
                io.Combo.Input("size", options=list(SIZES), default="xs",
                               tooltip="Model size written into the config (xs / s / m: about 1.25 / 2.5 / 6 % of "
                                       "the prior)."),
                io.Boolean.Input("first_frame_cond", default=False,
                                 tooltip="Config: also condition on each clip's first latent frame."),
                io.Boolean.Input("edge_cond", default=False, tooltip="Config: also condition on Sobel-x edges."),
            ],
            outputs=[io.String.Output(display_name="config_path",
                                      tooltip="The written train_config.json (edit steps and learning rate there).")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, prior_model, clips, captions, name, size, first_frame_cond, edge_cond) -> io.NodeOutput:
        family = prior_family(prior_model)
        param = prior_parameterisation(prior_model)
        folder = new_data_folder(name)
        x0 = clip_latents(prior_model, clips["samples"], family, clips.get(FRAMES_PER_CLIP_KEY, 0))
        ctx, mask = text_batch(captions, x0.shape[0], FAMILY_SPECS[family]["text_dim"])
        # latents are stored in the model's space (the prior's normalisation applied), so the config needs none
        save_file({"latents": x0.float().contiguous()}, os.path.join(folder, "latents.safetensors"),
                  metadata={"family": family})
        save_file({"context": ctx.contiguous(), "mask": mask.contiguous()}, os.path.join(folder, "text.safetensors"))
        config = {
            "family": family, "size": size, "prior_params": describe(prior_model).parameters or None,
            "model": {"parameterisation": param, "first_frame_cond": bool(first_frame_cond),
                      "edge_cond": bool(edge_cond), "attention": "factorised"},
            "data": {"latents": "latents.safetensors", "text": "text.safetensors"},
            "train": {"steps": 2000, "lr": 1e-4, "batch_size": 4, "seed": 0, "cond_dropout": 0.1,
                      "checkpoint_every": 250, **training_noise(prior_model)},
            "output": f"model/{os.path.basename(folder)}.safetensors",
            "cache_dir": "cache", "device": "auto",
        }
        return _write_config(folder, "train_config.json", config)


def new_data_folder(name: str) -> str:
    """A new folder ``output/video_adapters_data/<name>`` (the next free ``<name>_00001`` ... when it exists)."""
    base = os.path.join(folder_paths.get_output_directory(), "video_adapters_data")
    folder = os.path.join(base, free_name(safe_name(name), lambda n: os.path.lexists(os.path.join(base, n))))
    os.makedirs(folder)
    return folder


def _write_config(folder: str, file: str, config: dict) -> io.NodeOutput:
    """Write ``config`` as JSON; the node's output: the written path, also shown on the node."""
    path = os.path.join(folder, file)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
    return io.NodeOutput(path, ui=ui.PreviewText(path))


ADAPTER_DATA_FILE = "training_data.safetensors"
BASE_MODEL_FOLDERS = ("diffusion_models", "checkpoints")


def base_model_choices() -> list[str]:
    """``<folder>/<file>`` for every diffusion model and checkpoint ComfyUI finds (the command-line trainer loads
    the first with Load Diffusion Model's loader, the second with the checkpoint loader)."""
    return [f"{kind}/{n}" for kind in BASE_MODEL_FOLDERS for n in folder_paths.get_filename_list(kind)]


class SaveAdapterTrainingData(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_SaveAdapterTrainingData",
            display_name="Save Adapter Training Data (command-line trainer)",
            category=CAT_DATA,
            description=(
                "Writes what Train Adapters takes (the clips and their conditioning, with every image condition "
                "and adapter condition in it) and a ready-to-run config for the command-line adapter trainer, so "
                "the VAE and encoders run once here and adapters train anywhere, also on several GPUs: accelerate "
                "launch -m devtools.train_adapter --config <the written file>."),
            inputs=[
                io.Latent.Input("clips", tooltip="The training clips, as Train Adapters takes them."),
                io.Conditioning.Input("positive", tooltip="The clips' conditioning, as Train Adapters takes it: one "
                                      "entry for all clips or one per clip."),
                io.Combo.Input("kind", options=registry.kinds(), default="simda",
                               tooltip="Adapter kind written into the config."),
                io.Combo.Input("base_model", options=base_model_choices(),
                               tooltip="The frozen model the command-line trainer loads: a file of "
                                       "models/diffusion_models (loaded as Load Diffusion Model does) or "
                                       "models/checkpoints (the model part of the checkpoint)."),
                io.String.Input("name", default="my_adapters",
                                tooltip="Folder name under output/video_adapters_data. An existing folder is never "
                                        "replaced: the next free name_00001, name_00002 ... is used."),
                io.Int.Input("frames", default=0, min=0, max=4096,
                             tooltip="Config: frames per clip for frame-wise models, as Train Adapters' frames."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="The encoded empty prompt for samples whose text is dropped, as Train "
                                              "Adapters' negative."),
                io.String.Input("settings", default="", multiline=True, optional=True,
                                tooltip="Config: the kind's settings as JSON, as Train Adapters' settings."),
            ],
            outputs=[io.String.Output(display_name="config_path",
                                      tooltip="The written adapter_config.json (add any input of Train "
                                              "Adapters there by its name: steps, learning_rate, batch_size ...).")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, clips, positive, kind, base_model, name, frames, negative=None, settings="") -> io.NodeOutput:
        folder = new_data_folder(name)
        save_training_data(os.path.join(folder, ADAPTER_DATA_FILE), clips, positive, negative)
        config = {"base_model": base_model, "weight_dtype": "default", "data": ADAPTER_DATA_FILE, "kind": kind,
                  "frames": int(frames), "settings": settings, "file_name": f"{kind}/{os.path.basename(folder)}",
                  "device": "auto"}
        return _write_config(folder, "adapter_config.json", config)


NODES = [LoadClipFolder, SaveTrainingData, SaveAdapterTrainingData]
