"""The installed versions of the libraries a result depends on, for the records the jobs, the evaluation and the
engine builds write beside their outputs."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata


def library_versions(packages: Iterable[str], missing: str | None = None) -> dict[str, str]:
    """``{"python": X.Y.Z, package: version, ...}`` in the order given, as installed (distribution names, e.g.
    ``pillow``, ``sris-pipeline``); a package that is not installed is left out, or given ``missing``."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if missing is not None:
                out[name] = missing
    return out
