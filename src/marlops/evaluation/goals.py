"""The issue's goals, checked on an :class:`~marlops.evaluation.runner.EvaluationResult` — on intervals.

A claim holds only if its 95 % interval does (:mod:`marlops.evaluation.intervals`: a paired day-block
bootstrap over the held-out markets; max drawdown with a t-interval over markets). Policies are named
by the caller (``team="team"``, ``ablation="team_no_risk"``, ``oracle="oracle"``,
``buy_and_hold="buy_and_hold"``), so the same checks run on baselines standing in for the team in tests
and on the trained team. Figures are with costs unless ``costs=False``. A check whose policies are
missing is ``"skipped"`` with the reason, never a silent pass; every other check reports its point
estimate and interval (``{"point", "low", "high", ...}``) next to its status, and a failed one says why
(``"reason"``: e.g. "team 0.00 vs hmm_momentum 0.00 — not higher"; every failed row of the goal table too).

- ``team_beats_baselines``: for every other policy but the oracle and the no-risk ablation (the baselines
  of the issue's list: buy-and-hold, momentum, HMM→momentum, random; the ablation has its own goal,
  ``risk_agent``), the lower bound of the paired daily Sharpe difference ``team − baseline`` is > 0.
- ``team_half_oracle``: the lower bound of ``Sharpe(team) − ½ Sharpe(oracle)`` is >= 0. When the
  oracle's Sharpe is <= 0 the bar is a loss and the result carries a note saying the check says little.
- ``risk_agent``: the risk agent cuts max drawdown by >= 30 % against the ablation (lower bound of the
  mean per-market cut ``1 − mdd_team / mdd_ablation``, t over markets) at a return cost <= 20 % (upper
  bound of ``(μ_ablation − μ_team) / |μ_ablation|`` on mean daily returns, 0 when the team earns more).
- ``regime_accuracy``: the lower bound of the team's regime balanced accuracy (30-minute closes, pooled
  over markets) is >= 0.85, or within 0.03 of a measured ceiling when the caller passes one
  (``regime_ceiling``: e.g. what a classifier trained on the true labels reaches on these markets).
- ``buy_and_hold_trips``: in every market, buy-and-hold opens ``1 + its limit exits`` trips: one entry,
  then one re-entry after each stop, take profit or halt, and no trip closed by itself (when the episode
  ends flat right after a limit exit, the last exit has no re-entry: ``entries == limit exits``).
- ``team_trades``: the lower bound of the team's round trips per day is >= 1.

:func:`goal_table` turns the checks into the rows of the report's goal table (figure, measured value
with its interval, goal, status).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from marlops.evaluation.intervals import EvaluationIntervals, Interval, IntervalConfig, compute_intervals
from marlops.evaluation.runner import EvaluationResult

SHARPE_FRACTION_OF_ORACLE = 0.5
MIN_DRAWDOWN_CUT = 0.30
MAX_RETURN_COST = 0.20
MIN_BALANCED_ACCURACY = 0.85
CEILING_MARGIN = 0.03
MIN_ROUND_TRIPS_PER_DAY = 1.0
GOAL_KEYS = (
    "buy_and_hold_trips",
    "regime_accuracy",
    "team_beats_baselines",
    "team_half_oracle",
    "team_trades",
    "risk_agent",
)
_EPS = 1e-9  # thresholds are met at equality, whatever the last bit of a float division says


def _skip(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


def _status(ok: bool) -> str:
    return "pass" if ok else "fail"


def _has_records(result: EvaluationResult, costs: bool) -> bool:
    return any(c == costs for (_, _, c) in result.records)


# --------------------------------------------------------------------------------------------------
# why a check failed: one line a reader can act on, beside the verdict


def _num(v: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def _low_reason(iv: Interval, bound: float, what: str, fmt: str = "{:.2f}") -> str:
    """Why ``iv`` is not above ``bound``: no interval, or its lower bound is not."""
    if iv.low is None:
        return f"no interval for {what}"
    return f"{what}: lower bound {fmt.format(iv.low)} < {fmt.format(bound)}"


def versus_reason(
    team: str, team_sharpe: float | None, other: str, other_sharpe: float | None, d: Interval
) -> str:
    """E.g. "team 0.00 vs hmm_momentum 0.00 — not higher"."""
    head = f"{team} {_num(team_sharpe)} vs {other} {_num(other_sharpe)}"
    if d.point is None or d.low is None:
        return f"{head} — no interval for the difference"
    if d.point <= 0:
        return f"{head} — not higher"
    return f"{head} — higher, but the difference's lower bound {d.low:.2f} is not > 0 (within the noise)"


# --------------------------------------------------------------------------------------------------
# the checks, each a pure function of the intervals (and, for the trips, of the per-run metrics)


def check_beats_baselines(iv: EvaluationIntervals, others: Sequence[str]) -> dict[str, Any]:
    """Team vs every policy in ``others``: beaten when the paired Sharpe difference's lower bound > 0."""
    if iv.team not in iv.policies:
        return _skip(f"no runs of the team policy {iv.team!r}")
    present = [p for p in others if p in iv.versus]
    if not present:
        return _skip("no baseline to compare with")
    beaten = [p for p in present if iv.versus[p].sharpe.above(0.0)]
    ts = iv.policies[iv.team].sharpe.point
    reasons = {
        p: versus_reason(iv.team, ts, p, iv.policies[p].sharpe.point, iv.versus[p].sharpe)
        for p in present
        if p not in beaten
    }
    return {
        "status": _status(len(beaten) == len(present)),
        **({"reason": "; ".join(reasons.values())} if reasons else {}),
        "goal": "team Sharpe − baseline Sharpe > 0 (lower 95 % bound)",
        "team_sharpe": iv.policies[iv.team].sharpe.as_dict(),
        "baseline_sharpe": {p: iv.policies[p].sharpe.as_dict() for p in present},
        "sharpe_difference": {p: iv.versus[p].sharpe.as_dict() for p in present},
        "mean_daily_return_difference": {p: iv.versus[p].mean_daily_return.as_dict() for p in present},
        "beaten": beaten,
        "not_beaten": [p for p in present if p not in beaten],
    }


def check_half_oracle(iv: EvaluationIntervals) -> dict[str, Any]:
    if iv.team not in iv.policies or iv.oracle not in iv.policies:
        return _skip(f"needs runs of {iv.team!r} and {iv.oracle!r}")
    d = iv.half_oracle
    ts, osh = iv.policies[iv.team].sharpe, iv.policies[iv.oracle].sharpe
    ok = d.above(-_EPS, strict=False)
    res: dict[str, Any] = {
        "status": _status(ok),
        "goal": f"team Sharpe − {SHARPE_FRACTION_OF_ORACLE} × oracle Sharpe >= 0 (lower 95 % bound)",
        "difference": d.as_dict(),
        "team_sharpe": ts.as_dict(),
        "oracle_sharpe": osh.as_dict(),
        "ratio": ts.point / osh.point if ts.point is not None and osh.point else None,
    }
    if osh.point is not None and osh.point <= 0:
        res["note"] = "the oracle's Sharpe is <= 0: half of it is a loss, the check says little"
    if not ok:
        half = None if osh.point is None else SHARPE_FRACTION_OF_ORACLE * osh.point
        res["reason"] = f"{iv.team} {_num(ts.point)} vs ½ × {iv.oracle} {_num(half)} — " + (
            "no interval" if d.low is None else f"the difference's lower bound {d.low:.2f} < 0"
        )
    return res


def check_risk_agent(iv: EvaluationIntervals) -> dict[str, Any]:
    if iv.team not in iv.policies or iv.ablation not in iv.policies:
        return _skip(f"needs runs of {iv.team!r} and {iv.ablation!r}")
    cut, cost = iv.drawdown_cut, iv.return_cost
    why = [r for r in (cut_reason(cut), cost_reason(cost)) if r]
    res: dict[str, Any] = {
        "status": _status(not why),
        **({"reason": "; ".join(why)} if why else {}),
        "goal": f"drawdown cut >= {MIN_DRAWDOWN_CUT:.0%} (lower bound) at a return cost "
        f"<= {MAX_RETURN_COST:.0%} (upper bound)",
        "drawdown_cut": cut.as_dict(),
        "drawdown_cut_per_market": dict(iv.drawdown_cut_per_market),
        "return_cost": cost.as_dict(),
        "team_max_drawdown": iv.policies[iv.team].max_drawdown.as_dict(),
        "ablation_max_drawdown": iv.policies[iv.ablation].max_drawdown.as_dict(),
        "min_drawdown_cut": MIN_DRAWDOWN_CUT,
        "max_return_cost": MAX_RETURN_COST,
    }
    if cut.low is None:
        res["note"] = (
            "no interval for the drawdown cut: it needs at least two markets (max drawdown is a path "
            "property, its interval is over markets) and an ablation that lost somewhere"
        )
    return res


def cut_reason(cut: Interval) -> str:
    """Why the drawdown cut fails its goal ("" when it meets it)."""
    if cut.above(MIN_DRAWDOWN_CUT - _EPS, strict=False):
        return ""
    return _low_reason(cut, MIN_DRAWDOWN_CUT, "the drawdown cut", "{:.0%}")


def cost_reason(cost: Interval) -> str:
    """Why the risk agent's return cost fails its goal ("" when it meets it)."""
    if cost.below(MAX_RETURN_COST + _EPS, strict=False):
        return ""
    if cost.high is None:
        return "no interval for the return cost"
    return f"return cost: upper bound {cost.high:.0%} > {MAX_RETURN_COST:.0%}"


def check_regime_accuracy(iv: EvaluationIntervals, ceiling: float | None = None) -> dict[str, Any]:
    if iv.team not in iv.policies:
        return _skip(f"no runs of the team policy {iv.team!r}")
    acc = iv.policies[iv.team].regime_balanced_accuracy
    if acc.point is None:
        return _skip(f"{iv.team!r} reports no regime_pred, or the markets have no labels")
    required = (
        MIN_BALANCED_ACCURACY if ceiling is None else min(MIN_BALANCED_ACCURACY, ceiling - CEILING_MARGIN)
    )
    goal = f">= {MIN_BALANCED_ACCURACY}" + (
        f", or within {CEILING_MARGIN} of the ceiling {ceiling:.3f}" if ceiling is not None else ""
    )
    ok = acc.above(required - _EPS, strict=False)
    return {
        "status": _status(ok),
        **({} if ok else {"reason": _low_reason(acc, required, "the balanced accuracy", "{:.3f}")}),
        "goal": goal + " (lower 95 % bound)",
        "balanced_accuracy": acc.as_dict(),
        "threshold": MIN_BALANCED_ACCURACY,
        "ceiling": ceiling,
        "required": required,
    }


def check_team_trades(iv: EvaluationIntervals) -> dict[str, Any]:
    if iv.team not in iv.policies:
        return _skip(f"no runs of the team policy {iv.team!r}")
    rt = iv.policies[iv.team].round_trips_per_day
    ok = rt.above(MIN_ROUND_TRIPS_PER_DAY - _EPS, strict=False)
    return {
        "status": _status(ok),
        **({} if ok else {"reason": _low_reason(rt, MIN_ROUND_TRIPS_PER_DAY, "the round trips per day")}),
        "goal": f">= {MIN_ROUND_TRIPS_PER_DAY:g} round trip per day (lower 95 % bound)",
        "round_trips_per_day": rt.as_dict(),
        "threshold": MIN_ROUND_TRIPS_PER_DAY,
    }


def check_buy_and_hold_trips(
    result: EvaluationResult, policy: str = "buy_and_hold", costs: bool = True
) -> dict[str, Any]:
    """Buy-and-hold's trips in every market: ``entries == 1 + limit exits`` (see the module docstring)."""
    runs = {m: met for (m, p, c), met in result.metrics.items() if p == policy and c == costs}
    if not runs:
        return _skip(f"no runs of {policy!r}")
    if any(met.get("entries") is None or met.get("limit_exits") is None for met in runs.values()):
        return _skip(f"the runs of {policy!r} have no trip accounting (entries, limit_exits)")
    per_market: dict[str, dict[str, Any]] = {}
    for m in [m for m in result.markets if m in runs]:
        met = runs[m]
        entries, limits = int(met["entries"] or 0), int(met["limit_exits"] or 0)
        closes = int(met.get("round_trips") or 0)
        ends_open = entries > closes
        expected = limits + (1 if ends_open else 0)
        per_market[m] = {
            "entries": entries,
            "limit_exits": limits,
            "own_exits": closes - limits,
            "ends_open": ends_open,
            "expected_entries": expected,
            "ok": entries >= 1 and entries == expected,
        }
    bad = [
        f"{m}: never entered"
        if v["entries"] == 0
        else f"{m}: {v['entries']} entries, expected {v['expected_entries']}"
        for m, v in per_market.items()
        if not v["ok"]
    ]
    return {
        "status": _status(not bad),
        **({"reason": "; ".join(bad)} if bad else {}),
        "goal": "entries = 1 + the limit exits it hits, in every market",
        "policy": policy,
        "markets": per_market,
    }


# --------------------------------------------------------------------------------------------------
# all of them


def check_goals(
    result: EvaluationResult,
    team: str = "team",
    ablation: str = "team_no_risk",
    oracle: str = "oracle",
    baselines: Sequence[str] | None = None,
    costs: bool = True,
    *,
    buy_and_hold: str = "buy_and_hold",
    regime_ceiling: float | None = None,
    intervals: EvaluationIntervals | None = None,
    interval_config: IntervalConfig | None = None,
) -> dict[str, Any]:
    """Every goal check (see the module docstring) as a JSON-ready dict.

    ``intervals``: already computed for these policies and this cost setting (else computed here from
    ``result.records``; without records every interval check is skipped, with the reason).
    ``regime_ceiling``: the measured ceiling of regime balanced accuracy, when the caller has one.
    """
    out: dict[str, Any] = {"costs": costs, "team": team, "ablation": ablation, "oracle": oracle}
    out["buy_and_hold_trips"] = check_buy_and_hold_trips(result, buy_and_hold, costs)
    iv = intervals
    if iv is None and _has_records(result, costs):
        iv = compute_intervals(result, team, ablation, oracle, costs, interval_config)
    if iv is None:
        why = _skip("no episode records in this cost setting: no interval can be formed")
        for key in (
            "regime_accuracy",
            "team_beats_baselines",
            "team_half_oracle",
            "team_trades",
            "risk_agent",
        ):
            out[key] = dict(why)
        return out
    if (iv.team, iv.ablation, iv.oracle, iv.costs) != (team, ablation, oracle, costs):
        raise ValueError(
            f"intervals: computed for {iv.team!r}/{iv.ablation!r}/{iv.oracle!r} (costs {iv.costs}), "
            f"the goals name {team!r}/{ablation!r}/{oracle!r} (costs {costs})"
        )
    others = [
        p for p in (baselines if baselines is not None else iv.policies) if p not in (team, oracle, ablation)
    ]
    out["regime_accuracy"] = check_regime_accuracy(iv, regime_ceiling)
    out["team_beats_baselines"] = check_beats_baselines(iv, others)
    out["team_half_oracle"] = check_half_oracle(iv)
    out["team_trades"] = check_team_trades(iv)
    out["risk_agent"] = check_risk_agent(iv)
    return out


# --------------------------------------------------------------------------------------------------
# the goal table


@dataclass(frozen=True)
class GoalRow:
    """One row of the goal table: a figure, its measured value (point and interval), the goal, the verdict."""

    figure: str
    measured: str  # the point estimate and its 95 % interval, formatted
    goal: str
    status: str  # pass | fail | skipped
    interval: dict[str, Any] | None = None  # the interval behind ``measured``, when there is one
    check: str = ""  # the goal check the row belongs to
    reason: str = ""  # why a failed row failed (a skipped row: why it was skipped); "" on a pass

    @property
    def verdict(self) -> str:
        """The status with its reason: "fail: team 0.00 vs hmm 0.00 — not higher"."""
        return f"{self.status}: {self.reason}" if self.reason else self.status

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iv(d: Mapping[str, Any] | None) -> Interval:
    if not isinstance(d, Mapping):
        return Interval(None, None, None)
    return Interval(d.get("point"), d.get("low"), d.get("high"))


def format_interval(d: Mapping[str, Any] | None, fmt: str = "{:.2f}") -> str:
    """``point [low, high]``; "–" without a point, "(no interval)" without bounds."""
    iv = _iv(d)
    if iv.point is None:
        return "–"
    if iv.low is None or iv.high is None:
        return f"{fmt.format(iv.point)} (no interval)"
    return f"{fmt.format(iv.point)} [{fmt.format(iv.low)}, {fmt.format(iv.high)}]"


def _row(
    check: str,
    figure: str,
    goal: Mapping[str, Any],
    measured: str,
    target: str,
    interval: Mapping[str, Any] | None = None,
    ok: bool | None = None,
    reason: str | None = None,
) -> GoalRow:
    """A row of ``check``; ``ok`` overrides the check's status for a row that is one part of it, and
    ``reason`` the check's reason (a part's own); a passing row carries none."""
    status = str(goal.get("status", "skipped"))
    if status == "skipped":
        return GoalRow(figure, "–", target, status, None, check, str(goal.get("reason", "")))
    if ok is not None:
        status = _status(ok)
    why = "" if status == "pass" else (reason if reason is not None else str(goal.get("reason", "")))
    return GoalRow(figure, measured, target, status, dict(interval) if interval else None, check, why)


def _trips_text(per_market: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for m, v in per_market.items():
        text = f"{m}: {v['entries']} entries, {v['limit_exits']} limit exits"
        if v.get("own_exits"):
            text += f", {v['own_exits']} own exits"
        parts.append(text + ("" if v.get("ends_open") else ", ends flat"))
    return "; ".join(parts)


def goal_table(goals: Mapping[str, Any]) -> list[GoalRow]:
    """The goal table of :func:`check_goals`' result, in the issue's order (one row per baseline)."""
    team = goals.get("team", "team")
    rows: list[GoalRow] = []
    g = goals.get("buy_and_hold_trips") or {}
    rows.append(
        _row(
            "buy_and_hold_trips",
            "buy-and-hold round trips per episode",
            g,
            _trips_text(g.get("markets") or {}),
            "entries = 1 + the limit exits it hits",
        )
    )
    g = goals.get("regime_accuracy") or {}
    acc = g.get("balanced_accuracy")
    target = str(g.get("goal", f">= {MIN_BALANCED_ACCURACY}")).removesuffix(" (lower 95 % bound)")
    rows.append(
        _row(
            "regime_accuracy",
            f"{team} regime balanced accuracy",
            g,
            format_interval(acc, "{:.3f}"),
            target,
            acc,
        )
    )
    g = goals.get("team_beats_baselines") or {}
    diffs: Mapping[str, Any] = g.get("sharpe_difference") or {}
    if not diffs:
        rows.append(_row("team_beats_baselines", f"{team} Sharpe − baselines' Sharpe", g, "–", "> 0"))
    ts = _iv(g.get("team_sharpe")).point
    for p, d in diffs.items():
        bs = _iv((g.get("baseline_sharpe") or {}).get(p)).point
        rows.append(
            _row(
                "team_beats_baselines",
                f"{team} Sharpe − {p} Sharpe",
                g,
                format_interval(d),
                "> 0",
                d,
                _iv(d).above(0.0),
                versus_reason(team, ts, p, bs, _iv(d)),
            )
        )
    g = goals.get("team_half_oracle") or {}
    d = g.get("difference")
    rows.append(
        _row("team_half_oracle", f"{team} Sharpe − ½ oracle Sharpe", g, format_interval(d), ">= 0", d)
    )
    g = goals.get("team_trades") or {}
    d = g.get("round_trips_per_day")
    rows.append(_row("team_trades", f"{team} round trips per day", g, format_interval(d), ">= 1", d))
    g = goals.get("risk_agent") or {}
    cut, cost = g.get("drawdown_cut"), g.get("return_cost")
    cut_ok = _iv(cut).above(MIN_DRAWDOWN_CUT - _EPS, strict=False)
    cost_ok = _iv(cost).below(MAX_RETURN_COST + _EPS, strict=False)
    rows.append(
        _row(
            "risk_agent",
            "risk agent: max drawdown cut vs its ablation",
            g,
            format_interval(cut, "{:.0%}"),
            f">= {MIN_DRAWDOWN_CUT:.0%}",
            cut,
            cut_ok,
            cut_reason(_iv(cut)),
        )
    )
    rows.append(
        _row(
            "risk_agent",
            "risk agent: return given up vs its ablation",
            g,
            format_interval(cost, "{:.0%}"),
            f"<= {MAX_RETURN_COST:.0%}",
            cost,
            cost_ok,
            cost_reason(_iv(cost)),
        )
    )
    return rows
