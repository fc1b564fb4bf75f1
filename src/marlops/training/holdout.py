"""Which bars of a dataset a run may learn from, and the check that evaluation never tests on them.

A dataset run (``marlops train --dataset X``) keeps the last ``holdout_fraction`` of X's base bars for
``marlops evaluate --data X --folds N``, whose test blocks cover exactly that tail (its
``walk_forward_splits`` test fraction, 0.5): the run trains on ``[0, validation_start)``, validates on
``[validation_start, trained_end)`` (the risk agent's calibration and the figures printed) and never reads a
bar at or after ``trained_end`` — the HMM labeller included. ``summary.json`` records the ranges
(:func:`split_record`) and :func:`overlap_error` is what ``evaluate`` asks before it tests the model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marlops.env.market_env import MarketData

_FINGERPRINT_BARS = 256


@dataclass(frozen=True)
class DatasetSplit:
    n_bars: int
    validation_start: int  # training: [0, validation_start)
    trained_end: int  # validation: [validation_start, trained_end); held out: [trained_end, n_bars)


def dataset_split(n_bars: int, holdout_fraction: float, validation_fraction: float) -> DatasetSplit:
    """The ranges above; ``trained_end`` is the first test bar of ``walk_forward_splits(n_bars, k,
    holdout_fraction)`` (the same rounding)."""
    trained_end = n_bars - round(n_bars * holdout_fraction)
    validation_start = trained_end - round(trained_end * validation_fraction)
    if not 0 < validation_start < trained_end:
        raise ValueError(
            f"dataset: {n_bars} base bars leave no training and validation part "
            f"(holdout_fraction {holdout_fraction}, validation_fraction {validation_fraction})"
        )
    return DatasetSplit(n_bars, validation_start, trained_end)


def fingerprint(data: MarketData) -> str:
    """Identifies a history (its first bars' ends and closes), whatever its length or folder."""
    k = min(len(data), _FINGERPRINT_BARS)
    h = hashlib.sha256(np.ascontiguousarray(data.end_ns[:k], np.int64).tobytes())
    h.update(np.ascontiguousarray(data.close[:k], np.float64).tobytes())
    return h.hexdigest()[:16]


def _ts(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").isoformat()


def split_record(
    data: MarketData, split: DatasetSplit, holdout_fraction: float, dataset: str
) -> dict[str, Any]:
    """What ``summary.json`` says about the bars a dataset run read (indices are base bars of the dataset;
    a range's times are its first and last bar's ends; None: an empty range)."""

    def rng(a: int, b: int) -> dict[str, Any] | None:
        if a >= b:
            return None
        return {"bars": [a, b], "first": _ts(data.end_ns[a]), "last": _ts(data.end_ns[b - 1])}

    return {
        "dataset": dataset,
        "fingerprint": fingerprint(data),
        "n_bars": split.n_bars,
        "holdout_fraction": holdout_fraction,
        "train": rng(0, split.validation_start),
        "validation": rng(split.validation_start, split.trained_end),
        "trained": {
            **(rng(0, split.trained_end) or {}),
            "last_end_ns": int(data.end_ns[split.trained_end - 1]),
        },
        "held_out": rng(split.trained_end, split.n_bars),
    }


def model_summary(model: str | Path) -> dict[str, Any] | None:
    """The ``summary.json`` of a ``marlops train`` output (given it or its ``agents/`` folder), if any."""
    p = Path(model)
    for f in (p / "summary.json", p.parent / "summary.json"):
        if f.exists():
            return json.loads(f.read_text())
    return None


def overlap_error(
    summary: dict[str, Any] | None, data: MarketData, dataset: str, test_start: int
) -> str | None:
    """Why a model must not be tested on ``data`` from base bar ``test_start`` on (None: it may).

    Refused: a model whose recorded trained range, on the same history (same fingerprint), reaches the first
    test bar; or one trained on this very dataset folder before ranges were recorded (it read all of it).
    """
    if not summary:
        return None
    rec = summary.get("data_split")
    first_test = f"bar {test_start} ({_ts(data.end_ns[test_start])})"
    if rec is None:
        trained_on = (summary.get("config") or {}).get("dataset")
        if trained_on and str(Path(trained_on).resolve()) == str(Path(dataset).resolve()):
            return (
                f"the model was trained on all of {dataset} (no held-out range recorded); "
                f"first test {first_test}"
            )
        return None
    if rec.get("fingerprint") != fingerprint(data):
        return None
    last = int(rec["trained"]["last_end_ns"])
    if last >= int(data.end_ns[test_start]):
        return (
            f"the model was trained on this history up to {rec['trained']['last']} (bars "
            f"{rec['trained']['bars']}), which reaches the first test block at {first_test}; train with "
            "--holdout-fraction ≥ the test fraction (0.5)"
        )
    return None
