"""One description of a host MODEL, read once and used by every node.

``describe(model)`` answers everything the pack asks about a ComfyUI model, in one vocabulary:

* ``family``: the pack's name of the model family, stored in adapter files (``sd15``, ``sdxl``, ``svd``,
  ``wan21``, ``wan21_i2v``, ``wan22_5b``, ...); ``latent_space``: the family of its latent space, stored in
  domain-model files (Wan 2.1 text- and image-to-video share ``wan21``; SD 1.5 and SVD share ``sd15``);
* ``architecture``: which attach table applies (``unet``: frame-wise UNets with spatial transformers, SVD's
  temporal layers included; ``wan``: Wan DiT blocks; ``domain``: the pack's own domain model; ``other``);
* ``prediction`` (``eps``/``v``/``flow`` as in ``samplers/parameterisation.py``, None for others),
  ``model_type`` (ComfyUI's own name), ``sampler_space`` (``eps``/``flow``), shift and sigma range;
* latent format, channels, dimensions and ``frame_layout`` (``batch``: frames in the batch; ``time``: a time
  axis ``[B, C, T, H, W]``), text width, parameter count;
* ``blocks``: every transformer block an adapter can attach to, with its name (module path inside the
  diffusion model), kind (``spatial``, ``temporal``, ``dit``), width, heads, cross-attention width and the key
  ComfyUI reports for it in ``transformer_options``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import comfy.model_base
import comfy.model_sampling

from ...adapters.protocol import Block, VideoAdapterError

# ComfyUI model config class -> the pack's family name (stored in adapter files: never change a value).
FAMILIES = {"SD15": "sd15", "SD20": "sd20", "SD21UnclipL": "sd21", "SDXL": "sdxl", "SDXLRefiner": "sdxl_refiner",
            "SSD1B": "sdxl", "SVD_img2vid": "svd", "WAN21_T2V": "wan21", "WAN21_I2V": "wan21_i2v",
            "WAN22_T2V": "wan22_5b"}
# ComfyUI latent format -> the pack's latent-space name (stored in domain-model files).
LATENT_SPACES = {"Wan21": "wan21", "Wan22": "wan22_5b", "SD15": "sd15", "VideoAdaptersSynthetic": "synthetic"}

_PREDICTIONS = {"EPS": "eps", "V_PREDICTION": "v", "V_PREDICTION_EDM": "v", "FLOW": "flow"}


@dataclass(frozen=True)
class HostModel:
    label: str
    family: str
    model_config: str
    architecture: str
    latent_space: str | None
    prediction: str | None
    model_type: str
    sampler_space: str | None
    latent_format: str
    latent_channels: int
    latent_dimensions: int
    frame_layout: str
    text_width: int | None
    parameters: int
    shift: float | None
    sigma_min: float
    sigma_max: float
    patch_size: tuple = ()
    blocks: tuple[Block, ...] = field(default_factory=tuple)
    input_channels: int = 0  # channels the network takes: more than latent_channels when an image is concatenated

    @property
    def takes_image(self) -> bool:
        """Whether the model takes an image condition concatenated to its latent (image-to-video models)."""
        return self.input_channels > self.latent_channels > 0

    # --- what the nodes ask ------------------------------------------------------------------------------
    def blocks_of(self, *kinds: str) -> list[Block]:
        return [b for b in self.blocks if not kinds or b.kind in kinds]

    def require_space(self) -> str:
        """The sampler space, or an error saying that score math is undefined for this model."""
        if self.sampler_space is None:
            raise VideoAdapterError(
                f"{self.label} ({self.model_config}) samples with {self.model_type}, which is neither a noise "
                "(EPS/V/EDM) nor a rectified-flow parameterisation; score composition is defined for those two only")
        return self.sampler_space

    def require_prediction(self, supported_by: str, allow_v_edm: bool = True) -> str:
        """The prediction as a trainer parameterisation (``flow``/``eps``/``v``), or an error naming the user."""
        if self.prediction is None or (self.model_type == "V_PREDICTION_EDM" and not allow_v_edm):
            raise VideoAdapterError(f"{self.label} predicts {self.model_type}; {supported_by} supports rectified "
                                    "flow, eps and v prediction")
        return self.prediction

    def require_latent_space(self) -> str:
        if self.latent_space is None:
            known = ", ".join(f"{k} ({v})" for k, v in LATENT_SPACES.items())
            raise VideoAdapterError(
                f"{self.label} uses the {self.latent_format} latent format, for which no domain model family "
                f"exists; supported latent formats: {known}")
        return self.latent_space

    def summary(self) -> str:
        shift = f", shift {self.shift:g}" if self.shift is not None else ""
        space = f"{self.sampler_space} sampling" if self.sampler_space else "unsupported sampling"
        return (f"{self.label}: {self.model_config}, {self.model_type} ({space}{shift}), "
                f"latent {self.latent_format} with {self.latent_channels} channels "
                f"({self.latent_dimensions}D), {self.parameters / 1e6:,.1f}M parameters")



def _architecture(base) -> str:
    dm = getattr(base, "diffusion_model", None)
    if dm is None:
        return "other"
    if hasattr(base, "domain_config"):
        return "domain"
    if hasattr(dm, "input_blocks") and hasattr(dm, "output_blocks"):
        return "unet"
    if type(dm).__module__.startswith("comfy.ldm.wan") and hasattr(dm, "blocks"):
        return "wan"
    return "other"


def _heads(attn) -> int:
    return int(getattr(attn, "heads", getattr(attn, "num_heads", 0)) or 0)


def _unet_blocks(dm) -> list[Block]:
    from comfy.ldm.modules.attention import SpatialTransformer

    out = []
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
                    ctx = getattr(getattr(blk, "attn2", None), "to_k", None)
                    out.append(Block(f"{prefix}.transformer_blocks.{j}", "spatial", int(blk.norm1.normalized_shape[0]),
                                     _heads(blk.attn1), int(ctx.in_features) if ctx is not None else None,
                                     (kind, bid, j)))
                for j, blk in enumerate(getattr(layer, "time_stack", [])):  # SVD's temporal layers
                    ctx = getattr(getattr(blk, "attn2", None), "to_k", None)
                    out.append(Block(f"{prefix}.time_stack.{j}", "temporal", int(blk.norm1.normalized_shape[0]),
                                     _heads(blk.attn1), int(ctx.in_features) if ctx is not None else None,
                                     (kind, bid, j)))
    return out


def _wan_blocks(dm) -> list[Block]:
    text = int(dm.text_embedding[0].in_features) if hasattr(dm, "text_embedding") else None
    return [Block(f"blocks.{i}", "dit", int(dm.dim), int(dm.num_heads), int(dm.dim) if text else None, i)
            for i in range(len(dm.blocks))]


def _text_width(base, arch) -> int | None:
    if arch == "wan":
        return int(base.diffusion_model.text_embedding[0].in_features)
    if arch == "domain":
        return int(base.domain_config.text_dim)
    ctx = getattr(base.model_config, "unet_config", {}).get("context_dim")
    return int(ctx) if ctx else None


def describe(model, label: str = "model") -> HostModel:
    """The description of a MODEL (``ModelPatcher``), as it is now (sampling patches included)."""
    base = model.model
    lf = base.latent_format
    ms = model.get_model_object("model_sampling")
    dm = getattr(base, "diffusion_model", None)
    arch = _architecture(base)
    config_name = type(base.model_config).__name__
    model_type = getattr(base.model_type, "name", str(base.model_type))
    if isinstance(ms, comfy.model_sampling.CONST):
        space = "flow"
    elif isinstance(ms, comfy.model_sampling.EPS):
        space = "eps"
    else:
        space = None
    latent_format = type(lf).__name__
    if arch == "domain":
        family = f"domain_{base.domain_config.family}"
    else:
        family = FAMILIES.get(config_name, config_name.lower())
    blocks: list[Block] = []
    if arch == "unet":
        blocks = _unet_blocks(dm)
    elif arch == "wan":
        blocks = _wan_blocks(dm)
    dims = int(getattr(lf, "latent_dimensions", 2))
    input_channels = 0
    if arch == "wan" and hasattr(dm, "patch_embedding"):
        input_channels = int(dm.patch_embedding.in_channels)
    elif arch == "unet":
        input_channels = int(getattr(base.model_config, "unet_config", {}).get("in_channels", 0) or 0)
    return HostModel(
        label=label, family=family, model_config=config_name, architecture=arch,
        latent_space=LATENT_SPACES.get(latent_format), prediction=_PREDICTIONS.get(model_type),
        model_type=model_type, sampler_space=space, latent_format=latent_format,
        latent_channels=int(getattr(lf, "latent_channels", 0)), latent_dimensions=dims,
        frame_layout="time" if dims == 3 else "batch", text_width=_text_width(base, arch),
        parameters=int(sum(p.numel() for p in dm.parameters())) if dm is not None else 0,
        shift=float(ms.shift) if hasattr(ms, "shift") else None,
        sigma_min=float(ms.sigma_min), sigma_max=float(ms.sigma_max),
        patch_size=tuple(getattr(dm, "patch_size", ()) or ()), blocks=tuple(blocks), input_channels=input_channels)


def training_sigmas(model):
    """The model's own noise levels (ascending, float32): what training draws from, as core's training does.
    For discrete and EDM schedules these are the 1000 sigmas of ``model_sampling``; for flow models the
    shifted schedule of the same table."""
    import torch

    ms = model.get_model_object("model_sampling")
    table = getattr(ms, "sigmas", None)
    if table is None or table.numel() < 2:
        raise VideoAdapterError("the model's sampling has no sigma table to draw training noise levels from")
    return torch.sort(table.detach().float().cpu()).values


def static_clone(model, label: str = "model"):
    """A clone whose weights are ordinary tensors, for code that touches weights (training replaces the
    frozen weights' inference tensors by normal copies). On GPU, newer ComfyUI's loaders return dynamic-VRAM
    patchers that stream weights on demand; ``clone(disable_dynamic=True)`` is core's own way to a static
    patcher of the same model (it needs a model from a core loader). Elsewhere a plain clone."""
    is_dynamic = getattr(model, "is_dynamic", None)
    if callable(is_dynamic) and is_dynamic():
        try:
            return model.clone(disable_dynamic=True)
        except RuntimeError as e:
            raise VideoAdapterError(
                f"{label} is a dynamic-VRAM model that cannot be turned into a static one for adapters or training "
                f"({e}); load it with Load Diffusion Model or Load Frozen Video Model, or start ComfyUI with "
                "--disable-dynamic-vram") from None
    return model.clone()
