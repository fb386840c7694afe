"""Print the image's pip requirements from pyproject.toml: the package's dependencies plus the s3 and ray extras, less
what the NGC PyTorch base image ships built for its own CUDA (torch, torch-tensorrt, DALI), which must not be replaced.

    python docker/requirements.py [pyproject.toml] > /tmp/requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib

EXTRAS = ("s3", "ray")
PROVIDED_BY_BASE = re.compile(r"^(torch|torch-tensorrt|torchvision|nvidia-dali(-cuda\d+)?)$")


def requirement_name(req: str) -> str:
    """'ray[data]>=2.40' -> 'ray' (PEP 508 name, normalised to lower case with dashes)."""
    name = re.split(r"[\s\[<>=!~;@]", req.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def image_requirements(pyproject: str) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    reqs = [*project["dependencies"], *(r for extra in EXTRAS for r in project["optional-dependencies"][extra])]
    out: list[str] = []
    for req in reqs:
        if not PROVIDED_BY_BASE.match(requirement_name(req)) and req not in out:
            out.append(req)
    return out


if __name__ == "__main__":
    print("\n".join(image_requirements(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")))
