"""SCD2 history against an independent model: random batches in a random order, a replay, a re-run with
other rows; after every merge the target must hold exactly the versions the model gives its observations.
The same for snapshots, whose newest day takes a path of its own (`history.newest_snapshot_source`)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import functions as F

from spark_jobs import history
from spark_jobs.history import merge_history
from spark_jobs.merge import content_text
from tests.spark_jobs.conftest import Lake
from tests.spark_jobs.test_history import MEMBERS, SHELF, held, observed

# (scenario, member, tier, login, updated_at): a scenario is a key prefix, so that one MERGE per step
# runs every scenario. Few instants and values, so that ties, folds, splits and deletes are common.
Row = tuple[str, str, str, str | None, datetime]
LEAVING = replace(MEMBERS, name="modelled", delete_when="tier = 'DELETED'")
INSTANTS = [datetime(2025, 1, 1, 9) + timedelta(hours=h) for h in range(5)]
SCENARIOS = 80


def random_batch(rng: random.Random, scenario: str) -> list[Row]:
    rows = []
    for _ in range(rng.randint(1, 4)):
        tier = rng.choice(["GOLD", "BASIC", "DELETED"])
        login = None if tier == "DELETED" else rng.choice(["a", "b", None])
        rows.append((scenario, rng.choice(["m1", "m2"]), tier, login, rng.choice(INSTANTS)))
    return rows


def modelled_versions(observations: Sequence[Row], content: dict[Row, str]) -> list[tuple[Any, ...]]:
    """The versions a key's observations give, by the rules of the module docstring of spark_jobs.history:
    one row per instant (the greatest content text), a new version where the tier (the tracked column)
    changes or after a delete, the untracked login of the version's last observation, each version ending
    where the next one (or a delete) starts."""
    by_key: dict[tuple[str, str], dict[datetime, Row]] = {}
    for row in observations:
        instants = by_key.setdefault((row[0], row[1]), {})
        if row[4] not in instants or content[row] > content[instants[row[4]]]:
            instants[row[4]] = row
    found = []
    for (scenario, member), instants in by_key.items():
        runs: list[tuple[str | None, datetime, Row]] = []  # tier (None: deleted), start, last observation
        for instant in sorted(instants):
            row = instants[instant]
            tier = None if row[2] == "DELETED" else row[2]
            if runs and runs[-1][0] == tier:
                runs[-1] = (tier, runs[-1][1], row)
            else:
                runs.append((tier, instant, row))
        for position, (tier, start, last) in enumerate(runs):
            if tier is not None:
                end = runs[position + 1][1] if position + 1 < len(runs) else None
                found.append((scenario, member, tier, last[3], start, end, end is None))
    return sorted(found, key=repr)


def test_every_merge_leaves_the_versions_an_independent_model_gives_the_observations(lake: Lake) -> None:
    assert lake.spark is not None
    spark, warehouse = lake.spark, lake.warehouse()
    rng = random.Random(20251202)
    scenarios = [f"s{n}" for n in range(SCENARIOS)]
    batches = {s: [random_batch(rng, s) for _ in range(3)] for s in scenarios}
    orders = {s: rng.sample(range(3), 3) for s in scenarios}
    corrected = {s: random_batch(rng, s) for s in scenarios}
    every_row = [row for s in scenarios for row in [*corrected[s], *(r for b in batches[s] for r in b)]]
    texts = observed(spark, LEAVING, every_row, "x").select(F.expr(content_text(LEAVING)).alias("text")).collect()
    content = dict(zip(every_row, (row["text"] for row in texts), strict=True))

    # Three batches in each scenario's own order, the second again (a replay), the first with other rows,
    # then with its first rows once more (the keys it withdrew come back, the others are withdrawn).
    steps = [(f"step-{n}", {s: batches[s][orders[s][n]] for s in scenarios}) for n in range(3)]
    steps += [steps[1], ("step-0", corrected), steps[0]]
    observations: dict[str, list[Row]] = {}
    columns = ["arrival", "member_id", "tier", "login", "effective_from", "effective_to", "is_current"]
    for number, (batch, rows_of) in enumerate(steps):
        rows = [row for s in scenarios for row in rows_of[s]]
        counts = merge_history(warehouse, LEAVING, observed(spark, LEAVING, rows, batch), batch)
        observations[batch] = rows

        target = spark.table(lake.location.name(LEAVING.target)).select(*columns).collect()
        expected = modelled_versions([row for rows in observations.values() for row in rows], content)
        assert sorted((tuple(row) for row in target), key=repr) == expected, f"step {number} ({batch})"
        assert counts.superseded + counts.opened + counts.changed + counts.unchanged + counts.closed == len(rows)
        if number == 3:
            assert (counts.inserted, counts.updated, counts.deleted) == (0, 0, 0), "a replay changes nothing"


# (sku, price, aisle, snapshot date): price is tracked, aisle not, and an aisle of GONE deletes the item.
Item = tuple[str, int | None, str | None, date]
STOCKED = replace(SHELF, name="stocked", delete_when="aisle = 'GONE'")
DAYS = [date(2025, 1, 1) + timedelta(days=n) for n in range(5)]
ITEMS = 60


def random_snapshot(rng: random.Random, day: date) -> tuple[list[Item], list[str]]:
    """A day's rows and held-back keys: an item is missing, held back, or shown by one or two rows; a NULL
    price, so that NULL must equal NULL; few values, so that unchanged, changed and deleted items are common."""
    rows: list[Item] = []
    held_back: list[str] = []
    for n in range(ITEMS):
        sku, draw = f"k{n}", rng.random()
        if draw < 0.3:
            held_back += [sku] if draw < 0.1 else []
            continue
        for _ in range(rng.choice([1, 1, 1, 2])):
            rows.append((sku, rng.choice([1, 2, None]), rng.choice(["a", "b", None, "GONE"]), day))
    return rows, held_back


def modelled_snapshots(
    snapshots: Sequence[tuple[date, list[Item], list[str]]], content: dict[Item, str]
) -> list[tuple]:
    """The versions the snapshots give, by the rules of spark_jobs.history: a key's row on a day (the greatest
    content text) is an observation; a key missing from the next snapshot date after one that showed it
    (a row or a held-back key) is closed there, as is one whose row matches GONE; a new version where the
    price changes or after a close, with the aisle of its last row."""
    dates = sorted({day for day, rows, skus in snapshots if rows or skus})
    rows_on: dict[tuple[str, date], Item] = {}
    held_on = {(sku, day) for day, _, skus in snapshots for sku in skus}
    for _, rows, _ in snapshots:
        for row in rows:
            if (row[0], row[3]) not in rows_on or content[row] > content[rows_on[(row[0], row[3])]]:
                rows_on[(row[0], row[3])] = row
    found = []
    for sku in sorted({key for key, _ in rows_on} | {key for key, _ in held_on}):
        runs: list[tuple[tuple[Any, ...] | None, date, Item | None]] = []  # price (None: closed), start, last row
        shown = False
        for day in dates:
            row = rows_on.get((sku, day))
            if row is not None:
                event: tuple[Any, ...] | None = None if row[2] == "GONE" else (row[1],)
            elif (sku, day) in held_on or not shown:
                shown = (sku, day) in held_on
                continue
            else:
                event = None
            shown = row is not None
            if runs and runs[-1][0] == event:
                runs[-1] = (event, runs[-1][1], row if row is not None else runs[-1][2])
            else:
                runs.append((event, day, row))
        for position, (event, start, last) in enumerate(runs):
            if event is not None and last is not None:
                end = runs[position + 1][1] if position + 1 < len(runs) else None
                found.append((sku, last[1], last[2], start, end, end is None))
    return sorted(found, key=repr)


def test_snapshots_in_any_order_leave_the_versions_a_model_gives_and_the_newest_reads_no_history(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lake.spark is not None
    spark, warehouse = lake.spark, lake.warehouse()
    rng = random.Random(20261205)
    snapshots = {day: random_snapshot(rng, day) for day in DAYS}
    corrected = random_snapshot(rng, DAYS[4])
    every_row = [row for rows, _ in [*snapshots.values(), corrected] for row in rows]
    texts = observed(spark, STOCKED, every_row, "x").select(F.expr(content_text(STOCKED)).alias("text")).collect()
    content = dict(zip(every_row, (row["text"] for row in texts), strict=True))
    newest = []
    monkeypatch.setattr(history, "newest_snapshot_source", _spy(history.newest_snapshot_source, newest))

    # In order, a late day, a replay, the newest day after them, then that day again with other rows.
    d0, d1, d2, d3, d4 = DAYS
    steps = [(d0, snapshots[d0]), (d1, snapshots[d1]), (d3, snapshots[d3]), (d2, snapshots[d2])]
    steps += [(d3, snapshots[d3]), (d4, snapshots[d4]), (d4, corrected)]
    kept: dict[date, tuple[date, list[Item], list[str]]] = {}
    columns = ["sku", "price", "aisle", "effective_from", "effective_to", "is_current"]
    for number, (day, (rows, held_back)) in enumerate(steps):
        newest.append(False)
        batch = observed(spark, STOCKED, rows, f"shelf-{day}")
        counts = merge_history(warehouse, STOCKED, batch, f"shelf-{day}", held(spark, day, *held_back))
        kept[day] = (day, rows, held_back)

        target = spark.table(lake.location.name(STOCKED.target)).select(*columns).collect()
        assert sorted((tuple(r) for r in target), key=repr) == modelled_snapshots(list(kept.values()), content), (
            f"step {number} ({day})"
        )
        assert counts.superseded + counts.opened + counts.changed + counts.unchanged + counts.closed == len(rows)
    # Only a day newer than every other, on a target no run of it or a later day merged into, reads the current
    # versions alone: not the late day, the replay, nor the re-run.
    assert newest == [True, True, True, False, False, True, False]


def _spy(function: Any, calls: list[bool]) -> Any:
    def called(*args: Any) -> Any:
        calls[-1] = True
        return function(*args)

    return called
