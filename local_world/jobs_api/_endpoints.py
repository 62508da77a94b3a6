"""The Jobs API 2.2 routes the local server answers, with the service's parameter checks and error shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from filegate.errors import FilegateError
from local_world.jobs_api._api import job_json, output_json, run_json, without_legacy_state
from local_world.jobs_api._bundle import JobSpec
from local_world.jobs_api._runs import TERMINATED, RunStore


class ApiHost(Protocol):
    """What the routes need of the server (a protocol, so that the server imports the routes, not both ways)."""

    store: RunStore
    created_time: int
    # False: runs are answered without the deprecated `state` object, `status` alone.
    legacy_state: bool

    @property
    def jobs(self) -> Mapping[int, JobSpec]: ...

    @property
    def url(self) -> str: ...

    def trigger(self, job_id: int, parameters: dict[str, str], token: str | None = None) -> int: ...

    def cancel(self, run_id: int) -> bool: ...


API_PREFIXES = ("/api/2.2/jobs/", "/api/2.1/jobs/")
MAX_TOKEN_CHARS = 64
RUNS_PAGE_MAX = 25
JOBS_PAGE_MAX = 100
# What Databricks answers for `runs/get-output` on a run with several tasks.
MULTI_TASK_OUTPUT = (
    "Retrieving the output of runs with multiple tasks is not supported. "
    "Please retrieve the output of each individual task run instead."
)


class ApiError(FilegateError):
    """An answer in the Jobs API's error shape."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error_code": self.error_code, "message": self.message}


def answer(app: ApiHost, method: str, endpoint: str, query: dict[str, str], body: Any) -> dict[str, Any]:
    """The JSON answer to one Jobs API call; raises ApiError for the service's error answers."""
    route = (method, endpoint)
    if route == ("POST", "run-now"):
        return _run_now(app, body)
    if route == ("GET", "runs/get"):
        return _get_run(app, query)
    if route == ("GET", "runs/list"):
        return _list_runs(app, query)
    if route == ("POST", "runs/cancel"):
        return _cancel_run(app, body)
    if route == ("GET", "runs/get-output"):
        return _get_run_output(app, query)
    if route == ("GET", "list"):
        return _list_jobs(app, query)
    if route == ("GET", "get"):
        job = app.jobs.get(_integer(query, "job_id", required=True))
        if job is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {query['job_id']} does not exist.")
        return job_json(job, app.created_time)
    raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} /jobs/{endpoint}'")


def _run_now(app: ApiHost, body: Any) -> dict[str, Any]:
    job_id = _body_run_or_job_id(body, "job_id")
    parameters = body.get("job_parameters")
    parameters = {} if parameters is None else parameters
    if not isinstance(parameters, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in parameters.items()
    ):
        raise ApiError(400, "MALFORMED_REQUEST", "job_parameters must be a map of strings to strings")
    token = body.get("idempotency_token")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS):
        message = f"idempotency_token must be a string of at most {MAX_TOKEN_CHARS} characters"
        raise ApiError(400, "INVALID_PARAMETER_VALUE", message)
    run_id = app.trigger(job_id, parameters, token or None)
    return {"run_id": run_id, "number_in_job": run_id}


def _get_run(app: ApiHost, query: dict[str, str]) -> dict[str, Any]:
    run_id = _integer(query, "run_id", required=True)
    snapshot = app.store.snapshot(run_id)
    if snapshot is None:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
    return _as_answered(app, run_json(snapshot, app.jobs.get(snapshot.job_id), app.url))


def _as_answered(app: ApiHost, body: dict[str, Any]) -> dict[str, Any]:
    return body if app.legacy_state else without_legacy_state(body)


def _cancel_run(app: ApiHost, body: Any) -> dict[str, Any]:
    run_id = _body_run_or_job_id(body, "run_id")
    if not app.cancel(run_id):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
    return {}


def _get_run_output(app: ApiHost, query: dict[str, str]) -> dict[str, Any]:
    run_id = _integer(query, "run_id", required=True)
    run = app.store.snapshot(run_id)
    if run is not None:
        if len(run.tasks) != 1:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", MULTI_TASK_OUTPUT)
        task = run.tasks[0]
    else:
        owner = app.store.owner_of_task(run_id)
        if owner is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
        run = app.store.snapshot(owner[0].run_id)
        assert run is not None
        task = next(t for t in run.tasks if t.run_id == run_id)
    return _as_answered(app, output_json(run, task, app.jobs.get(run.job_id), app.url))


def _list_runs(app: ApiHost, query: dict[str, str]) -> dict[str, Any]:
    active_only, completed_only = _flag(query, "active_only"), _flag(query, "completed_only")
    if active_only and completed_only:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "active_only and completed_only cannot both be true")
    job_id = _integer(query, "job_id")
    if job_id is not None and job_id not in app.jobs:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
    limit = _integer(query, "limit")
    # None: the default of 20; 0: the service's maximum (runs/list's documented `limit`).
    limit = 20 if limit is None else limit or RUNS_PAGE_MAX
    if not 0 < limit <= RUNS_PAGE_MAX:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"limit must be between 0 and {RUNS_PAGE_MAX}")
    run_type = query.get("run_type")
    if run_type not in (None, "JOB_RUN", "WORKFLOW_RUN", "SUBMIT_RUN"):
        raise ApiError(
            400, "INVALID_PARAMETER_VALUE", f"run_type must be JOB_RUN, WORKFLOW_RUN or SUBMIT_RUN, got {run_type!r}"
        )
    # Every run here comes from run-now: a JOB_RUN.
    runs = app.store.listing(job_id) if run_type in (None, "JOB_RUN") else []
    if active_only:
        runs = [r for r in runs if r.state != TERMINATED]
    if completed_only:
        runs = [r for r in runs if r.state == TERMINATED]
    started_from, started_to = _integer(query, "start_time_from"), _integer(query, "start_time_to")
    runs = [
        r
        for r in runs
        if (started_from is None or r.start_time >= started_from) and (started_to is None or r.start_time <= started_to)
    ]
    with_tasks = _flag(query, "expand_tasks")
    page, result = _page(runs, query, limit)
    result["runs"] = [
        _as_answered(app, run_json(r, app.jobs.get(r.job_id), app.url, with_tasks=with_tasks)) for r in page
    ]
    return result


def _list_jobs(app: ApiHost, query: dict[str, str]) -> dict[str, Any]:
    limit = _integer(query, "limit") or 20
    if not 0 < limit <= JOBS_PAGE_MAX:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"limit must be between 1 and {JOBS_PAGE_MAX}")
    name = query.get("name")
    # Newest first, as the service lists them; the name filter is exact but case-insensitive.
    jobs = sorted(app.jobs.values(), key=lambda j: j.job_id, reverse=True)
    if name is not None:
        jobs = [j for j in jobs if j.name.casefold() == name.casefold()]
    page, result = _page(jobs, query, limit)
    with_tasks = _flag(query, "expand_tasks")
    result["jobs"] = [job_json(j, app.created_time, with_tasks=with_tasks) for j in page]
    return result


def _body_run_or_job_id(body: Any, name: str) -> int:
    if not isinstance(body, dict):
        raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - expected a map")
    value = body.get(name)
    if value is None:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Missing required field: {name}")
    if isinstance(value, bool) or not isinstance(value, int):
        message = f"Could not parse request object: {name} must be an integer, got {value!r}"
        raise ApiError(400, "MALFORMED_REQUEST", message)
    return value


def _integer(query: dict[str, str], name: str, *, required: bool = False) -> Any:
    raw = query.get(name)
    if raw is None or raw == "":
        if required:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Missing required field: {name}")
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{name} must be an integer, got {raw!r}") from exc


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "").lower() == "true"


def _page(items: Sequence[Any], query: dict[str, str], limit: int) -> tuple[Sequence[Any], dict[str, Any]]:
    """One page of a newest-first list; `page_token` is the opaque form of the (deprecated) `offset`."""
    token = query.get("page_token")
    if token:
        if not token.startswith("offset-") or not token[7:].isdigit():
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"invalid page_token {token!r}")
        offset = int(token[7:])
    else:
        offset = _integer(query, "offset") or 0
        if offset < 0:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"offset must not be negative, got {offset}")
    page = items[offset : offset + limit]
    result: dict[str, Any] = {"has_more": offset + limit < len(items)}
    if result["has_more"]:
        result["next_page_token"] = f"offset-{offset + limit}"
    if offset > 0:
        result["prev_page_token"] = f"offset-{max(0, offset - limit)}"
    return page, result
