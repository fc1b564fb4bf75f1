"""A vectorized multi-agent market environment: many episodes in one batch, numpy, no loop over episodes.

Each environment step is one base (5-minute) bar. Agents act on their own clocks:
- regime and structure act only on steps that close a higher (30-minute) bar (``obs["slow_step"]``);
  between their decisions the environment holds structure's last bias and size (semi-MDP);
- tactical and risk act every step (in training the risk agent's "every tick" is every base bar).

The position logic is ``agents.decision.decide_batch``, the vectorized twin of the engine's ``decide``
(tested equal), so training and serving apply the same gates and hard limits.

Execution at the bar's close with costs: commission and half the spread on the traded notional, plus
slippage that grows with size and volatility, ``slippage_coef × σ × sqrt(|qty| / bar volume)`` of the
price (σ the bar's realized volatility, a square-root impact model).

Team reward per step (shared by all agents; documented in docs/environment.md):
``r = Δequity / initial_equity − drawdown_penalty × Δ(peak-to-trough drawdown)``, scaled by
``reward_scale`` — PnL net of costs, with a penalty on new drawdown so that risk is not free.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from marlops.agents.decision import EXPOSURE_FEATURE_SCALE, BatchInputs, RiskLimits, decide_batch
from marlops.agents.hub import ConsensusConfig
from marlops.agents.types import PORTFOLIO_FEATURES, STRUCTURE_BIAS_LEVELS
from marlops.market import indicators as ind
from marlops.market.calendar import BarClock, bar_clock
from marlops.market.dataset import MarketDataset
from marlops.market.feed import FeatureSet
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL, ready_mask

DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class EnvConfig:
    """Episode length, account, costs, limits. Costs default to a liquid instrument's; a dataset that
    records its own (meta.json) gets them through :func:`env_config_for_dataset`."""

    episode_bars: int = 576  # two days of 5-minute bars
    initial_equity: float = 100_000.0
    commission_bps: float = 2.0  # per side, on traded notional
    half_spread_bps: float = 1.0  # half the quoted spread: what one side of a trade pays
    slippage_coef: float = 0.1
    drawdown_penalty: float = 0.5
    reward_scale: float = 100.0  # rewards in percent of initial equity
    limits: RiskLimits = field(default_factory=RiskLimits)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)


@dataclass
class MarketData:
    """Everything the environment reads, precomputed once from a FeatureSet (batch features)."""

    close: np.ndarray  # (T,) base bars
    end_ns: np.ndarray  # (T,) int64: each base bar's end (ns, UTC)
    # (T,) ATR(14) of the higher timeframe at the latest higher close <= t (NaN before one): the unit of
    # stops and take profits, since positions are opened on structure's (higher-timeframe) clock
    atr: np.ndarray
    sigma: np.ndarray  # (T,) per-bar realized vol of log returns (48 bars)
    volume: np.ndarray  # (T,)
    day: np.ndarray  # (T,) UTC day number of the bar's end
    tactical: np.ndarray  # (T, 60, 7) window view
    structure: np.ndarray  # (H, 48, 8) window view
    regime: np.ndarray  # (H, 96, 11) window view
    higher_of: np.ndarray  # (T,) index of the latest closed higher bar at base bar t (-1: none)
    slow_step: np.ndarray  # (T,) base bar t closes a higher bar
    regime_label: np.ndarray  # (T,) true regime (synthetic data) or -1
    warm_from: int  # first base index whose three matrices are all ready
    # bars per trading day / per year, measured on the whole history (a slice keeps its market's clock:
    # a 3-day fold has no calendar of its own to measure)
    clock: BarClock

    @classmethod
    def from_features(cls, fs: FeatureSet, labels: np.ndarray | None = None) -> MarketData:
        base, higher = fs.base, fs.higher
        close = base["close"].to_numpy(np.float64)
        b_end, h_end = base["end"].to_numpy(), higher["end"].to_numpy()
        higher_of = np.searchsorted(h_end, b_end, side="right") - 1
        slow_step = np.isin(b_end, h_end)
        t_ready = ready_mask(fs.tactical_warm, TACTICAL.rows)
        h_ready = ready_mask(fs.structure_warm, STRUCTURE.rows) & ready_mask(fs.regime_warm, REGIME.rows)
        ok = t_ready & np.where(higher_of >= 0, h_ready[np.maximum(higher_of, 0)], False)
        warm = int(np.argmax(ok)) if ok.any() else len(close)
        return cls(
            close=close,
            end_ns=b_end.astype(np.int64),
            atr=_latest_higher(ind.atr(higher["high"], higher["low"], higher["close"]), higher_of),
            sigma=ind.realized_vol(base["close"], 48).fillna(0.0).to_numpy(np.float64),
            volume=base["volume"].to_numpy(np.float64),
            day=b_end // DAY_NS,
            tactical=_windows(fs.tactical, TACTICAL.rows),
            structure=_windows(fs.structure, STRUCTURE.rows),
            regime=_windows(fs.regime, REGIME.rows),
            higher_of=higher_of,
            slow_step=slow_step,
            regime_label=np.asarray(labels, np.int64) if labels is not None else np.full(len(close), -1),
            warm_from=warm,
            clock=bar_clock(b_end.astype(np.int64)),
        )

    def __len__(self) -> int:
        return len(self.close)


def _latest_higher(values: pd.Series, higher_of: np.ndarray) -> np.ndarray:
    """Per base bar, ``values`` of the latest closed higher bar (NaN before the first one)."""
    v = np.append(values.to_numpy(np.float64), np.nan)  # index -1 reads the NaN
    return v[np.where(higher_of >= 0, higher_of, -1)]


def _windows(rows: np.ndarray, n: int) -> np.ndarray:
    """(T, n, C) zero-copy view: window t holds rows t-n+1 … t, zero-padded before the start."""
    padded = np.concatenate([np.zeros((n - 1, rows.shape[1]), np.float32), rows.astype(np.float32)])
    return sliding_window_view(padded, (n, rows.shape[1]))[:, 0]


class VecMarketEnv:
    """``n_envs`` independent episodes over one market history, stepped together."""

    def __init__(self, data: MarketData, n_envs: int, config: EnvConfig | None = None, seed: int = 0) -> None:
        self.data, self.n, self.cfg = data, n_envs, config or EnvConfig()
        if len(data) - data.warm_from <= self.cfg.episode_bars + 1:
            raise ValueError(
                f"episode_bars: {self.cfg.episode_bars} bars do not fit after the warm-up "
                f"({len(data) - data.warm_from} warm bars in the data)"
            )
        self.rng = np.random.default_rng(seed)
        z = lambda: np.zeros(n_envs)  # noqa: E731
        self.t = np.zeros(n_envs, np.int64)
        self.end = np.zeros(n_envs, np.int64)
        self.position, self.avg_price, self.cash_pnl = z(), z(), z()
        self.peak, self.day_start_equity, self.bars_in_position = z(), z(), z()
        self.day = np.zeros(n_envs, np.int64)
        self.halted = np.zeros(n_envs, bool)
        self.stop, self.take = np.full(n_envs, np.nan), np.full(n_envs, np.nan)
        self.bias, self.size = z(), z()  # structure's held decision (semi-MDP)
        self.structure_present = np.zeros(n_envs, bool)

    # -- episode control -------------------------------------------------------------------------

    def reset(
        self, mask: np.ndarray | None = None, starts: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Start new episodes where ``mask`` (all by default), at random warm bars or at ``starts`` (one per
        environment reset: paired comparisons put several policies on the same episode)."""
        m = np.ones(self.n, bool) if mask is None else mask
        k = int(m.sum())
        hi = len(self.data) - self.cfg.episode_bars - 1
        if starts is None:
            self.t[m] = self.rng.integers(self.data.warm_from, hi, size=k)
        else:
            s = np.asarray(starts, np.int64)
            if s.shape != (k,) or s.min(initial=hi) < self.data.warm_from or s.max(initial=0) >= hi:
                raise ValueError(f"starts: need {k} bars in [{self.data.warm_from}, {hi}), got {s}")
            self.t[m] = s
        self.end[m] = self.t[m] + self.cfg.episode_bars
        eq = self.cfg.initial_equity
        for arr, v in (
            (self.position, 0.0),
            (self.avg_price, 0.0),
            (self.cash_pnl, 0.0),
            (self.peak, eq),
            (self.day_start_equity, eq),
            (self.bars_in_position, 0.0),
            (self.bias, 0.0),
            (self.size, 0.0),
            (self.stop, np.nan),
            (self.take, np.nan),
        ):
            arr[m] = v
        self.halted[m] = False
        self.structure_present[m] = False
        self.day[m] = self.data.day[self.t[m]]
        return self.observe()

    def equity(self, price: np.ndarray | None = None) -> np.ndarray:
        p = self.data.close[self.t] if price is None else price
        return self.cfg.initial_equity + self.cash_pnl + self.position * (p - self.avg_price)

    def observe(self) -> dict[str, np.ndarray]:
        d, t = self.data, self.t
        h = np.maximum(d.higher_of[t], 0)
        return {
            "tactical": d.tactical[t],
            "structure": d.structure[h],
            "regime": d.regime[h],
            "portfolio": self._portfolio_state(),
            "slow_step": d.slow_step[t],
            "regime_label": d.regime_label[t],
            "bar_index": t.copy(),
        }

    def _portfolio_state(self) -> np.ndarray:
        lim, price = self.cfg.limits, self.data.close[self.t]
        eq = self.equity(price)
        safe = np.where(eq > 0, eq, 1.0)
        notional = np.abs(self.position) * price
        with np.errstate(invalid="ignore", divide="ignore"):
            stop = np.where(
                (self.position != 0) & np.isfinite(self.stop),
                np.sign(self.position) * (price - self.stop) / price,
                0.0,
            )
        cols = (
            np.where(eq > 0, self.position * price / safe / lim.max_position_equity, 0.0),
            np.where(eq > 0, self.position * (price - self.avg_price) / safe, -1.0),
            (eq - self.day_start_equity) / self.day_start_equity,
            np.where(eq > 0, notional / safe / lim.max_leverage, 1.0),
            notional / (EXPOSURE_FEATURE_SCALE * self.cfg.initial_equity),
            np.minimum(self.bars_in_position / 288.0, 1.0),
            np.where(self.peak > 0, (self.peak - eq) / self.peak, 1.0),
            stop,
        )
        out = np.stack(cols, axis=1).astype(np.float32)
        assert out.shape[1] == len(PORTFOLIO_FEATURES)
        return np.clip(out, -10.0, 10.0)

    # -- one step --------------------------------------------------------------------------------

    def step(
        self, actions: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict]:
        """``actions``: "structure" (n,) bias level index 0..4 and "size" (n,) in [0, 1] (read only on slow
        steps), "tactical" (n,) TacticalAction, "risk" (n,) RiskAction, optional "fail" (n,) bool,
        optional "bias" (n,) in [-1, 1] instead of the level's value (a policy's own bias),
        optional "structure_now" (n,) bool: read structure's action now even off a slow step.
        Returns (next observation, team reward, done, info). Done episodes are reset automatically."""
        d, cfg, t = self.data, self.cfg, self.t
        price = d.close[t]
        # the day rolls first, as in Portfolio.roll_day
        new_day = d.day[t] != self.day
        eq_now = self.equity(price)
        self.day_start_equity = np.where(new_day, eq_now, self.day_start_equity)
        self.halted &= ~new_day
        self.day = d.day[t]
        slow = d.slow_step[t]
        if "structure_now" in actions:  # the trainer lets structure decide at an episode's first step too
            slow = slow | np.asarray(actions["structure_now"], bool)
        # "bias" (n,) overrides the level's value (evaluation passes the bias a policy computed)
        bias = actions.get("bias")
        level = np.asarray(STRUCTURE_BIAS_LEVELS)[actions["structure"]]
        self.bias = np.where(slow, level if bias is None else np.clip(bias, -1.0, 1.0), self.bias)
        self.size = np.where(slow, np.clip(actions["size"], 0.0, 1.0), self.size)
        self.structure_present |= slow
        dec = decide_batch(
            BatchInputs(
                price=price,
                atr=d.atr[t],
                tactical_action=np.asarray(actions["tactical"]),
                tactical_confidence=np.ones(self.n),
                structure_present=self.structure_present.copy(),
                structure_bias=self.bias,
                structure_size=self.size,
                risk_action=np.asarray(actions["risk"]),
                fail=np.asarray(actions.get("fail", np.zeros(self.n, bool))),
                position=self.position,
                equity=eq_now,
                day_start_equity=self.day_start_equity,
                halted=self.halted,
                stop_loss=self.stop,
                take_profit=self.take,
            ),
            cfg.limits,
            cfg.consensus,
        )
        qty = dec.target - self.position
        cost = self._costs(qty, price, t)
        self._fill(qty, price)
        self.cash_pnl -= cost
        self.stop, self.take, self.halted = dec.stop_loss, dec.take_profit, dec.halted
        self.bars_in_position = np.where(self.position != 0, self.bars_in_position + 1, 0.0)
        eq_before_move = self.equity(price)
        dd_before = (self.peak - eq_before_move) / self.peak
        # the market moves to the next bar
        self.t = t + 1
        eq_next = self.equity()
        self.peak = np.maximum(self.peak, eq_next)
        dd_after = (self.peak - eq_next) / self.peak
        reward = cfg.reward_scale * (
            (eq_next - eq_now) / cfg.initial_equity
            - cfg.drawdown_penalty * np.maximum(dd_after - dd_before, 0.0)
        )
        done = self.t >= self.end
        info = {"cost": cost, "traded": qty, "equity": eq_next, "target": dec.target}
        if done.any():
            info["final_equity"] = np.where(done, eq_next, np.nan)
            self.reset(done)
        return self.observe(), reward.astype(np.float32), done, info

    def _costs(self, qty: np.ndarray, price: np.ndarray, t: np.ndarray) -> np.ndarray:
        cfg, d = self.cfg, self.data
        notional = np.abs(qty) * price
        participation = np.abs(qty) / np.maximum(d.volume[t], 1.0)
        slip = cfg.slippage_coef * d.sigma[t] * np.sqrt(participation)
        return notional * ((cfg.commission_bps + cfg.half_spread_bps) * 1e-4 + slip)

    def _fill(self, qty: np.ndarray, price: np.ndarray) -> None:
        """Vectorized Portfolio.fill without commission (costs are charged separately)."""
        pos = self.position
        adding = (pos == 0) | (pos * qty > 0)
        new = pos + qty
        with np.errstate(invalid="ignore", divide="ignore"):
            avg_add = np.where(new != 0, (self.avg_price * pos + price * qty) / new, 0.0)
        closed = np.minimum(np.abs(qty), np.abs(pos)) * np.sign(pos)
        realized = np.where(adding | (qty == 0), 0.0, closed * (price - self.avg_price))
        flipped = ~adding & (new * pos < 0)
        avg_reduce = np.where(flipped, price, np.where(new == 0, 0.0, self.avg_price))
        self.avg_price = np.where(qty == 0, self.avg_price, np.where(adding, avg_add, avg_reduce))
        # cash_pnl holds realized PnL; equity adds the open position marked to market
        self.cash_pnl += realized
        self.position = new


# The synthetic tape is a sample of trades (median size 0.25, docs/synthetic-market.md), so its volume
# is a relative activity measure, not instrument units: a median 5-minute bar holds ~5.6 units while
# RiskLimits size full positions at ~1,300 units, which would make every entry trade ~240 bars' worth of
# volume and cost ~20 bps of square-root impact per side. One synthetic volume unit stands for this many
# instrument units, so that a full-size position is about a quarter of a median bar — an aggressive but
# plausible participation. Imported data keeps its own units (scale 1).
SYNTHETIC_VOLUME_UNITS = 1000.0


def synthetic_market_data(seed: int, days: float = 30.0) -> MarketData:
    """The project's reference synthetic market (default config, never eased) as environment data.

    Same path as ``marlops data synth``: ticks → live feed (5m / 30m bars) → batch features → the true
    regime of each base bar's 5-minute bucket; volume in instrument units (``SYNTHETIC_VOLUME_UNITS``).
    """
    from marlops.market.dataset import stream_ticks
    from marlops.market.feed import FeedConfig, features_from_bars
    from marlops.market.synthetic import generate_market

    if not days > 0:
        raise ValueError(f"days: must be > 0, got {days!r}")
    m = generate_market(days=days, seed=seed)
    feed = stream_ticks(m.ticks, FeedConfig())
    fs = features_from_bars(feed.base_frame(), feed.higher_frame())
    if len(fs.base) == 0:
        raise ValueError(f"days: {days} days produced no bars")
    data = MarketData.from_features(fs, m.regime_at(fs.base["start"].to_numpy()))
    data.volume = data.volume * SYNTHETIC_VOLUME_UNITS
    return data


def market_data_from_dataset(ds: MarketDataset) -> MarketData:
    """A loaded dataset as environment data; its labels (if any) mapped onto the base bars.

    Each base bar takes the label of the 5-minute bucket containing its last instant (the regime the
    decision at its close should know); bars outside the labelled span get -1 (scored as unknown).
    """
    fs = ds.features
    if len(fs.base) == 0:
        raise ValueError(f"dataset: {ds.path} has no base bars")
    labels = None
    if ds.labels is not None and len(ds.labels):
        starts = ds.labels["start"].to_numpy(np.int64)
        reg = ds.labels["regime"].to_numpy(np.int64)
        last = fs.base["end"].to_numpy(np.int64) - 1
        i = np.searchsorted(starts, last, side="right") - 1
        bucket = int(np.median(np.diff(starts))) if len(starts) > 1 else 300 * 10**9
        ok = (i >= 0) & (last < starts[np.maximum(i, 0)] + bucket)
        labels = np.where(ok, reg[np.maximum(i, 0)], -1)
    data = MarketData.from_features(fs, labels)
    data.volume = data.volume * volume_multiplier(ds.meta, ds.path)
    return data


def volume_multiplier(meta: dict, where: object = "") -> float:
    """Instrument units per unit of a dataset's volume: the synthetic tape's relative volume counts
    ``SYNTHETIC_VOLUME_UNITS``; an import records its own (``data import --volume-multiplier``), else 1."""
    if meta.get("source") == "synthetic":
        return SYNTHETIC_VOLUME_UNITS
    v = _meta_number(meta, "volume_multiplier", where, positive=True)
    return 1.0 if v is None else v


# meta.json keys a dataset may record its instrument's costs under (``marlops data import`` writes them)
COST_META_KEYS = ("commission_bps", "spread_bps", "tick_size")


def _meta_number(meta: dict, key: str, where: object, positive: bool = False) -> float | None:
    """A number an import recorded in meta.json (None when absent), finite and >= 0 (> 0 if ``positive``)."""
    v = meta.get(key)
    if v is None:
        return None
    number = not isinstance(v, bool) and isinstance(v, int | float) and bool(np.isfinite(v))
    if not number or v < 0 or (positive and v == 0):
        rule = "> 0" if positive else ">= 0"
        raise ValueError(f"{key}: meta.json of {where} must hold a finite number {rule}, got {v!r}")
    return float(v)


def costs_from_meta(
    meta: dict, median_price: float, base: EnvConfig | None = None, where: object = ""
) -> EnvConfig:
    """``base`` (default :class:`EnvConfig`) with the costs a dataset's meta.json records.

    ``commission_bps`` replaces the commission per side; ``spread_bps`` (the full quoted spread) gives the
    half spread each side pays; ``tick_size`` (price units) floors the spread at one tick at the median
    price — a quote cannot be tighter than a tick, and on a coarse-tick instrument that floor is above
    the default. A key that is absent keeps ``base``'s figure.
    """
    cfg = base or EnvConfig()
    commission = _meta_number(meta, "commission_bps", where)
    spread = _meta_number(meta, "spread_bps", where)
    tick = _meta_number(meta, "tick_size", where)
    half = cfg.half_spread_bps if spread is None else spread / 2.0
    if tick is not None and median_price > 0:
        half = max(half, tick / median_price * 1e4 / 2.0)
    return dataclasses.replace(
        cfg,
        commission_bps=cfg.commission_bps if commission is None else commission,
        half_spread_bps=half,
    )


def env_config_for_dataset(ds: MarketDataset, base: EnvConfig | None = None) -> EnvConfig:
    """The environment config for a loaded dataset: ``base`` with the costs its meta.json records
    (:func:`costs_from_meta`), today's defaults where it records none."""
    close = ds.features.base["close"].to_numpy(np.float64)
    median = float(np.median(close)) if len(close) else 0.0
    return costs_from_meta(ds.meta, median, base, ds.path)
