"""One process per state folder: an advisory lock, so two servers or two demos never overwrite each other."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from filegate.errors import FilegateError

LOCK_FILE = ".lock"


class FolderInUse(FilegateError):
    """Another process holds the folder's lock."""


class FolderLock:
    """An exclusive `flock` on `<folder>/.lock` holding the owner's pid; the kernel drops it when the process dies."""

    def __init__(self, folder: Path, owner: str) -> None:
        self.folder = Path(folder)
        self.owner = owner
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self) -> FolderLock:
        """Take the lock, or raise FolderInUse naming the process that has it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise FolderInUse(
                f"{self.folder} is in use by another {self.owner} (pid {holder}); "
                "stop that one first, or give this one another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
