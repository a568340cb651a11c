"""FCA in miniature: text-video prediction on a frozen tiny Wan, with the paper's ablations and a param-matched LoRA.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/fca_tvp.py            # full run (CPU, about 25 minutes)
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/fca_tvp.py --quick    # about two minutes, one seed

Modes that make or read one file and stop (docs/fca.md has their numbers): ``--pretrain-base OUT`` (the frozen
base; the shipped one: ``--base-steps 6000 --gate-every 1500 --wan-patch 1``), ``--train-adapters OUT`` (full FCA
on ``--base``), ``--shipped`` (the shipped files on a fresh held-out set of ``--eval-seed``, and the base's
direction gap) and ``--framewise`` (Framewise Prompts on the frozen base against one global prompt, no training).
A base pretrained with ``--first-frame-share`` (the clean first latent frame in place of the noisy one; the
shipped ``tvp_wan_first_frame_base``: ``--base-set instructions --base-steps 4000 --gate-every 1000 --wan-patch 2
--first-frame-share 1``) is handed the clips' first frames wherever it samples or trains adapters. A base records
the version of the stand-in text encoder it was trained with (``--text-code``; ``tvp_task.text_features``); the
shipped ``tvp_wan_turns_base`` (``--base-set turns --first-frame-share 1 --text-code 2 --wan-patch 2 --base-steps
10000 --gate-every 2500``) has seen one- and two-phase instructions with the clause-marking code 2.

Everything runs on CPU inside a real ComfyUI (its Wan 2.1 DiT class, ``comfy.ldm.wan.model.WanModel``, built with
``WAN21_T2V``), through the pack's own code paths: the attach table, the FCA adapter set, Train Adapters' forward
(``nodes/simda.AdapterForward``), the one trainer (``adapters/training.py``) with FCA's training recipe from the
adapter registry.

Task and metrics: ``devtools/tvp_task.py``, and the latent code and metrics of ``benchmarks/aid_tvp.py`` (the
lossless 4 x 4 pixel-patch code, 48 channels on an 8 x 8 grid per frame, no temporal compression), so the numbers
sit next to AID's.

1. The frozen base: a tiny Wan-architecture text-to-video DiT (4 blocks of width 128, 2 heads, patch (1, 2, 2):
   16 tokens per frame, 128 per clip; text width 32) pretrained text-to-video on the broad set of instruction-free
   object motions. The broad clips carry no instruction: each gets a caption written from its plan in the
   instruction grammar (``tvp_task.instruction_text``): every object that moves more than 1.5 pixels in a half of
   the clip is named with the dominant direction of each half ("move the red square left, then up and move the
   blue circle down"); text dropout 0.1 (the unconditional branch of CFG). It learns what colours, shapes and
   motions look like, but it starts every clip from its own first frame.
2. Adapters trained on the small instruction set with the paper's recipe (AdamW lr 1e-3, betas 0.9/0.95, cosine
   after a warm-up of min(200, steps/10), clipping 1.0, no dropout of text or initial frames); the initial frame
   is the clip's first latent frame, given one noise step (sigma 0.001):
   * LoRA (the paper's FT-strategy baseline): low-rank deltas on every linear layer of every block (self- and
     cross-attention q, k, v, o and both FFN layers), rank chosen so the parameter count matches full FCA; the
     initial frame's latent is prepended to the token sequence as an extra latent frame (as the paper appends it),
     its output dropped. Added with forward hooks on the frozen linears inside this script (removed after the
     row); the pack has no LoRA kind of its own (ComfyUI's LoRA loaders cover that);
   * FCA without frame-wise text; uniform (one frame-wise text module for all layers, no mask); layer-wise without
     the frame-wise mask; full (layer-wise, mask, pre-norm).
3. Prediction of the held-out clips from their first frame and instruction: Euler on the flow schedule (shift 3),
   CFG on the text (the negative keeps the initial frame, as Initial Frames Conditioning does).

Rows also hold two baselines: the first frame repeated, and the frozen base alone (text-to-video from the
instruction, no first frame). Mean ± spread over adapter-training seeds (the base is pretrained once).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
import _root  # noqa: E402,F401  (the repository root on sys.path)

import aid_tvp  # noqa: E402  (the shared latent code)
from devtools import tvp_task as tvp  # noqa: E402
from aid_tvp import SCALE, decode, encode  # noqa: E402

TEXT_DIM = 32
TEXT_LEN = 24
DIM, HEADS, LAYERS, FFN = 128, 2, 4, 512
SHIFT = 3.0
CFG = 2.0
WAN_PATCH = 2  # spatial patch of the DiT: 2 (Wan's own 1x2x2, a token per 2x2 latent cells) or 1 (a token per cell)
LR = 1e-3

FCA_BASE = dict(head_dim=DIM // HEADS, queries_per_frame=4, text_width=64, text_heads=2, text_layers=1,
                initial_frames=1, noise_step=1)
ROWS = {
    "LoRA (params matched)": None,
    "FCA without frame-wise text": dict(text_module="none"),
    "FCA uniform (one module), no mask": dict(text_module="uniform", mask=False),
    "FCA layer-wise, no mask": dict(text_module="layerwise", mask=False),
    "FCA full (layer-wise, mask)": dict(text_module="layerwise", mask=True),
}
FULL = "FCA full (layer-wise, mask)"

_pack = aid_tvp._pack  # one in-process host and the pack modules both benchmarks use


# ----------------------------------------------------------------------------------------------------
# latents, captions, text


NORM: dict = {}  # the latent format's per-channel mean and std (set from the broad set in main)


def set_latent_format(videos: torch.Tensor) -> None:
    """Per-channel mean and std of aid_tvp's raw code over ``videos``, applied as a latent format is (Wan's own
    latent formats normalise per channel the same way): the clips are mostly grey background, so the raw code
    sits far from zero mean. The patch code needs none (identity)."""
    z = encode(videos) * SCALE
    if aid_tvp.CODE is not None:  # the patch code is centred with unit overall scale: keep its channels' proportions
        NORM["mean"] = torch.zeros(1, z.shape[2], 1, 1, 1)  # (standardising each channel would blow the faint detail
        NORM["std"] = torch.ones(1, z.shape[2], 1, 1, 1)    # channels up to the scale of the colour ones)
        return
    NORM["mean"] = z.mean(dim=(0, 1, 3, 4)).reshape(1, -1, 1, 1, 1)
    NORM["std"] = z.std(dim=(0, 1, 3, 4)).clamp_min(1e-3).reshape(1, -1, 1, 1, 1)


def to_model(videos: torch.Tensor) -> torch.Tensor:
    """``[N, T, 3, H, W]`` -> the model's latents ``[N, 48, T, H/4, W/4]``: aid_tvp's code times SCALE (what AID's
    SVD sees after its latent format), normalised per channel (:func:`set_latent_format`)."""
    z = (encode(videos) * SCALE).permute(0, 2, 1, 3, 4)
    return ((z - NORM["mean"]) / NORM["std"]).contiguous()


def from_model(latents: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_model`: aid_tvp's code ``[N, T, 48, h, w]`` (for ``aid_tvp.evaluate``)."""
    return ((latents * NORM["std"] + NORM["mean"]) / SCALE).permute(0, 2, 1, 3, 4)


def _direction(dx: float, dy: float, min_move: float = 1.5):
    if math.hypot(dx, dy) < min_move:
        return None
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def broad_caption(plan: tvp.ClipPlan) -> str:
    """A caption of an instruction-free clip in the instruction grammar, from its plan (module docstring)."""
    t = plan.frames
    mid = tvp.phase_boundaries(2, t)[1] if t >= 4 else t - 1
    parts = []
    for k, obj in enumerate(plan.objects):
        p = plan.positions[k]
        dirs = []
        for a, b in ((0, mid), (mid, t - 1)):
            d = _direction(float(p[b, 0] - p[a, 0]), float(p[b, 1] - p[a, 1]))
            if d is not None and (not dirs or dirs[-1] != d):
                dirs.append(d)
        if dirs:
            parts.append(tvp.instruction_text(obj, dirs))
    return " and ".join(parts)


def text_conditions(texts, extras=None) -> list:
    """One ``(context [1, TEXT_LEN, TEXT_DIM], extras)`` per text, as Train Adapters reads a CONDITIONING."""
    feats, _ = tvp.text_batch(list(texts), TEXT_DIM, TEXT_LEN, code=TEXT_CODE)
    return [(feats[i:i + 1], dict(extras[i]) if extras else {}) for i in range(len(texts))]


def initial_frame_extras(x: torch.Tensor, noise_step: int = 1) -> list:
    """Per clip, the FCA initial-frame conditions of its first latent frame, as Initial Frames Conditioning puts
    them on a CONDITIONING (adapter conditions in ``model_conds``)."""
    import comfy.conds

    pk = _pack()
    out = []
    for i in range(x.shape[0]):
        conds = pk["fca"].initial_frame_conds(x[i:i + 1, :, :1], noise_step, seed=i)
        out.append({"model_conds": {pk["attach"].ADAPTER_COND_PREFIX + k: comfy.conds.CONDRegular(v)
                                    for k, v in conds.items()}})
    return out


# ----------------------------------------------------------------------------------------------------
# the base model


def tiny_wan(seed: int, channels: int | None = None):
    """A Wan 2.1 text-to-video DiT of ComfyUI's own class for the latent code (``channels``: the code's, 16 for the
    patch code, 48 for the raw one), initialised (ComfyUI builds models without initialising them: they are loaded
    from files)."""
    from devtools.tiny_models import wan_t2v

    channels = channels or (aid_tvp.CODE.channels if aid_tvp.CODE is not None else 48)
    model = wan_t2v(channels, DIM, FFN, HEADS, LAYERS, TEXT_DIM, WAN_PATCH)
    base = model.model
    g = torch.Generator().manual_seed(seed)
    net = base.diffusion_model
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "modulation" in name:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(DIM))
            elif p.ndim == 1:
                p.fill_(1.0 if ("norm" in name and name.endswith("weight")) else 0.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
        for p in net.head.head.parameters():
            p.zero_()
    return model


def train(params, forward, x0: torch.Tensor, steps: int, batch: int, seed: int, recipe: dict, lr: float = LR,
          drop: float = 0.0, clean: bool = False, callback=None):
    """The pack's trainer on clips ``x0`` (flow matching, shifted logit-normal noise levels) at the paper's
    learning rate ``LR`` unless told otherwise."""
    tr = _pack()["training"]
    cfg = tr.TrainConfig(steps=steps, lr=lr, batch_size=batch, seed=seed, cond_dropout=drop,
                         sigma_sampling="flow_shift", flow_shift=SHIFT, **recipe)
    return aid_tvp.run_trainer(cfg, params, forward, x0, "flow", clean=clean, every=100, callback=callback)


def flow_sigmas(steps: int, shift: float = SHIFT) -> torch.Tensor:
    return aid_tvp.flow_sigmas(steps, shift)


@torch.no_grad()
def sample(forward, n: int, shape, steps: int, cfg: float, seed: int, batch: int = 16, timer=None,
           first: torch.Tensor | None = None) -> torch.Tensor:
    """Euler on the flow schedule; CFG between the text and the dropped text (both keep the initial frames).
    ``first [n, C, 1, h, w]``: clean first latent frames put in place of the noisy ones before every step and in
    the result (a base pretrained with ``--first-frame-share``, :class:`aid_tvp.FirstFrameLatent`)."""
    param = _pack()["param"]
    sig = flow_sigmas(steps)
    noise = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))
    out = []
    for start in range(0, n, batch):
        idx = torch.arange(start, min(n, start + batch))
        b = len(idx)
        x = noise[idx] * sig[0]
        for i in range(steps):
            t0 = time.process_time()
            s = sig[i].expand(b)
            if first is not None:
                x[:, :, :1] = first[idx]

            def denoised(drop):
                v = forward(x, s, None, clip=idx, drop_text=torch.full((b,), drop), drop_image=torch.zeros(b, dtype=torch.bool))
                return param.prediction_to_denoised(x, v, s, "flow")

            d = denoised(False)
            if cfg != 1.0:
                u = denoised(True)
                d = u + cfg * (d - u)
            x = x + (x - d) / sig[i] * (sig[i + 1] - sig[i])
            if timer is not None:
                timer.append(time.process_time() - t0)
        if first is not None:
            x[:, :, :1] = first[idx]
        out.append(x)
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------------
# LoRA on the frozen linears (the baseline), with the initial frame prepended to the tokens


class LoRA(torch.nn.Module):
    """Low-rank deltas ``B A x * (alpha / r)`` for the given linear layers (B zero at init)."""

    def __init__(self, linears: dict, rank: int, alpha: float | None = None):
        super().__init__()
        self.rank, self.scale = rank, (alpha or rank) / rank
        self.down = torch.nn.ModuleDict()
        self.up = torch.nn.ModuleDict()
        for name, lin in linears.items():
            key = name.replace(".", "_")
            self.down[key] = torch.nn.Linear(lin.in_features, rank, bias=False)
            self.up[key] = torch.nn.Linear(rank, lin.out_features, bias=False)
            torch.nn.init.kaiming_uniform_(self.down[key].weight, a=math.sqrt(5))
            torch.nn.init.zeros_(self.up[key].weight)
        self.handles = []

    def hook(self, linears: dict):
        for name, lin in linears.items():
            key = name.replace(".", "_")
            self.handles.append(lin.register_forward_hook(
                lambda mod, inp, out, key=key: out + self.scale * self.up[key](self.down[key](inp[0]))))

    def unhook(self):
        for h in self.handles:
            h.remove()
        self.handles = []


def lora_linears(net) -> dict:
    found = {}
    for i, blk in enumerate(net.blocks):
        for part in ("self_attn", "cross_attn"):
            for p in ("q", "k", "v", "o"):
                found[f"blocks.{i}.{part}.{p}"] = getattr(getattr(blk, part), p)
        found[f"blocks.{i}.ffn.0"] = blk.ffn[0]
        found[f"blocks.{i}.ffn.2"] = blk.ffn[2]
    return found


def lora_rank_for(params: int, linears: dict) -> int:
    per_rank = sum(lin.in_features + lin.out_features for lin in linears.values())
    return max(1, round(params / per_rank))


class PrependInitialFrame:
    """``model_fn`` for the LoRA baseline: the clip's initial latent frame (one noise step, as FCA gets it) is put
    before the video frames, the model runs on ``T + 1`` frames, and the prediction of that extra frame is dropped."""

    accepts_drop_flags = True

    def __init__(self, inner, initial: torch.Tensor):
        self.inner, self.initial = inner, initial  # initial [N, C, 1, H, W]

    def __call__(self, x_t, sigma, context=None, clip=None, **kw):
        kw.pop("clean", None)
        x = torch.cat([self.initial[clip].to(x_t), x_t], dim=2)
        return self.inner(x, sigma, context, clip=clip, **kw)[:, :, 1:]


def noised_initial(x: torch.Tensor, seed_offset: int = 0) -> torch.Tensor:
    fca = _pack()["fca"]
    first = x[:, :, :1]
    noise = torch.stack([torch.randn(first.shape[1:], generator=torch.Generator().manual_seed(seed_offset + i))
                         for i in range(x.shape[0])])
    return fca.noised_initial_frames(first, noise, 1)


# ----------------------------------------------------------------------------------------------------


def _row(name, runs, keys, extra=""):
    return aid_tvp._row_text(name, runs, keys) + extra


def side_by_side(path: str, results: dict, params: dict, keys) -> None:
    """AID's rows (from aid_tvp's --json) and FCA's in one table: the same task, sets, metrics and noise floor;
    different frozen bases (AID: an image-to-video SVD; FCA: a text-to-video Wan)."""
    with open(path) as f:
        aid = json.load(f)
    print("\nAID (frozen tiny SVD, image-to-video) and FCA (frozen tiny Wan, text-to-video), same data and metrics "
          f"(AID's noise floor {aid.get('noise_floor', float('nan')):.1f}):")
    print(f"| {'method':<34} | {'FD (lower better)':>15} | {'instruction acc.':>15} | {'all phases right':>15} | "
          f"{'first-frame PSNR':>15} | {'future MSE':>15} | {'params':>9} |")
    print("|" + "---|" * 7)
    rows = [(f"AID: {k}", v, aid.get("params", {}).get(k)) for k, v in aid["rows"].items()]
    rows += [(f"FCA: {k}", v, params.get(k)) for k, v in results.items() if k not in ("repeat the first frame",)]
    for name, runs, n in rows:
        count = "" if n is None else f"{int(n):,}"
        print(aid_tvp._row_text(f"{name:<34}"[:34], runs, keys) + f" {count:>9} |")


# ----------------------------------------------------------------------------------------------------------
# the shipped frozen base: pretraining, file, gates

BASE_FILE = os.path.join(ROOT, "adapters", "weights", "tvp_wan_base.safetensors")  # text-to-video only
# --base's default: the base handed the first frame, on which the shipped FCA adapters were trained
FIRST_FRAME_BASE_FILE = os.path.join(ROOT, "adapters", "weights", tvp.DEMO_FILES["single-phase"][0])
FIRST_FRAME_SHARE = 0.0  # the loaded base's: share of its pretraining samples handed the clean first latent frame
TEXT_CODE = 1  # the loaded base's version of the stand-in text encoder (tvp_task.text_features); files without one: 1


def first_latents(clips: tvp.TVPClips) -> torch.Tensor | None:
    """The clips' clean first latent frames when the loaded base was pretrained with them, else None (text only)."""
    return to_model(clips.videos[:, :1]) if FIRST_FRAME_SHARE > 0 else None


def pretrain_base(model, clips: tvp.TVPClips, steps: int, seed: int = 0, callback=None, first_frame_share: float = 0.0):
    """Pretrain the frozen base text-to-video on instruction-free clips with captions from their plans: flow
    matching, shifted logit-normal noise, text dropout 0.1, AdamW lr 1e-3, warm-up 50, cosine decay, batch 8.
    ``first_frame_share``: that share of the samples gets the clean first latent frame (:class:`aid_tvp.FirstFrameLatent`)."""
    pk = _pack()
    net = model.model.diffusion_model
    fwd = pk["simda"].AdapterForward(model, "flow", text_conditions([broad_caption(p) for p in clips.plans]),
                                     pk["host_mod"].describe(model))
    x0 = to_model(clips.videos)
    if first_frame_share > 0:
        fwd = aid_tvp.FirstFrameLatent(fwd, x0, first_frame_share, torch.Generator().manual_seed(seed + 1),
                                      frame_dim=2)
    net.requires_grad_(True)
    tr = pk["training"]
    cfg = tr.TrainConfig(steps=steps, lr=LR, batch_size=8, seed=seed, cond_dropout=0.1, sigma_sampling="flow_shift",
                         flow_shift=SHIFT, warmup_steps=50, lr_schedule="cosine", grad_clip=1.0)
    res = aid_tvp.run_trainer(cfg, net, fwd, x0, "flow", every=100, callback=callback)
    net.requires_grad_(False)
    return res


def save_base(path: str, model, meta: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"dit/{k}": v.detach().half().contiguous() for k, v in model.model.diffusion_model.state_dict().items()}
    tensors.update(aid_tvp.CODE.state_dict())
    tensors.update({"norm/mean": NORM["mean"].contiguous(), "norm/std": NORM["std"].contiguous()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata={"kind": "tvp_base", "architecture": "WAN21_T2V", "patch": str(WAN_PATCH),
                                       "first_frame_share": str(FIRST_FRAME_SHARE), "text_code": str(TEXT_CODE),
                                       **{k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}})


def base_metadata(path: str) -> dict:
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        return f.metadata() or {}


def load_base(path: str = BASE_FILE):
    """The base of ``path`` (its code and latent normalisation become this module's) as a ModelPatcher, and its
    metadata."""
    global WAN_PATCH, FIRST_FRAME_SHARE, TEXT_CODE
    from safetensors.torch import load_file

    from devtools.tiny_models import tvp_base

    meta = base_metadata(path)
    if meta.get("kind") != "tvp_base" or meta.get("architecture") != "WAN21_T2V":
        raise ValueError(f"{path} is not the miniature's Wan base")
    tensors = load_file(path)
    WAN_PATCH = int(meta.get("patch", 2))
    FIRST_FRAME_SHARE = float(meta.get("first_frame_share", 0.0))
    TEXT_CODE = int(meta.get("text_code", 1))
    if TEXT_CODE not in tvp.TEXT_CODES:
        raise ValueError(f"{path} was trained with text code {TEXT_CODE}, which this version does not know "
                         f"({tvp.TEXT_CODES}): update the pack")
    aid_tvp.CODE = tvp.PatchCode.from_state_dict(tensors)
    NORM.update(mean=tensors["norm/mean"].float(), std=tensors["norm/std"].float())
    return tvp_base(path, HEADS), meta


@torch.no_grad()
def base_gates(model, clips: tvp.TVPClips, seed: int = 0, steps: int = 12, cfg: float = CFG) -> dict:
    """The frozen text-to-video base's gates on held-out captions: samples from each clip's caption, scored by
    the tracker finding every object the caption names and keeping its colour and shape (``tvp.object_fidelity``).
    A caption names only the objects that move, so a still object is the base's own guess; ``all_objects_found``
    counts those too."""
    pk = _pack()
    captions = [broad_caption(p) for p in clips.plans]
    fwd = pk["simda"].AdapterForward(model, "flow", text_conditions(captions), pk["host_mod"].describe(model))
    lat = sample(fwd, len(clips), to_model(clips.videos[:1]).shape[1:], steps, cfg, seed, first=first_latents(clips))
    videos = aid_tvp.decode(from_model(lat))
    named = [{o.colour for o in p.objects if o.colour in c.split()} for p, c in zip(clips.plans, captions)]
    fid, every = tvp.object_fidelity(videos, clips.plans, only=named), tvp.object_fidelity(videos, clips.plans)
    return {"objects_found": fid["found"], "objects_kept": fid["kept"], "all_objects_found": every["found"],
            "instruction_accuracy": tvp.instruction_accuracy(videos, clips.plans)["score"],
            "direction_gap": direction_gap(model, clips, seed=seed, first_frame=FIRST_FRAME_SHARE > 0), "videos": videos}


DIRECTION_SIGMAS = (0.7, 0.85, 0.95)


@torch.no_grad()
def direction_gap(model, clips: tvp.TVPClips, sigmas=DIRECTION_SIGMAS, seed: int = 0, first_frame: bool = False) -> float:
    """How much the base reads the direction words of its captions: the relative increase of its denoising error
    (clean-estimate MSE, the same noise) when every caption's directions are turned round
    (``tvp.reverse_directions``), averaged over the flow noise levels ``sigmas``. Zero: the base ignores them
    (it can still move objects, in directions its noise picks). The colour words of the same captions count for
    tens of per cent at high noise. ``first_frame``: the clean first latent frame replaces the noisy one (what a
    base that is handed the start positions sees)."""
    pk = _pack()
    desc = pk["host_mod"].describe(model)
    captions = [broad_caption(p) for p in clips.plans]
    x0 = to_model(clips.videos)
    n = len(clips)
    idx, keep = torch.arange(n), torch.zeros(n, dtype=torch.bool)
    g = torch.Generator().manual_seed(seed)
    fwds = [pk["simda"].AdapterForward(model, "flow", text_conditions(c), desc)
            for c in (captions, [tvp.reverse_directions(c) for c in captions])]
    gaps = []
    for s in sigmas:
        x_t = (1.0 - s) * x0 + s * torch.randn(x0.shape, generator=g)
        if first_frame:
            x_t[:, :, :1] = x0[:, :, :1]
        sig = torch.full((n,), float(s))
        err = [float((pk["param"].prediction_to_denoised(x_t, f(x_t, sig, None, clip=idx, drop_text=keep,
                                                                  drop_image=keep), sig, "flow") - x0).square().mean())
               for f in fwds]
        gaps.append(err[1] / err[0] - 1.0)
    return statistics.fmean(gaps)


def base_broad_set() -> tvp.TVPClips:
    """The Wan base's pretraining clips: aid_tvp's broad set size, every object moving along one straight line
    (``max_phases=1``), so its captions name one direction per object and the base never sees a change of
    direction: two-phase motion is what frame-wise text (FCA's, or Framewise Prompts without training) adds."""
    return tvp.make_broad_set(aid_tvp.BASE_BROAD, seed=0, max_phases=1)


BASE_SETS = {  # --base-set: the clips a base is pretrained on, and how its metadata names them
    "broad": (base_broad_set, "single-phase"),
    "instructions": (lambda: tvp.make_instruction_set(aid_tvp.BASE_BROAD, seed=0, max_phases=1),
                     "single-phase instructions"),
    "turns": (lambda: tvp.make_instruction_set(aid_tvp.BASE_BROAD, seed=0, novel=False),
              "one- and two-phase instructions, no novel combination"),
}


# ----------------------------------------------------------------------------------------------------------
# full FCA on the shipped base: training, the shipped file, evaluation

FCA_FILE = os.path.join(ROOT, "adapters", "weights", "video_adapters", tvp.DEMO_FILES["single-phase"][1])


def fca_config(frames: int, row: str = FULL) -> dict:
    return {**FCA_BASE, "frames": frames, **ROWS[row]}


@torch.no_grad()
def predict(model, clips: tvp.TVPClips, seed: int, adapters=None, steps: int = 12, cfg: float = CFG) -> torch.Tensor:
    """Videos ``[N, T, 3, H, W]`` for the clips' instructions: the frozen base alone (text-to-video, no first frame)
    or with FCA ``adapters`` given the clips' first latent frames (Initial Frames Conditioning's conditions)."""
    pk = _pack()
    host = pk["host_mod"].describe(model)
    x = to_model(clips.videos)
    if adapters is None:
        fwd = pk["simda"].AdapterForward(model, "flow", text_conditions(clips.instructions), host)
    else:
        patched = pk["attach"].attach_adapters(model, adapters)
        fwd = pk["simda"].AdapterForward(patched, "flow", text_conditions(clips.instructions, initial_frame_extras(x)),
                                         host, kind=pk["registry"].get("fca"), adapters=adapters)
    first = first_latents(clips)  # a base pretrained with the clean first frame is handed it, as in its pretraining
    return aid_tvp.decode(from_model(sample(fwd, len(clips), x.shape[1:], steps, cfg, seed, first=first)))


def use_text_code(code: int | None) -> None:
    """``--text-code``: run the loaded base under another version of the stand-in encoder. Texts without "then"
    have the same features under every code, so a base pretrained on single-phase texts sees no change."""
    global TEXT_CODE
    if code is not None and code != TEXT_CODE:
        print(f"text code {code} in place of the base's {TEXT_CODE}", flush=True)
        TEXT_CODE = code


def train_adapters_main(args, t_start: float) -> None:
    """Train full FCA on the base of ``--base`` with held-out accuracy every --gate-every steps; write the adapters."""
    pk = _pack()
    model, _ = load_base(args.base)
    use_text_code(args.text_code)
    sets = aid_tvp.instruction_sets(0, train=args.train_clips)
    frames = sets["train"].videos.shape[1]
    if ROWS[args.row] is None:
        return lora_main(args, t_start, model, sets, frames)
    torch.manual_seed(args.adapter_seed)
    adapters = pk["attach"].new_adapters("fca", model, {**fca_config(frames, args.row), "positions": args.positions})
    patched = pk["attach"].attach_adapters(model, adapters)
    fwd = pk["simda"].AdapterForward(patched, "flow", text_conditions(sets["train"].instructions),
                                     pk["host_mod"].describe(model), kind=pk["registry"].get("fca"), adapters=adapters)
    x = to_model(sets["train"].videos)
    if FIRST_FRAME_SHARE > 0:  # the base's own input: the clean first latent frame in place of the noisy one
        fwd = aid_tvp.FirstFrameLatent(fwd, x, 1.0, torch.Generator().manual_seed(args.adapter_seed), frame_dim=2)
    steps = args.adapter_steps or 1500
    recipe = pk["registry"].training_recipe("fca", steps)

    def fit(steps, callback):
        return train(adapters, fwd, x, steps, 4, args.adapter_seed, recipe, clean=True, callback=callback)

    aid_tvp.train_with_curve(args, t_start, "fca_tvp.py", steps, adapters, sets, fit,
                             lambda clips: predict(model, clips, 0, adapters),
                             {"cfg": CFG, "lr": LR, "recipe": recipe, "text_code": TEXT_CODE, "row": args.row})


def lora_main(args, t_start: float, model, sets: dict, frames: int) -> None:
    """``--train-adapters OUT --row "LoRA (params matched)"`` on a base handed the first frame: low-rank deltas on
    every linear of every block, rank matched to full FCA's parameter count, trained with FCA's recipe on the same
    clips. The base sees the clip's first frame as it was pretrained to (the clean first latent frame), so nothing
    is prepended. The paper's fine-tuning baseline is not a pack kind: the deltas are written as plain tensors to
    OUT and evaluated at once on the ``--shipped`` sets of ``--eval-seed``."""
    from safetensors.torch import save_file

    if FIRST_FRAME_SHARE <= 0:
        raise SystemExit("--row LoRA with --train-adapters needs a base handed the first frame (--first-frame-share); "
                         "the text-only bases' LoRA row is in the full run (no --train-adapters)")
    pk = _pack()
    net = model.model.diffusion_model
    full = pk["attach"].new_adapters("fca", model, {**fca_config(frames), "positions": args.positions})
    linears = lora_linears(net)
    rank = lora_rank_for(full.num_trainable_parameters(), linears)
    torch.manual_seed(args.adapter_seed)
    lora = LoRA(linears, rank)
    lora.hook(linears)
    x = to_model(sets["train"].videos)
    fwd = aid_tvp.FirstFrameLatent(pk["simda"].AdapterForward(model, "flow", text_conditions(sets["train"].instructions),
                                                              pk["host_mod"].describe(model)),
                                   x, 1.0, torch.Generator().manual_seed(args.adapter_seed), frame_dim=2)
    steps = args.adapter_steps or 1500
    recipe = pk["registry"].training_recipe("fca", steps)
    print(f"LoRA rank {rank}: {sum(p.numel() for p in lora.parameters()):,} parameters (full FCA: "
          f"{full.num_trainable_parameters():,})", flush=True)
    train(lora, fwd, x, steps, 4, args.adapter_seed, recipe)
    lora.requires_grad_(False)
    training = {"command": aid_tvp.written_command("fca_tvp.py", args.train_adapters), "rank": rank,
                "base": os.path.basename(args.base), "text_code": TEXT_CODE, "row": args.row, "steps": steps}
    save_file({k: v.half().contiguous() for k, v in lora.state_dict().items()}, args.train_adapters,
              metadata={pk["files"].METADATA_KEY: json.dumps({"kind": "lora baseline (not a pack kind)",
                                                              "training": training})})

    def predict_fn(m, clips, seed, adapters):
        if adapters is not None:
            return predict(m, clips, seed)
        lora.unhook()  # the base alone
        try:
            return predict(m, clips, seed)
        finally:
            lora.hook(linears)

    args.adapters = args.train_adapters
    aid_tvp.shipped_table(args, t_start, "fca_tvp.py", lambda path: (model, None), lambda path: lora, predict_fn,
                          "LoRA (params matched)", f"Euler 12 steps, CFG {CFG:g}, LoRA rank {rank}")


def shipped_main(args, t_start: float) -> None:
    """The shipped base and full FCA on a fresh held-out set of ``--eval-seed``."""
    handed = os.path.isfile(args.base) and float(base_metadata(args.base).get("first_frame_share", 0)) > 0
    code, training = args.text_code, aid_tvp.adapters_training(args.adapters)
    if code is None and training.get("base") == os.path.basename(args.base):
        code = training.get("text_code")  # adapters trained under another text code than their base's keep it

    def load(path):
        out = load_base(path)
        use_text_code(code)
        return out

    aid_tvp.shipped_table(args, t_start, "fca_tvp.py", load, _pack()["registry"].get("fca").load, predict,
                          "FCA full (shipped)", f"Euler 12 steps, CFG {CFG:g} (the base alone: "
                          f"{'handed the clean first latent frame, as pretrained' if handed else 'text only'})")
    if os.path.isfile(args.base):
        model, _ = load_base(args.base)
        clips = aid_tvp.gate_sets()[1]
        print(f"\nthe base's direction gap on {len(clips)} gate captions (error increase when the directions are "
              f"turned round, flow sigma {', '.join(map(str, DIRECTION_SIGMAS))}): text only "
              f"{100 * direction_gap(model, clips, seed=args.eval_seed):+.2f} %, handed the clean first frame "
              f"{100 * direction_gap(model, clips, seed=args.eval_seed, first_frame=True):+.2f} %")


PREVIEW_PAIRS = tuple((f"{name} base", os.path.join(ROOT, "adapters", "weights", base),
                       os.path.join(ROOT, "adapters", "weights", "video_adapters", fca))
                      for name, (base, fca) in (("single-phase", tvp.DEMO_FILES["single-phase"]),
                                                ("turns", tvp.DEMO_FILES["turns"])))  # the tiny demo's pairs


@torch.no_grad()
def preview(path: str, n: int = 3, seed: int = 0, scale: int = 3) -> str:
    """An animated GIF of the shipped pairs (:data:`PREVIEW_PAIRS`) on :func:`tvp_task.swapped_pairs` of held-out seed
    ``1000 + seed``: a row per clip (each first frame twice, with the two orders of its instruction), columns the
    truth, then each base alone and with its FCA adapters (Euler 12 steps, CFG 2, sampling seed ``seed``); under
    each sample whether both phases came out right (``tvp_task.phase_correct``)."""
    from PIL import Image, ImageDraw

    pk = _pack()
    clips = tvp.swapped_pairs(n, 1000 + seed)
    cols = [("truth", clips.videos)]
    for name, base, fca in PREVIEW_PAIRS:
        model, _ = load_base(base)
        use_text_code(aid_tvp.adapters_training(fca).get("text_code"))
        adapters = pk["registry"].get("fca").load(fca).float().requires_grad_(False)
        cols += [(f"{name}\nalone", predict(model, clips, seed)),
                 (f"{name}\n+ FCA", predict(model, clips, seed, adapters))]
    size = clips.videos.shape[-1] * scale
    gap, label_h, head = 4, 14, 28
    width, height = len(cols) * (size + gap) - gap, head + len(clips) * (label_h + size + label_h)
    right = [[all(tvp.phase_correct(v[i], p)) for i, p in enumerate(clips.plans)] for _, v in cols[1:]]
    frames = []
    for t in range(clips.videos.shape[1]):
        im = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(im)
        for k, (name, videos) in enumerate(cols):
            draw.multiline_text((k * (size + gap) + 2, 2), name, fill="black", spacing=1)
        for i, plan in enumerate(clips.plans):
            y = head + i * (2 * label_h + size)
            draw.text((2, y + 1), plan.instruction, fill="black")
            for k, (_, videos) in enumerate(cols):
                frame = (videos[i, t].clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
                im.paste(Image.fromarray(frame).resize((size, size), Image.NEAREST), (k * (size + gap), y + label_h))
                if k:
                    ok = right[k - 1][i]
                    draw.text((k * (size + gap) + 2, y + label_h + size + 1), "both phases right" if ok else "wrong",
                              fill=(0, 120, 0) if ok else (170, 0, 0))
        frames.append(im.convert("P", palette=Image.ADAPTIVE, colors=64))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=400, loop=0, optimize=True)
    return path


def preview_main(args, t_start: float) -> None:
    print(f"wrote {preview(args.preview, seed=args.eval_seed)} ({time.time() - t_start:.0f} s)")


# ----------------------------------------------------------------------------------------------------------
# frame-wise prompts on the frozen base (no training)


class ByText:
    """``model_fn`` routing the text branch of CFG to ``cond`` and the dropped-text branch to ``uncond`` (the
    plain base: the unconditional branch keeps the plain negative, as it does in a ComfyUI graph). Each is an
    AdapterForward; its MODEL is loaded before it runs, as a sampler loads it, so that object patches (Framewise
    Prompts wraps the cross-attention modules) are in place for the one and gone for the other."""

    accepts_drop_flags = True

    def __init__(self, cond, uncond):
        self.cond, self.uncond = cond, uncond

    def __call__(self, x_t, sigma, context=None, clip=None, drop_text=None, **kw):
        import comfy.model_management

        fwd = self.uncond if drop_text is not None and bool(drop_text.all()) else self.cond
        comfy.model_management.load_models_gpu([fwd.m])
        return fwd(x_t, sigma, context, clip=clip, drop_text=drop_text, **kw)


def phase_set(n: int, seed: int, phases: int = 2) -> tvp.TVPClips:
    """``n`` held-out instruction clips of ``seed`` with ``phases`` phases (from the instruction stream, the others
    left out)."""
    pool = tvp.make_instruction_set(3 * n, seed)
    idx = [i for i, p in enumerate(pool.plans) if len(p.directions) == phases][:n]
    if len(idx) < n:
        raise RuntimeError(f"only {len(idx)} {phases}-phase clips in {3 * n} draws")
    return tvp.TVPClips(pool.videos[idx], [pool.plans[i] for i in idx])


def per_phase(videos: torch.Tensor, clips: tvp.TVPClips) -> dict:
    oks = [tvp.phase_correct(v, p) for v, p in zip(videos, clips.plans)]
    return {"phase 1": statistics.fmean(o[0] for o in oks), "phase 2": statistics.fmean(o[1] for o in oks),
            "both": statistics.fmean(all(o) for o in oks)}


def state_caption(state: str) -> str:
    """A decomposer state ("the red square moves left", "... is lifted up", "... drops back down") in the base's
    caption grammar ("move the red square left")."""
    words = state.split()
    return f"move the {words[1]} {words[2]} {words[-1]}"


FRAMEWISE_ROWS = {  # name: None (the instruction as one global prompt) or (how a state is phrased, blend_frames)
    "one global prompt (the instruction)": None,
    "Framewise Prompts, decomposer states, blend 1": ("state", 1),
    "Framewise Prompts, decomposer states, hard cuts": ("state", 0),
    "Framewise Prompts, states as captions, blend 1": ("caption", 1),
}


@torch.no_grad()
def framewise_main(args, t_start: float) -> None:
    """Frame-wise prompts on the frozen Wan base, no training: two-phase instructions sampled as one global prompt
    against Framewise Prompts (the real node) with the decomposer's two states. Every clip is sampled on its own
    (one schedule, so one patched model, per clip) with the same noise in every row."""
    if not os.path.isfile(args.base):
        raise SystemExit(f"{args.base} does not exist: make a base with `python benchmarks/fca_tvp.py --pretrain-base "
                         "OUT` and pass --base")
    from devtools.tiny_models import ToyTextEncoder

    pk = _pack()
    host, simda = pk["host"], pk["simda"]
    # what Framewise Prompts calls on a CLIP: the miniature's text features of a state, unpadded
    model, meta = load_base(args.base)
    use_text_code(args.text_code)
    clip = ToyTextEncoder(TEXT_DIM, lambda text, dim: tvp.text_features(text, dim, code=TEXT_CODE)[None])
    desc = pk["host_mod"].describe(model)
    clips = phase_set(args.eval_clips, 2000 + args.eval_seed)
    frames = clips.videos.shape[1]
    shape = to_model(clips.videos[:1]).shape[1:]
    first = first_latents(clips)
    seeds = args.seeds or 3
    keys = ("phase 1", "phase 2", "both")
    rows = {}
    for name, how in FRAMEWISE_ROWS.items():
        runs = []
        for seed in range(seeds):
            lat = []
            for i, p in enumerate(clips.plans):
                plain = simda.AdapterForward(model, "flow", text_conditions([p.instruction]), desc)
                fwd = ByText(plain, plain)
                if how is not None:
                    phrase, blend = how
                    states = [state_caption(t) if phrase == "caption" else t for t in tvp.state_texts(p.instruction)]
                    patched = host.call("VA_FramewisePrompts", model, clip, pk["sp"].schedule(states, frames, 1),
                                        frames, blend, 1)[0]
                    fwd = ByText(simda.AdapterForward(patched, "flow", text_conditions([p.instruction]), desc), plain)
                lat.append(sample(fwd, 1, shape, args.sample_steps, CFG, seed=seed * 100003 + i,
                                  first=None if first is None else first[i:i + 1]))
            runs.append(per_phase(aid_tvp.decode(from_model(torch.cat(lat))), clips))
        rows[name] = runs
        print(aid_tvp._row_text(name, runs, keys), f"({time.time() - t_start:.0f} s)", flush=True)
    single = phase_set(args.eval_clips, 2000 + args.eval_seed, phases=1)  # what the base was trained on
    plain = simda.AdapterForward(model, "flow", text_conditions(single.instructions), desc)
    runs = [{"phase 1": tvp.instruction_accuracy(aid_tvp.decode(from_model(sample(
        plain, len(single), shape, args.sample_steps, CFG, seed=seed, first=first_latents(single)))),
        single.plans)["score"]} for seed in range(seeds)]
    rows["single-phase instructions, one global prompt (reference)"] = runs
    print(f"\nFramewise Prompts on the frozen base {os.path.basename(args.base)} (pretrained on "
          f"{meta.get('broad', 'broad')} captions{'; handed the clean first frame' if first is not None else ''}), "
          f"{len(clips)} held-out two-phase instructions of seed "
          f"{args.eval_seed}, {seeds} sampling seeds, Euler {args.sample_steps} steps, CFG {CFG:g}; phase accuracy "
          "(tvp_task.phase_correct), mean ± spread over seeds")
    print("| prompting | phase 1 | phase 2 | both phases |\n|---|---|---|---|")
    for name, runs in rows.items():
        print(aid_tvp._row_text(name, runs, keys[:len(runs[0])]) + " – |" * (len(keys) - len(runs[0])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"eval_seed": args.eval_seed, "base": meta.get("command"), "rows": rows}, f, indent=1)


def pretrain_main(args, t_start: float) -> None:
    global FIRST_FRAME_SHARE, TEXT_CODE
    args.base_steps = args.base_steps or 4000
    _pack()
    make_set, described = BASE_SETS[args.base_set]
    broad = make_set()
    set_latent_format(broad.videos)
    model = tiny_wan(seed=0)
    FIRST_FRAME_SHARE = args.first_frame_share
    TEXT_CODE = args.text_code or 1
    aid_tvp.pretrain_with_gates(args, t_start, "fca_tvp.py", model,
                                lambda cb: pretrain_base(model, broad, args.base_steps, callback=cb,
                                                         first_frame_share=args.first_frame_share),
                                lambda clips: base_gates(model, clips), lambda path, meta: save_base(path, model, meta),
                                {"broad": described})


def overfit_main(args, t_start: float) -> None:
    """The Wan base's counterpart of ``aid_tvp.py --overfit``: the base's own pretraining recipe
    (:func:`pretrain_base`, ``--first-frame-share`` as for ``--pretrain-base``) on N instruction clips only, then how
    much of the noise its clean estimate of those same clips keeps at each noise level, in EDM's terms (flow's
    ``x_t = (1 - t) x0 + t n`` is ``x0 + sigma n`` scaled by ``1 - t``, with ``sigma = t / (1 - t)``). A first frame
    handed to the model clean is left out of the measure."""
    pk = _pack()
    clips = tvp.make_instruction_set(args.overfit, seed=0)
    set_latent_format(clips.videos)
    model = tiny_wan(seed=0)
    res = pretrain_base(model, clips, args.base_steps or 600, first_frame_share=args.first_frame_share)
    print(f"{args.overfit} clips, tiny Wan, first-frame share {args.first_frame_share:g}: {len(res.losses)} steps, "
          f"loss {statistics.fmean(res.losses[:20]):.3f} -> {statistics.fmean(res.losses[-50:]):.3f} "
          f"({time.time() - t_start:.0f} s)")
    fwd = pk["simda"].AdapterForward(model, "flow", text_conditions([broad_caption(p) for p in clips.plans]),
                                     pk["host_mod"].describe(model))
    x0 = to_model(clips.videos)
    handed = args.first_frame_share > 0

    def denoise(noise, sigma):
        t = sigma / (1 + sigma)
        xt = (1 - t) * x0 + t * noise
        if handed:
            xt[:, :, :1] = x0[:, :, :1]
        s = torch.full((len(x0),), t)
        return pk["param"].prediction_to_denoised(xt, fwd(xt, s, None, clip=torch.arange(len(x0))), s, "flow")

    rows = aid_tvp.noise_kept(denoise, x0, lambda lat: aid_tvp.decode(from_model(lat)), frame_dim=2,
                              first=1 if handed else 0)
    aid_tvp.print_noise_kept(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"clips": args.overfit, "first_frame_share": args.first_frame_share, "steps": len(res.losses),
                       "loss": res.losses, "rows": rows}, f, indent=1)


def main() -> None:
    ap = aid_tvp.benchmark_arguments(__doc__)
    ap.add_argument("--aid-json", default=None, help="the --json output of benchmarks/aid_tvp.py (same sizes): "
                    "print AID's rows and FCA's in one table")
    ap.add_argument("--base-cache", default=None, help="a folder to keep the pretrained base in (safetensors) and "
                    "reuse on the next run with the same settings")
    aid_tvp.file_modes(ap, "FCA", FIRST_FRAME_BASE_FILE, FCA_FILE, "--adapter-steps", 4000)
    ap.add_argument("--adapter-steps", type=int, default=None)
    ap.add_argument("--adapter-seed", type=int, default=0, help="seed of the adapters' initialisation and training draws")
    ap.add_argument("--train-clips", type=int, default=192,
                    help="--train-adapters: how many instruction clips the adapters train on (half are two-phase)")
    ap.add_argument("--row", choices=list(ROWS), default=FULL,
                    help="--train-adapters: which row of the ablation table to train (default: full FCA; the LoRA "
                         "row on a base handed the first frame is evaluated at once on the --shipped sets)")
    ap.add_argument("--positions", choices=("none", "rope"), default="none",
                    help="FCA's positions setting for --train-adapters (none: the paper's branch)")
    ap.add_argument("--wan-patch", type=int, choices=(1, 2), default=WAN_PATCH,
                    help="spatial patch of the base DiT: 2 (a token per 2 x 2 latent cells) or 1 (a token per cell)")
    ap.add_argument("--base-set", choices=tuple(BASE_SETS), default="broad",
                    help="--pretrain-base on: broad (every object may move, along one line; the caption names each "
                         "mover), instructions (single-phase instruction clips: one named object moves, the others "
                         "stay still) or turns (one- and two-phase instruction clips, none of tvp_task's novel "
                         "combinations: a base that has seen a change of direction; pair it with --text-code 2)")
    ap.add_argument("--first-frame-share", type=float, default=0.0,
                    help="--pretrain-base: share of the samples handed the clean first latent frame in place of the "
                         "noisy one (0: text-to-video only; 1: the base always gets the start, as an image-to-video "
                         "model does). A base made so is sampled with the clips' first frames")
    ap.add_argument("--text-code", type=int, choices=tvp.TEXT_CODES, default=None,
                    help="version of the stand-in text encoder (tvp_task.text_features; 2 marks the clause after "
                         "each \"then\"): --pretrain-base records it in the base (default 1); --train-adapters, "
                         "--shipped and --framewise run the loaded base under it instead of its own")
    ap.add_argument("--framewise", action="store_true",
                    help="frame-wise prompts on the frozen base (--base), no training: two-phase instructions as one "
                         "global prompt against Framewise Prompts with the decomposer's states")
    ap.add_argument("--sample-steps", type=int, default=12)
    ap.add_argument("--overfit", type=int, default=0, metavar="N",
                    help="pretrain the base on N instruction clips only (--base-steps, default 600) and print how much "
                         "noise its clean estimate of them keeps at each noise level (aid_tvp.py --overfit's table "
                         "for the Wan base); then stop")
    ap.add_argument("--preview", default=None, metavar="GIF",
                    help="write an animated GIF of both shipped base + FCA pairs (one first frame, its instruction "
                         "with the phases in either order; held-out seed 1000 + --eval-seed) and stop")
    args = ap.parse_args()
    globals()["WAN_PATCH"] = args.wan_patch
    t_start = aid_tvp.start(args)
    if aid_tvp.run_mode(args, t_start, {"pretrain_base": pretrain_main, "framewise": framewise_main,
                                        "train_adapters": train_adapters_main, "shipped": shipped_main,
                                        "preview": preview_main, "overfit": overfit_main}):
        return
    quick = args.quick
    seeds = args.seeds or (1 if quick else 3)
    sizes = dict(broad=128, train=24, heldout=32) if quick else dict(broad=512, train=48, heldout=64)
    base_steps, ad_steps, sample_steps = (150, 60, 6) if quick else (1200, 250, 10)
    bench = tvp.make_benchmark(seed=0, **sizes)
    pk = _pack()
    simda, attach, host_mod, registry = pk["simda"], pk["attach"], pk["host_mod"], pk["registry"]
    frames = bench.train.videos.shape[1]

    # 1. the frozen base: text-to-video on the broad set, captions from the plans
    model = tiny_wan(seed=0)
    host = host_mod.describe(model)
    net = model.model.diffusion_model
    set_latent_format(bench.broad.videos)
    x_broad = to_model(bench.broad.videos)
    shape = x_broad.shape[1:]
    captions = [broad_caption(p) for p in bench.broad.plans]
    fwd = simda.AdapterForward(model, "flow", text_conditions(captions), host)
    base_params = sum(p.numel() for p in net.parameters())
    cached = None
    if args.base_cache:
        from safetensors.torch import load_file, save_file

        cached = os.path.join(args.base_cache, f"fca_tvp_base_{base_steps}_{len(bench.broad)}_{DIM}x{LAYERS}.safetensors")
    if cached and os.path.isfile(cached):
        net.load_state_dict(load_file(cached))
        print(f"base: loaded {cached}", flush=True)
    else:
        net.requires_grad_(True)
        t0 = time.time()
        res = train(net, fwd, x_broad, base_steps, 8, 0, dict(warmup_steps=50, grad_clip=1.0), lr=1e-3, drop=0.1)
        net.requires_grad_(False)
        print(f"base: Wan {LAYERS} blocks x {DIM}, {base_params:,} parameters, {base_steps} steps in "
              f"{time.time() - t0:.0f} s, loss {statistics.fmean(res.losses[:20]):.3f} -> "
              f"{statistics.fmean(res.losses[-20:]):.3f}; e.g. caption {captions[0]!r}", flush=True)
        if cached:
            os.makedirs(args.base_cache, exist_ok=True)
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, cached)

    held = bench.heldout
    ref_feats = tvp.clip_features(bench.reference.videos)
    floor = tvp.noise_floor(tvp.clip_features(held.videos), ref_feats)
    x_train, x_held = to_model(bench.train.videos), to_model(held.videos)
    keys = ("fd", "instruction_score", "instruction_all_phases", "first_frame_psnr", "future_mse")
    results: dict[str, list] = {}
    params, cost = {}, {}

    def evaluate(lat):
        return aid_tvp.evaluate(from_model(lat), held, ref_feats)

    results["repeat the first frame"] = [tvp.summary(tvp.repeat_first_frame(held.first_frames, frames), held.plans,
                                                     held.videos, ref_feats)]
    held_text = text_conditions(held.instructions)
    base_fwd = simda.AdapterForward(model, "flow", held_text, host)
    timer: list = []
    results["frozen base alone (text only)"] = [evaluate(sample(base_fwd, len(held), shape, sample_steps, CFG, seed=s,
                                                                timer=timer)) for s in range(seeds)]
    cost["frozen base alone (text only)"] = [(None, statistics.median(timer))]
    print(_row("frozen base alone (text only)", results["frozen base alone (text only)"], keys), flush=True)

    recipe = registry.training_recipe("fca", ad_steps)
    train_text = text_conditions(bench.train.instructions)
    held_fca = text_conditions(held.instructions, initial_frame_extras(x_held))
    fca_cfg = lambda over: {**FCA_BASE, "frames": frames, **over}  # noqa: E731
    full_params = attach.new_adapters("fca", model, fca_cfg(ROWS[FULL])).num_trainable_parameters()
    linears = lora_linears(net)
    rank = lora_rank_for(full_params, linears)
    passes = {}
    for name, over in ROWS.items():
        runs = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            if over is None:  # LoRA
                lora = LoRA(linears, rank)
                lora.hook(linears)
                adapters, patched = lora, model
                fwd = PrependInitialFrame(simda.AdapterForward(model, "flow", train_text, host), noised_initial(x_train))
                hfwd = PrependInitialFrame(simda.AdapterForward(model, "flow", held_text, host),
                                           noised_initial(x_held, seed_offset=0))
            else:
                adapters = attach.new_adapters("fca", model, fca_cfg(over))
                patched = attach.attach_adapters(model, adapters)
                fwd = simda.AdapterForward(patched, "flow", train_text, host, kind=registry.get("fca"), adapters=adapters)
                hfwd = simda.AdapterForward(patched, "flow", held_fca, host, kind=registry.get("fca"), adapters=adapters)
            t0 = time.process_time()
            train(adapters, fwd, x_train, ad_steps, 4, seed, recipe, clean=over is not None)
            train_s = (time.process_time() - t0) / ad_steps
            params[name] = sum(p.numel() for p in adapters.parameters() if p.requires_grad)  # what was trained
            adapters.requires_grad_(False)
            before = getattr(adapters, "initial_frame_passes", 0)
            timer = []
            lat = sample(hfwd, len(held), shape, sample_steps, CFG, seed=seed, timer=timer)
            passes[name] = getattr(adapters, "initial_frame_passes", 0) - before
            runs.append(evaluate(lat))
            cost.setdefault(name, []).append((train_s, statistics.median(timer)))
            if over is None:
                lora.unhook()
        results[name] = runs
        print(_row(name, runs, keys), f"({time.time() - t_start:.0f} s)", flush=True)

    print()
    print(f"FCA on the miniature TVP task: {len(bench.train)} training clips, {len(held)} held-out, {frames} frames "
          f"of 32x32 (latent 48 x {frames} x 8 x 8); frozen tiny Wan ({LAYERS} blocks x {DIM}, {base_params:,} "
          f"parameters) pretrained {base_steps} steps on {len(bench.broad)} broad clips; adapters {ad_steps} steps "
          f"(lr {LR:g}, {recipe['lr_schedule']}, warm-up {recipe['warmup_steps']}, betas {recipe['betas'][0]:g}/"
          f"{recipe['betas'][1]:g}, clip {recipe['grad_clip']:g}, batch 4); Euler {sample_steps} steps, CFG {CFG:g}; "
          f"{seeds} seed(s) (mean ± spread over adapter-training seeds and sampling noise)")
    print(f"FD noise floor (held-out vs second held-out set): {floor:.1f}")
    print()
    print(f"| {'method':<34} | {'FD (lower better)':>15} | {'instruction acc.':>15} | {'all phases right':>15} | "
          f"{'first-frame PSNR':>15} | {'future MSE':>15} | {'params':>9} |")
    print("|" + "---|" * 7)
    for name, runs in results.items():
        n = params.get(name)
        count = "" if n is None else f"{n:,}"
        print(aid_tvp._row_text(f"{name:<34}"[:34], runs, keys) + f" {count:>9} |")
    print()
    print("Cost (CPU process time, this run; one sampling step = cond + uncond on a batch of 16 clips):")
    base_step = cost["frozen base alone (text only)"][0][1]
    print(f"  {'frozen base alone (text only)':<34} {'':>10}            {1000 * base_step:6.1f} ms per sampling step (1.00)")
    for name in ROWS:
        tr_s = statistics.fmean(c[0] for c in cost[name])
        st = statistics.fmean(c[1] for c in cost[name])
        extra = f", {passes[name]} initial-frame passes per sampling run" if name != "LoRA (params matched)" else \
            f", rank {rank}, {frames + 1} latent frames per pass"
        print(f"  {name:<34} {params[name]:>10,} params, {1000 * tr_s:6.0f} ms per training step, "
              f"{1000 * st:6.1f} ms per sampling step ({st / base_step:.2f}){extra}")
    if args.aid_json:
        side_by_side(args.aid_json, results, params, keys)
    print(f"\ntotal {time.time() - t_start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": results, "noise_floor": floor, "params": params, "cost": cost, "lora_rank": rank,
                       "settings": dict(quick=quick, seeds=seeds, base_steps=base_steps, adapter_steps=ad_steps,
                                        sample_steps=sample_steps, cfg=CFG, **sizes)}, f, indent=1, default=float)


if __name__ == "__main__":
    main()
