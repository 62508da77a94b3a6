"""The per-job worker: runs a job's runs in queue order, up to its `max_concurrent_runs` at once, the bundle's
queueing.

A stop of the local Jobs API never ends a run: waiting runs stay QUEUED on disk, and a run that was
executing is put back in the queue (its tasks are idempotent: stage_load replaces its batch,
target_load merges only newer versions), so the next start finishes both. Only `runs/cancel` ends a
run as CANCELED.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from local_world.jobs_api._bundle import BundleError, JobSpec, TaskSpec, references, resolve_references
from local_world.jobs_api._runs import (
    QUEUED,
    RUNNING,
    SUCCEEDED,
    USER_CANCELED,
    RunRecord,
    RunStore,
    TaskRecord,
    Termination,
    now_ms,
)
from local_world.jobs_api._tasks import SourceStorage, TaskFailed, TaskInvocation, TaskRunner, fetch_source, is_remote

log = logging.getLogger("local_world.jobs_api")

SOURCE_PARAMETER = "source_path"
SOURCE_REFERENCE = f"job.parameters.{SOURCE_PARAMETER}"

# Tasks the job's timeout kept from running (or from their retry), as the run's cancellation leaves them.
NOT_RUN_TIMED_OUT = Termination("CANCELED", "SKIPPED", "CLIENT_ERROR", "not run: the run timed out")


@dataclass
class _Active:
    """The run a worker is executing, and how to interrupt it (change it under the worker's `_active_lock`)."""

    run_id: int
    interrupt: threading.Event = field(default_factory=threading.Event)
    by_user: bool = False
    # The job's timeout_seconds ran out: the platform cancels the run, which ends TIMEDOUT.
    timed_out: bool = False
    # Stops the attempt under way; its own timeout sets it too, without interrupting the run.
    attempt: threading.Event | None = None

    def stop(self, *, by_user: bool = False, timed_out: bool = False) -> None:
        self.by_user = self.by_user or by_user
        self.timed_out = self.timed_out or timed_out
        self.interrupt.set()
        if self.attempt is not None:
            self.attempt.set()


class JobWorker:
    """Runs the runs of one job in the order they were queued, as many at once as its `max_concurrent_runs`.

    One thread per run that may execute at once, all taking runs from one queue: a run waits while
    that many are executing, as on Databricks.
    """

    def __init__(
        self,
        job: JobSpec,
        store: RunStore,
        runner: TaskRunner,
        storage: SourceStorage | None,
        workdir: Path,
        stopping: threading.Event,
        retry_interval_ms: int | None = None,
    ) -> None:
        self.job = job
        self._store = store
        self._runner = runner
        self._storage = storage
        self._workdir = workdir
        self._stopping = stopping
        self._retry_interval_ms = retry_interval_ms
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._idle = threading.Condition()
        self._busy = 0
        self._active: dict[int, _Active] = {}
        self._active_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"local-job-{job.job_id}-{slot}", daemon=True)
            for slot in range(max(1, job.max_concurrent_runs))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, run: RunRecord) -> None:
        with self._idle:
            self._busy += 1
        self._queue.put(run.run_id)

    def cancel(self, run_id: int) -> bool:
        """Interrupt the run if this worker is executing it; False when it is not."""
        with self._active_lock:
            active = self._active.get(run_id)
            if active is None:
                return False
            active.stop(by_user=True)
            return True

    def stop(self, timeout: float) -> None:
        """Interrupt the executing runs (they go back to the queue), end the threads; call after `stopping` is set."""
        with self._active_lock:
            for active in self._active.values():
                active.stop()
        for _ in self._threads:
            self._queue.put(None)  # wakes an idle thread so that it sees the stop
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted run has ended; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _work(self) -> None:
        while True:
            run_id = self._queue.get()
            if run_id is None or self._stopping.is_set():
                return  # what is still in the queue stays QUEUED on disk for the next start
            run = self._store.get(run_id)
            try:
                # A runner may need runs to take turns (classic Spark); a stop while waiting leaves it QUEUED.
                with self._turn() as mine:
                    if run is not None and mine:
                        self._execute(run)
            except Exception as exc:  # a bug here must end the run, not the worker
                log.exception("run %s: internal error", run_id)
                if run is not None:
                    self._end_run(run, Termination("FAILED", "INTERNAL_ERROR", "INTERNAL_ERROR", repr(exc)))
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _turn(self) -> AbstractContextManager[bool]:
        one_at_a_time = getattr(self._runner, "one_run_at_a_time", None)
        return nullcontext(True) if one_at_a_time is None else one_at_a_time(self._stopping)

    def _execute(self, run: RunRecord) -> None:
        active = _Active(run.run_id)
        with self._active_lock:
            self._active[run.run_id] = active
            if self._stopping.is_set():
                active.interrupt.set()
        timer = _start_timer(self.job.timeout_seconds, lambda: self._time_out(active))
        try:
            self._execute_tasks(run, active)
        finally:
            if timer is not None:
                timer.cancel()
            with self._active_lock:
                self._active.pop(run.run_id, None)

    def _time_out(self, active: _Active) -> None:
        with self._active_lock:
            active.stop(timed_out=True)

    def _execute_tasks(self, run: RunRecord, active: _Active) -> None:
        def start(r: RunRecord) -> None:
            r.state = RUNNING
            r.running_time = now_ms()

        # Atomic against runs/cancel: a run cancelled while it waited is not started.
        if not self._store.transition(run, QUEUED, start):
            return
        log.info("run %s of job %s (%s) started", run.run_id, self.job.job_id, self.job.name)
        values = self._reference_values(run)
        source = run.parameters.get(SOURCE_PARAMETER, "")
        extra: list[str] = []
        if self._storage is not None and is_remote(source):
            try:
                local = fetch_source(source, self._store.state_dir / "inputs" / str(run.run_id), self._storage)
            except TaskFailed as exc:
                message = str(exc)
                self._end_run(
                    run,
                    Termination("FAILED", "STORAGE_ACCESS_ERROR", "CLIENT_ERROR", message),
                    unfinished=Termination("UPSTREAM_FAILED", "SKIPPED", "CLIENT_ERROR", message),
                )
                return
            self._store.update(run, lambda r: setattr(r, "source_file", str(local)))
            values[SOURCE_REFERENCE] = str(local)
            # Spark reads the local copy; the job still learns which cloud object it loads.
            extra = ["--source-file", source]
        results: dict[str, str] = {}
        for spec in self.job.tasks:
            if active.interrupt.is_set():
                break  # no new task after a stop, a cancel or the job's timeout
            record = next(task for task in run.tasks if task.task_key == spec.task_key)
            failed_upstream = [d for d in spec.depends_on if results.get(d) != "SUCCESS"]
            if failed_upstream:
                message = f"Upstream task(s) {', '.join(failed_upstream)} did not succeed."
                self._end_task(run, record, Termination("UPSTREAM_FAILED", "SKIPPED", "CLIENT_ERROR", message))
            else:
                wants_source = SOURCE_REFERENCE in references(spec.parameters)
                record = self._run_attempts(run, record, spec, values, extra if wants_source else [], active)
            if record.termination is None:
                break  # interrupted: by a stop the run goes back to the queue, else it ends below
            results[spec.task_key] = record.termination.result
        if active.interrupt.is_set() and not active.by_user and not active.timed_out:
            self._store.update(run, RunRecord.requeue)
            log.info("run %s interrupted by the stop; queued again for the next start", run.run_id)
            return
        unfinished = NOT_RUN_TIMED_OUT if active.timed_out else None
        self._end_run(run, self._run_termination(run, active), unfinished=unfinished)

    def _run_attempts(
        self,
        run: RunRecord,
        record: TaskRecord,
        spec: TaskSpec,
        values: dict[str, str],
        extra: list[str],
        active: _Active,
    ) -> TaskRecord:
        """Run a task, then retry it as its max_retries and retry_on_timeout allow; its last attempt.

        Tasks that depend on it start only after that last attempt, as on Databricks.
        """
        while True:
            self._run_task(run, record, spec, values, extra, active)
            if active.interrupt.is_set() or not _retryable(spec, record):
                return record
            retry = self._store.add_attempt(run, record)
            wait = self._retry_wait(spec, record)
            log.info("run %s task %s: retry %s in %.1f s", run.run_id, spec.task_key, retry.attempt_number, wait)
            if active.interrupt.wait(wait):
                return retry  # not started: a stop queues the run again, a cancel or timeout ends it
            record = retry

    def _retry_wait(self, spec: TaskSpec, failed: TaskRecord) -> float:
        """Seconds until the retry may start: min_retry_interval_millis counts from the failed attempt's start."""
        interval = spec.min_retry_interval_millis if self._retry_interval_ms is None else self._retry_interval_ms
        return max(0, failed.start_time + interval - now_ms()) / 1000

    def _run_task(
        self,
        run: RunRecord,
        record: TaskRecord,
        spec: TaskSpec,
        values: dict[str, str],
        extra: list[str],
        active: _Active,
    ) -> None:
        # A retry's log beside the first attempt's, so that no attempt's output is overwritten.
        name = record.task_key if record.attempt_number == 0 else f"{record.task_key}.retry-{record.attempt_number}"
        log_file = self._store.state_dir / "logs" / str(run.run_id) / f"{name}.log"
        values = {**values, "task.name": spec.task_key, "task.run_id": str(record.run_id)}
        try:
            arguments = [*resolve_references(spec.parameters, values), *extra]
        except BundleError as exc:
            self._end_task(run, record, Termination("FAILED", "INVALID_RUN_CONFIGURATION", "CLIENT_ERROR", str(exc)))
            return

        def start(_: RunRecord) -> None:
            record.state = RUNNING
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
            cancelled=threading.Event(),
        )
        outcome = self._attempt(invocation, spec, active)
        if outcome is None:
            return  # a stop, not a failure: the record stays open and the run is queued again
        termination, error, trace = outcome

        def end(_: RunRecord) -> None:
            record.error, record.error_trace = error, trace
            record.end(termination, now_ms())

        self._store.update(run, end)  # one write: the task's end and its error together
        log.info("run %s task %s: %s %s", run.run_id, spec.task_key, termination.result, termination.message[:200])

    def _attempt(
        self, invocation: TaskInvocation, spec: TaskSpec, active: _Active
    ) -> tuple[Termination, str, str] | None:
        """Run one attempt under its timeout: how it ended, its error and trace; None when a stop cut it short."""
        stop = invocation.cancelled
        with self._active_lock:
            active.attempt = stop
            if active.interrupt.is_set():
                stop.set()
        timed_out = threading.Event()

        def time_out() -> None:
            timed_out.set()
            stop.set()  # the runner stops the task's process group: the task and all it started

        log_file = invocation.log_file
        error = trace = ""
        timer = _start_timer(spec.timeout_seconds, time_out)
        try:
            self._runner(invocation)
        except TaskFailed as exc:
            termination = Termination("FAILED", "RUN_EXECUTION_ERROR", "CLIENT_ERROR", str(exc))
            error, trace = exc.error or str(exc), exc.trace
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            termination = Termination("FAILED", "RUN_EXECUTION_ERROR", "CLIENT_ERROR", message)
            error, trace = message, traceback.format_exc()
            _append_log(log_file, trace)
        else:
            termination = SUCCEEDED
        finally:
            if timer is not None:
                timer.cancel()
            with self._active_lock:
                active.attempt = None
        if termination.result != "SUCCESS" and (active.timed_out or timed_out.is_set()):
            limit = (
                f"the job's timeout_seconds ({self.job.timeout_seconds} s)"
                if active.timed_out
                else f"timeout_seconds ({spec.timeout_seconds} s)"
            )
            termination = Termination("TIMEDOUT", "CANCELED", "CLIENT_ERROR", f"Timed out: {limit} ran out.")
            error, trace = termination.message, ""
            _append_log(log_file, f"\n--- timed out: {limit} ran out and the task was killed ---\n")
        elif active.interrupt.is_set() and termination.result != "SUCCESS":
            if not active.by_user:
                return None
            termination, error, trace = USER_CANCELED, "", ""
        return termination, error, trace

    def _reference_values(self, run: RunRecord) -> dict[str, str]:
        values = {f"job.parameters.{name}": value for name, value in run.parameters.items()}
        values.update({"job.id": str(self.job.job_id), "job.name": self.job.name, "job.run_id": str(run.run_id)})
        values["job.start_time.iso_datetime"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(run.start_time / 1000))
        return values

    def _end_task(self, run: RunRecord, record: TaskRecord, termination: Termination) -> None:
        self._store.update(run, lambda _: record.end(termination, now_ms()))

    def _end_run(self, run: RunRecord, termination: Termination, *, unfinished: Termination | None = None) -> None:
        self._store.update(run, lambda r: r.end(termination, now_ms(), unfinished=unfinished))
        log.info("run %s ended: %s %s", run.run_id, termination.result, termination.message[:200])

    def _run_termination(self, run: RunRecord, active: _Active) -> Termination:
        # Only each task's last attempt counts: a failure that a retry made good is no failure of the run.
        finals = run.final_attempts()
        succeeded = all(t.termination is not None and t.termination.result == "SUCCESS" for t in finals)
        # The job's timeout may fire after the last task succeeded, before the run ended: it ran in time.
        if active.timed_out and not succeeded:
            message = f"Run timed out: the job's timeout_seconds ({self.job.timeout_seconds} s) ran out."
            return Termination("TIMEDOUT", "CANCELED", "CLIENT_ERROR", message)
        if active.by_user:
            return USER_CANCELED
        failed = [t for t in finals if t.termination and t.termination.failed]
        if failed:
            first = failed[0]
            assert first.termination is not None
            message = f"Task {first.task_key} failed with message: {first.termination.message}"
            return Termination(first.termination.result, first.termination.code, first.termination.type, message)
        if not succeeded:
            return Termination("FAILED", "RUN_EXECUTION_ERROR", "CLIENT_ERROR", "Some tasks did not run.")
        return SUCCEEDED


def recover_unfinished(store: RunStore, workers: dict[int, JobWorker], jobs: Iterable[JobSpec]) -> None:
    """After a restart, queue again every run that had not ended; a run of a job the bundle no longer declares fails.

    A run left RUNNING on disk was cut short by a crash (a clean stop queues it again itself): its
    tasks are idempotent, so it runs again from the start.
    """
    known = {job.job_id for job in jobs}
    for run in store.unfinished():
        if run.job_id not in known:
            gone = Termination("FAILED", "INTERNAL_ERROR", "INTERNAL_ERROR", f"job {run.job_id} is no longer declared")
            store.update(run, lambda r: r.end(gone, now_ms()))  # noqa: B023 - called at once
            continue
        if run.state != QUEUED:
            store.update(run, RunRecord.requeue)
        workers[run.job_id].submit(run)


def _retryable(spec: TaskSpec, attempt: TaskRecord) -> bool:
    """Whether a finished attempt gets another: a failure always, a timeout only with retry_on_timeout."""
    result = attempt.termination.result if attempt.termination else ""
    wanted = result == "FAILED" or (result == "TIMEDOUT" and spec.retry_on_timeout)
    return wanted and spec.retries_left(attempt.attempt_number)


def _start_timer(seconds: int, action: Callable[[], None]) -> threading.Timer | None:
    """Call `action` after `seconds` (none for 0, which means no timeout); cancel the timer when done."""
    if not seconds:
        return None
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    return timer


def _append_log(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as sink:
        sink.write(text)
