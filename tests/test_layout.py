"""The architecture's rules, checked on the source: one-way layering, no import cycles, no
hidden function-local imports of our own modules, thin adapters, tests that mirror the core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "es_plugins"
ADAPTERS = ROOT / "integrations"
ADAPTER_MAX_LINES = 120


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "integrations":
        parts = ["es_plugins", "integrations", *parts[1:]]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    files = [*CORE.rglob("*.py"), *ADAPTERS.rglob("*.py")]
    return {_module_name(p): p for p in files}


SOURCES = _sources()


def _resolve(module: str, path: Path, node: ast.ImportFrom | ast.Import) -> list[str]:
    """Project modules an import statement names (``from x import y`` counts ``x.y`` when it
    is a module, else ``x``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("es_plugins")]
    if node.level:
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    if not target.startswith("es_plugins"):
        return []
    found = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in SOURCES]
    return found or [target]


def _imports(module: str, path: Path) -> tuple[list[str], list[tuple[int, str]]]:
    """(module-level project imports outside TYPE_CHECKING, function-local project imports)."""
    tree = ast.parse(path.read_text())
    top: list[str] = []
    local: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = _resolve(module, path, child)
                if in_function:
                    local.extend((child.lineno, n) for n in names)
                else:
                    top.extend(names)
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner)

    visit(tree, False)
    return top, local


GRAPH = {m: _imports(m, p) for m, p in SOURCES.items()}


def test_the_core_never_imports_an_adapter():
    offenders = {
        m: [i for i in top + [n for _, n in local] if i.startswith("es_plugins.integrations")]
        for m, (top, local) in GRAPH.items()
        if not m.startswith("es_plugins.integrations")
    }
    assert {m: v for m, v in offenders.items() if v} == {}


def test_no_function_local_imports_of_project_modules():
    offenders = {m: local for m, (_, local) in GRAPH.items() if local}
    assert offenders == {}


def test_no_import_cycles():
    edges = {m: {t for t in top if t in GRAPH and t != m} for m, (top, _) in GRAPH.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                walk(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            walk(start, [start])
    # A package's __init__ importing its own submodules is how a package exposes them, not a cycle.
    real = [c for c in cycles if not all(a.startswith(c[0] + ".") or c[0].startswith(a) for a in c)]
    assert real == []


@pytest.mark.parametrize("path", sorted(ADAPTERS.glob("*.py")), ids=lambda p: p.name)
def test_adapters_are_thin(path):
    assert len(path.read_text().splitlines()) <= ADAPTER_MAX_LINES


# Packages by layer: a package may import its own layer and those below, never above.
LAYERS = {
    "io": 0,
    "masks": 0,
    "methods": 0,
    "export": 1,
    "engines": 1,
    "analysis": 2,
    "jobs": 3,
    "cli": 4,
    "integrations": 5,
}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else None


def test_packages_import_only_their_layer_and_below():
    """io, masks, methods (files, masks, methods) < export, engines < analysis < jobs < cli <
    integrations: the folders are the architecture, and the CLI is a shell over the jobs."""
    upward = {}
    for module, (top, _) in GRAPH.items():
        own = _package(module)
        if own is None:
            continue
        bad = sorted({t for t in top if _package(t) and LAYERS[_package(t)] > LAYERS[own]})
        if bad:
            upward[module] = bad
    assert upward == {}


def _tested_modules() -> set[str]:
    """Project modules a test imports, directly or through a name they define (a class or
    function re-exported by a package counts for the module that defines it)."""
    import importlib
    import inspect

    found: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("es_plugins"))
            if not (
                isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("es_plugins")
            ):
                continue
            found.add(node.module)
            module = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(module, alias.name, None)
                found.add(value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", node.module))
    return found


def test_every_core_module_is_imported_by_a_test():
    """Each module (not each file stem: ``cli/prune.py`` and ``jobs/prune.py`` are two) is
    imported by some test, directly or through a name it defines. Private helpers (``_x.py``)
    and package ``__init__`` files are covered through their callers."""
    tested = _tested_modules()
    untested = [
        module
        for module, path in sorted(SOURCES.items())
        if module.startswith("es_plugins.")
        and not module.startswith("es_plugins.integrations")
        and not path.name.startswith("_")
        and module not in tested
    ]
    assert untested == []
