"""What Filegate costs per event, next to the I/O it must do anyway, on Azurite and the local Jobs API.

    .venv/bin/python bench/bench_handler.py            # 1 KB, 100 MB, 1 GB; a burst of 1,000 events
    .venv/bin/python bench/bench_handler.py --quick    # 1 KB, 10 MB, 100 MB; a burst of 200 events

Prints tables and writes bench/results/handler.md. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.core import MatchConditions  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from filegate.azure_storage import AzureBlobStore  # noqa: E402
from filegate.contracts import load_contracts  # noqa: E402
from filegate.events import parse_event  # noqa: E402
from filegate.ingest import ARCHIVED, Gate, handle_payload  # noqa: E402
from filegate.jobs import DatabricksJobs, idempotency_token  # noqa: E402
from filegate.settings import Location, Settings  # noqa: E402
from tests.emulators import run_azurite  # noqa: E402
from tests.factories import blob_created, csv_bytes, tracking_row  # noqa: E402
from tests.jobs_api import local_jobs_api, workspace_client  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "handler.md"
BLOCK = 4 * 1024 * 1024
KB, MB, GB = 1024, 1024**2, 1024**3
FILE_ARRIVAL_POLL_SECONDS = 60.0


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_bytes: int


def csv_stream(size: int) -> Iterator[bytes]:
    """A valid order_tracking CSV of whole rows, about `size` bytes, produced block by block (never whole in memory)."""
    header = csv_bytes([])
    row = csv_bytes([tracking_row(1)]).removeprefix(header)
    rows_left = max(1, -(-(size - len(header)) // len(row)))
    per_block = max(1, BLOCK // len(row))
    yield header
    while rows_left > 0:
        count = min(rows_left, per_block)
        rows_left -= count
        yield row * count


def upload_streamed(service: BlobServiceClient, container: str, path: str, size: int) -> tuple[str, int]:
    """Block upload from a generator: big files are built in 4 MiB pieces; returns (etag, size)."""
    blob = service.get_blob_client(container, path)
    if size <= BLOCK:
        data = b"".join(csv_stream(size))
        return str(blob.upload_blob(data, overwrite=True)["etag"]).strip('"'), len(data)
    from azure.storage.blob import BlobBlock

    blocks, pending, index, total = [], b"", 0, 0
    for chunk in csv_stream(size):
        pending += chunk
        total += len(chunk)
        while len(pending) >= BLOCK:
            block_id = f"{index:08d}"
            blob.stage_block(block_id, pending[:BLOCK])
            blocks.append(BlobBlock(block_id))
            pending, index = pending[BLOCK:], index + 1
    if pending:
        block_id = f"{index:08d}"
        blob.stage_block(block_id, pending)
        blocks.append(BlobBlock(block_id))
    return str(blob.commit_block_list(blocks)["etag"]).strip('"'), total


def measure(action: Callable[[], Any], *, memory: bool = False) -> Sample:
    """Wall time, or (with `memory`) the peak of Python allocations: tracing slows code, so never both."""
    if memory:
        tracemalloc.start()
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if memory else 0
    if memory:
        tracemalloc.stop()
    return Sample(seconds, peak)


@dataclass
class Bench:
    service: BlobServiceClient
    gate: Gate
    client: Any
    job_id: int
    port: int
    settings: Settings

    def fresh_upload(self, size: int, name: str | None = None) -> dict[str, Any]:
        landing = self.settings.landing
        name = name or f"order_tracking_2024_03_{1 + uuid.uuid4().int % 28:02d}.csv"
        path = landing.path(f"{uuid.uuid4().hex[:8]}/{name}")
        etag, actual = upload_streamed(self.service, landing.container, path, size)
        return blob_created(landing.container, path, actual, etag, port=self.port)

    def filegate(self, event: dict[str, Any]) -> None:
        [outcome] = handle_payload(self.gate, event)
        assert outcome.status == ARCHIVED, outcome

    def floor(self, event: dict[str, Any]) -> None:
        """The same ranged read, copy, delete and run-now with raw SDK calls, no Filegate."""
        upload = parse_event(event)
        etag = f'"{event["data"]["eTag"]}"'
        source = self.service.get_blob_client(upload.container, upload.path)
        source.download_blob(
            offset=0,
            length=min(upload.size, self.settings.sample_bytes),
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        ).readall()
        target = self.service.get_blob_client(self.settings.archive.container, f"floor/{uuid.uuid4().hex}.csv")
        copy = target.start_copy_from_url(
            source.url,
            source_etag=etag,
            source_match_condition=MatchConditions.IfNotModified,
            match_condition=MatchConditions.IfMissing,
        )
        # The source may only go once the copy is complete, as in Filegate.
        status = copy.get("copy_status")
        while status == "pending":
            time.sleep(0.2)
            status = target.get_blob_properties().copy.status
        source.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
        self.client.jobs.run_now(
            job_id=self.job_id, job_parameters={"source_path": target.url}, idempotency_token=idempotency_token(upload)
        )


def size_label(size: int) -> str:
    return f"{size // GB} GB" if size >= GB else f"{size // MB} MB" if size >= MB else f"{size // KB} KB"


def per_size(bench: Bench, sizes: list[int], repeats: int) -> list[str]:
    rows = [
        "| file | Filegate median | floor median | overhead | Filegate peak Python memory | floor peak |",
        "|---|---|---|---|---|---|",
    ]
    for size in sizes:
        runs = repeats if size < 50 * MB else 2
        ours, floor = [], []
        for index in range(runs + 1):
            # Interleaved so that drift (Azurite's cache, disk) hits both sides alike; the extra
            # round measures memory only.
            memory = index == runs
            ours_event, floor_event = bench.fresh_upload(size), bench.fresh_upload(size)
            ours.append(measure(lambda event=ours_event: bench.filegate(event), memory=memory))
            floor.append(measure(lambda event=floor_event: bench.floor(event), memory=memory))
        ours, ours_mem, floor, floor_mem = ours[:-1], ours[-1], floor[:-1], floor[-1]
        ours_s = statistics.median(s.seconds for s in ours)
        floor_s = statistics.median(s.seconds for s in floor)
        rows.append(
            f"| {size_label(size)} | {ours_s * 1000:.1f} ms | {floor_s * 1000:.1f} ms | "
            f"{(ours_s - floor_s) * 1000:+.1f} ms | {ours_mem.peak_bytes / MB:.2f} MiB | "
            f"{floor_mem.peak_bytes / MB:.2f} MiB |"
        )
        print(rows[-1], flush=True)
    return rows


COLD_START = """
import json, sys, time
started = time.perf_counter()
import function_app
from filegate.ingest import handle_payload
imported = time.perf_counter()
[outcome] = handle_payload(function_app._gate(), json.loads(sys.argv[1]))
done = time.perf_counter()
print(json.dumps({"import": imported - started, "first_event": done - imported, "status": outcome.status}))
"""


def cold_start(bench: Bench, env: dict[str, str], repeats: int) -> list[str]:
    import json

    walls, imports, firsts = [], [], []
    for _ in range(repeats):
        event = bench.fresh_upload(KB)
        started = time.perf_counter()
        answer = subprocess.run(
            [sys.executable, "-c", COLD_START, json.dumps(event)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        walls.append(time.perf_counter() - started)
        figures = json.loads(answer.stdout.strip().splitlines()[-1])
        assert figures["status"] == ARCHIVED, figures
        imports.append(figures["import"])
        firsts.append(figures["first_event"])
    row = (
        f"| {statistics.median(walls):.2f} s | {statistics.median(imports):.2f} s | "
        f"{statistics.median(firsts) * 1000:.0f} ms |"
    )
    print(row, flush=True)
    return [
        "| process start to first outcome (wall) | `import function_app` | first event (SDK imports, job lookup) |",
        "|---|---|---|",
        row,
    ]


def burst(bench: Bench, count: int) -> list[str]:
    """One worker, `count` events queued at once: throughput and event-to-run-now latency."""
    events = [bench.fresh_upload(KB) for _ in range(count)]
    latencies = []
    started = time.perf_counter()
    for event in events:
        bench.filegate(event)
        latencies.append(time.perf_counter() - started)
    total = time.perf_counter() - started
    # Steady state: the event's own handling time, for a worker that is not behind.
    handling = [b - a for a, b in zip([0.0, *latencies], latencies, strict=False)]
    quantiles = statistics.quantiles(latencies, n=100)
    own = statistics.quantiles(handling, n=100)
    rows = [
        "| events | wall | throughput | queued latency p50 / p99 | per-event latency p50 / p99 | "
        "file-arrival trigger p50 / p99 |",
        "|---|---|---|---|---|---|",
        f"| {count} | {total:.1f} s | {count / total:.1f} events/s | {quantiles[49]:.1f} s / {quantiles[98]:.1f} s | "
        f"{own[49] * 1000:.0f} ms / {own[98] * 1000:.0f} ms | ~{FILE_ARRIVAL_POLL_SECONDS / 2:.0f} s / "
        f"~{FILE_ARRIVAL_POLL_SECONDS * 0.99:.0f} s (one-minute polling, at best) |",
    ]
    print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller files and burst")
    args = parser.parse_args(argv)
    sizes = [KB, 10 * MB, 100 * MB] if args.quick else [KB, 100 * MB, GB]
    events = 200 if args.quick else 1000
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as scratch,
        run_azurite() as azurite,
        local_jobs_api(Path(scratch) / "jobs") as server,
    ):
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        store = AzureBlobStore.from_setting(azurite.connection_string)
        store.create_containers("landing", "archive", "rejected")
        settings = Settings(
            landing=Location("landing", "incoming/"), archive=Location("archive"), rejected=Location("rejected")
        )
        client = workspace_client(server, retry_timeout_seconds=20, http_timeout_seconds=10)
        jobs = DatabricksJobs(settings, client)
        bench = Bench(
            service, Gate(settings, store, jobs, load_contracts()), client, jobs.job_id(), azurite.port, settings
        )
        env = {
            **os.environ,
            "FILEGATE_AZURE_STORAGE": azurite.connection_string,
            "FILEGATE_LANDING": "landing/incoming",
            "DATABRICKS_HOST": server.url,
            "DATABRICKS_TOKEN": "local-bench-token",
            "PYTHONPATH": str(ROOT),
        }
        print("## Handler vs floor, by file size", flush=True)
        sections = ["## Handler vs floor, by file size", "", *per_size(bench, sizes, 7), ""]
        print("## Cold start", flush=True)
        sections += ["## Cold start", "", *cold_start(bench, env, 3), ""]
        print(f"## Burst of {events} events, one worker", flush=True)
        sections += [f"## Burst of {events} events, one worker", "", *burst(bench, events), ""]
    header = [
        "# Handler benchmark",
        "",
        f"`{' '.join(['bench/bench_handler.py', *(['--quick'] if args.quick else [])])}` on "
        f"{platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()}), Azurite and the local "
        "Jobs API on loopback. Floor: the same ranged read, copy, delete and run-now with raw SDK calls."
        " Peak memory: Python "
        "allocations during the call (tracemalloc).",
        "",
    ]
    RESULTS.write_text("\n".join(header + sections) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
