"""Bulk import: ticks → base bars with numpy, a chunk at a time, equal bar for bar to the live path.

The live path (:class:`marlops.market.feed.MarketFeed`) handles one tick per call; a history of
hundreds of millions of ticks needs whole arrays at once. :class:`BulkBars` takes the ticks of a file
in file order, chunk after chunk, and decides every tick exactly as :class:`TickValidator` and
:class:`BarBuilder` would, in the same order, because the decisions only depend on running maxima:

- *out of order*: older than the newest earlier tick by more than the tolerance. Rejected ticks never
  raise the newest timestamp (they are older, or equal to a kept one), so "newest accepted before i"
  is the running maximum of all earlier timestamps.
- *duplicate*: not out of order and the same (ts, price, size, side) as an earlier such tick. The
  earlier copy cannot have left the validator's window, since it is no older than the newest - tolerance.
- *late*: its bucket is before the bucket of that running maximum (the bar it belongs to has closed).

Accepted ticks therefore arrive with non-decreasing buckets, so each bar is a contiguous run. Sums are
taken with ``np.bincount``, which adds in input order, so volume and notional are the same floats as
the streaming ``+=``; open and close follow timestamps (earliest / latest arrival on ties) as there.
The bar still open at the end of a chunk is carried into the next as a first pseudo-tick holding its
partial sums. Higher bars come from these base bars through the live aggregator.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from marlops.market.bars import BAR_COLUMNS
from marlops.market.ticks import RejectReason

OK, OUT_OF_ORDER, DUPLICATE, LATE = 0, 1, 2, 3
REASONS: dict[int, str] = {
    OUT_OF_ORDER: RejectReason.OUT_OF_ORDER.value,
    DUPLICATE: RejectReason.DUPLICATE.value,
    LATE: RejectReason.LATE.value,
}
_KEY = ("ts", "price", "size", "side")


@dataclass
class _OpenBar:
    """Partial sums of the bar still open between chunks (the streaming accumulator's fields)."""

    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    notional: float
    ticks: int
    first_ts: int
    last_ts: int


def _empty_keys() -> pd.DataFrame:
    return pd.DataFrame(
        {k: np.array([], dtype=d) for k, d in zip(_KEY, ("i8", "f8", "f8", "i1"), strict=True)}
    )


@dataclass
class BulkBars:
    """Base bars of one timeframe from chunks of ticks in file order (see the module docstring)."""

    timeframe_ns: int
    origin_ns: int = 0
    tolerance_ns: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    ticks_in: int = 0
    ticks_accepted: int = 0
    volume_accepted: float = 0.0
    _newest: int = -1
    _open: _OpenBar | None = None
    _keys: pd.DataFrame = field(default_factory=_empty_keys)  # accepted keys still inside the window
    _bars: list[pd.DataFrame] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.timeframe_ns <= 0:
            raise ValueError("timeframe_ns: must be positive")
        if self.tolerance_ns < 0:
            raise ValueError("tolerance_ns: must be >= 0")

    def bucket(self, ts: np.ndarray) -> np.ndarray:
        return ts - (ts - self.origin_ns) % self.timeframe_ns

    def on_chunk(self, ticks: pd.DataFrame) -> np.ndarray:
        """Add ticks (canonical frame, file order); returns each row's decision (OK or a reject code)."""
        ts = ticks["ts"].to_numpy(np.int64)
        price, size = ticks["price"].to_numpy(np.float64), ticks["size"].to_numpy(np.float64)
        side = ticks["side"].to_numpy(np.int8)
        if len(ts) == 0:
            return np.zeros(0, np.int8)
        b = self.bucket(ts)
        # the usual chunk is in time order and starts at or after the newest tick: nothing can be out
        # of order or late, and open/close are simply the first and last tick of each bar
        ordered = int(ts[0]) >= self._newest and bool((np.diff(ts) >= 0).all())
        code = self._decide(ts, b, price, size, side, ordered)
        for c, name in REASONS.items():
            self.rejected[name] += int(np.count_nonzero(code == c))
        self.ticks_in += len(ts)
        ok = code == OK
        if ok.all():
            self._add(ts, b, price, size, ordered)
        elif ok.any():
            self._add(ts[ok], b[ok], price[ok], size[ok], ordered)
        self._newest = max(self._newest, int(ts.max()))
        return code

    def flush(self) -> None:
        """End of data: close the open bar."""
        if self._open is not None:
            o = self._open
            self._bars.append(_bar_frame(*_arrays_of(o), gap=np.zeros(1, bool), tf=self.timeframe_ns))
            self._open = None

    def frame(self) -> pd.DataFrame:
        """Closed bars so far (call :meth:`flush` first for the last one)."""
        if not self._bars:
            return _bar_frame(
                *(np.array([], d) for d in ("i8",) + ("f8",) * 6 + ("i8",)), np.array([], bool), 1
            )
        self._bars = [pd.concat(self._bars, ignore_index=True)]
        return self._bars[0]

    # -- the decisions ---------------------------------------------------------------------------

    def _decide(
        self,
        ts: np.ndarray,
        b: np.ndarray,
        price: np.ndarray,
        size: np.ndarray,
        side: np.ndarray,
        ordered: bool,
    ) -> np.ndarray:
        n = len(ts)
        code = np.zeros(n, np.int8)
        if ordered:
            code[self._duplicates(ts, price, size, side, np.ones(n, bool))] = DUPLICATE
        else:
            newest_b = int(self.bucket(np.array([self._newest]))[0])
            before = np.empty(n, np.int64)  # newest timestamp before each row, and its bucket
            before[0] = self._newest
            np.maximum(np.maximum.accumulate(ts)[:-1], self._newest, out=before[1:])
            before_b = np.empty(n, np.int64)  # bucket() is monotone: the bucket of a maximum is the maximum
            before_b[0] = newest_b
            np.maximum(np.maximum.accumulate(b)[:-1], newest_b, out=before_b[1:])
            code[ts < before - self.tolerance_ns] = OUT_OF_ORDER
            code[self._duplicates(ts, price, size, side, code == OK)] = DUPLICATE
            code[(code == OK) & (before >= 0) & (b < before_b)] = LATE
        self._remember(ts, price, size, side, (code == OK) | (code == LATE), max(self._newest, int(ts.max())))
        return code

    def _duplicates(
        self, ts: np.ndarray, price: np.ndarray, size: np.ndarray, side: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """Rows (of ``valid``) whose key equals an earlier valid row's or a remembered one's."""
        idx = np.flatnonzero(valid)
        carried = len(self._keys)
        k_ts = np.concatenate([self._keys["ts"].to_numpy(), ts[idx]])
        steps = np.diff(k_ts)
        if (steps >= 0).all():  # sorted (the usual case): equal timestamps are neighbours
            same = np.r_[False, steps == 0] | np.r_[steps == 0, False]
        else:
            same = pd.Series(k_ts).duplicated(keep=False).to_numpy()
        out = np.zeros(len(ts), dtype=bool)
        if not same.any():
            return out
        keys = pd.DataFrame(
            {
                "ts": k_ts,
                # + 0.0 turns -0.0 into 0.0: the streaming key compares floats, and -0.0 == 0.0 there
                "price": np.concatenate([self._keys["price"].to_numpy(), price[idx]]) + 0.0,
                "size": np.concatenate([self._keys["size"].to_numpy(), size[idx]]) + 0.0,
                "side": np.concatenate([self._keys["side"].to_numpy(), side[idx]]),
            }
        )[same]
        dup = keys.duplicated(keep="first").to_numpy()
        rows = np.flatnonzero(same)[dup] - carried
        out[idx[rows[rows >= 0]]] = True
        return out

    def _remember(
        self,
        ts: np.ndarray,
        price: np.ndarray,
        size: np.ndarray,
        side: np.ndarray,
        kept: np.ndarray,
        newest: int,
    ) -> None:
        """Keep the keys the validator still holds: its accepted ticks within the tolerance of the newest."""
        horizon = newest - self.tolerance_ns
        new = pd.DataFrame({"ts": ts[kept], "price": price[kept], "size": size[kept], "side": side[kept]})
        keys = pd.concat([self._keys, new], ignore_index=True) if len(self._keys) else new
        self._keys = keys[keys["ts"].to_numpy() >= horizon].reset_index(drop=True)

    # -- the bars --------------------------------------------------------------------------------

    def _add(self, ts: np.ndarray, b: np.ndarray, price: np.ndarray, size: np.ndarray, ordered: bool) -> None:
        """Accepted ticks (buckets non-decreasing) → closed bars, gap bars and the new open bar."""
        self.ticks_accepted += len(ts)
        self.volume_accepted = float(np.cumsum(np.r_[self.volume_accepted, size])[-1])  # streaming's order
        o = self._open  # the open bar rides along as a first pseudo-tick

        def lead(value: float, values: np.ndarray) -> np.ndarray:
            return values if o is None else np.r_[value, values]

        p0 = o or _OpenBar(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0)  # placeholder, unused when o is None
        b = lead(p0.start, b)
        new_bar = np.empty(len(b), bool)
        new_bar[0] = True
        np.not_equal(b[1:], b[:-1], out=new_bar[1:])
        first = np.flatnonzero(new_bar)
        group = np.cumsum(new_bar) - 1
        g = len(first)
        vol = np.bincount(group, lead(p0.volume, size), g)
        notional = np.bincount(group, lead(p0.notional, price * size), g)
        n_ticks = np.bincount(group, minlength=g)
        if o is not None:
            n_ticks[0] += o.ticks - 1  # the pseudo-tick stands for the open bar's ticks
        high = np.maximum.reduceat(lead(p0.high, price), first)
        low = np.minimum.reduceat(lead(p0.low, price), first)
        t_open, t_close = lead(p0.first_ts, ts), lead(p0.last_ts, ts)
        p_open, p_close = lead(p0.open, price), lead(p0.close, price)
        i_open = _first_of(group, t_open, first, ordered)
        i_close = _last_of(group, t_close, first, len(b), ordered)
        starts = b[first]
        last = g - 1
        self._open = _OpenBar(
            int(starts[last]),
            float(p_open[i_open[last]]),
            float(high[last]),
            float(low[last]),
            float(p_close[i_close[last]]),
            float(vol[last]),
            float(notional[last]),
            int(n_ticks[last]),
            int(t_open[i_open[last]]),
            int(t_close[i_close[last]]),
        )
        if last == 0:
            return
        cols = (starts, p_open[i_open], high, low, p_close[i_close], vol, notional, n_ticks)
        closed = _bar_frame(*(c[:last] for c in cols), gap=np.zeros(last, bool), tf=self.timeframe_ns)
        self._bars.append(_with_gaps(closed, int(starts[last]), self.timeframe_ns))


def _first_of(group: np.ndarray, t: np.ndarray, first: np.ndarray, ordered: bool) -> np.ndarray:
    """Per group, the index of the smallest ``t``, the earliest on ties (streaming: ``ts < first_ts``)."""
    if ordered or (np.diff(t) >= 0).all():
        return first
    order = np.lexsort((t, group))  # stable: ties keep arrival order
    return order[first]


def _last_of(group: np.ndarray, t: np.ndarray, first: np.ndarray, n: int, ordered: bool) -> np.ndarray:
    """Per group, the index of the largest ``t``, the latest on ties (streaming: ``ts >= last_ts``)."""
    ends = np.r_[first[1:], n] - 1
    if ordered or (np.diff(t) >= 0).all():
        return ends
    order = np.lexsort((t, group))
    return order[ends]


def _arrays_of(o: _OpenBar) -> tuple[np.ndarray, ...]:
    return tuple(
        np.array([v]) for v in (o.start, o.open, o.high, o.low, o.close, float(o.volume), o.notional, o.ticks)
    )


def _bar_frame(
    start: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    notional: np.ndarray,
    ticks: np.ndarray,
    gap: np.ndarray,
    tf: int,
) -> pd.DataFrame:
    """Bar columns as the streaming builder fills them: vwap = Σpv/Σv (the close at zero volume),
    kept inside [low, high] against the rounding of the division."""
    volume = np.asarray(volume, np.float64)
    vwap = np.divide(notional, volume, out=np.array(close, np.float64, copy=True), where=volume > 0)
    vwap = np.minimum(np.maximum(vwap, low), high)
    start = np.asarray(start, np.int64)
    return pd.DataFrame(
        {
            "start": start,
            "end": start + np.int64(tf),
            "open": np.asarray(open_, np.float64),
            "high": np.asarray(high, np.float64),
            "low": np.asarray(low, np.float64),
            "close": np.asarray(close, np.float64),
            "volume": volume,
            "vwap": vwap,
            "ticks": np.asarray(ticks, np.int64),
            "gap": np.asarray(gap, bool),
        },
        columns=list(BAR_COLUMNS),
    )


def _with_gaps(closed: pd.DataFrame, next_start: int, tf: int) -> pd.DataFrame:
    """Insert gap bars (flat at the previous close) for every empty bucket up to ``next_start``."""
    start = closed["start"].to_numpy()
    # whole-number arithmetic (np.arange sizes itself in floating point; see dataset.fill_gaps)
    full = start[0] + tf * np.arange(-(-(next_start - int(start[0])) // tf), dtype=np.int64)
    if len(full) == len(start):
        return closed
    pos = np.searchsorted(full, start)
    src = np.full(len(full), -1)
    src[pos] = np.arange(len(start))
    filled = np.maximum.accumulate(src)  # each bucket's latest real bar
    close = closed["close"].to_numpy()[filled]
    is_gap = src < 0
    out = {c: closed[c].to_numpy()[filled] for c in ("open", "high", "low", "vwap")}
    out = {c: np.where(is_gap, close, v) for c, v in out.items()}
    return pd.DataFrame(
        {
            "start": full,
            "end": full + np.int64(tf),
            **out,
            "close": close,
            "volume": np.where(is_gap, 0.0, closed["volume"].to_numpy()[filled]),
            "ticks": np.where(is_gap, 0, closed["ticks"].to_numpy()[filled]).astype(np.int64),
            "gap": is_gap,
        }
    )[list(BAR_COLUMNS)]


def higher_bars(base: pd.DataFrame, timeframe_ns: int, origin_ns: int = 0) -> pd.DataFrame:
    """Higher-timeframe bars from consecutive base bars, equal to :class:`BarAggregator`'s.

    The aggregator sums in bar order from 0.0 (``np.bincount`` too), takes the first open and the last
    close, and emits a higher bar only when a base bar reaches its end: an unfinished last bucket (or
    one cut short by a hole the base bars did not fill) is left out, as live."""
    if len(base) == 0:
        return base.iloc[:0].reset_index(drop=True)
    start = base["start"].to_numpy(np.int64)
    bucket = start - (start - origin_ns) % timeframe_ns
    new_bar = np.r_[True, bucket[1:] != bucket[:-1]]
    first = np.flatnonzero(new_bar)
    group = np.cumsum(new_bar) - 1
    last = np.r_[first[1:], len(start)] - 1
    volume = base["volume"].to_numpy(np.float64)
    closed = base["end"].to_numpy(np.int64)[last] >= bucket[first] + timeframe_ns
    # a bucket closes at its first bar reaching the end; bars are sorted and disjoint, so that is its last
    cols = (
        bucket[first],
        base["open"].to_numpy()[first],
        np.maximum.reduceat(base["high"].to_numpy(np.float64), first),
        np.minimum.reduceat(base["low"].to_numpy(np.float64), first),
        base["close"].to_numpy()[last],
        np.bincount(group, volume),
        np.bincount(group, base["vwap"].to_numpy(np.float64) * volume),
        np.bincount(group, base["ticks"].to_numpy(np.float64)).astype(np.int64),
    )
    gap = np.logical_and.reduceat(base["gap"].to_numpy(bool), first)
    return _bar_frame(*(c[closed] for c in cols), gap=gap[closed], tf=timeframe_ns)
