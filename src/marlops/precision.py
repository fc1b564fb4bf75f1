"""Which graphs of a saved agent run: fp32 (as exported) or the INT8 ones the parity gate accepted.

Plain data and the standard library only, at the package root: the agents (the gate, ``AgentSet``) and
the registry's model flavor both read an agent folder's ``int8.json``, and neither may import the other.
"""

from __future__ import annotations

import json
from pathlib import Path

PRECISIONS: tuple[str, ...] = ("fp32", "int8")
PRECISION_ENV = "MARLOPS_AGENT_PRECISION"  # the agent servers' default for --precision
INT8_RECORD = "int8.json"  # in an agent folder, only once the gate accepted its INT8 graphs


class Int8Error(ValueError):
    """INT8 graphs were asked for but the agent has none accepted by the parity gate."""


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")


def int8_files(directory: str | Path, version: str) -> dict[str, Path]:
    """The accepted INT8 graphs (entry → file) of one agent folder; :class:`Int8Error` if there are none
    or they were gated for another version of the agent."""
    d = Path(directory)
    rec_path = d / INT8_RECORD
    how = "run `marlops agents quantize TEAM` (the INT8 parity gate) on its team first, or use fp32"
    if not rec_path.is_file():
        raise Int8Error(f"precision=int8: {d} has no INT8 graphs accepted by the parity gate ({how})")
    rec = json.loads(rec_path.read_text())
    if not rec.get("accepted"):
        raise Int8Error(f"precision=int8: {rec_path} does not record an accepted gate ({how})")
    if rec.get("version") != version:
        raise Int8Error(
            f"precision=int8: {rec_path} was gated for {rec.get('version')}, the agent is {version} ({how})"
        )
    files = {entry: d / name for entry, name in rec["entries"].items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise Int8Error(f"precision=int8: INT8 graphs missing: {missing} ({how})")
    return files
