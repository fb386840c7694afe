"""The documents a user reads: their size, and no reference to a file that is not in the repository.

References are looked for in the Markdown documents and in the project's source (docstrings and comments name files
too): paths under the repository's folders (``docs/model.md``, ``benchmarks/results/backends.*``) and upper-case
document names (``MODEL_CARD.md``). A line that names a commit (the history page's "removed in ``d812259``", or
``git show 9a51a05:...``) speaks of the repository's past and is not checked. ``engines/`` holds built files that are
not in git, so only ``engines/README.md`` is.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CARDS = ("MODEL_CARD.md", "MODEL_CARD_analog.md")
DOCS = [
    "README.md",
    "CHANGELOG.md",
    "pipeline/weights/MODEL_CARD.md",
    "pipeline/weights/MODEL_CARD_analog.md",
    "engines/README.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")),
]
SOURCES = [
    *sorted(
        str(p.relative_to(ROOT))
        for folder in ("pipeline", "scripts", "benchmarks", "tests", "docker")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in (".py", ".sh", ".runs") and "__pycache__" not in p.parts and p.name != "test_docs.py"
    ),
    "Dockerfile",
    "pyproject.toml",
    "build_engines.py",
    ".ci/run",
]

PATH = re.compile(r"(?<![\w./:-])((?:pipeline|docs|tests|scripts|benchmarks|engines|docker|\.ci)/[\w./-]*[\w/*-])")
DOC_NAME = re.compile(r"(?<![\w./-])([A-Z][A-Z_]+\.md)\b")
COMMIT = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")


def _exists(ref: str) -> bool:
    """A path, or a prefix ending in ``*`` / ``-`` / ``.`` (``docs/training/mp-a-*``), names something that exists."""
    if ref.startswith("engines/") and ref != "engines/README.md":
        return True
    stem = ref.rstrip("*").rstrip("/")
    if (ROOT / stem).exists():
        return True
    if ref.endswith(("*", "-", ".")):
        parent, prefix = (ROOT / stem).parent, (ROOT / stem).name
        return parent.is_dir() and any(p.name.startswith(prefix) for p in parent.iterdir())
    return False


def _dangling(rel: str) -> list[str]:
    found = []
    for number, line in enumerate((ROOT / rel).read_text(encoding="utf-8").splitlines(), 1):
        if COMMIT.search(line):
            continue
        for ref in PATH.findall(line):
            ref = ref.rstrip(".") if not ref.endswith(".*") else ref
            if not _exists(ref):
                found.append(f"{rel}:{number}: {ref}")
        for name in DOC_NAME.findall(line):
            if not any(ROOT.glob(f"**/{name}")):
                found.append(f"{rel}:{number}: {name}")
    return found


@pytest.mark.parametrize("rel", DOCS + SOURCES)
def test_no_reference_to_a_file_that_is_not_in_the_repository(rel: str) -> None:
    assert _dangling(rel) == []


def test_the_checker_finds_a_dangling_reference(tmp_path: Path) -> None:
    assert not _exists("docs/no-such-page.md") and not _exists("docs/training/no-such-run-*")
    assert _exists("docs/model.md") and _exists("docs/training/mp-a-*") and _exists("benchmarks/results/backends.*")


def test_readme_and_model_card_stay_short() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 220
    assert (
        len(re.findall("stage", readme, flags=re.IGNORECASE)) <= 3
    )  # the history is CHANGELOG's and docs/history.md's
    for card in ("MODEL_CARD.md", "MODEL_CARD_analog.md"):
        assert len((ROOT / "pipeline/weights" / card).read_text(encoding="utf-8").splitlines()) <= 300, card
    assert (ROOT / "CHANGELOG.md").is_file() and (ROOT / "docs/history.md").is_file()


def test_the_model_card_keeps_no_history() -> None:
    """The card describes the model as it is: its history (stages, the commits and runs they came from, the issues
    that asked for them) is docs/history.md's."""
    card = "".join((ROOT / "pipeline/weights" / f).read_text(encoding="utf-8") for f in CARDS)
    assert re.findall(r"\bstages? \d+", card, flags=re.IGNORECASE) == []
    assert re.findall(r"\bissues? \d+", card, flags=re.IGNORECASE) == []
    assert COMMIT.findall(card) == []
    assert re.findall(r"\bruns/[\w-]+", card) == []
