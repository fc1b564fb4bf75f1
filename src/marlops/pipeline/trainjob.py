"""The train step's cluster path: a Kubeflow Trainer ``TrainJob`` (or a Training Operator ``PyTorchJob``)
running ``marlops train``, created or re-attached to, watched and waited for.

Two halves: pure builders (:class:`JobSpec` → the object as a dict, what tests validate against the CRDs)
and the I/O over the ``kubernetes`` client (:func:`create_or_attach`, :func:`wait`). The TrainJob references
the chart's ``TrainingRuntime`` (``helm/marlops/templates/training.yaml``: posture, data volume, credentials,
GPU placement), so only what differs per run travels in the job: image, command, nodes, processes, resources,
and — when set — runtime patches for the service account, data claim, node selector and tolerations.

Why the ``kubernetes`` client and not the Kubeflow SDK's ``TrainerClient``: the SDK builds TrainJobs from a
Python function or a built-in trainer with names of its own; here the job must run our CLI with our runtime,
under a name derived from the run (so a retried task re-attaches) and with an owner reference (so deleting the
run deletes the job) — a custom-object create/get does exactly that without a new dependency.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# the chart's training pod labels (marlops.podLabels): its NetworkPolicy lets pods with them reach each other
POD_LABELS = {
    "app.kubernetes.io/name": "marlops",
    "app.kubernetes.io/instance": "marlops",
    "app.kubernetes.io/component": "training",
    "app.kubernetes.io/part-of": "marlops",
}
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class JobFailed(RuntimeError):
    """The job ended Failed; the message carries the job's own reason and message."""


class JobTimeout(TimeoutError):
    """The job did not finish within the step's timeout (it keeps running; a retry re-attaches)."""


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


# ---------------------------------------------------------------------------------------------- I/O


def in_cluster() -> bool:
    """True in a pod whose service account token the client can load (KUBERNETES_SERVICE_HOST set)."""
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return False
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        return False
    return True


def own_namespace(default: str = "default") -> str:
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or default
    except OSError:
        return default


@dataclass(frozen=True)
class Api:
    """The API paths of one job kind."""

    group: str
    version: str
    plural: str

    @staticmethod
    def of(kind: str) -> Api:
        if kind == "TrainJob":
            return Api(TRAINER_GROUP, TRAINER_VERSION, TRAINJOBS)
        return Api(PYTORCH_GROUP, PYTORCH_VERSION, PYTORCHJOBS)


def task_owner(api_client: Any, namespace: str, env: dict[str, str] | None = None) -> OwnerRef | None:
    """What owns the TrainJob: the run's Argo Workflow when the task pod names one (deleting the run
    deletes the job, and a retried task's new pod finds the job still there), else the task pod itself.
    The pod is named by KFP's downward-API variables ``KFP_POD_NAME``/``KFP_POD_UID``; None outside KFP."""
    from kubernetes import client

    env = dict(os.environ if env is None else env)
    name, uid = env.get("KFP_POD_NAME", ""), env.get("KFP_POD_UID", "")
    if not name:
        return None
    try:
        pod = client.CoreV1Api(api_client).read_namespaced_pod(name, namespace)
    except client.ApiException as e:
        print(f"trainjob: cannot read the task pod {namespace}/{name} ({e.status} {e.reason}): ", end="")
        if not uid:
            print("no owner reference")
            return None
        print("the pod owns the job")
        return OwnerRef("v1", "Pod", name, uid)
    for ref in pod.metadata.owner_references or []:
        if ref.kind == "Workflow":
            return OwnerRef(ref.api_version, ref.kind, ref.name, ref.uid)
    return OwnerRef("v1", "Pod", name, uid or pod.metadata.uid)


def create_or_attach(api_client: Any, obj: Obj, log: Callable[[str], None] = print) -> Obj:
    """Create the job, or — when one of that name exists (409: a retried task) — attach to it. Attaching
    to a job built for other arguments is refused: the name says run + configuration, so that is a bug."""
    from kubernetes import client

    api = Api.of(obj["kind"])
    meta = obj["metadata"]
    objects = client.CustomObjectsApi(api_client)
    try:
        created = objects.create_namespaced_custom_object(
            api.group, api.version, meta["namespace"], api.plural, obj
        )
        log(f"{obj['kind']} {meta['namespace']}/{meta['name']}: created")
        return created  # type: ignore[no-any-return]
    except client.ApiException as e:
        if e.status != 409:
            raise RuntimeError(
                f"{obj['kind']} {meta['namespace']}/{meta['name']}: create refused ({e.status} {e.reason}): "
                f"{(e.body or '')[:500]}"
            ) from None
    existing: Obj = objects.get_namespaced_custom_object(
        api.group, api.version, meta["namespace"], api.plural, meta["name"]
    )
    if _args(existing) != _args(obj):
        raise RuntimeError(
            f"{obj['kind']} {meta['namespace']}/{meta['name']}: exists with other arguments "
            f"({_args(existing)} ≠ {_args(obj)}); delete it or change the run"
        )
    log(f"{obj['kind']} {meta['namespace']}/{meta['name']}: exists — re-attaching ({job_state(existing)})")
    return existing


def _args(obj: Obj) -> list[str]:
    spec = obj.get("spec") or {}
    if "trainer" in spec:
        return list(spec["trainer"].get("args") or [])
    for r in (spec.get("pytorchReplicaSpecs") or {}).values():
        return list(r["template"]["spec"]["containers"][0].get("args") or [])
    return []


def _pod_selector(obj: Obj) -> str:
    """The job's rank-0 pod: JobSet labels for a TrainJob (its JobSet has the job's name), the Training
    Operator's for a PyTorchJob."""
    name = obj["metadata"]["name"]
    if obj["kind"] == "TrainJob":
        return (
            f"jobset.sigs.k8s.io/jobset-name={name},jobset.sigs.k8s.io/replicatedjob-name=node,"
            "batch.kubernetes.io/job-completion-index=0"
        )
    return f"training.kubeflow.org/job-name={name},training.kubeflow.org/replica-type=master"


class _LogFollower:
    """Streams the rank-0 pod's log into the task log on a daemon thread (once the pod exists)."""

    def __init__(self, api_client: Any, obj: Obj, log: Callable[[str], None]) -> None:
        self.api_client, self.obj, self.log = api_client, obj, log
        self.thread: threading.Thread | None = None

    def poll(self) -> None:
        if self.thread is not None:
            return
        from kubernetes import client

        core = client.CoreV1Api(self.api_client)
        ns = self.obj["metadata"]["namespace"]
        try:
            pods = core.list_namespaced_pod(ns, label_selector=_pod_selector(self.obj)).items
        except Exception:  # no right to list pods, API away: conditions only (the log is a courtesy)
            return
        running = [p for p in pods if (p.status and p.status.phase) in ("Running", "Succeeded", "Failed")]
        if not running:
            return
        pod = running[0].metadata.name
        self.thread = threading.Thread(target=self._follow, args=(core, ns, pod), daemon=True)
        self.thread.start()

    def _follow(self, core: Any, ns: str, pod: str) -> None:
        try:
            stream = core.read_namespaced_pod_log(pod, ns, follow=True, _preload_content=False)
            rest = b""
            for chunk in stream.stream():  # chunks cut lines anywhere: print whole lines only
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    self.log(f"[{pod}] {line.decode(errors='replace')}")
            if rest:
                self.log(f"[{pod}] {rest.decode(errors='replace')}")
        except Exception as e:  # the log is a courtesy: the job's conditions decide
            self.log(f"[{pod}] log stream ended: {e}")

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


def wait(
    api_client: Any,
    obj: Obj,
    timeout_s: float,
    poll_s: float = 10.0,
    log: Callable[[str], None] = print,
    follow_logs: bool = True,
) -> Obj:
    """Poll the job until Complete (returned) or Failed (:class:`JobFailed` with its reason), logging each
    change of state; :class:`JobTimeout` after ``timeout_s``."""
    import urllib3
    from kubernetes import client

    api = Api.of(obj["kind"])
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    what = f"{obj['kind']} {ns}/{name}"
    objects = client.CustomObjectsApi(api_client)
    follower = _LogFollower(api_client, obj, log) if follow_logs else None
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        try:
            current: Obj = objects.get_namespaced_custom_object(api.group, api.version, ns, api.plural, name)
        except client.ApiException as e:
            if e.status == 404:
                raise JobFailed(f"{what}: deleted while this step waited for it") from None
            if e.status is not None and e.status < 500 and e.status != 429:
                raise
            # the API server restarting or throttling: a long wait must outlive it
            log(f"{what}: API error {e.status} {e.reason} — retrying")
            current = {}
        except (OSError, urllib3.exceptions.HTTPError) as e:
            log(f"{what}: API unreachable ({e}) — retrying")
            current = {}
        state = job_state(current) if current else JobState("Unknown", "", "API not answering")
        if str(state) != last:
            log(f"{what}: {state}")
            last = str(state)
        if state.phase == "Complete":
            if follower is not None:
                follower.join(5.0)
            return current
        if state.phase == "Failed":
            if follower is not None:
                follower.join(5.0)
            raise JobFailed(f"{what} failed: {state.reason or 'no reason'}: {state.message or 'no message'}")
        if follower is not None:
            follower.poll()
        if time.monotonic() >= deadline:
            raise JobTimeout(
                f"{what}: not finished after {timeout_s:g} s (last state {state}); it keeps running — "
                f"`kubectl get {api.plural} -n {ns} {name}`; a retry of this task re-attaches to it"
            )
        time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
