"""Aliases ``champion`` / ``challenger`` over the four ``marlops-<agent>`` models, moved as one team.

- :func:`promote` compares the challenger team's evaluation figures with the champion team's (both read
  from their MLflow runs: ``eval.<costs>.<policy>.<metric>`` metrics, and the daily returns of the
  ``evaluation/report.json`` artifact, which make the Sharpe rule a paired bootstrap on the same
  held-out days) through :func:`~.gate.evaluate_gate`; on
  a pass, ``champion`` moves to the challenger on all four models, the previous champion's version is
  appended to each model's ``champion_history`` tag and ``challenger`` is removed. On a refusal nothing
  moves (the challenger keeps its alias, so a later promote with other thresholds can still take it).
- :func:`rollback` pops ``champion_history``: ``champion`` goes back to the previous version, and the
  demoted versions are tagged ``rolled_back=true`` (registering that team again does not make it the
  challenger again).
- :func:`list_models` lists every version of every agent with its aliases, team and key figures.

MLflow has no transaction over several models: aliases are moved agent by agent, after every check has
passed. A crash in between leaves a mixed team, which :func:`list_models` reports (``consistent``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marlops.registry.config import TrackingConfig, activate, resolve_tracking
from marlops.registry.folders import RegistryError
from marlops.registry.gate import (
    DailyReturns,
    GateConfig,
    GateDecision,
    daily_returns_from_report,
    evaluate_gate,
)
from marlops.registry.models import CHALLENGER, CHAMPION, ROLLED_BACK_TAG, model_name, model_uri
from marlops.registry.onnx_model import DATA_SUBPATH
from marlops.registry.tracking import EVAL_PREFIX
from marlops.team import AGENTS

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

HISTORY_TAG = "champion_history"
HISTORY_LIMIT = 50
KEY_METRICS = ("sharpe", "max_drawdown", "total_return", "regime_balanced_accuracy")


# ------------------------------------------------------------------------------------------ reading


def _registered(client: MlflowClient) -> dict[str, Any]:
    """Registered model per agent (missing agents left out)."""
    from mlflow.exceptions import MlflowException

    out = {}
    for agent in AGENTS:
        try:
            out[agent] = client.get_registered_model(model_name(agent))
        except MlflowException:
            continue
    return out


def _alias_versions(client: MlflowClient, alias: str) -> dict[str, ModelVersion]:
    from mlflow.exceptions import MlflowException

    out = {}
    for agent in AGENTS:
        try:
            out[agent] = client.get_model_version_by_alias(model_name(agent), alias)
        except MlflowException:
            continue
    return out


def _team_of(versions: dict[str, ModelVersion], alias: str) -> str | None:
    """The one team behind ``versions`` (all four agents), None when there are none; else an error."""
    if not versions:
        return None
    if set(versions) != set(AGENTS):
        missing = sorted(set(AGENTS) - set(versions))
        raise RegistryError(f"alias {alias!r} is set on {sorted(versions)} but not on {missing}: mixed team")
    teams = {v.tags.get("team") for v in versions.values()}
    if len(teams) != 1 or None in teams:
        detail = ", ".join(f"{a}={v.version} ({v.tags.get('team')})" for a, v in versions.items())
        raise RegistryError(f"alias {alias!r} points at versions of different teams: {detail}")
    return teams.pop()


REPORT_ARTIFACT = "evaluation/report.json"  # where tracking.py logs the evaluation's report.json


@dataclass(frozen=True)
class RunFigures:
    figures: dict[str, float | None]
    goals: dict[str, str]
    markets: list[str] | None
    daily: DailyReturns | None = None  # the compared policy's daily returns (None: not read or not there)


def _report(client: MlflowClient, run_id: str) -> dict[str, Any] | None:
    """The run's logged report.json, or None (not logged, unreadable: the gate then compares means)."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="marlops-report-") as tmp:
        try:
            path = client.download_artifacts(run_id, REPORT_ARTIFACT, tmp)
            doc = json.loads(Path(path).read_text())
        except (MlflowException, OSError, ValueError):
            return None
    return doc if isinstance(doc, dict) else None


def run_figures(client: MlflowClient, run_id: str, gate: GateConfig, daily: bool = False) -> RunFigures:
    """The gate's inputs from a run: ``eval.<costs>.<policy>.*`` metrics, goal and market tags, and with
    ``daily`` the policy's daily returns from the logged report.json (a download: only for the gate)."""
    run = client.get_run(run_id)
    prefix = f"{EVAL_PREFIX}.{gate.costs}.{gate.policy}."
    figures: dict[str, float | None] = {
        k.removeprefix(prefix): v for k, v in run.data.metrics.items() if k.startswith(prefix)
    }
    goals = {
        k.removeprefix("marlops.eval.goal."): v
        for k, v in run.data.tags.items()
        if k.startswith("marlops.eval.goal.")
    }
    markets_tag = run.data.tags.get("marlops.eval.markets")
    markets = json.loads(markets_tag) if markets_tag else None
    returns = None
    if daily and figures:
        report = _report(client, run_id)
        returns = daily_returns_from_report(report, gate.policy, gate.costs) if report else None
    return RunFigures(figures, goals, markets, returns)


def _team_run(versions: dict[str, ModelVersion]) -> str:
    runs = {v.run_id for v in versions.values()}
    if len(runs) != 1 or None in runs:
        raise RegistryError(f"the team's versions come from several runs: {sorted(map(str, runs))}")
    return str(runs.pop())


# ------------------------------------------------------------------------------------------ promote


@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    message: str
    challenger_team: str | None = None
    champion_team: str | None = None  # before the promotion
    decision: GateDecision | None = None
    versions: dict[str, str] = field(default_factory=dict)  # agent -> version now champion


def _history(client: MlflowClient, agent: str) -> list[str]:
    raw = client.get_registered_model(model_name(agent)).tags.get(HISTORY_TAG)
    return [str(v) for v in json.loads(raw)] if raw else []


def _set_history(client: MlflowClient, agent: str, history: list[str]) -> None:
    client.set_registered_model_tag(model_name(agent), HISTORY_TAG, json.dumps(history[-HISTORY_LIMIT:]))


def promote(
    gate: GateConfig | None = None, config: TrackingConfig | None = None, force: bool = False
) -> PromotionResult:
    """Move ``champion`` to the challenger team if the gate passes (``force``: skip the gate)."""
    gate = gate or GateConfig()
    client = activate(config or resolve_tracking())
    if not _registered(client):
        raise RegistryError("the registry holds no marlops models: run `marlops registry register RUN_DIR`")
    challenger = _alias_versions(client, CHALLENGER)
    champion = _alias_versions(client, CHAMPION)
    ch_team, cp_team = _team_of(challenger, CHALLENGER), _team_of(champion, CHAMPION)
    if ch_team is None:
        return PromotionResult(
            False,
            "nothing to promote: no challenger" + (f" (champion is {cp_team})" if cp_team else ""),
            None,
            cp_team,
            versions={a: str(v.version) for a, v in champion.items()},
        )
    if ch_team == cp_team:
        for agent in AGENTS:
            client.delete_registered_model_alias(model_name(agent), CHALLENGER)
        return PromotionResult(
            False,
            f"nothing to promote: {ch_team} is already the champion",
            ch_team,
            cp_team,
            versions={a: str(v.version) for a, v in champion.items()},
        )
    ch = run_figures(client, _team_run(challenger), gate, daily=bool(champion))
    cp = run_figures(client, _team_run(champion), gate, daily=True) if champion else None
    decision = evaluate_gate(
        ch.figures,
        cp.figures if cp else None,
        gate,
        challenger_goals=ch.goals,
        challenger_markets=ch.markets,
        champion_markets=cp.markets if cp else None,
        challenger_daily=ch.daily,
        champion_daily=cp.daily if cp else None,
    )
    verdict = json.dumps({**decision.as_dict(), "forced": force, "against": cp_team})[:5000]
    for v in challenger.values():
        client.set_model_version_tag(v.name, v.version, "gate", verdict)
    if not (decision.promote or force):
        return PromotionResult(
            False,
            f"{ch_team} not promoted: {decision.summary()}",
            ch_team,
            cp_team,
            decision,
            {a: str(v.version) for a, v in champion.items()},
        )
    for agent in AGENTS:  # every check is done: move the aliases
        name = model_name(agent)
        if agent in champion:
            _set_history(client, agent, [*_history(client, agent), str(champion[agent].version)])
        client.set_registered_model_alias(name, CHAMPION, challenger[agent].version)
        client.delete_registered_model_alias(name, CHALLENGER)
    how = "forced past the gate" if force and not decision.promote else decision.summary()
    return PromotionResult(
        True,
        f"{ch_team} promoted to champion ({how})" + (f", replacing {cp_team}" if cp_team else ""),
        ch_team,
        cp_team,
        decision,
        {a: str(v.version) for a, v in challenger.items()},
    )


# ------------------------------------------------------------------------------------------ rollback


@dataclass(frozen=True)
class RollbackResult:
    message: str
    restored: dict[str, str]  # agent -> version now champion
    demoted: dict[str, str]  # agent -> version that was champion


def rollback(agents: Sequence[str] | None = None, config: TrackingConfig | None = None) -> RollbackResult:
    """Give ``champion`` back to the previous champion of ``agents`` (default: the whole team).

    Rolling back single agents mixes teams; it is there for emergencies (the default moves all four).
    """
    targets = list(agents) if agents else list(AGENTS)
    for a in targets:
        model_name(a)  # validates the name
    client = activate(config or resolve_tracking())
    if not _registered(client):
        raise RegistryError("the registry holds no marlops models: nothing to roll back")
    champion = _alias_versions(client, CHAMPION)
    plans: dict[str, tuple[list[str], str]] = {}
    for agent in targets:
        if agent not in champion:
            raise RegistryError(f"{model_name(agent)} has no champion: nothing to roll back")
        history = _history(client, agent)
        if not history:
            raise RegistryError(f"{model_name(agent)}: no previous champion to roll back to")
        plans[agent] = (history, str(champion[agent].version))
    restored, demoted = {}, {}
    for agent, (history, current) in plans.items():
        name = model_name(agent)
        previous = history.pop()
        client.set_model_version_tag(name, current, ROLLED_BACK_TAG, "true")
        client.set_registered_model_alias(name, CHAMPION, previous)
        _set_history(client, agent, history)
        restored[agent], demoted[agent] = previous, current
    detail = ", ".join(f"{a} {demoted[a]} → {restored[a]}" for a in restored)
    return RollbackResult(f"rolled back: {detail}", restored, demoted)


# ------------------------------------------------------------------------------------------ list


@dataclass(frozen=True)
class VersionRow:
    agent: str
    version: str
    aliases: tuple[str, ...]
    team: str | None
    agent_version: str | None
    run_id: str | None
    created: int  # ms since the epoch
    figures: dict[str, float | None]
    rolled_back: bool


@dataclass(frozen=True)
class RegistryListing:
    rows: list[VersionRow]
    champion_team: str | None
    challenger_team: str | None
    consistent: bool
    problems: list[str]
    tracking_uri: str


def list_models(config: TrackingConfig | None = None, gate: GateConfig | None = None) -> RegistryListing:
    """Every version of every agent (newest first per agent), its aliases and key figures."""
    gate = gate or GateConfig()
    cfg = config or resolve_tracking()
    client = activate(cfg)
    cache: dict[str, dict[str, float | None]] = {}

    def figures(run_id: str | None) -> dict[str, float | None]:
        if not run_id:
            return {}
        if run_id not in cache:
            try:
                f = run_figures(client, run_id, gate).figures
            except Exception:  # a deleted run: the version is still listed
                f = {}
            cache[run_id] = {k: f.get(k) for k in KEY_METRICS}
        return cache[run_id]

    rows: list[VersionRow] = []
    registered = _registered(client)
    for agent in AGENTS:
        if agent not in registered:
            continue
        aliases: dict[str, list[str]] = {}  # search results carry no aliases: the model's map has them
        for alias, version in registered[agent].aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        versions = client.search_model_versions(f"name = '{model_name(agent)}'")
        for v in sorted(versions, key=lambda v: -int(v.version)):
            rows.append(
                VersionRow(
                    agent,
                    str(v.version),
                    tuple(sorted(aliases.get(str(v.version), []))),
                    v.tags.get("team"),
                    v.tags.get("agent_version"),
                    v.run_id,
                    int(v.creation_timestamp or 0),
                    figures(v.run_id),
                    v.tags.get(ROLLED_BACK_TAG) == "true",
                )
            )
    problems, teams = [], {}
    for alias in (CHAMPION, CHALLENGER):
        try:
            teams[alias] = _team_of(_alias_versions(client, alias), alias)
        except RegistryError as e:
            problems.append(str(e))
            teams[alias] = None
    return RegistryListing(rows, teams[CHAMPION], teams[CHALLENGER], not problems, problems, cfg.tracking_uri)


# ------------------------------------------------------------------------------------------ serving


def _download(uri: str, target: Path) -> Path:
    import mlflow
    from mlflow.exceptions import MlflowException

    target.mkdir(parents=True, exist_ok=True)
    try:
        root = mlflow.artifacts.download_artifacts(uri, dst_path=str(target))
    except MlflowException as e:
        raise RegistryError(f"{uri}: {e.message}") from None
    folder = Path(root) / DATA_SUBPATH
    if not (folder / "meta.json").is_file():
        raise RegistryError(f"{uri}: no {DATA_SUBPATH}/meta.json in the model")
    return folder


def download_agent(
    agent: str,
    alias: str = CHAMPION,
    dst: str | Path | None = None,
    config: TrackingConfig | None = None,
) -> Path:
    """Download ``models:/marlops-<agent>@<alias>`` and return its agent folder (meta.json, *.onnx …)."""
    uri = model_uri(agent, alias)
    activate(config or resolve_tracking())
    target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix=f"marlops-{agent}-"))
    return _download(uri, target)


def alias_team(alias: str = CHAMPION, config: TrackingConfig | None = None) -> str | None:
    """The team behind ``alias`` on all four agents (None when no agent has it; a mixed team: an error)."""
    client = activate(config or resolve_tracking())
    return _team_of(_alias_versions(client, alias), alias)


def download_team(
    alias: str = CHAMPION, dst: str | Path | None = None, config: TrackingConfig | None = None
) -> Path:
    """The four agents of ``alias`` as ``<dst>/<agent>/`` plus ``agents.json``: the layout of a training
    run's ``agents/`` folder (what ``AgentSet.load`` reads). The aliases are resolved to version numbers
    first, so the four folders are one team even if the alias moves during the download."""
    client = activate(config or resolve_tracking())
    versions = _alias_versions(client, alias)
    team = _team_of(versions, alias)
    if team is None:
        raise RegistryError(f"no {alias}: register and promote a team first")
    target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="marlops-team-"))
    target.mkdir(parents=True, exist_ok=True)
    ids = {}
    with tempfile.TemporaryDirectory(prefix="marlops-dl-") as tmp:
        for agent, v in versions.items():
            folder = _download(f"models:/{v.name}/{v.version}", Path(tmp) / agent)
            dest = target / agent
            if dest.exists():
                shutil.rmtree(dest)
            shutil.move(str(folder), str(dest))
            ids[agent] = json.loads((dest / "meta.json").read_text())["version"]
    (target / "agents.json").write_text(json.dumps({"versions": ids}, indent=2) + "\n")
    return target
