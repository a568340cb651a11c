"""FCA on a small random-weight Wan 2.1 (real ComfyUI architecture, CPU): the per-step cost of FCA against the base
model, and the two inits of the branch (the paper's output scale 0.1, and the zero out-projection variant).

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/fca_cost.py [--quick]

* cost: KSampler (euler, CFG 5: cond and uncond in one batch) on the base model and on the model with a fresh
  FCA set (Load Adapters path: ``attach_adapters``); seconds per step (process time, median of the repeats), and
  the number of initial-frames passes per run;
* init: Train Adapters (kind ``fca``) on clips whose later frames follow the first, for both inits and several
  seeds; the score is the denoising error on the training clips at fixed noise and levels (0.3, 0.5, 0.7)
  relative to the frozen base model's (lower is better).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
import _root  # noqa: E402,F401  (the repository root on sys.path)

from devtools.headless import NO_HOST_HELP, Host, find_comfyui  # noqa: E402


def tiny_wan(host, seed, dim, layers):
    import comfy.sd

    sd = host.pack_module("nodes.demo").tiny_wan_state_dict(seed, layers, dim=dim, ffn_mult=4)
    return comfy.sd.load_diffusion_model_state_dict(sd)


def text(seed, tokens=16):
    return [[torch.randn(1, tokens, 4096, generator=torch.Generator().manual_seed(seed)), {}]]


def cost(host, args):
    attach = host.pack_module("nodes.binding.attach")
    fca = host.pack_module("adapters.fca")
    model = tiny_wan(host, 1, args.dim, args.layers)
    frames = (args.frames - 1) // 4 + 1
    h = args.size // 8
    latent = {"samples": torch.zeros(1, 16, frames, h, h)}
    first = torch.randn(1, 16, 1, h, h, generator=torch.Generator().manual_seed(0))
    conds = fca.initial_frame_conds(first, 1)
    pos, neg = attach.add_adapter_conds(text(0), conds), attach.add_adapter_conds(text(1), conds)
    torch.manual_seed(0)
    ad = attach.new_adapters("fca", model, {"frames": frames})
    patched = attach.attach_adapters(model, ad, 1.0)
    times = {"base": [], "fca": []}
    for rep in range(args.repeats + 1):
        for name, m in (("base", model), ("fca", patched)):
            t0 = time.process_time()
            host.call("KSampler", m, 0, args.steps, 5.0, "euler", "simple", pos, neg, latent, 1.0)
            if rep:  # the first round warms up
                times[name].append((time.process_time() - t0) / args.steps)
    base, withf = statistics.median(times["base"]), statistics.median(times["fca"])
    n_fca = sum(p.numel() for p in ad.parameters())
    n_base = sum(p.numel() for p in model.model.diffusion_model.parameters())
    print(f"Wan {args.layers} blocks x {args.dim}, latent {list(latent['samples'].shape)} "
          f"({frames * (h // 2) ** 2} video tokens), {args.steps} euler steps, CFG batch of 2, median of "
          f"{args.repeats}, torch threads {torch.get_num_threads()}")
    print(f"| model | params | s/step | ratio |\n|---|---|---|---|\n| base | {n_base / 1e6:.2f}M | {base:.4f} | 1.00 |\n"
          f"| + FCA | +{n_fca / 1e6:.2f}M ({100 * n_fca / n_base:.0f} %) | {withf:.4f} | {withf / base:.2f} |")
    print(f"initial-frames passes: {ad.initial_frame_passes} in {args.repeats + 1} runs of {args.steps} steps")


def init_study(host, args):
    from safetensors.torch import load_file  # noqa: F401

    model = tiny_wan(host, 1, 128, 2)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 16, 1, 4, 4, generator=g)
    clips = {"samples": base + 0.3 * torch.randn(2, 16, 3, 4, 4, generator=g)}
    positive = text(0, 8) + text(1, 8)
    x0 = model.model.process_latent_in(clips["samples"])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    ctx = torch.cat([positive[0][0], positive[1][0]])
    fwd = host.pack_module("nodes.binding.attach")
    import comfy.model_management
    import comfy.patcher_extension

    def error(m, conds):
        comfy.model_management.load_models_gpu([m])
        total = 0.0
        for s in (0.3, 0.5, 0.7):
            opts = dict(m.model_options["transformer_options"])
            opts["wrappers"] = {}
            comfy.patcher_extension.merge_nested_dicts(opts["wrappers"], m.wrappers, copy_dict1=False)
            opts["cond_or_uncond"] = [0, 0]
            with torch.no_grad():
                d = m.model.apply_model((1 - s) * x0 + s * noise, torch.tensor([s, s]), c_crossattn=ctx,
                                        transformer_options=opts,
                                        **{fwd.ADAPTER_COND_PREFIX + k: v for k, v in conds.items()})
            total += float(((d - x0) ** 2).mean())
        return total

    base_err = None
    rows = []
    for init in ("scale", "zero"):
        scores = []
        for seed in range(args.seeds):
            settings = f'{{"queries_per_frame": 2, "text_width": 32, "text_heads": 2, "init": "{init}"}}'
            out = host.call("VA_TrainAdapter", model, clips, positive, "fca", 0, args.train_steps, 3e-3, 2, seed,
                            "none", 0, f"bench/fca_init_{init}_{seed}", settings=settings)
            ad = out[0].get_additional_models_with_key("video_adapters")[-1].model
            conds = host.pack_module("adapters.registry").get("fca").training_conds(ad, x0, torch.tensor([0, 1]))
            if base_err is None:
                base_err = error(model, conds)
            scores.append(error(out[0], conds) / base_err)
        rows.append((init, scores))
    print(f"\ninit study: {args.train_steps} steps, lr 3e-3, batch 2, {args.seeds} seeds; denoising error on the "
          "training clips relative to the frozen base (lower is better)")
    print("| init | per seed | mean |\n|---|---|---|")
    for init, s in rows:
        print(f"| {init} | {', '.join(f'{v:.3f}' for v in s)} | {statistics.mean(s):.3f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    args.dim, args.layers = (256, 4) if args.quick else (512, 8)
    args.frames, args.size = (17, 64) if args.quick else (33, 128)
    args.steps, args.repeats = (3, 2) if args.quick else (4, 3)
    args.seeds, args.train_steps = (2, 40) if args.quick else (3, 150)
    torch.set_num_threads(args.threads)
    root = find_comfyui()
    if root is None:
        sys.exit(NO_HOST_HELP)
    base = tempfile.mkdtemp(prefix="va_fca_bench_")
    host = Host(root, model_dirs={"video_adapters": os.path.join(base, "video_adapters")},
                output_dir=os.path.join(base, "output"))
    import comfy.utils

    comfy.utils.set_progress_bar_global_hook(None)
    cost(host, args)
    init_study(host, args)


if __name__ == "__main__":
    main()
