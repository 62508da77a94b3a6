"""Staging a batch's members at once: in threads that carry the task's Spark properties, every member
ending before a failure is raised; and a manifest naming two files of one dataset is refused (the
second would replace the first's rows)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from spark_jobs.batch import BatchArguments, ManifestError, parse_manifest
from spark_jobs.batch_stage import each_at_once
from spark_jobs.warehouse import LocalWarehouse


def test_members_run_at_once_keep_their_order_and_the_tasks_spark_properties(spark: SparkSession) -> None:
    # Every member waits at the barrier until all three are there: one at a time, it would time out.
    barrier = threading.Barrier(3, timeout=30)
    spark.sparkContext.setLocalProperty("filegate.test.run", "run-7")

    def member(n: int) -> tuple[int, str | None]:
        barrier.wait()
        return n * 10, spark.sparkContext.getLocalProperty("filegate.test.run")

    try:
        assert each_at_once(spark, [0, 1, 2], member) == [(0, "run-7"), (10, "run-7"), (20, "run-7")]
    finally:
        spark.sparkContext.setLocalProperty("filegate.test.run", None)  # type: ignore[arg-type]


def test_each_member_sets_its_own_spark_properties_and_leaves_the_others_and_the_task_s(spark: SparkSession) -> None:
    # pyspark's inheritable_thread_target hands every thread the same Properties object. Spark keeps a
    # query's execution ids in them (set at its start, removed at its end), so one member's query
    # ending could remove the id another member's query was about to read: "NumberFormatException:
    # Cannot parse null string", now and then, in stage_members.
    barrier = threading.Barrier(3, timeout=30)
    context = spark.sparkContext
    context.setLocalProperty("filegate.test.run", "run-7")

    def member(n: int) -> tuple[str | None, str | None]:
        context.setLocalProperty("filegate.test.member", str(n))
        barrier.wait()  # every member has set its own before any reads it back
        return context.getLocalProperty("filegate.test.member"), context.getLocalProperty("filegate.test.run")

    try:
        assert each_at_once(spark, [0, 1, 2], member) == [("0", "run-7"), ("1", "run-7"), ("2", "run-7")]
        assert context.getLocalProperty("filegate.test.member") is None
    finally:
        context.setLocalProperty("filegate.test.run", None)  # type: ignore[arg-type]


def test_the_first_member_in_order_is_raised_after_every_member_ended(
    spark: SparkSession, capsys: pytest.CaptureFixture[str]
) -> None:
    ended: list[int] = []

    def member(n: int) -> int:
        if n == 2:
            raise ValueError("member 2 broke first")
        time.sleep(0.5)
        if n == 0:
            raise RuntimeError("member 0 broke last")
        ended.append(n)
        return n

    with pytest.raises(RuntimeError, match="member 0 broke last"):
        each_at_once(spark, [0, 1, 2, 3], member)
    assert sorted(ended) == [1, 3]
    assert "ValueError: member 2 broke first" in capsys.readouterr().err


def test_a_manifest_naming_two_files_of_one_dataset_is_refused(tmp_path: Path) -> None:
    arguments = BatchArguments(
        "m.json", "m.json", "ecommerce", "b-1", None, LocalWarehouse(tmp_path, "c", "s"), contracts_dir=None
    )
    members = [{"dataset": "orders", "uri": f"gs://bucket/orders_20250115.csv#{n}"} for n in (1, 2)]
    document = {"pipeline": "ecommerce", "batch_id": "b-1", "business_date": "2025-01-15", "members": members}
    with pytest.raises(ManifestError, match="more than one file of dataset orders"):
        parse_manifest(document, arguments)


def test_a_manifest_naming_no_member_is_refused(tmp_path: Path) -> None:
    arguments = BatchArguments(
        "m.json", "m.json", "ecommerce", "b-1", None, LocalWarehouse(tmp_path, "c", "s"), contracts_dir=None
    )
    document = {"pipeline": "ecommerce", "batch_id": "b-1", "business_date": "2025-01-15", "members": []}
    with pytest.raises(ManifestError, match="names no member file"):
        parse_manifest(document, arguments)
