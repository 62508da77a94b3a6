"""The batch merge's SCD1 path (spark_jobs/batch_merge.py): newest row per key wins, `delete_when` deletes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from filegate.contracts import Column, Contract
from spark_jobs.batch_merge import merge_latest
from spark_jobs.columns import target_schema
from spark_jobs.warehouse import MergeCounts
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
    return spark.createDataFrame([(*row, batch, f"{batch}.csv", T2) for row in rows], target_schema(LOCKERS))


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
