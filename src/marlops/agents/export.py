"""Saving, loading and versioning agents, and their serving format (ONNX, run by ONNX Runtime).

A saved agent is one directory::

    weights.pt          state_dict (torch.save; loaded with weights_only=True)
    spec.yaml           the validated spec it was built from
    <entry>.onnx        the serving graphs: regime, structure, tactical; risk_encode + risk_q for risk
    meta.json           agent, version id, serving format, entry inputs/outputs, package versions

The version id is ``"{agent}-{sha256(canonical spec JSON + state_dict bytes)[:12]}"``: it changes
with any weight or hyperparameter and with nothing else (not with file timestamps or the exporter).

Why ONNX Runtime for serving (measured on this project's 2-core CPU, batch 1, one thread; the numbers
are in docs/agents.md): ORT was the fastest or tied on every agent at p50 and had the tightest p99 —
regime ≈ torch eager's best (TorchScript) at ~2.7 ms vs eager 3.9 ms, structure (the LSTM) ~3.2 ms vs
eager 5.7 ms and TorchScript 4.9 ms, the per-tick risk Q head ~55 µs vs eager 230 µs. TorchScript is
deprecated in torch 2.x (``torch.jit.trace`` warns), and ORT also frees the serving process from
torch. With IOBinding on preallocated numpy buffers a call does no allocation and no input copy.

Graphs are exported with the torch.export-based exporter (``dynamo=True``, the default since torch
2.9) at a static batch of 1, the serving shape; when it fails for a net, the legacy exporter
(``dynamo=False``) is tried. Every export is checked against eager on random inputs before it is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from marlops.agents.networks import (
    AgentNet,
    RegimeNet,
    RiskNet,
    StructureNet,
    StructureOut,
    TacticalNet,
    build_network,
)
from marlops.agents.specs import AgentSpec, SpecError, parse_spec, spec_to_dict
from marlops.agents.types import MESSAGE_DIM, PORTFOLIO_FEATURES, PROPOSAL_DIM, STRUCTURE_BIAS_LEVELS
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL

SERVING_FORMAT = "onnx"
# Bumped when a serving graph's semantics change without a weight or spec change (part of the export
# cache key, so no stale graph is reused). 2: structure's bias is the mode level, not the expectation.
# 3: structure is also saved split in two (``split_entries``).
SERVING_GRAPH_REVISION = 3
WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "spec.yaml"
META_FILE = "meta.json"
PARITY_TOL = 1e-5  # max |ORT - eager| accepted at export time and asserted by the tests


# ------------------------------------------------------------------------------------ serving graphs


class RegimeServing(nn.Module):
    """(x) → probs, volatility, message."""

    def __init__(self, net: RegimeNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        o = self.net(x)
        return torch.softmax(o.logits, dim=-1), o.volatility, o.message


class StructureServing(nn.Module):
    """(x, msgs, mask) → probs, bias (the most likely level), size, confidence, value, message.

    The bias is the deterministic policy's level — the mode, as tactical acts on its argmax — not the
    expectation over levels: the environment trains on chosen levels, and the expectation of a policy that
    is unsure is ~0, below the consensus gate's ``min_bias``, which would block every entry in serving."""

    def __init__(self, net: StructureNet) -> None:
        super().__init__()
        self.net = net
        self.levels: Tensor
        self.register_buffer(
            "levels", torch.tensor(STRUCTURE_BIAS_LEVELS, dtype=torch.float32), persistent=False
        )

    def forward(self, x: Tensor, msgs: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        return self.outputs(self.net(x, msgs, mask))

    def outputs(self, o: StructureOut) -> tuple[Tensor, ...]:
        probs = torch.softmax(o.logits, dim=-1)
        return probs, self.levels[probs.argmax(dim=-1)], o.size, o.confidence, o.value, o.message


class StructureEncodeServing(nn.Module):
    """x → h: structure's own state, which needs no message (so it can run while regime does)."""

    def __init__(self, net: StructureNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.encode(x)


class StructureHeadServing(StructureServing):
    """(h, msgs, mask) → structure's outputs: ``StructureServing`` is exactly this after the encoding."""

    def forward(self, h: Tensor, msgs: Tensor, mask: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        return self.outputs(self.net.head(h, msgs, mask))


class TacticalServing(nn.Module):
    """(x, msgs, mask) → probs, value, message."""

    def __init__(self, net: TacticalNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, msgs: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        o = self.net(x, msgs, mask)
        return torch.softmax(o.logits, dim=-1), o.value, o.message


class RiskEncodeServing(nn.Module):
    """(tactical, structure, regime) → cache: the per-bar part of the risk encoder."""

    def __init__(self, net: RiskNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, tactical: Tensor, structure: Tensor, regime: Tensor) -> Tensor:
        return self.net.encode_matrices(tactical, structure, regime)


class RiskQServing(nn.Module):
    """(cache, portfolio, proposal) → q: the per-tick part."""

    def __init__(self, net: RiskNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, cache: Tensor, portfolio: Tensor, proposal: Tensor) -> Tensor:
        return self.net.q_from_cache(cache, portfolio, proposal)


@dataclass(frozen=True)
class Entry:
    """One serving graph: its file stem, batch-1 inputs (name, shape, dtype) and output names."""

    name: str
    module: nn.Module
    inputs: tuple[tuple[str, tuple[int, ...], type], ...]  # (name, batch-1 shape, numpy dtype)
    outputs: tuple[str, ...]

    def example(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Random batch-1 inputs (masks random too), for export and parity checks."""
        return [
            rng.random(shape) < 0.5 if dtype is np.bool_ else rng.standard_normal(shape).astype(np.float32)
            for _, shape, dtype in self.inputs
        ]


Input = tuple[str, tuple[int, ...], type]


def serving_entries(net: AgentNet) -> list[Entry]:
    """The serving graphs of a network, in eval mode (they share the network's parameters)."""
    f32: type = np.float32
    mods: list[tuple[str, nn.Module, list[Input], tuple[str, ...]]]
    if isinstance(net, RegimeNet):
        outs: tuple[str, ...] = ("probs", "volatility", "message")
        mods = [("regime", RegimeServing(net), [("x", (1, *REGIME.shape), f32)], outs)]
    elif isinstance(net, StructureNet | TacticalNet):
        m = net.n_senders
        shape = (STRUCTURE if isinstance(net, StructureNet) else TACTICAL).shape
        ins: list[Input] = [
            ("x", (1, *shape), f32),
            ("msgs", (1, m, MESSAGE_DIM), f32),
            ("mask", (1, m), np.bool_),
        ]
        if isinstance(net, StructureNet):
            outs = ("probs", "bias", "size", "confidence", "value", "message")
            mods = [("structure", StructureServing(net), ins, outs)]
        else:
            mods = [("tactical", TacticalServing(net), ins, ("probs", "value", "message"))]
    elif isinstance(net, RiskNet):
        enc_in: list[Input] = [
            ("tactical", (1, *TACTICAL.shape), f32),
            ("structure", (1, *STRUCTURE.shape), f32),
            ("regime", (1, *REGIME.shape), f32),
        ]
        q_in: list[Input] = [
            ("cache", (1, net.cache_dim), f32),
            ("portfolio", (1, len(PORTFOLIO_FEATURES)), f32),
            ("proposal", (1, PROPOSAL_DIM), f32),
        ]
        mods = [
            ("risk_encode", RiskEncodeServing(net), enc_in, ("cache",)),
            ("risk_q", RiskQServing(net), q_in, ("q",)),
        ]
    else:
        raise TypeError(f"not an agent network: {type(net).__name__}")
    return [Entry(n, mod.eval(), tuple(ins), outs) for n, mod, ins, outs in mods]


def split_entries(net: AgentNet) -> list[Entry]:
    """Graphs that split an agent's serving graph where a part needs no message: structure's encoding
    and its head, for a runtime that runs the encoding while regime runs (the outputs are the same)."""
    if not isinstance(net, StructureNet):
        return []
    f32: type = np.float32
    h: Input = ("h", (1, net.spec.architecture.lstm_hidden), f32)
    msgs: list[Input] = [
        ("msgs", (1, net.n_senders, MESSAGE_DIM), f32),
        ("mask", (1, net.n_senders), np.bool_),
    ]
    outs = ("probs", "bias", "size", "confidence", "value", "message")
    return [
        Entry(
            "structure_encode",
            StructureEncodeServing(net).eval(),
            (("x", (1, *STRUCTURE.shape), f32),),
            ("h",),
        ),
        Entry("structure_head", StructureHeadServing(net).eval(), (h, *msgs), outs),
    ]


def eager_outputs(entry: Entry, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The eager reference for a serving graph (numpy in, numpy out)."""
    with torch.inference_mode():
        out = entry.module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
    out = (out,) if isinstance(out, Tensor) else out
    return [t.numpy() for t in out]


# ------------------------------------------------------------------------------------------ ONNX


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    # The exporter logs one warning per missing optional torchvision op and warns on deprecations.
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def export_onnx(entry: Entry) -> bytes:
    """Serialize one serving graph to ONNX at batch 1 (torch.export-based exporter at its default
    opset, falling back to the legacy exporter at opset 18)."""
    return _export(entry)[0]


def _export(entry: Entry) -> tuple[bytes, str]:
    args = tuple(torch.from_numpy(x) for x in entry.example(np.random.default_rng(0)))
    in_names, out_names = [n for n, _, _ in entry.inputs], list(entry.outputs)
    with _quiet_export():
        try:
            prog = torch.onnx.export(
                entry.module, args, dynamo=True, verbose=False, input_names=in_names, output_names=out_names
            )
            assert prog is not None
            return prog.model_proto.SerializeToString(), "dynamo"
        except Exception as first:  # any exporter failure falls back to the legacy path
            buf = io.BytesIO()
            try:
                torch.onnx.export(
                    entry.module,
                    args,
                    buf,  # type: ignore[arg-type]  # file-like objects are accepted at run time
                    dynamo=False,
                    opset_version=18,
                    input_names=in_names,
                    output_names=out_names,
                )
            except Exception as second:
                raise RuntimeError(
                    f"ONNX export of {entry.name} failed: {first!r}; legacy: {second!r}"
                ) from second
            return buf.getvalue(), "legacy"


def ort_session(model: bytes | str | Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session tuned for batch-1 latency.

    One intra-op thread by default: the graphs are small at batch 1, so a thread pool's wake-up and
    sync cost more than they save, and the two cores are shared with the market feed.
    """
    import onnxruntime as ort  # imported lazily: training never needs it

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    src = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def check_parity(
    entry: Entry, session: Any, trials: int = 4, tol: float = PARITY_TOL, seed: int = 1
) -> float:
    """Max |ORT - eager| over random inputs (masks random, one all-absent); raises above ``tol``."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for t in range(trials):
        xs = entry.example(rng)
        if t == trials - 1:  # the fail-closed case: no message present at all
            xs = [np.zeros_like(x) if x.dtype == np.bool_ else x for x in xs]
        got = session.run(list(entry.outputs), dict(zip((n for n, _, _ in entry.inputs), xs, strict=True)))
        for g, r in zip(got, eager_outputs(entry, xs), strict=True):
            worst = max(worst, float(np.max(np.abs(g - r))))
    if not worst <= tol:
        raise RuntimeError(f"ONNX parity of {entry.name}: max |ort - eager| = {worst:.3g} > {tol}")
    return worst


# -------------------------------------------------------------------------------- versions and files


def version_id(spec: AgentSpec, state_dict: dict[str, Tensor]) -> str:
    """``"{agent}-{sha256(spec + weights)[:12]}"``; stable across save/load and processes."""
    h = hashlib.sha256()
    h.update(json.dumps(spec_to_dict(spec), sort_keys=True, separators=(",", ":")).encode())
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"\0{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return f"{spec.agent}-{h.hexdigest()[:12]}"


def net_version(net: AgentNet) -> str:
    return version_id(net.spec, net.state_dict())


def _save_entry(entry: Entry, out: Path) -> dict[str, Any]:
    model, exporter = _export(entry)
    parity = check_parity(entry, ort_session(model))
    (out / f"{entry.name}.onnx").write_bytes(model)
    return {
        "file": f"{entry.name}.onnx",
        "exporter": exporter,
        "parity_max_abs_diff": parity,
        "inputs": {n: {"shape": list(s), "dtype": np.dtype(d).name} for n, s, d in entry.inputs},
        "outputs": list(entry.outputs),
    }


@dataclass
class LoadedAgent:
    agent: str
    spec: AgentSpec
    net: AgentNet  # eval mode
    version: str
    directory: Path
    onnx_files: dict[str, Path]  # entry name -> file
    split_files: dict[str, Path] = field(default_factory=dict)  # split_entries' graphs (teams saved since 3)


def save_agent(net: AgentNet, spec: AgentSpec | None = None, directory: str | Path = ".") -> str:
    """Write weights, spec, ONNX serving graphs and meta.json into ``directory``; returns the version id."""
    spec = spec or net.spec
    if spec != net.spec:
        raise ValueError(f"spec does not match the network's own spec ({spec.agent})")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    was_training = net.training
    net.eval()
    try:
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        version = version_id(spec, state)
        torch.save(state, out / WEIGHTS_FILE)
        (out / SPEC_FILE).write_text(yaml.safe_dump(spec_to_dict(spec), sort_keys=False))
        entries = {e.name: _save_entry(e, out) for e in serving_entries(net)}
        split = {e.name: _save_entry(e, out) for e in split_entries(net)}
    finally:
        net.train(was_training)
    meta = {
        "agent": spec.agent,
        "version": version,
        "serving_format": SERVING_FORMAT,
        "entries": entries,
        **({"split_entries": split} if split else {}),
        "weights": WEIGHTS_FILE,
        "spec": SPEC_FILE,
        "torch": torch.__version__,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return version


def load_agent(directory: str | Path) -> LoadedAgent:
    """Restore a saved agent (eager net in eval mode + paths of its serving graphs); checks its version id."""
    d = Path(directory)
    meta_path = d / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"not a saved agent (no {META_FILE}): {d}")
    meta = json.loads(meta_path.read_text())
    agent = meta["agent"]
    spec = parse_spec(
        agent, yaml.safe_load((d / meta.get("spec", SPEC_FILE)).read_text()), str(d / SPEC_FILE)
    )
    if spec.agent != agent:
        raise SpecError(f"{d}: meta says {agent!r} but the spec is for {spec.agent!r}")
    state = torch.load(d / meta.get("weights", WEIGHTS_FILE), map_location="cpu", weights_only=True)
    net = build_network(spec, seed=0)  # seeded only to leave the global RNG alone; weights replaced
    net.load_state_dict(state)
    version = version_id(spec, net.state_dict())
    if version != meta["version"]:
        raise ValueError(f"{d}: weights/spec hash to {version}, meta.json says {meta['version']}")
    files = {name: d / e["file"] for name, e in meta["entries"].items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: serving graphs missing: {missing}")
    split = {name: d / e["file"] for name, e in meta.get("split_entries", {}).items()}
    if not all(p.is_file() for p in split.values()):
        split = {}  # optional: the runtime then runs the whole graph
    return LoadedAgent(agent, spec, net.eval(), version, d, files, split)
