"""``marlops webhook serve``: the retrain trigger. Verifies signed drift alerts and starts one retraining.

``POST /alerts`` (the drift job's generic JSON, or an Alertmanager list of one alert), in this order:

1. rate limit (a token bucket over all callers): 429 with ``Retry-After``;
2. body larger than ``max_body_bytes``: 413;
3. missing signature headers, a timestamp outside ±``tolerance_s``, a wrong signature: 401;
4. a signature already seen inside its window (a replayed request): 409;
5. not JSON, or not a drift alert: 400 naming the field;
6. an alert id already handled (the sender retried): 200 ``duplicate`` with the original outcome;
7. a resolved alert: 200 ``ignored``;
8. within ``cooldown_s`` of the last retraining that did not fail: 200 ``cooldown`` (an alert storm
   starts one retraining);
9. otherwise: 202 ``accepted``; the injected trigger (the retraining pipeline's submit) runs in a
   background thread and its run id is recorded (``GET /runs``).

The trigger is injected (a callable taking the :class:`DriftAlert`): this package never imports the
pipeline (which imports training); the CLI wires ``marlops.pipeline.submit.submit_retraining`` in.
State lives in :class:`TriggerState` (sqlite under ``--state``), so a restart keeps every decision.
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

from marlops.monitoring.alerts import AlertFormatError, DriftAlert, parse_alert
from marlops.monitoring.signing import (
    DEFAULT_TOLERANCE_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify,
)
from marlops.monitoring.trigger_state import TriggerState

log = logging.getLogger(__name__)
Trigger = Callable[[DriftAlert], Any]


@dataclass(frozen=True)
class ReceiverSettings:
    secret: SecretStr
    state_dir: Path
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
        if not self.secret.get_secret_value():
            raise ValueError("the webhook secret is empty")


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
        ts_header, sig = request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER)
        try:
            ts = verify(settings.secret, ts_header, sig, body, now=now, tolerance_s=settings.tolerance_s)
        except SignatureError as e:
            return answer(401, "unauthorized", detail=str(e))
        assert sig is not None
        if not state.remember_signature(sig, ts + settings.tolerance_s, now):
            return answer(409, "replayed", detail="this signed request was already received")
        try:
            alert = parse_alert(json.loads(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return answer(400, "bad_request", detail=f"body is not JSON: {e}")
        except AlertFormatError as e:
            return answer(400, "bad_request", detail=str(e))
        with state.lock:  # one decision at a time: an alert storm must start one retraining
            seen = state.alert_outcome(alert.alert_id)
            if seen is not None:
                return answer(
                    200, "duplicate", alert_id=alert.alert_id, first_outcome=seen[0], trigger_id=seen[1]
                )
            if alert.status != "firing":
                state.record_alert(alert.alert_id, "ignored", now)
                return answer(200, "ignored", alert_id=alert.alert_id, detail="alert is resolved")
            last = state.last_active_trigger()
            if last is not None and now - last.created_at < settings.cooldown_s:
                state.record_alert(alert.alert_id, "cooldown", now, last.trigger_id)
                return answer(
                    200,
                    "cooldown",
                    alert_id=alert.alert_id,
                    trigger_id=last.trigger_id,
                    retry_after_s=round(settings.cooldown_s - (now - last.created_at), 1),
                )
            record = state.start_trigger(alert.alert_id, now)
            state.record_alert(alert.alert_id, "triggered", now, record.trigger_id)
        t = threading.Thread(target=run_trigger, args=(record.trigger_id, alert), name="retrain", daemon=True)
        threads.append(t)
        t.start()
        return answer(202, "accepted", alert_id=alert.alert_id, trigger_id=record.trigger_id)

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
