"""Conventions every node of the pack keeps: VA_ ids, one category root, a description and a tooltip on
every input and output, and a help page in web/docs."""

import os


def pack_nodes(host):
    return [k for k in host.nodes.NODE_CLASS_MAPPINGS if k.startswith("VA_")]


def test_pack_registers_its_nodes(host):
    ids = pack_nodes(host)
    for expected in ("VA_ScoreComposer", "VA_AddPrior", "VA_PriorStrengthSchedule", "VA_CFGMixGuider",
                     "VA_LoadFrozenVideoModel"):
        assert expected in ids


def test_tooltips_categories_descriptions(host):
    problems = []
    for nid in pack_nodes(host):
        info = host.node_info(nid)
        if not info["category"].startswith("video_adapters/"):
            problems.append(f"{nid}: category {info['category']}")
        if not info.get("description"):
            problems.append(f"{nid}: no description")
        for group in ("required", "optional"):
            for name, spec in info["input"].get(group, {}).items():
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if not opts.get("tooltip"):
                    problems.append(f"{nid}.{name}: no tooltip")
        tips = info.get("output_tooltips") or []
        if len(tips) != len(info["output"]) or not all(tips):
            problems.append(f"{nid}: output tooltips {tips}")
    assert not problems, problems


def test_every_node_has_a_help_page(host):
    """ComfyUI shows web/docs/<node id>.md (under the pack's WEB_DIRECTORY) as a node's help page."""
    docs = os.path.join(os.path.dirname(host.pack.__file__), host.pack.WEB_DIRECTORY, "docs")
    missing = []
    for nid in pack_nodes(host):
        if nid.startswith("VATest_"):  # test-only nodes registered by other host tests
            continue
        page = os.path.join(docs, f"{nid}.md")
        if not os.path.isfile(page):
            missing.append(nid)
            continue
        with open(page, encoding="utf-8") as f:
            if not f.read().strip():
                missing.append(nid)
    assert not missing, f"nodes without a help page in web/docs: {missing}"
