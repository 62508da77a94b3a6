"""The local world's services on free loopback ports, started and stopped cleanly: Azurite, the GCS emulator,
a Spark Connect server."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from filegate.errors import FilegateError
from filegate.gcs_storage import LOCAL_PROJECT, anonymous_client

AZURITE_ACCOUNT = "devstoreaccount1"
# The archive's account, as deployed: a second account (on Azure the one with a hierarchical namespace,
# which Azurite does not emulate), so every local archive is a copy across accounts, as on Azure.
AZURITE_ARCHIVE_ACCOUNT = "filegatearchive"
# Azurite's published development key: the same for every Azurite install, not a secret.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# A key of its own, so that anything signed for the wrong account fails here as it would on Azure.
AZURITE_ARCHIVE_KEY = "8qhANiGSgRz9IxIWUcEgP9DWz1pOgZPFRp4P83kUgRaPKHfz8wNuo8Zpg3hgTlNfguI1shGBfCP9LQCYz7D09w=="
AZURITE_KEYS = {AZURITE_ACCOUNT: AZURITE_KEY, AZURITE_ARCHIVE_ACCOUNT: AZURITE_ARCHIVE_KEY}
# Naming accounts replaces Azurite's default one, so it is named too.
AZURITE_ACCOUNTS = ";".join(f"{account}:{key}" for account, key in AZURITE_KEYS.items())


def azurite_connection_string(port: int, account: str = AZURITE_ACCOUNT) -> str:
    """A connection string for one of Azurite's accounts on `port`."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={AZURITE_KEYS[account]};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{account};"
    )


class EmulatorError(FilegateError):
    """A local service did not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_listening(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(
    port: int,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = 30.0,
    cancelled: threading.Event | None = None,
) -> None:
    """Return once something listens on the port; fail early if the process dies first or `cancelled` is set."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EmulatorError(f"the process exited with code {process.returncode} before it listened on {port}")
        if cancelled is not None and cancelled.is_set():
            raise EmulatorError(f"cancelled while waiting for 127.0.0.1:{port}")
        if is_listening(port):
            return
        time.sleep(0.1)
    raise EmulatorError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """Terminate, then kill after 10 s; with `group`, the whole process group it leads (its children too)."""
    if process.poll() is None:
        _signal(process, signal.SIGTERM, group)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL, group)
            process.wait()
    if group:
        # The leader may be gone while children it started (Spark's Python workers) are not.
        _signal(process, signal.SIGKILL, group)


LEFTOVER_SUFFIX = ".pid.json"


def record_leftover(path: Path, process: subprocess.Popen[bytes], program: str) -> Path:
    """Note a started server beside its state: if this process is killed (kill -9), the next start stops it.

    `program` is a word its command line holds for as long as it runs, even after it execs another
    program (spark-submit becomes a `java` whose arguments name the server class).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": process.pid, "program": program}), encoding="utf-8")
    return path


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_leftovers(folder: Path, *, nested: bool = True) -> list[str]:
    """Stop the servers a killed earlier run in `folder` left running; what was stopped, one line each.

    Only a process whose pid was recorded there and whose command line still names the recorded
    program is stopped (with its process group: each was started in a session of its own), so a
    reused pid is never hit. Without `nested`, only records directly in `folder` count: the caller
    owns that folder, not necessarily the folders of other commands below it.
    """
    stopped = []
    pattern = f"*{LEFTOVER_SUFFIX}"
    records = folder.rglob(pattern) if nested else folder.glob(pattern)
    for record in sorted(records) if folder.exists() else []:
        try:
            noted = json.loads(record.read_text(encoding="utf-8"))
            pid, program = int(noted["pid"]), str(noted["program"])
        except (OSError, ValueError, KeyError, TypeError):
            record.unlink(missing_ok=True)
            continue
        if program and program in _cmdline(pid):
            for signum in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(pid, signum)
                except (ProcessLookupError, PermissionError):
                    break
                deadline = time.monotonic() + 10
                while _cmdline(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if not _cmdline(pid):
                    break
            # The leader is gone; children it started (Spark's Python workers) may not be. While any
            # is left the group keeps its id, so the kernel hands that pid to no other process.
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            stopped.append(f"stopped {program} (pid {pid}) left running by an earlier run in {folder}")
        record.unlink(missing_ok=True)
    return stopped


def stop_requested(*, interrupt_on_second: bool = False) -> threading.Event:
    """An event that SIGINT and SIGTERM set: what a long-running local command waits on before it stops cleanly.

    With `interrupt_on_second`, a second Ctrl-C (SIGINT, not a TERM) raises KeyboardInterrupt, once: for a
    command whose clean stop may wait on work under way, and whose abandoned work is redone on its next start.
    """
    stop = threading.Event()
    interrupted: list[int] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if interrupt_on_second and signum == signal.SIGINT and stop.is_set():
            if not interrupted:  # a third Ctrl-C, while the interrupted command reports, changes nothing
                interrupted.append(signum)
                raise KeyboardInterrupt
            return
        # Set from another thread: the handler runs between two bytecodes of the main thread, which may be
        # holding the event's own lock (inside `wait` or `set`); taking it here would wait for ever.
        threading.Thread(target=stop.set, name="stop-requested", daemon=True).start()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop


def _signal(process: subprocess.Popen[bytes], signum: int, group: bool) -> None:
    try:
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
    except (ProcessLookupError, PermissionError):
        return


@dataclass(frozen=True)
class Azurite:
    """A running Azurite blob service."""

    port: int

    @property
    def connection_string(self) -> str:
        """The account events come from: landing and rejected."""
        return azurite_connection_string(self.port)

    @property
    def archive_connection_string(self) -> str:
        """The archive's own account (FILEGATE_AZURE_ARCHIVE_STORAGE)."""
        return azurite_connection_string(self.port, AZURITE_ARCHIVE_ACCOUNT)


# The newest SDKs send API versions Azurite does not know yet, and Filegate's metadata headers need
# --loose; the README's Azurite command carries the same flags (tests/test_readme.py checks).
AZURITE_FLAGS = ("--skipApiVersionCheck", "--loose", "--silent")


@contextmanager
def run_azurite(root: Path, location: Path, *, oauth_tls: tuple[Path, Path] | None = None) -> Iterator[Azurite]:
    """Azurite's blob service from `root`/node_modules on a free port, its data in `location`.

    With `oauth_tls` (a certificate and its key, PEM) it serves HTTPS and takes Entra bearer tokens
    (checked for form, issuer, audience and lifetime, not signature): what an identity's calls need.
    """
    binary = root / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise EmulatorError(f"Azurite is not installed ({binary} is missing): run `make setup`")
    location.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location)]
    command += list(AZURITE_FLAGS)
    env = {**os.environ, "AZURITE_ACCEPT_EULA": "true", "AZURITE_ACCOUNTS": AZURITE_ACCOUNTS}
    if oauth_tls is not None:
        cert, key = oauth_tls
        command += ["--cert", str(cert), "--key", str(key), "--oauth", "basic"]
        # Azurite checks a copy's source by reading it over HTTPS itself: trust its own certificate.
        env["NODE_EXTRA_CA_CERTS"] = str(cert)
    with (location / "azurite.log").open("wb") as sink:
        # Its own session: Ctrl-C reaches only the caller, which then stops Azurite in order.
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        record = record_leftover(location / "azurite.pid.json", process, binary.name)
        try:
            wait_for_port(port, process)
            yield Azurite(port)
        finally:
            stop_process(process)
            record.unlink(missing_ok=True)


@contextmanager
def run_temporary_azurite(root: Path) -> Iterator[Azurite]:
    """Azurite's blob service on a free port, with its data in a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="azurite-") as location, run_azurite(root, Path(location)) as azurite:
        yield azurite


GCS_PROJECT = LOCAL_PROJECT


def gcs_emulator_client(endpoint: str, project: str = GCS_PROJECT) -> Any:
    """An anonymous google-cloud-storage client for the emulator at `endpoint`: what a user uploading would use."""
    return anonymous_client(endpoint, project)


@contextmanager
def run_gcs_emulator(project: str = GCS_PROJECT) -> Iterator[int]:
    """gcp-storage-emulator (from the virtualenv) on a free loopback port, in memory; yields the port."""
    port = free_port()
    binary = Path(sys.executable).parent / "gcp-storage-emulator"
    if not binary.exists():
        raise EmulatorError(f"the GCS emulator is not installed ({binary} is missing): run `make setup`")
    command = [str(binary), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        # The port opens before the storage layer is ready; listing buckets answers once it is.
        url = f"http://127.0.0.1:{port}/storage/v1/b?project={project}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            if answer.status != 200:
                raise EmulatorError(f"the GCS emulator answered {answer.status} to its first listing")
        yield port
    finally:
        stop_process(process)


# Databricks serverless runs a job's Python against Spark through Spark Connect; locally, one warm
# Connect server does the same and spares every task the JVM start (about 15 s each on 2 cores).
SPARK_CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
# What a leftover server's command line is known by: spark-submit execs spark-class, which execs
# `java ... SparkSubmit ... --class <the server class>` under the same pid, so "spark-submit" is gone.
SPARK_CONNECT_PROGRAM = SPARK_CONNECT_SERVER_CLASS.rsplit(".", 1)[1]


@dataclass(frozen=True)
class SparkConnect:
    """A running local Spark Connect server."""

    port: int

    @property
    def url(self) -> str:
        """The value for `SPARK_REMOTE` (or `SparkSession.builder.remote`)."""
        return f"sc://127.0.0.1:{self.port}"


def _pyspark_home() -> Path:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise EmulatorError("pyspark is not installed: run `make setup`")
    return Path(spec.origin).parent


@contextmanager
def run_spark_connect(
    log_file: Path,
    *,
    driver_memory: str = "2g",
    timeout: float = 180.0,
    cwd: Path | None = None,
    cancelled: threading.Event | None = None,
) -> Iterator[SparkConnect]:
    """A local Spark Connect server with Delta Lake, from the installed pyspark and the project's Delta jars.

    `cwd` is where relative paths in the clients' plans resolve; `cancelled` aborts a start under way.
    Missing Delta jars fail here, with the command that fetches them, before a JVM starts.
    """
    from spark_jobs.delta_jars import delta_spark_conf
    from spark_jobs.local_spark import SMALL_DATA_CONF

    home = _pyspark_home()
    settings = {**delta_spark_conf(log_file.parent / "spark-warehouse"), **SMALL_DATA_CONF}
    port = free_port()
    command = [
        str(home / "bin" / "spark-submit"),
        "--class",
        SPARK_CONNECT_SERVER_CLASS,
        "--master",
        "local[*]",
        "--driver-memory",
        driver_memory,
        "--conf",
        "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf",
        f"spark.connect.grpc.binding.port={port}",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.sql.session.timeZone=UTC",
        *(argument for name, value in settings.items() for argument in ("--conf", f"{name}={value}")),
        "spark-internal",
    ]
    env = {**os.environ, "SPARK_HOME": str(home), "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_REMOTE", None)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("wb") as sink:
        # Its own process group: Ctrl-C reaches only the caller, which then stops the JVM and any
        # Python workers it started.
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        record = record_leftover(log_file.with_name(f"{log_file.name}.pid.json"), process, SPARK_CONNECT_PROGRAM)
        try:
            wait_for_port(port, process, timeout=timeout, cancelled=cancelled)
            yield SparkConnect(port)
        finally:
            stop_process(process, group=True)
            record.unlink(missing_ok=True)
