"""Train the whole team on synthetic markets: the entry point behind ``marlops train``.

Two stages, one checkpoint folder:

1. **regime** — the regime agent's supervised objective on the true labels (:mod:`.regime`), a few epochs,
   a checkpoint after each;
2. **team** — MAPPO for structure and tactical (:mod:`.mappo`, through :class:`.team.TeamVecEnv`) with the
   frozen regime agent in the loop, and the risk agent's double DQN on prioritized replay learning from
   the same rollouts (``rollout_steps / train_every`` gradient steps after each MAPPO update). A checkpoint
   every ``checkpoint_every`` updates.

Runs single-process or data-parallel under torchrun (:mod:`.distributed`): every worker simulates its own
markets and episodes (seeds offset by rank), gradients are averaged, rank 0 writes checkpoints, metrics
and the final agents. A rerun with the same ``out`` resumes from the newest checkpoint; the replay
buffer is not checkpointed (hundreds of MB), so a resumed risk agent refills it before learning again.

Outputs in ``out``: ``checkpoints/``, ``metrics.jsonl`` (one line per epoch/update), ``agents/`` (the
four agents in the serving format, :meth:`marlops.agents.runtime.AgentSet.save`), ``critic.pt`` and
``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from marlops.agents.export import net_version
from marlops.agents.networks import build_network
from marlops.agents.runtime import AgentSet
from marlops.agents.specs import load_specs
from marlops.env.market_env import (
    EnvConfig,
    VecMarketEnv,
    market_data_from_dataset,
    synthetic_market_data,
)
from marlops.market.dataset import MarketDataset
from marlops.training import distributed
from marlops.training.checkpoint import load_latest, save_checkpoint
from marlops.training.dqn import DQNConfig
from marlops.training.mappo import MAPPO, MAPPOConfig, _EpisodeLog, seed_everything
from marlops.training.regime import RegimeTrainer, balanced_accuracy, predict, regime_samples
from marlops.training.team import RiskController, TeamCritic, TeamModels, TeamVecEnv, TrainedTeam


@dataclass
class TrainConfig:
    """Everything a run depends on; a resumed run must have the same values (``out`` aside)."""

    seed: int = 0
    train_seeds: tuple[int, ...] = (1001, 1002)  # synthetic markets; worker r trains on seed r mod len
    validation_seed: int = 2001  # held-out market for the regime accuracy printed during training
    days: int = 45
    # a dataset folder (``MarketDataset``) to train on instead of the synthetic train seeds: the pipeline's
    # build-features step hands over the data it wrote the Feast sources from
    dataset: str | None = None
    episode_bars: int = 576
    # regime stage
    regime_epochs: int = 3
    regime_max_samples: int | None = 2048  # per epoch (None: all)
    regime_batch_size: int | None = None  # None: the spec's
    # team stage
    updates: int = 12
    n_envs: int = 16
    rollout_steps: int = 128
    ppo_epochs: int = 4
    n_minibatches: int = 4
    lr: float = 3e-4
    ent_coef: float = 0.01
    gamma: float = 0.99
    # risk agent (the rest from models/risk.yaml)
    dqn_learning_starts: int = 2048
    dqn_buffer_size: int = 50_000
    dqn_batch_size: int = 128
    dqn_epsilon_decay_steps: int = 20_000
    dqn_target_update: int = 250
    checkpoint_every: int = 2  # updates (and every regime epoch)
    # torch intra-op threads per worker (None: torch's default). One on small CPUs: with other work on a
    # 2-core machine, two threads' OpenMP spin-waits made an update ~5× slower (227 s vs 41 s measured).
    threads: int | None = 1

    def key(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Budgets: "ci" runs in seconds (tests), "default" in minutes on a 2-core CPU, "gpu" is the documented
# larger run for GPU nodes.
BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(
        train_seeds=(11,),
        validation_seed=12,
        days=10,
        episode_bars=192,
        regime_epochs=1,
        regime_max_samples=64,
        regime_batch_size=32,
        updates=4,
        n_envs=4,
        rollout_steps=16,
        ppo_epochs=1,
        n_minibatches=1,
        dqn_learning_starts=32,
        dqn_buffer_size=2048,
        dqn_batch_size=16,
        dqn_epsilon_decay_steps=256,
        dqn_target_update=10,
        checkpoint_every=1,
    ),
    # the main job's training step (`marlops run`): minutes on a 2-core CPU, leaving room for the rest
    "small": dict(
        days=20,
        regime_epochs=2,
        regime_max_samples=1024,
        updates=6,
        n_envs=8,
        rollout_steps=64,
        n_minibatches=2,
        dqn_learning_starts=256,
        dqn_buffer_size=8192,
        dqn_batch_size=64,
        dqn_epsilon_decay_steps=2048,
        dqn_target_update=50,
    ),
    "default": {},
    "gpu": dict(
        threads=None,
        days=365,
        regime_epochs=20,
        regime_max_samples=None,
        updates=1000,
        n_envs=128,
        rollout_steps=256,
        n_minibatches=8,
        dqn_learning_starts=20_000,
        dqn_buffer_size=200_000,
        dqn_batch_size=256,
        dqn_epsilon_decay_steps=1_000_000,
        dqn_target_update=2000,
        checkpoint_every=20,
    ),
}


def budget_config(budget: str, **overrides: Any) -> TrainConfig:
    if budget not in BUDGETS:
        raise ValueError(f"budget: unknown {budget!r}; expected one of {sorted(BUDGETS)}")
    return TrainConfig(**{**BUDGETS[budget], **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class TrainSummary:
    out: Path
    resumed_from: int | None
    regime_val_balanced_accuracy: float
    updates: int
    env_steps: int
    wall_s: float
    final: dict[str, float] = field(default_factory=dict)


def _log(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _fresh_models(seed: int) -> TeamModels:
    specs = load_specs()
    nets = {name: build_network(spec, seed=seed) for name, spec in specs.items()}
    return TeamModels(nets["regime"], nets["structure"], nets["tactical"], nets["risk"])  # type: ignore[arg-type]


def train_team(
    cfg: TrainConfig,
    out: str | Path,
    progress: bool = True,
    on_update: Callable[[dict[str, float]], None] | None = None,
) -> TrainSummary:
    """Run (or resume) both stages; returns what rank 0 saw. Safe to call again on a finished ``out``."""
    dist = distributed.init()
    try:
        return _train(cfg, Path(out), dist, progress and dist.is_main, on_update)
    finally:
        distributed.shutdown(dist)


def _train(
    cfg: TrainConfig,
    out: Path,
    dist: distributed.Dist,
    progress: bool,
    on_update: Callable[[dict[str, float]], None] | None,
) -> TrainSummary:
    start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + 1000 * dist.rank)
    ckpt_dir, metrics_path = out / "checkpoints", out / "metrics.jsonl"
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    (out / ".workers").mkdir(exist_ok=True)
    (out / ".workers" / f"rank-{dist.rank}.pid").write_text(str(os.getpid()))  # tests kill a worker by it
    resumed = load_latest(ckpt_dir)
    if resumed is not None and resumed[1]["config"] != cfg.key():
        changed = sorted(k for k, v in cfg.key().items() if resumed[1]["config"].get(k) != v)
        raise ValueError(
            f"{out}: holds a run with a different configuration (changed: {', '.join(changed)}); "
            "use another --out or --fresh"
        )
    state = resumed[1] if resumed else None
    if dist.is_main and resumed:
        _log(metrics_path, {"event": "resumed", "checkpoint": resumed[0], "from_stage": state["stage"]})  # type: ignore[index]

    models = _fresh_models(cfg.seed)
    if cfg.dataset:
        data = market_data_from_dataset(MarketDataset.load(cfg.dataset))
    else:
        data = synthetic_market_data(cfg.train_seeds[dist.rank % len(cfg.train_seeds)], cfg.days)

    # ---- stage 1: regime ------------------------------------------------------------------------
    samples = regime_samples(data)
    batch = cfg.regime_batch_size or models.regime.spec.training.batch_size
    n_regime = min(len(samples), cfg.regime_max_samples or len(samples))
    per_epoch = max(1, n_regime // dist.world_size // batch)
    regime = RegimeTrainer(
        models.regime, samples, dist, seed=cfg.seed + dist.rank, total_steps=per_epoch * cfg.regime_epochs
    )
    regime.batch_size = batch
    if state is not None:
        regime.load_state_dict(state["regime"])
    step = 0 if state is None else int(state["step"])
    with tqdm(
        total=cfg.regime_epochs * per_epoch,
        initial=regime.epochs_done * per_epoch,
        desc="regime",
        unit="batch",
        disable=not progress,
    ) as bar:
        while regime.epochs_done < cfg.regime_epochs:
            m = regime.epoch(cfg.regime_max_samples, progress=bar.update)
            step += 1
            m = {k: dist.mean(v) for k, v in m.items()}
            if dist.is_main:
                _log(metrics_path, {"stage": "regime", "epoch": regime.epochs_done, "step": step, **m})
                save_checkpoint(ckpt_dir, step, _state(cfg, step, "regime", regime, None, None))
            bar.set_postfix(loss=f"{m['regime_loss']:.3f}", acc=f"{m['regime_train_acc']:.2f}")
    val = regime_samples(synthetic_market_data(cfg.validation_seed, max(cfg.days // 3, 8)))
    val_bacc = balanced_accuracy(val.label, predict(models.regime, val.x))
    models.regime.eval().requires_grad_(False)

    # ---- stage 2: team --------------------------------------------------------------------------
    env = VecMarketEnv(data, cfg.n_envs, EnvConfig(episode_bars=cfg.episode_bars), seed=cfg.seed + dist.rank)
    risk_spec = load_specs()["risk"]
    risk = RiskController(
        models.risk,
        DQNConfig.from_spec(
            risk_spec,
            learning_starts=cfg.dqn_learning_starts,
            buffer_size=cfg.dqn_buffer_size,
            batch_size=cfg.dqn_batch_size,
            epsilon_decay_steps=cfg.dqn_epsilon_decay_steps,
            target_update=cfg.dqn_target_update,
        ),
        seed=cfg.seed + dist.rank,
        grad_hook=dist.all_reduce_grads,
    )
    dist.broadcast_module(models.risk)
    risk.learner.sync_target()
    critic = TeamCritic()
    mappo = MAPPO(
        [models.structure_actor, models.tactical_actor],
        critic,
        MAPPOConfig(
            total_steps=cfg.updates * cfg.rollout_steps * cfg.n_envs,
            rollout_steps=cfg.rollout_steps,
            gamma=cfg.gamma,
            lr_actor=cfg.lr,
            lr_critic=cfg.lr,
            update_epochs=cfg.ppo_epochs,
            n_minibatches=cfg.n_minibatches,
            ent_coef=cfg.ent_coef,
            max_grad_norm=0.5,
            seed=cfg.seed + dist.rank,
            progress=False,
        ),
        dist,
    )
    if state is not None and state["stage"] == "team":
        mappo.load_state_dict(state["mappo"])
        risk.learner.load_state_dict(state["risk"])
        risk.env_steps = int(state["risk_env_steps"])
    team_env = TeamVecEnv(env, models, risk)
    mappo.reset(team_env, cfg.seed + 17 * dist.rank + mappo.updates_done)
    last: dict[str, float] = {}
    with tqdm(
        total=cfg.updates, initial=mappo.updates_done, desc="team", unit="upd", disable=not progress
    ) as bar:
        while mappo.updates_done < cfg.updates:
            log = _EpisodeLog()
            buf = mappo.collect(team_env, cfg.rollout_steps, log)
            metrics = mappo.update(buf)
            metrics.update(risk.train(max(1, cfg.rollout_steps // risk.config.train_every)))
            mappo.updates_done += 1
            step += 1
            metrics.update(
                update=mappo.updates_done,
                reward_mean=float(buf.rewards[..., 0].mean()),
                episode_return=float(np.mean(log.returns)) if log.returns else float("nan"),
                risk_epsilon=risk.config.epsilon(risk.env_steps),
                env_steps=mappo.updates_done * cfg.rollout_steps * cfg.n_envs * dist.world_size,
                wall_s=time.perf_counter() - start,
            )
            metrics = {k: dist.mean(float(v)) for k, v in metrics.items()}
            last = metrics
            if dist.is_main:
                _log(metrics_path, {"stage": "team", "step": step, **metrics})
                if mappo.updates_done % cfg.checkpoint_every == 0 or mappo.updates_done == cfg.updates:
                    save_checkpoint(ckpt_dir, step, _state(cfg, step, "team", regime, mappo, risk))
            if on_update is not None:
                on_update(metrics)
            bar.update(1)
            bar.set_postfix(r=f"{metrics['reward_mean']:.4f}", ev=f"{metrics['explained_variance']:.2f}")

    # every worker's weights must be identical after data-parallel training: compare checksums
    checksum = np.array(
        [
            sum(
                float(p.detach().double().sum())
                for n in (models.structure, models.tactical, models.risk)
                for p in n.parameters()
            )
        ]
    )
    sums = dist.all_gather_rows(checksum)
    in_sync = bool(np.allclose(sums, sums[0], rtol=0, atol=1e-6))
    if dist.is_main:
        save_team(models, critic, out)
        summary = {
            "regime_val_balanced_accuracy": val_bacc,
            "updates": mappo.updates_done,
            "env_steps": mappo.updates_done * cfg.rollout_steps * cfg.n_envs * dist.world_size,
            "world_size": dist.world_size,
            "workers_in_sync": in_sync,
            "wall_s": time.perf_counter() - start,
            "resumed_from": resumed[0] if resumed else None,
            "config": cfg.key(),
            "final": last,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    dist.barrier()
    return TrainSummary(
        out,
        resumed[0] if resumed else None,
        val_bacc,
        mappo.updates_done,
        mappo.updates_done * cfg.rollout_steps * cfg.n_envs * dist.world_size,
        time.perf_counter() - start,
        last,
    )


def _state(
    cfg: TrainConfig,
    step: int,
    stage: str,
    regime: RegimeTrainer,
    mappo: MAPPO | None,
    risk: RiskController | None,
) -> dict[str, Any]:
    s: dict[str, Any] = {"config": cfg.key(), "step": step, "stage": stage, "regime": regime.state_dict()}
    if mappo is not None and risk is not None:
        s.update(mappo=mappo.state_dict(), risk=risk.learner.state_dict(), risk_env_steps=risk.env_steps)
    return s


def save_team(models: TeamModels, critic: TeamCritic, out: Path) -> None:
    """The agents in the serving format (ONNX checked against eager) and the critic beside them."""
    nets = {
        "regime": models.regime,
        "structure": models.structure,
        "tactical": models.tactical,
        "risk": models.risk,
    }
    versions_file = out / "agents" / "agents.json"
    if versions_file.exists():  # a rerun of a finished run: the same weights are already exported
        saved = json.loads(versions_file.read_text()).get("versions", {})
        if saved == {name: net_version(net) for name, net in nets.items()}:  # type: ignore[arg-type]
            return
    AgentSet.from_networks(nets, backend="eager", threads=None).save(out / "agents")  # type: ignore[arg-type]
    torch.save(critic.state_dict(), out / "critic.pt")


def load_team(directory: str | Path, name: str = "team") -> TrainedTeam:
    """A trained team (``directory`` = a ``marlops train`` output or its ``agents/`` folder) as a policy."""
    d = Path(directory)
    agents = d / "agents" if (d / "agents").is_dir() else d
    s = AgentSet.load(agents, backend="eager", threads=None)
    n = s.networks
    return TrainedTeam(TeamModels(n["regime"], n["structure"], n["tactical"], n["risk"]), name)  # type: ignore[arg-type]
