"""The decorated Azure function, called with a real func.EventGridEvent, end to end on Azurite."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import azure.functions as func
import pytest
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum
from azure.functions.timer import TimerRequest
from azure.storage.blob import StandardBlobTier

import function_app
from filegate.azure_storage import AzureBlobStore
from filegate.errors import TransientError
from filegate.settings import Settings
from filegate.sweep import SweepUnfinished
from local_world import ROOT
from local_world.emulators import Azurite
from local_world.inputs import as_cloudevent, blob_created, csv_bytes
from local_world.jobs_api import Fault, LocalJobsServer
from tests.conftest import frozen_in_archive_tier

NAME = "order_tracking_2024_03_05.csv"


@pytest.fixture
def configured(
    monkeypatch: pytest.MonkeyPatch,
    azurite: Azurite,
    azure_settings: Settings,
    jobs_api: LocalJobsServer,
) -> Iterator[Settings]:
    """The app settings a deployment would have, pointing at Azurite and the local Jobs API."""
    env = {
        "FILEGATE_AZURE_STORAGE": azurite.connection_string,
        "FILEGATE_LANDING": str(azure_settings.landing),
        "FILEGATE_ARCHIVE": str(azure_settings.archive),
        "FILEGATE_REJECTED": str(azure_settings.rejected),
        "DATABRICKS_HOST": jobs_api.url,
        "DATABRICKS_TOKEN": "local-test-token",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    function_app._gate.cache_clear()
    yield azure_settings
    function_app._gate.cache_clear()


def event_grid_event(payload: dict[str, object]) -> func.EventGridEvent:
    return func.EventGridEvent(
        id=str(payload["id"]),
        data=payload["data"],
        topic=str(payload["topic"]),
        subject=str(payload["subject"]),
        event_type=str(payload["eventType"]),
        event_time=dt.datetime(2024, 3, 5, 23, 5, tzinfo=dt.UTC),
        data_version="",
    )


def user_function(name: str = "on_blob_created"):  # type: ignore[no-untyped-def]
    builder = getattr(function_app, name)
    return builder.build().get_user_function() if hasattr(builder, "build") else builder


def put(store: AzureBlobStore, azurite: Azurite, settings: Settings, data: bytes) -> func.EventGridEvent:
    path = settings.landing.path(NAME)
    info = store.put(settings.landing.container, path, data, "text/csv", {})
    return event_grid_event(blob_created(settings.landing.container, path, len(data), info.version, port=azurite.port))


def test_the_function_archives_and_triggers_a_run(
    configured: Settings,
    azure_store: AzureBlobStore,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = put(azure_store, azurite, configured, csv_bytes())

    # The Python worker logs at INFO, and every record reaches Application Insights: the storage SDK's
    # request and response headers were two dozen records per file around the one outcome line.
    with caplog.at_level(logging.INFO):
        user_function()(event)

    assert [record.name for record in caplog.records if record.name.split(".")[0] == "azure"] == []
    assert any('"status": "archived"' in record.getMessage() for record in caplog.records), caplog.text

    assert [info.path for info in azure_store.list(configured.archive.container, "")] == [
        f"order_tracking/2024/03/05/{NAME}"
    ]
    [run] = jobs_api.runs()
    assert {p["name"]: p["value"] for p in run["job_parameters"]}["dataset"] == "order_tracking"


def test_a_delivery_of_a_cloudevents_subscription_is_handled_too(
    configured: Settings,
    azure_store: AzureBlobStore,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
) -> None:
    # A subscription made in the portal or with the CLI may use the CloudEvents 1.0 schema: the binding
    # then decodes the body into a func.CloudEvent, whatever the function's annotation says.
    path = configured.landing.path(NAME)
    data = csv_bytes()
    info = azure_store.put(configured.landing.container, path, data, "text/csv", {})
    body = as_cloudevent(blob_created(configured.landing.container, path, len(data), info.version, port=azurite.port))
    event = EventGridEventInConverter.decode(Datum(json.dumps(body), "json"), trigger_metadata=None)
    assert isinstance(event, func.CloudEvent)

    user_function()(event)

    assert [info.path for info in azure_store.list(configured.archive.container, "")] == [
        f"order_tracking/2024/03/05/{NAME}"
    ]
    assert len(jobs_api.runs()) == 1


def test_the_function_lets_a_transient_failure_raise_so_event_grid_retries(
    configured: Settings,
    azure_store: AzureBlobStore,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
) -> None:
    import filegate.jobs

    event = put(azure_store, azurite, configured, csv_bytes())
    jobs_api.inject(Fault(endpoint="*", status=500), times=1000)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(filegate.jobs, "RETRY_TIMEOUT_SECONDS", 2)
        with pytest.raises(TransientError):
            user_function()(event)
        jobs_api.clear_faults()
        user_function()(event)

    assert len(jobs_api.runs()) == 1
    assert list(azure_store.list(configured.landing.container, "")) == []


def test_a_blob_in_the_archive_tier_is_answered_and_left_in_landing_until_it_is_rehydrated(
    configured: Settings,
    azure_store: AzureBlobStore,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Its bytes cannot be read (409 BlobArchived) until a person sets its tier: raising made Event Grid
    # retry for a day and then dead-letter it, and every sweep fail on it, with nothing saying why.
    path = configured.landing.path(NAME)
    data = csv_bytes()
    blob = frozen_in_archive_tier(azurite, configured.landing.container, path, data)
    version = str(blob.get_blob_properties().etag).strip('"')
    event = event_grid_event(blob_created(configured.landing.container, path, len(data), version, port=azurite.port))

    assert user_function()(event) is None

    assert [info.path for info in azure_store.list(configured.landing.container, "")] == [path]
    assert list(azure_store.list(configured.rejected.container, "")) == []
    assert jobs_api.runs() == []
    assert "Archive access tier" in caplog.text
    assert "left in landing" in caplog.text
    blob.set_standard_blob_tier(StandardBlobTier.HOT)  # Azurite rehydrates at once; Azure takes hours
    user_function()(event)
    assert [info.path for info in azure_store.list(configured.archive.container, "")] == [
        f"order_tracking/2024/03/05/{NAME}"
    ]
    assert len(jobs_api.runs()) == 1


def test_a_malformed_event_is_dropped_without_raising(configured: Settings) -> None:
    event = func.EventGridEvent(
        id="bad-1",
        data={"api": "PutBlob"},
        topic="t",
        subject="/blobServices/default/containers/x/blobs/y.csv",
        event_type="Microsoft.Storage.BlobCreated",
        event_time=None,
        data_version="",
    )

    assert user_function()(event) is None


@pytest.fixture
def lost_upload(configured: Settings, azure_store: AzureBlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload whose event never reaches the function, and a sweep that takes files however young."""
    monkeypatch.setenv("FILEGATE_SWEEP_OLDER_THAN_MINUTES", "0")
    azure_store.put(configured.landing.container, configured.landing.path(NAME), csv_bytes(), "text/csv", {})


@pytest.mark.usefixtures("lost_upload")
def test_the_timer_sweeps_a_file_whose_event_never_came(
    configured: Settings, azure_store: AzureBlobStore, jobs_api: LocalJobsServer
) -> None:
    assert user_function("sweep")(TimerRequest(past_due=True)) is None

    assert [info.path for info in azure_store.list(configured.archive.container, "")] == [
        f"order_tracking/2024/03/05/{NAME}"
    ]
    assert list(azure_store.list(configured.landing.container, "")) == []
    assert len(jobs_api.runs()) == 1


@pytest.mark.usefixtures("lost_upload")
def test_a_sweep_that_leaves_work_fails_its_invocation_and_the_next_one_finishes_it(
    configured: Settings, azure_store: AzureBlobStore, jobs_api: LocalJobsServer
) -> None:
    jobs_api.inject(Fault("run-now", status=400, error_code="INVALID_PARAMETER_VALUE"))

    with pytest.raises(SweepUnfinished, match="archived but their run did not start"):
        user_function("sweep")(TimerRequest())
    assert jobs_api.runs() == []

    user_function("sweep")(TimerRequest())

    assert len(jobs_api.runs()) == 1
    assert len(list(azure_store.list(configured.archive.container, ""))) == 1


def indexed(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """What the worker hands the host when it indexes the app: each function's bindings."""
    script = (
        "import json, function_app\n"
        "print(json.dumps([f.get_bindings_dict() for f in function_app.app.get_functions()], default=str))"
    )
    base = {key: value for key, value in os.environ.items() if not key.startswith("FILEGATE_")}
    return subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=ROOT, env={**base, **env}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_the_host_indexes_the_timer_with_the_configured_schedule_or_the_hourly_default() -> None:
    def schedules(env: dict[str, str]) -> list[str]:
        done = indexed(env)
        assert done.returncode == 0, done.stderr
        bindings = [binding for entry in json.loads(done.stdout) for binding in entry["bindings"]]
        return [binding["schedule"] for binding in bindings if binding["type"] == "timerTrigger"]

    assert schedules({}) == ["0 17 * * * *"]
    assert schedules({"FILEGATE_SWEEP_SCHEDULE": "0 */15 * * * *"}) == ["0 */15 * * * *"]


def test_a_malformed_schedule_leaves_both_functions_loaded_on_the_default_with_an_error() -> None:
    done = indexed({"FILEGATE_SWEEP_SCHEDULE": "*/15 * * * *"})

    assert done.returncode == 0, done.stderr
    assert [entry["bindings"][0]["type"] for entry in json.loads(done.stdout)] == ["eventGridTrigger", "timerTrigger"]
    assert json.loads(done.stdout)[1]["bindings"][0]["schedule"] == "0 17 * * * *"
    assert "FILEGATE_SWEEP_SCHEDULE must be an NCRONTAB expression of six fields" in done.stderr
    assert "the sweep runs on the default schedule" in done.stderr


def test_the_sweep_stops_starting_files_in_time_for_the_last_one_to_end_before_the_hosts_timeout() -> None:
    from filegate.azure_storage import _COPY_WAIT_SECONDS
    from filegate.jobs import RETRY_TIMEOUT_SECONDS

    hours, minutes, seconds = json.loads((ROOT / "host.json").read_text())["functionTimeout"].split(":")
    timeout = dt.timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds))
    # A file started just before the budget ends: its copy waited on, then the job's lookup, run-now and
    # runs/get each through the SDK's retry window; the host stopping it there fails the pass for nothing.
    one_file = dt.timedelta(seconds=_COPY_WAIT_SECONDS + 3 * RETRY_TIMEOUT_SECONDS)

    assert function_app.SWEEP_BUDGET + one_file + dt.timedelta(seconds=30) <= timeout
