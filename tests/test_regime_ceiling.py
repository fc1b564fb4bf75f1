"""The ceiling regime filter (market/regime_filter.py) and its comparison with the learners."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from marlops.env.market_env import SYNTHETIC_VOLUME_UNITS, MarketData, synthetic_market_data
from marlops.evaluation.baselines import HMMRegimeClassifier
from marlops.evaluation.metrics import regime_balanced_accuracy
from marlops.evaluation.regime_ceiling import (
    DETECTORS,
    ceiling_markdown,
    ceiling_proba,
    hmm_predict,
    regime_ceiling_on,
    scored_closes,
)
from marlops.market.regime_filter import (
    RegimeFilterSettings,
    _regime_states,
    decide,
    filter_regimes,
)
from marlops.market.synthetic import (
    BUCKET_NS,
    STEP_NS,
    SyntheticMarketConfig,
    bucket_closes,
    generate_market,
)

REF = SyntheticMarketConfig()
SMALL = RegimeFilterSettings(sv_bins=5, anchor_steps=24)  # a lighter state space where speed matters


# --------------------------------------------------------------------------------------------------
# fixtures: tiny reference markets (default config; their first 4 days are the matrices' warm-up)


@pytest.fixture(scope="module")
def train() -> MarketData:
    return synthetic_market_data(seed=41, days=12)


@pytest.fixture(scope="module")
def held_out() -> MarketData:
    return synthetic_market_data(seed=42, days=9)


# --------------------------------------------------------------------------------------------------
# the filter


@pytest.mark.parametrize("with_volume", [False, True])
def test_posterior_is_finite_normalized_and_on_the_step_grid(held_out, with_volume) -> None:
    volume = held_out.volume / SYNTHETIC_VOLUME_UNITS if with_volume else None
    post = filter_regimes(held_out.close, held_out.end_ns, volume=volume)
    assert post.proba.shape == (len(post.step_start_ns), 4)
    assert np.all(np.isfinite(post.proba)) and np.all(post.proba >= 0)
    np.testing.assert_allclose(post.proba.sum(1), 1.0, atol=1e-9)
    assert np.isfinite(post.loglik)
    assert np.all(post.step_start_ns % STEP_NS == 0) and np.all(np.diff(post.step_start_ns) == STEP_NS)
    # every row is known at the close of the last bar inside its step
    last = held_out.end_ns[post.bar_index]
    assert np.all((last > post.step_start_ns) & (last <= post.step_start_ns + STEP_NS))
    assert post.bar_index[-1] == len(held_out.close) - 1


def test_filter_is_causal(held_out) -> None:
    volume = held_out.volume / SYNTHETIC_VOLUME_UNITS
    full = filter_regimes(held_out.close, held_out.end_ns, settings=SMALL, volume=volume)
    cut = 1000 + 3  # mid-step: the truncated run ends on a partial step
    known = full.bar_index <= cut
    rng = np.random.default_rng(0)
    tail = len(volume) - cut - 1
    close, vol = held_out.close.copy(), volume.copy()
    close[cut + 1 :] *= np.exp(rng.normal(0.0, 0.01, tail).cumsum())
    vol[cut + 1 :] *= rng.uniform(0.2, 5.0, tail)
    other = filter_regimes(close, held_out.end_ns, settings=SMALL, volume=vol)
    np.testing.assert_allclose(other.proba[known], full.proba[known], rtol=0, atol=1e-12)
    assert not np.allclose(other.proba[~known], full.proba[~known])  # the future did change
    end = slice(0, cut + 1)
    short = filter_regimes(held_out.close[end], held_out.end_ns[end], settings=SMALL, volume=volume[end])
    n = int(known.sum())
    np.testing.assert_allclose(short.proba[:n], full.proba[:n], rtol=0, atol=1e-12)


def test_chain_reproduces_the_generators_regime_mix() -> None:
    """The stationary law of the filter's semi-Markov chain gives the config's long-run fractions."""
    for st in (RegimeFilterSettings(), RegimeFilterSettings(drift_bins=2, anchor_steps=0)):
        rs = _regime_states(REF, st)
        mix = np.bincount(rs.regime, weights=rs.init, minlength=4)
        np.testing.assert_allclose(mix, REF.stationary_fractions(), atol=1e-9)


def test_filter_reads_an_easy_market_almost_perfectly() -> None:
    """With well separated laws (a non-default config) the told filter must nearly always be right."""
    easy = dataclasses.replace(REF, vol=(0.4, 0.1, 1.6), trend_drift_per_day=0.4, sv_std=0.1)
    m = generate_market(days=6, seed=3, config=easy)
    close = bucket_closes(m).to_numpy()
    end = m.labels["start"].to_numpy() + BUCKET_NS
    post = filter_regimes(close, end, config=easy, settings=SMALL)
    truth = m.labels_for(STEP_NS)["regime"].to_numpy()
    pure = truth[48:] != 3  # after a day of history, on pure regimes (transitions are blends)
    pred = post.predict()[48:]
    assert np.mean(pred[pure] == truth[48:][pure]) > 0.9


def test_filter_handles_gaps_in_the_bars(held_out) -> None:
    keep = np.ones(len(held_out.close), bool)
    keep[200:230] = False  # five missing 30-minute steps
    keep[500] = False
    post = filter_regimes(held_out.close[keep], held_out.end_ns[keep], settings=SMALL)
    np.testing.assert_allclose(post.proba.sum(1), 1.0, atol=1e-9)
    assert len(post.step_start_ns) == len(np.unique((held_out.end_ns[keep] - 1) // STEP_NS))


def test_decision_rule_divides_by_the_prior() -> None:
    p = np.array([[0.5, 0.3, 0.1, 0.1], [0.2, 0.7, 0.05, 0.05]])
    prior = np.array([0.35, 0.45, 0.11, 0.09])
    assert decide(p).tolist() == [0, 1]
    assert decide(p, prior).tolist() == [0, 1]
    assert decide(np.array([0.4, 0.4, 0.15, 0.05]), prior) == 2  # 0.15 / 0.11 beats 0.4 / 0.35
    with pytest.raises(ValueError, match="prior"):
        decide(p, np.array([0.5, 0.5, 0.0, 0.0]))


@pytest.mark.parametrize(
    ("close", "end", "name"),
    [
        (lambda c: np.where(np.arange(len(c)) == 5, np.nan, c), lambda e: e, "close"),
        (lambda c: -c, lambda e: e, "close"),
        (lambda c: c[:1], lambda e: e[:1], "close"),
        (lambda c: c, lambda e: e[:-1], "end_ns"),
        (lambda c: c, lambda e: np.where(np.arange(len(e)) == 7, e[6], e), "end_ns"),
        (lambda c: c, lambda e: e + 1, "end_ns"),
        (lambda c: c, lambda e: e.astype(np.float64), "end_ns"),
    ],
)
def test_bad_input_names_the_argument(held_out, close, end, name) -> None:
    c, e = held_out.close[:300], held_out.end_ns[:300]
    with pytest.raises(ValueError, match=name):
        filter_regimes(close(c), end(e))


@pytest.mark.parametrize("volume", [np.ones(299), np.full(300, -1.0), np.full(300, np.inf)])
def test_bad_volume_is_refused(held_out, volume) -> None:
    with pytest.raises(ValueError, match="volume"):
        filter_regimes(held_out.close[:300], held_out.end_ns[:300], volume=volume)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="sv_bins"):
        RegimeFilterSettings(sv_bins=0)
    with pytest.raises(ValueError, match="sv_span"):
        RegimeFilterSettings(sv_span=float("nan"))


# --------------------------------------------------------------------------------------------------
# against the learners


def test_ceiling_filter_beats_the_fitted_hmm(train, held_out) -> None:
    truth = held_out.regime_label[scored_closes(held_out)]
    ceiling = decide(ceiling_proba(held_out, REF), REF.stationary_fractions())
    hmm = hmm_predict(HMMRegimeClassifier(seed=0, restarts=1).fit(train), held_out)
    assert len(truth) > 200 and len(set(truth.tolist())) == 4
    b_ceiling, b_hmm = regime_balanced_accuracy(truth, ceiling), regime_balanced_accuracy(truth, hmm)
    assert b_ceiling is not None and b_hmm is not None
    assert b_ceiling > b_hmm


def test_comparison_runs_and_is_well_formed(train, held_out) -> None:
    res = regime_ceiling_on([train], {"held out": held_out}, settings=SMALL, hmm_restarts=1, gbm_max_iter=5)
    n = len(scored_closes(held_out))
    assert res.n_steps == n and sum(res.class_counts) == n
    assert set(res.scores) == set(DETECTORS)
    for s in res.scores.values():
        assert 0.0 <= s.balanced_accuracy <= 1.0
        assert len(s.recall) == 4 and s.confusion.shape == (4, 4) and s.confusion.sum() == n
        assert s.confusion.sum(1).tolist() == list(res.class_counts)
        assert set(s.per_market) == {"held out"} and s.seconds >= 0
    table = ceiling_markdown(res)
    assert all(f"| {d} |" in table for d in DETECTORS) and f"{n} scored" in table
    with pytest.raises(ValueError, match="train"):
        regime_ceiling_on([], {"held out": held_out})
