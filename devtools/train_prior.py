"""Pretrain the Video Adapter miniature's broad prior (the frozen "large" model of the tiny demo and of the
Table-1 miniature) on the broad synthetic set, with an exponential moving average of the weights and snapshots
along the way, so the drawing gates (``devtools.drawing``) can be measured against training steps.

    python -m devtools.train_prior --out priors                 # the shipped recipe (0.72M parameters, 6000 steps: 71 min, 1 thread)
    python -m devtools.train_prior --out priors --steps 400     # a quick look
    python -m devtools.train_prior --out priors --backbone unet --image_steps 30000 --steps 4000 --batch 8 --lr 0.0005
                                       # the UNet prior measured on docs/video_adapter.md (60 min, 1 thread; not shipped)

``--device cuda`` trains on a GPU (the clips stay on the CPU, each batch is moved), with the same recipe text.

Each snapshot ``prior_<step>.safetensors`` holds the averaged weights (fp32) and the exact command in its metadata;
``python -m devtools.drawing --prior FILE`` measures the gates of one, and

    python -m devtools.train_prior --ship-from priors/prior_06000.safetensors

writes it as the pack's shipped prior (fp16, ``adapters/weights/tiny_synthetic_prior.safetensors``), keeping the
command that trained it in the file.
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import sys
import time

import torch

from adapters.domain_model import BACKBONES, build_domain_model, family_config, save_domain_model, unet_fields
from adapters.synthetic_video import SYNTHETIC_LATENT_CHANNELS, SYNTHETIC_TEXT_DIM, make_style_clips, synthetic_codec
from adapters.training import TrainConfig, Trainer

# the command-line defaults. Transformer fields: a token per latent cell (patch 1), a 3 x 3 convolution over the
# latent grid at the input and output and a depthwise one in every block. UNet fields (--backbone unet): the
# channel widths of its three levels, and a first stage on still frames (each clip's frames as images: the
# spatial layers learn to draw) before the clip stage (all layers, the temporal ones from zero).
RECIPE = dict(broad=2400, backbone="transformer", width=96, depth=3, heads=2, unet_widths="48,64,96", image_steps=0,
              image_batch=32, image_lr=1e-3, steps=6000, lr=1e-3, batch=16, warmup=200, ema=0.999, seed=0,
              local_conv=1, block_conv=1, patch=1, train_shift=1.0)


def shipped_recipe_text() -> str:
    """The recipe text a prior trained with the defaults carries (``prior_recipe`` in its metadata)."""
    return recipe_text(argparse.Namespace(**RECIPE))


def recipe_text(a) -> str:
    if a.backbone == "unet":
        arch = f"backbone=unet unet_widths={a.unet_widths} "
        conv = ""
    else:
        arch = f"width={a.width} depth={a.depth} heads={a.heads} "
        conv = ((" local_conv" if a.local_conv else "") + (" block_conv" if a.block_conv else "")
                + (f" patch={a.patch}" if a.patch != 2 else ""))
    if a.image_steps:
        arch += f"image_steps={a.image_steps} image_batch={a.image_batch} image_lr={a.image_lr} "
    return (f"broad={a.broad} {arch}steps={a.steps} lr={a.lr} batch={a.batch} warmup={a.warmup} cosine ema={a.ema} "
            f"seed={a.seed}" + conv + (f" train_shift={a.train_shift:g}" if a.train_shift != 1.0 else ""))


SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "adapters", "weights",
                       "tiny_synthetic_prior.safetensors")


def ship(snapshot: str, extra: dict | None = None, path: str = SHIPPED) -> str:
    """Write ``snapshot`` (a file of this tool) as the shipped prior in fp16, with its training metadata."""
    from adapters.domain_model import load_domain_model

    from devtools.miniature import CFG, COMPOSITION_END, SAMPLE_SHIFT

    model, meta = load_domain_model(snapshot, dtype=torch.float32)
    # the sampler settings it was measured with, which the demo nodes read
    training = dict(meta.get("training", {}), sample_shift=SAMPLE_SHIFT, cfg=CFG, composition_end=COMPOSITION_END,
                    **(extra or {}))
    save_domain_model(path, copy.deepcopy(model).half(), training)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="folder for the snapshots")
    ap.add_argument("--ship-from", default=None, metavar="SNAPSHOT", help="ship this snapshot instead of training")
    for k, v in RECIPE.items():
        ap.add_argument(f"--{k}", type=type(v), default=v, **({"choices": BACKBONES} if k == "backbone" else {}))
    ap.add_argument("--snapshots", type=int, default=10, help="how many snapshots over the run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="where to train (cpu, cuda, cuda:1, ...); snapshots are saved "
                    "to the CPU either way, and the recipe text does not change with the device")
    a = ap.parse_args(argv)
    if a.ship_from:
        print(ship(a.ship_from))
        return 0
    if not a.out:
        ap.error("--out is needed to train")
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    codec = synthetic_codec()
    t0 = time.time()
    broad = make_style_clips(a.broad, "broad", seed=a.seed)
    x, ctx = codec.encode(broad.video), broad.context(SYNTHETIC_TEXT_DIM)
    print(f"{a.broad} broad clips encoded ({time.time() - t0:.0f}s)", flush=True)
    torch.manual_seed(a.seed + 10)
    if a.backbone == "unet":
        config = family_config("synthetic", latent_channels=SYNTHETIC_LATENT_CHANNELS, parameterisation="flow",
                               **unet_fields(a.unet_widths))
    else:
        config = family_config("synthetic", latent_channels=SYNTHETIC_LATENT_CHANNELS, parameterisation="flow",
                               width=a.width, depth=a.depth, heads=a.heads, local_conv=bool(a.local_conv),
                               block_conv=bool(a.block_conv), patch_size=(1, a.patch, a.patch))
    model = build_domain_model(config).to(a.device)
    ema = copy.deepcopy(model).requires_grad_(False)
    live, avg = list(model.parameters()), list(ema.parameters())
    n_params = sum(p.numel() for p in live)
    print(f"prior: {n_params:,} parameters", flush=True)

    command = shlex.join(["python", "-m", "devtools.train_prior", *(sys.argv[1:] if argv is None else argv)])
    n, c, t, h, w = x.shape
    # the still-frame stage sees each clip's frames as one-frame clips with the clip's caption
    stages = [("prior_image", x.permute(0, 2, 1, 3, 4).reshape(n * t, c, 1, h, w), ctx.repeat_interleave(t, 0),
               a.image_steps, a.image_batch, a.image_lr), ("prior", x, ctx, a.steps, a.batch, a.lr)]
    for name, data, text, steps, batch, lr in stages:
        if not steps:
            continue
        every = max(steps // max(a.snapshots, 1), 1)

        def batch_fn(step, g, bs, data=data, text=text):
            idx = torch.randint(0, data.shape[0], (bs,), generator=g)
            return {"x0": data[idx], "context": text[idx]}

        def on_step(step, loss, name=name, steps=steps, every=every):
            with torch.no_grad():
                decay = min(a.ema, (1 + step) / (10 + step))
                for p_avg, p in zip(avg, live):
                    p_avg.lerp_(p.detach(), 1.0 - decay)
            if step % 100 == 0:
                print(f"{name} step {step}/{steps} loss {loss:.4f} ({time.time() - t0:.0f}s)", flush=True)
            if step % every == 0 or step == steps:
                path = os.path.join(a.out, f"{name}_{step:05d}.safetensors")
                save_domain_model(path, ema, {"data": "broad synthetic clips", "steps": step, "role": "prior",
                                              "stage": "still frames" if name == "prior_image" else "clips",
                                              "prior_recipe": recipe_text(a), "made_by": command})

        cfg = TrainConfig(steps=steps, lr=lr, batch_size=batch, seed=a.seed, cond_dropout=0.1,
                          warmup_steps=a.warmup, lr_schedule="cosine", sigma_sampling="flow_shift",
                          flow_distribution="uniform", flow_shift=a.train_shift)
        Trainer(cfg).run(model, model, batch_fn, "flow", on_step=on_step)
    print(f"done in {time.time() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
