"""The events the clouds send about a committed object, built from what a listing shows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from filegate.events import AZURE, BLOB_CREATED, GCS, GCS_FINALIZED

# The Azure SDK uploads in one Put Blob up to this size, and in blocks (Put Block List) above it.
SINGLE_PUT_BYTES = 64 * 1024 * 1024
_LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class StoredObject:
    """A committed object as a listing shows it: what an event about its creation carries."""

    container: str
    path: str
    size: int
    version: str
    modified: datetime
    content_type: str = ""
    url: str = ""
    blob_type: str = "BlockBlob"
    etag: str = ""
    metageneration: str = "1"
    md5_hash: str = ""
    crc32c: str = ""
    created: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.container}/{self.path}"


@dataclass(frozen=True)
class Event:
    """One event about one object version; `body` is the Event Grid event or the structured CloudEvent."""

    id: str
    type: str
    container: str
    path: str
    version: str
    body: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.container}/{self.path}"


def blob_created_event(obj: StoredObject, account: str, sequencer: str) -> Event:
    """A `Microsoft.Storage.BlobCreated` event in the Event Grid schema, field for field as Azure sends it."""
    event_id = _event_id(AZURE, obj)
    body: dict[str, Any] = {
        "id": event_id,
        "topic": f"/subscriptions/{_LOCAL_SUBSCRIPTION}/resourceGroups/local/providers/"
        f"Microsoft.Storage/storageAccounts/{account}",
        "subject": f"/blobServices/default/containers/{obj.container}/blobs/{obj.path}",
        "eventType": BLOB_CREATED,
        "eventTime": _event_grid_time(obj.modified),
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {
            # A listing does not say which call committed a blob. This guesses as the Azure SDK uploads
            # (one Put Blob up to 64 MiB, blocks and Put Block List above); both mean "committed", and
            # the core treats them alike, so a wrong guess changes nothing downstream.
            "api": "PutBlob" if obj.size <= SINGLE_PUT_BYTES else "PutBlockList",
            "clientRequestId": str(uuid.uuid5(uuid.NAMESPACE_OID, event_id)),
            "requestId": str(uuid.uuid5(uuid.NAMESPACE_X500, event_id)),
            "eTag": obj.version,
            "contentType": obj.content_type or "application/octet-stream",
            "contentLength": obj.size,
            "blobType": obj.blob_type,
            "url": obj.url,
            "sequencer": sequencer,
            "storageDiagnostics": {"batchId": str(uuid.uuid5(uuid.NAMESPACE_DNS, event_id))},
        },
    }
    return Event(event_id, BLOB_CREATED, obj.container, obj.path, obj.version, body)


def finalized_event(obj: StoredObject, endpoint: str) -> Event:
    """A `google.cloud.storage.object.v1.finalized` CloudEvent (structured form), as Eventarc sends it."""
    event_id = _event_id(GCS, obj)
    created = obj.created or obj.modified
    # In real payloads generation, metageneration and size are JSON strings.
    data: dict[str, Any] = {
        "kind": "storage#object",
        "id": f"{obj.container}/{obj.path}/{obj.version}",
        "selfLink": f"{endpoint}/storage/v1/b/{obj.container}/o/{obj.path}",
        "name": obj.path,
        "bucket": obj.container,
        "generation": obj.version,
        "metageneration": obj.metageneration,
        "contentType": obj.content_type or "application/octet-stream",
        "timeCreated": _rfc3339(created),
        "updated": _rfc3339(obj.modified),
        "storageClass": "STANDARD",
        "timeStorageClassUpdated": _rfc3339(created),
        "size": str(obj.size),
        "md5Hash": obj.md5_hash,
        "crc32c": obj.crc32c,
        "etag": obj.etag,
    }
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"//storage.googleapis.com/projects/_/buckets/{obj.container}",
        "type": GCS_FINALIZED,
        "subject": f"objects/{obj.path}",
        "time": _rfc3339(obj.modified),
        "datacontenttype": "application/json",
        "data": data,
    }
    return Event(event_id, GCS_FINALIZED, obj.container, obj.path, obj.version, body)


def _event_id(kind: str, obj: StoredObject) -> str:
    """One id per object version: a retried delivery carries the same id, as Event Grid's does."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"filegate-watch|{kind}|{obj.key}|{obj.version}"))


def _event_grid_time(moment: datetime) -> str:
    """Event Grid writes seven fractional digits and a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
