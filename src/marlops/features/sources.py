"""The Feast sources: Parquet files written from a market dataset (no Feast import needed).

Per instrument and source one file, ``FEAST_DIR/data/sources/<source>/<instrument>.parquet``; the
FileSources point at the folders, so every instrument written there is served. Writing an
instrument again replaces its files (atomically: a reader never sees half a file).

- ``base_bar_features``: one row per base bar, keyed by ``instrument`` and ``event_timestamp`` = the
  bar's end (when the row becomes known); the tactical columns, ``tactical_warm`` and
  ``tactical_bar_end`` (the same instant as int64 ns).
- ``higher_bar_features``: one row per higher bar; the structure and regime columns, their warm flags
  and bar ends.
- ``matrix_windows``: one row per base bar for the latest ``window_bars`` base bars (all with
  ``None``): the three matrices an agent reads at that bar's close, flattened (float32, rows oldest
  first), their ready flags, ``bar_end`` and ``higher_bar_end``. This is what the online store serves
  (docs/features.md, "Online windows"); the values are exactly the market layer's batch windows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.lib.stride_tricks import sliding_window_view

from marlops.features.schema import (
    BASE_SOURCE,
    DEFAULT_WINDOW_BARS,
    ENTITY,
    EVENT_TIMESTAMP,
    HIGHER_SOURCE,
    REGIME_FEATURES,
    STRUCTURE_FEATURES,
    TACTICAL_FEATURES,
    WINDOW_BAR_END,
    WINDOW_HIGHER_END,
    WINDOW_MATRICES,
    WINDOW_SOURCE,
    bar_end_field,
    check_instrument,
    feast_dir,
    matrix_field,
    ready_field,
    source_dir,
)
from marlops.market.dataset import MarketDataset
from marlops.market.feed import FeatureSet
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL, MatrixSpec, ready_mask


def _timestamps(ns: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(np.asarray(ns, np.int64), unit="ns", utc=True))


def _featureset(data: MarketDataset | FeatureSet) -> FeatureSet:
    return data.features if isinstance(data, MarketDataset) else data


def base_frame(data: MarketDataset | FeatureSet, instrument: str) -> pd.DataFrame:
    """Rows of the ``base_bar_features`` source."""
    fs = _featureset(data)
    end = fs.base["end"].to_numpy(np.int64)
    out = pd.DataFrame(np.asarray(fs.tactical, np.float64), columns=list(TACTICAL_FEATURES))
    out["tactical_warm"] = np.asarray(fs.tactical_warm, bool)
    out[bar_end_field("tactical")] = end
    out.insert(0, EVENT_TIMESTAMP, _timestamps(end))
    out.insert(0, ENTITY, check_instrument(instrument))
    return out


def higher_frame(data: MarketDataset | FeatureSet, instrument: str) -> pd.DataFrame:
    """Rows of the ``higher_bar_features`` source (structure and regime share the higher bars)."""
    fs = _featureset(data)
    end = fs.higher["end"].to_numpy(np.int64)
    out = pd.concat(
        [
            pd.DataFrame(np.asarray(fs.structure, np.float64), columns=list(STRUCTURE_FEATURES)),
            pd.DataFrame(np.asarray(fs.regime, np.float64), columns=list(REGIME_FEATURES)),
        ],
        axis=1,
    )
    out["structure_warm"] = np.asarray(fs.structure_warm, bool)
    out["regime_warm"] = np.asarray(fs.regime_warm, bool)
    out[bar_end_field("structure")] = end
    out[bar_end_field("regime")] = end
    out.insert(0, EVENT_TIMESTAMP, _timestamps(end))
    out.insert(0, ENTITY, check_instrument(instrument))
    return out


def _padded_windows(rows: np.ndarray, spec: MatrixSpec) -> np.ndarray:
    """(T + 1, n, C) float32 view: [i + 1] is the window ending at row i, [0] the all-zero window."""
    n, c = spec.shape
    padded = np.concatenate([np.zeros((n, c), np.float32), np.asarray(rows, np.float32).reshape(-1, c)])
    return sliding_window_view(padded, (n, c))[:, 0]


@dataclass(frozen=True)
class Windows:
    """The matrices at the close of a set of base bars (what :func:`window_table` writes)."""

    bar_end: np.ndarray  # (k,) int64 ns
    higher_end: np.ndarray  # (k,) int64 ns, -1 before the first higher bar
    matrices: dict[str, np.ndarray]  # name → (k, rows, cols) float32
    ready: dict[str, np.ndarray]  # name → (k,) bool


def windows_at(data: MarketDataset | FeatureSet, indices: np.ndarray | None = None) -> Windows:
    """The three matrices at the close of base bars ``indices`` (default: all), as the agents see them.

    The tactical window ends at the base bar; the structure and regime windows end at the latest
    higher bar that has closed by then (end ≤ the base bar's end), exactly like the environment's
    ``MarketData`` and the live feed's ring matrices.
    """
    fs = _featureset(data)
    b_end = fs.base["end"].to_numpy(np.int64)
    h_end = fs.higher["end"].to_numpy(np.int64)
    idx = np.arange(len(b_end)) if indices is None else np.asarray(indices, np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= len(b_end)):
        raise IndexError(f"base bar index out of range 0..{len(b_end) - 1}")
    higher_of = np.searchsorted(h_end, b_end[idx], side="right") - 1
    rows = {TACTICAL.name: fs.tactical, STRUCTURE.name: fs.structure, REGIME.name: fs.regime}
    warm = {TACTICAL.name: fs.tactical_warm, STRUCTURE.name: fs.structure_warm, REGIME.name: fs.regime_warm}
    matrices, ready = {}, {}
    for spec in WINDOW_MATRICES:
        at = idx if spec is TACTICAL else higher_of  # -1 → the zero window at [0]
        matrices[spec.name] = np.ascontiguousarray(_padded_windows(rows[spec.name], spec)[at + 1])
        r = ready_mask(np.asarray(warm[spec.name], bool), spec.rows)
        ready[spec.name] = (
            np.where(at >= 0, r[np.maximum(at, 0)], False) if len(r) else np.zeros(len(at), bool)
        )
    higher_end = np.where(higher_of >= 0, h_end[np.maximum(higher_of, 0)] if len(h_end) else -1, -1)
    return Windows(b_end[idx], higher_end.astype(np.int64), matrices, ready)


def window_frame(
    data: MarketDataset | FeatureSet, instrument: str, indices: np.ndarray | None = None
) -> pd.DataFrame:
    """Rows of the ``matrix_windows`` source (also what ``online.push_matrices`` writes)."""
    w = windows_at(data, indices)
    out = pd.DataFrame({ENTITY: check_instrument(instrument), EVENT_TIMESTAMP: _timestamps(w.bar_end)})
    out[WINDOW_BAR_END] = w.bar_end
    out[WINDOW_HIGHER_END] = w.higher_end
    for name, m in w.matrices.items():
        out[matrix_field(name)] = list(m.reshape(len(m), -1))
    for name, r in w.ready.items():
        out[ready_field(name)] = r
    return out


def _window_table(frame: pd.DataFrame) -> pa.Table:
    """Arrow table with list<float32> matrix columns (pandas would guess object columns)."""
    cols = {}
    for name in frame.columns:
        values = frame[name]
        if name.endswith("_matrix"):
            flat = np.concatenate(list(values)) if len(values) else np.zeros(0, np.float32)
            offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(np.int32)
            cols[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32()))
        else:
            cols[name] = pa.array(values)
    return pa.table(cols)


def _write(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def source_file(source: str, instrument: str, directory: str | os.PathLike[str] | None = None) -> Path:
    return feast_dir(directory) / source_dir(source) / f"{check_instrument(instrument)}.parquet"


def write_sources(
    data: MarketDataset | FeatureSet,
    instrument: str,
    directory: str | os.PathLike[str] | None = None,
    window_bars: int | None = DEFAULT_WINDOW_BARS,
) -> dict[str, Path]:
    """Write the three Feast source files of ``instrument`` from a market dataset; returns source → path.

    ``window_bars``: how many of the latest base bars get a row in ``matrix_windows`` (None: every
    bar; each row holds 1,860 floats, so a year of 5 m bars would be ~0.8 GB).
    """
    check_instrument(instrument)
    fs = _featureset(data)
    if window_bars is not None and window_bars < 1:
        raise ValueError(f"window_bars must be ≥ 1 or None, got {window_bars}")
    n = len(fs.base)
    first = 0 if window_bars is None else max(0, n - window_bars)
    return {
        BASE_SOURCE: _write(
            pa.Table.from_pandas(base_frame(fs, instrument), preserve_index=False),
            source_file(BASE_SOURCE, instrument, directory),
        ),
        HIGHER_SOURCE: _write(
            pa.Table.from_pandas(higher_frame(fs, instrument), preserve_index=False),
            source_file(HIGHER_SOURCE, instrument, directory),
        ),
        WINDOW_SOURCE: _write(
            _window_table(window_frame(fs, instrument, np.arange(first, n))),
            source_file(WINDOW_SOURCE, instrument, directory),
        ),
    }


def source_time_range(directory: str | os.PathLike[str] | None = None) -> tuple[int, int] | None:
    """(first, last) event timestamp in ns over every source file, None when there is none."""
    lo, hi = None, None
    root = feast_dir(directory)
    for source in (BASE_SOURCE, HIGHER_SOURCE, WINDOW_SOURCE):
        for f in sorted((root / source_dir(source)).glob("*.parquet")):
            ts = pq.read_table(f, columns=[EVENT_TIMESTAMP]).column(0)
            if len(ts) == 0:
                continue
            v = ts.cast(pa.int64()).to_numpy()
            lo = int(v.min()) if lo is None else min(lo, int(v.min()))
            hi = int(v.max()) if hi is None else max(hi, int(v.max()))
    return None if lo is None else (lo, hi)
