"""The promotion gate: a pure function of the challenger's and the champion's evaluation figures.

Figures are the means over the held-out markets that ``marlops evaluate`` writes to ``report.json``
(``aggregate.with_costs.team``): ``sharpe``, ``max_drawdown`` (a positive fraction, 0.12 = 12 %),
``total_return``, ``regime_balanced_accuracy`` … :func:`evaluate_gate` reads only these dicts; where
they come from (MLflow run metrics) is :mod:`marlops.registry.aliases`' business.

Rules, in order (every failing rule is reported, not just the first):

- the challenger has figures at all (an unevaluated team is never promoted);
- ``min_sharpe`` (optional): the challenger's Sharpe is at least this, champion or not;
- ``required_goals``: each named goal of the challenger's report passed;
- no champion yet → promote (after the rules above);
- both were evaluated on the same markets (when both lists are known and ``require_same_markets``);
- Sharpe: ``challenger − champion > min_sharpe_gain`` (strictly: a tie does not beat the champion);
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

from pydantic import BaseModel, ConfigDict, Field

Figures = Mapping[str, float | None]


class GateConfig(BaseModel):
    """Thresholds of the promotion gate (see the module docstring for the rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str = Field("team", description="Policy of report.json whose figures are compared.")
    costs: str = Field("with_costs", description="Cost setting of report.json: with_costs | without_costs.")
    min_sharpe_gain: float = Field(0.0, description="Challenger Sharpe must exceed the champion's by more.")
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
) -> GateDecision:
    """Promote ``challenger`` over ``champion`` (``None``: there is no champion yet)?

    ``challenger_goals`` maps goal names to their status ("pass", "fail", "skipped"); the market lists
    name the held-out markets each side was evaluated on (``None``: unknown, not compared).
    """
    cfg = config or GateConfig()
    c = _Checks()
    ch_sharpe = _num(challenger, "sharpe")
    if not challenger or ch_sharpe is None:
        c.add("evaluated", False, f"the challenger has no {cfg.costs} figures of policy {cfg.policy!r}")
        return GateDecision(False, tuple(c.items))
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

    cp_sharpe = _num(champion, "sharpe")
    if cp_sharpe is None:
        c.add("sharpe", True, "the champion has no Sharpe figure; the challenger has one")
    else:
        gain = ch_sharpe - cp_sharpe
        c.add(
            "sharpe",
            gain > cfg.min_sharpe_gain,
            f"{ch_sharpe:.3f} vs {cp_sharpe:.3f} (gain {gain:+.3f}, needs > {cfg.min_sharpe_gain:+.3f})",
        )

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
