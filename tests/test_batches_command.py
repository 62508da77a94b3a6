"""`filegate batches`: what an operator sees for each batch, read from a real store and the local Jobs API."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import replace
from datetime import date

import pytest

from filegate.batches import BLOCKED, LATE_MEMBER, SEALED, WAITING, reseal
from filegate.batches_command import BatchRow, describe_batch, format_rows, list_batches, run_state
from filegate.cli import main
from filegate.ingest import DUPLICATE, IGNORED, REJECTED, RUN_PENDING, Gate, Outcome
from filegate.sweep import sweep_pipeline_batches
from local_world.emulators import free_port
from local_world.jobs_api import Fault
from local_world.jobs_api.recording import RecordingRunner
from tests.faults.world import World
from tests.test_batches import (
    BATCH_JOB_ID,
    MEMBERS,
    SAMPLES,
    a_row_more,
    batch_pieces,
    batch_runs,
    deliver,
    later_clock,
    member_bytes,
    member_name,
    read_seal,
    seal_unsized,
    sealed_without_a_batch_job,
    seals,
    trigger_name,
    unsized_pieces,
    with_policy,
)


def test_batches_lists_sealed_waiting_and_blocked_batches(world: World) -> None:
    gate = world.gate()
    sealed, waiting, blocked = date(2025, 4, 1), date(2025, 4, 2), date(2025, 1, 16)
    for name, data in batch_pieces(sealed).items():
        deliver(gate, world.upload(name, data))
    deliver(gate, world.upload(trigger_name(waiting), batch_pieces(waiting)[trigger_name(waiting)]))
    deliver(gate, world.upload(member_name("orders", waiting), batch_pieces(waiting)[member_name("orders", waiting)]))
    bad = (SAMPLES / "bad" / member_name("customers", blocked)).read_bytes()
    deliver(gate, world.upload(member_name("customers", blocked), bad))
    deliver(gate, world.upload(trigger_name(blocked), (SAMPLES / trigger_name(blocked)).read_bytes()))

    rows = [describe_batch(gate, batch) for batch in list_batches(gate)]

    assert [(r.business_date, r.state) for r in rows] == [
        ("2025-01-16", "blocked"),
        ("2025-04-01", "sealed"),
        ("2025-04-02", "waiting"),
    ]
    assert rows[0].blocked[0].startswith("customers: ")
    assert rows[0].blocked[0].endswith(".report.json")
    assert rows[1].revision == 1
    assert rows[1].run_id is not None
    assert rows[1].present == MEMBERS
    assert rows[2].present == ("orders",)
    assert rows[2].missing == tuple(d for d in MEMBERS if d != "orders")
    assert run_state(gate, rows[1].run_id) in ("running", "succeeded")
    table = format_rows(rows)
    assert "blocked by customers: " in table
    # Why, from the report: the listing alone says what the corrected upload must fix.
    assert rows[0].blocked_reasons == ("header is missing columns: email; header has unexpected columns: 'e_mail'",)
    assert f"{rows[0].blocked[0]}\n      header is missing columns: email; " in table
    assert str(rows[1].run_id) in table
    assert [describe_batch(gate, b).business_date for b in list_batches(gate, since=date(2025, 4, 2))] == ["2025-04-02"]


def test_the_listing_keeps_its_columns_under_the_header_for_a_long_pipeline_name() -> None:
    # The pipeline column was 12 wide: a longer name pushed its rows' date, state and run out from under the header.
    rows = [
        BatchRow(name, "2025-04-01", SEALED, MEMBERS, (), (), 1, 1001, None)
        for name in ("ecommerce", "ecommerce_returns_emea")
    ]

    lines = format_rows(rows).splitlines()

    assert len({line.index("2025-04-01") for line in lines[1:]} | {lines[0].index("date")}) == 1
    assert len({line.index("1001") + len("1001") for line in lines[1:]} | {lines[0].index("run") + 3}) == 1


def test_a_day_whose_trigger_never_came_is_listed_and_overdue_once_its_window_passes(world: World) -> None:
    pipelines = with_policy(complete_within_minutes=30)
    gate = world.gate(pipelines=pipelines)
    day = date(2025, 3, 9)
    for dataset in MEMBERS:
        deliver(gate, world.upload(member_name(dataset, day), member_bytes(dataset)))

    [row] = [describe_batch(gate, batch) for batch in list_batches(gate)]
    assert (row.business_date, row.state, row.trigger, row.present, row.missing) == (
        "2025-03-09",
        WAITING,
        "missing",
        MEMBERS,
        (),
    )
    late = world.gate(pipelines=pipelines, clock=later_clock(31))
    [row] = [describe_batch(late, batch) for batch in list_batches(late)]
    assert row.state == "overdue"
    assert "trigger missing" in format_rows([row])
    # Only the listing looks for such days: nothing says a day is a batch before its trigger comes.
    assert list(sweep_pipeline_batches(late)) == []

    # A trigger rejected on arrival: the day says so, with the report to read.
    rejected = deliver(gate, world.upload(trigger_name(day), b"{not json"))
    assert rejected.status == REJECTED
    [row] = [describe_batch(gate, batch) for batch in list_batches(gate)]
    assert (row.state, row.trigger, row.trigger_report) == (
        "rejected",
        "rejected",
        f"{rejected.rejected_path}.report.json",
    )
    # Why, from the report, as for a blocked member.
    assert row.trigger_reasons == "; ".join(rejected.reasons)
    assert f"trigger rejected: {row.trigger_report}\n      {row.trigger_reasons}" in format_rows([row])


def test_a_day_whose_trigger_the_overdue_sweep_rejected_stays_listed_until_a_corrected_trigger(world: World) -> None:
    pipelines = with_policy(on_incomplete="reject", complete_within_minutes=30)
    gate = world.gate(pipelines=pipelines)
    day = date(2025, 3, 5)
    pieces = batch_pieces(day)
    for name, data in pieces.items():
        if not name.startswith("shipping"):
            deliver(gate, world.upload(name, data))
    late = world.gate(pipelines=pipelines, clock=later_clock(31))
    [swept] = sweep_pipeline_batches(late)
    assert swept.rejected_path is not None

    [row] = [describe_batch(late, batch) for batch in list_batches(late)]

    assert (row.state, row.trigger, row.missing) == ("rejected", "rejected", ("shipping",))
    assert row.trigger_report == f"{swept.rejected_path}.report.json"
    assert f"trigger rejected: {row.trigger_report}" in format_rows([row])
    shipping = member_name("shipping", day)
    deliver(gate, world.upload(shipping, pieces[shipping]))
    assert deliver(gate, world.upload(trigger_name(day), pieces[trigger_name(day)])).status == SEALED
    [row] = [describe_batch(gate, batch) for batch in list_batches(gate)]
    assert (row.state, row.trigger, row.trigger_report) == (SEALED, "present", None)


def test_a_blocked_batch_past_its_window_is_listed_overdue_as_the_sweep_says(world: World) -> None:
    pipelines = with_policy(complete_within_minutes=30)
    gate = world.gate(pipelines=pipelines)
    day = date(2025, 1, 16)
    deliver(
        gate,
        world.upload(member_name("customers", day), (SAMPLES / "bad" / member_name("customers", day)).read_bytes()),
    )
    deliver(gate, world.upload(trigger_name(day), (SAMPLES / trigger_name(day)).read_bytes()))
    late = world.gate(pipelines=pipelines, clock=later_clock(31))

    [swept] = sweep_pipeline_batches(late)
    [row] = [describe_batch(late, batch) for batch in list_batches(late)]

    assert (swept.status, row.state) == ("overdue", "overdue")
    assert row.blocked[0].startswith("customers: ")


def test_batches_is_a_filegate_command_with_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "batches" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["batches", "--help"])
    assert exited.value.code == 0
    assert "--pipeline" in capsys.readouterr().out


def test_reseal_loads_a_member_held_after_the_seal_as_the_next_revision_once(world: World) -> None:
    gate = world.gate(pipelines=with_policy(late_member="hold"))
    day = date(2025, 3, 7)
    seal_unsized(world, gate, day)
    corrected = a_row_more("orders")
    time.sleep(1.1)  # Azure's Last-Modified counts whole seconds: the correction is the newest version there too
    late = deliver(gate, world.upload(member_name("orders", day), corrected))
    assert late.status == LATE_MEMBER
    command = f"filegate batches --reseal {day} --pipeline ecommerce"
    assert late.reasons[-1].endswith(f"(late_member = hold): `{command}` loads it")
    assert len(batch_runs(world)) == 1
    # The listing showed the day sealed and run as if nothing waited on a decision.
    [held] = [describe_batch(gate, batch) for batch in list_batches(gate)]
    [held_file] = held.held
    assert held_file.startswith(f"{world.settings.archive.container}/orders/")
    assert "orders_2025_03_07" in held_file
    assert f"held after the seal, not loaded: {held_file}; `{command}` loads it" in format_rows([held])

    resealed = reseal(gate, gate.pipelines["ecommerce"], day)

    assert resealed.status == SEALED
    assert resealed.revision == 2
    assert "orders_2025_03_07" in resealed.reasons[-1]
    assert len(batch_runs(world)) == 2
    first, second = (read_seal(world, path) for path in seals(world, day))
    assert [m["size"] for m in second["members"] if m["dataset"] == "orders"] == [len(corrected)]
    assert second["batch_id"] == first["batch_id"]  # the batch job replaces revision 1's rows
    again = reseal(gate, gate.pipelines["ecommerce"], day)
    assert (again.status, again.revision, again.run_id) == (DUPLICATE, 2, resealed.run_id)
    assert len(batch_runs(world)) == 2
    assert [describe_batch(gate, batch).held for batch in list_batches(gate)] == [()]


def test_a_member_archived_but_not_as_the_trigger_states_is_listed_missing_with_why(world: World) -> None:
    # The trigger's outcome said "orders: archived version(s) have N bytes; the trigger says M", the listing only
    # "missing orders": an operator looked for an upload that was there.
    gate = world.gate()
    day = date(2025, 4, 8)
    pieces = batch_pieces(day)
    for name, data in pieces.items():
        if not name.startswith("trigger"):
            deliver(gate, world.upload(name, data))
    document = json.loads(pieces[trigger_name(day)])
    [orders] = [entry for entry in document["files"] if entry["dataset"] == "orders"]
    orders["bytes"] += 10
    assert deliver(gate, world.upload(trigger_name(day), json.dumps(document).encode())).status == WAITING

    [row] = [describe_batch(gate, batch) for batch in list_batches(gate)]

    assert row.missing == ("orders",)
    stated = f"the trigger says {orders['bytes']} bytes"
    assert row.unmatched == (f"orders: archived version(s) have {orders['bytes'] - 10} bytes; {stated}",)
    assert f"    missing orders: archived version(s) have {orders['bytes'] - 10} bytes; {stated}" in format_rows([row])


def test_a_blocked_member_is_not_also_listed_missing_and_a_lost_report_is_said(world: World) -> None:
    # Its archived version is not what the trigger states, and its newer upload was rejected: the row said
    # "blocked by customers" and "missing customers: archived version(s) have ...", while missing listed none.
    gate = world.gate()
    day = date(2025, 1, 16)
    pieces = batch_pieces(day)
    deliver(gate, world.upload(member_name("customers", day), pieces[member_name("customers", day)]))
    document = json.loads(pieces[trigger_name(day)])
    [customers] = [entry for entry in document["files"] if entry["dataset"] == "customers"]
    customers["bytes"] += 10
    deliver(gate, world.upload(trigger_name(day), json.dumps(document).encode()))
    bad = (SAMPLES / "bad" / member_name("customers", day)).read_bytes()
    blocked = deliver(gate, world.upload(member_name("customers", day), bad))
    # A crash between the rejected copy and its report: the listing told the operator to read a missing file.
    _delete_report(gate, blocked)

    [row] = [describe_batch(gate, batch) for batch in list_batches(gate)]

    assert row.blocked == tuple(f"customers: {report}" for report in blocked.blocked_by)
    assert "customers" not in row.missing
    assert row.unmatched == ()
    assert row.blocked_reasons == ("rejected earlier; its report is missing",)


def test_a_report_giving_its_one_reason_as_a_string_is_read_as_that_reason(world: World) -> None:
    # A report rewritten by hand with `"reasons": "..."` was listed "(its report gives no reasons; read it)".
    gate = world.gate()
    day = date(2025, 1, 16)
    deliver(gate, world.upload(trigger_name(day), batch_pieces(day)[trigger_name(day)]))
    bad = (SAMPLES / "bad" / member_name("customers", day)).read_bytes()
    blocked = deliver(gate, world.upload(member_name("customers", day), bad))
    container, path = _delete_report(gate, blocked)
    by_hand = json.dumps({"reasons": "customer_id 7 has no email"}).encode()
    world.store.put(container, path, by_hand, "application/json", {})

    [row] = [describe_batch(gate, batch) for batch in list_batches(gate)]

    assert row.blocked_reasons == ("customer_id 7 has no email",)


def _delete_report(gate: Gate, blocked: Outcome) -> tuple[str, str]:
    """Delete the report of the rejected upload blocking a member; the container and path it was at."""
    container, path = blocked.blocked_by[0].split("/", 1)
    report = gate.store.stat(container, path)
    assert report is not None
    gate.store.delete(container, path, report.version)
    return container, path


def test_the_listing_names_a_member_version_the_trigger_passes_over(world: World) -> None:
    # A correction whose size the trigger does not state is archived and never loaded; the late_member outcome
    # said so once, and the listing showed the day succeeded with nothing waiting on anyone.
    gate = world.gate(pipelines=with_policy(late_member="rerun"))
    day = date(2025, 3, 9)
    outcomes = [deliver(gate, world.upload(name, data)) for name, data in batch_pieces(day).items()]
    assert outcomes[-1].status == SEALED
    time.sleep(1.1)  # Azure's Last-Modified counts whole seconds: the correction is the newest version there too
    late = deliver(gate, world.upload(member_name("orders", day), a_row_more("orders")))
    assert late.status == LATE_MEMBER

    [row] = [describe_batch(gate, batch) for batch in list_batches(gate)]

    [note] = row.passed_over
    assert "orders_2025_03_09__v" in note
    assert note.endswith("upload a trigger that describes it to load it")
    assert f"    not loaded: {note}" in format_rows([row])
    assert row.to_dict()["passed_over"] == [note]
    assert row.held == ()  # a reseal would not load it: the trigger still rules it out


def test_reseal_seals_an_incomplete_batch_only_when_told_to_load_what_is_there(world: World) -> None:
    gate = world.gate()
    pipeline = gate.pipelines["ecommerce"]
    day = date(2025, 4, 3)
    for name, data in batch_pieces(day).items():
        if name != member_name("shipping", day):
            deliver(gate, world.upload(name, data))

    refused = reseal(gate, pipeline, day)

    assert refused.status == WAITING
    assert refused.missing == ("shipping",)
    assert "--partial" in refused.reasons[-1]
    assert seals(world, day) == []
    partial = reseal(gate, pipeline, day, partial=True)
    assert (partial.status, partial.revision) == (SEALED, 1)
    assert partial.sealed_path is not None
    document = read_seal(world, partial.sealed_path.partition("/")[2])
    assert (document["partial"], document["missing"]) == (True, ["shipping"])
    assert len(batch_runs(world)) == 1


def test_reseal_refuses_a_batch_with_a_rejected_member(world: World) -> None:
    gate = world.gate()
    day = date(2025, 1, 16)
    bad = (SAMPLES / "bad" / member_name("customers", day)).read_bytes()
    deliver(gate, world.upload(member_name("customers", day), bad))
    deliver(gate, world.upload(trigger_name(day), (SAMPLES / trigger_name(day)).read_bytes()))

    refused = reseal(gate, gate.pipelines["ecommerce"], day, partial=True)

    assert refused.status == BLOCKED
    [report] = refused.blocked_by
    assert report.endswith(".report.json")
    assert seals(world, day) == []
    assert batch_runs(world) == []


def blocked_day(world: World, gate: Gate, day: date, **bad: bytes) -> str:
    """Every piece of the day delivered, customers (and each member in `bad`) as a file its contract rejects: the
    day is blocked. The customers file's report."""
    pieces = batch_pieces(day)
    pieces[member_name("customers", day)] = (SAMPLES / "bad" / member_name("customers", date(2025, 1, 16))).read_bytes()
    pieces.update({member_name(dataset, day): data for dataset, data in bad.items()})
    outcomes = [deliver(gate, world.upload(name, data)) for name, data in pieces.items()]
    assert outcomes[-1].status == BLOCKED
    assert len(outcomes[-1].blocked_by) == 1 + len(bad)
    return outcomes[-1].blocked_by[0]


def test_reseal_without_a_member_that_can_never_be_corrected_seals_the_day_and_records_why(world: World) -> None:
    # A rejected member blocked its day until a corrected upload: when the source could never send one, the day
    # could never be loaded, not even in part, short of editing the archive by hand.
    gate = world.gate(pipelines=with_policy(late_member="hold"))
    pipeline = gate.pipelines["ecommerce"]
    day = date(2025, 5, 6)
    report = blocked_day(world, gate, day)
    reasons = ["header is missing columns: email", "header has unexpected columns: 'e_mail'"]

    refused = reseal(gate, pipeline, day, partial=True)
    present = reseal(gate, pipeline, day, partial=True, without=("customers", "orders"))
    sealed = reseal(gate, pipeline, day, partial=True, without=("customers",))

    assert refused.status == BLOCKED
    assert refused.reasons[-1].endswith("--partial --without customers seals the day without it")
    assert present.status == IGNORED
    assert "orders is present (" in present.reasons[-1]
    assert (present.missing, present.blocked_by) == ((), (report,))
    assert (sealed.status, sealed.revision, sealed.missing, sealed.blocked_by) == (SEALED, 1, ("customers",), ())
    decided = f"customers left out by an operator's decision (its rejected upload's report: {report})"
    assert sealed.reasons[-1] == decided
    [path] = seals(world, day)
    document = read_seal(world, path)
    assert (document["partial"], document["missing"]) == (True, ["customers"])
    # The batch job stages exactly the sealed members: customers is missing to it, as under load_available.
    assert [m["dataset"] for m in document["members"]] == [d for d in MEMBERS if d != "customers"]
    [left_out] = document["left_out"]
    assert {key: left_out[key] for key in ("dataset", "was", "report", "reasons", "revision")} == {
        "dataset": "customers",
        "was": "blocked",
        "report": report,
        "reasons": reasons,
        "revision": 1,
    }
    container, report_at = report.split("/", 1)
    assert gate.store.stat(container, report_at) is not None
    assert gate.store.stat(container, report_at.removesuffix(".report.json")) is not None  # its bytes stay
    assert len(batch_runs(world)) == 1

    [row] = [describe_batch(gate, batch) for batch in list_batches(gate)]
    assert (row.state, row.revision, row.partial, row.missing, row.blocked) == (SEALED, 1, True, ("customers",), ())
    assert row.left_out == (f"customers (revision 1, rejected: {report}: {'; '.join(reasons)})",)
    assert f"\n    left out by an operator: {row.left_out[0]}" in format_rows([row])

    again = reseal(gate, pipeline, day, partial=True, without=("customers",))
    assert (again.status, again.revision, again.run_id) == (DUPLICATE, 1, sealed.run_id)
    assert len(seals(world, day)) == 1
    assert len(batch_runs(world)) == 1

    # The source sends a corrected file after all: a member after the seal, held, and nothing of it is lost.
    corrected = deliver(gate, world.upload(member_name("customers", day), member_bytes("customers")))
    assert corrected.status == LATE_MEMBER
    command = f"filegate batches --reseal {day} --pipeline ecommerce"
    assert corrected.reasons[-1].endswith(f"(late_member = hold): `{command}` loads it")
    [row] = [describe_batch(gate, batch) for batch in list_batches(gate)]
    assert [held.split("/")[1] for held in row.held] == ["customers"]
    resealed = reseal(gate, pipeline, day)
    assert (resealed.status, resealed.revision, resealed.missing) == (SEALED, 2, ())
    second = read_seal(world, seals(world, day)[1])
    assert [m["dataset"] for m in second["members"]] == list(MEMBERS)
    assert (second["partial"], second["left_out"]) == (False, [])
    assert len(batch_runs(world)) == 2


def test_a_corrected_upload_after_a_day_sealed_without_it_is_rerun_under_rerun(world: World) -> None:
    gate = world.gate(pipelines=with_policy(late_member="rerun"))
    day = date(2025, 5, 7)
    blocked_day(world, gate, day)
    assert reseal(gate, gate.pipelines["ecommerce"], day, partial=True, without=("customers",)).revision == 1

    corrected = deliver(gate, world.upload(member_name("customers", day), member_bytes("customers")))

    assert (corrected.status, corrected.revision) == (LATE_MEMBER, 2)
    assert corrected.reasons[-1].endswith("(late_member = rerun)")
    second = read_seal(world, seals(world, day)[1])
    assert [m["dataset"] for m in second["members"]] == list(MEMBERS)
    assert len(batch_runs(world)) == 2


def test_a_later_revision_carries_the_decision_to_leave_a_member_out(world: World) -> None:
    gate = world.gate(pipelines=with_policy(late_member="hold"))
    pipeline = gate.pipelines["ecommerce"]
    day = date(2025, 5, 9)
    pieces = unsized_pieces(day)
    pieces[member_name("customers", day)] = (SAMPLES / "bad" / member_name("customers", date(2025, 1, 16))).read_bytes()
    assert [deliver(gate, world.upload(name, data)) for name, data in pieces.items()][-1].status == BLOCKED
    assert reseal(gate, pipeline, day, partial=True, without=("customers",)).revision == 1
    time.sleep(1.1)  # Azure's Last-Modified counts whole seconds: the correction is the newest version there too

    late = deliver(gate, world.upload(member_name("orders", day), a_row_more("orders")))

    # Held as after any seal, no longer "while the rejected customers blocks it".
    assert late.status == LATE_MEMBER
    assert late.reasons[-1].endswith(
        f"(late_member = hold): `filegate batches --reseal {day} --pipeline ecommerce` loads it"
    )
    assert reseal(gate, pipeline, day).status == WAITING  # customers is missing: --partial again
    resealed = reseal(gate, pipeline, day, partial=True)
    assert (resealed.status, resealed.revision, resealed.missing) == (SEALED, 2, ("customers",))
    second = read_seal(world, seals(world, day)[1])
    assert [(entry["dataset"], entry["revision"]) for entry in second["left_out"]] == [("customers", 1)]
    assert len(batch_runs(world)) == 2


@pytest.fixture
def target(world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The settings a `filegate batches` process would read for this world, set; its `--target` arguments."""
    from tests.test_readiness import _env

    for name, value in _env(world, request).items():
        monkeypatch.setenv(name, value)
    return ["--target", "azure" if world.kind == "azure" else "gcp"]


def deliver_day(world: World, day: date, *, leaving_out: str = "") -> None:
    """Every piece of the day's batch delivered, but the file named `leaving_out`."""
    gate = world.gate()
    for name, data in batch_pieces(day).items():
        if name != leaving_out:
            deliver(gate, world.upload(name, data))


def test_the_reseal_command_prints_the_outcome_and_exits_by_it(
    world: World, target: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    day = date(2025, 4, 4)
    deliver_day(world, day, leaving_out=member_name("inventory", day))

    assert main(["batches", "--reseal", day.isoformat(), *target]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == WAITING
    assert main(["batches", "--reseal", day.isoformat(), "--partial", "--pipeline", "ecommerce", *target]) == 0
    sealed = json.loads(capsys.readouterr().out)
    assert (sealed["status"], sealed["revision"], sealed["missing"]) == (SEALED, 1, ["inventory"])
    assert main(["batches", "--reseal", day.isoformat(), "--pipeline", "nope", *target]) == 2
    assert "no pipeline 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["batches", "--partial"])
    assert refused.value.code == 2


def test_the_reseal_command_prints_its_outcome_once(
    world: World, target: list[str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # The JSON line on stdout came again on stderr as a log line (with its severity), unlike every other command
    # that prints outcomes.
    day = date(2025, 4, 5)
    deliver_day(world, day)

    with caplog.at_level(logging.INFO, logger="filegate.outcome"):
        assert main(["batches", "--reseal", day.isoformat(), *target]) == 0

    assert json.loads(capsys.readouterr().out)["status"] == DUPLICATE
    assert [record.getMessage() for record in caplog.records if record.name == "filegate.outcome"] == []


def test_the_reseal_command_leaves_out_a_member_only_when_told_which_and_to_load_a_part(
    world: World, target: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    day = date(2025, 5, 8)
    blocked_day(world, world.gate(), day)
    command = ["batches", "--reseal", day.isoformat(), "--pipeline", "ecommerce", *target]

    with pytest.raises(SystemExit) as unsaid:
        main([*command, "--without", "customers"])
    assert unsaid.value.code == 2
    assert "--without goes with --reseal --partial" in capsys.readouterr().err
    assert main([*command, "--partial", "--without", "customer"]) == 2
    members = "customers, products, inventory, orders, shipping"
    assert f"pipeline 'ecommerce' has no member 'customer' (members: {members})" in capsys.readouterr().err
    assert main([*command, "--partial", "--without", "orders"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == IGNORED
    assert seals(world, day) == []

    assert main([*command, "--partial", "--without", "customers"]) == 0
    sealed = json.loads(capsys.readouterr().out)
    assert (sealed["status"], sealed["revision"], sealed["missing"]) == (SEALED, 1, ["customers"])
    assert main([*command, "--partial", "--without", "customers", "--without", "customers"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == DUPLICATE
    assert main(["batches", "--offline", "--json", *target]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["left_out"][0].startswith("customers (revision 1, rejected: ")


def test_reseal_of_a_partial_revision_needs_partial_again_while_members_are_missing(world: World) -> None:
    gate = world.gate(pipelines=with_policy(late_member="hold"))
    pipeline = gate.pipelines["ecommerce"]
    day = date(2025, 4, 5)
    for name, data in unsized_pieces(day).items():
        if name != member_name("shipping", day):
            deliver(gate, world.upload(name, data))
    assert reseal(gate, pipeline, day, partial=True).revision == 1
    time.sleep(1.1)  # Azure's Last-Modified counts whole seconds: the correction is the newest version there too
    assert deliver(gate, world.upload(member_name("orders", day), a_row_more("orders"))).status == LATE_MEMBER

    refused = reseal(gate, pipeline, day)

    assert (refused.status, refused.missing) == (WAITING, ("shipping",))
    assert "--partial" in refused.reasons[-1]
    assert len(seals(world, day)) == 1
    resealed = reseal(gate, pipeline, day, partial=True)
    assert (resealed.status, resealed.revision) == (SEALED, 2)
    assert read_seal(world, seals(world, day)[1])["partial"] is True
    assert len(batch_runs(world)) == 2


def test_a_failed_batch_run_or_a_mistyped_pipeline_is_not_an_all_clear(
    world: World, target: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both exited 0: a failed batch was a row of the listing only, a misspelt pipeline read "no batches".
    assert isinstance(world.jobs_api.runner, RecordingRunner)
    world.jobs_api.runner.failures = {"stage_members": "exit code 1: a member could not be read"}
    day = date(2025, 4, 6)
    deliver_day(world, day)
    world.jobs_api.wait_idle(timeout=30)

    assert main(["batches", *target]) == 1
    found = capsys.readouterr()
    assert "failed" in found.out
    assert "1 batch run(s) failed: ecommerce 2025-04-06 (run " in found.err
    # As Databricks answers once it drops the deprecated `state`: read from `status` alone, the run listed
    # `sealed` (no state) and exited 0.
    world.jobs_api.legacy_state = False
    assert main(["batches", *target]) == 1
    assert "1 batch run(s) failed: ecommerce 2025-04-06 (run " in capsys.readouterr().err
    assert main(["batches", "--pipeline", "ecomerce", *target]) == 2
    assert "no pipeline 'ecomerce' (pipelines: ecommerce)" in capsys.readouterr().err
    # The run page's address for the workspace's: runs/get answered ENDPOINT_NOT_FOUND, read as "no such run",
    # and the day listed `sealed`, exit 0.
    monkeypatch.setenv("DATABRICKS_HOST", f"{world.jobs_api.url}/runs/1001")
    assert main(["batches", *target]) == 2
    assert "does not serve the Jobs API" in capsys.readouterr().err


def test_a_canceled_batch_run_is_listed_canceled_not_failed(
    world: World, target: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Listed `failed`: someone stopped it (or the job's timeout did), and nothing in the run had failed.
    assert isinstance(world.jobs_api.runner, RecordingRunner)
    world.jobs_api.runner.seconds = 60
    day = date(2025, 4, 7)
    deliver_day(world, day)
    [run] = batch_runs(world)
    assert world.jobs_api.cancel(run["run_id"])
    world.jobs_api.wait_idle(timeout=30)

    for legacy_state in (True, False):
        world.jobs_api.legacy_state = legacy_state
        assert main(["batches", *target]) == 1
        found = capsys.readouterr()
        assert re.search(rf"^ecommerce +{day} +canceled ", found.out, re.MULTILINE), found.out
        assert f"1 batch run(s) canceled: ecommerce {day} (run {run['run_id']})" in found.err


def test_a_failed_run_is_not_hidden_by_an_outage_later_in_the_listing(
    world: World, target: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # The listing exited 75 ("try again") once runs/get failed for a later day, and stderr named only the
    # outage: a scheduler retrying on 75 never raised the failed day. The most urgent code wins (1).
    assert isinstance(world.jobs_api.runner, RecordingRunner)
    world.jobs_api.runner.failures = {"stage_members": "exit code 1: a member could not be read"}
    deliver_day(world, date(2025, 4, 6))
    world.jobs_api.wait_idle(timeout=30)
    world.jobs_api.runner.failures = {}
    deliver_day(world, date(2025, 4, 9))
    world.jobs_api.wait_idle(timeout=30)
    # runs/get answers for the first day listed, then fails for the rest of the listing.
    world.jobs_api.inject(Fault(endpoint="runs/get", status=None))
    world.jobs_api.inject(Fault(endpoint="runs/get", status=500), times=100)

    assert main(["batches", *target]) == 1

    found = capsys.readouterr()
    assert "1 batch run(s) failed: ecommerce 2025-04-06 (run " in found.err
    assert "listed without their run's state, try again" in found.err
    world.jobs_api.clear_faults()


def test_a_seal_whose_run_never_started_is_listed_without_a_run_and_is_not_an_all_clear(
    world: World, target: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # It was listed `sealed` with run `-` and exit 0: a day that nothing loads looked like one whose run
    # state was merely not asked.
    day = date(2025, 4, 10)
    sealed_without_a_batch_job(world, day)

    assert main(["batches", *target, "--json"]) == 75

    found = capsys.readouterr()
    row = json.loads(found.out)
    assert (row["state"], row["revision"], row["run_id"]) == ("no run", 1, None)
    assert "1 sealed batch(es) without a run: ecommerce 2025-04-10 (revision 1); the sweep asks run-now" in found.err
    # The sweep starts its run, after which the day is listed with it.
    [done] = sweep_pipeline_batches(world.gate())
    assert done.status == SEALED
    world.jobs_api.wait_idle(timeout=30)
    assert main(["batches", *target, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == done.run_id


def test_a_batch_run_databricks_skipped_is_listed_as_such_and_resealed_once_as_the_next_revision(
    world: World, target: list[str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # It read "failed", which only a repair finishes, and --reseal said revision 1 already held every member.
    server = world.jobs_api
    batch_job = server.jobs[BATCH_JOB_ID]
    # No run of the batch job may start (max_concurrent_runs reached, no queue): Databricks skips the day's run.
    server.jobs[BATCH_JOB_ID] = replace(batch_job, settings={**batch_job.settings, "max_concurrent_runs": 0})
    day = date(2025, 4, 7)
    with caplog.at_level(logging.WARNING, logger="filegate"):
        deliver_day(world, day)
    server.jobs[BATCH_JOB_ID] = batch_job
    [skipped] = [run["run_id"] for run in batch_runs(world)]
    # The delivery that sealed the day says so at once, with the command, for an alert to match.
    [warned] = [r.getMessage() for r in caplog.records if f"skipped run {skipped} of" in r.getMessage()]
    assert f"Databricks skipped run {skipped} of revision 1 (MAXIMUM_CONCURRENT_RUNS_REACHED)" in warned
    assert f"the next sweep, or `filegate batches --reseal {day} --pipeline ecommerce`, seals the same" in warned

    assert main(["batches", *target]) == 1
    listed = capsys.readouterr()
    command = f"filegate batches --reseal {day} --pipeline ecommerce"
    why = f"run {skipped} was skipped by Databricks and never ran: `{command}` seals the same members"
    assert f"\n    {why} as the next revision and runs it\n" in listed.out
    assert f"1 batch run(s) skipped: ecommerce {day} (run {skipped})" in listed.err

    gate = world.gate()
    resealed = reseal(gate, gate.pipelines["ecommerce"], day)
    again = reseal(gate, gate.pipelines["ecommerce"], day)
    world.jobs_api.wait_idle(timeout=30)

    assert (resealed.status, resealed.revision) == (SEALED, 2)
    assert resealed.reasons[-1] == (
        f"revision 1's run {skipped} was skipped by Databricks and never ran: resealed as revision 2 with the "
        "same members"
    )
    first, second = (read_seal(world, path) for path in seals(world, day))
    assert (second["members"], second["batch_id"]) == (first["members"], first["batch_id"])
    assert (again.status, again.revision, again.run_id) == (DUPLICATE, 2, resealed.run_id)
    assert sorted(run["run_id"] for run in batch_runs(world)) == sorted([skipped, resealed.run_id])
    assert main(["batches", *target]) == 0


def test_the_delivery_or_reseal_whose_run_databricks_skips_says_run_pending_not_sealed(
    world: World, target: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Both said `sealed` with the run's id (exit 0 from handle, backfill and --reseal), though it never ran; only
    # a separate log line said the run was skipped.
    server = world.jobs_api
    batch_job = server.jobs[BATCH_JOB_ID]
    server.jobs[BATCH_JOB_ID] = replace(batch_job, settings={**batch_job.settings, "max_concurrent_runs": 0})
    day = date(2025, 4, 9)
    gate = world.gate()

    events = [world.upload(name, data) for name, data in batch_pieces(day).items()]
    last = [deliver(gate, event) for event in events][-1]
    again = deliver(gate, events[-1])  # the sealing event redelivered: it read `duplicate`, exit 0
    resealed = main(["batches", "--reseal", day.isoformat(), *target])

    first, second = sorted(run["run_id"] for run in batch_runs(world))
    assert (last.status, last.revision, last.run_id) == (RUN_PENDING, 1, first)
    assert (again.status, again.revision, again.run_id) == (RUN_PENDING, 1, first)
    assert last.reasons[-1] == (
        f"Databricks skipped run {first} (MAXIMUM_CONCURRENT_RUNS_REACHED) and never ran it: the next sweep, or "
        f"`filegate batches --reseal {day} --pipeline ecommerce`, seals the same members as the next revision"
    )
    # Skipped again: the next sweep reseals it, so try again later.
    assert resealed == 75
    printed = json.loads(capsys.readouterr().out)
    assert (printed["status"], printed["revision"], printed["run_id"]) == (RUN_PENDING, 2, second)


def test_the_sweep_reseals_a_day_whose_run_databricks_skipped_and_says_so_while_it_is_skipped_again(
    world: World,
) -> None:
    # Only an operator's --reseal loaded such a day: every sweep left it as done.
    server = world.jobs_api
    batch_job = server.jobs[BATCH_JOB_ID]
    server.jobs[BATCH_JOB_ID] = replace(batch_job, settings={**batch_job.settings, "max_concurrent_runs": 0})
    day = date(2025, 4, 8)
    deliver_day(world, day)
    [skipped] = [run["run_id"] for run in batch_runs(world)]

    [busy] = sweep_pipeline_batches(world.gate())  # its replacement is skipped as well
    server.jobs[BATCH_JOB_ID] = batch_job
    [resealed] = sweep_pipeline_batches(world.gate())
    world.jobs_api.wait_idle(timeout=30)

    never = "was skipped by Databricks and never ran"
    assert (busy.status, busy.revision) == (RUN_PENDING, 2)
    assert busy.reasons[0] == f"revision 1's run {skipped} {never}: resealed as revision 2 with the same members"
    assert busy.reasons[1].startswith(f"Databricks skipped run {busy.run_id} (MAXIMUM_CONCURRENT_RUNS_REACHED)")
    assert (resealed.status, resealed.revision) == (SEALED, 3)
    assert resealed.reasons == (
        f"revision 2's run {busy.run_id} {never}: resealed as revision 3 with the same members",
    )
    first, *_, third = (read_seal(world, path) for path in seals(world, day))
    assert (third["members"], third["batch_id"]) == (first["members"], first["batch_id"])
    runs = {run["run_id"]: run for run in batch_runs(world)}
    assert sorted(runs) == sorted([skipped, busy.run_id, resealed.run_id])
    assert runs[resealed.run_id]["state"]["result_state"] == "SUCCESS"
    assert list(sweep_pipeline_batches(world.gate())) == []  # done: the newest revision's run started


def test_the_listing_says_when_the_jobs_api_could_not_give_run_states(
    world: World, target: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    deliver_day(world, date(2025, 4, 5))

    assert main(["batches", *target, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] in ("running", "succeeded")
    # The Jobs API is gone: the archive's part is listed, the run's state is not, and the exit code says why.
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("DATABRICKS_HOST", url)

    assert main(["batches", *target, "--json"]) == 75
    found = capsys.readouterr()
    assert json.loads(found.out)["state"] == "sealed"
    assert "listed without their run's state, try again" in found.err
    assert f"cannot reach the Jobs API at {url} (connection refused)" in found.err


def test_a_refused_without_names_every_blocked_member_and_a_duplicate_records_no_decision(world: World) -> None:
    # Review: with customers and orders both rejected, `--without customers` was refused with the hint
    # `--without orders`, which followed was refused with `--without customers`. And a reseal answering
    # `duplicate` recorded nothing, yet its outcome called the member missing, no longer blocking.
    gate = world.gate(pipelines=with_policy(late_member="hold"))
    pipeline = gate.pipelines["ecommerce"]
    day = date(2025, 5, 7)
    blocked_day(world, gate, day, orders=b"not,the,orders,header\n1,2,3,4\n")

    refused = reseal(gate, pipeline, day, partial=True, without=("customers",))

    assert refused.status == BLOCKED
    assert refused.reasons[-1].endswith("--partial --without customers --without orders seals the day without it")

    other = date(2025, 5, 8)
    pieces = batch_pieces(other)
    customers = member_name("customers", other)
    del pieces[customers]  # the day's good customers file never comes
    for name, data in pieces.items():
        deliver(gate, world.upload(name, data))
    assert reseal(gate, pipeline, other, partial=True).status == SEALED
    deliver(gate, world.upload(customers, b"nope\n1\n"))

    duplicate = reseal(gate, pipeline, other, partial=True, without=("customers",))

    assert duplicate.status == DUPLICATE
    assert "(the decision to leave out customers is not recorded)" in duplicate.reasons[0]
    assert (duplicate.missing, len(duplicate.blocked_by)) == ((), 1)
