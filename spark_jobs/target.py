"""The target task's work: one batch's stage rows merged into `<dataset>` in one MERGE."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from filegate.contracts import Contract
from filegate.errors import FilegateError
from spark_jobs.changes import distinct_versions, history_changes, latest_per_key
from spark_jobs.columns import INGESTED_AT, REASON, target_schema
from spark_jobs.merge import SOURCE, TARGET, content_text, merge_for
from spark_jobs.stage import StageCounts, stage_table, staged_rows
from spark_jobs.warehouse import Warehouse


class TargetLoadError(FilegateError):
    """The target task could not read what it needs from the batch's tables."""


@dataclass(frozen=True)
class TargetCounts:
    """What one batch did to the target.

    Every row read is counted once: rejected, superseded (another row of the file, same key, outranks
    it, or for SCD2 it repeats a version), inserted, updated or unchanged (the target already had it
    or outranks it). For SCD2 `updated` counts existing versions re-bounded, which are not rows read.
    `tied` are rows whose key the target holds at the same sequence value with other content; they
    are also among the updated (they outranked it) or the unchanged.
    """

    read: int
    rejected: int
    superseded: int
    inserted: int
    updated: int
    unchanged: int
    tied: int
    started_at: datetime | None


def target_table(contract: Contract) -> str:
    """The contract's `target_table`, or the dataset's own name."""
    return contract.target


def batch_summary(stage: DataFrame, contract: Contract) -> tuple[StageCounts, int | None, datetime | None]:
    """How the stage task split the batch, how many SCD2 versions its good rows hold (None for SCD1, whose
    versions `source_counts` counts with the ties), and when its run started.

    One aggregate over the batch's stage rows, which carry every row read with its verdict.
    """
    good = F.col(REASON).isNull()
    counted = [
        F.count_if(good).alias("staged"),
        F.count_if(~good).alias("rejected"),
        F.min(INGESTED_AT).alias("started"),
    ]
    if contract.scd_type == 2:
        # One version per key and sequence value. A rejected row counts as no version: its columns are
        # all NULL here, which count_distinct skips.
        version_columns = [*contract.keys, contract.sequence_by]
        counted.append(F.count_distinct(*(F.when(good, F.col(name)) for name in version_columns)).alias("versions"))
    found = stage.agg(*counted).first()
    if found is None:
        # A global aggregate always yields one row; none means the engine answered something else.
        raise TargetLoadError("counting the batch's stage rows returned no result")
    counts = StageCounts(staged=found["staged"], rejected=found["rejected"])
    return counts, found["versions"] if contract.scd_type == 2 else None, found["started"]


def merge_source(stage: DataFrame, existing: DataFrame, contract: Contract) -> DataFrame:
    """The rows the MERGE applies: latest per key (SCD1) or the changed versions (SCD2)."""
    if contract.scd_type == 2:
        return history_changes(distinct_versions(stage, contract), existing, contract)
    return latest_per_key(stage, contract)


def source_counts(source: DataFrame, existing: DataFrame, contract: Contract) -> tuple[int, int]:
    """An SCD1 MERGE source's rows (one per key: the file's versions) and its ties: rows whose key the target
    holds at the same sequence value, with other content. One join, one pass over the source."""
    sequence = contract.sequence_by
    on = [F.col(f"{SOURCE}.{key}") == F.col(f"{TARGET}.{key}") for key in contract.keys]
    on.append(F.col(f"{SOURCE}.{sequence}") == F.col(f"{TARGET}.{sequence}"))
    # A target key is never NULL, so a NULL one marks a source row the target does not hold.
    matched = F.col(f"{TARGET}.{contract.keys[0]}").isNotNull()
    differ = F.expr(content_text(contract, SOURCE)) != F.expr(content_text(contract, TARGET))
    found = (
        source.alias(SOURCE)
        .join(existing.alias(TARGET), on=on, how="left")
        .agg(F.count(F.lit(1)).alias("rows"), F.count_if(matched & differ).alias("tied"))
        .first()
    )
    return (int(found["rows"]), int(found["tied"])) if found is not None else (0, 0)


def load_target(warehouse: Warehouse, contract: Contract, batch_id: str) -> TargetCounts:
    """Merge the batch's stage rows into the target, creating it on the first run."""
    if contract.delete_when:
        # Said before anything is written: ignoring it would keep rows the producer meant to delete.
        raise TargetLoadError(
            f"{contract.name}: delete_when is applied by the batch job (datasets of a pipeline), not the ingest job"
        )
    schema = target_schema(contract)
    table = target_table(contract)
    warehouse.ensure_table(table, schema)
    staged, scd2_versions, started_at = batch_summary(warehouse.read_batch(stage_table(contract), batch_id), contract)
    stage = staged_rows(warehouse, contract, batch_id)

    def source() -> DataFrame:
        # Built again for each attempt: for SCD2 it is computed from the target, which a concurrent
        # run may have changed when Delta refused this run's commit.
        return merge_source(stage, warehouse.read(table), contract).select(*schema.fieldNames())

    if scd2_versions is not None:
        # SCD2 keeps every version, so a tie there is the same version twice: the target's copy stays.
        versions, tied = scd2_versions, 0
    elif staged.staged:
        versions, tied = source_counts(source(), warehouse.read(table), contract)
    else:
        versions, tied = 0, 0
    superseded = staged.staged - versions
    if versions == 0:
        return TargetCounts(staged.read, staged.rejected, superseded, 0, 0, 0, 0, started_at)
    counts = warehouse.merge(table, source, merge_for(contract, schema.fieldNames()))
    # A new SCD2 version inserted for an existing key is a change of that key, not a new key.
    inserted = counts.inserted
    unchanged = versions - inserted if contract.scd_type == 2 else versions - inserted - counts.updated
    return TargetCounts(staged.read, staged.rejected, superseded, inserted, counts.updated, unchanged, tied, started_at)


def release_stage(warehouse: Warehouse, contract: Contract, batch_id: str) -> None:
    """Delete the batch's stage rows once the target holds them; re-running the batch stages them again."""
    warehouse.delete_batch(stage_table(contract), batch_id)
