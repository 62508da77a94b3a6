"""The batch merge (spark_jobs/batch_merge.py): SCD1's newest row per key wins, `delete_when` deletes; a
snapshot's rows held back keep their keys."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from filegate.contracts import BUILTIN_DATASETS, Column, Contract
from spark_jobs import batch_merge, batch_stage, batch_validate
from spark_jobs.batch_merge import merge_latest
from spark_jobs.columns import target_schema
from spark_jobs.warehouse import MergeCounts, driver_rows
from tests.spark_jobs.batch_world import DAYS, arguments, seal
from tests.spark_jobs.conftest import Lake

LOCKERS = Contract(
    name="lockers",
    file_pattern="lockers_{yyyy}_{mm}_{dd}.csv",
    columns=(
        Column("locker_id", "string", nullable=False),
        Column("state", "string"),
        Column("updated_at", "timestamp", nullable=False),
    ),
    keys=("locker_id",),
    sequence_by="updated_at",
    scd_type=1,
    delete_when="state = 'REMOVED'",
)
T0, T1, T2 = datetime(2025, 1, 1, 9), datetime(2025, 1, 2, 9), datetime(2025, 1, 3, 9)


def staged(spark: SparkSession, batch: str, *rows: tuple[Any, ...]) -> DataFrame:
    """A batch's rows as the stage leaves them: the row's columns and its lineage."""
    return driver_rows(spark, [(*row, batch, f"{batch}.csv", T2) for row in rows], target_schema(LOCKERS))


def current(lake: Lake) -> list[tuple[Any, ...]]:
    assert lake.spark is not None
    table = lake.spark.table(lake.location.name(LOCKERS.target))
    return sorted(tuple(r) for r in table.select("locker_id", "state", "updated_at").collect())


def test_a_delete_removes_the_key_but_a_late_delete_keeps_the_newer_row(lake: Lake) -> None:
    assert lake.spark is not None
    warehouse = lake.warehouse()
    first = staged(lake.spark, "b1", ("L1", "OPEN", T1), ("L2", "OPEN", T1))
    assert merge_latest(warehouse, LOCKERS, first) == MergeCounts(2, 0, 0)

    # L1 is removed at T2; L2's delete dates from before its row (late); L3 was never there.
    second = staged(lake.spark, "b2", ("L1", "REMOVED", T2), ("L2", "REMOVED", T0), ("L3", "REMOVED", T2))
    assert merge_latest(warehouse, LOCKERS, second) == MergeCounts(0, 0, 1)
    assert current(lake) == [("L2", "OPEN", T1)]
    # The same batch again changes nothing.
    assert merge_latest(warehouse, LOCKERS, second) == MergeCounts(0, 0, 0)


def test_a_delete_is_remembered_so_the_order_of_the_files_does_not_matter(lake: Lake) -> None:
    assert lake.spark is not None
    warehouse = lake.warehouse()
    batches = [
        # A and B are there; then each is deleted at T2 and sent an older row at T1, in either order.
        staged(lake.spark, "b1", ("A", "OPEN", T0), ("B", "OPEN", T0)),
        # C's delete and D's row come first, each tied (same instant) with what comes after; E is deleted at T1.
        staged(
            lake.spark,
            "b2",
            ("A", "REMOVED", T2),
            ("B", "CLOSED", T1),
            ("C", "REMOVED", T2),
            ("D", "OPEN", T2),
            ("E", "REMOVED", T1),
        ),
        # The late row of A, the delete of B; C's row and D's delete of the same instant; E's newer row.
        staged(
            lake.spark,
            "b3",
            ("A", "CLOSED", T1),
            ("B", "REMOVED", T2),
            ("C", "OPEN", T2),
            ("D", "REMOVED", T2),
            ("E", "OPEN", T2),
        ),
    ]
    counts = [merge_latest(warehouse, LOCKERS, batch) for batch in batches]

    # A row that does not outrank its key's delete stays out, whichever came first; a newer one comes back.
    assert current(lake) == [("E", "OPEN", T2)]
    assert counts[2] == MergeCounts(inserted=1, updated=0, deleted=2)
    assert merge_latest(warehouse, LOCKERS, batches[2]) == MergeCounts(0, 0, 0)
    assert current(lake) == [("E", "OPEN", T2)]


# A rule that holds one product back for review: a quarantine of a snapshot dataset's row.
REVIEW_RULE = '''
[[rules]]
name = "price_under_review"
dataset = "products"
severity = "LOW"
action = "quarantine"
description = "A product whose price is being reviewed is held back."
sql = """
SELECT product_id, 'price under review' AS detail FROM ${batch.products}
WHERE product_id = 'PROD-00002' AND _business_date = DATE'2025-01-16'
"""
'''


def test_a_snapshot_row_rejected_or_quarantined_keeps_its_product_current(lake: Lake, tmp_path: Path) -> None:
    assert lake.spark is not None
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    pipeline = (BUILTIN_DATASETS / "ecommerce.toml").read_text()
    (contracts / "ecommerce.toml").write_text(pipeline + REVIEW_RULE)
    extra = ["--contracts-dir", str(contracts)]
    one = seal(tmp_path / "in", DAYS[0], only=("products",))
    two = seal(tmp_path / "in", DAYS[1], only=("products",))
    # Day two's snapshot: PROD-00001's stock quantity is unreadable (the stage rejects the row), PROD-00002 is
    # quarantined by the rule, PROD-00011 is gone.
    [day_two] = (tmp_path / "in" / DAYS[1] / "products").glob("*.csv")
    text = day_two.read_text()
    assert text.count("\nPROD-00001,") == 1
    day_two.write_text(text.replace("USD,", "USD,a lot of ", 1))
    for run, manifest in enumerate((one, two), start=1):
        for task in (batch_stage, batch_validate, batch_merge):
            assert task.main(arguments(lake, manifest, extra, run)) == 0, task

    target = lake.spark.table(lake.location.name("products_target"))
    found = {
        r["product_id"]: (r["effective_from"], r["effective_to"], r["is_current"])
        for r in target.where("product_id IN ('PROD-00001', 'PROD-00002', 'PROD-00011')").collect()
    }
    first, second = date.fromisoformat(DAYS[0]), date.fromisoformat(DAYS[1])
    assert found == {
        "PROD-00001": (first, None, True),
        "PROD-00002": (first, None, True),
        "PROD-00011": (first, second, False),
    }
    rejects = lake.spark.table(lake.location.name("products_rejects")).where(f"_batch_id LIKE '%{DAYS[1]}%'")
    found_rejects = sorted((r["_rejected_by"], r["rules"], r["raw_line"]) for r in rejects.collect())
    assert [(by, rules) for by, rules, _ in found_rejects] == [
        ("stage", ["products.stock_quantity.type"]),
        ("validate", ["products.validate.price_under_review"]),
    ]
    assert found_rejects[0][2].startswith("PROD-00001,")
