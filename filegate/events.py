"""Events: turn Event Grid, CloudEvents and GCS finalize payloads into one cloud-neutral upload value."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from filegate.errors import InvalidEvent

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
GCS_FINALIZED = "google.cloud.storage.object.v1.finalized"
# Every GCS object event's type begins so (finalized, deleted, archived, metadataUpdated).
GCS_EVENT_PREFIX = "google.cloud.storage.object."
# Every Azure Storage event's type begins so (BlobCreated, BlobDeleted, ...).
AZURE_EVENT_PREFIX = "Microsoft.Storage."
# Only these APIs mean "the blob is completely committed". CreateFile opens an empty file on
# hierarchical-namespace accounts; its data arrives later with FlushWithClose.
COMMITTED_APIS = frozenset({"PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"})

# Which cloud, in one vocabulary: an upload's `store` and a Store's `kind` are AZURE or GCS.
AZURE = "azure"
GCS = "gcs"
# Operators, infra/ and the settings name the clouds by platform (`--target azure|gcp`); TARGETS maps them.
AZURE_TARGET = "azure"
GCP_TARGET = "gcp"
TARGETS = {AZURE_TARGET: AZURE, GCP_TARGET: GCS}
# A GCS finalize event names no account (its source reads `projects/_/buckets/...`): every GCS upload
# carries this placeholder, so an event and the sweep derive the same identity and run token.
GCS_ACCOUNT = "_"

# DOTALL and \Z: a blob name may hold a line break, which `.` and `$` would stop at (or drop, at the end).
_SUBJECT = re.compile(r"^/blobServices/default/containers/(?P<container>[^/]+)/blobs/(?P<path>.+)\Z", re.DOTALL)
_GCS_SOURCE = re.compile(r"^//storage\.googleapis\.com/projects/[^/]+/buckets/(?P<bucket>[^/]+)$")
# `<account>.blob.core.windows.net`, or `<account>.z<NN>.blob.storage.azure.net` for an account on
# Azure DNS zone endpoints (the zone label varies per account).
_AZURE_ACCOUNT_HOST = re.compile(r"^(?P<account>[a-z0-9]{3,24})\.(?:z[0-9]{2}\.)?(blob|dfs)\.")
_TOPIC_ACCOUNT = re.compile(r"/storageAccounts/(?P<account>[^/]+)$", re.IGNORECASE)
# ASCII digits only: str.isdigit() takes a superscript two (which int() refuses) and full-width digits
# (a second spelling of a number, so a second identity).
_DIGITS = re.compile(r"[0-9]+")
MAX_PATH_LENGTH = 1024
# An upload whose event named no version: the core reads the current one before acting.
CURRENT_VERSION = ""
BLOCK_BLOB = "BlockBlob"


@dataclass(frozen=True)
class Upload:
    """A committed object in storage that an event told us about."""

    store: str
    account: str
    container: str
    path: str
    size: int
    version: str
    event_id: str
    content_type: str = ""
    sequencer: str = ""
    api: str = ""
    event_time: str = ""

    @property
    def name(self) -> str:
        """The file name: the last segment of the path."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def identity(self) -> str:
        """What makes this upload unique: where it is and which version of it."""
        return f"{self.store}|{self.account}|{self.container}|{self.path}|{self.version}"


@dataclass(frozen=True)
class Ignored:
    """An event that is not ours to act on, with the reason."""

    reason: str
    event_id: str = ""
    subject: str = ""
    warn: bool = False  # logged as a warning: the file it names stays where it is


def parse_events(payload: Any) -> list[Upload | Ignored]:
    """Parse a single event or an array of them; a malformed element raises InvalidEvent."""
    events = payload if isinstance(payload, list) else [payload]
    if not events:
        raise InvalidEvent("the payload is an empty array")
    return [parse_event(event) for event in events]


def parse_event(event: Any) -> Upload | Ignored:
    """Parse one event in the Event Grid schema, the CloudEvents 1.0 schema or as a GCS CloudEvent."""
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"an event must be a JSON object, got {type(event).__name__}")
    event_type = event.get("eventType", event.get("type"))
    event_id = _text(event, "id", required=False)
    if not isinstance(event_type, str):
        raise InvalidEvent(f"event {event_id or '?'} has no eventType/type string")
    if event_type == GCS_FINALIZED:
        return _parse_gcs(event, event_id)
    if event_type != BLOB_CREATED:
        reason = f"event type {event_type} is neither {BLOB_CREATED} nor {GCS_FINALIZED}"
        return Ignored(reason, event_id, str(event.get("subject", "")))
    return _parse_blob_created(event, event_id)


def _parse_blob_created(event: Mapping[str, Any], event_id: str) -> Upload | Ignored:
    subject = _text(event, "subject")
    found = _SUBJECT.match(subject)
    if not found:
        raise InvalidEvent(f"event {event_id}: subject {subject[:200]!r} is not a blob subject")
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise InvalidEvent(f"event {event_id}: data must be an object")
    api = _text(data, "api")
    if api not in COMMITTED_APIS:
        return Ignored(f"api {api} is not a committed write", event_id, subject)
    blob_type = _text(data, "blobType", required=False)
    if blob_type and blob_type != BLOCK_BLOB:
        # An append blob's only BlobCreated comes when it is created, empty; its data arrives later
        # without an event. Taking it then would reject it as empty, or archive part of it.
        reason = (
            f"a {blob_type}: Filegate takes block blobs, uploaded whole; this one stays in landing, and "
            "`filegate sweep` takes it once it is older than --older-than"
        )
        return Ignored(reason, event_id, subject, warn=True)
    path = found["path"]
    size = _size(data.get("contentLength"), event_id)
    if size == 0 and _looks_like_folder(path):
        return Ignored("zero-byte folder marker", event_id, subject)
    if size == 0 and api == "PutBlob":
        # .NET's BlockBlobClient.OpenWrite puts an empty blob first, then commits the data onto it on the condition
        # that it is still that blob: rejecting it (a delete) made the producer's upload fail. The commit raises its
        # own event; a file that stays empty is rejected by the sweep.
        reason = (
            "a zero-byte Put Blob, as a streamed upload (.NET OpenWrite) begins: its data comes with the next event, "
            "and `filegate sweep` rejects it if it is still empty after --older-than"
        )
        return Ignored(reason, event_id, subject)
    url = _text(data, "url", required=False)
    return Upload(
        store=AZURE,
        account=_azure_account(url, str(event.get("topic", event.get("source", "")))),
        container=found["container"],
        path=_checked_path(_checked_segments(path, event_id), event_id),
        size=size,
        version=_text(data, "eTag").strip('"'),
        event_id=event_id,
        content_type=_text(data, "contentType", required=False),
        sequencer=_text(data, "sequencer", required=False),
        api=api,
        event_time=str(event.get("eventTime", event.get("time", ""))),
    )


def _parse_gcs(event: Mapping[str, Any], event_id: str) -> Upload | Ignored:
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise InvalidEvent(f"event {event_id}: data must be an object")
    bucket = _text(data, "bucket", required=False)
    if not bucket:
        source = _GCS_SOURCE.match(str(event.get("source", "")))
        bucket = source["bucket"] if source else ""
    if not bucket:
        raise InvalidEvent(f"event {event_id}: no bucket in data or source")
    path = _text(data, "name")
    size = _size(data.get("size"), event_id)
    if size == 0 and _looks_like_folder(path):
        return Ignored("zero-byte folder marker", event_id, f"objects/{path}")
    generation = data.get("generation")
    if generation is None:
        # Google's local-development example event names no generation: the core reads the
        # object's current one from the store (CURRENT_VERSION), so the token still names a real version.
        generation = CURRENT_VERSION
    elif (
        isinstance(generation, bool) or not isinstance(generation, str | int) or not _DIGITS.fullmatch(str(generation))
    ):
        raise InvalidEvent(f"event {event_id}: generation must be a number, got {generation!r}")
    return Upload(
        store=GCS,
        account=GCS_ACCOUNT,
        container=bucket,
        path=_checked_path(path, event_id),
        size=size,
        version=str(generation),
        event_id=event_id,
        content_type=_text(data, "contentType", required=False),
        sequencer=str(generation),
        api="finalize",
        event_time=str(event.get("time", data.get("timeCreated", ""))),
    )


def named_object(event: Any) -> str:
    """`container/path` of the object an event names, read as far as it goes ("" when it names none).

    For the log line of an event that does not parse: the object it was about stays where it is, and a
    person needs its name to find it (an event id alone names nothing in the store).
    """
    if not isinstance(event, Mapping):
        return ""
    subject = event.get("subject")
    subject = subject if isinstance(subject, str) else ""
    blob = _SUBJECT.match(subject)
    if blob:
        return f"{blob['container']}/{blob['path']}"[:MAX_PATH_LENGTH]
    data = event.get("data")
    data = data if isinstance(data, Mapping) else {}
    bucket, name = data.get("bucket"), data.get("name")
    if not isinstance(bucket, str):
        source = _GCS_SOURCE.match(str(event.get("source", "")))
        bucket = source["bucket"] if source else ""
    if not isinstance(name, str):
        name = subject.removeprefix("objects/")
    return (f"{bucket}/{name}" if bucket and name else name)[:MAX_PATH_LENGTH]


def _text(source: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = source.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidEvent(f"field {key!r} must be a non-empty string, got {type(value).__name__}")
    return value


def _size(value: Any, event_id: str) -> int:
    """Sizes arrive as numbers (Event Grid) or as strings (GCS)."""
    if isinstance(value, bool):
        raise InvalidEvent(f"event {event_id}: size must be a number, got a boolean")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        size = int(value)
    else:
        raise InvalidEvent(f"event {event_id}: size must be a whole number, got {value!r}")
    if size < 0:
        raise InvalidEvent(f"event {event_id}: size is negative")
    return size


def _looks_like_folder(path: str) -> bool:
    return path.endswith("/") or "." not in path.rsplit("/", 1)[-1]


def _checked_path(path: str, event_id: str) -> str:
    if len(path) > MAX_PATH_LENGTH or "\x00" in path:
        raise InvalidEvent(f"event {event_id}: blob path is not a valid name")
    return path


def _checked_segments(path: str, event_id: str) -> str:
    """Refuse `.` and `..` segments in a blob subject.

    HTTP clients and the service resolve them, so acting on `landing/in/../private/f.csv` would
    move a blob outside the landing location. Azure cannot store such a name as it reads, so
    the event is malformed or forged. (GCS quotes the whole object name, `/` included, and
    resolves nothing: its objects are taken literally.)
    """
    if any(segment in (".", "..") for segment in path.split("/")):
        raise InvalidEvent(f"event {event_id}: blob path {path[:200]!r} has '.' or '..' segments")
    return path


def _azure_account(url: str, topic: str) -> str:
    """Account name from the blob URL's host, or its path on a local emulator (Azurite), else the topic.

    A path names the account only on a host without an account in its name (an IP address or a
    single label, as Azurite's are); on any other host its first segment is the container.
    """
    if url:
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # `https://[bad/...`: the URL cannot be parsed at all
            raise InvalidEvent(f"data.url is not a URL: {exc}") from exc
        hostname = parts.hostname or ""
        host = _AZURE_ACCOUNT_HOST.match(hostname)
        if host:
            return host["account"]
        segments = [s for s in unquote(parts.path).split("/") if s]
        if segments and _is_local_host(hostname):
            return segments[0]
    found = _TOPIC_ACCOUNT.search(topic)
    if found:
        return found["account"]
    raise InvalidEvent("cannot tell the storage account from data.url or topic")


def _is_local_host(hostname: str) -> bool:
    """An IP address or a single-label name (`localhost`, a container's name): where emulators serve."""
    if "." not in hostname:
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def event_stores(payload: Any) -> set[str]:
    """The stores whose events the payload holds, by each event's type as `parse_event` reads it (`eventType`, or
    CloudEvents' `type`); an event of neither (malformed, another service's) names none."""
    events = payload if isinstance(payload, list) else [payload]
    types = [event.get("eventType", event.get("type")) for event in events if isinstance(event, dict)]
    stores = set()
    for kind in types:
        if isinstance(kind, str) and kind.startswith(GCS_EVENT_PREFIX):
            stores.add(GCS)
        elif isinstance(kind, str) and kind.startswith(AZURE_EVENT_PREFIX):
            stores.add(AZURE)
    return stores
