"""Environment throughput: the vectorized market environment against a naive per-episode Python loop.

    python -m benchmarks env

Both apply the same decision gates (decide_batch vs decide) and the same accounting to random actions
over the reference synthetic market; figures are environment steps (one base bar of one episode) per
second, median of 3, in this run.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from marlops.agents.decision import DecisionInputs, Portfolio, decide
from marlops.agents.hub import CommunicationHub
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
from marlops.market.synthetic import generate_market

STEPS = 200


def vectorized(data: MarketData, n_envs: int) -> float:
    env = VecMarketEnv(data, n_envs, EnvConfig(), seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    acts = [
        {
            "structure": rng.integers(0, 5, n_envs),
            "size": rng.random(n_envs),
            "tactical": rng.integers(0, 5, n_envs),
            "risk": rng.integers(0, 4, n_envs),
        }
        for _ in range(STEPS)
    ]
    t0 = time.perf_counter()
    for a in acts:
        env.step(a)
    return n_envs * STEPS / (time.perf_counter() - t0)


def naive(data: MarketData, n_envs: int) -> float:
    """One episode at a time, one bar at a time: scalar decide() and Portfolio, per-step observations."""
    rng = np.random.default_rng(0)
    hub, cfg = CommunicationHub(), EnvConfig()
    t0 = time.perf_counter()
    for _ in range(n_envs):
        pf, t, structure = Portfolio(), int(rng.integers(data.warm_from, len(data) - STEPS - 1)), None
        for _ in range(STEPS):
            h = max(int(data.higher_of[t]), 0)
            _obs = (data.tactical[t].copy(), data.structure[h].copy(), data.regime[h].copy())
            price = float(data.close[t])
            if data.slow_step[t]:
                structure = StructureOutput(
                    np.zeros(5),
                    STRUCTURE_BIAS_LEVELS[int(rng.integers(0, 5))],
                    float(rng.random()),
                    1.0,
                    0.0,
                    np.zeros(MESSAGE_DIM),
                )
            p, q = np.zeros(5), np.zeros(4)
            p[int(rng.integers(0, 5))] = 1.0
            q[int(rng.integers(0, 4))] = 1.0
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
            pf.fill(core.target - pf.position, price, 3e-4)
            pf.state_vector(float(data.close[t + 1]), cfg.limits)
            t += 1
    return n_envs * STEPS / (time.perf_counter() - t0)


def main() -> None:
    m = generate_market(30, seed=0)
    feed = stream_ticks(m.ticks, FeedConfig())
    fs = features_from_bars(feed.base_frame(), feed.higher_frame())
    data = MarketData.from_features(fs, m.regime_at(fs.base["start"].to_numpy()))
    print("environment steps/s (one step = one 5-minute bar of one episode), median of 3:")
    base = statistics.median(naive(data, 16) for _ in range(3))
    print(f"  naive single-episode loop: {base:,.0f} steps/s")
    for n in (64, 256, 1024):
        v = statistics.median(vectorized(data, n) for _ in range(3))
        print(f"  vectorized, {n:>4} envs: {v:,.0f} steps/s  ({v / base:.0f}x)")


if __name__ == "__main__":
    main()
