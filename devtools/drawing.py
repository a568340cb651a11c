"""Does a miniature model draw? Measurements on decoded clips of the Video Adapter miniature (64 x 64, 8 frames,
the synthetic patch code), shared by the Table-1 benchmark, the prior's training tool and the tests.

* :func:`features` / :class:`Scorer`: the 24 per-clip features (style, shape integrity, motion realism) and the
  Frechet distance to held-out clips, with each feature standardised by the held-out clips' spread, and the same
  distance between two held-out sets (the noise floor).
* :func:`mosaic_ratio`: mean absolute difference between neighbouring pixels across the model's token-patch
  boundaries, divided by the same inside the patches. Clean clips sit near 1 (the code's cells join smoothly);
  a model that draws each token on its own leaves a visible grid (ratios of 5 and more in the first, block
  version of the code). The lapped code's decoder blends neighbouring cells, so its frames stay near 1 whatever
  the latents; :func:`latent_roughness` then measures the same disagreement on the latent grid itself.
* :class:`ShapeJudge`: a small convolutional classifier of the shape word (circle, square, triangle, ring, blob),
  trained on frames of real broad clips; its accuracy on real held-out clips is the ceiling that generated clips
  are compared with.
* :func:`outline_accuracy`: the renderer's own shape test. Each frame's largest region standing out of a fitted
  smooth background is matched against every shape word drawn by the renderer's signed distance (rotations and
  radii searched); a frame passes when its captioned shape fits best with an IoU of at least 0.6. It reads the
  silhouette, not the fill: a compact cluster whose silhouette is ragged or of another shape fails it while
  the judge, which reads the coarse layout, may pass it.
* :func:`prior_gates`: all of them for a prior sampled from held-out broad captions, before any composition.

    python -m devtools.drawing --prior path/to/prior.safetensors [--samples 48]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from adapters.synthetic_video import SHAPES, SYNTHETIC_TEXT_DIM, VOCAB, make_style_clips, synthetic_codec
from devtools.metrics import frechet_distance

GATE_FD_FLOOR_MULTIPLE = 5.0
GATE_MOSAIC = 1.5
JUDGE_VERSION = 2  # bump when the judge's recipe, the broad clips or the latent code change

# ----------------------------------------------------------------------------------------------------
# features and the Frechet distance


def features(rgb: torch.Tensor) -> np.ndarray:
    """Per-clip features ``[N, 24]`` of RGB clips ``[N, 3, T, H, W]`` in 0..1."""
    v = rgb.float().clamp(0, 1)
    n = v.shape[0]
    f = []
    mean = v.mean(dim=(2, 3, 4))
    f += [mean, v.std(dim=(2, 3, 4))]                                    # 6
    f.append((mean[:, 0] - mean[:, 2])[:, None])                         # warmth
    f.append((v.amax(1) - v.amin(1)).mean(dim=(1, 2, 3))[:, None])        # saturation
    luma = 0.299 * v[:, 0] + 0.587 * v[:, 1] + 0.114 * v[:, 2]           # [N, T, H, W]
    f.append(torch.quantile(luma.reshape(n, -1), 0.9, dim=1)[:, None])   # bright decile
    dx = (luma[..., :, 1:] - luma[..., :, :-1])[..., :-1, :]
    dy = (luma[..., 1:, :] - luma[..., :-1, :])[..., :, :-1]
    gx, gy = dx.abs().mean(dim=(1, 2, 3)), dy.abs().mean(dim=(1, 2, 3))
    lap = (4 * luma[..., 1:-1, 1:-1] - luma[..., :-2, 1:-1] - luma[..., 2:, 1:-1] - luma[..., 1:-1, :-2]
           - luma[..., 1:-1, 2:]).pow(2).mean(dim=(1, 2, 3))
    c = luma - luma.mean(dim=(2, 3), keepdim=True)
    var = c.pow(2).mean(dim=(1, 2, 3)) + 1e-6
    ac1 = (c[..., :, 1:] * c[..., :, :-1]).mean(dim=(1, 2, 3)) / var
    f += [gx[:, None], gy[:, None], ((gx + 1e-4) / (gy + 1e-4)).log()[:, None], lap.sqrt()[:, None], ac1[:, None]]
    # shape integrity: clean shapes have few, strong edges; broken ones have many weak ones that come and go
    mag = (dx * dx + dy * dy).sqrt()                                     # [N, T, H-1, W-1]
    strong = (mag > 0.08).float().mean(dim=(2, 3))                       # [N, T]
    f.append(strong.mean(1, keepdim=True))
    f.append((mag.reshape(n, -1).quantile(0.98, dim=1) / (mag.mean(dim=(1, 2, 3)) + 1e-4))[:, None])  # peakiness
    f.append((strong[:, 1:] - strong[:, :-1]).abs().mean(1, keepdim=True) / (strong.mean(1, keepdim=True) + 1e-3))
    # motion realism
    d1 = luma[:, 1:] - luma[:, :-1]
    d = d1.abs().mean(dim=(2, 3))                                        # [N, T-1]
    f += [d.mean(1, keepdim=True), (d.std(1) / (d.mean(1) + 1e-4))[:, None]]
    bright = luma.mean(dim=(2, 3))
    f.append((bright[:, 1:] - bright[:, :-1]).abs().mean(1, keepdim=True))  # flicker
    d2 = (luma[:, 2:] - 2 * luma[:, 1:-1] + luma[:, :-2]).abs().mean(dim=(1, 2, 3))
    f.append((d2 / (d.mean(1) + 1e-4))[:, None])                          # acceleration ratio
    a, b = c[:, :-1], c[:, 1:]
    f.append(((a * b).mean(dim=(1, 2, 3)) / var)[:, None])

    def err(sx, sy):
        sa = torch.roll(a, shifts=(sy, sx), dims=(2, 3))[..., 2:-2, 2:-2]
        return (b[..., 2:-2, 2:-2] - sa).pow(2).mean(dim=(1, 2, 3))
    f.append((err(-1, 0) - err(1, 0))[:, None])
    f.append((err(0, -1) - err(0, 1))[:, None])
    return torch.cat(f, dim=1).double().numpy()


N_FEATURES = 24


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature rows ``a`` and ``b`` (the shared metric, no ridge)."""
    return frechet_distance(torch.from_numpy(np.asarray(a)), torch.from_numpy(np.asarray(b)), ridge=0.0)


class Scorer:
    """FD of generated latents against held-out clips (features standardised by their spread); ``floor`` is
    the FD between the two held-out sets ``held_a`` and ``held_b`` (decoded RGB clips)."""

    def __init__(self, codec, held_a, held_b):
        self.codec = codec
        ref = features(held_a)
        self.scale = ref.std(0) + 1e-6
        self.ref = ref / self.scale
        self.floor = frechet(features(held_b) / self.scale, self.ref)

    def rgb(self, rgb) -> float:
        feats = features(rgb) / self.scale
        if not np.isfinite(feats).all():
            return float("inf")
        return frechet(feats, self.ref)

    def __call__(self, latents) -> float:
        return self.rgb(self.codec.decode(latents))


# ----------------------------------------------------------------------------------------------------
# the token grid


def mosaic_ratio(rgb: torch.Tensor, cell: int = 16) -> float:
    """Mean absolute difference of horizontally and vertically neighbouring pixels that straddle a boundary of
    the ``cell`` x ``cell`` grid, over the same for neighbours inside a cell; ``rgb`` ``[N, 3, T, H, W]``."""
    v = rgb.float()
    dx = (v[..., 1:] - v[..., :-1]).abs()           # pairs (x, x + 1)
    dy = (v[..., 1:, :] - v[..., :-1, :]).abs()
    across_x = (torch.arange(1, v.shape[-1]) % cell) == 0
    across_y = (torch.arange(1, v.shape[-2]) % cell) == 0
    across = torch.cat([dx[..., across_x].flatten(), dy[..., across_y, :].flatten()])
    inside = torch.cat([dx[..., ~across_x].flatten(), dy[..., ~across_y, :].flatten()])
    return float(across.mean() / inside.mean().clamp_min(1e-8))


def latent_roughness(latents: torch.Tensor) -> float:
    """Mean absolute difference of horizontally and vertically neighbouring latent cells ``[N, C, T, h, w]``.
    A prior that draws each token on its own leaves its cells disagreeing with their neighbours; the lapped
    code's decoder blends such cells, so the decoded mosaic ratio cannot see it, but this can (compare with
    the same number for real clips through the code)."""
    z = latents.float()
    return float(torch.cat([(z[..., 1:] - z[..., :-1]).abs().flatten(),
                            (z[..., 1:, :] - z[..., :-1, :]).abs().flatten()]).mean())


# ----------------------------------------------------------------------------------------------------
# the shape word


class ShapeJudge(nn.Module):
    """Frame classifier of the five shape words, trained on real broad clips (one fixed recipe, CPU, ~1 min)."""

    def __init__(self):
        super().__init__()
        ch = (3, 16, 32, 64)
        layers = []
        for a, b in zip(ch[:-1], ch[1:]):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.GELU(), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers, nn.Conv2d(64, 64, 3, padding=1), nn.GELU())
        self.head = nn.Linear(64, len(SHAPES))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] in 0..1
        return self.head(self.body(frames * 2 - 1).amax(dim=(2, 3)))

    @staticmethod
    def shape_labels(tokens: torch.Tensor) -> torch.Tensor:
        """Shape index of each caption (token ids ``[N, L]``)."""
        ids = [VOCAB.index(f"shape:{s}") for s in SHAPES]
        lab = torch.full((tokens.shape[0],), -1, dtype=torch.long)
        for i, tid in enumerate(ids):
            lab[(tokens == tid).any(1)] = i
        return lab

    @classmethod
    def trained(cls, codec=None, clips: int = 1500, steps: int = 1500, seed: int = 0) -> "ShapeJudge":
        """Trained on every frame of ``clips`` broad clips seen through the latent code (as samples are seen)."""
        codec = codec or synthetic_codec()
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        data = make_style_clips(clips, "broad", seed=9000 + seed)
        rgb = codec.decode(codec.encode(data.video))                     # [N, 3, T, H, W]
        frames = rgb.permute(0, 2, 1, 3, 4).reshape(-1, 3, rgb.shape[-2], rgb.shape[-1])
        labels = cls.shape_labels(data.tokens).repeat_interleave(rgb.shape[2])
        judge = cls()
        opt = torch.optim.AdamW(judge.parameters(), lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
        for _ in range(steps):
            idx = torch.randint(0, frames.shape[0], (64,), generator=g)
            x = frames[idx]
            flip = torch.rand(x.shape[0], generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(judge(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        return judge.eval().requires_grad_(False)

    @classmethod
    def cached(cls, codec=None) -> "ShapeJudge":
        """:meth:`trained` once per machine: kept in the cache folder (``VA_CACHE``, default
        ``~/.cache/video-adapters``), outside the repository."""
        from safetensors.torch import load_file, save_file

        folder = os.environ.get("VA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "video-adapters")
        path = os.path.join(folder, f"shape_judge_v{JUDGE_VERSION}.safetensors")
        judge = cls()
        if os.path.isfile(path):
            judge.load_state_dict(load_file(path))
            return judge.eval().requires_grad_(False)
        judge = cls.trained(codec)
        os.makedirs(folder, exist_ok=True)
        save_file({k: v.contiguous() for k, v in judge.state_dict().items()}, path)
        return judge

    @torch.no_grad()
    def accuracy(self, rgb: torch.Tensor, tokens: torch.Tensor) -> float:
        """Share of clips whose frame-averaged shape probabilities pick the captioned shape."""
        n, _, t, h, w = rgb.shape
        frames = rgb.permute(0, 2, 1, 3, 4).reshape(-1, 3, h, w).float().clamp(0, 1)
        p = torch.cat([self(frames[i:i + 256]).softmax(-1) for i in range(0, frames.shape[0], 256)])
        guess = p.reshape(n, t, -1).mean(1).argmax(-1)
        return float((guess == self.shape_labels(tokens)).float().mean())


# ----------------------------------------------------------------------------------------------------
# the outline: the renderer's own shapes fitted to the largest region that stands out of the background

OUTLINE_IOU_MIN = 0.6   # a frame's region must overlap its best captioned-shape mask at least this much
_OUTLINE_BACKGROUND = 0.12  # RGB distance from the fitted background above which a pixel belongs to an object
_OUTLINE_TURNS = 12     # rotations tried per shape, over one period of its symmetry
_OUTLINE_SCALES = (0.85, 1.0, 1.15)  # radii tried around the one that matches the region's area
_OUTLINE_MIN_AREA = 0.01  # share of the frame below which a region is a speck, not an object (the renderer's
                          # smallest object, a pulsing triangle at its smallest, covers about 0.015)


def _background_residual(frames: torch.Tensor) -> torch.Tensor:
    """RGB distance ``[B, H, W]`` of each pixel from a smooth background fitted to the frame: a quadratic
    surface per channel, refitted twice on the half of the pixels it already explains best (the renderer's
    backgrounds are a smooth two-colour ramp, its objects cover well under half of a frame)."""
    b, _, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    basis = torch.stack([torch.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], -1).reshape(-1, 6)  # [P, 6]
    pix = frames.float().reshape(b, 3, -1).transpose(1, 2)                                          # [B, P, 3]
    weight = torch.ones(b, h * w)
    for _ in range(3):
        a = basis[None] * weight[..., None]                                                          # [B, P, 6]
        coef = torch.linalg.lstsq(a.transpose(1, 2) @ basis[None].expand(b, -1, -1) + 1e-6 * torch.eye(6),
                                  a.transpose(1, 2) @ pix).solution                                 # [B, 6, 3]
        resid = (pix - basis[None] @ coef).norm(dim=-1)                                              # [B, P]
        weight = (resid <= resid.median(dim=1, keepdim=True).values).float()
    return resid.reshape(b, h, w)


def _closed(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Morphological closing of boolean masks ``[B, H, W]`` with a square of side ``2 * radius + 1``: joins
    an object's textured parts (dark stripes, dots) into one region without filling a ring's hole."""
    k = 2 * radius + 1
    grown = F.max_pool2d(mask[:, None].float(), k, 1, radius)
    return (-F.max_pool2d(-F.pad(grown, (radius,) * 4, value=1.0), k, 1, 0))[:, 0] > 0.5


def _largest_region(mask: torch.Tensor) -> torch.Tensor:
    """The largest 4-connected region of each boolean mask ``[B, H, W]`` (empty where the mask is)."""
    b, h, w = mask.shape
    lab = torch.where(mask, torch.arange(1, h * w + 1, dtype=torch.float32).reshape(1, h, w), torch.zeros(()))
    for _ in range(h * w):  # spread each region's largest label over the region
        p = F.pad(lab, (1, 1, 1, 1))
        nxt = torch.where(mask, torch.stack([lab, p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2],
                                             p[:, 1:-1, 2:]]).amax(0), torch.zeros(()))
        if torch.equal(nxt, lab):
            break
        lab = nxt
    out = torch.zeros_like(mask)
    for i in range(b):
        ids, counts = lab[i][lab[i] > 0].unique(return_counts=True)
        if ids.numel():
            out[i] = lab[i] == ids[counts.argmax()]
    return out


def _shape_masks(shape: str, cx: float, cy: float, r: float, size: int) -> torch.Tensor:
    """Masks ``[M, size, size]`` of ``shape`` at (cx, cy) in the renderer's own signed distance, over
    :data:`_OUTLINE_TURNS` rotations over its symmetry period (and both lobe counts and a middle wobble for blobs)."""
    from adapters.synthetic_video import _sdf

    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    qx, qy = (xs + 0.5) / size - cx, (ys + 0.5) / size - cy
    masks = []
    for lobes in ((3, 4) if shape == "blob" else (0,)):
        # one period of the shape's symmetry: a quarter turn for squares, a third for triangles
        period = {"square": np.pi / 2, "triangle": 2 * np.pi / 3, "blob": 2 * np.pi / max(lobes, 1)}.get(shape, 0.0)
        for rot in (period * k / _OUTLINE_TURNS for k in range(_OUTLINE_TURNS if period else 1)):
            lx, ly = np.cos(rot) * qx + np.sin(rot) * qy, -np.sin(rot) * qx + np.cos(rot) * qy
            masks.append(_sdf(shape, lx, ly, r, 0.2, lobes, 0.0) < 0)
    return torch.stack(masks)


# area of each shape's mask at radius 1 (the renderer's proportions; a blob counted as its circle)
_UNIT_AREA = {"circle": np.pi, "blob": np.pi, "ring": np.pi * (1.3 ** 2 - 0.7 ** 2), "square": 1.7 ** 2,
              "triangle": 3 * np.sqrt(3) * 0.5 ** 2}


def outline_fit(rgb: torch.Tensor) -> torch.Tensor:
    """Best intersection-over-union ``[N, T, len(SHAPES)]`` of each frame's largest object region (pixels that
    stand out of a fitted smooth background) with each shape word, drawn by the renderer's own signed distance
    at the region's centroid, over rotations and radii around the region's area. A clean shape gives a
    high value for its word and lower ones for the others; a ragged silhouette gives low values for all."""
    n, _, t, h, w = rgb.shape
    if h != w:
        raise ValueError(f"the outline test needs square frames, got {h} x {w}")
    frames = rgb.detach().float().cpu().permute(0, 2, 1, 3, 4).reshape(-1, 3, h, w).clamp(0, 1)
    resid = _background_residual(frames)
    level = torch.maximum(torch.full((frames.shape[0], 1, 1), _OUTLINE_BACKGROUND),
                          0.4 * resid.flatten(1).quantile(0.98, dim=1)[:, None, None])
    regions = _largest_region(_closed(resid > level, 2))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    out = torch.zeros(frames.shape[0], len(SHAPES))
    for i, region in enumerate(regions):
        area = float(region.sum())
        if area < _OUTLINE_MIN_AREA * h * w:
            continue  # no object found: every word's fit stays 0
        cx, cy = float((xs + 0.5)[region].mean()) / w, float((ys + 0.5)[region].mean()) / h
        for k, shape in enumerate(SHAPES):
            r0 = np.sqrt(area / _UNIT_AREA[shape]) / w
            masks = torch.cat([_shape_masks(shape, cx, cy, r0 * s, w) for s in _OUTLINE_SCALES])
            inter = (masks & region).sum((1, 2)).float()
            union = (masks | region).sum((1, 2)).float()
            out[i, k] = float((inter / union).max())
    return out.reshape(n, t, len(SHAPES))


def outline_accuracy(rgb: torch.Tensor, tokens: torch.Tensor) -> dict:
    """The renderer's shape test on decoded clips ``[N, 3, T, H, W]`` captioned by ``tokens``: ``accuracy`` is
    the share of frames whose largest region fits the captioned shape at least as well as any other word (a
    tie, as between a circle and a round blob, counts for both) and with an overlap of at least
    :data:`OUTLINE_IOU_MIN`; ``iou`` the mean overlap of that region with the captioned shape (0 where no
    object was found)."""
    fit = outline_fit(rgb)                                                   # [N, T, S]
    label = ShapeJudge.shape_labels(tokens)[:, None].expand(fit.shape[:2])  # [N, T]
    said = fit.gather(-1, label[..., None].clamp_min(0)).squeeze(-1)
    ok = (said >= fit.amax(-1)) & (said >= OUTLINE_IOU_MIN) & (label >= 0)
    return {"accuracy": float(ok.float().mean()), "iou": float(said.mean())}


# ----------------------------------------------------------------------------------------------------
# the gates of a prior


def prior_gates(prior, codec=None, samples: int = 48, steps: int = 16, cfg: float | None = None, seed: int = 0,
                judge: ShapeJudge | None = None) -> dict:
    """Sample ``prior`` from held-out broad captions (Euler, the miniature's sampler) and measure FD against
    the held-out clips (and the noise floor), the mosaic ratio, the shape judge's accuracy and the outline
    test (:func:`outline_accuracy`), beside the same
    numbers for real held-out clips seen through the code."""
    from devtools.miniature import CFG, sample

    codec = codec or synthetic_codec()
    held_a = make_style_clips(samples, "broad", seed=7000 + seed)
    held_b = make_style_clips(samples, "broad", seed=8000 + seed)
    rgb_a = codec.decode(codec.encode(held_a.video))
    rgb_b = codec.decode(codec.encode(held_b.video))
    scorer = Scorer(codec, rgb_a, rgb_b)
    judge = judge or ShapeJudge.cached(codec)
    ctx = held_a.context(SYNTHETIC_TEXT_DIM)
    g = torch.Generator().manual_seed(seed + 99)
    h = rgb_a.shape[-1] // codec.pool
    noise = torch.randn((samples, codec.latent_channels, rgb_a.shape[2], h, h), generator=g)
    cell = codec.pool * prior.config.patch_size[-1]
    with torch.no_grad():
        lat = sample(("prior", 0.0), prior, prior, noise, ctx, steps, seed=seed, cfg=CFG if cfg is None else cfg)
    rgb = codec.decode(lat)
    # the outline test needs no fitted reference, so real clips are scored on the samples' own captions
    outline, outline_real = outline_accuracy(rgb, held_a.tokens), outline_accuracy(rgb_a, held_a.tokens)
    return {
        "fd": scorer.rgb(rgb), "floor": scorer.floor, "fd_over_floor": scorer.rgb(rgb) / scorer.floor,
        "mosaic": mosaic_ratio(rgb, cell), "mosaic_real": mosaic_ratio(rgb_b, cell),
        "roughness": latent_roughness(lat) / latent_roughness(codec.encode(held_b.video)),
        "shape_accuracy": judge.accuracy(rgb, held_a.tokens), "shape_accuracy_real": judge.accuracy(rgb_b, held_b.tokens),
        "outline": outline["accuracy"], "outline_real": outline_real["accuracy"],
        "outline_iou": outline["iou"], "outline_iou_real": outline_real["iou"],
        "samples": samples, "steps": steps, "cfg": CFG if cfg is None else cfg, "seed": seed,
    }


def main(argv=None) -> int:
    from adapters.domain_model import load_domain_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", nargs="+", required=True, help="prior model file(s)")
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--cfg", type=float, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    codec = synthetic_codec()
    judge = ShapeJudge.cached(codec)
    print(f"shape judge ready ({time.time() - t0:.0f}s)", flush=True)
    rows = []
    for path in a.prior:
        model = load_domain_model(path, dtype=torch.float32)[0].eval()
        for seed in a.seeds:
            r = dict(prior_gates(model, codec, a.samples, a.steps, a.cfg, seed, judge), file=path)
            rows.append(r)
            print(f"{path} seed {seed}: FD {r['fd']:.1f} (floor {r['floor']:.1f}, x{r['fd_over_floor']:.2f}), "
                  f"mosaic {r['mosaic']:.2f} (real {r['mosaic_real']:.2f}), latent roughness x{r['roughness']:.2f}, shape {r['shape_accuracy']:.2f} "
                  f"(real {r['shape_accuracy_real']:.2f}), outline {r['outline']:.2f} (real {r['outline_real']:.2f}), "
                  f"outline IoU {r['outline_iou']:.2f} (real {r['outline_iou_real']:.2f}) ({time.time() - t0:.0f}s)", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
