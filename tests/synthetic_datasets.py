"""Small synthetic market datasets for the feature-store tests (4 ticks a bar: quick to build)."""

from __future__ import annotations

from pathlib import Path

from marlops.market.dataset import MarketDataset, dataset_from_ticks
from marlops.market.feed import FeedConfig
from marlops.market.synthetic import SyntheticMarketConfig, generate_market


def make_dataset(out: Path, days: float, seed: int) -> MarketDataset:
    m = generate_market(days, seed=seed, config=SyntheticMarketConfig(ticks_per_bar=4.0))
    return dataset_from_ticks(out, m.ticks, FeedConfig(), {"source": "synthetic", "seed": seed}, m.labels)
