"""The local run pages: what a `run_page_url` opens, laid out like a Databricks job run page (the task graph
with states and durations, parameters, a batch's sealed members, each task's output, error and rows
written), and the run index."""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from filegate.tables import PROCESSING_LOG
from local_world.jobs_api._api import task_anchor
from local_world.jobs_api._bundle import JobSpec
from local_world.jobs_api._runs import RunStore
from local_world.jobs_api._tasks import read_tail


class PageHost(Protocol):
    """What the pages need of the server (a protocol, so that the server imports the pages, not both ways)."""

    store: RunStore

    @property
    def jobs(self) -> Mapping[int, JobSpec]: ...

    state_dir: Path
    warehouse: Path | None

    def runs(self, job_id: int | None = None) -> list[dict[str, Any]]: ...

    def run(self, run_id: int) -> dict[str, Any]: ...


log = logging.getLogger("local_world.jobs_api")

LOG_TAIL_BYTES = 64 * 1024
# The run list shows a parameter value up to this many characters; the cell's title holds all of it.
PARAMETER_SHOWN = 60
# A member file served from a run's inputs is cut here: the page is for looking, not for downloading.
MEMBER_BYTES = 1024 * 1024
# The processing log's counts, in the order a task section shows them (only those some row has).
_COUNTS = (
    "rows_read",
    "rows_rejected",
    "rows_quarantined",
    "rows_superseded",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "rows_deleted",
)

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#1b1b1b}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}
table.runs{width:100%;table-layout:fixed}table.runs td{overflow:hidden;text-overflow:ellipsis}
table.runs td.params{white-space:normal}
table.runs td.params div{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
td.value{overflow-wrap:anywhere}td.num,th.num{text-align:right}
pre{background:#f6f6f6;padding:.8em;overflow:auto;max-height:30em;white-space:pre-wrap}
.graph{display:flex;flex-wrap:wrap;align-items:center;gap:.4em;margin:.5em 0 1.5em}
.node{border:1px solid #bbb;border-radius:6px;padding:.4em .8em;min-width:9em;text-decoration:none;color:inherit}
.node small{display:block;color:#555}.edge{color:#888}
.SUCCESS{color:#1a7f37}.FAILED,.UPSTREAM_FAILED,.CANCELED,.TIMEDOUT{color:#cf222e}.RUNNING,.QUEUED,.PENDING,.WAITING{color:#9a6700}
.node.SUCCESS{border-color:#1a7f37}.node.FAILED,.node.UPSTREAM_FAILED,.node.CANCELED,.node.TIMEDOUT{border-color:#cf222e}
.node.RUNNING,.node.WAITING{border-color:#9a6700}
"""


def page_html(title: str, body: str, *, refresh: bool = False) -> str:
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


def _ran_for(item: dict[str, Any]) -> int | None:
    """Run time without the wait in the job's queue: what `filegate status` shows under DURATION."""
    total = item.get("run_duration")
    return max(total - (item.get("queue_duration") or 0), 0) if total is not None else None


def index_page(app: PageHost) -> str:
    """All jobs and the newest runs; refreshes while a run is active."""
    rows = []
    for run in app.runs()[:200]:
        rows.append(
            f'<tr><td><a href="/runs/{run["run_id"]}">{run["run_id"]}</a></td><td>{html.escape(run["run_name"])}'
            f"</td><td>{_outcome(run)}</td><td>{_when(run['start_time'])}</td>"
            f"<td>{_seconds(run.get('queue_duration'))}</td><td>{_seconds(_ran_for(run))}</td>"
            f'<td class="params">{_listed_parameters(run)}</td></tr>'
        )
    jobs = "".join(
        f"<li>{job.job_id}: {html.escape(job.name)} ({len(job.tasks)} tasks)</li>" for job in app.jobs.values()
    )
    # Fixed column widths: a long parameter (a URI) is cut with an ellipsis instead of widening the page.
    columns = "".join(
        f'<col style="width:{width}">' for width in ("6em", "11em", "7em", "11em", "5.5em", "6em", "auto")
    )
    table = (
        f'<table class="runs"><colgroup>{columns}</colgroup><tr><th>Run</th><th>Job</th><th>State</th>'
        "<th>Started</th><th>Queued</th><th>Duration</th><th>Parameters</th></tr>" + "".join(rows) + "</table>"
        if rows
        else "<p>No runs yet.</p>"
    )
    active = any(r["status"]["state"] != "TERMINATED" for r in app.runs()[:200])
    body = f"<h1>Local Jobs API</h1><ul>{jobs}</ul><h2>Recent runs</h2>{table}"
    return page_html("Local Jobs API", body, refresh=active)


def _listed_parameters(run: dict[str, Any]) -> str:
    """A run's parameters, one a line, each cut to what fits; the full value is the line's title (on hover)."""
    lines = []
    for parameter in run["job_parameters"]:
        full = f"{parameter['name']}={parameter['value']}"
        shown = full if len(full) <= PARAMETER_SHOWN else full[: PARAMETER_SHOWN - 1] + "\u2026"
        lines.append(f'<div title="{html.escape(full)}">{html.escape(shown)}</div>')
    return "".join(lines)


def run_page(app: PageHost, run_id: int) -> str | None:
    """One run with its tasks and their logs; None when there is no such run."""
    try:
        run = app.run(run_id)
    except KeyError:
        return None
    snapshot = app.store.snapshot(run_id)
    logs = {task.run_id: task.log_file for task in snapshot.tasks} if snapshot else {}
    interruptions = snapshot.interruptions if snapshot else 0
    termination = run["status"].get("termination_details") or {}
    message = termination.get("message") or run["state"].get("state_message", "")
    task_messages = [(t["status"].get("termination_details") or {}).get("message", "") for t in run.get("tasks", [])]
    if any(m and (m in message or message in m) for m in task_messages):
        message = ""  # the failed task's section shows its error, once
    facts = [
        ("Job", f"{run['run_name']} (job {run['job_id']})"),
        ("State", run["status"]["state"]),
        ("Result", run["state"].get("result_state", "")),
        ("Message", message),
        ("Triggered", _when(run["start_time"])),
        ("Queued", _seconds(run.get("queue_duration"))),
        ("Duration", _seconds(_ran_for(run))),
        ("Ended", _when(run["end_time"])),
        ("Interrupted", f"{interruptions} time(s) by a stop of the local Jobs API, then run again"),
    ]
    if not interruptions:
        facts.pop()
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    parameters = "".join(
        f'<tr><td>{html.escape(p["name"])}</td><td class="value">{html.escape(p["value"])}</td>'
        f'<td class="value">{html.escape(p["default"])}</td></tr>'
        for p in run["job_parameters"]
    )
    batch = next((p["value"] for p in run["job_parameters"] if p["name"] == "batch_id"), None)
    written = rows_written(app, run_id, batch)
    latest = _latest_attempts(run.get("tasks", []))
    tasks = []
    for task in run.get("tasks", []):
        message = (task["status"].get("termination_details") or {}).get("message", "")
        log_file = logs.get(task["run_id"], "")
        key, attempt = task["task_key"], task.get("attempt_number", 0)
        # Each attempt's own section, as Databricks lists a retried task's runs; the rows the task
        # logged (each row names its attempt) under its latest.
        rows_logged = written.get(key, []) if latest[key] is task else []
        tasks.append(
            f'<h3 id="{html.escape(task_anchor(key, attempt))}">{html.escape(key)}'
            f"{f' (retry {attempt})' if attempt else ''}: {_outcome(task)}"
            f" <small>{_seconds(task.get('execution_duration'))}</small></h3>"
            + (f'<p class="FAILED">Error: {html.escape(message)}</p>' if message else "")
            + _rows_table(rows_logged)
            + (f"<p><small>output (log): {html.escape(log_file)}</small></p>" if log_file else "")
            + f"<pre>{html.escape(_log_text(log_file))}</pre>"
        )
    body = (
        f'<p><a href="/">All runs</a></p><h1>Run {run["run_id"]}</h1><table>{rows}</table>'
        f"<h2>Task graph</h2>{task_graph(run.get('tasks', []))}"
        f"<h2>Parameters</h2><table><tr><th>Name</th><th>Value</th><th>Default</th></tr>{parameters}</table>"
        f"{_members_section(app, run_id)}"
        f"<h2>Tasks</h2>{''.join(tasks)}"
    )
    return page_html(f"Run {run_id}", body, refresh=run["status"]["state"] != "TERMINATED")


def _log_text(path: str) -> str:
    if not path:
        return "(no log: the task did not start)"
    text, truncated = read_tail(path, LOG_TAIL_BYTES)
    if text is None:
        return "(no log yet)"
    return f"... (last {LOG_TAIL_BYTES // 1024} KiB)\n{text}" if truncated else text


def _latest_attempts(tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each task's latest attempt, by task key in run order."""
    latest: dict[str, dict[str, Any]] = {}
    for task in tasks:
        latest[str(task["task_key"])] = task
    return latest


def task_graph(tasks: list[dict[str, Any]]) -> str:
    """The tasks in run order, each a box with its state and duration, joined by arrows to the tasks they need.

    A retried task is one box, showing its latest attempt and how many there were. A task that needs one
    other than the box before it names it (`after x`): the graph of a job with branches still reads left
    to right.
    """
    if not tasks:
        return "<p>No tasks.</p>"
    parts = []
    previous = None
    for task in _latest_attempts(tasks).values():
        key = str(task["task_key"])
        needs = [str(d["task_key"]) for d in task.get("depends_on") or []]
        state = task["state"].get("result_state") or task["status"]["state"]
        if previous is not None:
            parts.append('<span class="edge">\u2192</span>' if needs else '<span class="edge">|</span>')
        after = [n for n in needs if n != previous]
        note = f"<small>after {html.escape(', '.join(after))}</small>" if after else ""
        attempts = int(task.get("attempt_number") or 0) + 1
        if attempts > 1:
            note += f"<small>{attempts} attempts</small>"
        anchor = task_anchor(key, attempts - 1)
        parts.append(
            f'<a class="node {html.escape(state)}" href="#{html.escape(anchor)}"><b>{html.escape(key)}</b>'
            f'<small class="{html.escape(state)}">{html.escape(state)}</small>'
            f"<small>{_seconds(task.get('execution_duration')) or '&nbsp;'}</small>{note}</a>"
        )
        previous = key
    return f'<div class="graph">{"".join(parts)}</div>'


def sealed_manifest(app: PageHost, run_id: int) -> dict[str, Any] | None:
    """The sealed batch manifest a run was given, as the local Jobs API fetched it (members with local copies)."""
    folder = Path(app.state_dir) / "inputs" / str(run_id)
    found = sorted(folder.glob("_sealed.r*.json")) if folder.is_dir() else []
    if not found:
        return None
    try:
        document: dict[str, Any] = json.loads(found[-1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document


def member_file(app: PageHost, run_id: int, dataset: str) -> Path | None:
    """The local copy of one member of a run's sealed batch, fetched from the archive when the run started."""
    manifest = sealed_manifest(app, run_id)
    for member in (manifest or {}).get("members", []):
        if member.get("dataset") == dataset and member.get("local_path"):
            path = Path(str(member["local_path"]))
            inputs = (Path(app.state_dir) / "inputs" / str(run_id)).resolve()
            # Only files under the run's own inputs: the manifest is data, not a licence to read anything.
            if path.resolve().is_relative_to(inputs) and path.is_file():
                return path
    return None


def member_page(app: PageHost, run_id: int, dataset: str) -> bytes | None:
    """The bytes of a member file as archived (up to MEMBER_BYTES), or None when the run has no such member."""
    path = member_file(app, run_id, dataset)
    if path is None:
        return None
    with path.open("rb") as handle:
        data = handle.read(MEMBER_BYTES + 1)
    if len(data) > MEMBER_BYTES:
        data = (
            data[:MEMBER_BYTES] + f"\n... (first {MEMBER_BYTES // 1024} KiB of {path.stat().st_size} bytes)\n".encode()
        )
    return data


def _members_section(app: PageHost, run_id: int) -> str:
    manifest = sealed_manifest(app, run_id)
    if manifest is None:
        return ""
    facts = [
        ("Batch", manifest.get("batch_id", "")),
        ("Pipeline", manifest.get("pipeline", "")),
        ("Business date", manifest.get("business_date", "")),
        ("Revision", manifest.get("revision", "")),
        ("Sealed at", manifest.get("sealed_at", "")),
        ("Partial", "yes: missing " + ", ".join(manifest.get("missing") or []) if manifest.get("partial") else "no"),
    ]
    head = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    rows = []
    for member in manifest.get("members", []):
        dataset = str(member.get("dataset", ""))
        archived = f"{member.get('container', '')}/{member.get('path', '')}"
        link = f"/runs/{run_id}/members/{quote(dataset)}"
        shown = f'<a href="{link}">{html.escape(archived)}</a>' if member.get("local_path") else html.escape(archived)
        superseded = ", ".join(member.get("superseded") or [])
        rows.append(
            f'<tr><td>{html.escape(dataset)}</td><td class="value">{shown}</td>'
            f'<td class="num">{html.escape(str(member.get("size", "")))}</td>'
            f'<td class="num">{html.escape(str(member.get("expected_rows") or ""))}</td>'
            f'<td class="value">{html.escape(superseded)}</td></tr>'
        )
    return (
        f"<h2>Sealed batch</h2><table>{head}</table>"
        '<table><tr><th>Member</th><th>Archived file</th><th class="num">Bytes</th>'
        f'<th class="num">Rows (trigger)</th><th>Superseded versions</th></tr>{"".join(rows)}</table>'
    )


def rows_written(app: PageHost, run_id: int, batch_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The processing log's rows of one run, by task: what each task read and wrote.

    The ingest job's rows carry no run id, only the run's `batch_id` parameter: those are matched by it.
    """
    warehouse = app.warehouse
    if warehouse is None:
        return {}
    from local_world.jobs_api import local_table

    path = local_table(warehouse, PROCESSING_LOG)
    try:
        import pyarrow as pa
        from deltalake import DeltaTable, QueryBuilder

        if not DeltaTable.is_deltatable(str(path)):
            return {}
        # delta-rs' query engine applies the deletion vectors Delta Lake on Spark writes.
        query = f"SELECT * FROM t WHERE run_id = {int(run_id)} OR run_id IS NULL"  # noqa: S608 - an int, not text
        rows: list[dict[str, Any]] = pa.table(
            QueryBuilder().register("t", DeltaTable(str(path))).execute(query).read_all()
        ).to_pylist()
    except Exception as exc:  # a page must render even while a task rewrites the table
        log.info("processing log of run %s not readable: %s", run_id, exc)
        return {}
    rows = [row for row in rows if row.get("run_id") is not None or (batch_id and row.get("batch_id") == batch_id)]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (r.get("attempt") or 0, str(r.get("dataset") or r.get("table_name")))):
        by_task.setdefault(str(row.get("task")), []).append(row)
    return by_task


def _rows_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    counts = [c for c in _COUNTS if any(row.get(c) is not None for row in rows)]
    head = "".join(f'<th class="num">{html.escape(c.removeprefix("rows_"))}</th>' for c in counts)
    body = []
    for row in rows:
        what = row.get("dataset") or row.get("table_name") or str(row.get("source_file") or "").rsplit("/", 1)[-1]
        cells = "".join(f'<td class="num">{"" if row.get(c) is None else row[c]}</td>' for c in counts)
        attempt = row.get("attempt")
        body.append(
            f"<tr><td>{html.escape(str(what))}</td><td>{html.escape(str(attempt or ''))}</td>"
            f'<td class="{html.escape(str(row.get("status")))}">{html.escape(str(row.get("status")))}</td>{cells}</tr>'
        )
    return f"<table><tr><th>Rows: dataset / table</th><th>Attempt</th><th>Status</th>{head}</tr>{''.join(body)}</table>"
