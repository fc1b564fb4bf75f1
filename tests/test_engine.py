"""The decision engine on real (untrained) agents: clocks, fail-closed, determinism, audit, events."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest

from marlops.agents.audit import AuditLog
from marlops.agents.engine import DecisionEngine, EngineConfig, ExecuteTrade
from marlops.agents.hub import ConsensusConfig, ConsensusRule
from marlops.agents.replay import replay_ticks
from marlops.agents.runtime import AgentSet
from marlops.market.events import EventBus
from marlops.market.feed import MarketFeed, iter_ticks
from marlops.market.synthetic import SyntheticMarketConfig, generate_market

DAYS = 5  # the regime matrix needs ~4 days of 30-minute bars before it is ready


@pytest.fixture(scope="module")
def agents() -> AgentSet:
    return AgentSet.untrained(seed=0, backend="eager")


@pytest.fixture(scope="module")
def ticks():
    return generate_market(DAYS, seed=4, config=SyntheticMarketConfig(ticks_per_bar=4.0)).ticks


class Faulty:
    """Wraps real agents and breaks one of them in a chosen way after a given market time."""

    def __init__(self, inner: AgentSet, agent: str, mode: str, after_ts: int) -> None:
        self.inner, self.agent, self.mode, self.after_ts = inner, agent, mode, after_ts
        self.versions = inner.versions
        self.now = 0

    def _wrap(self, name: str, fn, *args):
        if name == self.agent and self.now >= self.after_ts:
            if self.mode == "raise":
                raise ConnectionError("agent down")
            if self.mode == "late":
                time.sleep(0.06)
            out = fn(*args)
            if self.mode == "nan":
                arr = out.action_probs if hasattr(out, "action_probs") else out.probs
                arr = arr.copy()
                arr[0] = np.nan
                out = type(out)(
                    *(arr if f in ("action_probs", "probs") else getattr(out, f) for f in out.__slots__)
                )
            return out
        return fn(*args)

    def regime(self, m):
        return self._wrap("regime", self.inner.regime, m)

    def structure(self, m, msgs, mask):
        return self._wrap("structure", self.inner.structure, m, msgs, mask)

    def tactical(self, m, msgs, mask):
        return self._wrap("tactical", self.inner.tactical, m, msgs, mask)

    def risk_cache(self, *a):
        return self.inner.risk_cache(*a)

    def risk(self, *a):
        return self.inner.risk(*a)


def _replay(agents, ticks, consensus=None, audit=None, engine_config=None):
    return replay_ticks(ticks, agents, consensus=consensus, audit=audit, engine_config=engine_config)


def test_clocks_and_ordering(agents, ticks) -> None:
    # no wall-clock budgets here: on a loaded machine a call can be "late" (tested on its own below)
    res = _replay(agents, ticks, engine_config=EngineConfig(agent_budget_us={}))
    tf = [d.timeframe for d in res.decisions]
    assert tf.count("30m") == DAYS * 48 and tf.count("5m") == DAYS * 288 - DAYS * 48
    assert tf.count("tick") == res.feed_stats.ticks_accepted
    thirty = [d for d in res.decisions if d.timeframe == "30m"]
    assert all({"regime", "structure", "tactical", "risk"} <= set(d.latency_us) for d in thirty[-10:])
    five = [d for d in res.decisions if d.timeframe == "5m"]
    assert all("regime" not in d.latency_us and "tactical" in d.latency_us for d in five)
    assert all(
        set(d.model_versions) == {"regime", "structure", "tactical", "risk"} for d in res.decisions[-5:]
    )
    # once warmed up, healthy agents do not fail closed
    late = [d for d in res.decisions if d.ts > ticks["ts"].iloc[-1] - 86_400 * 10**9]
    assert late and not any(d.fail_closed for d in late)


def test_deterministic_bit_for_bit(agents, ticks) -> None:
    # Wall-clock budgets make "late" depend on the machine's load; determinism is about everything else.
    cfg = EngineConfig(agent_budget_us={})
    a = _replay(agents, ticks, ConsensusConfig(ConsensusRule.NONE), engine_config=cfg)
    b = _replay(
        AgentSet.untrained(seed=0, backend="eager"),
        ticks,
        ConsensusConfig(ConsensusRule.NONE),
        engine_config=cfg,
    )
    strip = lambda ds: [{k: v for k, v in d.to_dict().items() if k != "latency_us"} for d in ds]  # noqa: E731
    assert strip(a.decisions) == strip(b.decisions)
    assert any(d.quantity != 0 for d in a.decisions), "the untrained agents should trade without consensus"


@pytest.mark.parametrize(
    ("agent", "mode"), [("regime", "raise"), ("structure", "nan"), ("tactical", "late"), ("regime", "nan")]
)
def test_fail_closed_means_no_new_exposure(agents, ticks, agent, mode) -> None:
    cut = int(ticks["ts"].iloc[len(ticks) * 3 // 4])
    faulty = Faulty(agents, agent, mode, cut)
    bus, feed = EventBus(), None
    engine = DecisionEngine(faulty, consensus=ConsensusConfig(ConsensusRule.NONE)).attach(bus)
    feed = MarketFeed(bus=bus)
    for t in iter_ticks(ticks):
        faulty.now = t.ts
        feed.on_tick(t)
    after = [d for d in engine.decisions if d.ts > cut + 3_600 * 10**9 and d.timeframe != "tick"]
    assert after and all(d.fail_closed for d in after)
    assert all(
        any(r.startswith(agent) for r in d.reasons)
        for d in after
        if d.timeframe == "30m" or agent == "tactical"
    )
    pos_before = [d.target_position - d.quantity for d in after]
    for d, cur in zip(after, pos_before, strict=True):
        assert abs(d.target_position) <= abs(cur) + 1e-9 and d.target_position * cur >= 0


def test_audit_lines_and_execute_events(agents, ticks) -> None:
    buf = io.StringIO()
    bus = EventBus()
    trades: list[ExecuteTrade] = []
    bus.subscribe(ExecuteTrade, trades.append)
    engine = DecisionEngine(
        agents, consensus=ConsensusConfig(ConsensusRule.NONE), audit=AuditLog(buf)
    ).attach(bus)
    feed = MarketFeed(bus=bus)
    feed.on_ticks(iter_ticks(ticks.iloc[: len(ticks) // 2]))
    lines = buf.getvalue().splitlines()
    assert len(lines) == len(engine.decisions) > 100
    rec = json.loads(lines[-1])
    assert len(rec["inputs_sha256"]) == 64 and set(rec["agents"]) == {
        "regime",
        "structure",
        "tactical",
        "risk",
    }
    assert rec["decision"]["model_versions"] == agents.versions
    assert len(trades) == sum(d.quantity != 0 for d in engine.decisions)
    assert all(t.decision.quantity != 0 for t in trades)
