"""Every setting of a training run, one section per stage, and the named budgets.

A run's configuration is compared field by field when it resumes (``TrainConfig.key``): a checkpoint is
only continued by the configuration that wrote it. Budgets are sets of dotted overrides
(``"regime.epochs"``) over the defaults; :func:`budget_config` applies one and then the caller's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from marlops.training.pretrain import PretrainConfig
from marlops.training.regime_targets import check_targets


@dataclass(frozen=True)
class RegimeStageConfig:
    """Stage 1: the regime agent on the true regimes (class-weighted cross-entropy + forward volatility)."""

    epochs: int = 4
    max_samples: int | None = 12_000  # per epoch (None: all)
    batch_size: int | None = None  # None: the spec's
    lr: float | None = 1e-3  # None: the spec's; a short CPU run needs the larger step (docs/training.md)
    # weight of the ceiling filter's soft targets against the hard labels (synthetic training markets only)
    distill: float = 1.0
    # what the regime agent learns from (training/regime_targets.py): auto | labels | hmm | transfer
    targets: str = "auto"
    labels: str | None = None  # a ts,regime file (CSV/Parquet) for 'labels' on a dataset without its own


@dataclass(frozen=True)
class TeamStageConfig:
    """Stage 4: MAPPO fine-tuning of structure's and tactical's communication and heads over their frozen
    encoders, with the centralized critic (the risk agent learns on the same rollouts: RiskStageConfig)."""

    updates: int = 60
    n_envs: int = 64
    rollout_steps: int = 128
    ppo_epochs: int = 4
    n_minibatches: int = 4
    lr: float = 1e-4
    ent_coef: float = 0.003
    gamma: float = 0.99
    clip_coef: float = 0.1  # small steps: the pretrained policy is the starting point, not noise
    kl_coef: float = 0.5  # KL(pretrained ‖ policy) anchor in the actors' loss (0: none)


@dataclass(frozen=True)
class RiskStageConfig:
    """Stage 5: the risk agent's double DQN on prioritized replay against the frozen team (the rest of its
    settings: models/risk.yaml)."""

    steps: int = 4000  # vectorized env steps (each moves every one of the n_envs environments)
    n_envs: int = 32
    steps_per_market: int = 1000  # markets take turns every this many steps
    drawdown_penalty: float = 0.5  # the environment's drawdown weight in the risk agent's reward
    drawdown_weight: float = 2.0  # calibration: utility = return − this × max drawdown (risk_calibration.py)
    calibration_days: float = 10.0  # calibration episodes: this long (a few days say little about drawdown)
    calibration_episodes: int = 8  # per validation market
    learning_starts: int = 4096  # transitions
    buffer_size: int = 200_000
    batch_size: int = 128
    epsilon_decay_steps: int = 60_000  # transitions
    target_update: int = 500  # gradient steps
    train_every: int = 1  # vectorized env steps per gradient step
    checkpoint_steps: int = 500


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; a resumed run must have the same values (``out`` aside)."""

    seed: int = 0
    train_seeds: tuple[int, ...] = (1001, 1002)  # synthetic markets; every worker trains on all of them
    validation_seed: int = 3001  # a market no stage learns from: the figures printed and the risk calibration
    days: int = 365  # per training market
    # a dataset folder (``MarketDataset``) to train on instead of the synthetic train seeds: the pipeline's
    # build-features step hands over the data it wrote the Feast sources from
    dataset: str | None = None
    # read the dataset's feature rows from this Feast store's offline store instead of computing them from
    # its bars (docs/features.md, "Training through Feast"): the same matrices, from the definitions the
    # online store serves; ``instrument`` is the dataset's id there (None: its lineage.json's, else SYNTH)
    feast_dir: str | None = None
    instrument: str | None = None
    # a dataset run trains on the first (1 − holdout_fraction) of its bars only: the end is what
    # `marlops evaluate --data … --folds N` tests on (its test fraction, 0.5); 0 trains on all of it
    holdout_fraction: float = 0.5
    # the last this fraction of the trained part is the dataset run's validation market (no stage learns
    # from it: the figures printed and the risk agent's calibration)
    validation_fraction: float = 0.2
    # warm start: the agents' weights from a champion (``models:/marlops-{agent}@champion``) or a run folder
    init_from: str | None = None
    episode_bars: int = 576
    regime: RegimeStageConfig = field(default_factory=RegimeStageConfig)
    structure: PretrainConfig = field(default_factory=lambda: PretrainConfig(epochs=2))
    tactical: PretrainConfig = field(default_factory=lambda: PretrainConfig(epochs=1, max_samples=60_000))
    team: TeamStageConfig = field(default_factory=TeamStageConfig)
    risk: RiskStageConfig = field(default_factory=RiskStageConfig)
    checkpoint_every: int = 10  # team updates (and after every pretraining epoch)
    # torch intra-op threads per worker (None: torch's default). One on small CPUs: with other work on a
    # 2-core machine, two threads' OpenMP spin-waits made an update ~5× slower (227 s vs 41 s measured).
    threads: int | None = 1

    def __post_init__(self) -> None:
        check_targets(self.regime.targets)
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction: must be in [0, 1), got {self.holdout_fraction!r}")
        if self.feast_dir is not None and self.dataset is None:
            raise ValueError("feast_dir: training through Feast reads a dataset's rows; give a dataset too")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction: must be in (0, 1), got {self.validation_fraction!r}")

    def key(self) -> dict[str, Any]:
        key = dataclasses.asdict(self)
        if self.feast_dir is None:  # runs that read no Feast store keep the keys they had before it existed
            del key["feast_dir"], key["instrument"]
        return key


# Budgets: "ci" runs in seconds (tests), "small" in ≤ 5 min (the main job), "default" in ≤ 30 min on a 2-core
# CPU, "gpu" is the larger run for GPU nodes. Measured outcomes: docs/training.md.
BUDGETS: dict[str, dict[str, Any]] = {
    "ci": {
        "train_seeds": (11,),
        "validation_seed": 12,
        "days": 10,
        "episode_bars": 192,
        "regime.epochs": 1,
        "regime.max_samples": 64,
        "regime.batch_size": 32,
        "structure.epochs": 1,
        "structure.max_samples": 64,
        "structure.batch_size": 32,
        "tactical.epochs": 1,
        "tactical.max_samples": 64,
        "tactical.batch_size": 32,
        "team.updates": 3,
        "team.n_envs": 4,
        "team.rollout_steps": 16,
        "team.ppo_epochs": 1,
        "team.n_minibatches": 1,
        "risk.steps": 24,
        "risk.n_envs": 4,
        "risk.steps_per_market": 24,
        "risk.learning_starts": 32,
        "risk.buffer_size": 2048,
        "risk.batch_size": 16,
        "risk.epsilon_decay_steps": 64,
        "risk.target_update": 10,
        "risk.checkpoint_steps": 12,
        "risk.calibration_days": 0.5,
        "risk.calibration_episodes": 2,
        "checkpoint_every": 1,
    },
    "small": {
        "days": 90,
        "train_seeds": (1001,),
        "regime.epochs": 3,
        "regime.max_samples": None,
        # ~4,000 decisions: smaller batches and more passes, or structure takes too few steps to leave flat
        "structure.epochs": 6,
        "structure.batch_size": 64,
        "tactical.max_samples": 15_000,
        "team.updates": 10,
        "team.n_envs": 32,
        "risk.steps": 1000,
        "risk.learning_starts": 2048,
        "risk.epsilon_decay_steps": 16_000,
        "risk.calibration_episodes": 4,
    },
    "default": {},
    "gpu": {
        "threads": None,
        "days": 730,
        "train_seeds": (1001, 1002, 1003, 1004),
        "regime.epochs": 20,
        "regime.batch_size": 512,
        "structure.epochs": 10,
        "tactical.epochs": 3,
        "tactical.max_samples": None,
        "team.updates": 1000,
        "team.n_envs": 256,
        "team.rollout_steps": 256,
        "team.n_minibatches": 8,
        "risk.steps": 40_000,
        "risk.n_envs": 128,
        "risk.learning_starts": 20_000,
        "risk.buffer_size": 1_000_000,
        "risk.batch_size": 256,
        "risk.epsilon_decay_steps": 1_000_000,
        "risk.target_update": 2000,
        "checkpoint_every": 20,
    },
}

# Flat names the CLI and the pipelines pass, and where they live.
ALIASES = {"updates": "team.updates", "regime_targets": "regime.targets", "labels": "regime.labels"}


def with_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``cfg`` with dotted (``"team.updates"``) or top-level overrides; unknown names are an error."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for name, value in overrides.items():
        name = ALIASES.get(name, name)
        section, _, leaf = name.partition(".")
        if not hasattr(cfg, section):
            raise ValueError(f"{name}: not a training setting")
        if leaf:
            sub = getattr(cfg, section)
            if not dataclasses.is_dataclass(sub) or leaf not in {f.name for f in dataclasses.fields(sub)}:
                raise ValueError(f"{name}: not a training setting")
            nested.setdefault(section, {})[leaf] = value
        else:
            top[section] = value
    for section, values in nested.items():
        top[section] = dataclasses.replace(getattr(cfg, section), **values)
    return dataclasses.replace(cfg, **top)


def budget_config(budget: str, **overrides: Any) -> TrainConfig:
    """The named budget with ``overrides`` (``None`` values are ignored: the CLI passes unset options so)."""
    if budget not in BUDGETS:
        raise ValueError(f"budget: unknown {budget!r}; expected one of {sorted(BUDGETS)}")
    cfg = with_overrides(TrainConfig(), BUDGETS[budget])
    return with_overrides(cfg, {k: v for k, v in overrides.items() if v is not None})
