"""The in-process driver of the decision core: market events in, the agents called through AgentSet.

Clocks (the market feed publishes the higher bar's event before the base bar's at a shared boundary):
- higher bar close (30 min): :meth:`DecisionCore.slow` — regime → structure, into the context memory;
- base bar close (5 min): :meth:`DecisionCore.base` — tactical and the risk agent's matrix encoding,
  then the risk verdict and the decision (labelled with the higher timeframe at a shared close);
- every accepted tick: :meth:`DecisionCore.tick` — the risk verdict on the cached encoding.

The rules (staleness, fault reasons, the risk gate, the paper fill) are the core's
(:mod:`marlops.agents.core`); this module makes the calls, times them (a call over its
``agent_budget_us`` is ``late``), and publishes, audits and keeps the decisions.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from marlops.agents.audit import AuditLog, audit_record
from marlops.agents.core import Call, DecisionCore, EngineConfig, Step, StepGen, timeframe_label
from marlops.agents.decision import Portfolio, RiskLimits
from marlops.agents.decision_record import TradeDecision
from marlops.agents.hub import ConsensusConfig
from marlops.agents.types import RegimeOutput, RiskOutput, StructureOutput, TacticalOutput
from marlops.market.events import EventBus, IndicatorsReady, TickAccepted

__all__ = [
    "AgentRuntime",
    "DecisionEngine",
    "EngineConfig",
    "ExecuteTrade",
    "TradeDecision",
    "timeframe_label",
]


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


@dataclass(frozen=True, slots=True)
class ExecuteTrade:
    """Published on the bus for every decision with a non-zero quantity."""

    decision: TradeDecision


_Result = tuple[Any, str, float, list[str]]  # output, latency label, µs, faults

# the AgentSet method and the latency / fault label of each core call
_METHODS = {
    "regime": ("regime", "regime"),
    "structure": ("structure", "structure"),
    "tactical": ("tactical", "tactical"),
    "risk_encode": ("risk_cache", "risk_cache"),
    "risk_q": ("risk", "risk"),
}


@functools.cache
def _worker() -> ThreadPoolExecutor:
    """One thread for every engine of the process: ONNX Runtime releases the GIL while it runs."""
    return ThreadPoolExecutor(1, thread_name_prefix="marlops-risk")


class DecisionEngine:
    def __init__(
        self,
        agents: AgentRuntime,
        limits: RiskLimits | None = None,
        consensus: ConsensusConfig | None = None,
        config: EngineConfig | None = None,
        portfolio: Portfolio | None = None,
        audit: AuditLog | None = None,
        parallel: bool = True,
    ) -> None:
        """``parallel``: on a worker thread, run the risk agent (its encoding and its verdict on every
        proposal tactical could make) while tactical runs, and structure's encoding while regime runs
        (agents that run structure split); the decisions are the same."""
        self.agents = agents
        self.core = DecisionCore(limits, consensus, config)
        self.limits, self.config = self.core.limits, self.core.config
        self.state = self.core.new_state(portfolio)
        self.audit = audit
        self.bus: EventBus | None = None
        self.decisions: list[TradeDecision] = []
        self.keep_decisions = True
        self.listeners: list[Callable[[TradeDecision], None]] = []
        self._budget = self.config.agent_budget_us
        self._pool = _worker() if parallel else None
        self._split = bool(getattr(agents, "split_structure", False))
        self._calls = {c: (getattr(agents, m), label) for c, (m, label) in _METHODS.items()}
        # one read-only mapping shared by every decision (copying it per tick is measurable)
        versions: Mapping[str, str] = MappingProxyType(dict(agents.versions))
        self._versions = lambda: versions

    @property
    def hub(self):
        return self.state.hub

    @property
    def portfolio(self) -> Portfolio:
        return self.state.portfolio

    def attach(self, bus: EventBus) -> DecisionEngine:
        self.bus = bus
        bus.subscribe(IndicatorsReady, self.on_indicators)
        if self.config.decide_on_ticks:
            bus.subscribe(TickAccepted, self.on_tick)
        return self

    # -- clocks ----------------------------------------------------------------------------------

    def on_indicators(self, ev: IndicatorsReady) -> TradeDecision | None:
        st, core = self.state, self.core
        if ev.timeframe == "higher":
            self._drive(core.slow(st, ev.ts, ev.matrices, ev.ready, self._versions))
            return None
        at_slow = st.slow_ts == ev.ts
        step = core.base(st, ev.ts, ev.bar, ev.matrices["tactical"], ev.ready, at_slow, self._versions)
        return self._decided(self._drive(step))

    def on_tick(self, ev: TickAccepted) -> TradeDecision | None:
        tick = ev.tick
        return self._decided(self._drive(self.core.tick(self.state, tick.ts, tick.price, self._versions)))

    # -- calls -----------------------------------------------------------------------------------

    def _drive(self, step: StepGen) -> Any:
        scored: list[_Result] | None = None  # the risk verdict on every proposal, from the worker
        try:
            need = next(step)
            while True:
                calls = need.calls
                if len(calls) == 2 and calls[1].agent == "structure_encode":
                    results = self._regime_and_encoding(*calls)
                elif self._pool is not None and len(calls) == 2 and calls[1].agent == "risk_encode":
                    # tactical here, the risk agent (encoding, then every proposal) on the worker
                    job = self._pool.submit(self._score, calls[1])
                    results = [self._call(calls[0])]
                    encoded, scored = job.result()
                    results.append(encoded)
                elif scored is not None and calls[0].agent == "risk_q":
                    results = [scored[calls[0].choice]]
                else:
                    results = [self._call(c) for c in calls]
                outs = []
                for i, (out, label, us, faults) in enumerate(results):
                    if label:
                        need.latency_us[label] = us
                    need.faults[i].extend(faults)
                    outs.append(out)
                need = step.send(tuple(outs))
        except StopIteration as done:
            return done.value

    def _regime_and_encoding(self, regime: Call, encode: Call) -> list[_Result]:
        """Regime here and structure's encoding on the worker, when the agents run structure split."""
        if self._pool is None or not self._split:
            return [self._call(regime), (None, "", 0.0, [])]
        job = self._pool.submit(self._encode, encode)
        return [self._call(regime), job.result()]

    def _encode(self, call: Call) -> _Result:
        t = time.perf_counter_ns()
        try:
            h = self.agents.structure_encode(*call.inputs)  # type: ignore[attr-defined]
        except Exception:  # the whole structure call then runs, and reports its own failure
            return None, "", 0.0, []
        return (h, (time.perf_counter_ns() - t) / 1e3), "", 0.0, []

    def _call(self, call: Call) -> _Result:
        """(output or None, latency label, µs, faults): an error or a late answer is a fault."""
        fn, label = self._calls[call.agent]
        faults: list[str] = []
        t = time.perf_counter_ns()
        if call.encoding is not None:  # structure's head on its encoding: the agent's time is both parts
            fn, (h, encode_us) = self.agents.structure_head, call.encoding  # type: ignore[attr-defined]
            t -= int(encode_us * 1e3)
            call = Call(call.agent, (h, *call.inputs[1:]))
        try:
            out = fn(*call.inputs)
        except Exception as err:  # an unavailable agent must not stop the engine: fail closed instead
            faults.append(f"{label}:error:{type(err).__name__}")
            out = None
        us = (time.perf_counter_ns() - t) / 1e3
        if us > self._budget.get(label, math.inf):
            faults.append(f"{label}:late")
        return out, label, us, faults

    def _score(self, encode: Call) -> tuple[_Result, list[_Result] | None]:
        """The risk encoding and the verdict on each of ``encode.proposals`` (what the core asks next is
        one of them), each call timed and checked as if made on its own."""
        encoded = self._call(encode)
        cache = encoded[0]
        if cache is None or not np.isfinite(cache).all():
            return encoded, None  # the core asks for no verdict without a usable encoding
        pvec = encode.portfolio
        verdicts = [self._call(Call("risk_q", (cache, pvec, p))) for p in encode.proposals]  # type: ignore[union-attr]
        return encoded, verdicts

    # -- decisions -------------------------------------------------------------------------------

    def _decided(self, step: Step) -> TradeDecision:
        d = step.decision
        if self.keep_decisions:
            self.decisions.append(d)
        if self.audit is not None:
            self._write_audit(step)
        if d.quantity != 0.0 and self.bus is not None:
            self.bus.publish(ExecuteTrade(d))
        for listener in self.listeners:
            listener(d)
        return d

    def _write_audit(self, step: Step) -> None:
        self.audit.write(audit_record(self.state, step))  # type: ignore[union-attr]
