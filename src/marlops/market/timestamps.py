"""Timestamp columns → int64 ns since the epoch (UTC): epoch numbers with an explicit or inferred unit,
ISO-8601 text with or without an offset, Parquet timestamps; wall-clock times localized in ``tz``.
The rules are in :mod:`marlops.market.readers`' docstring."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from marlops.market.data_files import CheckedTable, check_rule
from marlops.market.ticks import RejectReason

_UNIT_NS: dict[str, int] = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
# Upper bounds of |value| for the inferred unit, checked in this order (see the module docstring).
_UNIT_BANDS: tuple[tuple[float, str], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"), (np.inf, "ns"))
# An explicit offset after a time of day; the leading ':\d{2}' keeps a date like 2024-01-02 from matching.
_OFFSET_RE = r":\d{2}(\.\d*)?\s*([zZ]|UTC|[+-]\d{2}(:?\d{2})?)$"

BAD_TS = RejectReason.BAD_TIMESTAMP.value


def _infer_unit(t: CheckedTable, vals: np.ndarray, ok: np.ndarray, key: str) -> str:
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
        BAD_TS,
        lambda i: (
            f"epoch value {vals[i]!r} does not look like the column's inferred unit ({unit}); "
            "the column mixes units, or pass ts_unit"
        ),
    )
    return unit


def _epoch_to_ns(t: CheckedTable, raw: pd.Series, key: str, ts_unit: str | None) -> np.ndarray:
    vals_f = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(vals_f)
    t.flag(missing, key, BAD_TS, lambda i: "missing timestamp")
    if missing.all():
        return np.zeros(len(vals_f), dtype=np.int64)
    unit = ts_unit or _infer_unit(t, vals_f, ~missing, key)
    factor = _UNIT_NS[unit]
    limit = np.iinfo(np.int64).max / factor
    with np.errstate(invalid="ignore"):
        out_of_range = ~np.isfinite(vals_f) | (np.abs(vals_f) >= limit)
    check_rule(
        t, out_of_range & ~missing, key, BAD_TS, f"epoch timestamp out of range for unit {unit}", vals_f
    )
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


def _strings_to_ns(t: CheckedTable, raw: pd.Series, key: str, tz: str) -> np.ndarray:
    """ISO-8601 text → ns UTC; rows with an offset are instants, the others wall-clock time in ``tz``."""
    arr = pa.array(
        raw.array if isinstance(raw.dtype, pd.ArrowDtype) else raw.to_numpy(dtype=object),
        type=pa.string(),
        from_pandas=True,
    )
    missing = pc.is_null(arr).to_numpy(zero_copy_only=False)
    t.flag(missing, key, BAD_TS, lambda i: "missing timestamp")
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
    t.flag(unparsed, key, BAD_TS, lambda i: f"cannot parse {raw.iloc[i]!r} as an ISO-8601 timestamp")
    t.flag(
        no_local,
        key,
        BAD_TS,
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


def timestamps_ns(t: CheckedTable, key: str, tz: str, ts_unit: str | None) -> np.ndarray:
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
        t.flag(bad, key, BAD_TS, lambda i: f"cannot parse {raw.iloc[i]!r} as a timestamp")
        return _epoch_to_ns(t, vals, key, ts_unit)
    t.flag(missing, key, BAD_TS, lambda i: "missing timestamp")
    t.flag(
        no_local, key, BAD_TS, lambda i: f"{raw.iloc[i]} is ambiguous or does not exist in time zone {tz!r}"
    )
    return np.where(missing | no_local, 0, idx.asi8)


def sort_order(ts: np.ndarray) -> tuple[np.ndarray | None, int]:
    """Stable sorting permutation (None if already sorted) and how many rows were out of order."""
    if len(ts) < 2:
        return None, 0
    late = ts[1:] < np.maximum.accumulate(ts)[:-1]
    n = int(np.count_nonzero(late))
    return (np.argsort(ts, kind="stable") if n else None), n


def check_time_args(tz: str, ts_unit: str | None) -> None:
    _check_tz(tz)
    if ts_unit is not None and ts_unit not in _UNIT_NS:
        raise ValueError(f"ts_unit: must be one of {', '.join(_UNIT_NS)} or None, got {ts_unit!r}")


def _check_tz(tz: str) -> None:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"tz: unknown time zone {tz!r} (use an IANA name like 'America/New_York')") from err


__all__: list[str] = []
