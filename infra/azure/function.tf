locals {
  landing_location = trimsuffix("${var.landing_container}/${var.landing_prefix}", "/")
  token_auth       = var.databricks_auth == "token"

  # The names below are the settings contract in filegate/settings.py (tests/infra check it). The archive
  # has an account of its own, with the hierarchical namespace Unity Catalog needs (storage.tf).
  filegate_settings = {
    FILEGATE_LANDING                  = local.landing_location
    FILEGATE_ARCHIVE                  = var.archive_container
    FILEGATE_REJECTED                 = var.rejected_container
    FILEGATE_AZURE_STORAGE            = azurerm_storage_account.filegate.primary_blob_endpoint
    FILEGATE_AZURE_ARCHIVE_STORAGE    = azurerm_storage_account.archive.primary_blob_endpoint
    FILEGATE_JOB_NAME                 = var.databricks_job_name
    FILEGATE_JOB_ID                   = var.databricks_job_id
    FILEGATE_BATCH_JOB_NAME           = var.databricks_batch_job_name
    FILEGATE_BATCH_JOB_ID             = var.databricks_batch_job_id
    FILEGATE_DATABRICKS_AUTH          = local.token_auth ? "" : "azure-identity"
    FILEGATE_SAMPLE_BYTES             = tostring(var.sample_bytes)
    FILEGATE_MAX_FILE_BYTES           = tostring(var.max_file_bytes)
    FILEGATE_SWEEP_SCHEDULE           = var.sweep_schedule
    FILEGATE_SWEEP_OLDER_THAN_MINUTES = tostring(var.sweep_older_than_minutes)
    DATABRICKS_HOST                   = var.databricks_host
  }

  # A Key Vault reference: the app resolves it with its identity; the token never appears in app settings.
  token_settings = local.token_auth ? {
    DATABRICKS_TOKEN = "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault_secret.databricks_token[0].versionless_id})"
  } : {}

  # Platform settings: identity-based host storage (no connection string) and Entra-only telemetry.
  platform_settings = {
    AzureWebJobsStorage__accountName          = azurerm_storage_account.filegate.name
    AzureWebJobsStorage__credential           = "managedidentity"
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = "Authorization=AAD"
  }

  # Settings the provider adds on its own and terraform_data.drop_key_based_storage_settings deletes.
  key_based_storage_settings = ["AzureWebJobsStorage", "DEPLOYMENT_STORAGE_CONNECTION_STRING"]
}

resource "azurerm_application_insights" "filegate" {
  name                          = "appi-${var.name_prefix}"
  location                      = azurerm_resource_group.filegate.location
  resource_group_name           = azurerm_resource_group.filegate.name
  workspace_id                  = azurerm_log_analytics_workspace.filegate.id
  application_type              = "other"
  local_authentication_disabled = true
  tags                          = var.tags
}

resource "azurerm_service_plan" "filegate" {
  #checkov:skip=CKV_AZURE_225:On Flex Consumption zone redundancy keeps two always-ready instances billed at all times; Event Grid's day of retries and the sweep cover a zone outage.
  #checkov:skip=CKV_AZURE_212:Flex Consumption has no fixed instance count; the platform adds instances per event load.
  name                = "asp-${var.name_prefix}"
  location            = azurerm_resource_group.filegate.location
  resource_group_name = azurerm_resource_group.filegate.name
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = var.tags
}

resource "azurerm_function_app_flex_consumption" "filegate" {
  #checkov:skip=CKV_AZURE_221:Event Grid delivers to the function over its public endpoint; the Event Grid trigger endpoint requires the system key.
  name                                           = "func-${var.name_prefix}-${random_string.storage_suffix.result}"
  location                                       = azurerm_resource_group.filegate.location
  resource_group_name                            = azurerm_resource_group.filegate.name
  service_plan_id                                = azurerm_service_plan.filegate.id
  runtime_name                                   = "python"
  runtime_version                                = "3.11"
  maximum_instance_count                         = var.function_maximum_instance_count
  instance_memory_in_mb                          = var.function_instance_memory_mb
  storage_container_type                         = "blobContainer"
  storage_container_endpoint                     = "${azurerm_storage_account.filegate.primary_blob_endpoint}${azurerm_storage_container.deployment.name}"
  storage_authentication_type                    = "SystemAssignedIdentity"
  https_only                                     = true
  webdeploy_publish_basic_authentication_enabled = false
  app_settings                                   = merge(local.filegate_settings, local.token_settings, local.platform_settings)
  tags                                           = var.tags

  identity {
    type = "SystemAssigned"
  }

  site_config {
    application_insights_connection_string = azurerm_application_insights.filegate.connection_string
    minimum_tls_version                    = "1.2"
    http2_enabled                          = true
  }
}

# azurerm adds key-based storage settings to Flex Consumption apps even when storage uses the managed
# identity: `AzureWebJobsStorage` (a connection string with an empty key) on create and on every update,
# and `DEPLOYMENT_STORAGE_CONNECTION_STRING` on every update that leaves storage_authentication_type as
# is. The host prefers the former over the AzureWebJobsStorage__* settings and fails to start. The
# provider hides both from the plan (it strips them when reading), so Terraform cannot remove them
# itself (hashicorp/terraform-provider-azurerm#29693, #29149, #33211). This resource is replaced, and
# deletes them again, whenever the app is created, updated or replaced, whatever attribute changed.
resource "terraform_data" "drop_key_based_storage_settings" {
  lifecycle {
    replace_triggered_by = [azurerm_function_app_flex_consumption.filegate]
  }

  # Idempotent: deleting a setting that is not there is not an error.
  provisioner "local-exec" {
    command = join(" ", [
      "az functionapp config appsettings delete",
      "--subscription ${data.azurerm_client_config.current.subscription_id}",
      "--resource-group ${azurerm_resource_group.filegate.name}",
      "--name ${azurerm_function_app_flex_consumption.filegate.name}",
      "--setting-names ${join(" ", local.key_based_storage_settings)}",
      "--output none",
    ])
  }
}

# Blob data on this account: the function reads landing and writes rejected; the host keeps its leases
# and keys in containers it creates itself; and the copies into the archive account carry a user
# delegation SAS for the landing blob, whose key Azure grants only at account scope. So the account is
# the narrowest scope. The role is Owner, not Contributor, because this account is the host's storage
# (AzureWebJobsStorage__accountName): Microsoft's "Connecting to host storage with an identity"
# (learn.microsoft.com/azure/azure-functions/functions-reference) names Storage Blob Data Owner as the
# minimum for the host alone and for the timer trigger's locks (the sweep). Its optional Storage Table
# Data Contributor, for diagnostic events, and its queue roles, for blob triggers and Durable Functions,
# are left out: this app uses neither, and without the table role the host only logs that it cannot
# write those events.
resource "azurerm_role_assignment" "function_blob_data" {
  scope                = azurerm_storage_account.filegate.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_function_app_flex_consumption.filegate.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

# In the archive account, only the archive container: the function creates copies and batch seals
# there, reads and lists them, records each file's run in its metadata, and deletes an unfinished copy
# of its own before copying again.
resource "azurerm_role_assignment" "function_archive" {
  scope                = azurerm_storage_container.archive.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_function_app_flex_consumption.filegate.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

# The archive account's user delegation key, which signs the copy when the sweep rejects an overdue
# batch's trigger from the archive: Azure grants it only at account scope, and this role holds that one
# action and no data access (the SAS can do no more than the role on the archive container above).
resource "azurerm_role_assignment" "function_archive_delegation_key" {
  scope                = azurerm_storage_account.archive.id
  role_definition_name = "Storage Blob Delegator"
  principal_id         = azurerm_function_app_flex_consumption.filegate.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "function_telemetry" {
  scope                = azurerm_application_insights.filegate.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = azurerm_function_app_flex_consumption.filegate.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}
