"""The closed loop, end to end on this machine: a regime/volatility shift in the served window →
`marlops drift` finds drift → a signed webhook → the retrain trigger (`marlops webhook serve`'s app under
uvicorn) → a real retraining run of the pipeline through kfp.local → a new challenger in the MLflow
registry. An unshifted window sends no alert; unsigned and replayed alerts get 401/409 and start no run.

The pipeline runs the tiny budget (as tests/test_pipeline.py); the embedded stores live in tmp_path.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from typer.testing import CliRunner

from marlops.cli import app
from marlops.monitoring.alerts import DriftAlert, render
from marlops.monitoring.receiver import ReceiverSettings, create_app
from marlops.monitoring.scenarios import RegimeShift, scenario_frames, write_request_log
from marlops.monitoring.signing import sign
from marlops.pipeline.commands import retraining_trigger

SECRET = "e2e-secret-" + "x" * 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alert(alert_id: str) -> DriftAlert:
    return DriftAlert(alert_id=alert_id, created_at=datetime.now(UTC), verdict="drift: datasets regime")


@pytest.fixture
def platform(platform: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared embedded platform (conftest.py) with the webhook secret set and no webhook URLs."""
    monkeypatch.setenv("MARLOPS_WEBHOOK_SECRET", SECRET)
    monkeypatch.delenv("MARLOPS_WEBHOOK_URLS", raising=False)
    return platform


def test_shift_alerts_and_retrains_a_challenger(platform: Path, pipeline_params: Callable[..., dict]) -> None:
    from marlops.pipeline.submit import list_runs, run_local
    from marlops.registry import list_models, resolve_tracking

    root = platform
    # a champion is serving (the training pipeline, as the main job runs it)
    first = run_local("training", pipeline_params(), root / "kfp")
    assert first.state == "SUCCEEDED" and first.outputs["promoted"] is True
    champion = first.outputs["team"]

    # the served windows: the reference market, then 2 days unshifted or shifted
    calm = scenario_frames(20, 2, seed=0)
    shifted = scenario_frames(20, 2, seed=0, shift=RegimeShift(vol_mult=3.0))
    write_request_log(calm.window("reference"), root / "log" / "reference", seed=1)
    write_request_log(calm.window("current"), root / "log" / "calm", seed=2)
    write_request_log(shifted.window("current"), root / "log" / "shifted", seed=2)

    # the retrain trigger, wired to the retraining pipeline exactly as `marlops webhook serve` wires it;
    # its gate cannot be passed, so the new team stays a challenger
    trigger = retraining_trigger(
        None,
        pipeline_params(
            seed=4, train_seed=5, gate=json.dumps({"min_sharpe_gain": 1e9}), pipeline_root=root / "kfp"
        ),
    )
    settings = ReceiverSettings(secret=SecretStr(SECRET), state_dir=root / "webhook", cooldown_s=3600)
    receiver = create_app(settings, trigger)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(receiver, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    runner = CliRunner()
    drift = ["drift", "--reference", str(root / "log" / "reference"), "--webhook", f"{url}/alerts"]
    try:
        # an unshifted window: no drift, no alert
        r = runner.invoke(app, [*drift, "--current", str(root / "log" / "calm"), "--out", str(root / "calm")])
        assert r.exit_code == 0, r.output
        assert httpx.get(f"{url}/runs").json()["triggers"] == []

        # the shifted window: drift, a signed alert, one retraining
        r = runner.invoke(app, [*drift, "--current", str(root / "log" / "shifted"), "--out", str(root / "s")])
        assert r.exit_code == 1, r.output
        summary = json.loads((root / "s" / "summary.json").read_text())
        assert (
            summary["drift"] and summary["deliveries"][0]["ok"] and summary["deliveries"][0]["status"] == 202
        )
        deadline = time.time() + 900
        while (runs := httpx.get(f"{url}/runs").json()["triggers"])[0]["status"] == "submitting":
            assert time.time() < deadline, "the retraining did not finish"
            time.sleep(1)
        assert runs[0]["status"] == "submitted", runs[0]
        assert runs[0]["alert_id"] == summary["run_id"] and runs[0]["run_id"]

        # unsigned and replayed alerts: 401 / 409, no new run
        body = json.dumps(render(_alert("e2e-alert-0002"), "generic")).encode()
        unsigned = httpx.post(f"{url}/alerts", content=body, headers={"Content-Type": "application/json"})
        assert unsigned.status_code == 401
        signed = sign(SecretStr(SECRET), body)
        assert httpx.post(f"{url}/alerts", content=body, headers=signed).json()["status"] == "cooldown"
        assert httpx.post(f"{url}/alerts", content=body, headers=signed).status_code == 409
        assert len(httpx.get(f"{url}/runs").json()["triggers"]) == 1
    finally:
        for t in receiver.state.threads:
            t.join(60)
        server.should_exit = True
        thread.join(10)

    # the retraining registered a new team as challenger; the champion did not change
    listing = list_models(resolve_tracking())
    assert listing.champion_team == champion
    assert listing.challenger_team is not None and listing.challenger_team != champion
    pipelines = list_runs(root / "kfp")
    assert [p["pipeline"] for p in pipelines] == ["training", "retraining"]
    assert pipelines[1]["parameters"]["alert_id"] == summary["run_id"]
    assert pipelines[1]["run_id"] == runs[0]["run_id"]
