"""What each pipeline step does, as plain functions over folders and values.

The Kubeflow components in ``components/`` are a few lines each: they map their artifacts' paths onto
these functions and copy the returned figures into metrics. Locally (``kfp.local``), in a cluster, and
in tests the same functions run.

- :func:`build_features`: a market dataset (synthetic by default, or an imported folder) → Feast sources,
  ``feast apply`` + materialize; lineage (data hash, feature view fingerprints) travels with the dataset.
- :func:`train`: ``marlops train`` on that dataset, its feature rows read from the Feast store the build
  step wrote (``training_data="feast"``) or computed from its bars (``"dataset"``). With a ``work_dir`` the
  run lives in a folder keyed by the data hash and the configuration, so a rerun (or a retried task)
  resumes or finds it finished.
- :func:`evaluate`: held-out synthetic markets, baselines, HTML + JSON report (what the gate compares).
- :func:`register`: MLflow run with lineage, the four agents registered, challenger → champion through
  the promotion gate (or forced, or never).
- :func:`deploy`: :mod:`marlops.pipeline.deploy`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from marlops.registry import GateConfig
    from marlops.training.config import TrainConfig
    from marlops.training.market import TrainSummary

LINEAGE_FILE = "lineage.json"
PROMOTE_MODES = ("gate", "force", "never")
TRAINING_DATA = ("feast", "dataset")  # where the train step reads the feature rows from
_RUN_ONLY = ("cache", "cache_file", "seconds")  # of a training_data record: this run's, not the data's
_RUN_FILES = ("agents", "critic.pt", "summary.json", "metrics.jsonl")  # what a model artifact carries


def data_hash(dataset_dir: str | Path) -> str:
    """SHA-256 over a dataset folder's files (names and bytes, sorted): the data a model was trained on."""
    from marlops.market.dataset import dataset_hash

    return dataset_hash(dataset_dir, skip=(LINEAGE_FILE,))


def parse_seeds(text: str, what: str) -> list[int]:
    try:
        seeds = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ValueError(f"{what}: no seed given")
    return seeds


# ------------------------------------------------------------------------------------- build features


@dataclass
class FeatureBuild:
    dataset: Path
    instrument: str
    feast_dir: Path
    online: str
    data_hash: str
    feature_views: dict[str, str]
    feature_sources: dict[str, str]  # sha256 of the row sources written: the train step checks them
    base_bars: int
    start: str
    end: str

    def lineage(self) -> dict[str, Any]:
        return {
            "data_hash": self.data_hash,
            "feature_views": self.feature_views,
            "instrument": self.instrument,
            "data_span": [self.start, self.end],
            "feast_dir": str(self.feast_dir),  # the store the train step reads the rows from
            "feature_sources": self.feature_sources,
        }


def build_features(
    out: str | Path,
    feast_dir: str | Path,
    days: float = 20.0,
    seed: int = 0,
    source: str = "",
    instrument: str = "SYNTH",
    online: str = "sqlite",
) -> FeatureBuild:
    """Write the dataset to ``out`` (synthesized from ``seed``/``days``, or copied from ``source``), then
    Feast: sources, apply, materialize into the online store. Returns what the lineage records."""
    from marlops.features import build_features as feast_build
    from marlops.features.training import source_digests
    from marlops.market.dataset import MarketDataset, dataset_from_ticks
    from marlops.market.feed import FeedConfig
    from marlops.market.synthetic import generate_market

    out = Path(out)
    if source:
        src = Path(source)
        MarketDataset.load(src)  # a clear error before anything is copied
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(src, out)
        ds = MarketDataset.load(out)
    else:
        if not days > 0:
            raise ValueError(f"days: must be > 0, got {days!r}")
        market = generate_market(days=days, seed=seed)
        meta = {"source": "synthetic", "seed": seed, "days": days}
        ds = dataset_from_ticks(out, market.ticks, FeedConfig(), meta, market.labels)
    built = feast_build(ds, instrument=instrument, directory=feast_dir, online=online or None)
    base = ds.features.base
    ends = base["end"].to_numpy()
    result = FeatureBuild(
        dataset=out,
        instrument=instrument,
        feast_dir=built.directory,
        online=built.online,
        data_hash=data_hash(out),
        feature_views=dict(built.fingerprints),
        feature_sources=source_digests(built.directory, instrument),
        base_bars=len(base),
        start=_iso(ends[0]) if len(ends) else "",
        end=_iso(ends[-1]) if len(ends) else "",
    )
    (out / LINEAGE_FILE).write_text(json.dumps(result.lineage(), indent=2))
    return result


def _iso(ns: Any) -> str:
    import pandas as pd

    return pd.Timestamp(int(ns), tz="UTC").isoformat()


def read_lineage(dataset_dir: str | Path) -> dict[str, Any]:
    p = Path(dataset_dir) / LINEAGE_FILE
    return json.loads(p.read_text()) if p.exists() else {}


# ------------------------------------------------------------------------------------------- train


def _stable_dataset(dataset_dir: Path, work_root: Path, digest: str) -> Path:
    """A copy of the dataset under a path that depends only on its content (the run config names it)."""
    target = work_root / "datasets" / digest[:16]
    if not (target / "meta.json").exists():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(dataset_dir, tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def run_key(cfg: Any) -> str:
    """The run folder's name under ``work_dir/runs``: a digest of the training configuration."""
    return hashlib.sha256(json.dumps(cfg.key(), sort_keys=True).encode()).hexdigest()[:16]


def train(
    dataset_dir: str | Path,
    out: str | Path,
    budget: str = "small",
    updates: int = 0,
    seed: int = 0,
    work_dir: str | Path | None = None,
    progress: bool = True,
    init_from: str = "",
    tracking_uri: str = "",
    regime_targets: str = "auto",
    labels: str = "",
    holdout_fraction: float = -1.0,
    training_data: str = "feast",
    hyperparameters: str = "",
) -> TrainSummary:
    """Train the team on the dataset; the finished run (agents, critic, summary, metrics) lands in ``out``,
    the returned summary's ``out`` (its ``run_dir``: the run folder under ``work_dir``, if any).

    ``work_dir``: where checkpoints live, keyed by data hash and configuration — a rerun resumes there (or
    finds it finished) instead of starting over; None trains straight into ``out``.
    ``init_from``: warm start (``marlops train --init-from``). A registry alias (the retraining pipeline's
    ``models:/marlops-{agent}@champion``) is resolved to the team behind it first and downloaded, so the run's
    key names that team: a rerun after the champion changed trains again. No champion yet: a fresh start.
    ``regime_targets`` / ``labels``: ``marlops train --regime-targets`` / ``--labels`` (an import has no
    regime labels: ``auto`` fits the HMM labeller on its training part). ``holdout_fraction``:
    ``--holdout-fraction``; negative = 0 for a dataset of the reference synthetic generator (this pipeline
    evaluates on other seeds), else 0.5 (an import: ``marlops evaluate --data`` tests on its second half).
    ``training_data``: "feast" reads the feature rows from the Feast store the build step recorded in the
    dataset's lineage.json (same values, the definitions serving reads; summary.json's ``training_data``
    records the feature service fingerprint and data hash), "dataset" computes them from the bars.
    ``hyperparameters``: a JSON object of dotted settings over the budget (``{"team.lr": 1e-4}``: the best
    values of ``marlops tune`` / the tuning pipeline); they are part of the run's key.
    """
    from marlops.training.market import train_team

    out = Path(out)
    cfg, run_dir = resolve_run(
        dataset_dir, budget, updates, seed, Path(work_dir) if work_dir else None, init_from, tracking_uri,
        regime_targets, labels, holdout_fraction, training_data, out_default=out,
        hyperparameters=hyperparameters,
    )  # fmt: skip
    s = train_team(cfg, run_dir, progress=progress)
    if run_dir != out:
        copy_run_files(run_dir, out)
    return dataclasses.replace(s, out=out, run_dir=run_dir)


def copy_run_files(run_dir: Path, out: Path) -> None:
    """What a model artifact carries (:data:`_RUN_FILES`), from a run folder into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in _RUN_FILES:
        src, dst = run_dir / name, out / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dst)


def resolve_run(
    dataset_dir: str | Path,
    budget: str,
    updates: int,
    seed: int,
    work_dir: Path | None,
    init_from: str,
    tracking_uri: str,
    regime_targets: str,
    labels: str,
    holdout_fraction: float,
    training_data: str,
    out_default: Path | None = None,
    hyperparameters: str = "",
) -> tuple[TrainConfig, Path]:
    """The training configuration of :func:`train` and its run folder, without training: what the train
    step runs in-process and what it puts on a TrainJob's command line (:mod:`marlops.pipeline.launch`).

    With a ``work_dir`` the dataset is copied under it (a path that depends only on its content) and the run
    folder is ``work_dir/runs/<config key>``; without, the run folder is ``out_default``."""
    from marlops.training.config import parse_hyperparameters
    from marlops.training.market import budget_config
    from marlops.training.stages import reference_generator

    tuned = parse_hyperparameters(hyperparameters)
    dataset_dir = Path(dataset_dir)
    start = None
    if init_from:
        start = _initial_team(init_from, tracking_uri, work_dir or (out_default or dataset_dir).parent)
    if holdout_fraction < 0:
        synthetic = budget_config(budget, dataset=str(dataset_dir.resolve()))
        holdout_fraction = 0.0 if reference_generator(synthetic) is not None else 0.5
    data = dataset_dir
    if work_dir is not None:
        digest = read_lineage(dataset_dir).get("data_hash") or data_hash(dataset_dir)
        data = _stable_dataset(dataset_dir, work_dir, digest)
    options = dict(
        updates=updates or None,
        seed=seed,
        dataset=str(data.resolve()),
        init_from=start,
        regime_targets=regime_targets,
        labels=labels or None,
        holdout_fraction=holdout_fraction,
        **_feast_source(training_data, dataset_dir),
    )
    cfg = budget_config(budget, **{**tuned, **options})  # the step's own options win, as `marlops train`'s
    if work_dir is not None:
        return cfg, work_dir / "runs" / run_key(cfg)
    if out_default is None:
        raise ValueError("resolve_run: give a work_dir or the folder to train into (out_default)")
    return cfg, out_default


def _feast_source(training_data: str, dataset_dir: Path) -> dict[str, Any]:
    """The config entries that make training read the rows from the build step's Feast store."""
    if training_data not in TRAINING_DATA:
        raise ValueError(f"training_data: expected one of {TRAINING_DATA}, got {training_data!r}")
    if training_data == "dataset":
        return {}
    lineage = read_lineage(dataset_dir)
    if not lineage.get("feast_dir"):
        raise ValueError(
            f"training_data: 'feast' needs the Feast store the build step wrote, and {dataset_dir} has no "
            f"{LINEAGE_FILE} naming one (feast_dir); build it with build_features or use 'dataset'"
        )
    # absolute, as `marlops train --from-feast` makes it: a TrainJob's command line must key the same run
    feast_dir = str(Path(lineage["feast_dir"]).resolve())
    return {"feast_dir": feast_dir, "instrument": lineage.get("instrument")}


def _initial_team(init_from: str, tracking_uri: str, root: Path) -> str | None:
    """``init_from`` as a local folder: a registry alias downloaded into ``root/init/<team>`` (None when the
    registry has no such alias yet), a folder as it is."""
    if not init_from.startswith("models:/"):
        return init_from
    from marlops.registry import RegistryError, alias_team, download_team, resolve_tracking

    alias = init_from.rpartition("@")[2]
    cfg = resolve_tracking(tracking_uri or None)
    team = alias_team(alias, cfg)
    if team is None:
        print(f"init_from: no {alias} in the registry yet — training from fresh networks")
        return None
    target = root / "init" / team
    if not (target / "agents.json").exists():
        try:
            download_team(alias, target, cfg)
        except RegistryError as e:
            raise ValueError(f"init_from: {init_from}: {e}") from None
    return str(target.resolve())


# ---------------------------------------------------------------------------------------- tune


@dataclass(frozen=True)
class Tuned:
    """The tuning step's result: the best values as the training step takes them (``hyperparameters``,
    a JSON object of dotted settings), the figures, and the study's folder (best.yaml, report.html)."""

    hyperparameters: str
    best_trial: int
    best_value: float
    default_value: float | None
    trials: int
    folder: Path


def tune(
    budget: str = "small",
    n_trials: int = 12,
    jobs: int = 1,
    seed: int = 0,
    study_name: str = "marlops",
    storage: str = "",
    work_dir: str | Path = "data/pipeline",
    tracking_uri: str = "",
) -> Tuned:
    """``marlops tune`` as a pipeline step: an Optuna study of ``n_trials`` over models/search_space.yaml on
    the budget's validation markets, resumed when ``work_dir/tuning`` already holds it (same name and
    storage), with the budget's own configuration scored beside it. ValueError when no trial finished."""
    import optuna

    from marlops.tuning.space import load_space
    from marlops.tuning.study import TuneOptions, run_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opts = TuneOptions(
        study_name=study_name, budget=budget, n_trials=n_trials, storage=storage or None, jobs=jobs,
        seed=seed, out_root=Path(work_dir) / "tuning", tracking_uri=tracking_uri or None,
    )  # fmt: skip
    outcome = run_study(opts, load_space())
    if outcome.best_file is None:
        raise ValueError(f"tuning: no trial of study {study_name!r} finished")
    best = outcome.study.best_trial
    return Tuned(
        hyperparameters=json.dumps(outcome.overrides, sort_keys=True),
        best_trial=best.number,
        best_value=float(best.value),
        default_value=None if outcome.default is None else outcome.default.value,
        trials=len(outcome.study.trials),
        folder=opts.out,
    )


# ---------------------------------------------------------------------------------------- evaluate


def evaluate(
    model_dir: str | Path,
    out: str | Path,
    seeds: str = "101,102",
    days: float = 10.0,
    fit_seeds: str = "1,2",
    progress: bool = True,
) -> dict[str, dict[str, float | None]]:
    """Held-out evaluation (report.html + report.json in ``out``); returns the with-costs means by policy."""
    from marlops.evaluation.held_out import evaluate_team_held_out

    result = evaluate_team_held_out(
        model_dir, out, parse_seeds(seeds, "seeds"), parse_seeds(fit_seeds, "fit_seeds"), days, progress
    )
    return {k: dict(v) for k, v in result.aggregate(True).items()}


# ---------------------------------------------------------------------------------------- register


@dataclass
class Registered:
    run_id: str
    team: str
    versions: dict[str, str]
    created: bool
    promoted: bool
    champion_team: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def gate_config(gate: Mapping[str, Any] | str | None) -> GateConfig:
    """The promotion gate from a mapping or its JSON (a pipeline parameter); names the bad field."""
    from pydantic import ValidationError

    from marlops.registry import GateConfig

    if isinstance(gate, str):
        try:
            gate = json.loads(gate) if gate.strip() else {}
        except json.JSONDecodeError as e:
            raise ValueError(f"gate: not JSON ({e})") from None
    if gate is None:
        gate = {}
    if not isinstance(gate, Mapping):
        raise ValueError(f"gate: expected a JSON object, got {type(gate).__name__}")
    try:
        return GateConfig(**gate)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ValueError(f"gate: {problems}") from None


def register(
    model_dir: str | Path,
    eval_dir: str | Path,
    lineage: Mapping[str, Any] | None = None,
    tracking_uri: str = "",
    promote: str = "gate",
    gate: Mapping[str, Any] | str | None = None,
) -> Registered:
    """Log the run with its lineage, register the agents, then promote: through the gate (``gate``),
    unconditionally (``force``) or not at all (``never``). Idempotent: the same team is registered once."""
    from marlops.registry import promote as promote_team
    from marlops.registry import register_run, resolve_tracking

    if promote not in PROMOTE_MODES:
        raise ValueError(f"promote: expected one of {PROMOTE_MODES}, got {promote!r}")
    gate_cfg = gate_config(gate)
    cfg = resolve_tracking(tracking_uri or None)
    facts = dict(lineage or {})
    summary = Path(model_dir) / "summary.json"
    if summary.exists():  # where the feature rows came from (Feast: store, service fingerprint, data hash)
        source = json.loads(summary.read_text()).get("training_data") or {}
        facts.setdefault("training_data", {k: v for k, v in source.items() if k not in _RUN_ONLY} or None)
    reg = register_run(model_dir, eval_dir, facts, cfg)
    versions = {a: str(r.version) for a, r in reg.agents.items()}
    if promote == "never":
        return Registered(reg.run_id, reg.team, versions, reg.created, False, None, "promotion skipped")
    res = promote_team(gate_cfg, cfg, force=promote == "force")
    champion = reg.team if res.promoted else res.champion_team
    return Registered(reg.run_id, reg.team, versions, reg.created, res.promoted, champion, res.message)
