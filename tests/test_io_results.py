"""The results table is built from Arrow buffers: the same table pyarrow's own conversion gives, without the pandas
import that conversion costs a job's start."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from pipeline.io.results import SCHEMA, arrow_column, new_row, to_table


def rows() -> list[dict]:
    east = timezone(timedelta(hours=5, minutes=30))
    out = [
        new_row(),
        new_row(
            job_id="j",
            key="ünïcode/ключ",
            status="ok",
            width=256,
            height=np.int64(192),
            psnr_cover=41.25,
            ssim_cover=np.float32(0.875),
            psnr_secret=math.inf,
            ssim_secret=math.nan,
            marked=True,
            level_top=np.bool_(False),
            message="",
            created_at=datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=east),
        ),
        new_row(key="", error="x" * 1000, marked=False, width=0, created_at=datetime(1969, 7, 20, 20, 17, 40)),
    ]
    return out


def test_the_table_is_the_one_pyarrow_converts() -> None:
    given = rows()
    got = to_table(given, {"a": 1})
    want = pa.Table.from_pylist(given, schema=SCHEMA)
    assert got.schema.equals(SCHEMA) and got.num_rows == 3
    for name in SCHEMA.names:
        a, b = got.column(name).to_pylist(), want.column(name).to_pylist()
        same = [x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True)]
        assert all(same), (name, a, b)
        assert got.column(name).null_count == want.column(name).null_count, name


@pytest.mark.parametrize(
    ("values", "kind"),
    [(["1.5"], pa.float64()), ([True], pa.int32()), ([1], pa.bool_()), ([3], pa.string()), ([2**40], pa.int32())],
)
def test_a_value_of_the_wrong_type_is_refused(values: list, kind: pa.DataType) -> None:
    with pytest.raises((TypeError, ValueError, OverflowError, AttributeError)):
        arrow_column(values, kind)


def test_an_empty_shard_writes_an_empty_table() -> None:
    assert to_table([], {}).num_rows == 0


def test_writing_results_does_not_import_pandas(tmp_path) -> None:
    code = (
        "import sys\n"
        "from pipeline.io.results import new_row, write_results\n"
        f"write_results({str(tmp_path)!r}, 's', [new_row(key='k', psnr_cover=40.0)], {{}}, 'job')\n"
        "print('pandas' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
    assert pa.parquet.read_table(tmp_path / "s.parquet").column("key").to_pylist() == ["k"]
