"""Per-step cost of the Score Composer against native CFG on the prior alone, inside a real ComfyUI.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/composer_cost.py [--steps 6] [--repeats 3]

For tiny Wan 2.1-architecture prior/domain pairs at several size ratios, on the same latent:

* native: CFGGuider on the prior (one forward of batch 2 per step: cond + uncond);
* composer: VA_ScoreComposer (one batched cond/uncond forward of the domain model + one prior forward of batch 1);
* ideal ratio: (prior forward at batch 1 + domain forward at batch 2) / prior forward at batch 2, from the
  forward times measured inside the same runs;
* overhead: time per step outside the model forwards (guider, composition, sampler), composer minus native.

All numbers of a table come from one run, interleaved, median of ``--repeats``, after one warm-up run.
Times are process CPU time on one thread (``--threads``), which other programs on a shared machine do not
disturb. Needs ComfyUI (the composer is a ComfyUI guider); run it with ComfyUI's Python.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
import _root  # noqa: E402,F401  (the repository root on sys.path)

from devtools.headless import NO_HOST_HELP, Host, find_comfyui  # noqa: E402


def tiny_wan(host, seed, dim, layers):
    import comfy.sd

    sd = host.pack_module("nodes.demo").tiny_wan_state_dict(seed, layers, dim=dim, ffn_mult=4)
    count = sum(v.numel() for v in sd.values())  # the loader consumes the dict
    return comfy.sd.load_diffusion_model_state_dict(sd), count


def timed(model, log):
    m = model.clone()

    def wrapper(apply_model, args):
        t0 = time.process_time()
        out = apply_model(args["input"], args["timestep"], **args["c"])
        log.append((args["input"].shape[0], time.process_time() - t0))
        return out

    m.set_model_unet_function_wrapper(wrapper)
    return m


def run(host, guider, model, latent, steps):
    sigmas = host.call("BasicScheduler", model, "simple", steps, 1.0)[0]
    sampler = host.call("KSamplerSelect", "euler")[0]
    noise = host.call("RandomNoise", 0)[0]
    t0 = time.process_time()
    host.call("SamplerCustomAdvanced", noise, guider, sampler, sigmas, latent)
    return (time.process_time() - t0) / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = find_comfyui()
    if root is None:
        sys.exit(NO_HOST_HELP)
    host = Host(root)
    import comfy.utils

    comfy.utils.set_progress_bar_global_hook(None)
    torch.manual_seed(0)
    pos = [[torch.randn(1, 16, 4096), {}]]
    neg = [[torch.randn(1, 16, 4096), {}]]
    latent = {"samples": torch.zeros(1, 16, (args.frames - 1) // 4 + 1, args.size // 8, args.size // 8)}
    prior, prior_params = tiny_wan(host, 1, 512, 8)
    pairs = [("1 block x 128", 128, 1), ("2 blocks x 128", 128, 2), ("4 blocks x 256", 256, 4),
             ("8 blocks x 384", 384, 8)]
    print(f"prior: 8 blocks x 512 ({prior_params / 1e6:.1f}M params); latent {list(latent['samples'].shape)}; "
          f"{args.steps} euler steps; median of {args.repeats}; torch threads {torch.get_num_threads()}\n")
    print("| domain model | params (% of prior) | native s/step | composer s/step | measured ratio | ideal ratio "
          "| native overhead ms/step | composer overhead ms/step |")
    print("|---|---|---|---|---|---|---|---|")
    for label, dim, layers in pairs:
        domain, d_params = tiny_wan(host, 2, dim, layers)
        res = {"native": [], "composer": [], "ideal": [], "ov_n": [], "ov_c": []}
        for rep in range(args.repeats + 1):
            log_n = []
            p = timed(prior, log_n)
            native = host.call("CFGGuider", p, pos, neg, 5.0)[0]
            t_n = run(host, native, p, latent, args.steps)
            log_c = []
            d, p2 = timed(domain, log_c), timed(prior, log_c)
            comp = host.call("VA_ScoreComposer", d, p2, pos, neg, 0.2, 5.0, 1.0)[0]
            t_c = run(host, comp, d, latent, args.steps)
            prior_b2 = statistics.median(t for b, t in log_n if b == 2)
            # in the composer run, batch-1 calls are the prior, batch-2 calls the domain model
            prior_b1 = statistics.median(t for b, t in log_c if b == 1)
            domain_b2 = statistics.median(t for b, t in log_c if b == 2)
            if rep == 0:  # warm-up
                continue
            res["native"].append(t_n)
            res["composer"].append(t_c)
            res["ideal"].append((prior_b1 + domain_b2) / prior_b2)
            res["ov_n"].append(t_n - sum(t for _, t in log_n) / args.steps)
            res["ov_c"].append(t_c - sum(t for _, t in log_c) / args.steps)
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"| {label} | {d_params / 1e6:.1f}M ({100 * d_params / prior_params:.1f}%) | {med['native']:.3f} | "
              f"{med['composer']:.3f} | {med['composer'] / med['native']:.2f} | {med['ideal']:.2f} | "
              f"{1000 * med['ov_n']:.1f} | {1000 * med['ov_c']:.1f} |")


if __name__ == "__main__":
    main()
