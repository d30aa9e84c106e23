"""A user's raw offers or events, as parquet, CSV or JSON lines, read into the raw table's contract.

``ingest.offers`` / ``ingest.events`` name the files (a file, a directory or a glob, any storage URI);
``ingest.format`` says how to read them (``auto``: by the extension). Whatever the format, a value that
does not parse as its column's type (``price: "12,50"``, ``listing: "[1, x]"``) or a line that is not a
record at all (a broken JSON line) is not dropped and not silently nulled: the row keeps its original
text in ``_unparsable`` and ``ingest`` quarantines it with the reason ``unparsable``, its original
text as the quarantined raw row.

CSV: a header line names the columns; ``listing`` is a JSON array (``"[11, 12, 13]"``). Columns the
contract does not name are left out (with a warning); a CSV or parquet file without a key column is an
error that names the file and the column, since every row would be quarantined for it. (JSON lines name
their fields per record: a record without a key is quarantined by ingest's rules, ``null_key``.)
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from retrieval import storage, tables

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

UNPARSABLE = "_unparsable"  # the original record's text, when a value in it did not parse
FORMATS = ("parquet", "csv", "jsonl")
# the columns without which every row would be quarantined: a file without one is an error
KEYS = {tables.RAW_OFFERS.name: ("offer_id",), tables.RAW_EVENTS.name: ("session_id", "ts", "event")}


def format_of(path: str, given: str) -> str:
    """``given`` unless it is ``auto``; then from the extension (``.csv``, ``.jsonl``/``.json``/``.ndjson``,
    else parquet)."""
    if given != "auto":
        return given
    name = path.rstrip("/").lower()
    for ext in (".gz", ".bz2", ".zst"):
        name = name.removesuffix(ext)
    if name.endswith(".csv") or name.endswith(".tsv"):
        return "csv"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    return "parquet"


def read_raw(spark: SparkSession, path: str, contract: tables.Contract, fmt: str = "auto") -> DataFrame:
    """The records at ``path`` as ``contract``'s columns plus ``_unparsable`` (see the module's docstring).

    Raises:
        ValueError: an unknown format, or a file without one of the contract's key columns (naming both).
    """
    from pyspark.sql import functions as F

    fmt = format_of(path, fmt)
    if fmt not in FORMATS:
        raise ValueError(f"ingest.format must be one of auto, {', '.join(FORMATS)}; got {fmt!r}")
    uri = storage.to_uri(path)
    names = contract.column_names
    if fmt == "parquet":
        df = spark.read.parquet(uri)
    elif fmt == "csv":
        sep = "\t" if path.rstrip("/").lower().removesuffix(".gz").endswith(".tsv") else ","
        df = spark.read.option("header", True).option("sep", sep).option("mode", "PERMISSIVE").csv(uri)
    else:
        # every column as text (numbers and arrays keep their JSON text), a broken line as a whole
        ddl = ", ".join(f"`{n}` string" for n in names) + f", `{UNPARSABLE}` string"
        df = (
            spark.read.schema(ddl)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", UNPARSABLE)
            .json(uri)
        )
    _check_columns(df.columns, contract, path)
    present = [n for n in names if n in df.columns]
    types = {c.name: c.dtype for c in contract.columns}
    if fmt == "parquet" and all(dict(df.dtypes).get(n) == types[n] for n in present):  # already typed
        typed = [F.col(n) if n in df.columns else F.lit(None).cast(types[n]).alias(n) for n in names]
        return df.select(*typed, F.lit(None).cast("string").alias(UNPARSABLE))
    text = {n: F.col(n).cast("string") if n in df.columns else F.lit(None).cast("string") for n in names}
    parsed = {n: _parse(text[n], types[n]).alias(n) for n in names}
    failed = F.lit(False)
    for n in present:
        failed = failed | (text[n].isNotNull() & _parse(text[n], types[n]).isNull())
    original = F.to_json(F.struct(*[text[n].alias(n) for n in present]), {"ignoreNullFields": "false"})
    broken = F.col(UNPARSABLE) if UNPARSABLE in df.columns else F.lit(None).cast("string")
    return df.select(
        *parsed.values(),
        F.when(broken.isNotNull(), broken).when(failed, original).alias(UNPARSABLE),
    )


def raw_rows(
    spark: SparkSession, root: str, contract: tables.Contract, path: str, fmt: str = "auto"
) -> tuple[DataFrame, DataFrame | None]:
    """(the raw rows that parsed, the ones that did not or None): a user's files at ``path``, or the
    root's raw table (``contract``) when ``path`` is empty."""
    from pyspark.sql import functions as F

    from retrieval.spark_tables import read_table

    if not path:
        return read_table(spark, root, contract), None
    df = read_raw(spark, path, contract, fmt)
    return df.where(F.col(UNPARSABLE).isNull()).drop(UNPARSABLE), df.where(F.col(UNPARSABLE).isNotNull())


def _parse(col: Column, dtype: str) -> Column:
    """Text -> ``dtype``, null when it does not parse (never an error: Spark's ANSI casts would raise)."""
    from pyspark.sql import functions as F

    if dtype == "string":
        return col
    if dtype.startswith("array<"):
        return F.from_json(col, dtype)
    if dtype == "boolean":
        low = F.lower(F.trim(col))
        return F.when(low.isin("true", "1"), True).when(low.isin("false", "0"), False)
    return F.trim(col).try_cast(dtype)


def _check_columns(columns: list[str], contract: tables.Contract, path: str) -> None:
    have = [c for c in columns if c != UNPARSABLE]
    missing = [k for k in KEYS.get(contract.name, ()) if k not in have]
    if missing:
        raise ValueError(
            f"{path}: no column {', '.join(repr(m) for m in missing)} (the {contract.name} columns are "
            f"{', '.join(contract.column_names)}; see the README, Bring your own data)"
        )
    extra = [c for c in have if c not in contract.column_names]
    if extra:
        log.warning(
            "%s: columns %s are not %s columns; left out",
            os.path.basename(path.rstrip("/")),
            extra,
            contract.name,
        )
