"""A market dataset on disk: ticks, bars of both timeframes, feature rows and (synthetic) regime labels.

Layout of a dataset folder::

    meta.json            source, timeframes, counts, rejections, synthetic config and seed
    ticks.parquet        accepted ticks (ts, price, size, side)        — absent for bar imports
    bars_base.parquet    base bars (bars.BAR_COLUMNS)
    bars_higher.parquet  higher bars
    features_base.parquet    tactical feature rows per base bar (+ warm flag), keyed by bar end
    features_higher.parquet  structure and regime feature rows per higher bar (+ warm flags)
    labels.parquet       true regime per base bar (synthetic data only)

Feature files are keyed by the bar's ``end`` (the time the row becomes known), which is what a
point-in-time join needs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from marlops.market.bars import BarAggregator, bars_to_frame, frame_to_bars
from marlops.market.features import REGIME_COLUMNS, STRUCTURE_COLUMNS, TACTICAL_COLUMNS
from marlops.market.feed import FeatureSet, FeedConfig, MarketFeed, features_from_bars
from marlops.market.frame_store import read_frame, write_frame
from marlops.market.readers import ColumnMap, read_ticks
from marlops.market.synthetic import REGIMES

Progress = Callable[[int], None]  # called with the number of ticks just processed


@dataclass
class MarketDataset:
    path: Path
    meta: dict
    base: pd.DataFrame
    higher: pd.DataFrame
    features: FeatureSet
    labels: pd.DataFrame | None = None
    ticks: pd.DataFrame | None = field(default=None, repr=False)

    @classmethod
    def load(
        cls,
        path: str | Path,
        with_ticks: bool = False,
        features: Callable[[pd.DataFrame, pd.DataFrame], FeatureSet] = features_from_bars,
    ) -> MarketDataset:
        """``features``: the feature rows of (base, higher) bars; default computed from the bars (the
        train step can read them from Feast instead: marlops.features.training)."""
        p = Path(path)
        meta_file = p / "meta.json"
        if not meta_file.exists():
            raise FileNotFoundError(
                f"{p}: not a marlops dataset (no meta.json); create one with `marlops data synth`"
            )
        meta = json.loads(meta_file.read_text())
        base, higher = read_frame(p / "bars_base.parquet"), read_frame(p / "bars_higher.parquet")
        labels = read_frame(p / "labels.parquet") if (p / "labels.parquet").exists() else None
        ticks = read_frame(p / "ticks.parquet") if with_ticks and (p / "ticks.parquet").exists() else None
        return cls(p, meta, base, higher, features(base, higher), labels, ticks)


def replay_ticks_of(source: Path, columns: str = "", tz: str = "UTC") -> pd.DataFrame:
    """The ticks to replay from ``source``: a dataset folder's ticks.parquet, or a tick file read with the
    ``columns`` mapping (:meth:`ColumnMap.parse`) and ``tz`` (``marlops decide --replay``)."""
    if source.is_dir():
        ticks = MarketDataset.load(source, with_ticks=True).ticks
        if ticks is None:
            raise ValueError(
                f"{source}: dataset has no ticks.parquet (bar imports cannot be replayed tick by tick)"
            )
        return ticks
    return read_ticks(source, ColumnMap.parse(columns) if columns else ColumnMap(), tz=tz)


def dataset_hash(path: str | Path, skip: Collection[str] = ("lineage.json",)) -> str:
    """SHA-256 over a dataset folder's files (names and bytes, sorted): the data a model was trained on.

    ``skip``: file names left out (the pipeline's lineage.json describes the data and is written after it).
    """
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.name not in skip):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def feature_frames(fs: FeatureSet) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature rows as frames keyed by bar end (int64 ns), column names prefixed by matrix."""
    base = pd.DataFrame(fs.tactical, columns=[f"tactical_{c.name}" for c in TACTICAL_COLUMNS])
    base.insert(0, "ts", fs.base["end"].to_numpy())
    base["tactical_warm"] = fs.tactical_warm
    higher = pd.concat(
        [
            pd.DataFrame(fs.structure, columns=[f"structure_{c.name}" for c in STRUCTURE_COLUMNS]),
            pd.DataFrame(fs.regime, columns=[f"regime_{c.name}" for c in REGIME_COLUMNS]),
        ],
        axis=1,
    )
    higher.insert(0, "ts", fs.higher["end"].to_numpy())
    higher["structure_warm"], higher["regime_warm"] = fs.structure_warm, fs.regime_warm
    return base, higher


def stream_ticks(
    ticks: pd.DataFrame, config: FeedConfig, progress: Progress | None = None, chunk: int = 50_000
) -> MarketFeed:
    """Run a tick frame through a live :class:`MarketFeed` (the same path as production)."""
    feed = MarketFeed(config)
    feed.on_frame(ticks, progress, chunk)
    return feed


def write_dataset(
    out: str | Path,
    base: pd.DataFrame,
    higher: pd.DataFrame,
    meta: dict,
    ticks: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
) -> MarketDataset:
    p = Path(out)
    p.mkdir(parents=True, exist_ok=True)
    fs = features_from_bars(base, higher)
    fb, fh = feature_frames(fs)
    write_frame(base, p / "bars_base.parquet")
    write_frame(higher, p / "bars_higher.parquet")
    write_frame(fb, p / "features_base.parquet")
    write_frame(fh, p / "features_higher.parquet")
    if ticks is not None:
        write_frame(ticks, p / "ticks.parquet")
    if labels is not None:
        write_frame(labels, p / "labels.parquet")
    meta = {
        **meta,
        "base_bars": len(base),
        "higher_bars": len(higher),
        "gap_bars": int(base["gap"].sum()) if len(base) else 0,
    }
    (p / "meta.json").write_text(json.dumps(meta, indent=2, default=_json_default))
    return MarketDataset(p, meta, base, higher, fs, labels, ticks)


def dataset_from_ticks(
    out: str | Path,
    ticks: pd.DataFrame,
    config: FeedConfig,
    meta: dict,
    labels: pd.DataFrame | None = None,
    progress: Progress | None = None,
) -> MarketDataset:
    feed = stream_ticks(ticks, config, progress)
    st = feed.stats
    meta = {
        **meta,
        "base_timeframe_ns": config.base_timeframe_ns,
        "higher_timeframe_ns": config.higher_timeframe_ns,
        "ticks_in": st.ticks_in,
        "ticks_accepted": st.ticks_accepted,
        "volume_accepted": st.volume_accepted,
        "rejected": dict(st.rejected),
    }
    return write_dataset(
        out, bars_to_frame(feed.base_bars), bars_to_frame(feed.higher_bars), meta, ticks, labels
    )


def fill_gaps(bars: pd.DataFrame, timeframe_ns: int) -> pd.DataFrame:
    """Insert gap bars (flat at the previous close, zero volume) for missing buckets of imported bars."""
    if bars.empty:
        return bars
    steps = np.diff(bars["start"].to_numpy())
    if (steps % timeframe_ns).any():
        # e.g. daily bars in a local time zone across DST: the UTC grid does not fit, leave them as they are
        return bars.reset_index(drop=True)
    first, last = int(bars["start"].iloc[0]), int(bars["start"].iloc[-1])
    # integer arithmetic: np.arange(first, last + 1, step) sizes itself in floating point, and at ~1.7e18 ns
    # (last - first + 1) / step rounds down to a whole number, dropping the last bar
    starts = first + timeframe_ns * np.arange((last - first) // timeframe_ns + 1, dtype=np.int64)
    full = bars.set_index("start").reindex(starts)
    missing = full["close"].isna().to_numpy()
    if not missing.any():
        return bars.reset_index(drop=True)
    prev_close = full["close"].ffill()
    for col in ("open", "high", "low", "close", "vwap"):
        full[col] = full[col].fillna(prev_close)
    full["volume"] = full["volume"].fillna(0.0)
    full["ticks"] = full["ticks"].fillna(0).astype(np.int64)
    full["gap"] = full["gap"].astype("boolean").fillna(True).astype(bool) | missing
    full["end"] = full.index.to_numpy() + timeframe_ns
    return full.reset_index(names="start")[list(bars.columns)]


def aggregate_bars(base: pd.DataFrame, config: FeedConfig) -> pd.DataFrame:
    """Higher-timeframe bars from base bars, with the same aggregator as the live feed."""
    agg = BarAggregator(config.higher_timeframe_ns, config.origin_ns)
    return bars_to_frame(h for b in frame_to_bars(base) if (h := agg.on_bar(b)) is not None)


def dataset_summary(ds: MarketDataset) -> dict[str, object]:
    """Numbers for the `data inspect` table."""
    base, m = ds.base, ds.meta
    out: dict[str, object] = {
        "source": m.get("source", "?"),
        "first bar": _ts(int(base["start"].iloc[0])) if len(base) else "-",
        "last bar": _ts(int(base["end"].iloc[-1])) if len(base) else "-",
        "base bars": len(base),
        "higher bars": len(ds.higher),
        "gap bars": int(base["gap"].sum()),
        "ticks accepted": m.get("ticks_accepted", "-"),
        "ticks rejected": sum(m.get("rejected", {}).values()) if "rejected" in m else "-",
        "close first → last": f"{base['close'].iloc[0]:.4f} → {base['close'].iloc[-1]:.4f}"
        if len(base)
        else "-",
        "volume": float(base["volume"].sum()),
        "tactical rows warm": int(ds.features.tactical_warm.sum()),
        "regime rows warm": int(ds.features.regime_warm.sum()),
    }
    if len(base) > 1:
        r = np.log(base["close"]).diff().dropna()
        per_year = 365.25 * 24 * 3600 * 1e9 / m.get("base_timeframe_ns", 300e9)
        out["annualized vol"] = f"{float(r.std() * np.sqrt(per_year)):.1%}"
    if ds.labels is not None and len(ds.labels):
        share = ds.labels["regime"].value_counts(normalize=True).sort_index()
        out["regime share"] = ", ".join(f"{REGIMES[int(k)]} {v:.0%}" for k, v in share.items())
    return out


def _ts(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


def _json_default(o: object) -> object:
    if isinstance(o, np.integer | np.floating):
        return o.item()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)  # type: ignore[arg-type]
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
