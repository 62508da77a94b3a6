"""The merge specification: one description of a MERGE that every Delta executor runs as given."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from filegate.contracts import Contract, quoted_name
from filegate.errors import UnsafeSql
from spark_jobs.columns import BATCH_ID, EFFECTIVE_FROM, EFFECTIVE_TO, IS_CURRENT

SOURCE = "s"
TARGET = "t"
# Contract columns are lower-case identifiers (Delta compares names without case). Each is quoted where it
# enters SQL text (`quoted_name`): `order` or `end` are reserved words where a session enforces them
# (spark.sql.ansi.enforceReservedKeywords). delta-rs' SQL, which the merge benchmark runs the same spec
# through as a reference, reads backticks too.
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class MergeClause:
    """A WHEN clause: an optional extra condition and the target columns it sets (a name each, quoted by the
    statement), to SQL expressions."""

    assignments: tuple[tuple[str, str], ...]
    condition: str | None = None


@dataclass(frozen=True)
class MergeSpec:
    """MERGE INTO target t USING source s ON predicate, with its matched and not-matched clauses."""

    predicate: str
    when_matched_update: tuple[MergeClause, ...]
    when_not_matched_insert: tuple[MergeClause, ...]
    source_alias: str = SOURCE
    target_alias: str = TARGET
    # Conditions of WHEN MATCHED ... THEN DELETE clauses, written before the updates (SQL tries clauses in order).
    when_matched_delete: tuple[str, ...] = ()


def _checked(names: Sequence[str]) -> tuple[str, ...]:
    bad = [name for name in names if not _IDENTIFIER.match(name)]
    if bad:
        raise UnsafeSql(f"column names must be lower-case identifiers to be merged: {', '.join(bad)}")
    return tuple(names)


def _set_from_source(columns: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple((column, f"{SOURCE}.{quoted_name(column)}") for column in columns)


def _keys_match(keys: Sequence[str]) -> str:
    return " AND ".join(f"{TARGET}.{quoted_name(key)} = {SOURCE}.{quoted_name(key)}" for key in keys)


# Timestamps written to the microsecond they hold: JSON's default format stops at milliseconds, and two
# rows that differ only below that would tie, and resolve in whichever order Spark met them.
_TEXT_OPTIONS = "map('timestampFormat', 'yyyy-MM-dd HH:mm:ss.SSSSSSXXX')"


def content_text(contract: Contract, alias: str | None = None) -> str:
    """A SQL expression of a row's contract columns as JSON text: the tie-break between equal sequence values.

    Written once and used both inside a file (`changes.latest_per_key`) and across files (the
    MERGE's condition), so a tie resolves the same way whichever file arrives first.
    """
    # Quoted also unqualified: a column named `null`, `true` or `false` would be read as that literal.
    prefix = f"{alias}." if alias else ""
    fields = ", ".join(f"'{name}', {prefix}{quoted_name(name)}" for name in _checked(contract.column_names))
    return f"to_json(named_struct({fields}), {_TEXT_OPTIONS})"


def newer_condition(contract: Contract) -> str:
    """The source row outranks the target's: a later sequence value, or the same one and greater content."""
    sequence = quoted_name(contract.sequence_by)
    return (
        f"{SOURCE}.{sequence} > {TARGET}.{sequence} OR ({SOURCE}.{sequence} = {TARGET}.{sequence} "
        f"AND {content_text(contract, SOURCE)} > {content_text(contract, TARGET)})"
    )


def latest_wins_merge(contract: Contract, columns: Sequence[str], deleted: str | None = None) -> MergeSpec:
    """SCD1: a key's row is replaced only by a version that outranks it; new keys are inserted.

    Outranking is strict (see `newer_condition`): an older version, or the very same content again,
    matches but fails the condition, so late files are harmless and a repeated batch is a no-op. Two
    files with the same key and instant but different content resolve to the same row in either order.
    With `deleted` (a boolean column of the source, from `delete_when`), a delete that outranks the
    target's row removes it, and a delete of an absent key inserts nothing.
    """
    columns = _checked(columns)
    newer = newer_condition(contract)
    deletes: tuple[str, ...] = ()
    update_when, insert_when = newer, None
    if deleted is not None:
        (flag,) = _checked([deleted])
        deletes = (f"{SOURCE}.{flag} AND ({newer})",)
        update_when, insert_when = f"NOT {SOURCE}.{flag} AND ({newer})", f"NOT {SOURCE}.{flag}"
    return MergeSpec(
        predicate=_keys_match(_checked(contract.keys)),
        when_matched_delete=deletes,
        when_matched_update=(MergeClause(_set_from_source(columns), condition=update_when),),
        when_not_matched_insert=(MergeClause(_set_from_source(columns), condition=insert_when),),
    )


def history_merge(contract: Contract, columns: Sequence[str]) -> MergeSpec:
    """SCD2: the source holds new versions and re-bounded existing ones (see `changes.history_changes`).

    A version is identified by key and `effective_from`, so closing the current row and inserting
    its successor are two clauses of one atomic MERGE, and re-running a batch matches every row. A
    matched version takes the source's whole row: its new bounds, or the content of a version of the
    same instant that outranked it (a tie across files).
    """
    columns = _checked(columns)
    # Parenthesized, so that every SQL dialect reads it alike.
    changed = (
        f"({TARGET}.{EFFECTIVE_TO} IS DISTINCT FROM {SOURCE}.{EFFECTIVE_TO})"
        f" OR ({TARGET}.{IS_CURRENT} <> {SOURCE}.{IS_CURRENT})"
        f" OR ({content_text(contract, TARGET)} <> {content_text(contract, SOURCE)})"
    )
    return MergeSpec(
        predicate=f"{_keys_match(_checked(contract.keys))} AND {TARGET}.{EFFECTIVE_FROM} = {SOURCE}.{EFFECTIVE_FROM}",
        when_matched_update=(MergeClause(_set_from_source(columns), condition=changed),),
        when_not_matched_insert=(MergeClause(_set_from_source(columns)),),
    )


def merge_for(contract: Contract, columns: Sequence[str]) -> MergeSpec:
    """The merge a contract's SCD type asks for."""
    return history_merge(contract, columns) if contract.scd_type == 2 else latest_wins_merge(contract, columns)


def tagged(spec: MergeSpec, batch_literal: str) -> MergeSpec:
    """The spec with `s._batch_id = <batch>` added to its insert conditions, where every source row holds it.

    It changes no row: it puts the batch id into the MERGE's commit (Delta records each clause's condition
    in `notMatchedPredicates`), so that a retry can find what an earlier attempt's MERGE did
    (`Warehouse.merged_before`). `batch_literal` is a checked SQL literal (`warehouse.sql_string`).
    """
    mine = f"{SOURCE}.{BATCH_ID} = {batch_literal}"
    clauses = tuple(
        replace(clause, condition=f"({clause.condition}) AND {mine}" if clause.condition else mine)
        for clause in spec.when_not_matched_insert
    )
    return replace(spec, when_not_matched_insert=clauses)
