"""Servers left running by a killed run are found from the state folder and stopped, and nothing else is."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local_world import emulators
from local_world.emulators import SPARK_CONNECT_PROGRAM, record_leftover, run_spark_connect, stop_leftovers

SERVER = [sys.executable, "-c", "import time; time.sleep(300)"]


def start_server() -> subprocess.Popen[bytes]:
    """A long-running process in a session of its own, as the demo's servers are, once it runs its program."""
    server = subprocess.Popen(SERVER, start_new_session=True)
    deadline = time.monotonic() + 10
    while b"time.sleep" not in Path(f"/proc/{server.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


def test_a_server_a_killed_run_left_behind_is_stopped_by_the_next_run(tmp_path: Path) -> None:
    # What a demo killed with kill -9 leaves: the server still running, its record in the state folder.
    server = start_server()
    record_leftover(tmp_path / "azurite" / "azurite.pid.json", server, Path(SERVER[0]).name)

    lines = stop_leftovers(tmp_path)

    assert server.wait(timeout=15) is not None
    assert len(lines) == 1
    assert f"pid {server.pid}" in lines[0]
    assert list(tmp_path.rglob("*.pid.json")) == []


def test_a_reused_pid_running_another_program_is_left_alone(tmp_path: Path) -> None:
    other = start_server()
    try:
        record = tmp_path / "spark-connect.log.pid.json"
        record.write_text(json.dumps({"pid": other.pid, "program": SPARK_CONNECT_PROGRAM}))

        assert stop_leftovers(tmp_path) == []
        assert other.poll() is None
        assert not record.exists()
    finally:
        other.kill()
        other.wait()


# What pyspark's bin/spark-submit ends as: it execs spark-class, which execs `java ... SparkSubmit
# <its arguments>` under the same pid. Python stands in for java and listens on the Connect port.
FAKE_SPARK_SUBMIT = """#!/usr/bin/env bash
exec "$PYTHON" -c "$SERVE" org.apache.spark.deploy.SparkSubmit "$@"
"""
SERVE = """import socket, sys, time
port = next(int(a.rsplit('=', 1)[1]) for a in sys.argv if a.startswith('spark.connect.grpc.binding.port='))
server = socket.create_server(('127.0.0.1', port))
time.sleep(300)
"""


def test_a_spark_connect_server_a_killed_run_left_behind_is_stopped_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "pyspark"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "spark-submit").write_text(FAKE_SPARK_SUBMIT)
    (home / "bin" / "spark-submit").chmod(0o755)
    monkeypatch.setattr(emulators, "_pyspark_home", lambda: home)
    monkeypatch.setenv("PYTHON", sys.executable)
    monkeypatch.setenv("SERVE", SERVE)
    state = tmp_path / "state"

    with run_spark_connect(state / "spark-connect.log", timeout=30):
        [record] = state.glob("*.pid.json")
        pid = json.loads(record.read_text())["pid"]
        assert "spark-submit" not in Path(f"/proc/{pid}/cmdline").read_text()
        # As the next run does once this one was killed with kill -9 before it could stop its server.
        lines = stop_leftovers(state)

        assert lines == [f"stopped {SPARK_CONNECT_PROGRAM} (pid {pid}) left running by an earlier run in {state}"]
        assert Path(f"/proc/{pid}/cmdline").read_bytes() == b""  # gone (at most a zombie until reaped)
    assert list(state.glob("*.pid.json")) == []


def test_without_nested_only_the_folders_own_records_count(tmp_path: Path) -> None:
    server = start_server()
    try:
        record = record_leftover(tmp_path / "demo" / "azurite.pid.json", server, Path(SERVER[0]).name)

        assert stop_leftovers(tmp_path, nested=False) == []
        assert server.poll() is None
        assert record.exists()
    finally:
        server.kill()
        server.wait()
