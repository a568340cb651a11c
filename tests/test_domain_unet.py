"""The UNet backbone of domain models (DomainVideoUNet in adapters/domain_model.py): the interface of the transformer, frame by frame
until its temporal layers open, the shared text and conditioning paths, files, and training."""

import pytest
import torch

from adapters.domain_model import (DomainModelConfig, DomainVideoModel, build_domain_model, count_parameters,
                                   family_config, load_domain_model, save_domain_model)
from adapters.domain_model import DomainVideoUNet
from adapters.training import TrainConfig, Trainer


def _unet(family="synthetic", widths=(16, 24, 32), opened=True, **kw):
    cfg = family_config(family, backbone="unet", unet_widths=widths, width=widths[-1], heads=4, patch_size=(1, 1, 1),
                        **kw)
    torch.manual_seed(0)
    model = build_domain_model(cfg)
    if opened:  # the output and the residual branches start at zero; open the spatial ones
        with torch.no_grad():
            for name, p in model.named_parameters():
                if any(k in name for k in ("cout", ".c2.", ".o1.", ".o2.")):
                    p.normal_(0, 0.05)
    return model.eval()


def _temporal_outputs(model):
    """The parameters of the branches that mix frames and write into the residual stream."""
    return [p.detach() for n, p in model.named_parameters() if ".tconv." in n or ".o3." in n]


@pytest.mark.parametrize("family,shape", [("synthetic", (2, 16, 3, 8, 8)), ("wan21", (1, 16, 2, 6, 10)),
                                          ("sd15", (1, 4, 2, 5, 7))])
def test_unet_keeps_the_latent_shape_and_starts_at_zero(family, shape):
    model = _unet(family, opened=False)
    assert isinstance(model, DomainVideoUNet) and not isinstance(model, DomainVideoModel)
    x = torch.randn(shape)
    ctx = torch.randn(shape[0], 3, model.config.text_dim)
    with torch.no_grad():
        out = _unet(family)(x, torch.full((shape[0],), 0.5), ctx)
        assert out.shape == x.shape and out.abs().mean() > 0
        assert torch.equal(model(x, 0.5, ctx), torch.zeros_like(x))
    with pytest.raises(ValueError, match="expected latents"):
        model(torch.randn(1, shape[1] + 1, 2, 8, 8), 0.5, ctx[:1])


def test_unet_is_an_image_model_applied_frame_by_frame_until_its_temporal_layers_open():
    """What the still-frame stage of the prior's training relies on: zero temporal branches make a clip's output
    the output of each frame on its own; opening one temporal convolution couples the frames."""
    model = _unet()
    x, ctx, s = torch.randn(2, 16, 4, 8, 8), torch.randn(2, 5, 32), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        clip = model(x, s, ctx)
        frames = torch.cat([model(x[:, :, i:i + 1], s, ctx) for i in range(4)], dim=2)
        assert torch.allclose(clip, frames, atol=1e-5)
        assert all(float(p.abs().max()) == 0 for p in _temporal_outputs(model))
        model.d1.tconv.weight.normal_(0, 0.05)
        coupled = model(x, s, ctx)
    assert (coupled - frames).abs().max() > 1e-3


def test_unet_text_dropout_and_padding_follow_the_shared_null_embedding():
    model = _unet()
    x, ctx = torch.randn(2, 16, 2, 8, 8), torch.randn(2, 5, 32)
    with torch.no_grad():
        uncond, cond = model(x, 0.6, None), model(x, 0.6, ctx)
        mask = torch.ones(2, 5, dtype=torch.bool)
        mask[0] = False
        mixed = model(x, 0.6, ctx, context_mask=mask)
        pad = torch.ones(2, 7, dtype=torch.bool)
        pad[:, 5:] = False
        padded = model(x, 0.6, torch.cat([ctx, torch.randn(2, 2, 32)], 1), context_mask=pad)
    assert not torch.allclose(cond, uncond, atol=1e-4)
    assert torch.allclose(mixed[0], uncond[0], atol=1e-6) and torch.allclose(mixed[1], cond[1], atol=1e-6)
    assert torch.allclose(padded, cond, atol=1e-5)


def test_unet_first_frame_channels_and_eps_input_scaling():
    model = _unet("sd15", first_frame_cond=True)
    assert model.cin.in_channels == 8
    x, ctx, ff = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 3, 768), torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        none, zeros, given = model(x, 2.0, ctx), model(x, 2.0, ctx, first_frame=torch.zeros(1, 4, 8, 8)), \
            model(x, 2.0, ctx, first_frame=ff)
        assert torch.equal(none, zeros) and (given - none).abs().max() > 1e-4
        # eps: the network sees x / sqrt(1 + s^2), so x and sigma scale together through the same input
        a = model(x * (1 + 2.0 ** 2) ** 0.5, 2.0, ctx)
        b = model(x * (1 + 3.0 ** 2) ** 0.5, 2.0, ctx)
    assert not torch.allclose(a, b, atol=1e-4)
    eps = _unet("sd15", first_frame_cond=False)
    flow_cfg = family_config("sd15", backbone="unet", unet_widths=(16, 24, 32), width=32, heads=4,
                             patch_size=(1, 1, 1), parameterisation="flow")
    flow = DomainVideoUNet(flow_cfg).eval()
    flow.load_state_dict(eps.state_dict())
    s = torch.tensor([2.0])
    with torch.no_grad():
        # the same weights: eps at sigma s on x equals flow at the same timestep on x / sqrt(1 + s^2), once the
        # timestep embedding is fed the same number (250 ln s for eps, 1000 s for flow)
        t_flow = 250.0 * torch.log(s) / 1000.0
        assert torch.allclose(eps(x, s, ctx), flow(x / (1 + s * s).sqrt(), t_flow, ctx), atol=1e-5)


def test_unet_files_round_trip_and_transformer_files_keep_their_old_config():
    cfg = _unet().config
    d = cfg.to_dict()
    assert d["backbone"] == "unet" and d["unet_widths"] == [16, 24, 32]
    assert DomainModelConfig.from_dict(d) == cfg
    plain = family_config("synthetic", width=64, heads=2, depth=2)
    assert "backbone" not in plain.to_dict() and "unet_widths" not in plain.to_dict()  # earlier versions read it
    assert DomainModelConfig.from_dict(plain.to_dict()) == plain
    with pytest.raises(ValueError, match="backbone"):
        family_config("synthetic", backbone="resnet")
    with pytest.raises(ValueError, match="unet_widths"):
        family_config("synthetic", backbone="unet", unet_widths=(16, 24), patch_size=(1, 1, 1))
    assert count_parameters(cfg) == sum(p.numel() for p in _unet().parameters())


def test_unet_save_load_bit_exact(tmp_path):
    model = _unet()
    path = str(tmp_path / "unet.safetensors")
    save_domain_model(path, model, {"steps": 3})
    loaded, meta = load_domain_model(path, expect_family="synthetic")
    assert isinstance(loaded, DomainVideoUNet) and meta["config"]["backbone"] == "unet"
    x, ctx = torch.randn(1, 16, 2, 8, 8), torch.randn(1, 4, 32)
    with torch.no_grad():
        assert torch.equal(model(x, 0.4, ctx), loaded(x, 0.4, ctx))
    assert loaded.dtype == torch.float32 and loaded.half().dtype == torch.float16


def test_unet_trains_with_the_pack_trainer():
    torch.manual_seed(3)
    x0, ctx = torch.randn(4, 16, 2, 8, 8) * 0.5, torch.randn(4, 3, 32)
    model = _unet(opened=False).train()

    def batch_fn(step, g, bs):
        idx = torch.randint(0, 4, (bs,), generator=g)
        return {"x0": x0[idx], "context": ctx[idx]}

    res = Trainer(TrainConfig(steps=60, lr=3e-3, batch_size=4, seed=1)).run(model, model, batch_fn, "flow")
    first, last = sum(res.losses[:5]) / 5, sum(res.losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)


def test_train_prior_unet_stages_and_the_shipped_priors_recipe(tmp_path):
    """``devtools.train_prior --backbone unet``: the still-frame stage leaves the frame-mixing branches closed,
    the clip stage opens them, and both snapshots carry the recipe and the command; the shipped prior's recipe
    still reads as the tool's default (what the Table-1 miniature checks before it uses it)."""
    import os

    from adapters.files import read_metadata
    from devtools import train_prior

    out = str(tmp_path / "priors")
    args = ["--out", out, "--broad", "8", "--backbone", "unet", "--unet_widths", "16,24,32", "--image_steps", "4",
            "--image_batch", "4", "--steps", "3", "--batch", "2", "--snapshots", "1", "--device", "cpu"]
    assert train_prior.main(args) == 0
    still, _ = load_domain_model(os.path.join(out, "prior_image_00004.safetensors"))
    clips, meta = load_domain_model(os.path.join(out, "prior_00003.safetensors"))
    assert all(float(p.abs().max()) == 0 for p in _temporal_outputs(still))
    assert any(float(p.abs().max()) > 0 for p in _temporal_outputs(clips))
    assert meta["config"]["backbone"] == "unet" and meta["training"]["stage"] == "clips"
    assert "backbone=unet unet_widths=16,24,32 image_steps=4" in meta["training"]["prior_recipe"]
    assert "device" not in meta["training"]["prior_recipe"]  # the same recipe text on any device
    assert meta["training"]["made_by"].startswith("python -m devtools.train_prior --out")
    shipped = read_metadata(train_prior.SHIPPED)["training"]["prior_recipe"]
    assert shipped == train_prior.shipped_recipe_text()


def test_each_network_refuses_the_other_backbones_config_and_bad_widths():
    with pytest.raises(ValueError, match="build_domain_model"):
        DomainVideoModel(_unet(opened=False).config)
    with pytest.raises(ValueError, match="DomainVideoUNet builds backbone 'unet'"):
        DomainVideoUNet(family_config("synthetic", width=64, heads=2, depth=2))
    with pytest.raises(ValueError, match="normalisation groups"):
        family_config("synthetic", backbone="unet", unet_widths=(48, 72, 96), patch_size=(1, 1, 1))
    assert _unet(opened=False).config.architecture_text() == "UNet 16 / 24 / 32"
    assert family_config("synthetic", width=64, heads=2, depth=2).architecture_text() == "64 wide, 2 blocks"
