"""The local Jobs API with a recording runner, for tests and benchmarks: the real server on a free loopback port.

Start it with `local_jobs_api` (tests also have the `jobs_api` fixture, tests/conftest.py) and talk to it
with the real SDK through `workspace_client(server)`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from local_world.jobs_api import (
    LocalJobsServer,
    SourceStorage,
    TaskFailed,
    TaskInvocation,
    TaskRunner,
    load_bundle_files,
    local_variables,
)

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

FIXTURE_BUNDLE = Path(__file__).parent / "fixture_bundle" / "resources" / "filegate_ingest.job.yml"
# The real batch job of the bundle: its tasks run only where a test gives the server a Spark runner.
BATCH_BUNDLE = Path(__file__).resolve().parents[2] / "infra" / "databricks" / "resources" / "filegate_batch.job.yml"
JOB_NAME = "filegate-ingest"


@dataclass
class TaskCall:
    """One task the runner ran: when, with which arguments."""

    run_id: int
    task_key: str
    arguments: tuple[str, ...]
    parameters: dict[str, str]
    started: float
    ended: float = 0.0
    interrupted: bool = False


@dataclass
class RecordingRunner:
    """A task runner without Spark: records each call, lingers `seconds`, fails the tasks named in `failures`.

    Like a real task it is stopped by a cancel or a server stop while it lingers: it then raises, so a
    test sees the interruption instead of a success that never happened.
    """

    seconds: float = 0.0
    failures: Mapping[str, str] = field(default_factory=dict)
    calls: list[TaskCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, invocation: TaskInvocation) -> None:
        call = TaskCall(
            invocation.run_id, invocation.task_key, invocation.arguments, invocation.parameters, time.monotonic()
        )
        with self._lock:
            self.calls.append(call)
        invocation.log_file.parent.mkdir(parents=True, exist_ok=True)
        invocation.log_file.write_text(f"{invocation.task_key} {' '.join(invocation.arguments)}\n", encoding="utf-8")
        interrupted = invocation.cancelled.wait(self.seconds)
        call.ended = time.monotonic()
        call.interrupted = interrupted
        if interrupted:
            raise TaskFailed("cancelled: the task was stopped before it ended")
        if invocation.task_key in self.failures:
            raise TaskFailed(self.failures[invocation.task_key])


@contextmanager
def local_jobs_api(
    state_dir: Path,
    *,
    runner: TaskRunner | None = None,
    bundle: Path | Sequence[Path] = FIXTURE_BUNDLE,
    warehouse: Path | None = None,
    storage: SourceStorage | None = None,
    workdir: Path | None = None,
    host_metadata: bool = True,
    retry_interval_ms: int | None = 0,
    legacy_state: bool = True,
) -> Iterator[LocalJobsServer]:
    """A started local Jobs API for the bundle's jobs, with the fault-injection hook on; stopped on exit.

    Failed tasks are retried as the bundle says, at once unless `retry_interval_ms` says otherwise
    (None: the bundle's own min_retry_interval_millis).
    """
    warehouse = warehouse or state_dir / "warehouse"
    files = [bundle] if isinstance(bundle, Path) else list(bundle)
    jobs = load_bundle_files(files, local_variables())
    server = LocalJobsServer(
        jobs,
        state_dir,
        runner=runner or RecordingRunner(),
        storage=storage,
        workdir=workdir or Path.cwd(),
        warehouse=warehouse,
        fault_injection=True,
        host_metadata=host_metadata,
        retry_interval_ms=retry_interval_ms,
        legacy_state=legacy_state,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def workspace_client(
    server: LocalJobsServer, *, retry_timeout_seconds: int = 10, http_timeout_seconds: float = 5
) -> WorkspaceClient:
    """The real SDK's WorkspaceClient pointed at the local server, with short retry and HTTP timeouts."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    config = Config(
        host=server.url,
        token="local-test-token",  # noqa: S106 - the local server takes any token
        retry_timeout_seconds=retry_timeout_seconds,
        http_timeout_seconds=http_timeout_seconds,
    )
    return WorkspaceClient(config=config)
