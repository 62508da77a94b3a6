"""Pipeline batches on each cloud's real store: every piece archived on its own event, one seal and one run
per complete batch, and a defined answer for every arrival order, duplicate, rejection, gap and late piece."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from filegate import batches
from filegate.batches import (
    BLOCKED,
    LATE_MEMBER,
    MEMBER_ARCHIVED,
    OVERDUE,
    SEALED,
    WAITING,
    assess_batch,
)
from filegate.batches_command import describe_batch
from filegate.contracts import load_contracts
from filegate.errors import RunNotStarted, TransientError
from filegate.ingest import ARCHIVED, DUPLICATE, IDENTICAL, REJECTED, RUN_PENDING, Gate, Outcome, handle_payload
from filegate.pipelines import Pipelines, load_pipelines
from filegate.storage import ObjectInfo, Store
from filegate.sweep import sweep_all, sweep_pipeline_batches
from local_world.emulators import AZURITE_ARCHIVE_ACCOUNT, Azurite, azurite_connection_string
from local_world.inputs import blob_created, csv_bytes, tracking_row
from tests.faults.world import World, run_parameters
from tests.test_sweep import run_sweep

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "ecommerce"
MEMBERS = ("customers", "products", "inventory", "orders", "shipping")
PIPELINE = load_pipelines(load_contracts())["ecommerce"]
BATCH_JOB_ID = 2  # the world's bundle: the ingest job is 1, the batch job 2


def member_name(dataset: str, day: date) -> str:
    return f"{dataset}_{day:%Y_%m_%d}.csv"


def trigger_name(day: date) -> str:
    return f"trigger_{day:%Y_%m_%d}.json"


def member_bytes(dataset: str) -> bytes:
    """The committed sample file of the first business day; the function does not compare row dates with names."""
    return (SAMPLES / member_name(dataset, date(2025, 1, 15))).read_bytes()


def trigger_bytes(day: date, members: dict[str, bytes] | None = None, **overrides: Any) -> bytes:
    """A trigger as the producer writes it: the batch date and each file with its size."""
    listed = members if members is not None else {d: member_bytes(d) for d in MEMBERS}
    content: dict[str, Any] = {
        "batch_date": day.isoformat(),
        "source_system": "shop-erp",
        "created_at": f"{day.isoformat()}T23:10:00Z",
        "files": [{"dataset": d, "file": member_name(d, day), "bytes": len(data)} for d, data in listed.items()],
    }
    content.update(overrides)
    return json.dumps(content, indent=2).encode()


def batch_pieces(day: date) -> dict[str, bytes]:
    pieces = {member_name(d, day): member_bytes(d) for d in MEMBERS}
    pieces[trigger_name(day)] = trigger_bytes(day)
    return pieces


def unsized_pieces(day: date) -> dict[str, bytes]:
    """The day's pieces with a trigger that names no sizes: the newest version of a member is the one a batch uses."""
    pieces = batch_pieces(day)
    pieces[trigger_name(day)] = json.dumps({"batch_date": day.isoformat()}).encode()
    return pieces


def seal_unsized(world: World, gate: Gate, day: date) -> Outcome:
    """Deliver every piece of `unsized_pieces`; the last delivery's outcome, the seal of revision 1."""
    outcomes = [deliver(gate, world.upload(name, data)) for name, data in unsized_pieces(day).items()]
    assert outcomes[-1].status == SEALED
    return outcomes[-1]


def a_row_more(dataset: str) -> bytes:
    """The member with one row more: a different file under the same name."""
    data = member_bytes(dataset)
    return data + data.splitlines(keepends=True)[1]


def deliver(gate: Gate, event: dict[str, Any]) -> Outcome:
    [outcome] = handle_payload(gate, event)
    return outcome


def seals(world: World, day: date | None = None) -> list[str]:
    folder = f"_batches/ecommerce/{day:%Y/%m/%d}/" if day else "_batches/ecommerce/"
    return sorted(
        info.path
        for info in world.objects(world.settings.archive)
        if info.path.startswith(folder) and info.path.rsplit("/", 1)[-1].startswith("_sealed.")
    )


def batch_runs(world: World) -> list[dict[str, Any]]:
    return [run for run in world.runs() if run["job_id"] == BATCH_JOB_ID]


def read_seal(world: World, path: str) -> dict[str, Any]:
    info = world.store.stat(world.settings.archive.container, path)
    assert info is not None
    document: dict[str, Any] = json.loads(world.read(info))
    return document


def with_policy(**changes: Any) -> Pipelines:
    return Pipelines({"ecommerce": replace(PIPELINE, **changes)})


def later_clock(minutes: float) -> Any:
    return lambda: datetime.now(UTC) + timedelta(minutes=minutes)


# Thirty orders: the trigger at each of the six positions, combined with each member arriving last among
# the members. The decision depends only on which pieces are archived, so these cover every state a batch
# can be in when its last piece arrives (all 720 orders would repeat them at 24 times the cost).
ORDERS = [(position, last) for position in range(6) for last in MEMBERS]


def test_every_arrival_order_seals_once_with_the_last_piece_and_starts_one_run(world: World) -> None:
    gate = world.gate()
    days = [date(2025, 2, 1) + timedelta(days=n) for n in range(len(ORDERS))]
    for day, (position, last) in zip(days, ORDERS, strict=True):
        members = [member_name(d, day) for d in MEMBERS if d != last] + [member_name(last, day)]
        order = [*members[:position], trigger_name(day), *members[position:]]
        pieces = batch_pieces(day)
        outcomes = [deliver(gate, world.upload(name, pieces[name])) for name in order]

        statuses = [o.status for o in outcomes]
        assert statuses[:position] == [MEMBER_ARCHIVED] * position, (day, order, statuses)
        assert statuses[position:-1] == [WAITING] * (5 - position), (day, order, statuses)
        assert statuses[-1] == SEALED, (day, order, statuses)
        if position < 5:
            # Each waiting outcome names exactly what is still missing.
            assert outcomes[position].missing == tuple(
                d for d in MEMBERS if member_name(d, day) not in order[:position]
            )
        sealed = outcomes[-1]
        assert sealed.run_id is not None
        assert sealed.pipeline == "ecommerce"
        assert sealed.revision == 1
        assert seals(world, day) == [sealed.sealed_path.split("/", 1)[1]]  # type: ignore[union-attr]
    assert len(seals(world)) == len(days)
    runs = batch_runs(world)
    assert len(runs) == len(days), "one run per batch"
    assert not [run for run in world.runs() if run["job_id"] != BATCH_JOB_ID], "a member started a run of its own"
    sources = {run_parameters(run)["source_path"] for run in runs}
    assert len(sources) == len(days)


def test_the_sealed_manifest_names_the_exact_archived_version_of_every_member(world: World) -> None:
    gate = world.gate()
    day = date(2025, 1, 15)
    pieces = {name: (SAMPLES / name).read_bytes() for name in [member_name(d, day) for d in MEMBERS]}
    pieces[trigger_name(day)] = (SAMPLES / trigger_name(day)).read_bytes()
    outcomes = [deliver(gate, world.upload(name, data)) for name, data in pieces.items()]

    sealed = outcomes[-1]
    assert sealed.status == SEALED
    seal = read_seal(world, sealed.sealed_path.split("/", 1)[1])  # type: ignore[union-attr]
    archived = {info.path: info for info in world.objects(world.settings.archive)}
    assert [m["dataset"] for m in seal["members"]] == list(MEMBERS)
    for member in seal["members"]:
        info = archived[member["path"]]
        assert member["version"] == info.version
        assert member["size"] == info.size
        assert member["uri"] == world.store.spark_uri(info.container, info.path)
        # On Azure the archive is in its own account, which the job must read the member from.
        assert world.kind != "azure" or f"@{AZURITE_ARCHIVE_ACCOUNT}." in member["uri"]
        assert world.read(info) == pieces[member["path"].rsplit("/", 1)[1]]
    assert seal["partial"] is False
    assert seal["missing"] == []
    assert seal["trigger"]["content"]["batch_date"] == "2025-01-15"
    [run] = batch_runs(world)
    parameters = run_parameters(run)
    assert parameters == {
        "source_path": world.store.spark_uri(world.settings.archive.container, sealed.sealed_path.split("/", 1)[1]),  # type: ignore[union-attr]
        "pipeline": "ecommerce",
        "batch_id": seal["batch_id"],
    }
    assert sealed.idempotency_token == seal["idempotency_token"]
    assert world.objects(world.settings.landing) == []


def test_twenty_threads_delivering_the_last_two_events_give_one_seal_and_one_run(world: World) -> None:
    gate = world.gate(retry_timeout_seconds=20, http_timeout_seconds=10)
    day = date(2025, 3, 1)
    pieces = batch_pieces(day)
    names = list(pieces)
    for name in names[:-2]:
        deliver(gate, world.upload(name, pieces[name]))
    last_two = [world.upload(name, pieces[name]) for name in names[-2:]]
    deliveries = [last_two[n % 2] for n in range(20)]
    barrier = threading.Barrier(20)

    def at_once(event: dict[str, Any]) -> Outcome:
        barrier.wait(timeout=30)
        return deliver(gate, event)

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(at_once, deliveries))

    statuses = Counter(o.status for o in outcomes)
    assert statuses[SEALED] == 1, statuses
    assert set(statuses) <= {SEALED, DUPLICATE, WAITING, MEMBER_ARCHIVED}, statuses
    assert len(seals(world, day)) == 1
    assert len(batch_runs(world)) == 1
    assert {o.run_id for o in outcomes if o.run_id is not None} == {batch_runs(world)[0]["run_id"]}
    assert world.objects(world.settings.landing) == []


def test_every_event_twice_changes_nothing(world: World) -> None:
    gate = world.gate()
    day = date(2025, 3, 2)
    events = [world.upload(name, data) for name, data in batch_pieces(day).items()]
    first = [deliver(gate, event) for event in events]
    second = [deliver(gate, event) for event in events]

    assert [o.status for o in first][-1] == SEALED
    assert {o.status for o in second} == {DUPLICATE}
    assert second[-1].run_id == first[-1].run_id
    assert len(seals(world, day)) == 1
    assert len(batch_runs(world)) == 1


def test_a_trigger_sent_again_byte_for_byte_is_kept_once_and_its_batch_decides_nothing_new(world: World) -> None:
    # Sent again (a backfill run twice, a producer's retry), a trigger was archived again beside the first, each
    # time: one more trigger copy in the batch's folder; a rejected one got a second copy and report.
    gate = world.gate()
    day, other_day = date(2025, 3, 3), date(2025, 3, 4)
    pieces = batch_pieces(day)
    trigger = pieces.pop(trigger_name(day))
    last = member_name("shipping", day)
    last_data = pieces.pop(last)
    for name, data in pieces.items():
        deliver(gate, world.upload(name, data))
    waiting = deliver(gate, world.upload(trigger_name(day), trigger))

    again = deliver(gate, world.upload(trigger_name(day), trigger))
    sealed = deliver(gate, world.upload(last, last_data))
    event = world.upload(trigger_name(day), trigger)
    after_seal = deliver(gate, event)
    redelivered = deliver(gate, event)
    rejected = [deliver(gate, world.upload(trigger_name(other_day), b"{not json")) for _ in range(2)]

    assert (waiting.status, again.status, again.missing) == (WAITING, IDENTICAL, ("shipping",))
    assert again.reasons[0].startswith(f"byte-identical to {waiting.archived_path}, the batch's trigger")
    assert (sealed.status, after_seal.status, after_seal.run_id) == (SEALED, IDENTICAL, sealed.run_id)
    folder = f"_batches/ecommerce/{day:%Y/%m/%d}/"
    triggers = [i.path for i in world.objects(world.settings.archive) if i.path.startswith(folder + "trigger_")]
    assert triggers == [waiting.archived_path.split("/", 1)[1]]
    # Its redelivery finds the blob gone, deleted by Filegate itself, not by "someone else".
    assert redelivered.status == "ignored"
    assert f"as byte-identical to {waiting.archived_path}" in redelivered.reasons[0]
    assert [o.status for o in rejected] == [REJECTED, IDENTICAL]
    assert rejected[1].rejected_path == rejected[0].rejected_path
    assert len(world.objects(world.settings.rejected)) == 2  # the trigger and its report
    assert world.objects(world.settings.landing) == []
    assert len(batch_runs(world)) == 1


def test_a_member_re_uploaded_before_the_seal_uses_the_version_the_trigger_describes(world: World) -> None:
    gate = world.gate()
    described, newest = date(2025, 3, 3), date(2025, 3, 4)
    first = member_bytes("customers")
    second = first + first.splitlines(keepends=True)[1]  # one more row: a different file of the same name
    for day in (described, newest):
        deliver(gate, world.upload(member_name("customers", day), first))
        archived = deliver(gate, world.upload(member_name("customers", day), second))
        assert archived.status == MEMBER_ARCHIVED
        # The day's trigger by name, not the pattern (the demo printed trigger_{yyyy}_{mm}_{dd}.json).
        assert archived.reasons == (f"waiting for the trigger {trigger_name(day)}",)
        for dataset in MEMBERS[1:]:
            deliver(gate, world.upload(member_name(dataset, day), member_bytes(dataset)))
    # One trigger states the first version's size; the other lists no files, so the newest version counts.
    deliver(gate, world.upload(trigger_name(described), trigger_bytes(described)))
    plain = json.dumps({"batch_date": newest.isoformat()}).encode()
    deliver(gate, world.upload(trigger_name(newest), plain))

    for day, expected in ((described, first), (newest, second)):
        [path] = seals(world, day)
        seal = read_seal(world, path)
        customers = seal["members"][0]
        assert customers["size"] == len(expected), day
        assert len(customers["superseded"]) == 1, day
    assert len(batch_runs(world)) == 2


def test_a_member_sent_again_to_take_back_a_different_version_is_the_version_the_batch_uses(world: World) -> None:
    gate = world.gate()
    day = date(2025, 3, 5)
    first = member_bytes("customers")
    second = first + first.splitlines(keepends=True)[1]
    # A, B, then A again; Azure's Last-Modified counts whole seconds, so each version gets its own.
    for data in (first, second):
        assert deliver(gate, world.upload(member_name("customers", day), data)).status == MEMBER_ARCHIVED
        time.sleep(1.1)
    taken_back = deliver(gate, world.upload(member_name("customers", day), first))
    for dataset in MEMBERS[1:]:
        deliver(gate, world.upload(member_name(dataset, day), member_bytes(dataset)))
    deliver(gate, world.upload(trigger_name(day), json.dumps({"batch_date": day.isoformat()}).encode()))

    assert taken_back.status == MEMBER_ARCHIVED
    [path] = seals(world, day)
    customers = read_seal(world, path)["members"][0]
    assert customers["size"] == len(first)
    assert customers["path"] == taken_back.archived_path.split("/", 1)[1]
    assert len(customers["superseded"]) == 2


def test_a_re_upload_of_the_same_size_is_not_taken_for_the_file_whose_md5_the_trigger_states(world: World) -> None:
    gate = world.gate()
    described, other_only = date(2025, 3, 5), date(2025, 3, 6)
    first = member_bytes("customers")
    second = first.replace(b"Austin", b"Boston", 1)  # same size, other bytes
    assert len(second) == len(first)
    assert second != first
    digest = hashlib.md5(first).digest()  # what the producer states, not a security check
    for day, versions in ((described, (first, second)), (other_only, (second,))):
        for data in versions:
            deliver(gate, world.upload(member_name("customers", day), data))
        for dataset in MEMBERS[1:]:
            deliver(gate, world.upload(member_name(dataset, day), member_bytes(dataset)))
        content = json.loads(trigger_bytes(day))
        # Written as hex on one day and as base64, as the stores list it, on the other.
        content["files"][0]["md5"] = digest.hex() if day == described else base64.b64encode(digest).decode()
        outcome = deliver(gate, world.upload(trigger_name(day), json.dumps(content).encode()))
        assert outcome.status == (SEALED if day == described else WAITING), (day, outcome)

    # The newer version has the size the trigger states, but not its MD5: the first version is sealed.
    [path] = seals(world, described)
    customers = read_seal(world, path)["members"][0]
    assert customers["size"] == len(first)
    assert customers["expected_md5"] == digest.hex()
    [sealed] = [i for i in world.objects(world.settings.archive) if i.path == customers["path"]]
    assert world.read(sealed) == first
    # Only the other bytes were sent: the batch waits for the described file and says why.
    assert seals(world, other_only) == []
    why = f"(MD5 {hashlib.md5(second).hexdigest()}); the trigger says {len(first)} bytes (MD5 {digest.hex()})"
    assert any(why in reason for reason in outcome.reasons), outcome.reasons
    assert len(batch_runs(world)) == 1


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_a_version_with_the_stated_md5_wins_over_a_newer_one_whose_store_recorded_none(
    world: World, azurite: Any
) -> None:
    from azure.storage.blob import BlobServiceClient

    gate = world.gate()
    day = date(2025, 3, 8)
    first = member_bytes("customers")
    second = first.replace(b"Austin", b"Boston", 1)  # same size, other bytes
    deliver(gate, world.upload(member_name("customers", day), first))
    # Committed in blocks, with no MD5 of the whole blob: the listing records none for it.
    blocks = BlobServiceClient.from_connection_string(
        azurite.connection_string, max_single_put_size=1024, max_block_size=1024
    )
    landing = world.settings.landing
    path = landing.path(member_name("customers", day))
    result = blocks.get_blob_client(landing.container, path).upload_blob(second, overwrite=True)
    deliver(
        gate,
        blob_created(
            landing.container, path, len(second), str(result["etag"]).strip('"'), api="PutBlockList", port=azurite.port
        ),
    )
    archived = [i for i in world.objects(world.settings.archive) if "customers_2025_03_08" in i.path]
    assert sorted(bool(i.content_md5) for i in archived) == [False, True]
    for dataset in MEMBERS[1:]:
        deliver(gate, world.upload(member_name(dataset, day), member_bytes(dataset)))
    content = json.loads(trigger_bytes(day))
    content["files"][0]["md5"] = hashlib.md5(first).hexdigest()

    assert deliver(gate, world.upload(trigger_name(day), json.dumps(content).encode())).status == SEALED

    [path] = seals(world, day)
    customers = read_seal(world, path)["members"][0]
    [sealed] = [i for i in world.objects(world.settings.archive) if i.path == customers["path"]]
    assert world.read(sealed) == first


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_a_trigger_labelled_after_its_upload_still_seals_its_batch(world: World) -> None:
    gate = world.gate()
    day = date(2025, 3, 7)
    for dataset in MEMBERS:
        deliver(gate, world.upload(member_name(dataset, day), member_bytes(dataset)))
    event = world.upload(trigger_name(day), trigger_bytes(day))
    # A metadata write gives the blob a new ETag and raises no BlobCreated: this event is the only one.
    landing = world.settings.landing
    [trigger] = [i for i in world.objects(landing) if i.path.endswith(trigger_name(day))]
    world.store.update_metadata(landing.container, trigger.path, trigger.version, {"producer": "erp"})

    outcome = deliver(gate, event)

    assert outcome.status == SEALED, outcome
    assert "but the blob is now version" in outcome.reasons[0]
    assert len(seals(world, day)) == 1
    assert len(batch_runs(world)) == 1
    assert world.objects(landing) == []


def test_a_rejected_member_blocks_its_batch_until_a_corrected_upload(world: World) -> None:
    gate = world.gate()
    day = date(2025, 1, 16)
    bad = (SAMPLES / "bad" / member_name("customers", day)).read_bytes()
    blocked = deliver(gate, world.upload(member_name("customers", day), bad))
    assert blocked.status == BLOCKED
    assert blocked.rejected_path is not None
    assert blocked.blocked_by == (f"{blocked.rejected_path}.report.json",)
    for dataset in MEMBERS[1:]:
        deliver(gate, world.upload(member_name(dataset, day), (SAMPLES / member_name(dataset, day)).read_bytes()))
    still = deliver(gate, world.upload(trigger_name(day), (SAMPLES / trigger_name(day)).read_bytes()))
    assert still.status == BLOCKED
    assert still.blocked_by == blocked.blocked_by
    assert any("a corrected upload unblocks it" in reason for reason in still.reasons)
    assert batch_runs(world) == []

    corrected = deliver(
        gate, world.upload(member_name("customers", day), (SAMPLES / member_name("customers", day)).read_bytes())
    )

    assert corrected.status == SEALED
    assert corrected.dataset == "customers"
    assert len(batch_runs(world)) == 1


def test_an_overdue_batch_with_a_rejected_member_is_not_loaded_without_it(world: World) -> None:
    # `load_available` leaves out members that never came; a rejected one blocks, as a reseal's --partial refuses it:
    # sealing without it ran the day with its customers missing and called the rejection a gap.
    pipelines = with_policy(on_incomplete="load_available", complete_within_minutes=30)
    gate = world.gate(pipelines=pipelines)
    day = date(2025, 1, 16)
    bad = (SAMPLES / "bad" / member_name("customers", day)).read_bytes()
    blocked = deliver(gate, world.upload(member_name("customers", day), bad))
    for name, data in batch_pieces(day).items():
        if not name.startswith("customers"):
            deliver(gate, world.upload(name, data))

    [outcome] = sweep_pipeline_batches(world.gate(pipelines=pipelines, clock=later_clock(31)))

    assert outcome.status == OVERDUE
    assert outcome.blocked_by == blocked.blocked_by
    assert "a corrected upload of customers" in outcome.reasons[-1]
    assert outcome.reasons[-1].endswith("ecommerce --partial --without customers` loads the day without it")
    assert seals(world, day) == []
    assert batch_runs(world) == []
    corrected = deliver(
        gate, world.upload(member_name("customers", day), batch_pieces(day)[member_name("customers", day)])
    )
    assert corrected.status == SEALED


def test_a_member_rejected_under_a_name_in_other_case_blocks_its_batch_too(world: World) -> None:
    # The contract matches names whatever their case; the rejected folder is found the same way.
    gate = world.gate()
    day = date(2025, 1, 17)
    bad = (SAMPLES / "bad" / member_name("customers", date(2025, 1, 16))).read_bytes()
    blocked = deliver(gate, world.upload(member_name("customers", day).capitalize(), bad))
    assert blocked.status == BLOCKED
    assert blocked.blocked_by == (f"{blocked.rejected_path}.report.json",)
    for dataset in MEMBERS[1:]:
        deliver(gate, world.upload(member_name(dataset, day), member_bytes(dataset)))

    still = deliver(gate, world.upload(trigger_name(day), unsized_pieces(day)[trigger_name(day)]))

    assert still.status == BLOCKED
    assert still.blocked_by == blocked.blocked_by
    assert batch_runs(world) == []


def test_a_rejected_member_is_alerted_on_when_its_batch_cannot_be_read(world: World) -> None:
    gate = world.gate()
    day = date(2025, 1, 16)
    bad = (SAMPLES / "bad" / member_name("customers", day)).read_bytes()
    event = world.upload(member_name("customers", day), bad)
    archive = world.settings.archive.container
    assert world.proxy is not None
    # Listing the archive (Azure: comp=list, GCS: objects.list) fails once the file is moved and reported.
    world.proxy.fail(lambda method, path, headers: method == "GET" and archive in path and "prefix=" in path)

    outcome = deliver(gate, event)

    # Not lost to the redelivery, which finds the file moved and would call it a duplicate.
    assert outcome.status == REJECTED
    assert outcome.pipeline == "ecommerce"
    assert "batch not read" in outcome.reasons[-1]
    assert outcome.rejected_path is not None
    assert world.objects(world.settings.landing) == []
    world.proxy.heal()
    assert deliver(gate, event).status == DUPLICATE


@pytest.mark.parametrize("policy", ["wait", "reject", "load_available"])
def test_a_member_that_never_comes_is_overdue_and_the_policy_applies(world: World, policy: str) -> None:
    pipelines = with_policy(on_incomplete=policy, complete_within_minutes=30)
    gate = world.gate(pipelines=pipelines)
    day = date(2025, 3, 5)
    for name, data in batch_pieces(day).items():
        if not name.startswith("shipping"):
            deliver(gate, world.upload(name, data))
    assert next(iter(sweep_pipeline_batches(gate))).status == WAITING  # inside the window: nothing to do yet

    [outcome] = sweep_pipeline_batches(world.gate(pipelines=pipelines, clock=later_clock(31)))

    assert outcome.status == OVERDUE
    assert outcome.missing == ("shipping",)
    if policy == "wait":
        assert seals(world) == []
        assert batch_runs(world) == []
        assert [o.status for o in sweep_pipeline_batches(world.gate(pipelines=pipelines, clock=later_clock(60)))] == [
            OVERDUE
        ]
    elif policy == "reject":
        assert outcome.rejected_path is not None
        report = world.store.stat(
            world.settings.rejected.container, outcome.rejected_path.split("/", 1)[1] + ".report.json"
        )
        assert report is not None
        assert "shipping" in json.loads(world.read(report))["missing"]
        assert seals(world) == []
        assert batch_runs(world) == []
        # The members stay archived; without a trigger the next sweep has nothing to say.
        assert list(sweep_pipeline_batches(world.gate(pipelines=pipelines, clock=later_clock(60)))) == []
        assert len([i for i in world.objects(world.settings.archive) if i.path.endswith(".csv")]) == 4
    else:
        seal = read_seal(world, outcome.sealed_path.split("/", 1)[1])  # type: ignore[union-attr]
        assert seal["partial"] is True
        assert seal["missing"] == ["shipping"]
        assert len(seal["members"]) == 4
        assert outcome.run_id == batch_runs(world)[0]["run_id"]
        assert len(batch_runs(world)) == 1
        assert list(sweep_pipeline_batches(world.gate(pipelines=pipelines, clock=later_clock(60)))) == []


def test_an_optional_member_that_comes_is_sealed_and_after_the_seal_is_late(world: World) -> None:
    # A trigger without `files` (manifest_lists_files = false): the required members make the batch, and an
    # optional one is in it when it came; after the seal it is a late member, never a silent duplicate.
    gate = world.gate(pipelines=with_policy(optional_members=("shipping",)))
    early, late = date(2025, 3, 23), date(2025, 3, 24)
    for dataset in MEMBERS:
        deliver(gate, world.upload(member_name(dataset, early), member_bytes(dataset)))
    for dataset in MEMBERS[:-1]:
        deliver(gate, world.upload(member_name(dataset, late), member_bytes(dataset)))

    sealed_early = deliver(gate, world.upload(trigger_name(early), unsized_pieces(early)[trigger_name(early)]))
    sealed_late = deliver(gate, world.upload(trigger_name(late), unsized_pieces(late)[trigger_name(late)]))
    shipping = deliver(gate, world.upload(member_name("shipping", late), member_bytes("shipping")))

    assert (sealed_early.status, sealed_late.status) == (SEALED, SEALED)
    assert [m["dataset"] for m in read_seal(world, seals(world, early)[0])["members"]] == list(MEMBERS)
    document = read_seal(world, seals(world, late)[0])
    assert ([m["dataset"] for m in document["members"]], document["missing"]) == (list(MEMBERS[:-1]), [])
    assert shipping.status == LATE_MEMBER
    assert len(batch_runs(world)) == 2


def rewrite_seal(world: World, path: str, change: Any) -> None:
    """Make a seal read as an earlier release wrote it."""
    store, container = world.store, world.settings.archive.container
    info = store.stat(container, path)
    assert info is not None
    document = json.loads(world.read(info))
    change(document)
    assert store.delete(container, path, info.version)
    store.put(container, path, json.dumps(document, indent=2).encode(), "application/json", {})


def test_seals_of_earlier_releases_read_alike_and_the_sweep_runs_none_of_them_again(world: World) -> None:
    # Earlier releases kept a trigger's MD5 as given (base64 here) and left out optional members when the trigger
    # listed no files: neither is news against what the store holds now, or every such day would run again.
    gate = world.gate(pipelines=with_policy(optional_members=("shipping",), late_member="rerun"))
    stated, unlisted = date(2025, 4, 1), date(2025, 4, 2)
    content = json.loads(trigger_bytes(stated))
    given = base64.b64encode(hashlib.md5(member_bytes("customers")).digest()).decode()
    content["files"][0]["md5"] = given
    for dataset in MEMBERS:
        deliver(gate, world.upload(member_name(dataset, stated), member_bytes(dataset)))
    assert deliver(gate, world.upload(trigger_name(stated), json.dumps(content).encode())).status == SEALED
    assert seal_unsized(world, gate, unlisted).status == SEALED

    def md5_as_given(document: dict[str, Any]) -> None:
        document.pop(batches.OPTIONAL_SEALED)
        for member in document["members"]:
            if member["dataset"] == "customers":
                member["expected_md5"] = given

    def without_optional(document: dict[str, Any]) -> None:
        document.pop(batches.OPTIONAL_SEALED)
        document["members"] = [m for m in document["members"] if m["dataset"] != "shipping"]

    rewrite_seal(world, seals(world, stated)[0], md5_as_given)
    rewrite_seal(world, seals(world, unlisted)[0], without_optional)

    assert list(sweep_pipeline_batches(gate)) == []
    # The trigger sent again byte for byte: identical to the archived one, and its batch decides nothing new.
    assert deliver(gate, world.upload(trigger_name(stated), json.dumps(content).encode())).status == IDENTICAL
    assert len(batch_runs(world)) == 2


def test_an_optional_member_its_trigger_listed_is_late_after_a_seal_of_an_earlier_release(world: World) -> None:
    pipelines = with_policy(optional_members=("shipping",), on_incomplete="load_available", complete_within_minutes=30)
    gate = world.gate(pipelines=pipelines)
    day = date(2025, 4, 3)
    pieces = batch_pieces(day)  # the trigger lists all five, shipping with its size
    shipping = pieces.pop(member_name("shipping", day))
    assert [deliver(gate, world.upload(name, data)) for name, data in pieces.items()][-1].status == WAITING
    [partial] = sweep_pipeline_batches(world.gate(pipelines=pipelines, clock=later_clock(31)))
    assert partial.status == OVERDUE
    rewrite_seal(world, seals(world, day)[0], lambda document: document.pop(batches.OPTIONAL_SEALED))

    late = deliver(gate, world.upload(member_name("shipping", day), shipping))

    assert late.status == LATE_MEMBER


@pytest.mark.parametrize("world", ["azure"], indirect=True)
def test_an_archived_trigger_tiered_down_to_archive_fails_the_member_event_not_left_in_landing(
    world: World, azurite: Azurite
) -> None:
    # A lifecycle rule moved the archived trigger to the Archive tier: the member is archived (gone from
    # landing), then its batch cannot be read. "Left in landing" would be false: the event fails, retried.
    from azure.storage.blob import BlobServiceClient, StandardBlobTier

    from filegate.errors import StorageError

    gate = world.gate()
    day = date(2025, 3, 9)
    pieces = batch_pieces(day)
    deliver(gate, world.upload(trigger_name(day), pieces[trigger_name(day)]))
    [trigger] = [i for i in world.objects(world.settings.archive) if i.path.endswith(trigger_name(day))]
    account = BlobServiceClient.from_connection_string(azurite_connection_string(azurite.port, AZURITE_ARCHIVE_ACCOUNT))
    blob = account.get_blob_client(trigger.container, trigger.path)
    blob.set_standard_blob_tier(StandardBlobTier.ARCHIVE)
    name = member_name("customers", day)
    event = world.upload(name, pieces[name])

    with pytest.raises(StorageError, match="Archive access tier"):
        deliver(gate, event)

    assert world.objects(world.settings.landing) == []
    assert any(info.path.endswith(name) for info in world.objects(world.settings.archive))
    blob.set_standard_blob_tier(StandardBlobTier.HOT)
    # The redelivery, once the trigger can be read, evaluates the batch (still waiting: a duplicate delivery).
    assert deliver(gate, event).status == DUPLICATE


@pytest.mark.parametrize("policy", ["wait", "reject", "load_available"])
def test_a_trigger_that_no_longer_reads_as_valid_makes_its_batch_overdue(world: World, policy: str) -> None:
    # README's "Adding a dataset to a pipeline": a batch whose archived trigger lists the old members waits for a
    # corrected trigger; when none comes in the window, it is overdue (a WARNING) and the policy applies.
    day = date(2025, 3, 22)
    for name, data in batch_pieces(day).items():
        if not name.startswith("shipping"):
            deliver(world.gate(), world.upload(name, data))
    grown = replace(PIPELINE, members=(*PIPELINE.members, "order_tracking"), complete_within_minutes=30)
    pipelines = Pipelines({"ecommerce": replace(grown, on_incomplete=policy)})
    [waiting] = sweep_pipeline_batches(world.gate(pipelines=pipelines))
    assert waiting.status == WAITING

    [outcome] = sweep_pipeline_batches(world.gate(pipelines=pipelines, clock=later_clock(31)))

    assert outcome.status == OVERDUE
    assert any("no longer reads as valid" in reason for reason in outcome.reasons)
    assert seals(world) == []
    assert batch_runs(world) == []
    assert (outcome.rejected_path is not None) == (policy == "reject")
    if policy != "reject":  # `filegate batches` says what the sweep said
        late = world.gate(pipelines=pipelines, clock=later_clock(31))
        assert describe_batch(late, assess_batch(late, late.pipelines["ecommerce"], day)).state == OVERDUE


def test_a_complete_batch_whose_trigger_no_longer_reads_as_valid_is_listed_overdue_as_the_sweep_says(
    world: World,
) -> None:
    # The trigger (without `files`) came while shipping was missing; then the pipeline came to demand a listing.
    day = date(2025, 3, 26)
    for name, data in unsized_pieces(day).items():
        if not name.startswith("shipping"):
            deliver(world.gate(), world.upload(name, data))
    pipelines = with_policy(manifest_lists_files=True, complete_within_minutes=30)
    assert (
        deliver(
            world.gate(pipelines=pipelines), world.upload(member_name("shipping", day), member_bytes("shipping"))
        ).status
        == WAITING
    )
    late = world.gate(pipelines=pipelines, clock=later_clock(31))

    [swept] = sweep_pipeline_batches(late)
    row = describe_batch(late, assess_batch(late, late.pipelines["ecommerce"], day))

    assert (swept.status, row.state, row.missing) == (OVERDUE, OVERDUE, ())


def test_overdue_optional_members_alone_are_not_loaded(world: World) -> None:
    pipelines = with_policy(optional_members=("shipping",), on_incomplete="load_available", complete_within_minutes=30)
    gate = world.gate(pipelines=pipelines)
    day = date(2025, 3, 25)
    deliver(gate, world.upload(member_name("shipping", day), member_bytes("shipping")))
    deliver(gate, world.upload(trigger_name(day), unsized_pieces(day)[trigger_name(day)]))

    [outcome] = sweep_pipeline_batches(world.gate(pipelines=pipelines, clock=later_clock(31)))

    assert outcome.status == OVERDUE
    assert seals(world) == []
    refused = batches.reseal(gate, gate.pipelines["ecommerce"], day, partial=True)
    assert refused.status == WAITING
    assert "no required member is archived" in refused.reasons[-1]
    assert batch_runs(world) == []


def test_the_sweep_reads_an_open_day_with_its_trigger_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # The sweep read such a day twice: every member's listing and the trigger's bytes, again, on every pass.
    gate = world.gate()
    day = date(2025, 3, 6)
    pieces = batch_pieces(day)
    for name, data in pieces.items():
        if name != member_name("shipping", day):
            deliver(gate, world.upload(name, data))
    read = batches.assess_batch
    reads: list[date] = []

    def counted(gate: Gate, pipeline: Any, business_date: date, **options: Any) -> batches.Batch:
        reads.append(business_date)
        return read(gate, pipeline, business_date, **options)

    monkeypatch.setattr(batches, "assess_batch", counted)
    [outcome] = sweep_pipeline_batches(gate)

    assert (outcome.status, outcome.missing) == (WAITING, ("shipping",))
    assert reads == [day]


@pytest.mark.parametrize("policy", ["reject", "load_available"])
def test_a_sweep_that_read_the_batch_before_its_last_member_sealed_it_leaves_it_complete(
    world: World, policy: str
) -> None:
    pipelines = with_policy(on_incomplete=policy, complete_within_minutes=30)
    gate = world.gate(pipelines=pipelines)
    day = date(2025, 3, 5)
    pieces = batch_pieces(day)
    last = member_name("shipping", day)
    for name, data in pieces.items():
        if name != last:
            deliver(gate, world.upload(name, data))
    pipeline = pipelines["ecommerce"]
    read_by_sweep = batches.assess_batch(gate, pipeline, day)  # the sweep's read: shipping still missing
    assert read_by_sweep.missing == ("shipping",)
    assert deliver(gate, world.upload(last, pieces[last])).status == SEALED  # the live event, meanwhile

    late_sweep = world.gate(pipelines=pipelines, clock=later_clock(31))
    verdict = batches.evaluate(late_sweep, read_by_sweep, None, sweeping=True)

    assert verdict.status == DUPLICATE, verdict
    assert not verdict.redriven  # the event's own run, which a sweep must not report as its re-drive
    assert verdict.rejected_path is None
    assert verdict.seal is not None
    assert not verdict.seal.document["partial"]
    assert len(seals(world, day)) == 1
    assert len(batch_runs(world)) == 1
    assert world.objects(world.settings.rejected) == []
    assert any(i.path.endswith(trigger_name(day)) for i in world.objects(world.settings.archive))


@pytest.mark.parametrize("policy", ["hold", "rerun"])
def test_a_member_after_the_seal_is_held_or_starts_a_new_revision(world: World, policy: str) -> None:
    gate = world.gate(pipelines=with_policy(late_member=policy))
    day = date(2025, 3, 6)
    sealed = seal_unsized(world, gate, day)
    corrected = a_row_more("orders")
    time.sleep(1.1)  # Azure's Last-Modified counts whole seconds: the correction is the newest version there too

    late_event = world.upload(member_name("orders", day), corrected)
    late = deliver(gate, late_event)

    assert late.status == LATE_MEMBER
    if policy == "hold":
        assert late.revision == 1
        assert late.run_id == sealed.run_id
        assert len(seals(world, day)) == 1
        assert len(batch_runs(world)) == 1
    else:
        assert late.revision == 2
        assert late.run_id != sealed.run_id
        assert len(seals(world, day)) == 2
        assert len(batch_runs(world)) == 2
        first, second = (read_seal(world, path) for path in seals(world, day))
        assert [m["size"] for m in second["members"] if m["dataset"] == "orders"] == [len(corrected)]
        # Its own run, but the day's batch id: the batch job replaces revision 1's rows rather than keep both.
        assert first["idempotency_token"] != second["idempotency_token"]
        assert first["batch_id"] == second["batch_id"] == "ecommerce-20250306"
        assert [run_parameters(run)["batch_id"] for run in batch_runs(world)] == [first["batch_id"]] * 2
    runs = len(batch_runs(world))
    # The late event redelivered, or the same correction sent again, changes nothing more.
    assert deliver(gate, late_event).status in (LATE_MEMBER, DUPLICATE)
    assert deliver(gate, world.upload(member_name("orders", day), corrected)).status == IDENTICAL
    assert len(batch_runs(world)) == runs


@pytest.mark.parametrize("policy", ["hold", "rerun"])
def test_a_corrected_trigger_after_the_seal_is_held_or_sealed_into_a_new_revision(world: World, policy: str) -> None:
    # The first trigger states a wrong row count (the batch job's rows check fails the run); the producer sends a
    # corrected trigger naming the same files. Its statement is new to the seal, as a corrected member would be.
    gate = world.gate(pipelines=with_policy(late_member=policy))
    day = date(2025, 3, 20)
    rows = len(member_bytes("customers").splitlines()) - 1
    stated = json.loads(trigger_bytes(day))
    stated["files"][0]["rows"] = rows + 1
    outcomes = [deliver(gate, world.upload(member_name(d, day), member_bytes(d))) for d in MEMBERS]
    outcomes.append(deliver(gate, world.upload(trigger_name(day), json.dumps(stated).encode())))
    assert outcomes[-1].status == SEALED
    time.sleep(1.1)  # Azure's Last-Modified counts whole seconds: the correction is the newest trigger there too
    stated["files"][0]["rows"] = rows
    corrected = world.upload(trigger_name(day), json.dumps(stated).encode())

    late = deliver(gate, corrected)

    assert late.status == LATE_MEMBER
    assert f"rows {rows}" in late.reasons[0]
    if policy == "hold":
        assert late.revision == 1
        assert len(seals(world, day)) == 1
        # The operator's decision seals it: the next revision, with the corrected statement.
        assert batches.reseal(gate, gate.pipelines["ecommerce"], day).status == SEALED
    assert len(seals(world, day)) == 2
    assert len(batch_runs(world)) == 2
    second = read_seal(world, seals(world, day)[-1])
    assert [m["expected_rows"] for m in second["members"] if m["dataset"] == "customers"] == [rows]
    # Sent again, it changes nothing more; the operator's reseal neither.
    assert deliver(gate, corrected).status == DUPLICATE
    assert batches.reseal(gate, gate.pipelines["ecommerce"], day).status == DUPLICATE
    assert len(batch_runs(world)) == 2


@pytest.mark.parametrize("policy", ["hold", "rerun"])
def test_a_member_re_uploaded_after_the_seal_that_its_trigger_does_not_describe_is_late_not_a_duplicate(
    world: World, policy: str
) -> None:
    gate = world.gate(pipelines=with_policy(late_member=policy))
    day = date(2025, 3, 21)
    assert [deliver(gate, world.upload(n, d)) for n, d in batch_pieces(day).items()][-1].status == SEALED
    time.sleep(1.1)

    late = deliver(gate, world.upload(member_name("orders", day), a_row_more("orders")))

    # Archived, not loaded: the trigger states the first upload's size. Said at WARNING, with what to do.
    assert late.status == LATE_MEMBER
    assert late.revision == 1
    assert f"the trigger states {len(member_bytes('orders'))} bytes" in late.reasons[0]
    assert "upload a trigger that describes it" in late.reasons[0]
    assert len(seals(world, day)) == 1
    assert len(batch_runs(world)) == 1


def test_a_member_its_trigger_does_not_describe_after_a_held_one_says_that_it_is_not_loaded(world: World) -> None:
    # Its outcome named only the version held before it ("held ... `filegate batches --reseal` loads it"), so
    # its own upload read as the one a reseal loads, though the trigger's size rules it out for any revision.
    gate = world.gate(pipelines=with_policy(late_member="hold"))
    day = date(2025, 3, 22)
    assert [deliver(gate, world.upload(n, d)) for n, d in batch_pieces(day).items()][-1].status == SEALED
    header, *rows = member_bytes("orders").splitlines(keepends=True)
    time.sleep(1.1)
    held = deliver(gate, world.upload(member_name("orders", day), b"".join([header, *reversed(rows)])))
    assert held.status == LATE_MEMBER  # the same size as the trigger states: a reseal loads it
    time.sleep(1.1)

    late = deliver(gate, world.upload(member_name("orders", day), a_row_more("orders")))

    assert late.status == LATE_MEMBER
    assert late.archived_path is not None
    assert late.archived_path != held.archived_path
    [note] = [reason for reason in late.reasons if late.archived_path in reason and "trigger states" in reason]
    assert note.endswith("upload a trigger that describes it to load it")
    assert len(seals(world, day)) == 1


@dataclass
class HeldSeal:
    """A real store whose first seal write waits for `release`; `reached` says it is waiting, `written` that
    it wrote. Two deliveries through two of these interleave as two function instances can."""

    inner: Store
    release: threading.Event
    reached: threading.Event = field(default_factory=threading.Event)
    written: threading.Event = field(default_factory=threading.Event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, container: str, path: str, data: bytes, content_type: str, metadata: Mapping[str, str]) -> ObjectInfo:
        holding = "/_sealed." in path and not self.reached.is_set()
        if holding:
            self.reached.set()
            assert self.release.wait(timeout=30), f"not released before writing {path}"
        try:
            return self.inner.put(container, path, data, content_type, metadata)
        finally:
            if holding:
                self.written.set()


def race_to_one_seal(
    world: World, gate: Gate, first: dict[str, Any], second: dict[str, Any]
) -> tuple[Outcome, Outcome]:
    """`first` reads the batch before `second`'s file is archived, `second` reads after; both then write the
    same seal revision, `first` before `second`."""
    written_first = threading.Event()
    later = HeldSeal(world.store, release=written_first)
    earlier = HeldSeal(world.store, release=later.reached, written=written_first)
    with ThreadPoolExecutor(max_workers=2) as pool:
        one = pool.submit(deliver, replace(gate, store=earlier), first)
        assert earlier.reached.wait(timeout=30), "the first delivery never reached its seal"
        two = pool.submit(deliver, replace(gate, store=later), second)
        return one.result(timeout=60), two.result(timeout=60)


def assert_one_run_per_seal(world: World, day: date) -> list[dict[str, Any]]:
    """Each sealed revision ran exactly once, under its own token; the seals, oldest first."""
    documents = [read_seal(world, path) for path in seals(world, day)]
    runs = batch_runs(world)
    assert sorted(run_parameters(run)["source_path"] for run in runs) == sorted(
        world.store.spark_uri(world.settings.archive.container, path) for path in seals(world, day)
    )
    assert len({d["idempotency_token"] for d in documents}) == len(documents)
    return documents


def sealed_sizes(document: Mapping[str, Any]) -> dict[str, int]:
    return {m["dataset"]: m["size"] for m in document["members"]}


def test_two_late_members_racing_for_one_revision_end_in_a_seal_that_holds_both(world: World) -> None:
    gate = world.gate(pipelines=with_policy(late_member="rerun"))
    day = date(2025, 3, 12)
    seal_unsized(world, gate, day)
    customers, orders = a_row_more("customers"), a_row_more("orders")
    customers_event = world.upload(member_name("customers", day), customers)
    orders_event = world.upload(member_name("orders", day), orders)

    first, second = race_to_one_seal(world, gate, customers_event, orders_event)

    assert (first.status, first.revision) == (LATE_MEMBER, 2)
    # The seal the orders delivery lost to lacks its file: it seals the next revision rather than report r2.
    assert (second.status, second.revision) == (LATE_MEMBER, 3), second.reasons
    documents = assert_one_run_per_seal(world, day)
    assert len(documents) == 3
    latest = sealed_sizes(documents[-1])
    assert (latest["customers"], latest["orders"]) == (len(customers), len(orders))
    assert {first.run_id, second.run_id} < {run["run_id"] for run in batch_runs(world)}
    assert first.run_id != second.run_id
    # Nothing runs twice: the same two events again are duplicates.
    assert {deliver(gate, customers_event).status, deliver(gate, orders_event).status} == {DUPLICATE}
    assert len(batch_runs(world)) == 3


@pytest.mark.parametrize("policy", ["hold", "rerun"])
def test_a_re_upload_racing_the_last_member_for_the_first_seal_is_not_taken_for_a_duplicate(
    world: World, policy: str
) -> None:
    gate = world.gate(pipelines=with_policy(late_member=policy))
    day = date(2025, 3, 13)
    pieces = unsized_pieces(day)
    last = pieces.pop(member_name("shipping", day))
    for name, data in pieces.items():
        deliver(gate, world.upload(name, data))
    customers = a_row_more("customers")
    last_event = world.upload(member_name("shipping", day), last)
    reupload_event = world.upload(member_name("customers", day), customers)

    sealed, reupload = race_to_one_seal(world, gate, last_event, reupload_event)

    assert (sealed.status, sealed.revision) == (SEALED, 1)
    first = read_seal(world, seals(world, day)[0])
    assert sealed_sizes(first)["customers"] == len(member_bytes("customers"))
    assert reupload.status == LATE_MEMBER, reupload.reasons
    documents = assert_one_run_per_seal(world, day)
    if policy == "hold":
        assert reupload.revision == 1
        assert reupload.run_id == sealed.run_id
        assert len(documents) == 1
    else:
        assert reupload.revision == 2
        assert len(documents) == 2
        assert sealed_sizes(documents[-1])["customers"] == len(customers)
    assert deliver(gate, last_event).status == DUPLICATE
    assert len(batch_runs(world)) == len(documents)


def test_a_revision_that_returns_to_an_earlier_set_of_files_starts_its_own_run(world: World) -> None:
    gate = world.gate(pipelines=with_policy(late_member="rerun"))
    day = date(2025, 3, 14)
    first = member_bytes("customers")
    second = first + first.splitlines(keepends=True)[1]
    pieces = batch_pieces(day)
    sealed = [deliver(gate, world.upload(name, data)) for name, data in pieces.items()][-1]
    assert sealed.status == SEALED
    deliver(gate, world.upload(member_name("customers", day), second))
    listed = {d: member_bytes(d) for d in MEMBERS}
    # The producer's trigger names the second version, then the first again: revisions 2 and 3.
    to_second = deliver(gate, world.upload(trigger_name(day), trigger_bytes(day, {**listed, "customers": second})))
    time.sleep(1.1)  # Azure's Last-Modified counts whole seconds: the newest trigger must be the newest there too
    back = deliver(gate, world.upload(trigger_name(day), trigger_bytes(day, listed, created_at="2025-03-15T01:00:00Z")))

    assert (to_second.revision, back.revision) == (2, 3)
    documents = assert_one_run_per_seal(world, day)
    assert sealed_sizes(documents[0]) == sealed_sizes(documents[2])
    assert len({sealed.run_id, to_second.run_id, back.run_id}) == 3


@pytest.mark.parametrize("lost", ["inventory", "trigger"])
def test_a_lost_event_is_recovered_by_the_sweep(world: World, lost: str) -> None:
    gate = world.gate()
    day = date(2025, 3, 7)
    pieces = batch_pieces(day)
    for name, data in pieces.items():
        event = world.upload(name, data)
        if not name.startswith(lost):
            deliver(gate, event)  # the lost piece's event never arrives
    assert batch_runs(world) == []

    swept = run_sweep(gate, timedelta(0))

    assert [o.status for o in swept.outcomes] == [SEALED]
    assert len(batch_runs(world)) == 1
    assert world.objects(world.settings.landing) == []


@pytest.mark.parametrize("policy", ["hold", "rerun"])
def test_a_late_member_whose_event_failed_after_archiving_is_sealed_by_the_sweep_under_rerun(
    world: World, policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = world.gate(pipelines=with_policy(late_member=policy))
    day = date(2025, 3, 16)
    seal_unsized(world, gate, day)
    customers = a_row_more("customers")
    event = world.upload(member_name("customers", day), customers)

    def outage(*_: object, **__: object) -> None:
        raise TransientError("the archive's listing timed out")

    # The corrected member is archived and leaves landing; reading its batch fails, and its redeliveries
    # run out: no event will bring it back.
    with monkeypatch.context() as patch:
        patch.setattr(batches, "assess_batch", outage)
        with pytest.raises(TransientError):
            deliver(gate, event)
    assert world.objects(world.settings.landing) == []

    outcomes = list(sweep_pipeline_batches(gate))

    if policy == "hold":
        assert outcomes == [], "held: the sealed batch stands, and a done batch costs the sweep one listing"
        assert len(seals(world, day)) == 1
        return
    assert [(o.status, o.revision) for o in outcomes] == [(LATE_MEMBER, 2)]
    documents = assert_one_run_per_seal(world, day)
    assert sealed_sizes(documents[-1])["customers"] == len(customers)
    assert list(sweep_pipeline_batches(gate)) == [], "once sealed and run, the batch is done"


def test_a_sealed_and_run_day_costs_the_sweep_nothing_beyond_the_pipeline_folder_s_listing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = world.gate()
    days = [date(2025, 3, 18), date(2025, 3, 19)]
    for day in days:
        seal_unsized(world, gate, day)
    assert len(batch_runs(world)) == 2

    def read(*_: object, **__: object) -> None:
        raise AssertionError("a done day's trigger and members were read")

    # Every scheduled pass looks at every day ever sealed: a done one must not cost it a read or a listing
    # of its own, or the pass grows with the pipeline's history.
    with monkeypatch.context() as patch:
        patch.setattr(batches, "assess_batch", read)
        assert list(sweep_pipeline_batches(gate)) == []
    assert len(batch_runs(world)) == 2


def test_under_rerun_a_late_member_held_by_a_blocked_one_is_not_warned_again_by_every_sweep(world: World) -> None:
    gate = world.gate(pipelines=with_policy(late_member="rerun"))
    day = date(2025, 3, 17)
    assert [deliver(gate, world.upload(name, data)) for name, data in batch_pieces(day).items()][-1].status == SEALED
    # The producer sends customers and orders again, each a row longer, and a trigger with their sizes.
    longer = {d: a_row_more(d) for d in ("customers", "orders")}
    customers, orders = longer["customers"], longer["orders"]
    sizes = {**{d: member_bytes(d) for d in MEMBERS}, **longer}
    deliver(gate, world.upload(trigger_name(day), trigger_bytes(day, sizes)))
    bad = (SAMPLES / "bad" / member_name("customers", date(2025, 1, 16))).read_bytes()
    assert deliver(gate, world.upload(member_name("customers", day), bad)).status == BLOCKED

    held = deliver(gate, world.upload(member_name("orders", day), orders))

    assert held.status == LATE_MEMBER
    assert any("held, the sealed batch is unchanged" in reason for reason in held.reasons)
    # It said "(late_member = hold)" under rerun, and a reseal refuses while a member is blocked.
    assert held.reasons[-1].endswith("while the rejected customers blocks it: a corrected upload comes first")
    assert list(sweep_pipeline_batches(gate)) == [], "the corrected customers' event decides, not each sweep"
    corrected = deliver(gate, world.upload(member_name("customers", day), customers))
    assert (corrected.status, corrected.revision) == (LATE_MEMBER, 2)
    assert len(assert_one_run_per_seal(world, day)) == 2


def test_a_sealed_batch_without_its_run_note_is_re_driven_with_the_same_token(world: World) -> None:
    gate = world.gate()
    day = date(2025, 3, 8)
    outcomes = [deliver(gate, world.upload(name, data)) for name, data in batch_pieces(day).items()]
    note = [i for i in world.objects(world.settings.archive) if i.path.endswith("_run.r1.json")]
    assert len(note) == 1
    world.store.delete(note[0].container, note[0].path, note[0].version)

    [outcome] = sweep_pipeline_batches(gate)

    assert outcome.status == SEALED
    assert outcome.run_id == outcomes[-1].run_id
    assert len(batch_runs(world)) == 1
    assert list(sweep_pipeline_batches(gate)) == []


def test_malformed_triggers_are_rejected_with_every_reason_and_the_members_stay(world: World) -> None:
    gate = world.gate()
    day = date(2025, 3, 9)
    for dataset in MEMBERS:
        deliver(gate, world.upload(member_name(dataset, day), member_bytes(dataset)))
    content = json.loads(trigger_bytes(day))
    content["batch_date"] = "2025-03-10"
    content["files"].append({"dataset": "returns", "file": "returns_2025_03_09.csv"})
    content["files"].append(dict(content["files"][0]))
    content["files"][1]["rows"] = -3

    outcome = deliver(gate, world.upload(trigger_name(day), json.dumps(content).encode()))

    assert outcome.status == REJECTED
    assert outcome.pipeline == "ecommerce"
    reasons = " | ".join(outcome.reasons)
    for expected in ("differs from the date in the file name", "'returns' is not a member", "listed twice", "rows"):
        assert expected in reasons
    assert len([i for i in world.objects(world.settings.archive) if i.path.endswith(".csv")]) == 5
    not_json = deliver(gate, world.upload(f"trigger_{day:%Y_%m}_10.json", b"{not json"))
    assert not_json.status == REJECTED
    assert "not JSON" in not_json.reasons[0]
    corrected = deliver(gate, world.upload(trigger_name(day), trigger_bytes(day)))
    assert corrected.status == SEALED


def test_a_standalone_dataset_keeps_one_run_per_file(world: World) -> None:
    gate = world.gate()

    outcome = deliver(gate, world.upload("order_tracking_2024_03_05.csv", csv_bytes([tracking_row(1)])))

    assert outcome.status == ARCHIVED
    assert outcome.pipeline is None
    assert [run["job_id"] for run in world.runs()] == [1]


def test_assessing_a_sealed_batch_finds_every_member_its_seal_and_its_run_note(world: World) -> None:
    gate = world.gate()
    day = date(2025, 3, 11)
    for name, data in batch_pieces(day).items():
        deliver(gate, world.upload(name, data))

    batch = assess_batch(gate, PIPELINE, day)

    assert [m.state for m in batch.members] == ["present"] * 5
    assert batch.revision == 1
    assert 1 in batch.runs


def sealed_without_a_batch_job(world: World, day: date) -> Gate:
    """Every piece of the day delivered through a gate with no batch job: the last seals, and its run-now fails."""
    gate = replace(world.gate(), batch_jobs=None)
    pieces = list(batch_pieces(day).items())
    for name, data in pieces[:-1]:
        deliver(gate, world.upload(name, data))
    with pytest.raises(RunNotStarted, match=r"_sealed\.r1\.json, but its run did not start"):
        deliver(gate, world.upload(*pieces[-1]))
    return gate


def test_a_sweep_pass_asks_run_now_once_for_a_seal_its_landing_pass_just_failed_to_run(world: World) -> None:
    # The batch pass re-drove the seal the landing pass had just sealed and failed to run: two run-now calls
    # (each spending the SDK's retries in an outage) and the one batch reported pending twice.
    gate = replace(world.gate(), batch_jobs=None)
    for name, data in batch_pieces(date(2025, 3, 11)).items():
        world.upload(name, data)

    outcomes = list(sweep_all(gate, timedelta(0)))

    pending = [outcome for outcome in outcomes if outcome.status == RUN_PENDING]
    assert len(pending) == 1, outcomes
    # The trigger's outcome says which batch, as the batch pass's does: an alert groups `run pending` by day.
    assert (pending[0].pipeline, pending[0].business_date) == ("ecommerce", "2025-03-11")
    assert pending[0].archived_path is not None
    assert pending[0].archived_path.endswith("_sealed.r1.json")
    # The next pass, the landing empty, re-drives it from the batch pass.
    [again] = [outcome for outcome in sweep_all(gate, timedelta(0)) if outcome.status == RUN_PENDING]
    assert again.archived_path == pending[0].archived_path


def test_a_redelivery_that_starts_the_run_its_first_delivery_could_not_says_so(world: World) -> None:
    # A dead letter re-driven (`filegate handle`, `filegate deadletters --redrive`) said only "batch already
    # sealed": the operator could not tell that the run they were after had started now.
    pieces = list(batch_pieces(date(2025, 3, 12)).items())
    gate = replace(world.gate(), batch_jobs=None)
    for name, data in pieces[:-1]:
        deliver(gate, world.upload(name, data))
    last = world.upload(*pieces[-1])
    with pytest.raises(RunNotStarted):
        deliver(gate, last)

    again = deliver(world.gate(), last)
    twice = deliver(world.gate(), last)

    [run] = batch_runs(world)
    assert (again.status, again.run_id) == (DUPLICATE, run["run_id"])
    assert "run-now re-driven with the seal's token" in again.reasons[-1]
    assert not any("re-driven" in reason for reason in twice.reasons)


def test_a_sealed_batch_whose_trigger_left_the_archive_still_gets_its_run(world: World) -> None:
    # The race the overdue sweep leaves (on_incomplete = reject): the last member seals the batch while the
    # sweep moves the trigger to rejected, and the sealing delivery's run-now fails. The seal still runs.
    day = date(2025, 3, 10)
    sealed_without_a_batch_job(world, day)
    archive = world.settings.archive
    [trigger] = [i for i in world.objects(archive) if i.path.endswith(trigger_name(day))]
    world.store.delete(archive.container, trigger.path, trigger.version)

    [done] = sweep_pipeline_batches(world.gate())

    assert done.status == SEALED, done
    assert len(batch_runs(world)) == 1
    assert done.run_id == batch_runs(world)[0]["run_id"]


def test_without_a_batch_job_a_complete_batch_is_sealed_and_the_sweep_reports_it_pending(world: World) -> None:
    day = date(2025, 3, 9)
    gate = sealed_without_a_batch_job(world, day)
    [outcome] = sweep_pipeline_batches(gate)

    assert outcome.status == RUN_PENDING
    # Which day, as every other outcome of the batch pass says: an alert on `run pending` groups by it.
    assert (outcome.pipeline, outcome.business_date) == ("ecommerce", day.isoformat())
    assert outcome.archived_path is not None
    assert outcome.archived_path.endswith("_sealed.r1.json")
    assert batch_runs(world) == []
    # Once the job is there, the sweep starts the one run with the seal's token.
    [done] = sweep_pipeline_batches(world.gate())
    assert done.status == SEALED
    assert len(batch_runs(world)) == 1
