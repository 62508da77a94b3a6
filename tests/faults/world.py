"""The local world for fault, race and sweep tests: real stores, the local Jobs API, and ways to break them.

Faults come in three kinds, all below Filegate's own code:
- `CrashingStore` wraps a real store and kills the "process" right after a chosen operation succeeded;
- `FaultProxy` sits between the storage SDK and the emulator and answers 503 for chosen requests, either
  instead of forwarding them or after forwarding them (the change is made, the answer is lost), so the
  real SDK, its retries and Filegate's error translation all run;
- the local Jobs API's own `Fault`s make run-now answer 500/429, or stall past the client's timeout.

gcp-storage-emulator ignores generation preconditions. In front of it the proxy enforces them as GCS
does, atomically with the request, so the GCS store runs in its production mode (no read-first
checks) and the race and fault tests prove what the preconditions guarantee on both clouds.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from filegate.archive import RUNS_PENDING_FOLDER
from filegate.batches import batch_job_trigger
from filegate.contracts import load_contracts
from filegate.errors import TransientError
from filegate.ingest import Gate
from filegate.jobs import DatabricksJobs
from filegate.pipelines import Pipelines, load_pipelines
from filegate.settings import Location, Settings
from filegate.storage import COPY_PENDING, COPY_SUCCESS, ObjectInfo, Store
from local_world.emulators import gcs_emulator_client
from local_world.inputs import blob_created, gcs_uploader
from local_world.jobs_api import LocalJobsServer
from local_world.jobs_api.recording import BATCH_BUNDLE, FIXTURE_BUNDLE, workspace_client

# The ingest job (id 1) and the bundle's batch job (id 2) a sealed pipeline batch runs.
WORLD_JOBS = (FIXTURE_BUNDLE, BATCH_BUNDLE)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class SimulatedCrash(BaseException):
    """The worker process dying at a chosen point; a BaseException so no `except Exception` swallows it."""


@dataclass
class CrashingStore:
    """A real store that crashes once right after `after` ("copy", "delete" or "put") succeeded."""

    inner: Store
    after: str
    crashes: int = 1
    crashed: int = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _maybe_crash(self, operation: str) -> None:
        if operation == self.after and self.crashed < self.crashes:
            self.crashed += 1
            raise SimulatedCrash(f"crash after {operation}")

    def copy(
        self,
        src_container: str,
        src_path: str,
        src_version: str,
        dst_container: str,
        dst_path: str,
        metadata: Mapping[str, str],
    ) -> ObjectInfo:
        info = self.inner.copy(src_container, src_path, src_version, dst_container, dst_path, metadata)
        self._maybe_crash("copy")
        return info

    def delete(self, container: str, path: str, version: str) -> bool:
        deleted = self.inner.delete(container, path, version)
        self._maybe_crash("delete")
        return deleted

    def put(self, container: str, path: str, data: bytes, content_type: str, metadata: Mapping[str, str]) -> ObjectInfo:
        info = self.inner.put(container, path, data, content_type, metadata)
        self._maybe_crash("put")
        return info


@dataclass
class UnfinishedCopyStore:
    """A real store whose first copy ends as an Azure copy can: still `pending` when the wait runs out
    (the bytes all there), or `failed`/`aborted` (the destination left with Filegate's metadata and only
    `left` bytes); `success` with `left` bytes is a copy whose size is wrong.

    Azurite finishes every copy at once and says `success`: the destination here is a real blob, only its
    copy status is the fake's, reported by stat and list until the blob is replaced or `finish` is called.
    """

    inner: Store
    status: str
    left: bytes | None = None
    copies: int = 1
    unfinished: dict[tuple[str, str], str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def copy(
        self,
        src_container: str,
        src_path: str,
        src_version: str,
        dst_container: str,
        dst_path: str,
        metadata: Mapping[str, str],
    ) -> ObjectInfo:
        if self.copies == 0:
            return self.inner.copy(src_container, src_path, src_version, dst_container, dst_path, metadata)
        self.copies -= 1
        if self.left is None:
            info = self.inner.copy(src_container, src_path, src_version, dst_container, dst_path, metadata)
        else:
            info = self.inner.put(dst_container, dst_path, self.left, "text/csv", metadata)
        self.unfinished[(dst_container, dst_path)] = info.version
        what = f"copy {src_container}/{src_path} to {dst_container}/{dst_path}"
        # What AzureBlobStore.copy raises when its wait ends on these statuses.
        if self.status == COPY_PENDING:
            raise TransientError(f"{what}: copy still pending after 20 s")
        if self.status != COPY_SUCCESS:
            raise TransientError(f"{what}: copy ended {self.status}")
        return replace(info, copy_status=self.status)

    def finish(self) -> None:
        """The pending copy completes."""
        self.status = COPY_SUCCESS

    def _as_left(self, info: ObjectInfo) -> ObjectInfo:
        if self.unfinished.get((info.container, info.path)) == info.version:
            return replace(info, copy_status=self.status)
        return info

    def stat(self, container: str, path: str) -> ObjectInfo | None:
        info = self.inner.stat(container, path)
        return None if info is None else self._as_left(info)

    def list(self, container: str, prefix: str) -> Iterator[ObjectInfo]:
        return (self._as_left(info) for info in self.inner.list(container, prefix))


@dataclass
class ProxyRule:
    """Answer `status` for requests that match, `times` times (None: until cleared).

    With `after_forwarding` the request reaches the emulator first and only its answer is replaced:
    the change is made, the caller never hears of it. With `headers` the emulator's answer is passed
    on with those headers set instead (the service saying something the emulator never does).
    """

    matches: Callable[[str, str, Mapping[str, str]], bool]
    status: int = 503
    times: int | None = None
    after_forwarding: bool = False
    hits: int = 0
    headers: Mapping[str, str] | None = None
    message: str = "injected"


@dataclass
class FaultProxy:
    """An HTTP proxy on a free loopback port in front of a storage emulator, with programmable failures."""

    upstream_port: int
    gcs_preconditions: bool = False
    rules: list[ProxyRule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Held from a precondition's check until the request it guards has been answered.
    _conditions: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def fail(
        self,
        matches: Callable[[str, str, Mapping[str, str]], bool],
        *,
        status: int = 503,
        times: int | None = None,
        after_forwarding: bool = False,
        message: str = "injected",
    ) -> ProxyRule:
        """Answer `status` with `message` as the service's error message to matching requests."""
        rule = ProxyRule(matches, status, times, after_forwarding, message=message)
        with self._lock:
            self.rules.append(rule)
        return rule

    def rewrite(self, matches: Callable[[str, str, Mapping[str, str]], bool], headers: Mapping[str, str]) -> ProxyRule:
        """Pass the emulator's answer to matching requests on with `headers` set (until healed)."""
        rule = ProxyRule(matches, after_forwarding=True, headers={k.lower(): v for k, v in headers.items()})
        with self._lock:
            self.rules.append(rule)
        return rule

    def heal(self) -> None:
        with self._lock:
            self.rules.clear()

    def _fault_for(self, method: str, path: str, headers: Mapping[str, str]) -> ProxyRule | None:
        with self._lock:
            for rule in self.rules:
                if (rule.times is None or rule.hits < rule.times) and rule.matches(method, path, headers):
                    rule.hits += 1
                    return rule
        return None


_GCS_OBJECT = r"b/(?P<{0}bucket>[^/]+)/o/(?P<{0}name>[^/?]+)"
_GCS_REWRITE = re.compile(rf"^/storage/v1/{_GCS_OBJECT.format('src_')}/rewriteTo/{_GCS_OBJECT.format('')}$")
_GCS_OBJECT_PATH = re.compile(rf"^(?:/download)?/storage/v1/{_GCS_OBJECT.format('')}$")
_GCS_UPLOAD = re.compile(r"^/upload/storage/v1/b/(?P<bucket>[^/]+)/o$")


def gcs_conditions(method: str, path: str, body: bytes) -> list[tuple[str, str, str, str]]:
    """The generation preconditions a GCS JSON API request carries: (bucket, object, field, required value)."""
    parts = urlsplit(path)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    if rewrite := _GCS_REWRITE.match(parts.path):
        source = (rewrite["src_bucket"], unquote(rewrite["src_name"]))
        target = (rewrite["bucket"], unquote(rewrite["name"]))
        found = [(*source, "generation", query[k]) for k in ("ifSourceGenerationMatch",) if k in query]
        return found + [(*target, "generation", query[k]) for k in ("ifGenerationMatch",) if k in query]
    if upload := _GCS_UPLOAD.match(parts.path):
        name = query.get("name") or _multipart_name(body)
        return [(upload["bucket"], name, "generation", query[k]) for k in ("ifGenerationMatch",) if k in query]
    if method != "POST" and (found := _GCS_OBJECT_PATH.match(parts.path)):
        target = (found["bucket"], unquote(found["name"]))
        fields = {"ifGenerationMatch": "generation", "ifMetagenerationMatch": "metageneration"}
        return [(*target, fields[k], query[k]) for k in fields if k in query]
    return []


def _multipart_name(body: bytes) -> str:
    """The object name in a multipart upload's JSON metadata part."""
    metadata = body.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]
    return str(json.loads(metadata)["name"])


def _proxy_handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else every keep-alive answer waits 40 ms for a delayed ACK

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            rule = proxy._fault_for(self.command, self.path, headers)
            if rule is not None and not rule.after_forwarding:
                self._fail(rule.status, rule.message)
                return
            conditions = gcs_conditions(self.command, self.path, body) if proxy.gcs_preconditions else []
            if conditions:
                with proxy._conditions:
                    failed = self._unmet(conditions)
                    if failed:
                        self._fail(failed, "conditionNotMet" if failed == 412 else "notFound")
                        return
                    self._relay(body, replace_answer=rule)
            else:
                self._relay(body, replace_answer=rule)

        def _unmet(self, conditions: list[tuple[str, str, str, str]]) -> int | None:
            """412 when the emulator's object does not satisfy a precondition, 404 when it must exist and does not."""
            for bucket, name, name_field, required in conditions:
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    upstream.request("GET", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}")
                    answer = upstream.getresponse()
                    current = json.loads(answer.read() or b"{}") if answer.status == 200 else None
                finally:
                    upstream.close()
                if current is None:
                    if required != "0":
                        return 404
                elif str(current.get(name_field)) != required:
                    return 412
            return None

        def _keep_rewrite_metadata(self, body: bytes, answer: bytes) -> bytes:
            """GCS gives the copy the metadata sent in the rewrite's body; the emulator drops it, so set it here."""
            metadata = json.loads(body or b"{}").get("metadata")
            result = json.loads(answer)
            if not metadata or not result.get("done"):
                return answer
            found = _GCS_REWRITE.match(urlsplit(self.path).path)
            assert found is not None
            target = f"/storage/v1/b/{found['bucket']}/o/{found['name']}"
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
            try:
                patch = json.dumps({"metadata": metadata})
                upstream.request("PATCH", target, body=patch, headers={"Content-Type": "application/json"})
                result["resource"] = json.loads(upstream.getresponse().read())
            finally:
                upstream.close()
            return json.dumps(result).encode()

        def _fail(self, status: int, reason: str = "injected") -> None:
            # The shape both clouds use: Azure reads x-ms-error-code, GCS reads the JSON error.
            error = {"error": {"code": status, "message": reason, "errors": [{"message": reason, "reason": reason}]}}
            payload = b"" if self.command == "HEAD" else json.dumps(error).encode()
            self.send_response(status)
            self.send_header("x-ms-error-code", "ServerBusy")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _relay(self, body: bytes, replace_answer: ProxyRule | None) -> None:
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
            try:
                forwarded = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=forwarded)
                answer = upstream.getresponse()
                data = answer.read()
                if proxy.gcs_preconditions and answer.status == 200 and _GCS_REWRITE.match(urlsplit(self.path).path):
                    data = self._keep_rewrite_metadata(body, data)
                if replace_answer is not None and replace_answer.headers is None:
                    self._fail(replace_answer.status, replace_answer.message)
                    return
                rewritten = dict(replace_answer.headers or {}) if replace_answer else {}
                self.send_response(answer.status, answer.reason)
                # A HEAD answer's Content-Length is the object's size, not this (empty) body's.
                keep_length = self.command == "HEAD"
                for name, value in answer.getheaders():
                    lower = name.lower()
                    if (
                        lower not in _HOP_BY_HOP
                        and lower not in rewritten
                        and (keep_length or lower != "content-length")
                    ):
                        self.send_header(name, value)
                for name, value in rewritten.items():
                    self.send_header(name, value)
                if not keep_length:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            finally:
                upstream.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward  # noqa: N815 - http.server's names

    return Handler


@contextmanager
def run_fault_proxy(upstream_port: int, *, gcs_preconditions: bool = False) -> Iterator[FaultProxy]:
    """A started FaultProxy; stopped on exit."""
    proxy = FaultProxy(upstream_port, gcs_preconditions)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(proxy))
    server.daemon_threads = True
    proxy.port = int(server.server_address[1])
    # A short poll: shutdown waits for the loop to see it, up to one interval (0.5 s by default), every test.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-proxy", daemon=True
    )
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class World:
    """One cloud's real store and locations, the local Jobs API, and how users upload into it."""

    kind: str
    store: Store
    settings: Settings
    jobs_api: LocalJobsServer
    put_object: Callable[[str, str, bytes], dict[str, Any]]
    proxy: FaultProxy | None = None

    def gate(
        self,
        store: Store | None = None,
        *,
        retry_timeout_seconds: int = 4,
        http_timeout_seconds: float = 1,
        pipelines: Pipelines | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> Gate:
        """A Gate as the function builds it, with short SDK timeouts so faults resolve quickly."""
        client = workspace_client(
            self.jobs_api, retry_timeout_seconds=retry_timeout_seconds, http_timeout_seconds=http_timeout_seconds
        )
        contracts = load_contracts()
        jobs = DatabricksJobs(self.settings, client)
        return Gate(
            self.settings,
            store or self.store,
            jobs,
            contracts,
            clock=clock or (lambda: datetime.now(UTC)),
            pipelines=load_pipelines(contracts) if pipelines is None else pipelines,
            batch_jobs=batch_job_trigger(self.settings, client_of=jobs),
        )

    def gate_with_jobs_down(self, store: Store | None = None) -> Gate:
        """A Gate whose Jobs API refuses connections (nothing listens on its port), as when it is down."""
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = Config(host=f"http://127.0.0.1:{port}", token="x", retry_timeout_seconds=1, http_timeout_seconds=1)
        jobs = DatabricksJobs(self.settings, WorkspaceClient(config=config))
        return Gate(self.settings, store or self.store, jobs, load_contracts())

    def upload(self, name: str, data: bytes) -> dict[str, Any]:
        """Upload a file into the landing location as a user would; return the event the platform sends."""
        landing = self.settings.landing
        return self.put_object(landing.container, landing.path(name), data)

    def objects(self, location: Location) -> list[ObjectInfo]:
        return list(self.store.list(location.container, location.prefix))

    def read(self, info: ObjectInfo) -> bytes:
        return self.store.read_prefix(info.container, info.path, max(info.size, 1), info.version) if info.size else b""

    def runs(self) -> list[dict[str, Any]]:
        return self.jobs_api.runs()


def fresh_locations() -> tuple[str, str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"landing-{suffix}", f"archive-{suffix}", f"rejected-{suffix}"


def world_settings(landing: str, archive: str, rejected: str) -> Settings:
    return Settings(landing=Location(landing, "incoming/"), archive=Location(archive), rejected=Location(rejected))


def azure_uploader(connection_string: str, port: int) -> Callable[[str, str, bytes], dict[str, Any]]:
    """Uploads with the Blob SDK straight to Azurite (not through any proxy) and builds the BlobCreated event."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string)

    def put(container: str, path: str, data: bytes) -> dict[str, Any]:
        result = service.get_blob_client(container, path).upload_blob(data, overwrite=True)
        return blob_created(container, path, len(data), str(result["etag"]).strip('"'), port=port)

    return put


def run_parameters(run: Mapping[str, Any]) -> dict[str, str]:
    """A run's job parameters as name -> value, from its `runs/get` answer."""
    return {p["name"]: p["value"] for p in run.get("job_parameters", [])}


def assert_converged(world: World, files: Mapping[str, bytes]) -> None:
    """Every file archived exactly once with its exact bytes, one run per file naming that copy,
    the landing location empty, nothing rejected."""
    landing = world.objects(world.settings.landing)
    assert landing == [], f"left in landing: {[o.path for o in landing]}"
    assert world.objects(world.settings.rejected) == []
    archive = world.settings.archive
    archived = [
        info for info in world.objects(archive) if not archive.relative(info.path).startswith(RUNS_PENDING_FOLDER)
    ]
    # A file's mark goes once its run is recorded on its copy.
    assert len(archived) == len(world.objects(archive)), "a run-pending mark was left behind"
    by_name: dict[str, list[ObjectInfo]] = {}
    for info in archived:
        by_name.setdefault(info.path.rsplit("/", 1)[-1], []).append(info)
    assert sorted(by_name) == sorted(files), "archive does not hold exactly the uploaded files"
    for name, copies in by_name.items():
        assert len(copies) == 1, f"{name} archived {len(copies)} times"
        assert world.read(copies[0]) == files[name], f"{name}: archived bytes differ from the upload"
    runs = world.runs()
    sources = sorted(run_parameters(run)["source_path"] for run in runs)
    expected = sorted(world.store.spark_uri(info.container, info.path) for info in archived)
    assert sources == expected, f"{len(runs)} runs for {len(archived)} archived files"


@contextmanager
def open_azure_world(azurite: Any, state_dir: Any) -> Iterator[World]:
    """Azurite behind a fault proxy, with the production client options but a short retry backoff."""
    from azure.storage.blob import BlobServiceClient
    from azure.storage.blob._shared.policies import ExponentialRetry

    from filegate.azure_storage import _CLIENT_OPTIONS, AzureBlobStore
    from local_world.emulators import AZURITE_ACCOUNT, AZURITE_ARCHIVE_ACCOUNT, azurite_connection_string
    from local_world.jobs_api.recording import local_jobs_api

    with run_fault_proxy(azurite.port) as proxy, local_jobs_api(state_dir, bundle=WORLD_JOBS) as server:

        def service(account: str = AZURITE_ACCOUNT) -> Any:
            # The same retry count as production; only the 15 s+ backoff is shortened to keep tests fast.
            # One policy per client: azure-core chains a pipeline's policies through the instances
            # themselves, so a shared one would send one account's requests down the other's pipeline.
            retry = ExponentialRetry(initial_backoff=0.05, increment_base=0, random_jitter_range=0, retry_total=3)
            connection = azurite_connection_string(proxy.port, account)
            return BlobServiceClient.from_connection_string(connection, **{**_CLIENT_OPTIONS, "retry_policy": retry})

        names = fresh_locations()
        # The archive in its own account, as deployed: every archive is a copy across accounts.
        store = AzureBlobStore(service(), {names[1]: service(AZURITE_ARCHIVE_ACCOUNT)})
        store.create_containers(*names)
        uploader = azure_uploader(azurite.connection_string, azurite.port)
        yield World("azure", store, world_settings(*names), server, uploader, proxy)


@contextmanager
def open_gcs_world(emulator_port: int, state_dir: Any) -> Iterator[World]:
    """gcp-storage-emulator behind a proxy that enforces GCS's preconditions, and the store in production mode."""
    from filegate.gcs_storage import GcsStore
    from local_world.jobs_api.recording import local_jobs_api

    with (
        run_fault_proxy(emulator_port, gcs_preconditions=True) as proxy,
        local_jobs_api(state_dir, bundle=WORLD_JOBS) as server,
    ):
        # Not `from_environment`: for an emulator it adds read-first checks; here the proxy's
        # preconditions stand in for GCS's, so the production code path runs.
        store = GcsStore(gcs_emulator_client(f"http://127.0.0.1:{proxy.port}"), retry_seconds=2)
        names = fresh_locations()
        store.create_buckets(*names)
        yield World(
            "gcs", store, world_settings(*names), server, gcs_uploader(f"http://127.0.0.1:{emulator_port}"), proxy
        )
