"""The KServe models of one agent: ``marlops serve agent NAME --model-uri URI``.

One model per entry of the agent (:func:`marlops.serving.agent_runner.model_name`): ``regime``,
``structure``, ``tactical``; the risk agent's ``risk`` (matrices, portfolio, K proposals → cache, K rows of
q), ``risk-encode`` (matrices → cache) and ``risk-q`` (cache, portfolio, proposal → q). The models of one
agent share one loaded :class:`~marlops.serving.agent_runner.AgentRunner` (the graphs are opened once); each
model's V2 metadata (``GET /v2/models/NAME``, gRPC ``ModelMetadata``) lists exactly the inputs and outputs of
one call, the batch and proposals axes as -1.

Protocols (KServe's own data planes; this class only maps tensors), all under the same request rules
(:mod:`marlops.serving.request_rules`):

- V1 ``POST /v1/models/NAME:predict`` ``{"instances": [{"x": [[…]], "msgs": [[…]], "mask": [true]}]}``: one
  instance is one row of the model's inputs, without the batch axis (``risk``'s ``proposal`` keeps its K
  axis); the answer is ``{"predictions": [{"probs": […], …}], "agent": AGENT, "version": "regime-…"}``.
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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from marlops.serving import graph, metrics
from marlops.serving.agent_runner import AgentRunner, EntrySpec
from marlops.serving.model_source import resolve_agent
from marlops.serving.request_rules import (
    check_batch,
    check_datatype,
    check_instances,
    check_names,
    check_request_shape,
    check_tensor,
    json_body,
)
from marlops.serving.tensors import InputError, fmt_shape


class AgentPredictor(Model):
    """A kserve.Model serving one entry of an agent (see :mod:`marlops.serving.agent_runner`); the
    agent's model of its own name (the one :meth:`load` loads) also answers the InferenceGraph's requests."""

    def __init__(
        self, agent: str, model_uri: str, threads: int = 1, name: str | None = None, precision: str = "fp32"
    ) -> None:
        super().__init__(name or agent)
        self.agent = agent
        self.model_uri = model_uri
        self.threads = threads
        self.precision = precision  # fp32, or int8: the gate-accepted INT8 graphs (registry.onnx_model)
        self.runner: AgentRunner | None = None
        self.entry: EntrySpec | None = None

    def load(self) -> bool:
        folder = resolve_agent(self.agent, self.model_uri)
        self._bind(AgentRunner(folder, threads=self.threads, precision=self.precision))
        assert self.runner is not None
        metrics.model_loaded(self.agent, self.runner.version)
        return self.ready

    def _bind(self, runner: AgentRunner) -> None:
        entry = next((e for e in runner.entries.values() if e.model == self.name), None)
        if entry is None:
            served = ", ".join(e.model for e in runner.entries.values())
            raise ValueError(f"{self.agent} serves no model {self.name!r} (its models: {served})")
        self.runner, self.entry, self.ready = runner, entry, True

    def siblings(self) -> list[AgentPredictor]:
        """The agent's other models (one per entry), sharing this loaded runner."""
        runner = self.runner
        assert runner is not None, "load() first"
        out = []
        for e in runner.entries.values():
            if e.model != self.name:
                m = AgentPredictor(self.agent, self.model_uri, self.threads, e.model, self.precision)
                m._bind(runner)
                out.append(m)
        return out

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
        runner, entry = self.runner, self.entry
        assert runner is not None and entry is not None
        if not isinstance(payload, Mapping):
            raise InputError("body", "expected a JSON object with 'instances'")
        if self.name == self.agent and graph.is_graph_request(payload):  # a decision request from the graph
            return graph.agent_answer(runner, payload)
        instances = check_instances(payload.get("instances"))
        preds = []
        for i, inst in enumerate(instances):
            prefix = f"instances[{i}]"
            if not isinstance(inst, Mapping):
                raise InputError(prefix, "expected an object of named inputs")
            check_names(list(inst), list(entry.inputs), self.name, prefix)
            arrays = {}
            for name, (shape, dtype) in entry.inputs.items():
                rows = shape[0] == "K"  # risk's proposals axis is part of the instance
                a = check_tensor(inst[name], f"{prefix}.{name}", shape, dtype, rows=rows)
                arrays[name] = np.ascontiguousarray(a if rows else a[None])
            outs = runner.run(entry, arrays)
            preds.append({k: _unlead(v, entry.outputs[k][0]).tolist() for k, v in outs.items()})
        return {"predictions": preds, "agent": self.agent, "version": runner.version}

    def check_declared(self, declared: Sequence[tuple[str, Any, Sequence[Any]]]) -> None:
        """The rules on what a V2/gRPC request declares, before any data is read: its input names, then
        each input's datatype and shape. The server also applies them to a binary request's JSON header
        before KServe decodes it (KServe would refuse a -1 in its own words)."""
        entry = self.entry
        assert entry is not None
        check_names([name for name, _, _ in declared], list(entry.inputs), self.name, "inputs")
        for name, datatype, shape in declared:
            check_datatype(f"inputs.{name}", datatype, entry.inputs[name][1])
            check_request_shape(f"inputs.{name}", shape)

    def _v2(self, req: InferRequest) -> InferResponse:
        runner, entry = self.runner, self.entry
        assert runner is not None and entry is not None
        self.check_declared([(inp.name, inp.datatype, inp.shape) for inp in req.inputs])
        arrays: dict[str, np.ndarray] = {}
        for inp in req.inputs:
            field = f"inputs.{inp.name}"
            shape, dtype = entry.inputs[inp.name]
            dims = [int(d) for d in inp.shape]
            try:
                arr = inp.as_numpy()
            except (ValueError, TypeError, InvalidInput) as e:
                raise InputError(field, f"data does not fit shape {fmt_shape(dims)}: {e}") from None
            arrays[inp.name] = np.ascontiguousarray(check_tensor(arr, field, shape, dtype))
        check_batch(arrays, {n: s for n, (s, _) in entry.inputs.items()}, "inputs")
        outs = runner.run(entry, arrays)
        binary = req.use_binary_outputs
        wanted = {o.name for o in req.request_outputs or []}
        unknown = wanted - set(outs)
        if unknown:
            raise InputError(
                "outputs", f"unknown outputs {sorted(unknown)}; {self.name} has {', '.join(outs)}"
            )
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
        return self.entry.input_types() if self.entry else []

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.entry.output_types() if self.entry else []

    async def explain(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        raise InvalidInput(f"{self.name}: no explainer is served; use :predict or /infer")


def _unlead(arr: np.ndarray, lead: int | str) -> np.ndarray:
    return arr if lead == "K" else arr[0]
