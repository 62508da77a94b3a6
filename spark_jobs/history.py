"""SCD2 the AUTO CDC way, for the batch job's targets: history rebuilt per key from every observation.

Each batch's good rows of a dataset are kept in `<target>_observations` (replaced per batch), with
marker rows for keys a re-run withdrew (`withdrawn`) and, in a snapshot, for keys whose row was held
back (`held_markers`). A target's versions are a pure function of the observations of a key:

1. observations of a key are ordered by the sequence column (one per sequence value; equal ones are
   resolved by content, as everywhere else);
2. a snapshot dataset adds a tombstone at the next snapshot date on which a key is missing, and a row
   matching `delete_when` is one (the row is kept: the condition is read again at each rebuild); a
   key whose row the batch held back (rejected by the stage, quarantined by `validate`) is not missing:
   a marker observation (`HELD`) says the snapshot showed it, and its version stays as it was;
3. a new version starts where the tracked columns' values differ from the previous observation's, or
   after a tombstone; untracked columns take the version's LAST observation's values (type 1 inside
   a version: a change to `last_login` alone updates the current version in place);
4. a version ends where the next starts, or at the tombstone that closed it.

The MERGE then brings the touched keys' versions (keys the batch observes, or observed in an earlier
run of it) to exactly that: inserts, updates (re-bounded or untracked values changed) and deletes (a
version a late observation made redundant), matched on key and `effective_from`. Because the result
depends only on the set of observations, batches give the same targets in any order, a replay
changes nothing, a re-run whose rows changed takes back what its old rows made, and a retried merge
converges.

A snapshot touches every key, so rebuilding it reads every snapshot kept, and its cost would grow with
the days. The usual day, a snapshot newer than every other, only ends or extends the current versions:
it is merged from its rows and the current versions alone (`newest_snapshot_source`). That gives what
the rebuild would while the target holds what the earlier observations give; a batch whose merge did
not commit is missing from it until that batch runs again, then no longer the newest, and rebuilds
every key (as for other loads, where only a batch's own keys are rebuilt).

This departs from the proposed design (narrow observations: keys, sequence, hash): keeping the whole
row costs the storage of the good input rows once more, but makes a split version's halves exact
(each half takes its own last observation's untracked values, not a copy of the old version's), and
lets a changed `track_history` be rebuilt from the table alone: the tracked columns are recorded on
the target, and the first batch merged under other ones rebuilds every key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, StructField, StructType

from filegate import tables
from filegate.contracts import BUSINESS_DATE, Contract, quoted_name
from filegate.errors import FilegateError
from spark_jobs.changes import content_order
from spark_jobs.columns import BATCH_ID, EFFECTIVE_FROM, EFFECTIVE_TO, IS_CURRENT, LINEAGE, row_fields, target_schema
from spark_jobs.contract_sql import deletes
from spark_jobs.merge import SOURCE, TARGET, MergeClause, MergeSpec
from spark_jobs.target_definition import TargetDefinitionChanged, definition, ensure_target
from spark_jobs.warehouse import CHANGE_FEED, Warehouse, batch_predicate, committed

ACTION = "_action"
# The columns a target's versions were built with (`tracked_columns`), as a table property.
TRACKED_PROPERTY = "filegate.tracked_columns"
# An observation that only says a snapshot showed its key: the row was held back (rejected or quarantined).
HELD = "_held"
UPSERT = "upsert"
DELETE = "delete"
_TOMBSTONE = "_tombstone"
_TRACKED = "_tracked"
_CHANGE = "_change"
_VERSION = "_version"
_RANK = "_rank"
_NEXT_DATE = "_next_date"
_REBUILT = "_rebuilt"
_EARLIER = "_earlier"
_OLD = "_old"
_FROM = "_from"
_LAST = "_last"
_CONTENT = "_content"
_VALUES = "_values"
_OLD_VALUES = "_old_values"
_OPENED = "_opened"
_CHANGED = "_changed"
_CLOSED = "_closed"
_COVERED = "_covered"
_EVENT = "_event"
_AT = "at"
_KIND = "kind"
_TO = "_to"
_OLD_TO = "_old_to"


@dataclass(frozen=True)
class HistoryCounts:
    """What one merge did: to the target's versions (as the MERGE reports it), and with each row of the batch.

    Every row of the batch is counted once (see `row_effects`): superseded (another row of the batch has
    its key and instant and outranks it), opened (it starts a version the target did not have), changed
    (it is the last observation of a version the target had with other values, which it now holds),
    closed (a `delete_when` row that now ends a version, or removes the one its instant opened), or
    unchanged (a replay, an observation folded inside a version without changing it, a delete of a key
    already closed then, a lost tie).

    `rows` is how many rows the batch had and `set_aside` how many the caller kept out of it (`merge_history`),
    both counted apart from the categories, which must add up to `rows`: what a log compares them with,
    not what a merge did, so they take no part in comparing two merges' counts.
    """

    inserted: int
    updated: int
    deleted: int
    superseded: int = 0
    opened: int = 0
    changed: int = 0
    unchanged: int = 0
    closed: int = 0
    rows: int = field(default=0, compare=False)
    set_aside: int = field(default=0, compare=False)


def observations_table(contract: Contract) -> str:
    return tables.observations_table(contract.target)


def observation_columns(contract: Contract) -> list[str]:
    """An observation is a loaded row: contract and derived columns (and the business date), with lineage."""
    return [*(f.name for f in row_fields(contract)), *LINEAGE]


def observations_schema(contract: Contract) -> StructType:
    """`<target>_observations`: an observation's columns, and whether it is a held-back key's marker.

    `HELD` is NULL in rows written before it existed (the migration adds the column): they are rows.
    """
    fields = [f for f in target_schema(contract).fields if f.name in observation_columns(contract)]
    return StructType([*fields, StructField(HELD, BooleanType())])


def held_markers(held: DataFrame, contract: Contract, batch_id: str) -> DataFrame:
    """A marker observation for each key (and snapshot date) in `held`: the snapshot showed the key, but its
    row was held back, so the key is not missing (`snapshot_tombstones`) and no version takes its values.

    Without it a product whose row broke a rule one day would be closed that day, as if it had left the
    catalogue, and reopened as a new version the day its row is good again. A held-back row whose key
    is unreadable has no marker: its key is missing from the snapshot.
    """
    keys = list(contract.keys)
    types = {f.name: f.dataType for f in observations_schema(contract).fields}
    shown = held.where(_all_set(keys)).select(*keys, BUSINESS_DATE).distinct()
    return shown.select(
        *(
            F.col(name) if name in (*keys, BUSINESS_DATE)
            else F.lit(batch_id).alias(name) if name == BATCH_ID
            else F.lit(True).alias(name) if name == HELD
            else F.lit(None).cast(types[name]).alias(name)
            for name in types
        )
    )  # fmt: skip


def date_marker(warehouse: Warehouse, contract: Contract, batch_id: str, on: date) -> DataFrame:
    """A marker observation of no key on a snapshot's date: the snapshot was taken, also when it showed no key.

    The snapshot dates are the business dates observed (`snapshot_tombstones`): without it a snapshot of no
    row (a file of its header alone) closed nothing, while `validate` counted none of its keys as a parent.
    """
    values = {BUSINESS_DATE: on, BATCH_ID: batch_id, HELD: True}
    return warehouse.spark.range(1).select(
        *(F.lit(values.get(f.name)).cast(f.dataType).alias(f.name) for f in observations_schema(contract).fields)
    )


def _all_set(columns: list[str]) -> Column:
    condition = F.col(columns[0]).isNotNull()
    for name in columns[1:]:
        condition &= F.col(name).isNotNull()
    return condition


def _is_held() -> Column:
    return F.col(HELD).eqNullSafe(F.lit(True))


def tracked_columns(contract: Contract) -> list[str]:
    """The columns whose change opens a new version: `track_history`, or the contract's columns but
    `track_history_except`.

    Keys and the sequence column are never tracked: they identify and order versions. A `[[derived]]` column is
    tracked only when `track_history` names it: by default, one a contract adds (NULL in every earlier observation)
    opened a version at each key's next row, and changed the tracked columns, so every key was rebuilt. Computed
    from the row, it changes with a tracked column it reads anyway; from an untracked one or a parameter, it is
    no change of the entity's.
    """
    candidates = [f.name for f in row_fields(contract) if f.name not in (*contract.keys, contract.sequence_by)]
    candidates = [name for name in candidates if name != BUSINESS_DATE]
    if contract.track_history:
        return [name for name in candidates if name in contract.track_history]
    derived = {column.name for column in contract.derived}
    return [name for name in candidates if name not in (*contract.track_history_except, *derived)]


def target_properties(contract: Contract) -> dict[str, str]:
    """What a target is created with: its definition, and the change data feed that `merge_history` counts from
    (a target made by an earlier release gets them in place, from `target_definition.ensure_target`)."""
    return {**definition(contract), CHANGE_FEED: "true"}


def row_values(columns: list[str]) -> Column:
    """The columns' values as one struct, compared as a whole: equal when every field is (NULL equals NULL).

    Spark compares structs field by field as `<=>` does, which is also how the MERGE decides that a
    version changed. A SHA-256 of the row's JSON did not: JSON keeps timestamps to the millisecond,
    so a change below it opened no version, and it told -0.0 from 0.0. Measured with the runs'
    order alternated, the struct takes the time the digest took (bench/results/batch.md, session 22).
    """
    if not columns:
        return F.lit(True)
    return F.struct(*columns)


def snapshot_tombstones(shown: DataFrame, schema: StructType, contract: Contract) -> DataFrame:
    """A tombstone for each key on the first snapshot date after one that showed it, when that snapshot lacks it.

    `shown` holds every key each snapshot showed (its rows and its held-back markers); the tombstones
    have the observations' columns (`schema`). The snapshot dates are the business dates observed; a
    late older snapshot then closes only what it lacked on its own date, and a key that returns opens a
    new version.
    """
    keys = list(contract.keys)
    shown = shown.select(*keys, BUSINESS_DATE)
    dates = shown.select(F.col(BUSINESS_DATE).alias(_NEXT_DATE)).distinct()
    following = (
        shown.join(dates, F.col(_NEXT_DATE) > F.col(BUSINESS_DATE))
        .groupBy(*keys, BUSINESS_DATE)
        .agg(F.min(_NEXT_DATE).alias(_NEXT_DATE))
    )
    present = shown.select(*keys, F.col(BUSINESS_DATE).alias(_NEXT_DATE))
    missing = following.join(present, on=[*keys, _NEXT_DATE], how="left_anti").select(*keys, _NEXT_DATE).distinct()
    others = [name for name in observation_columns(contract) if name not in keys and name != contract.sequence_by]
    types = {f.name: f.dataType for f in schema.fields}
    return missing.select(
        *keys,
        *(F.lit(None).cast(types[name]).alias(name) for name in others),
        F.col(_NEXT_DATE).alias(contract.sequence_by),
        F.lit(True).alias(_TOMBSTONE),
    )


def versions(observations: DataFrame, contract: Contract) -> DataFrame:
    """The versions the observations of some keys give (target columns), see the module docstring.

    `observations` as the table holds them (`observations_schema`).
    """
    keys = list(contract.keys)
    sequence = contract.sequence_by
    # One observation per key and instant (equal ones resolved by content). Partitioned by the keys alone,
    # like every window below, so that Spark shuffles the observations once.
    first_per_instant = Window.partitionBy(*keys).orderBy(F.col(sequence), content_order(contract))
    earlier = F.lag(sequence).over(first_per_instant)
    observed = observations.where(F.col(sequence).isNotNull())  # not a key a batch withdrew (`withdrawn`)
    rows = (
        observed.where(~_is_held())
        .select(*observation_columns(contract), earlier.alias(_EARLIER))
        .where(F.col(_EARLIER).isNull() | (F.col(_EARLIER) != F.col(sequence)))
        .drop(_EARLIER)
        .withColumn(_TOMBSTONE, deletes(contract))
    )
    if contract.load == "snapshot":
        rows = rows.unionByName(snapshot_tombstones(observed, rows.schema, contract))
    by_time = Window.partitionBy(*keys).orderBy(sequence)
    # A tombstone's values are NULL: equal to the tombstone before it, unequal to any live observation.
    tracked = F.struct(
        F.col(_TOMBSTONE), F.when(~F.col(_TOMBSTONE), row_values(tracked_columns(contract))).alias(_VALUES)
    )
    valued = rows.withColumn(_TRACKED, tracked)
    previous = F.lag(_TRACKED).over(by_time)
    marked = valued.withColumn(_CHANGE, F.when(previous.isNull() | (previous != F.col(_TRACKED)), 1).otherwise(0))
    numbered = marked.withColumn(
        _VERSION, F.sum(_CHANGE).over(by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    )
    in_version = Window.partitionBy(*keys, _VERSION)
    latest_first = in_version.orderBy(F.col(sequence).desc())
    last = (
        numbered.withColumn(EFFECTIVE_FROM, F.min(sequence).over(in_version))
        .withColumn(_RANK, F.row_number().over(latest_first))
        .where(F.col(_RANK) == 1)
    )
    bounded = last.withColumn(EFFECTIVE_TO, F.lead(EFFECTIVE_FROM).over(Window.partitionBy(*keys).orderBy(_VERSION)))
    live = bounded.where(~F.col(_TOMBSTONE)).withColumn(IS_CURRENT, F.col(EFFECTIVE_TO).isNull())
    return live.select(*target_schema(contract).fieldNames())


def observed_in(warehouse: Warehouse, contracts: Iterable[Contract], batch_id: str) -> set[str]:
    """The contracts (by name) whose observations hold rows of `batch_id`: an earlier run of the batch merged
    into their targets. One query for all of them: each costs a local Spark a fixed fraction of a second."""
    found: list[DataFrame] = []
    for contract in contracts:
        observed = warehouse.read_if_exists(observations_table(contract))
        if observed is not None:
            rows = observed.where(F.col(BATCH_ID) == F.lit(batch_id))
            found.append(rows.select(F.lit(contract.name).alias("name")).limit(1))
    if not found:
        return set()
    return {row["name"] for row in reduce(lambda one, other: one.unionByName(other), found).collect()}


def target_before(
    warehouse: Warehouse, contract: Contract, target: DataFrame, batch_id: str, observed_before: bool | None = None
) -> DataFrame:
    """The target's versions as they stand without `batch_id`'s observations: what a revision or a replay of
    the batch is validated against, rather than the rows its own earlier run merged (which the merge takes
    back when the revision no longer has them). The keys that run observed are rebuilt from every other
    batch's observations (all keys of a snapshot); the others are as they are.

    `observed_before`: whether the observations hold rows of the batch, when the caller asked already
    (`observed_in`, for several targets at once); asked here otherwise.
    """
    observed = observations_table(contract)
    if observed_before is False or warehouse.read_if_exists(observed) is None:
        return target
    earlier = warehouse.read_batch(observed, batch_id)
    if observed_before is None and earlier.limit(1).count() == 0:
        return target
    others = warehouse.read(observed).where(F.col(BATCH_ID) != F.lit(batch_id))
    if contract.load == "snapshot":
        return versions(others, contract)
    keys = list(contract.keys)
    touched = earlier.select(*keys).distinct()
    rebuilt = versions(others.join(touched, on=keys, how="left_semi"), contract)
    # The target's columns as the contract has them: a column the contract dropped stays in the table.
    kept = target.select(*target_schema(contract).fieldNames()).join(touched, on=keys, how="left_anti")
    return kept.unionByName(rebuilt)


def history_source(touched: DataFrame, observations: DataFrame, target: DataFrame, contract: Contract) -> DataFrame:
    """The MERGE's source: the touched keys' rebuilt versions, and their old versions that no longer exist.

    `touched` holds the keys to rebuild (with repeats): at least those whose observations changed, since
    a key rebuilt without a change is left as it was. One full outer join of the old and the rebuilt
    versions on key and `effective_from`: the rebuild is computed once per pass of the MERGE, not once
    for the inserts and again for the deletes.
    """
    keys = list(contract.keys)
    columns = target_schema(contract).fieldNames()
    if contract.load == "snapshot":
        # Every key may be closed or reopened by a snapshot: all of them are touched.
        touched_observations = observations
        existing = target
    else:
        touched = touched.select(*keys).distinct()
        touched_observations = observations.join(touched, on=keys, how="left_semi")
        existing = target.join(touched, on=keys, how="left_semi")
    identity = [*keys, EFFECTIVE_FROM]
    rebuilt = versions(touched_observations, contract).withColumn(_REBUILT, F.lit(True))
    old = existing.select(*identity, F.lit(True).alias(_OLD))
    joined = rebuilt.join(old, on=identity, how="full_outer")
    return joined.select(
        *(F.col(name) for name in columns),
        F.when(F.col(_REBUILT).isNull(), F.lit(DELETE)).otherwise(F.lit(UPSERT)).alias(ACTION),
    )


def newest_snapshot_source(day: DataFrame, target: DataFrame, contract: Contract, on: date) -> DataFrame:
    """The MERGE's source for a snapshot newer than every other, on a target that no run of its date or a later
    one has merged into (`_is_newest_snapshot`): what `history_source` would give, from the current
    versions and `day` alone.

    `day`: the batch's observations (rows and held-back markers), all of date `on`. Rebuilding every key
    reads every snapshot ever kept; the newest one can only end or extend the current versions, so
    this reads the day's rows and the current versions, and its cost follows the snapshot, not the
    days kept. Per key, as `versions` would do with the day's observation last:
    - its row (one per key, by content, as `versions` picks) with the current version's tracked values:
      that version, holding the row's values (untracked values are its last observation's);
    - a row with other tracked values: the current version ends on `on`, a new one starts there;
    - a `delete_when` row, or no row and no held-back marker (missing from the snapshot): the current
      version ends on `on`;
    - a held-back marker alone: nothing changes.
    No version is deleted: only `history_source`'s rebuild of a late or repeated snapshot does that.
    """
    keys = list(contract.keys)
    schema = target_schema(contract)
    columns = schema.fieldNames()
    types = {f.name: f.dataType for f in schema.fields}
    tracked = tracked_columns(contract)
    # A row outranks the held-back marker of its key: the key's first observation is its row if it has one.
    one_per_key = Window.partitionBy(*keys).orderBy(_is_held(), content_order(contract))
    first = (
        day.withColumn(_RANK, F.row_number().over(one_per_key))
        .where(F.col(_RANK) == 1)
        .select(
            *keys,
            F.struct(*observation_columns(contract)).alias(_LAST),
            _is_held().alias(HELD),
            deletes(contract).alias(_TOMBSTONE),
            row_values(tracked).alias(_VALUES),
        )
    )
    current = target.where(F.col(IS_CURRENT)).select(
        *keys, F.struct(*columns).alias(_OLD), row_values(tracked).alias(_OLD_VALUES)
    )
    joined = current.join(first, on=keys, how="full_outer")
    has_version = F.col(_OLD).isNotNull()
    live = F.col(_LAST).isNotNull() & ~F.col(HELD) & ~F.col(_TOMBSTONE)
    kept = has_version & live & (F.col(_OLD_VALUES) == F.col(_VALUES))
    shown_held = F.col(_LAST).isNotNull() & F.col(HELD)
    ended = F.struct(
        *(
            F.lit(on).cast(types[name]).alias(name) if name == EFFECTIVE_TO
            else F.lit(False).alias(name) if name == IS_CURRENT
            else F.col(_OLD)[name].alias(name)
            for name in columns
        )
    )  # fmt: skip
    starts = F.when(kept, F.col(_OLD)[EFFECTIVE_FROM]).otherwise(F.lit(on).cast(types[EFFECTIVE_FROM]))
    latest = F.struct(
        *(
            starts.alias(name) if name == EFFECTIVE_FROM
            else F.lit(None).cast(types[name]).alias(name) if name == EFFECTIVE_TO
            else F.lit(True).alias(name) if name == IS_CURRENT
            else F.col(_LAST)[name].alias(name)
            for name in columns
        )
    )  # fmt: skip
    changes = F.array(F.when(has_version & ~kept & ~shown_held, ended), F.when(live, latest))
    return joined.select(F.explode(F.filter(changes, lambda change: change.isNotNull())).alias(_VERSION)).select(
        *(F.col(_VERSION)[name].alias(name) for name in columns), F.lit(UPSERT).alias(ACTION)
    )


def _snapshot_date(warehouse: Warehouse, observed: str, batch_id: str) -> date | None:
    """The date of the batch's observations of a snapshot dataset, when they have exactly one."""
    found = (
        warehouse.read_batch(observed, batch_id)
        .agg(F.min(BUSINESS_DATE).alias("first"), F.max(BUSINESS_DATE).alias("last"))
        .first()
    )
    if found is None:
        return None
    first: date | None = found["first"]
    return first if first is not None and first == found["last"] else None


def _is_newest_snapshot(warehouse: Warehouse, contract: Contract, observed: str, batch_id: str, on: date) -> bool:
    """Whether the batch's snapshot (of date `on`) is newer than every other observation, and the target holds
    no version that an observation of that date or later made, extended or ended (an earlier run of the
    batch, or of a later one, merged): none ends then, and none's last observation is of then (a version
    starts with an observation, so no other starts then either).

    Then `newest_snapshot_source` gives what rebuilding every key would. Both questions filter on the dates,
    which Delta answers for the older files from their statistics where the tables keep them (Databricks
    does; a local Spark's small-data settings do not, and then one date column is read).
    """
    later = F.col(BUSINESS_DATE) >= F.lit(on)
    if not warehouse.read(observed).where(later & (F.col(BATCH_ID) != F.lit(batch_id))).isEmpty():
        return False
    bounds = (F.col(contract.sequence_by) >= F.lit(on)) | (F.col(EFFECTIVE_TO) >= F.lit(on))
    return warehouse.read(contract.target).where(bounds).isEmpty()


def withdrawn(earlier: DataFrame, batch: DataFrame, contract: Contract, batch_id: str) -> DataFrame:
    """A marker observation (NULL sequence: a real one has none) for each key of the batch's `earlier` rows
    that its rows now lack.

    A re-run of a batch with other rows (a key quarantined now, a corrected contract) replaces its
    observations; a key it no longer has must still be rebuilt, or its versions would outlive the rows
    that made them. The marker keeps the key in the batch's observations for the MERGE, and for the
    retry of an attempt that died after the replace, whatever else committed in between; `versions`
    skips it. Markers are replaced with the batch like its rows, and one goes when its key returns.
    """
    keys = list(contract.keys)
    gone = earlier.select(*keys).distinct().join(batch.select(*keys).distinct(), on=keys, how="left_anti")
    types = {f.name: f.dataType for f in earlier.schema.fields}
    return gone.select(
        *(
            F.col(name) if name in keys
            else F.lit(batch_id).alias(name) if name == BATCH_ID
            else F.lit(None).cast(types[name]).alias(name)
            for name in observation_columns(contract)
        )
    )  # fmt: skip


def history_merge_v2(contract: Contract) -> MergeSpec:
    """Delete the versions that no longer exist, update the ones that differ (lineage aside), insert the new."""
    columns = target_schema(contract).fieldNames()
    compared = [c for c in columns if c not in LINEAGE and c not in (*contract.keys, EFFECTIVE_FROM)]
    differs = " OR ".join(f"NOT ({TARGET}.{quoted_name(c)} <=> {SOURCE}.{quoted_name(c)})" for c in compared)
    assign = tuple((c, f"{SOURCE}.{quoted_name(c)}") for c in columns)
    keys = " AND ".join(f"{TARGET}.{quoted_name(k)} = {SOURCE}.{quoted_name(k)}" for k in contract.keys)
    return MergeSpec(
        predicate=f"{keys} AND {TARGET}.{EFFECTIVE_FROM} = {SOURCE}.{EFFECTIVE_FROM}",
        when_matched_delete=(f"{SOURCE}.{ACTION} = '{DELETE}'",),
        when_matched_update=(MergeClause(assign, condition=f"{SOURCE}.{ACTION} = '{UPSERT}' AND ({differs})"),),
        when_not_matched_insert=(MergeClause(assign, condition=f"{SOURCE}.{ACTION} = '{UPSERT}'"),),
    )


def _refuse_unobserved_versions(warehouse: Warehouse, contract: Contract, observed: str) -> None:
    """Refuse a target that holds versions while its observations table holds no file: the rebuild would
    delete them.

    Such a target was loaded outside a pipeline (the ingest job, by hand): every key a batch touches
    would keep only the versions this batch's observations give. Decided from the tables' logs
    (`Warehouse.holds_files`; reading one row costs several times as much, and a new pipeline asks
    both tables of each target); the target's rows are read only when the observations hold no file
    and the target does. Observations that hold files without rows (files without statistics whose
    rows were deleted) were written by a pipeline, so they count as kept.
    """
    if warehouse.holds_files(observed) or not warehouse.holds_files(contract.target):
        return
    if warehouse.read(contract.target).isEmpty():  # files without statistics whose rows were all deleted
        return
    raise TargetDefinitionChanged(
        f"{warehouse.name(contract.target)} holds versions but {observed} holds no observation (the target was "
        "loaded outside a pipeline, by the ingest job or by hand): the batch job rebuilds each key's history from "
        "its observations, so the versions of every key a batch touches would be deleted. Load the dataset into "
        "a new target (target_table in its contract), or keep loading it outside the pipeline"
    )


def refuse_unsequenced_snapshot(contract: Contract) -> None:
    """Refuse a snapshot dataset sequenced by anything but its snapshot's date."""
    if contract.load == "snapshot" and contract.sequence_by != BUSINESS_DATE:
        raise TargetDefinitionChanged(
            f"{contract.name}: a snapshot dataset is sequenced by its snapshot's date; set sequence_by = "
            f'"{BUSINESS_DATE}" (a key missing from a snapshot is closed on that date)'
        )


def merge_history(
    warehouse: Warehouse,
    contract: Contract,
    batch: DataFrame,
    batch_id: str,
    held: DataFrame | None = None,
    set_aside: DataFrame | None = None,
    snapshot_date: date | None = None,
) -> HistoryCounts:
    """Record the batch's observations, then bring the target's touched keys to the history they give.

    `held`: for a snapshot, the keys (with the business date) of the batch's rows that were held back;
    they are not missing from it (`held_markers`); `snapshot_date`: its date, which ends every key it lacks
    also when it has no row (`date_marker`). Both ignored for other loads, where a key's absence means
    nothing. `set_aside`: rows the caller kept out of `batch` (quarantined), counted in the query that
    counts the batch's rows rather than in one of their own (each query costs a local Spark a fixed
    fraction of a second, whatever its rows).
    """
    refuse_unsequenced_snapshot(contract)
    target = contract.target
    schema = target_schema(contract)
    tracked = ",".join(sorted(tracked_columns(contract)))  # a column moved in the contract changes no version
    found = ensure_target(warehouse, contract, schema, target_properties(contract), {TRACKED_PROPERTY: tracked})
    # The versions were built with other tracked columns (or by a release that did not record them): every
    # key is rebuilt, not only the batch's, and the tracked columns are recorded once that MERGE committed.
    retrack = found.get(TRACKED_PROPERTY) != tracked
    observed = observations_table(contract)
    columns = observation_columns(contract)
    warehouse.ensure_table(observed, observations_schema(contract))
    _refuse_unobserved_versions(warehouse, contract, observed)
    predicate = batch_predicate(batch_id)
    observations = batch.select(*columns)
    if contract.load != "snapshot":  # a snapshot's rebuild touches every key anyway
        earlier = warehouse.read_batch(observed, batch_id)
        observations = observations.unionByName(withdrawn(earlier, batch, contract, batch_id))
    observations = observations.withColumn(HELD, F.lit(False))
    if contract.load == "snapshot" and held is not None:
        observations = observations.unionByName(held_markers(held, contract, batch_id))
    if contract.load == "snapshot" and snapshot_date is not None:
        observations = observations.unionByName(date_marker(warehouse, contract, batch_id, snapshot_date))
    # No count afterwards (replaced_rows would read the history): the MERGE reports what changed.
    warehouse.replace_where(observed, observations, predicate)
    # The keys to rebuild: the batch's, and the ones it withdrew, now or in an earlier run of it (all of
    # them when the tracked columns changed).
    touched = (warehouse.read(observed) if retrack else warehouse.read_batch(observed, batch_id)).select(*contract.keys)
    # A snapshot of one date: when it is the newest, only the current versions are read (asked again on a retry).
    on = _snapshot_date(warehouse, observed, batch_id) if contract.load == "snapshot" and not retrack else None
    read_at: list[int] = []

    def source() -> DataFrame:
        # The target's version as this attempt starts: what its MERGE reads, unless another commit slips in
        # first (whose changes the counts then share, when this MERGE changed anything); a retry after a
        # conflict reads anew.
        read_at.append(warehouse.version(target))
        existing = warehouse.read(target)
        if on is not None and _is_newest_snapshot(warehouse, contract, observed, batch_id, on):
            return newest_snapshot_source(warehouse.read_batch(observed, batch_id), existing, contract, on)
        return history_source(touched, warehouse.read(observed), existing, contract)

    counts = warehouse.merge(target, source, history_merge_v2(contract))
    # The rows' effects, from the versions the MERGE changed as the target's change data feed records
    # them (with any commit that slipped in after the version it read). A MERGE that changed no row
    # did nothing for any row: each was superseded or changed nothing.
    if counts.inserted or counts.updated or counts.deleted:
        identity = [*contract.keys, EFFECTIVE_FROM]
        new, old = warehouse.changed_rows(target, read_at[-1] + 1, warehouse.version(target), identity)
    else:
        new = old = warehouse.read(target).where(F.lit(False))
    effects = row_effects(batch, new, old, contract, set_aside)
    if retrack:
        committed(lambda: warehouse.set_properties(target, {TRACKED_PROPERTY: tracked}), f"pin {target}'s tracking")
    return HistoryCounts(counts.inserted, counts.updated, counts.deleted, *effects)


def row_effects(
    batch: DataFrame, new: DataFrame, old: DataFrame, contract: Contract, set_aside: DataFrame | None = None
) -> tuple[int, ...]:
    """Each row of the batch in one category: superseded, opened, changed, unchanged, closed (`HistoryCounts`);
    then how many rows the batch had, and how many `set_aside` has, each counted on its own.

    Counted in one query, comparing the versions the MERGE left (`new`: the ones it inserted or
    updated) with the ones they replaced (`old`: their values before it; `Warehouse.changed_rows`). A
    version the MERGE did not touch did nothing; one it deleted closed the key at its start when no
    version covers that instant any more (a delete row there won its tie). Each row lands in exactly one
    category, none is derived from the others; only the changed versions are read, so the cost
    follows the batch.
    """
    keys = list(contract.keys)
    sequence = contract.sequence_by
    compared = [
        name
        for name in target_schema(contract).fieldNames()
        if name not in LINEAGE and name not in (*keys, EFFECTIVE_FROM, EFFECTIVE_TO, IS_CURRENT)
    ]
    # Matching a version's last observation to a batch row compares their contract columns as values;
    # only the rank inside an instant needs the text order that `versions` breaks ties by.
    content = row_values(list(contract.column_names))
    # A version's tracked values are those of the row that opened it (they do not change inside it).
    tracked = row_values(tracked_columns(contract))
    new_versions = new.select(
        *keys,
        F.col(EFFECTIVE_FROM).alias(_FROM),
        F.col(EFFECTIVE_TO).alias(_TO),
        F.col(sequence).alias(_LAST),
        content.alias(_CONTENT),
        tracked.alias(_TRACKED),
        row_values(compared).alias(_VALUES),
    )
    old_versions = old.select(
        *keys,
        F.col(EFFECTIVE_FROM).alias(_FROM),
        F.col(EFFECTIVE_TO).alias(_OLD_TO),
        row_values(compared).alias(_OLD_VALUES),
    )
    compared_versions = new_versions.join(old_versions, on=[*keys, _FROM], how="full_outer")
    # A version the MERGE deleted (only `old` has it) closed the key at its start when no version covers
    # that instant any more: a delete row there outranked the row that opened it. A version that now
    # covers it (the deleted one folded into it) was inserted or had its end moved, so it is in `new`.
    live_to = F.when(F.col(_VALUES).isNotNull(), F.struct(F.col(_TO).alias(_TO)))
    earlier = Window.partitionBy(*keys).orderBy(_FROM).rowsBetween(Window.unboundedPreceding, -1)
    before = F.last(live_to, ignorenulls=True).over(earlier)
    covered = before.isNotNull() & (before[_TO].isNull() | (before[_TO] > F.col(_FROM)))
    compared_versions = compared_versions.withColumn(_COVERED, covered)
    # What each version did, as events at the instant of the row that did it: ended at a delete's instant
    # (and did not end there before, or is new), gone (deleted, its instant uncovered, as above), opened
    # (the target lacked it; the row holds its tracked values: a row that lost its instant's tie to another
    # batch's row opened nothing), changed (its values differ; the row is its last observation, matched by
    # content). One pass over the compared versions and one join with the batch: a join per kind of
    # event would read both sides of the target once per kind.
    events = F.array(
        F.when(F.col(_TO).isNotNull() & ~F.col(_TO).eqNullSafe(F.col(_OLD_TO)), _event(_TO, _CLOSED)),
        F.when(F.col(_VALUES).isNull() & ~F.col(_COVERED), _event(_FROM, _CLOSED)),
        F.when(F.col(_OLD_VALUES).isNull(), _event(_FROM, _OPENED)),
        F.when(F.col(_OLD_VALUES) != F.col(_VALUES), _event(_LAST, _CHANGED)),
    )
    event = F.col(_EVENT)
    at_instant = (
        compared_versions.select(*keys, F.explode(F.filter(events, lambda found: found.isNotNull())).alias(_EVENT))
        .groupBy(*keys, event[_AT].alias(sequence))
        .agg(
            F.collect_set(F.when(event[_KIND] == _OPENED, event[_TRACKED])).alias(_OPENED),
            F.max(event[_KIND] == _CLOSED).alias(_CLOSED),
            F.collect_set(F.when(event[_KIND] == _CHANGED, event[_CONTENT])).alias(_CHANGED),
        )
    )
    # The batch's rows, ranked inside their key and instant as `versions` picks one.
    same_instant = Window.partitionBy(*keys, sequence).orderBy(content_order(contract))
    ranked = batch.select(
        *keys,
        sequence,
        content.alias(_CONTENT),
        tracked.alias(_TRACKED),
        deletes(contract).alias(_TOMBSTONE),
        F.row_number().over(same_instant).alias(_RANK),
    )
    classified = ranked.join(at_instant, on=[*keys, sequence], how="left")
    first = F.col(_RANK) == 1
    live = first & ~F.col(_TOMBSTONE)
    dead = first & F.col(_TOMBSTONE)
    opened = F.coalesce(F.array_contains(F.col(_OPENED), F.col(_TRACKED)), F.lit(False))
    changed = F.coalesce(F.array_contains(F.col(_CHANGED), F.col(_CONTENT)), F.lit(False))
    closed = F.coalesce(F.col(_CLOSED), F.lit(False))
    counted = classified.agg(
        F.count_if(~first).alias("superseded"),
        F.count_if(live & opened).alias("opened"),
        F.count_if(live & ~opened & changed).alias("changed"),
        F.count_if((live & ~opened & ~changed) | (dead & ~closed)).alias("unchanged"),
        F.count_if(dead & closed).alias("closed"),
        # Every row once more, apart from the categories: a row in none of them (a NULL condition) shows.
        F.count(F.lit(1)).alias("rows"),
    )
    if set_aside is None:
        counted = counted.withColumn("set_aside", F.lit(0))
    else:  # one row joined to one row: still one query
        counted = counted.crossJoin(set_aside.agg(F.count(F.lit(1)).alias("set_aside")))
    found = counted.first()
    if found is None:
        # A global aggregate always yields one row (count_if of no rows is 0); none is the engine's fault.
        raise FilegateError("counting the batch's row effects returned no result")
    names = ("superseded", "opened", "changed", "unchanged", "closed", "rows", "set_aside")
    return tuple(int(found[name]) for name in names)


def _event(at: str, kind: str) -> Column:
    """What a version did (`kind`), at the instant in column `at`; a change carries its last observation's
    content and an opening its tracked values, which the batch row must match (the others NULLs of their
    types, not the row through the shuffle)."""
    content = F.col(_CONTENT) if kind == _CHANGED else F.when(F.lit(False), F.col(_CONTENT))
    tracked = F.col(_TRACKED) if kind == _OPENED else F.when(F.lit(False), F.col(_TRACKED))
    return F.struct(F.col(at).alias(_AT), F.lit(kind).alias(_KIND), content.alias(_CONTENT), tracked.alias(_TRACKED))
