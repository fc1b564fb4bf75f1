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
from marlops.market.synthetic import RANGING, TRANSITION, TRENDING, VOLATILE

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
# HMM regime classifier


# Sign-invariant features of the regime matrix row: an up trend and a down trend are the same regime,
# so the HMM sees |returns| and |directional index| rather than signed ones (a Gaussian state cannot
# hold two modes at ±drift).
_ABS = ("ret_6", "ret_24", "di_diff")
_KEEP = ("vol_ratio", "vol_level", "adx", "efficiency", "autocorr", "range")
HMM_FEATURES: tuple[str, ...] = tuple(f"|{c}|" for c in _ABS) + _KEEP


def hmm_features(rows: np.ndarray) -> np.ndarray:
    """(..., 11) regime matrix rows → (..., 9) HMM observations (:data:`HMM_FEATURES`), NaN → 0."""
    r = np.nan_to_num(np.asarray(rows, np.float64))
    return np.concatenate([np.abs(r[..., [_COL[c] for c in _ABS]]), r[..., [_COL[c] for c in _KEEP]]], -1)


def training_rows(data: MarketData, end: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Regime matrix rows of the warm higher bars closed before base bar ``end``, with their labels.

    Returns (rows (H, 11), labels (H,)): row h is the feature row of higher bar h, its label the true
    regime of the base bar that closes it (-1 where unknown).
    """
    end = len(data) if end is None else end
    if end <= data.warm_from:
        raise ValueError(f"end: {end} leaves no warm bar (warm_from {data.warm_from})")
    closes = np.flatnonzero(data.slow_step[:end])
    closes = closes[closes >= data.warm_from]
    if len(closes) == 0:
        raise ValueError("data: no higher bar closes after the warm-up")
    h = data.higher_of[closes]
    return data.regime[h, -1, :], data.regime_label[closes]


@dataclass
class HMMRegimeClassifier:
    """A 4-state Gaussian HMM over :data:`HMM_FEATURES`, states mapped to regimes, decoded causally.

    Fit: features standardized with the training mean/std, ``hmmlearn.hmm.GaussianHMM`` (diagonal
    covariances) fitted by EM on the training sequences. Mapping of states to regimes: by majority vote
    of the training labels over the causally decoded training states when labels exist; otherwise by
    ordering — the state of highest mean ``vol_level`` is volatile, the highest ``efficiency`` of the rest
    trending, the lowest ``efficiency`` of the remaining two ranging, the last one transition.

    Decode: the forward filter ``p(state_t | x_1..x_t)`` with the fitted parameters — past and present
    only, never the smoothed posterior, so a prediction cannot change when the future does.
    """

    n_states: int = 4
    seed: int = 0
    n_iter: int = 100
    restarts: int = 3
    model: object | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    state_to_regime: np.ndarray | None = None
    mapping: str = ""  # "labels" or "ordering"

    def fit(self, datasets: MarketData | Sequence[MarketData], ends: Sequence[int] | None = None):
        """Fit on the warm higher bars of each dataset (before ``ends[i]`` when given); returns self."""
        from hmmlearn.hmm import GaussianHMM

        ds = [datasets] if isinstance(datasets, MarketData) else list(datasets)
        if not ds:
            raise ValueError("datasets: need at least one training market")
        parts = [training_rows(d, None if ends is None else ends[i]) for i, d in enumerate(ds)]
        x = [hmm_features(r) for r, _ in parts]
        lengths = [len(a) for a in x]
        if sum(lengths) < 10 * self.n_states:
            raise ValueError(
                f"datasets: {sum(lengths)} higher bars are too few to fit a {self.n_states}-state HMM"
            )
        allx = np.concatenate(x)
        self.mean, self.std = allx.mean(0), allx.std(0) + 1e-8
        z = (allx - self.mean) / self.std
        best = None
        for k in range(self.restarts):  # EM finds local optima: keep the most likely of a few starts
            m = GaussianHMM(
                self.n_states, covariance_type="diag", n_iter=self.n_iter, random_state=self.seed + k
            )
            m.fit(z, lengths)
            score = m.score(z, lengths)
            if best is None or score > best[0]:
                best = (score, m)
        assert best is not None
        self.model = best[1]
        states = np.concatenate([np.argmax(self.filter_proba(r), 1) for r, _ in parts])
        labels = np.concatenate([lab for _, lab in parts]).astype(np.int64)
        if (labels >= 0).any():
            self.state_to_regime, self.mapping = _map_by_labels(states, labels, self.n_states), "labels"
        else:
            self.state_to_regime, self.mapping = _map_by_ordering(allx, states, self.n_states), "ordering"
        return self

    def _params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.model is None:
            raise ValueError("model: the HMM is not fitted; call fit() first")
        m = self.model
        var = np.diagonal(m.covars_, axis1=1, axis2=2) if m.covars_.ndim == 3 else m.covars_  # type: ignore[attr-defined]
        return m.startprob_, m.transmat_, m.means_, var  # type: ignore[attr-defined]

    def _loglik(self, rows: np.ndarray) -> np.ndarray:
        """Emission log-likelihoods (..., n_states) of regime matrix rows (..., 11)."""
        _, _, means, var = self._params()
        z = (hmm_features(rows) - self.mean) / self.std
        return -0.5 * (np.sum(np.log(2 * np.pi * var), -1) + np.sum((z[..., None, :] - means) ** 2 / var, -1))

    def _update(self, prior: np.ndarray, ll: np.ndarray) -> np.ndarray:
        w = prior * np.exp(ll - ll.max(-1, keepdims=True))
        s = w.sum(-1, keepdims=True)
        return np.where(s > 0, w / np.where(s > 0, s, 1.0), 1.0 / self.n_states)

    def filter_step(self, alpha: np.ndarray, row: np.ndarray) -> np.ndarray:
        """One forward step: filtered probabilities (n, S) after the previous row → after ``row`` (n, 11)."""
        _, trans, _, _ = self._params()
        return self._update(alpha @ trans, self._loglik(row))

    def filter_proba(self, rows: np.ndarray) -> np.ndarray:
        """Filtered state probabilities for regime matrix rows (..., T, 11) → (..., T, n_states).

        ``out[..., t, :]`` depends on ``rows[..., :t+1, :]`` only (the forward algorithm, normalized at
        every step; in log space for the emissions so a far outlier cannot underflow to 0/0).
        """
        start, trans, _, _ = self._params()
        ll = self._loglik(rows)  # (..., T, S)
        out = np.empty(ll.shape)
        alpha = np.broadcast_to(start, (*ll.shape[:-2], self.n_states))
        for t in range(ll.shape[-2]):
            alpha = self._update(alpha if t == 0 else alpha @ trans, ll[..., t, :])
            out[..., t, :] = alpha
        return out

    def predict_states(self, rows: np.ndarray) -> np.ndarray:
        """Most probable HMM state at the last row of each window (..., T, 11) → (...,)."""
        return np.argmax(self.filter_proba(rows)[..., -1, :], -1)

    def predict_regime(self, rows: np.ndarray) -> np.ndarray:
        """Regime (index into REGIME_NAMES) at the last row of each window (..., T, 11) → (...,)."""
        assert self.state_to_regime is not None
        return self.state_to_regime[self.predict_states(rows)]


def _map_by_labels(states: np.ndarray, labels: np.ndarray, n_states: int) -> np.ndarray:
    """Each state → the regime most of its labelled training bars had (unseen states → transition)."""
    out = np.full(n_states, TRANSITION, np.int64)
    ok = labels >= 0
    for s in range(n_states):
        lab = labels[ok & (states == s)]
        if len(lab):
            out[s] = int(np.bincount(lab, minlength=4).argmax())
    return out


def _map_by_ordering(x: np.ndarray, states: np.ndarray, n_states: int) -> np.ndarray:
    """Without labels: volatile = most volatile state, trending = most efficient of the rest, etc."""
    vol_i, eff_i = HMM_FEATURES.index("vol_level"), HMM_FEATURES.index("efficiency")
    vol = np.array(
        [x[states == s, vol_i].mean() if (states == s).any() else -np.inf for s in range(n_states)]
    )
    eff = np.array(
        [x[states == s, eff_i].mean() if (states == s).any() else -np.inf for s in range(n_states)]
    )
    out = np.full(n_states, TRANSITION, np.int64)
    rest = list(range(n_states))
    for regime, score, sign in ((VOLATILE, vol, 1.0), (TRENDING, eff, 1.0), (RANGING, eff, -1.0)):
        if rest:
            s = max(rest, key=lambda k: sign * score[k])
            out[s] = regime
            rest.remove(s)
    return out


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
