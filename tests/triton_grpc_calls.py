"""tritonclient.grpc calling models purely from their V2 metadata, in a process of its own.

tritonclient.grpc and kserve cannot be imported into one process: both register the Open Inference
Protocol's protobuf package ``inference`` (kserve/kserve#3099), so tests/test_serving_clients.py runs this
file as a child: ``python tests/triton_grpc_calls.py HOST:PORT MODEL…``; it prints one JSON line per model
(``{"model", "ok", "error", "metadata", "outputs"}``) and never imports kserve or marlops.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as tgrpc

T0 = 1_735_689_600_000_000_000
NP = {"FP32": np.float32, "BOOL": np.bool_, "BYTES": np.object_}


def fill(datatype: str, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    if datatype == "BOOL":
        return np.ones(shape, np.bool_)
    if datatype == "BYTES":  # the decision model's one input: a decision request's JSON
        body = json.dumps(
            {"instrument": f"GRPC-{rng.integers(10**9)}", "clock": "tick", "ts": T0, "price": 1.0}
        )
        return np.full(shape, body.encode(), dtype=np.object_)
    return rng.standard_normal(shape).astype(np.float32)


def call(client: Any, model: str, rows: int = 2) -> dict[str, Any]:
    assert client.is_server_live() and client.is_server_ready(), "server not ready"
    assert client.is_model_ready(model), f"{model} not ready"
    meta = client.get_model_metadata(model, as_json=True)
    assert meta["name"] == model, meta
    rng = np.random.default_rng(1)
    inputs = []
    for m in meta["inputs"]:
        shape = [rows if int(d) == -1 else int(d) for d in m["shape"]]
        i = tgrpc.InferInput(m["name"], shape, m["datatype"])
        i.set_data_from_numpy(fill(m["datatype"], shape, rng))
        inputs.append(i)
    res = client.infer(
        model, inputs, outputs=[tgrpc.InferRequestedOutput(o["name"]) for o in meta["outputs"]]
    )
    outs = {}
    for o in meta["outputs"]:
        arr = res.as_numpy(o["name"])
        want = [rows if int(d) == -1 else int(d) for d in o["shape"]]
        assert arr is not None and list(arr.shape) == want, (o, None if arr is None else arr.shape)
        assert arr.dtype == NP[o["datatype"]], (o, arr.dtype)
        if o["datatype"] == "FP32":
            assert np.isfinite(arr).all(), o["name"]
        else:
            assert json.loads(arr.reshape(-1)[0])["action"], o["name"]
        outs[o["name"]] = [list(arr.shape), o["datatype"]]
    return {"metadata": meta, "outputs": outs}


def main() -> None:
    target, models = sys.argv[1], sys.argv[2:]
    client = tgrpc.InferenceServerClient(target)
    try:
        for model in models:
            try:
                out = {"model": model, "ok": True, "error": None, **call(client, model)}
            except Exception as e:  # reported to the test, which fails on it
                out = {"model": model, "ok": False, "error": f"{type(e).__name__}: {e}"}
            print(json.dumps(out), flush=True)
    finally:
        client.close()


if __name__ == "__main__":
    main()
