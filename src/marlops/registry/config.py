"""Where MLflow lives: an embedded sqlite store with local artifacts, or a tracking server.

Resolution order of :func:`resolve_tracking`:

1. the ``tracking_uri`` argument (``marlops registry … --tracking-uri``);
2. ``MLFLOW_TRACKING_URI`` (a server such as ``http://mlflow.mlops:5000``, or any MLflow URI);
3. the embedded default: ``sqlite:///<dir>/mlflow.db`` with artifacts under ``<dir>/artifacts``, where
   ``<dir>`` is ``MARLOPS_MLFLOW_DIR`` (default ``data/mlflow``, relative to the working directory).

The registry URI follows the tracking URI; only when the tracking URI comes from the environment may
``MLFLOW_REGISTRY_URI`` name another registry. With a server the artifact location is the server's
(``--artifacts-destination``, e.g. object storage).

With a sqlite store every experiment keeps its artifacts under the artifact root: the ones this package
creates (:func:`ensure_experiment`) at ``<root>/<name>``, and MLflow's own ``Default`` experiment (id 0) at
``<root>/0`` (:func:`activate` repairs it: a client-side MLflow creates it at ``./mlruns/0`` of whatever the
working directory is).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mlflow takes seconds to import; only the functions that talk to it import it
    from mlflow import MlflowClient

MLFLOW_DIR_ENV = "MARLOPS_MLFLOW_DIR"
DEFAULT_MLFLOW_DIR = Path("data/mlflow")
DEFAULT_EXPERIMENT = "marlops"
MLFLOW_DEFAULT_EXPERIMENT_ID = "0"  # MLflow's "Default" experiment, created with the database
SQLITE_PREFIX = "sqlite:///"


@dataclass(frozen=True)
class TrackingConfig:
    """Tracking and registry URIs, and the artifact root of experiments this package creates."""

    tracking_uri: str
    registry_uri: str
    artifact_root: str | None = None  # None: the server decides
    embedded: bool = False

    def describe(self) -> str:
        where = f" (artifacts {self.artifact_root})" if self.artifact_root else ""
        return f"{self.tracking_uri}{where}"


def embedded_config(directory: str | Path | None = None) -> TrackingConfig:
    """The embedded store in ``directory`` (default: ``$MARLOPS_MLFLOW_DIR`` or ``data/mlflow``)."""
    d = Path(directory or os.environ.get(MLFLOW_DIR_ENV) or DEFAULT_MLFLOW_DIR).resolve()
    d.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{d / 'mlflow.db'}"
    return TrackingConfig(uri, uri, (d / "artifacts").as_uri(), embedded=True)


def resolve_tracking(tracking_uri: str | None = None, directory: str | Path | None = None) -> TrackingConfig:
    """The configuration to use (see the module docstring for the order)."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return embedded_config(directory)
    # an explicit URI names the registry too: MLflow's set_*_uri write MLFLOW_*_URI into this process's
    # environment, so an env registry may be the last store activated here, not the user's choice
    registry = uri if tracking_uri else (os.environ.get("MLFLOW_REGISTRY_URI") or uri)
    artifact_root = None
    if uri.startswith(SQLITE_PREFIX):  # a sqlite file named explicitly: keep artifacts beside it
        artifact_root = (Path(uri.removeprefix(SQLITE_PREFIX)).resolve().parent / "artifacts").as_uri()
    return TrackingConfig(uri, registry, artifact_root, embedded=False)


def activate(config: TrackingConfig) -> MlflowClient:
    """Point MLflow's process-wide fluent API at ``config`` and return a client for it.

    Model logging and ``models:/`` downloads go through the fluent API, so the global URIs are set.
    Credentials given as files (``MLFLOW_TRACKING_PASSWORD_FILE``, ``AWS_SECRET_ACCESS_KEY_FILE`` …, mounted
    Secrets) are exported first: KFP components and other entry points that skip the ``marlops`` CLI
    reach MLflow through here, and MLflow and boto3 read only the environment.
    """
    import mlflow

    from marlops.secret_files import export_file_settings

    export_file_settings()
    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_registry_uri(config.registry_uri)
    client = mlflow.MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.registry_uri)
    place_default_experiment(client, config)
    return client


def place_default_experiment(client: MlflowClient, config: TrackingConfig) -> None:
    """Put the artifacts of MLflow's ``Default`` experiment (id 0) under the config's artifact root.

    A client-side sqlite store creates that experiment with the database, at ``<default root>/0`` where the
    default root is ``./mlruns`` of the working directory (MLflow offers no setting for it outside
    ``mlflow server``), so runs logged there would land beside whatever folder a command ran in. MLflow has
    no API to move an experiment, so its ``artifact_location`` is rewritten in the database; runs already
    logged keep their own ``artifact_uri``. Only sqlite stores with an artifact root are touched: a
    server owns its experiments.
    """
    if not config.artifact_root or not config.tracking_uri.startswith(SQLITE_PREFIX):
        return
    wanted = f"{config.artifact_root}/{MLFLOW_DEFAULT_EXPERIMENT_ID}"
    exp = client.get_experiment(MLFLOW_DEFAULT_EXPERIMENT_ID)  # creates the database on first use
    if exp.artifact_location == wanted:
        return
    db = config.tracking_uri.removeprefix(SQLITE_PREFIX)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
            (wanted, int(MLFLOW_DEFAULT_EXPERIMENT_ID)),
        )
    conn.close()


def ensure_experiment(client: MlflowClient, name: str, config: TrackingConfig) -> str:
    """The id of experiment ``name``, created (with the config's artifact root) when missing."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = f"{config.artifact_root}/{name}" if config.artifact_root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another process created it in between
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
