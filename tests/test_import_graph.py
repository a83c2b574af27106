"""The package's import graph has no cycle: every ``import`` and ``from ... import`` anywhere in
a module (inside functions and ``TYPE_CHECKING`` blocks too) is an edge to the package module
it names, read with ``ast`` from the source, not by importing anything."""

from __future__ import annotations

import ast
from pathlib import Path

import resnet_ensemble

PACKAGE = Path(resnet_ensemble.__file__).resolve().parent
NAME = PACKAGE.name


def _modules() -> dict[str, tuple[Path, list[str]]]:
    """Each module's dotted name -> (its file, the package its relative imports start from)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = [NAME, *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
            package = parts
        else:
            package = parts[:-1]
        found[".".join(parts)] = (path, package)
    return found


def _resolve(name: str, modules: dict) -> str | None:
    """The package module that importing ``name`` runs last (``a.b.c`` -> ``a.b`` when ``c`` is
    a name inside module ``a.b``); None outside the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # `from pkg import sub` imports the submodule; `from mod import name`, the module.
                targets = [f"{source}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                found = _resolve(target, modules)
                if found is not None and found != name:
                    edges.add(found)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_inside_a_function_import() -> None:
    """The finder itself: a hand-made graph with a cycle, and the same graph without it."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    graph["c"] = {"d"}
    assert find_cycle(graph) is None


def test_the_graph_sees_imports_inside_functions() -> None:
    """viz.plots imports viz.depth only inside a function; the edge must still be there."""
    graph = import_graph()
    assert f"{NAME}.viz.depth" in graph[f"{NAME}.viz.plots"]
    assert f"{NAME}.blocks.adapters" in graph[f"{NAME}.blocks.registry"]  # lazy zoo registration


#: The layers, bottom up (docs/architecture.md). The torch-free top-level modules are layer 0;
#: a module may import its own subpackage and any lower layer, never a higher one nor a peer.
LAYERS = {
    "": 0,  # names, errors, results, atomic, paths, paper, archs, bounds, outputs, ...
    "blocks": 1,
    "data": 1,
    "viz": 1,
    "core": 2,
    "models": 3,
    "studies": 4,
    "cli": 5,
}


def _layer_of(module: str) -> tuple[str, int]:
    """(subpackage, layer) of a module: ``resnet_ensemble.core.engine`` -> ("core", 2)."""
    parts = module.split(".")[1:]
    if not parts:  # the package facade re-exports from every layer
        return "<facade>", 99
    sub = parts[0] if len(parts) > 1 or parts[0] in LAYERS else ""
    if parts == ["__main__"]:
        return "<facade>", 99
    return sub, LAYERS[sub]


def test_every_module_belongs_to_a_layer_and_none_reaches_up_or_sideways() -> None:
    graph = import_graph()
    wrong = []
    for module, edges in sorted(graph.items()):
        sub, layer = _layer_of(module)
        for target in sorted(edges):
            target_sub, target_layer = _layer_of(target)
            if target_sub == sub:
                continue
            if target_layer >= layer:
                wrong.append(f"{module} (layer {layer}) imports {target} (layer {target_layer})")
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_catches_an_upward_import() -> None:
    """The rule itself, on names: core may import blocks; blocks may not import core or data."""
    assert _layer_of(f"{NAME}.core.engine") == ("core", 2)
    assert _layer_of(f"{NAME}.results") == ("", 0)
    assert _layer_of(f"{NAME}.models") == ("models", 3)
    assert _layer_of(f"{NAME}.blocks.registry")[1] < _layer_of(f"{NAME}.core.engine")[1]
    assert _layer_of(f"{NAME}.blocks.registry")[1] == _layer_of(f"{NAME}.data.text")[1]


def test_no_module_is_longer_than_900_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 900
    }
    assert not long, f"modules over 900 lines: {long}"


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_vocabularies_and_the_plot_style_import_nothing_of_the_package() -> None:
    """``names`` (read by --help and the table readers) and ``viz.style`` (under every figure
    module) sit at the bottom of the graph."""
    graph = import_graph()
    assert graph[f"{NAME}.names"] == set()
    assert graph[f"{NAME}.viz.style"] == set()
    assert graph[f"{NAME}.call_args"] == set()
    tree = ast.parse((PACKAGE / "names.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "typing"}


def test_the_figures_and_the_table_contract_load_without_torch() -> None:
    """Plotting reads tables only: importing it (and the table contract, the vocabularies, the
    error formatter) must not import torch, in a fresh process."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import resnet_ensemble.viz.plots, resnet_ensemble.viz.depth, resnet_ensemble.results\n"
        "import resnet_ensemble.names, resnet_ensemble.errors, resnet_ensemble.viz.dynamics\n"
        "print('torch' in sys.modules)\n"
    )
    root = str(PACKAGE.parent)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
