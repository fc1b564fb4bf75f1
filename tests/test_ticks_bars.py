"""Tick validation and bar invariants, property-tested with hypothesis."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marlops.market.bars import MINUTE_NS, BarAggregator, BarBuilder, parse_timeframe
from marlops.market.feed import FeedConfig, MarketFeed
from marlops.market.ticks import Tick, TickError, TickValidator

T0 = 1_735_689_600 * 10**9  # 2025-01-01T00:00:00Z
BASE = 5 * MINUTE_NS

# Ticks at random offsets (some out of order, some duplicated, some malformed).
prices = st.one_of(
    st.floats(1.0, 200.0),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0]),
)
sizes = st.one_of(st.floats(0.0, 50.0), st.sampled_from([math.nan, -1.0, math.inf]))
tick_lists = st.lists(
    st.tuples(st.integers(0, 4 * 60 * 60 * 10**9), prices, sizes, st.sampled_from([None, -1, 1, 0])),
    min_size=1,
    max_size=300,
)


def _drift_sorted(raw: list[tuple[int, float, float, int | None]], shuffle_every: int) -> list[Tick]:
    ticks = sorted(raw, key=lambda t: t[0])
    # swap some neighbours so out-of-order arrivals happen, and repeat some ticks as duplicates
    for i in range(1, len(ticks), shuffle_every):
        ticks[i - 1], ticks[i] = ticks[i], ticks[i - 1]
    out = [Tick(T0 + ts, p, s, sd) for ts, p, s, sd in ticks]
    return out + out[:: max(1, shuffle_every)][:5]


@settings(max_examples=150, deadline=None)
@given(tick_lists, st.integers(2, 9), st.sampled_from([0, 10**9, 60 * 10**9]))
def test_bar_invariants_and_volume_conservation(raw, shuffle_every, tolerance) -> None:
    feed = MarketFeed(FeedConfig(out_of_order_tolerance_ns=tolerance))
    accepted: list[Tick] = []
    for t in _drift_sorted(raw, shuffle_every):
        if feed.on_tick(t):
            accepted.append(t)
        # conservation holds at every moment: closed bars + the open one
        open_bar = feed.base.open_bar
        total = sum(b.volume for b in feed.base_bars) + (open_bar.volume if open_bar else 0.0)
        assert total == pytest.approx(sum(a.size for a in accepted), rel=1e-9, abs=1e-9)
    feed.flush()
    bars = feed.base_bars
    assert sum(b.ticks for b in bars) == len(accepted) == feed.stats.ticks_accepted
    assert feed.stats.ticks_in == len(accepted) + sum(feed.stats.rejected.values())
    for prev, b in itertools.pairwise(bars):
        assert b.start == prev.end, "bars are contiguous (gaps filled)"
    for b in bars:
        assert b.high >= max(b.open, b.close) and b.low <= min(b.open, b.close)
        assert b.low <= b.vwap <= b.high or b.volume == 0
        assert (b.start - T0) % BASE == 0 and b.end - b.start == BASE
        assert b.gap == (b.ticks == 0)
        assert all(math.isfinite(x) for x in (b.open, b.high, b.low, b.close, b.vwap, b.volume))
    # every accepted tick is inside the bar that counted it
    for t in accepted:
        assert any(b.start <= t.ts < b.end and b.ticks > 0 for b in bars)
    # higher bars conserve the base volume
    assert sum(b.volume for b in feed.higher_bars) == pytest.approx(
        sum(b.volume for b in bars if b.end <= (feed.higher_bars[-1].end if feed.higher_bars else 0)),
        rel=1e-9,
        abs=1e-9,
    )


@pytest.mark.parametrize(
    ("tick", "field"),
    [
        (Tick(T0, math.nan, 1.0), "price"),
        (Tick(T0, math.inf, 1.0), "price"),
        (Tick(T0, -3.0, 1.0), "price"),
        (Tick(T0, 0.0, 1.0), "price"),
        (Tick(T0, 10.0, -1.0), "size"),
        (Tick(T0, 10.0, math.nan), "size"),
        (Tick(T0, 10.0, 1.0, side=2), "side"),
        (Tick(-5, 10.0, 1.0), "ts"),
    ],
)
def test_malformed_ticks_raise_naming_the_field(tick: Tick, field: str) -> None:
    v = TickValidator()
    with pytest.raises(TickError, match=f"^{field}:") as err:
        v.check(tick)
    assert err.value.field == field
    assert v.rejected_total == 1 and v.accepted == 0


def test_duplicates_and_out_of_order_are_counted_not_raised() -> None:
    v = TickValidator(out_of_order_tolerance_ns=10)
    assert v.accept(Tick(T0 + 100, 10.0, 1.0))
    assert not v.accept(Tick(T0 + 100, 10.0, 1.0))  # exact duplicate
    assert v.accept(Tick(T0 + 100, 10.0, 2.0))  # same time, different trade
    assert v.accept(Tick(T0 + 95, 10.0, 1.0))  # 5 ns late: inside the tolerance
    assert not v.accept(Tick(T0 + 80, 10.0, 1.0))  # 20 ns late: out of order
    assert v.rejected == {"duplicate": 1, "out_of_order": 1}


def test_late_tick_after_bar_closed_is_rejected_and_bar_untouched() -> None:
    feed = MarketFeed(FeedConfig(out_of_order_tolerance_ns=60 * 10**9))
    feed.on_tick(Tick(T0 + BASE - 10**9, 10.0, 1.0))
    feed.on_tick(Tick(T0 + BASE + 10**9, 11.0, 2.0))  # closes the first bar
    assert not feed.on_tick(Tick(T0 + BASE - 5 * 10**8, 9.0, 5.0))  # within tolerance, but its bar closed
    feed.flush()
    assert feed.stats.rejected["late"] == 1
    assert [b.volume for b in feed.base_bars] == [1.0, 2.0]
    assert feed.base_bars[0].low == 10.0


def test_reordered_tick_within_bar_sets_open_by_timestamp() -> None:
    b = BarBuilder()
    b.on_tick(Tick(T0 + 20, 11.0, 1.0))
    b.on_tick(Tick(T0 + 10, 10.0, 1.0))  # earlier, arrived later
    bar = b.flush()[0]
    assert (bar.open, bar.close, bar.high, bar.low) == (10.0, 11.0, 11.0, 10.0)
    assert bar.vwap == pytest.approx(10.5)


def test_gap_bars_fill_quiet_buckets() -> None:
    b = BarBuilder()
    b.on_tick(Tick(T0 + 1, 10.0, 1.0))
    closed = b.on_tick(Tick(T0 + 3 * BASE + 1, 12.0, 1.0))
    assert [x.gap for x in closed] == [False, True, True]
    assert all(x.close == 10.0 and x.volume == 0 for x in closed[1:])


def test_advance_to_closes_on_the_clock() -> None:
    b = BarBuilder()
    b.on_tick(Tick(T0 + 1, 10.0, 1.0))
    assert b.advance_to(T0 + BASE - 1) == []
    assert len(b.advance_to(T0 + BASE)) == 1
    assert b.open_bar is None


def test_aggregator_builds_30m_from_5m() -> None:
    b, agg = BarBuilder(), BarAggregator()
    highs = []
    for i in range(13):  # 13 bars → 2 complete 30m bars
        for bar in b.on_tick(Tick(T0 + i * BASE + 5, 10.0 + i, 1.0 + i)):
            h = agg.on_bar(bar)
            if h:
                highs.append(h)
    assert [h.volume for h in highs] == [sum(range(1, 7)), sum(range(7, 13))]
    assert highs[0].open == 10.0 and highs[0].close == 15.0 and highs[1].start == T0 + 30 * MINUTE_NS


@pytest.mark.parametrize(
    ("text", "ns"),
    [("5m", 5 * MINUTE_NS), ("30m", 30 * MINUTE_NS), ("1h", 60 * MINUTE_NS), ("1d", 1440 * MINUTE_NS)],
)
def test_parse_timeframe(text: str, ns: int) -> None:
    assert parse_timeframe(text) == ns


def test_bad_timeframes_are_clear() -> None:
    with pytest.raises(ValueError, match="timeframe"):
        parse_timeframe("fortnight-ish")
    with pytest.raises(ValueError, match="multiple"):
        FeedConfig(base_timeframe_ns=7 * MINUTE_NS)


def test_hourly_and_daily_timeframes() -> None:
    hour = 60 * MINUTE_NS
    feed = MarketFeed(FeedConfig(base_timeframe_ns=hour, higher_timeframe_ns=24 * hour))
    for i in range(24 * 3):
        feed.on_tick(Tick(T0 + i * hour + 7, 100.0 + i % 5, 1.0))
    feed.flush()
    assert len(feed.base_bars) == 72 and len(feed.higher_bars) == 3
    assert pd.Series([b.volume for b in feed.higher_bars]).eq(24.0).all()
