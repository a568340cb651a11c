"""The host-test entry point: one in-process ComfyUI per test session (see workflows/headless.py), with
model folders in a temporary directory where the tests write their tiny models."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

PACK_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(PACK_DIR, "workflows"))

from headless import Host, find_comfyui  # noqa: E402

MODEL_KINDS = ("diffusion_models", "video_adapters", "vae", "text_encoders")

_HOST: Host | None = None


def _remove(folder: str, owner: int) -> None:
    if os.getpid() == owner:  # not from a forked child that exits normally: the folder is its parent's
        shutil.rmtree(folder, ignore_errors=True)


def get_host() -> Host:
    global _HOST
    if _HOST is None:
        root = find_comfyui(PACK_DIR)
        if root is None:
            raise RuntimeError("no ComfyUI found")
        base = tempfile.mkdtemp(prefix="va_models_")
        atexit.register(_remove, base, os.getpid())  # the tiny models and outputs of one session (~600 MB)
        models_dir = os.path.join(base, "models")
        _HOST = Host(root, model_dirs={k: os.path.join(models_dir, k) for k in MODEL_KINDS},
                     output_dir=os.path.join(base, "output"))
        _HOST.models_dir = models_dir
        import folder_paths

        # a private input folder (tests write clips there), seeded with the files ComfyUI ships in its own
        _HOST.input_dir = os.path.join(base, "input")
        shutil.copytree(folder_paths.get_input_directory(), _HOST.input_dir, dirs_exist_ok=True)
        folder_paths.set_input_directory(_HOST.input_dir)
    return _HOST
