"""The package's compiled parts: the digital layer's block writer (``pipeline/model/digital/_blockwrite.c``) and LDPC
decoder (``pipeline/model/digital/_minsum.c``), the jobs' SSIM and squared errors (``pipeline/core/_ssim.c``) and the
PNG reader's unfiltering (``pipeline/io/_png.c``). Everything else is in ``pyproject.toml``.

All are optional: where no C compiler is, the install goes on, and the layer writes with its NumPy path
(``cpu_path.CpuPath.store`` and ``active_blocks``: the same stegos up to a grey level on rounding boundaries) and
decodes with ldpc's decoder (the same bits, in a worker process: it holds the GIL), SSIM runs on OpenCV's filter
(the same figures to about 1e-6), OpenCV sums the squared errors (the same integers) and decodes every PNG (the same
pixels), each at a fraction of the speed.
"""

import sys

from setuptools import Extension, setup

# -O3 vectorises the loops; -fno-trapping-math lets it vectorise the rounding's selects (no value changes);
# -ffp-contract=off keeps a * b + c two IEEE float32 roundings, as NumPy's. No -ffast-math: the rounding must see
# IEEE values, and the sums keep their order.
FLAGS = [] if sys.platform == "win32" else ["-O3", "-fno-trapping-math", "-ffp-contract=off"]

setup(
    ext_modules=[
        Extension(
            name,
            [source],
            include_dirs=["pipeline"],  # _multiversion.h
            depends=["pipeline/_multiversion.h"],
            extra_compile_args=FLAGS,
            optional=True,
        )
        for name, source in (
            ("pipeline.model.digital._blockwrite", "pipeline/model/digital/_blockwrite.c"),
            ("pipeline.model.digital._minsum", "pipeline/model/digital/_minsum.c"),
            ("pipeline.core._ssim", "pipeline/core/_ssim.c"),
            ("pipeline.io._png", "pipeline/io/_png.c"),
        )
    ]
)
