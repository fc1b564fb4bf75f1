"""Learning throughput of ``marlops train``, every stage, against the loop it replaced — in the same run.

    python -m benchmarks train

Baseline ("full networks", the loop before the staged design): MAPPO where every rollout step runs the
regime transformer and structure's CNN-LSTM at higher-bar closes and tactical's attention on every step,
and every update back-propagates through all of them (16 envs, 64-step rollouts, 4 epochs × 4 minibatches).

The staged run measures each stage as ``marlops train`` runs it:
- regime / structure / tactical pretraining: supervised samples per second (forward + backward);
- team: MAPPO env steps per second over the cached encodings (64 envs, 128-step rollouts, same epochs);
- risk: DQN transitions per second against the frozen team (32 envs, one gradient step per env step).

Medians of 3 timed repetitions after a warm-up, the slowest beside it (three are too few for a p99);
one torch thread, as ``marlops train`` uses by default.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from marlops.agents.types import MESSAGE_DIM, RiskAction
from marlops.env.market_env import EnvConfig, MarketData, VecMarketEnv, synthetic_market_data
from marlops.market.matrices import STRUCTURE, TACTICAL
from marlops.training.config import RiskStageConfig, default_config, with_overrides
from marlops.training.distributed import Dist
from marlops.training.mappo import MAPPO, MAPPOConfig, VecObs, VecStep
from marlops.training.market import _fresh_models
from marlops.training.pretrain import (
    StructurePretrainer,
    TacticalPretrainer,
    structure_samples,
    tactical_samples,
)
from marlops.training.regime import RegimeTrainer, regime_samples
from marlops.training.stages import StageContext, run_risk
from marlops.training.team import SlowContext, TeamCritic, TeamModels, TeamVecEnv, team_state


def _median(fn: Callable[[], float], reps: int = 3) -> tuple[float, float]:
    fn()  # warm-up
    rates = [fn() for _ in range(reps)]
    return statistics.median(rates), min(rates)


# --------------------------------------------------------------------------------------- the old loop


class _FullStructure(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def dist(self, obs: Tensor) -> Categorical:
        n = math.prod(STRUCTURE.shape)
        x = obs[:, :n].reshape(-1, *STRUCTURE.shape)
        msgs = obs[:, n : n + MESSAGE_DIM].reshape(-1, 1, MESSAGE_DIM)
        return Categorical(logits=self.net(x, msgs, obs[:, n + MESSAGE_DIM :] > 0.5).logits)


class _FullTactical(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def dist(self, obs: Tensor) -> Categorical:
        n = math.prod(TACTICAL.shape)
        x = obs[:, :n].reshape(-1, *TACTICAL.shape)
        msgs = obs[:, n : n + 2 * MESSAGE_DIM].reshape(-1, 2, MESSAGE_DIM)
        return Categorical(logits=self.net(x, msgs, obs[:, n + 2 * MESSAGE_DIM :] > 0.5).logits)


class _FullTeamEnv:
    """The previous environment view: raw matrices as observations, every network run per step."""

    n_agents = 2

    def __init__(self, env: VecMarketEnv, m: TeamModels) -> None:
        self.env, self.m, self.n_envs = env, m, env.n
        self.ctx = SlowContext.empty(env.n)
        self.fresh = np.ones(env.n, bool)

    @torch.no_grad()
    def _view(self, obs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        n, ctx = self.n_envs, self.ctx
        slow = np.asarray(obs["slow_step"], bool) | self.fresh
        rows = np.flatnonzero(slow)
        if len(rows):
            reg = self.m.regime(torch.as_tensor(obs["regime"][rows]))
            ctx.regime_msg[rows] = reg.message.numpy()
            st = self.m.structure(
                torch.as_tensor(obs["structure"][rows]),
                reg.message[:, None],
                torch.ones(len(rows), 1, dtype=torch.bool),
            )
            ctx.structure_msg[rows], ctx.size[rows] = st.message.numpy(), st.size.numpy()
            ctx.present[rows] = True
        self.obs = obs
        p = ctx.present.astype(np.float32)[:, None]
        s_obs = np.concatenate([obs["structure"].reshape(n, -1), ctx.regime_msg, p], 1)
        t_obs = np.concatenate([obs["tactical"].reshape(n, -1), ctx.regime_msg, ctx.structure_msg, p, p], 1)
        acts = np.stack([slow, np.ones(n, bool)], 1)
        return [s_obs.astype(np.float32), t_obs.astype(np.float32)], team_state(self.env, ctx, obs), acts

    def reset(self, seed: int) -> VecObs:
        self.env.rng = np.random.default_rng(seed)
        return VecObs(*self._view(self.env.reset()))

    def step(self, actions: np.ndarray) -> VecStep:
        nxt, reward, done, _ = self.env.step(
            {
                "structure": actions[:, 0],
                "size": self.ctx.size,
                "tactical": actions[:, 1],
                "risk": np.full(self.n_envs, int(RiskAction.ALLOW)),
                "structure_now": self.fresh,
            }
        )
        self.fresh = done.copy()
        o, s, a = self._view(nxt)
        return VecStep(o, s, np.repeat(reward[:, None], 2, 1), done, np.zeros(self.n_envs, bool), s, a)


def _mappo_rate(
    env: object, actors: list[nn.Module], n_envs: int, steps: int, epochs: int = 4
) -> Callable[[], float]:
    mappo = MAPPO(
        actors,
        TeamCritic(),
        MAPPOConfig(rollout_steps=steps, update_epochs=epochs, n_minibatches=4, progress=False),
    )
    mappo.reset(env, 0)  # type: ignore[arg-type]

    def once() -> float:
        t0 = time.perf_counter()
        mappo.update(mappo.collect(env, steps))  # type: ignore[arg-type]
        return steps * n_envs / (time.perf_counter() - t0)

    return once


# ------------------------------------------------------------------------------------------ the stages


def _supervised_rate(trainer: object, batch: int) -> Callable[[], float]:
    def once() -> float:
        t0 = time.perf_counter()
        loss, _ = trainer.step(np.arange(batch))  # type: ignore[attr-defined]
        trainer.opt.zero_grad()  # type: ignore[attr-defined]
        loss.backward()
        trainer.opt.step()  # type: ignore[attr-defined]
        return batch / (time.perf_counter() - t0)

    return once


def _regime_rate(m: TeamModels, data: MarketData, batch: int) -> Callable[[], float]:
    samples = regime_samples(data)
    trainer = RegimeTrainer(m.regime, samples, total_steps=100)
    trainer.batch_size = batch

    def once() -> float:
        t0 = time.perf_counter()
        n = trainer.epoch(max_samples=batch)  # one minibatch
        del n
        return batch / (time.perf_counter() - t0)

    return once


def main() -> None:
    torch.set_num_threads(1)
    data = synthetic_market_data(1001, 20)
    rows: list[tuple[str, str, float, float]] = []

    m = _fresh_models(0)
    old_env = _FullTeamEnv(VecMarketEnv(data, 16, EnvConfig(), seed=0), m)
    old = _median(_mappo_rate(old_env, [_FullStructure(m.structure), _FullTactical(m.tactical)], 16, 64))
    rows.append(("baseline: MAPPO through the full networks (16 envs)", "env steps/s", *old))

    m = _fresh_models(0)
    rows.append(("regime pretraining", "samples/s", *_median(_regime_rate(m, data, 128))))
    message = m.regime_encoding(data).message
    cfg = dataclasses.replace(default_config().structure, batch_size=128)
    st = StructurePretrainer(m.structure, structure_samples([(data, message)], cfg), cfg)
    rows.append(("structure pretraining", "samples/s", *_median(_supervised_rate(st, 128))))
    m.forget_encodings("structure")
    tac_markets = [(data, message, m.structure_encoding(data))]
    tac = TacticalPretrainer(m.tactical, tactical_samples(tac_markets, m.structure), cfg)
    rows.append(("tactical pretraining", "samples/s", *_median(_supervised_rate(tac, 256))))
    m.forget_encodings()
    m.encodings(data)
    t0 = time.perf_counter()
    m.forget_encodings()
    m.encodings(data)
    rows.append(
        ("encoding cache (20 days)", "base bars/s", len(data) / (time.perf_counter() - t0), float("nan"))
    )

    team_env = TeamVecEnv(VecMarketEnv(data, 64, EnvConfig(), seed=0), m)
    new = _median(_mappo_rate(team_env, [m.structure_actor, m.tactical_actor], 64, 128))
    rows.append(("team: MAPPO over cached encodings (64 envs)", "env steps/s", *new))

    overrides = {
        "risk.steps": 200,
        "risk.n_envs": 32,
        "risk.learning_starts": 512,
        "risk.checkpoint_steps": 10**9,
    }
    cfg_all = with_overrides(default_config(), overrides)
    risk_cfg: RiskStageConfig = cfg_all.risk
    with tempfile.TemporaryDirectory() as tmp:
        ctx = StageContext(cfg_all, m, [data], [data], Dist(), Path(tmp), {}, False, lambda record: None)
        t0 = time.perf_counter()
        run_risk(ctx)
        rate = risk_cfg.steps * risk_cfg.n_envs / (time.perf_counter() - t0)
    rows.append(("risk: DQN vs the frozen team (32 envs)", "transitions/s", rate, float("nan")))

    print("training throughput, one torch thread, median of 3 (slowest in brackets), this CPU")
    for name, unit, med, worst in rows:
        w = f"({worst:,.0f})" if np.isfinite(worst) else ""
        print(f"  {name:52s} {med:12,.0f} {unit:14s} {w}")
    print(f"  ratio team stage / baseline env steps/s: {new[0] / old[0]:.0f}×")


if __name__ == "__main__":
    main()
