"""`filegate doctor`: each check OK or a fix, against the real store and the local Jobs API."""

from __future__ import annotations

import pytest

from tests.faults.world import World
from tests.test_cli import run_cli
from tests.test_readiness import _env


def test_doctor_says_ok_for_a_working_setup_and_names_each_fix(world: World, request: pytest.FixtureRequest) -> None:
    env = _env(world, request)

    healthy = run_cli(["doctor"], env)
    broken = run_cli(["doctor", "--local"], {**env, "FILEGATE_REJECTED": "nowhere-rejected", "FILEGATE_JOB_ID": "77"})

    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "all 5 checks OK" in healthy.stdout
    assert "takes source_path, dataset, batch_id" in healthy.stdout
    assert broken.returncode == 1
    lines = broken.stdout.splitlines()
    assert any(line.startswith("FIX  FILEGATE_REJECTED (nowhere-rejected): does not exist") for line in lines)
    assert any(line.startswith("FIX  Databricks job: FILEGATE_JOB_ID=77: no such job") for line in lines)
    assert any(line.startswith(("OK   python", "FIX  python")) for line in lines)
    assert any(line.startswith(("OK   java", "FIX  java")) for line in lines)
