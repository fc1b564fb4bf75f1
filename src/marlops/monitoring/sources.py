"""Where the drift job's rows come from, in one shape: per dataset, a frame of ``ts`` (int64 ns, UTC)
plus columns named ``<dataset>.<column>`` (``tactical.ret``, ``regime.vol_level``, ``predictions.regime``).

A source is recognised by what it holds:

- a **request log** (a folder of the decision server's ``requests-YYYYMMDD.jsonl`` files): the
  agents' input rows and their outputs;
- a **Feast feature store** folder (``feature_store.yaml``): the agents' input rows, read point-in-time
  from the offline store (the training window);
- a **market dataset** folder (``meta.json``, from ``marlops data synth|import``): input rows;
- a **Parquet or CSV table** with columns named as above (or ``tactical_ret`` as in a dataset), a
  ``ts`` / ``event_timestamp`` column, and optionally prediction columns.

Input rows are one per bar of the matrix's clock: warm-up rows are dropped, and in a request log the
latest row of a matrix, repeated by every decision until the next bar closes, is kept once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from marlops.agents.types import REGIME_NAMES
from marlops.market.matrices import MATRIX_SPECS
from marlops.monitoring.config import DriftConfig, Window

FEATURE_DATASETS: tuple[str, ...] = ("tactical", "structure", "regime")
FEATURE_COLUMNS: dict[str, tuple[str, ...]] = {
    m: tuple(f"{m}.{c.name}" for c in MATRIX_SPECS[m].columns) for m in FEATURE_DATASETS
}
# Agent outputs compared by the prediction drift (categorical unless listed as numerical).
PREDICTION_NUMERICAL: tuple[str, ...] = ("predictions.structure_bias",)
PREDICTION_CATEGORICAL: tuple[str, ...] = (
    "predictions.regime",
    "predictions.tactical_action",
    "predictions.risk_action",
    "predictions.overridden",
    "predictions.fail_closed",
)
PREDICTION_COLUMNS = PREDICTION_CATEGORICAL + PREDICTION_NUMERICAL
_TIME_COLUMNS = ("ts", "event_timestamp", "timestamp")


class SourceError(ValueError):
    """A source cannot be read or holds bad values; the message names the file, row and column."""


@dataclass
class DriftData:
    """Rows of one side (reference or current) of a drift comparison."""

    source: str
    kind: str  # request-log | feast | dataset | table
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # rows dropped per dataset (NaN, warm-up)

    def span(self) -> tuple[int, int] | None:
        """(first, last) ts over every dataset, ns; None if there are no rows."""
        ts = [f["ts"] for f in self.frames.values() if len(f)]
        if not ts:
            return None
        return int(min(t.min() for t in ts)), int(max(t.max() for t in ts))

    def rows(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.frames.items()}

    def before(self, ns: int) -> DriftData:
        """The rows with ts < ``ns``."""
        frames = {k: f[f["ts"] < ns].reset_index(drop=True) for k, f in self.frames.items()}
        return DriftData(self.source, self.kind, frames, dict(self.dropped))

    def window(self, w: Window, default_end: int | None = None) -> DriftData:
        """The rows inside ``w`` (``last`` counts back from ``w.end``, else ``default_end``, else the
        newest row of any dataset)."""
        span = self.span()
        if span is None:
            return self
        lo, hi = -(2**62), 2**62
        if w.start is not None:
            lo = _ns(w.start)
        end = _ns(w.end) if w.end is not None else default_end
        if end is not None:
            hi = end
        if w.last is not None:
            ref_end = end if end is not None else span[1]
            lo = ref_end - int(w.last.total_seconds() * 1e9)
            hi = min(hi, ref_end)
        # `last` is half-open on the left (a 2-day window holds the bars that end after its start)
        left_open = w.last is not None

        def pick(f: pd.DataFrame) -> pd.DataFrame:
            after = f["ts"] > lo if left_open else f["ts"] >= lo
            return f[after & (f["ts"] <= hi)].reset_index(drop=True)

        frames = {k: pick(f) for k, f in self.frames.items()}
        return DriftData(self.source, self.kind, frames, dict(self.dropped))


def _ns(t: datetime) -> int:
    return int(pd.Timestamp(t).value)


# ------------------------------------------------------------------------------------------- detection


def source_kind(path: Path) -> str:
    if path.is_dir():
        if (path / "feature_store.yaml").exists():
            return "feast"
        if (path / "meta.json").exists():
            return "dataset"
        if any(path.glob("requests-*.jsonl")):
            return "request-log"
        raise SourceError(
            f"{path}: not a drift source (expected requests-*.jsonl files, a Feast feature store folder "
            "with feature_store.yaml, or a market dataset with meta.json)"
        )
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".csv"):
        return "table"
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    raise SourceError(
        f"{path}: unsupported file type {suffix!r} (expected .parquet or .csv, or a request log folder)"
    )


def load_source(path: str | Path, config: DriftConfig, window: Window | None = None) -> DriftData:
    """Read every dataset ``config`` asks for from ``path``, restricted to ``window`` if given."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    kind = source_kind(p)
    data = {
        "request-log": _from_request_log,
        "feast": _from_feast,
        "dataset": _from_dataset,
        "table": _from_table,
    }[kind](p, config, window)
    for name, frame in data.frames.items():
        _check_finite(frame, f"{p} ({name})")
    return data.window(window) if window is not None else data


# ---------------------------------------------------------------------------------------- validation


def _check_finite(frame: pd.DataFrame, where: str) -> None:
    for col in frame.columns:
        if col == "ts" or not pd.api.types.is_numeric_dtype(frame[col]) or frame[col].dtype == bool:
            continue
        v = frame[col].to_numpy(dtype=float)
        bad = np.isinf(v)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SourceError(
                f"{where}: column {col!r} has {int(bad.sum())} infinite value(s) (first at row {i}); "
                "features must be finite"
            )


def _feature_frame(df: pd.DataFrame, matrix: str, dedup: bool, dropped: dict[str, int]) -> pd.DataFrame:
    """One matrix's rows: all its columns present and finite-or-NaN, NaN rows dropped, warm-up rows
    (all zeros: the market layer writes 0 for values still in warm-up) dropped, repeats dropped."""
    cols = list(FEATURE_COLUMNS[matrix])
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SourceError(f"missing feature column(s) {missing} for the {matrix} matrix")
    out = df[["ts", *cols]].copy()
    for c in cols:
        if not pd.api.types.is_numeric_dtype(out[c]):
            try:
                out[c] = pd.to_numeric(out[c])
            except (ValueError, TypeError) as e:
                raise SourceError(f"column {c!r}: not numeric ({e})") from e
    n0 = len(out)
    values = out[cols].to_numpy(dtype=float)
    keep = ~np.isnan(values).any(axis=1) & (values != 0).any(axis=1)
    out = out[keep]
    if dedup and len(out):
        v = out[cols].to_numpy(dtype=float)
        same = np.zeros(len(out), dtype=bool)
        same[1:] = (v[1:] == v[:-1]).all(axis=1)
        out = out[~same]
    dropped[matrix] = dropped.get(matrix, 0) + n0 - len(out)
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------- request log


def _request_log_files(path: Path) -> list[Path]:
    from marlops.serving.request_log import log_files

    files = log_files(path)
    if not files:
        raise SourceError(f"{path}: no requests-*.jsonl files")
    return files


def validate_request_log(path: str | Path) -> int:
    """Check every line against the decision server's :class:`RequestRecord`; errors name the file, the
    line and the field. A torn last line (a server killed mid-write) is skipped. Returns the count."""
    from pydantic import ValidationError

    from marlops.serving.request_log import RequestRecord

    n = 0
    for f in _request_log_files(Path(path)):
        data = f.read_bytes()
        lines = data.decode("utf-8", errors="replace").splitlines()
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                RequestRecord.model_validate_json(line)
            except ValidationError as e:
                if lineno == len(lines) and not data.endswith(b"\n"):
                    continue  # torn last line: the reader skips it too
                first = e.errors()[0]
                loc = ".".join(str(p) for p in first["loc"]) or "(line)"
                more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
                raise SourceError(f"{f}:{lineno}: field {loc!r}: {first['msg']}{more}") from None
            n += 1
    if n == 0:
        raise SourceError(f"{path}: the request log is empty")
    return n


def read_request_records(path: str | Path) -> pd.DataFrame:
    """The request log as one frame (the serving part's ``read_request_log``: ``ts`` as UTC datetimes,
    one ``"<matrix>.<column>"`` column per feature), after :func:`validate_request_log`."""
    from marlops.serving.request_log import read_request_log

    validate_request_log(path)
    try:
        return read_request_log(path, flatten_features=True)
    except (ValueError, TypeError) as e:  # e.g. a ts that is not ISO-8601
        raise SourceError(f"{path}: {e}") from e


def _from_request_log(path: Path, config: DriftConfig, window: Window | None) -> DriftData:
    del window  # applied by load_source
    if not path.is_dir():
        raise SourceError(f"{path}: a request log is a folder of requests-YYYYMMDD.jsonl files")
    records = read_request_records(path)
    instruments = records["instrument"].astype(str)
    if config.instrument in set(instruments):
        records = records[instruments == config.instrument]
    elif instruments.nunique() > 1:
        raise SourceError(
            f"{path}: no decisions for instrument {config.instrument!r} (the log has "
            f"{sorted(instruments.unique())}); set instrument in the drift config"
        )
    records = records.assign(ts=records["ts"].astype("int64")).reset_index(drop=True)
    data = DriftData(str(path), "request-log")
    for m in FEATURE_DATASETS:
        if m in config.datasets:
            data.frames[m] = _feature_frame(records, m, dedup=True, dropped=data.dropped)
    if "predictions" in config.datasets:
        try:
            data.frames["predictions"] = _predictions(records)
        except SourceError as e:
            raise SourceError(f"{path}: {e}") from None
    return data


def _predictions(records: pd.DataFrame) -> pd.DataFrame:
    names = dict(enumerate(REGIME_NAMES))
    bad = ~records["regime"].isin([-1, *names])
    if bad.any():
        raise SourceError(
            f"field 'regime' must be -1 (no output yet) or 0..{len(names) - 1}, "
            f"got {records['regime'][bad].iloc[0]}"
        )
    return pd.DataFrame(
        {
            "ts": records["ts"].to_numpy(),
            # -1: the regime agent had no output yet (the decision failed closed)
            "predictions.regime": [names.get(int(r), "none") for r in records["regime"]],
            "predictions.tactical_action": records["tactical_action"].astype(str).to_numpy(),
            "predictions.risk_action": records["risk_action"].astype(str).to_numpy(),
            "predictions.overridden": records["overridden"].astype(bool).astype(str).to_numpy(),
            "predictions.fail_closed": records["fail_closed"].astype(bool).astype(str).to_numpy(),
            "predictions.structure_bias": records["structure_bias"].astype(float).to_numpy(),
        }
    ).reset_index(drop=True)


# ----------------------------------------------------------------------------------- dataset, feast


def _rename_prefixed(df: pd.DataFrame) -> pd.DataFrame:
    """``tactical_ret`` (dataset / Feast naming) → ``tactical.ret`` (the request log's)."""
    names = {}
    for m in FEATURE_DATASETS:
        for col in FEATURE_COLUMNS[m]:
            names[col.replace(".", "_", 1)] = col
    return df.rename(columns=names)


def _warm_rows(df: pd.DataFrame, matrix: str, dropped: dict[str, int]) -> pd.DataFrame:
    warm = df[f"{matrix}_warm"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    dropped[matrix] = dropped.get(matrix, 0) + int((~warm).sum())
    return _feature_frame(df[warm], matrix, dedup=False, dropped=dropped)


def _from_dataset(path: Path, config: DriftConfig, window: Window | None) -> DriftData:
    del window
    data = DriftData(str(path), "dataset")
    wanted = [m for m in FEATURE_DATASETS if m in config.datasets]
    for m in wanted:
        f = path / ("features_base.parquet" if m == "tactical" else "features_higher.parquet")
        if not f.exists():
            raise SourceError(f"{path}: dataset has no {f.name}")
        df = _rename_prefixed(pd.read_parquet(f))
        data.frames[m] = _warm_rows(df, m, data.dropped)
    return data


def _from_feast(path: Path, config: DriftConfig, window: Window | None) -> DriftData:
    """Point-in-time reads from the offline store at every bar end of the window (what a training set
    of the window joins)."""
    from marlops.features import entity_frame, open_store, training_set
    from marlops.features.schema import BASE_SOURCE, EVENT_TIMESTAMP, HIGHER_SOURCE
    from marlops.features.sources import source_file

    store = open_store(path)
    data = DriftData(str(path), "feast")
    for m in (m for m in FEATURE_DATASETS if m in config.datasets):
        src = source_file(BASE_SOURCE if m == "tactical" else HIGHER_SOURCE, config.instrument, path)
        if not src.exists():
            raise SourceError(f"{path}: the feature store has no rows for instrument {config.instrument!r}")
        ts = pd.read_parquet(src, columns=[EVENT_TIMESTAMP])[EVENT_TIMESTAMP]
        ns = pd.Series(pd.to_datetime(ts, utc=True).astype("int64").to_numpy()).drop_duplicates()
        if window is not None:  # only query the window's bars (one entity row per bar end)
            tmp = DriftData("", "", {"x": pd.DataFrame({"ts": ns.to_numpy()})}).window(window)
            ns = tmp.frames["x"]["ts"]
        if ns.empty:
            data.frames[m] = pd.DataFrame(columns=["ts", *FEATURE_COLUMNS[m]])
            continue
        got = training_set(store, entity_frame(config.instrument, ns.to_numpy()), service=m)
        got["ts"] = ns.to_numpy()
        data.frames[m] = _warm_rows(_rename_prefixed(got), m, data.dropped)
    return data


# ----------------------------------------------------------------------------------------------- table


def _as_ns(values: pd.Series, where: str) -> pd.Series:
    try:
        return pd.to_datetime(values, utc=True, format="mixed").astype("int64")
    except (ValueError, TypeError) as e:
        raise SourceError(f"{where}: column 'ts' is not a time ({e})") from e


def _from_table(path: Path, config: DriftConfig, window: Window | None) -> DriftData:
    del window
    try:
        df = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as e:  # pyarrow / pandas raise many types for a bad file
        raise SourceError(f"{path}: cannot read the table ({e})") from e
    time_col = next((c for c in _TIME_COLUMNS if c in df.columns), None)
    if time_col is None:
        raise SourceError(f"{path}: no time column (one of {list(_TIME_COLUMNS)})")
    df = _rename_prefixed(df)
    ts = df[time_col]
    df["ts"] = ts.astype("int64") if pd.api.types.is_integer_dtype(ts) else _as_ns(ts, str(path))
    data = DriftData(str(path), "table")
    for m in FEATURE_DATASETS:
        if m not in config.datasets or not any(c in df.columns for c in FEATURE_COLUMNS[m]):
            continue
        try:
            data.frames[m] = (
                _warm_rows(df, m, data.dropped)
                if f"{m}_warm" in df.columns
                else _feature_frame(df, m, dedup=False, dropped=data.dropped)
            )
        except SourceError as e:
            raise SourceError(f"{path}: {e}") from e
    if "predictions" in config.datasets and any(c in df.columns for c in PREDICTION_COLUMNS):
        missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
        if missing:
            raise SourceError(f"{path}: prediction columns missing: {missing}")
        data.frames["predictions"] = df[["ts", *PREDICTION_COLUMNS]].astype(
            {c: str for c in PREDICTION_CATEGORICAL}
        )
    if not data.frames:
        raise SourceError(
            f"{path}: no feature or prediction columns (expected e.g. {FEATURE_COLUMNS['tactical'][0]!r} "
            f"or {PREDICTION_COLUMNS[0]!r})"
        )
    return data
