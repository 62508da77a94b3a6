"""Settings: read once from the environment at the edge, into a frozen value passed down."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from filegate.errors import MalformedSettings, SettingsError
from filegate.events import AZURE_TARGET, GCP_TARGET

DEFAULT_JOB_NAME = "filegate-ingest"
DEFAULT_BATCH_JOB_NAME = "filegate-batch"
DEFAULT_SAMPLE_BYTES = 1024 * 1024
DEFAULT_MAX_FILE_BYTES = 50 * 1024**3
# The sample is held in the function's memory on every delivery; past this it is the file, not a sample.
MAX_SAMPLE_BYTES = 64 * 1024**2
# How old a landing file the sweep may wait for: a century (past it, "now" minus the age leaves the calendar).
MAX_OLDER_THAN_MINUTES = 100 * 366 * 24 * 60
DEFAULT_SWEEP_OLDER_THAN_MINUTES = 60
# NCRONTAB, with seconds: every hour at minute 17, off the hour when uploads and other jobs bunch up.
DEFAULT_SWEEP_SCHEDULE = "0 17 * * * *"


@dataclass(frozen=True)
class Setting:
    """One documented setting; infra, code and README all use this list."""

    name: str
    description: str
    default: str | None = None
    clouds: tuple[str, ...] = (AZURE_TARGET, GCP_TARGET)


# The settings contract. Names are the same on both clouds; tests check that the Terraform app
# settings and the README use exactly these.
SETTINGS: tuple[Setting, ...] = (
    Setting("FILEGATE_LANDING", "Where uploads arrive, as `container[/prefix]` (GCS: `bucket[/prefix]`).", "landing"),
    Setting("FILEGATE_ARCHIVE", "Where valid files are moved, `container[/prefix]`.", "archive"),
    Setting("FILEGATE_REJECTED", "Where invalid files and their reports go, `container[/prefix]`.", "rejected"),
    Setting(
        "FILEGATE_AZURE_STORAGE",
        "Storage account: a connection string, or an account URL used with managed identity.",
        clouds=(AZURE_TARGET,),
    ),
    Setting(
        "FILEGATE_AZURE_ARCHIVE_STORAGE",
        "The archive's storage account, when it is not FILEGATE_AZURE_STORAGE's (same forms): Unity Catalog "
        "reads only accounts with a hierarchical namespace, which the landing account must not have.",
        clouds=(AZURE_TARGET,),
    ),
    Setting("FILEGATE_JOB_ID", "Databricks job to run; wins over FILEGATE_JOB_NAME."),
    Setting(
        "FILEGATE_JOB_NAME",
        "Databricks job to run, by name (resolved once per process, and again when run-now says the job is "
        "gone: a bundle destroyed and deployed again).",
        DEFAULT_JOB_NAME,
    ),
    Setting("FILEGATE_BATCH_JOB_ID", "Databricks job a sealed pipeline batch runs; wins over FILEGATE_BATCH_JOB_NAME."),
    Setting(
        "FILEGATE_BATCH_JOB_NAME",
        "Databricks job a sealed pipeline batch runs, by name (resolved as FILEGATE_JOB_NAME is).",
        DEFAULT_BATCH_JOB_NAME,
    ),
    Setting(
        "FILEGATE_DATABRICKS_AUTH",
        "`azure-identity` to authenticate to Databricks with the function's managed identity; "
        "empty for the SDK's own chain (DATABRICKS_TOKEN, OAuth M2M).",
        clouds=(AZURE_TARGET,),
    ),
    Setting(
        "FILEGATE_SAMPLE_BYTES",
        "How much of a file validation reads (a ranged read), from 1024 to 64 MiB.",
        str(DEFAULT_SAMPLE_BYTES),
    ),
    Setting("FILEGATE_MAX_FILE_BYTES", "Files larger than this are rejected.", str(DEFAULT_MAX_FILE_BYTES)),
    Setting(
        "FILEGATE_SWEEP_OLDER_THAN_MINUTES",
        "The sweep (scheduled, and `filegate sweep`) takes landing files at least this old: live deliveries go first.",
        str(DEFAULT_SWEEP_OLDER_THAN_MINUTES),
    ),
    Setting(
        "FILEGATE_SWEEP_SCHEDULE",
        "When the function's timer sweeps: NCRONTAB, six fields, seconds first (malformed: the default, and an ERROR).",
        DEFAULT_SWEEP_SCHEDULE,
        clouds=(AZURE_TARGET,),
    ),
    Setting("FILEGATE_CONTRACTS_DIR", "A folder of extra dataset contracts (`*.toml`) besides the built-in ones."),
    Setting("DATABRICKS_HOST", "Workspace URL, read by the Databricks SDK."),
    Setting("DATABRICKS_TOKEN", "Personal access token, read by the Databricks SDK (prefer OAuth or identity)."),
    Setting("DATABRICKS_CLIENT_ID", "OAuth M2M service principal id, read by the Databricks SDK."),
    Setting("DATABRICKS_CLIENT_SECRET", "OAuth M2M secret, read by the Databricks SDK."),
)
SETTING_NAMES = frozenset(setting.name for setting in SETTINGS)
# Read by the Databricks SDK from the environment, as they are: Filegate only checks them (the host it reads
# itself, and gives the SDK without the whitespace around it).
SDK_SETTINGS = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET")
# Read by function_app.py when the Functions host indexes the app (`sweep_schedule`), not by Settings:
# the GCP function and the commands never need it, and a mistake in it must not stop them.
INDEXED_SETTINGS = frozenset({"FILEGATE_SWEEP_SCHEDULE"})
# What the function and the commands that move files read: every setting.
GATE_SETTINGS = tuple(setting.name for setting in SETTINGS)


def settings_help(names: tuple[str, ...] = GATE_SETTINGS) -> str:
    """The `--help` epilog: each setting a command reads, with its default."""
    by_name = {setting.name: setting for setting in SETTINGS}
    lines = ["settings read from the environment:"]
    for name in names:
        setting = by_name[name]
        default = f" (default {setting.default})" if setting.default else ""
        lines.append(f"  {name}{default}: {setting.description}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Location:
    """A container (or bucket) and an optional folder prefix inside it."""

    container: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str, setting: str = "location", *, landing: bool = False) -> Location:
        container, _, prefix = text.strip().strip("/").partition("/")
        if not container or ":" in container:
            # A URL (`gs://landing`, `https://acct.blob.core.windows.net/x`) would make `gs:` the container.
            raise SettingsError(f"{setting} must be `container[/prefix]` (a name, not a URL), got {text!r}")
        prefix = prefix.strip("/")
        # Whitespace beside a `/` is a copy-paste's, not a name (`landing /in`, `landing/in /`): no container's name
        # has it, and no upload's path began with landing's prefix, so every event was ignored as outside landing.
        # An archive's or rejected prefix with it is Filegate's own to write and works: refused, an upgrade would
        # stop that deployment, and mending the setting would move the archive away from its files.
        spaced = any(part != part.strip() for part in prefix.split("/"))
        if re.search(r"\s", container) or (landing and spaced):
            raise SettingsError(
                f"{setting} must be `container[/prefix]` without whitespace beside a `/` or in the container's "
                f"name, got {text!r}"
            )
        return cls(container, f"{prefix}/" if prefix else "")

    def holds(self, container: str, path: str) -> bool:
        """Whether an object lies inside this location."""
        return container == self.container and path.startswith(self.prefix)

    def overlaps(self, other: Location) -> bool:
        if self.container != other.container:
            return False
        return self.prefix.startswith(other.prefix) or other.prefix.startswith(self.prefix)

    def path(self, relative: str) -> str:
        return f"{self.prefix}{relative}"

    def relative(self, path: str) -> str:
        return path[len(self.prefix) :]

    def __str__(self) -> str:
        return f"{self.container}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class Settings:
    """Everything the core needs to know about where it runs."""

    landing: Location = Location("landing")
    archive: Location = Location("archive")
    rejected: Location = Location("rejected")
    azure_storage: str | None = None
    azure_archive_storage: str | None = None
    job_id: int | None = None
    job_name: str = DEFAULT_JOB_NAME
    batch_job_id: int | None = None
    batch_job_name: str = DEFAULT_BATCH_JOB_NAME
    databricks_auth: str = ""
    sample_bytes: int = DEFAULT_SAMPLE_BYTES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    contracts_dir: Path | None = None
    sweep_older_than_minutes: int = DEFAULT_SWEEP_OLDER_THAN_MINUTES
    # The SDK reads its own settings; Filegate reads the host too, to name an unreachable Jobs API quickly.
    databricks_host: str = ""

    def __post_init__(self) -> None:
        """Every value out of its range is named, so that one deployment fixes them all."""
        problems = [
            f"locations {a} and {b} overlap: writes into one would land in the other"
            for a, b in ((self.landing, self.archive), (self.landing, self.rejected), (self.archive, self.rejected))
            if a.overlaps(b)
        ]
        if not 1024 <= self.sample_bytes <= MAX_SAMPLE_BYTES:
            problems.append(
                f"FILEGATE_SAMPLE_BYTES must be from 1024 to {MAX_SAMPLE_BYTES} (64 MiB, the function holds "
                f"the sample in memory), got {self.sample_bytes}"
            )
        if self.max_file_bytes < 1:
            # 0 does not mean "no limit": every file would be rejected, and moved out of landing.
            problems.append(f"FILEGATE_MAX_FILE_BYTES must be at least 1, got {self.max_file_bytes}")
        for name, job_id in (("FILEGATE_JOB_ID", self.job_id), ("FILEGATE_BATCH_JOB_ID", self.batch_job_id)):
            if job_id is not None and job_id < 1:
                problems.append(f"{name} must be a job id (1 or more), or empty to find the job by name")
        if self.databricks_auth not in ("", "azure-identity"):
            problems.append("FILEGATE_DATABRICKS_AUTH must be empty or `azure-identity`")
        if not 0 <= self.sweep_older_than_minutes <= MAX_OLDER_THAN_MINUTES:
            problems.append(
                f"FILEGATE_SWEEP_OLDER_THAN_MINUTES must be from 0 to {MAX_OLDER_THAN_MINUTES} (a century), "
                f"got {self.sweep_older_than_minutes}"
            )
        if problems:
            raise MalformedSettings(problems)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, names: Collection[str] = GATE_SETTINGS) -> Settings:
        """Read the FILEGATE_* settings among `names`, the rest at their defaults; malformed values fail loudly."""
        env = os.environ if env is None else env
        assert set(names) <= SETTING_NAMES, f"not settings: {sorted(set(names) - SETTING_NAMES)}"

        def text(name: str) -> str:
            # A command that never uses a setting is not stopped by a mistake in it (`filegate status`).
            return env.get(name, "").strip() if name in names else ""

        # Every problem is named at once: a function redeployed per mistake costs minutes each time. A malformed
        # value is noted and a stand-in that passes every check takes its place, so the checks of the others run.
        malformed: list[str] = []

        def number(name: str, default: int) -> int:
            raw = text(name)
            # ASCII digits only: int() also takes `1_000`, `-5` and other scripts' digits.
            if raw and not (raw.isascii() and raw.isdigit()):
                malformed.append(f"{name} must be a whole number (digits only), got {raw!r}")
                return default
            return int(raw) if raw else default

        def job_id(name: str) -> int | None:
            return number(name, 1) if text(name) else None  # 1: a stand-in, never used

        def location(name: str, default: str) -> Location:
            try:
                return Location.parse(text(name) or default, name, landing=name == "FILEGATE_LANDING")
            except SettingsError as exc:
                malformed.append(str(exc))
                return Location(f"\0{name}")  # a stand-in that overlaps no other location

        contracts_dir = text("FILEGATE_CONTRACTS_DIR")
        try:
            settings = cls(
                landing=location("FILEGATE_LANDING", "landing"),
                archive=location("FILEGATE_ARCHIVE", "archive"),
                rejected=location("FILEGATE_REJECTED", "rejected"),
                azure_storage=text("FILEGATE_AZURE_STORAGE") or None,
                azure_archive_storage=text("FILEGATE_AZURE_ARCHIVE_STORAGE") or None,
                job_id=job_id("FILEGATE_JOB_ID"),
                job_name=text("FILEGATE_JOB_NAME") or DEFAULT_JOB_NAME,
                batch_job_id=job_id("FILEGATE_BATCH_JOB_ID"),
                batch_job_name=text("FILEGATE_BATCH_JOB_NAME") or DEFAULT_BATCH_JOB_NAME,
                databricks_auth=text("FILEGATE_DATABRICKS_AUTH").lower(),
                sample_bytes=number("FILEGATE_SAMPLE_BYTES", DEFAULT_SAMPLE_BYTES),
                max_file_bytes=number("FILEGATE_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES),
                contracts_dir=Path(contracts_dir) if contracts_dir else None,
                sweep_older_than_minutes=number("FILEGATE_SWEEP_OLDER_THAN_MINUTES", DEFAULT_SWEEP_OLDER_THAN_MINUTES),
                databricks_host=text("DATABRICKS_HOST"),
            )
        except MalformedSettings as exc:
            malformed += exc.problems
        for name in SDK_SETTINGS:
            raw = env.get(name, "") if name in names else ""
            # A token pasted with its newline failed every request with a header error that printed the token. A
            # space around it is left alone: HTTP trims it from the header, so a deployment may work with it (and a
            # refused one would stop on upgrade). The value is not shown: these are secrets.
            if "\n" in raw or "\r" in raw:
                malformed.append(
                    f"{name} holds a line break (pasted with a newline?): the Databricks SDK sends it as it is"
                )
        if malformed:
            raise MalformedSettings(malformed)
        return settings


def sweep_schedule(env: Mapping[str, str] | None = None) -> str:
    """FILEGATE_SWEEP_SCHEDULE, or its default; SettingsError unless it has NCRONTAB's six fields."""
    env = os.environ if env is None else env
    schedule = env.get("FILEGATE_SWEEP_SCHEDULE", "").strip() or DEFAULT_SWEEP_SCHEDULE
    # NCrontab splits on spaces alone: a tab or a no-break space joins two fields there.
    fields = [field for field in schedule.split(" ") if field]
    if re.search(r"[^\S ]", schedule):
        problem = "holds whitespace other than spaces"
    else:
        problem = f"has {len(fields)} fields" if len(fields) != 6 else _cron_problem(fields)
    if problem:
        raise SettingsError(
            "FILEGATE_SWEEP_SCHEDULE must be an NCRONTAB expression of six fields, seconds first "
            f"(`{DEFAULT_SWEEP_SCHEDULE}` is every hour at minute 17); {schedule!r} {problem}"
        )
    return schedule


# NCRONTAB's fields (the Functions host's timer): name, range, and the names a field also takes.
_MONTHS: tuple[str, ...] = ("January", "February", "March", "April", "May", "June")
_MONTHS += ("July", "August", "September", "October", "November", "December")
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_CRON_FIELDS = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)


def _cron_value(text: str, names: tuple[str, ...], low: int) -> int | None:
    """A field's value: digits, or the first name it begins, in any case (`Jan` is 1, `sun` 0); else None."""
    if text[:1].isdigit():
        return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None
    found = [index for index, name in enumerate(names) if text and name.lower().startswith(text.lower())]
    return found[0] + low if found else None


def _cron_problem(fields: list[str]) -> str:
    """What NCrontab (the Functions host's parser) would refuse in six fields, or "" when it reads them.

    Its rules (atifaziz/NCrontab `CrontabField`): `*`, values, lists, ranges (a reversed one is swapped),
    steps (any whole number, one below 1 counts as 1), names by any beginning of them. A number past 32
    bits, or a step that takes a position past them, makes it throw what it does not catch: the timer
    would never start.
    """
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        takes = f"{low}-{high}" + (f" or names ({names[0][:3]}-{names[-1][:3]})" if names else "")
        for item in text.split(","):
            base, slash, step = item.partition("/")
            # NCrontab adds the step to a position in the field without a check: past 32 bits it wraps.
            if slash and not (re.fullmatch(r"[+-]?[0-9]{1,10}", step) and abs(int(step)) + high - low < 2**31):
                return f"has a step that is not a whole number (below 2^31) in its {name} field ({item!r})"
            if base == "*":
                continue
            start, dash, end = base.partition("-")
            bounds = (_cron_value(start, names, low), _cron_value(end if dash else start, names, low))
            if any(bound is None or not low <= bound <= high for bound in bounds):
                return f"has {item!r} in its {name} field, which takes {takes}"
    return ""
