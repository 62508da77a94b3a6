"""Batches: pieces of a pipeline arrive one event at a time; the event that completes a batch seals it and
starts its one run.

The object store is the state: a batch is whatever its archive folder and its members' archive folders
hold. Every piece is placed before its own evaluation, the seal is create-only, and the run token is
derived from the revision and its sealed set, so two "last piece" events at once give one seal and one run.
The batch id is the day's, not the revision's: a later revision's run replaces what an earlier one loaded.

Layout in the archive (the folder is `Pipeline.batch_folder`):
    _batches/<pipeline>/<yyyy>/<mm>/<dd>/<trigger file>        the archived trigger (place_upload)
    _batches/<pipeline>/<yyyy>/<mm>/<dd>/_sealed.r<N>.json     create-only sealed manifest, revision N
    _batches/<pipeline>/<yyyy>/<mm>/<dd>/_run.r<N>.json        create-only note of revision N's run
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import PurePosixPath
from typing import Any

from filegate.archive import (
    REPORT_SUFFIX,
    Placement,
    find_placement,
    place_upload,
    rejected_path,
    report_path,
    report_reasons,
    unqualified_name,
    write_report,
)
from filegate.contracts import Contract, name_on, same_name
from filegate.errors import (
    DestinationExists,
    FilegateError,
    ObjectNotFound,
    RunNotStarted,
    SourceChanged,
    TransientError,
)
from filegate.events import Upload
from filegate.exits import needs_fix
from filegate.ingest import (
    DUPLICATE,
    IDENTICAL,
    IGNORED,
    REJECTED,
    RUN_PENDING,
    WARNING_STATUSES,
    Gate,
    Outcome,
    deleted_as_rejected,
    follow_changed,
    identical_copy,
    identical_rejected,
    kept_rejection_reason,
    newest_of_size,
    outcome_log,
    release_source,
)
from filegate.jobs import TOKEN_PREFIX, DatabricksJobs, TriggeredRun, never_ran, pipeline_batch_id
from filegate.manifest import MAX_TRIGGER_BYTES, Expected, Trigger, md5_hex, member_file, read_trigger
from filegate.pipelines import BATCHES_FOLDER, Pipeline
from filegate.settings import DEFAULT_BATCH_JOB_NAME, Location, Settings
from filegate.storage import META_SKIPPED, ObjectInfo, noted_skip, skip_note

log = logging.getLogger("filegate")

MEMBER_ARCHIVED = "member_archived"
WAITING = "waiting"
BLOCKED = "blocked"
SEALED = "sealed"
LATE_MEMBER = "late_member"
OVERDUE = "overdue"

SEAL_NAME = re.compile(r"^_sealed\.r(?P<revision>[0-9]+)\.json$")
RUN_NAME = re.compile(r"^_run\.r(?P<revision>[0-9]+)\.json$")
# The seal's list of the pipeline's optional members: a seal with it sealed every present optional member.
OPTIONAL_SEALED = "optional_members"
# The seal's record of the members an operator left out (`filegate batches --reseal --partial --without`): each
# one's dataset, whether it was blocked or missing, its rejected upload's report and reasons, when and in which
# revision. Later revisions carry it while the member has no qualifying version: it is missing, not blocking.
LEFT_OUT = "left_out"
_DATE_FOLDER = re.compile(r"(?P<yyyy>[0-9]{4})/(?P<mm>[0-9]{2})/(?P<dd>[0-9]{2})/[^/]+$")
# The job parameters a sealed batch's run-now passes (`_ensure_run`); a job without them cannot run the batch.
BATCH_JOB_PARAMETERS = ("source_path", "pipeline", "batch_id")


def batch_job_trigger(settings: Settings, *, client_of: DatabricksJobs | None = None) -> DatabricksJobs:
    """`run-now` on the batch job, found by FILEGATE_BATCH_JOB_ID or FILEGATE_BATCH_JOB_NAME; with `client_of` (the
    ingest job's trigger), through that trigger's client."""
    return DatabricksJobs(
        settings,
        client_of=client_of,
        job_id=settings.batch_job_id,
        job_name=settings.batch_job_name,
        setting="FILEGATE_BATCH_JOB_ID",
        parameters=BATCH_JOB_PARAMETERS,
        bundle_name=DEFAULT_BATCH_JOB_NAME,
    )


@dataclass(frozen=True)
class Member:
    """One expected member of a batch: the archived version it resolves to, or why there is none."""

    expected: Expected
    chosen: ObjectInfo | None = None
    superseded: tuple[ObjectInfo, ...] = ()
    # `container/path` of the report of its newest rejected upload, when no archived version qualifies.
    report: str | None = None
    note: str = ""
    # The seal's record of an operator's decision to go on without it (`LEFT_OUT`): missing then, not blocked.
    left_out: Mapping[str, Any] | None = None

    @property
    def state(self) -> str:
        if self.chosen:
            return "present"
        return "blocked" if self.report and self.left_out is None else "missing"

    @property
    def passed_over(self) -> tuple[ObjectInfo, ...]:
        """Versions archived after the chosen one that the trigger's statements rule out (a re-upload the
        trigger's size or MD5 does not describe): archived, and loaded only once a trigger describes them."""
        if self.chosen is None:
            return ()
        chosen = self.chosen
        return tuple(info for info in self.superseded if (info.written, info.path) > (chosen.written, chosen.path))

    def passed_over_note(self) -> str:
        stated = _size_and_md5(self.expected.bytes, self.expected.md5, with_md5=self.expected.md5 is not None)
        names = ", ".join(f"{info.container}/{info.path}" for info in self.passed_over)
        return (
            f"{self.expected.dataset}: {names} archived after the version used, but the trigger states {stated}; "
            "upload a trigger that describes it to load it"
        )


@dataclass(frozen=True)
class Batch:
    """What the store says about one pipeline's business day."""

    pipeline: Pipeline
    business_date: date
    triggers: tuple[ObjectInfo, ...] = ()
    trigger: Trigger | None = None
    members: tuple[Member, ...] = ()
    seals: Mapping[int, ObjectInfo] = field(default_factory=dict)
    runs: Mapping[int, ObjectInfo] = field(default_factory=dict)
    # The newest seal's document, when the assessment read it (`_left_out_as_sealed`).
    sealed: Mapping[str, Any] | None = None

    @property
    def latest_trigger(self) -> ObjectInfo | None:
        return max(self.triggers, key=lambda info: (info.written, info.path), default=None)

    @property
    def revision(self) -> int:
        return max(self.seals, default=0)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(m.expected.dataset for m in self.members if m.state == "missing")

    @property
    def blocked(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.state == "blocked")

    @property
    def present(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.chosen is not None)

    def first_seen(self) -> float:
        """When the first piece of this batch was archived (epoch seconds): the overdue clock starts there."""
        times = [info.written for info in self.triggers if info.written]
        times += [info.written for m in self.members for info in (m.chosen, *m.superseded) if info and info.written]
        return min(times, default=0.0)


# ---------------------------------------------------------------------------------------------- reading


def _batch_prefix(gate: Gate, pipeline: Pipeline, business_date: date) -> str:
    return gate.settings.archive.path(pipeline.batch_folder(business_date))


def assess_batch(
    gate: Gate,
    pipeline: Pipeline,
    business_date: date,
    *,
    members_without_trigger: bool = True,
    placed: tuple[str, Trigger] | None = None,
) -> Batch:
    """Read a batch's state: one listing of its folder, the trigger's bytes, one listing per expected member.

    The work is bounded by the number of members, never by file sizes.
    """
    store, archive = gate.store, gate.settings.archive
    triggers, seals, runs = [], {}, {}
    for info in store.list(archive.container, _batch_prefix(gate, pipeline, business_date)):
        name = info.path.rsplit("/", 1)[-1]
        if seal := SEAL_NAME.match(name):
            seals[int(seal["revision"])] = info
        elif run := RUN_NAME.match(name):
            runs[int(run["revision"])] = info
        elif pipeline.trigger_regex.match(unqualified_name(name)) and info.copy_finished:
            # A copy that did not finish (Azure) is no trigger yet: its redelivery copies it again.
            triggers.append(info)
    batch = Batch(pipeline, business_date, tuple(triggers), seals=seals, runs=runs)
    latest = batch.latest_trigger
    if latest is None and not members_without_trigger:
        return batch
    if latest is not None and placed is not None and placed[0] == latest.path:
        trigger: Trigger | None = placed[1]  # the event's own trigger, already read and checked
    else:
        trigger = _read_archived_trigger(gate, pipeline, latest) if latest else None
    if trigger is not None and trigger.ok:
        expected = trigger.expected
    else:
        expected = tuple(
            Expected(d, member_file(pipeline, gate.contracts, d, business_date)) for d in pipeline.required_members
        )
    members = tuple(_resolve_member(gate, item, business_date) for item in expected)
    if trigger is None or not trigger.ok or trigger.content.get("files") is None:
        # No listing says which members the batch has: an optional member is in it when it is here (it may be
        # missing without holding the batch back, but one that came is loaded, and one after the seal is late).
        named = {item.dataset for item in expected}
        optional = (
            _resolve_member(
                gate,
                Expected(d, member_file(pipeline, gate.contracts, d, business_date)),
                business_date,
                look_for_rejects=False,
            )
            for d in pipeline.optional_members
            if d not in named
        )
        members += tuple(m for m in optional if m.chosen is not None)
    return _left_out_as_sealed(gate, replace(batch, trigger=trigger, members=members))


def _left_out_as_sealed(gate: Gate, batch: Batch) -> Batch:
    """The members the newest seal records as left out, while still without a qualifying version, marked so: a
    rejected one no longer blocks the day, whose later revisions go on without it until a version of it qualifies
    (then it is news to the seal, as any member after it). One read of the seal, only for a sealed day with a
    member short."""
    if not batch.seals or all(m.chosen is not None for m in batch.members):
        return batch
    document = _read_json(gate, batch.seals[batch.revision])
    recorded = {str(entry["dataset"]): entry for entry in document.get(LEFT_OUT) or []}
    members = tuple(
        replace(m, left_out=recorded[m.expected.dataset]) if m.chosen is None and m.expected.dataset in recorded else m
        for m in batch.members
    )
    return replace(batch, members=members, sealed=document)


def _read_archived_trigger(gate: Gate, pipeline: Pipeline, info: ObjectInfo) -> Trigger:
    data = gate.store.read_prefix(info.container, info.path, max(info.size, 1), info.version) if info.size else b""
    return read_trigger(pipeline, gate.contracts, unqualified_name(info.path.rsplit("/", 1)[-1]), info.size, data)


def _same_file(expected: Expected, name: str) -> bool:
    return same_name(unqualified_name(name), expected.file)


def _resolve_member(gate: Gate, expected: Expected, business_date: date, *, look_for_rejects: bool = True) -> Member:
    """The archived version a batch uses for a member: the newest whose size and MD5 are what the trigger states
    (`_described`; one whose MD5 matches before one whose store recorded none), else none; and without one, its
    newest rejected upload's report, unless `look_for_rejects` is False."""
    settings, store = gate.settings, gate.store
    prefix = settings.archive.path(f"{expected.dataset}/{business_date:%Y/%m/%d}/")
    # A copy that did not finish (Azure: pending, failed, aborted) holds part of the file at most: the
    # member is still on its way, and its redelivery copies it again.
    found = [
        info
        for info in store.list(settings.archive.container, prefix)
        if _same_file(expected, _name(info)) and info.copy_finished
    ]
    described = [info for info in found if _described(expected, info)]
    # A version whose MD5 is the stated one wins over one whose store recorded none (judged by size alone).
    qualifying = [info for info in described if _recorded_md5(info) == expected.md5] or described
    if qualifying:
        chosen = max(qualifying, key=lambda info: (info.written, info.path))
        return Member(expected, chosen, tuple(info for info in found if info is not chosen))
    note = ""
    if found:
        md5 = expected.md5 is not None
        versions = ", ".join(_size_and_md5(info.size, _recorded_md5(info), with_md5=md5) for info in found)
        stated = _size_and_md5(expected.bytes, expected.md5, with_md5=md5)
        note = f"archived version(s) have {versions}; the trigger says {stated}"
    if not look_for_rejects:
        return Member(expected, None, tuple(found), note=note)
    rejected = settings.rejected
    # A member is rejected under its contract's spelling of the name (`archive.rejected_name`), whatever the
    # case it was uploaded in, and `expected.file` is that spelling (`manifest.member_file`): one listing
    # prefix finds it, however many files the dataset ever had rejected.
    stem = PurePosixPath(expected.file).stem
    candidates = [
        info
        for info in store.list(rejected.container, rejected.path(f"{expected.dataset}/{stem}"))
        if not info.path.endswith(".report.json") and _same_file(expected, _name(info))
    ]
    if candidates:
        newest = max(candidates, key=lambda info: (info.written, info.path))
        return Member(expected, None, tuple(found), report=f"{newest.container}/{report_path(newest.path)}", note=note)
    return Member(expected, None, tuple(found), note=note)


def _described(expected: Expected, info: ObjectInfo) -> bool:
    """Whether an archived version is the file the trigger describes: its size, and its MD5 where the store
    recorded one (a composite GCS object, a blob committed in blocks without one, is judged by its size)."""
    if expected.bytes is not None and info.size != expected.bytes:
        return False
    recorded = _recorded_md5(info)
    return expected.md5 is None or recorded is None or recorded == expected.md5


def _recorded_md5(info: ObjectInfo) -> str | None:
    return md5_hex(info.content_md5) if info.content_md5 else None


def _size_and_md5(size: int | None, md5: str | None, *, with_md5: bool) -> str:
    text = "any size" if size is None else f"{size} bytes"
    return f"{text} (MD5 {md5 or 'not recorded'})" if with_md5 else text


def _name(info: ObjectInfo) -> str:
    return info.path.rsplit("/", 1)[-1]


def _read_json(gate: Gate, info: ObjectInfo) -> dict[str, Any]:
    data = gate.store.read_prefix(info.container, info.path, max(info.size, 1), info.version)
    document: dict[str, Any] = json.loads(data)
    return document


# ---------------------------------------------------------------------------------------------- sealing


def batch_token(gate: Gate, pipeline: str, business_date: date, revision: int, members: list[dict[str, Any]]) -> str:
    """Derived from the revision and its sealed set: one run per revision however often asked."""
    store = gate.store
    account = store.account
    pieces = sorted(f"{m['dataset']}={m['container']}/{m['path']}@{m['version']}" for m in members)
    # The revision is part of it: a later revision may seal the very files of an earlier one (a new trigger
    # names the old sizes again), and the Jobs API would answer that token with the earlier, finished run.
    identity = "|".join(["batch", store.kind, account, pipeline, business_date.isoformat(), f"r{revision}", *pieces])
    return TOKEN_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:56]


@dataclass(frozen=True)
class Seal:
    """A sealed manifest as stored: its revision, where it is, what it says, and whether this call wrote it."""

    revision: int
    info: ObjectInfo
    document: Mapping[str, Any]
    created: bool

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(f"{m['container']}/{m['path']}" for m in self.document["members"])


def _seal(gate: Gate, batch: Batch, revision: int, *, partial: bool) -> Seal:
    """Write revision `revision` create-only; when another event wrote it first, that one is the seal if it
    holds every file this one would have sealed (else `_SealLacksFiles`)."""
    store, pipeline = gate.store, batch.pipeline
    members = [
        {
            "dataset": m.expected.dataset,
            "uri": store.spark_uri(m.chosen.container, m.chosen.path),
            "container": m.chosen.container,
            "path": m.chosen.path,
            "version": m.chosen.version,
            "size": m.chosen.size,
            "expected_rows": m.expected.rows,
            "expected_md5": m.expected.md5,
            "superseded": [f"{info.container}/{info.path}" for info in m.superseded],
        }
        for m in batch.present
        if m.chosen is not None
    ]
    token = batch_token(gate, pipeline.name, batch.business_date, revision, members)
    trigger = batch.latest_trigger
    document = {
        "pipeline": pipeline.name,
        "business_date": batch.business_date.isoformat(),
        "revision": revision,
        # The day's, not the revision's: each revision runs on its own token, and replaces the earlier one's rows.
        "batch_id": pipeline_batch_id(pipeline.name, batch.business_date),
        "idempotency_token": token,
        "sealed_at": gate.clock().isoformat(timespec="seconds"),
        "partial": partial,
        # Present optional members are sealed even when the trigger lists no files (`_news` reads this).
        OPTIONAL_SEALED: list(pipeline.optional_members),
        "missing": list(batch.missing) + [m.expected.dataset for m in batch.blocked],
        # A decision made now is recorded with this revision; one carried from an earlier seal keeps its own.
        LEFT_OUT: [
            {**m.left_out, "revision": m.left_out.get("revision") or revision}
            for m in batch.members
            if m.left_out is not None and m.chosen is None
        ],
        "trigger": {
            "path": f"{trigger.container}/{trigger.path}" if trigger else None,
            "version": trigger.version if trigger else None,
            "content": batch.trigger.content if batch.trigger else None,
        },
        "members": members,
    }
    path = _batch_prefix(gate, pipeline, batch.business_date) + f"_sealed.r{revision}.json"
    container = gate.settings.archive.container
    data = json.dumps(document, indent=2, ensure_ascii=False).encode()
    try:
        info = store.put(container, path, data, "application/json", {})
        return Seal(revision, info, document, created=True)
    except DestinationExists:
        existing = store.stat(container, path)
        if existing is None:
            raise
    seal = Seal(revision, existing, _read_json(gate, existing), created=False)
    if news_since(batch, seal):
        # The other delivery read the batch before a file (or trigger) this one saw was archived, or this one
        # read an older view: that seal is not this delivery's answer. Deciding again on a fresh read settles it.
        raise _SealLacksFiles(f"{container}/{path}")
    return seal


def news_since(batch: Batch, seal: Seal) -> tuple[str, ...]:
    """What the batch holds now that `seal` does not: member files archived after it, and what the trigger
    states of a sealed member when it differs from what the seal holds (a corrected trigger naming the same
    files with other `rows` or `md5`: the batch job checks the files against them)."""
    present = batch.present
    sealed_trigger = seal.document.get("trigger", {}).get("content") or {}
    unlisted = sealed_trigger.get("files") is None and (
        batch.trigger is None or batch.trigger.content.get("files") is None
    )
    if OPTIONAL_SEALED not in seal.document and unlisted:
        # Sealed by a release that left optional members out when the trigger listed no files: one archived
        # then is not news now (each such day would otherwise be sealed and run again).
        sealed_datasets = {m["dataset"] for m in seal.document["members"]}
        optional = set(batch.pipeline.optional_members) - sealed_datasets
        present = tuple(m for m in present if m.expected.dataset not in optional)
    news = sorted(frozenset(f"{m.chosen.container}/{m.chosen.path}" for m in present if m.chosen) - seal.paths)
    if batch.trigger is not None and batch.trigger.ok:
        sealed = {
            m["dataset"]: (m.get("expected_rows"), _as_md5(m.get("expected_md5"))) for m in seal.document["members"]
        }
        for m in present:
            now = (m.expected.rows, m.expected.md5)
            if m.expected.dataset in sealed and sealed[m.expected.dataset] != now:
                was = sealed[m.expected.dataset]
                news.append(
                    f"the trigger's statement of {m.expected.dataset} (rows {_stated(now[0])}, md5 {_stated(now[1])}; "
                    f"sealed: rows {_stated(was[0])}, md5 {_stated(was[1])})"
                )
    return tuple(news)


def _stated(value: object) -> str:
    return "not stated" if value is None else str(value)


def _as_md5(value: object) -> str | None:
    """A sealed MD5 as triggers are read now (lowercase hex): earlier releases kept it as the trigger gave it."""
    return md5_hex(value) if isinstance(value, str) and value else None


class _SealLacksFiles(FilegateError):
    """Another delivery wrote this revision first, without a file this delivery saw."""


def reseal_command(pipeline: str, business_date: date | str) -> str:
    """The command that loads what a sealed day holds after its seal (held under late_member = hold)."""
    return f"filegate batches --reseal {business_date} --pipeline {pipeline}"


def batch_run(gate: Gate, run_id: int) -> Any | None:
    """The batch job's run from runs/get; None when the gate has no Jobs API or the run is gone.

    TransientError when the Jobs API does not answer, said within seconds (`DatabricksJobs.reachable`)
    rather than after the SDK's retries; SettingsError when it refuses the credentials.
    """
    from databricks.sdk.errors.base import DatabricksError

    from filegate.jobs import VIEW_GRANT, named_error, not_found, unreached

    jobs = gate.batch_jobs
    if not isinstance(jobs, DatabricksJobs):
        return None
    host = jobs.reachable()
    try:
        return jobs.client.jobs.get_run(run_id)
    except DatabricksError as exc:
        if not_found(exc):
            return None
        raise named_error(exc, host, None, grant=VIEW_GRANT, auth_type=jobs.auth_type) from exc
    except OSError as exc:
        raise unreached(host, exc) from exc


def latest_seal(gate: Gate, batch: Batch) -> Seal | None:
    if not batch.seals:
        return None
    info = batch.seals[batch.revision]
    # Create-only: the document the assessment read is the one at that path still.
    document = batch.sealed if batch.sealed is not None else _read_json(gate, info)
    return Seal(batch.revision, info, document, created=False)


def seal_holds(gate: Gate, outcome: Outcome) -> bool:
    """Whether the seal an outcome names holds its archived file (a member, or the trigger): a late member sealed
    into a new revision (`rerun`) is loaded by that revision's run; one held beside the seal, or ruled out by the
    trigger, is not."""
    if outcome.sealed_path is None or outcome.archived_path is None:
        return False
    container, _, path = outcome.sealed_path.partition("/")
    info = gate.store.stat(container, path)
    if info is None:
        return False
    document = _read_json(gate, info)
    sealed = {f"{m['container']}/{m['path']}" for m in document.get("members", [])}
    # A corrected trigger after the seal is sealed as the revision's trigger, not as a member.
    trigger = (document.get("trigger") or {}).get("path")
    return outcome.archived_path in sealed or outcome.archived_path == trigger


def _paths(infos: tuple[ObjectInfo, ...]) -> frozenset[str]:
    return frozenset(f"{info.container}/{info.path}" for info in infos)


def _ensure_run(gate: Gate, batch: Batch, seal: Seal) -> tuple[TriggeredRun, bool]:
    """The run of a seal: from its run note, or by run-now with the seal's token (which converges). True when
    run-now was called."""
    marker = batch.runs.get(seal.revision)
    if marker is not None:
        note = _read_json(gate, marker)
        run_id = int(note["run_id"])
        # A skip noted as the run started is the run's still (Databricks never runs a skipped run): a second look
        # at the batch says so as the first did, not `duplicate`.
        why = None
        if noted_skip(marker.metadata) == run_id:
            why = marker.metadata[META_SKIPPED].partition(":")[2] or "SKIPPED"
        return TriggeredRun(int(note["job_id"]), run_id, str(note.get("run_page_url", "")), why), False
    sealed_at = f"{seal.info.container}/{seal.info.path}"
    day = {"pipeline": batch.pipeline.name, "business_date": batch.business_date.isoformat()}
    if gate.batch_jobs is None:
        why = "this gate has no batch job to run it (FILEGATE_BATCH_JOB_NAME)"
        raise RunNotStarted(sealed_at, why, to_fix=True, **day)
    parameters = {
        "source_path": gate.store.spark_uri(seal.info.container, seal.info.path),
        "pipeline": batch.pipeline.name,
        "batch_id": str(seal.document["batch_id"]),
    }
    try:
        run = gate.batch_jobs.trigger_run(parameters, str(seal.document["idempotency_token"]))
    except RunNotStarted:
        raise
    except FilegateError as exc:
        # The batch is sealed: its run is work to do (redelivery or the sweep re-drives the same token).
        raise RunNotStarted(sealed_at, str(exc), to_fix=needs_fix(exc), **day) from exc
    note = {
        "job_id": run.job_id,
        "run_id": run.run_id,
        "run_page_url": run.run_page_url,
        "revision": seal.revision,
        "batch_id": seal.document["batch_id"],
        "idempotency_token": seal.document["idempotency_token"],
    }
    path = _batch_prefix(gate, batch.pipeline, batch.business_date) + f"_run.r{seal.revision}.json"
    # The skip travels in the note's metadata, which the batch's listing returns: the sweep reseals such a
    # day (`sweep_batch`) without reading any note or asking the Jobs API about the days whose runs started.
    skipped = skip_note(run.run_id, run.skipped) if run.skipped else {}
    # A concurrent event may have recorded the same run first (same token, same run id).
    with contextlib.suppress(DestinationExists):
        gate.store.put(gate.settings.archive.container, path, json.dumps(note).encode(), "application/json", skipped)
    if run.skipped:
        what = _skipped_run(batch, run, seal.revision)
        log.warning("batch %s: %s, with a run of its own", seal.document["batch_id"], what)
    return run, True


def _skipped_run(batch: Batch, run: TriggeredRun, revision: int | None = None) -> str:
    """What a run Databricks skipped means for the batch, and what replaces it."""
    of = f" of revision {revision}" if revision is not None else ""
    return (
        f"Databricks skipped run {run.run_id}{of} ({run.skipped}) and never ran it: the next sweep, or "
        f"`{reseal_command(batch.pipeline.name, batch.business_date)}`, seals the same members as the next revision"
    )


# ---------------------------------------------------------------------------------------------- deciding


@dataclass(frozen=True)
class Verdict:
    """What an evaluation concluded, as the fields an outcome carries."""

    status: str
    reasons: tuple[str, ...] = ()
    seal: Seal | None = None
    run: TriggeredRun | None = None
    rejected_path: str | None = None
    # Whether this evaluation called run-now for a seal another one made (its run note was missing).
    redriven: bool = False


def _waiting_reasons(batch: Batch) -> tuple[str, ...]:
    reasons = []
    if batch.missing:
        reasons.append(f"waiting for {', '.join(batch.missing)}")
    for m in batch.members:
        if m.note:
            reasons.append(f"{m.expected.dataset}: {m.note}")
        if m.passed_over:
            reasons.append(m.passed_over_note())
    for m in batch.blocked:
        reasons.append(f"{m.expected.dataset} was rejected; its report is {m.report}; a corrected upload unblocks it")
    return tuple(reasons)


# How often one delivery decides again after losing a seal to a delivery that saw other files. Each loss
# means another delivery sealed a revision, so this bounds racing deliveries of one batch, not time.
SEAL_ATTEMPTS = 5


def evaluate(gate: Gate, batch: Batch, piece: str | None, *, sweeping: bool = False) -> Verdict:
    """Decide what a batch needs now; `piece` is the `container/path` of the event's own archived object."""
    return _decided(gate, batch, lambda current: _decide(gate, current, piece, sweeping=sweeping))[1]


def _decided(gate: Gate, batch: Batch, decide: Callable[[Batch], Verdict]) -> tuple[Batch, Verdict]:
    """`decide` on `batch`, then on a fresh read each time another delivery sealed a revision without the
    files this one saw; the batch the verdict was made on, with it."""
    for _ in range(SEAL_ATTEMPTS):
        try:
            return batch, decide(batch)
        except _SealLacksFiles as exc:
            lost = str(exc)
        batch = assess_batch(gate, batch.pipeline, batch.business_date)
    raise TransientError(f"{lost}: sealed by other deliveries {SEAL_ATTEMPTS} times without this one's files")


def _decide(gate: Gate, batch: Batch, piece: str | None, *, sweeping: bool) -> Verdict:
    pipeline = batch.pipeline
    # The seal before the trigger: a sealed batch runs even when its trigger left the archive since (the
    # overdue sweep moving it to rejected while the last member sealed, and that delivery's run-now failing).
    latest = latest_seal(gate, batch)
    if latest is None and batch.latest_trigger is None:
        trigger = name_on(pipeline.trigger_pattern, batch.business_date)
        return Verdict(MEMBER_ARCHIVED, (f"waiting for the trigger {trigger}",))
    if latest is not None:
        news = news_since(batch, latest)
        if (piece is not None and piece in latest.paths) or not news:
            run, called = _ensure_run(gate, batch, latest)
            passed = [m for m in batch.members if piece in _paths(m.passed_over)]
            if passed and not news:
                # The event's own file came after the seal, but the trigger rules it out: nothing to seal, but
                # not a duplicate either. It waits archived for a trigger that describes it.
                reasons = (f"after the seal (revision {latest.revision}): {passed[0].passed_over_note()}",)
                return Verdict(LATE_MEMBER, reasons, latest, run)
            # A redelivery after a failed run-now (a dead letter re-driven) says that it started the run.
            redrive = ("its run was not recorded: run-now re-driven with the seal's token",) if called else ()
            reasons = (f"batch already sealed (revision {latest.revision})", *redrive)
            return Verdict(DUPLICATE, reasons, latest, run, redriven=called)
        late = ", ".join(news)
        # The event's own file, when the trigger rules it out: the news are other files, and it is loaded by none.
        passed_over = tuple(m.passed_over_note() for m in batch.members if piece in _paths(m.passed_over))
        if pipeline.late_member == "rerun" and not batch.blocked:
            seal = _seal(gate, batch, latest.revision + 1, partial=bool(batch.missing))
            run, _ = _ensure_run(gate, batch, seal)
            reason = f"after revision {latest.revision}: {late}; sealed revision {seal.revision} and ran it"
            reason += " (late_member = rerun)"
            return Verdict(LATE_MEMBER, (reason, *passed_over), seal, run)
        run, _ = _ensure_run(gate, batch, latest)
        reason = f"after the seal (revision {latest.revision}): {late}; held, the sealed batch is unchanged"
        if batch.blocked:
            # Under either policy: no revision while a member is rejected (a reseal refuses too).
            blocked = ", ".join(m.expected.dataset for m in batch.blocked)
            reason += f" while the rejected {blocked} blocks it: a corrected upload comes first"
        else:
            reason += f" (late_member = hold): `{reseal_command(pipeline.name, batch.business_date)}` loads it"
        return Verdict(LATE_MEMBER, (reason, *passed_over), latest, run)
    if batch.trigger is not None and not batch.trigger.ok:
        # A trigger archived while valid, read under a pipeline changed since (a member added): the batch can
        # complete only with a corrected trigger, so its window runs out as an incomplete batch's does.
        invalid = "the archived trigger no longer reads as valid: " + "; ".join(batch.trigger.reasons)
        if sweeping and is_overdue(gate, batch):
            return _apply_overdue(gate, batch, invalid)
        return Verdict(WAITING, (invalid, "a corrected trigger completes the batch"))
    incomplete = bool(batch.missing or batch.blocked)
    if incomplete and sweeping and is_overdue(gate, batch):
        return _apply_overdue(gate, batch)
    if batch.blocked:
        return Verdict(BLOCKED, _waiting_reasons(batch))
    if batch.missing:
        return Verdict(WAITING, _waiting_reasons(batch))
    seal = _seal(gate, batch, 1, partial=False)
    run, called = _ensure_run(gate, batch, seal)
    if seal.created:
        notes = tuple(m.passed_over_note() for m in batch.members if m.passed_over)
        reason = f"every member archived; sealed revision 1 with {len(seal.paths)} members"
        return Verdict(SEALED, (reason, *notes), seal, run)
    return Verdict(DUPLICATE, ("another event sealed this batch first (revision 1)",), seal, run, redriven=called)


def is_overdue(gate: Gate, batch: Batch) -> bool:
    """Whether the batch's window, counted from its first archived piece, has passed on the gate's clock."""
    first = batch.first_seen()
    return bool(first) and gate.clock().timestamp() - first > batch.pipeline.complete_within_minutes * 60


def _apply_overdue(gate: Gate, batch: Batch, invalid: str = "") -> Verdict:
    """The batch's window has passed: its `on_incomplete` policy. With a trigger that does not read as valid
    (`invalid` says why) nothing says which members to load, so `load_available` waits too."""
    pipeline = batch.pipeline
    window = f"incomplete {pipeline.complete_within_minutes} minutes after its first piece"
    reasons = (window, *((invalid,) if invalid else ()), *_waiting_reasons(batch))
    if pipeline.on_incomplete != "wait" and _sealed_since(gate, batch):
        # The last member's event sealed the batch after the sweep read it: it came in time after all.
        # Read again and decide as that event did, rather than reject or part-load a complete batch.
        # A seal made after this listing, while the trigger is copied to rejected, is not caught: that
        # batch still runs once, complete, with its trigger in rejected beside a report.
        return _decide(gate, assess_batch(gate, pipeline, batch.business_date), None, sweeping=False)
    if pipeline.on_incomplete == "load_available" and batch.blocked and not invalid:
        # A rejected member is no gap to load around: it blocks, as it blocks a reseal with --partial.
        rejected = ", ".join(m.expected.dataset for m in batch.blocked)
        why = f"still waiting for a corrected upload of {rejected} (on_incomplete = load_available leaves out only"
        flags = " ".join(f"--without {m.expected.dataset}" for m in batch.blocked)
        never = f"when none can ever come, `{reseal_command(pipeline.name, batch.business_date)} --partial {flags}`"
        return Verdict(OVERDUE, (*reasons, f"{why} members that never came); {never} loads the day without it"))
    if pipeline.on_incomplete == "load_available" and _has_required(batch) and not invalid:
        seal = _seal(gate, batch, 1, partial=True)
        run, called = _ensure_run(gate, batch, seal)
        if not seal.created:
            reasons = ("another event sealed this batch first (revision 1)",)
            return Verdict(DUPLICATE, reasons, seal, run, redriven=called)
        return Verdict(OVERDUE, (*reasons, "loaded what is there (on_incomplete = load_available)"), seal, run)
    if pipeline.on_incomplete == "reject":
        rejected = _reject_archived_triggers(gate, batch, reasons)
        return Verdict(OVERDUE, (*reasons, "trigger rejected (on_incomplete = reject)"), rejected_path=rejected)
    if invalid:
        return Verdict(
            OVERDUE, (*reasons, f"still waiting for a corrected trigger (on_incomplete = {pipeline.on_incomplete})")
        )
    if pipeline.on_incomplete == "load_available":
        return Verdict(
            OVERDUE, (*reasons, "no required member to load; still waiting (on_incomplete = load_available)")
        )
    return Verdict(OVERDUE, (*reasons, "still waiting (on_incomplete = wait)"))


def _has_required(batch: Batch) -> bool:
    """Whether a required member is here: optional members alone are no batch to load."""
    return any(m.expected.dataset in batch.pipeline.required_members for m in batch.present)


def _sealed_since(gate: Gate, batch: Batch) -> bool:
    """Whether a seal is in the batch's folder now, although there was none when `batch` was read."""
    if batch.seals:
        return False
    folder = gate.settings.archive.path(batch.pipeline.batch_folder(batch.business_date))
    names = (PurePosixPath(info.path).name for info in gate.store.list(gate.settings.archive.container, folder))
    return any(SEAL_NAME.match(name) for name in names)


def _archived_as_upload(gate: Gate, info: ObjectInfo) -> Upload:
    """An archived object as an upload, so the create-only moves of `archive` apply to it unchanged."""
    store = gate.store
    account = store.account
    identity = f"{store.kind}|{account}|{info.container}|{info.path}|{info.version}"
    event_id = f"sweep-{hashlib.sha256(identity.encode()).hexdigest()[:24]}"
    return Upload(store.kind, account, info.container, info.path, info.size, info.version, event_id, api="sweep")


def _reject_archived_triggers(gate: Gate, batch: Batch, reasons: tuple[str, ...]) -> str:
    """Move the batch's trigger(s) to rejected/ with a report; its members stay archived for a new trigger."""
    rejected = ""
    for info in batch.triggers:
        upload = _archived_as_upload(gate, info)
        placement = place_upload(
            gate.store,
            upload,
            gate.settings.rejected,
            rejected_path(gate.settings.rejected, batch.pipeline.name, upload.name),
            beside_reports=True,
        )
        report = {
            "file": upload.name,
            "source": f"{info.container}/{info.path}",
            "source_version": info.version,
            "pipeline": batch.pipeline.name,
            "business_date": batch.business_date.isoformat(),
            "reasons": list(reasons),
            "missing": list(batch.missing),
            "blocked_by": [m.report for m in batch.blocked],
            "rejected_path": f"{placement.container}/{placement.path}",
            "rejected_at": gate.clock().isoformat(timespec="seconds"),
        }
        write_report(gate.store, placement, report)
        gate.store.delete(info.container, info.path, info.version)
        rejected = f"{placement.container}/{placement.path}"
    return rejected


def _outcome(base: Outcome, batch: Batch, verdict: Verdict) -> Outcome:
    seal, run = verdict.seal, verdict.run
    status, reasons = verdict.status, verdict.reasons
    if run is not None and run.skipped and status != RUN_PENDING:
        # The seal's run was skipped by Databricks (as this run-now started it, or as its note says): nothing of
        # the batch is loaded until the run that replaces it, so it is no `sealed` (and an alert on `run pending`
        # sees it).
        status = RUN_PENDING
        reasons = (*reasons, _skipped_run(batch, run))
    return replace(
        base,
        status=status,
        pipeline=batch.pipeline.name,
        business_date=batch.business_date.isoformat(),
        reasons=(*base.reasons, *reasons),
        missing=tuple(batch.missing),
        blocked_by=tuple(m.report for m in batch.blocked if m.report),
        sealed_path=f"{seal.info.container}/{seal.info.path}" if seal else None,
        revision=seal.revision if seal else None,
        batch_id=str(seal.document["batch_id"]) if seal else base.batch_id,
        idempotency_token=str(seal.document["idempotency_token"]) if seal else base.idempotency_token,
        run_id=run.run_id if run else None,
        run_page_url=run.run_page_url if run else None,
        rejected_path=verdict.rejected_path or base.rejected_path,
    )


# ---------------------------------------------------------------------------------------------- events


def settle_member(
    gate: Gate,
    upload: Upload,
    pipeline: Pipeline,
    contract: Contract,
    business_date: date,
    placed: Placement,
) -> Outcome:
    """A member is archived: it starts no run of its own; it may complete (and seal) its batch."""
    archived = f"{placed.container}/{placed.path}"
    base = Outcome(
        MEMBER_ARCHIVED,
        upload.event_id,
        f"{upload.container}/{upload.path}",
        dataset=contract.name,
        archived_path=archived,
        source_uri=gate.store.spark_uri(placed.container, placed.path),
    )
    batch = assess_batch(gate, pipeline, business_date, members_without_trigger=False)
    verdict = evaluate(gate, batch, archived)
    if placed.reused and verdict.status in (MEMBER_ARCHIVED, WAITING, BLOCKED):
        verdict = replace(verdict, status=DUPLICATE)
    return _outcome(base, batch, verdict)


def member_rejected(gate: Gate, pipeline: Pipeline, outcome: Outcome, business_date: date) -> Outcome:
    """A member was rejected: its batch is blocked unless an archived version of it still qualifies."""
    batch = assess_batch(gate, pipeline, business_date)
    dataset = outcome.dataset
    blocked = any(m.expected.dataset == dataset for m in batch.blocked)
    status = BLOCKED if blocked and outcome.status == REJECTED else outcome.status
    return replace(
        outcome,
        status=status,
        pipeline=pipeline.name,
        missing=tuple(batch.missing),
        blocked_by=tuple(m.report for m in batch.blocked if m.report),
    )


def handle_trigger(gate: Gate, upload: Upload, pipeline: Pipeline, *, follow: bool = True) -> Outcome:
    """Check a trigger, archive it (or reject it with every reason) and evaluate its batch."""
    try:
        return _place_trigger(gate, upload, pipeline)
    except (ObjectNotFound, SourceChanged):
        # The trigger is gone or is another version now: an earlier delivery may have moved it.
        return _settle_earlier_trigger(gate, upload, pipeline, follow=follow)


def _place_trigger(gate: Gate, upload: Upload, pipeline: Pipeline) -> Outcome:
    store, settings = gate.store, gate.settings
    source = f"{upload.container}/{upload.path}"
    data = b""
    if 0 < upload.size <= MAX_TRIGGER_BYTES:
        data = store.read_prefix(upload.container, upload.path, upload.size, upload.version)
    trigger = read_trigger(pipeline, gate.contracts, upload.name, upload.size, data)
    base = Outcome(MEMBER_ARCHIVED, upload.event_id, source, pipeline=pipeline.name)
    if not trigger.ok or trigger.business_date is None:
        relative = rejected_path(settings.rejected, pipeline.name, upload.name)
        kept = identical_rejected(gate, upload, relative, trigger.reasons)
        if kept is not None:
            # Sent again as it was rejected: its one copy and report stay what a person acts on.
            store.delete(upload.container, upload.path, upload.version)
            reasons = (kept_rejection_reason(kept), *trigger.reasons)
            business_date = trigger.business_date.isoformat() if trigger.business_date else None
            rejected = f"{kept.container}/{kept.path}"
            return replace(base, status=IDENTICAL, business_date=business_date, reasons=reasons, rejected_path=rejected)
        placement = place_upload(store, upload, settings.rejected, relative, beside_reports=True)
        return _report_trigger(gate, upload, pipeline, trigger, placement, base)
    day = trigger.business_date
    relative = pipeline.batch_folder(day) + upload.name
    same = identical_copy(gate, upload, settings.archive, relative)
    if same is not None:
        # The newest trigger of that name holds these bytes: archived again, it was one more trigger copy in the
        # batch's folder (and one more for the overdue sweep to reject). The batch is evaluated as a redelivery's.
        return release_source(
            store, upload, lambda: _identical_trigger(gate, upload, pipeline, day, same, base, trigger)
        )
    placement = place_upload(store, upload, settings.archive, relative)
    return release_source(
        store,
        upload,
        lambda: _evaluate_trigger(gate, upload, pipeline, day, placement.info, placement.reused, base, trigger),
    )


def _identical_trigger(
    gate: Gate, upload: Upload, pipeline: Pipeline, day: date, same: ObjectInfo, base: Outcome, trigger: Trigger
) -> Outcome:
    """A trigger sent again byte for byte: `identical` unless its batch's evaluation decides something new now."""
    outcome = _evaluate_trigger(gate, upload, pipeline, day, same, True, base, trigger)
    kept = f"byte-identical to {same.container}/{same.path}, the batch's trigger already archived; kept once"
    status = IDENTICAL if outcome.status == DUPLICATE else outcome.status
    return replace(outcome, status=status, reasons=(kept, *outcome.reasons))


def _report_trigger(
    gate: Gate, upload: Upload, pipeline: Pipeline, trigger: Trigger, placement: Placement, base: Outcome
) -> Outcome:
    """Write the report beside the rejected trigger, take it out of landing, and say so."""
    store = gate.store
    business_date = trigger.business_date.isoformat() if trigger.business_date else None
    report = {
        "file": upload.name,
        "source": f"{upload.container}/{upload.path}",
        "source_version": upload.version,
        "event_id": upload.event_id,
        "pipeline": pipeline.name,
        "business_date": business_date,
        "size_bytes": upload.size,
        "reasons": list(trigger.reasons),
        "rejected_path": f"{placement.container}/{placement.path}",
        "rejected_at": gate.clock().isoformat(timespec="seconds"),
        "note": "the members stay archived; a corrected trigger completes the batch",
    }
    wrote = write_report(store, placement, report)
    # As for a rejected file (ingest._reject): the delivery that takes the trigger out of landing, or
    # writes its report, reports it.
    moved = store.delete(upload.container, upload.path, upload.version)
    return replace(
        base,
        status=REJECTED if moved or wrote or not placement.reused else DUPLICATE,
        business_date=business_date,
        reasons=trigger.reasons,
        rejected_path=f"{placement.container}/{placement.path}",
    )


def _evaluate_trigger(
    gate: Gate,
    upload: Upload,
    pipeline: Pipeline,
    business_date: date,
    info: ObjectInfo,
    reused: bool,
    base: Outcome,
    trigger: Trigger | None = None,
) -> Outcome:
    base = replace(base, archived_path=f"{info.container}/{info.path}")
    placed = (info.path, trigger) if trigger is not None else None
    batch = assess_batch(gate, pipeline, business_date, placed=placed)
    verdict = evaluate(gate, batch, None)
    if reused and verdict.status in (WAITING, BLOCKED):
        verdict = replace(verdict, status=DUPLICATE)
    return _outcome(base, batch, verdict)


def _settle_earlier_trigger(gate: Gate, upload: Upload, pipeline: Pipeline, *, follow: bool) -> Outcome:
    """The trigger is gone or changed: an earlier delivery placed it (finish its work), it is another version now
    (handled instead, `follow`, once; `ingest.follow_current`) or someone else moved it."""
    store, settings = gate.store, gate.settings
    source = f"{upload.container}/{upload.path}"
    base = Outcome(DUPLICATE, upload.event_id, source, pipeline=pipeline.name)
    try:
        business_date = pipeline.trigger_date(upload.name)
    except ValueError:
        business_date = None
    places: list[tuple[Location, str]] = []
    if business_date is not None:
        relative = pipeline.batch_folder(business_date) + upload.name
        places.append((settings.archive, relative))
        placement = find_placement(store, upload, settings.archive, relative)
        if placement is not None:
            found, day = placement, business_date
            return release_source(
                store, upload, lambda: _evaluate_trigger(gate, upload, pipeline, day, found.info, True, base)
            )
    places.append((settings.rejected, rejected_path(settings.rejected, pipeline.name, upload.name)))
    rejected = find_placement(store, upload, *places[-1])
    if rejected is not None and store.stat(rejected.container, report_path(rejected.path)) is None:
        # As for a file (ingest._settle_earlier): the report comes from the copy, and is alerted on.
        data = b""
        if 0 < upload.size <= MAX_TRIGGER_BYTES:
            data = store.read_prefix(rejected.container, rejected.path, upload.size, rejected.info.version)
        trigger = read_trigger(pipeline, gate.contracts, upload.name, upload.size, data)
        if trigger.ok:
            lost = "rejected by an earlier delivery whose report was lost"
            trigger = replace(trigger, reasons=(f"{lost}; it passes now (changed since?): upload it again",))
        return _report_trigger(gate, upload, pipeline, trigger, rejected, replace(base, status=MEMBER_ARCHIVED))
    if rejected is not None:
        store.delete(upload.container, upload.path, upload.version)
        return replace(base, rejected_path=f"{rejected.container}/{rejected.path}", reasons=("rejected earlier",))
    current = store.stat(upload.container, upload.path)
    if follow:
        followed = follow_changed(
            store,
            upload,
            current,
            places,
            settle=lambda moved: _settle_earlier_trigger(gate, moved, pipeline, follow=False),
            decide=lambda newer: handle_trigger(gate, newer, pipeline, follow=False),
        )
        if followed is not None:
            return followed
    if current is None:
        reason = "the trigger is gone and Filegate holds no copy of this version: someone else deleted or moved it"
        archived = newest_of_size(store, *places[0], upload.size) if business_date is not None else None
        kept = newest_of_size(store, *places[-1], upload.size)
        if archived is not None:
            # Sent again byte for byte (`_identical_trigger`): the redelivery of its event, or a backfill beside it.
            reason = (
                "the trigger is gone: most likely deleted by an earlier delivery of this event as byte-identical to "
                f"{archived.container}/{archived.path}, the batch's trigger archived under its name"
            )
        elif kept is not None:
            reason = f"the trigger is gone: {deleted_as_rejected(kept)}"
    else:
        reason = f"superseded: the trigger is now version {current.version}; the event for that upload handles it"
    return replace(base, status=IGNORED, reasons=(reason,))


# ---------------------------------------------------------------------------------------------- sweep


def batch_dates(gate: Gate, pipeline: Pipeline, since: date | None = None, *, with_members: bool = False) -> list[date]:
    """Every business day that has a batch folder in the archive, oldest first; `with_members`: also every
    day a required member is archived for (a day whose trigger never came, or was rejected)."""
    folders = [f"{BATCHES_FOLDER}/{pipeline.name}/"]
    if with_members:
        folders += [f"{dataset}/" for dataset in pipeline.required_members]
    found: set[date] = set()
    for folder in folders:
        found.update(day for day in _objects_by_date(gate, folder) if since is None or day >= since)
    return sorted(found)


def open_batch_dates(gate: Gate, pipeline: Pipeline) -> list[date]:
    """The business days a sweep looks at, oldest first, from one listing of the pipeline's batch folder.

    A day whose newest seal has its run note, and not a skipped run's, is done: `sweep_batch` would
    find nothing to do after reading its trigger and listing its members, eight store calls or so a
    day, in every pass, for every day ever sealed. Under `late_member = "rerun"` a newer member is
    found only by those listings, so every day is looked at.
    """
    days = _objects_by_date(gate, f"{BATCHES_FOLDER}/{pipeline.name}/")
    if pipeline.late_member == "rerun":
        return sorted(days)
    open_days = []
    for day, infos in days.items():
        seals, runs = set(), {}
        for info in infos:
            name = info.path.rsplit("/", 1)[-1]
            if seal := SEAL_NAME.match(name):
                seals.add(int(seal["revision"]))
            elif run := RUN_NAME.match(name):
                runs[int(run["revision"])] = info
        note = runs.get(max(seals, default=0))
        if note is None or noted_skip(note.metadata) is not None:
            open_days.append(day)
    return sorted(open_days)


def _objects_by_date(gate: Gate, folder: str) -> dict[date, list[ObjectInfo]]:
    """The objects right under `folder`'s YYYY/MM/DD/ folders of the archive, by that date (one listing)."""
    archive = gate.settings.archive
    prefix = archive.path(folder)
    found: dict[date, list[ObjectInfo]] = {}
    for info in gate.store.list(archive.container, prefix):
        match = _DATE_FOLDER.search(info.path[len(prefix) :])
        if match:
            try:
                day = date(int(match["yyyy"]), int(match["mm"]), int(match["dd"]))
            except ValueError:
                continue
            found.setdefault(day, []).append(info)
    return found


def rejected_triggers(gate: Gate, pipeline: Pipeline) -> dict[date, str]:
    """Per business day, `container/path` of the report of its newest trigger in rejected (by the overdue
    sweep, or on arrival); one listing of the pipeline's rejected folder."""
    location = gate.settings.rejected
    prefix = location.path(f"{pipeline.name}/")
    listed = {info.path: info for info in gate.store.list(location.container, prefix)}
    newest: dict[date, ObjectInfo] = {}
    for path, info in listed.items():
        name = path[len(prefix) :].removesuffix(REPORT_SUFFIX)
        # A report whose file is gone (reprocessed, or deleted by hand) says nothing about the day any more.
        if (
            "/" in name
            or not path.endswith(REPORT_SUFFIX)
            or not name
            or path.removesuffix(REPORT_SUFFIX) not in listed
        ):
            continue
        try:
            day = pipeline.trigger_date(unqualified_name(name))
        except ValueError:
            continue
        if day is not None and (
            day not in newest or (info.written, info.path) > (newest[day].written, newest[day].path)
        ):
            newest[day] = info
    return {day: f"{location.container}/{info.path}" for day, info in newest.items()}


def sweep_batch(
    gate: Gate, pipeline: Pipeline, business_date: date, tried: frozenset[str] = frozenset()
) -> Outcome | None:
    """Finish a batch whose last event was lost, re-drive a seal whose run-now never answered, report it overdue.

    A batch whose latest seal has its run note is done (the sweep leaves it out: `open_batch_dates`); None
    then, as for a seal in `tried` (archived paths whose run this pass already tried to start) without its
    run note. Under `late_member = "rerun"` a done batch costs its members' listings and the seal's read: a
    newer member whose event failed after it was archived (and left landing) is found nowhere else, and is
    sealed here.
    """
    batch = assess_batch(gate, pipeline, business_date, members_without_trigger=False)
    if batch.latest_trigger is None and not batch.seals:
        return None
    sealed = batch.seals.get(batch.revision)
    if sealed is not None and batch.revision not in batch.runs and f"{sealed.container}/{sealed.path}" in tried:
        # This pass's landing delivery sealed it and its run-now failed, reported there: not asked twice.
        return None
    if batch.seals and batch.revision in batch.runs:
        # A seal this pass's landing delivery made and saw skipped is resealed by the next pass, not seconds later.
        just_sealed = sealed is not None and f"{sealed.container}/{sealed.path}" in tried
        skipped = _skipped_note(batch) is not None and not just_sealed
        resealed = _sweep_skipped(gate, pipeline, business_date) if skipped else None
        if resealed is not None:
            return resealed
        if pipeline.late_member != "rerun":
            return None
        batch = _with_members(gate, batch)
        latest = latest_seal(gate, batch)
        # A blocked member holds the batch until its corrected upload, whose own event decides again:
        # deciding here would only repeat the hold's warning on every sweep.
        if latest is None or batch.blocked or not news_since(batch, latest):
            return None
    else:
        batch = _with_members(gate, batch)
    base = Outcome(
        WAITING, f"sweep-{pipeline.name}-{business_date:%Y%m%d}", _batch_prefix(gate, pipeline, business_date)
    )
    verdict = evaluate(gate, batch, None, sweeping=True)
    if verdict.status == DUPLICATE and verdict.redriven:
        # The seal was there without its run note: run-now was re-driven with the seal's token. Otherwise
        # the batch's last event sealed and ran it while the sweep read it: a duplicate, said as such.
        verdict = replace(verdict, status=SEALED, reasons=("run-now re-driven with the seal's token",))
    return log_outcome(_outcome(base, batch, verdict))


def _with_members(gate: Gate, batch: Batch) -> Batch:
    """`batch` with its members read: an assessment of a day without a trigger stops before them (a sealed one needs
    them); one with a trigger read them already, and reading them again doubled the sweep's listings."""
    return batch if batch.latest_trigger is not None else assess_batch(gate, batch.pipeline, batch.business_date)


def _sweep_skipped(gate: Gate, pipeline: Pipeline, business_date: date) -> Outcome | None:
    """The next revision of a day whose newest revision's run Databricks skipped as it was started (its run note
    says so), with the same members, as `filegate batches --reseal` seals it; `run pending` when that run is
    skipped too (the next sweep tries again). None for a day with members archived since its seal (under
    `late_member = "rerun"` the sweep seals them, under "hold" the operator's reseal decides), or a blocked one."""
    batch = assess_batch(gate, pipeline, business_date)
    latest, skipped = latest_seal(gate, batch), _skipped_note(batch)
    if latest is None or skipped is None or batch.blocked or news_since(batch, latest):
        return None
    try:
        verdict = _reseal_skipped(gate, batch, latest, skipped)
    except _SealLacksFiles:
        return None  # a delivery or a reseal sealed the next revision meanwhile, with a newer file: its own run
    if verdict.run is not None and verdict.run.skipped:
        why = f"Databricks skipped run {verdict.run.run_id} ({verdict.run.skipped}) as well: the next sweep reseals it"
        verdict = replace(verdict, status=RUN_PENDING, reasons=(*verdict.reasons, why))
    base = Outcome(
        WAITING, f"sweep-{pipeline.name}-{business_date:%Y%m%d}", _batch_prefix(gate, pipeline, business_date)
    )
    return log_outcome(_outcome(base, batch, verdict))


def _skipped_note(batch: Batch) -> int | None:
    """The run of the batch's newest revision when its run note says Databricks skipped it as it was started."""
    note = batch.runs.get(batch.revision)
    return noted_skip(note.metadata) if note is not None else None


def reseal(
    gate: Gate, pipeline: Pipeline, business_date: date, *, partial: bool = False, without: tuple[str, ...] = ()
) -> Outcome:
    """An operator's decision to load a batch as it is now (`filegate batches --reseal`).

    A sealed batch with members archived after its seal (held under `late_member = "hold"`) gets the next
    revision and its run, as `rerun` would have done; an unsealed one is sealed with what is there, which
    needs `partial` when members are missing. A blocked member refuses, as everywhere: its corrected upload
    decides, unless it is named in `without` (a corrected upload that can never come): the seal then leaves it
    out as missing and records why (`LEFT_OUT`). Running it again changes nothing: the newest revision already
    holds every member, and its run-now is only re-driven, with the seal's token, when its run note is missing.
    """
    base = Outcome(
        WAITING, f"reseal-{pipeline.name}-{business_date:%Y%m%d}", _batch_prefix(gate, pipeline, business_date)
    )
    batch = assess_batch(gate, pipeline, business_date)
    decision = _decision(gate, batch, without)
    batch, verdict = _decided(
        gate, batch, lambda current: _reseal(gate, _leaving_out(current, decision), partial=partial, without=without)
    )
    # Refused, or nothing new sealed (a `duplicate` records no decision): the outcome says the batch as it is,
    # its blocked members blocked still.
    sealed = verdict.seal is not None and verdict.seal.created
    return log_outcome(_outcome(base, _leaving_out(batch, decision) if sealed else batch, verdict))


def _decision(gate: Gate, batch: Batch, without: tuple[str, ...]) -> dict[str, Mapping[str, Any]]:
    """The record of leaving out each member named in `without` that is blocked or missing and not left out yet:
    what a later reader of the seal needs to see why the day is partial."""
    decided_at = gate.clock().isoformat(timespec="seconds")
    records: dict[str, Mapping[str, Any]] = {}
    for m in batch.members:
        if m.expected.dataset in without and m.chosen is None and m.left_out is None:
            records[m.expected.dataset] = {
                "dataset": m.expected.dataset,
                "was": m.state,
                "report": m.report,
                "reasons": list(report_reasons(gate.store, *m.report.split("/", 1))) if m.report else [],
                "decided_at": decided_at,
                "by": "filegate batches --reseal --partial --without",
            }
    return records


def _leaving_out(batch: Batch, decision: Mapping[str, Mapping[str, Any]]) -> Batch:
    """`batch` with the members `decision` leaves out marked so (missing, not blocked), while still short."""
    if not decision:
        return batch
    members = tuple(
        replace(m, left_out=decision[m.expected.dataset])
        if m.expected.dataset in decision and m.chosen is None and m.left_out is None
        else m
        for m in batch.members
    )
    return replace(batch, members=members)


def _not_to_leave_out(batch: Batch, without: tuple[str, ...]) -> list[str]:
    """Why each member named in `without` has nothing to leave out: it is present, or not in this day's batch."""
    members = {m.expected.dataset: m for m in batch.members}
    why = []
    for name in without:
        m = members.get(name)
        if m is None:
            why.append(f"{name} is not a member of this day's batch")
        elif m.chosen is not None:
            why.append(f"{name} is present ({m.chosen.container}/{m.chosen.path})")
    return why


def _reseal(gate: Gate, batch: Batch, *, partial: bool, without: tuple[str, ...] = ()) -> Verdict:
    unfit = _not_to_leave_out(batch, without)
    if unfit:
        why = "; ".join(unfit)
        return Verdict(IGNORED, (f"--without leaves out only a blocked or missing member: {why}; nothing was sealed",))
    if batch.blocked:
        # With the members already named: the hint alone, followed, would be refused for them in turn.
        named = dict.fromkeys([*without, *(m.expected.dataset for m in batch.blocked)])
        flags = " ".join(f"--without {dataset}" for dataset in named)
        hint = f"when no corrected upload can ever come, --partial {flags} seals the day without it"
        return Verdict(BLOCKED, (*_waiting_reasons(batch), f"nothing was sealed: {hint}"))
    latest = latest_seal(gate, batch)
    left_out = _left_out_note(batch)
    if latest is not None:
        news = news_since(batch, latest)
        if not news:
            run, called = _ensure_run(gate, batch, latest)
            # Skipped by Databricks, it never ran: no repair applies, and the seal's token only finds it again.
            found = batch_run(gate, run.run_id)
            if found is not None and never_ran(found):
                return _reseal_skipped(gate, batch, latest, run.run_id)
            reason = f"revision {latest.revision} already holds every archived member; nothing new was sealed"
            if left_out:
                # Nothing to seal records it: a later reseal that seals news records it when named again.
                newly = ", ".join(m.expected.dataset for m in _newly_left_out(batch))
                reason += f" (the decision to leave out {newly} is not recorded)"
            if called:
                reason += " (its run-now was re-driven with the seal's token)"
            reason += "; to load the same members again, repair that revision's run in Databricks"
            return Verdict(DUPLICATE, (reason,), latest, run, redriven=called)
        if batch.missing and not partial:
            hint = "--partial seals the next revision without them"
            return Verdict(WAITING, (*_waiting_reasons(batch), f"nothing was sealed: {hint}"), latest)
        seal = _seal(gate, batch, latest.revision + 1, partial=bool(batch.missing))
        run, called = _ensure_run(gate, batch, seal)
        if not seal.created:
            reason = f"another event sealed revision {seal.revision} first"
            return Verdict(DUPLICATE, (reason,), seal, run, redriven=called)
        late = ", ".join(news)
        return Verdict(
            SEALED,
            (f"resealed: revision {seal.revision} takes {late}, archived after revision {latest.revision}", *left_out),
            seal,
            run,
        )
    if batch.latest_trigger is None:
        return Verdict(WAITING, (f"no trigger archived ({batch.pipeline.trigger_pattern}); nothing was sealed",))
    if batch.trigger is not None and not batch.trigger.ok:
        reasons = "; ".join(batch.trigger.reasons)
        return Verdict(WAITING, (f"the archived trigger does not read as valid: {reasons}; nothing was sealed",))
    if not _has_required(batch) or (batch.missing and not partial):
        hint = "--partial seals what is there" if _has_required(batch) else "no required member is archived"
        return Verdict(WAITING, (*_waiting_reasons(batch), f"nothing was sealed: {hint}"))
    seal = _seal(gate, batch, 1, partial=bool(batch.missing))
    run, called = _ensure_run(gate, batch, seal)
    if not seal.created:
        return Verdict(DUPLICATE, ("another event sealed this batch first (revision 1)",), seal, run, redriven=called)
    what = f"partial, without {', '.join(batch.missing)}" if batch.missing else "every member archived"
    return Verdict(SEALED, (f"sealed revision 1 by an operator ({what})", *left_out), seal, run)


def _newly_left_out(batch: Batch) -> list[Member]:
    """The members this reseal's decision leaves out: a seal's record of an earlier decision names its revision."""
    return [m for m in batch.members if m.left_out is not None and "revision" not in m.left_out]


def _left_out_note(batch: Batch) -> tuple[str, ...]:
    """One reason per member this reseal newly leaves out, with its rejected upload's report."""
    return tuple(
        f"{m.expected.dataset} left out by an operator's decision"
        + (f" (its rejected upload's report: {m.left_out['report']})" if m.left_out.get("report") else " (missing)")
        for m in _newly_left_out(batch)
        if m.left_out is not None
    )


def _reseal_skipped(gate: Gate, batch: Batch, latest: Seal, skipped: int) -> Verdict:
    """The next revision of a batch whose newest revision's run Databricks skipped: the same members, run anew."""
    seal = _seal(gate, batch, latest.revision + 1, partial=bool(batch.missing))
    run, called = _ensure_run(gate, batch, seal)
    if not seal.created:
        reason = f"another reseal sealed revision {seal.revision} first"
        return Verdict(DUPLICATE, (reason,), seal, run, redriven=called)
    reason = (
        f"revision {latest.revision}'s run {skipped} was skipped by Databricks and never ran: "
        f"resealed as revision {seal.revision} with the same members"
    )
    return Verdict(SEALED, (reason,), seal, run)


def log_outcome(outcome: Outcome) -> Outcome:
    """One JSON line, at WARNING for the statuses an alert should match."""
    level = logging.WARNING if outcome.status in WARNING_STATUSES else logging.INFO
    outcome_log.log(level, outcome.to_json(severity=logging.getLevelName(level)))
    return outcome
