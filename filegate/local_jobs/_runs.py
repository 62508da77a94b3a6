"""Runs of local jobs: their records, persistence, idempotency tokens, and the per-job worker that runs them."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filegate.local_jobs._bundle import BundleError, JobSpec, TaskSpec, references, resolve_references
from filegate.local_jobs._tasks import SourceStorage, TaskFailed, TaskInvocation, TaskRunner, fetch_source, is_remote

log = logging.getLogger("filegate.local_jobs")

ACTIVE_STATES = frozenset({"BLOCKED", "PENDING", "QUEUED", "RUNNING", "TERMINATING", "WAITING"})
# Run ids start well above job ids so that a job id passed as a run id is caught, not silently accepted.
FIRST_RUN_ID = 1001
SOURCE_PARAMETER = "source_path"
SOURCE_REFERENCE = f"job.parameters.{SOURCE_PARAMETER}"


def now_ms() -> int:
    """Epoch milliseconds, the Jobs API's time unit."""
    return int(time.time() * 1000)


@dataclass
class Termination:
    """Why a run or task ended: the `status.termination_details` and the legacy result state."""

    result: str
    code: str
    type: str
    message: str


STOPPED = Termination("CANCELED", "CANCELED", "CLIENT_ERROR", "the local Jobs API stopped")


@dataclass
class TaskRecord:
    """One task of one run."""

    task_key: str
    run_id: int
    state: str = "PENDING"
    start_time: int = 0
    end_time: int = 0
    arguments: list[str] = field(default_factory=list)
    log_file: str = ""
    termination: Termination | None = None


@dataclass
class RunRecord:
    """One run of a job, as kept on disk and served by `runs/get`."""

    run_id: int
    job_id: int
    number_in_job: int
    run_name: str
    parameters: dict[str, str]
    idempotency_token: str | None
    start_time: int
    state: str = "QUEUED"
    running_time: int = 0
    end_time: int = 0
    source_file: str = ""
    tasks: list[TaskRecord] = field(default_factory=list)
    termination: Termination | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        tasks = [
            TaskRecord(**{**t, "termination": Termination(**t["termination"]) if t.get("termination") else None})
            for t in data.pop("tasks", [])
        ]
        termination = data.pop("termination", None)
        return cls(**data, tasks=tasks, termination=Termination(**termination) if termination else None)


class RunStore:
    """All runs, one JSON file each under `<state>/runs`, so a restarted server knows old runs and tokens."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._folder = state_dir / "runs"
        self._folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._runs: dict[int, RunRecord] = {}
        self._tokens: dict[str, int] = {}
        for path in self._folder.glob("*.json"):
            run = RunRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
            self._runs[run.run_id] = run
            if run.idempotency_token:
                self._tokens[run.idempotency_token] = run.run_id
        ids = [run.run_id for run in self._runs.values()]
        ids += [task.run_id for run in self._runs.values() for task in run.tasks]
        self._next_id = max([FIRST_RUN_ID - 1, *ids]) + 1

    def create(self, job: JobSpec, parameters: dict[str, str], token: str | None) -> tuple[RunRecord, bool]:
        """A new queued run, or the existing run holding this idempotency token (then False)."""
        with self._lock:
            # One lock covers lookup and creation: concurrent requests with one token start one run.
            if token is not None and token in self._tokens:
                return self._runs[self._tokens[token]], False
            run_id = self._allocate_id()
            number = 1 + sum(1 for run in self._runs.values() if run.job_id == job.job_id)
            tasks = [TaskRecord(task.task_key, self._allocate_id()) for task in job.tasks]
            run = RunRecord(run_id, job.job_id, number, job.name, parameters, token, now_ms(), tasks=tasks)
            self._runs[run_id] = run
            if token is not None:
                self._tokens[token] = run_id
            self._write(run)
            return run, True

    def get(self, run_id: int) -> RunRecord | None:
        with self._lock:
            return self._runs.get(run_id)

    def snapshot(self, run_id: int) -> dict[str, Any] | None:
        """A consistent copy of a run as plain data, safe to render while the worker changes it."""
        with self._lock:
            run = self._runs.get(run_id)
            return asdict(run) if run else None

    def listing(self, job_id: int | None = None) -> list[dict[str, Any]]:
        """Copies of runs, newest first, optionally of one job."""
        with self._lock:
            runs = [r for r in self._runs.values() if job_id is None or r.job_id == job_id]
            runs.sort(key=lambda r: (r.start_time, r.run_id), reverse=True)
            return [asdict(r) for r in runs]

    def update(self, run: RunRecord, change: Callable[[RunRecord], None]) -> None:
        """Apply a change to a run under the lock and persist it."""
        with self._lock:
            change(run)
            self._write(run)

    def unfinished(self) -> list[RunRecord]:
        with self._lock:
            return sorted((r for r in self._runs.values() if r.active), key=lambda r: r.run_id)

    def _allocate_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _write(self, run: RunRecord) -> None:
        path = self._folder / f"{run.run_id}.json"
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(asdict(run), indent=1), encoding="utf-8")
        os.replace(partial, path)  # atomic: a crash never leaves half a run on disk


class JobWorker:
    """Runs the runs of one job one at a time, in the order they were queued (the bundle's queueing)."""

    def __init__(
        self,
        job: JobSpec,
        store: RunStore,
        runner: TaskRunner,
        storage: SourceStorage | None,
        workdir: Path,
        stopping: threading.Event,
    ) -> None:
        self.job = job
        self._store = store
        self._runner = runner
        self._storage = storage
        self._workdir = workdir
        self._stopping = stopping
        self._queue: queue.Queue[int] = queue.Queue()
        self._idle = threading.Condition()
        self._busy = 0
        self._thread = threading.Thread(target=self._work, name=f"local-job-{job.job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, run: RunRecord) -> None:
        with self._idle:
            self._busy += 1
        self._queue.put(run.run_id)

    def join(self, timeout: float) -> None:
        self._queue.put(0)  # wakes the worker so it sees the stop flag
        self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted run has ended; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _work(self) -> None:
        while True:
            run_id = self._queue.get()
            run = self._store.get(run_id)
            if self._stopping.is_set():
                if run is not None:
                    self._end_run(run, STOPPED)
                self._done()
                if self._queue.empty():
                    return
                continue
            if run is not None:
                try:
                    self._execute(run)
                except Exception as exc:  # a bug here must end the run, not the worker
                    log.exception("run %s: internal error", run_id)
                    self._end_run(run, Termination("FAILED", "INTERNAL_ERROR", "INTERNAL_ERROR", repr(exc)))
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def _execute(self, run: RunRecord) -> None:
        def start(r: RunRecord) -> None:
            r.state = "RUNNING"
            r.running_time = now_ms()

        self._store.update(run, start)
        log.info("run %s of job %s (%s) started", run.run_id, self.job.job_id, self.job.name)
        values = self._reference_values(run)
        source = run.parameters.get(SOURCE_PARAMETER, "")
        extra: list[str] = []
        if self._storage is not None and is_remote(source):
            try:
                local = fetch_source(source, self._store.state_dir / "inputs" / str(run.run_id), self._storage)
            except TaskFailed as exc:
                message = str(exc)
                self._skip_all(run, message)
                self._end_run(run, Termination("FAILED", "STORAGE_ACCESS_ERROR", "CLIENT_ERROR", message))
                return
            self._store.update(run, lambda r: setattr(r, "source_file", str(local)))
            values[SOURCE_REFERENCE] = str(local)
            # Spark reads the local copy; the job still learns which cloud object it loads.
            extra = ["--source-file", source]
        results: dict[str, str] = {}
        for spec, record in zip(self.job.tasks, run.tasks, strict=True):
            failed_upstream = [d for d in spec.depends_on if results.get(d) != "SUCCESS"]
            if failed_upstream:
                message = f"Upstream task(s) {', '.join(failed_upstream)} did not succeed."
                self._end_task(run, record, Termination("UPSTREAM_FAILED", "SKIPPED", "CLIENT_ERROR", message))
            else:
                wants_source = SOURCE_REFERENCE in references(spec.parameters)
                self._run_task(run, record, spec, values, extra if wants_source else [])
            assert record.termination is not None
            results[spec.task_key] = record.termination.result
        self._end_run(run, self._run_termination(run))

    def _run_task(
        self, run: RunRecord, record: TaskRecord, spec: TaskSpec, values: dict[str, str], extra: list[str]
    ) -> None:
        log_file = self._store.state_dir / "logs" / str(run.run_id) / f"{record.task_key}.log"
        values = {**values, "task.name": spec.task_key, "task.run_id": str(record.run_id)}
        try:
            arguments = [*resolve_references(spec.parameters, values), *extra]
        except BundleError as exc:
            self._end_task(run, record, Termination("FAILED", "INVALID_RUN_CONFIGURATION", "CLIENT_ERROR", str(exc)))
            return

        def start(_: RunRecord) -> None:
            record.state = "RUNNING"
            record.start_time = now_ms()
            record.arguments = arguments
            record.log_file = str(log_file)

        self._store.update(run, start)
        invocation = TaskInvocation(
            job_id=self.job.job_id,
            job_name=self.job.name,
            run_id=run.run_id,
            task_key=spec.task_key,
            task_run_id=record.run_id,
            kind=spec.kind,
            declared_file=spec.declared_file,
            python_file=spec.python_file,
            arguments=tuple(arguments),
            parameters=dict(run.parameters),
            log_file=log_file,
            workdir=self._workdir,
            cancelled=self._stopping,
        )
        try:
            self._runner(invocation)
        except TaskFailed as exc:
            termination = Termination("FAILED", "RUN_EXECUTION_ERROR", "CLIENT_ERROR", str(exc))
        except Exception as exc:
            termination = Termination("FAILED", "RUN_EXECUTION_ERROR", "CLIENT_ERROR", f"{type(exc).__name__}: {exc}")
            _append_log(log_file, traceback.format_exc())
        else:
            termination = Termination("SUCCESS", "SUCCESS", "SUCCESS", "")
        if self._stopping.is_set() and termination.result != "SUCCESS":
            termination = STOPPED
        self._end_task(run, record, termination)
        log.info("run %s task %s: %s %s", run.run_id, spec.task_key, termination.result, termination.message[:200])

    def _reference_values(self, run: RunRecord) -> dict[str, str]:
        values = {f"job.parameters.{name}": value for name, value in run.parameters.items()}
        values.update({"job.id": str(self.job.job_id), "job.name": self.job.name, "job.run_id": str(run.run_id)})
        values["job.start_time.iso_datetime"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(run.start_time / 1000))
        return values

    def _skip_all(self, run: RunRecord, message: str) -> None:
        for record in run.tasks:
            if record.termination is None:
                self._end_task(run, record, Termination("UPSTREAM_FAILED", "SKIPPED", "CLIENT_ERROR", message))

    def _end_task(self, run: RunRecord, record: TaskRecord, termination: Termination) -> None:
        def end(_: RunRecord) -> None:
            record.state = "TERMINATED"
            record.end_time = now_ms()
            record.start_time = record.start_time or record.end_time
            record.termination = termination

        self._store.update(run, end)

    def _end_run(self, run: RunRecord, termination: Termination) -> None:
        def end(r: RunRecord) -> None:
            r.state = "TERMINATED"
            r.end_time = now_ms()
            r.running_time = r.running_time or r.end_time
            r.termination = termination
            for record in r.tasks:
                if record.termination is None:
                    record.state = "TERMINATED"
                    record.end_time = r.end_time
                    record.start_time = record.start_time or r.end_time
                    record.termination = Termination(termination.result, "SKIPPED", termination.type, "not run")

        self._store.update(run, end)
        log.info("run %s ended: %s %s", run.run_id, termination.result, termination.message[:200])

    @staticmethod
    def _run_termination(run: RunRecord) -> Termination:
        terminations = [t.termination for t in run.tasks if t.termination is not None]
        if any(t.result == "CANCELED" for t in terminations):
            return STOPPED
        failed = [t for t in run.tasks if t.termination and t.termination.result == "FAILED"]
        if failed:
            first = failed[0]
            assert first.termination is not None
            message = f"Task {first.task_key} failed with message: {first.termination.message}"
            return Termination("FAILED", first.termination.code, first.termination.type, message)
        if any(t.result != "SUCCESS" for t in terminations):
            return Termination("FAILED", "RUN_EXECUTION_ERROR", "CLIENT_ERROR", "Some tasks did not run.")
        return Termination("SUCCESS", "SUCCESS", "SUCCESS", "")


def recover_unfinished(store: RunStore, workers: dict[int, JobWorker], jobs: Iterable[JobSpec]) -> None:
    """After a restart: queued runs are queued again; runs that were running are failed, their work lost."""
    known = {job.job_id for job in jobs}
    for run in store.unfinished():
        if run.state == "QUEUED" and run.job_id in known:
            workers[run.job_id].submit(run)
            continue

        def fail(r: RunRecord) -> None:
            r.state = "TERMINATED"
            r.end_time = now_ms()
            r.running_time = r.running_time or r.end_time
            message = "the local Jobs API stopped while this run was active"
            r.termination = Termination("FAILED", "INTERNAL_ERROR", "INTERNAL_ERROR", message)
            for record in r.tasks:
                if record.termination is None:
                    record.state = "TERMINATED"
                    record.end_time = r.end_time
                    record.start_time = record.start_time or r.end_time
                    record.termination = Termination("FAILED", "INTERNAL_ERROR", "INTERNAL_ERROR", message)

        store.update(run, fail)


def _append_log(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as sink:
        sink.write(text)
