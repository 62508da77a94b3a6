"""One local SparkSession for every Spark test, and helpers to run the two tasks as the job does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
TEST_CONTRACTS = Path(__file__).with_name("contracts")


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """A small local session on UTC, shared by the whole test session."""
    session = (
        SparkSession.builder.appName("filegate-tests")
        .master("local[2]")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


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
