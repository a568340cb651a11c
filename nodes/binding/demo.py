"""The models behind the demo nodes: a tiny random Wan built in memory with core's own classes, a stand-in text
embedding of a prompt, and the shipped trained pair of the Video Adapter miniature."""

from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace

import torch

import comfy.model_base
import comfy.sd

from ..common import VideoAdapterError

TEXT_DIM = 4096  # umT5-XXL width, what Wan's text embedding expects
TOKENS = 16
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "adapters", "weights")
TRAINED_FILES = {"domain": "tiny_synthetic_domain.safetensors", "prior": "tiny_synthetic_prior.safetensors"}


def tiny_wan_state_dict(seed: int, num_layers: int, dim: int = 128, ffn_mult: int = 2, model_type: str = "t2v") -> dict:
    """A deterministic random-weight Wan 2.1 state dict that ComfyUI's loaders detect as Wan 2.1 (dim must be a
    multiple of 128: detection assumes 128-wide heads); ``model_type="i2v"`` gives the image-to-video variant
    (36 input channels: latent, mask and start-image latent, plus the CLIP-vision embedding). Also used by the
    tests and benchmarks."""
    from comfy.ldm.wan.model import WanModel
    import comfy.ops

    net = WanModel(model_type=model_type, patch_size=(1, 2, 2), in_dim=36 if model_type == "i2v" else 16, dim=dim, ffn_dim=ffn_mult * dim, freq_dim=256,
                   text_dim=TEXT_DIM, out_dim=16, num_heads=dim // 128, num_layers=num_layers,
                   operations=comfy.ops.disable_weight_init)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in net.state_dict().items():
        if p.ndim == 1 and ("norm" in name or "modulation" in name):
            sd[name] = 1.0 + 0.01 * torch.randn(p.shape, generator=g)
        else:
            sd[name] = 0.02 * torch.randn(p.shape, generator=g)
    return sd


def _text_embedding(text: str) -> list:
    """A deterministic stand-in for a text encoder: the same text always gives the same embedding."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, TOKENS, TEXT_DIM, generator=g), {}]]


def trained_pair_models() -> dict:
    """The shipped trained pair as MODELs (``{"domain": ..., "prior": ...}``) in the synthetic latent space."""
    from ...adapters.domain_model import load_domain_model
    from .domain import DomainModelFamily, VideoAdaptersSynthetic, domain_patcher

    out = {}
    for role, name in TRAINED_FILES.items():
        path = os.path.join(WEIGHTS_DIR, name)
        if not os.path.isfile(path):
            raise VideoAdapterError(f"the pack's demo weights are missing ({name} in adapters/weights); reinstall "
                                    "the pack, or remake them with python -m devtools.train_prior (the prior) and "
                                    "benchmarks/table1_miniature.py --small 64x2 --ship (the domain model)")
        net, meta = load_domain_model(path, expect_family="synthetic", dtype=torch.float32)
        shift = float(meta.get("training", {}).get("sample_shift", 3.0))
        config = DomainModelFamily(SimpleNamespace(latent_format=VideoAdaptersSynthetic(),
                                                   sampling_settings={"shift": shift, "multiplier": 1000}))
        sampling = comfy.model_base.model_sampling(config, comfy.model_base.ModelType.FLOW)
        out[role] = domain_patcher(net, config, comfy.model_base.ModelType.FLOW, sampling)
    return out
