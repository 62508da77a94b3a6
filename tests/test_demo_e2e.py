"""The demo's flow end to end on a reduced data set: Azurite, watcher, function core, local Jobs API, local Spark."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from filegate import demo, status
from filegate.local_jobs import repository_root
from tests.factories import COLUMNS, csv_bytes, tracking_row
from tests.jobs_api import RecordingRunner, local_jobs_api

REPOSITORY_BUNDLE = repository_root() / "infra" / "databricks" / "resources" / "filegate_ingest.job.yml"


def write_samples(folder: Path) -> None:
    """Two days and a bad file; parcel 1 is delivered on the newer day, which the late older day must not undo."""
    older = [
        tracking_row(1, status="IN_TRANSIT", status_ts="2024-03-05T08:00:00Z"),
        tracking_row(2, status="PICKED_UP", status_ts="2024-03-05T09:00:00Z"),
    ]
    newer = [
        tracking_row(1, status="DELIVERED", status_ts="2024-03-06T10:00:00Z"),
        *(tracking_row(n, status="LABEL_CREATED", status_ts="2024-03-06T11:00:00Z") for n in range(3, 12)),
        # One bad row in eleven: within the contract's bad-row ratio, so the job rejects the row, not the file.
        tracking_row(99, status="LOST_IN_SPACE", status_ts="2024-03-06T12:00:00Z"),
    ]
    (folder / "bad").mkdir(parents=True)
    (folder / "order_tracking_2024_03_05.csv").write_bytes(csv_bytes(older))
    (folder / "order_tracking_2024_03_06.csv").write_bytes(csv_bytes(newer))
    wrong_header = ["tracking_number", *COLUMNS[1:]]
    (folder / "bad" / "order_tracking_2024_03_07.csv").write_bytes(csv_bytes([tracking_row(5)], header=wrong_header))


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.spark
def test_uploads_are_delivered_loaded_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    samples, state = tmp_path / "samples", tmp_path / "demo"
    write_samples(samples)
    out = io.StringIO()

    code = demo.run_demo(samples, state, repository_root(), out, timeout=480)

    report = out.getvalue()
    assert code == 0, report
    progress = [line.split("] ", 1)[1] for line in report.splitlines() if line.startswith("[")]
    uploads = [line for line in progress if line.startswith("Uploaded")]
    assert uploads[0].startswith("Uploaded order_tracking_2024_03_06.csv -> archived, run ")
    assert uploads[1].startswith("Uploaded order_tracking_2024_03_05.csv (late: arrives after a newer day) -> archived")
    assert uploads[2].startswith("Uploaded order_tracking_2024_03_07.csv (bad) -> rejected: header is missing columns")
    assert "Done in " in report
    assert "2 runs, all as expected." in report

    # The target holds the latest status per parcel: the late older day did not undo the delivery.
    target = {row["tracking_num"]: row for row in demo.read_table(state / "warehouse" / "order_tracking") or []}
    assert {key: row["status"] for key, row in target.items()} == {
        tracking_row(1)["tracking_num"]: "DELIVERED",
        tracking_row(2)["tracking_num"]: "PICKED_UP",
        **{tracking_row(n)["tracking_num"]: "LABEL_CREATED" for n in range(3, 12)},
    }
    [reject] = demo.read_table(state / "warehouse" / "order_tracking_rejects") or []
    assert "LOST_IN_SPACE" in reject["reason"]
    log = demo.read_table(state / "warehouse" / "processing_log") or []
    assert sorted(
        (row["source_file"].rsplit("/", 1)[-1], row["status"]) for row in log if row["task"] == "target_load"
    ) == [
        ("order_tracking_2024_03_05.csv", "SUCCEEDED"),
        ("order_tracking_2024_03_06.csv", "SUCCEEDED"),
    ]
    assert "Target table order_tracking" in report
    assert "LOST_IN_SPACE" in report

    # Everything the demo started is stopped: Azurite's port is closed.
    azurite_port = int(report.split("Azurite blob service on http://127.0.0.1:")[1].split("/")[0])
    assert not listening(azurite_port)

    # `filegate status` reads the same runs back from the local Jobs API's state.
    with local_jobs_api(state / "jobs", runner=RecordingRunner(), bundle=REPOSITORY_BUNDLE) as api:
        monkeypatch.setenv("DATABRICKS_HOST", api.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", "local-test-token")
        for name in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "FILEGATE_JOB_ID", "FILEGATE_JOB_NAME"):
            monkeypatch.delenv(name, raising=False)
        assert status.main([]) == 0
    listing = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in listing[2:]]
    assert [row[1] for row in rows] == ["SUCCESS", "SUCCESS"]
    assert listing[2].split()[-2].endswith("/order_tracking/2024/03/05/order_tracking_2024_03_05.csv")
    assert listing[3].split()[-2].endswith("/order_tracking/2024/03/06/order_tracking_2024_03_06.csv")


def test_the_upload_plan_sends_one_day_late_and_the_bad_file_last(tmp_path: Path) -> None:
    write_samples(tmp_path)

    plan = demo.plan_uploads(tmp_path)

    assert [(item.path.name, item.expected) for item in plan] == [
        ("order_tracking_2024_03_06.csv", "archived"),
        ("order_tracking_2024_03_05.csv", "archived"),
        ("order_tracking_2024_03_07.csv", "rejected"),
    ]
