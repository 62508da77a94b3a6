"""The events the clouds send about a committed object, built from what a store's listing shows.

The one place that knows what an event carries beyond the object itself: what a listing does not
say (the blob URL, the committing call, the finalize event's metageneration and ETag) is derived here.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from filegate.events import AZURE, BLOB_CREATED, BLOCK_BLOB, GCS, GCS_FINALIZED
from filegate.storage import ObjectInfo

# The Azure SDK uploads in one Put Blob up to this size, and in blocks (Put Block List) above it.
SINGLE_PUT_BYTES = 64 * 1024 * 1024
_LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


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


def object_key(obj: ObjectInfo) -> str:
    """`container/path`: what names an object across its versions."""
    return f"{obj.container}/{obj.path}"


def blob_created_event(obj: ObjectInfo, account: str, endpoint: str, sequencer: str) -> Event:
    """A `Microsoft.Storage.BlobCreated` event in the Event Grid schema, field for field as Azure sends it.

    `endpoint` is the blob service's address (`AzureBlobStore.endpoint`), where the blob's URL starts.
    """
    event_id = _event_id(AZURE, obj)
    body: dict[str, Any] = {
        "id": event_id,
        "topic": f"/subscriptions/{_LOCAL_SUBSCRIPTION}/resourceGroups/local/providers/"
        f"Microsoft.Storage/storageAccounts/{account}",
        "subject": f"/blobServices/default/containers/{obj.container}/blobs/{obj.path}",
        "eventType": BLOB_CREATED,
        "eventTime": _event_grid_time(_written(obj)),
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {
            "api": _committing_api(obj),
            "clientRequestId": str(uuid.uuid5(uuid.NAMESPACE_OID, event_id)),
            "requestId": str(uuid.uuid5(uuid.NAMESPACE_X500, event_id)),
            "eTag": obj.version,
            "contentType": obj.content_type or "application/octet-stream",
            "contentLength": obj.size,
            # As listed; a store that does not say (none in use) is taken for what users upload.
            "blobType": obj.blob_type or BLOCK_BLOB,
            # Encoded as the Azure SDK encodes a blob client's URL.
            "url": f"{endpoint.rstrip('/')}/{quote(obj.container)}/{quote(obj.path, safe='~/')}",
            "sequencer": sequencer,
            "storageDiagnostics": {"batchId": str(uuid.uuid5(uuid.NAMESPACE_DNS, event_id))},
        },
    }
    return Event(event_id, BLOB_CREATED, obj.container, obj.path, obj.version, body)


def _committing_api(obj: ObjectInfo) -> str:
    """The call Azure names in the event: an append or page blob's only event is its creation, a Put Blob."""
    if obj.blob_type not in ("", BLOCK_BLOB):
        return "PutBlob"
    # A listing does not say which call committed a block blob. This guesses as the Azure SDK uploads
    # (one Put Blob up to 64 MiB, blocks and Put Block List above); both mean "committed", and the core
    # treats them alike, so a wrong guess changes nothing downstream.
    return "PutBlob" if obj.size <= SINGLE_PUT_BYTES else "PutBlockList"


def finalized_event(obj: ObjectInfo, endpoint: str) -> Event:
    """A `google.cloud.storage.object.v1.finalized` CloudEvent (structured form), as Eventarc sends it."""
    event_id = _event_id(GCS, obj)
    # Finalizing creates the generation: at that moment it was created and updated, and its metadata
    # is at metageneration 1 (a later metadata patch sends no finalize event).
    written = _rfc3339(_written(obj))
    # In real payloads generation, metageneration and size are JSON strings.
    data: dict[str, Any] = {
        "kind": "storage#object",
        "id": f"{obj.container}/{obj.path}/{obj.version}",
        "selfLink": f"{endpoint}/storage/v1/b/{obj.container}/o/{obj.path}",
        "name": obj.path,
        "bucket": obj.container,
        "generation": obj.version,
        "metageneration": "1",
        "contentType": obj.content_type or "application/octet-stream",
        "timeCreated": written,
        "updated": written,
        "storageClass": "STANDARD",
        "timeStorageClassUpdated": written,
        "size": str(obj.size),
        "md5Hash": obj.content_md5,
        "crc32c": obj.crc32c,
        "etag": _gcs_etag(obj.version),
    }
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"//storage.googleapis.com/projects/_/buckets/{obj.container}",
        "type": GCS_FINALIZED,
        "subject": f"objects/{obj.path}",
        "time": written,
        "datacontenttype": "application/json",
        "data": data,
    }
    return Event(event_id, GCS_FINALIZED, obj.container, obj.path, obj.version, body)


def _event_id(kind: str, obj: ObjectInfo) -> str:
    """One id per object version: a retried delivery carries the same id, as Event Grid's does."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"filegate-watch|{kind}|{object_key(obj)}|{obj.version}"))


def _written(obj: ObjectInfo) -> datetime:
    # A store that does not say when is treated as "just now", the moment the watcher noticed it.
    return datetime.fromtimestamp(obj.written, UTC) if obj.written else datetime.now(UTC)


def _gcs_etag(generation: str) -> str:
    """The ETag GCS gives a generation at metageneration 1: base64 of (generation, metageneration) as a
    protobuf message, as in every real object resource (`CIf3xYem6vMCEAE=` for generation 1635327604259719).

    The emulator answers with the MD5 instead; the event carries what GCS would send.
    """
    if not generation.isdigit():
        return ""
    return base64.b64encode(b"\x08" + _varint(int(generation)) + b"\x10\x01").decode()


def _varint(number: int) -> bytes:
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _event_grid_time(moment: datetime) -> str:
    """Event Grid writes seven fractional digits and a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
