"""The vectorized market environment: same gates as the engine, costs, clocks, limits, episodes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from marlops.agents.decision import DecisionInputs, Portfolio, RiskLimits, decide
from marlops.agents.hub import CommunicationHub, ConsensusConfig, ConsensusRule
from marlops.agents.types import (
    MESSAGE_DIM,
    STRUCTURE_BIAS_LEVELS,
    RiskOutput,
    StructureOutput,
    TacticalOutput,
)
from marlops.env.market_env import EnvConfig, MarketData, VecMarketEnv
from marlops.market.dataset import stream_ticks
from marlops.market.feed import FeedConfig, features_from_bars
from marlops.market.synthetic import SyntheticMarketConfig, generate_market


@pytest.fixture(scope="module")
def data() -> MarketData:
    m = generate_market(9, seed=2, config=SyntheticMarketConfig(ticks_per_bar=4.0))
    feed = stream_ticks(m.ticks, FeedConfig())
    fs = features_from_bars(feed.base_frame(), feed.higher_frame())
    return MarketData.from_features(fs, m.regime_at(fs.base["start"].to_numpy()))


def random_actions(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "structure": rng.integers(0, 5, n),
        "size": rng.random(n),
        "tactical": rng.integers(0, 5, n),
        "risk": rng.integers(0, 4, n),
    }


def test_observation_shapes_and_clocks(data) -> None:
    env = VecMarketEnv(data, 16, EnvConfig(episode_bars=100), seed=0)
    obs = env.reset()
    assert obs["tactical"].shape == (16, 60, 7) and obs["structure"].shape == (16, 48, 8)
    assert obs["regime"].shape == (16, 96, 11) and obs["portfolio"].shape == (16, 8)
    assert set(np.unique(obs["regime_label"])) <= {0, 1, 2, 3}
    slow = 0
    for _ in range(60):
        obs, r, _, _ = env.step(random_actions(env.rng, 16))
        slow += int(obs["slow_step"].sum())
        assert np.isfinite(r).all() and np.isfinite(obs["portfolio"]).all()
    assert slow == pytest.approx(16 * 60 / 6, abs=16)  # the slow agents act every sixth base step
    assert env.data.warm_from > 0 and (env.t >= env.data.warm_from).all()


def test_env_applies_the_engine_gates_and_accounting(data) -> None:
    """One environment against the scalar decide() + Portfolio the engine uses, zero costs."""
    cfg = EnvConfig(
        episode_bars=400,
        commission_bps=0.0,
        half_spread_bps=0.0,
        slippage_coef=0.0,
        consensus=ConsensusConfig(ConsensusRule.STRUCTURE_AGREES),
    )
    env = VecMarketEnv(data, 1, cfg, seed=3)
    env.reset()
    rng = np.random.default_rng(7)
    pf = Portfolio(equity_start=cfg.initial_equity)
    pf.day_start_equity = pf.peak_equity = cfg.initial_equity
    pf.day = int(data.day[env.t[0]])
    hub = CommunicationHub(consensus=cfg.consensus)
    structure = None
    traded = 0
    for _ in range(350):
        t = int(env.t[0])
        a = random_actions(rng, 1)
        price = float(data.close[t])
        pf.roll_day(int(data.day[t]) * 86_400 * 10**9, price)
        if data.slow_step[t]:
            structure = StructureOutput(
                np.zeros(5),
                STRUCTURE_BIAS_LEVELS[int(a["structure"][0])],
                float(np.clip(a["size"][0], 0, 1)),
                1.0,
                0.0,
                np.zeros(MESSAGE_DIM),
            )
        p = np.full(5, 0.0)
        p[int(a["tactical"][0])] = 1.0
        q = np.zeros(4)
        q[int(a["risk"][0])] = 1.0
        core = decide(
            DecisionInputs(
                price,
                float(data.atr[t]),
                TacticalOutput(p, 0.0, np.zeros(MESSAGE_DIM)),
                structure,
                RiskOutput(q),
            ),
            pf,
            cfg.limits,
            hub,
        )
        pf.fill(core.target - pf.position, price)
        pf.stop_loss, pf.take_profit = core.stop_loss, core.take_profit
        _, _, done, info = env.step(a)
        traded += info["traded"][0] != 0
        assert not done[0]
        assert env.position[0] == pytest.approx(pf.position, rel=1e-9, abs=1e-9)
        assert info["equity"][0] == pytest.approx(pf.equity(float(data.close[t + 1])), rel=1e-9)
    assert traded > 5


def test_costs_are_charged_and_grow_with_size(data) -> None:
    env = VecMarketEnv(data, 2, EnvConfig(episode_bars=50), seed=1)
    env.reset()
    t = env.t.copy()
    cost_small = env._costs(np.array([10.0, 10.0]), data.close[t], t)
    cost_big = env._costs(np.array([1000.0, 1000.0]), data.close[t], t)
    assert (cost_big > 100 * cost_small * 0.999).all()  # linear fees plus sqrt impact: superlinear
    assert (cost_small > 0).all()


def test_limits_hold_for_random_policies(data) -> None:
    lim = RiskLimits(max_position=300.0, max_exposure=20_000.0, max_leverage=0.5)
    env = VecMarketEnv(
        data,
        32,
        EnvConfig(episode_bars=200, limits=lim, consensus=ConsensusConfig(ConsensusRule.NONE)),
        seed=5,
    )
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(300):
        price = data.close[env.t]
        _, _, _, info = env.step(random_actions(rng, 32))
        tgt = info["target"]
        assert (np.abs(tgt) <= lim.max_position).all()
        assert (np.abs(tgt) * price <= lim.max_exposure * (1 + 1e-9)).all()


def test_episodes_reset_and_are_seeded(data) -> None:
    def run(seed: int) -> np.ndarray:
        env = VecMarketEnv(data, 8, EnvConfig(episode_bars=30), seed=seed)
        env.reset()
        rng = np.random.default_rng(1)
        total, dones = np.zeros(8), 0
        for _ in range(70):
            _, r, done, _ = env.step(random_actions(rng, 8))
            total += r
            dones += int(done.sum())
        assert dones == 8 * 2
        return total

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_too_short_data_is_a_clear_error(data) -> None:
    with pytest.raises(ValueError, match="episode_bars"):
        VecMarketEnv(data, 2, dataclasses.replace(EnvConfig(), episode_bars=len(data.close)))
