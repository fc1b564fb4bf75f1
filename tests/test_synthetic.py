"""Tests of the seeded regime-switching synthetic market (marlops.market.synthetic)."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marlops.market.synthetic import (
    REGIMES,
    SyntheticMarket,
    SyntheticMarketConfig,
    generate_market,
    market_summary,
)

MIN5 = 5 * 60 * 1_000_000_000
MIN30 = 6 * MIN5
TRENDING, RANGING, VOLATILE, TRANSITION = range(4)


@pytest.fixture(scope="module")
def m60() -> SyntheticMarket:
    return generate_market(60, seed=0)


def closes_5m(m: SyntheticMarket) -> pd.Series:
    """Last tick price per 5-minute bucket, forward-filled over empty buckets (built with pandas)."""
    ts = pd.to_datetime(m.ticks["ts"], unit="ns", utc=True)
    close = m.ticks["price"].groupby(ts.dt.floor("5min")).last()
    full = pd.to_datetime(m.labels["start"], unit="ns", utc=True)
    return close.reindex(full).ffill()


def runs(regime: np.ndarray) -> list[tuple[int, int, int]]:
    """(regime, first index, length) of each run of equal labels."""
    change = np.flatnonzero(np.diff(regime)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(regime)]))
    return [(int(regime[s]), int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]


def check_tick_invariants(m: SyntheticMarket) -> None:
    t = m.ticks
    assert list(t.columns) == ["ts", "price", "size", "side"]
    assert t["ts"].dtype == np.int64 and t["price"].dtype == np.float64
    assert t["size"].dtype == np.float64 and t["side"].dtype == np.int8
    ts = t["ts"].to_numpy()
    assert np.all(np.diff(ts) > 0), "timestamps must be strictly increasing (hence unique)"
    bucket = (ts - m.start_ns) // MIN5
    assert bucket.min() >= 0 and bucket.max() < len(m.labels)
    # each tick lies inside [bucket start, bucket start + 5 min) of its labelled bucket
    starts = m.labels["start"].to_numpy()[bucket]
    assert np.all((ts >= starts) & (ts < starts + MIN5))
    price = t["price"].to_numpy()
    assert np.all(np.isfinite(price)) and np.all(price > 0)
    size = t["size"].to_numpy()
    assert np.all(np.isfinite(size)) and np.all(size > 0)
    side = t["side"].to_numpy()
    assert set(np.unique(side)) <= {-1, 1}
    move = np.sign(np.diff(price))
    # side follows the tick rule wherever the price moved
    assert np.all(side[1:][move != 0] == move[move != 0])
    lab = m.labels
    assert lab["start"].dtype == np.int64 and lab["regime"].dtype == np.int8
    assert np.all(np.diff(lab["start"].to_numpy()) == MIN5)
    assert set(np.unique(lab["regime"])) <= set(range(len(REGIMES)))


def test_regime_names() -> None:
    assert REGIMES == ("trending", "ranging", "volatile", "transition")


def test_same_seed_is_bit_identical() -> None:
    a = generate_market(3, seed=11)
    b = generate_market(3, seed=11)
    pd.testing.assert_frame_equal(a.ticks, b.ticks, check_exact=True)
    pd.testing.assert_frame_equal(a.labels, b.labels, check_exact=True)
    assert a.seed == b.seed == 11 and a.config == b.config == SyntheticMarketConfig()


def test_different_seeds_differ() -> None:
    a = generate_market(3, seed=1)
    b = generate_market(3, seed=2)
    assert len(a.ticks) != len(b.ticks) or not np.array_equal(a.ticks["price"], b.ticks["price"])
    assert not np.array_equal(a.labels["regime"], b.labels["regime"]) or not np.array_equal(
        a.ticks["ts"][:100], b.ticks["ts"][:100]
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    days=st.floats(0.01, 2.0),
    start_step=st.integers(0, 20_000),
)
def test_invariants_hold_for_any_seed_length_and_start(seed: int, days: float, start_step: int) -> None:
    start = pd.Timestamp("2024-01-01T00:00:00Z") + start_step * pd.Timedelta("30min")
    m = generate_market(days, seed=seed, start=start.isoformat())
    assert m.start_ns == start.value
    assert len(m.labels) == max(1, round(days * 288))
    check_tick_invariants(m)


def test_tick_invariants_60_days(m60: SyntheticMarket) -> None:
    check_tick_invariants(m60)
    assert len(m60.labels) == 60 * 288
    assert 15 < len(m60.ticks) / len(m60.labels) < 26  # about ticks_per_bar (20) per 5-minute bucket


def test_start_must_be_on_30_minute_grid() -> None:
    with pytest.raises(ValueError, match="30-minute"):
        generate_market(1, start="2025-01-01T00:10:00Z")
    m = generate_market(0.5, start="2025-03-01T12:30:00Z")
    assert m.start_ns == pd.Timestamp("2025-03-01T12:30:00Z").value
    assert m.ticks["ts"].iat[0] >= m.start_ns


def test_all_regimes_present_with_sensible_fractions(m60: SyntheticMarket) -> None:
    frac = np.bincount(m60.labels["regime"], minlength=4) / len(m60.labels)
    assert frac[TRENDING] > 0.15 and frac[RANGING] > 0.15
    assert frac[VOLATILE] > 0.02
    assert 0.03 < frac[TRANSITION] < 0.2  # short hand-overs, not a regime of their own
    assert frac.max() < 0.7
    expected = SyntheticMarketConfig().stationary_fractions()
    assert math.isclose(expected.sum(), 1.0) and np.all(np.abs(frac - expected) < 0.15)


def test_transitions_sit_between_different_pure_regimes(m60: SyntheticMarket) -> None:
    lab30 = m60.labels_for(MIN30)["regime"].to_numpy()
    segs = runs(lab30)
    n_trans = 0
    for i, (reg, _, length) in enumerate(segs):
        if reg == TRANSITION:
            assert 1 <= length <= 6
            if 0 < i < len(segs) - 1:
                before, after = segs[i - 1][0], segs[i + 1][0]
                assert TRANSITION not in (before, after) and before != after
                n_trans += 1
        elif i + 1 < len(segs):
            # a pure regime never hands over to another pure regime directly
            assert segs[i + 1][0] == TRANSITION
    assert n_trans > 20


def test_regimes_switch_only_on_30_minute_grid(m60: SyntheticMarket) -> None:
    reg = m60.labels["regime"].to_numpy().reshape(-1, 6)
    assert np.all(reg == reg[:, :1])


def test_volatile_vol_exceeds_ranging_and_ranging_is_only_somewhat_lower(m60: SyntheticMarket) -> None:
    close = closes_5m(m60)
    ret = np.log(close).diff()
    regime = pd.Series(m60.labels["regime"].to_numpy(), index=close.index)
    vol = ret.groupby(regime).std() * math.sqrt(365 * 288)
    assert vol[VOLATILE] > 1.5 * vol[RANGING]
    assert vol[VOLATILE] > vol[TRENDING]
    # reference difficulty: vol levels overlap, ranging only somewhat calmer than trending
    assert 1.05 < vol[TRENDING] / vol[RANGING] < 1.8
    assert 0.2 < vol[RANGING] and vol[VOLATILE] < 1.5


def test_trending_segments_drift_more_than_ranging(m60: SyntheticMarket) -> None:
    close30 = closes_5m(m60).to_numpy()[5::6]  # close of each 30-minute step
    r30 = np.diff(np.log(close30), prepend=math.log(m60.config.start_price))
    lab30 = m60.labels_for(MIN30)["regime"].to_numpy()
    score: dict[int, list[float]] = {TRENDING: [], RANGING: []}
    for reg, first, length in runs(lab30):
        if reg in score and length >= 8:
            r = r30[first : first + length]
            # |net move| in units of the segment's own noise: ~|SNR·sqrt(n) + Z| for a trend
            score[reg].append(abs(r.sum()) / math.sqrt(np.sum(r**2)))
    assert len(score[TRENDING]) >= 10 and len(score[RANGING]) >= 10
    assert np.mean(score[TRENDING]) > 1.5 * np.mean(score[RANGING])


def test_reference_difficulty_is_not_easy() -> None:
    cfg = SyntheticMarketConfig()
    # signal-to-noise of the trend per 30-minute step, including jump variance
    total_vol = math.sqrt(cfg.vol[0] ** 2 + 365 * cfg.jumps_per_day[0] * cfg.jump_std[0] ** 2)
    snr = (cfg.trend_drift_per_day / 48) / (total_vol / math.sqrt(365 * 48))
    assert 0.1 <= snr <= 0.3
    assert cfg.vol[1] < cfg.vol[0] < cfg.vol[2] and cfg.vol[1] / cfg.vol[0] > 0.6
    assert cfg.sv_std > 0 and cfg.tick_noise_bps > 0 and min(cfg.jumps_per_day) > 0


def test_intraday_seasonality_in_tick_counts(m60: SyntheticMarket) -> None:
    ts = m60.ticks["ts"].to_numpy()
    counts = np.bincount((ts - m60.start_ns) // MIN5, minlength=len(m60.labels))
    hour = (m60.labels["start"].to_numpy() // (3600 * 10**9)) % 24
    by_hour = pd.Series(counts).groupby(hour).mean()
    assert by_hour.max() / by_hour.min() > 1.5
    assert by_hour.idxmax() in range(12, 18)  # US-open hump is the largest
    assert counts.std() > math.sqrt(counts.mean())  # over-dispersed vs Poisson at a fixed rate


def test_labels_for_30_minutes(m60: SyntheticMarket) -> None:
    lab = m60.labels_for(MIN30)
    assert len(lab) == 60 * 48
    assert lab["start"].dtype == np.int64 and lab["regime"].dtype == np.int8
    assert np.all(np.diff(lab["start"].to_numpy()) == MIN30) and lab["start"].iat[0] == m60.start_ns
    # the regime at the END of each bucket = its last 5-minute label
    assert np.array_equal(lab["regime"].to_numpy(), m60.labels["regime"].to_numpy()[5::6])
    hourly = m60.labels_for(12 * MIN5)
    assert len(hourly) == 60 * 24
    assert np.array_equal(hourly["regime"].to_numpy(), m60.labels["regime"].to_numpy()[11::12])
    assert m60.labels_for(MIN5).equals(m60.labels)
    with pytest.raises(ValueError, match="multiple of 5 minutes"):
        m60.labels_for(7 * 60 * 10**9)


def test_regime_at(m60: SyntheticMarket) -> None:
    rng = np.random.default_rng(3)
    ts = rng.integers(m60.start_ns, m60.end_ns, size=1000)
    idx = (ts - m60.start_ns) // MIN5
    assert np.array_equal(m60.regime_at(ts), m60.labels["regime"].to_numpy()[idx])
    assert np.array_equal(m60.regime_at(m60.labels["start"].to_numpy()), m60.labels["regime"].to_numpy())
    with pytest.raises(ValueError):
        m60.regime_at(np.array([m60.end_ns]))
    with pytest.raises(ValueError):
        m60.regime_at(np.array([m60.start_ns - 1]))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="switch_probs"):
        SyntheticMarketConfig(switch_probs=((0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)))
    with pytest.raises(ValueError, match="transition_steps_min"):
        SyntheticMarketConfig(transition_steps_min=4, transition_steps_max=2)
    with pytest.raises(ValueError, match="vol"):
        SyntheticMarketConfig(vol=(0.5, -0.1, 0.8))
    with pytest.raises(ValueError, match="days"):
        generate_market(0)


def test_a_year_generates_quickly_and_summarizes() -> None:
    t0 = time.perf_counter()
    m = generate_market(365, seed=0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 60
    s = market_summary(m)
    assert s["n_buckets"] == 365 * 288 and s["n_ticks"] == len(m.ticks) > 1_500_000
    frac = s["regime_fraction"]
    assert set(frac) == set(REGIMES) and math.isclose(sum(frac.values()), 1.0)
    vol = s["realized_vol"]
    assert vol["ranging"] < vol["trending"] < vol["volatile"]
    assert 0.3 < s["realized_vol_all"] < 0.9  # a liquid crypto/FX-like instrument
    assert 15 < s["mean_ticks_per_bucket"] < 26
    assert 0 < s["price_min"] <= s["price_max"] < math.inf
