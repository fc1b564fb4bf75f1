"""What the decision server answers and logs for a decision: the decision and what the agents said."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marlops.agents.decision_record import TradeDecision
from marlops.agents.types import REGIME_NAMES, RegimeOutput, RiskOutput, StructureOutput, TacticalOutput
from marlops.serving.request_log import RequestRecord, iso_utc


@dataclass
class Outcome:
    """A decision and what the agents said (for the response and the request log)."""

    decision: TradeDecision
    instrument: str
    regime: RegimeOutput | None
    structure: StructureOutput | None
    tactical: TacticalOutput | None
    risk: RiskOutput | None
    portfolio: dict[str, Any]  # the instrument's portfolio after this decision (PortfolioState fields)
    features: dict[str, float]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        d = self.decision.to_dict()
        d["overrides"], d["reasons"] = list(d["overrides"]), list(d["reasons"])
        d["instrument"] = self.instrument
        d["agents"] = {
            "regime": None
            if self.regime is None
            else {
                "regime": REGIME_NAMES[self.regime.regime],
                "probs": self.regime.probs.tolist(),
                "volatility": self.regime.volatility,
            },
            "structure": None
            if self.structure is None
            else {
                "bias": self.structure.bias,
                "size": self.structure.size,
                "confidence": self.structure.confidence,
            },
            "tactical": None
            if self.tactical is None
            else {"action": self.tactical.action.name.lower(), "probs": self.tactical.action_probs.tolist()},
            "risk": None
            if self.risk is None
            else {"action": self.risk.action.name.lower(), "q": self.risk.q_values.tolist()},
        }
        d["portfolio"] = self.portfolio
        return d

    def record(self) -> RequestRecord:
        d, reg = self.decision, self.regime
        return RequestRecord(
            ts=iso_utc(d.ts),
            instrument=self.instrument,
            clock=d.timeframe,
            features=self.features,
            regime=reg.regime if reg is not None else -1,
            regime_probs=[float(p) for p in reg.probs] if reg is not None else [],
            structure_bias=self.structure.bias if self.structure is not None else None,
            tactical_action=d.action,
            risk_action=d.risk_action or "none",
            overridden=bool(d.overrides),
            fail_closed=d.fail_closed,
            reason="; ".join(d.reasons) or None,
            latency_ms=self.seconds * 1e3,
        )
