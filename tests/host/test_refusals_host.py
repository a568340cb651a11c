"""Mismatched or wrong inputs of the newer nodes are refused at the node that got them, before any sampling or
training, with a message naming the input and what would fit; a refused trainer writes nothing."""

import os

import pytest
import torch

from devtools.tiny_models import SVD_CONTEXT, WAN_TEXT_DIM, ToyClipVision, ToyTextEncoder, ToyVAE, tiny_svd


def files_under(root):
    return {os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs}


@pytest.fixture(scope="module")
def wan(host, tiny):
    return tiny.load("tiny_wan_prior.safetensors")


def wan_clips(n=1):
    return {"samples": torch.randn(n, 16, 3, 4, 4, generator=torch.Generator().manual_seed(0))}


def wan_text(seed=0):
    return [[torch.randn(1, 8, WAN_TEXT_DIM, generator=torch.Generator().manual_seed(seed)), {}]]


def train(host, model, kind, clips, positive, batch=1, settings="", shift="none", frames=0):
    return host.call("VA_TrainAdapter", model, clips, positive, kind, frames, 2, 1e-3, batch, 0, shift, 0,
                     "test/refused", settings=settings)


TRAINER_CASES = [  # (what the user did, kind, batch, settings, words the message must hold)
    ("aid on a Wan model", "aid", 1, "", ["kind: aid adapters do not fit WAN21_T2V", "svd"]),
    ("fca setting of the wrong type", "fca", 1, '{"scale_init": "big"}',
     ["setting 'scale_init' of fca adapters takes a number", '"big"', '{"scale_init": 0.1}']),
    ("unknown fca setting: the example is fca's", "fca", 1, '{"spatial_ratio": 0.25}',
     ["fca adapters have no setting 'spatial_ratio'", "queries_per_frame", '"text_module": "layerwise"']),
    ("batch size above the clips", "fca", 64, "", ["batch_size: 64 is more than the 1 clip(s)", "at most 1"]),
]


@pytest.mark.parametrize("case", TRAINER_CASES, ids=[c[0] for c in TRAINER_CASES])
def test_train_adapters_refuses_before_training(host, wan, case):
    _, kind, batch, settings, words = case
    before = files_under(host.models_dir)
    with pytest.raises(Exception) as err:
        train(host, wan, kind, wan_clips(), wan_text(), batch=batch, settings=settings)
    for w in words:
        assert w in str(err.value), f"{w!r} not in {err.value}"
    assert files_under(host.models_dir) == before


def test_svd_conditioning_per_clip_refuses_a_video_vae(host):
    frames = torch.rand(2, 32, 32, 3, generator=torch.Generator().manual_seed(1))
    with pytest.raises(Exception, match=r"vae: it encodes a frame to latents of shape \[1, 16, 1, 4, 4\].*not a "
                                        "video VAE"):
        host.call("VA_SVDClipConditioning", ToyClipVision(SVD_CONTEXT), ToyVAE(video=True), frames, 32, 32, 127, 6,
                  0.0)


def test_aid_conditioning_refuses_another_models_conditioning(host):
    """Wan text conditionings given to AID Conditioning (SVD): refused there, not as a matrix error in KSampler."""
    with pytest.raises(Exception, match=r"positive: no SVD start-image latent \(concat_latent_image: none.*connect "
                                        "SVD_img2vid_Conditioning"):
        host.call("VA_AIDConditioning", wan_text(0), wan_text(1), ToyTextEncoder(32), "lift it", "", 4)


def test_aid_conditioning_with_the_model_checks_the_width(host):
    svd = tiny_svd()
    image = torch.randn(1, 4, 4, 4)
    wide = [[torch.randn(1, 1, 2 * SVD_CONTEXT), {"concat_latent_image": image}]]
    with pytest.raises(Exception, match=rf"positive: features of shape \[1, 1, {2 * SVD_CONTEXT}\].*"
                                        rf"{SVD_CONTEXT}-wide image embedding"):
        host.call("VA_AIDConditioning", wide, wide, ToyTextEncoder(32), "lift it", "", 4, model=svd)


def test_initial_frames_of_another_size_are_refused_when_sampling(host, wan):
    """Initial Frames Conditioning cannot see the video; the FCA model refuses a first frame of another size."""
    attach = host.pack_module("nodes.binding.attach")
    torch.manual_seed(0)
    ad = attach.new_adapters("fca", wan, {"frames": 3, "queries_per_frame": 2, "text_width": 32, "text_heads": 2})
    model = attach.attach_adapters(wan, ad, 1.0)
    image = torch.rand(1, 96, 128, 3, generator=torch.Generator().manual_seed(0))  # 128 x 96 for a 32 x 32 video
    pos, neg = host.call("VA_InitialFramesConditioning", wan_text(0), wan_text(1), ToyVAE(video=True), image, 1, 1)
    latent = {"samples": torch.zeros(1, 16, 3, 4, 4)}
    with pytest.raises(Exception, match=r"initial frames are 16x12 latent cells, the video 4x4.*Initial Frames "
                                        "Conditioning an image of the video's size"):
        host.call("KSampler", model, 0, 1, 1.0, "euler", "simple", pos, neg, latent, 1.0)


def test_dual_cfg_guider_refuses_several_start_images_for_one_video(host):
    """SVD Conditioning per Clip's output (one entry per training clip) wired into sampling: refused, not averaged."""
    frames = torch.rand(4, 32, 32, 3, generator=torch.Generator().manual_seed(1))
    pos, neg = host.call("VA_SVDClipConditioning", ToyClipVision(SVD_CONTEXT), ToyVAE(video=False), frames, 32, 32,
                         127, 6, 0.0)
    with pytest.raises(Exception, match="positive carries 4 start images .* sampling one video takes one"):
        host.call("VA_DualCFGGuider", tiny_svd(), pos, neg, 2.0, 4.0)
