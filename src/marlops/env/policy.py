"""What acts in a :class:`~marlops.env.market_env.VecMarketEnv`: the trained team, a baseline, an oracle.

A policy maps one batched observation (``VecMarketEnv.observe()``) to the environment's action dict.
It may add ``"regime_pred"`` (n,) int — its belief about the current regime (index into
``types.REGIME_NAMES``), which the environment ignores and evaluation scores against the labels.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class TeamPolicy(Protocol):
    name: str

    def reset(self, n_envs: int) -> None:
        """Forget any per-episode state (held decisions, message caches) before a new batch of episodes."""
        ...

    def act(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``obs`` from ``VecMarketEnv.observe()`` → ``{"structure", "size", "tactical", "risk"}`` (n,)
        arrays as ``VecMarketEnv.step`` reads them, optionally ``"regime_pred"``."""
        ...
