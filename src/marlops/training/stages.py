"""The four training stages, in the order :func:`marlops.training.market.train_team` runs them.

1. **regime** — the regime agent on the true regimes (:mod:`.regime`); then frozen.
2. **structure** — its encoder and heads on the forward-return utility of its bias levels (:mod:`.pretrain`),
   reading the frozen regime agent's messages; then its encoder is frozen.
3. **tactical** — its encoder and heads on carrying out structure's decisions; then its encoder is frozen.
4. **team** — MAPPO fine-tunes structure's and tactical's communication and heads over the cached
   encodings (:mod:`.team`) with the centralized critic, and the risk agent's double DQN learns on the same
   rollouts (:mod:`.risk`).

Each stage reads and writes its own entry of the run's checkpoint (``state[stage]``), logs one JSON line
per epoch or update and skips whatever a resumed checkpoint says is done, so a killed run resumes inside
the stage it was in.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from marlops.env.market_env import EnvConfig, MarketData, VecMarketEnv
from marlops.market.synthetic import SyntheticMarketConfig
from marlops.training import distributed
from marlops.training.checkpoint import save_checkpoint
from marlops.training.config import TrainConfig
from marlops.training.mappo import MAPPO, _EpisodeLog
from marlops.training.pretrain import (
    StructurePretrainer,
    TacticalPretrainer,
    _EpochTrainer,
    structure_samples,
    tactical_samples,
)
from marlops.training.regime import RegimeTrainer, concat_samples, regime_samples
from marlops.training.regime_targets import RegimeTargets
from marlops.training.risk import RiskController, no_op_noise, proposal
from marlops.training.risk_calibration import add_allow_margin, choose_allow_margin
from marlops.training.team import MarketsTeamEnv, TeamCritic, TeamModels, TeamVecEnv, TrainedTeam
from marlops.training.validation import ValidationFigures, validation_figures

STAGES = ("regime", "structure", "tactical", "team", "risk")


@dataclass
class StageContext:
    """What every stage shares: the run's settings, the models, the training markets and the bookkeeping."""

    cfg: TrainConfig
    models: TeamModels
    markets: list[MarketData]
    validation: list[MarketData]  # markets no stage learns from: figures and the risk agent's calibration
    dist: distributed.Dist
    out: Path
    state: dict[str, Any]  # the checkpoint being built (resumed entries included)
    progress: bool
    log: Callable[[dict[str, Any]], None]
    step: int = 0  # checkpoint counter
    start: float = field(default_factory=time.perf_counter)
    # what the regime stage learns from (None: the training markets' own labels, the teacher where known)
    targets: RegimeTargets | None = None
    env: EnvConfig = field(default_factory=EnvConfig)  # costs: a dataset's own (meta.json), else defaults
    # the validation figure during the team stage (training/validation.py): called with (update, figures)
    # every validate_every updates, on validation_episodes episodes per validation market (the tuner's
    # pruner); None: never computed, and the run is exactly what it is without it
    on_validation: Callable[[int, ValidationFigures], None] | None = None
    validate_every: int = 1
    validation_episodes: int = 4

    def validate(self, use_risk: bool) -> ValidationFigures:
        return validation_figures(
            self.models,
            self.validation,
            self.cfg.episode_bars,
            self.validation_episodes,
            self.cfg.risk.drawdown_weight,
            seed=self.cfg.seed,
            env_config=self.env,
            use_risk=use_risk,
        )

    def checkpoint(self, stage: str) -> None:
        self.step += 1
        if self.dist.is_main:
            self.state.update(config=self.cfg.key(), step=self.step, stage=stage)
            save_checkpoint(self.out / "checkpoints", self.step, self.state)

    def bar(self, total: int, done: int, desc: str, unit: str) -> tqdm:
        return tqdm(total=total, initial=done, desc=desc, unit=unit, disable=not self.progress)


def _epochs(
    ctx: StageContext, name: str, trainer: _EpochTrainer | RegimeTrainer, epochs: int, per_epoch: int
) -> None:
    """Run a supervised trainer's remaining epochs, logging and checkpointing after each."""
    with ctx.bar(epochs * per_epoch, trainer.epochs_done * per_epoch, name, "batch") as bar:
        while trainer.epochs_done < epochs:
            if isinstance(trainer, RegimeTrainer):
                m = trainer.epoch(ctx.cfg.regime.max_samples, progress=bar.update)
            else:
                m = trainer.epoch(progress=bar.update)
            m = {k: ctx.dist.mean(v) for k, v in m.items()}
            ctx.state[name] = trainer.state_dict()
            ctx.log(
                {"stage": name, "epoch": trainer.epochs_done, **m, "wall_s": time.perf_counter() - ctx.start}
            )
            ctx.checkpoint(name)
            bar.set_postfix({k: f"{v:.3f}" for k, v in list(m.items())[:2]})


# -------------------------------------------------------------------------------------------------- regime


def reference_generator(cfg: TrainConfig) -> SyntheticMarketConfig | None:
    """The generator of the training markets when it is the reference one (so the ceiling filter, which
    knows its laws, can teach the regime agent): the synthetic train seeds, or a dataset written from the
    reference generator (``marlops data synth``, the pipelines' build-features step); None otherwise."""
    if not cfg.dataset:
        return SyntheticMarketConfig()
    meta = json.loads((Path(cfg.dataset) / "meta.json").read_text())
    reference = json.loads(json.dumps(dataclasses.asdict(SyntheticMarketConfig())))
    if meta.get("source") == "synthetic" and meta.get("synthetic_config", reference) == reference:
        return SyntheticMarketConfig()
    return None


def run_regime(ctx: StageContext) -> None:
    """The regime agent on ``ctx.targets`` (training/regime_targets.py): the markets' labels (the ceiling
    filter teaching where the generator is the reference one), HMM labels, or — ``transfer`` — the
    synthetic reference market; with ``transfer`` from ``--init-from`` the agent is kept as it is."""
    cfg, regime_net = ctx.cfg.regime, ctx.models.regime
    t = ctx.targets
    if t is not None and t.markets is None:
        ctx.log({"stage": "regime", "event": "frozen", "reason": t.record.get("regime_agent", t.kind)})
        regime_net.eval().requires_grad_(False)
        return
    markets = ctx.markets if t is None else t.markets
    assert markets is not None
    known = reference_generator(ctx.cfg) if t is None else t.teacher
    teacher = known if cfg.distill > 0 else None
    try:
        samples = concat_samples([regime_samples(d, teacher) for d in markets])
    except ValueError as e:  # bars off the reference grid: the filter cannot teach here, the labels still do
        if teacher is None:
            raise
        ctx.log({"stage": "regime", "event": "no_teacher", "reason": str(e)})
        samples = concat_samples([regime_samples(d) for d in markets])
    batch = cfg.batch_size
    n = min(len(samples), cfg.max_samples or len(samples))
    per_epoch = max(1, n // ctx.dist.world_size // batch)
    trainer = RegimeTrainer(
        regime_net,
        samples,
        ctx.dist,
        seed=ctx.cfg.seed + ctx.dist.rank,
        total_steps=per_epoch * cfg.epochs,
        fresh=not ctx.cfg.init_from,
        distill=cfg.distill,
        hp=cfg,
    )
    if "regime" in ctx.state:
        trainer.load_state_dict(ctx.state["regime"])
    _epochs(ctx, "regime", trainer, cfg.epochs, per_epoch)
    regime_net.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------- structure


def run_structure(ctx: StageContext) -> None:
    m, cfg = ctx.models, ctx.cfg.structure
    markets = [(d, m.regime_encoding(d).message) for d in ctx.markets]
    trainer = StructurePretrainer(
        m.structure, structure_samples(markets, cfg), cfg, ctx.dist, seed=ctx.cfg.seed + 1
    )
    if "structure" in ctx.state:
        trainer.load_state_dict(ctx.state["structure"])
    _epochs(ctx, "structure", trainer, cfg.epochs, trainer.batches_per_epoch())
    m.structure.eval()
    m.forget_encodings("structure")


# ------------------------------------------------------------------------------------------------ tactical


def run_tactical(ctx: StageContext) -> None:
    m, cfg = ctx.models, ctx.cfg.tactical
    markets = [(d, m.regime_encoding(d).message, m.structure_encoding(d)) for d in ctx.markets]
    trainer = TacticalPretrainer(
        m.tactical, tactical_samples(markets, m.structure), cfg, ctx.dist, seed=ctx.cfg.seed + 2
    )
    if "tactical" in ctx.state:
        trainer.load_state_dict(ctx.state["tactical"])
    _epochs(ctx, "tactical", trainer, cfg.epochs, trainer.batches_per_epoch())
    m.tactical.eval()
    m.forget_encodings("tactical")


# ---------------------------------------------------------------------------------------------------- team


@dataclass
class TeamStage:
    """The team stage's trainer (kept by the orchestrator for the summary)."""

    mappo: MAPPO
    critic: TeamCritic
    last: dict[str, float] = field(default_factory=dict)


def make_team_stage(ctx: StageContext) -> TeamStage:
    cfg, m = ctx.cfg.team, ctx.models
    for actor in (m.structure_actor, m.tactical_actor):
        actor.anchor(cfg.kl_coef)  # the pretrained policy, before any update (a resumed run loads over it)
    critic = TeamCritic()
    mappo = MAPPO(
        [m.structure_actor, m.tactical_actor], critic, cfg.mappo(seed=ctx.cfg.seed + ctx.dist.rank), ctx.dist
    )
    if "mappo" in ctx.state:
        mappo.load_state_dict(ctx.state["mappo"])
    return TeamStage(mappo, critic)


def _env(ctx: StageContext, data: MarketData, n_envs: int, seed: int, **config: Any) -> VecMarketEnv:
    env_config = dataclasses.replace(ctx.env, episode_bars=ctx.cfg.episode_bars, **config)
    return VecMarketEnv(data, n_envs, env_config, seed=seed)


def run_team(
    ctx: StageContext, stage: TeamStage, on_update: Callable[[dict[str, float]], None] | None
) -> None:
    cfg, mappo = ctx.cfg.team, stage.mappo
    mine = _shard(ctx.markets, ctx.dist)
    per_market = max(1, cfg.n_envs // len(mine))  # every rollout holds every market of this worker
    env = MarketsTeamEnv(
        [
            TeamVecEnv(_env(ctx, d, per_market, ctx.cfg.seed + 100 * ctx.dist.rank + i), ctx.models)
            for i, d in enumerate(mine)
        ]
    )
    mappo.reset(env, ctx.cfg.seed + 17 * ctx.dist.rank + mappo.updates_done)
    with ctx.bar(cfg.updates, mappo.updates_done, "team", "upd") as bar:
        while mappo.updates_done < cfg.updates:
            log = _EpisodeLog()
            buf = mappo.collect(env, cfg.rollout_steps, log)
            metrics = mappo.update(buf)
            mappo.updates_done += 1
            metrics.update(
                update=mappo.updates_done,
                reward_mean=float(buf.rewards[..., 0].mean()),
                episode_return=float(np.mean(log.returns)) if log.returns else float("nan"),
                env_steps=mappo.updates_done * cfg.rollout_steps * env.n_envs * ctx.dist.world_size,
                wall_s=time.perf_counter() - ctx.start,
            )
            metrics = {k: ctx.dist.mean(float(v)) for k, v in metrics.items()}
            stage.last = metrics
            ctx.log({"stage": "team", **metrics})
            if mappo.updates_done % ctx.cfg.checkpoint_every == 0 or mappo.updates_done == cfg.updates:
                ctx.state["mappo"] = mappo.state_dict()
                ctx.checkpoint("team")
            if on_update is not None:
                on_update(metrics)
            if ctx.on_validation is not None and mappo.updates_done % ctx.validate_every == 0:
                ctx.on_validation(mappo.updates_done, ctx.validate(use_risk=False))
            bar.update(1)
            bar.set_postfix(r=f"{metrics['reward_mean']:.4f}", ev=f"{metrics['explained_variance']:.2f}")
    for net in (ctx.models.structure, ctx.models.tactical):
        net.eval()
    ctx.models.outputs.clear()  # the heads moved: what the team says must be computed anew


def _base_bar_ns(data: MarketData) -> int:
    """The base timeframe of a market (the median spacing of its bar ends)."""
    return int(np.median(np.diff(data.end_ns[: min(len(data), 1000)]))) if len(data) > 1 else 300 * 10**9


def _shard(markets: Sequence[MarketData], dist: distributed.Dist) -> list[MarketData]:
    """The markets worker ``rank`` simulates: every ``world_size``-th from its rank (all of them if fewer)."""
    mine = list(markets[dist.rank :: dist.world_size])
    return mine or [markets[dist.rank % len(markets)]]


# ---------------------------------------------------------------------------------------------------- risk


def run_risk(ctx: StageContext) -> dict[str, float]:
    """The risk agent's DQN against the frozen, greedy team (see :mod:`.risk`); ``steps`` env steps of
    ``n_envs`` environments per market in turn, ``1 / train_every`` gradient steps per env step."""
    cfg, m = ctx.cfg.risk, ctx.models
    if cfg.steps == 0:  # nothing to learn (a warm start may keep its risk agent as it is)
        return {}
    markets = _shard(ctx.markets, ctx.dist)
    risk = RiskController(
        m.risk,
        cfg.dqn(),
        markets,
        seed=ctx.cfg.seed + ctx.dist.rank,
        grad_hook=ctx.dist.all_reduce_grads,
    )
    ctx.dist.broadcast_module(m.risk)
    risk.learner.sync_target()
    if "risk" in ctx.state:
        risk.learner.load_state_dict(ctx.state["risk"]["learner"])
        risk.env_steps = int(ctx.state["risk"]["env_steps"])
    done_steps = risk.env_steps // cfg.n_envs
    last: dict[str, float] = {}
    team = TrainedTeam(m, use_risk=False)
    with ctx.bar(cfg.steps, done_steps, "risk", "step") as bar:
        while done_steps < cfg.steps:
            k = (done_steps // cfg.steps_per_market) % len(markets)
            data = markets[k]
            env = _env(
                ctx,
                data,
                cfg.n_envs,
                ctx.cfg.seed + 1000 * ctx.dist.rank + 101 * k + done_steps,
                drawdown_penalty=cfg.drawdown_penalty,
            )
            obs = env.reset()
            team.reset(cfg.n_envs)
            team.prepare(data)
            risk.reset_pending()
            for _ in range(min(cfg.steps_per_market, cfg.steps - done_steps)):
                a = team.act(obs)
                where = np.stack([np.full(cfg.n_envs, k), obs["bar_index"]], 1)
                records = np.concatenate([obs["portfolio"], proposal(a["tactical"], a["bias"], a["size"])], 1)
                a["risk"] = risk.act(where, records)
                obs, reward, done, _ = env.step(a)
                risk.observe(where, records, a["risk"], reward, done)
                team.first |= done  # a finished episode restarts: the slow agents speak at its first step
                done_steps += 1
                if done_steps % risk.config.train_every == 0:
                    last = risk.train(1) or last
                bar.update(1)
                if done_steps % cfg.checkpoint_steps == 0 or done_steps == cfg.steps:
                    ctx.state["risk"] = {"learner": risk.learner.state_dict(), "env_steps": risk.env_steps}
                    ctx.log(
                        {
                            "stage": "risk",
                            "env_steps": risk.env_steps,
                            "epsilon": risk.config.epsilon(risk.env_steps),
                            **last,
                            "wall_s": time.perf_counter() - ctx.start,
                        }
                    )
                    ctx.checkpoint("risk")
    if "allow_margin" not in ctx.state["risk"]:  # once: a rerun of a finished run has no replay to measure
        # every worker must choose the same margin: one noise figure (their replays differ), the same
        # validation episodes, and weights already in sync
        noise = ctx.dist.mean(no_op_noise(risk.learner, risk.replay, seed=ctx.cfg.seed))
        choice = choose_allow_margin(
            m,
            ctx.validation,
            noise,
            round(cfg.calibration_days * 86_400e9 / _base_bar_ns(ctx.validation[0])),
            episodes_per_market=cfg.calibration_episodes,
            drawdown_weight=cfg.drawdown_weight,
            seed=ctx.cfg.seed,
            env_config=ctx.env,
        )
        add_allow_margin(m, choice.margin)
        ctx.state["risk"] = {
            "learner": risk.learner.state_dict(),
            "env_steps": risk.env_steps,
            "allow_margin": choice.margin,
            "noise": noise,
        }
        scores = {str(k): v for k, v in choice.scores.items()}
        ctx.log(
            {
                "stage": "risk",
                "event": "calibrated",
                "noise": noise,
                "allow_margin": choice.margin,
                "scores": scores,
            }
        )
        ctx.checkpoint("risk")
    last["allow_margin"] = ctx.state["risk"]["allow_margin"]
    m.risk.eval()
    return last
