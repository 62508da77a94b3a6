"""Files, not only runs: what is rejected and why, what is archived with its run, and the tools to fix both."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path, PurePath
from urllib.parse import quote, unquote

from filegate import exits
from filegate.archive import (
    REPORT_SUFFIX,
    UNMATCHED,
    archive_path,
    note_no_report_aside,
    read_report,
    reasons_in,
    report_path,
    reports_set_aside,
    set_report_aside,
    unqualified_name,
)
from filegate.batches import LATE_MEMBER, seal_holds
from filegate.contracts import same_name
from filegate.errors import (
    DamagedLeftBehind,
    DestinationExists,
    FilegateError,
    LocationMissing,
    RunNotStarted,
    SettingsError,
    SourceChanged,
    TransientError,
    UsageError,
)
from filegate.events import TARGETS, event_stores
from filegate.ingest import (
    IGNORED,
    REJECTED,
    RUN_PENDING,
    Gate,
    Outcome,
    handle_payload,
    handle_upload,
    left_in_landing,
    redrive_archived,
    redrive_cannot_start,
    redrive_refusal,
    same_bytes,
)
from filegate.jobs import ACTIVE_STATES, NEVER_RAN_STATES
from filegate.pipelines import BATCHES_FOLDER
from filegate.readiness import describe_missing_locations
from filegate.settings import Location
from filegate.storage import META_REPROCESSED, META_RUN_ID, META_SOURCE, ObjectInfo, size_and_md5
from filegate.stores import add_target_option
from filegate.sweep import FAILED, upload_from_object

log = logging.getLogger(__name__)

NO_RUN = "NO RUN"
# A pipeline member's run is its batch's (`filegate batches`), never its own.
IN_BATCH = "IN BATCH"
UNKNOWN = "UNKNOWN"
HANDLED = "handled"


@dataclass(frozen=True)
class RejectedFile:
    """A rejected file and what its report says."""

    path: str
    dataset: str
    size: int
    reasons: tuple[str, ...]
    rejected_at: str
    source: str
    # The archived copy of an upload of its name made after it was rejected ("" when none): corrected since, and the
    # rejected file and its report stay as history.
    corrected_by: str = ""


@dataclass(frozen=True)
class ArchivedFile:
    """An archived file with its dataset, business date and run."""

    path: str
    dataset: str
    business_date: str
    size: int
    run_id: int | None
    state: str
    # Why no re-drive starts its run ("" when one may): copied in by hand, or its contract gone.
    no_redrive: str = ""


def rejected_files(gate: Gate, dataset: str | None = None) -> Iterator[RejectedFile]:
    """Every rejected file (not the reports, nor earlier reports kept on re-processing), with its reasons."""
    rejected = gate.settings.rejected
    archived_days: dict[str, list[ObjectInfo]] = {}
    for info in _listed(gate, rejected, f"{dataset}/" if dataset else ""):
        if info.path.endswith(REPORT_SUFFIX):
            continue
        report = read_report(gate.store, info.container, report_path(info.path))
        relative = rejected.relative(info.path)
        yield RejectedFile(
            path=f"{info.container}/{info.path}",
            dataset=relative.split("/", 1)[0],
            size=info.size,
            reasons=reasons_in(report),
            rejected_at=str(report.get("rejected_at", "")),
            source=unquote(info.metadata.get(META_SOURCE, "")),
            corrected_by=_corrected_by(gate, info, report, archived_days),
        )


def _corrected_by(gate: Gate, info: ObjectInfo, report: dict[str, object], days: dict[str, list[ObjectInfo]]) -> str:
    """The newest archived copy of an upload of the rejected file's name (in any case, as a contract matches it),
    dataset (or pipeline, for a trigger) and day written after the rejected copy ("" when none). `days` keeps each
    day folder's listing: one per day.

    Both times are the store's own. Azure's moves with a metadata write too, so a file archived before the rejection
    and given its run after it reads as a correction: a listing's hint, never a decision."""
    name, day = report.get("file"), report.get("business_date")
    dataset, pipeline = report.get("dataset"), report.get("pipeline")
    folder = (
        dataset if isinstance(dataset, str) else f"{BATCHES_FOLDER}/{pipeline}" if isinstance(pipeline, str) else ""
    )
    if not (folder and isinstance(name, str) and name and "/" not in name and isinstance(day, str) and info.written):
        return ""
    try:
        business_date = date.fromisoformat(day)
    except ValueError:
        return ""
    # A trigger the overdue sweep moved here from the archive is reported under its archived, maybe qualified, name.
    day_folder, _, archived_name = archive_path(folder, business_date, unqualified_name(name)).rpartition("/")
    if day_folder not in days:
        days[day_folder] = list(_listed(gate, gate.settings.archive, f"{day_folder}/"))
    later = [
        found
        for found in days[day_folder]
        if found.written > info.written and same_name(unqualified_name(found.path.rsplit("/", 1)[-1]), archived_name)
    ]
    newest = max(later, key=lambda found: found.written, default=None)
    return f"{newest.container}/{newest.path}" if newest else ""


def _listed(gate: Gate, location: Location, prefix: str) -> Iterator[ObjectInfo]:
    """The location's objects under `prefix`; a container that does not exist is named by its setting."""
    try:
        yield from gate.store.list(location.container, location.path(prefix))
    except LocationMissing as exc:
        raise LocationMissing(describe_missing_locations(gate.settings, gate.store) or str(exc)) from exc


def reprocess_rejected(gate: Gate, path: str) -> Outcome:
    """Move a fixed rejected file back through the gate: into landing, then handled as its event would be.

    The old report is kept beside it under a time-stamped name, so its history stays readable.
    """
    rejected, landing, store = gate.settings.rejected, gate.settings.landing, gate.store
    container, _, relative = path.partition("/")
    if container != rejected.container or not relative.startswith(rejected.prefix):
        raise UsageError(f"{path} is not in the rejected location {rejected}")
    inside = relative.removeprefix(rejected.prefix)
    if not inside.strip("/") or inside.endswith("/"):
        raise UsageError(f"{path} names a folder; give a rejected file's path (`filegate rejected` lists them)")
    if inside.endswith(REPORT_SUFFIX):
        # A report put through the gate would be rejected as a file of its own, and the file it described would
        # lose its reasons in the listing.
        raise UsageError(f"{path} is a report; reprocess the file it describes: {path.removesuffix(REPORT_SUFFIX)}")
    info = store.stat(container, relative)
    if info is None:
        aside = reports_set_aside(gate.store, container, relative)
        if aside:
            # Reprocessed by an earlier run of this command (its report set aside): not a typo, and what to do next
            # depends on how far that run got, which only the other listings say.
            raise FilegateError(
                f"{path} was reprocessed already (its report is kept as {container}/{aside[-1]}): through the gate, "
                "`filegate archived` lists it (a trigger: `filegate batches`), or `filegate rejected` if rejected "
                "again; a run interrupted before the gate took it left it in landing, which `filegate sweep "
                "--older-than 0` puts through the gate"
            )
        raise UsageError(f"{path}: no such rejected file (`filegate rejected` lists them)")
    source = unquote(info.metadata.get(META_SOURCE, ""))
    source_container, _, source_path = source.partition("/")
    if source_container != landing.container or not source_path.startswith(landing.prefix) or not source_path:
        # Fixed by an upload over it, which keeps no metadata (or a trigger the overdue sweep moved here from
        # the archive), or uploaded where landing no longer is (its prefix changed since: no event or sweep
        # would see it there): back into landing under the name it was uploaded with, which its report keeps
        # (the rejected name may be the contract's spelling, escaped, or a hash of a long one), without an
        # archived version's tag.
        uploaded = read_report(gate.store, container, report_path(relative)).get("file")
        name = unqualified_name(uploaded) if isinstance(uploaded, str) and uploaded and "/" not in uploaded else None
        source_container = landing.container
        source_path = landing.path(name or unqualified_name(relative.rsplit("/", 1)[-1]))
    # Create-only: a newer upload under that name in landing wins, and this one waits.
    try:
        mark = {META_REPROCESSED: quote(f"{container}/{relative}", safe="/")}
        placed = store.copy(container, relative, info.version, source_container, source_path, mark)
    except DestinationExists:
        placed = _own_copy_in_landing(gate, info, source_container, source_path)
    old_report = store.stat(container, report_path(relative))
    if old_report is not None:
        set_report_aside(store, old_report, gate.clock())
    elif not reports_set_aside(store, container, relative):
        # Its report was lost (a crash between the copy and the report's write): the note set aside in its place
        # lets a second run say that the file was reprocessed, rather than call its path unknown.
        note_no_report_aside(store, info, gate.clock())
    store.delete(container, relative, info.version)
    try:
        return handle_upload(gate, upload_from_object(store, placed))
    except RunNotStarted:
        raise  # archived: the command says what starts its run
    except FilegateError as exc:
        # No longer a rejected file, so this command cannot find it again: what takes it from landing is the sweep.
        reason = (
            f"moved into landing, where its handling failed: {exc}; the next sweep puts it through the gate "
            "(`filegate sweep --older-than 0` now)"
        )
        landed = f"{placed.container}/{placed.path}"
        return Outcome(FAILED, source=landed, reasons=(reason,), to_fix=exits.needs_fix(exc))


def _own_copy_in_landing(gate: Gate, info: ObjectInfo, container: str, path: str) -> ObjectInfo:
    """Landing's object of the name when it holds the rejected file's bytes: this command's own copy, left by a run
    interrupted before it deleted the rejected file, to go on with. Another file wins, and this one waits."""
    store = gate.store
    found = store.stat(container, path)
    if found is None or not found.copy_finished or (found.size, found.content_md5) != (info.size, info.content_md5):
        same = False
    elif store.computes_md5 and found.content_md5:
        same = True
    else:
        # Byte for byte where an MD5 may be a client's claim (Azure) or missing on both sides (a GCS composite
        # object has none): the rejected file is deleted on this answer. Landing's object is read at its version:
        # replaced meanwhile, it is another upload.
        try:
            same = same_bytes(store, info, found)
        except SourceChanged:
            same = False
    if found is None or not same:
        raise DestinationExists(
            f"landing already holds another file named {container}/{path}: `filegate sweep --older-than 0` puts it "
            "through the gate, then reprocess this one again"
        )
    return found


def archived_files(
    gate: Gate, dataset: str | None = None, day: str | None = None, *, ask_runs: bool = True
) -> Iterator[ArchivedFile]:
    """Archived files (optionally of one dataset and business day), each with its run and the run's state
    (UNKNOWN for every run unless `ask_runs`)."""
    archive = gate.settings.archive
    prefix = dataset + "/" if dataset else ""
    if dataset and day:
        prefix += day.replace("-", "/") + "/"
    for info in _listed(gate, archive, prefix):
        parts = archive.relative(info.path).split("/")
        business_date = "-".join(parts[1:4]) if len(parts) >= 5 else ""
        # `_batches`, `_runs_pending`: Filegate's own folders (no dataset's name starts with `_`).
        if (day and business_date != day) or parts[0].startswith("_"):
            continue
        if gate.pipelines.batch_owned(parts[0]):
            # A member runs with its batch: `filegate batches` shows that run.
            yield ArchivedFile(f"{info.container}/{info.path}", parts[0], business_date, info.size, None, IN_BATCH)
            continue
        run_id = _run_id(info)
        yield ArchivedFile(
            path=f"{info.container}/{info.path}",
            dataset=parts[0],
            business_date=business_date,
            size=info.size,
            run_id=run_id,
            state=run_state_of(gate, run_id) if ask_runs or run_id is None else UNKNOWN,
            no_redrive=redrive_refusal(gate, info) if run_id is None else "",
        )


def _run_id(info: ObjectInfo) -> int | None:
    raw = info.metadata.get(META_RUN_ID, "")
    return int(raw) if (raw.isascii() and raw.isdigit()) else None


def run_state_of(gate: Gate, run_id: int | None) -> str:
    """The run's state from the Jobs API: NO RUN without one, UNKNOWN when the Jobs API cannot say."""
    if run_id is None:
        return NO_RUN
    from filegate.jobs import DatabricksJobs, never_ran, run_state

    if isinstance(gate.jobs, DatabricksJobs):
        # A Jobs API that does not answer stops the listing within seconds (TransientError, exit 75), rather
        # than after the SDK's retries for each file, every one then UNKNOWN. Asked before the client is
        # built, which may already ask the host.
        gate.jobs.reachable()
    client = getattr(gate.jobs, "client", None)
    if client is None:
        return UNKNOWN

    from databricks.sdk.errors.base import DatabricksError

    from filegate.jobs import VIEW_GRANT, named_error, not_found, retries_spent

    try:
        run = client.jobs.get_run(run_id)
    except DatabricksError as exc:
        # Credentials refused, a permission missing, a host that is no workspace, an outage behind a host that
        # answers: every other file's runs/get meets it too (each after the SDK's retry window), and the command
        # exits by it, not with every run UNKNOWN and exit 0.
        named = named_error(
            exc, str(client.config.host or ""), None, grant=VIEW_GRANT, auth_type=client.config.auth_type
        )
        if isinstance(named, SettingsError) or not not_found(exc):
            raise named from exc
        # A run gone (after 60 days): only its state is unknown; the listing goes on.
        log.warning("runs/get %s failed: %s", run_id, exc)
        return UNKNOWN
    except (TimeoutError, OSError) as exc:
        host = client.config.host
        message = f"the Jobs API at {host} did not give run {run_id} within its retries: {retries_spent(exc)}"
        raise TransientError(message) from exc
    except Exception as exc:
        # Any other failure to ask leaves the state unknown; the listing goes on.
        log.warning("runs/get %s failed: %s", run_id, exc)
        return UNKNOWN
    # A skipped run reads as skipped (re-driven with a run of its own) whatever its legacy result says.
    return never_ran(run) or run_state(run)


def unfinished(files: Iterator[ArchivedFile]) -> Iterator[ArchivedFile]:
    """Archived files without a successful run: no run, a failed run, or a state nobody could read."""
    for found in files:
        if found.state not in ("SUCCESS", IN_BATCH) and found.state not in ACTIVE_STATES:
            yield found


def startable(found: ArchivedFile) -> bool:
    """Whether a re-drive starts the file's run: it has none, nobody could say how its run went, or Databricks
    skipped it (a run that never ran: nothing to repair)."""
    return found.run_id is None or found.state == UNKNOWN or found.state in NEVER_RAN_STATES


def redrive_files(gate: Gate, files: Sequence[ArchivedFile], untried: list[ArchivedFile]) -> Iterator[Outcome]:
    """Start each file's missing run in turn (`_start_missing_run`); stops after a run-now that failed and may
    pass when asked again (the Jobs API did not answer, or answered an outage), putting the files not tried
    into `untried`: the SDK has spent its retry window (about 20 s) on it, and each file after it would spend
    its own. A run refused for a setting or a permission is said at once, and the others go on, as in
    `backfill_files`."""
    for done, found in enumerate(files, start=1):
        try:
            outcome = _start_missing_run(gate, found)
        except RunNotStarted as exc:
            yield Outcome.run_not_started(exc, found.path)
            if exits.exit_code(exc) == exits.TRY_AGAIN:
                untried.extend(files[done:])
                return
            continue
        yield outcome


def _start_missing_run(gate: Gate, found: ArchivedFile) -> Outcome:
    """Start the missing run of an archived file with its own token, or one replacing a run Databricks skipped;
    a failed run is named, never run twice. RunNotStarted when run-now fails."""
    container, _, path = found.path.partition("/")
    if not startable(found):
        reason = (
            f"run {found.run_id} ended {found.state}; the file's token cannot start a second run: fix the cause, "
            f"then repair run {found.run_id} in Databricks (`filegate status {found.run_id}` shows why it failed)"
        )
        return Outcome(
            FAILED,
            source=found.path,
            dataset=found.dataset,
            business_date=found.business_date or None,
            archived_path=found.path,
            run_id=found.run_id,
            reasons=(reason,),
        )
    info = gate.store.stat(container, path)
    if info is None:
        return Outcome(FAILED, source=found.path, reasons=("the archived file is gone",))
    skipped = found.run_id if found.state in NEVER_RAN_STATES else None
    return redrive_archived(gate, info, replaces=skipped)


def run_needs_repair(outcome: Outcome) -> bool:
    """A re-drive that found the file's run ended without success: only a repair in Databricks finishes it."""
    return outcome.status == FAILED and outcome.run_id is not None


def _redrive_needs_a_person(outcome: Outcome) -> bool:
    """A run to repair, or an archived file no re-drive starts (`redrive_cannot_start`)."""
    return run_needs_repair(outcome) or redrive_cannot_start(outcome)


@dataclass(frozen=True)
class DeadLetter:
    """An event the watcher gave up on, with why."""

    path: Path
    reason: str


def dead_letters(folder: Path) -> list[DeadLetter]:
    """The dead-lettered events in a folder (the handled ones, moved to `handled/`, are left out)."""
    letters = []
    for letter in sorted(folder.glob("*.json")):
        reason_file = letter.with_suffix(".reason.txt")
        try:
            # Damaged (cut mid-character, edited by hand), it still says why as far as it can: the letter is the work.
            reason = reason_file.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            reason = "(no reason recorded)"
        except OSError as exc:
            reason = f"(the reason cannot be read: {exc.strerror or exc})"
        letters.append(DeadLetter(letter, reason))
    return letters


def redrive_dead_letter(gate: Gate, letter: DeadLetter) -> Iterator[Outcome]:
    """Handle a dead-lettered event; once handled, move it (and its reason) to `handled/`. Yields its outcomes.

    A letter that cannot be read (truncated, edited by hand) is a FAILED outcome and stays where it is. One
    whose handling fails stays too: the outcomes of its events that ended come first, then the failure.
    """
    try:
        # A letter edited by hand may start with a byte order mark (as `filegate handle` reads an event file).
        payload = json.loads(letter.path.read_text(encoding="utf-8-sig"))
    except (ValueError, OSError) as exc:
        # Reading it again fails the same way: a person fixes or removes it, and the other letters go on.
        reason = f"{letter.path} is not a readable event ({exc}): fix it or remove it"
        yield Outcome(FAILED, source=str(letter.path), reasons=(reason,))
        return
    clouds = event_stores(payload)
    if clouds and gate.store.kind not in clouds:
        # Both watchers keep their letters in one folder by default: handled here, the other cloud's events would
        # be ignored and the letter moved to handled/ with nothing done.
        [kind] = clouds
        target = next(name for name, store in TARGETS.items() if store == kind)
        reason = (
            f"a {kind} event, and this command serves {gate.store.kind} storage: it stays, for "
            f"`filegate deadletters --redrive --target {target}`"
        )
        yield Outcome(IGNORED, source=str(letter.path), reasons=(reason,))
        return
    outcomes: list[Outcome] = []
    try:
        handle_payload(gate, payload, outcomes)
    except FilegateError:
        yield from outcomes  # a file its other events rejected is reported, not found later as a duplicate
        raise
    handled = letter.path.parent / HANDLED
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        handled.mkdir(exist_ok=True)
        # The letter last: one that cannot be moved stays in place, as the failure below says, for the next redrive.
        for path in (letter.path.with_suffix(".reason.txt"), letter.path):
            if path.exists():
                path.rename(handled / f"{path.stem}.{stamp}{path.suffix}")
    except OSError as exc:
        # A folder the watcher's account owns, say: the events are done, and the other letters go on. Left in
        # place, the letter is handled again by the next redrive, which finds its events done (duplicate).
        yield from outcomes
        reason = (
            f"its events were handled, but it cannot be moved into {handled} ({exc.strerror or exc}): let this "
            "account write there, or move the letter and its reason by hand"
        )
        yield Outcome(FAILED, source=str(letter.path), reasons=(reason,))
        return
    yield from outcomes


def backfill_files(gate: Gate, files: list[Path]) -> Iterator[tuple[Path, Outcome, int]]:
    """Upload each local file into landing (create-only) and put it through the gate at once; each file's
    outcome and exit code (`exits.TRY_AGAIN` when running again may finish it, `exits.FAILED` when not).

    Stops after a file whose run did not start and may when asked again (the Jobs API did not answer, or
    answered an outage): the SDK has spent its retry window (about 20 s) on it, and each file after it
    would spend its own. The ones not sent stay where they are, for the same command again, which finds
    the files already through the gate identical. A run refused for a setting or a permission is said at
    once, and the others go on (a pipeline's members may need another job than a dataset's files).
    """
    landing = gate.settings.landing
    for file in files:
        destination = landing.path(file.name)
        sent = _send(gate, file, destination)
        if isinstance(sent, tuple):
            yield file, *sent
            continue
        placed = sent
        try:
            outcome = handle_upload(gate, upload_from_object(gate.store, placed))
            # Archived, but its run never ran (Databricks skipped it): not loaded until the sweep replaces it. No
            # retry window was spent on it, so the files after it go on.
            yield file, outcome, exits.TRY_AGAIN if outcome.status == RUN_PENDING else exits.OK
        except RunNotStarted as exc:
            pending = Outcome.run_not_started(exc, destination)
            code = exits.exit_code(exc)
            yield file, pending, code
            if code == exits.TRY_AGAIN:
                return
        except FilegateError as exc:
            yield file, Outcome(FAILED, source=str(file), reasons=(str(exc),)), exits.exit_code(exc)


# How often a file is sent again when landing refused it for a file of its name that left before it was looked at.
SEND_ATTEMPTS = 3


def _send(gate: Gate, file: Path, destination: str) -> ObjectInfo | tuple[Outcome, int]:
    """Upload the local file into landing (create-only): landing's object to put through the gate, or the file's
    outcome and exit code when it is not to go through now."""
    landing = gate.settings.landing
    for _ in range(SEND_ATTEMPTS):
        try:
            # Streamed past the store's single-request size: a file of many GiB is never held whole in memory.
            with file.open("rb") as body:
                before = os.fstat(body.fileno())
                try:
                    placed = gate.store.put(landing.container, destination, body, "text/csv", {})
                except DestinationExists:
                    placed = None
                finally:
                    after = os.fstat(body.fileno())
        except FilegateError as exc:
            if _changed(before, after) and not isinstance(exc, DamagedLeftBehind):
                # Cut short while it was read (the store's error then blames the request: on Azure a signature
                # over the length measured first): nothing was written, and the file is what to wait for.
                reason = f"changed while it was sent (still being written?); nothing was written: {exc}"
                return Outcome(FAILED, source=str(file), reasons=(reason,)), exits.TRY_AGAIN
            return Outcome(FAILED, source=str(file), reasons=(str(exc),)), exits.exit_code(exc)
        except OSError as exc:  # the local file: unreadable, or gone since it was listed
            return Outcome(FAILED, source=str(file), reasons=(f"cannot read {file}: {exc}",)), exits.FAILED
        if placed is not None:
            return _changed_while_sent(gate, file, placed) if _changed(before, after) else placed
        found = _already_in_landing(gate, file, destination)
        if found is not None:
            return found
        # Gone between the refusal and the look: the gate took it (another backfill of this folder at once, a
        # deployed function). Sent again, these bytes find what the gate decided (identical): it failed as
        # "another file" that `filegate sweep` should take, and landing held nothing.
    reason = f"landing refused {destination} {SEND_ATTEMPTS} times for a file of its name that was gone when looked at"
    return Outcome(FAILED, source=str(file), reasons=(f"{reason}: backfill it again",)), exits.TRY_AGAIN


def _already_in_landing(gate: Gate, file: Path, destination: str) -> ObjectInfo | tuple[Outcome, int] | None:
    """Landing holds a file of this name. These very bytes were left by an earlier backfill (interrupted, or its
    run did not start): the object, to go on with. Another file is the sweep's, and this one waits (an outcome).
    None: landing holds no file of the name any more."""
    try:
        held = gate.store.stat(gate.settings.landing.container, destination)
        if held is None:
            return None
        found = _same_file_in_landing(held, file)
    except FilegateError as exc:
        reason = f"landing already holds a file named {destination}, which could not be compared: {exc}"
        return Outcome(FAILED, source=str(file), reasons=(reason,)), exits.exit_code(exc)
    except OSError as exc:
        return Outcome(FAILED, source=str(file), reasons=(f"cannot read {file}: {exc}",)), exits.FAILED
    if found is None:
        reason = (
            f"landing already holds another file named {destination}: `filegate sweep --older-than 0` "
            "puts it through the gate, then backfill this one again"
        )
        return Outcome(FAILED, source=str(file), reasons=(reason,)), exits.FAILED
    return found


def _same_file_in_landing(found: ObjectInfo, file: Path) -> ObjectInfo | None:
    """Landing's object of this name when it holds the local file's bytes (its size and MD5), else None."""
    if not found.content_md5 or found.size != file.stat().st_size:
        return None
    with file.open("rb") as body:
        _, md5 = size_and_md5(body)
    return found if base64.b64decode(found.content_md5) == md5 else None


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether an open file was written to between two looks at it (its size or modification time moved)."""
    return (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)


def _changed_while_sent(gate: Gate, file: Path, placed: ObjectInfo) -> tuple[Outcome, int]:
    """A file written to while it was uploaded (still being written?): the landing object may hold part of it,
    so it is removed from landing before the gate takes it as the file, and the operator backfills it again.

    A deployed function may have taken the upload first (its event is quicker than this check): then the
    part is archived and runs, and the complete file, backfilled again, is archived beside it and runs after it.
    """
    # The reasons lead with what to do: the command's line shows the file, and cuts a long reason.
    what = "changed while it was sent (still being written?)"
    try:
        removed = gate.store.delete(placed.container, placed.path, placed.version)
    except FilegateError as exc:
        reason = f"{what}; delete its upload {placed.container}/{placed.path} by hand, it could not be removed: {exc}"
        return Outcome(FAILED, source=str(file), reasons=(reason,)), exits.FAILED
    if not removed:
        reason = f"{what}; a function took its upload from landing first: see `filegate archived`, then backfill again"
        return Outcome(FAILED, source=str(file), reasons=(reason,)), exits.FAILED
    reason = (
        f"{what}; its upload was removed from landing: backfill it again once complete (`filegate archived` "
        "lists a part a function took first)"
    )
    return Outcome(FAILED, source=str(file), reasons=(reason,)), exits.TRY_AGAIN


# The commands. Each builds the gate from the environment, as `filegate sweep` does.


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    from filegate.settings import settings_help

    parser = argparse.ArgumentParser(
        prog=f"filegate {prog}",
        description=description,
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_target_option(parser)
    return parser


def _gate(args: argparse.Namespace, *, check: bool = False) -> Gate:
    from filegate.settings import Settings
    from filegate.stores import open_gate

    gate = open_gate(args.target, Settings.from_env(), check=check)
    gate.ensure_ready()
    return gate


def _run_command(prog: str, body: Callable[[], int]) -> int:
    from filegate.cli import quiet_outcome_log

    try:
        # Each command prints what became of each file; the outcome log would say it again on stderr.
        with quiet_outcome_log():
            return body()
    except FilegateError as exc:
        return exits.report_failure(f"filegate {prog}", exc)


def _print_outcomes(
    outcomes: Iterable[Outcome], needs_repair: Callable[[Outcome], bool] = lambda _: False, need: str = "need a repair"
) -> int:
    """Print each outcome; CONFIG if one waits for a setting or a permission (`to_fix`), else FAILED if one needs a
    repair (running again fails alike; `need` says what it needs), else TRY_AGAIN if one is unfinished."""
    printed = []
    for outcome in outcomes:
        # As it comes: when a later one raises, what is already done (a letter moved to handled/) is still told.
        print(outcome.to_json(), flush=True)
        printed.append(outcome)
    # Each kind is told (a run to repair must not hide a run that is only pending); the most urgent sets the exit.
    to_fix = [o for o in printed if o.to_fix]
    repair = [o for o in printed if not o.to_fix and needs_repair(o)]
    left = [o for o in printed if not o.to_fix and not needs_repair(o) and o.status in (FAILED, RUN_PENDING)]
    if to_fix:
        print(
            f"{len(to_fix)} file(s) wait for a setting or a permission to be fixed; see their reasons", file=sys.stderr
        )
    if repair:
        print(f"{len(repair)} file(s) {need}; see their reasons", file=sys.stderr)
    if left:
        print(f"{len(left)} file(s) not finished; see their reasons", file=sys.stderr)
    return exits.CONFIG if to_fix else exits.FAILED if repair else exits.TRY_AGAIN if left else exits.OK


def rejected_main(argv: list[str]) -> int:
    """`filegate rejected`: rejected files with their reasons; `--reprocess PATH` sends a fixed one through again."""
    from filegate.status import render_table

    parser = _parser("rejected", rejected_main.__doc__ or "")
    parser.add_argument("--dataset", help="only this dataset's rejected files (`_unmatched` for no contract)")
    parser.add_argument("--reprocess", metavar="PATH", help="container/path of a rejected file to put through again")
    args = parser.parse_args(argv)
    if args.reprocess and args.dataset:
        # Taken and ignored, it read as a check that the file was that dataset's.
        parser.error("--dataset narrows the listing; --reprocess takes one file's path alone: give one of them")

    def body() -> int:
        gate = _gate(args, check=bool(args.reprocess))
        # A pipeline's name is a folder here: its rejected triggers.
        _whole_dataset(gate, args.dataset, *gate.pipelines, UNMATCHED)
        if args.reprocess:
            try:
                outcome = reprocess_rejected(gate, args.reprocess)
            except RunNotStarted as exc:
                # Archived: this command cannot find it again (it is no longer rejected); the sweep starts its
                # run once run-now answers again, or `filegate reconcile --redrive` after the cause is fixed.
                reason = (
                    f"{exc}; once the cause is fixed, the next sweep starts it, or `filegate reconcile --redrive` now"
                )
                outcome = Outcome.run_not_started(exc, args.reprocess, reason=reason)
            return _print_outcomes([outcome], lambda done: needs_a_look(gate, done), "need a look")
        found = list(rejected_files(gate, args.dataset))
        _known_dataset(gate, args.dataset, found, *gate.pipelines, UNMATCHED)
        rows = [[f.path, f.dataset, f.rejected_at, _since(f), "; ".join(f.reasons)] for f in found]
        if rows:
            print(render_table(("REJECTED FILE", "DATASET", "REJECTED AT", "SINCE", "REASONS"), rows))
        fixed = sum(bool(f.corrected_by) for f in found)
        # Still listed (the file and its report are the history), but no longer a file to fix: a member's batch may
        # still hold its correction as a late member, which `filegate batches` shows.
        of_fixed = f", {fixed} corrected since by an upload archived after it" if fixed else ""
        print(f"{len(found)} rejected file(s){of_fixed}")
        return exits.OK

    return _run_command("rejected", body)


def _since(found: RejectedFile) -> str:
    return f"corrected: archived {found.corrected_by}" if found.corrected_by else ""


def _dataset_names(gate: Gate, *others: str) -> str:
    return ", ".join(sorted({*gate.contracts, *others}))


def _whole_dataset(gate: Gate, dataset: str | None, *others: str, more: str = "") -> None:
    """A --dataset is one dataset's whole name (exit 2 otherwise): the listing takes it as a folder, so
    `orders/2025` listed that year of `orders` as if it were the dataset, and an empty one (an unset
    variable) listed every dataset's files."""
    if dataset is None or (dataset.strip() and "/" not in dataset):
        return
    raise UsageError(
        f"--dataset {dataset!r} is no dataset's whole name (it takes: {_dataset_names(gate, *others)}){more}"
    )


def _known_dataset(gate: Gate, dataset: str | None, found: Sequence[object], *others: str) -> None:
    """A --dataset that no contract names (nor `others`: the folders a listing has besides datasets') and that
    finds nothing is a typo, not an all-clear (exit 2); a dataset whose contract was removed still lists what it
    left behind."""
    if dataset and not found and dataset not in {*gate.contracts, *others}:
        known = _dataset_names(gate, *others)
        raise UsageError(f"--dataset {dataset}: no dataset of that name, and nothing under it (it takes: {known})")


def _no_pipeline(gate: Gate, dataset: str | None) -> None:
    """Refuse a pipeline's name (exit 2): it is no folder of the archive (its members' are, and its triggers are under
    `_batches`), so as a --dataset it listed nothing, exit 0, as if the pipeline had nothing archived."""
    pipeline = gate.pipelines.get(dataset) if dataset and dataset not in gate.contracts else None
    if pipeline is not None:
        raise UsageError(
            f"--dataset {dataset} is a pipeline: its members' files list under their datasets "
            f"({', '.join(pipeline.members)}), its batches and their runs with `filegate batches --pipeline {dataset}`"
        )


def needs_a_look(gate: Gate, outcome: Outcome) -> bool:
    """A reprocessed file rejected again (still bad, or its contract gone), ignored, archived without its run, or
    left in landing by a failure: a person looks (running the same command again cannot help; it is no longer a
    rejected file). So does a pipeline's member rejected again, which reads `blocked` (its batch waits on it), or
    archived after its batch's seal and not sealed into a new revision: held, or ruled out by the trigger, it is
    not loaded until a person decides (its reason says how)."""
    if outcome.status in (REJECTED, IGNORED, RUN_PENDING, FAILED):
        return True
    if outcome.rejected_path is not None and outcome.archived_path is None:
        return True
    return outcome.status == LATE_MEMBER and not seal_holds(gate, outcome)


def archived_main(argv: list[str]) -> int:
    """`filegate archived`: archived files per dataset and business date, each with its run and state."""
    from filegate.cli import business_date
    from filegate.status import render_table

    parser = _parser("archived", archived_main.__doc__ or "")
    parser.add_argument("--dataset", help="only this dataset")
    parser.add_argument(
        "--date",
        type=business_date,
        help="only this business date, YYYY-MM-DD (alone: every dataset's files of that date)",
    )
    args = parser.parse_args(argv)

    def body() -> int:
        gate = _gate(args)
        _whole_dataset(gate, args.dataset, more="; one business date: --date YYYY-MM-DD")
        _no_pipeline(gate, args.dataset)
        day = args.date.isoformat() if args.date else None
        found = list(archived_files(gate, args.dataset, day, ask_runs=False))
        _known_dataset(gate, args.dataset, found)
        # The Jobs API is asked only for files that have a run (files without one, or a batch's, list without
        # it), and what landed is listed in an outage too: without the runs' states, then exit 75 (or 2 when
        # Databricks is not configured), as `filegate batches` does.
        unanswered: FilegateError | None = None
        try:
            found = [replace(f, state=run_state_of(gate, f.run_id)) if f.run_id is not None else f for f in found]
        except (TransientError, SettingsError) as exc:
            unanswered = exc
        rows = [[f.path, f.dataset, f.business_date, f.run_id, f.state] for f in found]
        if rows:  # the count below says there are none; a header over nothing reads as a listing cut short
            print(render_table(("ARCHIVED FILE", "DATASET", "DATE", "RUN", "STATE"), rows))
        unknown = sum(f.state == UNKNOWN for f in found)
        of_unknown = f", {unknown} whose run's state the Jobs API did not give" if unknown else ""
        failed = sum(f.state not in (NO_RUN, UNKNOWN) for f in unfinished(iter(found)))
        of_failed = f", {failed} whose run ended without success (`filegate reconcile`)" if failed else ""
        without = sum(f.state == NO_RUN for f in found)
        print(f"{len(found)} archived file(s), {without} without a run{of_unknown}{of_failed}")
        if unanswered is not None:
            listed = "listed without the runs' states"
            return exits.report_failure("filegate archived", unanswered, config_note=f" ({listed})", try_again=listed)
        return exits.OK

    return _run_command("archived", body)


def reconcile_main(argv: list[str]) -> int:
    """`filegate reconcile`: every archived file without a successful run; `--redrive` starts the missing runs."""
    from filegate.status import render_table

    parser = _parser("reconcile", reconcile_main.__doc__ or "")
    parser.add_argument("--dataset", help="only this dataset")
    parser.add_argument("--redrive", action="store_true", help="start missing runs (same token: never a second run)")
    args = parser.parse_args(argv)

    def body() -> int:
        gate = _gate(args, check=args.redrive)
        _whole_dataset(gate, args.dataset)
        _no_pipeline(gate, args.dataset)
        listed = list(archived_files(gate, args.dataset))
        _known_dataset(gate, args.dataset, listed)
        found = list(unfinished(iter(listed)))
        if not args.redrive:
            rows = [[f.path, f.run_id, f.state] for f in found]
            if rows:
                print(render_table(("ARCHIVED FILE", "RUN", "STATE"), rows))
            # Only a file without a run, whose run's state is unknown or whose run Databricks skipped is
            # re-driven: a run that ended without success is repaired in Databricks, and --redrive only names it.
            to_start = sum(startable(f) and not f.no_redrive for f in found)
            repair = sum(not startable(f) for f in found)
            advice = [f"{to_start} to start: `filegate reconcile --redrive`"] if to_start else []
            advice += [f"{repair} whose run failed: repair the run in Databricks"] if repair else []
            # Counted "to start", they were ignored by --redrive (exit 1) and counted again by every listing.
            stuck = Counter(f.no_redrive for f in found if f.no_redrive)
            advice += [f"{count} that no re-drive starts ({why})" for why, count in sorted(stuck.items())]
            print("; ".join([f"{len(found)} archived file(s) without a successful run", *advice]))
            return exits.FAILED if found else exits.OK
        if not found:
            # Said on stderr, as the re-drive's other summaries are: stdout holds only outcomes, one JSON line each.
            of = f" of {args.dataset}" if args.dataset else ""
            print(
                f"filegate reconcile: no archived file{of} without a successful run: nothing to re-drive",
                file=sys.stderr,
            )
            return exits.OK
        untried: list[ArchivedFile] = []
        code = _print_outcomes(redrive_files(gate, found, untried), _redrive_needs_a_person, "need a repair or a look")
        if untried:
            print(
                f"filegate reconcile: stopped after a run that did not start; {len(untried)} file(s) not tried: run "
                "the same command again (nothing runs twice)",
                file=sys.stderr,
            )
        return code

    return _run_command("reconcile", body)


def backfill_selection(gate: Gate, folder: Path, pattern: str | None) -> tuple[list[Path], list[Path]]:
    """The files of `folder` to backfill, and the ones left out: by `pattern` (a glob) when given, else every
    file a dataset contract or a pipeline's trigger pattern names (a pipeline's folder holds both), or that
    looks meant for a contract (`Contracts.guess`: the gate rejects it with a report that says what is wrong)."""
    if pattern is not None and ".." in PurePath(pattern).parts:
        # A glob walks up as readily as down: '../*' sent the folder's neighbours through the gate.
        raise UsageError(
            f"--pattern {pattern!r} reaches outside {folder} ('..'): give one within it, like '*.csv' or '**/*.csv', "
            "or backfill the other folder itself"
        )
    try:
        found = sorted(folder.glob("*" if pattern is None else pattern))
    except (ValueError, NotImplementedError) as exc:  # an empty or absolute pattern, a misplaced `**`
        raise UsageError(
            f"--pattern {pattern!r} is not a glob within the folder ({exc}): give one like '*.csv' or '**/*.csv'"
        ) from exc
    files = [path for path in found if path.is_file()]
    if pattern is not None:
        return files, []
    triggers = [pipeline.trigger_regex for pipeline in gate.pipelines.values()]
    contracts = gate.contracts
    ours = [
        f for f in files if contracts.match(f.name) or contracts.guess(f.name) or any(t.match(f.name) for t in triggers)
    ]
    taken = set(ours)
    # Subfolders are left out too, and said so: their files are taken only by a --pattern such as '**/*.csv'.
    return ours, [f for f in found if f not in taken]


def backfill_main(argv: list[str]) -> int:
    """`filegate backfill FOLDER`: existing files through the gate, with progress and a summary."""
    parser = _parser("backfill", backfill_main.__doc__ or "")
    parser.add_argument("folder", type=Path, help="a folder of files (each is uploaded into landing, then handled)")
    parser.add_argument(
        "--pattern",
        help="which files, as a glob (default: every file a dataset contract or a pipeline's trigger names)",
    )
    args = parser.parse_args(argv)

    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    try:
        os.scandir(args.folder).close()  # a glob of a folder it may not read finds nothing, and says only that
    except OSError as exc:
        parser.error(f"cannot read {args.folder}: {exc.strerror or exc}")

    def body() -> int:
        gate = _gate(args, check=True)
        files, left_out = backfill_selection(gate, args.folder, args.pattern)
        if left_out:
            shown = [f"{f.name}/" if f.is_dir() else f.name for f in left_out]
            names = ", ".join(shown[:5]) + (", ..." if len(shown) > 5 else "")
            print(
                f"filegate backfill: left out {len(left_out)}: {names} (no contract or trigger pattern names "
                "them; --pattern picks files by glob, and '**/*.csv' takes those in folders too)",
                file=sys.stderr,
            )
        # Every file lands under its own name: two of one name (in two folders) would meet in landing.
        paths_of: dict[str, list[Path]] = {}
        for file in files:
            paths_of.setdefault(file.name, []).append(file)
        clashing = [paths for paths in paths_of.values() if len(paths) > 1]
        if clashing:
            pairs = "; ".join(", ".join(str(path) for path in paths) for paths in clashing[:3])
            print(
                f"filegate backfill: files of one name would meet in landing: {pairs}; backfill one folder at a time",
                file=sys.stderr,
            )
            return exits.CONFIG
        if not files:
            what = f"{args.pattern} files" if args.pattern else "files a contract or trigger pattern names"
            print(f"filegate backfill: no {what} in {args.folder}", file=sys.stderr)
            return exits.FAILED
        counts: dict[str, int] = {}
        codes = set()
        done = 0
        try:
            for done, (file, outcome, code) in enumerate(backfill_files(gate, files), start=1):
                counts[outcome.status] = counts.get(outcome.status, 0) + 1
                codes.add(code)
                print(f"[{done}/{len(files)}] {file.name}: {_progress(outcome)}", flush=True)
        except KeyboardInterrupt:
            codes.add(exits.INTERRUPTED)
        summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "none sent"
        print(f"backfill of {len(files)} file(s): {summary}")
        if done < len(files):
            why = "interrupted" if exits.INTERRUPTED in codes else "stopped after a run that did not start (see why)"
            print(
                f"filegate backfill: {why}; {len(files) - done} file(s) not sent: run the same command again "
                "(the files already through the gate show as identical, and nothing runs twice)",
                file=sys.stderr,
            )
        if exits.INTERRUPTED in codes:
            return exits.INTERRUPTED
        # A file a person must look at first (running again would fail it the same way) outranks one that may pass.
        return exits.most_urgent(codes)

    return _run_command("backfill", body)


def _progress(outcome: Outcome) -> str:
    """A backfilled file's status, its run, and every reason whole: the reason holds what to do."""
    run = f" run {outcome.run_id}" if outcome.run_id is not None else ""
    reasons = f": {'; '.join(outcome.reasons)}" if outcome.reasons else ""
    return f"{outcome.status}{run}{reasons}"


def _needs_a_person(outcome: Outcome) -> bool:
    """A redriven letter's outcome that running again cannot change: an unreadable letter (handling raises
    rather than ending FAILED), or a file its event left in landing because its bytes cannot be read."""
    return outcome.status == FAILED or left_in_landing(outcome)


# Where `python -m local_world watch` keeps them with its default --state-dir; made when it first gives up.
DEFAULT_DEAD_LETTERS = Path(".filegate/watch/deadletter")


def deadletters_main(argv: list[str]) -> int:
    """`filegate deadletters`: events the watcher gave up on, with why; `--redrive` handles them and marks them."""
    parser = _parser("deadletters", deadletters_main.__doc__ or "")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"the dead-letter folder (default {DEFAULT_DEAD_LETTERS}; the demo's: .filegate/demo/watch/deadletter)",
    )
    parser.add_argument("--redrive", action="store_true", help="handle each; move the handled ones to handled/")
    args = parser.parse_args(argv)
    if args.dir is None:
        args.dir = DEFAULT_DEAD_LETTERS
        if not args.dir.parent.is_dir():
            # Relative to where it runs: from another folder it read "0 dead letter(s)", as a clean watcher would.
            parser.error(
                f"no watcher keeps its state in {args.dir.parent} here ({Path.cwd()}): run this where "
                "`python -m local_world watch` runs, or give --dir"
            )
    elif not (args.dir.is_dir() or (args.dir.name == "deadletter" and args.dir.parent.is_dir())):
        # It read "0 dead letter(s)": a mistyped folder looked like a clean one. A watcher's state folder
        # without its deadletter folder (made when it first gives up) is one that has given up on nothing yet.
        parser.error(f"{args.dir} is not a folder (the watcher writes dead letters into <its --state-dir>/deadletter)")

    def body() -> int:
        letters = dead_letters(args.dir)
        if not args.redrive or not letters:  # nothing to re-drive asks no service, so an outage fails nothing here
            for letter in letters:
                print(f"{letter.path}: {letter.reason}")
            print(f"{len(letters)} dead letter(s) in {args.dir}")
            return exits.OK
        gate = _gate(args, check=True)
        outcomes = (outcome for letter in letters for outcome in redrive_dead_letter(gate, letter))
        return _print_outcomes(outcomes, _needs_a_person, need="need a person's look")

    return _run_command("deadletters", body)
