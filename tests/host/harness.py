"""Loads the pack into a real ComfyUI in-process and runs API-format graphs on tiny models.

The host is found through ``COMFYUI_PATH`` or because this pack sits in ``ComfyUI/custom_nodes/``.
Everything ComfyUI-specific the tests need lives here, so the tests read as graphs and assertions.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid

PACK_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK_MODULE_NAME = "comfyui-video-adapters"


def find_comfyui() -> str | None:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return env if os.path.isfile(os.path.join(env, "nodes.py")) else None
    parent = os.path.dirname(PACK_DIR)
    if os.path.basename(parent) == "custom_nodes":
        root = os.path.dirname(parent)
        if os.path.isfile(os.path.join(root, "nodes.py")):
            return root
    return None


class _Server:
    """The few attributes of ComfyUI's PromptServer the executor touches."""

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


class Host:
    def __init__(self, root: str):
        self.root = root
        self.workdir = tempfile.mkdtemp(prefix="va_host_")
        self.models_dir = os.path.join(self.workdir, "models")
        for sub in ("diffusion_models", "video_adapters", "vae", "text_encoders"):
            os.makedirs(os.path.join(self.models_dir, sub), exist_ok=True)
        self._load()

    def _load(self):
        if self.root not in sys.path:
            sys.path.insert(0, self.root)
        self._cwd = os.getcwd()
        os.chdir(self.root)
        import comfy.options

        comfy.options.enable_args_parsing(False)
        import comfy.cli_args

        comfy.cli_args.args.cpu = True
        import utils.extra_config  # noqa: F401  (must precede `nodes`, which shadows `utils`)
        import folder_paths

        for sub in ("diffusion_models", "video_adapters", "vae", "text_encoders"):
            folder_paths.add_model_folder_path(sub, os.path.join(self.models_dir, sub), is_default=True)
        folder_paths.set_output_directory(os.path.join(self.workdir, "output"))
        import nodes

        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        # Load the pack exactly as ComfyUI loads a custom_nodes folder, under a stable module name.
        link_parent = os.path.join(self.workdir, "custom_nodes")
        os.makedirs(link_parent, exist_ok=True)
        link = os.path.join(link_parent, PACK_MODULE_NAME)
        if not os.path.exists(link):
            os.symlink(PACK_DIR, link)
        ok = asyncio.run(nodes.load_custom_node(link))
        if not ok:
            raise RuntimeError("ComfyUI failed to import the pack; see the log above")
        self.nodes = nodes
        self.pack = sys.modules[link.replace(".", "_x_")]  # ComfyUI names directory packages by their path
        import comfy.utils
        import execution

        self.execution = execution
        self.server = _Server()
        self.executor = execution.PromptExecutor(self.server)
        self.progress = []

        def hook(value, total, preview, prompt_id=None, node_id=None):
            self.progress.append((value, total))
            if self.interrupt_after is not None and len(self.progress) >= self.interrupt_after:
                nodes.interrupt_processing(True)
            import comfy.model_management

            comfy.model_management.throw_exception_if_processing_interrupted()

        self.interrupt_after = None
        comfy.utils.set_progress_bar_global_hook(hook)

    def pack_module(self, dotted: str):
        """Import a submodule of the loaded pack, e.g. ``samplers.composition``."""
        import importlib

        return importlib.import_module(f"{self.pack.__name__}.{dotted}")

    def node_class(self, class_type: str):
        return self.nodes.NODE_CLASS_MAPPINGS[class_type]

    def call(self, class_type: str, *args, **kwargs) -> tuple:
        """Call a node (V1 or V3) directly, as the executor would, returning its output tuple."""
        cls = self.node_class(class_type)
        if hasattr(cls, "define_schema"):
            out = cls.execute(*args, **kwargs)
            return tuple(out.result) if hasattr(out, "result") else tuple(out)
        return tuple(getattr(cls(), cls.FUNCTION)(*args, **kwargs))

    def validate(self, prompt: dict):
        return asyncio.run(self.execution.validate_prompt(str(uuid.uuid4()), prompt, None))

    def run(self, prompt: dict, outputs: list[str], interrupt_after: int | None = None):
        """Execute ``prompt`` up to the nodes ``outputs``; returns {node_id: output tuple}.

        Raises RuntimeError with ComfyUI's error message when a node fails, and
        InterruptedError when the run was interrupted."""
        self.progress = []
        self.interrupt_after = interrupt_after
        self.server.messages = []
        self.executor.reset()
        try:
            self.executor.execute(prompt, str(uuid.uuid4()), {}, outputs)
        finally:
            self.interrupt_after = None
            self.nodes.interrupt_processing(False)
        for event, data in self.server.messages:
            if event == "execution_interrupted":
                raise InterruptedError(f"interrupted at node {data.get('node_id')}")
            if event == "execution_error":
                raise RuntimeError(f"{data['node_type']} ({data['node_id']}): {data['exception_type']}: "
                                   f"{data['exception_message']}")
        result = {}
        for nid in outputs:
            entry = self.executor.caches.outputs.get(nid)
            entry = getattr(entry, "outputs", entry)
            result[nid] = tuple(v[0] if isinstance(v, list) and len(v) == 1 else v for v in entry)
        return result


_HOST: Host | None = None


def get_host() -> Host:
    global _HOST
    if _HOST is None:
        root = find_comfyui()
        if root is None:
            raise RuntimeError("no ComfyUI found")
        _HOST = Host(root)
    return _HOST
