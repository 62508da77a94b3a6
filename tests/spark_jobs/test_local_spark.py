"""The tests' local Spark starts with spark_jobs/local_spark.py's settings, its driver JVM's options included
(the Spark Connect server and a task's local session get the same settings through spark-submit's `--conf`)."""

from __future__ import annotations

from pyspark.sql import SparkSession

from spark_jobs.local_spark import SMALL_DATA_CONF


def test_the_driver_jvm_starts_with_the_options_the_settings_give_it(spark: SparkSession) -> None:
    # A JVM option given as a Spark setting only counts when the JVM is started with it: pyspark passes the
    # builder's settings to spark-submit, which puts them on the `java` command line. Given to a running
    # JVM, the setting would only be copied into the session's configuration.
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()  # type: ignore[union-attr]
    wanted = SMALL_DATA_CONF["spark.driver.defaultJavaOptions"].split()

    assert "-XX:+UseParallelGC" in wanted
    assert set(wanted) <= set(runtime.getInputArguments())
