"""One settings list: the names Terraform sets, the names the code reads, the names the README documents."""

from __future__ import annotations

import re

import pytest
from conftest import REPO, TerraformModule, object_keys

from filegate.settings import SETTING_NAMES, SETTINGS

# Names the platforms themselves read; everything else the Terraform sets must be a Filegate setting.
PLATFORM_SETTINGS = frozenset(
    {
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "FUNCTIONS_WORKER_RUNTIME",
    }
)
# Settings a deployment may leave out: extra contracts are opt-in, and OAuth M2M is an alternative
# to the credential each Terraform wires (managed identity or token on Azure, token on GCP).
OPTIONAL = frozenset({"FILEGATE_CONTRACTS_DIR", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"})
OURS = re.compile(r"^(FILEGATE|DATABRICKS)_")


def azure_names(azure: TerraformModule) -> set[str]:
    return object_keys(azure.resource("azurerm_function_app_flex_consumption", "filegate")["app_settings"], azure)


def gcp_names(gcp: TerraformModule) -> set[str]:
    service = gcp.resource("google_cloudfunctions2_function", "filegate")["service_config"][0]
    secrets = {entry["key"] for entry in service["secret_environment_variables"]}
    return object_keys(service["environment_variables"], gcp) | secrets


def required(cloud: str) -> set[str]:
    return {setting.name for setting in SETTINGS if cloud in setting.clouds} - OPTIONAL


@pytest.mark.parametrize("cloud", ["azure", "gcp"])
def test_terraform_sets_only_documented_or_platform_names(
    cloud: str, azure: TerraformModule, gcp: TerraformModule
) -> None:
    names = azure_names(azure) if cloud == "azure" else gcp_names(gcp)

    assert names
    assert {name for name in names if OURS.match(name)} <= SETTING_NAMES
    assert {name for name in names if not OURS.match(name)} <= PLATFORM_SETTINGS


@pytest.mark.parametrize("cloud", ["azure", "gcp"])
def test_terraform_sets_every_setting_the_code_needs_on_that_cloud(
    cloud: str, azure: TerraformModule, gcp: TerraformModule
) -> None:
    names = azure_names(azure) if cloud == "azure" else gcp_names(gcp)

    assert required(cloud) - names == set()


def test_gcp_sets_no_azure_only_setting(gcp: TerraformModule) -> None:
    azure_only = {setting.name for setting in SETTINGS if "gcp" not in setting.clouds}

    assert gcp_names(gcp) & azure_only == set()


def test_readme_documents_every_setting() -> None:
    readme = REPO / "README.md"

    assert readme.exists(), "README.md (its settings table comes from filegate.settings.SETTINGS) is missing"
    assert sorted(name for name in SETTING_NAMES if name not in readme.read_text()) == []
