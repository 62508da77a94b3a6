"""`python -m local_world watch`: Event Grid and Eventarc for local storage emulators, which emit no events.

The watcher polls the landing location of Azurite or the GCS emulator, notices committed objects that
are new (a new name, or a new write of a known one: a new generation, or an eTag whose blob was put
again, not only given metadata or appended to) and delivers for each the event the cloud would send:
a `Microsoft.Storage.BlobCreated` event in the Event Grid schema, or a
`google.cloud.storage.object.v1.finalized` CloudEvent. Delivery goes in-process to the core, or over
HTTP to a running Functions host or functions-framework server. Failed deliveries are retried on a
growing schedule, like Event Grid's, up to a bound; then the event is dead-lettered into a file that
`filegate handle` can re-drive. What was delivered is remembered in a state file, so a restarted
watcher does not deliver everything again.

Modules: `_envelopes` (the events), `_sources` (listings), `_transports` (delivery), `_watcher`.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from filegate import exits
from filegate.errors import FilegateError, SettingsError
from filegate.events import AZURE_TARGET, BLOB_CREATED, GCP_TARGET
from filegate.settings import Settings
from local_world.emulators import stop_requested
from local_world.watch._envelopes import Event, blob_created_event, finalized_event
from local_world.watch._sources import AzuriteSource, GcsEmulatorSource, Source, watched_locations
from local_world.watch._transports import (
    DEFAULT_FUNCTION_NAME,
    Deliver,
    DeliveryFailed,
    deliver_cloudevent_binary,
    deliver_event_grid_webhook,
    deliver_in_process,
    describe_outcomes,
    event_grid_webhook_url,
)
from local_world.watch._watcher import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_SCALE,
    EVENT_GRID_RETRY_DELAYS,
    DeliveryReport,
    RetryPolicy,
    Watcher,
)

__all__ = [
    "DEFAULT_FUNCTION_NAME",
    "EVENT_GRID_RETRY_DELAYS",
    "AzuriteSource",
    "Deliver",
    "DeliveryFailed",
    "DeliveryReport",
    "Event",
    "GcsEmulatorSource",
    "RetryPolicy",
    "Source",
    "Watcher",
    "blob_created_event",
    "deliver_cloudevent_binary",
    "deliver_event_grid_webhook",
    "deliver_in_process",
    "describe_outcomes",
    "event_grid_webhook_url",
    "finalized_event",
    "main",
    "print_report",
    "watched_locations",
]


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


def _summary(watcher: Watcher) -> str:
    """What a watch did, for its last line."""
    return f"{watcher.delivered} delivered, {len(watcher.dropped)} dead-lettered, {watcher.pending()} pending"


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event Ctrl-C (or SIGTERM) sets, and a KeyboardInterrupt for the second; the earlier handlers after."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop_requested(interrupt_on_second=True)
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


def build_source(target: str, settings: Settings, gcs_endpoint: str) -> Source:
    """What to list: Azurite (FILEGATE_AZURE_STORAGE) or the GCS emulator at `gcs_endpoint`."""
    if target == AZURE_TARGET:
        if not settings.azure_storage:
            raise SettingsError("FILEGATE_AZURE_STORAGE is not set (the Azurite connection string)")
        from filegate.azure_storage import AzureBlobStore

        # From the settings, as the function's store: the archive may live in FILEGATE_AZURE_ARCHIVE_STORAGE's account.
        return AzuriteSource(AzureBlobStore.from_settings(settings))
    if not gcs_endpoint:
        raise SettingsError("no GCS emulator: set STORAGE_EMULATOR_HOST or pass --gcs-endpoint")
    return GcsEmulatorSource(gcs_endpoint)


def build_delivery(target: str, webhook: str, function_name: str, settings: Settings, gcs_endpoint: str) -> Deliver:
    """Where events go: a webhook, or the core in this process, its store on the same emulator the watcher lists."""
    if webhook and urlsplit(webhook).scheme not in ("http", "https"):
        # Taken as given, it dead-lettered every event at its first attempt ("not an HTTP URL").
        raise SettingsError(f"--webhook {webhook} is not an http:// or https:// URL (e.g. http://localhost:7071)")
    if webhook and target == AZURE_TARGET:
        return deliver_event_grid_webhook(event_grid_webhook_url(webhook, function_name))
    if webhook:
        return deliver_cloudevent_binary(webhook)
    from filegate.runtime import build_gate

    if target == AZURE_TARGET:
        from filegate.azure_storage import AzureBlobStore

        gate = build_gate(AzureBlobStore.from_settings(settings), settings)
    else:
        from filegate.gcs_storage import GcsStore

        # The store reads STORAGE_EMULATOR_HOST by itself; --gcs-endpoint must win over it, or the core
        # would look for the file on another emulator (or in the cloud) than the one it was listed on.
        store = GcsStore.from_environment({**os.environ, "STORAGE_EMULATOR_HOST": gcs_endpoint})
        gate = build_gate(store, settings)
    # The checks every first event would make, at start: a misconfiguration is named before any delivery.
    gate.ensure_ready()
    return deliver_in_process(gate)


def main(argv: list[str]) -> int:
    """`python -m local_world watch`: deliver storage events for local emulators until Ctrl-C (or once, with --once)."""
    parser = argparse.ArgumentParser(prog="python -m local_world watch", description=__doc__.split("\n\n")[0])
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
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="on the first start (no state of this storage in --state-dir yet), treat existing objects as old",
    )
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
    # Written so that NaN fails too: an interval of NaN listed without a pause, one of inf only once.
    if not (args.max_attempts >= 1 and 0 <= args.retry_scale < math.inf and 0 < args.interval < math.inf):
        parser.error("--max-attempts must be >= 1, --retry-scale >= 0 and --interval > 0, both finite")
    try:
        settings = Settings.from_env()
        source = build_source(args.target, settings, args.gcs_endpoint)
        deliver = build_delivery(args.target, args.webhook, args.function_name, settings, args.gcs_endpoint)
    except FilegateError as exc:  # settings, a contracts folder that does not load (2), an outage (75)
        return exits.report_failure("python -m local_world watch", exc, try_again="cannot start, try again")
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
    with _stop_on_signals() as stop:
        try:
            return _deliver_once(watcher, stop) if args.once else _deliver_until_stopped(watcher, stop, args.interval)
        except KeyboardInterrupt:
            # A second Ctrl-C stops at once: the delivery under way is abandoned, and its event, not
            # recorded as delivered, is delivered on the next start with the others still pending.
            print(f"interrupted: {_summary(watcher)}", flush=True)
            return exits.INTERRUPTED


def _deliver_once(watcher: Watcher, stop: threading.Event) -> int:
    """--once: list, deliver everything (waiting out retries), exit; 130 when Ctrl-C came first."""
    try:
        watcher.poll()
    except FilegateError as exc:  # the listing itself: a location missing (2), storage unreachable (75)
        return exits.report_failure("python -m local_world watch", exc, try_again="cannot list, try again")
    if not watcher.drain(timeout=float("inf"), stop=stop):
        if stop.is_set():
            print(f"interrupted: {_summary(watcher)}", flush=True)
            return exits.INTERRUPTED
        # Only events whose dead letters cannot be written are left: say which, rather than wait for ever. They are
        # not recorded as delivered, so the next start delivers them again.
        unlettered = ", ".join(event.key for event in watcher.unlettered())
        print(
            f"failed: {_summary(watcher)}; given up on, their dead letters cannot be written to "
            f"{watcher.dead_letter_dir}: {unlettered}",
            flush=True,
        )
        return exits.FAILED
    print(f"done: {_summary(watcher)}", flush=True)
    return exits.FAILED if watcher.dropped else exits.OK


def _deliver_until_stopped(watcher: Watcher, stop: threading.Event, interval: float) -> int:
    """Watch until Ctrl-C, which lets the delivery under way finish and stops before the next one."""
    watcher.run(stop, interval)
    print(f"stopped: {_summary(watcher)}", flush=True)
    return exits.FAILED if watcher.dropped else exits.OK
