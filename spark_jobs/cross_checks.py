"""Cross-dataset validation declared in the pipeline file: relations, SQL rules, lookups and scoring weights.

`[[relations]]`: a child row of this batch is valid when its parent key is in this batch's parent rows
or current in the parent's target (a new customer and their first order may arrive together). A parent
row the stage rejected or `validate` quarantines is not in the batch's parent rows: it never reaches the
target, so its children are orphans.
`[[rules]]`: Spark SQL over named inputs that returns the FAILING rows of `dataset` (its key columns
and an optional `detail`). Inputs, resolved to temporary views: `${batch.d}` (this batch's staged rows),
`${current.d}` (the target's current rows before this batch), `${history.d}` (every version),
`${latest.d}` (current and batch, newest per key), `${lookup.n}`, `${param.x}` and `${as_of}`.
A snapshot member's batch ends every current key it lacks: for its relations, and in `${latest.d}`,
only the current rows whose key the snapshot showed count (`current_after`). A `delete_when` row ends
its key: it is no parent, and a key whose newest row (of the batch or current) is one is no parent in
any of its rows, and not in `${latest.d}`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from filegate.contracts import BUSINESS_DATE, Contract, Contracts, quoted_name, sql_literal
from filegate.errors import ContractError
from filegate.pipelines import Pipeline
from spark_jobs.changes import latest_per_key
from spark_jobs.columns import BATCH_ID, IS_CURRENT, REASON, row_fields, target_schema
from spark_jobs.contract_sql import deletes, first_line
from spark_jobs.history import observations_table, observed_in, target_before
from spark_jobs.pipeline_rules import Checks, Lookup, Relation, Rule, parse_checks
from spark_jobs.pipeline_tables import PLACEHOLDER
from spark_jobs.stage import stage_table
from spark_jobs.warehouse import Warehouse, driver_rows

# What a rule's query names the failing row's reason; the job carries it as `DETAIL`, a `_` name no contract
# column may take (`contracts._is_reserved`), so a child or key column called `detail` cannot clash with it.
RULE_DETAIL = "detail"
DETAIL = "_detail"
_AFTER = "after"
_PARENTS = "parents"


def target_rows(warehouse: Warehouse, contract: Contract) -> DataFrame:
    """Every row (version) of a dataset's target; empty, with the target's schema, before its first merge."""
    rows = warehouse.read_if_exists(contract.target)
    return driver_rows(warehouse.spark, [], target_schema(contract)) if rows is None else rows


@dataclass
class Inputs:
    """The named inputs of one validation run, as temporary views; drop them with `close`."""

    spark: SparkSession
    views: dict[str, str] = field(default_factory=dict)
    frames: dict[str, DataFrame] = field(default_factory=dict)
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def register(self, kind: str, name: str, rows: DataFrame) -> None:
        """`rows` as the input `${kind.name}` (or `${kind}` when name is empty)."""
        key = f"{kind}.{name}" if name else kind
        view = f"fg_{key.replace('.', '_')}_{self.token}"
        rows.createOrReplaceTempView(view)
        self.views[key] = view
        self.frames[key] = rows

    def register_lookups(self, lookups: Sequence[Lookup]) -> None:
        """The pipeline's lookups, each as `${lookup.name}`."""
        for lookup in lookups:
            rows = self.spark.createDataFrame([list(r) for r in lookup.rows], lookup.ddl())
            self.register("lookup", lookup.name, rows)

    def frame(self, kind: str, name: str) -> DataFrame:
        return self.frames[f"{kind}.{name}"]

    def current_after(self, name: str) -> DataFrame:
        """The current rows of `name` that stay current once this batch merges: not those a snapshot lacks
        (`current_after`) or a newer delete of the batch ends."""
        return self.frames.get(f"{_AFTER}.{name}", self.frames[f"current.{name}"])

    def batch_parents(self, name: str) -> DataFrame:
        """The batch rows of `name` that a child may name: not its `delete_when` rows, nor any row of a key whose
        newest row is one."""
        return self.frames.get(f"{_PARENTS}.{name}", self.frames[f"batch.{name}"])

    def close(self) -> None:
        for view in self.views.values():
            self.spark.catalog.dropTempView(view)


def register_inputs(
    spark: SparkSession,
    warehouse: Warehouse,
    contracts: Mapping[str, Contract],
    batch_rows: Mapping[str, DataFrame],
    checks: Checks,
    without: str | None = None,
    as_of: date | None = None,
) -> Inputs:
    """Views for every member of the pipeline: batch, current, history and latest; and the lookups.

    `without`: the batch being validated, of business date `as_of`. An earlier run of it (a revision's, a
    replay's, also one that died before it logged) may have merged into the SCD2 targets: they are read
    as they stand without it (`history.target_before`, which costs one read of the batch's partition of
    each one's observations, all in one query). A snapshot member of the batch keeps current only what it
    showed (`current_after`).
    """
    inputs = Inputs(spark)
    history_kept = [contract for contract in contracts.values() if contract.scd_type == 2]
    replayed = observed_in(warehouse, history_kept, without) if without is not None else set()
    for name, contract in contracts.items():
        columns = [f.name for f in row_fields(contract)]
        # A member missing from a partial batch is an empty batch: its children check against its target.
        if name in batch_rows:
            batch = batch_rows[name].select(*columns)
        else:
            batch = driver_rows(spark, [], StructType(row_fields(contract)))
        history = target_rows(warehouse, contract)
        if without is not None and contract.scd_type == 2:
            history = target_before(warehouse, contract, history, without, observed_before=contract.name in replayed)
        current = history.where(F.col(IS_CURRENT)) if contract.scd_type == 2 else history
        inputs.register("batch", name, batch)
        inputs.register("history", name, history)
        inputs.register("current", name, current)
        if without is not None and as_of is not None and contract.load == "snapshot" and name in batch_rows:
            current = current_after(warehouse, contract, current, without, as_of)
            inputs.frames[f"{_AFTER}.{name}"] = current
        latest = latest_per_key(current.select(*columns).unionByName(batch), contract)
        if contract.delete_when:
            # A key whose newest row, of the batch or current, is a delete is gone once the batch merges: neither
            # its current row nor an earlier row of the batch is a parent. A late delete, older than the current
            # row, ends nothing current (as the merge orders them).
            keys = list(contract.keys)
            ended = latest.where(deletes(contract)).select(*keys)
            inputs.frames[f"{_PARENTS}.{name}"] = batch.where(~deletes(contract)).join(ended, on=keys, how="left_anti")
            inputs.frames[f"{_AFTER}.{name}"] = current.join(ended, on=keys, how="left_anti")
            latest = latest.where(~deletes(contract))
        inputs.register("latest", name, latest)
    inputs.register_lookups(checks.lookups)
    return inputs


def current_after(warehouse: Warehouse, contract: Contract, current: DataFrame, batch_id: str, on: date) -> DataFrame:
    """The `current` rows of a snapshot member that stay current once this batch's snapshot (of date `on`) merges.

    A snapshot ends every key it lacks, and a `delete_when` row ends its key: only the keys of its other rows
    stay, and those of rows the stage rejected or `validate` quarantines (their versions stay as they were,
    `history.held_markers`). Without this an order of a product the day's catalogue dropped passed its
    relation, and `enriched_orders` found it an orphan after the merge. When another batch observed a
    snapshot of this date or later, this one ends no current version, and `current` stands.
    """
    observed = warehouse.read_if_exists(observations_table(contract))
    if observed is not None:
        later = (F.col(BUSINESS_DATE) >= F.lit(on)) & (F.col(BATCH_ID) != F.lit(batch_id))
        if not observed.where(later).isEmpty():
            return current
    stage = warehouse.read_batch(stage_table(contract), batch_id)
    shown = stage.where(F.col(REASON).isNotNull() | ~deletes(contract)).select(*contract.keys)
    return current.join(shown.distinct(), on=list(contract.keys), how="left_semi")


def resolve_sql(sql: str, inputs: Inputs, params: Mapping[str, Any], as_of: date) -> str:
    """The rule's SQL with its placeholders replaced by view names and literals."""

    def replace(found: re.Match[str]) -> str:
        kind, name, bare = found.group(1), found.group(2), found.group(3)
        if bare == "as_of":
            return f"DATE '{as_of.isoformat()}'"
        if bare:
            if bare not in inputs.views:
                raise ContractError(f"unknown input ${{{bare}}}")
            return inputs.views[bare]
        if kind == "param":
            if name not in params:
                raise ContractError(f"unknown parameter ${{param.{name}}}")
            value = params[name]
            if isinstance(value, list):
                return ", ".join(sql_literal(v) for v in value)
            return sql_literal(value)
        key = f"{kind}.{name}"
        if key not in inputs.views:
            raise ContractError(f"unknown input ${{{key}}}")
        return inputs.views[key]

    return PLACEHOLDER.sub(replace, sql)


def relation_failures(
    relation: Relation, inputs: Inputs, withheld: DataFrame | None = None
) -> tuple[DataFrame, DataFrame]:
    """The child rows of this batch whose parent key is neither in this batch nor current once it merges; and those
    with a NULL key.

    `withheld`: the keys of the parent's rows a quarantine takes out of this batch (its key columns).
    """
    child = inputs.frame("batch", relation.child)
    batch_parents = inputs.batch_parents(relation.parent)
    if withheld is not None:
        batch_parents = batch_parents.join(withheld, on=withheld.columns, how="left_anti")
    parents = (
        batch_parents.select(*relation.parent_columns)
        .unionByName(inputs.current_after(relation.parent).select(*relation.parent_columns))
        .distinct()
    )
    has_null = F.lit(False)
    for column in relation.columns:
        has_null = has_null | F.col(column).isNull()
    on = [child[c] == parents[p] for c, p in zip(relation.columns, relation.parent_columns, strict=True)]
    orphans = child.where(~has_null).join(parents, on=on, how="left_anti")
    described = ", ', ', ".join(f"'{c} ', coalesce(cast({quoted_name(c)} AS string), 'NULL')" for c in relation.columns)
    detail = F.expr(f"concat({described}, ' is not a key of {relation.parent}')")
    failing = orphans.select("*", detail.alias(DETAIL))
    nulls = child.where(has_null).select("*", F.lit(f"{', '.join(relation.columns)} is NULL").alias(DETAIL))
    if relation.nulls == "fail":
        failing = failing.unionByName(nulls)
    return failing, nulls


def rule_failures(rule: Rule, inputs: Inputs, contract: Contract, params: Mapping[str, Any], as_of: date) -> DataFrame:
    """The failing rows a rule's query returns: the dataset's keys and a detail.

    Spark resolves names without regard to case, and so are the returned columns matched. A returned key
    that is not among this batch's rows of the dataset (a query over `${current.d}` alone) fails no row
    of the batch: it is dropped, or it would count against the batch's rows and quarantine nothing.
    One row per batch row whose key was returned, however often it was.
    """
    rows = inputs.spark.sql(resolve_sql(rule.sql, inputs, params, as_of))
    returned = {name.lower(): name for name in rows.columns}
    missing = [key for key in contract.keys if key.lower() not in returned]
    if missing:
        raise ContractError(f"rule {rule.name} must return the key columns of {rule.dataset}; missing {missing}")
    detail = F.col(returned[RULE_DETAIL]).cast("string") if RULE_DETAIL in returned else F.lit(None).cast("string")
    failing = rows.select(*(F.col(returned[key.lower()]).alias(key) for key in contract.keys), detail.alias(DETAIL))
    # A query may return a key more than once (joined to two bad lines): it fails the key's rows once,
    # with each distinct detail; and every batch row of the key fails, as a relation counts its rows.
    details = F.array_sort(F.collect_set(DETAIL))
    per_key = failing.groupBy(*contract.keys).agg(
        F.when(F.size(details) > 0, F.array_join(details, "; ")).alias(DETAIL)
    )
    return inputs.frame("batch", rule.dataset).select(*contract.keys).join(per_key, on=list(contract.keys))


def rule_problems(spark: SparkSession, pipeline: Pipeline, contracts: Contracts) -> list[str]:
    """Every `[[rules]]` query that does not resolve, or returns no key of its dataset, resolved against empty
    inputs of the members' schemas (analysis only: no row is read); for `filegate check`. Found otherwise
    only by `validate`, once every file of a batch had landed."""
    checks = parse_checks(pipeline, contracts)
    inputs = Inputs(spark)
    problems = []
    try:
        for name in pipeline.members:
            rows = driver_rows(spark, [], StructType(row_fields(contracts[name])))
            versions = driver_rows(spark, [], target_schema(contracts[name]))
            for kind, frame in (("batch", rows), ("latest", rows), ("history", versions), ("current", versions)):
                inputs.register(kind, name, frame)
        inputs.register_lookups(checks.lookups)
        for rule in checks.rules:
            try:
                _ = rule_failures(rule, inputs, contracts[rule.dataset], checks.params, date.today()).schema
            except ContractError as exc:
                problems.append(str(exc))
            except Exception as exc:  # Spark's AnalysisException and ParseException share no narrower base
                problems.append(f"rule {rule.name}: {first_line(exc)}")
    finally:
        inputs.close()
    return problems
