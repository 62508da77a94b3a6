"""The local run pages: what a `run_page_url` opens (state, timings, parameters, task logs), and the run index."""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

from local_world.jobs_api._tasks import read_tail

if TYPE_CHECKING:
    from local_world.jobs_api._server import LocalJobsServer

LOG_TAIL_BYTES = 64 * 1024

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#1b1b1b}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}
pre{background:#f6f6f6;padding:.8em;overflow:auto;max-height:30em;white-space:pre-wrap}
.SUCCESS{color:#1a7f37}.FAILED,.UPSTREAM_FAILED,.CANCELED{color:#cf222e}.RUNNING,.QUEUED{color:#9a6700}
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


def index_page(app: LocalJobsServer) -> str:
    """All jobs and the newest runs; refreshes while a run is active."""
    rows = []
    for run in app.runs()[:200]:
        parameters = ", ".join(f"{p['name']}={p['value']}" for p in run["job_parameters"])
        rows.append(
            f'<tr><td><a href="/runs/{run["run_id"]}">{run["run_id"]}</a></td><td>{html.escape(run["run_name"])}'
            f" #{run['number_in_job']}</td><td>{_outcome(run)}</td><td>{_when(run['start_time'])}</td>"
            f"<td>{_seconds(run.get('queue_duration'))}</td><td>{_seconds(_ran_for(run))}</td>"
            f"<td>{html.escape(parameters)}</td></tr>"
        )
    jobs = "".join(
        f"<li>{job.job_id}: {html.escape(job.name)} ({len(job.tasks)} tasks)</li>" for job in app.jobs.values()
    )
    table = (
        "<table><tr><th>Run</th><th>Job</th><th>State</th><th>Started</th><th>Queued</th><th>Duration</th>"
        "<th>Parameters</th></tr>" + "".join(rows) + "</table>"
        if rows
        else "<p>No runs yet.</p>"
    )
    active = any(r["status"]["state"] != "TERMINATED" for r in app.runs()[:200])
    body = f"<h1>Local Jobs API</h1><ul>{jobs}</ul><h2>Recent runs</h2>{table}"
    return page_html("Local Jobs API", body, refresh=active)


def run_page(app: LocalJobsServer, run_id: int) -> str | None:
    """One run with its tasks and their logs; None when there is no such run."""
    try:
        run = app.run(run_id)
    except KeyError:
        return None
    snapshot = app.store.snapshot(run_id) or {}
    logs = {task["task_key"]: task["log_file"] for task in snapshot.get("tasks", [])}
    interruptions = snapshot.get("interruptions", 0)
    termination = run["status"].get("termination_details") or {}
    message = termination.get("message") or run["state"].get("state_message", "")
    task_messages = [(t["status"].get("termination_details") or {}).get("message", "") for t in run.get("tasks", [])]
    if any(m and (m in message or message in m) for m in task_messages):
        message = ""  # the failed task's section shows its error, once
    facts = [
        ("Job", f"{run['run_name']} (job {run['job_id']}, run #{run['number_in_job']})"),
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
        f"<tr><td>{html.escape(p['name'])}</td><td>{html.escape(p['value'])}</td><td>{html.escape(p['default'])}</td></tr>"
        for p in run["job_parameters"]
    )
    tasks = []
    for task in run.get("tasks", []):
        message = (task["status"].get("termination_details") or {}).get("message", "")
        log_file = logs.get(task["task_key"], "")
        tasks.append(
            f'<h3 id="task-{html.escape(task["task_key"])}">{html.escape(task["task_key"])}: {_outcome(task)}'
            f" <small>{_seconds(task.get('execution_duration'))}</small></h3>"
            + (f"<p>{html.escape(message)}</p>" if message else "")
            + (f"<p><small>log: {html.escape(log_file)}</small></p>" if log_file else "")
            + f"<pre>{html.escape(_log_text(log_file))}</pre>"
        )
    body = (
        f'<p><a href="/">All runs</a></p><h1>Run {run["run_id"]}</h1><table>{rows}</table>'
        f"<h2>Parameters</h2><table><tr><th>Name</th><th>Value</th><th>Default</th></tr>{parameters}</table>"
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
