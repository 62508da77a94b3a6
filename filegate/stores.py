"""The store for a cloud the operator names: what the commands that serve either cloud open.

The deployed functions do not come here: each adapter opens its own cloud's store, so the GCP
function's folder holds no Azure code (and the other way round).
"""

from __future__ import annotations

import argparse

from filegate.errors import SettingsError
from filegate.events import AZURE, AZURE_TARGET, GCP_TARGET, GCS, TARGETS
from filegate.ingest import Gate
from filegate.runtime import build_gate
from filegate.settings import Settings
from filegate.storage import Store


def add_target_option(parser: argparse.ArgumentParser, what: str = "which cloud") -> None:
    parser.add_argument("--target", choices=sorted(TARGETS), help=f"{what} (default: azure if configured, else gcp)")


def store_kind(target: str | None, settings: Settings) -> str:
    """The store kind for `--target`, or the configured cloud: Azure when its storage is set, else GCS."""
    return TARGETS[target or (AZURE_TARGET if settings.azure_storage else GCP_TARGET)]


def open_store(kind: str, settings: Settings) -> Store:
    """The store for one cloud; its SDK is imported only here, when that cloud is used."""
    if kind == AZURE:
        from filegate.azure_storage import AzureBlobStore

        return AzureBlobStore.from_settings(settings)
    if kind == GCS:
        from filegate.gcs_storage import GcsStore

        return GcsStore.from_environment()
    raise SettingsError(f"unknown store kind {kind!r}")


def open_gate(target: str | None, settings: Settings, *, check: bool = True) -> Gate:
    """The gate on the named (or configured) cloud's store."""
    return build_gate(open_target_store(target, settings), settings, check=check)


def open_target_store(target: str | None, settings: Settings) -> Store:
    """The named (or configured) cloud's store; a settings error says when Cloud Storage was only a guess."""
    kind = store_kind(target, settings)
    try:
        return open_store(kind, settings)
    except SettingsError as exc:
        if target is None and kind == GCS:
            # Taken because FILEGATE_AZURE_STORAGE is not set: an Azure operator who forgot it would read only
            # about Google credentials.
            # The Azure fix leads: the operator who never meant Cloud Storage reads it first.
            raise SettingsError(
                "FILEGATE_AZURE_STORAGE is not set, so Cloud Storage was taken: on Azure, set it (or give --target "
                f"azure); on GCP, {exc}"
            ) from exc
        raise
