"""The tasks' command line: what the job passes is accepted, what the SQL predicates cannot carry is not."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from filegate.jobs import TOKEN_PREFIX, batch_id
from spark_jobs.task import TaskArgumentError, parse_arguments
from spark_jobs.warehouse import LocalWarehouse, UnityCatalog

REQUIRED = ["--source-path", "/data/f.csv", "--dataset", "order_tracking", "--catalog", "main", "--schema", "ingest"]


def test_the_functions_batch_ids_are_accepted() -> None:
    function_id = batch_id("order_tracking", date(2025, 3, 3), TOKEN_PREFIX + "0123456789abcdef" * 3)

    arguments = parse_arguments([*REQUIRED, "--batch-id", f" {function_id} "], "test")

    assert arguments.batch_id == function_id
    assert (arguments.location, arguments.source_file) == (UnityCatalog("main", "ingest"), "/data/f.csv")


@pytest.mark.parametrize("bad", ["", "a'b", "a\\b", "a b", "a\nb", "a;b", "é", "x" * 201])
def test_a_batch_id_outside_the_plain_alphabet_is_refused(bad: str) -> None:
    with pytest.raises(TaskArgumentError, match=r"--batch-id must be 1 to 200 characters among letters, digits"):
        parse_arguments([*REQUIRED, "--batch-id", bad], "test")


def test_tables_live_in_unity_catalog_unless_a_local_warehouse_is_named(tmp_path: Path) -> None:
    local = parse_arguments([*REQUIRED, "--batch-id", "b", "--warehouse", str(tmp_path)], "test")

    assert local.location == LocalWarehouse(tmp_path, "main", "ingest")


@pytest.mark.parametrize("bad", ["/tmp/x", "a.b", "a`b", ""])
def test_catalog_and_schema_are_names_not_paths(bad: str) -> None:
    with pytest.raises(TaskArgumentError, match="--schema must"):
        parse_arguments(
            ["--source-path", "f", "--dataset", "d", "--batch-id", "b", "--catalog", "c", "--schema", bad], "t"
        )
