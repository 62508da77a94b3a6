"""Running one task of a local run: the runner protocol, the subprocess runner, and fetching the input file."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filegate.emulators import stop_process
from filegate.errors import FilegateError
from filegate.storage import Store

# How much of a failed task's stderr becomes its error message (the whole stream is in its log).
ERROR_TAIL_CHARS = 2000

_AZURE_URI = re.compile(r"^(?:abfss?|wasbs?)://(?P<container>[^@/]+)@(?P<account>[^/]+)/(?P<path>.+)$")
_GCS_URI = re.compile(r"^gs://(?P<bucket>[^/]+)/(?P<path>.+)$")


class TaskFailed(FilegateError):
    """A task ended in failure; the message becomes the task's and the run's error."""


@dataclass(frozen=True)
class TaskInvocation:
    """Everything a runner needs to run one task of one run."""

    job_id: int
    job_name: str
    run_id: int
    task_key: str
    task_run_id: int
    kind: str
    declared_file: str
    python_file: Path | None
    arguments: tuple[str, ...]
    parameters: dict[str, str]
    log_file: Path
    workdir: Path
    cancelled: threading.Event


# A runner returns when the task succeeded and raises (TaskFailed, or anything else) when it failed.
TaskRunner = Callable[[TaskInvocation], None]


@dataclass(frozen=True)
class SourceStorage:
    """The local storage emulators that `source_path` URIs point into."""

    azure_connection_string: str | None = None
    gcs_endpoint: str | None = None


def is_remote(uri: str) -> bool:
    """Whether a source path is a cloud URI rather than a local path."""
    return bool(_AZURE_URI.match(uri) or _GCS_URI.match(uri))


def fetch_source(uri: str, folder: Path, storage: SourceStorage) -> Path:
    """Download the object a cloud URI names from the local emulator into `folder`; the local file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    store: Store
    if azure := _AZURE_URI.match(uri):
        if not storage.azure_connection_string:
            raise TaskFailed(f"cannot read {uri}: no local Azure storage configured (--azure-storage)")
        from filegate.azure_storage import AzureBlobStore

        store = AzureBlobStore.from_setting(storage.azure_connection_string)
        container, path = azure.group("container", "path")
    elif gcs := _GCS_URI.match(uri):
        if not storage.gcs_endpoint:
            raise TaskFailed(f"cannot read {uri}: no local GCS endpoint configured (--gcs-endpoint)")
        from filegate.gcs_storage import GcsStore

        store = GcsStore.from_environment({"STORAGE_EMULATOR_HOST": storage.gcs_endpoint})
        container, path = gcs.group("bucket", "path")
    else:
        raise TaskFailed(f"not a cloud URI: {uri}")
    target = folder / Path(path).name
    try:
        store.download(container, path, str(target))
    except FilegateError as exc:
        raise TaskFailed(f"cannot read {uri} from local {store.kind} storage: {exc}") from exc
    return target


def task_command(invocation: TaskInvocation) -> list[str]:
    """The command that runs a spark_python_task locally, the way Databricks would run its file."""
    if invocation.kind != "spark_python_task":
        raise TaskFailed(f"task {invocation.task_key}: {invocation.kind} cannot run locally, only spark_python_task")
    module = _module_name(invocation.python_file, invocation.workdir)
    if module is None and invocation.python_file is not None and invocation.python_file.is_file():
        return [sys.executable, str(invocation.python_file), *invocation.arguments]
    if module is None:
        # The file lies outside the working tree (or is a workspace path): run the packaged module of that name.
        module = f"spark_jobs.{Path(invocation.declared_file).stem}"
    # `-m` from the repository root, so the job imports `spark_jobs` and `filegate` as packages.
    return [sys.executable, "-m", module, *invocation.arguments]


def run_subprocess_task(invocation: TaskInvocation) -> None:
    """The default runner: the task's Python file in a child process, output into the task's log."""
    command = task_command(invocation)
    invocation.log_file.parent.mkdir(parents=True, exist_ok=True)
    stderr_file = invocation.log_file.with_suffix(".stderr")
    with invocation.log_file.open("w", encoding="utf-8") as log, stderr_file.open("w+", encoding="utf-8") as err:
        log.write(f"$ {subprocess.list2cmdline(command)}\n")
        log.flush()
        process = subprocess.Popen(command, cwd=invocation.workdir, stdout=log, stderr=err, stdin=subprocess.DEVNULL)
        while True:
            try:
                code = process.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if invocation.cancelled.is_set():
                    stop_process(process)
                    raise TaskFailed("cancelled: the local Jobs API is shutting down") from None
        err.seek(0)
        stderr = err.read()
        log.write("\n--- stderr ---\n" if stderr else "")
        log.write(stderr)
        log.write(f"\n--- exit code {code} ---\n")
    stderr_file.unlink(missing_ok=True)
    if code != 0:
        tail = stderr.strip()[-ERROR_TAIL_CHARS:] or f"(no output on stderr; see {invocation.log_file})"
        raise TaskFailed(f"exit code {code}: {tail}")


def _module_name(python_file: Path | None, workdir: Path) -> str | None:
    if python_file is None or python_file.suffix != ".py":
        return None
    try:
        relative = python_file.resolve().relative_to(workdir.resolve())
    except ValueError:
        return None
    parts = relative.with_suffix("").parts
    if not all(part.isidentifier() for part in parts):
        return None
    return ".".join(parts)
