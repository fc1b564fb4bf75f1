"""The aggregation logic of the decision server: agents on their clocks, context memory, gates.

This is :class:`marlops.agents.engine.DecisionEngine`'s sequence, driven by requests instead of market
events and with the agents behind :class:`~marlops.serving.clients.AgentEndpoint`s; the hub, consensus,
risk gate and position arithmetic are the engine's own objects (``CommunicationHub``, ``decide``,
``Portfolio``), and tests/test_serving.py replays a market through both and finds the same decisions.

Per instrument a :class:`Session` keeps the shared context memory (the hub's latest regime / structure /
tactical messages), the higher-bar matrices and the risk agent's matrix encoding, the ATR and a paper
portfolio. Requests of one instrument are serialized by the session's lock; instruments run concurrently.

What a request costs in agent calls, and why no more:

- tick: one call (risk Q-values on the cached encoding);
- base bar close: tactical and the risk agent *at once* — the risk agent scores all five proposals the
  tactical agent can make (``risk_proposals``), so its answer is ready when tactical's is; regime and
  structure are read from the context memory;
- higher bar close: regime, then structure (it attends over the regime message of the same close), then
  tactical and risk at once as above.

Fail closed: an agent that errs, times out, is unreachable or returns NaN means no new exposure (exits
still allowed) and its reason in ``reasons`` (``tactical:timeout``, ``risk:unavailable`` …) — the same
rule as the engine, with per-agent deadlines instead of the engine's lateness budget.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marlops.agents.decision import DecisionInputs, Portfolio, RiskLimits
from marlops.agents.engine import EngineConfig, TradeDecision, decide_and_fill, timeframe_label
from marlops.agents.hub import COMM_SOURCES, CommunicationHub, ConsensusConfig, Message
from marlops.agents.types import (
    MESSAGE_DIM,
    PORTFOLIO_FEATURES,
    PROPOSAL_DIM,
    REGIME_NAMES,
    RegimeOutput,
    RiskOutput,
    StructureOutput,
    TacticalAction,
    TacticalOutput,
)
from marlops.market.indicators import RollupAtr
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL
from marlops.serving import metrics
from marlops.serving.clients import AgentCallError, AgentEndpoint
from marlops.serving.decision_request import DecisionRequest, PortfolioState
from marlops.serving.request_log import RequestLog, RequestRecord, iso_utc, latest_rows
from marlops.serving.tensors import InputError, check_matrix
from marlops.team import AGENTS

# Per-call deadlines (ms). Generous against the design's 5 ms per agent: a deadline is for a hung or
# overloaded agent, and a late answer costs a fail-closed decision, never a hang.
DEFAULT_TIMEOUTS_MS: dict[str, float] = {"regime": 100.0, "structure": 100.0, "tactical": 50.0, "risk": 50.0}


# Endpoints standing in for the configured ones during one request (the InferenceGraph aggregator's:
# the agents' ensemble answers, see marlops.serving.graph); a context variable, so per task.
ENDPOINT_OVERRIDES: contextvars.ContextVar[Mapping[str, AgentEndpoint] | None] = contextvars.ContextVar(
    "marlops_endpoint_overrides", default=None
)


class FeatureFetchError(Exception):
    """The online store gave no usable matrices (``kind``: missing | stale | error)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class FetchedMatrices:
    bar_end: int
    higher_bar_end: int
    matrices: dict[str, np.ndarray]
    ready: dict[str, bool]


MatrixFetcher = Callable[[str], FetchedMatrices]  # instrument -> latest matrices (blocking; run in a thread)


@dataclass
class Session:
    """The context memory of one instrument."""

    instrument: str
    hub: CommunicationHub
    portfolio: Portfolio = field(default_factory=Portfolio)
    atr: RollupAtr = field(default_factory=RollupAtr)  # of the higher timeframe, rolled up from base bars
    price: float = math.nan
    slow_mats: dict[str, np.ndarray] = field(default_factory=dict)
    slow_ts: int = -1
    tactical_m: np.ndarray | None = None
    risk_cache: np.ndarray | None = None
    slow_faults: tuple[str, ...] = ()  # of the last higher-bar close, reported with its base decision
    slow_latency: dict[str, float] = field(default_factory=dict)
    slow_total_us: float = 0.0
    last_ts: int = -1
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def latest(self, sender: str, now: int) -> Any:
        if self.hub.memory.is_stale(sender, now):
            return None
        m = self.hub.memory.get(sender)
        return m.payload if m is not None else None


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


def _finite(*xs: object) -> bool:
    for x in xs:
        if isinstance(x, np.ndarray):
            if not np.isfinite(x).all():
                return False
        elif not math.isfinite(x):  # type: ignore[arg-type]
            return False
    return True


def _scalar(a: np.ndarray) -> float:
    return float(np.asarray(a).reshape(-1)[0])


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
        self.limits = limits or RiskLimits()
        self.consensus = consensus
        self.config = cfg = config or EngineConfig()
        self.timeouts_s = {a: (timeouts_ms or {}).get(a, DEFAULT_TIMEOUTS_MS[a]) / 1e3 for a in AGENTS}
        self.fetch_matrices = fetch_matrices
        self.request_log = request_log
        self.max_sessions = max_sessions
        self.clocks = (
            "tick",
            timeframe_label(cfg.base_timeframe_ns),
            timeframe_label(cfg.higher_timeframe_ns),
        )
        stale = cfg.stale_after_periods
        self._max_age = {
            "regime": int(stale * cfg.higher_timeframe_ns),
            "structure": int(stale * cfg.higher_timeframe_ns),
            "tactical": int(stale * cfg.base_timeframe_ns),
        }
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        hold = np.zeros(PROPOSAL_DIM, dtype=np.float32)
        hold[int(TacticalAction.HOLD)] = 1.0
        self._proposal_hold = hold

    # ---------------------------------------------------------------------------------- sessions

    def session(self, instrument: str) -> Session:
        s = self.sessions.get(instrument)
        if s is None:
            s = Session(
                instrument, CommunicationHub(max_age_ns=dict(self._max_age), consensus=self.consensus)
            )
            self.sessions[instrument] = s
            while len(self.sessions) > self.max_sessions:  # least recently used goes first
                self.sessions.popitem(last=False)
        else:
            self.sessions.move_to_end(instrument)
        return s

    def versions(self) -> dict[str, str]:
        endpoints = ENDPOINT_OVERRIDES.get() or self.agents
        return {a: e.version or "?" for a, e in endpoints.items()}

    # ------------------------------------------------------------------------------------ calling

    async def _call(
        self,
        agent: str,
        inputs: dict[str, np.ndarray],
        lat: dict[str, float],
        faults: list[str],
        key: str = "",
    ) -> dict[str, np.ndarray] | None:
        t = time.perf_counter_ns()
        endpoints = ENDPOINT_OVERRIDES.get() or self.agents
        try:
            out = await endpoints[agent].infer(inputs, self.timeouts_s[agent])
        except AgentCallError as e:
            faults.append(f"{agent}:{e.kind}")
            out = None
        us = (time.perf_counter_ns() - t) / 1e3
        lat[key or agent] = us
        metrics.agent_latency(agent).observe(us / 1e6)
        return out

    async def _regime(self, m: np.ndarray, lat: dict, faults: list) -> RegimeOutput | None:
        o = await self._call("regime", {"x": m[None]}, lat, faults)
        if o is None:
            return None
        try:
            return RegimeOutput(
                probs=o["probs"][0].copy(),
                volatility=_scalar(o["volatility"]),
                message=o["message"][0].copy(),
            )
        except (KeyError, IndexError, ValueError):
            faults.append("regime:error:bad_response")
            return None

    async def _structure(
        self, m: np.ndarray, msgs: np.ndarray, mask: np.ndarray, lat: dict, faults: list
    ) -> StructureOutput | None:
        o = await self._call(
            "structure", {"x": m[None], "msgs": msgs[None].copy(), "mask": mask[None].copy()}, lat, faults
        )
        if o is None:
            return None
        try:
            return StructureOutput(
                action_probs=o["probs"][0].copy(),
                bias=min(1.0, max(-1.0, _scalar(o["bias"]))),  # as AgentSet.structure
                size=_scalar(o["size"]),
                confidence=_scalar(o["confidence"]),
                value=_scalar(o["value"]),
                message=o["message"][0].copy(),
            )
        except (KeyError, IndexError, ValueError):
            faults.append("structure:error:bad_response")
            return None

    async def _tactical(
        self, m: np.ndarray, msgs: np.ndarray, mask: np.ndarray, lat: dict, faults: list
    ) -> TacticalOutput | None:
        o = await self._call(
            "tactical", {"x": m[None], "msgs": msgs[None].copy(), "mask": mask[None].copy()}, lat, faults
        )
        if o is None:
            return None
        try:
            return TacticalOutput(
                action_probs=o["probs"][0].copy(), value=_scalar(o["value"]), message=o["message"][0].copy()
            )
        except (KeyError, IndexError, ValueError):
            faults.append("tactical:error:bad_response")
            return None

    async def _risk_proposals(
        self, s: Session, pvec: np.ndarray, proposals: np.ndarray, lat: dict, faults: list
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(matrix encoding, Q-values of every proposal) in one call; (None, None) on failure."""
        inputs = {
            "tactical": s.tactical_m[None],  # type: ignore[index]
            "structure": s.slow_mats["structure"][None],
            "regime": s.slow_mats["regime"][None],
            "portfolio": pvec[None],
            "proposal": proposals,
        }
        o = await self._call("risk", inputs, lat, faults)
        if o is None:
            return None, None
        try:
            cache, q = o["cache"][0].copy(), o["q"]
            if q.shape != (len(proposals), 4):
                raise ValueError
        except (KeyError, IndexError, ValueError):
            faults.append("risk:error:bad_response")
            return None, None
        return cache, q

    async def _risk_q(
        self, cache: np.ndarray, pvec: np.ndarray, proposal: np.ndarray, lat: dict, faults: list
    ) -> RiskOutput | None:
        o = await self._call(
            "risk", {"cache": cache[None], "portfolio": pvec[None], "proposal": proposal[None]}, lat, faults
        )
        if o is None:
            return None
        try:
            return RiskOutput(q_values=o["q"][0].copy())
        except (KeyError, IndexError):
            faults.append("risk:error:bad_response")
            return None

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
            mats, ready, feat_faults = await self._matrices(req)  # may reject the request: before any change
            if req.portfolio is not None:
                s.portfolio = req.portfolio.to_portfolio()
            tick, _base, higher = self.clocks
            if req.clock == tick:
                out = await self._tick(s, req.ts, float(req.price))  # type: ignore[arg-type]
            else:
                slow = req.clock == higher
                if slow and mats is not None:
                    await self._slow(s, req.ts, mats, ready["structure"] and ready["regime"])
                out = await self._base(
                    s, req, mats, ready["tactical"], slow and mats is not None, feat_faults
                )
            s.last_ts = req.ts
            secs = time.perf_counter() - t0
            d = out[0]
            reg = s.hub.memory.get("regime")
            features = {}
            if self.request_log is not None and (s.tactical_m is not None or s.slow_mats):
                features = latest_rows({"tactical": s.tactical_m, **s.slow_mats})
            outcome = Outcome(
                d,
                req.instrument,
                reg.payload if reg is not None else None,  # type: ignore[arg-type]
                out[1],
                out[2],
                out[3],
                PortfolioState.of(s.portfolio),
                features,
                secs,
            )
        metrics.record_decision(d.timeframe, secs, d.overrides, d.reasons)
        if self.request_log is not None:
            self.request_log.append(outcome.record())
        return outcome

    async def _matrices(
        self, req: DecisionRequest
    ) -> tuple[dict[str, np.ndarray] | None, dict[str, bool], list[str]]:
        """The request's matrices (checked) or the online store's; fetch problems become faults."""
        tick, base, higher = self.clocks
        ready = {"tactical": True, "structure": True, "regime": True, **(req.ready or {})}
        if req.clock == tick:
            return None, ready, []
        need = ("tactical",) if req.clock == base else ("tactical", "structure", "regime")
        if req.matrices is not None:
            unknown = sorted(set(req.matrices) - {"tactical", "structure", "regime"})
            if unknown:
                raise InputError(
                    f"matrices.{unknown[0]}", "unknown matrix; expected tactical, structure, regime"
                )
            for name in need:
                if name not in req.matrices:
                    raise InputError(f"matrices.{name}", f"missing (required for a {req.clock} decision)")
            return {n: check_matrix(n, req.matrices[n]) for n in need}, ready, []
        if self.fetch_matrices is None:
            raise InputError(
                "matrices",
                "required: this server has no Feast store to fetch them from (start it with --feast-repo)",
            )
        try:
            got = await asyncio.to_thread(self.fetch_matrices, req.instrument)
        except FeatureFetchError as e:
            return None, ready, [f"features:{e.kind}"]
        faults = []
        if got.bar_end != req.ts or (req.clock == higher and got.higher_bar_end != req.ts):
            faults.append("features:stale")  # the store has not caught up with this bar (or is ahead of it)
        ready = {**ready, **got.ready} if req.ready is None else ready
        return {n: got.matrices[n] for n in need}, ready, faults

    async def _slow(self, s: Session, ts: int, mats: dict[str, np.ndarray], ready: bool) -> None:
        """Engine._run_slow: regime, then structure over the regime message of the same close."""
        t0 = time.perf_counter_ns()
        faults: list[str] = [] if ready else ["warming_up:higher"]
        s.slow_mats = {"structure": mats["structure"], "regime": mats["regime"]}
        s.slow_ts = ts
        lat: dict[str, float] = {}
        hub = s.hub
        reg = await self._regime(mats["regime"], lat, faults)
        if reg is not None and _finite(reg.probs, reg.volatility, reg.message):
            hub.publish(Message("regime", ts, self.versions()["regime"], reg, reg.message))
        elif reg is not None:
            faults.append("regime:nan")
        msgs, mask = hub.inbox("structure", ts)
        st = await self._structure(mats["structure"], msgs, mask, lat, faults)
        if st is not None and _finite(st.action_probs, st.bias, st.size, st.confidence, st.message):
            hub.publish(Message("structure", ts, self.versions()["structure"], st, st.message))
        elif st is not None:
            faults.append("structure:nan")
        s.slow_faults, s.slow_latency = tuple(faults), lat
        s.slow_total_us = (time.perf_counter_ns() - t0) / 1e3

    async def _base(
        self,
        s: Session,
        req: DecisionRequest,
        mats: dict[str, np.ndarray] | None,
        ready: bool,
        at_slow: bool,
        feat_faults: list[str],
    ) -> tuple[TradeDecision, StructureOutput | None, TacticalOutput | None, RiskOutput | None]:
        """Engine._run_base: tactical and the risk agent's verdicts at once, then the gates."""
        t0 = time.perf_counter_ns()
        bar = req.bar
        assert bar is not None
        ts = req.ts
        s.price = bar.close
        s.atr.add(bar.high, bar.low)
        if req.clock == self.clocks[2]:  # this base bar closes a higher bar: stops are measured on that one
            s.atr.close(bar.close)
        pf = s.portfolio
        pf.roll_day(ts, bar.close)
        if pf.position:
            pf.bars_in_position += 1
        faults: list[str] = [*feat_faults] + ([] if ready else ["warming_up:base"])
        lat: dict[str, float] = dict(s.slow_latency) if at_slow else {}
        slow_us = s.slow_total_us if at_slow else 0.0
        if at_slow:
            faults += s.slow_faults
        for sender in ("regime", "structure"):
            if s.hub.memory.is_stale(sender, ts) and f"{sender}:missing" not in faults:
                faults.append(f"{sender}:stale" if s.hub.memory.get(sender) else f"{sender}:missing")
        label = req.clock
        if mats is None:  # no matrices for this bar (the online store failed): decide as on a tick
            return await self._finish(
                s, ts, label, None, s.latest("structure", ts), self._proposal_hold, faults, lat, t0, slow_us
            )
        s.tactical_m = mats["tactical"]
        msgs, mask = s.hub.inbox("tactical", ts)
        structure = s.latest("structure", ts)
        pvec = pf.state_vector(s.price, self.limits)
        proposals = np.stack([self._proposal(a, structure) for a in TacticalAction])
        tac_faults: list[str] = []
        risk_faults: list[str] = []
        tac_lat: dict[str, float] = {}
        risk_lat: dict[str, float] = {}
        if s.slow_mats:
            tac, (cache, q) = await asyncio.gather(
                self._tactical(s.tactical_m, msgs, mask, tac_lat, tac_faults),
                self._risk_proposals(s, pvec, proposals, risk_lat, risk_faults),
            )
        else:  # no higher bar yet: no risk encoding (engine: risk cache None)
            tac = await self._tactical(s.tactical_m, msgs, mask, tac_lat, tac_faults)
            cache = q = None
        lat.update(tac_lat)
        lat.update(risk_lat)
        faults += tac_faults
        if tac is not None and not _finite(tac.action_probs, tac.value):
            faults.append("tactical:nan")
            tac = None
        elif tac is not None:
            s.hub.publish(Message("tactical", ts, self.versions()["tactical"], tac, tac.message))
        faults += risk_faults
        s.risk_cache = cache if cache is not None and np.isfinite(cache).all() else None
        risk: RiskOutput | None = None
        if s.risk_cache is not None and q is not None:
            row = q[int(tac.action) if tac is not None else int(TacticalAction.HOLD)]
            if np.isfinite(row).all():
                risk = RiskOutput(q_values=np.array(row, dtype=np.float32))
            else:
                faults.append("risk:nan")
        return self._decide(s, ts, label, tac, structure, risk, faults, lat, t0, slow_us, pvec)

    def _proposal(self, action: TacticalAction, structure: StructureOutput | None) -> np.ndarray:
        p = np.zeros(PROPOSAL_DIM, dtype=np.float32)
        p[int(action)] = 1.0
        if structure is not None:
            p[-2], p[-1] = structure.bias, structure.size
        return p

    async def _tick(self, s: Session, ts: int, price: float):
        t0 = time.perf_counter_ns()
        s.price = price
        s.portfolio.roll_day(ts, price)
        faults: list[str] = [] if s.risk_cache is not None else ["risk:no_matrices_yet"]
        return await self._finish(
            s, ts, self.clocks[0], None, s.latest("structure", ts), self._proposal_hold, faults, {}, t0
        )

    async def _finish(
        self,
        s: Session,
        ts: int,
        label: str,
        tac: TacticalOutput | None,
        structure: StructureOutput | None,
        proposal: np.ndarray,
        faults: list[str],
        lat: dict[str, float],
        t0: int,
        upstream_us: float = 0.0,
    ):
        """Engine._finish for decisions whose risk verdict needs its own call (ticks)."""
        pvec = s.portfolio.state_vector(s.price, self.limits)
        risk = None
        if s.risk_cache is not None:
            risk = await self._risk_q(s.risk_cache, pvec, proposal, lat, faults)
            if risk is not None and not np.isfinite(risk.q_values).all():
                faults.append("risk:nan")
                risk = None
        return self._decide(s, ts, label, tac, structure, risk, faults, lat, t0, upstream_us, pvec)

    def _decide(
        self,
        s: Session,
        ts: int,
        label: str,
        tac: TacticalOutput | None,
        structure: StructureOutput | None,
        risk: RiskOutput | None,
        faults: list[str],
        lat: dict[str, float],
        t0: int,
        upstream_us: float,
        pvec: np.ndarray,
    ) -> tuple[TradeDecision, StructureOutput | None, TacticalOutput | None, RiskOutput | None]:
        if risk is None and not any(f.startswith("risk") for f in faults):
            faults.append("risk:missing")
        pf, limits, price = s.portfolio, self.limits, s.price
        inputs = DecisionInputs(price, s.atr.value, tac, structure, risk, tuple(faults))
        d = decide_and_fill(
            inputs, pf, limits, s.hub, ts, label, self.versions(), lat, t0, upstream_us, self.config
        )
        return d, structure, tac, risk

    async def warm_up(self, timeout_s: float = 2.0) -> dict[str, str]:
        """One call per agent with zero inputs: learns the agent versions and opens the connections.
        Failures are ignored (a down agent is reported by the decisions, not by the server's start)."""
        z = np.zeros
        calls = {
            "regime": {"x": z((1, *REGIME.shape), np.float32)},
            "structure": {
                "x": z((1, *STRUCTURE.shape), np.float32),
                "msgs": z((1, len(COMM_SOURCES["structure"]), MESSAGE_DIM), np.float32),
                "mask": z((1, len(COMM_SOURCES["structure"])), np.bool_),
            },
            "tactical": {
                "x": z((1, *TACTICAL.shape), np.float32),
                "msgs": z((1, len(COMM_SOURCES["tactical"]), MESSAGE_DIM), np.float32),
                "mask": z((1, len(COMM_SOURCES["tactical"])), np.bool_),
            },
            "risk": {
                "tactical": z((1, *TACTICAL.shape), np.float32),
                "structure": z((1, *STRUCTURE.shape), np.float32),
                "regime": z((1, *REGIME.shape), np.float32),
                "portfolio": z((1, len(PORTFOLIO_FEATURES)), np.float32),
                "proposal": self._proposal_hold[None],
            },
        }

        async def one(agent: str) -> None:
            try:
                await self.agents[agent].infer(calls[agent], timeout_s)
            except AgentCallError:
                pass

        await asyncio.gather(*(one(a) for a in AGENTS))
        return self.versions()

    async def close(self) -> None:
        for e in self.agents.values():
            await e.close()
