"""Replay a tick history through the live path: MarketFeed → events → DecisionEngine → decisions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from marlops.agents.audit import AuditLog
from marlops.agents.decision import Portfolio, RiskLimits
from marlops.agents.engine import AgentRuntime, DecisionEngine, EngineConfig, TradeDecision
from marlops.agents.hub import ConsensusConfig
from marlops.market.events import EventBus
from marlops.market.feed import FeedConfig, MarketFeed


@dataclass
class ReplayResult:
    decisions: list[TradeDecision]
    portfolio: Portfolio
    feed_stats: object
    last_price: float
    summary: dict[str, object] = field(default_factory=dict)


def replay_ticks(
    ticks: pd.DataFrame,
    agents: AgentRuntime,
    limits: RiskLimits | None = None,
    consensus: ConsensusConfig | None = None,
    feed_config: FeedConfig | None = None,
    audit: AuditLog | None = None,
    engine_config: EngineConfig | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 20_000,
    parallel: bool = True,
) -> ReplayResult:
    fc = feed_config or FeedConfig()
    bus = EventBus()
    feed = MarketFeed(fc, bus)
    feed.keep_bars = False
    engine = DecisionEngine(
        agents,
        limits,
        consensus,
        engine_config
        or EngineConfig(base_timeframe_ns=fc.base_timeframe_ns, higher_timeframe_ns=fc.higher_timeframe_ns),
        audit=audit,
        parallel=parallel,
    ).attach(bus)
    feed.on_frame(ticks, progress, chunk)
    last = float(ticks["price"].iloc[-1]) if len(ticks) else float("nan")
    res = ReplayResult(engine.decisions, engine.portfolio, feed.stats, last)
    res.summary = summarize(res.decisions, engine.portfolio, last)
    return res


def summarize(decisions: list[TradeDecision], pf: Portfolio, last_price: float) -> dict[str, object]:
    """Counts and latency percentiles of a decision stream, for the CLI's table and the benchmarks."""
    by_tf = Counter(d.timeframe for d in decisions)
    actions = Counter(d.action for d in decisions if d.timeframe != "tick")
    overrides = Counter(
        o.split(":")[0] + ":" + o.split(":")[1] if ":" in o else o for d in decisions for o in d.overrides
    )
    reasons = Counter(
        r.split(":")[0] + ":" + r.split(":")[1] for d in decisions for r in d.reasons if ":" in r
    )
    out: dict[str, object] = {
        "decisions": len(decisions),
        "by timeframe": dict(sorted(by_tf.items())),
        "tactical actions": dict(actions.most_common()),
        "trades": sum(1 for d in decisions if d.quantity != 0.0),
        "fail-closed decisions": sum(d.fail_closed for d in decisions),
        "fail-closed reasons": dict(reasons.most_common(6)),
        "overrides": dict(overrides.most_common(8)),
        "final position": pf.position,
        "equity": pf.equity(last_price) if np.isfinite(last_price) else pf.equity_start,
    }
    for tf in sorted(by_tf):
        lat = np.array([d.latency_us["total"] for d in decisions if d.timeframe == tf])
        out[f"latency {tf} p50/p99 µs"] = f"{np.percentile(lat, 50):.0f} / {np.percentile(lat, 99):.0f}"
    return out
