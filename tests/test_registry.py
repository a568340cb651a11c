"""The adapter-kind registry: built-in kinds, building from a model's block table, file round trip."""

import pytest
import torch

from adapters import registry
from adapters.files import read_metadata


def test_simda_is_registered():
    assert "simda" in registry.kinds()
    entry = registry.get("simda")
    assert callable(entry.build) and callable(entry.load)


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(KeyError, match="simda"):
        registry.get("no_such_kind")


def test_duplicate_registration_refused():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("simda"))


def test_build_save_load_round_trip(tmp_path):
    blocks = {"input_blocks.1.1.transformer_blocks.0": 32, "middle_block.1.transformer_blocks.0": 64}
    entry = registry.get("simda")
    adapters = entry.build(blocks, {"shift_mode": "previous_frame"}, "sd15")
    assert adapters.block_names() == list(blocks)
    assert adapters.config.shift_mode == "previous_frame"
    assert all(float(p.detach().abs().sum()) == 0 for n, p in adapters.named_parameters() if ".up." in n)
    with torch.no_grad():
        for p in adapters.parameters():
            p.add_(0.1)
    path = str(tmp_path / "a.safetensors")
    adapters.save(path, extra={"training": {"steps": 3}})
    meta = read_metadata(path)
    assert meta["kind"] == "simda" and meta["family"] == "sd15" and meta["training"]["steps"] == 3
    loaded = entry.load(path)
    for (n1, p1), (n2, p2) in zip(adapters.named_parameters(), loaded.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_injector_is_set_by_the_host_binding():
    entry = registry.get("simda")
    old = entry.inject
    try:
        registry.set_injector("simda", lambda *a, **k: "injected")
        assert registry.get("simda").inject() == "injected"
    finally:
        entry.inject = old
