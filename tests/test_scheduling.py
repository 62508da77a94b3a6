"""How `make test` hands tests to its pytest-xdist workers (tests/conftest.py): the tests of a worker's Spark
session go to the first two workers only, so the third never starts a JVM."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests.conftest import JVM_WORKERS, _SharedFilesTogether, on_a_jvm_worker

SPARK = [f"tests/spark_jobs/test_merge.py::test_{n}" for n in range(4)]
SHARED = [f"tests/spark_jobs/test_batch_job.py::test_{n}" for n in range(3)]
OWN_SERVER = ["tests/spark_jobs/test_spark_connect.py::test_over_connect"]
OTHERS = [f"tests/test_files.py::test_{n}" for n in range(6)]


class Worker:
    """What the scheduler asks of a pytest-xdist worker: an id, tests to run, a shutdown."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.queued: list[int] = []

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.queued.extend(indexes)

    def shutdown(self) -> None:
        self.shutting_down = True


def run(collection: list[str], workers: int) -> dict[str, list[str]]:
    """Every test of `collection` through the scheduler, each worker finishing its tests one at a time."""
    config = SimpleNamespace(option=SimpleNamespace(tx=[f"{workers}*popen"], loadscopereorder=False))
    config.getvalue = lambda name: getattr(config.option, name)
    scheduler = _SharedFilesTogether(cast(Any, config))
    nodes = [Worker(f"gw{n}") for n in range(workers)]
    for node in nodes:
        scheduler.add_node(cast(Any, node))
    for node in nodes:
        scheduler.add_node_collection(cast(Any, node), collection)
    scheduler.schedule()
    ran: dict[str, list[str]] = defaultdict(list)
    while any(node.queued for node in nodes):
        for node in nodes:
            if node.queued:
                index = node.queued.pop(0)
                ran[node.gateway.id].append(collection[index])
                scheduler.mark_test_complete(cast(Any, node), index)
    assert scheduler.tests_finished
    return ran


def test_only_the_first_two_workers_run_tests_of_a_worker_s_spark_session() -> None:
    collection = [*SHARED, *SPARK, *OWN_SERVER, *OTHERS]

    ran = run(collection, 3)

    assert sorted(test for tests in ran.values() for test in tests) == sorted(collection)
    assert not [test for test in ran["gw2"] if on_a_jvm_worker(test)]
    assert set(OWN_SERVER) <= set(ran["gw2"])
    # A module's shared fixture is built once: its file stays on one worker.
    assert sum(bool(set(SHARED) & set(tests)) for tests in ran.values()) == 1


def test_a_jvm_worker_takes_the_other_tests_once_no_spark_test_is_left() -> None:
    ran = run([*SPARK[:2], *OTHERS], 3)

    assert {test for name in ("gw0", "gw1") for test in ran[name]} - set(SPARK[:2])


@pytest.mark.parametrize("workers", [1, JVM_WORKERS])
def test_with_no_more_workers_than_jvm_workers_every_worker_takes_every_test(workers: int) -> None:
    collection = [*SPARK, *OTHERS]

    ran = run(collection, workers)

    assert sorted(test for tests in ran.values() for test in tests) == sorted(collection)


def test_the_spark_session_s_tests_are_the_spark_jobs_folder_but_the_connect_server_s() -> None:
    assert on_a_jvm_worker("tests/spark_jobs/test_history.py::test_x")
    assert not on_a_jvm_worker("tests/spark_jobs/test_spark_connect.py::test_x")
    assert not on_a_jvm_worker("tests/local_world/test_demo.py::test_x")
