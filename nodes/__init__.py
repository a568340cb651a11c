"""The pack's ComfyUI nodes, one module per capability family.

Every module of this package that defines ``NODES`` (a list of ``io.ComfyNode`` classes) is registered.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

import folder_paths
from comfy_api.latest import ComfyExtension, io

# The pack's own model folder (domain models and adapter files): models/video_adapters.
MODEL_FOLDER = "video_adapters"
if MODEL_FOLDER not in folder_paths.folder_names_and_paths:
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (
        [os.path.join(folder_paths.models_dir, MODEL_FOLDER)], {".safetensors"})
# created at start so a fresh install shows the folder and file lists refresh when files arrive
try:
    os.makedirs(folder_paths.get_folder_paths(MODEL_FOLDER)[0], exist_ok=True)
except OSError:
    pass  # a read-only models folder: the loaders then say the list is empty
# the adapter files that ship with the pack (the tiny instruction demo's), listed after the user's own
folder_paths.add_model_folder_path(
    MODEL_FOLDER, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "adapters", "weights",
                               MODEL_FOLDER))


def _collect() -> list[type[io.ComfyNode]]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "NODES", []))
    from .validation import install

    for node in found:
        install(node)
    ids = [n.GET_SCHEMA().node_id for n in found]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise RuntimeError(f"duplicate node ids: {sorted(dupes)}")
    return found


ALL_NODES: list[type[io.ComfyNode]] = _collect()


class VideoAdaptersExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return ALL_NODES
