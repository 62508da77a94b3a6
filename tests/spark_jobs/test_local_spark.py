"""The tests' local Spark starts with spark_jobs/local_spark.py's settings, its driver JVM's options included
(the Spark Connect server and a task's local session get the same settings through spark-submit's `--conf`)."""

from __future__ import annotations

import json

from pyspark.sql import SparkSession
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from spark_jobs.local_spark import SMALL_DATA_CONF
from tests.spark_jobs.conftest import Lake


def test_the_driver_jvm_starts_with_the_options_the_settings_give_it(spark: SparkSession) -> None:
    # A JVM option given as a Spark setting only counts when the JVM is started with it: pyspark passes the
    # builder's settings to spark-submit, which puts them on the `java` command line. Given to a running
    # JVM, the setting would only be copied into the session's configuration.
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()  # type: ignore[union-attr]
    wanted = SMALL_DATA_CONF["spark.driver.defaultJavaOptions"].split()

    assert "-XX:+UseParallelGC" in wanted
    assert set(wanted) <= set(runtime.getInputArguments())


def test_a_local_table_records_each_file_s_row_count_and_no_column_statistics(lake: Lake) -> None:
    assert lake.spark is not None
    warehouse = lake.warehouse()
    schema = StructType([StructField("id", IntegerType()), StructField("name", StringType())])
    warehouse.ensure_table("t", schema)  # as the tasks make their tables: deletion vectors on
    # One file of three rows: a DELETE of one of them keeps the file and marks the row in a deletion vector,
    # which needs the file's row count.
    warehouse.append("t", lake.spark.createDataFrame([(1, "a"), (2, "b"), (3, "c")], schema).coalesce(1))
    warehouse.delete_where("t", "id = 2")

    commits = [
        [json.loads(line)["add"] for line in path.read_text().splitlines() if line.startswith('{"add"')]
        for path in sorted((lake.location.path("t") / "_delta_log").glob("*.json"))
    ]
    inserted, deleted = commits[1], commits[2]
    assert [json.loads(add["stats"])["numRecords"] for add in inserted] == [3]
    assert all(set(json.loads(add["stats"])) <= {"numRecords", "tightBounds"} for add in inserted + deleted)
    assert [add["deletionVector"]["cardinality"] for add in deleted] == [1]
    assert warehouse.read("t").count() == 2
