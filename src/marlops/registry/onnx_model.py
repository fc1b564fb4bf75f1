"""The serialization format of a registered agent: its saved folder inside an MLflow pyfunc model.

A model version of ``marlops-<agent>`` is an MLflow model (``MLmodel``, flavor ``python_function``) with

    loader_module: marlops.registry.onnx_model
    data: data/agent            the agent folder exactly as training saved it: meta.json, *.onnx,
                                weights.pt, spec.yaml

so there is no pickle anywhere: ``mlflow.pyfunc.load_model("models:/marlops-regime@champion")`` imports
this module and calls :func:`_load_pyfunc` on ``data/agent``, which opens the ONNX graphs named in
``meta.json`` with ONNX Runtime. ``predict`` takes a dict of named float32 arrays — the inputs of one
serving entry (``regime``; ``structure``; ``tactical``; ``risk_encode`` or ``risk_q`` for the risk
agent, told apart by their input names) — and returns a dict of the entry's named outputs.

Serving that wants the files rather than a pyfunc (the KServe models run the graphs themselves) uses
:func:`marlops.registry.download_agent`, which returns the ``data/agent`` folder of the downloaded model.

Precision: ``AgentModel(dir, precision="int8")`` opens the INT8 graphs that the parity gate
(:mod:`marlops.agents.quantize`) accepted for this version of the agent, listed in its ``int8.json``;
without them it raises :class:`Int8Error` — never a silent fall back to fp32.

Only numpy, onnxruntime and the standard library are imported here: the module has to be importable
wherever the model is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from marlops.precision import check_precision, int8_files

DATA_SUBPATH = "data/agent"  # where the agent folder sits inside the MLflow model directory


class AgentModel:
    """A registered agent, loaded: ``meta`` from its meta.json, one ONNX Runtime session per entry
    (``precision="int8"``: the gate-accepted INT8 graphs, see :func:`int8_files`)."""

    def __init__(self, directory: str | Path, threads: int = 1, precision: str = "fp32") -> None:
        import onnxruntime as ort

        check_precision(precision)
        self.directory = Path(directory)
        self.meta: dict[str, Any] = json.loads((self.directory / "meta.json").read_text())
        self.agent: str = self.meta["agent"]
        self.version: str = self.meta["version"]
        self.precision = precision
        self.entries: dict[str, dict[str, Any]] = dict(self.meta["entries"])
        files = {name: self.directory / e["file"] for name, e in self.entries.items()}
        if precision == "int8":
            files = int8_files(self.directory, self.version)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sessions = {
            name: ort.InferenceSession(
                str(files[name]), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            for name in self.entries
        }

    def entry_for(self, names: set[str]) -> str:
        for name, e in self.entries.items():
            if set(e["inputs"]) == names:
                return name
        expected = {n: sorted(e["inputs"]) for n, e in self.entries.items()}
        raise ValueError(f"{self.agent}: inputs {sorted(names)} match no entry; entries take {expected}")

    def predict(self, model_input: Mapping[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run the entry whose input names are ``model_input``'s keys; named outputs as numpy arrays."""
        if not isinstance(model_input, Mapping):
            raise TypeError(
                f"{self.agent}: predict takes a dict of named arrays, got {type(model_input).__name__}"
            )
        name = self.entry_for(set(model_input))
        spec = self.entries[name]
        feeds = {}
        for k, s in spec["inputs"].items():
            a = np.asarray(model_input[k], dtype=s["dtype"])
            if list(a.shape) != list(s["shape"]):
                raise ValueError(
                    f"{self.agent}.{name}: input {k!r} has shape {a.shape}, expected {s['shape']}"
                )
            feeds[k] = a
        outs = self.sessions[name].run(list(spec["outputs"]), feeds)
        return dict(zip(spec["outputs"], outs, strict=True))

    def get_raw_model(self) -> AgentModel:
        return self


def _load_pyfunc(data_path: str) -> AgentModel:
    """MLflow's entry point for ``loader_module`` models (``data_path`` = the model's ``data/agent``)."""
    return AgentModel(data_path)
