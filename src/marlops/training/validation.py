"""The validation figure: the greedy team on the run's validation markets (no stage learns from them).

``utility = mean over episodes of (return − drawdown_weight × max drawdown)``, the desk's measure the risk
calibration uses too (:mod:`.risk_calibration`), on fixed episode starts drawn from ``seed``: the same
episodes for every configuration, so two runs' figures compare. The team stage reports it after every
``validate_every`` updates through ``on_validation`` (the tuner's pruner feeds on it); after training the
whole team (risk agent included) is scored the same way (:func:`validation_figures`).

The markets are :func:`marlops.training.market.training_data`'s ``validation``: the synthetic
``validation_seed`` or a dataset's validation slice — never the held-out markets the evaluation reports on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from marlops.env.market_env import EnvConfig, MarketData, VecMarketEnv
from marlops.training.team import TeamModels, TrainedTeam


@dataclass(frozen=True)
class ValidationFigures:
    utility: float  # mean of return − drawdown_weight × max drawdown: the objective
    mean_return: float
    mean_max_drawdown: float
    episodes: int

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@torch.no_grad()
def validation_figures(
    models: TeamModels,
    markets: Sequence[MarketData],
    episode_bars: int,
    episodes_per_market: int,
    drawdown_weight: float,
    seed: int,
    env_config: EnvConfig | None = None,
    use_risk: bool = True,
) -> ValidationFigures:
    """Play the greedy team on ``episodes_per_market`` episodes of every market (networks in eval mode for
    the call, their modes restored; no global RNG is drawn, so training continues exactly as without it)."""
    nets = list(models.networks().values())
    modes = [n.training for n in nets]
    for n in nets:
        n.eval()
    models.outputs.clear()  # the heads may have moved since the outputs were cached
    try:
        rets, mdds = [], []
        rng = np.random.default_rng(seed)
        team = TrainedTeam(models, use_risk=use_risk)
        for data in markets:
            bars = min(episode_bars, len(data) - data.warm_from - 2)
            if bars < 12:
                continue
            starts = rng.integers(data.warm_from, len(data) - bars - 1, episodes_per_market)
            cfg = dataclasses.replace(env_config or EnvConfig(), episode_bars=bars)
            env = VecMarketEnv(data, episodes_per_market, cfg, seed=seed)
            obs = env.reset(starts=starts)
            team.reset(episodes_per_market)
            team.prepare(data)
            equity = np.empty((episodes_per_market, bars + 1))
            equity[:, 0] = env.cfg.initial_equity
            for k in range(bars):
                obs, _, _, info = env.step(team.act(obs))
                equity[:, k + 1] = info["equity"]
            rets.append(equity[:, -1] / equity[:, 0] - 1.0)
            peak = np.maximum.accumulate(equity, axis=1)
            mdds.append(((peak - equity) / peak).max(axis=1))
        if not rets:
            raise ValueError("validation: no validation market is long enough for one episode")
        ret, mdd = np.concatenate(rets), np.concatenate(mdds)
        return ValidationFigures(
            float(np.mean(ret - drawdown_weight * mdd)), float(ret.mean()), float(mdd.mean()), len(ret)
        )
    finally:
        models.outputs.clear()
        for n, mode in zip(nets, modes, strict=True):
            n.train(mode)
