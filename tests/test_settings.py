"""Settings: read once, defaults, and loud failures for what cannot work."""

from __future__ import annotations

import pytest

from filegate.errors import SettingsError
from filegate.settings import Location, Settings


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


def test_overlapping_locations_are_refused_so_archive_writes_cannot_loop() -> None:
    with pytest.raises(SettingsError, match="overlap"):
        Settings.from_env({"FILEGATE_LANDING": "data", "FILEGATE_ARCHIVE": "data/archive"})


@pytest.mark.parametrize(
    "env",
    [{"FILEGATE_JOB_ID": "twelve"}, {"FILEGATE_SAMPLE_BYTES": "10"}, {"FILEGATE_DATABRICKS_AUTH": "magic"}],
)
def test_malformed_values_fail_loudly(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_the_readme_settings_table_is_the_settings_list() -> None:
    from filegate.settings import SETTINGS
    from tests.emulators import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default else ""
        row = f"| `{setting.name}` | {default} | {', '.join(setting.clouds)} | {setting.description} |"
        assert row in readme, f"README's settings table is out of date for {setting.name}"
