"""Synthetic drift scenarios: the reference market, then a window that is (or is not) shifted.

The drift job is calibrated and tested on these (docs/monitoring.md): a market of ``days_before`` days
from the reference generator, continued by ``days_after`` days generated from another seed, either with
the same configuration (no drift: the no-alert case) or with a :class:`RegimeShift` (volatile regimes
that last longer, come more often and move more). Both parts are streamed as one tick history through
the live market feed, so the features of the second part see the first as their history, as they would
in production.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marlops.agents.types import REGIME_NAMES
from marlops.market.dataset import feature_frames
from marlops.market.feed import FeedConfig, MarketFeed, features_from_bars
from marlops.market.synthetic import SyntheticMarketConfig, generate_market
from marlops.monitoring.sources import (
    FEATURE_COLUMNS,
    FEATURE_DATASETS,
    DriftData,
    _rename_prefixed,
    _warm_rows,
)

DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class RegimeShift:
    """A regime/volatility shift of the synthetic market (see docs/synthetic-market.md for the fields).

    ``vol_mult`` scales every regime's diffusive vol and jump size; ``volatile_hours`` is the mean
    length of a volatile segment (reference: 8 h); ``into_volatile`` is the probability that a trending
    or ranging segment hands over to volatile when it ends (reference: 0.4 and 0.35).
    """

    vol_mult: float = 1.5
    volatile_hours: float = 36.0
    into_volatile: float = 0.8

    def apply(self, cfg: SyntheticMarketConfig) -> SyntheticMarketConfig:
        if not (self.vol_mult > 0 and self.volatile_hours > 0 and 0 <= self.into_volatile <= 1):
            raise ValueError(f"RegimeShift: invalid {self}")
        p = self.into_volatile
        t, r, _ = cfg.mean_duration_hours
        return dataclasses.replace(
            cfg,
            vol=tuple(v * self.vol_mult for v in cfg.vol),
            jump_std=tuple(j * self.vol_mult for j in cfg.jump_std),
            mean_duration_hours=(t, r, self.volatile_hours),
            switch_probs=((0.0, 1 - p, p), (1 - p, 0.0, p), cfg.switch_probs[2]),
        )


@dataclass
class ScenarioFrames:
    """Feature rows of a scenario, keyed by bar end ``ts`` (ns), columns as in a dataset's features."""

    base: pd.DataFrame  # tactical_* columns + tactical_warm
    higher: pd.DataFrame  # structure_*, regime_* columns + warm flags
    labels: pd.DataFrame  # per 5-minute bucket: start, regime (the true regime)
    split_ns: int  # first instant of the second (current) part

    def window(self, part: str) -> ScenarioFrames:
        """Rows of the ``reference`` part (bars ending at or before the split) or the ``current`` part."""
        if part not in ("reference", "current"):
            raise ValueError(f"part {part!r}: expected 'reference' or 'current'")

        def pick(df: pd.DataFrame, col: str) -> pd.DataFrame:
            keep = df[col] <= self.split_ns if part == "reference" else df[col] > self.split_ns
            return df[keep].reset_index(drop=True)

        return ScenarioFrames(
            pick(self.base, "ts"), pick(self.higher, "ts"), pick(self.labels, "start"), self.split_ns
        )


def scenario_ticks(
    days_before: float,
    days_after: float,
    seed: int,
    shift: RegimeShift | None = None,
    start: str = "2025-01-01T00:00:00Z",
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(ticks, labels, split_ns): the reference market, then a second part from seed ``seed + 7919``
    (unshifted, or shifted by ``shift``) that starts where the first ended, at its last price."""
    base_cfg = SyntheticMarketConfig()
    first = generate_market(days=days_before, seed=seed, config=base_cfg, start=start)
    last_price = float(first.ticks["price"].iat[-1])
    cfg2 = dataclasses.replace(shift.apply(base_cfg) if shift else base_cfg, start_price=last_price)
    split = first.end_ns
    second = generate_market(
        days=days_after,
        seed=seed + 7919,
        config=cfg2,
        start=pd.Timestamp(split, unit="ns", tz="UTC").isoformat(),
    )
    ticks = pd.concat([first.ticks, second.ticks], ignore_index=True)
    labels = pd.concat([first.labels, second.labels], ignore_index=True)
    return ticks, labels, split


def scenario_frames(
    days_before: float,
    days_after: float,
    seed: int,
    shift: RegimeShift | None = None,
    config: FeedConfig | None = None,
) -> ScenarioFrames:
    """Stream a scenario's ticks through the live feed and return its per-bar feature rows."""
    ticks, labels, split = scenario_ticks(days_before, days_after, seed, shift)
    feed = MarketFeed(config or FeedConfig())
    feed.on_frame(ticks)
    fs = features_from_bars(feed.base_frame(), feed.higher_frame())
    base, higher = feature_frames(fs)
    return ScenarioFrames(base, higher, labels, split)


def true_regime_at(labels: pd.DataFrame, ts: np.ndarray) -> np.ndarray:
    """The true regime (0..3) of the 5-minute bucket that ends at or contains each ``ts`` (bar ends)."""
    starts = labels["start"].to_numpy()
    idx = np.searchsorted(starts, np.asarray(ts, dtype=np.int64) - 1, side="right") - 1
    return labels["regime"].to_numpy()[np.clip(idx, 0, len(starts) - 1)]


def drift_data(frames: ScenarioFrames, name: str = "scenario") -> DriftData:
    """A scenario's rows as the drift job's :class:`DriftData` (warm rows only, columns renamed)."""
    base, higher = _rename_prefixed(frames.base), _rename_prefixed(frames.higher)
    data = DriftData(name, "dataset")
    for m in FEATURE_DATASETS:
        data.frames[m] = _warm_rows(base if m == "tactical" else higher, m, data.dropped)
    return data


def write_request_log(
    frames: ScenarioFrames,
    directory: str | Path,
    instrument: str = "SYNTH",
    regime_accuracy: float = 0.8,
    seed: int = 0,
) -> list[Path]:
    """Write a request log in the decision server's format (docs/monitoring.md) for a scenario: one
    decision per base bar once every matrix is warm, with the latest row of each matrix as features.

    The outputs stand in for a served team (tests and demos, where no trained team runs): the regime
    is the true regime with probability ``regime_accuracy`` (else a uniform draw), the structure bias
    and the tactical action follow the tactical momentum, the risk agent blocks entries in volatile bars.
    """
    rng = np.random.default_rng(seed)
    base = _rename_prefixed(frames.base)
    higher = _rename_prefixed(frames.higher)
    b_ts = base["ts"].to_numpy()
    h_idx = np.searchsorted(higher["ts"].to_numpy(), b_ts, side="right") - 1
    regimes = true_regime_at(frames.labels, b_ts).astype(int)
    noisy = rng.random(len(b_ts)) >= regime_accuracy
    regimes[noisy] = rng.integers(0, len(REGIME_NAMES), int(noisy.sum()))
    t_cols, s_cols, r_cols = (FEATURE_COLUMNS[m] for m in FEATURE_DATASETS)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[str]] = {}
    h_warm = (higher["structure_warm"] & higher["regime_warm"]).to_numpy()
    t_warm = base["tactical_warm"].to_numpy()
    for i, ts in enumerate(b_ts):
        if h_idx[i] < 0 or not (t_warm[i] and h_warm[h_idx[i]]):
            continue  # a served team decides on warm matrices only (before that it fails closed)
        feats = {c: round(float(base[c].iat[i]), 6) for c in t_cols}
        h = higher.iloc[h_idx[i]]
        feats.update({c: round(float(h[c]), 6) for c in (*s_cols, *r_cols)})
        momentum = feats["tactical.ema_dev"]
        action = "enter_long" if momentum > 1 else "enter_short" if momentum < -1 else "hold"
        entry = action.startswith("enter")
        blocked = entry and regimes[i] == 2
        t = pd.Timestamp(int(ts), unit="ns", tz="UTC")
        rec = {
            "ts": t.isoformat().replace("+00:00", "Z"),
            "instrument": instrument,
            "clock": "30m" if int(ts) % (30 * 60 * 10**9) == 0 else "5m",
            "features": feats,
            "regime": int(regimes[i]),
            "regime_probs": [round(float(x), 4) for x in np.eye(len(REGIME_NAMES))[regimes[i]]],
            "structure_bias": round(float(np.tanh(momentum / 2)), 4),
            "tactical_action": action,
            "risk_action": "block_entry" if blocked else "allow",
            "overridden": bool(blocked),
            "fail_closed": False,
            "reason": "volatile regime" if blocked else None,
            "latency_ms": round(float(rng.gamma(4.0, 0.5)), 3),
        }
        files.setdefault(t.strftime("%Y%m%d"), []).append(json.dumps(rec, separators=(",", ":")))
    paths = []
    for day, lines in files.items():
        p = out / f"requests-{day}.jsonl"
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(p)
    return paths
