"""SimDA workflows: latent-shift attention on SD 1.5 frame batches, and one-shot video editing
(train adapters on a clip, DDIM-invert it, regenerate it with an edited prompt)."""

from __future__ import annotations

from devtools.build_workflows import N

SD15 = "v1-5-pruned-emaonly-fp16.safetensors"
SVD = "svd_xt.safetensors"
MODELS = {
    SVD: ("checkpoints", "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt/resolve/main/"
                         "svd_xt.safetensors"),
    SD15: ("checkpoints", "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/"
                          "v1-5-pruned-emaonly-fp16.safetensors"),
}

SOURCE = "a corgi running on a beach, waves, sunny day"
EDITED = "a corgi running on a beach, waves, sunny day, Van Gogh starry night painting style"
NEGATIVE = "blurry, low quality, deformed, watermark, text"
FRAMES = 16


def _sd15_base():
    return [
        N(1, "CheckpointLoaderSimple", 0, 0, {"ckpt_name": SD15}),
        N(2, "CLIPTextEncode", 1, 0, {"text": SOURCE}, {"clip": (1, 1)}, title="Prompt"),
        N(3, "CLIPTextEncode", 1, 1, {"text": NEGATIVE}, {"clip": (1, 1)}, title="Negative prompt"),
        N(4, "EmptyLatentImage", 1, 2, {"width": 512, "height": 512, "batch_size": FRAMES},
          title=f"{FRAMES} frames in the batch"),
        N(5, "VA_LatentShiftPatcher", 1, 3, {"mode": "simda", "frames": 0, "start_percent": 0.0,
                                             "end_percent": 1.0, "blocks": "all"}, {"model": (1, 0)}),
    ]


def _save(first, col, row, samples, prefix):
    dec, vid, save = first, first + 1, first + 2
    return [
        N(dec, "VAEDecode", col, row, links={"samples": samples, "vae": (1, 2)}),
        N(vid, "CreateVideo", col + 1, row, {"fps": 8.0}, {"images": (dec, 0)}),
        N(save, "SaveVideo", col + 2, row, {"filename_prefix": f"video/{prefix}", "format": "auto", "codec": "auto"},
          {"video": (vid, 0)}),
    ]


def sd15_latent_shift():
    nodes = _sd15_base()
    nodes.append(N(10, "KSampler", 2, 0, {"seed": 7, "steps": 25, "cfg": 7.5, "sampler_name": "euler",
                                         "scheduler": "normal", "denoise": 1.0},
                   {"model": (5, 0), "positive": (2, 0), "negative": (3, 0), "latent_image": (4, 0)}))
    nodes += _save(11, 3, 0, (10, 0), "simda_latent_shift")
    nodes.append(N(20, "KSampler", 2, 3, {"seed": 7, "steps": 25, "cfg": 7.5, "sampler_name": "euler",
                                         "scheduler": "normal", "denoise": 1.0},
                   {"model": (1, 0), "positive": (2, 0), "negative": (3, 0), "latent_image": (4, 0)},
                   title="Without latent shift (same seed)"))
    nodes += _save(21, 3, 3, (20, 0), "simda_no_latent_shift")
    notes = [("## Latent-shift attention (SimDA), training-free\nSD 1.5 renders the 16 frames of the batch; "
              "latent-shift attention lets every frame attend to the previous one (frame 0 is unchanged), which "
              "keeps colours and layout steadier from frame to frame. The lower row samples the same seed "
              "without the patch, for comparison. Works with SDXL and SVD too; Wan already attends over all "
              "frames and is refused.", 0, 5)]
    return nodes, notes


def sd15_one_shot_edit():
    nodes = _sd15_base()
    nodes += [
        N(10, "KSampler", 2, 0, {"seed": 7, "steps": 25, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
                                 "denoise": 1.0},
          {"model": (5, 0), "positive": (2, 0), "negative": (3, 0), "latent_image": (4, 0)},
          title="Source clip (replace with VAE Encode of your video)"),
        N(20, "VA_TrainAdapter", 3, 2, {"kind": "simda", "frames": 0, "steps": 300, "learning_rate": 5e-5,
                                        "batch_size": 1, "seed": 0, "latent_shift": "simda",
                                        "checkpoint_every": 100, "file_name": "simda/one_shot_clip",
                                        "resume_from": "none"},
          {"model": (1, 0), "clips": (10, 0), "positive": (2, 0)}, title="One-shot tuning (adapters only)"),
        N(21, "PreviewImage", 4, 4, links={"images": (20, 2)}, title="Loss curve"),
        N(22, "VA_DDIMInversion", 4, 2, {"steps": 50, "cfg": 1.0, "scheduler": "ddim_uniform"},
          {"model": (20, 0), "positive": (2, 0), "latent": (10, 0)}),
        N(23, "CLIPTextEncode", 4, 0, {"text": EDITED}, {"clip": (1, 1)}, title="Edited prompt"),
        N(24, "CFGGuider", 5, 0, {"cfg": 7.5}, {"model": (20, 0), "positive": (23, 0), "negative": (3, 0)}),
        N(25, "DisableNoise", 5, 1),
        N(26, "KSamplerSelect", 5, 2, {"sampler_name": "ddim"}),
        N(27, "SamplerCustomAdvanced", 6, 0, links={"noise": (25, 0), "guider": (24, 0), "sampler": (26, 0),
                                                    "sigmas": (22, 1), "latent_image": (22, 0)}),
    ]
    nodes += _save(30, 7, 0, (27, 0), "simda_edit")
    nodes += _save(40, 3, 0, (10, 0), "simda_edit_source")
    notes = [("## One-shot video editing (SimDA)\n1. A source clip (here generated; for your own video use Load "
              "Video -> Get Video Components -> VAE Encode at 512x512). 2. Train Adapters tunes only SimDA's small "
              "adapters on that clip (about 300 steps), the base model stays frozen. 3. DDIM Inversion turns the "
              "clip back into noise with its own caption. 4. Regenerate from that noise with the edited prompt "
              "(Disable Noise, the inversion's sigmas). The trained adapters are saved in models/video_adapters; "
              "reuse them with Load Adapters.", 0, 4)]
    return nodes, notes


def svd_head():
    """SVD checkpoint, first frame and SVD's own image-to-video conditioning (nodes 1-3)."""
    return [
        N(1, "ImageOnlyCheckpointLoader", 0, 0, {"ckpt_name": SVD}),
        N(2, "LoadImage", 0, 2, {"image": "example.png"}, title="First frame"),
        N(3, "SVD_img2vid_Conditioning", 1, 0, {"width": 1024, "height": 576, "video_frames": 14,
                                                "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0},
          {"clip_vision": (1, 1), "init_image": (2, 0), "vae": (1, 2)}),
    ]


def svd_tail(first, col, samples, prefix):
    """Decode with SVD's VAE, make a 6 fps video, save it."""
    dec, vid, save = first, first + 1, first + 2
    return [
        N(dec, "VAEDecode", col, 0, links={"samples": samples, "vae": (1, 2)}),
        N(vid, "CreateVideo", col + 1, 0, {"fps": 6.0}, {"images": (dec, 0)}),
        N(save, "SaveVideo", col + 2, 0, {"filename_prefix": f"video/{prefix}", "format": "auto", "codec": "auto"},
          {"video": (vid, 0)}),
    ]


def svd_latent_shift():
    """Image-to-video with SVD; latent shift patches its spatial blocks only (the temporal ones already mix
    frames)."""
    nodes = svd_head() + [
        N(4, "VideoLinearCFGGuidance", 1, 2, {"min_cfg": 1.0}, {"model": (1, 0)}),
        N(5, "VA_LatentShiftPatcher", 1, 3, {"mode": "simda", "frames": 0, "start_percent": 0.0,
                                             "end_percent": 1.0, "blocks": "all"}, {"model": (4, 0)}),
        N(10, "KSampler", 2, 0, {"seed": 7, "steps": 20, "cfg": 2.5, "sampler_name": "euler",
                                 "scheduler": "karras", "denoise": 1.0},
          {"model": (5, 0), "positive": (3, 0), "negative": (3, 1), "latent_image": (3, 2)}),
    ] + svd_tail(11, 3, (10, 0), "svd_latent_shift")
    notes = [("## SVD with latent-shift attention\nStable Video Diffusion animates the first frame; the patch "
              "makes its spatial self-attention also look at the previous frame (its temporal layers are left "
              "alone). Put svd_xt.safetensors in models/checkpoints.", 0, 4)]
    return nodes, notes


WORKFLOWS = {
    "SimDA - latent-shift attention on SVD": svd_latent_shift,
    "SimDA - latent-shift attention on SD 1.5": sd15_latent_shift,
    "SimDA - one-shot video editing": sd15_one_shot_edit,
}
