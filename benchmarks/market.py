"""Market-data benchmarks: tick ingestion throughput and per-bar matrix update latency.

    python -m benchmarks market            (or: make bench)

1. Ingestion: ticks/second through the live path (validation → 5m and 30m bars → indicators →
   matrices), through the bulk import path (market/bulk.py: the same bars, proven equal, built with
   numpy a chunk at a time, then the batch features) and a pandas baseline that computes the same
   bars with groupby/resample and the same features with rolling/ewm over the whole history at once.
   p50/p99 are over the repeats' wall times; ratios compare medians within the run.
3. File import: `data import` of a generated tick CSV (MARLOPS_BENCH_FILE_TICKS rows, default 20M,
   and a tenth of it) in a child process: throughput and peak RSS, which stays flat with file size
   because the file is read in chunks.
2. Per-bar update: the latency of one bar close (feature row + matrix push) for the 5-minute and
   30-minute matrices, p50/p99, against a naive recompute of the window from the trailing bars
   with pandas on every bar.
Every figure is a median over repeats measured in this run; ratios compare within the run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from marlops.market.bars import MINUTE_NS, frame_to_bars
from marlops.market.bulk import BulkBars, higher_bars
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
FAST_REPEATS = 9  # the bulk path and the baseline are fast enough for more samples
FILE_TICKS = int(os.environ.get("MARLOPS_BENCH_FILE_TICKS", 20_000_000))


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


def bulk_pipeline(ticks: pd.DataFrame, chunk: int = 1_500_000) -> None:
    """The import's bulk path on a frame: chunks of ticks → base bars → higher bars → features."""
    cfg = FeedConfig()
    bulk = BulkBars(cfg.base_timeframe_ns)
    for lo in range(0, len(ticks), chunk):
        bulk.on_chunk(ticks.iloc[lo : lo + chunk])
    bulk.flush()
    base = bulk.frame()
    features_from_bars(base, higher_bars(base, cfg.higher_timeframe_ns))


def timed(fn, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_ingestion(ticks: pd.DataFrame) -> dict[str, dict[str, float]]:
    runs = {
        "streaming": timed(lambda: stream_ticks(ticks, FeedConfig()), REPEATS),
        "bulk": timed(lambda: bulk_pipeline(ticks), FAST_REPEATS),
        "pandas": timed(lambda: pandas_pipeline(ticks), FAST_REPEATS),
    }
    # the baseline must describe the same bars
    pb = pandas_bars(ticks, 5 * MINUTE_NS)
    sb = stream_ticks(ticks, FeedConfig()).base_frame()
    assert (
        len(pb) == len(sb)
        and np.allclose(pb["volume"], sb["volume"])
        and np.allclose(pb["close"], sb["close"])
    )
    n = len(ticks)
    return {
        name: {
            "ticks_per_s": n / statistics.median(r),
            "p50_s": pct(r, 50),
            "p99_s": pct(r, 99),
            "repeats": len(r),
        }
        for name, r in runs.items()
    }


def write_tick_csv(path: Path, n: int, seed: int = 0) -> None:
    """A tick CSV like a vendor's: ISO timestamps (ms), price, size, side words; written in slices."""
    rng = np.random.default_rng(seed)
    t, p = np.int64(1_704_067_200_000), 100.0  # 2024-01-01, ms
    with open(path, "w") as fh:
        fh.write("timestamp,price,size,side\n")
        for lo in range(0, n, 1_000_000):
            k = min(1_000_000, n - lo)
            ts = t + np.cumsum(rng.integers(1, 400, k))
            px = p * np.exp(np.cumsum(rng.normal(0, 2e-5, k)))
            t, p = ts[-1], px[-1]
            pd.DataFrame(
                {
                    "timestamp": pd.to_datetime(ts, unit="ms").strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "price": px.round(4),
                    "size": rng.integers(1, 50, k),
                    "side": np.where(rng.random(k) < 0.5, "buy", "sell"),
                }
            ).to_csv(fh, header=False, index=False)


_IMPORT = """
import sys, time, resource
from pathlib import Path
from marlops.market.feed import FeedConfig
from marlops.market.importer import ImportOptions, import_ticks
t0 = time.perf_counter()
ds = import_ticks(Path(sys.argv[1]), Path(sys.argv[2]), FeedConfig(), ImportOptions(allow_cold=True), {})
wall = time.perf_counter() - t0
try:  # this process's own peak: ru_maxrss would include the parent's RSS at fork (Linux keeps it over exec)
    status = Path("/proc/self/status").read_text().split("VmHWM:")[1]
    peak_kib = int(status.split()[0])
except (OSError, IndexError):
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(ds.meta["ticks_accepted"], wall, peak_kib)
"""


def bench_file_import(n: int) -> dict[str, float]:
    """`data import` of an n-tick CSV in a fresh process: ticks/s and its peak RSS (MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "ticks.csv"
        write_tick_csv(src, n)
        mib = src.stat().st_size / 2**20
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT, str(src), str(Path(tmp) / "ds")],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        ).stdout.split()
    accepted, wall, rss_kib = int(out[0]), float(out[1]), int(out[2])
    assert accepted == n
    return {
        "ticks": n,
        "file_mib": mib,
        "ticks_per_s": n / wall,
        "wall_s": wall,
        "peak_rss_mib": rss_kib / 1024,
    }


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
    st, bk, pb = ing["streaming"], ing["bulk"], ing["pandas"]
    print(f"ingestion ({len(market.ticks):,} ticks; p50/p99 of the repeats' wall times):")
    for name, r in ing.items():
        print(
            f"  {name:9s} {r['ticks_per_s']:>12,.0f} ticks/s | p50 {r['p50_s'] * 1e3:7.1f} ms, "
            f"p99 {r['p99_s'] * 1e3:7.1f} ms over {r['repeats']} runs"
        )
    print(
        f"  bulk / streaming {bk['ticks_per_s'] / st['ticks_per_s']:.1f}x | "
        f"bulk / pandas baseline {bk['ticks_per_s'] / pb['ticks_per_s']:.2f}x | "
        f"streaming / pandas baseline {st['ticks_per_s'] / pb['ticks_per_s']:.2f}x"
    )
    feed = stream_ticks(market.ticks, FeedConfig())
    fs = features_from_bars(feed.base_frame(), feed.higher_frame())
    for name, r in bench_bar_update(fs.base, fs.higher).items():
        print(
            f"per-bar update {name}: p50 {r['p50_us']:.1f} µs, p99 {r['p99_us']:.1f} µs | "
            f"naive pandas recompute p50 {r['naive_p50_us']:.0f} µs, p99 {r['naive_p99_us']:.0f} µs | "
            f"speedup {r['speedup_p50']:.0f}x"
        )
    if FILE_TICKS > 0:
        for n in (FILE_TICKS // 10, FILE_TICKS):
            f = bench_file_import(n)
            print(
                f"data import of a {f['ticks']:,}-tick CSV ({f['file_mib']:,.0f} MiB): "
                f"{f['ticks_per_s']:,.0f} ticks/s ({f['wall_s']:.1f} s), "
                f"peak RSS {f['peak_rss_mib']:,.0f} MiB"
            )


if __name__ == "__main__":
    main()
