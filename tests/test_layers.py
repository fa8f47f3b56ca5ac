"""The import structure: one-way layers (cli -> rounds -> domain -> base, as declared for import-linter in
pyproject.toml) and no import circle anywhere, lazy imports included (grimp sees imports inside functions too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
from conftest import ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PACKAGES = ("alignment", "rounds", "reward", "synth_data")


def declared_layers() -> list[list[str]]:
    """The layers of the import-linter contract, top first, each a list of module names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [[m.strip() for m in layer.replace("|", ":").split(":")] for layer in contract["layers"]]


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """Index of the layer holding ``module`` (or a package above it), 0 = top; None when no layer names it."""
    for i, layer in enumerate(layers):
        if any(module == m or module.startswith(m + ".") for m in layer):
            return i
    return None


def upward_imports(graph: grimp.ImportGraph, layers: list[list[str]]) -> list[tuple[str, str]]:
    """Imports from a lower layer into a higher one."""
    bad = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            a, b = layer_of(importer, layers), layer_of(imported, layers)
            if a is not None and b is not None and b < a:
                bad.append((importer, imported))
    return bad


def import_circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return circles


def test_the_project_imports_one_way_without_circles():
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    layers = declared_layers()
    unplaced = sorted(m for m in graph.modules if m not in PACKAGES and layer_of(m, layers) is None)
    assert unplaced == [], f"modules in no layer of pyproject.toml's import-linter contract: {unplaced}"
    assert upward_imports(graph, layers) == []
    assert import_circles(graph) == []


def test_the_checks_catch_an_upward_import_and_a_circle():
    graph = grimp.ImportGraph()
    for m in ("alignment.config", "rounds.runner", "reward.select", "reward.verifiers", "synth_data.filters"):
        graph.add_module(m)
    graph.add_import(importer="alignment.config", imported="rounds.runner")  # base -> rounds: upward
    graph.add_import(importer="reward.verifiers", imported="synth_data.filters")
    graph.add_import(importer="synth_data.filters", imported="reward.verifiers")  # a circle inside the domain layer
    assert upward_imports(graph, declared_layers()) == [("alignment.config", "rounds.runner")]
    assert import_circles(graph) == [["reward.verifiers", "synth_data.filters"]]


def test_import_linter_keeps_the_contract():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout
