"""The pack's ComfyUI nodes, one module per capability family."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import ComfyExtension, io

from . import composer, loaders

# The pack's own model folder (domain models and adapter files): models/video_adapters.
MODEL_FOLDER = "video_adapters"
if MODEL_FOLDER not in folder_paths.folder_names_and_paths:
    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))

ALL_NODES: list[type[io.ComfyNode]] = [*loaders.NODES, *composer.NODES]


class VideoAdaptersExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return ALL_NODES
