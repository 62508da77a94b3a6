"""`filegate watch`: Event Grid and Eventarc for local storage emulators, which emit no events of their own.

The watcher polls the landing location of Azurite or the GCS emulator, notices committed objects that
are new (a new name, or a new eTag/generation of a known name) and delivers for each the event the
cloud would send: a `Microsoft.Storage.BlobCreated` event in the Event Grid schema, or a
`google.cloud.storage.object.v1.finalized` CloudEvent. Delivery goes in-process to the core, or over
HTTP to a running Functions host or functions-framework server. Failed deliveries are retried on a
growing schedule, like Event Grid's, up to a bound; then the event is dead-lettered into a file that
`filegate handle` can re-drive. What was delivered is remembered in a state file, so a restarted
watcher does not deliver everything again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from filegate.errors import FilegateError, SettingsError
from filegate.events import AZURE, BLOB_CREATED, GCS, GCS_FINALIZED
from filegate.settings import Location, Settings

if TYPE_CHECKING:
    from filegate.ingest import Gate, Outcome

log = logging.getLogger("filegate.watch")

AZURE_TARGET = "azure"
GCP_TARGET = "gcp"
DEFAULT_FUNCTION_NAME = "on_blob_created"
EVENT_GRID_WEBHOOK_PATH = "/runtime/webhooks/eventgrid"
# Event Grid's own schedule for the first retries (seconds). Locally it is compressed by
# `retry_scale`: nobody wants to wait ten minutes to see a fixed bug pick a file up.
EVENT_GRID_RETRY_DELAYS = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0)
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_RETRY_SCALE = 0.1
# Event Grid does not retry these answers: the request itself is wrong, a retry cannot fix it.
NOT_RETRIED = frozenset({400, 401, 403, 413})
# Event Grid waits 30 s for a webhook's answer before it counts the delivery as failed.
DELIVERY_TIMEOUT_SECONDS = 30.0
# The Azure SDK uploads in one Put Blob up to this size, and in blocks (Put Block List) above it.
_SINGLE_PUT_BYTES = 64 * 1024 * 1024
_LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
_STATE_FORMAT = 1


class DeliveryFailed(FilegateError):
    """A delivery did not succeed; `retry` says whether Event Grid would try again."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


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


class Source(Protocol):
    """Where objects are listed and what their creation events look like."""

    description: str

    def list_objects(self, location: Location) -> Iterator[StoredObject]:
        """Committed objects under a location."""
        ...

    def event_for(self, obj: StoredObject, sequencer: str) -> Event:
        """The event the cloud sends when `obj` is committed."""
        ...


Deliver = Callable[[Event], str]
"""Delivers one event; returns a one-line account of the result, raises DeliveryFailed."""


# -- envelopes ---------------------------------------------------------------------------------------------


def _event_id(kind: str, obj: StoredObject) -> str:
    """One id per object version: a retried delivery carries the same id, as Event Grid's does."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"filegate-watch|{kind}|{obj.key}|{obj.version}"))


def _event_grid_time(moment: datetime) -> str:
    """Event Grid writes seven fractional digits and a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
            "api": "PutBlob" if obj.size <= _SINGLE_PUT_BYTES else "PutBlockList",
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


# -- sources -----------------------------------------------------------------------------------------------


class AzuriteSource:
    """Blob listings of an Azure storage account (Azurite locally) and BlobCreated events."""

    def __init__(self, connection: str) -> None:
        from azure.storage.blob import BlobServiceClient

        if connection.startswith(("http://", "https://")):
            from azure.identity import DefaultAzureCredential

            self._service = BlobServiceClient(connection, credential=DefaultAzureCredential())
        else:
            self._service = BlobServiceClient.from_connection_string(connection)
        self.account = str(self._service.account_name)
        self.description = f"Azure storage {self._service.url.rstrip('/')}"

    def list_objects(self, location: Location) -> Iterator[StoredObject]:
        container = self._service.get_container_client(location.container)
        for item in container.list_blobs(name_starts_with=location.prefix or None):
            blob_type = getattr(item.blob_type, "value", item.blob_type)
            yield StoredObject(
                container=location.container,
                path=str(item.name),
                size=int(item.size),
                version=str(item.etag).strip('"'),
                modified=item.last_modified,
                content_type=str(item.content_settings.content_type or ""),
                url=container.get_blob_client(str(item.name)).url,
                blob_type=str(blob_type or "BlockBlob"),
                created=item.creation_time,
            )

    def event_for(self, obj: StoredObject, sequencer: str) -> Event:
        return blob_created_event(obj, self.account, sequencer)


class GcsEmulatorSource:
    """Object listings of the GCS emulator (or of Cloud Storage) and finalize CloudEvents."""

    def __init__(self, endpoint: str, project: str = "local") -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.endpoint = endpoint.rstrip("/")
        self._client = storage.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.endpoint},
        )
        self.description = f"GCS emulator {self.endpoint}"

    def list_objects(self, location: Location) -> Iterator[StoredObject]:
        for blob in self._client.list_blobs(location.container, prefix=location.prefix or None):
            modified = blob.updated or blob.time_created or datetime.now(UTC)
            yield StoredObject(
                container=location.container,
                path=str(blob.name),
                size=int(blob.size or 0),
                version=str(blob.generation),
                modified=modified,
                content_type=str(blob.content_type or ""),
                etag=str(blob.etag or ""),
                metageneration=str(blob.metageneration or 1),
                md5_hash=str(blob.md5_hash or ""),
                crc32c=str(blob.crc32c or ""),
                created=blob.time_created,
            )

    def event_for(self, obj: StoredObject, sequencer: str) -> Event:
        return finalized_event(obj, self.endpoint)


# -- deliveries --------------------------------------------------------------------------------------------


def describe_outcomes(outcomes: Iterable[Outcome]) -> str:
    """One line for what the core did with a delivery."""
    parts = []
    for outcome in outcomes:
        text = outcome.status
        if outcome.run_id is not None:
            text += f", run {outcome.run_id}"
        if outcome.reasons:
            text += f" ({'; '.join(outcome.reasons)})"
        parts.append(text)
    return " | ".join(parts) or "no outcome"


def deliver_in_process(gate: Gate, sink: Callable[[Event, list[Outcome]], None] | None = None) -> Deliver:
    """Hand events to the core in this process, as the function adapter would."""
    from filegate.ingest import handle_payload

    def deliver(event: Event) -> str:
        try:
            outcomes = handle_payload(gate, event.body)
        except Exception as exc:
            # In the cloud the function fails, the host answers 500, and Event Grid retries.
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
        if sink is not None:
            sink(event, outcomes)
        return describe_outcomes(outcomes)

    return deliver


def event_grid_webhook_url(base: str, function_name: str = DEFAULT_FUNCTION_NAME) -> str:
    """The Functions host's Event Grid webhook; a bare host URL gets the path and function name added."""
    parts = urlsplit(base)
    if parts.path in ("", "/"):
        return f"{base.rstrip('/')}{EVENT_GRID_WEBHOOK_PATH}?functionName={function_name}"
    return base


def deliver_event_grid_webhook(url: str, timeout: float = DELIVERY_TIMEOUT_SECONDS) -> Deliver:
    """POST events to a Functions host the way Event Grid does: a JSON array, `aeg-event-type: Notification`."""

    def deliver(event: Event) -> str:
        headers = {
            "Content-Type": "application/json",
            "aeg-event-type": "Notification",
            "aeg-subscription-name": "FILEGATE-WATCH",
            "aeg-delivery-count": "0",
            "aeg-data-version": str(event.body.get("dataVersion", "")),
            "aeg-metadata-version": "1",
        }
        return _post(url, json.dumps([event.body]).encode(), headers, timeout)

    return deliver


def deliver_cloudevent_binary(url: str, timeout: float = DELIVERY_TIMEOUT_SECONDS) -> Deliver:
    """POST a CloudEvent in binary mode (`ce-*` headers, `data` as the body), as Eventarc does."""

    def deliver(event: Event) -> str:
        attributes = {k: v for k, v in event.body.items() if k not in ("data", "datacontenttype")}
        headers = {f"ce-{name}": str(value) for name, value in attributes.items()}
        headers["Content-Type"] = str(event.body.get("datacontenttype", "application/json"))
        return _post(url, json.dumps(event.body["data"]).encode(), headers, timeout)

    return deliver


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> str:
    if urlsplit(url).scheme not in ("http", "https"):
        raise DeliveryFailed(f"not an HTTP URL: {url}", retry=False)
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip()
        message = f"HTTP {exc.code}{': ' + detail if detail else ''}"
        raise DeliveryFailed(message, retry=exc.code not in NOT_RETRIED) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(f"no answer from {url}: {reason}") from exc


# -- the watcher -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a failed delivery is tried again."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    delays: tuple[float, ...] = EVENT_GRID_RETRY_DELAYS
    scale: float = DEFAULT_RETRY_SCALE

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the n-th failed attempt."""
        index = min(failed_attempts, len(self.delays)) - 1
        return self.delays[max(index, 0)] * self.scale


@dataclass
class _Pending:
    event: Event
    due: float
    attempts: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class DeliveryReport:
    """What happened to one delivery attempt, for whoever is watching the watcher."""

    event: Event
    attempt: int
    delivered: bool
    detail: str
    final: bool
    retry_in: float | None = None
    dead_letter: Path | None = None


@dataclass
class _State:
    source: str
    delivered: dict[str, str] = field(default_factory=dict)
    sequence: int = 0


class Watcher:
    """Polls locations of one source and delivers an event per new object version, at least once."""

    def __init__(
        self,
        source: Source,
        locations: Iterable[Location],
        deliver: Deliver,
        state_dir: Path,
        *,
        policy: RetryPolicy | None = None,
        skip_existing: bool = False,
        listener: Callable[[DeliveryReport], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.locations = tuple(locations)
        self._deliver = deliver
        self.state_dir = Path(state_dir)
        self.policy = policy or RetryPolicy()
        self._listener = listener
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self.dropped: list[Event] = []
        self.delivered = 0
        self._state = self._load_state()
        self._skip_existing = skip_existing and not self._state.delivered

    @property
    def state_file(self) -> Path:
        return self.state_dir / "delivered.json"

    @property
    def dead_letter_dir(self) -> Path:
        return self.state_dir / "deadletter"

    def pending(self) -> int:
        """Events not yet delivered (waiting for their first attempt or a retry)."""
        with self._lock:
            return len(self._pending)

    def poll(self) -> int:
        """List the locations once and queue an event for every new object version; how many were queued."""
        seen: dict[str, StoredObject] = {}
        for location in self.locations:
            for obj in self.source.list_objects(location):
                seen[obj.key] = obj
        queued = 0
        with self._lock:
            if self._skip_existing:
                # A new subscription only hears about writes after it exists: what is there now is history.
                self._state.delivered.update({key: obj.version for key, obj in seen.items()})
                self._skip_existing = False
                self._save_state()
                return 0
            # Oldest write first, so that a late file uploaded after a newer one is delivered after it.
            for obj in sorted(seen.values(), key=lambda o: (o.modified, o.path)):
                if self._state.delivered.get(obj.key) == obj.version:
                    continue
                pending = self._pending.get(obj.key)
                if pending is not None and pending.event.version == obj.version:
                    continue
                # A newer version replaces a pending event for an older one: Event Grid would still
                # deliver both, but the older one could only be settled as superseded.
                self._state.sequence += 1
                sequencer = f"{self._state.sequence:048x}"
                self._pending[obj.key] = _Pending(self.source.event_for(obj, sequencer), self._clock())
                queued += 1
            # Forget names that are gone (the function moved them), so the state stays small.
            forgotten = [key for key in self._state.delivered if key not in seen]
            for key in forgotten:
                del self._state.delivered[key]
            if forgotten or queued:
                self._save_state()
        return queued

    def deliver_due(self) -> int:
        """Attempt every event whose time has come; how many were delivered."""
        with self._lock:
            now = self._clock()
            due = sorted((p for p in self._pending.values() if p.due <= now), key=lambda p: p.due)
        delivered = 0
        for pending in due:
            delivered += self._attempt(pending)
        return delivered

    def next_due(self) -> float | None:
        """Seconds until the next attempt is due, or None when nothing is pending."""
        with self._lock:
            if not self._pending:
                return None
            return max(0.0, min(p.due for p in self._pending.values()) - self._clock())

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Poll and deliver until `stop` is set; a storage outage is logged and waited out."""
        while not stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # the emulator may be restarting; keep watching
                log.warning("watch: cannot list %s: %s", self.source.description, exc)
            self.deliver_due()
            wait = interval
            upcoming = self.next_due()
            if upcoming is not None:
                wait = min(wait, upcoming)
            stop.wait(max(wait, 0.05))

    def drain(self, timeout: float) -> bool:
        """Deliver what is pending, waiting out retries, until nothing is left; False on timeout."""
        deadline = self._clock() + timeout
        while True:
            self.deliver_due()
            upcoming = self.next_due()
            if upcoming is None:
                return True
            if self._clock() + upcoming > deadline:
                return False
            time.sleep(max(upcoming, 0.01))

    def _attempt(self, pending: _Pending) -> int:
        event = pending.event
        pending.attempts += 1
        try:
            detail = self._deliver(event)
        except DeliveryFailed as exc:
            pending.last_error = str(exc)
            final = not exc.retry or pending.attempts >= self.policy.max_attempts
            if final:
                letter = self._dead_letter(pending)
                self._report(DeliveryReport(event, pending.attempts, False, str(exc), True, dead_letter=letter))
            else:
                delay = self.policy.delay(pending.attempts)
                with self._lock:
                    pending.due = self._clock() + delay
                self._report(DeliveryReport(event, pending.attempts, False, str(exc), False, retry_in=delay))
            return 0
        with self._lock:
            self._settle(event)
            self.delivered += 1
        self._report(DeliveryReport(event, pending.attempts, True, detail, True))
        return 1

    def _settle(self, event: Event) -> None:
        if self._pending.get(event.key) is not None and self._pending[event.key].event.id == event.id:
            del self._pending[event.key]
        self._state.delivered[event.key] = event.version
        self._save_state()

    def _dead_letter(self, pending: _Pending) -> Path:
        """Give up on an event: keep it in a file `filegate handle` can re-drive, and do not deliver it again."""
        event = pending.event
        self.dead_letter_dir.mkdir(parents=True, exist_ok=True)
        letter = self.dead_letter_dir / f"{event.id}.json"
        letter.write_text(json.dumps(event.body, indent=2), encoding="utf-8")
        with self._lock:
            self._settle(event)
            self.dropped.append(event)
        return letter

    def _report(self, report: DeliveryReport) -> None:
        if self._listener is not None:
            self._listener(report)

    def _load_state(self) -> _State:
        source = self.source.description
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _State(source)
        except (OSError, ValueError) as exc:
            log.warning("watch: ignoring unreadable state file %s: %s", self.state_file, exc)
            return _State(source)
        if data.get("format") != _STATE_FORMAT or data.get("source") != source:
            # Another emulator instance (another port, another account): its names mean nothing here.
            return _State(source)
        return _State(source, dict(data.get("delivered", {})), int(data.get("sequence", 0)))

    def _save_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "format": _STATE_FORMAT,
            "source": self._state.source,
            "sequence": self._state.sequence,
            "delivered": self._state.delivered,
        }
        partial = self.state_file.with_suffix(".tmp")
        partial.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(partial, self.state_file)  # a crash never leaves half a state file


def watched_locations(settings: Settings, include_filegate_locations: bool = False) -> tuple[Location, ...]:
    """The landing location; archive and rejected only when asked (to see the function ignore its own writes)."""
    if include_filegate_locations:
        return (settings.landing, settings.archive, settings.rejected)
    return (settings.landing,)


def print_report(report: DeliveryReport) -> None:
    """The watch command's line per delivery attempt."""
    event = report.event
    name = "BlobCreated" if event.type == BLOB_CREATED else "finalized"
    head = f"{name} {event.key} ({event.version})"
    if report.delivered:
        print(f"delivered {head}: {report.detail}", flush=True)
    elif report.retry_in is not None:
        print(
            f"attempt {report.attempt} of {head} failed: {report.detail}; retry in {report.retry_in:.1f} s", flush=True
        )
    else:
        print(f"gave up on {head} after {report.attempt} attempt(s): {report.detail}", flush=True)
        letter = report.dead_letter
        print(f"  dead-lettered to {letter}; re-drive with `filegate handle {letter}`", flush=True)


# -- command line ------------------------------------------------------------------------------------------


def _build_source(target: str, settings: Settings, gcs_endpoint: str) -> Source:
    if target == AZURE_TARGET:
        if not settings.azure_storage:
            raise SettingsError("FILEGATE_AZURE_STORAGE is not set (the Azurite connection string)")
        return AzuriteSource(settings.azure_storage)
    if not gcs_endpoint:
        raise SettingsError("no GCS emulator: set STORAGE_EMULATOR_HOST or pass --gcs-endpoint")
    return GcsEmulatorSource(gcs_endpoint)


def _build_delivery(target: str, webhook: str, function_name: str, settings: Settings) -> Deliver:
    if webhook and target == AZURE_TARGET:
        return deliver_event_grid_webhook(event_grid_webhook_url(webhook, function_name))
    if webhook:
        return deliver_cloudevent_binary(webhook)
    from filegate.runtime import build_gate

    return deliver_in_process(build_gate(AZURE if target == AZURE_TARGET else GCS, settings))


def main(argv: list[str]) -> int:
    """`filegate watch`: deliver storage events for local emulators until Ctrl-C (or once, with --once)."""
    parser = argparse.ArgumentParser(prog="filegate watch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=(AZURE_TARGET, GCP_TARGET), default=AZURE_TARGET)
    parser.add_argument(
        "--webhook",
        default="",
        help="deliver over HTTP: a Functions host (e.g. http://localhost:7071) or a functions-framework URL; "
        "default: in this process, with the FILEGATE_* and DATABRICKS_* settings",
    )
    parser.add_argument("--function-name", default=DEFAULT_FUNCTION_NAME, help="the Event Grid-triggered function")
    parser.add_argument("--gcs-endpoint", default=os.environ.get("STORAGE_EMULATOR_HOST", ""), help="GCS emulator URL")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between listings")
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".filegate/watch"), help="delivered versions, dead letters"
    )
    parser.add_argument("--skip-existing", action="store_true", help="on first start, treat existing objects as old")
    parser.add_argument(
        "--include-filegate-locations",
        action="store_true",
        help="also deliver events for the archive and rejected locations (the function must ignore them)",
    )
    parser.add_argument("--max-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS, help="attempts before dead-lettering")
    parser.add_argument(
        "--retry-scale",
        type=float,
        default=DEFAULT_RETRY_SCALE,
        help="factor on Event Grid's retry delays (10 s, 30 s, 1 min, ...); 1 waits as long as Azure does",
    )
    parser.add_argument("--once", action="store_true", help="list once, deliver (with retries), then exit")
    args = parser.parse_args(argv)
    if args.max_attempts < 1 or args.retry_scale < 0 or args.interval <= 0:
        parser.error("--max-attempts must be >= 1, --retry-scale >= 0 and --interval > 0")
    try:
        settings = Settings.from_env()
        source = _build_source(args.target, settings, args.gcs_endpoint)
        deliver = _build_delivery(args.target, args.webhook, args.function_name, settings)
    except SettingsError as exc:
        print(f"filegate watch: configuration error: {exc}", file=sys.stderr)
        return 2
    locations = watched_locations(settings, args.include_filegate_locations)
    watcher = Watcher(
        source,
        locations,
        deliver,
        args.state_dir,
        policy=RetryPolicy(max_attempts=args.max_attempts, scale=args.retry_scale),
        skip_existing=args.skip_existing,
        listener=print_report,
    )
    where = args.webhook or "this process"
    print(f"watching {', '.join(map(str, locations))} on {source.description}; delivering to {where}", flush=True)
    if args.once:
        watcher.poll()
        watcher.drain(timeout=float("inf"))
        return 1 if watcher.dropped else 0
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    watcher.run(stop, args.interval)
    print(f"stopped: {watcher.delivered} delivered, {len(watcher.dropped)} dead-lettered, {watcher.pending()} pending")
    return 1 if watcher.dropped else 0
