"""`filegate batches`: each pipeline batch with its state, members, seal and run, read from the archive."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from filegate import exits
from filegate.archive import report_reasons
from filegate.batches import (
    LEFT_OUT,
    SEALED,
    Batch,
    assess_batch,
    batch_dates,
    batch_run,
    is_overdue,
    latest_seal,
    news_since,
    rejected_triggers,
    reseal,
    reseal_command,
)
from filegate.errors import FilegateError, SettingsError
from filegate.ingest import DUPLICATE, RUN_PENDING, Gate
from filegate.jobs import ACTIVE_STATES, never_ran
from filegate.jobs import run_state as jobs_run_state
from filegate.readiness import check_job, check_storage, raise_for
from filegate.stores import add_target_option

# Jobs API life-cycle states (the legacy `state.life_cycle_state`) of a run that has not ended yet: a run
# waiting to retry a failed task is WAITING_FOR_RETRY there (WAITING in `status.state`).
_ACTIVE = ACTIVE_STATES | {"WAITING_FOR_RETRY"}
# Sealed, but no run note: run-now was not answered (the Jobs API down, the job missing, the identity refused).
# Nothing loads the day until the sweep asks again with the seal's token, which names why when it fails.
NO_RUN = "no run"


@dataclass(frozen=True)
class BatchRow:
    """One line of `filegate batches`."""

    pipeline: str
    business_date: str
    state: str
    present: tuple[str, ...]
    missing: tuple[str, ...]
    blocked: tuple[str, ...]
    revision: int | None
    run_id: int | None
    run_page_url: str | None
    partial: bool = False
    # present, invalid (archived, but it does not read as valid now), missing, or rejected (then its report)
    trigger: str = "present"
    trigger_report: str | None = None
    # What came after the seal and is not loaded (late_member = hold): files, or a trigger's new statement.
    held: tuple[str, ...] = ()
    # Member versions archived after the one used that the trigger's size or MD5 rules out: never loaded until a
    # trigger describes them (`Member.passed_over_note`).
    passed_over: tuple[str, ...] = ()
    # Why each blocked member was rejected, from its report, in the order of `blocked`.
    blocked_reasons: tuple[str, ...] = ()
    # Why a member whose file is archived still counts as missing: no version is what the trigger states.
    unmatched: tuple[str, ...] = ()
    # Why the trigger was rejected, from `trigger_report`.
    trigger_reasons: str | None = None
    # Members the newest seal records as left out by an operator (`--reseal --partial --without`), with why.
    left_out: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in self.__dict__.items()}


def describe_batch(gate: Gate, batch: Batch, rejected: Mapping[date, str] | None = None) -> BatchRow:
    """A batch's state: waiting, blocked, overdue, rejected (its trigger), sealed (`run_state` tells running,
    succeeded or failed), or `NO_RUN`. `rejected`: the pipeline's `rejected_triggers`, read here when not given."""
    revision = batch.revision or None
    run_id, url, partial = None, None, False
    held: tuple[str, ...] = ()
    trigger, report = "present", None
    if batch.trigger is None:
        if not revision:
            report = (rejected_triggers(gate, batch.pipeline) if rejected is None else rejected).get(
                batch.business_date
            )
        trigger = "rejected" if report else "missing"
    elif not batch.trigger.ok:
        trigger = "invalid"
    seal = latest_seal(gate, batch)
    left_out: tuple[str, ...] = ()
    if seal is not None:
        partial = bool(seal.document.get("partial"))
        left_out = tuple(_left_out(entry) for entry in seal.document.get(LEFT_OUT) or [])
        held = news_since(batch, seal)
        state = NO_RUN
        if seal.revision in batch.runs:
            note = json.loads(_read(gate, batch.runs[seal.revision]))
            run_id, url = int(note["run_id"]), str(note.get("run_page_url") or "")
            state = "sealed"
    elif report:
        # The overdue sweep rejected it (on_incomplete = reject), or it was rejected on arrival: the members
        # wait archived for a corrected trigger, whose event decides again.
        state = "rejected"
    elif (batch.missing or batch.blocked or trigger != "present") and is_overdue(gate, batch):
        # In the sweep's order (batches._decide): an incomplete batch past its window is overdue, blocked or
        # not, and so is one whose trigger no longer reads as valid. A day whose trigger never came is overdue
        # here only: the sweep does not look for such days.
        state = "overdue"
    elif batch.blocked and trigger == "present":
        state = "blocked"
    else:
        state = "waiting"  # with an invalid trigger too: the sweep waits for a corrected one
    return BatchRow(
        batch.pipeline.name,
        batch.business_date.isoformat(),
        state,
        tuple(m.expected.dataset for m in batch.present),
        batch.missing,
        tuple(f"{m.expected.dataset}: {m.report}" for m in batch.blocked),
        revision,
        run_id,
        url,
        partial,
        trigger,
        report,
        held,
        tuple(m.passed_over_note() for m in batch.members if m.passed_over),
        tuple(_rejection_reasons(gate, m.report) for m in batch.blocked if m.report),
        tuple(f"{m.expected.dataset}: {m.note}" for m in batch.members if m.note and m.state == "missing"),
        _rejection_reasons(gate, report) if report else None,
        left_out,
    )


def _rejection_reasons(gate: Gate, report: str) -> str:
    """The reasons a rejected file's report gives, on one line: what its corrected upload must fix."""
    return "; ".join(report_reasons(gate.store, *report.split("/", 1))) or "(its report gives no reasons; read it)"


def _left_out(entry: Mapping[str, Any]) -> str:
    """A seal's record of a member left out by an operator, on one line: which, since when, and why."""
    # Missing: it never came, or no archived version of it is what the trigger describes.
    why = f"rejected: {entry['report']}" if entry.get("report") else "missing"
    reasons = "; ".join(str(reason) for reason in entry.get("reasons") or [])
    return f"{entry['dataset']} (revision {entry.get('revision')}, {why}{f': {reasons}' if reasons else ''})"


def _read(gate: Gate, info: Any) -> bytes:
    return gate.store.read_prefix(info.container, info.path, max(info.size, 1), info.version)


def _listed(gate: Gate, pipeline: str | None) -> list[str]:
    return [name for name in sorted(gate.pipelines) if pipeline is None or name == pipeline]


def list_batches(gate: Gate, pipeline: str | None = None, since: date | None = None) -> Iterator[Batch]:
    for name in _listed(gate, pipeline):
        for day in batch_dates(gate, gate.pipelines[name], since, with_members=True):
            yield assess_batch(gate, gate.pipelines[name], day)


def batch_rows(
    gate: Gate, pipeline: str | None = None, since: date | None = None
) -> tuple[list[BatchRow], FilegateError | None]:
    """Every batch's row, with its run's state from runs/get (a gate without a Jobs API asks none); and why
    the Jobs API did not answer, once it failed: the batches after that are listed without their state."""
    rows = []
    unanswered: FilegateError | None = None
    # Each pipeline's rejected triggers, listed once for all its days.
    rejected = {name: rejected_triggers(gate, gate.pipelines[name]) for name in _listed(gate, pipeline)}
    for batch in list_batches(gate, pipeline, since):
        row = describe_batch(gate, batch, rejected[batch.pipeline.name])
        if row.run_id is not None and unanswered is None:
            try:
                row = replace(row, state=run_state(gate, row.run_id) or row.state)
            except FilegateError as exc:
                unanswered = exc
        rows.append(row)
    return rows, unanswered


def run_state(gate: Gate, run_id: int) -> str | None:
    """running, succeeded, failed, canceled (by a person, or by Databricks at the job's timeout) or skipped
    (Databricks never ran it) from runs/get; None when the gate has no Jobs API or the run is gone. Errors as
    `batches.batch_run`."""
    run = batch_run(gate, run_id)
    if run is None:
        return None
    if never_ran(run):
        return "skipped"
    state = jobs_run_state(run)  # from `status`, or the deprecated legacy state where only it says
    if state in _ACTIVE:
        return "running"
    # A timeout is TIMEDOUT in the legacy result and CANCELED in `status`: canceled either way.
    ended = {"UNKNOWN": None, "SUCCESS": "succeeded", "CANCELED": "canceled", "TIMEDOUT": "canceled"}
    return ended.get(state, "failed")


def main(argv: list[str]) -> int:
    """`filegate batches`: list pipeline batches with state, present/missing/blocked members, seal and run."""
    from filegate.cli import business_date
    from filegate.settings import settings_help

    parser = argparse.ArgumentParser(
        prog="filegate batches",
        description=main.__doc__,
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pipeline", help="only this pipeline")
    parser.add_argument("--since", type=business_date, help="only business dates from this one (YYYY-MM-DD)")
    add_target_option(parser, "which cloud's archive")
    parser.add_argument("--json", action="store_true", help="one JSON object per batch")
    parser.add_argument("--offline", action="store_true", help="do not ask the Jobs API for run states")
    parser.add_argument(
        "--reseal",
        type=business_date,
        metavar="DATE",
        help="load this business date's batch as it is now: members held after its seal get a new revision "
        "and run; an unsealed complete batch is sealed and run (the pipeline: --pipeline, or the only one)",
    )
    parser.add_argument("--partial", action="store_true", help="with --reseal: seal without the missing members")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="MEMBER",
        help="with --reseal --partial, repeatable: leave out this blocked (or missing) member, whose corrected upload "
        "can never come; the seal records the decision and its rejected upload's report, and a corrected upload "
        "that comes after all is a late member",
    )
    args = parser.parse_args(argv)
    if args.partial and args.reseal is None:
        parser.error("--partial goes with --reseal")
    if args.without and not args.partial:
        parser.error("--without goes with --reseal --partial")
    from filegate.settings import Settings
    from filegate.stores import open_gate

    try:
        settings = Settings.from_env()
        gate = open_gate(args.target, settings)
        if args.reseal is not None:
            without = tuple(dict.fromkeys(args.without))  # named twice, left out once
            return _reseal(gate, args.pipeline, args.reseal, partial=args.partial, without=without)
        if args.pipeline is not None and args.pipeline not in gate.pipelines:
            # A typo listed "no batches" with exit 0: an all-clear for a pipeline that does not exist.
            names = ", ".join(sorted(gate.pipelines)) or "none is configured"
            print(f"filegate batches: no pipeline {args.pipeline!r} (pipelines: {names})", file=sys.stderr)
            return exits.CONFIG
        if args.offline:
            gate = replace(gate, batch_jobs=None)
        rows, unanswered = batch_rows(gate, args.pipeline, args.since)
    except FilegateError as exc:
        what = "nothing was sealed, or its run did not start" if args.reseal else "cannot read the archive"
        return exits.report_failure("filegate batches", exc, try_again=f"{what}, try again")
    if args.json:
        for row in rows:
            print(json.dumps(row.to_dict()))
    else:
        print(format_rows(rows))
    # As `filegate status` for a run: a scheduler reads the exit code. Only a failed or canceled run, which a
    # repair in Databricks turns into a success: an overdue or rejected day is the configured policy's outcome
    # and stays so, and a scheduled listing would fail on it every day after.
    # A skipped run likewise: nothing loaded the day until it is resealed (by the next sweep, when the skip was
    # noted as the run started; by a person otherwise). A seal without a run may still get one from the sweep
    # (75); whatever else happened, the most urgent code wins, so an outage later in the listing does not hide
    # a failed run listed before it.
    codes = {exits.OK}
    for state in ("failed", "canceled", "skipped"):
        ended = [row for row in rows if row.state == state]
        if ended:
            named = ", ".join(f"{row.pipeline} {row.business_date} (run {row.run_id})" for row in ended)
            print(f"filegate batches: {len(ended)} batch run(s) {state}: {named}", file=sys.stderr)
            codes.add(exits.FAILED)
    runless = [f"{row.pipeline} {row.business_date} (revision {row.revision})" for row in rows if row.state == NO_RUN]
    if runless:
        print(
            f"filegate batches: {len(runless)} sealed batch(es) without a run: {', '.join(runless)}; the sweep asks "
            "run-now again with each seal's token (`filegate sweep` now, which says why a run does not start)",
            file=sys.stderr,
        )
        codes.add(exits.TRY_AGAIN)
    if unanswered is not None:
        # The archive's part is listed; the runs' states are not: say so, and exit by why.
        codes.add(
            exits.report_failure(
                "filegate batches",
                unanswered,
                config_note=" (sealed batches are listed without their run's state; --offline does not ask)",
                try_again="sealed batches are listed without their run's state, try again (--offline does not ask)",
            )
        )
    return exits.most_urgent(codes)


def _reseal(gate: Gate, pipeline: str | None, business_date: date, *, partial: bool, without: tuple[str, ...]) -> int:
    """Print the reseal's outcome as one JSON line: 0 when the batch is sealed and run, 1 when refused."""
    if pipeline is None and len(gate.pipelines) != 1:
        names = ", ".join(sorted(gate.pipelines)) or "none is configured"
        print(f"filegate batches: --reseal needs --pipeline (pipelines: {names})", file=sys.stderr)
        return exits.CONFIG
    name = pipeline or next(iter(gate.pipelines))
    if name not in gate.pipelines:
        print(
            f"filegate batches: no pipeline {name!r} (pipelines: {', '.join(sorted(gate.pipelines))})", file=sys.stderr
        )
        return exits.CONFIG
    unknown = [member for member in without if member not in gate.pipelines[name].members]
    if unknown:
        members = ", ".join(gate.pipelines[name].members)
        print(
            f"filegate batches: pipeline {name!r} has no member {', '.join(map(repr, unknown))} (members: {members})",
            file=sys.stderr,
        )
        return exits.CONFIG
    # Checked before anything is sealed: a seal whose run cannot start would wait for the sweep.
    if gate.batch_jobs is None:
        raise SettingsError("no batch job to run the batch: set FILEGATE_BATCH_JOB_NAME")
    raise_for(check_storage(gate.settings, gate.store) + check_job(gate.batch_jobs, "batch job"))
    from filegate.cli import quiet_outcome_log

    with quiet_outcome_log():  # printed below: the outcome log would say it again on stderr
        outcome = reseal(gate, gate.pipelines[name], business_date, partial=partial, without=without)
    print(outcome.to_json())
    if outcome.status == RUN_PENDING:
        return exits.TRY_AGAIN  # Databricks skipped its run too: the next sweep reseals it
    return exits.OK if outcome.status in (SEALED, DUPLICATE) else exits.FAILED


def format_rows(rows: list[BatchRow]) -> str:
    """A plain table: one line per batch, then the blocked members' reports and run pages indented below it."""
    if not rows:
        return "no batches"
    # As wide as the longest pipeline name, so that two pipelines' rows keep their columns under the header.
    named = max(12, *(len(row.pipeline) for row in rows))
    lines = [f"{'pipeline':<{named}} {'date':<10} {'state':<10} {'rev':>3} {'run':>8}  members"]
    for row in rows:
        members = f"present {','.join(row.present) or '-'}"
        if row.missing:
            members += f"; missing {','.join(row.missing)}"
        if row.trigger != "present":
            members += f"; trigger {row.trigger}"
        revision = str(row.revision or "-") + ("p" if row.partial else "")
        run = str(row.run_id or "-")
        lines.append(
            f"{row.pipeline:<{named}} {row.business_date:<10} {row.state:<10} {revision:>3} {run:>8}  {members}"
        )
        lines.extend(f"    left out by an operator: {left_out}" for left_out in row.left_out)
        for index, blocked in enumerate(row.blocked):
            lines.append(f"    blocked by {blocked}")
            if index < len(row.blocked_reasons):
                lines.append(f"      {row.blocked_reasons[index]}")
        if row.trigger_report:
            lines.append(f"    trigger rejected: {row.trigger_report}")
            if row.trigger_reasons:
                lines.append(f"      {row.trigger_reasons}")
        if row.held:
            then = f"`{reseal_command(row.pipeline, row.business_date)}` loads it"
            if row.blocked:
                then = "a corrected upload of what blocks the day comes first"
            lines.extend(f"    held after the seal, not loaded: {held}; {then}" for held in row.held)
        lines.extend(f"    not loaded: {note}" for note in row.passed_over)
        lines.extend(f"    missing {note}" for note in row.unmatched)
        if row.state == "skipped":
            again = f"`{reseal_command(row.pipeline, row.business_date)}` seals the same members as the next revision"
            lines.append(f"    run {row.run_id} was skipped by Databricks and never ran: {again} and runs it")
        if row.run_page_url:
            lines.append(f"    {row.run_page_url}")
    return "\n".join(lines)
