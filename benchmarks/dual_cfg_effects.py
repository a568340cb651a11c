"""What image_cfg (s_V) and text_cfg (s_T) of the Dual CFG Guider do, measured on a tiny random-weight Wan 2.1
image-to-video model inside ComfyUI (CPU, about a minute):

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/dual_cfg_effects.py [--seeds 3]

For each (s_V, s_T) it samples 8 Euler steps from WanImageToVideo's conditionings and prints, as mean ± spread
over seeds:

* image term: ||D(image) - D(no image)|| / ||D(no image)|| at the first step, for each CLIP-vision choice of the
  no-image branch (how much of the image condition the guidance pushes along);
* first-frame error: distance of the sampled first latent frame to the start image's latent, relative to
  the latent's norm (lower: the video follows the start image more closely);
* text sensitivity: distance between the videos sampled with two different prompts (same noise, same image),
  relative to their norm (higher: the text steers more).

The model's weights are random, so only the directions of change mean something, not the values.
"""

from __future__ import annotations

import argparse
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
import _root  # noqa: E402,F401  (the repository root on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from devtools.harness import get_host
    from devtools.tiny_models import toy_clip_vision_output as clip_vision
    from devtools.harness import cond, probe
    from devtools.tiny_models import WAN_TEXT_DIM, TinyModels, ToyVAE

    host = get_host()
    tiny = TinyModels(host)
    model = tiny.load("tiny_wan_i2v.safetensors")
    guidance = host.pack_module("nodes.guidance")
    vae = ToyVAE()

    def run(seed, s_v, s_t, prompt_seed):
        start = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(100 + seed))
        pos, neg, latent = host.call("WanImageToVideo", cond(WAN_TEXT_DIM, prompt_seed), cond(WAN_TEXT_DIM, 1), vae,
                                     32, 32, 9, 1, start_image=start, clip_vision_output=clip_vision(seed))
        guider = host.call("VA_DualCFGGuider", model, pos, neg, s_v, s_t)[0]
        sigmas = host.call("BasicScheduler", model, "simple", args.steps, 1.0)[0]
        out = host.call("SamplerCustomAdvanced", host.call("RandomNoise", seed)[0], guider,
                        host.call("KSamplerSelect", "euler")[0], sigmas, {"samples": latent["samples"]})[0]["samples"]
        target = pos[0][1]["concat_latent_image"][:, :, :1]
        return out, float((out[:, :, :1] - target).norm() / target.norm()), pos, neg, latent["samples"]

    def stat(values):
        t = torch.tensor(values)
        return f"{t.mean():.3f} ± {t.std():.3f}" if len(values) > 1 else f"{t.mean():.3f}"

    print("\nimage term at the first step, ||D(image) - D(no image)|| / ||D(no image)||, by CLIP-vision choice")
    print("| no-image branch gets CLIP-vision | image term |\n|---|---|")
    for choice in guidance.CLIP_VISION_CHOICES:
        vals = []
        for seed in range(args.seeds):
            _, _, pos, neg, latent = run(seed, 1.0, 1.0, 0)
            none = guidance.without_image(neg, choice)
            d_img = probe(host, host.call("CFGGuider", model, neg, neg, 1.0)[0], model, latent, sigma_index=0)["d"]
            d_no = probe(host, host.call("CFGGuider", model, none, none, 1.0)[0], model, latent, sigma_index=0)["d"]
            vals.append(float((d_img - d_no).detach().norm() / d_no.detach().norm()))
        print(f"| {choice} | {stat(vals)} |")

    print(f"\nsampled videos ({args.steps} Euler steps, {args.seeds} seeds)")
    print("| image_cfg | text_cfg | first-frame error | text sensitivity |\n|---|---|---|---|")
    for s_v in (1.0, 2.0, 4.0):
        for s_t in (1.0, 3.0, 6.0):
            err, sens = [], []
            for seed in range(args.seeds):
                a, e, *_ = run(seed, s_v, s_t, 0)
                b, _, *_ = run(seed, s_v, s_t, 7)
                err.append(e)
                sens.append(float((a - b).norm() / (0.5 * (a.norm() + b.norm()))))
            print(f"| {s_v:g} | {s_t:g} | {stat(err)} | {stat(sens)} |")


if __name__ == "__main__":
    main()
