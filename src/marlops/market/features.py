"""Per-bar feature rows for the three agent matrices, streaming and batch.

Every column is documented in :data:`TACTICAL_COLUMNS`, :data:`STRUCTURE_COLUMNS` and
:data:`REGIME_COLUMNS` (name, formula, normalization); docs/market-data.md renders the same
tables. Normalization uses only the bar itself and earlier bars: returns and price distances are
divided by a trailing realized volatility, oscillators are rescaled by constants, volume is a
trailing z-score. Every value is clipped to ``[-CLIP, CLIP]``; a value still in warm-up (NaN) is 0
and the row is flagged not warm.

Notation: ``C, H, L, V`` close, high, low, volume of the bar; ``r = log(C / C[-1])``;
``σn`` = sample std of the last n values of r; ``EMAn`` span-n EMA; ``EWMn(x)`` span-n EMA of x.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from marlops.market import indicators as ind
from marlops.market.bars import Bar

CLIP = 10.0
NAN = float("nan")


@dataclass(frozen=True)
class Column:
    name: str
    formula: str
    normalization: str


TACTICAL_COLUMNS: tuple[Column, ...] = (
    Column("ret", "r", "/ σ48"),
    Column("range", "log(H / L)", "/ σ48"),
    Column("ema_dev", "log(C / EMA20(C))", "/ σ48"),
    Column("rsi", "RSI14 (Wilder)", "(RSI - 50) / 50, in [-1, 1]"),
    Column("macd", "MACD(12, 26, 9) histogram", "/ ATR14"),
    Column("vwap_dev", "log(C / VWAP20), VWAP over the last 20 bars", "/ σ48"),
    Column("volume_z", "V", "z-score over the last 48 bars"),
)

STRUCTURE_COLUMNS: tuple[Column, ...] = (
    *TACTICAL_COLUMNS[:5],
    Column("adx", "ADX14 (Wilder)", "/ 100, in [0, 1]"),
    Column("volume_z", "V", "z-score over the last 48 bars"),
    Column("vol_ratio", "log(σ12 / σ48)", "none (a log ratio)"),
)

REGIME_COLUMNS: tuple[Column, ...] = (
    Column("ret", "r", "/ σ48"),
    Column("ret_6", "log(C / C[-6])", "/ (σ48 · √6)"),
    Column("ret_24", "log(C / C[-24])", "/ (σ48 · √24)"),
    Column("vol_ratio", "log(σ12 / σ96)", "none (a log ratio)"),
    Column("vol_level", "log(σ12 / √EWM480(r²))", "none (against a ~10-day baseline)"),
    Column("adx", "ADX14", "/ 100, in [0, 1]"),
    Column("di_diff", "+DI14 - -DI14", "/ 100, in [-1, 1]"),
    Column("efficiency", "|C - C[-12]| / Σ of the last 12 |ΔC|", "none, in [0, 1]"),
    Column("autocorr", "EWM24(r · r[-1]) / EWM24(r²)", "none, about [-1, 1]"),
    Column("range", "log(H / L)", "/ σ48"),
    Column("volume_z", "V", "z-score over the last 48 bars"),
)


def _fin(x: float) -> float:
    """NaN → 0 and clip; the warm flag records whether anything was NaN."""
    if x != x:
        return 0.0
    return CLIP if x > CLIP else (-CLIP if x < -CLIP else x)


def _div(num: float, den: float) -> float:
    """num / den; NaN if either is NaN (warm-up); 0 for a zero scale (a flat market has no move to scale)."""
    if num != num or den != den:
        return NAN
    return num / den if den > 0.0 else 0.0


# ---------------------------------------------------------------------------------------------
# Streaming


@dataclass
class TacticalFeatures:
    """Feature row of :data:`TACTICAL_COLUMNS` per closed base (5-minute) bar."""

    _rv48: ind.RealizedVol = field(default_factory=lambda: ind.RealizedVol(48))
    _ema20: ind.Ema = field(default_factory=lambda: ind.Ema.span(20))
    _rsi: ind.Rsi = field(default_factory=ind.Rsi)
    _atr: ind.Atr = field(default_factory=ind.Atr)
    _macd: ind.Macd = field(default_factory=ind.Macd)
    _vwap: ind.RollingVwap = field(default_factory=lambda: ind.RollingVwap(20))
    _volz: ind.ZScore = field(default_factory=lambda: ind.ZScore(48))

    def update(self, bar: Bar) -> tuple[list[float], bool]:
        c = bar.close
        s = self._rv48.update(c)
        r = self._rv48.last_return if s == s else NAN
        raw = (
            _div(r, s),
            _div(math.log(bar.high / bar.low), s),
            _div(math.log(c / self._ema20.update(c)), s),
            (self._rsi.update(c) - 50.0) / 50.0,
            _div(self._macd.update(c), self._atr.update(bar.high, bar.low, c)),
            _div(math.log(c / self._vwap.update(bar.vwap, bar.volume, c)), s),
            self._volz.update(bar.volume),
        )
        return [_fin(x) for x in raw], not any(x != x for x in raw)


@dataclass
class SlowFeatures:
    """Rows of :data:`STRUCTURE_COLUMNS` and :data:`REGIME_COLUMNS` per closed higher (30-minute) bar."""

    _rv12: ind.RealizedVol = field(default_factory=lambda: ind.RealizedVol(12))
    _rv48: ind.RealizedVol = field(default_factory=lambda: ind.RealizedVol(48))
    _rv96: ind.RealizedVol = field(default_factory=lambda: ind.RealizedVol(96))
    _r2_slow: ind.Ema = field(default_factory=lambda: ind.Ema.span(480))
    _ac_num: ind.Ema = field(default_factory=lambda: ind.Ema.span(24))
    _ac_den: ind.Ema = field(default_factory=lambda: ind.Ema.span(24))
    _ema20: ind.Ema = field(default_factory=lambda: ind.Ema.span(20))
    _rsi: ind.Rsi = field(default_factory=ind.Rsi)
    _atr: ind.Atr = field(default_factory=ind.Atr)
    _macd: ind.Macd = field(default_factory=ind.Macd)
    _adx: ind.Adx = field(default_factory=ind.Adx)
    _volz: ind.ZScore = field(default_factory=lambda: ind.ZScore(48))
    _abs_dc: ind.RollingWindow = field(default_factory=lambda: ind.RollingWindow(12))
    _closes: deque[float] = field(default_factory=lambda: deque(maxlen=25))
    _prev_r: float = NAN

    def update(self, bar: Bar) -> tuple[list[float], bool, list[float], bool]:
        c, h, lo = bar.close, bar.high, bar.low
        s12, s48, s96 = self._rv12.update(c), self._rv48.update(c), self._rv96.update(c)
        closes = self._closes
        r = math.log(c / closes[-1]) if closes else NAN
        if closes:
            self._abs_dc.update(abs(c - closes[-1]))
        closes.append(c)
        # the slow r² baseline and the autocorrelation start at the first return
        slow = self._r2_slow.update(r * r) if r == r else NAN
        pr, self._prev_r = self._prev_r, r
        ac = NAN
        if pr == pr:
            ac = _div(self._ac_num.update(r * pr), self._ac_den.update(r * r))
        log_range = math.log(h / lo)
        rsi = (self._rsi.update(c) - 50.0) / 50.0
        macd = _div(self._macd.update(c), self._atr.update(h, lo, c))
        adx = self._adx.update(h, lo, c) / 100.0
        volz = self._volz.update(bar.volume)
        ret, rng = _div(r, s48), _div(log_range, s48)
        structure = (
            ret,
            rng,
            _div(math.log(c / self._ema20.update(c)), s48),
            rsi,
            macd,
            adx,
            volz,
            _log_ratio(s12, s48),
        )
        n = len(closes)
        dc = self._abs_dc
        regime = (
            ret,
            _div(math.log(c / closes[-7]), s48 * math.sqrt(6.0)) if n >= 7 else NAN,
            _div(math.log(c / closes[-25]), s48 * math.sqrt(24.0)) if n >= 25 else NAN,
            _log_ratio(s12, s96),
            _log_ratio(s12, math.sqrt(slow)) if slow == slow else NAN,
            adx,
            (self._adx.plus_di - self._adx.minus_di) / 100.0,
            _div(abs(c - closes[-13]), dc.total) if n >= 13 else NAN,
            ac,
            rng,
            volz,
        )
        return (
            [_fin(x) for x in structure],
            not any(x != x for x in structure),
            [_fin(x) for x in regime],
            not any(x != x for x in regime),
        )


def _log_ratio(a: float, b: float) -> float:
    if a != a or b != b:
        return NAN
    return math.log(a / b) if a > 0.0 and b > 0.0 else 0.0


# ---------------------------------------------------------------------------------------------
# Batch: the same rows for a whole bar frame at once (training, backfills, the streaming test)


def _finalize(cols: list[pd.Series]) -> tuple[np.ndarray, np.ndarray]:
    raw = np.column_stack([c.to_numpy(dtype=np.float64) for c in cols])
    warm = ~np.isnan(raw).any(axis=1)
    return np.clip(np.nan_to_num(raw, nan=0.0), -CLIP, CLIP), warm


def _bdiv(num: pd.Series, den: pd.Series) -> pd.Series:
    return (num / den).where(den > 0.0, 0.0).where(den.notna() & num.notna())


def _blog_ratio(a: pd.Series, b: pd.Series) -> pd.Series:
    # a flat stretch (a weekend of gap bars) has zero volatility: log(0) is computed, then replaced by 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(a / b).where((a > 0.0) & (b > 0.0), 0.0)
    return out.where(a.notna() & b.notna())


def tactical_features_batch(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(T, 7) feature rows and (T,) warm flags for a base-timeframe bar frame."""
    c, h, lo, v = bars["close"], bars["high"], bars["low"], bars["volume"]
    r = ind.log_returns(c)
    s = r.rolling(48).std()
    r = r.where(s.notna())
    cols = [
        _bdiv(r, s),
        _bdiv(np.log(h / lo), s),
        _bdiv(np.log(c / ind.ema(c, 20)), s),
        (ind.rsi(c) - 50.0) / 50.0,
        _bdiv(ind.macd(c)["hist"], ind.atr(h, lo, c)),
        _bdiv(np.log(c / ind.rolling_vwap(bars["vwap"], v, c, 20)), s),
        ind.zscore(v, 48),
    ]
    return _finalize(cols)


def slow_features_batch(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Structure rows (T, 8) + warm, regime rows (T, 11) + warm, for a higher-timeframe bar frame."""
    c, h, lo, v = bars["close"], bars["high"], bars["low"], bars["volume"]
    r = ind.log_returns(c)
    s12, s48, s96 = (r.rolling(n).std() for n in (12, 48, 96))
    slow = ind.ema(r * r, 480)  # NaN first row stays NaN; ewm ignores it when seeding
    ac = _bdiv(ind.ema((r * r.shift(1)).dropna(), 24), ind.ema((r * r)[r.shift(1).notna()], 24))
    ac = ac.reindex(c.index)
    log_range = np.log(h / lo)
    rsi = (ind.rsi(c) - 50.0) / 50.0
    macd = _bdiv(ind.macd(c)["hist"], ind.atr(h, lo, c))
    a = ind.adx(h, lo, c)
    adx = a["adx"] / 100.0
    volz = ind.zscore(v, 48)
    ret, rng = _bdiv(r, s48), _bdiv(log_range, s48)
    structure = [
        ret,
        rng,
        _bdiv(np.log(c / ind.ema(c, 20)), s48),
        rsi,
        macd,
        adx,
        volz,
        _blog_ratio(s12, s48),
    ]
    abs_dc = c.diff().abs().rolling(12).sum()
    regime = [
        ret,
        _bdiv(np.log(c / c.shift(6)), s48 * math.sqrt(6.0)),
        _bdiv(np.log(c / c.shift(24)), s48 * math.sqrt(24.0)),
        _blog_ratio(s12, s96),
        _blog_ratio(s12, np.sqrt(slow)),
        adx,
        (a["plus_di"] - a["minus_di"]) / 100.0,
        _bdiv((c - c.shift(12)).abs(), abs_dc),
        ac,
        rng,
        volz,
    ]
    return (*_finalize(structure), *_finalize(regime))
