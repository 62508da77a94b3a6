"""The sweep: handle files whose events were lost or dead-lettered, and archived files still without a run (or
whose run Databricks skipped)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

from filegate.archive import marked_file, run_pending_mark
from filegate.batches import open_batch_dates, sweep_batch
from filegate.errors import FilegateError, RunNotStarted, StorageError, TransientError
from filegate.events import Upload
from filegate.exits import needs_fix
from filegate.ingest import (
    RUN_PENDING,
    Gate,
    Outcome,
    handle_upload,
    left_in_landing,
    redrive_archived,
    redrive_cannot_start,
)
from filegate.storage import META_RUN_ID, META_SOURCE, ObjectInfo, Store, noted_skip

log = logging.getLogger("filegate.sweep")

DUE = "due"
FAILED = "failed"
# The reason of a FAILED mark whose note does not name its file: no pass mends it, a person deletes it.
DAMAGED_MARK = "a damaged mark: "


def is_folder_marker(info: ObjectInfo) -> bool:
    """Zero-byte `folder/` placeholders: the event parser ignores them, so does the sweep."""
    return info.size == 0 and (info.path.endswith("/") or "." not in info.path.rsplit("/", 1)[-1])


def upload_from_object(store: Store, info: ObjectInfo) -> Upload:
    """The Upload the object's own event would have carried: same identity, hence the same run token."""
    written = datetime.fromtimestamp(info.written, UTC).isoformat(timespec="seconds") if info.written else ""
    upload = Upload(
        store=store.kind,
        account=store.account,
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


def _always() -> bool:
    return True


def due_objects(gate: Gate, older_than: timedelta, go_on: Callable[[], bool] = _always) -> Iterator[ObjectInfo]:
    """Objects in the landing location whose current version was written longer ago than `older_than`.

    `go_on` is asked before each listed object: False ends the listing there (a scheduled pass's budget).
    """
    landing = gate.settings.landing
    cutoff = (gate.clock() - older_than).timestamp()
    for info in gate.store.list(landing.container, landing.prefix):
        if not go_on():
            return
        # An object without a write time is treated as old: missing it forever is the worse error.
        if info.written <= cutoff and not is_folder_marker(info):
            yield info


def sweep_landing(
    gate: Gate, older_than: timedelta, *, dry_run: bool = False, go_on: Callable[[], bool] = _always
) -> Iterator[Outcome]:
    """Handle every due file as its event would have been; a transient failure skips only that file.

    Safe alongside live deliveries: every step is conditional on the object's version, so a file the
    sweep and an event both handle ends archived once with one run (the idempotency token is the same).
    """
    for info in due_objects(gate, older_than, go_on):
        upload = upload_from_object(gate.store, info)
        source = f"{info.container}/{info.path}"
        if dry_run:
            yield Outcome(DUE, upload.event_id, source, reasons=(f"{info.size} bytes, created {upload.event_time}",))
            continue
        yield _attempt(source, upload.event_id, partial(handle_upload, gate, upload))


def runless_archived(gate: Gate, go_on: Callable[[], bool] = _always) -> Iterator[ObjectInfo]:
    """Archived copies Filegate placed whose run was never recorded, or was skipped by Databricks as it was
    started (`_skipped_run`): work to do, not done files.

    A pipeline's members and triggers have no run of their own; the batch pass finishes those. `go_on`
    is asked before each listed object, as in `due_objects`.
    """
    archive = gate.settings.archive
    for info in gate.store.list(archive.container, archive.prefix):
        if not go_on():
            return
        if _runless(gate, info) or _skipped_run(gate, info) is not None:
            yield info


def marked_runless(
    gate: Gate, go_on: Callable[[], bool] = _always, *, clear: bool = True, cutoff: float | None = None
) -> Iterator[ObjectInfo | Outcome]:
    """The archived files that have a mark (`archive.RUNS_PENDING_FOLDER`) and still no run, or a run Databricks
    skipped, found without listing the archive, so that a pass costs what is pending; marks written after
    `cutoff` (a timestamp) are left to the deliveries that wrote them. A mark that cannot be read is an
    Outcome (FAILED), and so is a damaged one (`DAMAGED_MARK`).

    With `clear`, a mark whose file has its run (the delivery that recorded it could not remove the
    mark), is gone, or is a batch's member is removed; one the store refuses to remove stays (a warning)
    and costs a stat per pass. A file without a run and without a mark (archived by a release before the
    marks) is found by `runless_archived` alone.
    """
    archive = gate.settings.archive
    for mark in gate.store.list(archive.container, archive.path(run_pending_mark(""))):
        if not go_on():
            return
        if cutoff is not None and mark.written > cutoff:
            continue
        source = f"{mark.container}/{mark.path}"
        try:
            path = _marked_path(gate, mark)
            info = gate.store.stat(archive.container, path) if path else None
        except FilegateError as exc:
            log.warning("sweep: the mark %s: %s", source, exc)
            yield Outcome(FAILED, source=source, reasons=(f"the mark, or its file, could not be read: {exc}",))
            continue
        except ValueError as exc:
            # Its file is named nowhere else: only the whole archive's listing finds it, which no pass does.
            reason = (
                f"{DAMAGED_MARK}{exc}; delete it, then run `filegate sweep` (or `filegate reconcile --redrive`), "
                "which lists the whole archive and starts the run of the file it named"
            )
            log.warning("sweep: the mark %s: %s", source, reason)
            yield Outcome(FAILED, source=source, reasons=(reason,))
            continue
        if path is None:
            continue
        if info is not None and (_runless(gate, info) or _skipped_run(gate, info) is not None):
            yield info
        elif clear:
            _unmark(gate, mark)


def _marked_path(gate: Gate, mark: ObjectInfo) -> str | None:
    """The archived file's path a mark names: by its name, or for a hashed one by its note; None for an object
    in the folder that is no mark."""
    archive = gate.settings.archive
    relative = marked_file(archive.relative(mark.path))
    if relative:
        return archive.path(relative)
    if relative is None:
        return None
    note = json.loads(gate.store.read_prefix(mark.container, mark.path, max(mark.size, 1), mark.version))
    named = note.get("archived") if isinstance(note, dict) else None
    if not isinstance(named, str):
        raise ValueError(f"its note names no archived file: {note!r:.200}")
    container, _, path = named.partition("/")
    if container != archive.container or not archive.holds(container, path):
        raise ValueError(f"its note names {named}, outside the archive {archive}")
    return path


def _unmark(gate: Gate, mark: ObjectInfo) -> None:
    """Remove the mark of a file that needs no run-now; one the store keeps costs a stat per pass, no more."""
    try:
        gate.store.delete(mark.container, mark.path, mark.version)
    except FilegateError as exc:
        log.warning("sweep: the mark %s/%s stays: %s", mark.container, mark.path, exc)


def sweep_archive(
    gate: Gate,
    *,
    dry_run: bool = False,
    tried: frozenset[str] = frozenset(),
    go_on: Callable[[], bool] = _always,
    whole: bool = True,
    cutoff: float | None = None,
) -> Iterator[Outcome]:
    """Start the missing run of each archived file without one (but those in `tried`), with its own token, or
    one in place of its run that Databricks skipped: of every such file when `whole`, else of those with a mark
    older than `cutoff` (`marked_runless`).
    """
    found = runless_archived(gate, go_on) if whole else marked_runless(gate, go_on, clear=not dry_run, cutoff=cutoff)
    for info in found:
        if isinstance(info, Outcome):
            yield info
            continue
        source = f"{info.container}/{info.path}"
        if source in tried:
            continue
        skipped = _skipped_run(gate, info)
        if dry_run:
            started = f"its run {skipped} skipped by Databricks" if skipped else "its run not started"
            yield Outcome(DUE, source=source, archived_path=source, reasons=(f"archived, {started}",))
            continue
        yield _attempt(source, "", partial(redrive_archived, gate, info, skipped))


def _runless(gate: Gate, info: ObjectInfo) -> bool:
    """A copy Filegate placed, without a recorded run, of a file that runs on its own (not a batch's member)."""
    return not info.metadata.get(META_RUN_ID) and _runs_on_its_own(gate, info)


def _skipped_run(gate: Gate, info: ObjectInfo) -> int | None:
    """The recorded run of a copy Filegate placed, when Databricks skipped it as it was started (META_SKIPPED):
    read from the copy alone, so a pass asks the Jobs API nothing about the files whose runs did start."""
    skipped = noted_skip(info.metadata)
    if skipped is not None and info.metadata.get(META_RUN_ID) == str(skipped) and _runs_on_its_own(gate, info):
        return skipped
    return None


def _runs_on_its_own(gate: Gate, info: ObjectInfo) -> bool:
    """A copy Filegate placed of a file that has a run of its own: not a batch's member or trigger."""
    if not info.metadata.get(META_SOURCE):
        return False
    return not gate.pipelines.batch_owned(gate.settings.archive.relative(info.path).split("/", 1)[0])


def _attempt(source: str, event_id: str, handle: Callable[[], Outcome]) -> Outcome:
    """One file's handling; a failure is reported with where the file now is, and the others go on."""
    try:
        return handle()
    except RunNotStarted as exc:
        log.warning("sweep: %s", exc)
        return Outcome.run_not_started(exc, source, event_id)
    except (TransientError, StorageError) as exc:
        # The file stays where it was (the landing location), so the next sweep tries it again.
        log.warning("sweep: %s failed: %s", source, exc)
        return Outcome(FAILED, event_id, source, reasons=(f"still at {source}: {exc}",))
    except FilegateError as exc:
        # A setting to fix: this file stays where it is, and the other files go on.
        log.warning("sweep: %s failed: %s", source, exc)
        return Outcome(FAILED, event_id, source, reasons=(f"still at {source}: {exc}",), to_fix=True)


def sweep_all(
    gate: Gate,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    go_on: Callable[[], bool] = _always,
    whole_archive: bool = True,
    landing_go_on: Callable[[], bool] | None = None,
) -> Iterator[Outcome]:
    """The landing location's due files, then the batches, then the archived files without a run (each tried
    once per pass): every archived file's when `whole_archive`, else those with a mark (`marked_runless`).

    The archive comes last: its whole listing is the longest (every file ever archived), so a pass that
    its budget cuts short there has finished the batches. `go_on` is asked before each phase, each listed
    object and each batch; once it says False, nothing more is started. `landing_go_on`, when given, is
    asked instead in the landing location, whose end does not end the pass.
    """
    tried: set[str] = set()
    for outcome in sweep_landing(gate, older_than, dry_run=dry_run, go_on=landing_go_on or go_on):
        tried.update(path for path in (outcome.archived_path, outcome.sealed_path) if path)
        yield outcome
    if not dry_run and go_on():
        yield from sweep_pipeline_batches(gate, go_on, frozenset(tried))
    if go_on():
        # Marks younger than the threshold are left to the deliveries that wrote them, as landing files are.
        cutoff = None if whole_archive else (gate.clock() - older_than).timestamp()
        yield from sweep_archive(
            gate, dry_run=dry_run, tried=frozenset(tried), go_on=go_on, whole=whole_archive, cutoff=cutoff
        )


def sweep_pipeline_batches(
    gate: Gate, go_on: Callable[[], bool] = _always, tried: frozenset[str] = frozenset()
) -> Iterator[Outcome]:
    """After the landing pass: finish, re-drive or report each pipeline batch; a failure skips only that batch.
    A seal in `tried` (the landing pass's archived and sealed paths) had its run-now asked for in this pass already."""
    for name in sorted(gate.pipelines):
        if not go_on():
            return
        pipeline = gate.pipelines[name]
        for day in open_batch_dates(gate, pipeline):
            if not go_on():
                return
            source = f"{name}/{day.isoformat()}"
            try:
                outcome = sweep_batch(gate, pipeline, day, tried)
            except RunNotStarted as exc:
                log.warning("sweep: batch %s: %s", source, exc)
                yield Outcome.run_not_started(exc, source)
                continue
            except FilegateError as exc:
                # The batch's pieces stay where they are; the next sweep evaluates it again.
                log.warning("sweep: batch %s failed: %s", source, exc)
                yield Outcome(
                    FAILED,
                    source=source,
                    pipeline=name,
                    business_date=day.isoformat(),
                    reasons=(str(exc),),
                    to_fix=needs_fix(exc),
                )
                continue
            if outcome is not None:
                yield outcome


# The share of a scheduled pass's budget the landing location may take: a backlog there (after an outage
# of event delivery) must not keep the batches and the failed run-nows waiting pass after pass.
LANDING_SHARE = 0.5


class SweepUnfinished(FilegateError):
    """A scheduled sweep left work: the invocation fails, so the platform records it and an alert can see it."""


def scheduled_sweep(gate: Gate, budget: timedelta, *, clock: Callable[[], float] = time.monotonic) -> list[Outcome]:
    """One pass of the functions' own schedule: `filegate sweep` with the settings' threshold, within `budget`,
    re-driving the archived files whose run-now failed by their marks rather than by listing the archive.

    Lost and dead-lettered events are thus finished without an operator. Past the budget (kept under
    the platform's timeout, which would kill the pass mid-file) nothing new is started: a listing stops
    at the object it reached, no further phase or pipeline is listed, and each file is finished or
    untouched, so the next pass takes up what is left. The landing location stops at `LANDING_SHARE` of
    the budget, so that the batches and the marks get the rest.
    A file that failed, an archived file whose run did not start, or a pass cut short by its budget
    raises SweepUnfinished once the pass is over.
    """
    gate.ensure_ready()
    start = clock()
    stopped: set[str] = set()

    def until(seconds: float, part: str) -> Callable[[], bool]:
        def go_on() -> bool:
            if part not in stopped and clock() >= start + seconds:
                stopped.add(part)
            return part not in stopped

        return go_on

    older_than = timedelta(minutes=gate.settings.sweep_older_than_minutes)
    everything = until(budget.total_seconds(), "pass")
    landing = until(budget.total_seconds() * LANDING_SHARE, "landing")
    outcomes = list(sweep_all(gate, older_than, go_on=everything, landing_go_on=landing, whole_archive=False))
    counts = Counter(outcome.status for outcome in outcomes)
    log.info("sweep: %s", json.dumps(dict(sorted(counts.items()))) if outcomes else "nothing due")
    left = summary(outcomes) if counts[FAILED] or counts[RUN_PENDING] else ""
    if stopped:
        where = (
            "at its budget" if "pass" in stopped else f"in the landing location at {LANDING_SHARE:.0%} of its budget"
        )
        log.warning("sweep: stopped %s of %s after %d item(s)", where, budget, len(outcomes))
        left = (
            f"the pass stopped {where} of {budget} before it had seen everything; the next pass "
            "takes up the rest, and if every pass stops there, run `filegate sweep`, which has no budget"
            + (f". Also: {left}" if left else "")
        )
    if left:
        raise SweepUnfinished(left)
    return outcomes


def damaged_mark(outcome: Outcome) -> bool:
    """Whether the outcome is a mark whose note names no archived file: a person deletes it, no pass mends it."""
    return outcome.status == FAILED and any(reason.startswith(DAMAGED_MARK) for reason in outcome.reasons)


def summary(outcomes: list[Outcome]) -> str:
    """Where the files that did not finish are, and what finishes them."""
    damaged = [outcome.source for outcome in outcomes if damaged_mark(outcome)]
    failed = sum(outcome.status == FAILED for outcome in outcomes) - len(damaged)
    pending = sum(outcome.status == RUN_PENDING for outcome in outcomes)
    unreadable = sum(left_in_landing(outcome) for outcome in outcomes)
    unstartable = sum(redrive_cannot_start(outcome) for outcome in outcomes)
    parts = []
    if failed:
        # A landing file, an archived file's mark, or a pipeline's batch: each outcome says which, and where.
        parts.append(f"{failed} item(s) failed, each left where its outcome says")
    if pending:
        parts.append(f"{pending} file(s) are archived but their run did not start")
    if failed or pending:
        parts.append("run the sweep again once the cause is fixed (it finishes them)")
    if damaged:
        # Named here: a pass's failure is what an alert shows, and every pass fails alike until a person acts.
        shown = ", ".join(damaged[:3]) + (", ..." if len(damaged) > 3 else "")
        parts.append(
            f"{len(damaged)} mark(s) damaged: {shown}; delete each, then run `filegate sweep`, which lists the whole "
            "archive and starts the run of the file each named"
        )
    if unreadable:
        # No retry reads them: a person changes the object (its outcome says how), then a sweep takes it.
        parts.append(
            f"{unreadable} file(s) stay in landing because their bytes cannot be read; each outcome says what "
            "makes a file readable, and the next sweep takes it then"
        )
    if unstartable:
        # Its contract removed (or the copy put in by hand): every pass finds it again, and no retry starts it.
        parts.append(
            f"{unstartable} archived file(s) no re-drive starts; each outcome says what a person does (restore "
            "the contract, say), and the next sweep starts its run then"
        )
    return "; ".join(parts)
