"""Inputs built the way production receives them: CSV bytes and real event envelopes."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from filegate.contracts import load_contracts
from filegate.storage import ObjectInfo
from local_world.emulators import gcs_emulator_client
from local_world.watch import blob_created_event, finalized_event

ORDER_TRACKING = load_contracts()["order_tracking"]
COLUMNS = ORDER_TRACKING.column_names
# The moment every built event says the upload happened, so the same call builds the same envelope.
EVENT_TIME = datetime(2024, 3, 5, 23, 5, tzinfo=UTC)
GCS_ENDPOINT = "https://storage.googleapis.com"
_SEQUENCER = "00000000000000000000000000005C1A0000000000000a2b"


def tracking_row(n: int, **overrides: str) -> dict[str, str]:
    row = {
        "tracking_num": f"1Z{n:016d}",
        "order_id": f"ORD-{100000 + n}",
        "status": "IN_TRANSIT",
        "status_ts": f"2024-03-05T{8 + n % 10:02d}:15:00Z",
        "carrier": "UPS",
        "origin_city": "Memphis",
        "origin_country": "US",
        "destination_city": "Denver",
        "destination_postal_code": "80202",
        "destination_country": "US",
        "expected_delivery_date": "2024-03-08",
        "weight_kg": "1.250",
        "is_signature_required": "false",
    }
    row.update(overrides)
    return row


def csv_bytes(
    rows: Iterable[Mapping[str, str]] | None = None,
    header: list[str] | None = None,
    delimiter: str = ",",
    newline: str = "\n",
) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline)
    columns = list(COLUMNS) if header is None else header
    writer.writerow(columns)
    for row in rows if rows is not None else [tracking_row(i) for i in range(5)]:
        writer.writerow([row.get(column, "") for column in columns])
    return buffer.getvalue().encode("utf-8")


def blob_created(
    container: str,
    path: str,
    size: int,
    etag: str,
    account: str = "devstoreaccount1",
    api: str = "PutBlob",
    port: int = 10000,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A Microsoft.Storage.BlobCreated event in the Event Grid schema, as Azurite's account would send it.

    Built by the watcher's builder (one per event kind); each call gets its own id unless given one,
    as each of Event Grid's deliveries of a new upload does.
    """
    stored = ObjectInfo(container, path, size, etag, written=EVENT_TIME.timestamp(), content_type="text/csv")
    body = blob_created_event(stored, account, f"http://127.0.0.1:{port}/{account}", sequencer=_SEQUENCER).body
    body["id"] = event_id or str(uuid.uuid4())
    body["data"]["api"] = api
    return body


def gcs_finalized(bucket: str, name: str, size: int, generation: int, event_id: str | None = None) -> dict[str, Any]:
    """A `google.cloud.storage.object.v1.finalized` CloudEvent as Eventarc delivers it (numbers as strings)."""
    stored = ObjectInfo(bucket, name, size, str(generation), written=EVENT_TIME.timestamp(), content_type="text/csv")
    body = finalized_event(stored, GCS_ENDPOINT).body
    body["id"] = event_id or str(uuid.uuid4())
    return body


def gcs_uploader(endpoint: str) -> Callable[[str, str, bytes], dict[str, Any]]:
    """Uploads with the GCS SDK straight to the emulator and builds the finalize event."""
    client = gcs_emulator_client(endpoint)

    def put(bucket: str, name: str, data: bytes) -> dict[str, Any]:
        blob = client.bucket(bucket).blob(name)
        blob.upload_from_string(data, content_type="text/csv")
        return gcs_finalized(bucket, name, len(data), int(blob.generation))

    return put


def as_cloudevent(event: Mapping[str, Any]) -> dict[str, Any]:
    """The same BlobCreated event in the CloudEvents 1.0 schema."""
    return {
        "specversion": "1.0",
        "type": event["eventType"],
        "source": event["topic"],
        "id": event["id"],
        "time": event["eventTime"],
        "subject": event["subject"],
        "data": event["data"],
    }
