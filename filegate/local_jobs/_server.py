"""The HTTP server: Jobs API 2.2 routes, fault injection, request recording, and the run pages."""

from __future__ import annotations

import html
import json
import logging
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from filegate.local_jobs._api import job_json, run_json
from filegate.local_jobs._bundle import JobSpec
from filegate.local_jobs._runs import JobWorker, RunRecord, RunStore, Termination, now_ms, recover_unfinished
from filegate.local_jobs._tasks import SourceStorage, TaskRunner, run_subprocess_task

log = logging.getLogger("filegate.local_jobs")

API_PREFIXES = ("/api/2.2/jobs/", "/api/2.1/jobs/")
MAX_TOKEN_CHARS = 64
RUNS_PAGE_MAX = 25
JOBS_PAGE_MAX = 100
LOG_TAIL_BYTES = 64 * 1024


class ApiError(Exception):
    """An answer in the Jobs API's error shape."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class Fault:
    """One programmed misbehaviour for the next matching API call.

    `status` None answers normally (after `delay`), 0 drops the connection without an answer. With
    `after_request`, the call is carried out first (a run-now creates its run) and then the fault
    answers instead: the case idempotency tokens exist for.
    """

    endpoint: str = "run-now"
    status: int | None = 500
    delay: float = 0.0
    after_request: bool = False
    retry_after: int | None = None
    error_code: str | None = None
    message: str = "injected fault"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        known = {"endpoint", "status", "delay", "after_request", "retry_after", "error_code", "message"}
        unknown = set(data) - known - {"times"}
        if unknown:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"unknown fault fields: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def matches(self, endpoint: str) -> bool:
        return self.endpoint in ("*", endpoint)


@dataclass
class RecordedRequest:
    """One request the server received, for assertions; `status` is 0 until answered, or if dropped."""

    method: str
    path: str
    endpoint: str
    query: dict[str, str]
    body: Any
    status: int = 0
    time: float = field(default_factory=time.time)


class LocalJobsServer:
    """A local Databricks Jobs API on a loopback port that runs the bundle's jobs."""

    def __init__(
        self,
        jobs: Sequence[JobSpec],
        state_dir: Path,
        *,
        runner: TaskRunner = run_subprocess_task,
        storage: SourceStorage | None = None,
        workdir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.jobs = {job.job_id: job for job in jobs}
        self.state_dir = Path(state_dir)
        self.runner = runner
        self.store = RunStore(self.state_dir)
        self._created_time = now_ms()
        self._stopping = threading.Event()
        self._faults: deque[Fault] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._workers = {
            job.job_id: JobWorker(job, self.store, runner, storage, workdir or Path.cwd(), self._stopping)
            for job in jobs
        }
        self._httpd = _HttpServer((host, port), _Handler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="local-jobs-http", daemon=True)
        bound_host, bound_port = self._httpd.server_address[:2]
        self.url = f"http://{host if host not in ('0.0.0.0', '') else '127.0.0.1'}:{bound_port}"
        del bound_host

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> LocalJobsServer:
        """Serve in a background thread; returns once the server answers."""
        for worker in self._workers.values():
            worker.start()
        recover_unfinished(self.store, self._workers, self.jobs.values())
        self._thread.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_local/health", timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving; an active run is cancelled, queued runs stay queued for the next start."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        for worker in self._workers.values():
            worker.join(timeout)

    def __enter__(self) -> LocalJobsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests drive and inspect -------------------------------------------------------------------------

    def inject(self, *faults: Fault, times: int = 1) -> None:
        """Queue faults; each is used by the next API call it matches, `times` times over."""
        with self._lock:
            for fault in faults:
                self._faults.extend([fault] * times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def requests(self, endpoint: str | None = None) -> list[RecordedRequest]:
        """Requests received so far, optionally only those to one endpoint (e.g. `run-now`)."""
        with self._lock:
            return [r for r in self._requests if endpoint is None or r.endpoint == endpoint]

    def runs(self, job_id: int | None = None) -> list[dict[str, Any]]:
        """Every run, newest first, as `runs/get` would answer."""
        return [run_json(r, self.jobs.get(r["job_id"]), self.url) for r in self.store.listing(job_id)]

    def run(self, run_id: int) -> dict[str, Any]:
        snapshot = self.store.snapshot(run_id)
        if snapshot is None:
            raise KeyError(run_id)
        return run_json(snapshot, self.jobs.get(snapshot["job_id"]), self.url)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until every queued run has ended."""
        deadline = time.monotonic() + timeout
        for worker in self._workers.values():
            if not worker.wait_idle(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"runs of job {worker.job.job_id} still active after {timeout} s")

    def trigger(self, job_id: int, parameters: dict[str, str], token: str | None = None) -> tuple[int, int]:
        """What run-now does: (run_id, number_in_job) of a new run, or of the run holding the token."""
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        undefined = sorted(set(parameters) - set(job.defaults()))
        if undefined:
            message = f"Job parameters {undefined} are not defined in job {job_id}."
            raise ApiError(400, "INVALID_PARAMETER_VALUE", message)
        values = {**job.defaults(), **parameters}
        busy = not job.queue_enabled and any(r["state"] != "TERMINATED" for r in self.store.listing(job_id))
        run, created = self.store.create(job, values, token)
        if created and busy:
            self._skip(run)
        elif created:
            self._workers[job_id].submit(run)
        return run.run_id, run.number_in_job

    def _skip(self, run: RunRecord) -> None:
        message = "Skipped: the job's active run has not ended and queueing is disabled."
        result = "MAXIMUM_CONCURRENT_RUNS_REACHED"
        termination = Termination(result, "MAX_CONCURRENT_RUNS_EXCEEDED", "CLIENT_ERROR", message)

        def end(r: RunRecord) -> None:
            r.state, r.end_time, r.running_time, r.termination = "TERMINATED", now_ms(), now_ms(), termination
            for task in r.tasks:
                task.state = "TERMINATED"
                task.termination = Termination(result, "SKIPPED", "CLIENT_ERROR", message)

        self.store.update(run, end)

    # -- used by the handler ----------------------------------------------------------------------------------

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(endpoint):
                    self._faults.remove(fault)
                    return fault
        return None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _wait(self, seconds: float) -> None:
        # A stalled answer must not hold up shutdown.
        self._stopping.wait(seconds)

    # -- API endpoints ----------------------------------------------------------------------------------------

    def _api(self, method: str, endpoint: str, query: dict[str, str], body: Any) -> dict[str, Any]:
        route = (method, endpoint)
        if route == ("POST", "run-now"):
            return self._run_now(body)
        if route == ("GET", "runs/get"):
            return self._get_run(query)
        if route == ("GET", "runs/list"):
            return self._list_runs(query)
        if route == ("GET", "list"):
            return self._list_jobs(query)
        if route == ("GET", "get"):
            job = self.jobs.get(_integer(query, "job_id", required=True))
            if job is None:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {query['job_id']} does not exist.")
            return job_json(job, self._created_time)
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} /jobs/{endpoint}'")

    def _run_now(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - expected a map")
        job_id = body.get("job_id")
        if job_id is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Missing required field: job_id")
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            message = f"Could not parse request object: job_id must be an integer, got {job_id!r}"
            raise ApiError(400, "MALFORMED_REQUEST", message)
        parameters = body.get("job_parameters") or {}
        if not isinstance(parameters, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parameters.items()
        ):
            raise ApiError(400, "MALFORMED_REQUEST", "job_parameters must be a map of strings to strings")
        token = body.get("idempotency_token")
        if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS):
            message = f"idempotency_token must be a string of at most {MAX_TOKEN_CHARS} characters"
            raise ApiError(400, "INVALID_PARAMETER_VALUE", message)
        run_id, number = self.trigger(job_id, parameters, token or None)
        return {"run_id": run_id, "number_in_job": number}

    def _get_run(self, query: dict[str, str]) -> dict[str, Any]:
        run_id = _integer(query, "run_id", required=True)
        snapshot = self.store.snapshot(run_id)
        if snapshot is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
        return run_json(snapshot, self.jobs.get(snapshot["job_id"]), self.url)

    def _list_runs(self, query: dict[str, str]) -> dict[str, Any]:
        active_only, completed_only = _flag(query, "active_only"), _flag(query, "completed_only")
        if active_only and completed_only:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "active_only and completed_only cannot both be true")
        job_id = _integer(query, "job_id")
        if job_id is not None and job_id not in self.jobs:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        limit = _integer(query, "limit") or 20
        if not 0 < limit <= RUNS_PAGE_MAX:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"limit must be between 1 and {RUNS_PAGE_MAX}")
        runs = self.store.listing(job_id)
        if active_only:
            runs = [r for r in runs if r["state"] != "TERMINATED"]
        if completed_only:
            runs = [r for r in runs if r["state"] == "TERMINATED"]
        started_from, started_to = _integer(query, "start_time_from"), _integer(query, "start_time_to")
        runs = [
            r
            for r in runs
            if (started_from is None or r["start_time"] >= started_from)
            and (started_to is None or r["start_time"] <= started_to)
        ]
        with_tasks = _flag(query, "expand_tasks")
        page, answer = _page(runs, query, limit)
        answer["runs"] = [run_json(r, self.jobs.get(r["job_id"]), self.url, with_tasks=with_tasks) for r in page]
        return answer

    def _list_jobs(self, query: dict[str, str]) -> dict[str, Any]:
        limit = _integer(query, "limit") or 20
        if not 0 < limit <= JOBS_PAGE_MAX:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"limit must be between 1 and {JOBS_PAGE_MAX}")
        name = query.get("name")
        # Newest first, as the service lists them; the name filter is exact but case-insensitive.
        jobs = sorted(self.jobs.values(), key=lambda j: j.job_id, reverse=True)
        if name is not None:
            jobs = [j for j in jobs if j.name.casefold() == name.casefold()]
        page, answer = _page(jobs, query, limit)
        with_tasks = _flag(query, "expand_tasks")
        answer["jobs"] = [job_json(j, self._created_time, with_tasks=with_tasks) for j in page]
        return answer

    def _control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """The `/_local/...` routes that other processes use to drive and inspect the server."""
        if (method, path) == ("GET", "/_local/health"):
            return 200, {"status": "ok", "jobs": len(self.jobs)}
        if (method, path) == ("POST", "/_local/faults"):
            entries = body.get("faults", [body]) if isinstance(body, dict) else body
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "expected a fault object, a list, or {'faults': [...]}")
            for entry in entries:
                self.inject(Fault.from_json(entry), times=int(entry.get("times", 1)))
            return 200, {"pending": [asdict(f) for f in self.pending_faults()]}
        if (method, path) == ("GET", "/_local/faults"):
            return 200, {"pending": [asdict(f) for f in self.pending_faults()]}
        if (method, path) == ("DELETE", "/_local/faults"):
            self.clear_faults()
            return 200, {"pending": []}
        if (method, path) == ("GET", "/_local/requests"):
            return 200, {"requests": [asdict(r) for r in self.requests()]}
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], app: LocalJobsServer) -> None:
        self.app = app
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's session expects
    server: _HttpServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _handle(self, method: str) -> None:
        started = time.perf_counter()
        app = self.server.app
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        status = 0
        try:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = _parse_body(raw)
            endpoint = next((path[len(p) :] for p in API_PREFIXES if path.startswith(p)), None)
            if endpoint is not None:
                status = self._answer_api(app, method, endpoint, query, body)
            elif path == "/.well-known/databricks-config":
                # Not a workspace with host metadata: the SDK falls back to the configuration it was given.
                status = self._send_json(404, {"error_code": "NOT_FOUND", "message": "no host metadata"})
            elif path.startswith("/_local/"):
                code, answer = app._control(method, path, body)
                status = self._send_json(code, answer)
            elif method == "GET" and path in ("/", "/runs", "/runs/"):
                status = self._send_html(200, _index_page(app))
            elif method == "GET" and path.startswith("/runs/") and path[6:].isdigit():
                page = _run_page(app, int(path[6:]))
                status = self._send_html(200 if page else 404, page or _page_html("Not found", "<p>No such run.</p>"))
            else:
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
        except ApiError as exc:
            status = self._send_error(exc)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout ran out during a stall): nothing left to answer.
            log.info("%s %s: client went away before the answer", method, self.path)
            self.close_connection = True
            return
        except Exception:
            log.exception("%s %s failed", method, self.path)
            status = self._send_error(ApiError(500, "INTERNAL_ERROR", "internal error in the local Jobs API"))
        log.info("%s %s %s %.1fms", method, self.path, status or "dropped", (time.perf_counter() - started) * 1000)

    def _answer_api(self, app: LocalJobsServer, method: str, endpoint: str, query: dict[str, str], body: Any) -> int:
        fault = app._take_fault(endpoint)
        # Recorded on arrival, so a test sees a stalled call while it stalls.
        record = RecordedRequest(method, self.path, endpoint, query, body)
        app._record(record)
        status = 0
        try:
            if fault is not None and not fault.after_request:
                app._wait(fault.delay)
                if fault.status is not None:
                    return (status := self._send_fault(fault))
            try:
                answer: tuple[int, Any] = (200, app._api(method, endpoint, query, body))
            except ApiError as exc:
                answer = (exc.status, {"error_code": exc.error_code, "message": exc.message})
            if fault is not None and fault.after_request:
                app._wait(fault.delay)
                if fault.status is not None:
                    return (status := self._send_fault(fault))
            return (status := self._send_json(*answer))
        finally:
            record.status = status

    def _send_fault(self, fault: Fault) -> int:
        if fault.status == 0:
            self.close_connection = True  # no answer at all: the client sees the connection drop
            return 0
        assert fault.status is not None
        code = fault.error_code or {429: "RESOURCE_EXHAUSTED", 503: "TEMPORARILY_UNAVAILABLE"}.get(
            fault.status, "INTERNAL_ERROR"
        )
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return self._send_json(fault.status, {"error_code": code, "message": fault.message}, headers)

    def _send_error(self, exc: ApiError) -> int:
        return self._send_json(exc.status, {"error_code": exc.error_code, "message": exc.message})

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> int:
        return self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send_html(self, status: int, page: str) -> int:
        return self._send(status, page.encode(), "text/html; charset=utf-8")

    def _send(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        return status


def _parse_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "MALFORMED_REQUEST", f"Invalid JSON given in the body of the request: {exc}") from exc


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
    page = items[offset : offset + limit]
    answer: dict[str, Any] = {"has_more": offset + limit < len(items)}
    if answer["has_more"]:
        answer["next_page_token"] = f"offset-{offset + limit}"
    if offset > 0:
        answer["prev_page_token"] = f"offset-{max(0, offset - limit)}"
    return page, answer


# -- pages ------------------------------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#1b1b1b}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}
pre{background:#f6f6f6;padding:.8em;overflow:auto;max-height:30em;white-space:pre-wrap}
.SUCCESS{color:#1a7f37}.FAILED,.UPSTREAM_FAILED,.CANCELED{color:#cf222e}.RUNNING,.QUEUED{color:#9a6700}
"""


def _page_html(title: str, body: str, *, refresh: bool = False) -> str:
    meta = '<meta http-equiv="refresh" content="2">' if refresh else ""
    return (
        f'<!doctype html><html><head><meta charset="utf-8">{meta}<title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _outcome(item: dict[str, Any]) -> str:
    result = item["state"].get("result_state") or item["status"]["state"]
    return f'<span class="{html.escape(result)}">{html.escape(result)}</span>'


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else ""


def _seconds(ms: int | None) -> str:
    return f"{ms / 1000:.1f} s" if ms is not None else ""


def _index_page(app: LocalJobsServer) -> str:
    rows = []
    for run in app.runs()[:200]:
        parameters = ", ".join(f"{p['name']}={p['value']}" for p in run["job_parameters"])
        rows.append(
            f'<tr><td><a href="/runs/{run["run_id"]}">{run["run_id"]}</a></td><td>{html.escape(run["run_name"])}'
            f" #{run['number_in_job']}</td><td>{_outcome(run)}</td><td>{_when(run['start_time'])}</td>"
            f"<td>{_seconds(run.get('run_duration'))}</td><td>{html.escape(parameters)}</td></tr>"
        )
    jobs = "".join(
        f"<li>{job.job_id}: {html.escape(job.name)} ({len(job.tasks)} tasks)</li>" for job in app.jobs.values()
    )
    table = (
        "<table><tr><th>Run</th><th>Job</th><th>State</th><th>Started</th><th>Duration</th><th>Parameters</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else "<p>No runs yet.</p>"
    )
    active = any(r["status"]["state"] != "TERMINATED" for r in app.runs()[:200])
    body = f"<h1>Local Jobs API</h1><ul>{jobs}</ul><h2>Recent runs</h2>{table}"
    return _page_html("Local Jobs API", body, refresh=active)


def _run_page(app: LocalJobsServer, run_id: int) -> str | None:
    try:
        run = app.run(run_id)
    except KeyError:
        return None
    snapshot = app.store.snapshot(run_id) or {}
    logs = {task["task_key"]: task["log_file"] for task in snapshot.get("tasks", [])}
    termination = run["status"].get("termination_details") or {}
    facts = [
        ("Job", f"{run['run_name']} (job {run['job_id']}, run #{run['number_in_job']})"),
        ("State", run["status"]["state"]),
        ("Result", run["state"].get("result_state", "")),
        ("Message", termination.get("message") or run["state"].get("state_message", "")),
        ("Triggered", _when(run["start_time"])),
        ("Queued for", _seconds(run.get("queue_duration"))),
        ("Ran for", _seconds(run.get("execution_duration"))),
        ("Ended", _when(run["end_time"])),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    parameters = "".join(
        f"<tr><td>{html.escape(p['name'])}</td><td>{html.escape(p['value'])}</td><td>{html.escape(p['default'])}</td></tr>"
        for p in run["job_parameters"]
    )
    tasks = []
    for task in run.get("tasks", []):
        message = (task["status"].get("termination_details") or {}).get("message", "")
        tasks.append(
            f'<h3 id="task-{html.escape(task["task_key"])}">{html.escape(task["task_key"])}: {_outcome(task)}'
            f" <small>{_seconds(task.get('execution_duration'))}</small></h3>"
            + (f"<p>{html.escape(message)}</p>" if message else "")
            + f"<pre>{html.escape(_log_tail(logs.get(task['task_key'], '')))}</pre>"
        )
    body = (
        f'<p><a href="/">All runs</a></p><h1>Run {run["run_id"]}</h1><table>{rows}</table>'
        f"<h2>Parameters</h2><table><tr><th>Name</th><th>Value</th><th>Default</th></tr>{parameters}</table>"
        f"<h2>Tasks</h2>{''.join(tasks)}"
    )
    return _page_html(f"Run {run_id}", body, refresh=run["status"]["state"] != "TERMINATED")


def _log_tail(path: str) -> str:
    if not path:
        return "(no log: the task did not start)"
    try:
        with open(path, "rb") as source:
            source.seek(0, 2)
            size = source.tell()
            source.seek(max(0, size - LOG_TAIL_BYTES))
            text = source.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log yet)"
    return text if size <= LOG_TAIL_BYTES else f"... (last {LOG_TAIL_BYTES // 1024} KiB)\n{text}"


def created_jobs(jobs: Iterable[JobSpec]) -> list[str]:
    """One line per job, for the CLI's start-up message."""
    return [f"job {job.job_id}: {job.name} ({', '.join(t.task_key for t in job.tasks)})" for job in jobs]
