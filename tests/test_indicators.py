"""Indicator parity: streaming = batch everywhere, and both = TA-Lib (or pandas) after warm-up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from marlops.market import indicators as ind

WARMUP = 600  # TA-Lib seeds with an SMA of the first window, we seed with the first value: let it decay


def _series(kind: str, n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    drift = {"random": 0.0, "trending": 0.002, "falling": -0.002}[kind]
    close = 100.0 * np.exp(np.cumsum(drift + 0.01 * rng.standard_normal(n)))
    spread = np.abs(rng.standard_normal((n, 2))) * 0.004 * close[:, None]
    high = np.maximum(close, np.roll(close, 1)) + spread[:, 0]
    low = np.minimum(close, np.roll(close, 1)) - spread[:, 1]
    high[0], low[0] = close[0] + spread[0, 0], close[0] - spread[0, 1]
    volume = rng.lognormal(5.0, 0.6, n)
    vwap = (high + low + close) / 3.0
    return pd.DataFrame({"high": high, "low": low, "close": close, "volume": volume, "vwap": vwap})


def _stream(df: pd.DataFrame, make, call) -> np.ndarray:
    obj = make()
    return np.array([call(obj, row) for row in df.itertuples(index=False)])


KINDS = ["random", "trending", "falling"]


@pytest.mark.parametrize("kind", KINDS)
def test_ema_rsi_atr_macd_adx_match_talib(kind: str) -> None:
    df = _series(kind)
    c, h, lo = df["close"].to_numpy(), df["high"].to_numpy(), df["low"].to_numpy()
    cases = {
        "ema": (_stream(df, lambda: ind.Ema.span(20), lambda o, r: o.update(r.close)), talib.EMA(c, 20)),
        "rsi": (_stream(df, ind.Rsi, lambda o, r: o.update(r.close)), talib.RSI(c, 14)),
        "atr": (_stream(df, ind.Atr, lambda o, r: o.update(r.high, r.low, r.close)), talib.ATR(h, lo, c, 14)),
        "macd_hist": (_stream(df, ind.Macd, lambda o, r: o.update(r.close)), talib.MACD(c, 12, 26, 9)[2]),
        "adx": (_stream(df, ind.Adx, lambda o, r: o.update(r.high, r.low, r.close)), talib.ADX(h, lo, c, 14)),
        "plus_di": (
            _stream(df, ind.Adx, lambda o, r: (o.update(r.high, r.low, r.close), o.plus_di)[1]),
            talib.PLUS_DI(h, lo, c, 14),
        ),
    }
    for name, (ours, ref) in cases.items():
        np.testing.assert_allclose(ours[WARMUP:], ref[WARMUP:], rtol=1e-7, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_rolling_indicators_match_pandas(kind: str) -> None:
    df = _series(kind)
    c, v = df["close"], df["volume"]
    rv = _stream(df, lambda: ind.RealizedVol(20), lambda o, r: o.update(r.close))
    np.testing.assert_allclose(rv, np.log(c).diff().rolling(20).std(), rtol=1e-8, equal_nan=True)
    vw = _stream(df, lambda: ind.RollingVwap(20), lambda o, r: o.update(r.vwap, r.volume, r.close))
    ref = (df["vwap"] * v).rolling(20).sum() / v.rolling(20).sum()
    np.testing.assert_allclose(vw, ref, rtol=1e-10, equal_nan=True)
    z = _stream(df, lambda: ind.ZScore(48), lambda o, r: o.update(r.volume))
    np.testing.assert_allclose(z, (v - v.rolling(48).mean()) / v.rolling(48).std(), rtol=1e-7, equal_nan=True)


@pytest.mark.parametrize("kind", KINDS)
def test_streaming_equals_batch_from_the_first_bar(kind: str) -> None:
    df = _series(kind, n=800, seed=3)
    c, h, lo, v = df["close"], df["high"], df["low"], df["volume"]
    pairs = {
        "ema": (_stream(df, lambda: ind.Ema.span(20), lambda o, r: o.update(r.close)), ind.ema(c, 20)),
        "rsi": (_stream(df, ind.Rsi, lambda o, r: o.update(r.close)), ind.rsi(c)),
        "atr": (_stream(df, ind.Atr, lambda o, r: o.update(r.high, r.low, r.close)), ind.atr(h, lo, c)),
        "macd": (_stream(df, ind.Macd, lambda o, r: o.update(r.close)), ind.macd(c)["hist"]),
        "adx": (
            _stream(df, ind.Adx, lambda o, r: o.update(r.high, r.low, r.close)),
            ind.adx(h, lo, c)["adx"],
        ),
        "rv": (_stream(df, lambda: ind.RealizedVol(20), lambda o, r: o.update(r.close)), ind.realized_vol(c)),
        "zscore": (_stream(df, lambda: ind.ZScore(48), lambda o, r: o.update(r.volume)), ind.zscore(v)),
    }
    for name, (ours, ref) in pairs.items():
        np.testing.assert_allclose(ours, ref.to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.5, 2.0), min_size=30, max_size=120), st.integers(2, 20))
def test_rolling_window_matches_numpy(xs: list[float], n: int) -> None:
    w = ind.RollingWindow(n)
    for i, x in enumerate(xs):
        w.update(x)
        tail = np.array(xs[max(0, i + 1 - n) : i + 1])
        if i + 1 >= n:
            assert w.mean() == pytest.approx(tail.mean(), rel=1e-12)
            # sum-of-squares variance loses about sqrt(eps) ~ 1.5e-8 of scale on near-constant windows
            assert w.std() == pytest.approx(tail.std(ddof=1), rel=1e-6, abs=1e-7)
        else:
            assert np.isnan(w.mean())


def test_rolling_sums_do_not_drift_over_a_long_stream() -> None:
    rng = np.random.default_rng(1)
    xs = rng.lognormal(8.0, 2.0, 200_000)  # wide dynamic range makes naive running sums drift
    w = ind.RollingWindow(48)
    for x in xs:
        w.update(float(x))
    assert w.std() == pytest.approx(np.std(xs[-48:], ddof=1), rel=1e-9)


def test_flat_series_is_well_defined() -> None:
    rsi, z = ind.Rsi(), ind.ZScore(5)
    for _ in range(20):
        r, zz = rsi.update(100.0), z.update(7.0)
    assert r == 50.0 and zz == 0.0
