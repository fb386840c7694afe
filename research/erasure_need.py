"""How many written slots each digital level's LDPC code needs when they read without error and the rest are erased.

A cover's flat blocks are left unwritten, and to a reader their slots carry nothing: a smooth cover can leave a level
fewer written slots than its code needs, even when every written reading is exact. For each code the shipped models
use (n slots, k payload bits, S slots per block), blocks are written at random (``ratio`` x k / S of them, the
interleaver a random permutation, as a key gives), their slots given certain readings of a random codeword and the
others none, and belief propagation (``make_code``, the product's decoder and settings) decodes; ``TRIALS`` patterns
per ratio. The least ratio at which every pattern decoded is ``codewords.ERASURE_NEED``. Writes
``docs/evaluation/erasure_need.json`` and ``.png``.

    python research/erasure_need.py [--trials 12]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.model import load_model
from pipeline.model.digital.channel import make_code
from pipeline.model.digital.codewords import ERASURE_NEED, LayerCode

ROOT = Path(__file__).resolve().parents[1]
RATIOS = np.round(np.arange(0.9, 2.01, 0.05), 2)


def shipped_codes() -> list[tuple[int, int, int]]:
    """(n, k, S) of every level of the shipped models with the digital layer."""
    out = set()
    for name in ("k1", "k2"):
        cfg = load_model(name).config.digital
        code = LayerCode(cfg)
        out.update((*code.code_shape(i), len(lv.coeffs)) for i, lv in enumerate(cfg.levels))
    return sorted(out)


def failures(n: int, k: int, s: int, ratio: float, trials: int, rng: np.random.Generator) -> int:
    """Patterns of ``trials`` at ``ratio`` written slots per payload bit that did not decode to the codeword."""
    code, blocks, failed = make_code(n, k), n // s, 0
    for _ in range(trials):
        message = rng.integers(0, 2, k).astype(np.uint8)
        word = code.encode(message)
        written = np.zeros(blocks, bool)
        written[rng.choice(blocks, min(blocks, round(ratio * k / s)), replace=False)] = True
        slots = np.repeat(written, s)[rng.permutation(n)]  # codeword bit j sits in a slot of a written block or not
        llr = np.where(slots, 12.0, 0.0) * np.where(word == 1, -1.0, 1.0)
        bits, _ = code.decode(llr)
        failed += not np.array_equal(np.asarray(bits, dtype=np.uint8), message)
    return failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--out", default=str(ROOT / "docs" / "evaluation" / "erasure_need"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n, k, s in shipped_codes():
        fails = [failures(n, k, s, float(r), args.trials, rng) for r in RATIOS]
        need = next((float(r) for j, r in enumerate(RATIOS) if all(f == 0 for f in fails[j:])), None)
        rows.append({"n": n, "k": k, "slots_per_block": s, "failures": fails, "need": need})
        print(f"({n}, {k}): need {need} (table: {ERASURE_NEED.get((n, k))}); failures by ratio {fails}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"ratios": RATIOS.tolist(), "trials": args.trials, "codes": rows}))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for r in rows:
        ax.plot(RATIOS, np.array(r["failures"]) / args.trials, marker="o", label=f"n={r['n']}, k={r['k']}")
    ax.set_xlabel("written slots per payload bit")
    ax.set_ylabel("patterns not decoded")
    ax.set_title("exact readings on written blocks, the rest erased")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)


if __name__ == "__main__":
    main()
