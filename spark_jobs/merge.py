"""The merge specification: one description of a MERGE that every Delta executor runs as given."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from filegate.contracts import Contract
from spark_jobs.columns import EFFECTIVE_FROM, EFFECTIVE_TO, IS_CURRENT

SOURCE = "s"
TARGET = "t"
# Expressions are written once for two SQL dialects (Spark SQL and DataFusion); plain lower-case
# identifiers need no quoting in either, and DataFusion would fold unquoted upper case.
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class MergeClause:
    """A WHEN clause: an optional extra condition and the target columns it sets, as expressions."""

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


def _checked(names: Sequence[str]) -> tuple[str, ...]:
    bad = [name for name in names if not _IDENTIFIER.match(name)]
    if bad:
        raise ValueError(f"column names must be lower-case identifiers to be merged: {', '.join(bad)}")
    return tuple(names)


def _set_from_source(columns: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple((column, f"{SOURCE}.{column}") for column in columns)


def _keys_match(keys: Sequence[str]) -> str:
    return " AND ".join(f"{TARGET}.{key} = {SOURCE}.{key}" for key in keys)


def latest_wins_merge(contract: Contract, columns: Sequence[str]) -> MergeSpec:
    """SCD1: a key's row is replaced only by a strictly newer version; new keys are inserted.

    The strict comparison is what makes late files harmless and a repeated batch a no-op: an older
    or equal sequence value matches but fails the condition, so the row is left as it is.
    """
    columns = _checked(columns)
    sequence = contract.sequence_by
    return MergeSpec(
        predicate=_keys_match(_checked(contract.keys)),
        when_matched_update=(
            MergeClause(_set_from_source(columns), condition=f"{SOURCE}.{sequence} > {TARGET}.{sequence}"),
        ),
        when_not_matched_insert=(MergeClause(_set_from_source(columns)),),
    )


def history_merge(contract: Contract, columns: Sequence[str]) -> MergeSpec:
    """SCD2: the source holds new versions and re-bounded existing ones (see `changes.history_changes`).

    A version is identified by key and `effective_from`, so closing the current row and inserting
    its successor are two clauses of one atomic MERGE, and re-running a batch matches every row.
    """
    columns = _checked(columns)
    # Parenthesized: DataFusion binds OR tighter than IS DISTINCT FROM.
    changed = (
        f"({TARGET}.{EFFECTIVE_TO} IS DISTINCT FROM {SOURCE}.{EFFECTIVE_TO})"
        f" OR ({TARGET}.{IS_CURRENT} <> {SOURCE}.{IS_CURRENT})"
    )
    return MergeSpec(
        predicate=f"{_keys_match(_checked(contract.keys))} AND {TARGET}.{EFFECTIVE_FROM} = {SOURCE}.{EFFECTIVE_FROM}",
        when_matched_update=(MergeClause(_set_from_source((EFFECTIVE_TO, IS_CURRENT)), condition=changed),),
        when_not_matched_insert=(MergeClause(_set_from_source(columns)),),
    )


def merge_for(contract: Contract, columns: Sequence[str]) -> MergeSpec:
    """The merge a contract's SCD type asks for."""
    return history_merge(contract, columns) if contract.scd_type == 2 else latest_wins_merge(contract, columns)
