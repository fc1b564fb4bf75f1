"""Train the whole team: the entry point behind ``marlops train`` (and the pipelines' train step).

A short orchestrator over :mod:`.stages` — regime → structure → tactical → team → risk — with one checkpoint
folder:
a rerun with the same ``out`` resumes inside the stage it stopped in; ``init_from`` starts from a champion's
(or any run's) weights instead of fresh ones, so retraining adds to what was learned.

Runs single-process or data-parallel under torchrun (:mod:`.distributed`): every worker reads every training
market in the supervised stages (its shard of each epoch) and simulates its share of them in the team stage;
gradients are averaged; rank 0 writes checkpoints, metrics and the final agents.

Outputs in ``out``: ``checkpoints/``, ``metrics.jsonl`` (one line per epoch/update), ``agents/`` (the four
agents in the serving format, :meth:`marlops.agents.runtime.AgentSet.save`), ``critic.pt`` and
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

from marlops.agents.export import net_version
from marlops.agents.networks import build_network
from marlops.agents.runtime import AgentSet
from marlops.agents.specs import load_specs
from marlops.agents.types import REGIME_NAMES
from marlops.env.market_env import (
    EnvConfig,
    MarketData,
    env_config_for_dataset,
    market_data_from_dataset,
    synthetic_market_data,
)
from marlops.env.market_slice import slice_market
from marlops.market.dataset import MarketDataset
from marlops.market.synthetic import SyntheticMarketConfig
from marlops.training import distributed
from marlops.training.checkpoint import load_latest
from marlops.training.config import (  # noqa: F401 (re-exported)
    TrainConfig,
    budget_config,
    budgets,
    config_sources,
)
from marlops.training.holdout import DatasetSplit, dataset_split, split_record
from marlops.training.mappo import seed_everything
from marlops.training.regime import balanced_accuracy, predict, regime_samples
from marlops.training.regime_targets import (
    RegimeTargets,
    has_labels,
    hmm_labeller,
    hmm_labels,
    labels_onto_bars,
    read_regime_labels,
    resolve_targets,
)
from marlops.training.stages import (
    StageContext,
    make_team_stage,
    reference_generator,
    run_regime,
    run_risk,
    run_structure,
    run_tactical,
    run_team,
)
from marlops.training.team import TeamCritic, TeamModels, TrainedTeam
from marlops.training.validation import ValidationFigures


@dataclass
class TrainSummary:
    """What a finished run reports (``summary.json`` keeps it and more): :func:`train_team`'s result, and the
    pipeline's train step's (:func:`marlops.pipeline.steps.train`).

    ``out``: the folder with the run's files (agents, critic, summary). ``run_dir``: the run folder (its
    checkpoints) behind the pipeline step's ``out`` (the same folder when it trained in place); None from
    :func:`train_team`, whose ``out`` is the run folder."""

    out: Path
    resumed_from: int | None
    regime_val_balanced_accuracy: float  # NaN when the run had no regime validation
    updates: int
    env_steps: int
    wall_s: float
    final: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any], out: Path, run_dir: Path | None = None) -> TrainSummary:
        """From a ``summary.json`` (as :func:`train_team` writes it)."""
        acc = record.get("regime_val_balanced_accuracy")
        return cls(
            out,
            record.get("resumed_from"),
            float("nan") if acc is None else float(acc),
            int(record.get("updates", 0)),
            int(record.get("env_steps", 0)),
            float(record.get("wall_s", 0.0)),
            dict(record.get("final") or {}),
            run_dir,
        )


def _fresh_models(seed: int) -> TeamModels:
    specs = load_specs()
    nets = {name: build_network(spec, seed=seed) for name, spec in specs.items()}
    return TeamModels(nets["regime"], nets["structure"], nets["tactical"], nets["risk"])  # type: ignore[arg-type]


def initial_models(cfg: TrainConfig) -> TeamModels:
    """Fresh networks from models/*.yaml, or the weights of ``cfg.init_from`` (a warm start)."""
    if not cfg.init_from:
        return _fresh_models(cfg.seed)
    from marlops.training.warm_start import load_initial_team

    return load_initial_team(cfg.init_from)


@dataclass
class TrainingData:
    """The markets of a run: what the stages learn from (their ``regime_label`` = the regime targets),
    what they never learn from (validation), and the records ``summary.json`` keeps."""

    markets: list[MarketData]
    validation: list[MarketData]  # the figures printed and the risk agent's calibration
    regime_validation: MarketData | None  # scored for regime balanced accuracy: true labels, or None
    targets: RegimeTargets
    split: dict[str, Any] | None = None  # a dataset run's bar ranges (training/holdout.py)
    env: EnvConfig = field(default_factory=EnvConfig)  # a dataset's own costs (meta.json), else defaults
    # where the feature rows came from: {"source": "synthetic" | "dataset"} or Feast's record (lineage)
    source: dict[str, Any] = field(default_factory=lambda: {"source": "synthetic"})


def training_data(cfg: TrainConfig) -> TrainingData:
    """Load (or generate) the run's markets and resolve its regime targets (training/regime_targets.py).

    Synthetic seeds: the train seeds, validation on ``validation_seed``. A dataset: its first
    ``1 − holdout_fraction`` of the bars only, the last ``validation_fraction`` of that part as validation
    (training/holdout.py) — or, for all of a reference-synthetic dataset (``holdout_fraction`` 0), all of
    it with the synthetic validation seed as validation; a ``--labels`` file is joined onto its bars first.
    The HMM labeller is fitted on the training part alone and labels it causally.
    """
    rc = cfg.regime
    if rc.labels and not cfg.dataset:
        raise ValueError("regime.labels: a labels file labels a dataset; give --dataset too")
    split, env, source = None, EnvConfig(), {"source": "synthetic"}
    if not cfg.dataset:
        markets = [synthetic_market_data(s, cfg.days) for s in cfg.train_seeds]
        val = synthetic_market_data(cfg.validation_seed, max(cfg.days // 3, 8))
        validation, own_labels = [val], True
    else:
        ds, source = load_dataset(cfg)
        full, env = market_data_from_dataset(ds), env_config_for_dataset(ds)
        own_labels = has_labels([full])
        kind = resolve_targets(rc.targets, own_labels, rc.labels)
        if kind == "file":
            assert rc.labels is not None
            full = dataclasses.replace(
                full, regime_label=labels_onto_bars(read_regime_labels(rc.labels), full, rc.labels)
            )
        if cfg.holdout_fraction == 0 and reference_generator(cfg) is not None:
            # all of a reference-synthetic dataset (the pipelines evaluate on other seeds): its generator's
            # validation seed is a held-out twin
            markets = [full]
            validation = [synthetic_market_data(cfg.validation_seed, max(cfg.days // 3, 8))]
            sp = DatasetSplit(len(full), len(full), len(full))
        else:
            sp = dataset_split(len(full), cfg.holdout_fraction, cfg.validation_fraction)
            markets = [slice_market(full, 0, sp.validation_start)]
            validation = [slice_market(full, sp.validation_start, sp.trained_end)]
        split = split_record(full, sp, cfg.holdout_fraction, cfg.dataset)
    kind = resolve_targets(rc.targets, own_labels, rc.labels)
    record: dict[str, Any] = {"requested": rc.targets, "resolved": kind, "labels_file": rc.labels}
    val_regime = validation[0] if has_labels(validation) else None
    if kind in ("labels", "file"):
        if not has_labels(markets):
            raise ValueError("regime.labels: no label falls on the training part of the data")
        targets = RegimeTargets(
            rc.targets, kind, markets, reference_generator(cfg) if kind == "labels" else None
        )
    elif kind == "hmm":
        clf = hmm_labeller(markets, seed=cfg.seed)
        markets = [dataclasses.replace(d, regime_label=hmm_labels(clf, d)) for d in markets]
        lab = np.concatenate([d.regime_label[d.warm_from :] for d in markets])
        record.update(
            state_to_regime=[REGIME_NAMES[r] for r in clf.state_to_regime],  # type: ignore[union-attr]
            mapping="by rank: most volatile state, then most / least efficient, the last transition",
            label_share={REGIME_NAMES[r]: float(np.mean(lab == r)) for r in range(len(REGIME_NAMES))},
        )
        targets = RegimeTargets(rc.targets, kind, markets, None)
    else:  # transfer: the regime agent of the synthetic reference market, frozen on this data
        if cfg.init_from:
            targets = RegimeTargets(rc.targets, kind, None, None)
            record["regime_agent"] = f"from {cfg.init_from}, frozen"
        else:
            ref = (
                markets if not cfg.dataset else [synthetic_market_data(s, cfg.days) for s in cfg.train_seeds]
            )
            targets = RegimeTargets(rc.targets, kind, ref, SyntheticMarketConfig())
            record["regime_agent"] = (
                f"trained on synthetic seeds {list(cfg.train_seeds)} × {cfg.days} days, frozen"
            )
    targets.record = record
    return TrainingData(markets, validation, val_regime, targets, split, env, source)


def load_dataset(cfg: TrainConfig) -> tuple[MarketDataset, dict[str, Any]]:
    """``cfg.dataset`` with its feature rows computed from its bars, or read from ``cfg.feast_dir``'s
    offline store (the same values: tests/test_feast_training.py); and the record of which."""
    assert cfg.dataset is not None
    if not cfg.feast_dir:
        return MarketDataset.load(cfg.dataset), {"source": "dataset"}
    from marlops.features.training import load_dataset as from_feast

    ds, src = from_feast(cfg.dataset, cfg.feast_dir, cfg.instrument)
    return ds, src.record()


def training_markets(cfg: TrainConfig) -> list[MarketData]:
    """The markets the stages learn from (their regime targets in ``regime_label``)."""
    return training_data(cfg).markets


def train_team(
    cfg: TrainConfig,
    out: str | Path,
    progress: bool = True,
    on_update: Callable[[dict[str, float]], None] | None = None,
    on_validation: Callable[[int, ValidationFigures], None] | None = None,
    validation_episodes: int | None = None,
) -> TrainSummary:
    """Run (or resume) every stage; returns what rank 0 saw. Safe to call again on a finished ``out``.

    ``validation_episodes``: score the team on that many episodes per validation market
    (training/validation.py) after every team update (``on_validation(update, figures)``, which may stop
    the run by raising) and the whole team at the end (``summary.json``'s ``validation``); None: neither."""
    dist = distributed.init()
    try:
        return _train(
            cfg, Path(out), dist, progress and dist.is_main, on_update, on_validation, validation_episodes
        )
    finally:
        distributed.shutdown(dist)


def _train(
    cfg: TrainConfig,
    out: Path,
    dist: distributed.Dist,
    progress: bool,
    on_update: Callable[[dict[str, float]], None] | None,
    on_validation: Callable[[int, ValidationFigures], None] | None = None,
    validation_episodes: int | None = None,
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
        old = resumed[1]["config"]
        changed = sorted(k for k, v in cfg.key().items() if old.get(k) != v)
        raise ValueError(
            f"{out}: holds a run with a different configuration (changed: {', '.join(changed)}); "
            "use another --out or --fresh"
        )
    state: dict[str, Any] = dict(resumed[1]) if resumed else {}

    def log(record: dict[str, Any]) -> None:
        if dist.is_main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    if resumed:
        log({"event": "resumed", "checkpoint": resumed[0], "from_stage": state["stage"]})
    models = initial_models(cfg)
    # validation is held out from every stage: the figures printed here and the risk agent's calibration
    data = training_data(cfg)
    log({"event": "regime_targets", **data.targets.record})
    if data.split is not None:
        log({"event": "data_split", **data.split})
    log({"event": "training_data", **data.source})
    ctx = StageContext(
        cfg,
        models,
        data.markets,
        data.validation,
        dist,
        out,
        state,
        progress,
        log,
        step=resumed[0] if resumed else 0,
        targets=data.targets,
        env=data.env,
        on_validation=on_validation if validation_episodes else None,
        validation_episodes=validation_episodes or 0,
    )
    run_regime(ctx)
    run_structure(ctx)
    run_tactical(ctx)
    team = make_team_stage(ctx)
    run_team(ctx, team, on_update)
    risk_metrics = run_risk(ctx)
    validation = ctx.validate(use_risk=True).as_dict() if validation_episodes else None

    val_bacc = float("nan")  # nothing to score against where the validation market has no labels
    if data.regime_validation is not None:
        val = regime_samples(data.regime_validation)
        val_bacc = balanced_accuracy(val.label, predict(models.regime, val.x))
    # every worker's weights must be identical after data-parallel training: compare checksums
    checksum = np.array(
        [sum(float(p.detach().double().sum()) for n in models.networks().values() for p in n.parameters())]
    )
    sums = dist.all_gather_rows(checksum)
    in_sync = bool(np.allclose(sums, sums[0], rtol=0, atol=1e-6))
    updates = team.mappo.updates_done
    env_steps = updates * cfg.team.rollout_steps * cfg.team.n_envs * dist.world_size
    if dist.is_main:
        save_team(models, team.critic, out)
        summary = {
            "regime_val_balanced_accuracy": val_bacc if np.isfinite(val_bacc) else None,
            "regime_targets": data.targets.record,
            "data_split": data.split,
            "training_data": data.source,
            "updates": updates,
            "env_steps": env_steps,
            "world_size": dist.world_size,
            "workers_in_sync": in_sync,
            "wall_s": time.perf_counter() - start,
            "resumed_from": resumed[0] if resumed else None,
            "init_from": cfg.init_from,
            "config": cfg.key(),  # every setting (and hyperparameter) that trained the team
            "config_sources": config_sources(),
            "final": team.last,
            "risk": risk_metrics,
        }
        if validation is not None:  # the whole team on the validation markets (training/validation.py)
            summary["validation"] = validation
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    dist.barrier()
    return TrainSummary(
        out,
        resumed[0] if resumed else None,
        val_bacc,
        updates,
        env_steps,
        time.perf_counter() - start,
        team.last,
    )


def save_team(models: TeamModels, critic: TeamCritic, out: Path) -> None:
    """The agents in the serving format (ONNX checked against eager) and the critic beside them."""
    nets = models.networks()
    versions_file = out / "agents" / "agents.json"
    if versions_file.exists():  # a rerun of a finished run: the same weights are already exported
        saved = json.loads(versions_file.read_text()).get("versions", {})
        if saved == {name: net_version(net) for name, net in nets.items()}:  # type: ignore[arg-type]
            return
    AgentSet.from_networks(nets, backend="eager", threads=None).save(out / "agents")  # type: ignore[arg-type]
    torch.save(critic.state_dict(), out / "critic.pt")


def load_models(directory: str | Path) -> TeamModels:
    """The four networks of a ``marlops train`` output or an ``agents/`` (team) folder."""
    d = Path(directory)
    agents = d / "agents" if (d / "agents").is_dir() else d
    n = AgentSet.load(agents, backend="eager", threads=None).networks
    return TeamModels(n["regime"], n["structure"], n["tactical"], n["risk"])  # type: ignore[arg-type]


def load_team(directory: str | Path, name: str = "team") -> TrainedTeam:
    """A trained team (``directory`` = a ``marlops train`` output or its ``agents/`` folder) as a policy."""
    return TrainedTeam(load_models(directory), name)
