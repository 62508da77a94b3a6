"""Invariants of infra/gcp: private buckets, retried finalize trigger, bucket-level IAM only."""

from __future__ import annotations

from conftest import TerraformModule

FUNCTION = ("google_cloudfunctions2_function", "filegate")
FUNCTION_MEMBER = "serviceAccount:${google_service_account.function.email}"
OBJECT_ROLES = {"roles/storage.objectViewer", "roles/storage.objectCreator", "roles/storage.objectUser"}


def test_every_bucket_is_private_uniform_and_versioned(gcp: TerraformModule) -> None:
    buckets = gcp.of_type("google_storage_bucket")

    assert set(buckets) == {"landing", "archive", "rejected", "source"}
    for name, bucket in buckets.items():
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name
        assert bucket["versioning"][0]["enabled"] is True, name
        assert bucket["lifecycle_rule"], name


def test_function_is_gen2_python_on_the_landing_finalize_event_with_retries(gcp: TerraformModule) -> None:
    function = gcp.resource(*FUNCTION)
    build = function["build_config"][0]
    trigger = function["event_trigger"][0]
    service = function["service_config"][0]

    assert (build["runtime"], build["entry_point"]) == ("python311", "on_object_finalized")
    assert trigger["event_type"] == "google.cloud.storage.object.v1.finalized"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["event_filters"] == [{"attribute": "bucket", "value": "${google_storage_bucket.landing.name}"}]
    assert trigger["service_account_email"] == service["service_account_email"]
    assert service["service_account_email"] == "${google_service_account.function.email}"
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert gcp.resolve(service["timeout_seconds"]) <= 540


def test_function_source_is_the_packaged_build_folder(gcp: TerraformModule) -> None:
    source = gcp.variables["function_source_dir"]["default"]

    assert source == "../../build/gcp_function"
    storage_source = gcp.resource(*FUNCTION)["build_config"][0]["source"][0]["storage_source"][0]
    assert storage_source["object"] == "${google_storage_bucket_object.function_source.name}"


def test_function_identity_gets_object_roles_on_its_three_buckets_only(gcp: TerraformModule) -> None:
    grants = gcp.resource("google_storage_bucket_iam_member", "function_objects")

    assert set(grants["for_each"]) == {"landing", "archive", "rejected"}
    assert grants["role"] in OBJECT_ROLES
    assert grants["member"] == FUNCTION_MEMBER
    # Authoritative bindings would silently strip grants other people made.
    for kind in ("_iam_binding", "_iam_policy"):
        assert not [key for key in gcp.resources if key[0].endswith(kind)]


def test_project_level_roles_are_only_the_eventarc_prerequisites(gcp: TerraformModule) -> None:
    grants = gcp.of_type("google_project_iam_member")

    assert {grant["role"] for grant in grants.values()} == {"roles/pubsub.publisher", "roles/eventarc.eventReceiver"}
    assert grants["function_receives_events"]["member"] == FUNCTION_MEMBER
    assert "gcs" in grants["gcs_publishes_events"]["member"]
    invoker = gcp.resource("google_cloud_run_v2_service_iam_member", "function_invokes_itself")
    assert invoker["name"] == "${google_cloudfunctions2_function.filegate.service_config[0].service}"
    assert invoker["role"] == "roles/run.invoker"


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
    assert set(gcp.outputs) >= {"function_name", "landing_bucket", "archive_bucket", "rejected_bucket"}
    for name, block in {**gcp.outputs, **gcp.variables}.items():
        assert block.get("description"), name
