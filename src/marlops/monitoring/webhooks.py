"""Send a drift alert to every configured webhook: signed, retried with exponential backoff.

A target is a URL, optionally prefixed by its format: ``slack:https://hooks.slack.com/…``,
``alertmanager:http://alertmanager:9093/api/v2/alerts``, ``generic:http://retrain-trigger/alerts``
(no prefix: generic, except hooks.slack.com URLs, which are Slack). Every request is signed (HMAC-SHA256,
:mod:`marlops.monitoring.signing`), re-signed on each attempt so a late retry is still inside the
receiver's timestamp window. Retried: connection errors, timeouts, 408, 429 and 5xx; not retried: other
4xx (a 401 will not get better); a 409 (the receiver already holds this signed request) is a success.
Nothing here logs or returns the key, and URLs are shown without their path and query (a Slack webhook
URL's path is itself a credential).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from marlops.monitoring.alerts import FORMATS, DriftAlert, Format, render
from marlops.monitoring.config import WebhookSettings
from marlops.monitoring.signing import sign

log = logging.getLogger(__name__)
_RETRY_STATUS = {408, 429}


class _RedactUrls(logging.Filter):
    """httpx logs every request's full URL at INFO; a Slack webhook's path is its credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


if not any(isinstance(f, _RedactUrls) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_RedactUrls())


@dataclass(frozen=True)
class Target:
    url: str
    format: Format

    @property
    def shown(self) -> str:
        return redact(self.url)


def redact(url: str) -> str:
    """``scheme://host[:port]/…``: enough to tell targets apart, nothing of a path-borne token."""
    parts = urlsplit(url)
    tail = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{tail}"


def parse_target(spec: str) -> Target:
    s = spec.strip()
    fmt: str | None = None
    head, sep, rest = s.partition(":")
    if sep and head in FORMATS and not rest.startswith("//"):
        fmt, s = head, rest
    parts = urlsplit(s)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"webhook {redact(s)!r}: expected an http(s) URL, optionally prefixed by one of {FORMATS}"
        )
    if fmt is None:
        fmt = "slack" if parts.hostname == "hooks.slack.com" else "generic"
    return Target(s, fmt)  # type: ignore[arg-type]


@dataclass
class Delivery:
    target: str  # redacted URL
    format: str
    ok: bool
    status: int | None
    attempts: int
    error: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class _Retryable(Exception):
    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _post_once(client: httpx.Client, target: Target, body: bytes, secret: SecretStr, timeout: float) -> int:
    headers = {"Content-Type": "application/json", "User-Agent": "marlops-drift/0.1", **sign(secret, body)}
    try:
        r = client.post(target.url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:  # connection refused, timeout, …: the message holds no credentials
        raise _Retryable(None, f"{type(e).__name__}") from None
    if r.status_code in _RETRY_STATUS or r.status_code >= 500:
        raise _Retryable(r.status_code, f"HTTP {r.status_code}")
    return r.status_code


def deliver(
    alert: DriftAlert,
    target: Target,
    secret: SecretStr,
    settings: WebhookSettings | None = None,
    client: httpx.Client | None = None,
) -> Delivery:
    """POST ``alert`` to one target, retrying; never raises for delivery failures."""
    cfg = settings or WebhookSettings()
    body = json.dumps(render(alert, target.format), separators=(",", ":")).encode()
    own = client is None
    http = client or httpx.Client()
    retrying = Retrying(
        stop=stop_after_attempt(cfg.attempts),
        wait=wait_exponential_jitter(initial=cfg.backoff_s, max=cfg.max_backoff_s, jitter=cfg.backoff_s / 2),
        retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
        reraise=False,
    )
    attempts = 0
    try:
        for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                status = _post_once(http, target, body, secret, cfg.timeout_s)
        # 409: the receiver already has this very signed request (a retry inside the same second)
        ok = 200 <= status < 300 or status == 409
        err = None if ok else f"HTTP {status}"
    except RetryError as e:
        last = e.last_attempt.exception()
        status = getattr(last, "status", None)
        ok, err = False, f"gave up after {attempts} attempt(s): {last}"
    finally:
        if own:
            http.close()
    level = logging.INFO if ok else logging.WARNING
    log.log(level, "alert %s → %s (%s): %s", alert.alert_id, target.shown, target.format, err or status)
    return Delivery(target.shown, target.format, ok, status, attempts, err)


def send_alert(
    alert: DriftAlert,
    urls: list[str | Target],
    secret: SecretStr,
    settings: WebhookSettings | None = None,
) -> list[Delivery]:
    """Deliver ``alert`` to each URL (see the module docstring for the URL forms)."""
    targets = [u if isinstance(u, Target) else parse_target(u) for u in urls]
    with httpx.Client() as client:
        return [deliver(alert, t, secret, settings, client) for t in targets]
