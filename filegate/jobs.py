"""Job trigger: one Databricks run per file, however often its event arrives."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from filegate.errors import FilegateError, RefusedUntilFixed, SettingsError, TransientError
from filegate.events import Upload
from filegate.settings import DEFAULT_JOB_NAME, Settings

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.credentials_provider import CredentialsProvider
    from databricks.sdk.errors.base import DatabricksError
    from databricks.sdk.service.jobs import BaseRun, Run, RunTask

log = logging.getLogger(__name__)

# Entra ID application id of the Azure Databricks resource: the audience of tokens for it.
AZURE_DATABRICKS_RESOURCE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
TOKEN_PREFIX = "fg1-"  # noqa: S105 - a prefix for idempotency tokens, not a secret
# Event Grid waits 30 s for the whole handler. The SDK would retry 429/503 for 300 s by default;
# stopping earlier lets Event Grid's own retry schedule take over instead of timing out mid-call. This
# bounds each call, not the handler: a throttled lookup, run-now and get-run can together pass 30 s, and
# Event Grid then redelivers while the first delivery still runs; both send one token, so one run.
RETRY_TIMEOUT_SECONDS = 20
HTTP_TIMEOUT_SECONDS = 10
# The reachability probe: a refused or silent Jobs API is named within seconds, not after the SDK's retries.
PROBE_TIMEOUT_SECONDS = 3.0
# What DATABRICKS_HOST looks like: the workspace URL alone.
_EXAMPLE_HOST = "https://adb-1234567890123456.7.azuredatabricks.net"
# What a 403 of the Jobs API asks for, by who meets it: the function starts runs, `filegate status` reads them.
RUN_GRANT = "grant the principal of these credentials (the function's, or yours) CAN_MANAGE_RUN on the job"
VIEW_GRANT = "grant the principal of these credentials CAN_VIEW on the job (enough to list its runs)"
# The job parameters Filegate passes; a job without them cannot load the file.
JOB_PARAMETERS = ("source_path", "dataset", "batch_id")
# Jobs API run states (`status.state`) of a run that has not ended yet.
ACTIVE_STATES = frozenset({"BLOCKED", "PENDING", "QUEUED", "RUNNING", "TERMINATING", "WAITING"})
# How a run that Databricks skipped reads (`never_ran`: its legacy result or life cycle, or its termination
# code): the job at its max_concurrent_runs without a queue, its queue full, the workspace's run limit. None
# of it ran, so there is nothing to repair, and the file's token still names that run.
NEVER_RAN_STATES = frozenset(
    {
        "SKIPPED",
        "MAXIMUM_CONCURRENT_RUNS_REACHED",
        "MAX_CONCURRENT_RUNS_EXCEEDED",
        "MAX_JOB_QUEUE_SIZE_EXCEEDED",
        "WORKSPACE_RUN_LIMIT_EXCEEDED",
    }
)


def idempotency_token(upload: Upload) -> str:
    """Derived from the file's identity (store, account, container, path, version): <= 64 chars.

    Databricks keeps a token reserved even after its run is gone, so the same file can never
    start a second run, whether the duplicate comes from Event Grid or from the SDK's retries.
    """
    return TOKEN_PREFIX + hashlib.sha256(upload.identity.encode()).hexdigest()[:56]


# Termination codes (`status.termination_details.code`) that name a result of their own. Any other is an error
# of the run (RUN_EXECUTION_ERROR, DRIVER_ERROR, STORAGE_ACCESS_ERROR, ...): in the legacy result's words, FAILED.
_RESULT_CODES = NEVER_RAN_STATES | {"SUCCESS", "SUCCESS_WITH_FAILURES", "CANCELED", "INTERNAL_ERROR", "DISABLED"}


def run_state(run: BaseRun | Run | RunTask) -> str:
    """`RUNNING`, `QUEUED`, ... while active; the result (`SUCCESS`, `FAILED`, ...) once terminated.

    The legacy result where the run has one; else the termination code in its words (the SDK marks the
    legacy `state` deprecated, and a run answered without it must read the same): a cancel, by a user or
    by the platform when the run timed out, is CANCELED, an error FAILED.
    """
    status, legacy = run.status, run.state
    state = _name(status.state) if status is not None and status.state is not None else ""
    if not state and legacy is not None:
        state = _name(legacy.life_cycle_state)
    if state in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR", ""):
        if legacy is not None and legacy.result_state is not None:
            return _name(legacy.result_state)
        details = status.termination_details if status is not None else None
        if details is not None and details.code is not None:
            code = _name(details.code)
            return "CANCELED" if code == "USER_CANCELED" else code if code in _RESULT_CODES else "FAILED"
    return state or "UNKNOWN"


def never_ran(run: BaseRun | Run | RunTask) -> str | None:
    """Why Databricks never ran the job run (one of NEVER_RAN_STATES), or None when it did or may still.

    Each field is asked in turn: the legacy result has no value for a full queue or the workspace's run
    limit (those are termination codes only), and a skipped run's legacy result may read otherwise.
    """
    status, legacy = run.status, run.state
    details = status.termination_details if status is not None else None
    signals = (
        _name(legacy.result_state) if legacy is not None else "",
        _name(details.code) if details is not None else "",
        _name(legacy.life_cycle_state) if legacy is not None else "",
    )
    return next((signal for signal in signals if signal in NEVER_RAN_STATES), None)


def _name(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def replacement_token(token: str, skipped_run_id: int) -> str:
    """The token of the run that replaces a skipped run of the file whose token is `token`.

    Derived from both, so re-drives of one skipped run at the same time start one replacement, and a
    replacement skipped in turn gets its own: each skipped run is replaced once.
    """
    return TOKEN_PREFIX + hashlib.sha256(f"{token}/replaces/{skipped_run_id}".encode()).hexdigest()[:56]


def batch_id(dataset: str, business_date: date, token: str) -> str:
    """Stable per file, readable per day: the Spark job replaces stage rows by this id."""
    return f"{dataset}-{business_date:%Y%m%d}-{token.removeprefix(TOKEN_PREFIX)[:12]}"


def pipeline_batch_id(pipeline: str, business_date: date) -> str:
    """One per pipeline and business day, whatever the revision: the batch job replaces the rows its tables hold
    of a batch (stage, rejects, results, SCD2 observations, derived tables) by this id, so a later revision's
    run takes those back instead of adding to them. SCD1 targets are merged, latest wins, as files are.

    Pipeline names have no `-`, so it never equals a file's `batch_id` (which ends in the token's digits).
    """
    return f"{pipeline}-{business_date:%Y%m%d}"


@dataclass(frozen=True)
class TriggeredRun:
    """A run that exists for a file."""

    job_id: int
    run_id: int
    run_page_url: str
    # Why Databricks skipped the run (`never_ran`), as runs/get read it right after run-now; None when it
    # did not, or when runs/get did not answer.
    skipped: str | None = None


class RunTrigger(Protocol):
    """Starts (or finds) the run for a file."""

    def trigger_run(self, parameters: Mapping[str, str], token: str) -> TriggeredRun: ...


class _AzureIdentityCredentials:
    """Entra tokens for Azure Databricks from azure-identity (managed identity in Azure).

    The Databricks SDK has no managed-identity support of its own (databricks-sdk-py#164).
    """

    def auth_type(self) -> str:
        return "azure-identity"

    def __call__(self, cfg: object) -> CredentialsProvider:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError as exc:  # the GCP function does not install it: every event failed on it
            raise SettingsError(
                "FILEGATE_DATABRICKS_AUTH=azure-identity takes a managed identity in Azure, and azure-identity "
                "is not installed here (the GCP function has none): unset it and give DATABRICKS_TOKEN, or "
                "DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET"
            ) from exc

        credential = DefaultAzureCredential()

        def headers() -> dict[str, str]:
            from azure.core.exceptions import ClientAuthenticationError

            # azure-identity caches the token and refreshes it before it expires.
            try:
                token = credential.get_token(f"{AZURE_DATABRICKS_RESOURCE}/.default")
            except ClientAuthenticationError as exc:
                raise SettingsError(
                    "FILEGATE_DATABRICKS_AUTH=azure-identity, but no Azure identity gave a token for Azure "
                    "Databricks: give the function app a managed identity (`az login` where you run it "
                    "yourself), or unset FILEGATE_DATABRICKS_AUTH to use DATABRICKS_TOKEN "
                    f"({_first_line(exc)})"
                ) from exc
            return {"Authorization": f"Bearer {token.token}"}

        return headers


def create_workspace_client(settings: Settings, **config: object) -> WorkspaceClient:
    """A WorkspaceClient with the SDK's own auth chain, or managed identity when asked for."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    config.setdefault("retry_timeout_seconds", RETRY_TIMEOUT_SECONDS)
    config.setdefault("http_timeout_seconds", HTTP_TIMEOUT_SECONDS)
    if settings.databricks_host:
        # As Filegate read it, without the whitespace around it: from the environment the SDK keeps a trailing
        # space, and then said "Databricks is not configured: set DATABRICKS_HOST", which was set.
        config.setdefault("host", settings.databricks_host)
    if settings.databricks_auth == "azure-identity":
        config["credentials_strategy"] = _AzureIdentityCredentials()
    try:
        return WorkspaceClient(config=Config(**config))  # type: ignore[arg-type]
    except ValueError as exc:
        methods = _SIGN_IN_METHODS.search(str(exc))
        if methods:
            # A token left from the CLI beside the function's service principal, or the azurerm provider's ARM_*
            # beside a token: it was told "Databricks is not configured: set ..." the very settings it had.
            found = "; ".join(_sign_in_settings(method) for method in methods.group(1).split(" and "))
            keep = (
                "FILEGATE_DATABRICKS_AUTH=azure-identity signs in with the managed identity: unset them all"
                if settings.databricks_auth == "azure-identity"
                else "unset all but the one to use"
            )
            raise SettingsError(f"Databricks has more than one way to sign in ({found}): {keep}") from exc
        # The SDK's own message lists every auth method it tried; the fix is one of two settings pairs.
        raise SettingsError(
            "Databricks is not configured: set DATABRICKS_HOST (the workspace URL) and DATABRICKS_TOKEN, "
            f"or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET ({_first_line(exc)})"
        ) from exc


# The SDK's refusal of two sign-in methods at once names each by its kind: "pat and oauth", "azure and pat".
_SIGN_IN_METHODS = re.compile(r"more than one authorization method configured: ([\w-]+(?: and [\w-]+)*)")


def _sign_in_settings(method: str) -> str:
    """A sign-in method the SDK found, with the environment settings that made it (else its config file's)."""
    names = _method_settings(method)
    return f"{method}: {', '.join(names) if names else 'from ~/.databrickscfg'}"


def _method_settings(method: str) -> list[str]:
    """The environment settings that made the SDK's sign-in method, by its kind (`pat`: DATABRICKS_TOKEN)."""
    from databricks.sdk.config import Config

    return [a.env for a in Config.attributes() if a.auth == method and a.env and os.environ.get(a.env)]


# A client's auth type whose credentials are those settings alone, by the SDK's kind of them. Not `azure-cli` or
# `azure-msi`: the ARM_* settings beside them are not what signed in.
_SETTINGS_KIND = {"pat": "pat", "basic": "basic", "oauth-m2m": "oauth", "azure-client-secret": "azure"}


def _name_setting(id_setting: str) -> str:
    """FILEGATE_JOB_NAME for FILEGATE_JOB_ID: the setting that finds the same job by name."""
    return id_setting.removesuffix("_ID") + "_NAME"


_SDK_DEBUG_INFO = re.compile(r"(?<=\.) (?:Config|Env): ")


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The error's first line, cut at a word (the SDK's list of every auth method it tried runs long)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    # The SDK ends a 401's or 403's message with its config (". Config: host=..., auth_type=pat. Env: ..."):
    # 200 characters on the host and sign-in the message names already.
    line = _SDK_DEBUG_INFO.split(text.splitlines()[0], maxsplit=1)[0]
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " ..."


def retries_spent(exc: BaseException) -> str:
    """An error the SDK raised once its retries ran out, with the answer it kept retrying: its TimeoutError says
    only how long it tried, and a 429 (throttled: fewer concurrent callers) asks for other work than a 503."""
    last = exc.__cause__
    if not isinstance(exc, TimeoutError) or last is None:
        return _first_line(exc)
    return f"{_first_line(exc)}; its last answer: {_answer(last)}"


def unreached(host: str, exc: BaseException, to: str = "") -> TransientError:
    """A Jobs API call the SDK gave up on (`to`: what it was for, ` to resolve ...`): what the API kept answering,
    when it answered (a 429 or a 503 is an answer: the host is there, busy), else that it could not be reached."""
    if last_answer(exc) is None:
        return TransientError(f"cannot reach the Jobs API at {host}{to}: {retries_spent(exc)}")
    return TransientError(
        f"the Jobs API at {host} kept failing{to} until the SDK's retries ran out: {retries_spent(exc)}"
    )


def last_answer(exc: BaseException) -> str | None:
    """What the Jobs API last answered, as `retries_spent` names it, when a failure began with an answer (a 429, a
    503 the SDK retried until its time ran out); None when it never answered (refused, silent)."""
    from databricks.sdk.errors.base import DatabricksError

    seen: BaseException | None = exc
    for _ in range(5):  # a TransientError from a TimeoutError from the answer: a short chain
        if seen is None or isinstance(seen, DatabricksError):
            break
        seen = seen.__cause__
    return _answer(seen) if isinstance(seen, DatabricksError) else None


def _answer(exc: BaseException) -> str:
    """An answer of the Jobs API: its error code and message, and for the two the SDK retries, what to do."""
    from databricks.sdk.errors import TemporarilyUnavailable, TooManyRequests

    code = getattr(exc, "error_code", None)
    said = f"{f'{code}: ' if code else ''}{_first_line(exc)}"
    if isinstance(exc, TooManyRequests):
        return (
            f"{said} (429, throttled: too many calls to this workspace's Jobs API at once; try again later, "
            "with fewer callers)"
        )
    if isinstance(exc, TemporarilyUnavailable):
        return f"{said} (503, unavailable: this workspace's Jobs API is down for now; try again later)"
    return said


def probe_host(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
    """Ask the Jobs API's host for any HTTP answer within `timeout`; TransientError naming the URL and the cause.

    An HTTP request, not only a connection: a host that accepts connections and then says nothing (a
    hung proxy, a stopped process behind a listening port) would otherwise cost the SDK's whole retry
    window. Whatever the status, an answer is enough; the request carries no credentials.
    """
    import http.client
    import ssl
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    url = _as_probed(url)
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("http", "https"):
        raise SettingsError(f"DATABRICKS_HOST must be a URL like https://adb-123.azuredatabricks.net, got {url!r}")
    if parts.query or parts.fragment:
        # The browser's address of an Azure workspace ends in `?o=<workspace id>#...`: the SDK keeps it in
        # every request's URL, and the workspace's HTML answers read as an outage (75) for good.
        raise SettingsError(
            f"DATABRICKS_HOST must be the workspace URL alone, like {_EXAMPLE_HOST}, without the "
            f"browser's ?o=... or #...: got {url!r}"
        )
    proxies = getproxies()
    if (proxies.get(parts.scheme) or proxies.get("all")) and not proxy_bypass(parts.hostname):
        return  # the SDK goes through the proxy (HTTPS_PROXY); a direct request would not say whether that works
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        # Only whether the host answers: the SDK's own calls verify its certificate.
        unverified = ssl._create_unverified_context()  # noqa: S323
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=unverified)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("HEAD", "/", headers={"User-Agent": "filegate-probe"})
        connection.getresponse().close()
    except ConnectionRefusedError as exc:
        raise TransientError(f"cannot reach the Jobs API at {url} (connection refused)") from exc
    except TimeoutError as exc:
        raise TransientError(f"cannot reach the Jobs API at {url} (no answer within {timeout:.0f} s)") from exc
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, ssl.SSLError) and exc.reason == "WRONG_VERSION_NUMBER":
            # The host answered in plain HTTP: `127.0.0.1:8765` (the local Jobs API) without http://, read as
            # https, was an outage (75) retried for good.
            raise SettingsError(
                f"the Jobs API at {url} answers in plain HTTP, not HTTPS: write DATABRICKS_HOST with http:// if "
                "that is meant (a local Jobs API), else check the port"
            ) from exc
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
        raise TransientError(f"cannot reach the Jobs API at {url} ({detail})") from exc
    finally:
        connection.close()


def _as_probed(url: str) -> str:
    """A host as `probe_host` asks it: with a scheme, without a trailing slash (the SDK's host has neither)."""
    return (url if "://" in url else f"https://{url}").rstrip("/")


class _Workspace:
    """One WorkspaceClient, built on first use, and its host once it answered: both jobs' triggers share it."""

    def __init__(self, settings: Settings, client: WorkspaceClient | None) -> None:
        self._settings = settings
        self._client = client
        self._lock = threading.Lock()
        self._answered: str | None = None

    @property
    def client(self) -> WorkspaceClient:
        with self._lock:
            if self._client is None:
                self._client = create_workspace_client(self._settings)
            return self._client

    def reachable(self) -> str:
        """The Jobs API's host, once it answered (`probe_host`): TransientError when it does not, before the
        SDK spends its whole retry window on it (its client, built first, may already ask the host)."""
        if self._answered is None:
            given = self._settings.databricks_host
            if given:
                probe_host(given)
            host = str(self.client.config.host or "")
            if _as_probed(host) != _as_probed(given):  # a profile's host: not the one that answered
                probe_host(host)
            self._answered = host  # once per process: each answer costs a request (with TLS, a handshake)
        return self._answered


class DatabricksJobs:
    """`run-now` through databricks-sdk; the job is resolved by name once per process, and again when it is gone."""

    def __init__(
        self,
        settings: Settings,
        client: WorkspaceClient | None = None,
        *,
        job_id: int | None = None,
        job_name: str | None = None,
        setting: str = "FILEGATE_JOB_ID",
        parameters: tuple[str, ...] = JOB_PARAMETERS,
        bundle_name: str = DEFAULT_JOB_NAME,
        grant: str = RUN_GRANT,
        client_of: DatabricksJobs | None = None,
    ):
        """The ingest job by default; `job_name` picks another, with its id's `setting`, `parameters`, bundle name.
        `grant` is what a 403 asks for: the function needs to start runs, `filegate status` only to see them.
        `client_of`: the trigger whose client (and answered probe) this one uses, instead of one of its own."""
        # One client for both jobs: a second signed in (and asked the host for its metadata) again, and probed
        # the host again, so a slow host cost doctor and the function's first batch twice the wait.
        self._workspace: _Workspace = client_of._workspace if client_of is not None else _Workspace(settings, client)
        self._job_id = settings.job_id if job_name is None else job_id
        # An id set in the settings is used as given; one found by name is looked up again when it is gone.
        self._by_name = self._job_id is None
        self._job_name = settings.job_name if job_name is None else job_name
        self._setting = setting
        self._parameters = parameters
        self._bundle_name = bundle_name
        self._grant = grant

    @property
    def client(self) -> WorkspaceClient:
        return self._workspace.client

    @property
    def host(self) -> str:
        return str(self.client.config.host or "")

    @property
    def auth_type(self) -> str | None:
        """How the client signed in (`pat`, `oauth-m2m`, `azure-identity`, ...), to name what a refusal is about."""
        return self.client.config.auth_type

    def reachable(self) -> str:
        """The Jobs API's host once it answered; TransientError when it does not (`_Workspace.reachable`)."""
        return self._workspace.reachable()

    def check_job(self) -> str:
        """Reachable, credentials accepted, the job exists and takes this trigger's parameters; what was found.

        Raises SettingsError naming the setting to fix, or TransientError when the Jobs API is unreachable.
        """
        from databricks.sdk.errors.base import DatabricksError

        host = self.reachable()
        job_id = self.job_id()
        try:
            job = self.client.jobs.get(job_id)
        except DatabricksError as exc:
            raise named_error(exc, host, job_id, self._setting, self._bundle_name, self._grant, self.auth_type) from exc
        except json.JSONDecodeError as exc:  # before OSError: requests' JSONDecodeError is both
            raise not_json(host, exc) from exc
        except (TimeoutError, OSError) as exc:
            raise unreached(host, exc) from exc
        declared = {parameter.name for parameter in (job.settings.parameters if job.settings else None) or ()}
        missing = [name for name in self._parameters if name not in declared]
        name = job.settings.name if job.settings else ""
        if missing:
            raise SettingsError(
                f"job {job_id} ({name}) in {host} lacks the parameters {', '.join(missing)}: it is not the "
                f"{self._bundle_name} job; deploy infra/databricks (databricks bundle deploy) or fix {self._setting}"
            )
        return f"job {job_id} ({name}) in {host} takes {', '.join(self._parameters)}"

    def job_id(self) -> int:
        if self._job_id is not None:
            return self._job_id
        from databricks.sdk.errors.base import DatabricksError

        name = self._job_name
        try:
            found = [job.job_id for job in self.client.jobs.list(name=name) if job.job_id is not None]
        except DatabricksError as exc:
            raise named_error(
                exc, self.host, None, self._setting, self._bundle_name, self._grant, self.auth_type
            ) from exc
        except json.JSONDecodeError as exc:  # before OSError: requests' JSONDecodeError is both
            raise not_json(self.host, exc) from exc
        except (TimeoutError, OSError) as exc:
            raise unreached(self.host, exc, f" to resolve {name!r}") from exc
        if not found:
            # A configuration error, and the delivery still fails (so it is retried): the bundle may be
            # deployed after the function.
            raise SettingsError(
                f"no Databricks job named {name!r} in {self.host}: deploy infra/databricks (databricks bundle "
                f"deploy), or set {_name_setting(self._setting)} or {self._setting} to the job's name or id"
            )
        if len(found) > 1:
            # Which ones: the fix is one of these ids, which the operator otherwise looks up in the workspace.
            raise SettingsError(
                f"{len(found)} jobs are named {name!r} in {self.host} (ids {', '.join(map(str, sorted(found)))}): "
                f"set {self._setting} to the id of the one to run"
            )
        self._job_id = found[0]
        return found[0]

    def trigger_run(self, parameters: Mapping[str, str], token: str) -> TriggeredRun:
        from databricks.sdk.errors.base import DatabricksError

        job_id = self.job_id()
        for retried in (False, True):
            try:
                waiter = self.client.jobs.run_now(
                    job_id=job_id, job_parameters=dict(parameters), idempotency_token=token
                )
                break
            except (DatabricksError, TimeoutError, OSError) as exc:
                moved = None if retried else self._moved(job_id, exc)
                if moved is None:
                    raise self._run_failed(job_id, exc) from exc
                log.warning("job %s is gone; %r is job %s now", job_id, self._job_name, moved)
                job_id = moved
        run_id = int(waiter.run_id)
        try:
            found = self.client.jobs.get_run(run_id)
        except (DatabricksError, TimeoutError, OSError) as exc:
            # The run exists; a missing link is not worth a redelivery.
            log.warning("run %s started but runs/get failed: %s", run_id, exc)
            return TriggeredRun(job_id, run_id, "")
        # Databricks decides a skip (no queue at max_concurrent_runs, a full queue, the workspace's run limit)
        # as it creates the run, so it shows here; one that reads otherwise now is left to `filegate reconcile`.
        return TriggeredRun(job_id, run_id, found.run_page_url or "", never_ran(found))

    def _moved(self, job_id: int, exc: Exception) -> int | None:
        """The job's new id when run-now says a job found by name is gone and the name now names another.

        `bundle destroy` and `deploy` give the job a new id, which every warm instance would otherwise miss
        until it is recycled. Raises SettingsError (the event is retried) when no job has the name now.
        """
        from databricks.sdk.errors.base import DatabricksError

        if not (self._by_name and isinstance(exc, DatabricksError) and not_found(exc)):
            return None
        self._job_id = None
        again = self.job_id()
        return None if again == job_id else again

    def _run_failed(self, job_id: int, exc: Exception) -> TransientError:
        """A failed run-now, handed back for redelivery whatever it was, with the setting to fix when there is one.

        A 4xx too (job deleted, permission missing): the file is already archived and still needs its
        run, so the event must stay alive (Event Grid's retries, then its dead-letter and `filegate
        handle`) rather than be acknowledged and forgotten. The token makes every retry harmless.
        """
        from databricks.sdk.errors.base import DatabricksError

        if isinstance(exc, DatabricksError):
            # "No such job" names the id's setting only when the id came from it.
            given = None if self._by_name else job_id
            named = named_error(exc, self.host, given, self._setting, self._bundle_name, self._grant, self.auth_type)
            if isinstance(named, SettingsError):
                return RefusedUntilFixed(f"run-now for job {job_id} failed: {named}")
            return TransientError(f"run-now for job {job_id} failed: {_first_line(exc)}")
        return TransientError(f"run-now for job {job_id} failed after the SDK's retries: {retries_spent(exc)}")


def not_found(exc: DatabricksError) -> bool:
    """Whether the Jobs API says the job or run asked for does not exist (a 404, or a 400 saying so).

    INVALID_PARAMETER_VALUE alone is no answer: run-now gives it for undefined job parameters too. Nor is a
    host that is no workspace (a URL with a path: ENDPOINT_NOT_FOUND, a 404 too): it has no runs to lack.
    """
    from databricks.sdk.errors import NotFound

    if _not_a_workspace(exc):
        return False
    code = str(getattr(exc, "error_code", "") or "")
    # The SDK turns runs/get's 400s of either wording ("Run N does not exist.", "Run: N in job: J doesn't
    # exist") into ResourceDoesNotExist, a NotFound: asked first, the second no longer reads as found.
    if isinstance(exc, NotFound) or code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return code == "INVALID_PARAMETER_VALUE" and "does not exist" in str(exc)


def not_json(host: str, exc: Exception) -> SettingsError:
    """A host that answers, but not as a workspace's Jobs API (a web page, another service, a URL with a path)."""
    return SettingsError(
        f"{host} does not serve the Jobs API: set DATABRICKS_HOST to the workspace URL alone, like "
        f"{_EXAMPLE_HOST}, without a path ({_first_line(exc)})"
    )


def _not_a_workspace(exc: DatabricksError) -> bool:
    """Whether the host answered as something other than a workspace: no such API (a URL with a path), or a
    refusal that is not Databricks' JSON (another service). A gateway's 5xx page passes: it may."""
    from databricks.sdk.errors import BadRequest, NotFound

    if str(getattr(exc, "error_code", "") or "") == "ENDPOINT_NOT_FOUND":
        return True
    return isinstance(exc, (BadRequest, NotFound)) and str(exc).startswith("unable to parse response")


def _credentials_to_check(auth_type: str | None) -> str:
    """What to check when the workspace refuses the credentials of this sign-in method."""
    if auth_type == "azure-identity":
        # The identity got its token from Entra; it was told to check a DATABRICKS_TOKEN nobody had set.
        return (
            "the managed identity (FILEGATE_DATABRICKS_AUTH=azure-identity) is not a user of this workspace: add "
            "it as a service principal, or unset FILEGATE_DATABRICKS_AUTH to use DATABRICKS_TOKEN"
        )
    kind = _SETTINGS_KIND.get(auth_type or "")
    names = _method_settings(kind) if kind else []
    if names:
        return f"check {' and '.join(names)} for this workspace"
    if auth_type:
        return f"check the identity the SDK's {auth_type} sign-in used for this workspace"
    return "check DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET, for this workspace"


def _refused_token(exc: DatabricksError) -> bool:
    """Whether a 403 refuses the token itself (Databricks' "Invalid access token."), not a grant it lacks."""
    return "invalid access token" in str(exc).lower()


def named_error(
    exc: DatabricksError,
    host: str,
    job_id: int | None,
    setting: str = "FILEGATE_JOB_ID",
    bundle_name: str = DEFAULT_JOB_NAME,
    grant: str = RUN_GRANT,
    auth_type: str | None = None,
) -> FilegateError:
    """A Databricks API error as the setting a person fixes: credentials, job id, or a passing outage.

    `auth_type` is how the client signed in (its config's), to name the credentials a refusal is about.
    """
    from databricks.sdk.errors import PermissionDenied, Unauthenticated

    # A workspace answers a wrong, expired or revoked token with 403 "Invalid access token.", not a 401: read as
    # a missing grant, it sent the operator to the job's permissions while the token was what to replace.
    if isinstance(exc, Unauthenticated) or (isinstance(exc, PermissionDenied) and _refused_token(exc)):
        status = 401 if isinstance(exc, Unauthenticated) else 403
        return SettingsError(
            f"{host} refused the credentials ({status}): {_credentials_to_check(auth_type)} ({_first_line(exc)})"
        )
    if isinstance(exc, PermissionDenied):
        return SettingsError(f"{host} denied access (403): {grant} ({_first_line(exc)})")
    if _not_a_workspace(exc):
        return not_json(host, exc)
    if job_id is not None and not_found(exc):
        return SettingsError(
            f"{setting}={job_id}: no such job in {host}; set it to the {bundle_name} job's id "
            f"or unset it to find the job by {_name_setting(setting)} ({_first_line(exc)})"
        )
    return TransientError(f"the Jobs API at {host} failed: {_first_line(exc)}")
