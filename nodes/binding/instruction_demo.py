"""The tiny instruction demo's models: the frozen Wan bases of the text-video prediction miniature (shipped in
``adapters/weights``, made by ``benchmarks/fca_tvp.py --pretrain-base``), a stand-in VAE for their latent code,
their stand-in text encoder and held-out scenes of the miniature's world (``adapters/instruction_world``). The
miniature's SVD-architecture base (``tvp_svd_base``, made by ``benchmarks/aid_tvp.py --pretrain-base``, which AID's
shipped adapters are trained on) is built and read here too (``svd_i2v``, ``base_model``); no demo uses it yet.

A base of this miniature is a Wan 2.1 text-to-video DiT of ComfyUI's own class that was pretrained with the clean
first latent frame in place of the noisy one (as Wan 2.2's text-and-image-to-video model is trained). ComfyUI's
own inpainting path does exactly that at sampling time when the latent carries a noise mask that keeps its first
frame and the model hands the kept frame over clean (what Wan 2.2's model class does), so the demo MODEL gets that
one object patch and runs on every native sampler.
"""

from __future__ import annotations

import functools
import os

import torch

from ...adapters import instruction_world as world
from ..common import VideoAdapterError
from .demo import WEIGHTS_DIR

ADAPTERS_DIR = os.path.join(WEIGHTS_DIR, "video_adapters")  # shipped adapter files (listed by Load Adapters)
BASES = world.DEMO_FILES  # the demo's choice -> the shipped base file and the FCA adapters trained on it
HEADS = 2         # the miniature's attention heads (the tensors do not show them)
TEXT_LENGTH = 24  # words per prompt the bases were trained with (longer prompts are cut)
SHIFT = world.DEMO_SHIFT  # the flow shift the bases were trained and measured with
TEXT_KEY = "video_adapters_instruction_text"  # the MODEL attachment that says how its prompts are encoded


def wan_t2v(channels: int, dim: int, ffn: int, heads: int, layers: int, text_dim: int, patch: int = 2,
            shift: float | None = None):
    """A Wan 2.1 text-to-video MODEL of ComfyUI's own class at any size (ComfyUI's detection pins the text width
    to 4096), fp32 on the CPU, its weights as ComfyUI leaves them (uninitialised: load or initialise them).
    ``shift``: the flow shift its scheduler uses (Wan's default otherwise)."""
    import comfy.latent_formats
    import comfy.model_patcher
    import comfy.supported_models

    cfg = {"image_model": "wan2.1", "model_type": "t2v", "patch_size": (1, patch, patch), "in_dim": channels,
           "dim": dim, "ffn_dim": ffn, "freq_dim": 256, "text_dim": text_dim, "out_dim": channels,
           "num_heads": heads, "num_layers": layers, "window_size": (-1, -1), "qk_norm": True,
           "cross_attn_norm": True, "eps": 1e-6}
    mc = comfy.supported_models.WAN21_T2V(cfg)
    # Wan 2.1's latent format for 16 channels (the stand-in VAE below speaks it), Wan 2.2's for 48
    mc.latent_format = (comfy.latent_formats.Wan21 if channels == 16 else comfy.latent_formats.Wan22)()
    if shift is not None:
        mc.sampling_settings = dict(mc.sampling_settings, shift=float(shift))
    mc.set_inference_dtype(torch.float32, None)
    base = mc.get_model({})
    base.requires_grad_(False)
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def base_metadata(path: str) -> dict:
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        return f.metadata() or {}


SVD_HEAD_CHANNELS = 16  # the SVD-architecture base's channels per attention head (the tensors do not show them)


def svd_i2v(channels: int, width: int, context_dim: int, flow_shift: float | None = None,
            head_channels: int = SVD_HEAD_CHANNELS):
    """An SVD image-to-video MODEL of ComfyUI's own class at miniature size (two UNet levels of ``width`` and twice
    ``width`` channels, one residual and one transformer block each, temporal layers as SVD's), fp32 on the CPU,
    its weights as ComfyUI leaves them (uninitialised: load or initialise them). ``flow_shift``: the same UNet as a
    flow model (ComfyUI's FLOW model type with that shift) in place of SVD's EDM v-prediction."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models

    cfg = {"model_channels": width, "in_channels": 2 * channels, "out_channels": channels,
           "use_linear_in_transformer": True, "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1],
           "channel_mult": [1, 2], "num_res_blocks": [1, 1], "context_dim": context_dim, "adm_in_channels": 768,
           "use_temporal_attention": True, "use_temporal_resblock": True, "image_size": 32,
           "transformer_depth_middle": 1, "use_spatial_transformer": True, "extra_ff_mix_layer": True,
           "use_spatial_context": True, "merge_strategy": "learned_with_images", "merge_factor": 0.0,
           "video_kernel_size": [3, 1, 1], "disable_temporal_crossattention": False, "num_classes": "sequential",
           "num_head_channels": head_channels, "dtype": torch.float32}
    mc = comfy.supported_models.SVD_img2vid(cfg)
    mc.unet_config["num_head_channels"] = head_channels  # the class pins 64 (SVD's own)
    mc.set_inference_dtype(torch.float32, None)
    if flow_shift is None:
        base = mc.get_model({})
    else:
        mc.sampling_settings = {"shift": float(flow_shift), "multiplier": 1000}
        base = comfy.model_base.SVD_img2vid(mc, model_type=comfy.model_base.ModelType.FLOW)
    base.requires_grad_(False)
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def base_model(path: str, heads: int = HEADS, shift: float | None = None):
    """A base file of the miniature as a MODEL, sizes read from its tensors: a Wan 2.1 text-to-video DiT (tensors
    under ``dit/``, its spatial patch in the metadata; ``heads``, which the tensors do not show, and ``shift``
    apply to it) or an SVD image-to-video UNet (tensors under ``unet/``; built as the flow model it was trained as
    when its metadata says ``sampling: flow``, else as SVD's EDM model)."""
    from safetensors.torch import load_file

    meta = base_metadata(path)
    arch = meta.get("architecture")
    if meta.get("kind") != "tvp_base" or arch not in ("WAN21_T2V", "SVD_img2vid"):
        raise VideoAdapterError(f"{os.path.basename(path)} is not a base of the instruction miniature")
    tensors = load_file(path)
    if arch == "SVD_img2vid":
        sd = {k[5:]: v.float() for k, v in tensors.items() if k.startswith("unet/")}
        channels, width = sd["out.2.weight"].shape[:2]
        flow = meta.get("sampling", "edm") == "flow"
        model = svd_i2v(channels, width, sd["input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape[1],
                        flow_shift=float(meta.get("flow_shift", 3.0)) if flow else None,
                        head_channels=int(meta.get("head_channels", SVD_HEAD_CHANNELS)))
        model.model.diffusion_model.load_state_dict(sd)
        return model
    patch = int(meta.get("patch", 2))
    sd = {k[4:]: v.float() for k, v in tensors.items() if k.startswith("dit/")}
    dim, text_dim = sd["text_embedding.0.weight"].shape
    layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    model = wan_t2v(channels=sd["head.head.weight"].shape[0] // patch ** 2, dim=dim,
                    ffn=sd["blocks.0.ffn.0.weight"].shape[0], heads=heads, layers=layers, text_dim=text_dim,
                    patch=patch, shift=shift)
    model.model.diffusion_model.load_state_dict(sd)
    return model


class PatchCodeVAE:
    """The miniature's latent code as a VAE: the linear patch code each base file carries (4 x 4 pixels per latent
    cell, 16 channels, no temporal compression) with its normalisation, speaking Wan 2.1's latent space like Wan's
    VAE, so VAE Decode, VAE Encode and Initial Frames Conditioning take it as they take Wan's."""

    def __init__(self, code: world.PatchCode, mean: torch.Tensor, std: torch.Tensor):
        import comfy.latent_formats

        self.code, self.mean, self.std = code, mean.float().reshape(1, -1, 1, 1, 1), std.float().reshape(1, -1, 1, 1, 1)
        self.format = comfy.latent_formats.Wan21()
        self.latent_channels = code.channels
        self.downscale_ratio = self.upscale_ratio = code.patch

    def spacial_compression_encode(self) -> int:
        return self.code.patch

    def spacial_compression_decode(self) -> int:
        return self.code.patch

    def temporal_compression_decode(self) -> int:
        return 1

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """IMAGE ``[N, H, W, C]`` in 0..1 -> one video latent ``[1, 16, N, H/4, W/4]`` (its frames: the images)."""
        p = self.code.patch
        if pixels.ndim != 4 or pixels.shape[1] % p or pixels.shape[2] % p:
            raise VideoAdapterError(f"the instruction demo's VAE encodes images [N, H, W, 3] with H and W multiples "
                                    f"of {p}; got {list(pixels.shape)}")
        video = pixels[..., :3].float().cpu().movedim(-1, 1).unsqueeze(0)  # [1, N, 3, H, W]
        z = self.code.encode(video).permute(0, 2, 1, 3, 4)  # [1, C, N, h, w], the base's own latents
        return self.format.process_out((z - self.mean) / self.std)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Video latents ``[B, 16, T, h, w]`` -> frames ``[B, T, 4h, 4w, 3]`` in 0..1."""
        if latent.ndim != 5 or latent.shape[1] != self.code.channels:
            raise VideoAdapterError(f"the instruction demo's VAE decodes video latents [B, {self.code.channels}, T, "
                                    f"H, W]; got {list(latent.shape)}")
        z = self.format.process_in(latent.float().cpu()) * self.std + self.mean
        return self.code.decode(z.permute(0, 2, 1, 3, 4)).movedim(2, -1).contiguous()


class InstructionText:
    """How a base reads prompts: the miniature's stand-in text encoder at the base's version (text code), width and
    length. Attached to the demo MODEL so the prompt node encodes for the model it is given."""

    def __init__(self, code: int, dim: int, length: int = TEXT_LENGTH):
        self.code, self.dim, self.length = int(code), int(dim), int(length)

    def encode(self, text: str) -> torch.Tensor:
        feats, _ = world.text_batch([text], self.dim, self.length, code=self.code)
        return feats  # [1, length, dim]; the empty text is all zeros, the unconditional context it was trained with

    def on_model_patcher_clone(self):
        return self


def _clean_kept_frames(latent_image, **_):
    """``scale_latent_inpaint`` of the demo MODEL: the frames a noise mask keeps reach the model clean."""
    return latent_image


def text_code(base_file: str, adapters_file: str) -> int:
    """The text code the demo encodes a base's prompts with: the one its shipped adapters were trained with, else
    the base's own. (The single-phase base was pretrained under code 1 on texts without "then", which read the same
    under code 2, and its adapters were trained under code 2: so the base alone and with FCA see the same prompt
    features, as in the benchmark that measured them.)"""
    from ...adapters.files import read_metadata

    code = int(base_metadata(base_file).get("text_code", 1))
    if os.path.isfile(adapters_file):
        code = int(read_metadata(adapters_file).get("training", {}).get("text_code", code))
    if code not in world.TEXT_CODES:
        raise VideoAdapterError(f"{os.path.basename(base_file)} reads prompts with text code {code}, which this "
                                f"version does not know ({world.TEXT_CODES}): update the pack")
    return code


@functools.lru_cache(maxsize=len(BASES))
def _base_parts(name: str):
    if name not in BASES:
        raise VideoAdapterError(f"base: {name!r} is not one of {sorted(BASES)}")
    path = os.path.join(WEIGHTS_DIR, BASES[name][0])
    if not os.path.isfile(path):
        raise VideoAdapterError(f"the pack's demo weights are missing ({BASES[name][0]} in adapters/weights); "
                                "reinstall the pack")
    from safetensors.torch import load_file

    code = text_code(path, os.path.join(ADAPTERS_DIR, BASES[name][1]))
    tensors = load_file(path)
    vae = PatchCodeVAE(world.PatchCode.from_state_dict(tensors), tensors["norm/mean"], tensors["norm/std"])
    return path, vae, InstructionText(code, tensors["dit/text_embedding.0.weight"].shape[1])


def instruction_models(name: str):
    """The demo's MODEL (the base, frozen, with its kept first frame handed over clean and its prompt encoder
    attached) and its VAE."""
    path, vae, text = _base_parts(name)
    model = base_model(path, shift=SHIFT)
    model.add_object_patch("scale_latent_inpaint", _clean_kept_frames)
    model.attachments[TEXT_KEY] = text
    return model, vae


def prompt_conditioning(model, text: str) -> tuple[list, list]:
    """Positive and negative CONDITIONING of ``text`` for a demo MODEL (the negative: the empty prompt)."""
    enc = getattr(model, "attachments", {}).get(TEXT_KEY)
    if enc is None:
        raise VideoAdapterError("model: Tiny Instruction Prompt encodes prompts for the Tiny Instruction Models' "
                                "MODEL (or that MODEL after Load Adapters); connect that one")
    try:
        world.parse_instruction(text.strip().lower())
    except ValueError as e:
        raise VideoAdapterError(f"instruction: {e}. The demo's bases know instructions such as 'move the red "
                                "circle left, then up' or 'lift the blue square, then drop it' (colours: "
                                f"{', '.join(world.COLOURS)}; shapes: {', '.join(world.SHAPES)}; directions: "
                                f"{', '.join(world.DIRECTIONS)})") from None
    return [[enc.encode(text), {}]], [[enc.encode(""), {}]]


def scene(seed: int):
    """Held-out scene ``seed``: its first frame ``[1, 32, 32, 3]``, a two-phase instruction that fits it, the same
    instruction with its phases swapped, and the true clip of each ``[8, 32, 32, 3]``."""
    clips = world.demo_scene(seed)
    frames = clips.videos.permute(0, 1, 3, 4, 2).contiguous()  # [2, T, H, W, 3]
    return frames[0, :1], clips.plans[0].instruction, clips.plans[1].instruction, frames[0], frames[1]


def first_frame_latent(vae, image: torch.Tensor, frames: int) -> dict:
    """A LATENT of ``frames`` latent frames whose first is ``image`` encoded and kept by a noise mask (0 there,
    1 elsewhere): samplers then draw only the frames after it."""
    first = vae.encode(image[:1, :, :, :3])
    if first.ndim != 5:
        raise VideoAdapterError(f"vae: a video VAE is needed (latents [B, C, T, H, W]); got {list(first.shape)}")
    first = first[:, :, :1]
    samples = torch.zeros(1, first.shape[1], int(frames), *first.shape[3:])
    samples[:, :, :1] = first
    mask = torch.ones(1, 1, int(frames), *first.shape[3:])
    mask[:, :, :1] = 0.0
    return {"samples": samples, "noise_mask": mask}
