"""A pipeline rule the validate task cannot run as written: its SQL raises on the batch's values (ANSI SQL), or its
quarantined rows would carry a column rule's id; the task names the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from filegate.check import check_files
from filegate.contracts import BUILTIN_DATASETS
from spark_jobs import batch_stage, batch_validate
from tests.spark_jobs.batch_world import DAYS, arguments, batch_id, seal
from tests.spark_jobs.conftest import Lake

pytestmark = pytest.mark.spark

# Customer ids are text ('CUST-000001'): the cast raises CAST_INVALID_INPUT on the first row it reads.
RAISING_RULE = """
[[rules]]
name = "customer_number_positive"
dataset = "orders"
severity = "LOW"
action = "warn"
sql = "SELECT order_id FROM ${batch.orders} WHERE CAST(customer_id AS INT) < 0"
"""


def test_a_rule_whose_query_raises_on_a_value_is_named_and_nothing_is_recorded(lake: Lake, tmp_path: Path) -> None:
    assert lake.spark is not None
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "ecommerce.toml").write_text((BUILTIN_DATASETS / "ecommerce.toml").read_text() + RAISING_RULE)
    extra = ["--contracts-dir", str(contracts)]
    manifest = seal(tmp_path / "in", DAYS[0], only=("orders",))

    assert batch_stage.main(arguments(lake, manifest, extra)) == 0
    assert batch_validate.main(arguments(lake, manifest, extra)) == 1

    log = lake.spark.table(lake.location.name("processing_log")).where("task = 'validate' AND dataset IS NULL")
    [error] = [row["error"] for row in log.collect()]
    assert error.startswith(
        f"RuleRaised: batch {batch_id(DAYS[0])}: the rule customer_number_positive (orders) raised on the batch's "
        "values: [CAST_INVALID_INPUT] The value 'CUST-"
    ), error
    assert "try_cast" in error
    failures = lake.spark.table(lake.location.name("validation_failures"))
    assert failures.where(f"batch_id = '{batch_id(DAYS[0])}'").count() == 0


def test_a_quarantine_named_like_a_rule_of_a_column_named_validate_is_refused_as_check_refuses_it(
    lake: Lake, tmp_path: Path
) -> None:
    # Both ids were orders.validate.required in orders_rejects.rules: the stage's for an order with no `validate`
    # value, and validate's for an order the rule quarantined. The task refuses before it reads the batch.
    assert lake.spark is not None
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "orders.toml").write_text(
        (BUILTIN_DATASETS / "orders.toml").read_text()
        + '\n[[columns]]\nname = "validate"\ntype = "string"\nnullable = false\n'
    )
    (contracts / "ecommerce.toml").write_text(
        (BUILTIN_DATASETS / "ecommerce.toml").read_text()
        + '\n[[rules]]\nname = "required"\ndataset = "orders"\naction = "quarantine"\n'
        'sql = "SELECT order_id FROM ${batch.orders} WHERE quantity > 100"\n'
    )
    manifest = seal(tmp_path / "in", DAYS[0], only=("orders",))

    assert batch_validate.main(arguments(lake, manifest, ["--contracts-dir", str(contracts)])) == 1

    log = lake.spark.table(lake.location.name("processing_log")).where("task = 'validate' AND dataset IS NULL")
    [error] = [row["error"] for row in log.collect()]
    message = (
        "quarantines orders rows as orders.validate.required, the id of column validate's required rule in "
        "orders_rejects.rules; rename the rule (or the column validate)"
    )
    assert message in error, error
    (finding,) = check_files([contracts / "orders.toml", contracts / "ecommerce.toml"])[1]
    assert finding.message.endswith(message)
