"""Running mean / variance for value normalization (the critic predicts normalized values).

MAPPO's value normalization (Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative
Multi-Agent Games", §4.1): the critic regresses ``(G - μ) / σ`` where μ, σ are running statistics of
the value targets G, and its outputs are mapped back with ``v * σ + μ`` before they enter GAE. This
keeps the value loss at unit scale whatever the reward scale, and across agents whose returns differ
(one set of statistics per agent head: pass ``shape=(n_agents,)``).

Two modes:
- ``decay=None`` (default): exact statistics of everything seen so far, merged batch by batch with
  the parallel-variance formula of Chan, Golub & LeVeque (1979) — equal to ``np.mean`` / ``np.var``
  of the concatenation, which the tests check;
- ``decay=β``: debiased exponential moving averages (the reference MAPPO ``ValueNorm``, β = 0.99999),
  which forget the returns of early, worse policies.

Not PopArt's output-preserving rescale: that needs the critic's last layer, and the trainer treats the
critic as an opaque module. With slowly moving statistics (many samples per update) the difference is
small, and the reference MAPPO implementation does the same.
"""

from __future__ import annotations

import numpy as np


class RunningMeanStd:
    """Per-component running mean and variance of arrays shaped ``(..., *shape)``."""

    def __init__(self, shape: tuple[int, ...] = (), decay: float | None = None, eps: float = 1e-5) -> None:
        if decay is not None and not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.shape = tuple(shape)
        self.decay = decay
        self.eps = eps
        self.mean = np.zeros(self.shape, np.float64)
        self.var = np.ones(self.shape, np.float64)
        self.count = 0.0
        # EMA mode keeps raw (biased) moments plus the debiasing weight, as Adam does.
        self._m1 = np.zeros(self.shape, np.float64)
        self._m2 = np.zeros(self.shape, np.float64)
        self._w = 0.0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape((-1, *self.shape))
        n = x.shape[0]
        if n == 0:
            return
        b_mean, b_var = x.mean(axis=0), x.var(axis=0)
        if self.decay is None:
            total = self.count + n
            delta = b_mean - self.mean
            # Chan et al.: M2 = M2_a + M2_b + δ² n_a n_b / n — exact, and stable for large counts.
            m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
            self.mean = self.mean + delta * n / total
            self.var = m2 / total
            self.count = total
        else:
            self._m1 = self.decay * self._m1 + (1 - self.decay) * b_mean
            self._m2 = self.decay * self._m2 + (1 - self.decay) * (x**2).mean(axis=0)
            self._w = self.decay * self._w + (1 - self.decay)
            self.mean = self._m1 / self._w
            self.var = np.maximum(self._m2 / self._w - self.mean**2, 0.0)
            self.count += n

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + self.eps)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.std).astype(np.float32)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) * self.std + self.mean).astype(np.float32)

    def state_dict(self) -> dict[str, np.ndarray | float]:
        return {
            "mean": self.mean,
            "var": self.var,
            "count": self.count,
            "m1": self._m1,
            "m2": self._m2,
            "w": self._w,
        }

    def load_state_dict(self, state: dict[str, np.ndarray | float]) -> None:
        self.mean = np.asarray(state["mean"], np.float64)
        self.var = np.asarray(state["var"], np.float64)
        self.count = float(state["count"])  # type: ignore[arg-type]
        self._m1 = np.asarray(state["m1"], np.float64)
        self._m2 = np.asarray(state["m2"], np.float64)
        self._w = float(state["w"])  # type: ignore[arg-type]


class IdentityNormalizer(RunningMeanStd):
    """``value_norm=False``: the critic predicts raw returns; same interface, no statistics."""

    def update(self, x: np.ndarray) -> None:
        pass

    @property
    def std(self) -> np.ndarray:
        return np.ones(self.shape, np.float64)
