"""`python -m local_world locations`: the three containers (buckets) the settings name, on the emulator."""

from __future__ import annotations

import uuid

import pytest

from filegate.azure_storage import AzureBlobStore
from filegate.gcs_storage import GcsStore
from local_world.emulators import Azurite
from local_world.locations import main
from tests.gcp.world import PROJECT, GcsEmulator


def _names(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    suffix = uuid.uuid4().hex[:8]
    names = [f"landing-{suffix}", f"archive-{suffix}", f"rejected-{suffix}"]
    for setting, name in zip(("FILEGATE_LANDING", "FILEGATE_ARCHIVE", "FILEGATE_REJECTED"), names, strict=True):
        monkeypatch.setenv(setting, f"{name}/incoming/" if setting == "FILEGATE_LANDING" else name)
    return names


def test_azurite_gets_the_containers_the_settings_name(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    names = _names(monkeypatch)

    assert main(["--azure-storage", azurite.connection_string]) == 0
    assert main(["--azure-storage", azurite.connection_string]) == 0  # again: nothing to do, no error

    store = AzureBlobStore.from_setting(azurite.connection_string)
    assert all(store.container_exists(name) for name in names)


def test_the_gcs_emulator_gets_the_buckets(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    names = _names(monkeypatch)
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator.url, "GOOGLE_CLOUD_PROJECT": PROJECT}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert main(["--target", "gcp"]) == 0

    store = GcsStore.from_environment(env)
    assert all(store.container_exists(name) for name in names)


def test_the_gcs_emulator_named_on_the_command_line_gets_the_buckets(
    gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = _names(monkeypatch)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)

    assert main(["--target", "gcp", "--gcs-endpoint", gcs_emulator.url]) == 0

    store = GcsStore.from_environment({"STORAGE_EMULATOR_HOST": gcs_emulator.url, "GOOGLE_CLOUD_PROJECT": PROJECT})
    assert all(store.container_exists(name) for name in names)


def test_without_a_gcs_emulator_it_says_to_name_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `make local-locations TARGET=gcp` in a fresh shell: it turned to Google Cloud and spoke of credentials.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)

    assert main(["--target", "gcp"]) == 2
    assert "no GCS emulator: set STORAGE_EMULATOR_HOST or pass --gcs-endpoint" in capsys.readouterr().err


def test_bad_settings_exit_as_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILEGATE_LANDING", "same")
    monkeypatch.setenv("FILEGATE_ARCHIVE", "same")

    assert main([]) == 2
