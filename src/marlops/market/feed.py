"""The streaming market-data path: ticks → validation → bars → features → matrices → events.

``MarketFeed.on_tick`` is the one call per tick; everything downstream (bar closes, indicator
updates, matrix pushes and the ``IndicatorsReady`` events) happens inside it, synchronously, so a
decision can be made in the same call stack as the tick that triggered it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from marlops.market.bars import (
    MINUTE_NS,
    Bar,
    BarAggregator,
    BarBuilder,
    bars_to_frame,
    check_timeframes,
)
from marlops.market.events import BarClosed, EventBus, IndicatorsReady, TickAccepted
from marlops.market.features import (
    SlowFeatures,
    TacticalFeatures,
    slow_features_batch,
    tactical_features_batch,
)
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL, RingMatrix
from marlops.market.ticks import Tick, TickValidator


@dataclass(frozen=True)
class FeedConfig:
    base_timeframe_ns: int = 5 * MINUTE_NS
    higher_timeframe_ns: int = 30 * MINUTE_NS
    origin_ns: int = 0
    out_of_order_tolerance_ns: int = 0

    def __post_init__(self) -> None:
        check_timeframes(self.base_timeframe_ns, self.higher_timeframe_ns)
        if self.out_of_order_tolerance_ns < 0:
            raise ValueError("out_of_order_tolerance_ns: must be >= 0")


@dataclass
class FeedStats:
    ticks_in: int = 0
    ticks_accepted: int = 0
    volume_accepted: float = 0.0
    base_bars: int = 0
    gap_bars: int = 0
    higher_bars: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class MarketFeed:
    def __init__(self, config: FeedConfig | None = None, bus: EventBus | None = None) -> None:
        self.config = cfg = config or FeedConfig()
        self.bus = bus or EventBus()
        self.validator = TickValidator(cfg.out_of_order_tolerance_ns)
        self.base = BarBuilder(cfg.base_timeframe_ns, cfg.origin_ns)
        self.higher = BarAggregator(cfg.higher_timeframe_ns, cfg.origin_ns)
        self.tactical_features = TacticalFeatures()
        self.slow_features = SlowFeatures()
        self.tactical = RingMatrix(TACTICAL)
        self.structure = RingMatrix(STRUCTURE)
        self.regime = RingMatrix(REGIME)
        self.stats = FeedStats()
        self.base_bars: list[Bar] = []
        self.higher_bars: list[Bar] = []
        self.keep_bars = True

    # -- input -----------------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> bool:
        """Process one tick; False if it was rejected (counted in ``stats.rejected``)."""
        st = self.stats
        st.ticks_in += 1
        if not self.validator.accept(tick):
            st.rejected = self.validator.rejected + self.base.rejected
            return False
        closed = self.base.on_tick(tick)
        if closed is None:
            st.rejected = self.validator.rejected + self.base.rejected
            return False
        st.ticks_accepted += 1
        st.volume_accepted += tick.size
        for bar in closed:
            self._on_base_bar(bar)
        if self.bus.has_subscribers(TickAccepted):
            self.bus.publish(TickAccepted(tick))
        return True

    def on_ticks(self, ticks: Iterable[Tick]) -> int:
        return sum(self.on_tick(t) for t in ticks)

    def on_frame(
        self, frame: pd.DataFrame, progress: Callable[[int], None] | None = None, chunk: int = 20_000
    ) -> None:
        """Feed a canonical tick frame in chunks, reporting progress after each, then flush."""
        for lo in range(0, len(frame), chunk):
            part = frame.iloc[lo : lo + chunk]
            self.on_ticks(iter_ticks(part))
            if progress:
                progress(len(part))
        self.flush()

    def advance_to(self, ts: int) -> None:
        """Clock heartbeat: close bars whose end is at or before ``ts`` even without a new tick."""
        for bar in self.base.advance_to(ts):
            self._on_base_bar(bar)

    def flush(self) -> None:
        """End of data: close the open bar."""
        for bar in self.base.flush():
            self._on_base_bar(bar)

    # -- bar closes ------------------------------------------------------------------------------

    def _on_base_bar(self, bar: Bar) -> None:
        st = self.stats
        st.base_bars += 1
        st.gap_bars += bar.gap
        if self.keep_bars:
            self.base_bars.append(bar)
        row, warm = self.tactical_features.update(bar)
        self.tactical.push(row, warm)
        # At a higher-timeframe boundary the higher bar's events go first, so a subscriber runs the
        # slow agents (regime → structure) before the tactical one, as the design orders them.
        hbar = self.higher.on_bar(bar)
        if hbar is not None:
            self._on_higher_bar(hbar)
        bus = self.bus
        if bus.has_subscribers(BarClosed):
            bus.publish(BarClosed("base", bar))
        if bus.has_subscribers(IndicatorsReady):
            mats = {"tactical": self.tactical.copy()}
            bus.publish(IndicatorsReady("base", bar.end, bar, mats, self.tactical.ready))

    def _on_higher_bar(self, bar: Bar) -> None:
        self.stats.higher_bars += 1
        if self.keep_bars:
            self.higher_bars.append(bar)
        srow, swarm, rrow, rwarm = self.slow_features.update(bar)
        self.structure.push(srow, swarm)
        self.regime.push(rrow, rwarm)
        bus = self.bus
        if bus.has_subscribers(BarClosed):
            bus.publish(BarClosed("higher", bar))
        if bus.has_subscribers(IndicatorsReady):
            mats = {"structure": self.structure.copy(), "regime": self.regime.copy()}
            bus.publish(
                IndicatorsReady("higher", bar.end, bar, mats, self.structure.ready and self.regime.ready)
            )

    # -- results ---------------------------------------------------------------------------------

    def base_frame(self) -> pd.DataFrame:
        return bars_to_frame(self.base_bars)

    def higher_frame(self) -> pd.DataFrame:
        return bars_to_frame(self.higher_bars)


def iter_ticks(frame: pd.DataFrame) -> Iterator[Tick]:
    """Canonical tick frame (ts, price, size, side with 0 = unknown) → Tick records."""
    sides = frame["side"].to_numpy() if "side" in frame else np.zeros(len(frame), dtype=np.int8)
    for ts, p, s, sd in zip(
        frame["ts"].to_numpy(), frame["price"].to_numpy(), frame["size"].to_numpy(), sides, strict=True
    ):
        yield Tick(int(ts), float(p), float(s), int(sd) or None)


@dataclass
class FeatureSet:
    """Batch result for a whole history: bar frames plus per-bar feature rows and warm flags."""

    base: pd.DataFrame
    higher: pd.DataFrame
    tactical: np.ndarray
    tactical_warm: np.ndarray
    structure: np.ndarray
    structure_warm: np.ndarray
    regime: np.ndarray
    regime_warm: np.ndarray


def features_from_bars(base: pd.DataFrame, higher: pd.DataFrame) -> FeatureSet:
    t, tw = tactical_features_batch(base)
    s, sw, r, rw = slow_features_batch(higher)
    return FeatureSet(base, higher, t, tw, s, sw, r, rw)


def build_from_ticks(frame: pd.DataFrame, config: FeedConfig | None = None) -> tuple[MarketFeed, FeatureSet]:
    """Stream a tick frame through a feed (bars are built exactly as live), then compute batch features."""
    feed = MarketFeed(config)
    feed.on_ticks(iter_ticks(frame))
    feed.flush()
    return feed, features_from_bars(feed.base_frame(), feed.higher_frame())
