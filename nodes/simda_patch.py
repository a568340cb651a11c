"""ComfyUI binding of SimDA: latent-shift self-attention and adapter injection through the patch API.

Nothing here changes ComfyUI's code or the base model's weights. Every function takes a MODEL
(``ModelPatcher``) and returns a patched clone; the un-patched input keeps working unchanged.

Frame-wise UNets (SD 1.5, SDXL with frames in the batch, SVD's spatial blocks):

* latent-shift attention: an ``attn1_patch`` replaces the self-attention's key/value input (before the
  K/V projections) by the latent-shift token sequence ``[B*F, 2N, C]``; projecting that equals
  projecting first and shifting after, so this is latent-shift K/V exactly;
* attention adapter: ``attn1_output_patch``, ``h_attn -> adapter(h_attn)`` (the adapter has its own skip);
* FFN adapter: an object patch on the block's ``.ff`` that adds ``adapter(u)`` to ``ff(u)``, where ``u`` is
  the FFN's input (ComfyUI gives the FFN the normalised hidden state; the adapter runs in parallel on it);
* temporal adapter: ``middle_patch`` (after the self-attention residual), a residual depthwise temporal
  convolution over the frames of each video.

SVD's temporal transformer blocks receive the same patches under the same block keys; they are told
apart by their token layout (``[B*H*W, T, C]`` instead of ``[B, H*W, C]``) and left alone.

Wan (full spatio-temporal attention; latent shift does not apply): object patches on ``blocks.{i}.self_attn``
(attention adapter on its output) and ``blocks.{i}.ffn`` (parallel FFN adapter), and a ``dit``
``double_block`` replace patch that runs the block and then the temporal adapter. The token grid
``(t, h, w)`` comes from a ``DIFFUSION_MODEL`` wrapper that stores it in ``transformer_options``.

Frames per video: ``frames`` if given, else the batch of one cond chunk (``batch / len(cond_or_uncond)``),
which keeps videos correct under CFG batching and split passes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension

from ..adapters import registry
from ..adapters.latent_shift import MODES, latent_shift_kv
from .common import VideoAdapterError

GRID_KEY = "video_adapters_grid"
ADDITIONAL_MODELS_KEY = "video_adapters"
UNET_BLOCK_KINDS = ("input", "middle", "output")

# ComfyUI model config class -> the pack's family name (stored in adapter files).
FAMILIES = {"SD15": "sd15", "SD20": "sd20", "SD21UnclipL": "sd21", "SDXL": "sdxl", "SDXLRefiner": "sdxl_refiner",
            "SSD1B": "sdxl", "SVD_img2vid": "svd", "WAN21_T2V": "wan21", "WAN21_I2V": "wan21_i2v",
            "WAN22_T2V": "wan22_5b"}


# ----------------------------------------------------------------------------------------------------
# what kind of model is this


def architecture(model) -> str:
    """``"unet"`` (frame-wise UNet with spatial transformers), ``"wan"`` or ``"other"``."""
    dm = getattr(model.model, "diffusion_model", None)
    if dm is None:
        return "other"
    if hasattr(dm, "input_blocks") and hasattr(dm, "output_blocks"):
        return "unet"
    if type(dm).__module__.startswith("comfy.ldm.wan") and hasattr(dm, "blocks"):
        return "wan"
    return "other"


def family(model) -> str:
    name = type(model.model.model_config).__name__
    return FAMILIES.get(name, name.lower())


def unet_blocks(model) -> dict[str, dict[str, Any]]:
    """The spatial transformer blocks of a UNet: ``{name: {"dim", "key"}}`` with ``key`` =
    ``(block kind, block id, block index)`` as ComfyUI reports them in ``extra_options``."""
    from comfy.ldm.modules.attention import SpatialTransformer

    dm = model.get_model_object("diffusion_model")
    out = {}
    groups = [("input", "input_blocks", list(enumerate(dm.input_blocks))),
              ("middle", "middle_block", [(0, dm.middle_block)]),
              ("output", "output_blocks", list(enumerate(dm.output_blocks)))]
    for kind, attr, seqs in groups:
        for bid, seq in seqs:
            for k, layer in enumerate(seq):
                if not isinstance(layer, SpatialTransformer):
                    continue
                prefix = f"{attr}.{bid}.{k}" if kind != "middle" else f"{attr}.{k}"
                for j, blk in enumerate(layer.transformer_blocks):
                    out[f"{prefix}.transformer_blocks.{j}"] = {"dim": int(blk.norm1.normalized_shape[0]),
                                                                "key": (kind, bid, j)}
    return out


def wan_blocks(model) -> dict[str, dict[str, Any]]:
    dm = model.get_model_object("diffusion_model")
    return {f"blocks.{i}": {"dim": int(dm.dim), "key": i} for i in range(len(dm.blocks))}


def adapter_blocks(model, label: str = "model") -> dict[str, dict[str, Any]]:
    arch = architecture(model)
    if arch == "unet":
        return unet_blocks(model)
    if arch == "wan":
        return wan_blocks(model)
    raise VideoAdapterError(
        f"{label} ({type(model.model.model_config).__name__}) has neither UNet spatial transformers "
        "(SD 1.5, SDXL, SVD) nor Wan DiT blocks; SimDA adapters support those families")


def refuse_full_attention(model, label: str = "model") -> None:
    """Latent-shift attention is for frame-wise models; say so for DiTs that attend over all frames."""
    arch = architecture(model)
    if arch == "unet":
        return
    name = type(model.model.model_config).__name__
    if arch == "wan":
        raise VideoAdapterError(
            f"{label} is {name}, a DiT whose self-attention already spans all frames (full 3D attention): "
            "latent-shift attention would only remove information. Use it with frame-wise models "
            "(SD 1.5 or SDXL with frames in the batch, SVD); for Wan use the SimDA adapters without latent shift")
    raise VideoAdapterError(
        f"{label} is {name}, which has no UNet spatial self-attention to patch; latent-shift attention "
        "supports SD 1.5, SDXL (frames in the batch) and SVD")


# ----------------------------------------------------------------------------------------------------
# frames, window and layout helpers


def frames_per_video(batch: int, extra_options: dict, frames: int) -> int:
    """Frames per video in a forward pass of ``batch`` frames (see the module docstring)."""
    chunks = len(extra_options.get("cond_or_uncond") or [0])
    if batch % chunks:
        raise VideoAdapterError(f"a batch of {batch} frames does not split into {chunks} cond/uncond chunks")
    per = batch // chunks
    if frames <= 0:
        return per
    if per % frames:
        raise VideoAdapterError(
            f"frames={frames} does not divide the {per} latent frames of each cond/uncond batch; set frames to a "
            f"divisor of {per} (several videos in one batch) or 0 (the whole batch is one video)")
    return frames


class SigmaWindow:
    """Active for sigmas in ``[sigma_end, sigma_start]`` (the percent window of the schedule)."""

    def __init__(self, model, start_percent: float = 0.0, end_percent: float = 1.0):
        if not 0.0 <= start_percent <= end_percent <= 1.0:
            raise VideoAdapterError(
                f"start_percent={start_percent} and end_percent={end_percent}: need 0 <= start <= end <= 1")
        ms = model.get_model_object("model_sampling")
        self.full = start_percent <= 0.0 and end_percent >= 1.0
        self.high = float(ms.percent_to_sigma(start_percent))
        self.low = float(ms.percent_to_sigma(end_percent))

    def active(self, extra_options: dict) -> bool:
        if self.full:
            return True
        sig = extra_options.get("sigmas")
        if sig is None:
            return True
        s = float(sig.max()) if torch.is_tensor(sig) else float(sig)
        return self.low <= s <= self.high * (1 + 1e-5)


def spatial_grid(tokens: torch.Tensor, extra_options: dict):
    """``(height, width)`` of a spatial block's ``[B, N, C]`` tokens, or None for other layouts (SVD's
    temporal blocks)."""
    shape = extra_options.get("activations_shape")
    if not shape or len(shape) != 4:
        return None
    b, _, h, w = shape
    if tokens.shape[0] != b or tokens.shape[1] != h * w:
        return None
    return h, w


# ----------------------------------------------------------------------------------------------------
# latent-shift attention


class LatentShiftPatch:
    """``attn1_patch``: keys/values of spatial self-attention become latent-shift tokens ``[B*F, 2N, C]``."""

    def __init__(self, mode: str, frames: int = 0, window: SigmaWindow | None = None,
                 block_kinds: tuple[str, ...] = UNET_BLOCK_KINDS):
        if mode not in MODES:
            raise VideoAdapterError(f"mode '{mode}' is not a latent-shift mode; use one of {', '.join(MODES)}")
        self.mode, self.frames, self.window, self.block_kinds = mode, int(frames), window, tuple(block_kinds)

    def __call__(self, n, context, value, extra_options):
        grid = spatial_grid(n, extra_options)
        if grid is None or context is None or context.shape[:2] != n.shape[:2]:
            return n, context, value
        block = extra_options.get("block")
        if block is not None and block[0] not in self.block_kinds:
            return n, context, value
        if self.window is not None and not self.window.active(extra_options):
            return n, context, value
        f = frames_per_video(n.shape[0], extra_options, self.frames)
        if f == 1:
            return n, context, value
        h, w = grid
        k = latent_shift_kv(context, f, h, w, self.mode)
        v = k if value is context else latent_shift_kv(value, f, h, w, self.mode)
        return n, k, v


def apply_latent_shift(model, mode: str, frames: int = 0, start_percent: float = 0.0, end_percent: float = 1.0,
                       block_kinds: tuple[str, ...] = UNET_BLOCK_KINDS, label: str = "model"):
    """A clone of ``model`` with latent-shift attention in its spatial self-attention."""
    refuse_full_attention(model, label)
    m = model.clone()
    m.set_model_attn1_patch(LatentShiftPatch(mode, frames, SigmaWindow(model, start_percent, end_percent),
                                             block_kinds))
    return m


# ----------------------------------------------------------------------------------------------------
# adapter injection


def _run(adapter: nn.Module, x: torch.Tensor, *args) -> torch.Tensor:
    """Run ``adapter`` in its own dtype/device and return in ``x``'s."""
    p = next(adapter.parameters())
    return adapter(x.to(device=p.device, dtype=p.dtype), *args).to(device=x.device, dtype=x.dtype)


def _mix(x: torch.Tensor, y: torch.Tensor, strength: float) -> torch.Tensor:
    return y if strength == 1.0 else x + strength * (y - x)


class _Shared(nn.Module):
    """Wraps a module of the base model and keeps its children under the same names, so weight paths
    (LoRA keys, casting, offloading) still resolve; the adapter is held outside the module tree (it lives
    in its own ModelPatcher)."""

    def __init__(self, original: nn.Module, adapter: nn.Module, strength: float, parallel: bool):
        super().__init__()
        for name, child in original.named_children():
            self.add_module(name, child)
        self._original = [original]
        self._adapter = [adapter]
        self.strength = float(strength)
        self.parallel = parallel

    def forward(self, x, *args, **kwargs):
        y = self._original[0](x, *args, **kwargs)
        if self.parallel:  # FFN adapter: branch on the FFN's input, added to its output
            return y + self.strength * _run(self._adapter[0], x)
        return _mix(y, _run(self._adapter[0], y), self.strength)


class UNetAdapterPatches:
    """The callables registered on a UNet for one adapter set."""

    def __init__(self, adapters, blocks: dict[str, dict[str, Any]], strength: float, frames: int):
        self.adapters, self.strength, self.frames = adapters, float(strength), int(frames)
        self.by_key = {info["key"]: name for name, info in blocks.items() if name in adapters}

    def _block(self, extra_options):
        block = extra_options.get("block")
        if block is None:
            return None
        name = self.by_key.get((block[0], block[1], extra_options.get("block_index", 0)))
        return None if name is None else self.adapters[name]

    def attn1_output(self, n, extra_options):
        blk = self._block(extra_options)
        if blk is None or blk.attention is None or spatial_grid(n, extra_options) is None:
            return n
        return _mix(n, _run(blk.attention, n), self.strength)

    def middle(self, x, extra_options):
        blk = self._block(extra_options)
        grid = spatial_grid(x, extra_options)
        if blk is None or blk.temporal is None or grid is None:
            return x
        f = frames_per_video(x.shape[0], extra_options, self.frames)
        return _mix(x, _run(blk.temporal, x, f, grid[0], grid[1]), self.strength)


def _grid_wrapper(patch_size):
    def wrapper(executor, x, *args, **kwargs):
        to = kwargs.get("transformer_options")
        if to is not None and x.ndim == 5:
            to[GRID_KEY] = tuple(math.ceil(d / p) for d, p in zip(x.shape[2:], patch_size))
        return executor(x, *args, **kwargs)
    return wrapper


class WanTemporalPatch:
    """``dit``/``double_block`` replace patch: the block, then the temporal adapter on its output tokens."""

    def __init__(self, temporal: nn.Module, strength: float, previous=None):
        self.temporal, self.strength, self.previous = temporal, float(strength), previous

    def __call__(self, args, extra):
        out = (self.previous or (lambda a, e: e["original_block"](a)))(args, extra)
        img = out["img"]
        grid = args["transformer_options"].get(GRID_KEY)
        if grid is None:
            return out
        t, h, w = grid
        b, length, c = img.shape
        if length != t * h * w:
            raise VideoAdapterError(f"the temporal adapter expected {t}x{h}x{w} video tokens, the block has {length}")
        tokens = img.reshape(b * t, h * w, c)
        y = _run(self.temporal, tokens, t, h, w).reshape(b, length, c)
        out = dict(out)
        out["img"] = _mix(img, y, self.strength)
        return out


def adapter_patcher(adapters: nn.Module, model):
    """The adapters' own ModelPatcher, loaded and offloaded with ``model``."""
    return comfy.model_patcher.ModelPatcher(adapters, load_device=model.load_device,
                                            offload_device=model.offload_device)


def check_adapters_fit(adapters, model, label: str = "model", file_label: str = "the adapters") -> None:
    """Refuse adapters made for another family or another model size, naming both."""
    meta = adapters.metadata()
    fam = family(model)
    if meta["family"] != fam:
        raise VideoAdapterError(
            f"{file_label} were trained for '{meta['family']}' models, but {label} is '{fam}' "
            f"({type(model.model.model_config).__name__}); use adapters trained on a '{fam}' model, or connect a "
            f"'{meta['family']}' model")
    blocks = adapter_blocks(model, label)
    wrong = [(n, info["dim"], blocks[n]["dim"] if n in blocks else None) for n, info in meta["blocks"].items()
             if n not in blocks or blocks[n]["dim"] != info["dim"]]
    if wrong:
        name, want, got = wrong[0]
        have = "has no such block" if got is None else f"has width {got}"
        raise VideoAdapterError(
            f"{file_label} do not fit {label}: {len(wrong)} of {len(meta['blocks'])} adapter blocks do not match "
            f"(for example {name}: width {want} in the file, the model {have}). They were trained on a "
            f"different '{fam}' architecture or size")


def inject_simda(model, adapters, strength: float = 1.0, frames: int = 0, latent_shift: str | None = None,
                 label: str = "model"):
    """A clone of ``model`` with SimDA ``adapters`` (a ``SimDAAdapterSet``) injected.

    ``latent_shift``: key/value mode of the spatial self-attention (default: the mode the adapters were
    trained with, from their config; ``"none"`` keeps plain attention). Ignored on Wan.
    """
    check_adapters_fit(adapters, model, label)
    arch = architecture(model)
    m = model.clone()
    m.set_additional_models(ADDITIONAL_MODELS_KEY, m.get_additional_models_with_key(ADDITIONAL_MODELS_KEY)
                            + [adapter_patcher(adapters, model)])
    if arch == "unet":
        mode = adapters.config.shift_mode if latent_shift is None else latent_shift
        if mode != "none":
            m.set_model_attn1_patch(LatentShiftPatch(mode, frames))
        blocks = unet_blocks(model)
        patches = UNetAdapterPatches(adapters, blocks, strength, frames)
        m.set_model_attn1_output_patch(patches.attn1_output)
        m.set_model_patch(patches.middle, "middle_patch")
        for name in adapters.block_names():
            if adapters[name].ffn is not None:
                key = f"diffusion_model.{name}.ff"
                m.add_object_patch(key, _Shared(m.get_model_object(key), adapters[name].ffn, strength, True))
    else:  # wan
        dm = model.get_model_object("diffusion_model")
        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, GRID_KEY,
                               _grid_wrapper(tuple(dm.patch_size)))
        replace = m.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
        for name in adapters.block_names():
            blk = adapters[name]
            if blk.attention is not None:
                key = f"diffusion_model.{name}.self_attn"
                m.add_object_patch(key, _Shared(m.get_model_object(key), blk.attention, strength, False))
            if blk.ffn is not None:
                key = f"diffusion_model.{name}.ffn"
                m.add_object_patch(key, _Shared(m.get_model_object(key), blk.ffn, strength, True))
            if blk.temporal is not None:
                i = int(name.split(".")[1])
                m.set_model_patch_replace(WanTemporalPatch(blk.temporal, strength, replace.get(("double_block", i))),
                                          "dit", "double_block", i)
    return m


registry.set_injector("simda", inject_simda)


def new_adapters(kind: str, model, config: dict[str, Any], label: str = "model"):
    """Fresh adapters of ``kind`` for every block of ``model``."""
    blocks = adapter_blocks(model, label)
    return registry.get(kind).build({n: i["dim"] for n, i in blocks.items()}, config, family(model))
