"""The demo's verdict on the ingest runs' tables and its processing_log section, on Delta tables delta-rs writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from filegate.ingest import ARCHIVED, IDENTICAL, Outcome
from filegate.tables import PROCESSING_LOG
from local_world.demo._flow import FileResult, PlannedUpload
from local_world.demo._report import render_files, render_processing_log, table_problems
from local_world.inputs import csv_bytes, tracking_row
from local_world.jobs_api import local_table
from tests.local_world.test_jobs_api import PROCESSING_LOG_SCHEMA


def loaded(tmp_path: Path, run_id: int, rows: int) -> FileResult:
    path = tmp_path / f"order_tracking_2025_03_0{run_id % 10}.csv"
    path.write_bytes(csv_bytes([tracking_row(n) for n in range(rows)]))
    outcome = Outcome(ARCHIVED, source=path.name, dataset="order_tracking", run_id=run_id)
    return FileResult(PlannedUpload(path, ARCHIVED), [outcome])


def log(warehouse: Path, *rows: dict[str, object]) -> None:
    schema = PROCESSING_LOG_SCHEMA.append(pa.field("source_file", pa.string()))
    write_deltalake(str(local_table(warehouse, PROCESSING_LOG)), pa.Table.from_pylist(list(rows), schema=schema))


def target(warehouse: Path, keys: int) -> None:
    rows = pa.Table.from_pylist([{"tracking_num": f"1Z{n}"} for n in range(keys)])
    write_deltalake(str(local_table(warehouse, "order_tracking")), rows)


def test_a_run_that_succeeded_without_loading_its_file_is_a_problem_of_the_demo(tmp_path: Path) -> None:
    # A target_load that ended 0 and wrote nothing: the run SUCCEEDED, and the demo said "all as expected".
    warehouse = tmp_path / "warehouse"
    first, second = loaded(tmp_path, 1001, 4), loaded(tmp_path, 1002, 3)
    succeeded = {1001, 1002, 1003}

    assert table_problems(warehouse, [first, second], succeeded) == [
        f"  - {first.upload.path.name}: processing_log holds 0 SUCCEEDED target_load rows of run 1001, expected 1",
        f"  - {second.upload.path.name}: processing_log holds 0 SUCCEEDED target_load rows of run 1002, expected 1",
    ]

    log(
        warehouse,
        {"run_id": 1001, "task": "target_load", "status": "SUCCEEDED", "rows_read": 4, "rows_inserted": 4},
        {"run_id": 1002, "task": "target_load", "status": "SUCCEEDED", "rows_read": 2, "rows_inserted": 1},
    )
    assert table_problems(warehouse, [first, second], succeeded) == [
        f"  - {second.upload.path.name}: 2 rows read, the file has 3",
        "  - order_tracking: no target table, though its runs logged 5 rows inserted",
    ]

    target(warehouse, 6)
    assert table_problems(warehouse, [first], succeeded) == [
        "  - order_tracking: 6 rows in the target, its runs logged 4 inserted"
    ]
    # A file whose row is missing says so; the count of the target, then unknown, says nothing more.
    assert table_problems(warehouse, [first, loaded(tmp_path, 1003, 3)], succeeded) == [
        "  - order_tracking_2025_03_03.csv: processing_log holds 0 SUCCEEDED target_load rows of run 1003, expected 1"
    ]


def test_only_a_file_s_own_successful_run_is_held_to_its_tables(tmp_path: Path) -> None:
    # A re-upload found identical names the first file's run; a failed run is run_problems' to report.
    warehouse = tmp_path / "warehouse"
    first = loaded(tmp_path, 1001, 4)
    again = FileResult(first.upload, [replace(first.outcomes[0], status=IDENTICAL)])
    log(warehouse, {"run_id": 1001, "task": "target_load", "status": "SUCCEEDED", "rows_read": 4, "rows_inserted": 4})
    target(warehouse, 4)

    assert table_problems(warehouse, [first, again], {1001}) == []
    assert table_problems(warehouse, [loaded(tmp_path, 1002, 3)], {1001}) == []


def test_the_processing_log_section_shows_these_runs_rows_only(tmp_path: Path) -> None:
    # The batch job's rows share the table: 44 of them filled the section, and pushed these past its 50 rows.
    warehouse = tmp_path / "warehouse"
    log(
        warehouse,
        {"run_id": 1001, "task": "target_load", "status": "SUCCEEDED", "source_file": "a/order_tracking_x.csv"},
        {"run_id": 1016, "task": "stage_members", "status": "SUCCEEDED", "source_file": "b/customers_y.csv"},
    )

    shown = render_processing_log(warehouse, {1001})

    assert "order_tracking_x.csv" in shown
    assert "customers_y.csv" not in shown
    assert render_processing_log(warehouse, {1002}) == "  (empty)"


def test_a_long_reason_does_not_push_the_run_of_every_file_past_the_terminal_s_width(tmp_path: Path) -> None:
    # A late member's reason is 200 characters: with RUN after WHERE / WHY, every row with a run was as wide.
    first = loaded(tmp_path, 1001, 2)
    path = "archive/shipping/2025/01/16/shipping_2025_01_16__vb82ae08dff3b.csv"
    reason = f"after the seal (revision 1): {path}; held, the sealed batch is unchanged " + "x" * 100
    late = FileResult(first.upload, [replace(first.outcomes[0], status="late_member", reasons=(reason,))])

    lines = render_files([first, late]).splitlines()

    assert lines[1].split() == [first.upload.path.name, ARCHIVED, "1001"]
    assert len(lines[1]) < 60
    assert lines[2].split()[:3] == [first.upload.path.name, "late_member", "1001"]
    assert lines[3].strip() == f"- {reason}"
