import pytest
import torch

from adapters.domain_model import (
    FAMILY_SPECS, PRESET_RANGES, PRESETS, SIZED_FAMILIES, DomainModelConfig, DomainVideoModel, count_parameters,
    count_parameters_meta, family_config, format_size_report, frames_context_to_video, frames_to_video, load_domain_model,
    preset_config, save_domain_model, size_report, sobel_edges, video_to_frames)
from adapters.files import AdapterFileError


def _tiny(family, **kw):
    cfg = family_config(family, width=64, heads=2, depth=2, **kw)
    torch.manual_seed(0)
    model = DomainVideoModel(cfg)
    # the output layer and modulation start at zero (adaLN-zero); open them so outputs depend on inputs
    with torch.no_grad():
        for p in (model.final.weight, model.time_mod.weight, model.final_mod.weight):
            p.normal_(0, 0.05)
    return model.eval()


@pytest.mark.parametrize("family,shape", [
    ("wan21", (2, 16, 3, 8, 10)),
    ("wan22_5b", (1, 48, 2, 6, 6)),
    ("sd15", None),
])
@pytest.mark.parametrize("attention", ["factorised", "full"])
def test_forward_shapes(family, shape, attention):
    model = _tiny(family, attention=attention, first_frame_cond=True, edge_cond=True)
    spec = FAMILY_SPECS[family]
    if shape is None:  # frames-in-batch family: [T, C, H, W] -> one video
        frames = torch.randn(5, spec["latent_channels"], 9, 7)
        x = frames_to_video(frames)
        assert torch.equal(video_to_frames(x), frames)
        per_frame_ctx = torch.randn(1, 7, spec["text_dim"]).expand(5, -1, -1)
        assert torch.equal(frames_context_to_video(per_frame_ctx), per_frame_ctx[:1])
    else:
        x = torch.randn(shape)
    b = x.shape[0]
    ctx = torch.randn(b, 7, spec["text_dim"])
    with torch.no_grad():
        y = model(x, torch.rand(b), ctx, first_frame=x[:, :, 0], edges=sobel_edges(x))
        y_uncond = model(x, 0.5, None)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y_uncond.shape == x.shape
    assert torch.isfinite(y).all() and y.abs().sum() > 0


def test_initial_output_is_zero_and_wrong_channels_refused():
    cfg = family_config("wan21", width=64, heads=2, depth=1)
    model = DomainVideoModel(cfg)
    x = torch.randn(1, 16, 2, 4, 4)
    assert torch.count_nonzero(model(x, 0.3, None)) == 0
    with pytest.raises(ValueError, match="16"):
        model(torch.randn(1, 4, 2, 4, 4), 0.3, None)
    with pytest.raises(ValueError, match="4096"):
        model(x, 0.3, torch.randn(1, 3, 768))


def test_first_frame_layouts_and_edge_resize():
    model = _tiny("wan21", first_frame_cond=True, edge_cond=True, edge_channels=3)
    x = torch.randn(1, 16, 3, 4, 4)
    ff = torch.randn(1, 16, 4, 4)
    edges_px = sobel_edges(torch.rand(1, 3, 9, 32, 32))  # pixel-space edges, resized to the latent grid
    with torch.no_grad():
        a = model(x, 0.4, None, first_frame=ff, edges=edges_px)
        b = model(x, 0.4, None, first_frame=ff[:, :, None], edges=edges_px)
        c = model(x, 0.4, None, first_frame=torch.zeros_like(ff), edges=edges_px)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_sobel_edges_x_direction():
    ramp_x = torch.arange(8.0).reshape(1, 1, 1, 1, 8).expand(1, 2, 3, 6, 8)
    ramp_y = torch.arange(6.0).reshape(1, 1, 1, 6, 1).expand(1, 2, 3, 6, 8)
    ex = sobel_edges(ramp_x)
    assert ex.shape == ramp_x.shape
    assert torch.allclose(ex[..., 1:-1], torch.full_like(ex[..., 1:-1], 1.0))
    assert torch.count_nonzero(sobel_edges(ramp_y)) == 0


def test_cond_dropout_path():
    model = _tiny("sd15")
    x = torch.randn(2, 4, 3, 4, 4)
    ctx = torch.randn(2, 5, 768)
    with torch.no_grad():
        uncond = model(x, 1.0, None)
        cond = model(x, 1.0, ctx)
        all_dropped = model(x, 1.0, ctx, context_mask=torch.zeros(2, 5, dtype=torch.bool))
        mask = torch.ones(2, 5, dtype=torch.bool)
        mask[0] = False
        mixed = model(x, 1.0, ctx, context_mask=mask)
    assert torch.allclose(all_dropped, uncond, atol=1e-6)
    assert not torch.allclose(cond, uncond, atol=1e-4)
    assert torch.allclose(mixed[0], uncond[0], atol=1e-6)
    assert torch.allclose(mixed[1], cond[1], atol=1e-6)
    # padding tokens are ignored
    pad_mask = torch.ones(2, 7, dtype=torch.bool)
    pad_mask[:, 5:] = False
    with torch.no_grad():
        padded = model(x, 1.0, torch.cat([ctx, torch.randn(2, 2, 768)], 1), context_mask=pad_mask)
    assert torch.allclose(padded, cond, atol=1e-5)


def _saved_bytes_and_grads(model, x, ctx):
    """Bytes autograd keeps for backward (once per storage, the model's own weights left out) and the gradients."""
    own = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in own:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    model.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x, torch.tensor([0.7, 3.0]), ctx)
    out.square().mean().backward()
    return sum(seen.values()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attention", ["factorised", "full"])
def test_gradient_checkpointing_same_gradients_for_less_memory(attention):
    """With checkpointing each block keeps only its input: the same gradients, a fraction of the saved bytes."""
    model = _tiny("wan21", attention=attention).train()
    x, ctx = torch.randn(2, 16, 3, 8, 8), torch.randn(2, 5, 4096)
    plain_bytes, plain = _saved_bytes_and_grads(model, x, ctx)
    model.gradient_checkpointing = True
    ckpt_bytes, ckpt = _saved_bytes_and_grads(model, x, ctx)
    assert plain.keys() == ckpt.keys() and len(plain) == len(list(model.parameters()))
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)
    assert ckpt_bytes < 0.5 * plain_bytes, (ckpt_bytes, plain_bytes)


def test_closed_form_count_matches_model():
    for cfg in [family_config("wan21", width=128, heads=2, depth=2),
                family_config("sd15", width=64, heads=1, depth=3, attention="full", first_frame_cond=True),
                family_config("wan22_5b", width=192, heads=3, depth=1, edge_cond=True, edge_channels=3),
                family_config("synthetic", width=64, heads=1, depth=1, local_conv=True, first_frame_cond=True),
                family_config("synthetic", width=64, heads=2, depth=2, block_conv=True),
                preset_config("m", "wan21", prior_params=14e9)]:
        assert count_parameters(cfg) == count_parameters_meta(cfg)


def test_local_conv_starts_as_the_plain_model_and_joins_neighbouring_tokens():
    torch.manual_seed(0)
    plain = DomainVideoModel(family_config("synthetic", width=32, heads=1, depth=1))
    torch.manual_seed(0)
    conv = DomainVideoModel(family_config("synthetic", width=32, heads=1, depth=1, local_conv=True))
    torch.nn.init.normal_(plain.final.weight, std=0.1)  # open the zero-initialised output so the model says something
    missing, unexpected = conv.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["in_conv.bias", "in_conv.weight", "out_conv.bias", "out_conv.weight"]
    x, ctx = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 5, 32)
    with torch.no_grad():
        assert torch.equal(plain(x, 0.5, ctx), conv(x, 0.5, ctx))  # zero-initialised convolutions: the same model
        torch.nn.init.normal_(conv.out_conv.weight, std=0.1)
        base = conv(x, 0.5, ctx)
        y = x.clone()
        y[:, :, :, 0, 0] += 1.0  # one latent cell, in the top-left token
        changed = (conv(y, 0.5, ctx) - base).abs().amax(dim=(0, 1, 2))
    # the token grid is 2x2 cells a token; the output convolution carries the change one cell past the token's edge
    assert changed[2, 0] > 0 and changed[0, 2] > 0 and changed[3, 3] == 0


def test_block_conv_starts_as_the_plain_model_and_mixes_neighbouring_tokens_in_every_block():
    torch.manual_seed(0)
    plain = DomainVideoModel(family_config("synthetic", width=32, heads=1, depth=2))
    torch.manual_seed(0)
    conv = DomainVideoModel(family_config("synthetic", width=32, heads=1, depth=2, block_conv=True))
    torch.nn.init.normal_(plain.final.weight, std=0.1)
    missing, unexpected = conv.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == [f"blocks.{i}.grid_conv.{p}" for i in (0, 1) for p in ("bias", "weight")]
    x, ctx = torch.randn(1, 16, 2, 8, 8), torch.randn(1, 5, 32)  # 4x4 tokens a frame
    with torch.no_grad():
        assert torch.equal(plain(x, 0.5, ctx), conv(x, 0.5, ctx))  # zero-initialised: the same model
        # with attention and the MLP closed (adaLN-zero), only the grid convolutions move tokens' content around
        torch.nn.init.normal_(conv.blocks[0].grid_conv.weight, std=0.3)
        base = conv(x, 0.5, ctx)
        y = x.clone()
        y[:, :, 0, 0:2, 0:2] += 1.0  # the top-left token of the first frame
        changed = (conv(y, 0.5, ctx) - base).abs().amax(dim=(0, 1))  # [T, H, W]
    # one 3x3 convolution reaches the neighbouring token (cells 2-3) but not the one beyond (cells 4-5), and
    # frames do not mix
    assert changed[0, 2:4, 2:4].amax() > 0 and changed[0, 4:, :].amax() == 0 and changed[1].amax() == 0


@pytest.mark.parametrize("family", SIZED_FAMILIES)
def test_presets_fall_in_paper_ranges(family):
    prior = FAMILY_SPECS[family]["prior_params"]
    for name in PRESETS:
        lo, hi = PRESET_RANGES[name]
        cfg = preset_config(name, family)
        frac = count_parameters(cfg) / prior
        assert lo <= frac <= hi, (family, name, frac)
        assert cfg.width % cfg.heads == 0 and cfg.family == family
    # the same presets sized for Wan 2.1 14B
    if family == "wan21":
        for name in PRESETS:
            lo, hi = PRESET_RANGES[name]
            assert lo <= count_parameters(preset_config(name, family, prior_params=14e9)) / 14e9 <= hi


def test_size_report():
    rows = size_report()
    assert {(r["family"], r["preset"]) for r in rows} == {(f, p) for f in SIZED_FAMILIES for p in PRESETS}
    for r in rows:
        assert r["of_wan21_1.3b"] == pytest.approx(r["params"] / 1.3e9)
        assert r["of_wan21_14b"] == pytest.approx(r["params"] / 14e9)
    assert "wan22_5b" in format_size_report(rows)


def test_config_json_round_trip():
    cfg = preset_config("xs", "sd15", first_frame_cond=True)
    assert DomainModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        DomainModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_save_load_round_trip_bit_exact(tmp_path):
    model = _tiny("wan21", first_frame_cond=True)
    path = str(tmp_path / "domain.safetensors")
    save_domain_model(path, model, {"steps": 12, "final_loss": 0.25})
    loaded, meta = load_domain_model(path, expect_family="wan21")
    assert meta["kind"] == "domain_model" and meta["family"] == "wan21"
    assert meta["latent_channels"] == 16 and meta["parameterisation"] == "flow"
    assert meta["training"] == {"steps": 12, "final_loss": 0.25}
    assert loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 16, 2, 4, 4)
    ctx = torch.randn(1, 3, 4096)
    with torch.no_grad():
        assert torch.equal(model(x, 0.7, ctx, first_frame=x[:, :, 0]), loaded(x, 0.7, ctx, first_frame=x[:, :, 0]))


def test_wrong_family_refused(tmp_path):
    path = str(tmp_path / "sd.safetensors")
    save_domain_model(path, _tiny("sd15"), {})
    with pytest.raises(AdapterFileError) as err:
        load_domain_model(path, expect_family="wan21")
    assert "sd15" in str(err.value) and "wan21" in str(err.value)
    model, _ = load_domain_model(path)  # no expectation: loads
    assert model.config.family == "sd15"


def test_synthetic_files_of_the_first_latent_code_are_refused_by_name(tmp_path):
    """A synthetic-space model lives in the code it was trained in: files from before the lapped code (no
    ``latent_code`` in their metadata) are refused with what to do, not decoded to noise."""
    from adapters.files import load_tensors, save_tensors

    path = str(tmp_path / "syn.safetensors")
    save_domain_model(path, _tiny("synthetic"), {})
    model, meta = load_domain_model(path, expect_family="synthetic")
    assert meta["latent_code"] == 2
    tensors, meta = load_tensors(path, expect_kind="domain_model")
    old = str(tmp_path / "old.safetensors")
    save_tensors(old, tensors, {k: v for k, v in meta.items() if k not in ("latent_code", "format_version")})
    with pytest.raises(AdapterFileError, match="old.safetensors is in version 1 of the synthetic latent code; .* Retrain it"):
        load_domain_model(old)
    save_tensors(old, tensors, {**{k: v for k, v in meta.items() if k != "format_version"}, "latent_code": 3})
    with pytest.raises(AdapterFileError, match="version 3 .* newer than this pack's version 2: update the pack"):
        load_domain_model(old)
    # families without a code version are untouched
    save_domain_model(path, _tiny("sd15"), {})
    assert "latent_code" not in load_domain_model(path)[1]


def test_checkpoints_carry_and_are_checked_for_the_latent_code():
    """Training checkpoints go through the same check (Load Domain Model and resume_from read them): a synthetic
    checkpoint without the code's version is from the first code."""
    from adapters.domain_model import check_latent_code, latent_code_meta

    assert latent_code_meta("synthetic") == {"latent_code": 2} and latent_code_meta("wan21") == {}
    check_latent_code({"kind": "checkpoint", "family": "synthetic", **latent_code_meta("synthetic")}, "ck")
    check_latent_code({"kind": "checkpoint", "family": "wan21"}, "ck")
    with pytest.raises(AdapterFileError, match="ck is in version 1"):
        check_latent_code({"kind": "checkpoint", "family": "synthetic"}, "ck")
