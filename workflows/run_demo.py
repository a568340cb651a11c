"""Run a shipped workflow headless on the CPU and print the path of every file it saved.

    python workflows/run_demo.py                      # the tiny demo: no downloads, about a minute on a CPU
    python workflows/run_demo.py path/to/workflow.json --output out/

Run it with the Python that runs ComfyUI, from a pack installed in ComfyUI/custom_nodes (or with
COMFYUI_PATH pointing at ComfyUI).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from headless import NO_HOST_HELP, Host, find_comfyui, ui_to_api  # noqa: E402

DEFAULT = os.path.join(HERE, "video_adapter_demo_tiny.json")


def saved_files(ui_results: dict, output_dir: str) -> list[str]:
    paths = []
    for out in ui_results.values():
        for key in ("images", "video", "videos", "gifs"):
            for item in out.get(key, []) or []:
                if isinstance(item, dict) and item.get("type", "output") == "output" and "filename" in item:
                    paths.append(os.path.join(output_dir, item.get("subfolder", ""), item["filename"]))
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow", nargs="?", default=DEFAULT, help="UI-format workflow JSON (default: the tiny demo)")
    ap.add_argument("--output", default=None, help="output folder (default: ComfyUI's output folder)")
    args = ap.parse_args(argv)
    root = find_comfyui()
    if root is None:
        print(NO_HOST_HELP, file=sys.stderr)
        return 2
    workflow_path = os.path.abspath(args.workflow)
    output = os.path.abspath(args.output) if args.output else None
    with open(workflow_path) as f:
        workflow = json.load(f)
    host = Host(root, output_dir=output)
    import folder_paths

    prompt = ui_to_api(workflow, host.node_info)
    result = host.run(prompt)
    files = saved_files(result["ui"], folder_paths.get_output_directory())
    if not files:
        print("the workflow ran but saved no files", file=sys.stderr)
        return 1
    for p in files:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
