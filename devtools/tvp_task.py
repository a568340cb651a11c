"""A miniature text-video prediction (TVP) task: the world of ``adapters.instruction_world`` (scenes,
instructions, rendering, the stand-in text encoder, the latent code; every name of it is re-exported here) and the
benchmarks' metrics.

Public TVP data (Something-Something v2, Bridge, Epic-Kitchens) and the I3D network behind FVD are out of
reach of a CPU test run, so the task is built in miniature.

Metrics (see each function)
    :func:`clip_features` + :func:`frechet_distance` (the FVD stand-in, with :func:`noise_floor`),
    :func:`instruction_accuracy` (did the named object move as instructed, phase by phase?),
    :func:`first_frame_psnr` and :func:`future_mse`; :func:`summary` returns all of them at once.
"""

from __future__ import annotations

import math

import torch

from adapters import instruction_world as _world
from devtools.metrics import frechet_distance

# the world's names, private helpers included (the benchmarks and tests reach some of them through this module)
globals().update({k: v for k, v in vars(_world).items() if not (k.startswith("__") and k.endswith("__"))})

# ----------------------------------------------------------------------------------------------------------
# tracking and instruction accuracy

TRACK_TOLERANCE = 0.4  # colour distance at which a pixel stops counting (palette colours are >= 0.6 apart)


def colour_weights(videos: torch.Tensor, rgb: torch.Tensor, tolerance: float = TRACK_TOLERANCE) -> torch.Tensor:
    """Soft colour mask: ``videos [..., 3, H, W]``, ``rgb [P, 3]`` -> ``[..., P, H, W]`` weights
    ``clamp(1 - |pixel - colour| / tolerance, 0, 1)``: 1 on the exact colour, 0 from ``tolerance`` away
    (Euclidean distance in RGB). Half-covered edge pixels and blends of two colours fall mostly outside, so a
    blurred or noisy object is measured by its core."""
    v = videos.clamp(0.0, 1.0).unsqueeze(-4)  # [..., 1, 3, H, W]
    d = (v - rgb.view(-1, 3, 1, 1)).square().sum(-3).sqrt()
    return (1.0 - d / tolerance).clamp_min(0.0)


def _moments(w: torch.Tensor):
    """Mass ``[...]``, centroid ``[..., 2]`` (x, y; pixels) and mean squared spread ``[...]`` of weights
    ``[..., H, W]``. Where the mass is zero the centroid is the frame centre."""
    h, wd = w.shape[-2:]
    ys = torch.arange(h, dtype=w.dtype) + 0.5
    xs = torch.arange(wd, dtype=w.dtype) + 0.5
    mass = w.sum((-1, -2))
    safe = mass.clamp_min(1e-6)
    cx = (w.sum(-2) * xs).sum(-1) / safe
    cy = (w.sum(-1) * ys).sum(-1) / safe
    ex2 = (w.sum(-2) * xs * xs).sum(-1) / safe
    ey2 = (w.sum(-1) * ys * ys).sum(-1) / safe
    spread = (ex2 - cx * cx + ey2 - cy * cy).clamp_min(0.0)
    empty = mass <= 1e-6
    cx = torch.where(empty, torch.full_like(cx, wd / 2), cx)
    cy = torch.where(empty, torch.full_like(cy, h / 2), cy)
    return mass, torch.stack([cx, cy], -1), spread


def track(video: torch.Tensor, colour: str, tolerance: float = TRACK_TOLERANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """Follow the object of palette ``colour`` in ``video [..., T, 3, H, W]``: its per-frame centroid
    ``[..., T, 2]`` (x, y in pixels, weighted by :func:`colour_weights`) and mass ``[..., T]`` (pixels)."""
    w = colour_weights(video, torch.tensor([PALETTE[colour]], dtype=video.dtype), tolerance)[..., 0, :, :]
    mass, centre, _ = _moments(w)
    return centre, mass


def phase_correct(video: torch.Tensor, plan: ClipPlan, tolerance: float = TRACK_TOLERANCE,
                  min_visible: float = 0.15, min_move: float = 0.4) -> list[bool]:
    """Whether each phase of ``plan`` happens in ``video [T, 3, H, W]`` (a prediction).

    The named object is tracked by colour (:func:`track`). Phase ``k`` (frames ``a = b_k`` to ``b = b_{k+1}``)
    is correct when the object is visible at both ends (tracked mass at least ``min_visible`` of its true
    area; a vanished object fails) and its centroid displacement ``d`` points the instructed way: the
    component along the instructed direction is at least ``min_move`` of the instructed distance and at
    least as large as the sideways component (within 45 degrees). Only start and end of a phase count, so
    a blurred in-between frame does not matter, while a still object (the repeated first frame), a wrong
    direction or a motion far too short fails."""
    if plan.target is None:
        raise ValueError("the plan has no instruction")
    obj = plan.target_object
    centre, mass = track(video, obj.colour, tolerance)
    visible = mass >= min_visible * obj.area
    out = []
    for (a, b), d in zip(plan.phases, plan.directions):
        ux, uy = DIRECTIONS[d]
        disp = centre[b] - centre[a]
        along = float(disp[0] * ux + disp[1] * uy)
        across = abs(float(disp[0] * uy - disp[1] * ux))
        out.append(bool(visible[a]) and bool(visible[b]) and along >= min_move * plan.distance and across <= along)
    return out


def object_fidelity(videos: torch.Tensor, plans: list[ClipPlan], found_share: float = 0.4,
                    keep_tolerance: float = 0.3, tolerance: float = TRACK_TOLERANCE, only=None) -> dict:
    """How well samples ``videos [N, T, 3, H, W]`` draw the objects of ``plans`` (a base model's gates).

    ``found``: the share of (object, frame) pairs where the tracker finds the object by its colour with a mass
    of at least ``found_share`` of its true area. ``kept``: the share of objects whose tracked mass and spread
    (the second moment, which tells a square from a triangle of the same area) stay within ``keep_tolerance``
    of their first-frame values in every frame: colour and shape kept over the clip. The real clips score 1 and 1;
    through the 16-channel :func:`task_code` 0.998 and 0.985 (the code softens edges, which the soft colour mask
    counts as partial pixels). ``only``: per clip, the colours to score (for instance those a caption names)."""
    found, kept, pairs, objects = 0, 0, 0, 0
    for i, (video, plan) in enumerate(zip(videos, plans)):
        for obj in plan.objects:
            if only is not None and obj.colour not in only[i]:
                continue
            w = colour_weights(video, torch.tensor([PALETTE[obj.colour]], dtype=video.dtype), tolerance)[:, 0]
            mass, _, spread = _moments(w)
            ok = mass >= found_share * obj.area
            found += int(ok.sum())
            pairs += len(ok)
            objects += 1
            if bool(ok.all()):
                dm = (mass / mass[0] - 1).abs().max()
                ds = (spread / spread[0].clamp_min(1e-6) - 1).abs().max()
                kept += int(bool(dm <= keep_tolerance) and bool(ds <= keep_tolerance))
    return {"found": found / max(pairs, 1), "kept": kept / max(objects, 1)}


def instruction_accuracy(videos: torch.Tensor, plans: list[ClipPlan], **kw) -> dict:
    """Instruction accuracy of predictions ``videos [N, T, 3, H, W]`` against ``plans``: per clip the
    fraction of phases done as instructed (:func:`phase_correct`; keywords are passed on) and whether all of
    them were. Returns ``{"score": mean fraction, "all_phases": fraction of clips fully right, "per_clip":
    [N] fractions, "per_clip_all": [N] bools}``. FVD-like distances cannot see this: a clip moving the right
    object the wrong way looks just as real."""
    per_clip, per_all = [], []
    for v, p in zip(videos, plans):
        ok = phase_correct(v, p, **kw)
        per_clip.append(sum(ok) / len(ok))
        per_all.append(all(ok))
    n = max(len(per_clip), 1)
    return {"score": sum(per_clip) / n, "all_phases": sum(per_all) / n, "per_clip": per_clip,
            "per_clip_all": per_all}


# ----------------------------------------------------------------------------------------------------------
# first-frame fidelity and future error


def first_frame_psnr(videos: torch.Tensor, first_frames: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """PSNR in dB (peak 1) of each prediction's frame 0 against the given first frame: ``videos [N, T, 3, H,
    W]``, ``first_frames [N, 3, H, W]`` -> ``[N]``, capped at ``max_db`` for identical frames. An
    image-to-video model is handed this frame, so it should keep it."""
    mse = (videos[:, 0].float() - first_frames.float()).square().flatten(1).mean(1)
    return (10.0 * torch.log10(1.0 / mse.clamp_min(10 ** (-max_db / 10)))).clamp_max(max_db)


def future_mse(videos: torch.Tensor, gt_videos: torch.Tensor) -> torch.Tensor:
    """Per-frame mean squared error of the predicted future against the ground truth: ``[N, T, 3, H, W]``
    twice -> ``[N, T - 1]`` (frames 1..T-1; frame 0 is the given one). Rewards being right pixel by pixel,
    which a plausible but different motion is not; blurry predictions score deceptively well here, which is
    why it is reported next to the distance and the instruction accuracy, not alone."""
    return (videos[:, 1:].float() - gt_videos[:, 1:].float()).square().flatten(2).mean(2)


# ----------------------------------------------------------------------------------------------------------
# clip features and the Frechet distance

FEATURE_NAMES: tuple[str, ...] = (
    "mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "saturation",
    "object_cover", "colour_purity", "colours_present",
    "spread", "area_instability", "gradient", "laplacian",
    "motion_energy", "flicker", "main_dx", "main_dy", "main_path", "main_jerk", "movers", "others_drift",
    "first_last_change",
)


def _clip_features_chunk(v: torch.Tensor, tolerance: float) -> torch.Tensor:
    n, t, _, h, w = v.shape
    size = float(max(h, w))
    pal = torch.tensor(list(PALETTE.values()), dtype=v.dtype)
    feats = []
    # appearance
    feats += list(v.mean((1, 3, 4)).unbind(1))
    feats += list(v.transpose(1, 2).flatten(2).std(2).unbind(1))
    feats.append((v.amax(2) - v.amin(2)).mean((1, 2, 3)))
    weights = colour_weights(v, pal, tolerance)  # [N, T, P, H, W]
    mass, centre, spread = _moments(weights)  # [N, T, P], [N, T, P, 2], [N, T, P]
    cover = mass.sum(2) / (h * w)  # [N, T]
    feats.append(cover.mean(1))
    bg = v[:, 0].flatten(2).median(2).values  # [N, 3]: the background fills most of the frame
    not_bg = ((v - bg[:, None, :, None, None]).square().sum(2).sqrt() > tolerance).float().sum((2, 3))  # [N, T]
    feats.append((mass.sum(2) / not_bg.clamp_min(1.0)).clamp_max(1.5).mean(1))
    min_mass = 0.005 * h * w
    present = (mass.mean(1) >= min_mass).float()  # [N, P]
    count = present.sum(1)
    feats.append(count)
    safe_count = count.clamp_min(1.0)
    # shape integrity
    # squared spread per unit area, 1/(2 pi) for a disc and 1/6 for a square whatever their size, averaged over
    # the frames where the colour covers at least min_mass (a frame where it has nearly vanished, a few stray
    # pixels far apart, would otherwise dominate), capped at 6 compact objects' worth (smeared over the frame
    # or split in two)
    seen = (mass >= min_mass).float()  # [N, T, P]
    ratio = spread / mass.clamp_min(1e-6)
    norm_spread = ((ratio * seen).sum(1) / seen.sum(1).clamp_min(1.0)).clamp_max(1.0)  # [N, P]
    feats.append((norm_spread * present).sum(1) / safe_count)
    instability = mass.std(1) / mass.mean(1).clamp_min(1e-6)
    feats.append((instability * present).sum(1) / safe_count)
    gx = (v[..., 1:] - v[..., :-1]).abs().mean((1, 2, 3, 4))
    gy = (v[..., 1:, :] - v[..., :-1, :]).abs().mean((1, 2, 3, 4))
    feats.append(gx + gy)
    lap = 4 * v[..., 1:-1, 1:-1] - v[..., :-2, 1:-1] - v[..., 2:, 1:-1] - v[..., 1:-1, :-2] - v[..., 1:-1, 2:]
    feats.append(lap.abs().mean((1, 2, 3, 4)))
    # motion
    step = (v[:, 1:] - v[:, :-1]).abs().mean((2, 3, 4))  # [N, T-1]
    feats.append(step.mean(1))
    feats.append(step.std(1) if t > 2 else torch.zeros(n))
    # fill frames where a present colour vanished with its mass-weighted mean centre (a jump shows up as jerk)
    tw = mass / mass.sum(1, keepdim=True).clamp_min(1e-6)
    mean_centre = (centre * tw[..., None]).sum(1, keepdim=True)
    centre = torch.where((mass > 1e-3)[..., None], centre, mean_centre)
    vel = centre[:, 1:] - centre[:, :-1]  # [N, T-1, P, 2]
    path = vel.norm(dim=-1).sum(1) * present / size  # [N, P]
    main = path.argmax(1)  # the colour that moves most
    idx = torch.arange(n)
    net = (centre[:, -1] - centre[:, 0])[idx, main] / size  # [N, 2]
    feats += [net[:, 0], net[:, 1], path[idx, main]]
    if t > 2:
        jerk = (vel[:, 1:] - vel[:, :-1]).norm(dim=-1).mean(1) / size  # [N, P]
        feats.append(jerk[idx, main])
    else:
        feats.append(torch.zeros(n))
    feats.append((path > 0.05).float().sum(1))
    feats.append(path.sum(1) - path[idx, main])
    feats.append((v[:, -1] - v[:, 0]).abs().mean((1, 2, 3)))
    return torch.stack(feats, 1)


def clip_features(videos: torch.Tensor, tolerance: float = TRACK_TOLERANCE, chunk: int = 128) -> torch.Tensor:
    """Fixed per-clip features for the Frechet distance: ``[N, T, 3, H, W]`` -> ``[N, F]`` float64, named by
    :data:`FEATURE_NAMES` (F = 23).

    FVD compares clips through a network trained on real video; this task's videos are simple enough to
    name what matters directly:

    * appearance (7): mean and spread of R, G, B and mean saturation: wrong colours, washed-out or dark
      predictions;
    * objects and colour (3): the fraction of the frame covered by palette colours, the "purity" (palette
      pixels per pixel that differs from the background: smeared colours and blends lower it) and the number
      of palette colours present;
    * shape integrity (4): the spatial spread of each colour per unit area (about 0.16 for a compact object of
      any size, more for a smeared or split one, capped at 1; frames where the colour has nearly vanished
      left out), the frame-to-frame variation of its mass (objects that shrink, grow or fade), the mean image
      gradient (sharp vs blurred) and the Laplacian energy (noise);
    * motion (9): the mean absolute frame difference and its variation over time (flicker), the net
      displacement (x, y), path length and jerk (mean second difference of the centroid: smooth or
      jittery) of the colour that moves most, the number of colours that move, how far the other colours
      drift (a still object should stay still), and the first-to-last frame change.

    Lengths are in units of the frame size. Scales differ between features: standardise them (see
    :func:`standardise`) before taking a distance."""
    if videos.dim() != 5:
        raise ValueError("videos must be [N, T, 3, H, W]")
    out = [_clip_features_chunk(videos[i:i + chunk].float(), tolerance).double()
           for i in range(0, videos.shape[0], chunk)]
    return torch.cat(out, 0) if out else torch.zeros(0, len(FEATURE_NAMES), dtype=torch.float64)


# The smallest spread each feature is measured in: about the smallest difference that is visible (0.01 of
# the colour range, 0.02 of the frame for lengths, a quarter of an object for counts). Features that hardly
# vary in the ground truth (the number of moving objects is always one, still objects never drift) would
# otherwise turn a barely visible change into a huge distance.
FEATURE_MIN_STD: tuple[float, ...] = (
    0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01,
    0.01, 0.02, 0.25,
    0.01, 0.02, 0.003, 0.005,
    0.002, 0.002, 0.02, 0.02, 0.02, 0.005, 0.25, 0.02,
    0.005,
)


def standardise(feats: torch.Tensor, reference: torch.Tensor, min_std=None) -> torch.Tensor:
    """``feats`` in units of ``reference``'s per-feature mean and standard deviation, so that every feature
    counts alike in the distance. The deviation is at least ``min_std`` (a number or one per feature;
    default :data:`FEATURE_MIN_STD` for :func:`clip_features`, else 1e-3)."""
    ref = reference.double()
    if min_std is None:
        min_std = FEATURE_MIN_STD if ref.shape[-1] == len(FEATURE_MIN_STD) else 1e-3
    floor = torch.as_tensor(min_std, dtype=torch.float64)
    return (feats.double() - ref.mean(0)) / torch.maximum(ref.std(0), floor)


def clip_distance(videos: torch.Tensor, reference_feats: torch.Tensor) -> float:
    """The benchmark's FVD stand-in: the Frechet distance of ``videos``' :func:`clip_features` to
    ``reference_feats``, both standardised by the reference."""
    return frechet_distance(standardise(clip_features(videos), reference_feats),
                            standardise(reference_feats, reference_feats))


def noise_floor(heldout_feats: torch.Tensor, reference_feats: torch.Tensor) -> float:
    """The distance a perfect predictor would get with these set sizes: the Frechet distance between two
    disjoint ground-truth sets of the same distribution (standardised as :func:`clip_distance` does)."""
    return frechet_distance(standardise(heldout_feats, reference_feats), standardise(reference_feats, reference_feats))


# ----------------------------------------------------------------------------------------------------------
# everything at once


def summary(pred_videos: torch.Tensor, plans: list[ClipPlan], gt_videos: torch.Tensor,
            heldout_feats: torch.Tensor) -> dict:
    """All metrics of predictions ``pred_videos [N, T, 3, H, W]`` (values are clamped to 0..1) made from the
    first frames and instructions of ``plans`` / ``gt_videos [N, T, 3, H, W]``, with ``heldout_feats`` the
    :func:`clip_features` of a disjoint reference set (``TVPBenchmark.reference``).

    Keys: ``fd`` (:func:`clip_distance`, lower is better), ``instruction_score`` and
    ``instruction_all_phases`` (:func:`instruction_accuracy`, higher is better), ``first_frame_psnr`` (dB,
    mean over clips), ``future_mse`` (mean over clips and future frames), ``future_mse_per_frame`` (list,
    frames 1..T-1) and ``clips``."""
    pred = pred_videos.detach().float().clamp(0.0, 1.0).cpu()
    gt = gt_videos.detach().float().cpu()
    if pred.shape != gt.shape or pred.shape[0] != len(plans):
        raise ValueError(f"predictions {tuple(pred.shape)}, ground truth {tuple(gt.shape)} and {len(plans)} plans "
                         "do not match")
    acc = instruction_accuracy(pred, plans)
    err = future_mse(pred, gt)
    return {
        "fd": clip_distance(pred, heldout_feats),
        "instruction_score": acc["score"],
        "instruction_all_phases": acc["all_phases"],
        "first_frame_psnr": float(first_frame_psnr(pred, gt[:, 0]).mean()),
        "future_mse": float(err.mean()),
        "future_mse_per_frame": err.mean(0).tolist(),
        "clips": len(plans),
    }


__all__ = [
    "PALETTE", "COLOURS", "SHAPES", "DIRECTIONS", "FEATURE_NAMES", "SceneObject", "ClipPlan", "TVPClips",
    "TVPBenchmark", "phase_boundaries", "build_plan", "with_directions", "instruction_text", "parse_instruction",
    "state_texts", "decompose", "frame_states", "tokenize", "TEXT_CODES", "text_features", "text_batch", "render",
    "make_instruction_set", "make_broad_set", "make_benchmark", "repeat_first_frame", "colour_weights", "track",
    "phase_correct", "instruction_accuracy", "first_frame_psnr", "future_mse", "clip_features", "standardise",
    "frechet_distance", "clip_distance", "noise_floor", "summary",
]
