"""Staging a batch's members at once: every member ends before a failure is raised, and a manifest
naming two files of one dataset is refused (the second would replace the first's rows)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from spark_jobs.batch import BatchArguments, ManifestError, parse_manifest
from spark_jobs.batch_stage import MAX_AT_ONCE, each_at_once
from spark_jobs.warehouse import LocalWarehouse


def test_members_run_at_once_and_keep_their_order() -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def piece(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        with lock:
            running -= 1
        return n * 10

    count = MAX_AT_ONCE + 2
    assert each_at_once(list(range(count)), piece) == [n * 10 for n in range(count)]
    assert most == MAX_AT_ONCE


def test_a_failing_member_is_raised_only_after_every_other_member_ended() -> None:
    ended: list[int] = []

    def piece(n: int) -> int:
        if n == 0:
            raise RuntimeError("member 0 broke")
        if n == 2:
            raise ValueError("member 2 broke too")
        time.sleep(0.3)
        ended.append(n)
        return n

    with pytest.raises(RuntimeError, match="member 0 broke"):
        each_at_once([0, 1, 2, 3], piece)
    assert sorted(ended) == [1, 3]


def test_a_manifest_naming_two_files_of_one_dataset_is_refused(tmp_path: Path) -> None:
    arguments = BatchArguments(
        "m.json", "m.json", "ecommerce", "b-1", None, LocalWarehouse(tmp_path, "c", "s"), contracts_dir=None
    )
    members = [{"dataset": "orders", "uri": f"gs://bucket/orders_20250115.csv#{n}"} for n in (1, 2)]
    document = {"pipeline": "ecommerce", "batch_id": "b-1", "business_date": "2025-01-15", "members": members}
    with pytest.raises(ManifestError, match="more than one file of orders"):
        parse_manifest(document, arguments)
