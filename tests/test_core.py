"""The decision core (agents/core.py) on its own, and the in-process driver's parallel calls."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marlops.agents.core import Call, DecisionCore, EngineConfig, Need
from marlops.agents.engine import DecisionEngine
from marlops.agents.replay import replay_ticks
from marlops.agents.runtime import AgentSet
from marlops.agents.types import MESSAGE_DIM, RegimeOutput, RiskOutput, StructureOutput, TacticalOutput
from marlops.market.bars import Bar
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL
from marlops.market.synthetic import generate_market

T0 = 1_700_000_000 * 10**9
HALF_HOUR = 30 * 60 * 10**9


def _mats() -> dict[str, np.ndarray]:
    z = np.zeros
    return {
        "tactical": z(TACTICAL.shape, np.float32),
        "structure": z(STRUCTURE.shape, np.float32),
        "regime": z(REGIME.shape, np.float32),
    }


def _answers(nan: str = "") -> dict[str, object]:
    msg = np.zeros(MESSAGE_DIM, np.float32)
    regime = RegimeOutput(np.array([0.7, 0.1, 0.1, 0.1], np.float32), 0.01, msg)
    structure = StructureOutput(np.array([0, 0, 0, 0, 1], np.float32), 1.0, 0.5, 0.9, 0.0, msg)
    tactical = TacticalOutput(np.array([0.9, 0, 0, 0.1, 0], np.float32), 0.0, msg)
    out = {
        "regime": regime,
        "structure_encode": None,
        "structure": structure,
        "tactical": tactical,
        "risk_encode": np.ones(4, np.float32),
        "risk_q": RiskOutput(np.array([1, 0, 0, 0], np.float32)),
    }
    if nan == "regime":
        out["regime"] = RegimeOutput(regime.probs, math.nan, msg)
    if nan == "risk_q":
        out["risk_q"] = RiskOutput(np.full(4, np.nan, np.float32))
    return out


def _drive(step, answers: dict[str, object], fail: dict[str, str] | None = None, seen: list | None = None):
    """A driver that answers every call from ``answers`` (or fails it with the reason in ``fail``)."""
    try:
        need: Need = next(step)
        while True:
            outs = []
            for i, call in enumerate(need.calls):
                if seen is not None:
                    seen.append(call)
                if fail and call.agent in fail:
                    need.faults[i].append(fail[call.agent])
                    outs.append(None)
                else:
                    outs.append(answers[call.agent])
            need = step.send(tuple(outs))
    except StopIteration as done:
        return done.value


def _close(core: DecisionCore, st, ts: int, answers, fail=None, seen=None):
    versions = lambda: {"regime": "r1"}  # noqa: E731
    _drive(core.slow(st, ts, _mats(), True, versions), answers, fail, seen)
    bar = Bar(ts - HALF_HOUR, ts, 100.0, 101.0, 99.0, 100.5, 10.0, 100.2, 10)
    return _drive(core.base(st, ts, bar, _mats()["tactical"], True, True, versions), answers, fail, seen)


def test_a_higher_close_asks_for_each_agent_once_in_the_documented_order() -> None:
    core = DecisionCore(config=EngineConfig())
    st = core.new_state()
    seen: list[Call] = []
    step = _close(core, st, T0, _answers(), seen=seen)
    assert [c.agent for c in seen] == [
        "regime",
        "structure_encode",
        "structure",
        "tactical",
        "risk_encode",
        "risk_q",
    ]
    # risk_encode offers every proposal with the portfolio; risk_q names tactical's (enter_long = 0)
    encode = seen[4]
    assert encode.proposals.shape == (5, 7) and encode.portfolio is not None
    assert seen[5].choice == 0 and np.array_equal(seen[5].inputs[2], encode.proposals[0])
    d = step.decision
    assert d.timeframe == "30m" and d.action == "enter_long" and not d.fail_closed
    assert st.hub.memory.get("regime").model_version == "r1"


@pytest.mark.parametrize(
    ("nan", "fail", "reason"),
    [
        ("regime", None, "regime:nan"),
        ("risk_q", None, "risk:nan"),
        ("", {"tactical": "tactical:timeout"}, "tactical:timeout"),
        ("", {"risk_encode": "risk:unavailable"}, "risk:unavailable"),
        ("", {"structure": "structure:error:x"}, "structure:error:x"),
    ],
)
def test_a_bad_or_failed_answer_fails_the_decision_closed_with_its_reason(nan, fail, reason) -> None:
    core = DecisionCore()
    st = core.new_state()
    d = _close(core, st, T0, _answers(nan), fail).decision
    assert d.fail_closed and reason in d.reasons
    assert d.target_position == 0.0  # flat before: no new exposure
    # a failed risk encoding is not cached: the next tick says why there is no verdict
    if fail and "risk_encode" in fail:
        assert st.risk_cache is None


def test_no_encoding_without_a_higher_bar_and_ticks_say_so() -> None:
    core = DecisionCore()
    st = core.new_state()
    tick = _drive(core.tick(st, T0, 100.0, dict), _answers())
    assert tick.decision.reasons == ("risk:no_matrices_yet",) and tick.decision.fail_closed
    bar = Bar(T0, T0 + 300 * 10**9, 100.0, 101.0, 99.0, 100.5, 10.0, 100.2, 10)
    seen: list[Call] = []
    _drive(core.base(st, bar.end, bar, _mats()["tactical"], True, False, dict), _answers(), seen=seen)
    assert [c.agent for c in seen] == ["tactical"]  # no risk encoding before a higher bar closed


def test_the_parallel_driver_decides_exactly_as_the_sequential_one() -> None:
    """Risk on the worker while tactical runs, structure's encoding while regime runs: same decisions."""
    agents = AgentSet.untrained(seed=0)
    assert agents.split_structure  # teams saved since graph revision 3 carry the split graphs
    ticks = generate_market(4, seed=7).ticks
    cfg = EngineConfig(agent_budget_us={})
    seq = replay_ticks(ticks, agents, engine_config=cfg, parallel=False).decisions
    par = replay_ticks(ticks, agents, engine_config=cfg).decisions
    assert len(seq) == len(par) > 1000
    for a, b in zip(seq, par, strict=True):
        da, db = a.to_dict(), b.to_dict()
        assert da.pop("latency_us").keys() == db.pop("latency_us").keys()
        assert da == db, (a.ts, a.timeframe)


def test_engine_sequential_mode_makes_one_risk_call_per_decision() -> None:
    class Counting:
        def __init__(self, inner: AgentSet) -> None:
            self.inner, self.versions, self.calls = inner, inner.versions, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def risk(self, *a):
            self.calls += 1
            return self.inner.risk(*a)

    agents = Counting(AgentSet.untrained(seed=0))
    assert DecisionEngine(agents, parallel=False)._pool is None
    ticks = generate_market(2, seed=3).ticks
    replay = replay_ticks(ticks, agents, parallel=False)
    with_risk = sum(d.risk_action is not None for d in replay.decisions)
    assert agents.calls == with_risk > 0
