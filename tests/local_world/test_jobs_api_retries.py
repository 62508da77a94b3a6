"""Task retries and timeouts in the local Jobs API: real task processes, the real SDK over HTTP."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.service.jobs import Run, RunLifeCycleState, RunLifecycleStateV2State, RunResultState

from local_world.jobs_api import BundleError, LocalJobsServer, load_bundle, local_variables
from local_world.jobs_api._runs import RunRecord, RunStore
from local_world.jobs_api.recording import BATCH_BUNDLE, workspace_client

# Fails on its first attempt and succeeds on the next: the attempt count is kept in a file beside it.
FLAKY = """
from pathlib import Path
tries = Path(__file__).with_suffix(".tries")
tried = int(tries.read_text()) if tries.exists() else 0
tries.write_text(str(tried + 1))
print(f"attempt {tried}")
if tried == 0:
    raise RuntimeError("executor lost")
"""
ALWAYS_FAILS = "raise ValueError('3 source rows match one target row')"
# Starts a child that would outlive it, notes the child's pid, then hangs.
HANGS = """
import subprocess, sys, time
from pathlib import Path
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
Path(__file__).with_suffix(".child").write_text(str(child.pid))
print("hanging", flush=True)
time.sleep(60)
"""
SUCCEEDS = "print('done')"
ROOT = Path(__file__).resolve().parents[2]


def test_a_task_that_fails_once_is_retried_and_its_dependent_waits_for_the_retry(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path,
        {"flaky": FLAKY, "after": SUCCEEDS},
        """
        flaky_job:
          tasks:
            - task_key: flaky
              max_retries: 2
              min_retry_interval_millis: 60000
              spark_python_task: {python_file: ../tasks/flaky.py, parameters: ["--task-run", "{{task.run_id}}"]}
            - task_key: after
              depends_on: [{task_key: flaky}]
              spark_python_task: {python_file: ../tasks/after.py}
        """,
    )
    started = time.monotonic()
    with _server(bundle, tmp_path, retry_interval_ms=0) as server:
        client = workspace_client(server)
        run = _finished_run(server, 1)
        first, retry, after = run.tasks
        failed_output = client.jobs.get_run_output(first.run_id)
        retry_output = client.jobs.get_run_output(retry.run_id)

    assert run.state.result_state is RunResultState.SUCCESS
    assert [(t.task_key, t.attempt_number) for t in run.tasks] == [("flaky", 0), ("flaky", 1), ("after", 0)]
    assert [t.state.result_state for t in run.tasks] == [
        RunResultState.FAILED,
        RunResultState.SUCCESS,
        RunResultState.SUCCESS,
    ]
    assert retry.run_id != first.run_id
    assert after.start_time >= retry.end_time  # the dependent task started after the last attempt only
    # Each attempt keeps its own error, logs and arguments ({{task.run_id}} is the attempt's).
    assert failed_output.error == "RuntimeError: executor lost"
    assert "attempt 0" in failed_output.logs
    assert retry_output.error is None
    assert "attempt 1" in retry_output.logs
    assert retry_output.metadata.attempt_number == 1
    assert retry_output.metadata.original_attempt_run_id == first.run_id
    assert first.spark_python_task.parameters[:2] == ["--task-run", str(first.run_id)]
    assert retry.spark_python_task.parameters[:2] == ["--task-run", str(retry.run_id)]
    assert (retry.max_retries, retry.min_retry_interval_millis) == (2, 60000)
    assert time.monotonic() - started < 30  # the override, not the bundle's minute


def test_max_retries_minus_one_retries_until_the_task_succeeds(tmp_path: Path) -> None:
    fails_four_times = FLAKY.replace("if tried == 0:", "if tried < 4:")
    bundle = _bundle(
        tmp_path,
        {"flaky": fails_four_times},
        """
        unbounded_job:
          tasks:
            - task_key: flaky
              max_retries: -1
              spark_python_task: {python_file: ../tasks/flaky.py}
        """,
    )
    with _server(bundle, tmp_path, retry_interval_ms=0) as server:
        run = _finished_run(server, 1)

    assert run.state.result_state is RunResultState.SUCCESS
    assert [t.attempt_number for t in run.tasks] == [0, 1, 2, 3, 4]
    assert [t.state.result_state for t in run.tasks] == [RunResultState.FAILED] * 4 + [RunResultState.SUCCESS]


def test_a_task_that_always_fails_ends_failed_after_one_attempt_and_its_retries(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path,
        {"merge": ALWAYS_FAILS, "derive": SUCCEEDS},
        """
        failing_job:
          tasks:
            - task_key: merge
              max_retries: 2
              min_retry_interval_millis: 700
              spark_python_task: {python_file: ../tasks/merge.py}
            - task_key: derive
              depends_on: [{task_key: merge}]
              spark_python_task: {python_file: ../tasks/derive.py}
        """,
    )
    # No override: the bundle's own interval, as a user of the local world gets by default.
    with _server(bundle, tmp_path, retry_interval_ms=None) as server:
        run = _finished_run(server, 1)
        page = _get_text(run.run_page_url)
        logs = server.log_files(run.run_id)

    merges = [t for t in run.tasks if t.task_key == "merge"]
    [derive] = [t for t in run.tasks if t.task_key == "derive"]
    assert run.state.result_state is RunResultState.FAILED
    assert "Task merge failed" in run.state.state_message
    assert [t.attempt_number for t in merges] == [0, 1, 2]
    assert {t.state.result_state for t in merges} == {RunResultState.FAILED}
    assert len({t.run_id for t in merges}) == 3
    # min_retry_interval_millis counts from the start of the failed attempt to the start of the retry.
    assert all(later.start_time - earlier.start_time >= 700 for earlier, later in itertools.pairwise(merges))
    assert derive.state.result_state is RunResultState.UPSTREAM_FAILED
    assert len({logs[t.run_id] for t in merges}) == 3  # one log per attempt, none overwritten
    assert all("3 source rows match one target row" in logs[t.run_id].read_text() for t in merges)
    assert re.search(r'href="#task-merge-retry-2"><b>merge</b>.*?<small>3 attempts</small>', page)
    assert [f'id="task-merge{suffix}"' in page for suffix in ("", "-retry-1", "-retry-2")] == [True] * 3


def _waiting_bundle(root: Path) -> Path:
    """A job whose one task always fails and may be retried once, a minute after it started."""
    return _bundle(
        root,
        {"merge": ALWAYS_FAILS},
        """
        waiting_job:
          tasks:
            - task_key: merge
              max_retries: 1
              min_retry_interval_millis: 60000
              spark_python_task: {python_file: ../tasks/merge.py}
        """,
    )


def _run_until_its_retry_waits(server: LocalJobsServer) -> tuple[WorkspaceClient, int]:
    client = workspace_client(server)
    run_id = client.jobs.run_now(job_id=1).run_id
    _wait_until(lambda: len(client.jobs.get_run(run_id).tasks) == 2)
    return client, run_id


def test_a_retry_waits_visibly_and_a_cancel_ends_the_wait(tmp_path: Path) -> None:
    bundle = _waiting_bundle(tmp_path)
    with _server(bundle, tmp_path, retry_interval_ms=None) as server:
        client, run_id = _run_until_its_retry_waits(server)
        waiting = client.jobs.get_run(run_id)
        client.jobs.cancel_run(run_id)
        server.wait_idle(10)  # not the minute the retry would still wait
        cancelled = client.jobs.get_run(run_id)

    failed, retry = waiting.tasks
    assert waiting.status.state is RunLifecycleStateV2State.RUNNING
    assert failed.state.result_state is RunResultState.FAILED
    assert (retry.attempt_number, retry.status.state) == (1, RunLifecycleStateV2State.WAITING)
    assert retry.state.life_cycle_state is RunLifeCycleState.WAITING_FOR_RETRY
    assert cancelled.state.result_state is RunResultState.CANCELED
    assert cancelled.tasks[1].state.result_state is RunResultState.CANCELED


def test_a_stop_during_a_retry_wait_queues_the_run_and_a_restart_runs_it_again_from_its_first_attempt(
    tmp_path: Path,
) -> None:
    bundle = _waiting_bundle(tmp_path)
    with _server(bundle, tmp_path, retry_interval_ms=None) as server:
        client, run_id = _run_until_its_retry_waits(server)
        waited = client.jobs.get_run(run_id).tasks
        stopping = time.monotonic()
    stopped_in = time.monotonic() - stopping
    stopped = json.loads((tmp_path / "state" / "runs" / f"{run_id}.json").read_text())

    with _server(bundle, tmp_path, retry_interval_ms=0) as server:
        server.wait_idle(30)
        finished = workspace_client(server).jobs.get_run(run_id)

    # The stop did not sit out the minute the retry still had to wait, and ended nothing.
    assert stopped_in < 30
    assert stopped["state"] == "QUEUED"
    assert all(task["termination"] is None for task in stopped["tasks"])
    # Restarted, the run starts over: its task under the id it had, then one retry under an id never used
    # before (the retry that waited keeps its id retired).
    assert finished.state.result_state is RunResultState.FAILED
    assert [(t.attempt_number, t.state.result_state) for t in finished.tasks] == [
        (0, RunResultState.FAILED),
        (1, RunResultState.FAILED),
    ]
    assert finished.tasks[0].run_id == waited[0].run_id
    assert finished.tasks[1].run_id not in {t.run_id for t in waited}


def test_a_task_past_its_timeout_is_killed_with_its_children_and_retried_only_when_asked(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path,
        {"stuck": HANGS, "stuck_again": HANGS},
        """
        no_retry_on_timeout:
          tasks:
            - task_key: stuck
              timeout_seconds: 2
              max_retries: 2
              spark_python_task: {python_file: ../tasks/stuck.py}
        retry_on_timeout:
          tasks:
            - task_key: stuck_again
              timeout_seconds: 1
              max_retries: 1
              retry_on_timeout: true
              spark_python_task: {python_file: ../tasks/stuck_again.py}
        """,
    )
    with _server(bundle, tmp_path, retry_interval_ms=0) as server:
        client = workspace_client(server)
        once = _finished_run(server, 1)
        twice = _finished_run(server, 2)
        output = client.jobs.get_run_output(once.tasks[0].run_id)

    [stuck] = once.tasks
    assert stuck.state.result_state is RunResultState.TIMEDOUT
    assert stuck.state.user_cancelled_or_timedout is True
    assert stuck.status.termination_details.code.value == "CANCELED"
    assert "timeout_seconds (2 s)" in stuck.status.termination_details.message
    assert once.state.result_state is RunResultState.TIMEDOUT
    assert 2000 <= stuck.execution_duration < 15000
    assert "timed out" in output.logs
    assert output.error == "Timed out: timeout_seconds (2 s) ran out."  # what `filegate status` shows
    assert not _alive(int((tmp_path / "tasks" / "stuck.child").read_text()))
    assert [(t.attempt_number, t.state.result_state) for t in twice.tasks] == [
        (0, RunResultState.TIMEDOUT),
        (1, RunResultState.TIMEDOUT),
    ]


def test_the_jobs_timeout_ends_the_run_timedout_and_leaves_later_tasks_unrun(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path,
        {"stuck": HANGS, "later": SUCCEEDS},
        """
        slow_job:
          timeout_seconds: 2
          tasks:
            - task_key: stuck
              max_retries: 3
              retry_on_timeout: true
              spark_python_task: {python_file: ../tasks/stuck.py}
            - task_key: later
              depends_on: [{task_key: stuck}]
              spark_python_task: {python_file: ../tasks/later.py}
        """,
    )
    with _server(bundle, tmp_path, retry_interval_ms=0) as server:
        run = _finished_run(server, 1)

    stuck, later = run.tasks  # a run that timed out retries nothing
    assert run.state.result_state is RunResultState.TIMEDOUT
    assert run.status.state is RunLifecycleStateV2State.TERMINATED
    assert "the job's timeout_seconds (2 s)" in run.status.termination_details.message
    assert stuck.state.result_state is RunResultState.TIMEDOUT
    assert later.state.result_state is RunResultState.CANCELED
    assert not _alive(int((tmp_path / "tasks" / "stuck.child").read_text()))


def test_the_cli_retries_after_the_interval_it_is_given_and_says_so(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path,
        {"flaky": FLAKY},
        """
        flaky_job:
          tasks:
            - task_key: flaky
              max_retries: 1
              min_retry_interval_millis: 600000
              spark_python_task: {python_file: ../tasks/flaky.py}
        """,
    )
    arguments = ["--state-dir", str(tmp_path / "state"), "--warehouse", str(tmp_path / "warehouse")]
    command = [sys.executable, "-m", "local_world", "jobs-api", *arguments, "--bundle", str(bundle)]
    command += ["--spark", "classic", "--retry-interval-ms", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        started = [process.stdout.readline() for _ in range(3)]
        url = started[0].split()[4]
        client = _workspace_client_for(url)
        run_id = client.jobs.run_now(job_id=1).run_id
        # The bundle's ten minutes would outlast this wait: the run ends only because the option is used.
        run = client.jobs.wait_get_run_job_terminated_or_skipped(run_id, timeout=timedelta(seconds=60))
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert started[2] == "  Task retries wait 0 ms (--retry-interval-ms), not the bundle's\n"
    assert run.state.result_state is RunResultState.SUCCESS
    assert [(t.attempt_number, t.state.result_state) for t in run.tasks] == [
        (0, RunResultState.FAILED),
        (1, RunResultState.SUCCESS),
    ]


def test_the_bundles_retry_and_timeout_settings_are_read_with_the_tasks() -> None:
    [batch] = load_bundle(BATCH_BUNDLE, local_variables())

    settings = {t.task_key: (t.max_retries, t.min_retry_interval_millis, t.retry_on_timeout) for t in batch.tasks}
    assert settings == {
        "stage_members": (1, 60000, False),
        "validate": (0, 0, False),
        "merge_targets": (2, 60000, True),
        "derive_tables": (0, 0, False),
    }
    assert {t.timeout_seconds for t in batch.tasks} == {3600}
    declared = yaml.safe_load(BATCH_BUNDLE.read_text(encoding="utf-8"))["resources"]["jobs"]["filegate_batch"]
    assert batch.timeout_seconds == declared["timeout_seconds"] > 0


def test_a_retry_setting_that_is_not_a_count_is_refused(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path,
        {"t": SUCCEEDS},
        """
        job:
          tasks: [{task_key: t, max_retries: often, spark_python_task: {python_file: ../tasks/t.py}}]
        """,
    )

    with pytest.raises(BundleError, match="max_retries of task t must be a whole number of at least -1"):
        load_bundle(bundle)


@pytest.mark.parametrize(
    ("setting", "remove"),
    [("run_if: ALL_DONE", "remove run_if: ALL_DONE"), ("disabled: true", "remove disabled: true")],
)
def test_a_task_setting_the_worker_does_not_model_is_refused(tmp_path: Path, setting: str, remove: str) -> None:
    # On Databricks run_if ALL_DONE runs the task after a failed dependency, disabled skips it: the local
    # worker does neither, so it refuses the bundle rather than run the job otherwise. The refusal names the
    # setting the task has: a disabled task was told to remove "run_if 'ALL_SUCCESS'", which it did not set.
    bundle = _bundle(
        tmp_path,
        {"t": SUCCEEDS},
        f"""
        job:
          tasks: [{{task_key: t, {setting}, spark_python_task: {{python_file: ../tasks/t.py}}}}]
        """,
    )

    with pytest.raises(
        BundleError, match="task t: the local Jobs API runs a task once all it depends on succeeded"
    ) as refused:
        load_bundle(bundle)
    assert f"{remove} from the bundle" in str(refused.value)
    assert "ALL_SUCCESS'" not in str(refused.value)


def _finished_run(server: LocalJobsServer, job_id: int) -> Run:
    """Trigger a run through the SDK and read it back once it ended."""
    client = workspace_client(server)
    run_id = client.jobs.run_now(job_id=job_id).run_id
    server.wait_idle(60)
    return client.jobs.get_run(run_id)


def _workspace_client_for(url: str) -> WorkspaceClient:
    config = Config(host=url, token="local-test-token", retry_timeout_seconds=10, http_timeout_seconds=5)
    return WorkspaceClient(config=config)


def _wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.05)


def _bundle(root: Path, scripts: dict[str, str], jobs: str) -> Path:
    """A bundle file whose jobs run the given scripts, each `../tasks/<name>.py`."""
    (root / "tasks").mkdir()
    for name, code in scripts.items():
        (root / "tasks" / f"{name}.py").write_text(textwrap.dedent(code))
    bundle = root / "bundle" / "job.yml"
    bundle.parent.mkdir()
    bundle.write_text("resources:\n  jobs:\n" + textwrap.indent(textwrap.dedent(jobs), "    "))
    return bundle


def _server(bundle: Path, root: Path, *, retry_interval_ms: int | None) -> LocalJobsServer:
    # Classic Spark: the scripts start no Spark, so no Connect server is started for them.
    jobs = load_bundle(bundle, local_variables())
    return LocalJobsServer(jobs, root / "state", workdir=root, spark="classic", retry_interval_ms=retry_interval_ms)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie no one reaped yet is dead too.
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] != "Z"


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()


def test_a_retry_s_task_run_id_is_never_handed_out_again_after_a_requeue_and_restart(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path,
        {"t": SUCCEEDS},
        """
        job:
          tasks: [{task_key: t, max_retries: 1, spark_python_task: {python_file: ../tasks/t.py}}]
        """,
    )
    [job] = load_bundle(bundle, local_variables())
    store = RunStore(tmp_path / "state")
    run, _ = store.create(job, {}, None)
    retry = store.add_attempt(run, run.tasks[0])
    # A stop while the retry waited: the run goes back to the queue without its attempts.
    store.update(run, RunRecord.requeue)
    store.close()

    restarted = RunStore(tmp_path / "state")
    later, _ = restarted.create(job, {}, None)
    restarted.close()

    assert retry.run_id not in {later.run_id, *(task.run_id for task in later.tasks)}
    assert later.run_id > retry.run_id
