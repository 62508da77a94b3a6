"""Azure adapter: Event Grid BlobCreated deliveries and the sweep's timer in, the core's decisions out."""

import json
import logging
from datetime import timedelta
from functools import cache

import azure.functions as func

from filegate.azure_storage import AzureBlobStore
from filegate.errors import SettingsError
from filegate.ingest import Gate, handle_payload
from filegate.runtime import build_gate
from filegate.settings import DEFAULT_SWEEP_SCHEDULE, Settings, sweep_schedule
from filegate.sweep import scheduled_sweep

app = func.FunctionApp()
# The worker logs at INFO and Application Insights keeps every record: the storage SDK would add its request
# and response headers, two dozen records per file, around the one outcome line an alert reads.
logging.getLogger("azure").setLevel(logging.WARNING)
# Under host.json's functionTimeout (5 minutes), which would stop the sweep mid-file, by what one file may
# still take once started: a copy waited on for 20 s and three Databricks calls of up to 20 s each.
SWEEP_BUDGET = timedelta(minutes=3)


@cache
def _gate() -> Gate:
    """Settings are read once per worker process; the Databricks SDK loads on the first event."""
    settings = Settings.from_env()
    return build_gate(AzureBlobStore.from_settings(settings), settings)


def _envelope(event: func.EventGridEvent | func.CloudEvent) -> dict[str, object]:
    """The delivery as the core parses it, in the schema the subscription uses.

    The binding hands over a `func.CloudEvent` when the subscription's schema is CloudEvents 1.0 (one
    made in the portal or the CLI may be), whatever the function's annotation says.
    """
    try:
        data = event.get_json()
    except ValueError:
        data = None  # the core reports it as a malformed event instead of failing the delivery
    if isinstance(event, func.CloudEvent):
        return {
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time.isoformat() if event.time else "",
            "data": data,
        }
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
    # Annotated as the binding requires (one class); a CloudEvents subscription's event arrives as a func.CloudEvent.
    # A transient failure raises out of here: the delivery fails and Event Grid retries it.
    outcomes = handle_payload(_gate(), _envelope(event))
    logging.debug("handled %s", json.dumps([outcome.status for outcome in outcomes]))


def _sweep_schedule() -> str:
    """The timer's schedule, read when the host indexes the app (a %FILEGATE_SWEEP_SCHEDULE% reference would
    fail without the setting). A malformed one must not keep `on_blob_created` from loading: the default
    then, with an ERROR (`filegate doctor` names it too)."""
    try:
        return sweep_schedule()
    except SettingsError as exc:
        logging.error("%s; the sweep runs on the default schedule, %s", exc, DEFAULT_SWEEP_SCHEDULE)
        return DEFAULT_SWEEP_SCHEDULE


@app.function_name("sweep")
@app.timer_trigger(arg_name="timer", schedule=_sweep_schedule())
def sweep(timer: func.TimerRequest) -> None:
    """Finish what lost or dead-lettered events left: landing files, archived files without a run, batches.

    The timer is a singleton across the app's instances. Work left unfinished raises, so the invocation
    is recorded as failed; the next one tries it again.
    """
    if timer.past_due:
        logging.info("sweep: past due, running now")
    scheduled_sweep(_gate(), SWEEP_BUDGET)
