"""The train step's cluster path: a Kubeflow Trainer ``TrainJob`` (or a Training Operator ``PyTorchJob``)
running ``marlops train``, created or re-attached to, watched and waited for.

Here the pure half: :class:`JobSpec` → the object as a dict (what tests validate against the CRDs), the
job's name, its state from its conditions; the I/O over the ``kubernetes`` client is
:mod:`marlops.pipeline.kube`. The TrainJob references the chart's ``TrainingRuntime``
(``helm/marlops/templates/training.yaml``: posture, data volume, credentials, GPU placement), so only what
differs per run travels in the job: image, command, nodes, processes, resources, and — when set — runtime
patches for the service account, data claim, node selector and tolerations.

Why the ``kubernetes`` client and not the Kubeflow SDK's ``TrainerClient``: the SDK builds TrainJobs from a
Python function or a built-in trainer with names of its own; here the job must run our CLI with our runtime,
under a name derived from the run (so a retried task re-attaches) and with an owner reference (so deleting the
run deletes the job) — a custom-object create/get does exactly that without a new dependency.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

TRAINER_GROUP, TRAINER_VERSION, TRAINJOBS = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
PYTORCH_GROUP, PYTORCH_VERSION, PYTORCHJOBS = "kubeflow.org", "v1", "pytorchjobs"
KINDS = ("TrainJob", "PyTorchJob")
RUNTIME = "marlops-torch"  # the chart's TrainingRuntime ({fullname}-torch, release "marlops")
DATA_MOUNT = "/var/lib/marlops/runs"  # where the runtime mounts the data volume (subPath runs)
PATCH_MANAGER = "marlops.io/pipeline"
RUN_LABEL = "marlops.io/pipeline-run"
KEY_LABEL = "marlops.io/run-key"
# the chart's training pod labels (marlops.podLabels): its NetworkPolicy lets pods with them reach each other
POD_LABELS = {
    "app.kubernetes.io/name": "marlops",
    "app.kubernetes.io/instance": "marlops",
    "app.kubernetes.io/component": "training",
    "app.kubernetes.io/part-of": "marlops",
}
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class OwnerRef:
    api_version: str
    kind: str
    name: str
    uid: str

    def as_dict(self) -> Obj:
        # blockOwnerDeletion stays unset: setting it needs delete rights on the owner (admission plugin)
        return {"apiVersion": self.api_version, "kind": self.kind, "name": self.name, "uid": self.uid}


@dataclass(frozen=True)
class JobSpec:
    """Everything the job object is built from."""

    name: str
    namespace: str
    image: str
    args: list[str]  # after the image's ``marlops`` entry point: TrainArgs.argv()
    nodes: int = 1
    gpus: int = 0  # per node; processes per node = max(gpus, 1)
    kind: str = "TrainJob"
    runtime: str = RUNTIME
    labels: dict[str, str] = field(default_factory=dict)
    owner: OwnerRef | None = None
    # resourcesPerNode replaces the runtime container's resources, so CPU and memory travel with the GPUs
    resources: Obj = field(
        default_factory=lambda: {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "32Gi"}}
    )
    # Left empty, the TrainingRuntime's own apply (TrainJob); the PyTorchJob has no runtime: chart defaults.
    service_account: str = ""
    data_claim: str = ""
    data_mount: str = DATA_MOUNT
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[Obj] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        if not _DNS1035.match(self.name) or len(self.name) > 63:
            out.append(f"name: {self.name!r} is not a DNS-1035 label of at most 63 characters")
        if self.kind not in KINDS:
            out.append(f"kind: expected one of {KINDS}, got {self.kind!r}")
        if self.nodes < 1:
            out.append(f"nodes: must be ≥ 1, got {self.nodes}")
        if self.gpus < 0:
            out.append(f"gpus: must be ≥ 0, got {self.gpus}")
        if not self.namespace:
            out.append("namespace: empty")
        return out

    @property
    def nproc(self) -> int:
        return max(self.gpus, 1)


def job_name(run_id: str, key: str, prefix: str = "marlops-train") -> str:
    """``marlops-train-<run>-<key>``: the same run and training configuration give the same name (a retried
    task finds its job); a DNS-1035 label whatever the run id looks like."""
    run = re.sub(r"[^a-z0-9]", "", run_id.lower())[:8] or "norun"
    conf = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{prefix}-{run}-{conf}"


# ----------------------------------------------------------------------------------------- builders


def _resources(spec: JobSpec) -> Obj:
    res = {k: dict(v) for k, v in spec.resources.items()}
    if spec.gpus > 0:
        for part in ("requests", "limits"):
            res.setdefault(part, {})["nvidia.com/gpu"] = spec.gpus
    return res


def _metadata(spec: JobSpec) -> Obj:
    meta: Obj = {
        "name": spec.name,
        "namespace": spec.namespace,
        "labels": {"app.kubernetes.io/part-of": "marlops", "app.kubernetes.io/component": "training"}
        | spec.labels,
    }
    if spec.owner is not None:
        meta["ownerReferences"] = [spec.owner.as_dict()]
    return meta


def _gpu_placement(spec: JobSpec) -> tuple[dict[str, str], list[Obj]]:
    """The spec's node selector/tolerations; for the PyTorchJob on GPUs, the chart's GPU defaults."""
    if spec.node_selector or spec.tolerations or spec.kind == "TrainJob" or spec.gpus == 0:
        return dict(spec.node_selector), list(spec.tolerations)
    return (
        {"nvidia.com/gpu.present": "true"},
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )


def trainjob(spec: JobSpec) -> Obj:
    """A ``trainer.kubeflow.org/v1alpha1`` TrainJob on the chart's TrainingRuntime."""
    job: Obj = {
        "apiVersion": f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        "kind": "TrainJob",
        "metadata": _metadata(spec),
        "spec": {
            "runtimeRef": {"apiGroup": TRAINER_GROUP, "kind": "TrainingRuntime", "name": spec.runtime},
            "trainer": {
                "image": spec.image,
                "args": list(spec.args),
                "numNodes": spec.nodes,
                "numProcPerNode": spec.nproc,
                "resourcesPerNode": _resources(spec),
            },
        },
    }
    pod: Obj = {}
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = list(spec.tolerations)
    if spec.data_claim:  # the runtime's "data" volume, on another claim
        pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": spec.data_claim}}]
    if pod:
        replicated = {"name": "node", "template": {"spec": {"template": {"spec": pod}}}}
        job["spec"]["runtimePatches"] = [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated]}}},
            }
        ]
    return job


def pytorchjob(spec: JobSpec) -> Obj:
    """The Training Operator v1 fallback: a ``kubeflow.org/v1`` PyTorchJob with the pod spelled out (no
    runtime to reference): the chart's posture, the data volume at the same path, GPU placement."""
    selector, tolerations = _gpu_placement(spec)
    pod: Obj = {
        "serviceAccountName": spec.service_account or "marlops-training",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "pytorch",
                "image": spec.image,
                "args": list(spec.args),
                "env": [
                    {"name": "PYTHONUNBUFFERED", "value": "1"},
                    {"name": "HOME", "value": "/tmp"},
                    {"name": "MARLOPS_CACHE", "value": "/tmp/marlops-cache"},
                    {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
                ],
                "resources": _resources(spec),
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "data", "mountPath": spec.data_mount, "subPath": "runs"},
                    {"name": "shm", "mountPath": "/dev/shm"},
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": spec.data_claim or "marlops-data"}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        ],
    }
    if selector:
        pod["nodeSelector"] = selector
    if tolerations:
        pod["tolerations"] = tolerations
    replicas: Obj = {}
    for role, n in (("Master", 1), ("Worker", spec.nodes - 1)):
        if n > 0:
            replicas[role] = {
                "replicas": n,
                "restartPolicy": "OnFailure",
                "template": {"metadata": {"labels": POD_LABELS | spec.labels}, "spec": pod},
            }
    return {
        "apiVersion": f"{PYTORCH_GROUP}/{PYTORCH_VERSION}",
        "kind": "PyTorchJob",
        "metadata": _metadata(spec),
        "spec": {
            "nprocPerNode": str(spec.nproc),
            "runPolicy": {"backoffLimit": 3, "cleanPodPolicy": "None"},
            "pytorchReplicaSpecs": replicas,
        },
    }


def build(spec: JobSpec) -> Obj:
    problems = spec.problems()
    if problems:
        raise ValueError("; ".join(problems))
    return trainjob(spec) if spec.kind == "TrainJob" else pytorchjob(spec)


# ------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class JobState:
    phase: str  # Pending | Running | Complete | Failed (Unknown: the API did not answer)
    reason: str = ""
    message: str = ""

    def __str__(self) -> str:
        extra = ": ".join(x for x in (self.reason, self.message) if x)
        return f"{self.phase}" + (f" ({extra})" if extra else "")


_DONE = {"Complete": "Complete", "Succeeded": "Complete", "Failed": "Failed"}


def job_state(obj: Obj) -> JobState:
    """The job's phase from its conditions: TrainJob (Complete/Failed) and PyTorchJob (Succeeded/Failed,
    Running, Created) alike; the newest true condition wins, a terminal one over any other."""
    conds = [c for c in ((obj.get("status") or {}).get("conditions") or []) if c.get("status") == "True"]
    for c in conds:
        if c.get("type") in _DONE:
            return JobState(_DONE[c["type"]], c.get("reason", ""), c.get("message", ""))
    if conds:
        last = conds[-1]
        phase = "Running" if last.get("type") in ("Running", "Restarting") else "Pending"
        return JobState(phase, last.get("reason", ""), last.get("message", ""))
    return JobState("Pending", "", "no condition yet")
