output "resource_group_name" {
  description = "Resource group holding every Filegate resource."
  value       = azurerm_resource_group.filegate.name
}

output "storage_account_name" {
  description = "Storage account for uploads (landing, rejected, deadletter); upload with `az storage blob upload --auth-mode login`."
  value       = azurerm_storage_account.filegate.name
}

output "storage_blob_endpoint" {
  description = "Blob endpoint the function uses (FILEGATE_AZURE_STORAGE)."
  value       = azurerm_storage_account.filegate.primary_blob_endpoint
}

output "landing_container" {
  description = "Container users upload into."
  value       = azurerm_storage_container.landing.name
}

output "archive_container" {
  description = "Container holding files that passed validation, in the archive account."
  value       = azurerm_storage_container.archive.name
}

output "archive_storage_account_name" {
  description = "Storage account holding the archive, with a hierarchical namespace for Unity Catalog (FILEGATE_AZURE_ARCHIVE_STORAGE is its blob endpoint)."
  value       = azurerm_storage_account.archive.name
}

output "archive_external_location_url" {
  description = "URL of the read-only Unity Catalog external location the jobs read the archive through."
  value       = "abfss://${azurerm_storage_container.archive.name}@${azurerm_storage_account.archive.name}.dfs.core.windows.net/"
}

output "databricks_access_connector_id" {
  description = "Resource id of the access connector to create the Unity Catalog storage credential from; it may read the archive account only."
  value       = azurerm_databricks_access_connector.archive.id
}

output "rejected_container" {
  description = "Container holding rejected files and their reports."
  value       = azurerm_storage_container.rejected.name
}

output "deadletter_container" {
  description = "Container where Event Grid puts events it could not deliver."
  value       = azurerm_storage_container.deadletter.name
}

output "function_app_name" {
  description = "Function App to deploy function_app.py to (`func azure functionapp publish <name>`)."
  value       = azurerm_function_app_flex_consumption.filegate.name
}

output "function_name" {
  description = "Function inside the app that Event Grid delivers BlobCreated events to."
  value       = local.event_grid_function_name
}

# Azure Databricks names a service principal by its application (client) id, which azurerm does not
# expose for a system-assigned identity: `az ad sp show --id <this> --query appId -o tsv` gives it.
output "function_principal_id" {
  description = "Object (principal) id of the function's managed identity, for Azure role assignments. Databricks wants the application id instead: `az ad sp show --id <this id> --query appId -o tsv`."
  value       = azurerm_function_app_flex_consumption.filegate.identity[0].principal_id
}

output "event_subscription_id" {
  description = "Event Grid subscription delivering BlobCreated to on_blob_created; null until enable_event_subscription is true."
  value       = one(azurerm_eventgrid_system_topic_event_subscription.blob_created[*].id)
}

output "key_vault_name" {
  description = "Key Vault holding the Databricks token; null with azure-identity auth."
  value       = one(azurerm_key_vault.filegate[*].name)
}

output "application_insights_name" {
  description = "Application Insights resource receiving the function's logs and traces."
  value       = azurerm_application_insights.filegate.name
}
