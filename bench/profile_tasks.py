"""Where a local Spark spends its time in the two tasks: wall and JVM CPU of each Spark statement.

    .venv/bin/python bench/profile_tasks.py --batches 3
    .venv/bin/python bench/profile_tasks.py --pipeline ecommerce     # the batch job's four tasks, both sample days
    .venv/bin/python bench/profile_tasks.py --batches 3 --conf spark.sql.codegen.wholeStage=true \
        --conf spark.sql.codegen.factoryMode=FALLBACK       # as before bench/results/test-time.md's change

The session is the test suite's (tests/spark_jobs/conftest.py): `local[2]`, 1 GiB, Delta from the
project's jars, the small-data settings of spark_jobs/local_spark.py; `--conf` overrides any of them.
The tasks run in this process on the order-tracking samples, as tests/spark_jobs/test_load_scenarios.py
runs them, or with `--pipeline ecommerce` the batch job's tasks on the e-commerce sample days, as
tests/spark_jobs/test_batch_job.py runs them. JVM CPU is read from /proc (Linux) around each
statement: unlike wall time it hardly moves when other processes share the cores, so it is the
figure to compare between settings (with one caveat: a JVM that shares the cores with others does less
of its own background work, so compare runs started together). For where inside the JVM the CPU goes,
add Java Flight Recorder:
`--conf "spark.driver.extraJavaOptions=-XX:StartFlightRecording=filename=/tmp/tasks.jfr,settings=profile"`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql.classic.dataframe import DataFrame  # noqa: E402

from spark_jobs import stage_load, target_load  # noqa: E402
from spark_jobs.delta_jars import delta_spark_conf  # noqa: E402
from spark_jobs.local_spark import SMALL_DATA_CONF  # noqa: E402

TEST_CONF = {
    "spark.driver.memory": "1g",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}
# Statements shorter than this are left out of the listing (they still count in each task's total).
SHOWN_SECONDS = 0.3
# How deep in a patched call the process is, shared by every patched method: a classic `first` calls
# `collect`, and one action is one statement, not two.
_DEPTH = [0]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(calls: list[tuple[str, float, float, str]], jvm: int, method: Callable[..., Any]) -> Callable[..., Any]:
    """`method`, recording each outermost call's wall and JVM CPU seconds."""

    @functools.wraps(method)
    def call(self: object, *args: Any, **kwargs: Any) -> Any:
        if _DEPTH[0]:
            return method(self, *args, **kwargs)
        _DEPTH[0] += 1
        wall, cpu = time.monotonic(), process_cpu(jvm)
        try:
            return method(self, *args, **kwargs)
        finally:
            _DEPTH[0] -= 1
            text = args[0] if args and isinstance(args[0], str) else f"in {_job_caller()}"
            label = text[:70].replace("\n", " ")
            calls.append((method.__name__, time.monotonic() - wall, process_cpu(jvm) - cpu, label))

    return call


def time_statements(calls: list[tuple[str, float, float, str]], jvm: int) -> None:
    """Record each outermost Spark statement from now on in `calls`: `SparkSession.sql` and `table`, and every
    action the tasks call. The classic session's DataFrame overrides every action of `pyspark.sql.DataFrame`:
    patching that base class would leave them unseen (uncounted, untimed). An action missing here counts in
    its task's total only: `isEmpty`, once missing, hid 10 queries of a new pipeline's merge_targets."""
    for owner, names in (
        (SparkSession, ("sql", "table")),
        (DataFrame, ("collect", "first", "count", "toArrow", "isEmpty")),
    ):
        for name in names:
            setattr(owner, name, timed(calls, jvm, getattr(owner, name)))


def _job_caller() -> str:
    """The innermost job function on the stack (`module.function`): what an action without SQL text ran for."""
    frame = sys._getframe(2)
    while frame is not None:
        if f"{os.sep}spark_jobs{os.sep}" in frame.f_code.co_filename:
            return f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


def runs(options: argparse.Namespace, warehouse: Path) -> Iterator[tuple[str, Any, list[str]]]:
    """(what, task module, its arguments) in the order a job runs them."""
    lake = ["--catalog", "bench", "--schema", "ingest", "--warehouse", str(warehouse)]
    if options.pipeline:
        from tests.spark_jobs.batch_world import DAYS, TASKS, batch_id, seal

        for run, day in enumerate(DAYS[: options.batches], start=1):
            manifest = seal(warehouse.parent / "in", day)
            arguments = ["--manifest", str(manifest), "--pipeline", options.pipeline, "--batch-id", batch_id(day)]
            for task in TASKS:
                yield day, task, [*arguments, "--run-id", str(run), *lake]
        return
    for sample in sorted((ROOT / "data" / "samples").glob("order_tracking_*.csv"))[: options.batches]:
        arguments = ["--source-path", str(sample), "--dataset", "order_tracking", "--batch-id", sample.stem]
        for task in (stage_load, target_load):
            yield sample.stem, task, [*arguments, *lake]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3, help="How many sample days to load, oldest first.")
    parser.add_argument("--pipeline", choices=("ecommerce",), help="Profile the batch job on this pipeline's samples.")
    parser.add_argument("--conf", action="append", default=[], help="A Spark setting name=value (repeatable).")
    parser.add_argument(
        "--shown-seconds", type=float, default=SHOWN_SECONDS, help="List statements at least this long (0: all)."
    )
    options = parser.parse_args()
    conf = {**TEST_CONF, **delta_spark_conf(Path(tempfile.mkdtemp())), **SMALL_DATA_CONF}
    conf.update(setting.split("=", 1) for setting in options.conf)
    started = time.monotonic()
    spark = SparkSession.builder.appName("profile-tasks").master("local[2]").config(map=conf).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    jvm = spark.sparkContext._gateway.proc.pid  # type: ignore[union-attr]
    print(f"session: {time.monotonic() - started:.1f} s wall, JVM {process_cpu(jvm):.1f} s CPU", flush=True)
    calls: list[tuple[str, float, float, str]] = []
    time_statements(calls, jvm)
    warehouse = Path(tempfile.mkdtemp()) / "warehouse"
    for label, task, arguments in runs(options, warehouse):
        calls.clear()
        wall, cpu = time.monotonic(), process_cpu(jvm)
        if task.main(arguments) != 0:
            sys.exit(f"{task.TASK} failed on {label}")
        wall, cpu = time.monotonic() - wall, process_cpu(jvm) - cpu
        print(f"{task.TASK} {label}: {wall:.1f} s wall, JVM {cpu:.1f} s CPU, {len(calls)} statements")
        for name, seconds, jvm_seconds, text in calls:
            if seconds >= options.shown_seconds:
                print(f"    {seconds:6.2f} s wall {jvm_seconds:6.2f} s JVM  {name} {text}")
    print(f"total: {time.monotonic() - started:.1f} s wall, JVM {process_cpu(jvm):.1f} s CPU", flush=True)


if __name__ == "__main__":
    main()
