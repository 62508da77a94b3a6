"""Pipelines: datasets that arrive together as one batch per business day, announced by a trigger file.

A pipeline TOML (`kind = "pipeline"`) lives beside the dataset contracts. The function reads the keys
below; the Spark batch job reads the same file and everything else in it (rules, tables, params),
which this module keeps as `document` without interpreting it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from filegate.contracts import (
    BUILTIN_DATASETS,
    Contract,
    Contracts,
    compile_file_pattern,
    date_tokens_once,
    distinct_folders,
    is_builtin,
    literal_text_problems,
    overlapping,
    patterns_overlap,
    read_toml,
)
from filegate.errors import ContractError

PIPELINE_KIND = "pipeline"
ON_INCOMPLETE = ("wait", "reject", "load_available")
LATE_MEMBER = ("hold", "rerun")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Keys the function acts on; the rest of the document is the job's business.
_FUNCTION_KEYS = {
    "kind",
    "name",
    "description",
    "trigger_pattern",
    "members",
    "optional_members",
    "manifest_lists_files",
    "complete_within_minutes",
    "on_incomplete",
    "late_member",
}
# Keys the batch job reads (spark_jobs/pipeline_rules.py, spark_jobs/pipeline_tables.py). Any other is refused:
# a misspelt `[[relation]]` would leave its check out without a word.
_KNOWN_KEYS = _FUNCTION_KEYS | {
    "relations",
    "rules",
    "lookups",
    "scoring",
    "params",
    "tables",
    "segments",
    "base_currency",
}


@dataclass(frozen=True)
class Pipeline:
    """Which datasets make one batch, how its trigger is named, and what to do when pieces are missing or late."""

    name: str
    trigger_pattern: str
    members: tuple[str, ...]
    optional_members: tuple[str, ...] = ()
    manifest_lists_files: bool = False
    complete_within_minutes: int = 360
    on_incomplete: str = "wait"
    late_member: str = "hold"
    description: str = ""
    source: Path | None = field(default=None, compare=False)
    document: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def required_members(self) -> tuple[str, ...]:
        return tuple(member for member in self.members if member not in self.optional_members)

    @property
    def trigger_regex(self) -> re.Pattern[str]:
        return compile_file_pattern(self.trigger_pattern)

    def trigger_date(self, file_name: str) -> date | None:
        """The business date a trigger's name carries; ValueError when it is not a calendar date."""
        found = self.trigger_regex.match(file_name)
        if not found:
            return None
        return date(int(found["yyyy"]), int(found["mm"]), int(found["dd"]))

    def batch_folder(self, business_date: date) -> str:
        """Where a batch's trigger, seals and run markers live in the archive. Dataset names cannot
        start with `_`, so this folder never collides with a dataset's."""
        return f"{BATCHES_FOLDER}/{self.name}/{business_date:%Y/%m/%d}/"


BATCHES_FOLDER = "_batches"


class Pipelines(Mapping[str, Pipeline]):
    """The known pipelines, by name, and which pipeline each member dataset belongs to."""

    def __init__(self, pipelines: Mapping[str, Pipeline] | None = None):
        self._by_name = dict(pipelines or {})
        self._by_member = {member: p for p in self._by_name.values() for member in p.members}

    def __getitem__(self, name: str) -> Pipeline:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def of_member(self, dataset: str) -> Pipeline | None:
        """The pipeline a dataset is a member of; None for a standalone dataset (one run per file)."""
        return self._by_member.get(dataset)

    def batch_owned(self, folder: str) -> bool:
        """Whether an archive folder's files run as batches (a member, or the batches' own folder):
        they never get a run of their own, so a per-file sweep or reconcile must leave them alone."""
        return folder == BATCHES_FOLDER or self.of_member(folder) is not None

    def of_trigger(self, file_name: str) -> Pipeline | None:
        """The pipeline whose trigger pattern a file name matches."""
        for pipeline in self._by_name.values():
            if pipeline.trigger_regex.match(file_name):
                return pipeline
        return None


def _trigger_problems(pattern: str) -> list[str]:
    problems = []
    if not date_tokens_once(pattern) or not pattern.lower().endswith(".json"):
        problems.append(
            f"trigger_pattern {pattern!r} must hold {{yyyy}}, {{mm}} and {{dd}}, each once, and end in .json"
        )
    if pattern.startswith("_"):
        problems.append("trigger_pattern must not start with _ (Filegate's own batch objects do)")
    problems.extend(literal_text_problems("trigger_pattern", pattern))
    return problems


@dataclass(frozen=True)
class Link:
    """A relation as the merge order sees it: `child` merges after `parent`."""

    name: str
    child: str
    parent: str
    columns: tuple[str, ...] = ()
    parent_columns: tuple[str, ...] = ()

    def __str__(self) -> str:
        child = ", ".join(f"{self.child}.{c}" for c in self.columns) or self.child
        parent = ", ".join(f"{self.parent}.{c}" for c in self.parent_columns or self.columns) or self.parent
        return f"{self.name} ({child} -> {parent})"


def relation_cycles(links: Iterable[Link], members: Sequence[str]) -> list[tuple[list[str], list[Link]]]:
    """Each cycle of relations among the members (a relation of a dataset to itself is none): its members in
    order and every relation between two neighbours of it. Cycles that share a member are named one at a
    time, the next once the first is broken."""
    parents: dict[str, dict[str, list[Link]]] = {member: {} for member in members}
    for link in links:
        if link.child != link.parent and link.child in parents and link.parent in parents:
            parents[link.child].setdefault(link.parent, []).append(link)
    cycles: list[tuple[list[str], list[Link]]] = []
    done: set[str] = set()
    for start in members:
        cycle = _cycle_from(start, parents, [], done)
        if cycle is not None:
            pairs = zip(cycle, [*cycle[1:], cycle[0]], strict=True)
            cycles.append((cycle, [link for child, parent in pairs for link in parents[child][parent]]))
            done.update(cycle)
    return cycles


def _cycle_from(
    member: str, parents: Mapping[str, Mapping[str, Any]], path: list[str], done: set[str]
) -> list[str] | None:
    """The first cycle a walk from `member` up through its parents meets (depth first); `done` holds the members
    no walk from which meets one."""
    if member in path:
        return path[path.index(member) :]
    if member in done:
        return None
    path.append(member)
    for parent in parents[member]:
        found = _cycle_from(parent, parents, path, done)
        if found is not None:
            return found
    path.pop()
    done.add(member)
    return None


def cycle_message(members: Sequence[str], links: Sequence[Link]) -> str:
    """Why a cycle of relations cannot run, and what to write instead."""
    return (
        f"the relations {' and '.join(map(str, links))} form a cycle ({' -> '.join([*members, members[0]])}): the "
        "batch job checks and merges each parent before its children, and fails a child row whose parent row a "
        "quarantine held back, so a cycle leaves no member to start with; write one of these relations as a "
        "[[rules]] query over the inputs instead (the child's ${batch.x} LEFT ANTI JOIN the parent's ${latest.y})"
    )


def _raw_links(document: Mapping[str, Any]) -> list[Link]:
    """The `[[relations]]` as written, each with a child and a parent (the rest is parse_checks' to name)."""
    entries = document.get("relations", [])

    def names(value: Any) -> tuple[str, ...]:
        return tuple(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else ()

    return [
        Link(
            str(entry.get("name", "")),
            entry["child"],
            entry["parent"],
            names(entry.get("columns")),
            names(entry.get("parent_columns")),
        )
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("child"), str) and isinstance(entry.get("parent"), str)
    ]


def parse_pipeline(document: Mapping[str, Any], contracts: Contracts, source: Path | None = None) -> Pipeline:
    """Build a pipeline from its TOML document, checking it against the known datasets."""
    problems: list[str] = []

    def text(key: str, default: str = "") -> str:
        value = document.get(key, default)
        if not isinstance(value, str):
            problems.append(f"{key} must be text")
            return default
        return value

    def names(key: str) -> tuple[str, ...]:
        value = document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            problems.append(f"{key} must be a list of dataset names")
            return ()
        return tuple(value)

    name = text("name")
    pattern = text("trigger_pattern")
    members = names("members")
    optional = names("optional_members")
    lists_files = document.get("manifest_lists_files", False)
    window = document.get("complete_within_minutes", 360)
    on_incomplete = text("on_incomplete", "wait")
    late = text("late_member", "hold")
    if not _NAME.fullmatch(name):
        problems.append(f"name {name!r} must be lower case letters, digits and _, starting with a letter")
    problems.extend(_trigger_problems(pattern))
    problems.extend(f"{key} is not a pipeline field (a typo?)" for key in document if key not in _KNOWN_KEYS)
    if not members:
        problems.append("members must name at least one dataset")
    for member in members:
        if member not in contracts:
            problems.append(f"member {member} has no dataset contract")
    if len(set(members)) != len(members):
        problems.append("members names a dataset twice")
    for member in optional:
        if member not in members:
            problems.append(f"optional member {member} is not in members")
    if set(optional) >= set(members) and members:
        problems.append("at least one member must be required (not optional)")
    if not isinstance(lists_files, bool):
        problems.append("manifest_lists_files must be true or false")
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        problems.append("complete_within_minutes must be a positive whole number")
    if on_incomplete not in ON_INCOMPLETE:
        problems.append(f"on_incomplete must be one of {', '.join(ON_INCOMPLETE)}")
    if late not in LATE_MEMBER:
        problems.append(f"late_member must be one of {', '.join(LATE_MEMBER)}")
    # Here, not only in the job: every batch of such a pipeline would seal, stage and then fail its validate.
    problems.extend(cycle_message(*cycle) for cycle in relation_cycles(_raw_links(document), members))
    if pattern and not problems:
        clash = next((c for c in contracts.values() if patterns_overlap(pattern, c.file_pattern)), None)
        if clash is not None:
            problems.append(f"trigger_pattern also matches dataset {clash.name}'s file pattern")
    if problems:
        raise ContractError(f"{source or 'pipeline'}: " + "; ".join(problems))
    return Pipeline(
        name=name,
        trigger_pattern=pattern,
        members=members,
        optional_members=optional,
        manifest_lists_files=bool(lists_files),
        complete_within_minutes=int(window),
        on_incomplete=on_incomplete,
        late_member=late,
        description=text("description"),
        source=source,
        document={key: value for key, value in document.items() if key not in _FUNCTION_KEYS},
    )


def trigger_clashes(pipelines: Iterable[Pipeline]) -> list[tuple[Pipeline, Pipeline]]:
    """Each pair of pipelines whose trigger patterns some name matches both of (`contracts.patterns_overlap`): a trigger
    goes to the first pipeline it matches, and the other would never seal a batch."""
    by_name = {pipeline.name: pipeline for pipeline in pipelines}
    return [(by_name[a], by_name[b]) for a, b in overlapping({n: p.trigger_pattern for n, p in by_name.items()})]


def trigger_clash_message(one: Pipeline, other: Pipeline) -> str:
    return (
        f"the trigger_pattern of {one.name} ({one.trigger_pattern}) also matches the triggers of {other.name} "
        f"({other.trigger_pattern}): give each pipeline a trigger of its own"
    )


def _users(contract: Contract) -> bool:
    """Whether a contract comes from a user's folder (not built in, nor built in code)."""
    return contract.source is not None and not is_builtin(contract.source)


def replaced_member_message(contract: Contract, pipeline: Pipeline) -> str:
    """Why a user's contract may not replace a member of a built-in pipeline their folder does not declare, and
    the two ways out."""
    folder = contract.source.parent if contract.source is not None else "your contracts folder"
    shipped = pipeline.source.name if pipeline.source is not None else f"{pipeline.name}.toml"
    return (
        f"dataset {contract.name} replaces the built-in {contract.name}, a member of the built-in pipeline "
        f"{pipeline.name}, so its files would wait for {pipeline.name}'s triggers and load in its batches. To keep "
        f"it there, copy {shipped} from {BUILTIN_DATASETS} into {folder} (a pipeline there replaces the built-in "
        f"one of its name); to take it out, remove {contract.name} from that copy's members and from the "
        "relations, rules and tables that name it, or give your dataset another name and file_pattern"
    )


def load_pipelines(contracts: Contracts, *directories: Path) -> Pipelines:
    """Every `kind = "pipeline"` TOML in the built-in datasets folder and the given folders."""
    found: dict[str, Pipeline] = {}
    for directory in distinct_folders(BUILTIN_DATASETS, *map(Path, directories)):
        for path in sorted(directory.glob("*.toml")):
            document = read_toml(path)
            if document.get("kind") != PIPELINE_KIND:
                continue
            pipeline = parse_pipeline(document, contracts, path)
            # A user's folder may replace a built-in pipeline of the same name, as with datasets; two of
            # the user's own files naming one pipeline is a mistake (the last would win without a word), and
            # so are two built-in ones.
            earlier = found.get(pipeline.name)
            replaces_builtin = is_builtin(earlier.source if earlier else None) and not is_builtin(path)
            if earlier is not None and earlier.source != path and not replaces_builtin:
                raise ContractError(f"pipeline {pipeline.name} is defined twice: {earlier.source} and {path}")
            found[pipeline.name] = pipeline
    # A built-in pipeline takes its members by name: a user's contract of such a name would have its files sealed
    # into that pipeline's batches whether the user meant to or not. Their folder says so by declaring it.
    replaced = [
        f"{contracts[member].source}: {replaced_member_message(contracts[member], pipeline)}"
        for pipeline in found.values()
        if is_builtin(pipeline.source)
        for member in pipeline.members
        if member in contracts and _users(contracts[member])
    ]
    if replaced:
        raise ContractError("; ".join(replaced))
    owners: dict[str, str] = {}
    for pipeline in found.values():
        for member in pipeline.members:
            if member in owners:
                raise ContractError(f"dataset {member} is a member of both {owners[member]} and {pipeline.name}")
            owners[member] = pipeline.name
    clashes = sorted(trigger_clashes(found.values()), key=lambda pair: is_builtin(pair[0].source))
    if clashes:
        one, other = clashes[0]
        raise ContractError(f"{one.source or one.name}: {trigger_clash_message(one, other)}")
    return Pipelines(found)
