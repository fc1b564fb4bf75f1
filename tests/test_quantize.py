"""INT8 serving graphs and their parity gate: an untrained team's INT8 graphs pass the replay and regime
checks and load with precision="int8" close to fp32; graphs with corrupted weights fail the gate (a real
replay, nothing mocked) and leave nothing loadable; int8 without an accepted gate is an error.

Untrained networks' outputs are near ties (the risk head's random Q-values above all), so their INT8
replay agrees on ~98.6 % of these closes, under the production 0.99 (a trained team passes at 0.992,
docs/agents.md): the tests gate at MIN_SHARE = 0.9, which the corrupted graphs miss by far."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from marlops.agents import quantize as Q
from marlops.agents.runtime import AgentSet, export_cache_path
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL

DAYS = 0.5  # scored days per gate run in the tests (after the 3 warm-up days): ~5 s a run
MIN_SHARE = 0.9


@pytest.fixture(scope="module")
def saved_team(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untrained seed-0 team as saved (copied from the export cache: no export in the tests)."""
    agents = AgentSet.untrained(seed=0)
    src = export_cache_path(agents.versions)
    dst = tmp_path_factory.mktemp("team") / "agents"
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def int8_graphs(saved_team: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return Q.quantize_team(saved_team, tmp_path_factory.mktemp("int8"))


@pytest.fixture
def team(saved_team: Path, tmp_path: Path) -> Path:
    d = tmp_path / "agents"
    shutil.copytree(saved_team, d)
    return d


@pytest.fixture(scope="module")
def gated(saved_team: Path, int8_graphs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """The team after an accepted gate run, and its report (one replay pair for the module)."""
    d = tmp_path_factory.mktemp("gated") / "agents"
    shutil.copytree(saved_team, d)
    return d, Q.check_int8(d, days=DAYS, min_share=MIN_SHARE, graphs=int8_graphs)


@pytest.fixture
def accepted_team(gated: tuple[Path, Q.Int8Report], tmp_path: Path) -> Path:
    d = tmp_path / "accepted" / "agents"
    shutil.copytree(gated[0], d)
    return d


def test_quantized_graphs_are_int8_and_smaller(saved_team: Path, int8_graphs: dict[str, Path]) -> None:
    assert set(int8_graphs) == {"regime", "structure", "tactical", "risk_encode", "risk_q"}
    ops = {n.op_type for n in onnx.load(str(int8_graphs["structure"])).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "MatMulInteger" in ops  # the LSTM too, after constant folding
    fp32 = saved_team / "structure" / "structure.onnx"
    assert int8_graphs["structure"].stat().st_size < 0.5 * fp32.stat().st_size


def test_gate_accepts_agreeing_int8_graphs_and_int8_loads(gated: tuple[Path, Q.Int8Report]) -> None:
    team, r = gated
    assert r.accepted, r
    assert r.closes == DAYS * 288 and r.close_share >= MIN_SHARE
    assert r.regime_samples == DAYS * 48 and r.regime_bacc_drop <= Q.MAX_BACC_DROP
    saved = json.loads((team / Q.GATE_FILE).read_text())
    assert saved["accepted"] is True and saved["close_share"] == r.close_share
    for agent in ("regime", "structure", "tactical", "risk"):
        rec = json.loads((team / agent / Q.AGENT_FILE).read_text())
        assert rec["accepted"] and rec["team_versions"] == r.versions
        assert all((team / agent / f).is_file() for f in rec["entries"].values())

    fp32 = AgentSet.load(team)
    int8 = AgentSet.load(team, precision="int8")
    assert int8.versions == fp32.versions
    rng = np.random.default_rng(3)
    for _ in range(3):
        rm = rng.standard_normal(REGIME.shape).astype(np.float32)
        sm = rng.standard_normal(STRUCTURE.shape).astype(np.float32)
        tm = rng.standard_normal(TACTICAL.shape).astype(np.float32)
        a, b = fp32.regime(rm), int8.regime(rm)
        np.testing.assert_allclose(b.probs, a.probs, atol=0.05)
        msgs, mask = a.message[None], np.ones(1, bool)
        s32, s8 = fp32.structure(sm, msgs, mask), int8.structure(sm, msgs, mask)
        np.testing.assert_allclose(s8.action_probs, s32.action_probs, atol=0.05)
        assert abs(s8.size - s32.size) < 0.05
        msgs2 = np.stack([a.message, s32.message])
        t32, t8 = fp32.tactical(tm, msgs2, np.ones(2, bool)), int8.tactical(tm, msgs2, np.ones(2, bool))
        np.testing.assert_allclose(t8.action_probs, t32.action_probs, atol=0.05)
        c32, c8 = fp32.risk_cache(tm, sm, rm), int8.risk_cache(tm, sm, rm)
        assert np.max(np.abs(c8 - c32)) < 0.1 * max(1.0, float(np.max(np.abs(c32))))


def _corrupt(src: Path, dst: Path) -> Path:
    """The INT8 graph with every quantized weight's sign flipped: it runs, and decides differently."""
    model = onnx.load(str(src))
    flipped = 0
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.int8 and w.size > 64:
            init.CopyFrom(numpy_helper.from_array(np.negative(w.clip(-127, 127)), init.name))
            flipped += 1
    assert flipped
    onnx.save(model, str(dst))
    return dst


def test_gate_rejects_int8_graphs_that_decide_differently(
    accepted_team: Path, int8_graphs: dict[str, Path], tmp_path: Path
) -> None:
    team = accepted_team  # an earlier accepted gate...
    assert AgentSet.load(team, precision="int8").versions
    bad = dict(int8_graphs)
    bad["tactical"] = _corrupt(int8_graphs["tactical"], tmp_path / "tactical.int8.onnx")
    bad["regime"] = _corrupt(int8_graphs["regime"], tmp_path / "regime.int8.onnx")
    r = Q.check_int8(team, days=DAYS, min_share=MIN_SHARE, graphs=bad)
    assert not r.accepted
    assert r.close_share < MIN_SHARE - 0.2, r
    assert r.regime_agreement < 1.0
    assert json.loads((team / Q.GATE_FILE).read_text())["accepted"] is False
    # ...is gone with its files: nothing stale can be loaded
    assert not list(team.glob(f"*/*{Q.INT8_SUFFIX}")) and not list(team.glob(f"*/{Q.AGENT_FILE}"))
    with pytest.raises(Q.Int8Error, match="precision=int8"):
        AgentSet.load(team, precision="int8")


def test_int8_needs_an_accepted_gate_for_these_agents(team: Path, accepted_team: Path) -> None:
    with pytest.raises(Q.Int8Error, match=r"precision=int8.*no INT8 graphs accepted by the parity gate"):
        AgentSet.load(team, precision="int8")
    with pytest.raises(ValueError, match="precision"):
        AgentSet.load(team, precision="int4")
    with pytest.raises(ValueError, match="backend='onnx'"):
        AgentSet.load(team, backend="eager", precision="int8")
    team = accepted_team
    rec_path = team / "tactical" / Q.AGENT_FILE
    rec = json.loads(rec_path.read_text())
    rec["version"] = "tactical-000000000000"  # gated for another version of the agent
    rec_path.write_text(json.dumps(rec))
    with pytest.raises(Q.Int8Error, match="was gated for tactical-000000000000"):
        AgentSet.load(team, precision="int8")
    assert AgentSet.load(team).versions  # fp32, the default, is untouched


def test_same_decision_definition() -> None:
    from dataclasses import replace

    from marlops.agents.engine import TradeDecision

    d = TradeDecision(
        ts=0, timeframe="5m", action="enter_long", direction=1, confidence=0.5, price=100.0, quantity=10.0,
        target_position=10.0, leverage=0.01, risk_capital=1.0, stop_loss=None, take_profit=None,
        max_exposure=1.0, risk_action="allow", overrides=(), fail_closed=False, reasons=(),
        model_versions={}, latency_us={},
    )  # fmt: skip
    assert Q.same_decision(d, replace(d, target_position=10.05, confidence=0.9))
    assert not Q.same_decision(d, replace(d, target_position=10.2))
    assert not Q.same_decision(d, replace(d, action="hold"))
    assert not Q.same_decision(d, replace(d, risk_action="modify_size"))
    assert not Q.same_decision(d, replace(d, direction=0, target_position=0.0))


def test_cli_quantize_reports_and_exits_by_verdict(team: Path) -> None:
    from marlops.agents.commands import agents_app

    args = ["quantize", str(team), "--days", str(DAYS), "--min-share", str(MIN_SHARE)]
    res = CliRunner().invoke(agents_app, args)
    assert res.exit_code == 0, res.output
    assert "accepted" in res.output and "yes" in res.output
    assert json.loads((team / Q.GATE_FILE).read_text())["per_channel"] is True
    res = CliRunner().invoke(agents_app, ["quantize", str(team.parent / "missing")])
    assert res.exit_code == 2


def test_agent_server_runner_loads_int8_only_when_accepted(accepted_team: Path, team: Path) -> None:
    """What `marlops serve agent NAME --precision int8` loads (registry.onnx_model, no torch)."""
    from marlops.precision import Int8Error
    from marlops.registry.folders import read_agent
    from marlops.serving.agent_runner import AgentRunner

    folder = read_agent(accepted_team / "structure", "structure")
    fp32 = AgentRunner(folder)
    int8 = AgentRunner(folder, precision="int8")
    assert int8.model.precision == "int8" and int8.version == fp32.version
    assert set(int8.entries) == set(fp32.entries)
    entry = fp32.entries["structure"]
    rng = np.random.default_rng(5)
    x = {
        "x": rng.standard_normal((1, *STRUCTURE.shape)).astype(np.float32),
        "msgs": rng.standard_normal((1, 1, 64)).astype(np.float32),
        "mask": np.ones((1, 1), bool),
    }
    a, b = fp32.run(entry, x), int8.run(int8.entries["structure"], x)
    np.testing.assert_allclose(b["probs"], a["probs"], atol=0.05)
    assert not np.array_equal(b["probs"], a["probs"])  # really the other graph
    with pytest.raises(Int8Error, match="precision=int8"):
        AgentRunner(read_agent(team / "structure", "structure"), precision="int8")
