"""The benchmarks' shipped weight files: safetensors in fp16, each with the command that made it and nothing of the
machine it was made on in its metadata."""

import json
import os
import re

import pytest
from safetensors import safe_open

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "benchmarks", "weights")
FILES = sorted(f for f in os.listdir(WEIGHTS) if f.endswith(".safetensors")) if os.path.isdir(WEIGHTS) else []


@pytest.mark.parametrize("name", FILES)
def test_shipped_base_is_fp16_and_says_how_it_was_made(name):
    with safe_open(os.path.join(WEIGHTS, name), "pt") as f:
        meta = f.metadata() or {}
        dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys() if k.startswith("dit/")}
    assert meta.get("kind") == "tvp_base"
    assert meta["command"].startswith("python benchmarks/") and " OUT" in meta["command"]
    assert dtypes == {"F16"}
    gates = json.loads(meta["gates"])
    assert gates["step"] == int(meta["steps"]) and 0.0 <= gates["objects_found"] <= 1.0
    for key, value in meta.items():  # no absolute path of the machine that made it
        assert not re.search(r'(^|[\s"=:])(/|[A-Za-z]:\\)[A-Za-z]', value), f"{name}: a machine path in {key}"
    if float(meta.get("first_frame_share", 0)) > 0:
        assert "--first-frame-share" in meta["command"]


def test_there_are_shipped_bases():
    assert "tvp_wan_base.safetensors" in FILES and "tvp_wan_first_frame_base.safetensors" in FILES
