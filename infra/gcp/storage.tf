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

resource "google_storage_bucket" "landing" {
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Data Access); a separate usage-log bucket would duplicate them.
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
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Data Access); a separate usage-log bucket would duplicate them.
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
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Data Access); a separate usage-log bucket would duplicate them.
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
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Data Access); a separate usage-log bucket would duplicate them.
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
