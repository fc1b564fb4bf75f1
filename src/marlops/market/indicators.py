"""Incremental technical indicators: O(1) work and memory per bar.

Each indicator has a streaming class (``update`` per bar, returns the current value, NaN during
warm-up) and a vectorized batch function over a whole series. The two are the same computation:
smoothed indicators are seeded with their first input (pandas ``ewm(adjust=False)`` semantics), so
streaming and batch agree to float rounding from the first bar. TA-Lib seeds with a simple average
of the first window instead; the difference decays geometrically, and tests/test_indicators.py
checks every indicator against TA-Lib (or pandas, for those TA-Lib lacks) after warm-up.

Wilder smoothing (RSI, ATR, ADX) is an EMA with ``alpha = 1/n``; the usual EMA has ``alpha = 2/(n+1)``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

NAN = float("nan")


# ---------------------------------------------------------------------------------------------
# Streaming building blocks


@dataclass(slots=True)
class Ema:
    """Exponential moving average seeded with the first value."""

    alpha: float
    value: float = NAN

    @classmethod
    def span(cls, n: int) -> Ema:
        return cls(2.0 / (n + 1.0))

    @classmethod
    def wilder(cls, n: int) -> Ema:
        return cls(1.0 / n)

    def update(self, x: float) -> float:
        v = self.value
        self.value = x if v != v else v + self.alpha * (x - v)  # v != v: NaN, the unseeded state
        return self.value


@dataclass(slots=True)
class RollingWindow:
    """Sum and sum of squares over the last ``n`` values (ring buffer), so mean and std are O(1)."""

    n: int
    buf: deque[float] = field(default_factory=deque)
    total: float = 0.0
    total_sq: float = 0.0
    _since_exact: int = 0

    def update(self, x: float) -> None:
        self.buf.append(x)
        self.total += x
        self.total_sq += x * x
        if len(self.buf) > self.n:
            old = self.buf.popleft()
            self.total -= old
            self.total_sq -= old * old
        self._since_exact += 1
        if self._since_exact >= 16 * self.n:
            # Re-sum now and then so rounding from add/subtract cannot accumulate over a long stream;
            # amortized this stays O(1) per update.
            self.total = math.fsum(self.buf)
            self.total_sq = math.fsum(v * v for v in self.buf)
            self._since_exact = 0

    @property
    def full(self) -> bool:
        return len(self.buf) == self.n

    def mean(self) -> float:
        return self.total / self.n if self.full else NAN

    def std(self) -> float:
        """Sample standard deviation (ddof=1, as pandas ``rolling().std()``)."""
        if not self.full:
            return NAN
        n = self.n
        var = (self.total_sq - self.total * self.total / n) / (n - 1)
        return math.sqrt(var) if var > 0.0 else 0.0


@dataclass(slots=True)
class Rsi:
    n: int = 14
    _prev: float = NAN
    _gain: Ema = field(init=False)
    _loss: Ema = field(init=False)
    value: float = NAN

    def __post_init__(self) -> None:
        self._gain, self._loss = Ema.wilder(self.n), Ema.wilder(self.n)

    def update(self, close: float) -> float:
        prev, self._prev = self._prev, close
        if prev != prev:
            return NAN
        d = close - prev
        g = self._gain.update(d if d > 0 else 0.0)
        lo = self._loss.update(-d if d < 0 else 0.0)
        self.value = _rsi(g, lo)
        return self.value


def _rsi(gain: float, loss: float) -> float:
    if loss == 0.0:
        return 50.0 if gain == 0.0 else 100.0
    return 100.0 - 100.0 / (1.0 + gain / loss)


@dataclass(slots=True)
class Atr:
    """Average true range; the first bar's true range is high - low."""

    n: int = 14
    _prev_close: float = NAN
    _avg: Ema = field(init=False)
    value: float = NAN

    def __post_init__(self) -> None:
        self._avg = Ema.wilder(self.n)

    def update(self, high: float, low: float, close: float) -> float:
        self.value = self._avg.update(true_range(high, low, self._prev_close))
        self._prev_close = close
        return self.value


@dataclass
class RollupAtr:
    """:class:`Atr` of a higher timeframe fed with its base bars, for a consumer that sees base bars only
    (the decision server): ``add`` every base bar, then ``close`` with the base bar that closes the higher
    one. Its high/low/close are those :class:`~marlops.market.bars.BarAggregator` builds, so the value
    equals an :class:`Atr` updated with the higher bars themselves (tested)."""

    atr: Atr = field(default_factory=Atr)
    _high: float = NAN
    _low: float = NAN

    @property
    def value(self) -> float:
        return self.atr.value

    def add(self, high: float, low: float) -> None:
        self._high = high if self._high != self._high else max(self._high, high)
        self._low = low if self._low != self._low else min(self._low, low)

    def close(self, close: float) -> float:
        """The higher bar closed at ``close`` (after its last base bar was added)."""
        value = self.atr.update(self._high, self._low, close)
        self._high = self._low = NAN
        return value


def true_range(high: float, low: float, prev_close: float) -> float:
    if prev_close != prev_close:
        return high - low
    return max(high - low, abs(high - prev_close), abs(low - prev_close))


@dataclass(slots=True)
class Macd:
    fast: int = 12
    slow: int = 26
    signal: int = 9
    _f: Ema = field(init=False)
    _s: Ema = field(init=False)
    _sig: Ema = field(init=False)
    macd: float = NAN
    signal_line: float = NAN
    hist: float = NAN

    def __post_init__(self) -> None:
        self._f, self._s, self._sig = Ema.span(self.fast), Ema.span(self.slow), Ema.span(self.signal)

    def update(self, close: float) -> float:
        self.macd = self._f.update(close) - self._s.update(close)
        self.signal_line = self._sig.update(self.macd)
        self.hist = self.macd - self.signal_line
        return self.hist


@dataclass(slots=True)
class Adx:
    """Wilder's ADX with +DI / -DI. The first bar has no directional movement (NaN)."""

    n: int = 14
    _ph: float = NAN
    _pl: float = NAN
    _pc: float = NAN
    _tr: Ema = field(init=False)
    _pdm: Ema = field(init=False)
    _mdm: Ema = field(init=False)
    _adx: Ema = field(init=False)
    plus_di: float = NAN
    minus_di: float = NAN
    value: float = NAN

    def __post_init__(self) -> None:
        self._tr, self._pdm, self._mdm, self._adx = (Ema.wilder(self.n) for _ in range(4))

    def update(self, high: float, low: float, close: float) -> float:
        ph, pl, pc = self._ph, self._pl, self._pc
        self._ph, self._pl, self._pc = high, low, close
        if pc != pc:
            return NAN
        up, down = high - ph, pl - low
        pdm = up if (up > down and up > 0.0) else 0.0
        mdm = down if (down > up and down > 0.0) else 0.0
        tr = self._tr.update(true_range(high, low, pc))
        sp, sm = self._pdm.update(pdm), self._mdm.update(mdm)
        self.plus_di, self.minus_di = _di(sp, tr), _di(sm, tr)
        self.value = self._adx.update(_dx(self.plus_di, self.minus_di))
        return self.value


def _di(dm: float, tr: float) -> float:
    return 100.0 * dm / tr if tr > 0.0 else 0.0


def _dx(pdi: float, mdi: float) -> float:
    s = pdi + mdi
    return 100.0 * abs(pdi - mdi) / s if s > 0.0 else 0.0


@dataclass(slots=True)
class RealizedVol:
    """Sample std of log returns over the last ``n`` returns (per-bar, not annualized)."""

    n: int = 20
    _prev: float = NAN
    _win: RollingWindow = field(init=False)
    last_return: float = NAN

    def __post_init__(self) -> None:
        self._win = RollingWindow(self.n)

    def update(self, close: float) -> float:
        prev, self._prev = self._prev, close
        if prev != prev:
            return NAN
        self.last_return = math.log(close / prev)
        self._win.update(self.last_return)
        return self._win.std()

    @property
    def value(self) -> float:
        return self._win.std()


@dataclass(slots=True)
class RollingVwap:
    """VWAP over the last ``n`` bars from each bar's own VWAP and volume."""

    n: int = 20
    _pv: RollingWindow = field(init=False)
    _v: RollingWindow = field(init=False)

    def __post_init__(self) -> None:
        self._pv, self._v = RollingWindow(self.n), RollingWindow(self.n)

    def update(self, vwap: float, volume: float, close: float) -> float:
        self._pv.update(vwap * volume)
        self._v.update(volume)
        if not self._v.full:
            return NAN
        return self._pv.total / self._v.total if self._v.total > 0.0 else close


@dataclass(slots=True)
class ZScore:
    """(x - rolling mean) / rolling std over the last ``n`` values, the current one included; 0 when flat."""

    n: int = 48
    _win: RollingWindow = field(init=False)

    def __post_init__(self) -> None:
        self._win = RollingWindow(self.n)

    def update(self, x: float) -> float:
        self._win.update(x)
        sd = self._win.std()
        if sd != sd:
            return NAN
        return (x - self._win.mean()) / sd if sd > 1e-7 * max(1.0, abs(self._win.mean())) else 0.0


# ---------------------------------------------------------------------------------------------
# Batch equivalents (whole series at once)


def ema(x: pd.Series, n: int) -> pd.Series:
    return x.ewm(span=n, adjust=False).mean()


def wilder(x: pd.Series, n: int) -> pd.Series:
    return x.ewm(alpha=1.0 / n, adjust=False).mean()


def rsi(close: pd.Series, n: int = 14) -> pd.Series:
    d = close.diff()
    gain = wilder(d.clip(lower=0.0), n)
    loss = wilder((-d).clip(lower=0.0), n)
    out = 100.0 - 100.0 / (1.0 + gain / loss)
    out = out.where(loss != 0.0, np.where(gain == 0.0, 50.0, 100.0))
    return out.where(d.notna())


def true_range_series(high: pd.Series, low: pd.Series, close: pd.Series) -> pd.Series:
    pc = close.shift(1)
    tr = pd.concat([high - low, (high - pc).abs(), (low - pc).abs()], axis=1).max(axis=1)
    return tr.where(pc.notna(), high - low)


def atr(high: pd.Series, low: pd.Series, close: pd.Series, n: int = 14) -> pd.Series:
    return wilder(true_range_series(high, low, close), n)


def macd(close: pd.Series, fast: int = 12, slow: int = 26, signal: int = 9) -> pd.DataFrame:
    m = ema(close, fast) - ema(close, slow)
    s = ema(m, signal)
    return pd.DataFrame({"macd": m, "signal": s, "hist": m - s})


def adx(high: pd.Series, low: pd.Series, close: pd.Series, n: int = 14) -> pd.DataFrame:
    up, down = high.diff(), -low.diff()
    pdm = up.where((up > down) & (up > 0.0), 0.0)
    mdm = down.where((down > up) & (down > 0.0), 0.0)
    valid = close.shift(1).notna()
    tr = wilder(true_range_series(high, low, close)[valid], n)
    sp, sm = wilder(pdm[valid], n), wilder(mdm[valid], n)
    pdi = (100.0 * sp / tr).where(tr > 0.0, 0.0)
    mdi = (100.0 * sm / tr).where(tr > 0.0, 0.0)
    s = pdi + mdi
    dx = (100.0 * (pdi - mdi).abs() / s).where(s > 0.0, 0.0)
    out = pd.DataFrame({"adx": wilder(dx, n), "plus_di": pdi, "minus_di": mdi})
    return out.reindex(close.index)


def log_returns(close: pd.Series) -> pd.Series:
    return np.log(close / close.shift(1))


def realized_vol(close: pd.Series, n: int = 20) -> pd.Series:
    return log_returns(close).rolling(n).std()


def rolling_vwap(vwap: pd.Series, volume: pd.Series, close: pd.Series, n: int = 20) -> pd.Series:
    pv = (vwap * volume).rolling(n).sum()
    v = volume.rolling(n).sum()
    return (pv / v).where(v > 0.0, close).where(v.notna())


def zscore(x: pd.Series, n: int = 48) -> pd.Series:
    m, sd = x.rolling(n).mean(), x.rolling(n).std()
    flat = sd <= 1e-7 * np.maximum(1.0, m.abs())
    return ((x - m) / sd).where(~flat, 0.0).where(sd.notna())
