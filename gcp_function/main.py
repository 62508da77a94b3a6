"""Cloud Run functions (gen2) entry point: GCS finalize CloudEvents into Filegate's core."""

from __future__ import annotations

import functools
import logging
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent

from filegate.gcs_storage import GcsStore
from filegate.ingest import Gate, handle_payload
from filegate.runtime import build_gate
from filegate.settings import Settings

# Each outcome is one JSON line on stderr; Cloud Logging turns such lines into structured entries.
logging.basicConfig(format="%(message)s")
logging.getLogger("filegate").setLevel(logging.INFO)


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
