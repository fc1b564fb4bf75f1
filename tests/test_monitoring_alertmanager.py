"""The retrain trigger as a stock Alertmanager's webhook receiver: the version-4 notification's parsing
(grouped, firing/resolved, foreign alert names, the fields named on error), the bearer/basic/HMAC schemes,
one retraining per group and de-duplication by groupKey + fingerprint + startsAt, and plain-text run
records. The app runs under uvicorn on a free port; tests/test_alertmanager_e2e.py has the real
Alertmanager deliver."""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from marlops.monitoring import auth as auth_module
from marlops.monitoring.alertmanager import alert_id, parse_notification, parse_received
from marlops.monitoring.alerts import AlertFormatError, DriftAlert, render
from marlops.monitoring.auth import AuthError, Credentials, authenticate
from marlops.monitoring.receiver import ReceiverSettings, create_app
from marlops.monitoring.signing import sign
from marlops.monitoring.trigger_state import plain_text
from marlops.secret_files import SecretSettingError
from receiver_server import serving

TOKEN = SecretStr("bearer-token-for-tests-0123456789")
KEY = SecretStr("hmac-key-for-tests-0123456789")
USER, PASSWORD = SecretStr("alertmanager"), SecretStr("basic-password-for-tests")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
GROUP = '{}/{alertname=~"^(?:MarlopsDataDrift|MarlopsFeatureDrift)$"}:{service="marlops"}'


def _am(name: str, status: str = "firing", fp: str = "a1", starts: datetime = T0, **labels: str) -> dict:
    return {
        "status": status,
        "labels": {"alertname": name, "service": "marlops", **labels},
        "annotations": {"summary": f"{name} summary"},
        "startsAt": starts.isoformat().replace("+00:00", "Z"),
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else (starts + timedelta(hours=1)).isoformat(),
        "generatorURL": f"http://prometheus.example/graph?{name}",
        "fingerprint": fp,
    }


def _notification(*alerts: dict, group: str = GROUP, truncated: int = 0) -> dict:
    """A body as Alertmanager 0.25 sends it (webhook_config, version 4)."""
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "receiver": "marlops-retrain",
        "status": "firing" if firing else "resolved",
        "alerts": list(alerts),
        "groupLabels": {"service": "marlops"},
        "commonLabels": {"service": "marlops"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": group,
        "truncatedAlerts": truncated,
    }


# ------------------------------------------------------------------------------------------- parsing


def test_a_group_maps_to_drift_alerts() -> None:
    body = _notification(
        _am("MarlopsDataDrift", fp="f1", instrument="SYNTH"),
        _am("MarlopsFeatureDrift", fp="f2", dataset="regime"),
        _am("MarlopsFeatureDrift", status="resolved", fp="f3", dataset="tactical"),
        _am("MarlopsDriftJobStale", fp="f4"),
    )
    body["alerts"][0]["annotations"]["report"] = "http://reports.example/drift/index.html"
    got = parse_notification(body)
    assert got.group_key == GROUP and got.truncated == 0
    assert [(r.name, r.drift, r.alert.status) for r in got.alerts] == [
        ("MarlopsDataDrift", True, "firing"),
        ("MarlopsFeatureDrift", True, "firing"),
        ("MarlopsFeatureDrift", True, "resolved"),
        ("MarlopsDriftJobStale", False, "firing"),
    ]
    data, feature, resolved, _ = (r.alert for r in got.alerts)
    assert data.instrument == "SYNTH" and data.report == "http://reports.example/drift/index.html"
    assert data.verdict == "MarlopsDataDrift summary" and data.created_at == T0
    assert feature.drifted_datasets == ["regime"] and feature.report.startswith("http://prometheus.example")
    assert data.alert_id == alert_id(GROUP, "f1", T0, "firing") and data.alert_id.startswith("am-")
    assert resolved.alert_id.endswith("-resolved")
    # the key: groupKey + fingerprint + startsAt; each part changes it
    ids = {
        alert_id(GROUP, "f1", T0, "firing"),
        alert_id(GROUP + "x", "f1", T0, "firing"),
        alert_id(GROUP, "f2", T0, "firing"),
        alert_id(GROUP, "f1", T0 + timedelta(seconds=1), "firing"),
    }
    assert len(ids) == 4 and all(len(i) <= 128 for i in ids)


def test_alertmanager_timestamps_parse() -> None:
    """Alertmanager writes nanoseconds (Go's RFC 3339) and a zero endsAt while firing."""
    a = _am("MarlopsDataDrift")
    a["startsAt"] = "2025-03-01T12:00:00.123456789Z"
    (r,) = parse_notification(_notification(a)).alerts
    assert r.alert.created_at == T0 + timedelta(microseconds=123456)
    assert r.alert.alert_id == alert_id(GROUP, "a1", r.alert.created_at, "firing")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["alerts"][0]["labels"].pop("alertname"), "alerts.0.labels.alertname"),
        (lambda b: b["alerts"][1].pop("fingerprint"), "alerts.1.fingerprint"),
        (lambda b: b["alerts"][0].update(startsAt="yesterday"), "alerts.0.startsAt"),
        (lambda b: b["alerts"][1].update(endsAt=None, generatorURL=7), "alerts.1.generatorURL"),
        (lambda b: b["alerts"][0].update(status="pending"), "alerts.0.status"),
        (lambda b: b["alerts"][0]["labels"].update(value=1.5), "alerts.0.labels.value"),
        (lambda b: b.pop("groupKey"), "groupKey"),
        (lambda b: b.update(version="3"), "version"),
        (lambda b: b.update(alerts=[]), "alerts"),
        (lambda b: b.update(truncatedAlerts=-1), "truncatedAlerts"),
    ],
)
def test_a_malformed_notification_names_the_field(mutate, field: str) -> None:
    body = _notification(_am("MarlopsDataDrift"), _am("MarlopsFeatureDrift", fp="b2"))
    mutate(body)
    with pytest.raises(AlertFormatError, match=f"field '{field}'"):
        parse_received(body)


def test_the_other_forms_still_parse() -> None:
    a = DriftAlert(alert_id="run-0001abcd", created_at=T0, verdict="drift")
    generic = parse_received(render(a, "generic"))  # has a 'version' field of its own (1)
    assert [r.alert for r in generic.alerts] == [a] and generic.group_key is None
    api = render(a, "alertmanager")
    api[0]["labels"]["alertname"] = "MarlopsFeatureDrift"  # the chart's other drift rule is accepted
    assert parse_received(api).alerts[0].alert.alert_id == "run-0001abcd"
    with pytest.raises(AlertFormatError, match=r"field 'kind'.*'version': '4'"):
        parse_received({"hello": 1})


# ---------------------------------------------------------------------------------------------- auth

ALL = Credentials(hmac_secret=KEY, bearer_token=TOKEN, basic_user=USER, basic_password=PASSWORD)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _check(creds: Credentials, headers: dict[str, str], body: bytes = b"{}") -> str:
    return authenticate(creds, httpx.Headers(headers), body, now=1e9, tolerance_s=300).scheme


def test_each_scheme_right_and_wrong() -> None:
    assert _check(ALL, {"Authorization": f"Bearer {TOKEN.get_secret_value()}"}) == "bearer"
    assert _check(ALL, {"authorization": f"bearer  {TOKEN.get_secret_value()} "}) == "bearer"
    assert _check(ALL, {"Authorization": _basic("alertmanager", PASSWORD.get_secret_value())}) == "basic"
    signed = _check(ALL, sign(KEY, b"{}", now=1e9))
    assert signed == "hmac"
    cases = [
        ({"Authorization": "Bearer wrong"}, "bearer: wrong or empty token"),
        ({"Authorization": "Bearer "}, "bearer: wrong or empty token"),
        ({"Authorization": _basic("alertmanager", "wrong")}, "basic: wrong user name or password"),
        ({"Authorization": _basic("someone", PASSWORD.get_secret_value())}, "basic: wrong user name"),
        ({"Authorization": "Basic !!!notbase64"}, "basic: malformed credentials"),
        ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, "basic: malformed"),
        ({"Authorization": "Token-without-scheme"}, "authorization: unsupported scheme"),
        ({}, "^unauthenticated request: no X-Marlops-Timestamp/X-Marlops-Signature headers"),
        ({**sign(KEY, b"{}", now=1e9), "X-Marlops-Signature": "sha256=" + "0" * 64}, "hmac: signature mis"),
    ]
    for headers, message in cases:
        with pytest.raises(AuthError, match=message) as e:
            _check(ALL, headers)
        for secret in (TOKEN, PASSWORD, KEY):  # never echoed
            assert secret.get_secret_value() not in str(e.value)
        assert "Token-without-scheme" not in str(e.value)


def test_a_scheme_not_configured_says_which_settings_enable_it() -> None:
    only_bearer = Credentials(bearer_token=TOKEN)
    with pytest.raises(AuthError, match=r"hmac: not accepted.*\$MARLOPS_WEBHOOK_SECRET or"):
        _check(only_bearer, sign(KEY, b"{}", now=1e9))
    with pytest.raises(AuthError, match=r"basic: not accepted.*\$MARLOPS_WEBHOOK_BASIC_USER and"):
        _check(only_bearer, {"Authorization": _basic("a", "b")})
    with pytest.raises(AuthError, match=r"bearer: not accepted.*\$MARLOPS_WEBHOOK_BEARER_TOKEN or"):
        _check(Credentials(hmac_secret=KEY), {"Authorization": "Bearer x"})
    with pytest.raises(AuthError, match=r"accepts: bearer\)"):
        _check(only_bearer, {})


def test_credentials_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    _check(ALL, {"Authorization": f"Bearer {TOKEN.get_secret_value()}"})
    assert calls == [(TOKEN.get_secret_value().encode(),) * 2]
    calls.clear()
    with pytest.raises(AuthError):  # a wrong user: the password is compared too
        _check(ALL, {"Authorization": _basic("x", "y")})
    assert len(calls) == 2


def test_credentials_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no authentication configured.*BEARER_TOKEN.*BASIC_USER"):
        Credentials()
    with pytest.raises(ValueError, match="basic auth needs both"):
        Credentials(basic_user=USER)
    with pytest.raises(ValueError, match="MARLOPS_WEBHOOK_BEARER_TOKEN is empty"):
        Credentials(hmac_secret=KEY, bearer_token=SecretStr(""))
    (tmp_path / "token").write_text(TOKEN.get_secret_value() + "\n")
    (tmp_path / "password").write_text(PASSWORD.get_secret_value())
    env = {
        "MARLOPS_WEBHOOK_BEARER_TOKEN_FILE": str(tmp_path / "token"),
        "MARLOPS_WEBHOOK_BASIC_USER": "alertmanager",
        "MARLOPS_WEBHOOK_BASIC_PASSWORD_FILE": str(tmp_path / "password"),
    }
    creds = Credentials.from_env(env)
    assert creds.schemes == ("bearer", "basic") and creds.bearer_token == TOKEN
    assert TOKEN.get_secret_value() not in repr(creds) and PASSWORD.get_secret_value() not in repr(creds)
    with pytest.raises(SecretSettingError, match=r"BEARER_TOKEN and .*_FILE are both set"):
        Credentials.from_env({**env, "MARLOPS_WEBHOOK_BEARER_TOKEN": "x"})


def test_serve_needs_a_scheme_and_says_which_are_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from marlops.cli import app
    from marlops.monitoring import receiver

    for name in ("SECRET", "BEARER_TOKEN", "BASIC_USER", "BASIC_PASSWORD"):
        monkeypatch.delenv(f"MARLOPS_WEBHOOK_{name}", raising=False)
        monkeypatch.delenv(f"MARLOPS_WEBHOOK_{name}_FILE", raising=False)
    runner = CliRunner()
    state = ["--state", str(tmp_path)]
    r = runner.invoke(app, ["webhook", "serve", *state])
    assert r.exit_code == 2 and "no authentication configured" in r.output
    assert "MARLOPS_WEBHOOK_BEARER_TOKEN_FILE" in r.output
    served: list[ReceiverSettings] = []
    monkeypatch.setattr(receiver, "serve", lambda settings, trigger, **kw: served.append(settings))
    (tmp_path / "token").write_text(TOKEN.get_secret_value())
    monkeypatch.setenv("MARLOPS_WEBHOOK_BEARER_TOKEN_FILE", str(tmp_path / "token"))
    r = runner.invoke(app, ["webhook", "serve", *state])
    assert r.exit_code == 0 and "auth: bearer;" in " ".join(r.output.split()), r.output
    assert served[0].auth.bearer_token == TOKEN and TOKEN.get_secret_value() not in r.output
    help_text = runner.invoke(app, ["webhook", "serve", "--help"]).output
    assert "MARLOPS_WEBHOOK_BEARER_TOKEN" in help_text and "basic" in help_text


# ------------------------------------------------------------------------------------------ receiver


class _Trigger:
    def __init__(self, error: str | None = None) -> None:
        self.calls: list[DriftAlert] = []
        self.error = error

    def __call__(self, alert: DriftAlert) -> dict:
        self.calls.append(alert)
        if self.error:
            raise RuntimeError(self.error)
        return {"run_id": f"run-{len(self.calls)}", "log": "\x1b[32mSUCCEEDED\x1b[0m"}


class _Client(httpx.Client):
    """An HTTP client of one running receiver app (its ``app`` for the background threads)."""

    app: object


@pytest.fixture
def app_for(tmp_path: Path) -> Iterator:
    made: list[_Client] = []
    with ExitStack() as stack:

        def make(trigger: _Trigger, **kw: object) -> _Client:
            kw = {"cooldown_s": 0, "rate_limit": 1000, **kw}
            state = tmp_path / f"state{len(made)}"
            settings = ReceiverSettings(credentials=ALL, state_dir=state, **kw)  # type: ignore[arg-type]
            app = create_app(settings, trigger)
            url = stack.enter_context(serving(app))
            client = stack.enter_context(_Client(base_url=url, timeout=10))
            client.app = app
            made.append(client)
            return client

        yield make


def _post(client: _Client, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"}
    h.update({"Authorization": f"Bearer {TOKEN.get_secret_value()}"} if headers is None else headers)
    r = client.post("/alerts", content=raw, headers=h)
    for t in client.app.state.threads:  # type: ignore[attr-defined]
        t.join(5)
    return r


def test_one_retraining_per_group_and_none_on_repeat(app_for) -> None:
    trig = _Trigger()
    client = app_for(trig)
    group = _notification(
        _am("MarlopsDataDrift", fp="f1", instrument="SYNTH"),
        _am("MarlopsFeatureDrift", fp="f2", dataset="regime"),
        _am("MarlopsFeatureDrift", status="resolved", fp="f3", dataset="tactical"),
        _am("MarlopsDriftJobStale", fp="f4"),
    )
    r = _post(client, group)
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["status"] == "accepted" and out["group_key"] == GROUP
    tid = out["trigger_id"]
    assert [(a["alertname"], a["outcome"], a.get("trigger_id")) for a in out["alerts"]] == [
        ("MarlopsDataDrift", "triggered", tid),
        ("MarlopsFeatureDrift", "triggered", tid),
        ("MarlopsFeatureDrift", "ignored", None),
        ("MarlopsDriftJobStale", "ignored", None),
    ]
    assert out["alerts"][2]["detail"] == "alert is resolved"
    assert out["alerts"][3]["detail"] == "MarlopsDriftJobStale is not a drift rule"
    assert len(trig.calls) == 1 and trig.calls[0].drifted_datasets == ["regime"]
    assert trig.calls[0].instrument == "SYNTH"

    again = _post(client, group)  # Alertmanager's repeat_interval, or its retry after a timeout
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert {a["first_outcome"] for a in again.json()["alerts"]} == {"triggered", "ignored"}
    assert len(trig.calls) == 1

    # the group resolves: recorded, ignored, the firing records kept
    resolved = _notification(*({**a, "status": "resolved"} for a in group["alerts"][:2]))
    r = _post(client, resolved)
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert _post(client, group).json()["alerts"][0]["first_outcome"] == "triggered"
    # the same rule firing again later is a new alert instance (a new startsAt): a new retraining
    later = _notification(_am("MarlopsDataDrift", fp="f1", starts=T0 + timedelta(hours=2)))
    assert _post(client, later).status_code == 202 and len(trig.calls) == 2
    runs = client.get("/runs").json()["triggers"]
    assert [r["status"] for r in runs] == ["submitted", "submitted"]


def test_a_group_within_the_cooldown_and_truncated_alerts(app_for, caplog) -> None:
    trig = _Trigger()
    client = app_for(trig, cooldown_s=600)
    caplog.set_level(logging.WARNING)
    first = _post(client, _notification(_am("MarlopsDataDrift", fp="c1"), truncated=3))
    assert first.status_code == 202 and first.json()["truncated_alerts"] == 3
    assert "left out 3 alert(s)" in caplog.text
    other = _post(client, _notification(_am("MarlopsFeatureDrift", fp="c2"), group="{}:{other}"))
    assert other.status_code == 200 and other.json()["status"] == "cooldown"
    assert other.json()["trigger_id"] == first.json()["trigger_id"] and other.json()["retry_after_s"] > 0
    assert len(trig.calls) == 1


def test_answers_in_order_for_alertmanager_bodies(app_for) -> None:
    trig = _Trigger()
    client = app_for(trig, max_body_bytes=2048)
    big = _notification(_am("MarlopsDataDrift", **{"pad": "x" * 3000}))
    assert _post(client, big, headers={}).status_code == 413  # size before credentials
    assert _post(client, b"{garbage", headers={}).status_code == 401  # credentials before parsing
    wrong = _post(client, _notification(_am("MarlopsDataDrift")), headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "bearer: wrong or empty token"
    basic = {"Authorization": _basic("alertmanager", PASSWORD.get_secret_value())}
    for raw, message in (
        (b"{garbage", "body is not JSON"),
        (b'{"version": "4", "truncatedAlerts": NaN}', "NaN is not valid JSON"),
        (b'[{"labels": Infinity}]', "Infinity is not valid JSON"),
        (b"\xff\xfe", "body is not JSON"),
    ):
        r = _post(client, raw, headers=basic)
        assert r.status_code == 400 and message in r.json()["detail"], r.text
    body = _notification(_am("MarlopsDataDrift"))
    del body["alerts"][0]["labels"]["alertname"]
    r = _post(client, body)
    assert r.status_code == 400 and r.json()["detail"] == "field 'alerts.0.labels.alertname': missing"
    assert trig.calls == []
    metrics = client.get("/metrics").text
    assert 'marlops_webhook_requests_total{outcome="unauthorized"} 2.0' in metrics


def test_hmac_still_signs_and_replays_are_still_caught(app_for) -> None:
    client = app_for(_Trigger())
    body = json.dumps(_notification(_am("MarlopsDataDrift"))).encode()
    h = sign(KEY, body)
    assert _post(client, body, headers=h).status_code == 202
    assert _post(client, body, headers=h).status_code == 409


def test_runs_hold_plain_text(app_for) -> None:
    coloured = "\x1b[1;31mApiException\x1b[0m: \x1b]8;;http://kfp\x07pipeline\x1b]8;;\x07 failed\r\n\x00bye"
    client = app_for(_Trigger(error=coloured))
    assert _post(client, _notification(_am("MarlopsDataDrift", fp="p1"))).status_code == 202
    (failed,) = client.get("/runs").json()["triggers"]
    assert failed["status"] == "failed"
    assert failed["detail"]["error"] == "RuntimeError: ApiException: pipeline failed\nbye"
    ok = app_for(_Trigger())
    assert _post(ok, _notification(_am("MarlopsDataDrift", fp="p2"))).status_code == 202
    latest = ok.get("/runs").json()["triggers"][0]
    assert latest["detail"] == {"run_id": "run-1", "log": "SUCCEEDED"}
    assert plain_text(["\x1b(Bx\x9b1my", {"k\x1b[0m": 1}]) == ["xy", {"k": 1}]
