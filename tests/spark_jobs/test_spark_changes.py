"""Dedupe and change detection, and the merge specification run by Delta Lake on Spark on tiny tables."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from filegate.contracts import Contract, load_contracts
from filegate.errors import UnsafeSql
from spark_jobs.changes import distinct_versions, history_changes, latest_per_key
from spark_jobs.columns import REASON, target_schema
from spark_jobs.merge import latest_wins_merge
from spark_jobs.target import Ties, batch_summary, tied_rows
from tests.spark_jobs.conftest import Lake

pytestmark = pytest.mark.spark

ORDERS = load_contracts()["order_tracking"]


def at(hour: int) -> datetime:
    return datetime(2025, 3, 3, hour, tzinfo=UTC)


def rows(spark: SparkSession, contract: Contract, *versions: tuple[str, str, int], history: bool = False) -> DataFrame:
    """Target-shaped rows from (key, status, hour) triples; other columns fixed."""
    schema = target_schema(contract)
    data = []
    for key, status, hour in versions:
        values = {"tracking_num": key, "order_id": "O", "status": status, "status_ts": at(hour), "carrier": "UPS"}
        values |= {"destination_city": "Paris", "destination_postal_code": "75001", "destination_country": "FR"}
        values |= {"_batch_id": "b", "effective_from": at(hour) if history else None}
        data.append(tuple(values.get(name) for name in schema.fieldNames()))
    return spark.createDataFrame(data, schema)


def test_latest_per_key_is_the_newest_and_ties_do_not_depend_on_order(spark: SparkSession) -> None:
    versions = [("A", "PICKED_UP", 9), ("A", "IN_TRANSIT", 12), ("A", "DELIVERED", 12), ("B", "PICKED_UP", 8)]
    forward = rows(spark, ORDERS, *versions).drop("effective_from", "effective_to", "is_current")
    backward = rows(spark, ORDERS, *reversed(versions)).drop("effective_from", "effective_to", "is_current")

    picked = [
        sorted((r.tracking_num, r.status) for r in latest_per_key(df, ORDERS).collect()) for df in (forward, backward)
    ]

    # Equal status_ts: the row whose JSON text sorts last wins, and "IN_TRANSIT" > "DELIVERED".
    assert picked[0] == picked[1] == [("A", "IN_TRANSIT"), ("B", "PICKED_UP")]


def test_distinct_versions_drops_only_repeats(spark: SparkSession) -> None:
    batch = rows(spark, ORDERS, ("A", "PICKED_UP", 9), ("A", "PICKED_UP", 9), ("A", "IN_TRANSIT", 12))

    assert distinct_versions(batch, ORDERS).count() == 2


def test_history_changes_rebound_the_timeline_and_ignore_known_versions(spark: SparkSession) -> None:
    contract = load_contracts(Path(__file__).with_name("contracts"))["parcel_history"]
    existing = rows(
        spark, contract, ("A", "LABEL_CREATED", 6), ("A", "IN_TRANSIT", 12), ("C", "PICKED_UP", 7), history=True
    )
    existing = history_changes(existing.limit(0).unionByName(existing), existing.limit(0), contract)
    # A late PICKED_UP between two known versions, a repeat of a known one, a new key.
    batch = rows(spark, contract, ("A", "PICKED_UP", 9), ("A", "IN_TRANSIT", 12), ("B", "LABEL_CREATED", 5))
    batch = batch.drop("effective_from", "effective_to", "is_current")

    changes = {(r.tracking_num, r.effective_from.hour): r for r in history_changes(batch, existing, contract).collect()}

    assert set(changes) == {("A", 6), ("A", 9), ("B", 5)}
    assert (changes[("A", 6)].effective_to.hour, changes[("A", 6)].is_current) == (9, False)
    assert (changes[("A", 9)].effective_to.hour, changes[("A", 9)].is_current) == (12, False)
    assert (changes[("B", 5)].effective_to, changes[("B", 5)].is_current) == (None, True)


def test_latest_wins_merge_never_regresses_and_repeats_are_no_ops(spark: SparkSession, lake: Lake) -> None:
    warehouse = lake.warehouse()
    schema = target_schema(ORDERS)
    warehouse.ensure_table("t", schema)
    spec = latest_wins_merge(ORDERS, schema.fieldNames())
    plain = list(schema.fieldNames())
    first = rows(spark, ORDERS, ("A", "IN_TRANSIT", 12), ("B", "PICKED_UP", 8)).select(*plain)
    late = rows(spark, ORDERS, ("A", "PICKED_UP", 9), ("B", "DELIVERED", 15)).select(*plain)

    counts = [warehouse.merge("t", lambda batch=batch: batch, spec) for batch in (first, late, late)]

    assert [(c.inserted, c.updated) for c in counts] == [(2, 0), (0, 1), (0, 0)]
    final = {r["tracking_num"]: r["status"] for r in lake.table("t").to_pylist()}
    assert final == {"A": "IN_TRANSIT", "B": "DELIVERED"}


def test_ties_are_counted_at_both_ends_of_the_batchs_sequence_range_to_the_microsecond(
    spark: SparkSession, lake: Lake
) -> None:
    warehouse = lake.warehouse()
    plain = list(target_schema(ORDERS).fieldNames())

    def later_by_a_microsecond(frame: DataFrame) -> DataFrame:
        return frame.withColumn("status_ts", F.col("status_ts") + F.expr("INTERVAL 1 MICROSECOND"))

    held = rows(spark, ORDERS, ("A", "IN_TRANSIT", 9), ("B", "PICKED_UP", 12), ("C", "PICKED_UP", 10))
    held = held.unionByName(later_by_a_microsecond(rows(spark, ORDERS, ("E", "IN_TRANSIT", 12))))
    warehouse.ensure_table("t", target_schema(ORDERS))
    warehouse.append("t", held.select(*plain))
    # A and E tie at the batch's first and last instants (E's a microsecond past the hour); B repeats the
    # target's row (no tie), C is newer (its row at the target's instant is superseded in the file), G is new.
    batch = rows(
        spark,
        ORDERS,
        ("A", "DELIVERED", 9),
        ("B", "PICKED_UP", 12),
        ("C", "DELIVERED", 11),
        ("C", "IN_TRANSIT", 10),
        ("G", "X", 10),
    )
    batch = batch.unionByName(later_by_a_microsecond(rows(spark, ORDERS, ("E", "OUT_FOR_DELIVERY", 12))))
    stage = batch.withColumn(REASON, F.lit(None).cast("string"))

    summary = batch_summary(stage, ORDERS)

    assert (summary.counts.staged, summary.versions) == (6, 5)
    # A's held row outranks the batch's (IN_TRANSIT sorts after DELIVERED); E's batch row outranks the held one.
    assert tied_rows(batch.select(*plain), warehouse.read("t"), ORDERS, summary) == Ties(tied=2, won=1)


def test_merge_refuses_identifiers_the_dialects_would_read_differently() -> None:
    with pytest.raises(UnsafeSql, match="lower-case identifiers"):
        latest_wins_merge(ORDERS, ["tracking_num", "Status"])
