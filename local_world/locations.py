"""`python -m local_world locations`: create the landing, archive and rejected containers (GCS: buckets) on
the local emulator, named by the same settings the function reads (FILEGATE_LANDING, ...)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from filegate import exits
from filegate.errors import FilegateError, SettingsError
from filegate.events import AZURE_TARGET, GCP_TARGET
from filegate.settings import Settings

AZURITE_DEFAULT = "UseDevelopmentStorage=true"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_world locations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=(AZURE_TARGET, GCP_TARGET), default=AZURE_TARGET)
    parser.add_argument(
        "--azure-storage",
        help=f"Azurite's connection string (default: FILEGATE_AZURE_STORAGE, else {AZURITE_DEFAULT})",
    )
    parser.add_argument(
        "--gcs-endpoint",
        default=os.environ.get("STORAGE_EMULATOR_HOST", ""),
        help="the GCS emulator's URL (default: STORAGE_EMULATOR_HOST)",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        names = sorted({settings.landing.container, settings.archive.container, settings.rejected.container})
        if args.target == AZURE_TARGET:
            from filegate.azure_storage import AzureBlobStore

            setting = args.azure_storage or settings.azure_storage or AZURITE_DEFAULT
            # Each container in its own account: the archive's may be FILEGATE_AZURE_ARCHIVE_STORAGE's.
            AzureBlobStore.from_settings(replace(settings, azure_storage=setting)).create_containers(*names)
        else:
            from filegate.gcs_storage import GcsStore

            # Without an emulator the client turns to Google Cloud, and the error spoke of credentials.
            if not args.gcs_endpoint:
                raise SettingsError("no GCS emulator: set STORAGE_EMULATOR_HOST or pass --gcs-endpoint")
            env = {**os.environ, "STORAGE_EMULATOR_HOST": args.gcs_endpoint}
            GcsStore.from_environment(env).create_buckets(*names)
    except FilegateError as exc:
        return exits.report_failure(parser.prog, exc)
    print(f"{args.target}: {', '.join(names)} exist", file=sys.stdout)
    return exits.OK
