"""FCA workflows (text-video prediction on a frozen Wan 2.1 text-to-video model): train FCA adapters on a folder of
your clips with captions, and predict a video from a first frame and a text with the trained adapters."""

from __future__ import annotations

from adapters.instruction_world import DEMO_CFG, DEMO_FILES, DEMO_STEPS
from devtools.build_workflows import NEGATIVE, N, sampler_chain, upscaled_video

MODEL_1_3B = "wan2.1_t2v_1.3B_fp16.safetensors"
TEXT_ENCODER = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
VAE = "wan_2.1_vae.safetensors"
ADAPTERS = "fca/my_predictor"  # what the training workflow writes and the prediction workflow loads
WIDTH, HEIGHT, FRAMES = 832, 480, 33
PROMPT = "a hand pushes the cup from left to right across the table"
CLIPS_NOTE = ("Put your clips in ComfyUI/input/training_clips (mp4, webm, mov, ...), each with its caption in "
              "<video name>.txt: the caption says what happens (\"pushing the cup from left to right\"). Load "
              "Training Clips cuts 33-frame clips at 832x480 and encodes them with Wan's VAE and text encoder.")


def _loaders(model=MODEL_1_3B):
    """Wan 2.1 T2V, its text encoder and VAE (nodes 1-4)."""
    return [
        N(1, "UNETLoader", 0, 0, {"unet_name": model, "weight_dtype": "default"},
          title="Wan 2.1 T2V 1.3B (frozen; the 14B: change the file)"),
        N(2, "ModelSamplingSD3", 1, 0, {"shift": 8.0}, {"model": (1, 0)}),
        N(3, "CLIPLoader", 0, 1, {"clip_name": TEXT_ENCODER, "type": "wan", "device": "default"}),
        N(4, "VAELoader", 0, 2, {"vae_name": VAE}),
    ]


def _prompts(col, row):
    return [
        N(5, "CLIPTextEncode", col, row, {"text": PROMPT}, {"clip": (3, 0)}, title="Prompt (the motion)"),
        N(6, "CLIPTextEncode", col, row + 1, {"text": NEGATIVE}, {"clip": (3, 0)}, title="Negative prompt"),
    ]


def _vae_decode(i, c, r, src):
    return N(i, "VAEDecode", c, r, links={"samples": src, "vae": (4, 0)})


def train_on_clips():
    """Load Training Clips -> Train Adapters (kind fca); then a first prediction from the first clip's first frame
    (Initial Frames Conditioning -> CFG Guider -> Sampler Custom Advanced)."""
    nodes = _loaders() + [
        N(7, "VA_LoadClipFolder", 1, 1, {"folder": "training_clips", "frames": FRAMES, "width": WIDTH,
                                         "height": HEIGHT, "frame_stride": 1, "clips_per_video": 4, "max_clips": 0,
                                         "default_caption": ""},
          {"vae": (4, 0), "clip": (3, 0)}),
        N(8, "VA_TrainAdapter", 2, 0, {"kind": "fca", "frames": 0, "steps": 2000, "learning_rate": 1e-3,
                                       "batch_size": 1, "seed": 0, "latent_shift": "none", "checkpoint_every": 250,
                                       "file_name": ADAPTERS, "resume_from": "none", "settings": ""},
          {"model": (2, 0), "clips": (7, 0), "positive": (7, 1)}, title="Train Adapters (fca)"),
        N(9, "PreviewImage", 3, 4, links={"images": (8, 2)}, title="Loss curve"),
        N(10, "PreviewImage", 2, 4, links={"images": (7, 3)}, title="First frame of every clip"),
    ] + _prompts(2, 6) + [
        N(11, "VA_InitialFramesConditioning", 3, 6, {"initial_frames": 1, "noise_step": 1, "seed": 0},
          {"positive": (5, 0), "negative": (6, 0), "vae": (4, 0), "image": (7, 3)},
          title="Initial frame: the first clip's"),
        N(12, "EmptyHunyuanLatentVideo", 3, 8, {"width": WIDTH, "height": HEIGHT, "length": FRAMES, "batch_size": 1}),
        N(13, "CFGGuider", 4, 6, {"cfg": 6.0}, {"model": (8, 0), "positive": (11, 0), "negative": (11, 1)}),
    ]
    nodes += sampler_chain(20, 8, 13, 12, 4, 8, steps=30, seed=42, save_prefix="fca_first_prediction",
                           decode=_vae_decode)
    notes = [("## Train FCA on your clips (text-video prediction)\n" + CLIPS_NOTE + " Train Adapters (kind fca) "
              "keeps Wan frozen and trains, beside every block, an attention branch over the text, the first "
              "frame's hidden states and per-frame text, with the FCA paper's recipe (learning rate 1e-3, cosine "
              "after a warm-up, clipping). It saves models/video_adapters/" + ADAPTERS + ".safetensors; Cancel "
              "keeps a checkpoint that resume_from continues (keep steps the same). The lower row predicts a "
              "video from the first clip's first frame and the prompt; next time use the prediction workflow.",
              0, 4)]
    return nodes, notes


def predict_from_first_frame():
    """Load Image -> Initial Frames Conditioning -> Load Adapters -> KSampler -> decode and save."""
    nodes = _loaders() + _prompts(1, 1) + [
        N(7, "VA_LoadAdapter", 2, 0, {"adapter_name": ADAPTERS + ".safetensors", "strength": 1.0, "frames": 0},
          {"model": (2, 0)}, title="Load Adapters (your FCA file)"),
        N(8, "LoadImage", 0, 3, {"image": "example.png"}, title="First frame"),
        N(9, "ImageScale", 1, 3, {"upscale_method": "lanczos", "width": WIDTH, "height": HEIGHT, "crop": "center"},
          {"image": (8, 0)}, title="To the video size"),
        N(10, "VA_InitialFramesConditioning", 2, 2, {"initial_frames": 1, "noise_step": 1, "seed": 0},
          {"positive": (5, 0), "negative": (6, 0), "vae": (4, 0), "image": (9, 0)}),
        N(11, "EmptyHunyuanLatentVideo", 2, 4, {"width": WIDTH, "height": HEIGHT, "length": FRAMES, "batch_size": 1}),
        N(12, "KSampler", 3, 0, {"seed": 42, "steps": 30, "cfg": 6.0, "sampler_name": "uni_pc", "scheduler": "simple",
                                 "denoise": 1.0},
          {"model": (7, 0), "positive": (10, 0), "negative": (10, 1), "latent_image": (11, 0)}),
        N(13, "VAEDecode", 4, 0, links={"samples": (12, 0), "vae": (4, 0)}),
        N(14, "CreateVideo", 5, 0, {"fps": 16.0}, {"images": (13, 0)}),
        N(15, "SaveVideo", 6, 0, {"filename_prefix": "video/fca_prediction", "format": "auto", "codec": "auto"},
          {"video": (14, 0)}),
    ]
    notes = [("## Predict a video from a first frame and a text (FCA on Wan 2.1)\nLoad Adapters reads FCA adapters "
              "trained with the training workflow (models/video_adapters/" + ADAPTERS + ".safetensors). Initial "
              "Frames Conditioning encodes the first frame, gives it one small noise step and puts it on both "
              "prompts: the negative drops only the text, never the frame. The model runs itself once on the frame "
              "per sampling run; every FCA branch then reads those states at every step. For Wan 2.1 T2V 14B, "
              "change the model file (wan2.1_t2v_14B_fp16.safetensors) and load adapters trained on the 14B: an "
              "adapter file fits only the model size it was trained on. The first video frame is the model's "
              "reconstruction of yours; SamplerCustomAdvanced with a CFG Guider works the same way.", 0, 5)]
    return nodes, notes


WORKFLOWS = {
    "FCA - train on your clips with captions": train_on_clips,
    "FCA - predict a video from a first frame and text on Wan 2.1": predict_from_first_frame,
}


TINY_ROWS = (("1_truth", None, None), ("2_base_alone", 1, False), ("3_base_with_FCA", 1, True),
             ("4_truth_swapped", None, None), ("5_base_alone_swapped", 2, False), ("6_with_FCA_swapped", 2, True))


def tiny_demo(base="turns"):
    """The shipped instruction miniature: one held-out first frame, two instructions (phases swapped), each sampled
    by the frozen base alone and with its FCA adapters, beside the true clips."""
    nodes = [
        N(1, "VA_TinyInstructionModels", 0, 0, {"base": base}, title="Frozen base + its VAE (no download)"),
        N(2, "VA_TinyInstructionScene", 0, 2, {"seed": 0}, title="A held-out scene and two instructions"),
        N(3, "VA_LoadAdapter", 1, 0, {"adapter_name": DEMO_FILES[base][1], "strength": 1.0, "frames": 0},
          {"model": (1, 0)}, title="Load Adapters (the shipped FCA file)"),
        N(4, "VA_TinyInstructionLatent", 1, 2, {"frames": 8}, {"vae": (1, 1), "image": (2, 0)}),
    ]
    for k in (1, 2):  # instruction k: its prompt and its initial-frame conditions
        p, ifc = 4 + k, 6 + k
        nodes += [
            N(p, "VA_TinyInstructionPrompt", 1, 2 + 2 * k, links={"model": (1, 0), "instruction": (2, k)},
              title=f"Instruction {k}" + (" (phases swapped)" if k == 2 else "")),
            N(ifc, "VA_InitialFramesConditioning", 2, 2 + 2 * k, {"initial_frames": 1, "noise_step": 1, "seed": 0},
              {"positive": (p, 0), "negative": (p, 1), "vae": (1, 1), "image": (2, 0)},
              title=f"Initial frame for FCA, instruction {k}"),
        ]
    nid = 10
    for row, (name, k, fca) in enumerate(TINY_ROWS):
        if k is None:
            frames = (2, 3 if name == "1_truth" else 4)
            chain = []
        else:
            conds = (6 + k, 0), (6 + k, 1)
            if not fca:
                conds = (4 + k, 0), (4 + k, 1)
            chain = [
                N(nid, "KSampler", 3, 2 * row, {"seed": 0, "steps": DEMO_STEPS, "cfg": DEMO_CFG,
                                                "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0},
                  {"model": (3, 0) if fca else (1, 0), "positive": conds[0], "negative": conds[1],
                   "latent_image": (4, 0)}, title=name.split("_", 1)[1].replace("_", " ")),
                N(nid + 1, "VAEDecode", 4, 2 * row, links={"samples": (nid, 0), "vae": (1, 1)}),
            ]
            frames = (nid + 1, 0)
        chain += upscaled_video(nid + 2, 5, 2 * row, frames) + [
            N(nid + 4, "SaveVideo", 7, 2 * row, {"filename_prefix": f"fca_tiny_demo/{name}", "format": "auto",
                                                  "codec": "auto"}, {"video": (nid + 3, 0)}),
        ]
        nodes += chain
        nid += 10
    notes = [("## FCA tiny demo (no downloads, CPU, under a minute)\nA frozen Wan 2.1-architecture base of the "
              "pack's miniature world (32 x 32 videos of coloured shapes, 8 frames, 1.2M parameters) predicts a video "
              "from a held-out first frame and an instruction, alone and with its shipped FCA adapters. Rows 1-3 "
              "follow the scene's instruction, rows 4-6 the same instruction with its phases swapped: one start, two "
              "motions. 'truth' is the true clip. This base (turns) was pretrained on one- and two-phase "
              "instructions, so it follows most of them by itself, and its FCA adapters add nothing measurable: over "
              "32 held-out scenes x 2 instructions x 3 seeds both phases come out right in 0.84 of the videos alone "
              "and 0.83 with FCA. Set the base to single-phase and the adapters to tvp_fca_full.safetensors for what "
              "FCA does add: that base never saw a second phase; alone it gets the first phase of these "
              "instructions right in 0.18 of the videos, with FCA in 0.60 (the second phase: 0.04 and 0.13). "
              "Change the scene's seed for another start, or type your own instruction in a prompt node (disconnect "
              "its instruction input first). Numbers and how they were measured: docs/fca.md.", 0, 5)]
    return nodes, notes


WORKFLOWS["FCA - tiny demo, no downloads"] = tiny_demo
