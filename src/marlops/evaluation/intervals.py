"""95 % intervals for the evaluation's claims: a paired day-block bootstrap over the held-out markets.

A mean over two or three 30-day markets says little by itself: whether the team "beats momentum" can
flip with the next seed. Every claim of the goal table is therefore made on an interval, and holds only
if the whole interval does.

- **Daily returns** (:func:`daily_returns`): the steps of an episode are grouped by their UTC day
  (``EpisodeRecord.day``); a day's return is the equity after its last step over the equity before its
  first step, minus 1. Days chain: their returns compound to the episode's total return. The first and
  the last day of an episode may be partial (the warm-up ends, the data ends, mid-day).
- **Bootstrap** (:class:`~marlops.registry.bootstrap.DayBootstrap`): days are resampled with replacement,
  per market (stratified), with one draw of indices shared by every policy, so differences are paired;
  seeded, ``n_resamples`` (2,000) replicates, percentile intervals. On it:
  each policy's annualized Sharpe of daily returns (``√days_per_year``, the markets' trading days per
  year from their clock: 365 on the 24/7 synthetic market, ~261 on FX), its mean daily return, its
  round trips per day (closed trips over trading days, a ratio of resampled sums), its regime balanced
  accuracy (the confusion counts of the resampled days at the 30-minute closes, summed, then scored);
  for the team against every other policy the Sharpe difference and the mean daily return difference;
  the team's Sharpe minus half the oracle's; the risk agent's return cost against its ablation.
- **Max drawdown does not survive day resampling**: it is a property of the path (the order of the
  days), which resampling destroys. It is reported per market and as the mean over markets with a
  Student-t interval over markets (none with a single market); so is the risk agent's drawdown cut
  ``1 − mdd_team / mdd_ablation``. With two or three markets that interval is wide, honestly so.

The point estimates are the statistics of the pooled observed days (all markets together): a daily
Sharpe, not the mean of per-market 5-minute-bar Sharpes of :meth:`EvaluationResult.aggregate`.
Everything is deterministic for a fixed seed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marlops.evaluation import metrics as M
from marlops.evaluation.runner import COST_LABEL, EpisodeRecord, EvaluationResult
from marlops.registry.bootstrap import (
    DAYS_PER_YEAR,
    LEVEL,
    N_RESAMPLES,
    DayBootstrap,
    Interval,
    mean_interval,
    percentile_interval,
    sharpe_interval,
)

__all__ = [
    "EvaluationIntervals",
    "Interval",
    "IntervalConfig",
    "PairIntervals",
    "PolicyIntervals",
    "balanced_accuracy_of_confusion",
    "compute_intervals",
    "daily_confusion",
    "daily_returns",
    "day_starts",
    "t_interval",
]


@dataclass(frozen=True)
class IntervalConfig:
    """How the intervals are formed (the defaults are what report.json states it used)."""

    n_resamples: int = N_RESAMPLES
    seed: int = 0
    level: float = LEVEL
    # None: the trading days per year of the evaluated markets' clock (``EpisodeRecord.clock``)
    days_per_year: float | None = None

    def __post_init__(self) -> None:
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples: must be >= 1, got {self.n_resamples}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level: must be in (0, 1), got {self.level}")
        if self.days_per_year is not None and not self.days_per_year > 0:
            raise ValueError(f"days_per_year: must be > 0, got {self.days_per_year}")


# --------------------------------------------------------------------------------------------------
# per-day series of one episode


def day_starts(day: np.ndarray) -> np.ndarray:
    """Index of the first step of every day (``day`` is per step and never decreases)."""
    d = np.asarray(day)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"day: need a non-empty 1-D array, got shape {d.shape}")
    if (np.diff(d) < 0).any():
        raise ValueError("day: day numbers must not decrease")
    return np.flatnonzero(np.r_[True, d[1:] != d[:-1]])


def daily_returns(equity: np.ndarray, day: np.ndarray) -> np.ndarray:
    """One simple return per day: ``equity[after its last step] / equity[before its first step] − 1``.

    ``equity`` has N + 1 points and ``day`` N steps (an :class:`EpisodeRecord`'s ``equity`` and ``day``).
    """
    eq = np.asarray(equity, np.float64)
    starts = day_starts(day)
    if len(eq) != len(day) + 1:
        raise ValueError(f"equity: expected {len(day) + 1} points for {len(day)} steps, got {len(eq)}")
    ends = np.r_[starts[1:], len(day)]
    return eq[ends] / eq[starts] - 1.0


def _daily_sums(values: np.ndarray, day: np.ndarray) -> np.ndarray:
    return np.add.reduceat(np.asarray(values, np.float64), day_starts(day), axis=0)


def daily_confusion(
    label: np.ndarray, pred: np.ndarray, day: np.ndarray, scored: np.ndarray | None = None
) -> np.ndarray:
    """``(n_days, K, K)`` regime confusion counts per day over the ``scored`` steps (default: all).

    Steps labelled or predicted −1 are left out, as in :func:`~marlops.evaluation.metrics.regime_confusion`.
    """
    k = M.N_REGIMES
    starts = day_starts(day)
    day_of = np.cumsum(np.isin(np.arange(len(day)), starts)) - 1
    t, p = np.asarray(label, np.int64), np.asarray(pred, np.int64)
    ok = (t >= 0) & (p >= 0) & (np.ones(len(t), bool) if scored is None else np.asarray(scored, bool))
    out = np.zeros((len(starts), k, k), np.int64)
    np.add.at(out, (day_of[ok], t[ok], p[ok]), 1)
    return out


def balanced_accuracy_of_confusion(cm: np.ndarray) -> np.ndarray:
    """Balanced accuracy of confusion matrices ``(..., K, K)``: mean recall over the true classes present.

    The same as sklearn's ``balanced_accuracy_score`` on the counted pairs; NaN where nothing is counted.
    """
    c = np.asarray(cm, np.float64)
    support = c.sum(axis=-1)
    diag = np.diagonal(c, axis1=-2, axis2=-1)
    present = support > 0
    recall = np.divide(diag, support, out=np.zeros_like(diag), where=present)
    n = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, recall.sum(axis=-1) / np.maximum(n, 1), np.nan)


def t_interval(
    values: Sequence[float], level: float = LEVEL, bounds: tuple[float, float] = (-math.inf, math.inf)
) -> Interval:
    """Mean of ``values`` with a Student-t interval (``n − 1`` degrees of freedom); none for n < 2.

    The interval is clipped to ``bounds``, the range the statistic can take (a drawdown is in [0, 1]):
    a symmetric interval over two markets easily reaches past it.
    """
    v = np.asarray([float(x) for x in values], np.float64)
    if len(v) == 0 or not np.isfinite(v).all():
        return Interval(None, None, None, level, "t over markets")
    mean = float(v.mean())
    if len(v) < 2:
        return Interval(mean, None, None, level, "t over markets")
    from scipy.special import stdtrit  # the t quantile (scipy.special: a light import)

    half = float(stdtrit(len(v) - 1, 0.5 + level / 2.0)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    lo, hi = max(mean - half, bounds[0]), min(mean + half, bounds[1])
    return Interval(mean, lo, hi, level, "t over markets")


# --------------------------------------------------------------------------------------------------
# the intervals of one evaluation


_NO_INTERVAL = Interval(None, None, None)
FEW_DAYS = 20  # below this many evaluated days (all markets), the intervals carry a warning


@dataclass(frozen=True)
class PolicyIntervals:
    """One policy's figures with their intervals (see the module docstring for each method)."""

    sharpe: Interval
    mean_daily_return: Interval
    round_trips_per_day: Interval
    regime_balanced_accuracy: Interval
    max_drawdown: Interval
    max_drawdown_per_market: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sharpe": self.sharpe.as_dict(),
            "mean_daily_return": self.mean_daily_return.as_dict(),
            "round_trips_per_day": self.round_trips_per_day.as_dict(),
            "regime_balanced_accuracy": self.regime_balanced_accuracy.as_dict(),
            "max_drawdown": self.max_drawdown.as_dict(),
            "max_drawdown_per_market": dict(self.max_drawdown_per_market),
        }


@dataclass(frozen=True)
class PairIntervals:
    """The team minus another policy on the same resampled days."""

    sharpe: Interval
    mean_daily_return: Interval

    def as_dict(self) -> dict[str, Any]:
        return {"sharpe": self.sharpe.as_dict(), "mean_daily_return": self.mean_daily_return.as_dict()}


@dataclass(frozen=True)
class EvaluationIntervals:
    """Every interval of one cost setting of an evaluation; ``as_dict`` is report.json's ``intervals``."""

    costs: bool
    config: IntervalConfig
    team: str
    ablation: str
    oracle: str
    days: dict[str, list[int]]  # market -> its day numbers, in order
    daily_returns: dict[str, dict[str, np.ndarray]]  # policy -> market -> one return per day
    policies: dict[str, PolicyIntervals] = field(default_factory=dict)
    versus: dict[str, PairIntervals] = field(default_factory=dict)  # other policy -> team − other
    half_oracle: Interval = _NO_INTERVAL  # Sharpe(team) − ½ Sharpe(oracle)
    drawdown_cut: Interval = _NO_INTERVAL  # 1 − mdd_team / mdd_ablation, t over markets
    drawdown_cut_per_market: dict[str, float | None] = field(default_factory=dict)
    return_cost: Interval = _NO_INTERVAL  # of the team's mean daily return against the ablation's

    @property
    def n_days(self) -> int:
        return sum(len(d) for d in self.days.values())

    @property
    def note(self) -> str | None:
        """A warning when the evaluation is too short for the bootstrap to mean much."""
        if self.n_days >= FEW_DAYS:
            return None
        return (
            f"only {self.n_days} evaluated day(s): a day-block bootstrap over so few days gives rough, "
            "often degenerate intervals; evaluate on more markets or days"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "costs": COST_LABEL[self.costs],
            "n_days": self.n_days,
            "note": self.note,
            "method": {
                "bootstrap": "paired day-block, stratified per market, percentile intervals",
                "n_resamples": self.config.n_resamples,
                "seed": self.config.seed,
                "level": self.config.level,
                "days_per_year": self.config.days_per_year,
                "max_drawdown": "per market; mean with a Student-t interval over markets",
            },
            "team": self.team,
            "ablation": self.ablation,
            "oracle": self.oracle,
            "days": {m: len(d) for m, d in self.days.items()},
            "policies": {p: v.as_dict() for p, v in self.policies.items()},
            "versus": {p: v.as_dict() for p, v in self.versus.items()},
            "half_oracle_sharpe": self.half_oracle.as_dict(),
            "risk_agent": {
                "drawdown_cut": self.drawdown_cut.as_dict(),
                "drawdown_cut_per_market": dict(self.drawdown_cut_per_market),
                "return_cost": self.return_cost.as_dict(),
            },
        }


def _drawdown_cut(mdd_team: float, mdd_ablation: float) -> float | None:
    if mdd_ablation > 0:
        return 1.0 - mdd_team / mdd_ablation
    return 0.0 if mdd_team == 0 else None  # the ablation never lost: a cut is undefined


def _return_cost(team: np.ndarray, ablation: np.ndarray) -> np.ndarray:
    """``(μ_ablation − μ_team) / |μ_ablation|`` where the team earns less, else 0 (inf if μ_ablation = 0)."""
    t, a = np.asarray(team, np.float64), np.asarray(ablation, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = np.where(a != 0, (a - t) / np.abs(a), np.inf)
    return np.where(t >= a, 0.0, cost)


def _policy_intervals(
    boot: DayBootstrap,
    recs: Mapping[str, EpisodeRecord],
    rets: Mapping[str, np.ndarray],
    cfg: IntervalConfig,
) -> PolicyIntervals:
    markets = boot.markets_of(rets)
    closes = {m: _daily_sums(M.trip_steps(r.position, r.tactical).closed, r.day) for m, r in recs.items()}
    span = {m: _daily_sums(np.ones(r.n_steps), r.day) / r.clock.bars_per_day for m, r in recs.items()}
    if markets:
        point = float(boot.pooled(closes, markets).sum() / boot.pooled(span, markets).sum())
        samples = boot.resample(closes, markets).sum(axis=1) / boot.resample(span, markets).sum(axis=1)
        trips = percentile_interval(point, samples, cfg.level)
    else:
        trips = Interval(None, None, None, cfg.level)
    conf = {
        m: daily_confusion(r.regime_label, r.regime_pred, r.day, r.slow).reshape(-1, M.N_REGIMES**2)
        for m, r in recs.items()
    }
    shape = (M.N_REGIMES, M.N_REGIMES)
    pooled_cm = boot.pooled(conf, markets).sum(axis=0).reshape(shape) if markets else np.zeros(shape)
    if markets and pooled_cm.sum() > 0:
        acc_point = float(balanced_accuracy_of_confusion(pooled_cm))
        cms = boot.resample(conf, markets).sum(axis=1).reshape(-1, *shape)
        accuracy = percentile_interval(acc_point, balanced_accuracy_of_confusion(cms), cfg.level)
    else:
        accuracy = Interval(None, None, None, cfg.level)
    mdd = {m: M.max_drawdown(r.equity) for m, r in recs.items()}
    return PolicyIntervals(
        sharpe=sharpe_interval(boot, rets, level=cfg.level, periods_per_year=_annual(cfg)),
        mean_daily_return=mean_interval(boot, rets, level=cfg.level),
        round_trips_per_day=trips,
        regime_balanced_accuracy=accuracy,
        max_drawdown=t_interval(list(mdd.values()), cfg.level, (0.0, 1.0)),
        max_drawdown_per_market=mdd,
    )


def _annual(cfg: IntervalConfig) -> float:
    if cfg.days_per_year is None:
        raise AssertionError("days_per_year: resolve the config first (_resolved)")
    return cfg.days_per_year


def _resolved(cfg: IntervalConfig, records: Mapping[str, Mapping[str, EpisodeRecord]]) -> IntervalConfig:
    """``cfg`` with ``days_per_year`` set: given, else the records' clock (365 without records).

    Pooled daily returns have one annualisation: markets on different calendars cannot share it.
    """
    if cfg.days_per_year is not None:
        return cfg
    per_market = {m: r.clock.days_per_year for recs in records.values() for m, r in recs.items()}
    distinct = sorted(set(per_market.values()))
    if len(distinct) > 1:
        raise ValueError(
            f"days_per_year: the markets trade on different calendars ({per_market}); "
            "pass one in IntervalConfig"
        )
    return dataclasses.replace(cfg, days_per_year=distinct[0] if distinct else DAYS_PER_YEAR)


def compute_intervals(
    result: EvaluationResult,
    team: str = "team",
    ablation: str = "team_no_risk",
    oracle: str = "oracle",
    costs: bool = True,
    config: IntervalConfig | None = None,
) -> EvaluationIntervals:
    """Every interval of ``result``'s runs in one cost setting (see the module docstring).

    Needs the episode records (``result.records``); a policy without records in this setting has no
    entry, and a pair whose policies share no market has no interval.
    """
    records: dict[str, dict[str, EpisodeRecord]] = {}
    for (m, p, c), r in result.records.items():
        if c == costs:
            records.setdefault(p, {})[m] = r
    cfg = _resolved(config or IntervalConfig(), records)
    days: dict[str, list[int]] = {}
    for m in result.markets:
        for p in result.policies:
            r = records.get(p, {}).get(m)
            if r is not None:
                days[m] = [int(d) for d in r.day[day_starts(r.day)]]
                break
    rets = {p: {m: daily_returns(r.equity, r.day) for m, r in recs.items()} for p, recs in records.items()}
    boot = DayBootstrap({m: len(d) for m, d in days.items()}, cfg.n_resamples, cfg.seed)
    order = [p for p in result.policies if p in records]
    out = EvaluationIntervals(
        costs=costs,
        config=cfg,
        team=team,
        ablation=ablation,
        oracle=oracle,
        days=days,
        daily_returns={p: rets[p] for p in order},
        policies={p: _policy_intervals(boot, records[p], rets[p], cfg) for p in order},
    )
    if team not in rets:
        return out
    t = rets[team]
    versus = {
        p: PairIntervals(
            sharpe_interval(boot, t, rets[p], 1.0, cfg.level, _annual(cfg)),
            mean_interval(boot, t, rets[p], cfg.level),
        )
        for p in order
        if p != team
    }
    none = Interval(None, None, None, cfg.level)
    half = none
    if oracle in rets:
        half = sharpe_interval(boot, t, rets[oracle], 0.5, cfg.level, _annual(cfg))
    if ablation not in rets:
        return dataclasses.replace(out, versus=versus, half_oracle=half)
    mdd_t, mdd_a = out.policies[team].max_drawdown_per_market, out.policies[ablation].max_drawdown_per_market
    cut = {m: _drawdown_cut(mdd_t[m], mdd_a[m]) for m in mdd_t if m in mdd_a}
    defined = [v for v in cut.values() if v is not None]
    cut_interval = (
        t_interval(defined, cfg.level, (-math.inf, 1.0)) if cut and len(defined) == len(cut) else none
    )
    cost = none
    markets = boot.markets_of(t, rets[ablation])
    if markets:
        a = rets[ablation]
        point = _return_cost(boot.pooled(t, markets).mean(), boot.pooled(a, markets).mean())
        samples = _return_cost(boot.resample(t, markets).mean(axis=1), boot.resample(a, markets).mean(axis=1))
        cost = percentile_interval(float(point), samples, cfg.level)
    return dataclasses.replace(
        out,
        versus=versus,
        half_oracle=half,
        drawdown_cut=cut_interval,
        drawdown_cut_per_market=cut,
        return_cost=cost,
    )
