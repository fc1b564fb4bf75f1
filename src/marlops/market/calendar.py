"""How many bars make a trading day and a year, estimated from the bars' own timestamps.

Per-day and annualised figures (Sharpe, turnover per day, a fold's length in days) need the number of
bars in a trading day and in a year. Both depend on the base timeframe *and* the calendar: 5-minute bars
of a market that trades 24/7 (the synthetic reference market, crypto) make 288 a day and 288 × 365 a
year; hourly bars of FX, which closes at the weekend, make 24 a trading day and about 24 × 261 a year;
an equity session of 6.5 hours makes 78 five-minute bars a day on about 252 days. Nothing in a bar file
says which calendar it follows, so :func:`bar_clock` measures it:

- **bars per year** = the bars that start inside a window of whole weeks from the first bar, over the
  window's length in years (365-day years). Whole weeks make a weekend gap count exactly as often as it
  occurs, whatever weekday the data starts on; a history shorter than a week uses its whole span (a
  partial week biases a market with weekend gaps, a 24/7 one stays exact);
- **bars per day** = the median number of bars per UTC date that has bars (dates by bar start). The
  median ignores partial days at the edges, holidays and half sessions; a date without bars is not a
  trading day;
- **trading days per year** = bars per year / bars per day (365 for 24/7 data, ~261 for FX, ~252 for
  an exchange with holidays).

A complete 24/7 history gives exactly ``86 400 s / bar`` a day and 365 days a year (integer counts over
whole days: no rounding), so the synthetic market's figures are those of :data:`REFERENCE_CLOCK`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_NS = 86_400 * 10**9
WEEK_NS = 7 * DAY_NS
DAYS_PER_YEAR = 365  # calendar days: the span of a history is measured in 365-day years


@dataclass(frozen=True)
class BarClock:
    """Bars per trading day and per year of one market (see the module docstring for the estimate)."""

    bars_per_day: float
    bars_per_year: float

    def __post_init__(self) -> None:
        for name in ("bars_per_day", "bars_per_year"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name}: must be finite and > 0, got {v!r}")

    @property
    def days_per_year(self) -> float:
        """Trading days per year: what annualises a Sharpe of daily returns."""
        return self.bars_per_year / self.bars_per_day

    def days(self, n_bars: int | float) -> float:
        """``n_bars`` bars in trading days."""
        return float(n_bars) / self.bars_per_day


# 5-minute bars traded 24/7: the synthetic reference market (``market.synthetic.BUCKETS_PER_YEAR``).
REFERENCE_CLOCK = BarClock(bars_per_day=288.0, bars_per_year=288.0 * DAYS_PER_YEAR)


def bar_clock(end_ns: np.ndarray) -> BarClock:
    """The :class:`BarClock` of bars ending at ``end_ns`` (int64 ns, increasing).

    Fewer than two bars carry no calendar: the reference clock is returned.
    """
    end = np.asarray(end_ns, np.int64)
    if end.ndim != 1:
        raise ValueError(f"end_ns: need a 1-D array, got shape {end.shape}")
    if len(end) < 2:
        return REFERENCE_CLOCK
    steps = np.diff(end)
    if (steps <= 0).any():
        raise ValueError("end_ns: bar ends must be strictly increasing")
    bar_ns = int(np.median(steps))  # the base timeframe: gaps (nights, weekends) are rarer than bars
    start = end - bar_ns
    span_ns = int(end[-1] - start[0])
    weeks = span_ns // WEEK_NS
    window_ns = weeks * WEEK_NS if weeks >= 1 else span_ns
    in_window = int(np.count_nonzero(start < start[0] + window_ns))
    # Python ints: one correctly rounded division, so a complete 24/7 history gives the exact 288 × 365
    per_year = in_window * DAYS_PER_YEAR * DAY_NS / window_ns
    _, per_date = np.unique(start // DAY_NS, return_counts=True)
    return BarClock(bars_per_day=float(np.median(per_date)), bars_per_year=float(per_year))
