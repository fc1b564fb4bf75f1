"""Plain data that crosses the boundaries between the agents, the hub and the decision engine.

Shapes are fixed by the matrix specs (marlops.market.matrices) and the agent specs (models/*.yaml);
these records carry numpy arrays so the engine, the environment and the KServe models share them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

# An agent's outputs by name (the ONNX graph's / the V2 response's), batch first. The records below
# decode one row of them: the one place where output names, clipping and copies are decided.
Outputs = Mapping[str, np.ndarray]

REGIME_NAMES: tuple[str, ...] = ("trending", "ranging", "volatile", "transition")
MESSAGE_DIM = 64  # every agent publishes a context vector of this size to the hub


class TacticalAction(IntEnum):
    ENTER_LONG = 0
    ENTER_SHORT = 1
    EXIT_POSITION = 2
    HOLD = 3
    REDUCE_SIZE = 4


class RiskAction(IntEnum):
    ALLOW = 0
    MODIFY_SIZE = 1
    FORCE_EXIT = 2
    BLOCK_ENTRY = 3


_TACTICAL: tuple[TacticalAction, ...] = tuple(TacticalAction)
_RISK: tuple[RiskAction, ...] = tuple(RiskAction)

# Structure's actor picks one of five bias levels; in serving its directional bias is the most likely one.
STRUCTURE_BIAS_LEVELS: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)

# Portfolio state fed to the risk agent (and the environment's observation), in this order.
PORTFOLIO_FEATURES: tuple[str, ...] = (
    "position",  # signed position notional / equity / max_position_equity, in [-1, 1]
    "unrealized_pnl",  # unrealized PnL / equity
    "daily_pnl",  # today's realized + unrealized PnL / equity at the day's start
    "leverage",  # gross notional / equity / max leverage
    "exposure",  # gross notional / (EXPOSURE_FEATURE_SCALE × starting equity)
    "time_in_position",  # bars held / 288, capped at 1
    "drawdown",  # equity drawdown from its peak, >= 0
    "stop_distance",  # (price - stop) / price, signed with the position; 0 when flat
)
# The proposed action fed to the risk agent: tactical one-hot (5), structure bias, structure size.
PROPOSAL_DIM = len(TacticalAction) + 2


@dataclass(frozen=True, slots=True)
class RegimeOutput:
    probs: np.ndarray  # (4,) over REGIME_NAMES
    volatility: float  # predicted per-bar volatility of the higher timeframe, >= 0
    message: np.ndarray  # (MESSAGE_DIM,)

    @classmethod
    def from_outputs(cls, o: Outputs, row: int = 0) -> RegimeOutput:
        return cls(
            probs=o["probs"][row].copy(),
            volatility=_at(o["volatility"], row),
            message=o["message"][row].copy(),
        )

    @property
    def regime(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))


@dataclass(frozen=True, slots=True)
class StructureOutput:
    action_probs: np.ndarray  # (5,) over STRUCTURE_BIAS_LEVELS
    bias: float  # directional bias in [-1, 1]
    size: float  # position size in [0, 1] (fraction of the maximum)
    confidence: float  # [0, 1]
    value: float  # critic's state value
    message: np.ndarray  # (MESSAGE_DIM,)

    @classmethod
    def from_outputs(cls, o: Outputs, row: int = 0) -> StructureOutput:
        return cls(
            action_probs=o["probs"][row].copy(),
            bias=min(1.0, max(-1.0, _at(o["bias"], row))),  # rounding can put an all-in prob a hair past ±1
            size=_at(o["size"], row),
            confidence=_at(o["confidence"], row),
            value=_at(o["value"], row),
            message=o["message"][row].copy(),
        )


@dataclass(frozen=True, slots=True)
class TacticalOutput:
    action_probs: np.ndarray  # (5,) over TacticalAction
    value: float
    message: np.ndarray  # (MESSAGE_DIM,)

    @classmethod
    def from_outputs(cls, o: Outputs, row: int = 0) -> TacticalOutput:
        return cls(
            action_probs=o["probs"][row].copy(), value=_at(o["value"], row), message=o["message"][row].copy()
        )

    @property
    def action(self) -> TacticalAction:
        return _TACTICAL[int(self.action_probs.argmax())]  # the tick path: no np.argmax/enum lookups

    @property
    def confidence(self) -> float:
        return float(np.max(self.action_probs))


@dataclass(frozen=True, slots=True)
class RiskOutput:
    q_values: np.ndarray  # (4,) over RiskAction

    @classmethod
    def from_outputs(cls, o: Outputs, row: int = 0) -> RiskOutput:
        return cls(q_values=np.array(o["q"][row], dtype=np.float32))

    @property
    def action(self) -> RiskAction:
        return _RISK[int(self.q_values.argmax())]


def _at(a: np.ndarray, row: int) -> float:
    """Row ``row`` of a per-row scalar output, shaped (N,) or (N, 1)."""
    a = np.asarray(a)
    return float(a.reshape(-1)[row] if a.ndim <= 1 else a[row].reshape(-1)[0])
