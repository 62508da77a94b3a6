"""The variables' validation rules, run by Terraform itself on each cloud's real variables.tf.

variables.tf declares no provider, so `terraform plan` evaluates the rules offline. CI machines without
terraform skip these; tests/infra/test_azure.py and test_gcp.py still check the rules exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import INFRA

from filegate.errors import SettingsError
from filegate.settings import sweep_schedule

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")

OBJECT_ID = "01234567-89ab-cdef-0123-456789abcdef"
REQUIRED = {
    "azure": ["databricks_host=https://adb-1.2.azuredatabricks.net"],
    "gcp": ["databricks_host=https://1.2.gcp.databricks.com", "project_id=my-project"],
}


def plan(
    folder: Path, cloud: str, variables: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    arguments = [f"-var={item}" for item in REQUIRED[cloud] + variables]
    return subprocess.run(
        ["terraform", f"-chdir={folder}", "plan", "-input=false", "-no-color", "-lock=false", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", **(env or {})},
    )


def copy_variables(cloud: str, folder: Path) -> Path:
    """A module holding only the cloud's variables.tf, initialised (no provider to download)."""
    shutil.copy(INFRA / cloud / "variables.tf", folder / "variables.tf")
    init = subprocess.run(
        ["terraform", f"-chdir={folder}", "init", "-input=false", "-no-color", "-backend=false"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return folder


@pytest.fixture(scope="module")
def azure_variables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_variables("azure", tmp_path_factory.mktemp("azure"))


@pytest.fixture(scope="module")
def gcp_variables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_variables("gcp", tmp_path_factory.mktemp("gcp"))


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    return " ".join(result.stderr.split())


def test_the_defaults_pass(azure_variables: Path, gcp_variables: Path) -> None:
    azure = plan(azure_variables, "azure", [])
    gcp = plan(gcp_variables, "gcp", [])

    assert azure.returncode == 0, azure.stdout + azure.stderr
    assert gcp.returncode == 0, gcp.stdout + gcp.stderr


AZURE_REFUSED = {
    "archive in landing": (["archive_container=landing"], "archive_container must differ"),
    "rejected in archive": (["rejected_container=archive"], "rejected_container must differ"),
    "landing in deadletter": (["landing_container=deadletter"], "landing_container cannot be"),
    # The Functions host keeps its own containers in the landing account: its writes would arrive as uploads.
    "landing in the host's container": (["landing_container=azure-webjobs-hosts"], "landing_container cannot be"),
    "rejected in the host's secrets": (["rejected_container=azure-webjobs-secrets"], "rejected_container must differ"),
    "no delivery attempts": (["event_max_delivery_attempts=0"], "event_max_delivery_attempts must be"),
    "too many attempts": (["event_max_delivery_attempts=31"], "event_max_delivery_attempts must be"),
    "TTL over a day": (["event_time_to_live_minutes=1441"], "event_time_to_live_minutes must be"),
    "token auth without token": (["databricks_auth=token"], "needs databricks_token"),
    "uploader by e-mail": (['uploader_principal_ids=["someone@example.com"]'], "uploader_principal_ids must be"),
    "operator by name": (['operator_principal_ids=["ops"]'], "operator_principal_ids must be"),
    "job id as a name": (["databricks_job_id=job-123"], "databricks_job_id must be a job id"),
    "batch job id as a name": (["databricks_batch_job_id=filegate-batch"], "databricks_batch_job_id must be a job id"),
    # The function refuses these on every delivery (FILEGATE_JOB_ID, FILEGATE_SAMPLE_BYTES, FILEGATE_MAX_FILE_BYTES).
    "job id 0": (["databricks_job_id=0"], "databricks_job_id must be a job id"),
    "sample past 64 MiB": (["sample_bytes=67108865"], "sample_bytes must be a whole number from 1024"),
    "no file size": (["max_file_bytes=0"], "max_file_bytes must be a whole number of bytes, 1 or more"),
    # The event filter would match no blob name (they never start with `/`): every upload waited for the sweep.
    "landing prefix from the root": (["landing_prefix=/incoming/"], "landing_prefix must be empty or folders"),
    "landing prefix with //": (["landing_prefix=incoming//"], "landing_prefix must be empty or folders"),
    # The function refuses it on every delivery (filegate.settings): a paste's space, not a folder's name.
    "landing prefix with a space before /": (["landing_prefix=incoming /"], "landing_prefix must be empty or folders"),
    "landing prefix with a space after /": (["landing_prefix=a/ b/"], "landing_prefix must be empty or folders"),
    "too few instances": (["function_maximum_instance_count=10"], "function_maximum_instance_count must be 40 to"),
    "memory size not offered": (["function_instance_memory_mb=1024"], "function_instance_memory_mb must be 512,"),
    # The function refuses these on every delivery: the SDK would send the path, query or fragment with every call.
    "host as the browser's address": (
        ["databricks_host=https://adb-1.2.azuredatabricks.net/?o=1#job/2"],
        "databricks_host must be the workspace URL alone",
    ),
    "host as a run page": (
        ["databricks_host=https://adb-1.2.azuredatabricks.net/jobs/2/runs/3"],
        "databricks_host must be the workspace URL alone",
    ),
}


@pytest.mark.parametrize("case", AZURE_REFUSED, ids=list(AZURE_REFUSED))
def test_azure_refuses(case: str, azure_variables: Path) -> None:
    variables, message = AZURE_REFUSED[case]

    result = plan(azure_variables, "azure", variables)

    assert message in refusal(result)


def test_azure_accepts_a_landing_prefix_of_folders_with_spaces_inside(azure_variables: Path) -> None:
    result = plan(azure_variables, "azure", ["landing_prefix=daily uploads/in/"])

    assert result.returncode == 0, result.stdout + result.stderr


def test_azure_accepts_token_auth_with_a_token_and_object_ids(azure_variables: Path) -> None:
    grants = [f'uploader_principal_ids=["{OBJECT_ID}"]', f'operator_principal_ids=["{OBJECT_ID}"]']

    result = plan(
        azure_variables, "azure", ["databricks_auth=token", *grants], env={"TF_VAR_databricks_token": "dapi-test"}
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_gcp_refuses_a_name_prefix_buckets_cannot_carry(gcp_variables: Path) -> None:
    result = plan(gcp_variables, "gcp", ["name_prefix=Filegate_"])

    assert "name_prefix must be" in refusal(result)


@pytest.mark.parametrize("variable", ["databricks_job_id", "databricks_batch_job_id"])
def test_gcp_refuses_a_job_id_that_is_not_a_number(variable: str, gcp_variables: Path) -> None:
    # The function would refuse it on every delivery, and Eventarc retry each for a day.
    assert f"{variable} must be a job id" in refusal(plan(gcp_variables, "gcp", [f"{variable}=job-123"]))
    assert f"{variable} must be a job id" in refusal(plan(gcp_variables, "gcp", [f"{variable}=0"]))
    assert plan(gcp_variables, "gcp", [f"{variable}=123"]).returncode == 0
    assert plan(gcp_variables, "gcp", [f"{variable}=0123"]).returncode == 0  # the function reads it as 123


def test_gcp_refuses_a_timeout_event_driven_functions_cannot_have(gcp_variables: Path) -> None:
    # The API refuses more than 540 s only at apply, after the buckets and the trigger were made.
    assert "function_timeout_seconds must be 60 to 540" in refusal(
        plan(gcp_variables, "gcp", ["function_timeout_seconds=600"])
    )


@pytest.mark.parametrize("token", ["", "  "])
def test_gcp_refuses_a_blank_databricks_token(token: str, gcp_variables: Path) -> None:
    # Written to Secret Manager as the token's new version, it would fail every delivery's Databricks call.
    result = plan(gcp_variables, "gcp", [], env={"TF_VAR_databricks_token": token})

    assert "databricks_token is blank" in refusal(result)


def test_gcp_accepts_a_token_or_none_to_keep_the_stored_one(gcp_variables: Path) -> None:
    with_token = plan(gcp_variables, "gcp", [], env={"TF_VAR_databricks_token": "dapi-test"})

    assert with_token.returncode == 0, with_token.stdout + with_token.stderr
    assert plan(gcp_variables, "gcp", []).returncode == 0


def workspace(cloud: str, azure_variables: Path, gcp_variables: Path) -> tuple[Path, str]:
    """The cloud's variables folder and a workspace URL of that cloud."""
    if cloud == "azure":
        return azure_variables, "https://adb-1.2.azuredatabricks.net"
    return gcp_variables, "https://1.2.gcp.databricks.com"


@pytest.mark.parametrize("cloud", ["azure", "gcp"])
def test_the_workspace_url_alone_passes_with_or_without_its_slash(
    cloud: str, azure_variables: Path, gcp_variables: Path
) -> None:
    folder, host = workspace(cloud, azure_variables, gcp_variables)

    assert plan(folder, cloud, [f"databricks_host={host}/"]).returncode == 0
    assert "databricks_host must be the workspace URL alone" in refusal(
        plan(folder, cloud, [f"databricks_host={host}/?o=1"])
    )


@pytest.mark.parametrize("cloud", ["azure", "gcp"])
def test_whitespace_around_the_host_or_a_line_break_in_the_token_is_refused_at_plan(
    cloud: str, azure_variables: Path, gcp_variables: Path
) -> None:
    # They were deployed as written: a host with a space (no workspace's), and a token with a newline, which the
    # SDK sends as it is and the function refuses on every delivery (filegate.settings).
    folder, host = workspace(cloud, azure_variables, gcp_variables)
    token_auth = ["databricks_auth=token"] if cloud == "azure" else []

    spaced_host = plan(folder, cloud, [f"databricks_host={host} "])
    spaced_token = plan(folder, cloud, token_auth, env={"TF_VAR_databricks_token": "dapi-test\n"})

    assert "databricks_host must be the workspace URL alone" in refusal(spaced_host)
    assert "databricks_token holds a line break" in refusal(spaced_token)
    # A space around the token works (HTTP trims it from the header), and the function takes it.
    assert plan(folder, cloud, token_auth, env={"TF_VAR_databricks_token": "dapi-test "}).returncode == 0


# Schedules the function reads (filegate.settings.sweep_schedule, NCrontab's rules) and ones it refuses, which
# it replaces with the default schedule and an ERROR: a cron habit (7 for Sunday, Quartz's `?`) would deploy a
# sweep that ignores the schedule given.
SWEEP_SCHEDULES = [
    "0 17 * * * *",
    "0 0 9-17/2 * * Mon-Fri",
    "0 30 9 1,15 jan-MAR *",
    "*/30 * * * * Sunday",
    "0 0 17-9 * * *",
    "0 */0 * * * *",
    "0 0 3 * * */-2",
    "0 0 3 * * +6",
    "0 0 3 * * 7",
    "0 0 3 ? * SUN",
    "0 61 * * * *",
    "0 0 0 0 * *",
    "0 0 0 * 13 *",
    "0 0 0 * * Mondays",
    "0 0 1Jan * * *",
    "0 */99999999999 * * * *",
    "1/2147483647 * * * * *",
    "0 0 3,,4 * * *",
    "*-5 * * * * *",
]


def function_reads(schedule: str) -> bool:
    try:
        sweep_schedule({"FILEGATE_SWEEP_SCHEDULE": schedule})
    except SettingsError:
        return False
    return True


@pytest.mark.parametrize("schedule", SWEEP_SCHEDULES)
def test_azure_takes_exactly_the_sweep_schedules_the_function_reads(schedule: str, azure_variables: Path) -> None:
    result = plan(azure_variables, "azure", [f"sweep_schedule={schedule}"])

    if function_reads(schedule):
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert "sweep_schedule must be an NCRONTAB expression" in refusal(result)
