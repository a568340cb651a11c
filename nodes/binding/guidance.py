"""The Dual CFG Guider's three conditionings per model family: full, image without text, neither."""

from __future__ import annotations


from ..common import VideoAdapterError, has_image
from ..common import without_image as without_image_extras
from .attach import has_adapter_text, without_adapter_text
from .host import describe


def without_image(conditioning, clip_vision: str):
    """``conditioning`` with its image condition removed (``common.without_image`` per entry)."""
    return [[tensor, without_image_extras(extras, clip_vision)] for tensor, extras in conditioning]


def _has_image(conditioning) -> bool:
    return any(has_image(extras) for _, extras in conditioning)


def dual_conditionings(model, positive, negative, clip_vision: str = "keep"):
    """``(full, image, none, image_only, summary)`` for a model and the positive / negative its native
    image-to-video node made."""
    host = describe(model, "model")
    if host.family == "svd":
        starts = sum(1 for _, e in positive if "concat_latent_image" in e)
        if starts > 1:
            raise VideoAdapterError(
                f"positive carries {starts} start images (SVD Conditioning per Clip makes one per training clip); "
                "sampling one video takes one: connect SVD_img2vid_Conditioning (or AID Conditioning on it) for the "
                "first frame you want")
    if host.family == "svd" and has_adapter_text(positive):
        # SVD with AID adapters: the text is the AID instruction and states (zero features: AID's "no text")
        return positive, without_adapter_text(positive), negative, False, (
            "SVD with AID: full = positive (image + instruction), image = positive with zero instruction features, "
            "none = negative (no image, no instruction)")
    if host.family == "svd":
        # SVD has no text: positive is the image condition, negative SVD's own all-zero "no image" condition
        return positive, None, negative, True, ("SVD: image-only guidance (SVD has no text; text_cfg is not used): "
                                                 "positive = the image condition, negative = no image")
    if host.family == "wan22_5b":
        raise VideoAdapterError(
            "model is Wan 2.2 TI2V 5B, whose start image lives in the latent itself (Wan22ImageToVideoLatent writes it "
            "into the noise latent and the denoise mask): there is no 'no image' prediction to guide against. Use "
            "plain CFG (CFGGuider) with this model, or a Wan 2.1 / 2.2 14B image-to-video model here")
    if not _has_image(positive):
        raise VideoAdapterError(
            f"positive carries no image condition for {host.model_config}: connect the positive and negative outputs "
            "of WanImageToVideo (or WanFirstLastFrameToVideo) with a start_image, or SVD_img2vid_Conditioning")
    if not _has_image(negative):
        raise VideoAdapterError(
            "negative carries no image condition: connect the negative output of the same image-to-video node as "
            "positive (it puts the start image on both), so the image-without-text prediction can be made")
    none = without_image(negative, clip_vision)
    summary = (f"{host.model_config}: full = positive (image + text), image = negative (image + negative text), "
               f"none = negative without the start-image latent and mask, CLIP-vision features {clip_vision}"
               + ("" if any("clip_vision_output" in e for _, e in positive) else " (none connected)"))
    return positive, negative, none, False, summary
