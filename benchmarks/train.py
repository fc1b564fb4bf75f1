"""Team training throughput, the update included: batched environments against one episode at a time.

    python -m benchmarks train

One "iteration" is what ``marlops train`` does per update: a MAPPO rollout of ``T`` steps through
``TeamVecEnv`` (regime + structure at higher-bar closes, tactical and the risk agent every step), the
MAPPO update (4 epochs × 4 minibatches) and the risk agent's DQN steps. Figures: environment steps and
agent decisions per second (structure counts when it decides, tactical and risk every step), median of 3
iterations after a warm-up, for the batched run (16 envs) and for the naive baseline — the same code with
one environment, i.e. a single-episode Python loop — in the same run, with the worst iteration beside
the median (three iterations are too few for a meaningful p99).
"""

from __future__ import annotations

import statistics
import time

import torch

from marlops.env.market_env import EnvConfig, VecMarketEnv, synthetic_market_data
from marlops.training.dqn import DQNConfig
from marlops.training.mappo import MAPPO, MAPPOConfig
from marlops.training.market import _fresh_models
from marlops.training.team import RiskController, TeamCritic, TeamVecEnv

T = 64


def run(n_envs: int, iterations: int = 3) -> dict[str, float]:
    data = synthetic_market_data(1001, 20)
    models = _fresh_models(0)
    risk = RiskController(
        models.risk,
        DQNConfig(learning_starts=256, batch_size=128, buffer_size=20_000, epsilon_decay_steps=10_000),
        seed=0,
    )
    env = TeamVecEnv(VecMarketEnv(data, n_envs, EnvConfig(), seed=0), models, risk)
    mappo = MAPPO(
        [models.structure_actor, models.tactical_actor],
        TeamCritic(),
        MAPPOConfig(rollout_steps=T, update_epochs=4, n_minibatches=4, progress=False),
    )
    mappo.reset(env, 0)
    rates, decisions, step_ms = [], [], []
    for it in range(iterations + 1):
        t0 = time.perf_counter()
        buf = mappo.collect(env, T)
        t1 = time.perf_counter()
        mappo.update(buf)
        risk.train(max(1, T // risk.config.train_every))
        dt = time.perf_counter() - t0
        if it == 0:  # warm-up: first allocations, the replay's learning_starts
            continue
        rates.append(T * n_envs / dt)
        decisions.append((buf.acts.sum() + T * n_envs) / dt)  # structure + tactical, + risk every step
        step_ms.append((t1 - t0) / T * 1e3)
    return {
        "env_steps_per_s": statistics.median(rates),
        "env_steps_per_s_worst": min(rates),
        "decisions_per_s": statistics.median(decisions),
        "rollout_step_ms": statistics.median(step_ms),
    }


def main() -> None:
    torch.set_num_threads(1)  # as `marlops train` (docs/training.md: threads)
    naive, batched = run(1), run(16)
    print(f"team training, iteration = {T}-step rollout + MAPPO update + DQN steps, median of 3 (this CPU)")
    for name, r in (("naive, 1 env", naive), ("batched, 16 envs", batched)):
        print(
            f"  {name:18s} steps/s p50 {r['env_steps_per_s']:8.1f} (worst {r['env_steps_per_s_worst']:.1f})"
            f"   decisions/s {r['decisions_per_s']:8.1f}"
            f"   rollout step {r['rollout_step_ms']:.1f} ms"
        )
    print(f"  ratio batched / naive: {batched['env_steps_per_s'] / naive['env_steps_per_s']:.1f}×")


if __name__ == "__main__":
    main()
