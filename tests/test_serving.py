"""KServe serving end to end: real ModelServer processes on free ports, started through `marlops serve …`.

One stack (four agent servers loading the champion from an MLflow registry, the decision server with a
Feast online store and a request log) serves most tests; the fail-closed test starts its own tactical
agent and decision server so it can pause and kill that agent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

from marlops.agents.engine import EngineConfig
from marlops.agents.replay import replay_ticks
from marlops.agents.runtime import AgentSet
from marlops.market.dataset import dataset_from_ticks
from marlops.market.feed import FeedConfig
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL, ready_mask, window
from marlops.market.synthetic import SyntheticMarketConfig, generate_market
from marlops.serving.http_replay import decision_requests, replay_http
from marlops.serving.launch import (
    free_port,
    start_agent,
    start_local,
    start_process,
    stop_servers,
    untrained_team,
    wait_ready,
)
from marlops.serving.request_log import read_request_log

AGENTS = ("regime", "structure", "tactical", "risk")
T0 = 1_735_689_600_000_000_000
BAR = {"high": 101.0, "low": 99.0, "close": 100.0}
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Five synthetic days (regime matrix warm for the last ones) as ticks and as a dataset with features."""
    m = generate_market(5, seed=4, config=SyntheticMarketConfig(ticks_per_bar=2.0))
    ds = dataset_from_ticks(
        tmp_path_factory.mktemp("ds"), m.ticks, FeedConfig(), {"source": "synthetic"}, m.labels
    )
    return m.ticks, ds


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> tuple[Path, Path]:
    """The untrained team registered in an MLflow store and promoted to champion; (mlflow dir, team)."""
    from marlops.registry import embedded_config, promote, register_run

    team = untrained_team(0)
    run = tmp_path_factory.mktemp("run")
    shutil.copytree(team, run / "agents")
    mlflow_dir = tmp_path_factory.mktemp("mlflow")
    cfg = embedded_config(mlflow_dir)
    register_run(run, config=cfg)
    assert promote(config=cfg, force=True).promoted
    return mlflow_dir, team


@pytest.fixture(scope="module")
def feast_repo(tmp_path_factory, market) -> Path:
    from marlops.features import apply, open_store, write_sources

    root = tmp_path_factory.mktemp("feast")
    store = open_store(root)
    write_sources(market[1], "FEAST", root, window_bars=5)
    apply(store)  # before the server opens the store: it reads the registry once
    return root


@pytest.fixture(scope="module")
def stack(tmp_path_factory, registry, feast_repo):
    mlflow_dir, _ = registry
    logs = tmp_path_factory.mktemp("logs")
    req_log = tmp_path_factory.mktemp("request-log")
    srv = start_local(
        model_uri="models:/marlops-{agent}@champion",
        feast_repo=feast_repo,
        request_log=req_log,
        env={"MARLOPS_MLFLOW_DIR": str(mlflow_dir), "MLFLOW_TRACKING_URI": ""},
        log_dir=logs,
        timeouts_ms={a: 2000.0 for a in AGENTS},  # a loaded CI machine must not time agents out here
    )
    srv.request_log = req_log  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def post(url: str, body: object, **kw) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    headers = kw.pop("headers", {"content-type": "application/json"})
    return httpx.post(url, content=content, headers=headers, timeout=30.0, **kw)


def decide(srv, body: dict) -> dict:
    r = post(f"{srv.decision_url}/v1/models/decision:predict", body)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------------------- agent servers


def test_agents_serve_v1_v2_rest_binary_and_grpc_alike(stack) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, *REGIME.shape)).astype(np.float32)
    url = stack.agent_urls["regime"]
    for path in ("/v2/health/ready", "/v2/health/live", "/v2/models/regime/ready"):
        assert httpx.get(url + path).status_code == 200, path
    meta = httpx.get(f"{url}/v2/models/regime").json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 96, 11]}]
    v1 = post(f"{url}/v1/models/regime:predict", {"instances": [{"x": x[0].tolist()}]}).json()
    assert v1["agent"] == "regime" and v1["version"].startswith("regime-")
    probs = np.asarray(v1["predictions"][0]["probs"], np.float32)
    body = {"inputs": [{"name": "x", "shape": [1, 96, 11], "datatype": "FP32", "data": x.ravel().tolist()}]}
    v2 = post(f"{url}/v2/models/regime/infer", body).json()
    assert v2["parameters"]["agent_version"] == v1["version"]
    np.testing.assert_array_equal(np.asarray(v2["outputs"][0]["data"], np.float32), probs)

    inp = InferInput("x", [1, 96, 11], "FP32")
    inp.set_data_from_numpy(x, binary_data=True)

    async def rest_and_grpc():
        rest = InferenceRESTClient(RESTConfig(protocol="v2"))
        r = await rest.infer(
            url, InferRequest("regime", [inp], parameters={"binary_data_output": True}), "regime"
        )
        await rest.close()
        async with InferenceGRPCClient(stack.agent_grpc["regime"].removeprefix("grpc://"), retries=0) as g:
            i2 = InferInput("x", [1, 96, 11], "FP32")
            i2.set_data_from_numpy(x, binary_data=True)
            gr = await g.infer(InferRequest("regime", [i2]))
        return r, gr

    import asyncio

    rest, grpc_resp = asyncio.run(rest_and_grpc())
    for resp in (rest, grpc_resp):
        out = {o.name: o.as_numpy() for o in resp.outputs}
        np.testing.assert_array_equal(out["probs"][0], probs)
        assert out["message"].shape == (1, 64)
    # the risk agent scores several proposals in one call, over V1 as well
    t, s, r = (
        rng.standard_normal(m.shape).astype(np.float32).tolist() for m in (TACTICAL, STRUCTURE, REGIME)
    )
    inst = {
        "tactical": t,
        "structure": s,
        "regime": r,
        "portfolio": [0.0] * 8,
        "proposal": np.eye(5, 7).tolist(),
    }
    out = post(f"{stack.agent_urls['risk']}/v1/models/risk:predict", {"instances": [inst]}).json()
    assert (
        np.asarray(out["predictions"][0]["q"]).shape == (5, 4) and len(out["predictions"][0]["cache"]) == 256
    )
    text = httpx.get(f"{url}/metrics").text
    assert 'marlops_model_info{agent="regime",version="' + v1["version"] + '"} 1.0' in text
    assert "marlops_agent_latency_seconds_count" in text


# ------------------------------------------------------------------------------- the decision path


def test_http_replay_matches_the_in_process_engine(stack, registry, market, tmp_path) -> None:
    """`marlops decide --url`'s replay: every decision over HTTP equals the engine's in this process."""
    ticks = market[0]
    _, team = registry
    ref = replay_ticks(ticks, AgentSet.load(team), engine_config=EngineConfig(agent_budget_us={}))
    got = replay_http(ticks, stack.decision_url, instrument="PARITY", audit=tmp_path / "answers.jsonl")
    assert len(got.decisions) == len(ref.decisions) > 3000
    for a, b in zip(ref.decisions, got.decisions, strict=True):
        da, db = a.to_dict(), b.to_dict()
        da.pop("latency_us"), db.pop("latency_us")
        da["overrides"], da["reasons"] = list(da["overrides"]), list(da["reasons"])
        db["overrides"], db["reasons"] = list(db["overrides"]), list(db["reasons"])
        assert da == db, (a.ts, a.timeframe)
    assert got.summary["trades"] > 100 and got.portfolio.position == ref.portfolio.position
    assert len((tmp_path / "answers.jsonl").read_text().splitlines()) == len(ref.decisions)
    # the request log: one line per decision, with the features and the agents' outputs
    log = read_request_log(stack.request_log)
    mine = log[log["instrument"] == "PARITY"]
    assert len(mine) == len(ref.decisions)
    assert set(mine["clock"]) == {"tick", "5m", "30m"}
    bars = mine[mine["clock"] != "tick"]
    assert bars["tactical.ret"].notna().all() and (mine["regime"] >= 0).any()
    assert mine["fail_closed"].sum() == sum(d.fail_closed for d in ref.decisions)
    metrics = httpx.get(f"{stack.decision_url}/metrics").text
    for needle in (
        'marlops_decision_latency_seconds_count{clock="30m"}',
        'marlops_agent_latency_seconds_count{agent="tactical"}',
        'marlops_risk_overrides_total{kind="risk:force_exit"}',
        'marlops_fail_closed_total{reason="warming_up:higher"}',
    ):
        assert needle in metrics, needle


def test_decision_over_v1_v2_and_grpc_is_the_same(stack) -> None:
    rng = np.random.default_rng(3)
    mats = {s.name: rng.standard_normal(s.shape).tolist() for s in (TACTICAL, STRUCTURE, REGIME)}
    req = {"clock": "30m", "ts": T0, "bar": BAR, "matrices": mats}
    v1 = decide(stack, {**req, "instrument": "P-V1"})
    assert v1["timeframe"] == "30m" and v1["instrument"] == "P-V1" and v1["agents"]["regime"]["regime"]
    assert set(v1["model_versions"]) == set(AGENTS) and "?" not in v1["model_versions"].values()
    body = {
        "inputs": [
            {
                "name": "request",
                "shape": [1],
                "datatype": "BYTES",
                "data": [json.dumps({**req, "instrument": "P-V2"})],
            }
        ]
    }
    r = post(f"{stack.decision_url}/v2/models/decision/infer", body)
    assert r.status_code == 200, r.text
    v2 = json.loads(r.json()["outputs"][0]["data"][0])

    async def over_grpc():
        async with InferenceGRPCClient(stack.decision_grpc.removeprefix("grpc://"), retries=0) as g:
            i = InferInput("request", [1], "BYTES")
            i.set_data_from_numpy(np.array([orjson.dumps({**req, "instrument": "P-G"})], dtype=np.object_))
            return await g.infer(InferRequest("decision", [i]))

    import asyncio

    g = json.loads(asyncio.run(over_grpc()).outputs[0].as_numpy()[0])
    for other in (v2, g):
        for k in ("action", "target_position", "reasons", "overrides", "risk_action", "agents", "stop_loss"):
            assert other[k] == v1[k], k
    # a tick after the bar close uses the cached risk encoding: one agent call
    tick = decide(stack, {"instrument": "P-V1", "clock": "tick", "ts": T0 + 10**9, "price": 100.2})
    assert "risk" in tick["latency_us"] and "tactical" not in tick["latency_us"]
    assert "risk:no_matrices_yet" not in tick["reasons"]


def test_instrument_mode_fetches_the_matrices_from_feast(stack, feast_repo, market) -> None:
    """Requests naming only the instrument decide exactly as requests carrying the same matrices."""
    from marlops.features import open_store, push_matrices

    ds = market[1]
    fs = ds.features
    store = open_store(feast_repo)
    ends, hends = fs.base["end"].to_numpy(), fs.higher["end"].to_numpy()
    first = int(np.searchsorted(ends, hends[-30]))  # start at a 30-minute close near the end
    t_ready, s_ready, r_ready = (
        ready_mask(fs.tactical_warm, 60),
        ready_mask(fs.structure_warm, 48),
        ready_mask(fs.regime_warm, 96),
    )
    n = 0
    for k in range(first, len(ends)):
        h = int(np.searchsorted(hends, ends[k], side="right") - 1)
        slow = hends[h] == ends[k]
        row = fs.base.iloc[k]
        base = {
            "clock": "30m" if slow else "5m",
            "ts": int(ends[k]),
            "bar": {"high": float(row["high"]), "low": float(row["low"]), "close": float(row["close"])},
        }
        mats = {"tactical": window(fs.tactical, k, 60)}
        ready = {"tactical": bool(t_ready[k])}
        if slow:
            mats |= {"structure": window(fs.structure, h, 48), "regime": window(fs.regime, h, 96)}
            ready |= {"structure": bool(s_ready[h] and r_ready[h]), "regime": bool(s_ready[h] and r_ready[h])}
        a = decide(stack, {**base, "instrument": "MATS", "matrices": mats, "ready": ready})
        push_matrices(store, ds, "FEAST", index=k)
        b = decide(stack, {**base, "instrument": "FEAST"})
        for key in (
            "action",
            "target_position",
            "reasons",
            "overrides",
            "risk_action",
            "agents",
            "confidence",
        ):
            assert a[key] == b[key], (k, key)
        n += 1
    assert n > 100
    # an instrument the store has never seen: fail closed with the reason, not an error
    c = decide(stack, {"instrument": "NOPE", "clock": "5m", "ts": T0, "bar": BAR})
    assert c["fail_closed"] and "features:missing" in c["reasons"] and c["target_position"] == 0
    # the store is behind the request's bar: stale, fail closed
    late = decide(
        stack, {"instrument": "FEAST", "clock": "5m", "ts": int(ends[-1]) + 300 * 10**9, "bar": BAR}
    )
    assert late["fail_closed"] and "features:stale" in late["reasons"]


def test_graph_route_through_the_agent_servers(stack, market) -> None:
    """What KServe's InferenceGraph router does (manifests/serving/graph): the request to every agent in
    parallel, then the decision service on the map of their answers ($response)."""
    reqs = [r for r in decision_requests(market[0], "GRAPH") if r["clock"] != "tick"][-60:]
    reqs = reqs[next(i for i, r in enumerate(reqs) if r["clock"] == "30m") :]
    out = []
    with httpx.Client(timeout=30.0) as c:
        for r in reqs:
            ens = {
                a: c.post(f"{u}/v1/models/{a}:predict", json=r).json() for a, u in stack.agent_urls.items()
            }
            resp = c.post(f"{stack.decision_url}/v1/models/decision:predict", json=ens)
            assert resp.status_code == 200, resp.text
            out.append(resp.json())
    assert all(o["risk_action"] is not None and o["agents"]["tactical"] is not None for o in out)
    assert not any(
        r.startswith(("regime", "structure", "tactical", "risk")) for o in out for r in o["reasons"]
    )


# ------------------------------------------------------------------------------------- bad input


def _v2_bytes(name: str, arr: np.ndarray, header_len_delta: int = 0) -> tuple[bytes, dict]:
    i = InferInput(name, list(arr.shape), "FP32")
    i.set_data_from_numpy(arr, binary_data=True)
    data, n = InferRequest("m", [i]).to_rest()
    return data, {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(n + header_len_delta),
    }


def test_bad_input_is_a_400_naming_the_field(stack) -> None:
    d = f"{stack.decision_url}/v1/models/decision:predict"
    reg = stack.agent_urls["regime"]
    good_mats = {s.name: np.zeros(s.shape).tolist() for s in (TACTICAL, STRUCTURE, REGIME)}
    nan_mats = json.loads(json.dumps(good_mats))
    nan_mats["regime"][5][2] = 1e39  # JSON has no NaN; a float32 overflow is the inf a client can send
    binary_x, binary_h = _v2_bytes("x", np.zeros((1, 95, 11), np.float32))
    _, broken_h = _v2_bytes("x", np.zeros((1, 96, 11), np.float32), header_len_delta=7)
    cases = [
        (d, {"clock": "tick", "ts": T0}, "price"),
        (d, {"clock": "tick", "ts": "soon", "price": 1.0}, "ts"),
        (
            d,
            {"clock": "5m", "ts": T0, "bar": BAR, "matrices": {"tactical": [[0.0] * 7] * 59}},
            "matrices.tactical",
        ),
        (
            d,
            {"clock": "30m", "ts": T0, "bar": BAR, "matrices": nan_mats},
            "matrices.regime: NaN or inf at row 5",
        ),
        (
            d,
            {"clock": "5m", "ts": T0, "bar": BAR, "matrices": {"tactical": [["x"] * 7] * 60}},
            "matrices.tactical",
        ),
        (
            d,
            {"clock": "tick", "ts": T0, "price": 1.0, "portfolio": {"position": "long"}},
            "portfolio.position",
        ),
        (d, b"{not json", "body"),
        (d, b"x" * (1024 * 1024 + 1), "body: 1048577 bytes, over the limit"),
        (f"{reg}/v1/models/regime:predict", {"instances": [{"x": [[0.0] * 11] * 95}]}, "instances[0].x"),
        (
            f"{reg}/v1/models/regime:predict",
            {"instances": [{"y": 1}]},
            "instances[0].y: unknown input; regime takes x",
        ),
        (
            f"{reg}/v1/models/regime:predict",
            {"instances": [{"x": [[0.0] * 11] * 96}] * 65},
            "instances: batch of 65",
        ),
        (f"{reg}/v1/models/regime:predict", {"rows": []}, "instances"),
        (
            f"{reg}/v2/models/regime/infer",
            {"inputs": [{"name": "x", "shape": [1, 96, 11], "datatype": "INT64", "data": [0] * 1056}]},
            "inputs.x.datatype",
        ),
        (
            f"{reg}/v2/models/regime/infer",
            {"inputs": [{"name": "x", "shape": [1, 96, 11], "datatype": "FP32", "data": [0.0] * 10}]},
            "inputs.x",
        ),
        (f"{reg}/v2/models/regime/infer", {"inputs": [{"name": "x", "shape": [1]}]}, "inputs.0.datatype"),
        (f"{reg}/v2/models/regime/infer", (binary_x, binary_h), "inputs.x: expected shape [N, 96, 11]"),
        (
            f"{reg}/v2/models/regime/infer",
            (binary_x[:-7], broken_h),
            "body (JSON header): not JSON at line 1",
        ),
        (
            f"{reg}/v2/models/regime/infer",
            {"inputs": [{"name": "x", "shape": [-1, 96, 11], "datatype": "FP32", "data": [0.0] * 1056}]},
            "inputs.x.shape: [-1, 96, 11]: every dimension of a request is a size ≥ 1",
        ),
    ]
    for url, body, needle in cases:
        if isinstance(body, tuple):
            r = httpx.post(url, content=body[0], headers=body[1], timeout=30.0)
        else:
            r = post(url, body)
        assert r.status_code == 400, (url, needle, r.status_code, r.text)
        assert needle in r.json()["error"], (needle, r.json()["error"])
    # closed routes are 404s that say why, not KServe's 501/503
    for path in (
        "/v2/models/regime/versions/1/ready",
        "/v1/models/regime:explain",
        "/v2/repository/models/regime/unload",
    ):
        r = httpx.request("GET" if path.endswith("ready") else "POST", reg + path)
        assert r.status_code == 404 and r.json()["error"], path
    # gRPC: INVALID_ARGUMENT with the field
    ch = grpc.insecure_channel(stack.agent_grpc["regime"].removeprefix("grpc://"))
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    i = InferInput("x", [1, 95, 11], "FP32")
    i.set_data_from_numpy(np.zeros((1, 95, 11), np.float32), binary_data=True)
    with pytest.raises(grpc.RpcError) as e:
        GRPCInferenceServiceStub(ch).ModelInfer(InferRequest("regime", [i]).to_grpc(), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "inputs.x" in e.value.details()
    ch.close()


# -------------------------------------------------------------------------------------------- fuzz

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
_fields = {
    "instrument": st.sampled_from(["SYNTH", "", "a/b", "FUZZ-1"]) | st.text(max_size=70),
    "clock": st.sampled_from(["tick", "5m", "30m", "1h", ""]),
    "ts": st.integers(-5, 2**64 - 1) | st.floats() | st.text(max_size=3),
    "price": st.floats() | st.integers(-3, 10**6) | st.none(),
    "bar": st.fixed_dictionaries({"high": st.floats(), "low": st.floats(), "close": st.floats()}) | _json,
    "matrices": st.dictionaries(
        st.sampled_from(["tactical", "structure", "regime", "other"]),
        st.sampled_from([np.zeros((60, 7)).tolist(), np.zeros((48, 8)).tolist(), np.zeros((96, 11)).tolist()])
        | _json,
        max_size=3,
    ),
    "ready": st.dictionaries(st.sampled_from(["tactical", "structure", "regime", "x"]), _json, max_size=3),
    "portfolio": st.dictionaries(
        st.sampled_from(["position", "avg_price", "day", "stop_loss", "bars_in_position", "nope"]),
        _json,
        max_size=3,
    ),
}
_decision_bodies = st.fixed_dictionaries({}, optional=_fields) | _json
_agent_bodies = (
    st.fixed_dictionaries(
        {
            "instances": st.lists(
                st.dictionaries(st.sampled_from(["x", "msgs", "mask", "y"]), _json, max_size=3), max_size=2
            )
        }
    )
    | st.fixed_dictionaries(
        {
            "inputs": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "name": st.sampled_from(["x", "cache", "proposal"]),
                        "shape": st.lists(st.integers(-2, 100), max_size=3),
                        "datatype": st.sampled_from(["FP32", "BOOL", "BYTES", "INT8", "X"]),
                        "data": _json,
                        "parameters": _json,
                    },
                ),
                max_size=2,
            ),
            "parameters": _json,
        }
    )
    | _json
)
_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=30.0) as c:
        yield c


@_FUZZ
@given(body=_decision_bodies)
def test_fuzz_decision_endpoint_never_5xx(stack, client, body) -> None:
    r = client.post(
        f"{stack.decision_url}/v1/models/decision:predict",
        content=orjson.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert r.status_code in (200, 400), (r.status_code, r.text, body)


@_FUZZ
@given(body=_agent_bodies, agent=st.sampled_from(AGENTS), v2=st.booleans())
def test_fuzz_agent_endpoints_never_5xx(stack, client, body, agent, v2) -> None:
    base = stack.agent_urls[agent]
    url = f"{base}/v2/models/{agent}/infer" if v2 else f"{base}/v1/models/{agent}:predict"
    r = client.post(url, content=orjson.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code in (200, 400), (r.status_code, r.text, body)


@_FUZZ
@given(
    raw=st.binary(max_size=300),
    header=st.one_of(
        st.none(),
        st.integers(-5, 400).map(str),
        st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=4),
    ),
)
def test_fuzz_binary_bodies_never_5xx(stack, client, raw, header) -> None:
    headers = {"content-type": "application/octet-stream"}
    if header is not None:
        headers["inference-header-content-length"] = header
    for url in (
        f"{stack.agent_urls['risk']}/v2/models/risk/infer",
        f"{stack.decision_url}/v2/models/decision/infer",
    ):
        r = client.post(url, content=raw, headers=headers)
        assert r.status_code < 500, (url, r.status_code, r.text, raw, header)


# ------------------------------------------------------------------------------------ fail closed


def test_a_paused_or_killed_agent_fails_closed_without_hanging(stack, registry, tmp_path) -> None:
    _, team = registry
    tactical = start_agent("tactical", str(team), tmp_path)
    hp, gp = free_port(), free_port()
    args = ["serve", "decision", "--http-port", str(hp), "--grpc-port", str(gp)]
    for a in AGENTS:
        where = tactical.grpc_url if a == "tactical" else stack.agent_grpc[a]
        args += ["--agent", f"{a}={where}"]
    args += ["--agent-timeout-ms", "tactical=300"]
    dec = start_process("decision", args, tmp_path, hp, gp, None)
    try:
        wait_ready([tactical, dec])
        rng = np.random.default_rng(5)
        mats = {s.name: rng.standard_normal(s.shape).tolist() for s in (TACTICAL, STRUCTURE, REGIME)}
        url = f"{dec.url}/v1/models/decision:predict"

        def bar(i: int) -> tuple[dict, float]:
            body = {
                "instrument": "KILL",
                "clock": "5m",
                "ts": T0 + i * 300 * 10**9,
                "bar": BAR,
                "matrices": {"tactical": mats["tactical"]},
            }
            t = time.perf_counter()
            r = post(url, body)
            assert r.status_code == 200, r.text
            return r.json(), time.perf_counter() - t

        first = post(
            url, {"instrument": "KILL", "clock": "30m", "ts": T0, "bar": BAR, "matrices": mats}
        ).json()
        assert not any(r.startswith("tactical") for r in first["reasons"])
        ok, _ = bar(1)
        assert not any(r.startswith("tactical") for r in ok["reasons"]) and ok["agents"]["tactical"]

        tactical.process.send_signal(signal.SIGSTOP)  # alive, accepting connections, answering nothing
        late, secs = bar(2)
        assert (
            "tactical:timeout" in late["reasons"]
            and late["fail_closed"]
            and late["agents"]["tactical"] is None
        )
        assert secs < 3.0
        assert abs(late["target_position"]) <= abs(ok["target_position"])  # no new exposure
        assert late["risk_action"] is not None  # the other agents still answered

        tactical.process.send_signal(signal.SIGCONT)
        back, _ = bar(3)
        assert not any(r.startswith("tactical") for r in back["reasons"])

        tactical.process.kill()
        tactical.process.wait(10)
        dead, secs = bar(4)
        assert "tactical:unavailable" in dead["reasons"] and dead["fail_closed"] and secs < 3.0
        tick = post(url, {"instrument": "KILL", "clock": "tick", "ts": T0 + 5 * 300 * 10**9, "price": 100.0})
        assert tick.status_code == 200  # ticks need only the risk agent
        m = httpx.get(f"{dec.url}/metrics").text
        assert 'marlops_fail_closed_total{reason="tactical:timeout"} 1.0' in m
        assert 'marlops_fail_closed_total{reason="tactical:unavailable"} 1.0' in m
    finally:
        stop_servers([tactical, dec])


# ------------------------------------------------------------------------------------------ the CLI


def test_cli_decide_over_http(stack, tmp_path) -> None:
    from typer.testing import CliRunner

    from marlops.cli import app

    ticks = tmp_path / "ticks.csv"
    generate_market(1, seed=2, config=SyntheticMarketConfig(ticks_per_bar=2.0)).ticks.to_csv(
        ticks, index=False
    )
    args = ["decide", "--replay", str(ticks), "--url", stack.decision_url, "--instrument", "CLI"]
    res = CliRunner().invoke(app, [*args, "--audit", str(tmp_path / "a.jsonl")])
    assert res.exit_code == 0, res.output
    assert f"replaying ticks through {stack.decision_url}" in res.output
    assert "latency tick p50/p99" in res.output and "regime=regime-" in res.output
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) > 500
    res = CliRunner().invoke(app, args)  # the same ticks again: the server refuses to go back in time
    assert res.exit_code == 1 and "is before the last decision of 'CLI'" in res.output


def test_cli_serve_starts_everything_prints_urls_and_stops_on_ctrl_c(registry, tmp_path) -> None:
    _, team = registry
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marlops.cli",
            "serve",
            "--model-uri",
            str(team),
            "--log-dir",
            str(tmp_path),
            "--collocate",
            "risk",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    lines = []
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops them" in line:
                break
        text = "".join(lines)
        assert "Ctrl-C stops them" in text, text
        url = next(w for w in text.split() if w.endswith("/v1/models/decision:predict"))
        r = post(url, {"clock": "tick", "ts": T0, "price": 100.0})
        assert r.status_code == 200 and r.json()["reasons"] == ["risk:no_matrices_yet"]
        for a in AGENTS:
            assert f"/v1/models/{a}:predict" in text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert "stopped" in proc.stdout.read()  # type: ignore[union-attr]
        with pytest.raises(httpx.ConnectError):
            httpx.get(url.split("/v1/")[0] + "/v2/health/live", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
