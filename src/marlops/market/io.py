"""Import and export of real market data: CSV / Parquet files → canonical tick and bar frames.

Canonical frames (what the rest of the package consumes):

- tick frame: ``ts`` int64 (ns since epoch, UTC), ``price`` float64, ``size`` float64, ``side`` int8
  (+1 buy, -1 sell, 0 unknown), sorted by ``ts`` (stable: rows sharing a timestamp keep file order).
- bar frame: exactly :data:`marlops.market.bars.BAR_COLUMNS`, sorted by ``start``.

Rules (docs/market-data.md):

- Format by suffix: ``.csv``, ``.csv.gz`` or ``.parquet`` / ``.pq``; anything else is an error.
- Timestamps are ISO-8601 strings (with or without an offset) or numeric epoch values. Strings with an
  offset (``Z``, ``+01:00``, ``-0500``) are exact instants; naive strings are wall-clock time in ``tz``.
  For numbers, ``ts_unit`` is one of s/ms/us/ns; if it is None the unit is inferred from the median
  magnitude of the column (|v| < 1e11 → s, < 1e14 → ms, < 1e17 → us, else ns; the bands are 1973–5138
  in each unit) and every value must fall in the same band, so a file mixing units is an error.
  ``ts_unit`` is ignored for string timestamps. A naive wall-clock time that is ambiguous in ``tz``
  (the repeated hour at a DST fall-back) is resolved by order when the column allows it, else an error.
- Columns are found by name (exact, else case-insensitive), or by position (``ts=0``); the time column
  defaults to ``ts``, then ``timestamp``/``time``/``date``/``datetime``, then an unnamed index column
  holding times (pandas' ``to_csv``/``to_parquet``).
- A row failing a check raises (``strict``, the default of the library readers) or is rejected and
  counted by reason in a :class:`~marlops.market.rejects.RejectLog` (``data import``'s default).
  Errors are :class:`DataFileError` naming the file, the row *as a user sees it* (CSV: the line
  number, header = line 1, so the first data row is 2; Parquet: 1-based row) and the column; in strict
  mode the earliest bad row of a chunk. Blank CSV lines are skipped but still counted, so line numbers
  stay right. CSV rows with the wrong number of fields are ``bad_shape`` rejects.
- Optional columns: ``side`` (absent → 0; empty cell → 0), bar ``vwap`` (absent → (high+low+close)/3)
  and ``ticks`` (absent → 0). They are optional only under their default names: a column the caller
  explicitly mapped must exist.
- Ticks may share a timestamp (exact duplicates are the TickValidator's business, or the bulk
  import's). :func:`read_ticks` stably sorts out-of-order rows (logged at INFO); :func:`scan_ticks`
  keeps file order for the import, which rejects them unless asked to sort. Tick timestamps must be
  >= 0 (the epoch).
- Bars: ``ts`` is the bar start, ``end = start + timeframe_ns``. A repeated start is a ``duplicate``,
  a start before an earlier row's is sorted (``sort``) or rejected as ``out_of_order``. Grid
  check: consecutive starts (after sorting) must differ by a whole multiple of ``timeframe_ns``, either
  in UTC or in wall-clock time of ``tz`` (daily bars at New York midnight are 23 or 25 h apart in UTC
  across DST). Holes (weekends, halts) are allowed and not filled. Imported bars have ``gap=False``:
  a file's rows are what traded.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from marlops.market.bars import BAR_COLUMNS
from marlops.market.rejects import RejectLog, join_fields
from marlops.market.ticks import RejectReason

log = logging.getLogger(__name__)

TICK_COLUMNS: tuple[str, ...] = ("ts", "price", "size", "side")
TICK_DTYPES: dict[str, str] = {"ts": "int64", "price": "float64", "size": "float64", "side": "int8"}
BAR_DTYPES: dict[str, str] = {
    "start": "int64",
    "end": "int64",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",
    "vwap": "float64",
    "ticks": "int64",
    "gap": "bool",
}

_UNIT_NS: dict[str, int] = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
# Upper bounds of |value| for the inferred unit, checked in this order (see the module docstring).
_UNIT_BANDS: tuple[tuple[float, str], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"), (np.inf, "ns"))
# An explicit offset after a time of day; the leading ':\d{2}' keeps a date like 2024-01-02 from matching.
_OFFSET_RE = r":\d{2}(\.\d*)?\s*([zZ]|UTC|[+-]\d{2}(:?\d{2})?)$"
_SIDE_WORDS: dict[str, int] = {
    "buy": 1,
    "b": 1,
    "1": 1,
    "+1": 1,
    "1.0": 1,
    "sell": -1,
    "s": -1,
    "-1": -1,
    "-1.0": -1,
    "0": 0,
    "0.0": 0,
    "": 0,
    "unknown": 0,
}
_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")


class DataFileError(ValueError):
    """A data file that cannot be imported; says where (file, row as the user sees it, column)."""

    def __init__(
        self, path: str | Path, message: str, *, row: int | None = None, column: str | None = None
    ) -> None:
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.row = row
        self.column = column
        self._message = message

    def __reduce__(self) -> tuple[type[DataFileError], tuple[str, str], dict[str, int | str | None]]:
        # keyword-only fields would be lost by the default exception pickling (multiprocessing)
        return (
            DataFileError,
            (self.path, self._message),
            {"row": self.row, "column": self.column, "args": self.args},
        )


@dataclass(frozen=True)
class ColumnMap:
    """Canonical name → the file's column name. ``None`` for an optional column means "not in the file"."""

    ts: str = "ts"
    price: str = "price"
    size: str = "size"
    side: str | None = "side"
    open: str = "open"
    high: str = "high"
    low: str = "low"
    close: str = "close"
    volume: str = "volume"
    vwap: str | None = "vwap"
    ticks: str | None = "ticks"

    @classmethod
    def parse(cls, spec: str) -> ColumnMap:
        """``"ts=time,price=px,size=qty"`` → ColumnMap. ``side=`` / ``side=none`` drops an optional column."""
        known = {f.name: f for f in fields(cls)}
        optional = {"side", "vwap", "ticks"}
        kwargs: dict[str, str | None] = {}
        for item in (p.strip() for p in spec.split(",")):
            if not item:
                continue
            key, sep, value = (s.strip() for s in item.partition("="))
            if not sep:
                raise ValueError(f"column map: expected key=column, got {item!r} (e.g. ts=time,price=px)")
            if key not in known:
                raise ValueError(f"column map: unknown key {key!r}; valid keys: {', '.join(known)}")
            if key in kwargs:
                raise ValueError(f"column map: key {key!r} given twice")
            if value.lower() in ("", "none"):
                if key not in optional:
                    raise ValueError(f"column map: {key!r} is required and needs a column name")
                kwargs[key] = None
            else:
                kwargs[key] = value
        return cls(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- reading


def _suffix_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    suffixes = ", ".join(_CSV_SUFFIXES + _PARQUET_SUFFIXES)
    raise DataFileError(path, f"unsupported file type (use one of {suffixes})")


def _open_text(path: Path) -> IO[str]:
    return gzip.open(path, "rt", newline="") if path.name.lower().endswith(".gz") else open(path, newline="")


def _csv_head(path: Path) -> tuple[list[str], list[str] | None]:
    """The header and the first data record (None if there is none)."""
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        first = next((r for r in reader if r), None)
    if not header:
        raise DataFileError(path, "no rows")
    return header, first


def _csv_line(path: Path, pos: int) -> int:
    """Line number (1-based, header = 1) where data record ``pos`` (0-based, blank lines skipped) starts.

    Only called on the error path, so a Python scan is fine; it is exact with quoted newlines too.
    """
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        next(reader, None)
        k = -1
        while True:
            line = reader.line_num + 1
            record = next(reader, None)
            if record is None:
                return line
            if record:  # csv yields [] for a blank line, which Arrow skips too
                k += 1
                if k == pos:
                    return line


def _csv_scan(path: Path, width: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Line numbers of the records Arrow keeps (right width), and (line, text) of the ragged ones."""
    good: list[int] = []
    ragged: list[tuple[int, str]] = []
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        next(reader, None)
        while True:
            line = reader.line_num + 1
            record = next(reader, None)
            if record is None:
                return np.asarray(good, np.int64), ragged
            if len(record) == width:
                good.append(line)
            elif record:
                ragged.append((line, ",".join(record)))


def _physical_lines(path: Path) -> int:
    """Number of lines in the file (a last line without a newline counts), counted in binary chunks."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    count, last = 0, b"\n"
    with opener(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _csv_bad_record(path: Path, width: int) -> tuple[int | None, int]:
    """(line, number of fields) of the first record whose width differs from the header's."""
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        next(reader, None)
        while True:
            line = reader.line_num + 1
            record = next(reader, None)
            if record is None:
                return None, 0
            if record and len(record) != width:
                return line, len(record)


@dataclass
class Rows:
    """Record positions (0-based, as Arrow reads them) → row numbers as the user sees them.

    Parquet: 1-based row. CSV: the line number (header = 1). When the file has no blank lines, quoted
    newlines or skipped ragged records, record k is on line k + 2; otherwise one Python pass over the
    file maps them (only a file with rejects or an error pays for it).
    """

    path: Path
    is_csv: bool
    width: int = 0
    records: int = 0  # records read so far (set by the reader)
    ragged: int = 0  # ragged records skipped (lenient CSV)
    _lines: np.ndarray | None = None
    _ragged_lines: list[tuple[int, str]] = field(default_factory=list)

    def row(self, pos: int) -> int:
        """Exact row of one record, at any time during the read (the error path)."""
        if not self.is_csv:
            return pos + 1
        if self.ragged:
            return int(self._map()[pos])
        return _csv_line(self.path, pos)

    def rows(self, pos: np.ndarray) -> np.ndarray:
        """Rows of many records, once the whole file has been read."""
        pos = np.asarray(pos, np.int64)
        if not self.is_csv:
            return pos + 1
        if not self.ragged and _physical_lines(self.path) == self.records + 1:
            return pos + 2
        return self._map()[pos]

    def ragged_lines(self) -> list[tuple[int, str]]:
        self._map()
        return self._ragged_lines

    def _map(self) -> np.ndarray:
        if self._lines is None:
            self._lines, self._ragged_lines = _csv_scan(self.path, self.width)
        return self._lines


_NO_REASON = 0


@dataclass
class _Table:
    """One chunk of a file's mapped columns (named by canonical key), with its rejected rows so far.

    Checks call :meth:`flag`: in strict mode the first flagged row raises a :class:`DataFileError`,
    otherwise every flagged row keeps its first reason and column and the row is dropped later.
    """

    path: Path
    df: pd.DataFrame
    labels: dict[str, str]  # canonical key → the column as the user names it
    rows: Rows
    offset: int = 0  # records before this chunk
    strict: bool = True
    ts_unit: str | None = None  # epoch unit, inferred from the first chunk and kept for the rest
    ts_kind: str | None = None  # a text time column: 'epoch' or 'iso', decided once (see _timestamps)
    reasons: list[str] = field(default_factory=lambda: [""])
    code: np.ndarray = field(init=False)  # per row: index into ``reasons`` (0 = accepted so far)
    column: np.ndarray = field(init=False)  # per row: the key of the column that rejected it
    _error: tuple[int, int, str, str] | None = None  # strict mode: earliest (row, count, key, message)

    def __post_init__(self) -> None:
        self.code = np.zeros(len(self.df), dtype=np.int16)
        self.column = np.full(len(self.df), "", dtype=object)

    def fail(
        self, message: str, pos: int | None = None, key: str | None = None, count: int = 1
    ) -> DataFileError:
        more = f" (and {count - 1} more rows)" if count > 1 else ""
        row = None if pos is None else self.rows.row(self.offset + int(pos))
        label = None if key is None else self.labels.get(key, key)
        return DataFileError(self.path, message + more, row=row, column=label)

    def flag(self, bad: np.ndarray, key: str, reason: str, message: Callable[[int], str]) -> None:
        """Reject the rows in ``bad`` for ``reason``; ``message(i)`` describes row i for strict mode,
        which raises for the earliest bad row once every check has run (:meth:`raise_first`)."""
        if not bad.any():
            return
        if self.strict:
            i, n = _first(bad & self.ok) if (bad & self.ok).any() else _first(bad)
            if self._error is None or i < self._error[0]:
                self._error = (i, n, key, message(i))
        if reason not in self.reasons:
            self.reasons.append(reason)
        new = bad & (self.code == _NO_REASON)
        self.code[new] = self.reasons.index(reason)
        self.column[new] = self.labels.get(key, key)

    @property
    def ok(self) -> np.ndarray:
        return self.code == _NO_REASON

    def raise_first(self) -> None:
        """Strict mode: the error of the earliest bad row, if any."""
        if self._error is not None:
            i, n, key, message = self._error
            raise self.fail(message, i, key, n)

    def log_rejects(self, log_: RejectLog | None) -> None:
        if log_ is None:
            return
        log_.rows_of = self.rows.rows
        bad = np.flatnonzero(~self.ok)
        reasons = np.asarray(self.reasons, dtype=object)[self.code[bad]]
        fields_ = join_fields(self.df, bad) if log_.keep_rows else np.empty(len(bad), object)
        log_.add(bad + self.offset, reasons, self.column[bad], fields_)


# ------------------------------------------------------------------------------------ column resolution

_TS_ALIASES = ("timestamp", "time", "date", "datetime")
# names pandas and other writers give an index column written without a name
_UNNAMED = ("", "unnamed: 0", "index", "__index_level_0__")


@dataclass(frozen=True)
class _Want:
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
    if value is None or _is_number(value):
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
    path: Path, names: list[str], wants: list[_Want], first: list[object] | None
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


# ---------------------------------------------------------------------------------------------- reading

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
    return len(present) > 0 and _is_number(present[0].as_py())


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
            line, found = _csv_bad_record(path, width)
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


def _tables(
    path: Path,
    wants: list[_Want],
    numeric: set[str],
    categorical: set[str],
    strict: bool,
    chunk_bytes: int | None,
) -> Iterator[_Table]:
    """The file's mapped columns, one :class:`_Table` per chunk (the whole file when ``chunk_bytes`` is None).

    Raises if a required column is missing or the file has no rows."""
    kind = _suffix_kind(path)
    if not path.exists():
        raise DataFileError(path, "file not found")
    if kind == "csv":
        names, first = _csv_head(path)
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
        t = _Table(path, df, labels, rows, offset, strict, ts_unit, ts_kind)
        offset += table.num_rows
        rows.records = offset
        yield t
        ts_unit, ts_kind = t.ts_unit, t.ts_kind
    if not seen:
        raise DataFileError(path, "no rows")


def _check_tz(tz: str) -> None:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"tz: unknown time zone {tz!r} (use an IANA name like 'America/New_York')") from err


def _first(mask: np.ndarray) -> tuple[int, int]:
    """Index of the first True and how many there are (mask known to have at least one)."""
    idx = np.flatnonzero(mask)
    return int(idx[0]), len(idx)


# -------------------------------------------------------------------------------------- per-column checks


def _numbers(t: _Table, key: str, reason: str) -> np.ndarray:
    """Column → float64 (NaN where rejected); a missing cell or text that is no number is flagged."""
    raw = t.df[key]
    if pd.api.types.is_bool_dtype(raw.dtype):
        raise t.fail("expected numbers, got booleans", 0, key)
    if pd.api.types.is_numeric_dtype(raw.dtype):
        vals = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        t.flag(np.isnan(vals), key, reason, lambda i: "missing value")
        return vals
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

    def why(i: int) -> str:
        value = raw.iloc[i]
        return "missing value" if pd.isna(value) else f"cannot parse {str(value)!r} as a number"

    t.flag(np.isnan(vals), key, reason, why)
    return vals


def _check(t: _Table, bad: np.ndarray, key: str, reason: str, rule: str, vals: np.ndarray) -> None:
    t.flag(bad, key, reason, lambda i: f"{rule}, got {vals[i]!r}")


def _positive(t: _Table, key: str, reason: str) -> np.ndarray:
    vals = _numbers(t, key, reason)
    with np.errstate(invalid="ignore"):
        _check(t, ~(np.isfinite(vals) & (vals > 0)), key, reason, "must be finite and > 0", vals)
    return vals


def _nonnegative(t: _Table, key: str, reason: str) -> np.ndarray:
    vals = _numbers(t, key, reason)
    with np.errstate(invalid="ignore"):
        _check(t, ~(np.isfinite(vals) & (vals >= 0)), key, reason, "must be finite and >= 0", vals)
    return vals


def _sides(t: _Table, key: str) -> np.ndarray:
    """Side column → int8 in {-1, 0, 1}; words map through the (few) distinct values; empty → 0."""
    raw = t.df[key]
    rule = "side must be -1, 0, 1, buy/sell or b/s"
    reason = RejectReason.BAD_SIDE.value
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        vals = raw.to_numpy(dtype=np.float64, na_value=0.0)
        bad = ~np.isin(vals, (-1.0, 0.0, 1.0))
        _check(t, bad, key, reason, rule, vals)
        return np.where(bad, 0.0, vals).astype(np.int8)
    cat = raw if isinstance(raw.dtype, pd.CategoricalDtype) else raw.astype("category")
    words = [_SIDE_WORDS.get(str(v).strip().lower(), 9) for v in cat.cat.categories]
    lookup = np.array([*words, 0], dtype=np.int8)  # code -1 (missing cell) → the trailing 0
    vals = lookup[cat.cat.codes.to_numpy()]
    bad = vals == 9
    t.flag(bad, key, reason, lambda i: f"{rule}, got {raw.iloc[i]!r}")
    vals[bad] = 0
    return vals


# ------------------------------------------------------------------------------------------- timestamps

_BAD_TS = RejectReason.BAD_TIMESTAMP.value


def _infer_unit(t: _Table, vals: np.ndarray, ok: np.ndarray, key: str) -> str:
    """Unit from the median magnitude of the present values; a value outside that unit's band is flagged
    (the column mixes units)."""
    mag = np.abs(vals)
    if t.ts_unit is None:
        t.ts_unit = next(u for bound, u in _UNIT_BANDS if float(np.median(mag[ok])) < bound)
    unit = t.ts_unit
    k = next(k for k, (_, u) in enumerate(_UNIT_BANDS) if u == unit)
    lo = _UNIT_BANDS[k - 1][0] if k else 0.0
    with np.errstate(invalid="ignore"):
        odd = ok & ((mag < lo) | (mag >= _UNIT_BANDS[k][0]))
    t.flag(
        odd,
        key,
        _BAD_TS,
        lambda i: (
            f"epoch value {vals[i]!r} does not look like the column's inferred unit ({unit}); "
            "the column mixes units, or pass ts_unit"
        ),
    )
    return unit


def _epoch_to_ns(t: _Table, raw: pd.Series, key: str, ts_unit: str | None) -> np.ndarray:
    vals_f = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(vals_f)
    t.flag(missing, key, _BAD_TS, lambda i: "missing timestamp")
    if missing.all():
        return np.zeros(len(vals_f), dtype=np.int64)
    unit = ts_unit or _infer_unit(t, vals_f, ~missing, key)
    factor = _UNIT_NS[unit]
    limit = np.iinfo(np.int64).max / factor
    with np.errstate(invalid="ignore"):
        out_of_range = ~np.isfinite(vals_f) | (np.abs(vals_f) >= limit)
    _check(t, out_of_range & ~missing, key, _BAD_TS, f"epoch timestamp out of range for unit {unit}", vals_f)
    if pd.api.types.is_integer_dtype(raw.dtype):
        return raw.to_numpy(dtype=np.int64) * np.int64(factor)  # exact: no float detour for integers
    vals_f = np.where(out_of_range, 0.0, vals_f)
    # whole and fractional parts separately: vals * 1e9 in float64 would lose ~256 ns at today's epochs
    whole = np.floor(vals_f)
    return whole.astype(np.int64) * np.int64(factor) + np.round((vals_f - whole) * factor).astype(np.int64)


def _localize(naive: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """Wall-clock times in ``tz`` → aware; ambiguous/nonexistent ones that cannot be resolved → NaT."""
    if tz == "UTC":
        return naive.tz_localize("UTC")
    try:
        return naive.tz_localize(tz, ambiguous="infer", nonexistent="NaT")
    except Exception:  # pytz.AmbiguousTimeError (pandas 2) when order cannot resolve it: mark instead
        return naive.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")


def _parse_iso(text: pa.Array, aware: bool) -> tuple[np.ndarray, np.ndarray]:
    """ISO text → (ns, unparsed mask); ns is UTC for ``aware`` text, naive wall-clock time otherwise.

    Arrow's C++ parser handles the common forms fast; pandas (slower, more lenient) takes over when it
    fails, and its coerced NaT marks the cells that really cannot be parsed."""
    try:
        ns = pc.cast(pc.cast(text, pa.timestamp("ns", "UTC" if aware else None)), pa.int64())
        return ns.to_numpy(zero_copy_only=False), np.zeros(len(text), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        series = pd.Series(text.to_pandas())
        idx = pd.DatetimeIndex(pd.to_datetime(series, format="ISO8601", utc=aware, errors="coerce"))
        idx = idx.as_unit("ns")
        return idx.asi8.copy(), np.asarray(idx.isna())


def _strings_to_ns(t: _Table, raw: pd.Series, key: str, tz: str) -> np.ndarray:
    """ISO-8601 text → ns UTC; rows with an offset are instants, the others wall-clock time in ``tz``."""
    arr = pa.array(
        raw.array if isinstance(raw.dtype, pd.ArrowDtype) else raw.to_numpy(dtype=object),
        type=pa.string(),
        from_pandas=True,
    )
    missing = pc.is_null(arr).to_numpy(zero_copy_only=False)
    t.flag(missing, key, _BAD_TS, lambda i: "missing timestamp")
    arr = pc.fill_null(pc.utf8_trim_whitespace(arr), "1970-01-01T00:00:00Z")
    zulu = pc.ends_with(arr, "Z")
    if pc.all(zulu).as_py():  # the usual export (…Z everywhere): no regex over every cell
        aware = np.ones(len(arr), dtype=bool)
    else:
        aware = pc.match_substring_regex(arr, _OFFSET_RE).to_numpy(zero_copy_only=False).astype(bool)
    out = np.zeros(len(arr), dtype=np.int64)
    unparsed = np.zeros(len(arr), dtype=bool)
    no_local = np.zeros(len(arr), dtype=bool)
    for flag in (True, False):
        mask = aware if flag else ~aware
        if not mask.any():
            continue
        subset = arr if mask.all() else arr.filter(pa.array(mask))
        ns, bad = _parse_iso(subset, flag)
        unparsed[mask] = bad
        if not flag:  # wall-clock time: localize the parsed cells only
            local = np.zeros(len(ns), dtype=np.int64)
            idx = _localize(pd.DatetimeIndex(ns[~bad].view("datetime64[ns]")), tz)
            lost = np.zeros(len(ns), dtype=bool)
            lost[~bad] = np.asarray(idx.isna())
            local[~bad] = np.where(lost[~bad], 0, idx.asi8)
            no_local[mask] = lost
            ns = local
        out[mask] = np.where(bad, 0, ns)
    t.flag(unparsed, key, _BAD_TS, lambda i: f"cannot parse {raw.iloc[i]!r} as an ISO-8601 timestamp")
    t.flag(
        no_local,
        key,
        _BAD_TS,
        lambda i: f"{raw.iloc[i]!r} is ambiguous or does not exist in time zone {tz!r}",
    )
    return out


_NUMBER_RE = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_DATE_RE = r"^\s*\d{4}-\d{1,2}-\d{1,2}"


def _text_kind(raw: pd.Series) -> str | None:
    """'epoch' or 'iso' for a text time column: whichever the cells look like more (numbers win a tie;
    cells like neither, junk, count for none); None if no cell decides. Counted in Arrow, not Python."""
    arr = pa.array(
        raw.array if isinstance(raw.dtype, pd.ArrowDtype) else raw.to_numpy(dtype=object),
        type=pa.string(),
        from_pandas=True,
    )
    numbers = pc.sum(pc.match_substring_regex(arr, _NUMBER_RE)).as_py() or 0
    dates = pc.sum(pc.match_substring_regex(arr, _DATE_RE)).as_py() or 0
    if numbers == dates == 0:
        return None
    return "epoch" if numbers >= dates else "iso"


def _is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _timestamps(t: _Table, key: str, tz: str, ts_unit: str | None) -> np.ndarray:
    """Any supported timestamp column → int64 ns UTC (0 where the row is rejected)."""
    raw = t.df[key]
    if isinstance(raw.dtype, pd.DatetimeTZDtype):  # Parquet timestamps with a zone
        idx = pd.DatetimeIndex(raw).tz_convert("UTC").as_unit("ns")
        missing, no_local = np.asarray(idx.isna()), np.zeros(len(idx), dtype=bool)
    elif pd.api.types.is_datetime64_dtype(raw.dtype):  # naive: wall-clock time in tz
        naive = pd.DatetimeIndex(raw).as_unit("ns")
        idx = _localize(naive, tz)
        missing = np.asarray(naive.isna())
        no_local = np.asarray(idx.isna()) & ~missing
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return _epoch_to_ns(t, raw, key, ts_unit)
    elif pd.api.types.is_bool_dtype(raw.dtype):
        raise t.fail("expected timestamps, got booleans", 0, key)
    else:
        # Text: a column of mostly numbers (an epoch column with bad cells) goes the epoch way; decided
        # once, by the first chunk with a number or a date, so every chunk reads the column alike.
        t.ts_kind = t.ts_kind or _text_kind(raw)
        if t.ts_kind != "epoch":
            return _strings_to_ns(t, raw, key, tz)
        raw = raw.astype(object)  # rare path (epoch text with a bad cell): clarity over speed
        vals = pd.to_numeric(raw, errors="coerce")
        bad = (vals.isna() & raw.notna()).to_numpy()
        t.flag(bad, key, _BAD_TS, lambda i: f"cannot parse {raw.iloc[i]!r} as a timestamp")
        return _epoch_to_ns(t, vals, key, ts_unit)
    t.flag(missing, key, _BAD_TS, lambda i: "missing timestamp")
    t.flag(
        no_local, key, _BAD_TS, lambda i: f"{raw.iloc[i]} is ambiguous or does not exist in time zone {tz!r}"
    )
    return np.where(missing | no_local, 0, idx.asi8)


def _sort_order(ts: np.ndarray) -> tuple[np.ndarray | None, int]:
    """Stable sorting permutation (None if already sorted) and how many rows were out of order."""
    if len(ts) < 2:
        return None, 0
    late = ts[1:] < np.maximum.accumulate(ts)[:-1]
    n = int(np.count_nonzero(late))
    return (np.argsort(ts, kind="stable") if n else None), n


def _check_unit_args(tz: str, ts_unit: str | None) -> None:
    _check_tz(tz)
    if ts_unit is not None and ts_unit not in _UNIT_NS:
        raise ValueError(f"ts_unit: must be one of {', '.join(_UNIT_NS)} or None, got {ts_unit!r}")


def _optional_want(key: str, spec: str | None) -> list[_Want]:
    """An optional column under its default name may be absent; one the caller mapped may not."""
    return [] if spec is None else [_Want(key, spec, spec != key)]


# ------------------------------------------------------------------------------------------------- ticks


@dataclass
class TickChunk:
    """Rows of a tick file that passed the per-row checks, in file order, with their record positions."""

    ticks: pd.DataFrame  # the canonical tick frame (not sorted)
    pos: np.ndarray  # (n,) int64: each row's 0-based record position in the file
    rows: Rows  # turns positions into the row numbers a user sees
    ts_label: str = "ts"  # the time column as the user names it
    raw: pd.DataFrame | None = None  # the rows' cells as read, kept only for a rejects file


def scan_ticks(
    path: str | Path,
    columns: ColumnMap = ColumnMap(),
    tz: str = "UTC",
    ts_unit: str | None = None,
    *,
    strict: bool = True,
    rejects: RejectLog | None = None,
    chunk_bytes: int | None = None,
) -> Iterator[TickChunk]:
    """Read a tick file chunk by chunk; rows failing a per-row check raise (``strict``) or are counted in
    ``rejects`` by reason and left out. Rows keep file order: ordering is the caller's business."""
    _check_unit_args(tz, ts_unit)
    path = Path(path)
    c = columns
    wants = [_Want("ts", c.ts, True), _Want("price", c.price, True), _Want("size", c.size, True)]
    wants += _optional_want("side", c.side)
    for t in _tables(path, wants, {"price", "size"}, {"side"}, strict, chunk_bytes):
        ts = _timestamps(t, "ts", tz, ts_unit)
        _check(t, ts < 0, "ts", _BAD_TS, "tick timestamps must be at or after 1970-01-01 UTC", ts)
        price = _positive(t, "price", RejectReason.BAD_PRICE.value)
        size = _nonnegative(t, "size", RejectReason.BAD_SIZE.value)
        side = _sides(t, "side") if "side" in t.df.columns else np.zeros(len(ts), dtype=np.int8)
        t.raise_first()
        ok = t.ok
        t.log_rejects(rejects)
        frame = pd.DataFrame({"ts": ts[ok], "price": price[ok], "size": size[ok], "side": side[ok]})
        raw = t.df[ok].reset_index(drop=True) if rejects is not None and rejects.keep_rows else None
        yield TickChunk(frame, np.flatnonzero(ok) + t.offset, t.rows, t.labels["ts"], raw)
    _log_ragged(path, rejects, t.rows)


def _log_ragged(path: Path, rejects: RejectLog | None, rows: Rows) -> None:
    """Count the ragged CSV rows Arrow skipped (their lines cost a pass over the file: only if kept)."""
    if not rows.ragged:
        return
    log.info("%s: %d rows with the wrong number of fields were skipped", path, rows.ragged)
    if rejects is None:
        return
    rejects.rows_of = rows.rows
    if rejects.keep_rows:
        for line, text in rows.ragged_lines():
            rejects.add_numbered(line, "bad_shape", text)
    else:
        rejects.counts["bad_shape"] += rows.ragged


def read_ticks(
    path: str | Path,
    columns: ColumnMap = ColumnMap(),
    tz: str = "UTC",
    ts_unit: str | None = None,
    *,
    strict: bool = True,
    rejects: RejectLog | None = None,
) -> pd.DataFrame:
    """Read a whole tick file into the canonical tick frame, sorted by ts (stable); see the module
    docstring for every rule. Ordering rejections (duplicates, out of order) are the feed's business."""
    parts = list(scan_ticks(path, columns, tz, ts_unit, strict=strict, rejects=rejects))
    df = pd.concat([p.ticks for p in parts], ignore_index=True) if len(parts) > 1 else parts[0].ticks
    order, late = _sort_order(df["ts"].to_numpy())
    if order is not None:
        log.info("%s: %d of %d ticks were out of order; sorted by ts (stable)", path, late, len(df))
        df = df.iloc[order].reset_index(drop=True)
    return df.astype(TICK_DTYPES)


# -------------------------------------------------------------------------------------------------- bars


def read_bars(
    path: str | Path,
    timeframe_ns: int,
    columns: ColumnMap = ColumnMap(),
    tz: str = "UTC",
    ts_unit: str | None = None,
    *,
    strict: bool = True,
    sort: bool = True,
    rejects: RejectLog | None = None,
) -> pd.DataFrame:
    """Read an OHLCV file (``ts`` = bar start) into the canonical bar frame (see the module docstring).

    Not ``strict``: rows failing a check are counted in ``rejects`` (bad_timestamp, bad_price, bad_ohlc,
    bad_volume, bad_vwap, bad_ticks, duplicate, out_of_order) and left out. Not ``sort``: a bar starting
    before an earlier row's start is rejected as out of order instead of being sorted into place."""
    _check_unit_args(tz, ts_unit)
    if timeframe_ns <= 0:
        raise ValueError("timeframe_ns: must be positive")
    path = Path(path)
    c = columns
    keys = ("open", "high", "low", "close", "volume")
    wants = [_Want("ts", c.ts, True), *(_Want(k, getattr(c, k), True) for k in keys)]
    wants += _optional_want("vwap", c.vwap) + _optional_want("ticks", c.ticks)
    numeric = {"open", "high", "low", "close", "volume", "vwap", "ticks"}
    (t,) = _tables(path, wants, numeric, set(), strict, None)
    cols = _bar_columns(t, tz, ts_unit)
    t.raise_first()
    _order_bars(t, cols["start"], sort)
    t.raise_first()
    ok = t.ok
    t.log_rejects(rejects)
    _log_ragged(path, rejects, t.rows)
    pos = np.flatnonzero(ok)
    cols = {k: v[ok] for k, v in cols.items()}
    order, late = _sort_order(cols["start"])
    if order is not None:
        log.info("%s: %d of %d bars were out of order; sorted by start (stable)", path, late, len(order))
        cols = {k: v[order] for k, v in cols.items()}
        pos = pos[order]
    _check_grid(t, cols["start"], pos, timeframe_ns, tz)
    start = cols.pop("start")
    return pd.DataFrame(
        {
            "start": start,
            "end": start + np.int64(timeframe_ns),
            **cols,
            "gap": np.zeros(len(start), dtype=bool),
        },
        columns=list(BAR_COLUMNS),
    )


def _bar_columns(t: _Table, tz: str, ts_unit: str | None) -> dict[str, np.ndarray]:
    """Per-row checks of a bar table; every column as an array (rejected rows flagged, values arbitrary)."""
    bad_price = RejectReason.BAD_PRICE.value
    start = _timestamps(t, "ts", tz, ts_unit)
    o, h = _positive(t, "open", bad_price), _positive(t, "high", bad_price)
    lo, cl = _positive(t, "low", bad_price), _positive(t, "close", bad_price)
    with np.errstate(invalid="ignore"):
        _check(t, h < np.maximum(o, cl), "high", "bad_ohlc", "high is below max(open, close)", h)
        _check(t, lo > np.minimum(o, cl), "low", "bad_ohlc", "low is above min(open, close)", lo)
    vol = _nonnegative(t, "volume", "bad_volume")
    if "vwap" in t.df.columns:
        vwap = _positive(t, "vwap", "bad_vwap")
    else:
        vwap = (h + lo + cl) / 3.0  # typical price: the usual stand-in when a feed has no vwap
    if "ticks" in t.df.columns:
        n_ticks = _nonnegative(t, "ticks", "bad_ticks")
        with np.errstate(invalid="ignore"):
            _check(t, n_ticks != np.floor(n_ticks), "ticks", "bad_ticks", "must be a whole number", n_ticks)
        ticks = np.where(t.ok, n_ticks, 0).astype(np.int64)
    else:
        ticks = np.zeros(len(start), dtype=np.int64)
    return {
        "start": start,
        "open": o,
        "high": h,
        "low": lo,
        "close": cl,
        "volume": vol,
        "vwap": vwap,
        "ticks": ticks,
    }


def _order_bars(t: _Table, start: np.ndarray, sort: bool) -> None:
    """Flag repeated starts (the later copy) and, unless ``sort``, starts before an earlier row's start."""
    ok = t.ok
    s = pd.Series(np.where(ok, start, np.iinfo(np.int64).min))
    dup = ok & s.duplicated(keep="first").to_numpy()

    def dup_message(i: int) -> str:
        first = t.rows.row(t.offset + int(np.flatnonzero(ok & (start == start[i]))[0]))
        return f"duplicate bar start {pd.Timestamp(int(start[i]), tz='UTC')} (first at row {first})"

    t.flag(dup, "ts", RejectReason.DUPLICATE.value, dup_message)
    if sort:
        return
    kept = np.where(t.ok, start, np.iinfo(np.int64).min)
    newest = np.maximum.accumulate(kept)
    before = np.r_[np.iinfo(np.int64).min, newest[:-1]]
    late = t.ok & (start < before)
    t.flag(
        late,
        "ts",
        RejectReason.OUT_OF_ORDER.value,
        lambda i: (
            f"bar start {pd.Timestamp(int(start[i]), tz='UTC')} is before an earlier row's "
            f"{pd.Timestamp(int(before[i]), tz='UTC')} (out of order; --sort sorts instead)"
        ),
    )


def _check_grid(t: _Table, start: np.ndarray, pos: np.ndarray, tf: int, tz: str) -> None:
    """Consecutive (sorted) starts must be whole multiples of the timeframe apart, in UTC or in ``tz``."""
    if len(start) < 2:
        return
    off = np.diff(start) % tf != 0
    if off.any() and tz != "UTC":
        local = pd.DatetimeIndex(start, tz="UTC").tz_convert(tz).tz_localize(None).as_unit("ns").asi8
        off &= np.diff(local) % tf != 0
    if off.any():
        i, n = _first(off)
        step = pd.Timedelta(int(start[i + 1] - start[i]))
        more = f" (and {n - 1} more rows)" if n > 1 else ""
        raise DataFileError(
            t.path,
            f"bar start {pd.Timestamp(int(start[i + 1]), tz='UTC')} is {step} after the previous "
            f"bar, not a whole multiple of the timeframe {pd.Timedelta(tf)}" + more,
            row=t.rows.row(int(pos[i + 1])),
            column=t.labels["ts"],
        )


# ------------------------------------------------------------------------------------------ frames as files


def write_frame(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` (no index) as Parquet or CSV by suffix; parent directories are created."""
    path = Path(path)
    kind = _suffix_kind(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)  # floats are written with repr, so they read back exactly
    return path


def read_frame(path: str | Path) -> pd.DataFrame:
    """Inverse of :func:`write_frame`; canonical tick/bar frames get their dtypes back from CSV too."""
    path = Path(path)
    kind = _suffix_kind(path)
    if not path.exists():
        raise DataFileError(path, "file not found")
    if kind == "parquet":
        return pd.read_parquet(path)
    try:
        df = pd.read_csv(path, float_precision="round_trip", low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataFileError(path, "no rows") from None
    cols = tuple(df.columns)
    if cols == TICK_COLUMNS:
        df = df.astype(TICK_DTYPES)
    elif cols == BAR_COLUMNS:
        df = df.astype(BAR_DTYPES)
    return df


__all__ = [
    "BAR_DTYPES",
    "TICK_COLUMNS",
    "TICK_DTYPES",
    "ColumnMap",
    "DataFileError",
    "Rows",
    "TickChunk",
    "read_bars",
    "read_frame",
    "read_ticks",
    "scan_ticks",
    "write_frame",
]
