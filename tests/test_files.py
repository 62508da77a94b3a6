"""The operator's file tools on both stores: rejected, archived, reconciled, backfilled, dead letters."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from filegate.archive import place_upload, report_path, write_report
from filegate.batches import BLOCKED, LATE_MEMBER, SEALED, seal_holds
from filegate.errors import (
    DestinationExists,
    FilegateError,
    LocationMissing,
    RunNotStarted,
    StorageError,
    TransientError,
    UsageError,
)
from filegate.exits import FAILED as FAILED_CODE
from filegate.exits import OK, TRY_AGAIN, exit_code
from filegate.files import (
    NO_RUN,
    ArchivedFile,
    _print_outcomes,
    archived_files,
    backfill_files,
    backfill_selection,
    dead_letters,
    needs_a_look,
    redrive_dead_letter,
    redrive_files,
    rejected_files,
    reprocess_rejected,
    run_needs_repair,
    unfinished,
)
from filegate.ingest import (
    ARCHIVED,
    IDENTICAL,
    IGNORED,
    REDRIVEN,
    REJECTED,
    RUN_PENDING,
    Gate,
    Outcome,
    handle_payload,
    handle_upload,
)
from filegate.settings import Location
from filegate.storage import Body, ObjectInfo, Store
from filegate.sweep import FAILED, sweep_pipeline_batches, upload_from_object
from local_world.emulators import free_port
from local_world.inputs import blob_created, csv_bytes, gcs_finalized, tracking_row
from local_world.jobs_api import Fault
from local_world.jobs_api.recording import RecordingRunner
from tests.faults.world import CrashingStore, SimulatedCrash, World, assert_converged
from tests.test_batches import (
    SAMPLES,
    batch_pieces,
    deliver,
    later_clock,
    member_bytes,
    member_name,
    trigger_bytes,
    trigger_name,
    with_policy,
)


def redrive(gate: Gate, found: ArchivedFile) -> Outcome:
    """`filegate reconcile --redrive` of one file: its outcome."""
    [outcome] = redrive_files(gate, [found], [])
    return outcome


NAME = "order_tracking_2024_03_05.csv"
DATA = csv_bytes([tracking_row(i) for i in range(6)])
BAD = b"tracking_num;order_id\n1;2\n"


def test_a_report_giving_its_one_reason_as_a_string_lists_that_reason(world: World) -> None:
    # A report rewritten by hand with `"reasons": "..."` listed no reasons (a string is not a list), as
    # `filegate batches` did until the listings read reasons one way.
    [rejected] = handle_payload(world.gate(), world.upload(NAME, BAD))
    container, path = f"{rejected.rejected_path}.report.json".split("/", 1)
    report = world.store.stat(container, path)
    assert report is not None
    world.store.delete(container, path, report.version)
    world.store.put(container, path, json.dumps({"reasons": "sent with ';' by mistake"}).encode(), "text/json", {})

    [listed] = list(rejected_files(world.gate()))

    assert listed.reasons == ("sent with ';' by mistake",)


def test_a_rejected_file_is_listed_with_its_reasons_and_re_processed_once_fixed(world: World) -> None:
    event = world.upload(NAME, BAD)
    [first] = handle_payload(world.gate(), event)
    assert first.status == REJECTED

    [listed] = list(rejected_files(world.gate()))
    assert listed.path == first.rejected_path
    assert listed.dataset == "order_tracking"
    assert any("split by ';'" in reason for reason in listed.reasons)

    # Still bad: re-processing rejects it again, and the first report is kept beside the new one.
    again = reprocess_rejected(world.gate(), listed.path)
    assert again.status == REJECTED
    reports = [o.path for o in world.objects(world.settings.rejected) if o.path.endswith(".report.json")]
    assert len(reports) == 2

    # Fixed in place (as an operator would, by uploading the corrected bytes over it): it goes through.
    rejected = world.settings.rejected
    path = listed.path.partition("/")[2]
    info = world.store.stat(rejected.container, path)
    assert info is not None
    world.store.delete(rejected.container, path, info.version)
    world.store.put(rejected.container, path, DATA, "text/csv", dict(info.metadata))
    fixed = reprocess_rejected(world.gate(), listed.path)

    assert fixed.status == ARCHIVED
    assert [o.path for o in world.objects(world.settings.landing)] == []
    assert len(world.runs()) == 1
    assert list(rejected_files(world.gate())) == []
    # Run again, it said "no such rejected file" (exit 2, a typo), though the path was right and the file through.
    with pytest.raises(FilegateError, match=r"was reprocessed already .*`filegate archived` lists it") as again_run:
        reprocess_rejected(world.gate(), listed.path)
    assert exit_code(again_run.value) == FAILED_CODE
    assert len(world.runs()) == 1


def test_a_rejected_file_whose_corrected_upload_was_archived_since_is_listed_as_corrected(
    world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # It was listed as any rejected file, as if still to fix, though a corrected upload of it had gone through.
    from filegate.cli import main
    from tests.test_readiness import _env

    # Rejected as uploaded, in another case than the contract's spelling, and corrected in that spelling.
    [bad] = handle_payload(world.gate(), world.upload(NAME.upper().replace(".CSV", ".csv"), BAD))
    # A good file archived first, then a different, bad file of its name: that rejection is still open work.
    later = "order_tracking_2024_03_06.csv"
    [good] = handle_payload(world.gate(), world.upload(later, DATA))
    time.sleep(1.1)  # Azure's write times are whole seconds: the correction is written in a later one
    [corrected] = handle_payload(world.gate(), world.upload(NAME, DATA))
    [still_bad] = handle_payload(world.gate(), world.upload(later, BAD))
    for name, value in _env(world, request).items():
        monkeypatch.setenv(name, value)
    target = "azure" if world.kind == "azure" else "gcp"

    listed = {found.path: found.corrected_by for found in rejected_files(world.gate())}
    code = main(["rejected", "--target", target])
    printed = capsys.readouterr().out

    assert (bad.status, corrected.status, good.status, still_bad.status) == (REJECTED, ARCHIVED, ARCHIVED, REJECTED)
    assert listed == {bad.rejected_path: corrected.archived_path, still_bad.rejected_path: ""}
    assert code == OK
    assert f"corrected: archived {corrected.archived_path}" in printed
    assert "2 rejected file(s), 1 corrected since by an upload archived after it" in printed


def rejected_then_fixed_in_place(world: World) -> str:
    """A file rejected, then fixed in the rejected location (as a person does before --reprocess); its path there."""
    [first] = handle_payload(world.gate(), world.upload(NAME, BAD))
    assert first.rejected_path is not None
    fix_in_place(world, first.rejected_path, DATA)
    return first.rejected_path


def fix_in_place(world: World, rejected_path: str, data: bytes, content_type: str = "text/csv") -> None:
    """The rejected file's bytes replaced where it lies, Filegate's metadata kept."""
    container, _, path = rejected_path.partition("/")
    info = world.store.stat(container, path)
    assert info is not None
    world.store.delete(container, path, info.version)
    world.store.put(container, path, data, content_type, dict(info.metadata))


def test_a_file_rejected_before_landing_moved_goes_back_into_landing_as_it_is_now(world: World) -> None:
    # The landing prefix changed since the rejection: the copy went where it was uploaded, outside landing, was
    # ignored there by the gate, and no sweep or listing saw it again (exit 0).
    rejected = rejected_then_fixed_in_place(world)
    landing = Location(world.settings.landing.container, "moved/")
    moved = replace(world, settings=replace(world.settings, landing=landing))

    fixed = reprocess_rejected(moved.gate(), rejected)

    assert (fixed.status, fixed.source) == (ARCHIVED, f"{landing.container}/moved/{NAME}")
    assert len(world.runs()) == 1


def test_reprocess_refuses_a_report_a_folder_and_a_path_elsewhere_and_moves_nothing(world: World) -> None:
    [first] = handle_payload(world.gate(), world.upload(NAME, BAD))
    assert first.rejected_path is not None
    rejected = world.settings.rejected
    before = world.objects(rejected)

    for path, says in (
        (first.rejected_path + ".report.json", "is a report; reprocess the file it describes: " + first.rejected_path),
        (f"{rejected.container}/", "names a folder"),
        (f"{rejected.container}/order_tracking/", "names a folder"),
        (f"{world.settings.archive.container}/{NAME}", "is not in the rejected location"),
        (f"{rejected.container}/order_tracking/nothing.csv", "no such rejected file"),
    ):
        with pytest.raises(UsageError, match=re.escape(says)):
            reprocess_rejected(world.gate(), path)

    assert world.objects(rejected) == before
    [listed] = rejected_files(world.gate())
    assert listed.reasons == first.reasons


def test_a_reprocess_interrupted_after_its_copy_into_landing_goes_on_when_run_again(world: World) -> None:
    # Run again after Ctrl-C (or a crash) between the copy into landing and the rejected file's delete, it
    # failed on its own copy ("destination exists", exit 1) though `filegate` said to run it again to go on.
    rejected = rejected_then_fixed_in_place(world)
    world.upload(NAME, csv_bytes([tracking_row(9)]))  # another file of the name, not handled yet: it goes first
    with pytest.raises(DestinationExists, match=r"landing already holds another file named .*filegate sweep"):
        reprocess_rejected(world.gate(), rejected)
    [other] = world.objects(world.settings.landing)
    world.store.delete(other.container, other.path, other.version)
    with pytest.raises(SimulatedCrash):
        reprocess_rejected(world.gate(CrashingStore(world.store, after="copy")), rejected)

    fixed = reprocess_rejected(world.gate(), rejected)

    assert fixed.status == ARCHIVED
    assert world.objects(world.settings.landing) == []
    assert list(rejected_files(world.gate())) == []
    assert len(world.runs()) == 1


def test_a_file_reprocessed_without_a_report_says_so_when_reprocessed_again(world: World) -> None:
    # Its report lost (a crash between the copy and the report's write), nothing was set aside: run again, the
    # command called the right path unknown ("no such rejected file", exit 2, a typo) though the file was through.
    rejected = rejected_then_fixed_in_place(world)
    container, _, path = rejected.partition("/")
    report = world.store.stat(container, report_path(path))
    assert report is not None
    world.store.delete(container, report.path, report.version)

    fixed = reprocess_rejected(world.gate(), rejected)
    with pytest.raises(FilegateError, match=r"was reprocessed already .*`filegate archived` lists it") as again:
        reprocess_rejected(world.gate(), rejected)

    assert fixed.status == ARCHIVED
    assert exit_code(again.value) == FAILED_CODE
    assert list(rejected_files(world.gate())) == []
    assert len(world.runs()) == 1


@dataclass
class NoMd5Store:
    """A real store whose objects carry no MD5, as a GCS composite object (gcloud's uploads of 150 MiB on) has none."""

    inner: Store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def stat(self, container: str, path: str) -> ObjectInfo | None:
        info = self.inner.stat(container, path)
        return None if info is None else replace(info, content_md5=None)


def test_a_reprocess_takes_a_landing_file_for_its_own_copy_only_when_the_bytes_are_the_same(world: World) -> None:
    # Two missing MD5s compared equal on GCS: another file of the same size waiting in landing was taken for
    # this command's own copy, and the rejected file deleted; its bytes were in no copy at all.
    rejected = rejected_then_fixed_in_place(world)
    other = DATA.replace(b"Denver", b"Dallas", 1)
    assert len(other) == len(DATA)
    assert other != DATA
    world.upload(NAME, other)

    with pytest.raises(DestinationExists, match=r"landing already holds another file named"):
        reprocess_rejected(world.gate(NoMd5Store(world.store)), rejected)

    assert world.store.stat(*rejected.split("/", 1)) is not None


@dataclass
class FunctionBeside:
    """A real store whose copy into landing is handled at once by the deployed function (`function`), as its
    event may be before the command that made the copy goes on."""

    inner: Store
    function: Gate | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def copy(
        self,
        src_container: str,
        src_path: str,
        src_version: str,
        dst_container: str,
        dst_path: str,
        metadata: Mapping[str, str],
    ) -> ObjectInfo:
        info = self.inner.copy(src_container, src_path, src_version, dst_container, dst_path, metadata)
        function, self.function = self.function, None
        if function is not None and function.settings.landing.holds(dst_container, dst_path):
            handle_upload(function, upload_from_object(self.inner, info))
        return info


def test_a_file_reprocessed_as_it_is_while_the_function_takes_its_copy_from_landing_stays_rejected(
    world: World,
) -> None:
    # The function's event for the copy came before reprocess deleted the rejected file: it found that file and its
    # report, the same bytes and reasons, and deleted the copy from landing as identical; reprocess then deleted the
    # rejected file, set its report aside and found landing empty ("ignored"). The bytes were in no copy at all.
    [first] = handle_payload(world.gate(), world.upload(NAME, BAD))
    assert first.rejected_path is not None

    again = reprocess_rejected(world.gate(FunctionBeside(world.store, world.gate())), first.rejected_path)

    assert world.objects(world.settings.landing) == []
    [listed] = list(rejected_files(world.gate()))
    [kept] = [info for info in world.objects(world.settings.rejected) if listed.path.endswith(info.path)]
    assert world.read(kept) == BAD
    assert listed.reasons == first.reasons
    assert again.rejected_path == listed.path
    assert needs_a_look(world.gate(), again)


def test_a_reprocessed_file_whose_handling_fails_in_landing_says_where_it_is_and_what_takes_it(world: World) -> None:
    # It said "try again" (exit 75), and the same command again found no such rejected file (exit 2): the file
    # had moved into landing, and nothing said so.
    assert world.proxy is not None
    rejected = rejected_then_fixed_in_place(world)
    archive = world.settings.archive.container
    world.proxy.fail(lambda method, path, headers: method in ("PUT", "POST") and archive in path)

    failed = reprocess_rejected(world.gate(), rejected)

    world.proxy.heal()
    [landed] = world.objects(world.settings.landing)
    assert (failed.status, failed.source) == (FAILED, f"{landed.container}/{landed.path}")
    assert "moved into landing, where its handling failed" in failed.reasons[0]
    assert "`filegate sweep --older-than 0`" in failed.reasons[0]
    assert list(rejected_files(world.gate())) == []


def test_a_later_rejected_file_of_a_name_fixed_in_place_goes_back_under_the_name_it_was_uploaded_with(
    world: World,
) -> None:
    # The second rejected file of a name is kept under a version-qualified name; an upload over it to fix
    # it drops Filegate's metadata, so the name to go back under comes from the rejected file's own name.
    handle_payload(world.gate(), world.upload(NAME, BAD))
    [second] = handle_payload(world.gate(), world.upload(NAME, BAD + b"3;4\n"))
    assert second.status == REJECTED
    assert second.rejected_path is not None
    assert "__v" in second.rejected_path
    rejected = world.settings.rejected
    path = second.rejected_path.partition("/")[2]
    info = world.store.stat(rejected.container, path)
    assert info is not None
    world.store.delete(rejected.container, path, info.version)
    world.store.put(rejected.container, path, DATA, "text/csv", {})

    fixed = reprocess_rejected(world.gate(), second.rejected_path)

    assert fixed.status == ARCHIVED, fixed.reasons
    assert fixed.source == f"{world.settings.landing.container}/{world.settings.landing.path(NAME)}"
    assert len(world.runs()) == 1


def test_a_report_left_behind_by_hand_never_speaks_for_the_next_file_rejected_under_that_name(world: World) -> None:
    gate = world.gate()
    rejected = world.settings.rejected
    [first] = handle_payload(gate, world.upload(NAME, csv_bytes(header=["tracking_num", "status"])))
    assert first.rejected_path is not None
    # An operator takes the rejected file away to fix it, leaving its report.
    copy = world.store.stat(rejected.container, first.rejected_path.split("/", 1)[1])
    assert copy is not None
    assert world.store.delete(copy.container, copy.path, copy.version)

    event = world.upload(NAME, csv_bytes([tracking_row(1, status="BOGUS")]))
    [second] = handle_payload(gate, event)

    # The stale report stays (the function may not delete there); the file goes beside it, with its own.
    assert second.status == REJECTED
    assert second.rejected_path != first.rejected_path
    [listed] = rejected_files(gate)
    assert listed.path == second.rejected_path
    assert listed.reasons == second.reasons != first.reasons
    [again] = handle_payload(gate, event)
    assert (again.status, again.rejected_path, again.reasons) == ("duplicate", second.rejected_path, second.reasons)


def test_a_file_fixed_by_an_upload_over_its_rejected_copy_goes_back_under_the_name_it_was_uploaded_with(
    world: World,
) -> None:
    # Rejected under the contract's spelling; fixed in place (an upload keeps no metadata): its report says the name.
    gate = world.gate()
    uploaded = NAME.upper().replace(".CSV", ".csv")
    [rejected] = handle_payload(gate, world.upload(uploaded, BAD))
    assert rejected.rejected_path is not None
    container, _, path = rejected.rejected_path.partition("/")
    assert path.endswith("/" + NAME)
    info = world.store.stat(container, path)
    assert info is not None
    world.store.delete(container, path, info.version)
    world.store.put(container, path, DATA, "text/csv", {})

    fixed = reprocess_rejected(gate, rejected.rejected_path)

    assert fixed.status == ARCHIVED, fixed.reasons
    assert fixed.source == f"{world.settings.landing.container}/{world.settings.landing.path(uploaded)}"


def test_a_corrected_trigger_the_overdue_sweep_rejected_goes_back_under_its_own_name(world: World) -> None:
    # The corrected trigger was archived under a version-qualified name; the sweep moved both to rejected.
    gate, day, overdue = rejected_overdue_trigger(world)
    assert overdue.status == "overdue"
    [qualified] = [item.path for item in rejected_files(gate) if "__v" in item.path]

    outcome = reprocess_rejected(gate, qualified)

    assert outcome.source == f"{world.settings.landing.container}/{world.settings.landing.path(trigger_name(day))}"
    assert outcome.status == "waiting"


def test_a_trigger_the_overdue_sweep_rejected_under_a_qualified_name_reads_corrected_once_another_is_archived(
    world: World,
) -> None:
    # Its report names it as archived (`trigger_..__v<tag>.json`): no archived trigger ever has that name, so the
    # trigger archived after it never read as its correction.
    gate, day, overdue = rejected_overdue_trigger(world)
    [plain] = [item.path for item in rejected_files(gate) if "__v" not in item.path]
    time.sleep(1.1)  # Azure's write times are whole seconds: the correction is written in a later one

    again = reprocess_rejected(gate, plain)

    [(qualified, corrected_by)] = [(item.path, item.corrected_by) for item in rejected_files(gate)]
    assert overdue.status == "overdue"
    assert "__v" in qualified
    archived = world.settings.archive
    assert corrected_by == f"{archived.container}/{archived.path(f'_batches/ecommerce/2025/03/05/{trigger_name(day)}')}"
    assert again.status == "waiting"


def rejected_overdue_trigger(world: World) -> tuple[Gate, date, Outcome]:
    """A day whose corrected trigger was archived under a version-qualified name, both triggers then moved to
    rejected by the overdue sweep: the gate, the day and the sweep's outcome."""
    pipelines = with_policy(on_incomplete="reject", complete_within_minutes=30)
    gate = world.gate(pipelines=pipelines)
    day = date(2025, 3, 5)
    for name, data in batch_pieces(day).items():
        if not name.startswith("shipping"):
            deliver(gate, world.upload(name, data))
    deliver(gate, world.upload(trigger_name(day), trigger_bytes(day, created_at="2025-03-05T23:59:00Z")))
    [overdue] = sweep_pipeline_batches(world.gate(pipelines=pipelines, clock=later_clock(31)))
    return gate, day, overdue


def test_a_delivery_retried_across_the_upgrade_finds_the_copy_an_earlier_release_rejected_as_uploaded(
    world: World,
) -> None:
    # An earlier release kept the name as uploaded, copied the file and wrote its report, then died before the
    # source left landing; the retried delivery must finish that rejection, not make a second copy.
    gate = world.gate()
    uploaded = NAME.upper().replace(".CSV", ".csv")
    event = world.upload(uploaded, BAD)
    landing = world.settings.landing
    source = world.store.stat(landing.container, landing.path(uploaded))
    assert source is not None
    upload = upload_from_object(world.store, source)
    placed = place_upload(world.store, upload, world.settings.rejected, f"order_tracking/{uploaded}")
    report = {"source": f"{upload.container}/{upload.path}", "source_version": upload.version, "reasons": ["bad"]}
    assert write_report(world.store, placed, report)

    [outcome] = handle_payload(gate, event)

    assert outcome.status == REJECTED
    assert outcome.rejected_path == f"{placed.container}/{placed.path}"
    assert [item.path for item in rejected_files(gate)] == [outcome.rejected_path]
    assert world.objects(landing) == []


def test_an_upload_named_like_a_report_is_rejected_under_a_name_no_report_has(world: World) -> None:
    gate = world.gate()
    forged = json.dumps({"reasons": ["nothing wrong, carry on"]}).encode()
    [named] = handle_payload(gate, world.upload(f"{NAME}.report.json", forged))
    [real] = handle_payload(gate, world.upload(NAME, csv_bytes(header=["tracking_num", "status"])))

    assert (named.status, real.status) == (REJECTED, REJECTED)
    assert named.rejected_path is not None
    assert not named.rejected_path.endswith(".report.json")
    listed = {item.path: item.reasons for item in rejected_files(gate)}
    assert listed == {named.rejected_path: named.reasons, real.rejected_path: real.reasons}
    assert "nothing wrong, carry on" not in real.reasons


@dataclass
class NameLimitStore:
    """A real store that refuses names over 1024 bytes as both services do (neither emulator does)."""

    inner: Store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _check(self, path: str) -> None:
        if len(path.encode()) > 1024:
            raise StorageError(f"400 InvalidResourceName: a {len(path.encode())}-byte name")

    def copy(
        self, src_container: str, src_path: str, src_version: str, container: str, path: str, metadata: Any
    ) -> ObjectInfo:
        self._check(path)
        return self.inner.copy(src_container, src_path, src_version, container, path, metadata)

    def put(self, container: str, path: str, data: bytes, content_type: str, metadata: Any) -> ObjectInfo:
        self._check(path)
        return self.inner.put(container, path, data, content_type, metadata)


@pytest.mark.parametrize("length", [1003, 1012])
def test_an_upload_whose_name_is_too_long_beside_the_rejected_folders_is_rejected_under_a_hash(
    world: World, length: int
) -> None:
    # `incoming/<name>` fits the stores' limit; `_unmatched/<name>__v<tag>.csv.report.json` would not.
    name = "n" * (length - 4) + ".csv"
    gate = world.gate(store=NameLimitStore(world.store))
    event = world.upload(name, BAD)

    [outcome] = handle_payload(gate, event)

    assert outcome.status == REJECTED
    assert outcome.rejected_path is not None
    assert outcome.rejected_path.endswith(".csv")
    [listed] = rejected_files(gate)
    assert listed.path == outcome.rejected_path
    assert listed.reasons == outcome.reasons
    assert world.objects(world.settings.landing) == []
    assert [o.status for o in handle_payload(gate, event)] == ["duplicate"]


def test_reconcile_finds_archived_files_without_a_run_and_re_drives_them_once_the_jobs_api_is_up(
    world: World,
) -> None:
    names = [f"order_tracking_2024_06_{day:02d}.csv" for day in range(1, 4)]
    files = {name: csv_bytes([tracking_row(day)]) for day, name in enumerate(names)}
    events = [world.upload(name, data) for name, data in files.items()]
    # The first file goes through; the others are archived while the Jobs API is down.
    handle_payload(world.gate(), events[0])
    down = world.gate_with_jobs_down()
    for event in events[1:]:
        with pytest.raises(RunNotStarted, match="did not start"):
            handle_payload(down, event)

    listed = list(archived_files(world.gate()))
    assert len(listed) == 3
    assert len([f for f in listed if f.state == NO_RUN]) == 2
    todo = list(unfinished(archived_files(world.gate())))
    assert len(todo) == 2

    # Re-driving while the Jobs API is still down leaves them archived and says so.
    still_down = [redrive(down, found) for found in todo]
    assert {outcome.status for outcome in still_down} == {RUN_PENDING}
    assert len(world.runs()) == 1

    redriven = [redrive(world.gate(), found) for found in todo]

    assert {outcome.status for outcome in redriven} == {REDRIVEN}
    assert_converged(world, files)
    assert [f for f in archived_files(world.gate()) if f.state == NO_RUN] == []
    # A second re-drive finds nothing to do: every file has its one run.
    assert [found for found in unfinished(archived_files(world.gate())) if found.state == NO_RUN] == []


def test_reconcile_redrive_stops_after_a_run_now_that_may_pass_later(
    world: World, request: pytest.FixtureRequest
) -> None:
    # Each file spent the SDK's retry window (20 s) on a run-now answering 503, one after the other: hours for
    # a large archive in an outage, where backfill stops after the first.
    from tests.test_cli import run_cli
    from tests.test_readiness import _env

    down = world.gate_with_jobs_down()
    for day in (1, 2, 3):
        with pytest.raises(RunNotStarted):
            handle_payload(down, world.upload(f"order_tracking_2024_06_2{day}.csv", DATA))
    world.jobs_api.inject(Fault(status=503), times=100)

    target = ["--target", "azure" if world.kind == "azure" else "gcp"]
    stopped = run_cli(["reconcile", "--redrive", *target], _env(world, request))

    assert stopped.returncode == TRY_AGAIN, stopped.stdout + stopped.stderr
    [pending] = [json.loads(line) for line in stopped.stdout.splitlines()]
    assert pending["status"] == RUN_PENDING
    assert "stopped after a run that did not start; 2 file(s) not tried: run the same command again" in stopped.stderr
    assert len(world.jobs_api.requests("run-now")) < 30  # one file's retries, not three files'
    world.jobs_api.faults.clear()
    assert [found.state for found in unfinished(archived_files(world.gate()))] == [NO_RUN] * 3


def test_reconcile_redrive_exits_1_for_a_failed_run_so_a_scheduler_does_not_retry_it_forever(
    world: World, request: pytest.FixtureRequest
) -> None:
    from tests.test_cli import run_cli
    from tests.test_readiness import _env

    assert isinstance(world.jobs_api.runner, RecordingRunner)
    world.jobs_api.runner.failures = {"target_load": "exit code 1: MERGE failed"}
    [archived] = handle_payload(world.gate(), world.upload(NAME, DATA))
    world.jobs_api.wait_idle(timeout=30)
    target = ["--target", "azure" if world.kind == "azure" else "gcp"]

    listing = run_cli(["reconcile", *target], _env(world, request))
    result = run_cli(["reconcile", "--redrive", *target], _env(world, request))
    archived_listing = run_cli(["archived", *target], _env(world, request))

    # The listing said "`filegate reconcile --redrive` re-drives" of a run only a repair finishes.
    assert listing.returncode == 1, listing.stdout + listing.stderr
    assert listing.stdout.splitlines()[-1] == (
        "1 archived file(s) without a successful run; 1 whose run failed: repair the run in Databricks"
    )
    # Its last line said "1 archived file(s), 0 without a run", as if all had loaded.
    assert archived_listing.stdout.splitlines()[-1] == (
        "1 archived file(s), 0 without a run, 1 whose run ended without success (`filegate reconcile`)"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    [printed] = [json.loads(line) for line in result.stdout.splitlines()]
    assert printed["status"] == FAILED
    assert printed["run_id"] == archived.run_id
    # Both were null in its JSON line, beside every other outcome's: a reader grouping by day lost the failed run.
    assert (printed["dataset"], printed["business_date"]) == ("order_tracking", "2024-03-05")
    assert f"repair run {archived.run_id} in Databricks" in printed["reasons"][0]
    assert "1 file(s) need a repair" in result.stderr
    assert len(world.runs()) == 1


def test_a_redrive_that_left_a_run_pending_says_so_beside_the_run_to_repair(capsys: pytest.CaptureFixture[str]) -> None:
    # The summary said only "1 file(s) need a repair": the file whose run-now failed (the Jobs API down) was told in
    # its JSON line alone, and a person who repaired the failed run took the day for done.
    failed_run = Outcome(FAILED, source="archive/a.csv", run_id=7, reasons=("run 7 ended FAILED",))
    pending = Outcome(RUN_PENDING, source="archive/b.csv", reasons=("its run did not start: the Jobs API is down",))

    code = _print_outcomes([failed_run, pending], run_needs_repair)

    assert code == FAILED_CODE
    assert capsys.readouterr().err.splitlines() == [
        "1 file(s) need a repair; see their reasons",
        "1 file(s) not finished; see their reasons",
    ]


def test_reconcile_redrive_exits_1_for_an_archived_file_it_cannot_start(
    world: World, request: pytest.FixtureRequest
) -> None:
    # A file put into the archive by hand (restored from a backup) was "1 to start" in the listing; --redrive
    # ignored it (not placed by Filegate) and exited 0, and every listing after still counted it to start.
    from tests.test_cli import run_cli
    from tests.test_readiness import _env

    archive = world.settings.archive
    world.store.put(archive.container, archive.path(f"order_tracking/2024/03/05/{NAME}"), DATA, "text/csv", {})
    target = ["--target", "azure" if world.kind == "azure" else "gcp"]

    listed = run_cli(["reconcile", *target], _env(world, request))
    redriven = run_cli(["reconcile", "--redrive", *target], _env(world, request))

    # The listing still counted it "1 to start: `filegate reconcile --redrive`".
    assert listed.returncode == FAILED_CODE, listed.stdout + listed.stderr
    assert "to start" not in listed.stdout
    assert (
        "1 that no re-drive starts (not placed by Filegate, copied into the archive by hand: put it through landing)"
        in listed.stdout
    )
    assert redriven.returncode == FAILED_CODE, redriven.stdout + redriven.stderr
    assert json.loads(redriven.stdout)["status"] == IGNORED
    assert "1 file(s) need a repair or a look; see their reasons" in redriven.stderr
    assert world.runs() == []


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_reconcile_redrive_with_nothing_to_re_drive_says_so(
    world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # It printed nothing at all, exit 0: a person could not tell it had run, or what it had found.
    from filegate.cli import main
    from tests.test_readiness import _env

    handle_payload(world.gate(), world.upload(NAME, DATA))
    for name, value in _env(world, request).items():
        monkeypatch.setenv(name, value)

    code = main(["reconcile", "--redrive", "--target", "azure"])
    everything = capsys.readouterr()
    one = main(["reconcile", "--redrive", "--dataset", "order_tracking", "--target", "azure"])
    of_one = capsys.readouterr()

    assert (code, one) == (OK, OK)
    assert everything.out == of_one.out == ""  # stdout holds the outcomes' JSON lines only
    assert "no archived file without a successful run: nothing to re-drive" in everything.err
    assert "no archived file of order_tracking without a successful run: nothing to re-drive" in of_one.err
    assert len(world.runs()) == 1


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_a_dataset_filter_takes_whole_dataset_names_only(
    world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # Taken as a listing prefix: `order_tracking/2024` listed (and --redrive started) that year's files as if it
    # were a dataset, and an empty value (an unset variable) listed every dataset's, each with exit 0.
    from filegate.cli import main
    from tests.test_readiness import _env

    with pytest.raises(RunNotStarted):
        handle_payload(world.gate_with_jobs_down(), world.upload(NAME, DATA))
    handle_payload(world.gate(), world.upload("order_tracking_2024_03_06.csv", BAD))
    for name, value in _env(world, request).items():
        monkeypatch.setenv(name, value)
    target = ["--target", "azure"]

    codes, errors = [], []
    for argv in (
        ["archived", "--dataset", "order_tracking/2024"],
        ["reconcile", "--dataset", "order_tracking/2024"],
        ["reconcile", "--redrive", "--dataset", "order_tracking/2024/03"],
        ["rejected", "--dataset", ""],
        ["archived", "--dataset", " "],
    ):
        codes.append(main([*argv, *target]))
        printed = capsys.readouterr()
        assert printed.out == "", argv
        errors.append(printed.err)

    assert codes == [2] * 5
    known = "(it takes: customers, inventory, order_tracking, orders, products, shipping)"
    assert f"--dataset 'order_tracking/2024' is no dataset's whole name {known}; one business date: --date" in errors[0]
    assert f"--dataset 'order_tracking/2024' is no dataset's whole name {known}\n" in errors[1]
    assert "(it takes: _unmatched, customers, ecommerce, inventory," in errors[3]
    assert world.runs() == []


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_archived_and_reconcile_send_a_pipeline_name_to_its_members_and_batches(
    world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # `--dataset ecommerce` listed "0 archived file(s)", exit 0, with a member of it archived: the pipeline's name is
    # no folder of the archive. In `filegate rejected` it is one (its rejected triggers), and stays accepted.
    from filegate.cli import main
    from tests.test_readiness import _env

    deliver(world.gate(), world.upload(member_name("customers", date(2025, 2, 3)), member_bytes("customers")))
    for name, value in _env(world, request).items():
        monkeypatch.setenv(name, value)
    target = ["--target", "azure"]

    archived = main(["archived", "--dataset", "ecommerce", *target])
    archived_err = capsys.readouterr().err
    reconciled = main(["reconcile", "--redrive", "--dataset", "ecommerce", *target])
    reconciled_err = capsys.readouterr().err
    rejected = main(["rejected", "--dataset", "ecommerce", *target])

    assert (archived, reconciled, rejected) == (2, 2, OK)
    pointer = (
        "--dataset ecommerce is a pipeline: its members' files list under their datasets (customers, products, "
        "inventory, orders, shipping), its batches and their runs with `filegate batches --pipeline ecommerce`"
    )
    assert pointer in archived_err
    assert pointer in reconciled_err
    assert "0 rejected file(s)" in capsys.readouterr().out


def test_reconcile_redrive_replaces_each_run_databricks_skipped_once_and_a_redelivery_keeps_the_replacement(
    world: World, request: pytest.FixtureRequest
) -> None:
    from tests.test_cli import run_cli
    from tests.test_readiness import _env

    env, target = _env(world, request), ["--target", "azure" if world.kind == "azure" else "gcp"]
    server = world.jobs_api
    ingest = server.jobs[1]
    # No run of the job may start (max_concurrent_runs reached, no queue): Databricks skips the file's run.
    server.jobs[1] = replace(ingest, settings={**ingest.settings, "max_concurrent_runs": 0})
    event = world.upload(NAME, DATA)
    [archived] = handle_payload(world.gate(), event)
    assert archived.status == RUN_PENDING
    assert world.jobs_api.run(archived.run_id)["state"]["result_state"] == "MAXIMUM_CONCURRENT_RUNS_REACHED"
    [first_listing] = archived_files(world.gate())  # what a reconcile started now lists

    listing = run_cli(["reconcile", *target], env)
    still_busy = run_cli(["reconcile", "--redrive", *target], env)  # its replacement is skipped as well
    server.jobs[1] = ingest
    redriven = run_cli(["reconcile", "--redrive", *target], env)
    late = redrive(world.gate(), first_listing)  # the reconcile that listed before the others re-drove
    world.jobs_api.wait_idle(timeout=30)
    redelivered = handle_payload(world.gate(), event)
    again = run_cli(["reconcile", *target], env)

    # The listing counted it to start: the file's token names the skipped run, which no repair applies to.
    assert listing.returncode == 1, listing.stdout + listing.stderr
    assert listing.stdout.splitlines()[-1] == (
        "1 archived file(s) without a successful run; 1 to start: `filegate reconcile --redrive`"
    )
    [busy, printed] = [json.loads(run.stdout) for run in (still_busy, redriven)]
    # Skipped again, the replacement is pending as a run-now that failed is: the next attempt may start it.
    assert (still_busy.returncode, redriven.returncode) == (TRY_AGAIN, OK), still_busy.stderr + redriven.stderr
    assert (busy["status"], printed["status"]) == (RUN_PENDING, REDRIVEN)
    skipped, replacement = busy["run_id"], printed["run_id"]
    assert len({archived.run_id, skipped, replacement}) == 3
    never = "was skipped by Databricks and never ran"
    assert busy["reasons"] == [
        f"run {archived.run_id} {never}; run {skipped} replaces it",
        f"Databricks skipped run {skipped} (MAXIMUM_CONCURRENT_RUNS_REACHED) and never ran it: the next scheduled "
        "sweep (or `filegate reconcile --redrive`) starts a run in its place",
    ]
    assert printed["reasons"] == [f"run {skipped} {never}; run {replacement} replaces it"]
    # Each replacement loads the file's batch, as the skipped run would have.
    runs = {run["run_id"]: run for run in world.runs()}
    assert sorted(runs) == sorted([archived.run_id, skipped, replacement])
    parameters = [{p["name"]: p["value"] for p in runs[r]["job_parameters"]} for r in runs]
    assert parameters[0] == parameters[1] == parameters[2]
    # The late re-drive of the first skipped run starts nothing and records nothing over the replacement.
    assert (late.status, late.run_id) == ("duplicate", replacement)
    assert late.reasons == (f"run {archived.run_id} was replaced already: the copy names run {replacement}",)
    # The event delivered again finds the skipped run by the file's token, and the copy keeps the replacement.
    assert [(o.status, o.run_id) for o in redelivered] == [("duplicate", replacement)]
    assert [(f.run_id, f.state) for f in archived_files(world.gate())] == [(replacement, "SUCCESS")]
    assert again.returncode == OK, again.stdout + again.stderr


def test_the_commands_say_what_reprocessing_did_and_refuse_typos_and_a_silent_jobs_api(
    world: World, request: pytest.FixtureRequest
) -> None:
    from tests.test_cli import run_cli
    from tests.test_readiness import _env

    env = _env(world, request)
    target = ["--target", "azure" if world.kind == "azure" else "gcp"]
    [bad] = handle_payload(world.gate(), world.upload(NAME, BAD))
    handle_payload(world.gate(), world.upload("order_tracking_2024_03_06.csv", DATA))
    assert bad.rejected_path is not None

    still_bad = run_cli(["rejected", "--reprocess", bad.rejected_path, *target], env)
    [listed] = rejected_files(world.gate())
    report = run_cli(["rejected", "--reprocess", f"{listed.path}.report.json", *target], env)
    typo = run_cli(["reconcile", "--dataset", "ordertracking", *target], env)
    pipeline = run_cli(["rejected", "--dataset", "ecommerce", *target], env)  # its rejected triggers: none
    day = run_cli(["archived", "--dataset", "order_tracking", "--date", "06/03/2024", *target], env)
    silent = {**env, "DATABRICKS_HOST": f"http://127.0.0.1:{free_port()}"}
    down = run_cli(["archived", *target], silent)
    reconcile_down = run_cli(["reconcile", *target], silent)
    unconfigured = run_cli(["archived", *target], {**env, "DATABRICKS_HOST": "", "DATABRICKS_TOKEN": ""})
    # Fixed in place, and its run-now refused: archived, and no longer a rejected file to reprocess again.
    fix_in_place(world, listed.path, DATA)
    world.jobs_api.inject(Fault(status=403, error_code="PERMISSION_DENIED", message="no CAN_MANAGE_RUN"))
    pending = run_cli(["rejected", "--reprocess", listed.path, *target], env)

    # Rejected again: exit 0 said it went through.
    assert still_bad.returncode == 1, still_bad.stdout + still_bad.stderr
    assert json.loads(still_bad.stdout)["status"] == REJECTED
    assert "1 file(s) need a look" in still_bad.stderr
    assert report.returncode == 2, report.stdout + report.stderr
    assert "is a report; reprocess the file it describes" in report.stderr
    # A typo read as an all-clear (exit 0, nothing found), and a date in another form found nothing.
    assert typo.returncode == 2, typo.stdout + typo.stderr
    assert "--dataset ordertracking: no dataset of that name" in typo.stderr
    assert pipeline.returncode == 0, pipeline.stderr
    assert "0 rejected file(s)" in pipeline.stdout
    assert day.returncode == 2
    assert "'06/03/2024' is not a date, YYYY-MM-DD\n" in day.stderr
    # Each file waited for the SDK's retries (about 26 s) and was listed UNKNOWN, with exit 0; reconcile
    # listed every file as without a successful run (exit 1).
    assert down.returncode == 75, down.stdout + down.stderr
    assert "1 archived file(s), 0 without a run, 1 whose run's state the Jobs API did not give" in down.stdout
    assert "listed without the runs' states: cannot reach the Jobs API" in down.stderr
    assert reconcile_down.returncode == 75, reconcile_down.stdout + reconcile_down.stderr
    # Without Databricks settings the files are listed all the same; the runs' states need them (exit 2).
    assert unconfigured.returncode == 2, unconfigured.stdout + unconfigured.stderr
    assert "1 archived file(s), 0 without a run, 1 whose run's state" in unconfigured.stdout
    assert pending.returncode == 2, pending.stdout + pending.stderr  # run-now denied: a permission to grant
    assert json.loads(pending.stdout)["status"] == RUN_PENDING
    # Which dataset and day, as the sweep's and the handler's `run pending` say: an alert groups by them.
    printed = json.loads(pending.stdout)
    assert (printed["dataset"], printed["business_date"]) == ("order_tracking", "2024-03-05")
    assert "`filegate reconcile --redrive` now" in json.loads(pending.stdout)["reasons"][0]


def test_reprocessing_a_member_rejected_again_or_held_after_its_seal_needs_a_look(
    world: World, request: pytest.FixtureRequest
) -> None:
    # A member rejected again reads `blocked` (its batch waits on it), and one archived after its batch's seal is
    # held beside it, not loaded: both exited 0, as if the fixed file were through. Sealed into a new revision
    # (late_member = rerun), it is loaded by that revision's run.
    from tests.test_cli import run_cli
    from tests.test_readiness import _env

    env, target = _env(world, request), ["--target", "azure" if world.kind == "azure" else "gcp"]
    gate, rerun = world.gate(), world.gate(pipelines=with_policy(late_member="rerun"))
    bad = (SAMPLES / "bad" / "customers_2025_01_16.csv").read_bytes()
    [blocked] = handle_payload(gate, world.upload(member_name("customers", date(2025, 4, 1)), bad))
    rejected_after_seal = []
    for day in (date(2025, 4, 2), date(2025, 4, 3)):
        assert [deliver(gate, world.upload(n, d)) for n, d in batch_pieces(day).items()][-1].status == SEALED
        time.sleep(1.1)  # Azure's Last-Modified counts whole seconds: the fixed member is the newest version there
        [late] = handle_payload(gate, world.upload(member_name("customers", day), bad))
        assert (late.status, late.revision) == (REJECTED, None)
        assert late.rejected_path is not None
        # Fixed in place: its rows in another order, the size the trigger states.
        header, *rows = member_bytes("customers").splitlines(keepends=True)
        fix_in_place(world, late.rejected_path, b"".join([header, *reversed(rows)]))
        rejected_after_seal.append(late.rejected_path)
    assert blocked.status == BLOCKED
    assert blocked.rejected_path is not None

    still_bad = run_cli(["rejected", "--reprocess", blocked.rejected_path, *target], env)
    held = run_cli(["rejected", "--reprocess", rejected_after_seal[0], *target], env)
    sealed_again = reprocess_rejected(rerun, rejected_after_seal[1])

    assert still_bad.returncode == 1, still_bad.stdout + still_bad.stderr
    assert json.loads(still_bad.stdout)["status"] == BLOCKED
    assert "1 file(s) need a look" in still_bad.stderr
    assert held.returncode == 1, held.stdout + held.stderr
    assert json.loads(held.stdout)["status"] == LATE_MEMBER
    assert "held, the sealed batch is unchanged" in json.loads(held.stdout)["reasons"][0]
    assert (sealed_again.status, sealed_again.revision) == (LATE_MEMBER, 2)
    assert seal_holds(rerun, sealed_again)
    assert not needs_a_look(rerun, sealed_again)  # the command exits 0: the new revision's run loads it


def test_a_corrected_trigger_reprocessed_after_the_seal_is_loaded_only_when_sealed_into_a_new_revision(
    world: World,
) -> None:
    # A seal names its trigger apart from its members: the corrected trigger sealed into revision 2 (rerun) read
    # as held, and `filegate rejected --reprocess` exited 1 for a trigger whose run had started.
    gate, rerun = world.gate(), world.gate(pipelines=with_policy(late_member="rerun"))
    rejected_after_seal = []
    for day in (date(2025, 4, 4), date(2025, 4, 5)):
        assert [deliver(gate, world.upload(n, d)) for n, d in batch_pieces(day).items()][-1].status == SEALED
        time.sleep(1.1)  # Azure's Last-Modified counts whole seconds: the corrected trigger is the newest there
        [late] = handle_payload(gate, world.upload(trigger_name(day), trigger_bytes(day, batch_date="2025-01-01")))
        assert late.status == REJECTED
        assert late.rejected_path is not None
        # Fixed in place: the rows of customers stated, which the first trigger left out.
        stated = json.loads(trigger_bytes(day))
        stated["files"][0]["rows"] = len(member_bytes("customers").splitlines()) - 1
        fix_in_place(world, late.rejected_path, json.dumps(stated).encode(), "application/json")
        rejected_after_seal.append(late.rejected_path)

    held = reprocess_rejected(gate, rejected_after_seal[0])
    sealed_again = reprocess_rejected(rerun, rejected_after_seal[1])

    assert (held.status, held.revision) == (LATE_MEMBER, 1)
    assert not seal_holds(gate, held)
    assert needs_a_look(gate, held)
    assert (sealed_again.status, sealed_again.revision) == (LATE_MEMBER, 2)
    assert seal_holds(rerun, sealed_again)
    assert not needs_a_look(rerun, sealed_again)


def test_a_jobs_api_that_answers_errors_to_runs_get_stops_the_listing_with_its_exit_not_unknown_runs(
    world: World, request: pytest.FixtureRequest
) -> None:
    from tests.test_cli import run_cli
    from tests.test_readiness import _env

    env, target = _env(world, request), ["--target", "azure" if world.kind == "azure" else "gcp"]
    for day in (1, 2):
        handle_payload(world.gate(), world.upload(f"order_tracking_2024_06_1{day}.csv", DATA))
    world.jobs_api.wait_idle(timeout=30)
    refused = Fault("runs/get", status=401, error_code="UNAUTHENTICATED", message="Invalid access token")
    world.jobs_api.inject(refused, times=10)
    archived = run_cli(["archived", *target], env)
    world.jobs_api.inject(refused, times=10)
    reconcile = run_cli(["reconcile", *target], env)
    # The run page's address for the workspace's: every runs/get answers ENDPOINT_NOT_FOUND, not "no such run".
    run_page = run_cli(["archived", *target], {**env, "DATABRICKS_HOST": f"{world.jobs_api.url}/runs/1001"})
    world.jobs_api.faults.clear()
    world.jobs_api.inject(Fault("runs/get", status=503), times=100)

    # Every run read UNKNOWN after its own retry window (20 s a file from the command), exit 0.
    with pytest.raises(TransientError, match="Jobs API"):
        list(archived_files(world.gate()))

    # The listing said every run's state was unknown and exited 0; reconcile counted them all "to start".
    assert archived.returncode == 2, archived.stdout + archived.stderr
    assert "2 archived file(s), 0 without a run, 2 whose run's state the Jobs API did not give" in archived.stdout
    assert "refused the credentials (401)" in archived.stderr
    assert reconcile.returncode == 2, reconcile.stdout + reconcile.stderr
    assert "to start" not in reconcile.stdout
    assert "refused the credentials (401)" in reconcile.stderr
    assert run_page.returncode == 2, run_page.stdout + run_page.stderr
    assert "does not serve the Jobs API" in run_page.stderr


def test_a_runs_get_throttled_until_the_retries_ran_out_names_its_last_answer(world: World) -> None:
    # `filegate archived` and `reconcile` said "Timed out after 0:00:20" alone: a 429 (fewer callers) read as an outage.
    handle_payload(world.gate(), world.upload("order_tracking_2024_06_20.csv", DATA))
    world.jobs_api.wait_idle(timeout=30)
    world.jobs_api.inject(Fault("runs/get", status=429, message="too many requests"), times=100)

    with pytest.raises(TransientError) as failed:
        list(archived_files(world.gate(retry_timeout_seconds=2)))

    assert "its last answer: RESOURCE_EXHAUSTED: too many requests" in str(failed.value)


def test_a_listing_of_a_location_that_does_not_exist_names_the_setting_to_fix(world: World) -> None:
    # `filegate archived`, `reconcile` and `rejected` said "list archve/: the container does not exist", and no setting.
    typo = replace(world, settings=replace(world.settings, archive=Location("archve"), rejected=Location("rejectd")))

    with pytest.raises(LocationMissing) as archive:
        list(archived_files(typo.gate()))
    with pytest.raises(LocationMissing) as rejected:
        list(rejected_files(typo.gate()))

    assert "FILEGATE_ARCHIVE names" in str(archive.value)
    assert "'archve', which does not exist" in str(archive.value)
    assert "FILEGATE_REJECTED names" in str(rejected.value)


def test_archived_listing_filters_by_dataset_and_date(world: World) -> None:
    for name in ("order_tracking_2024_07_01.csv", "order_tracking_2024_07_02.csv"):
        handle_payload(world.gate(), world.upload(name, DATA))

    one_day = list(archived_files(world.gate(), "order_tracking", "2024-07-02"))

    assert [f.path.rsplit("/", 1)[-1] for f in one_day] == ["order_tracking_2024_07_02.csv"]
    assert one_day[0].business_date == "2024-07-02"
    assert one_day[0].run_id is not None


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_archived_with_a_date_alone_lists_that_date_of_every_dataset(
    world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # It did so, but its help and the README said --date went with --dataset: a person read it as refused or ignored.
    from filegate.cli import main
    from tests.test_readiness import _env

    for day in (date(2025, 1, 15), date(2025, 1, 16)):
        handle_payload(world.gate(), world.upload(f"order_tracking_{day:%Y_%m_%d}.csv", DATA))
        deliver(world.gate(), world.upload(member_name("customers", day), member_bytes("customers")))
    for name, value in _env(world, request).items():
        monkeypatch.setenv(name, value)

    code = main(["archived", "--date", "2025-01-16", "--target", "azure"])
    printed = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["archived", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())

    assert code == OK
    assert "order_tracking/2025/01/16/order_tracking_2025_01_16.csv" in printed
    assert "customers/2025/01/16/customers_2025_01_16.csv" in printed
    assert "2025/01/15" not in printed
    assert "2 archived file(s), 0 without a run" in printed
    assert "(with --dataset)" not in help_text
    assert "alone: every dataset's files of that date" in help_text


def test_backfill_puts_a_folder_through_the_gate_with_the_jobs_api_down_then_up(world: World, tmp_path: Path) -> None:
    files = {f"order_tracking_2024_08_{day:02d}.csv": csv_bytes([tracking_row(day)]) for day in range(1, 4)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    paths = sorted(tmp_path.glob("*.csv"))

    # It stops at the first file whose run did not start: each after it would spend the SDK's retry window.
    [(_, pending, code)] = backfill_files(world.gate_with_jobs_down(), paths)
    again = list(backfill_files(world.gate(), paths))

    assert (pending.status, code) == (RUN_PENDING, TRY_AGAIN)
    assert (pending.dataset, pending.business_date) == ("order_tracking", "2024-08-01")
    assert [(outcome.status, code) for _, outcome, code in again] == [(IDENTICAL, OK), (ARCHIVED, OK), (ARCHIVED, OK)]
    assert again[0][1].reasons[0].endswith(f"its run {again[0][1].run_id} started now")
    assert list(unfinished(archived_files(world.gate()))) == []
    assert_converged(world, files)


def test_backfill_names_the_batch_whose_seal_it_could_not_run(world: World, tmp_path: Path) -> None:
    # The sweep's `run pending` for a seal names its pipeline and day; backfill's said neither, so its log line
    # and --json could not be grouped with the sweep's for the same batch.
    day = date(2025, 3, 14)
    paths = []
    for name, data in batch_pieces(day).items():  # the trigger last: it seals the batch
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)

    *_, (_, pending, code) = backfill_files(replace(world.gate(), batch_jobs=None), paths)

    assert (pending.status, code) == (RUN_PENDING, 2)
    assert (pending.pipeline, pending.business_date) == ("ecommerce", day.isoformat())
    assert pending.archived_path is not None
    assert pending.archived_path.endswith("_sealed.r1.json")


def test_backfill_goes_on_after_a_run_refused_for_a_permission(world: World, tmp_path: Path) -> None:
    # Said at once, with no retry window spent: the files after it are sent (a pipeline's members may run
    # another job), and the refused one waits archived, marked, for the fix.
    paths = []
    for day in (11, 12):
        paths.append(tmp_path / f"order_tracking_2024_08_{day}.csv")
        paths[-1].write_bytes(csv_bytes([tracking_row(day)]))
    world.jobs_api.inject(Fault("run-now", status=403, error_code="PERMISSION_DENIED"))

    results = [(outcome.status, code) for _, outcome, code in backfill_files(world.gate(), paths)]

    assert results == [(RUN_PENDING, 2), (ARCHIVED, OK)]


def test_backfill_goes_on_after_a_run_databricks_skipped_and_says_to_try_again(world: World, tmp_path: Path) -> None:
    # The job at its max_concurrent_runs without a queue: each file is archived and its run never runs. Exit 0
    # said the folder was loaded (the sweep and `reconcile --redrive` exit 75 for the same outcome).
    ingest = world.jobs_api.jobs[1]
    world.jobs_api.jobs[1] = replace(ingest, settings={**ingest.settings, "max_concurrent_runs": 0})
    paths = []
    for day in (13, 14):
        paths.append(tmp_path / f"order_tracking_2024_08_{day}.csv")
        paths[-1].write_bytes(csv_bytes([tracking_row(day)]))

    results = [(outcome.status, code) for _, outcome, code in backfill_files(world.gate(), paths)]

    # No retry window was spent on a skip: the files after it are sent.
    assert results == [(RUN_PENDING, TRY_AGAIN), (RUN_PENDING, TRY_AGAIN)]


def test_a_file_sent_again_after_databricks_skipped_its_run_is_not_called_loaded(world: World, tmp_path: Path) -> None:
    # Backfilled again, the file was `identical`, "already archived with run N; not run again" (exit 0), though
    # run N never ran: the folder read as loaded, and nothing said the run still had to be replaced.
    ingest = world.jobs_api.jobs[1]
    world.jobs_api.jobs[1] = replace(ingest, settings={**ingest.settings, "max_concurrent_runs": 0})
    path = tmp_path / "order_tracking_2024_08_15.csv"
    path.write_bytes(csv_bytes([tracking_row(15)]))
    [(_, skipped, _)] = backfill_files(world.gate(), [path])

    [(_, again, code)] = backfill_files(world.gate(), [path])

    assert (skipped.status, again.status, code) == (RUN_PENDING, RUN_PENDING, TRY_AGAIN)
    assert again.run_id == skipped.run_id
    assert f"its run {skipped.run_id} was skipped by Databricks and never ran" in again.reasons[0]
    assert "starts a run in its place" in again.reasons[0]
    assert world.objects(world.settings.landing) == []  # the same bytes again: the upload goes, as for any identical


def test_backfill_again_goes_on_with_its_own_upload_left_in_landing(world: World, tmp_path: Path) -> None:
    # Interrupted between its upload and the gate, backfill found its own file in landing and failed it
    # (exit 1), asking for a sweep; another file of that name in landing still waits for the sweep.
    ours, theirs = tmp_path / "order_tracking_2024_08_05.csv", tmp_path / "order_tracking_2024_08_06.csv"
    ours.write_bytes(csv_bytes([tracking_row(5)]))
    theirs.write_bytes(csv_bytes([tracking_row(6)]))
    landing = world.settings.landing
    world.store.put(landing.container, landing.path(ours.name), ours.read_bytes(), "text/csv", {})
    world.store.put(landing.container, landing.path(theirs.name), csv_bytes([tracking_row(7)]), "text/csv", {})

    [(_, resumed, code), (_, waits, waits_code)] = backfill_files(world.gate(), [ours, theirs])

    assert (resumed.status, code) == (ARCHIVED, OK), resumed.reasons
    assert (waits.status, waits_code) == (FAILED, FAILED_CODE)
    assert waits.reasons[0].startswith(f"landing already holds another file named {landing.path(theirs.name)}")
    assert [o.path for o in world.objects(landing)] == [landing.path(theirs.name)]
    assert len(world.runs()) == 1


class CutShort:
    """The file the store reads, and a writer truncating it (to `keep` bytes) once the store starts reading."""

    def __init__(self, body: Any, file: Path, keep: int) -> None:
        self.body, self.file, self.keep, self.cut = body, file, keep, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.body, name)

    def read(self, size: int | None = -1) -> bytes:
        if not self.cut:
            os.truncate(self.file, self.keep)
            self.cut = True
        return bytes(self.body.read(size))


@dataclass
class StillWritten:
    """A real store, and a writer at `file` while backfill sends it: appending `more` just after the upload,
    or (`more` empty) cutting the file to half once the upload starts reading it."""

    inner: Store
    file: Path
    more: bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, container: str, path: str, data: Body, content_type: str, metadata: Mapping[str, str]) -> ObjectInfo:
        if not self.more:
            return self.inner.put(
                container, path, CutShort(data, self.file, self.file.stat().st_size // 2), content_type, metadata
            )
        placed = self.inner.put(container, path, data, content_type, metadata)
        with self.file.open("ab") as writer:
            writer.write(self.more)
        return placed


@pytest.mark.parametrize("writer", ["appends", "truncates"])
def test_a_file_still_being_written_is_not_backfilled_in_part(world: World, tmp_path: Path, writer: str) -> None:
    # The upload held the rows written so far; the gate would archive and load them as the day's file.
    # Cut short once the store starts reading: on GCS the upload then stops short of the size measured,
    # and failed with "the upload stopped" (exit 1); Azure reads it whole for its MD5 first and sends the
    # shorter file, which the check after the upload finds changed.
    path = tmp_path / "order_tracking_2024_08_10.csv"
    path.write_bytes(csv_bytes([tracking_row(n) for n in range(1, 40)]))
    rest = csv_bytes([tracking_row(40)]).split(b"\n", 1)[1] if writer == "appends" else b""

    [(_, partial, code)] = backfill_files(world.gate(StillWritten(world.store, path, rest)), [path])

    assert (partial.status, code) == (FAILED, TRY_AGAIN), partial.reasons
    cut_short_in_flight = writer == "truncates" and world.kind == "gcs"
    done = "nothing was written" if cut_short_in_flight else "its upload was removed from landing"
    assert partial.reasons[0].startswith(f"changed while it was sent (still being written?); {done}")
    assert world.objects(world.settings.landing) == []
    assert world.objects(world.settings.archive) == []
    assert world.runs() == []
    if writer == "truncates":
        path.write_bytes(csv_bytes([tracking_row(n) for n in range(1, 40)]))
    [(_, whole, code)] = backfill_files(world.gate(), [path])  # complete now
    assert (whole.status, code) == (ARCHIVED, OK)
    assert_converged(world, {path.name: path.read_bytes()})


def test_a_file_past_one_request_backfilled_twice_is_identical_the_second_time(world: World, tmp_path: Path) -> None:
    # Past 64 MiB the Azure SDK commits a blob from blocks, and the service then records no MD5: the
    # byte-identical check had nothing to compare, so running backfill again (as its exit 75 invites)
    # archived the same bytes a second time and started a second run. The file is streamed, not read whole.
    # GCS records every object's MD5 itself, and the world's fault proxy breaks its resumable uploads: 1 MiB
    # there (tests/gcp/test_gcs_storage.py sends 9 MiB in chunks to the emulator itself).
    size = 65 * 1024**2 if world.kind == "azure" else 1024**2
    header, row = csv_bytes([tracking_row(1)]).split(b"\n", 1)
    path = tmp_path / "order_tracking_2024_08_09.csv"
    with path.open("wb") as file:
        file.write(header + b"\n")
        for _ in range(size // len(row) + 1):
            file.write(row)
    [(_, first, _)] = backfill_files(world.gate(), [path])

    [(_, again, _)] = backfill_files(world.gate(), [path])

    assert (first.status, again.status, again.run_id) == (ARCHIVED, IDENTICAL, first.run_id)
    [archived] = world.objects(world.settings.archive)
    assert archived.size == path.stat().st_size
    assert archived.content_md5
    assert len(world.runs()) == 1


@dataclass
class BesideAnother:
    """A real store, and another backfill of the same folder at once: its upload of `file` is in landing when this
    one's is refused, and through the gate (`other`) by the time this one looks at landing."""

    inner: Store
    file: Path
    other: Gate | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, container: str, path: str, data: Body, content_type: str, metadata: Mapping[str, str]) -> ObjectInfo:
        if path.rsplit("/", 1)[-1] != self.file.name or self.other is None:
            return self.inner.put(container, path, data, content_type, metadata)
        theirs = self.inner.put(container, path, self.file.read_bytes(), content_type, metadata)
        other, self.other = self.other, None
        try:
            return self.inner.put(container, path, data, content_type, metadata)
        finally:
            handle_upload(other, upload_from_object(self.inner, theirs))


def test_two_backfills_of_one_folder_at_once_each_decide_every_file_once(world: World, tmp_path: Path) -> None:
    # Landing refused this backfill's upload for the other's, which the gate took before this one looked: the
    # file failed as "another file named ..." for `filegate sweep` to take (exit 1), and landing held nothing.
    good, bad = tmp_path / NAME, tmp_path / "order_tracking_2024_03_06.csv"
    good.write_bytes(DATA)
    bad.write_bytes(BAD)
    outcomes = []
    for path in (good, bad):
        store = BesideAnother(world.store, path, world.gate())
        [(_, outcome, code)] = backfill_files(world.gate(store), [path])
        outcomes.append((outcome.status, code))

    assert outcomes == [(IDENTICAL, OK), (IDENTICAL, OK)]
    assert world.objects(world.settings.landing) == []
    assert len(world.objects(world.settings.rejected)) == 2  # the file and its report
    assert len(world.objects(world.settings.archive)) == 1
    assert len(world.runs()) == 1


def test_a_folder_backfilled_again_decides_nothing_new_and_keeps_one_copy_and_report_of_each_file(
    world: World, tmp_path: Path
) -> None:
    # Backfilled again, a rejected file was rejected a second time under a `__v` name with a report of its own (one
    # more each pass, each listed by `filegate rejected`), and a sealed day's trigger was archived again beside
    # the first. The same bytes are decided once; a file of the same name with other bytes is a new file.
    sealed, blocked = date(2025, 1, 20), date(2025, 1, 21)
    files = {NAME: BAD, **batch_pieces(sealed), trigger_name(blocked): b"{not json"}
    files[member_name("customers", blocked)] = (SAMPLES / "bad" / "customers_2025_01_16.csv").read_bytes()
    folder = tmp_path / "in"  # tmp_path holds the world's own jobs/ folder
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    paths = sorted(folder.iterdir())
    first = {file.name: (outcome, code) for file, outcome, code in backfill_files(world.gate(), paths)}
    kept = {loc: world.objects(loc) for loc in (world.settings.archive, world.settings.rejected)}

    again = {file.name: (outcome, code) for file, outcome, code in backfill_files(world.gate(), paths)}

    statuses = {name: (outcome.status, code) for name, (outcome, code) in again.items()}
    assert statuses == dict.fromkeys(files, (IDENTICAL, OK))
    assert {loc: world.objects(loc) for loc in kept} == kept
    assert world.objects(world.settings.landing) == []
    assert len(world.runs()) == 1
    for name in (NAME, member_name("customers", blocked), trigger_name(blocked)):
        (was, _), (now, _) = first[name], again[name]
        assert now.rejected_path == was.rejected_path
        assert now.reasons[0].startswith(f"byte-identical to {was.rejected_path}, rejected already")
        assert now.reasons[1:] == was.reasons
    member = member_name("customers", blocked)
    assert (first[member][0].status, again[member][0].pipeline) == (BLOCKED, "ecommerce")
    assert again[member][0].blocked_by == first[member][0].blocked_by
    assert again[trigger_name(sealed)][0].run_id == first[trigger_name(sealed)][0].run_id

    (folder / NAME).write_bytes(BAD + b"3;4\n")
    [(_, other, _)] = backfill_files(world.gate(), [folder / NAME])

    assert other.status == REJECTED
    assert other.rejected_path not in (None, first[NAME][0].rejected_path)
    now = world.objects(world.settings.rejected)
    assert all(info in now for info in kept[world.settings.rejected])  # the first copy and report as they were
    assert len(list(rejected_files(world.gate()))) == 4


def test_a_dead_letter_whose_handling_fails_reports_its_other_events_and_stays(world: World, tmp_path: Path) -> None:
    # The letter holds a bad file's event and a good file's whose run-now fails: the bad file is rejected
    # (moved to rejected/ with its report) and said so before the failure; the letter stays for a later redrive.
    events = [world.upload("order_tracking_2024_09_01.csv", DATA), world.upload("order_tracking_2024_09_02.csv", BAD)]
    letter = tmp_path / "letter.json"
    letter.write_text(json.dumps(events))
    world.jobs_api.inject(Fault("run-now", status=403, error_code="PERMISSION_DENIED"))
    [found] = dead_letters(tmp_path)
    seen: list[str] = []

    with pytest.raises(RunNotStarted):
        seen.extend(outcome.status for outcome in redrive_dead_letter(world.gate(), found))

    assert seen == [REJECTED]
    assert dead_letters(tmp_path) == [found]


def test_dead_letters_are_listed_with_their_reason_re_driven_and_marked(world: World, tmp_path: Path) -> None:
    event = world.upload(NAME, DATA)
    letter = tmp_path / f"{event['id']}.json"
    # Edited by hand in an editor that starts UTF-8 with a byte order mark: it read as "not a readable event".
    letter.write_text("\ufeff" + json.dumps(event), encoding="utf-8")
    letter.with_suffix(".reason.txt").write_text("10 attempts; last: 503 from the function\n")

    [found] = dead_letters(tmp_path)
    assert found.reason.startswith("10 attempts")
    [outcome] = redrive_dead_letter(world.gate(), found)

    assert outcome.status == ARCHIVED
    assert dead_letters(tmp_path) == []
    assert len(list((tmp_path / "handled").iterdir())) == 2
    assert_converged(world, {NAME: DATA})


def test_a_dead_letter_that_cannot_be_moved_to_handled_is_reported_and_the_others_go_on(
    world: World, tmp_path: Path
) -> None:
    # A deadletter folder this account may not write into (the watcher's own, say): the move raised an OSError
    # that ended the command in a traceback, after the first letter's events were handled and before the others.
    names = ["order_tracking_2024_03_05.csv", "order_tracking_2024_03_06.csv"]
    for name in names:
        event = world.upload(name, DATA)
        (tmp_path / f"{event['id']}.json").write_text(json.dumps(event))
    (tmp_path / "handled").write_text("a file where the folder goes: no letter can be moved into it")

    outcomes = [outcome for letter in dead_letters(tmp_path) for outcome in redrive_dead_letter(world.gate(), letter)]

    assert [outcome.status for outcome in outcomes] == [ARCHIVED, FAILED, ARCHIVED, FAILED]
    assert "its events were handled, but it cannot be moved into" in outcomes[1].reasons[0]
    assert len(dead_letters(tmp_path)) == 2  # left where they are: a redrive again finds their events done
    assert_converged(world, dict.fromkeys(names, DATA))


def test_a_dead_letter_of_the_other_cloud_stays_for_a_redrive_on_that_cloud(world: World, tmp_path: Path) -> None:
    # Both watchers keep their letters in .filegate/watch/deadletter by default: a redrive on one cloud "handled"
    # the other's letters as ignored events and moved them to handled/, and nothing re-drove them again.
    landing = world.settings.landing
    other = (
        gcs_finalized(landing.container, landing.path(NAME), len(DATA), 1)
        if world.kind == "azure"
        else blob_created(landing.container, landing.path(NAME), len(DATA), '"0x8DC0"')
    )
    (tmp_path / "1.json").write_text(json.dumps(other))

    [outcome] = redrive_dead_letter(world.gate(), *dead_letters(tmp_path))

    other_target = "gcp" if world.kind == "azure" else "azure"
    assert outcome.status == IGNORED
    assert f"`filegate deadletters --redrive --target {other_target}`" in outcome.reasons[0]
    assert [letter.path.name for letter in dead_letters(tmp_path)] == ["1.json"]
    assert not (tmp_path / "handled").exists()


def test_a_damaged_reason_file_does_not_stop_the_listing_nor_the_redrive(world: World, tmp_path: Path) -> None:
    # A reason file cut mid-character (or not text) raised UnicodeDecodeError with a traceback, for the listing
    # and for --redrive alike, and no letter of the folder was re-driven.
    event = world.upload(NAME, DATA)
    (tmp_path / "1.json").write_text(json.dumps(event))
    (tmp_path / "1.reason.txt").write_bytes("10 attempts; last: délai dépassé".encode()[:-1])

    [letter] = dead_letters(tmp_path)
    [outcome] = redrive_dead_letter(world.gate(), letter)

    assert letter.reason == "10 attempts; last: délai dépass\ufffd"
    assert outcome.status == ARCHIVED
    assert dead_letters(tmp_path) == []


def test_deadletters_away_from_any_watcher_state_is_refused_not_an_all_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # Run from another folder than the watcher's, the default .filegate/watch/deadletter read "0 dead letter(s)",
    # exit 0: as if the watcher had given up on nothing.
    from filegate.files import deadletters_main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:
        deadletters_main([])
    said = capsys.readouterr().err
    (tmp_path / ".filegate" / "watch").mkdir(parents=True)  # a watcher's state folder: it gave up on nothing yet
    none_yet = deadletters_main([])

    assert refused.value.code == 2
    assert "no watcher keeps its state in .filegate/watch here" in said
    assert none_yet == OK
    assert "0 dead letter(s)" in capsys.readouterr().out


def test_deadletters_redrive_with_no_letter_needs_no_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With nothing to re-drive it still checked storage and the Jobs API first: in an outage it said "try again"
    # (exit 75) about no letter at all, and an hourly redrive alerted on an empty folder.
    from filegate.files import deadletters_main

    folder = tmp_path / "deadletter"
    folder.mkdir()
    monkeypatch.setenv("FILEGATE_AZURE_STORAGE", "")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("DATABRICKS_HOST", f"http://127.0.0.1:{free_port()}")

    assert deadletters_main(["--dir", str(folder), "--redrive"]) == OK


def test_deadletters_redrive_reports_each_handled_letter_and_names_an_unreadable_one(
    world: World, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from tests.test_cli import run_cli
    from tests.test_readiness import _env

    names = [f"order_tracking_2024_10_{day:02d}.csv" for day in (1, 3)]
    events = [world.upload(name, csv_bytes([tracking_row(day)])) for day, name in enumerate(names)]
    folder = tmp_path / "deadletter"
    folder.mkdir()
    (folder / "1.json").write_text(json.dumps(events[0]))
    (folder / "2.json").write_text(json.dumps(events[1])[:40])  # truncated as a disk-full write leaves it
    (folder / "3.json").write_text(json.dumps(events[1]))
    # The first run-now answers, the second fails: letter 3 stops the command after 1 was handled and moved.
    world.jobs_api.inject(Fault(status=None), Fault(status=400, error_code="INVALID_PARAMETER_VALUE"))
    target = ["--target", "azure" if world.kind == "azure" else "gcp"]
    command = ["deadletters", "--redrive", "--dir", str(folder), *target]
    env = _env(world, request)

    stopped = run_cli(command, env)
    again = run_cli(command, env)

    assert stopped.returncode == 75, stopped.stdout + stopped.stderr
    first, unreadable = [json.loads(line) for line in stopped.stdout.splitlines()]
    assert first["status"] == ARCHIVED
    assert unreadable["status"] == FAILED
    assert unreadable["source"] == str(folder / "2.json")
    assert "is not a readable event" in unreadable["reasons"][0]
    assert "Traceback" not in stopped.stderr + again.stderr
    assert again.returncode == 1, again.stdout + again.stderr
    assert [json.loads(line)["status"] for line in again.stdout.splitlines()] == [FAILED, REDRIVEN]
    assert sorted(letter.path.name for letter in dead_letters(folder)) == ["2.json"]
    assert len(world.runs()) == 2


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_deadletters_redrive_exits_1_for_a_file_left_in_landing_unreadable(
    world: World, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from tests.conftest import frozen_in_archive_tier
    from tests.test_cli import run_cli
    from tests.test_readiness import _env

    # The letter is handled (its event was answered), but its file waits in landing for a person to set its tier.
    name = "order_tracking_2024_10_05.csv"
    event = world.upload(name, csv_bytes([tracking_row(5)]))
    frozen_in_archive_tier(
        request.getfixturevalue("azurite"), world.settings.landing.container, world.settings.landing.path(name)
    )
    folder = tmp_path / "deadletter"
    folder.mkdir()
    (folder / "1.json").write_text(json.dumps(event))

    result = run_cli(["deadletters", "--redrive", "--dir", str(folder), "--target", "azure"], _env(world, request))

    assert result.returncode == 1, result.stdout + result.stderr
    [outcome] = [json.loads(line) for line in result.stdout.splitlines()]
    assert outcome["status"] == "ignored"
    assert outcome["reasons"][0].startswith("left in landing: ")
    assert "1 file(s) need a person's look" in result.stderr
    assert dead_letters(folder) == []
    assert [info.path for info in world.objects(world.settings.landing)] == [world.settings.landing.path(name)]


def test_backfill_takes_every_file_a_contract_or_trigger_names_by_default(world: World, tmp_path: Path) -> None:
    # A pipeline's folder holds its members and its triggers: a default of *.csv left every batch waiting.
    # A misnamed member still goes through the gate, which rejects it with a report that says what is wrong.
    names = [
        "customers_2025_01_15.csv",
        "trigger_2025_01_15.json",
        "order_tracking_2024_09_02.csv",
        "orders_2025_1_17.csv",
        "README.md",
    ]
    folder = tmp_path / "in"  # tmp_path holds the world's own jobs/ folder
    folder.mkdir()
    for name in names:
        (folder / name).write_text("x")
    # A folder's files are taken by a pattern alone ('**/*.csv'); the folder is named as left out, not skipped unsaid.
    (folder / "2025").mkdir()
    (folder / "2025" / "order_tracking_2025_02_01.csv").write_text("x")
    gate = world.gate()

    assert [[p.name for p in part] for part in backfill_selection(gate, folder, None)] == [
        [
            "customers_2025_01_15.csv",
            "order_tracking_2024_09_02.csv",
            "orders_2025_1_17.csv",
            "trigger_2025_01_15.json",
        ],
        ["2025", "README.md"],
    ]
    assert [[p.name for p in part] for part in backfill_selection(gate, folder, "*.md")] == [["README.md"], []]
    # A pattern that walks up took the folder's neighbours (the world's jobs/ state among them) through the gate.
    for outside in ("../*", "2025/../../*", ".."):
        with pytest.raises(UsageError, match=r"reaches outside .*\('\.\.'\)"):
            backfill_selection(gate, folder, outside)
    assert [p.name for p in backfill_selection(gate, folder, "**/order_tracking_*.csv")[0]] == [
        "order_tracking_2025_02_01.csv",
        "order_tracking_2024_09_02.csv",
    ]


def test_the_commands_list_reconcile_and_backfill_as_an_operator_runs_them(
    world: World, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from tests.test_cli import run_cli
    from tests.test_readiness import _env

    env = _env(world, request)
    target = ["--target", "azure" if world.kind == "azure" else "gcp"]
    handle_payload(world.gate(), world.upload("order_tracking_2024_09_01.csv", BAD))
    with pytest.raises(RunNotStarted):
        handle_payload(world.gate_with_jobs_down(), world.upload(NAME, DATA))
    folder = tmp_path / "backfill"
    folder.mkdir()
    (folder / "order_tracking_2024_09_02.csv").write_bytes(csv_bytes([tracking_row(9)]))
    (folder / "notes.txt").write_text("not a dataset's file")
    # A different file of the same name sits in landing, not handled yet: running again cannot help.
    world.upload("order_tracking_2024_09_03.csv", csv_bytes([tracking_row(3)]))
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "order_tracking_2024_09_03.csv").write_bytes(csv_bytes([tracking_row(4)]))

    rejected = run_cli(["rejected", *target], env)
    before = run_cli(["reconcile", *target], env)
    redriven = run_cli(["reconcile", "--redrive", *target], env)
    backfill = run_cli(["backfill", str(folder), *target], env)
    in_landing = run_cli(["backfill", str(blocked), *target], env)
    no_folder = run_cli(["backfill", str(tmp_path / "nowhere"), *target], env)
    for part in ("a", "b"):
        (tmp_path / "parts" / part).mkdir(parents=True)
        (tmp_path / "parts" / part / "order_tracking_2024_09_05.csv").write_bytes(csv_bytes([tracking_row(5)]))
    clash = run_cli(["backfill", str(tmp_path / "parts"), "--pattern", "**/*.csv", *target], env)
    absolute = run_cli(["backfill", str(folder), "--pattern", f"{folder}/*.csv", *target], env)
    archived = run_cli(["archived", "--dataset", "order_tracking", *target], env)
    letters = run_cli(["deadletters", "--dir", str(tmp_path / "dedletter"), *target], env)
    # A watcher's state folder whose deadletter folder is not made yet: it gave up on nothing.
    none_yet = run_cli(["deadletters", "--dir", str(tmp_path / "deadletter"), *target], env)

    assert rejected.returncode == 0, rejected.stderr
    assert "split by ';'" in rejected.stdout
    assert before.returncode == 1, before.stderr
    assert "NO RUN" in before.stdout
    assert "1 to start: `filegate reconcile --redrive`" in before.stdout
    assert redriven.returncode == 0, redriven.stderr
    assert json.loads(redriven.stdout)["status"] == REDRIVEN
    assert backfill.returncode == 0, backfill.stderr
    assert "[1/1] order_tracking_2024_09_02.csv: archived run " in backfill.stdout
    # Each file's line is what became of it; the outcome log did not say it again on stderr.
    assert '"status"' not in backfill.stderr + redriven.stderr
    assert "left out 1: notes.txt (no contract or trigger pattern names them" in backfill.stderr
    assert clash.returncode == 2, clash.stdout + clash.stderr
    assert "files of one name would meet in landing" in clash.stderr
    assert clash.stdout == ""
    assert absolute.returncode == 2, absolute.stdout + absolute.stderr
    assert "is not a glob within the folder" in absolute.stderr
    assert "Traceback" not in absolute.stderr
    assert in_landing.returncode == 1, in_landing.stdout + in_landing.stderr
    assert "landing already holds another file named" in in_landing.stdout
    assert "`filegate sweep --older-than 0` puts it through the gate" in in_landing.stdout
    assert no_folder.returncode == 2
    assert "is not a folder" in no_folder.stderr
    assert archived.returncode == 0, archived.stderr
    assert "2 archived file(s), 0 without a run" in archived.stdout
    # A mistyped folder read "0 dead letter(s)", exit 0: as if the watcher had given up on nothing.
    assert letters.returncode == 2, letters.stdout + letters.stderr
    assert f"{tmp_path / 'dedletter'} is not a folder" in letters.stderr
    assert none_yet.returncode == 0, none_yet.stdout + none_yet.stderr
    assert "0 dead letter(s)" in none_yet.stdout
    assert len(world.runs()) == 2


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_an_interrupted_backfill_says_what_it_sent_and_how_to_go_on(
    world: World, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # Ctrl-C printed a traceback and no summary: nothing said which files went through or what to do.
    import filegate.files
    from filegate.cli import main
    from tests.test_readiness import _env

    for day in (1, 2, 3):
        (tmp_path / f"order_tracking_2024_10_0{day}.csv").write_bytes(csv_bytes([tracking_row(day)]))
    for name, value in _env(world, request).items():
        monkeypatch.setenv(name, value)
    sent = filegate.files.backfill_files

    def interrupted_after_one(gate: Any, files: list[Path]) -> Any:
        yield next(sent(gate, files))
        raise KeyboardInterrupt

    monkeypatch.setattr(filegate.files, "backfill_files", interrupted_after_one)

    code = main(["backfill", str(tmp_path), "--target", "azure"])

    out, err = capsys.readouterr()
    assert code == 130
    assert "[1/3] order_tracking_2024_10_01.csv: archived run " in out
    assert "backfill of 3 file(s): 1 archived" in out
    assert "interrupted; 2 file(s) not sent: run the same command again" in err
