"""Saved agents, version ids, the ONNX serving format's parity with eager torch, and the runtime records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from marlops.agents.export import (
    META_FILE,
    PARITY_TOL,
    WEIGHTS_FILE,
    check_parity,
    load_agent,
    net_version,
    ort_session,
    serving_entries,
)
from marlops.agents.runtime import AgentSet, export_cache_path, measure_latency
from marlops.agents.types import (
    MESSAGE_DIM,
    PORTFOLIO_FEATURES,
    PROPOSAL_DIM,
    REGIME_NAMES,
    STRUCTURE_BIAS_LEVELS,
    RegimeOutput,
    RiskAction,
    RiskOutput,
    StructureOutput,
    TacticalAction,
    TacticalOutput,
)
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL
from marlops.team import AGENTS


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[AgentSet, Path]:
    # threads=None: leave torch's process-wide thread count alone for the rest of the test session.
    agents = AgentSet.untrained(seed=0, backend="eager", threads=None)
    d = tmp_path_factory.mktemp("agents")
    agents.save(d)  # exports every serving graph once (the slow part of this file)
    return agents, d


@pytest.fixture(scope="module")
def onnx_set(saved: tuple[AgentSet, Path]) -> AgentSet:
    return AgentSet.load(saved[1], backend="onnx")


def case(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def f32(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "tactical": f32(*TACTICAL.shape),
        "structure": f32(*STRUCTURE.shape),
        "regime": f32(*REGIME.shape),
        "s_msgs": np.tanh(f32(1, MESSAGE_DIM)),
        "t_msgs": np.tanh(f32(2, MESSAGE_DIM)),
        "portfolio": f32(len(PORTFOLIO_FEATURES)),
        "proposal": f32(PROPOSAL_DIM),
    }


def run_all(agents: AgentSet, c: dict[str, np.ndarray], s_mask: np.ndarray, t_mask: np.ndarray) -> list:
    r = agents.regime(c["regime"])
    s = agents.structure(c["structure"], c["s_msgs"], s_mask)
    t = agents.tactical(c["tactical"], c["t_msgs"], t_mask)
    cache = agents.risk_cache(c["tactical"], c["structure"], c["regime"])
    q = agents.risk(cache, c["portfolio"], c["proposal"])
    return [r, s, t, cache, q]


def flat(outs: list) -> list[np.ndarray]:
    vals: list[np.ndarray] = []
    for o in outs:
        if isinstance(o, np.ndarray):
            vals.append(o)
        else:
            vals += [np.atleast_1d(np.asarray(getattr(o, f), dtype=np.float64)) for f in o.__slots__]
    return vals


MASKS = [
    (np.array([True]), np.array([True, True])),
    (np.array([True]), np.array([False, True])),
    (np.array([False]), np.array([True, False])),
    (np.array([False]), np.array([False, False])),
]


def test_saved_layout_and_versions(saved: tuple[AgentSet, Path]) -> None:
    agents, d = saved
    index = json.loads((d / "agents.json").read_text())["versions"]
    assert index == agents.versions
    for name in AGENTS:
        meta = json.loads((d / name / META_FILE).read_text())
        assert meta["version"] == agents.versions[name] == net_version(agents.networks[name])
        assert meta["serving_format"] == "onnx"
        for entry in meta["entries"].values():
            assert (d / name / entry["file"]).is_file()
            assert entry["parity_max_abs_diff"] <= PARITY_TOL
    assert set(json.loads((d / "risk" / META_FILE).read_text())["entries"]) == {"risk_encode", "risk_q"}


def test_every_serving_graph_matches_eager(saved: tuple[AgentSet, Path]) -> None:
    _, d = saved
    for name in AGENTS:
        loaded = load_agent(d / name)
        for entry in serving_entries(loaded.net):
            worst = check_parity(entry, ort_session(loaded.onnx_files[entry.name]), trials=6, seed=7)
            assert worst <= PARITY_TOL


@pytest.mark.parametrize(("s_mask", "t_mask"), MASKS)
def test_onnx_runtime_matches_eager_runtime(
    saved: tuple[AgentSet, Path], onnx_set: AgentSet, s_mask: np.ndarray, t_mask: np.ndarray
) -> None:
    eager, _ = saved
    for seed in range(3):
        c = case(seed)
        for a, b in zip(
            flat(run_all(onnx_set, c, s_mask, t_mask)), flat(run_all(eager, c, s_mask, t_mask)), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=0, atol=PARITY_TOL)


def test_round_trip_keeps_versions_and_outputs(saved: tuple[AgentSet, Path], onnx_set: AgentSet) -> None:
    original, d = saved
    again = AgentSet.load(d, backend="eager", threads=None)
    assert again.versions == original.versions == onnx_set.versions
    for name in AGENTS:
        a, b = original.networks[name].state_dict(), again.networks[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    c = case(11)
    for u, v in zip(flat(run_all(original, c, *MASKS[1])), flat(run_all(again, c, *MASKS[1])), strict=True):
        np.testing.assert_array_equal(u, v)
    # Same seed → same version ids without saving anything.
    assert AgentSet.untrained(seed=0, backend="eager", threads=None).versions == original.versions
    assert AgentSet.untrained(seed=1, backend="eager", threads=None).versions != original.versions


def test_tampered_weights_are_detected(saved: tuple[AgentSet, Path], tmp_path: Path) -> None:
    _, d = saved
    shutil.copytree(d / "tactical", tmp_path / "tactical")
    state = torch.load(tmp_path / "tactical" / WEIGHTS_FILE, weights_only=True)
    state["actor.bias"] = state["actor.bias"] + 1e-3
    torch.save(state, tmp_path / "tactical" / WEIGHTS_FILE)
    with pytest.raises(ValueError, match=r"meta\.json says tactical-"):
        load_agent(tmp_path / "tactical")
    with pytest.raises(FileNotFoundError):
        load_agent(tmp_path / "nothing")


def test_runtime_records(onnx_set: AgentSet) -> None:
    agents = onnx_set
    assert agents.senders == {"structure": ("regime",), "tactical": ("regime", "structure")}
    c = case(3)
    r, s, t, cache, q = run_all(agents, c, np.array([True]), np.array([True, False]))
    assert isinstance(r, RegimeOutput) and r.probs.shape == (len(REGIME_NAMES),)
    assert r.volatility >= 0 and r.message.shape == (MESSAGE_DIM,) and 0 <= r.regime < len(REGIME_NAMES)
    assert isinstance(s, StructureOutput) and s.action_probs.shape == (len(STRUCTURE_BIAS_LEVELS),)
    assert s.bias == STRUCTURE_BIAS_LEVELS[int(np.argmax(s.action_probs))]
    assert -1 <= s.bias <= 1 and 0 <= s.size <= 1 and 0 <= s.confidence <= 1 and np.isfinite(s.value)
    assert isinstance(t, TacticalOutput) and isinstance(t.action, TacticalAction)
    assert (
        isinstance(q, RiskOutput)
        and q.q_values.shape == (len(RiskAction),)
        and isinstance(q.action, RiskAction)
    )
    assert cache.shape == (agents.networks["risk"].cache_dim,)
    for p in (r.probs, s.action_probs, t.action_probs):
        assert p.dtype == np.float32 and abs(float(p.sum()) - 1) < 1e-5 and (p >= 0).all()
    # Records own their arrays: the next call reuses the buffers but does not change earlier records.
    kept = (r.probs.copy(), t.message.copy(), cache.copy())
    run_all(agents, case(4), np.array([True]), np.array([True, True]))
    for a, b in zip(kept, (r.probs, t.message, cache), strict=True):
        np.testing.assert_array_equal(a, b)
    # The fail-closed case: no message at all still gives finite outputs.
    s0 = agents.structure(c["structure"], np.zeros((1, MESSAGE_DIM), np.float32), np.zeros(1, bool))
    assert np.isfinite(s0.action_probs).all() and np.isfinite(s0.message).all()


def test_runtime_rejects_wrong_shapes(onnx_set: AgentSet) -> None:
    c = case(0)
    with pytest.raises(ValueError, match="regime_m: expected shape"):
        onnx_set.regime(c["regime"][:-1])
    with pytest.raises(ValueError, match="msgs: expected shape"):
        onnx_set.tactical(c["tactical"], c["s_msgs"], np.array([True]))
    with pytest.raises(ValueError, match="unknown backend"):
        AgentSet.from_networks(dict(onnx_set.networks), backend="tensorrt")  # type: ignore[arg-type]


def test_latency_harness_smoke(onnx_set: AgentSet) -> None:
    table = measure_latency(onnx_set, n=5, warmup=1)
    assert set(table) == {"regime", "structure", "tactical", "risk_cache", "risk"}
    assert all(0 < p50 <= p99 for p50, p99 in table.values())


def test_untrained_onnx_sets_come_from_the_export_cache(saved: tuple[AgentSet, Path], tmp_path: Path) -> None:
    import shutil

    agents, d = saved
    target = export_cache_path(agents.versions, tmp_path)
    shutil.copytree(d, target)
    hit = AgentSet.untrained(seed=0, backend="onnx", cache_dir=tmp_path)
    assert hit.backend == "onnx" and hit.versions == agents.versions
    c = case(7)
    for a, b in zip(flat(run_all(hit, c, *MASKS[0])), flat(run_all(agents, c, *MASKS[0])), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # another seed has other version ids, hence another cache entry: never a stale graph
    other = {k: v + "x" for k, v in agents.versions.items()}
    assert export_cache_path(other, tmp_path) != target


def test_hub_reads_the_senders_the_specs_declare(onnx_set: AgentSet) -> None:
    from marlops.agents.hub import COMM_SOURCES

    assert {k: tuple(v) for k, v in onnx_set.senders.items()} == COMM_SOURCES


def test_structure_split_in_two_is_exactly_the_whole_graph(
    saved: tuple[AgentSet, Path], onnx_set: AgentSet
) -> None:
    """The saved split graphs (encoding, then head) give structure's outputs bit for bit, so the engine
    may run the encoding while regime runs without changing a decision."""
    meta = json.loads((saved[1] / "structure" / META_FILE).read_text())
    assert set(meta["split_entries"]) == {"structure_encode", "structure_head"}
    assert onnx_set.split_structure
    for seed in range(5):
        c = case(seed)
        mask = np.array([seed % 2 == 0])
        whole = onnx_set.structure(c["structure"], c["s_msgs"], mask)
        split = onnx_set.structure_head(onnx_set.structure_encode(c["structure"]), c["s_msgs"], mask)
        for f in ("action_probs", "message"):
            assert np.array_equal(getattr(whole, f), getattr(split, f))
        assert (whole.bias, whole.size, whole.confidence, whole.value) == (
            split.bias,
            split.size,
            split.confidence,
            split.value,
        )


def test_a_team_saved_before_the_split_runs_structure_whole(
    saved: tuple[AgentSet, Path], tmp_path: Path
) -> None:
    d = tmp_path / "team"
    shutil.copytree(saved[1], d)
    meta_path = d / "structure" / META_FILE
    meta = json.loads(meta_path.read_text())
    del meta["split_entries"]
    meta_path.write_text(json.dumps(meta))
    old = AgentSet.load(d)
    assert not old.split_structure
    with pytest.raises(RuntimeError, match="runs structure whole"):
        old.structure_encode(case(0)["structure"])
    c = case(1)
    assert np.array_equal(
        old.structure(c["structure"], c["s_msgs"], np.array([True])).action_probs,
        AgentSet.load(saved[1]).structure(c["structure"], c["s_msgs"], np.array([True])).action_probs,
    )
