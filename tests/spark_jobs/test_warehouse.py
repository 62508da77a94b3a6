"""Delta Lake on Spark: batch-scoped writes, reads and deletes, MERGE counts, table locations, conflict retries."""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyspark.errors import AnalysisException
from pyspark.logger import PySparkLogger
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructField, StructType, TimestampType

from filegate.errors import UnsafeSql
from local_world.demo import read_table
from spark_jobs import warehouse as warehouse_module
from spark_jobs.merge import MergeClause, MergeSpec
from spark_jobs.warehouse import (
    CHANGE_FEED,
    MAX_ATTEMPTS,
    ColumnRetyped,
    HalfCreatedTable,
    LocalWarehouse,
    UnityCatalog,
    Warehouse,
    batch_predicate,
    committed,
    driver_rows,
    is_conflict,
    sql_string,
)
from tests.spark_jobs.conftest import Lake

pytestmark = pytest.mark.spark

SCHEMA = "k string, v bigint, _batch_id string"
UPSERT = MergeSpec(
    predicate="t.k = s.k",
    when_matched_update=(MergeClause((("v", "s.v"), ("_batch_id", "s._batch_id")), condition="s.v > t.v"),),
    when_not_matched_insert=(MergeClause((("k", "s.k"), ("v", "s.v"), ("_batch_id", "s._batch_id"))),),
)


def rows_of(spark: SparkSession, batch: str, *rows: tuple[str, int]) -> DataFrame:
    return spark.createDataFrame([(key, value, batch) for key, value in rows], SCHEMA)


def contents(lake: Lake, table: str) -> list[tuple[str, int, str]]:
    return sorted((r["k"], r["v"], r["_batch_id"]) for r in lake.table(table).to_pylist())


def replace_batch(warehouse: Warehouse, table: str, rows: DataFrame, batch_id: str) -> int:
    """Replace one batch's rows, then count them from the commit's own metrics."""
    warehouse.replace_where(table, rows, batch_predicate(batch_id))
    return warehouse.replaced_rows(table, batch_predicate(batch_id))


def test_a_batch_is_replaced_read_and_deleted_without_touching_the_others(spark: SparkSession, lake: Lake) -> None:
    warehouse = lake.warehouse()
    warehouse.ensure_table("t", rows_of(spark, "x").schema)
    replace_batch(warehouse, "t", rows_of(spark, "a", ("k1", 1), ("k2", 2)), "a")
    replace_batch(warehouse, "t", rows_of(spark, "b", ("k3", 3)), "b")
    # One file for both batches: the replace below must count only the rows it wrote, not b's row.
    spark.sql(f"OPTIMIZE {warehouse.name('t')}").collect()

    replaced = replace_batch(warehouse, "t", rows_of(spark, "a", ("k1", 10)), "a")
    read = sorted((r["k"], r["v"]) for r in warehouse.read_batch("t", "a").collect())
    warehouse.delete_batch("t", "a")

    assert replaced == 1
    assert read == [("k1", 10)]
    assert contents(lake, "t") == [("k3", 3, "b")]
    assert warehouse.read_batch("t", "a").count() == 0


@pytest.mark.parametrize("partition_by", [("_batch_id",), ()], ids=["partitioned by batch", "earlier layout"])
def test_a_batch_replaced_whole_keeps_the_other_batches_in_either_layout(
    spark: SparkSession, lake: Lake, partition_by: tuple[str, ...]
) -> None:
    warehouse = lake.warehouse()
    warehouse.ensure_table("t", rows_of(spark, "x").schema, partition_by=partition_by)
    warehouse.replace_batch("t", rows_of(spark, "a", ("k1", 1), ("k2", 2)), "a")
    warehouse.replace_batch("t", rows_of(spark, "b", ("k3", 3)), "b")
    assert warehouse.partition_columns("t") == partition_by

    warehouse.replace_batch("t", rows_of(spark, "a", ("k1", 10)), "a")
    assert contents(lake, "t") == [("k1", 10, "a"), ("k3", 3, "b")]
    warehouse.replace_batch("t", rows_of(spark, "b"), "b")  # a batch of no rows now: none are left of it
    assert contents(lake, "t") == [("k1", 10, "a")]


def test_a_table_holds_files_from_its_first_write_until_its_rows_are_deleted(spark: SparkSession, lake: Lake) -> None:
    warehouse = lake.warehouse()
    warehouse.ensure_table("t", rows_of(spark, "x").schema)
    created = warehouse.holds_files("t")
    replace_batch(warehouse, "t", rows_of(spark, "a", ("k1", 1), ("k2", 2)), "a")
    written = warehouse.holds_files("t")
    warehouse.delete_batch("t", "a")

    assert (created, written, warehouse.holds_files("t")) == (False, True, False)


def test_a_column_no_longer_declared_is_kept_and_written_as_null(spark: SparkSession, lake: Lake) -> None:
    # A table made while a contract still declared `note`; the contract dropped it since.
    earlier = lake.warehouse()
    earlier.ensure_table("t", spark.createDataFrame([], f"{SCHEMA}, note string").schema)
    earlier.append("t", spark.createDataFrame([("k0", 0, "old", "kept")], f"{SCHEMA}, note string"))
    warehouse = lake.warehouse()
    warehouse.ensure_table("t", rows_of(spark, "x").schema)

    replace_batch(warehouse, "t", rows_of(spark, "a", ("k1", 1)), "a")
    warehouse.append("t", rows_of(spark, "b", ("k2", 2)))

    notes = {row["k"]: row["note"] for row in lake.table("t").to_pylist()}
    assert notes == {"k0": "kept", "k1": None, "k2": None}
    # A column the table's schema still declares is never filled in: rows without it are a mistake.
    with pytest.raises(AnalysisException, match="`v`"):
        warehouse.append("t", rows_of(spark, "c", ("k3", 3)).drop("v"))


def test_a_table_another_run_is_creating_is_read_once_its_first_commit_lands(
    spark: SparkSession, lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other run's table: made aside, its first commit held back. Its folder already holds the
    # `_delta_log` that Delta makes before it commits, which CREATE TABLE IF NOT EXISTS takes for a table.
    other = Lake(tmp_path / "other", spark).warehouse()
    other.ensure_table("t", rows_of(spark, "x").schema)
    first_commit = Path("_delta_log") / "00000000000000000000.json"
    (lake.location.path("t") / "_delta_log").mkdir(parents=True)
    waits: list[float] = []

    def commit_lands(seconds: float) -> None:
        # The commit lands as Delta writes one, by a rename, while this run waits to try again.
        if not waits:
            os.replace(other.location.path("t") / first_commit, lake.location.path("t") / first_commit)
        waits.append(seconds)

    # The retry's own wait only: the module's `time` (PySpark's threads sleep on the real one).
    monkeypatch.setattr(warehouse_module, "time", SimpleNamespace(sleep=commit_lands))
    warehouse = lake.warehouse()
    warehouse.ensure_table("t", rows_of(spark, "x").schema)

    assert len(waits) == 1
    assert warehouse.read("t").columns == ["k", "v", "_batch_id"]
    # A folder whose creation stopped before its first commit fails by what it is, after the same tries.
    (lake.location.path("u") / "_delta_log").mkdir(parents=True)
    with pytest.raises(HalfCreatedTable, match=r"/u`: its folder holds a _delta_log with no commit in it"):
        warehouse.ensure_table("u", rows_of(spark, "x").schema)
    assert len(waits) == 1 + MAX_ATTEMPTS - 1


def test_a_column_whose_type_changed_is_refused_not_cast_to_the_old_type(spark: SparkSession, lake: Lake) -> None:
    # A contract declared `v` as bigint, then as decimal(12,4): 1.2345 would be written as 1.
    earlier = lake.warehouse()
    earlier.ensure_table("t", rows_of(spark, "x").schema)
    earlier.append("t", rows_of(spark, "a", ("k1", 1)))
    warehouse = lake.warehouse()

    with pytest.raises(ColumnRetyped, match=r"v is bigint in the table, decimal\(12,4\) now"):
        warehouse.ensure_table("t", spark.createDataFrame([], "k string, v decimal(12,4), _batch_id string").schema)

    assert str(lake.table("t").schema.field("v").type) == "int64"
    # Nullability is not a type: a declaration that differs only there is written as before.
    warehouse.ensure_table("t", spark.createDataFrame([], "k string not null, v bigint, _batch_id string").schema)


def test_driver_rows_keep_the_instant_of_a_time_collected_where_the_zone_is_not_utc(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `collect` gives a TIMESTAMP as a naive datetime in the process's zone (12:06:40 in Berlin for
    # 11:06:40 UTC), as a task's log row takes its stage's `_ingested_at`; the row must keep the instant.
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        collected = spark.sql("SELECT TIMESTAMP'2026-01-05 11:06:40' AS t").first()["t"]  # type: ignore[index]
        aware = datetime(2026, 1, 5, 11, 6, 40, tzinfo=UTC)
        frame = driver_rows(spark, [(collected,), (aware,), (None,)], StructType([StructField("t", TimestampType())]))
        shown = [row["u"] for row in frame.selectExpr("CAST(t AS STRING) AS u").collect()]
    finally:
        monkeypatch.undo()
        time.tzset()

    assert collected == datetime(2026, 1, 5, 12, 6, 40)
    assert shown == ["2026-01-05 11:06:40", "2026-01-05 11:06:40", None]


def test_pysparks_query_context_loggers_exist_before_any_thread_can_race_to_make_them() -> None:
    # Made by PySparkLogger.getLogger, which swaps the process's logger class: two threads at once can
    # leave one a plain Logger, and every later Spark error then fails on its `errorClass` argument.
    assert all(
        isinstance(logging.getLogger(name), PySparkLogger)
        for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger")
    )


def test_merge_counts_are_the_merges_own_even_when_another_commit_follows(spark: SparkSession, lake: Lake) -> None:
    warehouse = lake.warehouse()
    warehouse.ensure_table("t", rows_of(spark, "x").schema)
    warehouse.merge("t", lambda: rows_of(spark, "a", ("k1", 1), ("k2", 2)), UPSERT)

    counts = warehouse.merge("t", lambda: rows_of(spark, "b", ("k1", 5), ("k2", 0), ("k3", 3)), UPSERT)
    # What Databricks' auto compaction does right after a MERGE: a commit of its own, which the
    # old code read its counts from (0 inserted, 0 updated).
    spark.sql(f"OPTIMIZE {warehouse.name('t')}").collect()

    assert (counts.inserted, counts.updated) == (1, 1)
    assert contents(lake, "t") == [("k1", 5, "b"), ("k2", 2, "a"), ("k3", 3, "b")]


def test_changed_rows_are_what_the_commits_left_and_held_as_a_read_before_and_after_would_see(
    spark: SparkSession, lake: Lake
) -> None:
    warehouse = lake.warehouse()
    warehouse.ensure_table("t", rows_of(spark, "x").schema)
    warehouse.set_properties("t", {CHANGE_FEED: "true"})
    warehouse.merge("t", lambda: rows_of(spark, "x", ("a", 1), ("b", 1), ("c", 1)), UPSERT)
    before = warehouse.version("t")
    name = warehouse.name("t")

    warehouse.merge("t", lambda: rows_of(spark, "x", ("a", 2), ("d", 1)), UPSERT)  # a updated, d inserted
    spark.sql(f"UPDATE {name} SET v = v + 10 WHERE k IN ('a', 'd')").collect()  # both again
    spark.sql(f"OPTIMIZE {name}").collect()  # a compaction: no data changed
    spark.sql(f"INSERT INTO {name} VALUES ('b', 7, 'y')").collect()  # another row of key b
    spark.sql(f"DELETE FROM {name} WHERE k = 'b' AND _batch_id = 'x'").collect()
    last = warehouse.version("t")

    def found(frames: tuple[DataFrame, DataFrame]) -> list[list[tuple[str, int, str]]]:
        assert all(frame.columns == warehouse.read("t").columns for frame in frames), "the table's columns"
        return [sorted((r["k"], r["v"], r["_batch_id"]) for r in frame.collect()) for frame in frames]

    # Every commit: a as the first one found it and the last left it; d inserted, so it held nothing; (b, x)
    # gone, (b, y) new. The identity is (batch, key): netted by either column alone, rows of other
    # identities would hide each other.
    assert found(warehouse.changed_rows("t", before + 1, last, ("_batch_id", "k"))) == [
        [("a", 12, "x"), ("b", 7, "y"), ("d", 11, "x")],
        [("a", 1, "x"), ("b", 1, "x")],
    ]
    # One commit: its own rows.
    assert found(warehouse.changed_rows("t", before + 1, before + 1, ("_batch_id", "k"))) == [
        [("a", 2, "x"), ("d", 1, "x")],
        [("a", 1, "x")],
    ]
    assert warehouse.properties("t")[CHANGE_FEED] == "true"


def test_the_light_reader_sees_what_spark_wrote_with_deletion_vectors(spark: SparkSession, lake: Lake) -> None:
    warehouse = lake.warehouse()
    warehouse.ensure_table("t", rows_of(spark, "x").schema)
    # As the batch job's targets have it: their change data feed on (change files beside the data).
    warehouse.set_properties("t", {CHANGE_FEED: "true"})
    replace_batch(warehouse, "t", rows_of(spark, "a", *((f"k{i}", i) for i in range(50))), "a")
    warehouse.merge("t", lambda: rows_of(spark, "b", ("k1", 100), ("k99", 99)), UPSERT)
    spark.sql(f"DELETE FROM {warehouse.name('t')} WHERE k = 'k2'").collect()
    files = spark.sql(f"DESCRIBE DETAIL {warehouse.name('t')}").first()
    assert files is not None
    assert "deletionVectors" in files["tableFeatures"], "the table carries Databricks' default feature"
    assert "changeDataFeed" in files["tableFeatures"]

    read = read_table(lake.location.path("t"))

    assert read is not None
    assert sorted((r["k"], r["v"], r["_batch_id"]) for r in read) == contents(lake, "t")
    assert len(read) == 50


def test_local_tables_are_folders_under_catalog_and_schema(tmp_path: Path) -> None:
    local = LocalWarehouse(tmp_path, "filegate_dev", "ingest")

    assert local.path("orders") == tmp_path.resolve() / "filegate_dev" / "ingest" / "orders"
    assert local.name("orders") == f"delta.`{tmp_path.resolve()}/filegate_dev/ingest/orders`"
    assert UnityCatalog("main", "ingest").name("orders") == "`main`.`ingest`.`orders`"


def test_a_catalog_schema_is_created_with_its_first_table(spark: SparkSession) -> None:
    # The session catalog stands in for Unity Catalog: the same statements, a catalog.schema name.
    schema = f"filegate_new_{uuid.uuid4().hex[:12]}"
    warehouse = Warehouse(spark, UnityCatalog("spark_catalog", schema))
    try:
        warehouse.ensure_table("t", rows_of(spark, "x").schema)
        warehouse.append("t", rows_of(spark, "a", ("k", 1)))

        assert spark.catalog.databaseExists(f"spark_catalog.{schema}")
        assert [tuple(r) for r in spark.table(f"spark_catalog.{schema}.t").collect()] == [("k", 1, "a")]
    finally:
        spark.sql(f"DROP SCHEMA IF EXISTS spark_catalog.{schema} CASCADE")


def test_a_schema_name_with_a_dash_reaches_the_catalog_quoted(spark: SparkSession) -> None:
    # The tasks take `--schema filegate-dev`, a name Unity Catalog keeps when quoted. Unquoted, the catalog
    # API's own parser refused it (INVALID_IDENTIFIER) before every task's first table. The session catalog
    # lacks the schema, and refuses to create it by a rule of its own (hive_metastore's, not Unity Catalog's).
    with pytest.raises(AnalysisException, match=r"INVALID_SCHEMA_OR_RELATION_NAME.*`filegate-dev`"):
        Warehouse(spark, UnityCatalog("spark_catalog", "filegate-dev")).ensure_schema()


@pytest.mark.parametrize("text", ["order_tracking-20250303-0123456789ab", "b-2025-03-03", "a.b:c_d", "é"])
def test_sql_string_quotes_plain_text(text: str) -> None:
    assert sql_string(text) == f"'{text}'"
    assert batch_predicate(text) == f"_batch_id = '{text}'"


@pytest.mark.parametrize("text", ["a'b", "a\\b", "a\nb", "a\x00", "'"])
def test_sql_string_refuses_quotes_backslashes_and_controls(text: str) -> None:
    with pytest.raises(UnsafeSql, match="plain SQL literal"):
        sql_string(text)


def test_only_a_lost_commit_race_is_retried_and_only_so_often() -> None:
    calls: list[int] = []
    conflict = RuntimeError(
        "[DELTA_CONCURRENT_APPEND] Files were added to the root of the table by a concurrent update"
    )

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise conflict
        return "done"

    def always() -> None:
        calls.append(1)
        raise conflict

    assert committed(flaky, "test", attempts=3) == "done"
    calls.clear()
    with pytest.raises(RuntimeError, match="DELTA_CONCURRENT_APPEND"):
        committed(always, "test", attempts=2)
    assert len(calls) == 2
    assert not is_conflict(ValueError("[DELTA_REPLACE_WHERE_MISMATCH] Written data does not conform"))
    # A first CREATE that finds another run's table half-made (its folder, not yet its first commit).
    assert is_conflict(RuntimeError("[DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION] Cannot create table"))
    # A first CREATE whose rival's first commit landed while it ran: the rival's table has the session's defaults.
    assert is_conflict(RuntimeError("[DELTA_CREATE_TABLE_WITH_DIFFERENT_PROPERTY] The specified properties do not"))
