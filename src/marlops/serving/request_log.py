"""The decision server's request log: one JSON object per decision, read by the drift job.

Written by the decision server when ``--request-log DIR`` (or ``$MARLOPS_REQUEST_LOG``) is set, as JSON
Lines files ``DIR/requests-YYYYMMDD.jsonl`` (the UTC date of the decision's market time, so a replay of
history lands in the files of its own days). Keys of each object (:class:`RequestRecord`):

- ``ts``: ISO-8601 UTC of the decision's bar (the tick's time for a tick decision);
- ``instrument``; ``clock``: ``"tick"``, ``"5m"`` or ``"30m"`` (the configured timeframe labels);
- ``features``: the latest row of each input matrix the decision used, keyed ``"<matrix>.<column>"`` with
  the matrix and column names of :mod:`marlops.market.matrices` (``"tactical.ret"``,
  ``"regime.vol_level"`` …); empty before the first bar;
- ``regime`` (int, -1 before the regime agent's first output), ``regime_probs`` (list, empty then),
  ``structure_bias`` (float, null without a fresh structure output), ``tactical_action`` (str; "hold" on
  ticks), ``risk_action`` (str; "none" when the risk agent gave nothing), ``overridden`` (bool: any gate
  changed the proposal), ``fail_closed`` (bool), ``reason`` (str or null: the fail-closed reasons joined by
  ``"; "``), ``latency_ms`` (float: the decision server's own time for the request).

Lines are appended with one ``write`` on an ``O_APPEND`` descriptor, so several server processes can share
a folder without tearing lines; a reader skips a torn last line (a process killed mid-write).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from marlops.market.matrices import MATRIX_SPECS

REQUEST_LOG_ENV = "MARLOPS_REQUEST_LOG"
FILE_PREFIX = "requests-"
FILE_SUFFIX = ".jsonl"
BASE_COLUMNS: tuple[str, ...] = (
    "ts",
    "instrument",
    "clock",
    "regime",
    "regime_probs",
    "structure_bias",
    "tactical_action",
    "risk_action",
    "overridden",
    "fail_closed",
    "reason",
    "latency_ms",
)


def feature_names(matrix: str) -> tuple[str, ...]:
    """``"<matrix>.<column>"`` for every column of one of the agents' matrices."""
    return tuple(f"{matrix}.{c.name}" for c in MATRIX_SPECS[matrix].columns)


FEATURE_COLUMNS: tuple[str, ...] = tuple(n for m in MATRIX_SPECS for n in feature_names(m))


class RequestRecord(BaseModel):
    """One decision as the drift job sees it (the module docstring lists the keys)."""

    model_config = ConfigDict(extra="forbid")

    ts: str
    instrument: str
    clock: str
    features: dict[str, float] = Field(default_factory=dict)
    regime: int = -1
    regime_probs: list[float] = Field(default_factory=list)
    structure_bias: float | None = None
    tactical_action: str = "hold"
    risk_action: str = "none"
    overridden: bool = False
    fail_closed: bool = False
    reason: str | None = None
    latency_ms: float = 0.0

    @field_validator("features")
    @classmethod
    def _known_features(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(FEATURE_COLUMNS))
        if unknown:
            raise ValueError(f"unknown feature keys {unknown[:5]}; expected '<matrix>.<column>' names")
        return v


def iso_utc(ts_ns: int) -> str:
    """ISO-8601 UTC with microseconds and a Z (what :class:`RequestRecord` stores in ``ts``)."""
    return pd.Timestamp(int(ts_ns), unit="ns", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def latest_rows(matrices: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The last row of each matrix as ``{"<matrix>.<column>": value}`` (non-finite values left out)."""
    out: dict[str, float] = {}
    for name, m in matrices.items():
        if name not in MATRIX_SPECS or m is None or len(m) == 0:
            continue
        for key, value in zip(feature_names(name), m[-1], strict=True):
            v = float(value)
            if math.isfinite(v):
                out[key] = v
    return out


class RequestLog:
    """Appends :class:`RequestRecord` lines to ``directory/requests-YYYYMMDD.jsonl``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> RequestLog | None:
        d = os.environ.get(REQUEST_LOG_ENV)
        return cls(d) if d else None

    def path_for(self, ts: str) -> Path:
        return self.directory / f"{FILE_PREFIX}{ts[:10].replace('-', '')}{FILE_SUFFIX}"

    def append(self, record: RequestRecord) -> None:
        line = (record.model_dump_json() + "\n").encode()
        day = record.ts[:10]
        with self._lock:
            fd = self._fds.get(day)
            if fd is None:
                if len(self._fds) >= 4:  # keep a few days open; a replay walks through many
                    self._close_all()
                fd = os.open(self.path_for(record.ts), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._fds[day] = fd
            os.write(fd, line)

    def extend(self, records: Iterable[RequestRecord]) -> None:
        for r in records:
            self.append(r)

    def _close_all(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def close(self) -> None:
        with self._lock:
            self._close_all()

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def log_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The request log files of a folder, oldest day first."""
    return sorted(Path(directory).glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"))


def iter_records(directory: str | os.PathLike[str]) -> Iterator[dict]:
    """Every parsed line (torn or invalid lines are skipped)."""
    for path in log_files(directory):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    yield obj


def read_request_log(directory: str | os.PathLike[str], flatten_features: bool = True) -> pd.DataFrame:
    """The request log of ``directory`` as a DataFrame, one row per decision, sorted by ``ts``.

    ``ts`` becomes a UTC ``datetime64``. With ``flatten_features`` (the default) every feature is its own
    column named ``"<matrix>.<column>"`` (all of :data:`FEATURE_COLUMNS`, NaN where a decision had no such
    row) and the ``features`` column is dropped; otherwise ``features`` holds the dicts.
    """
    rows = list(iter_records(directory))
    frame = pd.DataFrame(rows, columns=[*BASE_COLUMNS, "features"])
    if flatten_features:
        feats = pd.DataFrame(
            [r.get("features") or {} for r in rows], columns=list(FEATURE_COLUMNS), dtype="float64"
        )
        frame = pd.concat([frame.drop(columns="features"), feats], axis=1)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    for col, dtype in (("regime", "int64"), ("overridden", "bool"), ("fail_closed", "bool")):
        if len(frame):
            frame[col] = frame[col].astype(dtype)
    frame["structure_bias"] = frame["structure_bias"].astype("float64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)
