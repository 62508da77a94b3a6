data "azurerm_client_config" "current" {}

# Only with token auth: with azure-identity there is no credential to keep.
resource "azurerm_key_vault" "filegate" {
  #checkov:skip=CKV_AZURE_109:Flex Consumption without VNet integration resolves Key Vault references over the public endpoint; RBAC limits who can read.
  #checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: the app reaches the vault publicly, authorized by its managed identity.
  #checkov:skip=CKV2_AZURE_32:A private endpoint needs a VNet-integrated function; add both together if your policy demands it.
  count                      = local.token_auth ? 1 : 0
  name                       = "kv-${var.name_prefix}-${random_string.storage_suffix.result}"
  location                   = azurerm_resource_group.filegate.location
  resource_group_name        = azurerm_resource_group.filegate.name
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  rbac_authorization_enabled = true
  purge_protection_enabled   = true
  soft_delete_retention_days = 90
  tags                       = var.tags

  network_acls {
    bypass         = "AzureServices"
    default_action = "Allow"
  }
}

# Whoever runs Terraform writes the secret; RBAC vaults grant nothing by default.
resource "azurerm_role_assignment" "deployer_secrets_officer" {
  count                = local.token_auth ? 1 : 0
  scope                = azurerm_key_vault.filegate[0].id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_role_assignment" "function_secrets_user" {
  count                = local.token_auth ? 1 : 0
  scope                = azurerm_key_vault.filegate[0].id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_function_app_flex_consumption.filegate.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_key_vault_secret" "databricks_token" {
  #checkov:skip=CKV_AZURE_41:The personal access token carries its own expiry in Databricks; rotate it by raising databricks_token_version.
  count            = local.token_auth ? 1 : 0
  name             = "databricks-token"
  key_vault_id     = azurerm_key_vault.filegate[0].id
  content_type     = "text/plain"
  value_wo         = var.databricks_token
  value_wo_version = var.databricks_token_version

  depends_on = [azurerm_role_assignment.deployer_secrets_officer]
}
