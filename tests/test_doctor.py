"""`filegate doctor`: each check OK or a fix, against the real store and the local Jobs API."""

from __future__ import annotations

from pathlib import Path

import pytest

import filegate.doctor
import filegate.jobs
from filegate.azure_storage import AzureBlobStore
from filegate.contracts import BUILTIN_DATASETS
from filegate.doctor import JOBS_API_ANSWERED, JOBS_API_SILENT, NOT_CHECKED, _check_contracts, run_checks
from filegate.readiness import Check
from filegate.settings import Settings
from local_world.emulators import free_port
from local_world.jobs_api import Fault, LocalJobsServer
from local_world.jobs_api._server import HOST_METADATA_PATH
from tests.faults.world import World
from tests.test_cli import run_cli
from tests.test_readiness import _env


def test_doctor_says_ok_for_a_working_setup_and_names_each_fix(world: World, request: pytest.FixtureRequest) -> None:
    env = _env(world, request)

    healthy = run_cli(["doctor"], env)
    broken = run_cli(
        ["doctor", "--local"],
        {
            **env,
            "FILEGATE_REJECTED": "nowhere-rejected",
            "FILEGATE_JOB_ID": "77",
            "FILEGATE_SWEEP_SCHEDULE": "17 * * * *",
        },
    )

    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    # On Azure the archive is in its own account, so how a copy into it is signed is checked too, and the
    # function's timer has a schedule.
    assert f"all {9 if world.kind == 'azure' else 7} checks OK" in healthy.stdout
    assert "OK   contracts: " in healthy.stdout
    if world.kind == "azure":
        assert "OK   copy signing: copies into the archive's account are signed with" in healthy.stdout
        assert "OK   sweep schedule: the Azure function sweeps at `0 17 * * * *`" in healthy.stdout
    assert "takes source_path, dataset, batch_id" in healthy.stdout
    assert "takes source_path, pipeline, batch_id" in healthy.stdout
    assert broken.returncode == 2
    lines = broken.stdout.splitlines()
    assert any(line.startswith("FIX  FILEGATE_REJECTED (nowhere-rejected): does not exist") for line in lines)
    assert any(line.startswith("FIX  Databricks job: FILEGATE_JOB_ID=77: no such job") for line in lines)
    # The schedule is the Azure function's alone: GCP's is Cloud Scheduler's, in unix cron.
    schedule_fix = "FIX  sweep schedule: FILEGATE_SWEEP_SCHEDULE must be an NCRONTAB expression of six fields"
    assert any(line.startswith(schedule_fix) for line in lines) == (world.kind == "azure")
    assert any(line.startswith(("OK   python", "FIX  python")) for line in lines)
    assert any(line.startswith(("OK   java", "FIX  java")) for line in lines)


def test_doctor_says_try_again_when_only_the_jobs_api_does_not_answer(
    world: World, request: pytest.FixtureRequest
) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = run_cli(["doctor"], {**_env(world, request), "DATABRICKS_HOST": url})

    assert result.returncode == 75, result.stdout + result.stderr
    assert f"FIX  Databricks job: cannot reach the Jobs API at {url} (connection refused)" in result.stdout
    assert f"OK   FILEGATE_LANDING ({world.settings.landing.container}): exists" in result.stdout


@pytest.mark.parametrize("world", ["gcs"], indirect=True)
@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (
            429,
            "RESOURCE_EXHAUSTED: come back later (429, throttled: too many calls to this workspace's Jobs API at once",
        ),
        (503, "TEMPORARILY_UNAVAILABLE: come back later (503, unavailable: this workspace's Jobs API is down for now"),
    ],
)
def test_doctor_names_the_last_answer_of_a_jobs_api_that_answered_until_the_retries_ran_out(
    world: World,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
    answer: str,
) -> None:
    # It said the ingest job "cannot reach the Jobs API" and the batch job "the Jobs API did not answer", of a
    # Jobs API that answered every try: throttled (fewer callers at once) or unavailable (wait).
    for name, value in _env(world, request).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(filegate.jobs, "RETRY_TIMEOUT_SECONDS", 2)
    world.jobs_api.inject(Fault("*", status=status, message="come back later"), times=100)

    exit_code = filegate.doctor.main([])

    lines = capsys.readouterr().out.splitlines()
    assert exit_code == 75, lines
    [job] = [line for line in lines if line.startswith("FIX  Databricks job: ")]
    assert job.startswith(f"FIX  Databricks job: the Jobs API at {world.jobs_api.url} kept failing to resolve ")
    assert f"its last answer: {answer}" in job
    [batch] = [line for line in lines if line.startswith("FIX  Databricks batch job: ")]
    assert batch.startswith(f"FIX  Databricks batch job: {JOBS_API_ANSWERED}{answer}")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(
            {"FILEGATE_BATCH_JOB_NAME": "no-such-batch"},
            "no Databricks job named 'no-such-batch'",
            id="not-deployed",
        ),
        pytest.param(
            {"FILEGATE_BATCH_JOB_ID": "1"},
            "lacks the parameters pipeline: it is not the filegate-batch job",
            id="the-ingest-job",
        ),
    ],
)
def test_doctor_names_a_batch_job_that_sealed_batches_could_not_run(
    world: World, request: pytest.FixtureRequest, change: dict[str, str], named: str
) -> None:
    result = run_cli(["doctor"], {**_env(world, request), **change})

    assert result.returncode == 2, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if "batch job" in line]
    assert line.startswith("FIX  Databricks batch job: ")
    assert named in line
    assert "FILEGATE_BATCH_JOB_ID" in line
    assert "OK   Databricks job: " in result.stdout


def test_doctor_names_contracts_it_cannot_load_and_checks_the_jobs_when_storage_does_not_open(
    world: World, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = _env(world, request)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "returns.toml").write_text("name = \n", encoding="utf-8")
    unopened = {"FILEGATE_AZURE_STORAGE": "not a connection string"} if world.kind == "azure" else {}

    missing = run_cli(["doctor"], {**env, "FILEGATE_CONTRACTS_DIR": str(tmp_path / "nowhere"), **unopened})
    broken = run_cli(["doctor"], {**env, "FILEGATE_CONTRACTS_DIR": str(tmp_path / "broken")})

    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert f"FIX  contracts: the contracts folder {tmp_path / 'nowhere'} does not exist" in missing.stdout
    assert "OK   Databricks job: " in missing.stdout
    if unopened:
        assert "FIX  storage: FILEGATE_AZURE_STORAGE is not a storage connection string" in missing.stdout
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert f"FIX  contracts: {tmp_path / 'broken' / 'returns.toml'}: not valid TOML (" in broken.stdout
    # Both jobs are checked still: a broken contract says nothing about them.
    assert "OK   Databricks job: " in broken.stdout
    assert "takes source_path, pipeline, batch_id" in broken.stdout
    assert "Traceback" not in broken.stderr


def test_doctor_says_how_many_datasets_the_contracts_folder_gave(tmp_path: Path) -> None:
    # "(built-in and FOLDER)" read the same for a folder that held none (its files one level down, or named
    # .yaml): OK, while every dataset the operator wrote was unknown to the gate.
    (tmp_path / "empty").mkdir()
    (tmp_path / "mine" / "nested").mkdir(parents=True)
    text = (BUILTIN_DATASETS / "order_tracking.toml").read_text(encoding="utf-8")
    (tmp_path / "mine" / "order_tracking.toml").write_text(text, encoding="utf-8")
    (tmp_path / "mine" / "nested" / "order_tracking.toml").write_text(text, encoding="utf-8")

    empty, _ = _check_contracts(Settings(contracts_dir=tmp_path / "empty"))
    mine, _ = _check_contracts(Settings(contracts_dir=tmp_path / "mine"))

    assert (empty.ok, mine.ok) == (True, True)
    assert empty.detail.endswith(f"(built-in; none of them from {tmp_path / 'empty'})")
    assert mine.detail.endswith(f"(built-in; 1 of them from {tmp_path / 'mine'})")


def doctor_against(jobs_api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> list[Check]:
    """The checks with these settings, and the Databricks ones pointing at the local Jobs API."""
    local = {"DATABRICKS_HOST": jobs_api.url, "DATABRICKS_TOKEN": "local-test-token"}
    for name, value in {**local, "DATABRICKS_CONFIG_FILE": "/nonexistent", **env}.items():
        monkeypatch.setenv(name, value)
    return run_checks(None, local=False)


def test_a_malformed_setting_leaves_storage_and_the_jobs_checked(
    two_accounts: tuple[AzureBlobStore, Settings], jobs_api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One malformed setting ended doctor at its first line: each of the others, a rejected container that does
    # not exist and a job id of no job, came one run of doctor and one fix at a time.
    _, settings = two_accounts
    env = {
        "FILEGATE_LANDING": str(settings.landing),
        "FILEGATE_ARCHIVE": str(settings.archive),
        "FILEGATE_REJECTED": "nowhere-rejected",
        "FILEGATE_AZURE_STORAGE": settings.azure_storage or "",
        "FILEGATE_AZURE_ARCHIVE_STORAGE": settings.azure_archive_storage or "",
        "FILEGATE_SAMPLE_BYTES": "abc",
        "FILEGATE_MAX_FILE_BYTES": "0",
        "FILEGATE_JOB_ID": "77",
    }

    checks = doctor_against(jobs_api, monkeypatch, env)

    failed = [f"{check.name}: {check.detail}" for check in checks if not check.ok]
    assert failed[:2] == [
        "settings: FILEGATE_SAMPLE_BYTES must be a whole number (digits only), got 'abc'",
        "settings: FILEGATE_MAX_FILE_BYTES must be at least 1, got 0",
    ]
    assert failed[2].startswith("FILEGATE_REJECTED (nowhere-rejected): does not exist")
    assert failed[3].startswith(f"Databricks job: FILEGATE_JOB_ID=77: no such job in {jobs_api.url}")
    # This local Jobs API serves the ingest job alone.
    assert failed[4:] == [failed[4]]
    assert failed[4].startswith("Databricks batch job: no Databricks job named 'filegate-batch'")
    assert f"FILEGATE_LANDING ({settings.landing.container})" in [check.name for check in checks if check.ok]


def test_each_malformed_location_is_named_and_a_part_left_unchecked_says_so(
    jobs_api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the first malformed location was named (the archive's came a run later), and a malformed batch job id
    # dropped the ingest job's check too, with no line saying that either job went unchecked.
    env = {
        "FILEGATE_LANDING": "gs://landing",
        "FILEGATE_ARCHIVE": "https://acct.blob.core.windows.net/archive",
        "FILEGATE_BATCH_JOB_ID": "abc",
    }

    checks = doctor_against(jobs_api, monkeypatch, env)

    assert [f"{check.name}: {check.detail}" for check in checks if not check.ok] == [
        "settings: FILEGATE_LANDING must be `container[/prefix]` (a name, not a URL), got 'gs://landing'",
        "settings: FILEGATE_ARCHIVE must be `container[/prefix]` (a name, not a URL), got "
        "'https://acct.blob.core.windows.net/archive'",
        "settings: FILEGATE_BATCH_JOB_ID must be a whole number (digits only), got 'abc'",
        f"storage: {NOT_CHECKED}",
        f"Databricks batch job: {NOT_CHECKED}",
    ]
    assert [check.name for check in checks if check.ok] == ["contracts", "Databricks job"]


def test_doctor_signs_in_once_for_both_jobs(jobs_api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each job's check built a client of its own: the SDK asked the host for its metadata twice, and a slow host
    # cost doctor its wait twice. Storage is left unchecked (a malformed location): only the jobs ask anything.
    checks = doctor_against(jobs_api, monkeypatch, {"FILEGATE_LANDING": "gs://landing"})

    assert [check.name for check in checks if check.name.startswith("Databricks")] == [
        "Databricks job",
        "Databricks batch job",
    ]
    assert len(jobs_api.requests(HOST_METADATA_PATH)) == 1


def test_a_jobs_api_that_does_not_answer_is_asked_for_one_job_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # The batch job's check asked the same host again: in an outage doctor waited twice (for a 503, the SDK's
    # retries, about 20 s each), to say the same thing twice.
    url = f"http://127.0.0.1:{free_port()}"
    env = {"DATABRICKS_HOST": url, "DATABRICKS_TOKEN": "t", "DATABRICKS_CONFIG_FILE": "/nonexistent"}
    for name, value in {**env, "FILEGATE_LANDING": "gs://landing"}.items():  # storage left unchecked
        monkeypatch.setenv(name, value)

    checks = {check.name: check for check in run_checks(None, local=False)}

    assert checks["Databricks job"].detail == f"cannot reach the Jobs API at {url} (connection refused)"
    assert checks["Databricks batch job"] == Check("Databricks batch job", False, JOBS_API_SILENT, transient=True)
