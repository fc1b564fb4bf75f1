"""Drift of the agents' inputs and outputs, computed by Evidently, judged with calibrated thresholds.

For every dataset (tactical, structure, regime inputs; the agents' predictions) the job runs one
Evidently ``Report([DataDriftPreset(...)])`` of the current window against the reference window:
a score per column (``ValueDrift``; Wasserstein distance normed by the reference std for numbers,
Jensen-Shannon distance for categories), a per-column verdict against that column's threshold, and
the dataset's share of drifted columns (``DriftedColumnsCount``), which drifts at ``drift_share``.

Thresholds. Market features are autocorrelated and regimes last hours to days, so two windows of
the *same* market differ by far more than Evidently's default 0.1: a week that was mostly trending is
not drift. Each column's threshold is therefore calibrated on the reference itself: the ``quantile``
(0.95) of the scores of ``windows`` (24) reference windows as long as the current one against the
rest of the reference, times ``margin`` (1.25), never below Evidently's default (``num_floor`` /
``cat_floor``). The job's verdict is drift when any dataset drifts or any ``key_columns`` column does.
docs/monitoring.md has the measured false-positive and detection rates behind these defaults
(``python -m marlops.monitoring.calibrate``).
"""

from __future__ import annotations

import html
import logging
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from marlops.monitoring.config import DriftConfig, Thresholds
from marlops.monitoring.sources import PREDICTION_CATEGORICAL, DriftData

log = logging.getLogger(__name__)

Kind = Literal["num", "cat"]


class ColumnDrift(BaseModel):
    column: str
    kind: Kind
    method: str
    score: float
    threshold: float
    threshold_source: Literal["calibrated", "floor", "fixed"]
    reference_quantile: float | None = None
    """The calibration's quantile of reference-window scores (None when not calibrated)."""
    drifted: bool
    key: bool = False


class DatasetDrift(BaseModel):
    name: str
    rows_reference: int
    rows_current: int
    columns: list[ColumnDrift] = Field(default_factory=list)
    drifted_columns: int = 0
    share: float = 0.0
    drift_share: float
    drifted: bool = False
    skipped: str | None = None
    calibration: str | None = None
    """Why thresholds were not calibrated (e.g. a reference shorter than two current windows)."""
    report: str | None = None


class SideSummary(BaseModel):
    source: str
    kind: str
    start: datetime | None
    end: datetime | None
    rows: dict[str, int]
    dropped: dict[str, int]


class DriftResult(BaseModel):
    run_id: str
    created_at: datetime
    drift: bool
    verdict: str
    drifted_datasets: list[str]
    drifted_key_columns: list[str]
    reference: SideSummary
    current: SideSummary
    datasets: list[DatasetDrift]
    thresholds: Thresholds
    key_columns: list[str]
    files: dict[str, str] = Field(default_factory=dict)
    deliveries: list[dict] = Field(default_factory=list)

    def scores(self) -> dict[str, float]:
        return {c.column: c.score for d in self.datasets for c in d.columns}

    def column(self, name: str) -> ColumnDrift:
        for d in self.datasets:
            for c in d.columns:
                if c.column == name:
                    return c
        raise KeyError(name)

    def dataset(self, name: str) -> DatasetDrift:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(name)


# -------------------------------------------------------------------------------------- calibration


def _kinds(frame: pd.DataFrame) -> dict[str, Kind]:
    return {c: ("cat" if c in PREDICTION_CATEGORICAL else "num") for c in frame.columns if c != "ts"}


def _stattest_score(ref: pd.Series, cur: pd.Series, kind: Kind, method: str) -> float:
    """One column's score by the same Evidently stattest the report runs (no report overhead)."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    ct = ColumnType.Categorical if kind == "cat" else ColumnType.Numerical
    ref, cur = ref.dropna(), cur.dropna()  # as the report does (Evidently drops missing values)
    if ref.empty or cur.empty:
        return 0.0
    test = get_stattest(ref, cur, ct, method)
    return float(test(ref, cur, ct, None).drift_score)


def calibrate(
    reference: pd.DataFrame, kinds: dict[str, Kind], n_current: int, th: Thresholds
) -> tuple[dict[str, tuple[float, str, float | None]], str | None]:
    """Per column (threshold, source, reference quantile), and why calibration was skipped (or None).

    Reference windows of ``n_current`` consecutive rows, evenly spaced, are each scored against the
    rest of the reference; the threshold is max(floor, quantile × margin).
    """
    cols = list(kinds)
    floors = {c: th.cat_floor if kinds[c] == "cat" else th.num_floor for c in cols}
    out: dict[str, tuple[float, str, float | None]] = {
        c: (th.per_column[c], "fixed", None) if c in th.per_column else (floors[c], "floor", None)
        for c in cols
    }
    n = len(reference)
    if not th.calibrate:
        return out, "calibration off"
    if n < 2 * n_current:
        return out, f"reference ({n} rows) shorter than two current windows ({n_current} rows each)"
    starts = np.unique(np.linspace(0, n - n_current, th.windows).astype(int))
    todo = [c for c in cols if c not in th.per_column]
    null: dict[str, list[float]] = {c: [] for c in todo}
    for s in starts:
        win = reference.iloc[s : s + n_current]
        rest = pd.concat([reference.iloc[:s], reference.iloc[s + n_current :]])
        for c in todo:
            method = th.cat_method if kinds[c] == "cat" else th.num_method
            null[c].append(_stattest_score(rest[c], win[c], kinds[c], method))
    for c in todo:
        q = float(np.quantile(null[c], th.quantile))
        cal = q * th.margin
        out[c] = (cal, "calibrated", q) if cal > floors[c] else (floors[c], "floor", q)
    return out, None


# --------------------------------------------------------------------------------------- evidently


def _evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, Kind],
    thresholds: dict[str, float],
    th: Thresholds,
) -> tuple[object, dict[str, tuple[float, bool]], tuple[int, float]]:
    """Run Evidently; returns (snapshot, column → (score, drifted), (drifted count, share))."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    cols = list(kinds)
    definition = DataDefinition(
        numerical_columns=[c for c in cols if kinds[c] == "num"] or None,
        categorical_columns=[c for c in cols if kinds[c] == "cat"] or None,
    )
    preset = DataDriftPreset(
        columns=cols,
        num_method=th.num_method,
        cat_method=th.cat_method,
        per_column_threshold=thresholds,
        drift_share=th.drift_share,
    )
    with warnings.catch_warnings():  # scipy/pandas noise inside Evidently, nothing of ours
        warnings.simplefilter("ignore")
        snapshot = Report([preset], include_tests=True).run(
            Dataset.from_pandas(current[cols].reset_index(drop=True), data_definition=definition),
            Dataset.from_pandas(reference[cols].reset_index(drop=True), data_definition=definition),
        )
    d = snapshot.dict()
    scores: dict[str, float] = {}
    count, share = 0, 0.0
    for m in d["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith(":ValueDrift"):
            scores[cfg["column"]] = float(m["value"])
        elif cfg["type"].endswith(":DriftedColumnsCount"):
            count, share = int(m["value"]["count"]), float(m["value"]["share"])
    drifted: dict[str, bool] = {}
    for t in d["tests"]:
        params = t["metric_config"]["params"]
        if t["id"] == "drift" and "column" in params:
            drifted[params["column"]] = t["status"] == "FAIL"
    missing = [c for c in cols if c not in scores or c not in drifted]
    if missing:  # would mean Evidently's result layout changed under us
        raise RuntimeError(f"Evidently returned no drift result for {missing}")
    return snapshot, {c: (scores[c], drifted[c]) for c in cols}, (count, share)


# ---------------------------------------------------------------------------------------------- run


def _side(data: DriftData) -> SideSummary:
    span = data.span()
    t = (lambda ns: datetime.fromtimestamp(ns / 1e9, tz=UTC)) if span else None
    return SideSummary(
        source=data.source,
        kind=data.kind,
        start=t(span[0]) if t and span else None,
        end=t(span[1]) if t and span else None,
        rows=data.rows(),
        dropped=dict(data.dropped),
    )


def compute_drift(
    reference: DriftData, current: DriftData, config: DriftConfig, out: Path | None = None
) -> DriftResult:
    """Compare ``current`` with ``reference``; with ``out``, write one Evidently HTML per dataset there."""
    th = config.thresholds
    datasets: list[DatasetDrift] = []
    for name in config.datasets:
        ref, cur = reference.frames.get(name), current.frames.get(name)
        nr, nc = (0 if ref is None else len(ref)), (0 if cur is None else len(cur))
        ds = DatasetDrift(name=name, rows_reference=nr, rows_current=nc, drift_share=th.drift_share)
        datasets.append(ds)
        if ref is None or cur is None:
            side = "reference" if ref is None else "current"
            ds.skipped = f"the {side} source ({(reference if ref is None else current).kind}) has no {name}"
            continue
        if min(nr, nc) < config.min_rows:
            ds.skipped = f"too few rows (reference {nr}, current {nc}; min_rows {config.min_rows})"
            continue
        kinds = _kinds(ref)
        cal, why = calibrate(ref, kinds, nc, th)
        ds.calibration = why
        snapshot, per_col, (count, share) = _evidently_report(
            ref, cur, kinds, {c: v[0] for c, v in cal.items()}, th
        )
        for c, kind in kinds.items():
            score, drifted = per_col[c]
            thr, src, q = cal[c]
            ds.columns.append(
                ColumnDrift(
                    column=c,
                    kind=kind,
                    method=th.cat_method if kind == "cat" else th.num_method,
                    score=score,
                    threshold=thr,
                    threshold_source=src,  # type: ignore[arg-type]
                    reference_quantile=q,
                    drifted=drifted,
                    key=c in config.key_columns,
                )
            )
        ds.drifted_columns, ds.share = count, share
        ds.drifted = share >= th.drift_share
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"drift-{name}.html"
            snapshot.save_html(str(path))  # type: ignore[attr-defined]
            ds.report = path.name
    evaluated = [d for d in datasets if d.skipped is None]
    if not evaluated:
        reasons = "; ".join(f"{d.name}: {d.skipped}" for d in datasets)
        raise ValueError(f"no dataset could be compared ({reasons})")
    drifted_sets = [d.name for d in evaluated if d.drifted]
    drifted_keys = [c.column for d in evaluated for c in d.columns if c.key and c.drifted]
    drift = bool(drifted_sets or drifted_keys)
    if drift:
        parts = [f"datasets {', '.join(drifted_sets)}"] if drifted_sets else []
        parts += [f"key columns {', '.join(drifted_keys)}"] if drifted_keys else []
        verdict = "drift: " + "; ".join(parts)
    else:
        verdict = "no drift"
    return DriftResult(
        run_id=uuid.uuid4().hex,
        created_at=datetime.now(UTC),
        drift=drift,
        verdict=verdict,
        drifted_datasets=drifted_sets,
        drifted_key_columns=drifted_keys,
        reference=_side(reference),
        current=_side(current),
        datasets=datasets,
        thresholds=th,
        key_columns=list(config.key_columns),
    )


# ------------------------------------------------------------------------------------------ outputs


def plot_scores(result: DriftResult, path: Path) -> Path:
    """Bar chart: each column's score over its threshold (1 = the threshold), drifted columns red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [d for d in result.datasets if d.columns]
    rows = max(1, len(shown))
    fig, axes = plt.subplots(rows, 1, figsize=(9, 1.2 + 0.32 * sum(len(d.columns) for d in shown) + rows))
    axes = np.atleast_1d(axes)
    for ax, d in zip(axes, shown, strict=False):
        names = [c.column.split(".", 1)[1] + (" ★" if c.key else "") for c in d.columns]
        ratio = [c.score / c.threshold for c in d.columns]
        colors = ["#d62728" if c.drifted else "#1f77b4" for c in d.columns]
        ax.barh(names, ratio, color=colors)
        ax.axvline(1.0, color="k", lw=1, ls="--")
        ax.invert_yaxis()
        state = "DRIFT" if d.drifted else "ok"
        ax.set_title(f"{d.name}: {d.drifted_columns}/{len(d.columns)} columns drifted ({state})", fontsize=10)
        ax.set_xlabel("score / threshold")
    fig.suptitle(f"{result.verdict} — run {result.run_id[:8]}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.985))  # room for the title
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_index(result: DriftResult, path: Path) -> Path:
    """A one-page index: the verdict, one row per dataset, links to the Evidently reports."""
    e = html.escape
    rows = []
    for d in result.datasets:
        link = f'<a href="{e(d.report)}">Evidently report</a>' if d.report else ""
        state = "skipped: " + e(d.skipped) if d.skipped else ("DRIFT" if d.drifted else "no drift")
        top = sorted(d.columns, key=lambda c: -c.score / c.threshold)[:3]
        worst = ", ".join(f"{e(c.column)} {c.score:.3f}/{c.threshold:.3f}" for c in top)
        rows.append(
            f"<tr><td>{e(d.name)}</td><td>{state}</td><td>{d.drifted_columns}/{len(d.columns)}</td>"
            f"<td>{d.rows_reference}</td><td>{d.rows_current}</td><td>{worst}</td><td>{link}</td></tr>"
        )
    chart = result.files.get("chart")
    body = (
        f"<h1>marlops drift: {e(result.verdict)}</h1>"
        f"<p>run {e(result.run_id)} at {e(result.created_at.isoformat())}<br>"
        f"reference {e(result.reference.source)} ({e(str(result.reference.start))} – "
        f"{e(str(result.reference.end))})<br>current {e(result.current.source)} "
        f"({e(str(result.current.start))} – {e(str(result.current.end))})</p>"
        "<table border=1 cellpadding=4><tr><th>dataset</th><th>state</th><th>drifted columns</th>"
        "<th>reference rows</th><th>current rows</th><th>highest score/threshold</th><th></th></tr>"
        + "".join(rows)
        + "</table>"
        + (f'<p><img src="{e(chart)}" alt="scores"></p>' if chart else "")
    )
    path.write_text(
        f"<!doctype html><meta charset=utf-8><title>marlops drift</title>{body}", encoding="utf-8"
    )
    return path
