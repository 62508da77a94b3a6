"""End to end: the two entry points on the sample files, asserted against a plain-Python reading of them."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from filegate.contracts import Contract, load_contracts, utc_timestamp
from spark_jobs import stage_load, target_load

pytestmark = pytest.mark.spark

ORDER_TRACKING = load_contracts()["order_tracking"]


def run_batch(warehouse: Path, source: Path, batch_id: str, dataset: str = "order_tracking", **extra: str) -> None:
    """Run both tasks the way the job does, and fail the test if either does."""
    arguments = ["--source-path", str(source), "--dataset", dataset, "--batch-id", batch_id]
    arguments += ["--catalog", "local", "--schema", str(warehouse)]
    for name, value in extra.items():
        arguments += [f"--{name.replace('_', '-')}", value]
    assert stage_load.main(arguments) == 0
    assert target_load.main(arguments) == 0


def table(warehouse: Path, name: str) -> pa.Table:
    """A table as delta-rs reads it: independent of the Spark code under test."""
    return DeltaTable(str(warehouse / name)).to_pyarrow_dataset().to_table()


def good_rows(contract: Contract, files: Iterable[Path]) -> list[dict[str, str]]:
    """Rows of the files that pass every rule, by the function's own `check_text`."""
    found = []
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader)
            for row in reader:
                if len(row) == len(contract.columns) and not any(
                    column.check_text(text) for column, text in zip(contract.columns, row, strict=True)
                ):
                    found.append(dict(zip(contract.column_names, row, strict=True)))
    return found


def latest_status(contract: Contract, files: Iterable[Path]) -> dict[str, tuple[datetime, str]]:
    """Per tracking number, the newest (status_ts, status) over all the files, whatever their order."""
    latest: dict[str, tuple[datetime, str]] = {}
    for row in good_rows(contract, files):
        version = (utc_timestamp(row["status_ts"]), row["status"])
        key = row["tracking_num"]
        if key not in latest or version[0] > latest[key][0]:
            latest[key] = version
    return latest


def target_status(warehouse: Path) -> dict[str, tuple[datetime, str]]:
    rows = table(warehouse, "order_tracking").to_pylist()
    assert len({row["tracking_num"] for row in rows}) == len(rows), "one row per key"
    return {row["tracking_num"]: (row["status_ts"], row["status"]) for row in rows}


def log_rows(warehouse: Path) -> list[dict[str, object]]:
    return sorted(table(warehouse, "processing_log").to_pylist(), key=lambda row: row["ended_at"])


def test_first_load_stages_rejects_merges_and_logs(spark: SparkSession, tmp_path: Path, samples: list[Path]) -> None:
    first = samples[0]
    expected = latest_status(ORDER_TRACKING, [first])

    run_batch(tmp_path, first, "b-2025-03-03", source_file=f"abfss://archive@acct.dfs.core.windows.net/{first.name}")

    assert target_status(tmp_path) == expected
    stage = table(tmp_path, "order_tracking_stage")
    assert stage.num_rows == len(good_rows(ORDER_TRACKING, [first]))
    rejects = table(tmp_path, "order_tracking_rejects").to_pylist()
    assert len(rejects) == 3
    raw_lines = first.read_text(encoding="utf-8").splitlines()
    assert all(reject["raw_line"] in raw_lines and reject["reason"] for reject in rejects)
    assert {row["_source_file"] for row in stage.to_pylist()} == {
        f"abfss://archive@acct.dfs.core.windows.net/{first.name}"
    }
    (log,) = log_rows(tmp_path)
    assert log["status"] == "SUCCEEDED"
    assert log["error"] is None
    assert (log["rows_read"], log["rows_rejected"]) == (120, 3)
    assert (log["rows_inserted"], log["rows_updated"], log["rows_unchanged"]) == (len(expected), 0, 0)
    assert log["started_at"] <= log["ended_at"]


def test_daily_files_update_to_the_newest_status(spark: SparkSession, tmp_path: Path, samples: list[Path]) -> None:
    for path in samples:
        run_batch(tmp_path, path, path.stem)

    assert target_status(tmp_path) == latest_status(ORDER_TRACKING, samples)
    logs = log_rows(tmp_path)
    assert [log["batch_id"] for log in logs] == [path.stem for path in samples]
    assert sum(log["rows_updated"] for log in logs) > 0
    for log, path in zip(logs, samples, strict=True):
        keys = {row["tracking_num"] for row in good_rows(ORDER_TRACKING, [path])}
        assert log["rows_inserted"] + log["rows_updated"] + log["rows_unchanged"] == len(keys)
    # Late reports in the samples carry older statuses than the target already holds: they count as unchanged.
    assert sum(log["rows_unchanged"] for log in logs) > 0


def test_an_older_file_after_a_newer_one_changes_nothing(
    spark: SparkSession, tmp_path: Path, samples: list[Path]
) -> None:
    newer, older = samples[2], samples[1]
    run_batch(tmp_path, newer, "newer")
    before = target_status(tmp_path)

    run_batch(tmp_path, older, "older")

    after = target_status(tmp_path)
    assert after == latest_status(ORDER_TRACKING, [older, newer])
    assert all(after[key][0] >= status_ts for key, (status_ts, _) in before.items()), "no key went back in time"


def test_duplicates_within_a_batch_keep_the_latest_row(
    spark: SparkSession, tmp_path: Path, samples: list[Path]
) -> None:
    lines = samples[0].read_text(encoding="utf-8").splitlines()
    header, row = lines[0], lines[1].split(",")
    newer = [*row[:2], "DELIVERED", "2099-01-01T00:00:00Z", *row[4:]]
    older = [*row[:2], "PICKED_UP", "2000-01-01T00:00:00+05:00", *row[4:]]
    source = tmp_path / "order_tracking_2025_03_03.csv"
    source.write_text("\n".join([header, ",".join(row), ",".join(newer), ",".join(newer), ",".join(older), ""]))

    run_batch(tmp_path / "warehouse", source, "dupes")

    target = table(tmp_path / "warehouse", "order_tracking").to_pylist()
    assert [(r["tracking_num"], r["status"]) for r in target] == [(row[0], "DELIVERED")]
    (log,) = log_rows(tmp_path / "warehouse")
    assert (log["rows_read"], log["rows_inserted"], log["rows_unchanged"]) == (4, 1, 0)


def test_the_same_batch_twice_changes_nothing(spark: SparkSession, tmp_path: Path, samples: list[Path]) -> None:
    run_batch(tmp_path, samples[0], "b1")
    run_batch(tmp_path, samples[1], "b2")
    target_before = table(tmp_path, "order_tracking").sort_by("tracking_num")
    stage_before = table(tmp_path, "order_tracking_stage").num_rows

    run_batch(tmp_path, samples[1], "b2")

    assert table(tmp_path, "order_tracking").sort_by("tracking_num").equals(target_before)
    assert table(tmp_path, "order_tracking_stage").num_rows == stage_before
    assert table(tmp_path, "order_tracking_rejects").num_rows == 6
    rerun = log_rows(tmp_path)[-1]
    assert (rerun["batch_id"], rerun["rows_inserted"], rerun["rows_updated"]) == ("b2", 0, 0)


def test_restaging_one_batch_leaves_other_batches_alone(
    spark: SparkSession, tmp_path: Path, samples: list[Path]
) -> None:
    arguments = ["--dataset", "order_tracking", "--catalog", "local", "--schema", str(tmp_path)]
    assert stage_load.main(["--source-path", str(samples[0]), "--batch-id", "a", *arguments]) == 0
    assert stage_load.main(["--source-path", str(samples[1]), "--batch-id", "b", *arguments]) == 0

    assert stage_load.main(["--source-path", str(samples[2]), "--batch-id", "a", *arguments]) == 0

    stage = table(tmp_path, "order_tracking_stage").to_pylist()
    by_batch = {batch: [r for r in stage if r["_batch_id"] == batch] for batch in ("a", "b")}
    assert len(by_batch["a"]) == len(good_rows(ORDER_TRACKING, [samples[2]]))
    assert len(by_batch["b"]) == len(good_rows(ORDER_TRACKING, [samples[1]]))


def test_a_file_where_every_row_is_bad(spark: SparkSession, tmp_path: Path, samples: list[Path]) -> None:
    run_batch(tmp_path, samples[0], "good")
    target_before = table(tmp_path, "order_tracking").sort_by("tracking_num")
    header, *rows = samples[1].read_text(encoding="utf-8").splitlines()
    broken = [row.replace(",UPS,", ",ACME,").replace(",DHL,", ",ACME,") for row in rows[:20]]
    broken = [row if ",ACME," in row else row.split(",", 1)[1] for row in broken]
    source = tmp_path / samples[1].name
    source.write_text("\n".join([header, *broken]) + "\n", encoding="utf-8")

    run_batch(tmp_path, source, "all-bad")

    assert table(tmp_path, "order_tracking").sort_by("tracking_num").equals(target_before)
    rejects = [r for r in table(tmp_path, "order_tracking_rejects").to_pylist() if r["_batch_id"] == "all-bad"]
    assert sorted(r["raw_line"] for r in rejects) == sorted(broken)
    assert any("carrier value 'ACME' is not one of" in r["reason"] for r in rejects)
    assert any("fields, expected 13" in r["reason"] for r in rejects)
    log = log_rows(tmp_path)[-1]
    assert (log["status"], log["rows_read"], log["rows_rejected"], log["rows_inserted"]) == ("SUCCEEDED", 20, 20, 0)


def test_a_file_with_the_wrong_header_fails_and_is_logged(
    spark: SparkSession, tmp_path: Path, bad_sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["--source-path", str(bad_sample), "--dataset", "order_tracking", "--batch-id", "bad"]

    code = stage_load.main([*arguments, "--schema", str(tmp_path)])

    assert code == 1
    assert "does not list the columns" in capsys.readouterr().err
    (log,) = log_rows(tmp_path)
    assert (log["status"], log["task"], log["batch_id"]) == ("FAILED", "stage_load", "bad")
    assert "HeaderMismatch" in log["error"]


def test_unknown_dataset_and_bad_batch_id_are_refused(
    spark: SparkSession, tmp_path: Path, samples: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--source-path", str(samples[0]), "--schema", str(tmp_path)]

    assert stage_load.main([*base, "--dataset", "nope", "--batch-id", "x"]) == 1
    assert target_load.main([*base, "--dataset", "order_tracking", "--batch-id", "a\nb"]) == 2

    err = capsys.readouterr().err
    assert "unknown dataset 'nope'" in err
    assert "--batch-id must be" in err


def versions_by_key(contract: Contract, files: Iterable[Path]) -> dict[str, list[datetime]]:
    """Per key, every distinct status_ts in the files, in time order: the history SCD2 must keep."""
    found: dict[str, set[datetime]] = {}
    for row in good_rows(contract, files):
        found.setdefault(row["tracking_num"], set()).add(utc_timestamp(row["status_ts"]))
    return {key: sorted(times) for key, times in found.items()}


def test_scd2_keeps_history_out_of_order_and_repeated(
    spark: SparkSession, tmp_path: Path, samples: list[Path], test_contracts: Path
) -> None:
    contract = load_contracts(test_contracts)["parcel_history"]
    files = []
    for path in samples[:3]:
        copy = tmp_path / path.name.replace("order_tracking", "parcel_history")
        shutil.copyfile(path, copy)
        files.append(copy)
    warehouse = tmp_path / "warehouse"
    extra = {"contracts_dir": str(test_contracts)}

    # Newest first, then an older one, then the newest again: history must come out the same.
    for path, batch in ((files[2], "d3"), (files[0], "d1"), (files[1], "d2"), (files[2], "d3")):
        run_batch(warehouse, path, batch, dataset="parcel_history", **extra)

    expected = versions_by_key(contract, files)
    rows = table(warehouse, "parcel_history").to_pylist()
    assert len(rows) == sum(len(times) for times in expected.values())
    for key, times in expected.items():
        history = sorted((r for r in rows if r["tracking_num"] == key), key=lambda r: r["effective_from"])
        assert [r["effective_from"] for r in history] == times
        assert [r["effective_to"] for r in history] == [*times[1:], None]
        assert [r["is_current"] for r in history] == [False] * (len(times) - 1) + [True]
        assert all(r["status_ts"] == r["effective_from"] for r in history)
    repeat = log_rows(warehouse)[-1]
    assert (repeat["rows_inserted"], repeat["rows_updated"]) == (0, 0)
