"""The bundle in infra/databricks: the shape the function and the local Jobs API rely on."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from filegate.batches import BATCH_JOB_PARAMETERS
from filegate.jobs import JOB_PARAMETERS
from filegate.settings import DEFAULT_JOB_NAME
from local_world.jobs_api import load_bundle, local_variables
from local_world.jobs_api._bundle import references, resolve_references
from spark_jobs.batch import parse_batch_arguments
from spark_jobs.task import parse_arguments
from spark_jobs.warehouse import MAX_ATTEMPTS

BUNDLE = Path(__file__).resolve().parents[2] / "infra" / "databricks"
PARAMETERS = [
    "--source-path", "{{job.parameters.source_path}}", "--dataset", "{{job.parameters.dataset}}",
    "--batch-id", "{{job.parameters.batch_id}}", "--run-id", "{{job.run_id}}",
    "--catalog", "${var.catalog}", "--schema", "${var.schema}",
]  # fmt: skip


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_job_runs_stage_then_target_with_the_job_parameters() -> None:
    job_file = BUNDLE / "resources" / "filegate_ingest.job.yml"
    job = load(job_file)["resources"]["jobs"]["filegate_ingest"]

    assert job["name"] == DEFAULT_JOB_NAME
    assert [p["name"] for p in job["parameters"]] == ["source_path", "dataset", "batch_id"]
    # Overlapping runs of one dataset race; each must commit within the bounded retries of a lost race.
    assert 1 <= job["max_concurrent_runs"] < MAX_ATTEMPTS
    assert job["queue"]["enabled"] is True
    stage, target = job["tasks"]
    assert (stage["task_key"], target["task_key"]) == ("stage_load", "target_load")
    assert target["depends_on"] == [{"task_key": "stage_load"}]
    for task in (stage, target):
        python_file = (job_file.parent / task["spark_python_task"]["python_file"]).resolve()
        assert python_file == BUNDLE.parents[1] / "spark_jobs" / f"{task['task_key']}.py"
        assert task["spark_python_task"]["parameters"] == PARAMETERS
    (environment,) = job["environments"]
    assert {task["environment_key"] for task in job["tasks"]} == {environment["environment_key"]}
    assert any(dependency.endswith(".whl") for dependency in environment["spec"]["dependencies"])
    assert job["email_notifications"]["on_failure"] == "${var.failure_emails}"
    # Written once: the second task reuses the first one's list through a YAML anchor.
    assert job_file.read_text(encoding="utf-8").count("{{job.parameters.source_path}}") == 1


def longest_valid_run(job: dict[str, Any]) -> float:
    """Seconds a run may take with every task (one after the other) using all its attempts and retry waits."""
    total = 0.0
    for task in job["tasks"]:
        retries = task.get("max_retries", 0)
        total += (1 + retries) * task["timeout_seconds"] + retries * task.get("min_retry_interval_millis", 0) / 1000
    return total


def test_only_the_idempotent_merge_is_retried_and_every_task_has_a_time_limit() -> None:
    job = load(BUNDLE / "resources" / "filegate_ingest.job.yml")["resources"]["jobs"]["filegate_ingest"]
    stage, target = job["tasks"]

    assert target["max_retries"] >= 1
    assert target["min_retry_interval_millis"] >= 30_000
    assert target["retry_on_timeout"] is True
    assert "max_retries" not in stage
    assert all(task["timeout_seconds"] > 0 for task in (stage, target))
    assert job["timeout_seconds"] >= longest_valid_run(job)


@pytest.mark.parametrize("key", ["filegate_ingest", "filegate_batch"])
def test_no_task_is_retried_beyond_what_the_bundle_declares(key: str) -> None:
    # Serverless auto-optimization retries failed tasks of its own accord, those without max_retries too: a bad
    # file's stage or a failed validation would run again, and the job's timeout, sized by longest_valid_run from
    # the declared retries, could cancel a valid run. The local Jobs API runs the declared retries only.
    job = load(BUNDLE / "resources" / f"{key}.job.yml")["resources"]["jobs"][key]

    assert {task["task_key"]: task.get("disable_auto_optimization") for task in job["tasks"]} == {
        task["task_key"]: True for task in job["tasks"]
    }


@pytest.mark.parametrize(
    ("key", "sent", "parse"),
    [
        ("filegate_ingest", JOB_PARAMETERS, parse_arguments),
        ("filegate_batch", BATCH_JOB_PARAMETERS, parse_batch_arguments),
    ],
)
def test_each_task_parses_the_job_parameters_run_now_sends(key: str, sent: tuple[str, ...], parse: Any) -> None:
    # run-now passes `job_parameters` (filegate.jobs, filegate.batches); Databricks refuses a name the job does
    # not declare, and each task gets them through `{{job.parameters.x}}` in its own argparse spelling.
    path = BUNDLE / "resources" / f"{key}.job.yml"
    (job,) = load_bundle(path, local_variables())
    values = {f"job.parameters.{name}": f"{name}-1" for name in sent} | {"job.run_id": "7"}

    assert tuple(job.defaults()) == sent
    for task in job.tasks:
        assert references(task.parameters) <= set(values), task.task_key
        parse(resolve_references(task.parameters, values), task.task_key)


@pytest.mark.parametrize("key", ["filegate_ingest", "filegate_batch"])
def test_the_environment_installs_the_wheel_the_artifact_builds(key: str) -> None:
    # Relative to the job file, as the CLI resolves it; the artifact's `build` leaves the wheel in <path>/dist.
    job_file = BUNDLE / "resources" / f"{key}.job.yml"
    job = load(job_file)["resources"]["jobs"][key]
    artifact = load(BUNDLE / "databricks.yml")["artifacts"]["filegate"]
    (environment,) = job["environments"]

    assert environment["spec"]["environment_version"].isdigit()
    (wheels,) = environment["spec"]["dependencies"]
    assert (job_file.parent / wheels).resolve() == (BUNDLE / artifact["path"] / "dist" / "*.whl").resolve()
    assert "--wheel-dir dist" in artifact["build"]
    assert {task["environment_key"] for task in job["tasks"]} == {environment["environment_key"]}


def test_targets_set_catalog_and_schema_and_prod_keeps_the_job_name() -> None:
    bundle = load(BUNDLE / "databricks.yml")

    assert set(bundle["targets"]) == {"dev", "prod"}
    for target in bundle["targets"].values():
        assert {"catalog", "schema"} <= set(target["variables"])
    assert bundle["targets"]["prod"]["mode"] == "production"
    assert bundle["artifacts"]["filegate"]["type"] == "whl"
    # A redeploy with changed contracts must reach the jobs, though the package's version stays the same.
    assert bundle["artifacts"]["filegate"]["dynamic_version"] is True
    # The CLIs with dynamic_version before v0.256 emptied the repository's build/ before building the wheel,
    # taking build/gcp_function (what infra/gcp zips) with it; the CLI refuses a version outside this.
    assert bundle["bundle"]["databricks_cli_version"] == ">= 0.256.0"
    assert "Databricks CLI >= 0.256" in (BUNDLE.parent / "README.md").read_text(encoding="utf-8")


def test_the_batch_job_stages_validates_merges_then_derives_one_batch_at_a_time() -> None:
    job_file = BUNDLE / "resources" / "filegate_batch.job.yml"
    job = load(job_file)["resources"]["jobs"]["filegate_batch"]

    assert job["name"] == "filegate-batch"
    assert [p["name"] for p in job["parameters"]] == ["source_path", "pipeline", "batch_id"]
    assert (job["max_concurrent_runs"], job["queue"]["enabled"]) == (1, True)
    keys = [task["task_key"] for task in job["tasks"]]
    assert keys == ["stage_members", "validate", "merge_targets", "derive_tables"]
    for previous, task in zip(job["tasks"], job["tasks"][1:], strict=False):
        assert task["depends_on"] == [{"task_key": previous["task_key"]}]
    for task in job["tasks"]:
        python_file = (job_file.parent / task["spark_python_task"]["python_file"]).resolve()
        assert python_file.is_file()
        parameters = task["spark_python_task"]["parameters"]
        assert parameters[:2] == ["--manifest", "{{job.parameters.source_path}}"]
        assert "{{job.run_id}}" in parameters
    # A failed validation is the data's verdict: retrying would fail the same way and hide it.
    assert "max_retries" not in job["tasks"][1]
    assert job["tasks"][2]["max_retries"] >= 1
    # The job's own limit must not cancel a run whose tasks are all within theirs.
    assert all(task["timeout_seconds"] > 0 for task in job["tasks"])
    assert job["timeout_seconds"] >= longest_valid_run(job)


def test_the_clis_local_state_stays_out_of_git() -> None:
    # `databricks bundle deploy` keeps its state beside databricks.yml in .databricks/ (sync snapshots, patched
    # wheels, deployment metadata, variable overrides); every bundle template of the CLI ignores the folder.
    state = BUNDLE / ".databricks" / "bundle" / "prod" / "sync-snapshots" / "snapshot.json"

    assert subprocess.run(["git", "check-ignore", "-q", str(state)], cwd=BUNDLE, check=False).returncode == 0


def test_the_production_target_deploys_under_the_deployers_home() -> None:
    # The CLI refuses `mode: production` without an explicit root_path (or run_as); under
    # /Workspace/Shared every workspace user could replace the files the jobs run.
    prod = load(BUNDLE / "databricks.yml")["targets"]["prod"]

    assert prod["mode"] == "production"
    assert prod["workspace"]["root_path"].startswith("/Workspace/Users/${workspace.current_user.userName}/")


@pytest.mark.parametrize(
    "task", ["stage_load", "target_load", "batch_stage", "batch_validate", "batch_merge", "batch_derive"]
)
def test_every_task_file_runs_without_a_file_name_as_serverless_runs_it(
    task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Serverless runs a spark_python_task's code through exec(), without `__file__`; the wheel provides
    # the packages there. Only the module's top is run here: its name is not "__main__".
    path = BUNDLE.parents[1] / "spark_jobs" / f"{task}.py"
    module = types.ModuleType(f"serverless_{task}")
    monkeypatch.setitem(sys.modules, module.__name__, module)

    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), module.__dict__)

    assert callable(module.main)
