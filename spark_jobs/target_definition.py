"""What a target's rows mean (keys, SCD type, sequence column), pinned on the table, and the refusal to
write a target whose meaning changed under it.

Both jobs' targets carry the contract's definition as table properties. A contract whose keys, SCD type
or sequence column changed since would have its MERGE match other rows than the ones it wrote (an
SCD1 MERGE over an SCD2 table overwrites every version of a key with its newest values), so the write
is refused before it starts, naming what changed.

They also carry the contract's words: its description as the table's comment, its columns' descriptions
(and a fixed one for each column the job adds) as the columns' comments. They are set when the target is
created, and again when the contract's differ from what the definition check read anyway (the table's
detail, its schema): a run that changed none issues no statement for them.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from filegate.contracts import Contract
from filegate.errors import FilegateError
from spark_jobs.columns import EFFECTIVE_FROM, target_comments
from spark_jobs.warehouse import COMMENT, Warehouse, committed

PROPERTIES = ("filegate.keys", "filegate.scd_type", "filegate.sequence_by")


class TargetDefinitionChanged(FilegateError):
    """The contract's keys, SCD type or sequence column differ from those the target was built with."""


def definition(contract: Contract) -> dict[str, str]:
    """The table properties that pin what a target's rows mean."""
    return dict(zip(PROPERTIES, (",".join(contract.keys), str(contract.scd_type), contract.sequence_by), strict=True))


def ensure_target(
    warehouse: Warehouse,
    contract: Contract,
    schema: StructType,
    properties: Mapping[str, str] | None = None,
    created_with: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Create the target with the contract's definition (and the other `properties` it needs) pinned, or check
    an existing one's and migrate its columns (`Warehouse.ensure_table`); refuse when its definition changed.
    Returns the properties the table had when checked (a new one's as created). `created_with`: properties
    a new target gets and an existing one is left to its caller for (`history.merge_history` sets its
    tracked columns only once the rebuild they need has committed).

    The definition is checked first, before the columns' types and before a migration adds columns, so
    that an existing target's own shape speaks for it; it is pinned last, so that a run refused for
    any reason leaves the table as it found it. A new target is created with the properties, so a run
    that lost the race to create it reads the winner's and refuses a different definition.

    The check reads the table's detail (`DESCRIBE DETAIL`, not `SHOW TBLPROPERTIES`, which leaves the
    comment out): one statement, as before, that also says whether the contract's description changed.
    """
    pinned = {**definition(contract), **(properties or {})}
    table = contract.target
    checked: dict[str, str] = {}
    comments: list[str] = []

    def check(rows: DataFrame) -> None:
        detail = warehouse.detail(table)
        _refuse(warehouse, contract, _problems(detail.properties, contract, rows))
        checked.update(detail.properties)
        comments.append(detail.comment)

    warehouse.ensure_table(
        table,
        described(schema, target_comments(contract)),
        properties={**pinned, **(created_with or {})},
        check=check,
        comment=contract.description,
    )
    if comments[-1] != contract.description:
        # The contract's description changed since the target was made (a new one was made with it).
        committed(lambda: warehouse.set_comment(table, contract.description), f"comment {table}")
    if all(checked.get(k) == v for k, v in pinned.items()):
        return checked  # the common case: pinned already (or just created so), no second read

    def pin() -> None:
        found = warehouse.properties(table)
        _refuse(warehouse, contract, _changed(found, contract))  # an ALTER by a concurrent run since the check
        missing = {k: v for k, v in pinned.items() if found.get(k) != v}
        if missing:
            warehouse.set_properties(table, missing)

    # A target made before targets were pinned holds none: its read and the ALTER are two steps; a
    # concurrent ALTER that commits while this one runs makes it check again.
    committed(pin, f"set the properties of {table}")
    return checked


def refuse_changed_target(warehouse: Warehouse, contract: Contract) -> None:
    """Refuse an existing target whose definition differs from the contract's, as `ensure_target` would, writing
    nothing; a missing target passes (`ensure_target` creates it).

    For a job that writes several targets: checking them all first keeps one refused target from leaving
    the others written."""
    rows = warehouse.read_if_exists(contract.target)
    if rows is not None:
        _refuse(warehouse, contract, _problems(warehouse.properties(contract.target), contract, rows))


def _problems(found: Mapping[str, str], contract: Contract, rows: DataFrame) -> list[str]:
    """Why the target is refused: it is pinned (`found`, its properties) with another definition, or is unpinned
    (made before targets were pinned) with a shape (`rows`) that disagrees with the contract's SCD type: an
    SCD2 contract over rows without versions, or an SCD1 one over a table of versions."""
    pinned = any(k in found for k in PROPERTIES)
    return _changed(found, contract) if pinned else _shape_problems(rows, contract)


def described(schema: StructType, comments: Mapping[str, str]) -> StructType:
    """`schema` with each field's comment from `comments` (by name) in its metadata, where Spark keeps it."""
    return StructType(
        [
            StructField(f.name, f.dataType, f.nullable, {**f.metadata, COMMENT: comments[f.name]})
            if f.name in comments
            else f
            for f in schema.fields
        ]
    )


def _changed(found: Mapping[str, str], contract: Contract) -> list[str]:
    return [
        f"{k}: the table has {found[k]!r}, the contract says {v!r}"
        for k, v in definition(contract).items()
        if k in found and found[k] != v
    ]


def _refuse(warehouse: Warehouse, contract: Contract, changed: list[str]) -> None:
    if changed:
        raise TargetDefinitionChanged(
            f"{warehouse.name(contract.target)} was built with another definition than contract {contract.name} has "
            "now (" + "; ".join(changed) + "). Its rows would be misread: load into a new target (target_table), or "
            "restore the contract"
        )


def _shape_problems(rows: DataFrame, contract: Contract) -> list[str]:
    """Why an unpinned target cannot hold the contract's SCD type: versions without bounds, or bounds in SCD1."""
    table = contract.target
    versioned = EFFECTIVE_FROM in {name.lower() for name in rows.columns}
    if contract.scd_type == 1 and versioned:
        return [f"filegate.scd_type: the table has {EFFECTIVE_FROM}, versions of SCD2; the contract says 1"]
    if contract.scd_type == 2 and (not versioned or not rows.where(F.col(EFFECTIVE_FROM).isNull()).isEmpty()):
        return [f"filegate.scd_type: {table} holds rows without {EFFECTIVE_FROM}, rows of SCD1; the contract says 2"]
    return []
