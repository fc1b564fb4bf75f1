"""Seeded regime-switching synthetic market: ticks with ground-truth regime labels.

The model (docs/synthetic-market.md has the full description and the reasoning behind every default):

- Regimes live on a 30-minute grid. A Markov chain over the three *pure* regimes (trending, ranging,
  volatile) with geometric durations decides the sequence; between two different pure regimes a short
  *transition* segment (1–6 steps) blends the parameters of its neighbours.
- A latent log price is simulated on the 5-minute grid: regime drift (trending; sign drawn per
  segment), Ornstein–Uhlenbeck pull toward an anchor (ranging), diffusion whose volatility is the regime
  level × a stochastic-volatility factor (log-vol OU) × intraday/weekly seasonality, and compound
  Poisson jumps with regime-dependent intensity.
- Tick counts per 5-minute bucket are gamma–Poisson with a mean that follows the 24/7 activity curve,
  the regime and the stochastic volatility. Inside a bucket ticks sample the latent path (a Brownian
  bridge between the bucket's end points, jumps at random ticks), plus small microstructure noise and
  rounding to the price tick.

:class:`SyntheticMarketConfig` defaults are the project's fixed *reference difficulty*: goals are
measured against this market, so the defaults must never be made easier to pass a goal.

Everything is vectorized with numpy; the only Python loops run over regime segments, 30-minute steps
and 256-bucket blocks (tens of thousands of cheap scalar iterations for a year), never over ticks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

REGIMES: tuple[str, ...] = ("trending", "ranging", "volatile", "transition")
TRENDING, RANGING, VOLATILE, TRANSITION = 0, 1, 2, 3

NS_PER_SECOND = 1_000_000_000
BUCKET_NS = 5 * 60 * NS_PER_SECOND  # 5-minute label / tick-arrival bucket
STEP_NS = 30 * 60 * NS_PER_SECOND  # regime grid
DAY_NS = 24 * 3600 * NS_PER_SECOND
BUCKETS_PER_STEP = STEP_NS // BUCKET_NS
BUCKETS_PER_DAY = DAY_NS // BUCKET_NS
BUCKETS_PER_WEEK = 7 * BUCKETS_PER_DAY
# The market trades 24/7, so a year is 365 full days of 5-minute buckets (used to annualize).
BUCKETS_PER_YEAR = 365 * BUCKETS_PER_DAY
_DT_YEARS = 1.0 / BUCKETS_PER_YEAR

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """Parameters of the synthetic market. The defaults are the fixed reference difficulty.

    Per-regime tuples are ordered (trending, ranging, volatile); the transition regime has no
    parameters of its own, it blends its two neighbours (see ``transition_vol_mult``).
    Volatilities are annualized over a 365-day 24/7 year; log-price units throughout.
    """

    start_price: float = 100.0
    """Price at the first tick's bucket start (the latent log price starts at its log)."""

    ticks_per_bar: float = 20.0
    """Mean tick rate per 5-minute bucket at activity 1 and regime tick multiplier 1 (the activity
    curve averages 1 over a week, so the realized mean is about this times the regime mix)."""

    mean_duration_hours: Triple = (18.0, 24.0, 8.0)
    """Mean duration of a pure regime segment in hours (geometric on the 30-minute grid)."""

    switch_probs: tuple[Triple, Triple, Triple] = (
        (0.0, 0.6, 0.4),
        (0.65, 0.0, 0.35),
        (0.5, 0.5, 0.0),
    )
    """Row i: probabilities of the next pure regime when pure regime i ends (zero diagonal)."""

    transition_steps_min: int = 1
    """Shortest transition segment, in 30-minute steps."""

    transition_steps_max: int = 6
    """Longest transition segment, in 30-minute steps (length uniform in [min, max])."""

    transition_vol_mult: float = 1.0
    """Diffusive vol of a transition step = blended vol of the neighbours × this (choppy hand-over)."""

    vol: Triple = (0.50, 0.38, 0.80)
    """Annualized diffusive volatility level per pure regime (before stochastic vol and seasonality)."""

    trend_drift_per_day: float = 0.045
    """Mean absolute log drift per day of a trending segment (sign drawn per segment)."""

    trend_drift_jitter: float = 0.4
    """A trending segment's |drift| is ``trend_drift_per_day × U(1 - jitter, 1 + jitter)``."""

    range_half_life_hours: float = 3.0
    """Half-life of the OU pull of the log price toward the ranging anchor (set at segment start)."""

    jumps_per_day: Triple = (1.0, 0.5, 4.0)
    """Compound-Poisson jump intensity per regime, jumps per day."""

    jump_std: Triple = (0.006, 0.005, 0.010)
    """Standard deviation of a jump's log size per regime (jumps are N(0, std²))."""

    sv_half_life_hours: float = 6.0
    """Half-life of the log-volatility OU process (stochastic volatility)."""

    sv_std: float = 0.25
    """Stationary standard deviation of log-volatility; the factor exp(x - std²) has E[factor²] = 1."""

    season_peaks_utc: tuple[float, ...] = (8.0, 15.0)
    """Hours (UTC) of the activity humps of the 24h curve (Europe open, US open)."""

    season_peak_weights: tuple[float, ...] = (0.6, 1.0)
    """Relative height of each hump in ``season_peaks_utc``."""

    season_concentration: float = 3.0
    """Von Mises concentration of each hump (larger: narrower humps)."""

    season_baseline: float = 0.6
    """Activity floor added to the humps before normalizing (larger: flatter day)."""

    weekend_activity: float = 0.8
    """Activity multiplier on Saturday and Sunday (UTC) relative to weekdays."""

    season_vol_elasticity: float = 0.5
    """Volatility ∝ activity^elasticity (normalized so the mean variance over a week is unchanged)."""

    tick_rate_mult: Triple = (1.0, 0.8, 1.8)
    """Tick-rate multiplier per pure regime."""

    tick_vol_elasticity: float = 1.0
    """Tick rate ∝ (stochastic-vol factor)^elasticity (normalized to mean 1): busy when volatile."""

    tick_count_shape: float = 4.0
    """Gamma shape of the per-bucket rate multiplier (over-dispersed counts; inf gives Poisson)."""

    size_median: float = 0.25
    """Median trade size at activity 1."""

    size_sigma: float = 1.0
    """Log-standard deviation of trade sizes (lognormal)."""

    size_season_elasticity: float = 0.5
    """Trade size ∝ activity^elasticity (bigger trades in busy hours)."""

    tick_noise_bps: float = 1.0
    """Microstructure noise: i.i.d. N(0, (bps·1e-4)²) added to each tick's log price."""

    price_tick: float = 0.01
    """Prices are rounded to multiples of this (never below one tick); 0 disables rounding."""

    def __post_init__(self) -> None:
        def _check(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ValueError(f"{name}: {msg}")

        for name in ("mean_duration_hours", "vol", "jumps_per_day", "jump_std", "tick_rate_mult"):
            v = getattr(self, name)
            _check(len(v) == 3, name, "needs one value per pure regime (trending, ranging, volatile)")
            _check(all(math.isfinite(x) and x >= 0 for x in v), name, "values must be finite and >= 0")
        _check(all(h >= 0.5 for h in self.mean_duration_hours), "mean_duration_hours", "must be >= 0.5")
        _check(all(x > 0 for x in self.tick_rate_mult), "tick_rate_mult", "must be > 0")
        probs = np.asarray(self.switch_probs, dtype=float)
        _check(probs.shape == (3, 3), "switch_probs", "must be 3x3")
        _check(bool(np.all(probs >= 0)), "switch_probs", "must be >= 0")
        _check(bool(np.all(np.diag(probs) == 0)), "switch_probs", "diagonal must be 0")
        _check(bool(np.allclose(probs.sum(axis=1), 1.0)), "switch_probs", "rows must sum to 1")
        _check(
            1 <= self.transition_steps_min <= self.transition_steps_max,
            "transition_steps_min",
            "need 1 <= transition_steps_min <= transition_steps_max",
        )
        _check(
            len(self.season_peaks_utc) == len(self.season_peak_weights),
            "season_peak_weights",
            "needs one weight per peak",
        )
        for name in (
            "start_price",
            "ticks_per_bar",
            "range_half_life_hours",
            "sv_half_life_hours",
            "tick_count_shape",
            "size_median",
        ):
            v = getattr(self, name)
            _check(v > 0 and not math.isnan(v), name, f"must be > 0, got {v!r}")
        for name in (
            "transition_vol_mult",
            "trend_drift_per_day",
            "sv_std",
            "season_baseline",
            "weekend_activity",
            "season_concentration",
            "size_sigma",
            "tick_noise_bps",
            "price_tick",
        ):
            v = getattr(self, name)
            _check(math.isfinite(v) and v >= 0, name, f"must be finite and >= 0, got {v!r}")
        _check(0 <= self.trend_drift_jitter <= 1, "trend_drift_jitter", "must be in [0, 1]")
        _check(
            self.season_baseline > 0 or sum(self.season_peak_weights) > 0,
            "season_baseline",
            "activity must not be identically zero",
        )
        _check(self.weekend_activity > 0, "weekend_activity", "must be > 0")

    def stationary_fractions(self) -> np.ndarray:
        """Expected long-run fraction of time per regime id 0..3 (trending, ranging, volatile, transition)."""
        probs = np.asarray(self.switch_probs, dtype=float)
        # Stationary law of the jump chain: left eigenvector for eigenvalue 1.
        vals, vecs = np.linalg.eig(probs.T)
        pi = np.real(vecs[:, np.argmin(np.abs(vals - 1.0))])
        pi = pi / pi.sum()
        pure_hours = pi * np.asarray(self.mean_duration_hours)
        trans_hours = 0.25 * (self.transition_steps_min + self.transition_steps_max)  # mean steps × 0.5h
        out = np.append(pure_hours, trans_hours)
        return out / out.sum()


@dataclass(eq=False)  # frames do not compare to a bool; identity equality is the honest default
class SyntheticMarket:
    """A generated market: ticks, per-5-minute ground-truth regime labels and how it was made."""

    ticks: pd.DataFrame
    """Columns ts (int64 ns UTC, strictly increasing), price and size (float64, > 0), side (int8)."""
    labels: pd.DataFrame
    """One row per 5-minute bucket: start (int64 ns), regime (int8, index into :data:`REGIMES`)."""
    config: SyntheticMarketConfig
    seed: int
    _regimes: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regimes = self.labels["regime"].to_numpy()

    @property
    def start_ns(self) -> int:
        """Start of the first 5-minute bucket (ns)."""
        return int(self.labels["start"].iat[0])

    @property
    def end_ns(self) -> int:
        """End (exclusive) of the last 5-minute bucket (ns)."""
        return self.start_ns + len(self.labels) * BUCKET_NS

    def regime_at(self, starts: np.ndarray) -> np.ndarray:
        """Regime id (int8) of the 5-minute bucket containing each timestamp (ns); raises outside it."""
        ts = np.asarray(starts, dtype=np.int64)
        if ts.size and (ts.min() < self.start_ns or ts.max() >= self.end_ns):
            raise ValueError(
                f"starts: timestamps must lie in [{self.start_ns}, {self.end_ns}) (the generated market)"
            )
        return self._regimes[(ts - self.start_ns) // BUCKET_NS]

    def labels_for(self, timeframe_ns: int) -> pd.DataFrame:
        """Labels per bucket of a coarser timeframe (a multiple of 5 minutes, epoch-aligned like the bars).

        The label is the regime at the END of the bucket, i.e. of its last 5-minute bucket (what a
        decision at the bar close should know about). A bucket only partly covered by the market
        (possible when the timeframe does not divide the market's span) takes its last covered
        5-minute bucket. Columns: start (int64 ns), regime (int8).
        """
        tf = int(timeframe_ns)
        if tf <= 0 or tf % BUCKET_NS:
            raise ValueError(
                f"timeframe_ns: must be a positive multiple of 5 minutes ({BUCKET_NS} ns), got {tf}"
            )
        starts = self.labels["start"].to_numpy()
        group = starts // tf
        last = np.ones(len(group), dtype=bool)
        last[:-1] = group[1:] != group[:-1]
        return pd.DataFrame(
            {"start": (group[last] * tf).astype(np.int64), "regime": self._regimes[last].astype(np.int8)}
        )


def _parse_start(start: str) -> int:
    ts = pd.Timestamp(start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    ns = int(ts.value)
    if ns % STEP_NS:
        raise ValueError(f"start: must lie on a 30-minute boundary (the regime grid), got {start!r}")
    return ns


def _ar1(eps: np.ndarray, phi: float, x0: float, block: int = 256) -> np.ndarray:
    """x[n] = phi·x[n-1] + eps[n] with x[-1] = x0, vectorized in blocks (powers of phi stay well scaled)."""
    n = eps.size
    nblocks = -(-n // block)
    e = np.zeros(nblocks * block)
    e[:n] = eps
    e = e.reshape(nblocks, block)
    k = np.arange(block)
    # Within a block: local[j] = sum_{i<=j} phi^(j-i) e[i] = phi^j · cumsum(e[i] · phi^-i).
    local = np.cumsum(e * phi ** (-k), axis=1) * phi**k
    carry_pow = phi ** (k + 1)
    starts = np.empty(nblocks)
    x = x0
    last = local[:, -1].tolist()
    decay = phi**block
    for b in range(nblocks):
        starts[b] = x
        x = decay * x + last[b]
    return (local + starts[:, None] * carry_pow).ravel()[:n]


def _activity_week(cfg: SyntheticMarketConfig) -> np.ndarray:
    """Activity per 5-minute bucket of a Monday-00:00-UTC week, mean 1 over the week."""
    hours = (np.arange(BUCKETS_PER_DAY) + 0.5) * 24.0 / BUCKETS_PER_DAY
    day = np.full(BUCKETS_PER_DAY, cfg.season_baseline)
    for peak, weight in zip(cfg.season_peaks_utc, cfg.season_peak_weights, strict=True):
        day += weight * np.exp(cfg.season_concentration * (np.cos(2 * np.pi * (hours - peak) / 24.0) - 1.0))
    week = np.tile(day, 7)
    week[5 * BUCKETS_PER_DAY :] *= cfg.weekend_activity
    return week / week.mean()


@dataclass
class _Schedule:
    """Per-30-minute-step regime schedule: label and the blend of two pure regimes a → b with weight w."""

    regime: np.ndarray
    a: np.ndarray
    b: np.ndarray
    w: np.ndarray
    drift_a: np.ndarray  # per-day drift of the segment a belongs to (0 unless trending)
    drift_b: np.ndarray
    reset: np.ndarray  # the ranging anchor is set to the price at the start of this step


def _simulate_schedule(rng: np.random.Generator, cfg: SyntheticMarketConfig, n_steps: int) -> _Schedule:
    cap = n_steps + cfg.transition_steps_max + 1
    regime = np.empty(cap, dtype=np.int8)
    a = np.empty(cap, dtype=np.int64)
    b = np.empty(cap, dtype=np.int64)
    w = np.zeros(cap)
    drift_a = np.zeros(cap)
    drift_b = np.zeros(cap)
    reset = np.zeros(cap, dtype=bool)

    switch_cdf = np.cumsum(np.asarray(cfg.switch_probs, dtype=float), axis=1)
    p_end = [1.0 / (2.0 * h) for h in cfg.mean_duration_hours]  # per 30-minute step
    lo, hi = cfg.transition_steps_min, cfg.transition_steps_max
    jitter = cfg.trend_drift_jitter

    def draw_drift(r: int) -> float:
        if r != TRENDING:
            return 0.0
        sign = 1.0 if rng.random() < 0.5 else -1.0
        return sign * cfg.trend_drift_per_day * (1.0 + jitter * (2.0 * rng.random() - 1.0))

    # Start in the long-run regime mix so the beginning of a market is not special.
    frac = cfg.stationary_fractions()[:3]
    cur = int(np.searchsorted(np.cumsum(frac / frac.sum()), rng.random(), side="right"))
    cur = min(cur, 2)
    cur_drift = draw_drift(cur)
    pos = 0
    while pos < n_steps:
        dur = int(rng.geometric(p_end[cur]))
        end = min(pos + dur, n_steps)
        regime[pos:end] = cur
        a[pos:end] = b[pos:end] = cur
        drift_a[pos:end] = drift_b[pos:end] = cur_drift
        reset[pos] = cur == RANGING
        pos = end
        if pos >= n_steps:
            break
        nxt = min(int(np.searchsorted(switch_cdf[cur], rng.random(), side="right")), 2)
        nxt_drift = draw_drift(nxt)
        length = int(rng.integers(lo, hi + 1))
        end = pos + length
        regime[pos:end] = TRANSITION
        a[pos:end], b[pos:end] = cur, nxt
        w[pos:end] = np.arange(1, length + 1) / (length + 1)
        drift_a[pos:end], drift_b[pos:end] = cur_drift, nxt_drift
        # Entering a ranging regime: the anchor is where the hand-over starts. Leaving one keeps it.
        reset[pos] = nxt == RANGING
        pos = end
        cur, cur_drift = nxt, nxt_drift
    s = slice(0, n_steps)
    return _Schedule(regime[s], a[s], b[s], w[s], drift_a[s], drift_b[s], reset[s])


def generate_market(
    days: float = 365.0,
    seed: int = 0,
    config: SyntheticMarketConfig | None = None,
    start: str = "2025-01-01T00:00:00Z",
    progress: bool = False,
) -> SyntheticMarket:
    """Generate ``days`` of 24/7 ticks with regime labels; same seed and config give identical output.

    ``start`` must be on a 30-minute boundary (UTC). ``progress`` is accepted for CLI symmetry; the
    generation is one vectorized pass (about a second per simulated year), so it shows nothing.
    """
    del progress  # single vectorized pass: nothing to report incrementally
    cfg = config if config is not None else SyntheticMarketConfig()
    if not (math.isfinite(days) and days > 0):
        raise ValueError(f"days: must be finite and > 0, got {days!r}")
    t0 = _parse_start(start)
    n_buckets = max(1, round(days * BUCKETS_PER_DAY))
    n_steps = -(-n_buckets // BUCKETS_PER_STEP)
    nb = n_steps * BUCKETS_PER_STEP  # simulate whole steps, cut to n_buckets at the end
    rng = np.random.default_rng(seed)

    # --- regime schedule (30-minute steps) and blended per-step parameters ---------------------------
    sch = _simulate_schedule(rng, cfg, n_steps)
    w, a, b = sch.w, sch.a, sch.b
    trans = sch.regime == TRANSITION

    def blend(values: tuple[float, ...]) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        return (1.0 - w) * v[a] + w * v[b]

    vol2 = np.asarray(cfg.vol) ** 2
    step_vol = np.sqrt((1.0 - w) * vol2[a] + w * vol2[b]) * np.where(trans, cfg.transition_vol_mult, 1.0)
    step_drift = (1.0 - w) * sch.drift_a + w * sch.drift_b  # per day
    kappa = math.log(2.0) / (cfg.range_half_life_hours / (24.0 * 365.0))  # per year
    step_kappa = blend((0.0, kappa, 0.0))
    step_jump_rate = blend(cfg.jumps_per_day)
    step_jump_std = blend(cfg.jump_std)
    step_tick_mult = blend(cfg.tick_rate_mult)

    def per_bucket(x: np.ndarray) -> np.ndarray:
        return np.repeat(x, BUCKETS_PER_STEP)

    # --- seasonality and stochastic volatility (5-minute buckets) -----------------------------------
    bucket_start = t0 + np.arange(nb, dtype=np.int64) * BUCKET_NS
    dow = (bucket_start // DAY_NS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    week_idx = dow * BUCKETS_PER_DAY + (bucket_start % DAY_NS) // BUCKET_NS
    week = _activity_week(cfg)
    activity = week[week_idx]
    week_vol = week**cfg.season_vol_elasticity
    season_vol = (week_vol / np.sqrt(np.mean(week_vol**2)))[week_idx]  # mean variance over a week unchanged

    phi = 0.5 ** (BUCKET_NS / (cfg.sv_half_life_hours * 3600 * NS_PER_SECOND))
    sv_var = cfg.sv_std**2
    sv_eps = rng.standard_normal(nb) * (cfg.sv_std * math.sqrt(1.0 - phi * phi))
    logvol = _ar1(sv_eps, phi, float(rng.standard_normal()) * cfg.sv_std)
    sv = np.exp(logvol - sv_var)  # E[sv²] = 1: regime vol levels are the mean variance

    sigma = per_bucket(step_vol) * sv * season_vol * math.sqrt(_DT_YEARS)  # diffusive sd per bucket
    mu = per_bucket(step_drift) / BUCKETS_PER_DAY

    # --- jumps (compound Poisson) ----------------------------------------------------------------------
    n_jumps = rng.poisson(per_bucket(step_jump_rate) / BUCKETS_PER_DAY)
    jump_bucket = np.repeat(np.arange(nb), n_jumps)
    jump_size = rng.standard_normal(jump_bucket.size) * per_bucket(step_jump_std)[jump_bucket]
    jump_total = np.bincount(jump_bucket, weights=jump_size, minlength=nb)

    # --- latent log price at bucket boundaries (drift + OU pull + diffusion + jumps) -------------------
    z_bucket = rng.standard_normal(nb)
    f = (mu + sigma * z_bucket + jump_total).reshape(n_steps, BUCKETS_PER_STEP)
    decay = np.exp(-step_kappa * _DT_YEARS)  # per bucket, constant within a step
    # g[s, n]: deviation from the anchor gathered after n buckets of step s starting from 0.
    g = np.zeros((n_steps, BUCKETS_PER_STEP + 1))
    for n in range(1, BUCKETS_PER_STEP + 1):
        g[:, n] = decay * g[:, n - 1] + f[:, n - 1]
    decay_pow = decay[:, None] ** np.arange(BUCKETS_PER_STEP + 1)
    # Sequential only over 30-minute steps: the anchor is the (path-dependent) price at a reset.
    y_step = np.empty(n_steps)
    anchor = np.empty(n_steps)
    y = math.log(cfg.start_price)
    anc = y
    for s, (rst, d6, g6) in enumerate(
        zip(sch.reset.tolist(), decay_pow[:, -1].tolist(), g[:, -1].tolist(), strict=True)
    ):
        if rst:
            anc = y
        y_step[s] = y
        anchor[s] = anc
        y = anc + d6 * (y - anc) + g6
    y_grid = anchor[:, None] + decay_pow * (y_step - anchor)[:, None] + g  # (n_steps, 7)
    y_bound = np.append(y_grid[:, :-1].ravel(), y)  # log price at each bucket start and the final end

    # --- tick counts ---------------------------------------------------------------------------------
    eta = cfg.tick_vol_elasticity
    rate = (
        cfg.ticks_per_bar
        * activity
        * per_bucket(step_tick_mult)
        * sv**eta
        / math.exp(eta * eta * sv_var / 2.0 - eta * sv_var)  # E[sv^eta] = 1 after this
    )
    if math.isfinite(cfg.tick_count_shape):
        rate = rate * rng.gamma(cfg.tick_count_shape, 1.0 / cfg.tick_count_shape, size=nb)
    counts = rng.poisson(rate)[:n_buckets]
    n_ticks = int(counts.sum())
    first = np.zeros(n_buckets + 1, dtype=np.int64)
    np.cumsum(counts, out=first[1:])
    tick_bucket = np.repeat(np.arange(n_buckets), counts)
    rank = np.arange(n_ticks) - first[tick_bucket]

    # --- tick timestamps: sorted draws on [0, W - n], + rank -> strictly increasing, < W ----------------
    width = BUCKET_NS
    off = rng.integers(0, width - counts[tick_bucket] + 1)
    key = np.sort(tick_bucket * width + off)  # bucket-major, so this sorts within each bucket
    offset = key - tick_bucket * width + rank
    ts = t0 + tick_bucket * width + offset

    # --- tick prices: Brownian bridge between bucket end points + jumps at random ticks -------------
    tau = offset / width  # time fraction within the bucket, in [0, 1)
    prev_tau = np.where(rank == 0, 0.0, np.concatenate(([0.0], tau[:-1])))
    sig_t = sigma[tick_bucket]
    incr = sig_t * np.sqrt(tau - prev_tau) * rng.standard_normal(n_ticks)
    csum = np.cumsum(incr)
    base = np.concatenate(([0.0], csum))[first[:-1]]  # cumulative sum before each bucket's first tick
    free = csum - base[tick_bucket]  # free Brownian motion within the bucket
    has = counts > 0
    last_idx = first[1:] - 1
    free_end = np.zeros(n_buckets)
    free_end[has] = free[last_idx[has]] + sigma[:n_buckets][has] * np.sqrt(1.0 - tau[last_idx[has]]) * (
        rng.standard_normal(int(has.sum()))
    )
    continuous = np.diff(y_bound)[:n_buckets] - jump_total[:n_buckets]  # bucket move without its jumps
    bridge = free - tau * (free_end - continuous)[tick_bucket]

    in_range = jump_bucket < n_buckets
    jb, js = jump_bucket[in_range], jump_size[in_range]
    with_ticks = counts[jb] > 0
    jb, js = jb[with_ticks], js[with_ticks]
    jump_tick = first[jb] + np.floor(rng.random(jb.size) * counts[jb]).astype(np.int64)
    jump_at = np.bincount(jump_tick, weights=js, minlength=n_ticks)
    jcs = np.cumsum(jump_at)
    jbase = np.concatenate(([0.0], jcs))[first[:-1]]
    jumps_so_far = jcs - jbase[tick_bucket]

    log_price = y_bound[tick_bucket] + bridge + jumps_so_far
    log_price += rng.standard_normal(n_ticks) * (cfg.tick_noise_bps * 1e-4)
    price = np.exp(log_price)
    if cfg.price_tick > 0:
        price = np.maximum(np.round(price / cfg.price_tick) * cfg.price_tick, cfg.price_tick)

    # --- sizes and aggressor side ------------------------------------------------------------------------
    size = (
        cfg.size_median
        * activity[:n_buckets][tick_bucket] ** cfg.size_season_elasticity
        * np.exp(cfg.size_sigma * rng.standard_normal(n_ticks))
    )
    coin = np.where(rng.random(n_ticks) < 0.5, -1, 1).astype(np.int8)
    move = np.sign(np.diff(price, prepend=np.nan))
    side = np.where(move > 0, 1, np.where(move < 0, -1, coin)).astype(np.int8)  # NaN/0 -> coin

    ticks = pd.DataFrame(
        {"ts": ts.astype(np.int64), "price": price.astype(np.float64), "size": size, "side": side}
    )
    labels = pd.DataFrame(
        {
            "start": bucket_start[:n_buckets],
            "regime": np.repeat(sch.regime, BUCKETS_PER_STEP)[:n_buckets].astype(np.int8),
        }
    )
    return SyntheticMarket(ticks=ticks, labels=labels, config=cfg, seed=seed)


def bucket_closes(m: SyntheticMarket) -> pd.Series:
    """Last tick price per 5-minute bucket (forward-filled over empty buckets), indexed by bucket start."""
    idx = (m.ticks["ts"].to_numpy() - m.start_ns) // BUCKET_NS
    close = m.ticks["price"].groupby(idx).last()
    return close.reindex(np.arange(len(m.labels))).ffill().set_axis(m.labels["start"].to_numpy())


def market_summary(m: SyntheticMarket) -> dict[str, object]:
    """Headline statistics: counts, regime mix, annualized realized vol per regime, tick rate, price range.

    Realized vol uses 5-minute log returns of bucket closes, attributed to the regime of the bucket the
    return ends in, annualized with 365 × 288 buckets per year.
    """
    regimes = m.labels["regime"].to_numpy()
    close = bucket_closes(m).to_numpy()
    ret = np.diff(np.log(close))
    ret_regime = regimes[1:]
    ok = np.isfinite(ret)
    fractions = np.bincount(regimes, minlength=len(REGIMES)) / len(regimes)
    vols: dict[str, float] = {}
    for rid, name in enumerate(REGIMES):
        r = ret[ok & (ret_regime == rid)]
        vols[name] = float(np.sqrt(np.mean(r**2) * BUCKETS_PER_YEAR)) if r.size else float("nan")
    prices = m.ticks["price"].to_numpy()
    counts = np.bincount((m.ticks["ts"].to_numpy() - m.start_ns) // BUCKET_NS, minlength=len(regimes))
    return {
        "seed": m.seed,
        "n_ticks": len(m.ticks),
        "n_buckets": len(m.labels),
        "days": len(m.labels) / BUCKETS_PER_DAY,
        "regime_fraction": {name: float(fractions[i]) for i, name in enumerate(REGIMES)},
        "realized_vol": vols,
        "realized_vol_all": float(np.sqrt(np.mean(ret[ok] ** 2) * BUCKETS_PER_YEAR))
        if ok.any()
        else math.nan,
        "mean_ticks_per_bucket": float(counts.mean()),
        "empty_bucket_fraction": float(np.mean(counts == 0)),
        "price_min": float(prices.min()) if prices.size else float("nan"),
        "price_max": float(prices.max()) if prices.size else float("nan"),
    }
