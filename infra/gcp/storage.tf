locals {
  bucket_prefix = "${var.project_id}-${var.name_prefix}"
}

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
  service            = each.value
  disable_on_destroy = false
}

# Data Access audit logs are off by default for Cloud Storage. With them on, every read, write and
# delete of an upload, archived file or report is attributed to a principal in Cloud Logging.
# Authoritative for storage.googleapis.com: it replaces any audit config set for that service
# elsewhere (exemptions included), and leaves other services alone.
resource "google_project_iam_audit_config" "storage" {
  count   = var.storage_data_access_logs ? 1 : 0
  project = var.project_id
  service = "storage.googleapis.com"

  audit_log_config {
    log_type = "DATA_READ"
  }

  audit_log_config {
    log_type = "DATA_WRITE"
  }
}

resource "google_storage_bucket" "landing" {
  #checkov:skip=CKV_GCP_62:Every object read and write is recorded by the Data Access audit logs that google_project_iam_audit_config.storage turns on (storage_data_access_logs, default true); usage-log buckets would duplicate them.
  name                        = "${local.bucket_prefix}-landing"
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = var.labels

  depends_on = [google_project_service.apis]

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket" "archive" {
  #checkov:skip=CKV_GCP_62:Every object read and write is recorded by the Data Access audit logs that google_project_iam_audit_config.storage turns on (storage_data_access_logs, default true); usage-log buckets would duplicate them.
  name                        = "${local.bucket_prefix}-archive"
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = var.labels

  depends_on = [google_project_service.apis]

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = var.archive_nearline_after_days
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket" "rejected" {
  #checkov:skip=CKV_GCP_62:Every object read and write is recorded by the Data Access audit logs that google_project_iam_audit_config.storage turns on (storage_data_access_logs, default true); usage-log buckets would duplicate them.
  name                        = "${local.bucket_prefix}-rejected"
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = var.labels

  depends_on = [google_project_service.apis]

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = var.rejected_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
    }
    action {
      type = "Delete"
    }
  }
}

# Holds the function's source zip; Cloud Build reads it from here.
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Every object read and write is recorded by the Data Access audit logs that google_project_iam_audit_config.storage turns on (storage_data_access_logs, default true); usage-log buckets would duplicate them.
  name                        = "${local.bucket_prefix}-source"
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = var.labels

  depends_on = [google_project_service.apis]

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
    }
    action {
      type = "Delete"
    }
  }
}
