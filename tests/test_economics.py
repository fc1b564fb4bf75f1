"""The trading economics: stops and take profits on the timeframe that opens positions (the higher one) in
all four code paths — ``decide``, ``decide_batch`` through the environment, the engine and the decision
server — and buy-and-hold that enters once and leaves only by the limits it really hits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marlops.agents.decision import RiskLimits
from marlops.agents.engine import EngineConfig
from marlops.agents.replay import replay_ticks
from marlops.agents.runtime import AgentSet
from marlops.env.market_env import EnvConfig, MarketData, VecMarketEnv
from marlops.evaluation.baselines import BuyAndHold
from marlops.evaluation.metrics import trip_steps
from marlops.evaluation.runner import run_policy
from marlops.market import indicators as ind
from marlops.market.dataset import stream_ticks
from marlops.market.feed import FeedConfig, features_from_bars
from marlops.market.synthetic import SyntheticMarketConfig, generate_market


@pytest.fixture(scope="module")
def market():
    m = generate_market(6, seed=4, config=SyntheticMarketConfig(ticks_per_bar=4.0))
    feed = stream_ticks(m.ticks, FeedConfig())
    fs = features_from_bars(feed.base_frame(), feed.higher_frame())
    return m, fs, MarketData.from_features(fs, m.regime_at(fs.base["start"].to_numpy()))


def _higher_atr_at(higher: pd.DataFrame, ts: np.ndarray) -> np.ndarray:
    """ATR(14) of the higher bars closed at or before each ``ts`` (NaN before the first)."""
    atr = np.append(ind.atr(higher["high"], higher["low"], higher["close"]).to_numpy(), np.nan)
    i = np.searchsorted(higher["end"].to_numpy(), ts, side="right") - 1
    return atr[np.where(i >= 0, i, -1)]


def test_environment_stops_are_measured_on_the_higher_timeframe(market) -> None:
    _, fs, data = market
    expected = _higher_atr_at(fs.higher, data.end_ns)
    np.testing.assert_allclose(data.atr, expected, equal_nan=True)
    base_atr = ind.atr(fs.base["high"], fs.base["low"], fs.base["close"]).to_numpy()
    warm = slice(data.warm_from, None)
    assert np.nanmedian(data.atr[warm] / base_atr[warm]) > 1.8  # 30-minute ranges are the wider
    # an entry in the environment (decide_batch) puts its stop stop_atr higher-bar ATRs away
    env = VecMarketEnv(data, 1, EnvConfig(episode_bars=50), seed=0)
    obs = env.reset()
    t = int(env.t[0])
    acts = {"structure": np.array([4]), "size": np.ones(1), "tactical": np.array([0]), "risk": np.array([0])}
    acts["structure_now"] = np.ones(1, bool)
    env.step(acts)
    lim = RiskLimits()
    assert env.position[0] > 0
    assert env.stop[0] == pytest.approx(data.close[t] - lim.stop_atr * data.atr[t])
    assert env.take[0] == pytest.approx(data.close[t] + lim.take_profit_atr * data.atr[t])
    del obs


def test_engine_and_server_stops_use_the_higher_timeframe_atr(market, tmp_path) -> None:
    m, fs, _ = market
    agents = AgentSet.untrained(seed=0, backend="eager")
    decisions = replay_ticks(m.ticks, agents, engine_config=EngineConfig(agent_budget_us={})).decisions
    lim = RiskLimits()
    # entries from flat (the position before was target − quantity = 0): a new stop and take profit are set
    fresh = [d for d in decisions if d.target_position != 0 and d.target_position == d.quantity]
    assert len(fresh) >= 3
    ts = np.array([d.ts for d in fresh])
    atr = _higher_atr_at(fs.higher, ts)
    for d, a in zip(fresh, atr, strict=True):
        side = np.sign(d.target_position)
        assert d.stop_loss == pytest.approx(d.price - side * lim.stop_atr * a, rel=1e-9)
        assert d.take_profit == pytest.approx(d.price + side * lim.take_profit_atr * a, rel=1e-9)
    # the decision server sees base bars only and rolls the higher bar up itself: same value
    roll = ind.RollupAtr()
    direct = ind.Atr()
    base = fs.base
    higher_end = set(fs.higher["end"].tolist())
    for row in base.itertuples():
        roll.add(row.high, row.low)
        if row.end in higher_end:
            roll.close(row.close)
    for row in fs.higher.itertuples():
        direct.update(row.high, row.low, row.close)
    assert roll.value == pytest.approx(direct.value, rel=1e-12)


def test_buy_and_hold_enters_once_and_leaves_only_by_the_limits_it_hits(market) -> None:
    _, _, data = market
    rec = run_policy(data, BuyAndHold())
    trips = trip_steps(rec.position, rec.tactical)
    assert trips.entries == 1 + trips.limit_exits - (0 if trips.ends_open else 1)
    assert trips.entries < rec.n_steps / 288 * 6  # a handful per day at most, not dozens
    # with limits far away nothing is hit: one entry, held to the end
    wide = EnvConfig(limits=RiskLimits(stop_atr=1e6, take_profit_atr=1e6, max_daily_loss=1.0))
    rec = run_policy(data, BuyAndHold(), wide)
    trips = trip_steps(rec.position, rec.tactical)
    assert (trips.entries, trips.limit_exits, trips.ends_open) == (1, 0, True)
    assert (rec.position > 0).all()
