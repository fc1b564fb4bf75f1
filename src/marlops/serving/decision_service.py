"""The aggregation logic of the decision server: agents on their clocks, context memory, gates.

The asynchronous driver of the decision core (:mod:`marlops.agents.core`, whose steps the in-process
:class:`~marlops.agents.engine.DecisionEngine` runs too): requests instead of market events, the agents
behind :class:`~marlops.serving.clients.AgentEndpoint` objects. tests/test_serving.py replays a market
through both and finds the same decisions.

Per instrument a :class:`Session` holds the core's :class:`~marlops.agents.core.InstrumentState` (context
memory, higher-bar matrices, the risk agent's matrix encoding, ATR, paper portfolio). Requests of one
instrument are serialized by the session's lock; instruments run concurrently.

What a request costs in agent calls, and why no more:

- tick: one call (risk Q-values on the cached encoding);
- base bar close: tactical and the risk agent *at once* — the risk agent scores all five proposals the
  tactical agent can make in the same call as its matrix encoding, so its answer is ready when tactical's
  is; regime and structure are read from the context memory;
- higher bar close: regime, then structure (it attends over the regime message of the same close), then
  tactical and risk at once as above.

Fail closed: an agent that errs, times out, is unreachable or returns NaN means no new exposure (exits
still allowed) and its reason in ``reasons`` (``tactical:timeout``, ``risk:unavailable`` …) — the same
rule as the engine (the core's), with per-agent deadlines instead of the engine's lateness budget.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marlops.agents.core import Call, DecisionCore, EngineConfig, InstrumentState, Need, Step, StepGen
from marlops.agents.decision import RiskLimits
from marlops.agents.hub import ConsensusConfig
from marlops.agents.types import RiskOutput
from marlops.serving import metrics
from marlops.serving.agent_calls import decode, v2_inputs, zero_call
from marlops.serving.clients import AgentCallError, AgentEndpoint
from marlops.serving.decision_request import DecisionRequest, PortfolioState
from marlops.serving.outcome import Outcome
from marlops.serving.request_log import RequestLog, latest_rows
from marlops.serving.request_matrices import MatrixFetcher, request_matrices
from marlops.serving.tensors import InputError
from marlops.team import AGENTS

# Per-call deadlines (ms). Generous against the design's 5 ms per agent: a deadline is for a hung or
# overloaded agent, and a late answer costs a fail-closed decision, never a hang.
DEFAULT_TIMEOUTS_MS: dict[str, float] = {"regime": 100.0, "structure": 100.0, "tactical": 50.0, "risk": 50.0}

# Endpoints standing in for the configured ones during one request (the InferenceGraph aggregator's:
# the agents' ensemble answers, see marlops.serving.graph); a context variable, so per task.
ENDPOINT_OVERRIDES: contextvars.ContextVar[Mapping[str, AgentEndpoint] | None] = contextvars.ContextVar(
    "marlops_endpoint_overrides", default=None
)


@dataclass
class Session:
    """One instrument: the core's state, the lock that serializes its requests, its last decision time."""

    instrument: str
    state: InstrumentState
    last_ts: int = -1
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class DecisionService:
    """Sessions per instrument and the agent calls of each clock (the module docstring has the rules)."""

    def __init__(
        self,
        agents: Mapping[str, AgentEndpoint],
        limits: RiskLimits | None = None,
        consensus: ConsensusConfig | None = None,
        config: EngineConfig | None = None,
        timeouts_ms: Mapping[str, float] | None = None,
        fetch_matrices: MatrixFetcher | None = None,
        request_log: RequestLog | None = None,
        max_sessions: int = 10_000,
    ) -> None:
        missing = [a for a in AGENTS if a not in agents]
        if missing:
            raise ValueError(f"agents missing: {missing}")
        self.agents = dict(agents)
        self.core = DecisionCore(limits, consensus, config)
        self.limits, self.config = self.core.limits, self.core.config
        self.timeouts_s = {a: (timeouts_ms or {}).get(a, DEFAULT_TIMEOUTS_MS[a]) / 1e3 for a in AGENTS}
        self.fetch_matrices = fetch_matrices
        self.request_log = request_log
        self.max_sessions = max_sessions
        self.clocks = ("tick", self.core.base_label, self.core.higher_label)
        self.sessions: OrderedDict[str, Session] = OrderedDict()

    def session(self, instrument: str) -> Session:
        s = self.sessions.get(instrument)
        if s is None:
            s = self.sessions[instrument] = Session(instrument, self.core.new_state())
            while len(self.sessions) > self.max_sessions:  # least recently used goes first
                self.sessions.popitem(last=False)
        else:
            self.sessions.move_to_end(instrument)
        return s

    def versions(self) -> dict[str, str]:
        endpoints = ENDPOINT_OVERRIDES.get() or self.agents
        return {a: e.version or "?" for a, e in endpoints.items()}

    # ------------------------------------------------------------------------------------ decide

    async def decide(self, req: DecisionRequest) -> Outcome:
        """One decision; :class:`InputError` for a request that cannot be served as sent."""
        t0 = time.perf_counter()
        s = self.session(req.instrument)
        async with s.lock:
            if req.ts < s.last_ts:
                raise InputError(
                    "ts",
                    f"{req.ts} is before the last decision of {req.instrument!r} ({s.last_ts}); "
                    "decisions of an instrument must come in time order",
                )
            # may reject the request: before any change
            mats, ready, feat_faults = await request_matrices(req, self.clocks, self.fetch_matrices)
            st, core = s.state, self.core
            if req.portfolio is not None:
                st.portfolio = req.portfolio.to_portfolio()
            tick, _base, higher = self.clocks
            if req.clock == tick:
                step = await self._drive(core.tick(st, req.ts, float(req.price), self.versions))  # type: ignore[arg-type]
            else:
                at_slow = req.clock == higher and mats is not None
                if at_slow:
                    slow_ready = ready["structure"] and ready["regime"]
                    await self._drive(core.slow(st, req.ts, mats, slow_ready, self.versions))  # type: ignore[arg-type]
                tactical_m = mats["tactical"] if mats is not None else None
                base = core.base(
                    st,
                    req.ts,
                    req.bar,
                    tactical_m,
                    ready["tactical"],
                    at_slow,
                    self.versions,  # type: ignore[arg-type]
                    feat_faults,
                    closes_higher=req.clock == higher,
                )
                step = await self._drive(base)
            s.last_ts = req.ts
            outcome = self._outcome(s, step, time.perf_counter() - t0)
        d = outcome.decision
        metrics.record_decision(d.timeframe, outcome.seconds, d.overrides, d.reasons)
        if self.request_log is not None:
            self.request_log.append(outcome.record())
        return outcome

    def _outcome(self, s: Session, step: Step, seconds: float) -> Outcome:
        st = s.state
        reg = st.hub.memory.get("regime")
        features = {}
        if self.request_log is not None and (st.tactical_m is not None or st.slow_mats):
            features = latest_rows({"tactical": st.tactical_m, **st.slow_mats})
        return Outcome(
            step.decision,
            s.instrument,
            reg.payload if reg is not None else None,  # type: ignore[arg-type]
            step.structure,
            step.tactical,
            step.risk,
            PortfolioState.of(st.portfolio),
            features,
            seconds,
        )

    # ------------------------------------------------------------------------------------- calls

    async def _drive(self, step: StepGen) -> Any:
        """Run a core step: its calls at once when it asks for several (tactical ∥ risk)."""
        scored: dict[str, np.ndarray] = {}  # the risk agent's Q-values of every proposal, this step
        try:
            need = next(step)
            while True:
                if len(need.calls) == 1:
                    results = [await self._call(need.calls[0], need, 0, scored)]
                else:
                    results = await asyncio.gather(
                        *(self._call(c, need, i, scored) for i, c in enumerate(need.calls))
                    )
                for _, us, key in results:
                    if key:
                        need.latency_us[key] = us
                need = step.send(tuple(out for out, _, _ in results))
        except StopIteration as done:
            return done.value

    async def _call(
        self, call: Call, need: Need, i: int, scored: dict[str, np.ndarray]
    ) -> tuple[Any, float, str]:
        """(decoded output or None, µs, latency key); a failure's reason goes to ``need.faults[i]``."""
        if call.agent == "risk_q" and "q" in scored:  # scored with the encoding: no second call
            return RiskOutput.from_outputs(scored, call.choice), 0.0, ""
        if call.agent == "structure_encode":  # the structure server runs its graph whole
            return None, 0.0, ""
        agent = "risk" if call.agent.startswith("risk") else call.agent
        t = time.perf_counter_ns()
        endpoints = ENDPOINT_OVERRIDES.get() or self.agents
        try:
            o = await endpoints[agent].infer(v2_inputs(call), self.timeouts_s[agent])
        except AgentCallError as e:
            need.faults[i].append(f"{agent}:{e.kind}")
            o = None
        us = (time.perf_counter_ns() - t) / 1e3
        metrics.agent_latency(agent).observe(us / 1e6)
        if o is None:
            return None, us, agent
        try:
            if call.agent != "risk_encode":
                return decode(call, o), us, agent
            q = o["q"]
            if q.shape != (len(call.proposals), 4):  # type: ignore[arg-type]
                raise ValueError
            scored["q"] = q
            return o["cache"][0].copy(), us, agent
        except (KeyError, IndexError, ValueError, TypeError):
            need.faults[i].append(f"{agent}:error:bad_response")
            return None, us, agent

    async def warm_up(self, timeout_s: float = 2.0) -> dict[str, str]:
        """One call per agent with zero inputs: learns the agent versions and opens the connections.
        Failures are ignored (a down agent is reported by the decisions, not by the server's start)."""

        async def one(agent: str) -> None:
            try:
                await self.agents[agent].infer(v2_inputs(zero_call(agent, self.core.hold)), timeout_s)
            except AgentCallError:
                pass

        await asyncio.gather(*(one(a) for a in AGENTS))
        return self.versions()

    async def close(self) -> None:
        for e in self.agents.values():
            await e.close()
