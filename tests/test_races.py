"""At-least-once delivery at scale: 120 files, every event three times, many at once, from several threads."""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from filegate.ingest import ARCHIVED, DUPLICATE, REDRIVEN, Outcome, handle_payload
from local_world.inputs import csv_bytes, tracking_row
from tests.faults.world import World, assert_converged

FILES = 120
DELIVERIES = 3
THREADS = 8


def _files() -> dict[str, bytes]:
    """120 distinct valid files over 120 business days, a few rows each."""
    files = {}
    for n in range(FILES):
        day = f"2024_{1 + n // 28:02d}_{1 + n % 28:02d}"
        files[f"order_tracking_{day}.csv"] = csv_bytes([tracking_row(n * 10 + i) for i in range(3)])
    return files


def test_every_event_three_times_gives_one_archive_object_and_one_run_per_file(world: World) -> None:
    files = _files()
    events = {name: world.upload(name, data) for name, data in files.items()}
    # Every delivery of one file carries the same event, as Event Grid's retries do; shuffled so that
    # duplicates arrive out of order and often at the same moment on different threads.
    deliveries = [(name, event) for name, event in events.items() for _ in range(DELIVERIES)]
    random.Random(7).shuffle(deliveries)
    gate = world.gate(retry_timeout_seconds=20, http_timeout_seconds=10)
    # Some files get all three deliveries released at the same instant.
    barriers = {name: threading.Barrier(DELIVERIES) for name in list(files)[:10]}

    def deliver(item: tuple[str, dict[str, Any]]) -> tuple[str, Outcome]:
        name, event = item
        if name in barriers:
            barriers[name].wait(timeout=30)
        [outcome] = handle_payload(gate, event)
        return name, outcome

    # The barrier files go first, each one's three deliveries side by side, so a full pool never holds
    # threads that wait for deliveries no thread can pick up.
    ordered = [(name, events[name]) for name in barriers for _ in range(DELIVERIES)]
    ordered += [item for item in deliveries if item[0] not in barriers]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(deliver, ordered))

    by_file: dict[str, list[Outcome]] = defaultdict(list)
    for name, outcome in results:
        by_file[name].append(outcome)
    for name, outcomes in by_file.items():
        statuses = Counter(outcome.status for outcome in outcomes)
        # The others found the copy; with the run not yet recorded on it they re-drive: the same token, one run.
        assert statuses[ARCHIVED] == 1, f"{name}: {statuses}"
        assert statuses[DUPLICATE] + statuses[REDRIVEN] == DELIVERIES - 1, f"{name}: {statuses}"
        assert len({outcome.run_id for outcome in outcomes}) == 1, f"{name}: deliveries saw different runs"
    assert_converged(world, files)
    assert len(world.runs()) == FILES
