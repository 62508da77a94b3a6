"""SCD2 v2 (spark_jobs/history.py): tracked columns, any arrival order, replay, late splits, snapshots, guards."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, cast

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, StructField, StructType

from filegate.contracts import BUSINESS_DATE, Column, Contract, parse_contract
from spark_jobs import history
from spark_jobs.batch_merge import merge_latest
from spark_jobs.changes import latest_per_key
from spark_jobs.columns import LINEAGE, target_schema
from spark_jobs.history import (
    HistoryCounts,
    TargetDefinitionChanged,
    merge_history,
    observation_columns,
)
from spark_jobs.merge import MergeSpec
from spark_jobs.target_definition import PROPERTIES, ensure_target
from spark_jobs.warehouse import CHANGE_FEED, ColumnRetyped, MergeCounts, Warehouse, driver_rows
from tests.spark_jobs.conftest import Lake

# Every key is (order, member): each of the six orders of three batches is replayed on its own keys in
# one table, so three MERGEs test them all (a MERGE per order and batch would cost minutes).
MEMBERS = Contract(
    name="members",
    file_pattern="members_{yyyy}_{mm}_{dd}.csv",
    columns=(
        Column("arrival", "string"),
        Column("member_id", "string"),
        Column("tier", "string"),
        Column("login", "string"),
        Column("updated_at", "timestamp"),
    ),
    keys=("arrival", "member_id"),
    sequence_by="updated_at",
    scd_type=2,
    track_history_except=("login", "updated_at"),
)
SHELF = Contract(
    name="shelf",
    file_pattern="shelf_{yyyy}_{mm}_{dd}.csv",
    columns=(Column("sku", "string"), Column("price", "long"), Column("aisle", "string")),
    keys=("sku",),
    sequence_by=BUSINESS_DATE,
    scd_type=2,
    load="snapshot",
    track_history=("price",),
)
T1, T2, T3 = datetime(2025, 1, 1, 9), datetime(2025, 1, 2, 9), datetime(2025, 1, 3, 9)
ONE_HOUR = timedelta(hours=1)
# Three batches of members. B only changes an untracked column; C arrives with a change dated inside
# the version A opened, so wherever C lands in the order it must split that version at T2 and T3.
BATCHES = {
    "A": [("m1", "GOLD", "a", T1), ("m2", "BASIC", "x", T1)],
    "B": [("m1", "GOLD", "c", T3), ("m2", "BASIC", "y", T3)],
    "C": [("m1", "PLATINUM", "b", T2)],
}
EXPECTED_MEMBERS = [
    ("m1", "GOLD", "a", T1, T2, False),
    ("m1", "PLATINUM", "b", T2, T3, False),
    ("m1", "GOLD", "c", T3, None, True),
    # Only an untracked column changed: one version, holding the latest login.
    ("m2", "BASIC", "y", T1, None, True),
]


def observed(spark: SparkSession, contract: Contract, values: list[tuple[Any, ...]], batch: str) -> DataFrame:
    """A batch's rows as the stage task leaves them: the row's columns and its lineage."""
    fields = [f for f in target_schema(contract).fields if f.name in observation_columns(contract)]
    rows = [(*row, batch, f"{batch}.csv", datetime(2025, 2, 1)) for row in values]
    return driver_rows(spark, rows, StructType(fields)).select(*observation_columns(contract))


def versions(lake: Lake, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    assert lake.spark is not None
    frame = lake.spark.table(lake.location.name(table)).drop(*LINEAGE)
    return sorted((tuple(r) for r in frame.select(*columns).collect()), key=repr)


def test_every_order_of_three_batches_gives_the_same_history_and_a_replay_or_rerun_converges(lake: Lake) -> None:
    assert lake.spark is not None
    warehouse = lake.warehouse()
    orders = ["".join(order) for order in itertools.permutations("ABC")]
    for step in range(3):
        rows = [(order, *row) for order in orders for row in BATCHES[order[step]]]
        merge_history(warehouse, MEMBERS, observed(lake.spark, MEMBERS, rows, f"step-{step}"), f"step-{step}")

    columns = ["arrival", "member_id", "tier", "login", "effective_from", "effective_to", "is_current"]
    found = versions(lake, MEMBERS.target, columns)
    by_order = {order: [row[1:] for row in found if row[0] == order] for order in orders}
    assert by_order == dict.fromkeys(orders, sorted(EXPECTED_MEMBERS, key=repr))

    # The first step again (the same batch, replaced in the observations): nothing changes.
    rows = [(order, *row) for order in orders for row in BATCHES[order[0]]]
    replayed = merge_history(warehouse, MEMBERS, observed(lake.spark, MEMBERS, rows, "step-0"), "step-0")
    assert replayed == HistoryCounts(0, 0, 0, unchanged=len(rows))
    assert versions(lake, MEMBERS.target, columns) == found

    # The first step once more without order CAB's row (batch C's PLATINUM at T2): a re-run whose rows
    # changed (a key quarantined now, a corrected contract) takes back the versions the row made, although
    # the batch no longer names its key: CAB's m1 is one GOLD version again, with T3's login.
    rerun = [row for row in rows if row[0] != "CAB"]
    assert merge_history(warehouse, MEMBERS, observed(lake.spark, MEMBERS, rerun, "step-0"), "step-0") == (
        HistoryCounts(0, 1, 2, unchanged=len(rerun))
    )
    cab = [("CAB", "m1", "GOLD", "c", T1, None, True), ("CAB", "m2", "BASIC", "y", T1, None, True)]
    found = sorted([*(r for r in found if r[0] != "CAB"), *cab], key=repr)
    assert versions(lake, MEMBERS.target, columns) == found

    # Once more without order BCA's rows (batch B's, at T3), by an attempt that dies in its MERGE after it
    # replaced the observations. Another batch merges before the retry, which finds BCA's rows gone already
    # and still takes back their versions.
    fewer = [row for row in rerun if row[0] != "BCA"]
    with pytest.raises(RuntimeError, match="driver lost"):
        merge_history(
            DyingWarehouse(lake.spark, lake.location), MEMBERS, observed(lake.spark, MEMBERS, fewer, "step-0"), "step-0"
        )
    assert versions(lake, MEMBERS.target, columns) == found
    other = [("other", "m1", "GOLD", "q", T1)]
    merge_history(warehouse, MEMBERS, observed(lake.spark, MEMBERS, other, "other"), "other")
    assert merge_history(warehouse, MEMBERS, observed(lake.spark, MEMBERS, fewer, "step-0"), "step-0") == (
        HistoryCounts(0, 2, 1, unchanged=len(fewer))
    )
    bca = [("BCA", "m1", "GOLD", "a", T1, T2, False), ("BCA", "m1", "PLATINUM", "b", T2, None, True)]
    bca += [("BCA", "m2", "BASIC", "x", T1, None, True), ("other", "m1", "GOLD", "q", T1, None, True)]
    found = sorted([*(r for r in found if r[0] != "BCA"), *bca], key=repr)
    assert versions(lake, MEMBERS.target, columns) == found

    # The target refuses a contract whose keys or sequence column changed under it, naming the property.
    changed_keys = replace(MEMBERS, keys=("member_id",))
    with pytest.raises(TargetDefinitionChanged, match=r"filegate\.keys: the table has 'arrival,member_id'"):
        merge_history(warehouse, changed_keys, observed(lake.spark, MEMBERS, rows, "x"), "x")
    resequenced = replace(MEMBERS, sequence_by="login", track_history_except=("updated_at",))
    with pytest.raises(TargetDefinitionChanged, match=r"filegate\.sequence_by: the table has 'updated_at'"):
        merge_history(warehouse, resequenced, observed(lake.spark, MEMBERS, rows, "x"), "x")


def shelf(spark: SparkSession, day: date, items: dict[str, int]) -> DataFrame:
    return observed(spark, SHELF, [(sku, price, "A1", day) for sku, price in items.items()], f"shelf-{day}")


def test_the_target_before_a_batch_is_rebuilt_without_the_rows_its_earlier_run_merged(lake: Lake) -> None:
    # What a revision of batch C is validated against: not C's own earlier rows (m3, PLATINUM), which the
    # revision may no longer have, nor a version C split; the keys C did not touch as they are.
    assert lake.spark is not None
    warehouse = lake.warehouse()
    merge_history(warehouse, MEMBERS, observed(lake.spark, MEMBERS, [("x", *r) for r in BATCHES["A"]], "A"), "A")
    merge_history(warehouse, MEMBERS, observed(lake.spark, MEMBERS, [("x", *r) for r in BATCHES["B"]], "B"), "B")
    after_a_and_b = warehouse.read(MEMBERS.target)
    columns = ["member_id", "tier", "login", "effective_from", "effective_to", "is_current"]
    expected = sorted(tuple(r) for r in after_a_and_b.select(*columns).collect())
    late = [("x", *BATCHES["C"][0]), ("x", "m3", "GOLD", "z", T2)]
    merge_history(warehouse, MEMBERS, observed(lake.spark, MEMBERS, late, "C"), "C")
    # A column the contract no longer has stays in the table (nothing is dropped).
    lake.spark.sql(f"ALTER TABLE {lake.location.name(MEMBERS.target)} ADD COLUMNS (nickname STRING)")
    target = warehouse.read(MEMBERS.target)

    before = history.target_before(warehouse, MEMBERS, target, "C")

    assert sorted(tuple(r) for r in before.select(*columns).collect()) == expected
    assert history.target_before(warehouse, MEMBERS, target, "never-ran") is target


def test_a_target_whose_rows_mean_something_else_is_refused_before_any_write(lake: Lake) -> None:
    warehouse = lake.warehouse()
    rows = [("A", "m1", "GOLD", "a", T1)]
    scd1 = replace(MEMBERS, name="flat", target_table="flat", scd_type=1, track_history_except=())
    # An SCD1 target that an earlier release made (no pinned definition), holding a row.
    merge_latest(warehouse, scd1, observed(lake.spark, MEMBERS, rows, "b1"))
    assert lake.comments("flat")[1]["_batch_id"] == "The batch that loaded the row.", "an SCD1 target's too"
    pinned = ", ".join(f"'{name}'" for name in PROPERTIES)
    lake.spark.sql(f"ALTER TABLE {warehouse.name('flat')} UNSET TBLPROPERTIES ({pinned})").collect()
    before = versions(lake, "flat", ["arrival", "member_id", "tier"])

    # A contract with other keys that also retypes a column is refused, and pins nothing on the way.
    columns = tuple(Column(c.name, "long") if c.name == "tier" else c for c in scd1.columns)
    with pytest.raises(ColumnRetyped, match="tier"):
        merge_latest(
            warehouse, replace(scd1, keys=("member_id",), columns=columns), observed(lake.spark, MEMBERS, rows, "b0")
        )
    assert not set(PROPERTIES) & set(warehouse.properties("flat"))

    # Its contract turned SCD2: rows without versions would never match and stay current for good.
    with pytest.raises(TargetDefinitionChanged, match=r"holds rows without effective_from, rows of SCD1"):
        merge_history(warehouse, replace(MEMBERS, target_table="flat"), observed(lake.spark, MEMBERS, rows, "b2"), "b2")
    # An SCD2 target turned SCD1: its MERGE would overwrite every version of a key with the newest values.
    merge_history(warehouse, MEMBERS, observed(lake.spark, MEMBERS, rows, "b1"), "b1")
    with pytest.raises(TargetDefinitionChanged, match=r"filegate\.scd_type: the table has '2', the contract says '1'"):
        merge_latest(warehouse, replace(MEMBERS, scd_type=1), observed(lake.spark, MEMBERS, rows, "b3"))
    # Versions loaded outside a pipeline (no observation kept) would be deleted by the first rebuild.
    lake.spark.sql(f"DELETE FROM {warehouse.name(history.observations_table(MEMBERS))}").collect()
    with pytest.raises(TargetDefinitionChanged, match=r"holds no observation"):
        merge_history(warehouse, MEMBERS, observed(lake.spark, MEMBERS, rows, "b4"), "b4")

    assert versions(lake, "flat", ["arrival", "member_id", "tier"]) == before
    assert len(versions(lake, MEMBERS.target, ["arrival"])) == 1


def test_a_snapshot_closes_a_missing_key_and_reopens_it_when_it_returns_in_any_order(lake: Lake) -> None:
    assert lake.spark is not None
    warehouse = lake.warehouse()
    d1, d2, d3, d4 = date(2025, 1, 1), date(2025, 1, 2), date(2025, 1, 3), date(2025, 1, 4)
    # d4's file holds its header alone, and ends every key: the merge found no date to end them on (validate
    # already counted none as a parent). The middle snapshot (without s2) arrives last: it must close s2 at
    # d2 inside history already written.
    for day, items in ((d1, {"s1": 10, "s2": 5}), (d4, {}), (d3, {"s1": 11, "s2": 5}), (d2, {"s1": 10})):
        merge_history(warehouse, SHELF, shelf(lake.spark, day, items), f"shelf-{day}", snapshot_date=day)

    columns = ["sku", "price", "effective_from", "effective_to", "is_current"]
    assert versions(lake, "shelf", columns) == [
        ("s1", 10, d1, d3, False),
        ("s1", 11, d3, d4, False),
        ("s2", 5, d1, d2, False),
        ("s2", 5, d3, d4, False),
    ]


HELD_KEYS = StructType([StructField("sku", StringType()), StructField(BUSINESS_DATE, DateType())])


def held(spark: SparkSession, day: date, *skus: str | None) -> DataFrame:
    """The keys (and snapshot date) of rows the batch held back, as `batch_merge.held_back` gives them."""
    return driver_rows(spark, [(sku, day) for sku in skus], HELD_KEYS)


def test_a_snapshot_row_held_back_keeps_its_key_open_even_when_its_day_arrives_last(lake: Lake) -> None:
    assert lake.spark is not None
    warehouse = lake.warehouse()
    d1, d2, d3, d4 = date(2025, 1, 1), date(2025, 1, 2), date(2025, 1, 3), date(2025, 1, 4)
    # s2's row broke a rule on d2 and was held back: s2 was on the shelf. It is gone on d3, back on d4.
    # s3's only rows were held back: no version. A held-back row whose key was unreadable holds nothing.
    batches = {
        d1: ({"s1": 10, "s2": 5}, ()),
        d2: ({"s1": 10}, ("s2", "s3", None)),
        d3: ({"s1": 10}, ("s3",)),
        d4: ({"s1": 10, "s2": 6}, ()),
    }
    columns = ["sku", "price", "effective_from", "effective_to", "is_current"]
    expected = [("s1", 10, d1, None, True), ("s2", 5, d1, d3, False), ("s2", 6, d4, None, True)]
    # The day that holds s2 back arrives last, inside history already written.
    for day in (d1, d3, d4, d2):
        items, skus = batches[day]
        merge_history(warehouse, SHELF, shelf(lake.spark, day, items), f"shelf-{day}", held(lake.spark, day, *skus))

    # Without the markers s2 would be closed on d2, as a key missing from that snapshot.
    assert versions(lake, "shelf", columns) == expected


def test_a_rerun_of_the_newest_snapshot_that_holds_a_row_back_gives_its_version_the_earlier_values(
    lake: Lake,
) -> None:
    assert lake.spark is not None
    warehouse = lake.warehouse()
    d1, d2 = date(2025, 1, 1), date(2025, 1, 2)
    merge_history(warehouse, SHELF, observed(lake.spark, SHELF, [("s1", 10, "A1", d1)], "d1"), "d1")
    # d2 moves s1 to another aisle (untracked: its version is updated in place), then is run again with s1's row
    # held back. No version starts or ends on d2, but one holds d2's values: the re-run is not the newest
    # snapshot's merge (`history.newest_snapshot_source`) and gives the version d1's aisle back.
    merge_history(warehouse, SHELF, observed(lake.spark, SHELF, [("s1", 10, "B2", d2)], "d2"), "d2")
    assert versions(lake, "shelf", ["sku", "aisle", "effective_from", "is_current"]) == [("s1", "B2", d1, True)]
    merge_history(warehouse, SHELF, observed(lake.spark, SHELF, [], "d2"), "d2", held(lake.spark, d2, "s1"))

    assert versions(lake, "shelf", ["sku", "aisle", "effective_from", "is_current"]) == [("s1", "A1", d1, True)]


def test_each_row_of_a_batch_is_counted_once_by_what_it_did_to_the_history(lake: Lake) -> None:
    assert lake.spark is not None
    warehouse = lake.warehouse()
    t15 = datetime(2025, 1, 1, 21)

    def merge(batch: str, *rows: tuple[Any, ...], aside: tuple[tuple[Any, ...], ...] = ()) -> HistoryCounts:
        def frame(of: tuple[tuple[Any, ...], ...]) -> DataFrame:
            return observed(lake.spark, MEMBERS, [("x", *r) for r in of], batch)

        counts = merge_history(warehouse, MEMBERS, frame(rows), batch, set_aside=frame(aside) if aside else None)
        # The rows, and those the caller set aside, are counted apart from the categories, which add up to them.
        assert (counts.rows, counts.set_aside) == (len(rows), len(aside))
        assert counts.superseded + counts.opened + counts.changed + counts.unchanged + counts.closed == len(rows)
        return counts

    # A row sent twice is superseded by its copy; each key's first row opens a version.
    first = merge("b1", ("m1", "GOLD", "a", T1), ("m1", "GOLD", "a", T1), ("m2", "BASIC", "x", T1))
    assert first == HistoryCounts(2, 0, 0, superseded=1, opened=2)
    # m1's login at T3 ends its version and changes it in place; its T2 row folds inside the version and
    # changes nothing; m2's new tier and the new m3 open versions (m2's old one is re-bounded).
    second = (
        ("m1", "GOLD", "c", T3),
        ("m1", "GOLD", "b", T2),
        ("m2", "PLATINUM", "y", T2),
        ("m3", "BASIC", "z", T2),
    )
    assert merge("b2", *second) == HistoryCounts(2, 2, 0, opened=2, changed=1, unchanged=1)
    # The same batch again: every row changed nothing.
    assert merge("b2", *second) == HistoryCounts(0, 0, 0, unchanged=4)
    # A late change inside m1's version splits it: the row opens a version, the T2 row now opens another.
    # A row set aside (quarantined) is counted, and merged nowhere.
    assert merge("b3", ("m1", "PLATINUM", "q", t15), aside=(("m9", "GOLD", "w", T1),)) == HistoryCounts(
        2, 1, 0, opened=1
    )
    # A late change splits m4's version at T2, and the version after it opens at T3 with the GOLD row of b4,
    # which wins its tie there with this batch's BASIC row ("GOLD" > "BASIC"): that row opened nothing.
    assert merge("b4", ("m4", "GOLD", "a", T1), ("m4", "GOLD", "b", T3)) == HistoryCounts(
        1, 0, 0, opened=1, unchanged=1
    )
    assert merge("b5", ("m4", "PLATINUM", "p", T2), ("m4", "BASIC", "c", T3)) == HistoryCounts(
        2, 1, 0, opened=1, unchanged=1
    )

    columns = ["member_id", "tier", "login", "effective_from", "effective_to", "is_current"]
    assert {row[0] for row in versions(lake, MEMBERS.target, columns)} == {"m1", "m2", "m3", "m4"}
    assert [row[:4] for row in versions(lake, MEMBERS.target, columns) if row[0] == "m1"] == [
        ("m1", "GOLD", "a", T1),
        ("m1", "GOLD", "c", T2),
        ("m1", "PLATINUM", "q", t15),
    ]
    assert sorted(
        (row[:5] for row in versions(lake, MEMBERS.target, columns) if row[0] == "m4"), key=lambda r: r[3]
    ) == [
        ("m4", "GOLD", "a", T1, T2),
        ("m4", "PLATINUM", "p", T2, T3),
        ("m4", "GOLD", "b", T3, None),
    ]


# Two batches of members, and what each does (also run over Spark Connect, tests/spark_jobs/test_spark_connect.py):
# b2 changes m1's login in place at T3, folds m1's T2 row inside its version, and opens m2's PLATINUM at T2.
TWO_BATCHES = {
    "b1": [("m1", "GOLD", "a", T1), ("m2", "BASIC", "x", T1)],
    "b2": [("m1", "GOLD", "c", T3), ("m1", "GOLD", "b", T2), ("m2", "PLATINUM", "y", T2)],
}
TWO_BATCHES_COUNTS = {
    "b1": HistoryCounts(2, 0, 0, opened=2, rows=2),
    "b2": HistoryCounts(1, 2, 0, opened=1, changed=1, unchanged=1, rows=3),
}


class RecordingSession:
    """The test session, recording each SQL statement sent through it (a `Warehouse` sends them all so)."""

    def __init__(self, spark: SparkSession):
        self.spark = spark
        self.statements: list[str] = []

    def sql(self, statement: str, *args: Any, **kwargs: Any) -> DataFrame:
        self.statements.append(statement)
        return self.spark.sql(statement, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.spark, name)


def with_descriptions(contract: Contract, **described: str) -> Contract:
    """`contract` with its columns described as `described` says (the others as they were)."""
    columns = tuple(replace(c, description=described.get(c.name, c.description)) for c in contract.columns)
    return replace(contract, columns=columns)


def test_a_target_carries_its_contract_s_descriptions_and_follows_them_when_they_change(lake: Lake) -> None:
    assert lake.spark is not None
    session = RecordingSession(lake.spark)
    warehouse = Warehouse(cast(SparkSession, session), lake.location)
    # A quote and a backslash: a Spark string literal ends at the one and takes escapes after the other.
    tier = "The member's tier, as the CRM\\loyalty export has it"
    contract = replace(with_descriptions(MEMBERS, tier=tier), description="Members' tiers \\ logins")

    ensure_target(warehouse, contract, target_schema(contract), history.target_properties(contract))

    table, columns = lake.comments(contract.target)
    assert table == "Members' tiers \\ logins"
    assert (columns["tier"], columns["login"]) == (tier, None)
    assert (
        columns["effective_to"]
        == "When the next version of the key began (its updated_at); NULL while this one is current."
    )
    assert columns["_batch_id"] == "The batch that loaded the row."

    # The contract's words changed: the next run sets them on the table.
    changed = replace(
        with_descriptions(contract, tier="", login="When the member last logged in."), description="Members"
    )
    ensure_target(warehouse, changed, target_schema(changed), history.target_properties(changed))

    table, columns = lake.comments(contract.target)
    assert (table, columns["login"]) == ("Members", "When the member last logged in.")
    assert not columns["tier"]
    assert (
        columns["effective_to"]
        == "When the next version of the key began (its updated_at); NULL while this one is current."
    )

    # Nothing changed: the definition check's one statement, as before tables had comments, and no commit.
    commits = len(lake.spark.sql(f"DESCRIBE HISTORY {warehouse.name(contract.target)}").collect())
    session.statements.clear()
    ensure_target(warehouse, changed, target_schema(changed), history.target_properties(changed))
    assert [statement.split(" ")[:2] for statement in session.statements] == [["DESCRIBE", "DETAIL"]]
    assert len(lake.spark.sql(f"DESCRIBE HISTORY {warehouse.name(contract.target)}").collect()) == commits


class DyingWarehouse(Warehouse):
    """A task whose driver dies in each MERGE, before it commits."""

    def merge(self, table: str, source: Callable[[], DataFrame], spec: MergeSpec) -> MergeCounts:
        raise RuntimeError("driver lost")


class RewritingWarehouse(Warehouse):
    """Another writer's commit right after each MERGE, on the same versions: every row rewritten as it was."""

    def merge(self, table: str, source: Callable[[], DataFrame], spec: MergeSpec) -> MergeCounts:
        counts = super().merge(table, source, spec)
        self.spark.sql(f"UPDATE {self.name(table)} SET login = login").collect()
        return counts


def test_counts_hold_on_a_target_without_the_change_feed_and_with_another_commit_after_the_merge(lake: Lake) -> None:
    spark = lake.spark
    assert spark is not None
    warehouse = RewritingWarehouse(spark, lake.location)
    target = MEMBERS.target

    def merge(batch: str) -> HistoryCounts:
        rows = [("x", *row) for row in TWO_BATCHES[batch]]
        return merge_history(warehouse, MEMBERS, observed(spark, MEMBERS, rows, batch), batch)

    assert merge("b1") == TWO_BATCHES_COUNTS["b1"]
    # A new target is created with its definition and the feed on, in its first commit.
    operations = [row["operation"] for row in spark.sql(f"DESCRIBE HISTORY {warehouse.name(target)}").collect()]
    assert operations == ["UPDATE", "MERGE", "CREATE TABLE"]
    # A target as an earlier release left it, without the change data feed: turned on in place. The
    # other writer's commit makes the counts read a range of two commits that both changed m2's new
    # version: it was opened (the first commit found no version there), whatever the second did to it.
    warehouse.set_properties(target, {CHANGE_FEED: "false"})
    counts = merge("b2")

    assert warehouse.properties(target)[CHANGE_FEED] == "true"
    operations = [row["operation"] for row in spark.sql(f"DESCRIBE HISTORY {warehouse.name(target)}").collect()]
    assert operations[:4] == ["UPDATE", "MERGE", "SET TBLPROPERTIES", "SET TBLPROPERTIES"], "turned on again"
    assert counts == TWO_BATCHES_COUNTS["b2"]


def test_a_changed_track_history_rebuilds_every_key_with_the_new_tracked_columns(lake: Lake) -> None:
    spark = lake.spark
    assert spark is not None
    warehouse = lake.warehouse()
    columns = ["member_id", "tier", "login", "effective_from", "effective_to", "is_current"]

    def merge(contract: Contract, batch: str, values: list[tuple[Any, ...]]) -> HistoryCounts:
        rows = [("x", *row) for row in values]
        return merge_history(warehouse, contract, observed(spark, contract, rows, batch), batch)

    merge(MEMBERS, "a", BATCHES["A"])
    merge(MEMBERS, "b", BATCHES["B"])  # only the untracked login changed: one version per member
    assert versions(lake, MEMBERS.target, columns) == [
        ("m1", "GOLD", "c", T1, None, True),
        ("m2", "BASIC", "y", T1, None, True),
    ]
    assert warehouse.properties(MEMBERS.target)[history.TRACKED_PROPERTY] == "tier"

    # The login is tracked now. A batch that names neither member rebuilds both: the versions every key
    # would have had under the new tracking, not a target whose keys follow two definitions.
    tracking_login = replace(MEMBERS, track_history_except=("updated_at",))
    counts = merge(tracking_login, "c", [("m3", "BASIC", "z", T2)])

    assert versions(lake, MEMBERS.target, columns) == [
        ("m1", "GOLD", "a", T1, T3, False),
        ("m1", "GOLD", "c", T3, None, True),
        ("m2", "BASIC", "x", T1, T3, False),
        ("m2", "BASIC", "y", T3, None, True),
        ("m3", "BASIC", "z", T2, None, True),
    ]
    assert (counts.opened, counts.unchanged) == (1, 0)  # the batch's row; the rebuilt keys are no row's doing
    assert warehouse.properties(MEMBERS.target)[history.TRACKED_PROPERTY] == "login,tier"


@pytest.mark.parametrize("key", ["track_history", "track_history_except"])
def test_a_derived_column_may_be_named_in_what_history_tracks(key: str) -> None:
    # The history tracks a derived column unless left out, yet either list refused it: "tier is not a column".
    band = {"on": "amount", "default": "STD", "rules": [{"label": "VIP", "min": 1000}]}
    document = {
        "name": "accounts",
        "file_pattern": "accounts_{yyyy}_{mm}_{dd}.csv",
        "keys": ["id"],
        "sequence_by": "updated_at",
        "scd_type": 2,
        "columns": [
            {"name": "id", "type": "long", "nullable": False},
            {"name": "amount", "type": "decimal(10,2)"},
            {"name": "updated_at", "type": "timestamp", "nullable": False},
        ],
        "derived": [{"name": "tier", "bands": band}],
        key: ["tier"],
    }

    tracked = history.tracked_columns(parse_contract(document))

    assert tracked == (["tier"] if key == "track_history" else ["amount"])
    # Not named, a derived column is not tracked: one a contract adds is NULL in every earlier observation, and
    # opened a version at each key's next row, with no change of the entity's.
    del document[key]
    assert history.tracked_columns(parse_contract(document)) == ["amount"]
    document["track_history_except"] = ["amount"]
    assert history.tracked_columns(parse_contract(document)) == []


def test_a_delete_when_row_closes_its_version_and_a_late_one_never_ends_a_newer_version(lake: Lake) -> None:
    assert lake.spark is not None
    warehouse = lake.warehouse()
    leaving = replace(MEMBERS, name="leavers", delete_when="tier = 'DELETED'")

    def merge(batch: str, *rows: tuple[Any, ...]) -> HistoryCounts:
        return merge_history(warehouse, leaving, observed(lake.spark, leaving, [("x", *r) for r in rows], batch), batch)

    assert merge("b1", ("m1", "GOLD", "a", T1), ("m2", "BASIC", "x", T1)) == HistoryCounts(2, 0, 0, opened=2)
    # m1's delete closes its version at T2 (no new version); m2's new tier opens one at T3.
    second = (("m1", "DELETED", None, T2), ("m2", "PLATINUM", "y", T3))
    assert merge("b2", *second) == HistoryCounts(1, 2, 0, opened=1, closed=1)
    assert merge("b2", *second) == HistoryCounts(0, 0, 0, unchanged=2)
    # A late delete of m2 at T2 ends its BASIC version there, but its newer PLATINUM version stays current;
    # m1 comes back at T3 with a new version.
    third = (("m2", "DELETED", None, T2), ("m1", "GOLD", "c", T3))
    assert merge("b3", *third) == HistoryCounts(1, 1, 0, opened=1, closed=1)

    # m3's delete at the very instant that opened its version outranks that row (its content is greater):
    # the version is gone, and the delete row counts as closing it.
    assert merge("b4", ("m3", "BASIC", "z", T1)) == HistoryCounts(1, 0, 0, opened=1)
    assert merge("b5", ("m3", "DELETED", None, T1)) == HistoryCounts(0, 0, 1, closed=1)
    assert merge("b5", ("m3", "DELETED", None, T1)) == HistoryCounts(0, 0, 0, unchanged=1)
    # m4's delete at T2 loses its tie to another batch's GOLD row there ("GOLD" > "DELETED"); an earlier GOLD
    # row at T1 in its own batch folds the T2 version into a new one from T1, so the MERGE deletes the T2
    # version: covered by the T1 version, it was not closed, and the delete row changed nothing.
    assert merge("b6", ("m4", "GOLD", "z", T2)) == HistoryCounts(1, 0, 0, opened=1)
    assert merge("b7", ("m4", "GOLD", "y", T1), ("m4", "DELETED", None, T2)) == HistoryCounts(
        1, 0, 1, opened=1, unchanged=1
    )
    # m5's delete at T2 outranks the BASIC row that opened a version there, while a login change updates the
    # GOLD version before it, which ends at T2 exactly: ending where the deleted version started, it does not
    # cover that instant, so the delete row closed the key there. (Without the login change the GOLD version
    # is not among the MERGE's changes, and nothing compares its end with T2.)
    assert merge("b8", ("m5", "GOLD", "z", T1), ("m5", "BASIC", "z", T2)) == HistoryCounts(2, 0, 0, opened=2)
    assert merge("b9", ("m5", "GOLD", "w", T1 + ONE_HOUR), ("m5", "DELETED", None, T2)) == HistoryCounts(
        0, 1, 1, changed=1, closed=1
    )
    # m6 has three versions; a GOLD row at T1 and one winning T2's tie with BASIC fold them into one from T1,
    # so the MERGE deletes all three. The delete at T3 loses its tie to GOLD: the version that started at
    # its instant was deleted, as were the two before it (T1 + 1 h, T2), and the first live version before
    # them (from T1, open) covers that instant, so the delete row closed nothing. (Looking at the previous
    # version only, a deleted one, would count it closed.) The T2 row lies inside the new version, which
    # takes its values from T3's row.
    assert merge("b10", ("m6", "GOLD", "z", T1 + ONE_HOUR), ("m6", "BASIC", "z", T2), ("m6", "GOLD", "z", T3)) == (
        HistoryCounts(3, 0, 0, opened=3)
    )
    assert merge("b11", ("m6", "GOLD", "y", T1), ("m6", "GOLD", "y", T2), ("m6", "DELETED", None, T3)) == (
        HistoryCounts(1, 0, 3, opened=1, unchanged=2)
    )

    columns = ["member_id", "tier", "login", "effective_from", "effective_to", "is_current"]
    assert versions(lake, leaving.target, columns) == [
        ("m1", "GOLD", "a", T1, T2, False),
        ("m1", "GOLD", "c", T3, None, True),
        ("m2", "BASIC", "x", T1, T2, False),
        ("m2", "PLATINUM", "y", T3, None, True),
        ("m4", "GOLD", "z", T1, None, True),
        ("m5", "GOLD", "w", T1, T2, False),
        ("m6", "GOLD", "z", T1, None, True),
    ]


# A reading with a tracked timestamp and a tracked double: what counts as a change of value.
READINGS = Contract(
    name="readings",
    file_pattern="readings_{yyyy}_{mm}_{dd}.csv",
    columns=(
        Column("sensor", "string"),
        Column("calibrated_at", "timestamp"),
        Column("offset", "double"),
        Column("read_at", "timestamp"),
    ),
    keys=("sensor",),
    sequence_by="read_at",
    scd_type=2,
)


def test_a_change_below_a_millisecond_opens_a_version_and_minus_zero_is_zero(spark: SparkSession) -> None:
    calibrated = datetime(2025, 1, 1, 8, 0, 0, 1)
    rows = [
        ("s1", calibrated, 0.5, T1),
        ("s1", calibrated.replace(microsecond=2), 0.5, T2),  # a microsecond later: a change
        ("s2", calibrated, 0.0, T1),
        ("s2", calibrated, -0.0, T2),  # equal values, as the MERGE's <=> sees them: no change
    ]

    found = history.versions(observed(spark, READINGS, rows, "r").withColumn(history.HELD, F.lit(None)), READINGS)
    found = found.collect()

    assert sorted((r["sensor"], r["effective_from"], r["is_current"]) for r in found) == [
        ("s1", T1, False),
        ("s1", T2, True),
        ("s2", T1, True),
    ]


def test_rows_of_one_key_and_instant_differing_below_a_millisecond_resolve_the_same_in_any_order(
    spark: SparkSession,
) -> None:
    one, two = datetime(2025, 1, 1, 8, 0, 0, 1), datetime(2025, 1, 1, 8, 0, 0, 2)
    rows = [("s1", one, 0.5, T1), ("s1", two, 0.5, T1)]

    kept = [latest_per_key(observed(spark, READINGS, order, "r"), READINGS).collect() for order in (rows, rows[::-1])]

    # The content text holds microseconds: the later calibration's is greater, and the greater wins, in any order.
    assert [[r["calibrated_at"] for r in found] for found in kept] == [[two], [two]]


def test_columns_named_like_reserved_words_keep_their_history_where_the_session_enforces_them(
    reserved_keywords: SparkSession, lake: Lake
) -> None:
    # Key, sequence, tracked and untracked columns all named as words Spark SQL reserves.
    reserved = Contract(
        name="reserved",
        file_pattern="reserved_{yyyy}_{mm}_{dd}.csv",
        columns=(*(Column(name, "string") for name in ("order", "user", "from")), Column("end", "timestamp")),
        keys=("order",),
        sequence_by="end",
        scd_type=2,
        track_history_except=("from",),
    )
    warehouse = lake.warehouse()

    def merge(batch: str, *rows: tuple[Any, ...]) -> HistoryCounts:
        return merge_history(warehouse, reserved, observed(reserved_keywords, reserved, list(rows), batch), batch)

    assert merge("b1", ("o1", "ann", "x", T1), ("o2", "bob", "x", T1)) == HistoryCounts(2, 0, 0, opened=2)
    # o1's user changes (a new version); o2's untracked `from` changes in place.
    assert merge("b2", ("o1", "cy", "x", T2), ("o2", "bob", "y", T2)) == HistoryCounts(1, 2, 0, opened=1, changed=1)

    columns = ["order", "user", "from", "effective_from", "effective_to", "is_current"]
    assert versions(lake, reserved.target, columns) == [
        ("o1", "ann", "x", T1, T2, False),
        ("o1", "cy", "x", T2, None, True),
        ("o2", "bob", "y", T1, None, True),
    ]
