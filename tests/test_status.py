"""`filegate status` against the local Jobs API, through the real databricks-sdk."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from filegate import status
from local_world.demo._report import run_problems
from local_world.emulators import free_port
from local_world.jobs_api import Fault, LocalJobsServer, TaskFailed, TaskInvocation
from local_world.jobs_api.recording import (
    BATCH_BUNDLE,
    FIXTURE_BUNDLE,
    RecordingRunner,
    local_jobs_api,
    workspace_client,
)
from tests.test_jobs import not_databricks

SOURCE = "abfss://archive@devstoreaccount1.dfs.core.windows.net/order_tracking/2024/03/05/order_tracking_2024_03_05.csv"
BROKEN = "abfss://archive@devstoreaccount1.dfs.core.windows.net/order_tracking/2024/03/06/order_tracking_2024_03_06.csv"
MERGE_TRACE = """Traceback (most recent call last):
  File "spark_jobs/target_load.py", line 40, in main
    merge_batch(spark, warehouse, contract, batch)
  File "spark_jobs/merge.py", line 88, in merge_batch
    table.merge(source).execute()
DeltaError: MERGE failed: 3 source rows match one target row"""


def fail_broken_batches(invocation: TaskInvocation) -> None:
    """A task runner without Spark: target_load fails for batches whose id says so."""
    invocation.log_file.parent.mkdir(parents=True, exist_ok=True)
    invocation.log_file.write_text(f"{invocation.task_key}\n", encoding="utf-8")
    if invocation.task_key == "target_load" and invocation.parameters["batch_id"].startswith("broken"):
        raise TaskFailed(
            "exit code 1: (the end of the task's stderr)",
            error="DeltaError: MERGE failed: 3 source rows match one target row",
            trace=MERGE_TRACE,
        )


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalJobsServer]:
    """A local Jobs API with one good and one failed run; the environment points `filegate status` at it."""
    with local_jobs_api(tmp_path / "jobs", runner=fail_broken_batches) as api:
        client = workspace_client(api)
        job_id = next(iter(api.jobs))
        for source, batch in ((SOURCE, "order_tracking-20240305-aaa"), (BROKEN, "broken-20240306-bbb")):
            parameters = {"source_path": source, "dataset": "order_tracking", "batch_id": batch}
            client.jobs.run_now(job_id=job_id, job_parameters=parameters, idempotency_token=batch)
        api.wait_idle(timeout=30)
        point_status_at(api, monkeypatch)
        yield api


def point_status_at(api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment `filegate status` reads, naming the local Jobs API's ingest job and nothing else."""
    for name in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_CONFIG_PROFILE", "FILEGATE_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", api.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", "local-test-token")
    monkeypatch.setenv("FILEGATE_JOB_NAME", "filegate-ingest")


@pytest.mark.parametrize("legacy_state", [True, False])
def test_lists_recent_runs_newest_first_with_state_dataset_source_and_page(
    server: LocalJobsServer, legacy_state: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    server.legacy_state = legacy_state
    good, broken = sorted(run["run_id"] for run in server.runs())

    code = status.main([])

    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Runs of job filegate-ingest (id 1) on {server.url}, newest first:"
    assert lines[1].split()[:4] == ["RUN", "STATE", "STARTED", "(UTC)"]
    broken_line, good_line = lines[2], lines[3]
    assert broken_line.split()[:2] == [str(broken), "FAILED"]
    assert good_line.split()[:2] == [str(good), "SUCCESS"]
    assert "abfss://archive@devstoreaccount1/order_tracking/2024/03/05/order_tracking_2024_03_05.csv" in good_line
    assert "order_tracking " in good_line
    assert good_line.endswith(f"{server.url}/runs/{good}")
    assert " s " in good_line  # a duration


def test_a_setting_status_does_not_read_does_not_stop_it(
    server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Exit 2, "FILEGATE_SAMPLE_BYTES must be a whole number": status reads only the job and the workspace.
    monkeypatch.setenv("FILEGATE_SAMPLE_BYTES", "abc")
    monkeypatch.setenv("FILEGATE_ARCHIVE", "landing/archive")  # inside landing: the gate's to refuse

    code = status.main(["--limit", "1"])

    assert code == 0
    assert capsys.readouterr().out.startswith("Runs of job filegate-ingest (id 1)")


def test_limit_and_json(server: LocalJobsServer, capsys: pytest.CaptureFixture[str]) -> None:
    newest = max(run["run_id"] for run in server.runs())

    code = status.main(["--limit", "1", "--json"])

    runs = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [run["run_id"] for run in runs] == [newest]
    assert {p["name"]: p["value"] for p in runs[0]["job_parameters"]}["source_path"] == BROKEN


# False: as Databricks answers once it drops the deprecated `state` (the SDK says to read `status`): the
# termination code alone (RUN_EXECUTION_ERROR) read as a success and exited 0.
@pytest.mark.parametrize("legacy_state", [True, False])
def test_one_run_shows_its_tasks_and_the_error(
    server: LocalJobsServer, legacy_state: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    server.legacy_state = legacy_state
    broken = max(run["run_id"] for run in server.runs())

    code = status.main([str(broken)])

    out = capsys.readouterr().out
    assert code == 1  # a failed run is not a success for the scripts that read the exit code
    assert out.startswith(f"Run {broken} of job filegate-ingest (id 1): FAILED\n")
    assert f"  source    {BROKEN}\n" in out
    assert "  batch     broken-20240306-bbb\n" in out
    assert f"  run page  {server.url}/runs/{broken}\n" in out
    task_lines = {
        line.split()[0]: line.split()[1] for line in out.split("Tasks:\n")[1].split("Errors:")[0].splitlines()
    }
    assert task_lines == {"TASK": "STATE", "stage_load": "SUCCESS", "target_load": "FAILED"}
    # The error and the end of its trace come from the task's run output (runs/get-output).
    errors = out.split("Errors:\n")[1].splitlines()
    assert errors == [
        "  target_load: DeltaError: MERGE failed: 3 source rows match one target row",
        "    Traceback (most recent call last):",
        '      File "spark_jobs/target_load.py", line 40, in main',
        "        merge_batch(spark, warehouse, contract, batch)",
        '      File "spark_jobs/merge.py", line 88, in merge_batch',
        "        table.merge(source).execute()",
    ]


def test_an_error_of_several_lines_stays_under_its_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Spark's AnalysisException carries the SQL and a caret on lines of their own: they were printed at the
    # margin, where they read as lines of their own outside the Errors block.
    error = "AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] orders cannot be found.\n== SQL ==\nSELECT * FROM orders"

    def unknown_table(invocation: TaskInvocation) -> None:
        invocation.log_file.parent.mkdir(parents=True, exist_ok=True)
        invocation.log_file.write_text("", encoding="utf-8")
        if invocation.task_key == "target_load":
            raise TaskFailed("exit code 1", error=error, trace=f"Traceback (most recent call last):\n{error}")

    with local_jobs_api(tmp_path / "jobs", runner=unknown_table) as api:
        point_status_at(api, monkeypatch)
        parameters = {"source_path": SOURCE, "dataset": "order_tracking", "batch_id": "order_tracking-20240305"}
        run_id = workspace_client(api).jobs.run_now(job_id=1, job_parameters=parameters).run_id
        api.wait_idle(timeout=30)

        code = status.main([str(run_id)])

    assert code == 1
    assert capsys.readouterr().out.split("Errors:\n")[1].splitlines() == [
        "  target_load: AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] orders cannot be found.",
        "    == SQL ==",
        "    SELECT * FROM orders",
        "    Traceback (most recent call last):",
    ]


def test_a_retried_task_lists_each_attempt_and_only_its_last_attempt_s_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The fixture bundle with target_load's retries, as the deployed bundle gives them.
    text = FIXTURE_BUNDLE.read_text(encoding="utf-8")
    text = text.replace("../../../../spark_jobs/", f"{Path(__file__).resolve().parents[1] / 'spark_jobs'}/")
    text = text.replace("- task_key: target_load\n", "- task_key: target_load\n          max_retries: 2\n")
    bundle = tmp_path / "resources" / FIXTURE_BUNDLE.name
    bundle.parent.mkdir()
    bundle.write_text(text, encoding="utf-8")
    attempted: set[int] = set()

    def lose_an_executor_once(invocation: TaskInvocation) -> None:
        """A flaky batch's first target_load fails, its retry merges; a broken batch fails every attempt."""
        first = invocation.task_key == "target_load" and invocation.run_id not in attempted
        if invocation.task_key == "target_load":
            attempted.add(invocation.run_id)
        if first and invocation.parameters["batch_id"].startswith("flaky"):
            raise TaskFailed("exit code 1", error="SparkException: executor lost", trace="")
        fail_broken_batches(invocation)

    with local_jobs_api(tmp_path / "jobs", bundle=bundle, runner=lose_an_executor_once) as api:
        point_status_at(api, monkeypatch)
        client = workspace_client(api)
        runs = []
        for source, batch in ((SOURCE, "flaky-20240305-aaa"), (BROKEN, "broken-20240306-bbb")):
            parameters = {"source_path": source, "dataset": "order_tracking", "batch_id": batch}
            runs.append(client.jobs.run_now(job_id=next(iter(api.jobs)), job_parameters=parameters).run_id)
        api.wait_idle(timeout=30)
        codes = [status.main([str(run_id)]) for run_id in runs]
        # The demo's report of the runs that failed says the same, with the last attempt's log.
        world = SimpleNamespace(jobs=api, client=client)
        ended = {run_id: client.jobs.get_run(run_id) for run_id in runs}
        problems = run_problems(world, ended, {})  # type: ignore[arg-type]

    flaky, broken = capsys.readouterr().out.split("\nRun ")
    assert codes == [0, 1]
    # A failure its retry made good is listed among the tasks, and is no error of the run.
    assert task_states(flaky) == [
        ("stage_load", "SUCCESS"),
        ("target_load", "FAILED"),
        ("target_load (retry 1)", "SUCCESS"),
    ]
    assert "Errors:" not in flaky
    # A task that failed every attempt: its error once, from its last attempt.
    assert task_states(broken)[1:] == [
        ("target_load", "FAILED"),
        ("target_load (retry 1)", "FAILED"),
        ("target_load (retry 2)", "FAILED"),
    ]
    assert broken.split("Errors:\n")[1].count("target_load: DeltaError: MERGE failed") == 1
    assert problems[0] == f"  - run {runs[1]} (?) ended FAILED"
    assert sum("target_load: DeltaError: MERGE failed" in line for line in problems) == 1
    assert [line.split("/")[-1] for line in problems if "log:" in line] == ["target_load.retry-2.log"]


def task_states(shown: str) -> list[tuple[str, str]]:
    """The TASK and STATE columns of a run `filegate status RUN_ID` shows."""
    lines = shown.split("Tasks:\n")[1].split("Errors:", maxsplit=1)[0].splitlines()[1:]
    columns = [re.split(r"\s{2,}", line.strip()) for line in lines]
    return [(task, state) for task, state, *_ in columns]


@pytest.mark.parametrize("wording", ["", "Run: 999999 in job: 1 doesn't exist"])
def test_unknown_run_is_an_argument_to_fix(
    server: LocalJobsServer, capsys: pytest.CaptureFixture[str], wording: str
) -> None:
    if wording:
        # Databricks' other wording (the SDK's error overrides name both): it read as an outage, exit 75.
        server.inject(Fault(endpoint="runs/get", status=400, error_code="INVALID_PARAMETER_VALUE", message=wording))

    code = status.main(["999999"])

    assert code == 2
    assert f"configuration error: run 999999 does not exist in {server.url}" in capsys.readouterr().err


def test_an_unknown_job_id_names_the_setting(
    server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FILEGATE_JOB_ID", "77")

    code = status.main([])

    assert code == 2
    assert f"FILEGATE_JOB_ID=77: no such job in {server.url}" in capsys.readouterr().err


def test_a_jobs_api_that_does_not_answer_is_said_at_once_as_try_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    point_status_at(SimpleNamespace(url=url), monkeypatch)  # type: ignore[arg-type]

    code = status.main([])

    assert code == 75
    assert f"filegate status: try again: cannot reach the Jobs API at {url} (connection refused)" in (
        capsys.readouterr().err
    )


def test_unknown_job_name_says_what_to_do(
    server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FILEGATE_JOB_NAME", "no-such-job")

    code = status.main([])

    assert code == 2
    assert "no Databricks job named 'no-such-job'" in capsys.readouterr().err


def test_two_jobs_of_the_configured_name_are_named_with_their_ids(
    server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A second deploy of the bundle under another target: it said "2 jobs are named ...; set FILEGATE_JOB_ID",
    # and the ids to choose from were to be looked up in the workspace.
    server.jobs[7] = replace(server.jobs[1], job_id=7)

    code = status.main([])

    assert code == 2
    named = f"2 jobs are named 'filegate-ingest' in {server.url} (ids 1, 7): set FILEGATE_JOB_ID to the id of the one"
    assert named in capsys.readouterr().err


def test_a_job_without_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with local_jobs_api(tmp_path / "jobs") as api:
        monkeypatch.setenv("DATABRICKS_HOST", api.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", "local-test-token")
        monkeypatch.delenv("FILEGATE_JOB_ID", raising=False)
        monkeypatch.delenv("FILEGATE_JOB_NAME", raising=False)

        code = status.main([])
        by_name = capsys.readouterr().out
        monkeypatch.setenv("FILEGATE_JOB_ID", "1")
        by_id = status.main([])

    assert (code, by_id) == (0, 0)
    assert by_name == f"No runs of job filegate-ingest (id 1) on {api.url} yet.\n"
    # By id, the name came from a run only: "No runs of job ? (id 1)".
    assert capsys.readouterr().out == by_name


def test_batch_job_runs_name_their_pipeline_and_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = "abfss://archive@devstoreaccount1.dfs.core.windows.net/_batches/ecommerce/2025/01/15/manifest.json"
    with local_jobs_api(tmp_path / "jobs", runner=fail_broken_batches, bundle=BATCH_BUNDLE) as api:
        client = workspace_client(api)
        parameters = {"source_path": manifest, "pipeline": "ecommerce", "batch_id": "ecommerce-20250115-abc"}
        run_id = client.jobs.run_now(job_id=1, job_parameters=parameters, idempotency_token="abc").run_id
        api.wait_idle(timeout=30)
        point_status_at(api, monkeypatch)
        monkeypatch.setenv("FILEGATE_JOB_NAME", "filegate-batch")

        listed = status.main([])
        listing = capsys.readouterr().out
        shown = status.main([str(run_id)])
        one = capsys.readouterr().out

    assert (listed, shown) == (0, 0)
    header, row = listing.splitlines()[1:3]
    assert header.split()[-4:] == ["PIPELINE", "MANIFEST", "RUN", "PAGE"]
    assert row.split()[-3:-1] == [
        "ecommerce",
        "abfss://archive@devstoreaccount1/_batches/ecommerce/2025/01/15/manifest.json",
    ]
    assert re.search(r"^  pipeline +ecommerce$", one, re.MULTILINE), one


def test_batch_lists_the_batch_job_s_runs_beside_a_configured_ingest_job_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The function's settings carry both ids, and FILEGATE_JOB_ID wins over a FILEGATE_JOB_NAME=filegate-batch set to
    # list the batch job: that listed the ingest job's runs, and no setting or option listed the batch job's.
    with local_jobs_api(tmp_path / "jobs", runner=fail_broken_batches, bundle=(FIXTURE_BUNDLE, BATCH_BUNDLE)) as api:
        [ingest, batch] = sorted(api.jobs)
        parameters = {"source_path": SOURCE.replace("order_tracking/", "_batches/"), "pipeline": "ecommerce"}
        run = workspace_client(api).jobs.run_now(job_id=batch, job_parameters={**parameters, "batch_id": "b"})
        api.wait_idle(timeout=30)
        point_status_at(api, monkeypatch)
        monkeypatch.setenv("FILEGATE_JOB_ID", str(ingest))
        monkeypatch.setenv("FILEGATE_BATCH_JOB_ID", str(batch))

        listed = status.main(["--batch"])
        listing = capsys.readouterr().out
        # Each listing reads its own job's settings: a malformed batch job id stopped the ingest job's listing.
        monkeypatch.setenv("FILEGATE_BATCH_JOB_ID", "abc")
        ingest_listed = status.main([])
        capsys.readouterr()
        # A batch job id that names no job was said as "FILEGATE_JOB_ID=999: ... the filegate-ingest job's id".
        monkeypatch.setenv("FILEGATE_BATCH_JOB_ID", "999")
        no_such_job = status.main(["--batch"])
        said = capsys.readouterr().err

    assert (listed, ingest_listed, no_such_job) == (0, 0, 2)
    assert "FILEGATE_BATCH_JOB_ID=999: no such job in " in said
    assert "set it to the filegate-batch job's id or unset it to find the job by FILEGATE_BATCH_JOB_NAME" in said
    assert listing.splitlines()[0].startswith(f"Runs of job filegate-batch (id {batch}) on ")
    assert listing.splitlines()[2].split()[0] == str(run.run_id)


def test_a_queued_run_shows_its_wait_and_a_skipped_one_no_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A queued run's wait showed as its DURATION and its detail said "started" at its trigger time; a skipped
    # run, which never ran, showed "duration 0.0 s".
    with local_jobs_api(tmp_path / "jobs", runner=RecordingRunner(seconds=60)) as api:
        point_status_at(api, monkeypatch)
        client = workspace_client(api)
        ingest = api.jobs[1]
        api.jobs[1] = replace(ingest, settings={**ingest.settings, "max_concurrent_runs": 1})
        started = [
            client.jobs.run_now(job_id=1, job_parameters=parameters(day), idempotency_token=f"queued-{day}").run_id
            for day in (5, 6)
        ]
        time.sleep(1.2)  # the queued run's wait shows in whole tenths of a second

        assert status.main([]) == 0
        lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
        assert lines[str(started[1])].split()[1] == "QUEUED"
        assert re.search(r"QUEUED +\S+ \S+ +\d+\.\d s +order_tracking ", lines[str(started[1])])
        assert status.main([str(started[1])]) == 0
        one = capsys.readouterr().out
        assert re.search(r"^  started +not yet \(queued since \S+ \S+ UTC\)$", one, re.MULTILINE), one
        assert re.search(r"^  queued +\d+\.\d s$", one, re.MULTILINE), one
        assert "duration" not in one
        for run_id in started:
            client.jobs.cancel_run(run_id)
        api.wait_idle(timeout=30)

        api.jobs[1] = replace(ingest, settings={**ingest.settings, "max_concurrent_runs": 0})
        skipped = client.jobs.run_now(job_id=1, job_parameters=parameters(7), idempotency_token="skipped").run_id
        api.wait_idle(timeout=30)

        assert status.main([str(skipped)]) == 1
        one = capsys.readouterr().out
        assert re.search(r"^  started +never \(triggered \S+ \S+ UTC, skipped by Databricks\)$", one, re.MULTILINE)
        assert "duration" not in one


def parameters(day: int) -> dict[str, str]:
    source = SOURCE.replace("/05/order_tracking_2024_03_05", f"/{day:02d}/order_tracking_2024_03_{day:02d}")
    return {"source_path": source, "dataset": "order_tracking", "batch_id": f"order_tracking-202403{day:02d}"}


@pytest.mark.parametrize(
    ("legacy", "code", "error"),
    [
        ({"life_cycle_state": "TERMINATED", "result_state": "TIMEDOUT"}, "CANCELED", True),
        # A timeout answered without the legacy state read CANCELED, and its task's error was not shown.
        (None, "CANCELED", True),
        (None, "USER_CANCELED", False),
        ({"life_cycle_state": "TERMINATED", "result_state": "CANCELED"}, "USER_CANCELED", False),
        (None, "RUN_EXECUTION_ERROR", True),
        (None, "SUCCESS", False),
    ],
)
def test_a_timeout_is_an_error_with_or_without_the_legacy_state(
    legacy: dict[str, str] | None, code: str, error: bool
) -> None:
    from databricks.sdk.service.jobs import RunTask

    details = {"code": code, "type": "CLIENT_ERROR", "message": ""}
    body: dict[str, object] = {"task_key": "t", "status": {"state": "TERMINATED", "termination_details": details}}
    if legacy is not None:
        body["state"] = legacy

    assert status.ended_in_error(RunTask.from_dict(body)) is error


def test_short_source_and_durations() -> None:
    assert status.short_source(SOURCE).startswith("abfss://archive@")
    assert status.short_source(SOURCE).endswith("/order_tracking/2024/03/05/order_tracking_2024_03_05.csv")
    assert status.short_source("gs://archive-bucket/order_tracking/x.csv") == "gs://archive-bucket/order_tracking/x.csv"
    assert status.format_duration(12.34) == "12.3 s"
    assert status.format_duration(125) == "2 min 05 s"
    assert status.format_duration(3 * 3600 + 60) == "3 h 01 min"


def test_credentials_without_permission_are_told_what_to_grant(
    server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused at finding the job by name, then (the id known) at listing its runs.
    server.inject(Fault(endpoint="list", status=403, error_code="PERMISSION_DENIED", message="no access"))
    refused_lookup = status.main([])
    server.inject(Fault(endpoint="runs/list", status=403, error_code="PERMISSION_DENIED", message="no access"))
    monkeypatch.setenv("FILEGATE_JOB_ID", "1")

    code = status.main([])

    assert (refused_lookup, code) == (2, 2)
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2
    assert all("denied access (403): grant the principal of these credentials CAN_VIEW on the job" in e for e in errors)


def test_a_token_the_workspace_refuses_is_the_token_to_fix_not_a_grant(
    server: LocalJobsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # A workspace answers a wrong, expired or revoked token with a 403, not a 401, in this body: it was told
    # "grant the principal of these credentials CAN_VIEW on the job", a grant no principal lacked.
    refused = Fault(endpoint="*", status=403, error_code="403", message="Invalid access token.")
    server.inject(refused)
    listing = status.main([])
    server.inject(refused)

    one = status.main(["1"])

    assert (listing, one) == (2, 2)
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2
    assert all(f"{server.url} refused the credentials (403): check DATABRICKS_TOKEN" in line for line in errors)
    # Not the SDK's config appended to a 401's or 403's message, 200 characters on what the line names already.
    assert all(line.endswith("(Invalid access token.)") for line in errors)
    assert not any("CAN_VIEW" in line for line in errors)


@pytest.mark.parametrize("argv", [["123"], []])
def test_a_host_that_answers_with_a_web_page_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # A sign-in page answering 200: the run, or the runs of a job given by id, were read as JSON and the
    # JSON error alone was printed ("configuration error: Expecting value: line 1 column 1 (char 0)").
    with not_databricks(200, b"<!doctype html><html><body>Sign in</body></html>") as url:
        point_status_at(SimpleNamespace(url=url), monkeypatch)  # type: ignore[arg-type]
        monkeypatch.setenv("FILEGATE_JOB_ID", "1")
        code = status.main(argv)

    assert code == 2
    assert f"configuration error: {url} does not serve the Jobs API: set DATABRICKS_HOST" in capsys.readouterr().err
