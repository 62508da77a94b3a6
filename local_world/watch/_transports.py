"""How an event reaches the function: in this process, or over HTTP as Event Grid and Eventarc post it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlsplit

from filegate.errors import FilegateError, SettingsError
from local_world.watch._envelopes import Event

if TYPE_CHECKING:
    from filegate.ingest import Gate, Outcome

DEFAULT_FUNCTION_NAME = "on_blob_created"
EVENT_GRID_WEBHOOK_PATH = "/runtime/webhooks/eventgrid"
# Event Grid does not retry these answers: the request itself is wrong, a retry cannot fix it.
NOT_RETRIED = frozenset({400, 401, 403, 413})
# Event Grid waits 30 s for a webhook's answer before it counts the delivery as failed.
DELIVERY_TIMEOUT_SECONDS = 30.0


class DeliveryFailed(FilegateError):
    """A delivery did not succeed; `retry` says whether Event Grid (or Eventarc) would try again."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


Deliver = Callable[[Event, int], str]
"""Delivers one event on its n-th attempt (1 for the first); returns a one-line account, raises DeliveryFailed."""


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

    def deliver(event: Event, attempt: int) -> str:
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
    """The Functions host's Event Grid webhook; a bare host URL gets the path and function name added.

    The host routes a delivery to a function by `functionName`; a webhook URL without it is
    refused here, rather than every event being dead-lettered after the host's 400.
    """
    parts = urlsplit(base)
    if parts.path in ("", "/"):
        return f"{base.rstrip('/')}{EVENT_GRID_WEBHOOK_PATH}?functionName={function_name}"
    if parts.path.rstrip("/") == EVENT_GRID_WEBHOOK_PATH and not parse_qs(parts.query).get("functionName"):
        raise SettingsError(
            f"the webhook URL {base} names no function: add ?functionName={function_name}, "
            "or pass the host's address alone (e.g. http://localhost:7071) with --function-name"
        )
    return base


def deliver_event_grid_webhook(url: str, timeout: float = DELIVERY_TIMEOUT_SECONDS) -> Deliver:
    """POST events to a Functions host the way Event Grid does: a JSON array, `aeg-event-type: Notification`."""

    def deliver(event: Event, attempt: int) -> str:
        headers = {
            "Content-Type": "application/json",
            "aeg-event-type": "Notification",
            "aeg-subscription-name": "FILEGATE-WATCH",
            # The attempts made before this one, as Event Grid counts them.
            "aeg-delivery-count": str(attempt - 1),
            "aeg-data-version": str(event.body.get("dataVersion", "")),
            "aeg-metadata-version": "1",
        }
        return _post(url, json.dumps([event.body]).encode(), headers, timeout, NOT_RETRIED)

    return deliver


def deliver_cloudevent_binary(url: str, timeout: float = DELIVERY_TIMEOUT_SECONDS) -> Deliver:
    """POST a CloudEvent in binary mode (`ce-*` headers, `data` as the body), as Eventarc does."""

    def deliver(event: Event, attempt: int) -> str:
        attributes = {k: v for k, v in event.body.items() if k not in ("data", "datacontenttype")}
        headers = {f"ce-{name}": _header_value(str(value)) for name, value in attributes.items()}
        headers["Content-Type"] = str(event.body.get("datacontenttype", "application/json"))
        # Eventarc, with the retry policy infra/gcp sets, retries every answer but a 2xx: no code ends it at once.
        return _post(url, json.dumps(event.body["data"]).encode(), headers, timeout, frozenset())

    return deliver


def _header_value(value: str) -> str:
    """An attribute as a `ce-*` header value, as the CloudEvents HTTP binding (3.1.3.2) has it: a space, `"`,
    `%` and every character outside printable ASCII percent-encoded as UTF-8. HTTP headers carry no other
    text: an object under `日本/` could not be sent at all, and was dead-lettered."""
    return "".join(char if "!" <= char <= "~" and char not in '"%' else quote(char, safe="") for char in value)


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float, not_retried: frozenset[int]) -> str:
    if urlsplit(url).scheme not in ("http", "https"):
        raise DeliveryFailed(f"not an HTTP URL: {url}", retry=False)
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip()
        message = f"HTTP {exc.code}{': ' + detail if detail else ''}"
        raise DeliveryFailed(message, retry=exc.code not in not_retried) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(f"no answer from {url}: {reason}") from exc
