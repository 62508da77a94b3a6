"""`filegate check [PATH...]`: every problem in the contracts, with file and line, before they are used.

The function and the job refuse a broken contract when they load it; this finds every problem at
once, in a user's folder and in the built-in datasets, and (with Spark installed) also resolves each
`[[checks]]` and `[[derived]]` expression against the contract's schema, so that a SQL typo fails here
and not in the middle of a load.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filegate import exits
from filegate.contracts import (
    BUILTIN_DATASETS,
    Column,
    Contract,
    Contracts,
    clash_message,
    folder_problem,
    is_builtin,
    kind_problem,
    load_contracts,
    pattern_clashes,
    read_contract,
    value_form,
)
from filegate.errors import ContractError
from filegate.pipelines import (
    PIPELINE_KIND,
    Pipeline,
    Pipelines,
    load_pipelines,
    parse_pipeline,
    replaced_member_message,
    trigger_clash_message,
    trigger_clashes,
)
from filegate.tables import dataset_tables, job_tables

_SECTIONS = ("columns", "checks", "derived", "tables")


@dataclass(frozen=True)
class Finding:
    """One problem, located."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


def contract_files(paths: Iterable[Path]) -> list[Path]:
    """The `*.toml` files named, or inside the folders named, in order."""
    found: dict[Path, Path] = {}
    for path in paths:
        for file in sorted(path.glob("*.toml")) if path.is_dir() else [path]:
            found.setdefault(file.resolve(), file)  # a file named twice (its folder under two spellings) is one
    return list(found.values())


def check_files(files: Sequence[Path]) -> tuple[list[Contract], list[Finding]]:
    """Every contract that loads, and every problem of every file (names clashing across files too)."""
    contracts: list[Contract] = []
    findings: list[Finding] = []
    first_seen: dict[str, Path] = {}
    pipelines: list[tuple[Path, dict[str, Any]]] = []
    texts: dict[Path, str] = {}
    for path in files:
        try:
            text = texts[path] = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as the loaders accept it
        except (OSError, UnicodeDecodeError) as exc:
            findings.append(Finding(path, None, f"cannot be read: {exc}"))
            continue
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = re.search(r"line (\d+)", str(exc))
            findings.append(Finding(path, int(line[1]) if line else None, f"is not valid TOML: {exc}"))
            continue
        kind = document.get("kind", "dataset")
        if (problem := kind_problem(kind)) is not None:
            findings.append(Finding(path, locate(text, "kind"), problem))
            continue
        if kind == PIPELINE_KIND:
            pipelines.append((path, document))
            continue
        contract, problems = read_contract(document, source=path)
        findings.extend(Finding(path, locate(text, problem.where), str(problem)) for problem in problems)
        name = document.get("name")
        earlier = first_seen.get(name) if isinstance(name, str) else None
        # A user's file may replace a built-in dataset of its name; two of the user's may not, nor two built-in.
        if earlier is not None and not (is_builtin(earlier) and not is_builtin(path)):
            findings.append(Finding(path, locate(text, "name"), f"dataset {name} is also defined in {earlier}"))
            continue
        if isinstance(name, str):
            first_seen[name] = path
        if contract is not None:
            contracts.append(contract)
            findings.extend(
                Finding(path, locate(text, f"columns.{column.name}.allowed"), _unmeetable(column, entry))
                for column in contract.columns
                for entry in column.unmeetable_allowed
            )
    # Clashing patterns among the datasets checked and the built-in ones (each replaced by a checked one of its name).
    try:
        builtin_contracts = load_contracts()  # read once, for the clashes and the built-in pipelines
        builtin = load_pipelines(builtin_contracts)  # read once, for the questions below
    except ContractError as exc:
        # The package's own files do not load (a stale copy left in it): nothing can be checked against them.
        return contracts, [*findings, Finding(BUILTIN_DATASETS, None, f"the built-in datasets do not load: {exc}")]
    every = {**builtin_contracts, **{contract.name: contract for contract in contracts}}
    for one, other in pattern_clashes(every.values()):
        if one in contracts and not is_builtin(one.source):
            assert one.source is not None
            findings.append(Finding(one.source, locate(texts[one.source], "file_pattern"), clash_message(one, other)))
    derived = _derived_tables(
        [*((p.name, p.document) for p in builtin.values()), *((str(d.get("name")), d) for _, d in pipelines)]
    )
    findings.extend(_target_clashes(contracts, every, texts, derived))
    pipeline_findings, checked = _pipeline_findings(pipelines, contracts, builtin, texts)
    findings.extend(pipeline_findings)
    findings.extend(_batch_only_findings(contracts, first_seen, checked, builtin))
    return contracts, findings


def _builtin_out_of_effect(
    pipelines: Iterable[tuple[Path, Mapping[str, Any]]], contracts: Iterable[Contract], builtin: Pipelines
) -> tuple[set[str], set[str]]:
    """The built-in pipelines not in effect, by name: replaced by a user's of the name, or refused because a
    user's dataset replaces a member (`load_pipelines`); and the pipeline names the user's folders declare.

    A contract checked on its own (`filegate check my/orders.toml`) is loaded with its folder, so the
    pipelines its folder declares count as declared too.
    """
    mine = {contract.name: contract for contract in contracts if not is_builtin(contract.source)}
    declared = {str(document.get("name")) for path, document in pipelines if not is_builtin(path)}
    for folder in {contract.source.parent for contract in mine.values() if contract.source is not None}:
        declared |= _pipeline_names(folder)
    unused = {
        pipeline.name
        for pipeline in builtin.values()
        if pipeline.name in declared or any(member in mine for member in pipeline.members)
    }
    return unused, declared


def _pipeline_names(folder: Path) -> set[str]:
    """The names of the pipelines a folder's TOML files declare (files that do not read are reported elsewhere)."""
    names = set()
    for path in folder.glob("*.toml"):
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        if document.get("kind") == PIPELINE_KIND and isinstance(document.get("name"), str):
            names.add(document["name"])
    return names


def _derived_tables(documents: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, str]:
    """The derived tables the pipelines build, each with what it is: `a derived table of pipeline p`. A user's
    pipeline replaces a built-in one of its name, so the later document of a name counts."""
    named = dict(documents)
    return {
        table: f"a derived table of pipeline {name}"
        for name, document in named.items()
        for table in _table_names(document)
    }


def _table_names(document: Mapping[str, Any]) -> set[str]:
    """The names of a pipeline document's derived `[[tables]]` (a malformed entry is parse_tables' to name)."""
    return {str(entry.get("name")) for entry in document.get("tables", []) if isinstance(entry, dict)}


def _target_clashes(
    mine: list[Contract], every: Mapping[str, Contract], texts: Mapping[Path, str], derived: Mapping[str, str]
) -> list[Finding]:
    """A target named as a table the jobs write for another purpose: the jobs' logs, a pipeline's derived table,
    another dataset's target, stage or rejects, or this dataset's own stage or rejects. Its MERGE would write
    data rows into it (a `target_table = "processing_log"` gave log rows without a task or batch)."""
    findings = []
    tables_of = {name: dataset_tables(contract) for name, contract in every.items()}  # once, not per contract
    for contract in mine:
        if contract.source is None or is_builtin(contract.source):
            continue
        taken = {**job_tables([]), **derived}
        for name, tables in tables_of.items():
            if name != contract.name:
                taken.update(tables)
        taken.update(dataset_tables(contract, target=False))
        if contract.target in taken:
            where = "target_table" if contract.target_table else "name"
            message = f"the target {contract.target} is also {taken[contract.target]}; name the target otherwise"
            findings.append(Finding(contract.source, locate(texts[contract.source], where), message))
    return findings


def _batch_only_findings(
    contracts: list[Contract], paths: dict[str, Path], checked: dict[str, tuple[str, ...]], builtin: Pipelines
) -> list[Finding]:
    """A dataset in no pipeline runs the ingest job, which refuses what only the batch job applies.

    The pipelines are the built-in ones, each replaced by a checked pipeline of its name (as
    `load_pipelines` replaces them), and the other checked ones.
    """
    pipelines = {pipeline.name: pipeline.members for pipeline in builtin.values()}
    members = {member for listed in (pipelines | checked).values() for member in listed}
    return [
        Finding(
            paths[contract.name],
            None,
            f"{', '.join(contract.batch_job_settings)} applied by the batch job only: add {contract.name} to a "
            "pipeline, or remove them (the ingest job refuses to load it)",
        )
        for contract in contracts
        if contract.batch_job_settings and contract.name not in members and contract.name in paths
    ]


def _pipeline_findings(
    pipelines: list[tuple[Path, dict[str, Any]]],
    contracts: list[Contract],
    builtin: Pipelines,
    texts: Mapping[Path, str],
) -> tuple[list[Finding], dict[str, tuple[str, ...]]]:
    """Each pipeline against the datasets checked alongside it and the built-in ones: members exist, and
    no dataset belongs to two pipelines. Also each pipeline that parsed, by name, with its members."""
    known = Contracts({**load_contracts(), **{contract.name: contract for contract in contracts}})
    findings: list[Finding] = []
    owners: dict[str, str] = {}
    parsed: dict[str, tuple[str, ...]] = {}
    loaded: dict[str, Pipeline] = {}
    mine = {contract.name: contract for contract in contracts if not is_builtin(contract.source)}
    unused, declared = _builtin_out_of_effect(pipelines, contracts, builtin)
    for pipeline in (builtin[name] for name in sorted(unused) if name not in declared):
        for member in (m for m in pipeline.members if m in mine):
            source = mine[member].source
            assert source is not None
            message = replaced_member_message(mine[member], pipeline)
            findings.append(Finding(source, locate(texts[source], "name"), message))
    for path, document in pipelines:
        if is_builtin(path) and document.get("name") in unused:
            # Replaced by a user's pipeline, or refused above: what it says of the user's datasets is not in
            # effect, nor the user's to fix in a file they cannot edit.
            continue
        try:
            pipeline = parse_pipeline(document, known, path)
        except ContractError as exc:
            findings.append(Finding(path, None, str(exc).removeprefix(f"{path}: ")))
            # Its members are still a pipeline's: told to "add them to a pipeline", the user would look in vain.
            members = document.get("members")
            if isinstance(document.get("name"), str) and isinstance(members, list):
                parsed.setdefault(document["name"], tuple(str(member) for member in members))
            continue
        earlier = loaded.get(pipeline.name)
        # A user's file may replace a built-in pipeline of its name; two of the user's may not.
        if earlier is not None and earlier.source not in (None, path) and not is_builtin(earlier.source):
            findings.append(Finding(path, None, f"pipeline {pipeline.name} is also defined in {earlier.source}"))
            continue
        loaded[pipeline.name] = pipeline
        parsed[pipeline.name] = pipeline.members
        # The batch job's part of the file (relations, rules, derived tables and their bands): checked
        # here so a broken rule or table fails before a run does. Plain Python, no Spark.
        from spark_jobs.pipeline_rules import parse_checks, relation_type_problems
        from spark_jobs.pipeline_tables import parse_tables

        try:
            # Found by check only (the job still runs such a pipeline, as before).
            findings.extend(
                Finding(path, None, p) for p in relation_type_problems(parse_checks(pipeline, known), known)
            )
        except ContractError as exc:
            findings.append(Finding(path, None, str(exc).removeprefix(f"{path}: ")))
        try:
            parse_tables(pipeline, known)
        except ContractError as exc:
            findings.append(Finding(path, None, str(exc).removeprefix(f"{path}: ")))
        for member in pipeline.members:
            if member in owners and owners[member] != pipeline.name:
                findings.append(Finding(path, None, f"dataset {member} is also a member of {owners[member]}"))
            owners[member] = pipeline.name
    every = {**builtin, **loaded}
    for one, other in trigger_clashes(every.values()):
        if one.source is not None and any(one is mine for mine in loaded.values()) and not is_builtin(one.source):
            findings.append(Finding(one.source, None, trigger_clash_message(one, other)))
    findings.extend(_table_clashes(loaded, every, texts))
    return findings, parsed


def _table_clashes(
    mine: Mapping[str, Pipeline], every: Mapping[str, Pipeline], texts: Mapping[Path, str]
) -> list[Finding]:
    """A derived table two pipelines build: the job's schema is shared, so each would replace the other's."""
    named = {name: _table_names(pipeline.document) for name, pipeline in every.items()}
    findings = []
    for pipeline in mine.values():
        if pipeline.source is None or is_builtin(pipeline.source):
            continue
        for table in sorted(named[pipeline.name]):
            others = sorted(other for other, tables in named.items() if other != pipeline.name and table in tables)
            if others:
                message = (
                    f"table {table} is also a derived table of pipeline {others[0]}: each would replace the other's"
                )
                findings.append(Finding(pipeline.source, locate(texts[pipeline.source], f"tables.{table}"), message))
    return findings


def _unmeetable(column: Column, entry: str) -> str:
    # Found by check only: the loaders keep such a contract working as before (its other entries are met).
    return (
        f"columns.{column.name}.allowed: {entry!r} is not a valid {column.type} ({value_form(column.type)}), "
        "so no value can meet it"
    )


def locate(text: str, where: str) -> int | None:
    """The line a problem's key path (`columns.email.pattern`, `params.x`, `keys`) points at."""
    lines = text.splitlines()
    parts = where.split(".") if where else []
    if not parts:
        return None
    start, end = 0, len(lines)
    rest = parts
    if parts[0] in _SECTIONS and len(parts) > 1:
        block = _block(lines, parts[0], parts[1])
        if block is None:
            return None
        start, end = block
        rest = parts[2:]
    elif parts[0] == "params" and len(parts) > 1:
        header = _first(lines, re.compile(r"^\s*\[params\]\s*$"), 0, len(lines))
        if header is None:
            return None
        start, end = header, _next_header(lines, header + 1)
        rest = parts[1:]
    else:
        end = _next_header(lines, 0)
    key = rest[0] if rest else None
    if key is None:
        return start + 1
    found = _first(lines, re.compile(rf"^\s*{re.escape(key)}\s*="), start, end)
    return (found if found is not None else start) + 1


def _block(lines: list[str], section: str, name: str) -> tuple[int, int] | None:
    """The lines of the `[[section]]` table whose name is `name` (or whose index is `name`)."""
    headers = [index for index, line in enumerate(lines) if re.match(rf"^\s*\[\[{section}\]\]\s*$", line)]
    for number, header in enumerate(headers):
        end = _next_header(lines, header + 1)
        named = _first(lines, re.compile(rf"^\s*name\s*=\s*[\"']{re.escape(name)}[\"']"), header, end)
        if named is not None or name == str(number):
            return header, end
    return None


def _next_header(lines: list[str], start: int) -> int:
    found = _first(lines, re.compile(r"^\s*\["), start, len(lines))
    return len(lines) if found is None else found


def _first(lines: list[str], pattern: re.Pattern[str], start: int, end: int) -> int | None:
    return next((index for index in range(start, end) if pattern.match(lines[index])), None)


def _spark_findings(contracts: Sequence[Contract], files: Sequence[Path]) -> list[Finding]:
    """Resolve every check and derived expression, and every pipeline's rules and derived tables against
    empty inputs, on a local Spark session (pyspark needed)."""
    from spark_jobs.batch_derive import table_problems
    from spark_jobs.contract_sql import expression_problems
    from spark_jobs.cross_checks import rule_problems
    from spark_jobs.session import build_session

    spark = build_session("filegate-check", on_databricks=False)
    findings = []
    for contract in contracts:
        assert contract.source is not None
        text = contract.source.read_text(encoding="utf-8-sig")
        for problem in expression_problems(spark, contract):
            findings.append(Finding(contract.source, locate(text, problem.where), str(problem)))
    builtin_contracts = load_contracts()
    known = Contracts({**builtin_contracts, **{contract.name: contract for contract in contracts}})
    documents: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue  # reported without Spark
        if document.get("kind") == PIPELINE_KIND:
            documents.append((path, document))
    # A built-in pipeline the user's folder replaces or refuses is not in effect: its rules and tables are not
    # checked against the user's datasets (findings in a file the user cannot edit, or twice over a copy).
    unused, _ = _builtin_out_of_effect(documents, contracts, load_pipelines(builtin_contracts))
    for path, document in documents:
        if is_builtin(path) and document.get("name") in unused:
            continue
        try:
            pipeline = parse_pipeline(document, known, path)
            problems = [*rule_problems(spark, pipeline, known), *table_problems(spark, pipeline, known)]
        except ContractError:
            continue  # reported without Spark
        findings.extend(Finding(path, None, problem) for problem in problems)
    return findings


def main(argv: list[str] | None = None) -> int:
    """`filegate check [PATH...]`: exit 0 when every contract is sound, 1 with every problem otherwise."""
    parser = argparse.ArgumentParser(
        prog="filegate check",
        description="Check dataset contracts: fields, types, rules, patterns (shared Python/Java regex), "
        "parameters, names that clash, and (with Spark) every [[checks]] and [[derived]] expression and every "
        "pipeline's [[rules]] and derived [[tables]]. "
        "Reads the built-in datasets and FILEGATE_CONTRACTS_DIR when no PATH is given.",
    )
    parser.add_argument("paths", nargs="*", type=Path, help="contract files or folders of them")
    parser.add_argument(
        "--no-spark", action="store_true", help="skip resolving SQL expressions on a local Spark session"
    )
    args = parser.parse_args(argv)
    paths = list(args.paths)
    if not paths:
        paths = [BUILTIN_DATASETS]
        extra = os.environ.get("FILEGATE_CONTRACTS_DIR", "").strip()  # as the function and the jobs read it
        if extra:
            # Refused as the function refuses it: a contract file named there was checked, and passed.
            if problem := folder_problem(Path(extra)):
                print(f"filegate check: FILEGATE_CONTRACTS_DIR: {problem}", file=sys.stderr)
                return exits.CONFIG
            paths.append(Path(extra))
    else:
        # A user's folder is checked together with the built-in datasets: its names must not clash.
        paths = [BUILTIN_DATASETS, *(path for path in paths if path.resolve() != BUILTIN_DATASETS.resolve())]
    missing = [path for path in paths if not path.exists()]
    if missing:
        print(f"filegate check: no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return exits.CONFIG
    # A folder named that holds no contract is not an all-clear: its contracts may sit in subfolders, which
    # neither check nor the function reads.
    empty = [path for path in args.paths if path.is_dir() and not any(path.glob("*.toml"))]
    for path in empty:
        print(f"filegate check: {path} holds no *.toml file (subfolders are not read)", file=sys.stderr)
    if empty:
        return exits.CONFIG
    files = contract_files(paths)
    contracts, findings = check_files(files)
    if not args.no_spark:
        findings.extend(_spark_findings(contracts, files))
    for finding in findings:
        print(finding)
    # Counted by file: a contract that does not load is not among `contracts`, yet it is one not sound.
    flawed = {finding.path for finding in findings}
    checked = f"{sum(path not in flawed for path in files)} of {len(files)} file(s) sound"
    if findings:
        print(f"filegate check: {len(findings)} problem(s); {checked}", file=sys.stderr)
        return exits.FAILED
    print(f"filegate check: {checked}")
    return exits.OK
