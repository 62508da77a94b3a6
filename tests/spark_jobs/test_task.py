"""The tasks' command line: what the job passes is accepted, what the SQL predicates cannot carry is not."""

from __future__ import annotations

from datetime import date

import pytest

from filegate.jobs import TOKEN_PREFIX, batch_id
from spark_jobs.task import TaskArgumentError, parse_arguments

REQUIRED = ["--source-path", "/data/f.csv", "--dataset", "order_tracking", "--schema", "ingest"]


def test_the_functions_batch_ids_are_accepted() -> None:
    function_id = batch_id("order_tracking", date(2025, 3, 3), TOKEN_PREFIX + "0123456789abcdef" * 3)

    arguments = parse_arguments([*REQUIRED, "--batch-id", f" {function_id} "], "test")

    assert arguments.batch_id == function_id
    assert (arguments.catalog, arguments.schema, arguments.source_file) == ("local", "ingest", "/data/f.csv")


@pytest.mark.parametrize("bad", ["", "a'b", "a\\b", "a b", "a\nb", "a;b", "é", "x" * 201])
def test_a_batch_id_outside_the_plain_alphabet_is_refused(bad: str) -> None:
    with pytest.raises(TaskArgumentError, match=r"--batch-id must be 1 to 200 characters among letters, digits"):
        parse_arguments([*REQUIRED, "--batch-id", bad], "test")
