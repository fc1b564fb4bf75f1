"""A causal Gaussian-HMM regime classifier over the regime matrix's rows (no labels needed to fit it).

Used twice: by the evaluation's ``hmm_momentum`` baseline (:mod:`marlops.evaluation.baselines`), and by the
training's ``hmm`` regime targets (:mod:`marlops.training.regime_targets`), which label a user's history that
carries no regime labels. Decoding is the forward filter only — ``p(state_t | x_1..x_t)`` — so what it says
at a bar never changes when later bars do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from marlops.env.market_env import MarketData
from marlops.market.features import REGIME_COLUMNS
from marlops.market.synthetic import RANGING, TRANSITION, TRENDING, VOLATILE

_COL = {c.name: i for i, c in enumerate(REGIME_COLUMNS)}


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
