"""The ceiling filter: a causal regime filter that knows the synthetic market's true laws.

A fitted detector (an HMM, a supervised classifier, the regime agent) has to *learn* what the
regimes look like; this filter is *told*: it takes the :class:`SyntheticMarketConfig` the market was
generated with and runs an exact-as-affordable forward filter over the generator's own hidden state.
Its balanced accuracy on the reference market is therefore an estimate of the best any causal
detector can reach from 5-minute closes (and, with ``volume``, from closes and volumes) — the number
to hold learned detectors against, instead of an unreachable 1.0. It is an estimate, not a bound:
the filter is Bayes-optimal only up to the approximations listed below, and any score on a finite
market carries sampling noise.

Hidden state, per 30-minute step (the regime grid), a product of

- a **regime state** that makes the generator's semi-Markov switching exact:
  pure trending split by drift sign (and, optionally, by drift magnitude bin), pure ranging, pure
  volatile, and every transition state ``(from, to, L, k)`` — a hand-over of length ``L`` (uniform in
  ``transition_steps_min..max``) at its ``k``-th step, whose parameters blend the neighbours with
  ``w = k / (L + 1)``. A pure segment ends with probability ``1 / (2 · mean_duration_hours)`` per
  step, the next pure regime comes from ``switch_probs`` (a new trend's sign is a fair coin), a
  transition runs its ``L`` steps and then hands over. Pure ranging is further split by its age
  (steps since its anchor was set, up to ``anchor_steps``; see the OU below);
- a **stochastic-volatility level**: the log-vol OU discretized on ``sv_bins`` points over
  ``± sv_span`` stationary standard deviations (Tauchen), with its 30-minute transition matrix, so a
  vol level is judged against the SV rather than against a fixed regime level.

Emission of a step: the log-likelihood of its 5-minute close-to-close log returns. Each return is
``drift + OU pull + diffusion + jumps + tick noise``: drift per bucket (blended in transitions),
diffusive variance = regime variance (blended; × ``transition_vol_mult`` in transitions) × SV factor²
× the deterministic seasonal vol factor² of the bucket (``_activity_week`` — the filter reads the
clock from the bars' end times), jumps as a two-component mixture (none / one jump of the blended
size in the bucket), and the variance of the microstructure noise and price rounding of the two
closes the return joins. With ``volume``, each bar's traded volume is scored as well: its tick count
is gamma–Poisson with a rate that follows the clock (activity), the regime's tick multiplier (blended
in transitions) and the SV level, and its sizes are lognormal with a clock-dependent median.

Approximations (everything else follows the generator):

1. **SV is constant within a 30-minute step** and moves between steps by the Tauchen matrix of the
   6-bucket AR(1) coefficient; the discretization itself (``sv_bins`` levels, tails beyond
   ``sv_span`` folded into the end points) is the other approximation of the SV.
2. **Drift magnitude**: a trend's |drift| is ``trend_drift_per_day × U(1 ± jitter)``; the filter uses
   ``drift_bins`` equally spaced magnitudes (the midpoints of equal-width slices of that uniform
   range; 1 = the mean magnitude only).
3. **Ranging OU**: the anchor is the log price where the ranging segment (or a hand-over *into*
   ranging) began. Transition states into ranging know their age ``k - 1``, and pure ranging is split
   into ages ``0 .. anchor_steps - 1``, so for those the anchor is the observed log close at that
   step boundary (exact up to tick noise) and the pull ``-(1 - e^{-κΔ})·(y - anchor)`` enters the
   return's mean. Pure ranging older than ``anchor_steps`` steps, and hand-overs *out of* ranging
   (whose anchor is the old segment's), drop the pull: they are modelled as driftless diffusion.
4. **Ticks**: a bar's close is treated as the latent log price at the bucket end plus i.i.d. noise
   (tick noise and rounding variance at the close's price); the exact timing of the last tick, the
   MA(1) correlation the shared close induces between neighbouring returns, and the rare empty
   bucket (whose close is carried forward) are ignored. A return spanning ``n`` buckets (a gap in the
   bars) gets ``n`` buckets' drift and variance with the parameters of its last bucket.
5. **At most one jump per bucket** (the two-jump probability is below 1e-4 per bucket).
6. **Start**: the first step starts from the chain's stationary law; an anchor that would lie before
   the first bar is taken as the first close (for the generator's own start this is exact).
7. **Volume** (only with ``volume``): given the bucket's gamma rate multiplier, the sum of the
   lognormal sizes is scored as a lognormal with the sum's mean and variance; the gamma multiplier is
   integrated out by Gauss–Laguerre quadrature; a bar without trades gets the exact probability of
   no tick. The tick rate uses the SV level of the step (approximation 1 again).

Cost: the emissions are computed in vectorized chunks of steps (float32), the recursion is one
sparse matrix product per 30-minute step; a year of 5-minute bars takes about 3 s on a laptop-class
CPU core (about 5 s with volume).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.special import ndtr, roots_genlaguerre

from marlops.market.synthetic import (
    BUCKET_NS,
    BUCKETS_PER_DAY,
    BUCKETS_PER_STEP,
    BUCKETS_PER_YEAR,
    DAY_NS,
    NS_PER_SECOND,
    RANGING,
    STEP_NS,
    TRANSITION,
    TRENDING,
    VOLATILE,
    SyntheticMarketConfig,
    _activity_week,
)

N_REGIMES = 4
_DT = 1.0 / BUCKETS_PER_YEAR  # one 5-minute bucket in years
_GAMMA_NODES = 8  # quadrature nodes over the gamma rate multiplier of a bucket's tick count


@dataclass(frozen=True)
class RegimeFilterSettings:
    """Resolution of the filter's state space (the market's laws come from the config, not from here)."""

    sv_bins: int = 7
    """Number of discretized log-vol levels (1 = ignore stochastic volatility)."""
    sv_span: float = 2.5
    """Half-width of the log-vol grid in stationary standard deviations."""
    drift_bins: int = 1
    """Trend drift magnitudes per sign (1 = the mean magnitude)."""
    anchor_steps: int = 96
    """Ranging ages (30-minute steps) tracked with their exact anchor; older ranging drops the OU pull."""
    chunk_steps: int = 16
    """Steps per vectorized emission chunk (memory ~ chunk × 6 × states × sv_bins float32s)."""

    def __post_init__(self) -> None:
        for name, lo in (("sv_bins", 1), ("drift_bins", 1), ("anchor_steps", 0), ("chunk_steps", 1)):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= lo):
                raise ValueError(f"{name}: must be an int >= {lo}, got {v!r}")
        if not (math.isfinite(self.sv_span) and self.sv_span > 0):
            raise ValueError(f"sv_span: must be finite and > 0, got {self.sv_span!r}")


@dataclass(frozen=True)
class RegimePosterior:
    """Filtered regime probabilities, one row per 30-minute step that has at least one bar.

    ``proba[h]`` = p(regime of step h | every bar up to ``bar_index[h]``), the last bar of step h; for a
    complete step that bar closes the 30-minute bar, so the row is what a decision at that close knows.
    """

    step_start_ns: np.ndarray
    """(H,) int64 start of each step (ns UTC)."""
    bar_index: np.ndarray
    """(H,) index of the last input bar inside the step (the bar at whose close the row is known)."""
    proba: np.ndarray
    """(H, 4) posterior over (trending, ranging, volatile, transition); rows sum to 1."""
    loglik: float
    """log p(all returns) under the filter's model (a diagnostic: higher = the model fits better)."""

    def predict(self, prior: np.ndarray | None = None) -> np.ndarray:
        """Regime ids: argmax of ``proba / prior`` (``prior=None``: plain argmax).

        Dividing by the class prior is the decision rule for *balanced* accuracy: that score averages
        recall per class, so a rare class (volatile, transition) is worth as much as a common one.
        """
        return decide(self.proba, prior)

    def at_closes(self, bars: np.ndarray) -> np.ndarray:
        """The rows known at the close of base bars ``bars`` (each the last bar of its step), (n, 4)."""
        b = np.asarray(bars, np.int64)
        rows = np.searchsorted(self.bar_index, b)
        ok = rows < len(self.bar_index)
        if not (ok.all() and np.array_equal(self.bar_index[rows], b)):
            raise ValueError("bars: each must be the last input bar of a 30-minute step")
        return self.proba[rows]


def decide(proba: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """argmax of ``proba / prior`` over the last axis (plain argmax without a prior)."""
    p = np.asarray(proba, np.float64)
    if prior is None:
        return np.argmax(p, -1)
    pr = np.asarray(prior, np.float64)
    if pr.shape != p.shape[-1:] or not np.all(pr > 0):
        raise ValueError(f"prior: needs {p.shape[-1]} positive entries, got {pr!r}")
    return np.argmax(p / pr, -1)


# --------------------------------------------------------------------------------------------------
# regime states


@dataclass(frozen=True)
class _RegimeStates:
    """The regime part of the hidden state: per-state laws of one 5-minute bucket and the chain."""

    regime: np.ndarray  # (S,) reported regime id 0..3
    drift: np.ndarray  # (S,) log drift per bucket
    var: np.ndarray  # (S,) diffusive variance per bucket at SV factor 1 and seasonal factor 1
    pull: np.ndarray  # (S,) 1 - exp(-κΔ): share of the anchor deviation removed per bucket
    anchor_lag: np.ndarray  # (S,) int: the anchor is the log price at the start of step s - lag (-1: none)
    jump_p: np.ndarray  # (S,) probability of a jump in a bucket
    jump_var: np.ndarray  # (S,) variance of a jump
    tick_mult: np.ndarray  # (S,) tick-rate multiplier (blended in transitions)
    trans_t: sparse.csr_matrix  # (S, S) transposed transition matrix: pred = trans_t @ alpha
    init: np.ndarray  # (S,) stationary law of the chain


def _regime_states(cfg: SyntheticMarketConfig, st: RegimeFilterSettings) -> _RegimeStates:
    """Enumerate the regime states and their exact semi-Markov transition matrix."""
    vol2 = np.asarray(cfg.vol, np.float64) ** 2 * _DT
    jump_p = 1.0 - np.exp(-np.asarray(cfg.jumps_per_day, np.float64) / BUCKETS_PER_DAY)
    jump_std = np.asarray(cfg.jump_std, np.float64)
    tick = np.asarray(cfg.tick_rate_mult, np.float64)
    kappa = math.log(2.0) / (cfg.range_half_life_hours / (24.0 * 365.0))  # per year, as the generator
    p_end = [1.0 / (2.0 * h) for h in cfg.mean_duration_hours]
    switch = np.asarray(cfg.switch_probs, np.float64)
    lengths = range(cfg.transition_steps_min, cfg.transition_steps_max + 1)
    n_len = len(lengths)
    jit = cfg.trend_drift_jitter
    m = st.drift_bins
    mags = cfg.trend_drift_per_day * (1.0 + jit * ((2.0 * np.arange(m) + 1.0) / m - 1.0))

    # Pure identities: (type, drift per day, share of the type's entries).
    pure: list[tuple[int, float, float]] = [
        (TRENDING, sign * mag, 0.5 / m) for sign in (1.0, -1.0) for mag in mags
    ]
    pure += [(RANGING, 0.0, 1.0), (VOLATILE, 0.0, 1.0)]

    rows: list[tuple[int, float, float, float, int, float, float, float]] = []
    edges: list[tuple[int, int, float]] = []

    def add(
        regime: int, drift_day: float, var: float, pull: float, lag: int, jp: float, jstd: float, ticks: float
    ) -> int:
        rows.append((regime, drift_day / BUCKETS_PER_DAY, var, pull, lag, jp, jstd**2, ticks))
        return len(rows) - 1

    # Entry state of each pure identity and the states whose segment end leads out of it.
    entry: dict[int, int] = {}
    exits: dict[int, list[int]] = {}
    for i, (typ, d, _) in enumerate(pure):
        if typ == RANGING and st.anchor_steps > 0:
            pull = 1.0 - math.exp(-kappa * _DT)
            ages = [
                add(RANGING, 0.0, vol2[RANGING], pull, a, jump_p[RANGING], jump_std[RANGING], tick[RANGING])
                for a in range(st.anchor_steps)
            ]
            old = add(RANGING, 0.0, vol2[RANGING], 0.0, -1, jump_p[RANGING], jump_std[RANGING], tick[RANGING])
            stay = 1.0 - p_end[typ]
            for a, b in zip(ages, [*ages[1:], old], strict=True):
                edges.append((a, b, stay))
            edges.append((old, old, stay))
            entry[i], exits[i] = ages[0], [*ages, old]
        else:
            s = add(typ, d, vol2[typ], 0.0, -1, jump_p[typ], jump_std[typ], tick[typ])
            edges.append((s, s, 1.0 - p_end[typ]))
            entry[i], exits[i] = s, [s]

    # Hand-overs a -> b of every length, each step its own state; the last step enters b.
    for i, (ta, da, _) in enumerate(pure):
        for j, (tb, db, share) in enumerate(pure):
            if ta == tb or switch[ta, tb] <= 0:
                continue
            p_start = p_end[ta] * switch[ta, tb] * share / n_len
            for length in lengths:
                prev = -1
                for k in range(1, length + 1):
                    w = k / (length + 1)
                    var = ((1 - w) * vol2[ta] + w * vol2[tb]) * cfg.transition_vol_mult**2
                    into_range = tb == RANGING and st.anchor_steps > 0
                    pull = 1.0 - math.exp(-w * kappa * _DT) if into_range else 0.0
                    s = add(
                        TRANSITION,
                        (1 - w) * da + w * db,
                        var,
                        pull,
                        k - 1 if into_range else -1,
                        (1 - w) * jump_p[ta] + w * jump_p[tb],
                        (1 - w) * jump_std[ta] + w * jump_std[tb],
                        (1 - w) * tick[ta] + w * tick[tb],
                    )
                    if prev < 0:
                        edges.extend((e, s, p_start) for e in exits[i])
                    else:
                        edges.append((prev, s, 1.0))
                    prev = s
                edges.append((prev, entry[j], 1.0))

    n = len(rows)
    src, dst, p = (np.asarray(x) for x in zip(*edges, strict=True))
    trans = sparse.csr_matrix((p.astype(np.float64), (src.astype(np.int64), dst.astype(np.int64))), (n, n))
    if not np.allclose(np.asarray(trans.sum(1)).ravel(), 1.0):
        raise AssertionError("regime chain: rows do not sum to 1")  # a bug in the enumeration
    cols = list(zip(*rows, strict=True))
    return _RegimeStates(
        regime=np.asarray(cols[0], np.int64),
        drift=np.asarray(cols[1], np.float64),
        var=np.asarray(cols[2], np.float64),
        pull=np.asarray(cols[3], np.float64),
        anchor_lag=np.asarray(cols[4], np.int64),
        jump_p=np.asarray(cols[5], np.float64),
        jump_var=np.asarray(cols[6], np.float64),
        tick_mult=np.asarray(cols[7], np.float64),
        trans_t=trans.T.tocsr(),
        init=_stationary(trans),
    )


def _stationary(trans: sparse.csr_matrix) -> np.ndarray:
    """Stationary law of a row-stochastic chain: solve pi (P - I) = 0 with sum(pi) = 1."""
    from scipy.sparse.linalg import spsolve

    n = trans.shape[0]
    a = (trans.T - sparse.identity(n)).tolil()
    a[n - 1, :] = np.ones(n)
    b = np.zeros(n)
    b[-1] = 1.0
    pi = np.clip(spsolve(a.tocsc(), b), 0.0, None)
    return pi / pi.sum()


@dataclass(frozen=True)
class _SV:
    """The discretized log-vol x: what each level does to the diffusion and to the tick rate."""

    var_mult: np.ndarray  # (K,) diffusive variance factor: the generator's vol factor exp(x - s²), squared
    rate_mult: np.ndarray  # (K,) tick-rate factor: factor^η normalized to mean 1, = exp(ηx - η²s²/2)
    trans: np.ndarray  # (K, K) transition over one 30-minute step
    init: np.ndarray  # (K,) stationary law


def _sv_grid(cfg: SyntheticMarketConfig, st: RegimeFilterSettings) -> _SV:
    """Tauchen discretization of the log-vol OU over one 30-minute step."""
    k, s, eta = st.sv_bins, cfg.sv_std, cfg.tick_vol_elasticity
    if k == 1 or s == 0:
        return _SV(np.ones(1), np.ones(1), np.ones((1, 1)), np.ones(1))
    phi = 0.5 ** (BUCKET_NS / (cfg.sv_half_life_hours * 3600 * NS_PER_SECOND))
    rho = phi**BUCKETS_PER_STEP
    x = np.linspace(-st.sv_span * s, st.sv_span * s, k)
    half = (x[1] - x[0]) / 2.0
    innov = s * math.sqrt(1.0 - rho * rho)
    upper = ndtr((x[None, :] + half - rho * x[:, None]) / innov)
    lower = ndtr((x[None, :] - half - rho * x[:, None]) / innov)
    upper[:, -1], lower[:, 0] = 1.0, 0.0
    trans = upper - lower
    edges = np.concatenate(([-np.inf], (x[:-1] + x[1:]) / 2.0, [np.inf]))
    init = np.diff(ndtr(edges / s))
    return _SV(
        var_mult=np.exp(2.0 * (x - s * s)),
        rate_mult=np.exp(eta * x - eta * eta * s * s / 2.0),
        trans=trans / trans.sum(1, keepdims=True),
        init=init / init.sum(),
    )


# --------------------------------------------------------------------------------------------------
# observations on the 5-minute grid


@dataclass(frozen=True)
class _Grid:
    """Returns on a complete grid of 5-minute buckets, whole 30-minute steps (missing ones masked)."""

    first_step: int  # absolute step number (start_ns // STEP_NS) of row 0
    ret: np.ndarray  # (n_steps, 6) log return ending in the bucket (0 where missing)
    ok: np.ndarray  # (n_steps, 6) bool: a return ends in this bucket
    span: np.ndarray  # (n_steps, 6) number of buckets the return covers
    y_prev: np.ndarray  # (n_steps, 6) log close the return starts from
    season2: np.ndarray  # (n_steps, 6) deterministic seasonal variance factor of the bucket
    noise: np.ndarray  # (n_steps, 6) variance of tick noise + rounding of the return
    y_step: np.ndarray  # (n_steps,) log close at each step start (the anchor if a segment starts there)
    last_bar: np.ndarray  # (n_steps,) index of the last bar in the step (-1: none)
    # volume channel (None without volumes): per bucket
    vol_pos: np.ndarray | None = None  # bool: a bar with volume > 0 closes here
    vol_zero: np.ndarray | None = None  # bool: a bar with no trades closes here
    log_volume: np.ndarray | None = None  # log of the bar's volume (0 where not vol_pos)
    log_rate: np.ndarray | None = None  # log mean tick count at regime multiplier 1 and SV factor 1
    log_size: np.ndarray | None = None  # log mean trade size


def _validate_volume(volume: np.ndarray, n: int) -> np.ndarray:
    v = np.asarray(volume, dtype=np.float64)
    if v.shape != (n,):
        raise ValueError(f"volume: shape {v.shape} does not match close ({n},)")
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError("volume: every volume must be finite and >= 0")
    return v


def _validate(close: np.ndarray, end_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(close, dtype=np.float64)
    e = np.asarray(end_ns)
    if c.ndim != 1 or len(c) < 2:
        raise ValueError(f"close: need a 1-D array of at least 2 closes, got shape {c.shape}")
    if not np.all(np.isfinite(c)) or not np.all(c > 0):
        raise ValueError("close: every close must be finite and > 0")
    if e.shape != c.shape:
        raise ValueError(f"end_ns: shape {e.shape} does not match close {c.shape}")
    if not np.issubdtype(e.dtype, np.integer):
        raise ValueError(f"end_ns: must be integer nanoseconds, got dtype {e.dtype}")
    e = e.astype(np.int64)
    if np.any(np.diff(e) <= 0):
        raise ValueError("end_ns: bar end times must be strictly increasing")
    if np.any(e % BUCKET_NS):
        raise ValueError("end_ns: bars must end on the 5-minute grid (the synthetic market's buckets)")
    return c, e


def _grid(
    close: np.ndarray, end_ns: np.ndarray, cfg: SyntheticMarketConfig, volume: np.ndarray | None = None
) -> _Grid:
    bucket = end_ns // BUCKET_NS - 1  # absolute number of the bucket each bar closes
    first_step = int(bucket[0] // BUCKETS_PER_STEP)
    rel = bucket - first_step * BUCKETS_PER_STEP
    n_steps = int(rel[-1] // BUCKETS_PER_STEP) + 1
    nb = n_steps * BUCKETS_PER_STEP
    logc = np.log(close)

    ret, ok, span = np.zeros(nb), np.zeros(nb, bool), np.ones(nb)
    y_prev = np.full(nb, logc[0])
    ret[rel[1:]] = np.diff(logc)
    ok[rel[1:]] = True
    span[rel[1:]] = np.diff(rel)
    y_prev[rel[1:]] = logc[:-1]

    # Log close at each bucket end, carried forward (and back to the first close before it).
    idx = np.zeros(nb, np.int64)
    idx[rel] = np.arange(len(close))
    idx = np.maximum.accumulate(idx)
    y_end = logc[idx]
    y_step = np.concatenate(([logc[0]], y_end[BUCKETS_PER_STEP - 1 : -1 : BUCKETS_PER_STEP]))

    start = (first_step * BUCKETS_PER_STEP + np.arange(nb)) * BUCKET_NS
    dow = (start // DAY_NS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0 (as the generator)
    week_idx = dow * BUCKETS_PER_DAY + (start % DAY_NS) // BUCKET_NS
    activity = _activity_week(cfg)
    week_vol = activity**cfg.season_vol_elasticity
    season = (week_vol / np.sqrt(np.mean(week_vol**2)))[week_idx]

    tick_var = (cfg.tick_noise_bps * 1e-4) ** 2
    price = np.exp(y_end)
    round_var = (cfg.price_tick / price) ** 2 / 12.0 if cfg.price_tick > 0 else np.zeros(nb)
    close_var = tick_var + round_var
    noise = close_var + np.concatenate(([close_var[0]], close_var[:-1]))

    last_bar = np.full(n_steps, -1, np.int64)
    last_bar[rel // BUCKETS_PER_STEP] = np.arange(len(close))  # later bars overwrite earlier ones

    def shaped(x: np.ndarray) -> np.ndarray:
        return x.reshape(n_steps, BUCKETS_PER_STEP)

    vol: dict[str, np.ndarray] = {}
    if volume is not None:
        pos, zero, logv = np.zeros(nb, bool), np.zeros(nb, bool), np.zeros(nb)
        pos[rel], zero[rel] = volume > 0, volume == 0
        logv[rel[volume > 0]] = np.log(volume[volume > 0])
        log_act = np.log(activity[week_idx])
        vol = {
            "vol_pos": shaped(pos),
            "vol_zero": shaped(zero),
            "log_volume": shaped(logv),
            "log_rate": shaped(math.log(cfg.ticks_per_bar) + log_act),
            "log_size": shaped(
                math.log(cfg.size_median) + cfg.size_season_elasticity * log_act + cfg.size_sigma**2 / 2
            ),
        }

    return _Grid(
        first_step=first_step,
        ret=shaped(ret),
        ok=shaped(ok),
        span=shaped(span),
        y_prev=shaped(y_prev),
        season2=shaped(season**2),
        noise=shaped(noise),
        y_step=y_step,
        last_bar=last_bar,
        **vol,
    )


def _emissions(
    g: _Grid, rs: _RegimeStates, sv: _SV, cfg: SyntheticMarketConfig, lo: int, hi: int
) -> np.ndarray:
    """log p(returns of step s | SV level, regime state) for steps lo..hi-1 → (hi - lo, K, S), float32.

    Up to the constant -½·log(2π) per return (the caller adds it to the log-likelihood). float32: the
    terms are O(10) per return and a step sums six, so single precision loses nothing that matters
    and its vectorized exp/log run several times faster than float64's. The regime state is the last
    (contiguous) axis, so every broadcast runs over long inner loops.
    """
    f4 = np.float32
    sl = slice(lo, hi)
    n = g.span[sl, :, None]
    # Anchor of each (step, state); states without a pull have pull = 0, so their anchor is irrelevant.
    steps = np.arange(lo, hi)[:, None]
    anchor = g.y_step[np.clip(steps - np.maximum(rs.anchor_lag, 0)[None, :], 0, None)]  # (C, S)
    mean = n * rs.drift - rs.pull * (g.y_prev[sl, :, None] - anchor[:, None, :])  # (C, 6, S)
    dev2 = ((g.ret[sl, :, None] - mean) ** 2).astype(f4)[:, :, None, :]  # (C, 6, 1, S)
    v0 = (g.season2[sl, :, None] * n * rs.var).astype(f4)[:, :, None, :] * sv.var_mult.astype(f4)[:, None]
    v0 += g.noise[sl, :, None, None].astype(f4)  # (C, 6, K, S)
    v1 = v0 + (n * rs.jump_var).astype(f4)[:, :, None, :]
    pj = 1.0 - (1.0 - rs.jump_p) ** n
    l0 = np.log(v0)
    l0 += np.divide(dev2, v0, out=v0)
    l0 *= f4(-0.5)
    l0 += np.log1p(-pj).astype(f4)[:, :, None, :]
    l1 = np.log(v1)
    l1 += np.divide(dev2, v1, out=v1)
    l1 *= f4(-0.5)
    l1 += np.log(pj).astype(f4)[:, :, None, :]
    # log(e^l0 + e^l1) = max + log1p(e^-|l0 - l1|): stable, and far cheaper than np.logaddexp.
    top = np.maximum(l0, l1)
    np.subtract(l0, l1, out=l0)
    np.abs(l0, out=l0)
    np.negative(l0, out=l0)
    np.exp(l0, out=l0)
    np.log1p(l0, out=l0)
    top += l0
    top *= g.ok[sl, :, None, None]
    out = top.sum(1)
    if g.log_volume is not None:
        out += _volume_loglik(g, rs, sv, cfg, sl)
    return out


def _volume_loglik(g: _Grid, rs: _RegimeStates, sv: _SV, cfg: SyntheticMarketConfig, sl: slice) -> np.ndarray:
    """log p(the step's bar volumes | SV level, regime state) → (C, K, S).

    The generator's bucket volume is a compound sum: N ~ Poisson(λ·G) trades, G ~ Gamma(shape, 1/shape),
    lognormal sizes. Given G = g the volume is scored as a lognormal with the compound sum's mean
    λ·g·E[s] and squared CV e^{σ²}/(λ·g); G is integrated out by generalized Gauss–Laguerre quadrature
    (:data:`_GAMMA_NODES` nodes). A bar with no trades scores the exact P(N = 0) = (1 + λ/shape)^(-shape).
    (The -log V - ½·log 2π of each volume is left to the caller.) The law depends on the regime state only
    through its tick-rate multiplier, so it is computed once per distinct multiplier and gathered.
    """
    assert g.log_rate is not None and g.log_size is not None and g.vol_pos is not None
    assert g.vol_zero is not None and g.log_volume is not None
    f4 = np.float32
    mult, inverse = np.unique(np.round(rs.tick_mult, 12), return_inverse=True)
    log_lam = g.log_rate[sl, :, None, None] + np.log(sv.rate_mult)[:, None] + np.log(mult)  # (C, 6, K, U)
    shape = cfg.tick_count_shape
    if math.isfinite(shape):
        x, w = roots_genlaguerre(_GAMMA_NODES, shape - 1.0)
        log_g, log_w = np.log(x / shape), np.log(w / w.sum())
    else:
        log_g, log_w = np.zeros(1), np.zeros(1)
    nodes = (slice(None), None, None, None, None)
    lam_g = log_lam.astype(f4) + log_g.astype(f4)[nodes]  # (nodes, C, 6, K, U)
    s2 = np.log1p(np.exp(f4(cfg.size_sigma**2) - lam_g))
    dev = (g.log_volume[sl] - g.log_size[sl]).astype(f4)[:, :, None, None] - lam_g
    dev += s2 / 2
    terms = np.log(s2)
    terms += dev * dev / s2
    terms *= f4(-0.5)
    terms += log_w.astype(f4)[nodes]
    top = terms.max(0)
    terms -= top
    pos = top + np.log(np.exp(terms).sum(0))
    lam = np.exp(log_lam)
    zero = -shape * np.log1p(lam / shape) if math.isfinite(shape) else -lam
    ll = np.where(g.vol_pos[sl, :, None, None], pos, np.where(g.vol_zero[sl, :, None, None], zero, 0.0))
    return ll.sum(1)[..., inverse].astype(np.float32)


def filter_regimes(
    close: np.ndarray,
    end_ns: np.ndarray,
    config: SyntheticMarketConfig | None = None,
    settings: RegimeFilterSettings | None = None,
    volume: np.ndarray | None = None,
) -> RegimePosterior:
    """Filtered regime posterior of every 30-minute step from 5-minute closes (see the module docstring).

    ``close`` (T,) base-bar closes (> 0), ``end_ns`` (T,) their end times (int ns UTC, strictly
    increasing, on the 5-minute grid). ``config`` is the market's law (default: the reference market).
    ``volume`` (T,), optional: each bar's traded volume in the generator's size units (the sum of its
    trade sizes); when given, the volume channel is scored too (tick rate and sizes depend on the
    regime, the SV and the clock). Causal: row h depends only on the bars up to ``bar_index[h]``.
    """
    cfg = config if config is not None else SyntheticMarketConfig()
    st = settings if settings is not None else RegimeFilterSettings()
    c, e = _validate(close, end_ns)
    v = None if volume is None else _validate_volume(volume, len(c))
    g = _grid(c, e, cfg, v)
    rs = _regime_states(cfg, st)
    sv = _sv_grid(cfg, st)
    to_regime = np.zeros((len(rs.regime), N_REGIMES))
    to_regime[np.arange(len(rs.regime)), rs.regime] = 1.0

    n_steps = len(g.y_step)
    proba = np.empty((n_steps, N_REGIMES))
    loglik = 0.0
    joint_init = sv.init[:, None] * rs.init[None, :]  # (K, S): SV level × regime state, all > 0
    alpha = joint_init
    log_norm = -0.5 * math.log(2.0 * math.pi) * g.ok.sum(1)  # the constants _emissions leaves out
    if g.vol_pos is not None and g.log_volume is not None:
        log_norm = log_norm - ((0.5 * math.log(2.0 * math.pi) + g.log_volume) * g.vol_pos).sum(1)
    for lo in range(0, n_steps, st.chunk_steps):
        hi = min(lo + st.chunk_steps, n_steps)
        ll = _emissions(g, rs, sv, cfg, lo, hi)
        top = ll.max(axis=(1, 2)).astype(np.float64)
        lik = np.exp((ll - top[:, None, None]).astype(np.float64))
        for i in range(hi - lo):
            if lo + i > 0:
                alpha = sv.trans.T @ (rs.trans_t @ alpha.T).T
            alpha = alpha * lik[i]
            total = alpha.sum()
            if not total > 0:  # every likely state had no prior mass (an extreme return): restart
                alpha = joint_init * lik[i]
                total = alpha.sum()
            loglik += math.log(total) + top[i] + log_norm[lo + i]
            alpha = alpha / total
            proba[lo + i] = alpha.sum(0) @ to_regime
    has = g.last_bar >= 0
    steps = np.flatnonzero(has)
    return RegimePosterior(
        step_start_ns=(g.first_step + steps).astype(np.int64) * STEP_NS,
        bar_index=g.last_bar[has],
        proba=proba[has],
        loglik=loglik,
    )
