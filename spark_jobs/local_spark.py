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
# For the same reason:
# - the driver JIT-compiles with C1 only: many small, different queries, where C2's compiling costs more
#   CPU than it saves (the tests' 3-day load: 20 % less JVM CPU);
# - adaptive execution is off: it re-plans after every shuffle stage, and a batch's history queries
#   have many stages of a few rows each, where nothing is left to adapt (the batch job's sample day:
#   merge_targets used a fifth less JVM CPU; bench/results/test-time.md, session 15);
# - so shuffles keep a fixed, small number of partitions, which is also how many files a write makes.
SMALL_DATA_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
}
