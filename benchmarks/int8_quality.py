#!/usr/bin/env python
"""What the int8 OpenVINO engine changes in every ``validate`` figure, per shipped model, against the torch model.

    python benchmarks/int8_quality.py --data PHOTOS [--models k1,k2,k4] [--engines-dir engines] [--write]

Runs ``python -m pipeline validate --data PHOTOS --checkpoint K --json`` twice per model, as the torch model and
with ``--backend openvino --precision int8`` (the engines are built on first use), and prints each PSNR figure's
change. ``--write`` records the result in ``pipeline/runtime/int8.json``, which decides whether OpenVINO's default
precision may be int8 for that model (``pipeline.runtime.quality``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import click


def validate_json(data: str, model: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pipeline", "validate", "--data", data, "--checkpoint", model, "--json", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 4):  # 4: the bar is missed, the figures are still there
        raise click.ClickException(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return json.loads(proc.stdout)


@click.command()
@click.option("--data", required=True, help="Folder of photos (validate's held-out split is used).")
@click.option("--models", default="k1,k2,k4", show_default=True, help="Shipped models or checkpoints, comma-separated.")
@click.option("--engines-dir", default="engines", show_default=True)
@click.option("--write", is_flag=True, help="Rewrite pipeline/runtime/int8.json with the result.")
def main(data: str, models: str, engines_dir: str, write: bool) -> None:
    from pipeline.model.checkpoint import load_model
    from pipeline.runtime.quality import INT8_BAR_DB, RECORD, figure_changes, holds

    record = {}
    engine = ["--backend", "openvino", "--precision", "int8", "--engines-dir", engines_dir]
    for name in models.split(","):
        reference = validate_json(data, name, [])
        changes = figure_changes(reference, validate_json(data, name, engine))
        worst = min(changes, key=lambda k: changes[k])
        ok = holds(changes)
        click.echo(f"{name}: worst {worst} {changes[worst]:+.2f} dB -> {'holds' if ok else 'does not hold'}")
        for key, value in changes.items():
            click.echo(f"  {key:32} {reference[key]:7.2f} dB  {value:+.2f}")
        sha = load_model(name).checkpoint_sha256
        record[sha] = {
            "name": name,
            "holds": ok,
            "worst_figure": worst,
            "worst_change_db": round(changes[worst], 3),
            "changes_db": {k: round(v, 3) for k, v in changes.items()},
        }
    if write:
        payload = {
            "bar_db": INT8_BAR_DB,
            "measured_by": "python benchmarks/int8_quality.py --data PHOTOS --write",
            "models": record,
        }
        RECORD.write_text(json.dumps(payload, indent=1) + "\n")
        click.echo(f"wrote {RECORD}")


if __name__ == "__main__":
    main()
