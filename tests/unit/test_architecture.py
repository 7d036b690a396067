"""The shape of the code base, checked: layers point inward, no import cycles, small parts.

Run by `make test` (and `make unit`). The import graph is read from the source with :mod:`ast`
(every ``import`` statement, including those inside functions and under ``TYPE_CHECKING``), so
it needs no import of the code and catches an arrow however it is written.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "events",
    "contracts",
    "sagas",
    "services",
    "saga_coordinator",
    "projections",
    "choreo",
    "bench",
)

ALLOWED: dict[str, set[str]] = {
    "events": set(),
    "contracts": {"events"},
    "sagas": {"events", "contracts"},
    "services": {"events", "contracts"},
    "saga_coordinator": {"events", "contracts", "sagas"},
    "projections": {"events", "contracts", "sagas"},
    "choreo": {"events", "contracts", "sagas", "services", "saga_coordinator", "projections"},
    "bench": {
        "events",
        "contracts",
        "sagas",
        "services",
        "saga_coordinator",
        "projections",
        "choreo",
    },
}
"""Package → the packages it may import. Dependencies point inward, towards ``events``."""

OPTIONAL_MOUNTS = {("choreo.cli", "bench.cli")}
"""(module, module it may import although its layer may not): the CLI mounts the bench
commands only when the optional ``choreo[bench]`` extra is installed."""

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
LONG_MARK = "# Long:"
"""A function may be longer than :data:`MAX_FUNCTION_LINES` when a comment starting with this,
in the comment lines right above its ``def`` (or its decorators), says why."""


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(module: str) -> set[str]:
    """The project modules ``module`` imports (the nearest known module of each name)."""
    targets: set[str] = set()
    for node in ast.walk(_tree(MODULES[module])):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                candidate = ".".join(parts[:end])
                if candidate in MODULES:
                    if candidate != module:
                        targets.add(candidate)
                    break
    return targets


GRAPH = {module: _imports(module) for module in MODULES}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_sees_the_code():
    assert len(MODULES) > 50
    assert "events.model" in GRAPH["events.codec"]


def test_layers_point_inward():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _top(target) != _top(module)
        and _top(target) not in ALLOWED[_top(module)]
        and not any(module.startswith(m) and target == t for m, t in OPTIONAL_MOUNTS)
    )
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_service_imports_another():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module.startswith("services.")
        for target in targets
        if target.startswith("services.") and target.split(".")[1] != module.split(".")[1]
    )
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_packages():
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        packages[_top(module)] |= {
            _top(t)
            for t in targets
            if _top(t) != _top(module)
            and not any(module.startswith(m) and t == mount for m, mount in OPTIONAL_MOUNTS)
        }
    assert _cycles(packages) == []


def test_no_import_cycle_between_modules():
    # A package's __init__ importing its own submodules is how packages export; the cycles
    # that matter are between sibling modules (handlers.py <-> service.py).
    graph = {
        module: {t for t in targets if not module.startswith(f"{t}.")}
        for module, targets in GRAPH.items()
    }
    assert _cycles(graph) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines; split it by job"


def _long_functions(path: Path) -> list[str]:
    source = path.read_text().splitlines()
    found = []
    for node in ast.walk(_tree(path)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        line = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        comments = []
        while line > 0 and source[line - 1].lstrip().startswith("#"):
            comments.append(source[line - 1].strip())
            line -= 1
        if length > MAX_FUNCTION_LINES and not any(c.startswith(LONG_MARK) for c in comments):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_long_functions_say_why():
    found = [f for path in MODULES.values() for f in _long_functions(path)]
    assert not found, (
        f"functions over {MAX_FUNCTION_LINES} lines without a '{LONG_MARK} ...' comment above:\n"
        + "\n".join(found)
    )
