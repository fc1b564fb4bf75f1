"""The promotion gate: a pure function of the challenger's and the champion's evaluation figures.

Figures are the means over the held-out markets that ``marlops evaluate`` writes to ``report.json``
(``aggregate.with_costs.team``): ``sharpe``, ``max_drawdown`` (a positive fraction, 0.12 = 12 %),
``total_return``, ``regime_balanced_accuracy`` … :func:`evaluate_gate` reads only these dicts; where
they come from (MLflow run metrics) is :mod:`marlops.registry.aliases`' business.

Rules, in order (every failing rule is reported, not just the first):

- the challenger has figures at all (an unevaluated team is never promoted);
- trades (``require_trades``): the challenger traded on the held-out markets (exposure, entries or
  round trips above 0). A team that never trades has a Sharpe of 0 and no drawdown, which can look
  like a win; it is not a trading model, champion or not. It stays registered, just not promoted;
- ``min_sharpe`` (optional): the challenger's Sharpe is at least this, champion or not;
- ``required_goals``: each named goal of the challenger's report passed;
- no champion yet → promote (after the rules above);
- both were evaluated on the same markets (when both lists are known and ``require_same_markets``);
- Sharpe, **paired** when both sides' daily returns are known (report.json's ``daily_returns``, same
  markets and days): a paired day-block bootstrap of ``Sharpe(challenger) − Sharpe(champion)`` on the
  daily returns (:mod:`marlops.registry.bootstrap`); promote only if the point estimate is
  ``> min_sharpe_gain`` **and** the lower 95 % bound is ``> −sharpe_noise_margin``: better on the point
  estimate and not worse beyond the margin with 95 % confidence. Otherwise (an older report without
  daily returns, different days) the means are compared, ``challenger − champion > min_sharpe_gain``,
  and the check's detail says so. A tie never beats the champion;
- drawdown: ``challenger − champion <= max_drawdown_increase`` (absolute, in fractions);
- regime balanced accuracy: ``champion − challenger <= max_regime_accuracy_drop`` (skipped when either
  side has no figure, e.g. markets without regime labels);
- return (optional): ``champion − challenger <= max_return_drop``.

No MLflow here: the gate is tested as a plain function and reused by the retraining pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from marlops.registry.bootstrap import N_RESAMPLES, paired_sharpe_difference

Figures = Mapping[str, float | None]
TRADE_FIGURES = ("exposure", "entries", "round_trips")


@dataclass(frozen=True)
class DailyReturns:
    """One policy's daily returns per held-out market, and the markets' day numbers (what gets paired)."""

    returns: dict[str, np.ndarray]
    days: dict[str, list[int]] = field(default_factory=dict)

    @property
    def n_days(self) -> int:
        return sum(len(v) for v in self.returns.values())


def daily_returns_from_report(
    report: Mapping[str, Any], policy: str = "team", costs: str = "with_costs"
) -> DailyReturns | None:
    """``daily_returns.<costs>.<policy>`` and ``days`` of a report.json (None when it has none)."""
    by_market = ((report.get("daily_returns") or {}).get(costs) or {}).get(policy)
    if not isinstance(by_market, Mapping) or not by_market:
        return None
    returns = {}
    for market, values in by_market.items():
        arr = np.asarray([np.nan if v is None else float(v) for v in values], np.float64)
        if len(arr) == 0 or not np.isfinite(arr).all():
            return None  # a broken series is not paired: the gate falls back to the means
        returns[str(market)] = arr
    days = {str(m): [int(d) for d in v] for m, v in (report.get("days") or {}).items() if m in returns}
    return DailyReturns(returns, days)


def _common_days(a: DailyReturns, b: DailyReturns) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The markets both sides ran on the same days (day numbers when both know them, else lengths)."""
    ra, rb = {}, {}
    for m, x in a.returns.items():
        y = b.returns.get(m)
        if y is None or len(y) != len(x):
            continue
        if m in a.days and m in b.days and a.days[m] != b.days[m]:
            continue
        ra[m], rb[m] = x, y
    return ra, rb


class GateConfig(BaseModel):
    """Thresholds of the promotion gate (see the module docstring for the rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str = Field("team", description="Policy of report.json whose figures are compared.")
    costs: str = Field("with_costs", description="Cost setting of report.json: with_costs | without_costs.")
    min_sharpe_gain: float = Field(0.0, description="Challenger Sharpe must exceed the champion's by more.")
    # 0.5 annualized Sharpe: the largest loss we accept to risk when swapping champions (about the gap
    # between a decent and a good strategy, 1.0 vs 1.5). Deliberately not scaled to the noise: a short
    # evaluation gives a wide interval, and then only a large gain is promoted (docs/registry.md).
    sharpe_noise_margin: float = Field(
        0.5,
        ge=0.0,
        description="Paired comparison: the lower 95 % bound of the Sharpe difference must be above minus "
        "this (annualized Sharpe): the challenger may not be worse by more, with 95 % confidence.",
    )
    bootstrap_resamples: int = Field(N_RESAMPLES, ge=100, description="Resamples of the paired bootstrap.")
    bootstrap_seed: int = Field(0, description="Seed of the paired bootstrap (the verdict is reproducible).")
    require_trades: bool = Field(
        True, description="Refuse a challenger that made no trade on the held-out markets."
    )
    max_drawdown_increase: float = Field(
        0.02, ge=0.0, description="Largest accepted rise of max drawdown (absolute fraction)."
    )
    max_regime_accuracy_drop: float = Field(
        0.02, ge=0.0, description="Largest accepted fall of regime balanced accuracy."
    )
    max_return_drop: float | None = Field(
        None, ge=0.0, description="Largest accepted fall of total return (None: not checked)."
    )
    min_sharpe: float | None = Field(None, description="Absolute floor on the challenger's Sharpe.")
    required_goals: tuple[str, ...] = Field(
        (), description="Goals of the challenger's report that must have status 'pass'."
    )
    require_same_markets: bool = Field(
        True, description="Refuse to compare figures measured on different held-out markets."
    )


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    """The verdict; ``checks`` lists every rule that was evaluated, ``reasons`` the failed ones."""

    promote: bool
    checks: tuple[Check, ...] = ()
    first_champion: bool = False

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.promote:
            return "promote (no champion yet)" if self.first_champion else "promote"
        return "refuse — " + "; ".join(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "first_champion": self.first_champion,
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
        }


def _num(figures: Figures | None, key: str) -> float | None:
    if figures is None:
        return None
    v = figures.get(key)
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass
class _Checks:
    items: list[Check] = field(default_factory=list)

    def add(self, name: str, passed: bool, detail: str) -> None:
        self.items.append(Check(name, bool(passed), detail))


def evaluate_gate(
    challenger: Figures | None,
    champion: Figures | None,
    config: GateConfig | None = None,
    *,
    challenger_goals: Mapping[str, str] | None = None,
    challenger_markets: Sequence[str] | None = None,
    champion_markets: Sequence[str] | None = None,
    challenger_daily: DailyReturns | None = None,
    champion_daily: DailyReturns | None = None,
) -> GateDecision:
    """Promote ``challenger`` over ``champion`` (``None``: there is no champion yet)?

    ``challenger_goals`` maps goal names to their status ("pass", "fail", "skipped"); the market lists
    name the held-out markets each side was evaluated on (``None``: unknown, not compared); the daily
    returns (:func:`daily_returns_from_report`) make the Sharpe rule a paired bootstrap comparison.
    """
    cfg = config or GateConfig()
    c = _Checks()
    ch_sharpe = _num(challenger, "sharpe")
    if not challenger or ch_sharpe is None:
        c.add("evaluated", False, f"the challenger has no {cfg.costs} figures of policy {cfg.policy!r}")
        return GateDecision(False, tuple(c.items))
    if cfg.require_trades:
        _check_trades(c, challenger)
    if cfg.min_sharpe is not None:
        c.add(
            "min_sharpe", ch_sharpe >= cfg.min_sharpe, f"Sharpe {ch_sharpe:.3f} vs floor {cfg.min_sharpe:.3f}"
        )
    for goal in cfg.required_goals:
        status = (challenger_goals or {}).get(goal, "missing")
        c.add(f"goal {goal}", status == "pass", f"status {status}")
    if champion is None:
        ok = all(x.passed for x in c.items)
        return GateDecision(ok, tuple(c.items), first_champion=True)

    if cfg.require_same_markets and challenger_markets is not None and champion_markets is not None:
        same = sorted(challenger_markets) == sorted(champion_markets)
        c.add(
            "same_markets",
            same,
            "both on " + ", ".join(sorted(challenger_markets))
            if same
            else f"challenger on {sorted(challenger_markets)}, champion on {sorted(champion_markets)}",
        )

    _check_sharpe(c, cfg, ch_sharpe, _num(champion, "sharpe"), challenger_daily, champion_daily)

    ch_dd, cp_dd = _num(challenger, "max_drawdown"), _num(champion, "max_drawdown")
    if ch_dd is None:
        c.add("max_drawdown", False, "the challenger has no max drawdown figure")
    elif cp_dd is not None:
        rise = ch_dd - cp_dd
        c.add(
            "max_drawdown",
            rise <= cfg.max_drawdown_increase + 1e-12,
            f"{ch_dd:.2%} vs {cp_dd:.2%} (rise {rise:+.2%}, at most {cfg.max_drawdown_increase:+.2%})",
        )

    ch_acc = _num(challenger, "regime_balanced_accuracy")
    cp_acc = _num(champion, "regime_balanced_accuracy")
    if ch_acc is not None and cp_acc is not None:
        drop = cp_acc - ch_acc
        c.add(
            "regime_balanced_accuracy",
            drop <= cfg.max_regime_accuracy_drop + 1e-12,
            f"{ch_acc:.3f} vs {cp_acc:.3f} (drop {drop:+.3f}, at most {cfg.max_regime_accuracy_drop:.3f})",
        )

    if cfg.max_return_drop is not None:
        ch_ret, cp_ret = _num(challenger, "total_return"), _num(champion, "total_return")
        if ch_ret is None or cp_ret is None:
            c.add("total_return", ch_ret is not None, "total return missing")
        else:
            drop = cp_ret - ch_ret
            c.add(
                "total_return",
                drop <= cfg.max_return_drop + 1e-12,
                f"{ch_ret:+.2%} vs {cp_ret:+.2%} (drop {drop:+.2%}, at most {cfg.max_return_drop:.2%})",
            )
    return GateDecision(all(x.passed for x in c.items), tuple(c.items))


def _check_trades(c: _Checks, figures: Figures) -> None:
    known = {k: v for k in TRADE_FIGURES if (v := _num(figures, k)) is not None}
    if not known:
        c.add("trades", False, f"the evaluation has no trade figures ({', '.join(TRADE_FIGURES)})")
    elif not any(v > 0 for v in known.values()):
        c.add("trades", False, "no trades on the held-out markets")
    else:
        c.add("trades", True, ", ".join(f"{k} {v:.3g}" for k, v in known.items()))


def _check_sharpe(
    c: _Checks,
    cfg: GateConfig,
    ch_sharpe: float,
    cp_sharpe: float | None,
    ch_daily: DailyReturns | None,
    cp_daily: DailyReturns | None,
) -> None:
    """The Sharpe rule: paired on daily returns when both sides have them, else on the means."""
    why = "the challenger's daily returns are unavailable" if ch_daily is None else ""
    if ch_daily is not None and cp_daily is None:
        why = "the champion's daily returns are unavailable"
    if ch_daily is not None and cp_daily is not None:
        a, b = _common_days(ch_daily, cp_daily)
        if a:
            iv, markets = paired_sharpe_difference(a, b, cfg.bootstrap_resamples, cfg.bootstrap_seed)
            point, low, high = iv.point or 0.0, iv.low, iv.high
            ok = point > cfg.min_sharpe_gain and low is not None and low > -cfg.sharpe_noise_margin
            days = sum(len(a[m]) for m in markets)
            c.add(
                "sharpe",
                ok,
                f"paired day-block bootstrap on {days} days of {len(markets)} market(s): daily Sharpe "
                f"difference {point:+.3f}, 95 % interval [{_f(low)}, {_f(high)}] (needs > "
                f"{cfg.min_sharpe_gain:+.3f} and a lower bound > {-cfg.sharpe_noise_margin:+.3f})",
            )
            return
        why = "the two evaluations share no held-out days"
    if cp_sharpe is None:
        c.add("sharpe", True, "the champion has no Sharpe figure; the challenger has one")
        return
    gain = ch_sharpe - cp_sharpe
    c.add(
        "sharpe",
        gain > cfg.min_sharpe_gain,
        f"{ch_sharpe:.3f} vs {cp_sharpe:.3f} (gain {gain:+.3f}, needs > {cfg.min_sharpe_gain:+.3f}; "
        f"means over markets, no noise margin: {why})",
    )


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:+.3f}"
