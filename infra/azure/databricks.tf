# The identity Unity Catalog reads the archive with: create a storage credential from this connector
# and a read-only external location on output archive_external_location_url (infra/README.md). One
# connector of its own, as the Azure Databricks guidance keeps one per storage account or data domain;
# it costs nothing, and a workspace's default connector keeps whatever else it can reach.
resource "azurerm_databricks_access_connector" "archive" {
  name                = "dbac-${var.name_prefix}-archive"
  resource_group_name = azurerm_resource_group.filegate.name
  location            = azurerm_resource_group.filegate.location
  tags                = var.tags

  identity {
    type = "SystemAssigned"
  }
}

# Read-only, on the archive account, which holds the archive container and nothing else. The Azure
# Databricks docs ("Use Azure managed identities in Unity Catalog to access storage"; "Create a storage
# credential for connecting to Azure Data Lake Storage Gen2") grant the connector's identity a Storage
# Blob Data role on the ADLS Gen2 account; their example, Contributor, also lets it write and delete,
# which the jobs never do (they read the archive and write to their catalog's tables). Reader gives read
# and list, and Unity Catalog hands compute short-lived user delegation SAS tokens, whose key Azure
# grants only at account scope: on the container alone, Reader would need Storage Blob Delegator on the
# account as well. Mark the credential or the external location read-only in Unity Catalog too.
resource "azurerm_role_assignment" "databricks_archive_read" {
  scope                = azurerm_storage_account.archive.id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = azurerm_databricks_access_connector.archive.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}
