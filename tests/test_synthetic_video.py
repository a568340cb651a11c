import pytest
import torch
import torch.nn.functional as F

from adapters.synthetic_video import (
    CAPTION_LENGTH, DOMAIN_STYLE, VOCAB, ToyLatentCodec, caption_context, clip_statistics, domain_caption_text,
    make_clips)


@pytest.fixture(scope="module")
def internet():
    return make_clips(24, "internet", seed=3)


@pytest.fixture(scope="module")
def domain():
    return make_clips(24, "domain", seed=3)


def test_shapes_and_range(internet):
    v = internet.video
    assert v.shape == (24, 3, 8, 32, 32) and v.dtype == torch.float32
    assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    assert internet.tokens.shape == (24, CAPTION_LENGTH)
    assert len(internet.captions) == 24
    small = make_clips(2, "domain", seed=0, frames=5, size=16)
    assert small.video.shape == (2, 3, 5, 16, 16)


def test_deterministic_with_seed(internet):
    again = make_clips(24, "internet", seed=3)
    assert torch.equal(again.video, internet.video)
    assert torch.equal(again.tokens, internet.tokens) and again.captions == internet.captions
    other = make_clips(24, "internet", seed=4)
    assert not torch.equal(other.video, internet.video)


def test_clips_move(internet, domain):
    for clips in (internet, domain):
        change = (clips.video[:, :, 1:] - clips.video[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4))
        assert (change > 1e-3).float().mean() > 0.8  # nearly every clip has motion (shapes or camera)


def test_captions_match_tokens(internet, domain):
    for clips in (internet, domain):
        for toks, cap in zip(clips.tokens.tolist(), clips.captions):
            words = [VOCAB[t].split(":")[1].replace("_", " ") for t in toks]
            assert ", ".join(words) == cap
    # the domain is one style; the internet set covers many
    assert len(set(domain.captions)) == 1
    assert domain.captions[0] == ", ".join(w.replace("_", " ") for w in DOMAIN_STYLE.values())
    assert len(set(internet.captions)) > 10


def test_domain_differs_from_internet(internet, domain):
    si, sd = clip_statistics(internet.video), clip_statistics(domain.video)
    assert sd["warmth"] > si["warmth"] + 0.15            # warm sunset palette
    assert sd["colour_spread"] < 0.5 * si["colour_spread"]  # narrow palette
    # the domain's camera pans right, so content moves left: frame t+1 at x looks like frame t at x + 1
    v = domain.video
    with_pan = (v[:, :, 1:, :, :-1] - v[:, :, :-1, :, 1:]).abs().mean()
    against_pan = (v[:, :, 1:, :, 1:] - v[:, :, :-1, :, :-1]).abs().mean()
    assert with_pan < 0.9 * against_pan


def test_caption_context(internet):
    a = internet.context(32)
    assert a.shape == (24, CAPTION_LENGTH, 32)
    assert torch.equal(a, caption_context(internet.tokens, 32))
    assert not torch.equal(a, caption_context(internet.tokens, 32, seed=1))
    same = internet.tokens[0:1].expand(2, -1)
    c = caption_context(same, 32)
    assert torch.equal(c[0], c[1])


@pytest.mark.parametrize("channels", [4, 16, 48])
def test_toy_codec_round_trip(internet, channels):
    codec = ToyLatentCodec(channels)
    z = codec.encode(internet.video)
    assert z.shape == (24, channels, 8, 8, 8)
    assert 0.2 < float(z.std()) < 2.0
    pooled = F.interpolate(F.avg_pool3d(internet.video, (1, 4, 4)), scale_factor=(1, 4, 4), mode="nearest")
    assert torch.allclose(codec.decode(z), pooled, atol=1e-5)
    assert torch.equal(ToyLatentCodec(channels).encode(internet.video), z)
    with pytest.raises(ValueError):
        codec.decode(torch.zeros(1, channels + 1, 1, 2, 2))


def test_unknown_distribution():
    with pytest.raises(ValueError, match="internet"):
        make_clips(1, "cartoon")


def test_parse_caption_reads_every_generated_caption():
    from adapters.synthetic_video import parse_caption

    clips = make_clips(12, "internet", seed=5, frames=2, size=16)
    for caption, tokens in zip(clips.captions, clips.tokens):
        assert parse_caption(caption).tolist() == [tokens.tolist()]
    # any order, filler words, and "_" / "-" in multi-word values
    a = parse_caption("a pan-right shot of an orbit of striped blob in sunset colours stripes")
    assert a.tolist() == parse_caption(domain_caption_text()).tolist()


def test_parse_caption_errors_name_the_attribute():
    from adapters.synthetic_video import parse_caption

    with pytest.raises(ValueError, match="camera names none; use one of: static, pan left"):
        parse_caption("sunset stripes blob orbit")
    with pytest.raises(ValueError, match=r"palette names several \(sunset, ocean\)"):
        parse_caption("sunset ocean stripes blob orbit static")


def test_synthetic_codec_is_the_synthetic_family_space():
    from adapters.domain_model import FAMILY_SPECS, family_config, preset_config
    from adapters.synthetic_video import make_style_clips, synthetic_codec

    codec = synthetic_codec()
    spec = FAMILY_SPECS["synthetic"]
    assert codec.latent_channels == spec["latent_channels"] and codec.pool == spec["spatial_compression"]
    assert codec.lapped and codec.window == 16 and spec["code_version"] == 2
    video = make_style_clips(2, "sunset", seed=1, frames=3).video
    lat = codec.encode(video)
    assert lat.shape == (2, 16, 3, 8, 8)
    # the linear map the ComfyUI preview uses (no offset) gives every cell's mean colour, up to the blend
    # with its neighbours that the lapped window adds
    cell_mean = F.avg_pool3d(video, (1, 8, 8)) * 2 - 1
    err = (torch.einsum("ck,nk...->nc...", codec.unproj, lat) - cell_mean).abs()
    assert err.mean() < 0.01 and err.max() < 0.2
    # a field of one colour maps to exactly that colour
    flat = torch.tensor([0.8, 0.3, 0.1]).reshape(1, 3, 1, 1, 1).expand(1, 3, 2, 64, 64)
    assert torch.allclose(torch.einsum("ck,nk...->nc...", codec.unproj, codec.encode(flat)),
                          (flat[..., :8, :8] * 2 - 1).mean((-1, -2), keepdim=True).expand(1, 3, 2, 8, 8), atol=0.02)
    assert torch.equal(synthetic_codec().basis, codec.basis)  # the same numbers every time
    assert family_config("synthetic").text_dim == spec["text_dim"]
    with pytest.raises(ValueError, match="no reference prior"):
        preset_config("xs", "synthetic")


def test_lapped_code_is_exact_with_every_direction_and_has_no_cell_seams():
    """With all 768 directions of a 16 x 16 window the lapped code reproduces any clip exactly (the tapers'
    overlap is divided out, borders included); with the shipped 16 it keeps the clips' own smoothness across
    the 8-pixel cell edges, where the block code of the first version left a seam on every real clip."""
    from adapters.synthetic_video import PatchCodec, fit_patch_codec, make_style_clips, synthetic_codec
    from devtools.drawing import mosaic_ratio

    full = PatchCodec(torch.eye(768), torch.ones(768), 8, 16)
    v = make_style_clips(2, "ocean", seed=1, frames=2).video
    assert (full.decode(full.encode(v)) - v).abs().max() < 1e-5
    held = make_style_clips(24, "broad", seed=7000, frames=4).video
    block = fit_patch_codec(window=8, clips_per_set=16)
    codec = synthetic_codec()
    raw = mosaic_ratio(held, 8)
    lapped, blocky = (mosaic_ratio(c.decode(c.encode(held)), 8) for c in (codec, block))
    assert lapped < 1.05 * raw and blocky > 1.8 * raw, (raw, lapped, blocky)
    # a random latent decodes without seams too: the decoder cannot draw a tile edge
    assert mosaic_ratio(codec.decode(torch.randn(4, 16, 2, 8, 8)), 8) < 1.1
    with pytest.raises(ValueError, match="window 12"):
        PatchCodec(torch.eye(432), torch.ones(432), 8, 12)


def test_patch_codec_keeps_detail_inside_a_cell():
    """The lapped patch code keeps shapes and textures (an 8 x 8 mean pool does not)."""
    from adapters.synthetic_video import DOMAIN_STYLES, fit_patch_codec, make_style_clips, synthetic_codec

    codec = synthetic_codec()
    for style in ("broad",) + tuple(DOMAIN_STYLES):
        v = make_style_clips(6, style, seed=9).video
        err = (codec.decode(codec.encode(v)) - v).pow(2).mean().sqrt()
        pooled = F.interpolate(F.avg_pool3d(v, (1, 8, 8)), scale_factor=(1, 8, 8), mode="nearest")
        assert err < 0.035 and err < 0.6 * (pooled - v).pow(2).mean().sqrt(), style
    # the shipped file is what fit_patch_codec makes today
    refit = fit_patch_codec()
    assert (refit.basis.T @ codec.basis).diagonal().abs().min() > 0.99
    with pytest.raises(ValueError, match="multiples of 8"):
        codec.encode(torch.zeros(1, 3, 2, 12, 12))


def test_style_clips():
    from adapters.synthetic_video import (DOMAIN_STYLES, PALETTES, TEXTURES, make_style_clips, parse_caption,
                                          style_caption_text, style_tokens)

    a = make_style_clips(3, "ocean", seed=2)
    assert a.video.shape == (3, 3, 8, 64, 64) and 0 <= float(a.video.min()) and float(a.video.max()) <= 1
    assert torch.equal(make_style_clips(3, "ocean", seed=2).video, a.video)
    assert not torch.equal(make_style_clips(3, "ocean", seed=3).video, a.video)
    for style in DOMAIN_STYLES:
        assert parse_caption(style_caption_text(style)).tolist() == style_tokens(style).tolist()
    # broad captions: shape / motion / camera words are true, palette and texture words are random
    broad = make_style_clips(200, "broad", seed=0, frames=2, size=16)
    pal = [c.split(", ")[0] for c in broad.captions]
    tex = [c.split(", ")[1] for c in broad.captions]
    assert len(set(pal)) == len(PALETTES) and len(set(tex)) == len(TEXTURES)
    with pytest.raises(ValueError, match="unknown style"):
        make_style_clips(1, "cartoon")
