"""Invariants of infra/azure: event filtering, delivery, identity-only storage, least privilege."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, TerraformModule, object_keys

from filegate.events import BLOB_CREATED, COMMITTED_APIS

FUNCTION = ("azurerm_function_app_flex_consumption", "filegate")
FUNCTION_PRINCIPAL = "${azurerm_function_app_flex_consumption.filegate.identity[0].principal_id}"
# Every role assignment there may be, as (role, scope). A new grant, a wider role or a wider scope fails
# here until someone adds it on purpose.
ALLOWED_GRANTS = {
    # Landing account: landing, rejected, the host's containers, and the user delegation key for the
    # SAS that signs each copy into the archive account (Azure grants that key only at account scope).
    # Owner: the Functions host's documented minimum on its AzureWebJobsStorage account, timer locks included.
    "function_blob_data": ("Storage Blob Data Owner", "${azurerm_storage_account.filegate.id}"),
    # Archive account: the archive container alone.
    "function_archive": ("Storage Blob Data Contributor", "${azurerm_storage_container.archive.id}"),
    # Unity Catalog's storage credential: read and list the archive account, which holds nothing else;
    # account scope because Unity Catalog vends user delegation SAS tokens, whose key needs it.
    "databricks_archive_read": ("Storage Blob Data Reader", "${azurerm_storage_account.archive.id}"),
    "function_telemetry": ("Monitoring Metrics Publisher", "${azurerm_application_insights.filegate.id}"),
    "function_secrets_user": ("Key Vault Secrets User", "${azurerm_key_vault.filegate[0].id}"),
    "deployer_secrets_officer": ("Key Vault Secrets Officer", "${azurerm_key_vault.filegate[0].id}"),
    "topic_deadletter": ("Storage Blob Data Contributor", "${azurerm_storage_container.deadletter.id}"),
    "uploaders_landing": ("Storage Blob Data Contributor", "${azurerm_storage_container.landing.id}"),
    "operators_read": ("Storage Blob Data Reader", "${local.operator_containers[each.value.container]}"),
    "recovery_write": ("Storage Blob Data Contributor", "${local.recovery_containers[each.value.container]}"),
    "recovery_read_deadletter": ("Storage Blob Data Reader", "${azurerm_storage_container.deadletter.id}"),
    # Copies between the accounts are signed with a user delegation key of the source's account (the
    # archive's when the sweep rejects a trigger from it): that one action, no data, at account scope.
    "function_archive_delegation_key": ("Storage Blob Delegator", "${azurerm_storage_account.archive.id}"),
    "recovery_delegation_key": ("Storage Blob Delegator", "${local.storage_accounts[each.value.account]}"),
}
# What both storage accounts must hold to: Entra-only, TLS 1.2, nothing public, no local users.
HARDENED_ACCOUNT = {
    "min_tls_version": "TLS1_2",
    "https_traffic_only_enabled": True,
    "allow_nested_items_to_be_public": False,
    "shared_access_key_enabled": False,
    "default_to_oauth_authentication": True,
    "local_user_enabled": False,
}
GUID = "01234567-89ab-cdef-0123-456789abcdef"


def triggers_of_the_app() -> dict[str, list[str]]:
    """Each function function_app.py registers, by the name the host knows it by, with its bindings' types."""
    import function_app

    return {
        function.get_function_name(): [binding["type"] for binding in function.get_bindings_dict()["bindings"]]
        for function in function_app.app.get_functions()
    }


def subscription(azure: TerraformModule) -> dict:
    return azure.resource("azurerm_eventgrid_system_topic_event_subscription", "blob_created")


def test_subscription_delivers_blob_created_to_the_function_trigger(azure: TerraformModule) -> None:
    sub = subscription(azure)
    endpoint = sub["azure_function_endpoint"][0]

    assert sub["included_event_types"] == [BLOB_CREATED]
    assert sub["event_delivery_schema"] == "EventGridSchema"
    assert endpoint["function_id"] == (
        "${azurerm_function_app_flex_consumption.filegate.id}/functions/${local.event_grid_function_name}"
    )
    assert azure.locals["event_grid_function_name"] == "on_blob_created"
    # Event Grid delivers to the name the app registers (@app.function_name), not to the Python function's.
    assert triggers_of_the_app()[azure.locals["event_grid_function_name"]] == ["eventGridTrigger"]
    assert azure.outputs["function_name"]["value"] == "${local.event_grid_function_name}"
    assert sub["system_topic"] == "${azurerm_eventgrid_system_topic.storage.name}"
    topic = azure.resource("azurerm_eventgrid_system_topic", "storage")
    assert topic["source_resource_id"] == "${azurerm_storage_account.filegate.id}"
    assert topic["topic_type"] == "Microsoft.Storage.StorageAccounts"


def test_subscription_only_sees_committed_writes_in_the_landing_location(azure: TerraformModule) -> None:
    sub = subscription(azure)
    (string_in,) = sub["advanced_filter"][0]["string_in"]

    assert sub["subject_filter"][0]["subject_begins_with"] == (
        "/blobServices/default/containers/${var.landing_container}/blobs/${var.landing_prefix}"
    )
    assert string_in["key"] == "data.api"
    # The writes the core takes as complete (filegate/events.py): one the filter drops never arrives,
    # one the core ignores costs a delivery for nothing.
    values = azure.resolve(string_in["values"])
    assert sorted(values) == sorted(COMMITTED_APIS)
    assert len(values) == len(set(values))


def test_archive_and_rejected_lie_outside_the_watched_container(azure: TerraformModule) -> None:
    landing = azure.resolve("${var.landing_container}")
    others = {azure.resolve("${var.archive_container}"), azure.resolve("${var.rejected_container}"), "deadletter"}

    assert landing not in others
    assert len(others) == 3
    # The defaults are not the only values a user gives: the variables refuse an overlap too.
    (archive_rule,) = azure.variables["archive_container"]["validation"]
    (rejected_rule,) = azure.variables["rejected_container"]["validation"]
    assert "var.landing_container" in archive_rule["condition"]
    assert {"var.landing_container", "var.archive_container"} <= set(
        re.findall(r"var\.\w+", rejected_rule["condition"])
    )


def test_subscription_retries_explicitly_then_dead_letters_with_its_identity(azure: TerraformModule) -> None:
    sub = subscription(azure)
    retry = sub["retry_policy"][0]
    destination = sub["storage_blob_dead_letter_destination"][0]

    assert 1 <= azure.resolve(retry["max_delivery_attempts"]) <= 30
    assert 1 <= azure.resolve(retry["event_time_to_live"]) <= 1440
    assert destination["storage_account_id"] == "${azurerm_storage_account.filegate.id}"
    assert destination["storage_blob_container_name"] == "${azurerm_storage_container.deadletter.name}"
    # Shared keys are off, so Event Grid must dead-letter as the topic's identity, which needs a role there.
    assert sub["dead_letter_identity"][0]["type"] == "SystemAssigned"
    grant = azure.resource("azurerm_role_assignment", "topic_deadletter")
    assert grant["scope"] == "${azurerm_storage_container.deadletter.id}"
    assert grant["role_definition_name"] == "Storage Blob Data Contributor"
    assert grant["principal_id"] == "${azurerm_eventgrid_system_topic.storage.identity[0].principal_id}"
    assert sub["depends_on"] == ["${azurerm_role_assignment.topic_deadletter}"]


def test_retry_limits_are_enforced_on_the_variables(azure: TerraformModule) -> None:
    attempts = azure.variables["event_max_delivery_attempts"]["validation"][0]["condition"]
    ttl = azure.variables["event_time_to_live_minutes"]["validation"][0]["condition"]

    assert ">= 1" in attempts
    assert "<= 30" in attempts
    assert ">= 1" in ttl
    assert "<= 1440" in ttl


def test_storage_account_allows_no_public_or_key_based_access(azure: TerraformModule) -> None:
    account = azure.resource("azurerm_storage_account", "filegate")

    for name, value in HARDENED_ACCOUNT.items():
        assert account[name] == value, name
    assert account["is_hns_enabled"] is False
    assert account["blob_properties"][0]["versioning_enabled"] is True
    containers = azure.of_type("azurerm_storage_container")
    assert set(containers) >= {"landing", "archive", "rejected", "deadletter", "deployment"}
    assert {body["container_access_type"] for body in containers.values()} == {"private"}


def test_the_archive_has_an_account_of_its_own_that_unity_catalog_can_read(azure: TerraformModule) -> None:
    landing, archive = (azure.resource("azurerm_storage_account", name) for name in ("filegate", "archive"))
    containers = azure.of_type("azurerm_storage_container")

    # An external location needs a hierarchical namespace; the landing account must not have one.
    assert archive["is_hns_enabled"] is True
    for name, value in HARDENED_ACCOUNT.items():
        assert archive[name] == value, name
    assert archive["account_replication_type"] == landing["account_replication_type"]
    assert archive["sas_policy"] == landing["sas_policy"]
    # No versioning with a namespace: soft delete, as long as the landing account's, is the safety net.
    properties = archive["blob_properties"][0]
    assert "versioning_enabled" not in properties
    for policy in ("delete_retention_policy", "container_delete_retention_policy"):
        assert properties[policy][0]["days"] == "${var.blob_retention_days}", policy
    assert containers["archive"]["storage_account_id"] == "${azurerm_storage_account.archive.id}"
    for name in ("landing", "rejected", "deadletter", "deployment"):
        assert containers[name]["storage_account_id"] == "${azurerm_storage_account.filegate.id}", name
    # Events come only from the landing account, so the archive's writes never come back.
    assert azure.resource("azurerm_eventgrid_system_topic", "storage")["source_resource_id"] == (
        "${azurerm_storage_account.filegate.id}"
    )


def test_storage_account_names_fit_azure_limits_for_every_name_prefix(azure: TerraformModule) -> None:
    longest_prefix = "a" * 11  # what name_prefix's validation allows at most
    for name in ("filegate", "archive"):
        template = azure.resource("azurerm_storage_account", name)["name"]
        rendered = template.replace("${var.name_prefix}", longest_prefix).replace(
            "${random_string.storage_suffix.result}", "x" * 6
        )
        assert re.fullmatch(r"[a-z0-9]{3,24}", rendered), (name, rendered)
    assert re.search(r"\{2,10\}", azure.variables["name_prefix"]["validation"][0]["condition"])


def test_both_accounts_log_blob_reads_writes_and_deletes(azure: TerraformModule) -> None:
    settings = azure.of_type("azurerm_monitor_diagnostic_setting")
    targets = {body["target_resource_id"]: body for body in settings.values()}

    for account in ("filegate", "archive"):
        setting = targets["${azurerm_storage_account." + account + ".id}/blobServices/default"]
        categories = {log["category"] for log in setting["enabled_log"]}
        assert categories == {"StorageRead", "StorageWrite", "StorageDelete"}, account
        assert setting["log_analytics_workspace_id"] == "${azurerm_log_analytics_workspace.filegate.id}"


def test_databricks_reads_the_archive_through_an_access_connector_that_cannot_write(azure: TerraformModule) -> None:
    connector = azure.resource("azurerm_databricks_access_connector", "archive")
    grant = azure.resource("azurerm_role_assignment", "databricks_archive_read")
    url = azure.outputs["archive_external_location_url"]["value"]

    assert connector["identity"][0]["type"] == "SystemAssigned"
    assert grant["principal_id"] == "${azurerm_databricks_access_connector.archive.identity[0].principal_id}"
    assert (grant["role_definition_name"], grant["scope"]) == (
        "Storage Blob Data Reader",
        "${azurerm_storage_account.archive.id}",
    )
    # The connector's only grant, and the archive is all its account holds.
    connector_grants = [
        name
        for name, body in azure.of_type("azurerm_role_assignment").items()
        if "access_connector" in body["principal_id"]
    ]
    in_archive_account = [
        name
        for name, body in azure.of_type("azurerm_storage_container").items()
        if body["storage_account_id"] == "${azurerm_storage_account.archive.id}"
    ]
    assert connector_grants == ["databricks_archive_read"]
    assert in_archive_account == ["archive"]
    assert url == (
        "abfss://${azurerm_storage_container.archive.name}@${azurerm_storage_account.archive.name}.dfs.core.windows.net/"
    )
    connector_id = azure.outputs["databricks_access_connector_id"]["value"]
    assert connector_id == "${azurerm_databricks_access_connector.archive.id}"


def test_function_reaches_storage_with_its_managed_identity_only(azure: TerraformModule) -> None:
    app = azure.resource(*FUNCTION)
    settings = azure.resolve(app["app_settings"])
    platform = azure.resolve("${local.platform_settings}")
    names = object_keys(settings, azure)

    assert app["identity"][0]["type"] == "SystemAssigned"
    assert app["storage_authentication_type"] == "SystemAssignedIdentity"
    assert "storage_access_key" not in app
    assert platform["AzureWebJobsStorage__credential"] == "managedidentity"
    assert platform["AzureWebJobsStorage__accountName"] == "${azurerm_storage_account.filegate.name}"
    assert "AzureWebJobsStorage" not in names
    filegate = azure.resolve("${local.filegate_settings}")
    assert filegate["FILEGATE_AZURE_STORAGE"] == "${azurerm_storage_account.filegate.primary_blob_endpoint}"
    # An account URL, so the archive too is reached with the managed identity.
    assert filegate["FILEGATE_AZURE_ARCHIVE_STORAGE"] == "${azurerm_storage_account.archive.primary_blob_endpoint}"
    assert not re.search(r"\b(primary|secondary)_(access_key|connection_string|blob_connection_string)\b", azure.text())


def test_the_host_holds_the_documented_minimum_role_on_its_own_storage_account(azure: TerraformModule) -> None:
    # learn.microsoft.com/azure/azure-functions/functions-reference, "Connecting to host storage with an
    # identity": Storage Blob Data Owner for the host alone and for the timer trigger's locks. With less
    # (Contributor), the host is outside what Microsoft supports on its AzureWebJobsStorage account.
    platform = azure.resolve("${local.platform_settings}")
    host_account = platform["AzureWebJobsStorage__accountName"].replace(".name}", ".id}")
    grants = azure.of_type("azurerm_role_assignment").values()

    assert {
        grant["role_definition_name"]
        for grant in grants
        if grant["principal_id"] == FUNCTION_PRINCIPAL and grant["scope"] == host_account
    } == {"Storage Blob Data Owner"}


def test_key_based_settings_the_provider_adds_are_deleted_after_every_change_of_the_app(
    azure: TerraformModule,
) -> None:
    cleanup = azure.resource("terraform_data", "drop_key_based_storage_settings")
    command = cleanup["provisioner"][0]["local-exec"]["command"]

    # Replaced on any planned create, update or replace of the app, not only when chosen attributes change.
    assert cleanup["lifecycle"][0]["replace_triggered_by"] == ["${azurerm_function_app_flex_consumption.filegate}"]
    assert "triggers_replace" not in cleanup
    assert azure.locals["key_based_storage_settings"] == ["AzureWebJobsStorage", "DEPLOYMENT_STORAGE_CONNECTION_STRING"]
    assert "az functionapp config appsettings delete" in command
    assert '--setting-names ${join(" ", local.key_based_storage_settings)}' in command
    # Never the CLI's default subscription: the one Terraform deploys to.
    assert "--subscription ${data.azurerm_client_config.current.subscription_id}" in command
    assert "--name ${azurerm_function_app_flex_consumption.filegate.name}" in command


def test_function_runs_python_311_on_flex_consumption(azure: TerraformModule) -> None:
    app = azure.resource(*FUNCTION)
    plan = azure.resource("azurerm_service_plan", "filegate")

    assert (app["runtime_name"], app["runtime_version"]) == ("python", "3.11")
    assert (plan["sku_name"], plan["os_type"]) == ("FC1", "Linux")
    assert app["https_only"] is True
    assert app["webdeploy_publish_basic_authentication_enabled"] is False
    assert app["storage_container_endpoint"].endswith("${azurerm_storage_container.deployment.name}")
    insights = azure.resource("azurerm_application_insights", "filegate")
    assert insights["local_authentication_disabled"] is True
    workspace = azure.resource("azurerm_log_analytics_workspace", "filegate")
    assert workspace["local_authentication_enabled"] is False
    assert app["site_config"][0]["application_insights_connection_string"] == (
        "${azurerm_application_insights.filegate.connection_string}"
    )


def test_role_assignments_are_exactly_the_allowed_roles_on_the_allowed_scopes(azure: TerraformModule) -> None:
    grants = azure.of_type("azurerm_role_assignment")

    assert set(grants) == set(ALLOWED_GRANTS)
    for name, grant in grants.items():
        assert (grant["role_definition_name"], grant["scope"]) == ALLOWED_GRANTS[name], name
    for name in (
        "function_blob_data",
        "function_archive",
        "function_archive_delegation_key",
        "function_telemetry",
        "function_secrets_user",
    ):
        assert grants[name]["principal_id"] == FUNCTION_PRINCIPAL, name
    assert azure.locals["operator_containers"] == {
        "rejected": "${azurerm_storage_container.rejected.id}",
        "deadletter": "${azurerm_storage_container.deadletter.id}",
    }
    # Recovery writes where the function writes, never to app-package or the host's containers.
    assert azure.locals["recovery_containers"] == {
        name: "${azurerm_storage_container." + name + ".id}" for name in ("landing", "archive", "rejected")
    }
    assert not re.search(
        r'data\s+"azurerm_subscription"|/subscriptions/|azurerm_resource_group\.filegate\.id', azure.text()
    )


def test_people_are_granted_only_through_their_own_variables(azure: TerraformModule) -> None:
    uploaders = azure.resource("azurerm_role_assignment", "uploaders_landing")
    operators = azure.resource("azurerm_role_assignment", "operators_read")

    assert uploaders["for_each"] == "${toset(var.uploader_principal_ids)}"
    assert uploaders["principal_id"] == "${each.value}"
    assert "var.operator_principal_ids" in operators["for_each"]
    assert "var.recovery_principal_ids" in azure.resource("azurerm_role_assignment", "recovery_write")["for_each"]
    deadletter = azure.resource("azurerm_role_assignment", "recovery_read_deadletter")
    assert deadletter["for_each"] == "${toset(var.recovery_principal_ids)}"
    delegation = azure.resource("azurerm_role_assignment", "recovery_delegation_key")
    assert "var.recovery_principal_ids" in delegation["for_each"]
    assert "keys(local.storage_accounts)" in delegation["for_each"]
    assert azure.resolve("${local.storage_accounts}") == {
        "filegate": "${azurerm_storage_account.filegate.id}",
        "archive": "${azurerm_storage_account.archive.id}",
    }
    for name in ("uploader_principal_ids", "operator_principal_ids", "recovery_principal_ids"):
        variable = azure.variables[name]
        pattern = re.compile(re.search(r'regex\("([^"]+)"', variable["validation"][0]["condition"])[1])
        assert variable["default"] == []
        assert pattern.match(GUID)
        assert not pattern.match("someone@example.com")


def test_databricks_token_lives_in_key_vault_and_never_in_state(azure: TerraformModule) -> None:
    vault = azure.resource("azurerm_key_vault", "filegate")
    secret = azure.resource("azurerm_key_vault_secret", "databricks_token")
    token = azure.variables["databricks_token"]
    token_settings = azure.locals["token_settings"]

    assert vault["count"] == secret["count"] == "${local.token_auth ? 1 : 0}"
    assert vault["rbac_authorization_enabled"] is True
    assert vault["purge_protection_enabled"] is True
    assert secret["value_wo"] == "${var.databricks_token}"
    assert "value" not in secret
    assert token["ephemeral"] is True
    assert token["sensitive"] is True
    assert 'DATABRICKS_TOKEN = "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault_secret' in token_settings
    assert azure.locals["filegate_settings"]["FILEGATE_DATABRICKS_AUTH"] == (
        '${local.token_auth ? "" : "azure-identity"}'
    )
    reader = azure.resource("azurerm_role_assignment", "function_secrets_user")
    assert reader["role_definition_name"] == "Key Vault Secrets User"
    # Token auth without a token would store an empty secret, and one with a newline a token the function refuses:
    # the variable refuses both.
    blank, spaced = token["validation"]
    assert 'var.databricks_auth != "token"' in blank["condition"]
    assert "var.databricks_token" in blank["condition"]
    assert "can(regex(" in spaced["condition"]


def test_outputs_name_what_the_next_steps_need(azure: TerraformModule) -> None:
    assert set(azure.outputs) >= {
        "function_app_name",
        "function_name",
        "function_principal_id",
        "event_subscription_id",
        "landing_container",
        "archive_container",
        "rejected_container",
        "storage_account_name",
        "archive_storage_account_name",
        "archive_external_location_url",
        "databricks_access_connector_id",
    }
    for name, output in azure.outputs.items():
        assert output.get("description"), name
    for name, variable in azure.variables.items():
        assert variable.get("description"), name


# What the Azure function's package must hold (`func azure functionapp publish` from the repository root).
FUNCTION_PACKAGE = {"function_app.py", "host.json", "requirements.txt", "filegate", ".funcignore"}
# Run in the package alone: the function's module, its contracts and pipelines, and nothing from outside it.
IMPORT_CHECK = """
import sys
sys.meta_path = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
import function_app
from filegate.contracts import load_contracts
from filegate.pipelines import load_pipelines
contracts = load_contracts()
print(sorted(contracts), sorted(load_pipelines(contracts)))
outside = sorted({m.split(".")[0] for m in sys.modules} & {"spark_jobs", "local_world", "gcp_function", "tests"})
assert not outside, outside
assert function_app.__file__.startswith(sys.argv[1]), function_app.__file__
"""


def test_the_function_package_leaves_out_all_but_what_the_function_imports(tmp_path: Path) -> None:
    ignored = {
        line.strip() for line in (REPO / ".funcignore").read_text().splitlines() if line.strip()[:1] not in ("", "#")
    }
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    top_level = {path.split("/", 1)[0] for path in tracked.splitlines()}
    # Every tracked top-level entry is either shipped or left out on purpose.
    assert top_level - ignored == FUNCTION_PACKAGE
    assert {".venv", "node_modules", ".jars"} <= ignored
    # What no listing of tracked files shows: bytecode in filegate/, and secrets or settings left in the folder.
    assert {"__pycache__", "*.pyc", ".env*", ".vscode"} <= ignored

    for name in FUNCTION_PACKAGE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tmp_path / name)
    check = [sys.executable, "-c", IMPORT_CHECK, str(tmp_path)]
    found = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert found.returncode == 0, found.stderr[-3000:]
    assert "order_tracking" in found.stdout, found.stdout
    assert "ecommerce" in found.stdout, found.stdout
