"""Building the Spark session the tasks run in."""

from __future__ import annotations

from pyspark.sql import SparkSession

from spark_jobs.delta_jars import delta_spark_conf
from spark_jobs.local_spark import SMALL_DATA_CONF


def build_session(app_name: str, *, on_databricks: bool, remote: str | None = None) -> SparkSession:
    """Databricks' own session there, a Spark Connect one for `remote`, else the active or a small local one.

    The local one loads Delta Lake from the project's jars (`make jars`). Always on UTC. Serverless
    Databricks is Spark Connect too, so the local Connect path runs the same client-side code as production.
    """
    local: dict[str, bool | float | int | str | None] = {}
    if on_databricks:
        session = SparkSession.builder.getOrCreate()
    elif remote:
        session = SparkSession.builder.remote(remote).appName(app_name).getOrCreate()
    else:
        local.update(delta_spark_conf())
        local.update(SMALL_DATA_CONF)
        session = SparkSession.getActiveSession() or (
            SparkSession.builder.appName(app_name)
            .master("local[*]")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config(map=local)
            .getOrCreate()
        )
    # Contract timestamps without an offset are UTC; the session zone decides how Spark reads them.
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session
