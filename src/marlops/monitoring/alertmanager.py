"""Alertmanager's webhook notification (``version: "4"``) → the drift alerts the retrain trigger decides on.

A stock Alertmanager POSTs one notification per alert group: ``receiver``, ``status``, ``alerts`` (each
``status``, ``labels``, ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``, ``fingerprint``),
``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``externalURL``, ``groupKey``,
``truncatedAlerts``. It repeats the notification every ``repeat_interval`` and on retries, so an alert's
id is a hash of ``groupKey`` + ``fingerprint`` + ``startsAt`` (the same alert instance in the same group
→ the same id → a duplicate); its resolved notification gets that id plus ``-resolved``, so recording it
never overwrites what the firing one started.

Only the drift rules the chart ships (``monitoring/alerts.yaml``: :data:`DRIFT_RULES`) start a
retraining; other alert names in a group are recorded as ignored. Labels map to the drift alert:
``instrument``, ``dataset`` (``MarlopsFeatureDrift`` is by dataset); annotations ``summary`` (verdict),
``drifted_datasets``, ``report`` (else ``generatorURL``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from marlops.monitoring.alerts import ALERT_KIND, DRIFT_RULES, AlertFormatError, DriftAlert, parse_alert


class AMAlert(BaseModel):
    """One alert of a notification."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # Alertmanager's field names
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1, max_length=64)


class AMNotification(BaseModel):
    """Alertmanager's webhook body (``webhook_config``), version 4."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    groupKey: str = Field(min_length=1)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AMAlert] = Field(min_length=1)


@dataclass(frozen=True)
class ReceivedAlert:
    """One alert of a request, as the receiver decides on it."""

    alert: DriftAlert
    name: str
    """The alert rule's name ('' for the generic form)."""
    drift: bool
    """A drift rule (only these start a retraining)."""
    fingerprint: str = ""


@dataclass(frozen=True)
class Received:
    """What a request carried: one alert (generic / API list form) or an Alertmanager group."""

    alerts: list[ReceivedAlert]
    group_key: str | None = None
    truncated: int = 0
    """Alerts Alertmanager left out (``max_alerts``); one retraining per group needs only one."""


def alert_id(group_key: str, fingerprint: str, starts_at: datetime, status: str) -> str:
    """The idempotency key of an alert instance in a group (fits DriftAlert.alert_id's pattern)."""
    h = hashlib.sha256("\x00".join((group_key, fingerprint, starts_at.isoformat())).encode()).hexdigest()
    return f"am-{h[:40]}" + ("-resolved" if status == "resolved" else "")


def _drift_alert(n: AMNotification, a: AMAlert) -> ReceivedAlert:
    name = a.labels["alertname"]
    datasets = [d for d in a.annotations.get("drifted_datasets", "").split(",") if d]
    if a.labels.get("dataset") and a.labels["dataset"] not in datasets:
        datasets.append(a.labels["dataset"])
    alert = DriftAlert(
        alert_id=alert_id(n.groupKey, a.fingerprint, a.startsAt, a.status),
        status=a.status,
        created_at=a.startsAt,
        instrument=a.labels.get("instrument", ""),
        verdict=(a.annotations.get("summary") or name).removeprefix("marlops: "),
        drifted_datasets=datasets,
        report=a.annotations.get("report") or a.generatorURL,
    )
    return ReceivedAlert(alert, name, name in DRIFT_RULES, a.fingerprint)


def _field_error(e: ValidationError) -> AlertFormatError:
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return AlertFormatError(f"field {loc!r}: {first['msg']}")


def parse_notification(payload: dict[str, Any]) -> Received:
    """An Alertmanager webhook body (JSON-decoded) → its alerts; :class:`AlertFormatError` names the
    field (``alerts.0.labels.alertname``)."""
    try:
        n = AMNotification.model_validate(payload)
    except ValidationError as e:
        raise _field_error(e) from None
    for i, a in enumerate(n.alerts):
        if not a.labels.get("alertname"):
            raise AlertFormatError(f"field 'alerts.{i}.labels.alertname': missing")
    return Received([_drift_alert(n, a) for a in n.alerts], n.groupKey, n.truncatedAlerts)


def parse_received(payload: Any) -> Received:
    """Any accepted body: an Alertmanager notification (an object with ``version``/``alerts``), the
    generic drift alert, or the one-alert list of Alertmanager's ``POST /api/v2/alerts``."""
    if (
        isinstance(payload, dict)
        and payload.get("kind") != ALERT_KIND
        and ("version" in payload or "alerts" in payload)
    ):
        return parse_notification(payload)
    alert = parse_alert(payload)
    name = payload[0]["labels"]["alertname"] if isinstance(payload, list) else ""
    return Received([ReceivedAlert(alert, name, True)])
