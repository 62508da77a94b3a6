"""`python -m local_world watch` against real Azurite and the GCS emulator: events, retries, state, delivery paths."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from filegate.azure_storage import AzureBlobStore
from filegate.contracts import load_contracts
from filegate.errors import SettingsError
from filegate.events import Ignored, Upload, parse_event
from filegate.gcs_storage import GcsStore
from filegate.ingest import ARCHIVED, IGNORED, Gate, Outcome
from filegate.jobs import DatabricksJobs
from filegate.settings import Location, Settings
from filegate.storage import ObjectInfo
from local_world.emulators import AZURITE_ACCOUNT, AZURITE_ARCHIVE_ACCOUNT, Azurite, free_port
from local_world.inputs import blob_created, csv_bytes, tracking_row
from local_world.jobs_api import LocalJobsServer
from local_world.jobs_api.recording import workspace_client
from local_world.watch import (
    AzuriteSource,
    DeliveryFailed,
    DeliveryReport,
    Event,
    GcsEmulatorSource,
    RetryPolicy,
    Watcher,
    build_source,
    deliver_cloudevent_binary,
    deliver_event_grid_webhook,
    deliver_in_process,
    event_grid_webhook_url,
    finalized_event,
    watched_locations,
)
from local_world.watch import main as watch_main
from tests.gcp.eventarc import finalized_event as gcs_finalized_event
from tests.gcp.eventarc import upload as gcs_upload
from tests.gcp.world import PROJECT, GcpWorld, fresh_settings

DAY = "order_tracking_2024_03_05.csv"
FAST = RetryPolicy(max_attempts=3, delays=(0.05, 0.2), scale=1.0)


@dataclass
class Recorder:
    """The subscriber end of a delivery: keeps every event, fails the first `failures` attempts."""

    failures: int = 0
    retry: bool = True
    events: list[Event] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)

    def __call__(self, event: Event, attempt: int) -> str:
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.failures:
            raise DeliveryFailed(f"attempt {len(self.attempts)} refused", retry=self.retry)
        self.events.append(event)
        return "ok"


def put(azurite: Azurite, location: Location, name: str, data: bytes) -> str:
    """Upload as a user would, with the Azure SDK (one Put Blob); the new eTag."""
    from azure.storage.blob import BlobClient, ContentSettings

    blob = BlobClient.from_connection_string(azurite.connection_string, location.container, location.path(name))
    answer = blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type="text/csv"))
    return str(answer["etag"]).strip('"')


def watcher(
    azurite: Azurite, settings: Settings, deliver: Callable[[Event, int], str], state: Path, **options: Any
) -> Watcher:
    return Watcher(AzuriteSource(azurite.connection_string), watched_locations(settings), deliver, state, **options)


def test_a_new_blob_gets_one_blob_created_event_in_the_event_grid_schema(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    data = csv_bytes()
    etag = put(azurite, azure_settings.landing, DAY, data)
    recorder = Recorder()
    watch = watcher(azurite, azure_settings, recorder, tmp_path)

    watch.poll()
    watch.deliver_due()

    [event] = recorder.events
    landing = azure_settings.landing
    expected = blob_created(landing.container, landing.path(DAY), len(data), etag, port=azurite.port)
    assert event.body.keys() == expected.keys()
    assert event.body["subject"] == expected["subject"]
    assert event.body["eventType"] == "Microsoft.Storage.BlobCreated"
    # Field for field what the builder makes of the same object, but the sequencer (the watcher's count).
    assert {**event.body["data"], "sequencer": ""} == {**expected["data"], "sequencer": ""}
    assert (
        event.body["data"]["url"]
        == f"http://127.0.0.1:{azurite.port}/devstoreaccount1/{landing.container}/incoming/{DAY}"
    )
    assert (event.body["data"]["contentType"], event.body["data"]["blobType"]) == ("text/csv", "BlockBlob")
    assert datetime.strptime(event.body["eventTime"], "%Y-%m-%dT%H:%M:%S.%f0Z")
    upload = parse_event(event.body)
    assert isinstance(upload, Upload)
    assert (upload.account, upload.container, upload.path) == ("devstoreaccount1", landing.container, landing.path(DAY))
    assert (upload.size, upload.version, upload.api) == (len(data), etag, "PutBlob")


def test_only_new_names_and_new_versions_raise_events(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    landing = azure_settings.landing
    first = put(azurite, landing, DAY, csv_bytes())
    recorder = Recorder()
    watch = watcher(azurite, azure_settings, recorder, tmp_path)
    watch.poll()
    watch.deliver_due()

    assert watch.poll() == 0  # nothing changed
    second = put(azurite, landing, DAY, csv_bytes([tracking_row(9)]))  # overwritten: a new eTag
    put(azurite, landing, "order_tracking_2024_03_06.csv", csv_bytes())
    assert watch.poll() == 2
    watch.deliver_due()

    versions = [(event.path.rsplit("/", 1)[-1], event.version) for event in recorder.events]
    assert versions[:2] == [(DAY, first), (DAY, second)]
    assert versions[2][0] == "order_tracking_2024_03_06.csv"
    assert len({event.id for event in recorder.events}) == 3
    sequencers = [event.body["data"]["sequencer"] for event in recorder.events]
    assert sequencers == sorted(sequencers)


def test_objects_are_delivered_in_the_order_they_were_written(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    landing = azure_settings.landing
    # Azurite's timestamps have one-second resolution: wait so the write order is visible.
    put(azurite, landing, "order_tracking_2024_03_07.csv", csv_bytes())
    time.sleep(1.1)
    put(azurite, landing, "order_tracking_2024_03_06.csv", csv_bytes())  # late, and alphabetically first
    recorder = Recorder()

    watch = watcher(azurite, azure_settings, recorder, tmp_path)
    watch.poll()
    watch.deliver_due()

    assert [event.path for event in recorder.events] == [
        landing.path("order_tracking_2024_03_07.csv"),
        landing.path("order_tracking_2024_03_06.csv"),
    ]


def test_a_restarted_watcher_remembers_what_it_delivered(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    landing = azure_settings.landing
    put(azurite, landing, DAY, csv_bytes())
    first = watcher(azurite, azure_settings, Recorder(), tmp_path)
    first.poll()
    first.deliver_due()

    put(azurite, landing, "order_tracking_2024_03_06.csv", csv_bytes())
    recorder = Recorder()
    restarted = watcher(azurite, azure_settings, recorder, tmp_path)
    restarted.poll()
    restarted.deliver_due()

    assert [event.path for event in recorder.events] == [landing.path("order_tracking_2024_03_06.csv")]


def test_a_state_file_of_the_previous_format_is_this_watchers_state(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    # Format 2, one storage's state at the top level, is what every watcher wrote before sections per storage:
    # read as no state, a restart under --skip-existing would take what landed while it was down for history.
    landing = azure_settings.landing
    put(azurite, landing, DAY, csv_bytes())
    first = watcher(azurite, azure_settings, Recorder(), tmp_path, skip_existing=True)
    first.poll()
    [(source, section)] = json.loads(first.state_file.read_text(encoding="utf-8"))["sources"].items()
    first.state_file.write_text(json.dumps({"format": 2, "source": source, **section}), encoding="utf-8")

    a_restart_delivers_what_landed_while_it_was_down(azurite, azure_settings, tmp_path)


def a_restart_delivers_what_landed_while_it_was_down(azurite: Azurite, settings: Settings, tmp_path: Path) -> None:
    """A day uploaded while the watcher is down is delivered, and only it, by a restart under --skip-existing."""
    put(azurite, settings.landing, "order_tracking_2024_03_06.csv", csv_bytes())
    recorder = Recorder()

    restarted = watcher(azurite, settings, recorder, tmp_path, skip_existing=True)
    restarted.poll()
    restarted.deliver_due()

    assert [event.path for event in recorder.events] == [settings.landing.path("order_tracking_2024_03_06.csv")]


def test_skip_existing_treats_what_is_there_as_history(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    put(azurite, azure_settings.landing, DAY, csv_bytes())
    recorder = Recorder()
    watch = watcher(azurite, azure_settings, recorder, tmp_path, skip_existing=True)

    watch.poll()
    put(azurite, azure_settings.landing, "order_tracking_2024_03_06.csv", csv_bytes())
    watch.poll()
    watch.deliver_due()

    assert [event.path for event in recorder.events] == [azure_settings.landing.path("order_tracking_2024_03_06.csv")]


def test_skip_existing_on_a_restart_delivers_what_landed_while_the_watcher_was_down(
    azurite: Azurite, azure_settings: Settings, azure_store: AzureBlobStore, tmp_path: Path
) -> None:
    # The landing empties whenever the function moves every file out: a restart then looked like a first
    # start, and --skip-existing took the file uploaded while the watcher was down for history.
    landing = azure_settings.landing

    def archive(event: Event, attempt: int) -> str:
        azure_store.delete(event.container, event.path, event.version)  # the function moved it
        return "archived"

    first = watcher(azurite, azure_settings, archive, tmp_path, skip_existing=True)
    first.poll()
    put(azurite, landing, DAY, csv_bytes())
    first.poll()
    first.deliver_due()
    first.poll()  # the landing is empty again: nothing delivered is left to remember

    a_restart_delivers_what_landed_while_it_was_down(azurite, azure_settings, tmp_path)


def test_a_watcher_of_other_storage_in_the_same_state_folder_keeps_this_ones_state(
    azurite: Azurite, two_accounts: tuple[AzureBlobStore, Settings], tmp_path: Path
) -> None:
    # The Azure and GCS watchers keep their state in .filegate/watch alike: the other one's start replaced this
    # one's state, whose next start took the file still in landing for new and, with --skip-existing, the
    # file that landed while it was down for history.
    store, settings = two_accounts
    landing = settings.landing
    store.put(landing.container, landing.path(DAY), csv_bytes(), "text/csv", {})
    first = Watcher(AzuriteSource(azurite.connection_string), (landing,), Recorder(), tmp_path, skip_existing=True)
    first.poll()
    put(azurite, landing, "order_tracking_2024_03_06.csv", csv_bytes())
    first.poll()
    first.deliver_due()  # the subscriber leaves it in landing, as a webhook that failed it would
    other = Watcher(AzuriteSource(azurite.archive_connection_string), (settings.archive,), Recorder(), tmp_path)
    other.poll()
    put(azurite, landing, "order_tracking_2024_03_07.csv", csv_bytes())  # while the first one is down
    recorder = Recorder()

    restarted = Watcher(AzuriteSource(azurite.connection_string), (landing,), recorder, tmp_path, skip_existing=True)
    restarted.poll()
    restarted.deliver_due()

    assert [event.path for event in recorder.events] == [landing.path("order_tracking_2024_03_07.csv")]
    store.put(settings.archive.container, "order_tracking/new.csv", csv_bytes(), "text/csv", {})
    other_restarted = Watcher(other.source, (settings.archive,), Recorder(), tmp_path, skip_existing=True)
    assert other_restarted.poll() == 1  # its own state is there too: not a first start


def test_archive_and_rejected_are_not_watched_unless_asked(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    put(azurite, azure_settings.archive, f"order_tracking/2024/03/05/{DAY}", csv_bytes())
    put(azurite, azure_settings.rejected, "_unmatched/notes.txt", b"hello")
    put(azurite, Location(azure_settings.landing.container), "elsewhere/file.csv", b"a,b\n")
    recorder = Recorder()

    watch = watcher(azurite, azure_settings, recorder, tmp_path)
    assert watch.poll() == 0

    everything = Watcher(
        AzuriteSource(azurite.connection_string),
        watched_locations(azure_settings, include_filegate_locations=True),
        recorder,
        tmp_path / "all",
    )
    assert everything.poll() == 2
    everything.deliver_due()
    assert {event.container for event in recorder.events} == {
        azure_settings.archive.container,
        azure_settings.rejected.container,
    }


def test_an_archive_in_its_own_account_is_listed_there_and_its_events_name_that_account(
    two_accounts: tuple[AzureBlobStore, Settings], tmp_path: Path
) -> None:
    # The local world's layout: listing the archive in the landing account failed every round ("the container
    # does not exist"), and no landing file was delivered either.
    store, settings = two_accounts
    store.put(settings.landing.container, settings.landing.path(DAY), csv_bytes(), "text/csv", {})
    store.put(settings.archive.container, f"order_tracking/2024/03/05/{DAY}", csv_bytes(), "text/csv", {})
    recorder = Recorder()

    watch = Watcher(
        build_source("azure", settings, ""),
        watched_locations(settings, include_filegate_locations=True),
        recorder,
        tmp_path,
    )
    assert watch.poll() == 2
    watch.deliver_due()

    accounts = {event.container: event.body["topic"].rsplit("/", 1)[-1] for event in recorder.events}
    assert accounts == {
        settings.landing.container: AZURITE_ACCOUNT,
        settings.archive.container: AZURITE_ARCHIVE_ACCOUNT,
    }
    archived = next(event for event in recorder.events if event.container == settings.archive.container)
    assert f"/{AZURITE_ARCHIVE_ACCOUNT}/{settings.archive.container}/" in archived.body["data"]["url"]


def test_an_uncommitted_blob_raises_no_event_until_its_blocks_are_committed(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    from azure.storage.blob import BlobBlock, BlobClient

    landing = azure_settings.landing
    blob = BlobClient.from_connection_string(azurite.connection_string, landing.container, landing.path(DAY))
    data = csv_bytes()
    blob.stage_block("block-0", data)  # Put Block: staged, not yet part of any blob
    recorder = Recorder()
    watch = watcher(azurite, azure_settings, recorder, tmp_path)

    staged = watch.poll()
    blob.commit_block_list([BlobBlock("block-0")])  # Put Block List: now the blob exists
    committed = watch.poll()
    watch.deliver_due()

    assert staged == 0
    assert committed == 1
    [event] = recorder.events
    assert event.body["data"]["contentLength"] == len(data)
    # The listing cannot tell Put Blob from Put Block List; both are committed writes to the core.
    assert event.body["data"]["api"] == "PutBlob"
    assert parse_event(event.body).api == "PutBlob"


def test_an_append_blob_gets_one_event_when_created_naming_its_type_and_none_when_appended_to(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    from azure.storage.blob import BlobClient

    landing = azure_settings.landing
    blob = BlobClient.from_connection_string(azurite.connection_string, landing.container, landing.path(DAY))
    blob.create_append_blob()  # a Put Blob: Event Grid's one BlobCreated for this blob
    recorder = Recorder()
    watch = watcher(azurite, azure_settings, recorder, tmp_path)

    created = watch.poll()
    watch.deliver_due()
    blob.append_block(csv_bytes())  # Append Block: a new ETag, no event
    appended = watch.poll()

    assert (created, appended) == (1, 0)
    [event] = recorder.events
    assert (event.body["data"]["blobType"], event.body["data"]["api"]) == ("AppendBlob", "PutBlob")
    # What the core does with Event Grid's own event for it: leaves it for the sweep, with a warning.
    ignored = parse_event(event.body)
    assert isinstance(ignored, Ignored)
    assert "AppendBlob" in ignored.reason


def test_a_metadata_write_raises_no_event_even_after_a_restart_and_an_overwrite_does(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    from azure.storage.blob import BlobClient

    landing = azure_settings.landing
    put(azurite, landing, DAY, csv_bytes())
    blob = BlobClient.from_connection_string(azurite.connection_string, landing.container, landing.path(DAY))
    first = watcher(azurite, azure_settings, Recorder(), tmp_path)
    first.poll()
    first.deliver_due()
    blob.set_blob_metadata({"reviewed": "yes"})  # a new ETag, the same content: Event Grid sends nothing
    recorder = Recorder()
    restarted = watcher(azurite, azure_settings, recorder, tmp_path)

    after_metadata = restarted.poll()
    blob.set_blob_metadata({"reviewed": "twice"})
    after_more_metadata = restarted.poll()
    overwrite = put(azurite, landing, DAY, csv_bytes([tracking_row(9)]))
    after_overwrite = restarted.poll()
    restarted.deliver_due()

    assert (after_metadata, after_more_metadata, after_overwrite) == (0, 0, 1)
    assert [event.version for event in recorder.events] == [overwrite]


def watched_gcs_upload(gcs_emulator: Any, tmp_path: Path) -> tuple[Settings, Any, Recorder, Watcher]:
    """Fresh buckets on the GCS emulator with one upload in landing, and a watcher of them that records events."""
    store = GcsStore.from_environment({"STORAGE_EMULATOR_HOST": gcs_emulator.url, "GOOGLE_CLOUD_PROJECT": PROJECT})
    settings = fresh_settings(store)
    blob = gcs_upload(gcs_emulator.client(), settings.landing.container, DAY, csv_bytes())
    recorder = Recorder()
    watch = Watcher(GcsEmulatorSource(gcs_emulator.url, project=PROJECT), [settings.landing], recorder, tmp_path)
    return settings, blob, recorder, watch


def test_every_new_gcs_generation_is_finalized_and_a_metadata_patch_is_not(gcs_emulator: Any, tmp_path: Path) -> None:
    # Consistent with the Azure side: on GCS even the same bytes again are a new generation, with its event.
    settings, blob, recorder, watch = watched_gcs_upload(gcs_emulator, tmp_path)
    watch.poll()
    watch.deliver_due()

    blob.metadata = {"reviewed": "yes"}
    blob.patch()  # metageneration 2 of the same generation: `metadataUpdated`, not `finalized`
    patched = watch.poll()
    again = gcs_upload(gcs_emulator.client(), settings.landing.container, DAY, csv_bytes())
    uploaded_again = watch.poll()
    watch.deliver_due()

    assert (patched, uploaded_again) == (0, 1)
    assert [event.version for event in recorder.events] == [str(blob.generation), str(again.generation)]


def test_the_watcher_keeps_watching_when_a_callback_or_its_state_file_fails(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    landing = azure_settings.landing
    delivered: list[str] = []
    attempts: list[int] = []

    def deliver(event: Event, attempt: int) -> str:
        attempts.append(attempt)
        if len(attempts) == 1:
            raise RuntimeError("a bug in the result callback")  # not a DeliveryFailed: a bug on this side
        delivered.append(event.path)
        return "ok"

    def listener(report: DeliveryReport) -> None:
        raise ValueError("a bug in the listener")

    state = tmp_path / "state-is-a-file"
    state.write_text("not a folder")  # saving the delivered versions fails on every delivery
    watch = watcher(azurite, azure_settings, deliver, state, policy=FAST, listener=listener)
    stop = threading.Event()
    thread = threading.Thread(target=watch.run, args=(stop, 0.05), daemon=True)
    thread.start()
    try:
        put(azurite, landing, DAY, csv_bytes())
        _wait_until(lambda: delivered == [landing.path(DAY)])
        put(azurite, landing, "order_tracking_2024_03_06.csv", csv_bytes())
        _wait_until(lambda: len(delivered) == 2)
    finally:
        stop.set()
        thread.join(5)

    assert attempts == [1, 2, 1]  # the bug cost one attempt, then the retry delivered
    assert not thread.is_alive()
    messages = [record.getMessage() for record in caplog.records]
    assert any("delivering" in m and "raised" in m for m in messages)
    assert any("listener raised" in m for m in messages)
    assert any("cannot save the delivered versions" in m for m in messages)


def test_a_stop_ends_a_backlog_between_deliveries_and_the_rest_is_delivered_on_the_next_start(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    # Ctrl-C waited until the whole backlog was delivered: the stop was looked at between rounds only.
    landing = azure_settings.landing
    names = [f"order_tracking_2024_03_{day:02d}.csv" for day in (5, 6, 7)]
    for name in names:
        put(azurite, landing, name, csv_bytes())
    stop = threading.Event()
    recorder = Recorder()

    def deliver_then_stop(event: Event, attempt: int) -> str:
        stop.set()  # Ctrl-C while this delivery is under way
        return recorder(event, attempt)

    watch = watcher(azurite, azure_settings, deliver_then_stop, tmp_path)
    watch.run(stop, 0.05)
    stopped_with = (len(recorder.events), watch.pending())
    restarted = watcher(azurite, azure_settings, recorder, tmp_path)
    restarted.poll()
    restarted.deliver_due()

    assert stopped_with == (1, 2)
    assert sorted(event.path for event in recorder.events) == [landing.path(name) for name in names]


@pytest.fixture
def held_webhook() -> Iterator[tuple[str, threading.Event, threading.Event]]:
    """An Event Grid webhook that answers each delivery only once released (or after 3 s): its URL, the
    event set when the first delivery arrives, and the release."""
    arrived, release = threading.Event(), threading.Event()

    class Holding(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            arrived.set()
            release.wait(3)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """Quiet: http.server would print every request to stderr."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Holding)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", arrived, release
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def _interrupt_after(arrived: threading.Event, times: int) -> list[float]:
    """Ctrl-C `times` times once `arrived` is set, 0.2 s apart, from another thread; when the last was sent."""
    sent: list[float] = []

    def interrupt() -> None:
        if arrived.wait(15):
            for _ in range(times):
                time.sleep(0.2)
                os.kill(os.getpid(), signal.SIGINT)
            sent.append(time.monotonic())

    threading.Thread(target=interrupt, daemon=True).start()
    return sent


@contextmanager
def answering_webhook(status: int, arrived: threading.Event | None = None) -> Iterator[str]:
    """A webhook on a free loopback port that answers every event with `status` (and sets `arrived`); its URL."""

    class Answering(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            if arrived is not None:
                arrived.set()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """Quiet: http.server would print every request to stderr."""

    with ThreadingHTTPServer(("127.0.0.1", 0), Answering) as server:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


def _watch_interrupted(argv: list[str]) -> int:
    """`watch_main(argv)`; a KeyboardInterrupt out of it (a traceback at the terminal) fails the test."""
    try:
        return watch_main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C ended the watch with a KeyboardInterrupt traceback")


def test_a_second_ctrl_c_stops_the_watch_at_once_with_its_summary(
    azurite: Azurite,
    azure_settings: Settings,
    held_webhook: tuple[str, threading.Event, threading.Event],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # Every Ctrl-C only set the stop event again: the delivery under way, and the rest, went on.
    url, arrived, _ = held_webhook
    for name, value in {
        "FILEGATE_AZURE_STORAGE": azurite.connection_string,
        "FILEGATE_LANDING": str(azure_settings.landing),
        "FILEGATE_ARCHIVE": str(azure_settings.archive),
        "FILEGATE_REJECTED": str(azure_settings.rejected),
    }.items():
        monkeypatch.setenv(name, value)
    for day in (5, 6):
        put(azurite, azure_settings.landing, f"order_tracking_2024_03_{day:02d}.csv", csv_bytes())
    sent = _interrupt_after(arrived, times=2)

    code = _watch_interrupted(["--webhook", url, "--interval", "0.05", "--state-dir", str(tmp_path)])
    took = time.monotonic() - sent[0]

    assert code == 130
    assert took < 1.5
    assert "interrupted: 0 delivered, 0 dead-lettered, 2 pending" in capsys.readouterr().out


@pytest.fixture
def one_landed(azurite: Azurite, azure_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Azurite's landing holding one file, and the settings `watch` reads pointed at it."""
    monkeypatch.setenv("FILEGATE_AZURE_STORAGE", azurite.connection_string)
    monkeypatch.setenv("FILEGATE_LANDING", str(azure_settings.landing))
    put(azurite, azure_settings.landing, DAY, csv_bytes())
    return azure_settings


def test_ctrl_c_during_watch_once_exits_130_with_its_summary(
    one_landed: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # It ended in a KeyboardInterrupt traceback out of the wait for the next retry, and no summary.
    arrived = threading.Event()
    with answering_webhook(500, arrived) as url:  # retried, after 10 s at --retry-scale 1
        sent = _interrupt_after(arrived, times=1)
        code = _watch_interrupted(["--webhook", url, "--once", "--retry-scale", "1", "--state-dir", str(tmp_path)])
    took = time.monotonic() - sent[0]

    assert code == 130
    assert took < 1.5
    assert "interrupted: 0 delivered, 0 dead-lettered, 1 pending" in capsys.readouterr().out


def test_watch_once_whose_dead_letter_cannot_be_written_exits_1_naming_the_event(
    one_landed: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # It waited for ever: the event is kept and its letter tried again later, which --once waited out.
    (tmp_path / "deadletter").write_text("not a folder")  # a full disk, a folder without write permission
    with answering_webhook(400) as url:  # not retried by Event Grid: dead-lettered at once
        code = _watch_interrupted(["--webhook", url, "--once", "--state-dir", str(tmp_path)])

    assert code == 1
    out = capsys.readouterr().out
    assert "failed: 0 delivered, 0 dead-lettered, 1 pending; given up on, their dead letters cannot be written" in out
    assert one_landed.landing.path(DAY) in out


def test_a_failed_delivery_is_retried_with_growing_delays(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    put(azurite, azure_settings.landing, DAY, csv_bytes())
    recorder = Recorder(failures=2)
    reports: list[DeliveryReport] = []
    watch = watcher(azurite, azure_settings, recorder, tmp_path, policy=FAST, listener=reports.append)

    watch.poll()
    assert watch.drain(timeout=10)

    assert [(r.attempt, r.delivered, r.retry_in) for r in reports] == [
        (1, False, 0.05),
        (2, False, 0.2),
        (3, True, None),
    ]
    first, second, third = recorder.attempts
    assert second - first >= 0.05
    assert third - second >= 0.2
    assert len(recorder.events) == 1
    assert watch.dropped == []


def test_retries_past_an_hour_follow_event_grids_schedule_then_every_12_hours() -> None:
    # The schedule stopped at 1 h and repeated it: with --max-attempts above 7, retries came every hour
    # where Event Grid waits 3 h, 6 h, then 12 h.
    policy = RetryPolicy(max_attempts=30, scale=1.0)

    delays = [policy.delay(failed) for failed in range(1, 12)]

    assert delays == [10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 12 * 3600]


def test_retries_are_bounded_and_the_event_is_dead_lettered_once(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    put(azurite, azure_settings.landing, DAY, csv_bytes())
    recorder = Recorder(failures=100)
    watch = watcher(azurite, azure_settings, recorder, tmp_path, policy=FAST)

    watch.poll()
    assert watch.drain(timeout=10)

    assert len(recorder.attempts) == FAST.max_attempts
    [dropped] = watch.dropped
    letter = json.loads((tmp_path / "deadletter" / f"{dropped.id}.json").read_text())
    assert letter == dropped.body
    assert isinstance(parse_event(letter), Upload)  # `filegate handle` can re-drive it
    restarted = watcher(azurite, azure_settings, recorder, tmp_path, policy=FAST)
    assert restarted.poll() == 0


def test_a_dead_letter_that_cannot_be_written_keeps_its_event_and_stalls_no_other_delivery(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The OSError ended every round at the refused event, which came first each time: nothing after it
    # was ever delivered.
    landing = azure_settings.landing
    refused, accepted = DAY, "order_tracking_2024_03_06.csv"
    put(azurite, landing, refused, csv_bytes())
    put(azurite, landing, accepted, csv_bytes())
    attempts: list[str] = []

    def deliver(event: Event, attempt: int) -> str:
        attempts.append(event.path)
        if event.path == landing.path(refused):
            raise DeliveryFailed("HTTP 400: bad request", retry=False)
        return "ok"

    blocked = tmp_path / "deadletter"
    blocked.write_text("not a folder")  # a full disk, a folder without write permission
    now = [0.0]
    watch = watcher(azurite, azure_settings, deliver, tmp_path, policy=FAST, clock=lambda: now[0])

    watch.poll()
    watch.deliver_due()
    kept = (watch.pending(), list(watch.dropped))
    blocked.unlink()
    now[0] += 10
    watch.deliver_due()

    assert attempts == [landing.path(refused), landing.path(accepted)]  # the refused event is not delivered again
    assert kept == (1, [])
    [dropped] = watch.dropped
    assert dropped.path == landing.path(refused)
    assert json.loads((blocked / f"{dropped.id}.json").read_text()) == dropped.body
    assert watch.pending() == 0
    assert any("cannot dead-letter" in record.getMessage() for record in caplog.records)


def test_an_answer_event_grid_does_not_retry_ends_the_delivery_at_once(
    azurite: Azurite, azure_settings: Settings, tmp_path: Path
) -> None:
    put(azurite, azure_settings.landing, DAY, csv_bytes())
    recorder = Recorder(failures=100, retry=False)
    watch = watcher(azurite, azure_settings, recorder, tmp_path, policy=FAST)

    watch.poll()
    watch.drain(timeout=10)

    assert len(recorder.attempts) == 1
    assert len(watch.dropped) == 1


def test_in_process_delivery_archives_the_file_and_starts_its_run(
    azurite: Azurite,
    azure_store: AzureBlobStore,
    azure_settings: Settings,
    jobs_api: LocalJobsServer,
    tmp_path: Path,
) -> None:
    jobs = DatabricksJobs(azure_settings, client=workspace_client(jobs_api))
    gate = Gate(azure_settings, azure_store, jobs, load_contracts())
    put(azurite, azure_settings.landing, DAY, csv_bytes())
    seen: list[Outcome] = []
    watch = watcher(azurite, azure_settings, deliver_in_process(gate, lambda _, o: seen.extend(o)), tmp_path)

    watch.poll()
    watch.deliver_due()

    [outcome] = seen
    assert outcome.status == ARCHIVED
    assert azure_store.stat(azure_settings.archive.container, f"order_tracking/2024/03/05/{DAY}") is not None
    [run] = jobs_api.runs()
    assert run["run_id"] == outcome.run_id
    parameters = {p["name"]: p["value"] for p in run["job_parameters"]}
    assert parameters["source_path"].endswith(f"/order_tracking/2024/03/05/{DAY}")
    # The archive write is not in the watched location: nothing more to deliver.
    assert watch.poll() == 0


@dataclass
class FunctionsHost:
    """Stands in for `func start` (which cannot be installed here): the Event Grid webhook route of the host,
    handing each event to the real `on_blob_created` the way the Python worker does."""

    url: str
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    fail_first: int = 0


@pytest.fixture
def functions_host(
    azurite: Azurite,
    azure_settings: Settings,
    jobs_api: LocalJobsServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FunctionsHost]:
    import function_app

    for name, value in {
        "FILEGATE_AZURE_STORAGE": azurite.connection_string,
        "FILEGATE_LANDING": str(azure_settings.landing),
        "FILEGATE_ARCHIVE": str(azure_settings.archive),
        "FILEGATE_REJECTED": str(azure_settings.rejected),
        "DATABRICKS_HOST": jobs_api.url,
        "DATABRICKS_TOKEN": "local-test-token",
    }.items():
        monkeypatch.setenv(name, value)
    function_app._gate.cache_clear()
    user_function = function_app.on_blob_created.build().get_user_function()
    host = FunctionsHost(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            host.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            try:
                if len(host.requests) <= host.fail_first:
                    raise RuntimeError("the worker is still starting")
                for item in body:
                    user_function(
                        func.EventGridEvent(
                            id=item["id"],
                            data=item["data"],
                            topic=item["topic"],
                            subject=item["subject"],
                            event_type=item["eventType"],
                            event_time=datetime.fromisoformat(item["eventTime"][:26]),
                            data_version=item["dataVersion"],
                        )
                    )
                status = 202
            except Exception:
                status = 500  # the host's answer when the function raised
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()
        function_app._gate.cache_clear()


def test_webhook_delivery_reaches_the_function_through_the_hosts_event_grid_route(
    azurite: Azurite,
    azure_store: AzureBlobStore,
    azure_settings: Settings,
    jobs_api: LocalJobsServer,
    functions_host: FunctionsHost,
    tmp_path: Path,
) -> None:
    functions_host.fail_first = 1
    put(azurite, azure_settings.landing, DAY, csv_bytes())
    deliver = deliver_event_grid_webhook(event_grid_webhook_url(functions_host.url))
    watch = watcher(azurite, azure_settings, deliver, tmp_path, policy=FAST)

    watch.poll()
    assert watch.drain(timeout=30)

    assert len(functions_host.requests) == 2  # a 500, then the retry
    assert [headers["aeg-delivery-count"] for _, headers, _ in functions_host.requests] == ["0", "1"]
    path, headers, body = functions_host.requests[-1]
    assert path == "/runtime/webhooks/eventgrid?functionName=on_blob_created"
    assert headers["aeg-event-type"] == "Notification"
    assert headers["content-type"] == "application/json"
    assert isinstance(body, list)
    assert body[0]["eventType"] == "Microsoft.Storage.BlobCreated"
    assert azure_store.stat(azure_settings.archive.container, f"order_tracking/2024/03/05/{DAY}") is not None
    assert len(jobs_api.runs()) == 1


# A name outside Latin-1 travels percent-encoded in the `ce-subject` header (it could not be sent at all).
@pytest.mark.parametrize("name", [DAY, f"données 日本/{DAY}"], ids=["ascii", "unicode"])
def test_gcs_finalize_events_reach_the_function_served_by_functions_framework(
    gcs_emulator: Any,
    gcp_world: GcpWorld,
    tmp_path: Path,
    name: str,
) -> None:
    settings = gcp_world.settings
    runs_before = len(gcp_world.jobs.runs())
    # Other bytes for each name: the same bytes again would be a copy of an archived file, and start no run.
    content = csv_bytes(newline="\n" if name == DAY else "\r\n")
    blob = gcs_upload(gcp_world.client, settings.landing.container, name, content)
    source = GcsEmulatorSource(gcs_emulator.url, project=PROJECT)
    events: list[Event] = []
    post = deliver_cloudevent_binary(gcp_world.url)

    def deliver(event: Event, attempt: int) -> str:
        events.append(event)
        return post(event, attempt)

    watch = Watcher(source, [settings.landing], deliver, tmp_path, policy=FAST)
    watch.poll()
    assert watch.drain(timeout=60)

    [event] = events
    assert event.body["type"] == "google.cloud.storage.object.v1.finalized"
    assert event.body["source"] == f"//storage.googleapis.com/projects/_/buckets/{settings.landing.container}"
    assert event.body["data"]["generation"] == str(blob.generation)
    assert event.body["data"]["size"] == str(blob.size)
    assert watch.dropped == []
    archived = gcp_world.store.stat(settings.archive.container, f"order_tracking/2024/03/05/{DAY}")
    assert archived is not None
    assert len(gcp_world.jobs.runs()) == runs_before + 1


def test_in_process_delivery_of_a_filegate_write_is_ignored_by_the_core(
    azurite: Azurite,
    azure_store: AzureBlobStore,
    azure_settings: Settings,
    jobs_api: LocalJobsServer,
    tmp_path: Path,
) -> None:
    gate = Gate(
        azure_settings, azure_store, DatabricksJobs(azure_settings, workspace_client(jobs_api)), load_contracts()
    )
    put(azurite, azure_settings.archive, f"order_tracking/2024/03/05/{DAY}", csv_bytes())
    seen: list[Outcome] = []
    watch = Watcher(
        AzuriteSource(azurite.connection_string),
        watched_locations(azure_settings, include_filegate_locations=True),
        deliver_in_process(gate, lambda _, o: seen.extend(o)),
        tmp_path,
    )

    watch.poll()
    watch.deliver_due()

    assert [outcome.status for outcome in seen] == [IGNORED]
    assert "own archive write" in seen[0].reasons[0]
    assert jobs_api.runs() == []


def test_a_finalize_event_carries_the_object_as_the_store_lists_it(gcs_emulator: Any, tmp_path: Path) -> None:
    settings, blob, recorder, watch = watched_gcs_upload(gcs_emulator, tmp_path)

    watch.poll()
    watch.deliver_due()

    [event] = recorder.events
    data = event.body["data"]
    # What Eventarc sends for the object resource the upload answered with, field for field; the
    # watcher's links point at the emulator it lists.
    assert {**data, "selfLink": ""} == {**gcs_finalized_event(blob)["data"], "selfLink": ""}
    assert data["selfLink"] == f"{gcs_emulator.url}/storage/v1/b/{settings.landing.container}/o/{DAY}"
    assert (data["name"], data["generation"], data["size"]) == (DAY, str(blob.generation), str(blob.size))
    assert (data["md5Hash"], data["crc32c"], data["contentType"]) == (blob.md5_hash, blob.crc32c, "text/csv")
    assert data["timeCreated"] == data["updated"] == event.body["time"]
    assert data["metageneration"] == "1"


def test_a_finalize_event_has_the_etag_gcs_gives_the_generation() -> None:
    # Generation, time and hashes of an object resource as Cloud Storage answered it (not the emulator).
    stored = ObjectInfo(
        "project1-cross-project",
        "random.txt",
        12,
        "1635327604259719",
        written=datetime(2021, 10, 27, 9, 40, 4, 268000, tzinfo=UTC).timestamp(),
        content_type="text/plain",
        content_md5="5Z/5eUEET4XfUpfhwwLSYA==",
        crc32c="R1jUOQ==",
    )

    data = finalized_event(stored, "https://www.googleapis.com").body["data"]

    assert data["etag"] == "CIf3xYem6vMCEAE="
    assert (data["timeCreated"], data["updated"]) == ("2021-10-27T09:40:04.268Z", "2021-10-27T09:40:04.268Z")
    assert (data["md5Hash"], data["crc32c"], data["metageneration"]) == ("5Z/5eUEET4XfUpfhwwLSYA==", "R1jUOQ==", "1")


@pytest.mark.parametrize(
    "option", [["--interval", "nan"], ["--interval", "inf"], ["--retry-scale", "nan"], ["--retry-scale", "inf"]]
)
def test_an_interval_or_retry_scale_that_is_not_a_finite_number_is_refused(
    option: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # An interval of NaN listed the storage without a pause, one of inf listed it once; a retry scale of
    # either never retried.
    with pytest.raises(SystemExit) as exit_info:
        watch_main([*option, "--once", "--state-dir", str(tmp_path)])

    assert exit_info.value.code == 2
    assert "both finite" in capsys.readouterr().err


def test_a_webhook_url_without_a_function_name_is_refused_up_front(
    azurite: Azurite, azure_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FILEGATE_AZURE_STORAGE", azurite.connection_string)
    bare = "http://localhost:7071/runtime/webhooks/eventgrid"

    code = watch_main(["--webhook", bare, "--once", "--state-dir", "unused"])

    assert code == 2
    assert "names no function: add ?functionName=on_blob_created" in capsys.readouterr().err
    assert event_grid_webhook_url("http://localhost:7071") == f"{bare}?functionName=on_blob_created"
    assert event_grid_webhook_url(f"{bare}?functionName=other") == f"{bare}?functionName=other"
    with pytest.raises(SettingsError, match="names no function"):
        event_grid_webhook_url(f"{bare}/?code=secret")


@pytest.mark.parametrize("webhook", ["localhost:7071", "ftp://localhost:7071"])
def test_a_webhook_that_is_not_an_http_url_is_refused_up_front(
    azurite: Azurite,
    azure_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    webhook: str,
) -> None:
    # Taken as given, every event was dead-lettered at its first attempt.
    monkeypatch.setenv("FILEGATE_AZURE_STORAGE", azurite.connection_string)
    monkeypatch.setenv("FILEGATE_LANDING", str(azure_settings.landing))
    put(azurite, azure_settings.landing, DAY, csv_bytes())

    code = watch_main(["--webhook", webhook, "--once", "--state-dir", str(tmp_path)])

    assert code == 2
    assert f"--webhook {webhook} is not an http:// or https:// URL" in capsys.readouterr().err
    assert not (tmp_path / "deadletter").exists()


def test_a_broken_contracts_folder_or_a_missing_landing_container_is_a_setting_to_fix_not_a_traceback(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Both ended in a traceback with exit 1: the ContractError at start, the listing's LocationMissing in --once.
    monkeypatch.setenv("FILEGATE_AZURE_STORAGE", azurite.connection_string)
    (tmp_path / "broken.toml").write_text('name = "unterminated\n', encoding="utf-8")
    monkeypatch.setenv("FILEGATE_CONTRACTS_DIR", str(tmp_path))
    webhook = "http://127.0.0.1:9/runtime/webhooks/eventgrid?functionName=on_blob_created"

    broken = watch_main(["--once", "--state-dir", str(tmp_path / "state")])
    broken_err = capsys.readouterr().err
    monkeypatch.delenv("FILEGATE_CONTRACTS_DIR")
    monkeypatch.setenv("FILEGATE_LANDING", f"nosuch-{uuid.uuid4().hex[:8]}")
    missing = watch_main(["--webhook", webhook, "--once", "--state-dir", str(tmp_path / "state")])
    missing_err = capsys.readouterr().err

    assert broken == 2, broken_err
    assert "configuration error" in broken_err
    assert "broken.toml" in broken_err
    assert "says more" in broken_err
    assert missing == 2, missing_err
    assert "the container does not exist" in missing_err


def test_in_process_delivery_for_gcp_uses_the_gcs_endpoint_it_was_given(
    gcs_emulator: Any,
    jobs_api: LocalJobsServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    store = GcsStore.from_environment({"STORAGE_EMULATOR_HOST": gcs_emulator.url, "GOOGLE_CLOUD_PROJECT": PROJECT})
    settings = fresh_settings(store)
    gcs_upload(gcs_emulator.client(), settings.landing.container, DAY, csv_bytes())
    for name, value in {
        # Another emulator's address: only --gcs-endpoint may decide where the core reads.
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "FILEGATE_LANDING": str(settings.landing),
        "FILEGATE_ARCHIVE": str(settings.archive),
        "FILEGATE_REJECTED": str(settings.rejected),
        "DATABRICKS_HOST": jobs_api.url,
        "DATABRICKS_TOKEN": "local-test-token",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("FILEGATE_JOB_ID", "FILEGATE_JOB_NAME", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)

    code = watch_main(
        [
            "--target",
            "gcp",
            "--gcs-endpoint",
            gcs_emulator.url,
            "--once",
            "--state-dir",
            str(tmp_path),
            "--retry-scale",
            "0",
        ]
    )

    assert code == 0
    assert store.stat(settings.archive.container, f"order_tracking/2024/03/05/{DAY}") is not None
    assert store.stat(settings.landing.container, DAY) is None
    [run] = jobs_api.runs()
    assert {p["name"]: p["value"] for p in run["job_parameters"]}["source_path"].startswith("gs://")


def _wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def test_a_4xx_ends_an_event_grid_delivery_at_once_but_eventarc_retries_it() -> None:
    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """Quiet: http.server would print every request to stderr."""

    event = Event("e1", "t", "landing", DAY, "1", {"id": "e1", "specversion": "1.0", "type": "t", "data": {}})
    with ThreadingHTTPServer(("127.0.0.1", 0), Refusing) as server:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        try:
            with pytest.raises(DeliveryFailed) as event_grid:
                deliver_event_grid_webhook(url)(event, 1)
            with pytest.raises(DeliveryFailed) as eventarc:
                deliver_cloudevent_binary(url)(event, 1)
        finally:
            server.shutdown()

    assert (event_grid.value.retry, eventarc.value.retry) == (False, True)
