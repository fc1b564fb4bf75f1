"""Registering the four agents of a logged training run as MLflow models ``marlops-<agent>``.

Each agent becomes one model version whose files are the agent folder in the pyfunc format of
:mod:`marlops.registry.onnx_model` (no pickle; ONNX graphs run by ONNX Runtime). Version tags:

- ``agent_version``: the agent's version id from meta.json (``regime-1a2b3c4d5e6f``);
- ``team``: the team id (hash of the four version ids) — the four versions of one team move together;
- ``serialization_format``: ``onnx``; ``loader_module``: ``marlops.registry.onnx_model``;
- later, from :mod:`.aliases`: ``gate`` (the last gate verdict), ``rolled_back``.

Idempotent: a version with the same ``agent_version`` *and* ``team`` is looked up before anything is
logged, so registering the same run twice adds nothing. (An agent whose weights are identical in two
teams — the regime agent when only the MAPPO stage changed — gets one version per team, so that every
version's ``run_id`` is its own team's run and the team can be promoted and rolled back as one unit.)

New registrations become ``challenger`` (all four aliases move together once all four versions exist),
unless that team is the champion already or was rolled back (a rollback is not undone by rerunning the
job that produced the team).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from marlops.registry.config import TrackingConfig, activate, resolve_tracking
from marlops.registry.folders import SERVING_FORMAT, RegistryError, TrainingRun, read_run
from marlops.registry.onnx_model import DATA_SUBPATH
from marlops.team import AGENTS

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MODEL_PREFIX = "marlops-"
CHAMPION = "champion"
CHALLENGER = "challenger"
LOADER_MODULE = "marlops.registry.onnx_model"
ROLLED_BACK_TAG = "rolled_back"


def model_name(agent: str) -> str:
    if agent not in AGENTS:
        raise RegistryError(f"unknown agent {agent!r}; expected one of {', '.join(AGENTS)}")
    return f"{MODEL_PREFIX}{agent}"


def model_uri(agent: str, alias: str = CHAMPION) -> str:
    """``models:/marlops-<agent>@<alias>`` — what serving loads."""
    return f"models:/{model_name(agent)}@{alias}"


@dataclass(frozen=True)
class RegisteredAgent:
    agent: str
    name: str  # registered model name
    version: str  # model version number
    agent_version: str
    team: str
    run_id: str
    created: bool  # False: the version already existed

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("mlflow", "numpy", "onnxruntime"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def find_version(client: MlflowClient, agent: str, agent_version: str, team: str) -> ModelVersion | None:
    name = model_name(agent)
    found = client.search_model_versions(
        f"name = '{name}' and tags.agent_version = '{agent_version}' and tags.team = '{team}'"
    )
    return max(found, key=lambda v: int(v.version)) if found else None


def team_versions(client: MlflowClient, team: str) -> dict[str, ModelVersion]:
    """The versions of ``team``, per agent (agents it was never registered for are missing)."""
    out = {}
    for agent in AGENTS:
        found = client.search_model_versions(f"name = '{model_name(agent)}' and tags.team = '{team}'")
        if found:
            out[agent] = max(found, key=lambda v: int(v.version))
    return out


def _ensure_registered_model(client: MlflowClient, agent: str) -> None:
    from mlflow.exceptions import MlflowException

    name = model_name(agent)
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name,
                tags={"agent": agent, "serialization_format": SERVING_FORMAT, "marlops": "true"},
                description=f"The marlops {agent} agent: ONNX graphs in a pyfunc model ({LOADER_MODULE}).",
            )
        except MlflowException:  # created by another process in between
            client.get_registered_model(name)


def _log_agent_model(client: MlflowClient, run_id: str, run: TrainingRun, agent: str) -> str:
    """Log one agent folder as an MLflow model of ``run_id``; returns the model URI (``models:/m-…``).

    The logged model is created explicitly in the run's experiment (MLflow would otherwise put it in
    the active experiment, "Default" when none is set) and then filled by ``Model.log``.
    """
    import mlflow
    from mlflow.models import Model

    folder = run.agents[agent]
    tags = {
        "agent": agent,
        "agent_version": folder.version,
        "team": run.team_id,
        "serialization_format": SERVING_FORMAT,
        "loader_module": LOADER_MODULE,
    }
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(
        experiment_id, name=agent, source_run_id=run_id, tags=tags, model_type="marlops-agent"
    )
    with tempfile.TemporaryDirectory(prefix="marlops-agent-") as tmp:
        staged = Path(tmp) / Path(DATA_SUBPATH).name  # the data folder keeps this name: data/agent
        shutil.copytree(folder.path, staged)
        info = Model.log(
            artifact_path=None,
            name=agent,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=logged.model_id,
            loader_module=LOADER_MODULE,
            data_path=str(staged),
            pip_requirements=_requirements(),
            metadata={"agent": agent, "agent_version": folder.version, "team": run.team_id},
        )
    return info.model_uri


def register_agents(
    run_id: str, run_dir: str | Path, config: TrackingConfig | None = None, set_challenger: bool = True
) -> dict[str, RegisteredAgent]:
    """Register the four agents of ``run_dir`` (logged as ``run_id``) as ``marlops-<agent>`` versions.

    Returns the version of every agent (existing or new). With ``set_challenger`` the team becomes the
    ``challenger`` of all four models (see the module docstring for when it does not).
    """
    import mlflow

    run = read_run(run_dir)
    client = activate(config or resolve_tracking())
    mlflow_run = client.get_run(run_id)
    logged_team = mlflow_run.data.tags.get("marlops.team")
    if logged_team is not None and logged_team != run.team_id:
        raise RegistryError(f"run {run_id} logged team {logged_team}, but {run.path} holds {run.team_id}")
    out: dict[str, RegisteredAgent] = {}
    for agent in AGENTS:
        folder = run.agents[agent]
        _ensure_registered_model(client, agent)
        mv = find_version(client, agent, folder.version, run.team_id)
        created = mv is None
        if mv is None:
            uri = _log_agent_model(client, run_id, run, agent)
            mv = mlflow.register_model(
                uri,
                model_name(agent),
                tags={
                    "agent_version": folder.version,
                    "team": run.team_id,
                    "serialization_format": SERVING_FORMAT,
                    "loader_module": LOADER_MODULE,
                    "data_path": DATA_SUBPATH,
                },
            )
        out[agent] = RegisteredAgent(
            agent,
            model_name(agent),
            str(mv.version),
            folder.version,
            run.team_id,
            mv.run_id or run_id,
            created,
        )
    if set_challenger:
        _maybe_challenger(client, out)
    return out


def _maybe_challenger(client: MlflowClient, team: dict[str, RegisteredAgent]) -> bool:
    versions = {a: client.get_model_version(r.name, r.version) for a, r in team.items()}
    if any(v.tags.get(ROLLED_BACK_TAG) == "true" for v in versions.values()):
        return False
    if all(CHAMPION in v.aliases for v in versions.values()):
        return False
    for r in team.values():
        client.set_registered_model_alias(r.name, CHALLENGER, r.version)
    return True


@dataclass(frozen=True)
class Registration:
    run_id: str
    team: str
    agents: dict[str, RegisteredAgent]
    challenger: bool  # the team is now the challenger

    @property
    def created(self) -> bool:
        return any(r.created for r in self.agents.values())


def register_run(
    run_dir: str | Path,
    eval_dir: str | Path | None = None,
    lineage: dict[str, object] | None = None,
    config: TrackingConfig | None = None,
    experiment: str | None = None,
) -> Registration:
    """:func:`~marlops.registry.tracking.log_training_run` then :func:`register_agents`: the one call of
    ``marlops registry register`` and the pipeline's register step. Idempotent."""
    from marlops.registry.config import DEFAULT_EXPERIMENT
    from marlops.registry.tracking import log_training_run

    cfg = config or resolve_tracking()
    run_id = log_training_run(run_dir, eval_dir, experiment or DEFAULT_EXPERIMENT, lineage, cfg)
    agents = register_agents(run_id, run_dir, cfg, set_challenger=False)
    client = activate(cfg)
    challenger = _maybe_challenger(client, agents)
    return Registration(run_id, next(iter(agents.values())).team, agents, challenger)
