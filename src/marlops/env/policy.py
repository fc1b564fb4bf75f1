"""What acts in a :class:`~marlops.env.market_env.VecMarketEnv`: the trained team, a baseline, an oracle.

A policy maps one batched observation (``VecMarketEnv.observe()``) to the environment's action dict.
Observations carry ``"bar_index"`` (n,), the base bar each environment is at, for policies that
prepared per-bar work. A policy may add ``"regime_pred"`` (n,) int — its belief about the current
regime (index into ``types.REGIME_NAMES``), which the environment ignores and evaluation scores against
the labels.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class TeamPolicy(Protocol):
    name: str

    def reset(self, n_envs: int) -> None:
        """Forget any per-episode state (held decisions, message caches) before a new batch of episodes."""
        ...

    # Optional: ``prepare(data: MarketData) -> None`` before an episode over ``data``, for policies that can
    # batch their market-only work (the trained team's networks) over the whole history at once.

    def act(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``obs`` from ``VecMarketEnv.observe()`` → ``{"structure", "size", "tactical", "risk"}`` (n,)
        arrays as ``VecMarketEnv.step`` reads them, optionally ``"regime_pred"``."""
        ...
