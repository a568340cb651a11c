"""The miniature's drawing measurements (devtools/drawing.py) and the truth of the broad captions."""

import pytest
import torch

import adapters.synthetic_video as sv
from devtools.drawing import ShapeJudge, latent_roughness, mosaic_ratio


def test_mosaic_ratio_closed_forms():
    # a linear ramp: every neighbour pair differs by the same amount, across cells or not -> exactly 1
    ramp = torch.linspace(0, 1, 64)[None, None, None, None, :].expand(2, 3, 4, 64, 64)
    assert mosaic_ratio(ramp, 16) == pytest.approx(1.0, rel=1e-5)
    # a ramp inside each 16-pixel cell that restarts at every boundary: inside steps 1/15 / 15 px, across -1
    saw = (torch.arange(64) % 16).float()[None, None, None, None, :].expand(1, 3, 2, 64, 64) / 15.0
    inside_x = 1.0 / 15.0
    # vertical neighbours are equal (0), so inside = (horizontal inside pairs * 1/15) / (all inside pairs)
    n_in_x, n_in_y = 60 * 64, 60 * 64  # per frame: 60 inside x-pairs per row, 64 rows; 60 inside y-pairs per column
    n_ac_x, n_ac_y = 3 * 64, 3 * 64
    inside = n_in_x * inside_x / (n_in_x + n_in_y)
    across = n_ac_x * 1.0 / (n_ac_x + n_ac_y)
    assert mosaic_ratio(saw, 16) == pytest.approx(across / inside, rel=1e-5)
    # piecewise-constant cells: nothing changes inside a cell, so the grid dominates
    blocks = torch.rand(1, 3, 2, 4, 4).repeat_interleave(16, -1).repeat_interleave(16, -2)
    assert mosaic_ratio(blocks + 1e-3 * torch.rand_like(blocks), 16) > 20


def test_latent_roughness_closed_forms_and_what_it_sees():
    # a ramp of step 0.5 along x, constant along y: half the pairs differ by 0.5, half by 0
    ramp = (0.5 * torch.arange(8.0))[None, None, None, None, :].expand(1, 2, 3, 8, 8)
    assert latent_roughness(ramp) == pytest.approx(0.25, rel=1e-6)
    # real clips through the code against the same cells shuffled over the grid: the lapped code's decoder
    # softens the disagreement at the cell edges, and both measures still see it
    codec = sv.synthetic_codec()
    z = codec.encode(sv.make_style_clips(16, "broad", seed=3, frames=2).video)
    shuffled = z.flatten(-2)[..., torch.randperm(64, generator=torch.Generator().manual_seed(0))].reshape(z.shape)
    real, tiles = mosaic_ratio(codec.decode(z), 8), mosaic_ratio(codec.decode(shuffled), 8)
    assert real < 1.0 < 1.3 * real < tiles < 2.0, (real, tiles)
    assert latent_roughness(shuffled) > 1.3 * latent_roughness(z)


def test_every_object_follows_the_caption(monkeypatch):
    calls = []
    real = sv._sdf
    monkeypatch.setattr(sv, "_sdf", lambda shape, *a, **k: calls.append(shape) or real(shape, *a, **k))
    for seed in range(6):
        calls.clear()
        clip = sv.make_style_clips(1, "broad", seed=seed, frames=2, size=16)
        assert set(calls) == {clip.captions[0].split(", ")[2]}


def test_shape_labels_read_the_caption():
    clips = sv.make_style_clips(20, "broad", seed=1, frames=2, size=16)
    said = [c.split(", ")[2] for c in clips.captions]
    assert ShapeJudge.shape_labels(clips.tokens).tolist() == [sv.SHAPES.index(s) for s in said]
    assert len(set(said)) > 2
