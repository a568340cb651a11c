"""AID workflows (instruction-guided video prediction on a frozen SVD): train AID adapters on a folder of clips
whose captions are instructions, and predict a video from a first frame and an instruction (MLLM state prompts ->
AID Conditioning -> Dual CFG Guider)."""

from __future__ import annotations

from adapters.instruction_world import (AID_DEMO_BASE, AID_DEMO_FILES, AID_DEMO_IMAGE_CFG, AID_DEMO_TEXT_CFG,
                                        DEMO_STEPS)
from devtools.build_workflows import N, upscaled_video
from devtools.specs_simda import SVD, svd_tail

TEXT_ENCODER = "clip_l.safetensors"
MODELS = {TEXT_ENCODER: ("text_encoders", "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/"
                                          "clip_l.safetensors")}
ADAPTERS = "aid/my_predictor"  # what the training workflow writes and the prediction workflow loads
WIDTH, HEIGHT, FRAMES = 512, 320, 14
INSTRUCTION = "put the corn in the pot"


def train_on_clips():
    """Load Training Clips (captions = instructions) -> SVD Conditioning per Clip -> AID Conditioning -> Train
    Adapters (kind aid)."""
    nodes = [
        N(1, "ImageOnlyCheckpointLoader", 0, 0, {"ckpt_name": SVD}, title="SVD (frozen)"),
        N(2, "CLIPLoader", 0, 2, {"clip_name": TEXT_ENCODER, "type": "stable_diffusion", "device": "default"},
          title="Text encoder for the instructions"),
        N(3, "VA_LoadClipFolder", 1, 0, {"folder": "training_clips", "frames": FRAMES, "width": WIDTH,
                                         "height": HEIGHT, "frame_stride": 1, "clips_per_video": 1, "max_clips": 0,
                                         "default_caption": ""},
          {"vae": (1, 2), "clip": (2, 0)}, title="Load Training Clips (caption = instruction)"),
        N(4, "VA_SVDClipConditioning", 2, 0, {"width": WIDTH, "height": HEIGHT, "motion_bucket_id": 127, "fps": 6,
                                              "augmentation_level": 0.0},
          {"clip_vision": (1, 1), "vae": (1, 2), "first_frames": (3, 3)}),
        N(5, "VA_AIDConditioning", 3, 0, {"instruction": "", "video_frames": FRAMES},
          {"positive": (4, 0), "negative": (4, 1), "clip": (2, 0), "instructions": (3, 1), "states": (3, 4)},
          title="AID Conditioning (instructions and states per clip)"),
        N(6, "VA_TrainAdapter", 4, 0, {"kind": "aid", "frames": 0, "steps": 3000, "learning_rate": 1e-4,
                                       "batch_size": 1, "seed": 0, "latent_shift": "none", "checkpoint_every": 250,
                                       "file_name": ADAPTERS, "resume_from": "none", "text_dropout": 0.05,
                                       "image_dropout": 0.05, "both_dropout": 0.05, "settings": ""},
          {"model": (1, 0), "clips": (3, 0), "positive": (5, 0)}, title="Train Adapters (aid)"),
        N(7, "PreviewImage", 5, 0, links={"images": (6, 2)}, title="Loss curve"),
        N(8, "PreviewAny", 5, 2, links={"source": (6, 3)}, title="Summary"),
        N(9, "PreviewAny", 2, 3, links={"source": (3, 2)}, title="Clips in order (for the state schedules)"),
    ]
    notes = [("## Train AID on your clips (instruction-guided video prediction)\nPut your clips in "
              "ComfyUI/input/training_clips, each with its instruction in <video name>.txt (\"put the corn in the "
              "pot\"). Load Training Clips cuts 14-frame clips at 512x320 and encodes them with SVD's VAE; the "
              "instructions are encoded with the text encoder. SVD Conditioning per Clip gives each clip its own "
              "first frame. State prompts come from <video name>.states.txt next to each video: one state per line "
              "(\"a hand holds the corn\", then \"the corn is in the pot\"), spread over the video, or a schedule in "
              "the video's frame numbers as MLLM State Prompt writes it (\"0\": \"a hand holds the corn\", "
              "\"40\": \"the corn is in the pot\"). Without states files AID trains on the instructions alone. Train "
              "Adapters (kind aid) keeps SVD frozen and trains the Dual-Query Transformer, the cross-attention "
              "deltas and the spatial / short-term / long-term temporal adapters, with 5 % text, image and both "
              "dropout for the Dual CFG Guider.", 0, 3)]
    return nodes, notes


def predict_from_first_frame():
    """First frame + instruction -> MLLM State Prompt -> AID Conditioning -> Dual CFG Guider -> sampler."""
    nodes = [
        N(1, "ImageOnlyCheckpointLoader", 0, 0, {"ckpt_name": SVD}, title="SVD (frozen)"),
        N(2, "LoadImage", 0, 2, {"image": "example.png"}, title="First frame"),
        N(3, "SVD_img2vid_Conditioning", 1, 0, {"width": WIDTH, "height": HEIGHT, "video_frames": FRAMES,
                                                "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0},
          {"clip_vision": (1, 1), "init_image": (2, 0), "vae": (1, 2)}),
        N(4, "CLIPLoader", 0, 4, {"clip_name": TEXT_ENCODER, "type": "stable_diffusion", "device": "default"},
          title="Text encoder (the one AID was trained with)"),
        N(5, "VA_LoadAdapter", 1, 3, {"adapter_name": ADAPTERS + ".safetensors", "strength": 1.0, "frames": 0},
          {"model": (1, 0)}, title="Load Adapters (your AID file)"),
        N(6, "VA_MLLMEndpoint", 1, 5, {"base_url": "http://127.0.0.1:11434/v1", "model": "qwen2.5vl:7b",
                                       "api_key_env": "", "timeout": 120, "keep_alive": "0",
                                       "structured_output": True}, title="MLLM (Ollama; or Load MLLM)"),
        N(7, "VA_MLLMStatePrompt", 2, 4, {"instruction": INSTRUCTION, "states": 3, "frames": FRAMES, "seed": 0,
                                          "max_tokens": 512, "temporal_stride": 1, "system_prompt": ""},
          {"image": (2, 0), "mllm": (6, 0)}),
        N(8, "VA_AIDConditioning", 3, 0, {"instruction": INSTRUCTION, "video_frames": FRAMES},
          {"positive": (3, 0), "negative": (3, 1), "clip": (4, 0), "states": (7, 1), "model": (5, 0)}),
        N(9, "VA_DualCFGGuider", 4, 0, {"image_cfg": 1.5, "text_cfg": 4.0, "image_cfg_ramp": "constant",
                                        "image_cfg_first_frame": 1.0, "clip_vision_in_no_image": "keep"},
          {"model": (5, 0), "positive": (8, 0), "negative": (8, 1)}),
        N(10, "BasicScheduler", 4, 2, {"scheduler": "karras", "steps": 25, "denoise": 1.0}, {"model": (5, 0)}),
        N(11, "KSamplerSelect", 4, 3, {"sampler_name": "euler"}),
        N(12, "RandomNoise", 4, 4, {"noise_seed": 7}),
        N(13, "SamplerCustomAdvanced", 5, 0, links={"noise": (12, 0), "guider": (9, 0), "sampler": (11, 0),
                                                    "sigmas": (10, 0), "latent_image": (3, 2)}),
    ] + svd_tail(14, 6, (13, 0), "aid_prediction")
    notes = [("## Predict a video from a first frame and an instruction (AID on SVD)\n1. A multimodal LLM (here "
              "through Ollama's OpenAI-compatible endpoint; or Load MLLM) splits the instruction into successive "
              "states of the video. 2. AID Conditioning encodes the instruction and the states with the text encoder "
              "the adapters were trained with and adds them to SVD's conditioning; every frame sees its own state. "
              "3. The Dual CFG Guider guides the start image (image_cfg) and the instruction (text_cfg) separately. "
              "Load Adapters reads the file the training workflow wrote (models/video_adapters/" + ADAPTERS +
              ".safetensors). Put svd_xt.safetensors in models/checkpoints and clip_l.safetensors in "
              "models/text_encoders.", 0, 6)]
    return nodes, notes


WORKFLOWS = {
    "AID - train on your clips with instructions (SVD)": train_on_clips,
    "AID - predict a video from a first frame and an instruction (SVD)": predict_from_first_frame,
}


# the AID tiny demo's saved rows: (name, the instruction it follows or None, what makes it)
TINY_ROWS = (("1_truth", 1, "truth"), ("2_base_alone", None, "alone"), ("3_base_with_AID", 1, "aid"),
             ("4_truth_other", 2, "truth"), ("5_base_alone_again", None, "alone"), ("6_with_AID_other", 2, "aid"))
# the demo's scene: held-out scene 29 with one motion each ("move the magenta triangle up" / "... down"), one of the
# 2 of scenes 0-31 where both instructions come out right at sample seed 0 (docs/aid.md, "The tiny demo")
TINY_SCENE, TINY_PAIR = 29, "one motion each"


def tiny_demo():
    """The shipped SVD-architecture base of the instruction miniature and its full AID adapters: one held-out first
    frame, two instructions (phases swapped), each through MLLM State Prompt -> AID Conditioning -> Dual CFG Guider,
    beside the frozen base alone (which reads no instruction) and the true clips."""
    nodes = [
        N(1, "VA_TinyInstructionModels", 0, 0, {"base": AID_DEMO_BASE}, title="Frozen SVD base + its VAE (no download)"),
        N(2, "VA_TinyInstructionScene", 0, 2, {"seed": TINY_SCENE, "pair": TINY_PAIR},
          title="A held-out scene and two instructions"),
        N(3, "VA_LoadAdapter", 1, 0, {"adapter_name": AID_DEMO_FILES[1], "strength": 1.0, "frames": 0},
          {"model": (1, 0)}, title="Load Adapters (the shipped AID file)"),
        N(4, "VA_TinyInstructionEncoders", 0, 4, links={"model": (1, 0)},
          title="Its image and text encoders, its state writer (no download)"),
        N(5, "SVD_img2vid_Conditioning", 1, 2, {"width": 32, "height": 32, "video_frames": 8, "motion_bucket_id": 127,
                                                "fps": 6, "augmentation_level": 0.0},
          {"clip_vision": (4, 1), "init_image": (2, 0), "vae": (1, 1)}),
        N(6, "VA_TinyInstructionLatent", 1, 4, {"frames": 8}, {"vae": (1, 1), "image": (2, 0)}),
        N(7, "RandomNoise", 1, 5, {"noise_seed": 0}),
        N(8, "KSamplerSelect", 1, 6, {"sampler_name": "euler"}),
        N(9, "BasicScheduler", 1, 7, {"scheduler": "simple", "steps": DEMO_STEPS, "denoise": 1.0}, {"model": (3, 0)}),
    ]
    for k in (1, 2):  # instruction k: its states, its AID conditioning and its guider
        sp, aid, guider = 10 + 3 * (k - 1), 11 + 3 * (k - 1), 12 + 3 * (k - 1)
        nodes += [
            N(sp, "VA_MLLMStatePrompt", 2, 4 * k - 4, {"states": 2, "frames": 8, "seed": 0, "max_tokens": 512,
                                                       "temporal_stride": 1, "system_prompt": ""},
              {"image": (2, 0), "instruction": (2, k), "mllm": (4, 2)},
              title=f"State prompts, instruction {k}"),
            N(aid, "VA_AIDConditioning", 3, 4 * k - 4, {"video_frames": 8},
              {"positive": (5, 0), "negative": (5, 1), "clip": (4, 0), "instruction": (2, k), "states": (sp, 1),
               "model": (3, 0)}, title=f"AID Conditioning, instruction {k}"),
            N(guider, "VA_DualCFGGuider", 4, 4 * k - 4, {"image_cfg": AID_DEMO_IMAGE_CFG, "text_cfg": AID_DEMO_TEXT_CFG,
                                                         "image_cfg_ramp": "constant", "image_cfg_first_frame": 1.0,
                                                         "clip_vision_in_no_image": "keep"},
              {"model": (3, 0), "positive": (aid, 0), "negative": (aid, 1)}, title=f"Dual CFG, instruction {k}"),
        ]
    nodes += [
        N(20, "KSampler", 4, 8, {"seed": 0, "steps": DEMO_STEPS, "cfg": AID_DEMO_IMAGE_CFG, "sampler_name": "euler",
                                 "scheduler": "simple", "denoise": 1.0},
          {"model": (1, 0), "positive": (5, 0), "negative": (5, 1), "latent_image": (6, 0)},
          title="base alone (image CFG; no instruction)"),
        N(21, "VAEDecode", 5, 8, links={"samples": (20, 0), "vae": (1, 1)}),
    ] + upscaled_video(22, 6, 8, (21, 0))
    nid = 30
    for row, (name, k, what) in enumerate(TINY_ROWS):
        if what == "alone":
            video = (23, 0)
            chain = []
        else:
            if what == "truth":
                frames = (2, 3 if k == 1 else 4)
                chain = []
            else:
                guider = 12 + 3 * (k - 1)
                chain = [
                    N(nid, "SamplerCustomAdvanced", 5, 2 * row, links={"noise": (7, 0), "guider": (guider, 0),
                      "sampler": (8, 0), "sigmas": (9, 0), "latent_image": (6, 0)}, title=f"base + AID, instruction {k}"),
                    N(nid + 1, "VAEDecode", 6, 2 * row, links={"samples": (nid, 0), "vae": (1, 1)}),
                ]
                frames = (nid + 1, 0)
            chain += upscaled_video(nid + 2, 7, 2 * row, frames)
            video = (nid + 3, 0)
        chain.append(N(nid + 4, "SaveVideo", 9, 2 * row, {"filename_prefix": f"aid_tiny_demo/{name}", "format": "auto",
                                                           "codec": "auto"}, {"video": video}))
        nodes += chain
        nid += 10
    notes = [("## AID tiny demo (no downloads, CPU, under a minute)\nA frozen SVD-architecture base of the pack's "
              "miniature world (32 x 32 videos of coloured shapes, 8 frames, 2.2M parameters) animates a held-out "
              "first frame; it never saw an instruction. Its shipped AID adapters (Dual-Query Transformer, spatial "
              "and temporal adapters) read one through AID's own chain: MLLM State Prompt splits it into states "
              "(here a rule-based stand-in for the multimodal LLM, which knows the miniature's grammar), AID "
              "Conditioning adds the instruction and the states to SVD's conditioning, and the Dual CFG Guider "
              "guides image and instruction separately (image_cfg 1.5, text_cfg 2). Each row is one instruction: "
              "the true clip, the base alone (the same video in both rows: it reads no instruction), the base with "
              "AID. Scene 29 is shown because both of its instructions come out right; that happens in 2 of 32 "
              "held-out scenes. Over 32 scenes x 2 instructions x 3 seeds a video with AID follows its "
              "instruction in 0.40 of the cases, the base alone in 0.16. Change the scene's seed for other "
              "starts, and its pair to 'phases swapped' for two-phase instructions, whose second phase AID mostly "
              "misses. Numbers and how they were measured: docs/aid.md.", 0, 6)]
    return nodes, notes


WORKFLOWS["AID - tiny demo, no downloads"] = tiny_demo
