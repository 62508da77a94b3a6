"""Entry point of the batch job's `merge_targets` task: merge every member's target, parents first.

Each member's batch rows are its staged rows minus the ones `validate` quarantined. Targets are
merged one at a time in relation order (customers and products before orders, orders before
shipping), so a child never lands in a target before its parent. Every existing target's definition
(keys, SCD type, sequence column) is checked before the first merge, so a changed one is refused with
nothing of the batch merged. Each merge is its own transaction:
a failure midway leaves earlier targets merged, and the task's retry redoes every member, which
changes nothing where the merge already happened (history is rebuilt from the observations). Once
the whole batch completed its stage rows are released, and the task, run again, is skipped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

if __package__ in (None, "") and "__file__" in globals():
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from filegate import tables
from filegate.contracts import BUSINESS_DATE, Contract, quoted_name
from spark_jobs.batch import (
    MERGE_TASK,
    BatchContext,
    refuse_failed_validation,
    refuse_partly_staged,
    run_batch_task,
    skip_completed,
)
from spark_jobs.batch_validate import FAILURES, quarantined_keys
from spark_jobs.changes import latest_per_key
from spark_jobs.columns import BATCH_ID, REASON, stage_schema, target_schema
from spark_jobs.contract_sql import deletes
from spark_jobs.history import merge_history, refuse_unsequenced_snapshot
from spark_jobs.merge import SOURCE, TARGET, latest_wins_merge, newer_condition
from spark_jobs.pipeline_rules import parse_checks
from spark_jobs.processing_log import RunRecord, append_failing_runs, append_runs
from spark_jobs.stage import stage_table, staged_good, staged_rows
from spark_jobs.target_definition import ensure_target, refuse_changed_target
from spark_jobs.warehouse import MergeCounts, Warehouse, driver_rows

TASK = MERGE_TASK
T = TypeVar("T")
_QUARANTINED = "_quarantined"
_DELETED = "_deleted"


def _quarantined(context: BatchContext, contract: Contract) -> DataFrame | None:
    """The keys `validate` quarantined in this batch of the member (None before any validation)."""
    failures = context.warehouse.read_if_exists(FAILURES)
    if failures is None:
        return None
    return quarantined_keys(failures, contract, context.manifest.batch_id).select(*contract.keys).distinct()


def batch_rows(context: BatchContext, contract: Contract, keys: DataFrame | None) -> tuple[DataFrame, int, int]:
    """The member's staged rows of this batch without the quarantined `keys` (`_quarantined`); how many rows were
    staged, and how many of them were quarantined (one query for both; an SCD2 merge counts them in the
    query that counts what each row did, `history.row_effects`)."""
    staged = staged_rows(context.warehouse, contract, context.manifest.batch_id)
    if keys is None:
        return staged, int(staged.count()), 0
    flagged = staged.join(keys.withColumn(_QUARANTINED, F.lit(True)), on=list(contract.keys), how="left")
    found = flagged.agg(F.count(F.lit(1)).alias("rows"), F.count(F.col(_QUARANTINED)).alias("quarantined")).first()
    rows, quarantined = (int(found["rows"]), int(found["quarantined"])) if found is not None else (0, 0)
    return staged.join(keys, on=list(contract.keys), how="left_anti"), rows, quarantined


def good_batch_rows(context: BatchContext, contract: Contract) -> DataFrame:
    """The member's staged rows of this batch that passed: without rejected rows and quarantined keys (empty if
    never staged). Every row as staged: one a newer row of its key superseded in the merge is kept too."""
    stage = context.warehouse.read_if_exists(stage_table(contract))
    if stage is None:
        return driver_rows(context.spark, [], stage_schema(contract))
    staged = staged_good(stage.where(F.col(BATCH_ID) == F.lit(context.manifest.batch_id)), contract)
    keys = _quarantined(context, contract)
    return staged if keys is None else staged.join(keys, on=list(contract.keys), how="left_anti")


def held_back(context: BatchContext, contract: Contract, quarantined: DataFrame | None) -> DataFrame:
    """The keys and date of the member's rows of this batch that the stage rejected or `validate` quarantined
    (`quarantined`, from `_quarantined`).

    For a snapshot: the key of a row held back was in the snapshot, so its version must not be closed
    (`history.held_markers`). A rejected row's key is as the stage parsed it (NULL when unreadable), also
    a misshapen row's: a stray separator in a later field leaves the key in place, the usual case, and a
    key read from another column keeps open only a key it equals exactly.
    """
    keys = list(contract.keys)
    stage = context.warehouse.read_batch(stage_table(contract), context.manifest.batch_id)
    if quarantined is None:
        held = stage.where(F.col(REASON).isNotNull())
    else:
        flagged = stage.join(quarantined.withColumn(_QUARANTINED, F.lit(True)), on=keys, how="left")
        held = flagged.where(F.col(REASON).isNotNull() | F.col(_QUARANTINED).isNotNull())
    return held.select(*keys, BUSINESS_DATE)


def merge_member(context: BatchContext, contract: Contract) -> RunRecord:
    """Merge one member into its target; its processing_log row.

    Every staged row of the batch is counted once: rows_read = quarantined + superseded + inserted +
    updated + unchanged. For SCD2 these are rows, not versions (`history.HistoryCounts`): inserted
    opened a version, updated changed the version it ends, unchanged changed nothing; what the MERGE
    did to the versions (a new version also re-bounds its predecessor) is in `details`; deleted is a
    `delete_when` row that closed a version. For SCD1 a key's newest row is inserted, replaces the
    target's row (updated), deletes it (a `delete_when` row), or is outranked by it (unchanged).
    """
    started = datetime.now(UTC)
    quarantined_keys = _quarantined(context, contract)
    details: dict[str, object] = {"scd_type": contract.scd_type, "load": contract.load}
    if contract.scd_type == 2:
        # The rows are counted, the quarantined ones too, in the query that counts what each row did.
        staged = staged_rows(context.warehouse, contract, context.manifest.batch_id)
        rows, set_aside = staged, None
        if quarantined_keys is not None:
            rows = staged.join(quarantined_keys, on=list(contract.keys), how="left_anti")
            set_aside = staged.join(quarantined_keys, on=list(contract.keys), how="left_semi")
        held = held_back(context, contract, quarantined_keys) if contract.load == "snapshot" else None
        on = context.manifest.business_date if contract.load == "snapshot" else None
        counts = merge_history(context.warehouse, contract, rows, context.manifest.batch_id, held, set_aside, on)
        read, quarantined = counts.rows + counts.set_aside, counts.set_aside
        superseded, inserted, updated, unchanged = counts.superseded, counts.opened, counts.changed, counts.unchanged
        deleted = counts.closed
        details["versions"] = {"inserted": counts.inserted, "updated": counts.updated, "deleted": counts.deleted}
    else:
        rows, read, quarantined = batch_rows(context, contract, quarantined_keys)
        # The MERGE's source holds one row per key, so its counts are rows: the other rows of a key are superseded.
        keys = int(rows.select(*contract.keys).distinct().count())
        merged = merge_latest(context.warehouse, contract, rows)
        inserted, updated, deleted = merged.inserted, merged.updated, merged.deleted
        superseded, unchanged = read - quarantined - keys, keys - inserted - updated - deleted
    print(
        f"{TASK}: {contract.name} into {contract.target}: {read} rows: {quarantined} quarantined, "
        f"{superseded} superseded, {inserted} inserted, {updated} updated, {unchanged} unchanged, {deleted} deleted"
    )
    return context.record(
        TASK,
        **context.member_fields(contract.name, contract.target),
        started_at=started,
        rows_read=read,
        rows_quarantined=quarantined,
        rows_superseded=superseded,
        rows_inserted=inserted,
        rows_updated=updated,
        rows_unchanged=unchanged,
        rows_deleted=deleted,
        details=json.dumps(details),
    )


def deletes_table(contract: Contract) -> str:
    """`<target>_deletes`: the newest `delete_when` row of each key an SCD1 target was told to delete."""
    return tables.deletes_table(contract.target)


def merge_latest(warehouse: Warehouse, contract: Contract, rows: DataFrame) -> MergeCounts:
    """SCD1: each key's newest row replaces an older one, or deletes it when it matches `delete_when`.

    A delete is remembered (`deletes_table`), as AUTO CDC keeps SCD1 tombstones: a row of the key that
    does not outrank it (older, or of the same instant with lesser content) is not inserted again when it
    arrives later, so the target is the same whichever order the files come in. The deletes are merged
    first, then the target: each MERGE changes nothing when repeated, so a retry after a crash between
    the two converges.
    """
    schema = target_schema(contract)
    ensure_target(warehouse, contract, schema)
    columns = schema.fieldNames()
    newest = latest_per_key(rows, contract)
    if not contract.delete_when:
        return warehouse.merge(contract.target, lambda: newest.select(*columns), latest_wins_merge(contract, columns))
    flagged = newest.select(*columns, deletes(contract).alias(_DELETED))
    remembered = deletes_table(contract)
    warehouse.ensure_table(remembered, schema)
    warehouse.merge(
        remembered, lambda: flagged.where(F.col(_DELETED)).select(*columns), latest_wins_merge(contract, columns)
    )
    return warehouse.merge(
        contract.target,
        lambda: _not_outranked_by_a_delete(warehouse.read(remembered), flagged, contract),
        latest_wins_merge(contract, columns, deleted=_DELETED),
    )


def _not_outranked_by_a_delete(remembered: DataFrame, flagged: DataFrame, contract: Contract) -> DataFrame:
    """The rows of `flagged` that are deletes, or whose key has no remembered delete they do not outrank."""
    keys = list(contract.keys)
    source, delete = flagged.alias(SOURCE), remembered.alias(TARGET)
    on = [F.col(f"{SOURCE}.{key}") == F.col(f"{TARGET}.{key}") for key in keys]
    kept = F.expr(f"{TARGET}.{quoted_name(keys[0])} IS NULL OR {SOURCE}.{_DELETED} OR ({newer_condition(contract)})")
    return source.join(delete, on, "left").where(kept).select(f"{SOURCE}.*")


def check_member(context: BatchContext, contract: Contract) -> None:
    """Refuse a member whose existing target was built with another definition, writing nothing."""
    if contract.scd_type == 2:
        refuse_unsequenced_snapshot(contract)
    refuse_changed_target(context.warehouse, contract)


def merge_targets(context: BatchContext) -> None:
    """Check every member's target, then merge the members parents first; one processing_log row per target.

    A target whose definition changed is refused before any target is merged, so the batch is not left
    half-merged; its row is logged FAILED alone. A target that fails its merge stops the task: the
    targets merged before it are committed, so their rows are logged with the failed one's (FAILED,
    with its error) before the failure is raised; the targets after it are not attempted and get no row.
    """
    if skip_completed(context, TASK):
        return
    refuse_partly_staged(context, TASK)
    refuse_failed_validation(context, TASK)
    checks = parse_checks(context.pipeline, context.contracts)
    present = [m.dataset for m in context.manifest.members]
    order = [context.contract(n) for n in checks.merge_order(list(context.pipeline.members)) if n in present]
    records: list[RunRecord] = []
    for contract in order:
        _logging_failure(context, contract, records, check_member)
    for contract in order:
        records.append(_logging_failure(context, contract, records, merge_member))
    append_runs(context.spark, context.warehouse, records)


def _logging_failure(
    context: BatchContext, contract: Contract, records: list[RunRecord], step: Callable[[BatchContext, Contract], T]
) -> T:
    """`step` for one member; when it fails, its FAILED row is logged after the `records` so far, and it raises."""
    started = datetime.now(UTC)
    try:
        return step(context, contract)
    except Exception as exc:
        fields = context.member_fields(contract.name, contract.target)
        failed = context.failed(TASK, exc, started_at=started, **fields)
        append_failing_runs(context.spark, context.warehouse, [*records, failed], TASK)
        raise


def main(argv: list[str] | None = None) -> int:
    return run_batch_task(TASK, sys.argv[1:] if argv is None else argv, merge_targets)


if __name__ == "__main__":
    sys.exit(main())
