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
# 4x4 spatial pooling, 32-d caption features. The shipped tiny demo models and the Table-1 miniature use it.
SYNTHETIC_LATENT_CHANNELS = 16
SYNTHETIC_TEXT_DIM = 32
SYNTHETIC_POOL = 4


def synthetic_codec() -> ToyLatentCodec:
    """The fixed codec of the synthetic latent space (the same numbers on every machine)."""
    return ToyLatentCodec(SYNTHETIC_LATENT_CHANNELS, seed=0, pool=SYNTHETIC_POOL)
