"""What the pipeline's tasks get from the cluster, in one place: the data claim, the credential Secrets
(as files), GPU placement, and the ServiceAccount runs execute under.

The defaults are the marlops chart's for a release named ``marlops`` (``helm/marlops``: ``marlops-data``,
``mlflow.existingSecret``, ``objectStorage.existingSecret``, ``pipelineRunner.serviceAccount``, the
training scheduling of ``values-gpu.yaml``); a test renders the chart and holds the two to each other.
Names that depend on the release are pipeline parameters (another release: set them on the run); mount
paths and ``*_FILE`` variables are fixed, as in the chart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from marlops.secret_files import FILE_SUFFIX, LIBRARY_SECRETS

SECRETS_DIR = "/var/run/secrets/marlops"  # the chart's "marlops.secretsDir"
SERVICE_ACCOUNT_ENV = "MARLOPS_PIPELINE_SERVICE_ACCOUNT"  # set by the chart on the retrain trigger


@dataclass(frozen=True)
class SecretFiles:
    """A Secret mounted read-only at ``SECRETS_DIR/<folder>``; each key the package reads becomes
    ``KEY_FILE=<mount path>/KEY``. Optional: a missing Secret or key leaves its file absent, which
    :func:`marlops.secret_files.export_file_settings` skips."""

    secret: str  # default name (a pipeline parameter)
    folder: str
    keys: tuple[str, ...]

    @property
    def mount_path(self) -> str:
        return f"{SECRETS_DIR}/{self.folder}"

    def env(self) -> dict[str, str]:
        return {k + FILE_SUFFIX: f"{self.mount_path}/{k}" for k in self.keys}


@dataclass(frozen=True)
class Platform:
    data_claim: str = "marlops-data"
    data_mount: str = "/var/lib/marlops"  # the parameters' paths point under it (feast_dir=…/feast)
    mlflow: SecretFiles = SecretFiles(
        "marlops-mlflow", "mlflow", tuple(k for k in LIBRARY_SECRETS if k.startswith("MLFLOW_"))
    )
    object_storage: SecretFiles = SecretFiles(
        "marlops-object-storage", "object-storage", tuple(k for k in LIBRARY_SECRETS if k.startswith("AWS_"))
    )
    service_account: str = "marlops-pipeline-runner"


PLATFORM = Platform()

# values-gpu.yaml's training.nodeSelector / training.tolerations (NVIDIA GPU Operator labels and taint)
GPU_NODE_SELECTOR: dict[str, str] = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATIONS: list[dict[str, Any]] = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
]

_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_OPERATORS = {"Exists", "Equal"}
_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}


def _parse(field: str, value: str | Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value or "null")
    except json.JSONDecodeError as e:
        raise ValueError(f"{field}: not JSON ({e})") from None


def gpu_placement(
    gpus: int, node_selector: str | dict[str, Any], tolerations: str | list[Any]
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The train pod's nodeSelector and tolerations (JSON, as the pipeline parameters give them): the GPU
    pool's when it asks for GPUs, none on CPU (a CPU run pinned to GPU nodes would wait for them or take
    one for nothing). Checked here, at run time, so a bad parameter fails the run naming it rather than
    leaving a pod the scheduler never places."""
    node_selector = _parse("gpu_node_selector", node_selector)
    tolerations = _parse("gpu_tolerations", tolerations)
    if not isinstance(node_selector, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in node_selector.items()
    ):
        raise ValueError(f"gpu_node_selector: expected a map of label → string value, got {node_selector!r}")
    if not isinstance(tolerations, list):
        raise ValueError(f"gpu_tolerations: expected a list of tolerations, got {tolerations!r}")
    for i, t in enumerate(tolerations):
        if not isinstance(t, dict) or not t or set(t) - _TOLERATION_KEYS:
            raise ValueError(
                f"gpu_tolerations[{i}]: expected a toleration with keys among {sorted(_TOLERATION_KEYS)}, "
                f"got {t!r}"
            )
        if t.get("operator", "Equal") not in _OPERATORS:
            raise ValueError(f"gpu_tolerations[{i}].operator: expected one of {sorted(_OPERATORS)}")
        if "effect" in t and t["effect"] not in _EFFECTS:
            raise ValueError(f"gpu_tolerations[{i}].effect: expected one of {sorted(_EFFECTS)}")
    if gpus <= 0:
        return {}, []
    return dict(node_selector), [dict(t) for t in tolerations]


def service_account(explicit: str | None = None) -> str:
    """The ServiceAccount a cluster run executes under: ``explicit``, else
    ``$MARLOPS_PIPELINE_SERVICE_ACCOUNT`` (the chart sets it on the retrain trigger to its release's
    runner), else the chart's default name."""
    return explicit or os.environ.get(SERVICE_ACCOUNT_ENV) or PLATFORM.service_account
