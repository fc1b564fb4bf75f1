"""Tick records and tick validation.

Timestamps are integer nanoseconds since the Unix epoch, UTC. Integers keep bar boundaries exact
(no float rounding at 5-minute edges) and match numpy's ``datetime64[ns]``.

Validation policy (see docs/market-data.md):

- ``price`` must be finite and > 0, ``size`` finite and >= 0, ``side`` one of -1, 0, +1 or None.
  Such a tick is *malformed*: ``TickValidator.check`` raises :class:`TickError` naming the field,
  ``TickValidator.accept`` counts and logs it as a rejection.
- A tick identical (timestamp, price, size, side) to one accepted within the tolerance window is a
  *duplicate* and is rejected.
- A tick older than the newest accepted timestamp by more than ``out_of_order_tolerance_ns`` is
  *out of order* and rejected. Within the tolerance it is accepted.
- Whether a tick arrives after its bar closed is decided by the bar builder (``late``), which owns
  the bars; see :mod:`marlops.market.bars`.

Nothing accepted is ever dropped afterwards: every accepted tick's size lands in exactly one bar.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import StrEnum
from numbers import Integral

log = logging.getLogger(__name__)

NS_PER_SECOND = 1_000_000_000
_INF = float("inf")


class RejectReason(StrEnum):
    BAD_PRICE = "bad_price"
    BAD_SIZE = "bad_size"
    BAD_SIDE = "bad_side"
    BAD_TIMESTAMP = "bad_timestamp"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    LATE = "late"


class TickError(ValueError):
    """A tick that cannot be accepted; ``field`` names the offending field."""

    def __init__(self, reason: RejectReason, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.reason = reason
        self.field = field


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade: time (ns since epoch, UTC), price, size and optional aggressor side (+1 buy, -1 sell)."""

    ts: int
    price: float
    size: float
    side: int | None = None


def validate_fields(tick: Tick) -> None:
    """Raise :class:`TickError` if a field of ``tick`` is malformed (independent of any history)."""
    ts, p, s = tick.ts, tick.price, tick.size
    # bool is a subclass of int, so the fast path compares the class exactly; numpy ints are fine too
    if (ts.__class__ is not int and (isinstance(ts, bool) or not isinstance(ts, Integral))) or ts < 0:
        raise TickError(RejectReason.BAD_TIMESTAMP, "ts", f"must be a non-negative int (ns), got {ts!r}")
    try:
        # chained comparisons are False for NaN, so one test covers NaN, ±inf and the sign
        price_ok, size_ok = 0.0 < p < _INF, 0.0 <= s < _INF
    except TypeError:
        price_ok = size_ok = False
    if not price_ok or isinstance(p, bool):
        raise TickError(RejectReason.BAD_PRICE, "price", f"must be finite and > 0, got {p!r}")
    if not size_ok or isinstance(s, bool):
        raise TickError(RejectReason.BAD_SIZE, "size", f"must be finite and >= 0, got {s!r}")
    if tick.side not in (None, -1, 0, 1):
        raise TickError(RejectReason.BAD_SIDE, "side", f"must be -1, 0, 1 or None, got {tick.side!r}")


@dataclass
class TickValidator:
    """Stateful filter in front of the bar builder: malformed, duplicate and out-of-order ticks.

    ``accept`` returns True for a tick that may go on, and counts and logs every rejection in
    ``rejected`` (by :class:`RejectReason`). ``check`` does the same but raises instead.
    """

    out_of_order_tolerance_ns: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    _newest_ts: int = -1
    # (ts, price, size, side) of accepted ticks still inside the tolerance window, oldest first
    _recent: deque[tuple[int, float, float, int | None]] = field(default_factory=deque)
    _recent_keys: set[tuple[int, float, float, int | None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.out_of_order_tolerance_ns < 0:
            raise ValueError("out_of_order_tolerance_ns: must be >= 0")

    def check(self, tick: Tick) -> None:
        """Accept ``tick`` or raise :class:`TickError` (the rejection is still counted)."""
        try:
            validate_fields(tick)
            # Order first: a copy older than the window is out of order, whether or not its original
            # is still remembered, so the reason never depends on the window's bookkeeping (and the
            # bulk import, which has no such bookkeeping, decides the same).
            if tick.ts < self._newest_ts - self.out_of_order_tolerance_ns:
                raise TickError(
                    RejectReason.OUT_OF_ORDER,
                    "ts",
                    f"{tick.ts} is {self._newest_ts - tick.ts} ns older than the newest accepted tick "
                    f"(tolerance {self.out_of_order_tolerance_ns} ns)",
                )
            key = (tick.ts, float(tick.price), float(tick.size), tick.side)
            if key in self._recent_keys:
                raise TickError(
                    RejectReason.DUPLICATE, "ts", f"duplicate of an accepted tick at ts={tick.ts}"
                )
        except TickError as err:
            self.rejected[err.reason] += 1
            raise
        self._remember(key)
        self.accepted += 1

    def accept(self, tick: Tick) -> bool:
        """True if ``tick`` passes; otherwise count and log the rejection and return False."""
        try:
            self.check(tick)
        except TickError as err:
            log.warning("tick rejected (%s): %s", err.reason, err)
            return False
        return True

    def _remember(self, key: tuple[int, float, float, int | None]) -> None:
        ts = key[0]
        if ts > self._newest_ts:
            self._newest_ts = ts
        self._recent.append(key)
        self._recent_keys.add(key)
        horizon = self._newest_ts - self.out_of_order_tolerance_ns
        # Ticks older than the horizon can never be accepted again, so their keys are not needed.
        while self._recent and self._recent[0][0] < horizon:
            self._recent_keys.discard(self._recent.popleft())

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())
