"""The host-test entry point: one in-process ComfyUI per test session (see devtools/headless.py), with
model folders in a temporary directory where the tests write their tiny models."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import torch

from devtools.headless import Host, find_comfyui

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


# ----------------------------------------------------------------------------------------------------
# small helpers the host tests and benchmarks share


def cond(dim, seed, tokens=8, **extra):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, dim, generator=g), dict(extra)]]


def probe(host, guider, model, latent, sigma_index=1, steps=4, seed=0):
    """(x, D) of ``guider`` at the ``sigma_index``-th sigma of a 'simple' schedule, through SamplerCustomAdvanced."""
    import comfy.samplers

    record = {}

    def fn(model_fn, x, sigmas, extra_args=None, callback=None, disable=None):
        s = sigmas[0] * x.new_ones([x.shape[0]])
        d = model_fn(x, s, **(extra_args or {}))
        record["x"], record["d"], record["sigma"] = x.clone(), d.clone(), float(sigmas[0])
        return d

    sigmas = host.call("BasicScheduler", model, "simple", steps, 1.0)[0][sigma_index:]
    noise = host.call("RandomNoise", seed)[0]
    host.call("SamplerCustomAdvanced", noise, guider, comfy.samplers.KSAMPLER(fn), sigmas, {"samples": latent.clone()})
    return record
