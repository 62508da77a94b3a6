"""Names and schemas of the columns the job adds to a contract's own columns."""

from __future__ import annotations

import re

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from filegate.contracts import BUSINESS_DATE, Contract

# The names readers share live in filegate.tables (no pyspark there); the job's modules import them from here.
from filegate.tables import (
    BATCH_ID as BATCH_ID,
)
from filegate.tables import (
    EFFECTIVE_FROM as EFFECTIVE_FROM,
)
from filegate.tables import (
    EFFECTIVE_TO as EFFECTIVE_TO,
)
from filegate.tables import (
    INGESTED_AT as INGESTED_AT,
)
from filegate.tables import (
    IS_CURRENT as IS_CURRENT,
)
from filegate.tables import (
    RAW_LINE as RAW_LINE,
)
from filegate.tables import (
    REASON as REASON,
)
from filegate.tables import (
    RULES as RULES,
)
from filegate.tables import (
    SOURCE_FILE as SOURCE_FILE,
)

LINEAGE = (BATCH_ID, SOURCE_FILE, INGESTED_AT)
# Which task rejected a row: `stage` (its file's rules) or `validate` (a cross-dataset rule quarantined it),
# so that each task replaces only its own reject rows of a batch.
REJECTED_BY = "_rejected_by"
# Whether a row has the contract's shape (well-formed, as many fields as columns), so that its
# values are in their own columns; a misshapen row is rejected for that alone.
SHAPE_OK = "_shape_ok"
# The ids of the `warn` checks a kept row failed; counted, the row still loads.
WARNINGS = "_warnings"


def spark_type_name(type_name: str) -> str:
    """The Spark DDL name of a contract type (they match except long)."""
    return "bigint" if type_name == "long" else type_name


_SCALARS: dict[str, DataType] = {
    "string": StringType(),
    "long": LongType(),
    "double": DoubleType(),
    "boolean": BooleanType(),
    "date": DateType(),
    "timestamp": TimestampType(),
}
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def data_type(type_name: str) -> DataType:
    decimal = _DECIMAL.match(type_name)
    if decimal:
        return DecimalType(int(decimal.group(1)), int(decimal.group(2)))
    return _SCALARS[type_name]


def _lineage_fields() -> list[StructField]:
    return [
        StructField(BATCH_ID, StringType()),
        StructField(SOURCE_FILE, StringType()),
        StructField(INGESTED_AT, TimestampType()),
    ]


def contract_fields(contract: Contract) -> list[StructField]:
    """The contract's columns as Spark fields; all nullable, the rules are enforced before writing."""
    return [StructField(column.name, data_type(column.type)) for column in contract.columns]


def row_fields(contract: Contract) -> list[StructField]:
    """What a loaded row holds: the contract's columns, its derived columns, and the business date
    when that orders the versions of a key (`sequence_by = "_business_date"`)."""
    fields = [*contract_fields(contract), *(StructField(d.name, data_type(d.type)) for d in contract.derived)]
    if contract.sequence_by == BUSINESS_DATE:
        fields.append(StructField(BUSINESS_DATE, DateType()))
    return fields


def stage_schema(contract: Contract) -> StructType:
    """A staged good row, as the tasks after the stage read it: as read, with the warn checks it failed."""
    return StructType([*row_fields(contract), StructField(WARNINGS, ArrayType(StringType())), *_lineage_fields()])


def stage_table_schema(contract: Contract) -> StructType:
    """`<dataset>_stage`: every row of each batch in flight with its verdict; a good row's reason is null.

    The file is read and checked once and written once: the rejects are copied from here, and every
    reader takes the good rows through `spark_jobs.stage.staged_rows`.
    """
    verdict = [
        StructField(REASON, StringType()),
        StructField(RULES, ArrayType(StringType())),
        StructField(RAW_LINE, StringType()),
    ]
    return StructType([*stage_schema(contract).fields, *verdict])


def rejects_schema() -> StructType:
    """`<dataset>_rejects`: every row that broke a rule, why, the rules' ids, and its raw text."""
    return StructType(
        [
            StructField(REASON, StringType()),
            StructField(RULES, ArrayType(StringType())),
            StructField(RAW_LINE, StringType()),
            *_lineage_fields(),
            StructField(REJECTED_BY, StringType()),
        ]
    )


def sequence_type(contract: Contract) -> DataType:
    """The type of the contract's `sequence_by` column, as a loaded row holds it."""
    return next(field.dataType for field in row_fields(contract) if field.name == contract.sequence_by)


def target_comments(contract: Contract) -> dict[str, str]:
    """Each target column's comment: the contract's description of its own and derived columns, and a short fixed
    one for each column the job adds."""
    sequence = contract.sequence_by
    comments = {
        BUSINESS_DATE: "The business date in the name of the file the row came from.",
        BATCH_ID: "The batch that loaded the row.",
        SOURCE_FILE: "The file the row came from.",
        INGESTED_AT: "When the batch that loaded the row started (UTC).",
        EFFECTIVE_FROM: f"When this version of the key began: the {sequence} of the row that opened it.",
        EFFECTIVE_TO: f"When the next version of the key began (its {sequence}); NULL while this one is current.",
        IS_CURRENT: "Whether this is the key's current version.",
    }
    comments.update({column.name: column.description for column in contract.columns})
    comments.update({derived.name: derived.description for derived in contract.derived})
    return comments


def target_schema(contract: Contract) -> StructType:
    """`<dataset>`: one row per key (SCD1) or one row per key and version (SCD2)."""
    fields = [*row_fields(contract), *_lineage_fields()]
    if contract.scd_type == 2:
        bound = sequence_type(contract)
        fields += [
            StructField(EFFECTIVE_FROM, bound),
            StructField(EFFECTIVE_TO, bound),
            StructField(IS_CURRENT, BooleanType()),
        ]
    return StructType(fields)
