"""The paired day-block bootstrap, daily returns, t-intervals and trip accounting on constructed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marlops.agents.types import TacticalAction
from marlops.evaluation import metrics as M
from marlops.evaluation.intervals import (
    balanced_accuracy_of_confusion,
    daily_confusion,
    daily_returns,
    day_starts,
    t_interval,
)
from marlops.registry.bootstrap import (
    DayBootstrap,
    Interval,
    mean_interval,
    paired_sharpe_difference,
    percentile_interval,
    sharpe,
    sharpe_interval,
    sharpe_rows,
)

HOLD, EXIT, REDUCE = (
    int(TacticalAction.HOLD),
    int(TacticalAction.EXIT_POSITION),
    int(TacticalAction.REDUCE_SIZE),
)
LONG, SHORT = int(TacticalAction.ENTER_LONG), int(TacticalAction.ENTER_SHORT)


def _series(seed: int, markets: int = 3, days: int = 30, mean: float = 0.0, sd: float = 0.01) -> dict:
    rng = np.random.default_rng(seed)
    return {f"m{i}": mean + sd * rng.standard_normal(days) for i in range(markets)}


# -------------------------------------------------------------------------------------- daily series


def test_daily_returns_chain_to_the_total_return_and_follow_the_days() -> None:
    day = np.array([5, 5, 5, 6, 6, 8])  # 6 steps over days 5, 6 and 8 (a gap: day 7 had no bar)
    equity = np.array([100.0, 101, 99, 102, 103, 100, 110])
    np.testing.assert_array_equal(day_starts(day), [0, 3, 5])
    r = daily_returns(equity, day)
    assert r == pytest.approx([102 / 100 - 1, 100 / 102 - 1, 110 / 100 - 1])
    assert np.prod(1 + r) - 1 == pytest.approx(M.total_return(equity))
    with pytest.raises(ValueError, match="equity"):
        daily_returns(equity[:-1], day)
    with pytest.raises(ValueError, match="day"):
        day_starts(np.array([2, 1]))


def test_daily_confusion_and_balanced_accuracy_match_sklearn() -> None:
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    n = 500
    label, pred = rng.integers(0, 4, n), rng.integers(-1, 4, n)
    label[:7] = -1
    day, scored = np.repeat(np.arange(10), 50), rng.random(n) < 0.5
    cm = daily_confusion(label, pred, day, scored)
    assert cm.shape == (10, 4, 4)
    ok = scored & (label >= 0) & (pred >= 0)
    assert cm.sum() == ok.sum() and cm[3].sum() == ok[150:200].sum()
    np.testing.assert_array_equal(cm.sum(0), M.regime_confusion(label[ok], pred[ok]))
    assert balanced_accuracy_of_confusion(cm.sum(0)) == pytest.approx(
        balanced_accuracy_score(label[ok], pred[ok])
    )
    assert np.isnan(balanced_accuracy_of_confusion(np.zeros((4, 4))))


def test_t_interval_by_hand_and_clipped() -> None:
    iv = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) × sd 1 / √3
    assert (iv.point, iv.low, iv.high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert t_interval([0.1, 0.3], bounds=(0.0, 1.0)).low == 0.0  # a drawdown's interval stays in [0, 1]
    one = t_interval([0.2])
    assert one.point == 0.2 and one.low is None and not one.above(0.0)  # one market: no interval
    assert t_interval([]).point is None


# -------------------------------------------------------------------------------------- bootstrap


def test_sharpe_rows_by_hand_and_flat_rows_score_zero() -> None:
    x = np.array([0.01, -0.02, 0.03, 0.0])
    assert sharpe(x) == pytest.approx(x.mean() / x.std(ddof=1) * math.sqrt(365))
    assert sharpe(x, 252) == pytest.approx(x.mean() / x.std(ddof=1) * math.sqrt(252))
    np.testing.assert_array_equal(sharpe_rows(np.zeros((3, 5))), 0.0)
    assert sharpe(np.array([0.01])) == 0.0


def test_bootstrap_is_deterministic_and_stratified_per_market() -> None:
    a = _series(1, mean=0.001)
    b1 = DayBootstrap({m: len(v) for m, v in a.items()}, n_resamples=500, seed=7)
    b2 = DayBootstrap({m: len(v) for m, v in a.items()}, n_resamples=500, seed=7)
    assert sharpe_interval(b1, a) == sharpe_interval(b2, a)
    assert mean_interval(b1, a) == mean_interval(b2, a)
    other = sharpe_interval(DayBootstrap({m: len(v) for m, v in a.items()}, 500, seed=8), a)
    assert other.point == sharpe_interval(b1, a).point and other.low != sharpe_interval(b1, a).low
    # every replicate draws each market's days from that market only, as many as it has
    markets = list(a)
    rows = b1.resample(a, markets)
    assert rows.shape == (500, 90)
    for i, m in enumerate(markets):
        assert np.isin(rows[:, 30 * i : 30 * (i + 1)], a[m]).all()
    # the point estimate is the statistic of the observed pooled days
    pooled = np.concatenate([a[m] for m in markets])
    assert sharpe_interval(b1, a).point == pytest.approx(sharpe(pooled))
    assert mean_interval(b1, a).point == pytest.approx(pooled.mean())


def test_a_clearly_better_series_has_a_positive_interval_and_identical_ones_zero() -> None:
    base = _series(2, mean=0.0, sd=0.01)
    better = {m: v + 0.004 for m, v in base.items()}  # the same days, 0.4 % a day more
    iv, markets = paired_sharpe_difference(better, base, n_resamples=1000)
    assert markets == ["m0", "m1", "m2"]
    assert iv.point is not None and iv.point > 0 and iv.above(0.0) and iv.low <= iv.point <= iv.high
    same, _ = paired_sharpe_difference(base, {m: v.copy() for m, v in base.items()}, n_resamples=1000)
    assert (same.point, same.low, same.high) == (0.0, 0.0, 0.0)
    # two independent draws of the same process: the interval straddles 0
    noise, _ = paired_sharpe_difference(_series(3), _series(4), n_resamples=1000)
    assert noise.low < 0 < noise.high
    # pairing: a tiny edge over a noisy shared series is visible, unpaired it would drown
    noisy = _series(5, sd=0.05)
    edge = {m: v + 0.001 for m, v in noisy.items()}
    paired, _ = paired_sharpe_difference(edge, noisy, n_resamples=1000)
    boot = DayBootstrap({m: 30 for m in noisy}, 1000, 0)
    single = sharpe_interval(boot, edge)
    assert paired.above(0.0) and (paired.high - paired.low) < 0.2 * (single.high - single.low)
    # only the common markets with the same number of days are paired
    iv, markets = paired_sharpe_difference({**better, "x": np.ones(3)}, {**base, "x": np.ones(4)})
    assert markets == ["m0", "m1", "m2"]


def test_percentile_interval_keeps_infinite_samples_and_drops_nan() -> None:
    iv = percentile_interval(0.1, np.r_[np.linspace(0, 1, 99), np.inf, np.nan])
    assert iv.low == pytest.approx(0.025, abs=0.01) and iv.high == pytest.approx(0.98, abs=0.02)
    iv = percentile_interval(0.1, np.r_[np.zeros(50), np.full(50, np.inf)])
    assert iv.high == math.inf and iv.low == 0.0 and not iv.below(0.2)
    assert percentile_interval(None, np.ones(3)) == Interval(None, None, None)
    assert str(Interval(1.0, 0.5, 1.5)) == "1 [0.5, 1.5]"


# -------------------------------------------------------------------------------------- trips


def test_trip_steps_tell_limit_exits_from_the_policys_own() -> None:
    # trips: long, stopped out while the policy held (a limit exit); long, closed by its own exit; short,
    # closed by a flip (enter_long: the policy's own); long, halved by reduce_size, then closed while it
    # held (a stop, or the risk agent's force_exit: a limit exit); long, still open at the end
    pos = np.array([0, 1, 1, 0, 1, 0, -1, 1, 0.5, 0.0, 1, 1])
    act = np.array([HOLD, LONG, HOLD, HOLD, LONG, EXIT, SHORT, LONG, REDUCE, HOLD, LONG, HOLD])
    t = M.trip_steps(pos, act)
    np.testing.assert_array_equal(np.flatnonzero(t.opened), [1, 4, 6, 7, 10])
    np.testing.assert_array_equal(np.flatnonzero(t.closed), [3, 5, 7, 9])  # 6→7 is a flip
    np.testing.assert_array_equal(np.flatnonzero(t.limit_exit), [3, 9])
    assert (t.entries, t.closes, t.limit_exits, t.ends_open) == (5, 4, 2, True)
    assert t.closes == len(M.round_trips(pos, np.ones(len(pos) + 1), np.zeros(len(pos))))
    # a close by reduce_size (the policy's own action) is not a limit exit
    assert M.trip_steps(np.array([1.0, 0.0]), np.array([LONG, REDUCE])).limit_exits == 0
    with pytest.raises(ValueError, match="tactical"):
        M.trip_steps(pos, act[:-1])
