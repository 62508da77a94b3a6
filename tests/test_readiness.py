"""Misconfigurations are named before any byte moves, and a missing destination is never an acknowledgement."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from filegate.azure_storage import AzureBlobStore
from filegate.errors import LocationMissing, SettingsError, TransientError
from filegate.ingest import handle_payload
from filegate.readiness import check_storage, raise_for
from filegate.settings import Location, Settings
from local_world.emulators import free_port
from local_world.inputs import csv_bytes, tracking_row
from tests.faults.world import World, world_settings
from tests.test_cli import run_cli

NAME = "order_tracking_2024_03_05.csv"
DATA = csv_bytes([tracking_row(i) for i in range(5)])


@pytest.mark.parametrize("setting", ["archive", "rejected"])
def test_a_missing_destination_container_is_a_configuration_error_and_the_file_stays(
    world: World, setting: str
) -> None:
    data = DATA if setting == "archive" else b"not;a;csv\n"
    event = world.upload(NAME, data)
    settings = dataclasses.replace(world.settings, **{setting: Location(f"missing-{setting}-container")})
    gate = dataclasses.replace(world.gate(), settings=settings)

    with pytest.raises(LocationMissing) as missing:
        handle_payload(gate, event)

    # GCS has buckets: it was told of a "gcs container".
    noun = "Azure container" if world.kind == "azure" else "GCS bucket"
    assert f"FILEGATE_{setting.upper()} names {noun} 'missing-{setting}-container'" in str(missing.value)

    assert [o.path for o in world.objects(world.settings.landing)] == [world.settings.landing.path(NAME)]
    assert world.runs() == []


def _env(world: World, request: pytest.FixtureRequest) -> dict[str, str]:
    settings = world.settings
    env = {
        "FILEGATE_LANDING": str(settings.landing),
        "FILEGATE_ARCHIVE": str(settings.archive),
        "FILEGATE_REJECTED": str(settings.rejected),
        "DATABRICKS_HOST": world.jobs_api.url,
        "DATABRICKS_TOKEN": "local-test-token",
        "FILEGATE_JOB_ID": "",
        "FILEGATE_AZURE_STORAGE": "",
        "FILEGATE_AZURE_ARCHIVE_STORAGE": "",
        "DATABRICKS_CONFIG_FILE": "/nonexistent",
    }
    if world.kind == "azure":
        azurite = request.getfixturevalue("azurite")
        env["FILEGATE_AZURE_STORAGE"] = azurite.connection_string
        env["FILEGATE_AZURE_ARCHIVE_STORAGE"] = azurite.archive_connection_string
    else:
        env["STORAGE_EMULATOR_HOST"] = request.getfixturevalue("gcs_emulator").url
    return env


def _handle(world: World, event: dict[str, Any], env: dict[str, str], tmp_path: Path) -> Any:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event))
    return run_cli(["handle", str(event_file)], env)


def _wrong_key(connection_string: str) -> str:
    wrong = base64.b64encode(b"not the key of this account, 64 bytes long, just like the real").decode()
    parts = [p if not p.startswith("AccountKey=") else f"AccountKey={wrong}" for p in connection_string.split(";")]
    return ";".join(parts)


MISCONFIGURATIONS = [
    pytest.param({"DATABRICKS_HOST": "", "DATABRICKS_TOKEN": ""}, "DATABRICKS_HOST", id="no-databricks-host"),
    pytest.param({"FILEGATE_JOB_ID": "424242"}, "FILEGATE_JOB_ID=424242: no such job", id="unknown-job-id"),
    pytest.param({"FILEGATE_JOB_NAME": "no-such-job"}, "no Databricks job named 'no-such-job'", id="unknown-job-name"),
    pytest.param(
        {"FILEGATE_ARCHIVE": "nope-archive"}, "FILEGATE_ARCHIVE (nope-archive): does not exist", id="no-archive"
    ),
]


@pytest.mark.parametrize(("change", "named"), MISCONFIGURATIONS)
def test_handle_checks_the_configuration_before_moving_bytes(
    world: World, request: pytest.FixtureRequest, tmp_path: Path, change: dict[str, str], named: str
) -> None:
    event = world.upload(NAME, DATA)

    result = _handle(world, event, {**_env(world, request), **change}, tmp_path)

    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert len(world.objects(world.settings.landing)) == 1
    assert world.objects(world.settings.archive) == []
    assert world.runs() == []


@pytest.mark.parametrize(
    ("connection", "named"),
    [
        pytest.param("AccountName=x;this is not one", "is not a storage connection string", id="malformed"),
        pytest.param("wrong-key", "the key in FILEGATE_AZURE_STORAGE is wrong", id="wrong-key"),
    ],
)
def test_a_bad_storage_connection_string_is_named(
    world: World, request: pytest.FixtureRequest, tmp_path: Path, connection: str, named: str
) -> None:
    if world.kind != "azure":
        pytest.skip("an Azure setting")
    event = world.upload(NAME, DATA)
    env = _env(world, request)
    env["FILEGATE_AZURE_STORAGE"] = (
        _wrong_key(env["FILEGATE_AZURE_STORAGE"]) if connection == "wrong-key" else connection
    )

    result = _handle(world, event, env, tmp_path)

    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "role assignments" not in result.stderr
    assert "Traceback" not in result.stderr
    assert len(world.objects(world.settings.landing)) == 1


def test_an_unreachable_jobs_api_is_named_within_seconds(
    world: World, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    event = world.upload(NAME, DATA)
    url = f"http://127.0.0.1:{free_port()}"

    started = time.monotonic()
    result = _handle(world, event, {**_env(world, request), "DATABRICKS_HOST": url}, tmp_path)
    elapsed = time.monotonic() - started

    assert result.returncode == 75, result.stderr
    assert f"cannot reach the Jobs API at {url} (connection refused)" in result.stderr
    # Interpreter start and imports included; the SDK's retries alone would take 20 s and more.
    assert elapsed < 15, f"took {elapsed:.1f} s"
    assert len(world.objects(world.settings.landing)) == 1


@pytest.mark.parametrize("world", ["gcs"], indirect=True)
def test_a_missing_grant_is_named_per_location_as_a_configuration_error(world: World) -> None:
    # GCS answers 403 to a listing the identity has no grant for; the proxy gives that answer for two buckets.
    settings = world.settings
    refused = (settings.archive.container, settings.rejected.container)
    assert world.proxy is not None
    world.proxy.fail(lambda method, path, headers: any(f"/b/{b}/o" in path for b in refused), status=403)

    checks = check_storage(settings, world.store)

    assert [(check.name, check.ok, check.transient) for check in checks] == [
        (f"FILEGATE_LANDING ({settings.landing.container})", True, False),
        (f"FILEGATE_ARCHIVE ({refused[0]})", False, False),
        (f"FILEGATE_REJECTED ({refused[1]})", False, False),
    ]
    with pytest.raises(
        SettingsError, match=rf"bucket {refused[0]}: this identity may not list it.*bucket {refused[1]}"
    ):
        raise_for(checks)


def test_storage_that_does_not_answer_is_asked_once_per_account(world: World) -> None:
    # Each ask spends the store's retries; three in a row would outlive Event Grid's 30 s.
    settings = world.settings
    landing, archive, rejected = settings.landing.container, settings.archive.container, settings.rejected.container
    assert world.proxy is not None
    never_asked = world.proxy.fail(lambda method, path, headers: rejected in path)
    # On Azure the archive has an account of its own (as deployed), which still answers.
    down = world.proxy.fail(lambda method, path, headers: world.kind == "gcs" or archive not in path)

    checks = check_storage(settings, world.store)

    assert [(check.name, check.ok, check.transient) for check in checks] == [
        (f"FILEGATE_LANDING ({landing})", False, True),
        (f"FILEGATE_ARCHIVE ({archive})", world.kind == "azure", world.kind == "gcs"),
        (f"FILEGATE_REJECTED ({rejected})", False, True),
    ]
    assert checks[2].detail == "not checked: the same storage did not answer for FILEGATE_LANDING"
    assert never_asked.hits == 0
    assert down.hits > 1, "the first location was not retried"
    with pytest.raises(TransientError, match="not ready: FILEGATE_LANDING"):
        raise_for(checks)


@pytest.mark.parametrize("wrong", ["azure_storage", "azure_archive_storage"])
def test_a_key_one_account_refuses_leaves_the_other_account_s_locations_checked(
    two_accounts: tuple[AzureBlobStore, Settings], wrong: str
) -> None:
    # The first refused key ended every check: with a wrong archive key, a rejected container that does not
    # exist (in the other account, whose key works) went unreported until the key was fixed.
    _, settings = two_accounts
    settings = dataclasses.replace(settings, rejected=Location("nowhere-rejected"))
    if wrong == "azure_storage":
        settings = dataclasses.replace(settings, azure_storage=_wrong_key(settings.azure_storage or ""))
    else:
        settings = dataclasses.replace(settings, azure_archive_storage=_wrong_key(settings.azure_archive_storage or ""))

    checks = check_storage(settings, AzureBlobStore.from_settings(settings))

    shown = [(check.name, check.ok) for check in checks]
    refused = next(check.detail for check in checks if check.name == "storage credentials")
    assert f"the key in FILEGATE_{wrong.upper()} is wrong" in refused
    if wrong == "azure_storage":
        # Landing and rejected share the refused account: one line says it; the archive's account answers.
        assert shown == [("storage credentials", False), (f"FILEGATE_ARCHIVE ({settings.archive.container})", True)]
    else:
        assert shown == [
            (f"FILEGATE_LANDING ({settings.landing.container})", True),
            ("storage credentials", False),
            ("FILEGATE_REJECTED (nowhere-rejected)", False),
        ]


class _DeniedLanding:
    """A store whose identity lacks its role on the landing container only (Azure answers 403, not retried)."""

    kind = "azure"

    def __init__(self, landing: str) -> None:
        self.landing = landing
        self.asked: list[str] = []

    def container_exists(self, container: str) -> bool:
        self.asked.append(container)
        if container == self.landing:
            raise TransientError(f"container {container}: access denied (AuthorizationPermissionMismatch)")
        return not container.startswith("rejected")


def test_a_location_denied_to_the_identity_does_not_keep_the_others_unchecked() -> None:
    # Grants are per container: the landing's missing role said nothing about the others, and a rejected
    # container that does not exist (a setting to fix, exit 2) went unreported behind "not checked".
    settings = world_settings("landing-x", "archive-x", "rejected-x")
    store = _DeniedLanding("landing-x")

    checks = check_storage(settings, store)  # type: ignore[arg-type]

    assert store.asked == ["landing-x", "archive-x", "rejected-x"]
    assert [(check.ok, check.transient) for check in checks] == [(False, True), (True, False), (False, False)]
    with pytest.raises(SettingsError, match="FILEGATE_REJECTED \\(rejected-x\\): does not exist"):
        raise_for(checks)
