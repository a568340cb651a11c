"""The FCA tiny demo's graph, measured: the shipped bases alone and with their FCA adapters, run through the real
nodes (Tiny Instruction Models / Scene / Prompt / Latent, Load Adapters, Initial Frames Conditioning, KSampler, VAE
Decode) on many held-out scenes, each with its two instructions (phases swapped), scored phase by phase with the
miniature's tracker (``tvp_task.phase_correct``).

    COMFYUI_PATH=/path/to/ComfyUI python -m devtools.tvp_demo --scenes 32          # both bases, about 1 min
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from devtools import tvp_task as tvp

ADAPTERS = {base: files[1] for base, files in tvp.DEMO_FILES.items()}  # the demo workflow's


def _run(cls, **inputs):
    out = cls.execute(**inputs)
    return out.result if hasattr(out, "result") else out


def graph_videos(host, base: str, scenes, sample_seed: int = 0, fca: bool = True) -> dict:
    """``{"alone": [N, T, 3, H, W], "fca": ...}`` for scene numbers ``scenes`` (two instructions each, so N is
    twice their count) and the scenes' plans, sampled as the demo workflow does."""
    import nodes as core

    m = host.nodes.NODE_CLASS_MAPPINGS
    model, vae = _run(m["VA_TinyInstructionModels"], base=base)
    adapted = _run(m["VA_LoadAdapter"], model=model, adapter_name=ADAPTERS[base], strength=1.0, frames=0)[0] if fca else None
    out = {"alone": [], "fca": []}
    plans = []
    for s in scenes:
        first, *instructions, _, _ = _run(m["VA_TinyInstructionScene"], seed=int(s))
        plans += tvp.demo_scene(int(s)).plans
        latent = _run(m["VA_TinyInstructionLatent"], vae=vae, image=first, frames=8)[0]
        for text in instructions:
            pos, neg = _run(m["VA_TinyInstructionPrompt"], model=model, instruction=text)
            rows = [("alone", model, pos, neg)]
            if fca:
                pos_f, neg_f = _run(m["VA_InitialFramesConditioning"], positive=pos, negative=neg, vae=vae, image=first,
                                    initial_frames=1, noise_step=1, seed=0)
                rows.append(("fca", adapted, pos_f, neg_f))
            for name, mdl, p, n in rows:
                (samples,) = core.common_ksampler(mdl, sample_seed, tvp.DEMO_STEPS, tvp.DEMO_CFG, "euler", "simple", p, n, latent)
                frames = vae.decode(samples["samples"])[0]  # [T, H, W, 3]
                out[name].append(frames.permute(0, 3, 1, 2))
    return {k: torch.stack(v) for k, v in out.items() if v}, plans


def scores(videos: torch.Tensor, plans) -> dict:
    """Phase-by-phase accuracy: first phase, second phase, both."""
    right = [tvp.phase_correct(v, p) for v, p in zip(videos, plans)]
    n = len(right)
    return {"phase 1": sum(r[0] for r in right) / n, "phase 2": sum(r[1] for r in right) / n,
            "both": sum(all(r) for r in right) / n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=32, help="held-out scenes (two instructions each)")
    ap.add_argument("--first-scene", type=int, default=0)
    ap.add_argument("--sample-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--bases", nargs="+", default=list(ADAPTERS))
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    from devtools.harness import get_host

    host = get_host()
    torch.set_num_threads(1)
    results = {}
    print(f"| base | row | phase 1 | phase 2 | both phases | ({a.scenes} scenes x 2 instructions, sample seeds "
          f"{a.sample_seeds}) |")
    print("|---|---|---|---|---|")
    for base in a.bases:
        per_seed = {}
        for seed in a.sample_seeds:
            t0 = time.time()
            videos, plans = graph_videos(host, base, range(a.first_scene, a.first_scene + a.scenes), seed)
            for row, v in videos.items():
                per_seed.setdefault(row, []).append(scores(v, plans))
            print(f"  ({base}, seed {seed}: {time.time() - t0:.0f} s)", flush=True)
        for row, runs in per_seed.items():
            cells = []
            for key in ("phase 1", "phase 2", "both"):
                vals = [r[key] for r in runs]
                mean = sum(vals) / len(vals)
                spread = (max(vals) - min(vals)) / 2
                cells.append(f"{mean:.3f}" + (f" ± {spread:.3f}" if len(vals) > 1 else ""))
            label = "base alone" if row == "alone" else f"+ FCA ({ADAPTERS[base]})"
            print(f"| {base} | {label} | " + " | ".join(cells) + " |", flush=True)
            results[f"{base}/{row}"] = runs
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
