"""Where an agent server gets its model: the MLflow registry or a local folder.

A model URI is one of

- ``models:/marlops-<agent>@<alias>`` or ``models:/marlops-<agent>/<version>``: downloaded from the MLflow
  registry (``MLFLOW_TRACKING_URI``, else the embedded store; see :mod:`marlops.registry.config`); the
  agent folder is the model's ``data/agent`` (:mod:`marlops.registry.onnx_model`);
- a local folder: an agent folder (``meta.json`` + ONNX graphs), a team folder (``<agent>/``, what
  ``AgentSet.save`` and ``download_team`` write) or a training run (``agents/<agent>/``); ``file://``
  prefixes are accepted.

For the local launcher a URI may contain ``{agent}`` (``models:/marlops-{agent}@champion``); it is
formatted once per agent.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from marlops.registry.folders import AgentFolder, RegistryError, read_agent
from marlops.registry.onnx_model import DATA_SUBPATH
from marlops.team import AGENTS


class ModelSourceError(RuntimeError):
    """The model URI cannot give this agent's model; the message says what was looked at."""


def agent_uri(template: str, agent: str) -> str:
    return template.replace("{agent}", agent)


def local_candidates(path: Path, agent: str) -> list[Path]:
    return [path, path / agent, path / "agents" / agent]


def resolve_agent(agent: str, uri: str, download_dir: str | Path | None = None) -> AgentFolder:
    """The checked agent folder for ``agent`` behind ``uri`` (downloading it from MLflow if needed)."""
    if agent not in AGENTS:
        raise ModelSourceError(f"unknown agent {agent!r}; expected one of {', '.join(AGENTS)}")
    uri = agent_uri(uri, agent)
    if uri.startswith("models:/"):
        folder = _download(uri, agent, download_dir)
        try:
            return read_agent(folder, agent)
        except RegistryError as e:
            raise ModelSourceError(f"{uri}: {e}") from None
    path = Path(uri.removeprefix("file://")).expanduser()
    if not path.exists():
        raise ModelSourceError(f"model URI {uri!r}: no such folder (and not a models:/ URI)")
    tried = []
    for cand in local_candidates(path, agent):
        if (cand / "meta.json").is_file():
            try:
                return read_agent(cand, agent)
            except RegistryError as e:
                tried.append(str(e))
    why = f" ({'; '.join(tried)})" if tried else ""
    raise ModelSourceError(
        f"model URI {uri!r}: no {agent} agent folder (meta.json + ONNX graphs) at "
        f"{', '.join(str(c) for c in local_candidates(path, agent))}{why}"
    )


def _download(uri: str, agent: str, download_dir: str | Path | None) -> Path:
    import mlflow
    from mlflow.exceptions import MlflowException

    from marlops.registry.config import activate, resolve_tracking

    activate(resolve_tracking())
    target = Path(download_dir) if download_dir else Path(tempfile.mkdtemp(prefix=f"marlops-serve-{agent}-"))
    target.mkdir(parents=True, exist_ok=True)
    try:
        root = mlflow.artifacts.download_artifacts(uri, dst_path=str(target))
    except MlflowException as e:
        raise ModelSourceError(f"{uri}: {e.message}") from None
    except OSError as e:
        raise ModelSourceError(f"{uri}: download failed: {e}") from None
    folder = Path(root) / DATA_SUBPATH
    if not (folder / "meta.json").is_file():
        raise ModelSourceError(f"{uri}: no {DATA_SUBPATH}/meta.json in the model (not a marlops agent)")
    return folder
