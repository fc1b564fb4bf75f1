"""The four agents as batch-1 callables for the decision engine: numpy (float32) in, types.py records out.

Per call the work outside the model is one shape check and one copy of each input into a
preallocated buffer, and a copy of the few output numbers into the record. With the ``onnx``
backend (the default, see :mod:`marlops.agents.export` for why) the buffers are bound to ONNX
Runtime once through IOBinding, so a call allocates nothing and ORT reads and writes them in place.
The ``eager`` backend runs the torch modules themselves under ``inference_mode`` (what training
uses: :attr:`AgentSet.networks` are the live ``nn.Module``s).

Messages: a consumer gets ``msgs (M, MESSAGE_DIM)`` and ``mask (M,)`` with its senders in the order
of its spec's ``architecture.senders`` (:attr:`AgentSet.senders`): structure reads M=1 (regime),
tactical M=2 (regime, structure). ``mask[i]`` False means sender i's message is absent or stale.

Threads: one intra-op thread by default. The graphs are small at batch 1, so a thread pool's wake-ups
cost more than they save, and this 2-core machine shares its cores with the market feed. ORT sessions
take it per session; the eager backend has to set torch's process-wide ``torch.set_num_threads``.

``python -m marlops.agents.runtime [--team DIR] [onnx|eager|int8 ...]`` prints the batch-1 latency table of
docs/agents.md (``int8``: the gate-accepted INT8 graphs of a saved team, :mod:`marlops.agents.quantize`).
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from marlops.agents.export import (
    SERVING_GRAPH_REVISION,
    Entry,
    check_parity,
    export_onnx,
    load_agent,
    net_version,
    ort_session,
    save_agent,
    serving_entries,
    split_entries,
)
from marlops.agents.networks import AgentNet, StructureNet, TacticalNet, build_network
from marlops.agents.specs import AgentSpec, load_specs
from marlops.agents.types import (
    MESSAGE_DIM,
    PORTFOLIO_FEATURES,
    PROPOSAL_DIM,
    Outputs,
    RegimeOutput,
    RiskOutput,
    StructureOutput,
    TacticalOutput,
)
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL
from marlops.team import AGENTS

Backend = Literal["onnx", "eager"]
BACKENDS: tuple[str, ...] = ("onnx", "eager")
SET_FILE = "agents.json"


class _Runner(abc.ABC):
    """One serving graph at batch 1: write into ``inputs[i][0]``, call ``run()``, read the outputs."""

    inputs: list[np.ndarray]
    names: tuple[str, ...]  # the outputs' names, in run()'s order

    @abc.abstractmethod
    def run(self) -> list[np.ndarray]:
        """Compute the outputs from the current contents of ``inputs``."""

    def run_named(self) -> Outputs:
        return dict(zip(self.names, self.run(), strict=True))


class _OrtRunner(_Runner):
    def __init__(self, entry: Entry, session: Any) -> None:
        import onnxruntime as ort

        self.inputs = [np.zeros(shape, dtype) for _, shape, dtype in entry.inputs]
        by_name = {o.name: o for o in session.get_outputs()}
        self.outputs = [np.zeros(by_name[n].shape, np.float32) for n in entry.outputs]
        self.names = tuple(entry.outputs)
        self._named = dict(zip(self.names, self.outputs, strict=True))  # the same buffers, by name
        # OrtValues made from numpy share its memory on CPU: binding them once means ORT reads the
        # input buffers and writes the output buffers in place on every run.
        self._values = [ort.OrtValue.ortvalue_from_numpy(a) for a in (*self.inputs, *self.outputs)]
        self._binding = session.io_binding()
        names = [n for n, _, _ in entry.inputs] + list(entry.outputs)
        for i, (name, value) in enumerate(zip(names, self._values, strict=True)):
            if i < len(self.inputs):
                self._binding.bind_ortvalue_input(name, value)
            else:
                self._binding.bind_ortvalue_output(name, value)
        self._session = session

    def run(self) -> list[np.ndarray]:
        self._session.run_with_iobinding(self._binding)
        return self.outputs

    def run_named(self) -> Outputs:
        self._session.run_with_iobinding(self._binding)
        return self._named


class _EagerRunner(_Runner):
    def __init__(self, entry: Entry) -> None:
        self.inputs = [np.zeros(shape, dtype) for _, shape, dtype in entry.inputs]
        self._tensors = [torch.from_numpy(a) for a in self.inputs]  # views: writes to inputs are seen
        self.names = tuple(entry.outputs)
        self._module = entry.module

    def run(self) -> list[np.ndarray]:
        with torch.inference_mode():
            out = self._module(*self._tensors)
        return [out.numpy()] if isinstance(out, torch.Tensor) else [t.numpy() for t in out]


def _put(buf: np.ndarray, value: Any, what: str) -> None:
    a = np.asarray(value)
    if a.shape != buf.shape[1:]:
        raise ValueError(f"{what}: expected shape {buf.shape[1:]}, got {a.shape}")
    np.copyto(buf[0], a, casting="unsafe" if buf.dtype == np.bool_ else "same_kind")


def export_cache_path(versions: dict[str, str], cache_dir: str | Path | None = None) -> Path:
    """Where :meth:`AgentSet.untrained` keeps the exported set with these version ids."""
    root = Path(cache_dir or os.environ.get("MARLOPS_CACHE", Path.home() / ".cache" / "marlops")) / "agents"
    key = {"versions": versions, "graph_revision": SERVING_GRAPH_REVISION}
    return root / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


class AgentSet:
    """The four agents (regime, structure, tactical, risk), their version ids and a serving backend."""

    def __init__(
        self,
        networks: dict[str, AgentNet],
        versions: dict[str, str],
        runners: dict[str, _Runner],
        backend: str,
    ) -> None:
        self.networks: dict[str, nn.Module] = dict(networks)
        self.versions: dict[str, str] = dict(versions)
        self.backend = backend
        self.senders: dict[str, tuple[str, ...]] = {
            name: tuple(net.spec.architecture.senders)
            for name, net in networks.items()
            if isinstance(net, StructureNet | TacticalNet)
        }
        self._r = runners["regime"]
        self._s = runners["structure"]
        self._t = runners["tactical"]
        self._re = runners["risk_encode"]
        self._rq = runners["risk_q"]
        self._se, self._sh = runners.get("structure_encode"), runners.get("structure_head")
        # structure's encoding needs no message: a caller may run it while regime runs (engine.py)
        self.split_structure = self._se is not None and self._sh is not None

    # ---------------------------------------------------------------------------------- construction

    @classmethod
    def from_networks(
        cls,
        networks: dict[str, AgentNet],
        backend: str = "onnx",
        threads: int | None = 1,
        onnx_files: dict[str, Path] | None = None,
        versions: dict[str, str] | None = None,
        split_files: dict[str, Path] | None = None,
    ) -> AgentSet:
        """Wrap networks. ``onnx`` exports them in memory unless ``onnx_files`` (entry -> file) are given;
        ``eager`` runs the modules themselves, so later weight updates are seen (``versions`` are not
        recomputed: call :meth:`refresh_versions`). Networks are put in eval mode. Structure runs split
        (:func:`~marlops.agents.export.split_entries`) with ``eager``, or with ``split_files`` given."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        missing = [a for a in AGENTS if a not in networks]
        if missing:
            raise ValueError(f"missing agents: {missing}")
        if backend == "eager" and threads is not None:
            torch.set_num_threads(threads)
        runners: dict[str, _Runner] = {}
        for name in AGENTS:
            net = networks[name].eval()
            for entry in serving_entries(net):
                if backend == "eager":
                    runners[entry.name] = _EagerRunner(entry)
                    continue

                if onnx_files:
                    session = ort_session(onnx_files[entry.name], threads or 1)
                else:  # exported in memory: check it as save_agent does
                    session = ort_session(export_onnx(entry), threads or 1)
                    check_parity(entry, session)
                runners[entry.name] = _OrtRunner(entry, session)
            for entry in split_entries(net):
                if backend == "eager":
                    runners[entry.name] = _EagerRunner(entry)
                elif split_files and entry.name in split_files:
                    runners[entry.name] = _OrtRunner(
                        entry, ort_session(split_files[entry.name], threads or 1)
                    )
        vers = versions or {name: net_version(networks[name]) for name in AGENTS}
        return cls(networks, vers, runners, backend)

    @classmethod
    def untrained(
        cls,
        seed: int = 0,
        backend: str = "onnx",
        threads: int | None = 1,
        cache_dir: str | Path | None = None,
    ) -> AgentSet:
        """Freshly initialised from the specs in models/ (bitwise reproducible for a seed).

        Exporting four ONNX graphs takes ~15 s here, so the onnx backend keeps exported sets in
        ``cache_dir`` (default ``$MARLOPS_CACHE`` or ~/.cache/marlops/agents), keyed by the version ids:
        a changed spec or initializer gives new ids and a fresh export, never a stale graph.
        """
        specs: dict[str, AgentSpec] = load_specs()
        nets = {name: build_network(spec, seed=seed) for name, spec in specs.items()}
        if backend != "onnx":
            return cls.from_networks(nets, backend, threads)
        versions = {name: net_version(nets[name]) for name in AGENTS}
        d = export_cache_path(versions, cache_dir)
        root, key = d.parent, d.name
        if (d / SET_FILE).exists():
            try:
                cached = cls.load(d, backend, threads)
                if cached.versions == versions:
                    return cached
            except (OSError, ValueError):  # a broken cache entry is rebuilt below
                pass
        tmp = root / f".{key}.{os.getpid()}"
        cls.from_networks(nets, "eager", None, versions=versions).save(tmp)  # exports and checks parity once
        with contextlib.suppress(OSError):  # another process may have won the race: both are identical
            tmp.rename(d)
        shutil.rmtree(tmp, ignore_errors=True)
        return cls.load(d, backend, threads)

    @classmethod
    def load(
        cls, directory: str | Path, backend: str = "onnx", threads: int | None = 1, precision: str = "fp32"
    ) -> AgentSet:
        """Load what :meth:`save` wrote (``directory/<agent>/``); ONNX graphs are used as saved.

        ``precision="int8"`` runs the INT8 graphs that the parity gate accepted for these agents
        (:mod:`marlops.agents.quantize`); without them it raises ``Int8Error``, never falls back."""
        from marlops.agents.quantize import check_precision, team_int8_files

        check_precision(precision, backend)
        d = Path(directory)
        loaded = {name: load_agent(d / name) for name in AGENTS}
        files = {entry: p for a in loaded.values() for entry, p in a.onnx_files.items()}
        split = {entry: p for a in loaded.values() for entry, p in a.split_files.items()}
        if precision == "int8":  # the split graphs are fp32: int8 runs structure whole
            files, split = team_int8_files(d, {name: a.version for name, a in loaded.items()}), {}
        return cls.from_networks(
            {name: a.net for name, a in loaded.items()},
            backend,
            threads,
            onnx_files=files if backend == "onnx" else None,
            versions={name: a.version for name, a in loaded.items()},
            split_files=split if backend == "onnx" else None,
        )

    def save(self, directory: str | Path) -> None:
        """One saved agent per subdirectory (see :func:`marlops.agents.export.save_agent`) + agents.json."""
        d = Path(directory)
        versions = {name: save_agent(self.networks[name], None, d / name) for name in AGENTS}  # type: ignore[arg-type]
        self.versions = versions
        (d / SET_FILE).write_text(json.dumps({"versions": versions}, indent=2) + "\n")

    def refresh_versions(self) -> dict[str, str]:
        """Recompute the version ids from the current weights (after training the eager modules)."""
        self.versions = {name: net_version(self.networks[name]) for name in AGENTS}  # type: ignore[arg-type]
        return self.versions

    # ------------------------------------------------------------------------------------- inference

    def regime(self, regime_m: np.ndarray) -> RegimeOutput:
        return RegimeOutput.from_outputs(_run(self._r, ("regime_m",), regime_m))

    def structure(self, structure_m: np.ndarray, msgs: np.ndarray, mask: np.ndarray) -> StructureOutput:
        return StructureOutput.from_outputs(
            _run(self._s, ("structure_m", "msgs", "mask"), structure_m, msgs, mask)
        )

    def structure_encode(self, structure_m: np.ndarray) -> np.ndarray:
        """Structure's own state (no message needed); :meth:`structure_head` finishes the call."""
        if self._se is None:
            raise RuntimeError("this AgentSet runs structure whole (no split graphs)")
        return _run(self._se, ("structure_m",), structure_m)["h"][0].copy()

    def structure_head(self, h: np.ndarray, msgs: np.ndarray, mask: np.ndarray) -> StructureOutput:
        """Exactly :meth:`structure` of the matrix that :meth:`structure_encode` encoded to ``h``."""
        if self._sh is None:
            raise RuntimeError("this AgentSet runs structure whole (no split graphs)")
        return StructureOutput.from_outputs(_run(self._sh, ("h", "msgs", "mask"), h, msgs, mask))

    def tactical(self, tactical_m: np.ndarray, msgs: np.ndarray, mask: np.ndarray) -> TacticalOutput:
        return TacticalOutput.from_outputs(
            _run(self._t, ("tactical_m", "msgs", "mask"), tactical_m, msgs, mask)
        )

    def risk_cache(self, tactical_m: np.ndarray, structure_m: np.ndarray, regime_m: np.ndarray) -> np.ndarray:
        """The matrix part of the risk encoder, (encoder_dim,): compute at bar closes, reuse every tick."""
        names = ("tactical_m", "structure_m", "regime_m")
        return _run(self._re, names, tactical_m, structure_m, regime_m)["cache"][0].copy()

    def risk(self, cache: np.ndarray, portfolio: np.ndarray, proposal: np.ndarray) -> RiskOutput:
        return RiskOutput.from_outputs(
            _run(self._rq, ("cache", "portfolio", "proposal"), cache, portfolio, proposal)
        )


def _run(runner: _Runner, names: tuple[str, ...], *values: Any) -> Outputs:
    """Copy each value into its input buffer (checked against its name's shape), run, outputs by name."""
    for buf, value, what in zip(runner.inputs, values, names, strict=True):
        _put(buf, value, what)
    return runner.run_named()


# ------------------------------------------------------------------------------------------- latency


def measure_latency(
    agents: AgentSet, n: int = 300, warmup: int = 30, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """p50 and p99 wall time in µs of each AgentSet call at batch 1 (record building included)."""
    rng = np.random.default_rng(seed)

    def f32(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    ms, mt = len(agents.senders["structure"]), len(agents.senders["tactical"])
    tm, sm, rm = f32(*TACTICAL.shape), f32(*STRUCTURE.shape), f32(*REGIME.shape)
    cache = agents.risk_cache(tm, sm, rm)
    s_msgs, t_msgs, port, prop = (
        f32(ms, MESSAGE_DIM),
        f32(mt, MESSAGE_DIM),
        f32(len(PORTFOLIO_FEATURES)),
        f32(PROPOSAL_DIM),
    )
    s_mask, t_mask = np.ones(ms, bool), np.array([True, False] * mt)[:mt]
    calls = {
        "regime": lambda: agents.regime(rm),
        "structure": lambda: agents.structure(sm, s_msgs, s_mask),
        "tactical": lambda: agents.tactical(tm, t_msgs, t_mask),
        "risk_cache": lambda: agents.risk_cache(tm, sm, rm),
        "risk": lambda: agents.risk(cache, port, prop),
    }
    out = {}
    for name, call in calls.items():
        for _ in range(warmup):
            call()
        times = np.empty(n)
        for i in range(n):
            t0 = time.perf_counter()
            call()
            times[i] = time.perf_counter() - t0
        p50, p99 = np.percentile(times * 1e6, [50, 99])
        out[name] = (float(p50), float(p99))
    return out


def main(argv: list[str]) -> None:
    """``[--team DIR] [onnx|eager|int8 ...]``: a p50/p99 column pair per backend. Without ``--team``:
    untrained agents; ``int8`` needs a team whose INT8 graphs passed the gate (marlops agents quantize)."""
    team = None
    if "--team" in argv:
        i = argv.index("--team")
        team, argv = argv[i + 1], argv[:i] + argv[i + 2 :]
    backends = argv or list(BACKENDS)

    def build(b: str) -> AgentSet:
        backend, precision = ("onnx", "int8") if b == "int8" else (b, "fp32")
        if team is not None:
            return AgentSet.load(team, backend, precision=precision)
        if precision == "int8":
            raise SystemExit("int8: pass --team DIR, a saved team whose INT8 graphs the gate accepted")
        return AgentSet.untrained(seed=0, backend=backend)

    rows = {b: measure_latency(build(b)) for b in backends}
    print("| call | " + " | ".join(f"{b} p50 µs | {b} p99 µs" for b in backends) + " |")
    print("|---|" + "---:|---:|" * len(backends))
    for call in rows[backends[0]]:
        cells = " | ".join(f"{rows[b][call][0]:.0f} | {rows[b][call][1]:.0f}" for b in backends)
        print(f"| {call} | {cells} |")


if __name__ == "__main__":
    main(sys.argv[1:])
