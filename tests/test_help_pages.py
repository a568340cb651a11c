"""Help pages (web/docs/<node id>.md) document every node's inputs; host-free (no ComfyUI needed).

The node schemas are read from the source with ``ast``, not imported: every class under ``nodes/`` (any depth) whose
``define_schema`` builds an ``io.Schema(node_id="VA_...", inputs=[...])`` is a node, and its inputs are the first
(string) arguments of the ``<type>.Input("name", ...)`` calls that make up ``inputs``. A list given by name (a local
variable, a class attribute or a module constant), by a helper function or method of the same module (or a function
imported from a sibling module, ``from .common import helper``), or joined with ``+`` / ``*`` is followed to its
``Input`` calls. Anything else in ``inputs`` (or a name or node id that is not a string literal) fails the test, so
a schema written in a new way is never silently treated as having no inputs.

The rule for "documented": the page has a list item (a line ``- ...`` or ``* ...``, at any indent) whose
lead-in, the text before the first colon that is followed by a space or the end of the line, contains the
input's name in backticks. So ``- `steps`: total optimisation steps ...`` documents ``steps``, and
``- `start_percent`, `end_percent`: ...`` documents both; a mention in running text (``connect it to
`extra_priors```) does not count.

Outputs are looser: every output that has a ``display_name`` must appear in backticks somewhere on its page.

Further: every page belongs to a node (no orphan pages), and the trainer's and the loader's pages
(VA_TrainAdapter.md, VA_LoadAdapter.md) name every registered adapter kind (``adapters.registry.kinds()``) in
backticks.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field

import pytest

from adapters import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODES_DIR = os.path.join(ROOT, "nodes")
DOCS_DIR = os.path.join(ROOT, "web", "docs")
KIND_PAGES = ("VA_TrainAdapter", "VA_LoadAdapter")


class SchemaParseError(AssertionError):
    """A schema this test cannot read: it fails the test run instead of being skipped."""


@dataclass
class NodeSchema:
    node_id: str
    where: str  # file:line of the io.Schema call
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # display names, where given


def _is_schema_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == "Schema") or (isinstance(f, ast.Name) and f.id == "Schema")


def _is_io_call(node: ast.AST, attr: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attr


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


class _Module:
    """One source file: its top-level functions, classes and assignments, for following names."""

    def __init__(self, path: str):
        self.path = path
        self.rel = os.path.relpath(path, ROOT)
        with open(path, encoding="utf-8") as f:
            self.tree = ast.parse(f.read(), filename=path)
        self.functions = {n.name: n for n in self.tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        self.classes = {n.name: n for n in self.tree.body if isinstance(n, ast.ClassDef)}
        # names imported from a sibling module of the package (``from .common import helper``) -> that file
        # names imported from a sibling module of the package (``from .common import helper [as h]``): that
        # file and the name there
        self.imported = {a.asname or a.name: (os.path.join(os.path.dirname(path), *node.module.split(".")) + ".py",
                                              a.name)
                         for node in self.tree.body if isinstance(node, ast.ImportFrom) and node.level == 1
                         and node.module for a in node.names}

    def function(self, name: str) -> ast.FunctionDef | None:
        """A top-level function of this module, or one imported from a sibling module (its Input calls are read
        as they are written there: literal names)."""
        if name in self.functions:
            return self.functions[name]
        path, original = self.imported.get(name, (None, None))
        if path and os.path.isfile(path):
            return _Module(path).functions.get(original)
        return None

    def at(self, node: ast.AST) -> str:
        return f"{self.rel}:{getattr(node, 'lineno', '?')}"


def _walk_block(stmts: list[ast.stmt]):
    """Every node of a block of statements, not descending into nested functions, classes or lambdas."""
    todo = list(stmts)
    while todo:
        node = todo.pop()
        yield node
        todo.extend(c for c in ast.iter_child_nodes(node)
                    if not isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)))


def _scope_values(scope: list[ast.stmt], name: str) -> list[ast.AST]:
    """Expressions that make up the list ``name`` in a block of statements: ``name = ...``, ``name += ...``
    and ``name.append/extend/insert(...)``."""
    found: list[tuple[int, int, ast.AST]] = []
    for node in _walk_block(scope):
        pos = (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found.append((*pos, node.value))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name) \
                and node.target.id == name and node.value is not None:
            found.append((*pos, node.value))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == name \
                and node.func.attr in ("append", "extend", "insert"):
            args = node.args[1:] if node.func.attr == "insert" else node.args
            for a in args:
                found.append((*pos, a if node.func.attr == "extend" else ast.List(elts=[a], ctx=ast.Load())))
    return [v for *_, v in sorted(found, key=lambda t: (t[0], t[1]))]


class _InputReader:
    """Follows the ``inputs=`` expression of one schema to its ``Input`` calls."""

    def __init__(self, module: _Module, cls: ast.ClassDef, method: ast.FunctionDef):
        self.module, self.cls, self.method = module, cls, method
        self.seen: set[tuple[str, str]] = set()

    def fail(self, node: ast.AST, why: str):
        raise SchemaParseError(f"{self.module.at(node)} ({self.cls.name}.define_schema): {why}; "
                               f"tests/test_help_pages.py cannot read this schema's inputs: teach it this form")

    def names(self, expr: ast.AST, scope: ast.AST | None = None) -> list[str]:
        scope = scope or self.method
        if _is_io_call(expr, "Input"):
            name = _string(expr.args[0]) if expr.args else _string(_keyword(expr, "id"))
            if name is None:
                self.fail(expr, "an Input whose name is not a string literal")
            return [name]
        if isinstance(expr, (ast.List, ast.Tuple)):
            return [n for e in expr.elts for n in self.names(e, scope)]
        if isinstance(expr, ast.Starred):
            return self.names(expr.value, scope)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return self.names(expr.left, scope) + self.names(expr.right, scope)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Mult):
            side = expr.left if isinstance(expr.left, (ast.List, ast.Tuple, ast.Name, ast.Attribute)) else expr.right
            return self.names(side, scope)
        if isinstance(expr, ast.IfExp):  # either branch may be shown: both must be documented
            return self.names(expr.body, scope) + self.names(expr.orelse, scope)
        if isinstance(expr, ast.Name):
            return self.follow_name(expr, scope)
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) \
                and expr.value.id in ("cls", "self", self.cls.name):
            values = _scope_values(self.cls.body, expr.attr)
            if not values:
                self.fail(expr, f"class attribute {expr.attr} not found in {self.cls.name}")
            return self.guard(("cls", expr.attr), expr, lambda: [n for v in values for n in self.names(v, self.cls)])
        if isinstance(expr, ast.Call):
            fn = self.helper(expr)
            if fn is not None:
                return self.guard(("fn", fn.name), expr, lambda: self.from_helper(fn))
            self.fail(expr, f"a call ({ast.unparse(expr.func)}) that is neither an Input nor a helper of this module or its siblings")
        self.fail(expr, f"an inputs expression of an unknown form: {ast.unparse(expr)[:80]}")

    def guard(self, key, node, fn):
        if key in self.seen:
            self.fail(node, f"{key[1]} refers to itself")
        self.seen.add(key)
        try:
            return fn()
        finally:
            self.seen.discard(key)

    def follow_name(self, expr: ast.Name, scope: ast.AST) -> list[str]:
        for block in (getattr(scope, "body", []), self.cls.body, self.module.tree.body):
            values = _scope_values(block, expr.id)
            if values:
                return self.guard(("name", expr.id), expr, lambda: [n for v in values for n in self.names(v, scope)])
        self.fail(expr, f"the name {expr.id} is not assigned in define_schema, the class or the module")

    def helper(self, call: ast.Call) -> ast.FunctionDef | None:
        f = call.func
        if isinstance(f, ast.Name):
            return self.module.function(f.id)
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in ("cls", "self", self.cls.name):
            for st in self.cls.body:
                if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)) and st.name == f.attr:
                    return st
        return None

    def from_helper(self, fn: ast.FunctionDef) -> list[str]:
        """A helper's inputs: every Input call in its body (lists it builds, appends, returns)."""
        calls = [n for n in ast.walk(fn) if _is_io_call(n, "Input")]
        if not calls:
            self.fail(fn, f"helper {fn.name} builds no Input calls")
        return [n for c in sorted(calls, key=lambda c: (c.lineno, c.col_offset)) for n in self.names(c, fn)]


def collect_schemas() -> list[NodeSchema]:
    schemas: list[NodeSchema] = []
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(NODES_DIR) for f in files if f.endswith(".py"))
    for path in paths:
        module = _Module(path)
        for cls in (n for n in ast.walk(module.tree) if isinstance(n, ast.ClassDef)):
            method = next((st for st in cls.body if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef))
                           and st.name == "define_schema"), None)
            if method is None:
                continue
            calls = [n for n in ast.walk(method) if _is_schema_call(n)]
            if not calls:
                raise SchemaParseError(f"{module.at(method)}: {cls.name}.define_schema builds no io.Schema(...) call")
            for call in calls:
                node_id = _string(_keyword(call, "node_id"))
                if node_id is None:
                    raise SchemaParseError(f"{module.at(call)}: {cls.name}'s io.Schema has no string literal node_id")
                if not node_id.startswith("VA_"):
                    continue
                if any(kw.arg is None for kw in call.keywords):
                    raise SchemaParseError(f"{module.at(call)}: {node_id}'s io.Schema takes **kwargs")
                schema = NodeSchema(node_id, module.at(call))
                inputs = _keyword(call, "inputs")
                if inputs is not None:
                    schema.inputs = _InputReader(module, cls, method).names(inputs)
                outputs = _keyword(call, "outputs")
                if outputs is not None:
                    schema.outputs = [name for n in ast.walk(outputs) if _is_io_call(n, "Output")
                                      for name in [_string(_keyword(n, "display_name"))] if name]
                schemas.append(schema)
    return schemas


SCHEMAS = collect_schemas()
BY_ID = {s.node_id: s for s in SCHEMAS}
NODE_IDS = sorted(BY_ID)


def page_path(node_id: str) -> str:
    return os.path.join(DOCS_DIR, f"{node_id}.md")


def read_page(node_id: str) -> str:
    path = page_path(node_id)
    assert os.path.isfile(path), f"{node_id} ({BY_ID[node_id].where}) has no help page {os.path.relpath(path, ROOT)}"
    with open(path, encoding="utf-8") as f:
        return f.read()


_ITEM = re.compile(r"^\s*[-*]\s+(?P<item>.*)$")
_LEAD_END = re.compile(r":(\s|$)")


def documented_names(page: str) -> set[str]:
    """Names in backticks in the lead-in (before the first ``: ``) of the page's list items."""
    names = set()
    for line in page.splitlines():
        m = _ITEM.match(line)
        if not m:
            continue
        item = m.group("item")
        end = _LEAD_END.search(item)
        lead = item[:end.start()] if end else item
        names.update(re.findall(r"`([^`]+)`", lead))
    return names


def test_schemas_found():
    """The parser sees the pack's nodes (a guard against a parser that silently finds nothing)."""
    assert len(SCHEMAS) >= 20, [s.node_id for s in SCHEMAS]
    ids = [s.node_id for s in SCHEMAS]
    assert len(ids) == len(set(ids)), f"duplicate node ids: {sorted({i for i in ids if ids.count(i) > 1})}"
    for expected in ("VA_TrainAdapter", "VA_LoadAdapter", "VA_ScoreComposer"):
        assert expected in BY_ID
    assert {"model", "clips", "positive", "kind", "settings", "negative"} <= set(BY_ID["VA_TrainAdapter"].inputs)
    for s in SCHEMAS:
        assert len(s.inputs) == len(set(s.inputs)), f"{s.node_id}: an input name given twice: {s.inputs}"


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_page_exists(node_id):
    assert read_page(node_id).strip(), f"{node_id}: help page is empty"


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_page_documents_every_input(node_id):
    documented = documented_names(read_page(node_id))
    missing = [name for name in BY_ID[node_id].inputs if name not in documented]
    assert not missing, (f"web/docs/{node_id}.md does not document the inputs {missing} (a list item "
                         f"'- `name`: what it does' is needed; schema at {BY_ID[node_id].where})")


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_page_names_every_output(node_id):
    """Outputs that have a display name are named on the page in backticks (anywhere: in a list or in prose)."""
    page = read_page(node_id)
    missing = [name for name in BY_ID[node_id].outputs if f"`{name}`" not in page]
    assert not missing, f"web/docs/{node_id}.md does not name the outputs {missing} (in backticks)"


def test_no_orphan_pages():
    pages = sorted(f[:-3] for f in os.listdir(DOCS_DIR) if f.endswith(".md"))
    orphans = [p for p in pages if p not in BY_ID]
    assert not orphans, f"help pages without a node: {orphans}"


@pytest.mark.parametrize("node_id", KIND_PAGES)
@pytest.mark.parametrize("kind", registry.kinds())
def test_adapter_pages_name_every_kind(node_id, kind):
    assert f"`{kind}`" in read_page(node_id), f"web/docs/{node_id}.md does not mention adapter kind `{kind}`"
