"""The main job (``marlops run`` / ``make run``): the whole loop on embedded defaults.

synthetic market → Feast features → the training pipeline through kfp.local (train → evaluate →
register → promote → deploy) → the champion served → a held-out day replayed through the decision
path → drift check. Each stage reports through ``on_stage`` so the CLI can show progress; the result
carries every figure and path the final summary prints. Rerunning is safe: the training run is found
finished in its work folder, the registry already holds the team, the champion does not change.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marlops.pipeline.submit import PipelineRun, run_local

Stage = Callable[[str], None]


@dataclass
class MainJobConfig:
    workdir: Path = Path("data")
    # training market (and the drift reference: vol_level's baseline spans ~10 days); 90 days give the small
    # budget ~4,000 higher-bar decisions to learn from (30 were too few: docs/training.md, "Budgets")
    days: float = 90.0
    seed: int = 0
    budget: str = "small"
    eval_seeds: str = "101,102"
    eval_days: float = 10.0
    replay_seed: int = 7  # the held-out day: neither a training nor an evaluation seed
    replay_days: float = 1.0
    serve: bool = True  # replay through the local KServe servers (False: the engine in this process)
    drift: bool = True
    gate: str = "{}"  # JSON of GateConfig fields for the promotion gate (validated before the pipeline runs)


@dataclass
class MainJobResult:
    pipeline: PipelineRun
    evaluation: dict[str, dict[str, Any]]  # policy → with-costs means
    report: Path | None
    replay: dict[str, Any] = field(default_factory=dict)
    audit: Path | None = None
    replay_mode: str = ""
    drift: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=dict)


def _noop(_: str) -> None:
    return None


def _evaluation(run: PipelineRun) -> tuple[dict[str, dict[str, Any]], Path | None]:
    d = Path(run.folder or "") / "evaluate" / "evaluation"
    if not (d / "report.json").exists():
        return {}, None
    report = json.loads((d / "report.json").read_text())
    return dict(report.get("aggregate", {}).get("with_costs", {})), d / "report.html"


WARM_UP_DAYS = 2.0  # the regime matrix spans 96 × 30-minute bars: two days before its first decision


def held_out_ticks(cfg: MainJobConfig) -> Any:
    """The replay's ticks: a market generated from ``replay_seed`` — two warm-up days (the agents fail
    closed while their matrices fill, as they would after a restart) and then ``replay_days``."""
    from marlops.market.synthetic import generate_market

    market = generate_market(days=cfg.replay_days + WARM_UP_DAYS, seed=cfg.replay_seed)
    return market.ticks.reset_index(drop=True)


def replay_in_process(cfg: MainJobConfig, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The champion from the registry, replayed through the decision engine in this process."""
    from marlops.agents.audit import AuditLog
    from marlops.agents.replay import replay_ticks
    from marlops.agents.runtime import AgentSet
    from marlops.registry import download_team

    team_dir = download_team(dst=cfg.workdir / "serving" / "champion")
    agents = AgentSet.load(team_dir)
    ticks = held_out_ticks(cfg)
    audit = cfg.workdir / "replay" / "decisions.jsonl"
    audit.parent.mkdir(parents=True, exist_ok=True)
    audit.unlink(missing_ok=True)
    log = AuditLog(audit)
    try:
        res = replay_ticks(ticks, agents, audit=log, progress=on_progress)
    finally:
        log.close()
    return {"summary": res.summary, "audit": audit, "ticks": len(ticks), "versions": dict(agents.versions)}


def replay_served(cfg: MainJobConfig, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The champion served by the local KServe servers (four agents + the decision server, loading
    ``models:/marlops-<agent>@champion``); every decision of the replay goes over HTTP and into the
    request log the drift job reads."""
    import shutil

    from marlops.serving.http_replay import replay_http
    from marlops.serving.launch import start_local

    wd = cfg.workdir.resolve()
    requests = wd / "requests"
    shutil.rmtree(requests, ignore_errors=True)  # the main job's own log: a rerun starts it afresh
    audit = wd / "replay" / "decisions.jsonl"
    audit.parent.mkdir(parents=True, exist_ok=True)
    audit.unlink(missing_ok=True)
    ticks = held_out_ticks(cfg)
    with start_local(
        model_uri="models:/marlops-{agent}@champion",
        feast_repo=wd / "feast",
        request_log=requests,
        log_dir=wd / "serving" / "logs",
    ) as servers:
        urls = {"decision": servers.decision_url, **servers.agent_urls}
        res = replay_http(ticks, servers.decision_url, instrument="SYNTH", progress=on_progress, audit=audit)
    return {"summary": res.summary, "audit": audit, "ticks": len(ticks), "urls": urls, "requests": requests}


def drift_check(reference: Path, current: Path, out: Path, days: float) -> dict[str, Any]:
    """Evidently drift of the replayed day's agent inputs (and outputs) against the training data; the
    current window is the held-out day only (the warm-up days before it are not scored)."""
    from datetime import timedelta

    from marlops.monitoring.config import load_config
    from marlops.monitoring.job import run_drift_job

    config = load_config(None, current={"last": timedelta(days=days)})
    job = run_drift_job(reference, current, out, config=config, webhook_urls=[])
    r = job.result
    return {
        "verdict": r.verdict,
        "drift": r.drift,
        "drifted datasets": ", ".join(r.drifted_datasets) or "-",
        "report": out / r.files.get("index", "index.html"),
    }


def run_main_job(
    cfg: MainJobConfig,
    on_stage: Stage = _noop,
    on_progress: Callable[[int], None] | None = None,
) -> MainJobResult:
    from marlops.pipeline.steps import gate_config
    from marlops.training.market import budgets

    named = budgets()  # models/team.yaml
    if cfg.budget not in named:  # before anything runs (the pipeline would only fail at its train step)
        raise ValueError(f"budget: unknown {cfg.budget!r}; expected one of {sorted(named)}")
    gate_config(cfg.gate)  # a bad --gate fails here, not at the register step after training
    wd = cfg.workdir.resolve()
    wd.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ.setdefault("MARLOPS_MLFLOW_DIR", str(wd / "mlflow"))  # the tasks inherit it
    stage_s: dict[str, float] = {}

    t = time.perf_counter()
    on_stage("training pipeline (kfp.local): features → train → evaluate → register → promote → deploy")
    params = dict(
        days=cfg.days,
        seed=cfg.seed,
        budget=cfg.budget,
        eval_seeds=cfg.eval_seeds,
        eval_days=cfg.eval_days,
        feast_dir=str(wd / "feast"),
        work_dir=str(wd / "pipeline"),
        state_dir=str(wd / "serving"),
        gate=cfg.gate,
    )
    run = run_local("training", params, wd / "kfp")
    stage_s["pipeline"] = time.perf_counter() - t
    evaluation, report = _evaluation(run)

    t = time.perf_counter()
    how = "the local KServe servers (HTTP)" if cfg.serve else "the decision engine in this process"
    on_stage(f"replaying 2 warm-up + {cfg.replay_days:g} held-out day(s) through the champion on {how}")
    replay = replay_served(cfg, on_progress) if cfg.serve else replay_in_process(cfg, on_progress)
    stage_s["serve + replay" if cfg.serve else "replay"] = time.perf_counter() - t

    paths = {"pipeline run": Path(run.folder or ""), "task log": Path(run.log or "")}
    if report is not None:
        paths["evaluation report"] = report
    paths["decisions"] = replay["audit"]
    drift: dict[str, Any] = {}
    if cfg.drift and cfg.serve:
        t = time.perf_counter()
        on_stage("drift check (Evidently): the replay's request log against the training data")
        dataset = Path(run.folder or "") / "build-features" / "dataset"
        drift = drift_check(dataset, replay["requests"], wd / "drift", cfg.replay_days)
        stage_s["drift"] = time.perf_counter() - t
        paths["drift report"] = drift.pop("report")
    return MainJobResult(
        pipeline=run,
        evaluation=evaluation,
        report=report,
        replay=replay["summary"],
        audit=replay["audit"],
        replay_mode="KServe servers over HTTP" if cfg.serve else "in-process engine",
        drift=drift,
        paths=paths,
        stage_s=stage_s,
    )
