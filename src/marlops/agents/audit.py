"""The audit log: one JSON line per decision (inputs hash, agent outputs, overrides, versions)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO, Any

import numpy as np

from marlops.agents.core import InstrumentState, Step


class AuditLog:
    """One JSON line per decision: inputs hash, agent outputs, overrides, versions, the decision."""

    def __init__(self, sink: str | Path | IO[str]) -> None:
        self._own = not hasattr(sink, "write")
        self._f: IO[str] = open(sink, "a", encoding="utf-8") if self._own else sink  # type: ignore[arg-type]

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, separators=(",", ":"), default=_json_default) + "\n")

    def close(self) -> None:
        if self._own:
            self._f.close()


def _json_default(o: object) -> object:
    if isinstance(o, np.ndarray):
        return [round(float(x), 7) for x in o.ravel()]
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


def _out_dict(o: object | None) -> dict | None:
    if o is None:
        return None
    return {k: getattr(o, k) for k in o.__slots__ if k != "message"}  # type: ignore[attr-defined]


def audit_record(st: InstrumentState, step: Step) -> dict[str, Any]:
    """A decision's audit line: the hash of what the agents read, what they said, the decision."""
    d = step.decision
    h = hashlib.sha256()
    for m in (
        st.tactical_m,
        st.slow_mats.get("structure"),
        st.slow_mats.get("regime"),
        step.portfolio,
        step.proposal,
    ):
        if m is not None:
            h.update(np.ascontiguousarray(m).tobytes())
    h.update(np.float64(d.price).tobytes())
    reg = st.hub.memory.get("regime")
    return {
        "inputs_sha256": h.hexdigest(),
        "agents": {
            "regime": _out_dict(reg.payload) if reg else None,
            "structure": _out_dict(step.structure),
            "tactical": _out_dict(step.tactical),
            "risk": _out_dict(step.risk),
        },
        "decision": {k: v for k, v in d.to_dict().items() if k != "latency_us"},
    }
