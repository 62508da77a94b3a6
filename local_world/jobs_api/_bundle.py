"""The jobs a Databricks bundle declares, read from its YAML so the local world runs what the bundle deploys."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filegate.errors import FilegateError

log = logging.getLogger("local_world.jobs_api")

_VARIABLE = re.compile(r"\$\{var\.([A-Za-z0-9_-]+)\}")
_REFERENCE = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
# Keys a bundle accepts that the Jobs API never returns in job settings.
_BUNDLE_ONLY_KEYS = frozenset({"permissions"})


class BundleError(FilegateError):
    """The bundle file cannot be read as jobs, or a run refers to something the job does not declare."""


@dataclass(frozen=True)
class TaskSpec:
    """One task of a job, as the bundle declares it (variables already substituted).

    The retry and timeout settings mean what they mean on Databricks: `max_retries` -1 retries
    without end, `timeout_seconds` 0 is no timeout.
    """

    task_key: str
    kind: str
    declared_file: str
    python_file: Path | None
    parameters: tuple[str, ...]
    depends_on: tuple[str, ...]
    settings: Mapping[str, Any]
    max_retries: int = 0
    min_retry_interval_millis: int = 0
    retry_on_timeout: bool = False
    timeout_seconds: int = 0

    def retries_left(self, attempt_number: int) -> bool:
        """Whether a failed attempt with this number may be followed by another."""
        return self.max_retries < 0 or attempt_number < self.max_retries


@dataclass(frozen=True)
class JobSpec:
    """A job: its parameters with defaults, its tasks in execution order, and its settings for `jobs/get`."""

    job_id: int
    key: str
    name: str
    parameters: tuple[tuple[str, str], ...]
    tasks: tuple[TaskSpec, ...]
    queue_enabled: bool
    settings: Mapping[str, Any]
    timeout_seconds: int = 0

    def defaults(self) -> dict[str, str]:
        """The job's parameters with their default values."""
        return dict(self.parameters)

    @property
    def max_concurrent_runs(self) -> int:
        """How many runs of the job may execute at once (the bundle's `max_concurrent_runs`, 1 by default)."""
        return int(self.settings.get("max_concurrent_runs", 1))


def load_bundle(path: Path, variables: Mapping[str, str] | None = None, first_job_id: int = 1) -> tuple[JobSpec, ...]:
    """Read every job under `resources.jobs` of a bundle file; job ids count from `first_job_id` in file order."""
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BundleError(f"cannot read bundle file {path}: {exc}") from exc
    jobs = _mapping(_mapping(document, "the file").get("resources"), "resources").get("jobs")
    if not isinstance(jobs, Mapping) or not jobs:
        raise BundleError(f"{path} declares no jobs under resources.jobs")
    values = {**_bundle_variable_defaults(path), **(variables or {})}
    specs = []
    for offset, (key, declared) in enumerate(jobs.items()):
        settings = _substitute_variables(_mapping(declared, f"job {key}"), values, path)
        specs.append(_job_spec(first_job_id + offset, str(key), settings, path.parent))
    return tuple(specs)


def load_bundle_files(paths: Sequence[Path], variables: Mapping[str, str] | None = None) -> tuple[JobSpec, ...]:
    """The jobs of several bundle files (the bundle's `include`), ids counting on from the first file's."""
    jobs: list[JobSpec] = []
    for path in paths:
        jobs.extend(load_bundle(path, variables, first_job_id=len(jobs) + 1))
    names = [job.name for job in jobs]
    for name in sorted({name for name in names if names.count(name) > 1}):
        raise BundleError(f"two bundle jobs are named {name!r}: run-now by name could not tell them apart")
    return tuple(jobs)


def resolve_references(arguments: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Replace `{{job.parameters.x}}` and the other dynamic value references, failing on unknown ones."""
    unknown: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        unknown.append(name)
        return match.group(0)

    resolved = [_REFERENCE.sub(replace, argument) for argument in arguments]
    if unknown:
        raise BundleError(f"unknown dynamic value reference(s): {', '.join('{{' + n + '}}' for n in unknown)}")
    return resolved


def references(arguments: Sequence[str]) -> set[str]:
    """The dynamic value references that arguments use."""
    return {match.group(1) for argument in arguments for match in _REFERENCE.finditer(argument)}


def _job_spec(job_id: int, key: str, settings: Mapping[str, Any], base: Path) -> JobSpec:
    name = str(settings.get("name") or key)
    parameters = []
    for declared in _sequence(settings.get("parameters"), f"job {key} parameters"):
        entry = _mapping(declared, f"a parameter of job {key}")
        if "name" not in entry:
            raise BundleError(f"a parameter of job {key} has no name")
        default = entry.get("default")
        parameters.append((str(entry["name"]), "" if default is None else _text(default)))
    tasks = [_task_spec(_mapping(task, f"a task of job {key}"), base) for task in settings.get("tasks") or ()]
    if not tasks:
        raise BundleError(f"job {key} declares no tasks")
    queue = settings.get("queue")
    # Jobs created through API 2.2 and bundles queue by default; only an explicit `enabled: false` turns it off.
    queue_enabled = not (isinstance(queue, Mapping) and queue.get("enabled") is False)
    api_settings = {k: v for k, v in settings.items() if k not in _BUNDLE_ONLY_KEYS}
    api_settings.setdefault("format", "MULTI_TASK")
    api_settings.setdefault("max_concurrent_runs", 1)
    concurrent = api_settings["max_concurrent_runs"]
    if isinstance(concurrent, bool) or not isinstance(concurrent, int) or not 0 <= concurrent <= 1000:
        raise BundleError(f"job {key}: max_concurrent_runs must be a whole number from 0 to 1000, got {concurrent!r}")
    ordered = _in_dependency_order(tasks, key)
    timeout = _count(settings, "timeout_seconds", f"job {key}")
    return JobSpec(job_id, key, name, tuple(parameters), ordered, queue_enabled, api_settings, timeout)


def _task_spec(task: Mapping[str, Any], base: Path) -> TaskSpec:
    task_key = str(task.get("task_key") or "")
    if not task_key:
        raise BundleError("a task has no task_key")
    kinds = [k for k in task if k.endswith("_task") and isinstance(task[k], Mapping)]
    kind = kinds[0] if kinds else "unknown"
    body: Mapping[str, Any] = task[kind] if kinds else {}
    declared = str(body.get("python_file") or "")
    python_file = None
    if declared and "${" not in declared:
        python_file = (base / declared).resolve() if not Path(declared).is_absolute() else Path(declared)
    depends_on = tuple(
        str(_mapping(dependency, f"depends_on of {task_key}").get("task_key"))
        for dependency in _sequence(task.get("depends_on"), f"depends_on of {task_key}")
    )
    parameters = tuple(_text(p) for p in _sequence(body.get("parameters"), f"parameters of {task_key}"))
    # Settings that change whether a task runs, which the worker does not model: refused, not run otherwise.
    unmodelled = [
        f"{key}: {str(task[key]).lower() if isinstance(task[key], bool) else task[key]}"  # as the YAML says it
        for key, default in (("run_if", "ALL_SUCCESS"), ("disabled", False))
        if task.get(key, default) != default
    ]
    if unmodelled:
        raise BundleError(
            f"task {task_key}: the local Jobs API runs a task once all it depends on succeeded (run_if ALL_SUCCESS, "
            f"not disabled); remove {' and '.join(unmodelled)} from the bundle, or teach the local worker them"
        )
    retry_on_timeout = task.get("retry_on_timeout", False)
    if not isinstance(retry_on_timeout, bool):
        raise BundleError(f"retry_on_timeout of task {task_key} must be true or false, got {retry_on_timeout!r}")
    return TaskSpec(
        task_key,
        kind,
        declared,
        python_file,
        parameters,
        depends_on,
        task,
        max_retries=_count(task, "max_retries", f"task {task_key}", minimum=-1),
        min_retry_interval_millis=_count(task, "min_retry_interval_millis", f"task {task_key}"),
        retry_on_timeout=retry_on_timeout,
        timeout_seconds=_count(task, "timeout_seconds", f"task {task_key}"),
    )


def _in_dependency_order(tasks: list[TaskSpec], job_key: str) -> tuple[TaskSpec, ...]:
    keys = {task.task_key for task in tasks}
    for task in tasks:
        missing = [d for d in task.depends_on if d not in keys]
        if missing:
            raise BundleError(f"task {task.task_key} of job {job_key} depends on unknown task(s) {missing}")
    ordered: list[TaskSpec] = []
    placed: set[str] = set()
    # Stable: among tasks whose dependencies are met, the one declared first runs first.
    while len(ordered) < len(tasks):
        ready = [t for t in tasks if t.task_key not in placed and set(t.depends_on) <= placed]
        if not ready:
            raise BundleError(f"the tasks of job {job_key} depend on each other in a cycle")
        ordered.append(ready[0])
        placed.add(ready[0].task_key)
    return tuple(ordered)


def _bundle_variable_defaults(path: Path) -> dict[str, Any]:
    """Variable defaults from the bundle root's databricks.yml, found in the folder of `path` or above it."""
    import yaml

    for folder in (path.parent, *path.parent.parents[:3]):
        root = folder / "databricks.yml"
        if root.is_file():
            try:
                document = yaml.safe_load(root.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise BundleError(f"cannot read bundle root {root}: {exc}") from exc
            declared = document.get("variables") if isinstance(document, Mapping) else None
            if not isinstance(declared, Mapping):
                return {}
            return {
                str(name): _variable_value(spec["default"])
                for name, spec in declared.items()
                if isinstance(spec, Mapping) and spec.get("default") is not None
            }
    return {}


def _variable_value(value: Any) -> Any:
    # A complex variable (`type: complex`) keeps its list or mapping: a field set to it gets that object.
    return value if isinstance(value, (Mapping, list)) else _text(value)


def _substitute_variables(value: Any, variables: Mapping[str, Any], path: Path) -> Any:
    if isinstance(value, str):
        whole = _VARIABLE.fullmatch(value)
        if whole is not None and whole.group(1) in variables:
            # As the Databricks CLI does: a value that is nothing but a reference takes the variable's value
            # as it is, so `on_failure: ${var.failure_emails}` is a list, not the text "[]".
            return _substitute_variables(variables[whole.group(1)], variables, path)

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                if not isinstance(variables[name], str):
                    raise BundleError(f"bundle {path}: variable {name} is complex; only a whole value can refer to it")
                return str(variables[name])
            # Tolerated: a variable the local world does not need (say, a warehouse id) stays as written.
            log.warning("bundle %s: variable %s has no local value; left as written", path, name)
            return match.group(0)

        return _VARIABLE.sub(replace, value)
    if isinstance(value, Mapping):
        return {str(k): _substitute_variables(v, variables, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_variables(v, variables, path) for v in value]
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return str(value)  # dates and other YAML scalars, so settings stay JSON


def _count(settings: Mapping[str, Any], key: str, owner: str, *, minimum: int = 0) -> int:
    """A whole-number setting, 0 when absent; a variable substituted into it arrives as text."""
    value = settings.get(key, 0)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BundleError(f"{key} of {owner} must be a whole number of at least {minimum}, got {value!r}")
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BundleError(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def _sequence(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BundleError(f"{what} must be a list, got {type(value).__name__}")
    return value
