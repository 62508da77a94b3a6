"""Inputs built the way production receives them: CSV bytes and real event envelopes."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from filegate.contracts import load_contracts

ORDER_TRACKING = load_contracts()["order_tracking"]
COLUMNS = ORDER_TRACKING.column_names


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
    """A Microsoft.Storage.BlobCreated event in the Event Grid schema, as Azurite's account would send it."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "topic": f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
        f"Microsoft.Storage/storageAccounts/{account}",
        "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2024-03-05T23:05:00.0000000Z",
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {
            "api": api,
            "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
            "eTag": etag,
            "contentType": "text/csv",
            "contentLength": size,
            "blobType": "BlockBlob",
            "url": f"http://127.0.0.1:{port}/{account}/{container}/{path}",
            "sequencer": "00000000000000000000000000005C1A0000000000000a2b",
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        },
    }


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
