"""The two tasks as separate processes against a real local Spark Connect server with Delta, as serverless runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.errors import RetriesExceeded
from pyspark.sql.connect.client import SparkConnectClient

from local_world.emulators import SparkConnect, free_port, run_spark_connect
from local_world.jobs_api._spark import end_session
from local_world.jobs_api._tasks import ERROR_TAIL_CHARS, python_error
from spark_jobs.processing_log import error_text
from tests.spark_jobs.conftest import Lake
from tests.spark_jobs.test_history import TWO_BATCHES_COUNTS
from tests.spark_jobs.test_load_scenarios import ORDER_TRACKING, latest_status, log_rows, target_status

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def connect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkConnect]:
    with run_spark_connect(tmp_path_factory.mktemp("connect") / "server.log", driver_memory="1g") as server:
        yield server


def run_task(server: SparkConnect, task: str, source: Path, batch_id: str, lake: Lake) -> str:
    """One task as the job runs it: its own process, its module's entry point, SPARK_REMOTE set."""
    arguments = ["--source-path", str(source), "--dataset", "order_tracking", "--batch-id", batch_id]
    return run_python(server, "-m", f"spark_jobs.{task}", *arguments, *lake.arguments())


def run_python(server: SparkConnect, *arguments: str) -> str:
    """A Python process with SPARK_REMOTE set (its sessions are the server's) that succeeds; what it printed."""
    result = python_process(server, *arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def python_process(server: SparkConnect, *arguments: str) -> subprocess.CompletedProcess[str]:
    """A Python process with SPARK_REMOTE set, run to its end."""
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=REPO,
        env={**os.environ, "SPARK_REMOTE": server.url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_tasks_over_spark_connect_ignore_a_late_day_and_a_rerun_changes_nothing(
    connect: SparkConnect, tmp_path: Path, samples: list[Path]
) -> None:
    newer, older = samples[1], samples[0]
    lake = Lake(tmp_path / "warehouse")

    for source in (newer, older):
        for task in ("stage_load", "target_load"):
            run_task(connect, task, source, f"b-{source.stem}", lake)

    assert target_status(lake) == latest_status(ORDER_TRACKING, [older, newer])
    late = [row for row in log_rows(lake) if row["task"] == "target_load"][-1]
    assert late["status"] == "SUCCEEDED"
    assert late["rows_unchanged"] > 0
    history = DeltaTable(str(lake.location.path("order_tracking"))).history()
    assert {commit["operation"] for commit in history} >= {"CREATE TABLE", "MERGE"}
    assert all("Delta-Lake/4.0" in commit["engineInfo"] for commit in history)
    before = target_status(lake)

    # The newer day's run again, under its batch id, after the late one: the rows it inserted are unchanged.
    # (One test, not two: each task process costs the suite's 2 cores seconds, and the loads above are the
    # setup a rerun needs.)
    output = run_task(connect, "stage_load", newer, f"b-{newer.stem}", lake)
    output += run_task(connect, "target_load", newer, f"b-{newer.stem}", lake)

    assert target_status(lake) == before
    loads = [row for row in log_rows(lake) if row["task"] == "target_load"]
    first, rerun = [row for row in loads if row["batch_id"] == f"b-{newer.stem}"]
    assert first["rows_inserted"] > 0
    assert (rerun["rows_inserted"], rerun["rows_updated"]) == (0, 0), output


def start_task(server: SparkConnect, task: str, source: Path, batch_id: str, lake: Lake) -> subprocess.Popen[str]:
    arguments = ["--source-path", str(source), "--dataset", "order_tracking", "--batch-id", batch_id]
    return subprocess.Popen(
        [sys.executable, "-m", f"spark_jobs.{task}", *arguments, *lake.arguments()],
        cwd=REPO,
        env={**os.environ, "SPARK_REMOTE": server.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_runs_merging_into_one_table_at_once_lose_and_duplicate_nothing(
    connect: SparkConnect, tmp_path: Path, samples: list[Path]
) -> None:
    lake = Lake(tmp_path / "warehouse")
    files = samples[:3]
    for path in files:
        run_task(connect, "stage_load", path, path.stem, lake)

    # Three target_load processes at once into the same target, stage table and processing_log: Delta
    # refuses all but one commit of each race, and each loser retries against the winner's snapshot.
    processes = [start_task(connect, "target_load", path, path.stem, lake) for path in files]
    outputs = [process.communicate(timeout=600) for process in processes]

    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:] + out
    assert target_status(lake) == latest_status(ORDER_TRACKING, files)
    logs = [row for row in log_rows(lake) if row["task"] == "target_load"]
    assert sorted(row["batch_id"] for row in logs) == sorted(path.stem for path in files)
    assert all(row["status"] == "SUCCEEDED" for row in logs)
    # Whatever order the commits landed in, each key was inserted once.
    assert sum(row["rows_inserted"] for row in logs) == len(target_status(lake))
    assert lake.table("order_tracking_stage").num_rows == 0
    retried = sum("a concurrent commit won" in out for out, _ in outputs)
    print(f"{retried} of {len(files)} runs retried a commit")


HISTORY_OVER_CONNECT = r"""
import json, sys
from dataclasses import asdict, replace
from pathlib import Path
from pyspark.sql import SparkSession
from spark_jobs.history import merge_history
from spark_jobs.warehouse import LocalWarehouse, Warehouse
from tests.spark_jobs.test_history import MEMBERS, TWO_BATCHES, observed, with_descriptions

spark = SparkSession.builder.getOrCreate()
warehouse = Warehouse(spark, LocalWarehouse(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
members = replace(with_descriptions(MEMBERS, tier="The member's tier \\ level"), description="Members' history")
counts = {
    batch: asdict(merge_history(warehouse, members, observed(spark, members, [("x", *r) for r in rows], batch), batch))
    for batch, rows in TWO_BATCHES.items()
}
target = warehouse.name(members.target)
operations = [row["operation"] for row in spark.sql(f"DESCRIBE HISTORY {target}").collect()]
tier = next(field for field in spark.table(target).schema.fields if field.name == "tier")
comment = warehouse.detail(members.target).comment
print(json.dumps({"operations": operations, "comment": comment, "tier": tier.metadata}))
print(json.dumps(counts))
"""


def test_the_history_merge_and_its_counts_over_spark_connect(connect: SparkConnect, tmp_path: Path) -> None:
    # The batch job's SCD2 merge as serverless runs it: the change data feed read over Spark Connect.
    lake = Lake(tmp_path / "warehouse")
    printed = run_python(connect, "-c", HISTORY_OVER_CONNECT, str(lake.folder), lake.catalog, lake.schema)
    *_, described, counted = printed.strip().splitlines()
    assert json.loads(counted) == {batch: asdict(expected) for batch, expected in TWO_BATCHES_COUNTS.items()}
    # The comments reach the table over Spark Connect, and its schema brings them back: the second run found
    # them as the contract has them and changed no column.
    assert json.loads(described) == {
        "operations": ["MERGE", "MERGE", "CREATE TABLE"],
        "comment": "Members' history",
        "tier": {"comment": "The member's tier \\ level"},
    }


# A write that takes about 10 s on the server: 40 rows, half a second each, on two cores.
SLOW_WRITE = """
import sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
print("connected", flush=True)
spark.sql(
    f"CREATE TABLE delta.`{sys.argv[1]}` USING DELTA AS "
    "SELECT id, reflect('java.lang.Thread', 'sleep', 500L) AS slept FROM range(0, 40, 1, 2)"
)
"""


def test_ending_a_killed_task_s_session_interrupts_the_write_it_left_running(
    connect: SparkConnect, tmp_path: Path
) -> None:
    # What the local Jobs API does when a task's process ends (a timeout kills it): the server would
    # otherwise finish the write for a client that is gone, beside the task's retry.
    table = tmp_path / "slow"
    remote = f"{connect.url}/;session_id={uuid.uuid4()}"
    task = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE, str(table)],
        cwd=REPO,
        env={**os.environ, "SPARK_REMOTE": remote},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert task.stdout is not None
    assert task.stdout.readline().strip() == "connected"
    time.sleep(3)  # the write is under way on the server
    task.kill()
    task.wait(30)

    end_session({"SPARK_REMOTE": remote})

    # Well past the write's 10 s: it never committed.
    commit = table / "_delta_log" / f"{0:020}.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert not commit.exists(), f"committed {time.monotonic() - deadline + 20:.1f} s after the session ended"
        time.sleep(0.5)


# A task whose statement fails on the server: the body the entry points run, with a query Spark refuses.
FAILING_TASK = """
import sys
from spark_jobs.task import run_task

def body(spark, *_):
    spark.sql("SELECT no_such_column FROM range(1)").collect()

sys.exit(run_task("stage_load", sys.argv[1:], body))
"""


def test_a_statement_failing_over_spark_connect_is_logged_by_its_cause_not_the_server_s_java_stack(
    connect: SparkConnect, tmp_path: Path, samples: list[Path]
) -> None:
    lake = Lake(tmp_path / "warehouse")
    arguments = ["--source-path", str(samples[0]), "--dataset", "order_tracking", "--batch-id", "b-1"]

    result = python_process(connect, "-c", FAILING_TASK, *arguments, *lake.arguments())

    assert result.returncode != 0
    (row,) = log_rows(lake)
    assert row["error"].startswith("AnalysisException: [UNRESOLVED_COLUMN"), row["error"][:300]
    # What the local Jobs API reports of the task (runs/get-output's error, the run's message: `filegate status`).
    error, _ = python_error(result.stderr)
    message = result.stderr.strip()[-ERROR_TAIL_CHARS:]
    for text in (str(row["error"]), error, message):
        assert "no_such_column" in text
        assert "JVM stacktrace" not in text, text[-500:]
        assert "\tat org.apache.spark" not in text, text[-500:]


def test_a_task_that_cannot_reach_the_connect_server_logs_why_not_only_that_retries_ran_out() -> None:
    # The client retries an unreachable server (for about ten minutes by default), then raises RetriesExceeded,
    # whose message says only that; the refused connection is its cause.
    client = SparkConnectClient(f"sc://127.0.0.1:{free_port()}", retry_policy={"max_retries": 1})
    try:
        with pytest.raises(RetriesExceeded) as raised:
            client.get_configs("spark.sql.session.timeZone")
    finally:
        client.close()

    text = error_text(raised.value)

    assert text.startswith("RetriesExceeded: [RETRIES_EXCEEDED]"), text
    assert "UNAVAILABLE" in text, text
    assert "Connection refused" in text, text
