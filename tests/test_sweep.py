"""`filegate sweep`: files whose events never came are handled through the same path, exactly once."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from filegate import archive as archive_module
from filegate import exits
from filegate.archive import run_pending_mark
from filegate.batches import BATCHES_FOLDER
from filegate.errors import StorageError
from filegate.ingest import (
    ARCHIVED,
    DUPLICATE,
    IDENTICAL,
    REDRIVEN,
    REJECTED,
    RUN_PENDING,
    Gate,
    Outcome,
    handle_payload,
)
from filegate.storage import ObjectInfo, Store
from filegate.sweep import DUE, FAILED, SweepUnfinished, scheduled_sweep, sweep_all
from filegate.sweep_command import main
from local_world.inputs import csv_bytes, tracking_row
from local_world.jobs_api import Fault
from tests.conftest import frozen_in_archive_tier
from tests.faults.world import CrashingStore, SimulatedCrash, World, assert_converged, run_parameters

NAME = "order_tracking_2024_03_05.csv"
DATA = csv_bytes([tracking_row(i) for i in range(10)])
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What one pass found: the outcome of every due file, and how many did not finish for now."""

    outcomes: tuple[Outcome, ...]
    failed: int


def run_sweep(gate: Gate, older_than: timedelta, *, dry_run: bool = False) -> Sweep:
    """One sweep pass, as `filegate sweep` runs it, its outcomes collected."""
    outcomes = tuple(sweep_all(gate, older_than, dry_run=dry_run))
    return Sweep(outcomes, sum(1 for outcome in outcomes if outcome.status in (FAILED, RUN_PENDING)))


def later(gate: Gate, delta: timedelta) -> Gate:
    """The same gate, its clock `delta` ahead: files uploaded now look that old."""
    return dataclasses.replace(gate, clock=lambda: datetime.now(UTC) + delta)


def test_a_file_that_stays_empty_is_rejected_with_its_reason_by_its_event_or_the_sweep(world: World) -> None:
    # On Azure its event leaves a zero-byte Put Blob for the data a streamed upload commits onto it; the sweep
    # rejects it once it has stayed empty for --older-than.
    [delivered] = handle_payload(world.gate(), world.upload(NAME, b""))

    sweep = run_sweep(later(world.gate(), 2 * HOUR), HOUR)

    rejected = [outcome for outcome in (delivered, *sweep.outcomes) if outcome.status == REJECTED]
    assert [outcome.reasons for outcome in rejected] == [("the file is empty (0 bytes)",)]
    assert world.objects(world.settings.landing) == []
    assert world.runs() == []


def test_a_file_whose_event_was_lost_is_archived_with_one_run(world: World) -> None:
    world.upload(NAME, DATA)  # its event never arrives

    sweep = run_sweep(later(world.gate(), 2 * HOUR), HOUR)

    assert [outcome.status for outcome in sweep.outcomes] == [ARCHIVED]
    assert sweep.failed == 0
    assert_converged(world, {NAME: DATA})


def test_files_younger_than_the_threshold_are_left_to_their_events(world: World) -> None:
    world.upload(NAME, DATA)

    sweep = run_sweep(world.gate(), HOUR)

    assert sweep.outcomes == ()
    assert len(world.objects(world.settings.landing)) == 1


def test_a_second_sweep_and_the_late_event_find_the_same_run(world: World) -> None:
    event = world.upload(NAME, DATA)
    gate = later(world.gate(), 2 * HOUR)
    [swept] = run_sweep(gate, HOUR).outcomes

    assert run_sweep(gate, HOUR).outcomes == ()
    [late] = handle_payload(world.gate(), event)

    # Same identity, same idempotency token: the event's delivery lands on the sweep's run.
    assert late.status == DUPLICATE
    assert late.run_id == swept.run_id
    assert late.idempotency_token == swept.idempotency_token
    assert_converged(world, {NAME: DATA})


def test_sweep_and_event_at_the_same_moment_converge(world: World) -> None:
    names = [f"order_tracking_2024_04_{day:02d}.csv" for day in range(1, 21)]
    files = {name: csv_bytes([tracking_row(day)]) for day, name in enumerate(names)}
    events = [world.upload(name, data) for name, data in files.items()]
    start = threading.Barrier(2)

    def deliver_events() -> None:
        start.wait()
        for event in events:
            handle_payload(world.gate(), event)

    thread = threading.Thread(target=deliver_events)
    thread.start()
    start.wait()
    sweep = run_sweep(later(world.gate(), 2 * HOUR), HOUR)
    thread.join()

    assert sweep.failed == 0
    assert_converged(world, files)


def test_a_file_left_by_a_crash_after_the_copy_is_finished_by_the_sweep(world: World) -> None:
    event = world.upload(NAME, DATA)
    with pytest.raises(SimulatedCrash):
        handle_payload(world.gate(CrashingStore(world.store, after="copy")), event)

    [outcome] = run_sweep(later(world.gate(), 2 * HOUR), HOUR).outcomes

    # The crash came before run-now: this sweep started the missing run, so it is no duplicate.
    assert outcome.status == REDRIVEN
    assert_converged(world, {NAME: DATA})


def test_an_invalid_file_is_rejected_by_the_sweep_as_by_its_event(world: World) -> None:
    world.upload(NAME, b"tracking_num;order_id\n1;2\n")

    [outcome] = run_sweep(later(world.gate(), 2 * HOUR), HOUR).outcomes

    assert outcome.status == REJECTED
    assert "split by ';'" in outcome.reasons[0]
    assert world.runs() == []


def test_dry_run_lists_and_touches_nothing(world: World) -> None:
    world.upload(NAME, DATA)
    world.upload("order_tracking_2024_03_06.csv", DATA)

    sweep = run_sweep(later(world.gate(), 2 * HOUR), HOUR, dry_run=True)

    assert sorted(outcome.source for outcome in sweep.outcomes) == [
        f"{world.settings.landing.container}/incoming/{name}" for name in (NAME, "order_tracking_2024_03_06.csv")
    ]
    assert {outcome.status for outcome in sweep.outcomes} == {DUE}
    assert len(world.objects(world.settings.landing)) == 2
    assert world.runs() == []


def test_the_command_prints_one_outcome_per_file(
    world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.upload(NAME, DATA)
    world.upload("suppliers_2024_03_05.csv", DATA)
    settings = world.settings
    if world.kind == "azure":
        azurite = request.getfixturevalue("azurite")
        monkeypatch.setenv("FILEGATE_AZURE_STORAGE", azurite.connection_string)
        monkeypatch.setenv("FILEGATE_AZURE_ARCHIVE_STORAGE", azurite.archive_connection_string)
        target = "azure"
    else:
        monkeypatch.delenv("FILEGATE_AZURE_STORAGE", raising=False)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", request.getfixturevalue("gcs_emulator").url)
        target = "gcp"
    monkeypatch.setenv("FILEGATE_LANDING", str(settings.landing))
    monkeypatch.setenv("FILEGATE_ARCHIVE", str(settings.archive))
    monkeypatch.setenv("FILEGATE_REJECTED", str(settings.rejected))
    monkeypatch.setenv("DATABRICKS_HOST", world.jobs_api.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", "local-test-token")

    code = main(["--older-than", "0", "--target", target])

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert sorted(line["status"] for line in lines) == [ARCHIVED, REJECTED]
    assert world.objects(settings.landing) == []
    assert len(world.runs()) == 1


def test_with_the_jobs_api_down_the_sweep_says_the_file_is_archived_and_the_next_sweep_starts_its_run(
    world: World,
) -> None:
    world.upload(NAME, DATA)

    down = run_sweep(later(world.gate_with_jobs_down(), 2 * HOUR), HOUR)

    [outcome] = down.outcomes
    assert outcome.status == RUN_PENDING
    assert outcome.archived_path is not None
    assert outcome.archived_path.startswith(world.settings.archive.container)
    assert "cannot reach" in outcome.reasons[0] or "run did not start" in outcome.reasons[0]
    assert world.objects(world.settings.landing) == []
    assert world.runs() == []

    # The Jobs API is back: the landing location is empty, yet the next sweep finds the archived file.
    [redriven] = run_sweep(later(world.gate(), 2 * HOUR), HOUR).outcomes

    assert redriven.status == REDRIVEN
    assert redriven.archived_path == outcome.archived_path
    assert_converged(world, {NAME: DATA})
    assert marks(world) == []  # the mark the failed run-now left goes with it
    assert run_sweep(later(world.gate(), 2 * HOUR), HOUR).outcomes == ()


def test_a_storage_fault_while_the_jobs_api_is_down_leaves_every_file_accounted_for(world: World) -> None:
    names = [f"order_tracking_2024_05_{day:02d}.csv" for day in range(1, 4)]
    files = {name: csv_bytes([tracking_row(day)]) for day, name in enumerate(names)}
    for name, data in files.items():
        world.upload(name, data)
    assert world.proxy is not None
    world.proxy.fail(lambda method, path, headers: method == "DELETE", status=503, times=20)

    down = run_sweep(later(world.gate_with_jobs_down(), 2 * HOUR), HOUR)

    # The copies are made, the deletes fail: each file is reported in landing, and its copy as waiting for a run.
    assert {outcome.status for outcome in down.outcomes} == {FAILED, RUN_PENDING}
    for name in names:
        assert any(outcome.source.endswith(name) and outcome.status == FAILED for outcome in down.outcomes)
        assert any((outcome.archived_path or "").endswith(name) for outcome in down.outcomes)
    assert world.runs() == []
    world.proxy.heal()
    up = run_sweep(later(world.gate(), 2 * HOUR), HOUR)

    assert up.failed == 0
    assert_converged(world, files)


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_the_command_exits_1_for_a_file_it_cannot_read_and_names_what_makes_it_readable(
    world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure.storage.blob import StandardBlobTier

    from tests.test_readiness import _env

    # An Archive-tier blob (a lifecycle rule, or an upload with that tier): no retry reads it, so exit 75
    # ("run again") would be wrong, and 0 ("all done") hid it; a person must set its tier first.
    world.upload(NAME, DATA)
    frozen = world.settings.landing.path("order_tracking_2024_03_06.csv")
    blob = frozen_in_archive_tier(request.getfixturevalue("azurite"), world.settings.landing.container, frozen, DATA)
    for name, value in _env(world, request).items():
        monkeypatch.setenv(name, value)

    code = main(["--older-than", "0", "--target", "azure"])

    out, err = capsys.readouterr()
    lines = {line["source"].rsplit("/", 1)[-1]: line for line in map(json.loads, out.splitlines())}
    assert code == 1
    assert lines[NAME]["status"] == ARCHIVED
    assert lines["order_tracking_2024_03_06.csv"]["status"] == "ignored"
    assert "Archive access tier" in lines["order_tracking_2024_03_06.csv"]["reasons"][0]
    assert "1 file(s) stay in landing because their bytes cannot be read" in err
    assert "run the sweep again" not in err  # nothing else is left for a retry
    assert [info.path for info in world.objects(world.settings.landing)] == [frozen]

    blob.set_standard_blob_tier(StandardBlobTier.HOT)  # Azurite rehydrates at once; Azure takes hours

    assert main(["--older-than", "0", "--target", "azure"]) == 0
    assert world.objects(world.settings.landing) == []
    assert len(world.runs()) == 2


def run_command_on(gate: Gate, world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`main` (the command) run on `gate`, with the world's settings in its environment."""
    from filegate import stores
    from tests.test_readiness import _env

    for name, value in _env(world, request).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(stores, "open_gate", lambda *args, **kwargs: gate)


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_a_sweep_stopped_by_a_failure_says_what_it_did_and_names_a_file_it_cannot_read(
    world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frozen = world.settings.landing.path("order_tracking_2024_03_06.csv")
    frozen_in_archive_tier(request.getfixturevalue("azurite"), world.settings.landing.container, frozen, DATA)
    run_command_on(world.gate(), world, request, monkeypatch)  # the gate behind the fault proxy
    archive = world.settings.archive.container
    assert world.proxy is not None
    # The landing pass is over when listing the archive (the runless copies) fails.
    world.proxy.fail(lambda method, path, headers: method == "GET" and archive in path and "comp=list" in path)

    code = main(["--older-than", "0", "--target", "azure"])

    out, err = capsys.readouterr()
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["ignored"]
    assert code == 1
    assert "stopped after the files listed above; run it again" in err
    assert "nothing was moved" not in err
    assert "1 file(s) stay in landing because their bytes cannot be read" in err


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_a_sweep_stopped_by_a_failure_after_a_run_now_refused_exits_2_and_says_what_is_left(
    world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Run-now denied (a grant to fix), then the archive's listing fails: exit 75 had a scheduler retry for ever
    # what only a grant mends, and stderr named neither the file left archived nor what finishes it.
    world.upload(NAME, DATA)
    run_command_on(world.gate(), world, request, monkeypatch)  # the gate behind the fault proxy
    world.jobs_api.inject(Fault("run-now", status=403, error_code="PERMISSION_DENIED"))
    archive = world.settings.archive.container
    assert world.proxy is not None
    # The landing pass over (its file's own folder listed), the listings of the passes after it fail.
    own_folder = "prefix=order_tracking"
    world.proxy.fail(
        lambda method, path, headers: (
            method == "GET" and archive in path and "comp=list" in path and own_folder not in path
        )
    )

    code = main(["--older-than", "0", "--target", "azure"])

    out, err = capsys.readouterr()
    [pending] = [json.loads(line) for line in out.splitlines()]
    assert (pending["status"], pending["to_fix"]) == (RUN_PENDING, True)
    assert code == 2
    assert "1 file(s) are archived but their run did not start" in err


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_the_command_exits_1_for_an_archived_file_whose_contract_was_removed_as_reconcile_does(
    world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from filegate.contracts import Contracts

    # Archived while run-now failed, then its contract removed: no sweep starts its run, and exit 0 ("all done")
    # hid it from a scheduler; `filegate reconcile --redrive` exits 1 for the same file.
    world.upload(NAME, DATA)
    [pending] = run_sweep(later(world.gate_with_jobs_down(), 2 * HOUR), HOUR).outcomes
    assert pending.status == RUN_PENDING
    gate = world.gate()
    without = Contracts({name: contract for name, contract in gate.contracts.items() if name != "order_tracking"})
    run_command_on(dataclasses.replace(gate, contracts=without), world, request, monkeypatch)

    code = main(["--older-than", "0", "--target", "azure"])

    out, err = capsys.readouterr()
    [ignored] = [json.loads(line) for line in out.splitlines()]
    assert ignored["status"] == "ignored"
    assert "restore its contract" in ignored["reasons"][0]
    assert code == 1
    assert "1 archived file(s) no re-drive starts" in err
    assert world.runs() == []


@pytest.mark.parametrize(
    ("change", "code", "named"),
    [
        pytest.param({"DATABRICKS_HOST": "", "DATABRICKS_TOKEN": ""}, 2, "DATABRICKS_HOST", id="no-credentials"),
        pytest.param({"DATABRICKS_HOST": "http://127.0.0.1:9"}, 75, "cannot reach the Jobs API", id="jobs-api-down"),
    ],
)
def test_the_command_checks_before_it_moves_anything(
    world: World,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    code: int,
    named: str,
) -> None:
    from tests.test_readiness import _env

    world.upload(NAME, DATA)
    for name, value in {**_env(world, request), **change}.items():
        monkeypatch.setenv(name, value)

    result = main(["--older-than", "0", "--target", "azure" if world.kind == "azure" else "gcp"])

    err = capsys.readouterr().err
    assert result == code
    assert named in err
    assert "nothing was moved" in err
    assert len(world.objects(world.settings.landing)) == 1
    assert world.objects(world.settings.archive) == []


def with_threshold(gate: Gate, minutes: int) -> Gate:
    """The gate of a deployment whose FILEGATE_SWEEP_OLDER_THAN_MINUTES is `minutes`."""
    return dataclasses.replace(gate, settings=dataclasses.replace(gate.settings, sweep_older_than_minutes=minutes))


def test_the_scheduled_sweep_takes_its_threshold_from_the_settings(world: World) -> None:
    world.upload(NAME, DATA)

    assert scheduled_sweep(with_threshold(later(world.gate(), 30 * MINUTE), 60), HOUR) == []
    [outcome] = scheduled_sweep(with_threshold(later(world.gate(), 30 * MINUTE), 20), HOUR)

    assert outcome.status == ARCHIVED
    assert_converged(world, {NAME: DATA})


def test_a_scheduled_sweep_starts_nothing_past_its_budget_says_so_and_the_next_pass_goes_on(world: World) -> None:
    files = {f"order_tracking_2024_04_{day:02d}.csv": csv_bytes([tracking_row(day)]) for day in (1, 2, 3)}
    for name, data in files.items():
        world.upload(name, data)
    gate = later(world.gate(), 2 * HOUR)
    # The clock is read at the start, then before each listed object: the landing location's half of the
    # budget is spent at the third, and the whole budget when the next phase asks.
    readings = iter([0.0, 0.0, 29.0])

    with pytest.raises(SweepUnfinished, match="stopped at its budget of 0:01:00 before it had seen everything"):
        scheduled_sweep(gate, MINUTE, clock=lambda: next(readings, 61.0))

    assert len(world.objects(world.settings.landing)) == 1  # the third was never touched
    assert [outcome.status for outcome in scheduled_sweep(gate, MINUTE)] == [ARCHIVED]
    assert_converged(world, files)


def test_a_scheduled_sweep_that_leaves_work_fails_after_finishing_the_rest(world: World) -> None:
    world.upload(NAME, DATA)

    with pytest.raises(SweepUnfinished, match="1 file\\(s\\) are archived but their run did not start"):
        scheduled_sweep(later(world.gate_with_jobs_down(), 2 * HOUR), HOUR)

    assert [outcome.status for outcome in scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR)] == [REDRIVEN]
    assert_converged(world, {NAME: DATA})


class WrappedStore:
    """The world's store, some of whose calls a subclass replaces."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class ListingRecorder(WrappedStore):
    """The world's store, remembering which locations were listed."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.listed: list[tuple[str, str]] = []

    def list(self, container: str, prefix: str) -> Iterator[ObjectInfo]:
        self.listed.append((container, prefix))
        return self.store.list(container, prefix)


def test_a_spent_budget_lists_neither_the_archive_nor_any_pipeline_s_batches(world: World) -> None:
    recorder = ListingRecorder(world.store)
    readings = iter([0.0])  # the start; every later reading is past the budget

    with pytest.raises(SweepUnfinished, match="before it had seen everything"):
        scheduled_sweep(world.gate(recorder), MINUTE, clock=lambda: next(readings, 61.0))

    landing = world.settings.landing
    assert recorder.listed == [(landing.container, landing.prefix)]


def test_a_pass_lists_every_batch_folder_before_the_whole_archive(world: World) -> None:
    # The archive's listing is the longest: a pass its budget cuts short there has done the batches.
    recorder = ListingRecorder(world.store)

    run_sweep(later(world.gate(recorder), 2 * HOUR), HOUR)

    landing, archive = world.settings.landing, world.settings.archive
    assert recorder.listed == [
        (landing.container, landing.prefix),
        (archive.container, archive.path(f"{BATCHES_FOLDER}/ecommerce/")),
        (archive.container, archive.prefix),
    ]


def marks(world: World) -> list[ObjectInfo]:
    """The marks failed run-nows left in the archive for the scheduled sweep."""
    archive = world.settings.archive
    return list(world.store.list(archive.container, archive.path(run_pending_mark(""))))


def test_a_scheduled_pass_re_drives_by_the_marks_failed_run_nows_left_without_listing_the_archive(
    world: World,
) -> None:
    world.upload(NAME, DATA)
    with pytest.raises(SweepUnfinished, match="archived but their run did not start"):
        scheduled_sweep(later(world.gate_with_jobs_down(), 2 * HOUR), HOUR)
    [mark] = marks(world)
    [archived] = [info for info in world.objects(world.settings.archive) if info.path != mark.path]
    note = json.loads(world.read(mark))
    assert note["archived"] == f"{archived.container}/{archived.path}"
    assert datetime.fromisoformat(note["marked_at"]).tzinfo is not None
    recorder = ListingRecorder(world.store)

    [outcome] = scheduled_sweep(later(world.gate(recorder), 2 * HOUR), HOUR)

    assert outcome.status == REDRIVEN
    assert outcome.archived_path == f"{archived.container}/{archived.path}"
    landing, archive = world.settings.landing, world.settings.archive
    assert recorder.listed == [
        (landing.container, landing.prefix),
        (archive.container, archive.path(f"{BATCHES_FOLDER}/ecommerce/")),
        (archive.container, archive.path(run_pending_mark(""))),
    ]
    assert marks(world) == []
    assert_converged(world, {NAME: DATA})
    assert scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR) == []


def test_a_delivery_that_dies_between_the_landing_delete_and_run_now_is_finished_by_the_scheduled_pass(
    world: World,
) -> None:
    event = world.upload(NAME, DATA)
    with pytest.raises(SimulatedCrash):
        handle_payload(world.gate(CrashingStore(world.store, after="delete")), event)
    assert world.objects(world.settings.landing) == []
    assert len(marks(world)) == 1
    # Its event never comes back (Eventarc's retry window passed, or Event Grid dead-lettered it).

    assert scheduled_sweep(later(world.gate(), 30 * MINUTE), HOUR) == []  # the mark is younger than the threshold
    [outcome] = scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR)

    assert outcome.status == REDRIVEN
    assert_converged(world, {NAME: DATA})


class UnrecordingStore(WrappedStore):
    """The world's store, whose metadata updates (the run id on an archived copy) fail."""

    def update_metadata(self, container: str, path: str, version: str, metadata: Any) -> None:
        raise StorageError(f"update metadata of {container}/{path}: 503 injected")


def test_a_run_started_but_not_recorded_keeps_its_mark_until_a_pass_records_it(world: World) -> None:
    event = world.upload(NAME, DATA)
    [outcome] = handle_payload(world.gate(UnrecordingStore(world.store)), event)
    assert outcome.status == ARCHIVED
    assert len(marks(world)) == 1

    [recorded] = scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR)

    # The same token: run-now answers with the run the delivery started, now recorded on the copy.
    assert (recorded.status, recorded.run_id) == (REDRIVEN, outcome.run_id)
    assert marks(world) == []
    assert_converged(world, {NAME: DATA})


def test_a_mark_left_beside_a_recorded_run_goes_at_the_next_pass_without_a_run_now(world: World) -> None:
    world.upload(NAME, DATA)
    [outcome] = run_sweep(later(world.gate(), 2 * HOUR), HOUR).outcomes
    assert outcome.status == ARCHIVED
    assert outcome.archived_path is not None
    archive = world.settings.archive
    # As when the delivery that recorded the run could not remove the mark (on GCP, say, without the grant).
    relative = archive.relative(outcome.archived_path.partition("/")[2])
    world.store.put(archive.container, archive.path(run_pending_mark(relative)), b"{}", "application/json", {})
    assert len(marks(world)) == 1
    # A store that refuses the removal (a hold, say) leaves the mark with a warning, and the pass succeeds.
    assert scheduled_sweep(later(world.gate(UndeletingStore(world.store)), 2 * HOUR), HOUR) == []
    assert len(marks(world)) == 1

    assert scheduled_sweep(later(world.gate_with_jobs_down(), 2 * HOUR), HOUR) == []

    assert marks(world) == []
    assert_converged(world, {NAME: DATA})


class UndeletingStore(WrappedStore):
    """The world's store, whose deletes fail."""

    def delete(self, container: str, path: str, version: str) -> bool:
        raise StorageError(f"delete {container}/{path}: 403 injected")


def test_an_archived_file_without_a_run_or_a_mark_is_left_to_filegate_sweep(world: World) -> None:
    world.upload(NAME, DATA)
    run_sweep(later(world.gate_with_jobs_down(), 2 * HOUR), HOUR)
    [mark] = marks(world)
    # As a release before the marks, or a delivery that died between the archive and run-now, left it.
    assert world.store.delete(mark.container, mark.path, mark.version)

    assert scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR) == []
    assert world.runs() == []
    [outcome] = run_sweep(later(world.gate(), 2 * HOUR), HOUR).outcomes

    assert outcome.status == REDRIVEN
    assert_converged(world, {NAME: DATA})


def test_a_landing_backlog_takes_half_the_budget_and_leaves_the_rest_to_the_batches_and_the_marks(
    world: World,
) -> None:
    for day in (1, 2):
        world.upload(f"order_tracking_2024_07_{day:02d}.csv", csv_bytes([tracking_row(day)]))
    recorder = ListingRecorder(world.store)
    readings = iter([0.0, 0.0])  # the start, the first landing file; then always 31 s: past half the minute

    with pytest.raises(SweepUnfinished, match="stopped in the landing location at 50% of its budget of 0:01:00"):
        scheduled_sweep(later(world.gate(recorder), 2 * HOUR), MINUTE, clock=lambda: next(readings, 31.0))

    assert len(world.objects(world.settings.landing)) == 1
    landing, archive = world.settings.landing, world.settings.archive
    # Between the first and the last two: the archive's folder of the file handled (its earlier copies).
    assert recorder.listed[0] == (landing.container, landing.prefix)
    assert recorder.listed[-2:] == [
        (archive.container, archive.path(f"{BATCHES_FOLDER}/ecommerce/")),
        (archive.container, archive.path(run_pending_mark(""))),
    ]


def hashed_mark(world: World, monkeypatch: pytest.MonkeyPatch) -> ObjectInfo:
    """NAME archived with the Jobs API down, and its mark, named by a hash (its note names the file)."""
    # Every mark past 10 characters is hashed here; in use, one whose encoded path outgrows the stores' limit.
    monkeypatch.setattr(archive_module, "_MARK_NAME_MAX", 10)
    world.upload(NAME, DATA)
    with pytest.raises(SweepUnfinished):
        scheduled_sweep(later(world.gate_with_jobs_down(), 2 * HOUR), HOUR)
    [mark] = marks(world)
    return mark


def test_a_mark_too_long_to_name_by_its_file_is_hashed_and_found_by_its_note(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    mark = hashed_mark(world, monkeypatch)
    assert mark.path.rsplit("/", 1)[-1].startswith(archive_module.HASHED_MARK)

    [outcome] = scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR)

    assert outcome.status == REDRIVEN
    assert marks(world) == []
    assert_converged(world, {NAME: DATA})


@pytest.mark.parametrize("note", [b'{"archived": "archive/order_tr', b"{}"], ids=["cut-short", "no-file-named"])
def test_a_damaged_mark_fails_each_pass_naming_it_and_saying_what_a_person_does(
    world: World, monkeypatch: pytest.MonkeyPatch, note: bytes
) -> None:
    # A hashed mark names its file only in its note. Damaged, every pass failed with "run the sweep again once
    # the cause is fixed", which no pass fixes and which named neither the mark nor what to do (or, for a note
    # without its file, the pass stopped at the mark with a KeyError).
    mark = hashed_mark(world, monkeypatch)
    assert world.store.delete(mark.container, mark.path, mark.version)
    world.store.put(mark.container, mark.path, note, "application/json", {})
    where = f"{mark.container}/{mark.path}"

    for _ in range(2):
        with pytest.raises(SweepUnfinished) as unfinished:
            scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR)
        assert f"1 mark(s) damaged: {where}" in str(unfinished.value)
        assert "delete each, then run `filegate sweep`" in str(unfinished.value)
        assert "run the sweep again" not in str(unfinished.value)
        assert exits.exit_code(unfinished.value) == exits.FAILED

    # As the message says: the mark deleted, `filegate sweep` finds the file by listing the whole archive.
    [damaged] = marks(world)
    assert world.store.delete(damaged.container, damaged.path, damaged.version)
    [outcome] = run_sweep(later(world.gate(), 2 * HOUR), HOUR).outcomes
    assert outcome.status == REDRIVEN
    assert_converged(world, {NAME: DATA})
    assert scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR) == []


def test_an_identical_re_upload_starts_the_run_a_dead_delivery_left_its_copy_without(world: World) -> None:
    event = world.upload(NAME, DATA)
    with pytest.raises(SimulatedCrash):  # the copy made, then the worker died: no mark yet, the upload in landing
        handle_payload(world.gate(CrashingStore(world.store, after="copy")), event)
    assert marks(world) == []
    time.sleep(1.1)  # a new version of the upload, in another second (Azure's Last-Modified)

    [again] = handle_payload(world.gate(), world.upload(NAME, DATA))  # the same bytes: the first one's event is lost

    assert again.status == IDENTICAL
    assert again.run_id is not None
    assert world.objects(world.settings.landing) == []
    assert marks(world) == []
    assert scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR) == []
    assert_converged(world, {NAME: DATA})


def test_a_run_databricks_skipped_is_replaced_by_the_scheduled_pass_once_the_job_takes_runs(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # Only `filegate reconcile --redrive` replaced it: without an operator the file was never loaded.
    server = world.jobs_api
    ingest = server.jobs[1]
    # Its queue full (or the workspace at its run limit): Databricks skips every run the job is asked for.
    server.jobs[1] = dataclasses.replace(ingest, settings={**ingest.settings, "max_concurrent_runs": 0})
    with caplog.at_level(logging.WARNING, logger="filegate"):
        [archived] = handle_payload(world.gate(), world.upload(NAME, DATA))
    assert archived.status == RUN_PENDING
    why = "and never ran it: the next scheduled sweep (or `filegate reconcile --redrive`) starts a run in its place"
    assert archived.reasons == (f"Databricks skipped run {archived.run_id} (MAXIMUM_CONCURRENT_RUNS_REACHED) {why}",)
    assert [r.levelno for r in caplog.records if r.name == "filegate.outcome"] == [logging.WARNING]
    assert len(marks(world)) == 1  # the copy keeps its mark, by which the pass finds it
    assert scheduled_sweep(later(world.gate(), 30 * MINUTE), HOUR) == []  # younger than the threshold
    [due] = run_sweep(later(world.gate(), 2 * HOUR), HOUR, dry_run=True).outcomes
    assert (due.status, due.reasons) == (DUE, (f"archived, its run {archived.run_id} skipped by Databricks",))

    # Still busy at the next pass: its replacement is skipped too, the pass fails for an alert to see, and the
    # mark stays for the pass after.
    with pytest.raises(SweepUnfinished, match="1 file\\(s\\) are archived but their run did not start"):
        scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR)
    [busy] = [run["run_id"] for run in world.runs() if run["run_id"] != archived.run_id]
    assert len(marks(world)) == 1
    server.jobs[1] = ingest
    [replaced] = scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR)
    world.jobs_api.wait_idle(timeout=30)

    assert replaced.status == REDRIVEN
    never = "was skipped by Databricks and never ran"
    assert replaced.reasons == (f"run {busy} {never}; run {replaced.run_id} replaces it",)
    assert marks(world) == []
    runs = {run["run_id"]: run for run in world.runs()}
    assert sorted(runs) == sorted([archived.run_id, busy, replaced.run_id])
    assert runs[replaced.run_id]["state"]["result_state"] == "SUCCESS"
    # The three runs load the one copy; a pass after it, and `filegate sweep` over the whole archive, start nothing.
    assert len({json.dumps(run_parameters(run), sort_keys=True) for run in runs.values()}) == 1
    assert scheduled_sweep(later(world.gate(), 2 * HOUR), HOUR) == []
    assert run_sweep(later(world.gate(), 2 * HOUR), HOUR).outcomes == ()
    assert len(world.runs()) == 3
