# The scheduled sweep: Cloud Scheduler publishes a tick to a topic, and Eventarc delivers it to a second
# function built from the same source (entry point on_sweep_tick). It finishes what lost events left:
# Eventarc drops an event once its retry window passes, and no dead-letter topic can be set on the
# subscription Eventarc manages, so without the sweep such a file would wait in landing for an operator.
#
# It has an identity of its own, because the sweep needs one thing the event function must not have:
# deleting archived files, to move an overdue batch's trigger to rejected (on_incomplete = "reject").
# (The event function deletes in the archive only the run-pending marks, under an IAM condition.)

resource "google_service_account" "sweep" {
  account_id   = "${var.name_prefix}-sweep"
  display_name = "Filegate sweep: finishes files and batches whose events were lost"

  depends_on = [google_project_service.apis]
}

# The event function's grants (function.tf), plus the archive delete; tests/infra/test_gcp.py keeps the table.
resource "google_storage_bucket_iam_member" "sweep_reads" {
  for_each = {
    landing  = google_storage_bucket.buckets["landing"].name
    archive  = google_storage_bucket.buckets["archive"].name
    rejected = google_storage_bucket.buckets["rejected"].name
  }
  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = google_service_account.sweep.member
}

resource "google_storage_bucket_iam_member" "sweep_writes_outputs" {
  for_each = {
    archive  = google_storage_bucket.buckets["archive"].name
    rejected = google_storage_bucket.buckets["rejected"].name
  }
  bucket = each.value
  role   = "roles/storage.objectCreator"
  member = google_service_account.sweep.member
}

resource "google_storage_bucket_iam_member" "sweep_deletes" {
  for_each = {
    landing = google_storage_bucket.buckets["landing"].name
    archive = google_storage_bucket.buckets["archive"].name
  }
  bucket = each.value
  role   = google_project_iam_custom_role.object_deleter.id
  member = google_service_account.sweep.member
}

resource "google_storage_bucket_iam_member" "sweep_marks_archive" {
  bucket = google_storage_bucket.buckets["archive"].name
  role   = google_project_iam_custom_role.object_metadata_writer.id
  member = google_service_account.sweep.member
}

resource "google_secret_manager_secret_iam_member" "sweep_reads_token" {
  secret_id = google_secret_manager_secret.databricks_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.sweep.member
}

resource "google_pubsub_topic" "sweep" {
  #checkov:skip=CKV_GCP_83:Google-managed keys encrypt the ticks; they carry no data (the message is the word "sweep").
  name   = "${var.name_prefix}-sweep"
  labels = var.labels

  # A tick nobody received within an hour is stale: the next one is due.
  message_retention_duration = "3600s"

  depends_on = [google_project_service.apis]
}

resource "google_cloud_scheduler_job" "sweep" {
  name        = "${var.name_prefix}-sweep"
  region      = var.region
  description = "Ticks the Filegate sweep function."
  schedule    = var.sweep_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.sweep.id
    data       = base64encode("sweep")
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloudfunctions2_function" "sweep" {
  name        = "${var.name_prefix}-sweep"
  location    = var.region
  description = "Sweeps on a schedule: landing files whose events were lost, archived files without a run, batches."
  labels      = var.labels

  build_config {
    runtime           = "python311"
    entry_point       = "on_sweep_tick"
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
    # One sweep at a time; a tick that finds it busy is dropped, and the next tick comes.
    max_instance_count = 1
    available_memory   = var.function_memory
    # The most an event-driven function may have; main.py's SWEEP_BUDGET stops starting files before it.
    timeout_seconds                = 540
    service_account_email          = google_service_account.sweep.email
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
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.sweep.id
    retry_policy          = "RETRY_POLICY_DO_NOT_RETRY"
    service_account_email = google_service_account.sweep.email
  }

  depends_on = [
    google_project_service.apis,
    google_storage_bucket_iam_member.sweep_reads,
    google_storage_bucket_iam_member.sweep_writes_outputs,
    google_storage_bucket_iam_member.sweep_deletes,
    google_storage_bucket_iam_member.sweep_marks_archive,
    google_secret_manager_secret_iam_member.sweep_reads_token,
    google_service_account_iam_member.pubsub_mints_push_tokens,
    google_secret_manager_secret_version.databricks_token,
    google_artifact_registry_repository_iam_member.build_pushes_images,
    google_project_iam_member.build_writes_logs,
    google_project_iam_member.build_reads_staged_source,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}

# Eventarc pushes the tick as the sweep's service account; it may invoke the sweep function only. It needs
# no roles/eventarc.eventReceiver (which the finalize trigger's account holds, function.tf): Eventarc's
# "Roles and permissions for Cloud Run functions targets" leaves it out for direct Pub/Sub events.
resource "google_cloud_run_v2_service_iam_member" "sweep_invokes_itself" {
  name     = google_cloudfunctions2_function.sweep.service_config[0].service
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.sweep.member
}
