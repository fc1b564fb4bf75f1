"""`marlops decide --replay`: the engine over a tick file or dataset, with an audit log."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from marlops.cli import app

runner = CliRunner()


def test_decide_replays_a_dataset_and_writes_the_audit(tmp_path: Path) -> None:
    ds = tmp_path / "syn"
    assert (
        runner.invoke(app, ["data", "synth", "--days", "2", "--seed", "5", "--out", str(ds)]).exit_code == 0
    )
    audit = tmp_path / "audit.jsonl"
    res = runner.invoke(app, ["decide", "--replay", str(ds), "--audit", str(audit), "--max-position", "100"])
    assert res.exit_code == 0, res.output
    assert "fail-closed decisions" in res.output and "latency tick p50/p99" in res.output
    lines = audit.read_text().splitlines()
    assert len(lines) > 1000
    recs = [json.loads(x) for x in lines]
    assert all(abs(r["decision"]["target_position"]) <= 100 for r in recs)
    # two days are not enough to warm the regime matrix up: the engine must say so and stay flat
    assert all(r["decision"]["fail_closed"] for r in recs if r["decision"]["timeframe"] == "30m")
    assert any("warming_up:higher" in r["decision"]["reasons"] for r in recs)


def test_decide_rejects_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "t.csv"
    bad.write_text("ts,price,size\n2025-01-01T00:00:00Z,nan,1\n")
    res = runner.invoke(app, ["decide", "--replay", str(bad)])
    assert res.exit_code == 2 and "price" in res.output
    res = runner.invoke(app, ["decide", "--replay", str(tmp_path), "--max-position", "5"])
    assert res.exit_code == 2 and "meta.json" in res.output
