locals {
  # The names below are the settings contract in filegate/settings.py (tests/infra check it).
  filegate_settings = {
    FILEGATE_LANDING        = google_storage_bucket.landing.name
    FILEGATE_ARCHIVE        = google_storage_bucket.archive.name
    FILEGATE_REJECTED       = google_storage_bucket.rejected.name
    FILEGATE_JOB_NAME       = var.databricks_job_name
    FILEGATE_JOB_ID         = var.databricks_job_id
    FILEGATE_SAMPLE_BYTES   = tostring(var.sample_bytes)
    FILEGATE_MAX_FILE_BYTES = tostring(var.max_file_bytes)
    DATABRICKS_HOST         = var.databricks_host
  }
}

resource "google_service_account" "function" {
  account_id   = "${var.name_prefix}-function"
  display_name = "Filegate function: reads landing, writes archive and rejected, triggers Databricks"
}

# Bucket-level grants only: read and delete in landing, create and read in archive and rejected.
resource "google_storage_bucket_iam_member" "function_objects" {
  for_each = {
    landing  = google_storage_bucket.landing.name
    archive  = google_storage_bucket.archive.name
    rejected = google_storage_bucket.rejected.name
  }
  bucket = each.value
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.function.email}"
}

resource "google_secret_manager_secret" "databricks_token" {
  #checkov:skip=CKV_GCP_128:Google-managed encryption keys protect the secret; CMEK would add a KMS key lifecycle this module does not impose.
  secret_id = "${var.name_prefix}-databricks-token"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "databricks_token" {
  secret                 = google_secret_manager_secret.databricks_token.id
  secret_data_wo         = var.databricks_token
  secret_data_wo_version = var.databricks_token_version
}

resource "google_secret_manager_secret_iam_member" "function_reads_token" {
  secret_id = google_secret_manager_secret.databricks_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function.email}"
}

# Eventarc's documented prerequisites for Cloud Storage triggers: the GCS service agent publishes
# to Pub/Sub, and the trigger's identity may receive events. Both roles exist only at project level.
data "google_storage_project_service_account" "gcs" {
  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "gcs_publishes_events" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_project_iam_member" "function_receives_events" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.function.email}"
}

data "archive_file" "function_source" {
  type        = "zip"
  source_dir  = abspath("${path.module}/${var.function_source_dir}")
  output_path = "${path.module}/.terraform/function-source.zip"
  excludes    = ["**/__pycache__/**"]
}

# The object name carries the zip's hash, so a code change replaces the object and redeploys.
resource "google_storage_bucket_object" "function_source" {
  name   = "gcp_function-${data.archive_file.function_source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.function_source.output_path
}

resource "google_cloudfunctions2_function" "filegate" {
  name        = "${var.name_prefix}-on-object-finalized"
  location    = var.region
  description = "Validates each upload to the landing bucket, moves it, and triggers the Databricks load."
  labels      = var.labels

  build_config {
    runtime     = "python311"
    entry_point = "on_object_finalized"

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    max_instance_count             = var.function_max_instances
    available_memory               = var.function_memory
    timeout_seconds                = var.function_timeout_seconds
    service_account_email          = google_service_account.function.email
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    environment_variables          = local.filegate_settings

    secret_environment_variables {
      key        = "DATABRICKS_TOKEN"
      project_id = var.project_id
      secret     = google_secret_manager_secret.databricks_token.secret_id
      version    = "latest"
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.function.email

    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.landing.name
    }
  }

  depends_on = [
    google_project_iam_member.gcs_publishes_events,
    google_project_iam_member.function_receives_events,
    google_secret_manager_secret_iam_member.function_reads_token,
    google_secret_manager_secret_version.databricks_token,
  ]
}

# Eventarc pushes events as the function's service account; it may invoke this function only.
resource "google_cloud_run_v2_service_iam_member" "function_invokes_itself" {
  name     = google_cloudfunctions2_function.filegate.service_config[0].service
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.function.email}"
}
