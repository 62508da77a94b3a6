locals {
  bucket_prefix = "${var.project_id}-${var.name_prefix}"
}

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
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

# The four buckets differ only in these; everything else (private, uniform access, versioned, old
# versions deleted after noncurrent_version_days) is one block below, so no bucket can drift from it.
#   force_destroy: only the source bucket, which holds nothing but build input, may go with its objects.
#   nearline_after_days / delete_after_days: the age rules of each bucket's lifecycle (null: none).
locals {
  buckets = {
    landing  = { force_destroy = false, nearline_after_days = null, delete_after_days = null }
    archive  = { force_destroy = false, nearline_after_days = var.archive_nearline_after_days, delete_after_days = null }
    rejected = { force_destroy = false, nearline_after_days = null, delete_after_days = var.rejected_retention_days }
    # Holds the function's source zip; Cloud Build reads it from here.
    source = { force_destroy = true, nearline_after_days = null, delete_after_days = null }
  }
}

resource "google_storage_bucket" "buckets" {
  #checkov:skip=CKV_GCP_62:Every object read and write is recorded by the Data Access audit logs that google_project_iam_audit_config.storage turns on (storage_data_access_logs, default true); usage-log buckets would duplicate them.
  for_each                    = local.buckets
  name                        = "${local.bucket_prefix}-${each.key}"
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = each.value.force_destroy
  labels                      = var.labels

  depends_on = [google_project_service.apis]

  versioning {
    enabled = true
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.nearline_after_days == null ? [] : [each.value.nearline_after_days]
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type          = "SetStorageClass"
        storage_class = "NEARLINE"
      }
    }
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.delete_after_days == null ? [] : [each.value.delete_after_days]
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
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

# The buckets were one resource each before; these keep existing state (and the buckets) in place.
moved {
  from = google_storage_bucket.landing
  to   = google_storage_bucket.buckets["landing"]
}

moved {
  from = google_storage_bucket.archive
  to   = google_storage_bucket.buckets["archive"]
}

moved {
  from = google_storage_bucket.rejected
  to   = google_storage_bucket.buckets["rejected"]
}

moved {
  from = google_storage_bucket.source
  to   = google_storage_bucket.buckets["source"]
}

# The jobs read archived files (each run's source_path, a batch's seal) through a read-only Unity
# Catalog external location on the archive bucket, as the service account of its storage credential:
# list the bucket (Legacy Bucket Reader: storage.buckets.get, storage.objects.list) and read objects
# (Object Viewer). Nothing on landing or rejected, no write anywhere: the tables live in managed storage.
resource "google_storage_bucket_iam_member" "databricks_lists_archive" {
  for_each = toset(var.databricks_storage_service_accounts)
  bucket   = google_storage_bucket.buckets["archive"].name
  role     = "roles/storage.legacyBucketReader"
  member   = "serviceAccount:${each.value}"
}

resource "google_storage_bucket_iam_member" "databricks_reads_archive" {
  for_each = toset(var.databricks_storage_service_accounts)
  bucket   = google_storage_bucket.buckets["archive"].name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${each.value}"
}
