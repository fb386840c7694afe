"""The studies in research/: each imports with today's package (its public API only), says in one line what it
measures and gives the command that reproduces its figure."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "research").glob("*.py"))
# Engine internals that a study must not reach into (the folded inference graph is what the engines export).
INTERNAL_MODULES = ("pipeline.model.inference",)


def test_every_study_is_in_the_index() -> None:
    index = (ROOT / "research" / "README.md").read_text(encoding="utf-8")
    assert STUDIES and all(f"`{p.name}`" in index for p in STUDIES)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_imports_and_documents_itself(path: Path) -> None:
    spec = importlib.util.spec_from_file_location(f"research_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # imports every name it uses from the package; runs nothing (a main guard)
    doc = module.__doc__ or ""
    purpose = doc.split("\n\n")[0]
    assert purpose and "\n" not in purpose.strip(), "the docstring opens with a one-line purpose"
    assert f"python research/{path.name}" in doc, "the docstring gives the command that reproduces the figure"
    assert callable(getattr(module, "main", None))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_uses_public_names_only(path: Path) -> None:
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
            names = [a.name for a in node.names]
            if node.module in INTERNAL_MODULES or any(p.startswith("_") for p in node.module.split(".")):
                bad.append(node.module)
            bad += [f"{node.module}.{n}" for n in names if n.startswith("_")]
        elif isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.startswith("pipeline") and a.name in INTERNAL_MODULES]
    assert bad == []
