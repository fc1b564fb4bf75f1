"""Reading what ``marlops train --out DIR`` and ``marlops evaluate --out E`` wrote, without importing them.

The registry is a leaf over ``marlops.market`` (import-linter), so it knows these folders by their files:

``DIR/agents/<agent>/`` for each of :data:`AGENTS` (``meta.json``: agent, version id, serving format,
entries; ``*.onnx``; ``weights.pt``; ``spec.yaml``), ``DIR/agents/agents.json`` (``{"versions": …}``),
``DIR/summary.json`` (``config`` and figures), ``DIR/metrics.jsonl``, ``DIR/critic.pt``;
``E/report.json`` (``aggregate.<with_costs|without_costs>.<policy>.<metric>``, ``goals``, ``markets``)
and ``E/report.html``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marlops.team import AGENTS

SERVING_FORMAT = "onnx"


class RegistryError(Exception):
    """A problem the user can fix (a missing folder, an empty registry, an inconsistent team …)."""


@dataclass(frozen=True)
class AgentFolder:
    agent: str
    version: str  # the agent's version id from meta.json ("regime-1a2b3c4d5e6f")
    path: Path
    meta: dict[str, Any]

    @property
    def serving_format(self) -> str:
        return str(self.meta.get("serving_format", ""))


@dataclass(frozen=True)
class TrainingRun:
    """A ``marlops train`` output folder, checked for the four agents."""

    path: Path
    agents: dict[str, AgentFolder]
    summary: dict[str, Any]

    @property
    def versions(self) -> dict[str, str]:
        return {a: f.version for a, f in self.agents.items()}

    @property
    def team_id(self) -> str:
        """``team-<sha256 of the four version ids>[:12]``: the same four agents, the same team."""
        return team_id(self.versions)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.summary.get("config") or {})

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"


@dataclass(frozen=True)
class Evaluation:
    """An ``marlops evaluate`` output folder (its report.json parsed)."""

    path: Path
    report: dict[str, Any]
    aggregate: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)

    @property
    def markets(self) -> list[str]:
        return [str(m) for m in self.report.get("markets") or []]

    @property
    def goals(self) -> dict[str, str]:
        """Goal name → status ("pass" / "fail" / "skipped")."""
        return {
            k: str(v["status"])
            for k, v in (self.report.get("goals") or {}).items()
            if isinstance(v, Mapping) and "status" in v
        }

    def figures(self, policy: str = "team", costs: str = "with_costs") -> dict[str, float | None]:
        return dict(self.aggregate.get(costs, {}).get(policy, {}))


def team_id(versions: Mapping[str, str]) -> str:
    blob = json.dumps({a: versions[a] for a in sorted(versions)}, separators=(",", ":"))
    return "team-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"{path}: missing ({what})") from None
    except (OSError, ValueError) as e:
        raise RegistryError(f"{path}: unreadable {what}: {e}") from None


def read_agent(path: Path, agent: str) -> AgentFolder:
    meta = _read_json(path / "meta.json", f"the {agent} agent's meta.json")
    if meta.get("agent") != agent:
        raise RegistryError(f"{path}/meta.json: says agent {meta.get('agent')!r}, expected {agent!r}")
    version = meta.get("version")
    if not isinstance(version, str) or not version:
        raise RegistryError(f"{path}/meta.json: no version id")
    if meta.get("serving_format") != SERVING_FORMAT:
        raise RegistryError(
            f"{path}/meta.json: serving format {meta.get('serving_format')!r}, expected {SERVING_FORMAT!r}"
        )
    entries = meta.get("entries") or {}
    if not entries:
        raise RegistryError(f"{path}/meta.json: no serving entries")
    missing = [e.get("file", "?") for e in entries.values() if not (path / str(e.get("file", ""))).is_file()]
    if missing:
        raise RegistryError(f"{path}: serving graphs missing: {missing}")
    return AgentFolder(agent, version, path, meta)


def read_run(run_dir: str | Path) -> TrainingRun:
    """Parse and check a training run folder; :class:`RegistryError` names what is wrong."""
    d = Path(run_dir)
    if not d.is_dir():
        raise RegistryError(f"{d}: not a folder (expected a `marlops train --out` folder)")
    agents_dir = d / "agents"
    if not agents_dir.is_dir():
        raise RegistryError(f"{d}: no agents/ folder — not a finished `marlops train` run")
    agents = {a: read_agent(agents_dir / a, a) for a in AGENTS}
    listed = (_read_json(agents_dir / "agents.json", "the team's version list") or {}).get("versions", {})
    actual = {a: f.version for a, f in agents.items()}
    if listed != actual:
        raise RegistryError(f"{agents_dir}/agents.json lists {listed}, the agents' meta.json say {actual}")
    summary_file = d / "summary.json"
    summary = _read_json(summary_file, "the training summary") if summary_file.exists() else {}
    return TrainingRun(d, agents, summary)


def read_evaluation(eval_dir: str | Path) -> Evaluation:
    d = Path(eval_dir)
    if not d.is_dir():
        raise RegistryError(f"{d}: not a folder (expected a `marlops evaluate --out` folder)")
    report = _read_json(d / "report.json", "the evaluation report")
    agg = report.get("aggregate")
    if not isinstance(agg, Mapping) or not agg:
        raise RegistryError(f"{d}/report.json: no 'aggregate' section")
    return Evaluation(d, report, {str(k): dict(v) for k, v in agg.items()})


def flatten(obj: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested dicts to ``{"a.b.c": value}``; lists and tuples stay values."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key, sep))
        else:
            out[key] = v
    return out


def numeric(v: Any) -> float | None:
    """``v`` as a finite float, or None (bools and strings are not figures)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def metric_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a metrics.jsonl (a torn last line, from a killed worker, is skipped)."""
    if not path.exists():
        return
    with path.open() as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec
