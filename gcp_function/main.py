"""Cloud Run functions (gen2) entry points: GCS finalize CloudEvents into Filegate's core; the scheduled sweep."""

from __future__ import annotations

import functools
import json
import logging
from datetime import timedelta
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent

from filegate.gcs_storage import GcsStore
from filegate.ingest import Gate, handle_payload, outcome_log
from filegate.runtime import build_gate
from filegate.settings import Settings
from filegate.sweep import scheduled_sweep


class _CloudLoggingLine(logging.Formatter):
    """Every record as one JSON line with its `severity`, which Cloud Logging reads from a structured line.

    A plain line has no severity, so an alert on warnings or errors would miss a failed delivery (the
    framework's "Exception on /" and its traceback), an unfinished sweep or a file left in landing.
    Each outcome is already such a line.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.name == outcome_log.name:
            return message
        return json.dumps({"severity": record.levelname, "message": message, "logger": record.name}, ensure_ascii=False)


# On the root logger's handlers as they are: with LOG_EXECUTION_ID the framework configured its own before
# importing this file (it adds the execution id to each JSON line), and basicConfig would then do nothing.
_root = logging.getLogger()
if not _root.handlers:
    _root.addHandler(logging.StreamHandler())
for _handler in _root.handlers:
    _handler.setFormatter(_CloudLoggingLine("%(message)s"))
logging.getLogger("filegate").setLevel(logging.INFO)
# Under the sweep function's timeout (infra/gcp: 540 s, the most an event-driven function may have),
# which would stop the sweep mid-file, by what one file may still take once started: a rewrite between
# storage classes (an overdue trigger from the Nearline archive into rejected) waits up to 240 s.
SWEEP_BUDGET = timedelta(minutes=4)


@functools.cache
def gate() -> Gate:
    """Settings, storage client and job trigger: built on the first event, reused by every later one."""
    return build_gate(GcsStore.from_environment(), Settings.from_env())


@functions_framework.cloud_event
def on_object_finalized(cloud_event: CloudEvent) -> None:
    """Hand one `google.cloud.storage.object.v1.finalized` event to the core.

    Failures raise: the answer is a 500 and Eventarc redelivers (deploy with --retry). The core
    converges to the same end state however often an event arrives.
    """
    # The same envelope `filegate handle` reads from a file: CloudEvent attributes plus `data`.
    payload: dict[str, Any] = {**cloud_event.get_attributes(), "data": cloud_event.get_data()}
    handle_payload(gate(), payload)


@functions_framework.cloud_event
def on_sweep_tick(cloud_event: CloudEvent) -> None:
    """Cloud Scheduler's tick (a Pub/Sub message, its content unused): finish what lost events left.

    Landing files older than FILEGATE_SWEEP_OLDER_THAN_MINUTES, archived files without a run, and
    pipeline batches, as `filegate sweep` does. Work left unfinished raises (a 500, logged as an error);
    the tick is not redelivered, and the next one tries again.
    """
    logging.getLogger("filegate.sweep").info("sweep: tick %s", cloud_event["id"])
    scheduled_sweep(gate(), SWEEP_BUDGET)
