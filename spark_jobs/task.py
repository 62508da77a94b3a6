"""What both entry points share: their arguments, and running a task so that a failure is logged."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession

from filegate import exits
from filegate.contracts import Contract, load_contracts
from filegate.errors import FilegateError
from spark_jobs.processing_log import (
    FAILED,
    CountedFailure,
    RunRecord,
    append_failing_runs,
    attempt_or_none,
    error_text,
    print_failure,
)
from spark_jobs.session import build_session
from spark_jobs.warehouse import LocalWarehouse, TableLocation, UnityCatalog, Warehouse

# A batch id is written into SQL predicates, so it keeps to characters that need no quoting rules;
# the function's ids (`filegate.jobs.batch_id`: dataset, date, hex) fit.
_MAX_BATCH_ID = 200
CONTRACTS_DIR_SETTING = "FILEGATE_CONTRACTS_DIR"
_BATCH_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{_MAX_BATCH_ID}}}")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


class TaskArgumentError(FilegateError):
    """The task was started with arguments it cannot work with."""


@dataclass(frozen=True)
class TaskArguments:
    """A task's parameters, as the job passes them."""

    source_path: str
    source_file: str
    dataset: str
    batch_id: str
    location: TableLocation
    contracts_dir: Path | None
    # The job run's id; None off the bundle (a direct call), whose rows then carry no run or attempt.
    run_id: int | None = None


def parse_arguments(argv: Sequence[str], description: str) -> TaskArguments:
    """Parse and check the task's command line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--source-path", required=True, help="The file to load (a URI, or a local path).")
    parser.add_argument("--source-file", help="The file's URI to record as lineage; defaults to --source-path.")
    parser.add_argument("--dataset", required=True, help="The dataset contract's name.")
    parser.add_argument("--batch-id", required=True, help="The run's batch id; a re-run replaces its rows.")
    add_run_argument(parser)
    add_table_arguments(parser)
    parsed = parser.parse_args(list(argv))
    batch_id = checked_batch_id(parsed.batch_id)
    for name in ("source_path", "dataset", "catalog", "schema"):
        if not getattr(parsed, name).strip():
            raise TaskArgumentError(f"--{name.replace('_', '-')} must not be empty")
    return TaskArguments(
        source_path=parsed.source_path,
        source_file=parsed.source_file or parsed.source_path,
        dataset=parsed.dataset.strip(),
        batch_id=batch_id,
        location=parsed_location(parsed),
        contracts_dir=parsed.contracts_dir,
        run_id=parsed_run_id(parsed),
    )


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    """`--run-id`: the job run's id, which processing_log records and counts attempts by (both jobs)."""
    parser.add_argument("--run-id", help="The job run's id ({{job.run_id}}), recorded in processing_log.")


def parsed_run_id(parsed: argparse.Namespace) -> int | None:
    run_id = (parsed.run_id or "").strip()
    if run_id and not (run_id.isascii() and run_id.isdigit()):
        raise TaskArgumentError(f"--run-id must be a whole number, got {parsed.run_id!r}")
    return int(run_id) if run_id else None


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
    """Where every task's tables live, and the extra contracts it reads: one spelling for both jobs."""
    parser.add_argument("--catalog", required=True, help="The Unity Catalog catalog of the tables.")
    parser.add_argument("--schema", required=True, help="The schema (in --catalog) of the tables.")
    parser.add_argument(
        "--warehouse",
        type=Path,
        help="Off Databricks: the local folder that stands in for Unity Catalog's storage; the tables are "
        "then the Delta folders <warehouse>/<catalog>/<schema>/<table>.",
    )
    # The same setting the function reads, so a dataset added there reaches the job too.
    contracts_default = os.environ.get(CONTRACTS_DIR_SETTING, "").strip()
    parser.add_argument(
        "--contracts-dir",
        type=Path,
        default=Path(contracts_default) if contracts_default else None,
        help=f"A folder of extra contracts and pipelines (default: ${CONTRACTS_DIR_SETTING}).",
    )


def checked_batch_id(raw: str) -> str:
    """The batch id, refused unless it is safe inside a SQL predicate."""
    batch_id = raw.strip()
    if not _BATCH_ID.fullmatch(batch_id):
        raise TaskArgumentError(
            f"--batch-id must be 1 to {_MAX_BATCH_ID} characters among letters, digits and . _ : -, got {raw!r}"
        )
    return batch_id


def parsed_location(parsed: argparse.Namespace) -> TableLocation:
    return table_location(parsed.catalog.strip(), parsed.schema.strip(), parsed.warehouse)


def table_location(catalog: str, schema: str, warehouse: Path | None) -> TableLocation:
    """Unity Catalog, or locally the warehouse folder; names that SQL or a path could misread are refused."""
    for flag, name in (("--catalog", catalog), ("--schema", schema)):
        if not _NAME.fullmatch(name):
            raise TaskArgumentError(f"{flag} must be a plain name (letters, digits, _ and -), got {name!r}")
    if warehouse is None:
        return UnityCatalog(catalog, schema)
    return LocalWarehouse(warehouse, catalog, schema)


def find_contract(arguments: TaskArguments) -> Contract:
    """The dataset's contract, from the built-in datasets and --contracts-dir."""
    extra = (arguments.contracts_dir,) if arguments.contracts_dir else ()
    contracts = load_contracts(*extra)
    if arguments.dataset not in contracts:
        raise TaskArgumentError(
            f"unknown dataset {arguments.dataset!r}; known: {', '.join(sorted(contracts))}. A dataset added "
            f"with {CONTRACTS_DIR_SETTING} must reach the job too: set it (or --contracts-dir) for the task, "
            "or build the contract into the wheel (filegate/datasets/) and redeploy the bundle"
        )
    return contracts[arguments.dataset]


TaskBody = Callable[[SparkSession, Warehouse, Contract, TaskArguments, datetime], None]


def run_task(task: str, argv: Sequence[str], body: TaskBody) -> int:
    """Run a task; on failure log the run as FAILED, print why, and return a non-zero exit code."""
    started_at = datetime.now(UTC)
    try:
        arguments = parse_arguments(argv, f"Filegate {task}: load one file of a dataset.")
    except TaskArgumentError as exc:
        print(f"{task}: {exc}", file=sys.stderr)
        return exits.CONFIG
    warehouse: Warehouse | None = None
    spark: SparkSession | None = None
    try:
        spark = build_session(
            f"filegate-{task}",
            on_databricks="DATABRICKS_RUNTIME_VERSION" in os.environ,
            remote=os.environ.get("SPARK_REMOTE"),
        )
        warehouse = Warehouse(spark, arguments.location)
        contract = find_contract(arguments)
        body(spark, warehouse, contract, arguments, started_at)
    except Exception as exc:
        error = error_text(exc)
        print(f"{task} failed for batch {arguments.batch_id} ({arguments.source_file}): {error}", file=sys.stderr)
        print_failure(exc)
        if spark is not None and warehouse is not None:
            counted = exc if isinstance(exc, CountedFailure) else None
            record = RunRecord(
                batch_id=arguments.batch_id,
                dataset=arguments.dataset,
                source_file=arguments.source_file,
                task=task,
                started_at=started_at,
                ended_at=datetime.now(UTC),
                status=FAILED,
                error=error,
                rows_read=counted.rows_read if counted else None,
                rows_rejected=counted.rows_rejected if counted else None,
                run_id=arguments.run_id,
                attempt=attempt_or_none(warehouse, task, arguments.run_id),
            )
            append_failing_runs(spark, warehouse, [record], task)
        return exits.FAILED
    return exits.OK
