"""What Filegate costs per event, next to the I/O it must do anyway, on Azurite and the local Jobs API.

    .venv/bin/python bench/bench_handler.py            # 1 KB, 100 MB, 1 GB; a burst of 1,000 events; 50 batches
    .venv/bin/python bench/bench_handler.py --quick    # 1 KB, 10 MB, 100 MB; a burst of 200 events; 20 batches
    .venv/bin/python bench/bench_handler.py --batches-only   # only the 50 batches against their floor

Prints tables and writes bench/results/handler.md (handler_quick.md with --quick). Not a test: figures
depend on the machine.
"""

from __future__ import annotations

import argparse
import json
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
from filegate.batches import MEMBER_ARCHIVED, SEALED, WAITING, batch_job_trigger  # noqa: E402
from filegate.contracts import load_contracts  # noqa: E402
from filegate.events import parse_event  # noqa: E402
from filegate.ingest import ARCHIVED, Gate, handle_payload  # noqa: E402
from filegate.jobs import DatabricksJobs, idempotency_token  # noqa: E402
from filegate.pipelines import load_pipelines  # noqa: E402
from filegate.settings import Location, Settings  # noqa: E402
from local_world.emulators import run_gcs_emulator, run_temporary_azurite  # noqa: E402
from local_world.inputs import blob_created, csv_bytes, tracking_row  # noqa: E402
from local_world.jobs_api.recording import BATCH_BUNDLE, FIXTURE_BUNDLE, local_jobs_api, workspace_client  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "handler.md"
# The quick run keeps its own file, so it never replaces the figures at the issues' sizes.
QUICK_RESULTS = ROOT / "bench" / "results" / "handler_quick.md"
BATCHES_RESULTS = ROOT / "bench" / "results" / "handler_batches.md"
BATCH_FLOOR = (
    "Floor of a batch piece: the same move (ranged read, conditional copy, conditional delete), one listing of "
    "the batch folder and, once the trigger is there, one per member, and for the sealing piece the trigger "
    "read, a create-only seal, run-now and a create-only run note, all with raw SDK calls. What Filegate adds "
    "over it is its decisions (contract match, trigger checks, version resolution, the token)."
)
BLOCK = 4 * 1024 * 1024
KB, MB, GB = 1024, 1024**2, 1024**3
FILE_ARRIVAL_POLL_SECONDS = 60.0


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_bytes: int


def csv_stream(size: int) -> Iterator[bytes]:
    """A valid order_tracking CSV of whole rows, about `size` bytes, produced block by block (never whole in memory).

    Its first row is unique: the same bytes again under a name already archived would be `identical`
    (not archived, no run), which is not the path measured here.
    """
    header = csv_bytes([])
    row = csv_bytes([tracking_row(1)]).removeprefix(header)
    rows_left = max(1, -(-(size - len(header)) // len(row))) - 1
    per_block = max(1, BLOCK // len(row))
    yield header + csv_bytes([tracking_row(uuid.uuid4().int % 10**15)]).removeprefix(header)
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
    server: Any
    batch_job_id: int = 0

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
        target = self.move(event, f"floor/{uuid.uuid4().hex}.csv")
        self.client.jobs.run_now(
            job_id=self.job_id, job_parameters={"source_path": target.url}, idempotency_token=idempotency_token(upload)
        )

    def move(self, event: dict[str, Any], archived: str) -> Any:
        """Raw SDK calls: the ranged read, the conditional copy to `archived`, the conditional delete."""
        upload = parse_event(event)
        etag = f'"{event["data"]["eTag"]}"'
        source = self.service.get_blob_client(upload.container, upload.path)
        source.download_blob(
            offset=0,
            length=min(upload.size, self.settings.sample_bytes),
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        ).readall()
        target = self.service.get_blob_client(self.settings.archive.container, archived)
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
        return target

    def floor_piece(self, event: dict[str, Any], folder: str, members: tuple[str, ...], *, seal: bool) -> None:
        """A batch piece with raw SDK calls: move it, list the batch folder and each member's, and (when it
        completes the batch) read the trigger, write the seal create-only, run-now, write the run note."""
        upload = parse_event(event)
        name = upload.path.rsplit("/", 1)[-1]
        # The trigger goes to the batch folder, a member to its dataset's folder.
        place = "_batches" if name.endswith(".json") else name.rsplit("_", 3)[0]
        self.move(event, f"{folder}/{place}/{name}")
        archive = self.service.get_container_client(self.settings.archive.container)
        listed = list(archive.list_blobs(name_starts_with=f"{folder}/_batches/"))
        for member in members:
            listed += archive.list_blobs(name_starts_with=f"{folder}/{member}/")
        if not seal:
            return
        trigger = next(blob.name for blob in listed if blob.name.endswith(".json"))
        archive.get_blob_client(trigger).download_blob().readall()
        sealed = f"{folder}/_batches/_sealed.r1.json"
        manifest = json.dumps({"members": [blob.name for blob in listed]}).encode()
        archive.get_blob_client(sealed).upload_blob(manifest, overwrite=False)
        token = "fg1-" + uuid.uuid4().hex
        self.client.jobs.run_now(
            job_id=self.batch_job_id, job_parameters={"source_path": sealed}, idempotency_token=token
        )
        archive.get_blob_client(f"{folder}/_batches/_run.r1.json").upload_blob(b"{}", overwrite=False)


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


GCP_COLD_START = """
import json, logging, sys, time
started = time.perf_counter()
import main
from cloudevents.http import CloudEvent
imported = time.perf_counter()
lines = []
handler = logging.Handler()
handler.emit = lambda record: lines.append(record.getMessage())
logging.getLogger("filegate").addHandler(handler)
event = json.loads(sys.argv[1])
data = event.pop("data")
main.on_object_finalized(CloudEvent(event, data))
done = time.perf_counter()
status = json.loads(lines[-1])["status"]  # the outcome's own log line
print(json.dumps({"import": imported - started, "first_event": done - imported, "status": status}))
"""


def cold_start_row(label: str, script: str, events: Iterator[dict[str, Any]], cwd: Path, env: dict[str, str]) -> str:
    """Fresh interpreters, each importing the function module and handling one event: medians."""
    import json

    walls, imports, firsts = [], [], []
    for event in events:
        started = time.perf_counter()
        answer = subprocess.run(
            [sys.executable, "-c", script, json.dumps(event)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        walls.append(time.perf_counter() - started)
        assert answer.returncode == 0, answer.stderr[-3000:]
        figures = json.loads(answer.stdout.strip().splitlines()[-1])
        assert figures["status"] == ARCHIVED, figures
        imports.append(figures["import"])
        firsts.append(figures["first_event"])
    row = (
        f"| {label} | {statistics.median(walls):.2f} s | {statistics.median(imports):.2f} s | "
        f"{statistics.median(firsts) * 1000:.0f} ms |"
    )
    print(row, flush=True)
    return row


def gcp_events(emulator_url: str, landing: str, repeats: int) -> Iterator[dict[str, Any]]:
    """Finalize events for fresh 1 KB uploads to the GCS emulator, as Eventarc sends them."""
    from local_world.inputs import gcs_uploader

    put = gcs_uploader(emulator_url)
    for _ in range(repeats):
        name = f"order_tracking_2024_04_{1 + uuid.uuid4().int % 28:02d}.csv"
        yield put(landing, f"{uuid.uuid4().hex[:8]}/{name}", b"".join(csv_stream(KB)))


def cold_start(bench: Bench, env: dict[str, str], repeats: int, scratch: Path) -> list[str]:
    rows = [
        "| function | process start to first outcome (wall) | import the function module | "
        "first event (SDK imports, job lookup, the event) |",
        "|---|---|---|---|",
        cold_start_row("Azure `function_app`", COLD_START, (bench.fresh_upload(KB) for _ in range(repeats)), ROOT, env),
    ]
    with run_gcs_emulator() as port:
        emulator_url = f"http://127.0.0.1:{port}"
        from filegate.gcs_storage import GcsStore

        build = [sys.executable, str(ROOT / "gcp_function" / "build.py"), "--out", str(scratch)]
        subprocess.run(build, check=True, stdout=subprocess.DEVNULL)
        source = scratch / "gcp_function"
        suffix = uuid.uuid4().hex[:8]
        buckets = (f"landing-{suffix}", f"archive-{suffix}", f"rejected-{suffix}")
        GcsStore.from_environment({"STORAGE_EMULATOR_HOST": emulator_url}).create_buckets(*buckets)
        gcp_env = {
            **env,
            "STORAGE_EMULATOR_HOST": emulator_url,
            "GOOGLE_CLOUD_PROJECT": "filegate-local",
            "FILEGATE_LANDING": buckets[0],
            "FILEGATE_ARCHIVE": buckets[1],
            "FILEGATE_REJECTED": buckets[2],
            "PYTHONPATH": str(source),
        }
        gcp_env.pop("FILEGATE_AZURE_STORAGE", None)
        events = gcp_events(emulator_url, buckets[0], repeats)
        rows.append(cold_start_row("GCP `main` (built folder)", GCP_COLD_START, events, source, gcp_env))
    return rows


def burst(bench: Bench, count: int, threads: int) -> str:
    """`count` events arrive at once at one worker running `threads` handlers side by side.

    Event-to-run-now latency is measured to the moment the Jobs API received the `run-now`
    request (its own clock, same process), not to the end of the handler.
    """
    from concurrent.futures import ThreadPoolExecutor

    events = [bench.fresh_upload(KB) for _ in range(count)]
    tokens = [idempotency_token(parse_event(event)) for event in events]
    seen = len(bench.server.requests("run-now"))
    arrived = time.time()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(bench.filegate, events))
    total = time.perf_counter() - started
    received = {r.body["idempotency_token"]: r.time for r in bench.server.requests("run-now")[seen:]}
    latencies = [received[token] - arrived for token in tokens]
    p = statistics.quantiles(latencies, n=100)
    return (
        f"| {count} at once | {threads} | {total:.1f} s | {count / total:.1f} events/s | "
        f"{statistics.median(latencies):.1f} s / {p[98]:.1f} s |"
    )


def steady(bench: Bench, count: int) -> str:
    """Events one at a time, each to an idle worker: the latency an event sees when nothing queues."""
    latencies = []
    for _ in range(count):
        event = bench.fresh_upload(KB)
        seen = len(bench.server.requests("run-now"))
        arrived = time.time()
        bench.filegate(event)
        latencies.append(bench.server.requests("run-now")[seen].time - arrived)
    p = statistics.quantiles(latencies, n=100)
    return f"| one at a time | 1 | | | {statistics.median(latencies) * 1000:.0f} ms / {p[98] * 1000:.0f} ms |"


def latency(bench: Bench, count: int) -> list[str]:
    # The file-arrival trigger polls about once a minute: an upload waits a uniform 0-60 s for the
    # next check before its run can even be queued.
    poll = FILE_ARRIVAL_POLL_SECONDS
    rows = [
        "| events | handler threads | wall | throughput | event to run-now p50 / p99 |",
        "|---|---|---|---|---|",
        steady(bench, min(count, 200)),
        burst(bench, count, 1),
        burst(bench, count, 8),
        f"| file-arrival trigger | | | | ~{poll / 2:.0f} s / ~{poll * 0.99:.0f} s (polling, before any queueing) |",
    ]
    for row in rows[2:]:
        print(row, flush=True)
    return rows


class CountingStore:
    """The bench's store, counting the calls Filegate makes: the work per event, whatever the machine."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name not in ("read_prefix", "stat", "copy", "put", "delete", "list"):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            result = attribute(*args, **kwargs)
            return list(result) if name == "list" else result

        return counted


SAMPLES = ROOT / "data" / "samples" / "ecommerce"
MEMBERS = ("customers", "products", "inventory", "orders", "shipping")


def pipeline_events(bench: Bench, store: AzureBlobStore, count: int) -> list[str]:
    """Per batch: four members before the trigger, the trigger, then the member that seals; single files alongside.

    Each batch is repeated as its floor: the same moves, listings, seal and run-now with raw SDK calls
    (`Bench.floor_piece`), interleaved with Filegate's so that drift hits both alike.
    """
    from dataclasses import replace
    from datetime import date, timedelta

    counting = CountingStore(store)
    gate = replace(bench.gate, store=counting)
    kinds = (
        "single file (order_tracking, 1 KB)",
        "member before the trigger",
        "trigger, four of five members there",
        "sealing member (seal + run-now)",
    )
    seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
    floors: dict[str, list[float]] = {kind: [] for kind in kinds}
    calls: dict[str, dict[str, int]] = {kind: {} for kind in kinds}
    landing = bench.settings.landing
    trigger = (SAMPLES / "trigger_2025_01_15.json").read_bytes()

    def upload(name: str, data: bytes) -> dict[str, Any]:
        path = landing.path(f"{uuid.uuid4().hex[:8]}/{name}")
        blob = bench.service.get_blob_client(landing.container, path)
        etag = str(blob.upload_blob(data, overwrite=True)["etag"]).strip('"')
        return blob_created(landing.container, path, len(data), etag, port=bench.port)

    def timed(kind: str, event: dict[str, Any], expected: str) -> None:
        counting.calls = {}
        started = time.perf_counter()
        [outcome] = handle_payload(gate, event)
        seconds[kind].append(time.perf_counter() - started)
        assert outcome.status == expected, outcome
        for name, number in counting.calls.items():
            calls[kind][name] = calls[kind].get(name, 0) + number

    def floor(kind: str, event: dict[str, Any], folder: str, *, listed: tuple[str, ...], seal: bool = False) -> None:
        started = time.perf_counter()
        bench.floor_piece(event, folder, listed, seal=seal)
        floors[kind].append(time.perf_counter() - started)

    for n in range(count):
        day = date(2026, 1, 1) + timedelta(days=n)
        stamp = f"{day:%Y_%m_%d}"
        folder = f"floor/{stamp}"
        # A name of its own, so that no archive name collides and the single file does its minimum work.
        timed(kinds[0], bench.fresh_upload(KB, f"order_tracking_{stamp}.csv"), ARCHIVED)
        single = bench.fresh_upload(KB, f"order_tracking_{stamp}.csv")
        started = time.perf_counter()
        bench.floor(single)
        floors[kinds[0]].append(time.perf_counter() - started)
        for dataset in MEMBERS[:4]:
            data = (SAMPLES / f"{dataset}_2025_01_15.csv").read_bytes()
            timed(kinds[1], upload(f"{dataset}_{stamp}.csv", data), MEMBER_ARCHIVED)
            # Without a trigger the batch folder's listing is all a member needs.
            floor(kinds[1], upload(f"{dataset}_{stamp}.csv", data), folder, listed=())
        content = trigger.replace(b"2025-01-15", day.isoformat().encode()).replace(b"2025_01_15", stamp.encode())
        timed(kinds[2], upload(f"trigger_{stamp}.json", content), WAITING)
        floor(kinds[2], upload(f"trigger_{stamp}.json", content), folder, listed=MEMBERS)
        data = (SAMPLES / "shipping_2025_01_15.csv").read_bytes()
        timed(kinds[3], upload(f"shipping_{stamp}.csv", data), SEALED)
        floor(kinds[3], upload(f"shipping_{stamp}.csv", data), folder, listed=MEMBERS, seal=True)
    return pipeline_rows(kinds, seconds, floors, calls)


def pipeline_rows(
    kinds: tuple[str, ...],
    seconds: dict[str, list[float]],
    floors: dict[str, list[float]],
    calls: dict[str, dict[str, int]],
) -> list[str]:
    """The pipeline table: each kind of event's medians next to its floor's, and the calls each made."""
    rows = [
        "| event | Filegate median | p90 | floor median | overhead | storage calls per event "
        "(list / stat / read / copy / put / delete) | floor's calls | run-now |",
        "|---|---|---|---|---|---|---|---|",
    ]
    floor_calls = ("0 / 0 / 1 / 1 / 0 / 1", "1 / 0 / 1 / 1 / 0 / 1", "6 / 0 / 1 / 1 / 0 / 1", "6 / 0 / 2 / 1 / 2 / 1")
    for kind, floor_shown in zip(kinds, floor_calls, strict=True):
        values = sorted(seconds[kind])
        p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
        per = {
            name: calls[kind].get(name, 0) / len(values)
            for name in ("list", "stat", "read_prefix", "copy", "put", "delete")
        }
        shown = " / ".join(f"{value:g}" for value in per.values())
        run_now = "1" if kind in (kinds[0], kinds[3]) else "0"
        ours, bare = statistics.median(values), statistics.median(floors[kind])
        rows.append(
            f"| {kind} | {ours * 1000:.1f} ms | {p90 * 1000:.1f} ms | {bare * 1000:.1f} ms | "
            f"{(ours - bare) * 1000:+.1f} ms | {shown} | {floor_shown} | {run_now} |"
        )
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller files and burst")
    parser.add_argument(
        "--batches-only",
        action="store_true",
        help="only the pipeline-batch events against their floor (into handler_batches.md)",
    )
    args = parser.parse_args(argv)
    sizes = [KB, 10 * MB, 100 * MB] if args.quick else [KB, 100 * MB, GB]
    events = 200 if args.quick else 1000
    batch_count = 20 if args.quick else 50
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as scratch,
        run_temporary_azurite(ROOT) as azurite,
        local_jobs_api(Path(scratch) / "jobs", bundle=[FIXTURE_BUNDLE, BATCH_BUNDLE]) as server,
    ):
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        store = AzureBlobStore.from_setting(azurite.connection_string)
        store.create_containers("landing", "archive", "rejected")
        settings = Settings(
            landing=Location("landing", "incoming/"), archive=Location("archive"), rejected=Location("rejected")
        )
        client = workspace_client(server, retry_timeout_seconds=20, http_timeout_seconds=10)
        jobs = DatabricksJobs(settings, client)
        contracts = load_contracts()
        gate = Gate(
            settings,
            store,
            jobs,
            contracts,
            pipelines=load_pipelines(contracts),
            batch_jobs=batch_job_trigger(settings, client_of=jobs),
        )
        assert gate.batch_jobs is not None
        batch_job_id = gate.batch_jobs.job_id()
        bench = Bench(service, gate, client, jobs.job_id(), azurite.port, settings, server, batch_job_id)
        env = {
            **os.environ,
            "FILEGATE_AZURE_STORAGE": azurite.connection_string,
            "FILEGATE_LANDING": "landing/incoming",
            "DATABRICKS_HOST": server.url,
            "DATABRICKS_TOKEN": "local-bench-token",
            "PYTHONPATH": str(ROOT),
        }
        sections: list[str] = []
        if not args.batches_only:
            print("## Handler vs floor, by file size", flush=True)
            sections += ["## Handler vs floor, by file size", "", *per_size(bench, sizes, 7), ""]
        title = f"## Pipeline batches: {batch_count} batches of five members and a trigger, next to the single file"
        print(title, flush=True)
        sections += [title, "", *pipeline_events(bench, store, batch_count), ""]
        if args.batches_only:
            sections += [BATCH_FLOOR, ""]
            return _write(BATCHES_RESULTS, ["--batches-only", *(["--quick"] if args.quick else [])], sections)
        print("## Cold start", flush=True)
        sections += ["## Cold start", "", *cold_start(bench, env, 3, Path(scratch) / "gcp"), ""]
        title = f"## Event to run-now: one at a time, and {events} events at once on one worker"
        print(title, flush=True)
        sections += [title, "", *latency(bench, events), ""]
    return _write(QUICK_RESULTS if args.quick else RESULTS, ["--quick"] if args.quick else [], sections)


def _write(results: Path, flags: list[str], sections: list[str]) -> int:
    header = [
        "# Handler benchmark",
        "",
        f"`{' '.join(['.venv/bin/python bench/bench_handler.py', *flags])}` on "
        f"{platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()}), Azurite and the local "
        "Jobs API on loopback. Floor: the same ranged read, copy, delete and run-now with raw SDK calls."
        " Peak memory: Python "
        "allocations during the call (tracemalloc).",
        "",
    ]
    results.write_text("\n".join(header + sections) + "\n", encoding="utf-8")
    print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
