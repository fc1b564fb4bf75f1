"""Generic Open Inference Protocol clients against every served model, and one set of request rules.

Real servers (`marlops serve agent|decision`, the untrained team) and real clients: tritonclient (HTTP and
gRPC) builds every request from the model's V2 metadata alone; KServe's InferenceRESTClient calls V1
``predict`` and V2 ``infer``. Then the same malformed request over V1, V2 REST and gRPC gets the same
refusal (docs/serving.md, "Request rules").
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as thttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from marlops.serving.launch import LocalServing, start_local

pytestmark = pytest.mark.timeout(900)

# every V2 model name the servers answer to, and the agent server hosting it
AGENT_MODELS = {
    "regime": "regime",
    "structure": "structure",
    "tactical": "tactical",
    "risk": "risk",
    "risk-encode": "risk",
    "risk-q": "risk",
}
MODELS = [*AGENT_MODELS, "decision"]
T0 = 1_735_689_600_000_000_000
NP = {"FP32": np.float32, "BOOL": np.bool_, "BYTES": np.object_}


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[LocalServing]:
    s = start_local(log_dir=tmp_path_factory.mktemp("logs"), timeouts_ms=dict.fromkeys(AGENT_MODELS, 2000.0))
    yield s
    s.stop()


def _server(srv: LocalServing, model: str) -> tuple[str, str]:
    """(host:http_port, host:grpc_port) of the server hosting ``model``."""
    s = srv.decision if model == "decision" else srv.agents[AGENT_MODELS[model]]
    return f"{s.host}:{s.http_port}", f"{s.host}:{s.grpc_port}"


def _fill(name: str, datatype: str, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    """A valid tensor for one metadata entry: finite numbers, booleans True, BYTES the decision request."""
    if datatype == "BOOL":
        return np.ones(shape, np.bool_)
    if datatype == "BYTES":  # the decision model's one input: a decision request's JSON
        body = orjson.dumps(
            {"instrument": f"META-{rng.integers(10**9)}", "clock": "tick", "ts": T0, "price": 1.0}
        )
        return np.full(shape, body, dtype=np.object_)
    assert datatype == "FP32", (name, datatype)
    return rng.standard_normal(shape).astype(np.float32)


def _concrete(shape: list[Any], n: int = 2) -> list[int]:
    return [n if int(d) == -1 else int(d) for d in shape]


def _assert_outputs(meta_outputs: list[dict], got: dict[str, np.ndarray], rows: int = 2) -> None:
    assert set(got) == {o["name"] for o in meta_outputs}
    for o in meta_outputs:
        arr = got[o["name"]]
        want = [rows if int(d) == -1 else int(d) for d in o["shape"]]
        assert list(arr.shape) == want, (o, arr.shape)
        assert arr.dtype == NP[o["datatype"]], (o, arr.dtype)
        if o["datatype"] == "FP32":
            assert np.isfinite(arr).all(), o["name"]
        else:
            assert json.loads(arr.reshape(-1)[0])["action"], o["name"]  # the decision's JSON


# ------------------------------------------------------------------------------------ tritonclient


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_http_calls_every_model_from_its_metadata(srv, model: str, binary: bool) -> None:
    http, _ = _server(srv, model)
    c = thttp.InferenceServerClient(http)
    try:
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(model)
        meta = c.get_model_metadata(model)
        assert meta["name"] == model
        rng = np.random.default_rng(0)
        inputs = []
        for m in meta["inputs"]:
            i = thttp.InferInput(m["name"], _concrete(m["shape"]), m["datatype"])
            i.set_data_from_numpy(
                _fill(m["name"], m["datatype"], _concrete(m["shape"]), rng), binary_data=binary
            )
            inputs.append(i)
        outputs = [thttp.InferRequestedOutput(o["name"], binary_data=binary) for o in meta["outputs"]]
        # tritonclient sends no content type: its binary requests are known by their
        # Inference-Header-Content-Length; a JSON-only request says what it is
        headers = None if binary else {"Content-Type": "application/json"}
        res = c.infer(model, inputs, outputs=outputs, headers=headers)
        _assert_outputs(meta["outputs"], {o["name"]: res.as_numpy(o["name"]) for o in meta["outputs"]})
    finally:
        c.close()


@pytest.fixture(scope="module")
def triton_grpc(srv) -> dict[str, dict]:
    """tritonclient.grpc's calls of every model, made in a child process (tests/triton_grpc_calls.py: it
    and kserve cannot share a process)."""
    out: dict[str, dict] = {}
    script = str(Path(__file__).with_name("triton_grpc_calls.py"))
    hosted = {
        server: [m for m in MODELS if _server(srv, m)[1] == server]
        for server in {_server(srv, m)[1] for m in MODELS}
    }
    for target, models in hosted.items():
        p = subprocess.run(
            [sys.executable, script, target, *models],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert p.returncode == 0, p.stderr[-2000:]
        for line in p.stdout.splitlines():
            r = json.loads(line)
            out[r["model"]] = r
    return out


@pytest.mark.parametrize("model", MODELS)
def test_tritonclient_grpc_calls_every_model_from_its_metadata(triton_grpc, model: str) -> None:
    r = triton_grpc[model]
    assert r["ok"], r["error"]
    assert set(r["outputs"]) == {o["name"] for o in r["metadata"]["outputs"]}


def test_metadata_lists_one_call_and_http_equals_grpc(srv, triton_grpc) -> None:
    """Every model's metadata is the same over HTTP and gRPC; the risk agent's three models list the
    inputs of one call each (no union of entries that no call accepts)."""
    names = {}
    for model in MODELS:
        http, _ = _server(srv, model)
        h = httpx.get(f"http://{http}/v2/models/{model}").json()
        gm = triton_grpc[model]["metadata"]
        for part in ("inputs", "outputs"):
            assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in gm[part]] == [
                (t["name"], t["datatype"], t["shape"]) for t in h[part]
            ], (model, part)
        names[model] = [t["name"] for t in h["inputs"]]
    assert names["risk"] == ["tactical", "structure", "regime", "portfolio", "proposal"]
    assert names["risk-encode"] == ["tactical", "structure", "regime"]
    assert names["risk-q"] == ["cache", "portfolio", "proposal"]
    assert names["structure"] == ["x", "msgs", "mask"] and names["decision"] == ["request"]
    models = httpx.get(f"{srv.agents['risk'].url}/v2/models").json()["models"]
    assert set(models) == {"risk", "risk-encode", "risk-q"}
    # a model takes its own inputs only, over V1 as well
    inst = {"cache": [0.0] * 256, "portfolio": [0.0] * 8, "proposal": [1.0] + [0.0] * 6}
    for model, ok in (("risk-q", 200), ("risk", 400), ("risk-encode", 400)):
        r = httpx.post(f"{srv.agents['risk'].url}/v1/models/{model}:predict", json={"instances": [inst]})
        assert r.status_code == ok, (model, r.text)
        if ok == 400:
            assert r.json()["error"].startswith(f"instances[0].cache: unknown input; {model} takes tactical")


# --------------------------------------------------------------------------- KServe's REST client


def _v1_instance(meta: dict, rng: np.random.Generator) -> dict[str, Any]:
    """One V1 instance from V2 metadata: a batched model's row (inputs without their -1 batch axis); a
    model with a fixed leading 1 (risk) is one call whose -1 axes are data (the proposals)."""
    batched = all(int(m["shape"][0]) == -1 for m in meta["inputs"])
    inst = {}
    for m in meta["inputs"]:
        shape = [int(d) for d in m["shape"]][1:] if batched or int(m["shape"][0]) == 1 else m["shape"]
        inst[m["name"]] = _fill(m["name"], m["datatype"], _concrete(shape), rng).tolist()
    return inst


@pytest.mark.parametrize("model", list(AGENT_MODELS))
def test_kserve_rest_client_v1_and_v2_call_every_agent_model(srv, model: str) -> None:
    http, _ = _server(srv, model)
    url = f"http://{http}"
    meta = httpx.get(f"{url}/v2/models/{model}").json()
    rng = np.random.default_rng(2)

    async def calls() -> tuple[Any, Any]:
        v1c = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
        v2c = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        try:
            v1 = await v1c.infer(url, {"instances": [_v1_instance(meta, rng)]}, model_name=model)
            ins = []
            for m in meta["inputs"]:
                shape = _concrete(m["shape"])
                i = InferInput(m["name"], shape, m["datatype"])
                i.set_data_from_numpy(_fill(m["name"], m["datatype"], shape, rng), binary_data=True)
                ins.append(i)
            req = InferRequest(model, ins, parameters={"binary_data_output": True})
            v2 = await v2c.infer(url, req, model_name=model)
            return v1, v2
        finally:
            await v1c.close()
            await v2c.close()

    v1, v2 = asyncio.run(calls())
    pred = v1["predictions"][0]
    assert set(pred) == {o["name"] for o in meta["outputs"]} and v1["agent"] == AGENT_MODELS[model]
    assert all(np.isfinite(np.asarray(v, np.float64)).all() for v in pred.values())
    _assert_outputs(meta["outputs"], {o.name: o.as_numpy() for o in v2.outputs})


def test_kserve_rest_client_v1_and_v2_call_the_decision_model(srv) -> None:
    req = {"instrument": "KS", "clock": "tick", "ts": T0, "price": 100.0}

    async def calls() -> tuple[Any, Any]:
        v1c = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
        v2c = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        try:
            v1 = await v1c.infer(srv.decision_url, req, model_name="decision")
            i = InferInput("request", [1], "BYTES")
            i.set_data_from_numpy(
                np.array([orjson.dumps({**req, "ts": T0 + 1})], np.object_), binary_data=False
            )
            v2 = await v2c.infer(srv.decision_url, InferRequest("decision", [i]), model_name="decision")
            return v1, v2
        finally:
            await v1c.close()
            await v2c.close()

    v1, v2 = asyncio.run(calls())
    assert v1["reasons"] == ["risk:no_matrices_yet"]
    assert json.loads(v2.outputs[0].as_numpy()[0])["reasons"] == ["risk:no_matrices_yet"]


# ------------------------------------------------------------------------------------ content types


def test_content_types_other_than_json_or_v2_binary_are_415(srv) -> None:
    reg, dec = srv.agents["regime"].url, srv.decision_url
    body = orjson.dumps({"instances": [{"x": np.zeros((96, 11)).tolist()}]})
    for url in (
        f"{reg}/v1/models/regime:predict",
        f"{reg}/v2/models/regime/infer",
        f"{dec}/v1/models/decision:predict",
    ):
        for ct in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/xml",
            "application/json; charset=latin-1",
        ):
            r = httpx.post(url, content=body, headers={"content-type": ct})
            assert r.status_code == 415 and "content-type: " in r.json()["error"], (url, ct, r.text)
            assert repr(ct) in r.json()["error"]
        r = httpx.post(url, content=body)  # no content type at all
        assert r.status_code == 415 and r.json()["error"].startswith("content-type: missing"), r.text
    # V1 has no binary extension
    r = httpx.post(
        f"{reg}/v1/models/regime:predict", content=body, headers={"content-type": "application/octet-stream"}
    )
    assert r.status_code == 415 and "application/octet-stream" in r.json()["error"]
    # the binary extension without its header
    r = httpx.post(
        f"{reg}/v2/models/regime/infer", content=body, headers={"content-type": "application/octet-stream"}
    )
    assert r.status_code == 400 and r.json()["error"].startswith("inference-header-content-length: missing")
    ok = httpx.post(
        f"{reg}/v1/models/regime:predict",
        content=body,
        headers={"content-type": "application/json; charset=UTF-8"},
    )
    assert ok.status_code == 200, ok.text


def test_broken_json_says_where(srv) -> None:
    reg = srv.agents["regime"].url
    bad = b'{"instances": [\n  {"x": [1.0,, 2.0]}]}'
    for url in (
        f"{reg}/v1/models/regime:predict",
        f"{reg}/v2/models/regime/infer",
        f"{srv.decision_url}/v1/models/decision:predict",
    ):
        r = httpx.post(url, content=bad, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert (
            r.json()["error"]
            == "body: not JSON at line 2, column 14 (char 29): Expecting value; found ', 2.0]}]}'"
        )


# --------------------------------------------------------------------------- one set of request rules

# the batched agent models (risk's fixed-batch model has its own shape rules) and their inputs
_WIRE = {"INT64": np.int64, "FP64": np.float64, "INT32": np.int32, "FP16": np.float16, "BYTES": np.float32}
_DEFECTS = ("batch", "negative_dim", "datatype", "nonfinite", "rank", "unknown_name", "missing")


def _tensors(meta: dict) -> list[tuple[str, str, np.ndarray]]:
    return [
        (
            m["name"],
            m["datatype"],
            _fill(m["name"], m["datatype"], _concrete(m["shape"], 1), np.random.default_rng(3)),
        )
        for m in meta["inputs"]
    ]


def _send_v2(url: str, model: str, tensors: list[tuple[str, str, list[int], bytes]]) -> tuple[int, str]:
    """V2 REST with the binary extension, the header written by hand (shapes exactly as given)."""
    header = {
        "inputs": [
            {"name": n, "datatype": dt, "shape": shape, "parameters": {"binary_data_size": len(raw)}}
            for n, dt, shape, raw in tensors
        ]
    }
    h = orjson.dumps(header)
    body = h + b"".join(raw for *_, raw in tensors)
    r = httpx.post(
        f"{url}/v2/models/{model}/infer",
        content=body,
        headers={"content-type": "application/octet-stream", "inference-header-content-length": str(len(h))},
        timeout=30.0,
    )
    return r.status_code, r.json().get("error", "")


def _send_grpc(stub: Any, model: str, tensors: list[tuple[str, str, list[int], bytes]]) -> tuple[str, str]:
    req = pb.ModelInferRequest(
        model_name=model,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name=n, datatype=dt, shape=s) for n, dt, s, _ in tensors
        ],
        raw_input_contents=[raw for *_, raw in tensors],
    )
    try:
        stub.ModelInfer(req, timeout=30)
    except grpc.RpcError as e:
        return e.code().name, e.details()
    return "OK", ""


@pytest.fixture(scope="module")
def stubs(srv) -> Iterator[dict[str, Any]]:
    chans = {a: grpc.insecure_channel(s.grpc_url.removeprefix("grpc://")) for a, s in srv.agents.items()}
    yield {a: GRPCInferenceServiceStub(c) for a, c in chans.items()}
    for c in chans.values():
        c.close()


@pytest.fixture(scope="module")
def metas(srv) -> dict[str, dict]:
    return {m: httpx.get(f"{srv.agents[a].url}/v2/models/{m}").json() for m, a in AGENT_MODELS.items()}


def _problem(message: str) -> str:
    return message.split(": ", 1)[1]


@pytest.mark.parametrize("defect", _DEFECTS)
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    model=st.sampled_from(["regime", "structure", "tactical", "risk-encode", "risk-q"]),
    which=st.integers(0, 2),
    bad_dtype=st.sampled_from(["INT64", "FP64", "BYTES", "INT32", "FP16"]),
    bad_value=st.sampled_from([np.nan, np.inf, -np.inf]),
    spot=st.integers(0, 10_000),
)
def test_the_same_malformed_request_gets_the_same_refusal_on_every_protocol(
    srv, stubs, metas, model, defect, which, bad_dtype, bad_value, spot
) -> None:
    meta = metas[model]
    agent = AGENT_MODELS[model]
    url = srv.agents[agent].url
    tensors = _tensors(meta)
    j = which % len(tensors)
    name, dt, arr = tensors[j]
    v1_ok = True  # V1 JSON has no datatype or shape to get wrong: those defects are V2/gRPC only
    shapes = [list(a.shape) for _, _, a in tensors]
    dts = [d for _, d, _ in tensors]
    arrays = [a for *_, a in tensors]
    names = [n for n, *_ in tensors]
    if defect == "batch":
        arrays = [np.repeat(a, 65, axis=0) for a in arrays]
        shapes = [list(a.shape) for a in arrays]
    elif defect == "negative_dim":
        shapes[j] = [-1, *shapes[j][1:]]
        v1_ok = False
    elif defect == "datatype":
        dts[j] = bad_dtype
        arrays[j] = arr.astype(_WIRE[bad_dtype])
        v1_ok = False
    elif defect == "nonfinite":
        if dt == "BOOL":  # booleans cannot be NaN: corrupt a float input instead
            j = next(i for i, d in enumerate(dts) if d == "FP32")
            name = names[j]
        a = arrays[j].copy()
        a.reshape(-1)[spot % a.size] = bad_value
        arrays[j] = a
    elif defect == "rank":
        arrays[j] = arrays[j].reshape(arrays[j].shape[0], -1) if arrays[j].ndim > 2 else arrays[j][..., None]
        shapes[j] = list(arrays[j].shape)
    elif defect == "unknown_name":
        names.append("bogus")
        dts.append("FP32")
        arrays.append(np.zeros((1, 3), np.float32))
        shapes.append([1, 3])
    elif defect == "missing":
        del names[j], dts[j], arrays[j], shapes[j]
    wire = [
        (n, d, s, np.ascontiguousarray(a).tobytes())
        for n, d, s, a in zip(names, dts, shapes, arrays, strict=True)
    ]
    status, v2_msg = _send_v2(url, model, wire)
    code, grpc_msg = _send_grpc(stubs[agent], model, wire)
    assert status == 400 and code == "INVALID_ARGUMENT", (defect, status, v2_msg, code, grpc_msg)
    assert v2_msg == grpc_msg, (defect, v2_msg, grpc_msg)
    if defect == "batch":  # the first input in the request has 65 rows
        assert v2_msg.startswith(f"inputs.{names[0]}: batch of 65; 1 to 64 rows are served")
    elif defect == "unknown_name":
        assert v2_msg.startswith("inputs.bogus: unknown input")
    elif defect == "missing":
        assert v2_msg.startswith(f"inputs.{name}: missing")
    else:
        assert v2_msg.startswith(f"inputs.{name}"), (defect, v2_msg)
    if not v1_ok:
        return
    # V1: the same request as instances (one per row); JSON has no NaN: a float32 overflow is its inf
    rows = arrays[0].shape[0] if arrays else 1
    insts = []
    for r in range(rows):
        inst = {}
        for n, a in zip(names, arrays, strict=True):
            v = a[r].astype(np.float64) if a.dtype != np.bool_ else a[r]
            if v.dtype == np.float64:
                v = np.where(np.isfinite(v), v, np.where(np.isnan(v) | (v > 0), 1e39, -1e39))
            inst[n] = v.tolist()
        insts.append(inst)
    r1 = httpx.post(
        f"{url}/v1/models/{model}:predict",
        content=orjson.dumps({"instances": insts}),
        headers={"content-type": "application/json"},
        timeout=30.0,
    )
    assert r1.status_code == 400, (defect, r1.text)
    v1_msg = r1.json()["error"]
    if defect == "rank":  # V1 describes one instance (a row), V2 the tensor: both name the input and shape
        assert v1_msg.startswith(f"instances[0].{name}: expected shape") and "expected shape" in v2_msg
        return
    assert _problem(v1_msg) == _problem(v2_msg), (defect, v1_msg, v2_msg)
    field = v1_msg.split(": ", 1)[0]
    assert field == (
        "instances" if defect == "batch" else f"instances[0].{name if defect != 'unknown_name' else 'bogus'}"
    ), v1_msg
