"""Dual classifier-free guidance workflows: Wan 2.1 image-to-video and SVD with separate image and text scales."""

from __future__ import annotations

from devtools.build_workflows import MODELS as WAN_MODELS, N, NEGATIVE, WAN_REPO
from devtools.specs_simda import svd_head, svd_tail

WAN_I2V = "wan2.1_i2v_480p_14B_fp16.safetensors"
CLIP_VISION = "clip_vision_h.safetensors"
MODELS = {
    WAN_I2V: ("diffusion_models", f"{WAN_REPO}/diffusion_models/{WAN_I2V}"),
    CLIP_VISION: ("clip_vision", f"{WAN_REPO}/clip_vision/{CLIP_VISION}"),
}
TEXT_ENCODER = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
VAE = "wan_2.1_vae.safetensors"
assert TEXT_ENCODER in WAN_MODELS and VAE in WAN_MODELS
PROMPT = "the lighthouse keeper opens the door and steps out into the wind, camera slowly pushes in"


def _wan_i2v_loaders(vision_row=3):
    """Wan 2.1 I2V model, text encoder, VAE, CLIP vision and the start image with its CLIP-vision encoding
    (nodes 1-6)."""
    return [
        N(1, "UNETLoader", 0, 0, {"unet_name": WAN_I2V, "weight_dtype": "default"}),
        N(2, "CLIPLoader", 0, 1, {"clip_name": TEXT_ENCODER, "type": "wan", "device": "default"}),
        N(3, "VAELoader", 0, 2, {"vae_name": VAE}),
        N(4, "CLIPVisionLoader", 0, 3, {"clip_name": CLIP_VISION}),
        N(5, "LoadImage", 0, 4, {"image": "example.png"}, title="Start image"),
        N(6, "CLIPVisionEncode", 1, vision_row, {"crop": "none"}, {"clip_vision": (4, 0), "image": (5, 0)}),
    ]


def _dual_cfg_tail(first, col, model, i2v, prefix):
    """Dual CFG Guider on ``model`` with the conditionings and latent of the WanImageToVideo node ``i2v``, then
    the sampler, decode and save (ids ``first`` .. ``first + 7``)."""
    guider, sched, sel, noise, adv, dec, vid, save = range(first, first + 8)
    return [
        N(guider, "VA_DualCFGGuider", col, 0, {"image_cfg": 1.5, "text_cfg": 5.0, "image_cfg_ramp": "constant",
                                              "image_cfg_first_frame": 1.0, "clip_vision_in_no_image": "keep"},
          {"model": model, "positive": (i2v, 0), "negative": (i2v, 1)}),
        N(sched, "BasicScheduler", col, 2, {"scheduler": "simple", "steps": 20, "denoise": 1.0}, {"model": model}),
        N(sel, "KSamplerSelect", col, 3, {"sampler_name": "euler"}),
        N(noise, "RandomNoise", col, 4, {"noise_seed": 7}),
        N(adv, "SamplerCustomAdvanced", col + 1, 0, links={"noise": (noise, 0), "guider": (guider, 0),
                                                           "sampler": (sel, 0), "sigmas": (sched, 0),
                                                           "latent_image": (i2v, 2)}),
        N(dec, "VAEDecode", col + 2, 0, links={"samples": (adv, 0), "vae": (3, 0)}),
        N(vid, "CreateVideo", col + 3, 0, {"fps": 16.0}, {"images": (dec, 0)}),
        N(save, "SaveVideo", col + 4, 0, {"filename_prefix": f"video/{prefix}", "format": "auto", "codec": "auto"},
          {"video": (vid, 0)}),
    ]


def wan_i2v_dual_cfg():
    nodes = _wan_i2v_loaders() + [
        N(7, "CLIPTextEncode", 1, 0, {"text": PROMPT}, {"clip": (2, 0)}, title="Prompt"),
        N(8, "CLIPTextEncode", 1, 1, {"text": NEGATIVE}, {"clip": (2, 0)}, title="Negative prompt"),
        N(9, "WanImageToVideo", 2, 0, {"width": 832, "height": 480, "length": 33, "batch_size": 1},
          {"positive": (7, 0), "negative": (8, 0), "vae": (3, 0), "clip_vision_output": (6, 0),
           "start_image": (5, 0)}),
    ] + _dual_cfg_tail(10, 3, (1, 0), 9, "wan_i2v_dual_cfg")
    notes = [("## Wan 2.1 image-to-video with dual CFG\nThe start image and the text get their own guidance "
              "scales. image_cfg: how closely the video keeps to the start image (1 = ordinary CFG on the text). "
              "text_cfg: how strongly the prompt steers. Try image_cfg 1.0-2.5 with text_cfg 4-6. The guider "
              "makes the three conditionings itself from WanImageToVideo's positive and negative.", 0, 6)]
    return nodes, notes


def svd_dual_cfg():
    """SVD has no text: the guider is image-only CFG, with SVD's usual per-frame ramp."""
    nodes = svd_head() + [
        N(4, "VA_DualCFGGuider", 2, 0, {"image_cfg": 2.5, "text_cfg": 1.0, "image_cfg_ramp": "linear",
                                        "image_cfg_first_frame": 1.0, "clip_vision_in_no_image": "keep"},
          {"model": (1, 0), "positive": (3, 0), "negative": (3, 1)}),
        N(5, "BasicScheduler", 2, 2, {"scheduler": "karras", "steps": 20, "denoise": 1.0}, {"model": (1, 0)}),
        N(6, "KSamplerSelect", 2, 3, {"sampler_name": "euler"}),
        N(7, "RandomNoise", 2, 4, {"noise_seed": 7}),
        N(8, "SamplerCustomAdvanced", 3, 0, links={"noise": (7, 0), "guider": (4, 0), "sampler": (6, 0),
                                                   "sigmas": (5, 0), "latent_image": (3, 2)}),
    ] + svd_tail(9, 4, (8, 0), "AID - SVD with dual CFG")
    notes = [("## SVD with the Dual CFG Guider\nSVD has no text, so the guider is image-only CFG here: image_cfg "
              "ramps from 1.0 at the first frame to 2.5 at the last, as SVD's own pipeline does. Put svd_xt.safetensors "
              "in models/checkpoints (a gated download: accept its license on Hugging Face first).", 0, 5)]
    return nodes, notes


INSTRUCTION = "lift one end of the box, then let it drop"


def wan_i2v_instruction_states():
    """AID's pipeline on a frozen Wan: instruction + first frame -> MLLM states -> per-frame prompts -> Wan I2V
    with dual CFG."""
    frames = 33
    nodes = _wan_i2v_loaders(vision_row=4) + [
        N(7, "VA_MLLMEndpoint", 1, 5, {"base_url": "http://127.0.0.1:11434/v1", "model": "qwen2.5vl:7b",
                                       "api_key_env": "", "timeout": 120, "keep_alive": "0",
                                       "structured_output": True}, title="MLLM (Ollama; or Load MLLM)"),
        N(8, "VA_MLLMStatePrompt", 2, 4, {"instruction": INSTRUCTION, "states": 4, "frames": frames, "seed": 0,
                                          "max_tokens": 512, "temporal_stride": 4, "system_prompt": ""},
          {"image": (5, 0), "mllm": (7, 0)}),
        N(9, "CLIPTextEncode", 1, 0, {"text": INSTRUCTION}, {"clip": (2, 0)}, title="Global prompt (the instruction)"),
        N(10, "CLIPTextEncode", 1, 1, {"text": NEGATIVE}, {"clip": (2, 0)}, title="Negative prompt"),
        N(11, "VA_FramewisePrompts", 3, 2, {"frames": frames, "blend_frames": 1, "temporal_stride": 4},
          {"model": (1, 0), "clip": (2, 0), "schedule": (8, 1)}),
        N(12, "WanImageToVideo", 2, 0, {"width": 832, "height": 480, "length": frames, "batch_size": 1},
          {"positive": (9, 0), "negative": (10, 0), "vae": (3, 0), "clip_vision_output": (6, 0),
           "start_image": (5, 0)}),
    ] + _dual_cfg_tail(13, 4, (11, 0), 12, "wan_instruction_states")
    notes = [("## Instruction-guided video prediction (AID's pipeline on a frozen Wan)\n1. A multimodal LLM "
              "(here through Ollama's OpenAI-compatible endpoint; or use Load MLLM with a model folder in "
              "models/LLM) decomposes the instruction into 4 successive states of the video. 2. Framewise Prompts "
              "gives each latent frame its state's prompt on top of the global prompt. 3. Wan 2.1 image-to-video "
              "animates the first frame with separate image and text guidance. Keep frames equal in all three "
              "nodes.", 0, 6)]
    return nodes, notes


WORKFLOWS = {"AID - Wan 2.1 image-to-video with dual CFG": wan_i2v_dual_cfg, "AID - SVD with dual CFG": svd_dual_cfg,
             "AID - instruction to per-frame prompts on Wan 2.1": wan_i2v_instruction_states}
