"""Replaying ticks through a decision server over HTTP (``marlops decide --url URL``).

The ticks go through the same market feed as ``marlops decide`` does in-process; each event becomes a
request in matrices mode, in the feed's order:

- a higher bar close (30 min) is held and sent with the base bar close at the same time as one ``"30m"``
  request carrying all three matrices;
- any other base bar close is a ``"5m"`` request with the tactical matrix;
- every accepted tick is a ``"tick"`` request with its price.

No portfolio is sent: the server's paper portfolio for the instrument fills each decision, as the
in-process engine does, so the two runs can be compared decision by decision (tests/test_serving.py does).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pandas as pd

from marlops.agents.core import timeframe_label
from marlops.agents.decision import Portfolio
from marlops.agents.decision_record import TradeDecision
from marlops.agents.replay import summarize
from marlops.market.bars import Bar
from marlops.market.events import EventBus, IndicatorsReady, TickAccepted
from marlops.market.feed import FeedConfig, MarketFeed, iter_ticks


class DecisionServerError(RuntimeError):
    """The server refused a request (the message has its status and error)."""


def decision_from_json(d: dict[str, Any]) -> TradeDecision:
    return TradeDecision(
        ts=int(d["ts"]),
        timeframe=d["timeframe"],
        action=d["action"],
        direction=int(d["direction"]),
        confidence=float(d["confidence"]),
        price=float(d["price"]),
        quantity=float(d["quantity"]),
        target_position=float(d["target_position"]),
        leverage=float(d["leverage"]),
        risk_capital=float(d["risk_capital"]),
        stop_loss=d["stop_loss"],
        take_profit=d["take_profit"],
        max_exposure=float(d["max_exposure"]),
        risk_action=d["risk_action"],
        overrides=tuple(d["overrides"]),
        fail_closed=bool(d["fail_closed"]),
        reasons=tuple(d["reasons"]),
        model_versions=dict(d["model_versions"]),
        latency_us=dict(d["latency_us"]),
    )


def _bar(bar: Bar) -> dict[str, float]:
    return {"high": bar.high, "low": bar.low, "close": bar.close}


@dataclass
class HttpReplayResult:
    instrument: str
    decisions: list[TradeDecision]
    responses: int
    portfolio: Portfolio
    last_price: float
    summary: dict[str, object] = field(default_factory=dict)


class DecisionClient:
    """A keep-alive HTTP client for ``/v1/models/decision:predict``."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/") + "/v1/models/decision:predict"
        self.client = httpx.Client(timeout=timeout_s, headers={"content-type": "application/json"})

    def decide(self, request: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post(self.url, content=orjson.dumps(request, option=orjson.OPT_SERIALIZE_NUMPY))
        if r.status_code != 200:
            raise DecisionServerError(f"HTTP {r.status_code} from {self.url}: {r.text[:500]}")
        return orjson.loads(r.content)

    def close(self) -> None:
        self.client.close()


def decision_requests(
    ticks: pd.DataFrame,
    instrument: str,
    feed_config: FeedConfig | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 20_000,
) -> Iterator[dict[str, Any]]:
    """The decision requests (matrices mode) of a tick replay, in the order the engine would decide."""
    fc = feed_config or FeedConfig()
    base_label, higher_label = timeframe_label(fc.base_timeframe_ns), timeframe_label(fc.higher_timeframe_ns)
    bus = EventBus()
    feed = MarketFeed(fc, bus)
    feed.keep_bars = False
    out: list[dict[str, Any]] = []
    pending_higher: list[IndicatorsReady] = []

    def on_indicators(ev: IndicatorsReady) -> None:
        if ev.timeframe == "higher":  # published just before the base bar's event of the same close
            pending_higher[:] = [ev]
            return
        slow = pending_higher[0] if pending_higher and pending_higher[0].ts == ev.ts else None
        pending_higher.clear()
        mats = {"tactical": ev.matrices["tactical"].tolist()}
        ready = {"tactical": bool(ev.ready)}
        if slow is not None:
            mats |= {k: v.tolist() for k, v in slow.matrices.items()}
            ready |= {"structure": bool(slow.ready), "regime": bool(slow.ready)}
        out.append(
            {
                "instrument": instrument,
                "clock": higher_label if slow is not None else base_label,
                "ts": int(ev.ts),
                "bar": _bar(ev.bar),
                "matrices": mats,
                "ready": ready,
            }
        )

    def on_tick(ev: TickAccepted) -> None:
        out.append({"instrument": instrument, "clock": "tick", "ts": int(ev.tick.ts), "price": ev.tick.price})

    bus.subscribe(IndicatorsReady, on_indicators)
    bus.subscribe(TickAccepted, on_tick)
    for lo in range(0, len(ticks), chunk):
        part = ticks.iloc[lo : lo + chunk]
        for tick in iter_ticks(part):
            feed.on_tick(tick)
            yield from out
            out.clear()
        if progress:
            progress(len(part))
    feed.flush()
    yield from out


def replay_http(
    ticks: pd.DataFrame,
    url: str,
    instrument: str | None = None,
    feed_config: FeedConfig | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 20_000,
    timeout_s: float = 10.0,
    audit: str | os.PathLike[str] | None = None,
) -> HttpReplayResult:
    """Send every decision of a tick replay to the decision server at ``url``; collect the answers.

    ``instrument`` defaults to a fresh ``replay-<hex>`` (the server keeps per-instrument context and wants
    time order, so a second replay of the same ticks needs a new name). ``audit``: append every answer,
    as returned, as a JSON line."""
    inst = instrument or f"replay-{uuid.uuid4().hex[:8]}"
    client = DecisionClient(url, timeout_s)
    decisions: list[TradeDecision] = []
    portfolio: dict[str, Any] | None = None
    audit_fh = open(audit, "ab") if audit is not None else None  # closed below
    try:
        for req in decision_requests(ticks, inst, feed_config, progress, chunk):
            out = client.decide(req)
            if audit_fh is not None:
                audit_fh.write(orjson.dumps(out) + b"\n")
            decisions.append(decision_from_json(out))
            portfolio = out["portfolio"]
    finally:
        client.close()
        if audit_fh is not None:
            audit_fh.close()
    pf = Portfolio(**portfolio) if portfolio is not None else Portfolio()
    last_price = float(ticks["price"].iloc[-1]) if len(ticks) else float("nan")
    res = HttpReplayResult(inst, decisions, len(decisions), pf, last_price)
    res.summary = summarize(decisions, pf, last_price) if decisions else {"decisions": 0}
    return res
