"""Tiny real-architecture models for host tests, built with ComfyUI's own model classes and random
weights, saved where ComfyUI's loaders look, plus test-only helper nodes that stand in for multi-GB
text encoders and VAEs."""

from __future__ import annotations

import os

import torch
from safetensors.torch import save_file

WAN_TEXT_DIM = 4096
SD_TEXT_DIM = 768


def _randomise(module: torch.nn.Module, seed: int, std: float = 0.02):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and ("norm" in name or name.endswith("gamma")):
                p.copy_(1.0 + 0.01 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


SVD_CONTEXT = 64


def tiny_svd(seed: int = 7):
    """A tiny SVD built directly (detection pins the full-size config): one level, 64 channels."""
    import comfy.model_patcher
    import comfy.supported_models

    cfg = {"model_channels": 64, "in_channels": 8, "out_channels": 4, "use_linear_in_transformer": True,
           "transformer_depth": [1], "transformer_depth_output": [1, 1], "channel_mult": [1], "num_res_blocks": [1],
           "context_dim": SVD_CONTEXT, "adm_in_channels": 768, "use_temporal_attention": True,
           "use_temporal_resblock": True, "image_size": 32, "transformer_depth_middle": 1,
           "use_spatial_transformer": True, "extra_ff_mix_layer": True, "use_spatial_context": True,
           "merge_strategy": "learned_with_images", "merge_factor": 0.0, "video_kernel_size": [3, 1, 1],
           "disable_temporal_crossattention": False, "num_classes": "sequential", "dtype": torch.float32}
    mc = comfy.supported_models.SVD_img2vid(cfg)
    mc.set_inference_dtype(torch.float32, None)
    base = mc.get_model({})
    _randomise(base.diffusion_model, seed=seed, std=0.05)
    base.requires_grad_(False)
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def _instruction_binding():
    from devtools.harness import get_host

    return get_host().pack_module("nodes.binding.instruction_demo")


def wan_t2v(channels: int, dim: int, ffn: int, heads: int, layers: int, text_dim: int, patch: int = 2):
    """A Wan 2.1 text-to-video MODEL of ComfyUI's own class at any size, uninitialised (the pack's builder, which
    the tiny instruction demo uses)."""
    return _instruction_binding().wan_t2v(channels, dim, ffn, heads, layers, text_dim, patch)


def tvp_base(path: str, heads: int = 2):
    """A base file of the text-video prediction miniature (``adapters/weights/tvp_*base.safetensors``: a Wan 2.1
    text-to-video DiT or an SVD image-to-video UNet) as a MODEL, built by the pack's own reader (the tiny
    instruction demo adds its sampling patches to the Wan bases)."""
    return _instruction_binding().base_model(path, heads)


def tiny_sd15_state_dict(seed: int):
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    m = UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1],
                  channel_mult=[1], transformer_depth=[1], transformer_depth_output=[1, 1], context_dim=SD_TEXT_DIM,
                  num_heads=8, use_linear_in_transformer=False, use_spatial_transformer=True,
                  transformer_depth_middle=1, operations=comfy.ops.disable_weight_init, dtype=torch.float32)
    _randomise(m, seed)
    return m.state_dict()


class TinyModels:
    """Writes the tiny model files once per session and registers the helper nodes."""

    def __init__(self, host):
        self.host = host
        wan = host.pack_module("nodes.demo").tiny_wan_state_dict  # the same builder as the demo node
        files = {
            "tiny_wan_prior.safetensors": lambda: wan(seed=1, num_layers=2),
            "tiny_wan_domain.safetensors": lambda: wan(seed=2, num_layers=1),
            "tiny_sd15_prior.safetensors": lambda: tiny_sd15_state_dict(seed=3),
            "tiny_sd15_domain.safetensors": lambda: tiny_sd15_state_dict(seed=4),
            "tiny_wan_i2v.safetensors": lambda: wan(seed=5, num_layers=2, model_type="i2v"),
        }
        folder = os.path.join(host.models_dir, "diffusion_models")
        for name, make in files.items():
            path = os.path.join(folder, name)
            if not os.path.exists(path):
                save_file({k: v.contiguous() for k, v in make().items()}, path)
        register_test_nodes(host)

    def load(self, name: str):
        """A MODEL through ComfyUI's native loader (as a graph would get it)."""
        import nodes

        return nodes.UNETLoader().load_unet(name, "default")[0]


def register_test_nodes(host):
    """Test-only nodes: deterministic CONDITIONING and a cheap latent-to-image stand-in."""
    from comfy_api.latest import io

    class TestConditioning(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_Conditioning", category="_for_testing",
                             inputs=[io.Int.Input("dim", default=WAN_TEXT_DIM), io.Int.Input("tokens", default=8),
                                     io.Int.Input("seed", default=0)],
                             outputs=[io.Conditioning.Output()])

        @classmethod
        def execute(cls, dim, tokens, seed):
            g = torch.Generator().manual_seed(seed)
            return io.NodeOutput([[torch.randn(1, tokens, dim, generator=g), {}]])

    class TestLatentToImage(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_LatentToImage", category="_for_testing",
                             inputs=[io.Latent.Input("samples")], outputs=[io.Image.Output()])

        @classmethod
        def execute(cls, samples):
            x = samples["samples"]
            if x.ndim == 5:  # [B, C, T, H, W] -> frames
                x = x[0].movedim(1, 0)
            img = torch.sigmoid(x[:, :3]).movedim(1, -1)
            return io.NodeOutput(img.repeat_interleave(8, 1).repeat_interleave(8, 2).contiguous())

    class TestVAE(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_ToyVAE", category="_for_testing",
                             inputs=[io.Combo.Input("kind", options=["video", "image"], default="video")],
                             outputs=[io.Vae.Output()])

        @classmethod
        def execute(cls, kind):
            return io.NodeOutput(ToyVAE(video=kind == "video"))

    class TestClipVision(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_ClipVisionOutput", category="_for_testing",
                             inputs=[io.Image.Input("image")], outputs=[io.ClipVisionOutput.Output()])

        @classmethod
        def execute(cls, image):
            return io.NodeOutput(toy_clip_vision_output(int(image.sum() * 1000) % 997))

    class TestTextEncoder(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_ToyTextEncoder", category="_for_testing",
                             inputs=[io.Int.Input("dim", default=WAN_TEXT_DIM)], outputs=[io.Clip.Output()])

        @classmethod
        def execute(cls, dim):
            return io.NodeOutput(ToyTextEncoder(dim))

    class TestScriptedMLLM(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_ScriptedMLLM", category="_for_testing",
                             outputs=[io.Custom("VA_MLLM").Output()])

        @classmethod
        def execute(cls):
            return io.NodeOutput(ScriptedMLLM())

    class TestSVDCheckpoint(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="VATest_TinySVDCheckpoint", category="_for_testing",
                             inputs=[io.String.Input("unet_name", default="", optional=True)],
                             outputs=[io.Model.Output(), io.ClipVision.Output(), io.Vae.Output()])

        @classmethod
        def execute(cls, unet_name=""):
            """The tiny SVD, or the SVD UNet file ``unet_name`` through core's loader; toy CLIP vision and VAE."""
            if not unet_name:
                return io.NodeOutput(tiny_svd(), ToyClipVision(SVD_CONTEXT), ToyVAE(video=False))
            import nodes

            model = nodes.UNETLoader().load_unet(unet_name, "default")[0]
            width = model.model.model_config.unet_config["context_dim"]
            return io.NodeOutput(model, ToyClipVision(width), ToyVAE(video=False))

    for cls in (TestConditioning, TestLatentToImage, TestVAE, TestTextEncoder, TestClipVision, TestScriptedMLLM,
                TestSVDCheckpoint):
        node_id = cls.GET_SCHEMA().node_id
        host.nodes.NODE_CLASS_MAPPINGS[node_id] = cls


class ToyClipVision:
    """Stands in for a CLIP vision model: ``encode_image`` gives an image embedding of width ``dim`` made from the
    image's mean colour (what SVD_img2vid_Conditioning reads)."""

    def __init__(self, dim: int):
        self.mix = torch.linspace(-1.0, 1.0, 3 * dim).reshape(3, dim)

    def encode_image(self, image, crop=True):
        import comfy.clip_vision

        out = comfy.clip_vision.Output()
        out["image_embeds"] = image[..., :3].float().mean(dim=(1, 2)) @ self.mix
        return out


class ScriptedMLLM:
    """Stands in for a multimodal LLM: answers the state-prompt request with as many numbered states as asked."""

    def generate(self, messages, image, seed, max_tokens, schema=None):
        import json

        n = schema["properties"]["states"]["maxItems"] if schema else 4
        return json.dumps({"states": [f"state {i + 1} of the scene" for i in range(n)]})


class ToyVAE:
    """Stands in for a VAE in host tests (the calls Load Training Clips makes). Video kind: like Wan 2.1,
    16 channels, 8x spatial and 4x temporal compression (frame 0, then every 4th); image kind: like SD,
    4 channels, frames in the batch. Each latent channel is a fixed mix of the 8x8-averaged RGB."""

    def __init__(self, video: bool = True):
        self.video = video
        self.channels = 16 if video else 4
        self.mix = torch.linspace(-1.0, 1.0, self.channels * 3).reshape(self.channels, 3)

    def spacial_compression_encode(self):
        return 8

    def temporal_compression_decode(self):
        return 4 if self.video else None

    def encode(self, pixels):  # [T, H, W, 3] in 0..1
        x = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1).float(), 8)  # [T, 3, h, w]
        lat = torch.einsum("kc,tchw->tkhw", self.mix, x)
        if not self.video:
            return lat
        return lat[::4].movedim(0, 1).unsqueeze(0)  # [1, C, 1 + (T-1)/4, h, w]


class ToyTextEncoder:
    """Stands in for a CLIP / text encoder: a deterministic embedding per text (tokenize + encode). ``embed(text,
    dim) -> [1, tokens, dim]`` (default :func:`toy_text_embedding`)."""

    def __init__(self, dim: int, embed=None):
        self.dim, self.embed = dim, embed or toy_text_embedding

    def tokenize(self, text):
        return {"text": text}

    def encode_from_tokens_scheduled(self, tokens):
        return [[self.embed(tokens["text"], self.dim), {}]]


def toy_clip_vision_output(seed: int = 0):
    """A CLIP-vision output of ViT-H's shape (257 tokens of width 1280), as Wan's image embedding reads it."""
    import comfy.clip_vision

    out = comfy.clip_vision.Output()
    g = torch.Generator().manual_seed(seed)
    out["penultimate_hidden_states"] = torch.randn(1, 257, 1280, generator=g)
    out["last_hidden_state"] = torch.randn(1, 257, 1280, generator=g)
    out["image_embeds"] = torch.randn(1, 1024, generator=g)
    return out


def toy_text_embedding(text: str, dim: int) -> torch.Tensor:
    import hashlib

    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    return torch.randn(1, 6, dim, generator=torch.Generator().manual_seed(seed))


def write_video(path, n_frames, seed, size=64):
    """A small real mp4 (mpeg4) whose coarse pattern moves every frame, so off-by-one frames show."""
    import av

    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, size // 8, size // 8, generator=g)
    with av.open(path, mode="w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for i in range(n_frames):
            img = torch.roll(base, shifts=i % 8, dims=2) * 0.8 + 0.2 * (i / n_frames)
            img = torch.nn.functional.interpolate(img[None], size=(size, size), mode="nearest")[0]
            arr = (img.movedim(0, -1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
