"""What the regime agent learns from where the data has no regime labels (``regime.targets``).

Real history never carries regime labels; the synthetic market does. Four choices
(``marlops train --regime-targets``, docs/training.md "Your own data: regime targets"):

- ``labels``   — the data's own labels (a synthetic dataset), or the user's ``--labels FILE``
  (:func:`read_regime_labels`: ``ts,regime`` rows, joined onto the bars as of each bar's end).
- ``hmm``      — labels from a 4-state Gaussian HMM
  (:class:`~marlops.training.regime_hmm.HMMRegimeClassifier`) fitted on the training range only, states
  mapped to regimes by rank (most volatile state → volatile, most efficient of the rest → trending, least
  efficient of the remaining two → ranging, the last → transition). The label of bar t is the argmax of
  the *filtered* posterior ``p(state | rows up to t)`` at the latest higher-bar close ≤ t — never smoothed
  or Viterbi, so it cannot change when later bars do.
- ``transfer`` — the regime agent as it was pretrained on the synthetic reference market (from
  ``--init-from``, else trained here on the synthetic train seeds with the ceiling-filter teacher), frozen;
  the other stages train on the user's data.
- ``auto``     — ``labels`` when the data has labels (synthetic) or ``--labels`` is given, else ``hmm``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marlops.agents.types import REGIME_NAMES
from marlops.env.market_env import MarketData
from marlops.market.synthetic import SyntheticMarketConfig
from marlops.training.regime_hmm import HMMRegimeClassifier

TARGETS: tuple[str, ...] = ("auto", "labels", "hmm", "transfer")
_MAX_LISTED = 5  # rows named in one error message


def check_targets(targets: str) -> str:
    if targets not in TARGETS:
        raise ValueError(f"regime.targets: unknown {targets!r}; expected one of {', '.join(TARGETS)}")
    return targets


# --------------------------------------------------------------------------------------------------
# --labels FILE


class LabelsFileError(ValueError):
    """A labels file that cannot be used, naming the rows and fields at fault."""


def _rows_error(path: Path, field_name: str, bad: list[tuple[int, str]], what: str) -> LabelsFileError:
    shown = "; ".join(f"row {i + 1}: {v}" for i, v in bad[:_MAX_LISTED])
    more = f" (and {len(bad) - _MAX_LISTED} more rows)" if len(bad) > _MAX_LISTED else ""
    return LabelsFileError(f"labels {path}: field '{field_name}': {what} — {shown}{more}")


def _parse_ts(raw: pd.Series) -> pd.Series:
    """Timestamps as UTC ns (NaT where missing or unparseable): datetime strings (naive = UTC), or numbers
    as epoch seconds / ms / µs / ns by magnitude."""
    num = pd.to_numeric(raw, errors="coerce")
    if raw.notna().any() and num[raw.notna()].notna().all():
        mag = float(num.abs().max())
        unit = "ns" if mag > 1e17 else "us" if mag > 1e14 else "ms" if mag > 1e11 else "s"
        return pd.to_datetime(num, unit=unit, utc=True, errors="coerce")
    return pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")


def _parse_regime(value: Any) -> int | None:
    """A regime name (case-insensitive) or id (0-3) → id; None if it is neither."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().lower()
    if text in REGIME_NAMES:
        return REGIME_NAMES.index(text)
    if re.fullmatch(r"\d+(\.0+)?", text) and 0 <= int(float(text)) < len(REGIME_NAMES):
        return int(float(text))
    return None


def read_regime_labels(path: str | Path) -> pd.DataFrame:
    """A ``ts,regime`` file (CSV or Parquet) → frame ``ts`` (int64 ns UTC, sorted), ``regime`` (int64).

    ``regime``: a name of :data:`~marlops.agents.types.REGIME_NAMES` (any case) or its id 0-3. Rows are
    numbered from 1 after the header in the errors: a missing or unparseable time, a missing or unknown
    regime, or a time given twice are refused (every such row named, up to five).
    """
    p = Path(path)
    if not p.exists():
        raise LabelsFileError(f"labels {p}: file not found")
    try:
        df = pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pd.read_csv(p, dtype=str)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise LabelsFileError(f"labels {p}: cannot be read ({e})") from None
    cols = {str(c).strip().lower(): c for c in df.columns}
    missing = [c for c in ("ts", "regime") if c not in cols]
    if missing:
        raise LabelsFileError(
            f"labels {p}: no column {', '.join(repr(m) for m in missing)} (columns: {list(df.columns)}); "
            "expected 'ts,regime'"
        )
    if len(df) == 0:
        raise LabelsFileError(f"labels {p}: no rows")
    raw_ts, raw_reg = df[cols["ts"]], df[cols["regime"]]
    ts = _parse_ts(raw_ts)
    bad_ts = [
        (i, "missing" if pd.isna(raw_ts.iloc[i]) else repr(raw_ts.iloc[i])) for i in np.flatnonzero(ts.isna())
    ]
    if bad_ts:
        raise _rows_error(p, "ts", bad_ts, "missing or not a time")
    regime = [_parse_regime(v) for v in raw_reg]
    bad_reg = [
        (i, "missing" if pd.isna(raw_reg.iloc[i]) else repr(raw_reg.iloc[i]))
        for i, r in enumerate(regime)
        if r is None
    ]
    if bad_reg:
        raise _rows_error(
            p, "regime", bad_reg, f"not a regime (expected one of {', '.join(REGIME_NAMES)} or 0-3)"
        )
    ns = ts.astype("int64").to_numpy()
    dup = pd.Series(ns).duplicated(keep=False).to_numpy()
    if dup.any():
        raise _rows_error(
            p, "ts", [(i, str(ts.iloc[i])) for i in np.flatnonzero(dup)], "the same time on several rows"
        )
    out = pd.DataFrame({"ts": ns, "regime": np.asarray(regime, np.int64)}, index=df.index)
    out["row"] = np.arange(len(out))
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


def labels_onto_bars(labels: pd.DataFrame, data: MarketData, path: str | Path = "") -> np.ndarray:
    """Per base bar, the regime of the latest label stamped before the bar's end (as-of join; -1 before the
    first label): a label at a bar's start labels that bar, one at its end the next — the same rule as a
    dataset's own labels (the bucket holding the bar's last instant), so no bar reads a later label. A
    label outside the data's time span (before the first bar's start, after the last bar's end) is an error
    naming its row: it is a label for other data."""
    ends = data.end_ns
    step = int(np.median(np.diff(ends[: min(len(ends), 1000)]))) if len(ends) > 1 else 0
    lo, hi = int(ends[0]) - step, int(ends[-1])
    ts = labels["ts"].to_numpy(np.int64)
    out_of = np.flatnonzero((ts < lo) | (ts > hi))
    if len(out_of):
        span = f"{pd.Timestamp(lo, tz='UTC')} … {pd.Timestamp(hi, tz='UTC')}"
        raise _rows_error(
            Path(path),
            "ts",
            [(int(labels["row"].iloc[i]), str(pd.Timestamp(int(ts[i]), tz="UTC"))) for i in out_of],
            f"outside the data ({span})",
        )
    i = np.searchsorted(ts, ends, side="left") - 1  # ts < end
    return np.where(i >= 0, labels["regime"].to_numpy(np.int64)[np.maximum(i, 0)], -1)


# --------------------------------------------------------------------------------------------------
# HMM labels


def hmm_labeller(markets: list[MarketData], seed: int = 0) -> HMMRegimeClassifier:
    """The HMM fitted on ``markets`` (the training range only) with its states mapped by rank — never by
    labels, even where the markets have some: the ``hmm`` choice must not see them."""
    unlabelled = [dataclasses.replace(d, regime_label=np.full(len(d), -1, np.int64)) for d in markets]
    clf = HMMRegimeClassifier(seed=seed).fit(unlabelled)
    assert clf.mapping == "ordering"
    return clf


def hmm_labels(clf: HMMRegimeClassifier, data: MarketData) -> np.ndarray:
    """(T,) regime per base bar from the filtered posterior of ``clf`` at the latest warm higher-bar close
    ≤ t (-1 before the first one). Causal: entry t reads regime-matrix rows of bars ≤ t only."""
    assert clf.state_to_regime is not None
    closes = np.flatnonzero(data.slow_step)
    closes = closes[closes >= data.warm_from]
    out = np.full(len(data), -1, np.int64)
    if len(closes) == 0:
        return out
    rows = data.regime[data.higher_of[closes], -1, :]
    states = np.argmax(clf.filter_proba(rows), 1)
    at = np.searchsorted(closes, np.arange(len(data)), side="right") - 1
    return np.where(at >= 0, clf.state_to_regime[states[np.maximum(at, 0)]], -1)


# --------------------------------------------------------------------------------------------------
# the choice


@dataclass
class RegimeTargets:
    """The resolved choice: ``kind`` ∈ labels | file | hmm | transfer; ``markets``: what the regime stage
    learns from (None: nothing, the stage is skipped); ``teacher``: the generator whose ceiling filter
    teaches (the reference one only; None: the labels alone teach)."""

    requested: str
    kind: str
    markets: list[MarketData] | None
    teacher: SyntheticMarketConfig | None
    record: dict[str, Any] = field(default_factory=dict)


def has_labels(markets: list[MarketData]) -> bool:
    return any(bool((d.regime_label[d.warm_from :] >= 0).any()) for d in markets)


def resolve_targets(requested: str, has_own_labels: bool, labels_file: str | None) -> str:
    """``requested`` → labels | file | hmm | transfer (``auto``: file if given, else the data's labels if
    it has them, else hmm); an impossible request is an error that says what to do."""
    check_targets(requested)
    if requested == "auto":
        return "file" if labels_file else ("labels" if has_own_labels else "hmm")
    if requested == "labels":
        if labels_file:
            return "file"
        if not has_own_labels:
            raise ValueError(
                "regime.targets: 'labels' but the data has no regime labels; give --labels FILE (ts,regime) "
                "or choose --regime-targets hmm|transfer"
            )
        return "labels"
    if labels_file:
        raise ValueError(
            f"regime.labels: a labels file is only read with --regime-targets labels|auto, not {requested!r}"
        )
    return requested
