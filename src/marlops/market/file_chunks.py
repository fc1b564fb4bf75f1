"""A data file's mapped columns, read chunk by chunk with Arrow: column resolution (by name, position, or a
time-like index column) and the CSV / Parquet batch readers, each chunk a :class:`CheckedTable`."""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from marlops.market.data_files import (
    CheckedTable,
    DataFileError,
    Rows,
    csv_bad_record,
    csv_head,
    is_number,
    suffix_kind,
)

_TS_ALIASES = ("timestamp", "time", "date", "datetime")
# names pandas and other writers give an index column written without a name
_UNNAMED = ("", "unnamed: 0", "index", "__index_level_0__")


@dataclass(frozen=True)
class Want:
    key: str  # canonical name
    spec: str  # the user's column name or position
    required: bool


def _find(path: Path, names: list[str], spec: str) -> int | None:
    """Position of ``spec``: a position (``0``), the exact name, else a unique case-insensitive match."""
    if spec.isdigit():
        pos = int(spec)
        if pos >= len(names):
            raise DataFileError(path, f"column position {pos} is out of range (the file has {len(names)})")
        return pos
    if spec in names:
        return names.index(spec)
    folded = [i for i, n in enumerate(names) if n.casefold() == spec.casefold()]
    if len(folded) > 1:
        raise DataFileError(path, f"column {spec!r} matches several columns ignoring case; name one exactly")
    return folded[0] if folded else None


def _looks_like_time(value: object) -> bool:
    """A first cell that is a date/time (not a plain number, which could be a row index)."""
    if isinstance(value, pd.Timestamp | np.datetime64) or hasattr(value, "isoformat"):
        return True
    if value is None or is_number(value):
        return False
    try:
        pd.Timestamp(str(value))
    except (ValueError, TypeError):
        return False
    return True


def _find_ts(path: Path, names: list[str], first: list[object] | None) -> int | None:
    """The default ``ts`` column: ``ts``, then a time-named alias, then an unnamed index column of times."""
    for spec in ("ts", *_TS_ALIASES):
        pos = _find(path, names, spec)
        if pos is not None:
            return pos
    # a CSV writes the index first; Parquet (pandas) stores it last, as __index_level_0__
    for i in (0, len(names) - 1):
        if names and names[i].strip().lower() in _UNNAMED and first and _looks_like_time(first[i]):
            return i
    return None


def _resolve(
    path: Path, names: list[str], wants: list[Want], first: list[object] | None
) -> tuple[dict[str, int], dict[str, str]]:
    """Canonical key → column position and → label (its header name, or its position when unnamed)."""
    positions: dict[str, int] = {}
    missing: list[str] = []
    for w in wants:
        pos = _find(path, names, w.spec)
        if pos is None and w.key == "ts" and w.spec == "ts":
            pos = _find_ts(path, names, first)
        if pos is not None:
            positions[w.key] = pos
        elif w.required:
            missing.append(w.spec)
    if missing:
        shown = ", ".join(n.strip() or f"(unnamed, position {i})" for i, n in enumerate(names))
        raise DataFileError(
            path, f"missing required column (available: {shown or 'none'})", column=", ".join(missing)
        )
    labels = {k: names[p].strip() or str(p) for k, p in positions.items()}
    return positions, labels


_DICT_STRING = pa.dictionary(pa.int32(), pa.string())
CHUNK_BYTES = 4 << 20  # CSV block per chunk (~100k ticks): bigger ones leave more memory behind


def _to_pandas(table: pa.Table, categorical: set[str], keep_text: set[str]) -> pd.DataFrame:
    """Arrow → pandas without materialising millions of Python strings where it can be avoided:
    ``categorical`` text columns (buy/sell) are dictionary-encoded, ``keep_text`` ones stay Arrow-backed."""
    cols: dict[str, pd.Series] = {}
    for name in table.column_names:
        col = table.column(name)
        is_text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        if is_text and name in categorical:
            col = col.dictionary_encode()
        if is_text and name in keep_text:
            cols[name] = pd.Series(pd.arrays.ArrowExtensionArray(col), name=name)
        else:
            cols[name] = col.to_pandas(date_as_object=False)
    return pd.DataFrame(cols)


def _cast_text(table: pa.Table, numeric: set[str], categorical: set[str]) -> pa.Table:
    """All-text table → numeric columns as float64 and number-like others as int64/float64, wherever a
    column converts cleanly; a column that does not stays text, for the checks to find the bad cell."""
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        # a failing cast costs ~0.5 µs a cell (100x a good one): text whose first cell is no number
        # (ISO times) is not even tried
        if name not in categorical and (name in numeric or _first_is_number(col)):
            for typ in [pa.float64()] if name in numeric else [pa.int64(), pa.float64()]:
                try:
                    col = pc.cast(col, typ)
                    break
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    pass
        cols[name] = col
    return pa.table(cols)


def _first_is_number(col: pa.ChunkedArray) -> bool:
    present = pc.drop_null(col)
    return len(present) > 0 and is_number(present[0].as_py())


@dataclass(frozen=True)
class _Layout:
    """What to read: canonical key → column position, labels, and how each column is typed."""

    positions: dict[str, int]
    labels: dict[str, str]
    numeric: set[str]
    categorical: set[str]


def _csv_batches(
    path: Path, width: int, lay: _Layout, rows: Rows, strict: bool, chunk_bytes: int | None
) -> Iterator[pa.Table]:
    """CSV record batches of the mapped columns, read as text and typed per batch (a bad cell in one
    batch must not decide how the others are read). Ragged records are an error in strict mode and
    are skipped and counted otherwise."""
    internal = {k: f"f{p}" for k, p in lay.positions.items()}
    types = {n: (_DICT_STRING if k in lay.categorical else pa.string()) for k, n in internal.items()}

    def on_invalid(row: pacsv.InvalidRow) -> str:
        if strict:
            return "error"
        rows.ragged += 1
        return "skip"

    names = [f"f{i}" for i in range(width)]
    options = {
        "parse_options": pacsv.ParseOptions(invalid_row_handler=on_invalid),
        "convert_options": pacsv.ConvertOptions(
            include_columns=list(internal.values()), column_types=types, strings_can_be_null=True
        ),
    }
    back = {n: k for k, n in internal.items()}
    with contextlib.ExitStack() as stack:
        try:
            if chunk_bytes is None:  # the whole file at once: Arrow's multi-threaded reader
                opts = pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=True)
                whole = pacsv.read_csv(path, read_options=opts, **options)
                # one batch: the threaded reader returns a chunk per block (1 MiB), and a whole-file read
                # (bars) is one table
                batches: Iterator[pa.RecordBatch] = iter(whole.combine_chunks().to_batches())
            else:
                opts = pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=chunk_bytes)
                # A Python file object, not the path: given a path, Arrow reads ahead of the parser
                # without bound (most of a large file sat in memory); a Python file is read as parsed.
                source = stack.enter_context(_open_binary(path))
                batches = iter(pacsv.open_csv(source, read_options=opts, **options))
            for batch in batches:
                table = pa.Table.from_batches([batch]).rename_columns([back[n] for n in batch.schema.names])
                yield _cast_text(table, lay.numeric, lay.categorical)
        except pa.ArrowInvalid as err:
            line, found = csv_bad_record(path, width)
            if line is not None:
                raise DataFileError(path, f"expected {width} fields, found {found}", row=line) from None
            raise DataFileError(path, f"cannot read CSV: {err}") from None


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _parquet_batches(
    path: Path, names: list[str], lay: _Layout, chunk_rows: int | None
) -> Iterator[pa.Table]:
    by_name = {names[p]: k for k, p in lay.positions.items()}
    if chunk_rows is None:
        table = pq.read_table(path, columns=list(by_name))
        yield table.rename_columns([by_name[n] for n in table.column_names])
        return
    for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=list(by_name)):
        yield pa.Table.from_batches([batch]).rename_columns([by_name[n] for n in batch.schema.names])


def read_tables(
    path: Path,
    wants: list[Want],
    numeric: set[str],
    categorical: set[str],
    strict: bool,
    chunk_bytes: int | None,
) -> Iterator[CheckedTable]:
    """The file's mapped columns, one :class:`CheckedTable` per chunk (the whole file when ``chunk_bytes``
    is None).

    Raises if a required column is missing or the file has no rows."""
    kind = suffix_kind(path)
    if not path.exists():
        raise DataFileError(path, "file not found")
    if kind == "csv":
        names, first = csv_head(path)
        first_cells: list[object] | None = list(first) if first else None
    else:
        pf = pq.ParquetFile(path)
        names = list(pf.schema_arrow.names)
        head = next(pf.iter_batches(batch_size=1), pa.record_batch([])).to_pylist()
        first_cells = list(head[0].values()) if head else None
    positions, labels = _resolve(path, names, wants, first_cells)
    lay = _Layout(positions, labels, numeric & set(positions), categorical & set(positions))
    rows = Rows(path, kind == "csv", width=len(names))
    if kind == "csv":
        batches = _csv_batches(path, len(names), lay, rows, strict, chunk_bytes)
    else:  # ~40 bytes a CSV tick: the same number of rows per chunk
        batches = _parquet_batches(path, names, lay, None if chunk_bytes is None else chunk_bytes // 40)
    keep_text = {"ts"}
    offset, ts_unit, ts_kind, seen = 0, None, None, False
    for table in batches:
        if table.num_rows == 0:
            continue
        seen = True
        df = _to_pandas(table, lay.categorical, keep_text)
        t = CheckedTable(path, df, labels, rows, offset, strict, ts_unit, ts_kind)
        offset += table.num_rows
        rows.records = offset
        yield t
        ts_unit, ts_kind = t.ts_unit, t.ts_kind
    if not seen:
        raise DataFileError(path, "no rows")


def optional_want(key: str, spec: str | None) -> list[Want]:
    """An optional column under its default name may be absent; one the caller mapped may not."""
    return [] if spec is None else [Want(key, spec, spec != key)]


__all__ = ["CHUNK_BYTES"]
