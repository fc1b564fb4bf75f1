"""The decision engine: drives each agent on its own clock from market events and emits TradeDecisions.

Clocks (the market feed publishes the higher bar's event before the base bar's at a shared boundary):
- higher bar close (30 min): regime → structure, their messages go to the hub's context memory;
- base bar close (5 min): tactical (attending over regime and structure messages) → risk → decision;
  the decision's timeframe is the higher label when the slow agents ran at the same close;
- every accepted tick: risk (against the cached matrix encoding) → decision.

Fail closed: a missing, stale, NaN, failed or late agent output means no new exposure (exits still
allowed), and the decision lists why. All the position arithmetic is in decision.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import IO, Protocol

import numpy as np

from marlops.agents.decision import DecisionInputs, Portfolio, RiskLimits, decide, position_cap
from marlops.agents.hub import CommunicationHub, ConsensusConfig, Message
from marlops.agents.types import (
    PROPOSAL_DIM,
    RegimeOutput,
    RiskOutput,
    StructureOutput,
    TacticalAction,
    TacticalOutput,
)
from marlops.market.bars import MINUTE_NS
from marlops.market.events import EventBus, IndicatorsReady, TickAccepted
from marlops.market.indicators import Atr


class AgentRuntime(Protocol):
    """What the engine needs from the four agents (marlops.agents.runtime.AgentSet provides it)."""

    versions: dict[str, str]

    def regime(self, regime_m: np.ndarray) -> RegimeOutput: ...
    def structure(self, structure_m: np.ndarray, msgs: np.ndarray, mask: np.ndarray) -> StructureOutput: ...
    def tactical(self, tactical_m: np.ndarray, msgs: np.ndarray, mask: np.ndarray) -> TacticalOutput: ...
    def risk_cache(
        self, tactical_m: np.ndarray, structure_m: np.ndarray, regime_m: np.ndarray
    ) -> np.ndarray: ...
    def risk(self, cache: np.ndarray, portfolio: np.ndarray, proposal: np.ndarray) -> RiskOutput: ...


def timeframe_label(ns: int) -> str:
    for unit, size in (("d", 1440 * MINUTE_NS), ("h", 60 * MINUTE_NS), ("m", MINUTE_NS), ("s", 10**9)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


@dataclass(frozen=True)
class EngineConfig:
    base_timeframe_ns: int = 5 * MINUTE_NS
    higher_timeframe_ns: int = 30 * MINUTE_NS
    stale_after_periods: float = 2.0  # an agent's output is stale after this many of its clock periods
    # An agent call slower than this (µs) is "late": its output is still recorded, but no new exposure.
    agent_budget_us: dict[str, float] = field(
        default_factory=lambda: {
            "regime": 50_000.0,
            "structure": 50_000.0,
            "tactical": 20_000.0,
            "risk": 5_000.0,
        }
    )
    paper: bool = True  # apply each decision to the engine's own portfolio (replay, backtests)
    commission_rate: float = 0.0
    decide_on_ticks: bool = True


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


@dataclass(frozen=True, slots=True)
class ExecuteTrade:
    """Published on the bus for every decision with a non-zero quantity."""

    decision: TradeDecision


class AuditLog:
    """One JSON line per decision: inputs hash, agent outputs, overrides, versions, the decision."""

    def __init__(self, sink: str | Path | IO[str]) -> None:
        self._own = not hasattr(sink, "write")
        self._f: IO[str] = open(sink, "a", encoding="utf-8") if self._own else sink  # type: ignore[arg-type]

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, separators=(",", ":"), default=_json_default) + "\n")

    def close(self) -> None:
        if self._own:
            self._f.close()


def _json_default(o: object) -> object:
    if isinstance(o, np.ndarray):
        return [round(float(x), 7) for x in o.ravel()]
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


def _out_dict(o: object | None) -> dict | None:
    if o is None:
        return None
    d = {k: getattr(o, k) for k in o.__slots__ if k != "message"}  # type: ignore[attr-defined]
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
    config: EngineConfig,
) -> TradeDecision:
    """The engine's last step, shared by the in-process engine and the decision server: the core
    ``decide``, the TradeDecision record, then the paper fill. ``lat`` gains ``engine`` (since ``t0``,
    ns clock) and ``total`` (data-to-decision: plus the slow agents that ran for the same bar close)."""
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
        direction=int(np.sign(core.target)),
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
    if config.paper and qty != 0.0:
        pf.fill(qty, price, config.commission_rate)
        pf.stop_loss, pf.take_profit = core.stop_loss, core.take_profit
    return d


class DecisionEngine:
    def __init__(
        self,
        agents: AgentRuntime,
        limits: RiskLimits | None = None,
        consensus: ConsensusConfig | None = None,
        config: EngineConfig | None = None,
        portfolio: Portfolio | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.agents = agents
        self.limits = limits or RiskLimits()
        self.config = cfg = config or EngineConfig()
        self.portfolio = portfolio or Portfolio()
        self.audit = audit
        stale = cfg.stale_after_periods
        self.hub = CommunicationHub(
            max_age_ns={
                "regime": int(stale * cfg.higher_timeframe_ns),
                "structure": int(stale * cfg.higher_timeframe_ns),
                "tactical": int(stale * cfg.base_timeframe_ns),
            },
            consensus=consensus,
        )
        self.base_label = timeframe_label(cfg.base_timeframe_ns)
        self.higher_label = timeframe_label(cfg.higher_timeframe_ns)
        self.bus: EventBus | None = None
        self.decisions: list[TradeDecision] = []
        self.keep_decisions = True
        self.listeners: list[Callable[[TradeDecision], None]] = []
        self._atr = Atr(14)  # of the higher timeframe: stops are measured on the clock that opens positions
        self._price = float("nan")
        self._slow_mats: dict[str, np.ndarray] = {}
        self._slow_ts = -1
        self._slow_ready = False
        self._slow_faults: tuple[str, ...] = ("regime:missing", "structure:missing")
        self._slow_latency: dict[str, float] = {}
        self._slow_total_us = 0.0
        self._tactical_m: np.ndarray | None = None
        self._risk_cache: np.ndarray | None = None
        self._risk_cache_ts = -1
        self._proposal_hold = self._proposal(None, None)
        # one read-only mapping shared by every decision (copying it per tick is measurable)
        self._versions: Mapping[str, str] = MappingProxyType(dict(agents.versions))

    # -- wiring ----------------------------------------------------------------------------------

    def attach(self, bus: EventBus) -> DecisionEngine:
        self.bus = bus
        bus.subscribe(IndicatorsReady, self.on_indicators)
        if self.config.decide_on_ticks:
            bus.subscribe(TickAccepted, self.on_tick)
        return self

    # -- clocks ----------------------------------------------------------------------------------

    def on_indicators(self, ev: IndicatorsReady) -> TradeDecision | None:
        if ev.timeframe == "higher":
            self._run_slow(ev)
            return None
        return self._run_base(ev)

    def _run_slow(self, ev: IndicatorsReady) -> None:
        t0 = time.perf_counter_ns()
        faults: list[str] = [] if ev.ready else ["warming_up:higher"]
        self._slow_mats = ev.matrices
        self._slow_ts, self._slow_ready = ev.ts, ev.ready
        self._atr.update(ev.bar.high, ev.bar.low, ev.bar.close)
        lat: dict[str, float] = {}
        reg = self._call("regime", lat, faults, self.agents.regime, ev.matrices["regime"])
        if reg is not None and _finite(reg.probs, reg.volatility, reg.message):
            self.hub.publish(
                Message("regime", ev.ts, self.agents.versions.get("regime", "?"), reg, reg.message)
            )
        elif reg is not None:
            faults.append("regime:nan")
        msgs, mask = self.hub.inbox("structure", ev.ts)
        st = self._call("structure", lat, faults, self.agents.structure, ev.matrices["structure"], msgs, mask)
        if st is not None and _finite(st.action_probs, st.bias, st.size, st.confidence, st.message):
            self.hub.publish(
                Message("structure", ev.ts, self.agents.versions.get("structure", "?"), st, st.message)
            )
        elif st is not None:
            faults.append("structure:nan")
        self._slow_faults = tuple(faults)
        self._slow_latency = lat
        self._slow_total_us = (time.perf_counter_ns() - t0) / 1e3

    def _run_base(self, ev: IndicatorsReady) -> TradeDecision:
        t0 = time.perf_counter_ns()
        bar = ev.bar
        self._price = bar.close
        pf = self.portfolio
        pf.roll_day(ev.ts, bar.close)
        if pf.position:
            pf.bars_in_position += 1
        at_slow = self._slow_ts == ev.ts
        faults: list[str] = [] if ev.ready else ["warming_up:base"]
        lat: dict[str, float] = dict(self._slow_latency) if at_slow else {}
        if at_slow:
            faults += self._slow_faults
        for sender in ("regime", "structure"):
            if self.hub.memory.is_stale(sender, ev.ts) and f"{sender}:missing" not in faults:
                faults.append(f"{sender}:stale" if self.hub.memory.get(sender) else f"{sender}:missing")
        self._tactical_m = ev.matrices["tactical"]
        msgs, mask = self.hub.inbox("tactical", ev.ts)
        tac = self._call("tactical", lat, faults, self.agents.tactical, self._tactical_m, msgs, mask)
        if tac is not None and not _finite(tac.action_probs, tac.value):
            faults.append("tactical:nan")
            tac = None
        elif tac is not None:
            self.hub.publish(
                Message("tactical", ev.ts, self.agents.versions.get("tactical", "?"), tac, tac.message)
            )
        structure = self._latest("structure", ev.ts)
        self._refresh_risk_cache(ev.ts, lat, faults)
        proposal = self._proposal(tac, structure)
        return self._finish(
            ev.ts,
            self.higher_label if at_slow else self.base_label,
            tac,
            structure,
            proposal,
            faults,
            lat,
            t0,
            self._slow_total_us if at_slow else 0.0,
        )

    def on_tick(self, ev: TickAccepted) -> TradeDecision | None:
        t0 = time.perf_counter_ns()
        tick = ev.tick
        self._price = tick.price
        self.portfolio.roll_day(tick.ts, tick.price)
        faults: list[str] = []
        if self._risk_cache is None:
            faults.append("risk:no_matrices_yet")
        lat: dict[str, float] = {}
        return self._finish(
            tick.ts, "tick", None, self._latest("structure", tick.ts), self._proposal_hold, faults, lat, t0
        )

    # -- shared steps ----------------------------------------------------------------------------

    def _call(self, name: str, lat: dict[str, float], faults: list[str], fn: Callable, *args):
        t = time.perf_counter_ns()
        try:
            out = fn(*args)
        except Exception as err:  # an unavailable agent must not stop the engine: fail closed instead
            faults.append(f"{name}:error:{type(err).__name__}")
            out = None
        us = (time.perf_counter_ns() - t) / 1e3
        lat[name] = us
        if us > self.config.agent_budget_us.get(name, math.inf):
            faults.append(f"{name}:late")
        return out

    def _latest(self, sender: str, now: int) -> StructureOutput | None:
        if self.hub.memory.is_stale(sender, now):
            return None
        m = self.hub.memory.get(sender)
        return m.payload if m is not None else None  # type: ignore[return-value]

    def _refresh_risk_cache(self, ts: int, lat: dict[str, float], faults: list[str]) -> None:
        if not self._slow_mats or self._tactical_m is None:
            self._risk_cache = None
            return
        cache = self._call(
            "risk_cache",
            lat,
            faults,
            self.agents.risk_cache,
            self._tactical_m,
            self._slow_mats["structure"],
            self._slow_mats["regime"],
        )
        self._risk_cache = cache if cache is not None and np.isfinite(cache).all() else None
        self._risk_cache_ts = ts

    @staticmethod
    def _proposal(tac: TacticalOutput | None, structure: StructureOutput | None) -> np.ndarray:
        p = np.zeros(PROPOSAL_DIM, dtype=np.float32)
        p[int(tac.action) if tac is not None else int(TacticalAction.HOLD)] = 1.0
        if structure is not None:
            p[-2], p[-1] = structure.bias, structure.size
        return p

    def _finish(
        self,
        ts: int,
        timeframe: str,
        tac: TacticalOutput | None,
        structure: StructureOutput | None,
        proposal: np.ndarray,
        faults: list[str],
        lat: dict[str, float],
        t0: int,
        upstream_us: float = 0.0,
    ) -> TradeDecision:
        pf, limits, price = self.portfolio, self.limits, self._price
        pvec = pf.state_vector(price, limits)
        risk = None
        if self._risk_cache is not None:
            risk = self._call("risk", lat, faults, self.agents.risk, self._risk_cache, pvec, proposal)
            if risk is not None and not np.isfinite(risk.q_values).all():
                faults.append("risk:nan")
                risk = None
        if risk is None and not any(f.startswith("risk") for f in faults):
            faults.append("risk:missing")
        inputs = DecisionInputs(price, self._atr.value, tac, structure, risk, tuple(faults))
        d = decide_and_fill(
            inputs, pf, limits, self.hub, ts, timeframe, self._versions, lat, t0, upstream_us, self.config
        )
        if self.keep_decisions:
            self.decisions.append(d)
        if self.audit is not None:
            self._write_audit(d, pvec, proposal, tac, structure, risk)
        if d.quantity != 0.0 and self.bus is not None:
            self.bus.publish(ExecuteTrade(d))
        for listener in self.listeners:
            listener(d)
        return d

    def _write_audit(
        self,
        d: TradeDecision,
        pvec: np.ndarray,
        proposal: np.ndarray,
        tac: TacticalOutput | None,
        structure: StructureOutput | None,
        risk: RiskOutput | None,
    ) -> None:
        h = hashlib.sha256()
        for m in (
            self._tactical_m,
            self._slow_mats.get("structure"),
            self._slow_mats.get("regime"),
            pvec,
            proposal,
        ):
            if m is not None:
                h.update(np.ascontiguousarray(m).tobytes())
        h.update(np.float64(d.price).tobytes())
        reg = self.hub.memory.get("regime")
        self.audit.write(
            {  # type: ignore[union-attr]
                "inputs_sha256": h.hexdigest(),
                "agents": {
                    "regime": _out_dict(reg.payload) if reg else None,
                    "structure": _out_dict(structure),
                    "tactical": _out_dict(tac),
                    "risk": _out_dict(risk),
                },
                "decision": {k: v for k, v in d.to_dict().items() if k != "latency_us"},
            }
        )


def _finite(*xs: object) -> bool:
    for x in xs:
        if isinstance(x, np.ndarray):
            if not np.isfinite(x).all():
                return False
        elif not math.isfinite(x):  # type: ignore[arg-type]
            return False
    return True
