"""Every shipped workflow against the real host: node types exist, links join matching types, widget
values fit their inputs; then each is converted to an API prompt and executed on tiny models."""

import glob
import json
import os

import pytest
import torch

from devtools.graphs import TINY, stand_in_prompt, write_clip_folder, write_shipped_adapters
from devtools.headless import DYNAMIC_COMBO, dynamic_combo_keys, ui_to_api, widget_prefix, widget_slots, UI_ONLY_NODES
from devtools.tiny_models import SVD_CONTEXT, tiny_svd

WF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "workflows")
WORKFLOWS = sorted(glob.glob(os.path.join(WF_DIR, "*.json")))

SVD_FILE = "svd_xt.safetensors"  # SVD workflows run on tiny_models.tiny_svd()


def load(path):
    with open(path) as f:
        return json.load(f)


def check_widget(value, spec, name, declared_models):
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if kind == DYNAMIC_COMBO:
        assert value in dynamic_combo_keys(spec), f"{name}={value!r} is not one of {dynamic_combo_keys(spec)}"
        return
    if isinstance(kind, list) or kind == "COMBO":
        options = kind if isinstance(kind, list) else opts.get("options", [])
        if value not in options:
            assert value in declared_models, f"{name}={value!r} is neither an option nor a declared model file"
        return
    if kind == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), f"{name}={value!r} is not an int"
    elif kind == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{name}={value!r} is not a number"
    elif kind == "STRING":
        assert isinstance(value, str), f"{name}={value!r} is not a string"
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), f"{name}={value!r} is not a bool"
    if kind in ("INT", "FLOAT"):
        if "min" in opts:
            assert value >= opts["min"], f"{name}={value} < min {opts['min']}"
        if "max" in opts:
            assert value <= opts["max"], f"{name}={value} > max {opts['max']}"


def test_workflows_exist():
    assert len(WORKFLOWS) >= 3


@pytest.mark.parametrize("path", WORKFLOWS, ids=os.path.basename)
def test_workflow_matches_host_definitions(host, path):
    wf = load(path)
    nodes = {n["id"]: n for n in wf["nodes"]}
    for n in wf["nodes"]:
        if n["type"] in UI_ONLY_NODES:
            continue
        assert n["type"] in host.nodes.NODE_CLASS_MAPPINGS, f"unknown node type {n['type']}"
        info = host.node_info(n["type"])
        values = n.get("widgets_values", [])
        wn = widget_slots(info, values)
        # The frontend assigns widgets_values by position and keeps the default of every widget past the
        # saved ones (a newer host may append widgets to core nodes, as CreateVideo's bit_depth on 0.33), so
        # a workflow fits when its values cover a prefix of the widgets and every later widget has a default.
        covered = widget_prefix(wn, len(values))
        assert covered is not None, f"{n['type']}: {len(values)} widget values do not end on a widget boundary"
        for name, spec, _ in wn[covered:]:
            assert "default" in (spec[1] if len(spec) > 1 else {}) or isinstance(spec[0], list) \
                or spec[0] == DYNAMIC_COMBO, \
                f"{n['type']}.{name}: a widget this workflow does not set has no default on this host"
        declared = {m["name"] for m in n.get("properties", {}).get("models", [])}
        for m in n.get("properties", {}).get("models", []):
            assert m["url"].startswith("https://") and m["directory"]
        i = 0
        for name, spec, extra in wn[:covered]:
            check_widget(values[i], spec, f"{n['type']}.{name}", declared)
            if extra == "control":
                assert values[i + 1] in ("fixed", "increment", "decrement", "randomize")
            elif extra == "upload":
                assert values[i + 1] == "image"
            i += 2 if extra else 1
        all_inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        for inp in n.get("inputs", []):
            assert inp["name"] in all_inputs, f"{n['type']} has no input {inp['name']}"
    for lid, src, src_slot, dst, dst_slot, typ in wf["links"]:
        s_info = host.node_info(nodes[src]["type"])
        out_type = s_info["output"][src_slot]
        d_node = nodes[dst]
        inp = d_node["inputs"][dst_slot]
        assert inp["link"] == lid
        d_info = host.node_info(d_node["type"])
        spec = {**d_info["input"].get("required", {}), **d_info["input"].get("optional", {})}[inp["name"]]
        in_type = "COMBO" if isinstance(spec[0], list) else spec[0]
        assert out_type == typ == in_type or "*" in (out_type, in_type), \
            f"link {lid}: {nodes[src]['type']} gives {out_type}, {d_node['type']}.{inp['name']} takes {in_type}"


@pytest.fixture(scope="module", autouse=True)
def shipped_adapter_files(host, tiny):
    """The adapter files the shipped loading workflows read, written for the tiny stand-ins (see
    devtools.graphs.write_shipped_adapters)."""
    prompts = [ui_to_api(load(p), host.node_info) for p in WORKFLOWS]
    write_shipped_adapters(host, prompts, lambda file: tiny_svd() if file == SVD_FILE else tiny.load(TINY.models[file]),
                           SVD_CONTEXT)


@pytest.fixture(scope="module")
def clip_folder(host):
    return write_clip_folder(host)


@pytest.mark.parametrize("path", WORKFLOWS, ids=os.path.basename)
def test_workflow_executes_on_tiny_models(host, tiny, clip_folder, path):
    wf = load(path)
    prompt = stand_in_prompt(wf, host)
    ok = host.validate(prompt)
    assert ok[0], ok
    result = host.run(prompt)
    videos = [p for out in result["ui"].values() for key in ("images", "video") for p in out.get(key, [])]
    assert videos, "the workflow saved nothing"
    samplers = [nid for nid, v in prompt.items() if v["class_type"] == "SamplerCustomAdvanced"]
    finals = host.run(prompt, samplers)
    for nid in samplers:
        assert torch.isfinite(finals[nid][0]["samples"]).all()


@pytest.mark.parametrize("with_states", [True, False])
def test_aid_training_workflow_trains_with_the_clips_state_files(host, tiny, clip_folder, with_states):
    """The clips' <video>.states.txt reach AID's training through Load Training Clips' states output: the adapters
    are configured with state prompts exactly when the folder has them."""
    import folder_paths

    path = next(p for p in WORKFLOWS if os.path.basename(p).startswith("AID - train"))
    prompt = stand_in_prompt(load(path), host)
    train = next(nid for nid, v in prompt.items() if v["class_type"] == "VA_TrainAdapter")
    name = f"test/aid_workflow_states_{with_states}"
    prompt[train]["inputs"]["file_name"] = name
    states = sorted(glob.glob(os.path.join(clip_folder, "*.states.txt")))
    if not with_states:
        for f in states:
            os.rename(f, f + ".off")
    try:
        host.run(prompt, [train])
    finally:
        for f in states:
            if os.path.exists(f + ".off"):
                os.rename(f + ".off", f)
    folder = folder_paths.get_folder_paths("video_adapters")[0]
    meta = host.pack_module("adapters.files").read_metadata(os.path.join(folder, name + ".safetensors"))
    assert meta["config"]["state_prompts"] is with_states
