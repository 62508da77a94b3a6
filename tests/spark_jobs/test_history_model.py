"""SCD2 history against an independent model: random batches in a random order, a replay, a re-run with
other rows; after every merge the target must hold exactly the versions the model gives its observations."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from pyspark.sql import functions as F

from spark_jobs.history import merge_history
from spark_jobs.merge import content_text
from tests.spark_jobs.conftest import Lake
from tests.spark_jobs.test_history import MEMBERS, observed

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
