"""The names of the tables and columns the Spark job writes, in one place that imports no pyspark.

The job (spark_jobs/), the demo's report (local_world/) and anything else that reads the tables take
the names from here, so a rename cannot leave a reader looking for a column that is gone.
"""

from __future__ import annotations

# One row per job run (spark_jobs/processing_log.py writes it).
PROCESSING_LOG = "processing_log"

# The batch job's scores: one row per rule, per dataset and per batch (spark_jobs/batch_validate.py).
VALIDATION_RESULTS = "validation_results"

# Two of the analytics tables the batch job's derive_tables task builds (issue 17); the demo shows them.
ANALYTICS_SUMMARY = "analytics_summary"
SEGMENT_ANALYSIS = "segment_analysis"

# Lineage: the columns every staged and target row carries about where it came from.
BATCH_ID = "_batch_id"
SOURCE_FILE = "_source_file"
INGESTED_AT = "_ingested_at"

# History (SCD type 2 targets): each version's validity.
EFFECTIVE_FROM = "effective_from"
EFFECTIVE_TO = "effective_to"
IS_CURRENT = "is_current"

# Derived tables (the pipeline's `[[tables]]`): the business date each row was built as of.
AS_OF_DATE = "as_of_date"

# Rejected rows: why, which rules, and the line as it was read.
REASON = "reason"
RULES = "rules"
RAW_LINE = "raw_line"


def stage_table(dataset: str) -> str:
    """The table a dataset's rows are staged in, each with its verdict, before the MERGE."""
    return f"{dataset}_stage"


def rejects_table(dataset: str) -> str:
    """The table a dataset's rejected rows go to, each with its reason."""
    return f"{dataset}_rejects"
