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
- Errors are :class:`DataFileError` naming the file, the row *as a user sees it* (CSV: the line number,
  header = line 1, so the first data row is 2; Parquet: 1-based row) and the column. Blank CSV lines
  are skipped but still counted, so line numbers stay right.
- Optional columns: ``side`` (absent → 0; empty cell → 0), bar ``vwap`` (absent → (high+low+close)/3)
  and ``ticks`` (absent → 0). They are optional only under their default names: a column the caller
  explicitly mapped must exist.
- Ticks may share a timestamp (exact duplicates are the TickValidator's business). Out-of-order rows
  are stably sorted and counted (logged at INFO). Tick timestamps must be >= 0 (the epoch).
- Bars: ``ts`` is the bar start, ``end = start + timeframe_ns``. A repeated start is an error. Grid
  check: consecutive starts (after sorting) must differ by a whole multiple of ``timeframe_ns``, either
  in UTC or in wall-clock time of ``tz`` (daily bars at New York midnight are 23 or 25 h apart in UTC
  across DST). Holes (weekends, halts) are allowed and not filled. Imported bars have ``gap=False``:
  a file's rows are what traded.
"""

from __future__ import annotations

import csv
import gzip
import logging
from dataclasses import dataclass, fields
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


def _csv_header(path: Path) -> list[str]:
    with _open_text(path) as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise DataFileError(path, "no rows")
    return header


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
class _Table:
    """The raw columns of a file; rows are addressed by position and named as the user sees them."""

    path: Path
    df: pd.DataFrame
    is_csv: bool

    def row(self, pos: int) -> int:
        if not self.is_csv:
            return pos + 1
        if _physical_lines(self.path) == len(self.df) + 1:  # no blank or multi-line records: direct
            return pos + 2
        return _csv_line(self.path, pos)

    def fail(
        self, message: str, pos: int | None = None, column: str | None = None, count: int = 1
    ) -> DataFileError:
        more = f" (and {count - 1} more rows)" if count > 1 else ""
        return DataFileError(
            self.path, message + more, row=None if pos is None else self.row(int(pos)), column=column
        )


_DICT_STRING = pa.dictionary(pa.int32(), pa.string())


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
        if name not in categorical:
            for typ in [pa.float64()] if name in numeric else [pa.int64(), pa.float64()]:
                try:
                    col = pc.cast(col, typ)
                    break
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    pass
        cols[name] = col
    return pa.table(cols)


def _read_csv(path: Path, raw_names: list[str], numeric: set[str], categorical: set[str]) -> pa.Table:
    read_opts = pacsv.ReadOptions(use_threads=True)
    # Arrow infers a column's type from the first block only; numeric columns are therefore typed
    # explicitly, and on a conversion error everything is re-read as text and converted column by column.
    fast = {c: pa.float64() for c in raw_names if c.strip() in numeric}
    fast |= {c: _DICT_STRING for c in raw_names if c.strip() in categorical}
    text = {c: (_DICT_STRING if c.strip() in categorical else pa.string()) for c in raw_names}
    for types in (fast, text):
        convert = pacsv.ConvertOptions(
            include_columns=raw_names, column_types=types, strings_can_be_null=True
        )
        try:
            table = pacsv.read_csv(path, read_options=read_opts, convert_options=convert)
        except pa.ArrowInvalid as err:
            if "conversion error" in str(err) and types is fast:
                continue
            width = len(_csv_header(path))
            line, found = _csv_bad_record(path, width)
            if line is not None:
                raise DataFileError(path, f"expected {width} fields, found {found}", row=line) from None
            raise DataFileError(path, f"cannot read CSV: {err}") from None
        table = table.rename_columns([c.strip() for c in table.column_names])
        return table if types is fast else _cast_text(table, numeric, categorical)
    raise AssertionError("unreachable")


def _read_table(
    path: Path,
    wanted: list[str],
    required: set[str],
    numeric: set[str],
    categorical: set[str],
    keep_text: set[str],
) -> _Table:
    """Read the ``wanted`` columns that exist; raise if a ``required`` one is missing or there are no rows."""
    kind = _suffix_kind(path)
    if not path.exists():
        raise DataFileError(path, "file not found")
    if kind == "csv":
        header = _csv_header(path)
        available = [c.strip() for c in header]
    else:
        available = list(pq.read_schema(path).names)
    missing = [c for c in wanted if c in required and c not in available]
    if missing:
        raise DataFileError(
            path,
            f"missing required column (available: {', '.join(available) or 'none'})",
            column=", ".join(missing),
        )
    present = [c for c in wanted if c in available]
    if kind == "csv":
        raw_names = [h for h in header if h.strip() in present]
        table = _read_csv(path, raw_names, numeric, categorical)
    else:
        table = pq.read_table(path, columns=present)
    df = _to_pandas(table, categorical, keep_text)
    if len(df) == 0:
        raise DataFileError(path, "no rows")
    return _Table(path, df, kind == "csv")


def _check_tz(tz: str) -> None:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"tz: unknown time zone {tz!r} (use an IANA name like 'America/New_York')") from err


def _first(mask: np.ndarray) -> tuple[int, int]:
    """Index of the first True and how many there are (mask known to have at least one)."""
    idx = np.flatnonzero(mask)
    return int(idx[0]), len(idx)


def _numbers(t: _Table, col: str, label: str) -> np.ndarray:
    """Column → float64; a missing cell or text that is no number is an error naming the first bad row."""
    raw = t.df[col]
    if pd.api.types.is_bool_dtype(raw.dtype):
        raise t.fail("expected numbers, got booleans", 0, label)
    if pd.api.types.is_numeric_dtype(raw.dtype):
        vals = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(vals)
        if missing.any():
            i, n = _first(missing)
            raise t.fail("missing value", i, label, n)
        return vals
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(vals)
    if bad.any():
        i, n = _first(bad)
        value = raw.iloc[i]
        message = "missing value" if pd.isna(value) else f"cannot parse {str(value)!r} as a number"
        raise t.fail(message, i, label, n)
    return vals


def _check(t: _Table, bad: np.ndarray, label: str, rule: str, vals: np.ndarray) -> None:
    if bad.any():
        i, n = _first(bad)
        raise t.fail(f"{rule}, got {vals[i]!r}", i, label, n)


def _positive_prices(t: _Table, col: str, label: str) -> np.ndarray:
    vals = _numbers(t, col, label)
    with np.errstate(invalid="ignore"):
        _check(t, ~(np.isfinite(vals) & (vals > 0)), label, "must be finite and > 0", vals)
    return vals


def _nonnegative(t: _Table, col: str, label: str) -> np.ndarray:
    vals = _numbers(t, col, label)
    _check(t, ~(np.isfinite(vals) & (vals >= 0)), label, "must be finite and >= 0", vals)
    return vals


def _sides(t: _Table, col: str, label: str) -> np.ndarray:
    """Side column → int8 in {-1, 0, 1}; words map through the (few) distinct values; empty → 0."""
    raw = t.df[col]
    rule = "side must be -1, 0, 1, buy/sell or b/s"
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        vals = raw.to_numpy(dtype=np.float64, na_value=0.0)
        _check(t, ~np.isin(vals, (-1.0, 0.0, 1.0)), label, rule, vals)
        return vals.astype(np.int8)
    cat = raw if isinstance(raw.dtype, pd.CategoricalDtype) else raw.astype("category")
    words = [_SIDE_WORDS.get(str(v).strip().lower(), 9) for v in cat.cat.categories]
    lookup = np.array([*words, 0], dtype=np.int8)  # code -1 (missing cell) → the trailing 0
    vals = lookup[cat.cat.codes.to_numpy()]
    bad = vals == 9
    if bad.any():
        i, n = _first(bad)
        raise t.fail(f"{rule}, got {raw.iloc[i]!r}", i, label, n)
    return vals


def _infer_unit(t: _Table, vals: np.ndarray, label: str) -> str:
    """Unit from the median magnitude; every value must lie in that unit's band (else the units are mixed)."""
    mag = np.abs(vals)
    k = next(k for k, (bound, _) in enumerate(_UNIT_BANDS) if float(np.median(mag)) < bound)
    lo = _UNIT_BANDS[k - 1][0] if k else 0.0
    unit = _UNIT_BANDS[k][1]
    odd = (mag < lo) | (mag >= _UNIT_BANDS[k][0])
    if odd.any():
        i, n = _first(odd)
        raise t.fail(
            f"epoch value {vals[i]!r} does not look like the column's inferred unit ({unit}); "
            "the column mixes units, or pass ts_unit",
            i,
            label,
            n,
        )
    return unit


def _epoch_to_ns(t: _Table, raw: pd.Series, label: str, ts_unit: str | None) -> np.ndarray:
    vals_f = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(vals_f)
    if missing.any():
        i, n = _first(missing)
        raise t.fail("missing timestamp", i, label, n)
    unit = ts_unit or _infer_unit(t, vals_f, label)
    factor = _UNIT_NS[unit]
    limit = np.iinfo(np.int64).max / factor
    _check(
        t,
        ~np.isfinite(vals_f) | (np.abs(vals_f) >= limit),
        label,
        f"epoch timestamp out of range for unit {unit}",
        vals_f,
    )
    if pd.api.types.is_integer_dtype(raw.dtype):
        return raw.to_numpy(dtype=np.int64) * np.int64(factor)  # exact: no float detour for integers
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


def _strings_to_ns(t: _Table, raw: pd.Series, label: str, tz: str) -> np.ndarray:
    """ISO-8601 text → ns UTC; rows with an offset are instants, the others wall-clock time in ``tz``."""
    arr = pa.array(
        raw.array if isinstance(raw.dtype, pd.ArrowDtype) else raw.to_numpy(dtype=object),
        type=pa.string(),
        from_pandas=True,
    )
    missing = pc.is_null(arr).to_numpy(zero_copy_only=False)
    if missing.any():
        i, n = _first(missing)
        raise t.fail("missing timestamp", i, label, n)
    arr = pc.utf8_trim_whitespace(arr)
    aware = pc.match_substring_regex(arr, _OFFSET_RE).to_numpy(zero_copy_only=False).astype(bool)
    out = np.empty(len(arr), dtype=np.int64)
    unparsed = np.zeros(len(arr), dtype=bool)
    no_local = np.zeros(len(arr), dtype=bool)
    for flag in (True, False):
        mask = aware if flag else ~aware
        if not mask.any():
            continue
        subset = arr if mask.all() else arr.filter(pa.array(mask))
        ns, bad = _parse_iso(subset, flag)
        unparsed[mask] = bad
        if not flag and not bad.any():
            local = _localize(pd.DatetimeIndex(ns.view("datetime64[ns]")), tz)
            no_local[mask] = np.asarray(local.isna())
            ns = local.asi8
        out[mask] = ns
    bad = unparsed | no_local
    if bad.any():
        i, n = _first(bad)
        value = raw.iloc[i]
        why = (
            f"cannot parse {value!r} as an ISO-8601 timestamp"
            if unparsed[i]
            else f"{value!r} is ambiguous or does not exist in time zone {tz!r}"
        )
        raise t.fail(why, i, label, n)
    return out


def _is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _timestamps(t: _Table, col: str, label: str, tz: str, ts_unit: str | None) -> np.ndarray:
    """Any supported timestamp column → int64 ns UTC."""
    raw = t.df[col]
    if isinstance(raw.dtype, pd.DatetimeTZDtype):  # Arrow parsed ISO text with offsets, or Parquet
        idx = pd.DatetimeIndex(raw).tz_convert("UTC").as_unit("ns")
        missing, no_local = np.asarray(idx.isna()), np.zeros(len(idx), dtype=bool)
    elif pd.api.types.is_datetime64_dtype(raw.dtype):  # naive: wall-clock time in tz
        naive = pd.DatetimeIndex(raw).as_unit("ns")
        idx = _localize(naive, tz)
        missing = np.asarray(naive.isna())
        no_local = np.asarray(idx.isna()) & ~missing
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return _epoch_to_ns(t, raw, label, ts_unit)
    elif pd.api.types.is_bool_dtype(raw.dtype):
        raise t.fail("expected timestamps, got booleans", 0, label)
    else:
        # Text: numeric-looking text (a CSV epoch column with one bad cell) goes the epoch way.
        present = raw.dropna()
        if len(present) == 0 or not _is_number(present.iloc[0]):
            return _strings_to_ns(t, raw, label, tz)
        raw = raw.astype(object)  # rare path (epoch text with a bad cell): clarity over speed
        vals = pd.to_numeric(raw, errors="coerce")
        bad = (vals.isna() & raw.notna()).to_numpy()
        if bad.any():
            i, n = _first(bad)
            raise t.fail(f"cannot parse {raw.iloc[i]!r} as a timestamp", i, label, n)
        return _epoch_to_ns(t, vals, label, ts_unit)
    if missing.any():
        i, n = _first(missing)
        raise t.fail("missing timestamp", i, label, n)
    if no_local.any():
        i, n = _first(no_local)
        raise t.fail(f"{raw.iloc[i]} is ambiguous or does not exist in time zone {tz!r}", i, label, n)
    return idx.asi8.copy()


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


def _optional(name: str | None, default: str) -> tuple[str | None, bool]:
    """(column, required): an optional column under its default name may be absent; a mapped one may not."""
    return name, name is not None and name != default


def read_ticks(
    path: str | Path, columns: ColumnMap = ColumnMap(), tz: str = "UTC", ts_unit: str | None = None
) -> pd.DataFrame:
    """Read a tick file into the canonical tick frame (see the module docstring for every rule)."""
    _check_unit_args(tz, ts_unit)
    path = Path(path)
    side_col, side_required = _optional(columns.side, "side")
    wanted = [columns.ts, columns.price, columns.size] + ([side_col] if side_col else [])
    required = {columns.ts, columns.price, columns.size}
    if side_required and side_col:
        required.add(side_col)
    t = _read_table(
        path,
        wanted,
        required,
        numeric={columns.price, columns.size},
        categorical={side_col} if side_col else set(),
        keep_text={columns.ts},
    )
    ts = _timestamps(t, columns.ts, columns.ts, tz, ts_unit)
    _check(t, ts < 0, columns.ts, "tick timestamps must be at or after 1970-01-01 UTC", ts)
    price = _positive_prices(t, columns.price, columns.price)
    size = _nonnegative(t, columns.size, columns.size)
    if side_col and side_col in t.df.columns:
        side = _sides(t, side_col, side_col)
    else:
        side = np.zeros(len(ts), dtype=np.int8)
    order, late = _sort_order(ts)
    if order is not None:
        log.info("%s: %d of %d ticks were out of order; sorted by ts (stable)", path, late, len(ts))
        ts, price, size, side = ts[order], price[order], size[order], side[order]
    return pd.DataFrame({"ts": ts, "price": price, "size": size, "side": side})


def read_bars(
    path: str | Path,
    timeframe_ns: int,
    columns: ColumnMap = ColumnMap(),
    tz: str = "UTC",
    ts_unit: str | None = None,
) -> pd.DataFrame:
    """Read an OHLCV file (``ts`` = bar start) into the canonical bar frame (see the module docstring)."""
    _check_unit_args(tz, ts_unit)
    if timeframe_ns <= 0:
        raise ValueError("timeframe_ns: must be positive")
    path = Path(path)
    c = columns
    vwap_col, vwap_required = _optional(c.vwap, "vwap")
    ticks_col, ticks_required = _optional(c.ticks, "ticks")
    base = [c.ts, c.open, c.high, c.low, c.close, c.volume]
    wanted = base + [x for x in (vwap_col, ticks_col) if x]
    required = set(base) | {x for x, r in ((vwap_col, vwap_required), (ticks_col, ticks_required)) if r and x}
    t = _read_table(path, wanted, required, numeric=set(wanted) - {c.ts}, categorical=set(), keep_text={c.ts})

    start = _timestamps(t, c.ts, c.ts, tz, ts_unit)
    o = _positive_prices(t, c.open, c.open)
    h = _positive_prices(t, c.high, c.high)
    lo = _positive_prices(t, c.low, c.low)
    cl = _positive_prices(t, c.close, c.close)
    _check(t, h < np.maximum(o, cl), c.high, "high is below max(open, close)", h)
    _check(t, lo > np.minimum(o, cl), c.low, "low is above min(open, close)", lo)
    vol = _nonnegative(t, c.volume, c.volume)
    if vwap_col and vwap_col in t.df.columns:
        vwap = _positive_prices(t, vwap_col, vwap_col)
    else:
        vwap = (h + lo + cl) / 3.0  # typical price: the usual stand-in when a feed has no vwap
    if ticks_col and ticks_col in t.df.columns:
        n_ticks = _nonnegative(t, ticks_col, ticks_col)
        _check(t, n_ticks != np.floor(n_ticks), ticks_col, "must be a whole number", n_ticks)
        ticks = n_ticks.astype(np.int64)
    else:
        ticks = np.zeros(len(start), dtype=np.int64)

    dup = pd.Series(start).duplicated(keep="first").to_numpy()
    if dup.any():
        i, n = _first(dup)
        first = t.row(int(np.flatnonzero(start == start[i])[0]))
        when = pd.Timestamp(int(start[i]), tz="UTC")
        raise t.fail(f"duplicate bar start {when} (first at row {first})", i, c.ts, n)
    order, late = _sort_order(start)
    if order is not None:
        log.info("%s: %d of %d bars were out of order; sorted by start (stable)", path, late, len(start))
        start, o, h, lo, cl, vol, vwap, ticks = (a[order] for a in (start, o, h, lo, cl, vol, vwap, ticks))
    _check_grid(t, start, order, timeframe_ns, tz, c.ts)

    return pd.DataFrame(
        {
            "start": start,
            "end": start + np.int64(timeframe_ns),
            "open": o,
            "high": h,
            "low": lo,
            "close": cl,
            "volume": vol,
            "vwap": vwap,
            "ticks": ticks,
            "gap": np.zeros(len(start), dtype=bool),
        },
        columns=list(BAR_COLUMNS),
    )


def _check_grid(t: _Table, start: np.ndarray, order: np.ndarray | None, tf: int, tz: str, label: str) -> None:
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
        pos = i + 1 if order is None else int(order[i + 1])  # position in the file of the later bar
        raise t.fail(
            f"bar start {pd.Timestamp(int(start[i + 1]), tz='UTC')} is {step} after the previous "
            f"bar, not a whole multiple of the timeframe {pd.Timedelta(tf)}",
            pos,
            label,
            n,
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
    "read_bars",
    "read_frame",
    "read_ticks",
    "write_frame",
]
