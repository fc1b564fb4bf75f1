"""``marlops webhook serve``: the retrain trigger. Authenticates drift alerts and starts one retraining.

``POST /alerts`` takes the drift job's generic JSON, the one-alert list of Alertmanager's API, or a stock
Alertmanager's webhook notification (a group of alerts, :mod:`marlops.monitoring.alertmanager`), in
this order:

1. rate limit (a token bucket over all callers): 429 with ``Retry-After``;
2. body larger than ``max_body_bytes``: 413;
3. credentials (:mod:`marlops.monitoring.auth`: HMAC signature, bearer token or basic auth, by the
   headers sent) missing, wrong, or of a scheme not configured: 401 naming the scheme;
4. an HMAC signature already seen inside its window (a replayed request): 409;
5. not JSON, or not a drift alert: 400 naming the field;
6. then per alert: an id already handled (the sender retried, Alertmanager repeated the group):
   ``duplicate`` with the original outcome; resolved, or not a drift rule: ``ignored``;
7. new firing drift alerts within ``cooldown_s`` of the last retraining that did not fail: ``cooldown``
   (an alert storm starts one retraining);
8. otherwise one retraining for the request (202 ``accepted``): a group of several firing drift alerts
   starts one, every alert recorded against it; the injected trigger (the retraining pipeline's submit)
   runs in a background thread and its run id is recorded (``GET /runs``, plain text).

Steps 6–7 answer 200 with the request's outcome (``cooldown`` > ``duplicate`` > ``ignored``) and, for
each alert, its own in ``alerts``. The trigger is injected (a callable taking the :class:`DriftAlert`):
this package never imports the pipeline (which imports training); the CLI wires
``marlops.pipeline.submit.submit_retraining`` in. State lives in :class:`TriggerState` (sqlite under
``--state``), so a restart keeps every decision.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, SecretStr

from marlops.monitoring.alertmanager import Received, ReceivedAlert, parse_received
from marlops.monitoring.alerts import AlertFormatError, DriftAlert
from marlops.monitoring.auth import AuthError, Credentials, authenticate
from marlops.monitoring.signing import DEFAULT_TOLERANCE_S
from marlops.monitoring.trigger_state import TriggerState

log = logging.getLogger(__name__)
Trigger = Callable[[DriftAlert], Any]


@dataclass(frozen=True, kw_only=True)
class ReceiverSettings:
    state_dir: Path
    credentials: Credentials | None = None
    secret: SecretStr | None = None
    """Shorthand for ``credentials=Credentials(hmac_secret=secret)`` (the drift job's key only)."""
    cooldown_s: float = 3600.0
    tolerance_s: float = DEFAULT_TOLERANCE_S
    max_body_bytes: int = 64 * 1024
    rate_limit: int = 30
    """Requests per ``rate_window_s`` over all callers (a token bucket: bursts up to this many)."""
    rate_window_s: float = 60.0

    def __post_init__(self) -> None:
        if self.cooldown_s < 0 or self.tolerance_s <= 0 or self.max_body_bytes <= 0:
            raise ValueError("cooldown_s must be ≥ 0, tolerance_s and max_body_bytes > 0")
        if self.rate_limit < 1 or self.rate_window_s <= 0:
            raise ValueError("rate_limit must be ≥ 1 and rate_window_s > 0")
        if self.credentials is None:
            object.__setattr__(self, "credentials", Credentials(hmac_secret=self.secret))
        elif self.secret is not None:
            raise ValueError("give the HMAC key in credentials or as secret, not both")

    @property
    def auth(self) -> Credentials:
        assert self.credentials is not None  # set in __post_init__
        return self.credentials


class _TokenBucket:
    def __init__(self, capacity: int, window_s: float, clock: Callable[[], float]) -> None:
        self.capacity, self.rate, self.clock = float(capacity), capacity / window_s, clock
        self.tokens, self.t = float(capacity), clock()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0 if a request may pass, else the seconds until one may."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate


def _describe(result: Any) -> tuple[str | None, dict | None]:
    """(run id, JSON-able detail) of whatever the trigger returned."""
    if isinstance(result, BaseModel):
        detail = result.model_dump(mode="json")
    elif dataclasses.is_dataclass(result) and not isinstance(result, type):
        detail = dataclasses.asdict(result)
    elif isinstance(result, dict):
        detail = result
    elif result is None:
        detail = None
    else:
        detail = {"result": str(result)}
    run_id = getattr(result, "run_id", None) or (detail or {}).get("run_id")
    if run_id is None and isinstance(result, str):
        run_id = result
    return (None if run_id is None else str(run_id)), detail


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def create_app(
    settings: ReceiverSettings, trigger: Trigger, clock: Callable[[], float] = time.time
) -> FastAPI:
    state = TriggerState(settings.state_dir)
    bucket = _TokenBucket(settings.rate_limit, settings.rate_window_s, clock)
    registry = CollectorRegistry()
    requests_total = Counter(
        "marlops_webhook_requests_total", "Alert webhook requests by outcome", ["outcome"], registry=registry
    )
    triggers_total = Counter(
        "marlops_retrain_triggers_total",
        "Retrainings started by the webhook, by final status",
        ["status"],
        registry=registry,
    )
    app = FastAPI(title="marlops retrain trigger", docs_url=None, redoc_url=None)
    app.state.trigger_state = state
    threads: list[threading.Thread] = []
    app.state.threads = threads

    def answer(code: int, outcome: str, **body: Any) -> JSONResponse:
        requests_total.labels(outcome).inc()
        if code >= 400:
            log.warning("alert rejected (%d %s): %s", code, outcome, body.get("detail", ""))
        headers = {"Retry-After": str(int(body["retry_after_s"]) + 1)} if code == 429 else None
        return JSONResponse({"status": outcome, **body}, status_code=code, headers=headers)

    def run_trigger(record_id: str, alert: DriftAlert) -> None:
        try:
            run_id, detail = _describe(trigger(alert))
        except Exception as e:  # the pipeline's failure is recorded, not raised into the server
            state.finish_trigger(record_id, "failed", None, {"error": f"{type(e).__name__}: {e}"[:2000]})
            triggers_total.labels("failed").inc()
            log.exception("retraining trigger %s failed", record_id)
            return
        state.finish_trigger(record_id, "submitted", run_id, detail)
        triggers_total.labels("submitted").inc()
        log.info("retraining trigger %s submitted run %s", record_id, run_id)

    @app.post("/alerts")
    async def alerts(request: Request) -> JSONResponse:
        wait = bucket.take()
        if wait > 0:
            return answer(429, "rate_limited", detail="too many requests", retry_after_s=round(wait, 1))
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
            return answer(413, "too_large", detail=f"body over {settings.max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_body_bytes:
                return answer(413, "too_large", detail=f"body over {settings.max_body_bytes} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        now = clock()
        try:
            who = authenticate(settings.auth, request.headers, body, now, settings.tolerance_s)
        except AuthError as e:
            return answer(401, "unauthorized", detail=str(e))
        if who.signature is not None and who.timestamp is not None:
            if not state.remember_signature(who.signature, who.timestamp + settings.tolerance_s, now):
                return answer(409, "replayed", detail="this signed request was already received")
        try:
            payload = json.loads(body, parse_constant=_no_constants)
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, NaN/Infinity
            return answer(400, "bad_request", detail=f"body is not JSON: {e}")
        try:
            received = parse_received(payload)
        except AlertFormatError as e:
            return answer(400, "bad_request", detail=str(e))
        if received.truncated:
            log.warning(
                "Alertmanager left out %d alert(s) of group %s", received.truncated, received.group_key
            )
        with state.lock:  # one decision at a time: an alert storm must start one retraining
            code, outcome, reply, started = decide(received, now)
        if started is not None:
            t = threading.Thread(target=run_trigger, args=started, name="retrain", daemon=True)
            threads.append(t)
            t.start()
        return answer(code, outcome, **reply)

    def decide(received: Received, now: float) -> tuple[int, str, dict, tuple[str, DriftAlert] | None]:
        """Each alert's outcome, and at most one retraining for the request (under ``state.lock``)."""
        items: list[dict] = []
        new: list[tuple[ReceivedAlert, dict]] = []
        for r in received.alerts:
            a = r.alert
            item = {"alert_id": a.alert_id, "alertname": r.name, "fingerprint": r.fingerprint}
            item["status"] = a.status  # firing | resolved
            items.append(item)
            seen = state.alert_outcome(a.alert_id)
            if seen is not None:
                item.update(outcome="duplicate", first_outcome=seen[0], trigger_id=seen[1])
            elif a.status != "firing" or not r.drift:
                why = "alert is resolved" if a.status != "firing" else f"{r.name} is not a drift rule"
                state.record_alert(a.alert_id, "ignored", now)
                item.update(outcome="ignored", detail=why)
            else:
                new.append((r, item))
        started = None
        if new:
            last = state.last_active_trigger()
            if last is not None and now - last.created_at < settings.cooldown_s:
                outcome, tid = "cooldown", last.trigger_id
                retry = round(settings.cooldown_s - (now - last.created_at), 1)
                for _, item in new:
                    item.update(retry_after_s=retry)
            else:
                first = new[0][0].alert
                outcome, tid = "triggered", state.start_trigger(first.alert_id, now).trigger_id
                datasets = list(dict.fromkeys(d for r, _ in new for d in r.alert.drifted_datasets))
                started = (tid, first.model_copy(update={"drifted_datasets": datasets}))
            for r, item in new:
                state.record_alert(r.alert.alert_id, outcome, now, tid)
                item.update(outcome=outcome, trigger_id=tid)
        order = ("triggered", "cooldown", "duplicate", "ignored")
        main = min(items, key=lambda i: order.index(i["outcome"]))
        overall = "accepted" if main["outcome"] == "triggered" else main["outcome"]
        top = {k: v for k, v in main.items() if k not in ("outcome", "alertname", "fingerprint", "status")}
        extra = {"group_key": received.group_key, "truncated_alerts": received.truncated}
        if received.group_key is None:
            extra = {}
        return (202 if started else 200), overall, {**top, **extra, "alerts": items}, started

    @app.get("/runs")
    def runs() -> dict:
        return {"triggers": [r.as_dict() for r in state.triggers()]}

    @app.get("/runs/{trigger_id}")
    def run(trigger_id: str) -> JSONResponse:
        r = state.trigger(trigger_id)
        if r is None:
            return JSONResponse({"detail": f"no trigger {trigger_id!r}"}, status_code=404)
        return JSONResponse(r.as_dict())

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(settings: ReceiverSettings, trigger: Trigger, host: str = "0.0.0.0", port: int = 8080) -> None:
    import uvicorn

    uvicorn.run(create_app(settings, trigger), host=host, port=port, log_level="info", access_log=True)
