"""Market charts: PNG and HTML output, regime shading, downsampling of long series."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marlops.market.bars import BAR_COLUMNS
from marlops.market.charts import MAX_POINTS, _downsample, plot_market

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN = 60 * 1_000_000_000
START = 1_704_067_200 * 1_000_000_000  # 2024-01-01 00:00 UTC


def random_walk_bars(n: int, tf: int = 5 * MIN, seed: int = 0) -> pd.DataFrame:
    """A canonical bar frame of a geometric random walk, with a few gap bars."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[100.0, close[:-1]]
    wick = np.abs(rng.normal(0, 0.001, n)) * close
    high, low = np.maximum(open_, close) + wick, np.minimum(open_, close) - wick
    gap = rng.random(n) < 0.01
    volume = np.where(gap, 0.0, rng.gamma(2.0, 50.0, n))
    start = START + np.arange(n, dtype=np.int64) * tf
    return pd.DataFrame(
        {
            "start": start,
            "end": start + tf,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "vwap": (high + low + close) / 3,
            "ticks": (volume // 3).astype(np.int64),
            "gap": gap,
        }
    )[list(BAR_COLUMNS)]


def sticky_regimes(bars: pd.DataFrame, every: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    starts = bars["start"].to_numpy()[::every]
    switch = rng.random(len(starts)) < 0.1
    regime = np.cumsum(switch) % 4
    return pd.DataFrame({"start": starts, "regime": regime.astype(np.int64)})


def assert_png(data: bytes) -> None:
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000  # a real chart, not an empty canvas


@pytest.mark.parametrize("with_regimes", [False, True])
def test_png_small_series_candles(tmp_path: Path, with_regimes: bool) -> None:
    bars = random_walk_bars(300)
    regimes = sticky_regimes(bars, every=3) if with_regimes else None
    path = plot_market(bars, tmp_path / "out" / "chart.png", regimes, title="test")
    assert path == tmp_path / "out" / "chart.png" and path.exists()
    assert_png(path.read_bytes())


def test_html_embeds_png_and_summary(tmp_path: Path) -> None:
    bars = random_walk_bars(2_000, tf=60 * MIN)
    path = plot_market(bars, tmp_path / "chart.html", sticky_regimes(bars, every=6), title="hourly <walk>")
    page = path.read_text()
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match is not None
    assert_png(base64.b64decode(match.group(1)))
    assert "hourly &lt;walk&gt;" in page  # the title is escaped
    assert "<table>" in page and "2,000" in page and "1h" in page


def test_html_without_regimes(tmp_path: Path) -> None:
    path = plot_market(random_walk_bars(100), tmp_path / "c.html")
    assert "data:image/png;base64," in path.read_text()


def test_long_series_is_downsampled(tmp_path: Path) -> None:
    bars = random_walk_bars(30_000)  # > MAX_POINTS 5m bars
    small, width = _downsample(bars, 5 * MIN)
    assert len(small) <= MAX_POINTS and width == 10 * MIN
    assert small["volume"].sum() == pytest.approx(bars["volume"].sum())
    assert small["high"].max() == bars["high"].max() and small["low"].min() == bars["low"].min()
    assert small["close"].iloc[-1] == bars["close"].iloc[-1]
    path = plot_market(bars, tmp_path / "long.png", sticky_regimes(bars, every=12))
    assert_png(path.read_bytes())


def test_unsorted_input_and_bad_arguments(tmp_path: Path) -> None:
    bars = random_walk_bars(50).sample(frac=1.0, random_state=0)
    assert_png(plot_market(bars, tmp_path / "shuffled.png").read_bytes())
    with pytest.raises(ValueError, match=r"\.png or \.html"):
        plot_market(bars, tmp_path / "c.jpg")
    with pytest.raises(ValueError, match="close"):
        plot_market(bars.drop(columns=["close"]), tmp_path / "c.png")
    with pytest.raises(ValueError, match="no rows"):
        plot_market(bars.iloc[:0], tmp_path / "c.png")
