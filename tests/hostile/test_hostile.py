"""Hostile uploads and events through the real path (Azurite, the local Jobs API): no crash, no stray run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from filegate.azure_storage import AzureBlobStore
from filegate.batches import batch_job_trigger
from filegate.contracts import load_contracts
from filegate.ingest import ARCHIVED, IGNORED, REJECTED, Gate, handle_payload
from filegate.jobs import DatabricksJobs
from filegate.pipelines import load_pipelines
from filegate.settings import Settings
from local_world.emulators import Azurite
from local_world.inputs import blob_created
from local_world.jobs_api import LocalJobsServer
from local_world.jobs_api.recording import local_jobs_api, workspace_client
from tests.hostile.corpus import EVENTS, FILES, NAME, TRIGGERS, HostileEvent, HostileFile, huge_batch


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalJobsServer]:
    with local_jobs_api(tmp_path_factory.mktemp("jobs")) as server:
        yield server


@pytest.fixture
def gate(azure_store: AzureBlobStore, azure_settings: Settings, jobs_server: LocalJobsServer) -> Gate:
    return Gate(
        azure_settings, azure_store, DatabricksJobs(azure_settings, workspace_client(jobs_server)), load_contracts()
    )


def _sha256(store: AzureBlobStore, container: str, path: str, scratch: Path) -> str:
    target = scratch / "copy.bin"
    store.download(container, path, str(target))
    return hashlib.sha256(target.read_bytes()).hexdigest()


def test_the_corpus_is_big_enough_and_deterministic() -> None:
    assert len(FILES) >= 30
    assert len({case.case for case in FILES}) == len(FILES)
    assert all(case.data() == case.data() for case in FILES if case.case != "50mb-single-line")


@pytest.mark.parametrize("case", [pytest.param(case, id=case.case) for case in FILES])
def test_hostile_file(
    case: HostileFile, gate: Gate, azurite: Azurite, jobs_server: LocalJobsServer, tmp_path: Path
) -> None:
    data = case.data()
    landing = gate.settings.landing
    path = landing.path(case.name)
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(landing.container, path)
    etag = str(blob.upload_blob(data, overwrite=True)["etag"]).strip('"')
    runs_before = len(jobs_server.requests("run-now"))

    [outcome] = handle_payload(gate, blob_created(landing.container, path, len(data), etag, port=azurite.port))

    store = gate.store
    assert isinstance(store, AzureBlobStore)
    assert outcome.status == case.expected, outcome.reasons
    if case.expected == IGNORED:
        assert any(case.reason in reason for reason in outcome.reasons), outcome.reasons
        assert [info.path for info in store.list(landing.container, landing.prefix)] == [path]
        assert list(store.list(gate.settings.rejected.container, gate.settings.rejected.prefix)) == []
        assert len(jobs_server.requests("run-now")) == runs_before
        return
    assert list(store.list(landing.container, landing.prefix)) == []
    if case.expected == ARCHIVED:
        assert len(jobs_server.requests("run-now")) == runs_before + 1
        assert outcome.archived_path is not None
        container, archived = outcome.archived_path.split("/", 1)
        assert _sha256(store, container, archived, tmp_path) == hashlib.sha256(data).hexdigest()
        return
    assert outcome.status == REJECTED
    assert any(case.reason in reason for reason in outcome.reasons), outcome.reasons
    assert len(jobs_server.requests("run-now")) == runs_before, "a rejected file started a run"
    rejected = gate.settings.rejected
    objects = {info.path: info for info in store.list(rejected.container, rejected.prefix)}
    assert outcome.rejected_path is not None
    kept = outcome.rejected_path.removeprefix(f"{rejected.container}/")
    assert sorted(objects) == sorted([kept, f"{kept}.report.json"])
    assert objects[kept].size == len(data)
    if data:
        assert _sha256(store, rejected.container, kept, tmp_path) == hashlib.sha256(data).hexdigest()
    report_info = objects[f"{kept}.report.json"]
    report = json.loads(store.read_prefix(rejected.container, report_info.path, report_info.size, report_info.version))
    assert report["reasons"] == list(outcome.reasons)
    assert report["file"] == case.name
    # The bounded read: however big the file, validation read at most the sample.
    assert report["bytes_read"] <= gate.settings.sample_bytes


@pytest.mark.parametrize("case", EVENTS, ids=lambda case: case.case)
def test_hostile_event_is_ignored_with_a_reason(case: HostileEvent, gate: Gate, jobs_server: LocalJobsServer) -> None:
    landing = gate.settings.landing
    runs_before = len(jobs_server.requests("run-now"))

    outcomes = handle_payload(gate, case.payload(landing.container, landing.path(NAME)))

    assert [outcome.status for outcome in outcomes] == [IGNORED]
    assert case.reason in outcomes[0].reasons[0], outcomes[0].reasons
    assert len(jobs_server.requests("run-now")) == runs_before


def test_a_dot_dot_path_cannot_move_a_blob_outside_the_landing_prefix(
    gate: Gate, azurite: Azurite, jobs_server: LocalJobsServer
) -> None:
    landing = gate.settings.landing
    outside = f"private/{NAME}"  # same container, outside the landing prefix
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        landing.container, outside
    )
    data = b"not Filegate's to move"
    etag = str(blob.upload_blob(data, overwrite=True)["etag"]).strip('"')
    runs_before = len(jobs_server.requests("run-now"))
    event = blob_created(landing.container, landing.path(f"../{outside}"), len(data), etag, port=azurite.port)

    [outcome] = handle_payload(gate, event)

    assert outcome.status == IGNORED
    assert "'..' segments" in outcome.reasons[0]
    assert blob.download_blob().readall() == data
    assert len(jobs_server.requests("run-now")) == runs_before


def test_a_huge_batch_of_foreign_events_is_ignored_quickly(gate: Gate, jobs_server: LocalJobsServer) -> None:
    landing = gate.settings.landing
    runs_before = len(jobs_server.requests("run-now"))

    outcomes = handle_payload(gate, huge_batch(landing.container, landing.path(NAME)))

    assert len(outcomes) == 5001
    assert all(outcome.status == IGNORED for outcome in outcomes)
    assert len(jobs_server.requests("run-now")) == runs_before


def test_truncated_json_is_refused_by_filegate_handle_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from filegate.cli import main

    event = tmp_path / "event.json"
    event.write_text(json.dumps(blob_created("landing", f"incoming/{NAME}", 10, "0x1"))[:150], encoding="utf-8")

    code = main(["handle", str(event)])

    assert code == 2
    assert "is not JSON" in capsys.readouterr().err


@pytest.fixture
def pipeline_gate(gate: Gate, jobs_server: LocalJobsServer) -> Gate:
    """The same gate with the built-in pipelines, as the function runs it."""
    return replace(gate, pipelines=load_pipelines(gate.contracts), batch_jobs=batch_job_trigger(gate.settings))


def test_the_trigger_corpus_covers_each_way_a_trigger_goes_wrong() -> None:
    assert len(TRIGGERS) >= 15
    assert len({case.case for case in TRIGGERS}) == len(TRIGGERS)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.case) for case in TRIGGERS])
def test_hostile_trigger(
    case: HostileFile, pipeline_gate: Gate, azurite: Azurite, jobs_server: LocalJobsServer
) -> None:
    data = case.data()
    gate = pipeline_gate
    landing = gate.settings.landing
    path = landing.path(case.name)
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    # A member of the batch is already archived: a bad trigger must leave it where it is.
    member = landing.path("orders_2025_01_15.csv")
    orders = (Path(__file__).resolve().parents[2] / "data/samples/ecommerce/orders_2025_01_15.csv").read_bytes()
    member_etag = str(service.get_blob_client(landing.container, member).upload_blob(orders)["etag"]).strip('"')
    [archived] = handle_payload(
        gate, blob_created(landing.container, member, len(orders), member_etag, port=azurite.port)
    )
    etag = str(service.get_blob_client(landing.container, path).upload_blob(data, overwrite=True)["etag"]).strip('"')
    runs_before = len(jobs_server.requests("run-now"))

    [outcome] = handle_payload(gate, blob_created(landing.container, path, len(data), etag, port=azurite.port))

    assert outcome.status == case.expected, outcome
    assert any(case.reason in reason for reason in outcome.reasons), outcome.reasons
    if case.expected == IGNORED:
        assert len(jobs_server.requests("run-now")) == runs_before
        return
    assert outcome.pipeline == "ecommerce"
    assert len(jobs_server.requests("run-now")) == runs_before
    store = gate.store
    assert isinstance(store, AzureBlobStore)
    assert list(store.list(landing.container, landing.prefix)) == []
    rejected = gate.settings.rejected
    kept = outcome.rejected_path.removeprefix(f"{rejected.container}/")  # type: ignore[union-attr]
    objects = {info.path: info for info in store.list(rejected.container, rejected.prefix)}
    assert sorted(objects) == sorted([kept, f"{kept}.report.json"])
    copy = objects[kept]
    assert (store.read_prefix(rejected.container, kept, max(copy.size, 1), copy.version) if copy.size else b"") == data
    report = json.loads(store.read_prefix(rejected.container, f"{kept}.report.json", 10**6, ""))
    assert report["reasons"] == list(outcome.reasons)
    archive = gate.settings.archive
    assert [info.path for info in store.list(archive.container, archive.prefix)] == [
        archived.archived_path.removeprefix(f"{archive.container}/")  # type: ignore[union-attr]
    ]
