"""One local SparkSession with Delta Lake for every Spark test, and where each test's tasks write their tables."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from filegate import tables
from spark_jobs.delta_jars import delta_spark_conf
from spark_jobs.local_spark import SMALL_DATA_CONF
from spark_jobs.warehouse import LocalWarehouse, Warehouse

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
TEST_CONTRACTS = Path(__file__).with_name("contracts")
CATALOG = "test"
SCHEMA = "ingest"


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """A small local session on UTC with Delta Lake from the project's jars, shared by the whole test session."""
    session = (
        SparkSession.builder.appName("filegate-tests")
        .master("local[2]")
        .config("spark.driver.memory", "1g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config(map=delta_spark_conf(tmp_path_factory.mktemp("spark-warehouse")))
        .config(map=SMALL_DATA_CONF)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


# Off by default in Spark 4.0; a user's session or a Databricks workspace may turn it on. Then a column named
# `order`, `end` or `user` is a syntax error (or the current user) wherever SQL text names it unquoted.
RESERVED_KEYWORDS = "spark.sql.ansi.enforceReservedKeywords"


@pytest.fixture
def reserved_keywords(spark: SparkSession) -> Iterator[SparkSession]:
    """The shared session with SQL's reserved words enforced, for one test; restored after it."""
    before = spark.conf.get(RESERVED_KEYWORDS, "false")
    spark.conf.set(RESERVED_KEYWORDS, "true")
    try:
        yield spark
    finally:
        spark.conf.set(RESERVED_KEYWORDS, before)


@dataclass(frozen=True)
class Lake:
    """Where a test's tasks write their tables (a local warehouse folder), and how to read them."""

    folder: Path
    spark: SparkSession | None = None
    catalog: str = CATALOG
    schema: str = SCHEMA

    @property
    def location(self) -> LocalWarehouse:
        return LocalWarehouse(self.folder, self.catalog, self.schema)

    def arguments(self) -> list[str]:
        """The tasks' command-line arguments that point them here."""
        return ["--catalog", self.catalog, "--schema", self.schema, "--warehouse", str(self.folder)]

    def warehouse(self) -> Warehouse:
        assert self.spark is not None, "a Lake without a session only locates tables"
        return Warehouse(self.spark, self.location)

    def table(self, name: str) -> pa.Table:
        """A table's rows as Arrow, read by Delta Lake on Spark."""
        if self.spark is None:
            return read_with_delta_rs(self.location.path(name))
        return self.spark.table(self.location.name(name)).toArrow()

    def comments(self, name: str) -> tuple[str | None, dict[str, str | None]]:
        """A table's comment and each column's (None where there is none), as `DESCRIBE TABLE EXTENDED` shows them."""
        assert self.spark is not None, "a Lake without a session only locates tables"
        rows = self.spark.sql(f"DESCRIBE TABLE EXTENDED {self.location.name(name)}").collect()
        blank = next(i for i, row in enumerate(rows) if not row["col_name"])  # the columns end at the first blank
        columns = {row["col_name"]: row["comment"] for row in rows[:blank]}
        table = next((row["data_type"] for row in rows[blank:] if row["col_name"] == "Comment"), None)
        return table, columns

    def staged(self, dataset: str) -> list[dict[str, Any]]:
        """The good rows in `<dataset>_stage` (every batch in flight): the stage keeps each row with its
        verdict, and a good row's reason is null."""
        return [row for row in self.table(tables.stage_table(dataset)).to_pylist() if row[tables.REASON] is None]


def read_with_delta_rs(path: Path) -> pa.Table:
    """A table's rows read by delta-rs' query engine, which applies deletion vectors."""
    from deltalake import DeltaTable, QueryBuilder

    return pa.table(QueryBuilder().register("t", DeltaTable(str(path))).execute("SELECT * FROM t").read_all())


@pytest.fixture
def lake(spark: SparkSession, tmp_path: Path) -> Lake:
    """A fresh, empty local warehouse for one test's tables."""
    return Lake(tmp_path / "warehouse", spark)


@pytest.fixture(scope="session")
def samples() -> list[Path]:
    """The order-tracking sample files, one per business day, oldest first."""
    return sorted(SAMPLES.glob("order_tracking_*.csv"))


@pytest.fixture(scope="session")
def bad_sample() -> Path:
    """The sample file the function rejects as a whole (wrong header)."""
    return next((SAMPLES / "bad").glob("*.csv"))


@pytest.fixture(scope="session")
def test_contracts() -> Path:
    """A folder with the test-only SCD2 contract `parcel_history`."""
    return TEST_CONTRACTS
