"""A measured miniature of Video Adapter's Table 1: does composing a small domain model with a large
pretrained prior beat both models alone?

    python benchmarks/table1_miniature.py            # full run, CPU, about 15 minutes
    python benchmarks/table1_miniature.py --quick    # smaller models and sets, about 1 minute
    python benchmarks/table1_miniature.py --ship     # full run, then write the pair the pack ships
    python benchmarks/table1_miniature.py --domain-fraction 0 --latent-channels 4   # other settings

Setting (everything synthetic, deterministic, CPU):

* data: ``adapters/synthetic_video.py``. A broad "internet" set (many clips of every palette, texture,
  shape, motion and camera; by default 5 % of it is drawn from the domain style, as a web crawl sometimes
  holds a few clips like the artist's) and a narrow "domain" set (sunset palette, striped blobs orbiting,
  slow pan right) with only a few training clips and two disjoint held-out sets. Clips are encoded into
  the pack's synthetic latent space (``synthetic_codec``: 4x4 pooling and a fixed projection of RGB onto
  16 channels, the channel count of Wan 2.1's latents; ``--latent-channels`` picks another count); captions
  become text features with ``caption_context``.
* models: ``adapters/domain_model.DomainVideoModel`` in the rectified-flow parameterisation, trained with the
  pack's one trainer (``adapters/training.py``). A larger "pretrained" prior on the internet set and a small
  domain model (a few percent of the prior's parameters) on the few domain clips.
* sampling: a plain Euler sampler of the flow ODE (written here, with a shifted schedule) and, per step,
  the pack's composition rule (``samplers.composition.Composition``, the code the ComfyUI guider runs):
  prior only (CFG on the prior), small model only (CFG on the small model), the score composer at several
  prior strengths gamma, and the paper's CFG-mix baseline (interpolated guided predictions). Every method
  starts from the same noise and uses the domain caption.
* score: the Frechet distance between Gaussians fitted to per-clip features of the generated clips and of
  held-out domain clips (lower is better), and the same distance between the two held-out sets (the noise
  floor: what a perfect model would score with these sample sizes).

Features (decoded to RGB at latent resolution; 21 numbers per clip, each standardised by the held-out
clips' spread so all count alike). Video quality and domain fit here are about colour, texture/structure
and motion, so the features measure exactly those:

* colour (9): mean and standard deviation of R, G, B over the clip, warmth (R - B), saturation (max - min
  channel) and brightness of the brightest decile (bright shapes on a dusky background);
* texture / structure (6): mean absolute horizontal and vertical gradients, their ratio (stripes are
  oriented), the Laplacian energy (fine detail or noise), and the spatial autocorrelation at one and two
  pixels (blurry or noisy samples change both);
* motion (6): mean absolute frame difference, its variation over time (smooth vs jerky), the correlation
  of consecutive frames, and the horizontal / vertical global-motion estimates (which one-pixel shift of
  frame t best explains frame t+1: the domain pans right), plus the temporal drift of mean colour.

A model that ignores the domain (prior only) misses colour and pan; one that memorised a few clips
(small only) has the right means but too little spread; broken samples (noise, blur, flicker) move the
texture and motion features. The distance is computed on 21-d Gaussians, so it is a coarse but honest
proxy of FVD, not FVD.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from adapters.domain_model import DomainVideoModel, family_config, save_domain_model  # noqa: E402
from adapters.synthetic_video import (ATTRIBUTES, DOMAIN_STYLE, SYNTHETIC_LATENT_CHANNELS,  # noqa: E402
                                      SYNTHETIC_TEXT_DIM, VOCAB, SyntheticClips, ToyLatentCodec, caption_context, make_clips,
                                      synthetic_codec)
from adapters.training import TrainConfig, Trainer  # noqa: E402
from samplers.composition import Composition, PriorTerm, cfg_combine  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
SHIP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "adapters", "weights")
LATENT_CHANNELS = SYNTHETIC_LATENT_CHANNELS
TEXT_DIM = SYNTHETIC_TEXT_DIM

SETTINGS = {
    "full": dict(internet=1500, domain_train=12, held_out=96, frames=8, size=32,
                 prior=dict(width=128, depth=4, heads=2), small=dict(width=32, depth=2, heads=1, freq_dim=64),
                 prior_steps=1200, small_steps=800, batch=16, lr=1e-3, sample_steps=20, samples=96,
                 gammas=(0.1, 0.2, 0.4, 0.7, 1.0), mix=(0.2, 0.5), threads=1),
    "quick": dict(internet=300, domain_train=12, held_out=48, frames=6, size=32,
                  prior=dict(width=96, depth=3, heads=2), small=dict(width=32, depth=1, heads=1, freq_dim=64),
                  prior_steps=200, small_steps=200, batch=16, lr=2e-3, sample_steps=10, samples=48,
                  gammas=(0.2, 0.5, 1.0), mix=(0.5,), threads=1),
}
CFG = 3.0           # omega for every method
SAMPLE_SHIFT = 3.0  # flow schedule shift of the sampler (as Wan's shifted schedules)
COMPOSITION_END = 0.9  # percent after which only the domain model runs (the paper's last 10 %)
DOMAIN_FRACTION = 0.05  # share of domain-style clips in the broad set


# ----------------------------------------------------------------------------------------------------
# data


def encode(clips, codec):
    return codec.encode(clips.video), clips.context(TEXT_DIM)


def broad_clips(n_internet: int, n_domain: int, seed: int, kw: dict) -> SyntheticClips:
    """The broad set: internet clips plus ``n_domain`` clips of the domain style (its own seed, disjoint
    from the domain training and held-out clips), shuffled together."""
    parts = [make_clips(n_internet, "internet", seed=seed + 1, **kw)]
    if n_domain:
        parts.append(make_clips(n_domain, "domain", seed=seed + 5, **kw))
    video = torch.cat([p.video for p in parts])
    tokens = torch.cat([p.tokens for p in parts])
    order = torch.randperm(video.shape[0], generator=torch.Generator().manual_seed(seed + 6))
    captions = [c for p in parts for c in p.captions]
    return SyntheticClips(video[order], tokens[order], [captions[i] for i in order.tolist()], "broad")


def domain_caption(n: int) -> torch.Tensor:
    tokens = torch.tensor([[VOCAB.index(f"{k}:{DOMAIN_STYLE[k]}") for k, _ in ATTRIBUTES]] * n)
    return caption_context(tokens, TEXT_DIM)


# ----------------------------------------------------------------------------------------------------
# models and training


def build(spec, seed, channels=LATENT_CHANNELS):
    torch.manual_seed(seed)
    cfg = family_config("synthetic", latent_channels=channels, **spec)
    return DomainVideoModel(cfg)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def train(model, latents, context, steps, batch, lr, seed, label):
    def batch_fn(step, g, bs):
        idx = torch.randint(0, latents.shape[0], (bs,), generator=g)
        return {"x0": latents[idx], "context": context[idx]}

    cfg = TrainConfig(steps=steps, lr=lr, batch_size=batch, seed=seed, cond_dropout=0.1, warmup_steps=50,
                      flow_shift=SAMPLE_SHIFT)
    t0 = time.time()

    def on_step(step, loss):
        if step % max(steps // 5, 1) == 0:
            print(f"  {label}: step {step}/{steps}, loss {loss:.4f} ({time.time() - t0:.0f}s)", flush=True)

    res = Trainer(cfg).run(model, model, batch_fn, "flow", on_step=on_step)
    model.eval().requires_grad_(False)
    return res


# ----------------------------------------------------------------------------------------------------
# sampling


def flow_sigmas(steps: int, shift: float) -> list[float]:
    t = np.linspace(1.0, 0.0, steps + 1)
    return [float(shift * u / (1 + (shift - 1) * u)) for u in t]


def denoised(model, x, sigma, context):
    s = torch.full((x.shape[0],), sigma)
    return x - s.reshape(-1, 1, 1, 1, 1) * model(x, s, context)


def sample(method, small, prior, noise, context, steps, sigmas=None, composition_end=COMPOSITION_END):
    """Euler on the flow ODE; ``method`` = ("prior" | "small" | "compose" | "mix", weight). ``sigmas``
    (optional) replaces the schedule; the host tests pass ComfyUI's to compare with the nodes."""
    kind, weight = method
    sig = flow_sigmas(steps, SAMPLE_SHIFT) if sigmas is None else [float(v) for v in sigmas]
    steps = len(sig) - 1
    window = sig[min(int(round(composition_end * steps)), steps)]
    rule = "cfg_mix" if kind == "mix" else "product"
    comp = Composition(cfg=CFG, priors=[PriorTerm(strength=weight)] if kind in ("compose", "mix") else [],
                       window_sigma=window, parameterisation="flow", rule=rule)
    x = noise.clone()
    for i in range(steps):
        s, s_next = sig[i], sig[i + 1]

        def guided(model):
            def fn(xx, sigma):
                return cfg_combine(denoised(model, xx, s, context), denoised(model, xx, s, None), CFG)
            return fn

        if kind == "prior":
            d = guided(prior)(x, s)
        else:
            def prior_fn(_i, xx, sigma):
                return guided(prior)(xx, sigma) if kind == "mix" else denoised(prior, xx, s, context)
            d = comp.denoise(x, torch.tensor(s), guided(small), prior_fn)
        x = x + (s_next - s) * (x - d) / s  # Euler step on dx/ds = (x - D) / s
    return x


# ----------------------------------------------------------------------------------------------------
# features and the Frechet distance


def features(rgb: torch.Tensor) -> np.ndarray:
    """Per-clip features ``[N, 21]`` of RGB clips ``[N, 3, T, H, W]`` (see the module docstring)."""
    v = rgb.float().clamp(0, 1)
    n = v.shape[0]
    f = []
    mean = v.mean(dim=(2, 3, 4))
    f += [mean, v.std(dim=(2, 3, 4))]                                   # 6
    f.append((mean[:, 0] - mean[:, 2])[:, None])                        # warmth
    f.append((v.amax(1) - v.amin(1)).mean(dim=(1, 2, 3))[:, None])       # saturation
    luma = (0.299 * v[:, 0] + 0.587 * v[:, 1] + 0.114 * v[:, 2])         # [N, T, H, W]
    f.append(torch.quantile(luma.reshape(n, -1), 0.9, dim=1)[:, None])  # bright decile
    gx = (luma[..., :, 1:] - luma[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    gy = (luma[..., 1:, :] - luma[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    lap = (4 * luma[..., 1:-1, 1:-1] - luma[..., :-2, 1:-1] - luma[..., 2:, 1:-1] - luma[..., 1:-1, :-2]
           - luma[..., 1:-1, 2:]).pow(2).mean(dim=(1, 2, 3))
    c = luma - luma.mean(dim=(2, 3), keepdim=True)
    var = c.pow(2).mean(dim=(1, 2, 3)) + 1e-6
    ac1 = (c[..., :, 1:] * c[..., :, :-1]).mean(dim=(1, 2, 3)) / var
    ac2 = (c[..., :, 2:] * c[..., :, :-2]).mean(dim=(1, 2, 3)) / var
    f += [gx[:, None], gy[:, None], (gx / (gy + 1e-4)).log()[:, None], lap[:, None], ac1[:, None], ac2[:, None]]
    d = (luma[:, 1:] - luma[:, :-1]).abs().mean(dim=(2, 3))             # [N, T-1]
    f += [d.mean(1, keepdim=True), d.std(1, keepdim=True)]
    a, b = c[:, :-1], c[:, 1:]
    f.append(((a * b).mean(dim=(1, 2, 3)) / var)[:, None])
    # global motion: which one-pixel shift of frame t explains frame t+1 best (positive = right / down)
    def err(dx, dy):
        sa = torch.roll(a, shifts=(dy, dx), dims=(2, 3))[..., 1:-1, 1:-1]
        return (b[..., 1:-1, 1:-1] - sa).pow(2).mean(dim=(1, 2, 3))
    f.append((err(-1, 0) - err(1, 0))[:, None])
    f.append((err(0, -1) - err(0, 1))[:, None])
    f.append((mean_t := v.mean(dim=(3, 4)))[:, :, -1].sub(mean_t[:, :, 0]).abs().mean(1, keepdim=True))
    return torch.cat(f, dim=1).double().numpy()


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature rows ``a`` and ``b``."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    r = _sqrtm_psd(s1)
    cross = _sqrtm_psd(r @ s2 @ r)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))


# ----------------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller models and sets (about 2 minutes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=OUT_DIR, help="where the trained prior/domain pair is saved")
    ap.add_argument("--domain-fraction", type=float, default=DOMAIN_FRACTION,
                    help="share of the broad 'internet' set drawn from the domain style (default %(default)s)")
    ap.add_argument("--latent-channels", type=int, default=LATENT_CHANNELS,
                    help="channels of the toy latent code (default: the synthetic family's %(default)s)")
    ap.add_argument("--ship", action="store_true",
                    help="also write the pair (fp16) as the pack's embedded demo models in adapters/weights/")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    S = SETTINGS[mode]
    torch.set_num_threads(S["threads"])
    t_start = time.time()
    if args.ship and args.latent_channels != LATENT_CHANNELS:
        ap.error(f"--ship needs the synthetic family's {LATENT_CHANNELS} latent channels")
    codec = synthetic_codec() if args.latent_channels == LATENT_CHANNELS else ToyLatentCodec(args.latent_channels)

    print(f"[{mode}] rendering synthetic clips ...", flush=True)
    kw = dict(frames=S["frames"], size=S["size"])
    n_dom = int(round(args.domain_fraction * S["internet"]))
    net_x, net_c = encode(broad_clips(S["internet"] - n_dom, n_dom, args.seed, kw), codec)
    dom_x, dom_c = encode(make_clips(S["domain_train"], "domain", seed=args.seed + 2, **kw), codec)
    held_a = make_clips(S["held_out"], "domain", seed=args.seed + 3, **kw)
    held_b = make_clips(S["held_out"], "domain", seed=args.seed + 4, **kw)

    prior = build(S["prior"], args.seed + 10, args.latent_channels)
    small = build(S["small"], args.seed + 11, args.latent_channels)
    ratio = n_params(small) / n_params(prior)
    print(f"prior {n_params(prior):,} parameters, small {n_params(small):,} ({100 * ratio:.1f} % of the prior)")
    train(prior, net_x, net_c, S["prior_steps"], S["batch"], S["lr"], args.seed, "prior (internet)")
    train(small, dom_x, dom_c, S["small_steps"], S["batch"], S["lr"], args.seed + 1, "small (domain)")

    # held-out references, decoded the way samples are (latent resolution RGB)
    def rgb_of_latents(lat):
        return codec.decode(lat)[..., :: codec.pool, :: codec.pool]

    ref = features(rgb_of_latents(codec.encode(held_a.video)))
    other = features(rgb_of_latents(codec.encode(held_b.video)))
    scale = ref.std(0) + 1e-8
    ref_z, other_z = ref / scale, other / scale

    n = S["samples"]
    g = torch.Generator().manual_seed(args.seed + 99)
    shape = (n, args.latent_channels, S["frames"], S["size"] // codec.pool, S["size"] // codec.pool)
    noise = torch.randn(shape, generator=g)
    ctx = domain_caption(n)
    methods = [("prior only", ("prior", 0.0)), ("small only", ("small", 0.0))]
    methods += [(f"composer, gamma = {gm:g}", ("compose", gm)) for gm in S["gammas"]]
    methods += [(f"CFG mix, lambda = {lm:g}", ("mix", lm)) for lm in S["mix"]]
    rows = []
    with torch.no_grad():
        for label, m in methods:
            t0 = time.time()
            lat = sample(m, small, prior, noise, ctx, S["sample_steps"])
            feats = features(rgb_of_latents(lat)) / scale
            bad = int((~np.isfinite(feats).all(1)).sum())
            # diverged samples (inf / nan) make the distance undefined: report it as infinite
            fd = frechet(feats, ref_z) if bad == 0 else float("inf")
            rows.append((label, fd))
            print(f"  sampled {label}: FD {fd:.2f} ({time.time() - t0:.0f}s)"
                  + (f", {bad} of {n} samples diverged" if bad else ""), flush=True)
    floor = frechet(other_z, ref_z)

    print()
    print(f"Table 1 miniature ({mode}; {S['domain_train']} domain training clips, {n} samples per method, "
          f"{S['held_out']} held-out clips, Euler {S['sample_steps']} steps, cfg {CFG:g}, "
          f"composition_end {COMPOSITION_END:g}; small model = {100 * ratio:.1f} % of the prior)")
    print()
    print("| method | Frechet distance to held-out domain clips (lower is better) |")
    print("|---|---|")
    for label, fd in rows:
        print(f"| {label} | {fd:.2f} |")
    print(f"| noise floor (held-out vs other held-out) | {floor:.2f} |")
    print()
    fd = dict(rows)
    best_single = min(fd["prior only"], fd["small only"])
    comp = [(lab, v) for lab, v in rows if lab.startswith("composer")]
    best_c = min(comp, key=lambda r: r[1])
    wins = [lab.split("= ")[1] for lab, v in comp if v < best_single]
    if wins:
        print(f"Composition beats both models alone at gamma = {', '.join(wins)} (best: {best_c[0]}, "
              f"{best_c[1]:.2f} vs {best_single:.2f} for the better single model).")
    else:
        print(f"Composition does NOT beat both models alone here (best composer {best_c[1]:.2f} at "
              f"{best_c[0]}, better single model {best_single:.2f}).")
    mix = [(lab, v) for lab, v in rows if lab.startswith("CFG mix")]
    if mix:
        bm = min(mix, key=lambda r: r[1])
        print(f"Best CFG mix: {bm[1]:.2f} ({bm[0]}); best composer: {best_c[1]:.2f}.")

    os.makedirs(args.out, exist_ok=True)
    pp = os.path.join(args.out, f"table1_{mode}_prior.safetensors")
    dp = os.path.join(args.out, f"table1_{mode}_domain.safetensors")
    save_domain_model(pp, prior, {"data": "synthetic internet clips", "steps": S["prior_steps"]})
    save_domain_model(dp, small, {"data": "synthetic domain clips", "steps": S["small_steps"]})
    print(f"\nsaved the tiny prior/domain pair: {pp} ({os.path.getsize(pp) / 1e6:.1f} MB), "
          f"{dp} ({os.path.getsize(dp) / 1e6:.1f} MB)")
    if args.ship:
        table = {label: round(v, 2) for label, v in rows}
        table["noise floor"] = round(floor, 2)
        os.makedirs(SHIP_DIR, exist_ok=True)
        for model, role, data, steps in ((prior, "prior", "broad synthetic clips", S["prior_steps"]),
                                         (small, "domain", "12 synthetic domain-style clips", S["small_steps"])):
            path = os.path.join(SHIP_DIR, f"tiny_synthetic_{role}.safetensors")
            save_domain_model(path, copy.deepcopy(model).half(), {
                "data": data, "steps": steps, "role": role, "domain_fraction": args.domain_fraction,
                "sample_shift": SAMPLE_SHIFT, "cfg": CFG, "composition_end": COMPOSITION_END,
                "made_by": f"python benchmarks/table1_miniature.py{' --quick' if args.quick else ''} "
                           f"--seed {args.seed} --domain-fraction {args.domain_fraction:g} --ship",
                "table1_miniature": table})
            print(f"shipped {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
    print(f"rerun: python benchmarks/table1_miniature.py{' --quick' if args.quick else ''} --seed {args.seed} "
          f"--domain-fraction {args.domain_fraction:g} --latent-channels {args.latent_channels}")
    print(f"total time {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
