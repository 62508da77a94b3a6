"""What Eventarc delivers for a GCS upload, built from the object resource the emulator answered with."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any

from google.cloud import storage

from filegate.events import GCS_FINALIZED


def upload(client: storage.Client, bucket: str, name: str, data: bytes) -> storage.Blob:
    """Upload the way a user does; the blob then carries the object resource GCS answered with."""
    blob = client.bucket(bucket).blob(name)
    blob.upload_from_string(data, content_type="text/csv")
    return blob


def finalized_event(blob: storage.Blob, event_id: str | None = None) -> dict[str, Any]:
    """The CloudEvent Eventarc delivers for a finalized object: attributes plus the object resource.

    As in real payloads, `generation`, `metageneration` and `size` are JSON strings.
    """
    resource = blob._properties
    data = {
        "kind": "storage#object",
        "id": f"{blob.bucket.name}/{blob.name}/{blob.generation}",
        "name": blob.name,
        "bucket": blob.bucket.name,
        "generation": str(blob.generation),
        "metageneration": str(blob.metageneration),
        "contentType": blob.content_type,
        "timeCreated": resource["timeCreated"],
        "updated": resource["updated"],
        "storageClass": "STANDARD",
        "size": str(blob.size),
        "md5Hash": blob.md5_hash,
        "crc32c": blob.crc32c,
        "etag": blob.etag,
    }
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4().int)[:16],
        "source": f"//storage.googleapis.com/projects/_/buckets/{blob.bucket.name}",
        "type": GCS_FINALIZED,
        "subject": f"objects/{blob.name}",
        "time": resource["updated"],
        "datacontenttype": "application/json",
        "data": data,
    }


def send(url: str, event: Mapping[str, Any], mode: str = "binary") -> tuple[int, str]:
    """POST a CloudEvent the way Eventarc does: binary (ce-* headers) or structured content mode."""
    if mode == "binary":
        headers = {f"ce-{key}": str(value) for key, value in event.items() if key not in ("data", "datacontenttype")}
        headers["Content-Type"] = str(event.get("datacontenttype", "application/json"))
        body = json.dumps(event["data"]).encode()
    else:
        headers = {"Content-Type": "application/cloudevents+json"}
        body = json.dumps(event).encode()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
