"""Where decisions are made: one event in, one outcome out, the same end state however often it comes."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote

from filegate.archive import (
    Placement,
    archive_path,
    archived_versions,
    find_placement,
    followed_upload,
    is_copy_of,
    place_upload,
    rejected_name,
    rejected_path,
    report_path,
    report_reasons,
    run_pending_mark,
    source_label,
    write_report,
)
from filegate.contracts import Contract, Contracts
from filegate.errors import (
    DestinationExists,
    FilegateError,
    InvalidEvent,
    Leased,
    LocationMissing,
    ObjectNotFound,
    RunNotStarted,
    SourceChanged,
    StorageError,
    Unreadable,
)
from filegate.events import AZURE, BLOCK_BLOB, CURRENT_VERSION, GCS, Ignored, Upload, named_object, parse_event
from filegate.exits import needs_fix
from filegate.jobs import RunTrigger, batch_id, idempotency_token, replacement_token
from filegate.pipelines import Pipelines
from filegate.readiness import Readiness, describe_missing_locations
from filegate.settings import Location, Settings
from filegate.storage import (
    COPY_PENDING,
    META_EVENT_ID,
    META_REPROCESSED,
    META_RUN_ID,
    META_SKIPPED,
    META_SOURCE,
    META_SOURCE_VERSION,
    META_TOKEN_RUN,
    ObjectInfo,
    Store,
    noted_skip,
    skip_note,
)
from filegate.validation import Validation, match_dataset, validate_matched

log = logging.getLogger("filegate")
# One JSON line per outcome; a child of "filegate", so the functions' logging setup covers it.
outcome_log = logging.getLogger("filegate.outcome")

ARCHIVED = "archived"
REJECTED = "rejected"
IGNORED = "ignored"
DUPLICATE = "duplicate"
# An archived file whose run was missing (run-now failed or never came): this delivery started it.
REDRIVEN = "redriven"
# A new upload byte for byte the same as the file already archived under its name: reported, not run again.
IDENTICAL = "identical"
# An archived file whose run did not start: its run-now failed (the sweep reports it so), or Databricks skipped
# the run it started. The file stays archived, and the next sweep (or `filegate reconcile --redrive`) starts it.
RUN_PENDING = "run pending"
MALFORMED = "malformed event: "
# The reason of an IGNORED file whose bytes cannot be read (an Azure blob in the Archive tier): it stays in
# landing until a person makes it readable, which no retry does (`left_in_landing`).
LEFT_IN_LANDING = "left in landing: "
# The reasons of an archived file a re-drive cannot start, nor can any retry: a person restores its contract, or
# puts a file copied into the archive by hand through landing.
NOT_PLACED = "not placed by Filegate"
CONTRACT_GONE = "no contract matches "
# The reason of an IGNORED GCS event from a bucket that is not landing's: a trigger or a setting to fix (a WARNING).
OTHER_BUCKET = "an object of bucket "
# Statuses an alert should match; the batch ones are defined in filegate/batches.py.
WARNING_STATUSES = frozenset({REJECTED, RUN_PENDING, "blocked", "overdue", "late_member"})


@dataclass(frozen=True)
class Outcome:
    """What happened to one event; logged as one JSON line and printed by `filegate handle`."""

    status: str
    event_id: str = ""
    source: str = ""
    dataset: str | None = None
    business_date: str | None = None
    reasons: tuple[str, ...] = ()
    archived_path: str | None = None
    rejected_path: str | None = None
    source_uri: str | None = None
    batch_id: str | None = None
    run_id: int | None = None
    run_page_url: str | None = None
    idempotency_token: str | None = None
    # Pipeline batches (filegate/batches.py): which batch, what it lacks, its seal.
    pipeline: str | None = None
    missing: tuple[str, ...] = ()
    blocked_by: tuple[str, ...] = ()
    sealed_path: str | None = None
    revision: int | None = None
    # A file left as it is (failed, run pending) for a setting or a permission to fix, not for a retry.
    to_fix: bool = False

    @classmethod
    def run_not_started(cls, exc: RunNotStarted, source: str, event_id: str = "", reason: str = "") -> Outcome:
        """`run pending` for a file archived, or a batch sealed, whose run-now failed: where it waits, its dataset
        or pipeline and business day (as every other outcome of it says), why, and whether a setting is to fix."""
        return cls(
            RUN_PENDING,
            event_id,
            source,
            dataset=exc.dataset,
            business_date=exc.business_date,
            pipeline=exc.pipeline,
            archived_path=exc.archived_path,
            reasons=(reason or str(exc),),
            to_fix=exc.to_fix,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.to_fix:
            del data["to_fix"]  # said only where it holds: every other outcome reads as before
        data["reasons"] = list(self.reasons)
        data["missing"] = list(self.missing)
        data["blocked_by"] = list(self.blocked_by)
        return data

    def to_json(self, **extra: object) -> str:
        return json.dumps({**extra, **self.to_dict()}, ensure_ascii=False)


@dataclass(frozen=True)
class Gate:
    """What the core needs to act: settings, a store, a job trigger, the contracts."""

    settings: Settings
    store: Store
    jobs: RunTrigger
    contracts: Contracts
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Datasets that arrive as batches, and the job a sealed batch runs; without them every file runs alone.
    pipelines: Pipelines = field(default_factory=Pipelines)
    batch_jobs: RunTrigger | None = None
    # Set by `build_gate`: settings, storage and the job are checked once, before the first move.
    readiness: Readiness | None = None

    def ensure_ready(self) -> None:
        if self.readiness is not None:
            self.readiness.ensure(self)


def handle_payload(gate: Gate, payload: Any, done: list[Outcome] | None = None) -> list[Outcome]:
    """Handle a delivery (one event or an array). Malformed events are logged and dropped, not retried.

    Failures raise, so the platform redelivers; a retried event converges to the same state. One event's
    failure does not stop the others: the first failure is raised once every event was tried, and the
    outcomes of those that ended are in `done` (when given) for the caller to report.
    """
    gate.ensure_ready()
    events = payload if isinstance(payload, list) else [payload]
    outcomes = [] if done is None else done
    if not events:
        outcomes.append(_log(Outcome(IGNORED, reasons=(f"{MALFORMED}the payload is an empty array",)), warn=True))
        return outcomes
    failures: list[FilegateError] = []
    for event in events:
        try:
            parsed = parse_event(event)
        except InvalidEvent as exc:
            event_id = str(event.get("id", ""))[:200] if isinstance(event, dict) else ""
            outcome = Outcome(IGNORED, event_id=event_id, source=named_object(event), reasons=(f"{MALFORMED}{exc}",))
            outcomes.append(_log(outcome, warn=True))
            continue
        if isinstance(parsed, Ignored):
            outcome = Outcome(IGNORED, event_id=parsed.event_id, source=parsed.subject, reasons=(parsed.reason,))
            outcomes.append(_log(outcome, warn=parsed.warn))
            continue
        try:
            outcomes.append(handle_upload(gate, parsed))
        except FilegateError as exc:
            failures.append(exc)
    for later in failures[1:]:
        log.error("another event of the delivery failed too: %s", later)
    if failures:
        raise failures[0]
    return outcomes


def handle_upload(gate: Gate, upload: Upload) -> Outcome:
    """Validate, then archive and trigger the run, or reject with a report."""
    if upload.version == CURRENT_VERSION:
        current = gate.store.stat(upload.container, upload.path)
        if current is None:
            reason = "the event names no version and the object is gone: nothing to do"
            return _log(Outcome(IGNORED, upload.event_id, f"{upload.container}/{upload.path}", reasons=(reason,)))
        log.info(
            "event %s names no generation; using %s/%s's current generation %s from the store",
            upload.event_id,
            upload.container,
            upload.path,
            current.version,
        )
        upload = replace(upload, version=current.version, size=current.size, sequencer=current.version)
    try:
        outcome = _decide(gate, upload)
    except Unreadable as exc:
        if (exc.container, exc.path) != (upload.container, upload.path):
            # Another object (an archived trigger or seal a lifecycle rule tiered down): the landing file may
            # be moved already, so this is no "left in landing"; the event is retried, and says why.
            raise StorageError(str(exc)) from exc
        # Retrying the event cannot help, and neither can a copy (it reads the bytes): the file stays in
        # landing, said at WARNING, and the sweep takes it once a person has made it readable.
        source = f"{upload.container}/{upload.path}"
        return _log(Outcome(IGNORED, upload.event_id, source, reasons=(f"{LEFT_IN_LANDING}{exc}",)), warn=True)
    return _log(outcome, warn=outcome.status == IGNORED and any(r.startswith(OTHER_BUCKET) for r in outcome.reasons))


def left_in_landing(outcome: Outcome) -> bool:
    """Whether the outcome's file stays in landing until a person acts on it (its bytes cannot be read)."""
    return outcome.status == IGNORED and any(reason.startswith(LEFT_IN_LANDING) for reason in outcome.reasons)


def redrive_cannot_start(outcome: Outcome) -> bool:
    """Whether the outcome's archived file is one no re-drive starts (copied in by hand, its contract gone): every
    listing counts it again, and running again changes nothing."""
    cannot_start = (NOT_PLACED, CONTRACT_GONE)
    return outcome.status == IGNORED and any(reason.startswith(cannot_start) for reason in outcome.reasons)


def _log(outcome: Outcome, *, warn: bool = False) -> Outcome:
    """One JSON line per event, a warning for a rejected file or a malformed event.

    An upload byte-identical to a rejected copy is a warning too: its bytes are still not loaded, and a person
    who meant to send a corrected file learns it from this line, not from a rejection (none is made again).
    `severity` is the field Cloud Logging reads from a structured line; Application Insights takes
    the level from the logging call.
    """
    still_rejected = outcome.status == IDENTICAL and bool(outcome.rejected_path)
    level = logging.WARNING if warn or still_rejected or outcome.status in WARNING_STATUSES else logging.INFO
    outcome_log.log(level, outcome.to_json(severity=logging.getLevelName(level)))
    return outcome


def _decide(gate: Gate, upload: Upload, *, follow: bool = True) -> Outcome:
    settings, store = gate.settings, gate.store
    source = f"{upload.container}/{upload.path}"
    not_ours = _not_ours(gate, upload)
    if not_ours:
        return Outcome(IGNORED, upload.event_id, source, reasons=(not_ours,))
    pipeline = gate.pipelines.of_trigger(upload.name)
    if pipeline is not None:
        from filegate.batches import handle_trigger  # imported here: batches builds on this module

        try:
            return handle_trigger(gate, upload, pipeline, follow=follow)
        except LocationMissing as exc:
            raise LocationMissing(describe_missing_locations(settings, store) or str(exc)) from exc
    # The name is matched once: validation checks the file against this match, and a retry after the
    # source moved (below) finishes the placement under the same dataset and date.
    match = match_dataset(gate.contracts, upload.name)
    contract, business_date, _ = match
    token = idempotency_token(upload)
    try:
        head = b""
        if upload.size > 0:
            length = min(upload.size, settings.sample_bytes)
            head = store.read_prefix(upload.container, upload.path, length, upload.version)
        validation = validate_matched(match, upload.size, head, settings.max_file_bytes)
        if validation.ok and validation.contract and validation.business_date:
            return _archive(gate, upload, validation.contract, validation.business_date, token)
        return _reject(gate, upload, validation)
    except (ObjectNotFound, SourceChanged):
        # The blob is gone or is another version now: an earlier delivery may have moved it.
        return _settle_earlier(gate, upload, contract, business_date, token, follow=follow)
    except LocationMissing as exc:
        # Never an acknowledgement: the event must come back once the configuration is fixed.
        raise LocationMissing(describe_missing_locations(settings, store) or str(exc)) from exc


# Where gcloud storage and gsutil put a parallel composite upload's parts: at the bucket's root by default,
# beside the destination when their `parallel_composite_upload_component_prefix` is relative.
_COMPOSITE_PART = re.compile(r"(?:^|/)(?:gcloud|gsutil)/tmp/parallel_composite_uploads/")


def _not_ours(gate: Gate, upload: Upload) -> str | None:
    settings, store = gate.settings, gate.store
    if upload.store != store.kind:
        return f"a {upload.store} event, but this function serves {store.kind} storage"
    if upload.store == AZURE and upload.account != store.account:
        return f"storage account {upload.account} is not this function's account {store.account}"
    for name, location in (("archive", settings.archive), ("rejected", settings.rejected)):
        if location.holds(upload.container, upload.path):
            return f"Filegate's own {name} write ({location}); events there are ignored so nothing loops"
    if upload.store == GCS and upload.container != settings.landing.container:
        # A GCS trigger names one bucket and sends every upload there: each would be left where it is.
        return (
            f"{OTHER_BUCKET}{upload.container}, not of the landing bucket {settings.landing.container}: the trigger "
            "sends every upload of its bucket here, and each stays where it is; set the trigger's bucket filter and "
            "FILEGATE_LANDING to the same bucket"
        )
    if not settings.landing.holds(upload.container, upload.path):
        return f"outside the landing location {settings.landing}"
    if upload.store == GCS and _COMPOSITE_PART.search(upload.path):
        # `gcloud storage cp` uploads a file of 150 MiB or more as parts it then composes and deletes:
        # rejecting a part (and deleting it from landing) would fail the user's upload.
        return "a temporary part of a parallel composite upload (gcloud storage, gsutil); the composed file follows"
    return None


def _archive(gate: Gate, upload: Upload, contract: Contract, business_date: date, token: str) -> Outcome:
    store, settings = gate.store, gate.settings
    identical = _identical_archived(gate, upload, contract, business_date)
    if identical is not None:
        # The bytes are already archived (and loaded by that file's run): the re-upload goes, no new run.
        run = identical.metadata.get(META_RUN_ID, "")
        started = ""
        if _awaits_its_run(gate, contract, identical):
            # The copy never got its run (its delivery's run-now failed, or the delivery died): it starts now,
            # with the copy's own token, before the re-upload goes. Marked first (its delivery may have died
            # before its mark): a run-now that fails, or a run whose record fails, leaves it for the sweep,
            # and the re-upload stays in landing for the redelivery when the run did not start.
            _mark_run_pending(gate, Placement(identical.container, identical.path, identical, reused=True))
            redriven = redrive_archived(gate, identical)
            run = started = str(redriven.run_id) if redriven.run_id is not None else ""
        store.delete(upload.container, upload.path, upload.version)
        where = f"byte-identical to {identical.container}/{identical.path} (same MD5 {identical.content_md5})"
        reason = (
            f"{where}, archived without a run: its run {started} started now"
            if started
            else f"{where}, already archived{f' with run {run}' if run else ''}; not run again"
        )
        status = IDENTICAL
        if not started and run and run == str(noted_skip(identical.metadata)):
            # Its run never ran (Databricks skipped it as it was started): the file is not loaded, and the copy's
            # mark has the sweep replace that run, as `filegate reconcile --redrive` does at once.
            status = RUN_PENDING
            reason = (
                f"{where}, already archived; its run {run} was skipped by Databricks and never ran: the next "
                "scheduled sweep (or `filegate reconcile --redrive`) starts a run in its place"
            )
        return Outcome(
            status,
            upload.event_id,
            f"{upload.container}/{upload.path}",
            dataset=contract.name,
            business_date=business_date.isoformat(),
            reasons=(reason,),
            archived_path=f"{identical.container}/{identical.path}",
            run_id=int(run) if (run.isascii() and run.isdigit()) else None,
        )
    placement = place_upload(store, upload, settings.archive, archive_path(contract.name, business_date, upload.name))
    # place_upload returns only a whole copy, so the source goes only once its bytes are safe. Delete only
    # the version we copied: a newer upload under the same name stays for its own event.
    return _release_to_run(gate, upload, contract, business_date, token, placement)


def _release_to_run(
    gate: Gate, upload: Upload, contract: Contract, business_date: date, token: str, placed: Placement
) -> Outcome:
    """Mark the archived copy as waiting for its run, delete the landing version, then run-now.

    The mark comes first: a landing version goes only once its copy is marked (or has its run), so a
    delivery that dies between the delete and run-now leaves a mark the scheduled sweep finds; `_run`
    removes it once the run is recorded. A batch's member has no run of its own, hence no mark.
    """
    mark = _mark_run_pending(gate, placed) if _awaits_its_run(gate, contract, placed.info) else None
    return release_source(gate.store, upload, lambda: _run(gate, upload, contract, business_date, token, placed, mark))


def _awaits_its_run(gate: Gate, contract: Contract, copy: ObjectInfo) -> bool:
    """Whether an archived copy needs a mark: its file runs on its own (not a batch's member) and no run is
    recorded on it yet."""
    return gate.pipelines.of_member(contract.name) is None and not copy.metadata.get(META_RUN_ID)


def release_source(store: Store, upload: Upload, then: Callable[[], Outcome]) -> Outcome:
    """Delete the landing version whose whole copy is archived, then `then` (its run-now, its batch's evaluation).

    A lease another client holds on the blob (Azure), or a hold on the object (GCS), forbids the delete
    until it ends. The archive holds the file, so its run does not wait for it: `then` goes first, and
    the delivery fails naming the lease or hold, for the redelivery to find the run started (same
    token) and finish the delete.
    """
    try:
        store.delete(upload.container, upload.path, upload.version)
    except Leased as exc:
        # Logged now: the redelivery finds the copy made and the run started, and says duplicate.
        outcome = then()
        done = _log(replace(outcome, reasons=(*outcome.reasons, f"still in landing: {exc}")))
        run = f", run {done.run_id}" if done.run_id is not None else ""
        raise Leased(f"{exc}; archived at {done.archived_path} ({done.status}{run}) meanwhile") from exc
    return then()


def _identical_archived(gate: Gate, upload: Upload, contract: Contract, business_date: date) -> ObjectInfo | None:
    """The newest file archived under this upload's name, when it holds the same bytes as this different version."""
    return identical_copy(gate, upload, gate.settings.archive, archive_path(contract.name, business_date, upload.name))


def identical_copy(gate: Gate, upload: Upload, location: Location, relative: str) -> ObjectInfo | None:
    """The newest copy Filegate placed under `relative`'s name in `location` (archive or rejected), when it holds the
    same bytes as this different version of the upload.

    Only the newest counts: a producer that sends A, then B, then A again to take B back has made A the
    file again, and A is archived and run anew (for a batch, it is the member's newest version). Versions
    written in the same second as the newest (Azure's Last-Modified has no finer grain) must all hold
    these bytes, or the upload is placed as usual. The copy `filegate rejected --reprocess` makes of the newest
    (marked `META_REPROCESSED`) is that file sent anew, never identical to it.
    """
    versions = archived_versions(gate.store, location, relative)
    if not versions:
        return None
    newest_time = max(info.written for info in versions)
    newest = [info for info in versions if info.written == newest_time]
    for archived in newest:
        # Only a copy known to hold another version counts: a copy still being made (no metadata yet) does not.
        other_version = archived.metadata.get(META_SOURCE_VERSION)
        if not archived.content_md5 or not other_version or is_copy_of(archived, upload) or not archived.copy_finished:
            return None
    source = gate.store.stat(upload.container, upload.path)
    if source is None or source.version != upload.version:
        return None
    kept = max(newest, key=lambda info: info.path)
    # `filegate rejected --reprocess` copies that very file into landing, then deletes it: the copy's event, when it
    # comes first, deleted the copy as identical, and the bytes were in no copy at all.
    if unquote(source.metadata.get(META_REPROCESSED, "")) == f"{kept.container}/{kept.path}":
        return None
    if any(info.content_md5 != source.content_md5 or info.size != source.size for info in newest):
        return None
    # The upload is deleted on this answer: where the MD5s may be what clients claimed, not what the bytes
    # are (Azure), the bytes themselves decide. Only a re-upload that claims the newest copy's MD5 pays it.
    if not gate.store.computes_md5 and not all(same_bytes(gate.store, info, source) for info in newest):
        return None
    return kept


# How much of each object `same_bytes` holds at a time.
COMPARE_CHUNK = 8 * 1024 * 1024


def same_bytes(store: Store, archived: ObjectInfo, source: ObjectInfo) -> bool:
    """Whether an archived copy and the source (of one size) hold the same bytes, read side by side a chunk at
    a time. The source, an object that may be replaced (landing's), is read at its version (another version is
    another upload: SourceChanged); `archived`, whose bytes never change (a copy Filegate keeps), at any: its
    metadata does change (the run id, on Azure a new ETag) while this reads."""
    for offset in range(0, archived.size, COMPARE_CHUNK):
        length = min(COMPARE_CHUNK, archived.size - offset)
        try:
            copy = store.read_range(archived.container, archived.path, offset, length, "")
        except Unreadable:
            return False  # a copy tiered down to Archive: the upload is archived beside it rather than left
        if copy != store.read_range(source.container, source.path, offset, length, source.version):
            return False
    return True


def _run(
    gate: Gate,
    upload: Upload,
    contract: Contract,
    business_date: date,
    token: str,
    placed: Placement,
    mark: ObjectInfo | None = None,
    *,
    replaces: int | None = None,
) -> Outcome:
    """Start (or find, by the token) the file's run and record it on the copy; `mark`: this delivery's mark.

    `replaces`: the copy's run that Databricks skipped. Its token would only find it again, so the new run
    has a token of its own (`replacement_token`) and loads the same batch; the copy records the run the
    file's own token names (META_TOKEN_RUN).
    """
    pipeline = gate.pipelines.of_member(contract.name)
    if pipeline is not None:
        # A member starts no run of its own; the event that completes its batch starts the batch's run.
        from filegate.batches import settle_member

        return settle_member(gate, upload, pipeline, contract, business_date, placed)
    container, path = placed.container, placed.path
    source_uri = gate.store.spark_uri(container, path)
    batch = batch_id(contract.name, business_date, token)
    parameters = {"source_path": source_uri, "dataset": contract.name, "batch_id": batch}
    run_token = token if replaces is None else replacement_token(token, replaces)
    recorded = placed.info.metadata.get(META_RUN_ID)
    token_run = placed.info.metadata.get(META_TOKEN_RUN)
    found = Outcome(
        DUPLICATE,
        upload.event_id,
        f"{upload.container}/{upload.path}",
        dataset=contract.name,
        business_date=business_date.isoformat(),
        archived_path=f"{container}/{path}",
        source_uri=source_uri,
        batch_id=batch,
        idempotency_token=run_token,
    )
    if replaces is not None and recorded is not None and recorded != str(replaces) and recorded.isdigit():
        # A re-drive from an older listing: another one replaced that run already. Recorded over it, its
        # replacement (skipped too, perhaps) would hide the run the copy names now.
        reason = f"run {replaces} was replaced already: the copy names run {recorded}"
        return replace(found, run_id=int(recorded), idempotency_token=None, reasons=(reason,))
    try:
        run = gate.jobs.trigger_run(parameters, run_token)
    except FilegateError as exc:
        # Say where the file is: archived, waiting for its run (the next sweep or re-drive starts it).
        if mark is None:
            _ensure_marked(gate, placed)
        day = {"dataset": contract.name, "business_date": business_date.isoformat()}
        raise RunNotStarted(f"{container}/{path}", str(exc), to_fix=needs_fix(exc), **day) from exc
    found = replace(found, run_id=run.run_id, run_page_url=run.run_page_url)
    if replaces is None and recorded and str(run.run_id) == token_run:
        # A redelivery: the file's token names its skipped run, which a re-drive replaced. The copy keeps
        # naming the replacement (recorded over it, the file would read as skipped again).
        reason = f"its run {run.run_id} was skipped; run {recorded} replaced it"
        return replace(found, run_id=int(recorded), run_page_url=None, reasons=(reason,))
    noted = {META_TOKEN_RUN: token_run or str(replaces)} if replaces is not None else {}
    skipped = skip_note(run.run_id, run.skipped) if run.skipped else {}
    noted.update(skipped)
    unnoted = bool(skipped) and placed.info.metadata.get(META_SKIPPED) != skipped[META_SKIPPED]
    written = (recorded != str(run.run_id) or unnoted) and _record_run(gate.store, placed, run.run_id, noted)
    reasons: tuple[str, ...] = ()
    if replaces is not None:
        reasons = (f"run {replaces} was skipped by Databricks and never ran; run {run.run_id} replaces it",)
    if run.skipped:
        # The copy keeps its mark, by which the scheduled sweep finds it and replaces the run; a re-drive
        # without one writes it, once the copy notes the skip (a mark beside a run without it is removed).
        if mark is None and (written or not unnoted):
            _ensure_marked(gate, placed)
        why = (
            f"Databricks skipped run {run.run_id} ({run.skipped}) and never ran it: the next scheduled sweep "
            "(or `filegate reconcile --redrive`) starts a run in its place"
        )
        return replace(found, status=RUN_PENDING, reasons=(*reasons, why))
    if written:
        _clear_mark(gate, placed, mark)
    if replaces is not None:
        return replace(found, status=REDRIVEN if recorded != str(run.run_id) else DUPLICATE, reasons=reasons)
    # A reused copy with a recorded run is a duplicate; one without had no run until now.
    return replace(found, status=(DUPLICATE if recorded else REDRIVEN) if placed.reused else ARCHIVED)


def _mark_path(gate: Gate, placed: Placement) -> str:
    archive = gate.settings.archive
    return archive.path(run_pending_mark(archive.relative(placed.path)))


def _mark_run_pending(gate: Gate, placed: Placement) -> ObjectInfo | None:
    """Write the mark by which the scheduled sweep finds this archived file while it has no run (create-only);
    None when it is there already. A failure raises: the landing version must stay until a mark exists."""
    note = {"archived": f"{placed.container}/{placed.path}", "marked_at": gate.clock().isoformat(timespec="seconds")}
    try:
        return gate.store.put(
            gate.settings.archive.container, _mark_path(gate, placed), json.dumps(note).encode(), "application/json", {}
        )
    except DestinationExists:
        return None


def _ensure_marked(gate: Gate, placed: Placement) -> None:
    """After a failed run-now, or a skipped run, of a copy placed without a mark (by a release before the marks,
    say, or re-driven by a command)."""
    try:
        _mark_run_pending(gate, placed)
    except FilegateError as exc:
        log.error(
            "%s/%s is archived without its run, and its mark for the scheduled sweep could not be written (%s): "
            "run `filegate sweep`, which lists the whole archive",
            placed.container,
            placed.path,
            exc,
        )


def _clear_mark(gate: Gate, placed: Placement, mark: ObjectInfo | None) -> None:
    """Remove the mark of a copy whose run is recorded; one left behind is removed by the next scheduled sweep."""
    archive = gate.settings.archive
    try:
        found = mark or gate.store.stat(archive.container, _mark_path(gate, placed))
        if found is not None:
            gate.store.delete(found.container, found.path, found.version)
    except FilegateError as exc:
        log.warning(
            "the run of %s/%s is recorded, but its mark stays for the sweep: %s", placed.container, placed.path, exc
        )


def _record_run(store: Store, placed: Placement, run_id: int, noted: Mapping[str, str] | None = None) -> bool:
    """Record the run on the archived copy (with `noted` metadata), so sweeps and reconcile tell done files from
    stranded ones."""
    try:
        metadata = {META_RUN_ID: str(run_id), **(noted or {})}
        store.update_metadata(placed.container, placed.path, placed.info.version, metadata)
        return True
    except SourceChanged:
        # Another delivery of the same file recorded it first (Azure's metadata write changes the ETag).
        try:
            current = store.stat(placed.container, placed.path)
        except FilegateError:
            current = None
        if current is not None and current.metadata.get(META_RUN_ID) == str(run_id):
            return True
        log.warning("run %s started, but %s/%s changed before it was recorded", run_id, placed.container, placed.path)
        return False
    except FilegateError as exc:
        # The run exists; the copy keeps its mark, and the next sweep's run-now with the same token records it.
        log.warning("run %s started, but recording it on %s/%s failed: %s", run_id, placed.container, placed.path, exc)
        return False


def archived_upload(store: Store, info: ObjectInfo) -> Upload | None:
    """The upload an archived copy came from (its identity, hence its token); None if Filegate did not place it."""
    source = unquote(info.metadata.get(META_SOURCE, ""))
    version = info.metadata.get(META_SOURCE_VERSION, "")
    container, _, path = source.partition("/")
    if not (container and path and version):
        return None
    return Upload(
        store=store.kind,
        account=store.account,
        container=container,
        path=path,
        size=info.size,
        version=version,
        event_id=info.metadata.get(META_EVENT_ID, ""),
        api="redrive",
    )


def redrive_refusal(gate: Gate, info: ObjectInfo) -> str:
    """Why no re-drive starts the run of an archived file, nor does any retry ("" when one may)."""
    found = _redrive_source(gate, info)
    return found if isinstance(found, str) else ""


def _redrive_source(gate: Gate, info: ObjectInfo) -> tuple[Upload, Contract, date] | str:
    """The upload an archived copy came from, with its contract and business date; or why a re-drive cannot know
    them: a person puts a file copied into the archive by hand through landing, or restores its contract."""
    upload = archived_upload(gate.store, info)
    if upload is None:
        return f"{NOT_PLACED}, copied into the archive by hand: put it through landing"
    contract, business_date, _ = match_dataset(gate.contracts, upload.name)
    if contract is None or business_date is None:
        return f"{CONTRACT_GONE}its name any more: restore its contract"
    return upload, contract, business_date


def redrive_archived(gate: Gate, info: ObjectInfo, replaces: int | None = None) -> Outcome:
    """Start (or find) the run of an archived file with its own token: never a second run. `replaces`: its run
    that Databricks skipped, which only a run with a token of its own replaces (`_run`)."""
    source = f"{info.container}/{info.path}"
    found = _redrive_source(gate, info)
    if isinstance(found, str):
        # A contract gone is a WARNING: files of a dataset still landing were archived under it.
        event_id = info.metadata.get(META_EVENT_ID, "")
        return _log(Outcome(IGNORED, event_id, source, reasons=(found,)), warn=found.startswith(CONTRACT_GONE))
    upload, contract, business_date = found
    abandoned = not info.copy_finished and info.copy_status != COPY_PENDING and _version_gone(gate.store, upload)
    # Azure ended the copy failed or aborted, and the landing blob has moved on since: no delivery will copy
    # that version again, and the copy holds part of it at most. Left, it would read as an archived file
    # without a run for ever (the plain name's is replaced by the next version's copy). Deleted only as
    # it was read: one copied again meanwhile is not this copy.
    if abandoned and gate.store.delete(info.container, info.path, info.version):
        reason = (
            f"removed an abandoned copy (copy status {info.copy_status}): the landing blob changed while it "
            "was copied, and its newer version is handled by its own event"
        )
        return _log(Outcome(IGNORED, upload.event_id, source, reasons=(reason,)), warn=True)
    if not info.copy_finished:
        # Its bytes are not all there: the landing file's redelivery (or the sweep) copies it again.
        reason = f"the copy did not finish (copy status {info.copy_status}); its run would load part of the file"
        return _log(Outcome(IGNORED, upload.event_id, source, reasons=(reason,)), warn=True)
    placed = Placement(info.container, info.path, info, reused=True)
    return _log(_run(gate, upload, contract, business_date, idempotency_token(upload), placed, replaces=replaces))


def _version_gone(store: Store, upload: Upload) -> bool:
    """Whether landing no longer holds this version of the upload (overwritten, or deleted)."""
    current = store.stat(upload.container, upload.path)
    return current is None or current.version != upload.version


def _reject(gate: Gate, upload: Upload, validation: Validation) -> Outcome:
    store, settings = gate.store, gate.settings
    relative, *earlier = _rejected_relatives(gate, upload, validation.contract, validation.business_date)
    # A copy an earlier release made under the name as uploaded (a delivery retried across the upgrade).
    found = (find_placement(store, upload, settings.rejected, other) for other in earlier)
    placement = next((placed for placed in found if placed is not None), None)
    if placement is None:
        kept = identical_rejected(gate, upload, relative, validation.reasons)
        if kept is not None:
            return _kept_rejection(gate, upload, validation, kept)
        placement = place_upload(store, upload, settings.rejected, relative, beside_reports=True)
    return _report_rejection(gate, upload, validation, placement)


def identical_rejected(gate: Gate, upload: Upload, relative: str, reasons: Iterable[str]) -> ObjectInfo | None:
    """The newest copy rejected under `relative`'s name, when it holds this different version's bytes and its report
    gives these very reasons: sent again (a backfill run twice, a producer's retry), the file is decided already.

    A copy without its report (an earlier delivery still at work, or failed before it) or with other reasons (its
    contract changed since) is not: the upload is rejected beside it with a report of its own. So is an upload
    over `max_file_bytes` where the store's MD5s may be what clients claimed (Azure): telling its bytes from the
    copy's would read both whole, many GiB past the function's time limit, where the archive never holds one.
    """
    if upload.size > gate.settings.max_file_bytes and not gate.store.computes_md5:
        return None
    kept = identical_copy(gate, upload, gate.settings.rejected, relative)
    if kept is None or report_reasons(gate.store, kept.container, report_path(kept.path)) != tuple(reasons):
        return None
    return kept


def kept_rejection_reason(kept: ObjectInfo) -> str:
    """The reason an upload sent again was deleted, naming the one rejected copy and report that stay."""
    where = f"{kept.container}/{kept.path}"
    return f"byte-identical to {where}, rejected already for these reasons (report: {report_path(where)}); kept once"


def _kept_rejection(gate: Gate, upload: Upload, validation: Validation, kept: ObjectInfo) -> Outcome:
    """The same bytes were rejected already for the same reasons: the upload goes, and the one copy and its report
    stay what a person acts on (a second copy and report said the same again, under another name)."""
    gate.store.delete(upload.container, upload.path, upload.version)
    dataset = validation.contract.name if validation.contract else None
    outcome = Outcome(
        IDENTICAL,
        upload.event_id,
        f"{upload.container}/{upload.path}",
        dataset=dataset,
        business_date=validation.business_date.isoformat() if validation.business_date else None,
        reasons=(kept_rejection_reason(kept), *validation.reasons),
        rejected_path=f"{kept.container}/{kept.path}",
    )
    # Its batch's state (still blocked by it, say), as for the first rejection.
    return _with_batch_state(gate, outcome, validation)


def _rejected_relatives(gate: Gate, upload: Upload, contract: Contract | None, business_date: date | None) -> list[str]:
    """Where the upload is rejected to (relative to the rejected location), then where an earlier release
    rejected it: under its name as uploaded, before `rejected_name` spelled a contract's match as it does."""
    dataset = contract.name if contract else None
    rejected = gate.settings.rejected
    relatives = [rejected_path(rejected, dataset, rejected_name(contract, business_date, upload.name))]
    as_uploaded = rejected_path(rejected, dataset, upload.name)
    return relatives if as_uploaded in relatives else [*relatives, as_uploaded]


def _report_rejection(gate: Gate, upload: Upload, validation: Validation, placement: Placement) -> Outcome:
    """Write the report beside the rejected copy, take the source out of landing, and say so."""
    store = gate.store
    dataset = validation.contract.name if validation.contract else None
    business_date = validation.business_date.isoformat() if validation.business_date else None
    report: dict[str, object] = {
        "file": upload.name,
        "source": f"{upload.container}/{upload.path}",
        "source_version": upload.version,
        "event_id": upload.event_id,
        "event_time": upload.event_time,
        "dataset": dataset,
        "business_date": business_date,
        "size_bytes": upload.size,
        "bytes_read": validation.bytes_read,
        "rows_sampled": validation.rows_sampled,
        "bad_rows": validation.bad_rows,
        "reasons": list(validation.reasons),
        "rejected_path": f"{placement.container}/{placement.path}",
        "rejected_at": gate.clock().isoformat(timespec="seconds"),
    }
    # The report goes in before the source is deleted, so a crash in between loses neither.
    wrote = write_report(store, placement, report)
    # Reported as rejected by the delivery that made the copy, wrote the report, or whose delete takes the
    # file out of landing when an earlier one had copied it and then failed: a rejection retried after a
    # partial failure is still alerted on, and one whose delete found the source gone (moved, or replaced
    # by a re-upload meanwhile) too. Only a delivery that finds all three done is a duplicate.
    moved = store.delete(upload.container, upload.path, upload.version)
    outcome = Outcome(
        REJECTED if moved or wrote or not placement.reused else DUPLICATE,
        upload.event_id,
        f"{upload.container}/{upload.path}",
        dataset=dataset,
        business_date=business_date,
        reasons=validation.reasons,
        rejected_path=f"{placement.container}/{placement.path}",
    )
    return _with_batch_state(gate, outcome, validation)


def _with_batch_state(gate: Gate, outcome: Outcome, validation: Validation) -> Outcome:
    """A rejected (or kept) file's outcome, with its batch's state when its dataset is a pipeline's member."""
    pipeline = gate.pipelines.of_member(outcome.dataset) if outcome.dataset else None
    if pipeline is None or validation.business_date is None:
        return outcome
    from filegate.batches import member_rejected

    try:
        return member_rejected(gate, pipeline, outcome, validation.business_date)
    except FilegateError as exc:
        # The file is moved and reported: its rejection is alerted on now, as the redelivery would
        # find it moved and call it a duplicate. The batch's next event or sweep says it is blocked.
        log.warning("rejected member %s: its batch could not be read: %s", outcome.source, exc)
        return replace(outcome, pipeline=pipeline.name, reasons=(*outcome.reasons, f"batch not read: {exc}"))


def _settle_earlier(
    gate: Gate, upload: Upload, contract: Contract | None, business_date: date | None, token: str, *, follow: bool
) -> Outcome:
    """The source is gone or changed: finish what an earlier delivery started, handle the version the blob is
    now (`follow`, once), or explain why not."""
    store, settings = gate.store, gate.settings
    source = f"{upload.container}/{upload.path}"
    # Where an earlier delivery would have placed this upload (or the version it followed).
    places: list[tuple[Location, str]] = []
    if contract is not None and business_date is not None:
        relative = archive_path(contract.name, business_date, upload.name)
        places.append((settings.archive, relative))
        placement = find_placement(store, upload, settings.archive, relative)
        if placement is not None:
            # The earlier delivery may have crashed before run-now: the same token starts the run
            # it missed, or returns the run it started.
            return _release_to_run(gate, upload, contract, business_date, token, placement)
    dataset = contract.name if contract else None
    rejected = None
    for relative in _rejected_relatives(gate, upload, contract, business_date):
        places.append((settings.rejected, relative))
        rejected = rejected or find_placement(store, upload, settings.rejected, relative)
    if rejected is not None and store.stat(rejected.container, report_path(rejected.path)) is None:
        # An earlier delivery copied the file and failed before its report, and the blob changed since:
        # the report comes from the copy, and the rejection is alerted on as the first delivery would have.
        length = min(upload.size, settings.sample_bytes)
        head = store.read_prefix(rejected.container, rejected.path, length, rejected.info.version) if length else b""
        match = match_dataset(gate.contracts, upload.name)
        validation = validate_matched(match, upload.size, head, settings.max_file_bytes)
        if validation.ok:
            lost = "rejected by an earlier delivery whose report was lost"
            passes = "it passes its contract now (changed since?): upload it again to load it"
            validation = replace(validation, reasons=(f"{lost}; {passes}",))
        return _report_rejection(gate, upload, validation, rejected)
    if rejected is not None:
        store.delete(upload.container, upload.path, upload.version)
        reasons = report_reasons(store, rejected.container, report_path(rejected.path))
        return Outcome(
            DUPLICATE,
            upload.event_id,
            source,
            dataset=dataset,
            business_date=business_date.isoformat() if business_date else None,
            reasons=reasons,
            rejected_path=f"{rejected.container}/{rejected.path}",
        )
    current = store.stat(upload.container, upload.path)
    if follow:
        followed = follow_changed(
            store,
            upload,
            current,
            places,
            settle=lambda moved: _settle_earlier(
                gate, moved, contract, business_date, idempotency_token(moved), follow=False
            ),
            decide=lambda newer: _decide(gate, newer, follow=False),
        )
        if followed is not None:
            return followed
    if current is None:
        reason = f"the blob is gone: {_why_gone(gate, upload, contract, business_date, places)}"
    else:
        reason = f"superseded: the blob is now version {current.version}; the event for that upload handles it"
    return Outcome(IGNORED, upload.event_id, source, dataset=dataset, reasons=(reason,))


def _why_gone(
    gate: Gate,
    upload: Upload,
    contract: Contract | None,
    business_date: date | None,
    places: list[tuple[Location, str]],
) -> str:
    """Why an upload's version is gone from landing with no copy of it, as far as the copies of its name tell."""
    store, settings = gate.store, gate.settings
    why = "Filegate holds no copy of this version: someone else deleted or moved it"
    # Copies of other versions of this landing blob, archived or rejected: one may be of the upload that replaced
    # this version in landing before any delivery read it (events come in any order).
    others = [
        info
        for location, relative in places
        for info in archived_versions(store, location, relative)
        if _copy_of_other(info, upload)
    ]
    newer = _newer_upload(upload, others)
    archived = None
    if contract is not None and business_date is not None:
        archived = newest_of_size(
            store, settings.archive, archive_path(contract.name, business_date, upload.name), upload.size
        )
    rejected = newest_of_size(
        store, settings.rejected, _rejected_relatives(gate, upload, contract, business_date)[0], upload.size
    )
    if newer is not None:
        run = newer.metadata.get(META_RUN_ID)
        why = (
            f"a newer upload (version {newer.metadata.get(META_SOURCE_VERSION)}) replaced it in landing before it "
            f"was read; this version was never archived, that one is at "
            f"{newer.container}/{newer.path}{f' (run {run})' if run else ''}"
        )
    elif archived is not None:
        run = archived.metadata.get(META_RUN_ID)
        why = (
            f"most likely deleted by an earlier delivery of this event as byte-identical to "
            f"{archived.container}/{archived.path}{f' (run {run})' if run else ''}, archived under its name"
        )
    elif rejected is not None:
        why = deleted_as_rejected(rejected)
    if newer is None and upload.store == AZURE and others:
        # Azure's ETags do not say which of two versions came first: the reading by which this version's rows
        # were never loaded is said first, so that nobody takes them for loaded.
        latest = max(others, key=lambda info: info.written)
        why = (
            "a newer upload may have replaced it in landing before it was read, and then this version was never "
            f"archived (Filegate holds {latest.container}/{latest.path}; Azure does not say which of two uploads "
            f"came first); or {why}"
        )
    return why


def newest_of_size(store: Store, location: Location, relative: str, size: int) -> ObjectInfo | None:
    """The newest copy placed under `relative`'s name in `location` when it has `size` bytes: only the newest is
    ever found identical (`identical_copy`), so a gone upload of its size was, likely, deleted as such."""
    versions = archived_versions(store, location, relative)
    newest = max(versions, key=lambda info: info.written) if versions else None
    return newest if newest is not None and newest.size == size else None


def deleted_as_rejected(kept: ObjectInfo) -> str:
    """Why a gone upload is, likely, no loss: its bytes were rejected already, and are kept once (`_kept_rejection`)."""
    return (
        "most likely deleted by an earlier delivery of this event (or a backfill beside it) as byte-identical to "
        f"{kept.container}/{kept.path}, rejected already under its name: its report says why"
    )


def _copy_of_other(info: ObjectInfo, upload: Upload) -> bool:
    """Whether an archived or rejected object is Filegate's copy of another version of the upload's landing blob."""
    version = info.metadata.get(META_SOURCE_VERSION)
    return info.metadata.get(META_SOURCE) == source_label(upload) and bool(version) and version != upload.version


def _newer_upload(upload: Upload, versions: Iterable[ObjectInfo]) -> ObjectInfo | None:
    """The archived copy of a later generation of the upload's GCS object (generations are ordered), or None."""
    if upload.store != GCS or not upload.version.isdigit():
        return None
    newer = [
        info
        for info in versions
        if _copy_of_other(info, upload)
        and info.metadata[META_SOURCE_VERSION].isdigit()
        and int(info.metadata[META_SOURCE_VERSION]) > int(upload.version)
    ]
    return min(newer, key=lambda info: int(info.metadata[META_SOURCE_VERSION]), default=None)


def follow_changed(
    store: Store,
    upload: Upload,
    current: ObjectInfo | None,
    places: Iterable[tuple[Location, str]],
    *,
    settle: Callable[[Upload], Outcome],
    decide: Callable[[Upload], Outcome],
) -> Outcome | None:
    """Follow an Azure blob to another version than its event named (`follow_current`), or None.

    `current` is what the blob is now: another whole version goes to `decide`. When the blob is gone, a
    redelivery of an event that followed it and failed after moving it finds that version in its copy's
    metadata among `places` (`archive.followed_upload`), and `settle` finishes what the first delivery began.
    """
    if current is not None:
        if not followable(upload, current):
            return None
        return follow_current(replace(upload, version=current.version, size=current.size), upload, decide)
    if upload.store != AZURE:
        return None
    moved = followed_upload(store, upload, places)
    return None if moved is None else follow_current(moved, upload, settle)


def followable(upload: Upload, current: ObjectInfo) -> bool:
    """Whether an event should handle the version its Azure blob is now (`follow_current`): another version,
    whole (not the target of a copy still going on), and a block blob (an append blob grows without events)."""
    return (
        upload.store == AZURE
        and current.version != upload.version
        and current.copy_finished
        and current.blob_type in ("", BLOCK_BLOB)
    )


def follow_current(newer: Upload, upload: Upload, decide: Callable[[Upload], Outcome]) -> Outcome:
    """Decide on `newer`, the version an Azure blob is now, instead of the one its event (`upload`) named.

    On Azure a write of a blob's metadata or properties gives it a new ETag (its version here) and raises
    no BlobCreated: an event whose version is gone would wait for an event that never comes, and the file
    would stay in landing. An overwrite does raise its own event, which names this same version: both
    converge on one copy and one run, whose token comes from the version. Not on GCS, which keeps the
    generation on a metadata write: there a stale event means an overwrite, whose own event handles the
    new generation. Followed once: a version that changed again is left to the event or sweep for it. A
    redelivery of the event, once the blob has moved, finds the version in its copy's metadata
    (`archive.followed_upload`) and finishes what the first delivery started.
    """
    outcome = decide(newer)
    note = (
        f"the event named version {upload.version}, but the blob is now version {newer.version} (a newer upload,"
        " or a write of its metadata or properties, which raises no event): what follows is about that version"
    )
    return replace(outcome, reasons=(note, *outcome.reasons))
