"""`python -m local_world demo` end to end, run as a user runs it, on a reduced data set.

Real Azurite, the watcher, the function's core, the local Jobs API and local Spark (a Spark Connect
server) in a child process; then the runs served again from the demo's state folder and read with
`filegate status`. Every process the demo starts carries a marker in its environment, so a test can
prove that nothing is left behind, also after Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO

import pytest

from filegate.archive import archive_path
from filegate.azure_storage import AzureBlobStore
from filegate.contracts import load_contracts
from filegate.settings import Settings
from filegate.uris import azure_uri
from local_world import ROOT, demo
from local_world.demo._flow import wait_for_runs
from local_world.demo._report import render_serving
from local_world.demo._world import DEMO_SETTINGS, DemoError
from local_world.emulators import AZURITE_ARCHIVE_ACCOUNT, is_listening
from local_world.inputs import COLUMNS, csv_bytes, tracking_row
from local_world.jobs_api import (
    FolderLock,
    LocalJobsServer,
    bundle_job_files,
    load_bundle_files,
    local_table,
    local_variables,
)
from local_world.jobs_api.recording import RecordingRunner, workspace_client
from local_world.samples.ecommerce import file_name
from spark_jobs.pipeline_tables import parse_tables
from tests.spark_jobs.batch_world import ecommerce

# The demo starts Azurite, the local Jobs API and Spark: `make check` leaves it to `make test`.
pytestmark = pytest.mark.services

MARKER = "FILEGATE_E2E_MARKER"
PORT_LINES = {
    "azurite": re.compile(r"Azurite blob service on http://127\.0\.0\.1:(\d+)/"),
    "jobs": re.compile(r"Local Jobs API on http://127\.0\.0\.1:(\d+) "),
    "connect": re.compile(r"Spark Connect server ready on sc://127\.0\.0\.1:(\d+) "),
}


def write_samples(folder: Path) -> None:
    """Two days and a bad file; parcel 1 is delivered on the newer day, which the late older day must not undo."""
    older = [
        tracking_row(1, status="IN_TRANSIT", status_ts="2024-03-05T08:00:00Z"),
        tracking_row(2, status="PICKED_UP", status_ts="2024-03-05T09:00:00Z"),
    ]
    newer = [
        tracking_row(1, status="DELIVERED", status_ts="2024-03-06T10:00:00Z"),
        *(tracking_row(n, status="LABEL_CREATED", status_ts="2024-03-06T11:00:00Z") for n in range(3, 12)),
        # One bad row in eleven: within the contract's bad-row ratio, so the job rejects the row, not the file.
        tracking_row(99, status="LOST_IN_SPACE", status_ts="2024-03-06T12:00:00Z"),
    ]
    (folder / "bad").mkdir(parents=True)
    (folder / "order_tracking_2024_03_05.csv").write_bytes(csv_bytes(older))
    (folder / "order_tracking_2024_03_06.csv").write_bytes(csv_bytes(newer))
    wrong_header = ["tracking_number", *COLUMNS[1:]]
    (folder / "bad" / "order_tracking_2024_03_07.csv").write_bytes(csv_bytes([tracking_row(5)], header=wrong_header))


@dataclass
class Demo:
    """`python -m local_world demo` in a child process, its output collected line by line while it runs."""

    process: subprocess.Popen[str]
    marker: str
    lines: list[str] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def errors(self) -> str:
        return "\n".join(self.error_lines)

    def wait_for_line(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in list(self.lines) if re.search(pattern, line)), None)
            if found is not None:
                return found
            assert self.process.poll() is None, f"the demo ended first:\n{self.output}"
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} after {timeout} s:\n{self.output}")

    def ports(self) -> dict[str, int]:
        return {name: int(m.group(1)) for name, rx in PORT_LINES.items() for m in [rx.search(self.output)] if m}


@contextmanager
def running_demo(*arguments: str) -> Iterator[Demo]:
    """Start `python -m local_world demo` with these arguments; on the way out, what runs gets Ctrl-C, then a kill."""
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_REMOTE", "DATABRICKS_"))}
    env[MARKER] = marker
    process = subprocess.Popen(
        [sys.executable, "-m", "local_world", "demo", *arguments],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    run = Demo(process, marker)
    run.readers = [
        threading.Thread(target=_collect, args=(process.stdout, run.lines), daemon=True),
        threading.Thread(target=_collect, args=(process.stderr, run.error_lines), daemon=True),
    ]
    for reader in run.readers:
        reader.start()
    try:
        yield run
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        for reader in run.readers:
            reader.join(10)


def _collect(stream: IO[str] | None, lines: list[str]) -> None:
    assert stream is not None
    for line in stream:
        lines.append(line.rstrip("\n"))


def finish(run: Demo, timeout: float) -> int:
    """Wait for the demo to end (its output read to the end); its exit code."""
    code = run.process.wait(timeout)
    for reader in run.readers:
        reader.join(10)
    return code


def failed_task_errors(state: Path) -> str:
    """Each failed task's error line from its log, to end a failure's message: where a long output is cut in
    the middle, its end still says what failed (the demo's report gives it above the trace's tail)."""
    found = []
    for log in sorted((state / "jobs" / "logs").glob("*/*.log")):
        text = log.read_text(encoding="utf-8", errors="replace")
        found += [f"{log.relative_to(state)}: {line}" for line in text.splitlines() if " failed for batch " in line]
    return "\n".join(found) or "(no task log holds an error line)"


def leftover_processes(marker: str) -> list[str]:
    """Command lines of live processes whose environment carries the marker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if f"{MARKER}={marker}".encode() in environ.split(b"\0"):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def assert_all_stopped(run: Demo, expected_ports: set[str]) -> None:
    ports = run.ports()
    assert set(ports) == expected_ports, run.output
    assert [name for name, port in ports.items() if is_listening(port)] == []
    assert leftover_processes(run.marker) == []


def progress_lines(output: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in output.splitlines() if line.startswith("[")]


def script_bundle(folder: Path, *, stage: str) -> Path:
    """A bundle whose job has the demo job's parameters and two tiny Python tasks instead of Spark."""
    (folder / "tasks").mkdir(parents=True)
    (folder / "tasks" / "stage.py").write_text(textwrap.dedent(stage))
    (folder / "tasks" / "target.py").write_text("print('target done')\n")
    bundle = folder / "job.yml"
    bundle.write_text(
        textwrap.dedent(
            """
            resources:
              jobs:
                scripted:
                  name: scripted-ingest
                  parameters:
                    - {name: source_path, default: ""}
                    - {name: dataset, default: ""}
                    - {name: batch_id, default: ""}
                  tasks:
                    - task_key: stage_load
                      spark_python_task:
                        python_file: tasks/stage.py
                        parameters: ["--source-path", "{{job.parameters.source_path}}"]
                    - task_key: target_load
                      depends_on: [{task_key: stage_load}]
                      spark_python_task:
                        python_file: tasks/target.py
            """
        )
    )
    return bundle


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    folder = tmp_path / "samples"
    write_samples(folder)
    return folder


@pytest.mark.spark
# The whole demo (several minutes in CI, more when the Spark tests share the 2 cores), then a second one on
# its state folder with script tasks instead of Spark: starting again over everything a whole demo leaves
# needs no Spark of its own.
@pytest.mark.timeout(2400)
def test_the_demo_loads_reports_and_runs_again_without_clean_up(tmp_path: Path, samples: Path) -> None:
    state = tmp_path / "demo"
    shutil.copytree(ECOMMERCE_SAMPLES / "ecommerce", samples / "ecommerce")
    common = ("--samples", str(samples), "--state-dir", str(state))

    with running_demo(*common, "--timeout", "1200") as whole:
        code = finish(whole, 1500)

    assert code == 0, f"{whole.output}\n{whole.errors}\n{failed_task_errors(state)}"
    assert_all_stopped(whole, {"azurite", "jobs", "connect"})
    report = whole.output
    progress = progress_lines(report)
    uploads = [line for line in progress if line.startswith("Uploaded")]
    assert uploads[0].startswith("Uploaded order_tracking_2024_03_06.csv -> archived, run "), report
    assert uploads[1].startswith(
        "Uploaded order_tracking_2024_03_05.csv (late: arrives after a newer day) -> archived"
    ), report
    assert uploads[2].startswith(
        "Uploaded order_tracking_2024_03_07.csv (bad) -> rejected: header is missing columns"
    ), report
    assert any(line.startswith("Starting a Spark Connect server for the tasks") for line in progress)
    # On the Connect server runs go on side by side, as many as each job allows.
    assert "(at once: at most 4 of filegate-ingest and 1 of filegate-batch, their max_concurrent_runs)" in report
    assert "17 files, 4 runs, all as expected." in report  # 3 + 14 files, 2 ingest runs + 2 batch runs

    # The runs table: each run with its state, a duration and the run page it had.
    jobs_url = f"http://127.0.0.1:{whole.ports()['jobs']}"
    table = report.split("Runs of job filegate-ingest (id 1) on ")[1].splitlines()
    assert table[0] == f"{jobs_url}, newest first:"
    rows = [line.split() for line in table[2:4]]
    assert [row[1] for row in rows] == ["SUCCESS", "SUCCESS"]
    assert all(re.search(r"\s(\d+\.\d s|\d+ min \d\d s)\s+order_tracking\s", line) for line in table[2:4]), table
    assert [row[-1] for row in rows] == [f"{jobs_url}/runs/{row[0]}" for row in rows]

    # The target holds the latest status per parcel: the late older day did not undo the delivery.
    target = {
        row["tracking_num"]: row for row in demo.read_table(local_table(state / "warehouse", "order_tracking")) or []
    }
    assert {key: row["status"] for key, row in target.items()} == {
        tracking_row(1)["tracking_num"]: "DELIVERED",
        tracking_row(2)["tracking_num"]: "PICKED_UP",
        **{tracking_row(n)["tracking_num"]: "LABEL_CREATED" for n in range(3, 12)},
    }
    assert "11 rows, latest status per tracking_num: LABEL_CREATED 9, DELIVERED 1, PICKED_UP 1" in report
    [reject] = demo.read_table(local_table(state / "warehouse", "order_tracking_rejects")) or []
    assert "LOST_IN_SPACE" in reject["reason"]
    assert "LOST_IN_SPACE" in report
    log = demo.read_table(local_table(state / "warehouse", "processing_log")) or []
    files = [(row["source_file"].rsplit("/", 1)[-1], row["status"]) for row in log]
    assert sorted(entry for entry in files if entry[0].startswith("order_tracking")) == [
        ("order_tracking_2024_03_05.csv", "SUCCEEDED"),
        ("order_tracking_2024_03_06.csv", "SUCCEEDED"),
    ]
    assert "python -m local_world jobs-api --state-dir " in report  # how to serve these runs again
    # Every run wrote through Delta Lake on Spark: the target's history holds its MERGE commits.
    assert re.search(r"\d+ x MERGE by Apache-Spark/4\.0\.\d+ Delta-Lake/4\.0\.\d+", report), report

    # Served again as the demo says, `filegate status` reads the same runs back.
    listing, detail, errors = status_of_served_runs(state, int(rows[0][0]))
    assert errors == ""  # in particular no warning from the SDK
    assert [line.split()[1] for line in listing[2:]] == ["SUCCESS", "SUCCESS"]
    assert listing[2].split()[-2].endswith("/order_tracking/2024/03/05/order_tracking_2024_03_05.csv")
    assert listing[3].split()[-2].endswith("/order_tracking/2024/03/06/order_tracking_2024_03_06.csv")
    assert detail[0] == f"Run {rows[0][0]} of job filegate-ingest (id 1): SUCCESS"

    assert_ecommerce_scene(report, state)

    # Again on the same state folder, nothing cleaned up: the order-tracking scene, each task a script, kept
    # serving until Ctrl-C.
    bundle = script_bundle(tmp_path / "bundle", stage="print('stage done')\n")
    again = ("--scene", "order-tracking", "--bundle", str(bundle), "--spark", "classic", "--timeout", "300")
    with running_demo(*common, *again, "--keep-serving") as second:
        second.wait_for_line(r"^Press Ctrl-C to stop\.", timeout=400)
        second.process.send_signal(signal.SIGINT)
        code = finish(second, 60)

    assert code == 0, f"{second.output}\n{second.errors}"
    # What stayed up is gone now: how to serve these runs again, as a demo without --keep-serving ends.
    assert "Stopping.\n\nThe run pages and `filegate status` need the local Jobs API" in second.output
    # Its script tasks load nothing: the tables are held to what the runs logged only with the repository's jobs.
    assert "The tables are not checked: the tasks are the given bundle's" in second.output
    assert "3 files, 2 runs, all as expected." in second.output
    assert second.output.count("(no table") == 1  # the target's, once, and no commit history of it
    assert "(one run at a time: with classic Spark every task is a JVM of its own)" in second.output
    assert_all_stopped(second, {"azurite", "jobs"})  # --spark classic: no Connect server
    # It started from an empty world: what the whole demo wrote is gone, and the scripts wrote no table.
    assert not local_table(state / "warehouse", "customers_target").exists()
    assert not local_table(state / "warehouse", "order_tracking").exists()


def status_of_served_runs(state: Path, run_id: int) -> tuple[list[str], list[str], str]:
    """`python -m local_world jobs-api` on the demo's state, then `filegate status` and `filegate status RUN_ID`."""
    command = [sys.executable, "-m", "local_world", "jobs-api", "--port", "0", "--state-dir", str(state / "jobs")]
    command += ["--warehouse", str(state / "warehouse")]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" on ", 1)[1].split(" ", 1)[0]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "FILEGATE_JOB"))}
        env.update(DATABRICKS_HOST=url, DATABRICKS_TOKEN="local")
        results = [
            subprocess.run(
                [sys.executable, "-m", "filegate.cli", "status", *extra],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            for extra in ([], [str(run_id)])
        ]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    return results[0].stdout.splitlines(), results[1].stdout.splitlines(), results[0].stderr + results[1].stderr


def test_a_failing_task_makes_the_demo_exit_1_and_shows_its_error_and_log(tmp_path: Path, samples: Path) -> None:
    stage = """
        def check_columns():
            raise ValueError("status_ts has 3 values that are not timestamps")

        check_columns()
    """
    bundle = script_bundle(tmp_path / "bundle", stage=stage)
    state = tmp_path / "demo"

    arguments = ("--samples", str(samples), "--state-dir", str(state), "--bundle", str(bundle), "--spark", "classic")

    with running_demo(*arguments) as run:
        code = finish(run, 300)

    assert code == 1, run.output
    report = run.output
    assert "Runs of job scripted-ingest (id 1)" in report
    problems = report.split("Something went wrong:\n")[1]
    assert re.match(r"  - run \d+ \(order_tracking_2024_03_0[56]\.csv\) ended FAILED\n", problems)
    assert "      stage_load: ValueError: status_ts has 3 values that are not timestamps\n" in problems
    logs = re.findall(r"      log: (\S+stage_load\.log)", problems)
    assert len(logs) == 2
    assert all("in check_columns" in (ROOT / log).read_text() for log in logs)
    assert_all_stopped(run, {"azurite", "jobs"})  # --spark classic: no Connect server


@pytest.mark.spark
def test_ctrl_c_mid_run_exits_130_and_leaves_nothing_running(tmp_path: Path, samples: Path) -> None:
    bundle = script_bundle(tmp_path / "bundle", stage="import time\ntime.sleep(300)\n")
    state = tmp_path / "demo"
    arguments = ("--samples", str(samples), "--state-dir", str(state), "--bundle", str(bundle))

    with running_demo(*arguments) as run:
        run.wait_for_line(r"Spark Connect server ready on sc://", timeout=240)
        run.wait_for_line(r"running stage_load", timeout=60)
        run.process.send_signal(signal.SIGINT)
        code = finish(run, 120)

    assert code == 130, run.output
    assert "Interrupted: stopped everything the demo started." in run.errors
    assert_all_stopped(run, {"azurite", "jobs", "connect"})


def test_a_second_demo_on_the_same_state_folder_is_refused(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "demo"
    (state / "warehouse").mkdir(parents=True)

    with FolderLock(state, "python -m local_world demo"):
        code = demo.main(["--samples", str(samples), "--state-dir", str(state)])

    assert code == 75  # try again later: the other demo ends
    assert f"{state} is in use by another python -m local_world demo (pid {os.getpid()})" in capsys.readouterr().err
    assert (state / "warehouse").is_dir()  # nothing of the running demo's state was removed


def test_a_demo_whose_runs_are_served_again_is_not_cleared_under_that_server(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `jobs-api --state-dir <demo>/jobs`, as the demo's last lines suggest: a new demo removed that folder under
    # it, and then two Jobs APIs wrote there.
    state = tmp_path / "demo"
    (state / "warehouse").mkdir(parents=True)
    (state / "jobs" / "runs").mkdir(parents=True)

    with FolderLock(state / "jobs", "local Jobs API"):
        code = demo.main(["--samples", str(samples), "--state-dir", str(state), "--timeout", "1"])

    assert code == 2
    assert (
        f"{state / 'jobs'} is in use by another local Jobs API (pid {os.getpid()}); stop that one first"
        in capsys.readouterr().err
    )
    assert (state / "jobs" / "runs").is_dir()
    assert (state / "warehouse").is_dir()
    FolderLock(state, "python -m local_world demo").acquire().release()  # the demo's own lock was let go


@pytest.mark.parametrize("scene", ["order-tracking", "ecommerce"])
def test_samples_the_scene_cannot_play_leave_the_previous_demo_as_it_was(
    tmp_path: Path, scene: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The state folder was cleared first: the previous demo's runs, tables and logs were gone, for a typo.
    state = tmp_path / "demo"
    (state / "warehouse").mkdir(parents=True)

    code = demo.main(["--samples", str(tmp_path / "typo"), "--state-dir", str(state), "--scene", scene])

    assert code == 2
    assert "(--samples)" in capsys.readouterr().err
    assert (state / "warehouse").is_dir()


@pytest.mark.parametrize("timeout", ["0", "-5", "nan", "soon"])
def test_a_timeout_the_runs_cannot_meet_is_refused_before_anything_starts(
    tmp_path: Path, samples: Path, timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # It was taken: Azurite, the Jobs API and the uploads started, the previous demo's state was cleared,
    # and then "runs still active after -5 s".
    state = tmp_path / "demo"
    (state / "warehouse").mkdir(parents=True)

    with pytest.raises(SystemExit) as exit_:
        demo.main(["--samples", str(samples), "--state-dir", str(state), "--timeout", timeout])

    assert exit_.value.code == 2
    assert f"argument --timeout: {timeout!r} is not a number of seconds above 0" in capsys.readouterr().err
    assert (state / "warehouse").is_dir()


def test_runs_that_outlast_the_timeout_are_named_with_the_option_that_gives_them_longer(
    jobs_api: LocalJobsServer,
) -> None:
    assert isinstance(jobs_api.runner, RecordingRunner)
    jobs_api.runner.seconds = 30
    client = workspace_client(jobs_api)
    run_id = client.jobs.run_now(job_id=1, idempotency_token="slow").run_id

    with pytest.raises(DemoError) as error:
        wait_for_runs(client, [run_id], {run_id: "slow.csv"}, lambda line: None, 2)

    assert str(error.value) == (
        f"runs still active after 2 s: [{run_id}]; on a slow or busy machine give them longer "
        "with --timeout (e.g. --timeout 4, beside the options you gave)"
    )


def test_the_upload_plan_sends_one_day_late_and_the_bad_file_last(tmp_path: Path) -> None:
    write_samples(tmp_path)

    plan = demo.plan_uploads(tmp_path)

    assert [(item.path.name, item.expected) for item in plan] == [
        ("order_tracking_2024_03_06.csv", "archived"),
        ("order_tracking_2024_03_05.csv", "archived"),
        ("order_tracking_2024_03_07.csv", "rejected"),
    ]


def test_the_wait_line_says_runs_go_at_once_only_where_they_do() -> None:
    # The e-commerce scene alone said "(at once: at most 1 of filegate-batch, ...)": its runs go one at a time.
    ingest, batch = load_bundle_files(bundle_job_files(), local_variables())
    assert (ingest.max_concurrent_runs, batch.max_concurrent_runs) == (4, 1)
    steps = "stage_members, then validate, then merge_targets, then derive_tables"

    assert demo.runs_of([(ingest, {}), (batch, {1001: "a", 1006: "b"})]) == (
        f"2 runs of filegate-batch ({steps}) (one at a time: its max_concurrent_runs is 1)"
    )
    assert demo.runs_of([(ingest, {1001: "a"}), (batch, {1004: "b"})]).endswith(
        "(at once: at most 4 of filegate-ingest and 1 of filegate-batch, their max_concurrent_runs)"
    )
    assert demo.runs_of([(ingest, {1001: "a"})], takes_turns=True).endswith(
        "(one run at a time: with classic Spark every task is a JVM of its own)"
    )


def test_progress_lines_from_two_threads_reach_a_pipe_whole() -> None:
    # The demo's uploads and the local Jobs API's "Starting a Spark Connect server" come from two threads
    # into the test's pipe. With `print`, one thread's line could land between the other's text and its
    # newline (a whole demo once lost its first "Uploaded" line that way); 20,000 lines each showed it
    # in every run before the fix.
    script = textwrap.dedent(
        """
        import sys, threading
        from local_world.demo._flow import Progress

        progress = Progress(sys.stdout)
        def say(tag):
            for i in range(20_000):
                progress(f"{tag} {i}")
        threads = [threading.Thread(target=say, args=(tag,)) for tag in "AB"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )

    lines = result.stdout.splitlines()
    assert sorted(progress_lines(result.stdout)) == sorted(f"{tag} {i}" for tag in "AB" for i in range(20_000))
    assert all(re.fullmatch(r"\[ *\d+\.\ds\] [AB] \d+", line) for line in lines)


def test_the_target_table_shows_what_the_contract_declares() -> None:
    contract = load_contracts()["order_tracking"]

    assert demo.target_columns(contract) == [
        "tracking_num",
        "order_id",
        "status",
        "status_ts",
        "carrier",
        "destination_city",
    ]
    assert demo.summary_column(contract) == "status"


ECOMMERCE_SAMPLES = ROOT / "data" / "samples"
DAYS = ("2025-01-15", "2025-01-16")
BATCH_TASKS = ["stage_members", "validate", "merge_targets", "derive_tables"]


def test_the_batch_scene_uploads_each_day_in_the_order_that_shows_every_outcome(tmp_path: Path) -> None:
    scene = demo.plan_batches(ECOMMERCE_SAMPLES, tmp_path / "late")

    assert [(item.path.relative_to(item.path.parents[1]).as_posix(), item.expected) for item in scene.plan] == [
        ("ecommerce/trigger_2025_01_15.json", "waiting"),
        ("ecommerce/customers_2025_01_15.csv", "waiting"),
        ("ecommerce/inventory_2025_01_15.csv", "waiting"),
        ("ecommerce/orders_2025_01_15.csv", "waiting"),
        ("ecommerce/products_2025_01_15.csv", "waiting"),
        ("ecommerce/shipping_2025_01_15.csv", "sealed"),
        ("ecommerce/inventory_2025_01_16.csv", "member_archived"),
        ("ecommerce/orders_2025_01_16.csv", "member_archived"),
        ("ecommerce/products_2025_01_16.csv", "member_archived"),
        ("ecommerce/shipping_2025_01_16.csv", "member_archived"),
        ("bad/customers_2025_01_16.csv", "blocked"),
        ("ecommerce/trigger_2025_01_16.json", "blocked"),
        ("ecommerce/customers_2025_01_16.csv", "sealed"),
        ("late/shipping_2025_01_16.csv", "late_member"),
    ]
    # The late correction keeps the size the trigger states, so the batch would choose it: only the seal holds it.
    original = ECOMMERCE_SAMPLES / "ecommerce" / "shipping_2025_01_16.csv"
    late = scene.plan[-1].path
    assert late.stat().st_size == original.stat().st_size
    changed = [
        (old, new)
        for old, new in zip(original.read_text().splitlines(), late.read_text().splitlines(), strict=True)
        if old != new
    ]
    assert len(changed) == 1
    assert changed[0][0].split(",")[:2] == changed[0][1].split(",")[:2]  # the same shipment, corrected
    flaws = json.loads((ECOMMERCE_SAMPLES / "ecommerce" / "flaws.json").read_text())
    assert scene.customer == flaws[DAYS[1]]["planted"]["tier_change"][0]


def assert_ecommerce_scene(report: str, state: Path) -> None:
    """The e-commerce scene of a demo that ended (its output, its state folder): every outcome, table and line."""
    # Every upload got the outcome its place in the story asks for, the runs named as they were started.
    uploads = [
        line
        for line in progress_lines(report)
        if line.startswith("Uploaded") and not line.startswith("Uploaded order_tracking")
    ]
    outcomes = [re.match(r"Uploaded (\S+)(?: \(([^)]*)\))? -> (\w+)", line).groups() for line in uploads]  # type: ignore[union-attr]
    assert [(name, status) for name, _, status in outcomes] == [
        ("trigger_2025_01_15.json", "waiting"),
        ("customers_2025_01_15.csv", "waiting"),
        ("inventory_2025_01_15.csv", "waiting"),
        ("orders_2025_01_15.csv", "waiting"),
        ("products_2025_01_15.csv", "waiting"),
        ("shipping_2025_01_15.csv", "sealed"),
        ("inventory_2025_01_16.csv", "member_archived"),
        ("orders_2025_01_16.csv", "member_archived"),
        ("products_2025_01_16.csv", "member_archived"),
        ("shipping_2025_01_16.csv", "member_archived"),
        ("customers_2025_01_16.csv", "blocked"),
        ("trigger_2025_01_16.json", "blocked"),
        ("customers_2025_01_16.csv", "sealed"),
        ("shipping_2025_01_16.csv", "late_member"),
    ]
    sealed = [int(m) for m in re.findall(r"-> sealed \(run (\d+)\)", report)]
    assert len(sealed) == 2
    assert re.search(rf"-> late_member \(run {sealed[1]}\): after the seal \(revision 1\).*held", report)
    assert "blocked: header is missing columns: email" in report

    # `filegate batches`: both days sealed once and their runs succeeded.
    listing = report.split("filegate batches:\n")[1].splitlines()
    assert [line.split()[:5] for line in listing[1:] if line.startswith("ecommerce")] == [
        ["ecommerce", DAYS[0], "succeeded", "1", str(sealed[0])],
        ["ecommerce", DAYS[1], "succeeded", "1", str(sealed[1])],
    ]
    # The held correction waits on a person's decision, and the listing says which file and how to load it.
    [held] = [line for line in listing if "held after the seal" in line]
    assert re.search(rf"not loaded: archive/shipping/.*shipping_{DAYS[1].replace('-', '_')}__v\w+\.csv; ", held)
    assert f"`filegate batches --reseal {DAYS[1]} --pipeline ecommerce` loads it" in held

    warehouse = state / "warehouse"
    results = demo.read_table(local_table(warehouse, "validation_results")) or []
    batches = {row["business_date"].isoformat(): row for row in results if row["level"] == "batch"}
    assert sorted(batches) == list(DAYS)
    assert {(row["severity"], row["outcome"]) for row in batches.values()} == {("HIGH", "WARNED")}
    flaws = json.loads((ECOMMERCE_SAMPLES / "ecommerce" / "flaws.json").read_text())
    orphans = {
        row["business_date"].isoformat(): row["rows_failed"] for row in results if row["rule"] == "order_customer"
    }
    assert orphans == {day: len(flaws[day]["planted"]["orphan_order"]) for day in DAYS}
    # The report prints the same rows: each batch's score and the orphan-order rule with its failures.
    for day, row in batches.items():
        assert re.search(
            rf"{day}\s+batch\s+\(batch\)\s+HIGH\s+WARNED\s+\d+\s+\d+\s+{row['score']:.1f}\s*$", report, re.M
        )
    assert re.search(rf"{DAYS[0]}\s+rule\s+orders\s+order_customer\s+HIGH\s+WARNED\s+69\s+2\s", report)

    # The processing log: every task of both runs succeeded; the report shows it per task.
    log = demo.read_table(local_table(warehouse, "processing_log")) or []
    for run_id in sealed:
        tasks = {row["task"] for row in log if row["run_id"] == run_id and row["status"] in ("SUCCEEDED", "SKIPPED")}
        assert tasks == set(BATCH_TASKS)
    staged = {
        (row["business_date"].isoformat(), row["dataset"]): row["rows_read"]
        for row in log
        if row["task"] == "stage_members"
    }
    assert staged == {(day, d): n for day in DAYS for d, n in flaws[day]["rows"].items()}
    # Each task fetched the member its sealed manifest names: the archived copy, not the landed one.
    sources = {row["source_file"] for row in log if row["task"] == "stage_members"}
    archive = DEMO_SETTINGS.archive
    assert sources == {
        azure_uri(
            AZURITE_ARCHIVE_ACCOUNT,
            archive.container,
            archive.path(archive_path(d, date.fromisoformat(day), file_name(d, date.fromisoformat(day)))),
        )
        for day in DAYS
        for d in flaws[day]["rows"]
    }
    # The last task of each run built every derived table the pipeline declares.
    derived = {t.name for t in parse_tables(*ecommerce())}
    for run_id in sealed:
        built = {
            r["table_name"]
            for r in log
            if r["run_id"] == run_id and r["task"] == "derive_tables" and r["status"] == "SUCCEEDED"
        }
        assert built == derived
    assert re.search(rf"{sealed[1]}\s+merge_targets\s+customers\s+SUCCEEDED\s+11\s", report)

    # The late correction was held: the shipping target keeps the shipment as the sealed file had it.
    late = (state / "late" / "shipping_2025_01_16.csv").read_text().splitlines()[1].split(",")
    shipping = demo.read_table(local_table(warehouse, "shipping_target")) or []
    [shipment] = [row for row in shipping if row["tracking_number"] == late[1] and row["is_current"]]
    assert shipment["estimated_delivery"].isoformat() != late[9]

    # Analytics: the daily series the last task built, a slice per day, each with that batch's score.
    summary = demo.read_table(local_table(warehouse, "analytics_summary")) or []
    assert {r["as_of_date"].isoformat(): r["data_quality_score"] for r in summary} == {
        day: row["score"] for day, row in batches.items()
    }
    segments = demo.read_table(local_table(warehouse, "segment_analysis")) or []
    assert {r["as_of_date"].isoformat() for r in segments} == set(DAYS)
    assert "\nanalytics_summary:\n" in report
    assert "\nsegment_analysis:\n" in report

    # One customer's SCD2 history: the tier change closed the old version where the new one starts.
    customer = flaws[DAYS[1]]["planted"]["tier_change"][0]
    history = report.split(f"History of customer {customer} (SCD type 2):\n")[1].splitlines()
    old, new = (line.split() for line in history[1:3])
    assert old[0] == new[0] == customer
    assert old[1] != new[1]  # the tier
    assert (old[-2], new[-2]) == ("False", "True")


def test_keep_serving_prints_settings_with_which_the_file_commands_read_the_demo_s_azurite() -> None:
    # The file commands read only a connection string, which holds `;`: the line must survive a shell as pasted.
    storage = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a+b/c==;BlobEndpoint=http://127.0.0.1:1/x;"
    archive = storage.replace("devstoreaccount1", AZURITE_ARCHIVE_ACCOUNT)
    [export] = [
        line for line in render_serving("http://127.0.0.1:2", storage, archive).splitlines() if "export" in line
    ]

    result = subprocess.run(
        ["bash", "-c", f'{export}; printf "%s\\n" "$FILEGATE_AZURE_STORAGE" "$FILEGATE_AZURE_ARCHIVE_STORAGE"'],
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout.splitlines() == [storage, archive]
    assert "DATABRICKS_HOST=http://127.0.0.1:2" in export


def test_keep_serving_names_the_watcher_with_which_a_file_uploaded_meanwhile_is_loaded(
    two_accounts: tuple[AzureBlobStore, Settings], jobs_api: LocalJobsServer, tmp_path: Path
) -> None:
    # The demo's own watcher stops with its uploads: a file dropped into landing while it served waited for ever.
    from azure.storage.blob import BlobClient

    _, settings = two_accounts
    storage, archive = str(settings.azure_storage), str(settings.azure_archive_storage)
    lines = render_serving(jobs_api.url, storage, archive).splitlines()
    [export] = [line for line in lines if "export" in line]
    [watch] = [line.strip().split("  ")[0] for line in lines if "local_world watch" in line]
    day = "order_tracking_2024_03_05.csv"
    landing = settings.landing
    BlobClient.from_connection_string(storage, landing.container, landing.path(day)).upload_blob(csv_bytes())
    # This test's own containers; the demo's are the settings' defaults.
    names = f"FILEGATE_LANDING={landing} FILEGATE_ARCHIVE={settings.archive} FILEGATE_REJECTED={settings.rejected}"

    result = subprocess.run(
        ["bash", "-c", f"{export}; export {names}; {watch} --once --state-dir {tmp_path / 'watch'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    [run] = jobs_api.runs()
    parameters = {p["name"]: p["value"] for p in run["job_parameters"]}
    assert parameters["source_path"].endswith(f"/order_tracking/2024/03/05/{day}")
