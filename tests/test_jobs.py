"""The Databricks trigger against the local Jobs API with the real SDK: body, retries, failures."""

from __future__ import annotations

import http.server
import re
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from filegate.errors import SettingsError, TransientError
from filegate.jobs import (
    DatabricksJobs,
    batch_id,
    create_workspace_client,
    idempotency_token,
    named_error,
    never_ran,
    pipeline_batch_id,
    probe_host,
)
from filegate.settings import Settings
from local_world.emulators import free_port
from local_world.inputs import blob_created
from local_world.jobs_api import Fault, LocalJobsServer
from local_world.jobs_api.recording import local_jobs_api, workspace_client

PARAMETERS = {
    "source_path": "abfss://archive@acct.dfs.core.windows.net/x.csv",
    "dataset": "order_tracking",
    "batch_id": "b1",
}


def trigger(server: LocalJobsServer, settings: Settings | None = None, retry_timeout: int = 10) -> DatabricksJobs:
    return DatabricksJobs(settings or Settings(), workspace_client(server, retry_timeout_seconds=retry_timeout))


def test_token_is_stable_short_and_tied_to_the_file_version() -> None:
    from filegate.events import parse_event

    first = parse_event(blob_created("landing", "f.csv", 10, "0x1"))
    again = parse_event(blob_created("landing", "f.csv", 10, "0x1"))
    changed = parse_event(blob_created("landing", "f.csv", 10, "0x2"))

    assert idempotency_token(first) == idempotency_token(again)  # type: ignore[arg-type]
    assert idempotency_token(first) != idempotency_token(changed)  # type: ignore[arg-type]
    # Databricks takes at most 64 characters; the prefix and 56 hex digits of the identity's SHA-256.
    assert re.fullmatch(r"fg1-[0-9a-f]{56}", idempotency_token(first))  # type: ignore[arg-type]


def test_batch_id_reads_as_dataset_and_day() -> None:
    from datetime import date

    assert (
        batch_id("order_tracking", date(2024, 3, 5), "fg1-abcdef0123456789") == "order_tracking-20240305-abcdef012345"
    )


def test_a_pipeline_batch_id_is_the_day_and_never_a_file_s() -> None:
    from datetime import date

    day = date(2024, 3, 5)
    assert pipeline_batch_id("ecommerce", day) == "ecommerce-20240305"
    assert pipeline_batch_id("ecommerce", day) != batch_id("ecommerce", day, "fg1-abcdef0123456789")


def test_job_is_resolved_by_name_once(jobs_api: LocalJobsServer) -> None:
    jobs = trigger(jobs_api)

    jobs.trigger_run(PARAMETERS, "fg1-a")
    jobs.trigger_run(PARAMETERS, "fg1-b")

    assert len(jobs_api.requests("list")) == 1
    assert [r.body["job_id"] for r in jobs_api.requests("run-now")] == [1, 1]


def test_job_id_setting_skips_the_lookup(jobs_api: LocalJobsServer) -> None:
    run = trigger(jobs_api, Settings(job_id=1)).trigger_run(PARAMETERS, "fg1-a")

    assert run.job_id == 1
    assert jobs_api.requests("list") == []


def test_a_job_deployed_again_under_a_new_id_is_found_again_by_name(jobs_api: LocalJobsServer) -> None:
    # A warm function found the job by name; `bundle destroy` and `deploy` gave it a new id. The next
    # file's run-now is told job 1 does not exist: the name is looked up once more, and the run starts.
    jobs = trigger(jobs_api)
    jobs.trigger_run(PARAMETERS, "fg1-a")
    new_id = jobs_api.redeploy(1)

    run = jobs.trigger_run(PARAMETERS, "fg1-b")

    assert (run.job_id, jobs_api.run(run.run_id)["job_id"]) == (new_id, new_id)
    assert [r.body["job_id"] for r in jobs_api.requests("run-now")] == [1, 1, new_id]
    assert len(jobs_api.requests("list")) == 2
    # Gone for good (destroyed, not deployed again): the error says so, and the event is still retried.
    jobs_api.jobs.pop(new_id)
    with pytest.raises(SettingsError, match="no Databricks job named 'filegate-ingest'"):
        jobs.trigger_run(PARAMETERS, "fg1-c")


def test_a_job_id_setting_naming_a_deleted_job_names_the_setting(jobs_api: LocalJobsServer) -> None:
    jobs_api.redeploy(1)

    with pytest.raises(TransientError, match=r"run-now for job 1 failed: FILEGATE_JOB_ID=1: no such job"):
        trigger(jobs_api, Settings(job_id=1)).trigger_run(PARAMETERS, "fg1-a")

    assert jobs_api.requests("list") == []


def test_a_parameter_the_job_lacks_is_named_as_such_not_as_a_missing_job(jobs_api: LocalJobsServer) -> None:
    # Both are 400 INVALID_PARAMETER_VALUE: FILEGATE_BATCH_JOB_ID set to the ingest job's id, say.
    jobs = trigger(jobs_api)
    jobs.trigger_run(PARAMETERS, "fg1-a")

    with pytest.raises(TransientError, match=r"run-now for job 1 failed: Job parameters \['pipeline'\] are not"):
        jobs.trigger_run({**PARAMETERS, "pipeline": "ecommerce"}, "fg1-b")

    assert len(jobs_api.requests("list")) == 1  # not looked up again: the job is there


def test_unknown_job_name_names_the_fix(jobs_api: LocalJobsServer) -> None:
    with pytest.raises(SettingsError, match=r"no Databricks job named 'missing'.*databricks bundle deploy"):
        trigger(jobs_api, Settings(job_name="missing")).trigger_run(PARAMETERS, "fg1-a")


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_is_retried_without_a_second_run(jobs_api: LocalJobsServer, status: int) -> None:
    jobs_api.inject(Fault(status=status, retry_after=1), times=2)

    run = trigger(jobs_api, Settings(job_id=1)).trigger_run(PARAMETERS, "fg1-a")

    assert len(jobs_api.requests("run-now")) == 3
    assert [r["run_id"] for r in jobs_api.runs()] == [run.run_id]


def test_an_answer_lost_after_the_run_started_does_not_start_a_second_run(jobs_api: LocalJobsServer) -> None:
    jobs_api.inject(Fault(status=503, after_request=True, retry_after=1))

    run = trigger(jobs_api, Settings(job_id=1)).trigger_run(PARAMETERS, "fg1-a")

    assert [r["run_id"] for r in jobs_api.runs()] == [run.run_id]


def test_failure_after_the_sdk_retries_is_transient(jobs_api: LocalJobsServer) -> None:
    jobs_api.inject(Fault(status=503, retry_after=1), times=100)

    with pytest.raises(TransientError, match="run-now for job 1 failed"):
        trigger(jobs_api, Settings(job_id=1), retry_timeout=3).trigger_run(PARAMETERS, "fg1-a")

    assert jobs_api.runs() == []


@pytest.mark.parametrize(("status", "code"), [(429, "RESOURCE_EXHAUSTED"), (503, "TEMPORARILY_UNAVAILABLE")])
def test_retries_that_ran_out_name_the_answer_they_kept_getting(
    jobs_api: LocalJobsServer, status: int, code: str
) -> None:
    # "Timed out after 0:00:20" alone read as a network fault: throttling, an outage and a slow host look alike.
    jobs_api.inject(Fault(status=status, message="the answer it kept getting"), times=100)

    with pytest.raises(TransientError) as failed:
        trigger(jobs_api, Settings(job_id=1), retry_timeout=2).trigger_run(PARAMETERS, "fg1-a")

    assert f"its last answer: {code}: the answer it kept getting" in str(failed.value)


def test_the_job_check_whose_retries_ran_out_names_the_answer_too(jobs_api: LocalJobsServer) -> None:
    # doctor's, status' and the listings' reads of the Jobs API said "Timed out after ..." alone, as run-now did.
    jobs_api.inject(Fault(endpoint="*", status=429, message="too many requests"), times=100)

    with pytest.raises(TransientError) as failed:
        trigger(jobs_api, Settings(job_id=1), retry_timeout=2).check_job()

    assert "its last answer: RESOURCE_EXHAUSTED: too many requests" in str(failed.value)


def test_a_server_error_is_transient(jobs_api: LocalJobsServer) -> None:
    jobs_api.inject(Fault(status=500))

    with pytest.raises(TransientError):
        trigger(jobs_api, Settings(job_id=1)).trigger_run(PARAMETERS, "fg1-a")


def test_a_host_without_the_discovery_endpoint_still_gets_one_run(tmp_path: Path) -> None:
    # SDK 0.155 first asks /.well-known/databricks-config; hosts without it answer 404, and the SDK
    # must fall back to the explicit settings rather than fail the event.
    with local_jobs_api(tmp_path / "jobs", host_metadata=False) as server:
        jobs = trigger(server)

        first = jobs.trigger_run(PARAMETERS, "fg1-no-metadata")
        again = jobs.trigger_run(PARAMETERS, "fg1-no-metadata")

        with pytest.raises(urllib.error.HTTPError) as probe:
            urllib.request.urlopen(f"{server.url}/.well-known/databricks-config", timeout=5)
        assert probe.value.code == 404
        assert first == again
        assert len(server.runs()) == 1


def test_the_batch_job_is_found_by_its_own_name_and_named_in_its_own_error(tmp_path: Path) -> None:
    from filegate.batches import batch_job_trigger
    from local_world.jobs_api.recording import BATCH_BUNDLE, FIXTURE_BUNDLE

    with local_jobs_api(tmp_path / "jobs", bundle=[FIXTURE_BUNDLE, BATCH_BUNDLE]) as server:
        run = batch_job_trigger(Settings(), client_of=trigger(server)).trigger_run({"pipeline": "ecommerce"}, "fg1-b")
        assert run.job_id == 2
    with local_jobs_api(tmp_path / "ingest-only") as server, pytest.raises(SettingsError) as raised:
        batch_job_trigger(Settings(), client_of=trigger(server)).trigger_run({}, "fg1-b")
    assert "no Databricks job named 'filegate-batch'" in str(raised.value)
    assert "FILEGATE_BATCH_JOB_ID" in str(raised.value)


def test_a_host_that_takes_connections_but_never_answers_is_named_before_the_sdk_starts() -> None:
    # A listening socket nobody serves: the kernel completes the connection, no answer ever comes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        jobs = DatabricksJobs(Settings(databricks_host=url, job_id=1))

        with pytest.raises(
            TransientError, match=re.escape(f"cannot reach the Jobs API at {url} (no answer within 3 s)")
        ):
            jobs.check_job()

    assert jobs._workspace._client is None  # the SDK was never asked to build a client for it


def test_a_host_is_probed_as_the_sdk_reads_it_and_one_that_is_not_http_is_a_setting_to_fix() -> None:
    port = free_port()
    # Without a scheme the SDK takes https://, and so does the probe (nothing listens there).
    with pytest.raises(TransientError, match=re.escape(f"at https://127.0.0.1:{port} (connection refused)")):
        probe_host(f"127.0.0.1:{port}")
    with pytest.raises(SettingsError, match="DATABRICKS_HOST must be a URL like https://"):
        probe_host("ftp://adb-123.azuredatabricks.net")
    # The browser's address of an Azure workspace: the SDK kept `?o=...` in every request (an outage, 75, for good).
    for address in ("https://adb-123.7.azuredatabricks.net/?o=123", "https://adb-123.7.azuredatabricks.net#job/1"):
        with pytest.raises(SettingsError, match=r"the workspace URL alone, like https://.*without the browser's \?o="):
            probe_host(address)


def test_a_plain_http_host_written_without_its_scheme_is_a_setting_to_fix(jobs_api: LocalJobsServer) -> None:
    # Read as https, the local Jobs API's answer failed the TLS handshake: an outage (75), retried for good.
    bare = jobs_api.url.removeprefix("http://")
    with pytest.raises(SettingsError, match=re.escape(f"the Jobs API at https://{bare} answers in plain HTTP")):
        probe_host(bare)


def test_behind_a_proxy_the_probe_leaves_the_path_to_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    # The SDK goes through HTTP_PROXY (or ALL_PROXY); a direct request would fail where the proxy's way may work.
    monkeypatch.setenv("ALL_PROXY", "http://proxy.invalid:3128")
    probe_host(url)
    monkeypatch.delenv("ALL_PROXY")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    probe_host(url)
    # A host the proxy is bypassed for is asked directly.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with pytest.raises(TransientError, match="connection refused"):
        probe_host(url)


def databricks_env(monkeypatch: pytest.MonkeyPatch, host: str) -> Settings:
    """The function's settings for `host`, read by the SDK from the environment as in the function."""
    monkeypatch.setenv("DATABRICKS_HOST", host)
    monkeypatch.setenv("DATABRICKS_TOKEN", "local-test-token")
    return Settings(databricks_host=host, job_id=1)


def test_a_host_given_with_a_path_is_a_setting_to_fix_not_a_missing_job(
    jobs_api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Jobs API answers 404 ENDPOINT_NOT_FOUND under /api/api/2.2/...: not job 1's absence, nor an outage.
    jobs = DatabricksJobs(databricks_env(monkeypatch, f"{jobs_api.url}/api"))

    with pytest.raises(SettingsError, match="does not serve the Jobs API: set DATABRICKS_HOST to the workspace URL"):
        jobs.check_job()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b"<?xml version='1.0'?><Error><Code>InvalidQueryParameterValue</Code></Error>"),
        # A web page answering 200 (a workspace's sign-in page): requests' JSONDecodeError is an OSError, read
        # as the Jobs API unreachable (75) for good.
        (200, b"<!doctype html><html><body>Sign in</body></html>"),
    ],
)
def test_a_host_that_is_another_service_is_a_setting_to_fix(
    monkeypatch: pytest.MonkeyPatch, status: int, body: bytes
) -> None:
    with not_databricks(status, body) as url, pytest.raises(SettingsError, match="does not serve the Jobs API"):
        DatabricksJobs(databricks_env(monkeypatch, url)).check_job()


@contextmanager
def not_databricks(status: int, body: bytes) -> Iterator[str]:
    """The URL of a local server that answers every GET with `status` and `body` (XML or a web page)."""

    class NotDatabricks(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/xml" if body.startswith(b"<?xml") else "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            """Quiet: http.server would print every request to stderr."""

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotDatabricks) as server:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


def test_azure_identity_without_an_identity_names_the_setting(
    jobs_api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No identity here: no AZURE_* credentials, no managed identity endpoint, no signed-in Azure CLI.
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", jobs_api.url)
    settings = Settings(databricks_host=jobs_api.url, databricks_auth="azure-identity", job_id=1)

    with pytest.raises(SettingsError, match="FILEGATE_DATABRICKS_AUTH=azure-identity, but no Azure identity"):
        DatabricksJobs(settings).check_job()


def test_azure_identity_where_it_is_not_installed_names_the_setting(
    jobs_api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The GCP function installs no azure-identity: each event ended in ModuleNotFoundError, retried for a day.
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    settings = Settings(databricks_host=jobs_api.url, databricks_auth="azure-identity", job_id=1)

    with pytest.raises(SettingsError, match=r"azure-identity is not installed here .* unset it"):
        DatabricksJobs(settings).check_job()


def test_databricks_without_credentials_names_both_pairs_without_the_sdks_config(
    jobs_api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", jobs_api.url)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.databrickscfg either

    with pytest.raises(SettingsError) as raised:
        create_workspace_client(Settings())

    message = str(raised.value)
    assert message.startswith("Databricks is not configured: set DATABRICKS_HOST (the workspace URL) and")
    # The SDK's own sentence, without the config it appends (the host and settings the message names).
    assert message.endswith("to configure credentials for your preferred authentication method.)")
    assert "Config: " not in message
    assert "Env: " not in message


@pytest.mark.parametrize(
    ("variables", "found"),
    [
        # A token left from the CLI beside the function's service principal.
        (
            {"DATABRICKS_CLIENT_ID": "filegate-function", "DATABRICKS_CLIENT_SECRET": "secret"},
            "(oauth: DATABRICKS_CLIENT_ID, DATABRICKS_CLIENT_SECRET; pat: DATABRICKS_TOKEN)",
        ),
        # The azurerm provider's variables in the shell that deploys infra/: no client id pair was ever set.
        ({"ARM_TENANT_ID": "t", "ARM_CLIENT_ID": "c"}, "(azure: ARM_CLIENT_ID, ARM_TENANT_ID; pat: DATABRICKS_TOKEN)"),
    ],
)
def test_databricks_with_two_ways_to_sign_in_names_the_settings_of_each(
    jobs_api: LocalJobsServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variables: dict[str, str],
    found: str,
) -> None:
    # It said "Databricks is not configured: set ... DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and ...", both set.
    monkeypatch.setenv("DATABRICKS_HOST", jobs_api.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", "local-test-token")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path))

    with pytest.raises(SettingsError) as raised:
        create_workspace_client(Settings())
    with pytest.raises(SettingsError) as managed:
        create_workspace_client(Settings(databricks_auth="azure-identity"))

    assert str(raised.value) == f"Databricks has more than one way to sign in {found}: unset all but the one to use"
    assert str(managed.value).endswith(
        f"{found}: FILEGATE_DATABRICKS_AUTH=azure-identity signs in with the managed identity: unset them all"
    )


@pytest.mark.parametrize(
    ("legacy", "termination", "never"),
    [
        # As the local Jobs API answers for a job at its max_concurrent_runs without a queue.
        (
            {"life_cycle_state": "SKIPPED", "result_state": "MAXIMUM_CONCURRENT_RUNS_REACHED"},
            "MAX_CONCURRENT_RUNS_EXCEEDED",
            "MAXIMUM_CONCURRENT_RUNS_REACHED",
        ),
        # A full queue and the workspace's run limit are termination codes only, whatever the legacy result says.
        (
            {"life_cycle_state": "SKIPPED", "result_state": "CANCELED"},
            "MAX_JOB_QUEUE_SIZE_EXCEEDED",
            "MAX_JOB_QUEUE_SIZE_EXCEEDED",
        ),
        (
            {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED"},
            "WORKSPACE_RUN_LIMIT_EXCEEDED",
            "WORKSPACE_RUN_LIMIT_EXCEEDED",
        ),
        ({"life_cycle_state": "SKIPPED", "result_state": "FAILED"}, "SKIPPED", "SKIPPED"),
        ({"life_cycle_state": "SKIPPED"}, None, "SKIPPED"),
        # Runs that ran: a repair, not a replacement, finishes them.
        ({"life_cycle_state": "TERMINATED", "result_state": "FAILED"}, "RUN_EXECUTION_ERROR", None),
        ({"life_cycle_state": "TERMINATED", "result_state": "CANCELED"}, "USER_CANCELED", None),
        ({"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}, "SUCCESS", None),
        ({"life_cycle_state": "QUEUED"}, None, None),
    ],
)
def test_a_run_that_never_ran_is_told_by_any_field_that_says_so(
    legacy: dict[str, str], termination: str | None, never: str | None
) -> None:
    from databricks.sdk.service.jobs import Run

    status: dict[str, object] = {"state": "TERMINATED" if termination else legacy["life_cycle_state"]}
    if termination:
        status["termination_details"] = {"code": termination, "type": "CLIENT_ERROR", "message": ""}
    run = Run.from_dict({"run_id": 7, "state": legacy, "status": status})

    assert never_ran(run) == never


@pytest.mark.parametrize(
    ("auth_type", "said"),
    [
        # Under FILEGATE_DATABRICKS_AUTH=azure-identity it said to check a DATABRICKS_TOKEN nobody had set.
        ("azure-identity", "the managed identity (FILEGATE_DATABRICKS_AUTH=azure-identity) is not a user of this"),
        ("oauth-m2m", "check DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET for this workspace"),
        ("pat", "check DATABRICKS_TOKEN for this workspace"),
        # `az login`'s account signed in, not the ARM_* service principal set beside it for Terraform.
        ("azure-cli", "check the identity the SDK's azure-cli sign-in used for this workspace"),
    ],
)
def test_refused_credentials_name_the_sign_in_the_client_used(
    auth_type: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from databricks.sdk.errors import PermissionDenied

    for name in ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "ARM_CLIENT_ID"):
        monkeypatch.setenv(name, "set")
    refused = PermissionDenied("Invalid access token.")

    named = named_error(refused, "https://adb-1.azuredatabricks.net", 7, auth_type=auth_type)

    assert isinstance(named, SettingsError)
    assert f"https://adb-1.azuredatabricks.net refused the credentials (403): {said}" in str(named)


@pytest.mark.parametrize("slash", ["", "/"])
def test_a_host_that_answered_is_not_probed_again_for_the_client(
    jobs_api: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, slash: str
) -> None:
    # DATABRICKS_HOST was probed, then the client's host, the same URL: a second request (with TLS, a handshake)
    # before the first event's run-now. Written with a trailing slash, which the SDK drops, it was asked twice still.
    jobs = DatabricksJobs(databricks_env(monkeypatch, jobs_api.url + slash))

    jobs.check_job()

    assert [r.method for r in jobs_api.requests("/")] == ["HEAD"]
