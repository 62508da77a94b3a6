"""The local Jobs API server: its life cycle, what run-now and runs/cancel do, and the HTTP front."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from local_world.emulators import stop_leftovers
from local_world.jobs_api._api import run_json
from local_world.jobs_api._bundle import JobSpec
from local_world.jobs_api._endpoints import API_PREFIXES, ApiError, answer
from local_world.jobs_api._faults import Fault, FaultError, FaultInjector, RecordedRequest
from local_world.jobs_api._pages import index_page, member_page, page_html, run_page
from local_world.jobs_api._runs import QUEUED, USER_CANCELED, RunStore, now_ms
from local_world.jobs_api._spark import CONNECT, LocalSpark, Notify, SparkTaskRunner
from local_world.jobs_api._tasks import SourceStorage, TaskRunner
from local_world.jobs_api._worker import JobWorker, recover_unfinished

# A run page's link to one member of the sealed batch the run was given.
_MEMBER_PATH = re.compile(r"/runs/(?P<run_id>[0-9]+)/members/(?P<dataset>[^/]+)")

log = logging.getLogger("local_world.jobs_api")

# The workspace id the local server reports in its host metadata.
LOCAL_WORKSPACE_ID = "1"
HEALTH_PATH = "/_local/health"
# The SDK asks it as it builds a client (SDK 0.155): the fault hook records it, so a test counts the clients.
HOST_METADATA_PATH = "/.well-known/databricks-config"


class LocalJobsServer:
    """A local Databricks Jobs API on a loopback port that runs the bundle's jobs.

    Without a `runner`, tasks run as processes on the local Spark that `spark` names (`connect`: one
    shared Spark Connect server, started on the first task; `classic`: a JVM per task), and the
    server stops that Spark with itself; their Delta tables live under `warehouse` (default: the
    state folder's `warehouse/`), the local stand-in for Unity Catalog's storage. `fault_injection`
    turns on the test hook (see `_faults`).
    A failed task is retried as its bundle settings say; `retry_interval_ms` replaces every task's
    min_retry_interval_millis (tests and the demo wait 0 or 100 ms instead of a minute), not the retries.
    `host_metadata=False` answers the SDK's `/.well-known/databricks-config` probe with a 404, as
    hosts without that discovery endpoint do; by default it answers as a workspace, so that SDK 0.155
    logs no warning for every client it builds. `legacy_state=False` answers runs without the deprecated
    `state` object, with `status` alone, as Databricks will once it drops it.
    """

    def __init__(
        self,
        jobs: Sequence[JobSpec],
        state_dir: Path,
        *,
        runner: TaskRunner | None = None,
        storage: SourceStorage | None = None,
        workdir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        spark: str = CONNECT,
        warehouse: Path | None = None,
        notify: Notify | None = None,
        fault_injection: bool = False,
        host_metadata: bool = True,
        retry_interval_ms: int | None = None,
        legacy_state: bool = True,
    ) -> None:
        self.jobs = {job.job_id: job for job in jobs}
        self.serves_host_metadata = host_metadata
        self.legacy_state = legacy_state
        workdir = workdir or Path.cwd()
        self._spark_runner: SparkTaskRunner | None = None
        # Where the tasks' tables are: the run pages show the rows each task wrote (processing_log).
        self.warehouse = Path(warehouse).resolve() if warehouse else None
        if runner is None:
            spark_log = Path(state_dir).resolve() / "spark-connect.log"
            tables = (warehouse or Path(state_dir) / "warehouse").resolve()
            self.warehouse = tables
            self._spark_runner = SparkTaskRunner(LocalSpark(spark, spark_log, workdir, notify=notify), tables)
            runner = self._spark_runner
        self.runner = runner
        self._notify = notify or (lambda message: log.info("%s", message))
        self.store = RunStore(Path(state_dir))
        self.state_dir = self.store.state_dir
        self.created_time = now_ms()
        self._faults = FaultInjector() if fault_injection else None
        self._stopping = threading.Event()
        self._stopped = False
        self.retry_interval_ms = retry_interval_ms
        self._storage, self._workdir = storage, workdir
        self._workers = {job.job_id: self._worker(job) for job in jobs}
        try:
            self._httpd = _HttpServer((host, port), _Handler, self)
        except BaseException:
            self.store.close()
            raise
        # A short poll: `stop` waits for the loop to see the shutdown, up to one interval (0.5 s by default).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="local-jobs-http", daemon=True
        )
        bound_port = self._httpd.server_address[1]
        self.url = f"http://{host if host not in ('0.0.0.0', '') else '127.0.0.1'}:{bound_port}"

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> LocalJobsServer:
        """Serve in a background thread, and queue again the runs a previous server left; returns once it answers."""
        # A server killed with kill -9 could not stop its tasks' processes; this one holds the state folder's
        # lock now, so each recorded beside its log is an orphan, stopped before its run is queued again: two
        # attempts of one run never write the same tables at once.
        for line in stop_leftovers(self.state_dir / "logs"):
            self._notify(line)
        for worker in self._workers.values():
            worker.start()
        recover_unfinished(self.store, self._workers, self.jobs.values())
        self._thread.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}{HEALTH_PATH}", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving and give up the state folder.

        No run ends because of a stop: queued runs stay queued, and the run under way is interrupted
        and queued again, so the next start on this state folder finishes all of them.
        """
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        for worker in self._workers.values():
            worker.stop(timeout)
        if self._spark_runner is not None:
            self._spark_runner.close()
        self.store.close()

    def __enter__(self) -> LocalJobsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what run-now and runs/cancel do ----------------------------------------------------------------------

    def trigger(self, job_id: int, parameters: dict[str, str], token: str | None = None) -> int:
        """What run-now does: the run id of a new run, or of the run holding the token."""
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        undefined = sorted(set(parameters) - set(job.defaults()))
        if undefined:
            message = f"Job parameters {undefined} are not defined in job {job_id}."
            raise ApiError(400, "INVALID_PARAMETER_VALUE", message)
        values = {**job.defaults(), **parameters}
        run, created = self.store.create(job, values, token, skip_when_busy=not job.queue_enabled)
        if created and run.active:
            self._workers[job_id].submit(run)
        return run.run_id

    def redeploy(self, job_id: int) -> int:
        """What `databricks bundle destroy` then `deploy` do to a job: the same job under a new id, returned.

        run-now for the old id then answers that the job does not exist; its runs stay listed.
        """
        old = self.jobs.pop(job_id)
        job = replace(old, job_id=max(self._workers) + 1)
        worker = self._worker(job)
        self._workers[job.job_id] = worker
        if self._thread.is_alive():
            worker.start()
        self.jobs[job.job_id] = job
        return job.job_id

    def _worker(self, job: JobSpec) -> JobWorker:
        return JobWorker(
            job, self.store, self.runner, self._storage, self._workdir, self._stopping, self.retry_interval_ms
        )

    def cancel(self, run_id: int) -> bool:
        """What runs/cancel does (for a run, or for a task run: its run); False when there is no such run.

        Asynchronous like the service: a queued run ends at once, a running one once its task stops.
        """
        run = self.store.get(run_id)
        if run is None:
            owner = self.store.owner_of_task(run_id)
            if owner is None:
                return False
            run = owner[0]
        if self.store.transition(run, QUEUED, lambda r: r.end(USER_CANCELED, now_ms())):
            log.info("run %s cancelled while queued", run.run_id)
        elif run.active and self._workers[run.job_id].cancel(run.run_id):
            log.info("run %s: cancelling its running task", run.run_id)
        return True

    # -- what tests and the demo read -------------------------------------------------------------------------

    def runs(self, job_id: int | None = None) -> list[dict[str, Any]]:
        """Every run, newest first, as `runs/get` would answer."""
        return [run_json(r, self.jobs.get(r.job_id), self.url) for r in self.store.listing(job_id)]

    def run(self, run_id: int) -> dict[str, Any]:
        snapshot = self.store.snapshot(run_id)
        if snapshot is None:
            raise KeyError(run_id)
        return run_json(snapshot, self.jobs.get(snapshot.job_id), self.url)

    def log_files(self, run_id: int) -> dict[int, Path]:
        """Each started task run's log file, by task run id: a retried task has one per attempt."""
        snapshot = self.store.snapshot(run_id)
        tasks = snapshot.tasks if snapshot else []
        return {task.run_id: Path(task.log_file) for task in tasks if task.log_file}

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until every queued run has ended."""
        deadline = time.monotonic() + timeout
        for worker in self._workers.values():
            if not worker.wait_idle(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"runs of job {worker.job.job_id} still active after {timeout} s")

    # -- the fault-injection test hook ------------------------------------------------------------------------

    @property
    def faults(self) -> FaultInjector:
        if self._faults is None:
            raise RuntimeError("fault injection is off: create the server with fault_injection=True")
        return self._faults

    def inject(self, *faults: Fault, times: int = 1) -> None:
        """Queue faults; each is used by the next API call it matches, `times` times over."""
        self.faults.inject(*faults, times=times)

    def clear_faults(self) -> None:
        self.faults.clear()

    def pending_faults(self) -> list[Fault]:
        return self.faults.pending()

    def requests(self, endpoint: str | None = None) -> list[RecordedRequest]:
        """Requests received so far, optionally only those to one endpoint (e.g. `run-now`)."""
        return self.faults.requests(endpoint)

    # -- used by the handler ----------------------------------------------------------------------------------

    def wait(self, seconds: float) -> None:
        # A stalled answer must not hold up shutdown.
        self._stopping.wait(seconds)

    def host_metadata(self) -> dict[str, Any]:
        """`/.well-known/databricks-config`: a workspace host, as the SDK's host-metadata probe expects."""
        return {"oidc_endpoint": f"{self.url}/oidc", "workspace_id": LOCAL_WORKSPACE_ID, "host_type": "workspace"}

    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """The `/_local/...` routes: health always, the fault hook's routes only when it is on."""
        if (method, path) == ("GET", HEALTH_PATH):
            return 200, {"status": "ok", "jobs": len(self.jobs)}
        if self._faults is not None:
            try:
                handled = self._faults.control(method, path, body)
            except FaultError as exc:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", str(exc)) from exc
            if handled is not None:
                return handled
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")


def _content_length(header: str | None) -> int:
    """The request body's length; a header that is no length is the client's error (400), not the server's."""
    text = (header or "0").strip()
    if not (text.isascii() and text.isdigit()):
        raise ApiError(400, "MALFORMED_REQUEST", f"Content-Length {header!r} is not a length")
    return int(text)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], app: LocalJobsServer) -> None:
        self.app = app
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's session expects
    # Headers and body leave in two writes; with Nagle on, the client's delayed ACK holds the body
    # back 40 ms on every keep-alive answer (it made runs/get look 40 ms slow in the benchmark).
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_HEAD(self) -> None:
        # The gate's reachability probe (filegate.jobs.probe_host) takes any answer; the fault hook records it, so a
        # test counts the probes. Headers alone, as HEAD is answered.
        app = self.server.app
        if app._faults is not None:
            app._faults.record(RecordedRequest("HEAD", self.path, self.path, {}, None, status=200))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # Methods no route takes still get the API's JSON error, not http.server's HTML 501 page.
    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

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
            try:
                length = _content_length(self.headers.get("Content-Length"))
            except ApiError:
                self.close_connection = True  # the unread body would be taken for the next request
                raise
            body = _parse_body(self.rfile.read(length))
            endpoint = next((path[len(p) :] for p in API_PREFIXES if path.startswith(p)), None)
            if endpoint is not None:
                status = self._answer_api(app, method, endpoint, query, body)
            elif path == HOST_METADATA_PATH:
                status = self._answer_host_metadata(app, method, query, body)
            elif path.startswith("/_local/"):
                status = self._send_json(*app.control(method, path, body))
            elif method == "GET" and path in ("/", "/runs", "/runs/"):
                status = self._send_html(200, index_page(app))
            elif method == "GET" and (member := _MEMBER_PATH.fullmatch(path)):
                data = member_page(app, int(member["run_id"]), unquote(member["dataset"]))
                if data is None:
                    status = self._send_html(404, page_html("Not found", "<p>No such member in this run.</p>"))
                else:
                    status = self._send(200, data, "text/plain; charset=utf-8")
            elif method == "GET" and path.startswith("/runs/") and path[6:].isdigit():
                page = run_page(app, int(path[6:]))
                status = self._send_html(200 if page else 404, page or page_html("Not found", "<p>No such run.</p>"))
            else:
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
        except ApiError as exc:
            status = self._send_json(exc.status, exc.body())
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout ran out during a stall): nothing left to answer.
            log.info("%s %s: client went away before the answer", method, self.path)
            self.close_connection = True
            return
        except Exception:
            log.exception("%s %s failed", method, self.path)
            internal = ApiError(500, "INTERNAL_ERROR", "internal error in the local Jobs API")
            status = self._send_json(500, internal.body())
        log.info("%s %s %s %.1fms", method, self.path, status or "dropped", (time.perf_counter() - started) * 1000)

    def _answer_host_metadata(self, app: LocalJobsServer, method: str, query: dict[str, str], body: Any) -> int:
        record = RecordedRequest(method, self.path, HOST_METADATA_PATH, query, body)
        if app._faults is not None:
            app._faults.record(record)
        if not app.serves_host_metadata:
            record.status = 404
            raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {HOST_METADATA_PATH}'")
        record.status = self._send_json(200, app.host_metadata())
        return record.status

    def _answer_api(self, app: LocalJobsServer, method: str, endpoint: str, query: dict[str, str], body: Any) -> int:
        if app._faults is None:
            return self._send_json(*_call(app, method, endpoint, query, body))
        fault = app._faults.take(endpoint)
        # Recorded on arrival, so a test sees a stalled call while it stalls.
        record = RecordedRequest(method, self.path, endpoint, query, body)
        app._faults.record(record)
        status = 0
        try:
            if fault is not None and not fault.after_request:
                app.wait(fault.delay)
                if fault.status is not None:
                    return (status := self._send_fault(fault))
            result = _call(app, method, endpoint, query, body)
            if fault is not None and fault.after_request:
                app.wait(fault.delay)
                if fault.status is not None:
                    return (status := self._send_fault(fault))
            return (status := self._send_json(*result))
        finally:
            record.status = status

    def _send_fault(self, fault: Fault) -> int:
        if fault.status == 0:
            self.close_connection = True  # no answer at all: the client sees the connection drop
            return 0
        assert fault.status is not None
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return self._send_json(fault.status, fault.error_body(), headers)

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


def _call(app: LocalJobsServer, method: str, endpoint: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
    try:
        return 200, answer(app, method, endpoint, query, body)
    except ApiError as exc:
        return exc.status, exc.body()


def _parse_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "MALFORMED_REQUEST", f"Invalid JSON given in the body of the request: {exc}") from exc


def created_jobs(jobs: Iterable[JobSpec]) -> list[str]:
    """One line per job, for the CLI's start-up message."""
    return [f"job {job.job_id}: {job.name} ({', '.join(t.task_key for t in job.tasks)})" for job in jobs]
