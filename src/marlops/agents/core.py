"""The decision core: an instrument's state and one step per clock, with no I/O.

A step is a generator. It yields a :class:`Need` (the agent calls it waits for, independent of each
other) and is sent back their decoded outputs, ``None`` for a call that failed (the driver has put the
reason in ``Need.faults``); it returns a :class:`Step`. Two drivers run the same steps:
:class:`~marlops.agents.engine.DecisionEngine` (the agents in-process through ``AgentSet``, from market
events) and :class:`~marlops.serving.decision_service.DecisionService` (the agents behind KServe
endpoints, from requests). How a driver makes the calls (in order, at once, one batched call for all
of the risk agent's proposals) is its own choice; everything else (clocks, context memory, staleness,
fault reasons, the risk gate, the paper fill) is here, once.

Clocks: a higher bar close (30 min) runs :meth:`DecisionCore.slow` (regime, then structure over the
regime message of the same close); a base bar close (5 min) runs :meth:`DecisionCore.base` (tactical
and the risk agent's matrix encoding, then its verdict on tactical's proposal); a tick runs
:meth:`DecisionCore.tick` (the verdict on the cached encoding). Fail closed: a missing, stale, NaN or
failed output means no new exposure (exits still allowed), and the decision lists why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marlops.agents.decision import DecisionInputs, Portfolio, RiskLimits
from marlops.agents.decision_record import TradeDecision, decide_and_fill
from marlops.agents.hub import CommunicationHub, ConsensusConfig, Message
from marlops.agents.types import (
    PROPOSAL_DIM,
    RiskOutput,
    StructureOutput,
    TacticalAction,
    TacticalOutput,
)
from marlops.market.bars import MINUTE_NS, Bar
from marlops.market.indicators import RollupAtr


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


# ------------------------------------------------------------------------------------------- calls


@dataclass(frozen=True, slots=True)
class Call:
    """One agent call. ``agent``: regime | structure_encode | structure | tactical | risk_encode | risk_q;
    ``inputs`` in the order of the AgentSet method (batch 1, no batch axis).

    ``structure_encode`` is optional: a driver that runs structure whole answers None (no fault); one that
    runs it split may start it while regime runs and finish with the ``structure`` call's ``encoding``.

    ``risk_encode`` carries ``portfolio`` and every ``proposals`` row tactical could make, so a driver
    may score them all with the same call; the ``risk_q`` that follows names the row it wants
    (``choice``) and may be answered from those scores instead of a second call.
    """

    agent: str
    inputs: tuple[np.ndarray, ...]
    portfolio: np.ndarray | None = None
    proposals: np.ndarray | None = None
    choice: int = -1
    encoding: Any = None


class Need:
    """Calls a step waits for. The driver appends each failed call's reason to ``faults[i]`` and its
    wall time to ``latency_us``; the step merges the faults in its own order."""

    __slots__ = ("calls", "faults", "latency_us")

    def __init__(self, calls: tuple[Call, ...], latency_us: dict[str, float]) -> None:
        self.calls, self.latency_us = calls, latency_us
        self.faults: list[list[str]] = [[] for _ in calls]


@dataclass(frozen=True, slots=True)
class Step:
    """What a base bar or tick step decided, and what the agents said."""

    decision: TradeDecision
    structure: StructureOutput | None
    tactical: TacticalOutput | None
    risk: RiskOutput | None
    portfolio: np.ndarray  # the risk agent's portfolio features before the decision
    proposal: np.ndarray  # the proposal the risk agent scored


StepGen = Generator[Need, tuple[Any, ...], Step]
# The agents' version ids, asked when a message is published and when the decision is made (a served
# agent's id is learned from its answers).
Versions = Callable[[], Mapping[str, str]]


# ------------------------------------------------------------------------------------------- state


@dataclass
class InstrumentState:
    """The context memory of one instrument: hub, paper portfolio, ATR, the matrices and risk encoding
    of the last closes, and what the last higher-bar close reported (with its base decision)."""

    hub: CommunicationHub
    portfolio: Portfolio = field(default_factory=Portfolio)
    atr: RollupAtr = field(default_factory=RollupAtr)  # of the higher timeframe, rolled up from base bars
    price: float = math.nan
    slow_mats: dict[str, np.ndarray] = field(default_factory=dict)
    slow_ts: int = -1
    tactical_m: np.ndarray | None = None
    risk_cache: np.ndarray | None = None
    slow_faults: tuple[str, ...] = ()
    slow_latency: dict[str, float] = field(default_factory=dict)
    slow_total_us: float = 0.0

    def latest(self, sender: str, now: int) -> Any:
        """``sender``'s latest output, or None when missing or stale."""
        memory = self.hub.memory
        if memory.is_stale(sender, now):
            return None
        m = memory.get(sender)
        return m.payload if m is not None else None


def proposal(action: TacticalAction, structure: StructureOutput | None) -> np.ndarray:
    """The risk agent's view of a proposal: the tactical action one-hot, structure's bias and size."""
    p = np.zeros(PROPOSAL_DIM, dtype=np.float32)
    p[int(action)] = 1.0
    if structure is not None:
        p[-2], p[-1] = structure.bias, structure.size
    return p


def finite(*xs: object) -> bool:
    for x in xs:
        if isinstance(x, np.ndarray):
            if not np.isfinite(x).all():
                return False
        elif not math.isfinite(x):  # type: ignore[arg-type]
            return False
    return True


class DecisionCore:
    """The rules of the clocks (the module docstring has them), for any number of instruments."""

    def __init__(
        self,
        limits: RiskLimits | None = None,
        consensus: ConsensusConfig | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.limits = limits or RiskLimits()
        self.consensus = consensus
        self.config = cfg = config or EngineConfig()
        stale = cfg.stale_after_periods
        self.max_age_ns = {
            "regime": int(stale * cfg.higher_timeframe_ns),
            "structure": int(stale * cfg.higher_timeframe_ns),
            "tactical": int(stale * cfg.base_timeframe_ns),
        }
        self.base_label = timeframe_label(cfg.base_timeframe_ns)
        self.higher_label = timeframe_label(cfg.higher_timeframe_ns)
        self.hold = proposal(TacticalAction.HOLD, None)

    def new_state(self, portfolio: Portfolio | None = None) -> InstrumentState:
        hub = CommunicationHub(max_age_ns=dict(self.max_age_ns), consensus=self.consensus)
        return InstrumentState(hub, portfolio or Portfolio())

    # ------------------------------------------------------------------------------------ clocks

    def slow(
        self,
        st: InstrumentState,
        ts: int,
        mats: Mapping[str, np.ndarray],
        ready: bool,
        versions: Versions,
    ) -> Generator[Need, tuple[Any, ...], None]:
        """A higher bar close: regime, then structure over the regime message of the same close. Its faults
        and latencies are reported with the base decision of the same close."""
        t0 = time.perf_counter_ns()
        faults: list[str] = [] if ready else ["warming_up:higher"]
        lat: dict[str, float] = {}
        st.slow_mats = {"structure": mats["structure"], "regime": mats["regime"]}
        st.slow_ts = ts
        need = Need((Call("regime", (mats["regime"],)), Call("structure_encode", (mats["structure"],))), lat)
        reg, encoding = yield need
        faults += need.faults[0]
        if reg is not None and finite(reg.probs, reg.volatility, reg.message):
            st.hub.publish(Message("regime", ts, versions().get("regime", "?"), reg, reg.message))
        elif reg is not None:
            faults.append("regime:nan")
        msgs, mask = st.hub.inbox("structure", ts)
        need = Need((Call("structure", (mats["structure"], msgs, mask), encoding=encoding),), lat)
        (so,) = yield need
        faults += need.faults[0]
        if so is not None and finite(so.action_probs, so.bias, so.size, so.confidence, so.message):
            st.hub.publish(Message("structure", ts, versions().get("structure", "?"), so, so.message))
        elif so is not None:
            faults.append("structure:nan")
        st.slow_faults, st.slow_latency = tuple(faults), lat
        st.slow_total_us = (time.perf_counter_ns() - t0) / 1e3

    def base(
        self,
        st: InstrumentState,
        ts: int,
        bar: Bar,
        tactical_m: np.ndarray | None,
        ready: bool,
        at_slow: bool,
        versions: Versions,
        faults: list[str] | None = None,
        closes_higher: bool | None = None,
    ) -> StepGen:
        """A base bar close. ``at_slow``: :meth:`slow` ran for this close (its faults and latencies join
        this decision's); ``closes_higher`` (default: ``at_slow``): this bar closes a higher one, even if
        :meth:`slow` could not run; ``tactical_m`` None: no matrices for this bar, decide as on a tick."""
        closes_higher = at_slow if closes_higher is None else closes_higher
        t0 = time.perf_counter_ns()
        st.price = price = bar.close
        st.atr.add(bar.high, bar.low)
        if closes_higher:  # stops are measured on the higher timeframe
            st.atr.close(price)
        pf = st.portfolio
        pf.roll_day(ts, price)
        if pf.position:
            pf.bars_in_position += 1
        faults = [*(faults or ())] + ([] if ready else ["warming_up:base"])
        lat: dict[str, float] = dict(st.slow_latency) if at_slow else {}
        upstream_us = st.slow_total_us if at_slow else 0.0
        if at_slow:
            faults += st.slow_faults
        memory = st.hub.memory
        for sender in ("regime", "structure"):
            if memory.is_stale(sender, ts) and f"{sender}:missing" not in faults:
                faults.append(f"{sender}:stale" if memory.get(sender) else f"{sender}:missing")
        label = self.higher_label if closes_higher else self.base_label
        structure = st.latest("structure", ts)
        if tactical_m is None:
            return (
                yield from self._finish(
                    st, ts, label, None, structure, self.hold, faults, lat, t0, upstream_us, versions
                )
            )
        st.tactical_m = tactical_m
        msgs, mask = st.hub.inbox("tactical", ts)
        pvec = pf.state_vector(price, self.limits)
        calls = [Call("tactical", (tactical_m, msgs, mask))]
        if st.slow_mats:  # no higher bar yet: no risk encoding
            proposals = np.stack([proposal(a, structure) for a in TacticalAction])
            encode_in = (tactical_m, st.slow_mats["structure"], st.slow_mats["regime"])
            calls.append(Call("risk_encode", encode_in, portfolio=pvec, proposals=proposals))
        need = Need(tuple(calls), lat)
        tac, *encoded = yield need
        faults += need.faults[0]
        if tac is not None and not finite(tac.action_probs, tac.value):
            faults.append("tactical:nan")
            tac = None
        elif tac is not None:
            st.hub.publish(Message("tactical", ts, versions().get("tactical", "?"), tac, tac.message))
        cache = None
        if encoded:
            faults += need.faults[1]
            cache = encoded[0] if encoded[0] is not None and np.isfinite(encoded[0]).all() else None
        st.risk_cache = cache
        action = tac.action if tac is not None else TacticalAction.HOLD
        return (
            yield from self._finish(
                st,
                ts,
                label,
                tac,
                structure,
                proposal(action, structure),
                faults,
                lat,
                t0,
                upstream_us,
                versions,
                pvec,
                int(action),
            )
        )

    def tick(self, st: InstrumentState, ts: int, price: float, versions: Versions) -> StepGen:
        """A tick: the risk agent's verdict on holding, against the cached matrix encoding."""
        t0 = time.perf_counter_ns()
        st.price = price
        st.portfolio.roll_day(ts, price)
        faults = [] if st.risk_cache is not None else ["risk:no_matrices_yet"]
        structure = st.latest("structure", ts)
        return (
            yield from self._finish(st, ts, "tick", None, structure, self.hold, faults, {}, t0, 0.0, versions)
        )

    # ---------------------------------------------------------------------------------- the gate

    def _finish(
        self,
        st: InstrumentState,
        ts: int,
        label: str,
        tac: TacticalOutput | None,
        structure: StructureOutput | None,
        prop: np.ndarray,
        faults: list[str],
        lat: dict[str, float],
        t0: int,
        upstream_us: float,
        versions: Versions,
        pvec: np.ndarray | None = None,
        choice: int = int(TacticalAction.HOLD),
    ) -> StepGen:
        if pvec is None:
            pvec = st.portfolio.state_vector(st.price, self.limits)
        risk = None
        if st.risk_cache is not None:
            need = Need((Call("risk_q", (st.risk_cache, pvec, prop), choice=choice),), lat)
            (risk,) = yield need
            faults += need.faults[0]
            if risk is not None and not np.isfinite(risk.q_values).all():
                faults.append("risk:nan")
                risk = None
        if risk is None and not any(f.startswith("risk") for f in faults):
            faults.append("risk:missing")
        inputs = DecisionInputs(st.price, st.atr.value, tac, structure, risk, tuple(faults))
        d = decide_and_fill(
            inputs,
            st.portfolio,
            self.limits,
            st.hub,
            ts,
            label,
            versions(),
            lat,
            t0,
            upstream_us,
            self.config.paper,
            self.config.commission_rate,
        )
        return Step(d, structure, tac, risk, pvec, prop)
