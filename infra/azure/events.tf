locals {
  # Only writes that leave a complete blob; CreateFile and the like are partial (see platform facts).
  committed_write_apis = ["PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"]

  # The @app.event_grid_trigger function in function_app.py.
  event_grid_function_name = "on_blob_created"
}

resource "azurerm_eventgrid_system_topic" "storage" {
  name                = "evgt-${var.name_prefix}-storage"
  location            = azurerm_resource_group.filegate.location
  resource_group_name = azurerm_resource_group.filegate.name
  source_resource_id  = azurerm_storage_account.filegate.id
  topic_type          = "Microsoft.Storage.StorageAccounts"
  tags                = var.tags

  # Dead-lettering writes with this identity, because the account accepts no shared keys.
  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_role_assignment" "topic_deadletter" {
  scope                = azurerm_storage_container.deadletter.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_eventgrid_system_topic.storage.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_eventgrid_system_topic_event_subscription" "blob_created" {
  count                 = var.enable_event_subscription ? 1 : 0
  name                  = "evgs-${var.name_prefix}-blob-created"
  system_topic          = azurerm_eventgrid_system_topic.storage.name
  resource_group_name   = azurerm_resource_group.filegate.name
  event_delivery_schema = "EventGridSchema"
  included_event_types  = ["Microsoft.Storage.BlobCreated"]

  azure_function_endpoint {
    function_id          = "${azurerm_function_app_flex_consumption.filegate.id}/functions/${local.event_grid_function_name}"
    max_events_per_batch = 1
  }

  # Only the landing location: archive and rejected writes must not come back as new uploads.
  subject_filter {
    subject_begins_with = "/blobServices/default/containers/${var.landing_container}/blobs/${var.landing_prefix}"
    # Blob names are case-sensitive, and so is the core's prefix check: `Incoming/` is not `incoming/`.
    case_sensitive = true
  }

  advanced_filter {
    string_in {
      key    = "data.api"
      values = local.committed_write_apis
    }
  }

  retry_policy {
    max_delivery_attempts = var.event_max_delivery_attempts
    event_time_to_live    = var.event_time_to_live_minutes
  }

  dead_letter_identity {
    type = "SystemAssigned"
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = azurerm_storage_account.filegate.id
    storage_blob_container_name = azurerm_storage_container.deadletter.name
  }

  depends_on = [azurerm_role_assignment.topic_deadletter]
}
