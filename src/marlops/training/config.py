"""Every setting of a training run, one section per stage, and the named budgets: one typed config
(:class:`TrainConfig`) whose values come from YAML only.

- each agent's own hyperparameters: the ``training:`` section of ``models/<agent>.yaml`` (validated by
  :mod:`marlops.agents.specs`), read into the ``regime`` / ``structure`` / ``tactical`` / ``risk`` sections;
- team-level settings (markets, budget sizes, the team stage's MAPPO, the risk stage's environment, reward
  and calibration): ``models/team.yaml``, the YAML twin of this module's dataclasses;
- budgets (``ci``, ``small``, ``default``, ``gpu``): dotted overlays (``"regime.epochs"``) in team.yaml's
  ``budgets:``, applied by :func:`budget_config` over :func:`default_config`, then the caller's overrides.

No dataclass here carries a hyperparameter default: a key missing from the YAML, unknown to the dataclass or
set in two places is an error naming it. ``$MARLOPS_MODELS_DIR`` switches the whole folder.

A run's configuration is compared field by field when it resumes (``TrainConfig.key``): a checkpoint is
only continued by the configuration that wrote it; ``summary.json`` and the MLflow run keep it whole.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from marlops.agents.specs import load_specs, models_dir, training_section
from marlops.training.dqn import DQNConfig
from marlops.training.mappo import MAPPOConfig
from marlops.training.pretrain import PretrainConfig, StructurePretrainConfig
from marlops.training.regime_targets import check_targets

TEAM_FILE = "team.yaml"


@dataclass(frozen=True, kw_only=True)
class RegimeStageConfig:
    """Stage 1: the regime agent on its targets (class-weighted cross-entropy + forward volatility).
    Hyperparameters: models/regime.yaml ``training``; ``targets``: team.yaml."""

    epochs: int
    max_samples: int | None  # per epoch (None: all)
    batch_size: int
    lr: float
    weight_decay: float
    label_smoothing: float
    volatility_loss_weight: float
    max_grad_norm: float
    warmup_steps: int
    distill: float  # weight of the ceiling filter's soft targets against the hard labels
    # what the regime agent learns from (training/regime_targets.py): auto | labels | hmm | transfer
    targets: str
    labels: str | None = None  # an input, not a hyperparameter: a ts,regime file for 'labels'


@dataclass(frozen=True, kw_only=True)
class TeamStageConfig:
    """Stage 4: MAPPO fine-tuning of structure's and tactical's communication and heads over their frozen
    encoders, with the centralized critic: one joint update, so its settings are team-level (team.yaml);
    :meth:`mappo` sets every :class:`MAPPOConfig` hyperparameter from them."""

    updates: int
    n_envs: int
    rollout_steps: int
    ppo_epochs: int
    n_minibatches: int
    lr: float
    critic_lr_scale: float
    anneal_lr: bool
    ent_coef: float
    gamma: float
    gae_lambda: float
    clip_coef: float
    value_clip: float | None
    vf_coef: float
    max_grad_norm: float
    norm_adv: bool
    value_norm: bool
    value_norm_decay: float | None
    target_kl: float | None
    kl_coef: float  # KL(pretrained ‖ policy) anchor in the actors' loss (0: none)

    def mappo(self, seed: int) -> MAPPOConfig:
        return MAPPOConfig(
            total_steps=self.updates * self.rollout_steps * self.n_envs,
            rollout_steps=self.rollout_steps,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            lr_actor=self.lr,
            lr_critic=self.critic_lr_scale * self.lr,
            anneal_lr=self.anneal_lr,
            update_epochs=self.ppo_epochs,
            n_minibatches=self.n_minibatches,
            clip_coef=self.clip_coef,
            value_clip=self.value_clip,
            vf_coef=self.vf_coef,
            ent_coef=self.ent_coef,
            max_grad_norm=self.max_grad_norm,
            norm_adv=self.norm_adv,
            value_norm=self.value_norm,
            value_norm_decay=self.value_norm_decay,
            target_kl=self.target_kl,
            seed=seed,
            progress=False,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskStageConfig(DQNConfig):
    """Stage 5: the risk agent's double DQN on prioritized replay against the frozen team. The DQN's
    hyperparameters are :class:`DQNConfig`'s fields, from models/risk.yaml ``training`` (:meth:`dqn`); how
    the stage drives it (steps, environments, reward, calibration) from team.yaml."""

    steps: int  # vectorized env steps (each moves every one of the n_envs environments)
    n_envs: int
    steps_per_market: int  # markets take turns every this many steps
    drawdown_penalty: float  # the environment's drawdown weight in the risk agent's reward
    drawdown_weight: float  # calibration: utility = return − this × max drawdown (risk_calibration.py)
    calibration_days: float
    calibration_episodes: int  # per validation market
    checkpoint_steps: int

    def dqn(self) -> DQNConfig:
        return DQNConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DQNConfig)})


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a run depends on; a resumed run must have the same values (``out`` aside). Built by
    :func:`default_config` / :func:`budget_config` from models/*.yaml."""

    seed: int
    train_seeds: tuple[int, ...]  # synthetic markets; every worker trains on all of them
    validation_seed: int  # a market no stage learns from: the figures printed, the risk calibration, tuning
    days: int  # per training market
    episode_bars: int
    # a dataset run trains on the first (1 − holdout_fraction) of its bars only: the end is what
    # `marlops evaluate --data … --folds N` tests on (its test fraction, 0.5); 0 trains on all of it
    holdout_fraction: float
    # the last this fraction of the trained part is the dataset run's validation market (no stage learns
    # from it: the figures printed and the risk agent's calibration)
    validation_fraction: float
    checkpoint_every: int  # team updates (and after every pretraining epoch)
    # torch intra-op threads per worker (None: torch's default). One on small CPUs: with other work on a
    # 2-core machine, two threads' OpenMP spin-waits made an update ~5× slower (227 s vs 41 s measured).
    threads: int | None
    regime: RegimeStageConfig
    structure: StructurePretrainConfig
    tactical: PretrainConfig
    team: TeamStageConfig
    risk: RiskStageConfig
    # inputs, not hyperparameters:
    # a dataset folder (``MarketDataset``) to train on instead of the synthetic train seeds: the pipeline's
    # build-features step hands over the data it wrote the Feast sources from
    dataset: str | None = None
    # read the dataset's feature rows from this Feast store's offline store instead of computing them from
    # its bars (docs/features.md, "Training through Feast"): the same matrices, from the definitions the
    # online store serves; ``instrument`` is the dataset's id there (None: its lineage.json's, else SYNTH)
    feast_dir: str | None = None
    instrument: str | None = None
    # warm start: the agents' weights from a champion (``models:/marlops-{agent}@champion``) or a run folder
    init_from: str | None = None

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
        if self.risk.target_tau is None:  # DQNConfig's Polyak option, unset: the keys runs had before
            del key["risk"]["target_tau"]
        return key


# ------------------------------------------------------------------------------------ from the YAML files


def _build(cls: type, where: str, *sources: tuple[str, dict[str, Any]]) -> Any:
    """``cls`` from the union of ``sources`` ((origin, mapping) pairs): every field without a default must
    be given, none twice, no unknown key."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for src, data in sources:
        for k, v in data.items():
            if k in values:
                raise ValueError(f"{where}.{k}: set in both {origin[k]} and {src}; one place only")
            values[k], origin[k] = (tuple(v) if isinstance(v, list) else v), src
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(values.keys() - fields.keys())
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown} in {sorted(set(origin.values()))}")
    missing = sorted(
        n
        for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ValueError(f"{where}: missing setting(s) {missing} (models/{TEAM_FILE} or the agent's spec)")
    return cls(**values)


def team_file(directory: str | Path | None = None) -> Path:
    return (Path(directory) if directory is not None else models_dir()) / TEAM_FILE


def load_team_yaml(directory: str | Path | None = None) -> dict[str, Any]:
    path = team_file(directory)
    if not path.is_file():
        raise FileNotFoundError(f"team training settings not found: {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def spec_training(directory: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Each agent's ``training`` section as plain data (``objective`` aside): what the trainer reads."""
    specs = load_specs(directory)
    out = {}
    for name, spec in specs.items():
        section = training_section(spec).model_dump()
        section.pop("objective")
        out[name] = section
    return out


def default_config(directory: str | Path | None = None) -> TrainConfig:
    """The configuration of models/ (or ``directory``): team.yaml with every agent's spec ``training``."""
    team = load_team_yaml(directory)
    team.pop("budgets", None)
    agents = spec_training(directory)
    src = str(team_file(directory))
    sections = {
        "regime": RegimeStageConfig,
        "structure": StructurePretrainConfig,
        "tactical": PretrainConfig,
        "risk": RiskStageConfig,
    }
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        built[name] = _build(
            cls, name, (f"models/{name}.yaml training", agents[name]), (src, team.pop(name, None) or {})
        )
    built["team"] = _build(TeamStageConfig, "team", (src, team.pop("team", None) or {}))
    return _build(TrainConfig, "config", (src, team), ("the agents' specs", built))


def config_sources(directory: str | Path | None = None) -> dict[str, str]:
    """Where a run's configuration came from: the models folder and the sha256 (12 hex) of each file read
    (summary.json and the MLflow run keep it beside the whole configuration)."""
    import hashlib

    from marlops.team import AGENTS

    root = Path(directory) if directory is not None else models_dir()
    out = {"models_dir": str(root.resolve())}
    for name in (*AGENTS, TEAM_FILE.removesuffix(".yaml")):
        out[f"{name}.yaml"] = hashlib.sha256((root / f"{name}.yaml").read_bytes()).hexdigest()[:12]
    return out


def budgets(directory: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The named budgets: dotted overlays of :func:`default_config` (team.yaml ``budgets``)."""
    found = load_team_yaml(directory).get("budgets") or {}
    return {name: dict(overlay or {}) for name, overlay in found.items()}


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
            nested.setdefault(section, {})[leaf] = _typed(name, getattr(sub, leaf), value)
        else:
            top[section] = _typed(name, getattr(cfg, section), value)
    for section, values in nested.items():
        top[section] = dataclasses.replace(getattr(cfg, section), **values)
    return dataclasses.replace(cfg, **top)


def _typed(name: str, current: Any, value: Any) -> Any:
    """``value`` for a setting now holding ``current``: the same kind (an int is taken for a float, a list
    becomes a tuple), finite; ValueError names the setting. ``None`` (unset) is always taken, and anything
    replaces ``None``."""
    if isinstance(value, list):
        value = tuple(value)
    if value is None or current is None or dataclasses.is_dataclass(current):
        return value
    kind = type(current)
    if isinstance(current, bool) or isinstance(value, bool):
        ok = isinstance(current, bool) and isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
        if ok and not math.isfinite(value):
            raise ValueError(f"{name}: {value} is not a finite number")
    elif isinstance(current, int):
        ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        value = int(value) if ok else value
    elif isinstance(current, (tuple, list)):
        ok = isinstance(value, (tuple, list))
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ValueError(f"{name}: expected {kind.__name__}, got {value!r}")
    return value


def budget_config(budget: str, directory: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """The named budget with ``overrides`` (``None`` values are ignored: the CLI passes unset options so)."""
    named = budgets(directory)
    if budget not in named:
        raise ValueError(f"budget: unknown {budget!r}; expected one of {sorted(named)}")
    cfg = with_overrides(default_config(directory), named[budget])
    return with_overrides(cfg, {k: v for k, v in overrides.items() if v is not None})


# ------------------------------------------------------------------ settings given on a command line


def format_setting(value: Any) -> str:
    """A value as ``--set NAME=VALUE`` takes it back (a YAML scalar; floats in full precision)."""
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def parse_settings(items: Iterable[str]) -> dict[str, Any]:
    """``["team.lr=1e-4", "team.anneal_lr=true"]`` → ``{name: value}`` (values read as YAML scalars).
    Whether a name is a setting is :func:`with_overrides`' to say."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected NAME=VALUE")
        value = yaml.safe_load(raw)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        out[key.strip()] = value
    return out


def settings_argv(values: Mapping[str, Any]) -> list[str]:
    """``{"team.lr": 1e-4}`` → ``["--set", "team.lr=0.0001"]`` (what :func:`parse_settings` reads back)."""
    return [a for k, v in values.items() for a in ("--set", f"{k}={format_setting(v)}")]


def parse_hyperparameters(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A pipeline's ``hyperparameters`` parameter: a JSON object of dotted settings (``marlops tune``'s
    best values, best.yaml ``overrides``), empty or ``{}`` for none. ValueError names what is wrong; the
    names themselves are checked by :func:`with_overrides`."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return {}
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"hyperparameters: not JSON ({e.msg} at char {e.pos})") from None
    else:
        value = dict(text)
    if not isinstance(value, dict):
        raise ValueError(f"hyperparameters: expected a JSON object of settings, got {type(value).__name__}")
    for k, v in value.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"hyperparameters: {k}: {v} is not a finite number")
        if isinstance(v, (dict, list)) or v is None:
            raise ValueError(f"hyperparameters: {k}: expected a number, a boolean or a string")
    return value
