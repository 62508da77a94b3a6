output "function_name" {
  description = "Cloud Function (gen2) handling finalize events of the landing bucket."
  value       = google_cloudfunctions2_function.filegate.name
}

output "event_trigger" {
  description = "Eventarc trigger that delivers the landing bucket's finalize events to the function."
  value       = google_cloudfunctions2_function.filegate.event_trigger[0].trigger
}

output "sweep_function_name" {
  description = "Cloud Function (gen2) that sweeps on Cloud Scheduler's ticks."
  value       = google_cloudfunctions2_function.sweep.name
}

output "sweep_schedule_job" {
  description = "Cloud Scheduler job that ticks the sweep; `gcloud scheduler jobs run` sweeps now."
  value       = google_cloud_scheduler_job.sweep.id
}

output "sweep_service_account" {
  description = "Identity the sweep runs as: the function's grants plus deleting in the archive."
  value       = google_service_account.sweep.email
}

output "build_service_account" {
  description = "Identity Cloud Build builds the function as."
  value       = google_service_account.build.email
}

output "function_service_account" {
  description = "Identity the function runs as (its bucket and secret grants); Databricks knows the function by its token."
  value       = google_service_account.function.email
}

output "landing_bucket" {
  description = "Bucket users upload into."
  value       = google_storage_bucket.buckets["landing"].name
}

output "archive_bucket" {
  description = "Bucket holding files that passed validation."
  value       = google_storage_bucket.buckets["archive"].name
}

output "rejected_bucket" {
  description = "Bucket holding rejected files and their reports."
  value       = google_storage_bucket.buckets["rejected"].name
}

output "databricks_token_secret" {
  description = "Secret Manager secret holding the Databricks token; add versions with `gcloud secrets versions add`."
  value       = google_secret_manager_secret.databricks_token.secret_id
}
