import pytest
import torch

from adapters.files import AdapterFileError, read_metadata, save_tensors
from adapters.simda import (AdapterSet, SimDAConfig, SpatialAdapter, TemporalAdapter)


def _perturb_up(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.up.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_spatial_adapter_shapes_and_zero_init_identity():
    x = torch.randn(6, 35, 32)
    att = SpatialAdapter(32, skip=True)
    ffn = SpatialAdapter(32, skip=False)
    assert att.down.weight.shape == (8, 32) and att.up.weight.shape == (32, 8)
    assert torch.equal(att(x), x)
    assert torch.equal(ffn(x), torch.zeros_like(x))
    # the down projection is not zero: only the up projection starts at zero
    assert att.down.weight.abs().sum() > 0


def test_temporal_adapter_zero_init_identity_both_layouts():
    ta = TemporalAdapter(16)
    assert ta.down.weight.shape == (8, 16, 1, 1, 1)
    assert ta.conv.weight.shape == (8, 1, 3, 1, 1)
    assert ta.up.weight.shape == (16, 8, 1, 1, 1)
    tokens = torch.randn(2 * 5, 4 * 3, 16)
    assert torch.equal(ta(tokens, frames=5, height=4, width=3), tokens)
    video = torch.randn(2, 16, 5, 4, 3)
    assert torch.equal(ta(video), video)


def test_nonzero_after_perturbing_up():
    x = torch.randn(4, 10, 16)
    sa = SpatialAdapter(16)
    _perturb_up(sa)
    assert not torch.allclose(sa(x), x)
    ta = TemporalAdapter(16)
    _perturb_up(ta)
    assert not torch.allclose(ta(x, frames=2, height=2, width=5), x)


def test_temporal_token_and_video_layouts_agree():
    torch.manual_seed(0)
    ta = TemporalAdapter(12)
    _perturb_up(ta, 3)
    b, f, h, w = 2, 4, 3, 5
    video = torch.randn(b, 12, f, h, w)
    tokens = video.permute(0, 2, 3, 4, 1).reshape(b * f, h * w, 12)
    out_tokens = ta(tokens, frames=f, height=h, width=w)
    out_video = ta(video).permute(0, 2, 3, 4, 1).reshape(b * f, h * w, 12)
    torch.testing.assert_close(out_tokens, out_video, rtol=1e-5, atol=1e-6)


def test_temporal_adapter_mixes_only_neighbouring_frames():
    torch.manual_seed(0)
    frames, h, w, c = 9, 3, 4, 16
    ta = TemporalAdapter(c)
    _perturb_up(ta, 1)
    x = torch.randn(2 * frames, h * w, c)
    y = x.clone()
    y[5] += torch.randn(h * w, c)  # change frame 5 of video 0
    with torch.no_grad():
        diff = (ta(y, frames, h, w) - ta(x, frames, h, w)).abs().amax(dim=(1, 2))
    changed = {i for i in range(2 * frames) if diff[i] > 1e-6}
    assert changed == {4, 5, 6}
    # and spatial positions do not mix: change one position, only that position moves
    z = x.clone()
    z[5, 7] += 1.0
    with torch.no_grad():
        d = (ta(z, frames, h, w) - ta(x, frames, h, w)).abs().amax(dim=2)
    assert set(torch.nonzero(d > 1e-6)[:, 1].tolist()) == {7}


def _build_set():
    s = AdapterSet(SimDAConfig(), family="sd15")
    s.add_block("input_blocks.1.1.transformer_blocks.0", 32)
    s.add_block("middle_block.1.transformer_blocks.0", 64)
    s.add_block("output_blocks.3.1.transformer_blocks.0", 32, parts=["attention", "ffn"])
    return s


def test_adapter_set_names_and_param_count():
    s = _build_set()
    assert s.block_names() == ["input_blocks.1.1.transformer_blocks.0", "middle_block.1.transformer_blocks.0",
                               "output_blocks.3.1.transformer_blocks.0"]
    assert "middle_block.1.transformer_blocks.0" in s
    assert s["output_blocks.3.1.transformer_blocks.0"].temporal is None

    def spatial(c):
        return c * (c // 4) + c // 4 + (c // 4) * c + c

    def temporal(c):
        return c * (c // 2) + c // 2 + (c // 2) * 3 + c // 2 + (c // 2) * c + c

    expected = 2 * spatial(32) + temporal(32) + 2 * spatial(64) + temporal(64) + 2 * spatial(32)
    assert s.num_trainable_parameters() == expected
    s["middle_block.1.transformer_blocks.0"].requires_grad_(False)
    assert s.num_trainable_parameters() == expected - 2 * spatial(64) - temporal(64)
    with pytest.raises(ValueError):
        s.add_block("middle_block.1.transformer_blocks.0", 64)


def test_save_load_round_trip_exact(tmp_path):
    torch.manual_seed(0)
    s = _build_set()
    for p in s.parameters():
        with torch.no_grad():
            p.add_(torch.randn_like(p))
    path = str(tmp_path / "simda.safetensors")
    s.save(path, extra={"training": {"steps": 3}})
    meta = read_metadata(path)
    assert meta["kind"] == "simda" and meta["family"] == "sd15" and meta["training"] == {"steps": 3}
    assert meta["config"] == SimDAConfig().to_dict()
    assert "input_blocks.1.1.transformer_blocks.0.attention.down.weight" in s.file_state_dict()

    loaded = AdapterSet.load(path, expect_family="sd15")
    assert loaded.block_names() == s.block_names()
    a, b = s.file_state_dict(), loaded.file_state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(AdapterFileError):
        AdapterSet.load(path, expect_family="wan21")


def test_load_refuses_other_kind(tmp_path):
    path = str(tmp_path / "other.safetensors")
    save_tensors(path, {"w": torch.zeros(2)}, {"kind": "domain_model", "family": "sd15"})
    with pytest.raises(AdapterFileError, match="simda"):
        AdapterSet.load(path)


def test_adam_reduces_toy_regression_loss():
    torch.manual_seed(0)
    frames, h, w, c = 4, 2, 3, 16
    sa = SpatialAdapter(c)
    ta = TemporalAdapter(c)
    x = torch.randn(2 * frames, h * w, c)
    # target: a smooth temporal + channel mixing of the input
    target = x + 0.3 * torch.roll(x, 1, dims=2) + 0.2 * x.reshape(2, frames, h * w, c).mean(1, keepdim=True) \
        .expand(2, frames, h * w, c).reshape(2 * frames, h * w, c)
    params = list(sa.parameters()) + list(ta.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)

    def loss_fn():
        return torch.nn.functional.mse_loss(ta(sa(x), frames, h, w), target)

    first = loss_fn().item()
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss_fn().item() < 0.7 * first
