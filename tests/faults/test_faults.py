"""Crashes, Jobs API failures and storage outages, each followed by Event Grid's redelivery: all converge."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from filegate.archive import REPORT_SUFFIX
from filegate.batches import BLOCKED, SEALED
from filegate.errors import FilegateError, Leased, TransientError
from filegate.ingest import ARCHIVED, DUPLICATE, IGNORED, REDRIVEN, REJECTED, handle_payload
from filegate.storage import COPY_PENDING, COPY_SUCCESS
from filegate.sweep import scheduled_sweep, sweep_archive, sweep_pipeline_batches
from local_world.inputs import csv_bytes, tracking_row
from local_world.jobs_api import Fault
from tests.faults.world import (
    CrashingStore,
    SimulatedCrash,
    UnfinishedCopyStore,
    World,
    assert_converged,
    open_azure_world,
    run_parameters,
)
from tests.test_batches import SAMPLES, batch_pieces, batch_runs, member_name, read_seal, seals, trigger_name

NAME = "order_tracking_2024_03_05.csv"
DATA = csv_bytes([tracking_row(i) for i in range(20)])


def redeliver(world: World, event: dict[str, Any]) -> Any:
    """Event Grid's retry: the same event, to a fresh worker with a healthy store."""
    [outcome] = handle_payload(world.gate(), event)
    return outcome


@pytest.mark.parametrize(
    ("crash_after", "left_in_landing"),
    [
        pytest.param("copy", 1, id="after-archive-copy-before-delete"),
        pytest.param("delete", 0, id="after-delete-before-run-now"),
    ],
)
def test_a_crash_mid_move_converges_on_redelivery(world: World, crash_after: str, left_in_landing: int) -> None:
    event = world.upload(NAME, DATA)
    crashing = CrashingStore(world.store, after=crash_after)

    with pytest.raises(SimulatedCrash):
        handle_payload(world.gate(crashing), event)
    assert len(world.objects(world.settings.landing)) == left_in_landing
    # The copy, and once the landing version is gone its mark for the scheduled sweep.
    assert len(world.objects(world.settings.archive)) == 2 - left_in_landing
    assert world.runs() == []

    outcome = redeliver(world, event)

    # The crash came before run-now: the redelivery started the missing run, it is no duplicate.
    assert outcome.status == REDRIVEN
    assert_converged(world, {NAME: DATA})
    [run] = world.runs()
    assert outcome.run_id == run["run_id"]
    assert run_parameters(run)["dataset"] == "order_tracking"


def test_a_crash_between_rejected_copy_and_report_still_leaves_the_report(world: World) -> None:
    data = csv_bytes(header=["tracking_num", "order_id"])
    event = world.upload(NAME, data)

    with pytest.raises(SimulatedCrash):
        handle_payload(world.gate(CrashingStore(world.store, after="copy")), event)
    outcome = redeliver(world, event)

    # The redelivery is the one that takes the file out of landing: it reports the rejection.
    assert outcome.status == REJECTED
    rejected = {o.path: o for o in world.objects(world.settings.rejected)}
    assert sorted(rejected) == [f"order_tracking/{NAME}", f"order_tracking/{NAME}.report.json"]
    assert world.read(rejected[f"order_tracking/{NAME}"]) == data
    assert b"header is missing columns" in world.read(rejected[f"order_tracking/{NAME}.report.json"])
    assert world.objects(world.settings.landing) == []
    assert world.runs() == []


def test_a_rejection_whose_file_was_uploaded_again_meanwhile_is_still_reported_rejected(world: World) -> None:
    data = csv_bytes(header=["tracking_num", "order_id"])
    event = world.upload(NAME, data)
    again = csv_bytes([tracking_row(1)])

    class ReuploadBeforeDelete:
        """The producer uploads the same name again between the rejected copy and the source's delete."""

        def __getattr__(self, name: str) -> Any:
            return getattr(world.store, name)

        def delete(self, container: str, path: str, version: str) -> bool:
            world.upload(NAME, again)
            return world.store.delete(container, path, version)

    [outcome] = handle_payload(world.gate(ReuploadBeforeDelete()), event)

    # This delivery made the only copy of the bad version: it is the one to alert on it.
    assert outcome.status == REJECTED
    [left] = world.objects(world.settings.landing)
    assert world.read(left) == again


def _report_writes(rejected: str) -> Any:
    """Matches writing a report into the rejected container (Azure: Put Blob of the name, GCS: an upload)."""

    def matches(method: str, path: str, headers: Any) -> bool:
        # Writes only: a rejection first looks whether another upload's report lies in its file's report slot.
        writes = method in ("PUT", "POST")
        return (
            writes
            and rejected in path
            and (path.split("?", 1)[0].endswith(REPORT_SUFFIX) or path.startswith("/upload/"))
        )

    return matches


BAD_MEMBER_DAY = date(2025, 1, 16)


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        pytest.param(NAME, csv_bytes(header=["tracking_num", "order_id"]), REJECTED, id="file"),
        pytest.param(
            member_name("customers", BAD_MEMBER_DAY),
            (SAMPLES / "bad" / member_name("customers", BAD_MEMBER_DAY)).read_bytes(),
            BLOCKED,
            id="batch-member",
        ),
    ],
)
def test_a_rejection_retried_after_its_report_failed_is_still_logged_as_a_warning(
    world: World, caplog: pytest.LogCaptureFixture, name: str, data: bytes, status: str
) -> None:
    event = world.upload(name, data)
    assert world.proxy is not None
    world.proxy.fail(_report_writes(world.settings.rejected.container), status=503)

    with pytest.raises(TransientError):
        handle_payload(world.gate(), event)
    assert [o.path for o in world.objects(world.settings.rejected)] != []
    assert len(world.objects(world.settings.landing)) == 1
    world.proxy.heal()
    with caplog.at_level(logging.INFO, logger="filegate.outcome"):
        outcome = redeliver(world, event)

    assert outcome.status == status
    [line] = [r for r in caplog.records if r.name == "filegate.outcome"]
    assert line.levelno == logging.WARNING
    assert json.loads(line.getMessage())["status"] == status
    assert world.objects(world.settings.landing) == []
    # Any later delivery finds the file already moved: a duplicate, not a second alert.
    assert redeliver(world, event).status == DUPLICATE


@pytest.mark.parametrize(
    ("name", "bad", "reason"),
    [
        pytest.param(NAME, csv_bytes(header=["tracking_num", "order_id"]), "missing columns", id="file"),
        pytest.param(trigger_name(date(2025, 3, 5)), b"{not json", "the trigger is not JSON", id="trigger"),
    ],
)
def test_a_rejection_whose_report_failed_and_whose_file_was_replaced_is_reported_from_its_copy(
    world: World, caplog: pytest.LogCaptureFixture, name: str, bad: bytes, reason: str
) -> None:
    event = world.upload(name, bad)
    assert world.proxy is not None
    world.proxy.fail(_report_writes(world.settings.rejected.container), status=503)
    with pytest.raises(TransientError):
        handle_payload(world.gate(), event)
    world.proxy.heal()
    world.upload(name, DATA)  # the producer sends the file again before Event Grid's retry

    with caplog.at_level(logging.INFO, logger="filegate.outcome"):
        outcome = redeliver(world, event)

    # The retry cannot read the first version any more: the report comes from the rejected copy.
    assert outcome.status == REJECTED
    assert any(reason in given for given in outcome.reasons), outcome.reasons
    [line] = [r for r in caplog.records if r.name == "filegate.outcome"]
    assert line.levelno == logging.WARNING
    [copy] = [o for o in world.objects(world.settings.rejected) if not o.path.endswith(REPORT_SUFFIX)]
    [report] = [o for o in world.objects(world.settings.rejected) if o.path.endswith(REPORT_SUFFIX)]
    assert json.loads(world.read(report))["reasons"] == list(outcome.reasons)
    assert world.read(copy) == bad
    assert redeliver(world, event).status == DUPLICATE


@pytest.fixture
def azure_world(azurite: Any, tmp_path: Path) -> Iterator[World]:
    with open_azure_world(azurite, tmp_path / "jobs") as opened:
        yield opened


def test_the_azure_store_reports_the_copy_status_the_service_gives(azure_world: World) -> None:
    store, archive = azure_world.store, azure_world.settings.archive
    azure_world.upload(NAME, DATA)
    landing = azure_world.settings.landing
    [uploaded] = azure_world.objects(landing)
    copied = store.copy(landing.container, uploaded.path, uploaded.version, archive.container, NAME, {})
    assert azure_world.proxy is not None
    azure_world.proxy.rewrite(lambda method, path, headers: method == "HEAD", {"x-ms-copy-status": "failed"})

    failed = store.stat(archive.container, NAME)

    assert (uploaded.copy_status, copied.copy_status) == ("", COPY_SUCCESS)
    assert [info.copy_status for info in azure_world.objects(archive)] == [COPY_SUCCESS]
    assert failed is not None
    assert failed.copy_status == "failed"
    assert not failed.copy_finished


@pytest.mark.parametrize(
    ("status", "left"),
    [
        pytest.param("failed", b"", id="failed-empty"),
        pytest.param("aborted", DATA[:100], id="aborted-partial"),
        pytest.param(COPY_SUCCESS, DATA[:100], id="success-but-short"),
    ],
)
def test_a_copy_that_did_not_finish_is_copied_again_before_the_source_goes(
    azure_world: World, status: str, left: bytes
) -> None:
    event = azure_world.upload(NAME, DATA)
    store = UnfinishedCopyStore(azure_world.store, status, left)

    with pytest.raises(FilegateError):
        handle_payload(azure_world.gate(store), event)
    assert len(azure_world.objects(azure_world.settings.landing)) == 1
    if status != COPY_SUCCESS:
        # The sweep's archive pass does not start a run on a copy whose status says it did not finish.
        assert [o.status for o in sweep_archive(azure_world.gate(store))] == [IGNORED]
    assert azure_world.runs() == []
    [outcome] = handle_payload(azure_world.gate(store), event)

    assert outcome.status == ARCHIVED
    assert_converged(azure_world, {NAME: DATA})


def test_a_copy_that_failed_because_its_blob_changed_gives_way_to_the_new_version(azure_world: World) -> None:
    # Azure ends a copy `failed` when its source changes mid-copy; that version is gone for good.
    event = azure_world.upload(NAME, DATA)
    store = UnfinishedCopyStore(azure_world.store, "failed", b"")
    with pytest.raises(FilegateError):
        handle_payload(azure_world.gate(store), event)
    newer = csv_bytes([tracking_row(i) for i in range(25)])
    newer_event = azure_world.upload(NAME, newer)

    [outcome] = handle_payload(azure_world.gate(store), newer_event)

    # The new version takes the plain name; no failed copy is left to read as archived without a run.
    assert outcome.status == ARCHIVED
    [archived] = azure_world.objects(azure_world.settings.archive)
    assert outcome.archived_path == f"{archived.container}/{archived.path}"
    assert not archived.path.rsplit("/", 1)[-1].startswith(NAME.removesuffix(".csv") + "__v")
    assert azure_world.read(archived) == newer
    assert list(sweep_archive(azure_world.gate(store))) == []
    assert_converged(azure_world, {NAME: newer})


def test_a_failed_copy_under_a_version_qualified_name_is_removed_by_the_sweep(azure_world: World) -> None:
    # The first version holds the plain name; the second's copy to its `__v` name fails as the producer
    # overwrites the blob with a third, which gets its own `__v` name and run. No delivery copies the
    # second version again, so the sweep removes what its copy left, rather than warn about it for ever.
    handle_payload(azure_world.gate(), azure_world.upload(NAME, DATA))
    second = azure_world.upload(NAME, csv_bytes([tracking_row(i) for i in range(7)]))
    # Two copies: the plain name refuses the first, the `__v` name takes the failed one.
    store = UnfinishedCopyStore(azure_world.store, "failed", b"", copies=2)
    with pytest.raises(FilegateError, match="copy ended failed"):
        handle_payload(azure_world.gate(store), second)
    third = csv_bytes([tracking_row(i) for i in range(25)])
    [archived] = handle_payload(azure_world.gate(store), azure_world.upload(NAME, third))
    assert archived.status == ARCHIVED

    [removed] = sweep_archive(azure_world.gate(store))

    assert removed.status == IGNORED
    assert removed.reasons[0].startswith("removed an abandoned copy (copy status failed)"), removed.reasons
    assert list(sweep_archive(azure_world.gate(store))) == []
    archive = azure_world.objects(azure_world.settings.archive)
    assert sorted(azure_world.read(info) for info in archive) == sorted([DATA, third])
    assert len(azure_world.runs()) == 2


def test_a_pending_copy_keeps_the_source_until_it_finishes(azure_world: World) -> None:
    event = azure_world.upload(NAME, DATA)
    store = UnfinishedCopyStore(azure_world.store, COPY_PENDING)

    with pytest.raises(TransientError, match="pending"):
        handle_payload(azure_world.gate(store), event)
    with pytest.raises(TransientError, match="still pending"):
        handle_payload(azure_world.gate(store), event)
    assert len(azure_world.objects(azure_world.settings.landing)) == 1
    assert azure_world.runs() == []
    store.finish()
    [outcome] = handle_payload(azure_world.gate(store), event)

    assert outcome.status == REDRIVEN
    assert_converged(azure_world, {NAME: DATA})


def test_a_leased_landing_blob_runs_at_once_and_leaves_landing_once_its_lease_ends(
    azure_world: World, azurite: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from azure.storage.blob import BlobServiceClient

    event = azure_world.upload(NAME, DATA)
    landing = azure_world.settings.landing
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        landing.container, landing.path(NAME)
    )
    lease = blob.acquire_lease(lease_duration=-1)  # as a writer or a copy tool holds it, until released

    # The copy is made (reading a leased blob is allowed) and its run starts; the delete is refused, so
    # the delivery fails naming the lease rather than report the file moved while it stays in landing.
    with (
        caplog.at_level(logging.INFO, logger="filegate.outcome"),
        pytest.raises(Leased, match=r"lease.*archived at .*\(archived, run \d+\)"),
    ):
        handle_payload(azure_world.gate(), event)
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "filegate.outcome"]
    assert line["status"] == ARCHIVED  # logged, as the redelivery will call it a duplicate
    assert "still in landing" in line["reasons"][-1]
    assert len(azure_world.objects(landing)) == 1
    assert len(azure_world.objects(azure_world.settings.archive)) == 1
    [run] = azure_world.runs()
    assert blob.get_blob_properties().lease.state == "leased"  # Filegate did not break it
    with pytest.raises(Leased):
        redeliver(azure_world, event)  # Event Grid's retries while the lease lasts: still the one run
    lease.release()

    outcome = redeliver(azure_world, event)

    assert outcome.status == DUPLICATE
    assert outcome.run_id == run["run_id"]
    assert_converged(azure_world, {NAME: DATA})
    assert len(azure_world.runs()) == 1


def test_a_landing_blob_with_snapshots_runs_at_once_and_leaves_landing_once_they_are_deleted(
    azure_world: World, azurite: Any
) -> None:
    from azure.storage.blob import BlobServiceClient

    event = azure_world.upload(NAME, DATA)
    landing = azure_world.settings.landing
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        landing.container, landing.path(NAME)
    )
    blob.create_snapshot()  # a backup tool's, or a person's: Azure deletes no blob that has snapshots

    # Filegate deletes no snapshot of someone else's: as for a lease, the run starts and the delivery fails
    # saying what keeps the file in landing (it failed with a bare 409 and no run, on every retry).
    with pytest.raises(Leased, match=r"snapshots.*archived at .*\(archived, run \d+\)"):
        handle_payload(azure_world.gate(), event)
    [run] = azure_world.runs()
    assert len(azure_world.objects(landing)) == 1
    blob.delete_blob(delete_snapshots="only")

    outcome = redeliver(azure_world, event)

    assert outcome.status == DUPLICATE
    assert outcome.run_id == run["run_id"]
    assert_converged(azure_world, {NAME: DATA})


@pytest.mark.parametrize("world", ["gcs"], indirect=True)
def test_a_held_landing_object_runs_at_once_and_leaves_landing_once_its_hold_is_released(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """GCS refuses to delete an object under an event-based or temporary hold with a 403 that names the hold
    (the emulator has no holds: the proxy answers as GCS does). Not a missing grant: the same path as
    Azure's lease above."""
    event = world.upload(NAME, DATA)
    landing = world.settings.landing
    assert world.proxy is not None
    held = (
        f"Object '{landing.container}/{landing.path(NAME)}' is under active Event-Based hold and cannot be "
        "deleted, overwritten or archived until hold is removed."
    )
    world.proxy.fail(lambda method, path, headers: method == "DELETE", status=403, message=held)

    with (
        caplog.at_level(logging.INFO, logger="filegate.outcome"),
        pytest.raises(
            Leased, match=r"under a hold or a retention period .*Event-Based hold.*archived at .*\(archived, run \d+\)"
        ),
    ):
        handle_payload(world.gate(), event)
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "filegate.outcome"]
    assert line["status"] == ARCHIVED
    assert "still in landing" in line["reasons"][-1]
    assert "access denied" not in line["reasons"][-1]
    assert len(world.objects(landing)) == 1
    [run] = world.runs()
    world.proxy.heal()  # the hold released

    outcome = redeliver(world, event)

    assert outcome.status == DUPLICATE
    assert outcome.run_id == run["run_id"]
    # The hold refused the mark's removal too; a redelivery that finds the run recorded leaves the mark to
    # the next scheduled pass.
    two_hours_on = world.gate(clock=lambda: datetime.now(UTC) + timedelta(hours=2))
    assert scheduled_sweep(two_hours_on, timedelta(minutes=4)) == []
    assert_converged(world, {NAME: DATA})
    assert len(world.runs()) == 1


# Each fault hits run-now; `raises` says whether the first delivery must fail (and be redelivered) or
# whether the SDK's own retry, carrying the same idempotency token, already absorbs it.
RUN_NOW_FAULTS = [
    pytest.param(Fault(status=500), 1, True, id="500-before-run-created"),
    pytest.param(Fault(status=500, after_request=True), 1, True, id="500-after-run-created"),
    pytest.param(Fault(status=429, retry_after=1), 1, False, id="429-once-retried-by-sdk"),
    pytest.param(Fault(status=429, retry_after=1, after_request=True), 1, False, id="429-after-run-created"),
    pytest.param(Fault(status=429, retry_after=1), 10, True, id="429-longer-than-retry-budget"),
    pytest.param(Fault(status=503, retry_after=1, after_request=True), 10, True, id="503-after-run-created"),
    pytest.param(Fault(status=None, delay=1.5, after_request=True), 1, False, id="timeout-after-run-created"),
    pytest.param(Fault(status=None, delay=1.5, after_request=True), 10, True, id="timeouts-past-retry-budget"),
    pytest.param(Fault(status=0, after_request=True), 1, False, id="connection-dropped-after-run-created"),
]


@pytest.mark.parametrize(("fault", "times", "raises"), RUN_NOW_FAULTS)
def test_run_now_failures_start_exactly_one_run(world: World, fault: Fault, times: int, raises: bool) -> None:
    event = world.upload(NAME, DATA)
    world.jobs_api.inject(fault, times=times)

    if raises:
        with pytest.raises(TransientError):
            handle_payload(world.gate(), event)
        # The file is archived before run-now, so the landing location is already empty: only the
        # redelivered event (or the sweep) can start the run, and it must find the archived copy.
        assert world.objects(world.settings.landing) == []
        world.jobs_api.clear_faults()
        outcome = redeliver(world, event)
        # No run was recorded on the archived copy, so the redelivery re-drives it (same token).
        assert outcome.status == REDRIVEN
    else:
        [outcome] = handle_payload(world.gate(), event)
        assert outcome.status == ARCHIVED

    assert_converged(world, {NAME: DATA})
    [run] = world.runs()
    assert outcome.run_id == run["run_id"]
    assert len(world.jobs_api.requests("run-now")) >= 2


def _reads(method: str, path: str, headers: Any) -> bool:
    return method == "GET" and ("range" in headers or "x-ms-range" in headers)


def _copies(method: str, path: str, headers: Any) -> bool:
    return "x-ms-copy-source" in headers or "rewriteTo" in path or "copyTo" in path


def _deletes(method: str, path: str, headers: Any) -> bool:
    return method == "DELETE"


STORAGE_OPERATIONS = [
    pytest.param(_reads, id="read"),
    pytest.param(_copies, id="copy"),
    pytest.param(_deletes, id="delete"),
]


@pytest.mark.parametrize("operation", STORAGE_OPERATIONS)
def test_storage_answering_503_briefly_is_absorbed_by_the_sdk_retry(world: World, operation: Any) -> None:
    event = world.upload(NAME, DATA)
    assert world.proxy is not None
    rule = world.proxy.fail(operation, status=503, times=2)

    [outcome] = handle_payload(world.gate(), event)

    assert rule.hits == 2
    assert outcome.status == ARCHIVED
    assert_converged(world, {NAME: DATA})


@pytest.mark.parametrize("operation", STORAGE_OPERATIONS)
def test_a_storage_outage_fails_the_delivery_and_redelivery_converges(world: World, operation: Any) -> None:
    event = world.upload(NAME, DATA)
    assert world.proxy is not None
    rule = world.proxy.fail(operation, status=503)

    with pytest.raises(TransientError):
        handle_payload(world.gate(), event)
    assert rule.hits >= 2
    assert world.runs() == []
    world.proxy.heal()
    outcome = redeliver(world, event)

    # A delete outage leaves the copy made without a run: the redelivery starts it (redriven).
    assert outcome.status in (ARCHIVED, REDRIVEN)
    assert_converged(world, {NAME: DATA})


@pytest.mark.parametrize("operation", [*STORAGE_OPERATIONS[1:], pytest.param(_reads, id="read")])
def test_a_change_made_but_its_answer_lost_converges(world: World, operation: Any) -> None:
    """The storage call succeeds but its answer is lost: the SDK retries a copy or delete already done.

    This is the case the preconditions exist for: the retried copy must find its own copy (not make a
    second or overwrite), the retried delete must find nothing to delete, and the run starts once.
    """
    event = world.upload(NAME, DATA)
    assert world.proxy is not None
    rule = world.proxy.fail(operation, status=503, times=1, after_forwarding=True)

    [outcome] = handle_payload(world.gate(), event)

    assert rule.hits == 1
    # A lost copy answer makes the retried copy find its own copy, not yet marked with a run.
    assert outcome.status in (ARCHIVED, DUPLICATE, REDRIVEN)
    assert_converged(world, {NAME: DATA})
    [run] = world.runs()
    assert outcome.run_id == run["run_id"]


@pytest.mark.parametrize("recovery", ["redelivery", "sweep"])
def test_a_crash_between_seal_and_run_now_starts_the_batch_run_once(world: World, recovery: str) -> None:
    day = date(2025, 5, 1)
    pieces = batch_pieces(day)
    *first, last = pieces
    for name in first:
        handle_payload(world.gate(), world.upload(name, pieces[name]))
    event = world.upload(last, pieces[last])

    # The seal is the sealing event's first create-only put: the crash leaves it without a run.
    with pytest.raises(SimulatedCrash):
        handle_payload(world.gate(CrashingStore(world.store, after="put")), event)
    assert len(seals(world, day)) == 1
    assert world.runs() == []

    if recovery == "redelivery":
        outcome = redeliver(world, event)
        assert outcome.status == DUPLICATE
    else:
        [outcome] = sweep_pipeline_batches(world.gate())
        assert outcome.status == SEALED

    [run] = batch_runs(world)
    assert outcome.run_id == run["run_id"]
    assert run_parameters(run)["batch_id"] == read_seal(world, seals(world, day)[0])["batch_id"]
    assert list(sweep_pipeline_batches(world.gate())) == []
    assert redeliver(world, event).run_id == run["run_id"]
    assert len(batch_runs(world)) == 1


def test_a_member_whose_copy_is_pending_is_not_sealed_until_the_copy_finishes(azure_world: World) -> None:
    day = date(2025, 5, 3)
    pieces = batch_pieces(day)
    *members, trigger = pieces
    *first, pending = members
    for name in first:
        handle_payload(azure_world.gate(), azure_world.upload(name, pieces[name]))
    event = azure_world.upload(pending, pieces[pending])
    # Azure's copy of the last member is still pending: the blob has the member's size and Filegate's
    # metadata, so only its copy status says that its bytes are not all there yet.
    store = UnfinishedCopyStore(azure_world.store, COPY_PENDING)
    with pytest.raises(TransientError, match="pending"):
        handle_payload(azure_world.gate(store), event)

    [waiting] = handle_payload(azure_world.gate(store), azure_world.upload(trigger, pieces[trigger]))

    assert waiting.status == "waiting"
    assert seals(azure_world, day) == []
    assert batch_runs(azure_world) == []
    store.finish()
    redeliver(azure_world, event)
    [seal] = seals(azure_world, day)
    assert len(read_seal(azure_world, seal)["members"]) == len(members)
    assert len(batch_runs(azure_world)) == 1


def test_a_batch_run_now_failure_is_redelivered_and_starts_one_run(world: World) -> None:
    day = date(2025, 5, 2)
    pieces = batch_pieces(day)
    *first, last = pieces
    for name in first:
        handle_payload(world.gate(), world.upload(name, pieces[name]))
    event = world.upload(last, pieces[last])
    world.jobs_api.inject(Fault(status=500, after_request=True), times=1)

    with pytest.raises(TransientError):
        handle_payload(world.gate(), event)
    world.jobs_api.clear_faults()
    outcome = redeliver(world, event)

    assert outcome.status == DUPLICATE
    [run] = batch_runs(world)
    assert outcome.run_id == run["run_id"]
    assert len(seals(world, day)) == 1
