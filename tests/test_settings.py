"""Settings: read once, defaults, loud failures, and one list of names for code, README and infra."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from filegate.errors import SettingsError
from filegate.settings import INDEXED_SETTINGS, SETTING_NAMES, SETTINGS, Location, Settings, sweep_schedule
from local_world import ROOT

# A settings-table row: | `NAME` | default | clouds | meaning |
README_ROW = re.compile(r"^\| `(?P<name>[^`]+)` \| (?P<default>.*?) \| (?P<clouds>.*?) \| (?P<meaning>.*) \|$")
# Where production code lives; tests, benchmarks and the demo may set settings, only these read them.
PRODUCTION_CODE = ("filegate", "gcp_function", "spark_jobs", "function_app.py")
FILEGATE_NAMES = frozenset(name for name in SETTING_NAMES if name.startswith("FILEGATE_"))


def test_defaults() -> None:
    settings = Settings.from_env({})

    assert (settings.landing, settings.archive, settings.rejected) == (
        Location("landing"),
        Location("archive"),
        Location("rejected"),
    )
    assert settings.job_name == "filegate-ingest"
    assert settings.sample_bytes == 1024 * 1024


def test_prefixes_are_normalised() -> None:
    settings = Settings.from_env({"FILEGATE_LANDING": "data/incoming/", "FILEGATE_ARCHIVE": "data/archive"})

    assert settings.landing == Location("data", "incoming/")
    assert settings.landing.holds("data", "incoming/x.csv")
    assert not settings.landing.holds("data", "archive/x.csv")


@pytest.mark.parametrize("value", ["data /incoming", "data/ incoming", "data/incoming /", "data/in/ x/", "da ta/in"])
def test_whitespace_beside_a_slash_of_a_location_is_refused(value: str) -> None:
    # `data/incoming /` was taken as the folder `incoming /`: no upload's path began so, and every event was
    # ignored as outside landing, with nothing said.
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"FILEGATE_LANDING": value, "FILEGATE_REJECTED": "data /rejected"})

    assert str(raised.value).split("; ") == [
        f"FILEGATE_LANDING must be `container[/prefix]` without whitespace beside a `/` or in the container's name, "
        f"got {value!r}",
        "FILEGATE_REJECTED must be `container[/prefix]` without whitespace beside a `/` or in the container's name, "
        "got 'data /rejected'",
    ]
    # Not a space inside a folder's name, nor whitespace around the whole value (a pasted newline): left out.
    kept = Settings.from_env({"FILEGATE_LANDING": " data/daily uploads/ \n"}).landing
    assert kept == Location("data", "daily uploads/")
    # An archive's prefix with it is Filegate's own to write, and works: refused, an upgrade would stop it.
    assert Settings.from_env({"FILEGATE_ARCHIVE": "data/archive /"}).archive == Location("data", "archive /")


def test_a_line_break_in_a_credential_the_databricks_sdk_reads_is_refused_without_its_value() -> None:
    # The SDK reads them from the environment as they are: a token pasted with its newline failed every request
    # with "Invalid header value b'Bearer dapi...\n'", the token in the log.
    env = {"DATABRICKS_TOKEN": "dapi-secret\n", "DATABRICKS_CLIENT_SECRET": "\rsecret"}

    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**env, "DATABRICKS_CLIENT_ID": "id "})  # a space HTTP trims: left alone

    problems = str(raised.value).split("; ")
    assert [problem.split(" ")[0] for problem in problems] == ["DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET"]
    assert "secret" not in str(raised.value).replace("DATABRICKS_CLIENT_SECRET", "")
    # A command that does not sign in to Databricks is not stopped by them.
    Settings.from_env(env, names=("FILEGATE_LANDING",))


def test_the_databricks_client_gets_the_host_without_the_whitespace_around_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # From the environment the SDK kept a trailing space, then said "Databricks is not configured: set
    # DATABRICKS_HOST", which was set.
    from filegate.jobs import create_workspace_client

    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1.2.azuredatabricks.net ")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-x")
    for name in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(name, raising=False)

    client = create_workspace_client(Settings.from_env())

    assert client.config.host == "https://adb-1.2.azuredatabricks.net"


def test_overlapping_locations_are_refused_so_archive_writes_cannot_loop() -> None:
    with pytest.raises(SettingsError, match="overlap"):
        Settings.from_env({"FILEGATE_LANDING": "data", "FILEGATE_ARCHIVE": "data/archive"})


@pytest.mark.parametrize(
    "env",
    [
        {"FILEGATE_JOB_ID": "twelve"},
        {"FILEGATE_SAMPLE_BYTES": "10"},
        {"FILEGATE_DATABRICKS_AUTH": "magic"},
        {"FILEGATE_SWEEP_OLDER_THAN_MINUTES": "-5"},
        {"FILEGATE_SWEEP_OLDER_THAN_MINUTES": "an hour"},
        {"FILEGATE_SWEEP_OLDER_THAN_MINUTES": "99999999999"},  # the sweep's cutoff left the calendar
        # int() takes all of these; a job id of 0 was taken for "look the job up by name".
        {"FILEGATE_JOB_ID": "0"},
        {"FILEGATE_JOB_ID": "-5"},
        {"FILEGATE_JOB_ID": "1_000"},
        {"FILEGATE_JOB_ID": "\u0661\u0662"},
        {"FILEGATE_BATCH_JOB_ID": "-1"},
        # 0 rejected every file, moving it out of landing; no sample may be the whole file.
        {"FILEGATE_MAX_FILE_BYTES": "0"},
        {"FILEGATE_SAMPLE_BYTES": "99999999999999"},
        # A URL made `gs:` or `https:` the container.
        {"FILEGATE_LANDING": "gs://landing"},
        {"FILEGATE_ARCHIVE": "https://acct.blob.core.windows.net/archive"},
    ],
)
def test_malformed_values_fail_loudly(env: dict[str, str]) -> None:
    [(name, _)] = env.items()
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)


def test_every_malformed_setting_is_named_at_once() -> None:
    # Only the first was: a function app redeployed once per mistake before it loaded.
    env = {
        "FILEGATE_LANDING": "gs://landing",  # its default stands in for it: no overlap is made up
        "FILEGATE_ARCHIVE": "landing/archive",
        "FILEGATE_JOB_ID": "-3",  # not also "must be 1 or more"
        "FILEGATE_SAMPLE_BYTES": "10",
        "FILEGATE_DATABRICKS_AUTH": "magic",
    }
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)

    problems = str(raised.value).split("; ")
    assert [problem.split(" ")[0] for problem in problems] == [
        "FILEGATE_LANDING",
        "FILEGATE_JOB_ID",
        "FILEGATE_SAMPLE_BYTES",
        "FILEGATE_DATABRICKS_AUTH",
    ]
    assert "overlap" not in str(raised.value)


def test_locations_that_overlap_are_named_beside_a_malformed_value() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"FILEGATE_ARCHIVE": "rejected/archive", "FILEGATE_SAMPLE_BYTES": "abc"})

    assert [problem.split(" ")[0] for problem in str(raised.value).split("; ")] == [
        "FILEGATE_SAMPLE_BYTES",
        "locations",
    ]


def test_values_out_of_range_are_named_together() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"FILEGATE_SAMPLE_BYTES": "10", "FILEGATE_MAX_FILE_BYTES": "0", "FILEGATE_JOB_ID": "0"})

    assert [problem.split(" ")[0] for problem in str(raised.value).split("; ")] == [
        "FILEGATE_SAMPLE_BYTES",
        "FILEGATE_MAX_FILE_BYTES",
        "FILEGATE_JOB_ID",
    ]


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name it is asked for, and refuses to be scanned."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("settings must read names from SETTINGS, not scan the environment")

    def __len__(self) -> int:
        return len(self._values)


FULL_ENV = {
    "FILEGATE_LANDING": "data/incoming",
    "FILEGATE_ARCHIVE": "archive/files",
    "FILEGATE_REJECTED": "rejected",
    "FILEGATE_AZURE_STORAGE": "https://account.blob.core.windows.net",
    "FILEGATE_AZURE_ARCHIVE_STORAGE": "https://archive.blob.core.windows.net",
    "FILEGATE_JOB_ID": "42",
    "FILEGATE_JOB_NAME": "ingest",
    "FILEGATE_BATCH_JOB_ID": "43",
    "FILEGATE_BATCH_JOB_NAME": "batch",
    "FILEGATE_DATABRICKS_AUTH": "azure-identity",
    "FILEGATE_SAMPLE_BYTES": "4096",
    "FILEGATE_MAX_FILE_BYTES": "1000000",
    "FILEGATE_CONTRACTS_DIR": "/etc/filegate/contracts",
    "FILEGATE_SWEEP_OLDER_THAN_MINUTES": "15",
    "FILEGATE_SWEEP_SCHEDULE": "0 */15 * * * *",
}


@pytest.mark.parametrize("values", [{}, FULL_ENV], ids=["empty", "every setting"])
def test_settings_read_exactly_the_filegate_names_in_the_list(values: dict[str, str]) -> None:
    env = RecordingEnv(values)

    Settings.from_env(env)

    assert env.asked <= SETTING_NAMES, f"read names missing from SETTINGS: {sorted(env.asked - SETTING_NAMES)}"
    assert {name for name in env.asked if name.startswith("FILEGATE_")} == FILEGATE_NAMES - INDEXED_SETTINGS


def test_the_sweep_schedule_is_read_alone_with_its_default_and_its_six_fields_checked() -> None:
    assert INDEXED_SETTINGS <= FILEGATE_NAMES
    assert sweep_schedule({}) == "0 17 * * * *"
    assert sweep_schedule({"FILEGATE_SWEEP_SCHEDULE": " 0 */15 * * * * "}) == "0 */15 * * * *"
    with pytest.raises(SettingsError, match="six fields, seconds first"):
        sweep_schedule({"FILEGATE_SWEEP_SCHEDULE": "17 * * * *"})  # unix cron, as Cloud Scheduler takes it
    # What NCrontab reads: lists, ranges (reversed ones swapped), steps (below 1 taken as 1), names (any
    # case, any beginning of the name).
    for good in (
        "0 0 9-17/2 * * Mon-Fri",
        "0 30 9 1,15 jan-MAR *",
        "*/30 * * * * Sunday",
        "0 0 17-9 * * *",
        "0 */0 * * * *",
    ):
        assert sweep_schedule({"FILEGATE_SWEEP_SCHEDULE": good}) == good
    # Six fields that the host cannot read: the timer would never start.
    for bad, problem in [
        ("a b c d e f", "'a' in its second field, which takes 0-59"),
        ("0 61 * * * *", "'61' in its minute field"),
        ("0 0 0 0 0 0", "'0' in its day field, which takes 1-31"),
        ("0 0 0 * 13 *", "'13' in its month field, which takes 1-12 or names (Jan-Dec)"),
        ("0 0 0 * * Mondays", "'Mondays' in its day of week field"),
        ("0 */99999999999 * * * *", "a step that is not a whole number (below 2^31) in its minute field"),
        ("1/2147483647 * * * * *", "a step that is not a whole number (below 2^31) in its second field"),
        ("0\t17 * * * *", "holds whitespace other than spaces"),
    ]:
        with pytest.raises(SettingsError, match=re.escape(problem)):
            sweep_schedule({"FILEGATE_SWEEP_SCHEDULE": bad})
    # Settings never read it: a mistake there stops neither the GCP function nor the commands.
    Settings.from_env({"FILEGATE_SWEEP_SCHEDULE": "17 * * * *"})


def test_full_env_covers_every_filegate_setting() -> None:
    assert set(FULL_ENV) == FILEGATE_NAMES


def test_no_production_code_names_a_filegate_setting_outside_the_list() -> None:
    paths: list[Path] = []
    for entry in PRODUCTION_CODE:
        path = ROOT / entry
        paths.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])

    named = {
        name for path in paths for name in re.findall(r"\bFILEGATE_[A-Z0-9_]+\b", path.read_text(encoding="utf-8"))
    }

    assert named - FILEGATE_NAMES == set()


def readme_settings_table() -> dict[str, tuple[str, str, str]]:
    """The rows of the README's settings table, by name: (default, clouds, meaning)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n## Settings\n" in readme, "README.md has no `## Settings` section"
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    assert "| name | default | cloud | meaning |" in section
    rows: dict[str, tuple[str, str, str]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        match = README_ROW.match(line)
        assert match, f"not a settings row: {line}"
        assert match["name"] not in rows, f"{match['name']} has two rows"
        rows[match["name"]] = (match["default"], match["clouds"], match["meaning"])
    return rows


def test_the_readme_settings_table_is_the_settings_list() -> None:
    documented = readme_settings_table()
    expected = {
        setting.name: (
            f"`{setting.default}`" if setting.default else "",
            ", ".join(setting.clouds),
            setting.description,
        )
        for setting in SETTINGS
    }

    assert set(documented) - set(expected) == set(), "README documents settings the code does not have"
    assert set(expected) - set(documented) == set(), "README misses settings the code reads"
    for name, row in expected.items():
        assert documented[name] == row, f"README's row for {name} is out of date"
