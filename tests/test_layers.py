"""One direction of imports: core <- models, training <- launcher <- experiments.

Models and the trainer both build on the core and do not know each other (the launcher's
registry hands the trainer a model builder).  Every ``import`` of a flowzoo module in the
package and in experiments/ is read with ``ast`` (module level and inside functions alike)
and checked: a module imports only its own layer or lower ones, and the import graph has no
cycle (an import moved into a function to dodge a cycle still counts).  ``__import__`` and
``importlib.import_module`` of flowzoo modules are refused.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Module prefix -> layer (the longest matching prefix wins).
LAYERS = {
    "flowzoo": "core",  # the package __init__, errors, model (the Model contract), _helpers
    "flowzoo.bijectors": "core",
    "flowzoo.distributions": "core",
    "flowzoo.data": "core",
    "flowzoo.models": "models",
    "flowzoo.training": "training",
    "flowzoo.configs": "launcher",
    "flowzoo.experiment": "launcher",
    "flowzoo.config_catalog": "launcher",
    "flowzoo.cli": "launcher",
    "experiments": "experiments",
}
# A layer may import the layers listed here, and itself.
MAY_IMPORT = {"core": (), "models": ("core",), "training": ("core",),
              "launcher": ("core", "models", "training"),
              "experiments": ("core", "models", "training", "launcher")}


def layer(module: str) -> str:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(module)


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    files = list((ROOT / "flowzoo").rglob("*.py")) + list((ROOT / "experiments").rglob("*.py"))
    return {_module_name(p): p for p in files}


def _resolve(name: str, modules) -> str | None:
    """The module an import refers to (``a.b`` may name a function in module ``a``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: pathlib.Path, modules) -> list[tuple[str, int]]:
    """(imported flowzoo/experiments module, line) for every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            names = ["__import__"]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and str(node.args[0].value).startswith("flowzoo")):
            names = ["importlib.import_module"]
        for name in names:
            if name in ("__import__", "importlib.import_module"):
                found.append((name, node.lineno))
            elif name.split(".")[0] in ("flowzoo", "experiments"):
                target = _resolve(name, modules)
                if target is not None:
                    found.append((target, node.lineno))
    return found


def _graph():
    modules = _modules()
    return modules, {name: imports(path, modules) for name, path in modules.items()}


def upward_edges(graph) -> list[str]:
    bad = []
    for source, targets in graph.items():
        for target, line in targets:
            if target in ("__import__", "importlib.import_module"):
                bad.append(f"{source}:{line} uses {target}")
            elif layer(target) != layer(source) and layer(target) not in MAY_IMPORT[layer(source)]:
                bad.append(f"{source}:{line} ({layer(source)}) imports {target} ({layer(target)})")
    return bad


def cycles(graph) -> list[list[str]]:
    """Every cycle found by a depth-first search (each reported once, from its first node)."""
    edges = {s: sorted({t for t, _ in ts if t in graph and t != s}) for s, ts in graph.items()}
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_no_import_crosses_the_layers():
    _, graph = _graph()
    assert len(graph) > 100  # the walk found the package
    assert upward_edges(graph) == []


def test_the_import_graph_has_no_cycle():
    _, graph = _graph()
    assert cycles(graph) == []


@pytest.mark.parametrize("source, target, expected", [
    ("flowzoo.training.trainer", "flowzoo.models.flowpp", "upward"),
    ("flowzoo.models.vlae.core", "flowzoo.training.config", "upward"),
    ("flowzoo.bijectors.chain", "flowzoo.experiment", "upward"),
    ("flowzoo.models.flowpp.official", "flowzoo.models.flowpp.model", "cycle"),
])
def test_the_checks_catch_what_they_are_for(source, target, expected):
    """The same checks on the real graph plus one edge of the kind issue 20 removed."""
    _, graph = _graph()
    graph[source] = graph[source] + [(target, 1)]
    if expected == "upward":
        assert any(f"{source}:1" in edge for edge in upward_edges(graph))
    else:
        assert any(source in cycle and target in cycle for cycle in cycles(graph))
