"""The target task's work: one batch's stage rows merged into `<dataset>` in one MERGE."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, TimestampType

from filegate.contracts import Contract
from filegate.errors import FilegateError
from spark_jobs.changes import distinct_versions, history_changes, latest_per_key
from spark_jobs.columns import INGESTED_AT, REASON, WARNINGS, sequence_type, target_schema
from spark_jobs.merge import SOURCE, TARGET, content_text, merge_for, tagged
from spark_jobs.processing_log import succeeded_at
from spark_jobs.stage import StageCounts, stage_table, staged_rows
from spark_jobs.target_definition import ensure_target
from spark_jobs.warehouse import MergeCounts, Warehouse, sql_string

# The task that merges a batch and logs it; its SUCCEEDED row tells a retry what was logged before.
TASK = "target_load"


class TargetLoadError(FilegateError):
    """The target task could not read what it needs from the batch's tables."""


@dataclass(frozen=True)
class TargetCounts:
    """What one batch did to the target.

    Every row read is counted once: rejected, superseded (another row of the file, same key, outranks
    it, or for SCD2 it repeats a version), inserted (SCD2: opened a version), updated (SCD2: a tie's
    winner, which replaced the target's version of its instant) or unchanged (the target already had
    it or outranks it). `tied` are rows whose key the target holds at the same sequence value with
    other content; they are also among the updated (they outranked it) or the unchanged. For SCD2,
    `versions` is what the MERGE did to the versions: a new version also re-bounds its predecessor,
    which no row read did.
    """

    read: int
    rejected: int
    superseded: int
    inserted: int
    updated: int
    unchanged: int
    tied: int
    started_at: datetime | None
    versions: MergeCounts | None = None

    @property
    def changed_target(self) -> bool:
        """Whether the MERGE wrote anything (a re-bound version is a change no row is counted for)."""
        return bool(
            self.inserted or self.updated or (self.versions and (self.versions.inserted or self.versions.updated))
        )


def target_table(contract: Contract) -> str:
    """The contract's `target_table`, or the dataset's own name."""
    return contract.target


@dataclass(frozen=True)
class BatchSummary:
    """How the stage task split the batch, and what the MERGE's source will hold, from one aggregate."""

    counts: StageCounts
    # The versions the good rows hold: one per key (SCD1, the newest wins) or per key and instant (SCD2).
    versions: int
    # The good rows' first and last sequence values (None when there is none), as `_bound` gives them.
    first: Any
    last: Any
    started_at: datetime | None


def _bound(value: Column, data_type: DataType) -> Column:
    """A sequence value in a form that comes back from the driver unchanged: a timestamp as its microseconds
    (a local datetime can shift by the hour a clock turns back), any other type as itself."""
    return F.unix_micros(value) if isinstance(data_type, TimestampType) else value


def _bound_literal(value: Any, data_type: DataType) -> Column:
    """The literal of a value `_bound` gave."""
    return F.timestamp_micros(F.lit(value)) if isinstance(data_type, TimestampType) else F.lit(value)


def batch_summary(stage: DataFrame, contract: Contract) -> BatchSummary:
    """The batch's counts, versions, sequence range and start, in one aggregate over its stage rows (which
    carry every row read with its verdict).

    A rejected row counts as no version: its columns are all NULL here, which count_distinct skips.
    """
    good = F.col(REASON).isNull()
    sequence = contract.sequence_by
    data_type = sequence_type(contract)
    version_columns = [*contract.keys] if contract.scd_type == 1 else [*contract.keys, sequence]
    found = stage.agg(
        F.count_if(good).alias("staged"),
        F.count_if(~good).alias("rejected"),
        F.count_distinct(*(F.when(good, F.col(name)) for name in version_columns)).alias("versions"),
        _bound(F.min(F.when(good, F.col(sequence))), data_type).alias("first"),
        _bound(F.max(F.when(good, F.col(sequence))), data_type).alias("last"),
        F.min(INGESTED_AT).alias("started"),
    ).first()
    if found is None:
        raise _no_result("counting the batch's stage rows")
    counts = StageCounts(staged=found["staged"], rejected=found["rejected"])
    return BatchSummary(counts, found["versions"], found["first"], found["last"], found["started"])


def _no_result(what: str) -> TargetLoadError:
    # A global aggregate always yields one row; none means the engine answered something else.
    return TargetLoadError(f"{what} returned no result")


def batch_versions(stage: DataFrame, contract: Contract) -> DataFrame:
    """The versions the batch's good stage rows hold: the newest per key (SCD1), one per key and instant (SCD2)."""
    return latest_per_key(stage, contract) if contract.scd_type == 1 else distinct_versions(stage, contract)


def merge_source(stage: DataFrame, existing: DataFrame, contract: Contract) -> DataFrame:
    """The rows the MERGE applies: latest per key (SCD1) or the changed versions (SCD2)."""
    versions = batch_versions(stage, contract)
    return history_changes(versions, existing, contract) if contract.scd_type == 2 else versions


@dataclass(frozen=True)
class Ties:
    """Rows whose key the target holds at the same sequence value with other content, and how many outrank it."""

    tied: int
    won: int


def tied_rows(stage: DataFrame, existing: DataFrame, contract: Contract, summary: BatchSummary) -> Ties:
    """How many of the batch's versions (one per key for SCD1, per key and instant for SCD2, built from its good
    `stage` rows) tie with the target's row.

    Only a target row whose sequence value lies in the batch's range can tie, so the target is read
    through that range, as literals, and Delta can skip every file whose statistics lie outside it. A
    MERGE into a table with deletion vectors writes the rows it changes into new files, so a batch of
    recent rows reads the recent files, and the count's cost follows the batch, not the target
    (bench/results/merge.md, session 24). It cannot skip when the range spans the target (a late row
    in the file, a full extract), when compaction mixed the ranges in its files, or when the sequence
    column is past the first 32, which Delta keeps statistics of; then it reads the target, as it did
    before. A range that holds no target row costs one pass over the batch's rows, and no ranking.
    """
    sequence = contract.sequence_by
    data_type = sequence_type(contract)
    first, last = (_bound_literal(value, data_type) for value in (summary.first, summary.last))
    in_range = existing.where(F.col(sequence).between(first, last))
    # A key's versions come from its own rows alone, so they are built only for the keys the target holds in
    # that range: for a batch of newer rows (the usual case) none. Ranking every row of the batch took a
    # third of the target task, 4.7 of 14.6 s for a 1M-row file (bench/results/merge.md, session 43).
    keys = list(contract.keys)
    versions = batch_versions(stage.join(in_range.select(*keys), on=keys, how="left_semi"), contract)
    on = [F.col(f"{SOURCE}.{key}") == F.col(f"{TARGET}.{key}") for key in keys]
    on.append(F.col(f"{SOURCE}.{sequence}") == F.col(f"{TARGET}.{sequence}"))
    incoming, held = F.expr(content_text(contract, SOURCE)), F.expr(content_text(contract, TARGET))
    joined = versions.alias(SOURCE).join(in_range.alias(TARGET), on=on, how="inner")
    found = joined.agg(F.count_if(incoming != held).alias("tied"), F.count_if(incoming > held).alias("won")).first()
    if found is None:
        raise _no_result("counting the batch's ties")
    return Ties(int(found["tied"]), int(found["won"]))


def refuse_batch_job_settings(contract: Contract) -> None:
    """Refuse a contract the ingest job cannot honour; both of its tasks call this before writing anything.

    Ignoring one of these settings would keep rows the producer meant to delete, open versions the
    contract said not to track, or never close a key a snapshot left out.
    """
    if contract.batch_job_settings:
        raise TargetLoadError(
            f"{contract.name}: {', '.join(contract.batch_job_settings)} applied by the batch job only (datasets of a "
            "pipeline), not the ingest job: add the dataset to a pipeline, or remove them from its contract"
        )


def load_target(warehouse: Warehouse, contract: Contract, batch_id: str) -> TargetCounts:
    """Merge the batch's stage rows into the target, creating it on the first run."""
    refuse_batch_job_settings(contract)
    schema = target_schema(contract)
    table = target_table(contract)
    ensure_target(warehouse, contract, schema)
    summary = batch_summary(warehouse.read_batch(stage_table(contract), batch_id), contract)
    staged, versions, started_at = summary.counts, summary.versions, summary.started_at
    stage = staged_rows(warehouse, contract, batch_id)
    attempts: list[Ties] = []

    def source() -> DataFrame:
        # Built again for each attempt: for SCD2 it is computed from the target, which a concurrent
        # run may have changed when Delta refused this run's commit. The ties are counted again with
        # it, so that the log counts what the committed attempt found, not what the first one did. A
        # commit that lands between the count and the MERGE's start is not in the count; one that lands
        # during the MERGE makes it retry. A tie is a version the target holds at the same instant with
        # other content: for SCD2 one of the batch's versions, not the MERGE source, which holds only the
        # versions that change the target.
        existing = warehouse.read(table)
        attempts.append(tied_rows(stage, existing, contract, summary))
        return merge_source(stage, existing, contract).select(*schema.fieldNames())

    superseded = staged.staged - versions
    if versions == 0:
        nothing = MergeCounts(0, 0) if contract.scd_type == 2 else None
        return TargetCounts(staged.read, staged.rejected, superseded, 0, 0, 0, 0, started_at, nothing)
    spec = tagged(merge_for(contract, schema.fieldNames()), sql_string(batch_id))
    counts = warehouse.merge(table, source, spec)
    ties = attempts[-1]
    if not (counts.inserted or counts.updated or counts.deleted):
        counts = _unlogged_merge(warehouse, contract, batch_id, started_at) or counts
    # SCD2 counts rows too: a row that opened a version is inserted, also for a key the target had. The
    # MERGE's updated versions are mostly re-bounded ones, which no row read did; of the rows read only
    # a tie's winner, which replaced the target's version of its instant, updated one.
    inserted = counts.inserted
    if contract.scd_type == 1:
        unchanged = versions - inserted - counts.updated
        return TargetCounts(
            staged.read, staged.rejected, superseded, inserted, counts.updated, unchanged, ties.tied, started_at
        )
    unchanged = versions - inserted - ties.won
    return TargetCounts(
        staged.read, staged.rejected, superseded, inserted, ties.won, unchanged, ties.tied, started_at, counts
    )


def _unlogged_merge(
    warehouse: Warehouse, contract: Contract, batch_id: str, staged_at: datetime | None
) -> MergeCounts | None:
    """What an earlier attempt's MERGE of this batch did, when that attempt died before its log row.

    A MERGE that changed nothing may be a retry after such an attempt: its rows are in the target, so
    this one found them all unchanged, and the log would never count them. The batch's MERGE commit is
    then found in the target's history, and its counts stand in for this attempt's, unless a
    SUCCEEDED row already logged them (a batch run again after it was loaded changes nothing, and says
    so). The ties the earlier MERGE won are not in its commit: on such a retry they count as unchanged.
    """
    if succeeded_at(warehouse, batch_id, contract.name, TASK) is not None:
        return None  # logged already: cheaper to ask first than to read the target's history
    earlier = warehouse.merged_before(target_table(contract), batch_id, staged_at)
    if earlier is None:
        return None
    print(
        f"{TASK}: batch {batch_id} was merged by an earlier attempt that logged nothing; its MERGE's counts are "
        "logged now"
    )
    return earlier


def warning_counts(warehouse: Warehouse, contract: Contract, batch_id: str) -> dict[str, int]:
    """How many of the batch's good rows each `warn` check flagged: the stage rows carry them, and go once merged.

    One small aggregate, only for a contract with such a check; the target keeps no `_warnings` column.
    """
    if not any(check.action == "warn" for check in contract.checks):
        return {}
    flagged = staged_rows(warehouse, contract, batch_id).select(F.explode(WARNINGS).alias("rule"))
    return {row["rule"]: int(row["count"]) for row in flagged.groupBy("rule").count().collect()}


def release_stage(warehouse: Warehouse, contract: Contract, batch_id: str) -> None:
    """Delete the batch's stage rows once the target holds them; re-running the batch stages them again."""
    warehouse.delete_batch(stage_table(contract), batch_id)
