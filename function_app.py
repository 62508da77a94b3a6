"""Azure adapter: an Event Grid BlobCreated delivery in, the core's decision out. No business rules here."""

import json
import logging
from functools import cache

import azure.functions as func

from filegate.azure_storage import AzureBlobStore
from filegate.ingest import Gate, handle_payload
from filegate.runtime import build_gate
from filegate.settings import Settings

app = func.FunctionApp()


@cache
def _gate() -> Gate:
    """Settings are read once per worker process; the Databricks SDK loads on the first event."""
    settings = Settings.from_env()
    return build_gate(AzureBlobStore.from_settings(settings), settings)


def _envelope(event: func.EventGridEvent) -> dict[str, object]:
    try:
        data = event.get_json()
    except ValueError:
        data = None  # the core reports it as a malformed event instead of failing the delivery
    return {
        "id": event.id,
        "subject": event.subject,
        "eventType": event.event_type,
        "topic": event.topic,
        "eventTime": event.event_time.isoformat() if event.event_time else "",
        "dataVersion": event.data_version,
        "data": data,
    }


@app.function_name("on_blob_created")
@app.event_grid_trigger(arg_name="event")
def on_blob_created(event: func.EventGridEvent) -> None:
    # A transient failure raises out of here: the delivery fails and Event Grid retries it.
    outcomes = handle_payload(_gate(), _envelope(event))
    logging.debug("handled %s", json.dumps([outcome.status for outcome in outcomes]))
