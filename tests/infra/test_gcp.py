"""Invariants of infra/gcp: private buckets, retried finalize trigger, bucket-level IAM only."""

from __future__ import annotations

import ast
import re
from typing import Any

from conftest import INFRA, TerraformModule

from filegate.events import GCS_FINALIZED

FUNCTION = ("google_cloudfunctions2_function", "filegate")
SWEEP = ("google_cloudfunctions2_function", "sweep")
FUNCTION_MEMBER = "${google_service_account.function.member}"
SWEEP_MEMBER = "${google_service_account.sweep.member}"
MAIN = INFRA.parent / "gcp_function" / "main.py"
BUILD_MEMBER = "${google_service_account.build.member}"


def cloud_event_functions() -> set[str]:
    """The functions main.py declares with @functions_framework.cloud_event: what an entry point may name.

    Read, not imported: importing main.py would set up the function's logging in the test process.
    """
    tree = ast.parse(MAIN.read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(decorator) == "functions_framework.cloud_event" for decorator in node.decorator_list)
    }


def bucket_name(key: str) -> str:
    """How Terraform code refers to one of the for_each buckets' names."""
    return '${google_storage_bucket.buckets["' + key + '"].name}'


LANDING = bucket_name("landing")
OUTPUTS = {"archive": bucket_name("archive"), "rejected": bucket_name("rejected")}
DELETER = "${google_project_iam_custom_role.object_deleter.id}"
METADATA_WRITER = "${google_project_iam_custom_role.object_metadata_writer.id}"
# Every bucket-level grant there may be, as (bucket, role, member); FUNCTION_NEEDS below says why.
ALLOWED_BUCKET_GRANTS = {
    "function_reads_landing": (LANDING, "roles/storage.objectViewer", FUNCTION_MEMBER),
    "function_deletes_landing": (LANDING, DELETER, FUNCTION_MEMBER),
    "function_writes_outputs": ("${each.value}", "roles/storage.objectCreator", FUNCTION_MEMBER),
    "function_reads_outputs": ("${each.value}", "roles/storage.objectViewer", FUNCTION_MEMBER),
    "function_marks_archive": (bucket_name("archive"), METADATA_WRITER, FUNCTION_MEMBER),
    "function_clears_run_marks": (bucket_name("archive"), DELETER, FUNCTION_MEMBER),
    "sweep_reads": ("${each.value}", "roles/storage.objectViewer", SWEEP_MEMBER),
    "sweep_writes_outputs": ("${each.value}", "roles/storage.objectCreator", SWEEP_MEMBER),
    "sweep_deletes": ("${each.value}", DELETER, SWEEP_MEMBER),
    "sweep_marks_archive": (bucket_name("archive"), METADATA_WRITER, SWEEP_MEMBER),
    "build_reads_source": (bucket_name("source"), "roles/storage.objectViewer", BUILD_MEMBER),
    # Databricks reads the archive, and only it, through the storage credentials' service accounts.
    "databricks_lists_archive": (
        bucket_name("archive"),
        "roles/storage.legacyBucketReader",
        "serviceAccount:${each.value}",
    ),
    "databricks_reads_archive": (bucket_name("archive"), "roles/storage.objectViewer", "serviceAccount:${each.value}"),
}
# The storage.objects permissions of the predefined roles granted here
# (cloud.google.com/storage/docs/access-control/iam-roles; their managedFolders, multipartUploads and
# resourcemanager permissions are left out, since the function uses none of them).
PREDEFINED_ROLES = {
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/storage.objectCreator": {"storage.objects.create"},
}
# What the function's calls in filegate/gcs_storage.py need on each bucket, by the JSON API's permission
# table (cloud.google.com/storage/docs/access-control/iam-json). No call needs storage.buckets.get (the
# bucket check lists one name), and no write replaces an object (every write and rewrite carries
# ifGenerationMatch=0), so none needs storage.objects.delete outside landing. Batch state (seals, run
# notes) lives in the archive bucket; the sweep, reconcile and requeue run as an operator, not as the function.
FUNCTION_NEEDS = {
    "landing": {
        "storage.objects.get": "stat, read_prefix, and the source side of copy's objects.rewrite",
        "storage.objects.list": "container_exists: readiness lists one name",
        "storage.objects.delete": "delete: the upload, once its copy exists",
    },
    "archive": {
        "storage.objects.get": "stat, read_prefix: earlier copies, seals, archived triggers",
        "storage.objects.list": "container_exists; list: a batch's pieces and seals",
        "storage.objects.create": "copy (objects.rewrite) and put (seals, run notes, run-pending marks), create-only",
        "storage.objects.update": "update_metadata (objects.patch): the run id on the archived copy",
    },
    # Under the condition of its grant: the run-pending marks alone, never an archived file.
    "archive/_runs_pending/": {"storage.objects.delete": "a run-pending mark, once its file's run is recorded"},
    "rejected": {
        "storage.objects.get": "stat, read_prefix: earlier copies, reports",
        "storage.objects.list": "container_exists; list: a batch's rejected members",
        "storage.objects.create": "copy (objects.rewrite) and put (reports), create-only",
    },
}


# The sweep (the same calls, on a schedule) also moves an overdue batch's trigger out of the archive
# (filegate/batches.py, on_incomplete = "reject") and removes the mark of a file that has its run
# (filegate/sweep.py): that delete is the one permission the event function lacks.
SWEEP_NEEDS = {
    **{where: calls for where, calls in FUNCTION_NEEDS.items() if "/" not in where},
    "archive": {
        **FUNCTION_NEEDS["archive"],
        "storage.objects.delete": "the overdue trigger's move to rejected; a run-pending mark's removal",
    },
}


def granted_to(gcp: TerraformModule, member: str) -> dict[str, set[str]]:
    """The storage permissions a service account holds on each bucket, from its grants."""
    bucket_keys = {bucket_name(key): key for key in gcp.locals["buckets"]}
    roles = {role: set(permissions) for role, permissions in PREDEFINED_ROLES.items()}
    for name, custom in gcp.of_type("google_project_iam_custom_role").items():
        roles["${google_project_iam_custom_role." + name + ".id}"] = set(custom["permissions"])
    granted: dict[str, set[str]] = {}
    for name, grant in gcp.of_type("google_storage_bucket_iam_member").items():
        if grant["member"] != member:
            continue
        assert grant["role"] in roles, f"{name}: put {grant['role']}'s storage permissions in PREDEFINED_ROLES"
        buckets = grant["for_each"].values() if grant["bucket"] == "${each.value}" else [grant["bucket"]]
        for bucket in buckets:
            where = bucket_keys[bucket] + conditioned_prefix(gcp, grant, bucket_keys[bucket])
            granted.setdefault(where, set()).update(roles[grant["role"]])
    return granted


def conditioned_prefix(gcp: TerraformModule, grant: dict[str, Any], bucket_key: str) -> str:
    """ "/<prefix>" for a grant conditioned on an object-name prefix in its own bucket, "" for none."""
    if "condition" not in grant:
        return ""
    (condition,) = grant["condition"]
    assert bucket_key in gcp.locals["buckets"]
    objects = re.escape(f"projects/_/buckets/${{local.bucket_prefix}}-{bucket_key}/objects/")
    found = re.fullmatch(rf'resource\.name\.startsWith\("{objects}([^"]+/)"\)', condition["expression"])
    assert found, f"a bucket grant's condition must name an object prefix in its own bucket: {condition['expression']}"
    return "/" + found[1]


# Project-level grants exist only where no narrower scope does.
ALLOWED_PROJECT_GRANTS = {
    "gcs_publishes_events": (
        "roles/pubsub.publisher",
        "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}",
    ),
    "function_receives_events": ("roles/eventarc.eventReceiver", FUNCTION_MEMBER),
    "build_writes_logs": ("roles/logging.logWriter", BUILD_MEMBER),
    "build_reads_staged_source": ("roles/storage.objectViewer", BUILD_MEMBER),
}


def test_every_bucket_is_private_uniform_and_versioned(gcp: TerraformModule) -> None:
    # One resource over the buckets' differences: the settings below hold for each of them.
    [bucket] = gcp.of_type("google_storage_bucket").values()

    assert bucket["for_each"] == "${local.buckets}"
    assert set(gcp.locals["buckets"]) == {"landing", "archive", "rejected", "source"}
    assert bucket["name"] == "${local.bucket_prefix}-${each.key}"
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    noncurrent = {"days_since_noncurrent_time": "${var.noncurrent_version_days}"}
    assert bucket["lifecycle_rule"][0]["condition"][0] == noncurrent


def test_only_the_source_bucket_goes_with_its_objects_and_each_keeps_its_age_rules(gcp: TerraformModule) -> None:
    buckets = gcp.locals["buckets"]

    assert {name for name, bucket in buckets.items() if bucket["force_destroy"]} == {"source"}
    assert buckets["archive"]["nearline_after_days"] == "${var.archive_nearline_after_days}"
    assert buckets["rejected"]["delete_after_days"] == "${var.rejected_retention_days}"
    assert buckets["landing"]["delete_after_days"] is None  # an upload waits for its event or the sweep


def test_the_buckets_keep_their_state_across_the_for_each(gcp: TerraformModule) -> None:
    text = (gcp.folder / "storage.tf").read_text()
    moved = re.findall(
        r'moved \{\s*from = google_storage_bucket\.(\w+)\s*to\s*= google_storage_bucket\.buckets\["(\w+)"\]', text
    )

    assert sorted(moved) == sorted((name, name) for name in gcp.locals["buckets"])


def test_function_is_gen2_python_on_the_landing_finalize_event_with_retries(gcp: TerraformModule) -> None:
    function = gcp.resource(*FUNCTION)
    build = function["build_config"][0]
    trigger = function["event_trigger"][0]
    service = function["service_config"][0]

    assert (build["runtime"], build["entry_point"]) == ("python311", "on_object_finalized")
    # A missing or plain-HTTP entry point fails only at deploy, after the buckets and grants were made.
    assert build["entry_point"] in cloud_event_functions()
    assert trigger["event_type"] == GCS_FINALIZED
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["event_filters"] == [{"attribute": "bucket", "value": bucket_name("landing")}]
    assert trigger["service_account_email"] == service["service_account_email"]
    assert service["service_account_email"] == "${google_service_account.function.email}"
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert gcp.resolve(service["timeout_seconds"]) <= 540


def test_function_source_is_the_packaged_build_folder(gcp: TerraformModule) -> None:
    source = gcp.variables["function_source_dir"]["default"]

    assert source == "../../build/gcp_function"
    storage_source = gcp.resource(*FUNCTION)["build_config"][0]["source"][0]["storage_source"][0]
    assert storage_source["object"] == "${google_storage_bucket_object.function_source.name}"
    # One file mode in the zip: its hash names the object, and a umask must not redeploy the same code.
    archive = re.search(r'data "archive_file" "function_source" \{(.*?)\n\}', gcp.text(), re.DOTALL)
    assert archive is not None
    assert re.search(r'output_file_mode\s*=\s*"0644"', archive[1])


def test_the_function_holds_on_each_bucket_exactly_the_permissions_its_calls_need(gcp: TerraformModule) -> None:
    needed = {bucket: set(calls) for bucket, calls in FUNCTION_NEEDS.items()}

    assert granted_to(gcp, FUNCTION_MEMBER) == needed


def test_the_sweep_holds_the_functions_permissions_and_the_archive_delete_alone(gcp: TerraformModule) -> None:
    needed = {bucket: set(calls) for bucket, calls in SWEEP_NEEDS.items()}

    assert granted_to(gcp, SWEEP_MEMBER) == needed
    function = granted_to(gcp, FUNCTION_MEMBER)
    assert {bucket: calls - function[bucket] for bucket, calls in needed.items()} == {
        "landing": set(),
        "archive": {"storage.objects.delete"},
        "rejected": set(),
    }


def test_bucket_grants_are_exactly_what_the_store_calls_need(gcp: TerraformModule) -> None:
    grants = gcp.of_type("google_storage_bucket_iam_member")

    assert set(grants) == set(ALLOWED_BUCKET_GRANTS)
    for name, grant in grants.items():
        assert (grant["bucket"], grant["role"], grant["member"]) == ALLOWED_BUCKET_GRANTS[name], name
    for name in ("function_writes_outputs", "function_reads_outputs", "sweep_writes_outputs"):
        assert grants[name]["for_each"] == OUTPUTS, name
    assert grants["sweep_reads"]["for_each"] == {"landing": LANDING, **OUTPUTS}
    assert grants["sweep_deletes"]["for_each"] == {"landing": LANDING, "archive": OUTPUTS["archive"]}
    deleter = gcp.resource("google_project_iam_custom_role", "object_deleter")
    assert deleter["permissions"] == ["storage.objects.delete"]
    writer = gcp.resource("google_project_iam_custom_role", "object_metadata_writer")
    assert writer["permissions"] == ["storage.objects.update"]
    assert not {grant["role"] for grant in grants.values()} & {"roles/storage.objectUser", "roles/storage.objectAdmin"}
    # Authoritative bindings would silently strip grants other people made.
    for kind in ("_iam_binding", "_iam_policy"):
        assert not [key for key in gcp.resources if key[0].endswith(kind)]


def test_project_level_roles_are_only_those_without_a_narrower_scope(gcp: TerraformModule) -> None:
    grants = gcp.of_type("google_project_iam_member")

    assert set(grants) == set(ALLOWED_PROJECT_GRANTS)
    for name, grant in grants.items():
        assert (grant["role"], grant["member"]) == ALLOWED_PROJECT_GRANTS[name], name
    # The build reads the source Cloud Functions staged for this region, and no other bucket.
    (condition,) = grants["build_reads_staged_source"]["condition"]
    assert condition["expression"] == (
        'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}")'
    )
    unconditional = {name for name, grant in grants.items() if "condition" not in grant}
    assert unconditional == set(ALLOWED_PROJECT_GRANTS) - {"build_reads_staged_source"}
    invoker = gcp.resource("google_cloud_run_v2_service_iam_member", "function_invokes_itself")
    assert invoker["name"] == "${google_cloudfunctions2_function.filegate.service_config[0].service}"
    assert (invoker["role"], invoker["member"]) == ("roles/run.invoker", FUNCTION_MEMBER)


def test_the_pubsub_service_agent_may_mint_push_tokens_for_each_trigger_account_alone(gcp: TerraformModule) -> None:
    # Eventarc's Terraform guide: a Pub/Sub service agent created on or before April 8, 2021 needs Token
    # Creator, or every authenticated push to the function fails; here on the trigger accounts, not the project.
    grant = gcp.resource("google_service_account_iam_member", "pubsub_mints_push_tokens")
    triggers = [gcp.resource(*function)["event_trigger"][0] for function in (FUNCTION, SWEEP)]

    assert grant["role"] == "roles/iam.serviceAccountTokenCreator"
    assert grant["member"] == (
        "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
    assert grant["service_account_id"] == "${each.value}"
    assert sorted(grant["for_each"].values()) == sorted(
        trigger["service_account_email"].replace(".email}", ".name}") for trigger in triggers
    )
    # The first event must not reach a trigger whose pushes cannot authenticate yet.
    for function in (FUNCTION, SWEEP):
        assert "${google_service_account_iam_member.pubsub_mints_push_tokens}" in gcp.resource(*function)["depends_on"]
    assert set(gcp.of_type("google_service_account_iam_member")) == {"pubsub_mints_push_tokens"}


def test_function_is_built_by_its_own_account_into_its_own_repository(gcp: TerraformModule) -> None:
    function = gcp.resource(*FUNCTION)
    build = function["build_config"][0]
    pusher = gcp.resource("google_artifact_registry_repository_iam_member", "build_pushes_images")

    assert build["service_account"] == "${google_service_account.build.id}"
    assert build["docker_repository"] == "${google_artifact_registry_repository.functions.id}"
    assert (pusher["role"], pusher["member"]) == ("roles/artifactregistry.writer", BUILD_MEMBER)
    assert pusher["repository"] == "${google_artifact_registry_repository.functions.name}"
    assert set(gcp.of_type("google_artifact_registry_repository_iam_member")) == {"build_pushes_images"}
    # The build must not start before its grants exist.
    for grant in (
        "google_artifact_registry_repository_iam_member.build_pushes_images",
        "google_project_iam_member.build_writes_logs",
        "google_project_iam_member.build_reads_staged_source",
        "google_storage_bucket_iam_member.build_reads_source",
    ):
        assert "${" + grant + "}" in function["depends_on"], grant


def test_every_resource_waits_for_the_apis_it_calls(gcp: TerraformModule) -> None:
    apis = gcp.resource("google_project_service", "apis")
    waiting = "${google_project_service.apis}"

    enabled = set(re.findall(r'"([a-z]+\.googleapis\.com)"', apis["for_each"]))

    assert {"iam.googleapis.com", "cloudresourcemanager.googleapis.com", "artifactregistry.googleapis.com"} <= enabled
    # The first resource of each API in the chain; the rest follow through references.
    for key in (
        ("google_service_account", "function"),
        ("google_service_account", "build"),
        ("google_project_iam_custom_role", "object_deleter"),
        ("google_project_iam_custom_role", "object_metadata_writer"),
        ("google_artifact_registry_repository", "functions"),
        ("google_secret_manager_secret", "databricks_token"),
        ("google_cloudfunctions2_function", "filegate"),
        ("google_storage_bucket", "buckets"),
        ("google_service_account", "sweep"),
        ("google_pubsub_topic", "sweep"),
        ("google_cloud_scheduler_job", "sweep"),
        ("google_cloudfunctions2_function", "sweep"),
    ):
        assert waiting in gcp.resources[key]["depends_on"], key


def test_storage_accesses_are_audited_so_the_bucket_logging_skip_holds(gcp: TerraformModule) -> None:
    audit = gcp.resource("google_project_iam_audit_config", "storage")

    assert audit["service"] == "storage.googleapis.com"
    assert {entry["log_type"] for entry in audit["audit_log_config"]} == {"DATA_READ", "DATA_WRITE"}
    assert audit["count"] == "${var.storage_data_access_logs ? 1 : 0}"
    assert gcp.variables["storage_data_access_logs"]["default"] is True
    # Each bucket's CKV_GCP_62 skip names this resource as the reason it holds.
    skips = re.findall(r"#checkov:skip=CKV_GCP_62:(.*)", (gcp.folder / "storage.tf").read_text())
    assert len(skips) == len(gcp.of_type("google_storage_bucket"))
    assert all("google_project_iam_audit_config.storage" in reason for reason in skips)


def test_databricks_token_comes_from_secret_manager_and_never_from_state(gcp: TerraformModule) -> None:
    (secret_env,) = gcp.resource(*FUNCTION)["service_config"][0]["secret_environment_variables"]
    version = gcp.resource("google_secret_manager_secret_version", "databricks_token")
    accessor = gcp.resource("google_secret_manager_secret_iam_member", "function_reads_token")

    assert secret_env["key"] == "DATABRICKS_TOKEN"
    assert secret_env["secret"] == "${google_secret_manager_secret.databricks_token.secret_id}"
    assert version["secret_data_wo"] == "${var.databricks_token}"
    assert "secret_data" not in version
    assert gcp.variables["databricks_token"]["ephemeral"] is True
    assert accessor["secret_id"] == "${google_secret_manager_secret.databricks_token.id}"
    assert (accessor["role"], accessor["member"]) == ("roles/secretmanager.secretAccessor", FUNCTION_MEMBER)


def test_outputs_and_variables_are_described(gcp: TerraformModule) -> None:
    assert set(gcp.outputs) >= {"function_name", "event_trigger", "landing_bucket", "archive_bucket", "rejected_bucket"}
    assert (
        gcp.outputs["event_trigger"]["value"] == "${google_cloudfunctions2_function.filegate.event_trigger[0].trigger}"
    )
    for name, block in {**gcp.outputs, **gcp.variables}.items():
        assert block.get("description"), name


def test_the_sweep_is_its_own_function_ticked_by_cloud_scheduler_through_a_topic(gcp: TerraformModule) -> None:
    sweep, function = gcp.resource(*SWEEP), gcp.resource(*FUNCTION)
    build, service, (trigger,) = sweep["build_config"][0], sweep["service_config"][0], sweep["event_trigger"]
    job = gcp.resource("google_cloud_scheduler_job", "sweep")

    # The same source as the event function, another entry point (gcp_function/main.py).
    assert build["entry_point"] == "on_sweep_tick"
    assert build["entry_point"] in cloud_event_functions()
    assert build["source"] == function["build_config"][0]["source"]
    assert (build["runtime"], build["service_account"]) == ("python311", "${google_service_account.build.id}")
    assert job["schedule"] == "${var.sweep_schedule}"
    assert job["pubsub_target"][0]["topic_name"] == "${google_pubsub_topic.sweep.id}"
    assert trigger["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert trigger["pubsub_topic"] == "${google_pubsub_topic.sweep.id}"
    # A failed pass is not redelivered: the next tick sweeps again, and the failure is logged.
    assert trigger["retry_policy"] == "RETRY_POLICY_DO_NOT_RETRY"
    assert trigger["service_account_email"] == service["service_account_email"]
    assert service["service_account_email"] == "${google_service_account.sweep.email}"
    assert service["max_instance_count"] == 1
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert service["environment_variables"] == function["service_config"][0]["environment_variables"]
    assert service["secret_environment_variables"] == function["service_config"][0]["secret_environment_variables"]
    accessor = gcp.resource("google_secret_manager_secret_iam_member", "sweep_reads_token")
    assert (accessor["role"], accessor["member"]) == ("roles/secretmanager.secretAccessor", SWEEP_MEMBER)
    # The first tick must not find the function without its grants.
    for grant in ("sweep_reads", "sweep_writes_outputs", "sweep_deletes", "sweep_marks_archive"):
        assert "${google_storage_bucket_iam_member." + grant + "}" in sweep["depends_on"], grant
    invoker = gcp.resource("google_cloud_run_v2_service_iam_member", "sweep_invokes_itself")
    assert invoker["name"] == "${google_cloudfunctions2_function.sweep.service_config[0].service}"
    assert (invoker["role"], invoker["member"]) == ("roles/run.invoker", SWEEP_MEMBER)


def test_the_sweep_stops_starting_files_in_time_for_the_last_one_to_end_before_its_timeout(
    gcp: TerraformModule,
) -> None:
    from filegate.gcs_storage import _REWRITE_SECONDS

    # Read, not imported: importing main.py would set up the function's logging in the test process.
    budget = re.search(r"^SWEEP_BUDGET = timedelta\(minutes=(\d+)\)$", MAIN.read_text(encoding="utf-8"), re.MULTILINE)
    timeout = gcp.resolve(gcp.resource(*SWEEP)["service_config"][0]["timeout_seconds"])

    assert budget, "gcp_function/main.py sets SWEEP_BUDGET in whole minutes"
    assert timeout <= 540  # Cloud Functions' ceiling for an event-driven function
    # A file started just before the budget ends may rewrite an overdue trigger between storage classes.
    assert int(budget[1]) * 60 + _REWRITE_SECONDS + 60 <= timeout


def deploy_flags(readme: str, entry_point: str) -> dict[str, list[str]]:
    """The flags of the README's `gcloud functions deploy` for one entry point, each with its values."""
    commands = re.findall(r"^gcloud functions deploy .*?(?<!\\)$", readme, re.MULTILINE | re.DOTALL)
    [command] = [c for c in commands if f"--entry-point={entry_point}" in c]
    flags: dict[str, list[str]] = {}
    for word in command.replace("\\\n", " ").split()[4:]:
        name, _, value = word.partition("=")
        flags.setdefault(name, []).append(value)
    return flags


def test_the_readmes_gcloud_deploy_makes_the_function_infra_gcp_makes(gcp: TerraformModule) -> None:
    readme = (INFRA.parent / "gcp_function" / "README.md").read_text(encoding="utf-8")
    flags = deploy_flags(readme, "on_object_finalized")
    service = gcp.resource(*FUNCTION)["service_config"][0]

    assert "--retry" in flags
    assert f"type={GCS_FINALIZED}" in flags["--trigger-event-filters"]
    assert int(flags["--timeout"][0].removesuffix("s")) <= 540
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert flags["--ingress-settings"] == ["internal-only"]
    # Without it the trigger pushes as the Compute Engine default account, which needs Eventarc Event Receiver and
    # Run Invoker of its own and may hold no role at all: then no event arrives, and nothing in Filegate logs why.
    assert flags["--trigger-service-account"] == flags["--service-account"]
    for role in ("roles/eventarc.eventReceiver", "roles/run.invoker", "roles/secretmanager.secretAccessor"):
        assert role in gcp.text(), role
        assert role in readme, f"gcp_function/README.md does not say the function's accounts need {role}"
