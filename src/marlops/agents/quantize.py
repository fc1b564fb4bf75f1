"""INT8 serving graphs (ONNX Runtime dynamic quantization) behind a parity gate.

A saved team (``AgentSet.save``: ``<team>/<agent>/*.onnx``) gets INT8 copies of its fp32 serving graphs
only through :func:`check_int8`, which quantizes them, replays held-out days through the decision engine
with the fp32 and the INT8 sets and accepts the INT8 graphs only if

- the decisions agree on at least ``min_share`` (0.99) of the bar closes scored (base and higher closes
  after the warm-up), and
- the regime agent's balanced accuracy against the market's true regimes drops by at most
  ``max_bacc_drop`` (0.01).

"Same decision" at a close: the same tactical action, the same direction (sign of the target position),
the same risk action and target positions within 1 % of each other (relative; a target is a continuous
function of structure's size head, so exact equality would measure float noise, not decisions). Each set
replays on its own paper portfolio, so a diverging fill counts against every later close it changes.
Agent latency budgets are off in the gate's replays: parity is about numbers, not about a late call on a
busy machine failing one replay closed.

Files (written beside the fp32 graphs). Always: ``<team>/int8_gate.json``, the report with
``accepted`` true or false. Only when accepted: ``<team>/<agent>/<entry>.int8.onnx`` and
``<team>/<agent>/int8.json`` (the agent's fp32 version id, its INT8 files and the gate's figures), what
``AgentSet.load(team, precision="int8")`` and an agent server's ``--precision int8`` require. A rejected
gate removes any earlier INT8 files, so nothing stale can be loaded; a retrained agent has a new version
id, which the INT8 record no longer matches.

Quantization: each graph is first constant-folded by ONNX Runtime (basic level, saved offline): the
torch.export graphs compute the LSTM's weights with Slice/Concat nodes, which hides them from the
quantizer; folded, the LSTM becomes ``DynamicQuantizeLSTM``. Then ``quantize_dynamic``: signed INT8
weights with per-output-channel scales (per tensor failed the gate on a trained team), on MatMul, Gemm
and LSTM (:data:`OP_TYPES`; Conv was slower quantized, see docs/agents.md).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marlops.agents.engine import EngineConfig, TradeDecision
from marlops.agents.export import load_agent
from marlops.agents.replay import replay_ticks
from marlops.agents.types import RegimeOutput
from marlops.precision import INT8_RECORD, PRECISIONS, Int8Error, int8_files
from marlops.team import AGENTS

__all__ = ["PRECISIONS", "Int8Error", "Int8Report", "check_int8", "int8_files", "quantize_team"]

OP_TYPES: tuple[str, ...] = ("MatMul", "Gemm", "LSTM")
PER_CHANNEL = True  # per output channel weight scales: per tensor failed the gate on a trained team
GATE_FILE = "int8_gate.json"  # team level: the gate's report, accepted or not
AGENT_FILE = INT8_RECORD  # agent level, only when accepted: version, files, figures
INT8_SUFFIX = ".int8.onnx"
HELD_OUT_SEED = 101  # the first of the evaluation's held-out seeds (evaluation/held_out.py)
WARMUP_DAYS = 3.0  # replayed before the scored days: the regime matrix alone needs 96 × 30 min
MIN_SHARE = 0.99
MAX_BACC_DROP = 0.01
TARGET_RTOL = 0.01


# ------------------------------------------------------------------------------------- quantization


def quantize_graph(
    src: str | Path, dst: str | Path, op_types: Sequence[str] = OP_TYPES, per_channel: bool = PER_CHANNEL
) -> Path:
    """fp32 ONNX graph → dynamic-INT8 graph at ``dst`` (constant-folded first, see the module doc)."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    with tempfile.TemporaryDirectory() as tmp:
        folded = Path(tmp) / "folded.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(folded)
        so.log_severity_level = 3
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        _quiet_quantizer()
        quantize_dynamic(
            folded,
            dst,
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
        )
    return dst


def _quiet_quantizer() -> None:
    # quantize_dynamic logs a "consider pre-processing" warning through the root logger on every call
    import logging

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))


def quantize_team(
    team: str | Path, out: str | Path, op_types: Sequence[str] = OP_TYPES, per_channel: bool = PER_CHANNEL
) -> dict[str, Path]:
    """Every serving graph of the saved team in ``team`` quantized into ``out/<agent>/<entry>.int8.onnx``;
    returns entry → file."""
    files: dict[str, Path] = {}
    for agent in AGENTS:
        loaded = load_agent(Path(team) / agent)
        (Path(out) / agent).mkdir(parents=True, exist_ok=True)
        for entry, src in loaded.onnx_files.items():
            files[entry] = quantize_graph(
                src, Path(out) / agent / f"{entry}{INT8_SUFFIX}", op_types, per_channel
            )
    return files


# ------------------------------------------------------------------------------------------- the gate


@dataclass
class Int8Report:
    accepted: bool
    close_share: float  # decisions identical at scored bar closes (base and higher)
    closes: int
    tick_share: float  # the same at tick decisions (reported, not gated)
    ticks: int
    regime_bacc_fp32: float
    regime_bacc_int8: float
    regime_bacc_drop: float
    regime_agreement: float  # share of scored higher closes with the same regime argmax
    regime_samples: int
    close_actions: dict[str, int]  # the fp32 replay's actions at the scored closes (what was compared)
    close_trades: int  # scored closes where the fp32 replay traded
    min_share: float
    max_bacc_drop: float
    seed: int
    days: float
    warmup_days: float
    op_types: list[str]
    per_channel: bool
    target_rtol: float
    versions: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)  # entry -> path relative to the team, if accepted
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Recorder:
    """An AgentRuntime that passes every call through and keeps the regime outputs, in call order."""

    def __init__(self, agents: Any) -> None:
        self._a = agents
        self.versions = agents.versions
        self.regime_probs: list[np.ndarray | None] = []
        self.structure, self.tactical = agents.structure, agents.tactical
        self.risk_cache, self.risk = agents.risk_cache, agents.risk

    def regime(self, regime_m: np.ndarray) -> RegimeOutput:
        self.regime_probs.append(None)
        out = self._a.regime(regime_m)
        self.regime_probs[-1] = out.probs
        return out


def same_decision(a: TradeDecision, b: TradeDecision, rtol: float = TARGET_RTOL) -> bool:
    """Action, direction, risk action equal; target positions within ``rtol`` of the larger one."""
    if (a.action, a.direction, a.risk_action) != (b.action, b.direction, b.risk_action):
        return False
    ta, tb = a.target_position, b.target_position
    return abs(ta - tb) <= rtol * max(abs(ta), abs(tb)) + 1e-9


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (as training.regime.balanced_accuracy)."""
    recalls = [float(np.mean(y_pred[y_true == c] == c)) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else float("nan")


def _replay(ticks: Any, agents: Any, cfg: EngineConfig) -> tuple[list[TradeDecision], np.ndarray, np.ndarray]:
    """Decisions, and the regime argmax and timestamp at every higher close (-1 where the call failed)."""
    rec = _Recorder(agents)
    decisions = replay_ticks(ticks, rec, engine_config=cfg).decisions  # type: ignore[arg-type]
    slow = [d.ts for d in decisions if d.timeframe not in ("tick", _label(cfg.base_timeframe_ns))]
    if len(slow) != len(rec.regime_probs):
        raise RuntimeError(f"replay: {len(rec.regime_probs)} regime calls but {len(slow)} higher closes")
    pred = np.array([-1 if p is None else int(np.argmax(p)) for p in rec.regime_probs], dtype=np.int64)
    return decisions, pred, np.array(slow, dtype=np.int64)


def _label(ns: int) -> str:
    from marlops.agents.engine import timeframe_label

    return timeframe_label(ns)


def gate(
    fp32: Any,
    int8: Any,
    days: float = 5.0,
    seed: int = HELD_OUT_SEED,
    min_share: float = MIN_SHARE,
    max_bacc_drop: float = MAX_BACC_DROP,
    warmup_days: float = WARMUP_DAYS,
    target_rtol: float = TARGET_RTOL,
) -> Int8Report:
    """Replay ``warmup_days + days`` of the synthetic market ``seed`` through two AgentRuntimes and score
    the last ``days`` (see the module doc); ``files`` and ``op_types`` are left for the caller."""
    import time

    from marlops.market.synthetic import generate_market

    t0 = time.perf_counter()
    market = generate_market(days=warmup_days + days, seed=seed)
    ticks = market.ticks
    cfg = EngineConfig(agent_budget_us={})  # no latency budgets: parity of numbers, not of timing
    d32, p32, ts32 = _replay(ticks, fp32, cfg)
    d8, p8, ts8 = _replay(ticks, int8, cfg)
    if len(d32) != len(d8) or not np.array_equal(ts32, ts8):
        raise RuntimeError("replay: the two sets saw different events")
    start = market.start_ns + int(warmup_days * 86_400e9)
    scored = [(a, b) for a, b in zip(d32, d8, strict=True) if a.ts > start]
    closes = [same_decision(a, b, target_rtol) for a, b in scored if a.timeframe != "tick"]
    ticks_same = [same_decision(a, b, target_rtol) for a, b in scored if a.timeframe == "tick"]
    keep = ts32 > start
    labels = market.regime_at(ts32[keep] - 1)  # the last 5-minute bucket of the bar that closed
    b32 = balanced_accuracy(labels, p32[keep])
    b8 = balanced_accuracy(labels, p8[keep])
    share = float(np.mean(closes)) if closes else float("nan")
    drop = b32 - b8
    return Int8Report(
        accepted=bool(closes) and share >= min_share and math.isfinite(drop) and drop <= max_bacc_drop,
        close_share=share,
        closes=len(closes),
        tick_share=float(np.mean(ticks_same)) if ticks_same else float("nan"),
        ticks=len(ticks_same),
        regime_bacc_fp32=b32,
        regime_bacc_int8=b8,
        regime_bacc_drop=drop,
        regime_agreement=float(np.mean(p32[keep] == p8[keep])) if keep.any() else float("nan"),
        regime_samples=int(keep.sum()),
        close_actions=dict(Counter(a.action for a, _ in scored if a.timeframe != "tick").most_common()),
        close_trades=sum(1 for a, _ in scored if a.timeframe != "tick" and a.quantity != 0.0),
        min_share=min_share,
        max_bacc_drop=max_bacc_drop,
        seed=seed,
        days=days,
        warmup_days=warmup_days,
        op_types=[],
        per_channel=False,
        target_rtol=target_rtol,
        versions=dict(fp32.versions),
        seconds=time.perf_counter() - t0,
    )


def check_int8(
    team: str | Path,
    days: float = 5.0,
    seed: int = HELD_OUT_SEED,
    min_share: float = MIN_SHARE,
    max_bacc_drop: float = MAX_BACC_DROP,
    op_types: Sequence[str] = OP_TYPES,
    per_channel: bool = PER_CHANNEL,
    graphs: dict[str, Path] | None = None,
) -> Int8Report:
    """Quantize the saved team in ``team``, gate it and write the files (module doc). ``graphs``: gate these
    INT8 files (entry → file) instead of quantizing, e.g. graphs quantized another way."""
    from marlops.agents.runtime import AgentSet

    d = Path(team)
    clear_int8(d)
    fp32 = AgentSet.load(d)
    loaded = {a: load_agent(d / a) for a in AGENTS}
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        files = dict(graphs) if graphs else quantize_team(d, tmp, op_types, per_channel)
        int8 = AgentSet.from_networks(
            {a: la.net for a, la in loaded.items()}, "onnx", onnx_files=files, versions=fp32.versions
        )
        report = gate(fp32, int8, days, seed, min_share, max_bacc_drop)
        report.op_types = list(op_types) if not graphs else ["(given)"]
        report.per_channel = per_channel and not graphs
        if report.accepted:
            for agent, la in loaded.items():
                entries = {}
                for entry in la.onnx_files:
                    name = f"{entry}{INT8_SUFFIX}"
                    shutil.copyfile(files[entry], d / agent / name)
                    entries[entry] = name
                    report.files[entry] = f"{agent}/{name}"
                record = {
                    "accepted": True,
                    "agent": agent,
                    "version": la.version,
                    "team_versions": fp32.versions,
                    "entries": entries,
                    "gate": f"../{GATE_FILE}",
                    "close_share": report.close_share,
                    "regime_bacc_drop": report.regime_bacc_drop,
                }
                (d / agent / AGENT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    (d / GATE_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def clear_int8(team: str | Path) -> None:
    """Remove a team's INT8 graphs, records and gate report."""
    d = Path(team)
    (d / GATE_FILE).unlink(missing_ok=True)
    for agent in AGENTS:
        (d / agent / AGENT_FILE).unlink(missing_ok=True)
        for p in (d / agent).glob(f"*{INT8_SUFFIX}"):
            p.unlink()


# ------------------------------------------------------------------------------------------- loading


def check_precision(precision: str, backend: str = "onnx") -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and backend != "onnx":
        raise ValueError(f"precision='int8' needs backend='onnx' (INT8 graphs are ONNX), got {backend!r}")


def team_int8_files(team: str | Path, versions: dict[str, str]) -> dict[str, Path]:
    """The accepted INT8 graphs of a saved team, entry → file (:func:`int8_files` for every agent,
    gated together: every agent's record must name this team's versions)."""
    d = Path(team)
    files: dict[str, Path] = {}
    for agent in AGENTS:
        files.update(int8_files(d / agent, versions[agent]))
        rec = json.loads((d / agent / AGENT_FILE).read_text())
        if rec.get("team_versions") != versions:
            raise Int8Error(
                f"precision=int8: {d / agent / AGENT_FILE} was gated with another team "
                f"({rec.get('team_versions')}); run `marlops agents quantize {d}` again"
            )
    return files
