"""`filegate handle EVENT.json`, run as an operator would, re-driving an event file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from filegate.azure_storage import AzureBlobStore
from filegate.cli import main
from filegate.settings import Settings
from local_world import ROOT
from local_world.emulators import Azurite
from local_world.inputs import blob_created, csv_bytes
from local_world.jobs_api import Fault, LocalJobsServer
from tests.conftest import frozen_in_archive_tier


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "filegate.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


@dataclass
class AzureCli:
    """Azurite, a landing/archive/rejected layout in it and a local Jobs API: what `filegate handle` talks to."""

    folder: Path
    azurite: Azurite
    store: AzureBlobStore
    settings: Settings
    jobs_api: LocalJobsServer

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "FILEGATE_AZURE_STORAGE": self.azurite.connection_string,
            "FILEGATE_LANDING": str(self.settings.landing),
            "FILEGATE_ARCHIVE": str(self.settings.archive),
            "FILEGATE_REJECTED": str(self.settings.rejected),
            "DATABRICKS_HOST": self.jobs_api.url,
            "DATABRICKS_TOKEN": "local-test-token",
            **extra,
        }

    def deliver(self, files: dict[str, bytes], folder: str = "delivery") -> Path:
        """The files uploaded into landing, and a file holding one delivery of their BlobCreated events."""
        landing = self.settings.landing
        events = []
        for name, data in files.items():
            info = self.store.put(landing.container, landing.path(name), data, "text/csv", {})
            events.append(
                blob_created(landing.container, landing.path(name), info.size, info.version, port=self.azurite.port)
            )
        (self.folder / folder).mkdir()
        event_file = self.folder / folder / "events.json"
        event_file.write_text(json.dumps(events))
        return event_file


@pytest.fixture
def cli(
    tmp_path: Path, azurite: Azurite, azure_store: AzureBlobStore, azure_settings: Settings, jobs_api: LocalJobsServer
) -> AzureCli:
    return AzureCli(tmp_path, azurite, azure_store, azure_settings, jobs_api)


def test_handle_prints_the_outcome_and_redelivery_is_a_duplicate(cli: AzureCli) -> None:
    event_file = cli.deliver({"order_tracking_2024_03_05.csv": csv_bytes()})

    first = run_cli(["handle", str(event_file)], cli.env())
    second = run_cli(["handle", str(event_file)], cli.env())

    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "archived"
    assert json.loads(second.stdout)["status"] == "duplicate"
    assert json.loads(second.stdout)["run_id"] == json.loads(first.stdout)["run_id"]
    assert len(cli.jobs_api.runs()) == 1


def test_handle_reads_an_event_saved_with_a_byte_order_mark_from_a_file_and_from_stdin(cli: AzureCli) -> None:
    # Windows PowerShell's `Out-File -Encoding utf8` (and Notepad) put a BOM before the JSON: the event saved from
    # the portal was "not JSON: Unexpected UTF-8 BOM", exit 2, and the file waited in landing for the sweep.
    event_file = cli.deliver({"order_tracking_2024_03_05.csv": csv_bytes()})
    event_file.write_bytes(b"\xef\xbb\xbf" + event_file.read_bytes())

    first = run_cli(["handle", str(event_file)], cli.env())
    piped = subprocess.run(
        [sys.executable, "-m", "filegate.cli", "handle", "-"],
        input=event_file.read_bytes(),
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, **cli.env()},
        timeout=120,
        check=False,
    )

    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout)["status"] == "archived"
    assert piped.returncode == 0, piped.stdout + piped.stderr
    assert json.loads(piped.stdout)["status"] == "duplicate"
    assert len(cli.jobs_api.runs()) == 1


def test_handle_exits_2_when_the_contracts_folder_does_not_load_and_the_file_stays_in_landing(cli: AzureCli) -> None:
    # A contract saved with a typo: fixing it is what helps, so 2 (CONFIG), not 1 (it ran; look at a file).
    contracts = cli.folder / "contracts"
    contracts.mkdir()
    (contracts / "refunds.toml").write_text('name = "refunds"\nfile_pattern = "refunds_{yyyy}{mm}{dd}.csv"\nkeyz = 1\n')
    name = "order_tracking_2024_03_05.csv"
    event_file = cli.deliver({name: csv_bytes()})

    result = run_cli(["handle", str(event_file)], cli.env(FILEGATE_CONTRACTS_DIR=str(contracts)))

    assert result.returncode == 2, result.stdout + result.stderr
    assert "filegate handle: configuration error:" in result.stderr
    assert "refunds.toml" in result.stderr
    assert "keyz" in result.stderr
    landing = cli.settings.landing
    left = cli.store.stat(landing.container, landing.path(name))
    assert left is not None
    assert left.size == len(csv_bytes())
    assert cli.jobs_api.runs() == []


def test_handle_exits_1_when_a_file_of_the_delivery_stays_in_landing_unreadable(cli: AzureCli) -> None:
    # One file archived, one blob in the Archive tier: exit 0 said all was done, while a person must set its tier.
    landing = cli.settings.landing
    files = {name: csv_bytes() for name in ("order_tracking_2024_03_05.csv", "order_tracking_2024_03_06.csv")}
    event_file = cli.deliver(files)
    frozen_in_archive_tier(cli.azurite, landing.container, landing.path("order_tracking_2024_03_06.csv"))

    result = run_cli(["handle", str(event_file)], cli.env(FILEGATE_JOB_ID="1"))

    assert result.returncode == 1, result.stdout + result.stderr
    assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["archived", "ignored"]
    assert "1 file(s) stay in landing, unreadable; see their reasons" in result.stderr
    assert len(cli.jobs_api.runs()) == 1

    # Again with a new file whose run-now is denied: a permission to fix (2) outranks the frozen file (1), which
    # outranks a retry (75 would invite one, which cannot read the frozen file).
    fresh = cli.deliver({"order_tracking_2024_03_07.csv": csv_bytes()}, folder="again")
    events = json.loads(event_file.read_text())
    fresh.write_text(json.dumps([events[1], *json.loads(fresh.read_text())]))
    cli.jobs_api.inject(Fault(status=403, error_code="PERMISSION_DENIED", message="no CAN_MANAGE_RUN"))

    stopped = run_cli(["handle", str(fresh)], cli.env(FILEGATE_JOB_ID="1"))

    assert stopped.returncode == 2, stopped.stdout + stopped.stderr
    assert [json.loads(line)["status"] for line in stopped.stdout.splitlines()] == ["ignored"]
    assert "denied access (403)" in stopped.stderr
    assert "1 file(s) stay in landing, unreadable" in stopped.stderr


def test_handle_goes_on_past_a_failed_event_and_prints_what_the_others_did(cli: AzureCli) -> None:
    # The first event's run-now fails (a permission missing); the second is a bad file. Before, handling
    # stopped at the first failure; and a rejection made before a failure was never printed, so handled
    # again it read as a duplicate and was reported as rejected nowhere.
    files = {"order_tracking_2024_03_05.csv": csv_bytes(), "order_tracking_2024_03_06.csv": b"a,b\n1,2\n"}
    event_file = cli.deliver(files)
    cli.jobs_api.inject(Fault(status=403, error_code="PERMISSION_DENIED", message="no CAN_MANAGE_RUN"))
    env = cli.env(FILEGATE_JOB_ID="1")

    result = run_cli(["handle", str(event_file)], env)

    # A permission to grant, which no retry mends (75 before: a scheduler would retry it for good).
    assert result.returncode == 2, result.stdout + result.stderr
    [printed] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (printed["status"], printed["source"].rsplit("/", 1)[-1]) == ("rejected", "order_tracking_2024_03_06.csv")
    assert "order_tracking_2024_03_05.csv" in result.stderr
    assert "denied access (403)" in result.stderr
    assert cli.jobs_api.runs() == []
    # An empty delivery still says why nothing was processed.
    event_file.write_text("[]")
    empty = run_cli(["handle", str(event_file)], env)
    assert empty.returncode == 1
    assert "the payload is an empty array" in json.loads(empty.stdout)["reasons"][0]


def test_a_sweep_whose_run_now_is_denied_exits_for_a_fix_then_starts_the_run_once_granted(
    cli: AzureCli, tmp_path: Path
) -> None:
    # Exit 75 ("try again") pass after pass: retrying cannot grant CAN_MANAGE_RUN. So for the other commands
    # that start runs.
    cli.deliver({"order_tracking_2024_03_05.csv": csv_bytes()})
    env = cli.env(FILEGATE_JOB_ID="1")
    cli.jobs_api.inject(Fault(status=403, error_code="PERMISSION_DENIED", message="no CAN_MANAGE_RUN"), times=50)
    folder = tmp_path / "backfill"
    folder.mkdir()
    (folder / "order_tracking_2024_03_09.csv").write_bytes(csv_bytes())

    denied = run_cli(["sweep", "--older-than", "0"], env)
    redrive = run_cli(["reconcile", "--redrive"], env)
    backfill = run_cli(["backfill", str(folder)], env)
    cli.jobs_api.clear_faults()
    granted = run_cli(["sweep", "--older-than", "0"], env)
    idle = run_cli(["sweep", "--older-than", "0"], env)

    assert denied.returncode == 2, denied.stdout + denied.stderr
    [pending] = [json.loads(line) for line in denied.stdout.splitlines()]
    assert (pending["status"], pending["to_fix"]) == ("run pending", True)
    assert "denied access (403)" in pending["reasons"][0]
    assert redrive.returncode == 2, redrive.stdout + redrive.stderr
    assert json.loads(redrive.stdout)["to_fix"] is True
    assert "1 file(s) wait for a setting or a permission to be fixed" in redrive.stderr
    assert backfill.returncode == 2, backfill.stdout + backfill.stderr
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert sorted(json.loads(line)["status"] for line in granted.stdout.splitlines()) == ["redriven", "redriven"]
    assert "to_fix" not in granted.stdout
    assert len(cli.jobs_api.runs()) == 2
    # Nothing left: it said nothing at all.
    assert (idle.returncode, idle.stdout) == (0, ""), idle.stderr
    assert "filegate sweep: nothing to do: no landing file older than 0 min" in idle.stderr


def test_a_sweep_piped_into_a_reader_that_stops_early_finishes_its_work(cli: AzureCli) -> None:
    # `filegate sweep | head -1`: the next line's BrokenPipeError ended the sweep with a traceback (exit 120),
    # two of the three files left in landing.
    names = [f"order_tracking_2024_03_0{day}.csv" for day in (5, 6, 7)]
    cli.deliver(dict.fromkeys(names, csv_bytes()))
    sweep = subprocess.Popen(
        [sys.executable, "-m", "filegate.cli", "sweep", "--older-than", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, **cli.env(FILEGATE_JOB_ID="1")},
    )
    assert sweep.stdout is not None
    assert sweep.stderr is not None
    first = sweep.stdout.readline()
    sweep.stdout.close()  # as `head -1` does once it has its line
    errors = sweep.stderr.read().decode()
    code = sweep.wait(timeout=120)

    assert json.loads(first)["status"] == "archived"
    assert code == 0, errors
    assert "Traceback" not in errors
    assert list(cli.store.list(cli.settings.landing.container, cli.settings.landing.prefix)) == []
    assert len(cli.jobs_api.runs()) == 3


def test_output_whose_reader_left_before_it_was_written_ends_quietly() -> None:
    # Buffered output (no PYTHONUNBUFFERED, as in most shells) met the closed pipe at the interpreter's last
    # flush, outside the command: "Exception ignored ... BrokenPipeError", exit 120.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    command = subprocess.Popen(
        [sys.executable, "-m", "filegate.cli", "--version"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert command.stdout is not None
    assert command.stderr is not None
    command.stdout.close()
    errors = command.stderr.read().decode()

    assert command.wait(timeout=60) == 0, errors
    assert "BrokenPipeError" not in errors


def test_sweep_refuses_an_age_that_is_no_number_of_minutes_before_reading_anything() -> None:
    # nan passed `< 0`; inf and 1e20 overflowed the cutoff; each ended in a traceback with exit 1.
    for age in ("nan", "inf", "1e20", "-1"):
        result = run_cli(["sweep", "--older-than", age], {})

        assert result.returncode == 2, (age, result.stderr)
        assert "--older-than must be a number of minutes from 0 to 52704000" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["batches", "--since"], ["batches", "--reseal"], ["archived", "--date"]])
def test_a_date_argument_that_is_no_date_says_the_form_and_what_is_wrong(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # argparse said "invalid fromisoformat value", the name of a Python function.
    with pytest.raises(SystemExit) as refused:
        main([*command, "2025-13-01"])

    assert refused.value.code == 2
    assert "'2025-13-01' is not a date, YYYY-MM-DD (month must be in 1..12)" in capsys.readouterr().err


def test_handle_explains_missing_configuration(tmp_path: Path) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(blob_created("landing", "f.csv", 10, "0x1")))

    result = run_cli(["handle", str(event_file)], {"FILEGATE_AZURE_STORAGE": ""})

    assert result.returncode == 2
    assert "FILEGATE_AZURE_STORAGE is not set" in result.stderr


def test_a_command_without_azure_storage_set_says_it_took_cloud_storage_for_that(tmp_path: Path) -> None:
    # An Azure operator who forgot FILEGATE_AZURE_STORAGE read only about Google's default credentials.
    no_cloud = {"FILEGATE_AZURE_STORAGE": "", "STORAGE_EMULATOR_HOST": "", "GOOGLE_APPLICATION_CREDENTIALS": ""}

    result = run_cli(["rejected"], {**no_cloud, "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path)})
    doctor = run_cli(["doctor"], {**no_cloud, "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path)})

    assert result.returncode == 2, result.stderr
    assert "no Google credentials for Cloud Storage" in result.stderr
    # The Azure fix first: the end of a long line about Google's credentials was read last, if at all.
    taken = "FILEGATE_AZURE_STORAGE is not set, so Cloud Storage was taken: on Azure, set it (or give --target azure)"
    assert taken in result.stderr.split("no Google credentials")[0]
    # doctor's storage line said only the first half.
    [storage] = [line for line in doctor.stdout.splitlines() if "storage" in line and "Google credentials" in line]
    assert "FILEGATE_AZURE_STORAGE is not set, so Cloud Storage was taken" in storage


def test_handle_rejects_a_file_that_is_not_json(tmp_path: Path) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text("{not json")

    result = run_cli(["handle", str(event_file)], {})

    assert result.returncode == 2
    assert "is not JSON" in result.stderr


def test_rejected_refuses_a_dataset_beside_reprocess_rather_than_ignore_it() -> None:
    # --dataset was taken and ignored: a path of another dataset was put through the gate all the same.
    result = run_cli(["rejected", "--reprocess", "rejected/orders/orders_2025_01_15.csv", "--dataset", "customers"], {})

    assert result.returncode == 2, result.stdout + result.stderr
    assert "--reprocess takes one file's path alone" in result.stderr
    assert result.stdout == ""


def test_handle_names_a_missing_a_folder_and_a_binary_event_file_without_a_traceback(tmp_path: Path) -> None:
    binary = tmp_path / "event.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")

    results = {
        "missing": run_cli(["handle", str(tmp_path / "nope.json")], {}),
        "folder": run_cli(["handle", str(tmp_path)], {}),
        "binary": run_cli(["handle", str(binary)], {}),
    }

    for case, result in results.items():
        assert result.returncode == 2, case
        assert "Traceback" not in result.stderr, case
    assert "no such file" in results["missing"].stderr
    assert "is a folder" in results["folder"].stderr
    assert "not a text file" in results["binary"].stderr


def test_handle_exits_non_zero_when_nothing_was_processed_and_prints_each_outcome_once(cli: AzureCli) -> None:
    event = blob_created(cli.settings.landing.container, "elsewhere/x.csv", 10, "0x1", port=cli.azurite.port)
    event_file = cli.folder / "event.json"
    event_file.write_text(json.dumps(event))

    result = run_cli(["handle", str(event_file)], cli.env())

    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["status"] == "ignored"
    assert "nothing was processed" in result.stderr
    assert '"status"' not in result.stderr  # printed on stdout, not logged a second time


def test_handle_exits_75_when_databricks_skipped_the_run_it_started(cli: AzureCli) -> None:
    # The job at its max_concurrent_runs without a queue: the file is archived, its run never runs. Exit 0 said
    # it was done (the sweep and `reconcile --redrive` exit 75 for the same outcome).
    ingest = cli.jobs_api.jobs[1]
    cli.jobs_api.jobs[1] = replace(ingest, settings={**ingest.settings, "max_concurrent_runs": 0})
    event_file = cli.deliver({"order_tracking_2024_03_05.csv": csv_bytes()})

    result = run_cli(["handle", str(event_file)], cli.env())

    assert result.returncode == 75, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "run pending"
    assert "1 file(s) archived without a run: Databricks skipped it" in result.stderr


def test_unknown_command_and_version() -> None:
    bogus = run_cli(["bogus"], {})
    version = run_cli(["--version"], {})

    assert bogus.returncode == 2
    assert "unknown command 'bogus'" in bogus.stderr
    assert version.returncode == 0
    assert version.stdout.startswith("filegate ")


def test_help_lists_the_settings_each_command_reads_with_defaults() -> None:
    # `check` reads only the contracts it is given; `status` reads the job and the workspace, not storage.
    for command in ("handle", "sweep", "batches", "doctor", "rejected", "archived", "reconcile", "backfill"):
        result = run_cli([command, "--help"], {})

        assert result.returncode == 0
        assert "FILEGATE_ARCHIVE (default archive)" in result.stdout, command
        assert "DATABRICKS_HOST" in result.stdout, command
    status = run_cli(["status", "--help"], {})
    assert "FILEGATE_JOB_NAME (default filegate-ingest)" in status.stdout
    assert "DATABRICKS_HOST" in status.stdout
