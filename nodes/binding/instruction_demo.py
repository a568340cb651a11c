"""The tiny instruction demo's models: the frozen Wan bases of the text-video prediction miniature (shipped in
``adapters/weights``, made by ``benchmarks/fca_tvp.py --pretrain-base``), a stand-in VAE for their latent code,
their stand-in text encoder and held-out scenes of the miniature's world (``adapters/instruction_world``). The
miniature's SVD-architecture base (``tvp_svd_base``, made by ``benchmarks/aid_tvp.py --pretrain-base``, which AID's
shipped adapters are trained on) is the AID demo's: built and read here too (``svd_i2v``, ``base_model``), with the
stand-ins SVD's own nodes need around it (an image encoder for SVD_img2vid_Conditioning, a text encoder for AID
Conditioning, a rule-based state writer for MLLM State Prompt: ``encoders``).

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
# the demo's choice of base -> the shipped base file and the adapters trained on it (FCA for the Wan bases, AID for
# the SVD-architecture one)
BASES = {**world.DEMO_FILES, world.AID_DEMO_BASE: world.AID_DEMO_FILES}
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


SVD_LATENT_SCALE = 0.18215  # SD / SVD's latent scale: the SVD-architecture base sees its code's latents times it
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
    mc.latent_format = patch_code_format(channels)
    mc.set_inference_dtype(torch.float32, None)
    if flow_shift is None:
        base = mc.get_model({})
    else:
        mc.sampling_settings = {"shift": float(flow_shift), "multiplier": 1000}
        base = comfy.model_base.SVD_img2vid(mc, model_type=comfy.model_base.ModelType.FLOW)
    base.requires_grad_(False)
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


@functools.lru_cache(maxsize=None)
def _patch_code_format_class():
    import comfy.latent_formats

    class TinyPatchCode(comfy.latent_formats.LatentFormat):
        """The SVD-architecture base's latent format: its patch code's channels, scaled as SD's VAE latents are
        (what the base was trained with), no latent preview colours."""

        scale_factor = SVD_LATENT_SCALE

    return TinyPatchCode


def patch_code_format(channels: int):
    fmt = _patch_code_format_class()()
    fmt.latent_channels = int(channels)
    return fmt


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
    cell, 16 channels, no temporal compression), so VAE Decode, VAE Encode and the conditioning nodes take it as
    they take the real VAE of the base's family. Two layouts:

    * ``video`` (the Wan bases): one video latent ``[1, 16, T, h, w]`` in Wan 2.1's latent space (the code's
      latents normalised by the base file's ``mean`` and ``std``), like Wan's VAE;
    * ``frames`` (the SVD-architecture base): one latent ``[N, 16, h, w]`` per image, the code's latents divided by
      SD's latent scale, as SD's image VAE gives SVD its frames."""

    def __init__(self, code: world.PatchCode, mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                 layout: str = "video"):
        import comfy.latent_formats

        if layout not in ("video", "frames"):
            raise ValueError(f"layout {layout!r}: 'video' or 'frames'")
        self.code, self.layout = code, layout
        if layout == "video":
            self.format = comfy.latent_formats.Wan21()
            self.mean, self.std = mean.float().reshape(1, -1, 1, 1, 1), std.float().reshape(1, -1, 1, 1, 1)
        else:
            self.format, self.mean, self.std = patch_code_format(code.channels), 0.0, 1.0
        self.latent_channels = code.channels
        self.downscale_ratio = self.upscale_ratio = code.patch

    def spacial_compression_encode(self) -> int:
        return self.code.patch

    def spacial_compression_decode(self) -> int:
        return self.code.patch

    def temporal_compression_decode(self) -> int | None:
        return 1 if self.layout == "video" else None

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """IMAGE ``[N, H, W, C]`` in 0..1 -> one video latent ``[1, 16, N, H/4, W/4]`` (its frames: the images), or
        ``[N, 16, H/4, W/4]`` (one latent per image) in the ``frames`` layout."""
        p = self.code.patch
        if pixels.ndim != 4 or pixels.shape[1] % p or pixels.shape[2] % p:
            raise VideoAdapterError(f"the instruction demo's VAE encodes images [N, H, W, 3] with H and W multiples "
                                    f"of {p}; got {list(pixels.shape)}")
        video = pixels[..., :3].float().cpu().movedim(-1, 1).unsqueeze(0)  # [1, N, 3, H, W]
        z = self.code.encode(video)  # [1, N, C, h, w], the base's own latents
        if self.layout == "frames":
            return self.format.process_out(z[0])
        return self.format.process_out((z.permute(0, 2, 1, 3, 4) - self.mean) / self.std)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Video latents ``[B, 16, T, h, w]`` -> frames ``[B, T, 4h, 4w, 3]`` in 0..1; in the ``frames`` layout
        latents ``[N, 16, h, w]`` -> images ``[N, 4h, 4w, 3]``."""
        c = self.code.channels
        if self.layout == "frames":
            if latent.ndim != 4 or latent.shape[1] != c:
                raise VideoAdapterError(f"this VAE decodes the SVD-architecture demo base's latents [N, {c}, H, W]; "
                                        f"got {list(latent.shape)}")
            z = self.format.process_in(latent.float().cpu())
            return self.code.decode(z[None])[0].movedim(1, -1).contiguous()
        if latent.ndim != 5 or latent.shape[1] != c:
            raise VideoAdapterError(f"the instruction demo's VAE decodes video latents [B, {c}, T, H, W]; got "
                                    f"{list(latent.shape)}")
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


def is_aid_base(name: str) -> bool:
    return name == world.AID_DEMO_BASE


@functools.lru_cache(maxsize=len(BASES))
def _base_parts(name: str):
    if name not in BASES:
        raise VideoAdapterError(f"base: {name!r} is not one of {sorted(BASES)}")
    path = os.path.join(WEIGHTS_DIR, BASES[name][0])
    if not os.path.isfile(path):
        raise VideoAdapterError(f"the pack's demo weights are missing ({BASES[name][0]} in adapters/weights); "
                                "reinstall the pack")
    from safetensors.torch import load_file

    tensors = load_file(path)
    code = world.PatchCode.from_state_dict(tensors)
    if is_aid_base(name):
        return path, PatchCodeVAE(code, layout="frames"), InstructionText(1, world.AID_TEXT_DIM, world.AID_TEXT_LENGTH)
    vae = PatchCodeVAE(code, tensors["norm/mean"], tensors["norm/std"])
    text = InstructionText(text_code(path, os.path.join(ADAPTERS_DIR, BASES[name][1])),
                           tensors["dit/text_embedding.0.weight"].shape[1])
    return path, vae, text


def instruction_models(name: str):
    """The demo's MODEL (the base, frozen, with its kept first frame handed over clean and its prompt encoder
    attached) and its VAE."""
    path, vae, text = _base_parts(name)
    model = base_model(path, shift=None if is_aid_base(name) else SHIFT)
    model.add_object_patch("scale_latent_inpaint", _clean_kept_frames)
    model.attachments[TEXT_KEY] = text
    return model, vae


def _text_encoder(model, node: str):
    enc = getattr(model, "attachments", {}).get(TEXT_KEY)
    if enc is None:
        raise VideoAdapterError(f"model: {node} encodes prompts for the Tiny Instruction Models' MODEL (or that MODEL "
                                "after Load Adapters); connect that one")
    return enc


def _check_instruction(text: str) -> None:
    try:
        world.parse_instruction(text.strip().lower())
    except ValueError as e:
        raise VideoAdapterError(f"instruction: {e}. The demo's bases know instructions such as 'move the red "
                                "circle left, then up' or 'lift the blue square, then drop it' (colours: "
                                f"{', '.join(world.COLOURS)}; shapes: {', '.join(world.SHAPES)}; directions: "
                                f"{', '.join(world.DIRECTIONS)})") from None


def _is_svd(model) -> bool:
    from .host import describe

    return describe(model).family == "svd"


def prompt_conditioning(model, text: str) -> tuple[list, list]:
    """Positive and negative CONDITIONING of ``text`` for a demo MODEL (the negative: the empty prompt)."""
    enc = _text_encoder(model, "Tiny Instruction Prompt")
    if _is_svd(model):
        raise VideoAdapterError(
            f"model: the {world.AID_DEMO_BASE} base is an SVD, whose conditioning is its first frame, not a prompt: "
            "make it with SVD_img2vid_Conditioning (clip_vision from Tiny Instruction Encoders) and add the "
            "instruction with AID Conditioning (clip from Tiny Instruction Encoders)")
    _check_instruction(text)
    return [[enc.encode(text), {}]], [[enc.encode(""), {}]]


class TinyTextEncoder:
    """The AID demo's text encoder, a CLIP as AID Conditioning (and CLIPTextEncode) call one: the miniature's
    stand-in text features of an instruction or a state sentence."""

    def __init__(self, text: InstructionText):
        self.text = text

    def tokenize(self, text: str, **_) -> str:
        return text

    def encode_from_tokens_scheduled(self, tokens: str, **_) -> list:
        return [[self.text.encode(tokens), {}]]

    def encode_from_tokens(self, tokens: str, return_pooled: bool = False, **_):
        cond = self.text.encode(tokens)
        return (cond, cond.mean(1)) if return_pooled else cond


class _ImageEmbeds:
    def __init__(self, image_embeds: torch.Tensor):
        self.image_embeds = image_embeds

    def __getitem__(self, key):
        return getattr(self, key)


class TinyImageEncoder:
    """The AID demo's image encoder, a CLIP_VISION as SVD_img2vid_Conditioning calls one: the miniature's stand-in
    image embedding of the first frame (``world.image_embedding``), the cross-attention context the base was
    trained with."""

    def __init__(self, dim: int):
        self.dim = int(dim)

    def encode_image(self, image: torch.Tensor, crop: bool = True, **_) -> _ImageEmbeds:
        return _ImageEmbeds(world.image_embedding(image[..., :3].float().cpu().movedim(-1, 1), self.dim))


class RuleStates:
    """The AID demo's multimodal LLM for MLLM State Prompt: reads the instruction from the request (the grammar of
    the miniature is known) and answers with its states, one per phase as the rule-based decomposer the AID
    adapters were trained with writes them, in the JSON a real MLLM is asked for. Asked for more states than the
    instruction has phases, it repeats the last (the same per-frame states: a repeated state changes nothing)."""

    def generate(self, messages: list, image, seed: int, max_tokens: int, schema: dict | None = None) -> str:
        import json
        import re

        text = " ".join(part.get("text", "") for m in messages if m.get("role") == "user"
                        for part in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}]))
        found = re.search(r"Instruction:\s*(.+)", text)
        n = re.search(r"exactly (\d+) successive states", text)
        instruction = found.group(1).strip() if found else ""
        _check_instruction(instruction)
        states = world.state_texts(instruction)
        want = int(n.group(1)) if n else len(states)
        states = (states + [states[-1]] * want)[:want] if want >= len(states) else states[:want]
        return json.dumps({"states": states})


def encoders(model):
    """The AID demo's stand-ins (text encoder, image encoder, state writer) for its SVD-architecture MODEL."""
    enc = _text_encoder(model, "Tiny Instruction Encoders")
    if not _is_svd(model):
        raise VideoAdapterError(f"model: Tiny Instruction Encoders are for the {world.AID_DEMO_BASE} base (an SVD, "
                                "conditioned through SVD_img2vid_Conditioning and AID Conditioning); a Wan base of "
                                "the demo reads its instruction from Tiny Instruction Prompt")
    context = int(model.model.model_config.unet_config["context_dim"])
    return TinyTextEncoder(enc), TinyImageEncoder(context), RuleStates()


def scene(seed: int, pair: str = world.DEMO_PAIRS[0]):
    """Held-out scene ``seed``: its first frame ``[1, 32, 32, 3]``, two instructions that fit it (``pair``: a
    two-phase instruction and the same with its phases swapped, or one motion each in those two directions), and
    the true clip of each ``[8, 32, 32, 3]``."""
    if pair not in world.DEMO_PAIRS:
        raise VideoAdapterError(f"pair: {pair!r} is not one of {', '.join(world.DEMO_PAIRS)}")
    clips = world.demo_scene(seed, pair)
    frames = clips.videos.permute(0, 1, 3, 4, 2).contiguous()  # [2, T, H, W, 3]
    return frames[0, :1], clips.plans[0].instruction, clips.plans[1].instruction, frames[0], frames[1]


def first_frame_latent(vae, image: torch.Tensor, frames: int) -> dict:
    """A LATENT of ``frames`` latent frames whose first is ``image`` encoded and kept by a noise mask (0 there,
    1 elsewhere): samplers then draw only the frames after it. A video VAE gives ``[1, C, frames, h, w]``, an
    image VAE (SVD's layout, frames in the batch) ``[frames, C, h, w]``."""
    first = vae.encode(image[:1, :, :, :3])
    if first.ndim == 4:  # frames in the batch
        samples = torch.zeros(int(frames), *first.shape[1:])
        samples[:1] = first[:1]
        mask = torch.ones(int(frames), 1, *first.shape[2:])
        mask[:1] = 0.0
        return {"samples": samples, "noise_mask": mask}
    if first.ndim != 5:
        raise VideoAdapterError(f"vae: it encodes an image to latents of shape {list(first.shape)}; a video VAE "
                                "([B, C, T, H, W]) or an image VAE ([N, C, H, W]) is needed")
    first = first[:, :, :1]
    samples = torch.zeros(1, first.shape[1], int(frames), *first.shape[3:])
    samples[:, :, :1] = first
    mask = torch.ones(1, 1, int(frames), *first.shape[3:])
    mask[:, :, :1] = 0.0
    return {"samples": samples, "noise_mask": mask}
