"""One settings list: the names Terraform sets are the names the code reads, on each cloud, both ways.

The README's settings table and the names the code reads are held to the same list by
tests/test_settings.py; together the three agree with filegate.settings.SETTINGS.
"""

from __future__ import annotations

import pytest
from conftest import TerraformModule, object_keys

from filegate.settings import SETTING_NAMES, SETTINGS

# Names the platforms themselves read, per cloud, each for a stated reason; nothing else may appear.
PLATFORM_SETTINGS = {
    "azure": frozenset(
        {
            # The Functions host reaches its own storage with the managed identity (no connection string).
            "AzureWebJobsStorage__accountName",
            "AzureWebJobsStorage__credential",
            # Telemetry goes to Application Insights with Entra ID, not its instrumentation key.
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        }
    ),
    # Cloud Functions sets its own variables (K_SERVICE, FUNCTION_TARGET, ...); Terraform sets none.
    "gcp": frozenset(),
}
# Settings a deployment may leave out: extra contracts are opt-in, and OAuth M2M is an alternative
# to the credential each Terraform wires (managed identity or token on Azure, token on GCP).
OPTIONAL = frozenset({"FILEGATE_CONTRACTS_DIR", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"})


def azure_names(azure: TerraformModule) -> set[str]:
    return object_keys(azure.resource("azurerm_function_app_flex_consumption", "filegate")["app_settings"], azure)


def gcp_names(gcp: TerraformModule) -> set[str]:
    service = gcp.resource("google_cloudfunctions2_function", "filegate")["service_config"][0]
    secrets = {entry["key"] for entry in service["secret_environment_variables"]}
    return object_keys(service["environment_variables"], gcp) | secrets


def code_settings(cloud: str) -> set[str]:
    """The settings the code reads on that cloud, less those a deployment may leave unset."""
    return {setting.name for setting in SETTINGS if cloud in setting.clouds} - OPTIONAL


def test_optional_and_platform_names_are_not_filegate_settings_in_disguise() -> None:
    assert OPTIONAL <= SETTING_NAMES
    for cloud, names in PLATFORM_SETTINGS.items():
        assert not names & SETTING_NAMES, cloud


@pytest.mark.parametrize("cloud", ["azure", "gcp"])
def test_terraform_sets_exactly_the_settings_the_code_reads_plus_listed_platform_names(
    cloud: str, azure: TerraformModule, gcp: TerraformModule
) -> None:
    names = azure_names(azure) if cloud == "azure" else gcp_names(gcp)
    ours = names - PLATFORM_SETTINGS[cloud]

    assert ours - code_settings(cloud) == set(), f"{cloud} Terraform sets names the code does not read"
    assert code_settings(cloud) - ours == set(), f"{cloud} Terraform misses settings the code reads"
    assert PLATFORM_SETTINGS[cloud] - names == set(), f"{cloud}: listed platform names Terraform no longer sets"
