"""The whole core path on real Azurite and the local Jobs API, through the real databricks-sdk."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.storage.blob import BlobBlock, BlobServiceClient, ContentSettings

from filegate import ingest
from filegate.azure_storage import AzureBlobStore
from filegate.contracts import BUILTIN_DATASETS, load_contracts
from filegate.errors import RunNotStarted
from filegate.ingest import Gate, handle_payload
from filegate.jobs import DatabricksJobs
from filegate.settings import Settings
from local_world.emulators import Azurite
from local_world.inputs import as_cloudevent, blob_created, csv_bytes, tracking_row
from local_world.jobs_api import Fault, LocalJobsServer
from local_world.jobs_api.recording import workspace_client
from tests.faults.world import World

NAME = "order_tracking_2024_03_05.csv"


@pytest.fixture
def gate(azure_store: AzureBlobStore, azure_settings: Settings, jobs_api: LocalJobsServer) -> Gate:
    jobs = DatabricksJobs(azure_settings, workspace_client(jobs_api))
    return Gate(azure_settings, azure_store, jobs, load_contracts())


def upload(gate: Gate, azurite: Azurite, data: bytes, name: str = NAME) -> dict[str, object]:
    """Upload (or overwrite) a blob in the landing location as a user would; return its event."""
    landing = gate.settings.landing
    path = landing.path(name)
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    result = service.get_blob_client(landing.container, path).upload_blob(data, overwrite=True)
    return blob_created(landing.container, path, len(data), str(result["etag"]).strip('"'), port=azurite.port)


def upload_and_label(gate: Gate, azurite: Azurite, data: bytes) -> dict[str, object]:
    """Upload a blob, then label it as some producers do: a new ETag on Azure, and no BlobCreated for it."""
    event = upload(gate, azurite, data)
    landing = gate.settings.landing
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.get_blob_client(landing.container, landing.path(NAME)).set_blob_metadata({"producer": "erp"})
    return event


def names(gate: Gate, container: str) -> list[str]:
    return sorted(info.path for info in gate.store.list(container, ""))


def test_valid_file_is_archived_and_one_run_is_started(gate: Gate, azurite: Azurite, jobs_api: LocalJobsServer) -> None:
    data = csv_bytes()
    event = upload(gate, azurite, data)

    [outcome] = handle_payload(gate, event)

    assert outcome.status == "archived"
    assert outcome.archived_path == f"{gate.settings.archive.container}/order_tracking/2024/03/05/{NAME}"
    assert names(gate, gate.settings.landing.container) == []
    archived = gate.store.read_prefix(gate.settings.archive.container, "order_tracking/2024/03/05/" + NAME, 10**6, "")
    assert archived == data
    [request] = jobs_api.requests("run-now")
    assert request.body == {
        "job_id": 1,
        "job_parameters": {
            "source_path": f"abfss://{gate.settings.archive.container}@devstoreaccount1.dfs.core.windows.net/"
            f"order_tracking/2024/03/05/{NAME}",
            "dataset": "order_tracking",
            "batch_id": outcome.batch_id,
        },
        "idempotency_token": outcome.idempotency_token,
    }
    assert outcome.run_id == jobs_api.runs()[0]["run_id"]
    assert outcome.run_page_url == f"{jobs_api.url}/runs/{outcome.run_id}"
    assert len(outcome.idempotency_token or "") <= 64


def test_cloudevents_schema_takes_the_same_path(gate: Gate, azurite: Azurite, jobs_api: LocalJobsServer) -> None:
    [outcome] = handle_payload(gate, [as_cloudevent(upload(gate, azurite, csv_bytes()))])

    assert outcome.status == "archived"
    assert len(jobs_api.runs()) == 1


def test_invalid_file_is_rejected_with_a_report_and_no_run(
    gate: Gate,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
) -> None:
    data = csv_bytes(header=["tracking_num", "status"])

    [outcome] = handle_payload(gate, upload(gate, azurite, data))

    rejected = gate.settings.rejected.container
    assert outcome.status == "rejected"
    assert outcome.rejected_path == f"{rejected}/order_tracking/{NAME}"
    assert names(gate, rejected) == [f"order_tracking/{NAME}", f"order_tracking/{NAME}.report.json"]
    assert gate.store.read_prefix(rejected, f"order_tracking/{NAME}", 10**6, "") == data
    report = json.loads(gate.store.read_prefix(rejected, f"order_tracking/{NAME}.report.json", 10**6, ""))
    assert report["reasons"] == list(outcome.reasons)
    assert "header is missing columns" in report["reasons"][0]
    assert report["event_id"] == outcome.event_id
    assert report["size_bytes"] == len(data)
    assert names(gate, gate.settings.landing.container) == []
    assert jobs_api.requests("run-now") == []


def test_a_name_decomposed_as_macos_writes_it_matches_an_accented_pattern(
    tmp_path: Path, azure_store: AzureBlobStore, azure_settings: Settings, jobs_api: LocalJobsServer, azurite: Azurite
) -> None:
    # `é` reaches storage as `e` and a combining accent when a Mac spelled it so: the name matched no
    # contract and every such file was rejected as unknown.
    text = (BUILTIN_DATASETS / "order_tracking.toml").read_text(encoding="utf-8")
    (tmp_path / "expeditions.toml").write_text(
        text.replace('name = "order_tracking"', 'name = "expeditions"').replace(
            "order_tracking_{yyyy}", "expéditions_{yyyy}"
        ),
        encoding="utf-8",
    )
    jobs = DatabricksJobs(azure_settings, workspace_client(jobs_api))
    gate = Gate(azure_settings, azure_store, jobs, load_contracts(tmp_path))
    good, bad = (unicodedata.normalize("NFD", f"Expéditions_2024_03_0{day}.csv") for day in (5, 6))

    [archived] = handle_payload(gate, upload(gate, azurite, csv_bytes(), good))
    [rejected] = handle_payload(gate, upload(gate, azurite, b"tracking_num\n1Z1\n", bad))

    assert (archived.status, archived.dataset) == ("archived", "expeditions")
    assert archived.archived_path == f"{azure_settings.archive.container}/expeditions/2024/03/05/{good}"
    # Rejected under the contract's spelling, where a batch looks for its member (`archive.rejected_name`).
    assert rejected.rejected_path == f"{azure_settings.rejected.container}/expeditions/expéditions_2024_03_06.csv"
    assert len(jobs_api.runs()) == 1


def test_duplicate_deliveries_start_one_run(gate: Gate, azurite: Azurite, jobs_api: LocalJobsServer) -> None:
    event = upload(gate, azurite, csv_bytes())

    outcomes = [handle_payload(gate, event)[0] for _ in range(3)]

    assert [o.status for o in outcomes] == ["archived", "duplicate", "duplicate"]
    assert len({o.run_id for o in outcomes}) == 1
    assert len(jobs_api.runs()) == 1
    assert names(gate, gate.settings.archive.container) == [f"order_tracking/2024/03/05/{NAME}"]


def test_concurrent_deliveries_converge(gate: Gate, azurite: Azurite, jobs_api: LocalJobsServer) -> None:
    event = upload(gate, azurite, csv_bytes())

    # Every delivery's answer (an error in any of them is raised here): exactly one made the copy.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: handle_payload(gate, event)[0].status, range(4)))

    assert len(results) == 4
    assert results.count("archived") == 1
    assert set(results) <= {"archived", "duplicate", "redriven"}
    assert len(jobs_api.runs()) == 1
    assert len(names(gate, gate.settings.archive.container)) == 1


def test_same_name_with_new_content_is_archived_beside_the_first(
    gate: Gate,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
) -> None:
    first = upload(gate, azurite, csv_bytes([tracking_row(1)]))
    handle_payload(gate, first)
    second = upload(gate, azurite, csv_bytes([tracking_row(2)]))

    [outcome] = handle_payload(gate, second)

    archived = names(gate, gate.settings.archive.container)
    assert outcome.status == "archived"
    assert len(archived) == 2
    assert outcome.archived_path is not None
    assert outcome.archived_path.endswith(".csv")
    assert "__v" in outcome.archived_path
    assert len(jobs_api.runs()) == 2


def test_a_stale_event_after_an_overwrite_handles_the_new_file_and_its_own_event_finds_the_same_run(
    gate: Gate,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
) -> None:
    new_data = csv_bytes([tracking_row(2)])
    old = upload(gate, azurite, csv_bytes([tracking_row(1)]))
    new = upload(gate, azurite, new_data)

    [stale] = handle_payload(gate, old)
    [fresh] = handle_payload(gate, new)

    assert stale.status == "archived"
    assert "but the blob is now version" in stale.reasons[0]
    assert fresh.status == "duplicate"  # as a redelivery of the event that was handled
    assert fresh.run_id == stale.run_id
    assert len(jobs_api.runs()) == 1
    # Only the file: the mark the first delivery left for the scheduled sweep went once the run was recorded.
    [archived] = names(gate, gate.settings.archive.container)
    assert gate.store.read_prefix(gate.settings.archive.container, archived, 10**6, "") == new_data
    assert names(gate, gate.settings.landing.container) == []


def test_a_metadata_write_after_the_upload_which_raises_no_event_does_not_leave_the_file_in_landing(
    gate: Gate,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
) -> None:
    data = csv_bytes([tracking_row(1)])
    event = upload_and_label(gate, azurite, data)
    landing = gate.settings.landing

    [outcome] = handle_payload(gate, event)

    assert outcome.status == "archived"
    assert names(gate, landing.container) == []
    assert len(jobs_api.runs()) == 1
    assert (
        gate.store.read_prefix(
            gate.settings.archive.container, names(gate, gate.settings.archive.container)[0], 10**6, ""
        )
        == data
    )


def test_out_of_order_redelivery_after_the_file_moved_still_finds_its_run(
    gate: Gate,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
) -> None:
    first = upload(gate, azurite, csv_bytes([tracking_row(1)]))
    [archived] = handle_payload(gate, first)
    later = upload(gate, azurite, csv_bytes([tracking_row(2)]))
    handle_payload(gate, later)

    [again] = handle_payload(gate, first)

    assert again.status == "duplicate"
    assert again.run_id == archived.run_id
    assert len(jobs_api.runs()) == 2


@pytest.mark.parametrize("where", ["archive", "rejected"])
def test_events_for_our_own_writes_are_ignored(
    gate: Gate,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
    where: str,
) -> None:
    container = getattr(gate.settings, where).container
    event = blob_created(container, f"order_tracking/{NAME}", 100, "0x1", port=azurite.port)

    [outcome] = handle_payload(gate, event)

    assert outcome.status == "ignored"
    assert f"own {where} write" in outcome.reasons[0]
    assert jobs_api.requests() == [] or jobs_api.requests("run-now") == []


def test_events_outside_the_landing_prefix_and_other_accounts_are_ignored(gate: Gate, azurite: Azurite) -> None:
    landing = gate.settings.landing.container
    elsewhere = blob_created(landing, f"other/{NAME}", 100, "0x1", port=azurite.port)
    other_account = blob_created(landing, f"incoming/{NAME}", 100, "0x1", account="someoneelse")

    outcomes = handle_payload(gate, [elsewhere, other_account])

    assert [o.status for o in outcomes] == ["ignored", "ignored"]
    assert "outside the landing location" in outcomes[0].reasons[0]
    assert "someoneelse" in outcomes[1].reasons[0]


def test_a_malformed_event_in_a_batch_does_not_stop_the_others(gate: Gate, azurite: Azurite) -> None:
    good = upload(gate, azurite, csv_bytes())

    outcomes = handle_payload(gate, [{"id": "x", "eventType": "Microsoft.Storage.BlobCreated"}, good])

    assert [o.status for o in outcomes] == ["ignored", "archived"]
    assert outcomes[0].reasons[0].startswith("malformed event:")


def test_every_event_is_logged_as_one_json_line_with_a_severity(
    gate: Gate, azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    good = upload(gate, azurite, csv_bytes())
    bad = upload(gate, azurite, b"tracking_num;order_id\n1;2\n", "order_tracking_2024_03_06.csv")
    caplog.set_level("INFO", logger="filegate")

    outcomes = handle_payload(gate, [good, bad, {"id": "x", "eventType": "Microsoft.Storage.BlobCreated"}])

    records = [record for record in caplog.records if record.name == "filegate.outcome"]
    lines = [json.loads(record.getMessage()) for record in records]
    assert [line["severity"] for line in lines] == ["INFO", "WARNING", "WARNING"]
    assert [record.levelname for record in records] == ["INFO", "WARNING", "WARNING"]
    assert [{k: v for k, v in line.items() if k != "severity"} for line in lines] == [o.to_dict() for o in outcomes]
    assert lines[0]["run_id"] == outcomes[0].run_id
    assert lines[0]["run_page_url"]


def google_local_development_event(bucket: str, name: str) -> dict[str, Any]:
    """The finalize event of Google's Cloud Functions local-development guide: no generation, size a string."""
    return {
        "id": "123451234512345",
        "specversion": "1.0",
        "time": "2020-01-02T12:34:56.789Z",
        "type": "google.cloud.storage.object.v1.finalized",
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "subject": f"objects/{name}",
        "data": {
            "bucket": bucket,
            "contentType": "text/plain",
            "kind": "storage#object",
            "md5Hash": "...",
            "metageneration": "1",
            "name": name,
            "size": "352",
            "storageClass": "MULTI_REGIONAL",
            "timeCreated": "2020-04-23T07:38:57.230Z",
            "timeStorageClassUpdated": "2020-04-23T07:38:57.230Z",
            "updated": "2020-04-23T07:38:57.230Z",
        },
    }


@pytest.mark.parametrize("world", ["gcs"], indirect=True)
def test_googles_documented_local_event_without_a_generation_reads_it_from_the_store(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    data = csv_bytes([tracking_row(i) for i in range(4)])
    uploaded = world.upload("order_tracking_2024_03_05.csv", data)
    landing = world.settings.landing
    event = google_local_development_event(landing.container, landing.path("order_tracking_2024_03_05.csv"))

    with caplog.at_level("INFO", logger="filegate"):
        [outcome] = handle_payload(world.gate(), event)

    assert outcome.status == "archived"
    assert "names no generation" in caplog.text
    # The token is the one the real event (with its generation) would have derived.
    [real] = handle_payload(world.gate(), uploaded)
    assert real.status == "duplicate"
    assert real.idempotency_token == outcome.idempotency_token
    assert len(world.runs()) == 1


@pytest.mark.parametrize("world", ["gcs"], indirect=True)
@pytest.mark.parametrize(
    "part",
    [
        "gcloud/tmp/parallel_composite_uploads/see_gcloud_storage_cp_help_for_details/5e7b0c_9f86d0_3",
        "incoming/gsutil/tmp/parallel_composite_uploads/for_details_see/gsutil_help_cp/5e7b0c_1",
    ],
)
def test_a_part_of_a_parallel_composite_upload_is_left_for_its_tool(world: World, part: str) -> None:
    # `gcloud storage cp` of a file of 150 MiB or more: rejecting a part (and deleting it) fails the upload.
    event = world.upload(part, csv_bytes([tracking_row(1)]))

    [outcome] = handle_payload(world.gate(), event)

    assert outcome.status == "ignored"
    assert "parallel composite upload" in outcome.reasons[0]
    assert [info.path for info in world.objects(world.settings.landing)] == [world.settings.landing.path(part)]
    assert world.objects(world.settings.rejected) == []
    assert world.runs() == []


def test_a_byte_identical_re_upload_is_reported_not_run_again(world: World) -> None:
    data = csv_bytes([tracking_row(i) for i in range(4)])
    [first] = handle_payload(world.gate(), world.upload(NAME, data))
    event = world.upload(NAME, data)

    [again] = handle_payload(world.gate(), event)
    [redelivered] = handle_payload(world.gate(), event)

    assert first.status == "archived"
    assert again.status == "identical"
    assert again.archived_path == first.archived_path
    assert again.run_id == first.run_id
    assert "byte-identical" in again.reasons[0]
    assert world.objects(world.settings.landing) == []
    assert len(world.objects(world.settings.archive)) == 1
    assert len(world.runs()) == 1
    # Its redelivery finds the blob gone, deleted by Filegate itself, not by "someone else".
    assert redelivered.status == "ignored"
    assert f"as byte-identical to {first.archived_path} (run {first.run_id})" in redelivered.reasons[0]


def test_a_rejected_file_sent_again_byte_for_byte_is_kept_once_with_its_one_report(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # The same bad bytes again (a producer's retry, a backfill run twice) were rejected a second time under a
    # `__v` name with a second report: every copy listed by `filegate rejected`, each saying the same.
    bad = b"tracking_num;order_id\n1;2\n"
    [first] = handle_payload(world.gate(), world.upload(NAME, bad))
    kept = world.objects(world.settings.rejected)
    event = world.upload(NAME, bad)

    caplog.clear()
    with caplog.at_level("INFO", logger="filegate"):
        [again] = handle_payload(world.gate(), event)
    [record] = [record for record in caplog.records if record.name == "filegate.outcome"]
    [redelivered] = handle_payload(world.gate(), event)

    assert (first.status, again.status) == ("rejected", "identical")
    assert again.rejected_path == first.rejected_path
    assert again.reasons == (
        f"byte-identical to {first.rejected_path}, rejected already for these reasons (report: "
        f"{first.rejected_path}.report.json); kept once",
        *first.reasons,
    )
    assert world.objects(world.settings.rejected) == kept
    assert world.objects(world.settings.landing) == []
    # A WARNING, as the rejection was: it was INFO, and whoever meant to send a corrected file had no alert
    # that the same bad bytes came again and left landing, not loaded.
    assert (record.levelname, json.loads(record.getMessage())["status"]) == ("WARNING", "identical")
    # Its redelivery finds the blob gone, deleted by Filegate itself, not by "someone else".
    assert redelivered.status == "ignored"
    assert f"as byte-identical to {first.rejected_path}, rejected already" in redelivered.reasons[0]
    # Judged otherwise now (a limit lowered since), the same bytes are a new decision, with a report of its own.
    stricter = replace(world.gate(), settings=replace(world.settings, max_file_bytes=len(bad) - 1))
    [judged_again] = handle_payload(stricter, world.upload(NAME, bad))
    assert judged_again.status == "rejected"
    assert judged_again.reasons != first.reasons
    assert judged_again.rejected_path != first.rejected_path
    assert len(world.objects(world.settings.rejected)) == len(kept) + 2
    # Over the size limit, the bytes are compared only where the store's MD5s are its own (GCS): on Azure the
    # function would read both copies whole, and a file rejected as too large may be 50 GiB.
    [too_large_again] = handle_payload(stricter, world.upload(NAME, bad))
    assert too_large_again.status == ("identical" if world.gate().store.computes_md5 else "rejected")


@pytest.mark.parametrize("newer_status", ["archived", "rejected"])
def test_an_event_whose_upload_a_newer_one_replaced_before_it_was_read_says_so(world: World, newer_status: str) -> None:
    # Two uploads of one name in quick succession, their events delivered newest first (delivery is unordered):
    # the first version is gone from landing before any delivery read it, and was never archived. The log said
    # it had most likely been dropped as byte-identical to the archived file (or, for another size or a newer
    # upload rejected, deleted by someone else): an operator would take its rows for loaded.
    status = "LOST_IN_SPACE" if newer_status == "rejected" else "IN_TRANSIT"
    older = world.upload(NAME, csv_bytes([tracking_row(1, carrier="UPS")]))
    newer = world.upload(NAME, csv_bytes([tracking_row(1, carrier="DHL", status=status)]))

    [handled] = handle_payload(world.gate(), newer)
    [late] = handle_payload(world.gate(), older)

    assert handled.status == newer_status
    assert late.status == "ignored"
    assert "replaced it in landing before it was read" in late.reasons[0]
    assert (handled.archived_path or handled.rejected_path or "?") in late.reasons[0]
    if world.kind == "gcs":  # generations are ordered: GCS says which upload came first, Azure's ETags do not
        assert "byte-identical" not in late.reasons[0]
    else:  # both readings, the one by which this version's rows were never loaded first
        assert "byte-identical" not in late.reasons[0].split("; or ")[0]
    assert len(world.runs()) == (1 if newer_status == "archived" else 0)


def test_a_byte_identical_re_upload_of_a_file_whose_run_never_started_starts_it(world: World) -> None:
    # The first delivery archived the file, then run-now failed (and its retries ran out). The producer sends
    # the same bytes again: the re-upload goes as identical, and the archived copy's run starts now, with
    # its own token. Before, the re-upload went and the copy waited for the next sweep.
    data = csv_bytes([tracking_row(i) for i in range(4)])
    world.jobs_api.inject(Fault("run-now", status=403, error_code="PERMISSION_DENIED"))
    with pytest.raises(RunNotStarted):
        handle_payload(world.gate(), world.upload(NAME, data))
    assert world.runs() == []

    [again] = handle_payload(world.gate(), world.upload(NAME, data))

    [run] = world.runs()
    assert (again.status, again.run_id) == ("identical", run["run_id"])
    assert f"its run {run['run_id']} started now" in again.reasons[0]
    assert world.objects(world.settings.landing) == []
    [archived] = [info for info in world.objects(world.settings.archive) if info.path.endswith(".csv")]
    assert archived.metadata["filegate_run_id"] == str(run["run_id"])
    # Its pending mark went with the run, so the sweep has nothing left to start.
    assert [info.path for info in world.objects(world.settings.archive)] == [archived.path]


def test_a_file_sent_again_to_take_back_a_different_one_is_archived_and_run_again(world: World) -> None:
    # A, then B under the same name, then A again: A is the file now. Only a copy of the newest is identical.
    first = csv_bytes([tracking_row(1)])
    [archived] = handle_payload(world.gate(), world.upload(NAME, first))
    time.sleep(1.1)  # Azure's Last-Modified has one-second grain: each version its own second
    handle_payload(world.gate(), world.upload(NAME, csv_bytes([tracking_row(2)])))
    time.sleep(1.1)

    [taken_back] = handle_payload(world.gate(), world.upload(NAME, first))
    [again] = handle_payload(world.gate(), world.upload(NAME, first))

    assert archived.status == "archived"
    assert taken_back.status == "archived"
    assert taken_back.archived_path != archived.archived_path
    assert again.status == "identical"
    assert again.archived_path == taken_back.archived_path
    assert len(world.objects(world.settings.archive)) == 3
    assert len(world.runs()) == 3


@pytest.mark.parametrize("chunk", [ingest.COMPARE_CHUNK, 64], ids=["one-chunk", "many-chunks"])
def test_a_re_upload_claiming_the_archived_md5_is_compared_byte_for_byte_before_it_is_deleted(
    gate: Gate, azurite: Azurite, jobs_api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # Azure keeps the Content-MD5 a client sets when it commits blocks, unchecked: a client that carries the
    # blob's old properties over (content settings kept, a common way to keep the content type) re-sends a
    # corrected file of the same size with the first one's MD5. Its bytes must not be taken for the first's.
    monkeypatch.setattr(ingest, "COMPARE_CHUNK", chunk)
    rows = [tracking_row(i) for i in range(8)]
    first = csv_bytes(rows)
    corrected = csv_bytes([*rows[:-1], {**rows[-1], "carrier": "DHL"}])
    assert len(corrected) == len(first)
    assert corrected[: len(first) - 100] == first[: len(first) - 100]  # the difference is far past the first chunk
    [archived] = handle_payload(gate, upload(gate, azurite, first))
    landing = gate.settings.landing
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        landing.container, landing.path(NAME)
    )
    kept = ContentSettings(content_type="text/csv", content_md5=bytearray(hashlib.md5(first).digest()))
    blob.stage_block("YmxvY2sx", corrected)
    committed = blob.commit_block_list([BlobBlock("YmxvY2sx")], content_settings=kept)
    etag = str(committed["etag"]).strip('"')
    event = blob_created(
        landing.container, landing.path(NAME), len(corrected), etag, api="PutBlockList", port=azurite.port
    )
    stored = gate.store.stat(landing.container, landing.path(NAME))
    assert stored is not None
    assert base64.b64decode(stored.content_md5) == hashlib.md5(first).digest()  # the claim: the first file's MD5

    [again] = handle_payload(gate, event)

    assert archived.status == "archived"
    assert again.status == "archived"
    assert again.archived_path != archived.archived_path
    container, _, path = (again.archived_path or "").partition("/")
    assert gate.store.read_prefix(container, path, len(corrected), "") == corrected
    assert len(jobs_api.runs()) == 2


def test_the_empty_blob_a_streamed_upload_begins_with_is_left_for_its_data(
    gate: Gate, azurite: Azurite, jobs_api: LocalJobsServer
) -> None:
    # .NET's BlockBlobClient.OpenWrite(overwrite: true) first puts an empty blob (a BlobCreated, PutBlob, 0 bytes),
    # then stages the data and commits it on the condition that the blob is still that empty one. The empty blob
    # was rejected and deleted from landing within a second: the producer's commit failed, every time it tried.
    landing = gate.settings.landing
    path = landing.path(NAME)
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(landing.container, path)
    empty = str(blob.upload_blob(b"", overwrite=True)["etag"]).strip('"')
    data = csv_bytes()
    blob.stage_block("YmxvY2sx", data)

    [opened] = handle_payload(gate, blob_created(landing.container, path, 0, empty, port=azurite.port))
    committed = blob.commit_block_list(
        [BlobBlock("YmxvY2sx")], etag=f'"{empty}"', match_condition=MatchConditions.IfNotModified
    )
    etag = str(committed["etag"]).strip('"')
    [closed] = handle_payload(
        gate, blob_created(landing.container, path, len(data), etag, api="PutBlockList", port=azurite.port)
    )

    assert opened.status == "ignored"
    assert "sweep" in opened.reasons[0]
    assert names(gate, gate.settings.rejected.container) == []
    assert closed.status == "archived"
    assert len(jobs_api.runs()) == 1


def test_a_byte_comparison_is_not_upset_by_the_archived_copys_metadata_changing_meanwhile(
    gate: Gate, azurite: Azurite, jobs_api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first upload's delivery writes its run id on the archived copy (on Azure a new ETag) while the
    # re-upload's delivery compares the two: the copy's bytes are what count, not its version.
    data = csv_bytes([tracking_row(i) for i in range(5)])
    [first] = handle_payload(gate, upload(gate, azurite, data))
    event = upload(gate, azurite, data)
    archive = gate.settings.archive.container
    read_range = gate.store.read_range
    marked: list[str] = []

    def marked_meanwhile(container: str, path: str, offset: int, length: int, version: str) -> bytes:
        if container == archive and not marked:
            service = BlobServiceClient.from_connection_string(azurite.connection_string)
            service.get_blob_client(container, path).set_blob_metadata({"filegate_run_id": "1"})
            marked.append(path)
        return read_range(container, path, offset, length, version)

    monkeypatch.setattr(gate.store, "read_range", marked_meanwhile)
    [again] = handle_payload(gate, event)

    assert marked
    assert again.status == "identical"
    assert again.archived_path == first.archived_path
    assert names(gate, gate.settings.landing.container) == []
    assert len(jobs_api.runs()) == 1


def test_a_changed_re_upload_under_the_same_name_still_gets_its_own_run(world: World) -> None:
    handle_payload(world.gate(), world.upload(NAME, csv_bytes([tracking_row(1)])))

    [changed] = handle_payload(world.gate(), world.upload(NAME, csv_bytes([tracking_row(2)])))

    assert changed.status == "archived"
    assert len(world.objects(world.settings.archive)) == 2
    assert len(world.runs()) == 2


def test_a_redelivery_after_a_failed_run_now_finishes_the_version_the_first_delivery_followed(
    gate: Gate,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
) -> None:
    data = csv_bytes([tracking_row(1)])
    event = upload_and_label(gate, azurite, data)
    landing = gate.settings.landing
    # The first delivery follows the blob to its new ETag, archives it, then run-now fails: Event Grid retries.
    jobs_api.inject(Fault("run-now", status=400, error_code="INVALID_PARAMETER_VALUE"))
    with pytest.raises(RunNotStarted):
        handle_payload(gate, event)
    assert names(gate, landing.container) == []
    assert jobs_api.runs() == []

    [outcome] = handle_payload(gate, event)

    assert outcome.status == "redriven", outcome
    assert "but the blob is now version" in outcome.reasons[0]
    assert len(jobs_api.runs()) == 1
    [archived] = names(gate, gate.settings.archive.container)
    assert gate.store.read_prefix(gate.settings.archive.container, archived, 10**6, "") == data


def test_a_stale_event_does_not_take_an_append_blob_that_replaced_its_file(
    gate: Gate,
    azurite: Azurite,
    jobs_api: LocalJobsServer,
) -> None:
    event = upload(gate, azurite, csv_bytes([tracking_row(1)]))
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    landing = gate.settings.landing
    blob = service.get_blob_client(landing.container, landing.path(NAME))
    blob.delete_blob()
    blob.create_append_blob()
    blob.append_block(csv_bytes([tracking_row(2)])[:40])  # still being written, without events

    [outcome] = handle_payload(gate, event)

    assert outcome.status == "ignored"
    assert "superseded" in outcome.reasons[0]
    assert names(gate, landing.container) == [landing.path(NAME)]
    assert names(gate, gate.settings.archive.container) == []
    assert jobs_api.runs() == []
