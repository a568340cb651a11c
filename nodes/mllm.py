"""MLLM state prompts (AID): a multimodal LLM decomposes an instruction into the video's successive states.

Three sources of a model, each a small node returning a ``VA_MLLM``:

* **Load MLLM (local)**: a transformers model folder under ``models/LLM`` (loaded with ``local_files_only``).
  It runs in a ``ModelPatcher``, so ComfyUI's model management loads it, and can evict it when a diffusion model
  needs the memory; unless ``keep_loaded`` is set it is unloaded right after answering.
* **MLLM Endpoint**: any OpenAI-compatible chat-completions server (Ollama, LM Studio, vLLM, llama.cpp's
  server), with JSON-schema structured output where the server has it and Ollama's ``keep_alive``.
* **MLLM from Text Encoder**: on newer ComfyUI, a text encoder that can generate (``clip.generate``).

transformers is imported only when a local model is used (ComfyUI itself depends on it).
The prompt, the answer format and the parser are in ``adapters/state_prompts.py``.
"""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..adapters import state_prompts as sp
from .common import CATEGORY, MLLM, VideoAdapterError
from .binding.mllm import DTYPES, LLM_FOLDER, ClipMLLM, EndpointMLLM, LocalMLLM, ask_states, model_folders

CAT_MLLM = f"{CATEGORY}/mllm"


class MLLMFromCLIP(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_MLLMFromCLIP",
            display_name="MLLM from Text Encoder",
            category=CAT_MLLM,
            description=("Uses a text encoder that can generate text (newer ComfyUI: Qwen3-VL or Gemma text encoders "
                         "loaded with Load CLIP) as the multimodal LLM for MLLM State Prompt, under ComfyUI's own model "
                         "management. Greedy decoding: the same inputs give the same states."),
            inputs=[io.Clip.Input("clip", tooltip="A text encoder that can generate (the one TextGenerate takes).")],
            outputs=[MLLM.Output(display_name="mllm", tooltip="For MLLM State Prompt.")],
        )

    @classmethod
    def execute(cls, clip) -> io.NodeOutput:
        if not callable(getattr(clip, "generate", None)) or not callable(getattr(clip, "decode", None)):
            raise VideoAdapterError(
                "clip: this ComfyUI's text encoders cannot generate text (it needs a ComfyUI with TextGenerate and a "
                "generating text encoder such as Qwen3-VL); use Load MLLM or MLLM Endpoint instead")
        return io.NodeOutput(ClipMLLM(clip))


class LoadMLLM(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_LoadMLLM",
            display_name="Load MLLM (local)",
            category=CAT_MLLM,
            description=("A multimodal LLM from a transformers model folder in models/LLM (for example Qwen2.5-VL-3B-"
                         "Instruct, downloaded with its processor files), for MLLM State Prompt. Loaded on first use "
                         "through ComfyUI's model management and unloaded after answering unless keep_loaded."),
            inputs=[
                io.Combo.Input("model_folder", options=model_folders(),
                               tooltip="A folder under models/LLM holding config.json, the weights and processor files."),
                io.Combo.Input("dtype", options=list(DTYPES), default="auto",
                               tooltip="Weight dtype; auto: bfloat16 on GPUs that support it, else float32 (float16 breaks "
                                       "some multimodal LLMs)."),
                io.Boolean.Input("keep_loaded", default=False,
                                 tooltip="Keep the model in memory between runs (faster; ComfyUI can still evict it "
                                         "when a diffusion model needs the memory). Off: unloaded after each answer."),
            ],
            outputs=[MLLM.Output(display_name="mllm", tooltip="For MLLM State Prompt.")],
        )

    @classmethod
    def execute(cls, model_folder, dtype, keep_loaded) -> io.NodeOutput:
        for root in folder_paths.get_folder_paths(LLM_FOLDER):
            path = os.path.join(root, model_folder)
            if os.path.isfile(os.path.join(path, "config.json")):
                return io.NodeOutput(LocalMLLM(path, dtype, keep_loaded))
        raise VideoAdapterError(f"model_folder: {model_folder} not found in models/LLM")


class MLLMEndpoint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_MLLMEndpoint",
            display_name="MLLM Endpoint (OpenAI-compatible)",
            category=CAT_MLLM,
            description=("A multimodal LLM served by Ollama, LM Studio, vLLM, llama.cpp's server or any other "
                         "OpenAI-compatible chat-completions endpoint, for MLLM State Prompt. The model must accept "
                         "images (for example qwen2.5vl in Ollama)."),
            inputs=[
                io.String.Input("base_url", default="http://127.0.0.1:11434/v1",
                                tooltip="The server's OpenAI-compatible base URL (Ollama: http://127.0.0.1:11434/v1, "
                                        "LM Studio: http://127.0.0.1:1234/v1, llama.cpp: http://127.0.0.1:8080/v1)."),
                io.String.Input("model", default="qwen2.5vl:7b", tooltip="The model name the server knows."),
                io.String.Input("api_key_env", default="", optional=True,
                                tooltip="Name of an environment variable holding the API key (the key itself is "
                                        "never stored in the workflow). Empty: no key."),
                io.Int.Input("timeout", default=120, min=1, max=3600, optional=True, tooltip="Seconds to wait for an answer."),
                io.String.Input("keep_alive", default="0", optional=True,
                                tooltip="Ollama: how long the server keeps the model loaded after answering (0: free its "
                                        "VRAM at once, '5m', -1: keep). Empty: not sent."),
                io.Boolean.Input("structured_output", default=True, optional=True,
                                 tooltip="Ask for JSON-schema structured output (falls back to a plain request if the "
                                         "server refuses it)."),
            ],
            outputs=[MLLM.Output(display_name="mllm", tooltip="For MLLM State Prompt.")],
        )

    @classmethod
    def execute(cls, base_url, model, api_key_env="", timeout=120, keep_alive="0", structured_output=True):
        if not base_url.startswith(("http://", "https://")):
            raise VideoAdapterError(f"base_url '{base_url}' must start with http:// or https://")
        return io.NodeOutput(EndpointMLLM(base_url, model, api_key_env, timeout, keep_alive, structured_output))


class MLLMStatePrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_MLLMStatePrompt",
            display_name="MLLM State Prompt (AID)",
            category=CAT_MLLM,
            description=(
                "Turns an instruction and the first frame into the video's successive states with a multimodal LLM "
                "(AID): 'lift one end of a tablet box, then let it drop' becomes initial state, lift, release, final "
                "state. Gives the states one per line and a frame schedule that prompt-schedule nodes and Framewise "
                "Prompts read. Same inputs, same answer (greedy decoding; cached)."),
            inputs=[
                io.Image.Input("image", tooltip="The first frame (the first image of the batch is used)."),
                io.String.Input("instruction", multiline=True, default="lift one end of the box, then let it drop",
                                tooltip="What should happen in the video."),
                io.Int.Input("states", default=4, min=1, max=32, tooltip="How many states to describe."),
                io.Int.Input("frames", default=81, min=1, max=4096,
                             tooltip="Video length in pixel frames, to place the states on frames."),
                MLLM.Input("mllm", tooltip="From Load MLLM or MLLM Endpoint."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Sent to backends that sample; local models decode greedily (deterministic)."),
                io.Int.Input("max_tokens", default=512, min=16, max=8192, tooltip="Longest answer."),
                io.Int.Input("temporal_stride", default=4, min=1, max=16, optional=True,
                             tooltip="Pixel frames per latent frame of the video VAE (Wan: 4), so states start on a "
                                     "latent frame's first pixel frame. 1: any frame."),
                io.String.Input("system_prompt", default="", multiline=True, optional=True,
                                tooltip="Replaces the built-in system prompt (empty: built-in)."),
            ],
            outputs=[
                io.String.Output(display_name="states", tooltip="One state per line."),
                io.String.Output(display_name="schedule", tooltip='Frame-indexed prompts: "0": "...", "12": "...".'),
                io.String.Output(display_name="raw", tooltip="The model's answer(s), for checking."),
            ],
        )

    @classmethod
    def execute(cls, image, instruction, states, frames, mllm, seed, max_tokens, temporal_stride=4,
                system_prompt="") -> io.NodeOutput:
        if not instruction.strip():
            raise VideoAdapterError("instruction is empty; say what should happen in the video")
        try:
            sp.state_frames(int(states), int(frames), int(temporal_stride))
        except ValueError as e:
            raise VideoAdapterError(f"states / frames: {e}") from None
        found, raw = ask_states(mllm, image, instruction, int(states), int(seed), int(max_tokens), system_prompt)
        return io.NodeOutput("\n".join(found), sp.schedule(found, int(frames), int(temporal_stride)),
                             "\n\n--- retry ---\n\n".join(raw))


NODES = [LoadMLLM, MLLMEndpoint, MLLMFromCLIP, MLLMStatePrompt]
