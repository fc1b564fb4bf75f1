"""Reading real market data: CSV / Parquet files → canonical tick and bar frames.

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

import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from marlops.market.bars import BAR_COLUMNS
from marlops.market.data_files import CheckedTable, DataFileError, Rows, check_rule, first_true
from marlops.market.file_chunks import Want, optional_want, read_tables
from marlops.market.frame_store import TICK_DTYPES
from marlops.market.rejects import RejectLog
from marlops.market.ticks import RejectReason
from marlops.market.timestamps import BAD_TS, check_time_args, sort_order, timestamps_ns

log = logging.getLogger(__name__)


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


# -------------------------------------------------------------------------------------- per-column checks


def _numbers(t: CheckedTable, key: str, reason: str) -> np.ndarray:
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


def _positive(t: CheckedTable, key: str, reason: str) -> np.ndarray:
    vals = _numbers(t, key, reason)
    with np.errstate(invalid="ignore"):
        check_rule(t, ~(np.isfinite(vals) & (vals > 0)), key, reason, "must be finite and > 0", vals)
    return vals


def _nonnegative(t: CheckedTable, key: str, reason: str) -> np.ndarray:
    vals = _numbers(t, key, reason)
    with np.errstate(invalid="ignore"):
        check_rule(t, ~(np.isfinite(vals) & (vals >= 0)), key, reason, "must be finite and >= 0", vals)
    return vals


def _sides(t: CheckedTable, key: str) -> np.ndarray:
    """Side column → int8 in {-1, 0, 1}; words map through the (few) distinct values; empty → 0."""
    raw = t.df[key]
    rule = "side must be -1, 0, 1, buy/sell or b/s"
    reason = RejectReason.BAD_SIDE.value
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        vals = raw.to_numpy(dtype=np.float64, na_value=0.0)
        bad = ~np.isin(vals, (-1.0, 0.0, 1.0))
        check_rule(t, bad, key, reason, rule, vals)
        return np.where(bad, 0.0, vals).astype(np.int8)
    cat = raw if isinstance(raw.dtype, pd.CategoricalDtype) else raw.astype("category")
    words = [_SIDE_WORDS.get(str(v).strip().lower(), 9) for v in cat.cat.categories]
    lookup = np.array([*words, 0], dtype=np.int8)  # code -1 (missing cell) → the trailing 0
    vals = lookup[cat.cat.codes.to_numpy()]
    bad = vals == 9
    t.flag(bad, key, reason, lambda i: f"{rule}, got {raw.iloc[i]!r}")
    vals[bad] = 0
    return vals


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
    check_time_args(tz, ts_unit)
    path = Path(path)
    c = columns
    wants = [Want("ts", c.ts, True), Want("price", c.price, True), Want("size", c.size, True)]
    wants += optional_want("side", c.side)
    for t in read_tables(path, wants, {"price", "size"}, {"side"}, strict, chunk_bytes):
        ts = timestamps_ns(t, "ts", tz, ts_unit)
        check_rule(t, ts < 0, "ts", BAD_TS, "tick timestamps must be at or after 1970-01-01 UTC", ts)
        price = _positive(t, "price", RejectReason.BAD_PRICE.value)
        size = _nonnegative(t, "size", RejectReason.BAD_SIZE.value)
        side = _sides(t, "side") if "side" in t.df.columns else np.zeros(len(ts), dtype=np.int8)
        t.raisefirst_true()
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
    order, late = sort_order(df["ts"].to_numpy())
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
    check_time_args(tz, ts_unit)
    if timeframe_ns <= 0:
        raise ValueError("timeframe_ns: must be positive")
    path = Path(path)
    c = columns
    keys = ("open", "high", "low", "close", "volume")
    wants = [Want("ts", c.ts, True), *(Want(k, getattr(c, k), True) for k in keys)]
    wants += optional_want("vwap", c.vwap) + optional_want("ticks", c.ticks)
    numeric = {"open", "high", "low", "close", "volume", "vwap", "ticks"}
    (t,) = read_tables(path, wants, numeric, set(), strict, None)
    cols = _bar_columns(t, tz, ts_unit)
    t.raisefirst_true()
    _order_bars(t, cols["start"], sort)
    t.raisefirst_true()
    ok = t.ok
    t.log_rejects(rejects)
    _log_ragged(path, rejects, t.rows)
    pos = np.flatnonzero(ok)
    cols = {k: v[ok] for k, v in cols.items()}
    order, late = sort_order(cols["start"])
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


def _bar_columns(t: CheckedTable, tz: str, ts_unit: str | None) -> dict[str, np.ndarray]:
    """Per-row checks of a bar table; every column as an array (rejected rows flagged, values arbitrary)."""
    bad_price = RejectReason.BAD_PRICE.value
    start = timestamps_ns(t, "ts", tz, ts_unit)
    o, h = _positive(t, "open", bad_price), _positive(t, "high", bad_price)
    lo, cl = _positive(t, "low", bad_price), _positive(t, "close", bad_price)
    with np.errstate(invalid="ignore"):
        check_rule(t, h < np.maximum(o, cl), "high", "bad_ohlc", "high is below max(open, close)", h)
        check_rule(t, lo > np.minimum(o, cl), "low", "bad_ohlc", "low is above min(open, close)", lo)
    vol = _nonnegative(t, "volume", "bad_volume")
    if "vwap" in t.df.columns:
        vwap = _positive(t, "vwap", "bad_vwap")
    else:
        vwap = (h + lo + cl) / 3.0  # typical price: the usual stand-in when a feed has no vwap
    if "ticks" in t.df.columns:
        n_ticks = _nonnegative(t, "ticks", "bad_ticks")
        with np.errstate(invalid="ignore"):
            check_rule(
                t, n_ticks != np.floor(n_ticks), "ticks", "bad_ticks", "must be a whole number", n_ticks
            )
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


def _order_bars(t: CheckedTable, start: np.ndarray, sort: bool) -> None:
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


def _check_grid(t: CheckedTable, start: np.ndarray, pos: np.ndarray, tf: int, tz: str) -> None:
    """Consecutive (sorted) starts must be whole multiples of the timeframe apart, in UTC or in ``tz``."""
    if len(start) < 2:
        return
    off = np.diff(start) % tf != 0
    if off.any() and tz != "UTC":
        local = pd.DatetimeIndex(start, tz="UTC").tz_convert(tz).tz_localize(None).as_unit("ns").asi8
        off &= np.diff(local) % tf != 0
    if off.any():
        i, n = first_true(off)
        step = pd.Timedelta(int(start[i + 1] - start[i]))
        more = f" (and {n - 1} more rows)" if n > 1 else ""
        raise DataFileError(
            t.path,
            f"bar start {pd.Timestamp(int(start[i + 1]), tz='UTC')} is {step} after the previous "
            f"bar, not a whole multiple of the timeframe {pd.Timedelta(tf)}" + more,
            row=t.rows.row(int(pos[i + 1])),
            column=t.labels["ts"],
        )


__all__ = ["ColumnMap", "DataFileError", "TickChunk", "read_bars", "read_ticks", "scan_ticks"]
