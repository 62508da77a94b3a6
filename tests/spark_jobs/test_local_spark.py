"""A local Spark starts with spark_jobs/local_spark.py's settings, its driver JVM's options included."""

from __future__ import annotations

from pyspark.sql import SparkSession


def test_the_driver_jvm_runs_the_parallel_collector_the_settings_choose(spark: SparkSession) -> None:
    # A JVM option given as a Spark setting only counts when the JVM is started with it (pyspark passes the
    # builder's settings to spark-submit); given to a running JVM, it would be ignored without a word.
    management = spark.sparkContext._jvm.java.lang.management.ManagementFactory  # type: ignore[union-attr]

    collectors = sorted(bean.getName() for bean in management.getGarbageCollectorMXBeans())

    assert collectors == ["PS MarkSweep", "PS Scavenge"]
