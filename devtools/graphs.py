"""The shipped workflows as API prompts that run without downloads: every model, text encoder, VAE and CLIP
vision loader replaced by a stand-in, and sizes and step counts made small. One substitution table for the host
tests (tiny models, ``TINY``) and the opt-in real-size tests (random-weight models at the released sizes,
``devtools/realsize.py``): only the model files, the step counts and whether the workflow's weight dtype is kept
differ between them."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field

from devtools.headless import ui_to_api

CLIP_FOLDER = "training_clips_test"


@dataclass
class StandIns:
    """What replaces a workflow's model files and how much work a run does.

    ``models``: diffusion-model file named by the workflow -> the file loaded instead; ``sd15``: the UNet file loaded
    where the workflow loads an SD 1.5 checkpoint; ``svd``: the UNet file behind an SVD checkpoint (None: the tiny
    SVD built in memory); ``keep_weight_dtype``: load with the workflow's own weight dtype (fp8 included) instead of
    the file's; ``steps``: sampler and trainer steps; ``domain_size``: Train Domain Model's size (None: the
    workflow's own)."""

    models: dict = field(default_factory=dict)
    sd15: str = "tiny_sd15_prior.safetensors"
    svd: str | None = None
    keep_weight_dtype: bool = False
    steps: int = 3
    domain_size: str | None = "tiny"
    size: int = 32  # frame width and height in pixels


TINY = StandIns(models={
    "wan2.1_t2v_14B_fp16.safetensors": "tiny_wan_prior.safetensors",
    "wan2.1_t2v_1.3B_fp16.safetensors": "tiny_wan_domain.safetensors",
    "wan2.1_i2v_480p_14B_fp16.safetensors": "tiny_wan_i2v.safetensors",
})


NO_DOWNLOAD_LOADERS = ("VA_TinyTrainedPair", "VA_TinyInstructionModels")  # the tiny demos' shipped models


def stand_in_prompt(workflow: dict, host, s: StandIns = TINY) -> dict:
    """API prompt of ``workflow`` with models, text encoders and VAEs replaced by stand-ins (see ``StandIns``). A
    no-download workflow (its models come from the pack's own Tiny loaders) runs as shipped, with fewer steps."""
    prompt = ui_to_api(workflow, host.node_info)
    if any(v["class_type"] in NO_DOWNLOAD_LOADERS for v in prompt.values()):
        for node in prompt.values():
            if node["class_type"] in ("BasicScheduler", "KSampler"):
                node["inputs"]["steps"] = s.steps
        return prompt
    sd = any(v["class_type"] == "CheckpointLoaderSimple" for v in prompt.values())
    svd = any(v["class_type"] == "ImageOnlyCheckpointLoader" for v in prompt.values())
    px = s.size
    for nid, node in list(prompt.items()):
        t, inp = node["class_type"], node["inputs"]
        for key in ("unet_name", "model_name"):
            if key in inp:
                inp[key] = s.models.get(inp[key], inp[key])
                if not s.keep_weight_dtype:
                    inp["weight_dtype"] = "default"
        if t == "CheckpointLoaderSimple":  # only its MODEL output survives the substitutions below
            prompt[nid] = {"class_type": "UNETLoader", "inputs": {"unet_name": s.sd15, "weight_dtype": "default"}}
        elif t == "CLIPTextEncode":
            prompt[nid] = {"class_type": "VATest_Conditioning",
                           "inputs": {"dim": 768 if sd else 4096, "tokens": 8,
                                      "seed": zlib.crc32(inp["text"].encode()) % 1000}}
        elif t == "VAEDecode":
            prompt[nid] = {"class_type": "VATest_LatentToImage", "inputs": {"samples": inp["samples"]}}
        elif t == "EmptyHunyuanLatentVideo":
            inp.update(width=px, height=px, length=5)
        elif t == "EmptyLatentImage":
            inp.update(width=px, height=px, batch_size=4)
        elif t in ("BasicScheduler", "KSampler", "VA_TrainAdapter", "VA_DDIMInversion"):
            inp["steps"] = s.steps
        elif t == "VA_TrainDomainModel":
            inp.update(steps=s.steps, checkpoint_every=0)
            if s.domain_size:
                inp["size"] = s.domain_size
        elif t == "VA_LoadClipFolder":
            inp.update(folder=CLIP_FOLDER, frames=9, width=px, height=px, max_clips=3)
        elif t == "ImageScale":
            inp.update(width=px, height=px)
        elif t == "CLIPLoader":
            prompt[nid] = {"class_type": "VATest_ToyTextEncoder", "inputs": {"dim": 768 if sd else 4096}}
        elif t == "CLIPVisionLoader":
            del prompt[nid]
        elif t == "CLIPVisionEncode":
            prompt[nid] = {"class_type": "VATest_ClipVisionOutput", "inputs": {"image": inp["image"]}}
        elif t == "WanImageToVideo":
            inp.update(width=px, height=px, length=9)
        elif t == "ImageOnlyCheckpointLoader":  # SVD: the stand-in UNet, toy CLIP vision and image VAE
            prompt[nid] = {"class_type": "VATest_TinySVDCheckpoint",
                           "inputs": {"unet_name": s.svd} if s.svd else {}}
        elif t == "SVD_img2vid_Conditioning":
            inp.update(width=px, height=px, video_frames=4)
        elif t == "VA_SVDClipConditioning":
            inp.update(width=px, height=px)
        elif t == "VA_AIDConditioning":  # the tiny clips' length (training) or SVD's tiny video_frames
            inp.update(video_frames=9 if "instructions" in inp else 4)
        elif t == "VA_MLLMEndpoint":
            prompt[nid] = {"class_type": "VATest_ScriptedMLLM", "inputs": {}}
        elif t == "VA_MLLMStatePrompt":
            inp.update(frames=4 if svd else 9, states=2 if svd else 3)
        elif t == "VA_FramewisePrompts":
            inp.update(frames=9)
        elif t == "VAELoader":
            prompt[nid] = {"class_type": "VATest_ToyVAE", "inputs": {"kind": "image" if sd else "video"}}
    return prompt


def model_file(prompt: dict, src) -> str:
    """The diffusion-model file behind the MODEL link ``src`` (through model patches such as ModelSamplingSD3)."""
    node = prompt[src[0]]
    for key in ("unet_name", "ckpt_name"):
        if key in node["inputs"]:
            return node["inputs"][key]
    return model_file(prompt, node["inputs"]["model"])


def write_shipped_adapters(host, prompts: list[dict], load_model, svd_context: int) -> list[str]:
    """The adapter files the workflows' Load Adapters nodes read (except those that ship with the pack), as a shipped
    training workflow writes them (Train Adapters' file_name): a fresh set of that workflow's kind for ``load_model(file)``, the stand-in of the model
    it is loaded on, so the loading workflows run before (or without) the training ones. ``svd_context``: the
    SVD stand-in's context width (what Train Adapters reads off it for AID). Returns the names written."""
    import torch

    import folder_paths

    attach, training = host.pack_module("nodes.binding.attach"), host.pack_module("nodes.binding.training")
    registry = host.pack_module("adapters.registry")
    trained = {n["inputs"]["file_name"] + ".safetensors": n["inputs"] for pr in prompts for n in pr.values()
               if n["class_type"] == "VA_TrainAdapter"}
    folder = folder_paths.get_folder_paths("video_adapters")[0]
    written = []
    for pr in prompts:
        for n in pr.values():
            if n["class_type"] != "VA_LoadAdapter":
                continue
            name = n["inputs"]["adapter_name"]
            if name not in trained and folder_paths.get_full_path("video_adapters", name):
                continue  # a file that ships with the pack (the tiny instruction demo's adapters)
            if name not in trained:
                raise AssertionError(f"Load Adapters names {name}, which no shipped training workflow writes")
            model = load_model(model_file(pr, n["inputs"]["model"]))
            kind = trained[name]["kind"]
            config = training.kind_settings(registry.get(kind), trained[name].get("settings", ""))[0]
            if kind == "aid":  # what Train Adapters reads off the SVD stand-in and the toy text encoder
                config.update(context_dim=svd_context, vision_dim=svd_context, text_dim=4096, frames=4)
            torch.manual_seed(0)
            os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
            attach.new_adapters(kind, model, config).save(os.path.join(folder, name))
            written.append(name)
            del model
    return written


def write_clip_folder(host) -> str:
    """The folder the training workflows read (ComfyUI/input/<CLIP_FOLDER>): three short real videos with state
    prompts."""
    from devtools.tiny_models import write_video

    folder = os.path.join(host.input_dir, CLIP_FOLDER)
    os.makedirs(folder, exist_ok=True)
    for i in range(3):
        write_video(os.path.join(folder, f"clip_{i}.mp4"), 20, seed=i)
        with open(os.path.join(folder, f"clip_{i}.states.txt"), "w") as f:  # AID's training workflow reads them
            f.write("the object rests\nthe object moves away\n")
    return folder
