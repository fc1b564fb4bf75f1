"""The drift job: load both windows, compare, write the reports and metrics, alert on drift.

What ``marlops drift`` and the CronJob run, and what the main job calls after its replay. Outputs in
``out``: ``summary.json`` (the :class:`DriftResult`), ``index.html`` (verdict and links),
``drift-<dataset>.html`` (the Evidently reports), ``scores.png`` (score/threshold per column) and
``drift.prom`` (metrics, Prometheus text format).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from marlops.monitoring.alerts import alert_from_result
from marlops.monitoring.config import DriftConfig, Window
from marlops.monitoring.drift import DriftResult, compute_drift, plot_scores, write_index
from marlops.monitoring.metrics import push, write_textfile
from marlops.monitoring.signing import secret_from_env
from marlops.monitoring.sources import DriftData, load_source
from marlops.monitoring.webhooks import parse_target, send_alert

log = logging.getLogger(__name__)


class DriftJobError(RuntimeError):
    """The job could not deliver what it promised (e.g. an alert); exit code 2."""


@dataclass
class DriftJob:
    result: DriftResult
    summary: Path
    delivery_failed: bool


def _load(source: str | Path | DriftData, config: DriftConfig, window: Window | None) -> DriftData:
    if isinstance(source, DriftData):
        return source.window(window) if window is not None else source
    return load_source(source, config, window)


def load_windows(
    reference: str | Path | DriftData, current: str | Path | DriftData, config: DriftConfig
) -> tuple[DriftData, DriftData]:
    """Both sides, windowed. The same source on both sides: the reference ends where current starts
    (unless the reference window says otherwise)."""
    cur = _load(current, config, config.current)
    rw = config.reference
    same = (
        not isinstance(reference, DriftData)
        and not isinstance(current, DriftData)
        and (Path(reference).resolve() == Path(current).resolve())
    )
    if not same:
        return _load(reference, config, rw), cur
    ref = _load(reference, config, None)
    span = cur.span()
    if rw.end is None and rw.last is None and span is not None:
        ref = ref.before(span[0])
    return ref.window(rw), cur


def run_drift_job(
    reference: str | Path | DriftData,
    current: str | Path | DriftData,
    out: str | Path,
    config: DriftConfig | None = None,
    webhook_urls: list[str] | None = None,
    secret: SecretStr | None = None,
    pushgateway: str | None = None,
) -> DriftJob:
    """Run the whole job. ``webhook_urls`` None: the config's (plus $MARLOPS_WEBHOOK_URLS).

    Raises SourceError/ConfigError/ValueError on bad input, SignatureError when alerts are configured
    but no key is set (checked before any work). A failed delivery is reported in the result and in
    ``delivery_failed``; the summary is written either way.
    """
    cfg = config or DriftConfig()
    out_dir = Path(out)
    urls = cfg.webhook_urls() if webhook_urls is None else webhook_urls
    targets = [parse_target(u) for u in urls]  # bad URLs fail before the work
    key = secret or (secret_from_env(required=True) if targets else None)
    ref, cur = load_windows(reference, current, cfg)
    result = compute_drift(ref, cur, cfg, out_dir)
    result.files["chart"] = plot_scores(result, out_dir / "scores.png").name
    if cfg.metrics.textfile:
        result.files["metrics"] = write_textfile(result, out_dir / "drift.prom").name
    result.files["index"] = "index.html"
    result.files["summary"] = "summary.json"
    write_index(result, out_dir / "index.html")
    failed = False
    gateway = pushgateway or cfg.pushgateway()
    if gateway:
        try:
            push(result, gateway, cfg.metrics.job)
            result.files["pushgateway"] = "pushed"
        except OSError as e:  # urllib errors: unreachable gateway; the job still reports its verdict
            log.warning("pushgateway: %s", type(e).__name__)
            result.files["pushgateway"] = f"failed: {type(e).__name__}"
            failed = True
    if result.drift and targets:
        alert = alert_from_result(result, cfg.instrument, str((out_dir / "index.html").resolve()))
        assert key is not None
        deliveries = send_alert(alert, targets, key, cfg.webhooks)
        result.deliveries = [d.as_dict() for d in deliveries]
        failed = failed or not all(d.ok for d in deliveries)
    summary = out_dir / "summary.json"
    tmp = summary.with_name(f".{summary.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result.model_dump(mode="json"), indent=2), encoding="utf-8")
    os.replace(tmp, summary)
    return DriftJob(result, summary, failed)
