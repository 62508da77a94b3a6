"""The sweep: handle files whose events were lost or dead-lettered, through the same path as an event."""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from filegate.batches import batch_dates, sweep_batch
from filegate.errors import FilegateError, SettingsError, StorageError, TransientError
from filegate.events import AZURE, GCS, GCS_ACCOUNT, Upload
from filegate.ingest import Gate, Outcome, handle_upload
from filegate.settings import Settings
from filegate.storage import ObjectInfo, Store

log = logging.getLogger("filegate.sweep")

DEFAULT_OLDER_THAN_MINUTES = 60
DUE = "due"
FAILED = "failed"
# What `filegate sweep --target` accepts, mapped to the store kinds events carry.
TARGETS = {"azure": AZURE, "gcp": GCS}
EXIT_TRANSIENT = 75


@dataclass(frozen=True)
class Sweep:
    """What one pass found: the outcome of every due file, and how many failed for now."""

    outcomes: tuple[Outcome, ...]
    failed: int


def is_folder_marker(info: ObjectInfo) -> bool:
    """Zero-byte `folder/` placeholders: the event parser ignores them, so does the sweep."""
    return info.size == 0 and (info.path.endswith("/") or "." not in info.path.rsplit("/", 1)[-1])


def upload_from_object(store: Store, info: ObjectInfo) -> Upload:
    """The Upload the object's own event would have carried: same identity, hence the same run token."""
    account = str(getattr(store, "account", "")) if store.kind == AZURE else GCS_ACCOUNT
    written = datetime.fromtimestamp(info.created, UTC).isoformat(timespec="seconds") if info.created else ""
    upload = Upload(
        store=store.kind,
        account=account,
        container=info.container,
        path=info.path,
        size=info.size,
        version=info.version,
        event_id="",
        api="sweep",
        event_time=written,
    )
    # Deterministic, so that two sweeps of one file record the same id in the archive metadata.
    return replace(upload, event_id=f"sweep-{hashlib.sha256(upload.identity.encode()).hexdigest()[:24]}")


def due_objects(gate: Gate, older_than: timedelta) -> Iterator[ObjectInfo]:
    """Objects in the landing location whose current version was written longer ago than `older_than`."""
    landing = gate.settings.landing
    cutoff = (gate.clock() - older_than).timestamp()
    for info in gate.store.list(landing.container, landing.prefix):
        # An object without a write time is treated as old: missing it forever is the worse error.
        if info.created <= cutoff and not is_folder_marker(info):
            yield info


def sweep_landing(gate: Gate, older_than: timedelta, *, dry_run: bool = False) -> Iterator[Outcome]:
    """Handle every due file as its event would have been; a transient failure skips only that file.

    Safe alongside live deliveries: every step is conditional on the object's version, so a file the
    sweep and an event both handle ends archived once with one run (the idempotency token is the same).
    """
    for info in due_objects(gate, older_than):
        upload = upload_from_object(gate.store, info)
        source = f"{info.container}/{info.path}"
        if dry_run:
            yield Outcome(DUE, upload.event_id, source, reasons=(f"{info.size} bytes, created {upload.event_time}",))
            continue
        try:
            yield handle_upload(gate, upload)
        except (TransientError, StorageError) as exc:
            # The file stays in the landing location, so the next sweep tries it again; the other
            # files should not wait for this one.
            log.warning("sweep: %s failed: %s", source, exc)
            yield Outcome(FAILED, upload.event_id, source, reasons=(str(exc),))


def sweep_pipeline_batches(gate: Gate) -> Iterator[Outcome]:
    """After the landing pass: finish, re-drive or report each pipeline batch; a failure skips only that batch."""
    for name in sorted(gate.pipelines):
        pipeline = gate.pipelines[name]
        for day in batch_dates(gate, pipeline):
            try:
                outcome = sweep_batch(gate, pipeline, day)
            except (TransientError, StorageError) as exc:
                log.warning("sweep: batch %s %s failed: %s", name, day, exc)
                yield Outcome(FAILED, source=f"{name}/{day.isoformat()}", pipeline=name, reasons=(str(exc),))
                continue
            if outcome is not None:
                yield outcome


def run_sweep(gate: Gate, older_than: timedelta, *, dry_run: bool = False) -> Sweep:
    """Sweep the landing location once, then the pipeline batches, and collect the outcomes."""
    outcomes = tuple(sweep_landing(gate, older_than, dry_run=dry_run))
    if not dry_run:
        outcomes += tuple(sweep_pipeline_batches(gate))
    return Sweep(outcomes, sum(1 for outcome in outcomes if outcome.status == FAILED))


def _default_target(settings: Settings) -> str:
    return "azure" if settings.azure_storage else "gcp"


def main(argv: list[str]) -> int:
    """`filegate sweep`: process files that sat in the landing location longer than a threshold."""
    parser = argparse.ArgumentParser(prog="filegate sweep", description=main.__doc__)
    parser.add_argument(
        "--older-than",
        type=float,
        default=DEFAULT_OLDER_THAN_MINUTES,
        metavar="MINUTES",
        help=f"only files created at least this long ago (default {DEFAULT_OLDER_THAN_MINUTES}); "
        "keep it above Event Grid's first retries so live deliveries go first",
    )
    parser.add_argument(
        "--target",
        choices=sorted(TARGETS),
        help="which cloud's landing location (default: azure when FILEGATE_AZURE_STORAGE is set, else gcp)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the due files without touching them")
    args = parser.parse_args(argv)
    if args.older_than < 0:
        parser.error("--older-than must not be negative")
    from filegate.runtime import build_gate

    try:
        settings = Settings.from_env()
        gate = build_gate(TARGETS[args.target or _default_target(settings)], settings)
        failed = 0
        for outcome in sweep_landing(gate, timedelta(minutes=args.older_than), dry_run=args.dry_run):
            print(outcome.to_json(), flush=True)
            failed += outcome.status == FAILED
        for outcome in () if args.dry_run else sweep_pipeline_batches(gate):
            print(outcome.to_json(), flush=True)
            failed += outcome.status == FAILED
    except SettingsError as exc:
        print(f"filegate sweep: configuration error: {exc}", file=sys.stderr)
        return 2
    except TransientError as exc:
        print(f"filegate sweep: cannot list the landing location, try again: {exc}", file=sys.stderr)
        return EXIT_TRANSIENT
    except FilegateError as exc:
        print(f"filegate sweep: {exc}", file=sys.stderr)
        return 1
    if failed:
        print(f"filegate sweep: {failed} file(s) failed and stay in place; run the sweep again", file=sys.stderr)
        return EXIT_TRANSIENT
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    sys.exit(main(sys.argv[1:]))
