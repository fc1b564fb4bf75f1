"""The evaluation report: one self-contained HTML page and a JSON of every figure.

Figures are matplotlib PNGs embedded as base64 (no JavaScript, opens offline, a few hundred KB for a
handful of markets; an embedded plotly.js alone would be 3.5 MB). Drawn with the object API on bare
:class:`~matplotlib.figure.Figure` objects (Agg), like ``market.charts``: no pyplot, no display.

``report.html``: the goal table (each figure with its 95 % interval, the goal, pass/fail: a claim holds
only if its interval does) and the goal checks in full; metrics tables (mean over markets, with and
without costs; per market; trips, entries, limit exits and cost share included);
per market the equity and drawdown of every policy, and the price with the true regime shaded over the
regime strips (true vs each policy's prediction); action distributions (tactical, risk) per policy;
the regime confusion matrix of every policy that predicts regimes.

``report.json``: markets, policies, the environment config, every metric of every run, the means over
markets per cost setting, confusion matrices, action distributions, skipped runs, the goal checks and
the goal table, the intervals per cost setting (:mod:`marlops.evaluation.intervals`), and the daily
returns of every policy per market with the markets' day numbers — what a later promotion gate pairs
(``daily_returns.<costs>.<policy>.<market>``, ``days.<market>``).
Non-finite numbers (a Sortino with no losing bar) are written as ``null``.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from marlops.agents.types import REGIME_NAMES, RiskAction, TacticalAction
from marlops.env.market_env import EnvConfig, MarketData
from marlops.evaluation.goals import GOAL_KEYS, check_goals, format_interval, goal_table
from marlops.evaluation.intervals import EvaluationIntervals, IntervalConfig, compute_intervals
from marlops.evaluation.runner import COST_LABEL, EpisodeRecord, EvaluationResult, evaluate
from marlops.market.calendar import DAY_NS, DAYS_PER_YEAR
from marlops.market.charts import REGIME_COLORS

if TYPE_CHECKING:  # the protocol only types the arguments
    from marlops.env.policy import TeamPolicy

MAX_LINE_POINTS = 2_000
MAX_MARKET_FIGURES = 8  # per-market charts beyond this are left out (tables and JSON keep every market)
METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # key, header, format
    ("sharpe", "Sharpe", "{:.2f}"),
    ("sortino", "Sortino", "{:.2f}"),
    ("total_return", "return", "{:+.2%}"),
    ("max_drawdown", "max DD", "{:.2%}"),
    ("turnover_per_day", "turnover/day", "{:.2f}"),
    ("hit_rate", "hit rate", "{:.0%}"),
    ("round_trips", "trips", "{:.0f}"),
    ("round_trips_per_day", "trips/day", "{:.2f}"),
    ("entries", "entries", "{:.0f}"),
    ("limit_exits", "limit exits", "{:.0f}"),
    ("cost_share", "cost share", "{:.2f}"),
    ("exposure", "exposure", "{:.0%}"),
    ("regime_balanced_accuracy", "regime bal. acc.", "{:.3f}"),
)
DAILY_DIGITS = 10  # significant digits of the daily returns in report.json (compact, exact enough to pair)
_PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#999999")


# --------------------------------------------------------------------------------------------------
# JSON


def _clean(o: Any) -> Any:
    """JSON-ready copy: numpy scalars/arrays → Python, non-finite floats → None, tuple keys → strings."""
    if isinstance(o, Mapping):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, float | np.floating):
        f = float(o)
        return f if math.isfinite(f) else None
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return _clean(dataclasses.asdict(o))
    if hasattr(o, "value") and hasattr(o, "name"):  # enums
        return o.name
    return o


def action_distribution(records: list[EpisodeRecord]) -> dict[str, dict[str, float]]:
    """Share of steps per tactical and per risk action over ``records`` (pooled)."""
    tac = np.concatenate([r.tactical for r in records]) if records else np.zeros(0, np.int64)
    risk = np.concatenate([r.risk for r in records]) if records else np.zeros(0, np.int64)
    n = max(len(tac), 1)
    return {
        "tactical": {a.name: float(np.sum(tac == a)) / n for a in TacticalAction},
        "risk": {a.name: float(np.sum(risk == a)) / n for a in RiskAction},
    }


def _records(result: EvaluationResult, policy: str, costs: bool) -> list[EpisodeRecord]:
    return [r for (_, p, c), r in result.records.items() if p == policy and c == costs]


def _names(result: EvaluationResult, team: str) -> tuple[str, str, str]:
    """(team, ablation, oracle): the goal checks name them; the defaults otherwise."""
    g = result.goals or {}
    return str(g.get("team", team)), str(g.get("ablation", "team_no_risk")), str(g.get("oracle", "oracle"))


def all_intervals(
    result: EvaluationResult, team: str = "team", config: IntervalConfig | None = None
) -> dict[bool, EvaluationIntervals]:
    """The intervals of every cost setting of ``result`` (the goals' policy names, else the defaults)."""
    t, a, o = _names(result, team)
    return {c: compute_intervals(result, t, a, o, c, config) for c in result.cost_settings()}


def _utc(ns: int) -> str:
    return np.datetime_as_string(np.datetime64(int(ns), "ns"), unit="m").replace("T", " ")


def market_periods(result: EvaluationResult) -> dict[str, dict[str, Any]]:
    """Per market: the evaluated bars' first and last bar end (UTC), their count and trading days, and
    for a walk-forward fold its training part's — what dates a fold for a reader (the JSON's "periods")."""
    out: dict[str, dict[str, Any]] = {}
    for m in result.markets:
        r = next((r for (mm, _, _), r in result.records.items() if mm == m and r.end_ns is not None), None)
        if r is None or r.end_ns is None or not len(r.end_ns):
            continue
        period: dict[str, Any] = {
            "from": _utc(int(r.end_ns[0])),
            "to": _utc(int(r.end_ns[-1])),
            "bars": r.n_steps,
            "trading_days": r.clock.days(r.n_steps),
            "calendar_days": (int(r.end_ns[-1]) - int(r.end_ns[0])) / DAY_NS,
        }
        if m in result.folds:
            period["train"] = [_utc(t) for t in result.folds[m]["train"]]
        out[m] = period
    return out


def confusion_message(result: EvaluationResult, costs: bool) -> str:
    """Why no confusion matrix is drawn, in terms of what the regime strips above it show."""
    recs = [r for (_, _, c), r in result.records.items() if c == costs]
    predicts = any(bool((r.regime_pred >= 0).any()) for r in recs)
    labelled = any(bool((r.regime_label >= 0).any()) for r in recs)
    if not predicts:
        return "No policy predicts regimes."
    if not labelled:
        return (
            "No confusion matrix: the data has no regime labels to score the predictions shown above against."
        )
    return "No confusion matrix: no scored step has both a true regime and a prediction."


def _compact(x: float) -> float | None:
    return float(f"{x:.{DAILY_DIGITS}g}") if math.isfinite(x) else None


def report_dict(
    result: EvaluationResult, intervals: Mapping[bool, EvaluationIntervals] | None = None
) -> dict[str, Any]:
    """Every figure of the evaluation as a JSON-ready dict (what report.json holds).

    ``intervals`` per cost setting (default: :func:`all_intervals` with the goals' policy names).
    """
    settings = result.cost_settings()
    ivs = dict(intervals) if intervals is not None else all_intervals(result)
    days: dict[str, list[int]] = {}
    for iv in ivs.values():
        days.update(iv.days)
    runs = [
        {"market": m, "policy": p, "costs": c, "metrics": met}
        for (m, p, c), met in sorted(
            result.metrics.items(), key=lambda kv: (kv[0][0], kv[0][1], not kv[0][2])
        )
    ]
    conf = {}
    for p in result.policies:
        cm = result.pooled_confusion(p, settings[0]) if settings else None
        if cm is not None:
            conf[p] = {"labels": list(REGIME_NAMES), "counts": cm}
    return _clean(
        {
            "markets": result.markets,
            "periods": market_periods(result),
            "policies": result.policies,
            "env_config": result.env_config,
            "runs": runs,
            "aggregate": {COST_LABEL[c]: result.aggregate(c) for c in settings},
            "confusion": conf,
            "actions": {
                COST_LABEL[c]: {p: action_distribution(_records(result, p, c)) for p in result.policies}
                for c in settings
            },
            "skipped": result.skipped,
            "goals": result.goals,
            "goal_table": [r.as_dict() for r in goal_table(result.goals)] if result.goals else [],
            "intervals": {COST_LABEL[c]: iv.as_dict() for c, iv in ivs.items()},
            "days": days,
            "daily_returns": {
                COST_LABEL[c]: {
                    p: {m: [_compact(float(x)) for x in r] for m, r in by_market.items()}
                    for p, by_market in iv.daily_returns.items()
                }
                for c, iv in ivs.items()
            },
        }
    )


# --------------------------------------------------------------------------------------------------
# figures


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _stride(n: int) -> int:
    return max(1, math.ceil(n / MAX_LINE_POINTS))


def _colors(policies: list[str]) -> dict[str, str]:
    return {p: _PALETTE[i % len(_PALETTE)] for i, p in enumerate(policies)}


def _line_styles(curves: Mapping[str, np.ndarray]) -> dict[str, tuple[str, str]]:
    """(linestyle, legend label) per policy: a curve equal to one drawn before it is dashed and labelled
    as such, so that a policy whose line lies exactly on another's (two flat policies) stays visible."""
    out: dict[str, tuple[str, str]] = {}
    for p, c in curves.items():
        twin = next((q for q in out if np.array_equal(curves[q], c)), None)
        out[p] = ("--", f"{p} (= {twin})") if twin is not None else ("-", p)
    return out


def equity_figure(result: EvaluationResult, market: str, team: str) -> Figure:
    """Equity (relative to the start) and drawdown of every policy, one column per cost setting.

    x: trading days of the market's clock. The 1.0 reference line lies beneath the policies (a flat
    policy is drawn over it, not hidden by it), the team over the other solid lines, and a curve equal
    to another's dashed on top of it.
    """
    settings = result.cost_settings()
    fig = Figure(figsize=(6.2 * len(settings), 5.6), layout="constrained")
    axes = fig.subplots(2, len(settings), sharex=True, squeeze=False, height_ratios=(2.2, 1))
    colors = _colors(result.policies)
    for j, costs in enumerate(settings):
        ax_eq, ax_dd = axes[0, j], axes[1, j]
        recs = {p: r for p in result.policies if (r := result.records.get((market, p, costs))) is not None}
        # the team keeps its own name and a solid line; a curve equal to another is dashed and drawn after
        # the solid ones, so it shows over the line it hides
        styles = _line_styles({p: recs[p].equity for p in sorted(recs, key=lambda p: p != team)})
        order = sorted(recs, key=lambda p: (styles[p][0] == "--", p == team))
        for p in order:
            r = recs[p]
            s = _stride(len(r.equity))
            x = np.arange(0, len(r.equity), s) / r.clock.bars_per_day
            lw = 2.0 if p == team else 1.1
            ls, label = styles[p]
            ax_eq.plot(x, r.equity[::s] / r.equity[0], color=colors[p], lw=lw, ls=ls, label=label, zorder=2)
            ax_dd.plot(x, -100 * r.drawdown[::s], color=colors[p], lw=lw, ls=ls, zorder=2)
        ax_eq.set_title(f"{market} · {COST_LABEL[costs].replace('_', ' ')}", fontsize=10)
        ax_eq.set_ylabel("equity / initial")
        ax_eq.axhline(1.0, color="#bbb", lw=0.6, ls=":", zorder=0)  # beneath every policy
        ax_dd.set_ylabel("drawdown %")
        ax_dd.set_xlabel("trading days from the first evaluated bar")
        for ax in (ax_eq, ax_dd):
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 8), fontsize=8)
    return fig


def fig_equity(result: EvaluationResult, market: str, team: str) -> str:
    return _png(equity_figure(result, market, team))


def regime_title(market: str, has_truth: bool) -> str:
    """The regime chart's title: it mentions the true regime's shading only when the data has labels."""
    if has_truth:
        return f"{market}: price and regimes (shading: true regime)"
    return f"{market}: price and predicted regimes (the data has no regime labels)"


def fig_regimes(result: EvaluationResult, market: str) -> str | None:
    fig = regimes_figure(result, market)
    return None if fig is None else _png(fig)


def regimes_figure(result: EvaluationResult, market: str) -> Figure | None:
    """Price (the true regime shaded where the data has labels) over strips: the true regime, when
    there is one, then each policy's prediction. ``None`` with neither labels nor predictions."""
    costs = result.cost_settings()[0]
    recs = {p: r for p in result.policies if (r := result.records.get((market, p, costs))) is not None}
    if not recs:
        return None
    any_rec = next(iter(recs.values()))
    preds = {p: r.regime_pred for p, r in recs.items() if (r.regime_pred >= 0).any()}
    has_truth = bool((any_rec.regime_label >= 0).any())
    if not preds and not has_truth:
        return None
    strips = ([("true regime", any_rec.regime_label)] if has_truth else []) + list(preds.items())
    n = any_rec.n_steps
    s = _stride(n)
    bpd = any_rec.clock.bars_per_day
    x = np.arange(0, n, s) / bpd
    cmap = ListedColormap(["#ffffff", *REGIME_COLORS])  # -1 (unknown) white
    fig = Figure(figsize=(12, 2.6 + 0.35 * len(strips)), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True, height_ratios=(2.5, 0.45 * len(strips)))
    ax_p, ax_s = axes
    ax_p.plot(x, any_rec.price[:-1:s], color="#222", lw=0.9)
    if has_truth:
        lab = any_rec.regime_label
        ax_p.imshow(
            (lab[::s] + 1)[None, :],
            aspect="auto",
            cmap=cmap,
            vmin=0,
            vmax=4,
            alpha=0.25,
            extent=(0, n / bpd, *ax_p.get_ylim()),
            interpolation="nearest",
        )
    ax_p.set_ylabel("close")
    ax_p.set_title(regime_title(market, has_truth), fontsize=10)
    grid = np.stack([np.asarray(v)[::s] + 1 for _, v in strips])
    ax_s.imshow(
        grid,
        aspect="auto",
        cmap=cmap,
        vmin=0,
        vmax=4,
        interpolation="nearest",
        extent=(0, n / bpd, len(strips), 0),
    )
    ax_s.set_yticks(np.arange(len(strips)) + 0.5, [name for name, _ in strips], fontsize=8)
    ax_s.set_xlabel("trading days from the first evaluated bar")
    from matplotlib.patches import Patch

    ax_p.legend(
        handles=[
            Patch(facecolor=c, alpha=0.6, label=nm) for nm, c in zip(REGIME_NAMES, REGIME_COLORS, strict=True)
        ],
        fontsize=8,
        loc="upper left",
        ncols=4,
    )
    return fig


def fig_actions(result: EvaluationResult, costs: bool) -> str:
    """Stacked shares of tactical and risk actions per policy (pooled over markets)."""
    pols = [p for p in result.policies if _records(result, p, costs)]
    dist = {p: action_distribution(_records(result, p, costs)) for p in pols}
    fig = Figure(figsize=(12, 0.5 * len(pols) + 1.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kind, enum, colors in (
        (axes[0], "tactical", TacticalAction, ("#009E73", "#D55E00", "#0072B2", "#BBBBBB", "#E69F00")),
        (axes[1], "risk", RiskAction, ("#BBBBBB", "#E69F00", "#D55E00", "#CC79A7")),
    ):
        left = np.zeros(len(pols))
        for a, col in zip(enum, colors, strict=True):
            w = np.array([dist[p][kind][a.name] for p in pols])
            ax.barh(np.arange(len(pols)), w, left=left, color=col, label=a.name.lower())
            left += w
        ax.set_yticks(np.arange(len(pols)), pols)
        ax.set_xlim(0, 1)
        ax.set_title(f"{kind} actions (share of steps, {COST_LABEL[costs].replace('_', ' ')})", fontsize=10)
        ax.legend(fontsize=7, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.08))
    axes[0].invert_yaxis()
    return _png(fig)


def fig_confusion(result: EvaluationResult, costs: bool) -> str | None:
    """Row-normalized regime confusion matrix (at 30-minute closes) of every predicting policy."""
    mats = {p: cm for p in result.policies if (cm := result.pooled_confusion(p, costs)) is not None}
    if not mats:
        return None
    fig = Figure(figsize=(3.6 * len(mats), 3.6), layout="constrained")
    axes = fig.subplots(1, len(mats), squeeze=False)[0]
    short = list(REGIME_NAMES)
    for ax, (p, cm) in zip(axes, mats.items(), strict=True):
        rows = cm.sum(1, keepdims=True)
        frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{frac[i, j]:.0%}\n{cm[i, j]}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if frac[i, j] > 0.6 else "black",
                )
        ax.set_xticks(range(len(short)), short, fontsize=7, rotation=30)
        ax.set_yticks(range(len(short)), short, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(p, fontsize=10)
    return _png(fig)


# --------------------------------------------------------------------------------------------------
# HTML


def _fmt(v: object, fmt: str) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and not math.isfinite(v):
        return "∞" if v > 0 else "−∞"
    return fmt.format(v)


def _table(rows: list[tuple[str, Mapping[str, Any]]], first: str, team: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in METRIC_COLUMNS)
    body = []
    for name, met in rows:
        cls = ' class="team"' if name.split(" · ")[-1] == team else ""
        cells = "".join(f"<td>{_fmt(met.get(k), f)}</td>" for k, _, f in METRIC_COLUMNS)
        body.append(f"<tr{cls}><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><tr><th>{html.escape(first)}</th>{head}</tr>{''.join(body)}</table>"


def _is_interval(v: object) -> bool:
    return isinstance(v, Mapping) and "point" in v and "low" in v and "high" in v


def _detail(v: object) -> str:
    """One figure of a goal check, readable: intervals as ``point [low, high]``, dicts as ``k: v``."""
    if _is_interval(v):
        return format_interval(v, "{:.3g}")  # type: ignore[arg-type]
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{html.escape(str(k))}: {_detail(x)}" for k, x in v.items()) + "}"
    if isinstance(v, float):
        return _fmt(v, "{:.3g}")
    return html.escape(str(v))


def _clock_text(result: EvaluationResult) -> str:
    """How the figures are annualised, from the markets' clocks (measured from their timestamps)."""
    clocks = sorted({(r.clock.bars_per_day, r.clock.bars_per_year) for r in result.records.values()})
    if not clocks:
        return "no runs"
    text = "; ".join(
        f"{d:g} bars a trading day, {y:,.0f} a year ({y / d:.1f} trading days)" for d, y in clocks
    )
    return f"Sharpe and Sortino annualized and per-day figures counted on the market's clock: {text}"


def _periods_html(periods: Mapping[str, Mapping[str, Any]]) -> str:
    """The dates each market (walk-forward fold) covers; the training part of a fold beside it."""
    if not periods:
        return ""
    folds = any("train" in v for v in periods.values())
    head = "<tr><th>market</th><th>evaluated from (UTC)</th><th>to</th><th>bars</th><th>trading days</th>"
    head += "<th>calendar days</th>" + ("<th>trained on (UTC)</th>" if folds else "") + "</tr>"
    rows = []
    for m, v in periods.items():
        train = " – ".join(v["train"]) if "train" in v else "–"
        rows.append(
            f"<tr><th>{html.escape(m)}</th><td>{v['from']}</td><td>{v['to']}</td><td>{v['bars']}</td>"
            f"<td>{v['trading_days']:.1f}</td><td>{v['calendar_days']:.1f}</td>"
            + (f"<td>{html.escape(train)}</td>" if folds else "")
            + "</tr>"
        )
    return f"<table class=periods>{head}{''.join(rows)}</table>"


def _goal_table_html(goals: Mapping[str, Any]) -> str:
    rows = goal_table(goals)
    if not rows:
        return "<p>No goal checks.</p>"
    body = "".join(
        f"<tr><th>{html.escape(r.figure)}</th><td>{html.escape(r.measured)}</td>"
        f"<td>{html.escape(r.goal)}</td><td><span class={r.status}>{r.status.upper()}</span>"
        + (f" {html.escape(r.reason)}" if r.reason else "")
        + "</td></tr>"
        for r in rows
    )
    head = "<tr><th>figure</th><th>measured [95 % interval]</th><th>goal</th><th>verdict</th></tr>"
    return f"<table class=goaltable>{head}{body}</table>"


def _goals_html(goals: Mapping[str, Any]) -> str:
    if not goals:
        return "<p>No goal checks.</p>"
    items = []
    for key in GOAL_KEYS:
        g = goals.get(key)
        if not isinstance(g, Mapping):
            continue
        st = g.get("status", "?")
        detail = ", ".join(f"{html.escape(str(k))} = {_detail(v)}" for k, v in g.items() if k != "status")
        items.append(f'<li><span class="{st}">{st.upper()}</span> <b>{key}</b>: {detail}</li>')
    return f"<ul class=goals>{''.join(items)}</ul>"


def write_report(
    result: EvaluationResult,
    out_dir: str | Path,
    team: str = "team",
    title: str = "marlops evaluation",
    intervals: Mapping[bool, EvaluationIntervals] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``out_dir``; returns their paths.

    ``intervals`` per cost setting, when the caller already has them (else computed here).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ivs = dict(intervals) if intervals is not None else all_intervals(result, team)
    data = report_dict(result, ivs)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(data, indent=2))

    settings = result.cost_settings()
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts.append(
        f"<p>{len(result.markets)} held-out market(s): {html.escape(', '.join(result.markets))}. "
        f"Policies: {html.escape(', '.join(result.policies))}. Full-length deterministic episodes "
        f"from the first warm bar; {html.escape(_clock_text(result))}; "
        "regime accuracy scored at the higher-timeframe closes. Metrics are defined in "
        "docs/evaluation.md.</p>"
    )
    parts.append(_periods_html(market_periods(result)))
    method = next(iter(ivs.values())).config if ivs else IntervalConfig()
    note = next((iv.note for iv in ivs.values() if iv.note), None)  # the same days in every cost setting
    parts.append(
        f"<h2>Goals ({'net of costs' if (result.goals or {}).get('costs', True) else 'without costs'})</h2>"
        "<p>A claim holds only if its interval does. Intervals: "
        f"{method.level:.0%}, paired day-block bootstrap over the held-out markets ({method.n_resamples:,} "
        f"resamples, seed {method.seed}); Sharpe of daily returns annualized by "
        f"√{method.days_per_year or DAYS_PER_YEAR:g} (trading days a year); "
        "max drawdown per market, its interval a Student-t over markets.</p>"
        + (f"<p><b>Note:</b> {html.escape(note)}.</p>" if note else "")
        + _goal_table_html(result.goals)
        + "<details><summary>Goal checks in full</summary>"
        + _goals_html(result.goals)
        + "</details>"
    )
    for c in settings:
        agg = result.aggregate(c)
        parts.append(f"<h2>Mean over markets · {COST_LABEL[c].replace('_', ' ')}</h2>")
        parts.append(_table(list(agg.items()), "policy", team))
    per_market = [
        (f"{m} · {p}", result.metrics[(m, p, c)])
        for c in settings
        for m in result.markets
        for p in result.policies
        if (m, p, c) in result.metrics
    ]
    parts.append(
        "<details><summary>Every run (market · policy; with costs first)</summary>"
        + _table(per_market, "run", team)
        + "</details>"
    )
    if result.skipped:
        parts.append(
            "<p>Skipped: "
            + html.escape(
                "; ".join(f"{s['policy']} on {s['market']} ({s['reason']})" for s in result.skipped)
            )
            + "</p>"
        )
    img = '<img alt="{alt}" src="data:image/png;base64,{b64}">'
    shown = result.markets[:MAX_MARKET_FIGURES]
    left_out = len(result.markets) - len(shown)
    note = (
        f"<p>Charts of the first {len(shown)} markets ({left_out} more in the tables).</p>"
        if left_out
        else ""
    )
    parts.append("<h2>Equity and drawdown</h2>" + note)
    for m in shown:
        parts.append(img.format(alt=html.escape(f"equity {m}"), b64=fig_equity(result, m, team)))
    parts.append("<h2>Regimes: true vs predicted</h2>")
    for m in shown:
        b64 = fig_regimes(result, m)
        parts.append(
            img.format(alt=html.escape(f"regimes {m}"), b64=b64) if b64 else f"<p>{m}: no regimes.</p>"
        )
    if settings:
        parts.append("<h2>Action distribution</h2>")
        parts.append(img.format(alt="actions", b64=fig_actions(result, settings[0])))
        cm = fig_confusion(result, settings[0])
        parts.append("<h2>Regime confusion (rows: true regime)</h2>")
        parts.append(
            img.format(alt="confusion", b64=cm)
            if cm
            else f"<p>{html.escape(confusion_message(result, settings[0]))}</p>"
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 1300px; }}
img {{ max-width: 100%; height: auto; border: 1px solid #ddd; margin: 0.4rem 0; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.85rem; }}
th, td {{ padding: 0.2rem 0.6rem; border-bottom: 1px solid #eee; text-align: right; }}
th:first-child {{ text-align: left; }}
tr.team {{ background: #fff7e0; }}
.pass {{ color: #fff; background: #1b7f3b; padding: 0 0.3rem; }}
.fail {{ color: #fff; background: #b2182b; padding: 0 0.3rem; }}
.skipped {{ color: #fff; background: #777; padding: 0 0.3rem; }}
ul.goals li {{ margin: 0.3rem 0; }}
table.goaltable td {{ text-align: left; }}
</style></head>
<body>
{"".join(parts)}
</body></html>
"""
    html_path = out / "report.html"
    html_path.write_text(page)
    return html_path, json_path


def evaluate_and_report(
    datasets: Mapping[str, MarketData],
    policies: Mapping[str, TeamPolicy],
    out_dir: str | Path,
    team: str = "team",
    ablation: str = "team_no_risk",
    oracle: str = "oracle",
    with_costs: tuple[bool, ...] = (True, False),
    env_config: EnvConfig | None = None,
    progress: bool = True,
    title: str = "marlops evaluation",
    regime_ceiling: float | None = None,
    interval_config: IntervalConfig | None = None,
) -> EvaluationResult:
    """Evaluate every policy on every held-out market (with and without costs), check the goals for
    ``team`` / ``ablation`` / ``oracle`` on 95 % intervals and write ``report.html`` + ``report.json``
    into ``out_dir``. ``regime_ceiling``: the measured ceiling of regime balanced accuracy, if known."""
    result = evaluate(datasets, policies, with_costs, env_config, progress)
    ivs = {
        c: compute_intervals(result, team, ablation, oracle, c, interval_config)
        for c in result.cost_settings()
    }
    costs = True in with_costs
    result.goals = check_goals(
        result, team, ablation, oracle, costs=costs, regime_ceiling=regime_ceiling, intervals=ivs.get(costs)
    )
    write_report(result, out_dir, team, title, ivs)
    return result
