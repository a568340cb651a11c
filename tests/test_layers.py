"""The layer rules of the pack, read from every module's imports (``ast``, nothing is imported):

* the host-free core (``adapters/`` and the math of ``samplers/``) imports no ComfyUI module and nothing of the
  node layer (``nodes``);
* the binding (``nodes/binding/``) imports no node module (a module that defines node classes);
* node modules do not import each other (shared node-layer pieces are ``nodes/common.py`` and
  ``nodes/validation.py``);
* no import cycle among the pack's modules, counting imports inside functions too.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("adapters", "samplers", "nodes")
# ComfyUI's top-level modules and packages (what its root and comfy/ put on sys.path)
COMFY = ("comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "node_helpers", "nodes", "server",
         "execution", "latent_preview", "comfyui_version", "app", "utils")
# the ComfyUI-facing module of samplers/ (the guiders' ComfyUI classes); the rest of samplers/ is math
SAMPLERS_BINDING = {"samplers.guiders"}
NODE_SHARED = {"nodes", "nodes.common", "nodes.validation"}


def _modules() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].replace(os.sep, ".")
                    out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(folder, f)
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[tuple[str, bool]]:
    """``(imported name, is it a pack module)`` for one import statement of ``module``."""
    if isinstance(node, ast.Import):
        return [(a.name, False) for a in node.names]
    if node.level == 0:
        return [(node.module or "", False)]
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    target = ".".join(base + ([node.module] if node.module else []))
    found = []
    for alias in node.names:  # "from . import x" may name a submodule
        sub = f"{target}.{alias.name}"
        found.append((sub if sub in MODULES else target, True))
    return found


def _imports() -> dict[str, list[tuple[str, bool, int]]]:
    out = {}
    for name, path in MODULES.items():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        is_package = path.endswith("__init__.py")
        found = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, internal in _resolve(name, node, is_package):
                    found.append((target, internal, node.lineno))
        out[name] = found
    return out


IMPORTS = _imports()


def _is_node_module(name: str) -> bool:
    if not name.startswith("nodes.") or name.startswith("nodes.binding") or name in NODE_SHARED:
        return False
    return "NODES = " in open(MODULES[name], encoding="utf-8").read()


def _core(name: str) -> bool:
    return name.startswith("adapters") or (name.startswith("samplers") and name not in SAMPLERS_BINDING)


def test_the_walk_finds_the_layers():
    assert {"adapters.protocol", "adapters.kind", "adapters.registry", "nodes.binding.attach",
            "nodes.binding.host", "nodes.binding.training", "samplers.composition"} <= set(MODULES)
    assert _is_node_module("nodes.adapters") and not _is_node_module("nodes.binding.training")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _core(m)))
def test_core_imports_no_comfyui_and_no_node_layer(module):
    bad = []
    for target, internal, line in IMPORTS[module]:
        top = target.split(".")[0]
        if internal and (target == "nodes" or target.startswith("nodes.")):
            bad.append(f"line {line}: {target}")
        elif not internal and (top in COMFY or top == "nodes"):
            bad.append(f"line {line}: {target}")
    assert not bad, f"{module} is host-free core but imports " + ", ".join(bad)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("nodes.binding")
                                          or m in SAMPLERS_BINDING))
def test_binding_imports_no_node_module(module):
    bad = [f"line {line}: {t}" for t, internal, line in IMPORTS[module] if internal and _is_node_module(t)]
    assert not bad, f"{module} is binding but imports node modules: " + ", ".join(bad)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _is_node_module(m)))
def test_node_modules_do_not_import_each_other(module):
    bad = [f"line {line}: {t}" for t, internal, line in IMPORTS[module]
           if internal and t != module and _is_node_module(t)]
    assert not bad, (f"{module} imports other node modules ({', '.join(bad)}); shared pieces belong in "
                     "nodes/binding or nodes/common.py")


def test_no_import_cycles():
    graph = {m: sorted({t for t, internal, _ in IMPORTS[m] if internal and t in MODULES and t != m}) for m in MODULES}
    # a submodule's import runs its packages' __init__ first: that edge is not a cycle of the code's own making
    cycles, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in graph[m]:
            if m.startswith(t + "."):  # importing an enclosing package from inside it
                continue
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


# ----------------------------------------------------------------------------------------------------
# tests, benchmarks and their shared support (devtools)

SYS_PATH_ENTRY_POINTS = {"tests/conftest.py", "benchmarks/_root.py", "workflows/run_demo.py",
                         "devtools/headless.py"}  # headless puts the ComfyUI host's own root first


def _scripts(folder: str) -> dict[str, str]:
    out = {}
    for where, _, files in os.walk(os.path.join(ROOT, folder)):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(where, f)
                out[os.path.relpath(path, ROOT).replace(os.sep, "/")] = path
    return out


def _top_imports(path: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_tests_and_benchmarks_share_devtools_and_import_neither_each_other():
    tests, benches, tools = _scripts("tests"), _scripts("benchmarks"), _scripts("devtools")
    bench_names = {os.path.basename(p)[:-3] for p in benches} - {"_root"}
    test_names = {os.path.basename(p)[:-3] for p in tests}
    bad = [f"{rel} imports benchmark {sorted(_top_imports(p) & bench_names)}" for rel, p in tests.items()
           if _top_imports(p) & bench_names]
    bad += [f"{rel} imports test module {sorted(_top_imports(p) & test_names)}"
            for rel, p in {**benches, **tools}.items() if _top_imports(p) & test_names]
    bad += [f"{rel} imports a benchmark" for rel, p in tools.items() if _top_imports(p) & bench_names]
    bad += [f"{rel} loads a file of benchmarks/ or tests/" for rel, p in {**tests, **tools}.items()
            if rel != "tests/test_layers.py" and "spec_from_file" + "_location" in open(p, encoding="utf-8").read()]
    assert not bad, "; ".join(bad)


def test_sys_path_is_set_in_one_entry_point_each():
    bad = []
    for folder in ("tests", "benchmarks", "devtools", "workflows", *PACKAGES):
        for rel, path in _scripts(folder).items():
            tree = ast.parse(open(path, encoding="utf-8").read(), path)
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and node.attr in ("insert", "append")
                        and isinstance(node.value, ast.Attribute) and node.value.attr == "path"
                        and isinstance(node.value.value, ast.Name) and node.value.value.id == "sys"
                        and rel not in SYS_PATH_ENTRY_POINTS):
                    bad.append(f"{rel}:{node.lineno}")
    assert not bad, "sys.path changed outside the entry points: " + ", ".join(bad)


def test_workflows_folder_holds_templates_and_the_demo_runner_only():
    extra = [f for f in os.listdir(os.path.join(ROOT, "workflows"))
             if not f.endswith((".json", ".jpg")) and f not in ("run_demo.py", "__pycache__")]
    assert not extra, f"workflows/ is served as the templates folder; move {extra} to devtools/"
