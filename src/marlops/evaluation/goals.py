"""The issue's goals, checked on an :class:`~marlops.evaluation.runner.EvaluationResult`.

Policies are named by the caller (``team="team"``, ``ablation="team_no_risk"``, ``oracle="oracle"``),
so the same checks run on baselines standing in for the team in tests and on the trained team once it
is plugged in. Every figure is the mean over the held-out markets of the per-market metric, with costs
unless ``costs=False``. A check whose policies are missing is ``"skipped"`` with the reason, never a
silent pass.

- ``team_beats_baselines``: the team's Sharpe is above every other policy's but the oracle's (the
  no-risk ablation is one of the baselines, as in the issue's list).
- ``team_half_oracle``: team Sharpe >= ``half`` × oracle Sharpe. Read literally; when the oracle's
  Sharpe is <= 0 the bar is a loss and the result carries a note saying the check says little.
- ``risk_agent``: the risk agent cuts max drawdown by >= 30 % against the ablation,
  ``1 − mdd_team / mdd_ablation >= 0.30``, at a return cost <= 20 %,
  ``(ret_ablation − ret_team) / |ret_ablation| <= 0.20`` (0 when the team returns at least as much).
- ``regime_accuracy``: the team's regime balanced accuracy (scored at the 30-minute closes) >= 0.85.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from marlops.evaluation.runner import EvaluationResult

SHARPE_FRACTION_OF_ORACLE = 0.5
MIN_DRAWDOWN_CUT = 0.30
MAX_RETURN_COST = 0.20
MIN_BALANCED_ACCURACY = 0.85
_EPS = 1e-9  # thresholds are met at equality, whatever the last bit of a float division says


def _skip(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


def _status(ok: bool) -> str:
    return "pass" if ok else "fail"


def check_goals(
    result: EvaluationResult,
    team: str = "team",
    ablation: str = "team_no_risk",
    oracle: str = "oracle",
    baselines: Sequence[str] | None = None,
    costs: bool = True,
) -> dict[str, Any]:
    """Every goal check (see the module docstring) as a JSON-ready dict."""
    agg = result.aggregate(costs)
    out: dict[str, Any] = {"costs": costs, "team": team, "ablation": ablation, "oracle": oracle}
    t = agg.get(team)
    others = [p for p in (baselines if baselines is not None else agg) if p not in (team, oracle)]

    # -- Sharpe against every baseline but the oracle
    if t is None:
        out["team_beats_baselines"] = _skip(f"no runs of the team policy {team!r}")
    elif not others:
        out["team_beats_baselines"] = _skip("no baseline to compare with")
    else:
        sharpes = {p: agg[p]["sharpe"] for p in others if p in agg}
        beaten = [p for p, s in sharpes.items() if s is not None and t["sharpe"] > s]
        out["team_beats_baselines"] = {
            "status": _status(len(beaten) == len(sharpes)),
            "team_sharpe": t["sharpe"],
            "baseline_sharpe": sharpes,
            "beaten": beaten,
            "not_beaten": [p for p in sharpes if p not in beaten],
        }

    # -- at least half the oracle's Sharpe
    o = agg.get(oracle)
    if t is None or o is None:
        out["team_half_oracle"] = _skip(f"needs runs of {team!r} and {oracle!r}")
    else:
        ts, osh = t["sharpe"] or 0.0, o["sharpe"] or 0.0
        res: dict[str, Any] = {
            "status": _status(ts >= SHARPE_FRACTION_OF_ORACLE * osh),
            "team_sharpe": ts,
            "oracle_sharpe": osh,
            "required": SHARPE_FRACTION_OF_ORACLE * osh,
            "ratio": ts / osh if osh != 0 else None,
        }
        if osh <= 0:
            res["note"] = "the oracle's Sharpe is <= 0: half of it is a loss, the check says little"
        out["team_half_oracle"] = res

    # -- the risk agent against the no-risk ablation
    a = agg.get(ablation)
    if t is None or a is None:
        out["risk_agent"] = _skip(f"needs runs of {team!r} and {ablation!r}")
    else:
        mdd_t, mdd_a = t["max_drawdown"] or 0.0, a["max_drawdown"] or 0.0
        ret_t, ret_a = t["total_return"] or 0.0, a["total_return"] or 0.0
        cut = 1.0 - mdd_t / mdd_a if mdd_a > 0 else (0.0 if mdd_t == 0 else -float("inf"))
        if ret_t >= ret_a:
            cost = 0.0
        else:
            cost = (ret_a - ret_t) / abs(ret_a) if ret_a != 0 else float("inf")
        out["risk_agent"] = {
            "status": _status(cut >= MIN_DRAWDOWN_CUT - _EPS and cost <= MAX_RETURN_COST + _EPS),
            "team_max_drawdown": mdd_t,
            "ablation_max_drawdown": mdd_a,
            "drawdown_cut": cut,
            "team_return": ret_t,
            "ablation_return": ret_a,
            "return_cost": cost,
            "min_drawdown_cut": MIN_DRAWDOWN_CUT,
            "max_return_cost": MAX_RETURN_COST,
        }

    # -- regime balanced accuracy
    if t is None:
        out["regime_accuracy"] = _skip(f"no runs of the team policy {team!r}")
    elif t.get("regime_balanced_accuracy") is None:
        out["regime_accuracy"] = _skip(f"{team!r} reports no regime_pred, or the markets have no labels")
    else:
        acc = float(t["regime_balanced_accuracy"])  # type: ignore[arg-type]
        out["regime_accuracy"] = {
            "status": _status(acc >= MIN_BALANCED_ACCURACY - _EPS),
            "balanced_accuracy": acc,
            "threshold": MIN_BALANCED_ACCURACY,
        }
    return out
