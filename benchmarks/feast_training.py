"""The cost of training through Feast: the training windows of the ``default`` budget built both ways.

    python -m benchmarks feast_training

The ``default`` budget trains on its ``train_seeds`` markets of ``days`` days each (2 × 365 days of 5 m
bars). Each market is written as a dataset folder and a Feast store (the pipeline's build step: sources,
apply, materialize; timed once, it is not the train step's cost). Then, per repetition, for all markets:

- direct: ``MarketDataset.load`` (bars, feature rows computed from them) → ``MarketData`` (the windows);
- feast, cold: the bars from the folder, every feature row from the offline store (``load_dataset``,
  ``cache=False``: the linear scan + point-in-time rule, the fingerprint and the data hash) → ``MarketData``;
- feast, cached: the same with the cache file present (a rerun or a retried train step).

p50/p99 over the repetitions' wall times (with few repetitions the p99 is about the slowest); ratios
compare p50s within the run. Feast's import (once per process) is printed apart. Feast's own
``get_historical_features`` is probed on a few bar ends against a whole year of rows: its file store
merges every entity row with every source row (O(n·m)), and the probe's time per entity row times the
year's bars says what the whole join would cost.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.market import pct, timed
from marlops.env.market_env import market_data_from_dataset
from marlops.market.dataset import MarketDataset, dataset_from_ticks
from marlops.market.feed import FeedConfig
from marlops.market.synthetic import generate_market
from marlops.training.config import budget_config

REPEATS = int(os.environ.get("MARLOPS_BENCH_FEAST_REPEATS", "7"))
# bar ends for the get_historical_features probe
PROBE = int(os.environ.get("MARLOPS_BENCH_FEAST_PROBE", "32"))


def _times(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up (and, for the cached path, the cache file)
    return timed(fn, repeats)


def main() -> None:
    cfg = budget_config("default")
    days, seeds = cfg.days, list(cfg.train_seeds)
    root = Path(tempfile.mkdtemp(prefix="marlops-bench-feast-"))
    t0 = time.perf_counter()
    import feast  # noqa: F401  (once per process: the train step pays it once)

    import_s = time.perf_counter() - t0
    from marlops.features import build_features
    from marlops.features.training import load_dataset

    folders: list[tuple[Path, Path]] = []
    bars = 0
    build_s = 0.0
    for seed in seeds:
        m = generate_market(days=days, seed=seed)
        ds = dataset_from_ticks(root / f"ds-{seed}", m.ticks, FeedConfig(), {"source": "synthetic"}, m.labels)
        bars += len(ds.base)
        t0 = time.perf_counter()
        build_features(ds, "SYNTH", root / f"feast-{seed}")
        build_s += time.perf_counter() - t0
        folders.append((ds.path, root / f"feast-{seed}"))
    print(
        f"default budget: {len(seeds)} markets × {days} days = {bars:,} base bars; "
        f"import feast {import_s:.1f} s (once per process); build step (sources, apply, materialize) "
        f"{build_s:.1f} s in all"
    )

    def direct() -> None:
        for path, _ in folders:
            market_data_from_dataset(MarketDataset.load(path))

    def feast_path(cache: bool) -> Callable[[], None]:
        def run() -> None:
            for path, store in folders:
                ds, _ = load_dataset(path, store, "SYNTH", cache=cache)
                market_data_from_dataset(ds)

        return run

    results = {
        "direct (dataset)": _times(direct, REPEATS),
        "feast, cold (join)": _times(feast_path(False), REPEATS),
        "feast, cached": _times(feast_path(True), REPEATS),
    }
    base = pct(results["direct (dataset)"], 50)
    print(f"training windows of all {len(seeds)} markets, {REPEATS} repetitions:")
    for name, xs in results.items():
        print(
            f"  {name:20s} p50 {pct(xs, 50):6.2f} s, p99 {pct(xs, 99):6.2f} s | "
            f"{pct(xs, 50) / base:5.2f}x direct"
        )
    _, src = load_dataset(*folders[0], "SYNTH")
    size = Path(src.cache_file).stat().st_size
    print(f"  cache file per market: {size / 2**20:.1f} MiB ({Path(src.cache_file).name})")
    _probe(*folders[0])


def _probe(path: Path, store_dir: Path) -> None:
    """get_historical_features on PROBE bar ends against the whole source (the tactical view)."""
    from marlops.features import schema
    from marlops.features.offline import entity_frame, join_view
    from marlops.features.repo import open_store

    ends = MarketDataset.load(path).base["end"].to_numpy()
    store = open_store(store_dir)
    refs = [f"{schema.TACTICAL_VIEW}:{f}" for f in (*schema.TACTICAL_FEATURES, "tactical_bar_end")]
    keys = entity_frame("SYNTH", ends[np.linspace(0, len(ends) - 1, PROBE).astype(int)])
    t0 = time.perf_counter()
    join_view(store, keys, schema.TACTICAL_VIEW, refs)
    s = time.perf_counter() - t0
    print(
        f"  get_historical_features probe: {PROBE} bar ends × {len(ends):,} rows in {s:.1f} s = "
        f"{s / PROBE * 1e3:.0f} ms per bar end; all {len(ends):,} tactical bar ends ≈ "
        f"{s / PROBE * len(ends) / 60:.0f} min per market (why the train step scans instead)"
    )


if __name__ == "__main__":
    main()
