"""The trained team on held-out synthetic markets: what ``marlops evaluate`` and the pipeline's
evaluate step both run, so the figures the promotion gate compares are computed one way; and
:func:`evaluate_team`, the command's whole job (those markets, or walk-forward over a dataset)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from marlops.env.market_env import synthetic_market_data
from marlops.evaluation.baselines import default_baselines
from marlops.evaluation.report import evaluate_and_report
from marlops.evaluation.runner import EvaluationResult

# The synthetic markets the evaluation (and the goals) are measured on by default: nothing may be chosen on
# them (training uses its validation_seed, tuning too: marlops.tuning refuses these).
HELD_OUT_SEEDS: tuple[int, ...] = (101, 102)


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
    held_out: Sequence[int] = HELD_OUT_SEEDS,
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


class EvaluationInputError(ValueError):
    """A bad input to :func:`evaluate_team`; the message starts with the option at fault."""


def evaluate_team(
    model: Path,
    out: Path,
    held_out: Sequence[int],
    fit: Sequence[int],
    days: float,
    data: Path | None = None,
    folds: int = 4,
    allow_overlap: bool = False,
    warn: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """``marlops evaluate``: the team in ``model`` on the ``held_out`` seeds (:func:`evaluate_team_held_out`)
    or, given ``data``, walk-forward over that dataset in ``folds`` folds with the instrument's own costs;
    writes report.html and report.json into ``out``. An :class:`EvaluationInputError`'s message starts
    with the option at fault (``model``, ``seeds``, ``data``). A model whose recorded training range
    reaches the first test block is refused unless ``allow_overlap`` (then ``warn`` is told: its figures
    are in-sample)."""
    from marlops.training.market import load_team  # torch: only when a team is evaluated

    try:
        team = load_team(model)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise EvaluationInputError(
            f"model {model}: no trained agents there ({e}); run `marlops train`"
        ) from None
    try:
        check_seeds(held_out, fit, model)
    except ValueError as e:
        raise EvaluationInputError(str(e)) from None
    if data is None:
        return evaluate_team_held_out(model, out, held_out, fit, days)
    return _walk_forward(team, model, out, fit, days, data, folds, allow_overlap, warn)


def _walk_forward(
    team: object,
    model: Path,
    out: Path,
    fit: Sequence[int],
    days: float,
    data: Path,
    folds: int,
    allow_overlap: bool,
    warn: Callable[[str], None] | None,
) -> EvaluationResult:
    from marlops.env.market_env import env_config_for_dataset
    from marlops.evaluation.baselines import HMMRegimeClassifier, hmm_policy
    from marlops.evaluation.goals import check_goals
    from marlops.evaluation.report import write_report
    from marlops.evaluation.runner import (
        MIN_TRAIN_DAYS,
        evaluate_walk_forward,
        market_data_from_dataset,
        walk_forward_splits,
    )
    from marlops.market.dataset import MarketDataset
    from marlops.training.holdout import model_summary, overlap_error

    baselines = default_baselines([synthetic_market_data(s, days) for s in fit])
    policies = {**baselines, "team": team, "team_no_risk": team.without_risk()}  # type: ignore[attr-defined]
    try:
        dataset = MarketDataset.load(data)
        full = market_data_from_dataset(dataset)
        env_config = env_config_for_dataset(dataset)  # the instrument's own costs, if meta.json has them
        # a week of the market's own trading days, not of 5-minute bars
        splits = walk_forward_splits(
            len(full), folds, min_train=round(MIN_TRAIN_DAYS * full.clock.bars_per_day)
        )
    except (FileNotFoundError, ValueError) as e:
        raise EvaluationInputError(f"data {data}: {e}") from None
    overlap = overlap_error(model_summary(model), full, str(data), splits[0].test[0])
    if overlap and not allow_overlap:
        raise EvaluationInputError(
            f"model {model}: {overlap}; --allow-overlap evaluates it anyway (in-sample)"
        )
    if overlap and warn is not None:
        warn(f"model {model}: {overlap} (--allow-overlap)")
    wf = {k: v for k, v in policies.items() if k not in ("hmm_momentum", "oracle")}
    wf["hmm_momentum"] = lambda train: hmm_policy(HMMRegimeClassifier().fit(train))
    if (full.regime_label >= 0).any():
        wf["oracle"] = baselines["oracle"]
    result = evaluate_walk_forward(full, splits, wf, env_config=env_config, market=data.name)
    result.goals = check_goals(result)
    write_report(result, out, "team", f"marlops walk-forward evaluation — {data}")
    return result
