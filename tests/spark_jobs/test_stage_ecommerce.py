"""The e-commerce samples through the stage both jobs share (`stage_file`): every planted row flaw is
caught by the rule the generator says, counted exactly, and the multi-line description arrives whole."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from filegate.contracts import Check, load_contracts
from local_world.samples.ecommerce import MEMBERS
from spark_jobs import stage_load, target_load
from spark_jobs.stage import Batch, RowExpressionFailed, stage_file
from spark_jobs.task import parse_arguments
from tests.spark_jobs.conftest import SAMPLES, Lake
from tests.spark_jobs.test_load_scenarios import task_arguments

pytestmark = pytest.mark.spark

ECOMMERCE = SAMPLES / "ecommerce"
FLAWS = json.loads((ECOMMERCE / "flaws.json").read_text(encoding="utf-8"))


def _stage(lake: Lake, dataset: str, day: str) -> tuple[Counter[str], Counter[str], int, int]:
    source = ECOMMERCE / f"{dataset}_{day.replace('-', '_')}.csv"
    # These datasets are members of a pipeline: the batch job stages them, with the ingest job's stage_file.
    batch = Batch(dataset, f"b-{dataset}-{day}", str(source), datetime.now(UTC))
    stage_file(lake.spark, lake.warehouse(), load_contracts()[dataset], str(source), batch)
    rejects = lake.table(f"{dataset}_rejects").to_pylist()
    stage = lake.staged(dataset)
    broken = Counter(rule for row in rejects for rule in row["rules"])
    warned = Counter(rule for row in stage for rule in row["_warnings"])
    return broken, warned, len(stage), len(rejects)


# The day test_batch_job.py's world stages only in part. The whole first day goes through the batch job's
# stage there, and its validation_results are checked against the same flaw counts, rule by rule; staging it
# here again cost the suite about 20 s of its 2 cores.
@pytest.mark.parametrize("day", sorted(FLAWS)[1:])
def test_every_planted_row_flaw_is_rejected_or_warned_by_its_rule(lake: Lake, day: str) -> None:
    expected_rejects = Counter(FLAWS[day]["rejects"])
    expected_warnings = Counter(FLAWS[day]["warnings"])
    found_rejects: Counter[str] = Counter()
    found_warnings: Counter[str] = Counter()

    for dataset in MEMBERS:
        broken, warned, staged, rejected = _stage(lake, dataset, day)
        found_rejects += broken
        found_warnings += warned
        assert staged + rejected == FLAWS[day]["rows"][dataset], dataset

    assert found_rejects == expected_rejects
    assert found_warnings == expected_warnings


def test_a_description_with_a_line_break_is_one_record_and_reaches_the_target(lake: Lake) -> None:
    day = "2025-01-15"
    (product,) = FLAWS[day]["planted"]["multiline_description"]
    source = ECOMMERCE / "products_2025_01_15.csv"
    arguments = parse_arguments(task_arguments(lake, source, "b-products", "products"), "ingest")
    # Through the ingest job's two tasks: without what only the batch job applies, which they refuse.
    contract = replace(load_contracts()["products"], track_history=(), load="incremental")
    warehouse, now = lake.warehouse(), datetime.now(UTC)

    stage_load.stage(lake.spark, warehouse, contract, arguments, now)
    target_load.merge_batch(lake.spark, warehouse, contract, arguments, now)

    rows = {row["product_id"]: row for row in lake.table("products_target").to_pylist()}
    assert len(rows) == FLAWS[day]["rows"]["products"]
    assert "\n" in rows[product]["description"]
    assert {str(row["_business_date"]) for row in rows.values()} == {day}
    assert all(row["effective_from"] == row["_business_date"] for row in rows.values())


def test_derived_columns_are_staged_with_the_row(lake: Lake) -> None:
    _stage(lake, "inventory", "2025-01-15")

    stage = lake.staged("inventory")

    assert {row["expected_stock_status"] for row in stage} <= {"OUT_OF_STOCK", "LOW_STOCK", "IN_STOCK"}
    assert all(
        row["expected_stock_status"] == ("OUT_OF_STOCK" if row["stock_quantity"] <= 0 else
                                         "LOW_STOCK" if row["stock_quantity"] <= 10 else "IN_STOCK")
        for row in stage
    )  # fmt: skip


def test_a_derived_column_that_raises_on_a_good_row_is_named_and_nothing_is_staged(lake: Lake) -> None:
    assert lake.spark is not None
    # A divisor of 0.001 gives volumetric weights of millions of kg: their decimal(10,3) overflows under
    # ANSI SQL on rows that broke no rule, which no rule can reject.
    contract = load_contracts()["shipping"]
    contract = replace(contract, params={**contract.params, "volumetric_divisor": 0.001})
    source = ECOMMERCE / "shipping_2025_01_15.csv"
    batch = Batch("shipping", "b-shipping", str(source), datetime.now(UTC))

    with pytest.raises(RowExpressionFailed) as raised:
        stage_file(lake.spark, lake.warehouse(), contract, str(source), batch)

    message = str(raised.value)
    assert message.startswith(
        "shipping: the derived column volumetric_weight_kg (CAST(volume_cm3 / ${param.volumetric_divisor} AS "
        "DECIMAL(10,3)), here CAST(volume_cm3 / 0.001 AS DECIMAL(10,3))) raised on a row of "
        "shipping_2025_01_15.csv: [NUMERIC_VALUE_OUT_OF_RANGE"
    ), message
    assert "cannot be represented as Decimal(10, 3)" in message
    assert "spark.sql.ansi.enabled" not in message  # Spark's advice would turn the values NULL unseen
    assert "try_divide" in message
    assert lake.spark.table(lake.location.name("shipping_stage")).count() == 0


def test_a_check_that_raises_on_a_value_is_named(lake: Lake) -> None:
    assert lake.spark is not None
    # Customer ids are text ('CUST-000001'): the cast raises CAST_INVALID_INPUT under ANSI SQL.
    contract = load_contracts()["orders"]
    check = Check("numeric_customer", "CAST(customer_id AS INT) > 0")
    contract = replace(contract, checks=(*contract.checks, check))
    source = ECOMMERCE / "orders_2025_01_15.csv"
    batch = Batch("orders", "b-orders", str(source), datetime.now(UTC))

    with pytest.raises(
        RowExpressionFailed,
        match=r"^orders: the check numeric_customer \(CAST\(customer_id AS INT\) > 0\) "
        r"raised on a row of orders_2025_01_15\.csv: \[CAST_INVALID_INPUT\]",
    ):
        stage_file(lake.spark, lake.warehouse(), contract, str(source), batch)
