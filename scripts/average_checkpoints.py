"""Average checkpoints of one architecture into one file (fp16), a weight per file.

    python scripts/average_checkpoints.py OUT.pt 0.65=runs/heavy-b/model.pt 0.35=runs/gpu-n945/model.pt

How stage 11 of the shipped model was made (pipeline/weights/MODEL_CARD.md): two fine-tunes of one start that
ended at different points of the cover-SSIM / noise trade-off, mixed so that the cover SSIM over all 45 photos
stays at the bar.
"""

from __future__ import annotations

import sys

from pipeline.model.checkpoint import average_checkpoints


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    out, specs = argv[0], argv[1:]
    weights, paths = [], []
    for spec in specs:
        w, sep, p = spec.partition("=")
        if not sep:
            sys.exit(f"expected WEIGHT=PATH, got {spec!r}")
        weights.append(float(w))
        paths.append(p)
    average_checkpoints(paths, weights, out=out)
    print(f"wrote {out}: " + ", ".join(f"{w} x {p}" for w, p in zip(weights, paths, strict=True)))


if __name__ == "__main__":
    main(sys.argv[1:])
