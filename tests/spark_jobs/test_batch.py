"""When a batch counts as complete, from its processing_log rows (`spark_jobs.batch.completion`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from spark_jobs.batch import FIRST_TASK, LAST_TASK, Completion, LogRow, completion

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
