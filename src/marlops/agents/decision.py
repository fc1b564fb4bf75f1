"""Pure decision logic: from agent outputs and the portfolio to a target position within hard limits.

No I/O, no clocks, no networks: ``decide`` is a function of its inputs, which is what lets a property
test drive it with arbitrary network outputs and show that no decision ever breaks a limit. The
environment (training) and the engine (serving) both call it, so they cannot drift apart.

Order of the gates (later ones win):
1. tactical proposal → target (entries sized by risk capital and an ATR stop, scaled by structure's size);
   the ATR is the *higher* timeframe's (structure's 30-minute bars by default): positions are opened on
   structure's clock, so their stop and take profit are measured on that timeframe, not on 5-minute
   noise (docs/decision-engine.md, "Economics");
2. consensus (configurable) may turn an entry into a hold;
3. the risk agent: allow / modify_size (scale the entry) / force_exit / block_entry; then the
   stop loss and take profit set at entry;
4. fail closed (a missing, stale, NaN or late agent output): no new exposure, exits still allowed;
5. max daily loss: flatten and no entries for the rest of the day; kill switch: flatten, nothing else;
6. hard limits clamp the target: the position's notional and the gross notional relative to equity
   (``max_position_equity``, ``max_leverage``), then the optional unit and currency caps.

Limits are relative to equity so that one config means one risk on any instrument: 2,000 units were 2x
equity on the ~100-priced reference market, 2.4 % of it on a 1.2-priced FX pair and 36x on a 1,800-priced
one; ``max_position_equity = 2`` is 2x equity on all three.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from marlops.agents.hub import CommunicationHub, ConsensusConfig, ConsensusRule
from marlops.agents.types import (
    PORTFOLIO_FEATURES,
    RiskAction,
    RiskOutput,
    StructureOutput,
    TacticalAction,
    TacticalOutput,
)

# The risk agent's "exposure" feature reads the gross notional over this many times the starting equity:
# 2.5 x 100,000 = 250,000, the former currency max_exposure default, so that trained risk agents read the
# same values on the reference market whatever optional currency cap (or none) a user sets.
EXPOSURE_FEATURE_SCALE = 2.5


@dataclass(frozen=True)
class RiskLimits:
    """Hard limits that hold whatever the networks output.

    The limits a risk desk sets are relative to equity: ``max_position_equity`` caps the instrument's
    position notional ``|position| × price / equity`` and ``max_leverage`` the book's gross notional over
    equity (with one instrument they coincide; both are kept so a desk's two numbers map one to one). The
    defaults, 2x and 2x, are what 2,000 units meant on the ~100-priced reference market at 100,000 equity;
    entries are sized by ``risk_per_trade`` at the ATR stop (~0.5-1x equity there) and rarely reach them.
    ``max_position`` (instrument units) and ``max_exposure`` (currency) are optional absolute caps on top,
    ``None`` = off.
    """

    max_position_equity: float = 2.0  # |position| × price / equity, either side
    max_leverage: float = 2.0  # gross notional / equity
    max_position: float | None = None  # optional: units of the instrument, either side
    max_exposure: float | None = None  # optional: gross notional, currency
    max_daily_loss: float = 0.03  # fraction of the day's starting equity; beyond it: flat, no entries
    kill_switch: bool = False  # flat, and nothing else
    risk_per_trade: float = 0.01  # equity fraction put at risk by a full-size entry (to the stop)
    # Stop and take profit in ATRs of the higher timeframe (the one structure opens positions on). A 3-ATR
    # stop sizes a full entry at ~0.5-1x equity on the reference market, below the leverage cap; the
    # take profit is 2R. Measured choices: docs/training.md, "Economics".
    stop_atr: float = 3.0
    take_profit_atr: float = 6.0
    modify_size_factor: float = 0.5  # the risk agent's modify_size scales an entry by this

    def __post_init__(self) -> None:
        for name in ("max_position", "max_exposure"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name}: must be finite and > 0, or None (no cap), got {v!r}")
        for name in (
            "max_position_equity",
            "max_leverage",
            "max_daily_loss",
            "risk_per_trade",
            "stop_atr",
            "take_profit_atr",
        ):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name}: must be finite and > 0, got {v!r}")
        if not 0.0 <= self.modify_size_factor <= 1.0:
            raise ValueError(f"modify_size_factor: must be in [0, 1], got {self.modify_size_factor!r}")


@dataclass
class Portfolio:
    """Paper portfolio: cash accounting of one instrument's position at an average entry price."""

    equity_start: float = 100_000.0
    position: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    commission_paid: float = 0.0
    day: int = -1  # UTC day number of the current trading day
    day_start_equity: float = 100_000.0
    peak_equity: float = 100_000.0
    bars_in_position: int = 0
    stop_loss: float | None = None
    take_profit: float | None = None
    halted_day: int = -1  # day on which the max daily loss was hit (no entries until the next one)

    def equity(self, price: float) -> float:
        return (
            self.equity_start
            + self.realized_pnl
            - self.commission_paid
            + self.position * (price - self.avg_price)
        )

    def roll_day(self, ts: int, price: float) -> None:
        day = ts // 86_400_000_000_000
        if day != self.day:
            self.day, self.day_start_equity = day, self.equity(price)

    def fill(self, qty: float, price: float, commission_rate: float = 0.0) -> None:
        """Apply a fill of signed ``qty`` at ``price`` (realizing PnL on the closed part)."""
        if qty == 0.0:
            return
        pos = self.position
        if pos == 0.0 or pos * qty > 0:  # open or add: new average price
            new = pos + qty
            self.avg_price = (self.avg_price * pos + price * qty) / new
            self.position = new
        else:
            closed = min(abs(qty), abs(pos)) * math.copysign(1.0, pos)
            self.realized_pnl += closed * (price - self.avg_price)
            self.position = pos + qty
            if self.position * pos < 0:  # flipped: the remainder opens at this price
                self.avg_price = price
            elif self.position == 0.0:
                self.avg_price = 0.0
        self.commission_paid += abs(qty) * price * commission_rate
        if self.position == 0.0:
            self.bars_in_position, self.stop_loss, self.take_profit = 0, None, None

    def state_vector(self, price: float, limits: RiskLimits) -> np.ndarray:
        """The PORTFOLIO_FEATURES vector for the risk agent."""
        eq = self.equity(price)
        notional = abs(self.position) * price
        upnl = self.position * (price - self.avg_price)
        self.peak_equity = max(self.peak_equity, eq)
        stop = 0.0
        if self.position and self.stop_loss:
            stop = math.copysign((price - self.stop_loss) / price, self.position)
        v = (
            self.position * price / eq / limits.max_position_equity if eq > 0 else 0.0,
            upnl / eq if eq > 0 else -1.0,
            (eq - self.day_start_equity) / self.day_start_equity if self.day_start_equity > 0 else -1.0,
            notional / eq / limits.max_leverage if eq > 0 else 1.0,
            notional / (EXPOSURE_FEATURE_SCALE * self.equity_start),
            min(self.bars_in_position / 288.0, 1.0),
            (self.peak_equity - eq) / self.peak_equity if self.peak_equity > 0 else 1.0,
            stop,
        )
        out = np.array(v, dtype=np.float32)
        # ufuncs with out=: np.clip's Python wrapper costs more than the work on 8 values (tick path)
        return np.minimum(np.maximum(out, -10.0, out=out), 10.0, out=out)


assert len(PORTFOLIO_FEATURES) == 8


@dataclass(frozen=True)
class DecisionInputs:
    price: float
    atr: float  # ATR(14) of the higher timeframe: the stop and take-profit unit (price); NaN while warming
    tactical: TacticalOutput | None  # None on tick decisions (the proposal is "hold")
    structure: StructureOutput | None
    risk: RiskOutput | None
    fail_reasons: tuple[str, ...] = ()  # non-empty: fail closed


@dataclass(frozen=True)
class DecisionCore:
    action: TacticalAction
    target: float
    risk_capital: float
    stop_loss: float | None
    take_profit: float | None
    overrides: tuple[str, ...] = field(default=())


def _no_new_exposure(current: float, target: float) -> float:
    if target * current < 0:
        return 0.0  # a flip's exit part is allowed, its new side is not
    if abs(target) > abs(current):
        return current
    return target


def unit_caps(price: float, equity: float, limits: RiskLimits) -> dict[str, float]:
    """Each hard limit as a cap on |position| in units at this price and equity (no equity: 0)."""
    eq = max(equity, 0.0)
    caps = {
        "max_position_equity": limits.max_position_equity * eq / price,
        "max_leverage": limits.max_leverage * eq / price,
    }
    if limits.max_position is not None:
        caps["max_position"] = limits.max_position
    if limits.max_exposure is not None:
        caps["max_exposure"] = limits.max_exposure / price
    return caps


def position_cap(price: float, equity: float, limits: RiskLimits) -> float:
    """The largest |position| (units) every hard limit allows at this price and equity."""
    return min(unit_caps(price, equity, limits).values())


def clamp_to_limits(
    target: float, price: float, equity: float, limits: RiskLimits
) -> tuple[float, list[str]]:
    """The largest |target| (same sign) that respects every hard limit, and which limits bit."""
    caps = unit_caps(price, equity, limits)
    cap = min(caps.values())
    if abs(target) <= cap:
        return target, []
    hits = [f"limit:{name}" for name, c in caps.items() if abs(target) > c]
    # shave a hair so rounding of cap × price cannot land a ulp above the limit
    return math.copysign(cap * (1.0 - 1e-12), target), hits


def decide(
    inp: DecisionInputs,
    pf: Portfolio,
    limits: RiskLimits,
    hub: CommunicationHub | None = None,
    consensus: ConsensusConfig | None = None,
) -> DecisionCore:
    """The target position for this decision, with every override that shaped it."""
    price, cur = inp.price, pf.position
    overrides: list[str] = []
    equity = pf.equity(price)
    action = inp.tactical.action if inp.tactical is not None else TacticalAction.HOLD
    atr_ok = math.isfinite(inp.atr) and inp.atr > 0
    stop_dist = limits.stop_atr * inp.atr if atr_ok else float("nan")
    entering = action in (TacticalAction.ENTER_LONG, TacticalAction.ENTER_SHORT)
    direction = 1.0 if action == TacticalAction.ENTER_LONG else -1.0
    risk_capital = 0.0

    # 1. the tactical proposal
    if entering:
        size = 1.0
        if inp.structure is not None and math.isfinite(inp.structure.size):
            size = min(max(inp.structure.size, 0.0), 1.0)
        risk_capital = max(equity, 0.0) * limits.risk_per_trade * size
        if not atr_ok:
            target, entering = cur, False
            overrides.append("entry:no_atr_yet")
        elif cur * direction > 0:
            target = cur  # already on that side: no pyramiding
        else:
            target = direction * risk_capital / stop_dist
    elif action == TacticalAction.EXIT_POSITION:
        target = 0.0
    elif action == TacticalAction.REDUCE_SIZE:
        target = cur / 2.0
    else:
        target = cur

    # 2. consensus
    risk_act = inp.risk.action if inp.risk is not None else None
    if entering and inp.tactical is not None:
        approves = risk_act in (RiskAction.ALLOW, RiskAction.MODIFY_SIZE)
        res = (
            hub.consensus(inp.tactical, inp.structure, approves)
            if hub is not None
            else CommunicationHub(consensus=consensus).consensus(inp.tactical, inp.structure, approves)
        )
        if not res.agree:
            target, entering = cur, False
            overrides.append(f"consensus:{res.reason}")

    # 3. the risk agent
    if risk_act == RiskAction.FORCE_EXIT and cur != 0.0:
        target = 0.0
        overrides.append("risk:force_exit")
    elif risk_act == RiskAction.BLOCK_ENTRY and entering:
        target, entering = cur, False
        overrides.append("risk:block_entry")
    elif risk_act == RiskAction.MODIFY_SIZE and entering:
        target = cur + (target - cur) * limits.modify_size_factor
        overrides.append("risk:modify_size")

    # protective exits set at entry
    if cur != 0.0 and pf.stop_loss is not None and (price - pf.stop_loss) * cur <= 0:
        target = 0.0
        overrides.append("exit:stop_loss")
    elif cur != 0.0 and pf.take_profit is not None and (price - pf.take_profit) * cur >= 0:
        target = 0.0
        overrides.append("exit:take_profit")

    # 4. fail closed
    if inp.fail_reasons:
        t = _no_new_exposure(cur, target)
        if t != target:
            overrides.append("fail_closed")
        target = t

    # 5. daily loss and kill switch
    if pf.halted_day == pf.day or (
        pf.day_start_equity > 0
        and equity - pf.day_start_equity <= -limits.max_daily_loss * pf.day_start_equity
    ):
        pf.halted_day = pf.day
        if target != 0.0:
            overrides.append("limit:max_daily_loss")
        target = 0.0
    if limits.kill_switch:
        if target != 0.0 or cur != 0.0:
            overrides.append("kill_switch")
        target = 0.0

    # 6. hard limits
    target, hits = clamp_to_limits(target, price, equity, limits)
    overrides += hits

    new_side = target != 0.0 and target * cur <= 0
    stop = take = None
    if new_side and atr_ok:
        s = math.copysign(1.0, target)
        stop, take = price - s * stop_dist, price + s * limits.take_profit_atr * inp.atr
    elif target != 0.0:
        stop, take = pf.stop_loss, pf.take_profit
    return DecisionCore(action, target, risk_capital, stop, take, tuple(overrides))


# ---------------------------------------------------------------------------------------------
# The same gates over a batch of independent portfolios (the vectorized training environment).
# tests/test_decision.py proves decide_batch == decide element by element on random inputs.


@dataclass(frozen=True)
class BatchInputs:
    """Arrays of shape (n,). Missing agent outputs: ``tactical_action`` -1 (hold, as on a tick),
    ``structure_present`` False, ``risk_action`` -1; missing stops are NaN."""

    price: np.ndarray
    atr: np.ndarray
    tactical_action: np.ndarray  # int, TacticalAction or -1
    tactical_confidence: np.ndarray
    structure_present: np.ndarray  # bool
    structure_bias: np.ndarray
    structure_size: np.ndarray
    risk_action: np.ndarray  # int, RiskAction or -1
    fail: np.ndarray  # bool: fail closed
    position: np.ndarray
    equity: np.ndarray
    day_start_equity: np.ndarray
    halted: np.ndarray  # bool: the max daily loss was hit earlier today
    stop_loss: np.ndarray
    take_profit: np.ndarray


@dataclass(frozen=True)
class BatchDecision:
    target: np.ndarray
    risk_capital: np.ndarray
    stop_loss: np.ndarray  # NaN: none
    take_profit: np.ndarray
    halted: np.ndarray  # the daily-loss halt after this decision


def decide_batch(
    b: BatchInputs, limits: RiskLimits, consensus: ConsensusConfig | None = None
) -> BatchDecision:
    """:func:`decide` for many portfolios at once (numpy, no Python loop over the batch)."""
    cfg = consensus or ConsensusConfig()
    price, cur, equity = b.price, b.position, b.equity
    a = b.tactical_action
    entering = (a == TacticalAction.ENTER_LONG) | (a == TacticalAction.ENTER_SHORT)
    direction = np.where(a == TacticalAction.ENTER_LONG, 1.0, -1.0)
    atr_ok = np.isfinite(b.atr) & (b.atr > 0)
    stop_dist = limits.stop_atr * np.where(atr_ok, b.atr, np.nan)
    size = np.where(
        b.structure_present & np.isfinite(b.structure_size), np.clip(b.structure_size, 0.0, 1.0), 1.0
    )
    risk_capital = np.where(entering, np.maximum(equity, 0.0) * limits.risk_per_trade * size, 0.0)

    # 1. the tactical proposal
    target = np.where(
        a == TacticalAction.EXIT_POSITION, 0.0, np.where(a == TacticalAction.REDUCE_SIZE, cur / 2.0, cur)
    )
    no_atr = entering & ~atr_ok
    entering = entering & ~no_atr
    with np.errstate(invalid="ignore", divide="ignore"):
        fresh = entering & ~(cur * direction > 0)
        target = np.where(fresh, direction * risk_capital / np.where(fresh, stop_dist, 1.0), target)

    # 2. consensus (the tactical proposal is present wherever an entry is)
    risk = b.risk_action
    disagree = ~(b.tactical_confidence >= cfg.min_confidence)
    if cfg.rule in (ConsensusRule.STRUCTURE_AGREES, ConsensusRule.ALL):
        disagree |= ~b.structure_present | ~(direction * b.structure_bias >= cfg.min_bias)
    if cfg.rule in (ConsensusRule.RISK_APPROVES, ConsensusRule.ALL):
        disagree |= ~((risk == RiskAction.ALLOW) | (risk == RiskAction.MODIFY_SIZE))
    veto = entering & disagree
    target = np.where(veto, cur, target)
    entering = entering & ~veto

    # 3. the risk agent, then protective exits
    force = (risk == RiskAction.FORCE_EXIT) & (cur != 0.0)
    block = (risk == RiskAction.BLOCK_ENTRY) & entering
    modify = (risk == RiskAction.MODIFY_SIZE) & entering
    target = np.where(
        force,
        0.0,
        np.where(block, cur, np.where(modify, cur + (target - cur) * limits.modify_size_factor, target)),
    )
    with np.errstate(invalid="ignore"):
        stop_hit = (cur != 0.0) & np.isfinite(b.stop_loss) & ((price - b.stop_loss) * cur <= 0)
        tp_hit = ~stop_hit & (cur != 0.0) & np.isfinite(b.take_profit) & ((price - b.take_profit) * cur >= 0)
    target = np.where(stop_hit | tp_hit, 0.0, target)

    # 4. fail closed: no new exposure
    no_new = np.where(target * cur < 0, 0.0, np.where(np.abs(target) > np.abs(cur), cur, target))
    target = np.where(b.fail, no_new, target)

    # 5. daily loss, kill switch
    dse = b.day_start_equity
    halted = b.halted | ((dse > 0) & (equity - dse <= -limits.max_daily_loss * dse))
    target = np.where(halted, 0.0, target)
    if limits.kill_switch:
        target = np.zeros_like(target)

    # 6. hard limits (as in unit_caps)
    eq = np.maximum(equity, 0.0)
    cap = np.minimum(limits.max_position_equity, limits.max_leverage) * eq / price
    if limits.max_position is not None:
        cap = np.minimum(cap, limits.max_position)
    if limits.max_exposure is not None:
        cap = np.minimum(cap, limits.max_exposure / price)
    target = np.where(np.abs(target) > cap, np.copysign(cap * (1.0 - 1e-12), target), target)

    new_side = (target != 0.0) & (target * cur <= 0)
    s = np.sign(target)
    opened = new_side & atr_ok
    stop = np.where(opened, price - s * stop_dist, np.where(target != 0.0, b.stop_loss, np.nan))
    take = np.where(
        opened, price + s * limits.take_profit_atr * b.atr, np.where(target != 0.0, b.take_profit, np.nan)
    )
    return BatchDecision(target, risk_capital, stop, take, halted)
