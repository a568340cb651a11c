"""Template thumbnails: a readable diagram of each workflow (its title and the chain of its main nodes, column
by column, as laid out in the graph), written as ``<workflow>.jpg`` next to the workflow for ComfyUI's
Templates browser. Workflows whose thumbnail is a frame of their real output (the Video Adapter demo's contact
sheet from ``run_demo.py --contact-sheet``, the FCA and AID demos' last preview frames from ``run_demo.py
--preview``) are listed in KEEP and left alone.

    python -m devtools.thumbnails            # from the pack's folder: every workflow without a kept thumbnail
"""

from __future__ import annotations

import glob
import json
import os
import re

from PIL import Image, ImageDraw, ImageFont

WORKFLOWS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workflows")
KEEP = {"Video Adapter - tiny demo, no downloads", "FCA - tiny demo, no downloads", "AID - tiny demo, no downloads"}
SKIP_TYPES = {"MarkdownNote", "Note", "PrimitiveNode"}
FAMILY_COLOURS = {"Video Adapter": (36, 84, 160), "SimDA": (30, 120, 90), "AID": (150, 70, 40)}


def _label(node: dict) -> str:
    if node.get("title"):
        return node["title"]
    name = node["type"][3:] if node["type"].startswith("VA_") else node["type"]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)


def _font(size: int):
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default()


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    return lines + ([line] if line else [])


CORE_LABELS = {"UNETLoader": "Load Diffusion Model", "CheckpointLoaderSimple": "Load Checkpoint",
               "ImageOnlyCheckpointLoader": "Load SVD", "LoadImage": "Load Image", "SaveVideo": "Save Video",
               "WanImageToVideo": "Wan Image to Video", "SVD_img2vid_Conditioning": "SVD Conditioning",
               "SamplerCustomAdvanced": "Sampler", "KSampler": "KSampler"}
VA_LABELS = {"VA_ScoreComposer": "Score Composer", "VA_CFGMixGuider": "CFG Mix", "VA_LoadFrozenVideoModel": "Frozen Prior",
             "VA_TrainDomainModel": "Train Domain Model", "VA_LoadClipFolder": "Your Clips", "VA_LatentShiftPatcher":
             "Latent Shift", "VA_TrainAdapter": "Train Adapters", "VA_DDIMInversion": "DDIM Inversion",
             "VA_DualCFGGuider": "Dual CFG", "VA_MLLMEndpoint": "MLLM", "VA_LoadMLLM": "MLLM",
             "VA_MLLMStatePrompt": "State Prompts", "VA_FramewisePrompts": "Per-frame Prompts",
             "VA_TinyTrainedPair": "Tiny Demo Pair", "VA_TinyDemoModels": "Tiny Models",
             "VA_DomainModelConditioning": "First Frame", "VA_LoadDomainModel": "Domain Model", "VA_AddPrior": "Add Prior",
             "VA_PriorStrengthSchedule": "Strength Schedule", "VA_LatentPreviewDecode": "Preview",
             "VA_SaveTrainingData": "Save Data", "VA_LoadAdapter": "Load Adapters"}
FIRST = ("VA_TinyTrainedPair", "VA_TinyDemoModels", "UNETLoader", "CheckpointLoaderSimple", "ImageOnlyCheckpointLoader")


def chain(workflow: dict) -> list[str]:
    """The workflow in a few steps: its main model loader, the pack's nodes in graph order (left to right),
    and the sampler and the save node."""
    nodes = sorted((n for n in workflow["nodes"] if n["type"] not in SKIP_TYPES), key=lambda n: (n["pos"][0], n["pos"][1]))
    steps = []
    first = next((n for t in FIRST for n in nodes if n["type"] == t), None)
    if first is not None:
        steps.append(CORE_LABELS.get(first["type"]) or VA_LABELS.get(first["type"]) or _label({"type": first["type"]}))
    seen = set()
    for n in nodes:
        if n["type"].startswith("VA_") and n["type"] not in seen and n is not first:
            seen.add(n["type"])
            steps.append(VA_LABELS.get(n["type"]) or _label({"type": n["type"]}))
    steps = steps[:1] + steps[1:][:3]
    if any(n["type"] == "SaveVideo" for n in nodes):
        steps.append("Save Video")
    return steps


def render(workflow: dict, title: str, size=(560, 560)) -> Image.Image:
    """The workflow's main steps as a row of boxes, with the method family in a band at the bottom (the
    Templates browser prints the title under the card and puts its own badge on the top-left corner)."""
    family = title.split(" - ")[0]
    colour = FAMILY_COLOURS.get(family, (70, 70, 70))
    img = Image.new("RGB", size, (246, 246, 243))
    draw = ImageDraw.Draw(img)
    mid, band_font = _font(23), _font(40)
    band_top = size[1] - 110
    draw.rectangle([0, band_top, size[0], size[1]], fill=colour)
    draw.text((24, band_top + 32), family, fill=(255, 255, 255), font=band_font)
    steps = chain(workflow)
    n = len(steps)
    gap = 22
    box_w = (size[0] - 40 - gap * (n - 1)) / max(n, 1)
    box_h = 200
    top = (band_top - box_h) / 2 + 20
    for i, step in enumerate(steps):
        x = 20 + i * (box_w + gap)
        fill = (232, 232, 228) if i in (0, n - 1) else (255, 255, 255)
        draw.rounded_rectangle([x, top, x + box_w, top + box_h], radius=12, fill=fill, outline=colour, width=3)
        lines = _wrap(draw, step, mid, box_w - 12)[:4]
        ty = top + (box_h - 28 * len(lines)) / 2
        for line in lines:
            draw.text((x + (box_w - draw.textlength(line, font=mid)) / 2, ty), line, fill=(25, 25, 25), font=mid)
            ty += 28
        if i + 1 < n:
            ax, ay = x + box_w + 3, top + box_h / 2
            draw.line([(ax, ay), (ax + gap - 8, ay)], fill=colour, width=3)
            draw.polygon([(ax + gap - 4, ay), (ax + gap - 12, ay - 6), (ax + gap - 12, ay + 6)], fill=colour)
    return img


def main() -> None:
    for path in sorted(glob.glob(os.path.join(WORKFLOWS_DIR, "*.json"))):
        title = os.path.splitext(os.path.basename(path))[0]
        if title in KEEP:
            continue
        with open(path) as f:
            workflow = json.load(f)
        out = os.path.splitext(path)[0] + ".jpg"
        render(workflow, title).save(out, quality=88)
        print(out)


if __name__ == "__main__":
    main()
