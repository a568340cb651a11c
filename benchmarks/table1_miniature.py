"""A measured miniature of Video Adapter's Table 1: does composing a small domain model with a large
pretrained prior beat both models alone?

    python benchmarks/table1_miniature.py                # 3 domain styles x 3 seeds, CPU, about 20 minutes
    python benchmarks/table1_miniature.py --quick        # 3 styles x 1 seed, smaller models, about 2 minutes
    python benchmarks/table1_miniature.py --investigate  # the knobs (spaces, window, schedules, Langevin,
                                                         # eps models, sizes, first frame) on one style
    python benchmarks/table1_miniature.py --small 64x2 --ship   # also write the shipped domain model (sunset,
                                                                # seed 0); the prior ships from devtools.train_prior
    python benchmarks/table1_miniature.py --prior FILE --small-unet 24,32,48   # another prior file (e.g. a UNet
                                                                # from devtools.train_prior) and UNet small models

Setting (everything synthetic, deterministic, CPU; ``adapters/synthetic_video.py``):

* data: 64 x 64 clips of 8 frames. A broad "internet" set of shapes, textures, palettes, motions and camera
  moves whose captions name shape, motion and camera truthfully but palette and texture at random (a web
  captioner does not describe an artist's style), and three narrow domain styles (``sunset``: striped
  blobs orbiting with a pan; ``ocean``: checkered squares bouncing; ``forest``: dotted rings drifting with a
  tilt), each with a few training clips and two disjoint held-out sets. Clips are encoded with the pack's
  synthetic latent code: a lapped PCA code of 8 x 8 cells (16 x 16 tapered windows) onto 16 channels
  (8 x 8 latents, the layout of Wan 2.1's latents), which keeps edges, stripes and dots and has no seams.
* models: ``adapters/domain_model`` networks (transformers, or UNets with ``--small-unet``) trained with the pack's one trainer: a "pretrained"
  prior on the broad set (it knows the broad clips' look and motion but not what the style words mean), and per
  style a small model of a few percent of the prior on the style's few clips (it learns the style, but
  its samples have small-model errors: blurred or broken shapes, flicker, jitter).
* sampling: Euler on the flow ODE (shifted schedule) and, per step, the pack's composition rule
  (``samplers.composition.Composition``, the code the ComfyUI guider runs): prior only (CFG on the prior),
  small model only (CFG on the small model), the score composer at several prior strengths gamma, and the
  paper's CFG-mix baseline. Every method starts from the same noise and uses the style's caption.
* score: the Frechet distance between Gaussians fitted to per-clip features of the generated clips and of
  held-out domain clips (lower is better), with each feature standardised by the held-out clips' spread,
  and the same distance between the two held-out sets (the noise floor).

Features (on the decoded 64 x 64 RGB clips; 24 numbers, see :func:`features`): style (mean and spread
of R, G, B, warmth, saturation, bright decile; horizontal / vertical gradient energy and their ratio,
fine-detail energy, autocorrelation), shape integrity (share of strong edges, edge peakiness, their
change over time) and motion realism (mean frame change, its variation, flicker of brightness,
acceleration ratio: jumps and jitter against smooth motion, frame-to-frame correlation, global pan /
tilt). The prior misses the style features; the small model misses the integrity and realism ones.
This is a coarse but honest proxy of FVD, not FVD.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shlex
import sys
import time

import numpy as np
import torch

import _root  # noqa: E402,F401  (the repository root on sys.path)

from adapters.domain_model import (build_domain_model, family_config, load_domain_model, save_domain_model,  # noqa: E402
                                   unet_fields)
from adapters.synthetic_video import (DOMAIN_STYLES, SYNTHETIC_LATENT_CHANNELS, SYNTHETIC_TEXT_DIM,  # noqa: E402
                                      caption_context, make_style_clips, style_tokens, synthetic_codec)
from adapters.training import TrainConfig, Trainer  # noqa: E402
from devtools.drawing import N_FEATURES, Scorer, features, frechet  # noqa: E402,F401
from devtools.miniature import CFG, COMPOSITION_END, SAMPLE_SHIFT, sample  # noqa: E402
from samplers.schedules import StrengthSchedule  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
SHIP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "adapters", "weights")
LATENT_CHANNELS = SYNTHETIC_LATENT_CHANNELS
TEXT_DIM = SYNTHETIC_TEXT_DIM

PRIOR = dict(broad=1200, prior=dict(width=96, depth=3, heads=2), prior_steps=3500, lr=2e-3, batch=16)
SETTINGS = {
    "full": dict(PRIOR, domain_train=16, held_out=64, samples=48, frames=8, size=64,
                 small=dict(width=32, depth=2, heads=1, freq_dim=64), small_steps=600, sample_steps=16,
                 seeds=(0, 1, 2), gammas=(0.1, 0.2, 0.4), mix=(0.2, 0.5)),
    "quick": dict(PRIOR, domain_train=16, held_out=32, samples=24, frames=8, size=64,
                  small=dict(width=32, depth=2, heads=1, freq_dim=64), small_steps=150, sample_steps=10,
                  seeds=(0,), gammas=(0.1, 0.2), mix=(0.5,)),
}
TRAIN_SIGMAS = dict(flow_distribution="uniform", flow_shift=1.0)  # tiny models need low noise levels too


# ----------------------------------------------------------------------------------------------------
# models and training


def build(spec, seed, parameterisation="flow", first_frame=False):
    """A model of ``spec`` (family_config fields; ``backbone="unet"`` with ``unet_widths`` builds a UNet)."""
    torch.manual_seed(seed)
    cfg = family_config("synthetic", latent_channels=LATENT_CHANNELS, parameterisation=parameterisation,
                        first_frame_cond=first_frame, **spec)
    return build_domain_model(cfg)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def train(model, latents, context, steps, batch, lr, seed, label, quiet=False):
    ff = model.config.first_frame_cond
    param = model.config.parameterisation

    def batch_fn(step, g, bs):
        idx = torch.randint(0, latents.shape[0], (bs,), generator=g)
        out = {"x0": latents[idx], "context": context[idx]}
        if ff:
            out["first_frame"] = latents[idx][:, :, :1]
        return out

    cfg = TrainConfig(steps=steps, lr=lr, batch_size=batch, seed=seed, cond_dropout=0.1, warmup_steps=50,
                      sigma_sampling="flow_shift" if param == "flow" else "eps_discrete", **TRAIN_SIGMAS)
    t0 = time.time()

    def on_step(step, loss):
        if not quiet and step % max(steps // 4, 1) == 0:
            print(f"    {label}: step {step}/{steps}, loss {loss:.4f} ({time.time() - t0:.0f}s)", flush=True)

    res = Trainer(cfg).run(model, model, batch_fn, param, on_step=on_step)
    model.eval().requires_grad_(False)
    return res


# ----------------------------------------------------------------------------------------------------
# features and the Frechet distance: devtools/drawing.py (features, frechet, Scorer)


# ----------------------------------------------------------------------------------------------------
# one experiment


class Lab:
    """Data and trained models of one seed, cached per configuration, so many settings share the work."""

    def __init__(self, S, seed, codec, quiet=False, pretrained=True, prior_seed=0, prior_file=None):
        self.S, self.seed, self.codec, self.quiet = S, seed, codec, quiet
        self.pretrained, self.prior_seed, self.prior_file = pretrained, prior_seed, prior_file
        self.kw = dict(frames=S["frames"], size=S["size"])
        self._priors, self._smalls, self._data = {}, {}, {}
        self.prior_source = prior_recipe(S)

    def data(self, style):
        if style not in self._data:
            s = self.seed
            train = make_style_clips(self.S["domain_train"], style, seed=100 + s, **self.kw)
            held_a = make_style_clips(self.S["held_out"], style, seed=200 + s, **self.kw)
            held_b = make_style_clips(self.S["held_out"], style, seed=300 + s, **self.kw)
            self._data[style] = (self.codec.encode(train.video), train.context(TEXT_DIM),
                                 Scorer(self.codec, self.codec.decode(self.codec.encode(held_a.video)),
                                        self.codec.decode(self.codec.encode(held_b.video))),
                                 self.codec.encode(held_a.video))
        return self._data[style]

    def prior(self, param="flow", first_frame=False, spec=None, steps=None):
        """The frozen prior: the shipped pretrained one for the table's default (as the paper takes a given
        pretrained model), or one trained here (other parameterisations, sizes, first-frame, --train-prior)."""
        key = (param, first_frame, str(spec), steps)
        if key not in self._priors:
            S = self.S
            default = (param, first_frame, spec, steps) == ("flow", False, None, None)
            path = self.prior_file or os.path.join(SHIP_DIR, "tiny_synthetic_prior.safetensors")
            if default and self.pretrained and os.path.isfile(path) and (self.prior_file or _is_pretrained_prior(path, S)):
                model, meta = load_domain_model(path, dtype=torch.float32)
                self._priors[key] = model.requires_grad_(False)
                self.prior_source = meta["training"].get("prior_recipe", "")
                if self.prior_file:
                    self.prior_source = f"{self.prior_file} ({self.prior_source or 'no recipe recorded'})"
                return self._priors[key]
            broad = make_style_clips(S["broad"], "broad", seed=self.prior_seed, **self.kw)
            x, ctx = self.codec.encode(broad.video), broad.context(TEXT_DIM)
            m = build(spec or S["prior"], self.prior_seed + 10, param, first_frame)
            t0 = time.time()
            train(m, x, ctx, steps or S["prior_steps"], S["batch"], S["lr"], self.prior_seed, f"prior ({param})",
                  self.quiet)
            self._priors[key] = m
            if not self.quiet:
                print(f"  prior ({param}{', first frame' if first_frame else ''}): {n_params(m):,} parameters, "
                      f"{time.time() - t0:.0f}s", flush=True)
        return self._priors[key]

    def small(self, style, param="flow", first_frame=False, spec=None, steps=None):
        key = (style, param, first_frame, str(spec), steps)
        if key not in self._smalls:
            S = self.S
            x, ctx, _, _ = self.data(style)
            m = build(spec or S["small"], self.seed + 11, param, first_frame)
            train(m, x, ctx, steps or S["small_steps"], S["batch"], S["lr"], self.seed + 1, f"small ({style})", True)
            self._smalls[key] = m
        return self._smalls[key]

    def noise(self):
        S = self.S
        g = torch.Generator().manual_seed(self.seed + 99)
        h = S["size"] // self.codec.pool
        return torch.randn((S["samples"], LATENT_CHANNELS, S["frames"], h, h), generator=g)

    def run(self, style, methods, param="flow", first_frame=False, small_spec=None, prior_steps=None, **kw):
        """FD of every method ``(label, (kind, weight), extra sample kwargs)`` for one style."""
        S = self.S
        prior = self.prior(param, first_frame, steps=prior_steps)
        small = self.small(style, param, first_frame, small_spec)
        _, _, scorer, held = self.data(style)
        n = S["samples"]
        ctx = caption_context(style_tokens(style, n), TEXT_DIM)
        ff = held[:n, :, :1] if first_frame else None
        out = {}
        with torch.no_grad():
            for label, m, extra in methods:
                lat = sample(m, small, prior, self.noise(), ctx, S["sample_steps"], first_frame=ff, seed=self.seed,
                             **{**kw, **extra})
                out[label] = scorer(lat)
        out["noise floor"] = scorer.floor
        return out


def _is_pretrained_prior(path, S) -> bool:
    """Whether the shipped prior is the one ``devtools.train_prior`` makes with its defaults (the table's
    given pretrained model), or one this benchmark's own settings train."""
    from adapters.files import read_metadata
    from devtools.train_prior import shipped_recipe_text

    t = read_metadata(path).get("training", {})
    return t.get("prior_recipe") in (shipped_recipe_text(), prior_recipe(S))


def prior_recipe(S) -> str:
    return f"broad={S['broad']} spec={S['prior']} steps={S['prior_steps']} lr={S['lr']} batch={S['batch']}"


def table_methods(S):
    m = [("prior only", ("prior", 0.0), {}), ("small only", ("small", 0.0), {})]
    m += [(f"composer, gamma = {g:g}", ("compose", g), {}) for g in S["gammas"]]
    m += [(f"CFG mix, lambda = {lm:g}", ("mix", lm), {}) for lm in S["mix"]]
    return m


def summarise(results: list[dict]) -> list[tuple[str, float, float, float]]:
    """(label, mean, std, median) over runs; runs are dicts label -> FD."""
    rows = []
    for label in results[0]:
        v = np.array([r[label] for r in results], dtype=np.float64)
        rows.append((label, float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, float(np.median(v))))
    return rows


def wins(results: list[dict]) -> dict[str, int]:
    """How many runs each composer / mix setting beat both single models in."""
    out = {}
    for label in results[0]:
        if label.startswith(("composer", "CFG mix")):
            out[label] = sum(r[label] < min(r["prior only"], r["small only"]) for r in results)
    return out


def print_table(title, results, extra_cols=None):
    print(f"\n{title}\n")
    rows = summarise(results)
    w = wins(results)
    print("| method | FD mean +- std | median | runs beating both single models |")
    print("|---|---|---|---|")
    for label, mu, sd, med in rows:
        print(f"| {label} | {mu:.1f} +- {sd:.1f} | {med:.1f} | {w.get(label, '') if label in w else ''}"
              f"{'/' + str(len(results)) if label in w else ''} |")
    print(flush=True)


# ----------------------------------------------------------------------------------------------------
# the knobs


INVESTIGATE_PRIOR_STEPS = 300  # the priors trained for the eps / first-frame comparison (each against a flow
                               # prior trained the same way, so the comparison is fair)
SIZES = (dict(width=16, depth=1, heads=1, freq_dim=32), dict(width=64, depth=2, heads=1, freq_dim=64),
         dict(width=64, depth=3, heads=2))


def investigate(S, codec, style="sunset", seeds=(0,)):
    """Each knob on its own, the rest at the table's settings (32 samples per method); FD mean (and standard
    deviation) over ``seeds``."""
    S = dict(S, samples=min(S["samples"], 32), held_out=min(S["held_out"], 48))
    labs = [Lab(S, s, codec) for s in seeds]
    gl = S["gammas"]

    def over_seeds(fn):
        res = [fn(lab) for lab in labs]
        return {k: (float(np.mean([r[k] for r in res])), float(np.std([r[k] for r in res], ddof=1)) if len(res) > 1
                    else 0.0)
                for k in res[0] if k != "noise floor"}

    def line(title, res):
        spread = len(labs) > 1
        print(f"  {title}: " + ", ".join(f"{k} {m:.1f}" + (f" +- {sd:.1f}" if spread else "")
                                         for k, (m, sd) in res.items()), flush=True)

    base = [("prior", ("prior", 0.0), {}), ("small", ("small", 0.0), {})]
    comp = [(f"g{g:g}", ("compose", g), {}) for g in gl]
    print(f"\n== knobs on style '{style}', seeds {list(seeds)} (FD, lower is better; g = prior strength) ==")
    line("table setting (velocity space, window 0.9, constant)", over_seeds(lambda L: L.run(style, base + comp)))
    line("flow_space noise", over_seeds(lambda L: L.run(style, comp, flow_space="noise")))
    for end in (0.5, 0.7, 1.0):
        line(f"composition_end {end:g}", over_seeds(lambda L: L.run(style, comp, composition_end=end)))
    for name, sch in (("linear 2 -> 0 (strong early)", StrengthSchedule("linear", 2.0, 0.0)),
                      ("linear 0 -> 2 (strong late)", StrengthSchedule("linear", 0.0, 2.0))):
        line(f"schedule {name}", over_seeds(lambda L: L.run(style, comp, schedule=sch)))
    for k, h in ((1, 0.05), (2, 0.15)):
        line(f"Langevin {k} x {h:g}", over_seeds(lambda L: L.run(style, comp, mcmc_steps=k, mcmc_step_size=h)))
    for spec in SIZES:
        p = n_params(build(spec, 0)) / n_params(labs[0].prior())
        line(f"small {spec['width']}x{spec['depth']} ({100 * p:.1f} % of the prior)",
             over_seeds(lambda L: L.run(style, base[1:] + comp, small_spec=spec)))
    st = INVESTIGATE_PRIOR_STEPS
    print(f"  -- priors trained here for {st} steps (flow, eps, first-frame), same data and budget --")
    for title, kw in (("flow pair", {}), ("eps-parameterised pair", {"param": "eps"}),
                      ("first-frame conditioned flow pair", {"first_frame": True})):
        line(title, over_seeds(lambda L: L.run(style, base + comp, prior_steps=st, **kw)))


# ----------------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller models and sets, one seed (about 2 minutes)")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="seeds (default: 0 1 2, quick: 0)")
    ap.add_argument("--styles", nargs="*", default=list(DOMAIN_STYLES), choices=list(DOMAIN_STYLES))
    ap.add_argument("--investigate", action="store_true", help="the knob study instead of the table")
    ap.add_argument("--first-frame", action="store_true", help="first-frame conditioned prior and small models")
    ap.add_argument("--out", default=OUT_DIR, help="where the trained pair of the first style and seed is saved")
    ap.add_argument("--ship", action="store_true",
                    help="also write the sunset pair of seed 0 (fp16) as the pack's demo models in adapters/weights/ (the "
                         "shipped pair was made with --small 64x2 --ship)")
    ap.add_argument("--flow-space", choices=("velocity", "noise"), default="velocity",
                    help="the composer's flow space (default %(default)s; the knob study compares both)")
    ap.add_argument("--gammas", type=float, nargs="*", default=None, help="prior strengths of the composer rows")
    ap.add_argument("--mix", type=float, nargs="*", default=None, help="CFG-mix weights (none: no CFG-mix rows)")
    ap.add_argument("--small", default=None, metavar="WIDTHxDEPTH",
                    help="size of the small models (default 32x2, 8.9 %% of the prior; 64x2 is 32.8 %%)")
    ap.add_argument("--small-unet", default=None, metavar="W1,W2,W3",
                    help="small models as UNets of these three level widths instead of transformers (24,32,48 is "
                         "25 %% of the UNet prior)")
    ap.add_argument("--train-prior", action="store_true",
                    help="train the benchmark's own prior here (the first, 2 x 2-token recipe, about 16 minutes) "
                         "instead of loading the shipped one; with --ship it is written as the shipped prior")
    ap.add_argument("--prior", default=None, metavar="FILE",
                    help="the frozen prior to compose with: a prior file of the synthetic latent space, for example "
                         "one from devtools.train_prior (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.prior:
        if not os.path.isfile(args.prior):
            ap.error(f"--prior: no file {args.prior}")
        if args.train_prior or args.first_frame or args.investigate:
            ap.error("--prior replaces the table's pretrained text-to-video prior: it cannot be combined with "
                     "--train-prior, --first-frame or --investigate, which train their own priors")
        try:
            cfg = load_domain_model(args.prior, dtype=torch.float32)[0].config
        except (ValueError, OSError) as e:  # the pack's file errors are ValueErrors that say what the file is
            ap.error(f"--prior: {e}")
        if (cfg.family, cfg.parameterisation, cfg.first_frame_cond) != ("synthetic", "flow", False):
            ap.error(f"--prior: {args.prior} is a {cfg.family} {cfg.parameterisation} model"
                     f"{' with first-frame conditioning' if cfg.first_frame_cond else ''}; the table composes "
                     "with a synthetic-space flow prior without first-frame conditioning")
    if args.ship and (args.prior or args.small_unet):
        ap.error("--ship writes the shipped domain model measured beside the shipped prior: run it without "
                 "--prior and --small-unet")
    if args.small_unet and len(args.small_unet.split(",")) != 3:
        ap.error("--small-unet takes three comma-separated level widths, for example 24,32,48")
    mode = "quick" if args.quick else "full"
    S = SETTINGS[mode]
    torch.set_num_threads(args.threads)
    t_start = time.time()
    codec = synthetic_codec()
    seeds = tuple(args.seeds) if args.seeds else S["seeds"]
    if args.investigate:
        investigate(S, codec, args.styles[0], seeds)
        print(f"total time {time.time() - t_start:.0f}s")
        return

    if args.gammas is not None:
        S = dict(S, gammas=tuple(args.gammas))
    if args.mix is not None:
        S = dict(S, mix=tuple(args.mix))
    if args.small:
        w, d = (int(v) for v in args.small.lower().split("x"))
        S = dict(S, small=dict(width=w, depth=d, heads=max(1, w // 64), freq_dim=64))
    if args.small_unet:
        if args.small:
            ap.error("--small and --small-unet are two sizes of small model: give one")
        S = dict(S, small=unet_fields(args.small_unet))
    methods = table_methods(S)
    results, per_style = [], {s: [] for s in args.styles}
    first_pair = None
    for seed in seeds:
        lab = Lab(S, seed, codec, pretrained=not args.train_prior, prior_file=args.prior)
        for style in args.styles:
            t0 = time.time()
            r = lab.run(style, methods, first_frame=args.first_frame, flow_space=args.flow_space)
            results.append(r)
            per_style[style].append(r)
            print(f"  seed {seed}, {style}: " + ", ".join(f"{k} {v:.1f}" for k, v in r.items())
                  + f" ({time.time() - t0:.0f}s)", flush=True)
            if first_pair is None or (args.ship and style == "sunset" and seed == 0):
                first_pair = (lab.prior("flow", args.first_frame), lab.small(style, "flow", args.first_frame), style, seed)
    prior, small = first_pair[0], first_pair[1]
    print(f"\nprior: {lab.prior_source}")
    ratio = n_params(small) / n_params(prior)
    print(f"\nTable 1 miniature ({mode}{', first-frame conditioned' if args.first_frame else ''}; flow space "
          f"{args.flow_space}; styles "
          f"{', '.join(args.styles)}; seeds {', '.join(map(str, seeds))}; prior {n_params(prior):,} parameters on "
          f"broad clips, small model {100 * ratio:.1f} % of it on {S['domain_train']} clips; "
          f"{S['samples']} samples per method against {S['held_out']} held-out clips; Euler {S['sample_steps']} "
          f"steps, cfg {CFG:g}, composition_end {COMPOSITION_END:g})")
    print_table(f"All {len(results)} runs (styles x seeds): Frechet distance to held-out domain clips", results)
    for style, rs in per_style.items():
        if len(seeds) > 1:
            print_table(f"style {style} ({len(rs)} seeds)", rs)

    os.makedirs(args.out, exist_ok=True)
    pp = os.path.join(args.out, f"table1_{mode}_prior.safetensors")
    dp = os.path.join(args.out, f"table1_{mode}_domain.safetensors")
    save_domain_model(pp, prior, {"data": "synthetic broad clips", "prior_recipe": lab.prior_source})
    save_domain_model(dp, small, {"data": f"synthetic '{first_pair[2]}' clips", "steps": S["small_steps"]})
    print(f"saved the pair of style {first_pair[2]}, seed {first_pair[3]}: {pp}, {dp}")
    if args.ship:
        rows = summarise(results)
        table = {label: [round(mu, 2), round(sd, 2)] for label, mu, sd, _ in rows}
        # the prior ships from devtools.train_prior (--ship-from); the table writes it only when it trained it
        pair = ((prior, "prior", "broad synthetic clips", S["prior_steps"]),) if args.train_prior else ()
        pair += ((small, "domain", f"{S['domain_train']} clips of the '{first_pair[2]}' style", S["small_steps"]),)
        for model, role, data, steps in pair:
            path = os.path.join(SHIP_DIR, f"tiny_synthetic_{role}.safetensors")
            save_domain_model(path, copy.deepcopy(model).half(), {
                "data": data, "steps": steps, "role": role, "style": first_pair[2], "sample_shift": SAMPLE_SHIFT,
                **({"prior_recipe": prior_recipe(S)} if role == "prior" else {}),
                "cfg": CFG, "composition_end": COMPOSITION_END,
                "made_by": shlex.join(["python", "benchmarks/table1_miniature.py",
                                       *(sys.argv[1:] if argv is None else argv)]),
                "table1_miniature_mean_std": table})
            print(f"shipped {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
    print(f"total time {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
