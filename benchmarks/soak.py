"""Soak: the same mixed batch of prompts (good and bad, every node family) through a real ComfyUI server, with
the server's resident memory (RSS) sampled after every prompt.

    python benchmarks/soak.py --host-path /path/to/ComfyUI --python /path/to/ComfyUI/venv/bin/python [--prompts 300]
    python benchmarks/soak.py ... --mode repeat               # one good prompt, the same every time
    python benchmarks/soak.py ... --server-arg=--cache-none   # any extra argument for ComfyUI's main.py
    python benchmarks/soak.py ... --no-trim                   # raw RSS only, as a user's server shows it
    python benchmarks/soak.py ... --only "bad:" --tracemalloc # which allocation sites keep growing

What it does:

1. makes a temporary base folder: ``extra_nodes/`` with a link to this pack and a small helper node module (the
   test-only stand-ins of ``devtools/tiny_models.py``: toy text encoder, VAE, CLIP-vision output, scripted MLLM),
   ``models/`` with the tiny real-architecture model files the host tests use (written by ``TinyModels`` in a
   short in-process ComfyUI), ``input/soak_clips/`` with two tiny mp4 clips, ``output/``;
2. starts ``main.py --cpu --listen 127.0.0.1 --port <free> --base-directory <tmp>
   --extra-model-paths-config <tmp>/extra_model_paths.yaml`` (the yaml names ``extra_nodes`` as a custom_nodes
   folder) and waits for it;
3. POSTs /prompt a fixed cycle of API prompts, round after round, until ``--prompts`` were sent: good ones (the
   tiny demo workflow converted with ``devtools.headless.ui_to_api`` and /object_info, the Score Composer with an
   added prior and a schedule, the CFG mix, Framewise Prompts, Latent-Shift, Dual CFG, Train Adapters and Train
   Domain Model for 2 steps, the MLLM state prompt, AID and FCA conditioning, DDIM inversion, one prompt that is
   the same every round) and bad ones (out-of-range widgets, a wrong schedule, a missing input, a missing file,
   an unknown node, bad words, a wrong latent, NaN, a file name that leaves its folder). Seeds change with the
   round, so most prompts differ from every earlier one (as a user's queue does); polls /history/<id> until each
   is done and records the outcome (ok / refused at /prompt / node error) next to the one expected;
4. after every round (and before the first) runs one diagnostic prompt (a helper node: ``gc.collect()`` and
   glibc's ``malloc_trim(0)``) and samples again: what is left is memory in use; the raw RSS also holds free heap
   that glibc keeps, 100-300 MB here, which moves from round to round and drifts from run to run (``--no-trim``
   leaves it alone);
5. at the end POSTs /free ``{"unload_models": true, "free_memory": true}`` and samples, trims and samples, then
   clears the server's /history (POST ``{"clear": true}``) and trims again: the difference is what it held.

Prints the RSS table (raw, and in use after each round's trim), the outcomes next to the expected ones, and a
verdict: the slope over the last half of the prompts (MB per 100 prompts, least squares) of the memory in use (with
``--no-trim``: of each round's raw floor and peak). ``--tracemalloc`` traces the server's Python allocations from
the end of the first round and prints the sites that grew most, the live models and tensors, and the sizes of the
executor's caches. Uses only loopback. About 5 minutes on 2 CPU cores with 300 prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import _root  # noqa: F401  (the repository root on sys.path)

from devtools.headless import ui_to_api  # noqa: E402  (pure Python: no ComfyUI import)

REPO = _root.ROOT
PACK_LINK_NAME = "comfyui-video-adapters"
DEMO = os.path.join(REPO, "workflows", "Video Adapter - tiny demo, no downloads.json")
WAN_DIM, SD_DIM = 4096, 768
SD, WAN_I2V = "tiny_sd15_prior.safetensors", "tiny_wan_i2v.safetensors"
MARKS = (0, 25, 50, 100, 200, 300)

# The helper custom node: the test-only stand-in nodes of devtools/tiny_models.py, loaded by file path (no
# top-level "devtools" import inside the server) and registered the V3 way.
HELPER_NODE = '''"""Soak-test helper nodes (written by benchmarks/soak.py): devtools/tiny_models.py's test-only nodes."""
import importlib.util
import sys
from types import SimpleNamespace

from comfy_api.latest import ComfyExtension

_spec = importlib.util.spec_from_file_location("va_soak_tiny_models", {path!r})
tiny = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tiny
_spec.loader.exec_module(tiny)
_registry = SimpleNamespace(nodes=SimpleNamespace(NODE_CLASS_MAPPINGS={{}}))
tiny.register_test_nodes(_registry)


from comfy_api.latest import io


class MallocTrim(io.ComfyNode):
    """Diagnostic: collect garbage and hand the C heap's free pages back to the system (glibc malloc_trim), so the
    RSS that remains is memory in use rather than memory the allocator keeps for later."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VASoak_MallocTrim", category="_for_testing", is_output_node=True,
                         inputs=[io.Int.Input("round", default=0)], outputs=[io.String.Output()])

    @classmethod
    def execute(cls, round):
        import ctypes
        import gc

        gc.collect()
        try:
            trimmed = ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            trimmed = -1
        return io.NodeOutput(f"malloc_trim: {{trimmed}}")


_TRACE = {{}}


class Tracemalloc(io.ComfyNode):
    """Diagnostic: "start" traces Python allocations from now on; "report" writes to ``path`` the allocation sites
    (file:line, with the calling lines) whose live memory grew most since the start."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VASoak_Tracemalloc", category="_for_testing", is_output_node=True,
                         inputs=[io.Combo.Input("action", options=["start", "report"]), io.String.Input("path"),
                                 io.Int.Input("round", default=0)],
                         outputs=[io.String.Output()])

    @classmethod
    def execute(cls, action, path, round):
        import gc
        import tracemalloc

        gc.collect()
        if action == "start":
            tracemalloc.start(8)
            _TRACE["baseline"] = tracemalloc.take_snapshot()  # (V3 node classes are locked: no class attributes)
            return io.NodeOutput("started")
        snap = tracemalloc.take_snapshot()
        filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
        diff = snap.filter_traces(filters).compare_to(_TRACE["baseline"].filter_traces(filters), "traceback")
        grown = [d for d in diff if d.size_diff > 0]
        kinds = ("ModelPatcher", "DomainVideoModel", "WanModel", "UNetModel", "Tensor", "Parameter")
        alive = {{k: 0 for k in kinds}}
        for o in gc.get_objects():
            name = type(o).__name__
            if name in alive:
                alive[name] += 1
        caches = []
        for o in gc.get_objects():  # the executor's output caches (LRU / RAM-pressure ones keep per-key dicts)
            if type(o).__module__ == "comfy_execution.caching" and type(o).__name__.endswith("Cache"):
                sizes = {{a: len(v) for a, v in getattr(o, "__dict__", {{}}).items()
                         if a in ("cache", "used_generation", "timestamps", "children", "subcaches")}}
                caches.append(f"{{type(o).__name__}} " + " ".join(f"{{a}}={{v}}" for a, v in sizes.items()))
        with open(path, "w") as f:
            f.write("executor caches: " + "; ".join(caches) + "\\n")
            f.write("live objects now: " + ", ".join(f"{{k}} {{v}}" for k, v in alive.items()) + "\\n")
            f.write(f"live Python memory grown since the start: {{sum(d.size_diff for d in grown) / 2**20:.2f}} MB "
                    f"in {{sum(d.count_diff for d in grown)}} blocks\\n")
            for d in grown[:12]:
                f.write(f"\\n+{{d.size_diff / 1024:.0f}} KB in {{d.count_diff:+d}} blocks, allocated at:\\n")
                for line in d.traceback.format(limit=8, most_recent_first=True):
                    f.write(line + "\\n")
        return io.NodeOutput("reported")


class SoakHelpers(ComfyExtension):
    async def get_node_list(self):
        return list(_registry.nodes.NODE_CLASS_MAPPINGS.values()) + [MallocTrim, Tracemalloc]


async def comfy_entrypoint():
    return SoakHelpers()
'''

# Writes the tiny model files and clips with the host's Python (an in-process ComfyUI, as the host tests do).
PREP = r'''
import os, shutil, sys
repo, base = sys.argv[1], sys.argv[2]
sys.path.insert(0, repo)
from devtools.headless import Host, find_comfyui
from devtools.tiny_models import TinyModels, write_video
models = os.path.join(base, "models")
host = Host(find_comfyui(), model_dirs={"diffusion_models": os.path.join(models, "diffusion_models")})
host.models_dir = models
TinyModels(host)
clips = os.path.join(base, "input", "soak_clips")
os.makedirs(clips, exist_ok=True)
for k in range(2):
    write_video(os.path.join(clips, f"clip{k}.mp4"), 13, seed=k, size=64)
shutil.rmtree(host.workdir, ignore_errors=True)
'''


# --- the prompts --------------------------------------------------------------------------------------------
def n(class_type, **inputs):
    return {"class_type": class_type, "inputs": inputs}


def demo_models(seed, prompt="a red ball bouncing"):
    return n("VA_TinyDemoModels", prompt=prompt, negative_prompt="", seed=seed)


def sample_custom(guider, model, latent, steps, seed):
    """Nodes s1..s4: sigmas, sampler, noise, SamplerCustomAdvanced."""
    return {"s1": n("BasicScheduler", model=model, scheduler="simple", steps=steps, denoise=1.0),
            "s2": n("KSamplerSelect", sampler_name="euler"),
            "s3": n("RandomNoise", noise_seed=seed),
            "s4": n("SamplerCustomAdvanced", noise=["s3", 0], guider=guider, sampler=["s2", 0], sigmas=["s1", 0],
                    latent_image=latent)}


def wan_latent(frames=5, size=32):
    return n("EmptyHunyuanLatentVideo", width=size, height=size, length=frames, batch_size=1)


def composer(r, **over):
    inputs = dict(domain_model=["1", 0], prior_model=["1", 1], positive=["1", 2], negative=["1", 3],
                  prior_strength=0.2, cfg=3.0, composition_end=0.9, prior_schedule=["2", 0], extra_priors=["3", 0])
    inputs.update(over)
    p = {"1": demo_models(r % 3), "2": n("VA_PriorStrengthSchedule", kind="cosine", start_value=1.0, end_value=0.0,
                                         start_percent=0.0, end_percent=1.0, points="0.0:1.0, 0.5:0.5"),
         "3": n("VA_AddPrior", prior_model=["1", 1], prior_positive=["1", 2], prior_strength=0.1),
         "4": n("VA_ScoreComposer", **inputs), "5": wan_latent()}
    p.update(sample_custom(["4", 0], ["1", 0], ["5", 0], 2, r))
    p["6"] = n("VA_LatentPreviewDecode", model=["1", 0], samples=["s4", 0], upscale=2)
    p["7"] = n("PreviewImage", images=["6", 0])
    return p


def cfg_mix(r):
    p = {"1": demo_models(r % 3, "a blue cube"),
         "4": n("VA_CFGMixGuider", domain_model=["1", 0], prior_model=["1", 1], positive=["1", 2], negative=["1", 3],
                prior_weight=0.3, cfg=4.0, prior_cfg=3.0, composition_end=0.8), "5": wan_latent()}
    p.update(sample_custom(["4", 0], ["1", 0], ["5", 0], 2, r))
    p["6"] = n("PreviewAny", source=["s4", 0])
    return p


def framewise(r, schedule='"0": "a closed box",\n"1": "the lid opens",\n"5": "the box is open"'):
    return {"1": demo_models(r % 3), "2": n("VATest_ToyTextEncoder", dim=WAN_DIM),
            "3": n("VA_FramewisePrompts", model=["1", 0], clip=["2", 0], schedule=schedule, frames=9, blend_frames=1,
                   temporal_stride=4),
            "4": wan_latent(9),
            "5": n("KSampler", model=["3", 0], seed=r, steps=1, cfg=3.0, sampler_name="euler", scheduler="simple",
                   positive=["1", 2], negative=["1", 3], latent_image=["4", 0], denoise=1.0),
            "6": n("VA_LatentPreviewDecode", model=["1", 0], samples=["5", 0], upscale=2),
            "7": n("PreviewImage", images=["6", 0])}


def latent_shift(r):
    return {"1": n("UNETLoader", unet_name=SD, weight_dtype="default"),
            "2": n("VATest_Conditioning", dim=SD_DIM, tokens=8, seed=r % 5),
            "3": n("VA_LatentShiftPatcher", model=["1", 0], mode=("simda", "previous_frame")[r % 2], frames=0,
                   start_percent=0.0, end_percent=1.0, blocks="all"),
            "4": n("EmptyLatentImage", width=32, height=32, batch_size=4),
            "5": n("KSampler", model=["3", 0], seed=r, steps=1, cfg=2.0, sampler_name="euler", scheduler="normal",
                   positive=["2", 0], negative=["2", 0], latent_image=["4", 0], denoise=1.0),
            "6": n("PreviewAny", source=["5", 0])}


def dual_cfg(r):
    p = {"1": n("UNETLoader", unet_name=WAN_I2V, weight_dtype="default"),
         "2": n("VATest_Conditioning", dim=WAN_DIM, tokens=8, seed=0),
         "3": n("VATest_Conditioning", dim=WAN_DIM, tokens=8, seed=1),
         "4": n("EmptyImage", width=32, height=32, batch_size=1, color=(r * 4099) % 0xFFFFFF),
         "5": n("VATest_ClipVisionOutput", image=["4", 0]),
         "6": n("VATest_ToyVAE", kind="video"),
         "7": n("WanImageToVideo", positive=["2", 0], negative=["3", 0], vae=["6", 0], width=32, height=32, length=9,
                batch_size=1, clip_vision_output=["5", 0], start_image=["4", 0]),
         "8": n("VA_DualCFGGuider", model=["1", 0], positive=["7", 0], negative=["7", 1], image_cfg=1.5, text_cfg=5.0,
                image_cfg_ramp="linear")}
    p.update(sample_custom(["8", 0], ["1", 0], ["7", 2], 2, r))
    p["9"] = n("VA_LatentPreviewDecode", model=["1", 0], samples=["s4", 0], upscale=2)
    p["10"] = n("PreviewImage", images=["9", 0])
    p["11"] = n("PreviewAny", source=["8", 1])
    return p


def clip_folder(kind, dim, frames):
    return {"c1": n("VATest_ToyVAE", kind=kind), "c2": n("VATest_ToyTextEncoder", dim=dim),
            "c3": n("VA_LoadClipFolder", folder="soak_clips", vae=["c1", 0], clip=["c2", 0], frames=frames, width=32,
                    height=32, frame_stride=1, clips_per_video=1, max_clips=0, default_caption="a moving pattern")}


def train_adapter(r, file_name="soak/simda"):
    p = clip_folder("image", SD_DIM, 4)
    p["1"] = n("UNETLoader", unet_name=SD, weight_dtype="default")
    p["2"] = n("VA_TrainAdapter", model=["1", 0], clips=["c3", 0], positive=["c3", 1], kind="simda", frames=0, steps=2,
               learning_rate=1e-3, batch_size=1, seed=r, latent_shift="simda", checkpoint_every=0, file_name=file_name)
    p["3"] = n("PreviewAny", source=["2", 1])
    return p


def train_domain(r, file_name="soak/domain"):
    p = clip_folder("video", WAN_DIM, 9)
    p["1"] = demo_models(r % 3)
    p["2"] = n("VA_TrainDomainModel", prior_model=["1", 1], clips=["c3", 0], captions=["c3", 1], size="tiny", steps=2,
               learning_rate=1e-3, batch_size=1, seed=r, cond_dropout=0.1, checkpoint_every=0, file_name=file_name)
    p["3"] = n("PreviewAny", source=["2", 1])
    return p


def state_prompts_and_aid(r):
    """The scripted MLLM's states drive AID Conditioning on a tiny SVD (SVD Conditioning per Clip), then 1 step."""
    return {"1": n("EmptyImage", width=32, height=32, batch_size=1, color=(r * 104729) % 0xFFFFFF),
            "2": n("VATest_ScriptedMLLM"),
            "3": n("VA_MLLMStatePrompt", image=["1", 0], instruction=f"open the box, round {r}", states=3, frames=4,
                   mllm=["2", 0], seed=r, max_tokens=256, temporal_stride=1),  # SVD: no temporal compression
            "4": n("VATest_TinySVDCheckpoint"),
            "5": n("VA_SVDClipConditioning", clip_vision=["4", 1], vae=["4", 2], first_frames=["1", 0], width=32,
                   height=32, motion_bucket_id=100, fps=8, augmentation_level=0.0),
            "6": n("VATest_ToyTextEncoder", dim=32),
            "7": n("VA_AIDConditioning", positive=["5", 0], negative=["5", 1], clip=["6", 0],
                   instruction="open the box", states=["3", 1], video_frames=4),
            "8": n("EmptyLatentImage", width=32, height=32, batch_size=4),
            "9": n("KSampler", model=["4", 0], seed=r, steps=1, cfg=2.0, sampler_name="euler", scheduler="karras",
                   positive=["7", 0], negative=["7", 1], latent_image=["8", 0], denoise=1.0),
            "10": n("PreviewAny", source=["3", 0]),
            "11": n("PreviewAny", source=["9", 0])}


def fca(r):
    return {"1": n("VATest_Conditioning", dim=WAN_DIM, tokens=8, seed=0),
            "2": n("VATest_Conditioning", dim=WAN_DIM, tokens=8, seed=1),
            "3": n("VATest_ToyVAE", kind="video"),
            "4": n("EmptyImage", width=32, height=32, batch_size=5, color=(r * 7919) % 0xFFFFFF),
            "5": n("VA_InitialFramesConditioning", positive=["1", 0], negative=["2", 0], vae=["3", 0], image=["4", 0],
                   initial_frames=1, noise_step=1, seed=r),
            "6": n("PreviewAny", source=["5", 0])}


def ddim(r):
    return {"1": demo_models(r % 3), "2": wan_latent(5),
            "3": n("VA_DDIMInversion", model=["1", 0], positive=["1", 2], latent=["2", 0], steps=2, cfg=1.0,
                   scheduler="simple"),
            "4": n("PreviewAny", source=["3", 1])}


def demo(object_info):
    with open(DEMO) as f:
        base = ui_to_api(json.load(f), lambda c: object_info[c])

    def make(r):
        p = json.loads(json.dumps(base))
        words = ("sunset", ("stripes", "dots", "checker")[r % 3], ("blob", "circle")[r % 2], "orbit", "pan right")
        for node in p.values():
            ins = node["inputs"]
            if node["class_type"] == "BasicScheduler":
                ins["steps"] = 2
            elif node["class_type"] == "RandomNoise":
                ins["noise_seed"] = r
            elif node["class_type"] == "VA_TinyTrainedPair":
                ins["prompt"] = ", ".join(words)
            elif node["class_type"] == "EmptyHunyuanLatentVideo":
                ins["length"] = 9
            elif node["class_type"] == "SaveVideo":
                ins["filename_prefix"] = ins["filename_prefix"].replace("video_adapters_demo", "soak")
        return p

    return make


def missing_input(r):
    p = composer(r)
    del p["4"]["inputs"]["positive"]
    return p


def wrong_latent(r):
    return {"1": n("EmptyLatentImage", width=32, height=32, batch_size=2),
            "2": n("VA_SyntheticLatentDecode", samples=["1", 0]), "3": n("PreviewImage", images=["2", 0])}


def unknown_node(r):
    return {"1": n("VA_NoSuchNode", x=r), "2": n("PreviewAny", source=["1", 0])}


def missing_file(r):
    return {"1": n("VA_LoadFrozenVideoModel", model_name="nope.safetensors", weight_dtype="default"),
            "2": n("PreviewAny", source=["1", 1])}


def bad_words(r):
    return {"1": n("VA_TinyTrainedPair", prompt=f"sunset, zebra{r}"), "2": n("PreviewAny", source=["1", 2])}


def cycle(object_info):
    """[(name, expected outcome, prompt maker(round))]: ok / refused (at /prompt) / error (when it runs)."""
    return [
        ("demo workflow (trained pair, 3 samplers)", "ok", demo(object_info)),
        ("composer + added prior + schedule", "ok", composer),
        ("CFG mix guider", "ok", cfg_mix),
        ("Framewise Prompts", "ok", framewise),
        ("Latent-Shift (SD 1.5)", "ok", latent_shift),
        ("Dual CFG (Wan i2v)", "ok", dual_cfg),
        ("Train Adapters 2 steps", "ok", train_adapter),
        ("Train Domain Model 2 steps", "ok", train_domain),
        ("MLLM state prompt + AID on SVD", "ok", state_prompts_and_aid),
        ("FCA initial frames", "ok", fca),
        ("DDIM inversion", "ok", ddim),
        ("composer, identical every round", "ok", lambda r: composer(0)),
        ("bad: cfg out of range", "refused", lambda r: composer(r, cfg=1000.0)),
        ("bad: missing input", "refused", missing_input),
        ("bad: missing model file", "refused", missing_file),
        ("bad: unknown node", "refused", unknown_node),
        ("bad: file name leaves folder", "refused", lambda r: train_domain(r, "a/../../b")),
        ("bad: schedule not from 0", "error", lambda r: framewise(r, f'"4": "x{r}"')),
        ("bad: unknown caption word", "error", bad_words),
        ("bad: wrong latent for decoder", "error", wrong_latent),
        ("bad: prior_strength NaN", "error", lambda r: composer(r, prior_strength=float("nan"))),
        ("bad: diverging settings", "error",
         lambda r: composer(r, prior_strength=10.0, cfg=100.0, composition_end=1.0, flow_space="noise")),
    ]


# --- the server ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    raise RuntimeError("no RSS")


class Server:
    def __init__(self, url, proc):
        self.url, self.proc = url, proc

    def request(self, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text.decode(errors="replace")

    def run(self, prompt, timeout=600):
        """('ok' | 'refused' | 'error', message, seconds)."""
        t0 = time.time()
        code, reply = self.request("/prompt", {"prompt": prompt, "client_id": "soak"})
        if code != 200:
            msg = reply.get("error", {}).get("message", "") if isinstance(reply, dict) else str(reply)
            return "refused", msg, time.time() - t0
        pid = reply["prompt_id"]
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError("the server exited")
            _, hist = self.request(f"/history/{pid}")
            entry = (hist or {}).get(pid)
            if entry and entry.get("status", {}).get("completed") is not None and \
                    entry["status"].get("status_str") in ("success", "error"):
                if entry["status"]["status_str"] == "success":
                    return "ok", "", time.time() - t0
                msg = ""
                for event, data in entry["status"].get("messages", []):
                    if event == "execution_error":
                        msg = f"{data.get('node_type')}: {data.get('exception_message', '')}"
                return "error", msg.strip(), time.time() - t0
            time.sleep(0.05)
        raise RuntimeError(f"prompt {pid} did not finish in {timeout} s")


def prepare(base, python, host):
    nodes_dir = os.path.join(base, "extra_nodes")
    os.makedirs(os.path.join(nodes_dir, "va_soak_helpers"))
    os.makedirs(os.path.join(base, "custom_nodes"))  # the base folder's own (empty): only extra_nodes is loaded
    os.symlink(REPO, os.path.join(nodes_dir, PACK_LINK_NAME))
    helper = HELPER_NODE.format(path=os.path.join(REPO, "devtools", "tiny_models.py"))
    compile(helper, "va_soak_helpers/__init__.py", "exec")  # a broken helper would only show in the server's log
    with open(os.path.join(nodes_dir, "va_soak_helpers", "__init__.py"), "w") as f:
        f.write(helper)
    yaml = os.path.join(base, "extra_model_paths.yaml")
    with open(yaml, "w") as f:
        f.write(f"soak:\n  base_path: {base}\n  custom_nodes: extra_nodes\n")
    t0 = time.time()
    subprocess.run([python, "-c", PREP, REPO, base], check=True, env={**os.environ, "COMFYUI_PATH": host},
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    print(f"tiny models and clips written in {time.time() - t0:.0f} s", flush=True)
    return yaml


def start(base, yaml, python, host, extra_args, log_path, env=None):
    port = free_port()
    cmd = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory", base,
           "--extra-model-paths-config", yaml, *extra_args]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=host, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    server = Server(f"http://127.0.0.1:{port}", proc)
    for _ in range(600):  # up to 5 minutes
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited at start; see {log_path}")
        try:
            if server.request("/system_stats", timeout=2)[0] == 200:
                return server
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server did not answer in 5 minutes; see {log_path}")


def slope_per_100(points):
    """Least-squares slope of (prompt index, MB) in MB per 100 prompts."""
    k = len(points)
    if k < 2:
        return 0.0
    mx = sum(x for x, _ in points) / k
    my = sum(y for _, y in points) / k
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return 100.0 * sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def verdict(samples, round_len, live):
    """Slopes over the last half of the prompts, MB per 100 prompts: of each round's lowest and highest RSS (raw
    samples jump by ~100 MB from round to round, as glibc keeps or returns the top of its heap after the largest
    prompt: a round's floor and peak are steadier), of every raw sample, and of the RSS after gc + malloc_trim
    (``live``) when sampled. Levels off when the live slope (without it: the floor and peak slopes) is under 1 % of
    the RSS (at least 10 MB) per 100 prompts."""
    total = samples[-1][0]
    rounds = {}
    for done, _, _, _, mb in samples[1:]:
        rounds.setdefault((done - 1) // round_len, []).append((done, mb))
    floors = [(max(d for d, _ in r), min(mb for _, mb in r)) for r in rounds.values()]
    peaks = [(max(d for d, _ in r), max(mb for _, mb in r)) for r in rounds.values()]
    last = [(d, mb) for d, _, _, _, mb in samples if d >= total / 2]
    median = sorted(mb for _, mb in last)[len(last) // 2]
    limit = max(10.0, 0.01 * median)
    slopes = {"round floors": slope_per_100([p for p in floors if p[0] >= total / 2]),
              "round peaks": slope_per_100([p for p in peaks if p[0] >= total / 2])}
    if live:  # memory in use decides; the raw floors and peaks are reported
        slopes["after gc + malloc_trim"] = slope_per_100([p for p in live if p[0] >= total / 2])
        flat = slopes["after gc + malloc_trim"] < limit
    else:
        flat = all(v < limit for v in slopes.values())
    jitter = max(mb for _, mb in last) - min(mb for _, mb in last)
    return (f"verdict: RSS slope over the last half (prompts {int(total / 2)}..{total}), MB per 100 prompts: "
            + ", ".join(f"{k} {v:+.1f}" for k, v in slopes.items())
            + f" (every raw sample {slope_per_100(last):+.1f}, which the {jitter:.0f} MB jitter dominates); "
            f"median {median:.0f} MB, peak {max(s[4] for s in samples):.0f} MB -> "
            + ("levels off" if flat else f"still growing (over {limit:.0f} MB per 100 prompts)")
            + (" (decided by the memory in use)" if live else " (raw RSS: glibc's free heap can drift)"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=300, help="prompts to send (default 300)")
    ap.add_argument("--host-path", default=os.environ.get("COMFYUI_PATH"), help="ComfyUI's folder (default: $COMFYUI_PATH)")
    ap.add_argument("--python", default=sys.executable, help="the Python that runs ComfyUI (default: this one)")
    ap.add_argument("--mode", choices=("mixed", "repeat", "distinct"), default="mixed",
                    help="mixed: the whole cycle; repeat: one good prompt (the composer), identical every time; "
                         "distinct: that prompt with a new seed every time")
    ap.add_argument("--only", default=None, metavar="TEXT",
                    help="mixed mode: only the prompts whose name contains TEXT (e.g. 'demo', 'bad:', 'Train'), to "
                         "find which prompt holds memory")
    ap.add_argument("--server-arg", action="append", default=[], help="extra argument for main.py (repeatable), "
                    "e.g. --server-arg=--cache-none")
    ap.add_argument("--no-trim", action="store_true",
                    help="do not run the gc + malloc_trim prompt after every round (and before the first): then only the "
                         "raw RSS is sampled, as a user's server would show it (free heap that glibc keeps included, "
                         "which moves by 100-300 MB from run to run), and the verdict reads the raw RSS")
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for the server (repeatable), e.g. MALLOC_MMAP_THRESHOLD_=131072")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="diagnostic: trace the server's Python allocations from the end of the first round and print "
                         "the sites whose live memory grew most by the end (slows the server)")
    ap.add_argument("--csv", default=None, help="also write every sample (prompt, name, outcome, seconds, RSS MB)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (models, outputs, server log)")
    args = ap.parse_args(argv)
    if not args.host_path or not os.path.isfile(os.path.join(args.host_path, "main.py")):
        print("give ComfyUI's folder with --host-path (or COMFYUI_PATH)", file=sys.stderr)
        return 2
    host = os.path.abspath(args.host_path)
    version = "?"
    try:
        with open(os.path.join(host, "comfyui_version.py")) as f:
            version = f.read().split('__version__ = "')[1].split('"')[0]
    except (OSError, IndexError):
        pass
    base = tempfile.mkdtemp(prefix="va_soak_")
    log_path = os.path.join(base, "server.log")
    server = None
    samples = []  # (prompts done, name, outcome, seconds, rss)
    mismatches = {}
    try:
        yaml = prepare(base, args.python, host)
        env = dict(kv.split("=", 1) for kv in args.server_env)
        server = start(base, yaml, args.python, host, args.server_arg, log_path, env)
        _, object_info = server.request("/object_info", timeout=120)
        missing = [c for c in ("VA_TinyDemoModels", "VATest_ToyVAE") if c not in object_info]
        if missing:
            raise RuntimeError(f"the server has no {missing}; see {log_path}")
        items = cycle(object_info)
        if args.only:
            items = [it for it in items if args.only.lower() in it[0].lower()]
            if not items:
                raise RuntimeError(f"no prompt name contains {args.only!r}")
        if args.mode != "mixed":
            items = [("composer, identical", "ok", lambda r: composer(0))] if args.mode == "repeat" else \
                [("composer, new seed", "ok", composer)]
        pid = server.proc.pid
        print(f"ComfyUI {version} at {host}, server pid {pid}, {server.url} {' '.join(args.server_arg)}; "
              f"{args.prompts} prompts, mode {args.mode}{', only ' + repr(args.only) if args.only else ''}, a cycle of "
              f"{len(items)}", flush=True)
        samples.append((0, "start", "", 0.0, rss_mb(pid)))
        live = []  # (prompts done, RSS after gc + malloc_trim) with --trim-each-round

        def trim_sample(done):
            if server.run({"1": n("VASoak_MallocTrim", round=done)})[0] == "ok":
                return rss_mb(pid)
            return float("nan")

        if not args.no_trim:
            live.append((0, trim_sample(0)))
        t_start = time.time()
        for i in range(args.prompts):
            name, expected, make = items[i % len(items)]
            outcome, msg, secs = server.run(make(i // len(items) + 1))
            samples.append((i + 1, name, outcome, secs, rss_mb(pid)))
            if outcome != expected:
                mismatches.setdefault(name, (expected, outcome, msg[:300], []))[3].append(i + 1)
            if not args.no_trim and ((i + 1) % len(items) == 0 or i + 1 == args.prompts):
                live.append((i + 1, trim_sample(i + 1)))
            if args.tracemalloc and i + 1 == len(items):
                outcome = server.run({"1": n("VASoak_Tracemalloc", action="start", path="", round=i + 1)})
                if outcome[0] != "ok":
                    print(f"tracemalloc did not start: {outcome[1]}", file=sys.stderr)
            if (i + 1) % 25 == 0 or i + 1 == args.prompts:
                print(f"  {i + 1:4d} prompts  {time.time() - t_start:6.0f} s  RSS {samples[-1][4]:7.0f} MB", flush=True)
        report = os.path.join(base, "tracemalloc.txt")
        traced = ""
        if args.tracemalloc:
            outcome = server.run({"1": n("VASoak_Tracemalloc", action="report", path=report, round=args.prompts)})
            if outcome[0] == "ok":
                with open(report) as f:
                    traced = f.read()
            else:
                traced = f"the tracemalloc report failed: {outcome[1]}"
        _, history = server.request("/history", timeout=120)
        history_kb = len(json.dumps(history)) / 1024
        code, _ = server.request("/free", {"unload_models": True, "free_memory": True})
        after = []
        for wait in (2, 5, 10):
            time.sleep(wait - (after[-1][0] if after else 0))
            after.append((wait, rss_mb(pid)))
        trimmed = trim_sample(-1)
        server.request("/history", {"clear": True})  # then the history holds nothing but the next prompt
        cleared = trim_sample(-2)
    finally:
        if server is not None and server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(30)
            except subprocess.TimeoutExpired:
                server.proc.kill()
    total = len(samples) - 1
    rss = {s[0]: s[4] for s in samples}
    marks = [m for m in MARKS if m <= total] + ([total] if total not in MARKS else [])
    settings = " ".join(args.server_arg + args.server_env) or "default cache"
    print(f"\nRSS of the server (ComfyUI {version}, {settings}, mode {args.mode}, "
          f"{time.strftime('%Y-%m-%d')})")
    print("| prompts done | " + " | ".join(str(m) for m in marks) + " | after /free |")
    print("|---" * (len(marks) + 2) + "|")
    print("| RSS (MB) | " + " | ".join(f"{rss[m]:.0f}" for m in marks) + f" | {after[-1][1]:.0f} |")
    if live:
        at = [max((x for x in live if x[0] <= m), key=lambda x: x[0]) for m in marks]
        print("| after gc + malloc_trim (MB) | " + " | ".join(f"{mb:.0f}" for _, mb in at) + f" | {trimmed:.0f} |")
        if any(x != m for (x, _), m in zip(at, marks)):
            print("  (trimmed at the end of each round: at prompts " + ", ".join(str(x) for x, _ in at) + ")")
    print(f"/free answered {code}; RSS after it: " + ", ".join(f"{mb:.0f} MB at {w} s" for w, mb in after)
          + f"; after gc + malloc_trim in the server: {trimmed:.0f} MB; after also clearing /history: {cleared:.0f} MB")
    print(f"the server's /history: {len(history or {})} entries, {history_kb:.0f} KB as JSON "
          f"({history_kb / max(1, len(history or {})):.1f} KB each)")
    counts = {}
    for s in samples[1:]:
        counts[s[2]] = counts.get(s[2], 0) + 1
    print(f"outcomes: {counts}; {sum(s[3] for s in samples[1:]):.0f} s in prompts")
    for name, (exp, got, msg, at) in mismatches.items():
        print(f"  UNEXPECTED {name}: expected {exp}, got {got} at prompts {at[:5]}{'...' if len(at) > 5 else ''}: {msg}")
    print(verdict(samples, len(items), live))
    if traced:
        print("\ntracemalloc (after the first round .. the end, before /free):\n" + traced)
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["prompt", "name", "outcome", "seconds", "rss_mb"])
            out.writerows([s[0], s[1], s[2], f"{s[3]:.2f}", f"{s[4]:.1f}"] for s in samples)
    if args.keep:
        print(f"kept {base} (server log: {log_path})")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
