"""Logging a training run (and its evaluation) to MLflow: params, metrics, artifacts, lineage.

One MLflow run per team: a run whose tag ``marlops.team`` equals the folder's team id is reused
(:func:`log_training_run` is idempotent; a rerun of the main job does not add runs). What is logged:

- params: the training config from summary.json, flattened (``config.seed``, ``config.team.updates`` …:
  every hyperparameter that trained the team), and ``config_sources.<file>``: the models/*.yaml hashes;
- metrics: summary figures as ``train.<name>`` (``train.final.<name>`` for the last update's), every
  line of metrics.jsonl as ``<stage>.<name>`` at its ``step``, and — with an evaluation — every
  aggregate of report.json as ``eval.<with_costs|without_costs>.<policy>.<metric>`` and its 95 %
  intervals as ``eval.<costs>.<policy>.ci.<figure>.<point|low|high>`` (the team against another
  policy: ``eval.<costs>.<team>.ci.vs.<other>.<sharpe|mean_daily_return>.<point|low|high>``);
- artifacts: ``training/summary.json``, ``training/metrics.jsonl``, ``agents/`` (the four agent folders
  and agents.json), ``evaluation/report.html``, ``evaluation/report.json`` (its daily returns are what
  the promotion gate pairs: :func:`marlops.registry.aliases.run_figures`);
- tags: ``marlops.team``, ``marlops.agent_versions``, ``marlops.run_dir``, ``marlops.train_seeds``,
  ``marlops.validation_seed``, ``marlops.package_version``, ``mlflow.source.git.commit`` (and
  ``marlops.git_dirty``) when the code is a git checkout or ``MARLOPS_GIT_COMMIT`` is set, every
  ``lineage`` entry as ``marlops.lineage.<key>`` (e.g. ``data_hash``, ``feature_views``), and for the
  evaluation ``marlops.eval.markets``, ``marlops.eval.goal.<goal>`` and ``marlops.eval.sha256``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marlops.registry.config import (
    DEFAULT_EXPERIMENT,
    TrackingConfig,
    activate,
    ensure_experiment,
    resolve_tracking,
)
from marlops.registry.folders import (
    Evaluation,
    RegistryError,
    TrainingRun,
    flatten,
    metric_lines,
    numeric,
    read_evaluation,
    read_run,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

TEAM_TAG = "marlops.team"
EVAL_PREFIX = "eval"
GIT_COMMIT_ENV = "MARLOPS_GIT_COMMIT"
_SKIP_LINE_KEYS = {"stage", "step"}
_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_MAX_PARAM = 6000  # MLflow's limit on a param value


def _json(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def git_commit(paths: Iterable[Path] | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the first git checkout among ``paths`` (default: the package's, then the cwd);
    ``MARLOPS_GIT_COMMIT`` wins (container images have no .git)."""
    env = os.environ.get(GIT_COMMIT_ENV)
    if env:
        return env, None
    candidates = list(paths) if paths is not None else [Path(__file__).resolve().parent, Path.cwd()]
    for p in candidates:
        try:
            commit = subprocess.run(
                ["git", "-C", str(p), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            )
            if commit.returncode != 0:
                continue
            status = subprocess.run(
                ["git", "-C", str(p), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            return commit.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            continue
    return None, None


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("marlops")
    except PackageNotFoundError:
        return "unknown"


def lineage_tags(run: TrainingRun, lineage: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Tags that say where the team came from (see the module docstring)."""
    cfg = run.config
    tags = {
        TEAM_TAG: run.team_id,
        "marlops.agent_versions": _json(run.versions),
        "marlops.run_dir": str(run.path.resolve()),
        "marlops.package_version": package_version(),
    }
    if "train_seeds" in cfg:
        tags["marlops.train_seeds"] = _json(list(cfg["train_seeds"]))
    if "validation_seed" in cfg:
        tags["marlops.validation_seed"] = str(cfg["validation_seed"])
    commit, dirty = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
        if dirty is not None:
            tags["marlops.git_dirty"] = str(dirty).lower()
    for k, v in (lineage or {}).items():
        if v is not None:
            tags[f"marlops.lineage.{k}"] = _json(v)[:_MAX_PARAM]
    return tags


def _metrics(items: Iterable[tuple[str, float, int]]) -> list[Metric]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, v, now, step) for k, v, step in items]


def _log_metrics(client: MlflowClient, run_id: str, items: Iterable[tuple[str, float, int]]) -> None:
    ms = _metrics(items)
    for i in range(0, len(ms), _BATCH):
        client.log_batch(run_id, metrics=ms[i : i + _BATCH])


def _log_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, v) for k, v in tags.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, tags=items[i : i + 100])


def training_params(run: TrainingRun) -> dict[str, str]:
    params = {f"config.{k}": _json(v)[:_MAX_PARAM] for k, v in flatten(run.config).items()}
    for k, v in (run.summary.get("config_sources") or {}).items():  # the models/*.yaml files' hashes
        params[f"config_sources.{k}"] = str(v)[:_MAX_PARAM]
    if "world_size" in run.summary:
        params["world_size"] = str(run.summary["world_size"])
    return params


def training_metrics(run: TrainingRun) -> list[tuple[str, float, int]]:
    """Summary figures (step 0) and the metrics.jsonl history (at each line's step)."""
    out: list[tuple[str, float, int]] = []
    for k, v in flatten({k: v for k, v in run.summary.items() if k != "config"}).items():
        if (f := numeric(v)) is not None:
            out.append((f"train.{k}", f, 0))
    for i, rec in enumerate(metric_lines(run.metrics_file)):
        stage, step = str(rec.get("stage", "train")), rec.get("step", i)
        step = int(step) if isinstance(step, int | float) else i
        for k, v in rec.items():
            if k not in _SKIP_LINE_KEYS and (f := numeric(v)) is not None:
                out.append((f"{stage}.{k}", f, step))
    return out


def _interval_items(prefix: str, interval: Any) -> list[tuple[str, float, int]]:
    if not isinstance(interval, Mapping):
        return []
    return [
        (f"{prefix}.{k}", f, 0)
        for k in ("point", "low", "high")
        if (f := numeric(interval.get(k))) is not None
    ]


def interval_metrics(report: Mapping[str, Any]) -> list[tuple[str, float, int]]:
    """report.json's ``intervals`` as metrics: ``eval.<costs>.<policy>.ci.<figure>.<point|low|high>``."""
    out: list[tuple[str, float, int]] = []
    for costs, iv in (report.get("intervals") or {}).items():
        if not isinstance(iv, Mapping):
            continue
        for policy, figures in (iv.get("policies") or {}).items():
            for figure, interval in figures.items():
                out += _interval_items(f"{EVAL_PREFIX}.{costs}.{policy}.ci.{figure}", interval)
        team = iv.get("team")
        for other, pair in (iv.get("versus") or {}).items():
            for figure, interval in pair.items():
                out += _interval_items(f"{EVAL_PREFIX}.{costs}.{team}.ci.vs.{other}.{figure}", interval)
    return out


def evaluation_metrics(ev: Evaluation) -> list[tuple[str, float, int]]:
    out = []
    for costs, policies in ev.aggregate.items():
        for policy, figures in policies.items():
            for metric, v in figures.items():
                if (f := numeric(v)) is not None:
                    out.append((f"{EVAL_PREFIX}.{costs}.{policy}.{metric}", f, 0))
    return out + interval_metrics(ev.report)


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def log_evaluation(run_id: str, eval_dir: str | Path, config: TrackingConfig | None = None) -> bool:
    """Log an evaluation folder to an existing run; False when this very report is already logged."""
    ev = read_evaluation(eval_dir)
    client = activate(config or resolve_tracking())
    return _log_evaluation(client, run_id, ev)


def _log_evaluation(client: MlflowClient, run_id: str, ev: Evaluation) -> bool:
    sha = _file_sha(ev.path / "report.json")
    if client.get_run(run_id).data.tags.get("marlops.eval.sha256") == sha:
        return False
    _log_metrics(client, run_id, evaluation_metrics(ev))
    tags = {
        "marlops.eval.markets": _json(ev.markets),
        "marlops.eval.dir": str(ev.path.resolve()),
        **{f"marlops.eval.goal.{g}": s for g, s in ev.goals.items()},
    }
    _log_tags(client, run_id, tags)
    for name in ("report.json", "report.html"):
        if (ev.path / name).is_file():
            client.log_artifact(run_id, str(ev.path / name), "evaluation")
    client.set_tag(run_id, "marlops.eval.sha256", sha)  # last: a torn upload is retried by a rerun
    return True


def find_team_run(client: MlflowClient, experiment_id: str, team: str) -> str | None:
    """The newest finished run of ``team`` in the experiment, if any."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TEAM_TAG}` = '{team}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def log_training_run(
    run_dir: str | Path,
    eval_dir: str | Path | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    lineage: Mapping[str, Any] | None = None,
    config: TrackingConfig | None = None,
    reuse: bool = True,
) -> str:
    """Log a ``marlops train`` folder (and optionally its ``marlops evaluate`` folder); returns the run id.

    With ``reuse`` (default) a finished run of the same team is reused: only a new evaluation is added.
    """
    run = read_run(run_dir)
    ev = read_evaluation(eval_dir) if eval_dir is not None else None
    cfg = config or resolve_tracking()
    client = activate(cfg)
    exp_id = ensure_experiment(client, experiment, cfg)
    if reuse and (existing := find_team_run(client, exp_id, run.team_id)) is not None:
        if lineage:  # new lineage facts (e.g. feature view fingerprints) are added, never removed
            _log_tags(client, existing, {f"marlops.lineage.{k}": _json(v) for k, v in lineage.items() if v})
        if ev is not None:
            _log_evaluation(client, existing, ev)
        return existing

    mlflow_run = client.create_run(
        exp_id,
        run_name=f"train {run.team_id}",
        tags={"mlflow.source.name": "marlops train", "mlflow.source.type": "JOB"},
    )
    run_id = mlflow_run.info.run_id
    try:
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in training_params(run).items()]
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i : i + 100])
        _log_metrics(client, run_id, training_metrics(run))
        for name in ("summary.json", "metrics.jsonl"):
            if (run.path / name).is_file():
                client.log_artifact(run_id, str(run.path / name), "training")
        _log_agents(client, run_id, run)
        if ev is not None:
            _log_evaluation(client, run_id, ev)
        _log_tags(client, run_id, lineage_tags(run, lineage))  # the team tag last: it marks a complete run
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _log_agents(client: MlflowClient, run_id: str, run: TrainingRun) -> None:
    """The four agent folders and agents.json under ``agents/`` (checkpoints and the critic stay out)."""
    agents_dir = run.path / "agents"
    for agent, folder in run.agents.items():
        client.log_artifacts(run_id, str(folder.path), f"agents/{agent}")
    client.log_artifact(run_id, str(agents_dir / "agents.json"), "agents")


__all__ = [
    "EVAL_PREFIX",
    "TEAM_TAG",
    "RegistryError",
    "evaluation_metrics",
    "find_team_run",
    "git_commit",
    "interval_metrics",
    "lineage_tags",
    "log_evaluation",
    "log_training_run",
    "training_metrics",
    "training_params",
]
