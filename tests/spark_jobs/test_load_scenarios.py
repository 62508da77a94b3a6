"""End to end: the two entry points on the sample files, asserted against a plain-Python reading of them."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, StringType, StructField, StructType

from filegate.contracts import BUILTIN_DATASETS, Contract, load_contracts
from spark_jobs import stage_load, target_load
from spark_jobs import warehouse as warehouse_module
from spark_jobs.columns import stage_schema
from spark_jobs.stage import Batch, StageCounts, stage_file, staged_rows
from spark_jobs.target import TargetLoadError, load_target
from spark_jobs.target_definition import TargetDefinitionChanged
from spark_jobs.task import parse_arguments
from spark_jobs.warehouse import Warehouse, batch_predicate
from tests.spark_jobs.conftest import Lake

pytestmark = pytest.mark.spark

ORDER_TRACKING = load_contracts()["order_tracking"]
T = TypeVar("T")


def utc_timestamp(text: str) -> datetime:
    """A sample's timestamp as the contract reads it: an offset where given, else UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def task_arguments(lake: Lake, source: Path, batch_id: str, dataset: str = "order_tracking", **extra: str) -> list[str]:
    """The command line both tasks get from the job, writing where `lake` says."""
    arguments = ["--source-path", str(source), "--dataset", dataset, "--batch-id", batch_id]
    arguments += lake.arguments()
    for name, value in extra.items():
        arguments += [f"--{name.replace('_', '-')}", value]
    return arguments


def run_batch(lake: Lake, source: Path, batch_id: str, dataset: str = "order_tracking", **extra: str) -> None:
    """Run both tasks the way the job does, and fail the test if either does."""
    arguments = task_arguments(lake, source, batch_id, dataset, **extra)
    assert stage_load.main(arguments) == 0
    assert target_load.main(arguments) == 0


def data_lines(files: Iterable[Path]) -> Iterator[tuple[str, list[str]]]:
    """Each data line of the files with its fields, as Python's csv module (the function's) reads them."""
    for path in files:
        header, *lines = path.read_text(encoding="utf-8").splitlines()
        for line in lines:
            if line.strip() and line != header:
                yield line, next(csv.reader([line]))


def row_problem(contract: Contract, fields: list[str]) -> str | None:
    """Why the job must reject a row, by the function's own `check_text`; None for a good row."""
    if len(fields) != len(contract.columns):
        return f"row has {len(fields)} fields, expected {len(contract.columns)}"
    problems = [column.check_text(text) for column, text in zip(contract.columns, fields, strict=True)]
    return "; ".join(problem for problem in problems if problem) or None


def good_rows(contract: Contract, files: Iterable[Path]) -> list[dict[str, str]]:
    """Rows of the files that pass every rule."""
    return [
        dict(zip(contract.column_names, fields, strict=True))
        for _, fields in data_lines(files)
        if row_problem(contract, fields) is None
    ]


def expected_rejects(contract: Contract, files: Iterable[Path]) -> dict[str, str]:
    """Each rejected line's raw text and the reason the function would give for it."""
    found = {}
    for line, fields in data_lines(files):
        problem = row_problem(contract, fields)
        if problem:
            found[line] = problem
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


def target_status(lake: Lake) -> dict[str, tuple[datetime, str]]:
    rows = lake.table("order_tracking").to_pylist()
    assert len({row["tracking_num"] for row in rows}) == len(rows), "one row per key"
    return {row["tracking_num"]: (row["status_ts"], row["status"]) for row in rows}


def log_rows(lake: Lake) -> list[dict[str, object]]:
    return sorted(lake.table("processing_log").to_pylist(), key=lambda row: row["ended_at"])


def test_first_load_stages_rejects_merges_and_logs(spark: SparkSession, lake: Lake, samples: list[Path]) -> None:
    first = samples[0]
    expected = latest_status(ORDER_TRACKING, [first])
    archived = f"abfss://archive@acct.dfs.core.windows.net/{first.name}"
    arguments = task_arguments(lake, first, "b-2025-03-03", source_file=archived)

    assert stage_load.main(arguments) == 0

    stage = lake.table("order_tracking_stage").to_pylist()
    staged = lake.staged("order_tracking")
    assert len(staged) == len(good_rows(ORDER_TRACKING, [first]))
    assert {row["_source_file"] for row in stage} == {archived}
    assert len(stage) - len(staged) == 3, "every row read is staged once, with its verdict"
    detail = spark.sql(f"DESCRIBE DETAIL {lake.location.name('order_tracking_stage')}").first()
    assert detail is not None
    assert detail["partitionColumns"] == ["_batch_id"], "a batch is replaced and released as a partition"
    rejects = {row["raw_line"]: row["reason"] for row in lake.table("order_tracking_rejects").to_pylist()}
    assert rejects == expected_rejects(ORDER_TRACKING, [first])
    assert len(rejects) == 3

    assert target_load.main(arguments) == 0

    assert target_status(lake) == expected
    assert lake.table("order_tracking_stage").num_rows == 0, "a merged batch's stage rows are released"
    assert lake.table("order_tracking_rejects").num_rows == 3, "rejects stay"
    (log,) = log_rows(lake)
    assert log["status"] == "SUCCEEDED"
    assert log["error"] is None
    assert (log["rows_read"], log["rows_rejected"]) == (120, 3)
    assert (log["rows_inserted"], log["rows_updated"], log["rows_unchanged"]) == (len(expected), 0, 0)
    assert log["rows_superseded"] == len(good_rows(ORDER_TRACKING, [first])) - len(expected)
    assert accounted(log) == log["rows_read"], "every row read is counted once"
    assert log["started_at"] <= log["ended_at"]
    history = lake.spark.sql(f"DESCRIBE HISTORY {lake.location.name('order_tracking')}").collect()
    assert "MERGE" in [entry["operation"] for entry in history], "written by Delta Lake on Spark"
    assert_described(lake, ORDER_TRACKING)

    # A retry (a repair) of target_load after the batch was merged and its stage released merges nothing
    # and is not logged as a run of zeros.
    assert target_load.main(arguments) == 0
    assert target_status(lake) == expected
    first_run, retry = log_rows(lake)
    assert first_run == log
    assert (retry["status"], retry["rows_read"], retry["rows_inserted"]) == ("SKIPPED", None, None)
    assert "batch already merged" in str(retry["details"])


def assert_described(lake: Lake, contract: Contract) -> None:
    """The target carries the contract's description and its columns' (none where the contract gives none)."""
    table, columns = lake.comments(contract.target)
    assert table == contract.description
    assert {c.name: columns[c.name] for c in contract.columns} == {
        c.name: c.description or None for c in contract.columns
    }
    assert columns["tracking_num"] == "Carrier tracking number; the business key."
    assert columns["_ingested_at"] == "When the batch that loaded the row started (UTC)."


def accounted(log: dict[str, object]) -> int:
    """The rows a log row accounts for: each read row is rejected, superseded, inserted, updated or unchanged."""
    names = ("rows_rejected", "rows_superseded", "rows_inserted", "rows_updated", "rows_unchanged")
    return sum(int(log[name]) for name in names)  # type: ignore[call-overload]


def test_daily_files_update_to_the_newest_status(spark: SparkSession, lake: Lake, samples: list[Path]) -> None:
    for path in samples:
        run_batch(lake, path, path.stem)

    assert target_status(lake) == latest_status(ORDER_TRACKING, samples)
    logs = log_rows(lake)
    assert [log["batch_id"] for log in logs] == [path.stem for path in samples]
    assert sum(log["rows_updated"] for log in logs) > 0
    for log, path in zip(logs, samples, strict=True):
        keys = {row["tracking_num"] for row in good_rows(ORDER_TRACKING, [path])}
        assert log["rows_inserted"] + log["rows_updated"] + log["rows_unchanged"] == len(keys)
        assert accounted(log) == log["rows_read"]
    # Late reports in the samples carry older statuses than the target already holds: they count as unchanged.
    assert sum(log["rows_unchanged"] for log in logs) > 0


def test_an_older_file_after_a_newer_one_changes_nothing(spark: SparkSession, lake: Lake, samples: list[Path]) -> None:
    newer, older = samples[2], samples[1]
    run_batch(lake, newer, "newer")
    before = target_status(lake)

    run_batch(lake, older, "older")

    after = target_status(lake)
    assert after == latest_status(ORDER_TRACKING, [older, newer])
    assert all(after[key][0] >= status_ts for key, (status_ts, _) in before.items()), "no key went back in time"
    incoming = {key: status_ts for key, (status_ts, _) in latest_status(ORDER_TRACKING, [older]).items()}
    known = [key for key in incoming if key in before]
    newer_log, older_log = log_rows(lake)
    assert (newer_log["rows_inserted"], newer_log["rows_updated"], newer_log["rows_unchanged"]) == (len(before), 0, 0)
    assert (older_log["rows_read"], older_log["rows_rejected"]) == (120, 3)
    assert (older_log["rows_inserted"], older_log["rows_updated"], older_log["rows_unchanged"]) == (
        len(incoming) - len(known),
        sum(incoming[key] > before[key][0] for key in known),
        sum(incoming[key] <= before[key][0] for key in known),
    )
    assert older_log["rows_unchanged"] > 0, "the older day's statuses lose to the newer day's"


def test_duplicates_within_a_batch_keep_the_latest_row(
    spark: SparkSession, lake: Lake, tmp_path: Path, samples: list[Path]
) -> None:
    lines = samples[0].read_text(encoding="utf-8").splitlines()
    header, row = lines[0], lines[1].split(",")
    newer = [*row[:2], "DELIVERED", "2099-01-01T00:00:00Z", *row[4:]]
    older = [*row[:2], "PICKED_UP", "2000-01-01T00:00:00+05:00", *row[4:]]
    source = tmp_path / "order_tracking_2025_03_03.csv"
    source.write_text("\n".join([header, ",".join(row), ",".join(newer), ",".join(newer), ",".join(older), ""]))

    run_batch(lake, source, "dupes")

    target = lake.table("order_tracking").to_pylist()
    assert [(r["tracking_num"], r["status"]) for r in target] == [(row[0], "DELIVERED")]
    (log,) = log_rows(lake)
    assert (log["rows_read"], log["rows_inserted"], log["rows_unchanged"], log["rows_superseded"]) == (4, 1, 0, 3)


def tied_files(samples: list[Path], folder: Path, dataset: str) -> dict[str, Path]:
    """Two files of one row each, `original` and `correction`: the first sample's parcel at one instant with other
    statuses (a correction sent with the original's timestamp). The original's row wins the tie: its text sorts last."""
    header, first_row = samples[0].read_text(encoding="utf-8").splitlines()[:2]
    row = first_row.split(",")
    files = {}
    for name, status in (("original", "IN_TRANSIT"), ("correction", "DELIVERED")):
        files[name] = folder / name / f"{dataset}_2025_03_03.csv"
        files[name].parent.mkdir()
        fields = [*row[:2], status, "2025-03-03T10:00:00Z", *row[4:]]
        files[name].write_text(f"{header}\n{','.join(fields)}\n", encoding="utf-8")
    return files


@pytest.mark.parametrize("dataset", ["order_tracking", "parcel_history"])
def test_a_tie_across_files_resolves_the_same_in_either_order(
    spark: SparkSession, tmp_path: Path, samples: list[Path], test_contracts: Path, dataset: str
) -> None:
    # parcel_history: the same columns kept as SCD2, where the tie is two versions of one instant.
    extra = {"contracts_dir": str(test_contracts)} if dataset == "parcel_history" else {}
    files = tied_files(samples, tmp_path, dataset)

    outcomes = []
    for order in (("original", "correction"), ("correction", "original")):
        lake = Lake(tmp_path / f"{order[0]}-first", spark)
        for name in order:
            run_batch(lake, files[name], name, dataset=dataset, **extra)
        target = lake.table(dataset).to_pylist()
        outcomes.append(([(r["tracking_num"], r["status"]) for r in target], log_rows(lake)[-1]))

    (first_target, first_log), (second_target, second_log) = outcomes
    # Within one file the row whose JSON text sorts last wins a tie; across files the same rule.
    parcel = samples[0].read_text(encoding="utf-8").splitlines()[1].split(",")[0]
    assert first_target == second_target == [(parcel, "IN_TRANSIT")]
    assert first_log["rows_tied"] == second_log["rows_tied"] == 1, "the tie is reported"
    # The losing row changed nothing; the winning one replaced the target's row (SCD2: its version).
    assert (first_log["rows_unchanged"], first_log["rows_updated"]) == (1, 0)
    assert (second_log["rows_unchanged"], second_log["rows_updated"]) == (0, 1)


def test_a_merge_retried_after_a_concurrent_run_won_counts_the_tie_that_run_left(
    spark: SparkSession,
    lake: Lake,
    tmp_path: Path,
    samples: list[Path],
    test_contracts: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two files of one SCD2 dataset with a version of one parcel at the same instant: the correction's run
    # commits during the original's first MERGE attempt, which then fails as Delta fails a commit that lost
    # the race, and the MERGE is retried.
    extra = {"contracts_dir": str(test_contracts)}
    files = tied_files(samples, tmp_path, "parcel_history")
    real_committed = warehouse_module.committed
    raced: list[str] = []

    def racing(action: Callable[[], T], what: str, **options: Any) -> T:
        if raced or not what.startswith("merge into"):
            return real_committed(action, what, **options)
        raced.append(what)

        def lose() -> T:
            run_batch(lake, files["correction"], "correction", dataset="parcel_history", **extra)
            raise RuntimeError("[DELTA_CONCURRENT_APPEND] Files were added by a concurrent update")

        attempts = iter([lose, action])

        def attempt() -> T:
            return next(attempts)()

        return real_committed(attempt, what, **options)

    monkeypatch.setattr(warehouse_module, "committed", racing)
    run_batch(lake, files["original"], "original", dataset="parcel_history", **extra)

    assert raced, "the original's MERGE lost a race"
    assert [r["status"] for r in lake.table("parcel_history").to_pylist()] == ["IN_TRANSIT"], "the original wins"
    logs = {log["batch_id"]: log for log in log_rows(lake)}
    assert (logs["correction"]["rows_inserted"], logs["correction"]["rows_tied"]) == (1, 0)
    # The retry replaced the correction's version of the instant: a tie won, counted as the retry found it.
    original = logs["original"]
    assert (original["rows_tied"], original["rows_updated"], original["rows_inserted"], original["rows_unchanged"]) == (
        1,
        1,
        0,
        0,
    )
    assert accounted(original) == original["rows_read"]


def test_a_retry_after_the_log_row_but_before_the_stage_was_released_is_logged_skipped(
    spark: SparkSession, lake: Lake, samples: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    arguments = task_arguments(lake, samples[0], "b1", run_id="41")  # the bundle passes {{job.run_id}}
    assert stage_load.main(arguments) == 0

    def lost(*_: object) -> None:
        raise RuntimeError("lost the executor")

    def killed(*_: object) -> None:
        raise RuntimeError("killed at the task's timeout while releasing the stage")

    with monkeypatch.context() as patch:
        patch.setattr(target_load, "load_target", lost)
        assert target_load.main(arguments) != 0  # attempt 1 fails before it merges
    # Attempt 2 merges and logs, then dies before the stage rows are released.
    with monkeypatch.context() as patch:
        patch.setattr(target_load, "release_stage", killed)
        assert target_load.main(arguments) == 0
    assert lake.table("order_tracking_stage").num_rows > 0
    target_before = lake.table("order_tracking").sort_by("tracking_num")

    assert target_load.main(arguments) == 0  # the task's retry

    assert lake.table("order_tracking").sort_by("tracking_num").equals(target_before)
    failed, merged, retry = log_rows(lake)
    # One row per attempt, each with the run and its attempt in it (Databricks retries within the run id).
    assert [(r["status"], r["run_id"], r["attempt"]) for r in (failed, merged, retry)] == [
        ("FAILED", 41, 1),
        ("SUCCEEDED", 41, 2),
        ("SKIPPED", 41, 3),
    ]
    assert merged["status"] == "SUCCEEDED"
    assert int(merged["rows_inserted"]) > 0  # type: ignore[call-overload]
    # Not a second SUCCEEDED run of zeros, which a report of each batch's newest run would show.
    assert (retry["status"], retry["rows_read"], retry["rows_inserted"]) == ("SKIPPED", None, None)
    assert "these stage rows were merged and logged" in str(retry["details"])
    assert lake.table("order_tracking_stage").num_rows == 0, "the retry releases what the attempt left"


def test_the_same_batch_twice_changes_nothing(spark: SparkSession, lake: Lake, samples: list[Path]) -> None:
    run_batch(lake, samples[0], "b1")
    run_batch(lake, samples[1], "b2")
    target_before = lake.table("order_tracking").sort_by("tracking_num")

    run_batch(lake, samples[1], "b2")

    assert lake.table("order_tracking").sort_by("tracking_num").equals(target_before)
    assert lake.table("order_tracking_stage").num_rows == 0
    assert lake.table("order_tracking_rejects").num_rows == 6
    rerun = log_rows(lake)[-1]
    assert (rerun["batch_id"], rerun["rows_read"], rerun["rows_inserted"], rerun["rows_updated"]) == ("b2", 120, 0, 0)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"keys": ("order_id",)}, "filegate.keys: the table has 'tracking_num', the contract says 'order_id'"),
        ({"scd_type": 2}, "filegate.scd_type: the table has '1', the contract says '2'"),
        ({"sequence_by": "expected_delivery_date"}, "filegate.sequence_by: the table has 'status_ts'"),
    ],
    ids=["keys", "scd_type", "sequence_by"],
)
def test_a_target_whose_contract_changed_its_keys_type_or_sequence_is_refused_and_keeps_the_stage(
    spark: SparkSession, lake: Lake, samples: list[Path], change: dict[str, object], named: str
) -> None:
    run_batch(lake, samples[0], "b1")
    assert stage_load.main(task_arguments(lake, samples[1], "b2")) == 0
    before = lake.table("order_tracking").sort_by("tracking_num")

    # Its MERGE would match other rows than the ones it wrote: refused before it starts, naming why.
    with pytest.raises(TargetDefinitionChanged, match=re.escape(named)):
        load_target(lake.warehouse(), replace(ORDER_TRACKING, **change), "b2")

    assert lake.table("order_tracking").sort_by("tracking_num").equals(before)
    assert {r["_batch_id"] for r in lake.staged("order_tracking")} == {"b2"}, "kept for a load into a new target"


def test_restaging_one_batch_leaves_other_batches_alone(spark: SparkSession, lake: Lake, samples: list[Path]) -> None:
    assert stage_load.main(task_arguments(lake, samples[0], "a")) == 0
    assert stage_load.main(task_arguments(lake, samples[1], "b")) == 0

    assert stage_load.main(task_arguments(lake, samples[2], "a")) == 0

    stage = lake.staged("order_tracking")
    by_batch = {batch: [r for r in stage if r["_batch_id"] == batch] for batch in ("a", "b")}
    assert len(by_batch["a"]) == len(good_rows(ORDER_TRACKING, [samples[2]]))
    assert len(by_batch["b"]) == len(good_rows(ORDER_TRACKING, [samples[1]]))


@pytest.mark.parametrize("second", [0, 2], ids=["same-file", "a-file-without-rejects"])
def test_staging_a_batch_again_replaces_only_the_stage_s_own_rejects(
    spark: SparkSession, lake: Lake, samples: list[Path], tmp_path: Path, second: int
) -> None:
    assert stage_load.main(task_arguments(lake, samples[0], "a")) == 0
    rejects = lake.location.name("order_tracking_rejects")
    # A pipeline's validate quarantines rows of the batch beside the stage's rejects.
    quarantined = spark.table(rejects).limit(1).withColumn("_rejected_by", F.lit("validate"))
    lake.warehouse().append("order_tracking_rejects", quarantined)
    clean = tmp_path / samples[0].name  # the same day, with no bad row
    with clean.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=ORDER_TRACKING.column_names)
        writer.writeheader()
        writer.writerows(good_rows(ORDER_TRACKING, [samples[0]])[:5])

    assert stage_load.main(task_arguments(lake, [samples[0], clean][second // 2], "a")) == 0

    by = [row["_rejected_by"] for row in spark.table(rejects).collect()]
    assert by.count("validate") == 1, "validate's quarantined row stays"
    assert by.count("stage") == (len(expected_rejects(ORDER_TRACKING, [samples[0]])) if second == 0 else 0)


def test_a_stage_table_of_the_earlier_layout_is_migrated_and_its_batch_in_flight_still_merges(
    spark: SparkSession, lake: Lake, samples: list[Path]
) -> None:
    first, second = samples[0], samples[1]
    warehouse = lake.warehouse()
    assert stage_load.main(task_arguments(lake, first, "b1")) == 0
    # Batch b1 staged by the earlier release: its good rows only, in a table without the verdict columns.
    in_flight = spark.createDataFrame(
        staged_rows(warehouse, ORDER_TRACKING, "b1").collect(), stage_schema(ORDER_TRACKING)
    )
    shutil.rmtree(lake.location.path("order_tracking_stage"))
    warehouse.ensure_table("order_tracking_stage", stage_schema(ORDER_TRACKING), partition_by=("_batch_id",))
    warehouse.replace_where("order_tracking_stage", in_flight, batch_predicate("b1"))

    assert stage_load.main(task_arguments(lake, second, "b2")) == 0  # the new release, on the old table
    assert target_load.main(task_arguments(lake, first, "b1")) == 0
    assert target_load.main(task_arguments(lake, second, "b2")) == 0

    columns = set(lake.table("order_tracking_stage").column_names)
    assert {"reason", "rules", "raw_line"} <= columns, "the stage was migrated in place"
    assert target_status(lake) == latest_status(ORDER_TRACKING, [first, second])
    b1_log = next(row for row in log_rows(lake) if row["batch_id"] == "b1")
    assert b1_log["rows_inserted"] == len(latest_status(ORDER_TRACKING, [first]))


def test_a_processing_log_of_an_earlier_release_gets_the_run_and_attempt_columns_before_they_are_read(
    spark: SparkSession, lake: Lake, samples: list[Path]
) -> None:
    from pyspark.sql.types import StructType

    from spark_jobs.processing_log import SCHEMA

    # A log the releases before the batch job made: no run_id or attempt. stage_load logs nothing on success,
    # so target_load is the first to read them.
    earlier = StructType([f for f in SCHEMA.fields if f.name not in ("run_id", "attempt", "pipeline", "details")])
    lake.warehouse().ensure_table("processing_log", earlier)

    run_batch(lake, samples[0], "b1", run_id="5")

    [logged] = log_rows(lake)
    assert (logged["status"], logged["run_id"], logged["attempt"]) == ("SUCCEEDED", 5, 1)


def test_a_file_with_more_bad_rows_than_its_contract_allows_fails_and_merges_nothing(
    spark: SparkSession, lake: Lake, tmp_path: Path, samples: list[Path]
) -> None:
    # The function samples only the file's head: bad rows past it reach the job, which judges them all.
    run_batch(lake, samples[0], "good")
    target_before = lake.table("order_tracking").sort_by("tracking_num")
    header, *rows = samples[1].read_text(encoding="utf-8").splitlines()
    broken = [row.replace(",UPS,", ",ACME,").replace(",DHL,", ",ACME,") for row in rows[:20]]
    broken = [row if ",ACME," in row else row.split(",", 1)[1] for row in broken]
    source = tmp_path / samples[1].name
    good = [row for row in rows[20:] if row_problem(ORDER_TRACKING, next(csv.reader([row]))) is None][:20]
    source.write_text("\n".join([header, *good, *broken]) + "\n", encoding="utf-8")
    arguments = task_arguments(lake, source, "half-bad")

    assert stage_load.main(arguments) == 1
    # A repair that runs target_load alone merges nothing, and does not log the file as loaded.
    assert target_load.main(arguments) == 1

    assert lake.table("order_tracking").sort_by("tracking_num").equals(target_before)
    rejects = {r["raw_line"]: r["reason"] for r in lake.table("order_tracking_rejects").to_pylist()}
    expected = expected_rejects(ORDER_TRACKING, [source])
    assert set(expected) == set(broken)
    assert {line: rejects[line] for line in broken} == expected
    assert any("carrier value 'ACME' is not one of" in reason for reason in expected.values())
    assert any("fields, expected 13" in reason for reason in expected.values())
    staging, repair = [row for row in log_rows(lake) if row["batch_id"] == "half-bad"]
    assert (staging["task"], staging["status"], staging["rows_read"], staging["rows_rejected"]) == (
        "stage_load",
        "FAILED",
        40,
        20,
    )
    assert "TooManyBadRows: 20 of 40 rows of the file broke a rule, more than order_tracking's" in staging["error"]
    assert (repair["task"], repair["status"]) == ("target_load", "FAILED")
    assert "its stage_load failed (TooManyBadRows: 20 of 40" in repair["error"]
    assert lake.staged("order_tracking") == []


def test_bad_rows_exactly_at_the_allowed_share_stage_and_one_more_is_refused() -> None:
    # 29 of 100 is 0.29 exactly, though 0.29 * 100 is 28.999999999999996 in floating point.
    contract = replace(ORDER_TRACKING, max_bad_row_ratio=0.29)

    stage_load.refuse_bad_share(contract, StageCounts(staged=71, rejected=29))
    with pytest.raises(stage_load.TooManyBadRows, match=r"30 of 100 rows .* max_bad_row_ratio \(29%\) allows"):
        stage_load.refuse_bad_share(contract, StageCounts(staged=70, rejected=30))
    # A limit below one percent is named as it is, not rounded to 0%.
    with pytest.raises(stage_load.TooManyBadRows, match=r"max_bad_row_ratio \(0\.5%\) allows"):
        stage_load.refuse_bad_share(replace(ORDER_TRACKING, max_bad_row_ratio=0.005), StageCounts(198, 2))


def test_a_file_with_the_wrong_header_fails_and_is_logged(
    spark: SparkSession, lake: Lake, bad_sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = stage_load.main(task_arguments(lake, bad_sample, "bad"))

    assert code == 1
    assert "does not list the columns" in capsys.readouterr().err
    (log,) = log_rows(lake)
    assert (log["status"], log["task"], log["batch_id"]) == ("FAILED", "stage_load", "bad")
    assert "HeaderMismatch" in log["error"]


def test_a_failing_target_load_is_logged_with_its_error_and_keeps_the_stage(
    spark: SparkSession, lake: Lake, samples: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = task_arguments(lake, samples[0], "b1")
    assert stage_load.main(arguments) == 0
    # A target created by someone else with a sequence column of another type: missing columns are
    # added in place, but a timestamp cannot be stored in a boolean column, so the MERGE fails.
    lake.warehouse().ensure_table(
        "order_tracking",
        StructType([StructField("tracking_num", StringType()), StructField("status_ts", BooleanType())]),
    )
    capsys.readouterr()

    code = target_load.main(arguments)

    assert code == 1
    err = capsys.readouterr().err
    log = log_rows(lake)[-1]
    assert (log["status"], log["task"], log["batch_id"]) == ("FAILED", "target_load", "b1")
    assert log["error"]
    assert f"target_load failed for batch b1 ({samples[0]}): {log['error']}" in err
    assert (log["rows_read"], log["rows_inserted"], log["rows_updated"]) == (None, None, None)
    assert lake.table("order_tracking").num_rows == 0
    assert len(lake.staged("order_tracking")) == len(good_rows(ORDER_TRACKING, [samples[0]])), "kept for the retry"


class Killed(BaseException):
    """The task's process dying: nothing in the task catches it, so nothing after it runs (no log row either)."""


class KilledAfterFirstCommit(Warehouse):
    """A warehouse whose process dies right after the first table of a batch committed, before the second."""

    def replace_batch(self, table: str, rows: DataFrame, batch_id: str) -> None:
        super().replace_batch(table, rows, batch_id)
        raise Killed(f"killed after committing batch {batch_id} to {table}")


def test_a_crash_between_the_stage_and_rejects_commits_converges_on_retry(
    spark: SparkSession, lake: Lake, samples: list[Path]
) -> None:
    first, day = samples[0], datetime(2025, 3, 3, tzinfo=UTC)
    batch = Batch("order_tracking", "b1", str(first), day)
    with pytest.raises(Killed):
        stage_file(spark, KilledAfterFirstCommit(spark, lake.location), ORDER_TRACKING, str(first), batch)
    # Half staged: the stage commit landed, the rejects commit never happened.
    assert len(lake.staged("order_tracking")) == len(good_rows(ORDER_TRACKING, [first]))
    assert lake.table("order_tracking_rejects").num_rows == 0

    arguments = task_arguments(lake, first, "b1")
    assert stage_load.main(arguments) == 0  # the job's retry of the task

    stage = lake.table("order_tracking_stage").to_pylist()
    assert len(lake.staged("order_tracking")) == len(good_rows(ORDER_TRACKING, [first]))
    assert len(stage) == len(good_rows(ORDER_TRACKING, [first])) + 3, "the retry replaced the batch, nothing doubled"
    assert {row["_batch_id"] for row in stage} == {"b1"}
    rejects = lake.table("order_tracking_rejects").to_pylist()
    assert {row["raw_line"]: row["reason"] for row in rejects} == expected_rejects(ORDER_TRACKING, [first])
    assert len(rejects) == 3
    assert target_load.main(arguments) == 0
    assert target_status(lake) == latest_status(ORDER_TRACKING, [first])
    (log,) = log_rows(lake)
    assert (log["rows_read"], log["rows_rejected"]) == (120, 3)
    assert accounted(log) == log["rows_read"]


def stage_then_kill_after_the_merge(arguments: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage the batch, then run target_load until its MERGE committed: killed before its log row."""
    assert stage_load.main(arguments) == 0

    def killed(*_: object) -> None:
        raise Killed("killed after the MERGE committed, before its log row")

    with monkeypatch.context() as patch:
        patch.setattr(target_load, "append_run", killed)
        with pytest.raises(Killed):
            target_load.main(arguments)


def test_a_target_load_killed_after_its_merge_logs_that_merges_counts_on_retry(
    spark: SparkSession, lake: Lake, samples: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_batch(lake, samples[0], "b1")
    before = target_status(lake)
    arguments = task_arguments(lake, samples[1], "b2")
    stage_then_kill_after_the_merge(arguments, monkeypatch)
    after = target_status(lake)
    # Other batches merge before the retry: the killed MERGE is no longer among the newest commits read
    # first (one here, twenty in a deployment), so the retry reads further back, to the batch's staging.
    monkeypatch.setattr(warehouse_module, "_HISTORY_DEPTH", 1)
    run_batch(lake, samples[2], "b3")
    later = target_status(lake)
    assert target_load.main(arguments) == 0  # the job's retry of the task: its MERGE finds nothing to change

    assert target_status(lake) == later
    log = log_rows(lake)[-1]
    inserted = len(after.keys() - before.keys())
    updated = sum(after[key] != version for key, version in before.items())
    assert inserted > 0
    assert updated > 0
    assert (log["batch_id"], log["status"], log["rows_inserted"], log["rows_updated"]) == (
        "b2",
        "SUCCEEDED",
        inserted,
        updated,
    )
    assert accounted(log) == log["rows_read"]
    # Run again once logged, the batch changes nothing and says so.
    run_batch(lake, samples[1], "b2")
    rerun = log_rows(lake)[-1]
    assert (rerun["rows_inserted"], rerun["rows_updated"]) == (0, 0)


def test_an_scd2_target_load_killed_after_its_merge_logs_that_merges_versions_on_retry(
    spark: SparkSession,
    lake: Lake,
    tmp_path: Path,
    samples: list[Path],
    test_contracts: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = parcel_files(samples, tmp_path)
    extra = {"contracts_dir": str(test_contracts)}
    run_batch(lake, files[2], "d3", dataset="parcel_history", **extra)
    run_batch(lake, files[0], "d1", dataset="parcel_history", **extra)
    # The middle day last: its versions re-bound the ones before them.
    arguments = task_arguments(lake, files[1], "d2", "parcel_history", **extra)
    stage_then_kill_after_the_merge(arguments, monkeypatch)
    merge = spark.sql(f"DESCRIBE HISTORY {lake.location.name('parcel_history')} LIMIT 1").first()
    assert merge is not None
    assert merge["operation"] == "MERGE"
    metrics = merge["operationMetrics"]

    assert target_load.main(arguments) == 0  # the retry: its MERGE finds nothing to change

    log = log_rows(lake)[-1]
    versions = json.loads(str(log["details"]))["versions"]
    assert versions == {
        "inserted": int(metrics["numTargetRowsInserted"]),
        "updated": int(metrics["numTargetRowsUpdated"]),
        "deleted": 0,
    }
    assert versions["updated"] > 0, "the killed MERGE re-bounded versions"
    # The rows are counted as that MERGE's: each opened one of its versions or changed nothing.
    assert (log["batch_id"], log["status"], log["rows_inserted"], log["rows_updated"]) == (
        "d2",
        "SUCCEEDED",
        versions["inserted"],
        0,
    )
    assert accounted(log) == log["rows_read"]


def test_merge_counts_are_logged_right_when_auto_compaction_commits_after_the_merge(
    spark: SparkSession, lake: Lake, samples: list[Path]
) -> None:
    run_batch(lake, samples[0], "b1")
    before = target_status(lake)
    target = lake.location.name("order_tracking")
    # Databricks' auto compaction: the MERGE statement itself commits an OPTIMIZE right after its own
    # commit, so the table's last commit is no longer the MERGE when the statement returns.
    spark.sql(f"ALTER TABLE {target} SET TBLPROPERTIES ('delta.autoOptimize.autoCompact' = 'true')").collect()
    spark.conf.set("spark.databricks.delta.autoCompact.minNumFiles", "2")
    try:
        run_batch(lake, samples[1], "b2")
    finally:
        spark.conf.unset("spark.databricks.delta.autoCompact.minNumFiles")

    operations = [row["operation"] for row in spark.sql(f"DESCRIBE HISTORY {target}").collect()]
    assert operations[:2] == ["OPTIMIZE", "MERGE"], "a compaction commit followed the MERGE"
    after = target_status(lake)
    inserted = len(after.keys() - before.keys())
    updated = sum(after[key] != version for key, version in before.items())
    assert inserted > 0
    assert updated > 0
    log = log_rows(lake)[-1]
    assert (log["batch_id"], log["rows_inserted"], log["rows_updated"]) == ("b2", inserted, updated)
    assert accounted(log) == log["rows_read"]


def test_unknown_dataset_and_bad_batch_id_are_refused(
    spark: SparkSession, lake: Lake, samples: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert stage_load.main(task_arguments(lake, samples[0], "x", dataset="nope")) == 1
    assert target_load.main(task_arguments(lake, samples[0], "a\nb")) == 2
    assert target_load.main(task_arguments(lake, samples[0], "a'b")) == 2

    err = capsys.readouterr().err
    assert "unknown dataset 'nope'" in err
    assert '--batch-id must be 1 to 200 characters among letters, digits and . _ : -, got "a\'b"' in err


def versions_by_key(contract: Contract, files: Iterable[Path]) -> dict[str, list[datetime]]:
    """Per key, every distinct status_ts in the files, in time order: the history SCD2 must keep."""
    found: dict[str, set[datetime]] = {}
    for row in good_rows(contract, files):
        found.setdefault(row["tracking_num"], set()).add(utc_timestamp(row["status_ts"]))
    return {key: sorted(times) for key, times in found.items()}


def parcel_files(samples: list[Path], folder: Path) -> list[Path]:
    """The first three sample days as files of the test-only SCD2 dataset `parcel_history`."""
    files = []
    for path in samples[:3]:
        files.append(folder / path.name.replace("order_tracking", "parcel_history"))
        shutil.copyfile(path, files[-1])
    return files


def test_scd2_keeps_history_out_of_order_and_repeated(
    spark: SparkSession, lake: Lake, tmp_path: Path, samples: list[Path], test_contracts: Path
) -> None:
    contract = load_contracts(test_contracts)["parcel_history"]
    files = parcel_files(samples, tmp_path)
    extra = {"contracts_dir": str(test_contracts)}

    # Newest first, then an older one, then the newest again: history must come out the same.
    for path, batch in ((files[2], "d3"), (files[0], "d1"), (files[1], "d2"), (files[2], "d3")):
        run_batch(lake, path, batch, dataset="parcel_history", **extra)

    expected = versions_by_key(contract, files)
    rows = lake.table("parcel_history").to_pylist()
    assert_described(lake, contract)
    assert lake.comments("parcel_history")[1]["is_current"] == "Whether this is the key's current version."
    assert len(rows) == sum(len(times) for times in expected.values())
    for key, times in expected.items():
        history = sorted((r for r in rows if r["tracking_num"] == key), key=lambda r: r["effective_from"])
        assert [r["effective_from"] for r in history] == times
        assert [r["effective_to"] for r in history] == [*times[1:], None]
        assert [r["is_current"] for r in history] == [False] * (len(times) - 1) + [True]
        assert all(r["status_ts"] == r["effective_from"] for r in history)
    logs = log_rows(lake)
    repeat = logs[-1]
    assert (repeat["rows_inserted"], repeat["rows_updated"]) == (0, 0)
    # Every row read is counted once, also when a day arriving late splits versions the target holds: the
    # versions it re-bounds are the MERGE's doing, not a row's, and are logged apart.
    for log in logs:
        assert accounted(log) == log["rows_read"], log
    versions = [json.loads(str(log["details"]))["versions"] for log in logs]
    assert sum(v["inserted"] for v in versions) == len(rows)
    assert versions[0]["updated"] == 0, "the first day went into an empty target"
    assert versions[2]["updated"] > 0, "the middle day, arriving last, re-bounded the versions before its own"
    assert versions[3] == {"inserted": 0, "updated": 0, "deleted": 0}
    assert [(log["rows_updated"], log["rows_tied"]) for log in logs] == [(0, 0)] * 4, "no tie, no version replaced"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"delete_when": "status = 'CANCELLED'"}, "delete_when"),
        ({"scd_type": 2, "track_history_except": ("carrier",)}, "track_history_except"),
        ({"scd_type": 2, "track_history": ("status",)}, "track_history"),
        ({"load": "snapshot"}, 'load = "snapshot"'),
    ],
)
def test_the_ingest_job_refuses_what_only_the_batch_job_applies_before_writing(
    lake: Lake, samples: list[Path], change: dict[str, object], named: str
) -> None:
    contract = replace(load_contracts()["order_tracking"], **change)

    arguments = parse_arguments(task_arguments(lake, samples[0], "b1"), "stage_load")

    with pytest.raises(TargetLoadError, match=f"{named} applied by the batch job only"):
        stage_load.stage(lake.spark, lake.warehouse(), contract, arguments, datetime.now(UTC))
    with pytest.raises(TargetLoadError, match=f"{named} applied by the batch job only"):
        load_target(lake.warehouse(), contract, "b1")

    assert not lake.location.path(contract.target).exists()
    assert not lake.location.path(f"{contract.name}_stage").exists()


def test_rows_a_warn_check_flagged_merge_and_are_counted_in_the_log(
    spark: SparkSession, lake: Lake, tmp_path: Path, samples: list[Path]
) -> None:
    # The stage rows name the warn checks a row failed, and they are released once merged: the log keeps the count.
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    shipped = (BUILTIN_DATASETS / "order_tracking.toml").read_text(encoding="utf-8")
    check = '\n[[checks]]\nname = "light"\nexpr = "weight_kg IS NULL OR weight_kg < 20"\naction = "warn"\n'
    (contracts / "order_tracking.toml").write_text(shipped + check, encoding="utf-8")
    heavy = [
        row for row in good_rows(ORDER_TRACKING, [samples[0]]) if row["weight_kg"] and float(row["weight_kg"]) >= 20
    ]

    run_batch(lake, samples[0], "warned", contracts_dir=str(contracts))

    (log,) = log_rows(lake)
    assert heavy
    assert json.loads(str(log["details"])) == {"warnings": {"order_tracking.check.light": len(heavy)}}
    assert len(target_status(lake)) == len(latest_status(ORDER_TRACKING, [samples[0]]))


# A contract whose every column is a word Spark SQL reserves: the key, the sequence, and a `user` that unquoted
# reads as the current user where the words are enforced (RESERVED_KEYWORDS).
RESERVED_WORDS = """
name = "reserved_words"
file_pattern = "reserved_words_{yyyy}_{mm}_{dd}.csv"
keys = ["order"]
sequence_by = "end"
scd_type = SCD

[[columns]]
name = "order"
type = "string"
nullable = false

[[columns]]
name = "end"
type = "timestamp"
nullable = false

[[columns]]
name = "user"
type = "string"

[[columns]]
name = "group"
type = "long"
"""


@pytest.mark.parametrize("scd_type", [1, 2])
def test_columns_named_like_reserved_words_merge_where_the_session_enforces_them(
    reserved_keywords: SparkSession, lake: Lake, tmp_path: Path, scd_type: int
) -> None:
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "reserved_words.toml").write_text(RESERVED_WORDS.replace("SCD", str(scd_type)), encoding="utf-8")
    header = "order,end,user,group\n"
    first = tmp_path / "reserved_words_2025_03_03.csv"
    first.write_text(header + "o1,2025-03-03T09:00:00Z,ann,1\no2,2025-03-03T09:00:00Z,bob,2\n", encoding="utf-8")
    # o1 changes, o2's row is older than the target's (late), o3 is new.
    second = tmp_path / "reserved_words_2025_03_04.csv"
    second.write_text(
        header + "o1,2025-03-04T09:00:00Z,cy,3\no2,2025-03-02T09:00:00Z,dee,4\no3,2025-03-04T09:00:00Z,eve,5\n",
        encoding="utf-8",
    )

    run_batch(lake, first, "r1", dataset="reserved_words", contracts_dir=str(contracts))
    run_batch(lake, second, "r2", dataset="reserved_words", contracts_dir=str(contracts))

    day = {d: datetime(2025, 3, d, 9, tzinfo=UTC) for d in (2, 3, 4)}
    rows = lake.table("reserved_words").to_pylist()
    if scd_type == 1:
        found = sorted((r["order"], r["end"], r["user"], r["group"]) for r in rows)
        assert found == [("o1", day[4], "cy", 3), ("o2", day[3], "bob", 2), ("o3", day[4], "eve", 5)]
    else:
        found = sorted((r["order"], r["user"], r["effective_from"], r["effective_to"], r["is_current"]) for r in rows)
        assert found == [
            ("o1", "ann", day[3], day[4], False),
            ("o1", "cy", day[4], None, True),
            ("o2", "bob", day[3], None, True),
            ("o2", "dee", day[2], day[3], False),
            ("o3", "eve", day[4], None, True),
        ]
    assert [(log["rows_inserted"], log["rows_updated"]) for log in log_rows(lake)] == (
        [(2, 0), (1, 1)] if scd_type == 1 else [(2, 0), (3, 0)]
    )
