"""The package's import graph has no circle, and the paper's network (``model/sris/``) and our codes
(``model/codes/``) do not import each other.

Every module of ``pipeline/`` is parsed (not imported) and every ``import`` statement in it counts: at module level,
inside functions and under ``TYPE_CHECKING``, relative or absolute. ``from pipeline.x import name`` is an edge to
``pipeline.x.name`` when that is a module, else to ``pipeline.x`` (a package's ``__init__``). Two graphs are
checked: modules, and the layers (``pipeline.core``, ``pipeline.io``, ``pipeline.train``, ... and the top-level
modules), where a circle such as train -> evaluate -> train is one even when no two modules import each other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``package`` (a package is its ``__init__``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _owner(name: str, modules: Iterable[str]) -> str | None:
    """The module that ``name`` (a module, or a name inside one) lives in; None outside the package."""
    known = set(modules)
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    root = next(iter(modules)).split(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_owner(a.name, modules) for a in node.names if a.name.split(".")[0] == root)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source.split(".")[0] != root:
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                found.add(full if full in modules else _owner(source, modules))
    found.discard(None)
    found.discard(module)
    return found  # type: ignore[return-value]


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_files(package)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def layer_of(module: str) -> str:
    """``pipeline.train.loop`` -> ``pipeline.train``; a top-level module (``pipeline.cli``) is its own layer."""
    return ".".join(module.split(".")[:2])


def layer_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, targets in graph.items():
        out.setdefault(layer_of(a), set())
        for b in targets:
            if layer_of(a) != layer_of(b):
                out[layer_of(a)].add(layer_of(b))
    return out


def circles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one node (Tarjan), each as a sorted tuple."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def sris_codes_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    sris, codes = "pipeline.model.sris", "pipeline.model.codes"

    def inside(m: str, pkg: str) -> bool:
        return m == pkg or m.startswith(pkg + ".")

    return {
        (a, b)
        for a, targets in graph.items()
        for b in targets
        if (inside(a, sris) and inside(b, codes)) or (inside(a, codes) and inside(b, sris))
    }


def test_no_import_circle_between_modules() -> None:
    found = set(circles(import_graph()))
    assert found == set()


def test_no_import_circle_between_layers() -> None:
    assert circles(layer_graph(import_graph())) == []


def test_the_papers_network_and_our_codes_do_not_import_each_other() -> None:
    assert sris_codes_imports(import_graph()) == set()


def test_the_shared_helpers_import_nothing_else_of_the_package() -> None:
    graph = import_graph()
    core = "pipeline.core"
    assert {b for a, bs in graph.items() if layer_of(a) == core for b in bs if layer_of(b) != core} == set()


@pytest.fixture
def fake_package(tmp_path: Path):
    def make(files: dict[str, str]) -> Path:
        for rel, text in files.items():
            path = tmp_path / "pkg" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return tmp_path / "pkg"

    return make


def test_the_walker_finds_circles_through_function_level_and_relative_imports(fake_package) -> None:
    pkg = fake_package(
        {
            "__init__.py": "",
            "a/__init__.py": "",
            "a/one.py": "def f():\n    from pkg.b import two\n",
            "b/__init__.py": "",
            "b/two.py": "from ..a.one import f\n",
            "c.py": "import pkg.a.one\n",
        }
    )
    graph = import_graph(pkg)
    assert graph["pkg.a.one"] == {"pkg.b.two"} and graph["pkg.b.two"] == {"pkg.a.one"}
    assert circles(graph) == [("pkg.a.one", "pkg.b.two")]
    assert circles(layer_graph(graph)) == [("pkg.a", "pkg.b")]


def test_the_walker_finds_a_layer_circle_without_a_module_circle(fake_package) -> None:
    pkg = fake_package(
        {
            "__init__.py": "",
            "train/__init__.py": "",
            "train/loop.py": "from pkg.evaluate.quick import run\n",
            "train/attacks.py": "",
            "evaluate/__init__.py": "",
            "evaluate/quick.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.train import attacks\n",
        }
    )
    graph = import_graph(pkg)
    assert circles(graph) == []
    assert circles(layer_graph(graph)) == [("pkg.evaluate", "pkg.train")]
