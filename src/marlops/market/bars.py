"""Streaming OHLCV bars: a tick-driven builder for the base timeframe and an aggregator for higher ones.

Bar boundaries are ``origin + k * timeframe`` (integer ns, half-open ``[start, end)``), so 5-minute
bars start at :00, :05, ... and 30-minute bars at :00 and :30 for the default origin (the epoch).

Policies (docs/market-data.md):

- A bar closes when a tick at or after its end arrives, or when :meth:`BarBuilder.advance_to`
  is told the clock has passed its end. A tick for a bar that has already closed is *late*: it is
  rejected and counted (``rejected['late']``), never merged into another bar.
- A bucket with no trades produces a *gap* bar: ``gap=True``, zero volume and ticks, and
  open = high = low = close = vwap = the previous close, so the series stays regular.
- Every accepted tick's size lands in exactly one bar: the sum of bar volumes equals the sum of
  accepted tick sizes at every moment (closed bars + the open one).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import astuple, dataclass, field, fields

import numpy as np
import pandas as pd

from marlops.market.ticks import NS_PER_SECOND, RejectReason, Tick

log = logging.getLogger(__name__)

MINUTE_NS = 60 * NS_PER_SECOND


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed bar: ``start``/``end`` in ns since epoch (UTC); ``vwap`` is the close at zero volume."""

    start: int
    end: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    ticks: int
    gap: bool = False


BAR_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Bar))


def parse_timeframe(text: str) -> int:
    """'5m' / '30min' / '1h' / '1d' / '15s' → nanoseconds (a clear error for anything else)."""
    try:
        td = pd.Timedelta(text.replace("m", "min") if text.endswith("m") else text)
    except ValueError as err:
        raise ValueError(f"timeframe: cannot parse {text!r} (examples: 5m, 30m, 1h, 1d)") from err
    ns = int(td.value)
    if ns <= 0:
        raise ValueError(f"timeframe: must be positive, got {text!r}")
    return ns


@dataclass
class _Accumulator:
    start: int
    end: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    notional: float
    ticks: int
    first_ts: int
    last_ts: int
    gap: bool = False

    def to_bar(self) -> Bar:
        vwap = self.notional / self.volume if self.volume > 0 else self.close
        vwap = min(max(vwap, self.low), self.high)  # rounding of Σpv/Σv must not leave the bar's range
        return Bar(
            self.start,
            self.end,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            vwap,
            self.ticks,
            self.gap,
        )


@dataclass
class BarBuilder:
    """Turns a stream of (validated) ticks into closed bars of one timeframe.

    ``on_tick`` returns the bars that the tick closed (usually none, one at a boundary, more
    when buckets without trades had to be filled with gap bars).
    """

    timeframe_ns: int = 5 * MINUTE_NS
    origin_ns: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    _cur: _Accumulator | None = None
    _next_start: int | None = None
    _last_close: float | None = None

    def __post_init__(self) -> None:
        if self.timeframe_ns <= 0:
            raise ValueError("timeframe_ns: must be positive")

    def bucket(self, ts: int) -> int:
        return ts - (ts - self.origin_ns) % self.timeframe_ns

    @property
    def open_bar(self) -> Bar | None:
        """The bar being built (not closed yet), as it stands."""
        return self._cur.to_bar() if self._cur else None

    def on_tick(self, tick: Tick) -> list[Bar] | None:
        """Add a tick; returns the bars it closed, or None if it was rejected as late."""
        start = self.bucket(tick.ts)
        cur = self._cur
        if cur is not None and start == cur.start:  # the common case, kept short
            p, s = tick.price, tick.size
            if p > cur.high:
                cur.high = p
            elif p < cur.low:
                cur.low = p
            # open/close follow timestamps, so a tick reordered within the tolerance lands right
            if tick.ts >= cur.last_ts:
                cur.close, cur.last_ts = p, tick.ts
            if tick.ts < cur.first_ts:
                cur.open, cur.first_ts = p, tick.ts
            cur.volume += s
            cur.notional += p * s
            cur.ticks += 1
            return []
        if self._next_start is not None and start < (cur.start if cur else self._next_start):
            self.rejected[RejectReason.LATE] += 1
            log.warning("tick rejected (late): ts=%d belongs to bar %d, which has closed", tick.ts, start)
            return None
        closed = self.advance_to(start)
        self._cur = _Accumulator(
            start,
            start + self.timeframe_ns,
            tick.price,
            tick.price,
            tick.price,
            tick.price,
            tick.size,
            tick.price * tick.size,
            1,
            tick.ts,
            tick.ts,
        )
        self._next_start = start + self.timeframe_ns
        return closed

    def advance_to(self, ts: int) -> list[Bar]:
        """The clock reached ``ts``: close the open bar, emit gap bars for every bucket ending by ``ts``."""
        out: list[Bar] = []
        if self._cur is not None and self._cur.end <= ts:
            bar = self._cur.to_bar()
            out.append(bar)
            self._last_close = bar.close
            self._cur = None
        if self._cur is None and self._next_start is not None and self._last_close is not None:
            c = self._last_close
            while self._next_start + self.timeframe_ns <= ts:
                s = self._next_start
                out.append(Bar(s, s + self.timeframe_ns, c, c, c, c, 0.0, c, 0, True))
                self._next_start = s + self.timeframe_ns
        return out

    def flush(self) -> list[Bar]:
        """Close the open bar now (end of data)."""
        if self._cur is None:
            return []
        return self.advance_to(self._cur.end)


@dataclass
class BarAggregator:
    """Builds higher-timeframe bars from consecutive closed base bars (e.g. 6 × 5m → 30m).

    A higher bar closes with the base bar that ends on its boundary. The first higher bar may hold
    fewer base bars when the data starts mid-bucket. It is a gap bar only if all its base bars are.
    """

    timeframe_ns: int = 30 * MINUTE_NS
    origin_ns: int = 0
    _cur: _Accumulator | None = None

    def __post_init__(self) -> None:
        if self.timeframe_ns <= 0:
            raise ValueError("timeframe_ns: must be positive")

    def on_bar(self, bar: Bar) -> Bar | None:
        start = bar.start - (bar.start - self.origin_ns) % self.timeframe_ns
        cur = self._cur
        if cur is None or cur.start != start:
            cur = self._cur = _Accumulator(
                start,
                start + self.timeframe_ns,
                bar.open,
                bar.high,
                bar.low,
                bar.close,
                0.0,
                0.0,
                0,
                bar.start,
                bar.end,
                gap=True,
            )
        else:
            cur.high = max(cur.high, bar.high)
            cur.low = min(cur.low, bar.low)
            cur.close = bar.close
        cur.volume += bar.volume
        cur.notional += bar.vwap * bar.volume
        cur.ticks += bar.ticks
        cur.gap = cur.gap and bar.gap
        if bar.end >= cur.end:
            self._cur = None
            return cur.to_bar()
        return None


def check_timeframes(base_ns: int, higher_ns: int) -> None:
    if higher_ns % base_ns != 0 or higher_ns <= base_ns:
        raise ValueError(
            f"higher timeframe ({higher_ns} ns) must be a whole multiple (>1) of the base ({base_ns} ns)"
        )


def bars_to_frame(bars: Iterable[Bar]) -> pd.DataFrame:
    """Bars → DataFrame with the :data:`BAR_COLUMNS` (start/end as int64 ns)."""
    rows = [astuple(b) for b in bars]
    df = pd.DataFrame(rows, columns=list(BAR_COLUMNS))
    return df.astype({"start": np.int64, "end": np.int64, "ticks": np.int64, "gap": bool})


def frame_to_bars(df: pd.DataFrame) -> list[Bar]:
    cols = [df[c].to_numpy() for c in BAR_COLUMNS]
    return [
        Bar(int(s), int(e), float(o), float(h), float(lo), float(c), float(v), float(w), int(n), bool(g))
        for s, e, o, h, lo, c, v, w, n, g in zip(*cols, strict=True)
    ]
