"""Runs of local jobs: their records, kept on disk one JSON file each, with the idempotency tokens they hold."""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filegate.errors import FilegateError
from filegate.jobs import ACTIVE_STATES
from local_world.jobs_api._bundle import JobSpec
from local_world.jobs_api._lock import FolderLock

# The life-cycle states this server gives runs and tasks (Jobs API 2.2 `status.state`).
PENDING = "PENDING"
QUEUED = "QUEUED"
RUNNING = "RUNNING"
TERMINATED = "TERMINATED"
# A task's next attempt while it waits out min_retry_interval_millis (`status.state` WAITING).
WAITING_FOR_RETRY = "WAITING_FOR_RETRY"

# Run ids start well above job ids so that a job id passed as a run id is caught, not silently accepted.
FIRST_RUN_ID = 1001


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

    @property
    def failed(self) -> bool:
        """Whether the task or run ended without doing its work: failed or timed out (not cancelled or skipped)."""
        return self.result in ("FAILED", "TIMEDOUT")


SUCCEEDED = Termination("SUCCESS", "SUCCESS", "SUCCESS", "")
USER_CANCELED = Termination("CANCELED", "USER_CANCELED", "SUCCESS", "Run cancelled through runs/cancel.")
SKIPPED_BUSY = Termination(
    "MAXIMUM_CONCURRENT_RUNS_REACHED",
    "MAX_CONCURRENT_RUNS_EXCEEDED",
    "CLIENT_ERROR",
    "Skipped: the job already has max_concurrent_runs active runs, and queueing is disabled.",
)


@dataclass
class TaskRecord:
    """One attempt at one task of a run; `error` and `error_trace` are what `runs/get-output` reports for it.

    As on Databricks, each retry is a task run of its own: a new run id, the next `attempt_number`.
    """

    task_key: str
    run_id: int
    state: str = PENDING
    attempt_number: int = 0
    start_time: int = 0
    end_time: int = 0
    arguments: list[str] = field(default_factory=list)
    log_file: str = ""
    termination: Termination | None = None
    error: str = ""
    error_trace: str = ""

    def end(self, termination: Termination, at: int) -> None:
        self.state = TERMINATED
        self.end_time = at
        self.start_time = self.start_time or at
        self.termination = termination


@dataclass
class RunRecord:
    """One run of a job, as kept on disk and served by `runs/get`."""

    run_id: int
    job_id: int
    run_name: str
    parameters: dict[str, str]
    idempotency_token: str | None
    start_time: int
    state: str = QUEUED
    running_time: int = 0
    end_time: int = 0
    source_file: str = ""
    tasks: list[TaskRecord] = field(default_factory=list)
    termination: Termination | None = None
    # How often a stop of the local Jobs API interrupted this run and put it back in the queue.
    interruptions: int = 0
    # The task run ids of retries a requeue dropped: never handed out again, since a client may hold one.
    retired_ids: list[int] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def end(self, termination: Termination, at: int, *, unfinished: Termination | None = None) -> None:
        """Terminate the run; tasks that have not ended end with `unfinished` (by default: skipped, not run)."""
        self.state = TERMINATED
        self.end_time = at
        self.running_time = self.running_time or at
        self.termination = termination
        leftover = unfinished or Termination(termination.result, "SKIPPED", termination.type, "not run")
        for task in self.tasks:
            if task.termination is None:
                task.end(leftover, at)

    def requeue(self) -> None:
        """Back to the queue, as if never started: its tasks are idempotent, so the next attempt redoes them."""
        self.state = QUEUED
        self.running_time = self.end_time = 0
        self.termination = None
        self.interruptions += 1
        self.retired_ids += [task.run_id for task in self.tasks if task.attempt_number > 0]
        self.tasks = [TaskRecord(task.task_key, task.run_id) for task in self.tasks if task.attempt_number == 0]

    def final_attempts(self) -> list[TaskRecord]:
        """The latest attempt of each task, in task order: what decides the run's result."""
        latest: dict[str, TaskRecord] = {}
        for task in self.tasks:
            latest[task.task_key] = task
        return list(latest.values())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        tasks = [
            TaskRecord(**{**t, "termination": Termination(**t["termination"]) if t.get("termination") else None})
            for t in data.pop("tasks", [])
        ]
        termination = data.pop("termination", None)
        data.pop("number_in_job", None)  # kept by servers before number_in_job became the run id
        return cls(**data, tasks=tasks, termination=Termination(**termination) if termination else None)


class RunFileUnreadable(FilegateError):
    """A run file in the state folder that is not a run this server wrote."""


def _read_run(path: Path) -> RunRecord:
    try:
        return RunRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as exc:
        raise RunFileUnreadable(
            f"{path} is not a run this server can read ({type(exc).__name__}: {exc}); move it out of the "
            "folder, or start with another --state-dir"
        ) from exc


class RunStore:
    """All runs, one JSON file each under `<state>/runs`, so a restarted server knows old runs and tokens.

    The store holds the state folder's lock from creation to `close`: a second server on the same
    folder is refused instead of handing out the same run ids.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self._folder_lock = FolderLock(self.state_dir, "local Jobs API").acquire()
        self._folder = self.state_dir / "runs"
        self._lock = threading.RLock()
        self._runs: dict[int, RunRecord] = {}
        self._tokens: dict[str, int] = {}
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            for path in self._folder.glob("*.json"):
                run = _read_run(path)
                self._runs[run.run_id] = run
                if run.idempotency_token:
                    self._tokens[run.idempotency_token] = run.run_id
        except BaseException:
            self._folder_lock.release()
            raise
        ids = [run.run_id for run in self._runs.values()]
        ids += [task.run_id for run in self._runs.values() for task in run.tasks]
        ids += [retired for run in self._runs.values() for retired in run.retired_ids]
        self._next_id = max([FIRST_RUN_ID - 1, *ids]) + 1

    def close(self) -> None:
        """Give up the state folder."""
        self._folder_lock.release()

    def create(
        self, job: JobSpec, parameters: dict[str, str], token: str | None, *, skip_when_busy: bool = False
    ) -> tuple[RunRecord, bool]:
        """A new queued run, or the existing run holding this idempotency token (then False).

        With `skip_when_busy` (a job without queueing) a run created while the job already has
        `max_concurrent_runs` active runs ends at once as skipped, as Databricks does; with
        `max_concurrent_runs` 0 every new run does.
        """
        with self._lock:
            # One lock covers lookup, the busy check and creation: concurrent requests with one token
            # start one run, and two requests cannot both find the job idle.
            if token is not None and token in self._tokens:
                return self._runs[self._tokens[token]], False
            active = sum(1 for r in self._runs.values() if r.job_id == job.job_id and r.active)
            busy = job.max_concurrent_runs == 0 or (skip_when_busy and active >= job.max_concurrent_runs)
            run_id = self._allocate_id()
            tasks = [TaskRecord(task.task_key, self._allocate_id()) for task in job.tasks]
            run = RunRecord(run_id, job.job_id, job.name, parameters, token, now_ms(), tasks=tasks)
            if busy:
                run.end(SKIPPED_BUSY, now_ms())
            self._runs[run_id] = run
            if token is not None:
                self._tokens[token] = run_id
            self._write(run)
            return run, True

    def add_attempt(self, run: RunRecord, failed: TaskRecord) -> TaskRecord:
        """The next attempt at a failed task, waiting for its retry, listed right after the failed one."""
        with self._lock:
            retry = TaskRecord(failed.task_key, self._allocate_id(), WAITING_FOR_RETRY, failed.attempt_number + 1)
            run.tasks.insert(run.tasks.index(failed) + 1, retry)
            self._write(run)
            return retry

    def get(self, run_id: int) -> RunRecord | None:
        with self._lock:
            return self._runs.get(run_id)

    def owner_of_task(self, task_run_id: int) -> tuple[RunRecord, TaskRecord] | None:
        """The run a task run id belongs to, with that task."""
        with self._lock:
            for run in self._runs.values():
                for task in run.tasks:
                    if task.run_id == task_run_id:
                        return run, task
            return None

    def snapshot(self, run_id: int) -> RunRecord | None:
        """A consistent copy of a run, safe to render while the worker changes the original."""
        with self._lock:
            run = self._runs.get(run_id)
            return copy.deepcopy(run) if run else None

    def listing(self, job_id: int | None = None) -> list[RunRecord]:
        """Copies of runs, newest first, optionally of one job."""
        with self._lock:
            runs = [r for r in self._runs.values() if job_id is None or r.job_id == job_id]
            runs.sort(key=lambda r: (r.start_time, r.run_id), reverse=True)
            return [copy.deepcopy(r) for r in runs]

    def update(self, run: RunRecord, change: Callable[[RunRecord], None]) -> None:
        """Apply a change to a run under the lock and persist it."""
        with self._lock:
            change(run)
            self._write(run)

    def transition(self, run: RunRecord, expected: str, change: Callable[[RunRecord], None]) -> bool:
        """Apply a change only while the run is in the `expected` state; whether it was applied."""
        with self._lock:
            if run.state != expected:
                return False
            change(run)
            self._write(run)
            return True

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
