"""The demo's flow: the sample files uploaded in a realistic order, their events delivered, the runs awaited."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from filegate.ingest import ARCHIVED, REJECTED, Outcome
from filegate.jobs import run_state
from filegate.status import (
    duration_seconds,
    format_duration,
)
from local_world import print_line
from local_world.demo._world import DemoError, LocalWorld
from local_world.watch import AzuriteSource, DeliveryReport, Event, RetryPolicy, Watcher, deliver_in_process

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import Run

    from filegate.ingest import Gate


@dataclass(frozen=True)
class PlannedUpload:
    """One sample file, in the order it is uploaded, with what should happen to it."""

    path: Path
    expected: str
    note: str = ""


@dataclass
class FileResult:
    """What the function did with one uploaded file."""

    upload: PlannedUpload
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome | None:
        return self.outcomes[-1] if self.outcomes else None


# -- the flow ----------------------------------------------------------------------------------------------


def plan_uploads(samples: Path) -> list[PlannedUpload]:
    """Days in date order, except that the second-newest day arrives after the newest; bad files last."""
    days = sorted(samples.glob("*.csv"))
    bad = sorted(path for path in (samples / "bad").glob("*") if path.is_file())
    if not days:
        raise DemoError(f"no sample files (*.csv) in {samples}")
    planned = [PlannedUpload(path, ARCHIVED) for path in days]
    if len(planned) >= 2:
        late = replace(planned[-2], note="late: arrives after a newer day")
        planned[-2:] = [planned[-1], late]
    planned += [PlannedUpload(path, REJECTED, "bad") for path in bad]
    return planned


class Progress:
    """Timestamped progress lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print_line(f"[{time.monotonic() - self.started:6.1f}s] {message}", self.out)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def upload_and_deliver(
    world: LocalWorld, plan: Sequence[PlannedUpload], progress: Progress, timeout: float = 60.0
) -> list[FileResult]:
    """Upload each file and let the watcher deliver its event before the next one arrives."""
    from azure.storage.blob import BlobClient, ContentSettings

    results = [FileResult(item) for item in plan]
    # A name may be uploaded again (a corrected file, a late correction): an event belongs to the upload of
    # its path that is under way; each upload waits for its event before the next one starts.
    current: dict[str, FileResult] = {}
    delivered = threading.Condition()

    def sink(event: Event, outcomes: list[Outcome]) -> None:
        with delivered:
            result = current.get(event.path)
            if result is not None:
                result.outcomes.extend(outcomes)
            delivered.notify_all()

    last_failure: dict[str, str] = {}

    def listener(report: DeliveryReport) -> None:
        if not report.delivered:
            last_failure[report.event.path] = report.detail
            progress(f"  delivery of {report.event.path} failed (attempt {report.attempt}): {report.detail}")

    watcher = Watcher(
        AzuriteSource(world.connection_string),
        [world.settings.landing],
        deliver_in_process(gate_of(world), sink),
        world.state / "watch",
        policy=RetryPolicy(max_attempts=4, scale=0.05),
        listener=listener,
    )
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop, 0.25), name="filegate-watch", daemon=True)
    thread.start()
    progress(f"Watcher: polling {world.settings.landing} and delivering BlobCreated events to the function's core")
    try:
        for item, result in zip(plan, results, strict=True):
            path = world.settings.landing.path(item.path.name)
            with delivered:
                current[path] = result
            blob = BlobClient.from_connection_string(world.connection_string, world.settings.landing.container, path)
            content_type = "application/json" if item.path.suffix == ".json" else "text/csv"
            blob.upload_blob(
                item.path.read_bytes(), overwrite=True, content_settings=ContentSettings(content_type=content_type)
            )
            with delivered:
                if not delivered.wait_for(lambda: bool(result.outcomes), timeout):  # noqa: B023 - waited on here
                    failure = last_failure.get(path)
                    why = f"; the last attempt failed: {failure}" if failure else "; see the log for why"
                    raise DemoError(f"no event was delivered for {path} within {timeout:.0f} s{why}")
                del current[path]
            note = f" ({item.note})" if item.note else ""
            progress(f"Uploaded {item.path.name}{note} -> {_describe(result)}")
    finally:
        stop.set()
        thread.join(10)
    return results


def gate_of(world: LocalWorld) -> Gate:
    """The function's core as the demo's uploads meet it (`filegate batches` reads with it too)."""
    from filegate.azure_storage import AzureBlobStore
    from filegate.batches import batch_job_trigger
    from filegate.jobs import DatabricksJobs
    from filegate.runtime import build_gate

    store = AzureBlobStore.from_settings(world.settings)
    gate = build_gate(store, world.settings)
    jobs = DatabricksJobs(world.settings, world.client)
    batch_jobs = batch_job_trigger(world.settings, client_of=jobs) if world.batch_job else None
    return replace(gate, jobs=jobs, batch_jobs=batch_jobs)


def _describe(result: FileResult) -> str:
    outcome = result.outcome
    if outcome is None:
        return "no event delivered"
    if outcome.status == ARCHIVED:
        return f"archived, run {outcome.run_id} queued"
    if outcome.status == REJECTED:
        return f"rejected: {'; '.join(outcome.reasons)}"
    run = f" (run {outcome.run_id})" if outcome.run_id is not None else ""
    return f"{outcome.status}{run}: {'; '.join(outcome.reasons)}"


def wait_for_runs(
    client: WorkspaceClient, run_ids: Sequence[int], names: dict[int, str], progress: Progress, timeout: float
) -> dict[int, Run]:
    """Poll the runs until all have ended, printing each change of state or task."""
    deadline = time.monotonic() + timeout
    last: dict[int, str] = {}
    finished: dict[int, Run] = {}
    while len(finished) < len(run_ids):
        for run_id in run_ids:
            if run_id in finished:
                continue
            run = client.jobs.get_run(run_id)
            state = run_state(run)
            running = [task.task_key for task in run.tasks or () if run_state(task) == "RUNNING"]
            label = f"{state} {running[0]}" if running else state
            if label != last.get(run_id):
                last[run_id] = label
                took = f" in {format_duration(duration_seconds(run))}" if run.end_time else ""
                progress(f"Run {run_id} ({names.get(run_id, '?')}): {label.lower()}{took}")
            if run.end_time:
                finished[run_id] = run
        if len(finished) < len(run_ids):
            if time.monotonic() > deadline:
                active = sorted(set(run_ids) - set(finished))
                raise DemoError(
                    f"runs still active after {timeout:.0f} s: {active}; on a slow or busy machine give them longer "
                    f"with --timeout (e.g. --timeout {2 * timeout:.0f}, beside the options you gave)"
                )
            time.sleep(1.0)
    return finished
