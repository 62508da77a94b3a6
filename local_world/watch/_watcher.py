"""The watcher: poll the sources, queue an event per new object version, deliver it at least once.

Delivery is retried on a growing schedule, like Event Grid's, up to a bound; then the event is
dead-lettered into a file that `filegate handle` can re-drive. What was delivered is remembered in
a state file, so a restarted watcher does not deliver everything again. Nothing that goes wrong in
one round (a listing, a delivery, a listener, saving the state) stops the watching: it is logged
and the next round runs.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from filegate.settings import Location
from filegate.storage import ObjectInfo
from local_world.watch._envelopes import Event, object_key
from local_world.watch._sources import Source
from local_world.watch._transports import Deliver, DeliveryFailed

log = logging.getLogger("local_world.watch")

# Event Grid's own retry schedule (seconds), the last delay repeated: 10 s, 30 s, 1 min, 5 min, 10 min, 30 min,
# 1 h, 3 h, 6 h, then every 12 h. Locally it is compressed by `retry_scale`: nobody wants to wait ten minutes
# to see a fixed bug pick a file up.
EVENT_GRID_RETRY_DELAYS = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0)
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_RETRY_SCALE = 0.1
# 3: a section per source (2: one source's, each name's entry with its size, MD5 and blob type beside the
# version; 1: the version alone). The Azure and GCS watchers share the state folder by default.
_STATE_FORMAT = 3


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
    obj: ObjectInfo
    due: float
    attempts: int = 0
    # Why it was given up on, while its dead letter could not be written: when due, the letter is tried again.
    given_up: str = ""


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
    # Per name, the last version that needs no event any more: delivered, dead-lettered, history, or one
    # the cloud sends no event for (a metadata write, an append).
    delivered: dict[str, ObjectInfo] = field(default_factory=dict)
    sequence: int = 0
    # Whether this source's state was read from the state file: the watcher has listed it before.
    found: bool = False


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
        # A first start is one without this source's state, not one with an empty map: the map empties
        # whenever the function moves every file out of landing, and files that land while the watcher
        # is down must still be delivered on its next start.
        self._skip_existing = skip_existing and not self._state.found
        self._listed_once = False

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
        seen: dict[str, ObjectInfo] = {}
        for location in self.locations:
            for obj in self.source.list_objects(location):
                seen[object_key(obj)] = obj
        queued = 0
        with self._lock:
            if self._skip_existing:
                # A new subscription only hears about writes after it exists: what is there now is history.
                self._state.delivered.update(seen)
                self._skip_existing = False
                self._listed_once = True
                self._save_state()
                return 0
            changed = False
            # Oldest write first, so that a late file uploaded after a newer one is delivered after it.
            for key, obj in sorted(seen.items(), key=lambda item: (item[1].written, item[1].path)):
                known = self._state.delivered.get(key)
                if known is not None and known.version == obj.version:
                    continue
                pending = self._pending.get(key)
                if pending is not None:
                    if pending.obj.version == obj.version or not self.source.sends_event(pending.obj, obj):
                        # No write since the pending event's: it stays about its version. Once it is
                        # settled, the next listing records this version as one without an event.
                        continue
                elif known is not None and not self.source.sends_event(known, obj):
                    self._state.delivered[key] = obj
                    changed = True
                    continue
                # A newer version replaces a pending event for an older one: Event Grid would still
                # deliver both, but the older one could only be settled as superseded.
                self._state.sequence += 1
                sequencer = f"{self._state.sequence:048x}"
                self._pending[key] = _Pending(self.source.event_for(obj, sequencer), obj, self._clock())
                queued += 1
            # Forget names that are gone (the function moved them), so the state stays small.
            forgotten = [key for key in self._state.delivered if key not in seen]
            for key in forgotten:
                del self._state.delivered[key]
            if forgotten or queued or changed or not self._listed_once:
                # Saved after the first listing even when nothing changed: the file says this source was watched.
                self._save_state()
            self._listed_once = True
        return queued

    def deliver_due(self, stop: threading.Event | None = None) -> int:
        """Attempt every event whose time has come, until `stop` is set; how many were delivered."""
        with self._lock:
            now = self._clock()
            due = sorted((p for p in self._pending.values() if p.due <= now), key=lambda p: p.due)
        delivered = 0
        for pending in due:
            # Checked between deliveries, not only between rounds: a backlog must not keep Ctrl-C waiting.
            # What is left stays pending; not in the state as delivered, the next start delivers it.
            if stop is not None and stop.is_set():
                break
            delivered += self._attempt(pending)
        return delivered

    def next_due(self) -> float | None:
        """Seconds until the next attempt is due, or None when nothing is pending."""
        with self._lock:
            if not self._pending:
                return None
            return max(0.0, min(p.due for p in self._pending.values()) - self._clock())

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Poll and deliver until `stop` is set; whatever fails in a round is logged, and the next round runs."""
        while not stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # the emulator may be restarting; keep watching
                log.warning("watch: cannot list %s: %s", self.source.description, exc)
            try:
                self.deliver_due(stop)
            except Exception:  # a bug in one round must not end the watching for good
                log.exception("watch: a delivery round failed; watching on")
            wait = interval
            upcoming = self.next_due()
            if upcoming is not None:
                wait = min(wait, upcoming)
            stop.wait(max(wait, 0.05))

    def drain(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Deliver what is pending, waiting out retries, until nothing is left; False on timeout or on `stop`."""
        stop = stop or threading.Event()
        deadline = self._clock() + timeout
        while not stop.is_set():
            self.deliver_due(stop)
            upcoming = self.next_due()
            if upcoming is None:
                return True
            if len(self.unlettered()) == self.pending():
                return False  # only events given up on whose letters cannot be written: waiting changes nothing
            if self._clock() + upcoming > deadline:
                return False
            stop.wait(max(upcoming, 0.01))
        return False

    def _attempt(self, pending: _Pending) -> int:
        event = pending.event
        if pending.given_up:
            self._give_up(pending, pending.given_up)
            return 0
        pending.attempts += 1
        try:
            detail = self._deliver(event, pending.attempts)
        except Exception as exc:
            if not isinstance(exc, DeliveryFailed):
                # Not the subscriber's answer but a bug on this side (a result callback, say): count
                # it as a failed attempt, so the event is retried rather than lost with the thread.
                log.exception("watch: delivering %s raised", event.key)
                exc = DeliveryFailed(f"{type(exc).__name__}: {exc}")
            final = not exc.retry or pending.attempts >= self.policy.max_attempts
            if final:
                self._give_up(pending, str(exc))
            else:
                delay = self.policy.delay(pending.attempts)
                with self._lock:
                    pending.due = self._clock() + delay
                self._report(DeliveryReport(event, pending.attempts, False, str(exc), False, retry_in=delay))
            return 0
        with self._lock:
            self._settle(pending)
            self.delivered += 1
        self._report(DeliveryReport(event, pending.attempts, True, detail, True))
        return 1

    def _settle(self, pending: _Pending) -> None:
        event = pending.event
        if self._pending.get(event.key) is not None and self._pending[event.key].event.id == event.id:
            del self._pending[event.key]
        self._state.delivered[event.key] = pending.obj
        self._save_state()

    def unlettered(self) -> list[Event]:
        """The events given up on whose dead letters could not be written (kept, the letters tried again)."""
        with self._lock:
            return [pending.event for pending in self._pending.values() if pending.given_up]

    def _give_up(self, pending: _Pending, reason: str) -> None:
        event = pending.event
        try:
            letter = self._dead_letter(pending, reason)
        except OSError as exc:
            # Without its letter the event would be lost, and raising here would stall every other
            # delivery of the round, round after round: keep it, try the letter again later, go on.
            log.error("watch: cannot dead-letter %s into %s: %s; keeping it", event.key, self.dead_letter_dir, exc)
            delay = self.policy.delay(pending.attempts)
            with self._lock:
                pending.given_up = reason
                pending.due = self._clock() + delay
            detail = f"{reason}; its dead letter cannot be written ({exc}): kept, to write it again"
            self._report(DeliveryReport(event, pending.attempts, False, detail, False, retry_in=delay))
            return
        self._report(DeliveryReport(event, pending.attempts, False, reason, True, dead_letter=letter))

    def _dead_letter(self, pending: _Pending, reason: str) -> Path:
        """Give up on an event: keep it in a file `filegate handle` can re-drive, and do not deliver it again."""
        event = pending.event
        self.dead_letter_dir.mkdir(parents=True, exist_ok=True)
        letter = self.dead_letter_dir / f"{event.id}.json"
        letter.write_text(json.dumps(event.body, indent=2), encoding="utf-8")
        # Beside it, why: `filegate deadletters` lists it with the event.
        reason_file = letter.with_suffix(".reason.txt")
        reason_file.write_text(f"{pending.attempts} attempts; last: {reason}\n", encoding="utf-8")
        with self._lock:
            self._settle(pending)
            self.dropped.append(event)
        return letter

    def _report(self, report: DeliveryReport) -> None:
        if self._listener is not None:
            try:
                self._listener(report)
            except Exception:
                log.exception("watch: the delivery listener raised; watching on")

    def _load_state(self) -> _State:
        source = self.source.description
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _State(source)
        except (OSError, ValueError) as exc:
            log.warning("watch: ignoring unreadable state file %s: %s", self.state_file, exc)
            return _State(source)
        # Another emulator instance (another port, another account) has a section of its own, or none.
        section = _sections(data).get(source)
        if not isinstance(section, dict):
            return _State(source)
        try:
            delivered = {key: _known(key, entry) for key, entry in dict(section.get("delivered", {})).items()}
            return _State(source, delivered, int(section.get("sequence", 0)), found=True)
        except (TypeError, ValueError) as exc:
            log.warning("watch: ignoring unreadable state file %s: %s", self.state_file, exc)
            return _State(source)

    def _save_state(self) -> None:
        own = {
            "sequence": self._state.sequence,
            "delivered": {
                key: {"version": obj.version, "size": obj.size, "md5": obj.content_md5, "type": obj.blob_type}
                for key, obj in self._state.delivered.items()
            },
        }
        partial = self.state_file.with_suffix(".tmp")
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # Read again at each save, under a lock: a watcher of other storage on the same folder saving between
            # this one's read and replace would lose its section.
            with self.state_file.with_suffix(".lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                try:
                    sections = _sections(json.loads(self.state_file.read_text(encoding="utf-8")))
                except (FileNotFoundError, ValueError):
                    sections = {}
                data = {"format": _STATE_FORMAT, "sources": {**sections, self._state.source: own}}
                partial.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
                os.replace(partial, self.state_file)  # a crash never leaves half a state file
        except OSError as exc:
            # The state only spares a restarted watcher redeliveries (which the core settles as
            # duplicates): keep delivering from memory rather than stop.
            log.error("watch: cannot save the delivered versions to %s: %s", self.state_file, exc)


def _sections(data: object) -> dict[str, object]:
    """Each source's section of a state file, by source; an older file's one source as its only section."""
    if not isinstance(data, dict):
        return {}
    if data.get("format") == _STATE_FORMAT and isinstance(data.get("sources"), dict):
        return dict(data["sources"])
    if data.get("format") in (1, 2) and isinstance(data.get("source"), str):
        return {data["source"]: data}
    return {}


def _known(key: str, entry: object) -> ObjectInfo:
    """A version as the state file keeps it; one of format 1 (the version alone) has an unknown size, so any
    other version of its name is taken for a write that gets its event, as before."""
    container, _, path = key.partition("/")
    if not isinstance(entry, dict):
        return ObjectInfo(container, path, -1, str(entry))
    return ObjectInfo(
        container,
        path,
        int(entry.get("size", -1)),
        str(entry.get("version", "")),
        content_md5=str(entry.get("md5", "")),
        blob_type=str(entry.get("type", "")),
    )
