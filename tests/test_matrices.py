"""Matrices: shapes, O(1) ring buffer, streaming = batch, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marlops.market.bars import MINUTE_NS
from marlops.market.events import EventBus, IndicatorsReady
from marlops.market.features import REGIME_COLUMNS, STRUCTURE_COLUMNS, TACTICAL_COLUMNS
from marlops.market.feed import MarketFeed, features_from_bars
from marlops.market.matrices import MATRIX_SPECS, REGIME, STRUCTURE, TACTICAL, RingMatrix, ready_mask, window
from marlops.market.ticks import Tick

T0 = 1_735_689_600 * 10**9
BASE = 5 * MINUTE_NS


def random_ticks(n_bars: int, seed: int, per_bar: int = 6, quiet: float = 0.05) -> list[Tick]:
    """A random walk with a few trades per 5-minute bar; some bars have no trades (gaps)."""
    rng = np.random.default_rng(seed)
    ticks, logp = [], np.log(100.0)
    for b in range(n_bars):
        if rng.random() < quiet:
            continue
        offs = np.sort(rng.choice(BASE, size=per_bar, replace=False))
        for off in offs:
            logp += 0.0015 * rng.standard_normal()
            ticks.append(
                Tick(T0 + b * BASE + int(off), float(np.exp(logp)), float(rng.lognormal(1.0, 0.5)), 1)
            )
    return ticks


def test_shapes_and_documented_columns() -> None:
    assert TACTICAL.shape == (60, 7) and STRUCTURE.shape == (48, 8) and REGIME.shape == (96, 11)
    for spec in MATRIX_SPECS.values():
        names = [c.name for c in spec.columns]
        assert len(set(names)) == len(names)
        assert all(c.formula and c.normalization for c in spec.columns)
    assert len(TACTICAL_COLUMNS) == 7 and len(STRUCTURE_COLUMNS) == 8 and len(REGIME_COLUMNS) == 11


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.floats(-5, 5), min_size=7, max_size=7), min_size=1, max_size=200))
def test_ring_matrix_equals_window(rows: list[list[float]]) -> None:
    ring = RingMatrix(TACTICAL)
    arr = np.asarray(rows, dtype=np.float32)
    for i, r in enumerate(rows):
        ring.push(r)
        np.testing.assert_array_equal(ring.view(), window(arr, i, 60))
    assert ring.ready == (len(rows) >= 60)


def _stream_matrices(ticks: list[Tick]) -> tuple[MarketFeed, dict[str, list[tuple[int, np.ndarray, bool]]]]:
    bus, seen = EventBus(), {"tactical": [], "structure": [], "regime": []}

    def on_ready(ev: IndicatorsReady) -> None:
        for name, m in ev.matrices.items():
            seen[name].append((ev.ts, m, ev.ready))

    bus.subscribe(IndicatorsReady, on_ready)
    feed = MarketFeed(bus=bus)
    feed.on_ticks(ticks)
    feed.flush()
    return feed, seen


@pytest.fixture(scope="module")
def streamed():
    ticks = random_ticks(n_bars=6 * 24 * 12 * 2 + 7, seed=11)  # ~6 days of 5m bars
    return ticks, *_stream_matrices(ticks)


def test_streaming_equals_batch(streamed) -> None:
    _, feed, seen = streamed
    fs = features_from_bars(feed.base_frame(), feed.higher_frame())
    batch = {
        "tactical": (fs.tactical, fs.tactical_warm, TACTICAL.rows),
        "structure": (fs.structure, fs.structure_warm, STRUCTURE.rows),
        "regime": (fs.regime, fs.regime_warm, REGIME.rows),
    }
    for name, (rows, warm, n) in batch.items():
        events = seen[name]
        assert len(events) == len(rows) > n
        ready = ready_mask(warm, n)
        if name == "tactical":
            assert ready[-1] and not ready[0]
        for t, (_, m, is_ready) in enumerate(events):
            np.testing.assert_allclose(m, window(rows, t, n), rtol=0, atol=2e-6, err_msg=f"{name} at {t}")
            if name == "tactical":
                assert is_ready == ready[t]
    assert ready_mask(fs.regime_warm & fs.structure_warm, REGIME.rows)[-1]
    assert np.all(np.abs(fs.regime) <= 10.0) and np.isfinite(fs.tactical).all()


def test_matrix_at_t_ignores_everything_after_t(streamed) -> None:
    ticks, _, seen = streamed
    cut = ticks[len(ticks) * 2 // 3].ts
    rng = np.random.default_rng(5)
    # rewrite the future: other prices, sizes and timing after `cut`
    future = [
        Tick(t.ts, t.price * float(np.exp(0.05 * rng.standard_normal())), t.size * 3.0, -1)
        for t in ticks
        if t.ts > cut
    ]
    _, seen2 = _stream_matrices([t for t in ticks if t.ts <= cut] + future)
    for name in seen:
        before = [(ts, m) for ts, m, _ in seen[name] if ts <= cut]
        before2 = [(ts, m) for ts, m, _ in seen2[name] if ts <= cut]
        assert len(before) == len(before2) > 0
        for (a_ts, a), (b_ts, b) in zip(before, before2, strict=True):
            assert a_ts == b_ts
            np.testing.assert_array_equal(a, b)
        # and the future really was different
        after = [m for ts, m, _ in seen[name] if ts > cut]
        after2 = [m for ts, m, _ in seen2[name] if ts > cut]
        assert any(not np.array_equal(a, b) for a, b in zip(after, after2, strict=False))


def test_batch_features_at_t_ignore_the_future(streamed) -> None:
    _, feed, _ = streamed
    base, higher = feed.base_frame(), feed.higher_frame()
    full = features_from_bars(base, higher)
    cut_b, cut_h = len(base) // 2, len(higher) // 2
    changed_base = base.copy()
    changed_base.loc[cut_b + 1 :, ["close", "volume"]] *= 1.3
    changed_base.loc[cut_b + 1 :, "high"] = changed_base.loc[cut_b + 1 :, ["high", "close"]].max(axis=1)
    changed_higher = higher.copy()
    changed_higher.loc[cut_h + 1 :, ["close", "volume"]] *= 0.7
    changed_higher.loc[cut_h + 1 :, "low"] = changed_higher.loc[cut_h + 1 :, ["low", "close"]].min(axis=1)
    part = features_from_bars(changed_base, changed_higher)
    np.testing.assert_array_equal(part.tactical[: cut_b + 1], full.tactical[: cut_b + 1])
    np.testing.assert_array_equal(part.regime[: cut_h + 1], full.regime[: cut_h + 1])
    np.testing.assert_array_equal(part.structure[: cut_h + 1], full.structure[: cut_h + 1])
    assert not np.array_equal(part.tactical, full.tactical)


def test_gap_bars_produce_finite_rows() -> None:
    feed = MarketFeed()
    feed.on_ticks(random_ticks(400, seed=2, quiet=0.6))
    feed.flush()
    assert feed.stats.gap_bars > 50
    assert np.isfinite(feed.tactical.view()).all() and np.isfinite(feed.regime.view()).all()
    assert (
        isinstance(feed.base_frame(), pd.DataFrame) and feed.base_frame()["gap"].sum() == feed.stats.gap_bars
    )
