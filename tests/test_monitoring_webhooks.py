"""Signed alert webhooks: the sender against a real local HTTP server, the retrain trigger (FastAPI under
uvicorn on a free port) against real signed, unsigned, tampered, replayed, malformed and oversized POSTs."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from pydantic import SecretStr

from marlops.monitoring.alerts import ALERT_NAME, AlertFormatError, DriftAlert, parse_alert, render
from marlops.monitoring.config import WebhookSettings
from marlops.monitoring.receiver import ReceiverSettings, create_app
from marlops.monitoring.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    sign,
    signature,
    verify,
)
from marlops.monitoring.webhooks import deliver, parse_target, redact, send_alert
from receiver_server import free_port, serving

SECRET = SecretStr("s3cret-key-for-tests-only")
FAST = WebhookSettings(timeout_s=2.0, attempts=3, backoff_s=0.01, max_backoff_s=0.05)


def _alert(alert_id: str = "run-0001abcd", status: str = "firing") -> DriftAlert:
    return DriftAlert(
        alert_id=alert_id,
        status=status,  # type: ignore[arg-type]
        created_at=datetime(2025, 3, 1, tzinfo=UTC),
        instrument="SYNTH",
        verdict="drift: datasets predictions",
        drifted_datasets=["predictions"],
        shares={"predictions": 0.5},
    )


# ------------------------------------------------------------------------------------------- signing


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"a":1}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("k", "1700000000", body) == "sha256=" + expected
    headers = sign("k", body, now=1_700_000_000)
    assert headers == {TIMESTAMP_HEADER: "1700000000", SIGNATURE_HEADER: "sha256=" + expected}
    assert (
        verify("k", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body, now=1_700_000_100)
        == 1_700_000_000
    )


@pytest.mark.parametrize(
    ("ts", "sig", "body", "now", "message"),
    [
        (None, None, b"{}", 1e9, "unsigned request"),
        ("1000000000", None, b"{}", 1e9, "missing header(s) X-Marlops-Signature"),
        ("1000000000", "sha256=" + "0" * 64, b"{}", 1e9, "signature mismatch"),
        ("1000000000", "md5=abc", b"{}", 1e9, "expected 'sha256=<hex>'"),
        ("999999000", None, b"{}", 1e9, "missing header"),
        ("abc", "sha256=00", b"{}", 1e9, "expected Unix seconds"),
    ],
)
def test_verify_rejects(ts, sig, body, now, message) -> None:
    with pytest.raises(SignatureError, match=message.replace("(", r"\(").replace(")", r"\)")):
        verify(SECRET, ts, sig, body, now=now)


def test_verify_rejects_tampered_body_and_old_timestamp() -> None:
    h = sign(SECRET, b'{"x":1}', now=1e9)
    with pytest.raises(SignatureError, match="signature mismatch"):
        verify(SECRET, h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], b'{"x":2}', now=1e9)
    with pytest.raises(SignatureError, match="from the receiver's clock"):
        verify(SECRET, h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], b'{"x":1}', now=1e9 + 301)
    with pytest.raises(SignatureError, match="signature mismatch"):  # another key
        verify("other", h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], b'{"x":1}', now=1e9)


def test_secret_never_in_repr() -> None:
    settings = ReceiverSettings(secret=SECRET, state_dir=Path("/tmp/x"))
    assert SECRET.get_secret_value() not in repr(settings)
    assert SECRET.get_secret_value() not in str(settings)


# ------------------------------------------------------------------------------------------- formats


def test_formats_and_parse_back() -> None:
    a = _alert()
    generic = render(a, "generic")
    assert generic["kind"] == "marlops.drift" and generic["alert_id"] == a.alert_id
    assert parse_alert(json.loads(json.dumps(generic))) == a
    slack = render(a, "slack")
    assert slack["text"].startswith("marlops drift (SYNTH): drift")
    assert [b["type"] for b in slack["blocks"]] == ["header", "section", "section", "context"]
    am = render(a, "alertmanager")
    assert isinstance(am, list) and am[0]["labels"]["alertname"] == ALERT_NAME
    assert am[0]["labels"]["alert_id"] == a.alert_id and am[0]["startsAt"].startswith("2025-03-01")
    back = parse_alert(am)
    assert back.alert_id == a.alert_id and back.drifted_datasets == ["predictions"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"kind": "other"}, "field 'kind'"),
        ({"kind": "marlops.drift", "created_at": "2025-01-01T00:00:00Z", "verdict": "x"}, "field 'alert_id'"),
        (
            {"kind": "marlops.drift", "alert_id": "bad id!", "created_at": "x", "verdict": "v"},
            "field 'alert_id'",
        ),
        ([{"labels": {"alertname": "Other"}}], "alertname"),
        ([], "exactly one alert"),
        ("text", "expected a JSON object"),
    ],
)
def test_parse_alert_errors_name_the_field(payload, message) -> None:
    with pytest.raises(AlertFormatError, match=message):
        parse_alert(payload)


def test_target_parsing_and_redaction() -> None:
    assert parse_target("http://h:1/alerts").format == "generic"
    assert parse_target("slack:https://hooks.example/T/B/X").format == "slack"
    assert parse_target("https://hooks.slack.com/services/T0/B0/XYZ").format == "slack"
    t = parse_target("alertmanager:http://am:9093/api/v2/alerts")
    assert (t.format, t.url) == ("alertmanager", "http://am:9093/api/v2/alerts")
    assert redact("https://hooks.slack.com/services/T0/B0/SECRETTOKEN?x=1") == "https://hooks.slack.com/…"
    with pytest.raises(ValueError, match="expected an http"):
        parse_target("ftp://x/y")


# ---------------------------------------------------------------------------- sender vs a real server


class _Recorder(BaseHTTPRequestHandler):
    statuses: ClassVar[list[int]] = []
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append((self.path, dict(self.headers), body))
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@contextmanager
def _server(statuses: list[int]) -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"statuses": list(statuses), "received": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally:
        srv.shutdown()
        srv.server_close()


def test_sender_signs_each_format_and_retries_5xx(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with _server([503, 500, 200, 200, 200]) as (url, h):
        out = send_alert(
            _alert(),
            [f"{url}/generic", f"slack:{url}/slack/T/SECRETPATH", f"alertmanager:{url}/am"],
            SECRET,
            FAST,
        )
    assert [(d.ok, d.status, d.attempts) for d in out] == [(True, 200, 3), (True, 200, 1), (True, 200, 1)]
    assert [p for p, _, _ in h.received] == ["/generic", "/generic", "/generic", "/slack/T/SECRETPATH", "/am"]
    for path, headers, body in h.received:  # every attempt carries a valid signature
        verify(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body)
        fmt = json.loads(body)
        assert ("blocks" in fmt) == path.startswith("/slack")
        assert isinstance(fmt, list) == (path == "/am")
    logs = caplog.text + repr(out)
    assert SECRET.get_secret_value() not in logs and "SECRETPATH" not in logs


def test_sender_does_not_retry_4xx_and_gives_up_on_refused() -> None:
    with _server([401]) as (url, h):
        d = deliver(_alert(), parse_target(url), SECRET, FAST)
    assert (d.ok, d.status, d.attempts, len(h.received)) == (False, 401, 1, 1)
    d = deliver(_alert(), parse_target(f"http://127.0.0.1:{free_port()}/x"), SECRET, FAST)
    assert not d.ok and d.attempts == 3 and "gave up after 3" in (d.error or "")


# ------------------------------------------------------------------------------ receiver (real HTTP)


class _Trigger:
    """Records its calls; returns what the pipeline's submit returns (an object with run_id)."""

    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.calls: list[DriftAlert] = []
        self.fail, self.delay = fail, delay

    def __call__(self, alert: DriftAlert) -> dict:
        self.calls.append(alert)
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("kfp unreachable")
        return {"run_id": f"run-{len(self.calls)}", "state": "SUCCEEDED"}


@contextmanager
def _receiver(tmp: Path, trigger: _Trigger, **kw: object) -> Iterator[str]:
    settings = ReceiverSettings(secret=SECRET, state_dir=tmp, **kw)  # type: ignore[arg-type]
    with serving(create_app(settings, trigger)) as url:
        yield url


def _post(
    url: str, payload: object, secret: SecretStr | None = SECRET, now: float | None = None, **kw: object
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **(sign(secret, body, now=now) if secret else {})}
    headers.update(kw.pop("headers", {}))  # type: ignore[arg-type]
    return httpx.post(f"{url}/alerts", content=body, headers=headers, timeout=10)


def _wait_runs(url: str, n: int) -> list[dict]:
    deadline = time.time() + 10
    while True:
        runs = httpx.get(f"{url}/runs").json()["triggers"]
        if len(runs) >= n and all(r["status"] != "submitting" for r in runs):
            return runs
        assert time.time() < deadline, runs
        time.sleep(0.05)


def test_receiver_accepts_a_signed_alert_and_records_the_run(tmp_path: Path) -> None:
    trig = _Trigger()
    with _receiver(tmp_path, trig) as url:
        r = _post(url, render(_alert(), "generic"))
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "accepted"
        runs = _wait_runs(url, 1)
        assert runs[0]["status"] == "submitted" and runs[0]["run_id"] == "run-1"
        assert runs[0]["alert_id"] == "run-0001abcd"
        assert [a.alert_id for a in trig.calls] == ["run-0001abcd"]
        one = httpx.get(f"{url}/runs/{r.json()['trigger_id']}").json()
        assert one["detail"] == {"run_id": "run-1", "state": "SUCCEEDED"}
        metrics = httpx.get(f"{url}/metrics").text
        assert 'marlops_webhook_requests_total{outcome="accepted"} 1.0' in metrics
        assert 'marlops_retrain_triggers_total{status="submitted"} 1.0' in metrics


def test_receiver_rejects_unsigned_tampered_stale_replayed_malformed_oversized(tmp_path: Path) -> None:
    trig = _Trigger()
    with _receiver(tmp_path, trig, max_body_bytes=4096) as url:
        body = json.dumps(render(_alert(), "generic")).encode()
        assert _post(url, body, secret=None).status_code == 401  # unsigned
        wrong = _post(url, body, secret=SecretStr("another-key"))
        assert wrong.status_code == 401 and "signature mismatch" in wrong.json()["detail"]
        h = sign(SECRET, body)
        tampered = httpx.post(f"{url}/alerts", content=body.replace(b"predictions", b"regime"), headers=h)
        assert tampered.status_code == 401
        old = sign(SECRET, body, now=time.time() - 3600)
        stale = httpx.post(f"{url}/alerts", content=body, headers=old)
        assert stale.status_code == 401 and "window" in stale.json()["detail"]
        first = httpx.post(f"{url}/alerts", content=body, headers=h)
        assert first.status_code == 202
        replay = httpx.post(f"{url}/alerts", content=body, headers=h)  # the same signed request again
        assert replay.status_code == 409 and replay.json()["status"] == "replayed"
        bad = _post(url, b"{not json")
        assert bad.status_code == 400 and "not JSON" in bad.json()["detail"]
        wrong_shape = _post(url, {"kind": "marlops.drift", "alert_id": "x"})
        assert wrong_shape.status_code == 400 and "field 'alert_id'" in wrong_shape.json()["detail"]
        big = _post(url, {"kind": "marlops.drift", "pad": "x" * 5000})
        assert big.status_code == 413
        _wait_runs(url, 1)
    assert len(trig.calls) == 1  # only the one valid alert started a run


def test_duplicates_cooldown_and_a_storm_start_one_run(tmp_path: Path) -> None:
    trig = _Trigger(delay=0.2)
    with _receiver(tmp_path, trig, cooldown_s=600, rate_limit=100) as url:
        assert _post(url, render(_alert("alert-0001"), "generic")).status_code == 202
        body = json.dumps(render(_alert("alert-0001"), "generic")).encode()
        later = sign(SECRET, body, now=time.time() + 1)  # the sender's retry: a new timestamp and signature
        again = httpx.post(f"{url}/alerts", content=body, headers=later)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        storm = [_post(url, render(_alert(f"alert-{i:04d}"), "alertmanager")) for i in range(2, 12)]
        assert {r.json()["status"] for r in storm} == {"cooldown"}
        resolved = _post(url, render(_alert("alert-0099", status="resolved"), "generic"))
        assert resolved.json()["status"] == "ignored"
        runs = _wait_runs(url, 1)
    assert len(runs) == 1 and len(trig.calls) == 1


def test_failed_submission_frees_the_cooldown_and_state_survives_restart(tmp_path: Path) -> None:
    failing = _Trigger(fail=True)
    with _receiver(tmp_path, failing, cooldown_s=600) as url:
        assert _post(url, render(_alert("alert-a001"), "generic")).status_code == 202
        runs = _wait_runs(url, 1)
        assert runs[0]["status"] == "failed" and "kfp unreachable" in runs[0]["detail"]["error"]
        body = json.dumps(render(_alert("alert-a002"), "generic")).encode()
        h = sign(SECRET, body)
        assert httpx.post(f"{url}/alerts", content=body, headers=h).status_code == 202
        _wait_runs(url, 2)
    ok = _Trigger()
    with _receiver(tmp_path, ok, cooldown_s=600) as url:  # a restart: same state folder
        assert httpx.post(f"{url}/alerts", content=body, headers=h).status_code == 409  # still a replay
        # the same alert signed a second later (as a sender's retry): not a replay, a duplicate
        later = _post(url, render(_alert("alert-a001"), "generic"), now=time.time() + 1)
        assert later.json()["status"] == "duplicate"
        assert _post(url, render(_alert("alert-a003"), "generic")).status_code == 202  # both earlier failed
        _wait_runs(url, 3)
        assert _post(url, render(_alert("alert-a004"), "generic")).json()["status"] == "cooldown"
        assert [r["status"] for r in httpx.get(f"{url}/runs").json()["triggers"]] == [
            "submitted",
            "failed",
            "failed",
        ]
    assert [a.alert_id for a in ok.calls] == ["alert-a003"]


def test_rate_limit(tmp_path: Path) -> None:
    trig = _Trigger()
    with _receiver(tmp_path, trig, rate_limit=3, rate_window_s=60) as url:
        codes = [_post(url, b"{}", secret=None).status_code for _ in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        r = _post(url, b"{}", secret=None)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
