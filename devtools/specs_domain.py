"""Domain-model workflows (Video Adapter): train a small domain model on a folder of your clips inside
ComfyUI, then sample it composed with the frozen Wan 2.1 14B prior; the same with first-frame conditioning
(image-to-video in your style)."""

from __future__ import annotations

from devtools.build_workflows import NEGATIVE, N, sampler_chain

CLIPS_NOTE = ("Put your clips in ComfyUI/input/training_clips (mp4, webm, mov, ...), each with an optional "
              "caption in <video name>.txt. Load Training Clips cuts 33-frame clips at 832x480 and encodes "
              "them with the prior's VAE and text encoder.")
PROMPT = "a fox running through tall grass, in my hand-painted style"


def _base(first_frame: bool):
    nodes = [
        N(1, "VA_LoadFrozenVideoModel", 0, 0, {"model_name": "wan2.1_t2v_14B_fp16.safetensors",
          "weight_dtype": "fp8_e4m3fn"}, title="Prior: Wan 2.1 14B (frozen)"),
        N(2, "ModelSamplingSD3", 0, 1, {"shift": 8.0}, {"model": (1, 0)}),
        N(3, "CLIPLoader", 0, 2, {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan",
          "device": "default"}),
        N(4, "VAELoader", 0, 3, {"vae_name": "wan_2.1_vae.safetensors"}),
        N(5, "VA_LoadClipFolder", 1, 0, {"folder": "training_clips", "frames": 33, "width": 832, "height": 480,
          "frame_stride": 1, "clips_per_video": 4, "max_clips": 0,
          "default_caption": "a clip in my hand-painted style"},
          {"vae": (4, 0), "clip": (3, 0)}),
        N(6, "PreviewImage", 2, 3, links={"images": (5, 3)}, title="First frame of every clip"),
        N(7, "VA_TrainDomainModel", 2, 0, {
            "size": "xs", "steps": 2000, "learning_rate": 1e-4, "batch_size": 1, "seed": 0, "cond_dropout": 0.1,
            "checkpoint_every": 250, "file_name": "domain/my_style_i2v" if first_frame else "domain/my_style",
            "attention": "factorised", "first_frame_cond": first_frame, "edge_cond": False, "resume_from": "none"},
          {"prior_model": (2, 0), "clips": (5, 0), "captions": (5, 1)}),
        N(8, "PreviewImage", 3, 3, links={"images": (7, 2)}, title="Loss curve"),
        N(9, "CLIPTextEncode", 1, 4, {"text": PROMPT}, {"clip": (3, 0)}, title="Positive prompt"),
        N(10, "CLIPTextEncode", 1, 5, {"text": NEGATIVE}, {"clip": (3, 0)}, title="Negative prompt"),
        N(11, "EmptyHunyuanLatentVideo", 2, 5, {"width": 832, "height": 480, "length": 33, "batch_size": 1}),
    ]
    return nodes


def _vae_decode(i, c, r, src):
    return N(i, "VAEDecode", c, r, links={"samples": src, "vae": (4, 0)})


def train_from_folder():
    nodes = _base(first_frame=False)
    nodes.append(N(20, "VA_ScoreComposer", 3, 0, {"prior_strength": 0.2, "cfg": 5.0, "composition_end": 0.9},
                   {"domain_model": (7, 0), "prior_model": (2, 0), "positive": (9, 0), "negative": (10, 0)}))
    nodes += sampler_chain(30, 7, 20, 11, 3, 5, steps=30, seed=42, save_prefix="video_adapter_my_style",
                           decode=_vae_decode)
    notes = [("## Train a domain model on your clips, then compose\n" + CLIPS_NOTE + " Train Domain Model "
              "learns your style in Wan's latent space (xs: about 1.25 % of the prior) and saves "
              "models/video_adapters/domain/my_style.safetensors; Cancel keeps a checkpoint that resume_from "
              "continues. Next time, load the file with Load Domain Model instead of training. The Score "
              "Composer then adds the frozen 14B prior's score (prior_strength 0.1-0.4).", 0, 6)]
    return nodes, notes


def train_first_frame():
    nodes = _base(first_frame=True)
    nodes += [
        N(12, "LoadImage", 1, 6, {"image": "example.png"}, title="First frame"),
        N(13, "ImageScale", 2, 6, {"upscale_method": "lanczos", "width": 832, "height": 480, "crop": "center"},
          {"image": (12, 0)}),
        N(14, "VAEEncode", 3, 6, links={"pixels": (13, 0), "vae": (4, 0)}),
        N(15, "VA_DomainModelConditioning", 3, 4, links={"conditioning": (9, 0), "first_frame": (14, 0)}),
        N(20, "VA_ScoreComposer", 4, 0, {"prior_strength": 0.2, "cfg": 5.0, "composition_end": 0.9},
          {"domain_model": (7, 0), "prior_model": (2, 0), "positive": (15, 0), "negative": (10, 0),
           "prior_positive": (9, 0)}),
    ]
    nodes += sampler_chain(30, 7, 20, 11, 4, 6, steps=30, seed=42, save_prefix="video_adapter_my_style_i2v",
                           decode=_vae_decode)
    notes = [("## Train with first-frame conditioning, then animate an image in your style\n" + CLIPS_NOTE +
              " With first_frame_cond on, the domain model also sees each clip's first latent frame, so at "
              "sampling time Domain Model Conditioning can hand it a start image. The frozen text-to-video "
              "prior only gets the text (prior_positive) and contributes motion and detail.", 0, 7)]
    return nodes, notes


WORKFLOWS = {
    "Video Adapter - train a domain model on your clips": train_from_folder,
    "Video Adapter - train a first-frame domain model": train_first_frame,
}
