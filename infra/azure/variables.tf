variable "name_prefix" {
  description = "Prefix for every resource name; lower-case letters and digits, 3 to 11 characters."
  type        = string
  default     = "filegate"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,10}$", var.name_prefix))
    error_message = "name_prefix must be 3 to 11 lower-case letters or digits, starting with a letter."
  }
}

variable "location" {
  description = "Azure region for every resource; it must offer the Flex Consumption plan."
  type        = string
  default     = "westeurope"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = { app = "filegate" }
}

variable "storage_replication_type" {
  description = "Replication of both storage accounts, the one holding landing and rejected and the archive's (ZRS survives a zone outage)."
  type        = string
  default     = "ZRS"
}

variable "landing_container" {
  description = "Container where uploads arrive (FILEGATE_LANDING)."
  type        = string
  default     = "landing"

  validation {
    # The account also holds the Functions host's own containers: the host's writes there would arrive as
    # uploads, be rejected and deleted.
    condition     = !contains(["deadletter", "app-package", "azure-webjobs-hosts", "azure-webjobs-secrets"], var.landing_container)
    error_message = "landing_container cannot be the deadletter or app-package container, nor the Functions host's azure-webjobs-hosts or azure-webjobs-secrets."
  }
}

variable "landing_prefix" {
  description = "Optional folder inside the landing container that the event subscription watches, e.g. `incoming/`; empty for the whole container."
  type        = string
  default     = ""

  validation {
    # The event filter starts the blob name with it as written, and blob names never start with `/`: a
    # leading or doubled `/` would let no upload through, while the function's setting drops them. The
    # function refuses whitespace beside a `/` (`incoming /`): a paste's, not a folder's name.
    condition     = var.landing_prefix == "" || can(regex("^([^/\\s]([^/]*[^/\\s])?/)+$", var.landing_prefix))
    error_message = "landing_prefix must be empty or folders that end with `/`, like `incoming/` (no leading `/`, no `//`, no whitespace beside a `/`)."
  }
}

variable "archive_container" {
  description = "Container where valid files are moved (FILEGATE_ARCHIVE), in the archive's own storage account; a name of its own, as the function tells containers apart by name."
  type        = string
  default     = "archive"

  validation {
    condition     = !contains([var.landing_container, "deadletter", "app-package"], var.archive_container)
    error_message = "archive_container must differ from landing_container (the function tells containers apart by name, though the archive has an account of its own) and from the deadletter and app-package containers."
  }
}

variable "rejected_container" {
  description = "Container for invalid files and their reports (FILEGATE_REJECTED)."
  type        = string
  default     = "rejected"

  validation {
    condition     = !contains([var.landing_container, var.archive_container, "deadletter", "app-package", "azure-webjobs-hosts", "azure-webjobs-secrets"], var.rejected_container)
    error_message = "rejected_container must differ from landing_container and archive_container (the function refuses overlapping locations) and from the deadletter and app-package containers and the Functions host's azure-webjobs-hosts and azure-webjobs-secrets."
  }
}

variable "uploader_principal_ids" {
  description = "Entra object ids (users, groups, service principals) that may upload: Storage Blob Data Contributor on the landing container only. Shared keys are off, so nobody else can write there, the deployer included."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.uploader_principal_ids : can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", id))])
    error_message = "uploader_principal_ids must be Entra object ids (GUIDs), e.g. from `az ad signed-in-user show --query id -o tsv`."
  }
}

variable "operator_principal_ids" {
  description = "Entra object ids that may read rejected files, their reports and dead-lettered events: Storage Blob Data Reader on the rejected and deadletter containers only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.operator_principal_ids : can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", id))])
    error_message = "operator_principal_ids must be Entra object ids (GUIDs)."
  }
}

variable "recovery_principal_ids" {
  description = "Entra object ids that run the recovery commands (filegate handle, sweep, reconcile --redrive, rejected --reprocess), which move files as the function does: Storage Blob Data Contributor on the landing, archive and rejected containers, Storage Blob Data Reader on deadletter, Storage Blob Delegator on both storage accounts (to sign copies between them)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.recovery_principal_ids : can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", id))])
    error_message = "recovery_principal_ids must be Entra object ids (GUIDs)."
  }
}

variable "blob_retention_days" {
  description = "Days deleted blobs, containers and old blob versions stay recoverable."
  type        = number
  default     = 14
}

variable "log_retention_days" {
  description = "Days the Log Analytics workspace keeps function and storage logs."
  type        = number
  default     = 90
}

variable "function_maximum_instance_count" {
  description = "Upper bound on Flex Consumption instances (40 to 1000); also caps concurrent Databricks run requests."
  type        = number
  default     = 40

  validation {
    condition     = var.function_maximum_instance_count >= 40 && var.function_maximum_instance_count <= 1000
    error_message = "function_maximum_instance_count must be 40 to 1000, the range Flex Consumption takes."
  }
}

variable "function_instance_memory_mb" {
  description = "Memory per Flex Consumption instance: 512, 2048 or 4096."
  type        = number
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.function_instance_memory_mb)
    error_message = "function_instance_memory_mb must be 512, 2048 or 4096, the sizes Flex Consumption offers."
  }
}

variable "enable_event_subscription" {
  description = "Create the Event Grid subscription. Event Grid checks that `on_blob_created` exists, so set this to true only after the function code is deployed."
  type        = bool
  default     = false
}

variable "event_max_delivery_attempts" {
  description = "Event Grid delivery attempts before an event is dead-lettered (1 to 30)."
  type        = number
  default     = 30

  validation {
    condition     = var.event_max_delivery_attempts >= 1 && var.event_max_delivery_attempts <= 30 && floor(var.event_max_delivery_attempts) == var.event_max_delivery_attempts
    error_message = "event_max_delivery_attempts must be a whole number from 1 to 30 (Event Grid's limits)."
  }
}

variable "event_time_to_live_minutes" {
  description = "Minutes Event Grid keeps retrying an event before dead-lettering it (1 to 1440)."
  type        = number
  default     = 1440

  validation {
    condition     = var.event_time_to_live_minutes >= 1 && var.event_time_to_live_minutes <= 1440 && floor(var.event_time_to_live_minutes) == var.event_time_to_live_minutes
    error_message = "event_time_to_live_minutes must be a whole number from 1 to 1440 (Event Grid's limits)."
  }
}

variable "databricks_host" {
  description = "Workspace URL, e.g. https://adb-1234567890123456.7.azuredatabricks.net (DATABRICKS_HOST)."
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

variable "databricks_auth" {
  description = "`azure-identity`: the function's managed identity signs in to Databricks (add it to the workspace first); `token`: a personal access token kept in Key Vault."
  type        = string
  default     = "azure-identity"

  validation {
    condition     = contains(["azure-identity", "token"], var.databricks_auth)
    error_message = "databricks_auth must be `azure-identity` or `token`."
  }
}

variable "databricks_token" {
  description = "Personal access token, only with databricks_auth = token, and then on every plan and apply (set TF_VAR_databricks_token). Ephemeral and write-only: it goes to Key Vault and never into plan or state."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = var.databricks_auth != "token" || try(length(trimspace(var.databricks_token)) > 0, false)
    error_message = "databricks_auth = \"token\" needs databricks_token: export TF_VAR_databricks_token before plan and apply."
  }

  validation {
    # The Databricks SDK sends the token as it is: a pasted newline after it failed every request, and the
    # function refuses it (DATABRICKS_TOKEN holds a line break). A space around it works (HTTP trims it).
    condition     = var.databricks_token == null || !can(regex("[\r\n]", var.databricks_token))
    error_message = "databricks_token holds a line break (a pasted newline?): export TF_VAR_databricks_token without it."
  }
}

variable "databricks_token_version" {
  description = "Raise this number to write a new databricks_token into Key Vault (write-only values cannot be diffed)."
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
  description = "When the function's timer sweeps (FILEGATE_SWEEP_SCHEDULE): NCRONTAB, six fields, seconds first. The default is every hour at minute 17."
  type        = string
  default     = "0 17 * * * *"

  validation {
    # What the function reads, by NCrontab's rules (filegate/settings.py): one it refuses, it replaces with the
    # default and an ERROR, so a cron habit (7 for Sunday, Quartz's `?`) would ignore the schedule given. Each
    # item `*`, a value or a range, each with an optional step; a value is a number in the field's range (second,
    # minute, hour, day, month, day of week: Sunday is 0 alone) or, for months and days, a name's beginning.
    condition = can(regex("^\\S+( \\S+){5}$", var.sweep_schedule)) && try(alltrue([
      for index, field in split(" ", var.sweep_schedule) : alltrue([
        for item in split(",", field) : can(regex("^(\\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[+-]?[0-9]{1,10})?$", item)) && alltrue([
          for bound in split("-", split("/", item)[0]) : bound == "*" || (
            can(regex("^[0-9]{1,10}$", bound))
            ? tonumber(bound) >= [0, 0, 0, 1, 1, 0][index] && tonumber(bound) <= [59, 59, 23, 31, 12, 6][index]
            : anytrue([for name in [[], [], [], [], ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"], ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]][index] : startswith(name, lower(bound))])
          )
          ]) && (
          length(split("/", item)) == 1 ? true : abs(tonumber(trimprefix(split("/", item)[1], "+"))) + [59, 59, 23, 30, 11, 6][index] < 2147483648
        )
      ])
    ]), false)
    error_message = "sweep_schedule must be an NCRONTAB expression the function reads: six fields separated by single spaces, seconds first (\"0 17 * * * *\"), each `*`, values or ranges in the field's range (day of week 0-6, Sunday 0) or names (Jan, Mon), with optional steps (`*/15`)."
  }
}

variable "sweep_older_than_minutes" {
  description = "The sweep takes landing files at least this many minutes old (FILEGATE_SWEEP_OLDER_THAN_MINUTES): keep it above Event Grid's first retries, so live deliveries go first."
  type        = number
  default     = 60

  validation {
    condition     = var.sweep_older_than_minutes >= 0 && var.sweep_older_than_minutes <= 52704000 && floor(var.sweep_older_than_minutes) == var.sweep_older_than_minutes
    error_message = "sweep_older_than_minutes must be a whole number of minutes, from 0 to 52704000 (a century)."
  }
}
