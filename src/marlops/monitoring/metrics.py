"""Prometheus metrics of the drift job (contract names), as a text file and/or pushed to a Pushgateway.

- ``marlops_drift_share{dataset}``: share of the dataset's columns that drifted (0..1);
- ``marlops_drift_detected{dataset}``: 1 if the dataset drifted; ``dataset="all"`` is the job's verdict;
- ``marlops_drift_score{feature}``: each column's score; ``marlops_drift_threshold{feature}`` its threshold;
- ``marlops_drift_last_run_timestamp_seconds``: when the job last finished (alert rule: stale drift job).

A CronJob's pod is gone before Prometheus could scrape it, hence the Pushgateway (``--pushgateway`` /
``metrics.pushgateway`` / $MARLOPS_PUSHGATEWAY) or the node-exporter textfile (``drift.prom``).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from marlops.monitoring.drift import DriftResult

DRIFT_METRICS: tuple[str, ...] = (
    "marlops_drift_share",
    "marlops_drift_detected",
    "marlops_drift_score",
    "marlops_drift_threshold",
    "marlops_drift_last_run_timestamp_seconds",
)


def drift_registry(result: DriftResult) -> CollectorRegistry:
    reg = CollectorRegistry()
    share = Gauge(
        "marlops_drift_share", "Share of the dataset's columns that drifted", ["dataset"], registry=reg
    )
    detected = Gauge(
        "marlops_drift_detected",
        "1 if the dataset drifted (dataset=all: the job's verdict)",
        ["dataset"],
        registry=reg,
    )
    score = Gauge("marlops_drift_score", "Drift score of a feature (Evidently)", ["feature"], registry=reg)
    threshold = Gauge("marlops_drift_threshold", "Drift threshold of a feature", ["feature"], registry=reg)
    last = Gauge("marlops_drift_last_run_timestamp_seconds", "When the drift job last finished", registry=reg)
    for d in result.datasets:
        if d.skipped is not None:
            continue
        share.labels(d.name).set(d.share)
        detected.labels(d.name).set(1.0 if d.drifted else 0.0)
        for c in d.columns:
            score.labels(c.column).set(c.score)
            threshold.labels(c.column).set(c.threshold)
    detected.labels("all").set(1.0 if result.drift else 0.0)
    last.set(result.created_at.timestamp())
    return reg


def write_textfile(result: DriftResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), drift_registry(result))  # atomic: a temp file, then rename
    return path


def push(result: DriftResult, gateway: str, job: str = "marlops-drift", timeout: float = 10.0) -> None:
    """PUT the drift metrics to a Pushgateway (replaces the job's previous group)."""
    push_to_gateway(gateway, job=job, registry=drift_registry(result), timeout=timeout)
