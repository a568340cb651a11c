"""The small domain-specific video diffusion model of Video Adapter.

Video Adapter trains a *small* text-to-video diffusion model on a narrow data set (an artist's clips, a
robot's camera, ...) by plain maximum likelihood, in the latent space and noise parameterisation of a large
frozen prior, so that at sampling time the two noise predictions can simply be added. The paper's small
models are about 1.25 %, 2.5 % and 6 % of the prior's parameters; the presets here (``"xs"``, ``"s"``,
``"m"``) are fitted to those fractions of each family's reference prior.

Architecture: a compact diffusion transformer (:class:`DomainVideoModel`; a config with ``backbone="unet"``
builds the convolutional :class:`DomainVideoUNet` instead, for small latent grids, see its section below).

* patchify over (1, 2, 2) (time, height, width) with a linear embedding, plus a fixed 3D sinusoidal
  position code (computed on the fly, so any clip length and resolution works);
* per block: self-attention (either factorised into spatial-then-temporal attention, or full attention
  over all tokens), cross-attention to the projected text, and an MLP; the self-attention and MLP
  branches use adaLN timestep modulation (shift, scale and a zero-initialised gate), with one shared
  modulation projection plus a learned per-block offset;
* text: the prior's text features ``[B, L, text_dim]`` projected down to the model width; a learned
  null embedding stands for "no text" (classifier-free guidance);
* optional paper conditioning, concatenated on channels before the patch embedding: the first-frame
  latent replicated over time, and a Sobel-x edge video (see :func:`sobel_edges`).

Layouts: the model works on ``[B, C, T, H, W]``. Families that keep frames in the batch dimension
(SD-style, ``[T, C, H, W]``) go through :func:`frames_to_video` / :func:`video_to_frames` at the edges.

Noise levels are given as ``sigma`` per batch element, in the prior's parameterisation:

* ``"flow"`` (rectified flow, Wan): x = (1 - s) x0 + s n, prediction v = n - x0, timestep t = 1000 s;
* ``"eps"``: x = x0 + s n, prediction n; the input is scaled by 1 / sqrt(1 + s^2) inside the model;
* ``"v"``: as ``"eps"`` for the input, prediction v = (n - s x0) / sqrt(1 + s^2).

For ``"eps"`` and ``"v"`` the timestep fed to the sinusoidal embedding is 250 ln(s), a smooth stand-in
for the discrete timestep index that spans a similar range.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange

from .files import AdapterFileError, load_tensors, read_metadata, save_tensors

try:  # inside ComfyUI the pack is one package; the host-free tests and the CLI import the core packages directly
    from ..samplers import parameterisation as parameterisation_module
except ImportError:
    from samplers import parameterisation as parameterisation_module

PARAMETERISATIONS = ("flow", "eps", "v")
ATTENTION_MODES = ("factorised", "full")
BACKBONES = ("transformer", "unet")

# Latent space, text encoder and parameterisation of each supported prior family, plus the parameter
# counts of the reference priors the size presets are measured against.
FAMILY_SPECS: dict[str, dict[str, Any]] = {
    "wan21": {
        "latent_channels": 16, "text_dim": 4096, "parameterisation": "flow",
        "layout": "video", "temporal_compression": 4, "spatial_compression": 8,
        "reference_prior": "Wan 2.1 T2V 1.3B", "prior_params": 1.3e9,
    },
    "wan22_5b": {
        "latent_channels": 48, "text_dim": 4096, "parameterisation": "flow",
        "layout": "video", "temporal_compression": 4, "spatial_compression": 16,
        "reference_prior": "Wan 2.2 TI2V 5B", "prior_params": 5.0e9,
    },
    "sd15": {
        "latent_channels": 4, "text_dim": 768, "parameterisation": "eps",
        "layout": "frames", "temporal_compression": 1, "spatial_compression": 8,
        "reference_prior": "Stable Diffusion 1.5 UNet", "prior_params": 8.6e8,
    },
    # The pack's own synthetic latent space (adapters/synthetic_video.py): the tiny demo pair that ships with
    # the pack and the Table-1 miniature live here. It is not a real VAE's space, so real priors refuse it.
    "synthetic": {
        "latent_channels": 16, "text_dim": 32, "parameterisation": "flow",
        "layout": "video", "temporal_compression": 1, "spatial_compression": 8,
        "reference_prior": None, "prior_params": None,
        # version of the latent code (adapters/synthetic_video.PatchCodec): 1, the 8 x 8 block code; 2, the
        # lapped code of 16 x 16 tapered windows. A model lives in the code it was trained in.
        "code_version": 2,
    },
}
# Families whose size presets are fitted to a reference prior (all but the synthetic demo space).
SIZED_FAMILIES = tuple(f for f, spec in FAMILY_SPECS.items() if spec["prior_params"])

# Named sizes: target fraction of the family's reference prior (the paper's 1.25 %, 2.5 % and 6 %) and a
# preferred depth; the width is fitted to the target.
PRESETS: dict[str, dict[str, float]] = {
    "xs": {"fraction": 0.0125, "depth": 6},
    "s": {"fraction": 0.025, "depth": 8},
    "m": {"fraction": 0.06, "depth": 12},
}

# Paper ranges the presets must respect (used by tests and the size report).
PRESET_RANGES: dict[str, tuple[float, float]] = {"xs": (0.01, 0.015), "s": (0.02, 0.03), "m": (0.05, 0.07)}

HEAD_DIM = 64


@dataclass
class DomainModelConfig:
    """Everything needed to rebuild a :class:`DomainVideoModel`; JSON-serialisable."""

    family: str = "wan21"
    latent_channels: int = 16
    text_dim: int = 4096
    parameterisation: str = "flow"
    width: int = 384
    depth: int = 6
    heads: int = 6
    patch_size: tuple[int, int, int] = (1, 2, 2)
    mlp_ratio: float = 4.0
    attention: str = "factorised"
    freq_dim: int = 256
    null_tokens: int = 4
    first_frame_cond: bool = False
    edge_cond: bool = False
    edge_channels: int = 0  # channels of the edge video; 0 means latent_channels (edges of the latents)
    # a 3x3 convolution over each frame's latent grid before the patch embedding and after the output (both
    # residual, the output one zero-initialised): tokens see their neighbours' cells and neighbouring tokens'
    # outputs join across patch seams
    local_conv: bool = False
    # in every block, a depthwise 3x3 convolution over each frame's token grid after the MLP (residual,
    # zero-initialised): neighbouring tokens mix at every depth, not only at the model's ends
    block_conv: bool = False
    # "transformer" (DomainVideoModel) or "unet" (DomainVideoUNet: a convolutional UNet over each frame's latent grid
    # with temporal layers, for latent grids small enough that two downsamplings keep a few cells)
    backbone: str = "transformer"
    unet_widths: tuple[int, ...] = ()  # the UNet's channel width per resolution level (backbone "unet")
    preset: str = ""  # informative only

    def __post_init__(self):
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if len(self.patch_size) != 3:
            raise ValueError(f"patch_size needs three entries (t, h, w), got {self.patch_size}")
        self.unet_widths = tuple(int(v) for v in self.unet_widths)
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got '{self.backbone}'")
        if self.backbone == "unet":
            if len(self.unet_widths) != 3 or self.patch_size != (1, 1, 1):
                raise ValueError("a UNet backbone needs three unet_widths and patch_size (1, 1, 1)")
            for w in self.unet_widths + tuple(2 * w for w in self.unet_widths):  # skip concatenations double them
                if w < 4 or w % 4 or w % min(16, w // 4):
                    raise ValueError(f"unet_widths {list(self.unet_widths)}: each width must be a multiple of 4 "
                                     f"that splits into min(16, width / 4) normalisation groups (32, 48, 64, 96, ...)")
        if self.parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"parameterisation must be one of {PARAMETERISATIONS}, got '{self.parameterisation}'")
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got '{self.attention}'")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if (self.width // self.heads) % 2:
            raise ValueError("the head dimension must be even")

    @property
    def edge_in_channels(self) -> int:
        return self.edge_channels or self.latent_channels

    @property
    def in_channels(self) -> int:
        c = self.latent_channels
        if self.first_frame_cond:
            c += self.latent_channels
        if self.edge_cond:
            c += self.edge_in_channels
        return c

    def architecture_text(self) -> str:
        """A few words on the network: "96 wide, 3 blocks" or "UNet 48 / 64 / 96"."""
        if self.backbone == "unet":
            return "UNet " + " / ".join(str(w) for w in self.unet_widths)
        return f"{self.width} wide, {self.depth} blocks"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        d["unet_widths"] = list(self.unet_widths)
        if self.backbone == "transformer":  # as before the UNet existed, so earlier versions still read these files
            del d["backbone"], d["unet_widths"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DomainModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown domain model config keys {unknown}: the file is from a newer version")
        return cls(**d)


# ----------------------------------------------------------------------------------------------------
# layout and conditioning helpers


def frames_to_video(frames: torch.Tensor, num_videos: int = 1) -> torch.Tensor:
    """Frames-in-batch latents ``[N*T, C, H, W]`` (SD-style families) -> ``[N, C, T, H, W]``.

    The batch is read as ``num_videos`` consecutive runs of frames (one video by default, as ComfyUI
    lays out an SD-style video batch).
    """
    if frames.ndim != 4:
        raise ValueError(f"expected frames [T, C, H, W], got shape {tuple(frames.shape)}")
    if frames.shape[0] % num_videos:
        raise ValueError(f"{frames.shape[0]} frames cannot be split into {num_videos} videos")
    return rearrange(frames, "(b t) c h w -> b c t h w", b=num_videos)


def video_to_frames(video: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`frames_to_video`: ``[N, C, T, H, W]`` -> ``[N*T, C, H, W]``."""
    return rearrange(video, "b c t h w -> (b t) c h w")


def frames_context_to_video(context: torch.Tensor, num_videos: int = 1) -> torch.Tensor:
    """Per-frame text features ``[N*T, L, D]`` (the host repeats the prompt for every frame of a
    frames-in-batch video) -> one row per video ``[N, L, D]``, taking each video's first frame."""
    if context.shape[0] % num_videos:
        raise ValueError(f"{context.shape[0]} context rows cannot be split into {num_videos} videos")
    return context[:: context.shape[0] // num_videos]


def sobel_edges(video: torch.Tensor) -> torch.Tensor:
    """Sobel-x edge video of ``[B, C, T, H, W]`` (latents or pixels), same shape, per channel and frame.

    The horizontal-gradient Sobel kernel (divided by 8, so a unit step gives magnitude about 1) with
    replicated borders: the paper conditions on the x-direction gradient approximation only.
    """
    if video.ndim != 5:
        raise ValueError(f"expected [B, C, T, H, W], got shape {tuple(video.shape)}")
    b, c, t, h, w = video.shape
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=video.dtype, device=video.device)
    k = (k / 8.0).expand(c, 1, 3, 3)
    frames = rearrange(video, "b c t h w -> (b t) c h w")
    frames = F.pad(frames, (1, 1, 1, 1), mode="replicate")
    edges = F.conv2d(frames, k, groups=c)
    return rearrange(edges, "(b t) c h w -> b c t h w", b=b)


def _sigma_vector(sigma, batch: int, device, dtype=torch.float32) -> torch.Tensor:
    s = torch.as_tensor(sigma, device=device, dtype=dtype).reshape(-1)
    if s.numel() == 1:
        s = s.expand(batch)
    if s.numel() != batch:
        raise ValueError(f"sigma has {s.numel()} entries for a batch of {batch}")
    return s


def sigma_to_timestep(sigma: torch.Tensor, parameterisation: str) -> torch.Tensor:
    """The continuous timestep fed to the sinusoidal embedding (t = 1000 s for flow, 250 ln s otherwise)."""
    if parameterisation == "flow":
        return sigma * 1000.0
    return 250.0 * torch.log(sigma.clamp_min(1e-5))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of continuous timesteps ``[B]`` (cos half, then sin half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _sincos_1d(n: int, dim: int, device) -> torch.Tensor:
    """Fixed sinusoidal code ``[n, dim]`` of positions 0..n-1 (dim even)."""
    if dim == 0:
        return torch.zeros(n, 0, device=device)
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.sin(pos), torch.cos(pos)], dim=-1)


def position_code(t: int, h: int, w: int, width: int, device) -> torch.Tensor:
    """3D sinusoidal position code ``[t*h*w, width]``: a quarter of the channels for time, the rest split
    between height and width (unused channels stay zero)."""
    dt = (width // 4) // 2 * 2
    dh = ((width - dt) // 2) // 2 * 2
    dw = dh
    et = _sincos_1d(t, dt, device)[:, None, None].expand(t, h, w, dt)
    eh = _sincos_1d(h, dh, device)[None, :, None].expand(t, h, w, dh)
    ew = _sincos_1d(w, dw, device)[None, None, :].expand(t, h, w, dw)
    code = torch.cat([et, eh, ew], dim=-1).reshape(t * h * w, dt + dh + dw)
    return F.pad(code, (0, width - code.shape[-1]))


def prediction_to_denoised(x: torch.Tensor, prediction: torch.Tensor, sigma, parameterisation: str) -> torch.Tensor:
    """The clean estimate x0 implied by a model prediction at noise level ``sigma`` (x in the sampler's space)."""
    s = _sigma_vector(sigma, x.shape[0], x.device, x.dtype)
    return parameterisation_module.prediction_to_denoised(x, prediction, s, parameterisation)


# ----------------------------------------------------------------------------------------------------
# the network


class _QKNorm(nn.Module):
    """RMS norm over the head dimension with a learned gain (stabilises attention logits)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, eps=1e-6)


class _SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.q_norm = _QKNorm(width // heads)
        self.k_norm = _QKNorm(width // heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, S, D]
        q, k, v = rearrange(self.qkv(x), "n s (three h d) -> three n h s d", three=3, h=self.heads)
        y = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.out(rearrange(y, "n h s d -> n s (h d)"))


class _CrossAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.q_norm = _QKNorm(width // heads)
        self.k_norm = _QKNorm(width // heads)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        q = rearrange(self.q(x), "b s (h d) -> b h s d", h=self.heads)
        k, v = rearrange(self.kv(ctx), "b l (two h d) -> two b h l d", two=2, h=self.heads)
        attn_mask = None if mask is None else mask[:, None, None, :]
        y = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v, attn_mask=attn_mask)
        return self.out(rearrange(y, "b h s d -> b s (h d)"))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1.0 + scale[:, None]) + shift[:, None]


class _Block(nn.Module):
    """One transformer block; ``n_mod`` modulation vectors (3 per modulated branch)."""

    def __init__(self, cfg: DomainModelConfig):
        super().__init__()
        w = cfg.width
        self.factorised = cfg.attention == "factorised"
        self.n_mod = 9 if self.factorised else 6
        self.mod_offset = nn.Parameter(torch.zeros(self.n_mod, w))
        self.attn_s = _SelfAttention(w, cfg.heads)
        self.attn_t = _SelfAttention(w, cfg.heads) if self.factorised else None
        self.norm_x = nn.LayerNorm(w, eps=1e-6)
        self.cross = _CrossAttention(w, cfg.heads)
        hidden = int(w * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(w, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, w))
        self.grid_conv = nn.Conv2d(w, w, 3, padding=1, groups=w) if cfg.block_conv else None

    def forward(self, x, mod, grid, ctx, mask):
        # x: [B, S, D] with S = t*h*w tokens; mod: [B, n_mod, D]
        t, h, w = grid
        m = (mod + self.mod_offset[None]).unbind(1)
        ln = lambda z: F.layer_norm(z, (z.shape[-1],), eps=1e-6)  # noqa: E731
        b = x.shape[0]
        if self.factorised:
            y = rearrange(_modulate(ln(x), m[0], m[1]), "b (t s) d -> (b t) s d", t=t)
            y = rearrange(self.attn_s(y), "(b t) s d -> b (t s) d", b=b)
            x = x + m[2][:, None] * y
            y = rearrange(_modulate(ln(x), m[3], m[4]), "b (t s) d -> (b s) t d", t=t)
            y = rearrange(self.attn_t(y), "(b s) t d -> b (t s) d", b=b)
            x = x + m[5][:, None] * y
            i = 6
        else:
            x = x + m[2][:, None] * self.attn_s(_modulate(ln(x), m[0], m[1]))
            i = 3
        x = x + self.cross(self.norm_x(x), ctx, mask)
        x = x + m[i + 2][:, None] * self.mlp(_modulate(ln(x), m[i], m[i + 1]))
        if self.grid_conv is not None:
            y = rearrange(x, "b (t h w) d -> (b t) d h w", t=t, h=h, w=w)
            x = x + rearrange(self.grid_conv(y), "(b t) d h w -> b (t h w) d", b=b)
        return x


class DomainNet(nn.Module):
    """What every backbone of a domain model shares: its config, the input path (shape check, dtype, eps/v input
    scaling, conditioning channels) and the text tokens with a learned null embedding (``text_proj`` and
    ``null_context``).
    Subclasses: :class:`DomainVideoModel` (the transformer) and :class:`DomainVideoUNet`."""

    config: DomainModelConfig

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _network_input(self, x: torch.Tensor, sigma, first_frame, edges) -> tuple[torch.Tensor, torch.Tensor]:
        """The checked latents in the network's dtype (divided by sqrt(1 + s^2) for eps and v) with the conditioning
        channels appended, and the per-sample noise levels ``[B]``."""
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.latent_channels:
            raise ValueError(
                f"expected latents [B, {cfg.latent_channels}, T, H, W] for family '{cfg.family}', got "
                f"shape {tuple(x.shape)} (frames-in-batch latents go through frames_to_video first)")
        b, dtype = x.shape[0], self.dtype
        s = _sigma_vector(sigma, b, x.device)
        xin = x.to(dtype)
        if cfg.parameterisation in ("eps", "v"):
            xin = xin / torch.sqrt(1.0 + s * s).to(dtype).reshape(b, 1, 1, 1, 1)
        return self._conditioned_input(xin, first_frame, edges), s

    def forward(self, x: torch.Tensor, sigma, context: Optional[torch.Tensor] = None,
                context_mask: Optional[torch.Tensor] = None, first_frame: Optional[torch.Tensor] = None,
                edges: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The prediction for latents ``x`` at noise level ``sigma`` (see :class:`DomainVideoModel`), in the shape
        and dtype of ``x``: the shared input path, then the backbone's :meth:`_predict`."""
        xin, s = self._network_input(x, sigma, first_frame, edges)
        t, h, w = x.shape[2:]
        return self._predict(xin, s, context, context_mask)[:, :, :t, :h, :w].to(x.dtype)

    def _predict(self, xin: torch.Tensor, s: torch.Tensor, context, context_mask) -> torch.Tensor:
        """The backbone: network input ``[B, in_channels, T, H, W]`` (conditioning channels appended) and noise
        levels ``[B]`` -> prediction ``[B, latent_channels, >= T, >= H, >= W]`` (padding is cropped by the caller)."""
        raise NotImplementedError

    # -- conditioning --------------------------------------------------------------------------------

    def _text_tokens(self, context, context_mask, batch, dtype, device):
        """Cross-attention keys ``[B, L + n_null, D]`` and mask; dropped rows see only the null tokens."""
        null = self.null_context.to(dtype)[None].expand(batch, -1, -1)
        if context is None:
            return null, None
        if context.ndim != 3 or context.shape[-1] != self.config.text_dim:
            raise ValueError(
                f"context must be [B, L, {self.config.text_dim}] for family '{self.config.family}', "
                f"got shape {tuple(context.shape)}")
        if context.shape[0] != batch:
            if batch % context.shape[0]:
                raise ValueError(f"context batch {context.shape[0]} does not divide latent batch {batch}")
            reps = batch // context.shape[0]
            context = context.repeat_interleave(reps, 0)
            context_mask = None if context_mask is None else context_mask.repeat_interleave(reps, 0)
        txt = self.text_proj(context.to(device=device, dtype=dtype))
        if context_mask is None:
            valid = torch.ones(txt.shape[:2], dtype=torch.bool, device=device)
        else:
            valid = context_mask.to(device=device, dtype=torch.bool)
        dropped = ~valid.any(dim=1)
        null_valid = dropped[:, None].expand(batch, null.shape[1])
        return torch.cat([txt, null], dim=1), torch.cat([valid, null_valid], dim=1)

    def _conditioned_input(self, x, first_frame, edges):
        cfg = self.config
        parts = [x]
        b, _, t, h, w = x.shape
        if cfg.first_frame_cond:
            if first_frame is None:
                ff = x.new_zeros(b, cfg.latent_channels, t, h, w)
            else:
                ff = first_frame.to(x)
                if ff.ndim == 4:
                    ff = ff[:, :, None]
                ff = ff[:, :, :1].expand(b, -1, t, -1, -1)
            parts.append(ff)
        if cfg.edge_cond:
            if edges is None:
                e = x.new_zeros(b, cfg.edge_in_channels, t, h, w)
            else:
                e = edges.to(x)
                if e.shape[2:] != (t, h, w):
                    e = F.interpolate(e, size=(t, h, w), mode="trilinear", align_corners=False)
            parts.append(e)
        elif edges is not None:
            raise ValueError("this domain model was built without edge conditioning")
        if first_frame is not None and not cfg.first_frame_cond:
            raise ValueError("this domain model was built without first-frame conditioning")
        return torch.cat(parts, dim=1)


class DomainVideoModel(DomainNet):
    """Small text-conditioned video diffusion transformer (see the module docstring).

    ``forward(x, sigma, context, context_mask=None, first_frame=None, edges=None)``:

    * ``x``: noisy latents ``[B, C, T, H, W]`` in the prior's space (H, W are padded to the patch size
      internally and cropped back);
    * ``sigma``: noise level, a float or a ``[B]`` tensor;
    * ``context``: text features ``[B, L, text_dim]``, or ``None`` for the unconditional prediction;
    * ``context_mask``: ``[B, L]`` booleans, True for real tokens. A row with no True entry is treated
      as unconditional (the learned null embedding), which is how per-sample classifier-free dropout is
      expressed during training;
    * ``first_frame``: first-frame latent ``[B, C, H, W]`` or ``[B, C, 1, H, W]`` (replicated over time)
      when ``first_frame_cond`` is on; zeros when omitted;
    * ``edges``: edge video ``[B, edge_channels, T', H', W']`` when ``edge_cond`` is on, resized to the
      latent grid if needed; zeros when omitted.

    Returns the prediction in the configured parameterisation, shape and dtype of ``x``.
    """

    def __init__(self, config: DomainModelConfig):
        super().__init__()
        if config.backbone != "transformer":
            raise ValueError(f"DomainVideoModel builds backbone 'transformer', the config says '{config.backbone}' "
                             "(build_domain_model picks the network of a config)")
        self.config = config
        w = config.width
        pt, ph, pw = config.patch_size
        patch_dim = config.in_channels * pt * ph * pw
        self.patch_embed = nn.Linear(patch_dim, w)
        self.time_embed = nn.Sequential(nn.Linear(config.freq_dim, w), nn.SiLU(), nn.Linear(w, w))
        n_mod = 9 if config.attention == "factorised" else 6
        self.time_mod = nn.Linear(w, n_mod * w)
        self.text_proj = nn.Sequential(nn.Linear(config.text_dim, w), nn.GELU(approximate="tanh"), nn.Linear(w, w))
        self.null_context = nn.Parameter(torch.randn(config.null_tokens, w) * 0.02)
        self.blocks = nn.ModuleList([_Block(config) for _ in range(config.depth)])
        self.final_mod = nn.Linear(w, 2 * w)
        self.final = nn.Linear(w, config.latent_channels * pt * ph * pw)
        if config.local_conv:
            c_in, c = config.in_channels, config.latent_channels
            self.in_conv = nn.Conv3d(c_in, c_in, (1, 3, 3), padding=(0, 1, 1))
            self.out_conv = nn.Conv3d(c, c, (1, 3, 3), padding=(0, 1, 1))
        self._init_weights()
        # a training setting, not part of the model: keep only each block's input for backward
        self.gradient_checkpointing = False

    def _init_weights(self):
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.time_embed[0].weight, std=0.02)
        nn.init.normal_(self.time_embed[2].weight, std=0.02)
        # adaLN-zero: every modulated branch starts closed and the output starts at zero.
        for lin in (self.time_mod, self.final_mod, self.final) + ((self.in_conv, self.out_conv)
                                                                  if self.config.local_conv else ()):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        for blk in self.blocks:  # the per-block grid convolutions start closed too
            if blk.grid_conv is not None:
                nn.init.zeros_(blk.grid_conv.weight)
                nn.init.zeros_(blk.grid_conv.bias)

    # -- forward -------------------------------------------------------------------------------------

    def _predict(self, xin: torch.Tensor, s: torch.Tensor, context, context_mask) -> torch.Tensor:
        cfg = self.config
        dtype, device = self.dtype, xin.device
        b, _, t, h, w = xin.shape
        if cfg.local_conv:
            xin = xin + self.in_conv(xin)

        pt, ph, pw = cfg.patch_size
        pad_t, pad_h, pad_w = (-t) % pt, (-h) % ph, (-w) % pw
        if pad_t or pad_h or pad_w:
            xin = F.pad(xin, (0, pad_w, 0, pad_h, 0, pad_t), mode="replicate")
        gt, gh, gw = (t + pad_t) // pt, (h + pad_h) // ph, (w + pad_w) // pw
        tok = rearrange(xin, "b c (t p) (h q) (w r) -> b (t h w) (c p q r)", p=pt, q=ph, r=pw)
        tok = self.patch_embed(tok) + position_code(gt, gh, gw, cfg.width, device).to(dtype)[None]

        temb = self.time_embed(timestep_embedding(sigma_to_timestep(s, cfg.parameterisation), cfg.freq_dim).to(dtype))
        mod = self.time_mod(F.silu(temb)).reshape(b, -1, cfg.width)
        ctx, mask = self._text_tokens(context, context_mask, b, dtype, device)

        for blk in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                # keep only each block's input; backward runs the block again (the same gradients)
                tok = torch.utils.checkpoint.checkpoint(blk, tok, mod, (gt, gh, gw), ctx, mask, use_reentrant=False)
            else:
                tok = blk(tok, mod, (gt, gh, gw), ctx, mask)

        shift, scale = self.final_mod(F.silu(temb)).chunk(2, dim=-1)
        tok = self.final(_modulate(F.layer_norm(tok, (cfg.width,), eps=1e-6), shift, scale))
        out = rearrange(tok, "b (t h w) (c p q r) -> b c (t p) (h q) (w r)", t=gt, h=gh, w=gw, p=pt, q=ph, r=pw)
        if cfg.local_conv:
            out = out + self.out_conv(out)
        return out


# ----------------------------------------------------------------------------------------------------
# the UNet backbone (backbone="unet")
#
# A convolutional UNet backbone for domain models and priors on small latent grids (``backbone="unet"``).
#
# On the Video Adapter miniature's 8 x 8 latent grid the transformer above needs far more examples than a CPU hour
# gives before its samples hold recognisable shapes. Step for step the UNet learns them no faster, but a step costs
# about a third of the time, so the same hour shows it three times the examples (measured in
# docs/video_adapter.md, "A convolutional UNet prior").
#
# Layout, per frame (the latents' frames are batched through the 2D layers):
#
# * three resolution levels (the latent grid, then halved twice with strided convolutions) of
#   ``config.unet_widths`` channels; residual blocks (GroupNorm, SiLU, 3 x 3 convolutions) with the noise
#   level's embedding as a scale and shift;
# * at the two coarser levels and in the middle, attention: self-attention over the frame's cells, self-attention
#   over time at each cell, cross-attention to the text (with the shared learned null embedding of
#   :class:`DomainNet` for the unconditional branch);
# * in every residual block a temporal convolution (kernel 3 over frames) at each cell;
# * the decoder mirrors the encoder with skip connections (nearest-neighbour upsampling and a 3 x 3 convolution).
#
# Every branch that mixes frames (temporal convolution and attention) and the output convolution start at zero,
# so a network trained on still images (one frame) starts video training as that image model applied frame by
# frame. The noise level, parameterisation, conditioning channels (first frame, edges) and the text path follow
# the transformer exactly, so either backbone plugs into the same nodes, composer and trainer.

UNET_HEADS = 4


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(16, channels // 4), channels)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class _Res(nn.Module):
    """Residual block over each frame, modulated by the noise level, with a temporal convolution after it."""

    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.e = nn.Linear(emb, 2 * cout)
        self.n2, self.c2 = _norm(cout), _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.tconv = _zero(nn.Conv1d(cout, cout, 3, padding=1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:  # x: [(B T), C, H, W]
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.e(F.silu(emb)).chunk(2, -1)
        h = self.n2(h) * (1 + scale[..., None, None]) + shift[..., None, None]
        h = self.skip(x) + self.c2(F.silu(h))
        if frames > 1:
            hh, ww = h.shape[2:]
            y = rearrange(h, "(b t) c h w -> (b h w) c t", t=frames)
            h = h + rearrange(self.tconv(F.silu(y)), "(b h w) c t -> (b t) c h w", h=hh, w=ww)
        return h


class _Attention(nn.Module):
    """Self-attention over each frame's cells, then over time at each cell, then cross-attention to the text."""

    def __init__(self, channels: int, text_width: int):
        super().__init__()
        c = channels
        self.n1, self.qkv, self.o1 = nn.LayerNorm(c), nn.Linear(c, 3 * c), _zero(nn.Linear(c, c))
        self.n2, self.q, self.kv = nn.LayerNorm(c), nn.Linear(c, c), nn.Linear(text_width, 2 * c)
        self.o2 = _zero(nn.Linear(c, c))
        self.n3, self.qkv3, self.o3 = nn.LayerNorm(c), nn.Linear(c, 3 * c), _zero(nn.Linear(c, c))

    @staticmethod
    def _self(x, norm, qkv, out):
        q, k, v = rearrange(qkv(norm(x)), "b s (k h d) -> k b h s d", k=3, h=UNET_HEADS)
        return out(rearrange(F.scaled_dot_product_attention(q, k, v), "b h s d -> b s (h d)"))

    def forward(self, x, ctx, mask, frames: int):
        hh, ww = x.shape[2:]
        s = rearrange(x, "bt c h w -> bt (h w) c")
        s = s + self._self(s, self.n1, self.qkv, self.o1)
        if frames > 1:
            y = rearrange(s, "(b t) s c -> (b s) t c", t=frames)
            y = y + self._self(y, self.n3, self.qkv3, self.o3)
            s = rearrange(y, "(b s) t c -> (b t) s c", t=frames, s=hh * ww)
        q = rearrange(self.q(self.n2(s)), "b s (h d) -> b h s d", h=UNET_HEADS)
        k, v = rearrange(self.kv(ctx), "b l (k h d) -> k b h l d", k=2, h=UNET_HEADS)
        attn_mask = None if mask is None else mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        s = s + self.o2(rearrange(y, "b h s d -> b s (h d)"))
        return rearrange(s, "bt (h w) c -> bt c h w", h=hh, w=ww)


class DomainVideoUNet(DomainNet):
    """A text-conditioned video UNet with the interface of :class:`DomainVideoModel` (see the section's comment
    above); ``config.backbone`` is ``"unet"``. Latent grids are padded to a multiple of 4."""

    def __init__(self, config: DomainModelConfig):
        super().__init__()
        if config.backbone != "unet":
            raise ValueError(f"DomainVideoUNet builds backbone 'unet', the config says '{config.backbone}'")
        self.config = config
        w0, w1, w2 = config.unet_widths
        emb, text = 4 * w0, w2
        self.time_embed = nn.Sequential(nn.Linear(w0, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.text_proj = nn.Sequential(nn.Linear(config.text_dim, text), nn.GELU(), nn.Linear(text, text))
        self.null_context = nn.Parameter(torch.randn(config.null_tokens, text) * 0.02)
        self.cin = nn.Conv2d(config.in_channels, w0, 3, padding=1)
        self.d0 = _Res(w0, w0, emb)
        self.down1 = nn.Conv2d(w0, w0, 3, stride=2, padding=1)
        self.d1, self.a1 = _Res(w0, w1, emb), _Attention(w1, text)
        self.down2 = nn.Conv2d(w1, w1, 3, stride=2, padding=1)
        self.d2, self.a2 = _Res(w1, w2, emb), _Attention(w2, text)
        self.m, self.am = _Res(w2, w2, emb), _Attention(w2, text)
        self.u2, self.ua2 = _Res(2 * w2, w2, emb), _Attention(w2, text)
        self.up2 = nn.Conv2d(w2, w1, 3, padding=1)
        self.u1, self.ua1 = _Res(2 * w1, w1, emb), _Attention(w1, text)
        self.up1 = nn.Conv2d(w1, w0, 3, padding=1)
        self.u0 = _Res(2 * w0, w0, emb)
        self.nout, self.cout = _norm(w0), _zero(nn.Conv2d(w0, config.latent_channels, 3, padding=1))
        self.gradient_checkpointing = False  # accepted for the trainer; the UNet is small enough without it

    def _predict(self, xin: torch.Tensor, s: torch.Tensor, context, context_mask) -> torch.Tensor:
        cfg = self.config
        dtype = self.dtype
        b, _, t, h, w = xin.shape
        pad_h, pad_w = (-h) % 4, (-w) % 4
        if pad_h or pad_w:
            xin = F.pad(xin, (0, pad_w, 0, pad_h, 0, 0), mode="replicate")
        w0 = cfg.unet_widths[0]
        emb = self.time_embed(timestep_embedding(sigma_to_timestep(s, cfg.parameterisation), w0).to(dtype))
        emb = emb.repeat_interleave(t, 0)
        ctx, mask = self._text_tokens(context, context_mask, b, dtype, xin.device)
        ctx = ctx.repeat_interleave(t, 0)
        mask = None if mask is None else mask.repeat_interleave(t, 0)

        z = rearrange(xin, "b c t h w -> (b t) c h w")
        h0 = self.d0(self.cin(z), emb, t)
        h1 = self.a1(self.d1(self.down1(h0), emb, t), ctx, mask, t)
        h2 = self.a2(self.d2(self.down2(h1), emb, t), ctx, mask, t)
        u = self.am(self.m(h2, emb, t), ctx, mask, t)
        u = self.ua2(self.u2(torch.cat([u, h2], 1), emb, t), ctx, mask, t)
        u = self.up2(F.interpolate(u, scale_factor=2, mode="nearest"))
        u = self.ua1(self.u1(torch.cat([u, h1], 1), emb, t), ctx, mask, t)
        u = self.up1(F.interpolate(u, scale_factor=2, mode="nearest"))
        u = self.u0(torch.cat([u, h0], 1), emb, t)
        return rearrange(self.cout(F.silu(self.nout(u))), "(b t) c h w -> b c t h w", t=t)


# ----------------------------------------------------------------------------------------------------
# sizes and presets


def count_parameters(config: DomainModelConfig) -> int:
    """Exact parameter count of ``DomainVideoModel(config)`` by closed form (no model is built); other backbones
    are counted on the meta device."""
    if config.backbone != "transformer":
        return count_parameters_meta(config)
    w = config.width
    hd = w // config.heads
    p = config.patch_size[0] * config.patch_size[1] * config.patch_size[2]
    n_mod = 9 if config.attention == "factorised" else 6
    hidden = int(w * config.mlp_ratio)
    total = config.in_channels * p * w + w                       # patch embedding
    total += config.freq_dim * w + w + w * w + w                 # timestep MLP
    total += w * n_mod * w + n_mod * w                           # shared modulation
    total += config.text_dim * w + w + w * w + w                 # text projection
    total += config.null_tokens * w                              # null text
    self_attn = 4 * w * w + 4 * w + 2 * hd
    block = n_mod * w + self_attn * (2 if config.attention == "factorised" else 1)
    block += 4 * w * w + 4 * w + 2 * hd + 2 * w                  # cross-attention + its LayerNorm
    block += w * hidden + hidden + hidden * w + w                # MLP
    block += (9 * w + w) if config.block_conv else 0              # depthwise grid convolution
    total += config.depth * block
    total += 2 * w * w + 2 * w + w * config.latent_channels * p + config.latent_channels * p  # output
    if config.local_conv:
        total += sum(c * c * 9 + c for c in (config.in_channels, config.latent_channels))
    return total


def unet_fields(widths) -> dict[str, Any]:
    """The config fields of a UNet backbone with these three level widths (``"48,64,96"`` or a sequence): one cell
    per latent cell (patch 1), the widest level as ``width`` and 4 attention heads. For :func:`family_config`."""
    w = tuple(int(v) for v in (widths.split(",") if isinstance(widths, str) else widths))
    return dict(backbone="unet", unet_widths=w, width=w[-1], heads=4, patch_size=(1, 1, 1))


def build_domain_model(config: DomainModelConfig) -> DomainNet:
    """The network of ``config``: a :class:`DomainVideoModel` or, for ``backbone="unet"``, a
    :class:`DomainVideoUNet`."""
    if config.backbone == "unet":
        return DomainVideoUNet(config)
    return DomainVideoModel(config)


def count_parameters_meta(config: DomainModelConfig) -> int:
    """Parameter count by building the model on the meta device (no memory is allocated)."""
    with torch.device("meta"):
        model = build_domain_model(config)
    return sum(p.numel() for p in model.parameters())


def family_config(family: str, **overrides) -> DomainModelConfig:
    """A config with the latent/text/parameterisation fields of ``family`` and any ``overrides``."""
    if family not in FAMILY_SPECS:
        raise ValueError(f"unknown family '{family}'; known families: {', '.join(FAMILY_SPECS)}")
    spec = FAMILY_SPECS[family]
    base = dict(family=family, latent_channels=spec["latent_channels"], text_dim=spec["text_dim"],
                parameterisation=spec["parameterisation"])
    base.update(overrides)
    return DomainModelConfig(**base)


@lru_cache(maxsize=None)
def _fit_width(family: str, fraction: float, depth: int, prior_params: float, attention: str,
               first_frame_cond: bool, edge_cond: bool) -> tuple[int, int]:
    """(width, depth) whose parameter count is closest to ``fraction * prior_params`` (widths are
    multiples of the 64-wide head; depth may move by one from the preferred value)."""
    target = fraction * prior_params
    best = None
    for d in (depth, depth - 1, depth + 1):
        if d < 1:
            continue
        for heads in range(2, 41):
            cfg = family_config(family, width=heads * HEAD_DIM, heads=heads, depth=d, attention=attention,
                                first_frame_cond=first_frame_cond, edge_cond=edge_cond)
            err = abs(math.log(count_parameters(cfg) / target))
            key = (round(err, 2), abs(d - depth), err)  # prefer the preferred depth among near-ties
            if best is None or key < best[0]:
                best = (key, heads * HEAD_DIM, d)
    return best[1], best[2]


def preset_config(name: str, family: str = "wan21", prior_params: Optional[float] = None,
                  **overrides) -> DomainModelConfig:
    """Named size preset (``"xs"`` ~1.25 %, ``"s"`` ~2.5 %, ``"m"`` ~6 % of the prior) for ``family``.

    ``prior_params`` defaults to the family's reference prior (``FAMILY_SPECS[family]["prior_params"]``);
    pass e.g. 14e9 to size against Wan 2.1 14B. ``overrides`` (attention, first_frame_cond, edge_cond,
    ...) are applied before the width is fitted, except width/depth/heads, which win outright.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; known presets: {', '.join(PRESETS)}")
    if family not in FAMILY_SPECS:
        raise ValueError(f"unknown family '{family}'; known families: {', '.join(FAMILY_SPECS)}")
    if not (prior_params or FAMILY_SPECS[family]["prior_params"]):
        raise ValueError(f"family '{family}' has no reference prior; pass prior_params or give width/depth")
    prior = float(prior_params or FAMILY_SPECS[family]["prior_params"])
    p = PRESETS[name]
    width, depth = _fit_width(family, p["fraction"], int(p["depth"]), prior,
                              overrides.get("attention", "factorised"),
                              bool(overrides.get("first_frame_cond", False)), bool(overrides.get("edge_cond", False)))
    kw = dict(width=width, depth=depth, heads=width // HEAD_DIM, preset=name)
    kw.update(overrides)
    return family_config(family, **kw)


def clip_batches(x0: torch.Tensor, context: torch.Tensor, mask: torch.Tensor, config: DomainModelConfig):
    """The trainers' batch function (``Trainer.run``'s ``batch_fn``) for a domain model: clips drawn with
    replacement, with their captions and the first-frame / edge conditions ``config`` asks for."""
    edges = sobel_edges(x0) if config.edge_cond else None

    def batch_fn(step, generator, bs):
        idx = torch.randint(0, x0.shape[0], (bs,), generator=generator)
        out = {"x0": x0[idx], "context": context[idx], "context_mask": mask[idx]}
        if config.first_frame_cond:
            out["first_frame"] = x0[idx][:, :, :1]
        if config.edge_cond:
            out["edges"] = edges[idx]
        return out

    return batch_fn


SIZES = tuple(PRESETS) + ("tiny",)  # the size choices of the trainers: the presets, plus a minimal model
TINY = dict(width=128, heads=2, depth=2)


def size_config(size: str, family: str, prior_params: Optional[float] = None, **overrides) -> DomainModelConfig:
    """The config of a trainer's ``size`` choice: a preset fitted to ``prior_params`` (see
    :func:`preset_config`), or ``"tiny"`` (128 wide, 2 blocks, for tests and demos). ``overrides`` win."""
    if size == "tiny":
        return family_config(family, **{**TINY, "preset": "tiny", **overrides})
    return preset_config(size, family, prior_params=prior_params, **overrides)


def size_report() -> list[dict[str, Any]]:
    """Parameter counts of every preset of every family, as fractions of Wan 2.1 1.3B and 14B and of the
    prior the preset was sized for (each family's reference prior, plus Wan 2.1 14B for ``wan21``).
    One dict per (family, sizing prior, preset)."""
    sizings = [(f, FAMILY_SPECS[f]["reference_prior"], FAMILY_SPECS[f]["prior_params"]) for f in SIZED_FAMILIES]
    sizings.insert(1, ("wan21", "Wan 2.1 T2V 14B", 14e9))  # the same latent space serves both Wan 2.1 sizes
    rows = []
    for family, prior_name, prior_params in sizings:
        for name in PRESETS:
            cfg = preset_config(name, family, prior_params=prior_params)
            n = count_parameters(cfg)
            rows.append({
                "family": family, "preset": name, "width": cfg.width, "depth": cfg.depth, "heads": cfg.heads,
                "params": n, "of_wan21_1.3b": n / 1.3e9, "of_wan21_14b": n / 14e9,
                "reference_prior": prior_name, "of_reference": n / prior_params,
            })
    return rows


def format_size_report(rows: Optional[list[dict[str, Any]]] = None) -> str:
    """:func:`size_report` as a Markdown table."""
    rows = size_report() if rows is None else rows
    lines = ["| family | preset | width x depth | params | % of Wan2.1 1.3B | % of Wan2.1 14B | % of reference prior |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['preset']} | {r['width']} x {r['depth']} | {r['params'] / 1e6:.1f}M | "
                     f"{100 * r['of_wan21_1.3b']:.2f} | {100 * r['of_wan21_14b']:.3f} | "
                     f"{100 * r['of_reference']:.2f} ({r['reference_prior']}) |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# files


def save_domain_model(path: str, model: DomainNet, training_summary: Optional[dict] = None) -> None:
    """Write ``model`` (weights in their current dtype) with its config and a JSON training summary."""
    cfg = model.config
    meta = {
        "kind": "domain_model", "family": cfg.family, "latent_channels": cfg.latent_channels,
        "parameterisation": cfg.parameterisation, "config": cfg.to_dict(),
        "training": dict(training_summary or {}),
        "params": sum(p.numel() for p in model.parameters()),
    }
    meta.update(latent_code_meta(cfg.family))
    save_tensors(path, dict(model.state_dict()), meta)


def latent_code_meta(family: str) -> dict[str, int]:
    """``{"latent_code": version}`` for families whose latent code has versions (the synthetic space), else {}."""
    code = FAMILY_SPECS.get(family, {}).get("code_version")
    return {} if code is None else {"latent_code": int(code)}


def check_latent_code(meta: dict[str, Any], name: str) -> None:
    """Refuse a model or checkpoint file (its metadata ``meta``) trained in another version of its family's
    latent code: its samples would decode wrongly (wrong colours, smeared detail)."""
    code = FAMILY_SPECS.get(meta.get("family"), {}).get("code_version")
    if code is None:
        return
    version = int(meta.get("latent_code", 1))
    if version > code:
        raise AdapterFileError(
            f"{name} is in version {version} of the synthetic latent code, newer than this pack's version {code}: "
            f"update the pack to use it")
    if version < code:
        raise AdapterFileError(
            f"{name} is in version {version} of the synthetic latent code; this pack uses version {code} (the "
            f"lapped code, without seams between cells), so its samples would decode with wrong colours and "
            f"detail. Retrain it on synthetic clips (python -m adapters.train_cli with a synthetic data section, "
            f"or benchmarks/table1_miniature.py --ship), or load it with the pack version that trained it")


def load_domain_model(path: str, expect_family: Optional[str] = None, device: str | torch.device = "cpu",
                      dtype: Optional[torch.dtype] = None) -> tuple[DomainNet, dict[str, Any]]:
    """Read a domain model file: ``(model in eval mode, metadata)``.

    With ``expect_family`` a file trained for another family is refused (the error names both).
    """
    meta = read_metadata(path)
    if meta.get("kind") != "domain_model":
        raise AdapterFileError(f"{os.path.basename(path)} is a '{meta.get('kind')}' file, not a domain model")
    family = meta.get("family")
    if expect_family is not None and family != expect_family:
        raise AdapterFileError(
            f"this domain model was trained for the '{family}' family, but the model it is used with is "
            f"'{expect_family}': latent spaces differ, so it cannot be combined")
    check_latent_code(meta, os.path.basename(path))
    tensors, meta = load_tensors(path, device=device, expect_kind="domain_model")
    cfg = DomainModelConfig.from_dict(meta["config"])
    with torch.device("meta"):
        model = build_domain_model(cfg)
    model.load_state_dict(tensors, strict=True, assign=True)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval(), meta
