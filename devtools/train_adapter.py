"""Train adapters of any kind (simda, aid, fca ...) from the command line, on one GPU or several:

    python -m devtools.train_adapter --config adapter_config.json                               # one process
    accelerate launch --num_processes 4 -m devtools.train_adapter --config adapter_config.json  # 4 GPUs
    torchrun --nproc_per_node 4 -m devtools.train_adapter --config adapter_config.json          # the same

Run it from the pack's folder with the Python that runs ComfyUI. It starts ComfyUI in the process (no server),
loads the frozen base with ComfyUI's own loaders, reads the data the Save Adapter Training Data node wrote (the
clips and conditioning Train Adapters takes) and trains with Train Adapters' own code, writing the same files
to models/video_adapters: ``<file_name>.safetensors`` (for Load Adapters) and its checkpoint.

Config (JSON, written by Save Adapter Training Data; relative paths are relative to the config file):

* ``base_model``: ``"diffusion_models/<file>"`` (loaded as Load Diffusion Model loads it, with ``weight_dtype``:
  ``default``, ``fp8_e4m3fn`` ...) or ``"checkpoints/<file>"`` (the model part of a checkpoint, e.g. SVD);
* ``data``: the ``training_data.safetensors`` the node wrote;
* every input of Train Adapters by its name, defaulting to the node's default: ``kind``, ``settings`` (a JSON
  object, or the node's text), ``frames``, ``steps``, ``learning_rate``, ``batch_size``, ``seed``,
  ``latent_shift``, ``checkpoint_every``, ``file_name``, ``resume_from``, ``text_dropout``,
  ``image_dropout``, ``both_dropout``, ``gradient_checkpointing``, ``training_dtype``, ``grad_accumulation``;
* ``comfyui``: ComfyUI's folder (default: ``COMFYUI_PATH``, or the ComfyUI whose custom_nodes holds the pack);
* ``model_folders``: optional ``{"diffusion_models": folder, "video_adapters": folder, ...}``, searched before
  ComfyUI's own folders; the adapters are written to the ``video_adapters`` one;
* ``device``: ``auto`` (default), ``cpu`` or ``cuda``.

Several processes (``accelerate launch`` / ``torchrun``, one per GPU; on the CPU with the gloo backend):
``batch_size`` is the global batch and must be divisible by the number of processes (and each process's share
by ``grad_accumulation``). Every process draws the same global batch, noise and dropout from the seeded
generator and trains its contiguous share; PyTorch's DistributedDataParallel averages the gradients during
backward. N processes give the losses and weights of a one-process run of the same config, up to float
rounding. Only the main process logs and writes files; Ctrl-C stops all of them after the current step, with
the checkpoint written (continue with ``resume_from``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from adapters.train_cli import ConfigError, read_json_config
from devtools.headless import NO_HOST_HELP, Host, find_comfyui, widget_default

CLI_KEYS = ("base_model", "weight_dtype", "data", "comfyui", "model_folders", "device")
DATA_INPUTS = ("model", "clips", "positive", "negative")  # Train Adapters' inputs the data and base give
DROPOUTS = ("text_dropout", "image_dropout", "both_dropout")
BASE_FOLDERS = ("diffusion_models", "checkpoints")


def read_config(path: str) -> dict:
    """The config file with its paths made absolute (relative to the config's folder)."""
    cfg = read_json_config(path)
    base = os.path.dirname(os.path.abspath(path))

    def absolute(p):
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))

    for key in ("data", "comfyui"):
        if key in cfg:
            cfg[key] = absolute(cfg[key])
    cfg["model_folders"] = {k: absolute(v) for k, v in (cfg.get("model_folders") or {}).items()}
    return cfg


def node_inputs(cfg: dict, node_info) -> dict:
    """Train Adapters' inputs (all but the model and the data): the config's values over the node's defaults."""
    info = node_info("VA_TrainAdapter")["input"]
    specs = {n: s for group in ("required", "optional") for n, s in info.get(group, {}).items()
             if n not in DATA_INPUTS}
    unknown = sorted(set(cfg) - set(specs) - set(CLI_KEYS))
    if {"checkpoint", "clips", "prompt"} <= set(cfg):
        raise ConfigError("this config is in the earlier format of this runner (checkpoint, clips, prompt), which "
                          "it no longer reads: run Save Adapter Training Data on the same model, clips and prompt, "
                          "and train with the adapter_config.json it writes (docs/training.md)")
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}; known: {sorted(set(specs) | set(CLI_KEYS))}")
    missing = [k for k in ("base_model", "data") if not cfg.get(k)]
    if missing:
        raise ConfigError(f"the config needs {', '.join(missing)} (Save Adapter Training Data writes both)")
    inputs = {name: cfg.get(name, widget_default(spec)) for name, spec in specs.items()}
    if isinstance(inputs["settings"], dict):
        inputs["settings"] = json.dumps(inputs["settings"])
    inputs["option_defaults"] = {"latent_shift": widget_default(specs["latent_shift"])}
    return inputs


def load_base(host: Host, base_model: str, weight_dtype: str = "default"):
    """The frozen MODEL through ComfyUI's own loaders."""
    import folder_paths

    folder, _, name = base_model.partition("/")
    if folder not in BASE_FOLDERS or not name:
        raise ConfigError(f"base_model '{base_model}': give diffusion_models/<file> or checkpoints/<file>")
    if folder == "diffusion_models":
        choices = host.nodes.UNETLoader.INPUT_TYPES()["required"]["weight_dtype"][0]
        if weight_dtype not in choices:
            raise ConfigError(f"weight_dtype '{weight_dtype}' is not one of {choices}")
        return host.nodes.UNETLoader().load_unet(name, weight_dtype)[0]
    if weight_dtype != "default":
        raise ConfigError("weight_dtype applies to diffusion_models; a checkpoint loads in its own precision")
    import comfy.sd

    path = folder_paths.get_full_path_or_raise("checkpoints", name)
    return comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=False)[0]


def train(host: Host, cfg: dict, distributed=None, log=print):
    """Train as configured in ``host``: ``(saved file name, losses, summary text)``. ``distributed`` (an
    ``adapters.training.DataParallel``) makes this process one of several."""
    inputs = node_inputs(cfg, host.node_info)
    training = host.pack_module("nodes.binding.training")
    clips, positive, negative, _ = host.pack_module("nodes.binding.training_data").load_training_data(cfg["data"])
    model = load_base(host, cfg["base_model"], cfg.get("weight_dtype", "default"))
    main = distributed is None or distributed.is_main
    steps = int(inputs["steps"])
    every = max(steps // 20, 1)

    def report(step, loss):
        if main and (step % every == 0 or step == steps):
            log(f"step {step}/{steps}  loss {loss:.4f}")

    _, rel, losses, text = training.train_adapters(
        model, clips, positive, inputs["kind"], inputs["frames"], steps, inputs["learning_rate"],
        inputs["batch_size"], inputs["seed"], inputs["checkpoint_every"], inputs["file_name"], inputs["resume_from"],
        dropouts={k: inputs[k] for k in DROPOUTS}, settings=inputs["settings"], negative=negative,
        options={"latent_shift": inputs["latent_shift"]}, option_defaults=inputs["option_defaults"],
        gradient_checkpointing=bool(inputs["gradient_checkpointing"]), training_dtype=inputs["training_dtype"],
        grad_accumulation=int(inputs["grad_accumulation"]), distributed=distributed, report=report)
    return rel, losses, text


def _on_cpu(device: str) -> bool:
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device '{device}': use auto, cpu or cuda")
    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.train_adapter", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="JSON config (Save Adapter Training Data writes one)")
    ap.add_argument("--steps", type=int, help="override steps")
    args = ap.parse_args(argv)
    acc = None
    try:
        cfg = read_config(args.config)
        if args.steps is not None:
            cfg["steps"] = args.steps
        if cfg.get("comfyui"):
            os.environ["COMFYUI_PATH"] = cfg["comfyui"]
        root = find_comfyui()
        if root is None:
            print(NO_HOST_HELP, file=sys.stderr)
            return 2
        device = cfg.get("device", "auto")
        cpu = _on_cpu(device)
        if not cpu and "LOCAL_RANK" in os.environ:  # one GPU per process: ComfyUI takes the current device
            import torch

            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        host = Host(root, model_dirs=cfg["model_folders"], cpu=cpu)
        inputs = node_inputs(cfg, host.node_info)
        _, dp, acc = host.pack_module("adapters.train_cli").start_processes("cpu" if cpu else "cuda",
                                                                            int(inputs["batch_size"]))
        parts = int(inputs["grad_accumulation"])
        share = int(inputs["batch_size"]) // (1 if dp is None else dp.world_size)
        if share % parts:
            raise ConfigError(f"grad_accumulation {parts} does not divide each process's share of the batch "
                              f"({share} samples)")
    except (ConfigError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        if acc is not None:  # the process group is up: close it, as the other exits do
            acc.end_training()
        return 2
    import comfy.model_management

    # Ctrl-C asks the trainer to stop as the UI's Cancel does: it writes the checkpoint, then stops
    signal.signal(signal.SIGINT, lambda *_: host.nodes.interrupt_processing(True))
    try:
        rel, _, text = train(host, cfg, dp)
    except comfy.model_management.InterruptProcessingException:
        if dp is None or dp.is_main:
            print("stopped; the checkpoint is in models/video_adapters (continue with \"resume_from\")",
                  file=sys.stderr)
        return 130
    except ValueError as e:  # the pack's VideoAdapterError and ConfigError: a message that names the input
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if acc is not None:
            acc.end_training()
    if dp is None or dp.is_main:
        print(text)
        print(rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
