"""How good can causal regime detection get on the reference market? The ceiling next to two learners.

The ceiling filter (in three variants), the fitted HMM and a GBM are scored on the same evaluation
markets, at the same steps — every 30-minute close at or after ``warm_from`` — against the true regime
of that step:

- ``ceiling`` — :func:`marlops.market.regime_filter.filter_regimes`, the forward filter that is *told*
  the generator's laws (no fitting), from the closes alone. Reported with two decision rules:
  ``ceiling`` predicts ``argmax p(regime) / prior`` (prior = the stationary regime fractions), the rule
  that maximizes *balanced* accuracy; ``ceiling_argmax`` the plain most-probable regime.
- ``ceiling_volume`` — the same filter also scoring each bar's volume (the tick rate depends on the
  regime and the stochastic vol), decided by ``p / prior``. This is the ceiling for detectors that see
  volume, as the GBM and the regime agent do through the matrix's ``volume_z`` (the HMM's features
  leave volume out).
- ``hmm`` — the project's :class:`~marlops.evaluation.baselines.HMMRegimeClassifier`, fitted on the
  training markets, its forward filter run over each evaluation market's regime-matrix rows from the
  first warm row on (what its online policy sees).
- ``gbm`` — ``sklearn``'s ``HistGradientBoostingClassifier`` with class-balanced sample weights, trained
  on the training markets' 96×11 regime matrices at their warm 30-minute closes. Features: the
  flattened window (1056 values) plus, per column, the mean of the last 6, 24 and 96 rows and the std
  of all 96 (44 summaries that spare the trees from rebuilding them out of single cells), quantile-
  coded on the training rows (63 codes); sklearn's default 100 rounds at learning rate 0.1, no early
  stopping (:class:`GBMRegimeClassifier`).

The numbers are balanced accuracy (mean recall over the regimes present), per-regime recall and the
confusion matrix pooled over the evaluation markets, per-market balanced accuracy, and wall time.
:func:`regime_ceiling_on` computes from given data; :func:`regime_ceiling` builds the reference
markets from seeds first; :func:`ceiling_markdown` renders a result. Nothing here reads or writes files.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from marlops.env.market_env import SYNTHETIC_VOLUME_UNITS, MarketData, synthetic_market_data
from marlops.evaluation.baselines import HMMRegimeClassifier
from marlops.evaluation.metrics import regime_balanced_accuracy, regime_confusion
from marlops.market.matrices import REGIME
from marlops.market.regime_filter import RegimeFilterSettings, decide, filter_regimes
from marlops.market.synthetic import REGIMES, SyntheticMarketConfig

DETECTORS: tuple[str, ...] = ("ceiling", "ceiling_argmax", "ceiling_volume", "hmm", "gbm")


@dataclass(frozen=True)
class DetectorScore:
    """One detector's figures on the evaluation markets (pooled over markets unless stated)."""

    name: str
    balanced_accuracy: float
    recall: tuple[float, ...]
    """Recall per regime id 0..3 (NaN where the regime never occurs)."""
    confusion: np.ndarray
    """(4, 4) counts: rows true regime, columns predicted."""
    per_market: dict[str, float]
    """Balanced accuracy of each evaluation market on its own."""
    seconds: float
    """Wall time of fitting (if any) and predicting on every evaluation market."""


@dataclass(frozen=True)
class RegimeCeilingResult:
    """Scores of every detector in :data:`DETECTORS` on the same scored steps."""

    scores: dict[str, DetectorScore]
    n_steps: int
    """Scored 30-minute closes over all evaluation markets."""
    class_counts: tuple[int, ...]
    """True regime counts of the scored steps (trending, ranging, volatile, transition)."""
    setup: dict[str, object] = field(default_factory=dict)
    """How the result was made (seeds, days, settings), for the report."""


def scored_closes(data: MarketData) -> np.ndarray:
    """Base-bar indices of the 30-minute closes at or after ``warm_from`` that carry a true label."""
    closes = np.flatnonzero(data.slow_step)
    closes = closes[closes >= data.warm_from]
    return closes[data.regime_label[closes] >= 0]


def ceiling_proba(
    data: MarketData,
    config: SyntheticMarketConfig,
    settings: RegimeFilterSettings | None = None,
    with_volume: bool = False,
) -> np.ndarray:
    """Ceiling-filter posterior (n, 4) at each of :func:`scored_closes` (rows known at that bar's close).

    ``with_volume``: score the bars' volumes too (``data.volume`` is in instrument units, the generator's
    sizes times ``SYNTHETIC_VOLUME_UNITS``).
    """
    closes = scored_closes(data)
    volume = data.volume / SYNTHETIC_VOLUME_UNITS if with_volume else None
    return filter_regimes(data.close, data.end_ns, config, settings, volume=volume).at_closes(closes)


def hmm_predict(clf: HMMRegimeClassifier, data: MarketData) -> np.ndarray:
    """The fitted HMM's causal regime at each scored close: one forward pass over the warm rows."""
    closes = scored_closes(data)
    if len(closes) == 0:
        return np.zeros(0, np.int64)
    h = data.higher_of[closes]
    h0 = max(0, int(data.higher_of[data.warm_from]) - REGIME.rows + 1)  # first row of the first warm window
    rows = data.regime[h0 : int(h.max()) + 1, -1, :]  # row h of the regime matrix = higher bar h
    states = np.argmax(clf.filter_proba(rows), -1)
    assert clf.state_to_regime is not None
    return clf.state_to_regime[states[h - h0]]


def gbm_features(windows: np.ndarray) -> np.ndarray:
    """(n, 96, 11) regime windows → (n, 1056 + 44): the flattened window and per-column summaries."""
    w = np.nan_to_num(np.asarray(windows, np.float32))
    summaries = [w[:, -k:, :].mean(1) for k in (6, 24, w.shape[1])] + [w.std(1)]
    return np.concatenate([w.reshape(len(w), -1), *summaries], axis=1)


def _gbm_rows(data: MarketData) -> tuple[np.ndarray, np.ndarray]:
    closes = scored_closes(data)
    return gbm_features(data.regime[data.higher_of[closes]]), data.regime_label[closes].astype(np.int64)


@dataclass
class GBMRegimeClassifier:
    """Class-balanced gradient boosting on :func:`gbm_features` of the regime windows.

    Features are quantile-coded on the training rows first (``n_bins`` codes per feature, unweighted
    quantiles — what the booster's own binning does without weights). Two reasons: with sample
    weights, sklearn 1.9's binner computes weighted percentiles one quantile at a time (about a
    minute and a half for these 1100 features), while a feature with at most ``max_bins`` distinct
    values skips that search; and 63 bins instead of 255 halve the tree-building time with ~4 000
    training rows, where finer bins only add noise.

    ``n_threads`` caps the booster's OpenMP threads (``None``: sklearn's default). It is 1 because on a
    small shared machine (2 cores, other work running) two OpenMP threads were measured ~20× slower
    than one: their barriers spin while the other thread is descheduled.
    """

    seed: int = 0
    max_iter: int = 100  # sklearn's defaults, chosen before looking at any evaluation market
    learning_rate: float = 0.1
    n_bins: int = 63
    n_threads: int | None = 1
    edges: np.ndarray | None = None
    model: object | None = None

    def _codes(self, x: np.ndarray) -> np.ndarray:
        assert self.edges is not None
        out = np.empty(x.shape, np.float32)
        for j in range(x.shape[1]):
            out[:, j] = np.searchsorted(self.edges[:, j], x[:, j], side="right")
        return out

    def fit(self, train: Sequence[MarketData]) -> GBMRegimeClassifier:
        """Fit on the scored closes of every training market; returns self."""
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.utils.class_weight import compute_sample_weight
        from threadpoolctl import threadpool_limits

        if not train:
            raise ValueError("train: need at least one training market")
        parts = [_gbm_rows(d) for d in train]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        if len(np.unique(y)) < 2:
            raise ValueError("train: the training markets' scored closes hold fewer than two regimes")
        self.edges = np.quantile(x, np.linspace(0.0, 1.0, self.n_bins + 1)[1:-1], axis=0)
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_bins=self.n_bins,
            early_stopping=False,
            random_state=self.seed,
        )
        with threadpool_limits(self.n_threads, user_api="openmp"):
            self.model = model.fit(self._codes(x), y, sample_weight=compute_sample_weight("balanced", y))
        return self

    def predict(self, data: MarketData) -> np.ndarray:
        """Regime at each of :func:`scored_closes` of ``data``."""
        from threadpoolctl import threadpool_limits

        if self.model is None:
            raise ValueError("model: the GBM is not fitted; call fit() first")
        x, _ = _gbm_rows(data)
        if len(x) == 0:
            return np.zeros(0, np.int64)
        with threadpool_limits(self.n_threads, user_api="openmp"):
            return np.asarray(self.model.predict(self._codes(x)), np.int64)  # type: ignore[attr-defined]


def score(
    name: str, truth: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray], seconds: float
) -> DetectorScore:
    """Pooled balanced accuracy, recall and confusion, plus each market's balanced accuracy."""
    t = np.concatenate([truth[k] for k in truth])
    p = np.concatenate([pred[k] for k in truth])
    conf = regime_confusion(t, p, len(REGIMES))
    support = conf.sum(1)
    recall = tuple(
        float(conf[i, i] / support[i]) if support[i] else float("nan") for i in range(len(REGIMES))
    )
    per_market = {k: _bal(truth[k], pred[k]) for k in truth}
    return DetectorScore(name, _bal(t, p), recall, conf, per_market, seconds)


def _bal(t: np.ndarray, p: np.ndarray) -> float:
    b = regime_balanced_accuracy(t, p)
    return float("nan") if b is None else b


def regime_ceiling_on(
    train: Sequence[MarketData],
    evals: Mapping[str, MarketData],
    config: SyntheticMarketConfig | None = None,
    settings: RegimeFilterSettings | None = None,
    hmm_restarts: int = 3,
    gbm_max_iter: int = 100,
    seed: int = 0,
) -> RegimeCeilingResult:
    """Score the ceiling filter, the fitted HMM and the GBM on ``evals`` (learners fitted on ``train``).

    ``config`` must be the law the evaluation markets were generated with (default: the reference
    market, which is what :func:`~marlops.env.market_env.synthetic_market_data` generates).
    """
    if not train:
        raise ValueError("train: need at least one training market")
    if not evals:
        raise ValueError("evals: need at least one evaluation market")
    cfg = config if config is not None else SyntheticMarketConfig()
    truth = {k: d.regime_label[scored_closes(d)].astype(np.int64) for k, d in evals.items()}
    if not any(len(v) for v in truth.values()):
        raise ValueError("evals: no labelled 30-minute close after the warm-up")
    prior = cfg.stationary_fractions()
    scores: dict[str, DetectorScore] = {}

    t0 = time.perf_counter()
    proba = {k: ceiling_proba(d, cfg, settings) for k, d in evals.items()}
    secs = time.perf_counter() - t0
    scores["ceiling"] = score("ceiling", truth, {k: decide(p, prior) for k, p in proba.items()}, secs)
    scores["ceiling_argmax"] = score("ceiling_argmax", truth, {k: decide(p) for k, p in proba.items()}, secs)

    t0 = time.perf_counter()
    pred = {k: decide(ceiling_proba(d, cfg, settings, with_volume=True), prior) for k, d in evals.items()}
    scores["ceiling_volume"] = score("ceiling_volume", truth, pred, time.perf_counter() - t0)

    t0 = time.perf_counter()
    clf = HMMRegimeClassifier(seed=seed, restarts=hmm_restarts).fit(list(train))
    pred = {k: hmm_predict(clf, d) for k, d in evals.items()}
    scores["hmm"] = score("hmm", truth, pred, time.perf_counter() - t0)

    t0 = time.perf_counter()
    gbm = GBMRegimeClassifier(seed=seed, max_iter=gbm_max_iter).fit(train)
    pred = {k: gbm.predict(d) for k, d in evals.items()}
    scores["gbm"] = score("gbm", truth, pred, time.perf_counter() - t0)

    allt = np.concatenate(list(truth.values()))
    return RegimeCeilingResult(
        scores=scores,
        n_steps=len(allt),
        class_counts=tuple(int(c) for c in np.bincount(allt, minlength=len(REGIMES))),
        setup={
            "settings": settings or RegimeFilterSettings(),
            "hmm_restarts": hmm_restarts,
            "gbm_max_iter": gbm_max_iter,
            "seed": seed,
        },
    )


def regime_ceiling(
    train_seeds: Sequence[int] = (1001, 1002),
    eval_seeds: Sequence[int] = (2001, 2002, 2003, 2004),
    train_days: float = 45.0,
    eval_days: float = 30.0,
    settings: RegimeFilterSettings | None = None,
    hmm_restarts: int = 3,
    gbm_max_iter: int = 100,
    seed: int = 0,
) -> RegimeCeilingResult:
    """:func:`regime_ceiling_on` over reference synthetic markets built from seeds (train ∩ eval = ∅)."""
    if set(train_seeds) & set(eval_seeds):
        raise ValueError("eval_seeds: must differ from train_seeds")
    train = [synthetic_market_data(s, train_days) for s in train_seeds]
    evals = {f"seed {s}": synthetic_market_data(s, eval_days) for s in eval_seeds}
    res = regime_ceiling_on(train, evals, None, settings, hmm_restarts, gbm_max_iter, seed)
    res.setup.update(
        train_seeds=list(train_seeds), eval_seeds=list(eval_seeds), train_days=train_days, eval_days=eval_days
    )
    return res


def ceiling_markdown(result: RegimeCeilingResult) -> str:
    """The result as a markdown table: balanced accuracy, recall per regime, time; one row per detector."""
    head = ["detector", "balanced acc.", *(f"recall {r}" for r in REGIMES), "per market", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name in DETECTORS:
        s = result.scores[name]
        per = ", ".join(f"{v:.3f}" for v in s.per_market.values())
        cells = [name, f"{s.balanced_accuracy:.3f}", *(f"{r:.3f}" for r in s.recall), per, f"{s.seconds:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    counts = ", ".join(f"{r} {c}" for r, c in zip(REGIMES, result.class_counts, strict=True))
    lines.append("")
    lines.append(f"{result.n_steps} scored 30-minute closes ({counts}).")
    return "\n".join(lines)
