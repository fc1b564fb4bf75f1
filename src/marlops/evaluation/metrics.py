"""Performance and regime metrics of one evaluation episode: pure functions on numpy arrays.

Conventions (docs/evaluation.md has the formulas):

- An equity curve has one point per base-bar close, ``equity[0]`` the initial equity before the first
  decision; a curve of ``N + 1`` points has ``N`` per-bar simple returns.
- Annualization and per-day figures take the market's own clock (``MarketData.clock``, a
  :class:`~marlops.market.calendar.BarClock` measured from the bar timestamps: timeframe and calendar,
  24/7 or with sessions and weekend gaps). The defaults, ``BARS_PER_DAY = 288`` and
  ``BARS_PER_YEAR = 288 × 365``, are the synthetic reference market's 5-minute bars traded 24/7.
- Degenerate inputs give finite, explainable numbers instead of NaN: a flat curve has Sharpe and
  Sortino 0; a curve that never loses has Sortino ``inf`` (reported as such, JSON writes ``null``).
- Inputs that cannot be a curve (fewer than two points, non-finite or non-positive equity, mismatched
  lengths) raise ``ValueError`` naming the argument, so a broken run fails loudly instead of scoring.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from marlops.agents.types import TacticalAction
from marlops.market.calendar import REFERENCE_CLOCK

# The reference market's clock; a market of other bars or another calendar passes its own.
BARS_PER_DAY = int(REFERENCE_CLOCK.bars_per_day)  # 288
BARS_PER_YEAR = int(REFERENCE_CLOCK.bars_per_year)  # 288 × 365
N_REGIMES = 4


def _curve(equity: np.ndarray, name: str = "equity") -> np.ndarray:
    eq = np.asarray(equity, dtype=np.float64)
    if eq.ndim != 1 or len(eq) < 2:
        raise ValueError(f"{name}: need a 1-D curve of at least 2 points, got shape {eq.shape}")
    if not np.isfinite(eq).all():
        raise ValueError(f"{name}: contains NaN or inf")
    if (eq <= 0).any():
        raise ValueError(f"{name}: must be > 0 everywhere (returns are relative to the previous point)")
    return eq


def _same_len(name: str, arr: np.ndarray, n: int) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {a.shape}")
    return a


def bar_returns(equity: np.ndarray) -> np.ndarray:
    """Simple per-bar returns ``equity[k+1] / equity[k] − 1`` (N values for N + 1 points)."""
    eq = _curve(equity)
    return eq[1:] / eq[:-1] - 1.0


def sharpe_ratio(equity: np.ndarray, bars_per_year: float = BARS_PER_YEAR) -> float:
    """Annualized Sharpe ratio, risk-free rate 0: ``mean(r) / std(r) × sqrt(bars_per_year)``.

    ``std`` is the sample standard deviation (ddof 1). A curve without variation scores 0 — no risk
    taken, no risk-adjusted return — rather than NaN or ±inf from dividing by zero.
    """
    r = bar_returns(equity)
    if len(r) < 2:
        return 0.0
    sd = float(np.std(r, ddof=1))
    if sd <= 1e-15 * max(1.0, float(np.abs(r).max())):
        return 0.0
    return float(np.mean(r) / sd * math.sqrt(bars_per_year))


def sortino_ratio(equity: np.ndarray, bars_per_year: float = BARS_PER_YEAR) -> float:
    """Annualized Sortino ratio, target 0: ``mean(r) / sqrt(mean(min(r, 0)²)) × sqrt(bars_per_year)``.

    The downside deviation averages over all bars (not only losing ones), the usual definition. No
    losing bar: 0 for a flat curve, ``inf`` when the mean return is positive.
    """
    r = bar_returns(equity)
    mean = float(np.mean(r))
    dd = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if dd <= 0.0:
        return 0.0 if mean <= 0.0 else math.inf
    return float(mean / dd * math.sqrt(bars_per_year))


def drawdown_curve(equity: np.ndarray) -> np.ndarray:
    """Drawdown from the running peak at every point, as a fraction of the peak (>= 0)."""
    eq = _curve(equity)
    peak = np.maximum.accumulate(eq)
    return (peak - eq) / peak


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough loss as a fraction of the peak, in [0, 1): 0.2 means −20 %."""
    return float(drawdown_curve(equity).max())


def total_return(equity: np.ndarray) -> float:
    """``equity[-1] / equity[0] − 1``."""
    eq = _curve(equity)
    return float(eq[-1] / eq[0] - 1.0)


def annualized_return(equity: np.ndarray, bars_per_year: float = BARS_PER_YEAR) -> float:
    """Geometric annualization of the total return over ``len(equity) − 1`` bars."""
    eq = _curve(equity)
    years = (len(eq) - 1) / bars_per_year
    return float((eq[-1] / eq[0]) ** (1.0 / years) - 1.0)


def turnover_per_day(
    traded: np.ndarray, price: np.ndarray, equity: np.ndarray, bars_per_day: float = BARS_PER_DAY
) -> float:
    """Traded notional per day as a multiple of the mean equity.

    ``Σ_k |traded_k| × price_k / mean(equity) / (N / bars_per_day)`` with ``traded`` and ``price`` the
    N per-step fills and their prices: 1.0 means the strategy trades its whole equity once a day (a
    round trip at full equity counts twice, once in and once out).
    """
    eq = _curve(equity)
    n = len(eq) - 1
    q = _same_len("traded", traded, n)
    p = _same_len("price", price, n)
    days = n / bars_per_day
    return float(np.sum(np.abs(q) * p) / float(np.mean(eq)) / days)


def round_trips(position: np.ndarray, price: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Net PnL of every closed round trip (a maximal run of bars holding the same side).

    ``position[k]`` is the position held from close k to close k+1 (after step k's trade), ``price``
    has the N + 1 closes and ``cost`` the N per-step costs. A trip's PnL is its price-move PnL
    ``Σ position_k (price_{k+1} − price_k)`` minus the costs of its trades: a step's cost belongs to
    the trip holding a position after it, or to the one it closed when it ends flat (on a direct flip
    the whole cost goes to the new trip). A trip still open at the end is not closed and not counted.
    """
    pos = np.asarray(position, dtype=np.float64)
    n = len(pos)
    px = _same_len("price", price, n + 1)
    c = _same_len("cost", cost, n)
    side = np.sign(pos)
    if n == 0 or not side.any():
        return np.zeros(0)
    prev = np.r_[0.0, side[:-1]]
    starts = (side != 0) & (side != prev)
    trip = np.cumsum(starts) - 1  # id of the latest trip started at or before k
    holding = side != 0
    move = pos * np.diff(px)
    pnl = np.zeros(int(starts.sum()))
    np.add.at(pnl, trip[holding], move[holding])
    # costs: the trip held after the step, else the trip that was held before it (a closing trade)
    owner = np.where(holding, trip, np.where(prev != 0, trip, -1))
    has = owner >= 0
    np.add.at(pnl, owner[has], -c[has])
    closed = len(pnl) if side[-1] == 0 else len(pnl) - 1
    return pnl[:closed]


# The tactical actions by which a policy closes a trip itself; any other close is a limit exit.
OWN_EXIT_ACTIONS: tuple[int, ...] = (int(TacticalAction.EXIT_POSITION), int(TacticalAction.REDUCE_SIZE))


@dataclass(frozen=True)
class TripSteps:
    """Per-step markers of the trips of one episode (the trips of :func:`round_trips`), bool (N,).

    ``opened[k]``: a trip starts at step k (from flat, or a flip to the other side); ``closed[k]``: a
    trip ends at step k (to flat, or by a flip); ``limit_exit[k]``: it ended flat while the policy's own
    tactical action was neither ``exit_position`` nor ``reduce_size`` — a stop loss, a take profit, the
    daily-loss halt, the kill switch or the risk agent's ``force_exit`` closed it, not the policy. A flip
    is always the policy's own doing (only an entry in the other direction flips a position).
    """

    opened: np.ndarray
    closed: np.ndarray
    limit_exit: np.ndarray

    @property
    def entries(self) -> int:
        return int(self.opened.sum())

    @property
    def closes(self) -> int:
        return int(self.closed.sum())

    @property
    def limit_exits(self) -> int:
        return int(self.limit_exit.sum())

    @property
    def ends_open(self) -> bool:
        """A trip is still open after the last step (it is neither closed nor a round trip)."""
        return self.entries > self.closes


def trip_steps(position: np.ndarray, tactical: np.ndarray) -> TripSteps:
    """Where trips open and close, and which closes were limit exits (see :class:`TripSteps`).

    ``position[k]`` is the position held after step k's trade (the episode starts flat) and
    ``tactical[k]`` the policy's tactical action at step k. ``closes`` equals the number of
    :func:`round_trips`; ``entries − closes`` is 1 when a trip is open at the end, else 0.
    """
    pos = np.asarray(position, dtype=np.float64)
    act = _same_len("tactical", tactical, len(pos)).astype(np.int64)
    side = np.sign(pos)
    prev = np.r_[0.0, side[:-1]]
    opened = (side != 0) & (side != prev)
    closed = (prev != 0) & (side != prev)
    own = np.isin(act, OWN_EXIT_ACTIONS)
    return TripSteps(opened, closed, closed & (side == 0) & ~own)


def hit_rate(position: np.ndarray, price: np.ndarray, cost: np.ndarray) -> float:
    """Fraction of closed round trips (see :func:`round_trips`) with a positive net PnL; 0 without any."""
    pnl = round_trips(position, price, cost)
    return float(np.mean(pnl > 0)) if len(pnl) else 0.0


def cost_share(equity: np.ndarray, cost: np.ndarray) -> float:
    """Share of trading costs in the gross result: ``C / (C + |G|)`` in [0, 1].

    ``C`` is the sum of costs and ``G = equity[-1] − equity[0] + C`` the gross PnL before costs. 0: no
    costs; 0.5: costs as large as the gross PnL (a gross winner ends flat net); near 1: costs dwarf
    whatever the strategy earned or lost. Bounded, unlike ``C / G``, which explodes as ``G → 0``.
    """
    eq = _curve(equity)
    c = float(np.sum(_same_len("cost", cost, len(eq) - 1)))
    if c <= 0.0:
        return 0.0
    gross = float(eq[-1] - eq[0]) + c
    return c / (c + abs(gross))


def _regime_pairs(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_pred: shape {p.shape} does not match y_true {t.shape}")
    ok = (t >= 0) & (p >= 0)  # -1: no label (imported data) or no prediction
    return t[ok], p[ok]


def regime_balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Mean recall over the regimes present in ``y_true`` (sklearn's ``balanced_accuracy_score``).

    Steps labelled or predicted ``-1`` are left out; ``None`` when no step is left (no labels or no
    predictions), so a run without regime ground truth reports no score instead of a made-up one.
    """
    from sklearn.metrics import balanced_accuracy_score

    t, p = _regime_pairs(y_true, y_pred)
    if len(t) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true": expected, harmless
        return float(balanced_accuracy_score(t, p))


def regime_confusion(y_true: np.ndarray, y_pred: np.ndarray, n_regimes: int = N_REGIMES) -> np.ndarray:
    """Counts ``C[i, j]`` of steps with true regime i predicted as j (rows: truth), ``n × n`` int."""
    t, p = _regime_pairs(y_true, y_pred)
    if ((t >= n_regimes) | (p >= n_regimes)).any():
        raise ValueError(f"y_true/y_pred: regime ids must be < {n_regimes}")
    out = np.zeros((n_regimes, n_regimes), np.int64)
    np.add.at(out, (t, p), 1)
    return out
