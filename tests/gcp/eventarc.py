"""What Eventarc delivers for a GCS upload, built from the object resource the emulator answered with."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any

from google.cloud import storage

from filegate.storage import ObjectInfo
from local_world.inputs import GCS_ENDPOINT
from local_world.watch import finalized_event as watched_finalized_event


def upload(client: storage.Client, bucket: str, name: str, data: bytes) -> storage.Blob:
    """Upload the way a user does; the blob then carries the object resource GCS answered with."""
    blob = client.bucket(bucket).blob(name)
    blob.upload_from_string(data, content_type="text/csv")
    return blob


def finalized_event(blob: storage.Blob, event_id: str | None = None) -> dict[str, Any]:
    """The CloudEvent Eventarc delivers for a finalized object, from the object resource GCS answered with.

    Built by the watcher's builder (one per event kind); each call gets its own id unless given one.
    """
    stored = ObjectInfo(
        container=blob.bucket.name,
        path=blob.name,
        size=int(blob.size),
        version=str(blob.generation),
        written=blob.time_created.timestamp(),
        content_type=blob.content_type or "",
        content_md5=blob.md5_hash or "",
        crc32c=blob.crc32c or "",
    )
    body = watched_finalized_event(stored, GCS_ENDPOINT).body
    body["id"] = event_id or str(uuid.uuid4().int)[:16]
    return body


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


def scheduler_tick(project: str, topic: str = "filegate-sweep") -> dict[str, Any]:
    """The CloudEvent Eventarc delivers for the message Cloud Scheduler publishes to the sweep's topic."""
    message_id = str(uuid.uuid4().int)[:16]
    return {
        "specversion": "1.0",
        "id": message_id,
        "source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "datacontenttype": "application/json",
        "data": {
            "message": {"data": base64.b64encode(b"sweep").decode(), "messageId": message_id},
            "subscription": f"projects/{project}/subscriptions/eventarc-sweep",
        },
    }
