"""The trained team on held-out synthetic markets: what ``marlops evaluate`` and the pipeline's
evaluate step both run, so the figures the promotion gate compares are computed one way."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from marlops.env.market_env import synthetic_market_data
from marlops.evaluation.baselines import default_baselines
from marlops.evaluation.report import evaluate_and_report
from marlops.evaluation.runner import EvaluationResult


def check_seeds(held_out: Sequence[int], fit: Sequence[int], model: str | Path | None = None) -> None:
    """Held-out seeds must differ from the HMM's fit seeds and from the seeds the team trained on."""
    if not held_out:
        raise ValueError("seeds: at least one held-out seed is needed")
    if set(held_out) & set(fit):
        raise ValueError("seeds: held-out seeds must differ from the fit seeds")
    summary = Path(model) / "summary.json" if model is not None else None
    if summary is not None and summary.exists():
        cfg = json.loads(summary.read_text()).get("config", {})
        used = set() if cfg.get("dataset") else set(cfg.get("train_seeds", []))
        if used & set(held_out):
            raise ValueError(f"seeds: {sorted(used & set(held_out))} were used in training")


def evaluate_team_held_out(
    model: str | Path,
    out: str | Path,
    held_out: Sequence[int] = (101, 102),
    fit: Sequence[int] = (1, 2),
    days: float = 30.0,
    progress: bool = True,
) -> EvaluationResult:
    """Baselines (the HMM fitted on ``fit`` seeds) and the team + its no-risk ablation on the ``held_out``
    seeds, with and without costs; writes ``report.html`` and ``report.json`` into ``out``."""
    from marlops.training.market import load_team  # torch: only when a team is evaluated

    check_seeds(held_out, fit, model)
    team = load_team(model)
    baselines = default_baselines([synthetic_market_data(s, days) for s in fit])
    policies = {**baselines, "team": team, "team_no_risk": team.without_risk()}
    markets = {f"seed {s}": synthetic_market_data(s, days) for s in held_out}
    title = f"marlops evaluation — {model}"
    return evaluate_and_report(markets, policies, out, title=title, progress=progress)
