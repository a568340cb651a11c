"""Training memory of every adapter kind on its real-size base, against ComfyUI's own Train LoRA node on the same
model: exact, device-independent byte counts of one training step, fitted per token and extrapolated to the
papers' training shapes. Results and conclusions: docs/memory.md.

    COMFYUI_PATH=/path/to/ComfyUI-0.33 python benchmarks/memory.py [--quick] [--host-path PATH] [--only BASE ...]

What is counted (one training step, batch 1, on the CPU, random weights):

* saved for backward: every tensor autograd keeps from the forward for the backward, through
  ``torch.autograd.graph.saved_tensors_hooks`` around the forward, counted once per storage, plus the inputs every
  ``torch.utils.checkpoint`` call holds (given inside dicts or tuples they are held by reference, not through the
  hooks); the model's and the adapters' own parameters are not activations and are left out (a weight cast to
  another dtype, or the merged weight of a LoRA, is a new tensor and is counted);
* with gradient checkpointing that count holds what each checkpoint keeps and what runs outside checkpoints;
  backward then runs one checkpointed segment again with everything it saves, so the activation peak is
  ``saved + the largest segment's own saved bytes`` (from the run without checkpointing on the same clip). That
  second term ("recompute") is part of every "activations" figure;
* static: the frozen base's storage, the trainable parameters (fp32 master weights for the pack), their gradients
  and the AdamW state (two moments).

Not counted: backward's transient gradient buffers (a few block-sized tensors; for core's LoRA also one layer's
full-size weight gradient), allocator caching and fragmentation, the CUDA context and kernels' workspaces. The
process's resident-set peak (``VmHWM``, reset before each step) is printed beside the counts as a coarse
cross-check only: it includes the weights, Python and the allocator.

Models, built with ComfyUI's own classes (``comfy.model_detection`` picks the config from the state-dict shapes)
with random weights, never saved: Wan 2.1 1.3B and 14B at full width with two blocks (every DiT block is the same,
so saved bytes are counted per block and scaled to 30 / 40 blocks; a run with a third block checks that), SD 1.5
and SVD (-XT: the same UNet) whole. Tokens: a Wan latent ``[1, 16, T, h, w]`` has ``T * h/2 * w/2``; frames-in-batch
UNets ``F * h * w`` latent cells. Wan clips keep the paper's 21 latent frames and vary the frame size (FCA's keys
grow with frames x text length); UNet clips vary frames (2, 4) and frame size, which separates what grows per frame
from what grows per token, and the fit is evaluated at the paper's frame count (checked on a 16-frame SD clip).

Attention is core's PyTorch attention (``--use-pytorch-cross-attention``, what ComfyUI uses on NVIDIA GPUs:
``scaled_dot_product_attention``, whose flash / memory-efficient kernels keep O(tokens) for backward, as the CPU
flash kernel does here); ComfyUI's CPU default (sub-quadratic attention) would keep every attention matrix.

The comparison is ComfyUI 0.33's ``TrainLoraNode`` (comfy_extras/nodes_train.py) called in-process on the same
model with the same conditioning and dtype (LoRA rank 8, AdamW, one step of batch 1, training_dtype = lora_dtype =
the run's dtype), without checkpointing and with ``checkpoint_depth`` 2 (one checkpoint per block; its default
depth 1 wraps the whole model in one checkpoint, measured once). On Wan it gets the same clip. On the
frames-in-batch UNets it cannot: with ``batch_size`` B it runs each of the B per-frame conditionings over all B
latents (B^2 samples a step: a 16-frame clip runs a batch of 256), so it gets one frame a step there and only its
per-token slope compares. Its deep copy of the model (``clone(force_deepcopy=True)``, in 0.33 a reload from the
model file) is replaced by a plain clone, as the models here exist only in memory; that changes neither what is
saved for backward nor what is trained.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import sys
import tempfile
import time

import torch

import _root  # noqa: E402,F401  (the repository root on sys.path)

from devtools.headless import NO_HOST_HELP, Host, find_comfyui, put_host_first  # noqa: E402
from devtools.realsize import Base, build_base, sd15_unet_kwargs, svd_unet_kwargs, wan_net_kwargs  # noqa: E402

OUTSIDE = "outside"  # the label of what runs outside every block / checkpointed segment
GIB = float(1 << 30)
MIB = float(1 << 20)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CARDS = (24, 48, 80)  # GiB


# ----------------------------------------------------------------------------------------------------
# the bases


def bases(quick: bool) -> dict[str, Base]:
    """Wan: the paper's 21 latent frames, frame size varied (FCA's keys grow with frames x text). Frames-in-batch
    UNets: frames and frame size both varied (2 or 4 frames of 8x8 or 8x16 latents), which separates what grows
    per frame (cross-attention keys of the text, AID's per-frame queries) from what grows per token; the fit is
    evaluated at the paper's frame count and checked there on one clip."""
    wan_points = ((21, 2, 4), (21, 4, 6), (21, 6, 8)) if not quick else ((21, 2, 4), (21, 4, 6))
    wan14_points = ((21, 2, 4), (21, 4, 6))  # 14B: two clips (a step costs the same at any of these sizes)
    unet_points = ((2, 8, 8), (2, 8, 16), (4, 8, 8))
    unet_core = ((1, 8, 8), (1, 16, 16))  # core's Train LoRA: one frame a step (see CORE)
    wan_target = [("480x832x81", (21, 60, 104))]
    return {
        "wan1.3b": Base("wan1.3b", "Wan 2.1 T2V 1.3B", "wan", "WAN21_T2V", 30,
                        lambda layers: wan_net_kwargs(1536, 8960, 12, layers), ("wan", 512, 4096), wan_points,
                        wan_target, frames=21),
        "wan14b": Base("wan14b", "Wan 2.1 T2V 14B", "wan", "WAN21_T2V", 40,
                       lambda layers: wan_net_kwargs(5120, 13824, 40, layers), ("wan", 512, 4096), wan14_points,
                       wan_target, frames=21),
        "sd15": Base("sd15", "SD 1.5", "unet", "SD15", None, sd15_unet_kwargs, ("sd", 77, 768), unet_points,
                     [("16x256x256", (16, 32, 32))], frames=16, core_points=unet_core, check=(16, 8, 8)),
        "svd": Base("svd", "SVD-XT", "unet", "SVD_img2vid", None, svd_unet_kwargs, ("svd", 1, 1024), unet_points,
                    [("14x576x1024", (14, 72, 128)), ("14x256x256", (14, 32, 32))], frames=14,
                    core_points=unet_core, check=(14, 8, 8)),
    }


# which kinds run on which base (the Train Adapters inputs that differ), and in which dtypes. Only bf16 where a step
# costs 20-40 s on a CPU (the 14B, SVD; an fp32 copy of either is not what anyone trains on) and for SimDA on Wan
# (SimDA's home is SD 1.5), to keep the whole run near 15 minutes
RUNS = {
    "wan1.3b": [("fca", {"latent_shift": "none"}, ("fp32", "bf16")), ("simda", {"latent_shift": "none"}, ("bf16",))],
    "wan14b": [("fca", {"latent_shift": "none"}, ("bf16",))],
    "sd15": [("simda", {"latent_shift": "simda"}, ("fp32", "bf16"))],
    "svd": [("aid", {"latent_shift": "none"}, ("bf16",))],
}
# core's TrainLoraNode: the dtypes it runs in per base. On the frames-in-batch UNets it cannot take a clip as one
# batch (with batch_size B it runs each of the B captions over all B latents: B^2 samples a step), so there it
# trains one frame a step; a step costs 25-50 s there (full-size merged LoRA weights), hence bf16 only
CORE = {"wan1.3b": ("fp32", "bf16"), "wan14b": ("bf16",), "sd15": ("bf16",), "svd": ("bf16",)}
QUICK = ("wan1.3b", "sd15")


def conditioning(host, base: Base, shape, seed=0):
    """Positive conditioning as Train Adapters and Train LoRA get it: text (Wan, SD) or SVD's image conditioning;
    for AID, with the instruction and state prompts added by AID Conditioning (text width 1024)."""
    g = torch.Generator().manual_seed(seed)
    family, tokens, width = base.text
    ctx = torch.randn(1, tokens, width, generator=g)
    if family != "svd":
        return [[ctx, {}]]
    f, h, w = shape
    extra = {"fps": 6, "motion_bucket_id": 127, "augmentation_level": 0.0}
    pos = [[ctx, {"concat_latent_image": torch.randn(1, 4, h, w, generator=g), **extra}]]
    neg = [[torch.zeros_like(ctx), {"concat_latent_image": torch.zeros(1, 4, h, w), **extra}]]
    return pos, neg


def aid_conditioning(host, pos, neg, frames):
    from devtools.tiny_models import ToyTextEncoder

    states = f'"0": "the hand reaches for the cup",\n"{frames // 2}": "the hand lifts the cup"'
    return host.call("VA_AIDConditioning", pos, neg, ToyTextEncoder(1024), "pick up the cup", states, frames)[0]


# ----------------------------------------------------------------------------------------------------
# counting


def storages(*modules) -> set[int]:
    out = set()
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            out.add(t.untyped_storage().data_ptr())
    return out


class Saved:
    """``saved_tensors_hooks`` pack hook: bytes of the storages autograd keeps for backward, counted once per
    storage and attributed to the segment running (``label``); parameters (``exclude``, and every leaf that
    requires grad) are not counted. The tensors are held only until the forward ends (the first unpack or
    :meth:`release`), so a storage freed and reused within the forward cannot be missed."""

    def __init__(self, exclude: set[int]):
        self.exclude = exclude
        self.seen: dict[int, tuple[int, object]] = {}
        self.keep: list[torch.Tensor] | None = []
        self.label = OUTSIDE

    def pack(self, t):
        self.hold(t)
        return t

    def hold(self, t):
        """Count ``t``'s storage (during the forward)."""
        if self.keep is not None and not (t.is_leaf and t.requires_grad):
            try:
                st = t.untyped_storage()
                ptr, n = st.data_ptr(), st.nbytes()
            except (RuntimeError, NotImplementedError, TypeError):
                return
            if n and ptr not in self.exclude and ptr not in self.seen:
                self.seen[ptr] = (n, self.label)
                self.keep.append(t)

    def unpack(self, t):
        self.release()
        return t

    def release(self):
        self.keep = None

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)

    @property
    def total(self) -> int:
        return sum(n for n, _ in self.seen.values())

    def by_label(self) -> dict:
        out: dict = {}
        for n, lab in self.seen.values():
            out[lab] = out.get(lab, 0) + n
        return out


def _tensors(obj, seen=None):
    """Tensors reachable through tuples, lists and dicts."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o, seen)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o, seen)


@contextlib.contextmanager
def checkpoint_inputs(counter: Saved):
    """Count what every ``torch.utils.checkpoint.checkpoint`` call keeps for its backward: its inputs. Tensors given
    inside dicts or tuples (the pack's Wan blocks get one dict, core's trainer passes ``(args, kwargs)``) are held
    by reference, not saved through the hooks, so they are counted here."""
    import torch.utils.checkpoint as tuc

    real = tuc.checkpoint

    def checkpoint(fn, *args, **kwargs):
        if torch.is_grad_enabled():
            for t in _tensors((args, kwargs)):
                counter.hold(t)
        return real(fn, *args, **kwargs)

    tuc.checkpoint = checkpoint
    try:
        yield
    finally:
        tuc.checkpoint = real


@contextlib.contextmanager
def module_labels(counter: Saved, modules: dict):
    """Attribute what runs inside each module (``{label: module}``, not nested) to its label."""
    handles = []
    for label, m in modules.items():
        def pre(mod, args, label=label):
            counter.label = label

        def post(mod, args, out):
            counter.label = OUTSIDE

        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class _WanTag:
    """Outermost ``dit``/``double_block`` replace patch: attributes what runs in block ``index`` (its checkpoint's
    inputs included) to ``blocks.<index>`` and calls the patch it wraps."""

    def __init__(self, counter: Saved, index: int, previous=None):
        self.counter, self.index, self.previous = counter, index, previous

    def __call__(self, args, extra):
        self.counter.label = f"blocks.{self.index}"
        try:
            return (self.previous or (lambda a, e: e["original_block"](a)))(args, extra)
        finally:
            self.counter.label = OUTSIDE


def tag_wan_blocks(model, counter: Saved, blocks: int):
    m = model.clone()
    replace = m.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    for i in range(blocks):
        m.set_model_patch_replace(_WanTag(counter, i, replace.get(("double_block", i))), "dit", "double_block", i)
    return m


def reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_peak() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    except ImportError:
        return float("nan")


@contextlib.contextmanager
def training_flag():
    import comfy.model_management as mm

    before = getattr(mm, "in_training", False)
    mm.in_training = True  # newer ComfyUI's RoPE kernels need it for backward, as the trainer sets it
    try:
        yield
    finally:
        mm.in_training = before


# ----------------------------------------------------------------------------------------------------
# the pack's trainer (AdapterForward, as train_adapters builds it)


class PackKind:
    """One kind on one base: adapters made as Train Adapters makes them (settings, trainer options, configured
    from the conditioning and the paper's clip length), reused for every measured clip (other lengths resample
    the per-frame tables, as the pack does for any clip length)."""

    def __init__(self, host, base: Base, kind: str, options: dict, model):
        self.host, self.base, self.kind_name, self.options = host, base, kind, options
        training, attach = host.pack_module("nodes.binding.training"), host.pack_module("nodes.binding.attach")
        self.entry = host.pack_module("adapters.registry").get(kind)
        info = host.pack_module("nodes.binding.host").describe(model)
        config, given = training.kind_settings(self.entry, "")
        config = self.entry.apply_trainer_options(config, dict(options), {"latent_shift": "simda"}, info)
        f, h, w = base.points[0]
        conditions = training.clip_conditions(self.positive((base.frames, h, w)), 1)
        self.config = self.entry.configure(config, info, conditions, base.frames, given)
        torch.manual_seed(0)
        self.adapters = attach.new_adapters(self.entry, model, self.config, host=info)
        self.trainable = [p for p in self.adapters.parameters() if p.requires_grad]

    def positive(self, shape):
        c = conditioning(self.host, self.base, shape)
        if self.kind_name == "aid":
            return aid_conditioning(self.host, c[0], c[1], shape[0])
        return c

    def full_size(self):
        """``(trainable, all, file bytes)`` of the adapters on the full base (Wan: every block, built on the meta
        device); the file holds every tensor in fp32, plus a JSON header."""
        if self.base.arch == "wan":
            dim = next(iter(self.adapters.blocks.values())).dim
            blocks = {f"blocks.{i}": dim for i in range(self.base.full_layers)}
            with torch.device("meta"):
                full = self.entry.build(blocks, self.config, self.adapters.family)
        else:
            full = self.adapters
        trainable = sum(p.numel() for p in full.parameters() if p.requires_grad)
        total = sum(p.numel() for p in full.parameters())
        file_bytes = sum(t.numel() * t.element_size() for t in full.file_state_dict().values())
        return trainable, total, file_bytes

    def measure(self, model, shape, ckpt: bool, dtype: str, blocks: int) -> dict:
        """One training forward and backward through the pack's ``AdapterForward``, as the trainer runs it
        (autocast in ``dtype``, every frozen block checkpointed when ``ckpt``), counting what is saved."""
        import comfy.model_management

        training = self.host.pack_module("nodes.binding.training")
        attach = self.host.pack_module("nodes.binding.attach")
        core = self.host.pack_module("adapters.training")
        info = self.host.pack_module("nodes.binding.host").describe(model)
        param = info.require_prediction("training")
        frames = shape[0] if self.base.frames_in_batch else 0
        x0 = training.training_clips(model.model.process_latent_in(self.base.latent(shape)), info.architecture,
                                     frames)
        conditions = training.clip_conditions(self.positive(shape), x0.shape[0])
        patched = attach.attach_adapters(model, self.adapters, 1.0, frames, host=info, kind=self.entry)
        trained = attach.with_gradient_checkpointing(patched, info) if ckpt else patched
        counter = Saved(storages(model.model, self.adapters))
        if info.architecture == "wan":
            trained = tag_wan_blocks(trained, counter, blocks)
            segments = {}
        else:  # UNet: the blocks the pack checkpoints (spatial and temporal transformer blocks)
            dm = model.model.diffusion_model
            segments = {b.name: dm.get_submodule(b.name) for b in info.blocks}
        comfy.model_management.load_models_gpu([trained])
        forward = training.AdapterForward(trained, param, conditions, info, kind=self.entry, adapters=self.adapters)
        g = torch.Generator().manual_seed(1)
        noise = torch.randn(x0.shape, generator=g)
        sigma = torch.tensor([0.5 if param == "flow" else 2.0])
        self.adapters.zero_grad(set_to_none=True)
        gc.collect()
        reset_rss_peak()
        t0 = time.perf_counter()
        with torch.inference_mode(False), torch.enable_grad(), training_flag():
            with module_labels(counter, segments), checkpoint_inputs(counter), counter.hooks(), \
                    core._autocast("cpu", dtype):
                loss = core.diffusion_loss(forward, x0, None, sigma, noise, param, clip=torch.tensor([0]), clean=x0)
            held = self._held(counter)
            counter.release()
            loss.float().backward()
        seconds = time.perf_counter() - t0
        peak = rss_peak()
        grads = sum(1 for p in self.trainable if p.grad is not None)
        if not grads:
            raise RuntimeError(f"{self.kind_name}: no adapter parameter got a gradient")
        self.adapters.zero_grad(set_to_none=True)
        comfy.model_management.unload_all_models()
        return {"saved": counter.total, "by_label": counter.by_label(), "held": held, "seconds": seconds,
                "rss_gib": peak, "loss": float(loss.detach())}

    def _held(self, counter: Saved) -> int:
        """Bytes the adapters hold through the step besides what autograd saves (FCA: the initial frames' states
        of every block, cached for the step); counted only where not already saved."""
        total = 0
        for cache in list(getattr(self.adapters, "_caches", ()) or ()):
            for entry in list(cache.values()):
                for t in (entry.get("states") or {}).values():
                    st = t.untyped_storage()
                    if st.data_ptr() not in counter.seen:
                        total += st.nbytes()
        return total


# ----------------------------------------------------------------------------------------------------
# core's TrainLoraNode


def core_trainer_supported() -> bool:
    """Whether this ComfyUI's TrainLoraNode is the one driven here (0.33: a V3 node with checkpoint_depth)."""
    try:
        from comfy_extras import nodes_train
    except ImportError:
        return False
    return hasattr(nodes_train, "find_modules_at_depth") and hasattr(nodes_train.TrainLoraNode, "define_schema")


class _NoDeepCopy:
    """``model.clone(force_deepcopy=True)`` as a plain clone, for this benchmark's in-memory models (see the
    module docstring)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        clone = self.model.clone

        def plain(*args, force_deepcopy=False, **kwargs):
            return clone(*args, **kwargs)

        self.model.clone = plain
        return self.model

    def __exit__(self, *exc):
        del self.model.clone
        return False


def core_measure(host, base: Base, model, shape, ckpt: bool, depth: int, dtype: str, rank: int = 8) -> dict:
    """One step of core's TrainLoraNode (batch 1) on ``model``, counting what is saved for backward, attributed
    to the modules core checkpoints at depth 2."""
    import comfy.model_management
    from comfy_extras import nodes_train

    node = nodes_train.TrainLoraNode
    dm = model.model.diffusion_model
    block_ids = {id(b): f"blocks.{i}" for i, b in enumerate(getattr(dm, "blocks", []))}
    segments = {block_ids.get(id(m), f"seg{i}"): m for i, m in enumerate(nodes_train.find_modules_at_depth(dm, 2))}
    counter = Saved(storages(model.model))
    latent = base.latent(shape)
    positive = conditioning(host, base, shape)
    positive = positive[0] if base.text[0] == "svd" else positive
    seen = []
    pre = dm.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape)))
    gc.collect()
    reset_rss_peak()
    t0 = time.perf_counter()
    try:
        with _NoDeepCopy(model) as m, module_labels(counter, segments), checkpoint_inputs(counter), counter.hooks():
            out = node.execute(model=[m], latents=[{"samples": latent}], positive=[positive], batch_size=[1],
                               steps=[1], grad_accumulation_steps=[1], learning_rate=[1e-4], rank=[rank],
                               optimizer=["AdamW"], loss_function=["MSE"], seed=[0], training_dtype=[dtype],
                               lora_dtype=[dtype], quantized_backward=[False], algorithm=["LoRA"],
                               gradient_checkpointing=[ckpt], checkpoint_depth=[depth], offloading=[False],
                               existing_lora=["[None]"], bucket_mode=[False], bypass_mode=[False])
    finally:
        pre.remove()
    seconds = time.perf_counter() - t0
    peak = rss_peak()
    lora = out.result[0] if hasattr(out, "result") else out[0]
    lora_ptrs = {t.untyped_storage().data_ptr() for t in lora.values()}
    counter.seen = {k: v for k, v in counter.seen.items() if k not in lora_ptrs}
    comfy.model_management.unload_all_models()
    if seen and seen[0][0] != latent.shape[0]:
        raise RuntimeError(f"TrainLoraNode ran a batch of {seen[0]} for a latent of {tuple(latent.shape)}")
    return {"saved": counter.total, "by_label": counter.by_label(), "held": 0, "seconds": seconds, "rss_gib": peak,
            "lora_params": sum(t.numel() for t in lora.values()),
            "lora_bytes": sum(t.numel() * t.element_size() for t in lora.values())}


# ----------------------------------------------------------------------------------------------------
# scaling and fitting


def scale_blocks(rec: dict, built: int, full: int | None) -> dict:
    """Saved bytes of the full model: what ran outside blocks, every block built, and ``full - built`` more blocks
    like the last one (Wan's first block also keeps the inputs every block shares)."""
    by = rec["by_label"]
    blocks = {k: v for k, v in by.items() if isinstance(k, str) and k.startswith("blocks.")}
    out = dict(rec)
    out["typical_block"] = 0
    if full is None or not blocks:
        out["saved_full"] = rec["saved"] + rec["held"]
        return out
    last = blocks.get(f"blocks.{built - 1}", 0)
    out["typical_block"] = last
    out["saved_full"] = rec["saved"] + (full - built) * last + rec["held"] * full / built
    # labels of the full model: every block like the last one
    full_by = {k: v for k, v in by.items()}
    for i in range(built, full):
        full_by[f"blocks.{i}"] = last
    out["by_label"] = full_by
    return out


def max_segment(rec: dict) -> int:
    """The largest checkpointed segment's own saved bytes (every labelled part is a segment)."""
    vals = [v for k, v in rec["by_label"].items() if k != OUTSIDE]
    return max(vals) if vals else 0


def lstsq(rows, ys):
    """Least squares ``ys ~ rows @ coef`` (float64); also the largest relative residual."""
    a = torch.tensor(rows, dtype=torch.float64)
    y = torch.tensor(ys, dtype=torch.float64)[:, None]
    coef = torch.linalg.lstsq(a, y, driver="gelsd").solution[:, 0]
    pred = (a @ coef[:, None])[:, 0]
    res = float(((pred - y[:, 0]).abs() / y[:, 0].abs().clamp_min(1.0)).max())
    return coef.tolist(), res


# ----------------------------------------------------------------------------------------------------
# the run


def run(host, args) -> dict:
    all_bases = bases(args.quick)
    chosen = [k for k in all_bases if (k in args.only if args.only else not args.quick or k in QUICK)]
    results = {"points": [], "static": {}, "linearity": [], "checks": [], "seconds": {}}
    for key in chosen:
        base = all_bases[key]
        t_base = time.perf_counter()
        built = 2 if base.arch == "wan" else None
        dtypes = [d for d in ("fp32", "bf16") if any(d in dts for _, _, dts in RUNS[key])]
        if args.quick:
            dtypes = ["bf16"]
        for dtype in dtypes:
            t_build = time.perf_counter()
            model = build_base(base, DTYPES[dtype], built)
            dm = model.model.diffusion_model
            n_built = sum(p.numel() for p in dm.parameters())
            n_full = n_built
            if base.arch == "wan":
                n_full += (base.full_layers - built) * sum(p.numel() for p in dm.blocks[0].parameters())
            log(f"{base.label} ({dtype}): built {n_built / 1e6:,.0f}M parameters "
                f"({'%d of %d blocks' % (built, base.full_layers) if built else 'the whole UNet'}) in "
                f"{time.perf_counter() - t_build:.0f} s; full model {n_full / 1e6:,.0f}M")
            results["static"][key] = {"base_params": n_full, "built_params": n_built}
            kinds = [PackKind(host, base, kind, opts, model) for kind, opts, dts in RUNS[key] if dtype in dts]
            for pk in kinds:
                tr, tot, fbytes = pk.full_size()
                results["static"][f"{key}/{pk.kind_name}"] = {"trainable": tr, "adapter_params": tot,
                                                              "file_bytes": fbytes, "config": pk.config}

            def pack(pk, shape, ckpt, role="fit"):
                rec = scale_blocks(pk.measure(model, shape, ckpt, dtype, built or 0), built or 0, base.full_layers)
                rec.update(base=key, method=pk.kind_name, dtype=dtype, ckpt=ckpt, shape=tuple(shape),
                           tokens=base.tokens(shape), role=role)
                results["points"].append(rec)
                log(f"  {pk.kind_name:6s} {dtype} ckpt={'on ' if ckpt else 'off'} {shape} {rec['tokens']:6d} tokens: "
                    f"saved {rec['saved'] / MIB:9.1f} MiB (full model {rec['saved_full'] / MIB:9.1f}), "
                    f"{rec['seconds']:.1f} s, RSS peak {rec['rss_gib']:.2f} GiB")
                return rec

            def lora(shape, ckpt, depth, role="fit"):
                rec = scale_blocks(core_measure(host, base, model, shape, ckpt, depth, dtype), built or 0,
                                   base.full_layers)
                method = "lora" if not ckpt else f"lora_d{depth}"
                rec.update(base=key, method=method, dtype=dtype, ckpt=ckpt, shape=tuple(shape),
                           tokens=base.tokens(shape), role=role)
                results["points"].append(rec)
                results["static"][f"{key}/lora"] = {"trainable": rec["lora_params"], "bytes": rec["lora_bytes"]}
                log(f"  core LoRA {dtype} ckpt={'depth %d' % depth if ckpt else 'off    '} {shape} {rec['tokens']:6d} "
                    f"tokens: saved {rec['saved'] / MIB:9.1f} MiB (full model {rec['saved_full'] / MIB:9.1f}), "
                    f"{rec['seconds']:.1f} s, RSS peak {rec['rss_gib']:.2f} GiB")
                return rec

            for shape in base.points:
                for pk in kinds:
                    for ckpt in (False, True):
                        pack(pk, shape, ckpt)
            if not args.no_core and dtype in CORE[key]:
                for shape in base.core_points:
                    lora(shape, False, 1)
                    lora(shape, True, 2)
            if not args.quick and dtype == "bf16":
                if base.check is not None and key == "sd15":  # the frames x size fit at the paper's frame count
                    for ckpt in (False, True):
                        pack(kinds[0], base.check, ckpt, role="check")
                if not args.no_core and key == "wan1.3b":  # core's default checkpoint_depth 1, once
                    lora(base.core_points[0], True, 1, role="depth1")
            del kinds
            model = None
            gc.collect()
        if base.arch == "wan" and key == "wan1.3b" and not args.quick:
            results["linearity"].append(linearity_check(host, base))
        results["seconds"][key] = time.perf_counter() - t_base
    return results


def linearity_check(host, base: Base) -> dict:
    """One more block: the bytes the 2-block runs predict for 3 blocks against what 3 blocks save."""
    model = build_base(base, torch.bfloat16, 3)
    kind, opts, _ = RUNS[base.key][0]
    pk = PackKind(host, base, kind, opts, model)
    out = {"base": base.key, "kind": kind, "shape": tuple(base.points[1])}
    for ckpt in (False, True):
        rec3 = pk.measure(model, base.points[1], ckpt, "bf16", 3)
        out[f"ckpt={ckpt}"] = rec3["saved"] + rec3["held"]
    del pk, model
    gc.collect()
    return out


def log(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------------
# report


def _reference(rec, off_records):
    """The run without checkpointing on the same clip as checkpointed ``rec`` (None if there is none)."""
    ref_method = "lora" if rec["method"].startswith("lora") else rec["method"]
    return off_records.get((rec["base"], ref_method, rec["dtype"], rec["shape"]))


def _segments(rec, ref) -> dict:
    """What backward recomputes at once for checkpointed ``rec``, per checkpointed segment, from the run
    without checkpointing ``ref`` (core's depth 1: the whole model is one segment)."""
    if rec["method"] == "lora_d1":
        return {"whole model": ref["saved_full"]}
    return {k: v for k, v in ref["by_label"].items() if k != OUTSIDE}


def summarise(results: dict, bases_: dict) -> dict:
    """Per (base, method, dtype, ckpt): activations = saved + recompute as functions of the clip, the static bytes,
    and the estimate at each paper's shape.

    Every byte count is fitted linearly in the clip: ``a + b * tokens`` at the paper's frame count for Wan and for
    core's one-frame steps on UNets, ``e + c * frames + b * tokens`` for the pack on UNets (solved over frames and
    frame size). With checkpointing, the recompute term is the largest checkpointed segment, so each segment is
    fitted on its own and the largest is taken at each clip (which segment that is can change with the size). The
    a and b reported are those of the largest segment at the largest paper shape (exact there and beyond)."""
    pts = results["points"]
    off = {(r["base"], r["method"], r["dtype"], r["shape"]): r for r in pts if not r["ckpt"]}
    for r in pts:
        ref = _reference(r, off) if r["ckpt"] else None
        r["recompute"] = max(_segments(r, ref).values(), default=0) if ref is not None else 0
        if r["ckpt"] and ref is None:
            r["recompute"] = float("nan")
        r["activations"] = r["saved_full"] + r["recompute"]
    groups: dict = {}
    for r in pts:
        if r["role"] == "fit":
            groups.setdefault((r["base"], r["method"], r["dtype"], r["ckpt"]), []).append(r)
    rows = {}
    st = results["static"]
    for (key, method, dtype, ckpt), rs in groups.items():
        base = bases_[key]
        rs = sorted(rs, key=lambda r: (r["tokens"], r["shape"]))
        two_d = base.frames_in_batch and not method.startswith("lora")

        def x(shape, two_d=two_d, base=base):
            return [1.0, float(shape[0]), float(base.tokens(shape))] if two_d else [1.0, float(base.tokens(shape))]

        design = [x(r["shape"]) for r in rs]
        saved, _ = lstsq(design, [r["saved_full"] for r in rs])
        segs = {}
        if ckpt:
            refs = [_segments(r, _reference(r, off)) for r in rs]
            labels = sorted(set().union(*refs))
            segs = {s: lstsq(design, [ref.get(s, 0) for ref in refs])[0] for s in labels}

        def dot(coef, shape, x=x):
            return sum(c * v for c, v in zip(coef, x(shape)))

        def predict(shape, saved=saved, segs=segs, dot=dot):
            return dot(saved, shape) + max((dot(c, shape) for c in segs.values()), default=0.0)

        res = max(abs(predict(r["shape"]) - r["activations"]) / max(r["activations"], 1.0) for r in rs)
        # a and b: the saved bytes plus the segment that is largest at the largest paper shape
        big = max((shape for _, shape in base.targets), key=base.tokens)
        top = max(segs.values(), key=lambda c: dot(c, big)) if segs else [0.0] * len(saved)
        coef = [s + t for s, t in zip(saved, top)]
        a = coef[0] + (coef[1] * base.frames if two_d else 0.0)
        b = coef[-1]
        outside_b = lstsq(design, [r["by_label"].get(OUTSIDE, 0) for r in rs])[0][-1]
        n_base = st[key]["base_params"]
        if method.startswith("lora"):
            lo = st.get(f"{key}/lora", {})
            trainable = lo.get("trainable", 0)
            train_bytes = 4 * lo.get("bytes", 0)  # weights, gradients, AdamW's two moments, all in lora_dtype
        else:
            s = st[f"{key}/{method}"]
            trainable = s["trainable"]
            train_bytes = 16 * trainable + 4 * (s["adapter_params"] - trainable)  # fp32 master, grad, 2 moments
        targets = {name: {"tokens": base.tokens(shape), "activations": predict(shape)}
                   for name, shape in base.targets}
        rows[(key, method, dtype, ckpt)] = {
            "a": a, "b": b, "outside_b": outside_b, "residual": res, "exact": len(rs) <= len(design[0]),
            "trainable": trainable, "train_bytes": train_bytes,
            "base_params": n_base, "targets": targets, "predict": predict, "points": rs,
            "one_frame": base.frames_in_batch and method.startswith("lora")}
    return rows


def total_gib(row, target, storage_bytes_per_param) -> float:
    return (row["base_params"] * storage_bytes_per_param + row["train_bytes"]
            + row["targets"][target]["activations"]) / GIB


def label(method):
    return "core LoRA r8" if method.startswith("lora") else method


def ck(method, ckpt):
    if not ckpt:
        return "off"
    return {"lora_d2": "depth 2", "lora_d1": "depth 1"}.get(method, "on")


def point_label(shape):
    return f"{shape[0]}x{shape[1]}x{shape[2]}"


def report(results: dict, bases_: dict, meta: dict) -> str:
    rows = summarise(results, bases_)
    out = []
    w = out.append
    w(f"ComfyUI {meta['comfyui']} ({meta['host']}), torch {meta['torch']}, {meta['date']}, {meta['runs']}, "
      f"{meta['threads']} CPU threads{' (--quick)' if meta['quick'] else ''}. Counts are exact bytes of one training "
      "step (batch 1), device-independent; MiB/GiB = 2^20/2^30 bytes.")
    w("")
    w("**Adapters** (on the full base; file = fp32 tensors, plus a small JSON header)")
    w("")
    w("| base | kind | base params | trainable | % of base | adapter file |")
    w("|---|---|---|---|---|---|")
    for key, base in bases_.items():
        stb = results["static"].get(key)
        if not stb:
            continue
        for kind, _, _ in RUNS[key]:
            s = results["static"].get(f"{key}/{kind}")
            if s:
                w(f"| {base.label} | {kind} | {stb['base_params'] / 1e6:,.0f}M | {s['trainable'] / 1e6:,.1f}M | "
                  f"{100 * s['trainable'] / stb['base_params']:.2f} % | {s['file_bytes'] / MIB:,.0f} MiB |")
        lo = results["static"].get(f"{key}/lora")
        if lo:
            w(f"| {base.label} | core LoRA r8 | {stb['base_params'] / 1e6:,.0f}M | {lo['trainable'] / 1e6:,.2f}M | "
              f"{100 * lo['trainable'] / stb['base_params']:.2f} % | {lo['bytes'] / MIB:,.1f} MiB |")
    w("")
    w("**Activations of one step** (saved for backward + recompute of the largest checkpointed segment, full model). "
      "Clips are latent frames x height x width (Wan: tokens = T*h/2*w/2; UNets: tokens = latent cells; core's Train "
      "LoRA on UNets: one frame a step). a: the fit at zero tokens for the paper's frame count (core on UNets: one "
      "frame); b: bytes per token; fit residual: largest relative miss of the fit (exact where the clips are as many "
      "as the unknowns); RSS: the process's resident-set peak in the step (coarse: weights, Python and allocator "
      "included); s/step: CPU seconds, for orientation only")
    w("")
    w("| base | method | dtype | ckpt | MiB at clip (tokens) | a (MiB) | b (KiB/token) | fit residual | RSS GiB "
      "| s/step |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    order = sorted(rows, key=lambda k: (list(bases_).index(k[0]), k[1].startswith("lora"), k[1], k[2] != "fp32",
                                        k[1] == "lora_d2", k[3]))
    for k in order:
        r = rows[k]
        key, method, dtype, ckpt = k
        pts = ", ".join(f"{p['activations'] / MIB:,.0f} ({point_label(p['shape'])}, {p['tokens']})"
                        for p in r["points"])
        rss = "/".join(f"{p['rss_gib']:.1f}" for p in r["points"])
        secs = "/".join(f"{p['seconds']:.0f}" for p in r["points"])
        residual = "exact" if r["exact"] else f"{100 * r['residual']:.3f} %"
        w(f"| {bases_[key].label} | {label(method)} | {dtype} | {ck(method, ckpt)} | {pts} | {r['a'] / MIB:,.1f} | "
          f"{r['b'] / 1024:,.2f} | {residual} | {rss} | {secs} |")
    w("")
    w("**Per token, with checkpointing: the pack against core's TrainLoraNode** (b in KiB/token; core at "
      "checkpoint_depth 2, one checkpoint per block; core's default depth 1 wraps the whole diffusion model in one "
      "checkpoint, so its backward holds what no checkpointing holds: the 'core, off' column. 'outside' = what the "
      "pack keeps outside its checkpointed blocks, per token)")
    w("")
    w("| base | kind | dtype | pack, ckpt | of it outside | core, depth 2 | pack / core | pack, off | core, off |")
    w("|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for k in order:
        key, method, dtype, ckpt = k
        if method.startswith("lora") or not ckpt:
            continue
        c2, c0, p0 = rows.get((key, "lora_d2", dtype, True)), rows.get((key, "lora", dtype, False)), \
            rows.get((key, method, dtype, False))
        ratio = rows[k]["b"] / c2["b"] if c2 and c2["b"] else None
        if ratio is not None:
            ratios.append((key, method, dtype, ratio))
        kib = lambda row: f"{row['b'] / 1024:,.1f}" if row else "-"  # noqa: E731
        w(f"| {bases_[key].label} | {method} | {dtype} | {rows[k]['b'] / 1024:,.1f} | "
          f"{rows[k]['outside_b'] / 1024:,.1f} | {kib(c2)} | {'-' if ratio is None else f'**{ratio:.2f}**'} | "
          f"{kib(p0)} | {kib(c0)} |")
    w("")
    w("**At the papers' shapes** (batch 1; total = frozen base (bf16 rows: stored in bf16, 2 bytes a parameter; "
      "fp32 rows: 4; fp8 column: 1) + trainable weights, gradients and AdamW state (pack: fp32 master weights) + "
      "activations extrapolated from the fit; core rows on UNets: fit over single frames)")
    w("")
    w("| base | shape | tokens | method | dtype | ckpt | activations GiB | total GiB | fp8 base GiB | smallest card |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for k in order:
        key, method, dtype, ckpt = k
        r = rows[k]
        for name, _ in bases_[key].targets:
            tot = total_gib(r, name, 4 if dtype == "fp32" else 2)
            fp8 = f"{total_gib(r, name, 1):,.2f}" if dtype == "bf16" and not method.startswith("lora") else ""
            w(f"| {bases_[key].label} | {name} | {r['targets'][name]['tokens']:,} | {label(method)} | {dtype} | "
              f"{ck(method, ckpt)} | {r['targets'][name]['activations'] / GIB:,.2f} | {tot:,.2f} | {fp8} | "
              f"{card(tot)} |")
    w("")
    checks = list(check_lines(results, rows, bases_))
    if checks:
        w("**Checks**")
        w("")
        for line in checks:
            w(f"- {line}")
        w("")
    w("**Verdicts**")
    w("")
    for line in verdicts(rows, bases_, ratios):
        w(f"- {line}")
    return "\n".join(out)


def check_lines(results, rows, bases_):
    for lc in results.get("linearity", []):
        for ckpt in (False, True):
            pred = next((p for p in results["points"] if p["base"] == lc["base"] and p["method"] == lc["kind"]
                         and p["dtype"] == "bf16" and p["ckpt"] == ckpt and p["shape"] == lc["shape"]), None)
            if pred is not None:
                # the 2-block run's count plus one more block like its last one
                predicted = pred["saved"] + pred["typical_block"] + pred["held"] * 3 / 2
                got = lc[f"ckpt={ckpt}"]
                yield (f"per-block scaling ({bases_[lc['base']].label}, {lc['kind']}, bf16, checkpointing "
                       f"{'on' if ckpt else 'off'}, clip {point_label(lc['shape'])}): 3 blocks built save "
                       f"{got / MIB:,.2f} MiB, the 2-block run predicts {predicted / MIB:,.2f} MiB "
                       f"({100 * (predicted - got) / got:+.3f} %)")
    for p in results["points"]:
        if p["role"] == "check":
            row = rows.get((p["base"], p["method"], p["dtype"], p["ckpt"]))
            if row:
                pred = row["predict"](p["shape"])
                miss = 100 * (pred - p["activations"]) / p["activations"]
                yield (f"frames x size fit ({bases_[p['base']].label}, {p['method']}, {p['dtype']}, checkpointing "
                       f"{'on' if p['ckpt'] else 'off'}) on a clip of the paper's {p['shape'][0]} frames, "
                       f"{point_label(p['shape'])}: measured {p['activations'] / MIB:,.1f} MiB, the fit from 2-4 "
                       f"frames predicts {pred / MIB:,.1f} MiB ({miss:+.2f} %)")
        if p["role"] == "depth1":
            yield (f"core's default checkpoint_depth 1 ({bases_[p['base']].label}, {p['dtype']}, clip "
                   f"{point_label(p['shape'])}): {p['saved_full'] / MIB:,.2f} MiB saved in the forward (the "
                   f"diffusion model's inputs), then the whole model recomputed at once in backward: "
                   f"{p['activations'] / MIB:,.1f} MiB, as without checkpointing")


def card(gib) -> str:
    fits = [c for c in CARDS if gib <= c]
    return f"{fits[0]} GiB" if fits else f"> {CARDS[-1]} GiB"


def verdicts(rows, bases_, ratios) -> list[str]:
    out = []
    for key, kind, dtype, ratio in ratios:
        one = " (core measured one frame a step)" if bases_[key].frames_in_batch else ""
        out.append(f"{bases_[key].label}, {kind}, {dtype}: activations per token with checkpointing are {ratio:.2f}x "
                   f"core TrainLoraNode's at checkpoint_depth 2{one}: "
                   f"{'within' if ratio <= 1.3 else 'NOT within'} the 1.3x goal")
    fca = rows.get(("wan1.3b", "fca", "bf16", True))
    if fca:
        tot, fp8 = total_gib(fca, "480x832x81", 2), total_gib(fca, "480x832x81", 1)
        act = fca["targets"]["480x832x81"]["activations"] / GIB
        out.append(f"FCA on Wan 2.1 1.3B at 480x832x81, batch 1, bf16, checkpointing: {tot:.1f} GiB estimated "
                   f"(bf16 base {fca['base_params'] * 2 / GIB:.1f} + adapters, gradients and AdamW "
                   f"{fca['train_bytes'] / GIB:.1f} + activations {act:.1f}; fp8 base: {fp8:.1f} GiB): "
                   f"{'under' if tot < 24 else 'NOT under'} 24 GiB")
    for (key, method, dtype, ckpt), r in sorted(rows.items(), key=lambda kv: list(bases_).index(kv[0][0])):
        if method.startswith("lora") or dtype != "bf16" or not ckpt:
            continue
        off = rows.get((key, method, dtype, False))
        for name, _ in bases_[key].targets:
            tot, fp8 = total_gib(r, name, 2), total_gib(r, name, 1)
            without = f"; without checkpointing {total_gib(off, name, 2):.1f} GiB -> {card(total_gib(off, name, 2))}" \
                if off else ""
            out.append(f"{method} on {bases_[key].label} at {name} (batch 1, bf16 base, checkpointing): {tot:.1f} GiB "
                       f"-> {card(tot)} (fp8 base: {fp8:.1f} GiB -> {card(fp8)}){without}")
    return out


def load_results(paths) -> tuple[dict, list]:
    """Results of earlier runs (``--json``), merged: the points and checks of every run, one meta per run."""
    merged = {"points": [], "static": {}, "linearity": [], "checks": [], "seconds": {}}
    metas = []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        res = data["results"]
        for p in res["points"]:
            p["shape"] = tuple(p["shape"])
        for lc in res.get("linearity", []):
            lc["shape"] = tuple(lc["shape"])
        for k in ("points", "linearity", "checks"):
            merged[k] += res.get(k, [])
        merged["static"].update(res["static"])
        merged["seconds"].update(res["seconds"])
        metas.append(data["meta"])
    return merged, metas


def run_meta(metas: list) -> dict:
    m = dict(metas[0])
    if len(metas) == 1:
        m["runs"] = f"run time {m['minutes']:.1f} min"
    else:
        m["runs"] = f"{len(metas)} runs of " + ", ".join(
            f"{x['minutes']:.1f} min ({' '.join(x.get('bases', []))})" for x in metas)
        m["quick"] = any(x["quick"] for x in metas)
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="Wan 1.3B and SD 1.5 only, bf16 only, two clips for Wan, no extra checks (about 5 minutes)")
    ap.add_argument("--host-path", default=None, help="the ComfyUI folder (default: COMFYUI_PATH)")
    ap.add_argument("--only", nargs="*", default=None, help="bases to run: wan1.3b wan14b sd15 svd")
    ap.add_argument("--no-core", action="store_true", help="skip core's TrainLoraNode")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", default=None, help="also write the raw counts here")
    ap.add_argument("--report-from", nargs="+", default=None, metavar="JSON",
                    help="print the report of earlier runs' --json files (for example one per --only group) "
                         "instead of running")
    args = ap.parse_args()
    if args.report_from:
        results, metas = load_results(args.report_from)
        meta = run_meta(metas)
        chosen = {k: v for k, v in bases(meta["quick"]).items() if k in results["seconds"]}
        print(report(results, chosen, meta))
        return
    if args.host_path:
        os.environ["COMFYUI_PATH"] = args.host_path
    root = find_comfyui()
    if root is None:
        sys.exit(NO_HOST_HELP)
    if args.threads:
        torch.set_num_threads(args.threads)
    # core's PyTorch attention, as ComfyUI runs on NVIDIA GPUs (set before ComfyUI reads its arguments)
    put_host_first(root)
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.use_pytorch_cross_attention = True
    work = tempfile.mkdtemp(prefix="va_memory_bench_")
    host = Host(root, model_dirs={"video_adapters": os.path.join(work, "video_adapters")},
                output_dir=os.path.join(work, "output"))
    import comfy.utils

    if not args.no_core and not core_trainer_supported():
        sys.exit("core's TrainLoraNode here has no checkpoint_depth (ComfyUI 0.33 has it): point --host-path at "
                 "ComfyUI 0.33 or newer, or run with --no-core")
    comfy.utils.set_progress_bar_global_hook(None)
    comfy.utils.PROGRESS_BAR_ENABLED = False
    t0 = time.perf_counter()
    results = run(host, args)
    try:
        import comfyui_version

        version = comfyui_version.__version__
    except ImportError:
        version = "?"
    meta = {"comfyui": version, "host": root, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
            "minutes": (time.perf_counter() - t0) / 60, "quick": args.quick, "threads": torch.get_num_threads(),
            "bases": list(results["seconds"])}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, default=str, indent=1)
    chosen = {k: v for k, v in bases(args.quick).items() if k in results["seconds"]}
    print()
    print(report(results, chosen, run_meta([meta])))


if __name__ == "__main__":
    main()
