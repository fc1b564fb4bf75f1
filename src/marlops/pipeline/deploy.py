"""The deploy step: the champion team's model versions written into the serving manifests.

In a cluster the pipeline's deploy task renders the objects of ``manifests/serving/services`` with each
agent's ``--model-uri`` pinned to the champion's registry version (``models:/marlops-regime/7``, not the
alias: a new champion changes the spec, so KServe rolls the predictor) and hands the YAML over as an
artifact (applied by ``kubectl apply -f`` or the pipeline runner's service account). Locally it also
writes ``champion.json`` beside the local servers' state, which ``marlops serve`` reads at start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from marlops.team import AGENTS

MANIFESTS_ENV = "MARLOPS_MANIFESTS_DIR"
MODEL_URI_FLAG = "--model-uri"


def manifests_dir() -> Path:
    """``$MARLOPS_MANIFESTS_DIR`` or the repository's ``manifests/serving/services`` beside ``src/`` (the
    InferenceServices of the transformer mode; the graph mode adds an InferenceGraph over the same)."""
    env = os.environ.get(MANIFESTS_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "manifests" / "serving" / "services"


def _containers(obj: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    spec = obj.get("spec") or {}
    for part in ("predictor", "transformer"):
        yield from (spec.get(part) or {}).get("containers") or []


def _agent_of(args: list[str]) -> str | None:
    """The agent a container serves: ``marlops serve agent NAME …`` (by command or args)."""
    for i, a in enumerate(args[:-1]):
        if a == "agent" and args[i + 1] in AGENTS:
            return args[i + 1]
    return None


def pin_model_uris(
    objects: list[dict[str, Any]], uris: Mapping[str, str]
) -> tuple[list[dict[str, Any]], set[str]]:
    """Copies of ``objects`` with every agent container's ``--model-uri`` set from ``uris``; returns the
    agents found. A container without the flag gets it appended."""
    import copy

    out, found = [], set()
    for obj in objects:
        obj = copy.deepcopy(obj)
        for c in _containers(obj):
            args = [str(a) for a in (c.get("command") or [])] + [str(a) for a in (c.get("args") or [])]
            agent = _agent_of(args)
            if agent is None or agent not in uris:
                continue
            found.add(agent)
            key = "command" if MODEL_URI_FLAG in (c.get("command") or []) else "args"
            lst = list(c.get(key) or [])
            if MODEL_URI_FLAG in lst:
                i = lst.index(MODEL_URI_FLAG)
                lst[i + 1 : i + 2] = [uris[agent]]
            else:
                lst += [MODEL_URI_FLAG, uris[agent]]
            c[key] = lst
        out.append(obj)
    return out, found


def load_manifests(directory: str | Path | None = None) -> list[dict[str, Any]]:
    d = Path(directory) if directory else manifests_dir()
    if not d.is_dir():
        raise FileNotFoundError(f"manifests: {d} does not exist (set ${MANIFESTS_ENV})")
    docs: list[dict[str, Any]] = []
    for p in sorted(d.glob("*.yaml")):
        if p.name == "kustomization.yaml":
            continue
        docs += [x for x in yaml.safe_load_all(p.read_text()) if isinstance(x, dict) and x.get("kind")]
    return docs


@dataclass
class Deployment:
    team: str | None
    uris: dict[str, str]
    manifest: Path
    objects: int
    state: Path | None


def champion_uris(tracking_uri: str = "") -> tuple[str | None, dict[str, str]]:
    """The champion's pinned model URIs by agent (empty when there is no champion)."""
    from marlops.registry import CHAMPION, list_models, model_name, resolve_tracking

    listing = list_models(resolve_tracking(tracking_uri or None))
    uris: dict[str, str] = {}
    team = None
    for row in listing.rows:
        if CHAMPION in row.aliases:
            uris[row.agent] = f"models:/{model_name(row.agent)}/{row.version}"
            team = row.team
    return team, uris


def deploy(
    out: str | Path,
    tracking_uri: str = "",
    namespace: str = "marlops",
    manifests: str | Path | None = None,
    state_dir: str | Path | None = None,
) -> Deployment:
    """Render the serving manifests for the champion into ``out`` (one multi-document YAML); with
    ``state_dir`` also write ``champion.json`` there (the local servers' model URIs).

    No champion at all (the gate refused the first team, e.g. one that never trades): nothing to serve, an
    empty manifest and no ``champion.json`` — the run succeeds, its register step says why. Some agents
    with a champion and others without is a broken registry: an error."""
    team, uris = champion_uris(tracking_uri)
    if not uris:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("# no champion yet: nothing deployed (see the register step's message)\n")
        print("deploy: no champion yet, nothing deployed (the promotion gate has not promoted a team)")
        return Deployment(None, {}, out, 0, None)
    if set(uris) != set(AGENTS):
        missing = sorted(set(AGENTS) - set(uris))
        raise RuntimeError(f"deploy: no champion for {missing}; register and promote a team first")
    objects, found = pin_model_uris(load_manifests(manifests), uris)
    if found != set(AGENTS):
        missing = sorted(set(AGENTS) - found)
        raise RuntimeError(f"deploy: the serving manifests hold no predictor for {missing}")
    for obj in objects:
        obj.setdefault("metadata", {})["namespace"] = namespace
        ann = obj["metadata"].setdefault("annotations", {})
        if team:
            ann["marlops.io/team"] = team
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    state = None
    if state_dir is not None:
        state = Path(state_dir) / "champion.json"
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"team": team, "model_uris": uris}, indent=2))
        tmp.replace(state)
    return Deployment(team, uris, out, len(objects), state)
