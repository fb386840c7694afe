"""How often the digital layer's verdict is wrong: unmarked crops called marked, marked stegos missed, wrong keys.

``marked`` is true when a level's CRC-32 passes after its LDPC decoding (``pipeline/model/digital/layer.py``). A
reader decodes each level once per image, on the one grid its search chose, so an image that carries no mark passes
by chance with probability at most 3 x 2^-32 (three levels), less for the levels whose readings carry too little
information to be decoded at all. Measured here:

- false positives: ``--unmarked`` square crops of every photo (sides from 256 px to the photo's shorter side, resized
  to 256), clean and after JPEG 75, WebP 80 and resizing to 0.5 and back, read on the unmoved grid (the decode every
  read makes); ``--searched`` of the clean crops also go through the whole grid search;
- true positives: the held-out photos' ``--marked-crops`` crops each, marked with a key and a message, read after
  every condition of ``validate`` (the laboratory distortions, the published-image bar and its family);
- wrong keys: each marked stego read with ``--wrong-keys-unmoved`` other keys on the unmoved grid (the fraction
  called marked), and with ``--wrong-keys`` others through the whole read: the fraction called marked, and the PSNR
  of what the reveal gives against the true secret.

    python research/digital_detection.py --data PHOTOS [--unmarked 230] [--searched 300] [--marked-crops 6]
        [--wrong-keys 5] [--wrong-keys-unmoved 200] [--out docs/evaluation/digital_detection]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.core import distortions as D
from pipeline.core.metrics import psnr, to_255
from pipeline.core.photos import square_crops, validation_pairs
from pipeline.evaluate.published import FAMILY, PUBLISHED
from pipeline.evaluate.quick import QUICK_ATTACKS
from pipeline.io.photos import load_photos
from pipeline.model import load_model
from pipeline.model.digital.keys import Key
from pipeline.model.digital.layer import DigitalLayer

UNMARKED_CONDITIONS = {
    "clean": lambda x: x,
    "jpeg75": lambda x: D.jpeg(x, 75),
    "webp80": lambda x: D.webp(x, 80),
    "resize0.5": lambda x: D.resize(x, 0.5),
}
MARKED_CONDITIONS = {"clean": lambda x: x, **QUICK_ATTACKS, **PUBLISHED, **FAMILY}
KEY = Key(bytes(range(32)))  # the study's key: fixed, so the figures reproduce


def upper_95(hits: int, n: int) -> float:
    """One-sided 95% upper bound of a rate with ``hits`` of ``n`` observed (exact binomial; 3/n for none)."""
    if hits == 0:
        return 1 - 0.05 ** (1 / n)
    lo, hi = hits / n, 1.0
    for _ in range(60):  # bisection on the binomial tail P(X <= hits | p) = 0.05
        mid = (lo + hi) / 2
        tail = sum(math.comb(n, k) * mid**k * (1 - mid) ** (n - k) for k in range(hits + 1))
        lo, hi = (mid, hi) if tail > 0.05 else (lo, mid)
    return hi


def false_positives(model, photos, per_photo: int, searched: int) -> list[dict]:
    crops = square_crops(photos, per_photo, 256, seed=20261205)
    layer = model.digital.layer(KEY)
    rows = []
    for name, attack in UNMARKED_CONDITIONS.items():
        hits, scores, t0 = 0, [], time.time()
        for i in range(0, len(crops), 16):
            got = layer.read(D.quantize(attack(crops[i : i + 16])), search=False)
            hits += sum(r.marked for r in got)
            scores += [r.score for r in got]
        rows.append({"test": "unmarked", "condition": name, "search": False, "n": len(crops), "marked": hits,
                     "upper_95": upper_95(hits, len(crops)), "score_max": max(scores)})  # fmt: skip
        print(f"unmarked {name}: {hits} of {len(crops)} marked, max score {max(scores):.2f} ({time.time() - t0:.0f} s)")
    got = layer.read(crops[:searched], search=True)
    hits = sum(r.marked for r in got)
    rows.append({"test": "unmarked", "condition": "clean", "search": True, "n": len(got), "marked": hits,
                 "upper_95": upper_95(hits, len(got)), "score_max": max(r.score for r in got)})  # fmt: skip
    print(f"unmarked searched: {hits} of {len(got)} marked, max score {rows[-1]['score_max']:.2f}")
    return rows


def true_positives(model, covers, secrets) -> tuple[list[dict], torch.Tensor]:
    messages = [f"asset-{i:04d}".encode() for i in range(len(covers))]
    with torch.inference_mode():
        stego = D.quantize(
            torch.cat([model.embed(covers[i : i + 1], secrets[i : i + 1], KEY, [m]) for i, m in enumerate(messages)])
        )
        rows = []
        for name, attack in MARKED_CONDITIONS.items():
            got = model.read(D.quantize(attack(stego)), key=KEY)
            hits = sum(r.marked for r in got)
            intact = sum(r.message == m for r, m in zip(got, messages, strict=True))
            rows.append({"test": "marked", "condition": name, "search": True, "n": len(got), "marked": hits,
                         "message_ok": intact, "rate": hits / len(got)})  # fmt: skip
            print(f"marked {name}: {hits} of {len(got)} marked, message intact {intact}")
    return rows, stego


def wrong_keys_unmoved(model, stego, keys: int) -> list[dict]:
    """Many wrong keys on the unmoved grid (the decode every read makes): the chance a CRC passes by luck."""
    rng = np.random.default_rng(11)
    hits, n, t0 = 0, 0, time.time()
    for _ in range(keys):
        got = DigitalLayer(model.digital.config, Key(rng.bytes(32))).read(stego, search=False)
        hits += sum(r.marked for r in got)
        n += len(got)
    print(f"wrong keys, unmoved grid: {hits} of {n} marked ({time.time() - t0:.0f} s)")
    return [{"test": "wrong key", "condition": "clean", "search": False, "n": n, "marked": hits,
             "rate": 1 - hits / n, "upper_95": upper_95(hits, n)}]  # fmt: skip


def wrong_keys(model, stego, secrets, keys: int) -> list[dict]:
    rng = np.random.default_rng(7)
    hits, n, values = 0, 0, []
    with torch.inference_mode():
        for _ in range(keys):
            got = model.read(stego, key=Key(rng.bytes(32)))
            hits += sum(r.marked for r in got)
            n += len(got)
            revealed = to_255(torch.stack([r.secrets for r in got]))
            values += psnr(revealed, to_255(secrets)).tolist()
    print(f"wrong keys: {hits} of {n} marked, revealed secret {np.mean(values):.2f} dB (max {np.max(values):.2f})")
    row = {"test": "wrong key", "condition": "clean", "search": True, "n": n, "marked": hits, "rate": 1 - hits / n}
    return [{**row, "psnr_secret": float(np.mean(values)), "psnr_secret_max": float(np.max(values))}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--unmarked", type=int, default=230, help="crops per photo (45 photos: 10,350 crops)")
    ap.add_argument("--searched", type=int, default=300)
    ap.add_argument("--marked-crops", type=int, default=6)
    ap.add_argument("--wrong-keys", type=int, default=5, help="keys per stego, whole read (search, analog path)")
    ap.add_argument("--wrong-keys-unmoved", type=int, default=200, help="keys per stego, unmoved grid")
    ap.add_argument("--out", default="docs/evaluation/digital_detection")
    args = ap.parse_args()
    model = load_model(args.checkpoint)
    if model.digital is None:
        raise SystemExit("this model has no digital layer")
    train, val, _, _ = load_photos(args.data, 3, 0.2)
    rows = false_positives(model, train + val, args.unmarked, args.searched)
    covers = square_crops(val, args.marked_crops, 256, seed=5, centre=True)
    _, secrets = validation_pairs(val, 256, model.config.num_secrets)
    secrets = secrets.repeat_interleave(args.marked_crops + 1, dim=0)[: len(covers)]
    marked, stego = true_positives(model, covers, secrets)
    rows += marked + wrong_keys_unmoved(model, stego, args.wrong_keys_unmoved)
    rows += wrong_keys(model, stego, secrets, args.wrong_keys)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out.with_suffix(".parquet"))
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
