"""The drift alert and its three wire formats: generic JSON, Slack, Alertmanager.

- **generic**: :class:`DriftAlert` as JSON; what ``marlops webhook serve`` accepts.
- **slack**: an incoming-webhook message, ``text`` (fallback) plus ``blocks`` (header, fields, context).
- **alertmanager**: the body of Alertmanager's ``POST /api/v2/alerts``: a list of alerts, each with
  ``labels``, ``annotations``, ``startsAt`` (and ``generatorURL``); the receiver accepts this form too
  (and Alertmanager's own webhook notifications: :mod:`marlops.monitoring.alertmanager`).

Every format carries the alert id (the drift run's id), so a receiver can de-duplicate retries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from marlops.monitoring.drift import DriftResult

ALERT_KIND = "marlops.drift"
ALERT_NAME = "MarlopsDataDrift"
DRIFT_RULES: tuple[str, ...] = (ALERT_NAME, "MarlopsFeatureDrift")
"""The drift rules of monitoring/alerts.yaml: the alert names that start a retraining."""
Format = Literal["generic", "slack", "alertmanager"]
FORMATS: tuple[str, ...] = ("generic", "slack", "alertmanager")


class ColumnScore(BaseModel):
    column: str
    score: float
    threshold: float


class DriftAlert(BaseModel):
    """The generic alert (JSON object)."""

    model_config = ConfigDict(extra="ignore")

    kind: Literal["marlops.drift"] = ALERT_KIND
    version: Literal[1] = 1
    alert_id: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    status: Literal["firing", "resolved"] = "firing"
    created_at: datetime
    instrument: str = ""
    verdict: str
    drifted_datasets: list[str] = Field(default_factory=list)
    drifted_key_columns: list[str] = Field(default_factory=list)
    shares: dict[str, float] = Field(default_factory=dict)
    top_columns: list[ColumnScore] = Field(default_factory=list)
    reference: str = ""
    current: str = ""
    report: str = ""


class AlertFormatError(ValueError):
    """A body is not a drift alert in any accepted format; the message names the field (HTTP 400)."""


def alert_from_result(result: DriftResult, instrument: str = "", report: str = "") -> DriftAlert:
    cols = [c for d in result.datasets for c in d.columns]
    top = sorted(cols, key=lambda c: -c.score / c.threshold)[:5]
    return DriftAlert(
        alert_id=result.run_id,
        status="firing" if result.drift else "resolved",
        created_at=result.created_at,
        instrument=instrument,
        verdict=result.verdict,
        drifted_datasets=result.drifted_datasets,
        drifted_key_columns=result.drifted_key_columns,
        shares={d.name: round(d.share, 4) for d in result.datasets if d.skipped is None},
        top_columns=[ColumnScore(column=c.column, score=c.score, threshold=c.threshold) for c in top],
        reference=f"{result.reference.source} ({result.reference.start} – {result.reference.end})",
        current=f"{result.current.source} ({result.current.start} – {result.current.end})",
        report=report,
    )


def _description(a: DriftAlert) -> str:
    top = ", ".join(f"{c.column} {c.score:.3f} (threshold {c.threshold:.3f})" for c in a.top_columns[:3])
    return f"{a.verdict}. Highest scores: {top}. Current: {a.current}. Reference: {a.reference}."


def render(alert: DriftAlert, fmt: Format) -> Any:
    """The JSON-ready payload of ``alert`` in ``fmt``."""
    if fmt == "generic":
        return alert.model_dump(mode="json")
    if fmt == "slack":
        icon = ":rotating_light:" if alert.status == "firing" else ":white_check_mark:"
        fields = [
            {"type": "mrkdwn", "text": f"*Datasets drifted*\n{', '.join(alert.drifted_datasets) or '—'}"},
            {
                "type": "mrkdwn",
                "text": f"*Key columns drifted*\n{', '.join(alert.drifted_key_columns) or '—'}",
            },
            *(
                {"type": "mrkdwn", "text": f"*{c.column}*\n{c.score:.3f} / {c.threshold:.3f}"}
                for c in alert.top_columns[:4]
            ),
        ]
        return {
            "text": f"marlops drift ({alert.instrument or 'all'}): {alert.verdict}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": f"marlops: {alert.verdict}"[:150]}},
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"{icon} {_description(alert)}"[:3000]},
                },
                {"type": "section", "fields": fields[:10]},
                {
                    "type": "context",
                    "elements": [
                        {"type": "mrkdwn", "text": f"alert `{alert.alert_id}` · report {alert.report}"}
                    ],
                },
            ],
        }
    if fmt == "alertmanager":
        return [
            {
                "labels": {
                    "alertname": ALERT_NAME,
                    "severity": "warning",
                    "service": "marlops",
                    "instrument": alert.instrument,
                    "alert_id": alert.alert_id,
                },
                "annotations": {
                    "summary": f"marlops: {alert.verdict}",
                    "description": _description(alert),
                    "drifted_datasets": ",".join(alert.drifted_datasets),
                    "report": alert.report,
                    "created_at": alert.created_at.isoformat(),
                },
                "startsAt": alert.created_at.isoformat(),
                "generatorURL": alert.report,
            }
        ]
    raise ValueError(f"format {fmt!r}: expected one of {FORMATS}")


def parse_alert(payload: Any) -> DriftAlert:
    """A received body (already JSON-decoded) → :class:`DriftAlert`; generic or Alertmanager form."""
    try:
        if isinstance(payload, dict):
            if payload.get("kind") != ALERT_KIND:
                raise AlertFormatError(
                    f"field 'kind': expected {ALERT_KIND!r}, got {payload.get('kind')!r} (or an Alertmanager "
                    "notification: field 'version': '4')"
                )
            return DriftAlert.model_validate(payload)
        if isinstance(payload, list):
            if len(payload) != 1 or not isinstance(payload[0], dict):
                raise AlertFormatError("an Alertmanager body must be a list of exactly one alert object")
            am = payload[0]
            labels, ann = am.get("labels"), am.get("annotations") or {}
            if not isinstance(labels, dict) or labels.get("alertname") not in DRIFT_RULES:
                raise AlertFormatError(f"field '0.labels.alertname': expected one of {DRIFT_RULES}")
            return DriftAlert(
                alert_id=labels.get("alert_id", ""),
                created_at=ann.get("created_at") or am.get("startsAt"),
                instrument=labels.get("instrument", ""),
                verdict=str(ann.get("summary", "")).removeprefix("marlops: "),
                drifted_datasets=[d for d in str(ann.get("drifted_datasets", "")).split(",") if d],
                report=str(ann.get("report", "")),
            )
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise AlertFormatError(f"field {loc!r}: {first['msg']}") from e
    raise AlertFormatError(
        f"expected a JSON object (generic) or list (Alertmanager), got {type(payload).__name__}"
    )
