"""When a batch counts as complete (`spark_jobs.batch.completion`), and which revision of it may run."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from filegate.jobs import pipeline_batch_id
from local_world.inputs import csv_bytes, tracking_row
from spark_jobs import batch_derive, batch_merge, batch_stage, batch_validate
from spark_jobs.batch import (
    FIRST_TASK,
    LAST_TASK,
    VALIDATE_TASK,
    Completion,
    LogRow,
    Manifest,
    Member,
    Staging,
    completion,
    newest_staging,
    newest_validation,
    staging_details,
    unstaged_members,
)
from tests.spark_jobs.conftest import TEST_CONTRACTS, Lake

T0 = datetime(2026, 12, 2, 9, 0)
BATCH = "shop-2025-01-15-r1"


def row(task: str, minute: int, status: str = "SUCCEEDED", *, run: int | None = 1, attempt: int | None = 1) -> LogRow:
    """A row that started at `minute` and ended a second later; the first task's rows name a member."""
    started = T0 + timedelta(minutes=minute)
    dataset = "orders" if task == FIRST_TASK else None
    return LogRow(BATCH, task, run, attempt, status, dataset, started, started + timedelta(seconds=1))


def test_a_batch_is_in_flight_until_its_last_task_logged_only_successes_after_the_staging() -> None:
    staged = [row(FIRST_TASK, 0), row(FIRST_TASK, 1)]
    assert completion([]) is None
    assert completion(staged) is None
    assert completion([*staged, row(LAST_TASK, 5), row(LAST_TASK, 6)]) == Completion(1, 1)


def test_an_attempt_that_logged_tables_then_failed_leaves_the_batch_in_flight_until_one_succeeds() -> None:
    # The tables built before the failure, then the task's FAILED row: it started first and ended last.
    task_row = replace(row(LAST_TASK, 4, "FAILED"), ended_at=T0 + timedelta(minutes=7))
    failed = [row(FIRST_TASK, 0), row(LAST_TASK, 5), row(LAST_TASK, 6), task_row]
    assert completion(failed) is None
    retried = [*failed, row(LAST_TASK, 9, attempt=2)]
    assert completion(retried) == Completion(1, 2)


def test_rows_in_the_hour_the_clocks_go_back_are_ordered_by_their_instants(monkeypatch: pytest.MonkeyPatch) -> None:
    # Berlin lives 02:00 to 03:00 twice on 2026-10-25. `collect` gives a TIMESTAMP as local time, naive, and
    # marks a reading of the second such hour with fold=1; as wall-clock readings, 02:10 of the second hour
    # sorts before 02:50 of the first, although it came 20 minutes after it.
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        staged_at = datetime.fromtimestamp(datetime(2026, 10, 25, 0, 50, tzinfo=UTC).timestamp())
        built_at = datetime.fromtimestamp(datetime(2026, 10, 25, 1, 10, tzinfo=UTC).timestamp())
        rows = [
            LogRow(BATCH, FIRST_TASK, 1, 1, "SUCCEEDED", "orders", staged_at - timedelta(seconds=1), staged_at),
            LogRow(BATCH, LAST_TASK, 1, 1, "SUCCEEDED", None, built_at, built_at + timedelta(seconds=1)),
        ]
        done = completion(rows)
    finally:
        monkeypatch.undo()
        time.tzset()

    assert (staged_at, built_at) == (datetime(2026, 10, 25, 2, 50), datetime(2026, 10, 25, 2, 10))
    assert built_at.fold == 1
    assert done == Completion(1, 1)


def test_a_repair_after_completion_names_the_attempt_that_built_the_tables() -> None:
    rows = [row(FIRST_TASK, 0), row(LAST_TASK, 5), row(LAST_TASK, 9, "SKIPPED", attempt=2)]
    assert completion(rows) == Completion(1, 1)


def test_staging_again_puts_a_complete_batch_back_in_flight() -> None:
    done = [row(FIRST_TASK, 0), row(LAST_TASK, 5)]
    again = [*done, row(FIRST_TASK, 10, run=2)]
    assert completion(again) is None
    assert completion([*again, row(LAST_TASK, 15, run=2)]) == Completion(2, 1)


def test_runs_without_a_run_id_are_told_apart_by_the_order_of_their_rows() -> None:
    first = [row(FIRST_TASK, 0, run=None), row(LAST_TASK, 5, run=None)]
    again = [*first, row(FIRST_TASK, 10, run=None), row(LAST_TASK, 15, "FAILED", run=None)]
    assert completion(again) is None
    assert completion([*again, row(LAST_TASK, 20, run=None)]) == Completion(None, 1)


def test_the_verdict_that_counts_is_validate_s_newest_row_since_the_batch_was_last_staged() -> None:
    staged = [row(FIRST_TASK, 0)]
    failed = [*staged, row(VALIDATE_TASK, 2, "FAILED")]
    assert newest_validation(staged) is None
    assert newest_validation(failed) == failed[-1]
    # A repair of validate that passed (or skipped) after it: that row decides.
    passed = [*failed, row(VALIDATE_TASK, 5, attempt=2)]
    assert newest_validation(passed) == passed[-1]
    # A validate refused before it read the batch (an older revision's repair: no attempt) says nothing of it.
    refused = [*passed, row(VALIDATE_TASK, 7, "FAILED", run=9, attempt=None)]
    assert newest_validation(refused) == passed[-1]
    # Staged again: the earlier verdicts are about rows no longer there.
    assert newest_validation([*failed, row(FIRST_TASK, 10, run=2)]) is None


def test_the_newest_revision_staged_counts_failed_members_and_ignores_rows_without_one() -> None:
    def staged(minute: int, revision: int | None, status: str = "SUCCEEDED", run: int = 1) -> LogRow:
        details = None if revision is None else staging_details(revision)
        return replace(row(FIRST_TASK, minute, status, run=run), details=details)

    assert newest_staging([staged(0, None), row(LAST_TASK, 5)]) is None
    # Revision 2 failed on one member after another staged: the stage holds revision 2's rows.
    rows = [staged(0, 1), staged(10, 2, run=2), staged(10, 2, "FAILED", run=2), staged(20, 1, "FAILED", run=3)]
    assert newest_staging(rows) == Staging(2, 2)


def test_a_member_whose_newest_staging_failed_holds_the_batch_back() -> None:
    def staged(dataset: str, minute: int, status: str = "SUCCEEDED") -> LogRow:
        return replace(row(FIRST_TASK, minute, status), dataset=dataset)

    manifest = Manifest(
        "shop", date(2025, 1, 15), BATCH, 2, tuple(Member(d, f"{d}.csv", f"{d}.csv", None) for d in ("a", "b"))
    )
    revision_1 = [staged("a", 0), staged("b", 0)]

    assert unstaged_members([], manifest) == ()  # nothing staged yet: left to the other guards
    assert unstaged_members(revision_1, manifest) == ()
    # Revision 2 staged a, and b failed: b's stage holds none of the batch's rows (revision 1's were released).
    assert unstaged_members([*revision_1, staged("a", 10), staged("b", 10, "FAILED")], manifest) == ("b",)
    assert unstaged_members([*revision_1, staged("b", 10, "FAILED"), staged("b", 20)], manifest) == ()
    assert unstaged_members([staged("a", 0)], manifest) == ("b",)


DAY = date(2025, 3, 3)
TASKS = (batch_stage, batch_validate, batch_merge, batch_derive)


def parcels_revision(folder: Path, revision: int, rows: list[dict[str, str]]) -> list[str]:
    """A one-member pipeline's sealed revision of DAY, as filegate.batches writes it; the tasks' arguments."""
    member = folder / f"r{revision}" / "parcel_history_2025_03_03.csv"
    member.parent.mkdir(parents=True)
    member.write_bytes(csv_bytes(rows))
    document = {
        "pipeline": "parcels",
        "business_date": DAY.isoformat(),
        "revision": revision,
        "batch_id": pipeline_batch_id("parcels", DAY),
        "members": [{"dataset": "parcel_history", "uri": str(member), "expected_rows": len(rows)}],
    }
    manifest = member.parent / f"_sealed.r{revision}.json"
    manifest.write_text(json.dumps(document))
    return ["--manifest", str(manifest), "--pipeline", "parcels", "--batch-id", document["batch_id"]]


def parcels(lake: Lake, table: str) -> list[dict[str, Any]]:
    assert lake.spark is not None
    return [row.asDict() for row in lake.spark.table(lake.location.name(table)).collect()]


def test_a_later_revision_replaces_what_the_earlier_merged_and_the_earlier_may_not_run_after_it(
    lake: Lake, tmp_path: Path
) -> None:
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    shutil.copy(TEST_CONTRACTS / "parcel_history.toml", contracts)
    (contracts / "parcels.toml").write_text(
        'kind = "pipeline"\nname = "parcels"\ntrigger_pattern = "parcels_{yyyy}_{mm}_{dd}.json"\n'
        'members = ["parcel_history"]\n'
    )
    options = [*lake.arguments(), "--contracts-dir", str(contracts)]
    kept, corrected, dropped = tracking_row(1), tracking_row(2), tracking_row(3)
    # Revision 2 corrects parcel 2's status at the same instant and leaves parcel 3 out.
    first = parcels_revision(tmp_path, 1, [kept, corrected, dropped])
    second = parcels_revision(tmp_path, 2, [kept, {**corrected, "status": "DELIVERED"}])
    for run_id, revision in ((1, first), (2, second)):
        for task in TASKS:
            assert task.main([*revision, "--run-id", str(run_id), *options]) == 0, (run_id, task.TASK)

    target = {r["tracking_num"]: r for r in parcels(lake, "parcel_history")}
    assert {key: (r["status"], r["is_current"]) for key, r in target.items()} == {
        kept["tracking_num"]: ("IN_TRANSIT", True),
        corrected["tracking_num"]: ("DELIVERED", True),
    }
    observed = [r for r in parcels(lake, "parcel_history_observations") if r["status"] is not None]
    assert sorted(r["status"] for r in observed) == ["DELIVERED", "IN_TRANSIT"]

    # A repair of revision 1's run after revision 2 ran: refused before it stages anything.
    before = sorted(map(repr, parcels(lake, "parcel_history")))
    assert batch_stage.main([*first, "--run-id", "3", *options]) == 1

    assert sorted(map(repr, parcels(lake, "parcel_history"))) == before
    (refused,) = (r for r in parcels(lake, "processing_log") if r["run_id"] == 3)
    assert (refused["task"], refused["status"]) == ("stage_members", "FAILED")
    assert "is revision 1 of batch parcels-20250303, but revision 2 of it was staged since (run 2)" in refused["error"]
