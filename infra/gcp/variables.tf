variable "project_id" {
  description = "Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the buckets and the function; the Eventarc trigger must live where the landing bucket lives."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix for resource names; bucket names also get the project id for global uniqueness."
  type        = string
  default     = "filegate"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,14}$", var.name_prefix))
    error_message = "name_prefix must be 3 to 15 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = { app = "filegate" }
}

variable "function_source_dir" {
  description = "Folder `make gcp-package` fills with main.py, requirements.txt and the vendored core."
  type        = string
  default     = "../../build/gcp_function"
}

variable "storage_data_access_logs" {
  description = "Turn on Data Access audit logs (DATA_READ, DATA_WRITE) for Cloud Storage in the project, so every object access is recorded. They are billed as Cloud Logging ingestion and cover every bucket in the project."
  type        = bool
  default     = true
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version stays recoverable."
  type        = number
  default     = 14
}

variable "archive_nearline_after_days" {
  description = "Days after which archived files move to the cheaper Nearline storage class."
  type        = number
  default     = 30
}

variable "rejected_retention_days" {
  description = "Days rejected files and their reports are kept before deletion."
  type        = number
  default     = 90
}

variable "function_max_instances" {
  description = "Upper bound on concurrent function instances; also caps concurrent Databricks run requests."
  type        = number
  default     = 20
}

variable "function_memory" {
  description = "Memory per function instance."
  type        = string
  default     = "512Mi"
}

variable "function_timeout_seconds" {
  description = "Per-event timeout; event-driven functions allow at most 540 seconds."
  type        = number
  default     = 540

  validation {
    condition     = var.function_timeout_seconds >= 60 && var.function_timeout_seconds <= 540
    error_message = "function_timeout_seconds must be 60 to 540: event-driven functions allow at most 540, and a file's validation and archive copy need a minute of headroom."
  }
}

variable "databricks_storage_service_accounts" {
  description = "Service accounts of the Unity Catalog storage credentials the jobs read the archive with (Databricks generates one per credential: Catalog > External data > Credentials). Each may list and read the archive bucket, nothing else."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.databricks_storage_service_accounts : can(regex("^[a-z0-9-]+@[a-z0-9-]+\\.iam\\.gserviceaccount\\.com$", email))])
    error_message = "databricks_storage_service_accounts must be service account e-mails (name@project.iam.gserviceaccount.com)."
  }
}

variable "databricks_host" {
  description = "Workspace URL, e.g. https://1234567890123456.7.gcp.databricks.com (DATABRICKS_HOST)."
  type        = string

  validation {
    # The function fails every delivery on a query or fragment (the browser's `/?o=<id>#...` of an Azure
    # workspace), which it refuses, and on a path (a run page's address), which the SDK sends in every
    # Jobs API request and the workspace answers with a web page.
    condition     = can(regex("^https://[^/?#\\s]+/?$", var.databricks_host))
    error_message = "databricks_host must be the workspace URL alone, https://<host>, without a path, ?o=... or #..., nor whitespace"
  }
}

variable "databricks_job_name" {
  description = "Name of the job the bundle deploys (FILEGATE_JOB_NAME)."
  type        = string
  default     = "filegate-ingest"
}

variable "databricks_job_id" {
  description = "Job id; when set it wins over the job name (FILEGATE_JOB_ID). Empty to look the job up by name."
  type        = string
  default     = ""

  validation {
    # The function refuses any other value on every delivery (FILEGATE_JOB_ID): refused at plan instead.
    condition     = can(regex("^[0-9]*$", var.databricks_job_id)) && !can(regex("^0+$", var.databricks_job_id))
    error_message = "databricks_job_id must be a job id (digits only, 1 or more), or empty to look the job up by name."
  }
}

variable "databricks_batch_job_name" {
  description = "Name of the job a sealed pipeline batch runs (FILEGATE_BATCH_JOB_NAME)."
  type        = string
  default     = "filegate-batch"
}

variable "databricks_batch_job_id" {
  description = "Batch job id; when set it wins over the batch job name (FILEGATE_BATCH_JOB_ID). Empty to look the job up by name."
  type        = string
  default     = ""

  validation {
    # The function refuses any other value on every delivery (FILEGATE_BATCH_JOB_ID): refused at plan instead.
    condition     = can(regex("^[0-9]*$", var.databricks_batch_job_id)) && !can(regex("^0+$", var.databricks_batch_job_id))
    error_message = "databricks_batch_job_id must be a job id (digits only, 1 or more), or empty to look the job up by name."
  }
}

variable "databricks_token" {
  description = "Personal access token for the workspace. Ephemeral and write-only: it goes to Secret Manager and never into plan or state. Needed on the first apply and whenever databricks_token_version changes."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true

  validation {
    # As on Azure: a blank token (TF_VAR_databricks_token exported from an unset shell variable) would be
    # written as the secret's new version, and the function would fail every delivery's Databricks call.
    # Null stays allowed: after the first apply the stored version is kept until databricks_token_version rises.
    condition     = var.databricks_token == null || try(length(trimspace(var.databricks_token)) > 0, false)
    error_message = "databricks_token is blank: export TF_VAR_databricks_token=dapi... with the token, or unset it to keep the one in Secret Manager."
  }

  validation {
    # The Databricks SDK sends the token as it is: a pasted newline after it failed every request, and the
    # function refuses it (DATABRICKS_TOKEN holds a line break). A space around it works (HTTP trims it).
    condition     = var.databricks_token == null || !can(regex("[\r\n]", var.databricks_token))
    error_message = "databricks_token holds a line break (a pasted newline?): export TF_VAR_databricks_token without it."
  }
}

variable "databricks_token_version" {
  description = "Raise this number to write a new databricks_token into Secret Manager (write-only values cannot be diffed)."
  type        = number
  default     = 1
}

variable "sample_bytes" {
  description = "How much of each file validation reads (FILEGATE_SAMPLE_BYTES)."
  type        = number
  default     = 1048576

  validation {
    # The function refuses any other value on every delivery: refused at plan instead.
    condition     = var.sample_bytes >= 1024 && var.sample_bytes <= 67108864 && floor(var.sample_bytes) == var.sample_bytes
    error_message = "sample_bytes must be a whole number from 1024 to 67108864 (64 MiB): the function holds the sample in memory."
  }
}

variable "max_file_bytes" {
  description = "Files larger than this are rejected (FILEGATE_MAX_FILE_BYTES)."
  type        = number
  default     = 53687091200

  validation {
    # 0 is not "no limit": every file would be rejected.
    condition     = var.max_file_bytes >= 1 && floor(var.max_file_bytes) == var.max_file_bytes
    error_message = "max_file_bytes must be a whole number of bytes, 1 or more."
  }
}

variable "sweep_schedule" {
  description = "When Cloud Scheduler ticks the sweep function: unix cron, five fields, in UTC. The default is every hour at minute 17."
  type        = string
  default     = "17 * * * *"

  validation {
    condition     = can(regex("^\\S+( \\S+){4}$", var.sweep_schedule))
    error_message = "sweep_schedule must be a unix cron expression of five fields separated by single spaces (\"17 * * * *\")."
  }
}

variable "sweep_older_than_minutes" {
  description = "The sweep takes landing files at least this many minutes old (FILEGATE_SWEEP_OLDER_THAN_MINUTES): keep it above Eventarc's first retries, so live deliveries go first."
  type        = number
  default     = 60

  validation {
    condition     = var.sweep_older_than_minutes >= 0 && var.sweep_older_than_minutes <= 52704000 && floor(var.sweep_older_than_minutes) == var.sweep_older_than_minutes
    error_message = "sweep_older_than_minutes must be a whole number of minutes, from 0 to 52704000 (a century)."
  }
}
