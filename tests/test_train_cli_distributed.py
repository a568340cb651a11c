"""Data-parallel command-line training: two CPU processes must follow the one-process run of the same config.

The two-process runs are real launches (``accelerate launch`` and ``torchrun``, gloo backend on the CPU);
the reference is an ordinary one-process run of the same config in this process.
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from adapters.train_cli import ConfigError, check_batch_split, parse_config, run
from adapters.training import load_checkpoint
from devtools.launch import launch

pytest.importorskip("accelerate", reason="HF accelerate is not installed (multi-process training needs it)")

STEPS = 6


def _raw(output, cache):
    # batch 4 over 2 processes; dropout 0.5 so that caption dropout happens in the split batches
    return {"family": "wan21", "size": "tiny", "model": {"width": 64, "heads": 1, "depth": 1},
            "data": {"synthetic": {"count": 4, "frames": 2, "size": 16}}, "cache_dir": cache,
            "train": {"steps": STEPS, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 2, "cond_dropout": 0.5},
            "output": output, "device": "cpu"}


def _launch(launcher, config, tmp_path, steps=None):
    args = ["adapters.train_cli", "--config", str(config)] + ([] if steps is None else ["--steps", str(steps)])
    proc = launch(launcher, args, env={"HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_two_processes_follow_the_one_process_run(tmp_path):
    # reference: one process, the whole run
    one = parse_config(_raw("one/model", "cache_one"), str(tmp_path))
    run(one, log=lambda *a: None)
    ref = load_checkpoint(one.checkpoint)
    assert ref.step == STEPS and len(ref.losses) == STEPS

    # two processes: the first half with accelerate launch, then resumed to the end with torchrun
    two_path = tmp_path / "two.json"
    two_path.write_text(json.dumps(_raw("two/model", "cache_two")))
    two = parse_config(_raw("two/model", "cache_two"), str(tmp_path))
    out = _launch("accelerate", two_path, tmp_path, steps=STEPS // 2)
    assert "2 processes" in out and out.count(f"step {STEPS // 2}/{STEPS // 2}") == 1  # logged once
    half = load_checkpoint(two.checkpoint)
    assert half.step == STEPS // 2
    out = _launch("torchrun", two_path, tmp_path)
    assert "resuming" in out and out.count(f"step {STEPS}/{STEPS}") == 1
    full = load_checkpoint(two.checkpoint)
    assert full.step == STEPS

    # the per-step losses (means over the global batch) and the weights match the one-process run
    ref_losses = torch.tensor(ref.losses, dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(half.losses, dtype=torch.float64), ref_losses[: STEPS // 2],
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.tensor(full.losses, dtype=torch.float64), ref_losses, rtol=1e-4, atol=1e-6)
    a, b = load_file(one.output), load_file(two.output)
    assert sorted(a) == sorted(b)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    for k, v in ref.params.items():
        torch.testing.assert_close(full.params[k], v, rtol=1e-4, atol=1e-5)
    # AdamW state too, so that a resumed run goes on identically
    for k, v in ref.optimizer_tensors.items():
        torch.testing.assert_close(full.optimizer_tensors[k], v, rtol=1e-3, atol=1e-9)
    # the tolerance is far below what training moves: the last three steps change weights by much more
    assert max((full.params[k] - half.params[k]).abs().max().item() for k in full.params) > 1e-3


def test_batch_size_must_split_evenly(tmp_path, monkeypatch):
    check_batch_split(4, 2)
    with pytest.raises(ConfigError, match=r"batch_size 3 .* number of processes \(2\)"):
        check_batch_split(3, 2)
    # the launched processes refuse such a config before they start training
    monkeypatch.setenv("WORLD_SIZE", "2")
    raw = _raw("odd/model", "cache_odd")
    raw["train"]["batch_size"] = 3
    with pytest.raises(ConfigError, match="batch_size 3"):
        run(parse_config(raw, str(tmp_path)), log=lambda *a: None)
