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


def test_simda_declares_its_hook_points():
    entry = registry.get("simda")
    adapters = entry.build({"blocks.0": 32}, {"shift_mode": "simda"}, "wan21")
    plan = adapters.attachments("wan")
    assert [(b, p) for b, p, _ in plan] == [("blocks.0", "self_attn_out"), ("blocks.0", "ffn_parallel"),
                                            ("blocks.0", "temporal")]
    unet = [(b, p) for b, p, _ in adapters.attachments("unet")]
    assert unet[-1] == (None, "self_attn_kv")
    assert [(b, p) for b, p, _ in adapters.attachments("unet", {"latent_shift": "none"})] == unet[:-1]
