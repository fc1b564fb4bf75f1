"""An Optuna study over models/search_space.yaml: the trial objective, the study's storage, sampler and
pruner, and what a finished study leaves (best config, HTML report, MLflow runs). Used by ``marlops tune``
(:mod:`.commands`) and by Katib's trials (``marlops tune --trial``).

A trial is one ``marlops train`` of the budget's configuration with the trial's values overlaid, scored by
the validation figure (:mod:`marlops.training.validation`) on the run's validation markets (the budget's
``validation_seed``); the team stage reports it after every update, the pruner stops a trial whose figure
trails the median, and the whole team's figure after training is the trial's value. The evaluation's
held-out seeds are refused (:func:`check_not_held_out`) and never generated.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from marlops.evaluation.held_out import HELD_OUT_SEEDS
from marlops.training.config import TrainConfig, budget_config, with_overrides
from marlops.tuning.space import SearchSpace

if TYPE_CHECKING:  # optuna takes a second to import; the functions that use it import it
    import optuna

DEFAULT_DIR = Path("data/tuning")


@dataclass
class TuneOptions:
    study_name: str = "marlops"
    budget: str = "ci"
    n_trials: int = (
        12  # finished (complete or pruned) trials the study should hold; a resumed study adds the rest
    )
    timeout: float | None = None  # seconds for this invocation
    storage: str | None = None  # an Optuna RDB URL; None: sqlite:///<out_root>/<study>.db
    jobs: int = 1  # worker processes on the same storage
    seed: int = 0  # the sampler's
    worker: int = 0  # which of the --jobs workers (its sampler draws from seed + worker)
    out_root: Path = DEFAULT_DIR
    mlflow: bool = True
    tracking_uri: str | None = None
    baseline: bool = True  # also train the budget's own configuration and score it the same way
    progress: bool = False  # tqdm bars of the trainer (the CLI draws its own)

    @property
    def out(self) -> Path:
        return self.out_root / self.study_name

    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        self.out_root.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.out_root / f'{self.study_name}.db').resolve()}"


@dataclass
class TrialEvents:
    """What the CLI draws: a trial starts, the team stage reports, a trial ends."""

    start: Callable[[int, dict[str, Any], int], None] = lambda number, values, updates: None
    update: Callable[[int, int, float], None] = lambda number, step, utility: None
    end: Callable[[int, str, float | None, float], None] = lambda number, state, value, wall_s: None
    baseline: Callable[[str], None] = lambda budget: None  # the default configuration starts training


def check_not_held_out(cfg: TrainConfig) -> None:
    """A study chooses on its validation markets: the evaluation's held-out seeds are not one of them."""
    used = {cfg.validation_seed, *cfg.train_seeds} if not cfg.dataset else {cfg.validation_seed}
    bad = sorted(used & set(HELD_OUT_SEEDS))
    if bad:
        raise ValueError(
            f"seeds {bad}: held out for the evaluation (evaluation/held_out.py); a study must not train or "
            "choose on them (change validation_seed / train_seeds)"
        )


def trial_config(space: SearchSpace, budget: str, values: dict[str, Any]) -> TrainConfig:
    """The budget's configuration with the trial's active values overlaid (checked against held-out)."""
    unknown = sorted(set(values) - set(space.names))
    if unknown:
        raise ValueError(f"{unknown}: not parameters of {space.source}")
    cfg = with_overrides(budget_config(budget), space.active(values))
    check_not_held_out(cfg)
    return cfg


@dataclass
class TrialResult:
    value: float
    figures: dict[str, float]
    steps: list[tuple[int, float]] = field(default_factory=list)  # (team update, utility)
    summary: dict[str, Any] = field(default_factory=dict)


def run_trial(
    cfg: TrainConfig,
    out: Path,
    episodes: int,
    report: Callable[[int, float], None] | None = None,
    progress: bool = False,
) -> TrialResult:
    """Train ``cfg`` into ``out`` (resuming there), report the team stage's validation figure after every
    update (``report`` may raise to stop), and return the whole team's figure on the validation markets."""
    from marlops.training.market import train_team

    steps: list[tuple[int, float]] = []

    def on_validation(step: int, figures: Any) -> None:
        steps.append((step, figures.utility))
        if report is not None:
            report(step, figures.utility)

    train_team(cfg, out, progress=progress, on_validation=on_validation, validation_episodes=episodes)
    summary = json.loads((out / "summary.json").read_text())
    figures = dict(summary["validation"])
    return TrialResult(float(figures["utility"]), figures, steps, summary)


def make_sampler(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    s = dict(space.sampler)
    name = s.pop("name", "tpe")
    if name != "tpe":
        raise ValueError(f"sampler {name!r}: only tpe is supported")
    return optuna.samplers.TPESampler(seed=seed, **s)


def make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    import optuna

    p = dict(space.pruner)
    name = p.pop("name", "median")
    if name == "median":
        return optuna.pruners.MedianPruner(**p)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(**p)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner {name!r}: median, hyperband or none")


def sampler_seed(opts: TuneOptions) -> int:
    """Each ``--jobs`` worker samples with its own seed, or all would start with the same values."""
    return opts.seed + opts.worker


def open_study(
    opts: TuneOptions, space: SearchSpace, pruner: optuna.pruners.BasePruner | None = None
) -> optuna.Study:
    """Create the study, or load it (same name, same storage: a resumed study keeps its trials)."""
    import optuna

    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # a killed worker's trial is failed once its heartbeat is 90 s stale (then retried by nobody)
        storage = optuna.storages.RDBStorage(opts.storage_url(), heartbeat_interval=30, grace_period=90)
    study = optuna.create_study(
        study_name=opts.study_name,
        storage=storage,
        sampler=make_sampler(space, sampler_seed(opts)),
        pruner=pruner or make_pruner(space),
        direction=space.goal,
        load_if_exists=True,
    )
    stored = study.user_attrs
    mine = {"budget": opts.budget, "space": space.as_dict(), "metric": space.metric}
    for k, v in mine.items():
        if k in stored and json.loads(json.dumps(stored[k])) != json.loads(json.dumps(v)):
            raise ValueError(f"study {opts.study_name!r}: was run with another {k}; use another --study-name")
        study.set_user_attr(k, v)
    return study


def finished(study: optuna.Study) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


class Objective:
    """The trial objective: values → config → training with pruning → the validation figure; each trial a
    nested MLflow run (params, per-update figures, final figures, state)."""

    def __init__(
        self,
        opts: TuneOptions,
        space: SearchSpace,
        events: TrialEvents | None = None,
        runs: Any = None,  # marlops.registry.studies.StudyRuns (None: no MLflow)
    ) -> None:
        self.opts, self.space, self.events, self.runs = opts, space, events or TrialEvents(), runs

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        values = self.space.suggest(trial)
        cfg = trial_config(self.space, self.opts.budget, values)
        trial.set_user_attr("overrides", values)
        run_id = None
        if self.runs is not None:
            run_id = self.runs.trial_run(
                trial.number, {**values, "budget": self.opts.budget, "study": self.opts.study_name}
            )
        self.events.start(trial.number, values, cfg.team.updates)
        start = time.perf_counter()

        def report(step: int, utility: float) -> None:
            trial.report(utility, step)
            if self.runs is not None and run_id is not None and math.isfinite(utility):
                self.runs.log_figures(run_id, {f"step.{self.space.metric}": utility}, step)
            self.events.update(trial.number, step, utility)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at team update {step}: {utility:.5f}")

        try:
            result = run_trial(
                cfg,
                self.opts.out / "trials" / str(trial.number),
                self.space.episodes_per_market,
                report,
                self.opts.progress,
            )
        except optuna.TrialPruned:
            self.events.end(trial.number, "PRUNED", None, time.perf_counter() - start)
            if run_id is not None:
                self.runs.finish(run_id, "KILLED")
            raise
        except BaseException:
            self.events.end(trial.number, "FAIL", None, time.perf_counter() - start)
            if run_id is not None:
                self.runs.finish(run_id, "FAILED")
            raise
        for k, v in result.figures.items():
            trial.set_user_attr(f"validation.{k}", v)
        if run_id is not None:
            self.runs.log_figures(run_id, {f"validation.{k}": v for k, v in result.figures.items()})
            self.runs.log_figures(run_id, {self.space.metric: result.value})
            self.runs.finish(run_id)
        self.events.end(trial.number, "COMPLETE", result.value, time.perf_counter() - start)
        return result.value


def study_runs(opts: TuneOptions, space: SearchSpace) -> Any:
    if not opts.mlflow:
        return None
    from marlops.registry.config import resolve_tracking
    from marlops.registry.studies import StudyRuns

    return StudyRuns(
        opts.study_name,
        config=resolve_tracking(opts.tracking_uri),
        params={
            "budget": opts.budget,
            "sampler_seed": opts.seed,
            "space": space.source,
            "metric": space.metric,
        },
    )


def optimize(
    opts: TuneOptions,
    space: SearchSpace,
    events: TrialEvents | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Run trials until the study holds ``n_trials`` finished ones (or ``timeout``); one process, or
    ``jobs`` worker processes on the same storage."""
    study = open_study(opts, space, pruner)
    remaining = opts.n_trials - finished(study)
    if remaining <= 0:
        return study
    if opts.jobs > 1:
        study_runs(opts, space)  # the MLflow store and the study's run exist before the workers race
        from marlops.tuning.workers import run_workers  # imports this module

        run_workers(opts, space, study, events or TrialEvents())
        return open_study(opts, space, pruner)
    import optuna

    objective = Objective(opts, space, events, study_runs(opts, space))
    study.optimize(
        objective,
        n_trials=remaining,
        timeout=opts.timeout,
        catch=(),
        callbacks=[
            optuna.study.MaxTrialsCallback(
                opts.n_trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            )
        ],
    )
    return study


# ---------------------------------------------------------------------------------------- what it leaves


@dataclass
class StudyOutcome:
    """A finished :func:`run_study`: the study, the default configuration's result (None without the
    baseline), ``best.yaml`` and its ``overrides`` (None / empty when no trial finished), the report."""

    study: optuna.Study
    default: TrialResult | None
    best_file: Path | None
    overrides: dict[str, Any]
    report: Path


def run_study(opts: TuneOptions, space: SearchSpace, events: TrialEvents | None = None) -> StudyOutcome:
    """``marlops tune`` and the tuning pipeline's step: the trials (:func:`optimize`), the budget's own
    configuration scored the same way (``opts.baseline``), then best.yaml + best/models/ and the report."""
    events = events or TrialEvents()
    study = optimize(opts, space, events)
    default = None
    if opts.baseline:
        events.baseline(opts.budget)
        default = baseline(opts, space)
    best_file, overrides = None, {}
    if any(t.value is not None for t in study.trials):
        best_file = write_best(study, opts, space, default)
        overrides = best_overrides(study, space)
    return StudyOutcome(study, default, best_file, overrides, write_report(study, opts, default))


def baseline(opts: TuneOptions, space: SearchSpace) -> TrialResult:
    """The budget's own configuration (models/ as it is), trained and scored like a trial (cached)."""
    cfg = budget_config(opts.budget)
    check_not_held_out(cfg)
    return run_trial(cfg, opts.out / "default", space.episodes_per_market, progress=opts.progress)


def _spec_fields() -> dict[str, set[str]]:
    from marlops.agents.specs import TRAINING_TYPES

    return {agent: set(t.model_fields) - {"objective"} for agent, t in TRAINING_TYPES.items()}


def write_models(values: dict[str, Any], out: Path, source: Path | None = None) -> Path:
    """A copy of models/ with ``values`` (dotted names) written where each one lives: an agent's spec
    ``training`` or team.yaml. ``MARLOPS_MODELS_DIR=<out> marlops train --budget …`` trains with them."""
    import shutil

    from marlops.agents.specs import models_dir

    src = source or models_dir()
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    fields = _spec_fields()
    for name, value in values.items():
        section, _, leaf = name.partition(".")
        if leaf and section in fields and leaf in fields[section]:
            path, keys = out / f"{section}.yaml", ["training", leaf]
        else:
            path, keys = out / "team.yaml", [section, leaf] if leaf else [section]
        data = yaml.safe_load(path.read_text())
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
        path.write_text(
            f"# written by marlops tune (the best trial's values)\n{yaml.safe_dump(data, sort_keys=False)}"
        )
    return out


def best_overrides(study: optuna.Study, space: SearchSpace) -> dict[str, Any]:
    """The best trial's active values by dotted name: what best.yaml records and training takes."""
    best = study.best_trial
    return space.active(dict(best.user_attrs.get("overrides") or best.params))


def write_best(
    study: optuna.Study, opts: TuneOptions, space: SearchSpace, default: TrialResult | None
) -> Path:
    """``<out>/best.yaml``: the best trial's values, its figures, the default's on the same validation
    markets and the whole configuration; ``<out>/best/models``: models/ with the values written in."""
    best = study.best_trial
    overrides = best_overrides(study, space)
    cfg = trial_config(space, opts.budget, overrides)
    record = {
        "study": opts.study_name,
        "budget": opts.budget,
        "metric": space.metric,
        "trial": best.number,
        "value": best.value,
        "default_value": None if default is None else default.value,
        "validation_markets": {"validation_seed": cfg.validation_seed, "days": max(cfg.days // 3, 8)},
        "overrides": overrides,
        "figures": {
            k.removeprefix("validation."): v
            for k, v in best.user_attrs.items()
            if k.startswith("validation.")
        },
        "default_figures": None if default is None else default.figures,
        "config": json.loads(json.dumps(cfg.key(), default=str)),
        "models_dir": str(opts.out / "best" / "models"),
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    path = opts.out / "best.yaml"
    path.write_text(yaml.safe_dump(record, sort_keys=False))
    write_models(overrides, opts.out / "best" / "models")
    return path


def write_report(study: optuna.Study, opts: TuneOptions, default: TrialResult | None) -> Path:
    """``<out>/report.html``: Optuna's optimization history, parameter importances and intermediate values
    (plotly, offline: the library is embedded once)."""
    import optuna.visualization as vis

    parts: list[str] = []
    plots = [
        ("optimization history", vis.plot_optimization_history),
        ("parameter importances", vis.plot_param_importances),
        ("intermediate values (team updates)", vis.plot_intermediate_values),
        ("parallel coordinates", vis.plot_parallel_coordinate),
    ]
    embedded = False
    for title, plot in plots:
        try:
            with warnings.catch_warnings():  # few trials: importances say so in the plot's own terms
                warnings.simplefilter("ignore")
                fig = plot(study)
        except (ValueError, RuntimeError) as e:  # e.g. importances need two finished trials
            parts.append(f"<h2>{title}</h2><p>not available: {e}</p>")
            continue
        parts.append(f"<h2>{title}</h2>" + fig.to_html(full_html=False, include_plotlyjs=not embedded))
        embedded = True
    try:
        best = f"trial {study.best_trial.number}: {study.best_value:.6g}"
    except ValueError:
        best = "no finished trial"
    base = "" if default is None else f"; default configuration: {default.value:.6g}"
    html = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>marlops tune {opts.study_name}</title></head><body>"
        f"<h1>marlops tune: {opts.study_name} ({opts.budget} budget)</h1><p>best {best}{base}</p>"
        + "".join(parts)
        + "</body></html>"
    )
    opts.out.mkdir(parents=True, exist_ok=True)
    path = opts.out / "report.html"
    path.write_text(html)
    return path
