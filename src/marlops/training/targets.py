"""What the market reveals after the fact: the supervised targets of the pretraining stages (pure numpy).

Every target is defined from prices alone (plus the true regime where a market has labels), so the same
stages run on the synthetic market and on imported bars. Targets look forward — that is their point —
but inputs never do: a sample is the agent's matrix at a bar close and the target what happened after.

- :func:`forward_z`: the log return over the next ``horizon`` base bars in units of its expected size
  (``σ · √horizon``, σ the trailing per-bar realized volatility at the close), clipped. Its conditional
  mean given the past is what a directional position earns per unit of risk.
- :func:`level_utility`: the mean–variance utility of holding each structure bias level ``b`` for that
  horizon, ``b·z − cost·|b| − ½·risk_aversion·b²``. The structure agent is pretrained to put its mass on
  the level of highest expected utility (a full-information contextual bandit: every level's reward is
  known for every sample, so no exploration noise enters the gradient).
"""

from __future__ import annotations

import numpy as np

from marlops.agents.types import STRUCTURE_BIAS_LEVELS
from marlops.env.market_env import MarketData

Z_CLIP = 5.0


def forward_z(data: MarketData, at: np.ndarray, horizon: int) -> np.ndarray:
    """(len(at),) float32: ``log(C[t+horizon] / C[t]) / (σ_t √horizon)``, clipped to ±Z_CLIP.

    ``at`` are base-bar indices with ``t + horizon < len(data)``; σ_t is the trailing 48-bar realized
    volatility of base-bar log returns (``MarketData.sigma``), floored to avoid dividing by a flat spell.
    """
    at = np.asarray(at, np.int64)
    if horizon < 1:
        raise ValueError(f"horizon: must be >= 1 base bar, got {horizon}")
    if len(at) and (at.min() < 0 or at.max() + horizon >= len(data)):
        raise ValueError(f"at: every index needs {horizon} bars after it inside the data ({len(data)} bars)")
    sigma = data.sigma[at]
    floor = np.median(data.sigma[data.sigma > 0]) * 0.1 if (data.sigma > 0).any() else 1e-6
    ret = np.log(data.close[at + horizon] / data.close[at])
    z = ret / (np.maximum(sigma, floor) * np.sqrt(horizon))
    return np.clip(z, -Z_CLIP, Z_CLIP).astype(np.float32)


def level_utility(z: np.ndarray, cost: float, risk_aversion: float) -> np.ndarray:
    """(N, 5) utility of each bias level for realized ``z`` (see the module docstring)."""
    b = np.asarray(STRUCTURE_BIAS_LEVELS, np.float32)
    return (np.asarray(z, np.float32)[:, None] * b - cost * np.abs(b) - 0.5 * risk_aversion * b * b).astype(
        np.float32
    )


def slow_decision_bars(data: MarketData, horizon: int = 0) -> np.ndarray:
    """Base indices that close a higher bar after the warm-up (and leave ``horizon`` bars after them)."""
    closes = np.flatnonzero(data.slow_step)
    closes = closes[closes >= data.warm_from]
    return closes[closes + horizon < len(data)]


def base_decision_bars(data: MarketData, horizon: int = 0) -> np.ndarray:
    t = np.arange(max(data.warm_from, 0), len(data))
    return t[t + horizon < len(data)]
