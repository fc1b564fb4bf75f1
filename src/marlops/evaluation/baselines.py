"""Baseline policies for the market environment: what the trained team has to beat.

All are :class:`~marlops.env.policy.TeamPolicy` implementations, vectorized over ``n`` environments,
and go through the same decision gates, sizing, stops and costs as the team (``decide_batch``), so a
comparison measures decisions, not accounting. How they speak the team's action language:

- to hold side ``d`` (+1 long, −1 short) a baseline sets structure's bias level to ±1 (index 4 / 0;
  the consensus gate wants structure to agree with an entry) at full size, and tactical ENTER in that
  direction while it is flat or on the other side, HOLD while it already holds ``d``;
- to be flat: bias level 0 (index 2) and tactical EXIT while it holds a position;
- the risk agent ALLOWs (except in the random baseline).

Entries are sized by the engine (1 % of equity at risk to a 3-ATR stop on the 30-minute bars, capped by
leverage, exposure and position limits) and carry a stop loss and take profit; a baseline that still
wants its side after a stop or take profit re-enters on the next bar. Directions change only on slow
steps (the close of a 30-minute bar), the clock on which structure's bias is read.

Baselines (docs/evaluation.md):
- ``BuyAndHold``: long from the first slow step on, always.
- ``RandomPolicy``: uniform over every action (seeded; same draws on every reset).
- ``MomentumPolicy``: the sign of the trailing 12-hour return (the regime matrix's ``ret_24``,
  a volatility-normalized z-score) beyond a threshold: long / short / flat.
- ``RegimeMomentumPolicy``: the momentum rule only while a regime belief says "trending", flat
  otherwise; driven by a causal HMM (:class:`HMMRegimeClassifier`) or by the true label (the oracle).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from marlops.agents.types import RiskAction, TacticalAction
from marlops.env.market_env import MarketData
from marlops.market.features import REGIME_COLUMNS
from marlops.market.synthetic import TRENDING
from marlops.training.regime_hmm import (  # noqa: F401 (re-exported)
    HMM_FEATURES,
    HMMRegimeClassifier,
    hmm_features,
    training_rows,
)

LONG_LEVEL, FLAT_LEVEL, SHORT_LEVEL = 4, 2, 0  # indices into STRUCTURE_BIAS_LEVELS (+1, 0, −1)
_COL = {c.name: i for i, c in enumerate(REGIME_COLUMNS)}
RegimeFn = Callable[[dict[str, np.ndarray]], np.ndarray]


def actions_for_side(desired: np.ndarray, position: np.ndarray) -> dict[str, np.ndarray]:
    """The action dict that moves each environment to ``desired`` side (+1 / 0 / −1) and keeps it there.

    ``position`` is the signed position (any scale; only its sign is read, e.g. ``obs["portfolio"][:, 0]``).
    """
    d = np.sign(np.asarray(desired, np.float64))
    held = np.sign(np.asarray(position, np.float64))
    tactical = np.where(
        d > 0,
        np.where(held > 0, TacticalAction.HOLD, TacticalAction.ENTER_LONG),
        np.where(
            d < 0,
            np.where(held < 0, TacticalAction.HOLD, TacticalAction.ENTER_SHORT),
            np.where(held != 0, TacticalAction.EXIT_POSITION, TacticalAction.HOLD),
        ),
    ).astype(np.int64)
    n = len(d)
    return {
        "structure": np.where(d > 0, LONG_LEVEL, np.where(d < 0, SHORT_LEVEL, FLAT_LEVEL)).astype(np.int64),
        "size": np.ones(n),
        "tactical": tactical,
        "risk": np.full(n, int(RiskAction.ALLOW), np.int64),
    }


class BuyAndHold:
    """Long at full size from the first slow step (structure must be present for an entry) to the end."""

    def __init__(self, name: str = "buy_and_hold") -> None:
        self.name = name

    def reset(self, n_envs: int) -> None:
        del n_envs  # stateless

    def act(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(obs["slow_step"])
        return actions_for_side(np.ones(n), obs["portfolio"][:, 0])


class RandomPolicy:
    """Every action uniform: bias level 0..4, size U[0, 1], tactical 0..4, risk 0..3.

    ``reset`` restarts the generator from ``seed``, so every episode (and a rerun) sees the same draws.
    """

    def __init__(self, seed: int = 0, name: str = "random") -> None:
        self.name, self.seed = name, seed
        self.rng = np.random.default_rng(seed)

    def reset(self, n_envs: int) -> None:
        del n_envs
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(obs["slow_step"])
        return {
            "structure": self.rng.integers(0, 5, n),
            "size": self.rng.random(n),
            "tactical": self.rng.integers(0, len(TacticalAction), n),
            "risk": self.rng.integers(0, len(RiskAction), n),
        }


def momentum_signal(obs: dict[str, np.ndarray], column: str = "ret_24") -> np.ndarray:
    """The trailing return z-score of the latest closed higher bar, from the regime matrix.

    ``ret_24`` = log(C / C[−24]) / (σ48 · √24) over 30-minute bars: the last 12 hours' return in units
    of its typical size. Known at the bar's close, so using it there is causal.
    """
    return np.nan_to_num(obs["regime"][:, -1, _COL[column]].astype(np.float64))


@dataclass
class _Held:
    """Per-environment decision held between slow steps (the semi-MDP of the structure clock)."""

    side: np.ndarray = field(default_factory=lambda: np.zeros(0))
    regime: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fresh: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def reset(self, n: int) -> None:
        self.side, self.regime, self.fresh = np.zeros(n), np.full(n, -1, np.int64), np.ones(n, bool)


class MomentumPolicy:
    """Long when the 12-hour return z-score is above ``threshold``, short below ``−threshold``, else flat.

    The side is decided on slow steps (and on the first step of an episode) and held in between.
    """

    def __init__(self, threshold: float = 0.5, column: str = "ret_24", name: str = "momentum") -> None:
        if not threshold >= 0:
            raise ValueError(f"threshold: must be >= 0, got {threshold!r}")
        if column not in _COL:
            raise ValueError(f"column: not a regime matrix column: {column!r}")
        self.name, self.threshold, self.column = name, threshold, column
        self.held = _Held()

    def reset(self, n_envs: int) -> None:
        self.held.reset(n_envs)

    def _momentum_side(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        z = momentum_signal(obs, self.column)
        return np.where(z > self.threshold, 1.0, np.where(z < -self.threshold, -1.0, 0.0))

    def act(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        h = self.held
        upd = np.asarray(obs["slow_step"], bool) | h.fresh
        h.side = np.where(upd, self._momentum_side(obs), h.side)
        h.fresh[:] = False
        return actions_for_side(h.side, obs["portfolio"][:, 0])


class RegimeMomentumPolicy(MomentumPolicy):
    """The momentum rule gated by a regime belief: trade only in ``active`` regimes, flat elsewhere.

    Momentum pays where prices trend (the trending regime's drift); in ranging markets it buys tops and
    sells bottoms against the mean reversion, and in volatile or transition spells it mostly pays costs
    and stops. ``regime_fn(obs) -> (n,) int`` is called on slow steps (the regime agent's clock); its
    answer is held in between and reported as ``"regime_pred"``.
    """

    def __init__(
        self,
        regime_fn: RegimeFn,
        name: str,
        active: Sequence[int] = (TRENDING,),
        threshold: float = 0.5,
        column: str = "ret_24",
        needs_labels: bool = False,
    ) -> None:
        super().__init__(threshold, column, name)
        self.regime_fn, self.active = regime_fn, tuple(int(a) for a in active)
        self.needs_labels = needs_labels  # evaluation skips it on markets without regime labels

    def regime(self, obs: dict[str, np.ndarray], update: np.ndarray) -> np.ndarray:
        """The regime belief of every environment; only the entries where ``update`` is set are used."""
        del update
        return np.asarray(self.regime_fn(obs), np.int64)

    def act(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        h = self.held
        upd = np.asarray(obs["slow_step"], bool) | h.fresh
        if upd.any():
            h.regime = np.where(upd, self.regime(obs, upd), h.regime)
            gate = np.isin(h.regime, self.active)
            h.side = np.where(upd, np.where(gate, self._momentum_side(obs), 0.0), h.side)
        h.fresh[:] = False
        out = actions_for_side(h.side, obs["portfolio"][:, 0])
        out["regime_pred"] = h.regime.copy()
        return out


def oracle_policy(name: str = "oracle", **kw: object) -> RegimeMomentumPolicy:
    """The regime-gated momentum rule told the true regime (``obs["regime_label"]``): the upper baseline."""

    def true_regime(obs: dict[str, np.ndarray]) -> np.ndarray:
        lab = np.asarray(obs["regime_label"], np.int64)
        if (lab < 0).any():
            raise ValueError("regime_label: the oracle needs true regime labels (synthetic data)")
        return lab

    return RegimeMomentumPolicy(true_regime, name, needs_labels=True, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# HMM regime classifier: marlops.training.regime_hmm (the training stage fits it too, to label data
# that has no regime labels); re-exported here, where the baseline that uses it lives.


class HMMMomentumPolicy(RegimeMomentumPolicy):
    """The regime-gated momentum rule driven by a fitted :class:`HMMRegimeClassifier`, filtered online.

    On an episode's first step the filter runs over the observation's whole regime window (96 closed
    30-minute bars, all in the past); on every later slow step it advances by the newest row only
    (one forward step), so the belief is ``p(state | every bar seen so far)`` at O(1) per step.
    """

    def __init__(self, classifier: HMMRegimeClassifier, name: str = "hmm_momentum", **kw: object) -> None:
        if classifier.model is None:
            raise ValueError("classifier: fit the HMM before building its policy")
        self.classifier = classifier
        super().__init__(lambda obs: np.zeros(0), name, **kw)  # type: ignore[arg-type]
        self.alpha = np.zeros((0, classifier.n_states))

    def reset(self, n_envs: int) -> None:
        super().reset(n_envs)
        self.alpha = np.full((n_envs, self.classifier.n_states), 1.0 / self.classifier.n_states)

    def regime(self, obs: dict[str, np.ndarray], update: np.ndarray) -> np.ndarray:
        clf, fresh = self.classifier, self.held.fresh
        win = obs["regime"]
        if fresh.any():
            self.alpha[fresh] = clf.filter_proba(win[fresh])[:, -1, :]
        step = update & ~fresh
        if step.any():
            self.alpha[step] = clf.filter_step(self.alpha[step], win[step, -1, :])
        assert clf.state_to_regime is not None
        return clf.state_to_regime[np.argmax(self.alpha, 1)]


def hmm_policy(
    classifier: HMMRegimeClassifier, name: str = "hmm_momentum", **kw: object
) -> HMMMomentumPolicy:
    """:class:`HMMMomentumPolicy` over a fitted classifier."""
    return HMMMomentumPolicy(classifier, name, **kw)


def default_baselines(train: MarketData | Sequence[MarketData], seed: int = 0) -> dict[str, object]:
    """Every baseline of the issue, keyed by name; the HMM is fitted on ``train`` (never the test data)."""
    clf = HMMRegimeClassifier(seed=seed).fit(train)
    return {
        "buy_and_hold": BuyAndHold(),
        "random": RandomPolicy(seed),
        "momentum": MomentumPolicy(),
        "hmm_momentum": hmm_policy(clf),
        "oracle": oracle_policy(),
    }
