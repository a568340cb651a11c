"""AID in miniature: instruction-guided video prediction on a frozen tiny SVD, with the paper's ablations.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/aid_tvp.py            # full run: 2 CPU cores, about 23 minutes
                                                                          # (17 with --base-cache DIR after the first)
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/aid_tvp.py --quick    # about two minutes, one seed

The shipped files (``adapters/weights/tvp_svd_base.safetensors``, ``adapters/weights/video_adapters/
tvp_aid_full.safetensors``) come from and are measured by the file modes, each of which stops when done:

    python benchmarks/aid_tvp.py --shipped [--eval-seed N] [--s-v V --s-t T]   # evaluate them, about 4 minutes
    python benchmarks/aid_tvp.py --pretrain-base OUT --sampling flow --first-frame --base-steps 16000
    python benchmarks/aid_tvp.py --train-adapters OUT --base BASE --aid-steps 6000 --aid-shift 16
        [--row no-adapters] [--adapter-seed S]     # the shipped adapters: shift 16 (training noise where the
        [--text-code 2]                            # instruction decides), seed 0; text code 2 marks the clauses
    python benchmarks/aid_tvp.py --summarise OUT1 OUT2 ... --base BASE           # the table of trained rows

The ablation rows (one job per row and training seed) run in ``--jobs`` worker processes, one per core by
default; each job is seeded on its own, so at one torch thread per process the numbers are the same bit for bit
with any number of workers (measured: ``--jobs 1`` and ``--jobs 2`` give identical tables).

Everything runs on CPU inside a real ComfyUI (its SVD UNet class and model sampling), through the pack's own
code paths: the attach table, the AID adapter set, Train Adapters' forward (``nodes/simda.AdapterForward``) and
the one trainer (``adapters/training.py``), the dual-CFG rule (``samplers/dual_cfg.py``).

Task (``devtools/tvp_task.py``): 32 x 32 clips of 8 frames with one to three coloured objects; an instruction
names one object and a one- or two-phase motion; a rule-based decomposer gives the state prompts (it stands in
for the MLLM). Latents: a lossless 4 x 4 pixel-patch code (48 channels on an 8 x 8 grid).

1. The frozen base: a tiny SVD-architecture UNet (ComfyUI's ``SVD_img2vid`` model class, two levels, 64/128
   channels) pretrained as image-to-video on the broad set of instruction-free object motions (no text): it
   learns to continue a first frame with plausible motion, but cannot know which object should move where.
2. AID: the DQFormer, cross-attention deltas and spatial / short-term / long-term temporal adapters are trained
   on the small instruction set (48 clips), with text / image / both dropout 0.05 each for dual guidance.
3. Prediction of the held-out clips from their first frame and instruction (and states), Euler on SVD's Karras
   schedule (or the shifted flow schedule of a base made with ``--sampling flow``), dual CFG (s_V, s_T).

Metrics (``tvp_task.summary``): FD, a Frechet distance on per-clip features against a second held-out set (the
FVD stand-in; its noise floor is the same distance between the two held-out sets); instruction accuracy (the
named object tracked by its colour: did it move as instructed, phase by phase; FD cannot see this); first-frame
PSNR; per-frame MSE against the ground-truth future.

Rows (the paper's ablation tables): repeat the first frame; the frozen base alone; AID full; no adapters (the
DQFormer and cross-attention only); no spatial; no short-term; no long-term; multimodal branch only; decomposed
branch only; without state prompts. Then a small grid of (s_V, s_T) for the full model. Mean and spread over
training seeds.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
import _root  # noqa: E402,F401  (the repository root on sys.path)

from devtools import tvp_task as tvp  # noqa: E402

PATCH = 4
CTX = tvp.AID_IMAGE_DIM
TEXT_DIM = tvp.AID_TEXT_DIM
TEXT_LEN = tvp.AID_TEXT_LENGTH
TEXT_CODE = 1  # the stand-in text encoder's version the adapters read (tvp_task.text_features); files without one: 1
SCALE = 0.18215  # SD/SVD latent format: the model sees latent * SCALE
GAIN = 5.0       # pixels in [-1, 1] (mostly grey) -> about unit variance where the model sees them
VERBOSE = False
START_DIR = os.getcwd()  # the folder the command was started in (start() sets it before ComfyUI changes it)
WIDTH = 32  # base UNet channels (two levels: WIDTH, 2 WIDTH)


ROWS = {
    "full": {},
    "no adapters (DQFormer only)": dict(spatial_adapter=False, short_term_adapter=False, long_term_adapter=False),
    "no spatial": dict(spatial_adapter=False),
    "no short-term": dict(short_term_adapter=False),
    "no long-term": dict(long_term_adapter=False),
    "multimodal branch only": dict(decomposed_branch=False),
    "decomposed branch only": dict(multimodal_branch=False),
    "without state prompts": dict(state_prompts=False),
}
# --train-adapters --row NAME: the rows by short name
ROW_NAMES = dict(zip(("full", "no-adapters", "no-spatial", "no-short-term", "no-long-term", "multimodal-only",
                      "decomposed-only", "no-states"), ROWS))


# ----------------------------------------------------------------------------------------------------
# codec, image embedding, base model


CODE: "tvp.PatchCode | None" = None  # the latent code (None: the raw 48-channel pixel patches of earlier versions)
# training noise levels: SVD's own recipe, ln sigma ~ N(0.7, 1.6^2) (what Train Adapters draws on SVD)
NOISE = dict(sigma_sampling="lognormal", lognormal_mean=0.7, lognormal_std=1.6)
# The base's sampling: "edm" (SVD's own, v-prediction on EDM noise levels) or "flow" (the same UNet built as a
# ComfyUI FLOW model, rectified-flow velocity with shifted noise levels, as Wan and core's ModelSamplingSD3 node
# give any model), and whether the base is handed the clean first latent frame (flow only: its model input is
# not rescaled, so a clean frame reaches the model as it is).
SAMPLING = "edm"
FLOW_SHIFT = 3.0
FIRST_FRAME = False


def param() -> str:
    """The trainer's and sampler's parameterisation of the base: ``"v"`` (EDM) or ``"flow"``."""
    return "flow" if SAMPLING == "flow" else "v"


def use_sampling(name: str, first_frame: bool = False) -> None:
    """Build, train and sample the base as ``name`` (``"edm"`` or ``"flow"``); ``first_frame``: hand it the clean
    first latent frame. Flow trains on noise levels of the shifted logit-normal (:data:`FLOW_SHIFT`)."""
    global SAMPLING, FIRST_FRAME
    if first_frame and name != "flow":
        raise ValueError("the clean first latent frame is handed to flow bases only (EDM rescales the model input)")
    SAMPLING, FIRST_FRAME = name, bool(first_frame)
    NOISE.clear()
    NOISE.update(dict(sigma_sampling="flow_shift", flow_shift=FLOW_SHIFT) if name == "flow" else
                 dict(sigma_sampling="lognormal", lognormal_mean=0.7, lognormal_std=1.6))


def use_code(name: str) -> None:
    """``"pca16"``: the centred 16-channel patch code (``tvp.task_code``, the default); ``"raw"``: the lossless raw
    pixel patches of earlier versions (48 channels, uncentred), which a tiny base never learns to denoise."""
    global CODE
    CODE = tvp.task_code(16, PATCH) if name == "pca16" else None


def encode(videos: torch.Tensor) -> torch.Tensor:
    """``[N, T, 3, H, W]`` in [0, 1] -> raw latents ``[N, T, C, H/4, W/4]`` (the model sees them times ``SCALE``
    after ``process_latent_in``, as SVD's latent format scales a VAE's). With the patch code: its centred,
    unit-RMS coefficients divided by ``SCALE``. Raw code: pixel patches mapped to -1..1 times ``GAIN / SCALE``,
    not centred and not decorrelated (mean about -2.4, RMS 2.7 in model space)."""
    if CODE is not None:
        return CODE.encode(videos) / SCALE
    n, t = videos.shape[:2]
    z = F.pixel_unshuffle(videos.flatten(0, 1) * 2 - 1, PATCH)
    return (z * GAIN / SCALE).reshape(n, t, *z.shape[1:])


def decode(latents: torch.Tensor) -> torch.Tensor:
    if CODE is not None:
        return CODE.decode(latents * SCALE)
    n, t = latents.shape[:2]
    v = F.pixel_shuffle(latents.flatten(0, 1) * (SCALE / GAIN), PATCH)
    return ((v + 1) / 2).clamp(0, 1).reshape(n, t, *v.shape[1:])


use_code("pca16")


def image_embedding(first_frames: torch.Tensor) -> torch.Tensor:
    """The stand-in for SVD's CLIP image embedding (``tvp.image_embedding``, what the AID demo's image encoder
    gives), ``[N, 1, CTX]``."""
    return tvp.image_embedding(first_frames, CTX)[:, None]


def tiny_svd(channels: int, seed: int):
    """The miniature base: ComfyUI's SVD image-to-video class at width ``WIDTH`` (the pack's own builder, which also
    reads the shipped base file), as the flow model with ``--sampling flow``, initialised from ``seed``."""
    model = _pack()["demo"].svd_i2v(channels, WIDTH, CTX, FLOW_SHIFT if SAMPLING == "flow" else None)
    net = model.model.diffusion_model
    net.requires_grad_(True)
    _initialise(net, seed)
    return model


def _initialise(net: torch.nn.Module, seed: int) -> None:
    """ComfyUI builds models without initialising their weights (they are loaded from files): the usual fan-in
    initialisation, norms at one, biases at zero, and the output convolution at zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for m in net.modules():
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and m.weight is not None:
                m.weight.fill_(1.0)
            elif isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.weight[0].numel()))
        for p in net.out[-1].parameters():  # the last convolution (not its norm: that would stop every gradient)
            p.zero_()


def svd_conditions(clips: tvp.TVPClips, aid: bool) -> list:
    """One ``(context, extras)`` per clip, as Train Adapters reads a CONDITIONING: SVD's image condition (the
    first frame's latent and image embedding, fps / motion / augmentation) and, with ``aid``, the instruction and
    per-frame state features as adapter conditions."""
    import comfy.conds

    from_pack = _pack()
    attach, aid_mod = from_pack["attach"], from_pack["aid"]
    first = encode(clips.videos[:, :1])[:, 0]
    embed = image_embedding(clips.first_frames)
    out = []
    schedules = clips.schedules() if aid else [None] * len(clips)
    for i in range(len(clips)):
        extras = dict(concat_latent_image=first[i:i + 1], fps=6, motion_bucket_id=127, augmentation_level=0.0)
        if aid:
            t1 = tvp.text_features(clips.instructions[i], TEXT_DIM, TEXT_LEN, code=TEXT_CODE)
            entries = from_pack["sp"].parse_schedule(schedules[i])
            states = [tvp.text_features(t, TEXT_DIM, TEXT_LEN, code=TEXT_CODE) for _, t in entries]
            t2 = aid_mod.per_frame_states(states, [f for f, _ in entries], clips.videos.shape[1])
            extras["model_conds"] = {attach.ADAPTER_COND_PREFIX + aid_mod.TEXT_COND: comfy.conds.CONDRegular(t1[None]),
                                     attach.ADAPTER_COND_PREFIX + aid_mod.STATES_COND: comfy.conds.CONDRegular(t2)}
        out.append((embed[i:i + 1], extras))
    return out


_PACK = {}


def _pack():
    if not _PACK:
        from devtools.harness import get_host

        host = get_host()
        _PACK.update(host=host, attach=host.pack_module("nodes.binding.attach"), aid=host.pack_module("adapters.aid"),
                     fca=host.pack_module("adapters.fca"), registry=host.pack_module("adapters.registry"),
                     simda=host.pack_module("nodes.binding.training"), training=host.pack_module("adapters.training"),
                     host_mod=host.pack_module("nodes.binding.host"), sp=host.pack_module("adapters.state_prompts"),
                     dual=host.pack_module("samplers.dual_cfg"), param=host.pack_module("samplers.parameterisation"),
                     files=host.pack_module("adapters.files"),
                     demo=host.pack_module("nodes.binding.instruction_demo"))
    return _PACK


def run_trainer(cfg, params, forward, x0: torch.Tensor, parameterisation: str, clean: bool = False, every: int = 20,
                callback=None):
    """The pack's one trainer on clips ``x0`` with random clips per step (``clean``: also hand the clean clips to
    the model, as FCA reads its initial frames from them); prints progress with ``--verbose``."""
    tr = _pack()["training"]

    def batch_fn(step, generator, bs):
        idx = torch.randint(0, x0.shape[0], (bs,), generator=generator)
        out = {"x0": x0[idx], "clip": idx}
        if clean:
            out["clean"] = x0[idx]
        return out

    t0 = time.time()

    def on_step(step, loss):
        if VERBOSE and (step % every == 0 or step == cfg.steps):
            print(f"    step {step}/{cfg.steps}, loss {loss:.4f}, {time.time() - t0:.0f} s", flush=True)
        if callback is not None:
            callback(step, loss)

    return tr.Trainer(cfg).run(params, forward, batch_fn, parameterisation, on_step=on_step)


def train(module_params, forward, x0: torch.Tensor, steps: int, lr: float, batch: int, seed: int, sigma_table,
          drop: float = 0.0, warmup: int = 0, lr_schedule: str = "constant", callback=None):
    tr = _pack()["training"]
    cfg = tr.TrainConfig(steps=steps, lr=lr, batch_size=batch, seed=seed, cond_dropout=drop, image_dropout=drop,
                         both_dropout=drop, sigma_table=tuple(sigma_table), warmup_steps=warmup, grad_clip=1.0,
                         lr_schedule=lr_schedule, **NOISE)
    return run_trainer(cfg, module_params, forward, x0, param(), callback=callback)


def karras(n: int, lo: float = 0.002, hi: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n)
    s = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    return torch.cat([s, torch.zeros(1)])


def flow_sigmas(steps: int, shift: float = FLOW_SHIFT) -> torch.Tensor:
    """The shifted linear schedule of a flow model (ComfyUI's simple scheduler on ModelSamplingDiscreteFlow), as
    the Video Adapter miniature samples with it."""
    from devtools.miniature import flow_sigmas as schedule_list

    return torch.tensor(schedule_list(steps, shift), dtype=torch.float32)


def schedule(steps: int) -> torch.Tensor:
    """The base's sampling schedule: SVD's Karras schedule, or the shifted flow schedule."""
    return flow_sigmas(steps) if SAMPLING == "flow" else karras(steps)


class FirstFrameLatent:
    """Training forward that hands the model the clean first latent frame in place of the noisy one for a
    ``share`` of the samples (drawn per sample from ``generator``), as Wan 2.2's text-and-image-to-video model is
    trained; the loss still covers every frame. ``frame_dim``: where the frames are in the latents (1 for
    ``[B, T, C, H, W]``, 2 for Wan's ``[B, C, T, H, W]``). For flow models only, whose input is not rescaled."""

    accepts_drop_flags = True

    def __init__(self, forward, clean: torch.Tensor, share: float, generator: torch.Generator, frame_dim: int = 1):
        self.forward, self.clean, self.share, self.generator = forward, clean, share, generator
        self.frame_dim = frame_dim

    def __getattr__(self, name):
        return getattr(self.forward, name)

    def __call__(self, x_t, sigma, context=None, clip=None, **kw):
        pick = torch.rand(x_t.shape[0], generator=self.generator) < self.share
        if bool(pick.any()):
            x_t = x_t.clone()
            frame0 = tuple(slice(0, 1) if d == self.frame_dim else slice(None) for d in range(1, x_t.dim()))
            x_t[(pick,) + frame0] = self.clean[clip][pick][(slice(None),) + frame0]
        return self.forward(x_t, sigma, context, clip=clip, **kw)


@torch.no_grad()
def sample(forward, n_clips: int, frames: int, shape, steps: int, s_v: float, s_t: float | None, seed: int,
           batch: int = 16, first: torch.Tensor | None = None) -> torch.Tensor:
    """Euler on the base's schedule (:func:`schedule`); dual CFG when ``s_t`` is given (three predictions: full,
    without text, without text and image), else image CFG on the base (two). ``first``: the clips' clean first
    latent frames ``[N, 1, C, h, w]``, kept at every step (a base pretrained with them)."""
    pk = _pack()
    sig = schedule(steps)
    out = []
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n_clips, frames, *shape, generator=g)
    for start in range(0, n_clips, batch):
        idx = torch.arange(start, min(n_clips, start + batch))
        x = noise[idx] * sig[0]
        b = len(idx)
        for i in range(steps):
            if first is not None:  # a base handed the clean first latent frame keeps it at every step
                x[:, :1] = first[idx]
            # the three predictions (no image and no text; image; image and instruction) in one batched call
            branches = [(True, True), (True, False)] + ([(False, False)] if s_t is not None else [])
            k = len(branches)
            dt = torch.tensor([t for t, _ in branches]).repeat_interleave(b)
            di = torch.tensor([m for _, m in branches]).repeat_interleave(b)
            xs = x.repeat(k, 1, 1, 1, 1)
            s = sig[i].expand(k * b)
            v = forward(xs, s, None, clip=idx.repeat(k), drop_text=dt, drop_image=di)
            d = pk["param"].prediction_to_denoised(xs.flatten(0, 1), v.flatten(0, 1), s.repeat_interleave(frames),
                                                   param()).reshape(xs.shape).chunk(k)
            if s_t is None:
                guided = d[0] + s_v * (d[1] - d[0])
            else:
                guided = pk["dual"].dual_cfg(d[0], d[1], d[2], s_v, s_t)
            x = x + (x - guided) / sig[i] * (sig[i + 1] - sig[i])
        if first is not None:
            x[:, :1] = first[idx]
        out.append(x)
    return torch.cat(out)


def first_latents(model, clips: tvp.TVPClips) -> torch.Tensor | None:
    """The clips' clean first latent frames (model space) when the base is handed them, else None."""
    return model.model.process_latent_in(encode(clips.videos[:, :1])) if FIRST_FRAME else None


def handed_first(forward, x0: torch.Tensor, seed: int):
    """``forward`` for training on clips ``x0``: with the clean first latent frame handed in when the base takes it."""
    return FirstFrameLatent(forward, x0, 1.0, torch.Generator().manual_seed(seed + 1)) if FIRST_FRAME else forward


def noisy(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's input at EDM noise level ``sigma`` (``x0 + sigma n``; a flow base gets it at ``t = sigma /
    (1 + sigma)``, ``(1 - t) x0 + t n``, the same signal-to-noise ratio), with the clean first frame when the base
    is handed it; and the per-clip noise level in the model's own terms."""
    level = sigma / (1 + sigma) if SAMPLING == "flow" else sigma
    xt = (1 - level) * x0 + level * noise if SAMPLING == "flow" else x0 + sigma * noise
    if FIRST_FRAME:
        xt = xt.clone()
        xt[:, :1] = x0[:, :1]
    return xt, torch.full((len(x0),), float(level))


def denoised(forward, xt: torch.Tensor, s: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """The base's clean estimate of ``xt [N, T, C, h, w]`` at model noise levels ``s``."""
    v = forward(xt, s, None, clip=clip)
    return _pack()["param"].prediction_to_denoised(xt.flatten(0, 1), v.flatten(0, 1), s.repeat_interleave(xt.shape[1]),
                                                   param()).reshape(xt.shape)


@torch.no_grad()
def one_step(forward, model, clips: tvp.TVPClips, sigmas=(0.5, 1.0, 2.0, 4.0), seed: int = 123, batch: int = 16,
             hidden_sigma: float = 10.0) -> dict:
    """Cheap, sensitive measures from single model calls on the held-out clips (fixed noise): the denoising loss
    at ``sigmas`` (the training objective, an ELBO stand-in; lower is better), and the instruction accuracy of the
    one-step prediction of the clean video at ``hidden_sigma``. That noise hides where the objects are in later
    frames (at sigma 2 the frozen base alone scored 0.875: the noisy input still shows them), so only a model that
    reads the instruction puts the named object where it goes."""
    pk = _pack()
    x0 = model.model.process_latent_in(encode(clips.videos))
    g = torch.Generator().manual_seed(seed)
    losses, preds = [], None
    for k, sigma in enumerate((*sigmas, hidden_sigma)):
        noise = torch.randn(x0.shape, generator=g)
        total, outs = 0.0, []
        for start in range(0, len(clips), batch):
            idx = torch.arange(start, min(len(clips), start + batch))
            xt, s = noisy(x0[idx], noise[idx], sigma)
            v = forward(xt, s, None, clip=idx)
            target = pk["param"].target(x0[idx].flatten(0, 1), noise[idx].flatten(0, 1), s.repeat_interleave(x0.shape[1]),
                                        param())
            total += float(((v.flatten(0, 1) - target) ** 2).mean()) * len(idx)
            d = pk["param"].prediction_to_denoised(xt.flatten(0, 1), v.flatten(0, 1), s.repeat_interleave(x0.shape[1]),
                                                   param())
            outs.append(d.reshape(xt.shape))
        if k == len(sigmas):
            preds = torch.cat(outs)
        else:
            losses.append(total / len(clips))
    acc = tvp.instruction_accuracy(decode(model.model.process_latent_out(preds)), clips.plans)
    return {"denoise_loss": statistics.fmean(losses), "one_step_instruction": acc["score"]}


# ----------------------------------------------------------------------------------------------------------
# the shipped frozen base: pretraining, file, gates

BASE_FILE = os.path.join(ROOT, "adapters", "weights", "tvp_svd_base.safetensors")
BASE_BROAD = 1536   # broad clips the shipped base is pretrained on
GATE_STEPS = 12     # Euler steps the gates sample with


def pretrain_base(model, clips: tvp.TVPClips, steps: int, seed: int = 0, lr: float = 1e-3, batch: int = 4,
                  callback=None):
    """Pretrain the frozen base image-to-video on instruction-free clips: the pack's trainer, the base's noise
    levels (``NOISE``: EDM log-normal, or shifted logit-normal for flow), image dropout 0.1 (the no-image branch
    image guidance needs), warm-up 50 steps, cosine decay; the clean first latent frame handed in when the base
    takes it."""
    pk = _pack()
    host = pk["host_mod"].describe(model)
    net = model.model.diffusion_model
    x = model.model.process_latent_in(encode(clips.videos))
    fwd = handed_first(pk["simda"].AdapterForward(model, param(), svd_conditions(clips, aid=False), host), x, seed)
    net.requires_grad_(True)
    res = train(net, fwd, x, steps, lr, batch, seed, pk["host_mod"].training_sigmas(model).tolist(), drop=0.05,
                warmup=50, lr_schedule="cosine", callback=callback)
    net.requires_grad_(False)
    return res


def save_base(path: str, model, meta: dict) -> None:
    """The base's UNet weights in fp16 plus the latent code, with ``meta`` (the command that made it, its gates)."""
    from safetensors.torch import save_file

    tensors = {f"unet/{k}": v.detach().half().contiguous() for k, v in model.model.diffusion_model.state_dict().items()}
    tensors.update(CODE.state_dict())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata={"kind": "tvp_base", "architecture": "SVD_img2vid", "width": str(WIDTH),
                                       "head_channels": str(_pack()["demo"].SVD_HEAD_CHANNELS),
                                       "sampling": SAMPLING, "flow_shift": str(FLOW_SHIFT),
                                       "first_frame": str(int(FIRST_FRAME)),
                                       **{k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}})


def load_base(path: str = BASE_FILE):
    """The base of ``path`` (its code becomes this module's ``CODE``) as a ModelPatcher, and its metadata."""
    global CODE, WIDTH
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    if meta.get("kind") != "tvp_base" or meta.get("architecture") != "SVD_img2vid":
        raise ValueError(f"{path} is not an SVD-architecture base of the miniature (kind {meta.get('kind')!r}, "
                         f"architecture {meta.get('architecture')!r}); fca_tvp.py reads the Wan bases")
    tensors = load_file(path)
    CODE = tvp.PatchCode.from_state_dict(tensors)
    WIDTH = int(meta["width"])
    use_sampling(meta.get("sampling", "edm"), meta.get("first_frame", "0") == "1")  # earlier files: SVD's EDM
    return _pack()["demo"].base_model(path), meta


@torch.no_grad()
def base_gates(model, clips: tvp.TVPClips, seed: int = 0, steps: int = GATE_STEPS, s_v: float = 1.0) -> dict:
    """The frozen base's gates on held-out first frames, before any adapter: samples from each clip's first frame
    (image guidance ``s_v``; 1 is the conditional prediction alone), scored by first-frame PSNR against the real
    frame and against the frame through the code (the code's own ceiling), the tracker finding every object and
    keeping its colour and shape (``tvp.object_fidelity``), and how far the objects move."""
    pk = _pack()
    host = pk["host_mod"].describe(model)
    fwd = pk["simda"].AdapterForward(model, param(), svd_conditions(clips, aid=False), host)
    frames = clips.videos.shape[1]
    shape = encode(clips.videos[:1]).shape[2:]
    lat = sample(fwd, len(clips), frames, shape, steps, s_v, None, seed, first=first_latents(model, clips))
    videos = decode(model.model.process_latent_out(lat))
    through_code = decode(encode(clips.videos[:, :1]))[:, 0]
    fid = tvp.object_fidelity(videos, clips.plans)
    moves = []
    for video, plan in zip(videos, clips.plans):
        centre = torch.stack([tvp.track(video, o.colour)[0] for o in plan.objects])  # [K, T, 2]
        moves.append(float((centre[:, -1] - centre[:, 0]).norm(dim=-1).max()))
    return {"first_frame_psnr": float(tvp.first_frame_psnr(videos, clips.first_frames).mean()),
            "first_frame_psnr_code": float(tvp.first_frame_psnr(videos, through_code).mean()),
            "code_ceiling_psnr": float(tvp.first_frame_psnr(decode(encode(clips.videos[:, :1])), clips.first_frames).mean()),
            "objects_found": fid["found"], "objects_kept": fid["kept"],
            "clips_moving_2.5px": sum(m >= 2.5 for m in moves) / len(moves), "videos": videos}


def evaluate(latents: torch.Tensor, clips: tvp.TVPClips, reference_feats) -> dict:
    videos = decode(latents)
    return tvp.summary(videos, clips.plans, clips.videos, reference_feats)


def _row_text(name, runs, keys):
    cells = []
    for k in keys:
        vals = [r[k] for r in runs]
        m = statistics.fmean(vals)
        sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
        cells.append(f"{m:7.3f} ± {sd:5.3f}" if k != "fd" else f"{m:7.1f} ± {sd:5.1f}")
    return f"| {name:<28} | " + " | ".join(cells) + " |"


# ----------------------------------------------------------------------------------------------------
# one ablation row and seed per job, run in worker processes

_JOB: dict = {}  # what every job reads: set by main() before the workers fork, so they share it copy-on-write


def _row_job(job) -> dict:
    """Train one AID variant with one seed on the frozen base, predict the held-out clips, score them (and, for the
    full model's first seed, the dual-CFG grid). Seeded at the start, so a job's result does not depend on which
    process runs it or what ran before it."""
    name, overrides, seed = job
    c = _JOB
    pk = _pack()
    simda, attach = pk["simda"], pk["attach"]
    model, held = c["model"], c["held"]
    config = dict(width=64, heads=4, depth=1, queries_per_frame=4, frames=c["frames"], text_dim=TEXT_DIM,
                  vision_dim=CTX, context_dim=CTX, **overrides)
    torch.manual_seed(seed)
    adapters = attach.new_adapters("aid", model, config)
    patched = attach.attach_adapters(model, adapters)
    fwd = simda.AdapterForward(patched, param(), c["train_conds"], c["host"], kind=pk["registry"].get("aid"), adapters=adapters)
    t0 = time.time()
    train(adapters, handed_first(fwd, c["x_train"], seed), c["x_train"], c["aid_steps"], 1e-3, 4, seed,
          c["sigma_table"], drop=0.05, warmup=20)
    train_s = time.time() - t0
    params = adapters.num_trainable_parameters()  # what was trained: an ablation's switched-off parts are not
    adapters.requires_grad_(False)
    hfwd = simda.AdapterForward(patched, param(), c["held_conds"], c["host"], kind=pk["registry"].get("aid"), adapters=adapters)

    def predict(s_v, s_t):
        lat = sample(hfwd, len(held), c["frames"], c["shape"], c["sample_steps"], s_v, s_t, seed=seed,
                     first=first_latents(model, held))
        return evaluate(c["unprocess"](lat), held, c["ref_feats"])

    t0 = time.time()
    scores = predict(c["s_v"], c["s_t"])
    sample_s = time.time() - t0
    run = {**scores, **one_step(hfwd, model, held)}
    grid = {}
    if name == "full" and seed == 0:  # the guidance grid on the first seed
        grid = {gv: run if gv == (c["s_v"], c["s_t"]) else {**run, **predict(*gv)} for gv in c["grid"]}
    return {"run": run, "params": params, "cost": (train_s / c["aid_steps"], sample_s), "grid": grid}


def default_jobs() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores))


def run_jobs(fn, jobs: list, workers: int):
    """``fn`` over ``jobs``, results in order: in this process, or in ``workers`` forked processes (one torch
    thread each) that inherit the loaded host and data. Yields results as they arrive, in order."""
    import multiprocessing

    if workers <= 1 or len(jobs) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for job in jobs:
            yield fn(job)
        return
    with multiprocessing.get_context("fork").Pool(min(workers, len(jobs)), initializer=torch.set_num_threads,
                                                  initargs=(1,)) as pool:
        yield from pool.imap(fn, jobs)


def benchmark_arguments(doc: str) -> argparse.ArgumentParser:
    """The options both text-video-prediction benchmarks take; each adds its own."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sets, fewer steps, one seed (about two minutes)")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--verbose", action="store_true", help="print training progress")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine: "
                    "several threads on a shared CPU are much slower)")
    return ap


def file_modes(ap: argparse.ArgumentParser, method: str, base_file: str, adapter_file: str, steps_flag: str,
               base_steps: int) -> None:
    """The arguments of the modes both benchmarks share, each of which makes or reads one file and stops:
    ``--pretrain-base OUT``, ``--train-adapters OUT`` (on ``--base``; steps from ``steps_flag``), ``--shipped``
    (``--base`` and ``--adapters`` on a fresh held-out set of ``--eval-seed``)."""
    ap.add_argument("--base-steps", type=int, default=None)
    ap.add_argument("--pretrain-base", default=None, metavar="OUT",
                    help=f"pretrain the frozen base (--base-steps, default {base_steps}) on the broad set, print its "
                         "gates every --gate-every steps, write it to OUT (fp16, with this command in its metadata) and "
                         "stop")
    ap.add_argument("--gate-every", type=int, default=1000)
    ap.add_argument("--train-adapters", default=None, metavar="OUT",
                    help=f"train {method} ({steps_flag}, default 1500) on the base (--base), print held-out "
                         "accuracy every --gate-every steps, write the adapters to OUT (fp16, with this command) and stop")
    ap.add_argument("--shipped", action="store_true",
                    help=f"evaluate the shipped base and full {method} (--base, --adapters) on a fresh held-out set of "
                         "--eval-seed (--eval-clips like the training clips and half as many novel ones) and stop")
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--eval-clips", type=int, default=64)
    ap.add_argument("--base", default=base_file, help="the frozen base file (default: the shipped one)")
    ap.add_argument("--adapters", default=adapter_file, help=f"the {method} adapter file (default: the shipped one)")


def run_mode(args, t_start: float, modes: dict) -> bool:
    """Run the first mode whose flag is set (``{flag attribute: fn(args, t_start)}``); whether one ran."""
    for flag, fn in modes.items():
        if getattr(args, flag):
            fn(args, t_start)
            return True
    return False


def start(args) -> float:
    """Apply ``--verbose`` and ``--threads`` and make the file arguments absolute (loading ComfyUI in this process
    changes the working directory to its folder); the start time."""
    global VERBOSE, START_DIR
    VERBOSE = args.verbose
    START_DIR = os.getcwd()
    for name in ("base", "adapters", "pretrain_base", "train_adapters", "json", "aid_json", "base_cache", "preview"):
        if getattr(args, name, None):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    if getattr(args, "summarise", None):
        args.summarise = [os.path.abspath(p) for p in args.summarise]
    torch.set_num_threads(args.threads)
    return time.time()


OVERFIT_SIGMAS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


@torch.no_grad()
def noise_kept(denoise, x0: torch.Tensor, decode_fn, frame_dim: int, first: int = 0, seed: int = 7) -> dict:
    """How much of the noise a model's clean estimate keeps at each of ``OVERFIT_SIGMAS``, in EDM's terms
    (``x = x0 + sigma n``; ``denoise(n, sigma)`` returns the clean estimate of ``x0`` noised with ``n`` to that level,
    in whatever form the model's own parameterisation takes it): the share of the noise kept (0: removed, 1: passed through), PSNR of the noisy input and of
    the estimate through ``decode_fn`` (latents -> videos ``[N, T, 3, H, W]``) against the clips through it, and
    what an Euler sampler is left with at that level (sigma x share, in latent units). Frames from ``first`` on
    along ``frame_dim`` (a frame handed to the model clean is left out)."""
    g = torch.Generator().manual_seed(seed)
    target = decode_fn(x0)[:, first:]
    later = [slice(None)] * x0.dim()
    later[frame_dim] = slice(first, None)
    later = tuple(later)

    def psnr(lat):
        err = (decode_fn(lat)[:, first:] - target).square().flatten(1).mean(1)
        return float((10 * torch.log10(1 / err)).mean())

    rows = {}
    for sigma in OVERFIT_SIGMAS:
        n = torch.randn(x0.shape, generator=g)
        x = x0 + sigma * n
        d = denoise(n, sigma)
        e, noise = (d - x0)[later], (sigma * n)[later]
        kept = float((e * noise).sum() / noise.square().sum())
        rows[sigma] = dict(noisy_db=psnr(x), estimate_db=psnr(d), kept=kept, left=sigma * kept)
    return rows


def print_noise_kept(rows: dict) -> None:
    print("| sigma | noisy input (dB) | clean estimate (dB) | share of the noise kept | left to the sampler (sigma x share) |")
    print("|---|---|---|---|---|")
    for sigma, r in rows.items():
        print(f"| {sigma:g} | {r['noisy_db']:.1f} | {r['estimate_db']:.1f} | {r['kept']:.2f} | {r['left']:.3f} |",
              flush=True)


def overfit_main(args, t_start: float) -> None:
    """The base trained on a few clips only: how much of the noise its clean estimate of those same clips keeps at
    each noise level. A denoiser that has memorised its clips should remove nearly all of it at every level."""
    pk = _pack()
    clips = tvp.make_instruction_set(args.overfit, seed=0)
    model = tiny_svd(encode(clips.videos[:1]).shape[2], seed=0)
    host = pk["host_mod"].describe(model)
    x0 = model.model.process_latent_in(encode(clips.videos))
    fwd = pk["simda"].AdapterForward(model, param(), svd_conditions(clips, aid=False), host)
    net = model.model.diffusion_model
    net.requires_grad_(True)
    res = train(net, handed_first(fwd, x0, 0), x0, args.base_steps or 600, 1e-3, 4, 0, pk["host_mod"].training_sigmas(model).tolist(),
                warmup=50)
    net.requires_grad_(False)
    print(f"{args.overfit} clips, code {args.code}, {SAMPLING}, noise {NOISE['sigma_sampling']}: {len(res.losses)} steps, loss "
          f"{statistics.fmean(res.losses[:20]):.3f} -> {statistics.fmean(res.losses[-50:]):.3f} "
          f"({time.time() - t_start:.0f} s)")

    def denoise(noise, sigma):
        return denoised(fwd, *noisy(x0, noise, sigma), torch.arange(len(x0)))

    rows = noise_kept(denoise, x0, lambda lat: decode(model.model.process_latent_out(lat)), frame_dim=1,
                      first=1 if FIRST_FRAME else 0)
    print_noise_kept(rows)
    g = base_gates(model, clips)  # sampling the memorised clips back from their first frames
    print("sampled from their first frames:", {k: round(v, 3) for k, v in g.items() if k != "videos"})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"clips": args.overfit, "code": args.code, "noise": NOISE, "steps": len(res.losses),
                       "loss": res.losses, "rows": rows}, f, indent=1)


ADAPTER_FILE = os.path.join(ROOT, "adapters", "weights", "video_adapters", "tvp_aid_full.safetensors")
AID_CONFIG = dict(width=64, heads=4, depth=1, queries_per_frame=4, text_dim=TEXT_DIM, vision_dim=CTX, context_dim=CTX)
S_V, S_T = 1.5, 2.0  # dual CFG of the shipped model's rows


def instruction_sets(seed: int, train: int = 192, heldout: int = 64):
    """Training clips (no novel instruction, ``tvp.is_novel``), held-out clips of the same kind, held-out clips of
    novel combinations only, and a reference set for FD, each from its own stream of ``seed``."""
    return dict(train=tvp.make_instruction_set(train, 4 * seed, novel=False) if train else None,
                heldout=tvp.make_instruction_set(heldout, 4 * seed + 1, novel=False),
                novel=tvp.make_instruction_set(heldout // 2, 4 * seed + 2, novel=True),
                reference=tvp.make_instruction_set(heldout, 4 * seed + 3))


@torch.no_grad()
def predict(model, clips: tvp.TVPClips, seed: int, adapters=None, steps: int = GATE_STEPS, s_v: float = S_V,
            s_t: float = S_T) -> torch.Tensor:
    """Videos ``[N, T, 3, H, W]`` predicted from the clips' first frames: the frozen base alone (image CFG ``s_v``)
    or with AID ``adapters`` (dual CFG ``s_v``, ``s_t``), through the pack's forward."""
    pk = _pack()
    host = pk["host_mod"].describe(model)
    if adapters is None:
        fwd = pk["simda"].AdapterForward(model, param(), svd_conditions(clips, aid=False), host)
    else:
        patched = pk["attach"].attach_adapters(model, adapters)
        fwd = pk["simda"].AdapterForward(patched, param(), svd_conditions(clips, aid=True), host,
                                         kind=pk["registry"].get("aid"), adapters=adapters)
    shape = encode(clips.videos[:1]).shape[2:]
    lat = sample(fwd, len(clips), clips.videos.shape[1], shape, steps, s_v, None if adapters is None else s_t, seed,
                 first=first_latents(model, clips))
    return decode(model.model.process_latent_out(lat))


def score(videos: torch.Tensor, clips: tvp.TVPClips, reference: tvp.TVPClips) -> dict:
    """The summary's columns, and instruction accuracy split by phase count: one-phase clips, and the second phase
    of two-phase clips (the "then" that a base pretrained on single motions lacks); None where a set has none."""
    out = tvp.summary(videos, clips.plans, clips.videos, tvp.clip_features(reference.videos))
    row = {k: out[k] for k in ("instruction_score", "instruction_all_phases", "fd", "first_frame_psnr", "future_mse")}
    oks = [(len(p.directions), tvp.phase_correct(v, p)) for v, p in zip(videos, clips.plans)]
    one, second = [o[0] for n, o in oks if n == 1], [o[1] for n, o in oks if n == 2]
    row["one_phase"] = statistics.fmean(one) if one else None
    row["second_phase"] = statistics.fmean(second) if second else None
    return row


def written_command(script: str, out: str) -> str:
    """The command line that wrote ``out``, as it goes into the file's metadata: ``out`` itself as OUT, files of this
    repository relative to its root, other absolute paths as their file name (no path of the machine it ran on)."""
    import shlex
    import sys

    def word(a: str) -> str:
        full = os.path.abspath(os.path.join(START_DIR, a))  # arguments were given relative to the start folder
        if full == out:
            return "OUT"
        if os.path.isabs(a) or os.path.exists(full):
            rel = os.path.relpath(full, ROOT)
            return rel if not rel.startswith("..") else os.path.basename(a)
        return a

    return f"python benchmarks/{script} " + " ".join(shlex.quote(word(a)) for a in sys.argv[1:])


def train_with_curve(args, t_start: float, script: str, steps: int, adapters, sets: dict, fit, predict_fn,
                     meta: dict) -> None:
    """The ``--train-adapters OUT`` run both benchmarks share: ``fit(steps, callback)`` trains ``adapters``, with
    held-out instruction accuracy (``predict_fn(clips)``, on 32 held-out clips) every ``--gate-every`` steps and on
    all held-out and novel clips at the end; the adapters are written in fp16 with the command, the curve and
    ``meta`` in their metadata."""

    probe = tvp.TVPClips(**{f: getattr(sets["heldout"], f)[:32] for f in tvp.TVPClips.__dataclass_fields__})
    curve = []

    def evaluate(step, full=False):
        adapters.requires_grad_(False)
        rows = {"step": step, "seconds": round(time.time() - t_start)}
        for name in (("heldout", "novel") if full else ("heldout",)):
            clips = sets[name] if full else probe
            rows[name] = score(predict_fn(clips), clips, sets["reference"])
        adapters.requires_grad_(True)
        print(json.dumps(rows, default=lambda v: round(v, 4)), flush=True)
        return rows

    def callback(step, loss):
        if step % args.gate_every == 0 and step < steps:
            curve.append(evaluate(step))

    res = fit(steps, callback)
    curve.append(evaluate(steps, full=True))
    adapters.requires_grad_(False)
    cmd = written_command(script, args.train_adapters)
    adapters.half().save(args.train_adapters, extra={"training": {
        "command": cmd, "base": os.path.basename(args.base), "steps": steps, "train_clips": len(sets["train"]), **meta,
        "novel_targets": tvp.NOVEL_TARGETS, "novel_motions": tvp.NOVEL_MOTIONS, "curve": curve,
        "loss_first_last": [statistics.fmean(res.losses[:50]), statistics.fmean(res.losses[-50:])],
        "seconds": round(time.time() - t_start)}})
    print(f"wrote {args.train_adapters} ({time.time() - t_start:.0f} s)")


def train_adapters_main(args, t_start: float) -> None:
    """Train AID (full, or the --row variant) on the base with held-out accuracy every --gate-every steps; write
    the adapters."""
    global TEXT_CODE
    pk = _pack()
    model, _ = load_base(args.base)
    TEXT_CODE = args.text_code or 1
    if args.aid_shift is not None:
        if NOISE.get("sigma_sampling") != "flow_shift":
            raise SystemExit("--aid-shift needs a flow base")
        NOISE["flow_shift"] = args.aid_shift
    sets = instruction_sets(0)
    host = pk["host_mod"].describe(model)
    config = dict(AID_CONFIG, frames=sets["train"].videos.shape[1], **ROWS[ROW_NAMES[args.row]])
    seed = args.adapter_seed
    torch.manual_seed(seed)
    adapters = pk["attach"].new_adapters("aid", model, config)
    patched = pk["attach"].attach_adapters(model, adapters)
    fwd = pk["simda"].AdapterForward(patched, param(), svd_conditions(sets["train"], aid=True), host,
                                     kind=pk["registry"].get("aid"), adapters=adapters)
    x = model.model.process_latent_in(encode(sets["train"].videos))
    fwd = handed_first(fwd, x, seed)

    def fit(steps, callback):
        return train(adapters, fwd, x, steps, args.aid_lr, args.aid_batch, seed,
                     pk["host_mod"].training_sigmas(model).tolist(), drop=0.05, warmup=50, lr_schedule="cosine",
                     callback=callback)

    train_with_curve(args, t_start, "aid_tvp.py", args.aid_steps or 1500, adapters, sets, fit,
                     lambda clips: predict(model, clips, 0, adapters),
                     {"noise": NOISE, "lr": args.aid_lr, "batch": args.aid_batch, "dual_cfg": [S_V, S_T],
                      "adapter_seed": seed, "row": ROW_NAMES[args.row], "text_code": TEXT_CODE})


def adapters_training(path: str) -> dict:
    """The ``training`` record of the adapter file ``path`` (its command, the base it was trained on, ...); empty
    when there is no such file or the file has none."""
    return _pack()["files"].read_metadata(path).get("training", {}) if os.path.isfile(path) else {}


def shipped_table(args, t_start: float, script: str, load_base_fn, load_adapters_fn, predict_fn, full_row: str,
                  settings: str) -> None:
    """The ``--shipped`` evaluation both benchmarks share, on a fresh held-out set of ``--eval-seed`` (clips like the
    training ones, and novel combinations): rows repeat the first frame, the frozen base alone
    (``predict_fn(model, clips, seed, None)``) and, when ``--adapters`` exists, the adapters
    (``load_adapters_fn(path)``). A missing base stops with what to run; missing adapters are said and skipped."""
    if not os.path.isfile(args.base):
        raise SystemExit(f"{args.base} does not exist: make the frozen base with `python benchmarks/{script} "
                         "--pretrain-base OUT` and pass --base OUT")
    model, _ = load_base_fn(args.base)
    adapters = None
    trained_on = adapters_training(args.adapters).get("base")
    if trained_on not in (None, os.path.basename(args.base)):
        print(f"{os.path.basename(args.adapters)} was trained on {trained_on}, not on {os.path.basename(args.base)}: "
              f"evaluating the base alone (pass --base with {trained_on} to evaluate the adapters)", flush=True)
    elif os.path.isfile(args.adapters):
        adapters = load_adapters_fn(args.adapters).float().requires_grad_(False)
    else:
        print(f"{args.adapters} does not exist (this version ships no trained adapters for {script}: see the method's "
              f"page in docs/); evaluating the base alone. Train them with `python benchmarks/{script} "
              "--train-adapters OUT --base BASE` and pass --adapters OUT", flush=True)
    sets = instruction_sets(1000 + args.eval_seed, train=0, heldout=args.eval_clips)
    table = {}
    for name in ("heldout", "novel"):
        clips = sets[name]
        frames = clips.videos.shape[1]
        table[name] = {
            "repeat the first frame": score(tvp.repeat_first_frame(clips.first_frames, frames), clips, sets["reference"]),
            "frozen base alone": score(predict_fn(model, clips, args.eval_seed, None), clips, sets["reference"])}
        if adapters is not None:
            table[name][full_row] = score(predict_fn(model, clips, args.eval_seed, adapters), clips, sets["reference"])
    floor = tvp.noise_floor(tvp.clip_features(sets["heldout"].videos), tvp.clip_features(sets["reference"].videos))
    print(f"shipped files on held-out clips of seed {args.eval_seed} ({args.eval_clips} like the training clips, "
          f"{args.eval_clips // 2} novel); {settings}; FD noise floor {floor:.1f} ({time.time() - t_start:.0f} s)")
    for name, rows in table.items():
        print(f"\n{name}:\n| row | instruction acc. | all phases | one-phase clips | second phase of two | FD | "
              "first-frame PSNR | future MSE |\n|---|---|---|---|---|---|---|---|")
        for row, r in rows.items():
            split = " | ".join("–" if r[k] is None else f"{r[k]:.3f}" for k in ("one_phase", "second_phase"))
            print(f"| {row} | {r['instruction_score']:.3f} | {r['instruction_all_phases']:.3f} | {split} | {r['fd']:.1f} | "
                  f"{r['first_frame_psnr']:.1f} | {r['future_mse']:.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"eval_seed": args.eval_seed, "noise_floor": floor, "rows": table}, f, indent=1, default=float)


def shipped_main(args, t_start: float) -> None:
    """The shipped base and full AID (or the ``--row`` the adapter file was trained as) on a fresh held-out set of
    ``--eval-seed``, with dual CFG ``--s-v``, ``--s-t``; the adapters' prompts are encoded with the text code they
    were trained with (``--text-code`` overrides it)."""
    global TEXT_CODE
    training = adapters_training(args.adapters)
    row = training.get("row", "full")
    TEXT_CODE = args.text_code or int(training.get("text_code", 1))
    shipped_table(args, t_start, "aid_tvp.py", load_base, _pack()["registry"].get("aid").load,
                  functools.partial(predict, s_v=args.s_v, s_t=args.s_t),
                  "AID full (shipped)" if row == "full" else f"AID, {row}",
                  f"Euler {GATE_STEPS} steps, dual CFG s_V={args.s_v:g} s_T={args.s_t:g} (the base alone: s_V)")


def summarise_main(args, t_start: float) -> None:
    """The ablation table of adapter files made by ``--train-adapters [--row R] [--adapter-seed S]`` on one base:
    each file's final evaluation (held-out and novel clips of ``instruction_sets(0)``, sampling seed 0) grouped by
    row, mean ± spread over the files of a row, beside the base alone and the repeated first frame on the same
    clips."""
    files = args.summarise
    trainings = [adapters_training(f) for f in files]
    for path, t in zip(files, trainings):
        if not t.get("curve"):
            raise SystemExit(f"{path}: not an adapter file written by --train-adapters (no training curve)")
    bases = {t.get("base") for t in trainings}
    if bases != {os.path.basename(args.base)}:
        raise SystemExit(f"the files were trained on {sorted(map(str, bases))}, --base is {os.path.basename(args.base)}: "
                         "pass the one base they were all trained on")
    model, _ = load_base(args.base)
    sets = instruction_sets(0)
    rows: dict[str, dict[str, list]] = {}
    for name in ("heldout", "novel"):
        clips = sets[name]
        rows.setdefault("repeat the first frame", {})[name] = [
            score(tvp.repeat_first_frame(clips.first_frames, clips.videos.shape[1]), clips, sets["reference"])]
        rows.setdefault("frozen base alone", {})[name] = [score(predict(model, clips, 0, None), clips, sets["reference"])]
    for t in trainings:
        final = t["curve"][-1]
        row = t.get("row", "full") + (f", text code {t['text_code']}" if t.get("text_code", 1) != 1 else "")
        for name in ("heldout", "novel"):
            rows.setdefault(row, {}).setdefault(name, []).append(final[name])
    keys = ("instruction_score", "instruction_all_phases", "second_phase", "fd")
    print(f"{len(files)} adapter files on {bases.pop()} (--base {os.path.basename(args.base)}); mean ± spread over the "
          f"files of a row (n); Euler {GATE_STEPS} steps, dual CFG s_V={S_V:g} s_T={S_T:g}; "
          f"{time.time() - t_start:.0f} s")
    for name in ("heldout", "novel"):
        print(f"\n{name}:\n| row | n | instruction acc. | all phases | second phase of two | FD |\n|---|---|---|---|---|---|")
        for row, by_set in rows.items():
            runs = by_set[name]
            cells = []
            for k in keys:
                vals = [r[k] for r in runs if r.get(k) is not None]
                if not vals:
                    cells.append("–")
                    continue
                m, sd = statistics.fmean(vals), statistics.pstdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{m:.1f} ± {sd:.1f}" if k == "fd" else f"{m:.3f} ± {sd:.3f}")
            print(f"| {row} | {len(runs)} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"files": [os.path.basename(p) for p in files], "rows": rows}, f, indent=1, default=float)


def gate_sets() -> tuple[tvp.TVPClips, tvp.TVPClips, tvp.TVPClips]:
    """The broad pretraining clips, the 64 held-out first frames the final gates use (instruction clips, in which
    no object hides another) and the 32 of them the curve's snapshots use."""
    broad = tvp.make_broad_set(BASE_BROAD, seed=0)
    gate_clips = tvp.make_instruction_set(64, seed=99)
    snap = tvp.TVPClips(**{f: getattr(gate_clips, f)[:32] for f in tvp.TVPClips.__dataclass_fields__})
    return broad, gate_clips, snap


def pretrain_with_gates(args, t_start: float, script: str, model, pretrain, gates, save, meta: dict) -> None:
    """The ``--pretrain-base OUT`` run both benchmarks share: ``pretrain(callback)`` with ``gates(clips)`` printed
    every ``--gate-every`` steps on the snapshot clips and at the end on all gate clips, then ``save(path, meta)``
    with the command, the curve and the final gates."""

    _, gate_clips, snap = gate_sets()
    curve = []

    def measure(step, clips):
        g = gates(clips)
        g.pop("videos")
        row = {"step": step, "seconds": round(time.time() - t_start), **{k: round(v, 4) for k, v in g.items()}}
        print(json.dumps(row), flush=True)
        return row

    def callback(step, loss):
        if step % args.gate_every == 0 and step < args.base_steps:
            curve.append(measure(step, snap))

    res = pretrain(callback)
    curve.append(measure(args.base_steps, gate_clips))
    cmd = written_command(script, args.pretrain_base)
    save(args.pretrain_base, {**meta, "command": cmd, "steps": args.base_steps, "broad_clips": BASE_BROAD,
                              "loss_first_last": [statistics.fmean(res.losses[:50]), statistics.fmean(res.losses[-50:])],
                              "gates": curve[-1], "curve": curve, "seconds": round(time.time() - t_start)})
    print(f"wrote {args.pretrain_base} ({time.time() - t_start:.0f} s)")


def pretrain_main(args, t_start: float) -> None:
    args.base_steps = args.base_steps or 6000
    _pack()  # the in-process ComfyUI
    broad = gate_sets()[0]
    model = tiny_svd(CODE.channels, seed=0)
    pretrain_with_gates(args, t_start, "aid_tvp.py", model,
                        lambda cb: pretrain_base(model, broad, args.base_steps, callback=cb),
                        lambda clips: base_gates(model, clips), lambda path, meta: save_base(path, model, meta),
                        {"noise": NOISE})


def main() -> None:
    ap = benchmark_arguments(__doc__)
    ap.add_argument("--base-cache", default=None,
                    help="keep the pretrained base in PATH.<quick|full>.safetensors and reuse it on the next run")
    file_modes(ap, "AID", BASE_FILE, ADAPTER_FILE, "--aid-steps", 6000)
    ap.add_argument("--aid-steps", type=int, default=None)
    ap.add_argument("--adapter-seed", type=int, default=0,
                    help="--train-adapters: seed of the adapters' initialisation and training draws")
    ap.add_argument("--aid-lr", type=float, default=1e-3, help="--train-adapters: peak learning rate (cosine)")
    ap.add_argument("--aid-batch", type=int, default=4, help="--train-adapters: clips per step")
    ap.add_argument("--aid-shift", type=float, default=None,
                    help="--train-adapters on a flow base: shift of the training noise levels (default: the base's)")
    ap.add_argument("--text-code", type=int, choices=tvp.TEXT_CODES, default=None,
                    help="--train-adapters: the stand-in text encoder's version the adapters read (default 1; 2 marks "
                         "the clauses of a two-phase instruction); --shipped: override the one the adapters record")
    ap.add_argument("--s-v", type=float, default=S_V, help="--shipped: image guidance scale")
    ap.add_argument("--s-t", type=float, default=S_T, help="--shipped: text guidance scale")
    ap.add_argument("--summarise", nargs="+", default=None, metavar="FILE",
                    help="print the ablation table of adapter files made by --train-adapters on --base (each file's "
                         "final held-out scores, grouped by --row) and stop")
    ap.add_argument("--row", choices=tuple(ROW_NAMES), default="full",
                    help="--train-adapters: the AID variant to train (an ablation row of the paper: full AID, no "
                         "spatial / short-term / long-term adapters or none of them, one branch of the DQFormer "
                         "only, no state prompts)")
    ap.add_argument("--rows", default=None, help="comma-separated subset of rows (default: all)")
    ap.add_argument("--width", type=int, default=WIDTH, help="channels of the base UNet's first level (the second has twice)")
    ap.add_argument("--jobs", type=int, default=default_jobs(),
                    help="worker processes for the ablation rows (default: one per core, at most 4; 1: in this "
                         "process). Workers need fork (Linux, macOS); elsewhere the rows run in this process")
    ap.add_argument("--overfit", type=int, default=0, metavar="N",
                    help="train the base on N instruction clips only (--base-steps, default 600) and print how much "
                         "noise its clean estimate of them keeps at each noise level; then stop")
    ap.add_argument("--code", choices=("pca16", "raw"), default="pca16",
                    help="the latent code: the centred 16-channel patch code, or the raw 48-channel pixel patches")
    ap.add_argument("--noise", choices=("lognormal", "table"), default="lognormal",
                    help="training noise levels: log-normal (ln sigma ~ N(--noise-mean, --noise-std^2)), or uniform "
                         "over the model's 1000 sigmas (0.002-700) as earlier versions")
    ap.add_argument("--noise-mean", type=float, default=0.7, help="SVD's 0.7 (EDM's image recipe: -1.2)")
    ap.add_argument("--noise-std", type=float, default=1.6, help="SVD's 1.6 (EDM's image recipe: 1.2)")
    ap.add_argument("--sampling", choices=("edm", "flow"), default="edm",
                    help="--pretrain-base / --overfit: SVD's own EDM v-prediction, or the same UNet as a flow model "
                         f"(shift {FLOW_SHIFT:g}, shifted logit-normal noise levels; --noise* do not apply)")
    ap.add_argument("--first-frame", action="store_true",
                    help="--pretrain-base / --overfit (flow only): hand the base the clean first latent frame in "
                         "place of the noisy one, in training and sampling")
    args = ap.parse_args()
    use_code(args.code)
    use_sampling(args.sampling, args.first_frame)
    globals()["WIDTH"] = args.width
    if SAMPLING == "edm":
        NOISE.update(lognormal_mean=args.noise_mean, lognormal_std=args.noise_std)
    if args.noise == "table":
        NOISE.clear()
        NOISE.update(sigma_sampling="schedule")
    if args.jobs > 1 and args.threads > 1:
        print(f"--threads {args.threads} with --jobs {args.jobs}: one thread per process (threads before a fork "
              "can hang the workers); --jobs 1 for more threads", flush=True)
        args.threads = 1
    if args.text_code is not None and not (args.train_adapters or args.shipped):
        raise SystemExit("--text-code applies to --train-adapters and --shipped only")
    t_start = start(args)
    if run_mode(args, t_start, {"pretrain_base": pretrain_main, "overfit": overfit_main,
                                "train_adapters": train_adapters_main, "shipped": shipped_main,
                                "summarise": summarise_main}):
        return
    quick = args.quick
    seeds = args.seeds or (1 if quick else 2)
    sizes = dict(broad=64, train=16, heldout=8) if quick else dict(broad=384, train=48, heldout=32)
    base_steps, aid_steps, sample_steps = (100, 30, 4) if quick else (800, 200, 8)
    base_steps, aid_steps = args.base_steps or base_steps, args.aid_steps or aid_steps
    bench = tvp.make_benchmark(seed=0, **sizes)
    pk = _pack()
    simda, attach, host_mod = pk["simda"], pk["attach"], pk["host_mod"]
    frames = bench.train.videos.shape[1]
    shape = encode(bench.train.videos[:1]).shape[2:]

    # 1. the frozen base: image-to-video on the broad set
    model = tiny_svd(shape[0], seed=0)
    host = host_mod.describe(model)
    sigma_table = host_mod.training_sigmas(model).tolist()
    net = model.model.diffusion_model
    cache = args.base_cache and f"{args.base_cache}.{'quick' if quick else 'full'}.safetensors"
    if cache and os.path.exists(cache):
        from safetensors.torch import load_file

        net.load_state_dict(load_file(cache))
        print(f"base: loaded {cache}", flush=True)
    else:
        x_broad = model.model.process_latent_in(encode(bench.broad.videos))
        fwd = simda.AdapterForward(model, param(), svd_conditions(bench.broad, aid=False), host)
        net.requires_grad_(True)
        t0 = time.time()
        res = train(net, fwd, x_broad, base_steps, 1e-3, 4, 0, sigma_table, warmup=50)
        base_time = time.time() - t0
        print(f"base: {sum(p.numel() for p in net.parameters()):,} parameters, {base_steps} steps in {base_time:.0f} s, "
              f"loss {statistics.fmean(res.losses[:20]):.3f} -> {statistics.fmean(res.losses[-20:]):.3f}", flush=True)
        if cache:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, cache)
    net.requires_grad_(False)

    ref_feats = tvp.clip_features(bench.reference.videos)
    floor = tvp.noise_floor(tvp.clip_features(bench.heldout.videos), ref_feats)
    held = bench.heldout
    x_train = model.model.process_latent_in(encode(bench.train.videos))
    train_conds = svd_conditions(bench.train, aid=True)
    held_conds = svd_conditions(held, aid=True)
    keys = ("denoise_loss", "one_step_instruction", "fd", "instruction_score", "first_frame_psnr", "future_mse")
    results: dict[str, list] = {}

    def unprocess(lat):
        return model.model.process_latent_out(lat)

    # baselines
    repeat = tvp.repeat_first_frame(held.first_frames, frames)
    rep = tvp.summary(repeat, held.plans, held.videos, ref_feats)
    rep.update(denoise_loss=float("nan"), one_step_instruction=rep["instruction_score"])
    results["repeat the first frame"] = [rep]
    base_fwd = simda.AdapterForward(model, param(), svd_conditions(held, aid=False), host)
    base_one = one_step(base_fwd, model, held)
    results["frozen base alone"] = [{**evaluate(unprocess(sample(base_fwd, len(held), frames, shape, sample_steps, 1.5,
                                                                  None, seed=s)), held, ref_feats), **base_one}
                                    for s in range(seeds)]
    print("baselines done", flush=True)

    s_v, s_t = 1.5, 2.0
    grid = [(1.0, 1.0), (1.5, 2.0), (1.5, 5.0), (3.0, 2.0)] if not quick else [(1.0, 1.0), (1.5, 2.0)]
    rows = ROWS if not args.rows else {k: v for k, v in ROWS.items() if k in args.rows.split(",")}
    _JOB.clear()
    _JOB.update(model=model, host=host, frames=frames, shape=shape, sample_steps=sample_steps, aid_steps=aid_steps,
                sigma_table=sigma_table, x_train=x_train, train_conds=train_conds, held=held, held_conds=held_conds,
                ref_feats=ref_feats, s_v=s_v, s_t=s_t, grid=grid, unprocess=unprocess)
    grid_results: dict[tuple, list] = {g: [] for g in grid}
    params_per_row, cost = {}, {}
    jobs = [(name, overrides, seed) for name, overrides in rows.items() for seed in range(seeds)]
    runs: list = []
    for (name, _, seed), out in zip(jobs, run_jobs(_row_job, jobs, args.jobs)):
        runs.append(out["run"])
        params_per_row[name] = out["params"]
        cost.setdefault(name, []).append(out["cost"])
        for gv, r in out["grid"].items():
            grid_results[gv].append(r)
        if seed == seeds - 1:
            results[name], runs = runs, []
            print(_row_text(name, results[name], keys), f"({time.time() - t_start:.0f} s)", flush=True)

    print()
    print(f"AID on the miniature TVP task: {len(bench.train)} training clips, {len(held)} held-out, {frames} frames "
          f"of 32x32; base {base_steps} steps, AID {aid_steps} steps, {sample_steps} sampling steps, dual CFG "
          f"s_V={s_v} s_T={s_t}; {seeds} seed(s) (mean ± spread over AID training seeds and sampling noise)")
    print(f"FD noise floor (held-out vs second held-out set): {floor:.1f}")
    print()
    head = (f"| {{:<28}} | {'held-out loss':>15} | {'1-step instr.':>15} | {'FD':>15} | {'instruction acc.':>15} | "
            f"{'first-frame PSNR':>15} | {'future MSE':>15} |")
    print(head.format("method"))
    print("|" + "---|" * 7)
    for name, runs in results.items():
        print(_row_text(name, runs, keys))
    print()
    print("Dual CFG grid (full AID):")
    print(head.format("s_V, s_T (first seed)"))
    print("|" + "---|" * 7)
    for gv, runs in grid_results.items():
        print(_row_text(f"{gv[0]:g}, {gv[1]:g}", runs, keys))
    print()
    print("Trainable parameters and cost per row (CPU, this run):")
    for name in rows:
        per_step = statistics.fmean(c[0] for c in cost[name])
        samp = statistics.fmean(c[1] for c in cost[name])
        print(f"  {name:<28} {params_per_row[name]:>10,} parameters, {1000 * per_step:6.0f} ms per training step, "
              f"{samp:5.1f} s to sample {len(held)} clips")
    print(f"\ntotal {time.time() - t_start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": {k: v for k, v in results.items()},
                       "grid": {f"{a},{b}": v for (a, b), v in grid_results.items()},
                       "noise_floor": floor, "params": params_per_row}, f, indent=1, default=float)


if __name__ == "__main__":
    main()
