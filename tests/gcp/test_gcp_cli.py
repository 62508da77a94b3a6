"""`filegate handle EVENT.json` with a GCS CloudEvent: the operator's re-drive, as a real subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from filegate.gcs_storage import GcsStore
from local_world.inputs import csv_bytes
from local_world.jobs_api.recording import local_jobs_api
from tests.gcp.eventarc import finalized_event, upload
from tests.gcp.world import BIN, GcsEmulator, fresh_settings, function_env

NAME = "order_tracking_2024_05_01.csv"


def test_handle_accepts_a_gcs_cloudevent_file(gcs_emulator: GcsEmulator, gcs_store: GcsStore, tmp_path: Path) -> None:
    settings = fresh_settings(gcs_store)
    client = gcs_emulator.client()
    blob = upload(client, settings.landing.container, NAME, csv_bytes())
    event_file = tmp_path / "event.json"
    # A malformed event first: the store was chosen by the first event alone, so Azure was opened and the
    # good GCS event ignored as the other cloud's.
    # A deletion's event is a GCS one too, though not one Filegate handles.
    deleted = {"id": "d1", "type": "google.cloud.storage.object.v1.deleted", "source": "x", "subject": "objects/x"}
    event_file.write_text(json.dumps([{"id": "junk"}, deleted, finalized_event(blob)]), encoding="utf-8")

    with local_jobs_api(tmp_path / "jobs") as jobs:
        env = function_env(gcs_emulator, settings, jobs.url)
        done = subprocess.run(
            [str(BIN / "filegate"), "handle", str(event_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        runs = jobs.runs()

    assert done.returncode == 0, done.stderr
    malformed, other, outcome = [json.loads(line) for line in done.stdout.splitlines()]
    assert (malformed["status"], other["status"]) == ("ignored", "ignored")
    path = f"order_tracking/2024/05/01/{NAME}"
    assert outcome["status"] == "archived"
    assert outcome["source_uri"] == f"gs://{settings.archive.container}/{path}"
    assert client.bucket(settings.archive.container).get_blob(path) is not None
    assert [run["run_id"] for run in runs] == [outcome["run_id"]]
