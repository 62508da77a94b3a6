"""A test hook, off unless asked for: programmed misbehaviour of the Jobs API, and a record of the requests it got.

The fault tests and benchmarks need a Jobs API that answers 429, stalls, or fails after creating a
run; a user's `python -m local_world jobs-api` must not offer that, so the server has it only when started
with `fault_injection=True` (`--fault-injection` on the command line).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from filegate.errors import FilegateError


class FaultError(FilegateError):
    """A fault request the hook cannot carry out."""


@dataclass(frozen=True)
class Fault:
    """One programmed misbehaviour for the next matching API call.

    `status` None answers normally (after `delay`), 0 drops the connection without an answer. With
    `after_request`, the call is carried out first (a run-now creates its run) and then the fault
    answers instead: the case idempotency tokens exist for.
    """

    endpoint: str = "run-now"
    status: int | None = 500
    delay: float = 0.0
    after_request: bool = False
    retry_after: int | None = None
    error_code: str | None = None
    message: str = "injected fault"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        known = {"endpoint", "status", "delay", "after_request", "retry_after", "error_code", "message"}
        unknown = set(data) - known - {"times"}
        if unknown:
            raise FaultError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def matches(self, endpoint: str) -> bool:
        return self.endpoint in ("*", endpoint)

    def error_body(self) -> dict[str, str]:
        """The answer's body, in the Jobs API's error shape."""
        assert self.status is not None
        default = {429: "RESOURCE_EXHAUSTED", 503: "TEMPORARILY_UNAVAILABLE"}.get(self.status, "INTERNAL_ERROR")
        return {"error_code": self.error_code or default, "message": self.message}


@dataclass
class RecordedRequest:
    """One request the server received, for assertions; `status` is 0 until answered, or if dropped."""

    method: str
    path: str
    endpoint: str
    query: dict[str, str]
    body: Any
    status: int = 0
    time: float = field(default_factory=time.time)


class FaultInjector:
    """Faults waiting for their call, and every request seen so far (tests and benchmarks count them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._requests: list[RecordedRequest] = []

    def inject(self, *faults: Fault, times: int = 1) -> None:
        with self._lock:
            for fault in faults:
                self._faults.extend([fault] * times)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, endpoint: str) -> Fault | None:
        """The first waiting fault for this endpoint, removed from the queue."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(endpoint):
                    self._faults.remove(fault)
                    return fault
        return None

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def requests(self, endpoint: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if endpoint is None or r.endpoint == endpoint]

    def control(self, method: str, path: str, body: Any) -> tuple[int, Any] | None:
        """The `/_local/faults` and `/_local/requests` routes for other processes; None for any other route."""
        if (method, path) == ("POST", "/_local/faults"):
            entries = body.get("faults", [body]) if isinstance(body, dict) else body
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise FaultError("expected a fault object, a list, or {'faults': [...]}")
            for entry in entries:
                self.inject(Fault.from_json(entry), times=int(entry.get("times", 1)))
            return 200, {"pending": [asdict(f) for f in self.pending()]}
        if (method, path) == ("GET", "/_local/faults"):
            return 200, {"pending": [asdict(f) for f in self.pending()]}
        if (method, path) == ("DELETE", "/_local/faults"):
            self.clear()
            return 200, {"pending": []}
        if (method, path) == ("GET", "/_local/requests"):
            return 200, {"requests": [asdict(r) for r in self.requests()]}
        return None
