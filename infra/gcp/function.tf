locals {
  # The names below are the settings contract in filegate/settings.py (tests/infra check it).
  filegate_settings = {
    FILEGATE_LANDING        = google_storage_bucket.buckets["landing"].name
    FILEGATE_ARCHIVE        = google_storage_bucket.buckets["archive"].name
    FILEGATE_REJECTED       = google_storage_bucket.buckets["rejected"].name
    FILEGATE_JOB_NAME       = var.databricks_job_name
    FILEGATE_JOB_ID         = var.databricks_job_id
    FILEGATE_BATCH_JOB_NAME = var.databricks_batch_job_name
    FILEGATE_BATCH_JOB_ID   = var.databricks_batch_job_id
    FILEGATE_SAMPLE_BYTES   = tostring(var.sample_bytes)
    FILEGATE_MAX_FILE_BYTES = tostring(var.max_file_bytes)
    DATABRICKS_HOST         = var.databricks_host
    # Read by the sweep function (sweep.tf); both functions get the same settings.
    FILEGATE_SWEEP_OLDER_THAN_MINUTES = tostring(var.sweep_older_than_minutes)
  }
}

resource "google_service_account" "function" {
  account_id   = "${var.name_prefix}-function"
  display_name = "Filegate function: reads landing, writes archive and rejected, triggers Databricks"

  depends_on = [google_project_service.apis]
}

# Bucket-level grants only, matching the calls in filegate/gcs_storage.py (tests/infra/test_gcp.py keeps
# a table of them per bucket). Landing: read, list (the bucket check) and delete the upload after its
# copy exists, never write (a write there would be a new upload). Archive and rejected: create-only
# copies and reports (ifGenerationMatch=0), reads and listings of what exists. No role may overwrite or
# delete there: objectCreator + objectViewer, not objectUser. The archive alone also gets metadata
# updates, for the run id recorded on each archived copy, and deletes of its run-pending marks only.
resource "google_storage_bucket_iam_member" "function_reads_landing" {
  bucket = google_storage_bucket.buckets["landing"].name
  role   = "roles/storage.objectViewer"
  member = google_service_account.function.member
}

resource "google_storage_bucket_iam_member" "function_deletes_landing" {
  bucket = google_storage_bucket.buckets["landing"].name
  role   = google_project_iam_custom_role.object_deleter.id
  member = google_service_account.function.member
}

resource "google_storage_bucket_iam_member" "function_writes_outputs" {
  for_each = {
    archive  = google_storage_bucket.buckets["archive"].name
    rejected = google_storage_bucket.buckets["rejected"].name
  }
  bucket = each.value
  role   = "roles/storage.objectCreator"
  member = google_service_account.function.member
}

resource "google_storage_bucket_iam_member" "function_reads_outputs" {
  for_each = {
    archive  = google_storage_bucket.buckets["archive"].name
    rejected = google_storage_bucket.buckets["rejected"].name
  }
  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = google_service_account.function.member
}

# The run id goes on the archived copy (filegate/ingest.py _record_run); without it every sweep re-drives
# the file and reconcile lists it as never run. objects.patch needs storage.objects.update, which changes
# metadata only, never bytes. The predefined role that has it, objectUser, would also let the function
# delete and overwrite archived files: hence a custom role holding that permission alone.
resource "google_storage_bucket_iam_member" "function_marks_archive" {
  bucket = google_storage_bucket.buckets["archive"].name
  role   = google_project_iam_custom_role.object_metadata_writer.id
  member = google_service_account.function.member
}

# A file's mark (`_runs_pending/`, filegate/archive.py) is written before its landing version is deleted
# and removed once its run is recorded, so that the scheduled sweep lists only files waiting for a run.
# The delete is conditioned on that folder: every archived file stays out of the function's reach.
resource "google_storage_bucket_iam_member" "function_clears_run_marks" {
  bucket = google_storage_bucket.buckets["archive"].name
  role   = google_project_iam_custom_role.object_deleter.id
  member = google_service_account.function.member

  condition {
    title       = "run-pending marks only"
    description = "Objects under _runs_pending/ in the archive bucket: marks of files waiting for their run."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${local.bucket_prefix}-archive/objects/_runs_pending/\")"
  }
}

# No predefined role deletes objects without also creating or overwriting them.
resource "google_project_iam_custom_role" "object_deleter" {
  role_id     = "${replace(var.name_prefix, "-", "_")}_object_deleter"
  title       = "Filegate object deleter"
  description = "Delete objects: uploads in landing once archived or rejected, and the archive's run-pending marks."
  permissions = ["storage.objects.delete"]

  depends_on = [google_project_service.apis]
}

# No predefined role updates object metadata without also deleting objects.
resource "google_project_iam_custom_role" "object_metadata_writer" {
  role_id     = "${replace(var.name_prefix, "-", "_")}_object_metadata_writer"
  title       = "Filegate object metadata writer"
  description = "Update object metadata, never content; granted on the archive bucket only, to record each file's run."
  permissions = ["storage.objects.update"]

  depends_on = [google_project_service.apis]
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
  member    = google_service_account.function.member
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
  member  = google_service_account.function.member
}

# Both triggers push to their function through a Pub/Sub subscription that Eventarc manages, with an
# OIDC token for the trigger's service account that the Pub/Sub service agent mints. A service agent
# created on or before April 8, 2021 lacks that right unless it holds roles/pubsub.serviceAgent, and
# every push then fails authentication: Eventarc's "Create a trigger using Terraform"
# (cloud.google.com/eventarc/docs/creating-triggers-terraform) grants it Service Account Token Creator
# for that case. Newer projects already have it, so the grant is harmless there. The guide grants it on
# the project, which would let the agent mint tokens for every account in it; the permission is
# checked on the account the token is for, so it is granted on the two trigger accounts alone.
resource "google_service_account_iam_member" "pubsub_mints_push_tokens" {
  for_each = {
    function = google_service_account.function.name
    sweep    = google_service_account.sweep.name
  }
  service_account_id = each.value
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

data "archive_file" "function_source" {
  type        = "zip"
  source_dir  = abspath("${path.module}/${var.function_source_dir}")
  output_path = "${path.module}/.terraform/function-source.zip"
  excludes    = ["**/__pycache__/**"]
  # The zip records each file's mode, which the builder's umask sets: without one mode for all, the
  # same code zipped on two machines hashes apart, and the object's name below redeploys it for nothing.
  output_file_mode = "0644"
}

# The object name carries the zip's hash, so a code change replaces the object and redeploys.
resource "google_storage_bucket_object" "function_source" {
  name   = "gcp_function-${data.archive_file.function_source.output_md5}.zip"
  bucket = google_storage_bucket.buckets["source"].name
  source = data.archive_file.function_source.output_path
}

# Cloud Build builds the function as this account, not the project's default one: projects created
# since mid-2024 build as the Compute Engine default account, which may lack these roles; older ones
# as the legacy Cloud Build account, which holds far more. It writes build logs, pushes the image
# into the repository below, and reads the source. Cloud Functions copies the source zip into its own staging bucket
# gcf-v2-sources-<project number>-<region> (created on the first deploy, so no bucket-level grant can
# exist beforehand); the conditional project grant reaches that bucket and no other.
resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "Filegate function build: writes logs, pushes the function image"

  depends_on = [google_project_service.apis]
}

data "google_project" "this" {
  project_id = var.project_id

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Google-managed keys encrypt the function images; they hold only code that is also in the source bucket, and CMEK would add a KMS key lifecycle this module does not impose.
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  description   = "Images of the Filegate function, built by Cloud Build."
  format        = "DOCKER"
  labels        = var.labels

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository_iam_member" "build_pushes_images" {
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# Log entries are written to the project: there is no narrower resource to grant Logs Writer on.
resource "google_project_iam_member" "build_writes_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

resource "google_project_iam_member" "build_reads_staged_source" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.build.member

  condition {
    title       = "gcf-v2-sources only"
    description = "The bucket Cloud Functions stages this region's function sources in."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}\")"
  }
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.buckets["source"].name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

resource "google_cloudfunctions2_function" "filegate" {
  name        = "${var.name_prefix}-on-object-finalized"
  location    = var.region
  description = "Validates each upload to the landing bucket, moves it, and triggers the Databricks load."
  labels      = var.labels

  build_config {
    runtime           = "python311"
    entry_point       = "on_object_finalized"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.buckets["source"].name
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
      value     = google_storage_bucket.buckets["landing"].name
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.gcs_publishes_events,
    google_project_iam_member.function_receives_events,
    google_service_account_iam_member.pubsub_mints_push_tokens,
    google_secret_manager_secret_iam_member.function_reads_token,
    google_secret_manager_secret_version.databricks_token,
    google_artifact_registry_repository_iam_member.build_pushes_images,
    google_project_iam_member.build_writes_logs,
    google_project_iam_member.build_reads_staged_source,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}

# Eventarc pushes events as the function's service account; it may invoke this function only.
resource "google_cloud_run_v2_service_iam_member" "function_invokes_itself" {
  name     = google_cloudfunctions2_function.filegate.service_config[0].service
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.function.member
}
