"""Real-size random-weight models, built with ComfyUI's own classes from the released configurations and written
once per machine into a cache folder outside the repository, with the released files' key names, so core's own
loaders (``UNETLoader``, Load Frozen Video Model) read them as they read the real files.

    COMFYUI_PATH=/path/to/ComfyUI python -m devtools.realsize [--only wan1.3b_t2v ...]   # build the cache

The cache folder is ``$VA_REALSIZE_CACHE`` or ``~/.cache/video-adapters/realsize``; a file is rebuilt only when it
is missing. The weights are random (a fixed block of N(0, 0.02) values tiled over every weight, norm scales 1):
only the shapes, the key names and the numbers' finiteness matter for what these models check (the pack's code
paths, memory and cost at a real size), never what they draw.

Models (``FILES``), each at its released width and depth except the 14B Wan models, whose 40 blocks of width 5120
do not fit this kind of machine in fp32 next to a training run: they are written with ``VA_REALSIZE_14B_BLOCKS``
blocks (2 by default) and the full model's parameter count is counted on the meta device. Every Wan block is the
same, so what the pack adds per block is exercised at full width.

* Wan 2.1 T2V 1.3B: dim 1536, ffn 8960, 12 heads, 30 blocks, text 4096 (keys as the released ``diffusion_models``
  files, without a prefix);
* Wan 2.1 T2V 14B and I2V 14B: dim 5120, ffn 13824, 40 heads, text 4096, I2V with 36 input channels and the
  CLIP-vision (ViT-H, 1280) image embedding;
* SVD-XT's UNet and SD 1.5's UNet, whole, with the ``model.diffusion_model.`` prefix their released checkpoints
  use.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

CACHE_ENV = "VA_REALSIZE_CACHE"
BLOCKS_14B_ENV = "VA_REALSIZE_14B_BLOCKS"
CHECKPOINT_PREFIX = "model.diffusion_model."  # SD 1.5's and SVD's released checkpoints keep the UNet here


def cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "video-adapters", "realsize")


# ----------------------------------------------------------------------------------------------------
# the released configurations


def wan_net_kwargs(dim, ffn_dim, heads, layers, model_type="t2v"):
    out = dict(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=dim, ffn_dim=ffn_dim, freq_dim=256,
               text_dim=4096, out_dim=16, num_heads=heads, num_layers=layers)
    if model_type == "i2v":
        out.update(model_type="i2v", in_dim=36)
    return out


def sd15_unet_kwargs():
    """SD 1.5's UNet (the published config)."""
    return dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1,
                context_dim=768, num_heads=8, use_linear_in_transformer=False, use_spatial_transformer=True,
                legacy=False, adm_in_channels=None, use_temporal_attention=False, use_temporal_resblock=False)


def svd_unet_kwargs():
    """SVD / SVD-XT's video UNet (the published config; XT differs only in the frames it was trained on)."""
    return dict(image_size=32, in_channels=8, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1,
                context_dim=1024, num_heads=-1, num_head_channels=64, use_linear_in_transformer=True,
                use_spatial_transformer=True, legacy=False, adm_in_channels=768, num_classes="sequential",
                use_temporal_attention=True, use_temporal_resblock=True, extra_ff_mix_layer=True,
                use_spatial_context=True, merge_strategy="learned_with_images", merge_factor=0.0,
                video_kernel_size=[3, 1, 1], disable_temporal_crossattention=False, max_ddpm_temb_period=10000)


class Base:
    """One real-size base: how to build it (``layers`` blocks for Wan), its conditioning, the clips measured, the
    papers' shapes it is extrapolated to, and the frames core's Train LoRA gets at once (the last four are what
    ``benchmarks/memory.py`` measures)."""

    def __init__(self, key, label, arch, config_class, full_layers=None, net=None, text=None, points=(),
                 targets=(), frames=0, core_points=None, check=None):
        self.key, self.label, self.arch, self.config_class = key, label, arch, config_class
        self.full_layers, self.net, self.text = full_layers, net, text
        self.points, self.targets, self.frames = points, targets, frames
        self.core_points = core_points if core_points is not None else points
        self.check = check  # one clip at the paper's frame count, to check the frames x size fit

    @property
    def frames_in_batch(self) -> bool:
        return self.arch != "wan"

    def tokens(self, shape) -> int:
        if self.arch == "wan":
            t, h, w = shape
            return t * (h // 2) * (w // 2)
        f, h, w = shape
        return f * h * w

    def latent(self, shape, seed=0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        if self.arch == "wan":
            return torch.randn(1, 16, *shape, generator=g)
        f, h, w = shape
        return torch.randn(f, 4, h, w, generator=g)


def randomise(module: torch.nn.Module, seed: int):
    """Random weights, fast: one block of N(0, 0.02) values tiled over every weight (norm scales 1). Only the
    shapes matter here; the values only have to be finite and not degenerate."""
    g = torch.Generator().manual_seed(seed)
    block = 0.02 * torch.randn(1 << 22, generator=g)
    with torch.no_grad():
        for name, p in module.named_parameters():
            flat = p.view(-1)
            if p.ndim == 1 and ("norm" in name or name.endswith("gamma")):
                flat.fill_(1.0)
                continue
            for i in range(0, flat.numel(), block.numel()):
                n = min(block.numel(), flat.numel() - i)
                off = (i // block.numel() * 7919) % (block.numel() - n + 1)  # a different stretch each time
                flat[i:i + n].copy_(block[off:off + n])


def meta_network(base: Base, layers: int | None = None) -> torch.nn.Module:
    """The base's network on the meta device (shapes only, no memory)."""
    import comfy.ops

    with torch.device("meta"):
        if base.arch == "wan":
            from comfy.ldm.wan.model import WanModel

            return WanModel(operations=comfy.ops.disable_weight_init, **base.net(layers or 2))
        from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

        return UNetModel(operations=comfy.ops.disable_weight_init, dtype=torch.float32, **base.net())


def build_base(base: Base, dtype: torch.dtype, layers: int | None = None, seed: int = 1):
    """The base as a MODEL: the network is made on the meta device, core's detection picks its model config
    from the state-dict shapes, and ``get_model`` builds it in ``dtype`` (random weights)."""
    import comfy.model_detection
    import comfy.model_patcher

    shapes = meta_network(base, layers).state_dict()
    mc = comfy.model_detection.model_config_from_unet(shapes, "")
    if mc is None or type(mc).__name__ != base.config_class:
        raise RuntimeError(f"{base.label}: core detects {type(mc).__name__ if mc else None}, "
                           f"expected {base.config_class}")
    mc.set_inference_dtype(dtype, None)
    model = mc.get_model(shapes)
    randomise(model.diffusion_model, seed)
    model.requires_grad_(False)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


# ----------------------------------------------------------------------------------------------------
# the cached files


def blocks_14b() -> int:
    return max(1, int(os.environ.get(BLOCKS_14B_ENV, "2")))


class ModelFile:
    """One cached real-size file: the base it is built from, how many of its blocks are written, the key prefix of
    the released file, and the parameter count published for the released model (a check of the shapes)."""

    def __init__(self, key: str, base: Base, released: str, published: float, prefix: str = "", seed: int = 1):
        self.key, self.base, self.released, self.published = key, base, released, published
        self.prefix, self.seed = prefix, seed

    @property
    def layers(self) -> int | None:
        if self.base.arch != "wan":
            return None
        return self.base.full_layers if self.base.full_layers <= 30 else min(blocks_14b(), self.base.full_layers)

    @property
    def truncated(self) -> bool:
        return self.layers is not None and self.layers < self.base.full_layers

    def file_name(self, dtype: str = "fp16") -> str:
        suffix = f"_{self.layers}of{self.base.full_layers}blocks" if self.truncated else ""
        return f"realsize_{self.key}{suffix}_{dtype}.safetensors"

    def full_parameters(self) -> int:
        """The released model's parameter count, all blocks, counted on the meta device."""
        return sum(p.numel() for p in meta_network(self.base, self.base.full_layers).parameters())


def _wan(key, label, dim, ffn, heads, layers, model_type, config_class):
    return Base(key, label, "wan", config_class, layers,
                lambda n: wan_net_kwargs(dim, ffn, heads, n, model_type), ("wan", 512, 4096))


FILES = {
    "wan1.3b_t2v": ModelFile("wan1.3b_t2v", _wan("wan1.3b_t2v", "Wan 2.1 T2V 1.3B", 1536, 8960, 12, 30, "t2v",
                                                 "WAN21_T2V"), "wan2.1_t2v_1.3B_fp16.safetensors", 1.42e9),
    "wan14b_t2v": ModelFile("wan14b_t2v", _wan("wan14b_t2v", "Wan 2.1 T2V 14B", 5120, 13824, 40, 40, "t2v",
                                               "WAN21_T2V"), "wan2.1_t2v_14B_fp16.safetensors", 14.3e9, seed=2),
    "wan14b_i2v": ModelFile("wan14b_i2v", _wan("wan14b_i2v", "Wan 2.1 I2V 14B", 5120, 13824, 40, 40, "i2v",
                                               "WAN21_I2V"), "wan2.1_i2v_480p_14B_fp16.safetensors", 16.4e9, seed=3),
    "svd_xt": ModelFile("svd_xt", Base("svd_xt", "SVD-XT", "unet", "SVD_img2vid", net=svd_unet_kwargs,
                                       text=("svd", 1, 1024)), "svd_xt.safetensors", 1.52e9, CHECKPOINT_PREFIX, 4),
    "sd15": ModelFile("sd15", Base("sd15", "SD 1.5", "unet", "SD15", net=sd15_unet_kwargs, text=("sd", 77, 768)),
                      "v1-5-pruned-emaonly-fp16.safetensors", 0.86e9, CHECKPOINT_PREFIX, 5),
}


def ensure(key: str, dtype: str = "fp16", log=print) -> str:
    """The path of ``FILES[key]`` in the cache, built and written first when it is missing."""
    from safetensors.torch import save_file

    spec = FILES[key]
    path = os.path.join(cache_dir(), spec.file_name(dtype))
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir(), exist_ok=True)
    t0 = time.perf_counter()
    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    model = build_base(spec.base, torch_dtype, spec.layers, seed=spec.seed)
    state = {spec.prefix + k: v.contiguous() for k, v in model.model.diffusion_model.state_dict().items()}
    meta = {"built_by": "devtools.realsize", "model": spec.base.label, "released_as": spec.released,
            "blocks": str(spec.layers or ""), "weights": "random"}
    tmp = path + ".part"
    save_file(state, tmp, metadata=meta)
    os.replace(tmp, path)  # never a half-written file under the real name
    log(f"realsize: wrote {spec.base.label} ({sum(v.numel() for v in state.values()) / 1e6:,.0f}M parameters, "
        f"{os.path.getsize(path) / 2 ** 30:.2f} GiB) in {time.perf_counter() - t0:.0f} s: {path}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Build the real-size random-weight model cache.")
    parser.add_argument("--only", nargs="*", choices=sorted(FILES), default=sorted(FILES))
    parser.add_argument("--dtype", default="fp16", choices=("fp16", "bf16"))
    args = parser.parse_args(argv)
    from devtools.headless import Host, find_comfyui

    root = find_comfyui()
    if root is None:
        raise SystemExit("no ComfyUI found: set COMFYUI_PATH to a ComfyUI folder")
    Host(root)  # ComfyUI imported on the CPU, as the tests load it
    for key in args.only:
        ensure(key, args.dtype)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
