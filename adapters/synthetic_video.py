"""Deterministic synthetic video clips for tests, benchmarks and the training demo.

Two distributions mimic the Video Adapter setting:

* ``"internet"``: broad. One to four shapes of any kind, any colour, any texture and any motion, on
  a random background, with a random camera pan (global translation).
* ``"domain"``: narrow, like an artist's style: a warm "sunset" palette, striped textures, wobbling
  blobs that orbit, and a slow camera pan to the right. Only positions, phases and speeds vary.

Each clip comes with a caption made of attribute words (palette, texture, shape, motion, camera),
as token ids into :data:`VOCAB`, a readable string, and :func:`caption_context` turns the tokens into a
text-encoder-like feature tensor ``[N, L, D]`` (a fixed random embedding per word plus a position code), so
models can be text-conditioned without a real text encoder.

:class:`ToyLatentCodec` is a stand-in for a VAE: a 4x4 average pool and a fixed random (semi-)orthogonal
channel projection to C latent channels, with its pseudo-inverse as the decoder. It only exists so the
tests and benchmarks can run the whole latent pipeline without model weights.

Everything is drawn from one ``torch.Generator`` seeded by the caller: the same seed gives the same clips.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PALETTES = ("any", "sunset", "ocean", "forest", "mono")
TEXTURES = ("plain", "stripes", "checker", "dots", "noise")
SHAPES = ("circle", "square", "triangle", "ring", "blob")
MOTIONS = ("drift", "orbit", "bounce", "pulse", "still")
CAMERAS = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down")
ATTRIBUTES = (("palette", PALETTES), ("texture", TEXTURES), ("shape", SHAPES), ("motion", MOTIONS),
              ("camera", CAMERAS))

VOCAB: tuple[str, ...] = tuple(f"{kind}:{word}" for kind, words in ATTRIBUTES for word in words)
CAPTION_LENGTH = len(ATTRIBUTES)

# Hue ranges (in turns, may wrap), saturation and value ranges of each palette.
_PALETTE_HSV = {
    "any": ((0.0, 1.0), (0.2, 1.0), (0.25, 1.0)),
    "sunset": ((-0.08, 0.12), (0.65, 1.0), (0.7, 1.0)),
    "ocean": ((0.5, 0.66), (0.5, 1.0), (0.4, 0.95)),
    "forest": ((0.22, 0.40), (0.4, 0.9), (0.25, 0.8)),
    "mono": ((0.0, 1.0), (0.0, 0.05), (0.1, 1.0)),
}

DOMAIN_STYLE = {"palette": "sunset", "texture": "stripes", "shape": "blob", "motion": "orbit", "camera": "pan_right"}


@dataclass
class SyntheticClips:
    """A batch of clips: ``video [N, 3, T, H, W]`` in 0..1, caption ``tokens [N, L]`` (ids into
    :data:`VOCAB`), readable ``captions`` and the ``distribution`` they were drawn from."""

    video: torch.Tensor
    tokens: torch.Tensor
    captions: list[str]
    distribution: str

    def context(self, dim: int, seed: int = 0) -> torch.Tensor:
        """Text-like features ``[N, L, dim]`` of the captions (see :func:`caption_context`)."""
        return caption_context(self.tokens, dim, seed)


def caption_context(tokens: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    """Deterministic text-encoder stand-in: ``[N, L]`` token ids -> ``[N, L, dim]`` features.

    Each vocabulary word gets a fixed unit-variance random vector (seeded by ``seed``), plus a small
    sinusoidal position code, so the same caption always maps to the same features.
    """
    g = torch.Generator().manual_seed(10_007 + seed)
    table = torch.randn(len(VOCAB), dim, generator=g)
    pos = torch.arange(tokens.shape[1], dtype=torch.float32)[:, None]
    freqs = torch.exp(-math.log(100.0) * torch.arange(dim, dtype=torch.float32) / max(dim, 1))
    code = 0.1 * torch.sin(pos * freqs[None] + (torch.arange(dim) % 2) * (math.pi / 2))
    return table[tokens.long()] + code[None]


def _u(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _choice(g: torch.Generator, options) -> str:
    return options[int(torch.randint(len(options), (), generator=g))]


def _hsv_to_rgb(h: float, s: float, v: float) -> torch.Tensor:
    h = h % 1.0
    k = torch.tensor([5.0, 3.0, 1.0])
    kk = (k + h * 6.0) % 6.0
    return v - v * s * torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)


def _palette_colour(g: torch.Generator, palette: str) -> torch.Tensor:
    (h0, h1), (s0, s1), (v0, v1) = _PALETTE_HSV[palette]
    return _hsv_to_rgb(_u(g, h0, h1), _u(g, s0, s1), _u(g, v0, v1))


def _texture(kind: str, lx: torch.Tensor, ly: torch.Tensor, freq: float, angle: float,
             noise: torch.Tensor) -> torch.Tensor:
    """Brightness pattern in 0.45..1 from local coordinates (so the texture moves with its owner)."""
    if kind == "plain":
        return torch.ones_like(lx)
    ca, sa = math.cos(angle), math.sin(angle)
    u = ca * lx + sa * ly
    v = -sa * lx + ca * ly
    if kind == "stripes":
        p = 0.5 + 0.5 * torch.tanh(4.0 * torch.sin(2 * math.pi * freq * u))
    elif kind == "checker":
        p = 0.5 + 0.5 * torch.tanh(4.0 * torch.sin(2 * math.pi * freq * u) * torch.sin(2 * math.pi * freq * v))
    elif kind == "dots":
        fu = torch.frac(u * freq) - 0.5
        fv = torch.frac(v * freq) - 0.5
        p = torch.sigmoid((0.3 - torch.sqrt(fu * fu + fv * fv)) * 30.0)
    elif kind == "noise":
        # bilinear lookup into a small fixed random field, tiled
        grid = torch.stack([torch.remainder(u * freq / 4.0, 2.0) - 1.0, torch.remainder(v * freq / 4.0, 2.0) - 1.0], -1)
        p = F.grid_sample(noise[None, None].expand(1, 1, -1, -1), grid.reshape(1, -1, 1, 2),
                          mode="bilinear", padding_mode="reflection", align_corners=False).reshape(lx.shape)
    else:
        raise ValueError(f"unknown texture '{kind}'")
    return 0.45 + 0.55 * p


def _sdf(shape: str, qx: torch.Tensor, qy: torch.Tensor, r: float, wobble: float, lobes: int,
         phase: float) -> torch.Tensor:
    """Signed distance (negative inside) of a shape of radius ``r`` centred at the origin."""
    if shape in ("circle", "blob"):
        rad = torch.sqrt(qx * qx + qy * qy)
        if shape == "blob":
            ang = torch.atan2(qy, qx)
            r = r * (1.0 + wobble * torch.sin(lobes * ang + phase))
        return rad - r
    if shape == "ring":
        rad = torch.sqrt(qx * qx + qy * qy)
        return (rad - r).abs() - 0.3 * r
    if shape == "square":
        return torch.maximum(qx.abs(), qy.abs()) - 0.85 * r
    if shape == "triangle":
        d = None
        for k in range(3):
            a = 2 * math.pi * k / 3 + math.pi / 2
            e = qx * math.cos(a) + qy * math.sin(a) - 0.5 * r
            d = e if d is None else torch.maximum(d, e)
        return d
    raise ValueError(f"unknown shape '{shape}'")


def _sample_style(g: torch.Generator, distribution: str) -> dict[str, str]:
    if distribution == "domain":
        return dict(DOMAIN_STYLE)
    if distribution == "internet":
        return {kind: _choice(g, words) for kind, words in ATTRIBUTES}
    raise ValueError(f"unknown distribution '{distribution}'; use 'internet' or 'domain'")


def _render_clip(g: torch.Generator, style: dict[str, str], distribution: str, frames: int, size: int) -> torch.Tensor:
    domain = distribution == "domain"
    t = torch.arange(frames, dtype=torch.float32)[:, None, None] / max(frames - 1, 1)  # [T,1,1] in 0..1
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    xs = (xs + 0.5) / size
    ys = (ys + 0.5) / size
    pix = 1.0 / size

    # camera: global translation of the whole scene
    speed = _u(g, 0.15, 0.3) if domain else _u(g, 0.1, 0.45)
    cam = {"static": (0.0, 0.0), "pan_left": (-speed, 0.0), "pan_right": (speed, 0.0),
           "tilt_up": (0.0, -speed), "tilt_down": (0.0, speed)}[style["camera"]]
    wx = xs[None] + cam[0] * t  # world coordinates seen by each pixel, [T, H, W]
    wy = ys[None] + cam[1] * t

    noise = torch.rand(8, 8, generator=g)
    palette = style["palette"]
    bg0, bg1 = _palette_colour(g, palette), _palette_colour(g, palette)
    if domain:
        bg0, bg1 = bg0 * 0.45, bg1 * 0.6  # dusky background, bright shapes
    bg_angle = _u(g, 0, 2 * math.pi)
    ramp = (0.5 + 0.5 * torch.sin(2 * math.pi * (math.cos(bg_angle) * wx + math.sin(bg_angle) * wy) * 0.5))
    bg_tex_kind = "stripes" if domain else _choice(g, TEXTURES)
    bg_tex = _texture(bg_tex_kind, wx, wy, _u(g, 2.0, 4.0), _u(g, 0, math.pi), noise)
    img = (bg0[:, None, None, None] * (1 - ramp) + bg1[:, None, None, None] * ramp) * (0.7 + 0.3 * bg_tex)[None]

    n_shapes = int(torch.randint(2, 4, (), generator=g)) if domain else int(torch.randint(1, 5, (), generator=g))
    for _ in range(n_shapes):
        shape = style["shape"] if domain else _choice(g, SHAPES)
        texture = style["texture"] if domain else _choice(g, TEXTURES)
        motion = style["motion"]
        colour = _palette_colour(g, palette)
        r = _u(g, 0.1, 0.2)
        cx0, cy0 = _u(g, 0.2, 0.8), _u(g, 0.2, 0.8)
        vx, vy = _u(g, -0.4, 0.4), _u(g, -0.4, 0.4)
        orbit_r, omega, ph = _u(g, 0.08, 0.2), _u(g, 1.0, 2.5) * (1 if domain else (-1) ** int(_u(g) < 0.5)), _u(g, 0, 2 * math.pi)
        if motion == "drift":
            cx, cy, scale = cx0 + vx * t, cy0 + vy * t, torch.ones_like(t)
        elif motion == "orbit":
            ang = ph + 2 * math.pi * omega * t * 0.5
            cx, cy, scale = cx0 + orbit_r * torch.cos(ang), cy0 + orbit_r * torch.sin(ang), torch.ones_like(t)
        elif motion == "bounce":
            cx = cx0 + vx * t
            cy = cy0 - 0.3 * torch.abs(torch.sin(math.pi * (2 * t + ph)))
            scale = torch.ones_like(t)
        elif motion == "pulse":
            cx, cy = cx0 + 0 * t, cy0 + 0 * t
            scale = 1.0 + 0.4 * torch.sin(2 * math.pi * t + ph)
        else:  # still
            cx, cy, scale = cx0 + 0 * t, cy0 + 0 * t, torch.ones_like(t)
        rot = _u(g, 0, 2 * math.pi) + _u(g, -2.0, 2.0) * t
        qx = wx - cx
        qy = wy - cy
        cr, sr = torch.cos(rot), torch.sin(rot)
        lx = (cr * qx + sr * qy) / scale
        ly = (-sr * qx + cr * qy) / scale
        wobble = _u(g, 0.15, 0.3) if shape == "blob" else 0.0
        lobes = int(torch.randint(3, 6, (), generator=g))
        phase = 2 * math.pi * _u(g, 0.5, 1.5)
        d = torch.stack([_sdf(shape, lx[i], ly[i], r, wobble, lobes, phase * float(t[i])) for i in range(frames)])
        mask = torch.clamp(0.5 - d * scale / pix, 0.0, 1.0)  # ~1 pixel anti-aliased edge
        tex = _texture(texture, lx / r, ly / r, _u(g, 1.0, 2.0), _u(g, 0, math.pi), noise)
        fill = colour[:, None, None, None] * tex[None]
        img = img * (1 - mask[None]) + fill * mask[None]
    return img.clamp(0.0, 1.0)


def make_clips(n: int, distribution: str = "internet", seed: int = 0, frames: int = 8,
               size: int = 32) -> SyntheticClips:
    """``n`` clips ``[n, 3, frames, size, size]`` in 0..1 from ``distribution`` ("internet" or "domain").

    Deterministic: the same (n, distribution, seed, frames, size) always gives the same tensors.
    """
    if distribution not in ("internet", "domain"):
        raise ValueError(f"unknown distribution '{distribution}'; use 'internet' or 'domain'")
    g = torch.Generator().manual_seed(int(seed) * 2 + (distribution == "domain"))
    videos, tokens, captions = [], [], []
    for _ in range(n):
        style = _sample_style(g, distribution)
        videos.append(_render_clip(g, style, distribution, frames, size))
        tokens.append([VOCAB.index(f"{kind}:{style[kind]}") for kind, _ in ATTRIBUTES])
        captions.append(", ".join(style[kind].replace("_", " ") for kind, _ in ATTRIBUTES))
    return SyntheticClips(torch.stack(videos), torch.tensor(tokens, dtype=torch.long), captions, distribution)


def parse_caption(text: str) -> torch.Tensor:
    """A caption in the synthetic vocabulary -> token ids ``[1, L]`` (the order of :data:`ATTRIBUTES`).

    The text must name exactly one word of each attribute, in any order and with any filler words, for
    example ``"sunset stripes blob, orbit, pan right"``. Multi-word values may use spaces, ``_`` or ``-``.
    Raises ``ValueError`` saying which attribute is missing or ambiguous and which words it accepts.
    """
    norm = " " + " ".join(text.lower().replace("_", " ").replace("-", " ").replace(",", " ").split()) + " "
    ids, problems = [], []
    for kind, words in ATTRIBUTES:
        found = [w for w in words if f" {w.replace('_', ' ')} " in norm]
        if len(found) == 1:
            ids.append(VOCAB.index(f"{kind}:{found[0]}"))
        else:
            options = ", ".join(w.replace("_", " ") for w in words)
            what = "names none" if not found else f"names several ({', '.join(found)})"
            problems.append(f"{kind} {what}; use one of: {options}")
    if problems:
        raise ValueError("the caption must name one word per attribute: " + "; ".join(problems))
    return torch.tensor([ids], dtype=torch.long)


def domain_caption_text() -> str:
    """The caption of the narrow "domain" style, in the words :func:`parse_caption` reads."""
    return ", ".join(DOMAIN_STYLE[kind].replace("_", " ") for kind, _ in ATTRIBUTES)


class ToyLatentCodec:
    """Stand-in for a video VAE (tests and benchmarks only; it is NOT a learned autoencoder).

    ``encode``: pixels ``[N, 3, T, H, W]`` in 0..1 -> latents ``[N, C, T, H/pool, W/pool]``: average-pool
    ``pool`` x ``pool``, centre to -1..1, then a fixed random projection ``3 -> C`` with orthonormal
    columns (for C >= 3), scaled by sqrt(C / 3) so each latent channel has roughly the pixels' scale.
    ``decode``: the pseudo-inverse projection, then nearest-neighbour upsampling. Decoding an encoding
    returns the pooled video exactly (up to float rounding) when C >= 3.
    """

    def __init__(self, latent_channels: int, seed: int = 0, pool: int = 4):
        self.latent_channels = int(latent_channels)
        self.pool = int(pool)
        g = torch.Generator().manual_seed(7919 + seed)
        n = max(self.latent_channels, 3)
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        proj = q[: self.latent_channels, :3] if self.latent_channels < 3 else q[:, :3]
        self.gain = math.sqrt(self.latent_channels / 3.0)
        self.proj = (proj * self.gain).float()                     # [C, 3]
        self.unproj = torch.linalg.pinv(proj * self.gain).float()  # [3, C]

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = video.shape
        if c != 3:
            raise ValueError(f"expected RGB video [N, 3, T, H, W], got {tuple(video.shape)}")
        pooled = F.avg_pool3d(video.float(), kernel_size=(1, self.pool, self.pool))
        return torch.einsum("kc,nc...->nk...", self.proj, pooled * 2.0 - 1.0)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.shape[1] != self.latent_channels:
            raise ValueError(f"expected {self.latent_channels} latent channels, got {latents.shape[1]}")
        rgb = torch.einsum("ck,nk...->nc...", self.unproj, latents.float()) * 0.5 + 0.5
        return F.interpolate(rgb, scale_factor=(1, self.pool, self.pool), mode="nearest")


def clip_statistics(video: torch.Tensor) -> dict[str, float]:
    """Simple summary statistics of ``[N, 3, T, H, W]`` clips used to tell distributions apart:
    mean colour, warmth (red minus blue), spread of per-clip mean colours, and temporal change."""
    per_clip = video.mean(dim=(2, 3, 4))  # [N, 3]
    return {
        "mean_r": float(per_clip[:, 0].mean()), "mean_g": float(per_clip[:, 1].mean()),
        "mean_b": float(per_clip[:, 2].mean()),
        "warmth": float((per_clip[:, 0] - per_clip[:, 2]).mean()),
        "colour_spread": float(per_clip.std(dim=0).mean()),
        "temporal_change": float((video[:, :, 1:] - video[:, :, :-1]).abs().mean()),
    }


# The pack's synthetic latent space (family "synthetic" in adapters/domain_model.py): 16 channels like Wan 2.1,
# 8x8 spatial compression (a lapped PCA patch code, see PatchCodec below), 32-d caption features. The shipped tiny demo
# pair and the Table-1 miniature use it.
SYNTHETIC_LATENT_CHANNELS = 16
SYNTHETIC_TEXT_DIM = 32


def synthetic_codec() -> "PatchCodec":
    """The fixed codec of the synthetic latent space (the same numbers on every machine: read from
    ``adapters/weights/synthetic_patch_codec.safetensors``, fitted once by :func:`fit_patch_codec`)."""
    global _CODEC
    if _CODEC is None:
        _CODEC = load_patch_codec() if os.path.isfile(PATCH_CODEC_FILE) else fit_patch_codec()
    return _CODEC


_CODEC = None


# ----------------------------------------------------------------------------------------------------
# The 64 x 64 miniature: domain styles, a broad set with unreliable style captions, and a patch code.
#
# The Table-1 miniature (benchmarks/table1_miniature.py) and the shipped demo pair live here. The broad set
# is meant to teach a prior clean shapes and motion: its captions name shape, motion and camera truthfully, but the
# palette and texture words are drawn at random, independent of the clip (a web captioner rarely describes
# an artist's style), so a prior trained on it learns to ignore them. A domain style fixes all five
# attributes; a small model trained on a few of its clips learns what the style words mean.

DOMAIN_STYLES: dict[str, dict[str, str]] = {
    "sunset": dict(DOMAIN_STYLE),
    "ocean": {"palette": "ocean", "texture": "checker", "shape": "square", "motion": "bounce", "camera": "static"},
    "forest": {"palette": "forest", "texture": "dots", "shape": "ring", "motion": "drift", "camera": "tilt_up"},
}
MINIATURE_FRAMES = 8
MINIATURE_SIZE = 64


def style_caption_text(style: str) -> str:
    """The caption of domain style ``style`` in the words :func:`parse_caption` reads."""
    s = DOMAIN_STYLES[style]
    return ", ".join(s[kind].replace("_", " ") for kind, _ in ATTRIBUTES)


def style_tokens(style: str, n: int = 1) -> torch.Tensor:
    """Token ids ``[n, L]`` of domain style ``style``'s caption."""
    s = DOMAIN_STYLES[style]
    return torch.tensor([[VOCAB.index(f"{k}:{s[k]}") for k, _ in ATTRIBUTES]] * n, dtype=torch.long)


def _render_scene(g: torch.Generator, style: dict[str, str], domain: bool, frames: int, size: int) -> torch.Tensor:
    """One clip of the miniature: a smooth two-colour background and one or two textured shapes that
    move rigidly (the style's motion), seen by a camera that may pan or tilt. ``[3, T, size, size]``."""
    t = torch.arange(frames, dtype=torch.float32)[:, None, None] / max(frames - 1, 1)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    xs, ys, pix = (xs + 0.5) / size, (ys + 0.5) / size, 1.0 / size
    speed = _u(g, 0.15, 0.25) if domain else _u(g, 0.1, 0.3)
    cam = {"static": (0.0, 0.0), "pan_left": (-speed, 0.0), "pan_right": (speed, 0.0),
           "tilt_up": (0.0, -speed), "tilt_down": (0.0, speed)}[style["camera"]]
    wx, wy = xs[None] + cam[0] * t, ys[None] + cam[1] * t
    palette = style["palette"]
    bg0, bg1 = _palette_colour(g, palette), _palette_colour(g, palette)
    dim = (0.35, 0.55) if domain else (_u(g, 0.3, 0.9), _u(g, 0.3, 0.9))
    angle = _u(g, 0, 2 * math.pi)
    ramp = 0.5 + 0.5 * torch.sin(2 * math.pi * 0.5 * (math.cos(angle) * wx + math.sin(angle) * wy))
    img = bg0[:, None, None, None] * dim[0] * (1 - ramp) + bg1[:, None, None, None] * dim[1] * ramp
    noise = torch.rand(8, 8, generator=g)
    n_shapes = int(torch.randint(1, 3, (), generator=g))
    for _ in range(n_shapes):
        shape = style["shape"]  # every shape of a clip is the captioned one (broad captions name it truthfully)
        texture = style["texture"] if domain else _choice(g, TEXTURES)
        colour = _palette_colour(g, palette)
        if domain:
            colour = 0.35 + 0.65 * colour  # bright shapes on a dusky background
        r = _u(g, 0.15, 0.24)
        cx0, cy0 = _u(g, 0.3, 0.7), _u(g, 0.3, 0.7)
        vx, vy = _u(g, -0.3, 0.3), _u(g, -0.3, 0.3)
        orbit_r, ph = _u(g, 0.08, 0.16), _u(g, 0, 2 * math.pi)
        omega = _u(g, 0.6, 1.0) * (1 if domain else (-1) ** int(_u(g) < 0.5))
        motion = style["motion"]
        scale = torch.ones_like(t)
        if motion == "drift":
            cx, cy = cx0 + vx * t, cy0 + vy * t
        elif motion == "orbit":
            ang = ph + 2 * math.pi * omega * t
            cx, cy = cx0 + orbit_r * torch.cos(ang), cy0 + orbit_r * torch.sin(ang)
        elif motion == "bounce":
            cx, cy = cx0 + 0.5 * vx * t, cy0 + 0.1 - 0.25 * torch.abs(torch.sin(math.pi * (1.5 * t + ph)))
        elif motion == "pulse":
            cx, cy = cx0 + 0 * t, cy0 + 0 * t
            scale = 1.0 + 0.3 * torch.sin(2 * math.pi * t + ph)
        else:  # still
            cx, cy = cx0 + 0 * t, cy0 + 0 * t
        rot = _u(g, 0, 2 * math.pi) + _u(g, -1.0, 1.0) * t
        qx, qy = wx - cx, wy - cy
        cr, sr = torch.cos(rot), torch.sin(rot)
        lx, ly = (cr * qx + sr * qy) / scale, (-sr * qx + cr * qy) / scale
        wobble = _u(g, 0.15, 0.25) if shape == "blob" else 0.0
        lobes = int(torch.randint(3, 5, (), generator=g))
        d = torch.stack([_sdf(shape, lx[i], ly[i], r, wobble, lobes, 0.0) for i in range(frames)])
        mask = torch.clamp(0.5 - d * scale / pix, 0.0, 1.0)
        tex = _texture(texture, lx / r, ly / r, _u(g, 0.9, 1.3), _u(g, 0, math.pi), noise)
        img = img * (1 - mask[None]) + colour[:, None, None, None] * tex[None] * mask[None]
    return img.clamp(0.0, 1.0)


def make_style_clips(n: int, style: str, seed: int = 0, frames: int = MINIATURE_FRAMES,
                     size: int = MINIATURE_SIZE) -> SyntheticClips:
    """``n`` clips of a domain style (a key of :data:`DOMAIN_STYLES`) or of the broad set (``"broad"``).

    Broad clips: any palette, texture, shape, motion and camera; their captions name the true shape,
    motion and camera and a random palette and texture (see the section comment). Domain clips: the style's
    five attributes, a dusky background, one or two bright shapes; only positions, phases, speeds and
    colours within the palette vary. Deterministic in (n, style, seed, frames, size).
    """
    if style != "broad" and style not in DOMAIN_STYLES:
        raise ValueError(f"unknown style '{style}'; use 'broad' or one of {', '.join(DOMAIN_STYLES)}")
    index = 1 + list(DOMAIN_STYLES).index(style) if style in DOMAIN_STYLES else 0
    g = torch.Generator().manual_seed(1_000_003 * index + int(seed) * 7 + 11)
    videos, tokens, captions = [], [], []
    for _ in range(n):
        if style == "broad":
            look = _sample_style(g, "internet")
            said = dict(look, palette=_choice(g, PALETTES), texture=_choice(g, TEXTURES))
        else:
            look = said = DOMAIN_STYLES[style]
        videos.append(_render_scene(g, look, style != "broad", frames, size))
        tokens.append([VOCAB.index(f"{kind}:{said[kind]}") for kind, _ in ATTRIBUTES])
        captions.append(", ".join(said[kind].replace("_", " ") for kind, _ in ATTRIBUTES))
    return SyntheticClips(torch.stack(videos), torch.tensor(tokens, dtype=torch.long), captions, style)


class PatchCodec:
    """A linear patch code: each ``pool`` x ``pool`` cell of RGB (in -1..1) <-> ``latent_channels`` numbers.

    ``basis`` ``[3 * window * window, C]`` holds orthonormal directions (a PCA of the miniature's patches: the
    first is close to the mean colour, the rest carry edges, stripes and dots); ``scale`` ``[C]`` divides the
    coefficients (unit overall scale over the fitted clips, fine-detail channels smaller than colour ones, as
    in a VAE's latents).

    With ``window == pool`` (the first version of the code) each cell is coded on its own, like a block
    transform: decoding is the exact transpose, but what a cell's C numbers cannot hold shows as a seam at
    every cell edge, even on real clips. With ``window == 2 * pool`` (the shipped code) the code is lapped:
    a cell's numbers describe the 2 x 2-cell window centred on it, seen through a sine taper, and decoding
    adds the tapered windows back up, divided by the tapers' overlap (edges are reflected on encoding). Neighbouring
    cells blend over a whole cell instead of meeting at an edge, as a VAE's convolutional decoder blends.
    Linear with no offset either way, so ``unproj @ z`` (``unproj`` ``[3, C]``) is a cell's mean colour,
    which ComfyUI's preview colours use.
    """

    def __init__(self, basis: torch.Tensor, scale: torch.Tensor, pool: int, window: int | None = None):
        self.pool = int(pool)
        self.window = self.pool if window is None else int(window)
        self.basis = basis.float()                       # [3*k*k, C]
        self.scale = scale.float()                       # [C]
        self.latent_channels = int(basis.shape[1])
        k = self.window
        if k not in (self.pool, 2 * self.pool):
            raise ValueError(f"window {k} must be the cell size {pool} or twice it")
        if basis.shape[0] != 3 * k * k:
            raise ValueError(f"basis has {basis.shape[0]} rows; a {k}x{k} RGB window has {3 * k * k}")
        i = torch.arange(k, dtype=torch.float64)
        taper = torch.sin(math.pi * (i + 0.5) / k) if k != self.pool else torch.ones(k, dtype=torch.float64)
        self.taper = (taper[:, None] * taper[None, :]).float()                      # [k, k]
        # [C, 3, k, k]: the tapered directions, applied by a strided convolution and its transpose
        self.kernel = self.basis.T.reshape(-1, 3, k, k) * self.taper
        # [3, C]: the mean colour a unit coefficient adds to a cell inside the frame (every tapered window's
        # pixels land once in some cell, so the sum over the window over the cell's area)
        self.unproj = ((self.kernel * self.scale[:, None, None, None]).sum((2, 3)).T / self.pool ** 2).contiguous()

    @property
    def lapped(self) -> bool:
        return self.window != self.pool

    def _frames(self, video: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = video.shape
        p = self.pool
        if c != 3 or h % p or w % p:
            raise ValueError(f"expected RGB video [N, 3, T, H, W] with H, W multiples of {p}, got {tuple(video.shape)}")
        return (video.float() * 2.0 - 1.0).permute(0, 2, 1, 3, 4).reshape(n * t, 3, h, w)

    def _padded_frames(self, video: torch.Tensor) -> torch.Tensor:
        """Frames ``[N * T, 3, H, W]`` in -1..1, edges reflected by half the window's overhang when lapped."""
        x = self._frames(video)
        return F.pad(x, ((self.window - self.pool) // 2,) * 4, mode="reflect") if self.lapped else x

    def _windows(self, video: torch.Tensor) -> torch.Tensor:
        """The tapered ``window`` x ``window`` patches around every cell, ``[N * T * cells, 3 * k * k]``."""
        k, p = self.window, self.pool
        patches = F.unfold(self._padded_frames(video), k, stride=p) * self.taper.reshape(1, 1, -1).repeat(1, 3, 1).reshape(1, -1, 1)
        return patches.permute(0, 2, 1).reshape(-1, 3 * k * k)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``[N, 3, T, H, W]`` in 0..1 -> ``[N, C, T, H / pool, W / pool]``."""
        n, _, t, h, w = video.shape
        p = self.pool
        z = F.conv2d(self._padded_frames(video), self.kernel, stride=p) / self.scale[None, :, None, None]
        return z.reshape(n, t, -1, h // p, w // p).permute(0, 2, 1, 3, 4)

    def _decode_linear(self, latents: torch.Tensor) -> torch.Tensor:
        n, c, t, gh, gw = latents.shape
        k, p = self.window, self.pool
        z = latents.float().permute(0, 2, 1, 3, 4).reshape(n * t, c, gh, gw) * self.scale[None, :, None, None]
        x = F.conv_transpose2d(z, self.kernel, stride=p)
        if self.lapped:
            cover = F.conv_transpose2d(torch.ones(1, 1, gh, gw), (self.taper ** 2)[None, None], stride=p)
            m = (k - p) // 2
            x = (x / cover)[..., m:m + gh * p, m:m + gw * p]
        return x.reshape(n, t, 3, gh * p, gw * p).permute(0, 2, 1, 3, 4)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[N, C, T, h, w]`` -> RGB ``[N, 3, T, h * pool, w * pool]``, clamped to 0..1."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"expected video latents [N, {self.latent_channels}, T, h, w], got shape "
                             f"{tuple(latents.shape)}")
        return (self._decode_linear(latents) * 0.5 + 0.5).clamp(0.0, 1.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"basis": self.basis.contiguous(), "scale": self.scale.contiguous()}


def principal_directions(x: torch.Tensor, channels: int) -> torch.Tensor:
    """The ``channels`` leading eigenvectors ``[D, channels]`` of the second moment of the rows of ``x [N, D]``
    (centre ``x`` first for a PCA), largest first, each with a fixed sign (positive sum)."""
    w, v = torch.linalg.eigh(x.T @ x / x.shape[0])
    basis = v[:, torch.argsort(w, descending=True)[:channels]]
    return basis * torch.sign(basis.sum(0, keepdim=True) + 1e-12)


def fit_patch_codec(channels: int = 16, pool: int = 8, clips_per_set: int = 48, seed: int = 0,
                    power: float = 0.0, window: int | None = None) -> PatchCodec:
    """Fit :class:`PatchCodec` to broad and domain-style clips (uncentred PCA of their tapered windows);
    ``window`` defaults to the lapped code's ``2 * pool``."""
    window = 2 * pool if window is None else window
    parts = [make_style_clips(2 * clips_per_set, "broad", seed=seed + 500, frames=4)]
    parts += [make_style_clips(clips_per_set, s, seed=seed + 500, frames=4) for s in DOMAIN_STYLES]
    identity = PatchCodec(torch.eye(3 * window * window), torch.ones(3 * window * window), pool, window)
    x = torch.cat([identity._windows(p.video) for p in parts]).double()
    basis = principal_directions(x, channels)
    # each coefficient divided by its RMS to the power ``power`` and one global factor for unit overall scale;
    # the default 0 keeps the PCA's own proportions (fine detail small, colour large), which tiny models
    # learn to denoise far faster than standardised channels (measured in benchmarks/table1_miniature.py)
    rms = (x @ basis).pow(2).mean(0).sqrt()
    scale = rms.pow(power)
    scale = scale * ((x @ basis / scale).pow(2).mean().sqrt())
    return PatchCodec(basis.float(), scale.float(), pool, window)


PATCH_CODEC_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "synthetic_patch_codec.safetensors")


def load_patch_codec(path: str = PATCH_CODEC_FILE) -> PatchCodec:
    from .files import load_tensors

    tensors, meta = load_tensors(path, expect_kind="latent_codec")
    return PatchCodec(tensors["basis"], tensors["scale"], int(meta["pool"]), int(meta.get("window", meta["pool"])))


def save_patch_codec(codec: PatchCodec, path: str = PATCH_CODEC_FILE) -> None:
    from .files import save_tensors

    save_tensors(path, codec.state_dict(), {"kind": "latent_codec", "family": "synthetic", "pool": codec.pool,
                                            "window": codec.window, "version": 1 if codec.window == codec.pool else 2,
                                            "latent_channels": codec.latent_channels,
                                            "made_by": "adapters.synthetic_video.fit_patch_codec"})
