"""One agent's ONNX graphs behind named-tensor calls: what an agent server and a collocated agent run.

The graphs are the ones training exported (static batch 1, see :mod:`marlops.agents.export`), opened with
ONNX Runtime by :class:`marlops.registry.onnx_model.AgentModel` (no torch in a serving process). A call
names its inputs; the input names pick the entry (``regime``; ``structure``; ``tactical``; ``risk_encode``
or ``risk_q`` for the risk agent). A leading batch axis ``N`` (1 ≤ N ≤ :data:`MAX_BATCH`) runs the batch-1
graph once per row.

The risk agent has one more entry, :data:`RISK_PROPOSALS`: the matrices, the portfolio and ``K`` candidate
proposals (one per tactical action) → the matrix encoding and ``K`` rows of Q-values. The decision server
uses it to ask for the risk agent's verdict on every action the tactical agent may propose *while* the
tactical agent runs, instead of after it — same numbers as risk_encode then risk_q on the chosen proposal,
one network round trip less on every bar close.

A server serves every entry as a model of its own (:func:`model_name`): ``regime``, ``structure``,
``tactical``; the risk agent's ``risk`` (risk_proposals, what the decision server calls on a bar close),
``risk-encode`` and ``risk-q`` (what it calls on a tick). Each model's V2 metadata lists exactly the inputs
of one call, so a generic client (tritonclient) can call it from the metadata alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from marlops.registry.folders import AgentFolder
from marlops.registry.onnx_model import AgentModel
from marlops.serving.request_rules import (
    MAX_BATCH,
    MAX_PROPOSALS,
    K,
    N,
    Shape,
    check_batch,
    check_names,
    check_tensor,
    v2_datatype,
)
from marlops.serving.tensors import InputError, fmt_shape

__all__ = ["MAX_BATCH", "MAX_PROPOSALS", "RISK_PROPOSALS", "AgentRunner", "EntrySpec", "model_name"]

RISK_PROPOSALS = "risk_proposals"
# the served model of each entry whose name is not the entry's own (V2 model names: no underscores)
ENTRY_MODELS = {RISK_PROPOSALS: "risk", "risk_encode": "risk-encode", "risk_q": "risk-q"}
_RISK_ENCODE_INPUTS = frozenset({"tactical", "structure", "regime"})
_RISK_Q_INPUTS = frozenset({"cache", "portfolio", "proposal"})


def model_name(entry: str) -> str:
    """The served model of an entry: ``regime`` → ``regime``, ``risk_q`` → ``risk-q`` …"""
    return ENTRY_MODELS.get(entry, entry)


def model_for_inputs(agent: str, names: set[str] | frozenset[str]) -> str:
    """The model a client calls for these input names (its entry's model): what the decision server's
    clients use, without the agent's graphs at hand."""
    if agent == "risk":
        if frozenset(names) == _RISK_Q_INPUTS:
            return "risk-q"
        if frozenset(names) == _RISK_ENCODE_INPUTS:
            return "risk-encode"
    return agent


@dataclass(frozen=True)
class EntrySpec:
    name: str
    inputs: dict[str, tuple[Shape, type]]  # name -> (shape with its leading axis, numpy dtype)
    outputs: dict[str, Shape]

    def describe(self) -> str:
        return ", ".join(f"{n} {fmt_shape(s)} {np.dtype(d).name}" for n, (s, d) in self.inputs.items())

    @property
    def model(self) -> str:
        return model_name(self.name)

    def input_types(self) -> list[dict[str, Any]]:
        """V2 metadata: the batch and proposals axes as -1, every other dimension its size."""
        return [
            {"name": n, "datatype": v2_datatype(d), "shape": _meta_shape(s)}
            for n, (s, d) in self.inputs.items()
        ]

    def output_types(self) -> list[dict[str, Any]]:
        return [{"name": n, "datatype": "FP32", "shape": _meta_shape(s)} for n, s in self.outputs.items()]


def _meta_shape(shape: Shape) -> list[int]:
    return [-1 if s in (N, K) else int(s) for s in shape]


class _Bound:
    """One entry at batch 1 bound to preallocated buffers through ONNX Runtime's IOBinding (as the engine's
    runtime does): a call copies its inputs in, runs, and copies the few outputs out — no per-call
    allocation or name lookups. Not thread-safe: a server calls its models from its event loop only."""

    def __init__(self, session: Any, spec: EntrySpec) -> None:
        import onnxruntime as ort

        self.inputs = {n: np.zeros((1, *s[1:]), d) for n, (s, d) in spec.inputs.items()}
        self.outputs = {n: np.zeros((1, *s[1:]), np.float32) for n, s in spec.outputs.items()}
        self.binding = session.io_binding()
        self._values = []  # the OrtValues share the buffers' memory; keep them alive
        for name, buf in self.inputs.items():
            v = ort.OrtValue.ortvalue_from_numpy(buf)
            self.binding.bind_ortvalue_input(name, v)
            self._values.append(v)
        for name, buf in self.outputs.items():
            v = ort.OrtValue.ortvalue_from_numpy(buf)
            self.binding.bind_ortvalue_output(name, v)
            self._values.append(v)
        self.session = session

    def run(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, a in arrays.items():
            np.copyto(self.inputs[name], a, casting="same_kind")
        self.session.run_with_iobinding(self.binding)
        return {name: buf.copy() for name, buf in self.outputs.items()}


class AgentRunner:
    """A loaded agent: ``entries`` (with their batched shapes) and :meth:`run`."""

    def __init__(self, folder: AgentFolder, threads: int = 1, precision: str = "fp32") -> None:
        self.model = AgentModel(folder.path, threads=threads, precision=precision)
        self.agent: str = self.model.agent
        self.version: str = self.model.version
        self.directory = folder.path
        self.entries: dict[str, EntrySpec] = {}
        out_shapes = {
            name: {o.name: tuple(o.shape[1:]) for o in sess.get_outputs()}
            for name, sess in self.model.sessions.items()
        }
        for name, e in self.model.entries.items():
            ins = {k: ((N, *v["shape"][1:]), np.dtype(v["dtype"]).type) for k, v in e["inputs"].items()}
            outs = {o: (N, *out_shapes[name][o]) for o in e["outputs"]}
            self.entries[name] = EntrySpec(name, ins, outs)
        if {"risk_encode", "risk_q"} <= set(self.entries):
            enc, q = self.entries["risk_encode"], self.entries["risk_q"]
            ins = {k: ((1, *s[1:]), d) for k, (s, d) in enc.inputs.items()}
            ins["portfolio"] = ((1, *q.inputs["portfolio"][0][1:]), np.float32)
            ins["proposal"] = ((K, *q.inputs["proposal"][0][1:]), np.float32)
            outs = {"cache": (1, *enc.outputs["cache"][1:]), "q": (K, *q.outputs["q"][1:])}
            self.entries[RISK_PROPOSALS] = EntrySpec(RISK_PROPOSALS, ins, outs)
        self._by_inputs = {frozenset(e.inputs): e for e in self.entries.values()}
        self._bound = {name: _Bound(sess, self.entries[name]) for name, sess in self.model.sessions.items()}

    # ---------------------------------------------------------------------------------------- checks

    def entry_for(self, names: set[str] | frozenset[str], field: str = "inputs") -> EntrySpec:
        e = self._by_inputs.get(frozenset(names))
        if e is not None:
            return e
        options = "; ".join(f"{e.model}: {', '.join(e.inputs)}" for e in self.entries.values())
        raise InputError(
            field, f"{self.agent} takes the inputs of one of its models ({options}), got {sorted(names)}"
        )

    def check(
        self, values: Mapping[str, Any], field: str = "inputs", entry: EntrySpec | None = None
    ) -> tuple[EntrySpec, dict[str, np.ndarray]]:
        """Validate named input values (with their leading axis) against ``entry`` (default: the entry
        their names pick) by the request rules (:mod:`marlops.serving.request_rules`)."""
        if entry is None:
            entry = self.entry_for(set(values), field)
        check_names(list(values), list(entry.inputs), entry.model, field)
        arrays = {
            name: np.ascontiguousarray(check_tensor(values[name], f"{field}.{name}", shape, dtype))
            for name, (shape, dtype) in entry.inputs.items()
        }
        check_batch(arrays, {n: s for n, (s, _) in entry.inputs.items()}, field)
        return entry, arrays

    # ------------------------------------------------------------------------------------------- run

    def run(self, entry: EntrySpec, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs of ``entry`` for checked ``arrays`` (see :meth:`check`)."""
        if entry.name == RISK_PROPOSALS:
            return self._risk_proposals(arrays)
        bound = self._bound[entry.name]
        n = next(iter(arrays.values())).shape[0]
        if n == 1:
            return bound.run(arrays)
        rows = [bound.run({k: v[i : i + 1] for k, v in arrays.items()}) for i in range(n)]
        return {name: np.concatenate([r[name] for r in rows]) for name in entry.outputs}

    def _risk_proposals(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cache = self._bound["risk_encode"].run(
            {"tactical": a["tactical"], "structure": a["structure"], "regime": a["regime"]}
        )["cache"]
        q_head = self._bound["risk_q"]
        port = a["portfolio"]
        qs = [
            q_head.run({"cache": cache, "portfolio": port, "proposal": p[None]})["q"] for p in a["proposal"]
        ]
        return {"cache": cache, "q": np.concatenate(qs)}

    def infer(self, values: Mapping[str, Any]) -> dict[str, np.ndarray]:
        entry, arrays = self.check(values)
        return self.run(entry, arrays)
