"""Writes the pack's UI-format workflow files from compact specs, using the live node definitions of a
ComfyUI host so that widget order, defaults and socket types are exactly what the frontend expects.

    COMFYUI_PATH=/path/to/ComfyUI python -m devtools.build_workflows [workflow names]   # from the pack's folder

A feature family adds its workflows in a ``specs_<family>.py`` module next to this file that defines
``WORKFLOWS = {name: make}``, where ``make()`` returns ``(nodes, notes)`` built with ``N`` from here, and
optionally ``MODELS = {file name: (folder, public URL)}`` for the model files its workflows name.

Maintainers run this after changing a node's inputs; the host tests check the files against the host.
"""

from __future__ import annotations

import json
import os
import sys

from devtools.headless import NO_HOST_HELP, Host, find_comfyui, widget_default, widget_names

HERE = os.path.dirname(os.path.abspath(__file__))
WORKFLOWS_DIR = os.path.join(os.path.dirname(HERE), "workflows")

WAN_REPO = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
MODELS = {
    "wan2.1_t2v_14B_fp16.safetensors": ("diffusion_models", f"{WAN_REPO}/diffusion_models/wan2.1_t2v_14B_fp16.safetensors"),
    "wan2.1_t2v_1.3B_fp16.safetensors": ("diffusion_models", f"{WAN_REPO}/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": ("text_encoders", f"{WAN_REPO}/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
    "wan_2.1_vae.safetensors": ("vae", f"{WAN_REPO}/vae/wan_2.1_vae.safetensors"),
}

PROMPT = "a lighthouse on a cliff at sunset, waves crashing, hand-painted watercolor animation"
NEGATIVE = "blurry, low quality, static, distorted, watermark, text"


class N:
    """One node of a spec: type, column/row for the layout, widget values by name, links by input name."""

    def __init__(self, nid, type_, col, row, widgets=None, links=None, title=None):
        self.id, self.type, self.col, self.row = nid, type_, col, row
        self.widgets = widgets or {}
        self.links = links or {}
        self.title = title


def build(host: Host, nodes: list[N], notes: list[tuple[str, int, int]] = ()) -> dict:
    infos = {n.id: host.node_info(n.type) for n in nodes}
    links, ui_nodes = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    link_for: dict[tuple[int, str], list] = {}
    for n in nodes:  # collect links first; the destination slot is filled in below
        for name, (src, slot) in n.links.items():
            link = [len(links) + 1, src, slot, n.id, None, infos[src]["output"][slot]]
            links.append(link)
            link_for[(n.id, name)] = link
            out_links.setdefault((src, slot), []).append(link[0])
    for order, n in enumerate(nodes):
        info = infos[n.id]
        wnames = widget_names(info)
        unknown = set(n.widgets) - {w for w, _, _ in wnames}
        if unknown:
            raise ValueError(f"{n.type}: no widget named {sorted(unknown)}")
        values = []
        for name, spec, extra in wnames:
            values.append(n.widgets.get(name, widget_default(spec, fill_missing=True)))
            if extra:
                values.append({"control": "fixed", "upload": "image"}[extra])
        inputs = []
        for group in ("required", "optional"):
            for name in info.get("input_order", {}).get(group, []):
                spec = info["input"][group][name]
                is_w = name in {w for w, _, _ in wnames}
                if name not in n.links and is_w:
                    continue
                kind = spec[0] if not isinstance(spec[0], list) else "COMBO"
                entry = {"name": name, "type": kind, "link": None}
                if is_w:
                    entry["widget"] = {"name": name}
                if name in n.links:
                    link = link_for[(n.id, name)]
                    link[4] = len(inputs)
                    entry["link"] = link[0]
                inputs.append(entry)
        outputs = []
        for slot, (typ, name) in enumerate(zip(info["output"], info.get("output_name", info["output"]))):
            outputs.append({"name": name, "type": typ, "links": out_links.get((n.id, slot), []),
                            "slot_index": slot})
        props = {"Node name for S&R": n.type}
        models = [w for w in values if isinstance(w, str) and w in MODELS]
        if models:
            props["models"] = [{"name": m, "url": MODELS[m][1], "directory": MODELS[m][0]} for m in models]
        node = {"id": n.id, "type": n.type, "pos": [40 + 360 * n.col, 40 + 150 * n.row], "size": [320, 120],
                "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": props, "widgets_values": values}
        if n.title:
            node["title"] = n.title
        ui_nodes.append(node)
    next_id = max(n.id for n in nodes) + 1
    for i, (text, col, row) in enumerate(notes):
        ui_nodes.append({"id": next_id + i, "type": "MarkdownNote", "pos": [40 + 360 * col, 40 + 150 * row],
                         "size": [400, 200], "flags": {}, "order": len(ui_nodes), "mode": 0, "inputs": [],
                         "outputs": [], "properties": {}, "widgets_values": [text]})
    return {"last_node_id": next_id + len(notes) - 1, "last_link_id": len(links), "nodes": ui_nodes,
            "links": links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}},
            "version": 0.4}


def sampler_chain(first_id, model_id, guider_id, latent_id, col, row, steps, seed, save_prefix, decode, fps=16.0):
    """RandomNoise/KSamplerSelect/BasicScheduler/SamplerCustomAdvanced/decode/CreateVideo/SaveVideo."""
    i = first_id
    noise, sel, sched, adv, dec, vid, save = range(i, i + 7)
    nodes = [
        N(noise, "RandomNoise", col, row, {"noise_seed": seed}),
        N(sel, "KSamplerSelect", col, row + 1, {"sampler_name": "euler"}),
        N(sched, "BasicScheduler", col, row + 2, {"scheduler": "simple", "steps": steps, "denoise": 1.0},
          {"model": (model_id, 0)}),
        N(adv, "SamplerCustomAdvanced", col + 1, row, links={"noise": (noise, 0), "guider": (guider_id, 0),
          "sampler": (sel, 0), "sigmas": (sched, 0), "latent_image": (latent_id, 0)}),
        decode(dec, col + 2, row, (adv, 0)),
        N(vid, "CreateVideo", col + 3, row, {"fps": fps}, {"images": (dec, 0)}),
        N(save, "SaveVideo", col + 4, row, {"filename_prefix": f"video/{save_prefix}", "format": "auto",
          "codec": "auto"}, {"video": (vid, 0)}),
    ]
    return nodes


def upscaled_video(first_id, col, row, frames, scale=4.0, fps=4.0):
    """ImageScaleBy (nearest, ``scale``) -> CreateVideo (``fps``) on ``frames``: a tiny demo's frames made large
    enough to see (ids ``first_id``, ``first_id + 1``; columns ``col``, ``col + 1``)."""
    return [
        N(first_id, "ImageScaleBy", col, row, {"upscale_method": "nearest-exact", "scale_by": scale}, {"image": frames}),
        N(first_id + 1, "CreateVideo", col + 1, row, {"fps": fps}, {"images": (first_id, 0)}),
    ]


DEMO_GAMMA = 0.1  # the demo's prior strength (the best one of the Table-1 miniature with this pair, see the README)
DEMO_STEPS = 16    # the miniature's sampler steps


def demo_tiny():
    """The trained tiny pair: domain only, prior only and the Score Composer from the same noise."""
    nodes = [
        N(1, "VA_TinyTrainedPair", 0, 0, {"prompt": "sunset, stripes, blob, orbit, pan right"}),
        N(2, "EmptyHunyuanLatentVideo", 0, 2, {"width": 64, "height": 64, "length": 29, "batch_size": 1},
          title="8 frames of 8x8 latents (64x64 px)"),
        N(3, "VA_ScoreComposer", 1, 8, {"prior_strength": DEMO_GAMMA, "cfg": 3.0, "composition_end": 0.9},
          {"domain_model": (1, 0), "prior_model": (1, 1), "positive": (1, 2), "negative": (1, 3)},
          title="C: score composer"),
        N(4, "CFGGuider", 1, 0, {"cfg": 3.0}, {"model": (1, 0), "positive": (1, 2), "negative": (1, 3)},
          title="A: domain model only"),
        N(5, "CFGGuider", 1, 4, {"cfg": 3.0}, {"model": (1, 1), "positive": (1, 2), "negative": (1, 3)},
          title="B: prior only"),
    ]

    def decode(i, c, r, src):
        return N(i, "VA_SyntheticLatentDecode", c, r, links={"samples": src})

    # each row reads guider -> sampler -> decode -> video -> save, top to bottom A, B, C
    for k, (gid, name) in enumerate(((4, "A_domain_only"), (5, "B_prior_only"), (3, "C_composer"))):
        nodes += sampler_chain(10 + 10 * k, 1, gid, 2, 2, 4 * k, steps=DEMO_STEPS, seed=0,
                               save_prefix=f"video_adapters_demo/{name}", decode=decode, fps=8.0)
    notes = [("## Video Adapters demo (no downloads, CPU)\nA trained tiny pair ships with the pack: a broad "
              "prior trained on synthetic clips of many shapes, colours and motions (its captions never named "
              "colours or textures), and a domain model, a third of its size, trained on 16 clips of one 'sunset' "
              "style. A samples the domain model alone: the style's warm colours, a blotchy texture that flickers, "
              "no object. B samples the prior alone: a smooth, steady background in the wrong palette with a blob "
              "that changes shape. C composes them with the Score Composer: the style's colours with some of the "
              "prior's smoothness. All from the same noise. Neither model draws clean shapes at this size, and on "
              "this style A is measured closest to real clips; on the forest style C beats both "
              "(docs/video_adapter.md).", 0, 5)]
    return nodes, notes


def _wan_common(prefix_domain="wan2.1_t2v_1.3B_fp16.safetensors"):
    return [
        N(1, "VA_LoadFrozenVideoModel", 0, 0, {"model_name": "wan2.1_t2v_14B_fp16.safetensors",
          "weight_dtype": "fp8_e4m3fn"}, title="Prior: Wan 2.1 14B (frozen)"),
        N(2, "UNETLoader", 0, 1, {"unet_name": prefix_domain, "weight_dtype": "default"},
          title="Domain model (small)"),
        N(3, "CLIPLoader", 0, 2, {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan",
          "device": "default"}),
        N(4, "VAELoader", 0, 3, {"vae_name": "wan_2.1_vae.safetensors"}),
        N(5, "CLIPTextEncode", 1, 0, {"text": PROMPT}, {"clip": (3, 0)}, title="Positive prompt"),
        N(6, "CLIPTextEncode", 1, 1, {"text": NEGATIVE}, {"clip": (3, 0)}, title="Negative prompt"),
        N(7, "ModelSamplingSD3", 1, 2, {"shift": 8.0}, {"model": (2, 0)}),
        N(8, "ModelSamplingSD3", 1, 3, {"shift": 8.0}, {"model": (1, 0)}),
        N(9, "EmptyHunyuanLatentVideo", 1, 4, {"width": 832, "height": 480, "length": 33, "batch_size": 1}),
    ]


def _vae_decode(i, c, r, src):
    return N(i, "VAEDecode", c, r, links={"samples": src, "vae": (4, 0)})


def wan_t2v_stylize():
    nodes = _wan_common()
    nodes.append(N(20, "VA_ScoreComposer", 2, 0, {"prior_strength": 0.2, "cfg": 5.0, "composition_end": 0.9},
                   {"domain_model": (7, 0), "prior_model": (8, 0), "positive": (5, 0), "negative": (6, 0)}))
    nodes += sampler_chain(30, 7, 20, 9, 2, 2, steps=30, seed=42, save_prefix="video_adapter_stylize",
                           decode=_vae_decode)
    notes = [("## Stylize with a small domain model\nThe frozen Wan 2.1 14B prior supplies motion and fidelity; "
              "the small model supplies your style. Until you have a trained domain model (Train Domain Model), "
              "Wan 2.1 1.3B stands in: it shares the 14B model's latent space. prior_strength 0.1-0.4 is the "
              "paper's range.", 0, 5)]
    return nodes, notes


def ab_compare():
    nodes = _wan_common()
    nodes += [
        N(20, "CFGGuider", 2, 0, {"cfg": 5.0}, {"model": (7, 0), "positive": (5, 0), "negative": (6, 0)},
          title="A: domain only"),
        N(21, "CFGGuider", 2, 4, {"cfg": 5.0}, {"model": (8, 0), "positive": (5, 0), "negative": (6, 0)},
          title="B: prior only"),
        N(22, "VA_ScoreComposer", 2, 8, {"prior_strength": 0.2, "cfg": 5.0, "composition_end": 0.9},
          {"domain_model": (7, 0), "prior_model": (8, 0), "positive": (5, 0), "negative": (6, 0)},
          title="C: score composer"),
        N(23, "VA_CFGMixGuider", 2, 12, {"prior_weight": 0.2, "cfg": 5.0, "prior_cfg": 5.0, "composition_end": 0.9},
          {"domain_model": (7, 0), "prior_model": (8, 0), "positive": (5, 0), "negative": (6, 0)},
          title="D: CFG mix (baseline)"),
    ]
    for k, (gid, name) in enumerate(((20, "A_domain"), (21, "B_prior"), (22, "C_composer"), (23, "D_cfgmix"))):
        nodes += sampler_chain(30 + 10 * k, 7, gid, 9, 3, 4 * k, steps=30, seed=42,
                               save_prefix=f"video_adapter_ab/{name}", decode=_vae_decode)
    notes = [("## A/B: domain only, prior only, composer, CFG mix\nSame seed and prompt in all four rows, so "
              "differences come from the guidance alone.", 0, 5)]
    return nodes, notes


WORKFLOWS = {
    "Video Adapter - tiny demo, no downloads": demo_tiny,
    "Video Adapter - stylize Wan 2.1 with a small domain model": wan_t2v_stylize,
    "Video Adapter - domain vs prior vs composer vs CFG mix": ab_compare,
}


def all_workflows() -> dict:
    """This file's workflows plus those of every ``specs_*.py`` module next to it (one per feature family)."""
    import glob
    import importlib

    found = dict(WORKFLOWS)
    for path in sorted(glob.glob(os.path.join(HERE, "specs_*.py"))):
        module = importlib.import_module("devtools." + os.path.splitext(os.path.basename(path))[0])
        found.update(module.WORKFLOWS)
        MODELS.update(getattr(module, "MODELS", {}))
    return found


def main():
    root = find_comfyui()
    if root is None:
        sys.exit(NO_HOST_HELP)
    host = Host(root)
    only = set(sys.argv[1:])
    for name, make in all_workflows().items():
        if only and name not in only:
            continue
        nodes, notes = make()
        wf = build(host, nodes, notes)
        path = os.path.join(WORKFLOWS_DIR, f"{name}.json")
        with open(path, "w") as f:
            json.dump(wf, f, indent=1)
        print(path)


if __name__ == "__main__":
    main()
