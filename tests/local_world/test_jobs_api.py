"""The local Jobs API, driven by the real databricks-sdk over HTTP."""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import re
import socket
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from databricks.sdk.errors import InternalError, InvalidParameterValue, NotFound, ResourceDoesNotExist
from databricks.sdk.service.jobs import RunLifecycleStateV2State, RunResultState

from filegate.tables import PROCESSING_LOG
from local_world.emulators import (
    SPARK_CONNECT_PROGRAM,
    SPARK_CONNECT_SERVER_CLASS,
    gcs_emulator_client,
    record_leftover,
)
from local_world.jobs_api import (
    CLASSIC,
    CONNECT,
    BundleError,
    Fault,
    FolderInUse,
    LocalJobsServer,
    LocalSpark,
    SourceStorage,
    TaskInvocation,
    bundle_job_files,
    load_bundle,
    local_table,
    local_variables,
    main,
)
from local_world.jobs_api.recording import (
    BATCH_BUNDLE,
    FIXTURE_BUNDLE,
    JOB_NAME,
    RecordingRunner,
    local_jobs_api,
    workspace_client,
)

PARAMETERS = {
    "source_path": "/data/archive/order_tracking/2024/05/01/order_tracking_2024_05_01.csv",
    "dataset": "order_tracking",
    "batch_id": "b-0001",
}


def test_run_now_then_runs_get_reports_the_finished_run(jobs_api: LocalJobsServer, tmp_path: Path) -> None:
    client = workspace_client(jobs_api)

    waiter = client.jobs.run_now(job_id=1, job_parameters=PARAMETERS, idempotency_token="token-1")
    jobs_api.wait_idle(10)
    run = client.jobs.get_run(waiter.run_id)

    assert run.run_id == waiter.run_id
    assert run.job_id == 1
    assert waiter.response.number_in_job == run.number_in_job == run.run_id  # as Databricks sets it
    assert run.run_name == JOB_NAME
    assert run.status.state is RunLifecycleStateV2State.TERMINATED
    assert run.status.termination_details.code.value == "SUCCESS"
    assert run.state.result_state is RunResultState.SUCCESS
    assert run.run_page_url == f"{jobs_api.url}/runs/{run.run_id}"
    assert {p.name: p.value for p in run.job_parameters} == PARAMETERS
    assert [t.task_key for t in run.tasks] == ["stage_load", "target_load"]
    assert all(t.state.result_state is RunResultState.SUCCESS for t in run.tasks)
    assert run.end_time >= run.start_time > 0
    assert run.tasks[1].depends_on[0].task_key == "stage_load"
    [request] = jobs_api.requests("run-now")
    assert request.body == {"job_id": 1, "job_parameters": PARAMETERS, "idempotency_token": "token-1"}
    stage, target = jobs_api.runner.calls
    assert list(stage.arguments) == [
        "--source-path",
        PARAMETERS["source_path"],
        "--dataset",
        "order_tracking",
        "--batch-id",
        "b-0001",
        "--catalog",
        "local",
        "--schema",
        "ingest",
    ]
    assert list(target.arguments)[:4] == ["--dataset", "order_tracking", "--batch-id", "b-0001"]
    # The SDK's own waiter understands the answers too.
    assert waiter.result().state.result_state is RunResultState.SUCCESS


def test_the_same_idempotency_token_returns_the_same_run_even_concurrently(jobs_api: LocalJobsServer) -> None:
    client = workspace_client(jobs_api)
    first = client.jobs.run_now(job_id=1, job_parameters=PARAMETERS, idempotency_token="file-a").run_id
    again = client.jobs.run_now(job_id=1, job_parameters=PARAMETERS, idempotency_token="file-a").run_id
    ids: list[int] = []

    def trigger() -> None:
        ids.append(workspace_client(jobs_api).jobs.run_now(job_id=1, idempotency_token="file-b").run_id)

    threads = [threading.Thread(target=trigger) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    jobs_api.wait_idle(10)

    assert again == first
    assert len(ids) == 20
    assert len(set(ids)) == 1
    assert set(ids) != {first}
    assert len(jobs_api.runs()) == 2
    assert len(jobs_api.runner.calls) == 4  # two tasks of each of the two runs


def test_unknown_ids_answer_the_jobs_api_error_shape(jobs_api: LocalJobsServer) -> None:
    client = workspace_client(jobs_api)

    with pytest.raises(InvalidParameterValue, match="Job 99 does not exist"):
        client.jobs.run_now(job_id=99, idempotency_token="t")
    with pytest.raises(ResourceDoesNotExist):
        client.jobs.get(99)
    with pytest.raises(NotFound):
        client.jobs.get_run(424242)
    with pytest.raises(InvalidParameterValue, match="not defined"):
        client.jobs.run_now(job_id=1, job_parameters={"sourcepath": "x"})
    with pytest.raises(InvalidParameterValue, match="at most 64"):
        client.jobs.run_now(job_id=1, idempotency_token="x" * 65)
    answer = _http_error(f"{jobs_api.url}/api/2.2/jobs/runs/get?run_id=5")
    assert answer == {"error_code": "INVALID_PARAMETER_VALUE", "message": "Run 5 does not exist."}
    assert jobs_api.runs() == []


def test_malformed_requests_get_the_api_error_shape_not_a_500_or_an_html_page(jobs_api: LocalJobsServer) -> None:
    port = urllib.parse.urlsplit(jobs_api.url).port
    assert port is not None

    def answer(method: str, length: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.putrequest(method, "/api/2.2/jobs/run-now")
            connection.putheader("Content-Length", length)
            connection.endheaders(b"{}")
            response = connection.getresponse()
            return response.status, json.loads(response.read())["error_code"]
        finally:
            connection.close()

    assert answer("POST", "two") == (400, "MALFORMED_REQUEST")
    assert answer("PUT", "2") == (404, "ENDPOINT_NOT_FOUND")
    with pytest.raises(urllib.error.HTTPError) as listed:
        _post_json(f"{jobs_api.url}/api/2.2/jobs/run-now", {"job_id": 1, "job_parameters": []})
    assert listed.value.code == 400
    assert jobs_api.runs() == []


def test_a_failing_task_fails_the_run_with_its_error_and_skips_the_next_task(tmp_path: Path) -> None:
    runner = RecordingRunner(failures={"stage_load": "AnalysisException: cannot resolve column status_ts"})
    with local_jobs_api(tmp_path, runner=runner) as server:
        client = workspace_client(server)
        run_id = client.jobs.run_now(job_id=1, job_parameters=PARAMETERS).run_id
        server.wait_idle(10)
        run = client.jobs.get_run(run_id)

    assert run.state.result_state is RunResultState.FAILED
    assert "stage_load" in run.state.state_message
    assert "cannot resolve column status_ts" in run.status.termination_details.message
    stage, target = run.tasks
    assert stage.state.result_state is RunResultState.FAILED
    assert stage.status.termination_details.message == "AnalysisException: cannot resolve column status_ts"
    assert target.state.result_state is RunResultState.UPSTREAM_FAILED
    assert target.status.termination_details.code.value == "SKIPPED"
    assert [call.task_key for call in runner.calls] == ["stage_load"]


def test_runs_of_one_job_queue_and_never_overlap(tmp_path: Path) -> None:
    runner = RecordingRunner(seconds=0.15)
    with local_jobs_api(tmp_path, runner=runner) as server:
        client = workspace_client(server)
        run_ids = [client.jobs.run_now(job_id=1, idempotency_token=f"file-{i}").run_id for i in range(3)]
        queued = client.jobs.get_run(run_ids[2])
        server.wait_idle(20)
        listed = list(client.jobs.list_runs(job_id=1, limit=2))
        active = list(client.jobs.list_runs(job_id=1, active_only=True))

    assert queued.status.state is RunLifecycleStateV2State.QUEUED
    assert queued.status.queue_details.code.value == "MAX_CONCURRENT_RUNS_REACHED"
    spans = []
    for run_id in run_ids:
        calls = [c for c in runner.calls if c.run_id == run_id]
        spans.append((min(c.started for c in calls), max(c.ended for c in calls)))
    for (_, previous_end), (next_start, _) in itertools.pairwise(spans):
        assert next_start >= previous_end
    assert [r.run_id for r in listed] == run_ids[::-1]  # newest first, across pages of two
    assert [r.number_in_job for r in listed] == run_ids[::-1]
    assert all(r.queue_duration is not None for r in listed)
    assert active == []


def test_throttling_and_unavailability_are_retried_by_the_sdk_into_one_run(jobs_api: LocalJobsServer) -> None:
    jobs_api.inject(Fault(status=429, retry_after=1))
    _post_json(f"{jobs_api.url}/_local/faults", {"faults": [{"status": 503, "retry_after": 0}]})
    client = workspace_client(jobs_api)

    run_id = client.jobs.run_now(job_id=1, job_parameters=PARAMETERS, idempotency_token="retried").run_id
    jobs_api.wait_idle(10)

    assert [r.status for r in jobs_api.requests("run-now")] == [429, 503, 200]
    assert [r["run_id"] for r in jobs_api.runs()] == [run_id]
    assert jobs_api.pending_faults() == []


def test_an_error_after_the_run_was_created_is_healed_by_retrying_with_the_token(jobs_api: LocalJobsServer) -> None:
    jobs_api.inject(Fault(status=500, after_request=True, message="backend hiccup"))
    client = workspace_client(jobs_api)

    with pytest.raises(InternalError, match="backend hiccup"):
        client.jobs.run_now(job_id=1, job_parameters=PARAMETERS, idempotency_token="crash-after-create")
    created = [r["run_id"] for r in jobs_api.runs()]
    retried = client.jobs.run_now(job_id=1, job_parameters=PARAMETERS, idempotency_token="crash-after-create")
    jobs_api.wait_idle(10)

    assert created == [retried.run_id]
    assert len(jobs_api.runs()) == 1


def test_a_stalled_answer_times_out_and_the_retry_finds_the_run(jobs_api: LocalJobsServer) -> None:
    jobs_api.inject(Fault(status=None, delay=3, after_request=True))
    client = workspace_client(jobs_api, http_timeout_seconds=0.5)

    run_id = client.jobs.run_now(job_id=1, idempotency_token="slow").run_id
    jobs_api.wait_idle(10)

    assert len(jobs_api.requests("run-now")) == 2
    assert [r["run_id"] for r in jobs_api.runs()] == [run_id]


def test_jobs_list_resolves_the_job_by_name_and_jobs_get_returns_its_settings(jobs_api: LocalJobsServer) -> None:
    client = workspace_client(jobs_api)

    [listed] = client.jobs.list(name=JOB_NAME.upper())
    job = client.jobs.get(listed.job_id)

    assert listed.job_id == 1
    assert listed.settings.name == JOB_NAME
    assert list(client.jobs.list(name="other")) == []
    assert [p.name for p in job.settings.parameters] == ["source_path", "dataset", "batch_id"]
    assert [t.task_key for t in job.settings.tasks] == ["stage_load", "target_load"]
    assert job.settings.max_concurrent_runs == 1
    assert job.settings.queue.enabled is True
    assert "--catalog" in job.settings.tasks[0].spark_python_task.parameters
    assert "permissions" not in client.api_client.do("GET", "/api/2.2/jobs/get", query={"job_id": 1})["settings"]


def test_jobs_get_returns_a_complex_bundle_variable_as_the_list_it_is(tmp_path: Path) -> None:
    # Both jobs set `on_failure: ${var.failure_emails}`; databricks.yml declares it complex, default [].
    with local_jobs_api(tmp_path, bundle=bundle_job_files()) as server:
        client = workspace_client(server)
        jobs = [client.jobs.get(listed.job_id) for listed in client.jobs.list()]

    assert len(jobs) == 2
    assert [job.settings.email_notifications.on_failure for job in jobs] == [[], []]


def test_a_complex_variable_inside_a_longer_text_is_refused(tmp_path: Path) -> None:
    (tmp_path / "databricks.yml").write_text("variables:\n  emails:\n    type: complex\n    default: [a@b.c]\n")
    bundle = tmp_path / "resources" / "job.yml"
    bundle.parent.mkdir()
    bundle.write_text(
        "resources:\n  jobs:\n    job:\n      description: 'told: ${var.emails}'\n"
        "      tasks: [{task_key: t, spark_python_task: {python_file: t.py}}]\n"
    )

    with pytest.raises(BundleError, match="variable emails is complex; only a whole value can refer to it"):
        load_bundle(bundle)


def test_the_run_page_shows_state_parameters_and_escaped_task_logs(tmp_path: Path) -> None:
    runner = RecordingRunner(failures={"target_load": "MERGE failed: <duplicate keys>"})
    with local_jobs_api(tmp_path, runner=runner) as server:
        client = workspace_client(server)
        parameters = {**PARAMETERS, "batch_id": "<script>alert(1)</script>"}
        run_id = client.jobs.run_now(job_id=1, job_parameters=parameters).run_id
        server.wait_idle(10)
        page = _get_text(client.jobs.get_run(run_id).run_page_url)
        index = _get_text(f"{server.url}/")

    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("MERGE failed: &lt;duplicate keys&gt;") == 1  # the failed task's error, once
    assert "stage_load --source-path" in page  # the task's log
    assert "FAILED" in page
    # The same meanings as `filegate status`: queue wait under Queued, run time under Duration.
    assert "<th>Queued</th><td>" in page
    assert "<th>Duration</th><td>" in page
    assert "<th>Queued</th><th>Duration</th>" in index
    assert f'href="/runs/{run_id}"' in index


def test_runs_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with local_jobs_api(state) as server:
        client = workspace_client(server)
        old = client.jobs.run_now(job_id=1, job_parameters=PARAMETERS, idempotency_token="kept").run_id
        server.wait_idle(10)

    with local_jobs_api(state) as server:
        client = workspace_client(server)
        again = client.jobs.run_now(job_id=1, idempotency_token="kept").run_id
        fresh = client.jobs.run_now(job_id=1, idempotency_token="new").run_id
        server.wait_idle(10)
        old_run = client.jobs.get_run(old)
        fresh_run = client.jobs.get_run(fresh)

    assert again == old
    assert fresh != old
    assert old_run.state.result_state is RunResultState.SUCCESS
    assert {p.name: p.value for p in old_run.job_parameters} == PARAMETERS
    assert fresh_run.number_in_job == fresh


def test_runs_an_older_server_numbered_per_job_are_served_with_their_run_id(tmp_path: Path) -> None:
    with local_jobs_api(tmp_path) as server:
        run_id = workspace_client(server).jobs.run_now(job_id=1, job_parameters=PARAMETERS).run_id
        server.wait_idle(10)
    [record] = (tmp_path / "runs").glob("*.json")
    record.write_text(json.dumps({**json.loads(record.read_text()), "number_in_job": 1}))

    with local_jobs_api(tmp_path) as server:
        run = workspace_client(server).jobs.get_run(run_id)

    assert run.number_in_job == run_id


def test_a_stop_keeps_every_run_and_a_restart_finishes_them_under_the_same_ids(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tokens = [f"file-{i}" for i in range(3)]
    slow = RecordingRunner(seconds=30)
    with local_jobs_api(state, runner=slow) as server:
        client = workspace_client(server)
        run_ids = [client.jobs.run_now(job_id=1, idempotency_token=token).run_id for token in tokens]
        _wait_until(lambda: [c.task_key for c in slow.calls] == ["stage_load"])
    stopped = {run_id: json.loads((state / "runs" / f"{run_id}.json").read_text()) for run_id in run_ids}

    with local_jobs_api(state) as server:
        server.wait_idle(20)
        client = workspace_client(server)
        again = [client.jobs.run_now(job_id=1, idempotency_token=token).run_id for token in tokens]
        finished = [client.jobs.get_run(run_id) for run_id in run_ids]
        runner = server.runner

    # The stop interrupted the running task, started no other task, and ended no run.
    [interrupted] = slow.calls
    assert interrupted.interrupted
    assert [run["state"] for run in stopped.values()] == ["QUEUED", "QUEUED", "QUEUED"]
    assert stopped[run_ids[0]]["interruptions"] == 1
    assert all(task["termination"] is None for run in stopped.values() for task in run["tasks"])
    # The next start ran all three, in their order, and the tokens still name the same runs.
    assert again == run_ids
    assert [run.state.result_state for run in finished] == [RunResultState.SUCCESS] * 3
    assert [(c.run_id, c.task_key) for c in runner.calls] == [
        (run_id, task) for run_id in run_ids for task in ("stage_load", "target_load")
    ]


def test_runs_cancel_ends_a_queued_run_at_once_and_a_running_one_after_its_task(tmp_path: Path) -> None:
    runner = RecordingRunner(seconds=30)
    with local_jobs_api(tmp_path, runner=runner) as server:
        client = workspace_client(server)
        running, queued = (client.jobs.run_now(job_id=1, idempotency_token=t).run_id for t in ("a", "b"))
        _wait_until(lambda: len(runner.calls) == 1)
        client.jobs.cancel_run(queued)
        cancelled_queued = client.jobs.get_run(queued)
        cancelled_running = client.jobs.cancel_run_and_wait(running, timeout=timedelta(seconds=20))
        server.wait_idle(10)
        with pytest.raises(InvalidParameterValue, match="Run 424242 does not exist"):
            client.jobs.cancel_run(424242)
        client.jobs.cancel_run(running)  # cancelling an ended run changes nothing

    assert cancelled_queued.state.result_state is RunResultState.CANCELED
    assert cancelled_queued.status.termination_details.code.value == "USER_CANCELED"
    assert cancelled_running.state.result_state is RunResultState.CANCELED
    stage, target = cancelled_running.tasks
    assert stage.state.result_state is RunResultState.CANCELED
    assert target.state.result_state is RunResultState.CANCELED
    assert [(c.run_id, c.task_key, c.interrupted) for c in runner.calls] == [(running, "stage_load", True)]


def test_runs_get_output_reports_a_failed_tasks_error_trace_and_logs(tmp_path: Path) -> None:
    bundle = _bundle_of_scripts(
        tmp_path,
        stage="print('staged 3 rows')",
        target="print('merging')\ndef merge():\n    raise ValueError('3 source rows match one target row')\nmerge()",
    )
    jobs = load_bundle(bundle, local_variables())
    with LocalJobsServer(jobs, tmp_path / "state", workdir=tmp_path, spark="classic") as server:
        client = workspace_client(server)
        run = client.jobs.run_now(job_id=1, job_parameters={"source_path": "/in/a.csv"}).result()
        stage, target = run.tasks
        failed = client.jobs.get_run_output(target.run_id)
        succeeded = client.jobs.get_run_output(stage.run_id)
        with pytest.raises(InvalidParameterValue, match="runs with multiple tasks is not supported"):
            client.jobs.get_run_output(run.run_id)

    assert failed.error == "ValueError: 3 source rows match one target row"
    assert failed.error_trace.startswith("Traceback (most recent call last):")
    assert "in merge" in failed.error_trace
    assert "merging" in failed.logs
    assert failed.metadata.run_id == target.run_id
    assert failed.metadata.job_id == 1
    assert succeeded.error is None
    assert "staged 3 rows" in succeeded.logs
    assert succeeded.logs_truncated is False


@pytest.mark.parametrize("limit", [1, 2])
def test_a_job_without_queueing_starts_its_max_concurrent_runs_of_many_and_skips_the_rest(
    tmp_path: Path, limit: int
) -> None:
    bundle = tmp_path / "job.yml"
    text = FIXTURE_BUNDLE.read_text().replace("enabled: true", "enabled: false")
    bundle.write_text(text.replace("max_concurrent_runs: 1", f"max_concurrent_runs: {limit}"))
    results: list[int] = []
    with local_jobs_api(tmp_path / "state", runner=RecordingRunner(seconds=1), bundle=bundle) as server:
        client = workspace_client(server)
        threads = [
            threading.Thread(
                target=lambda i=i: results.append(client.jobs.run_now(job_id=1, idempotency_token=f"t{i}").run_id)
            )
            for i in range(12)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        server.wait_idle(20)
        states = [run["state"]["result_state"] for run in server.runs()]

    assert len(results) == 12
    assert sorted(states) == ["MAXIMUM_CONCURRENT_RUNS_REACHED"] * (12 - limit) + ["SUCCESS"] * limit


def test_a_job_runs_up_to_its_max_concurrent_runs_at_once_and_queues_the_rest(tmp_path: Path) -> None:
    # The deployed ingest job allows 4 at once: runs of one job overlap up to the bundle's number.
    bundle = tmp_path / "job.yml"
    bundle.write_text(FIXTURE_BUNDLE.read_text().replace("max_concurrent_runs: 1", "max_concurrent_runs: 2"))
    runner = RecordingRunner(seconds=0.5)
    with local_jobs_api(tmp_path / "state", runner=runner, bundle=bundle) as server:
        client = workspace_client(server)
        run_ids = [client.jobs.run_now(job_id=1, idempotency_token=f"file-{i}").run_id for i in range(3)]
        queued = client.jobs.get_run(run_ids[2])
        server.wait_idle(20)

    spans = {
        run_id: (min(c.started for c in calls), max(c.ended for c in calls))
        for run_id in run_ids
        for calls in ([c for c in runner.calls if c.run_id == run_id],)
    }
    first, second, third = (spans[run_id] for run_id in run_ids)
    assert max(first[0], second[0]) < min(first[1], second[1])  # the first two ran at once
    assert third[0] >= min(first[1], second[1])  # the third waited for one of them
    assert queued.status.state is RunLifecycleStateV2State.QUEUED


def test_runs_list_reads_limit_offset_and_run_type_as_documented(tmp_path: Path) -> None:
    with local_jobs_api(tmp_path, runner=RecordingRunner()) as server:
        client = workspace_client(server)
        for i in range(22):
            client.jobs.run_now(job_id=1, idempotency_token=f"file-{i}")
        server.wait_idle(30)
        listing = f"{server.url}/api/2.2/jobs/runs/list?job_id=1"
        # A limit of 0 is the service's maximum (25), none its default (20).
        whole = json.loads(_get_text(f"{listing}&limit=0"))
        default = json.loads(_get_text(listing))
        workflow = json.loads(_get_text(f"{listing}&run_type=WORKFLOW_RUN"))
        job_runs = json.loads(_get_text(f"{listing}&run_type=JOB_RUN&limit=0"))
        errors = [_http_error(f"{listing}&offset=-3"), _http_error(f"{listing}&run_type=NOTEBOOK")]

    assert (len(whole["runs"]), whole["has_more"]) == (22, False)
    assert (len(default["runs"]), default["has_more"]) == (20, True)
    assert workflow.get("runs", []) == []
    assert len(job_runs["runs"]) == 22
    assert [error["error_code"] for error in errors] == ["INVALID_PARAMETER_VALUE"] * 2  # type: ignore[index]


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_port_out_of_range_is_refused_as_an_argument(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["--port", port])

    assert refused.value.code == 2
    assert "is not a port number from 0 to 65535" in capsys.readouterr().err


def test_a_run_file_the_server_cannot_read_is_named_and_the_folder_stays_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "1001.json").write_text('{"run_id": 1001, "job_id": 1', encoding="utf-8")
    arguments = ["--bundle", str(FIXTURE_BUNDLE), "--warehouse", str(tmp_path / "w"), "--state-dir", str(tmp_path)]

    assert main(arguments) == 1

    assert f"{tmp_path / 'runs' / '1001.json'} is not a run this server can read" in capsys.readouterr().err
    (tmp_path / "runs" / "1001.json").unlink()
    with local_jobs_api(tmp_path) as server:  # the failed start left no lock behind
        assert server.runs() == []


def test_one_state_folder_serves_one_server_at_a_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["--bundle", str(FIXTURE_BUNDLE), "--warehouse", str(tmp_path / "w"), "--state-dir", str(tmp_path)]
    with local_jobs_api(tmp_path):
        with pytest.raises(FolderInUse, match=r"in use by another local Jobs API \(pid \d+\)"):
            LocalJobsServer([], tmp_path)
        assert main(arguments) == 1
    assert "in use by another local Jobs API" in capsys.readouterr().err
    with local_jobs_api(tmp_path) as server:  # free again once the first one stopped
        assert server.runs() == []


def test_the_sdk_resolves_its_host_metadata_without_a_warning(
    jobs_api: LocalJobsServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="databricks.sdk"):
        client = workspace_client(jobs_api)
        [job] = client.jobs.list(name=JOB_NAME)

    assert job.job_id == 1
    assert client.config.workspace_id == "1"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_fault_injection_is_a_test_hook_the_plain_server_does_not_offer(tmp_path: Path) -> None:
    jobs = load_bundle(FIXTURE_BUNDLE, local_variables())
    with LocalJobsServer(jobs, tmp_path / "state", runner=RecordingRunner()) as server:
        answer = _http_error(f"{server.url}/_local/faults")
        with pytest.raises(RuntimeError, match="fault injection is off"):
            server.inject(Fault())

    assert answer == {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API found for 'GET /_local/faults'"}


def test_connect_falls_back_to_a_spark_per_task_when_the_server_cannot_start(tmp_path: Path) -> None:
    messages: list[str] = []
    spark = LocalSpark(CONNECT, tmp_path / "connect.log", tmp_path, driver_memory="not-a-size", notify=messages.append)
    try:
        first = spark.task_environment(threading.Event())
        second = spark.task_environment(threading.Event())
    finally:
        spark.close()

    assert "SPARK_REMOTE" not in first
    assert "SPARK_REMOTE" not in second
    assert spark.mode == CLASSIC
    assert messages[-1].startswith("Spark Connect did not start (the process exited with code 1")
    assert "every task now starts its own local Spark" in messages[-1]


def test_the_default_runner_runs_each_task_file_as_a_process_with_its_log(tmp_path: Path) -> None:
    bundle = _bundle_of_scripts(
        tmp_path,
        stage="import pathlib, sys\nprint('staging', sys.argv[1:])\n"
        "pathlib.Path('stage.args').write_text(repr(sys.argv[1:]))",
        target="import sys\nprint('loading')\nsys.stderr.write('Traceback...\\nValueError: bad merge\\n')\nsys.exit(3)",
    )
    jobs = load_bundle(bundle, local_variables())
    with LocalJobsServer(jobs, tmp_path / "state", workdir=tmp_path, spark="classic") as server:
        client = workspace_client(server)
        run_id = client.jobs.run_now(job_id=1, job_parameters={"source_path": "/in/a.csv"}).run_id
        server.wait_idle(30)
        run = client.jobs.get_run(run_id)

    stage, target = run.tasks
    assert stage.state.result_state is RunResultState.SUCCESS
    warehouse = str((tmp_path / "state" / "warehouse").resolve())
    expected = ["--source-path", "/in/a.csv", "--run", str(run_id), "--warehouse", warehouse]
    assert (tmp_path / "stage.args").read_text() == repr(expected)
    assert target.state.result_state is RunResultState.FAILED
    assert target.status.termination_details.message == "exit code 3: Traceback...\nValueError: bad merge"
    assert run.state.result_state is RunResultState.FAILED
    log = (tmp_path / "state" / "logs" / str(run_id) / "stage_load.log").read_text()
    assert f"-m tasks.stage --source-path /in/a.csv --run {run_id}" in log  # the command, run from the workdir
    assert "staging ['--source-path', '/in/a.csv'" in log


def test_the_cli_serves_until_terminated(tmp_path: Path) -> None:
    import subprocess

    command = [
        sys.executable,
        "-c",
        "import sys; from local_world.jobs_api import main; sys.exit(main(sys.argv[1:]))",
        "--port",
        "0",
        "--state-dir",
        str(tmp_path / "state"),
        "--warehouse",
        str(tmp_path / "warehouse"),
        "--bundle",
        str(FIXTURE_BUNDLE),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        url = first.split(" on ", 1)[1].split(" ", 1)[0]
        [job] = json.loads(_get_text(f"{url}/api/2.2/jobs/list?name={JOB_NAME}"))["jobs"]
        assert job["job_id"] == 1
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=20)
    assert process.returncode == 0
    assert "GET /api/2.2/jobs/list?name=filegate-ingest 200" in errors


def test_the_cli_stops_the_spark_connect_server_a_killed_server_left_in_its_state_folder(tmp_path: Path) -> None:
    import subprocess

    # A stand-in with the real server's command line (`java ... SparkSubmit --class ...SparkConnectServer`).
    leftover = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", "--class", SPARK_CONNECT_SERVER_CLASS],
        start_new_session=True,
    )
    state = tmp_path / "state"
    record_leftover(state / "spark-connect.log.pid.json", leftover, SPARK_CONNECT_PROGRAM)
    command = [
        sys.executable,
        "-c",
        "import sys; from local_world.jobs_api import main; sys.exit(main(sys.argv[1:]))",
        "--state-dir",
        str(state),
        "--warehouse",
        str(tmp_path / "warehouse"),
        "--bundle",
        str(FIXTURE_BUNDLE),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert leftover.wait(timeout=30) is not None
    finally:
        leftover.kill()
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert f"stopped {SPARK_CONNECT_PROGRAM} (pid {leftover.pid}) left running by an earlier run" in output
    assert list(state.glob("*.pid.json")) == []


def test_the_cli_stops_a_task_a_killed_server_left_running_before_it_runs_the_run_again(tmp_path: Path) -> None:
    import contextlib
    import os
    import signal
    import subprocess

    bundle = _bundle_of_scripts(tmp_path, stage="import time\ntime.sleep(300)\n", target="print('done')\n")
    state = tmp_path / "state"
    command = [
        sys.executable,
        "-c",
        "import sys; from local_world.jobs_api import main; sys.exit(main(sys.argv[1:]))",
        *("--state-dir", str(state), "--warehouse", str(tmp_path / "warehouse"), "--bundle", str(bundle)),
        *("--spark", "classic"),  # script tasks: no Spark Connect server to start
    ]
    killed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert killed.stdout is not None
        url = killed.stdout.readline().split(" on ", 1)[1].split(" ", 1)[0]
        _post_json(f"{url}/api/2.2/jobs/run-now", {"job_id": 1, "idempotency_token": "once"})
        _wait_until(lambda: any(state.glob("logs/*/*.pid.json")))
    finally:
        killed.kill()  # kill -9: the server stops nothing, its task runs on in its own session
        killed.communicate(timeout=20)
    [record] = state.glob("logs/*/*.pid.json")
    task = int(json.loads(record.read_text())["pid"])
    os.kill(task, 0)

    again = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert again.stdout is not None
        # The lines before it serves: its address, its job, what it stopped.
        lines = [again.stdout.readline() for _ in range(3)]
        _wait_until(lambda: not Path(f"/proc/{task}").exists())
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(task, signal.SIGKILL)  # only when the server did not: the test leaves nothing running
    assert any(f"(pid {task}) left running by an earlier run" in line for line in lines), lines


def test_with_classic_spark_runs_take_turns_before_their_timeouts_start(tmp_path: Path) -> None:
    # Each classic task is a JVM of its own, and Delta's commit to a local folder is atomic within one JVM
    # only: two runs of a job that allows 2 at once still never run their tasks at the same time. The
    # second waits queued, so its tasks' 1 s limits are not spent waiting for the first run's 1.2 s.
    spans = tmp_path / "spans.txt"
    task = textwrap.dedent(
        f"""
        import time
        start = time.monotonic()
        time.sleep(0.6)
        with open({str(spans)!r}, "a") as out:
            out.write(f"{{start}} {{time.monotonic()}}\\n")
        """
    )
    bundle = _bundle_of_scripts(tmp_path, stage=task, target=task)
    text = bundle.read_text().replace("name: scripts", "name: scripts\n      max_concurrent_runs: 2")
    bundle.write_text(
        text.replace("          spark_python_task:", "          timeout_seconds: 1\n          spark_python_task:")
    )
    server = LocalJobsServer(load_bundle(bundle), tmp_path / "state", workdir=tmp_path, spark="classic")
    with server:
        client = workspace_client(server)
        for i in range(2):
            client.jobs.run_now(job_id=1, idempotency_token=f"file-{i}")
        server.wait_idle(60)
        results = [run["state"]["result_state"] for run in server.runs()]

    found = sorted(tuple(float(t) for t in line.split()) for line in spans.read_text().splitlines())
    assert results == ["SUCCESS", "SUCCESS"]
    assert len(found) == 4
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(found))


def test_the_cli_refuses_a_missing_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["--bundle", str(tmp_path / "missing.yml"), "--state-dir", str(tmp_path / "s")]

    assert main([*arguments, "--warehouse", str(tmp_path / "w")]) == 2
    assert "cannot read bundle file" in capsys.readouterr().err


def _bundle_of_scripts(root: Path, *, stage: str, target: str) -> Path:
    (root / "tasks").mkdir()
    (root / "tasks" / "stage.py").write_text(stage)
    (root / "tasks" / "target.py").write_text(target)
    bundle = root / "bundle" / "job.yml"
    bundle.parent.mkdir()
    bundle.write_text(
        textwrap.dedent(
            """
            resources:
              jobs:
                scripts:
                  name: scripts
                  parameters:
                    - {name: source_path, default: ""}
                  tasks:
                    - task_key: target_load
                      depends_on: [{task_key: stage_load}]
                      spark_python_task:
                        python_file: ../tasks/target.py
                    - task_key: stage_load
                      spark_python_task:
                        python_file: ../tasks/stage.py
                        parameters: ["--source-path", "{{job.parameters.source_path}}", "--run", "{{job.run_id}}"]
            """
        )
    )
    return bundle


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def _http_error(url: str) -> object:
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError as error:
        return json.loads(error.read())
    raise AssertionError(f"{url} did not fail")


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()


def _post_json(url: str, body: object) -> object:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


@pytest.fixture
def gcs_emulator() -> Iterator[str]:
    """A GCS emulator on a free loopback port, holding a `landing` bucket; yields its URL."""
    from gcp_storage_emulator.server import create_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="landing")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_a_cloud_source_path_is_downloaded_and_passed_as_a_local_file(tmp_path: Path, gcs_emulator: str) -> None:
    bucket = gcs_emulator_client(gcs_emulator).bucket("landing")
    bucket.blob("archive/order_tracking_2024_05_01.csv").upload_from_string(b"tracking_num\nT1\n")
    uri = "gs://landing/archive/order_tracking_2024_05_01.csv"
    runner = RecordingRunner()
    with local_jobs_api(tmp_path / "jobs", runner=runner, storage=SourceStorage(gcs_endpoint=gcs_emulator)) as server:
        client = workspace_client(server)
        loaded = client.jobs.run_now(job_id=1, job_parameters={**PARAMETERS, "source_path": uri}).run_id
        missing = client.jobs.run_now(job_id=1, job_parameters={**PARAMETERS, "source_path": f"{uri}.gone"}).run_id
        server.wait_idle(20)
        failed = client.jobs.get_run(missing)

    local = tmp_path / "jobs" / "inputs" / str(loaded) / "order_tracking_2024_05_01.csv"
    stage, target = runner.calls
    assert local.read_bytes() == b"tracking_num\nT1\n"
    assert stage.arguments[:2] == ("--source-path", str(local))
    assert stage.arguments[-2:] == ("--source-file", uri)
    assert "--source-file" not in target.arguments  # only tasks that read the source get it
    assert failed.state.result_state is RunResultState.FAILED
    assert failed.status.termination_details.code.value == "STORAGE_ACCESS_ERROR"
    assert f"{uri}.gone" in failed.status.termination_details.message


def test_a_sealed_manifest_is_downloaded_with_every_member_it_names(tmp_path: Path, gcs_emulator: str) -> None:
    bucket = gcs_emulator_client(gcs_emulator).bucket("landing")
    members = {"customers": "customers_2025_01_15.csv", "orders": "orders_2025_01_15.csv"}
    for dataset, name in members.items():
        bucket.blob(f"archive/{dataset}/{name}").upload_from_string(f"{dataset} bytes\n".encode())
    seal = {
        "pipeline": "ecommerce",
        "batch_id": "b1",
        "members": [{"dataset": d, "uri": f"gs://landing/archive/{d}/{n}"} for d, n in members.items()],
    }
    bucket.blob("archive/_batches/ecommerce/2025/01/15/_sealed.r1.json").upload_from_string(json.dumps(seal))
    uri = "gs://landing/archive/_batches/ecommerce/2025/01/15/_sealed.r1.json"
    runner = RecordingRunner()
    storage_emulator = SourceStorage(gcs_endpoint=gcs_emulator)
    with local_jobs_api(
        tmp_path / "jobs", runner=runner, bundle=[FIXTURE_BUNDLE, BATCH_BUNDLE], storage=storage_emulator
    ) as server:
        client = workspace_client(server)
        run_id = client.jobs.run_now(job_id=2, job_parameters={"source_path": uri, "pipeline": "ecommerce"}).run_id
        server.wait_idle(20)

    first = runner.calls[0]
    local = Path(first.arguments[1])
    assert local == tmp_path / "jobs" / "inputs" / str(run_id) / "_sealed.r1.json"
    assert first.arguments[-2:] == ("--source-file", uri)
    document = json.loads(local.read_text())
    # Each member downloaded beside the manifest; its URI stays the archived object's, for lineage.
    assert [(m["uri"], Path(m["local_path"]).read_text()) for m in document["members"]] == [
        (f"gs://landing/archive/{d}/{n}", f"{d} bytes\n") for d, n in members.items()
    ]
    assert [call.task_key for call in runner.calls] == ["stage_members", "validate", "merge_targets", "derive_tables"]


@dataclass
class LoggingRunner(RecordingRunner):
    """A runner that, like the batch job's tasks, appends its rows to processing_log (a real Delta table)."""

    warehouse: Path = Path()
    rows: Mapping[str, list[dict[str, object]]] = field(default_factory=dict)

    def __call__(self, invocation: TaskInvocation) -> None:
        import pyarrow as pa
        from deltalake import write_deltalake

        written = [
            {"run_id": invocation.run_id, "task": invocation.task_key, "attempt": 1, **row}
            for row in self.rows.get(invocation.task_key, [])
        ]
        if invocation.task_key == "target_load":
            # The ingest job logs no run id: its row is the run's by its batch_id parameter.
            written = [{**row, "run_id": None, "batch_id": invocation.parameters.get("batch_id")} for row in written]
        if written:
            table = pa.Table.from_pylist(written, schema=PROCESSING_LOG_SCHEMA)
            write_deltalake(str(local_table(self.warehouse, PROCESSING_LOG)), table, mode="append")
        super().__call__(invocation)


def _processing_log_schema() -> object:
    import pyarrow as pa

    counts = [(name, pa.int64()) for name in ("rows_read", "rows_rejected", "rows_inserted", "rows_updated")]
    return pa.schema(
        [
            ("run_id", pa.int64()),
            ("batch_id", pa.string()),
            ("task", pa.string()),
            ("attempt", pa.int32()),
            ("dataset", pa.string()),
            ("status", pa.string()),
            *counts,
        ]
    )


PROCESSING_LOG_SCHEMA = _processing_log_schema()


def test_a_batch_run_page_shows_the_task_graph_members_rows_and_errors(tmp_path: Path, gcs_emulator: str) -> None:
    bucket = gcs_emulator_client(gcs_emulator).bucket("landing")
    members = {"customers": "customers_2025_01_15.csv", "orders": "orders_2025_01_15.csv"}
    for dataset, name in members.items():
        bucket.blob(f"archive/{dataset}/2025/01/15/{name}").upload_from_string(f"{dataset}_id\n{dataset} 1\n".encode())
    seal = {
        "pipeline": "ecommerce",
        "business_date": "2025-01-15",
        "revision": 1,
        "batch_id": "ecommerce-20250115-0123456789ab",
        "members": [
            {
                "dataset": d,
                "uri": f"gs://landing/archive/{d}/2025/01/15/{n}",
                "container": "landing",
                "path": f"archive/{d}/2025/01/15/{n}",
                "size": 20,
                "expected_rows": 1,
            }
            for d, n in members.items()
        ],
    }
    bucket.blob("archive/_batches/ecommerce/2025/01/15/_sealed.r1.json").upload_from_string(json.dumps(seal))
    uri = "gs://landing/archive/_batches/ecommerce/2025/01/15/_sealed.r1.json"
    warehouse = tmp_path / "warehouse"
    rows = {
        "stage_members": [
            {"dataset": "customers", "status": "SUCCEEDED", "rows_read": 60, "rows_rejected": 4},
            {"dataset": "orders", "status": "SUCCEEDED", "rows_read": 72, "rows_rejected": 3},
        ],
        "merge_targets": [{"dataset": "customers", "status": "FAILED", "rows_read": 56}],
    }
    runner = LoggingRunner(failures={"merge_targets": "MERGE failed: <duplicate keys>"}, warehouse=warehouse, rows=rows)
    with local_jobs_api(
        tmp_path / "jobs",
        runner=runner,
        bundle=[FIXTURE_BUNDLE, BATCH_BUNDLE],
        storage=SourceStorage(gcs_endpoint=gcs_emulator),
        warehouse=warehouse,
    ) as server:
        client = workspace_client(server)
        parameters = {"source_path": uri, "pipeline": "ecommerce", "batch_id": seal["batch_id"]}
        run_id = client.jobs.run_now(job_id=2, job_parameters=parameters).run_id
        server.wait_idle(20)
        page = _get_text(f"{server.url}/runs/{run_id}")
        member = _get_text(f"{server.url}/runs/{run_id}/members/orders")
        missing = [_status_of(f"{server.url}/runs/{run_id}/members/{name}") for name in ("products", "..%2F..%2Fruns")]

    # The task graph: every task in run order, each with its state and (for those that ran) a duration.
    graph = re.search(r'<div class="graph">(.*?)</div>', page)
    assert graph is not None
    nodes = re.findall(
        r'<a class="node (\w+)" href="#task-[\w-]+"><b>(\w+)</b><small[^>]*>\w+</small><small>([^<]*)<', graph[1]
    )
    assert [(key, state) for state, key, _ in nodes] == [
        ("stage_members", "SUCCESS"),
        ("validate", "SUCCESS"),
        ("merge_targets", "FAILED"),
        ("derive_tables", "UPSTREAM_FAILED"),
    ]
    assert all(re.fullmatch(r"\d+\.\d s", took) for _, key, took in nodes if key != "derive_tables")
    # The sealed batch: its identity and each member linked to the archived file the run was given.
    assert "<th>Batch</th><td>ecommerce-20250115-0123456789ab</td>" in page
    for dataset, name in members.items():
        assert f'<a href="/runs/{run_id}/members/{dataset}">landing/archive/{dataset}/2025/01/15/{name}</a>' in page
    assert member == "orders_id\norders 1\n"
    assert missing == [404, 404]
    # Each task's rows from processing_log, in its own section; the failed task's error once.
    stage = page.split('id="task-stage_members"')[1].split("<h3")[0]
    assert re.search(
        r"<td>customers</td><td>1</td><td class=\"SUCCEEDED\">SUCCEEDED</td><td class=\"num\">60</td>", stage
    )
    assert re.search(r"<td>orders</td><td>1</td><td class=\"SUCCEEDED\">SUCCEEDED</td><td class=\"num\">72</td>", stage)
    # merge_targets failed on its first attempt and both retries the bundle gives it: a section each.
    assert "<small>3 attempts</small>" in graph[1]
    for anchor in ("task-merge_targets", "task-merge_targets-retry-1", "task-merge_targets-retry-2"):
        attempt = page.split(f'id="{anchor}"')[1].split("<h3")[0]
        assert "Error: MERGE failed: &lt;duplicate keys&gt;" in attempt
    assert page.count("MERGE failed: &lt;duplicate keys&gt;") == 3  # each attempt's error, once
    latest = page.split('id="task-merge_targets-retry-2"')[1].split("<h3")[0]
    assert latest.count('<td class="FAILED">FAILED</td><td class="num">56</td>') == 3  # a row per attempt


def test_an_ingest_run_page_shows_the_rows_its_tasks_logged_under_its_batch_id(tmp_path: Path) -> None:
    rows = {"target_load": [{"dataset": "order_tracking", "status": "SUCCEEDED", "rows_read": 11, "rows_inserted": 9}]}
    runner = LoggingRunner(warehouse=tmp_path / "warehouse", rows=rows)
    with local_jobs_api(tmp_path, runner=runner) as server:
        client = workspace_client(server)
        ours = client.jobs.run_now(job_id=1, job_parameters=PARAMETERS).run_id
        other = client.jobs.run_now(job_id=1, job_parameters={**PARAMETERS, "batch_id": "b-0002"}).run_id
        server.wait_idle(10)
        page = _get_text(f"{server.url}/runs/{ours}")

    target = page.split('id="task-target_load"')[1]
    assert re.findall(r"<tr><td>order_tracking</td>", target) == ["<tr><td>order_tracking</td>"]  # not the other's
    assert '<td class="SUCCEEDED">SUCCEEDED</td><td class="num">11</td><td class="num">9</td>' in target
    assert other != ours


def test_the_run_list_cuts_long_parameters_and_keeps_them_whole_on_hover(tmp_path: Path) -> None:
    long_path = "/data/archive/order_tracking/2024/05/01/" + "a-very-long-folder-name/" * 8 + "order_tracking.csv"
    with local_jobs_api(tmp_path) as server:
        client = workspace_client(server)
        client.jobs.run_now(job_id=1, job_parameters={**PARAMETERS, "source_path": long_path})
        server.wait_idle(10)
        index = _get_text(f"{server.url}/")

    # A fixed layout: the table takes the window's width and the parameters column no more than what is left.
    assert '<table class="runs"><colgroup>' in index
    assert "table.runs{width:100%;table-layout:fixed}" in index
    [cell] = re.findall(r'<td class="params">(.*?)</td>', index)
    lines = re.findall(r'<div title="([^"]*)">([^<]*)</div>', cell)
    assert [title for title, _ in lines] == [
        f"{name}={value}" for name, value in {**PARAMETERS, "source_path": long_path}.items()
    ]
    shown = dict(lines)[f"source_path={long_path}"]
    assert shown.endswith("\u2026")
    assert len(shown) <= 60
    assert dict(lines)["dataset=order_tracking"] == "dataset=order_tracking"  # short values stay whole


def _status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
