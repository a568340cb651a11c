import json
import os

import pytest
import torch
from safetensors.torch import save_file

from adapters.domain_model import load_domain_model
from adapters.train_cli import ConfigError, load_config, load_data, main, parse_config, run, synthetic_cache
from adapters.training import load_checkpoint

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "adapters",
                       "train_config.example.json")


def tiny_raw(**over):
    raw = {"family": "wan21", "size": "tiny", "model": {"width": 64, "heads": 1, "depth": 1},
           "data": {"synthetic": {"count": 4, "frames": 2, "size": 16}},
           "train": {"steps": 4, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 2},
           "output": "out/model", "device": "cpu"}
    raw.update(over)
    return raw


def test_example_config_parses():
    cfg = load_config(EXAMPLE)
    base = os.path.dirname(EXAMPLE)
    assert cfg.family == "wan21" and cfg.size == "tiny"
    assert cfg.output == os.path.join(base, "out", "example_domain_model.safetensors")
    assert cfg.checkpoint.endswith("example_domain_model_checkpoint.safetensors")
    assert cfg.cache_dir == os.path.join(base, "cache")
    assert cfg.train.steps == 200 and cfg.train.sigma_sampling == "flow_shift"
    assert cfg.model_config().text_dim == 4096


def test_defaults_and_relative_paths(tmp_path):
    cfg = parse_config(tiny_raw(), str(tmp_path))
    assert cfg.output == str(tmp_path / "out" / "model.safetensors")
    assert cfg.data["synthetic"]["distribution"] == "domain" and cfg.resume is True
    sd = parse_config(tiny_raw(family="sd15"), str(tmp_path))
    assert sd.train.sigma_sampling == "eps_discrete" and sd.model_config().parameterisation == "eps"


@pytest.mark.parametrize("change, words", [
    ({"famly": "wan21"}, "unknown config keys"),
    ({"family": "wan99"}, "family"),
    ({"size": "huge"}, "size"),
    ({"train": {"stepz": 3}}, "train: unknown"),
    ({"train": {"cond_dropout": 2.0}}, "cond_dropout"),
    ({"model": {"colour": 1}}, "model: unknown"),
    ({"data": {"latents": "a.safetensors"}}, "data"),
    ({"data": {"synthetic": {"count": 2, "fps": 8}}}, "data.synthetic"),
    ({"output": ""}, "output"),
    ({"latent_normalisation": {"mean": [0.0], "std": [1.0]}}, "latent_normalisation.mean"),
])
def test_bad_configs_name_the_field(tmp_path, change, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        parse_config(tiny_raw(**change), str(tmp_path))


def test_invalid_json_and_cli_exit_code(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    assert main(["--config", str(p)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_synthetic_data_cached_once(tmp_path):
    cfg = parse_config(tiny_raw(), str(tmp_path))
    lat, txt, reused = synthetic_cache(cfg)
    assert not reused and os.path.isfile(lat) and os.path.isfile(txt)
    stamp = os.path.getmtime(lat)
    _, _, reused = synthetic_cache(cfg)
    assert reused and os.path.getmtime(lat) == stamp
    x, ctx, mask = load_data(cfg)
    assert x.shape == (4, 16, 2, 4, 4) and ctx.shape == (4, 5, 4096) and mask.all()
    # other settings -> rendered again
    cfg2 = parse_config(tiny_raw(data={"synthetic": {"count": 3, "frames": 2, "size": 16}}), str(tmp_path))
    _, _, reused = synthetic_cache(cfg2)
    assert not reused and load_data(cfg2)[0].shape[0] == 3


def test_cached_files_comfyui_latent_key_normalisation_and_broadcast_caption(tmp_path):
    lat = torch.randn(3, 16, 2, 4, 4)
    save_file({"latent_tensor": lat}, str(tmp_path / "clips.latent"))
    save_file({"context": torch.randn(1, 7, 4096), "mask": torch.tensor([[1, 1, 1, 1, 1, 0, 0]])},
              str(tmp_path / "captions.safetensors"))
    norm = {"mean": [1.0] * 16, "std": [2.0] * 16, "scale": 1.0}
    cfg = parse_config(tiny_raw(data={"latents": "clips.latent", "text": "captions.safetensors"},
                                latent_normalisation=norm), str(tmp_path))
    x, ctx, mask = load_data(cfg)
    assert torch.allclose(x, (lat - 1.0) / 2.0)
    assert ctx.shape == (3, 7, 4096) and mask.sum().item() == 15
    save_file({"context": torch.randn(2, 7, 4096)}, str(tmp_path / "captions.safetensors"))
    with pytest.raises(ConfigError, match="2 captions for 3 clips"):
        load_data(cfg)


def test_run_saves_model_and_resumes(tmp_path):
    raw = tiny_raw()
    (tmp_path / "c.json").write_text(json.dumps(raw))
    assert main(["--config", str(tmp_path / "c.json"), "--steps", "2"]) == 0
    cfg = load_config(str(tmp_path / "c.json"))
    assert load_checkpoint(cfg.checkpoint).step == 2
    cfg.train.steps = 4
    run(cfg, log=lambda *a: None)  # resumes from step 2
    resumed = load_checkpoint(cfg.checkpoint).losses
    model, meta = load_domain_model(cfg.output, expect_family="wan21")
    assert meta["training"]["steps"] == 4 and model.config.width == 64
    # the same 4 steps in one go give the same losses
    fresh = parse_config(dict(raw, output="out/fresh"), str(tmp_path))
    run(fresh, log=lambda *a: None)
    assert load_checkpoint(fresh.checkpoint).losses == resumed


def test_gradient_checkpointing_setting_reaches_the_model_and_keeps_the_losses(tmp_path, monkeypatch):
    """On by default; off when the config says so; the same losses either way."""
    import adapters.domain_model as dm

    seen = []
    real = dm._Block.forward
    monkeypatch.setattr(dm._Block, "forward", lambda self, *a: seen.append(torch.is_grad_enabled()) or real(self, *a))
    losses = {}
    for flag in (True, False):
        seen.clear()
        raw = tiny_raw(output=f"out/ckpt_{flag}", train={"steps": 2, "batch_size": 2, "lr": 1e-3})
        if not flag:
            raw["gradient_checkpointing"] = False
        cfg = parse_config(raw, str(tmp_path))
        assert cfg.gradient_checkpointing is flag
        run(cfg, log=lambda *a: None)
        losses[flag] = load_checkpoint(cfg.checkpoint).losses
        # checkpointed blocks run twice a step (forward, then again in backward), plain ones once
        assert len(seen) == (4 if flag else 2), seen
    assert losses[True] == pytest.approx(losses[False], rel=1e-6)


def test_a_unet_model_config_trains_and_resumes_as_a_unet(tmp_path):
    """``"model": {"backbone": "unet", ...}`` builds the UNet (not a transformer with a UNet's config), writes a
    file that loads as one, and resumes from its checkpoint."""
    raw = tiny_raw(model={"backbone": "unet", "unet_widths": [16, 24, 32], "width": 32, "heads": 4,
                          "patch_size": [1, 1, 1]})
    (tmp_path / "c.json").write_text(json.dumps(raw))
    assert main(["--config", str(tmp_path / "c.json"), "--steps", "2"]) == 0
    cfg = load_config(str(tmp_path / "c.json"))
    cfg.train.steps = 3
    run(cfg, log=lambda *a: None)
    model, meta = load_domain_model(cfg.output, expect_family="wan21")
    assert type(model).__name__ == "DomainVideoUNet" and meta["training"]["steps"] == 3
