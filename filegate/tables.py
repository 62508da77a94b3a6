"""The names of the tables and columns the Spark job writes, in one place that imports no pyspark.

The job (spark_jobs/), the demo's report (local_world/) and anything else that reads the tables take
the names from here, so a rename cannot leave a reader looking for a column that is gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from filegate.contracts import Contract

# One row per job run (spark_jobs/processing_log.py writes it).
PROCESSING_LOG = "processing_log"

# The batch job's scores: one row per rule, per dataset and per batch (spark_jobs/batch_validate.py).
VALIDATION_RESULTS = "validation_results"
# ... and one row per failing row per rule, with its key.
VALIDATION_FAILURES = "validation_failures"

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


def observations_table(target: str) -> str:
    """`<target>_observations`: an SCD2 target's loaded rows, which the batch job rebuilds its history from."""
    return f"{target}_observations"


def deletes_table(target: str) -> str:
    """`<target>_deletes`: the newest `delete_when` row of each key an SCD1 target was told to delete."""
    return f"{target}_deletes"


def job_tables(contracts: Iterable[Contract]) -> dict[str, str]:
    """Every table the jobs write for these datasets, and what it holds: a derived table of one of these
    names would replace it (`CREATE OR REPLACE`), losing the rejects, the history or the scores."""
    owned = {
        PROCESSING_LOG: "the jobs' processing log",
        VALIDATION_RESULTS: "the batch job's scores",
        VALIDATION_FAILURES: "the batch job's failing rows",
    }
    for contract in contracts:
        owned[contract.name] = f"dataset {contract.name}"
        owned.update(dataset_tables(contract))
    return owned


def dataset_tables(contract: Contract, *, target: bool = True) -> dict[str, str]:
    """The tables the jobs write for one dataset (its target unless not `target`, stage and rejects, ...), and
    what each holds."""
    owned = {contract.target: f"the target of {contract.name}"} if target else {}
    owned |= {
        stage_table(contract.name): f"the stage of {contract.name}",
        rejects_table(contract.name): f"the rejects of {contract.name}",
    }
    if contract.scd_type == 2:
        owned[observations_table(contract.target)] = f"the history observations of {contract.name}"
    elif contract.delete_when:
        owned[deletes_table(contract.target)] = f"the deletes of {contract.name}"
    return owned
