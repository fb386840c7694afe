"""Every measured figure README.md and the model card quote is checked against the file it was measured into.

``FIGURES`` maps a pattern of a document (whitespace-insensitive; each group one figure as printed) to the sources
of its figures, in group order: ``(source, key...)``. A figure matches when its source, rounded to the printed
digits, reads the same. The sources:

- ``validate``: a JSON file in ``docs/evaluation/validate/``, the output of ``python -m pipeline validate --json`` with
  the options that file records (held-out figures of each shipped model);
- ``robustness`` / ``quality`` / ``pe``: the evaluation Parquet of ``docs/evaluation/`` (means over images, as the
  report prints them; P_E through ``steganalysis.summarise_pe``);
- ``detection``: a shipped checkpoint's ``meta["detection"]`` (``calibrate-detection --write-threshold``);
- ``benchmark`` / ``job``: the Parquet files of ``benchmarks/results/``;
- ``ablation`` / ``share``: the studies' Parquet files in ``docs/evaluation/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
README, CARD = "README.md", "pipeline/weights/MODEL_CARD.md"
ANALOG_CARD = "pipeline/weights/MODEL_CARD_analog.md"
N = r"([\d.,]+)"


# The shipped models' held-out figures live in their cards (``pipeline/weights/*.json``); other validate runs (all
# photos, 64 noise draws, graphics secrets) in ``docs/evaluation/validate/``.
CARDS = {"k1": "sris_fast", "k2": "sris_fast_k2", "k4": "sris_fast_k4", "k1-analog": "sris_fast_analog"}


@cache
def _validate(name: str) -> dict:
    if name in CARDS:
        return json.loads((ROOT / "pipeline/weights" / f"{CARDS[name]}.json").read_text())["held_out"]["figures"]
    return json.loads((ROOT / "docs/evaluation/validate" / f"{name}.json").read_text())["figures"]


@cache
def _study_rows(name: str) -> list[dict]:
    data = json.loads((ROOT / "docs/evaluation" / f"{name}.json").read_text())
    return data["rows"] if isinstance(data, dict) else data


def _study(name: str, *path: object) -> float:
    """A figure of a study's JSON in ``docs/evaluation/`` (``name``.json), by keys and list indexes."""
    value = json.loads((ROOT / "docs/evaluation" / f"{name}.json").read_text())
    for key in path:
        value = value[key]
    return value


@cache
def _table(rel: str) -> list[dict]:
    return pq.read_table(ROOT / rel).to_pylist()


def _mean(rel: str, column: str, **where: object) -> float:
    values = [r[column] for r in _table(rel) if all(r[k] == v for k, v in where.items())]
    assert values, (rel, where)
    return float(np.mean(values))


@cache
def _pe() -> dict:
    from pipeline.evaluate.steganalysis import summarise_pe

    return summarise_pe(_table("docs/evaluation/security.parquet"))


@cache
def _detection(name: str) -> dict:
    from pipeline.model.checkpoint import read_checkpoint

    return read_checkpoint(name)["meta"]["detection"]


def _paper() -> dict:
    from pipeline.evaluate.report import PAPER

    return PAPER


def _published_bar() -> dict:
    from pipeline.evaluate.published import PUBLISHED_BAR

    return PUBLISHED_BAR


@cache
def _samples_job() -> float:
    """The README's quick start (the shipped model on the package's samples), on the torch backend: the mean secret
    PSNR of its rows."""
    import tempfile

    from click.testing import CliRunner

    from pipeline.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        res = CliRunner().invoke(main, ["embed", "--samples", "--out", str(out), "--backend", "torch", "--no-progress"])
        assert res.exit_code == 0, res.output
        rows = [r for f in sorted(out.glob("*.parquet")) for r in pq.read_table(f).to_pylist() if r["status"] == "ok"]
    return float(np.mean([r["psnr_secret"] for r in rows]))


SOURCES: dict[str, Callable[..., float]] = {
    "validate": lambda name, key: _validate(name)[key],
    "validate-min": lambda name, *keys: min(_validate(name)[k] for k in keys),
    "validate-max": lambda name, *keys: max(_validate(name)[k] for k in keys),
    "robustness": lambda attack: _mean("docs/evaluation/robustness.parquet", "psnr", attack=attack),
    "pe": lambda detector, stat="pe": _pe()[detector][stat],
    "detection": lambda model, key: _detection(model)[key],
    "tpr": lambda model, condition: _detection(model)["true_positive_rate"][condition],
    "tpr%": lambda model, condition: 100 * _detection(model)["true_positive_rate"][condition],
    "tpr-range": lambda model, *conditions: [_detection(model)["true_positive_rate"][c] for c in conditions],
    "unmarked-max": lambda: max(
        r["score"] for r in _table("docs/evaluation/detection.parquet") if r["kind"] == "unmarked"
    ),
    "benchmark": lambda stamp, megapixels: next(
        r["end_to_end_ips"]
        for r in _table(f"benchmarks/results/benchmark-{stamp}.parquet")
        if r["kind"] == "stages" and abs(r["megapixels"] - megapixels) < 0.01
    ),
    "job": lambda name, column: _mean(f"benchmarks/results/{name}.parquet", column),
    "ablation": lambda row, column: _mean("docs/evaluation/ablations.parquet", column, row=row),
    "ablation-full": lambda column: np.mean(
        [_mean("docs/evaluation/ablations.parquet", column, row=r) for r in ("full", "full-seed1")]
    ),
    "share": lambda condition, reading: _mean(
        "docs/evaluation/code_share.parquet", "secret psnr", condition=condition, reading=reading
    ),
}

# The analog model (the default before the digital layer): its validate runs kept their names.
V1, V1_ALL, V1_GFX, V1_ALL_GFX, V1_64, V1_ALL_64 = (
    "k1-analog", "k1-all", "k1-graphics", "k1-all-graphics", "k1-noise64", "k1-all-noise64"
)  # fmt: skip
LAB_RESIZE_SHIFT = ("clean", "hflip", "mean3", "gauss1", "sharpen", "noise5", "jpeg90", "resize0.5", "resize0.75",
                    *(f"shift{k}" for k in range(1, 8)))  # fmt: skip
BAR_FIGURES = ("psnr_cover", "psnr_secret", "psnr_secret_mean3", "psnr_secret_gauss1", "psnr_secret_sharpen",
               "psnr_secret_noise5", "psnr_secret_hflip")  # fmt: skip
PUBLISHED = ["jpeg90", "jpeg75", "jpeg50", "webp80", "resize0.5", "resize0.75", *(f"shift{k}" for k in range(1, 8))]


DIGITAL_FILTERS = ("psnr_secret_mean3", "psnr_secret_gauss1", "psnr_secret_sharpen")
DIGITAL_JPEG = ("psnr_secret_jpeg90", "psnr_secret_jpeg75", "psnr_secret_jpeg50")
SHIFTS = tuple(f"psnr_secret_shift{k}" for k in range(1, 8))
LEVEL_COLUMNS = ("psnr_secret", "decodes_base", "decodes_main", "decodes_top", "from_top", "from_main", "from_base",
                 "from_analog")  # fmt: skip
SPLIT = ("psnr_cover", "ssim_cover", "psnr_secret", "psnr_secret_mean3", "psnr_secret_noise5", "psnr_secret_jpeg75",
         "psnr_secret_jpeg50", "psnr_secret_wrong_key")  # fmt: skip
TRADEOFF = (
    "main_payload",
    "psnr_cover",
    "ssim_cover",
    *(f"psnr_secret_{c}" for c in ("clean", "jpeg90", "jpeg75", "jpeg50")),
)


def _v(name: str, *keys: str) -> list[tuple]:
    return [("validate", name, k) for k in keys]


FIGURES: list[tuple[str, str, list[tuple]]] = [
    (
        README,
        rf"{N} images/s at 256 px and {N} at 1 MP, against invisible-watermark's dwtDct embed on the same decoded "
        rf"images, one\s+thread, {N} and {N} images/s; .*: {N} and {N} images/s end to end, dwtDct {N} and {N}; three "
        rf"50 MP photos peak\s+at {N} MB",
        [
            ("job-speed", "256px", "after all"),
            ("job-speed", "1MP", "after all"),
            ("job-speed", "256px", "dwtDct"),
            ("job-speed", "1MP", "dwtDct"),
            ("bench-mp", "20261206T155144Z", "all", 0.0, "end_to_end_ips"),
            ("bench-mp", "20261206T155144Z", "all", 1.0, "end_to_end_ips"),
            ("bench-mp", "20261206T155144Z", "all", 0.0, "dwtdct_ips"),
            ("bench-mp", "20261206T155144Z", "all", 1.0, "dwtdct_ips"),
            ("bench-memory", "20261206T155144Z", "peak_rss_mb"),
        ],
    ),
    # README: the paper table
    (
        README,
        rf"the analytic codes carry the model \({N} dB clean\).*without the codes the same budget gives {N} dB",
        [("ablation-full", "psnr_secret"), ("ablation", "no-codes", "psnr_secret")],
    ),
    (
        README,
        rf"\| cover/stego PSNR \| {N} dB \| {N} dB \(all 45 photos: {N}\) \| {N} dB",
        [*_v("k1", "psnr_cover"), *_v(V1, "psnr_cover"), *_v(V1_ALL, "psnr_cover"), ("paper", "cover_psnr")],
    ),
    (
        README,
        rf"\| cover/stego SSIM \| {N} \| {N} \(all 45 photos: {N}\) \| {N} \|",
        [*_v("k1", "ssim_cover"), *_v(V1, "ssim_cover"), *_v(V1_ALL, "ssim_cover"), ("paper", "cover_ssim")],
    ),
    (
        README,
        rf"\| secret/recovery PSNR, clean \| {N} dB \| {N} dB \(all 45 photos: {N}\) \| {N} dB",
        [*_v("k1", "psnr_secret"), *_v(V1, "psnr_secret"), *_v(V1_ALL, "psnr_secret"), ("paper", "secret_psnr")],
    ),
    (
        README,
        rf"sharpening \| {N} / {N} / {N} / {N} dB \| {N} / {N} / {N} / {N} dB",
        [*_v("k1", "psnr_secret_hflip", *DIGITAL_FILTERS), *_v(V1, "psnr_secret_hflip", *DIGITAL_FILTERS)],
    ),
    (
        README,
        rf"after Gaussian noise sigma 5 \| {N} dB \| {N} \+- {N} dB \(mean of 64 draws\)",
        [*_v("k1", "psnr_secret_noise5"), *_v(V1_64, "psnr_secret_noise5", "psnr_secret_noise5_se")],
    ),
    (
        README,
        rf"WebP 80 \| {N} / {N} / {N}, {N} dB \| {N} / {N} / {N}, {N} dB",
        [*_v("k1", *DIGITAL_JPEG, "psnr_secret_webp80"), *_v(V1, *DIGITAL_JPEG, "psnr_secret_webp80")],
    ),
    (
        README,
        rf"after resizing by 0.5 / 0.75 \| {N} / {N} dB \| {N} / {N} dB",
        [
            *_v("k1", "psnr_secret_resize0.5", "psnr_secret_resize0.75"),
            *_v(V1, "psnr_secret_resize0.5", "psnr_secret_resize0.75"),
        ],
    ),
    (
        README,
        rf"a 10% crop \| {N}-{N} dB; {N} dB \| {N}-{N} dB; not searched",
        [
            ("validate-min", "k1", *SHIFTS),
            ("validate-max", "k1", *SHIFTS),
            *_v("k1", "psnr_secret_crop10"),
            ("validate-min", V1, *SHIFTS),
            ("validate-max", V1, *SHIFTS),
        ],
    ),
    (
        README,
        rf"cover PSNR / SSIM \| {N} dB; {N} dB / {N} \| {N} dB; {N} dB / {N} \|",
        [
            ("job", "job_quality_k1", "psnr_secret job"),
            ("job", "job_quality_k1", "psnr_cover job"),
            ("job", "job_quality_k1", "ssim_cover job"),
            ("job", "job_quality", "psnr_secret job"),
            ("job", "job_quality", "psnr_cover job"),
            ("job", "job_quality", "ssim_cover job"),
        ],
    ),
    (
        README,
        rf"cover SSIM \| {N} / {N} / {N} dB; {N} \| {N} dB clean; {N} \|",
        [
            *_v("k1-digital-graphics", "psnr_secret", "psnr_secret_jpeg75", "psnr_secret_jpeg50", "ssim_cover"),
            *_v(V1_GFX, "psnr_secret", "ssim_cover"),
        ],
    ),
    (
        README,
        rf"payload a level carries at this cover sets that secret's PSNR: {N}-{N} dB on the held-out photos",
        [("validate", "k1", "psnr_secret_jpeg50"), ("validate", "k1", "psnr_secret")],
    ),
    (
        README,
        rf"\(`k1-analog`: {N}% found after JPEG 75, {N}% after WebP 80 and {N}% after JPEG 50\)",
        [("tpr%", "k1-analog", "jpeg75"), ("tpr%", "k1-analog", "webp80"), ("tpr%", "k1-analog", "jpeg50")],
    ),
    (
        README,
        rf"P_E {N} SRM \+ FLD, {N} XuNet, {N} wavelet \+ FLD",
        [("pe", "srm-fld"), ("pe", "xunet"), ("pe", "wavelet-fld")],
    ),
    # The model card: the default (the digital layer)
    (
        CARD,
        rf"\| cover PSNR / SSIM \| {N} dB / {N} \| {N} dB / {N} \|",
        [*_v("k1", "psnr_cover", "ssim_cover"), *_v(V1, "psnr_cover", "ssim_cover")],
    ),
    (
        CARD,
        rf"\| clean; mirror \| {N} dB; {N} dB \| {N} dB; {N} dB \|",
        [*_v("k1", "psnr_secret", "psnr_secret_hflip"), *_v(V1, "psnr_secret", "psnr_secret_hflip")],
    ),
    (
        CARD,
        rf"\| 3x3 mean / Gaussian sigma 1 / sharpening \| {N} / {N} / {N} dB \| {N} / {N} / {N} dB \|",
        [*_v("k1", *DIGITAL_FILTERS), *_v(V1, *DIGITAL_FILTERS)],
    ),
    (
        CARD,
        rf"\| Gaussian noise sigma 5 \| {N} dB \| {N} dB \|",
        [*_v("k1", "psnr_secret_noise5"), *_v(V1, "psnr_secret_noise5")],
    ),
    (
        CARD,
        rf"\| JPEG 90 / 75 / 50 \| {N} / {N} / {N} dB \| {N} / {N} / {N} dB \|",
        [*_v("k1", *DIGITAL_JPEG), *_v(V1, *DIGITAL_JPEG)],
    ),
    (
        CARD,
        rf"\| WebP 80 \| {N} dB \| {N} dB \|",
        [*_v("k1", "psnr_secret_webp80"), *_v(V1, "psnr_secret_webp80")],
    ),
    (
        CARD,
        rf"\| resizing to 0.75 / 0.5 and back \| {N} / {N} dB \| {N} / {N} dB \|",
        [
            *_v("k1", "psnr_secret_resize0.75", "psnr_secret_resize0.5"),
            *_v(V1, "psnr_secret_resize0.75", "psnr_secret_resize0.5"),
        ],
    ),
    (
        CARD,
        rf"\| shifts of 1-7 px \| {N}-{N} dB \| {N}-{N} dB \|",
        [
            ("validate-min", "k1", *SHIFTS),
            ("validate-max", "k1", *SHIFTS),
            ("validate-min", V1, *SHIFTS),
            ("validate-max", V1, *SHIFTS),
        ],
    ),
    (CARD, rf"\| a 10% crop \| {N} dB \|", _v("k1", "psnr_secret_crop10")),
    (
        CARD,
        rf"JPEG 95 / 85 / 60 / 40 {N} / {N} / {N} / {N} dB, WebP 90 / 70 {N} / {N} dB, resizing to 0.9 / 0.6 {N} / {N} "
        rf"dB, shifts of 12 / 24 px {N} / {N} dB, crops keeping 95% / 85% {N} / {N} dB",
        _v(
            "k1",
            *(
                f"psnr_secret_{c}"
                for c in (
                    "jpeg95",
                    "jpeg85",
                    "jpeg60",
                    "jpeg40",
                    "webp90",
                    "webp70",
                    "resize0.9",
                    "resize0.6",
                    "shift12",
                    "shift24",
                    "crop5",
                    "crop15",
                )
            ),
        ),
    ),
    (
        CARD,
        rf"AVIF at 96 / 300 / 1,200 bytes gives these photos about {N} / {N} / {N} dB",
        _v("k1", "psnr_secret_jpeg50", "psnr_secret_jpeg75", "psnr_secret"),
    ),
    (
        CARD,
        rf"carried to the photo's {N} x {N} by bilinear upsampling\) no pattern shows, the flat blocks reading {N} dB",
        [("flat-job", "width"), ("flat-job", "height"), ("flat-job", "psnr_cover_flat")],
    ),
    (
        CARD,
        rf"Cover {N} dB / {N}; each secret {N} dB clean \(the bar: 25\), {N} after JPEG 75, {N} after JPEG 50 and "
        rf"WebP 80, {N} after resizing to 0.5, {N}-{N} after shifts of 1-7 px and {N} after a 10% crop",
        [
            *_v("k2", "psnr_cover", "ssim_cover", "psnr_secret1", "psnr_secret_jpeg75", "psnr_secret_jpeg50"),
            *_v("k2", "psnr_secret_resize0.5"),
            ("validate-min", "k2", *SHIFTS),
            ("validate-max", "k2", *SHIFTS),
            *_v("k2", "psnr_secret_crop10"),
        ],
    ),
    (
        CARD,
        rf"\| as shipped: 7 coefficients, 1\.2x \| {N} bytes \| {N} dB / {N} \| {N} / {N} / {N} / {N} dB \|",
        [("study", "digital_tradeoff", "rows", 0, k) for k in TRADEOFF],
    ),
    (
        CARD,
        rf"\| 12 coefficients, 1\.2x \| {N} bytes \| {N} dB / {N} \| {N} / {N} / {N} / {N} dB \|",
        [("study", "digital_tradeoff", "rows", 1, k) for k in TRADEOFF],
    ),
    (
        CARD,
        rf"\| 12 coefficients, 1\.6x \| {N} bytes \| {N} dB / {N} \| {N} / {N} / {N} / {N} dB \|",
        [("study", "digital_tradeoff", "rows", 2, k) for k in TRADEOFF],
    ),
    (
        CARD,
        rf"\| 17 coefficients, 1\.6x \| {N} bytes \| {N} dB / {N} \| {N} / {N} / {N} / {N} dB \|",
        [("study", "digital_tradeoff", "rows", 3, k) for k in TRADEOFF],
    ),
    (CARD, rf"an exact copy on every held-out crop \(reported as {N} dB", _v("k1", "psnr_cover_flat_worst")),
    (
        CARD,
        rf"secret {N} dB, cover {N} dB / {N} at full size; mirrored at full size, {N} dB",
        [
            ("job", "job_quality_k1", "psnr_secret job"),
            ("job", "job_quality_k1", "psnr_cover job"),
            ("job", "job_quality_k1", "ssim_cover job"),
            ("job", "job_quality_k1", "psnr_secret mirrored job"),
        ],
    ),
    (
        CARD,
        rf"except sharpening {N}%, noise sigma 5 {N}%, WebP 80 {N}%, resizing to 0.5 {N}% and the 10% crop {N}%",
        [("det-tpr%", c) for c in ("sharpen", "noise5", "webp80", "resize0.5", "crop10")],
    ),
    (
        CARD,
        rf"JPEG 40 {N}%, WebP 70 {N}%, resizing to 0.6 {N}%",
        [("det-tpr%", c) for c in ("jpeg40", "webp70", "resize0.6")],
    ),
    (
        CARD,
        rf"the secret they reveal reads {N} dB against the true one on average \(the bar: 12 or less\), {N} at most",
        [("det-wrong", "psnr_secret"), ("det-wrong", "psnr_secret_max")],
    ),
    (
        CARD,
        rf"nearly whole: {N} dB clean \(the bar: 30\), {N} after JPEG 75 \(27\), {N} after JPEG 50 \(24, missed: the "
        rf"`base` level's 96 bytes hold only a small graphic\), cover SSIM {N} \(0.95\)",
        _v("k1-digital-graphics", "psnr_secret", "psnr_secret_jpeg75", "psnr_secret_jpeg50", "ssim_cover"),
    ),
    (
        CARD,
        rf"\| clean \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "clean", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| mirror \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "hflip", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| 3x3 mean \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "mean3", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| sharpening \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "sharpen", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| noise sigma 5 \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "noise5", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| JPEG 90 \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "jpeg90", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| JPEG 75 \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "jpeg75", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| JPEG 50 \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "jpeg50", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| JPEG 40 \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "jpeg40", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| WebP 80 \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "webp80", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| WebP 70 \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "webp70", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| resizing to 0\.75 \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "resize0.75", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| resizing to 0\.5 \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "resize0.5", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| shift 7 px \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "shift7", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| crop 10% \| {N} dB \| {N} / {N} / {N} \| {N} / {N} / {N} / {N} \|",
        [("level", "photos", "crop10", k) for k in LEVEL_COLUMNS],
    ),
    (
        CARD,
        rf"\| 0 \| {N} dB / {N} \| {N} / {N} / {N} / {N} / {N} dB \| {N} dB \|",
        [("study", "budget_split", "rows", 0, k) for k in SPLIT],
    ),
    (
        CARD,
        rf"\| 0.5 \| {N} dB / {N} \| {N} / {N} / {N} / {N} / {N} dB \| {N} dB \|",
        [("study", "budget_split", "rows", 1, k) for k in SPLIT],
    ),
    (
        CARD,
        rf"\| 1 \| {N} dB / {N} \| {N} / {N} / {N} / {N} / {N} dB \| {N} dB \|",
        [("study", "budget_split", "rows", 2, k) for k in SPLIT],
    ),
    # The model card: the analog model
    (
        CARD,
        rf"\| cover/stego PSNR \| {N} dB \|.*\| cover/stego SSIM \| {N} \|.*\| secret/recovery PSNR, clean \| {N} dB",
        _v(V1, "psnr_cover", "ssim_cover", "psnr_secret"),
    ),
    (
        CARD,
        rf"after a horizontal flip \| {N} dB.*after a 3x3 mean \| {N} dB.*sigma 1 \| {N} dB.*sharpening \| {N} dB",
        _v(V1, "psnr_secret_hflip", "psnr_secret_mean3", "psnr_secret_gauss1", "psnr_secret_sharpen"),
    ),
    (
        CARD,
        rf"sigma 5 \| {N} dB on the bar's draw; {N} \+- {N} dB on 64 draws",
        [*_v(V1, "psnr_secret_noise5"), *_v(V1_64, "psnr_secret_noise5", "psnr_secret_noise5_se")],
    ),
    (
        CARD,
        rf"cover {N} dB / SSIM {N} \({N} above the bar;.*secret {N} dB clean, {N} / {N} / {N} / {N} dB "
        rf"after mean / Gaussian / sharpening / noise, {N} \+- {N} dB on the mean of 64",
        [
            *_v(V1_ALL, "psnr_cover", "ssim_cover"),
            ("ssim-over-bar", V1_ALL),
            *_v(
                V1_ALL,
                "psnr_secret",
                "psnr_secret_mean3",
                "psnr_secret_gauss1",
                "psnr_secret_sharpen",
                "psnr_secret_noise5",
            ),
            *_v(V1_ALL_64, "psnr_secret_noise5", "psnr_secret_noise5_se"),
        ],
    ),
    (
        CARD,
        rf"codes carry everything \({N} dB clean\); without them {N} dB at a {N} dB cover, HiNet-style {N} at {N}",
        [
            ("ablation-full", "psnr_secret"),
            ("ablation", "no-codes", "psnr_secret"),
            ("ablation", "no-codes", "psnr_cover"),
            ("ablation", "hinet", "psnr_secret"),
            ("ablation", "hinet", "psnr_cover"),
        ],
    ),
    *[
        (
            CARD,
            rf"\| {label} \| {N} dB \| {N} dB \| {N} dB \| {N} \|",
            [
                ("job", name, f"psnr_secret {size}"),
                ("job", name, f"psnr_secret mirrored {size}"),
                ("job", name, f"psnr_cover {size}"),
                ("job", name, f"ssim_cover {size}"),
            ],
        )
        for label, name, size in (
            (r"network at 256 px \(the whole photo squeezed\)", "job_quality", "network size"),
            (r"job at 1 MP, `--upsample exact` \(default\)", "job_quality", "job"),
            (r"job at 1 MP, `--upsample smooth`", "job_quality-smooth", "job"),
        )
    ],
    (
        CARD,
        rf"secret {N} dB clean, {N} / {N} / {N} / {N} dB after mean / Gaussian / sharpening / noise; cover {N} "
        rf"dB / SSIM {N}, under the bar, as for every model measured \(the 8 held-out covers alone: {N} dB clean, "
        rf"cover {N} dB / {N}\)",
        [
            *_v(
                V1_ALL_GFX,
                "psnr_secret",
                "psnr_secret_mean3",
                "psnr_secret_gauss1",
                "psnr_secret_sharpen",
                "psnr_secret_noise5",
            ),
            *_v(V1_ALL_GFX, "psnr_cover", "ssim_cover"),
            *_v(V1_GFX, "psnr_secret", "psnr_cover", "ssim_cover"),
        ],
    ),
    (
        CARD,
        rf"{N} images/s end to end at 256 px and {N} at 1 MP.*another such machine, {N} images/s at 256 px",
        [
            ("benchmark", "20261127T111549Z", 0.0655),
            ("benchmark", "20261127T111549Z", 1.0),
            ("benchmark", "20261202T014743Z", 0.0655),
        ],
    ),
    (
        CARD,
        rf"\| {N} \| {N} \| {N} / {N} / {N} \| {N} \| {N} / {N} / {N} \| {N} \| {N} / {N} \|",
        [
            ("robustness", a)
            for a in (
                "clean",
                "mean 3x3",
                "gaussian 3x3 s0.5",
                "gaussian 3x3 s1",
                "gaussian 3x3 s2",
                "sharpen",
                "noise s1",
                "noise s5",
                "noise s10",
                "h-flip",
                "jpeg90",
                "jpeg75",
            )
        ],
    ),
    (
        CARD,
        rf"FLD ensemble {N} \+- {N}, XuNet {N} \+- {N}, Lyu-Farid wavelet statistics with an FLD {N} \+- {N}",
        [("pe", d, s) for d in ("srm-fld", "xunet", "wavelet-fld") for s in ("pe", "pe_std")],
    ),
    (
        CARD,
        rf"P_E {N}-{N}, below",
        [("pe", "srm-fld"), ("pe", "xunet")],
    ),
    (
        CARD,
        r"\| photo secrets \| " + r" \| ".join([f"{N} / {N} / {N}", N, f"{N} / {N}", " / ".join([N] * 7)]) + r" \|",
        _v(V1, *(f"psnr_secret_{c}" for c in PUBLISHED)),
    ),
    (
        CARD,
        r"\| graphics secrets \(`--graphics-secrets`\) \| "
        + r" \| ".join([f"{N} / {N} / {N}", N, f"{N} / {N}", " / ".join([N] * 7)])
        + r" \|",
        _v(V1_GFX, *(f"psnr_secret_{c}" for c in PUBLISHED)),
    ),
    (
        CARD,
        rf"their clean figure is {N} dB \(cover {N} dB / SSIM {N}\)",
        _v(V1_GFX, "psnr_secret", "psnr_cover", "ssim_cover"),
    ),
    *[
        (
            CARD,
            rf"\| {reading} \| " + r" \| ".join([N] * 8) + r" \|",
            [("share", c, reading.replace("\\", "")) for c in conds],
        )
        for conds in [("clean", "noise5", "jpeg90", "jpeg75", "jpeg50", "webp80", "resize0.5", "shift3")]
        for reading in ("thumbnail code", r"\+ learned path", r"\+ residual code")
    ],
    (
        CARD,
        rf"the highest of {N} unmarked scores is {N}, so threshold {N} has no false positive there \(95% bound on "
        r"the rate ([\d.e-]+)\)",
        [
            ("detection", "k1-analog", "unmarked_images"),
            ("unmarked-max",),
            ("detection", "k1-analog", "threshold"),
            ("detection", "k1-analog", "false_positive_rate_95_upper"),
        ],
    ),
    (
        CARD,
        rf"True-positive rates at {N}: {N} clean, mirrored, sharpened, after noise sigma 5 and JPEG 90; {N}-{N} "
        rf"after Gaussian sigma 1, resizing and shifts 1-7; {N} mean 3x3; {N} JPEG 75; {N} WebP 80; {N} JPEG 50",
        [
            ("detection", "k1-analog", "threshold"),
            *[("tpr", "k1-analog", c) for c in ("clean",)],
            ("tpr-min", "k1-analog", "gauss1", "resize0.5", "resize0.75", *(f"shift{k}" for k in range(1, 8))),
            ("tpr-max", "k1-analog", "gauss1", "resize0.5", "resize0.75", *(f"shift{k}" for k in range(1, 8))),
            *[("tpr", "k1-analog", c) for c in ("mean3", "jpeg75", "webp80", "jpeg50")],
        ],
    ),
    *[
        (
            CARD,
            rf"\| `sris_fast_{k}.pt` \| {N} dB / {N} \| " + r" \| ".join([f"{N} / {N} / {N}"] * n),
            [
                *_v(name, "psnr_cover", "ssim_cover"),
                *[
                    src
                    for j in range(1, n + 1)
                    for src in _v(name, f"psnr_secret{j}", f"psnr_secret{j}_noise5", f"psnr_secret{j}_mean3")
                ],
            ],
        )
        for k, name, n in (("k2", "k2-noise64", 2), ("k4", "k4", 4))
    ],
    (
        CARD,
        rf"for K = 2, after a 3x3 mean \({N}\), JPEG 75 / 50 \({N} / {N}\) and WebP 80 \({N}\); for K = 4 after a "
        rf"3x3 mean \({N}\), Gaussian 1 \({N}\), JPEG 75 / 50 \({N} / {N}\), WebP 80 \({N}\) and resize 0.5 \({N}\)",
        [
            *[("tpr", "k2", c) for c in ("mean3", "jpeg75", "jpeg50", "webp80")],
            *[("tpr", "k4", c) for c in ("mean3", "gauss1", "jpeg75", "jpeg50", "webp80", "resize0.5")],
        ],
    ),
    (
        CARD,
        rf"through the job at 1 MP the cover SSIM is {N}, under 0.95; `--upsample smooth` keeps {N} for a {N} dB "
        rf"secret. Graphics secrets cost more cover \(SSIM {N} at 256 px\)",
        [
            ("job", "job_quality", "ssim_cover job"),
            ("job", "job_quality-smooth", "ssim_cover job"),
            ("job", "job_quality-smooth", "psnr_secret job"),
            *_v(V1_ALL_GFX, "ssim_cover"),
        ],
    ),
    (CARD, rf"P_E {N}-{N} against three steganalysers", [("pe", "srm-fld"), ("pe", "xunet")]),
    (README, rf"the two seeds' spread \({N} dB\)", [("seed-spread",)]),
    (README, rf"sample secret \(a busy graphic\) comes back at about {N} dB", [("samples-job",)]),
    (
        README,
        rf"third and fourth secrets read {N} and {N} dB after a 3x3 mean",
        _v("k4", "psnr_secret3_mean3", "psnr_secret4_mean3"),
    ),
    (
        CARD,
        rf"shifts of 4-7 px leave it at {N}-{N} dB",
        [
            (
                "validate-min",
                V1,
                "psnr_secret_shift4",
                "psnr_secret_shift5",
                "psnr_secret_shift6",
                "psnr_secret_shift7",
            ),
            (
                "validate-max",
                V1,
                "psnr_secret_shift4",
                "psnr_secret_shift5",
                "psnr_secret_shift6",
                "psnr_secret_shift7",
            ),
        ],
    ),
    (CARD, rf"beyond the spread of two seeds of the full model \({N} dB\)", [("seed-spread",)]),
    (CARD, rf"sample secret \(a busy graphic that codes poorly\) comes back at about {N} dB", [("samples-job",)]),
    (
        CARD,
        rf"Clean: code {N} dB, learned path \+{N}, residual code \+{N}; after JPEG 50 the learned path gives {N} of "
        rf"{N} dB",
        [
            ("share", "clean", "thumbnail code"),
            ("share-gain", "clean", "thumbnail code", "+ learned path"),
            ("share-gain", "clean", "+ learned path", "+ residual code"),
            ("share-gain", "jpeg50", "thumbnail code", "+ learned path"),
            ("share", "jpeg50", "+ residual code"),
        ],
    ),
    (
        CARD,
        rf"The paper's figures \({N} dB / {N} / {N} dB; ours {N} / {N} / {N}\)",
        [
            ("paper", "cover_psnr"),
            ("paper", "cover_ssim"),
            ("paper", "secret_psnr"),
            *_v(V1, "psnr_cover", "ssim_cover", "psnr_secret"),
        ],
    ),
    (
        CARD,
        rf"\| cover/stego PSNR \| {N} dB \| >= 36 \| {N} \|.*\| cover/stego SSIM \| {N} \| >= 0.95 \| {N} \|.*"
        rf"\| secret/recovery PSNR, clean \| {N} dB \| >= 28 \| {N} \|",
        [
            *_v(V1, "psnr_cover"),
            ("paper", "cover_psnr"),
            *_v(V1, "ssim_cover"),
            ("paper", "cover_ssim"),
            *_v(V1, "psnr_secret"),
            ("paper", "secret_psnr"),
        ],
    ),
]
SOURCES["tpr%-min"] = lambda model, *c: 100 * min(SOURCES["tpr-range"](model, *c))
SOURCES["tpr%-max"] = lambda model, *c: 100 * max(SOURCES["tpr-range"](model, *c))
SOURCES["paper"] = lambda key: _paper()[key]
SOURCES["seed-spread"] = lambda: max(
    abs(
        _mean("docs/evaluation/ablations.parquet", c, row="full")
        - _mean("docs/evaluation/ablations.parquet", c, row="full-seed1")
    )
    for c in BAR_FIGURES
)
SOURCES["under-bar-min"] = lambda name, *c: min(_published_bar()[k] - _validate(name)[f"psnr_secret_{k}"] for k in c)
SOURCES["under-bar-max"] = lambda name, *c: max(_published_bar()[k] - _validate(name)[f"psnr_secret_{k}"] for k in c)
SOURCES["share-gain"] = lambda condition, a, b: SOURCES["share"](condition, b) - SOURCES["share"](condition, a)
SOURCES["samples-job"] = lambda: _samples_job()
SOURCES["det-tpr%"] = lambda condition: (
    100
    * next(r["rate"] for r in _study_rows("digital_detection") if r["test"] == "marked" and r["condition"] == condition)
)
SOURCES["det-wrong"] = lambda key: next(
    r[key] for r in _study_rows("digital_detection") if r["test"] == "wrong key" and r["search"]
)
SOURCES["level"] = lambda secrets, condition, key: next(
    r[key]
    for r in _table("docs/evaluation/digital_levels.parquet")
    if r["secrets"] == secrets and r["condition"] == condition
)
SOURCES["bench-mp"] = lambda stamp, layers, megapixels, key: next(
    r[key]
    for r in _table(f"benchmarks/results/benchmark-{stamp}.parquet")
    if r["kind"] == "stages" and r["layers"] == layers and abs(r["megapixels"] - megapixels) < 0.1
)
SOURCES["bench-memory"] = lambda stamp, key: next(
    r[key] for r in _table(f"benchmarks/results/benchmark-{stamp}.parquet") if r["kind"] == "memory"
)
SOURCES["job-speed"] = lambda size, what: float(
    np.mean(
        [
            r["ips"]
            for r in json.loads((ROOT / "benchmarks/results/job_speed-before-after.json").read_text())["rows"]
            if r["size"] == size and r["what"] == what
        ]
    )
)
SOURCES["flat-job"] = lambda key: json.loads((ROOT / "docs/evaluation/flat_crop_job.json").read_text())[key]
SOURCES["study"] = lambda name, *path: _study(name, *path)
SOURCES["ssim-over-bar"] = lambda name: _validate(name)["ssim_cover"] - 0.95
SOURCES["tpr-min"] = lambda model, *c: min(SOURCES["tpr-range"](model, *c))
SOURCES["tpr-max"] = lambda model, *c: max(SOURCES["tpr-range"](model, *c))


def _text(rel: str) -> str:
    """A document with its whitespace collapsed; the model cards (the default's and the analog model's) are one."""
    files = [rel, ANALOG_CARD] if rel == CARD else [rel]
    return re.sub(r"\s+", " ", " ".join((ROOT / f).read_text(encoding="utf-8") for f in files))


def _printed(shown: str) -> tuple[float, int]:
    """A figure as printed -> (value, decimals); ``4,275`` is 4275, ``7e-4`` is 0.0007 (to one significant digit)."""
    shown = shown.replace(",", "").rstrip(".")
    return float(shown), len(shown.split(".")[1]) if "." in shown else 0


def _matches(shown: str, value: float) -> bool:
    if "e" in shown:  # scientific: to its significant digits
        mantissa = shown.split("e")[0]
        digits = len(mantissa.replace(".", "")) - 1
        return float(f"{float(value):.{digits}e}") == float(shown)
    number, decimals = _printed(shown)
    return round(float(value), decimals) == number or abs(float(value) - number) <= 0.5 * 10**-decimals + 1e-12


@pytest.mark.parametrize(("doc", "pattern", "sources"), FIGURES, ids=lambda x: x[:40] if isinstance(x, str) else "")
def test_figure_matches_its_source(doc: str, pattern: str, sources: list[tuple]) -> None:
    m = re.search(pattern, _text(doc))
    assert m, f"{doc}: no text matches {pattern!r}"
    assert len(m.groups()) == len(sources), (pattern, len(m.groups()), len(sources))
    wrong = []
    for shown, (name, *args) in zip(m.groups(), sources, strict=True):
        value = SOURCES[name](*args)
        if not _matches(shown, value):
            wrong.append(f"{shown} (source {name}{tuple(args)}: {value:.6g})")
    assert wrong == [], f"{doc}: figures differ from their sources: {wrong}"


def test_every_validate_source_records_its_command() -> None:
    for path in sorted((ROOT / "docs/evaluation/validate").glob("*.json")):
        data = json.loads(path.read_text())
        assert data["command"].startswith("python -m pipeline validate --data PHOTOS --json"), path
        assert set(data) == {"command", "figures"}, path


def test_a_drifted_figure_is_caught() -> None:
    assert _matches("37.38", 37.3834) and not _matches("37.39", 37.3834)
    assert _matches("4,275", 4275) and _matches("0.800", 0.8) and not _matches("81", 80.0)
    assert _matches("7e-4", 0.000702) and not _matches("8e-4", 0.000702)


# Numbers shaped like measurements (before dB, %, images/s; after SSIM or P_E) that are not measurements: bars,
# shares of a training mix, a rate's confidence level.
NOT_MEASURED = (
    "SSIM 0.95 at full size",
    "later 30% of them",
    "at 2% of the learning rate",
    "mirror of 25% of the images",
    "at 100% a faint",
    "visible at 100% in flat sky",
    "(95% bound on the rate",
    "visible at 100% where",
    "at a 36 dB cover",
    "| a 10% crop |",
    "a crop keeping 90% of",
    "costs the cover some 0.015 of SSIM",
    "a cover well under SSIM 0.9",
    "| crop 10% |",
    "before and after at 100% and x3",
    "after a 10% crop (",
    "and the bar's 28 dB after",
    "under the 24-30 dB the",
    "and the 10% crop",
    "(the bar: 99% each)",
    "a 95% bound of",
    "a 10% crop |",
    "crops keeping 95% / 85%",
)
MEASURED = re.compile(r"(\d+(?:\.\d+)?)(?= ?(?:dB|%|images/s))|(?<=SSIM )(0\.\d+)|(?<=P_E )(0\.\d+)")


@pytest.mark.parametrize("doc", [README, CARD])
def test_every_measured_figure_has_a_row(doc: str) -> None:
    """Every number shaped like a measurement is one a row of ``FIGURES`` checks (or a bar, in ``NOT_MEASURED``):
    a new figure in the documents needs its source."""
    text = re.sub(r"```.*?```", lambda m: " " * len(m.group()), _text(doc))  # commands, not figures
    spans = []
    for d, pattern, _ in FIGURES:
        m = re.search(pattern, text) if d == doc else None
        spans += [m.span(i) for i in range(1, len(m.groups()) + 1)] if m else []
    allowed = [(m.start(), m.end()) for phrase in NOT_MEASURED for m in re.finditer(re.escape(phrase), text)]
    loose = []
    for m in MEASURED.finditer(text):
        start, end = next(m.span(i) for i in range(1, 4) if m.group(i))
        if not any(a <= start and end <= b for a, b in spans + allowed):
            loose.append(text[max(0, start - 40) : end + 5])
    assert loose == []
