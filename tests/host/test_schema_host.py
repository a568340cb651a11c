"""Conventions every node of the pack keeps: VA_ ids, one category root, a description and a tooltip on
every input and output."""


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
