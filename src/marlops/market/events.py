"""A small typed in-process event bus.

Handlers subscribe to an event class and are called synchronously, in subscription order, when an
instance of exactly that class is published. Synchronous dispatch keeps decisions deterministic and
adds no queueing latency on the tick path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from marlops.market.bars import Bar
from marlops.market.ticks import Tick

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class TickAccepted:
    """A tick passed validation and went into the open base bar."""

    tick: Tick


@dataclass(frozen=True, slots=True)
class BarClosed:
    timeframe: str  # "base" or "higher"
    bar: Bar


@dataclass(frozen=True, slots=True)
class IndicatorsReady:
    """New matrices at a bar close; the decision engine's clock for its slower agents.

    ``timeframe`` is "base" (5-minute by default: ``matrices`` holds "tactical") or "higher"
    (30-minute by default: "structure" and "regime"). ``ready`` is False until every row of every
    matrix in the event is past its indicators' warm-up. Arrays are copies the receiver may keep.
    """

    timeframe: str
    ts: int  # the bar's end, ns
    bar: Bar
    matrices: dict[str, np.ndarray]
    ready: bool


class EventBus:
    def __init__(self) -> None:
        self._handlers: defaultdict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Register ``handler``; returns a function that unsubscribes it."""
        self._handlers[event_type].append(handler)
        return lambda: self._handlers[event_type].remove(handler)

    def has_subscribers(self, event_type: type) -> bool:
        return bool(self._handlers.get(event_type))

    def publish(self, event: object) -> None:
        for handler in tuple(self._handlers.get(type(event), ())):
            handler(event)
