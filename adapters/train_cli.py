"""Train a domain model from the command line, without ComfyUI:

    python -m adapters.train_cli --config my_style.json

(run from the pack's folder). It is the same trainer as the ``VA_TrainDomainModel`` node, and it writes the
same files: ``output`` (the model, for Load Domain Model) and ``<output>_checkpoint.safetensors`` (resumable;
Ctrl-C writes it and stops). See ``adapters/train_config.example.json``.

Config (JSON; relative paths are relative to the config file):

* ``family``: ``wan21`` | ``wan22_5b`` | ``sd15`` (latent space, text width, parameterisation);
* ``size``: ``xs`` | ``s`` | ``m`` (about 1.25 / 2.5 / 6 % of the prior, see ``prior_params``) or ``tiny``;
  ``model``: optional overrides of the model config (``attention``, ``first_frame_cond``, ``edge_cond``,
  ``width``/``depth``/``heads`` ...);
* ``data``: either cached tensors ``{"latents": "clips.safetensors", "text": "captions.safetensors"}`` or
  ``{"synthetic": {...}}`` (clips rendered by ``adapters/synthetic_video.py``: distribution, count, frames,
  size, seed). Latent files hold ``latents`` ``[N, C, T, H, W]`` (ComfyUI's Save Latent files, key
  ``latent_tensor``, work as they are); text files hold ``context`` ``[N or 1, L, D]`` and optionally
  ``mask`` ``[N or 1, L]``. Synthetic data is rendered once and cached under ``cache_dir`` as
  safetensors (``latents.safetensors``, ``text.safetensors``), keyed by its settings;
* ``latent_normalisation``: optional ``{"mean": [...], "std": [...], "scale": 1.0}`` per latent channel:
  ``(x - mean) * scale / std`` maps VAE latents into the model's space (what ComfyUI's latent format does);
  leave it out for latents that already are normalised;
* ``train``: fields of ``adapters.training.TrainConfig`` (steps, lr, batch_size, seed, cond_dropout,
  checkpoint_every, flow_shift, ...);
* ``gradient_checkpointing``: keep only each block's input for backward (default true: the same gradients for
  a fraction of the activation memory; ``train.training_dtype`` and ``train.grad_accumulation`` are the other
  memory settings);
* ``output``: the model file; ``resume``: continue from the checkpoint when it exists (default true);
  ``device``: ``auto`` | ``cpu`` | ``cuda`` | ... .

Several GPUs. With HF ``accelerate`` installed (``pip install accelerate``; the pack itself does not need
it) the same trainer runs data-parallel on several GPUs of one machine, one process per GPU:

    accelerate launch --num_processes 4 -m adapters.train_cli --config my_style.json

``torchrun --nproc_per_node 4 -m adapters.train_cli --config my_style.json`` works as well. On a machine
without a GPU, or with ``"device": "cpu"``, the processes train on the CPU (gloo backend); ``device`` must
be ``auto``, ``cuda`` or ``cpu`` here.

* ``train.batch_size`` is the global batch size: it must be divisible by the number of processes, and
  each process computes ``batch_size / N`` samples per step. The gradients are averaged over the
  processes by PyTorch's DistributedDataParallel (during backward), and the logged loss is the mean over the
  whole batch.
* Every process draws the same global batch, noise levels, noise and caption dropout from the same seeded
  generator and keeps its own contiguous share, so N processes give the losses and weights of a
  one-process run of the same config, up to float rounding. A checkpoint can be resumed with any process
  count that divides the batch size.
* Only the main process prints the log and writes the cache, the checkpoint and the model; the others
  wait for it. Ctrl-C stops all processes after the current step, with the checkpoint written.
* The processes share the data and output folders: one machine, or a filesystem shared by all of them.

Started directly (one process) this is a plain single-process loop; ``accelerate``, when installed, only
picks the device.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .domain_model import (FAMILY_SPECS, SIZES, DomainModelConfig, build_domain_model, clip_batches, frames_to_video,
                           save_domain_model, size_config)
from .training import DataParallel, TrainConfig, Trainer, default_sigma_sampling

CONFIG_KEYS = {"family", "size", "prior_params", "model", "data", "latent_normalisation", "cache_dir", "train",
               "output", "resume", "device", "gradient_checkpointing"}
SYNTHETIC_DEFAULTS = {"distribution": "domain", "count": 16, "frames": 8, "size": 32, "seed": 0}


class ConfigError(ValueError):
    """A config file the trainer cannot use; the message names the field."""


@dataclass
class RunConfig:
    family: str
    size: str
    model: dict[str, Any]
    data: dict[str, Any]
    train: TrainConfig
    output: str
    cache_dir: str
    prior_params: Optional[float] = None
    latent_normalisation: Optional[dict[str, Any]] = None
    resume: bool = True
    device: str = "auto"
    gradient_checkpointing: bool = True
    base_dir: str = "."
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoint(self) -> str:
        root = self.output[: -len(".safetensors")] if self.output.endswith(".safetensors") else self.output
        return root + "_checkpoint.safetensors"

    def model_config(self) -> DomainModelConfig:
        return size_config(self.size, self.family, self.prior_params, **self.model)


def _path(base: str, p: str) -> str:
    return p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))


def parse_config(raw: dict[str, Any], base_dir: str = ".") -> RunConfig:
    """Validate a config dict (see the module docstring); paths are resolved against ``base_dir``."""
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a JSON object")
    unknown = sorted(set(raw) - CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}; known: {sorted(CONFIG_KEYS)}")
    family = raw.get("family", "wan21")
    if family not in FAMILY_SPECS:
        raise ConfigError(f"family '{family}' is not one of {sorted(FAMILY_SPECS)}")
    size = raw.get("size", "xs")
    if size not in SIZES:
        raise ConfigError(f"size '{size}' is not one of {list(SIZES)}")
    model = dict(raw.get("model", {}))
    bad = sorted(set(model) - set(DomainModelConfig.__dataclass_fields__))
    if bad:
        raise ConfigError(f"model: unknown fields {bad}")
    data = raw.get("data")
    if not isinstance(data, dict) or not (("latents" in data and "text" in data) or "synthetic" in data):
        raise ConfigError('data: give {"latents": file, "text": file} or {"synthetic": {...}}')
    if "synthetic" in data:
        syn = dict(SYNTHETIC_DEFAULTS)
        extra = sorted(set(data["synthetic"] or {}) - set(SYNTHETIC_DEFAULTS))
        if extra:
            raise ConfigError(f"data.synthetic: unknown fields {extra}; known: {sorted(SYNTHETIC_DEFAULTS)}")
        syn.update(data["synthetic"] or {})
        data = {"synthetic": syn}
    else:
        data = {"latents": _path(base_dir, data["latents"]), "text": _path(base_dir, data["text"])}
    train_raw = dict(raw.get("train", {}))
    bad = sorted(set(train_raw) - set(TrainConfig.__dataclass_fields__))
    if bad:
        raise ConfigError(f"train: unknown fields {bad}")
    train_raw.setdefault("sigma_sampling", default_sigma_sampling(FAMILY_SPECS[family]["parameterisation"]))
    try:
        train = TrainConfig(**train_raw)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"train: {e}") from None
    norm = raw.get("latent_normalisation")
    if norm is not None:
        c = FAMILY_SPECS[family]["latent_channels"]
        for k in ("mean", "std"):
            if len(norm.get(k, [])) != c:
                raise ConfigError(f"latent_normalisation.{k} needs {c} values for {family}")
    output = raw.get("output")
    if not output:
        raise ConfigError("output: the model file to write is missing")
    output = _path(base_dir, output)
    if not output.endswith(".safetensors"):
        output += ".safetensors"
    cfg = RunConfig(family=family, size=size, model=model, data=data, train=train, output=output,
                    cache_dir=_path(base_dir, raw.get("cache_dir", "cache")),
                    prior_params=raw.get("prior_params"), latent_normalisation=norm,
                    resume=bool(raw.get("resume", True)), device=raw.get("device", "auto"), base_dir=base_dir,
                    gradient_checkpointing=bool(raw.get("gradient_checkpointing", True)), raw=raw)
    try:
        cfg.model_config()
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: {e}") from None
    return cfg


def read_json_config(path: str) -> dict[str, Any]:
    """A JSON config file as a dict; a file that is not a JSON object is refused naming the path."""
    with open(path, encoding="utf-8") as f:
        try:
            raw = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a JSON object")
    return raw


def load_config(path: str) -> RunConfig:
    return parse_config(read_json_config(path), os.path.dirname(os.path.abspath(path)))


# ----------------------------------------------------------------------------------------------------
# data and caching


def _read(path: str, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise ConfigError(f"data file {path} does not exist")
    out = {}
    with safe_open(path, framework="pt") as f:
        have = set(f.keys())
        for k in keys:
            if k in have:
                out["main"] = f.get_tensor(k)
                break
        else:
            raise ConfigError(f"{path} has none of the tensors {list(keys)} (it has {sorted(have)})")
        for k in optional:
            if k in have:
                out[k] = f.get_tensor(k)
    return out


def _cache_meta(spec: dict[str, Any], latent_channels: int, text_dim: int, code: int | None = None) -> str:
    """The cache's key: the clips' recipe and the latent code that encoded them (a new code renders them again)."""
    return json.dumps({"synthetic": spec, "latent_channels": latent_channels, "text_dim": text_dim,
                       **({"latent_code": code} if code is not None else {})}, sort_keys=True)


def synthetic_cache(cfg: RunConfig) -> tuple[str, str, bool]:
    """Render (or reuse) the synthetic clips: ``(latents file, text file, reused)``."""
    from .synthetic_video import ToyLatentCodec, make_clips, synthetic_codec

    spec = cfg.data["synthetic"]
    fam = FAMILY_SPECS[cfg.family]
    key = _cache_meta(spec, fam["latent_channels"], fam["text_dim"], fam.get("code_version"))
    lat_path = os.path.join(cfg.cache_dir, "latents.safetensors")
    txt_path = os.path.join(cfg.cache_dir, "text.safetensors")
    if os.path.isfile(lat_path) and os.path.isfile(txt_path):
        with safe_open(lat_path, framework="pt") as f:
            if (f.metadata() or {}).get("source") == key:
                return lat_path, txt_path, True
    clips = make_clips(int(spec["count"]), spec["distribution"], seed=int(spec["seed"]), frames=int(spec["frames"]),
                       size=int(spec["size"]))
    # the synthetic family has one fixed code; other families get a stand-in code seeded like the clips
    codec = (synthetic_codec() if cfg.family == "synthetic"
             else ToyLatentCodec(fam["latent_channels"], seed=int(spec["seed"])))
    latents = codec.encode(clips.video)
    if fam["layout"] == "frames":
        latents = latents[0].movedim(0, 1).contiguous()  # one clip, frames in the batch
    context = clips.context(fam["text_dim"])
    os.makedirs(cfg.cache_dir, exist_ok=True)
    save_file({"context": context.contiguous()}, txt_path, metadata={"source": key})
    save_file({"latents": latents.contiguous()}, lat_path, metadata={"source": key})  # written last: the marker
    return lat_path, txt_path, False


def load_data(cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(latents [N, C, T, H, W] in model space, context [N, L, D], mask [N, L])`` for training."""
    if "synthetic" in cfg.data:
        lat_path, txt_path, _ = synthetic_cache(cfg)
    else:
        lat_path, txt_path = cfg.data["latents"], cfg.data["text"]
    fam = FAMILY_SPECS[cfg.family]
    x = _read(lat_path, ("latents", "latent_tensor"))["main"].float()
    if fam["layout"] == "frames" and x.ndim == 4:
        x = frames_to_video(x, 1)
    if x.ndim != 5 or x.shape[1] != fam["latent_channels"]:
        raise ConfigError(f"{lat_path}: expected {cfg.family} latents [N, {fam['latent_channels']}, T, H, W], "
                          f"got {list(x.shape)}")
    norm = cfg.latent_normalisation
    if norm:
        mean = torch.tensor(norm["mean"], dtype=torch.float32).reshape(1, -1, 1, 1, 1)
        std = torch.tensor(norm["std"], dtype=torch.float32).reshape(1, -1, 1, 1, 1)
        x = (x - mean) * float(norm.get("scale", 1.0)) / std
    t = _read(txt_path, ("context",), ("mask",))
    ctx = t["main"].float()
    if ctx.ndim == 2:
        ctx = ctx[None]
    if ctx.ndim != 3 or ctx.shape[-1] != fam["text_dim"]:
        raise ConfigError(f"{txt_path}: expected text features [N, L, {fam['text_dim']}], got {list(ctx.shape)}")
    mask = t.get("mask")
    mask = torch.ones(ctx.shape[:2], dtype=torch.bool) if mask is None else mask.to(torch.bool).reshape(ctx.shape[:2])
    n = x.shape[0]
    if ctx.shape[0] == 1:
        ctx, mask = ctx.expand(n, -1, -1).clone(), mask.expand(n, -1).clone()
    elif ctx.shape[0] != n:
        raise ConfigError(f"{txt_path}: {ctx.shape[0]} captions for {n} clips (give 1 or {n})")
    return x, ctx, mask


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    try:
        import accelerate  # optional
    except ImportError:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return accelerate.Accelerator().device


def launched_processes() -> int:
    """How many processes ``accelerate launch`` / ``torchrun`` started (1 when started directly)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def check_batch_split(batch_size: int, processes: int) -> None:
    if batch_size % processes:
        raise ConfigError(f"train.batch_size {batch_size} must be divisible by the number of processes "
                          f"({processes}): each process trains on batch_size / {processes} samples")


def start_processes(name: str, batch_size: int):
    """``(device, DataParallel or None, accelerator or None)`` for this process."""
    world = launched_processes()
    if world == 1:
        return pick_device(name), None, None
    check_batch_split(batch_size, world)
    try:
        import accelerate
    except ImportError:
        raise ConfigError(f"started as {world} processes, which needs HF accelerate (pip install accelerate)") \
            from None
    if name not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"device: with {world} processes use auto, cuda or cpu (each process takes its own "
                          f"GPU), not '{name}'")
    if name == "auto":
        has_accel = getattr(torch, "accelerator", None)
        cpu = not (has_accel.is_available() if has_accel is not None else torch.cuda.is_available())
    else:
        cpu = name == "cpu"
    acc = accelerate.Accelerator(cpu=cpu)
    if acc.num_processes != world:
        raise ConfigError(f"{world} processes were started, but accelerate set up {acc.num_processes} for device "
                          f"'{name}' (is there a GPU for every process?)")
    return acc.device, DataParallel(acc.device), acc


# ----------------------------------------------------------------------------------------------------


def run(cfg: RunConfig, log=print) -> dict[str, Any]:
    """Train as configured; returns the training summary (also stored in the model file).

    Started by ``accelerate launch`` / ``torchrun`` with several processes, this process trains its share
    of every batch (see the module docstring); only the main process logs and writes files."""
    device, dp, acc = start_processes(cfg.device, cfg.train.batch_size)
    try:
        return _run(cfg, log, device, dp)
    finally:
        if acc is not None:
            acc.end_training()  # frees the process group


def _run(cfg: RunConfig, log, device: torch.device, dp: Optional[DataParallel]) -> dict[str, Any]:
    main_process = dp is None or dp.is_main
    if not main_process:
        log = _quiet
        dp.barrier()  # the main process renders the synthetic cache first
    x0, ctx, mask = load_data(cfg)
    if dp is not None and main_process:
        dp.barrier()
    resume = cfg.checkpoint if cfg.resume and os.path.isfile(cfg.checkpoint) else None
    if resume:
        from .files import read_metadata

        mc = DomainModelConfig.from_dict(read_metadata(resume)["model_config"])
    else:
        mc = cfg.model_config()
    if mc.family != cfg.family:
        raise ConfigError(f"the checkpoint {cfg.checkpoint} was trained for '{mc.family}', the config says "
                          f"'{cfg.family}'")
    torch.manual_seed(cfg.train.seed)
    net = build_domain_model(mc).to(device)
    net.gradient_checkpointing = cfg.gradient_checkpointing
    batch_fn = clip_batches(x0, ctx, mask, mc)

    stop = [False]

    def on_sigint(signum, frame):
        stop[0] = True
        log("stopping after this step; the checkpoint will be written")

    previous = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
    n_params = sum(p.numel() for p in net.parameters())
    log(f"{cfg.family} domain model, {n_params / 1e6:.2f}M parameters, {x0.shape[0]} clips, device {device}"
        + (f", {dp.world_size} processes" if dp is not None else "")
        + (f", resuming {cfg.checkpoint}" if resume else ""))
    t0 = time.time()
    every = max(cfg.train.steps // 20, 1)

    def on_step(step, loss):
        if step % every == 0 or step == cfg.train.steps:
            log(f"step {step}/{cfg.train.steps}  loss {loss:.4f}  ({time.time() - t0:.0f}s)")

    meta = {"family": cfg.family, "model_config": mc.to_dict()}
    try:
        result = Trainer(cfg.train).run(net, net, batch_fn, mc.parameterisation, checkpoint_path=cfg.checkpoint,
                                        resume_from=resume, on_step=on_step, should_stop=lambda: stop[0],
                                        checkpoint_meta=meta, distributed=dp)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    summary = result.summary(cfg.train)
    summary["clips"] = int(x0.shape[0])
    if result.stopped:
        log(f"stopped at step {result.steps_done}; checkpoint {cfg.checkpoint} (run again to continue)")
        return summary
    if main_process:
        save_domain_model(cfg.output, net, summary)
    if dp is not None:
        dp.barrier()  # the model file is written before any process exits
    log(f"saved {cfg.output} and {cfg.checkpoint}")
    return summary


def _quiet(*args, **kwargs) -> None:
    pass


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m adapters.train_cli",
                                 description="Train a Video Adapter domain model from a JSON config.")
    ap.add_argument("--config", required=True, help="JSON config file (see adapters/train_config.example.json)")
    ap.add_argument("--steps", type=int, help="override train.steps")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
        if args.steps is not None:
            cfg.train.steps = int(args.steps)
        run(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
