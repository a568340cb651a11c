"""The tiny instruction demos' graphs, measured: the shipped bases alone and with their adapters, run through the
real nodes on many held-out scenes, each with its two instructions (phases swapped), scored phase by phase with the
miniature's tracker (``tvp_task.phase_correct``).

* FCA on the Wan bases (turns, single-phase): Tiny Instruction Models / Scene / Prompt / Latent, Load Adapters,
  Initial Frames Conditioning, KSampler, VAE Decode;
* AID on the SVD-architecture base (svd-aid): Tiny Instruction Models / Encoders / Scene / Latent,
  SVD_img2vid_Conditioning, MLLM State Prompt, Load Adapters, AID Conditioning, Dual CFG Guider with
  SamplerCustomAdvanced; the base alone with KSampler (image CFG).

    COMFYUI_PATH=/path/to/ComfyUI python -m devtools.tvp_demo --scenes 32          # all bases, a few minutes
    COMFYUI_PATH=/path/to/ComfyUI python -m devtools.tvp_demo --bases svd-aid --sample-seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from devtools import tvp_task as tvp

# the demo workflows' adapters for each base
ADAPTERS = {**{base: files[1] for base, files in tvp.DEMO_FILES.items()}, tvp.AID_DEMO_BASE: tvp.AID_DEMO_FILES[1]}


def _run(cls, **inputs):
    out = cls.execute(**inputs)
    return out.result if hasattr(out, "result") else out


def graph_videos(host, base: str, scenes, sample_seed: int = 0, fca: bool = True, pair: str = tvp.DEMO_PAIRS[0],
                 text_cfg: float = tvp.AID_DEMO_TEXT_CFG) -> dict:
    """``{"alone": [N, T, 3, H, W], "fca": ...}`` for scene numbers ``scenes`` (two instructions each, so N is
    twice their count) and the scenes' plans, sampled as the demo workflow does (AID's graph for the svd-aid base:
    :func:`aid_graph_videos`)."""
    if base == tvp.AID_DEMO_BASE:
        return aid_graph_videos(host, scenes, sample_seed, aid=fca, pair=pair, text_cfg=text_cfg)
    import nodes as core

    m = host.nodes.NODE_CLASS_MAPPINGS
    model, vae = _run(m["VA_TinyInstructionModels"], base=base)
    adapted = _run(m["VA_LoadAdapter"], model=model, adapter_name=ADAPTERS[base], strength=1.0, frames=0)[0] if fca else None
    out = {"alone": [], "fca": []}
    plans = []
    for s in scenes:
        first, *instructions, _, _ = _run(m["VA_TinyInstructionScene"], seed=int(s), pair=pair)
        plans += tvp.demo_scene(int(s), pair).plans
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


def aid_scene_graph(host, model, vae, adapted, scene: int, sample_seed: int = 0, aid: bool = True,
                    image_cfg: float = tvp.AID_DEMO_IMAGE_CFG, text_cfg: float = tvp.AID_DEMO_TEXT_CFG,
                    pair: str = tvp.DEMO_PAIRS[0]) -> dict:
    """The AID demo workflow's nodes for one scene: ``{"alone": frames [T, H, W, 3] of the base alone (KSampler,
    image CFG), "aid": [frames of instruction 1, of instruction 2], "conditioning": [(positive, negative) of AID
    Conditioning per instruction], "states": [schedule per instruction], "latent": the sampled LATENT's input}``."""
    import nodes as core

    clip, clip_vision, mllm = host.call("VA_TinyInstructionEncoders", model=model)
    first, *instructions, _, _ = host.call("VA_TinyInstructionScene", seed=int(scene), pair=pair)
    pos, neg, _ = host.call("SVD_img2vid_Conditioning", clip_vision=clip_vision, init_image=first, vae=vae, width=32,
                            height=32, video_frames=8, motion_bucket_id=127, fps=6, augmentation_level=0.0)
    (latent,) = host.call("VA_TinyInstructionLatent", vae=vae, image=first, frames=8)
    (alone,) = core.common_ksampler(model, sample_seed, tvp.DEMO_STEPS, image_cfg, "euler", "simple", pos, neg, latent)
    out = {"alone": vae.decode(alone["samples"]), "aid": [], "conditioning": [], "states": [], "latent": latent}
    if not aid:
        return out
    (noise,) = host.call("RandomNoise", noise_seed=sample_seed)
    (sampler,) = host.call("KSamplerSelect", sampler_name="euler")
    (sigmas,) = host.call("BasicScheduler", model=adapted, scheduler="simple", steps=tvp.DEMO_STEPS, denoise=1.0)
    for text in instructions:
        _, schedule, _ = host.call("VA_MLLMStatePrompt", image=first, instruction=text, states=2, frames=8, mllm=mllm,
                                   seed=0, max_tokens=512, temporal_stride=1)
        p, n, _ = host.call("VA_AIDConditioning", positive=pos, negative=neg, clip=clip, instruction=text,
                            states=schedule, video_frames=8, model=adapted)
        guider = host.call("VA_DualCFGGuider", model=adapted, positive=p, negative=n, image_cfg=image_cfg,
                           text_cfg=text_cfg)[0]
        sampled = host.call("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                            latent_image=latent)[0]
        out["aid"].append(vae.decode(sampled["samples"]))
        out["conditioning"].append((p, n))
        out["states"].append(schedule)
    return out


def aid_graph_videos(host, scenes, sample_seed: int = 0, aid: bool = True, pair: str = tvp.DEMO_PAIRS[0],
                     text_cfg: float = tvp.AID_DEMO_TEXT_CFG) -> dict:
    """``{"alone": [N, T, 3, H, W], "aid": ...}`` for scene numbers ``scenes`` (two instructions each; the base alone
    reads no instruction, so its one video per scene is scored against both) and the scenes' plans."""
    model, vae = host.call("VA_TinyInstructionModels", base=tvp.AID_DEMO_BASE)
    adapted = host.call("VA_LoadAdapter", model=model, adapter_name=ADAPTERS[tvp.AID_DEMO_BASE], strength=1.0,
                        frames=0)[0] if aid else None
    out = {"alone": [], "aid": []}
    plans = []
    for s in scenes:
        plans += tvp.demo_scene(int(s), pair).plans
        got = aid_scene_graph(host, model, vae, adapted, int(s), sample_seed, aid, text_cfg=text_cfg, pair=pair)
        out["alone"] += [got["alone"].permute(0, 3, 1, 2)] * 2
        out["aid"] += [v.permute(0, 3, 1, 2) for v in got["aid"]]
    return {k: torch.stack(v) for k, v in out.items() if v}, plans


def scores(videos: torch.Tensor, plans) -> dict:
    """Phase-by-phase accuracy: first phase, second phase (of the two-phase instructions; None without any), all
    phases."""
    right = [tvp.phase_correct(v, p) for v, p in zip(videos, plans)]
    n, two = len(right), [r for r in right if len(r) > 1]
    return {"phase 1": sum(r[0] for r in right) / n, "phase 2": sum(r[1] for r in two) / len(two) if two else None,
            "both": sum(all(r) for r in right) / n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=32, help="held-out scenes (two instructions each)")
    ap.add_argument("--first-scene", type=int, default=0)
    ap.add_argument("--sample-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--bases", nargs="+", default=list(ADAPTERS))
    ap.add_argument("--pair", choices=tvp.DEMO_PAIRS, default=tvp.DEMO_PAIRS[0],
                    help="the scenes' two instructions (Tiny Instruction Scene's pair)")
    ap.add_argument("--text-cfg", type=float, default=tvp.AID_DEMO_TEXT_CFG,
                    help="svd-aid: the Dual CFG Guider's text_cfg (image_cfg stays 1.5)")
    ap.add_argument("--per-video", action="store_true", help="also print which videos follow their instruction")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    from devtools.harness import get_host

    host = get_host()
    torch.set_num_threads(1)
    results = {}
    print(f"| base | row | phase 1 | phase 2 | both phases | ({a.scenes} scenes x 2 instructions ({a.pair}), sample "
          f"seeds {a.sample_seeds}) |")
    print("|---|---|---|---|---|")
    for base in a.bases:
        per_seed = {}
        for seed in a.sample_seeds:
            t0 = time.time()
            videos, plans = graph_videos(host, base, range(a.first_scene, a.first_scene + a.scenes), seed, pair=a.pair,
                                         text_cfg=a.text_cfg)
            if a.per_video:
                for row, v in videos.items():
                    right = ["".join("1" if ok else "0" for ok in tvp.phase_correct(x, p)) for x, p in zip(v, plans)]
                    print(f"  {base} seed {seed} {row}: " + " ".join(f"{a.first_scene + i // 2}:{right[i]},{right[i + 1]}"
                                                                      for i in range(0, len(right), 2)), flush=True)
            for row, v in videos.items():
                per_seed.setdefault(row, []).append(scores(v, plans))
            print(f"  ({base}, seed {seed}: {time.time() - t0:.0f} s)", flush=True)
        for row, runs in per_seed.items():
            cells = []
            for key in ("phase 1", "phase 2", "both"):
                vals = [r[key] for r in runs if r[key] is not None]
                if not vals:
                    cells.append("–")
                    continue
                mean = sum(vals) / len(vals)
                spread = (max(vals) - min(vals)) / 2
                cells.append(f"{mean:.3f}" + (f" ± {spread:.3f}" if len(vals) > 1 else ""))
            label = "base alone" if row == "alone" else f"+ {row.upper()} ({ADAPTERS[base]})"
            print(f"| {base} | {label} | " + " | ".join(cells) + " |", flush=True)
            results[f"{base}/{row}"] = runs
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
