"""The main job (`marlops run`) end to end on tiny settings: the training pipeline through kfp.local,
the champion served by real local KServe servers, the held-out replay over HTTP, the drift check — then
a rerun that trains and registers nothing new."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marlops.cli import app

runner = CliRunner()
# the ci budget is a smoke run (a few PPO updates): whether its team trades is chance, so the gate's
# no-trade refusal (tested in test_registry.py) is switched off here to reach serving and drift
TINY = [
    "--budget", "ci", "--days", "8", "--eval-days", "8", "--replay-days", "0.25",
    "--gate", '{"require_trades": false}',
]  # fmt: skip


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MARLOPS_MLFLOW_DIR", str(tmp_path / "data" / "mlflow"))  # where the job would put it
    monkeypatch.setenv("MARLOPS_CACHE", os.environ.get("MARLOPS_CACHE", str(tmp_path / "cache")))
    return tmp_path / "data"


def test_main_job_end_to_end_then_rerun(workdir: Path) -> None:
    from marlops.registry import list_models, resolve_tracking

    res = runner.invoke(app, ["run", "--workdir", str(workdir), *TINY])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "promoted" in out and "KServe servers over HTTP" in out and "drift · verdict" in out
    for label in ("evaluation report", "decisions", "drift report"):
        assert f"{label}: " in out
    # the registry under --workdir holds the champion; the servers loaded it from there
    cfg = resolve_tracking(None, workdir / "mlflow")
    listing = list_models(cfg)
    assert listing.champion_team is not None and len(listing.rows) == 4
    decisions = [json.loads(x) for x in (workdir / "replay" / "decisions.jsonl").read_text().splitlines()]
    assert len(decisions) > 2 * 288  # every 5-minute close of the warm-up days and the held-out quarter day
    requests = list((workdir / "requests").glob("requests-*.jsonl"))
    assert requests and sum(len(p.read_text().splitlines()) for p in requests) == len(decisions)
    summary = json.loads((workdir / "drift" / "summary.json").read_text())
    # the drift job writes "no drift", or "drift: datasets a, b; key columns c" naming what drifted
    verdict, drifted = summary["verdict"], summary["drift"]
    assert isinstance(drifted, bool)
    named = [*summary["drifted_datasets"], *summary["drifted_key_columns"]]
    if drifted:
        assert verdict.startswith("drift: ") and named and all(n in verdict for n in named), summary
    else:
        assert verdict == "no drift" and not named, summary
    assert (workdir / "drift" / "index.html").exists()
    report = next(workdir.glob("kfp/marlops-training-*/evaluate/evaluation/report.html"))
    assert report.stat().st_size > 10_000

    # rerun (in-process replay to keep it short): nothing trained or registered again
    res = runner.invoke(app, ["run", "--workdir", str(workdir), *TINY, "--no-serve", "--no-drift"])
    assert res.exit_code == 0, res.output
    assert "in-process engine" in res.output and "not promoted" in res.output
    listing2 = list_models(cfg)
    assert listing2.champion_team == listing.champion_team and len(listing2.rows) == 4
    runs = [json.loads(x) for x in (workdir / "kfp" / "runs.jsonl").read_text().splitlines()]
    assert [r["state"] for r in runs] == ["SUCCEEDED", "SUCCEEDED"]
    assert len(list((workdir / "pipeline" / "runs").iterdir())) == 1  # one training run folder, reused


def test_main_job_refuses_bad_settings(workdir: Path) -> None:
    res = runner.invoke(app, ["run", "--workdir", str(workdir), "--budget", "huge", "--days", "8"])
    assert res.exit_code == 2 and "budget: unknown 'huge'" in res.output
    assert not (workdir / "kfp").exists()  # refused before anything ran
    bad_gates = (("{", "gate: not JSON"), ('{"require_trade": false}', "gate: require_trade: Extra"))
    for gate, problem in bad_gates:
        res = runner.invoke(app, ["run", "--workdir", str(workdir), "--days", "8", "--gate", gate])
        assert res.exit_code == 2 and problem in res.output, res.output
    assert not (workdir / "kfp").exists()
