"""The KServe model of one agent: ``marlops serve agent NAME --model-uri URI``.

Protocols (KServe's own data planes; this class only maps tensors):

- V1 ``POST /v1/models/NAME:predict`` ``{"instances": [{"x": [[…]], "msgs": [[…]], "mask": [true]}]}``: one
  instance is one call of an entry, its inputs without the batch axis; the answer is
  ``{"predictions": [{"probs": […], …}], "agent": NAME, "version": "regime-…"}``.
- V2 ``POST /v2/models/NAME/infer`` (JSON or the binary tensor extension) and gRPC ``ModelInfer``: named
  FP32/BOOL tensors with a leading batch axis; outputs FP32, binary when the request asks for it (REST
  ``binary_data_output``, gRPC raw contents). Every response carries ``agent_version`` in its parameters.

Readiness: the model is loaded (downloaded from the registry if need be, graphs opened) before the server
starts listening, so ``/v2/health/ready`` answers only once the model is ready; ``/v2/models/NAME/ready``
follows :attr:`ready`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from marlops.serving import graph, metrics
from marlops.serving.agent_runner import AgentRunner
from marlops.serving.model_source import resolve_agent
from marlops.serving.tensors import InputError, as_array, json_body

V2_DATATYPES = {"FP32": np.float32, "BOOL": np.bool_}


class AgentPredictor(Model):
    """A kserve.Model serving one agent's entries (see :mod:`marlops.serving.agent_runner`)."""

    def __init__(self, agent: str, model_uri: str, threads: int = 1) -> None:
        super().__init__(agent)
        self.agent = agent
        self.model_uri = model_uri
        self.threads = threads
        self.runner: AgentRunner | None = None

    def load(self) -> bool:
        folder = resolve_agent(self.agent, self.model_uri)
        self.runner = AgentRunner(folder, threads=self.threads)
        metrics.model_loaded(self.agent, self.runner.version)
        self.ready = True
        return self.ready

    @property
    def version(self) -> str:
        return self.runner.version if self.runner else "?"

    # ------------------------------------------------------------------------------------- handlers

    async def predict(
        self,
        payload: dict | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        assert self.runner is not None  # the server starts only after load()
        t0 = time.perf_counter()
        try:
            if isinstance(payload, InferRequest):
                out = self._v2(payload)
            else:
                out = self._v1(json_body(payload))
        except InputError as e:
            raise InvalidInput(str(e)) from None
        metrics.agent_latency(self.agent).observe(time.perf_counter() - t0)
        return out

    def _v1(self, payload: Any) -> dict[str, Any]:
        runner = self.runner
        assert runner is not None
        if not isinstance(payload, Mapping):
            raise InputError("body", "expected a JSON object with 'instances'")
        if graph.is_graph_request(payload):  # a decision request routed by the InferenceGraph
            return graph.agent_answer(runner, payload)
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InputError("instances", "expected a non-empty list of objects of named inputs")
        preds = []
        for i, inst in enumerate(instances):
            field = f"instances[{i}]"
            if not isinstance(inst, Mapping):
                raise InputError(field, "expected an object of named inputs")
            entry = runner.entry_for(set(inst), field)
            batched = {k: _lead(inst[k], *entry.inputs[k], f"{field}.{k}") for k in inst}
            entry, arrays = runner.check(batched, field)
            outs = runner.run(entry, arrays)
            preds.append({k: _unlead(v, entry.outputs[k][0]).tolist() for k, v in outs.items()})
        return {"predictions": preds, "agent": self.agent, "version": runner.version}

    def _v2(self, req: InferRequest) -> InferResponse:
        runner = self.runner
        assert runner is not None
        values: dict[str, np.ndarray] = {}
        for inp in req.inputs:
            field = f"inputs.{inp.name}"
            if inp.name in values:
                raise InputError(field, "given twice")
            dtype = V2_DATATYPES.get(str(inp.datatype).upper())
            if dtype is None:
                raise InputError(f"{field}.datatype", f"{inp.datatype!r}; FP32 or BOOL expected")
            try:
                arr = inp.as_numpy()
            except (ValueError, TypeError, InvalidInput) as e:
                raise InputError(field, f"data does not fit shape {inp.shape}: {e}") from None
            if arr.dtype != dtype:
                raise InputError(f"{field}.datatype", f"{inp.datatype} where {_v2_name(dtype)} is expected")
            values[inp.name] = arr
        entry, arrays = runner.check(values)
        for name, (_, dtype) in entry.inputs.items():
            if values[name].dtype != np.dtype(dtype):
                raise InputError(
                    f"inputs.{name}.datatype",
                    f"{_v2_name(values[name].dtype)} where {_v2_name(dtype)} is expected",
                )
        outs = runner.run(entry, arrays)
        binary = req.use_binary_outputs
        wanted = {o.name for o in req.request_outputs or []}
        unknown = wanted - set(outs)
        if unknown:
            raise InputError("outputs", f"unknown outputs {sorted(unknown)}; {entry.name} has {list(outs)}")
        infer_outputs = []
        for name, arr in outs.items():
            if wanted and name not in wanted:
                continue
            o = InferOutput(name=name, shape=list(arr.shape), datatype="FP32")
            o.set_data_from_numpy(np.ascontiguousarray(arr, dtype=np.float32), binary_data=binary)
            infer_outputs.append(o)
        return InferResponse(
            response_id=req.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=infer_outputs,
            parameters={"agent_version": runner.version, "entry": entry.name},
            use_binary_outputs=binary,
        )

    # ------------------------------------------------------------------------------------- metadata

    def get_input_types(self) -> list[dict[str, Any]]:
        return self.runner.input_types() if self.runner else []

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.runner.output_types() if self.runner else []

    async def explain(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        raise InvalidInput(f"{self.name}: no explainer is served; use :predict or /infer")


def _v2_name(dtype: Any) -> str:
    return (
        "BOOL"
        if np.dtype(dtype) == np.bool_
        else ("FP32" if np.dtype(dtype) == np.float32 else np.dtype(dtype).name.upper())
    )


def _lead(value: Any, shape: tuple, dtype: type, field: str) -> Any:
    """A V1 instance's input, checked without the batch axis, then given it (the proposals axis K of
    risk_proposals is part of the instance)."""
    if shape[0] == "K":
        return value
    return as_array(value, field, dtype, [None if s in ("N", "K") else s for s in shape[1:]])[None]


def _unlead(arr: np.ndarray, lead: int | str) -> np.ndarray:
    return arr if lead == "K" else arr[0]
