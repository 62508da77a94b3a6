"""The built GCP function under functions-framework, fed CloudEvents over HTTP, on the GCS emulator."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from filegate.archive import version_qualified
from filegate.events import Upload, parse_event
from filegate.jobs import batch_id, idempotency_token
from filegate.storage import META_SOURCE, META_SOURCE_VERSION
from local_world.emulators import EmulatorError
from local_world.inputs import csv_bytes, tracking_row
from local_world.jobs_api import Fault
from tests.conftest import served_function
from tests.gcp.eventarc import finalized_event, scheduler_tick, send, upload
from tests.gcp.world import PROJECT, GcpWorld, GcsEmulator


def file_name(day: int) -> str:
    """A distinct business day per test, so tests sharing the function's buckets never meet."""
    return f"order_tracking_2024_04_{day:02d}.csv"


def archive_path(day: int) -> str:
    return f"order_tracking/2024/04/{day:02d}/{file_name(day)}"


def token_of(event: dict[str, Any]) -> str:
    upload_ = parse_event(event)
    assert isinstance(upload_, Upload)
    return idempotency_token(upload_)


def delivered(world: GcpWorld, event: dict[str, Any], mode: str = "binary") -> None:
    status, body = send(world.url, event, mode)
    assert status == 200, f"{status} {body}\n--- function log ---\n{world.log.read_text()[-4000:]}"


def log_lines(world: GcpWorld) -> list[dict[str, Any]]:
    """The function's log as Cloud Logging reads it: every line a JSON object (a plain one has no severity)."""
    return [json.loads(line) for line in world.log.read_text().splitlines() if line.strip()]


def runs_of(world: GcpWorld, source_path: str) -> list[dict[str, Any]]:
    return [run for run in world.runs() if run["source_path"] == source_path]


@pytest.mark.parametrize(("mode", "day"), [("binary", 1), ("structured", 2)])
def test_a_valid_file_is_archived_and_starts_one_run(gcp_world: GcpWorld, mode: str, day: int) -> None:
    landing, archive = gcp_world.settings.landing.container, gcp_world.settings.archive.container
    data = csv_bytes([tracking_row(i) for i in range(20)])
    blob = upload(gcp_world.client, landing, file_name(day), data)
    event = finalized_event(blob)

    delivered(gcp_world, event, mode)

    copy = gcp_world.client.bucket(archive).get_blob(archive_path(day))
    assert copy is not None
    assert copy.download_as_bytes() == data
    assert copy.metadata[META_SOURCE] == f"{landing}/{file_name(day)}"
    assert copy.metadata[META_SOURCE_VERSION] == str(blob.generation)
    assert gcp_world.client.bucket(landing).get_blob(file_name(day)) is None
    token = token_of(event)
    [run] = runs_of(gcp_world, f"gs://{archive}/{archive_path(day)}")
    assert run["dataset"] == "order_tracking"
    assert run["batch_id"] == batch_id("order_tracking", date(2024, 4, day), token)
    [request] = [r for r in gcp_world.jobs.requests("run-now") if r.body["idempotency_token"] == token]
    assert request.body["job_parameters"]["source_path"] == run["source_path"]


def test_an_invalid_file_is_rejected_with_a_report_and_starts_no_run(gcp_world: GcpWorld) -> None:
    landing, rejected = gcp_world.settings.landing.container, gcp_world.settings.rejected.container
    data = csv_bytes([tracking_row(1, status="LOST_IN_SPACE"), tracking_row(2, carrier="PIGEON")])
    blob = upload(gcp_world.client, landing, file_name(3), data)
    runs_before = len(gcp_world.runs())

    delivered(gcp_world, finalized_event(blob))

    bucket = gcp_world.client.bucket(rejected)
    copy = bucket.get_blob(f"order_tracking/{file_name(3)}")
    assert copy is not None
    assert copy.download_as_bytes() == data
    report = json.loads(bucket.blob(f"order_tracking/{file_name(3)}.report.json").download_as_bytes())
    assert report["source"] == f"{landing}/{file_name(3)}"
    assert report["source_version"] == str(blob.generation)
    assert any("LOST_IN_SPACE" in reason for reason in report["reasons"])
    assert any("PIGEON" in reason for reason in report["reasons"])
    assert gcp_world.client.bucket(landing).get_blob(file_name(3)) is None
    assert len(gcp_world.runs()) == runs_before


def test_a_duplicate_delivery_starts_one_run_and_archives_once(gcp_world: GcpWorld) -> None:
    landing, archive = gcp_world.settings.landing.container, gcp_world.settings.archive.container
    blob = upload(gcp_world.client, landing, file_name(4), csv_bytes())
    event = finalized_event(blob)

    delivered(gcp_world, event, "binary")
    delivered(gcp_world, event, "structured")

    prefix = "order_tracking/2024/04/04/"
    assert [b.name for b in gcp_world.client.list_blobs(archive, prefix=prefix)] == [archive_path(4)]
    assert len(runs_of(gcp_world, f"gs://{archive}/{archive_path(4)}")) == 1
    # The redelivery asked again with the same token, so Databricks answered with the same run.
    assert gcp_world.run_now_tokens().count(token_of(event)) == 2


def test_an_overwritten_object_is_handled_as_a_new_file(gcp_world: GcpWorld) -> None:
    landing, archive = gcp_world.settings.landing.container, gcp_world.settings.archive.container
    first_data, second_data = csv_bytes([tracking_row(1)]), csv_bytes([tracking_row(1), tracking_row(2)])
    first = upload(gcp_world.client, landing, file_name(5), first_data)
    delivered(gcp_world, finalized_event(first))

    second = upload(gcp_world.client, landing, file_name(5), second_data)
    assert second.generation != first.generation
    delivered(gcp_world, finalized_event(second))

    second_path = version_qualified(archive_path(5), str(second.generation))
    bucket = gcp_world.client.bucket(archive)
    assert bucket.blob(archive_path(5)).download_as_bytes() == first_data
    assert bucket.blob(second_path).download_as_bytes() == second_data
    assert len(runs_of(gcp_world, f"gs://{archive}/{archive_path(5)}")) == 1
    assert len(runs_of(gcp_world, f"gs://{archive}/{second_path}")) == 1


def test_a_late_event_for_a_replaced_generation_leaves_the_new_one_alone(gcp_world: GcpWorld) -> None:
    landing, archive = gcp_world.settings.landing.container, gcp_world.settings.archive.container
    first = upload(gcp_world.client, landing, file_name(6), csv_bytes([tracking_row(1)]))
    second_data = csv_bytes([tracking_row(1), tracking_row(2)])
    second = upload(gcp_world.client, landing, file_name(6), second_data)

    delivered(gcp_world, finalized_event(first))

    still = gcp_world.client.bucket(landing).get_blob(file_name(6))
    assert still is not None
    assert still.generation == second.generation
    assert gcp_world.client.bucket(archive).get_blob(archive_path(6)) is None
    delivered(gcp_world, finalized_event(second))
    assert gcp_world.client.bucket(archive).blob(archive_path(6)).download_as_bytes() == second_data
    assert len(runs_of(gcp_world, f"gs://{archive}/{archive_path(6)}")) == 1


def test_an_object_outside_the_landing_bucket_is_ignored_with_a_warning(gcp_world: GcpWorld) -> None:
    other = f"elsewhere-{gcp_world.settings.landing.container}"
    gcp_world.store.create_buckets(other)
    blob = upload(gcp_world.client, other, file_name(7), csv_bytes())
    event = finalized_event(blob)
    runs_before = len(gcp_world.runs())

    delivered(gcp_world, event)

    # A GCS trigger names one bucket: every upload there would be left alone, so an alert must see it.
    [line] = [line for line in log_lines(gcp_world) if line.get("event_id") == event["id"]]
    assert (line["severity"], line["status"]) == ("WARNING", "ignored")
    assert "FILEGATE_LANDING" in line["reasons"][0]

    assert gcp_world.client.bucket(other).get_blob(file_name(7)) is not None
    assert (
        list(gcp_world.client.list_blobs(gcp_world.settings.archive.container, prefix="order_tracking/2024/04/07/"))
        == []
    )
    assert len(gcp_world.runs()) == runs_before


def test_a_failed_run_now_answers_500_and_the_redelivery_finishes_the_job(gcp_world: GcpWorld) -> None:
    landing, archive = gcp_world.settings.landing.container, gcp_world.settings.archive.container
    blob = upload(gcp_world.client, landing, file_name(8), csv_bytes())
    event = finalized_event(blob)
    # A 400 (say, the job was redeployed under a new id) is not retried by the SDK, so the function
    # fails at once, after the file was archived; it still fails the delivery, because the archived
    # file needs its run and only a redelivery can start it.
    gcp_world.jobs.inject(Fault("run-now", status=400, error_code="INVALID_PARAMETER_VALUE"))

    status, _ = send(gcp_world.url, event)

    assert status == 500
    # Cloud Logging takes a severity only from a JSON line: the failure is an ERROR an alert sees.
    assert any(
        line["severity"] == "ERROR" and "but its run did not start" in line["message"] for line in log_lines(gcp_world)
    )
    assert gcp_world.client.bucket(archive).get_blob(archive_path(8)) is not None
    assert runs_of(gcp_world, f"gs://{archive}/{archive_path(8)}") == []
    delivered(gcp_world, event)
    assert len(runs_of(gcp_world, f"gs://{archive}/{archive_path(8)}")) == 1


def test_the_scheduled_sweep_archives_a_file_whose_event_never_came(gcp_sweeper: GcpWorld) -> None:
    landing, archive = gcp_sweeper.settings.landing.container, gcp_sweeper.settings.archive.container
    upload(gcp_sweeper.client, landing, file_name(20), csv_bytes())  # no event: only the sweep finds it

    delivered(gcp_sweeper, scheduler_tick(PROJECT))

    assert gcp_sweeper.client.bucket(archive).get_blob(archive_path(20)) is not None
    assert list(gcp_sweeper.client.list_blobs(landing)) == []
    assert len(runs_of(gcp_sweeper, f"gs://{archive}/{archive_path(20)}")) == 1


def test_a_sweep_that_leaves_work_answers_500_and_the_next_tick_finishes_it(gcp_sweeper: GcpWorld) -> None:
    landing, archive = gcp_sweeper.settings.landing.container, gcp_sweeper.settings.archive.container
    upload(gcp_sweeper.client, landing, file_name(21), csv_bytes())
    gcp_sweeper.jobs.inject(Fault("run-now", status=400, error_code="INVALID_PARAMETER_VALUE"))

    status, _ = send(gcp_sweeper.url, scheduler_tick(PROJECT))

    assert status == 500
    assert any(
        line["severity"] == "ERROR" and "archived but their run did not start" in line["message"]
        for line in log_lines(gcp_sweeper)
    )
    assert runs_of(gcp_sweeper, f"gs://{archive}/{archive_path(21)}") == []
    delivered(gcp_sweeper, scheduler_tick(PROJECT))
    assert len(runs_of(gcp_sweeper, f"gs://{archive}/{archive_path(21)}")) == 1


def test_a_module_left_out_of_the_build_stops_the_served_function_as_it_would_the_deployed_one(
    gcs_emulator: GcsEmulator, function_source: Path, tmp_path: Path
) -> None:
    # The virtualenv holds the checkout as an editable install: its import hook handed the served function
    # any module the build lacked, so every test here passed with a package that fails to start deployed.
    lacking = tmp_path / "gcp_function"
    shutil.copytree(function_source, lacking)
    (lacking / "filegate" / "sweep.py").unlink()  # main.py imports it

    with (
        pytest.raises(EmulatorError, match="exited"),
        served_function("on_object_finalized", gcs_emulator, lacking, tmp_path),
    ):
        pass

    assert "No module named 'filegate.sweep'" in (tmp_path / "function.log").read_text()


def test_a_malformed_event_is_not_retried_and_its_warning_names_the_object_left_in_landing(gcp_world: GcpWorld) -> None:
    landing = gcp_world.settings.landing.container
    blob = upload(gcp_world.client, landing, file_name(9), csv_bytes())
    event = finalized_event(blob)
    del event["data"]["size"]

    delivered(gcp_world, event)

    [line] = [line for line in log_lines(gcp_world) if line.get("event_id") == event["id"]]
    assert line["severity"] == "WARNING"
    assert line["reasons"][0].startswith("malformed event:")
    # The event id names nothing a person can look up in a bucket: the line says which object it was about.
    assert line["source"] == f"{landing}/{file_name(9)}"
    assert gcp_world.client.bucket(landing).get_blob(file_name(9)) is not None
