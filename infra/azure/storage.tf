resource "azurerm_resource_group" "filegate" {
  name     = "rg-${var.name_prefix}"
  location = var.location
  tags     = var.tags
}

resource "random_string" "storage_suffix" {
  length  = 6
  upper   = false
  special = false
}

resource "azurerm_log_analytics_workspace" "filegate" {
  name                = "log-${var.name_prefix}"
  location            = azurerm_resource_group.filegate.location
  resource_group_name = azurerm_resource_group.filegate.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  # Queries and ingestion need Entra ID; diagnostic settings and Application Insights are unaffected.
  local_authentication_enabled = false
  tags                         = var.tags
}

resource "azurerm_storage_account" "filegate" {
  #checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches the account over its public endpoint; shared keys are off, so that endpoint only serves Entra-authorized callers.
  #checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: the function and Event Grid need the public endpoint; every request must carry an Entra token.
  #checkov:skip=CKV2_AZURE_33:A private endpoint needs a VNet-integrated function; add one with the VNet if your policy demands it.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys encrypt at rest; customer-managed keys add a Key Vault key lifecycle this module does not impose.
  #checkov:skip=CKV_AZURE_206:ZRS by default keeps data in one region (residency) and survives a zone outage; set storage_replication_type = "GZRS" for geo-redundancy.
  #checkov:skip=CKV_AZURE_33:Queue logging is moot: no queue is used, and the queue service's data plane needs shared keys or extra roles for the provider to configure it.
  name                            = "st${var.name_prefix}${random_string.storage_suffix.result}"
  resource_group_name             = azurerm_resource_group.filegate.name
  location                        = azurerm_resource_group.filegate.location
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = var.storage_replication_type
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true
  local_user_enabled              = false
  # Hierarchical namespace would turn BlobCreated into CreateFile + FlushWithClose and move events to dfs URLs.
  is_hns_enabled = false
  tags           = var.tags

  blob_properties {
    versioning_enabled = true

    delete_retention_policy {
      days = var.blob_retention_days
    }

    container_delete_retention_policy {
      days = var.blob_retention_days
    }
  }

  sas_policy {
    expiration_period = "01.00:00:00"
    expiration_action = "Log"
  }
}

# The archive lives in an account of its own because Unity Catalog reads cloud storage only through
# an external location, and an external location needs an account with a hierarchical namespace, which
# the account above must not have. Nothing here raises events: the Event Grid topic watches the other
# account. The function copies each valid file in server-side, signing the source with a user
# delegation SAS from the landing account.
resource "azurerm_storage_account" "archive" {
  #checkov:skip=CKV_AZURE_35:The function (no VNet integration) writes and Databricks compute reads over the public endpoint; shared keys are off, so it only serves Entra-authorized callers.
  #checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: the function and Databricks need the public endpoint; every request must carry an Entra token.
  #checkov:skip=CKV2_AZURE_33:A private endpoint needs a VNet-integrated function and Databricks private connectivity; add them together if your policy demands it.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys encrypt at rest; customer-managed keys add a Key Vault key lifecycle this module does not impose.
  #checkov:skip=CKV_AZURE_206:ZRS by default keeps data in one region (residency) and survives a zone outage; set storage_replication_type = "GZRS" for geo-redundancy.
  #checkov:skip=CKV_AZURE_33:Queue logging is moot: no queue is used, and the queue service's data plane needs shared keys or extra roles for the provider to configure it.
  # 24 characters at most: "st" + name_prefix (up to 11) + "arc" + the 6-character suffix.
  name                            = "st${var.name_prefix}arc${random_string.storage_suffix.result}"
  resource_group_name             = azurerm_resource_group.filegate.name
  location                        = azurerm_resource_group.filegate.location
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = var.storage_replication_type
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true
  local_user_enabled              = false
  # ADLS Gen2: what a Unity Catalog external location requires (abfss:// on the dfs endpoint).
  is_hns_enabled = true
  tags           = var.tags

  # Azure offers no blob versioning on accounts with a hierarchical namespace, so soft delete is the
  # safety net here. No file in the archive is overwritten: every copy and write into it is create-only.
  blob_properties {
    delete_retention_policy {
      days = var.blob_retention_days
    }

    container_delete_retention_policy {
      days = var.blob_retention_days
    }
  }

  sas_policy {
    expiration_period = "01.00:00:00"
    expiration_action = "Log"
  }
}

resource "azurerm_storage_management_policy" "filegate" {
  storage_account_id = azurerm_storage_account.filegate.id

  rule {
    name    = "expire-old-versions"
    enabled = true

    filters {
      blob_types = ["blockBlob"]
    }

    actions {
      version {
        delete_after_days_since_creation = var.blob_retention_days
      }
    }
  }
}

resource "azurerm_monitor_diagnostic_setting" "blob" {
  name                       = "blob-to-log-analytics"
  target_resource_id         = "${azurerm_storage_account.filegate.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.filegate.id

  enabled_log {
    category = "StorageRead"
  }

  enabled_log {
    category = "StorageWrite"
  }

  enabled_log {
    category = "StorageDelete"
  }

  enabled_metric {
    category = "Transaction"
  }
}

# The same logs for the archive account: Databricks reads (over the dfs endpoint) land in StorageRead.
resource "azurerm_monitor_diagnostic_setting" "archive_blob" {
  name                       = "blob-to-log-analytics"
  target_resource_id         = "${azurerm_storage_account.archive.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.filegate.id

  enabled_log {
    category = "StorageRead"
  }

  enabled_log {
    category = "StorageWrite"
  }

  enabled_log {
    category = "StorageDelete"
  }

  enabled_metric {
    category = "Transaction"
  }
}

resource "azurerm_storage_container" "landing" {
  #checkov:skip=CKV2_AZURE_21:Blob reads are logged by the diagnostic setting `blob` (StorageRead to Log Analytics); the check wants Storage Insights, which needs an account key, and keys are off.
  name                  = var.landing_container
  storage_account_id    = azurerm_storage_account.filegate.id
  container_access_type = "private"
}

# In the archive account: a new container, not a moved one (see infra/README.md to carry over an
# existing deployment's archive).
resource "azurerm_storage_container" "archive" {
  #checkov:skip=CKV2_AZURE_21:Blob reads are logged by the diagnostic setting `archive_blob` (StorageRead to Log Analytics); the check wants Storage Insights, which needs an account key, and keys are off.
  name                  = var.archive_container
  storage_account_id    = azurerm_storage_account.archive.id
  container_access_type = "private"
}

resource "azurerm_storage_container" "rejected" {
  #checkov:skip=CKV2_AZURE_21:Blob reads are logged by the diagnostic setting `blob` (StorageRead to Log Analytics); the check wants Storage Insights, which needs an account key, and keys are off.
  name                  = var.rejected_container
  storage_account_id    = azurerm_storage_account.filegate.id
  container_access_type = "private"
}

# Events Event Grid gave up on; inspect them, fix the cause, re-upload the blob.
resource "azurerm_storage_container" "deadletter" {
  #checkov:skip=CKV2_AZURE_21:Blob reads are logged by the diagnostic setting `blob` (StorageRead to Log Analytics); the check wants Storage Insights, which needs an account key, and keys are off.
  name                  = "deadletter"
  storage_account_id    = azurerm_storage_account.filegate.id
  container_access_type = "private"
}

# Flex Consumption reads the function package from here.
resource "azurerm_storage_container" "deployment" {
  #checkov:skip=CKV2_AZURE_21:Blob reads are logged by the diagnostic setting `blob` (StorageRead to Log Analytics); the check wants Storage Insights, which needs an account key, and keys are off.
  name                  = "app-package"
  storage_account_id    = azurerm_storage_account.filegate.id
  container_access_type = "private"
}

# People and systems that upload write into the landing container and nowhere else; with shared keys
# off, this grant is the only way in (`az storage blob upload --auth-mode login`).
resource "azurerm_role_assignment" "uploaders_landing" {
  for_each             = toset(var.uploader_principal_ids)
  scope                = azurerm_storage_container.landing.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = each.value
}

# Operators read what went wrong: rejected files with their reports, and events Event Grid gave up on.
locals {
  operator_containers = {
    rejected   = azurerm_storage_container.rejected.id
    deadletter = azurerm_storage_container.deadletter.id
  }
}

resource "azurerm_role_assignment" "operators_read" {
  for_each = {
    for pair in setproduct(keys(local.operator_containers), var.operator_principal_ids) :
    "${pair[0]}/${pair[1]}" => { container = pair[0], principal_id = pair[1] }
  }
  scope                = local.operator_containers[each.value.container]
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = each.value.principal_id
}

# Recovery (`filegate handle` on a dead-lettered event, `sweep`, `reconcile --redrive`, `rejected
# --reprocess`) moves files as the function does, so it needs what the function needs on the three
# locations (the archive's in the archive account), and reads the dead letters; nothing on app-package
# or the host's own containers.
locals {
  recovery_containers = {
    landing  = azurerm_storage_container.landing.id
    archive  = azurerm_storage_container.archive.id
    rejected = azurerm_storage_container.rejected.id
  }
}

resource "azurerm_role_assignment" "recovery_write" {
  for_each = {
    for pair in setproduct(keys(local.recovery_containers), var.recovery_principal_ids) :
    "${pair[0]}/${pair[1]}" => { container = pair[0], principal_id = pair[1] }
  }
  scope                = local.recovery_containers[each.value.container]
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = each.value.principal_id
}

# A copy between the accounts signs its source's URL with a user delegation SAS, and Azure grants the
# user delegation key only at account scope or above, never on a container: the landing account's for
# each archived file, the archive account's when the sweep rejects an overdue batch's trigger from the
# archive. Storage Blob Delegator holds that one action and no data access: a user delegation SAS can
# do no more than its signer's own roles allow, and those stay on the three containers above.
locals {
  storage_accounts = {
    filegate = azurerm_storage_account.filegate.id
    archive  = azurerm_storage_account.archive.id
  }
}

resource "azurerm_role_assignment" "recovery_delegation_key" {
  for_each = {
    for pair in setproduct(keys(local.storage_accounts), var.recovery_principal_ids) :
    "${pair[0]}/${pair[1]}" => { account = pair[0], principal_id = pair[1] }
  }
  scope                = local.storage_accounts[each.value.account]
  role_definition_name = "Storage Blob Delegator"
  principal_id         = each.value.principal_id
}

resource "azurerm_role_assignment" "recovery_read_deadletter" {
  for_each             = toset(var.recovery_principal_ids)
  scope                = azurerm_storage_container.deadletter.id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = each.value
}
