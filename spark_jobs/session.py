"""Building the Spark session the tasks run in."""

from __future__ import annotations

from pyspark.sql import SparkSession


def build_session(app_name: str, *, on_databricks: bool) -> SparkSession:
    """Databricks' own session there, else the active or a small local one; always on UTC."""
    if on_databricks:
        session = SparkSession.builder.getOrCreate()
    else:
        session = SparkSession.getActiveSession() or (
            SparkSession.builder.appName(app_name)
            .master("local[*]")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .getOrCreate()
        )
    # Contract timestamps without an offset are UTC; the session zone decides how Spark reads them.
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session
