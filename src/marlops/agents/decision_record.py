"""The record of a decision, and the last step that makes it: the risk gate, then the paper fill."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields

from marlops.agents.decision import DecisionInputs, Portfolio, RiskLimits, decide, position_cap
from marlops.agents.hub import CommunicationHub


@dataclass(frozen=True)
class TradeDecision:
    ts: int  # ns, market time of the event that triggered it
    timeframe: str  # "tick", or the base/higher label ("5m", "30m")
    action: str  # the tactical proposal (enter_long, enter_short, exit_position, hold, reduce_size)
    direction: int  # sign of the target position: -1, 0, 1
    confidence: float
    price: float
    quantity: float  # signed order quantity (target - current); 0 means no trade
    target_position: float
    leverage: float  # gross notional / equity after the trade
    risk_capital: float
    stop_loss: float | None
    take_profit: float | None
    max_exposure: float  # the gross notional (currency) every hard limit allows at this price and equity
    risk_action: str | None
    overrides: tuple[str, ...]
    fail_closed: bool
    reasons: tuple[str, ...]
    model_versions: Mapping[str, str]
    latency_us: dict[str, float]

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["model_versions"], d["latency_us"] = dict(self.model_versions), dict(self.latency_us)
        return d


def decide_and_fill(
    inputs: DecisionInputs,
    pf: Portfolio,
    limits: RiskLimits,
    hub: CommunicationHub,
    ts: int,
    timeframe: str,
    versions: Mapping[str, str],
    lat: dict[str, float],
    t0: int,
    upstream_us: float,
    paper: bool,
    commission_rate: float,
) -> TradeDecision:
    """The core ``decide``, the TradeDecision record, then the paper fill. ``lat`` gains ``engine``
    (since ``t0``, ns clock) and ``total`` (data-to-decision: plus the slow agents of the same close)."""
    core = decide(inputs, pf, limits, hub)
    price, tac, risk, faults = inputs.price, inputs.tactical, inputs.risk, inputs.fail_reasons
    qty = core.target - pf.position
    equity = pf.equity(price)
    lat["engine"] = (time.perf_counter_ns() - t0) / 1e3
    lat["total"] = lat["engine"] + upstream_us
    d = TradeDecision(
        ts=ts,
        timeframe=timeframe,
        action=core.action.name.lower(),
        direction=(core.target > 0) - (core.target < 0),
        confidence=float(tac.confidence) if tac is not None else 0.0,  # ticks carry no tactical proposal
        price=price,
        quantity=qty,
        target_position=core.target,
        leverage=abs(core.target) * price / equity if equity > 0 else 0.0,
        risk_capital=core.risk_capital,
        stop_loss=core.stop_loss,
        take_profit=core.take_profit,
        max_exposure=position_cap(price, equity, limits) * price,  # the gross notional the limits allow now
        risk_action=risk.action.name.lower() if risk is not None else None,
        overrides=core.overrides,
        fail_closed=bool(faults),
        reasons=tuple(faults),
        model_versions=versions,
        latency_us=lat,
    )
    if paper and qty != 0.0:
        pf.fill(qty, price, commission_rate)
        pf.stop_loss, pf.take_profit = core.stop_loss, core.take_profit
    return d
