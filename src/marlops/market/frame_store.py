"""The canonical tick and bar frames' columns and dtypes, and frames as files (the dataset store's I/O):
:func:`write_frame` writes Parquet or CSV by suffix, :func:`read_frame` reads either back with the
canonical dtypes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from marlops.market.bars import BAR_COLUMNS
from marlops.market.data_files import DataFileError, suffix_kind

TICK_COLUMNS: tuple[str, ...] = ("ts", "price", "size", "side")
TICK_DTYPES: dict[str, str] = {"ts": "int64", "price": "float64", "size": "float64", "side": "int8"}
BAR_DTYPES: dict[str, str] = {
    "start": "int64",
    "end": "int64",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",
    "vwap": "float64",
    "ticks": "int64",
    "gap": "bool",
}


def write_frame(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` (no index) as Parquet or CSV by suffix; parent directories are created."""
    path = Path(path)
    kind = suffix_kind(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)  # floats are written with repr, so they read back exactly
    return path


def read_frame(path: str | Path) -> pd.DataFrame:
    """Inverse of :func:`write_frame`; canonical tick/bar frames get their dtypes back from CSV too."""
    path = Path(path)
    kind = suffix_kind(path)
    if not path.exists():
        raise DataFileError(path, "file not found")
    if kind == "parquet":
        return pd.read_parquet(path)
    try:
        df = pd.read_csv(path, float_precision="round_trip", low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataFileError(path, "no rows") from None
    cols = tuple(df.columns)
    if cols == TICK_COLUMNS:
        df = df.astype(TICK_DTYPES)
    elif cols == BAR_COLUMNS:
        df = df.astype(BAR_DTYPES)
    return df


__all__ = ["BAR_DTYPES", "TICK_COLUMNS", "TICK_DTYPES", "read_frame", "write_frame"]
