"""The decorated Azure function, called with a real func.EventGridEvent, end to end on Azurite."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import azure.functions as func
import pytest
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum

import function_app
from filegate.azure_storage import AzureBlobStore
from filegate.errors import TransientError
from filegate.settings import Settings
from local_world.emulators import Azurite
from local_world.inputs import as_cloudevent, blob_created, csv_bytes
from local_world.jobs_api import Fault, LocalJobsServer

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


def user_function():  # type: ignore[no-untyped-def]
    builder = function_app.on_blob_created
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
) -> None:
    event = put(azure_store, azurite, configured, csv_bytes())

    user_function()(event)

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
