"""Decision gates and hard limits: whatever the networks output, no decision breaks a limit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marlops.agents.decision import (
    BatchInputs,
    DecisionInputs,
    Portfolio,
    RiskLimits,
    clamp_to_limits,
    decide,
    decide_batch,
)
from marlops.agents.hub import CommunicationHub, ConsensusConfig, ConsensusRule, Message
from marlops.agents.types import (
    MESSAGE_DIM,
    RiskAction,
    RiskOutput,
    StructureOutput,
    TacticalAction,
    TacticalOutput,
)

LIMITS = RiskLimits(max_position=500.0, max_exposure=40_000.0, max_leverage=1.5, max_daily_loss=0.02)
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
probs = st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5).map(
    lambda p: np.asarray(p, np.float32) / max(sum(p), 1e-6)
)


def tactical(action: TacticalAction, conf: float = 0.9) -> TacticalOutput:
    p = np.full(5, (1 - conf) / 4, np.float32)
    p[int(action)] = conf
    return TacticalOutput(p, 0.0, np.zeros(MESSAGE_DIM, np.float32))


def structure(bias: float, size: float = 1.0) -> StructureOutput:
    return StructureOutput(
        np.full(5, 0.2, np.float32), bias, size, 0.8, 0.0, np.zeros(MESSAGE_DIM, np.float32)
    )


def risk(action: RiskAction) -> RiskOutput:
    q = np.zeros(4, np.float32)
    q[int(action)] = 1.0
    return RiskOutput(q)


@st.composite
def scenarios(draw):
    pf = Portfolio(equity_start=draw(st.floats(1_000.0, 1e6)))
    pf.day = pf.halted_day - 1
    pf.day_start_equity = pf.equity_start * draw(st.floats(0.9, 1.1))
    price = draw(st.floats(0.5, 5_000.0))
    if draw(st.booleans()):
        pf.fill(draw(st.floats(-3_000.0, 3_000.0)), price * draw(st.floats(0.8, 1.2)))
    tac = (
        TacticalOutput(draw(probs), draw(floats), np.zeros(MESSAGE_DIM, np.float32))
        if draw(st.booleans())
        else None
    )
    stc = (
        StructureOutput(draw(probs), draw(floats), draw(floats), draw(floats), 0.0, np.zeros(MESSAGE_DIM))
        if draw(st.booleans())
        else None
    )
    rk = (
        RiskOutput(np.asarray(draw(st.lists(st.floats(-5, 5), min_size=4, max_size=4)), np.float32))
        if draw(st.booleans())
        else None
    )
    faults = tuple(draw(st.lists(st.sampled_from(["regime:stale", "tactical:nan", "risk:late"]), max_size=2)))
    limits = RiskLimits(
        max_position_equity=draw(st.floats(0.05, 5.0)),
        max_position=draw(st.one_of(st.none(), st.floats(1.0, 5_000.0))),
        max_exposure=draw(st.one_of(st.none(), st.floats(100.0, 1e6))),
        max_leverage=draw(st.floats(0.1, 5.0)),
        max_daily_loss=draw(st.floats(0.001, 0.2)),
        kill_switch=draw(st.booleans()) and draw(st.booleans()),
    )
    rule = draw(st.sampled_from(list(ConsensusRule)))
    atr = draw(st.one_of(st.floats(1e-6, 500.0), st.just(math.nan)))
    return pf, DecisionInputs(price, atr, tac, stc, rk, faults), limits, rule


@settings(max_examples=600, deadline=None)
@given(scenarios())
def test_no_decision_ever_breaks_a_limit(s) -> None:
    pf, inp, limits, rule = s
    cur, price = pf.position, inp.price
    equity = pf.equity(price)
    daily_breached = equity - pf.day_start_equity <= -limits.max_daily_loss * pf.day_start_equity
    d = decide(inp, pf, limits, CommunicationHub(consensus=ConsensusConfig(rule)))
    t = d.target
    assert math.isfinite(t)
    assert limits.max_position is None or abs(t) <= limits.max_position
    assert limits.max_exposure is None or abs(t) * price <= limits.max_exposure * (1 + 1e-9)
    assert abs(t) * price <= max(limits.max_leverage * equity, 0.0) * (1 + 1e-9)
    assert abs(t) * price <= max(limits.max_position_equity * equity, 0.0) * (1 + 1e-9)
    if limits.kill_switch or daily_breached:
        assert t == 0.0
    if inp.fail_reasons:  # no new exposure: never larger, never on a new side
        assert abs(t) <= abs(cur) + 1e-9 and t * cur >= 0
    if inp.tactical is None:  # a tick: the proposal is "hold", so nothing is ever added
        assert abs(t) <= abs(cur) + 1e-9 and t * cur >= 0


def test_entry_is_sized_by_risk_capital_and_atr_stop() -> None:
    pf = Portfolio()
    pf.roll_day(0, 100.0)
    d = decide(
        DecisionInputs(
            100.0, 0.5, tactical(TacticalAction.ENTER_LONG), structure(0.6, 0.5), risk(RiskAction.ALLOW)
        ),
        pf,
        RiskLimits(),
    )
    # 1% of 100k × size 0.5 = 500 at risk; stop 3 ATR = 1.5 away → 333.3 units; take profit 6 ATR
    assert d.target == pytest.approx(500.0 / 1.5) and d.risk_capital == pytest.approx(500.0)
    assert d.stop_loss == pytest.approx(98.5) and d.take_profit == pytest.approx(103.0)
    assert d.overrides == ()


@pytest.mark.parametrize(
    ("risk_action", "cur", "expected", "override"),
    [
        (RiskAction.BLOCK_ENTRY, 0.0, 0.0, "risk:block_entry"),
        (RiskAction.MODIFY_SIZE, 0.0, 1000.0 / 3.0 * 0.5, "risk:modify_size"),  # half of 1,000 at 3 ATR
        (RiskAction.FORCE_EXIT, 100.0, 0.0, "risk:force_exit"),
    ],
)
def test_risk_agent_overrides(risk_action, cur, expected, override) -> None:
    pf = Portfolio()
    pf.roll_day(0, 100.0)
    if cur:
        pf.fill(cur, 100.0)
    d = decide(
        DecisionInputs(100.0, 1.0, tactical(TacticalAction.ENTER_LONG), structure(0.8), risk(risk_action)),
        pf,
        RiskLimits(),
    )
    assert d.target == pytest.approx(expected if cur == 0 or risk_action == RiskAction.FORCE_EXIT else cur)
    assert override in d.overrides


def test_fail_closed_blocks_entries_but_allows_exits() -> None:
    pf = Portfolio()
    pf.roll_day(0, 100.0)
    entry = decide(
        DecisionInputs(
            100.0,
            1.0,
            tactical(TacticalAction.ENTER_LONG),
            structure(0.8),
            risk(RiskAction.ALLOW),
            ("regime:stale",),
        ),
        pf,
        RiskLimits(),
    )
    assert entry.target == 0.0 and "fail_closed" in entry.overrides
    pf.fill(300.0, 100.0)
    exit_ = decide(
        DecisionInputs(
            100.0,
            1.0,
            tactical(TacticalAction.EXIT_POSITION),
            None,
            None,
            ("structure:missing", "risk:missing"),
        ),
        pf,
        RiskLimits(),
    )
    assert exit_.target == 0.0
    flip = decide(
        DecisionInputs(
            100.0,
            1.0,
            tactical(TacticalAction.ENTER_SHORT),
            structure(-0.9),
            risk(RiskAction.ALLOW),
            ("tactical:late",),
        ),
        pf,
        RiskLimits(),
    )
    assert flip.target == 0.0  # the exit half of a flip is allowed, the new short is not


def test_consensus_structure_must_agree() -> None:
    pf = Portfolio()
    pf.roll_day(0, 100.0)
    d = decide(
        DecisionInputs(
            100.0, 1.0, tactical(TacticalAction.ENTER_LONG), structure(-0.5), risk(RiskAction.ALLOW)
        ),
        pf,
        RiskLimits(),
    )
    assert d.target == 0.0 and d.overrides == ("consensus:structure_disagrees",)
    hub = CommunicationHub(consensus=ConsensusConfig(ConsensusRule.NONE))
    d = decide(
        DecisionInputs(
            100.0, 1.0, tactical(TacticalAction.ENTER_LONG), structure(-0.5), risk(RiskAction.ALLOW)
        ),
        pf,
        RiskLimits(),
        hub,
    )
    assert d.target > 0


def test_daily_loss_halts_for_the_day() -> None:
    pf = Portfolio()
    pf.roll_day(0, 100.0)
    pf.fill(1_000.0, 100.0)
    inp = DecisionInputs(96.0, 1.0, tactical(TacticalAction.HOLD), structure(0.5), risk(RiskAction.ALLOW))
    d = decide(inp, pf, RiskLimits())  # -4,000 on 100,000 = -4% > 3%
    assert d.target == 0.0 and "limit:max_daily_loss" in d.overrides
    pf.fill(-1_000.0, 96.0)
    again = decide(
        DecisionInputs(
            97.0, 1.0, tactical(TacticalAction.ENTER_LONG), structure(0.5), risk(RiskAction.ALLOW)
        ),
        pf,
        RiskLimits(),
    )
    assert again.target == 0.0  # still halted today
    pf.roll_day(86_400 * 10**9, 97.0)
    next_day = decide(
        DecisionInputs(
            97.0, 1.0, tactical(TacticalAction.ENTER_LONG), structure(0.5), risk(RiskAction.ALLOW)
        ),
        pf,
        RiskLimits(),
    )
    assert next_day.target > 0


def test_stop_loss_exit() -> None:
    pf = Portfolio()
    pf.roll_day(0, 100.0)
    pf.fill(100.0, 100.0)
    pf.stop_loss, pf.take_profit = 98.0, 103.0
    d = decide(DecisionInputs(97.9, 1.0, None, None, None), pf, RiskLimits())
    assert d.target == 0.0 and "exit:stop_loss" in d.overrides


def test_clamp_reports_which_limit() -> None:
    t, hits = clamp_to_limits(10_000.0, 100.0, 100_000.0, LIMITS)
    assert t < 400.0 and set(hits) == {
        "limit:max_position",
        "limit:max_exposure",
        "limit:max_leverage",
        "limit:max_position_equity",
    }
    t, hits = clamp_to_limits(-600.0, 10.0, 100_000.0, LIMITS)
    assert -500.0 < t < -499.9 and hits == ["limit:max_position"]


def test_limits_validate_fields() -> None:
    with pytest.raises(ValueError, match="max_leverage"):
        RiskLimits(max_leverage=math.nan)


def test_portfolio_accounting() -> None:
    pf = Portfolio()
    pf.fill(10.0, 100.0)
    pf.fill(10.0, 110.0)
    assert pf.avg_price == pytest.approx(105.0)
    pf.fill(-30.0, 120.0)  # close 20 at +15, open -10 at 120
    assert pf.realized_pnl == pytest.approx(300.0) and pf.position == -10.0 and pf.avg_price == 120.0
    assert pf.equity(110.0) == pytest.approx(100_000 + 300 + 100)


def test_hub_inbox_masks_missing_stale_and_nan() -> None:
    hub = CommunicationHub(max_age_ns={"regime": 100, "structure": 100})
    msgs, mask = hub.inbox("tactical", 0)
    assert not mask.any() and not msgs.any()
    v = np.arange(MESSAGE_DIM, dtype=np.float32)
    hub.publish(Message("regime", 10, "r1", None, v))
    hub.publish(Message("structure", 10, "s1", None, np.full(MESSAGE_DIM, np.nan, np.float32)))
    msgs, mask = hub.inbox("tactical", 50)
    assert mask.tolist() == [True, False] and np.array_equal(msgs[0], v) and not msgs[1].any()
    assert hub.inbox("tactical", 200)[1].tolist() == [False, False]  # stale after 100 ns
    assert hub.memory.age_ns("regime", 200) == 190
    with pytest.raises(ValueError, match="sender"):
        hub.publish(Message("oracle", 0, "x", None))
    received = []
    hub.subscribe("regime", received.append)
    hub.publish(Message("regime", 20, "r1", None, v))
    assert len(received) == 1 and received[0].ts == 20


def test_nan_structure_bias_never_counts_as_agreement() -> None:
    pf = Portfolio()
    pf.roll_day(0, 100.0)
    d = decide(
        DecisionInputs(
            100.0, 1.0, tactical(TacticalAction.ENTER_LONG), structure(math.nan), risk(RiskAction.ALLOW)
        ),
        pf,
        RiskLimits(),
    )
    assert d.target == 0.0 and d.overrides == ("consensus:structure_disagrees",)


@settings(max_examples=300, deadline=None)
@given(st.lists(scenarios(), min_size=1, max_size=8), st.sampled_from(list(ConsensusRule)))
def test_decide_batch_equals_decide(cases, rule) -> None:
    limits = cases[0][2]
    rows = []
    for pf, inp, _, _ in cases:
        pf.stop_loss = (
            inp.price * 0.97 if pf.position > 0 else (inp.price * 1.03 if pf.position < 0 else None)
        )
        pf.take_profit = None
        rows.append((pf, inp))

    def arr(f, dtype=float):
        return np.asarray([f(pf, inp) for pf, inp in rows], dtype=dtype)

    batch = BatchInputs(
        price=arr(lambda p, i: i.price),
        atr=arr(lambda p, i: i.atr),
        tactical_action=arr(lambda p, i: int(i.tactical.action) if i.tactical is not None else -1, int),
        tactical_confidence=arr(lambda p, i: i.tactical.confidence if i.tactical is not None else 0.0),
        structure_present=arr(lambda p, i: i.structure is not None, bool),
        structure_bias=arr(lambda p, i: i.structure.bias if i.structure is not None else 0.0),
        structure_size=arr(lambda p, i: i.structure.size if i.structure is not None else 0.0),
        risk_action=arr(lambda p, i: int(i.risk.action) if i.risk is not None else -1, int),
        fail=arr(lambda p, i: bool(i.fail_reasons), bool),
        position=arr(lambda p, i: p.position),
        equity=arr(lambda p, i: p.equity(i.price)),
        day_start_equity=arr(lambda p, i: p.day_start_equity),
        halted=arr(lambda p, i: p.halted_day == p.day, bool),
        stop_loss=arr(lambda p, i: np.nan if p.stop_loss is None else p.stop_loss),
        take_profit=arr(lambda p, i: np.nan),
    )
    vec = decide_batch(batch, limits, ConsensusConfig(rule))
    hub = CommunicationHub(consensus=ConsensusConfig(rule))
    for k, (pf, inp) in enumerate(rows):
        one = decide(inp, pf, limits, hub)
        assert vec.target[k] == pytest.approx(one.target, rel=1e-12, abs=1e-12), k
        assert vec.risk_capital[k] == pytest.approx(one.risk_capital, rel=1e-12, abs=1e-12)
        assert (np.isnan(vec.stop_loss[k]) and one.stop_loss is None) or vec.stop_loss[k] == pytest.approx(
            one.stop_loss, rel=1e-12
        )
        assert vec.halted[k] == (pf.halted_day == pf.day)


def test_decide_batch_equals_decide_on_many_typical_rows() -> None:
    """A wide random sweep (seeded) where every gate fires often, unlike the adversarial cases above."""
    rng = np.random.default_rng(0)
    n = 4000
    limits = RiskLimits(max_position=800.0, max_exposure=60_000.0, max_leverage=1.0, max_daily_loss=0.02)
    for rule in ConsensusRule:
        rows, fired = [], set()
        for _ in range(n):
            price = float(rng.uniform(50, 150))
            pf = Portfolio()
            pf.roll_day(0, price)
            if rng.random() < 0.6:
                pf.fill(float(rng.uniform(-900, 900)), price * float(rng.uniform(0.95, 1.05)))
                side = np.sign(pf.position)
                pf.stop_loss = price * (1 - side * rng.uniform(-0.01, 0.03))
                pf.take_profit = price * (1 + side * rng.uniform(-0.01, 0.05)) if rng.random() < 0.5 else None
            pf.day_start_equity = pf.equity(price) * float(rng.uniform(0.99, 1.03))
            act = int(rng.integers(0, 5))
            tac = tactical(TacticalAction(act), float(rng.uniform(0.3, 1.0))) if rng.random() < 0.9 else None
            stc = (
                structure(float(rng.uniform(-1, 1)), float(rng.uniform(0, 1))) if rng.random() < 0.8 else None
            )
            rk = risk(RiskAction(int(rng.integers(0, 4)))) if rng.random() < 0.9 else None
            atr = float(rng.uniform(0.05, 2.0)) if rng.random() < 0.95 else math.nan
            inp = DecisionInputs(price, atr, tac, stc, rk, ("x:late",) if rng.random() < 0.1 else ())
            rows.append((pf, inp))
        batch = BatchInputs(
            price=np.array([i.price for _, i in rows]),
            atr=np.array([i.atr for _, i in rows]),
            tactical_action=np.array([int(i.tactical.action) if i.tactical else -1 for _, i in rows]),
            tactical_confidence=np.array([i.tactical.confidence if i.tactical else 0.0 for _, i in rows]),
            structure_present=np.array([i.structure is not None for _, i in rows]),
            structure_bias=np.array([i.structure.bias if i.structure else 0.0 for _, i in rows]),
            structure_size=np.array([i.structure.size if i.structure else 0.0 for _, i in rows]),
            risk_action=np.array([int(i.risk.action) if i.risk else -1 for _, i in rows]),
            fail=np.array([bool(i.fail_reasons) for _, i in rows]),
            position=np.array([p.position for p, _ in rows]),
            equity=np.array([p.equity(i.price) for p, i in rows]),
            day_start_equity=np.array([p.day_start_equity for p, _ in rows]),
            halted=np.zeros(n, bool),
            stop_loss=np.array([np.nan if p.stop_loss is None else p.stop_loss for p, _ in rows]),
            take_profit=np.array([np.nan if p.take_profit is None else p.take_profit for p, _ in rows]),
        )
        vec = decide_batch(batch, limits, ConsensusConfig(rule))
        hub = CommunicationHub(consensus=ConsensusConfig(rule))
        for k, (pf, inp) in enumerate(rows):
            one = decide(inp, pf, limits, hub)
            fired.update(o.split(":")[0] + ":" + o.split(":")[-1] if ":" in o else o for o in one.overrides)
            assert vec.target[k] == pytest.approx(one.target, rel=1e-12, abs=1e-12), (rule, k, one.overrides)
            assert (np.isnan(vec.stop_loss[k]) and one.stop_loss is None) or vec.stop_loss[
                k
            ] == pytest.approx(one.stop_loss, rel=1e-12)
            assert (np.isnan(vec.take_profit[k]) and one.take_profit is None) or vec.take_profit[
                k
            ] == pytest.approx(one.take_profit, rel=1e-12)
        expected = {
            "risk:modify_size",
            "risk:block_entry",
            "risk:force_exit",
            "exit:stop_loss",
            "exit:take_profit",
            "fail_closed",
            "limit:max_daily_loss",
            "limit:max_position",
            "limit:max_leverage",
        }
        if rule in (ConsensusRule.RISK_APPROVES, ConsensusRule.ALL):  # consensus vetoes before the risk gate
            expected = (expected - {"risk:block_entry"}) | {"consensus:risk_disapproves"}
        assert expected <= fired, expected - fired  # every gate was exercised
