"""`filegate doctor`: each check OK or a fix, against the real store and the local Jobs API."""

from __future__ import annotations

import pytest

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
    assert f"all {8 if world.kind == 'azure' else 6} checks OK" in healthy.stdout
    if world.kind == "azure":
        assert "OK   copy signing: copies into the archive's account are signed with" in healthy.stdout
        assert "OK   sweep schedule: the Azure function sweeps at `0 17 * * * *`" in healthy.stdout
    assert "takes source_path, dataset, batch_id" in healthy.stdout
    assert "takes source_path, pipeline, batch_id" in healthy.stdout
    assert broken.returncode == 1
    lines = broken.stdout.splitlines()
    assert any(line.startswith("FIX  FILEGATE_REJECTED (nowhere-rejected): does not exist") for line in lines)
    assert any(line.startswith("FIX  Databricks job: FILEGATE_JOB_ID=77: no such job") for line in lines)
    # The schedule is the Azure function's alone: GCP's is Cloud Scheduler's, in unix cron.
    schedule_fix = "FIX  sweep schedule: FILEGATE_SWEEP_SCHEDULE must be an NCRONTAB expression of six fields"
    assert any(line.startswith(schedule_fix) for line in lines) == (world.kind == "azure")
    assert any(line.startswith(("OK   python", "FIX  python")) for line in lines)
    assert any(line.startswith(("OK   java", "FIX  java")) for line in lines)


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

    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if "batch job" in line]
    assert line.startswith("FIX  Databricks batch job: ")
    assert named in line
    assert "FILEGATE_BATCH_JOB_ID" in line
    assert "OK   Databricks job: " in result.stdout
