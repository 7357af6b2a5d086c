"""issue 23: ``arm-verify`` on real folders (Trainer checkpoints, a merge killed after its
weights), ``arm-choose``'s ``OUT/model`` (model files only, hard-linked), rebuilds of
``mergekit`` candidates whose inputs changed, and an import graph without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mergekit_arm"


# -- the package's import graph has no cycle ---------------------------------------------------
def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its source (top level, under
    ``if TYPE_CHECKING:``, inside functions). ``from pkg import sub`` of a submodule points
    at ``pkg.sub``; importing ``a.b.c`` also imports the packages ``a.b`` and ``a`` (except
    the module's own enclosing packages, which are already importing)."""
    paths = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                wanted = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base
                          for a in node.names]
            else:
                continue
            for target in wanted:
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if not target:
                    continue
                pieces = target.split(".")
                for i in range(1, len(pieces) + 1):
                    implied = ".".join(pieces[:i])
                    if implied in paths and implied != name and not name.startswith(implied + "."):
                        targets.add(implied)
        graph[name] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in order:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], order[other])
        if low[node] == order[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return cycles


def test_import_graph_finds_a_type_checking_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import f\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from pkg.a import g\n")
    (package / "c.py").write_text("from pkg import a\n")
    assert import_cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert "mergekit_arm.choose.runner" in graph["mergekit_arm.choose"]
    assert import_cycles(graph) == []
    # the held-out evaluation sits below both commands
    for module in ("mergekit_arm.choose.runner", "mergekit_arm.stream.measure",
                   "mergekit_arm.stream.driver"):
        assert "mergekit_arm.heldout" in graph[module]
    assert not any(m.startswith("mergekit_arm.stream") for m in graph["mergekit_arm.heldout"])
