"""A local Databricks Jobs API (the 2.2 subset Filegate uses) that runs the bundle's jobs on this machine."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from filegate import exits
from local_world import print_line
from local_world.emulators import stop_leftovers, stop_requested
from local_world.jobs_api._bundle import BundleError, JobSpec, TaskSpec, load_bundle, load_bundle_files
from local_world.jobs_api._faults import Fault, RecordedRequest
from local_world.jobs_api._lock import FolderInUse, FolderLock
from local_world.jobs_api._runs import RunFileUnreadable
from local_world.jobs_api._server import LocalJobsServer, created_jobs
from local_world.jobs_api._spark import CLASSIC, CONNECT, SPARK_MODES, LocalSpark
from local_world.jobs_api._tasks import SourceStorage, TaskFailed, TaskInvocation, TaskRunner

__all__ = [
    "CLASSIC",
    "CONNECT",
    "SPARK_MODES",
    "BundleError",
    "Fault",
    "FolderInUse",
    "FolderLock",
    "JobSpec",
    "LocalJobsServer",
    "LocalSpark",
    "RecordedRequest",
    "RunFileUnreadable",
    "SourceStorage",
    "TaskFailed",
    "TaskInvocation",
    "TaskRunner",
    "TaskSpec",
    "bundle_job_files",
    "default_bundle",
    "load_bundle",
    "load_bundle_files",
    "local_table",
    "local_variables",
    "main",
    "repository_root",
]

BUNDLE_FILE = Path("infra/databricks/resources/filegate_ingest.job.yml")
# The names the local world gives the bundle's catalog and schema; the tables are then the Delta
# folders <warehouse>/local/ingest/<table> (see spark_jobs.warehouse.LocalWarehouse).
LOCAL_CATALOG = "local"
LOCAL_SCHEMA = "ingest"


def repository_root() -> Path:
    """The working tree the jobs run in: the checkout this package lives in, else the current folder."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "spark_jobs").is_dir() else Path.cwd()


def default_bundle() -> Path:
    """The bundle file that declares Filegate's job."""
    return repository_root() / BUNDLE_FILE


def bundle_job_files() -> list[Path]:
    """Every job file the bundle includes, the ingest job's first so it keeps job id 1 (the batch job the
    function runs for a sealed pipeline batch is found by name among the others)."""
    first = default_bundle()
    return [first, *sorted(path for path in first.parent.glob("*.job.yml") if path != first)]


def local_variables(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Values for the bundle's `${var.*}` locally: a catalog and a schema name, as on Databricks."""
    return {"catalog": LOCAL_CATALOG, "schema": LOCAL_SCHEMA, **(overrides or {})}


def local_table(warehouse: Path, table: str, variables: dict[str, str] | None = None) -> Path:
    """The folder of one of the job's Delta tables in a local warehouse."""
    names = local_variables(variables)
    return Path(warehouse).resolve() / names["catalog"] / names["schema"] / table


def main(argv: list[str]) -> int:
    """`python -m local_world jobs-api`: serve the local Jobs API until SIGINT or SIGTERM."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    overrides = {}
    for item in args.var:
        name, equals, value = item.partition("=")
        if not equals:
            parser.error(f"--var wants NAME=VALUE, got {item!r}")
        overrides[name] = value
    args.warehouse.mkdir(parents=True, exist_ok=True)
    try:
        jobs = load_bundle_files(args.bundle or bundle_job_files(), local_variables(overrides))
    except BundleError as exc:
        print(f"python -m local_world jobs-api: {exc}", file=sys.stderr)
        return exits.CONFIG
    storage = None
    if args.azure_storage or args.gcs_endpoint:
        storage = SourceStorage(args.azure_storage, args.gcs_endpoint, args.azure_archive_storage)

    try:
        server = LocalJobsServer(
            jobs,
            args.state_dir,
            storage=storage,
            workdir=repository_root(),
            host=args.host,
            port=args.port,
            spark=args.spark,
            warehouse=args.warehouse,
            notify=print_line,
            fault_injection=args.fault_injection,
            retry_interval_ms=args.retry_interval_ms,
        )
    except (FolderInUse, RunFileUnreadable) as exc:
        print(f"python -m local_world jobs-api: {exc}", file=sys.stderr)
        return exits.FAILED
    except OSError as exc:
        print(f"python -m local_world jobs-api: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return exits.FAILED

    stop = stop_requested()
    # The socket listens from construction on; the address goes first, before runs an earlier server
    # left queued start and report.
    print(f"Local Jobs API on {server.url} (state in {args.state_dir}, Spark: {args.spark})", flush=True)
    for line in created_jobs(jobs):
        print(f"  {line}", flush=True)
    if args.retry_interval_ms is not None:
        print(f"  Task retries wait {args.retry_interval_ms} ms (--retry-interval-ms), not the bundle's", flush=True)
    # A server killed with kill -9 could not stop its Spark Connect server; this one holds the state
    # folder's lock now, so what is recorded there is an orphan. Not below it: --state-dir may be a
    # parent of a running demo's folder (start() stops the tasks recorded under its own logs).
    for line in stop_leftovers(server.state_dir, nested=False):
        print(line, flush=True)
    server.start()
    try:
        stop.wait()
    finally:
        server.stop()
    return exits.OK


def _port(text: str) -> int:
    """A TCP port number, 0 to 65535 (0: any free one)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 0 to 65535")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local_world jobs-api", description=__doc__)
    parser.add_argument("--port", type=_port, default=0, help="port to listen on (0: a free one, printed at start)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--state-dir", type=Path, default=Path(".filegate/jobs"), help="runs, tokens and logs")
    parser.add_argument("--warehouse", type=Path, default=Path(".filegate/warehouse"), help="local warehouse folder")
    parser.add_argument(
        "--bundle",
        type=Path,
        action="append",
        default=None,
        help="bundle job file, repeatable (default: every job file of the repository's bundle)",
    )
    parser.add_argument("--azure-storage", default=None, help="Azurite connection string to read abfss:// inputs")
    parser.add_argument(
        "--azure-archive-storage", default=None, help="Azurite connection string of the archive's own account, if any"
    )
    parser.add_argument("--gcs-endpoint", default=None, help="GCS emulator URL to read gs:// inputs")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a bundle variable")
    parser.add_argument(
        "--spark",
        choices=SPARK_MODES,
        default=CONNECT,
        help="connect (default): the tasks share one Spark Connect server, started on the first task; "
        "classic: every task starts its own local Spark (the fallback when Connect cannot start)",
    )
    parser.add_argument(
        "--retry-interval-ms",
        type=_milliseconds,
        default=None,
        metavar="MS",
        help="start a retry MS after the failed attempt started, instead of the task's min_retry_interval_millis "
        "(the retries themselves still follow max_retries)",
    )
    parser.add_argument(
        "--fault-injection",
        action="store_true",
        help="test hook: accept programmed faults on /_local/faults and list requests on /_local/requests",
    )
    return parser


def _milliseconds(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value
