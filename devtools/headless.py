"""Run ComfyUI workflows without the browser: load ComfyUI in-process, convert a UI workflow (what users
drag in) to an API prompt (what the executor runs), execute it.

Used by ``run_demo.py`` and the host tests. ComfyUI's backend has no UI-to-API converter (the frontend does
that), so ``ui_to_api`` follows the frontend's rules: widget values are positional, in the node's input
order, with one extra UI-only value after every widget that has a "control after generate" menu or an
upload button.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK_MODULE_NAME = "comfyui-video-adapters"
UI_ONLY_NODES = {"Note", "MarkdownNote"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
NO_HOST_HELP = ("ComfyUI was not found. Either install this pack in ComfyUI/custom_nodes/ and run the command "
                "from there, or point COMFYUI_PATH at a ComfyUI folder, and use the Python that runs ComfyUI.")


def put_host_first(root: str) -> None:
    """ComfyUI's root first on ``sys.path`` (its top-level modules: ``comfy``, ``nodes``, ``folder_paths``, ...)."""
    if root not in sys.path:
        sys.path.insert(0, root)


def find_comfyui(pack_dir: str = PACK_DIR) -> str | None:
    """ComfyUI's root: COMFYUI_PATH, or the ComfyUI whose custom_nodes folder holds this pack."""
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return os.path.abspath(env) if os.path.isfile(os.path.join(env, "nodes.py")) else None
    parent = os.path.dirname(os.path.realpath(pack_dir))
    if os.path.basename(parent) == "custom_nodes" and os.path.isfile(os.path.join(parent, "..", "nodes.py")):
        return os.path.dirname(parent)
    return None


class _Server:
    """The attributes of ComfyUI's PromptServer that the executor touches."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass

    def send_progress_text(self, text, node_id, sid=None):
        self.messages.append(("progress_text", {"text": text, "node_id": node_id}))


def stand_in_prompt_server(server):
    """Make ``server`` ComfyUI's ``PromptServer.instance`` when no real server exists in this process. Built-in
    extensions reach the server through it while ComfyUI loads them (0.33's node replacements register with
    ``PromptServer.instance.node_replace_manager``; without an instance that extension fails and ComfyUI
    prints "IMPORT FAILED: nodes_replacements.py")."""
    try:
        from server import PromptServer
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is not None:
        return
    if not hasattr(server, "node_replace_manager"):
        try:
            from app.node_replace_manager import NodeReplaceManager

            server.node_replace_manager = NodeReplaceManager()
        except ImportError:  # older ComfyUI: no node replacements
            pass
    PromptServer.instance = server


def new_executor(execution, server):
    """``execution.PromptExecutor`` built with the arguments this ComfyUI version takes: newer versions read
    RAM-cache limits from ``cache_args`` (``ram``, ``ram_inactive``: headroom in GB; ``lru``: size), older ones
    take ``cache_size``. The values are those of ComfyUI's own defaults (no LRU, no RAM pressure cache)."""
    import inspect

    params = inspect.signature(execution.PromptExecutor.__init__).parameters
    if "cache_args" in params:
        return execution.PromptExecutor(server, cache_type=False,
                                        cache_args={"lru": 0, "ram": 0.0, "ram_inactive": 0.0})
    return execution.PromptExecutor(server)


class Host:
    """ComfyUI loaded in this process with this pack registered as a custom node."""

    def __init__(self, root: str, model_dirs: dict[str, str] | None = None, output_dir: str | None = None,
                 cpu: bool = True):
        self.root = root
        self.workdir = tempfile.mkdtemp(prefix="va_host_")
        put_host_first(root)
        os.chdir(root)
        import comfy.options

        comfy.options.enable_args_parsing(False)
        import comfy.cli_args

        comfy.cli_args.args.cpu = cpu
        import utils.extra_config  # noqa: F401  (must come before `nodes`, which shadows `utils`)
        import folder_paths

        for kind, path in (model_dirs or {}).items():
            os.makedirs(path, exist_ok=True)
            folder_paths.add_model_folder_path(kind, path, is_default=True)
        if output_dir:
            folder_paths.set_output_directory(output_dir)
        import nodes

        self.server = _Server()
        stand_in_prompt_server(self.server)
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        self.nodes = nodes
        self.pack = self._load_pack()
        import comfy.utils
        import execution

        self.execution = execution
        self.executor = new_executor(execution, self.server)
        self.progress = []
        self.interrupt_after = None

        def hook(value, total, preview, prompt_id=None, node_id=None):
            self.progress.append((value, total))
            if self.interrupt_after is not None and len(self.progress) >= self.interrupt_after:
                nodes.interrupt_processing(True)
            import comfy.model_management

            comfy.model_management.throw_exception_if_processing_interrupted()

        comfy.utils.set_progress_bar_global_hook(hook)
        # newer ComfyUI throttles progress updates to the UI (100 ms); headless runs and tests see every step
        if hasattr(comfy.utils, "PROGRESS_THROTTLE_MIN_INTERVAL"):
            comfy.utils.PROGRESS_THROTTLE_MIN_INTERVAL = 0.0
        if hasattr(comfy.utils, "PROGRESS_THROTTLE_MIN_PERCENT"):
            comfy.utils.PROGRESS_THROTTLE_MIN_PERCENT = 0.0

    def _load_pack(self):
        """Import the pack exactly as ComfyUI imports a custom_nodes folder (through a link with a stable name,
        unless it already is a loaded custom node)."""
        pack_init = os.path.realpath(os.path.join(PACK_DIR, "__init__.py"))
        loaded = {os.path.realpath(d) for d in getattr(self.nodes, "LOADED_MODULE_DIRS", {}).values()}
        if os.path.realpath(PACK_DIR) in loaded:
            for mod in list(sys.modules.values()):
                if os.path.realpath(getattr(mod, "__file__", None) or "/nonexistent") == pack_init:
                    return mod
        link_parent = os.path.join(self.workdir, "custom_nodes")
        os.makedirs(link_parent, exist_ok=True)
        link = os.path.join(link_parent, PACK_MODULE_NAME)
        os.symlink(PACK_DIR, link)
        if not asyncio.run(self.nodes.load_custom_node(link)):
            raise RuntimeError("ComfyUI could not import the pack; the log above says why")
        return sys.modules[link.replace(".", "_x_")]

    def pack_module(self, dotted: str):
        """A submodule of the loaded pack, e.g. ``pack_module("nodes.common")``."""
        import importlib

        return importlib.import_module(f"{self.pack.__name__}.{dotted}")

    # --- node definitions, as the frontend sees them -----------------------------------------------
    def node_info(self, class_type: str) -> dict:
        cls = self.nodes.NODE_CLASS_MAPPINGS[class_type]
        if hasattr(cls, "GET_NODE_INFO_V1"):
            return cls.GET_NODE_INFO_V1()
        inputs = cls.INPUT_TYPES()
        return {"input": inputs, "input_order": {k: list(v.keys()) for k, v in inputs.items()},
                "output": list(cls.RETURN_TYPES),
                "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
                "output_node": bool(getattr(cls, "OUTPUT_NODE", False))}

    def call(self, class_type: str, *args, **kwargs) -> tuple:
        """Call a node (V1 or V3) directly, returning its output tuple."""
        cls = self.nodes.NODE_CLASS_MAPPINGS[class_type]
        if hasattr(cls, "define_schema"):
            out = cls.execute(*args, **kwargs)
            return tuple(out.result) if hasattr(out, "result") else tuple(out)
        return tuple(getattr(cls(), cls.FUNCTION)(*args, **kwargs))

    # --- running prompts --------------------------------------------------------------------------
    def validate(self, prompt: dict):
        return asyncio.run(self.execution.validate_prompt(str(uuid.uuid4()), prompt, None))

    def run(self, prompt: dict, outputs: list[str] | None = None, interrupt_after: int | None = None) -> dict:
        """Execute ``prompt``; ``outputs`` = node ids to run up to (default: the validated output nodes).

        Returns {node_id: output tuple} for ``outputs`` and the UI results under the key "ui".
        Raises RuntimeError with ComfyUI's message when a node fails, InterruptedError when interrupted."""
        if outputs is None:
            ok, err, outputs, node_errors = self.validate(prompt)
            if not ok:
                raise RuntimeError(f"invalid prompt: {err.get('message')} {err.get('details', '')} {node_errors}")
        self.progress = []
        self.interrupt_after = interrupt_after
        self.server.messages = []
        self.executor.reset()
        try:
            self.executor.execute(prompt, str(uuid.uuid4()), {}, list(outputs))
        finally:
            self.interrupt_after = None
            self.nodes.interrupt_processing(False)
        result = {"ui": {}}
        # the executor keeps every status message (the server only gets them when a client is connected)
        for event, data in list(self.server.messages) + list(getattr(self.executor, "status_messages", [])):
            if event == "execution_interrupted":
                raise InterruptedError(f"interrupted at node {data.get('node_id')}")
            if event == "execution_error":
                raise RuntimeError(f"{data['node_type']} ({data['node_id']}): {data['exception_type']}: "
                                   f"{data['exception_message']}")
        result["ui"] = dict(getattr(self.executor, "history_result", {}).get("outputs", {}))
        for nid in outputs:
            entry = self.executor.caches.outputs.get(nid)
            if asyncio.iscoroutine(entry):  # the caches are async on newer ComfyUI
                entry = asyncio.run(entry)
            entry = getattr(entry, "outputs", entry)
            if entry is not None:
                result[nid] = tuple(v[0] if isinstance(v, list) and len(v) == 1 else v for v in entry)
        return result


# --- UI workflow -> API prompt ------------------------------------------------------------------------
def _ordered_inputs(info: dict):
    """(name, spec, optional) in the node's input order."""
    for group in ("required", "optional"):
        specs = info["input"].get(group, {})
        for name in info.get("input_order", {}).get(group, list(specs.keys())):
            yield name, specs[name], group == "optional"


DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"


def _opts(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def is_widget(spec) -> bool:
    kind, opts = spec[0], _opts(spec)
    if opts.get("forceInput") or opts.get("hidden"):  # hidden inputs (kept for old API prompts) have no widget
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES or kind == DYNAMIC_COMBO


def extra_ui_value(name: str, spec) -> str | None:
    """The UI-only value the frontend stores after this widget: "control" for a "control after generate"
    menu (seeds), "upload" for an upload button (Load Image), else None."""
    opts = _opts(spec)
    if opts.get("control_after_generate") or (spec[0] == "INT" and name in ("seed", "noise_seed")):
        return "control"
    if any(opts.get(k) for k in ("image_upload", "video_upload", "audio_upload")):
        return "upload"
    return None


def widget_names(info: dict) -> list[tuple[str, object, str | None]]:
    """[(input name, spec, extra UI value kind)] for every top-level widget of a node, in widgets_values order
    (the widgets a dynamic combo adds depend on its value: see :func:`widget_slots`)."""
    return [(n, s, extra_ui_value(n, s)) for n, s, _ in _ordered_inputs(info) if is_widget(s)]


def _option_inputs(spec, key):
    """(name, spec) of the inputs a dynamic combo shows when ``key`` is selected, required first."""
    for opt in _opts(spec).get("options", []):
        if opt.get("key") == key:
            groups = opt.get("inputs", {})
            return [(n, sp) for g in ("required", "optional") for n, sp in groups.get(g, {}).items()]
    return []


def dynamic_combo_keys(spec) -> list[str]:
    return [o.get("key") for o in _opts(spec).get("options", [])]


def widget_slots(info: dict, values: list) -> list[tuple[str, object, str | None]]:
    """[(prompt input name, spec, extra UI value kind)] of a node's widgets for its saved ``values``
    (widgets_values), in order. Dynamic combos (V3 ``DynamicCombo``, e.g. SaveVideo's format on newer
    ComfyUI) are followed by the widgets of their selected option, named ``<combo>.<input>`` as the frontend
    sends them; past the saved values, a combo's default option decides."""
    out, pos = [], [0]

    def walk(items, prefix):
        for name, spec in items:
            if not is_widget(spec):
                continue
            extra = extra_ui_value(name, spec)
            full = prefix + name
            value = values[pos[0]] if pos[0] < len(values) else widget_default(spec)
            out.append((full, spec, extra))
            pos[0] += 2 if extra else 1
            if spec[0] == DYNAMIC_COMBO:
                walk(_option_inputs(spec, value), full + ".")

    walk([(n, sp) for n, sp, _ in _ordered_inputs(info)], "")
    return out


def widget_prefix(widgets: list, count: int) -> int | None:
    """How many of ``widgets`` (from :func:`widget_slots`) ``count`` saved widget values cover, or None when
    the count ends inside a widget's UI-only extra value or exceeds them all (values the frontend would drop
    silently: a sign of a workflow made for another version of the node)."""
    used = 0
    for k, (_, _, extra) in enumerate(widgets):
        if used == count:
            return k
        used += 2 if extra else 1
        if used > count:
            return None
    return len(widgets) if used == count else None


def widget_default(spec, fill_missing: bool = False):
    """The value the frontend puts in a widget nobody set: its default, else the first choice of a combo (or of
    a dynamic combo). ``fill_missing``: for widgets without a default, the frontend's empty value (0, "",
    False) instead of None."""
    kind, opts = spec[0], _opts(spec)
    if "default" in opts:
        return opts["default"]
    if isinstance(kind, list):
        return kind[0] if kind else ("" if fill_missing else None)
    if kind in ("COMBO", DYNAMIC_COMBO):
        keys = dynamic_combo_keys(spec) if kind == DYNAMIC_COMBO else list(opts.get("options") or [])
        if keys:
            return keys[0]
    if not fill_missing:
        return None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False, "COMBO": ""}.get(kind)


def ui_to_api(workflow: dict, node_info) -> dict:
    """Convert a UI-format workflow to an API prompt. ``node_info(class_type) -> dict`` gives definitions."""
    links = {l[0]: l for l in workflow.get("links", [])}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in UI_ONLY_NODES or node.get("mode", 0) == 2:  # notes, muted nodes
            continue
        if node.get("mode", 0) == 4:
            raise ValueError(f"node {node['id']} ({node['type']}) is bypassed; bypass is not supported headless")
        info = node_info(node["type"])
        values = list(node.get("widgets_values") or [])
        inputs, i = {}, 0
        for name, spec, extra in widget_slots(info, values):
            if i < len(values):
                inputs[name] = values[i]
            elif widget_default(spec) is not None:  # a widget newer than the workflow: the frontend keeps its default
                inputs[name] = widget_default(spec)
            i += 2 if extra else 1
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                l = links[inp["link"]]
                inputs[inp["name"]] = [str(l[1]), int(l[2])]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
