"""Running one task of a local run: the runner protocol, a task as a child process, and fetching the input file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from filegate import uris
from filegate.errors import FilegateError
from filegate.events import AZURE
from filegate.storage import Store
from local_world.emulators import LEFTOVER_SUFFIX, record_leftover, stop_process

# How much of a failed task's stderr becomes its error message (the whole stream is in its log).
ERROR_TAIL_CHARS = 2000
ERROR_TRACE_CHARS = 20_000
_TRACEBACK = "Traceback (most recent call last):"

# A sealed batch manifest (filegate.batches): its members are fetched with it.
_SEALED_MANIFEST = re.compile(r"^_sealed\.r[0-9]+\.json$")


class TaskFailed(FilegateError):
    """A task ended in failure; the message becomes the task's and the run's error message.

    `error` and `trace` are what `runs/get-output` reports: the exception line and its traceback.
    """

    def __init__(self, message: str, *, error: str = "", trace: str = "") -> None:
        super().__init__(message)
        self.error = error
        self.trace = trace


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
    # The archive's own account, when it is not the first one's (as deployed on Azure).
    azure_archive_connection_string: str | None = None

    def azure_store_for(self, account: str) -> Store | None:
        """The Azurite store of the account a URI names, or None when none is configured."""
        from filegate.azure_storage import AzureBlobStore

        for setting in (self.azure_connection_string, self.azure_archive_connection_string):
            if setting:
                store = AzureBlobStore.from_setting(setting)
                if store.account == account:
                    return store
        return None


def is_remote(uri: str) -> bool:
    """Whether a source path is a cloud URI rather than a local path."""
    return uris.is_cloud_uri(uri)


def fetch_source(uri: str, folder: Path, storage: SourceStorage) -> Path:
    """Download the object a cloud URI names from the local emulator into `folder`; the local file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    store: Store
    try:
        named = uris.parse(uri)
    except uris.NotACloudUri as exc:
        raise TaskFailed(str(exc)) from exc
    container, path = named.container, named.path
    if named.cloud == AZURE:
        found = storage.azure_store_for(named.account)
        if found is None:
            raise TaskFailed(
                f"cannot read {uri}: no local Azure storage of account {named.account} configured "
                "(--azure-storage, --azure-archive-storage)"
            )
        store = found
    else:
        if not storage.gcs_endpoint:
            raise TaskFailed(f"cannot read {uri}: no local GCS endpoint configured (--gcs-endpoint)")
        from filegate.gcs_storage import GcsStore

        store = GcsStore.from_environment({"STORAGE_EMULATOR_HOST": storage.gcs_endpoint})
    target = folder / Path(path).name
    try:
        store.download(container, path, str(target))
    except FilegateError as exc:
        raise TaskFailed(f"cannot read {uri} from local {store.kind} storage: {exc}") from exc
    if _SEALED_MANIFEST.match(target.name):
        fetch_members(target, folder / "members", storage)
    return target


def fetch_members(manifest: Path, folder: Path, storage: SourceStorage) -> None:
    """Download every member a sealed batch manifest names and record each local copy in it as `local_path`.

    The member's `uri` stays as it was: the job records it as the row's source, as on Databricks, where
    the tasks read the archived objects themselves.
    """
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
        members = document["members"]
        uris = [(str(member["dataset"]), str(member["uri"])) for member in members]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TaskFailed(f"{manifest.name} is not a sealed batch manifest: {exc!r}") from exc
    for member, (dataset, uri) in zip(members, uris, strict=True):
        # One folder per dataset: two members may carry the same file name.
        member["local_path"] = str(fetch_source(uri, folder / dataset, storage))
    manifest.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")


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


def classic_environment() -> dict[str, str]:
    """A task's environment for a Spark of its own: no SPARK_REMOTE to lead it elsewhere."""
    env = dict(os.environ)
    env.pop("SPARK_REMOTE", None)
    return env


def run_command(invocation: TaskInvocation, command: list[str], env: Mapping[str, str]) -> None:
    """Run a task's command with its output in the task's log; raise TaskFailed on a non-zero exit or a cancel."""
    invocation.log_file.parent.mkdir(parents=True, exist_ok=True)
    stderr_file = invocation.log_file.with_suffix(".stderr")
    with invocation.log_file.open("w", encoding="utf-8") as log, stderr_file.open("w+", encoding="utf-8") as err:
        log.write(f"$ {subprocess.list2cmdline(command)}\n")
        log.flush()
        # Its own process group: a stop or cancel ends the task with everything it started (a local
        # JVM, Python workers), and a Ctrl-C in the terminal reaches the server, which stops it in order.
        process = subprocess.Popen(
            command,
            cwd=invocation.workdir,
            env=dict(env),
            stdout=log,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        # If this server is killed (kill -9), the next one on the state folder stops the task before it
        # queues the run again: two attempts of one run never write the same tables at once.
        program = next((part for part in command[1:] if not part.startswith("-")), command[0])
        record = record_leftover(
            invocation.log_file.with_name(f"{invocation.log_file.name}{LEFTOVER_SUFFIX}"), process, program
        )
        code: int | None = None
        try:
            while code is None and not invocation.cancelled.is_set():
                try:
                    code = process.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
        finally:
            stop_process(process, group=True)
            record.unlink(missing_ok=True)
        err.seek(0)
        stderr = err.read()
        log.write("\n--- stderr ---\n" if stderr else "")
        log.write(stderr)
        log.write(f"\n--- exit code {code} ---\n" if code is not None else "\n--- stopped before it ended ---\n")
    stderr_file.unlink(missing_ok=True)
    if code is None:
        raise TaskFailed("cancelled: the task was stopped before it ended")
    if code != 0:
        tail = stderr.strip()[-ERROR_TAIL_CHARS:] or f"(no output on stderr; see {invocation.log_file})"
        error, trace = python_error(stderr)
        raise TaskFailed(f"exit code {code}: {tail}", error=error or f"exit code {code}", trace=trace)


def python_error(stderr: str) -> tuple[str, str]:
    """The exception (type and message, which may span lines) and the last traceback in a Python process's stderr.

    These are what `runs/get-output` reports as `error` and `error_trace`; without a traceback the
    error is the last line written.
    """
    start = stderr.rfind(_TRACEBACK)
    if start < 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        return (lines[-1].strip() if lines else ""), ""
    trace = stderr[start:].rstrip()
    lines = trace.splitlines()
    # The exception follows the last frame: its `  File "..."` line and the indented source lines under it.
    frames = [index for index, line in enumerate(lines) if line.startswith('  File "')]
    index = frames[-1] + 1 if frames else 1
    while index < len(lines) and lines[index].startswith("    "):
        index += 1
    error = "\n".join(lines[index:]).strip()
    return error[:ERROR_TAIL_CHARS], trace[-ERROR_TRACE_CHARS:]


def read_tail(path: str | Path, limit: int) -> tuple[str | None, bool]:
    """The last `limit` bytes of a log as text, and whether that is only its end; None when there is no log."""
    try:
        with open(path, "rb") as source:
            source.seek(0, 2)
            size = source.tell()
            source.seek(max(0, size - limit))
            return source.read().decode("utf-8", errors="replace"), size > limit
    except OSError:
        return None, False


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
