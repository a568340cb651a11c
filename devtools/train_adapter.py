"""Train adapters (SimDA and later kinds) from the command line with the very node the UI uses.

    python -m devtools.train_adapter --config my_adapter.json     # from the pack's folder

The config is JSON:

    {
      "checkpoint": "v1-5-pruned-emaonly-fp16.safetensors",   # in models/checkpoints (model + text encoder)
      "clips": "my_clip.latent",      # in ComfyUI/input: a LATENT saved by Save Latent (the model's VAE)
      "prompt": "a corgi running on a beach",
      "kind": "simda", "steps": 300, "learning_rate": 5e-5, "batch_size": 1, "seed": 0,
      "frames": 0, "latent_shift": "simda", "checkpoint_every": 100,
      "file_name": "simda/my_clip", "resume_from": "none"
    }

The base model needs ComfyUI to load, so this runs a three-node graph (checkpoint loader, text encoder,
Load Latent, Train Adapters) in-process with ComfyUI; progress, checkpoints and Ctrl-C (a checkpoint is
written, then it stops) behave as in the UI. Run it with the Python that runs ComfyUI.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from devtools.headless import NO_HOST_HELP, Host, find_comfyui  # noqa: E402

TRAIN_KEYS = ("kind", "frames", "steps", "learning_rate", "batch_size", "seed", "latent_shift",
              "checkpoint_every", "file_name", "resume_from")


def build_prompt(cfg: dict, node_info) -> dict:
    """The API prompt for ``cfg``; every Train Adapters input not in the config keeps its default."""
    missing = [k for k in ("checkpoint", "clips", "prompt") if k not in cfg]
    if missing:
        raise ValueError(f"the config needs {', '.join(missing)}")
    unknown = set(cfg) - {"checkpoint", "clips", "prompt", *TRAIN_KEYS}
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
    info = node_info("VA_TrainAdapter")["input"]
    train = {}
    for group in ("required", "optional"):
        for name, spec in info.get(group, {}).items():
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if name in cfg:
                train[name] = cfg[name]
            elif "default" in opts:
                train[name] = opts["default"]
    train.update(model=["1", 0], clips=["3", 0], positive=["2", 0])
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": cfg["checkpoint"]}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": cfg["prompt"], "clip": ["1", 1]}},
        "3": {"class_type": "LoadLatent", "inputs": {"latent": cfg["clips"]}},
        "4": {"class_type": "VA_TrainAdapter", "inputs": train},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="JSON config (see above)")
    args = ap.parse_args(argv)
    with open(args.config) as f:
        cfg = json.load(f)
    root = find_comfyui()
    if root is None:
        print(NO_HOST_HELP, file=sys.stderr)
        return 2
    host = Host(root, cpu=False)
    prompt = build_prompt(cfg, host.node_info)
    # Ctrl-C asks the trainer to stop the way the UI's Cancel does: it writes a checkpoint, then stops.
    signal.signal(signal.SIGINT, lambda *_: host.nodes.interrupt_processing(True))
    try:
        out = host.run(prompt, ["4"])
    except InterruptedError:
        print("stopped; the last checkpoint is in models/video_adapters (resume with \"resume_from\")",
              file=sys.stderr)
        return 130
    model, file_name, _curve, summary = out["4"]
    print(summary)
    print(file_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
