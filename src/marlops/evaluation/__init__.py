"""Evaluation of trained teams against baselines: metrics, walk-forward splits, HTML reports.

The high-level entry points (``marlops evaluate`` calls them):

- :func:`~marlops.evaluation.runner.synthetic_market_data` — a held-out reference synthetic market;
- :func:`~marlops.evaluation.baselines.default_baselines` — every baseline, the HMM fitted on training data;
- :func:`~marlops.evaluation.report.evaluate_and_report` — run, check the goals, write report.html/json.

docs/evaluation.md describes the metrics, the baselines and the goal checks. The names load on first use
(the package is light to import: ``marlops evaluate``'s module is imported at the CLI's start-up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from marlops.env.market_env import synthetic_market_data
    from marlops.evaluation.baselines import default_baselines
    from marlops.evaluation.goals import check_goals
    from marlops.evaluation.report import evaluate_and_report, write_report
    from marlops.evaluation.runner import (
        EpisodeRecord,
        EvaluationResult,
        Split,
        evaluate,
        evaluate_walk_forward,
        market_data_from_dataset,
        run_policy,
        walk_forward_splits,
    )

_WHERE = {
    "synthetic_market_data": "marlops.env.market_env",
    "default_baselines": "marlops.evaluation.baselines",
    "check_goals": "marlops.evaluation.goals",
    "evaluate_and_report": "marlops.evaluation.report",
    "write_report": "marlops.evaluation.report",
    **dict.fromkeys(
        ("EpisodeRecord", "EvaluationResult", "Split", "evaluate", "evaluate_walk_forward",
         "market_data_from_dataset", "run_policy", "walk_forward_splits"),
        "marlops.evaluation.runner",
    ),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "EpisodeRecord",
    "EvaluationResult",
    "Split",
    "check_goals",
    "default_baselines",
    "evaluate",
    "evaluate_and_report",
    "evaluate_walk_forward",
    "market_data_from_dataset",
    "run_policy",
    "synthetic_market_data",
    "walk_forward_splits",
    "write_report",
]
