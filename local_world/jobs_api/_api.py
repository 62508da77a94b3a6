"""Runs and jobs rendered as Jobs API 2.2 JSON, field for field as `runs/get`, `runs/list`, `runs/get-output`
and `jobs/get` answer."""

from __future__ import annotations

from typing import Any

from local_world.jobs_api._bundle import JobSpec, TaskSpec
from local_world.jobs_api._runs import QUEUED, TERMINATED, WAITING_FOR_RETRY, RunRecord, TaskRecord, Termination
from local_world.jobs_api._tasks import read_tail

LOCAL_USER = "local@filegate"
# A task's settings that runs/get repeats in each of its task runs, as Databricks does.
_TASK_SETTINGS = ("max_retries", "min_retry_interval_millis", "retry_on_timeout", "timeout_seconds")
# runs/get-output returns at most the last 5 MB of a task's logs.
OUTPUT_LOG_BYTES = 5 * 1024 * 1024


def run_json(run: RunRecord, job: JobSpec | None, base_url: str, *, with_tasks: bool = True) -> dict[str, Any]:
    """A run as `runs/get` returns it."""
    termination = run.termination
    ended = run.state == TERMINATED
    body: dict[str, Any] = {
        "job_id": run.job_id,
        "run_id": run.run_id,
        "number_in_job": run.run_id,  # Databricks sets it to the run id (it counts nothing per job)
        "original_attempt_run_id": run.run_id,
        "attempt_number": 0,
        "run_name": run.run_name,
        "creator_user_name": LOCAL_USER,
        "run_type": "JOB_RUN",
        "trigger": "ONE_TIME",
        "format": "MULTI_TASK",
        "state": _legacy_state(run.state, termination, queued_message="Waiting for the job's active run to end."),
        "status": _status(run.state, termination),
        "start_time": run.start_time,
        "end_time": run.end_time,
        "setup_duration": 0,
        "cleanup_duration": 0,
        "run_page_url": f"{base_url}/runs/{run.run_id}",
        "job_parameters": _job_parameters(run.parameters, job),
        "has_more": False,
    }
    if run.running_time:
        body["queue_duration"] = run.running_time - run.start_time
    if ended:
        body["execution_duration"] = run.end_time - run.running_time
        body["run_duration"] = run.end_time - run.start_time
    if with_tasks:
        specs = {task.task_key: task for task in job.tasks} if job else {}
        body["tasks"] = [_task_json(task, specs.get(task.task_key), body["run_page_url"]) for task in run.tasks]
    return body


def without_legacy_state(body: dict[str, Any]) -> dict[str, Any]:
    """A run, task run or run output as Databricks answers once it no longer sends the deprecated `state`
    (the SDK marks it deprecated: use `status`), so that clients can be held to reading `status` alone."""
    stripped = {key: value for key, value in body.items() if key != "state"}
    if isinstance(stripped.get("tasks"), list):
        stripped["tasks"] = [without_legacy_state(task) for task in stripped["tasks"]]
    if isinstance(stripped.get("metadata"), dict):
        stripped["metadata"] = without_legacy_state(stripped["metadata"])
    return stripped


def output_json(run: RunRecord, task: TaskRecord, job: JobSpec | None, base_url: str) -> dict[str, Any]:
    """What `runs/get-output` answers for one task run: its metadata, and once it failed or timed out its error
    (a timeout's is its state message) and trace."""
    specs = {spec.task_key: spec for spec in job.tasks} if job else {}
    metadata = _task_json(task, specs.get(task.task_key), f"{base_url}/runs/{run.run_id}")
    first = next(t for t in run.tasks if t.task_key == task.task_key)
    metadata.update(
        job_id=run.job_id,
        run_name=run.run_name,
        number_in_job=run.run_id,
        original_attempt_run_id=first.run_id,
        creator_user_name=LOCAL_USER,
        job_parameters=_job_parameters(run.parameters, job),
    )
    body: dict[str, Any] = {"metadata": metadata}
    termination = task.termination
    if termination is not None and termination.failed:
        body["error"] = task.error or termination.message
        if task.error_trace:
            body["error_trace"] = task.error_trace
    if task.log_file:
        logs, truncated = read_tail(task.log_file, OUTPUT_LOG_BYTES)
        if logs is not None:
            body["logs"] = logs
            body["logs_truncated"] = truncated
    return body


def job_json(job: JobSpec, created_time: int, *, with_tasks: bool = True) -> dict[str, Any]:
    """A job as `jobs/get` (and, without tasks, `jobs/list`) returns it."""
    settings = dict(job.settings)
    settings["name"] = job.name
    if not with_tasks:
        settings.pop("tasks", None)
        settings.pop("job_clusters", None)
    return {
        "job_id": job.job_id,
        "creator_user_name": LOCAL_USER,
        "run_as_user_name": LOCAL_USER,
        "created_time": created_time,
        "settings": settings,
        "has_more": False,
    }


def _task_json(task: TaskRecord, spec: TaskSpec | None, run_page_url: str) -> dict[str, Any]:
    termination = task.termination
    body: dict[str, Any] = {
        "task_key": task.task_key,
        "run_id": task.run_id,
        "attempt_number": task.attempt_number,
        "state": _legacy_state(task.state, termination, queued_message=""),
        "status": _status(task.state, termination),
        "start_time": task.start_time,
        "end_time": task.end_time,
        "setup_duration": 0,
        "cleanup_duration": 0,
        "queue_duration": 0,
        "run_page_url": f"{run_page_url}#{task_anchor(task.task_key, task.attempt_number)}",
    }
    if task.state == TERMINATED:
        body["execution_duration"] = task.end_time - task.start_time
        body["run_duration"] = body["execution_duration"]
    if spec is not None:
        body["depends_on"] = [{"task_key": key} for key in spec.depends_on]
        # As read from the bundle (a `--var` value is a string there), in the types the API returns.
        body.update({key: getattr(spec, key) for key in _TASK_SETTINGS if key in spec.settings})
        declared = dict(spec.settings.get(spec.kind) or {})
        if task.arguments:
            declared["parameters"] = task.arguments  # the values this run used, references resolved
        body[spec.kind] = declared
    return body


def _legacy_state(state: str, termination: Termination | None, *, queued_message: str) -> dict[str, Any]:
    """The deprecated `state` object that older clients (and the SDK's waiter) still read."""
    legacy: dict[str, Any] = {"life_cycle_state": state, "user_cancelled_or_timedout": False}
    if state == QUEUED:
        legacy["state_message"] = queued_message
        legacy["queue_reason"] = queued_message
    elif state == TERMINATED and termination is not None:
        if termination.result == "MAXIMUM_CONCURRENT_RUNS_REACHED":
            legacy["life_cycle_state"] = "SKIPPED"  # a run that never started, as Databricks reports it
        legacy["result_state"] = termination.result
        legacy["state_message"] = termination.message
        legacy["user_cancelled_or_timedout"] = termination.result in ("CANCELED", "TIMEDOUT")
    else:
        legacy["state_message"] = ""
    return legacy


def task_anchor(task_key: str, attempt_number: int) -> str:
    """Where a task run's section is on its run page: the first attempt under the task's name."""
    return f"task-{task_key}" if attempt_number == 0 else f"task-{task_key}-retry-{attempt_number}"


def _status(state: str, termination: Termination | None) -> dict[str, Any]:
    # WAITING_FOR_RETRY is only the deprecated life cycle's name; status.state calls it WAITING.
    status: dict[str, Any] = {"state": "WAITING" if state == WAITING_FOR_RETRY else state}
    if state == QUEUED:
        status["queue_details"] = {
            "code": "MAX_CONCURRENT_RUNS_REACHED",
            "message": "Queued until one of the job's active runs ends (max_concurrent_runs).",
        }
    if state == TERMINATED and termination is not None:
        status["termination_details"] = {
            "code": termination.code,
            "type": termination.type,
            "message": termination.message,
        }
    return status


def _job_parameters(values: dict[str, str], job: JobSpec | None) -> list[dict[str, str]]:
    defaults = job.defaults() if job else {}
    names = list(defaults) + [name for name in values if name not in defaults]
    return [
        {"name": name, "default": defaults.get(name, ""), "value": values.get(name, defaults.get(name, ""))}
        for name in names
    ]
