"""The one training loop of the pack: maximum-likelihood diffusion training in a prior's parameterisation.

Everything trainable in the pack (the Video Adapter domain model, and adapters that wrap a frozen prior)
trains through :class:`Trainer`. The trainer knows nothing about the model: it receives

* the parameters to train (an ``nn.Module``, whose trainable parameters are used, or a mapping
  ``name -> tensor``),
* ``model_fn(x_t, sigma, context, **kwargs) -> prediction``,
* ``batch_fn(step, generator, batch_size) -> dict`` with ``"x0"`` (clean latents) and optionally
  ``"context"`` / ``"context_mask"`` (text conditioning) plus any extra keyword arguments for
  ``model_fn`` (``"first_frame"``, ``"edges"``, ...). A bare tensor is read as ``{"x0": tensor}``.

Determinism. All randomness of a run (the batch provider's, the noise levels, the noise, the
classifier-free dropout) is drawn from one CPU ``torch.Generator`` seeded by ``TrainConfig.seed``; its
state is saved in every checkpoint together with the parameters, the AdamW state and the loss history.
On a deterministic device, running 10 steps, stopping and resuming for 10 more gives exactly the losses
and weights of an uninterrupted 20-step run. Models must not draw from the global RNG (no dropout layers).

Data parallel. ``Trainer.run(..., distributed=DataParallel())`` trains with several processes (one per
GPU, started by ``accelerate launch`` or ``torchrun``) as if it were one process with the same batch size:
every process draws the same global batch, noise levels, noise and dropout from its own copy of the
generator (same seed, same state), keeps its contiguous share of the batch, and the gradients are averaged
across processes before clipping and the optimizer step. The averaging is PyTorch's
``DistributedDataParallel``: the loss is computed by a small module that owns the trained parameters
(:class:`StepLoss`), wrapped in DDP, so the gradient exchange runs bucket by bucket while backward is still
running (micro-batches of ``grad_accumulation`` exchange once, after the last). The reported loss is the mean
over the global batch, so the losses and weights follow the single-process run up to float rounding. Only the
main process writes checkpoints. Every tensor of the batch whose first dimension is the batch size is split;
other values (a single shared caption, for instance) go to every process as they are. Data-parallel training
needs the parameters as an ``nn.Module``.

Inference mode. ComfyUI runs nodes under ``torch.inference_mode()``. The loop runs inside
``torch.inference_mode(False)`` and ``torch.enable_grad()``. Tensors created under inference mode can not
take part in autograd, so every tensor the batch provider returns is cloned, and when a module is given,
parameters and buffers that are inference tensors are replaced by normal copies (in place in the module).

Classifier-free dropout: with probability ``cond_dropout`` per sample the text is dropped by clearing that
sample's row of ``context_mask``; models must treat a row with no valid token as unconditional (the
domain model switches to its learned null embedding).

Checkpoints are safetensors files (see ``files.py``) of kind ``"checkpoint"``:

* ``param/<name>``: the trained tensors;
* ``optim/<name>/<key>``: AdamW state per parameter (``exp_avg``, ``exp_avg_sq``, ``step``);
* ``rng/generator``: the generator state; ``history/loss``: float64 loss per completed step;
* metadata: ``step``, ``train_config``, ``parameterisation``, ``param_names``, the optimizer's
  hyperparameters as JSON, and whatever the caller passes as ``checkpoint_meta`` (family, model config).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Iterable, Mapping, Optional

import torch
import torch.nn as nn

from .files import AdapterFileError, load_tensors, save_tensors

try:  # inside ComfyUI the pack is one package; the host-free tests and the CLI import the core packages directly
    from ..samplers import parameterisation as parameterisation_module
except ImportError:
    from samplers import parameterisation as parameterisation_module

PARAMETERISATIONS = ("flow", "eps", "v")
SIGMA_SAMPLINGS = ("flow_shift", "eps_discrete", "schedule", "lognormal")
FLOW_DISTRIBUTIONS = ("logit_normal", "uniform")
LR_SCHEDULES = ("constant", "cosine")
TRAINING_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainConfig:
    """Hyperparameters of a training run (JSON-serialisable).

    Noise levels: ``"flow_shift"`` draws u from a logit-normal (``logit_mean``, ``logit_std``) or uniform
    distribution on (0, 1) and shifts it like Wan's schedules, s = shift u / (1 + (shift - 1) u);
    ``"eps_discrete"`` draws one of ``num_timesteps`` discrete timesteps of SD's scaled-linear beta
    schedule and uses its sigma = sqrt((1 - a_bar) / a_bar); ``"schedule"`` draws uniformly from
    ``sigma_table``, the host model's own noise levels (its ``model_sampling`` sigmas: SD's discrete
    schedule, SVD's EDM range 0.002-700, ...), as ComfyUI's own trainer does; ``"lognormal"`` draws ln sigma from
    a normal (``lognormal_mean``, ``lognormal_std``), the EDM recipe SVD was trained with (EDM's image default
    -1.2 / 1.2; SVD's video fine-tuning 0.7 / 1.6), kept inside ``sigma_table``'s range when a table is given.
    ``default_sigma_sampling`` picks the recipe for a parameterisation when no model is at hand (the command-line trainer).
    """

    steps: int = 1000
    lr: float = 1e-4
    batch_size: int = 1
    seed: int = 0
    cond_dropout: float = 0.1   # share of samples without text ("text" dropout)
    image_dropout: float = 0.0  # share of samples without the image condition
    both_dropout: float = 0.0   # share of samples without either
    checkpoint_every: int = 0  # 0: only on stop and at the end
    grad_clip: float = 1.0     # 0: off
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # "constant", or "cosine": decay to 0 over the steps after the warm-up
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    sigma_sampling: str = "flow_shift"
    flow_distribution: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    flow_shift: float = 3.0
    num_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    sigma_table: tuple[float, ...] = ()
    lognormal_mean: float = -1.2
    lognormal_std: float = 1.2
    # memory: batch_size is split into grad_accumulation micro-batches run one after the other (the same draws
    # and the same gradient as one batch); the forward runs under autocast in training_dtype ("fp32": none)
    # while the trained parameters, their gradients and the optimizer state stay fp32
    grad_accumulation: int = 1
    training_dtype: str = "fp32"

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        self.sigma_table = tuple(float(v) for v in self.sigma_table)
        if self.sigma_sampling == "schedule" and len(self.sigma_table) < 2:
            raise ValueError("sigma_sampling 'schedule' needs the model's sigma_table (at least two noise levels)")
        if self.sigma_sampling == "lognormal" and not (self.lognormal_std > 0.0):
            raise ValueError(f"lognormal_std must be positive, got {self.lognormal_std}")
        if any(not (v > 0.0) or v != v for v in self.sigma_table):
            raise ValueError("sigma_table must hold positive, finite noise levels")
        if self.sigma_sampling not in SIGMA_SAMPLINGS:
            raise ValueError(f"sigma_sampling must be one of {SIGMA_SAMPLINGS}, got '{self.sigma_sampling}'")
        if self.flow_distribution not in FLOW_DISTRIBUTIONS:
            raise ValueError(f"flow_distribution must be one of {FLOW_DISTRIBUTIONS}, got '{self.flow_distribution}'")
        for name in ("cond_dropout", "image_dropout", "both_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.cond_dropout + self.image_dropout + self.both_dropout > 1.0 + 1e-9:
            raise ValueError("cond_dropout + image_dropout + both_dropout must not exceed 1")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got '{self.lr_schedule}'")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be >= 0 and batch_size >= 1")
        if self.grad_accumulation < 1 or self.batch_size % self.grad_accumulation:
            raise ValueError(f"grad_accumulation {self.grad_accumulation} must be at least 1 and divide batch_size "
                             f"{self.batch_size} (it splits each step's batch into that many micro-batches)")
        if self.training_dtype not in TRAINING_DTYPES:
            raise ValueError(f"training_dtype must be one of {tuple(TRAINING_DTYPES)}, got '{self.training_dtype}'")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["sigma_table"] = list(self.sigma_table)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def default_sigma_sampling(parameterisation: str) -> str:
    """``"flow_shift"`` for rectified flow, ``"eps_discrete"`` for eps / v priors."""
    return "flow_shift" if parameterisation == "flow" else "eps_discrete"


# ----------------------------------------------------------------------------------------------------
# noise levels and the loss


def discrete_sigmas(config: TrainConfig) -> torch.Tensor:
    """The ``num_timesteps`` sigmas of SD's scaled-linear schedule, ascending (float64)."""
    betas = torch.linspace(config.beta_start ** 0.5, config.beta_end ** 0.5, config.num_timesteps,
                           dtype=torch.float64) ** 2
    a_bar = torch.cumprod(1.0 - betas, dim=0)
    return ((1.0 - a_bar) / a_bar).sqrt()


def sample_sigmas(config: TrainConfig, batch: int, generator: torch.Generator) -> torch.Tensor:
    """Training noise levels ``[batch]`` (float32, CPU) drawn from ``generator``."""
    if config.sigma_sampling == "schedule":
        idx = torch.randint(0, len(config.sigma_table), (batch,), generator=generator)
        return torch.tensor(config.sigma_table, dtype=torch.float64)[idx].float()
    if config.sigma_sampling == "lognormal":
        s = (config.lognormal_mean + config.lognormal_std * torch.randn(batch, generator=generator)).exp()
        if config.sigma_table:
            s = s.clamp(min(config.sigma_table), max(config.sigma_table))
        return s.float()
    if config.sigma_sampling == "eps_discrete":
        idx = torch.randint(0, config.num_timesteps, (batch,), generator=generator)
        return discrete_sigmas(config)[idx].float()
    if config.flow_distribution == "logit_normal":
        u = torch.sigmoid(config.logit_mean + config.logit_std * torch.randn(batch, generator=generator))
    else:
        u = torch.rand(batch, generator=generator)
    k = config.flow_shift
    s = k * u / (1.0 + (k - 1.0) * u)
    return s.clamp(1e-4, 1.0).float()


def condition_dropout(config: TrainConfig, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(drop_text, drop_image)`` booleans ``[batch]``: the classifier-free dropout split.

    With text dropout only (the domain model's case) one uniform draw per sample decides ``u < cond_dropout``.
    With image or both dropout, one uniform ``u`` per sample picks one of four exclusive outcomes, as
    InstructPix2Pix trains for dual guidance: both dropped (``u < both``), text only (next ``cond_dropout``),
    image only (next ``image_dropout``), or neither. Nothing is drawn when all three are zero.
    """
    none = torch.zeros(batch, dtype=torch.bool)
    pt, pi, pb = config.cond_dropout, config.image_dropout, config.both_dropout
    if pi <= 0 and pb <= 0:
        if pt <= 0:
            return none, none
        return torch.rand(batch, generator=generator) < pt, none
    u = torch.rand(batch, generator=generator)
    both = u < pb
    text_only = (u >= pb) & (u < pb + pt)
    image_only = (u >= pb + pt) & (u < pb + pt + pi)
    return both | text_only, both | image_only


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor, parameterisation: str) -> torch.Tensor:
    """The noisy input at ``sigma``: (1 - s) x0 + s n for flow, x0 + s n for eps / v (sigma space)."""
    if parameterisation not in PARAMETERISATIONS:
        raise ValueError(f"unknown parameterisation '{parameterisation}'")
    return parameterisation_module.add_noise(x0, noise, sigma.to(x0), parameterisation)


def training_target(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor, parameterisation: str) -> torch.Tensor:
    """What the model predicts: n - x0 (flow), n (eps), (n - s x0) / sqrt(1 + s^2) (v)."""
    return parameterisation_module.target(x0, noise, sigma.to(x0), parameterisation)


def diffusion_loss(model_fn: Callable[..., torch.Tensor], x0: torch.Tensor, context: Any, sigma: torch.Tensor,
                   noise: torch.Tensor, parameterisation: str, **model_kwargs) -> torch.Tensor:
    """Mean squared error between ``model_fn(x_t, sigma, context, **model_kwargs)`` and the target of
    ``parameterisation`` (the denoising score-matching loss, i.e. the maximum-likelihood surrogate)."""
    x_t = add_noise(x0, noise, sigma, parameterisation)
    pred = model_fn(x_t, sigma, context, **model_kwargs)
    target = training_target(x0, noise, sigma, parameterisation)
    return torch.mean((pred.float() - target.float()) ** 2)


# ----------------------------------------------------------------------------------------------------
# optimizer state <-> named tensors


def optimizer_to_tensors(optimizer: torch.optim.Optimizer, names: list[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an Adam(W) state into ``optim/<param name>/<key>`` tensors plus JSON hyperparameters.

    ``names[i]`` is the name of the i-th parameter given to the optimizer (one group or several, in
    order). Non-tensor state entries go to the JSON part.
    """
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        name = names[idx]
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim/{name}/{key}"] = val
            else:
                scalars.setdefault(name, {})[key] = val
    groups = []
    for g in sd["param_groups"]:
        hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}
        hyper["param_names"] = [names[i] for i in g["params"]]
        groups.append(hyper)
    return tensors, {"type": type(optimizer).__name__, "param_groups": groups, "scalar_state": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, names: list[str], tensors: Mapping[str, torch.Tensor],
                           info: Mapping[str, Any], ignore=()) -> None:
    """Restore the per-parameter state written by :func:`optimizer_to_tensors` into ``optimizer``.

    The optimizer keeps its own hyperparameters (so a resumed run may change, e.g., the step count);
    state is matched by parameter name. State of the names in ``ignore`` (no longer trained) is dropped.
    """
    index = {n: i for i, n in enumerate(names)}
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        if not key.startswith("optim/"):
            continue
        name, _, sub = key[len("optim/"):].rpartition("/")
        if name in ignore:
            continue
        if name not in index:
            raise AdapterFileError(f"checkpoint has optimizer state for '{name}', which is not being trained")
        state.setdefault(index[name], {})[sub] = val.detach().clone()  # never share storage with the source
    for name, entries in (info.get("scalar_state") or {}).items():
        if name in index:
            state.setdefault(index[name], {}).update(entries)
    sd = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


# ----------------------------------------------------------------------------------------------------
# checkpoints


@dataclass
class Checkpoint:
    """Contents of a training checkpoint file."""

    step: int
    params: dict[str, torch.Tensor]
    optimizer_tensors: dict[str, torch.Tensor]
    rng_state: torch.Tensor
    losses: list[float]
    meta: dict[str, Any]


def load_checkpoint(path: str, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :class:`Trainer` (refuses other kinds of pack file)."""
    tensors, meta = load_tensors(path, device=device, expect_kind="checkpoint")
    params = {k[len("param/"):]: v for k, v in tensors.items() if k.startswith("param/")}
    optim = {k: v for k, v in tensors.items() if k.startswith("optim/")}
    losses = tensors["history/loss"].double().tolist() if "history/loss" in tensors else []
    return Checkpoint(int(meta["step"]), params, optim, tensors["rng/generator"].cpu(), losses, meta)


def load_checkpoint_params(target: nn.Module | Mapping[str, torch.Tensor], path: str) -> dict[str, Any]:
    """Copy the trained tensors of a checkpoint into ``target`` (module or name -> tensor mapping);
    returns the checkpoint metadata. Names must match exactly."""
    ck = load_checkpoint(path)
    named = dict(target.named_parameters()) if isinstance(target, nn.Module) else dict(target)
    missing = sorted(set(ck.params) - set(named))
    if missing:
        raise AdapterFileError(f"checkpoint tensors not found in the target: {missing[:5]}")
    with torch.inference_mode(False), torch.no_grad():
        for name, val in ck.params.items():
            named[name].copy_(val)
    return ck.meta


# ----------------------------------------------------------------------------------------------------
# the trainer


@dataclass
class TrainResult:
    losses: list[float]  # the whole history, including steps done before a resume
    steps_done: int
    stopped: bool = False  # True when should_stop ended the run early
    checkpoint_path: Optional[str] = None
    checkpoint_step: Optional[int] = None

    def summary(self, config: Optional[TrainConfig] = None, tail: int = 20) -> dict[str, Any]:
        """JSON summary for model files: steps, final loss (mean of the last ``tail`` steps), config."""
        recent = self.losses[-tail:]
        out: dict[str, Any] = {"steps": self.steps_done, "stopped_early": self.stopped,
                               "final_loss": (sum(recent) / len(recent)) if recent else None}
        if self.losses:
            out["first_loss"] = self.losses[0]
        if config is not None:
            out["train_config"] = config.to_dict()
            table = out["train_config"].pop("sigma_table", None)
            if table:  # the model's own 1000 levels: their range says enough in a model file
                out["train_config"]["sigma_levels"] = {"count": len(table), "min": min(table), "max": max(table)}
        return out


def _owner_and_leaf(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    owner_name, _, leaf = name.rpartition(".")
    return (module.get_submodule(owner_name) if owner_name else module), leaf


def replace_inference_tensors(module: nn.Module) -> None:
    """Swap parameters and buffers created under inference mode (ComfyUI runs prompts under it) for normal copies
    with the same values and ``requires_grad``, so backward can pass through them. Run it under
    ``torch.inference_mode(False)``."""
    for name, p in list(module.named_parameters()):
        if p.is_inference():
            owner, leaf = _owner_and_leaf(module, name)
            setattr(owner, leaf, nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))
    for name, b in list(module.named_buffers()):
        if b is not None and b.is_inference():
            owner, leaf = _owner_and_leaf(module, name)
            owner._buffers[leaf] = b.clone()


def _collect_params(params) -> tuple[list[str], list[torch.Tensor]]:
    if isinstance(params, nn.Module):
        replace_inference_tensors(params)
        items = [(n, p) for n, p in params.named_parameters() if p.requires_grad]
    elif isinstance(params, Mapping):
        items = list(params.items())
    else:
        items = list(params)
    if not items:
        raise ValueError("nothing to train: no parameter requires grad")
    for name, p in items:
        if p.is_inference():
            raise ValueError(
                f"parameter '{name}' was created under torch.inference_mode() and cannot be trained; pass the "
                "module itself (its parameters are then copied), or create the tensors outside inference mode")
        if not p.requires_grad:
            raise ValueError(f"parameter '{name}' does not require grad")
    return [n for n, _ in items], [p for _, p in items]


def _autocast(device, training_dtype: str):
    """Autocast of the forward in ``training_dtype`` (a no-op context for fp32)."""
    import contextlib

    dtype = TRAINING_DTYPES[training_dtype]
    if dtype is None:
        return contextlib.nullcontext()
    kind = torch.device(device).type
    if kind == "cpu" and dtype == torch.float16:
        raise ValueError("training_dtype fp16 needs a GPU; on the CPU use bf16 or fp32")
    return torch.autocast(device_type=kind, dtype=dtype)


def _local_backward(loss_fn, last: bool):
    """DDP's ``no_sync`` for every micro-batch but the last (their gradients accumulate locally); a no-op context
    for the last one and without DDP."""
    import contextlib

    return loss_fn.no_sync() if not last and hasattr(loss_fn, "no_sync") else contextlib.nullcontext()


def _as_batch(batch) -> dict[str, Any]:
    if torch.is_tensor(batch):
        batch = {"x0": batch}
    if "x0" not in batch:
        raise ValueError("the batch provider must return a tensor or a dict with an 'x0' entry")
    return batch


def _clone_batch(batch, device) -> dict[str, Any]:
    batch = _as_batch(batch)
    out = {}
    for k, v in batch.items():
        # clone: tensors made under inference mode cannot enter autograd; it also detaches from the source
        out[k] = v.detach().clone().to(device) if torch.is_tensor(v) else v
    return out


class DataParallel:
    """Data-parallel training over the default ``torch.distributed`` process group (see the module docstring).

    The process group must already be set up (``accelerate.Accelerator()`` does it for processes started by
    ``accelerate launch`` or ``torchrun``). ``device`` is where the collectives run: the training device
    (for NCCL a CUDA device, for gloo the CPU).
    """

    def __init__(self, device: str | torch.device = "cpu"):
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("DataParallel needs an initialised torch.distributed process group")
        self._dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = torch.device(device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, total: int) -> slice:
        """This process's contiguous part of a global batch of ``total`` samples."""
        if total % self.world_size:
            raise ValueError(f"a batch of {total} samples cannot be split evenly over {self.world_size} processes")
        n = total // self.world_size
        return slice(self.rank * n, (self.rank + 1) * n)

    def barrier(self) -> None:
        if self.device.type == "cuda" and self.device.index is not None:
            self._dist.barrier(device_ids=[self.device.index])
        else:
            self._dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a (detached) tensor over all processes."""
        out = value.detach().to(self.device, copy=True)
        self._dist.all_reduce(out)
        return out / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is True on at least one."""
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        self._dist.all_reduce(t, op=self._dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under ``DistributedDataParallel``: its trainable parameters start from the main process's
        values, and backward averages their gradients over the processes. A parameter no process used keeps no
        gradient (as in a one-process run); one used elsewhere only takes part with zeros."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" and self.device.index is not None else None
        # find_unused_parameters: which parameters a step uses depends on its draws (dropped conditions)
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False, find_unused_parameters=True)


class StepLoss(nn.Module):
    """The loss of one (micro-)batch as a module that owns the trained parameters (``params``, a submodule), so
    that :meth:`DataParallel.wrap` can put it under DDP: the frozen rest of the model (reached through
    ``model_fn``) is no part of it and is never broadcast or synchronised."""

    def __init__(self, params: Optional[nn.Module], model_fn: Callable[..., torch.Tensor], parameterisation: str):
        super().__init__()
        self.params = params
        self._model_fn = (model_fn,)  # not registered: model_fn may be a module holding the frozen weights
        self.parameterisation = parameterisation

    def forward(self, x0, context, sigma, noise, **model_kwargs):
        return diffusion_loss(self._model_fn[0], x0, context, sigma, noise, self.parameterisation, **model_kwargs)


class Trainer:
    """Generic diffusion trainer (see the module docstring)."""

    def __init__(self, config: TrainConfig):
        self.config = config

    def _lr(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based): linear warm-up over ``warmup_steps``, then constant or,
        with ``lr_schedule="cosine"``, a half cosine from ``lr`` to 0 over the remaining steps."""
        c = self.config
        if c.warmup_steps > 0 and step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        if c.lr_schedule == "cosine":
            import math

            progress = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
            return c.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return c.lr

    def _save(self, path, names, tensors_list, optimizer, generator, losses, step, parameterisation, extra_meta):
        tensors = {f"param/{n}": p.detach() for n, p in zip(names, tensors_list)}
        opt_tensors, opt_info = optimizer_to_tensors(optimizer, names)
        tensors.update(opt_tensors)
        tensors["rng/generator"] = generator.get_state()
        tensors["history/loss"] = torch.tensor(losses, dtype=torch.float64)
        meta = dict(extra_meta or {})
        meta.update({"kind": "checkpoint", "step": step, "train_config": self.config.to_dict(),
                     "parameterisation": parameterisation, "param_names": names, "optimizer": opt_info})
        save_tensors(path, tensors, meta)

    def run(self, params: nn.Module | Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
            model_fn: Callable[..., torch.Tensor], batch_fn: Callable[[int, torch.Generator, int], Any],
            parameterisation: str, checkpoint_path: Optional[str] = None, resume_from: Optional[str] = None,
            on_step: Optional[Callable[[int, float], None]] = None,
            should_stop: Optional[Callable[[], bool]] = None,
            checkpoint_meta: Optional[dict[str, Any]] = None,
            distributed: Optional[DataParallel] = None) -> TrainResult:
        """Train until ``config.steps`` steps are done (counting steps of a resumed checkpoint).

        ``on_step(step, loss)`` is called after every step (``step`` counts completed steps from 1);
        ``should_stop()`` is polled after every step: when it returns True a checkpoint is written (if
        ``checkpoint_path`` is set) and the run returns with ``stopped=True``. Checkpoints are also written
        every ``checkpoint_every`` steps and at the end. ``resume_from`` restores parameters, optimizer
        state, generator state and loss history from a checkpoint.

        ``distributed`` (a :class:`DataParallel`) makes this process one of several data-parallel
        processes: ``config.batch_size`` is the global batch size (it must be divisible by the number of
        processes), only the main process writes the checkpoint (the others wait for it), ``on_step``
        receives the global-batch loss, and the run stops when ``should_stop()`` is True on any process.
        """
        if parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"unknown parameterisation '{parameterisation}'")
        cfg = self.config
        dp = distributed
        if dp is not None and cfg.batch_size % dp.world_size:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {dp.world_size} processes")
        if dp is not None and not isinstance(params, nn.Module):
            raise ValueError("data-parallel training needs the trained parameters as an nn.Module")
        with torch.inference_mode(False), torch.enable_grad():
            names, tensors = _collect_params(params)
            device = tensors[0].device
            optimizer = torch.optim.AdamW(tensors, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps,
                                          weight_decay=cfg.weight_decay)
            generator = torch.Generator().manual_seed(int(cfg.seed))
            losses: list[float] = []
            step = 0
            if resume_from is not None:
                ck = load_checkpoint(resume_from)
                # a checkpoint may also hold parameters this module keeps but no longer trains (an earlier version
                # trained a part that an ablation switch leaves unused): their values are restored, not trained
                frozen = ({n: p for n, p in params.named_parameters() if not p.requires_grad}
                          if isinstance(params, nn.Module) else {})
                extra = set(ck.params) - set(names)
                if set(names) - set(ck.params) or extra - set(frozen):
                    differ = sorted((set(ck.params) ^ set(names)) - (extra & set(frozen)))
                    raise AdapterFileError(
                        "the checkpoint was written for other parameters: "
                        f"{len(differ)} names differ (e.g. {differ[:3]})")
                if ck.meta.get("parameterisation") not in (None, parameterisation):
                    raise AdapterFileError(
                        f"the checkpoint was trained with '{ck.meta.get('parameterisation')}' parameterisation, "
                        f"not '{parameterisation}'")
                with torch.no_grad():
                    for n, p in zip(names, tensors):
                        if ck.params[n].shape != p.shape:
                            raise AdapterFileError(f"'{n}' has shape {tuple(ck.params[n].shape)} in the checkpoint "
                                                   f"but {tuple(p.shape)} here")
                        p.copy_(ck.params[n])
                    for n in extra:
                        frozen[n].copy_(ck.params[n])
                optimizer_from_tensors(optimizer, names, ck.optimizer_tensors, ck.meta.get("optimizer", {}),
                                       ignore=extra)
                generator.set_state(ck.rng_state)
                losses = list(ck.losses)
                step = ck.step
            loss_fn = StepLoss(params if isinstance(params, nn.Module) else None, model_fn, parameterisation)
            if dp is not None:
                loss_fn = dp.wrap(loss_fn)  # every process starts from the main process's weights
            drop_flags = bool(getattr(model_fn, "accepts_drop_flags", False))

            # fp16 gradients can underflow: they are scaled up for backward and down before the step
            scaler = torch.amp.GradScaler(device.type) if cfg.training_dtype == "fp16" else None
            result = TrainResult(losses=losses, steps_done=step)
            saved_at = step if resume_from is not None else None

            def save(at: int):
                nonlocal saved_at
                if checkpoint_path is not None and saved_at != at:
                    if dp is None or dp.is_main:
                        self._save(checkpoint_path, names, tensors, optimizer, generator, losses, at,
                                   parameterisation, checkpoint_meta)
                    if dp is not None:
                        dp.barrier()  # the file is complete before any process goes on (or exits)
                    saved_at = at
                    result.checkpoint_path, result.checkpoint_step = checkpoint_path, at

            while step < cfg.steps:
                loss = self._one_step(step, loss_fn, drop_flags, batch_fn, tensors, optimizer, generator, device, dp,
                                      scaler)
                step += 1
                losses.append(loss)
                result.steps_done = step
                if on_step is not None:
                    on_step(step, loss)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    save(step)
                if should_stop is not None and step < cfg.steps and self._stop(should_stop, dp):
                    save(step)
                    result.stopped = True
                    return result
            save(step)
            return result

    @staticmethod
    def _stop(should_stop, dp) -> bool:
        stop = bool(should_stop())
        return dp.any(stop) if dp is not None else stop

    def _one_step(self, step, loss_fn, drop_flags, batch_fn, tensors, optimizer, generator, device, dp=None,
                  scaler=None) -> float:
        cfg = self.config
        batch = _as_batch(batch_fn(step, generator, cfg.batch_size))
        # All random draws are made for the global batch (in the same order as without processes), then
        # each process keeps its share: N processes see exactly what one process would see.
        shape = tuple(batch["x0"].shape)
        b = shape[0]
        part = slice(None) if dp is None else dp.share(b)

        def mine(t):
            return t[part] if dp is not None and torch.is_tensor(t) and t.ndim and t.shape[0] == b else t

        batch = _clone_batch({k: mine(v) for k, v in batch.items()}, device)
        x0 = batch.pop("x0")
        context = batch.pop("context", None)
        mask = batch.pop("context_mask", None)
        sigma = mine(sample_sigmas(cfg, b, generator)).to(device)
        noise = mine(torch.randn(shape, generator=generator, dtype=torch.float32)).to(device=device, dtype=x0.dtype)
        drop_text, drop_image = condition_dropout(cfg, b, generator)
        drop_text, drop_image = mine(drop_text).to(device), mine(drop_image).to(device)
        if cfg.cond_dropout > 0 or cfg.both_dropout > 0:
            if torch.is_tensor(context) and context.ndim >= 2:
                if mask is None:
                    mask = torch.ones(context.shape[:2], dtype=torch.bool, device=device)
                mask = mask.to(torch.bool) & ~drop_text[:, None]
        kwargs = dict(batch)
        if mask is not None:
            kwargs["context_mask"] = mask
        if drop_flags:
            kwargs.update(drop_text=drop_text, drop_image=drop_image)
        for g in optimizer.param_groups:
            g["lr"] = self._lr(step)
        optimizer.zero_grad(set_to_none=True)
        # micro-batches: this process's share in grad_accumulation equal parts, each loss weighted by its part, so
        # the summed gradient is the gradient of the share's mean loss
        n = x0.shape[0]
        parts = cfg.grad_accumulation
        if n % parts:
            raise ValueError(f"this step's batch of {n} does not split into grad_accumulation={parts} micro-batches")
        size = n // parts
        total = torch.zeros((), device=device)
        for i in range(parts):
            cut = slice(i * size, (i + 1) * size)

            def micro(t, cut=cut):
                return t[cut] if torch.is_tensor(t) and t.ndim and t.shape[0] == n else t

            # under DDP the gradients are exchanged once, in the backward of the last micro-batch
            with _local_backward(loss_fn, last=i == parts - 1):
                with _autocast(device, cfg.training_dtype):
                    loss = loss_fn(x0[cut], micro(context), sigma[cut], noise[cut],
                                   **{k: micro(v) for k, v in kwargs.items()})
                scaled = loss.float() / parts
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            total = total + loss.detach().float() / parts
        # the loss of the whole batch: the shares are equal, so it is the mean of the processes' losses
        value = total if dp is None else dp.mean(total)
        if not torch.isfinite(value):
            raise FloatingPointError(f"training loss became {value.item()} at step {step + 1}")
        if scaler is not None:
            scaler.unscale_(optimizer)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(tensors, cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)  # skips a step whose gradients overflowed in fp16
            scaler.update()
        else:
            optimizer.step()
        return float(value.item())
