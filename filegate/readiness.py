"""Readiness: check what can be checked before any byte moves, and name the setting that fixes each failure."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from filegate.errors import AccessDenied, FilegateError, SettingsError, StorageUnreachable, TransientError
from filegate.events import AZURE, GCS
from filegate.settings import Settings
from filegate.storage import Store

if TYPE_CHECKING:
    from filegate.ingest import Gate

LOCATION_SETTINGS = ("FILEGATE_LANDING", "FILEGATE_ARCHIVE", "FILEGATE_REJECTED")
# What a location's first part is, in each platform's words: Cloud Storage has buckets, not containers.
CONTAINER_WORDS = {AZURE: "Azure container", GCS: "GCS bucket"}


@dataclass(frozen=True)
class Check:
    """One line of `filegate doctor`: what was checked, whether it holds, what was found or how to fix it."""

    name: str
    ok: bool
    detail: str
    # A failure that may pass (an outage), as opposed to a setting to fix.
    transient: bool = False
    # What the Jobs API last answered when a job's check failed for now on an answer (a 429, a 503): doctor names it
    # for the job it does not ask again.
    answer: str | None = None


def _locations(settings: Settings) -> list[tuple[str, str]]:
    places = (settings.landing, settings.archive, settings.rejected)
    return [(name, location.container) for name, location in zip(LOCATION_SETTINGS, places, strict=True)]


def describe_missing_locations(settings: Settings, store: Store) -> str:
    """Which location settings name a container that does not exist ("" when all exist)."""
    missing = [
        f"{name} names {CONTAINER_WORDS.get(store.kind, 'container')} {container!r}, which does not exist"
        for name, container in _locations(settings)
        if not store.container_exists(container)
    ]
    if not missing:
        return ""
    return "; ".join(missing) + ": create it (infra/ creates all three) or fix the setting"


def _account(store: Store, container: str) -> object:
    """Which storage account answers for `container` (one for every bucket of Cloud Storage)."""
    account_of = getattr(store, "account_of", None)
    return account_of(container) if account_of else store.kind


def check_storage(settings: Settings, store: Store) -> list[Check]:
    """The store answers with these credentials, and the three locations exist."""
    checks = []
    # An account that did not answer is not asked again: each ask spends the store's retries (about 15 s
    # on Azure, 20 s on Cloud Storage), and three of them would outlive Event Grid's 30 s.
    unreachable: dict[object, str] = {}
    refused: set[object] = set()
    for name, container in _locations(settings):
        account = _account(store, container)
        if account in refused:
            continue
        if account in unreachable:
            detail = f"not checked: the same storage did not answer for {unreachable[account]}"
            checks.append(Check(f"{name} ({container})", False, detail, transient=True))
            continue
        try:
            exists = store.container_exists(container)
        except AccessDenied as exc:
            # Grants are per bucket: each location says what it lacks.
            checks.append(Check(f"{name} ({container})", False, str(exc)))
            continue
        except SettingsError as exc:
            # Credentials: the same answer for every location of that account, so one line says it. Not for the
            # others: the archive's own account (FILEGATE_AZURE_ARCHIVE_STORAGE) has credentials of its own, and
            # a wrong archive key left a rejected container that does not exist unreported.
            checks.append(Check("storage credentials", False, str(exc)))
            refused.add(account)
            continue
        except FilegateError as exc:
            checks.append(Check(f"{name} ({container})", False, str(exc), isinstance(exc, TransientError)))
            if isinstance(exc, StorageUnreachable):
                # Not an access denied (a grant per container, which the SDK does not retry): each is asked.
                unreachable[account] = name
            continue
        detail = "exists" if exists else "does not exist: create it (infra/ creates all three) or fix the setting"
        checks.append(Check(f"{name} ({container})", exists, detail))
    if checks and all(check.ok for check in checks) and hasattr(store, "check_signing"):
        try:
            checks.append(Check("copy signing", True, store.check_signing()))
        except FilegateError as exc:
            checks.append(Check("copy signing", False, str(exc), isinstance(exc, TransientError)))
    return checks


def check_job(jobs: object, name: str = "Databricks job") -> list[Check]:
    """The Jobs API is reachable, takes the credentials, and the job exists with the parameters Filegate passes it."""
    if not hasattr(jobs, "check_job"):
        return [Check(name, True, "not checked: this trigger cannot check its job")]
    try:
        return [Check(name, True, jobs.check_job())]
    except FilegateError as exc:
        from filegate.jobs import last_answer

        transient = isinstance(exc, TransientError)
        return [Check(name, False, str(exc), transient, last_answer(exc) if transient else None)]


def raise_for(checks: list[Check]) -> None:
    """SettingsError for failed checks; TransientError when only reachability failed."""
    failed = [check for check in checks if not check.ok]
    if not failed:
        return
    message = "; ".join(f"{check.name}: {check.detail}" for check in failed)
    if all(check.transient for check in failed):
        raise TransientError(f"not ready: {message}")
    raise SettingsError(f"not ready: {message}")


@dataclass
class Readiness:
    """Checks a gate once per process, before its first move; only success is remembered."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ready: bool = False

    def ensure(self, gate: Gate) -> None:
        """Raise SettingsError (or TransientError) naming every failed check; cheap after the first success."""
        with self._lock:
            if not self._ready:
                raise_for(check_storage(gate.settings, gate.store) + check_job(gate.jobs))
                self._ready = True


# The local world's tools and the oldest version each must be (README: Python 3.11, Java 17, Node 20).
LOCAL_TOOLS = (("java", ("java", "-version"), 17), ("node", ("node", "--version"), 20))


def _major(text: str) -> int | None:
    found = re.search(r'(?:version "|v)(\d+)(?:\.(\d+))?', text)
    if not found:
        return None
    major = int(found[1])
    # Java 8 and older report "1.8.0"
    return int(found[2] or 0) if major == 1 else major


def check_local_tools() -> list[Check]:
    """Python, Java and Node for `make demo` and the local world, each at its minimum version."""
    checks = [
        Check(
            "python",
            sys.version_info >= (3, 11),
            f"{sys.version.split()[0]}" if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed",
        )
    ]
    for name, command, minimum in LOCAL_TOOLS:
        path = shutil.which(command[0])
        if path is None:
            checks.append(Check(name, False, f"not found on PATH: install {name.title()} {minimum} or newer"))
            continue
        try:
            result = subprocess.run(list(command), capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            checks.append(Check(name, False, f"{path} does not run: {exc}"))
            continue
        major = _major(result.stdout + result.stderr)
        ok = major is not None and major >= minimum
        found = f"version {major}" if major is not None else "an unknown version"
        checks.append(Check(name, ok, f"{path}, {found}" + ("" if ok else f": {minimum} or newer is needed")))
    return checks
