"""Loaders: frozen video models through ComfyUI's own diffusion-model loader."""

from __future__ import annotations

import torch

import comfy.sd
import folder_paths
from comfy_api.latest import io

from .common import CAT_LOADERS
from .binding.host import describe

WEIGHT_DTYPES = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]


def _model_options(weight_dtype: str) -> dict:
    opts = {}
    if weight_dtype in ("fp8_e4m3fn", "fp8_e4m3fn_fast"):
        opts["dtype"] = torch.float8_e4m3fn
        if weight_dtype == "fp8_e4m3fn_fast":
            opts["fp8_optimizations"] = True
    elif weight_dtype == "fp8_e5m2":
        opts["dtype"] = torch.float8_e5m2
    return opts


class LoadFrozenVideoModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_LoadFrozenVideoModel",
            display_name="Load Frozen Video Model",
            category=CAT_LOADERS,
            description=("Loads a video diffusion model from models/diffusion_models with ComfyUI's own loader "
                         "(same detection, dtypes and memory management as Load Diffusion Model), frozen: no "
                         "gradients flow into it. The summary says what you are composing."),
            inputs=[
                io.Combo.Input("model_name", options=folder_paths.get_filename_list("diffusion_models"),
                               tooltip="A file in models/diffusion_models (for example wan2.1_t2v_14B_fp16.safetensors)."),
                io.Combo.Input("weight_dtype", options=WEIGHT_DTYPES, default="default",
                               tooltip="Storage dtype of the weights, as in Load Diffusion Model. fp8 halves VRAM."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The frozen model, usable by every native sampler node."),
                io.String.Output(display_name="summary",
                                 tooltip="Family, parameterisation, latent format and channels, parameter count."),
            ],
        )

    @classmethod
    def execute(cls, model_name, weight_dtype) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise("diffusion_models", model_name)
        model = comfy.sd.load_diffusion_model(path, model_options=_model_options(weight_dtype))
        if model is None:
            raise ValueError(f"{model_name}: ComfyUI could not detect a diffusion model in this file")
        model.model.requires_grad_(False)
        return io.NodeOutput(model, describe(model, model_name).summary())


NODES = [LoadFrozenVideoModel]
