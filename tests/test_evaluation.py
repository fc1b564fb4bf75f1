"""Evaluation: metrics against hand computations, baselines, the runner, walk-forward splits, the report."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

from marlops.agents.types import TacticalAction
from marlops.env.market_env import EnvConfig, MarketData, _windows, synthetic_market_data
from marlops.evaluation import metrics as M
from marlops.evaluation.baselines import (
    BuyAndHold,
    HMMRegimeClassifier,
    MomentumPolicy,
    RandomPolicy,
    hmm_features,
    hmm_policy,
    oracle_policy,
    training_rows,
)
from marlops.evaluation.goals import GOAL_KEYS, check_buy_and_hold_trips, check_goals, goal_table
from marlops.evaluation.report import evaluate_and_report
from marlops.evaluation.runner import (
    EpisodeRecord,
    EvaluationResult,
    episode_metrics,
    evaluate,
    evaluate_walk_forward,
    market_data_from_dataset,
    run_policies,
    run_policy,
    slice_market,
    walk_forward_splits,
    without_costs,
)
from marlops.market.matrices import REGIME
from marlops.market.synthetic import RANGING, TRENDING

ANN = math.sqrt(288 * 365)


def _no_costs() -> EnvConfig:
    return without_costs(EnvConfig())


# --------------------------------------------------------------------------------------------------
# fixtures: small reference markets (default config; 4 of their days are the matrices' warm-up)


@pytest.fixture(scope="module")
def train() -> MarketData:
    return synthetic_market_data(seed=11, days=12)


@pytest.fixture(scope="module")
def test_data() -> MarketData:
    return synthetic_market_data(seed=12, days=7)


@pytest.fixture(scope="module")
def clf(train) -> HMMRegimeClassifier:
    return HMMRegimeClassifier(seed=0, restarts=1).fit(train)


# --------------------------------------------------------------------------------------------------
# metrics


def test_sharpe_sortino_drawdown_return_by_hand() -> None:
    eq = np.array([100.0, 110.0, 99.0, 99.0, 108.9])  # returns +10 %, −10 %, 0, +10 %
    mean, var = 0.025, (0.075**2 + 0.125**2 + 0.025**2 + 0.075**2) / 3
    assert M.sharpe_ratio(eq) == pytest.approx(mean / math.sqrt(var) * ANN)
    assert M.sortino_ratio(eq) == pytest.approx(mean / math.sqrt(0.01 / 4) * ANN)
    assert M.max_drawdown(eq) == pytest.approx(0.1)
    assert M.total_return(eq) == pytest.approx(0.089)
    assert M.drawdown_curve(eq) == pytest.approx([0, 0, 0.1, 0.1, 0.01])


def test_flat_and_never_losing_curves_are_finite_or_inf_not_nan() -> None:
    flat = np.full(50, 1e5)
    assert M.sharpe_ratio(flat) == 0.0 and M.sortino_ratio(flat) == 0.0
    assert M.max_drawdown(flat) == 0.0 and M.total_return(flat) == 0.0
    up = np.array([100.0, 101.0, 101.0, 103.0])
    assert M.sortino_ratio(up) == math.inf and M.sharpe_ratio(up) > 0


def test_turnover_round_trips_hit_rate_cost_share_by_hand() -> None:
    # 4 steps at price 100, equity 1000: buy 10, hold, sell 10, nothing → notional 2000
    eq = np.full(5, 1000.0)
    assert M.turnover_per_day([10, 0, -10, 0], [100.0] * 4, eq) == pytest.approx(2000 / 1000 / (4 / 288))
    # trips: long 1 over steps 1-2 (closed at 3), short 1 over 4-5 (closed at 6), long 2 open at 7
    pos = np.array([0, 1, 1, 0, -1, -1, 0, 2.0])
    px = np.array([10, 10, 12, 11, 11, 12, 10, 10, 15.0])
    cost = np.array([0, 0.1, 0, 0.1, 0.1, 0, 0.1, 0.1])
    trips = M.round_trips(pos, px, cost)
    assert trips == pytest.approx([(12 - 10) + (11 - 12) - 0.2, -(12 - 11) - (10 - 12) - 0.2])
    assert M.hit_rate(pos, px, cost) == 1.0
    assert M.hit_rate(pos, px, cost + np.array([0, 0, 0, 0, 0, 0, 1.0, 0])) == 0.5
    assert M.hit_rate(np.zeros(3), np.ones(4), np.zeros(3)) == 0.0
    # equity 100 → 103 net with 1 of costs: gross 4, share 1 / (1 + 4)
    assert M.cost_share(np.array([100.0, 101, 103]), np.array([0.5, 0.5])) == pytest.approx(0.2)
    assert M.cost_share(np.array([100.0, 101]), np.zeros(1)) == 0.0


def test_regime_scores() -> None:
    y_true = np.array([0, 0, 1, 1, 2, -1])
    y_pred = np.array([0, 1, 1, 1, 2, 3])
    assert M.regime_balanced_accuracy(y_true, y_pred) == pytest.approx((0.5 + 1 + 1) / 3)
    cm = M.regime_confusion(y_true, y_pred)
    assert cm.shape == (4, 4) and cm.sum() == 5 and cm[0, 1] == 1 and cm[1, 1] == 2
    assert M.regime_balanced_accuracy(np.full(3, -1), np.zeros(3)) is None


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: M.sharpe_ratio(np.array([100.0])), "equity"),
        (lambda: M.max_drawdown(np.array([100.0, np.nan])), "equity"),
        (lambda: M.total_return(np.array([100.0, -1.0])), "equity"),
        (lambda: M.turnover_per_day([1.0], [1.0, 2.0], np.ones(2)), "price"),
        (lambda: M.regime_balanced_accuracy(np.zeros(3), np.zeros(2)), "y_pred"),
        (lambda: walk_forward_splits(0, 2), "n_bars"),
        (lambda: walk_forward_splits(10_000, 0), "n_folds"),
        (lambda: walk_forward_splits(10_000, 2, test_fraction=1.5), "test_fraction"),
        (lambda: walk_forward_splits(10_000, 300), "n_folds"),
        (lambda: evaluate({}, {"b": BuyAndHold()}), "datasets"),
    ],
)
def test_bad_input_names_the_field(call, field) -> None:
    with pytest.raises(ValueError, match=field):
        call()


def test_too_short_or_empty_market_is_refused(test_data) -> None:
    short = slice_market(test_data, 0, test_data.warm_from + 5)
    with pytest.raises(ValueError, match="data:"):
        run_policy(short, BuyAndHold())
    with pytest.raises(ValueError, match="data:"):
        evaluate({"short": short}, {"b": BuyAndHold()})
    with pytest.raises(ValueError, match="start/end"):
        slice_market(test_data, 5, 5)
    with pytest.raises(ValueError, match="days"):
        synthetic_market_data(0, days=0)


# --------------------------------------------------------------------------------------------------
# baselines and the runner


def _accounting(rec) -> None:
    """Equity moves by position × price change minus costs, and costs are never negative."""
    gross = rec.position * np.diff(rec.price)
    assert np.diff(rec.equity) == pytest.approx(gross - rec.cost, abs=1e-6)
    assert (rec.cost >= 0).all()


def test_buy_and_hold_is_long_after_the_first_slow_step_and_earns_the_market(test_data) -> None:
    recs = [run_policy(test_data, BuyAndHold(), cfg) for cfg in (EnvConfig(), _no_costs())]
    for rec in recs:
        first = int(np.argmax(rec.slow))
        assert (rec.position[:first] == 0).all() and rec.position[first] > 0 and (rec.position >= 0).all()
        # it always wants to be long: enter whenever not long (after a stop, a take profit or a halt)
        before = np.r_[0.0, rec.position[:-1]]
        want = np.where(before > 0, TacticalAction.HOLD, TacticalAction.ENTER_LONG)
        np.testing.assert_array_equal(rec.tactical, want)
        assert (rec.structure == 4).all() and (rec.size == 1).all() and (rec.risk == 0).all()
        _accounting(rec)  # the market's move × the position, minus costs
    paid, free = recs
    assert np.mean(free.position[first:] > 0) > 0.6  # flat only after stops / take profits / halts
    assert free.cost.sum() == 0 and paid.cost.sum() > 0
    assert free.equity[-1] > paid.equity[-1]


def test_runner_is_deterministic_and_batched_equals_single(test_data) -> None:
    a = run_policy(test_data, RandomPolicy(seed=3))
    b = run_policy(test_data, RandomPolicy(seed=3))
    np.testing.assert_array_equal(a.equity, b.equity)
    np.testing.assert_array_equal(a.tactical, b.tactical)
    assert a.start == test_data.warm_from and a.n_steps == len(test_data) - test_data.warm_from - 2
    both = run_policies(test_data, {"r": RandomPolicy(seed=3), "m": MomentumPolicy()})
    np.testing.assert_array_equal(both["r"].equity, a.equity)
    np.testing.assert_array_equal(both["m"].equity, run_policy(test_data, MomentumPolicy()).equity)


def test_momentum_sides_follow_the_rule(test_data) -> None:
    rec = run_policy(test_data, MomentumPolicy(threshold=0.5), _no_costs())
    z = test_data.regime[test_data.higher_of[rec.start : rec.start + rec.n_steps], -1, 2]
    want = np.where(z > 0.5, 1, np.where(z < -0.5, -1, 0))
    slow = rec.slow
    assert (rec.structure[slow] == np.array([0, 2, 4])[want[slow] + 1]).all()
    # never against the rule's side: held positions agree with the last slow decision
    side = np.sign(rec.position)
    assert ((side == 0) | (side == np.sign(rec.structure - 2))).all()
    assert (side != 0).any() and (side > 0).any() and (side < 0).any()


def test_oracle_reads_the_true_labels(test_data) -> None:
    rec = run_policy(test_data, oracle_policy(), _no_costs())
    np.testing.assert_array_equal(rec.regime_pred[rec.slow], rec.regime_label[rec.slow])
    n = len(test_data)
    ranging = dataclasses.replace(test_data, regime_label=np.full(n, RANGING))
    assert (run_policy(ranging, oracle_policy()).traded == 0).all()
    trending = dataclasses.replace(test_data, regime_label=np.full(n, TRENDING))
    np.testing.assert_array_equal(
        run_policy(trending, oracle_policy()).position, run_policy(trending, MomentumPolicy()).position
    )
    unlabelled = dataclasses.replace(test_data, regime_label=np.full(n, -1))
    res = evaluate({"u": unlabelled}, {"oracle": oracle_policy(), "bh": BuyAndHold()}, progress=False)
    assert res.skipped == [{"market": "u", "policy": "oracle", "reason": "needs regime labels"}]
    assert set(res.metrics) == {("u", "bh", True), ("u", "bh", False)}


def test_hmm_filter_is_causal_and_matches_hmmlearn(train, clf) -> None:
    rows, _ = training_rows(train)
    assert clf.mapping == "labels" and set(clf.state_to_regime) <= {0, 1, 2, 3}
    p = clf.filter_proba(rows)
    assert p.shape == (len(rows), 4) and np.allclose(p.sum(1), 1)
    k = len(rows) // 2
    future = rows.copy()
    future[k + 1 :] = np.random.default_rng(0).normal(0, 5, future[k + 1 :].shape)
    q = clf.filter_proba(future)
    np.testing.assert_allclose(q[: k + 1], p[: k + 1], rtol=0, atol=0)
    assert not np.allclose(q[k + 1 :], p[k + 1 :])
    # the filtered belief at the last row equals hmmlearn's smoothed posterior there (nothing after it)
    z = (hmm_features(rows[: k + 1]) - clf.mean) / clf.std
    np.testing.assert_allclose(clf.model.predict_proba(z)[-1], p[k], atol=1e-6)
    # one online step = the batch filter
    np.testing.assert_allclose(clf.filter_step(p[k - 1 : k], rows[k : k + 1])[0], p[k], atol=1e-12)


def test_hmm_policy_predictions_do_not_see_the_future(test_data, clf) -> None:
    """Perturb the regime features after a cut: predictions before the cut stay the same."""
    rows = test_data.regime[:, -1, :].copy()
    h_cut = int(test_data.higher_of[test_data.warm_from + (len(test_data) - test_data.warm_from) // 2])
    rows[h_cut + 1 :] += np.random.default_rng(1).normal(0, 3, rows[h_cut + 1 :].shape).astype(np.float32)
    changed = dataclasses.replace(test_data, regime=_windows(rows, REGIME.rows))
    a = run_policy(test_data, hmm_policy(clf), _no_costs())
    b = run_policy(changed, hmm_policy(clf), _no_costs())
    before = test_data.higher_of[a.start : a.start + a.n_steps] <= h_cut
    assert before.sum() > 100 and (~before).sum() > 100
    np.testing.assert_array_equal(a.regime_pred[before], b.regime_pred[before])
    np.testing.assert_array_equal(a.position[before], b.position[before])
    assert (a.regime_pred >= 0).all() and (a.regime_pred != b.regime_pred).any()


# --------------------------------------------------------------------------------------------------
# evaluate, walk-forward, goals, report


def test_walk_forward_splits_do_not_overlap_or_leak() -> None:
    n = 20_000
    splits = walk_forward_splits(n, 4, test_fraction=0.4, gap=12)
    tests = [s.test for s in splits]
    assert tests[0][0] == n - 8_000 and tests[-1][1] == n
    for a, b in itertools.pairwise(tests):
        assert a[1] == b[0]  # contiguous, no overlap
    for s in splits:
        assert s.train[0] == 0 and s.train[1] == s.test[0] - 12 and s.train[1] <= s.test[0]
    rolling = walk_forward_splits(n, 4, test_fraction=0.4, expanding=False)
    assert len({s.train[1] - s.train[0] for s in rolling}) == 1
    assert all(s.train[1] <= s.test[0] for s in rolling)


def test_walk_forward_fits_on_the_training_part_only() -> None:
    data = synthetic_market_data(seed=13, days=16)
    splits = walk_forward_splits(len(data), 2, test_fraction=0.5)
    seen: list[int] = []

    def factory(train_part: MarketData):
        seen.append(len(train_part))
        return hmm_policy(HMMRegimeClassifier(restarts=1).fit(train_part))

    res = evaluate_walk_forward(
        data, splits, {"hmm": factory, "bh": BuyAndHold()}, with_costs=(True,), progress=False
    )
    assert seen == [s.train[1] - s.train[0] for s in splits]
    assert res.markets == ["market fold 0", "market fold 1"]
    for i, s in enumerate(splits):
        rec = res.records[(f"market fold {i}", "bh", True)]
        assert rec.n_steps == s.test[1] - s.test[0] - 2  # the test block is warm from its first bar
        np.testing.assert_array_equal(rec.price, data.close[s.test[0] : s.test[1] - 1])


def _record(market, policy, daily, trips_per_day=0, own_exit=True, accuracy=None, seed=0) -> EpisodeRecord:
    """A constructed episode: ``daily`` returns spread evenly over 288 bars a day, ``trips_per_day`` trips
    closed by the policy (``own_exit``) or by a limit, regime predictions right at ``accuracy``."""
    bars, n_days = M.BARS_PER_DAY, len(daily)
    n = bars * n_days
    per_bar = np.repeat((1 + np.asarray(daily)) ** (1 / bars) - 1, bars)
    equity = 1e5 * np.r_[1.0, np.cumprod(1 + per_bar)]
    position, tactical = np.zeros(n), np.full(n, int(TacticalAction.HOLD))
    for j in range(trips_per_day):  # trip j of every day: open at bar 10 + 40 j, closed at bar 30 + 40 j
        for d in range(n_days):
            k = d * bars + 10 + 40 * j
            position[k : k + 20] = 1.0
            tactical[k] = int(TacticalAction.ENTER_LONG)
            tactical[k + 20] = int(TacticalAction.EXIT_POSITION if own_exit else TacticalAction.HOLD)
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 4, n)
    pred = np.full(n, -1)
    if accuracy is not None:
        pred = np.where(rng.random(n) < accuracy, label, (label + 1 + rng.integers(0, 3, n)) % 4)
    zeros = np.zeros(n, np.int64)
    return EpisodeRecord(
        market, policy, True, 0, np.full(n + 1, 100.0), equity, position, np.diff(np.r_[0.0, position]),
        np.zeros(n), zeros, np.zeros(n), tactical, zeros, pred, label, np.arange(n) % 6 == 5,
        np.repeat(np.arange(20_000, 20_000 + n_days), bars),
    )  # fmt: skip


def _result(records: list[EpisodeRecord]) -> EvaluationResult:
    res = EvaluationResult(
        list(dict.fromkeys(r.market for r in records)), list(dict.fromkeys(r.policy for r in records))
    )
    for r in records:
        res.records[(r.market, r.policy, True)] = r
        res.metrics[(r.market, r.policy, True)] = episode_metrics(r)
    return res


def _constructed(
    team_mean: float = 0.003,
    bh_edge: float | None = None,
    bh_noise: float = 0.003,
    markets: int = 5,
    days: int = 20,
):
    """team: steady, 2 own round trips a day, 90 % regime accuracy; team_no_risk: the same days with twice
    the swings and a lower mean; oracle: the team's own returns; bh: independent noise (or the team's
    returns plus ``bh_edge`` and some noise of its own), long all along with two limit exits a market."""
    rng = np.random.default_rng(0)
    recs = []
    for i in range(markets):
        m = f"m{i}"
        eps = rng.standard_normal(days)
        eps -= eps.mean()
        team = team_mean + 0.004 * eps
        noise = rng.standard_normal(days)
        bh = 0.004 * noise if bh_edge is None else team + bh_edge + bh_noise * noise
        recs += [
            _record(m, "team", team, trips_per_day=2, accuracy=0.9, seed=i),
            _record(m, "team_no_risk", 0.002 + 0.008 * eps, trips_per_day=2),
            _record(m, "oracle", team, accuracy=1.0),
            _record(m, "bh", bh),
        ]
        bh_rec = recs[-1]
        bh_rec.position[:] = 1.0  # long from the start, stopped out twice and re-entered a bar later
        for k in (1_000, 3_000):
            bh_rec.position[k] = 0.0
            bh_rec.tactical[k + 1] = int(TacticalAction.ENTER_LONG)
        bh_rec.tactical[0] = int(TacticalAction.ENTER_LONG)
    return _result(recs)


def test_goal_checks_on_intervals_by_hand() -> None:
    res = _constructed()
    g = check_goals(res, baselines=None, buy_and_hold="bh")
    assert {k: g[k]["status"] for k in GOAL_KEYS} == dict.fromkeys(GOAL_KEYS, "pass")
    beat = g["team_beats_baselines"]
    assert set(beat["beaten"]) == {"bh"} and beat["not_beaten"] == []  # the ablation has its own goal
    assert "team_no_risk" not in beat["sharpe_difference"]
    for p in ("bh",):
        d = beat["sharpe_difference"][p]
        assert d["low"] > 0 and d["low"] <= d["point"] <= d["high"]
    # the oracle earns what the team earns: team − ½ oracle is half the team's Sharpe, on every replicate
    half = g["team_half_oracle"]
    assert half["difference"]["point"] == pytest.approx(0.5 * half["team_sharpe"]["point"])
    assert half["ratio"] == pytest.approx(1.0)
    # the drawdown cut: per market 1 − mdd_team / mdd_ablation, its mean and a t-interval over markets
    risk = g["risk_agent"]
    cuts = [
        1
        - M.max_drawdown(res.records[(m, "team", True)].equity)
        / M.max_drawdown(res.records[(m, "team_no_risk", True)].equity)
        for m in res.markets
    ]
    assert risk["drawdown_cut_per_market"] == pytest.approx(dict(zip(res.markets, cuts, strict=True)))
    assert (
        risk["drawdown_cut"]["point"] == pytest.approx(np.mean(cuts)) and risk["drawdown_cut"]["low"] >= 0.3
    )
    assert risk["return_cost"]["high"] <= 0.2
    assert g["team_trades"]["round_trips_per_day"]["point"] == pytest.approx(2.0)
    assert g["team_trades"]["round_trips_per_day"]["low"] == pytest.approx(2.0)  # every day the same
    acc = g["regime_accuracy"]["balanced_accuracy"]
    assert acc["low"] < acc["point"] < acc["high"] and acc["point"] == pytest.approx(0.9, abs=0.01)
    trips = g["buy_and_hold_trips"]["markets"]["m0"]
    assert (trips["entries"], trips["limit_exits"], trips["own_exits"]) == (3, 2, 0)
    rows = goal_table(g)
    assert [r.status for r in rows] == ["pass"] * len(rows) and len(rows) == 7
    assert rows[2].figure == "team Sharpe − bh Sharpe" and "[" in rows[2].measured

    # buy-and-hold a little worse than the team, but within noise: not beaten
    g = check_goals(_constructed(bh_edge=-0.0001), buy_and_hold="bh")
    assert g["team_beats_baselines"]["status"] == "fail" and g["team_beats_baselines"]["not_beaten"] == ["bh"]
    d = g["team_beats_baselines"]["sharpe_difference"]["bh"]
    assert d["low"] <= 0 < d["high"]
    # …while a sure edge, however small, is significant: the same days, always a little better
    g = check_goals(_constructed(bh_edge=-0.0001, bh_noise=0.0), buy_and_hold="bh")
    assert g["team_beats_baselines"]["status"] == "pass"
    # a team that gives up half the ablation's return: the risk agent costs too much
    g = check_goals(_constructed(team_mean=0.001), buy_and_hold="bh")
    assert g["risk_agent"]["status"] == "fail" and g["risk_agent"]["return_cost"]["point"] == pytest.approx(
        0.5
    )
    # one market: no interval over markets, so no drawdown claim
    g = check_goals(_constructed(markets=1), buy_and_hold="bh")
    assert g["risk_agent"]["status"] == "fail" and "two markets" in g["risk_agent"]["note"]
    # regime accuracy below 0.85 passes only within 0.03 of a measured ceiling
    res = _constructed()
    for m in res.markets:
        rec = _record(m, "team", np.zeros(20), trips_per_day=2, accuracy=0.8, seed=1)
        res.records[(m, "team", True)] = rec
    assert check_goals(res, buy_and_hold="bh")["regime_accuracy"]["status"] == "fail"
    near = check_goals(res, buy_and_hold="bh", regime_ceiling=0.80)["regime_accuracy"]
    assert near["status"] == "pass" and near["required"] == pytest.approx(0.77)
    assert check_goals(res, buy_and_hold="bh", regime_ceiling=0.9)["regime_accuracy"]["status"] == "fail"
    # fewer than a round trip a day fails
    for m in res.markets:
        res.records[(m, "team", True)] = _record(m, "team", np.zeros(20))
    assert check_goals(res, buy_and_hold="bh")["team_trades"]["status"] == "fail"
    missing = check_goals(res, team="nobody", buy_and_hold="nobody")
    assert all(missing[k]["status"] == "skipped" for k in GOAL_KEYS)


def test_buy_and_hold_trips_check_on_constructed_records() -> None:
    def bh(position, tactical):
        rec = _record("m", "buy_and_hold", np.zeros(1))
        rec.position[:] = 0.0
        rec.position[: len(position)] = position
        rec.tactical[:] = int(TacticalAction.HOLD)
        rec.tactical[: len(tactical)] = tactical
        return check_buy_and_hold_trips(_result([rec]))

    L, H, X = int(TacticalAction.ENTER_LONG), int(TacticalAction.HOLD), int(TacticalAction.EXIT_POSITION)
    ok = bh([1, 1, 0, 1, 1, 0, 1] + [1] * 100, [L, H, H, L, H, H, L])  # 2 limit exits, 3 entries, open
    assert ok["status"] == "pass" and ok["markets"]["m"]["expected_entries"] == 3
    own = bh([1, 1, 0, 1], [L, H, X, L])  # closed by its own exit: churn, not buy-and-hold
    assert own["status"] == "fail" and own["markets"]["m"]["own_exits"] == 1
    flat = bh([1, 1, 0], [L, H, H])  # stopped out, episode over before the re-entry: entries = limit exits
    assert flat["status"] == "pass" and flat["markets"]["m"]["ends_open"] is False
    never = bh([], [])
    assert never["status"] == "fail" and never["markets"]["m"]["entries"] == 0
    assert check_buy_and_hold_trips(_result([_record("m", "x", np.zeros(1))]))["status"] == "skipped"


def test_goal_checks_without_records_are_skipped_not_guessed() -> None:
    res = EvaluationResult(["m"], ["team", "team_no_risk", "oracle", "buy_and_hold"])
    base = {"max_drawdown": 0.1, "total_return": 0.1, "regime_balanced_accuracy": None}
    res.metrics = {
        ("m", "team", True): {"sharpe": 2.0, **base},
        ("m", "buy_and_hold", True): {"entries": 2.0, "limit_exits": 1.0, "round_trips": 1.0, **base},
    }
    g = check_goals(res)
    assert g["buy_and_hold_trips"]["status"] == "pass"
    for k in ("regime_accuracy", "team_beats_baselines", "team_half_oracle", "team_trades", "risk_agent"):
        assert g[k]["status"] == "skipped" and "no episode records" in g[k]["reason"]


def test_evaluate_and_report_writes_every_policy(tmp_path, test_data, clf) -> None:
    pols = {
        "buy_and_hold": BuyAndHold(),
        "random": RandomPolicy(0),
        "momentum": MomentumPolicy(),
        "hmm_momentum": hmm_policy(clf),
        "oracle": oracle_policy(),
    }
    res = evaluate_and_report(
        {"seed 12": test_data}, pols, tmp_path, team="hmm_momentum", ablation="momentum", progress=False
    )
    # costs never help: the same policy earns less with them (and pays nothing without them)
    for p in pols:
        with_c, without = res.metrics[("seed 12", p, True)], res.metrics[("seed 12", p, False)]
        assert without["total_cost"] == 0.0
        if with_c["round_trips"] > 0:
            assert with_c["total_cost"] > 0
        _accounting(res.records[("seed 12", p, True)])
    for p in ("buy_and_hold", "momentum"):
        assert (
            res.metrics[("seed 12", p, True)]["total_return"]
            < res.metrics[("seed 12", p, False)]["total_return"]
        )
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["policies"] == list(pols) and doc["markets"] == ["seed 12"]
    assert set(doc["aggregate"]) == {"with_costs", "without_costs"}
    for setting in doc["aggregate"].values():
        assert set(setting) == set(pols)
        assert {"sharpe", "sortino", "max_drawdown", "total_return", "turnover_per_day", "hit_rate",
                "cost_share", "regime_balanced_accuracy"} <= set(setting["hmm_momentum"])  # fmt: skip
    assert len(doc["runs"]) == 2 * len(pols)
    assert set(doc["confusion"]) == {"hmm_momentum", "oracle"}
    assert doc["aggregate"]["with_costs"]["oracle"]["regime_balanced_accuracy"] == 1.0
    for key in GOAL_KEYS:
        assert doc["goals"][key]["status"] in ("pass", "fail")
    # buy-and-hold opens one trip, then one after every stop / take profit / halt, and never exits itself
    assert doc["goals"]["buy_and_hold_trips"]["status"] == "pass"
    for m in doc["runs"]:
        met = m["metrics"]
        assert met["round_trips_per_day"] == pytest.approx(met["round_trips"] / met["days"])
        assert met["round_trips"] <= met["entries"] <= met["round_trips"] + 1
        assert 0 <= met["limit_exits"] <= met["round_trips"]
    # the daily returns (what a gate pairs) compound to each run's total return, over the market's days
    for label, costs in (("with_costs", True), ("without_costs", False)):
        for p in pols:
            daily = doc["daily_returns"][label][p]["seed 12"]
            assert len(daily) == len(doc["days"]["seed 12"]) >= 3
            total = res.metrics[("seed 12", p, costs)]["total_return"]
            assert np.prod(1 + np.array(daily)) - 1 == pytest.approx(total, abs=1e-8)
    iv = doc["intervals"]["with_costs"]
    assert iv["method"]["n_resamples"] == 2000 and iv["team"] == "hmm_momentum"
    assert iv["n_days"] == len(doc["days"]["seed 12"]) and "only" in iv["note"]  # 3 days: rough intervals
    for p in pols:
        sh = iv["policies"][p]["sharpe"]
        assert sh["low"] <= sh["point"] <= sh["high"]
    assert set(iv["versus"]) == set(pols) - {"hmm_momentum"}
    assert [r["check"] for r in doc["goal_table"]][:2] == ["buy_and_hold_trips", "regime_accuracy"]
    page = (tmp_path / "report.html").read_text()
    assert "measured [95 % interval]" in page and page.index("goaltable") < page.index("<img")
    assert "<b>Note:</b> only" in page
    assert "limit exits" in page and "trips/day" in page
    assert page.count("<img") >= 4 and "hmm_momentum" in page and "<script" not in page
    assert (tmp_path / "report.html").stat().st_size < 2_000_000


def test_dataset_folder_gives_the_same_market_data(tmp_path) -> None:
    from marlops.market.dataset import MarketDataset, dataset_from_ticks
    from marlops.market.feed import FeedConfig
    from marlops.market.synthetic import generate_market

    m = generate_market(days=5, seed=14)
    dataset_from_ticks(tmp_path / "ds", m.ticks, FeedConfig(), {"source": "synthetic"}, m.labels)
    loaded = market_data_from_dataset(MarketDataset.load(tmp_path / "ds"))
    direct = synthetic_market_data(seed=14, days=5)
    np.testing.assert_array_equal(loaded.regime_label, direct.regime_label)
    np.testing.assert_array_equal(loaded.close, direct.close)
    assert loaded.warm_from == direct.warm_from


class _FailClosed(BuyAndHold):
    """Sends the optional "fail" flag: the engine fails closed, so it never opens a position."""

    def act(self, obs):
        out = super().act(obs)
        out["fail"] = np.ones(len(out["structure"]), bool)
        return out


def test_optional_env_keys_are_passed_on(test_data) -> None:
    recs = run_policies(test_data, {"weak": _FailClosed(), "bh": BuyAndHold()}, _no_costs())
    assert (recs["weak"].position == 0).all()
    np.testing.assert_array_equal(recs["bh"].equity, run_policy(test_data, BuyAndHold(), _no_costs()).equity)


# --------------------------------------------------------------------------------------------------
# a report a user can read


def test_every_failed_goal_says_why() -> None:
    g = check_goals(_constructed(bh_edge=-0.0001), buy_and_hold="bh")
    beat = g["team_beats_baselines"]
    assert beat["status"] == "fail" and "team" in beat["reason"] and "bh" in beat["reason"]
    row = next(r for r in goal_table(g) if r.figure == "team Sharpe − bh Sharpe")
    assert row.status == "fail" and "lower bound" in row.reason and row.verdict.startswith("fail: team ")
    # two flat policies: "team 0.00 vs bh 0.00 — not higher"
    flat = _result([_record("m0", "team", np.zeros(5)), _record("m0", "bh", np.zeros(5))])
    g = check_goals(flat, buy_and_hold="bh")
    assert g["team_beats_baselines"]["reason"] == "team 0.00 vs bh 0.00 — not higher"
    rows = {r.figure: r for r in goal_table(g)}
    assert rows["team Sharpe − bh Sharpe"].verdict == "fail: team 0.00 vs bh 0.00 — not higher"
    assert "the round trips per day: lower bound 0.00 < 1.00" in g["team_trades"]["reason"]
    assert rows["team round trips per day"].reason == g["team_trades"]["reason"]
    assert g["buy_and_hold_trips"]["reason"] == "m0: never entered"
    risky = check_goals(_constructed(team_mean=0.001), buy_and_hold="bh")["risk_agent"]
    assert "return cost: upper bound" in risky["reason"] and "> 20%" in risky["reason"]
    one = check_goals(_constructed(markets=1), buy_and_hold="bh")["risk_agent"]
    assert "no interval for the drawdown cut" in one["reason"]
    res = _constructed()
    for m in res.markets:
        res.records[(m, "team", True)] = _record(m, "team", np.zeros(20), trips_per_day=2, accuracy=0.8)
    acc = check_goals(res, buy_and_hold="bh")["regime_accuracy"]
    assert acc["reason"].startswith("the balanced accuracy: lower bound 0.") and "< 0.850" in acc["reason"]
    # a pass carries no reason
    passed = check_goals(_constructed(), buy_and_hold="bh")
    assert all("reason" not in passed[k] for k in GOAL_KEYS)
    assert all(r.reason == "" and r.verdict == "pass" for r in goal_table(passed))


def test_every_policy_is_visible_over_the_reference_line() -> None:
    from marlops.evaluation.report import equity_figure

    flat = [_record("m0", p, np.zeros(3)) for p in ("team", "bh", "random")]
    flat[2].equity[:] = flat[2].equity * np.linspace(1.0, 1.01, len(flat[2].equity))
    fig = equity_figure(_result(flat), "m0", "team")
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    ref = [ln for ln in ax.get_lines() if ln.get_label().startswith("_")]  # the unlabelled 1.0 line
    assert len(ref) == 1 and all(
        ref[0].get_zorder() < ln.get_zorder() for ln in lines.values() if ln not in ref
    )
    # bh lies on the team's line: dashed, labelled as such and drawn over it; the team over the solid rest
    assert [ln.get_label() for ln in ax.get_lines()] == ["random", "team", "bh (= team)", ref[0].get_label()]
    assert lines["bh (= team)"].get_linestyle() == "--" and lines["team"].get_linestyle() == "-"


def test_regime_strip_and_confusion_messages_match_the_data() -> None:
    from marlops.evaluation.report import confusion_message, regimes_figure

    labelled = _record("m0", "team", np.zeros(2), accuracy=0.9)
    res = _result([labelled])
    assert "shading: true regime" in regimes_figure(res, "m0").axes[0].get_title()
    unlabelled = _record("m0", "team", np.zeros(2), accuracy=0.9)
    unlabelled.regime_label[:] = -1
    res = _result([unlabelled])
    title = regimes_figure(res, "m0").axes[0].get_title()
    assert "shading" not in title and "no regime labels" in title
    assert res.pooled_confusion("team") is None  # predictions, but nothing to score them against
    assert "no regime labels" in confusion_message(res, True)
    assert "No policy predicts" not in confusion_message(res, True)
    silent = _record("m0", "team", np.zeros(2))
    assert confusion_message(_result([silent]), True) == "No policy predicts regimes."


def test_walk_forward_report_dates_every_fold(tmp_path) -> None:
    from marlops.evaluation.report import write_report

    data = synthetic_market_data(seed=13, days=12)
    splits = walk_forward_splits(len(data), 2, test_fraction=0.4)
    res = evaluate_walk_forward(data, splits, {"bh": BuyAndHold()}, with_costs=(True,), progress=False)
    write_report(res, tmp_path, team="bh")
    doc = json.loads((tmp_path / "report.json").read_text())
    day0 = np.datetime64(int(data.end_ns[0]), "ns")
    for i, s in enumerate(splits):
        p = doc["periods"][f"market fold {i}"]
        rec = res.records[(f"market fold {i}", "bh", True)]
        assert p["from"] == str(np.datetime64(int(rec.end_ns[0]), "ns").astype("datetime64[m]")).replace(
            "T", " "
        )
        assert p["bars"] == rec.n_steps and p["trading_days"] == pytest.approx(rec.n_steps / 288)
        assert p["train"][0] == str(day0.astype("datetime64[m]")).replace("T", " ")
        assert p["train"][1] == _utc_minutes(data.end_ns[s.train[1] - 1])
    page = (tmp_path / "report.html").read_text()
    assert "trained on (UTC)" in page and doc["periods"]["market fold 1"]["to"] in page
    assert "288 bars a trading day" in page


def _utc_minutes(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[m]")).replace("T", " ")
