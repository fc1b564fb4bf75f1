"""A time slice of a market: what walk-forward evaluation tests on and what a dataset run trains on."""

from __future__ import annotations

import dataclasses

from marlops.env.market_env import MarketData


def slice_market(data: MarketData, start: int, end: int) -> MarketData:
    """Base bars ``[start, end)`` of ``data`` as a market of their own.

    The matrices are windows over the past, so the first bars of a slice keep their real history
    (features look back into earlier bars, never forward); nothing at or after ``end`` is reachable: the
    higher-timeframe windows (regime, structure) are cut after the last higher bar closed inside the slice.
    """
    n = len(data)
    if not 0 <= start < end <= n:
        raise ValueError(f"start/end: need 0 <= start < end <= {n}, got [{start}, {end})")
    s = slice(start, end)
    h_end = max(int(data.higher_of[end - 1]) + 1, 1)
    return dataclasses.replace(
        data,
        close=data.close[s],
        end_ns=data.end_ns[s],
        atr=data.atr[s],
        sigma=data.sigma[s],
        volume=data.volume[s],
        day=data.day[s],
        tactical=data.tactical[s],
        structure=data.structure[:h_end],
        regime=data.regime[:h_end],
        higher_of=data.higher_of[s],
        slow_step=data.slow_step[s],
        regime_label=data.regime_label[s],
        warm_from=max(data.warm_from - start, 0),
    )
