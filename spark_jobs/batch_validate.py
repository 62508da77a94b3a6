"""Entry point of the batch job's `validate` task, and its work: score the batch, quarantine, or fail it.

Writes `validation_failures` (one row per failing row per cross-dataset rule, with its key) and
`validation_results` (one row per rule, per dataset and for the batch), both replaced per batch, then
the quarantined rows into `<d>_rejects` (`_rejected_by = 'validate'`). A tripped `fail` rule makes the
task fail AFTER those writes: the job's `merge_targets` depends on this task, so nothing of the batch
reaches a target, and the results say why.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from functools import reduce
from pathlib import Path

if __package__ in (None, "") and "__file__" in globals():
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from filegate.contracts import Contract
from filegate.errors import FilegateError
from filegate.tables import VALIDATION_FAILURES, VALIDATION_RESULTS
from spark_jobs.batch import BatchContext, refuse_partly_staged, run_batch_task, skip_completed
from spark_jobs.columns import (
    BATCH_ID,
    LINEAGE,
    RAW_LINE,
    REASON,
    REJECTED_BY,
    RULES,
    WARNINGS,
    data_type,
    rejects_schema,
    row_fields,
)
from spark_jobs.contract_sql import first_to_raise, is_data_exception, spark_message
from spark_jobs.cross_checks import DETAIL, Inputs, register_inputs, relation_failures, rule_failures
from spark_jobs.pipeline_rules import (
    BAD_ROW_SHARE,
    ROWS_MATCH_MANIFEST,
    Checks,
    Relation,
    Rule,
    parse_checks,
    quarantine_rule_id,
)
from spark_jobs.processing_log import RunRecord, append_runs
from spark_jobs.row_rules import stage_rules
from spark_jobs.stage import rejects_table, staged_rows
from spark_jobs.target_definition import refuse_changed_target
from spark_jobs.warehouse import driver_rows, sql_string

TASK = "validate"
RESULTS = VALIDATION_RESULTS
FAILURES = VALIDATION_FAILURES
VALIDATE = "validate"
_RANK = "_rank"
_BROKEN = "_broken"
_SAMPLES = 20
_ROW_TEXT = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX", "ignoreNullFields": "false"}
_SEVERITY_ORDER = {"HIGH": 3, "MEDIUM": 2, "LOW": 1}

RESULTS_SCHEMA = StructType(
    [
        StructField("batch_id", StringType()),
        StructField("pipeline", StringType()),
        StructField("business_date", DateType()),
        StructField("run_id", LongType()),
        StructField("level", StringType()),
        StructField("rule", StringType()),
        StructField("rule_type", StringType()),
        StructField("dataset", StringType()),
        StructField("related_dataset", StringType()),
        StructField("columns", ArrayType(StringType())),
        StructField("severity_configured", StringType()),
        StructField("severity", StringType()),
        StructField("action", StringType()),
        StructField("rows_evaluated", LongType()),
        StructField("rows_failed", LongType()),
        StructField("null_count", LongType()),
        StructField("failure_ratio", DoubleType()),
        StructField("fail_if_ratio", DoubleType()),
        StructField("outcome", StringType()),
        StructField("score", DoubleType()),
        StructField("description", StringType()),
        StructField("sample_keys", StringType()),
        StructField("checked_at", TimestampType()),
    ]
)
FAILURES_SCHEMA = StructType(
    [
        StructField("batch_id", StringType()),
        StructField("rule", StringType()),
        StructField("dataset", StringType()),
        StructField("key", MapType(StringType(), StringType())),
        StructField("detail", StringType()),
        StructField("severity", StringType()),
        StructField("action", StringType()),
        StructField("run_id", LongType()),
        StructField("checked_at", TimestampType()),
    ]
)


class BatchFailedValidation(FilegateError):
    """A `fail` rule tripped: the batch must not be merged."""


@dataclass
class Result:
    """One row of validation_results before the batch's identity is added."""

    level: str
    rule: str | None
    rule_type: str | None
    dataset: str | None
    severity_configured: str | None
    action: str | None
    rows_evaluated: int
    rows_failed: int
    related_dataset: str | None = None
    columns: list[str] = field(default_factory=list)
    null_count: int | None = None
    fail_if_ratio: float | None = None
    description: str = ""
    sample_keys: list[str] = field(default_factory=list)
    scored: bool = True
    severity: str = "NONE"
    outcome: str = "PASSED"
    score: float | None = None
    failure_ratio: float | None = None

    def settle(self) -> Result:
        """Severity, outcome, ratio and score from the counts (NONE and PASSED when nothing failed)."""
        evaluated, failed = self.rows_evaluated, self.rows_failed
        # A rule's query may return a failing row more than once: the share is capped at every row.
        self.failure_ratio = min(failed / evaluated, 1.0) if evaluated else None
        self.score = None if self.failure_ratio is None else 100.0 * (1 - self.failure_ratio)
        if failed == 0:
            return self
        self.severity = self.severity_configured or "HIGH"
        over = (
            self.fail_if_ratio is not None
            and self.failure_ratio is not None
            and self.failure_ratio > self.fail_if_ratio
        )
        if self.action == "fail" and self.fail_if_ratio is not None:
            # A `fail` with a share fails the batch only past it, as a reconciliation rule's does.
            self.outcome = "FAILED" if over else "WARNED"
        elif self.action == "fail" or over:
            self.outcome = "FAILED"
        else:
            self.outcome = {"quarantine": "QUARANTINED", "reject": "REJECTED"}.get(self.action or "", "WARNED")
        return self


def stage_rule_severity(contract: Contract, rule: str, kind: str) -> str:
    """The configured severity of a stage rule id (`<dataset>.<column|check|row>.<kind|name>`) of `kind` (column,
    row or check): told, not read from the id, where a column is named `check` or `row`."""
    _, scope, name = rule.split(".", 2)
    if kind == "check":
        return next((c.severity for c in contract.checks if c.name == name), "HIGH")
    if kind == "column" and scope in contract.column_names:
        return contract.column(scope).severity_of(name)
    return "HIGH"


def key_map(contract: Contract) -> Column:
    return F.create_map(*(part for key in contract.keys for part in (F.lit(key), F.col(key).cast("string"))))


StageCounts = tuple[int, int, dict[str, int], dict[str, int]]


@dataclass
class Figures:
    """What validation_results counts, read in one query after validation_failures is written."""

    stage: dict[str, StageCounts]
    failed: dict[str, int]
    samples: dict[str, list[str]]
    null_keys: dict[str, int]
    quarantined: dict[str, int]


# The union the figures are read through: which figure a row belongs to, and its parts.
_PART, _NAME, _REJECTED, _IDS, _KEY_TEXT, _COUNT = "part", "name", "rejected", "ids", "k", "n"
_STAGE, _NULL_KEYS, _FAILURES, _QUARANTINED = "stage", "null_keys", "failures", "quarantined"


def batch_figures(
    context: BatchContext,
    checks: Checks,
    inputs: Inputs,
    batch_rows: dict[str, DataFrame],
    recorded: DataFrame,
) -> Figures:
    """The stage counts, NULL foreign keys, recorded failures and quarantined rows of the batch, in one query.

    Each statement costs seconds whatever the rows (planning, and listing each Delta table's files),
    so the four questions are one union, told apart by `part`, collected once.
    """
    members = list(batch_rows)
    ignoring = [r for r in checks.relations if r.child in members and r.nulls == "ignore"]
    held = [name for name in quarantining(checks) if name in batch_rows]
    parts = [
        _stage_part(context, batch_rows),
        *(_null_key_part(relation, inputs) for relation in ignoring),
        _failure_part(recorded),
        *(_quarantined_part(context, name, batch_rows[name], recorded) for name in held),
    ]
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    figures = Figures(
        {name: (0, 0, {}, {}) for name in members}, {}, {}, {r.name: 0 for r in ignoring}, dict.fromkeys(members, 0)
    )
    ranked: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in union.collect():
        name, n = row[_NAME], int(row[_COUNT])
        if row[_PART] == _NULL_KEYS:
            figures.null_keys[name] = n
        elif row[_PART] == _QUARANTINED:
            figures.quarantined[name] = n
        elif row[_PART] == _FAILURES:
            figures.failed[name] = n
            ranked[name].append((int(row[_RANK]), row[_KEY_TEXT]))
        else:
            figures.stage[name] = _tallied(figures.stage[name], bool(row[_REJECTED]), row[_IDS], n)
    figures.samples = {rule: [key for _, key in sorted(keys)] for rule, keys in ranked.items()}
    return figures


def _shaped(
    rows: DataFrame, part: str, name: Column, rejected: Column, ids: Column, key: Column, rank: Column
) -> DataFrame:
    return rows.select(
        F.lit(part).alias(_PART),
        name.alias(_NAME),
        rejected.cast("boolean").alias(_REJECTED),
        ids.cast("array<string>").alias(_IDS),
        key.cast("string").alias(_KEY_TEXT),
        rank.cast("int").alias(_RANK),
        F.col(_COUNT).cast("bigint").alias(_COUNT),
    )


def _stage_part(context: BatchContext, batch_rows: dict[str, DataFrame]) -> DataFrame:
    """Rows staged and rejected at stage per dataset, grouped by the list of rules they broke (few distinct lists)."""
    batch_id = context.manifest.batch_id
    parts = []
    for name, stage in batch_rows.items():
        rejects = context.warehouse.read_batch(rejects_table(context.contract(name)), batch_id).where(
            F.coalesce(F.col(REJECTED_BY), F.lit("stage")) == F.lit("stage")
        )
        parts.append(stage.select(F.lit(name).alias(_NAME), F.lit(False).alias(_REJECTED), F.col(WARNINGS).alias(_IDS)))
        parts.append(rejects.select(F.lit(name).alias(_NAME), F.lit(True).alias(_REJECTED), F.col(RULES).alias(_IDS)))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    grouped = union.groupBy(_NAME, _REJECTED, _IDS).agg(F.count(F.lit(1)).alias(_COUNT))
    none = F.lit(None)
    return _shaped(grouped, _STAGE, F.col(_NAME), F.col(_REJECTED), F.col(_IDS), none, none)


def _tallied(counts: StageCounts, rejected: bool, ids: list[str] | None, n: int) -> StageCounts:
    staged, rejected_rows, rejected_by, warned = counts
    tally = rejected_by if rejected else warned
    for rule in set(ids or ()):
        tally[rule] = tally.get(rule, 0) + n
    return (
        (staged, rejected_rows + n, rejected_by, warned)
        if rejected
        else (staged + n, rejected_rows, rejected_by, warned)
    )


def _null_key_part(relation: Relation, inputs: Inputs) -> DataFrame:
    """How many child rows of a relation that ignores them have a NULL foreign key."""
    counted = relation_failures(relation, inputs)[1].agg(F.count(F.lit(1)).alias(_COUNT))
    none = F.lit(None)
    return _shaped(counted, _NULL_KEYS, F.lit(relation.name), none, none, none, none)


def _quarantined_part(context: BatchContext, name: str, staged: DataFrame, recorded: DataFrame) -> DataFrame:
    """How many staged rows of a member a quarantine took out: each once, however many rules it broke (as the merge
    counts them)."""
    contract = context.contract(name)
    keys = quarantined_keys(recorded, contract, context.manifest.batch_id).select(*contract.keys).distinct()
    counted = staged.join(keys, on=list(contract.keys), how="left_semi").agg(F.count(F.lit(1)).alias(_COUNT))
    none = F.lit(None)
    return _shaped(counted, _QUARANTINED, F.lit(name), none, none, none, none)


def _failure_part(recorded: DataFrame) -> DataFrame:
    """Failing rows per rule and the first keys of each, from the written validation_failures."""
    key_text = F.concat_ws("|", F.map_values("key"))
    per_rule = Window.partitionBy("rule")
    ranked = recorded.select(
        F.col("rule"),
        key_text.alias(_KEY_TEXT),
        F.row_number().over(per_rule.orderBy(key_text)).alias(_RANK),
        F.count(F.lit(1)).over(per_rule).alias(_COUNT),
    ).where(F.col(_RANK) <= _SAMPLES)
    none = F.lit(None)
    return _shaped(ranked, _FAILURES, F.col("rule"), none, none, F.col(_KEY_TEXT), F.col(_RANK))


def failure_rows(context: BatchContext, checks: Checks, inputs: Inputs, checked_at: datetime) -> DataFrame | None:
    """Every failing row of every relation and rule, in the shape of validation_failures.

    The datasets are checked parents first, each child against its parent's batch rows without the keys a
    quarantine took out of them, so a chain (customer, order, shipment) settles in one pass: a quarantined
    row never reaches its target, and a child whose only parent it was must fail its relation.
    """
    parts: list[DataFrame] = []
    withheld: dict[str, DataFrame] = {}

    def shaped(rows: DataFrame, name: str, dataset: str, severity: str, action: str) -> DataFrame:
        contract = context.contract(dataset)
        return rows.select(
            F.lit(context.manifest.batch_id).alias("batch_id"),
            F.lit(name).alias("rule"),
            F.lit(dataset).alias("dataset"),
            key_map(contract).alias("key"),
            F.col(DETAIL).cast("string").alias("detail"),
            F.lit(severity).alias("severity"),
            F.lit(action).alias("action"),
            F.lit(context.arguments.run_id).cast("bigint").alias("run_id"),
            F.lit(checked_at).cast("timestamp").alias("checked_at"),
        )

    present = {m.dataset for m in context.manifest.members}
    for dataset in (d for d in checks.merge_order(list(context.pipeline.members)) if d in present):
        contract = context.contract(dataset)
        found, held = dataset_failures(contract, checks, inputs, withheld, context.manifest.business_date)
        parts.extend(shaped(failing, check.name, dataset, check.severity, check.action) for check, failing in found)
        if held is not None:
            withheld[dataset] = held
    if not parts:
        return None
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    return union


def dataset_failures(
    contract: Contract, checks: Checks, inputs: Inputs, withheld: Mapping[str, DataFrame], as_of: date
) -> tuple[list[tuple[Relation | Rule, DataFrame]], DataFrame | None]:
    """The failing rows of each relation and rule of one dataset, and the keys its quarantines take out of the batch.

    A relation checks against its parent's batch rows without the keys `withheld` from them (its parents are
    checked first). A relation of the dataset to itself runs last, without the keys its other relations and
    rules quarantine: an employee whose manager a rule quarantined fails it. It runs once, so a row it
    quarantines itself is still a parent: in a chain E1 <- E2 <- E3 (E3's manager E2, E2's E1) where a rule
    quarantines E1, E2 fails the self-relation and E3, whose manager only the self-relation held back, passes.
    """
    name = contract.name
    found: list[tuple[Relation | Rule, DataFrame]] = []
    for relation in (r for r in checks.relations if r.child == name and r.parent != name):
        found.append((relation, relation_failures(relation, inputs, withheld.get(relation.parent))[0]))
    for rule in (r for r in checks.rules if r.dataset == name):
        found.append((rule, rule_failures(rule, inputs, contract, checks.params, as_of)))

    def held_back() -> DataFrame | None:
        keys = [failing.select(*contract.keys) for check, failing in found if check.action == "quarantine"]
        return reduce(DataFrame.unionByName, keys).distinct() if keys else None

    before = held_back()
    for relation in (r for r in checks.relations if r.child == name and r.parent == name):
        found.append((relation, relation_failures(relation, inputs, before)[0]))
    return found, held_back()


def dataset_rules(
    context: BatchContext,
    checks: Checks,
    name: str,
    counts: tuple[int, int, dict[str, int], dict[str, int]],
    failed_counts: dict[str, int],
    samples: dict[str, list[str]],
    null_counts: dict[str, int],
) -> list[Result]:
    """The rule rows of one dataset: every stage rule (fired or not), its relations and rules, reconciliation."""
    contract = context.contract(name)
    member = context.manifest.member(name)
    staged, rejected, rejected_by, warned = counts
    read = staged + rejected
    rules: list[Result] = []
    # Every declared stage rule, also those that rejected nothing: a rule's row says it ran and passed.
    for stage_rule in stage_rules(contract):
        tally = warned if stage_rule.action == "warn" else rejected_by
        severity = stage_rule_severity(contract, stage_rule.rule, stage_rule.kind)
        count = tally.get(stage_rule.rule, 0)
        rules.append(Result("rule", stage_rule.rule, stage_rule.kind, name, severity, stage_rule.action, read, count))
    # A rule id the contract no longer declares (staged under an older contract) still gets its row.
    declared = {r.rule for r in rules}
    for action, tally in (("reject", rejected_by), ("warn", warned)):
        for rule_name, count in sorted(tally.items()):
            if rule_name not in declared:
                kind = "check" if ".check." in rule_name else "row" if ".row." in rule_name else "column"
                severity = stage_rule_severity(contract, rule_name, kind)
                rules.append(Result("rule", rule_name, kind, name, severity, action, read, count))
    for relation in (r for r in checks.relations if r.child == name):
        rules.append(
            Result(
                "rule",
                relation.name,
                "relation",
                name,
                relation.severity,
                relation.action,
                staged,
                failed_counts.get(relation.name, 0),
                related_dataset=relation.parent,
                columns=list(relation.columns),
                null_count=null_counts.get(relation.name),
                fail_if_ratio=relation.fail_if_ratio,
                description=relation.description,
                sample_keys=samples.get(relation.name, []),
            )
        )
    for rule in (r for r in checks.rules if r.dataset == name):
        rules.append(
            Result(
                "rule",
                rule.name,
                "rule",
                name,
                rule.severity,
                rule.action,
                staged,
                failed_counts.get(rule.name, 0),
                fail_if_ratio=rule.fail_if_ratio,
                description=rule.description,
                sample_keys=samples.get(rule.name, []),
            )
        )
    if member is not None and member.expected_rows is not None:
        rules.append(manifest_result(name, read, int(member.expected_rows)))
    # Restates the stage rejects as a share of the file, so it is reported but not scored twice.
    rules.append(
        Result(
            "rule",
            BAD_ROW_SHARE,
            "reconciliation",
            name,
            "HIGH",
            "fail",
            read,
            rejected,
            fail_if_ratio=contract.max_bad_row_ratio,
            description="rows rejected at stage, as a share of the rows read",
            scored=False,
        )
    )
    return [rule.settle() for rule in rules]


def manifest_result(dataset: str, read: int, expected: int) -> Result:
    """`rows_match_manifest`: the rows read against the trigger's count.

    Evaluated over the larger of the two, so a file longer than announced fails at most every row (score 0).
    """
    return Result(
        "rule",
        ROWS_MATCH_MANIFEST,
        "reconciliation",
        dataset,
        "HIGH",
        "fail",
        max(read, expected),
        abs(read - expected),
        description=f"rows read {read}, the trigger announced {expected}",
    )


class RuleRaised(FilegateError):
    """A `[[rules]]` query raised on the batch's values (ANSI SQL: a cast, an overflow, a division by zero)."""


def _which_rule_raised(context: BatchContext, checks: Checks, inputs: Inputs) -> str | None:
    """The error for a data exception in the failures' write, naming the rule whose query raised; None when no
    rule raises alone (the original error then stands).

    Relations compare keys and cannot raise on a value; each rule's query is run alone over the batch
    until one raises. Run only after the write failed.
    """
    present = {m.dataset for m in context.manifest.members}
    as_of = context.manifest.business_date
    # The same queries failure_rows built before the write (so building one cannot fail here); a hash of
    # every column they return, so that a raising `detail` is evaluated too.
    probes = (
        (rule, failing.select(F.max(F.hash(*failing.columns))))
        for rule in checks.rules
        if rule.dataset in present
        for failing in [rule_failures(rule, inputs, context.contract(rule.dataset), checks.params, as_of)]
    )
    raised = first_to_raise(probes)
    if raised is None:
        return None
    rule, found = raised
    return (
        f"batch {context.manifest.batch_id}: the rule {rule.name} ({rule.dataset}) raised on the batch's values: "
        f"{spark_message(found)} Nothing was recorded and nothing of the batch is merged. Make the rule's SQL hold "
        "for every row it reads (try_cast, try_divide, a filter), then run the batch again."
    )


def validate_batch(context: BatchContext) -> list[Result]:
    """Run every check of the batch, write failures, results and quarantined rows; fail when a `fail` rule tripped."""
    checks = parse_checks(context.pipeline, context.contracts)
    checked_at = datetime.now(UTC)
    warehouse, batch_id = context.warehouse, context.manifest.batch_id
    members = [m.dataset for m in context.manifest.members]
    contracts = {name: context.contract(name) for name in members}
    batch_rows = {name: staged_rows(warehouse, c, batch_id) for name, c in contracts.items()}
    every_member = {name: context.contract(name) for name in context.pipeline.members}
    as_of = context.manifest.business_date
    for contract in every_member.values():
        # Every member's target is read as its contract describes it: one built with other keys or another SCD
        # type is refused here, naming what changed, as merge_targets would, not failed on a column it lacks.
        refuse_changed_target(warehouse, contract)
    inputs = register_inputs(context.spark, warehouse, every_member, batch_rows, checks, without=batch_id, as_of=as_of)
    try:
        failures = failure_rows(context, checks, inputs, checked_at)
        warehouse.ensure_table(FAILURES, FAILURES_SCHEMA)
        _drop_stale_quarantine(context, checks, contracts)
        empty = driver_rows(context.spark, [], FAILURES_SCHEMA)
        try:
            warehouse.replace_where(
                FAILURES, failures if failures is not None else empty, f"batch_id = {sql_string(batch_id)}"
            )
        except PySparkException as exc:
            named = _which_rule_raised(context, checks, inputs) if is_data_exception(exc) else None
            if named is None:
                raise
            raise RuleRaised(named) from exc
        recorded = warehouse.read(FAILURES).where(F.col("batch_id") == F.lit(batch_id))
        figures = batch_figures(context, checks, inputs, batch_rows, recorded)
        results: list[Result] = []
        logs: list[RunRecord] = []
        for name in members:
            counts = figures.stage[name]
            read, rejected = counts[0] + counts[1], counts[1]
            rules = dataset_rules(context, checks, name, counts, figures.failed, figures.samples, figures.null_keys)
            quarantined = figures.quarantined[name]
            results.extend(rules)
            results.append(_summary("dataset", name, rules, read, rejected + quarantined, checks))
            logs.append(
                context.record(
                    TASK,
                    **context.member_fields(name, RESULTS),
                    rows_read=read,
                    rows_rejected=rejected,
                    rows_quarantined=quarantined,
                    details=json.dumps({"rules_failed": sorted(r.rule or "" for r in rules if r.rows_failed)}),
                )
            )
        datasets = [r for r in results if r.level == "dataset"]
        results.append(_batch_summary(datasets))
        _write_results(context, results, checked_at)
        _write_quarantine(context, checks, contracts)
    finally:
        inputs.close()
    tripped = [r for r in results if r.outcome == "FAILED" and r.level == "rule"]
    if tripped:
        # The log says which datasets were evaluated before the task's own FAILED row.
        append_runs(context.spark, warehouse, [_failed(log) for log in logs])
        names = ", ".join(f"{r.dataset}.{r.rule} ({r.rows_failed} of {r.rows_evaluated} rows)" for r in tripped)
        raise BatchFailedValidation(f"batch {batch_id} failed validation, nothing of it is merged: {names}")
    append_runs(context.spark, warehouse, logs)
    print(scores_line(batch_id, results))
    return results


def scores_line(batch_id: str, results: list[Result]) -> str:
    """The task's last line: each dataset's score, then the batch's (a row of no dataset)."""
    scores = (
        f"{r.dataset or 'the batch'} score {'none' if r.score is None else f'{r.score:.1f}'}"
        for r in results
        if r.level != "rule"
    )
    return f"{TASK}: batch {batch_id}: " + ", ".join(scores)


def _failed(record: RunRecord) -> RunRecord:
    values = asdict(record)
    values["status"] = "FAILED"
    values["error"] = "the batch failed validation"
    return RunRecord(**values)


def _worst(results: list[Result]) -> str:
    """The highest severity among the failing rules, else NONE.

    An unscored row restates rows other rules failed (`bad_row_share`: the stage's rejects, at HIGH
    whatever rules rejected them): it counts only when it failed on its own (its ratio over the limit).
    """
    failing = [
        r.severity
        for r in results
        if r.rows_failed and r.severity in _SEVERITY_ORDER and (r.scored or r.outcome == "FAILED")
    ]
    return max(failing, key=_SEVERITY_ORDER.__getitem__, default="NONE")


def _outcome(results: list[Result]) -> str:
    if any(r.outcome == "FAILED" for r in results):
        return "FAILED"
    return "WARNED" if any(r.rows_failed for r in results) else "PASSED"


def _summary(level: str, dataset: str, rules: list[Result], read: int, failed: int, checks: Checks) -> Result:
    """A dataset's row: its rules' scores weighted by their configured severity."""
    scored = [r for r in rules if r.scored and r.score is not None]
    weight = sum(checks.weights.get(r.severity_configured or "HIGH", 1.0) for r in scored)
    score = (
        sum(checks.weights.get(r.severity_configured or "HIGH", 1.0) * (r.score or 0) for r in scored) / weight
        if weight
        else None
    )
    result = Result(level, None, None, dataset, None, None, read, failed)
    result.failure_ratio = failed / read if read else None
    result.score, result.severity, result.outcome = score, _worst(rules), _outcome(rules)
    return result


def _batch_summary(datasets: list[Result]) -> Result:
    """The batch's row: the datasets' scores weighted by their rows read."""
    read = sum(d.rows_evaluated for d in datasets)
    scored = [d for d in datasets if d.score is not None and d.rows_evaluated]
    weight = sum(d.rows_evaluated for d in scored)
    result = Result("batch", None, None, None, None, None, read, sum(d.rows_failed for d in datasets))
    result.failure_ratio = result.rows_failed / read if read else None
    result.score = sum(d.rows_evaluated * (d.score or 0) for d in scored) / weight if weight else None
    result.severity = max((d.severity for d in datasets), key=lambda s: _SEVERITY_ORDER.get(s, 0), default="NONE")
    # From the datasets' outcomes, not their rows_failed: a dataset's failed rows are those set aside
    # (rejected, quarantined), so one whose rules only warned counts none and is still WARNED.
    outcomes = {d.outcome for d in datasets}
    result.outcome = "FAILED" if "FAILED" in outcomes else "WARNED" if "WARNED" in outcomes else _outcome(datasets)
    return result


def _write_results(context: BatchContext, results: list[Result], checked_at: datetime) -> None:
    rows = [
        (
            context.manifest.batch_id,
            context.pipeline.name,
            context.manifest.business_date,
            context.arguments.run_id,
            r.level,
            r.rule,
            r.rule_type,
            r.dataset,
            r.related_dataset,
            r.columns,
            r.severity_configured,
            r.severity,
            r.action,
            r.rows_evaluated,
            r.rows_failed,
            r.null_count,
            r.failure_ratio,
            r.fail_if_ratio,
            r.outcome,
            None if r.score is None else round(r.score, 4),
            r.description,
            json.dumps(r.sample_keys) if r.sample_keys else None,
            checked_at,
        )
        for r in results
    ]
    context.warehouse.ensure_table(RESULTS, RESULTS_SCHEMA)
    context.warehouse.replace_where(
        RESULTS,
        driver_rows(context.spark, rows, RESULTS_SCHEMA),
        f"batch_id = {sql_string(context.manifest.batch_id)}",
    )


def _write_quarantine(context: BatchContext, checks: Checks, contracts: dict[str, Contract]) -> None:
    """The quarantined rows into `<d>_rejects`, replacing this task's earlier rows of the batch (a retry converges)."""
    batch_id = context.manifest.batch_id
    for name in (n for n in quarantining(checks) if n in contracts):
        contract = contracts[name]
        # One reject per staged row, naming every rule that quarantined it, as the stage names every rule a row broke.
        found = quarantined_keys(context.warehouse.read(FAILURES), contract, batch_id)
        rule_id = F.concat(F.lit(quarantine_rule_id(name, "")), F.col("rule"))
        sentence = F.concat(F.col("rule"), F.lit(": "), F.coalesce(F.col("detail"), F.lit("")))
        keys = found.groupBy(*contract.keys).agg(
            F.sort_array(F.collect_list(F.struct(rule_id.alias(RULES), sentence.alias(REASON)))).alias(_BROKEN)
        )
        stage = staged_rows(context.warehouse, contract, batch_id)
        columns = [f.name for f in row_fields(contract)]
        rows = stage.join(keys, on=list(contract.keys), how="inner").select(
            F.concat(F.lit("quarantined by "), F.array_join(F.col(f"{_BROKEN}.{REASON}"), "; ")).alias(REASON),
            F.col(f"{_BROKEN}.{RULES}").alias(RULES),
            row_text(columns).alias(RAW_LINE),
            *(F.col(c) for c in LINEAGE),
            F.lit(VALIDATE).alias(REJECTED_BY),
        )
        context.warehouse.ensure_table(rejects_table(contract), rejects_schema())
        context.warehouse.replace_where(rejects_table(contract), rows, _quarantined_rejects(batch_id))


def row_text(columns: Sequence[str]) -> Column:
    """A quarantined row's `raw_line`: the row as staged (the stage keeps the line only of the rows it rejected),
    as JSON with every column, each timestamp to the microsecond it holds, so that a key with a timestamp can be
    found again from it (JSON's default stops at milliseconds, and leaves null columns out)."""
    return F.to_json(F.struct(*columns), _ROW_TEXT)


def _drop_stale_quarantine(context: BatchContext, checks: Checks, contracts: dict[str, Contract]) -> None:
    """Take out of `<d>_rejects` the rows an earlier attempt quarantined for a dataset no rule quarantines now.

    A tripped rule's error says to change the rule and repair the run from `validate`: a rule changed
    from quarantine to warn lets those rows merge, and `_write_quarantine` replaces only the rejects of
    the datasets a rule still quarantines. Read from the failures this attempt is about to replace, and
    done before, so that a crash in between leaves them to be read again.
    """
    batch_id = context.manifest.batch_id
    earlier = (
        context.warehouse.read(FAILURES)
        .where((F.col("batch_id") == F.lit(batch_id)) & (F.col("action") == F.lit("quarantine")))
        .select("dataset")
        .distinct()
        .collect()
    )
    stale = sorted(({row["dataset"] for row in earlier} & set(contracts)) - set(quarantining(checks)))
    for name in stale:
        context.warehouse.delete_where(rejects_table(contracts[name]), _quarantined_rejects(batch_id))


def _quarantined_rejects(batch_id: str) -> str:
    """The rows of a `<d>_rejects` that validate quarantined in this batch (the stage's own rejects aside)."""
    return f"{BATCH_ID} = {sql_string(batch_id)} AND {REJECTED_BY} = {sql_string(VALIDATE)}"


def quarantining(checks: Checks) -> list[str]:
    """The datasets a relation or rule quarantines rows of, in the order they are declared."""
    named = [r.child for r in checks.relations if r.action == "quarantine"]
    named += [r.dataset for r in checks.rules if r.action == "quarantine"]
    return list(dict.fromkeys(named))


def quarantined_keys(failures: DataFrame, contract: Contract, batch_id: str) -> DataFrame:
    """The keys of `contract`'s rows a quarantine rule took out of this batch, with the rule and its kind."""
    rows = failures.where(
        (F.col("batch_id") == F.lit(batch_id))
        & (F.col("dataset") == F.lit(contract.name))
        & (F.col("action") == F.lit("quarantine"))
    )
    return rows.select(
        *(F.col("key")[key].cast(data_type(contract.column(key).type)).alias(key) for key in contract.keys),
        "rule",
        "detail",
    ).dropDuplicates([*contract.keys, "rule"])


def validate(context: BatchContext) -> None:
    if not skip_completed(context, TASK):
        refuse_partly_staged(context, TASK)
        validate_batch(context)


def main(argv: list[str] | None = None) -> int:
    return run_batch_task(TASK, sys.argv[1:] if argv is None else argv, validate)


if __name__ == "__main__":
    sys.exit(main())
