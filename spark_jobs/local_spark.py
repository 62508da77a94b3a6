"""How a local Spark runs the tasks' small files: settings for tests, `make demo` and the local Jobs API.

Databricks configures its own clusters and serverless; none of this reaches it. Nothing here imports
pyspark: the local Jobs API starts its Spark Connect server with these settings too.
"""

from __future__ import annotations

# Code generation compiles Java for every new query plan: measured on the sample files (a few hundred
# rows), compiling and caching the generated source was 42 % of the driver's CPU, more than running
# the queries. Interpreted evaluation gives the same results (Spark tests both paths) and cut the
# JVM's CPU for three batches through both tasks from 124 s to 84 s. For files of millions of rows
# codegen would pay again; that is Databricks' work, not a local Spark's.
# For the same reason adaptive execution is off: it re-plans after every shuffle stage, and a batch's
# history queries have many stages of a few rows each, where nothing is left to adapt (the batch job's
# two sample days: merge_targets used a fifth less JVM CPU); shuffles then keep a fixed number of
# partitions, which is also how many files a write makes. One partition, for shuffles and for what Spark
# splits by default: a local batch is a few hundred rows, so a second partition only adds a task to
# schedule and serialize per stage and a file per write. The batch job's two sample days took 4 % less
# JVM CPU than with two, in each of two pairs of runs started together (session 50).
# The JIT is left as it is (C1 then C2): limiting it to C1 saved CPU only in a fresh JVM's first batch;
# the test session, the tasks' session and the Spark Connect server live for many batches, where C2's
# code pays back (two sample days: 24 % less wall time with C2; the demo's batch runs 35 % faster).
# The parallel garbage collector instead of G1: a local JVM of small batches wants throughput. With G1
# the demo's Spark Connect server took 240 s of CPU, with the parallel collector 189 s (session 19); the
# batch-job test's two sample days in a fresh session took 2 to 14 % less JVM CPU with it, in each of
# four pairs of runs (session 27). Passed as a setting, so the test session, a task's local session and
# the Connect server (`--conf` of spark-submit) all start their driver JVM with it. As the driver's
# default options, which Spark puts before `spark.driver.extraJavaOptions`: options given there (a
# profiler, say) add to it. A second collector flag anywhere else (`-XX:+UseG1GC` in
# `spark.driver.extraJavaOptions`, SPARK_SUBMIT_OPTS or JAVA_TOOL_OPTIONS) makes the JVM refuse to start
# ("Multiple garbage collectors selected"); to compare collectors, replace this setting instead.
# Column statistics off for the tables a local Spark creates (a default table property, recorded in each
# new table): Delta computes min, max and null count of the first 32 columns of every file it writes, to
# skip files in later reads. A local table of a few hundred rows has one or two files per commit, so
# nothing is skipped, and on the e-commerce sample days the statistics were about 6 % of the JVM's CPU
# (four pairs, session 40). Each file still records its row count, which deletion vectors need.
# Figures and commands: bench/results/test-time.md, sessions 15, 19, 27, 40 and 50.
SMALL_DATA_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.shuffle.partitions": "1",
    "spark.default.parallelism": "1",
    "spark.driver.defaultJavaOptions": "-XX:+UseParallelGC",
    "spark.databricks.delta.properties.defaults.dataSkippingNumIndexedCols": "0",
}
