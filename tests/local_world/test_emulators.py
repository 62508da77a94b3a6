"""Servers left running by a killed run are found from the state folder and stopped, and nothing else is."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from local_world.emulators import record_leftover, stop_leftovers

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
    record_leftover(tmp_path / "azurite" / "azurite.pid.json", server, SERVER)

    lines = stop_leftovers(tmp_path)

    assert server.wait(timeout=15) is not None
    assert len(lines) == 1
    assert f"pid {server.pid}" in lines[0]
    assert list(tmp_path.rglob("*.pid.json")) == []


def test_a_reused_pid_running_another_program_is_left_alone(tmp_path: Path) -> None:
    other = start_server()
    try:
        record = tmp_path / "spark-connect.log.pid.json"
        record.write_text(f'{{"pid": {other.pid}, "program": "spark-submit"}}')

        assert stop_leftovers(tmp_path) == []
        assert other.poll() is None
        assert not record.exists()
    finally:
        other.kill()
        other.wait()
