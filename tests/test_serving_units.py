"""Serving parts in one process: request checks, the request log, the agent runner, the aggregation logic
against the in-process engine, the InferenceGraph aggregator, and the manifests against the CRDs.

The same parts behind real KServe servers are tested in tests/test_serving.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from marlops.agents.decision import RiskLimits
from marlops.agents.engine import EngineConfig
from marlops.agents.replay import replay_ticks
from marlops.agents.runtime import AgentSet
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL
from marlops.market.synthetic import SyntheticMarketConfig, generate_market
from marlops.serving import graph
from marlops.serving.agent_runner import RISK_PROPOSALS, AgentRunner, model_for_inputs
from marlops.serving.clients import AgentCallError, AgentEndpoint, LocalEndpoint, make_endpoint
from marlops.serving.decision_request import parse_request
from marlops.serving.decision_service import DecisionService
from marlops.serving.http_replay import decision_requests
from marlops.serving.launch import untrained_team
from marlops.serving.model_source import ModelSourceError, resolve_agent
from marlops.serving.request_log import (
    FEATURE_COLUMNS,
    RequestLog,
    RequestRecord,
    iso_utc,
    latest_rows,
    read_request_log,
)
from marlops.serving.tensors import InputError, as_array, check_matrix

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ("regime", "structure", "tactical", "risk")
CLOCKS = ("tick", "5m", "30m")
T0 = 1_735_689_600_000_000_000  # 2025-01-01 UTC, ns


@pytest.fixture(scope="module")
def team() -> Path:
    """The untrained team of models/*.yaml, exported once (the agent cache, as `marlops decide` uses)."""
    return untrained_team(0)


@pytest.fixture(scope="module")
def ticks():
    # five days: the regime matrix is warm for the last ones; this market trades (stops, limits, risk)
    return generate_market(5, seed=4, config=SyntheticMarketConfig(ticks_per_bar=2.0)).ticks


def _service(team: Path, **kw) -> DecisionService:
    return DecisionService({a: LocalEndpoint(a, str(team)) for a in AGENTS}, **kw)


def _mats(rng: np.random.Generator) -> dict[str, list]:
    return {
        s.name: rng.standard_normal(s.shape).astype(np.float32).tolist()
        for s in (TACTICAL, STRUCTURE, REGIME)
    }


# --------------------------------------------------------------------------------------- request log


def test_request_log_round_trip(tmp_path: Path) -> None:
    m = {
        "tactical": np.arange(60 * 7, dtype=np.float32).reshape(60, 7),
        "regime": np.ones((96, 11), np.float32),
    }
    feats = latest_rows(m)
    assert feats["tactical.ret"] == 413.0 and feats["regime.vol_level"] == 1.0 and len(feats) == 7 + 11
    day2 = T0 + 86_400 * 10**9
    with RequestLog(tmp_path) as log:
        log.append(
            RequestRecord(
                ts=iso_utc(T0),
                instrument="A",
                clock="5m",
                features=feats,
                regime=2,
                regime_probs=[0.1, 0.2, 0.6, 0.1],
                structure_bias=-0.5,
                tactical_action="hold",
                risk_action="allow",
                overridden=True,
                fail_closed=True,
                reason="regime:stale",
                latency_ms=1.5,
            )
        )
        log.append(RequestRecord(ts=iso_utc(day2), instrument="A", clock="tick"))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["requests-20250101.jsonl", "requests-20250102.jsonl"]
    with (tmp_path / files[1]).open("a") as fh:
        fh.write('{"ts": "2025-01-02T00:00:01Z", "instr')  # a process killed mid-line
    df = read_request_log(tmp_path)
    assert len(df) == 2 and list(df["clock"]) == ["5m", "tick"]
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]" and df["ts"].iloc[0].value == T0
    assert df["regime"].tolist() == [2, -1] and df["fail_closed"].tolist() == [True, False]
    assert df["reason"].iloc[0] == "regime:stale" and np.isnan(df["structure_bias"].iloc[1])
    assert set(FEATURE_COLUMNS) <= set(df.columns) and df["tactical.ret"].iloc[0] == 413.0
    assert np.isnan(df["structure.ret"].iloc[0])
    raw = read_request_log(tmp_path, flatten_features=False)
    assert raw["features"].iloc[0]["regime.adx"] == 1.0
    with pytest.raises(ValueError, match="unknown feature keys"):
        RequestRecord(ts=iso_utc(T0), instrument="A", clock="tick", features={"tactical.nope": 1.0})


# ---------------------------------------------------------------------------------- request checks


def test_tensor_checks_name_the_field_and_the_problem() -> None:
    good = np.zeros((96, 11), np.float32)
    assert check_matrix("regime", good.tolist()).dtype == np.float32
    bad = good.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match=r"^matrices\.regime: NaN or inf at row 3, column 'vol_level'"):
        check_matrix("regime", bad.tolist())
    with pytest.raises(InputError, match=r"matrices\.regime: NaN or inf at row 0, column 'ret'"):
        check_matrix("regime", [[1e39] * 11] * 96)  # overflows float32
    with pytest.raises(InputError, match=r"matrices\.tactical: expected shape \[60, 7\], got \[59, 7\]"):
        check_matrix("tactical", np.zeros((59, 7)).tolist())
    with pytest.raises(InputError, match=r"matrices\.tactical: expected numbers, got strings"):
        check_matrix("tactical", [["1.0"] * 7] * 60)
    with pytest.raises(InputError, match=r"matrices\.tactical: not a rectangular array"):
        check_matrix("tactical", [[1.0] * 7] * 59 + [[1.0] * 6])
    with pytest.raises(InputError, match=r"matrices\.tactical: expected numbers, got booleans"):
        check_matrix("tactical", [[True] * 7] * 60)
    with pytest.raises(InputError, match=r"matrices\.weekly: unknown matrix"):
        check_matrix("weekly", [])
    assert as_array([[1, 0]], "mask", np.bool_, [None, 2]).tolist() == [[True, False]]
    with pytest.raises(InputError, match=r"mask: expected booleans"):
        as_array([[2, 0]], "mask", np.bool_, [None, 2])


BAR = {"high": 101.0, "low": 99.0, "close": 100.0}


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        ([], "body", "expected a JSON object"),
        ({"ts": 1, "price": 1.0}, "clock", "missing"),
        ({"clock": "tick", "price": 1.0}, "ts", "missing"),
        ({"clock": "tick", "ts": 1}, "price", "required for a tick"),
        ({"clock": "1h", "ts": 1, "price": 1.0}, "clock", "expected one of"),
        ({"clock": "tick", "ts": -5, "price": 1.0}, "ts", "greater than or equal"),
        ({"clock": "tick", "ts": 1.5, "price": 1.0}, "ts", "valid integer"),
        ({"clock": "tick", "ts": "1", "price": 1.0}, "ts", "valid integer"),
        ({"clock": "tick", "ts": 1, "price": float("nan")}, "price", "finite"),
        ({"clock": "tick", "ts": 1, "price": -2.0}, "price", "greater than 0"),
        ({"clock": "tick", "ts": 1, "price": 1.0, "bogus": 1}, "bogus", "unknown field"),
        ({"clock": "tick", "ts": 1, "price": 1.0, "instrument": "a/b"}, "instrument", "letters, digits"),
        ({"clock": "5m", "ts": 1}, "bar", "required for a 5m"),
        (
            {"clock": "5m", "ts": 1, "bar": {"high": 1.0, "low": 2.0, "close": 1.5}},
            "bar",
            "low ≤ close ≤ high",
        ),
        ({"clock": "5m", "ts": 1, "bar": {**BAR, "close": float("inf")}}, "bar.close", "finite"),
        ({"clock": "5m", "ts": 1, "bar": BAR, "price": 3.0}, "price", "bar.close"),
        ({"clock": "tick", "ts": 1, "price": 1.0, "matrices": {}}, "matrices", "not used by a tick"),
        ({"clock": "5m", "ts": 1, "bar": BAR, "ready": {"weekly": True}}, "ready.weekly", "unknown matrix"),
        ({"clock": "5m", "ts": 1, "bar": BAR, "ready": {"tactical": 1}}, "ready.tactical", "valid boolean"),
        (
            {"clock": "tick", "ts": 1, "price": 1.0, "portfolio": {"position": float("nan")}},
            "portfolio.position",
            "finite",
        ),
        (
            {"clock": "tick", "ts": 1, "price": 1.0, "portfolio": {"bars_in_position": -1}},
            "portfolio.bars_in_position",
            "greater than or equal",
        ),
    ],
)
def test_bad_requests_name_the_field(body: object, field: str, why: str) -> None:
    with pytest.raises(InputError) as e:
        parse_request(body, CLOCKS)
    assert e.value.field == field and why in str(e.value), str(e.value)


# ---------------------------------------------------------------------------------- model sources


def test_request_rules_content_type_json_and_shapes() -> None:
    from marlops.serving.request_rules import (
        UnsupportedMediaType,
        check_names,
        check_request_shape,
        json_problem,
        request_media,
    )

    assert request_media("application/json", True, False, v2=False) == "json"
    assert request_media("Application/JSON; charset=UTF-8", True, False, v2=True) == "json"
    assert request_media("application/octet-stream", True, True, v2=True) == "binary"
    assert request_media(None, True, True, v2=True) == "binary"  # tritonclient: no content type
    assert request_media(None, False, False, v2=False) == "json"  # no body: the body rules answer
    refused = [
        ("text/plain", False),
        ("application/x-www-form-urlencoded", True),
        ("application/octet-stream", False),  # V1 has no binary extension
        ("application/json; charset=latin-1", True),
    ]
    for ct, v2 in refused:
        with pytest.raises(UnsupportedMediaType, match=r"^content-type: '"):
            request_media(ct, True, False, v2=v2)
    with pytest.raises(UnsupportedMediaType, match=r"^content-type: missing"):
        request_media(None, True, False, v2=True)
    with pytest.raises(InputError, match=r"^inference-header-content-length: missing"):
        request_media("application/octet-stream", True, False, v2=True)
    e = json_problem(b'{"a": 1,\n "b": }')
    assert str(e) == "body: not JSON at line 2, column 7 (char 15): Expecting value; found '}'"
    assert str(json_problem(b'{"a": ')).endswith("found the end of the body")
    assert check_request_shape("inputs.x", [2, 96, 11]) == [2, 96, 11]
    for bad in ([-1, 96, 11], [0, 96, 11], [1, -2]):
        with pytest.raises(InputError, match=r"^inputs\.x\.shape: .*-1 is for metadata only"):
            check_request_shape("inputs.x", bad)
    with pytest.raises(InputError, match=r"^inputs\.x\.shape: .*integers"):
        check_request_shape("inputs.x", [1.5, 96])
    with pytest.raises(InputError, match=r"^inputs\.y: unknown input; m takes x, mask"):
        check_names(["x", "y"], ["x", "mask"], "m", "inputs")
    with pytest.raises(InputError, match=r"^instances\[0\]\.mask: missing; m takes x, mask"):
        check_names(["x"], ["x", "mask"], "m", "instances[0]")
    with pytest.raises(InputError, match=r"^inputs\.x: given twice"):
        check_names(["x", "x"], ["x"], "m", "inputs")


def test_model_sources_resolve_agent_team_and_run_folders(team: Path, tmp_path: Path) -> None:
    assert resolve_agent("regime", str(team / "regime")).version.startswith("regime-")
    assert resolve_agent("risk", str(team)).path == team / "risk"
    run = tmp_path / "run"
    shutil.copytree(team, run / "agents")
    assert resolve_agent("tactical", f"file://{run}").path == run / "agents" / "tactical"
    with pytest.raises(ModelSourceError, match="no such folder"):
        resolve_agent("regime", str(tmp_path / "missing"))
    with pytest.raises(ModelSourceError, match="no structure agent folder"):
        resolve_agent("structure", str(tmp_path))
    with pytest.raises(ModelSourceError, match="unknown agent"):
        resolve_agent("macro", str(team))
    with pytest.raises(ValueError, match="expected grpc://HOST:PORT"):
        make_endpoint("regime", "grpc://")
    with pytest.raises(ValueError, match="path may be /v1 or /v2"):
        make_endpoint("regime", "http://h:1/v3")


# ------------------------------------------------------------------------------------ agent runner


def test_agent_runner_batches_and_scores_all_proposals_like_two_calls(team: Path) -> None:
    rng = np.random.default_rng(0)
    reg = AgentRunner(resolve_agent("regime", str(team)))
    x = rng.standard_normal((3, *REGIME.shape)).astype(np.float32)
    batch = reg.infer({"x": x})
    for i in range(3):
        one = reg.infer({"x": x[i : i + 1]})
        for k in batch:
            np.testing.assert_array_equal(batch[k][i], one[k][0])
    with pytest.raises(InputError, match=r"inputs\.x: batch of 65"):
        reg.infer({"x": np.zeros((65, *REGIME.shape), np.float32)})
    with pytest.raises(InputError, match=r"^inputs: regime takes the inputs of one of its models"):
        reg.infer({"y": x})

    risk = AgentRunner(resolve_agent("risk", str(team)))
    assert set(risk.entries) == {"risk_encode", "risk_q", RISK_PROPOSALS}
    t, s, r = (rng.standard_normal((1, *m.shape)).astype(np.float32) for m in (TACTICAL, STRUCTURE, REGIME))
    port = rng.standard_normal((1, 8)).astype(np.float32)
    props = np.eye(5, 7, dtype=np.float32)
    both = risk.infer({"tactical": t, "structure": s, "regime": r, "portfolio": port, "proposal": props})
    cache = risk.infer({"tactical": t, "structure": s, "regime": r})["cache"]
    np.testing.assert_array_equal(both["cache"], cache)
    for k in range(5):
        q = risk.infer({"cache": cache, "portfolio": port, "proposal": props[k : k + 1]})["q"]
        np.testing.assert_array_equal(both["q"][k], q[0])
    with pytest.raises(InputError, match=r"inputs\.proposal: 9 proposals"):
        risk.infer(
            {"tactical": t, "structure": s, "regime": r, "portfolio": port, "proposal": np.zeros((9, 7))}
        )
    # one served model per entry, each model's metadata exactly the inputs of one call
    assert {e.model for e in risk.entries.values()} == {"risk", "risk-encode", "risk-q"}
    props_meta = risk.entries[RISK_PROPOSALS]
    assert props_meta.model == "risk"
    assert props_meta.input_types() == [
        {"name": "tactical", "datatype": "FP32", "shape": [1, 60, 7]},
        {"name": "structure", "datatype": "FP32", "shape": [1, 48, 8]},
        {"name": "regime", "datatype": "FP32", "shape": [1, 96, 11]},
        {"name": "portfolio", "datatype": "FP32", "shape": [1, 8]},
        {"name": "proposal", "datatype": "FP32", "shape": [-1, 7]},
    ]
    assert props_meta.output_types() == [
        {"name": "cache", "datatype": "FP32", "shape": [1, 256]},
        {"name": "q", "datatype": "FP32", "shape": [-1, 4]},
    ]
    q_meta = risk.entries["risk_q"]
    assert [d["name"] for d in q_meta.input_types()] == ["cache", "portfolio", "proposal"]
    assert all(d["shape"][0] == -1 for d in q_meta.input_types() + q_meta.output_types())
    assert model_for_inputs("risk", {"cache", "portfolio", "proposal"}) == "risk-q"
    assert model_for_inputs("risk", {"tactical", "structure", "regime"}) == "risk-encode"
    assert model_for_inputs("risk", set(props_meta.inputs)) == "risk"
    assert model_for_inputs("regime", {"x"}) == "regime"


# --------------------------------------------------------------------- the aggregation logic itself


def _compare(ref, got) -> None:
    assert len(got) == len(ref)
    for a, b in zip(ref, got, strict=True):
        da, db = a.to_dict(), b.to_dict()
        da.pop("latency_us"), db.pop("latency_us")
        assert da == db, (a.ts, a.timeframe)


def test_service_decides_exactly_as_the_engine(team: Path, ticks) -> None:
    """The service's request-driven sequence (with tactical and risk called at once) against the engine's
    event-driven one: every field of every decision, on a market that trades, stops out and hits limits."""
    # tight leverage so the hard limits bind on this market (a 3-ATR stop sizes entries below the default cap)
    limits = RiskLimits(max_leverage=0.3)
    ref = replay_ticks(
        ticks, AgentSet.load(team), limits=limits, engine_config=EngineConfig(agent_budget_us={})
    ).decisions
    svc = _service(team, limits=limits)

    async def run() -> list:
        return [
            (await svc.decide(parse_request(r, svc.clocks))).decision
            for r in decision_requests(ticks, "SYNTH")
        ]

    got = asyncio.run(run())
    _compare(ref, got)
    assert sum(d.quantity != 0 for d in got) > 100
    overrides = {o.split(":")[0] for d in got for o in d.overrides}
    assert {"risk", "limit", "exit"} <= overrides


class Broken(AgentEndpoint):
    """Answers like the wrapped agent until ``after_ts``, then fails with ``kind``."""

    kind = "test"  # type: ignore[assignment]

    def __init__(self, inner: AgentEndpoint, failure: str) -> None:
        super().__init__(inner.agent, "broken")
        self.inner, self.failure, self.version = inner, failure, inner.version
        self.broken = False

    async def infer(self, inputs, timeout_s):
        if self.broken:
            raise AgentCallError(self.failure)
        return await self.inner.infer(inputs, timeout_s)


@pytest.mark.parametrize(
    ("agent", "failure"), [("tactical", "timeout"), ("risk", "unavailable"), ("regime", "error:x")]
)
def test_a_failing_agent_fails_the_decision_closed(team: Path, ticks, agent: str, failure: str) -> None:
    eps = {a: LocalEndpoint(a, str(team)) for a in AGENTS}
    eps[agent] = broken = Broken(eps[agent], failure)
    svc = DecisionService(eps)
    reqs = list(decision_requests(ticks, "SYNTH"))
    cut = int(len(reqs) * 0.8)

    async def run() -> list:
        out = []
        for i, r in enumerate(reqs):
            broken.broken = i >= cut
            out.append((await svc.decide(parse_request(r, svc.clocks))).decision)
        return out

    got = asyncio.run(run())
    before, after = got[:cut], got[cut:]
    assert not any(f"{agent}:{failure}" in d.reasons for d in before)
    hit = [d for d in after if f"{agent}:{failure}" in d.reasons]
    # the regime agent only runs at 30-minute closes; tactical at every bar; risk on every decision
    assert len(hit) >= (10 if agent == "regime" else 100)
    pos = {d.ts: d for d in got}
    for d in after:
        if any(r.startswith(agent) for r in d.reasons):
            assert d.fail_closed
    # no new exposure while failed closed: |target| never grows past the position before the decision
    prev = 0.0
    for d in got:
        if d in after and d.fail_closed:
            assert abs(d.target_position) <= abs(prev) + 1e-9 and d.target_position * prev >= 0
        prev = d.target_position
    assert pos


def test_requests_out_of_time_order_are_refused(team: Path) -> None:
    svc = _service(team)

    async def run() -> None:
        await svc.decide(parse_request({"clock": "tick", "ts": T0 + 10, "price": 100.0}, CLOCKS))
        with pytest.raises(InputError, match=r"^ts: .* is before the last decision of 'SYNTH'"):
            await svc.decide(parse_request({"clock": "tick", "ts": T0, "price": 100.0}, CLOCKS))
        # another instrument has its own clock
        await svc.decide(
            parse_request({"clock": "tick", "ts": T0, "price": 100.0, "instrument": "B"}, CLOCKS)
        )
        with pytest.raises(InputError, match=r"^matrices\.structure: missing"):
            await svc.decide(
                parse_request(
                    {
                        "clock": "30m",
                        "ts": T0 + 20,
                        "bar": BAR,
                        "matrices": {"tactical": np.zeros((60, 7)).tolist()},
                    },
                    CLOCKS,
                )
            )
        with pytest.raises(InputError, match=r"^matrices: required: this server has no Feast store"):
            await svc.decide(parse_request({"clock": "5m", "ts": T0 + 20, "bar": BAR}, CLOCKS))

    asyncio.run(run())


def test_sent_portfolio_replaces_the_paper_one_and_comes_back(team: Path) -> None:
    svc = _service(team)
    pf = {"position": 10.0, "avg_price": 90.0, "day": T0 // 86_400_000_000_000, "stop_loss": 80.0}

    async def run():
        return await svc.decide(
            parse_request({"clock": "tick", "ts": T0, "price": 100.0, "portfolio": pf}, CLOCKS)
        )

    out = asyncio.run(run()).to_json()
    assert out["portfolio"]["position"] == 10.0 and out["portfolio"]["stop_loss"] == 80.0
    assert out["reasons"] == ["risk:no_matrices_yet"] and out["fail_closed"]
    assert json.loads(json.dumps(out))["instrument"] == "SYNTH"


# ------------------------------------------------------------------------------- InferenceGraph path


def test_graph_aggregates_ensemble_answers(team: Path, ticks) -> None:
    runners = {a: AgentRunner(resolve_agent(a, str(team))) for a in AGENTS}
    svc = _service(team)
    bars = [r for r in decision_requests(ticks, "G") if r["clock"] != "tick"][-48:]
    reqs = bars[next(i for i, r in enumerate(bars) if r["clock"] == "30m") :]  # a session starts at 30m

    async def run() -> list:
        out = []
        for r in reqs:
            ensemble = {a: graph.agent_answer(runners[a], r) for a in AGENTS}
            assert graph.is_ensemble_response(ensemble) and "request" in ensemble["risk"]
            out.append(await graph.aggregate(svc, json.loads(json.dumps(ensemble))))
        return out

    got = asyncio.run(run())
    assert len(got) >= 40 and all(o.decision.risk_action is not None for o in got)
    assert all(o.tactical is not None for o in got)
    # at a 30-minute close the structure answer ran with its messages masked (an ensemble has no
    # same-close regime message), and that is the structure output the decision used
    k = max(i for i, r in enumerate(reqs) if r["clock"] == "30m")
    masked = runners["structure"].infer(
        {
            "x": np.asarray(reqs[k]["matrices"]["structure"], np.float32)[None],
            "msgs": np.zeros((1, 1, 64), np.float32),
            "mask": np.zeros((1, 1), bool),
        }
    )
    assert got[k].structure is not None
    np.testing.assert_allclose(got[k].structure.action_probs, masked["probs"][0], rtol=1e-6)
    with pytest.raises(InputError, match=r"^risk\.request: missing"):
        asyncio.run(graph.aggregate(svc, {a: {"agent": a} for a in AGENTS}))


# --------------------------------------------------------------------------------------- manifests


def _rendered(path: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl:  # render exactly what `kubectl apply -k` would send
        out = subprocess.run(
            [kubectl, "kustomize", str(path)], capture_output=True, text=True, check=True
        ).stdout
        return [o for o in yaml.safe_load_all(out) if o]
    docs = []  # no kubectl: the plain YAML files the kustomization lists
    for res in yaml.safe_load((path / "kustomization.yaml").read_text())["resources"]:
        p = path / res
        docs += _rendered(p) if p.is_dir() else [o for o in yaml.safe_load_all(p.read_text()) if o]
    return docs


def test_manifests_validate_against_the_crds_and_the_posture_rules() -> None:
    from marlops.deploy.posture import check_objects
    from marlops.deploy.schemas import load_crds, validate_objects

    crds_dir = ROOT.parent / "shared" / "crds"
    if not crds_dir.is_dir():
        pytest.skip(f"{crds_dir} absent: the KServe CRDs are needed to validate the manifests")
    crds = load_crds(crds_dir)
    objs = _rendered(ROOT / "manifests" / "serving" / "graph")
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objs)
    assert kinds == [
        "InferenceGraph/marlops-decision-graph",
        *(f"InferenceService/marlops-{n}" for n in ("decision", "regime", "risk", "structure", "tactical")),
        *(f"Service/marlops-{a}-grpc" for a in ("regime", "risk", "structure", "tactical")),
    ]
    report = validate_objects(objs, crds)
    assert not report.problems and not report.unchecked, report.problems
    assert all("CRD" in v for k, v in report.checked.items() if not k.startswith("Service/"))
    assert check_objects(objs) == []
    # a typo must be caught: the validation is strict
    bad = json.loads(json.dumps(next(o for o in objs if o["kind"] == "InferenceService")))
    bad["spec"]["predictor"]["minReplica"] = 1
    assert validate_objects([bad], crds).problems
    # the top-level kustomization (what a base includes as ../serving) holds everything but the graph
    assert len(_rendered(ROOT / "manifests" / "serving")) == len(objs) - 1


def test_manifest_args_are_accepted_by_the_cli() -> None:
    """Every container's args parse as `marlops …` (the transformer with the arguments KServe appends)."""
    import typer

    from marlops.cli import app

    cmd = typer.main.get_command(app)
    objs = _rendered(ROOT / "manifests" / "serving")
    seen = 0
    for o in objs:
        if o["kind"] != "InferenceService":
            continue
        for comp in ("predictor", "transformer"):
            if comp not in o["spec"]:
                continue
            args = list(o["spec"][comp]["containers"][0]["args"])
            if comp == "transformer":
                args += [
                    "--model_name",
                    o["metadata"]["name"],
                    "--predictor_host",
                    f"{o['metadata']['name']}-predictor.marlops",
                    "--http_port",
                    "8080",
                ]
            ctx = cmd.make_context("marlops", list(args))
            sub = cmd.get_command(ctx, args[0])
            sub_ctx = sub.make_context("serve", args[1:], parent=ctx)
            leaf = sub.get_command(sub_ctx, args[1])
            leaf_ctx = leaf.make_context(args[1], args[2:], parent=sub_ctx)
            assert leaf_ctx.params["http_port"] == 8080
            seen += 1
    assert seen == 6
