"""The text-video prediction miniature's shipped weight files (``adapters/weights/tvp_*``, the adapters in
``adapters/weights/video_adapters``): safetensors in fp16, each with the command that made it and nothing of the
machine it was made on in its metadata. Frozen bases carry the miniature's own metadata (kind ``tvp_base``);
trained adapters are pack files, the command under ``training``."""

import json
import os
import re

import pytest
from safetensors import safe_open

from adapters.files import METADATA_KEY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "adapters", "weights")
FILES = sorted(os.path.relpath(os.path.join(d, f), WEIGHTS) for d, _, names in os.walk(WEIGHTS) for f in names
               if f.startswith("tvp_") and f.endswith(".safetensors"))
MACHINE_PATH = re.compile(r'(^|[\s"=:])(/|[A-Za-z]:\\)[A-Za-z]')


def _read(name):
    with safe_open(os.path.join(WEIGHTS, name), "pt") as f:
        return f.metadata() or {}, {k: str(f.get_slice(k).get_dtype()) for k in f.keys()}


@pytest.mark.parametrize("name", FILES)
def test_shipped_file_is_fp16_and_says_how_it_was_made(name):
    meta, dtypes = _read(name)
    if METADATA_KEY in meta:  # trained adapters, a pack file
        pack = json.loads(meta[METADATA_KEY])
        training = pack["training"]
        command = training["command"]
        assert set(dtypes.values()) == {"F16"}
        assert training["curve"][-1]["step"] == training["steps"]
        text = meta[METADATA_KEY]
        # its base is named by its place in this repository, and exists
        base = re.search(r"--base (\S+)", command)
        assert base and os.path.isfile(os.path.join(ROOT, base.group(1))), command
        assert training["base"] == os.path.basename(base.group(1))
    else:
        assert meta.get("kind") == "tvp_base"
        command = meta["command"]
        prefix = {"WAN21_T2V": "dit/", "SVD_img2vid": "unet/"}[meta["architecture"]]
        assert {d for k, d in dtypes.items() if k.startswith(prefix)} == {"F16"}
        gates = json.loads(meta["gates"])
        assert gates["step"] == int(meta["steps"]) and 0.0 <= gates["objects_found"] <= 1.0
        if float(meta.get("first_frame_share", 0)) > 0:
            assert "--first-frame-share" in command
        if meta.get("sampling", "edm") != "edm":
            assert re.search(rf"--sampling[ =]{meta['sampling']}(\s|$)", command), command
        if meta.get("first_frame", "0") == "1":
            assert re.search(r"--first-frame(\s|$)", command), command
        if int(meta.get("text_code", 1)) != 1:
            assert f"--text-code {meta['text_code']}" in command
        text = " ".join(meta.values())
    assert command.startswith("python benchmarks/") and " OUT" in command
    for value in re.split(r'[\s",]+', text):  # no absolute path of the machine that made it
        assert not MACHINE_PATH.search(value), f"{name}: a machine path {value!r}"


def test_there_are_shipped_bases():
    for name in ("tvp_wan_base", "tvp_wan_first_frame_base", "tvp_wan_turns_base", "tvp_svd_base"):
        assert f"{name}.safetensors" in FILES
