"""The Spark that local tasks run on: one warm Spark Connect server shared by every task, or a JVM per task.

Databricks serverless runs a job's Python through Spark Connect, each task in its own process, so
`connect` (the default) is both the faithful and the fast way: the server starts once, on the
first Spark task, and each task process then connects in about a second instead of starting its
own JVM (about 15 s on 2 cores). `classic` is the fallback: when the Connect server cannot start,
the tasks start their own local Spark as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from local_world.emulators import EmulatorError, is_listening, run_spark_connect
from local_world.jobs_api._tasks import TaskFailed, TaskInvocation, classic_environment, run_command, task_command
from spark_jobs.delta_jars import DeltaJarsMissing

log = logging.getLogger("local_world.jobs_api")

CONNECT = "connect"
CLASSIC = "classic"
SPARK_MODES = (CONNECT, CLASSIC)
# How often the keeper checks that the Connect server still answers; a dead one is restarted on next use.
_HEALTH_SECONDS = 2.0
# How long ending a task's Connect session may take before the worker goes on without it.
_END_SESSION_SECONDS = 10.0

Notify = Callable[[str], None]


class _ConnectServer:
    """One attempt at a running Connect server, kept up by a thread until closed or dead."""

    def __init__(self, log_file: Path, workdir: Path, driver_memory: str, on_ready: Notify) -> None:
        self.ready = threading.Event()
        self._on_ready = on_ready
        self.url: str | None = None
        self.error = ""
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._keep, args=(log_file, workdir, driver_memory), name="spark-connect", daemon=True
        )
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float = 30.0) -> None:
        self._closing.set()
        self._thread.join(timeout)

    def _keep(self, log_file: Path, workdir: Path, driver_memory: str) -> None:
        started = time.monotonic()
        try:
            with run_spark_connect(
                log_file, driver_memory=driver_memory, cwd=workdir, cancelled=self._closing
            ) as server:
                self.url = server.url
                self.ready.set()
                self._on_ready(f"Spark Connect server ready on {server.url} after {time.monotonic() - started:.1f} s")
                while not self._closing.wait(_HEALTH_SECONDS):
                    if not is_listening(server.port):
                        log.error("the Spark Connect server on %s stopped answering; see %s", server.url, log_file)
                        return
        except (EmulatorError, DeltaJarsMissing) as exc:
            self.error = str(exc)
        except Exception as exc:  # whatever went wrong, a task must not wait forever
            log.exception("the Spark Connect server failed")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()


class LocalSpark:
    """Hands each task process the Spark it should use; owns the Connect server it starts."""

    def __init__(
        self,
        mode: str,
        log_file: Path,
        workdir: Path,
        *,
        driver_memory: str = "2g",
        notify: Notify | None = None,
    ) -> None:
        if mode not in SPARK_MODES:
            raise ValueError(f"Spark mode must be one of {', '.join(SPARK_MODES)}, not {mode!r}")
        self.mode = mode
        self.log_file = log_file
        self._workdir = workdir
        self._driver_memory = driver_memory
        self._notify = notify or (lambda message: log.info("%s", message))
        self._lock = threading.Lock()
        self._server: _ConnectServer | None = None
        self._closed = False

    def task_environment(self, cancelled: threading.Event) -> dict[str, str]:
        """The environment for one task process; starts the Connect server on first use."""
        if self.mode == CLASSIC:
            return classic_environment()
        server = self._running_server()
        while not server.ready.wait(0.2):
            if cancelled.is_set():
                raise TaskFailed("cancelled while the Spark Connect server was starting")
        if server.url is not None and server.alive:
            # A session of its own, named here, so that what a killed task left running can be interrupted.
            return {**os.environ, "SPARK_REMOTE": f"{server.url}/;session_id={uuid.uuid4()}"}
        with self._lock:
            if self._closed:
                raise TaskFailed("cancelled: the local Jobs API is stopping")
            if self.mode == CONNECT:
                self.mode = CLASSIC
                self._notify(
                    f"Spark Connect did not start ({server.error or 'it stopped'}; log: {self.log_file}): "
                    "every task now starts its own local Spark (--spark classic)"
                )
        return classic_environment()

    def close(self) -> None:
        """Stop the Connect server, also while it is still starting."""
        with self._lock:
            self._closed = True
            server, self._server = self._server, None
        if server is not None:
            server.close()

    def _running_server(self) -> _ConnectServer:
        with self._lock:
            if self._closed:
                raise TaskFailed("cancelled: the local Jobs API is stopping")
            if self._server is not None and (self._server.alive or not self._server.ready.is_set()):
                return self._server
            if self._server is not None:
                log.warning("restarting the Spark Connect server")
            self._notify(f"Starting a Spark Connect server for the tasks (log: {self.log_file})")
            self._server = _ConnectServer(self.log_file, self._workdir, self._driver_memory, self._notify)
            return self._server


def end_session(environment: Mapping[str, str]) -> None:
    """Interrupt what the task's Connect session still runs on the server, and release the session.

    A task process killed by its timeout, a cancel or a stop leaves its statements running on the
    server (Spark Connect keeps an operation going for its client to reattach), where a MERGE could
    still commit beside the task's retry. Called once the task's process has ended, however it ended;
    a failure here is logged, never the task's.
    """
    remote = environment.get("SPARK_REMOTE", "")
    if ";session_id=" not in remote:
        return  # classic: the task's own JVM ended with its process group
    ending = threading.Thread(target=_end_session, args=(remote,), name="spark-connect-end-session", daemon=True)
    ending.start()
    ending.join(_END_SESSION_SECONDS)
    if ending.is_alive():
        log.warning("ending Spark Connect session %s took over %.0f s; left to it", remote, _END_SESSION_SECONDS)


def _end_session(remote: str) -> None:
    from pyspark.sql.connect.client import SparkConnectClient  # the server's process needs pyspark only here

    client = SparkConnectClient(remote, retry_policy={"max_retries": 0})
    try:
        interrupted = client.interrupt_all() or []
        client.release_session()
        if interrupted:
            log.info("interrupted %d Spark Connect operation(s) a finished task left running", len(interrupted))
    except Exception as exc:  # a session the server no longer knows, or a server gone: nothing left to stop
        log.info("ending the Spark Connect session %s: %s", remote, exc)
    finally:
        client.close()


class SparkTaskRunner:
    """The default task runner: each task's Python file in its own process, on the local Spark.

    Each task is told `--warehouse`: on Databricks Unity Catalog knows where a catalog's tables are
    stored, here this folder stands in for that storage (the job's catalog and schema are unchanged).
    """

    def __init__(self, spark: LocalSpark, warehouse: Path) -> None:
        self.spark = spark
        self.warehouse = warehouse
        self._runs = Turns()
        self._tasks = Turns()

    @property
    def runs_take_turns(self) -> bool:
        """Whether runs of every job take turns: on classic Spark (see `Turns` for why), not on the Connect server."""
        return self.spark.mode == CLASSIC

    def one_run_at_a_time(self, stopping: threading.Event) -> AbstractContextManager[bool]:
        """Where runs take turns, first come first served, each waits for its turn still queued, before its
        timeouts start. True inside once the run may start; False when `stopping` came first."""
        return self._runs.turn(stopping) if self.runs_take_turns else nullcontext(True)

    def __call__(self, invocation: TaskInvocation) -> None:
        command = task_command(invocation)  # refuses task kinds that cannot run here before Spark starts
        command += ["--warehouse", str(self.warehouse)]
        environment = self.spark.task_environment(invocation.cancelled)
        try:
            with nullcontext(True) if "SPARK_REMOTE" in environment else self._tasks.turn(invocation.cancelled) as mine:
                if not mine:
                    raise TaskFailed("cancelled while another task's local Spark was running")
                run_command(invocation, command, environment)
        finally:
            end_session(environment)

    def close(self) -> None:
        self.spark.close()


class Turns:
    """One holder at a time, in the order they asked: classic Spark's tasks (and runs) take turns.

    Each classic task is a JVM of its own, and Delta commits to a local folder by checking that the
    version's file is absent, then renaming onto it, under a lock of its JVM (a local rename overwrites):
    two JVMs committing to one table (processing_log, a target) at once could lose a commit. On the
    Connect server every commit is made in one JVM. Runs take turns before they start, so that no task
    waits out its own timeout; tasks take turns too, for runs that started on Connect before it failed.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
        self._held = False

    @contextmanager
    def turn(self, cancelled: threading.Event) -> Iterator[bool]:
        """True inside once it is this caller's turn; False when `cancelled` is set first."""
        me = object()
        mine = False
        with self._changed:
            self._waiting.append(me)
            while not cancelled.is_set():
                if not self._held and self._waiting[0] is me:
                    self._waiting.popleft()
                    self._held = mine = True
                    break
                self._changed.wait(0.2)
            else:
                self._waiting.remove(me)
                self._changed.notify_all()
        try:
            yield mine
        finally:
            if mine:
                with self._changed:
                    self._held = False
                    self._changed.notify_all()
