"""One local SparkSession for every Spark test, and where each test's tasks write their tables.

By default the tasks write with delta-rs under a temporary folder (these machines cannot fetch the
Delta jars). With FILEGATE_TEST_DELTA_SPARK=1 and delta-spark installed, the session loads Delta
Lake itself and every scenario runs on Delta-on-Spark instead, with `--schema` a database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
TEST_CONTRACTS = Path(__file__).with_name("contracts")
DELTA_SPARK = os.environ.get("FILEGATE_TEST_DELTA_SPARK") == "1"


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """A small local session on UTC, shared by the whole test session; with Delta Lake on request."""
    builder = (
        SparkSession.builder.appName("filegate-tests")
        .master("local[2]")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
    )
    if DELTA_SPARK:
        from delta import configure_spark_with_delta_pip

        # The jars of the installed delta-spark come from Maven at session start (spark.jars.packages).
        builder = configure_spark_with_delta_pip(
            builder.config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
            .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
            .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-warehouse")))
        )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


@dataclass(frozen=True)
class Lake:
    """Where a test's tasks write their tables (`--catalog local --schema <schema>`), and how to read them."""

    schema: str
    # Set when the tables are Delta Lake on Spark: `schema` is then a database of that session.
    spark: SparkSession | None = None

    def table(self, name: str) -> pa.Table:
        """A table's rows as Arrow: read by delta-rs from the folder, or by Spark from the database."""
        if self.spark is None:
            return DeltaTable(str(Path(self.schema) / name)).to_pyarrow_dataset().to_table()
        return self.spark.table(f"{self.schema}.{name}").toArrow()


@pytest.fixture
def lake(spark: SparkSession, tmp_path: Path) -> Iterator[Lake]:
    """A fresh, empty place for one test's tables, on the Delta path this session runs."""
    if not DELTA_SPARK:
        yield Lake(str(tmp_path / "warehouse"))
        return
    database = f"filegate_test_{uuid.uuid4().hex[:12]}"
    spark.sql(f"CREATE DATABASE {database}")
    try:
        yield Lake(database, spark)
    finally:
        spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")


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
