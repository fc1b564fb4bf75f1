"""A stock Prometheus Alertmanager (Debian's ``prometheus-alertmanager``, the real binary on 127.0.0.1)
delivers drift alerts to the retrain trigger (the ``marlops webhook serve`` app under uvicorn), configured
from the shipped ``monitoring/alertmanager.yaml`` (only its URL, token file and timings filled in).

Asserted: one firing group of two drift alerts (the project's own sender posting ``MarlopsDataDrift`` to
Alertmanager's API, plus a ``MarlopsFeatureDrift``) starts exactly one retraining, also after Alertmanager
repeats the notification; the group's resolved notification starts none; a resolved-only notification
starts none; Alertmanager delivering with a wrong token gets 401. The trigger is a recording callable: the
real retraining submission behind it is covered end to end by tests/test_monitoring_e2e.py.

Needs the binary (``prometheus-alertmanager`` or ``alertmanager``); skipped without it, except that
``MARLOPS_REQUIRE_ALERTMANAGER=1`` (set by .ci/run) makes its absence a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import Request, Response
from pydantic import SecretStr

from marlops.monitoring.alerts import DriftAlert
from marlops.monitoring.auth import Credentials
from marlops.monitoring.receiver import ReceiverSettings, create_app
from marlops.monitoring.webhooks import send_alert
from receiver_server import free_port, serving

REPO = Path(__file__).resolve().parents[1]
SNIPPET = REPO / "monitoring" / "alertmanager.yaml"
TOKEN = "am-bearer-token-for-tests-" + "y" * 16
HMAC_KEY = SecretStr("hmac-key-for-tests-only-0123456789")


def _binary() -> str:
    """Alertmanager's path; skip without it, unless CI requires it (then fail)."""
    path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if path is None:
        if os.environ.get("MARLOPS_REQUIRE_ALERTMANAGER") == "1":
            pytest.fail(
                "MARLOPS_REQUIRE_ALERTMANAGER=1 but no prometheus-alertmanager/alertmanager binary on PATH",
                pytrace=False,
            )
        pytest.skip("Alertmanager not installed (Debian: prometheus-alertmanager)")
    return path


def _until(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


class _Trigger:
    def __init__(self) -> None:
        self.calls: list[DriftAlert] = []
        self.answers: list[tuple[str, int]] = []
        """(User-Agent, status code) of every POST /alerts the receiver answered."""

    def __call__(self, alert: DriftAlert) -> dict:
        self.calls.append(alert)
        return {"run_id": f"run-{len(self.calls)}"}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, _Trigger]]:
    trigger = _Trigger()
    creds = Credentials(hmac_secret=HMAC_KEY, bearer_token=SecretStr(TOKEN))
    # no cooldown: only the de-duplication may keep a repeated notification from starting a retraining
    # (and no rate limit in the way of Alertmanager's resending of the wrong-token group every second)
    settings = ReceiverSettings(
        credentials=creds, state_dir=tmp_path / "state", cooldown_s=0, rate_limit=10_000
    )
    app = create_app(settings, trigger)

    @app.middleware("http")
    async def record(request: Request, call_next: Callable) -> Response:
        response = await call_next(request)
        if request.url.path == "/alerts":
            trigger.answers.append((request.headers.get("user-agent", ""), response.status_code))
        return response

    with serving(app) as url:
        yield url, trigger


def _config(tmp_path: Path, receiver_url: str) -> Path:
    """The shipped snippet with this test's URL, token files and short timings; plus a route whose token
    is wrong (alerts labelled channel=wrong-token), built from the same receiver."""
    cfg = yaml.safe_load(SNIPPET.read_text())
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "wrong").write_text("not-the-token\n")
    route = next(r for r in cfg["route"]["routes"] if r["receiver"] == "marlops-retrain")
    route.update(group_wait="2s", group_interval="1s", repeat_interval="3s")
    recv = next(r for r in cfg["receivers"] if r["name"] == "marlops-retrain")
    hook = recv["webhook_configs"][0]
    hook["url"] = f"{receiver_url}/alerts"
    hook["http_config"]["authorization"]["credentials_file"] = str(tmp_path / "token")
    wrong = json.loads(json.dumps(recv))
    wrong["name"] = "marlops-wrong-token"
    wrong["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"] = str(tmp_path / "wrong")
    cfg["receivers"].append(wrong)
    wrong_route = {**route, "receiver": "marlops-wrong-token", "continue": False}
    wrong_route["matchers"] = [*route["matchers"], 'channel="wrong-token"']
    cfg["route"]["routes"].insert(0, wrong_route)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: tuple[str, _Trigger]) -> Iterator[str]:
    binary = _binary()
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={_config(tmp_path, receiver[0])}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
        try:
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _until("Alertmanager to be ready", ready)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _counts(receiver_url: str) -> dict[str, float]:
    text = httpx.get(f"{receiver_url}/metrics").text
    return {
        m[1]: float(m[2])
        for m in re.finditer(r'^marlops_webhook_requests_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    }


def _am_alert(name: str, starts: datetime, **labels: str) -> dict:
    """An alert as Prometheus posts it to Alertmanager's API (no endsAt: firing)."""
    return {
        "labels": {"alertname": name, "severity": "info", "service": "marlops", **labels},
        "annotations": {"summary": f"{name} for the test"},
        "startsAt": starts.isoformat(),
        "generatorURL": "http://prometheus.example/graph?g0.expr=marlops_drift_share",
    }


def _held(api: str) -> dict:
    """The MarlopsDataDrift alert as Alertmanager holds it (labels, startsAt), to resolve it."""
    held = httpx.get(api, params={"filter": 'alertname="MarlopsDataDrift"'}).json()
    (a,) = [a for a in held if a["labels"].get("channel") != "wrong-token"]
    return {"labels": a["labels"], "annotations": a["annotations"], "startsAt": a["startsAt"]}


def test_a_stock_alertmanager_starts_one_retraining_per_group(
    alertmanager: str, receiver: tuple[str, _Trigger]
) -> None:
    recv_url, trigger = receiver
    api = f"{alertmanager}/api/v2/alerts"
    now = datetime.now(UTC).replace(microsecond=0)

    # one group, two firing drift alerts: the project's sender posts MarlopsDataDrift to the API (signed;
    # Alertmanager ignores the signature), the test a MarlopsFeatureDrift by dataset
    drift = DriftAlert(
        alert_id="drift-run-0001",
        created_at=now,
        instrument="SYNTH",
        verdict="drift: datasets regime",
        report="http://reports.example/drift/index.html",
    )
    (sent,) = send_alert(drift, [f"alertmanager:{api}"], HMAC_KEY)
    assert sent.ok and sent.status == 200, sent
    feature = _am_alert("MarlopsFeatureDrift", now, dataset="regime", instrument="SYNTH")
    assert httpx.post(api, json=[feature]).status_code == 200
    # a group whose notification carries the wrong token
    wrong = _am_alert("MarlopsDataDrift", now, channel="wrong-token")
    assert httpx.post(api, json=[wrong]).status_code == 200

    # the first notification: 202, one retraining for both alerts
    _until("the first notification", lambda: _counts(recv_url).get("accepted", 0) >= 1)
    _until("the trigger", lambda: len(trigger.calls) >= 1, timeout=5)
    (run,) = httpx.get(f"{recv_url}/runs").json()["triggers"]
    assert run["status"] == "submitted" and run["run_id"] == "run-1"
    called = trigger.calls[0]
    assert called.instrument == "SYNTH" and called.alert_id.startswith("am-")
    assert called.drifted_datasets == ["regime"]  # MarlopsFeatureDrift's dataset label
    assert called.report.startswith("http://")  # the report annotation, else generatorURL

    # Alertmanager repeats the group (repeat_interval 3 s): 200 duplicate, no second retraining
    _until("a repeated notification", lambda: _counts(recv_url).get("duplicate", 0) >= 1)
    # the wrong token: Alertmanager's delivery is answered 401 (a 4xx is not retried within the
    # notification; the unnotified group is sent again at the next group_interval)
    _until("the wrong-token notification", lambda: _counts(recv_url).get("unauthorized", 0) >= 1)

    # both alerts resolve: the resolved notification is recorded and ignored
    ended = datetime.now(UTC)
    data = {**_held(api), "endsAt": ended.isoformat()}
    resolved = [data, {**feature, "endsAt": ended.isoformat()}]
    assert httpx.post(api, json=resolved).status_code == 200
    _until("the resolved notification", lambda: _counts(recv_url).get("ignored", 0) >= 1)

    counts = _counts(recv_url)
    assert counts.get("accepted") == 1 and counts.get("bad_request", 0) == 0, counts
    # what Alertmanager itself was answered: one 202, 200s (duplicate, ignored), 401s (the wrong token)
    codes = [code for agent, code in trigger.answers if agent.startswith("Alertmanager/")]
    assert codes.count(202) == 1 and codes.count(200) >= 2 and 401 in codes, trigger.answers
    assert set(codes) == {200, 202, 401}, codes
    assert len(trigger.calls) == 1
    assert len(httpx.get(f"{recv_url}/runs").json()["triggers"]) == 1


def test_resolved_only_and_wrong_credentials_posted_directly(receiver: tuple[str, _Trigger]) -> None:
    """Alertmanager never notifies a group that only ever held resolved alerts; the receiver's answer to
    one, as Alertmanager would send it, is still 'ignored'."""
    recv_url, trigger = receiver
    starts = datetime.now(UTC) - timedelta(minutes=5)
    body = {
        "version": "4",
        "groupKey": '{}/{alertname=~"^(?:MarlopsDataDrift|MarlopsFeatureDrift)$"}:{service="marlops"}',
        "truncatedAlerts": 0,
        "status": "resolved",
        "receiver": "marlops-retrain",
        "groupLabels": {"service": "marlops"},
        "commonLabels": {"alertname": "MarlopsDataDrift", "service": "marlops"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": [
            {
                "status": "resolved",
                "labels": {"alertname": "MarlopsDataDrift", "service": "marlops"},
                "annotations": {},
                "startsAt": starts.isoformat(),
                "endsAt": datetime.now(UTC).isoformat(),
                "generatorURL": "",
                "fingerprint": "0123456789abcdef",
            }
        ],
    }
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{recv_url}/alerts", json=body, headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "ignored", r.text
    assert r.json()["alerts"][0]["detail"] == "alert is resolved"
    wrong = httpx.post(f"{recv_url}/alerts", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "bearer: wrong or empty token"
    assert trigger.calls == [] and httpx.get(f"{recv_url}/runs").json()["triggers"] == []
