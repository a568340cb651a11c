"""GPU check of every attach path on the real-size random Wan 2.1 1.3B, with dynamic VRAM on and off: does each
path run, its peak VRAM, and its time per step against the native path on the same model. One command, one JSON.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/gpu_check.py [--out gpu_check.json]   # one H100: < 8 min
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/gpu_check.py --quick --device cpu     # tiny widths, ~2-3 min

Processes: this one (the parent) runs a *prepare* child that builds the random-weight models with ComfyUI's own
classes (``devtools/realsize.py``'s builders: core's detection picks the config from the weights' shapes) and
writes them where core's loaders look, plus the adapter files Load Adapters reads; then, for each dynamic-VRAM
setting, one child that starts ComfyUI headless with that setting and runs every case. ComfyUI reads its flags
once, at import, so each setting needs its own process: ``on`` is the host's default start (``main.py``'s
dynamic-VRAM start-up is repeated here, as ``main.py`` is not run headless), ``off`` passes
``--disable-dynamic-vram``. On a ComfyUI without dynamic VRAM (0.3.64) ``on`` is recorded as "not available on
this ComfyUI" and ``off`` runs without the flag (static loading is that host's only mode).

Models (random weights, written once to a temporary folder and loaded by core's ``UNETLoader``, so the loaders'
own patchers are used, dynamic ones included, and ``fp8`` is ``weight_dtype=fp8_e4m3fn`` on the same file):
Wan 2.1 T2V 1.3B (dim 1536, ffn 8960, 12 heads, 30 blocks, text 4096) twice (prior and, with other weights, the
Score Composer's second model), Wan 2.1 I2V at the same width (36 input channels, CLIP-vision embedding), and
SVD(-XT)'s UNet for AID, whose kind supports SVD only (``adapters/aid.py``: architectures ``("unet",)``,
families ``("svd",)``), so Train Adapters ``aid`` runs there, with AID Conditioning, not on Wan.

Cases, each through the node classes a workflow uses, under ``torch.inference_mode`` as ComfyUI's executor runs
them (adapted path / native path on the same model, latent, seed, sampler euler, scheduler simple, CFG 5):

* ``load_simda`` / ``load_fca``: ``VA_LoadAdapter`` (FCA also ``VA_InitialFramesConditioning``) + ``KSampler`` /
  ``KSampler`` on the base;
* ``framewise``: ``VA_FramewisePrompts`` (three states) + ``KSampler`` / ``KSampler`` on the base;
* ``composer``: ``VA_ScoreComposer`` (second 1.3B as domain model, the 1.3B as prior) + ``SamplerCustomAdvanced``
  / ``CFGGuider`` on the prior + ``SamplerCustomAdvanced``;
* ``dual_cfg``: ``WanImageToVideo`` conditioning, ``VA_DualCFGGuider`` + ``SamplerCustomAdvanced`` / ``CFGGuider``;
* ``train_fca`` / ``train_aid``: ``VA_TrainAdapter`` 3 steps (kind fca on Wan T2V, kind aid on SVD with
  ``VA_AIDConditioning``) / core's ``TrainLoraNode`` 3 steps (rank 8, checkpoint_depth 2, the same clip on Wan,
  one frame a step on SVD as it cannot train a frames-in-batch clip at once; only where this ComfyUI's trainer has
  the interface driven here, 0.33 and newer).

Measured per path: seconds per step = the median interval between ComfyUI's own per-step progress updates (so
model loading, the static clone and the first step are excluded; the GPU is synchronised at each update), the
run's wall time, ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` (reset before each path, after every
model is unloaded), the device's used memory polled every 5 ms (``cudaMemGetInfo``: what dynamic VRAM's own
allocations add, which torch's counters do not see; it includes the CUDA context), and the process's resident-set
peak. Every exception is caught per path and recorded with its message. Stand-ins: text features are random
(umT5's 512 tokens), Framewise Prompts gets devtools' toy text encoder padded to 512 tokens, WanImageToVideo and
Initial Frames Conditioning get devtools' toy VAE and CLIP-vision output (the model work is unchanged by them).

A time budget (``--budget``, 450 s) is shared by the children; a case that would not finish inside its child's
share is skipped and recorded as skipped.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import _root  # noqa: F401  (the repository root on sys.path)

from devtools.headless import NO_HOST_HELP, Host, find_comfyui, put_host_first

GIB = float(1 << 30)
CASES = {
    "load_simda": "Load Adapters (simda) + KSampler vs KSampler on the base",
    "load_fca": "Initial Frames Conditioning + Load Adapters (fca) + KSampler vs KSampler on the base",
    "framewise": "Framewise Prompts (up to 3 states) + KSampler vs KSampler on the base",
    "composer": "Score Composer (domain: a second Wan 1.3B) vs CFGGuider on the prior, SamplerCustomAdvanced",
    "dual_cfg": "Dual CFG Guider vs CFGGuider on Wan I2V (WanImageToVideo), SamplerCustomAdvanced",
    "train_fca": "Train Adapters fca 3 steps on Wan T2V vs core TrainLoraNode 3 steps",
    "train_aid": "Train Adapters aid 3 steps on SVD (AID Conditioning) vs core TrainLoraNode 3 steps",
}
DTYPES = ("fp16", "bf16", "fp8")
SETTINGS = {"on": [], "off": ["--disable-dynamic-vram"]}
NEEDS = {  # the model files each case loads
    "load_simda": ("wan_t2v",), "load_fca": ("wan_t2v",), "framewise": ("wan_t2v",),
    "composer": ("wan_t2v", "wan_domain"), "dual_cfg": ("wan_i2v",), "train_fca": ("wan_t2v",),
    "train_aid": ("svd",),
}
ADAPTER_FILES = {"load_simda": "simda", "load_fca": "fca"}
STATES = ("a closed box on a table", "the lid lifts", "the box is open")


# ----------------------------------------------------------------------------------------------------
# sizes


class Sizes:
    """What is built and run: real size, or tiny for ``--quick``."""

    def __init__(self, quick: bool, args):
        self.quick = quick
        if quick:
            self.wan = dict(dim=128, ffn=256, heads=1, layers=2)
            self.video = (64, 64, 9)  # width, height, pixel frames
            self.svd_clip = (64, 64, 4)
            self.text_tokens = 16
        else:
            self.wan = dict(dim=1536, ffn=8960, heads=12, layers=30)  # Wan 2.1 1.3B
            self.video = (832, 480, 33)  # the shipped Wan workflows' size
            self.svd_clip = (512, 320, 14)  # the AID training workflow's clips
            self.text_tokens = 512  # umT5's padded length
        if args.video:
            self.video = parse_size(args.video)
        if args.svd_clip:
            self.svd_clip = parse_size(args.svd_clip)
        self.steps = max(3, int(args.steps))
        self.train_steps = max(3, int(args.train_steps))

    @property
    def wan_latent(self):
        w, h, f = self.video
        return ((f - 1) // 4 + 1, h // 8, w // 8)

    def describe(self) -> dict:
        w, h, f = self.video
        sw, sh, sf = self.svd_clip
        return {"wan": dict(self.wan, text_dim=4096), "video": f"{w}x{h}x{f} (latent {list(self.wan_latent)})",
                "svd_clip": f"{sf} frames of {sw}x{sh} (latent {sf}x4x{sh // 8}x{sw // 8})",
                "text_tokens": self.text_tokens, "sampling_steps": self.steps, "training_steps": self.train_steps}


def parse_size(text: str) -> tuple[int, int, int]:
    try:
        w, h, f = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"size '{text}': write WIDTHxHEIGHTxFRAMES, e.g. 832x480x33") from None
    return w, h, f


def bases(sizes: Sizes) -> dict:
    """The ``devtools.realsize.Base`` of every model this check builds (``svd``: None in --quick, built in memory
    there)."""
    import memory
    from devtools import realsize

    wan = sizes.wan
    t, h, w = sizes.wan_latent
    text = ("wan", sizes.text_tokens, 4096)

    def net(model_type):
        return lambda layers: realsize.wan_net_kwargs(wan["dim"], wan["ffn"], wan["heads"], layers, model_type)

    frames = memory.bases(False)["wan1.3b"].frames if not sizes.quick else t  # 21 latent frames: FCA's clips
    out = {
        "wan_t2v": realsize.Base("wan_t2v", "Wan 2.1 T2V", "wan", "WAN21_T2V", wan["layers"], net("t2v"), text,
                               ((t, h, w),), (), frames=frames),
        "wan_i2v": realsize.Base("wan_i2v", "Wan 2.1 I2V", "wan", "WAN21_I2V", wan["layers"], net("i2v"), text,
                               ((t, h, w),), (), frames=frames),
        "svd": None if sizes.quick else memory.bases(False)["svd"],
    }
    out["wan_domain"] = out["wan_t2v"]
    return out


SEEDS = {"wan_t2v": 1, "wan_domain": 2, "wan_i2v": 3, "svd": 4}


def model_file(key: str, dtype16: str) -> str:
    return f"gpu_check_{key}_{dtype16}.safetensors"


def adapter_file(kind: str) -> str:
    return f"gpu_check/{kind}_wan.safetensors"


def file_dtype(dtype: str, dtypes) -> str:
    """The 16-bit file a run of ``dtype`` loads (fp8: the fp16 file, or bf16 when only that one is written)."""
    if dtype != "fp8":
        return dtype
    return "fp16" if "fp16" in dtypes or "bf16" not in dtypes else "bf16"


# ----------------------------------------------------------------------------------------------------
# starting ComfyUI in a child


def start_comfyui(root: str, device: str, flags: list[str], work: str, setting: str | None) -> tuple[Host | None, dict]:
    """ComfyUI headless with ``flags`` applied to its arguments before it is imported, and, where the host has it
    and the flags leave it on, dynamic VRAM started the way ``main.py`` starts it. Returns ``(host, status)``;
    the host is None where the setting does not exist on this ComfyUI."""
    put_host_first(root)
    os.chdir(root)
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args as cli

    has_dynamic = hasattr(cli, "enables_dynamic_vram")
    status = {"setting": setting, "host_has_dynamic_vram": has_dynamic, "flags": []}
    if setting == "on" and not has_dynamic:
        status["note"] = "not available on this ComfyUI"
        return None, status
    known, unknown = cli.parser.parse_known_args(flags)
    for key, value in vars(known).items():
        if value != cli.parser.get_default(key):
            setattr(cli.args, key, value)
    status["flags"] = [f for f in flags if f not in unknown]
    if unknown:
        status["flags_unknown_to_host"] = unknown
    cli.args.cpu = device == "cpu"
    if device == "cuda":
        import cuda_malloc  # noqa: F401  (as main.py: cudaMallocAsync unless disabled, before torch is imported)
    args = cli.args
    wants = has_dynamic and (getattr(args, "enable_dynamic_vram", False) or cli.enables_dynamic_vram())
    if wants:  # main.py, before torch is imported
        import comfy_aimdo.control as aimdo

        headroom = None if args.reserve_vram is None else int(args.reserve_vram * 1024 ** 3)
        try:
            aimdo.init(simple_vram_headroom=headroom,
                       nvml_pressure=not getattr(args, "disable_nvml_pressure", False))
        except TypeError:
            try:
                aimdo.init(simple_vram_headroom=headroom)
            except TypeError:
                aimdo.init()
    import comfy.model_management as mm

    if wants and (getattr(args, "enable_dynamic_vram", False) or _dynamic_vram_supported(mm)):
        if not getattr(args, "enable_dynamic_vram", False) and mm.torch_version_numeric < (2, 8):
            status["note"] = "dynamic VRAM needs torch 2.8 or later; ComfyUI falls back to static loading"
        else:
            import comfy.memory_management
            import comfy.model_patcher
            import comfy_aimdo.control as aimdo

            devices = list(mm.get_all_torch_devices())
            try:
                ok = aimdo.init_devices((d.index, int(getattr(args, "vram_headroom", 0) * 1024 ** 3))
                                        for d in devices)
            except TypeError:
                ok = aimdo.init_devices(d.index for d in devices)
            if ok:
                comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic
                comfy.memory_management.aimdo_enabled = True
            else:
                status["note"] = "no working comfy-aimdo: ComfyUI falls back to static loading"
    elif setting == "on" and device == "cpu":
        status["note"] = "requested; ComfyUI starts dynamic VRAM only on a GPU (this run is on the CPU)"
    elif setting == "off" and not has_dynamic:
        status["note"] = "this ComfyUI has no dynamic VRAM: static loading, its only mode"
    try:
        import comfy.memory_management

        status["dynamic_vram_active"] = bool(getattr(comfy.memory_management, "aimdo_enabled", False))
    except ImportError:
        status["dynamic_vram_active"] = False
    models = os.path.join(work, "models")
    host = Host(root, model_dirs={"diffusion_models": os.path.join(models, "diffusion_models"),
                                  "video_adapters": os.path.join(models, "video_adapters")},
                output_dir=os.path.join(work, "output"), cpu=device == "cpu")
    return host, status


def _dynamic_vram_supported(mm) -> bool:
    """main.py's dynamic_vram_supported()."""
    if mm.is_nvidia():
        return True
    if hasattr(mm, "is_amd") and mm.is_amd():
        return getattr(mm, "rocm_version", (0, 0)) >= (7, 14)
    return False


def host_facts(root: str, device: str) -> dict:
    import torch

    try:
        import comfyui_version

        version = comfyui_version.__version__
    except ImportError:
        version = "?"
    return {"comfyui": version, "host": root, "torch": torch.__version__,
            "device_name": torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else "cpu"}


# ----------------------------------------------------------------------------------------------------
# prepare: the model and adapter files


def prepare(args, sizes: Sizes, work: str, root: str) -> dict:
    """Build every model the chosen cases load (random weights, core's classes) and write them where core's
    loaders look; build the adapters Load Adapters reads as Train Adapters makes them. Returns a manifest."""
    import torch
    from safetensors.torch import save_file

    import memory
    from devtools import realsize

    host, _ = start_comfyui(root, "cpu", [], work, None)
    import comfy.utils

    comfy.utils.set_progress_bar_global_hook(None)
    folder = os.path.join(work, "models", "diffusion_models")
    adapters_dir = os.path.join(work, "models", "video_adapters")
    all_bases = bases(sizes)
    keys = sorted({k for c in args.cases for k in NEEDS[c] if all_bases.get(k) is not None})
    sixteen = sorted({file_dtype(d, args.dtypes) for d in args.dtypes})
    manifest = {"models": {}, "adapters": {}}
    for key in keys:
        base = all_bases[key]
        for d16 in sixteen:
            t0 = time.perf_counter()
            dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[d16]
            # every model its own random weights
            model = realsize.build_base(base, dtype, base.full_layers if base.arch == "wan" else None, seed=SEEDS[key])
            dm = model.model.diffusion_model
            params = sum(p.numel() for p in dm.parameters())
            path = os.path.join(folder, model_file(key, d16))
            save_file({k: v.contiguous() for k, v in dm.state_dict().items()}, path)
            manifest["models"][f"{key}/{d16}"] = {
                "label": base.label, "file": os.path.basename(path), "parameters": params,
                "gib": os.path.getsize(path) / GIB, "detected_as": type(model.model.model_config).__name__,
                "seconds": time.perf_counter() - t0}
            log(f"prepare: {base.label} ({key}, {d16}): {params / 1e6:,.0f}M parameters, "
                f"{manifest['models'][f'{key}/{d16}']['gib']:.2f} GiB, {time.perf_counter() - t0:.0f} s")
            if key == "wan_t2v" and d16 == sixteen[0]:
                for case, kind in ADAPTER_FILES.items():
                    if case not in args.cases:
                        continue
                    t1 = time.perf_counter()
                    pk = memory.PackKind(host, base, kind, {"latent_shift": "none"}, model)
                    out = os.path.join(adapters_dir, adapter_file(kind))
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    pk.adapters.save(out)
                    manifest["adapters"][kind] = {
                        "file": adapter_file(kind), "parameters": sum(p.numel() for p in pk.adapters.parameters()),
                        "config": pk.config, "gib": os.path.getsize(out) / GIB}
                    log(f"prepare: {kind} adapters for {base.label}: "
                        f"{manifest['adapters'][kind]['parameters'] / 1e6:,.1f}M parameters, "
                        f"{time.perf_counter() - t1:.0f} s")
                    del pk
            del model, dm
            gc.collect()
    return manifest


# ----------------------------------------------------------------------------------------------------
# measuring one path


class Clock:
    """Timestamps of ComfyUI's per-step progress updates (the global progress-bar hook), after a device sync."""

    def __init__(self, device: str):
        self.device = device
        self.ticks: list[float] = []

    def hook(self, value, total, preview=None, *rest, **kwargs):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
        self.ticks.append(time.perf_counter())
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()

    def per_step(self) -> float | None:
        gaps = [b - a for a, b in zip(self.ticks, self.ticks[1:])]
        return statistics.median(gaps) if gaps else None


class DevicePeak:
    """The device's used memory (total - free, cudaMemGetInfo), polled on a thread every 5 ms."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        import torch

        def poll():
            while not self._stop.is_set():
                try:
                    free, total = torch.cuda.mem_get_info()
                    self.peak = max(self.peak, total - free)
                except RuntimeError:
                    return
                time.sleep(0.005)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def free_device(device: str):
    """Every model unloaded and the caches emptied, as between two prompts that need the whole card."""
    import torch

    import comfy.model_management as mm

    mm.unload_all_models()
    gc.collect()
    mm.soft_empty_cache()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def cuda_stat(fn):
    """A CUDA memory statistic, or None where this allocator does not give it (a measurement, never a failure)."""
    try:
        return fn()
    except (RuntimeError, AssertionError, AttributeError):
        return None


def measure(fn, device: str) -> tuple[object, dict]:
    """Run ``fn`` (one path) under inference mode, as ComfyUI's executor runs a prompt, after every model was
    unloaded; its time per step, wall time and peaks. Exceptions of the path propagate."""
    import torch

    import comfy.utils
    import memory

    free_device(device)
    clock = Clock(device)
    comfy.utils.set_progress_bar_global_hook(clock.hook)
    rec: dict = {}
    cuda = device == "cuda"
    if cuda:
        cuda_stat(torch.cuda.reset_peak_memory_stats)
    memory.reset_rss_peak()
    peak = DevicePeak() if cuda else None
    t0 = time.perf_counter()
    try:
        if peak is not None:
            peak.__enter__()
        with torch.inference_mode():
            out = fn()
        if cuda:
            torch.cuda.synchronize()
    finally:
        if peak is not None:
            peak.__exit__(None, None, None)
        comfy.utils.set_progress_bar_global_hook(None)
    rec["wall_s"] = time.perf_counter() - t0
    rec["s_per_step"] = clock.per_step()
    rec["steps_seen"] = len(clock.ticks)
    rec["rss_peak_gib"] = memory.rss_peak()
    if cuda:
        for key, stat in (("peak_allocated_gib", torch.cuda.max_memory_allocated),
                          ("peak_reserved_gib", torch.cuda.max_memory_reserved)):
            value = cuda_stat(stat)
            rec[key] = None if value is None else value / GIB
        rec["device_used_peak_gib"] = peak.peak / GIB if peak.peak else None
        rec["allocator"] = cuda_stat(torch.cuda.get_allocator_backend)
    return out, rec


def finite_latent(out) -> bool | None:
    try:
        return bool(out[0]["samples"].isfinite().all())
    except (TypeError, KeyError, IndexError, AttributeError):
        return None


# ----------------------------------------------------------------------------------------------------
# the cases


class Models:
    """The chosen dtype's models, loaded once by core's UNETLoader (inference mode, as in a prompt)."""

    def __init__(self, host, sizes: Sizes, dtype: str, dtypes, device: str):
        self.host, self.sizes, self.dtype, self.dtypes, self.device = host, sizes, dtype, dtypes, device
        self.cache: dict = {}

    def get(self, key: str):
        import torch

        if key not in self.cache:
            if key == "svd" and self.sizes.quick:
                self.cache[key] = tiny_svd_on(self.device)
            else:
                weight = "fp8_e4m3fn" if self.dtype == "fp8" else "default"
                with torch.inference_mode():
                    self.cache[key] = self.host.call("UNETLoader", model_file(key, file_dtype(self.dtype, self.dtypes)),
                                                     weight)[0]
        return self.cache[key]


def tiny_svd_on(device: str):
    """devtools' tiny SVD (core's detection only knows the full-size SVD config, so --quick builds it in memory)."""
    import comfy.model_management as mm
    import comfy.model_patcher
    from devtools.tiny_models import tiny_svd

    m = tiny_svd()
    if device == "cpu":
        return m
    return comfy.model_patcher.ModelPatcher(m.model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def patcher_facts(model) -> dict:
    dm = model.model.diffusion_model
    weight = next((p for n, p in dm.named_parameters() if n.endswith("weight") and p.ndim == 2), None)
    is_dynamic = getattr(model, "is_dynamic", None)
    return {"patcher": type(model).__name__, "dynamic": bool(is_dynamic()) if callable(is_dynamic) else False,
            "weights": str(weight.dtype).replace("torch.", "") if weight is not None else "?",
            "compute": str(getattr(model.model, "manual_cast_dtype", None) or model.model.get_dtype()).replace(
                "torch.", "")}


class Case:
    """One case: ``paths()`` loads its models and inputs and returns the callables of its native and adapted
    paths, which ``measure`` runs."""

    def __init__(self, name, host, models: Models, sizes: Sizes, device: str, work: str, tag: str):
        self.name, self.host, self.models, self.sizes, self.device, self.work, self.tag = \
            name, host, models, sizes, device, work, tag
        self.notes: list[str] = []
        self.cleanup: list[str] = []

    # shared inputs --------------------------------------------------------------------------------
    def text(self):
        from devtools.harness import cond

        n = self.sizes.text_tokens
        return cond(4096, 0, tokens=n), cond(4096, 1, tokens=n)

    def latent(self):
        w, h, f = self.sizes.video
        return self.host.call("EmptyHunyuanLatentVideo", w, h, f, 1)[0]

    def image(self, seed=0):
        import torch

        w, h, _ = self.sizes.video
        return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))

    def ksampler(self, model, pos, neg, latent):
        s = self.sizes.steps
        return lambda: self.host.call("KSampler", model, 0, s, 5.0, "euler", "simple", pos, neg, latent, 1.0)

    def custom(self, make_guider, model, latent):
        def run():
            guider = make_guider()
            sigmas = self.host.call("BasicScheduler", model, "simple", self.sizes.steps, 1.0)[0]
            sampler = self.host.call("KSamplerSelect", "euler")[0]
            noise = self.host.call("RandomNoise", 0)[0]
            return self.host.call("SamplerCustomAdvanced", noise, guider, sampler, sigmas, latent)
        return run

    def base_facts(self, model):
        self.facts = patcher_facts(model)

    # the paths ------------------------------------------------------------------------------------
    def paths(self):
        """``(native callable or None, adapted callable)``; the models are loaded here (not timed)."""
        return getattr(self, "_" + self.name)()

    def _load_simda(self):
        return self._load_adapters("simda")

    def _load_fca(self):
        return self._load_adapters("fca")

    def _load_adapters(self, kind):
        from devtools.tiny_models import ToyVAE

        base = self.models.get("wan_t2v")
        self.base_facts(base)
        pos, neg = self.text()
        latent = self.latent()
        native = self.ksampler(base, pos, neg, latent)

        def adapted():
            p, n = pos, neg
            if kind == "fca":
                p, n = self.host.call("VA_InitialFramesConditioning", pos, neg, ToyVAE(), self.image(), 1, 1, 0)
            model, summary = self.host.call("VA_LoadAdapter", base, adapter_file(kind), 1.0, 0)
            self.notes.append(summary.split(";")[0])
            return self.ksampler(model, p, n, latent)()
        return native, adapted

    def _framewise(self):
        base = self.models.get("wan_t2v")
        self.base_facts(base)
        pos, neg = self.text()
        latent = self.latent()
        frames = self.sizes.video[2]
        latent_frames = self.sizes.wan_latent[0]
        starts = sorted({0, latent_frames // 2, latent_frames - 1})  # each state on its own latent frame
        schedule = ",\n".join(f'"{4 * j}": "{text}"' for j, text in zip(starts, STATES))  # pixel 4j: latent j
        clip = PaddedTextEncoder(4096, self.sizes.text_tokens)

        def adapted():
            model = self.host.call("VA_FramewisePrompts", base, clip, schedule, frames, 1, 4)[0]
            return self.ksampler(model, pos, neg, latent)()
        self.notes.append(f"{len(starts)} states at latent frames {starts}, blend 1")
        return self.ksampler(base, pos, neg, latent), adapted

    def _composer(self):
        prior, domain = self.models.get("wan_t2v"), self.models.get("wan_domain")
        self.base_facts(prior)
        pos, neg = self.text()
        latent = self.latent()
        native = self.custom(lambda: self.host.call("CFGGuider", prior, pos, neg, 5.0)[0], prior, latent)
        adapted = self.custom(lambda: self.host.call("VA_ScoreComposer", domain, prior, pos, neg, 0.2, 5.0, 0.9)[0],
                              domain, latent)
        self.notes.append("domain: a second Wan T2V of the same size with its own weights, prior: the Wan T2V, "
                          "gamma 0.2")
        return native, adapted

    def _dual_cfg(self):
        from devtools.tiny_models import ToyVAE, toy_clip_vision_output

        model = self.models.get("wan_i2v")
        self.base_facts(model)
        pos, neg = self.text()
        w, h, f = self.sizes.video
        with with_inference():
            pos, neg, latent = self.host.call("WanImageToVideo", pos, neg, ToyVAE(), w, h, f, 1,
                                              start_image=self.image(1), clip_vision_output=toy_clip_vision_output())
        native = self.custom(lambda: self.host.call("CFGGuider", model, pos, neg, 5.0)[0], model, latent)

        def guider():
            g, summary = self.host.call("VA_DualCFGGuider", model, pos, neg, 1.5, 5.0)
            self.notes.append(summary)
            return g
        return native, self.custom(guider, model, latent)

    def _train_fca(self):
        model = self.models.get("wan_t2v")
        self.base_facts(model)
        base = bases(self.sizes)["wan_t2v"]
        clip = base.latent(self.sizes.wan_latent, seed=3)
        positive = self.text()[0]
        settings = '{"queries_per_frame": 2, "text_width": 32, "text_heads": 2}' if self.sizes.quick else ""
        adapted = self.train(model, {"samples": clip}, positive, "fca", 0, "none", settings, {})
        return self.core_lora(model, clip, positive), adapted

    def _train_aid(self):
        import memory
        from devtools import realsize

        model = self.models.get("svd")
        self.base_facts(model)
        sw, sh, frames = self.sizes.svd_clip
        shape = (frames, sh // 8, sw // 8)
        if self.sizes.quick:
            from devtools.tiny_models import SVD_CONTEXT

            base = realsize.Base("svd_tiny", "tiny SVD", "unet", "SVD_img2vid", None, None, ("svd", 1, SVD_CONTEXT),
                               (), (), frames=frames)
            settings = '{"width": 32, "heads": 4, "queries_per_frame": 2}'
            self.notes.append("--quick: devtools' tiny SVD, built in memory")
        else:
            base = memory.bases(False)["svd"]
            settings = ""
        clip = base.latent(shape, seed=4)
        with with_inference():
            pos, neg = memory.conditioning(self.host, base, shape)
            positive = memory.aid_conditioning(self.host, pos, neg, frames)
        adapted = self.train(model, {"samples": clip}, positive, "aid", frames, "none", settings, {})
        native = self.core_lora(model, clip[:1], pos, one_frame=True)
        self.notes.append("aid supports SVD only (adapters/aid.py): run on SVD's UNet, not Wan")
        return native, adapted

    # training -------------------------------------------------------------------------------------
    def train(self, model, clips, positive, kind, frames, shift, settings, extra):
        name = f"gpu_check/train_{kind}_{self.tag}"

        def run():
            out = self.host.call("VA_TrainAdapter", model, clips, positive, kind, frames, self.sizes.train_steps,
                                 1e-4, 1, 0, shift, 0, name, settings=settings, **extra)
            self.notes.append("; ".join(out[3].split("; ")[:2]))
            import folder_paths

            folder = folder_paths.get_folder_paths("video_adapters")[0]
            stem = os.path.join(folder, out[1][: -len(".safetensors")])
            self.cleanup += [stem + ".safetensors", stem + "_checkpoint.safetensors"]
            return out
        return run

    def core_lora(self, model, latent, positive, one_frame=False):
        """Core's TrainLoraNode, as memory.py drives it (0.33's interface), ``train_steps`` steps of batch 1, LoRA
        rank 8, checkpoint_depth 2 (one checkpoint per block), in the dtype Train Adapters' auto picks."""
        import contextlib

        import memory

        if not memory.core_trainer_supported():
            self.native_note = "core TrainLoraNode of this ComfyUI has another interface: not driven"
            return None
        dtype = training_dtype(self.device)

        def run():
            from comfy_extras import nodes_train

            # models built in memory (--quick SVD) cannot be reloaded for the trainer's deep copy
            ctx = memory._NoDeepCopy(model) if getattr(model, "cached_patcher_init", None) is None \
                else contextlib.nullcontext(model)
            with ctx as m:
                return nodes_train.TrainLoraNode.execute(
                    model=[m], latents=[{"samples": latent}], positive=[positive], batch_size=[1],
                    steps=[self.sizes.train_steps], grad_accumulation_steps=[1], learning_rate=[1e-4], rank=[8],
                    optimizer=["AdamW"], loss_function=["MSE"], seed=[0], training_dtype=[dtype], lora_dtype=[dtype],
                    quantized_backward=[False], algorithm=["LoRA"], gradient_checkpointing=[True],
                    checkpoint_depth=[2], offloading=[False], existing_lora=["[None]"], bucket_mode=[False],
                    bypass_mode=[False])
        self.native_note = (f"core TrainLoraNode r8, ckpt depth 2, {dtype}"
                            + (", one frame (it cannot train a frames-in-batch clip as one batch)" if one_frame
                               else ""))
        return run


def with_inference():
    import torch

    return torch.inference_mode()


def training_dtype(device: str) -> str:
    import torch

    return "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


class PaddedTextEncoder:
    """devtools' stand-in text encoder (a deterministic embedding per text), padded with zeros to umT5's token
    count as Wan's text encoder pads: what Framewise Prompts calls on a CLIP."""

    def __init__(self, dim: int, tokens: int):
        self.dim, self.tokens = dim, tokens

    def tokenize(self, text):
        return {"text": text}

    def encode_from_tokens_scheduled(self, tokens):
        import torch

        from devtools.tiny_models import toy_text_embedding

        t = toy_text_embedding(tokens["text"], self.dim)
        return [[torch.cat([t, torch.zeros(1, max(0, self.tokens - t.shape[1]), self.dim)], 1), {}]]


def short(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".strip()
    return msg if len(msg) <= 600 else msg[:600] + " ..."


def run_case(name, host, models, sizes, device, work, tag) -> dict:
    case = Case(name, host, models, sizes, device, work, tag)
    case.native_note = None
    rec = {"case": name, "description": CASES[name], "success": False, "error": None, "native": None,
           "adapted": None, "ratio": None, "notes": case.notes}
    t0 = time.perf_counter()
    try:
        native, adapted = case.paths()
        rec.update(getattr(case, "facts", {}))
    except BaseException as e:  # noqa: BLE001  (every failure is a result)
        rec["error"] = short(e)
        rec["traceback"] = traceback.format_exc(limit=8)[-3000:]
        rec["seconds"] = time.perf_counter() - t0
        free_device(device)
        return rec
    if native is not None:
        try:
            out, rec["native"] = measure(native, device)
            rec["native"]["finite"] = finite_latent(out)
            del out
        except BaseException as e:  # noqa: BLE001
            rec["native_error"] = short(e)
    if case.native_note:
        rec["native_path"] = case.native_note
    try:
        out, rec["adapted"] = measure(adapted, device)
        rec["adapted"]["finite"] = finite_latent(out)
        del out
        rec["success"] = True
    except BaseException as e:  # noqa: BLE001
        rec["error"] = short(e)
        rec["traceback"] = traceback.format_exc(limit=8)[-3000:]
    n, a = (rec.get("native") or {}).get("s_per_step"), (rec.get("adapted") or {}).get("s_per_step")
    if n and a:
        rec["ratio"] = a / n
    for path in case.cleanup:
        if os.path.exists(path):
            os.remove(path)
    free_device(device)
    rec["seconds"] = time.perf_counter() - t0
    return rec


# ----------------------------------------------------------------------------------------------------
# a child: one dynamic-VRAM setting


def child(args):
    sizes = Sizes(args.quick, args)
    work, root = args.workdir, find_comfyui()
    result = {"setting": args.setting, "cases": []}

    def write():
        tmp = args.result + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1, default=str)
        os.replace(tmp, args.result)

    if args.setting == "prepare":
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        result["manifest"] = prepare(args, sizes, work, root)
        result["host"] = host_facts(root, "cpu")
        write()
        return
    flags = SETTINGS[args.setting] + shlex.split(args.comfy_args or "")
    host, status = start_comfyui(root, args.device, flags, work, args.setting)
    result["status"] = status
    if host is None:
        write()
        return
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result["host"] = host_facts(root, args.device)
    result["host"]["threads"] = torch.get_num_threads()
    write()
    durations = []
    default_estimate = 10.0 if args.quick else 45.0
    for dtype in args.dtypes:
        models = Models(host, sizes, dtype, args.dtypes, args.device)
        for name in args.cases:
            estimate = max(durations) if durations else default_estimate
            if time.time() + estimate > args.deadline:
                took = (f"the longest case so far took {estimate:.0f} s" if durations else
                        f"a case is estimated at {estimate:.0f} s")
                result["cases"].append({"case": name, "dtype": dtype, "success": None,
                                        "skipped": f"time budget: {max(0.0, args.deadline - time.time()):.0f} s "
                                                   f"left of this setting's share, {took}"})
                write()
                log(f"[{args.setting} {dtype}] {name}: skipped (time budget)")
                continue
            rec = run_case(name, host, models, sizes, args.device, work, f"{args.setting}_{dtype}")
            rec["dtype"] = dtype
            durations.append(rec["seconds"])
            result["cases"].append(rec)
            write()
            log(f"[{args.setting} {dtype}] {name}: " + (
                f"ok, {fmt(rec['adapted'].get('s_per_step'), 3)} s/step vs native "
                f"{fmt((rec.get('native') or {}).get('s_per_step'), 3)}" if rec["success"] else
                f"FAILED: {rec['error']}") + f" ({rec['seconds']:.0f} s)")
        models.cache.clear()
        del models
        free_device(args.device)


# ----------------------------------------------------------------------------------------------------
# the parent


def run_child(setting: str, args, work: str, deadline: float | None, timeout: float) -> tuple[dict, str | None]:
    out = os.path.join(work, f"result_{setting}.json")
    logf = os.path.join(work, f"log_{setting}.txt")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", setting, "--workdir", work, "--result", out,
           "--device", args.device, "--threads", str(args.threads), "--steps", str(args.steps),
           "--train-steps", str(args.train_steps), "--cases", *args.cases, "--dtypes", *args.dtypes]
    if deadline is not None:
        cmd += ["--deadline", repr(deadline)]
    if args.quick:
        cmd.append("--quick")
    if args.video:
        cmd += ["--video", args.video]
    if args.svd_clip:
        cmd += ["--svd-clip", args.svd_clip]
    if args.comfy_args:
        cmd += ["--comfy-args", args.comfy_args]
    problem = None
    with open(logf, "w") as log_file:
        try:
            rc = subprocess.run(cmd, stdout=None, stderr=log_file, timeout=timeout).returncode
            if rc != 0:
                problem = f"the child process ended with exit code {rc}"
        except subprocess.TimeoutExpired:
            problem = f"the child process was stopped at its time limit ({timeout:.0f} s)"
    data = {}
    if os.path.exists(out):
        with open(out) as f:
            data = json.load(f)
    if problem:
        with open(logf, errors="replace") as f:
            data["log_tail"] = f.read()[-4000:]
        data["problem"] = problem
    return data, problem


def parent(args):
    if args.host_path:
        os.environ["COMFYUI_PATH"] = args.host_path
    root = find_comfyui()
    if root is None:
        sys.exit(NO_HOST_HELP)
    t_start = time.time()
    deadline = t_start + args.budget
    sizes = Sizes(args.quick, args)
    work = tempfile.mkdtemp(prefix="va_gpu_check_", dir=args.workdir)
    report = {"meta": {"date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": args.quick,
                       "device": args.device, "budget_s": args.budget, "cases": args.cases, "dtypes": args.dtypes,
                       "settings": args.settings, "sizes": sizes.describe(),
                       "command": " ".join(shlex.quote(a) for a in sys.argv),
                       "notes": NOTES + ([QUICK_NOTE] if args.quick else [])}, "settings": []}
    try:
        log(f"gpu_check: ComfyUI {root}, device {args.device}, cases {' '.join(args.cases)}, dtypes "
            f"{' '.join(args.dtypes)}, budget {args.budget:.0f} s; work folder {work}")
        prep, problem = run_child("prepare", args, work, None, max(60.0, deadline - time.time()))
        report["meta"]["models"] = prep.get("manifest")
        report["meta"]["host"] = prep.get("host")
        report["meta"]["prepare_s"] = time.time() - t_start
        if problem:
            report["prepare_problem"] = {"problem": problem, "log_tail": prep.get("log_tail")}
            log(f"prepare failed: {problem}\n{prep.get('log_tail', '')}")
        else:
            settings = list(args.settings)
            for i, setting in enumerate(settings):
                share = max(0.0, deadline - time.time()) / (len(settings) - i)
                child_deadline = time.time() + share
                data, problem = run_child(setting, args, work, child_deadline, share + args.grace)
                data.setdefault("setting", setting)
                report["settings"].append(data)
                if problem:
                    log(f"[{setting}] {problem}; its log's end:\n{data.get('log_tail', '')[-1500:]}")
    finally:
        report["meta"]["total_s"] = time.time() - t_start
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1, default=str)
        if args.keep_files:
            log(f"files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(report))
    print(f"\nJSON: {os.path.abspath(args.out)} ({report['meta']['total_s']:.0f} s in all)")


NOTES = [
    "Train Adapters aid: the aid kind supports SVD only (adapters/aid.py architectures ('unet',), families "
    "('svd',)); it runs on a real-size random SVD(-XT) UNet with AID Conditioning, not on Wan",
    "Dual CFG Guider: Wan 2.1 I2V architecture (36 input channels, CLIP-vision embedding) at the 1.3B width "
    "(dim 1536, 30 blocks); the published I2V is 14B (dim 5120, 40 blocks)",
    "s/step: median interval between ComfyUI's per-step progress updates (device synchronised at each); loading, "
    "static clones and the first step are outside it",
    "peak: torch.cuda.max_memory_allocated (reset per path, every model unloaded first); device: used memory "
    "polled every 5 ms (cudaMemGetInfo, includes the CUDA context and dynamic VRAM's own allocations); on the CPU "
    "the resident-set peak",
    "stand-ins: random text features (umT5's 512 tokens), devtools' toy text encoder (padded) for Framewise "
    "Prompts, toy VAE and CLIP-vision output for WanImageToVideo and Initial Frames Conditioning",
]


QUICK_NOTE = ("--quick: every model at a tiny width instead (Wan dim 128, 2 blocks; devtools' tiny SVD, built in "
              "memory as core's detection knows only the full-size SVD), a tiny video; for checking the check")


def fmt(v, digits=2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(report: dict) -> str:
    cuda = report["meta"]["device"] == "cuda"
    out = []
    w = out.append
    host = next((s["host"] for s in report["settings"] if s.get("host")), None) or report["meta"].get("host") or {}
    w(f"ComfyUI {host.get('comfyui', '?')} ({host.get('host', '?')}), torch {host.get('torch', '?')}, "
      f"{host.get('device_name', '?')}; {'quick (tiny widths)' if report['meta']['quick'] else 'real size'}; "
      f"{report['meta']['sizes']['video']} video, {report['meta']['sizes']['sampling_steps']} sampling steps")
    for key, m in (report["meta"].get("models") or {}).get("models", {}).items():
        w(f"  model {key}: {m['label']}, {m['parameters'] / 1e6:,.1f}M parameters, core detects {m['detected_as']}")
    w("")
    peak = "peak GiB (torch alloc / device)" if cuda else "RSS peak GiB"
    w(f"| dynamic VRAM | dtype | case | ok | native s/step | adapted s/step | ratio | native {peak} | "
      f"adapted {peak} | base model | note |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")

    def mem(r):
        if not r:
            return "-"
        if cuda:
            return f"{fmt(r.get('peak_allocated_gib'))} / {fmt(r.get('device_used_peak_gib'))}"
        return fmt(r.get("rss_peak_gib"))

    for s in report["settings"]:
        st = s.get("status") or {}
        label = s.get("setting", "?")
        if st.get("dynamic_vram_active"):
            label += " (active)"
        elif label == "on" and st.get("host_has_dynamic_vram"):
            label += " (not active)"
        if not s.get("cases"):
            w(f"| {label} | - | - | - | - | - | - | - | - | - | "
              f"{st.get('note') or s.get('problem') or 'no case ran'} |")
            continue
        for r in s["cases"]:
            if r.get("skipped"):
                w(f"| {label} | {r['dtype']} | {r['case']} | skipped | - | - | - | - | - | - | {r['skipped']} |")
                continue
            base = f"{r.get('patcher', '?')}, {r.get('weights', '?')}" if r.get("patcher") else "-"
            note = r["error"] if not r["success"] else "; ".join(
                x for x in [r.get("native_error") and f"native failed: {r['native_error']}",
                            r.get("native_path"), *(r.get("notes") or [])[:1]] if x)
            if r["success"] and (r.get("adapted") or {}).get("finite") is False:
                note = "NON-FINITE OUTPUT; " + note
            note = note.replace("|", "/").replace("\n", " ")
            w(f"| {label} | {r['dtype']} | {r['case']} | {'yes' if r['success'] else 'NO'} | "
              f"{fmt((r.get('native') or {}).get('s_per_step'), 3)} | "
              f"{fmt((r.get('adapted') or {}).get('s_per_step'), 3)} | {fmt(r.get('ratio'))} | "
              f"{mem(r.get('native'))} | {mem(r.get('adapted'))} | {base} | {note[:160]} |")
        if st.get("note"):
            w(f"| {label} | | | | | | | | | | {st['note']} |")
        if s.get("problem"):  # a child that crashed or was stopped: the case it was in has no row above
            w(f"| {label} | | | NO | | | | | | | {s['problem']} (the log's end is in the JSON) |")
    bad = [(s.get("setting"), r["dtype"], r["case"]) for s in report["settings"] for r in s.get("cases", [])
           if r.get("success") is False]
    w("")
    skipped = sum(1 for s in report["settings"] for r in s.get("cases", []) if r.get("skipped"))
    w(f"{sum(1 for s in report['settings'] for r in s.get('cases', []) if r.get('success'))} cases succeeded, "
      f"{len(bad)} failed" + (": " + ", ".join("/".join(b) for b in bad) if bad else "")
      + (f", {skipped} skipped (time budget)" if skipped else ""))
    return "\n".join(out)


def log(msg):
    print(msg, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_check.json", help="the JSON of results (default: gpu_check.json)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny widths (Wan dim 128, 2 blocks; devtools' tiny SVD), a tiny video: runs on a CPU in a "
                         "few minutes, to check the check")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cuda (default), or cpu (for --quick; real size on a CPU takes very long)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), help="a subset of the cases")
    ap.add_argument("--dtypes", nargs="+", default=["fp16", "fp8"], choices=DTYPES,
                    help="base weights: fp16 / bf16 files, fp8 = the 16-bit file loaded with weight_dtype "
                         "fp8_e4m3fn (default: fp16 fp8)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
                    help="dynamic-VRAM settings to run: on (the host's default start), off (--disable-dynamic-vram); "
                         "default both")
    ap.add_argument("--budget", type=float, default=450.0,
                    help="seconds for the whole check (default 450: cases that would end later are skipped)")
    ap.add_argument("--grace", type=float, default=60.0,
                    help="seconds a child may run past its share before it is stopped (default 60)")
    ap.add_argument("--steps", type=int, default=4, help="sampling steps per path (at least 3; default 4)")
    ap.add_argument("--train-steps", type=int, default=3, help="training steps per path (at least 3; default 3)")
    ap.add_argument("--video", default=None, help="Wan video WIDTHxHEIGHTxFRAMES (default 832x480x33; quick 64x64x9)")
    ap.add_argument("--svd-clip", default=None,
                    help="SVD training clip WIDTHxHEIGHTxFRAMES (default 512x320x14; quick 64x64x4)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--comfy-args", default="", help="more ComfyUI flags for both settings, e.g. \"--fast\"")
    ap.add_argument("--host-path", default=None, help="the ComfyUI folder (default: COMFYUI_PATH)")
    ap.add_argument("--workdir", default=None, help="where the temporary model files go (default: the temp folder)")
    ap.add_argument("--keep-files", action="store_true", help="keep the model files and the children's logs")
    # a child's own arguments (set by the parent)
    ap.add_argument("--child", default=None, choices=("prepare", *SETTINGS), help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=float("inf"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.device == "cpu" and not args.quick and not args.child:
        log("note: real size on the CPU is very slow; --quick is the CPU mode")
    if args.child:
        args.setting = args.child
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
