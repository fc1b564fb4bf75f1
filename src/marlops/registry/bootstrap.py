"""Paired day-block bootstrap of daily returns: the statistics the evaluation report and the gate share.

Pure numpy, no MLflow and nothing else of the package. It lives in the registry because the registry is
the leaf both sides may import: the evaluation builds its report's intervals on it
(:mod:`marlops.evaluation.intervals`), and the promotion gate (:mod:`marlops.registry.gate`) uses it to
compare a challenger with the champion without importing the evaluation (and the environment behind it).

Why days, and why paired:

- A 5-minute return is strongly dependent on its neighbours (positions are held for hours, volatility
  clusters), so resampling bars would understate the noise. A day is the block: its return is the
  product of its bars', and days are resampled with replacement. Whatever dependence spans days is still
  ignored: the intervals are, if anything, a little narrow.
- Resampling is **stratified per market** (each market keeps its number of days, drawn from its own
  days) and **paired**: one draw of day indices per market serves every policy, so a difference of two
  policies is computed on the very same resampled days, and the market's common moves cancel.

Everything is deterministic for a fixed seed: the indices are drawn once, market by market in the given
order, from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DAYS_PER_YEAR = 365.0  # the synthetic market trades 24/7 (docs/evaluation.md)
N_RESAMPLES = 2_000
LEVEL = 0.95

DailySeries = Mapping[str, np.ndarray]  # market -> one value per day, the days in order


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided confidence interval (``None`` where it cannot be formed)."""

    point: float | None
    low: float | None
    high: float | None
    level: float = LEVEL
    method: str = "day-block bootstrap"

    def above(self, bound: float, strict: bool = True) -> bool:
        """The whole interval lies above ``bound`` (False when there is no interval)."""
        if self.low is None:
            return False
        return self.low > bound if strict else self.low >= bound

    def below(self, bound: float, strict: bool = True) -> bool:
        """The whole interval lies below ``bound`` (False when there is no interval)."""
        if self.high is None:
            return False
        return self.high < bound if strict else self.high <= bound

    def as_dict(self) -> dict[str, float | str | None]:
        return {
            "point": self.point,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "method": self.method,
        }

    def __str__(self) -> str:
        if self.point is None:
            return "–"
        if self.low is None or self.high is None:
            return f"{self.point:.3g} (no interval)"
        return f"{self.point:.3g} [{self.low:.3g}, {self.high:.3g}]"


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def sharpe_rows(x: np.ndarray, periods_per_year: float = DAYS_PER_YEAR) -> np.ndarray:
    """Annualized Sharpe of every row of ``x`` (risk-free 0, sample std): ``mean / std × √periods``.

    A row without variation scores 0 (no risk taken), as :func:`marlops.evaluation.metrics.sharpe_ratio`
    does for an equity curve; a row of fewer than two values scores 0 too.
    """
    a = np.atleast_2d(np.asarray(x, np.float64))
    if a.shape[1] < 2:
        return np.zeros(a.shape[0])
    mean = a.mean(axis=1)
    sd = a.std(axis=1, ddof=1)
    tiny = 1e-15 * np.maximum(1.0, np.abs(a).max(axis=1))
    ok = sd > tiny
    return np.where(ok, mean / np.where(ok, sd, 1.0) * math.sqrt(periods_per_year), 0.0)


def sharpe(x: np.ndarray, periods_per_year: float = DAYS_PER_YEAR) -> float:
    """:func:`sharpe_rows` of one series."""
    return float(sharpe_rows(np.asarray(x, np.float64)[None, :], periods_per_year)[0])


def percentile_interval(point: float | None, samples: np.ndarray, level: float = LEVEL) -> Interval:
    """The percentile interval of bootstrap ``samples`` around ``point``.

    NaN samples (a statistic undefined on a replicate) are dropped; infinite ones are kept, so a bound
    can be ±inf (a ratio whose denominator can vanish). No point or no sample: no interval.
    """
    s = np.asarray(samples, np.float64)
    s = s[~np.isnan(s)]
    if point is None or not math.isfinite(point) or len(s) == 0:
        return Interval(_finite(point) if point is not None else None, None, None, level)
    alpha = (1.0 - level) / 2.0
    big = np.finfo(np.float64).max / 4  # quantiles interpolate: keep inf out of the arithmetic
    lo, hi = np.quantile(np.clip(s, -big, big), [alpha, 1.0 - alpha])
    back = lambda v: math.copysign(math.inf, v) if abs(v) >= big else float(v)  # noqa: E731
    return Interval(float(point), back(lo), back(hi), level)


class DayBootstrap:
    """One stratified draw of day indices per market, shared by every statistic computed on it.

    ``days_per_market`` gives each market's number of days (markets with none are left out). Row b of
    :meth:`resample` holds, for every market in order, ``n_m`` days drawn with replacement from that
    market's days, concatenated: the b-th bootstrap replicate of the pooled daily series.
    """

    def __init__(self, days_per_market: Mapping[str, int], n_resamples: int = N_RESAMPLES, seed: int = 0):
        if n_resamples < 1:
            raise ValueError(f"n_resamples: must be >= 1, got {n_resamples}")
        rng = np.random.default_rng(seed)
        self.n_resamples = n_resamples
        self.seed = seed
        self.days = {str(m): int(n) for m, n in days_per_market.items() if int(n) > 0}
        self.index = {m: rng.integers(0, n, size=(n_resamples, n)) for m, n in self.days.items()}

    def markets_of(self, *series: DailySeries) -> list[str]:
        """The markets (in the bootstrap's order) every series has, with the drawn number of days."""
        out = []
        for m, n in self.days.items():
            if all(m in s and len(s[m]) == n for s in series):
                out.append(m)
        return out

    def pooled(self, series: DailySeries, markets: Sequence[str]) -> np.ndarray:
        """The observed daily values of ``markets``, concatenated (the point estimate's sample)."""
        parts = [np.asarray(series[m], np.float64) for m in markets]
        return np.concatenate(parts) if parts else np.zeros(0)

    def resample(self, series: DailySeries, markets: Sequence[str]) -> np.ndarray:
        """``(n_resamples, Σ n_m)``: every replicate of the pooled daily values of ``markets``."""
        parts = [np.asarray(series[m], np.float64)[self.index[m]] for m in markets]
        return np.concatenate(parts, axis=1) if parts else np.zeros((self.n_resamples, 0))


def sharpe_interval(
    boot: DayBootstrap,
    a: DailySeries,
    b: DailySeries | None = None,
    weight: float = 1.0,
    level: float = LEVEL,
    periods_per_year: float = DAYS_PER_YEAR,
) -> Interval:
    """Interval of ``Sharpe(a)`` or, with ``b``, of the paired ``Sharpe(a) − weight × Sharpe(b)``.

    Only the markets both series cover (with the bootstrap's number of days) enter; none → no interval.
    """
    series = (a,) if b is None else (a, b)
    markets = boot.markets_of(*series)
    if not markets:
        return Interval(None, None, None, level)

    def stat(x: np.ndarray) -> np.ndarray:
        return sharpe_rows(x, periods_per_year)

    point = stat(boot.pooled(a, markets)[None, :])[0]
    samples = stat(boot.resample(a, markets))
    if b is not None:
        point = point - weight * stat(boot.pooled(b, markets)[None, :])[0]
        samples = samples - weight * stat(boot.resample(b, markets))
    return percentile_interval(float(point), samples, level)


def mean_interval(
    boot: DayBootstrap, a: DailySeries, b: DailySeries | None = None, level: float = LEVEL
) -> Interval:
    """Interval of the mean daily value of ``a`` or, with ``b``, of the paired mean difference."""
    series = (a,) if b is None else (a, b)
    markets = boot.markets_of(*series)
    if not markets:
        return Interval(None, None, None, level)
    point = float(boot.pooled(a, markets).mean())
    samples = boot.resample(a, markets).mean(axis=1)
    if b is not None:
        point -= float(boot.pooled(b, markets).mean())
        samples = samples - boot.resample(b, markets).mean(axis=1)
    return percentile_interval(point, samples, level)


def paired_sharpe_difference(
    challenger: DailySeries,
    champion: DailySeries,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    periods_per_year: float = DAYS_PER_YEAR,
) -> tuple[Interval, list[str]]:
    """``Sharpe(challenger) − Sharpe(champion)`` on their common markets (same number of days in each),
    by a paired day-block bootstrap; returns the interval and the markets used."""
    days = {m: len(v) for m, v in challenger.items() if m in champion and len(champion[m]) == len(v)}
    boot = DayBootstrap(dict(sorted(days.items())), n_resamples, seed)
    markets = boot.markets_of(challenger, champion)
    return sharpe_interval(boot, challenger, champion, 1.0, level, periods_per_year), markets


__all__ = [
    "DAYS_PER_YEAR",
    "LEVEL",
    "N_RESAMPLES",
    "DailySeries",
    "DayBootstrap",
    "Interval",
    "mean_interval",
    "paired_sharpe_difference",
    "percentile_interval",
    "sharpe",
    "sharpe_interval",
    "sharpe_rows",
]
