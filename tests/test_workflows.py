"""Host-free checks of the shipped workflow files and of the UI-to-API converter.

The host tests (tests/host/test_workflows_host.py) check the same files against ComfyUI's live node
definitions and execute them; these run anywhere."""

import glob
import json
import os

import pytest

from devtools.headless import ui_to_api, widget_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKFLOWS = sorted(glob.glob(os.path.join(ROOT, "workflows", "*.json")))
MODEL_EXTS = (".safetensors", ".gguf", ".pt", ".ckpt", ".sft")


@pytest.mark.parametrize("path", WORKFLOWS, ids=os.path.basename)
def test_ui_format_and_link_integrity(path):
    with open(path) as f:
        wf = json.load(f)
    assert {"nodes", "links", "last_node_id", "last_link_id", "version"} <= set(wf)
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert len(nodes) == len(wf["nodes"]), "duplicate node ids"
    assert max(nodes) <= wf["last_node_id"]
    for n in wf["nodes"]:
        assert {"id", "type", "pos", "inputs", "outputs", "widgets_values", "properties"} <= set(n)
    for lid, src, s_slot, dst, d_slot, typ in wf["links"]:
        out = nodes[src]["outputs"][s_slot]
        inp = nodes[dst]["inputs"][d_slot]
        assert lid in out["links"] and inp["link"] == lid
        # an input of type "*" (PreviewAny) takes any output
        assert out["type"] == typ and inp["type"] in (typ, "*"), f"link {lid}: {out['type']} -> {inp['type']}"
    for n in wf["nodes"]:
        for inp in n["inputs"]:
            assert inp["link"] is None or any(l[0] == inp["link"] for l in wf["links"])


SHIPPED_ADAPTERS = set(os.listdir(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "adapters",
                                              "weights", "video_adapters")))


@pytest.mark.parametrize("path", WORKFLOWS, ids=os.path.basename)
def test_model_files_are_declared_with_urls(path):
    """Every model file a widget names comes with a public download URL for the missing-model dialog, except the
    adapter files a shipped training workflow writes (the user makes those) and those that ship with the pack."""
    with open(path) as f:
        wf = json.load(f)
    written = set()
    for other in WORKFLOWS:
        with open(other) as f:
            for n in json.load(f)["nodes"]:
                if n["type"] in ("VA_TrainAdapter", "VA_TrainDomainModel"):
                    written |= {v + ".safetensors" for v in n["widgets_values"] if isinstance(v, str)}
    for n in wf["nodes"]:
        declared = {m["name"]: m for m in n["properties"].get("models", [])}
        for v in n["widgets_values"]:
            if n["type"] in ("VA_LoadAdapter", "VA_LoadDomainModel") and v in written | SHIPPED_ADAPTERS:
                continue
            if isinstance(v, str) and v.endswith(MODEL_EXTS):
                assert v in declared, f"{n['type']}: {v} has no download entry"
                assert declared[v]["url"].startswith("https://huggingface.co/")
                assert declared[v]["url"].endswith(v)


def fake_info(class_type):
    defs = {
        "Sampler": {"input": {"required": {"model": ("MODEL",), "seed": ("INT", {"default": 0}),
                                           "cfg": ("FLOAT", {"default": 1.0}), "name": (["a", "b"],)},
                              "optional": {"extra": ("STRING", {"forceInput": True}),
                                           "mode": ("COMBO", {"options": ["x", "y"], "control_after_generate": True}),
                                           "flag": ("BOOLEAN", {})}},
                    "input_order": {"required": ["model", "seed", "cfg", "name"], "optional": ["extra", "mode", "flag"]},
                    "output": ["LATENT"]},
        "Loader": {"input": {"required": {"ckpt": (["m.safetensors"],)}}, "output": ["MODEL"]},
    }
    return defs[class_type]


def test_converter_widget_order_control_values_and_links():
    wf = {"nodes": [
        {"id": 1, "type": "Loader", "inputs": [], "widgets_values": ["m.safetensors"]},
        {"id": 2, "type": "Sampler", "inputs": [{"name": "model", "type": "MODEL", "link": 5},
                                                {"name": "cfg", "type": "FLOAT", "link": 6, "widget": {"name": "cfg"}}],
         "widgets_values": [7, "randomize", 2.5, "b", "y", "fixed", True]},
        {"id": 3, "type": "Note", "inputs": [], "widgets_values": ["text"]},
        {"id": 4, "type": "Sampler", "mode": 2, "inputs": [], "widgets_values": []},
    ], "links": [[5, 1, 0, 2, 0, "MODEL"], [6, 1, 0, 2, 1, "FLOAT"]]}
    api = ui_to_api(wf, fake_info)
    assert set(api) == {"1", "2"}  # notes and muted nodes are dropped
    assert api["1"] == {"class_type": "Loader", "inputs": {"ckpt": "m.safetensors"}}
    assert api["2"]["inputs"] == {"model": ["1", 0], "seed": 7, "cfg": ["1", 0], "name": "b", "mode": "y", "flag": True}


def test_widget_names_skip_sockets():
    names = [(n, c) for n, _, c in widget_names(fake_info("Sampler"))]
    assert names == [("seed", "control"), ("cfg", None), ("name", None), ("mode", "control"), ("flag", None)]


def test_bypassed_nodes_are_refused():
    wf = {"nodes": [{"id": 1, "type": "Loader", "mode": 4, "inputs": [], "widgets_values": []}], "links": []}
    with pytest.raises(ValueError, match="bypass"):
        ui_to_api(wf, fake_info)


def test_train_adapter_cli_config():
    """The adapter CLI's config: Train Adapters' inputs by name over the node's defaults; typos and missing data
    are refused, naming the key."""
    from devtools import train_adapter

    info = {"input": {"required": {"model": ["MODEL", {}], "kind": [["simda", "fca"], {"default": "simda"}],
                                   "steps": ["INT", {"default": 300}],
                                   "latent_shift": [["simda", "none"], {"default": "simda"}]},
                      "optional": {"settings": ["STRING", {"default": ""}], "negative": ["CONDITIONING", {}]}}}
    base = {"base_model": "diffusion_models/m.safetensors", "data": "d.safetensors"}
    got = train_adapter.node_inputs({**base, "kind": "fca", "settings": {"frames": 3}}, lambda _: info)
    assert got == {"kind": "fca", "steps": 300, "latent_shift": "simda", "settings": '{"frames": 3}',
                   "option_defaults": {"latent_shift": "simda"}}
    with pytest.raises(ValueError, match="data"):
        train_adapter.node_inputs({"base_model": "x"}, lambda _: info)
    with pytest.raises(ValueError, match="unknown config keys.*stpes"):
        train_adapter.node_inputs({**base, "stpes": 3}, lambda _: info)


def test_dynamic_combo_and_appended_widgets():
    """Newer hosts turn SaveVideo's format into a dynamic combo whose selected option adds a nested codec
    widget (sent as "format.codec"), and append widgets to core nodes; a workflow saved on an older host
    still converts, with the appended widget at its default."""
    codec = ["COMFY_DYNAMICCOMBO_V3", {"options": [{"key": "auto", "inputs": {"required": {}}},
                                                   {"key": "h264", "inputs": {"required": {}}}]}]
    info = {"input": {"required": {"video": ["VIDEO", {}], "filename_prefix": ["STRING", {"default": "v"}],
                                   "format": ["COMFY_DYNAMICCOMBO_V3", {"options": [
                                       {"key": "auto", "inputs": {"required": {"codec": codec}}},
                                       {"key": "webm", "inputs": {"required": {}}}]}]},
                      "optional": {"codec": ["COMBO", {"options": ["auto"], "hidden": True}],
                                   "bit_depth": ["INT", {"default": 8}]}},
            "input_order": {"required": ["video", "filename_prefix", "format"], "optional": ["codec", "bit_depth"]},
            "output": ["VIDEO"]}
    wf = {"nodes": [{"id": 1, "type": "SaveVideo", "inputs": [], "widgets_values": ["out/x", "auto", "h264"]}],
          "links": []}
    api = ui_to_api(wf, lambda t: info)
    assert api["1"]["inputs"] == {"filename_prefix": "out/x", "format": "auto", "format.codec": "h264", "bit_depth": 8}
    wf["nodes"][0]["widgets_values"] = ["out/x", "webm"]
    assert ui_to_api(wf, lambda t: info)["1"]["inputs"] == {"filename_prefix": "out/x", "format": "webm", "bit_depth": 8}


def test_every_workflow_has_a_thumbnail_and_a_readable_title():
    """The Templates browser shows the file name as title (frontends 1.27 and 1.49 read no other metadata for
    custom nodes) and the same-name .jpg as the card picture."""
    for path in WORKFLOWS:
        stem = os.path.splitext(path)[0]
        assert os.path.isfile(stem + ".jpg"), f"{os.path.basename(path)} has no thumbnail"
        title = os.path.basename(stem)
        assert " - " in title and title.split(" - ")[0] in ("Video Adapter", "SimDA", "AID", "FCA"), title
