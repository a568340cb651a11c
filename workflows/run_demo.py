"""Run a shipped workflow headless on the CPU and print the path of every file it saved.

    python workflows/run_demo.py                      # the tiny demo: no downloads, about a minute on a CPU
    python workflows/run_demo.py "workflows/FCA - tiny demo, no downloads.json" --preview fca.gif
    python workflows/run_demo.py "workflows/AID - tiny demo, no downloads.json" --preview aid.gif
    python workflows/run_demo.py path/to/workflow.json --output out/
    python workflows/run_demo.py --contact-sheet frames.jpg   # also one image (in the output folder): a row of frames per video
    python workflows/run_demo.py --preview demo.gif           # also an animated GIF: the videos side by side

Run it with the Python that runs ComfyUI, from a pack installed in ComfyUI/custom_nodes (or with
COMFYUI_PATH pointing at ComfyUI).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the pack's folder: its core packages and devtools

from devtools.headless import NO_HOST_HELP, Host, find_comfyui, ui_to_api  # noqa: E402

DEFAULT = os.path.join(HERE, "Video Adapter - tiny demo, no downloads.json")
FCA_DEMO = os.path.join(HERE, "FCA - tiny demo, no downloads.json")
AID_DEMO = os.path.join(HERE, "AID - tiny demo, no downloads.json")


def saved_files(ui_results: dict, output_dir: str) -> list[str]:
    paths = []
    for out in ui_results.values():
        for key in ("images", "video", "videos", "gifs"):
            for item in out.get(key, []) or []:
                if isinstance(item, dict) and item.get("type", "output") == "output" and "filename" in item:
                    paths.append(os.path.join(output_dir, item.get("subfolder", ""), item["filename"]))
    return paths


def domain_reference_frames(seed: int = 4, style: str = "sunset"):
    """A held-out clip of the demo pair's domain style, seen the way the demo shows its samples (encoded and
    decoded with the synthetic latent code, 64 x 64): what the style looks like."""
    from PIL import Image

    from adapters.synthetic_video import make_style_clips, synthetic_codec

    codec = synthetic_codec()
    clip = make_style_clips(1, style, seed=seed).video
    rgb = codec.decode(codec.encode(clip))[0]  # [3, T, H, W]
    return [Image.fromarray((f.clamp(0, 1) * 255).round().byte().numpy()) for f in rgb.permute(1, 2, 3, 0)]


def _video_frames(path: str) -> list:
    import av

    with av.open(path) as c:
        return [f.to_image() for f in c.decode(video=0)]


def animated_preview(paths: list[str], out_path: str, labels: dict | None = None, extra_rows: list | None = None,
                     scale: int = 2, fps: float = 4.0, per_row: int | None = None,
                     row_titles: list[str] | None = None) -> str:
    """An animated GIF (or WebP, by the file name) with the videos side by side, each under its label; with
    ``per_row``, that many videos per row, each row under its title from ``row_titles``."""
    from PIL import Image, ImageDraw

    cols = [(labels.get(os.path.basename(p), _name(p)) if labels else _name(p), _video_frames(p)) for p in paths]
    cols += list(extra_rows or [])
    per_row = per_row or len(cols)
    rows = [cols[i:i + per_row] for i in range(0, len(cols), per_row)]
    w, h = cols[0][1][0].size
    w, h, gap, top = w * scale, h * scale, 6, 18
    title = 16 if row_titles else 0
    row_h = title + top + h + gap
    n = min(len(f) for _, f in cols)
    frames = []
    for t in range(n):
        im = Image.new("RGB", (per_row * (w + gap) - gap, len(rows) * row_h - gap), "white")
        draw = ImageDraw.Draw(im)
        for r, row in enumerate(rows):
            y = r * row_h
            if row_titles and r < len(row_titles):
                draw.text((2, y + 2), row_titles[r], fill="black")
            for k, (label, fr) in enumerate(row):
                draw.text((k * (w + gap) + 2, y + title + 3), label, fill=(60, 60, 60))
                im.paste(fr[t].resize((w, h), Image.NEAREST), (k * (w + gap), y + title + top))
        frames.append(im.convert("P", palette=Image.ADAPTIVE, colors=255))
    frames[0].save(out_path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0,
                   optimize=True)
    return out_path


def _name(path: str) -> str:
    return re.sub(r"_\d+_?$", "", os.path.splitext(os.path.basename(path))[0])  # drop SaveVideo's counter


def contact_sheet(paths: list[str], out_path: str, scale: int = 2, max_frames: int = 8,
                  extra_rows: list | None = None) -> str:
    """One image with a row per video (its file name on the left) and up to ``max_frames`` frames per row;
    ``extra_rows``: more ``(label, [PIL images])`` rows at the bottom."""
    from PIL import Image, ImageDraw

    rows = []
    for p in paths:
        frames = _video_frames(p)
        step = max(1, len(frames) // max_frames)
        rows.append((os.path.splitext(os.path.basename(p))[0], frames[::step][:max_frames]))
    rows += [(label, frames[:max_frames]) for label, frames in (extra_rows or [])]
    w, h = rows[0][1][0].size
    w, h, label_w, gap = w * scale, h * scale, 170, 4
    cols = max(len(f) for _, f in rows)
    sheet = Image.new("RGB", (label_w + cols * (w + gap), len(rows) * (h + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, frames) in enumerate(rows):
        y = r * (h + gap)
        draw.text((6, y + h // 2 - 6), re.sub(r"_\d+_?$", "", name), fill="black")  # drop SaveVideo's counter
        for k, im in enumerate(frames):
            sheet.paste(im.resize((w, h), Image.NEAREST), (label_w + k * (w + gap), y))
    sheet.save(out_path, quality=92)
    return out_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow", nargs="?", default=DEFAULT, help="UI-format workflow JSON (default: the tiny demo)")
    ap.add_argument("--output", default=None, help="output folder (default: ComfyUI's output folder)")
    ap.add_argument("--contact-sheet", default=None, metavar="IMAGE",
                    help="also write one image with a row of frames per saved video (jpg or png); a bare file name "
                         "goes into the output folder, a path (./x.jpg, dir/x.jpg) is taken as given")
    ap.add_argument("--preview", default=None, metavar="GIF",
                    help="also write an animated GIF (or .webp) with the saved videos side by side; a bare file name "
                         "goes into the output folder, a path is taken as given")
    args = ap.parse_args(argv)
    root = find_comfyui()
    if root is None:
        print(NO_HOST_HELP, file=sys.stderr)
        return 2
    workflow_path = os.path.abspath(args.workflow)
    output = os.path.abspath(args.output) if args.output else None
    sheet = args.contact_sheet
    if sheet and os.path.dirname(sheet):
        sheet = os.path.abspath(sheet)  # before ComfyUI changes the cwd
    preview = args.preview
    if preview and os.path.dirname(preview):
        preview = os.path.abspath(preview)
    with open(workflow_path) as f:
        workflow = json.load(f)
    host = Host(root, output_dir=output)
    import folder_paths

    prompt = ui_to_api(workflow, host.node_info)
    result = host.run(prompt)
    files = saved_files(result["ui"], folder_paths.get_output_directory())
    if sheet and not os.path.dirname(sheet):  # a bare name: next to the outputs, never into the pack's checkout
        sheet = os.path.join(folder_paths.get_output_directory(), sheet)
    if preview and not os.path.dirname(preview):
        preview = os.path.join(folder_paths.get_output_directory(), preview)
    if not files:
        print("the workflow ran but saved no files", file=sys.stderr)
        return 1
    for p in files:
        print(p)
    videos = sorted(p for p in files if p.lower().endswith((".mp4", ".webm", ".mov", ".gif")))
    demo = workflow_path == DEFAULT
    instruction_demo = workflow_path in (FCA_DEMO, AID_DEMO)  # two instructions, a row of three videos each
    if sheet and videos:
        extra = [("D_real_domain_clip", domain_reference_frames())] if demo else []
        print(contact_sheet(videos, sheet, extra_rows=extra))
    if preview and videos:
        extra = [("D: a real clip", domain_reference_frames())] if demo else []
        known = (DEMO_LABELS if demo else FCA_DEMO_LABELS if workflow_path == FCA_DEMO else
                 AID_DEMO_LABELS if workflow_path == AID_DEMO else {})
        labels = {os.path.basename(p): lab for p in videos for key, lab in known.items() if key in p} or None
        layout = (dict(per_row=3, row_titles=demo_instructions(workflow)) if instruction_demo and len(videos) == 6
                  else {})
        print(animated_preview(videos, preview, labels=labels, extra_rows=extra, **layout))
    return 0


DEMO_LABELS = {"A_domain_only": "A: small only", "B_prior_only": "B: prior only", "C_composer": "C: composer"}
FCA_DEMO_LABELS = {"1_truth": "the true clip", "2_base_alone": "frozen base alone", "3_base_with_FCA": "base + FCA",
                   "4_truth_swapped": "the true clip", "5_base_alone_swapped": "frozen base alone",
                   "6_with_FCA_swapped": "base + FCA"}


AID_DEMO_LABELS = {"1_truth": "the true clip", "2_base_alone": "frozen base alone", "3_base_with_AID": "base + AID",
                   "4_truth_other": "the true clip", "5_base_alone_again": "frozen base alone",
                   "6_with_AID_other": "base + AID"}


def demo_instructions(workflow: dict) -> list[str]:
    """The two instructions of an instruction demo's scene (from its Tiny Instruction Scene's seed)."""
    from adapters.instruction_world import DEMO_PAIRS, demo_scene

    values = next(n["widgets_values"] for n in workflow["nodes"] if n["type"] == "VA_TinyInstructionScene")
    pair = next((v for v in values[1:] if v in DEMO_PAIRS), DEMO_PAIRS[0])  # files written before it: the default
    plans = demo_scene(int(values[0]), pair).plans
    return [f"{k}. {p.instruction}" for k, p in enumerate(plans, 1)]


if __name__ == "__main__":
    sys.exit(main())
