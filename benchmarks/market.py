"""Market-data benchmarks: tick ingestion throughput and per-bar matrix update latency.

    python -m benchmarks market            (or: make bench)

1. Ingestion: ticks/second through the live path (validation → 5m and 30m bars → indicators →
   matrices), against a pandas baseline that computes the same bars with groupby/resample and the
   same features with rolling/ewm over the whole history at once (batch, so it has no per-tick work
   and cannot serve live decisions; it is the yardstick, not a competitor).
2. Per-bar update: the latency of one bar close (feature row + matrix push) for the 5-minute and
   30-minute matrices, p50/p99, against a naive recompute of the window from the trailing bars
   with pandas on every bar.
Every figure is a median over repeats measured in this run; ratios compare within the run.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd

from marlops.market.bars import MINUTE_NS, frame_to_bars
from marlops.market.dataset import stream_ticks
from marlops.market.features import (
    SlowFeatures,
    TacticalFeatures,
    slow_features_batch,
    tactical_features_batch,
)
from marlops.market.feed import FeedConfig, features_from_bars
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL, RingMatrix
from marlops.market.synthetic import generate_market

DAYS = 30
REPEATS = 3


def pandas_bars(ticks: pd.DataFrame, tf_ns: int) -> pd.DataFrame:
    """The same OHLCV/VWAP/count bars as the streaming builder, with pandas groupby on the bucket."""
    bucket = ticks["ts"].to_numpy() // tf_ns * tf_ns
    df = ticks.assign(bucket=bucket, notional=ticks["price"] * ticks["size"])
    g = df.groupby("bucket", sort=True)
    bars = pd.DataFrame(
        {
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "volume": g["size"].sum(),
            "notional": g["notional"].sum(),
            "ticks": g["price"].size(),
        }
    )
    full = np.arange(bars.index[0], bars.index[-1] + 1, tf_ns)
    bars = bars.reindex(full)
    gap = bars["close"].isna()
    close = bars["close"].ffill()
    for c in ("open", "high", "low"):
        bars[c] = bars[c].fillna(close)
    bars["close"] = close
    bars[["volume", "notional", "ticks"]] = bars[["volume", "notional", "ticks"]].fillna(0.0)
    bars["vwap"] = (bars["notional"] / bars["volume"]).where(bars["volume"] > 0, close)
    bars["gap"] = gap
    return bars.reset_index(names="start")


def pandas_pipeline(ticks: pd.DataFrame) -> None:
    base = pandas_bars(ticks, 5 * MINUTE_NS)
    higher = pandas_bars(ticks, 30 * MINUTE_NS)
    tactical_features_batch(base)
    slow_features_batch(higher)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def bench_ingestion(ticks: pd.DataFrame) -> dict[str, float]:
    stream, batch = [], []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        feed = stream_ticks(ticks, FeedConfig())
        stream.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pandas_pipeline(ticks)
        batch.append(time.perf_counter() - t0)
    # the baseline must describe the same bars
    pb = pandas_bars(ticks, 5 * MINUTE_NS)
    sb = feed.base_frame()
    assert (
        len(pb) == len(sb)
        and np.allclose(pb["volume"], sb["volume"])
        and np.allclose(pb["close"], sb["close"])
    )
    n = len(ticks)
    s, b = n / statistics.median(stream), n / statistics.median(batch)
    return {"ticks": n, "stream_ticks_per_s": s, "pandas_ticks_per_s": b, "ratio": s / b}


def bench_bar_update(base: pd.DataFrame, higher: pd.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    bars5, bars30 = frame_to_bars(base), frame_to_bars(higher)

    def incremental_5m() -> list[float]:
        f, m, lat = TacticalFeatures(), RingMatrix(TACTICAL), []
        for bar in bars5:
            t0 = time.perf_counter_ns()
            row, warm = f.update(bar)
            m.push(row, warm)
            lat.append((time.perf_counter_ns() - t0) / 1e3)
        return lat

    def incremental_30m() -> list[float]:
        f, ms, mr, lat = SlowFeatures(), RingMatrix(STRUCTURE), RingMatrix(REGIME), []
        for bar in bars30:
            t0 = time.perf_counter_ns()
            s, sw, r, rw = f.update(bar)
            ms.push(s, sw)
            mr.push(r, rw)
            lat.append((time.perf_counter_ns() - t0) / 1e3)
        return lat

    def naive(frame: pd.DataFrame, fn, lookback: int, rows: int, sample: int = 200) -> list[float]:
        lat = []
        for t in np.linspace(lookback, len(frame) - 1, sample).astype(int):
            t0 = time.perf_counter_ns()
            feats = fn(frame.iloc[t + 1 - lookback : t + 1])
            feats = feats[0] if isinstance(feats, tuple) else feats
            np.ascontiguousarray(feats[-rows:], dtype=np.float32)
            lat.append((time.perf_counter_ns() - t0) / 1e3)
        return lat

    cases = {
        "5m matrix (60x7)": (
            incremental_5m,
            lambda: naive(base, tactical_features_batch, 600, TACTICAL.rows),
        ),
        "30m matrices (48x8 + 96x11)": (
            incremental_30m,
            lambda: naive(higher, slow_features_batch, 600, REGIME.rows),
        ),
    }
    for name, (inc, nv) in cases.items():
        runs_inc = [inc() for _ in range(REPEATS)]
        runs_nv = [nv() for _ in range(REPEATS)]
        p50 = statistics.median(pct(r, 50) for r in runs_inc)
        p99 = statistics.median(pct(r, 99) for r in runs_inc)
        n50 = statistics.median(pct(r, 50) for r in runs_nv)
        n99 = statistics.median(pct(r, 99) for r in runs_nv)
        out[name] = {
            "p50_us": p50,
            "p99_us": p99,
            "naive_p50_us": n50,
            "naive_p99_us": n99,
            "speedup_p50": n50 / p50,
        }
    return out


def main() -> None:
    t0 = time.perf_counter()
    market = generate_market(days=DAYS, seed=0)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    year = generate_market(days=365, seed=1)
    year_s = time.perf_counter() - t0
    print(
        f"synthetic market: {DAYS} days = {len(market.ticks):,} ticks in {gen_s:.2f} s; "
        f"365 days = {len(year.ticks):,} ticks in {year_s:.2f} s"
    )
    ing = bench_ingestion(market.ticks)
    print(
        f"ingestion ({ing['ticks']:,} ticks, median of {REPEATS}): "
        f"streaming {ing['stream_ticks_per_s']:,.0f} ticks/s"
        f" | pandas batch baseline {ing['pandas_ticks_per_s']:,.0f} ticks/s | ratio {ing['ratio']:.2f}"
    )
    feed = stream_ticks(market.ticks, FeedConfig())
    fs = features_from_bars(feed.base_frame(), feed.higher_frame())
    for name, r in bench_bar_update(fs.base, fs.higher).items():
        print(
            f"per-bar update {name}: p50 {r['p50_us']:.1f} µs, p99 {r['p99_us']:.1f} µs | "
            f"naive pandas recompute p50 {r['naive_p50_us']:.0f} µs, p99 {r['naive_p99_us']:.0f} µs | "
            f"speedup {r['speedup_p50']:.0f}x"
        )


if __name__ == "__main__":
    main()
