"""The security posture every pod must have, checked on rendered objects (chart, overlays, training jobs).

Rules (each violation names the object, the container and the rule):
- ``runAsNonRoot``: the container, or its pod, sets ``runAsNonRoot: true`` (and no ``runAsUser: 0``);
- ``readOnlyRootFilesystem``: the container sets it true (writable paths are volumes);
- ``capabilities``: ``drop`` holds ``ALL`` and nothing is added;
- ``allowPrivilegeEscalation``: false, and not ``privileged``;
- ``seccomp``: a ``RuntimeDefault`` or ``Localhost`` profile on the pod or the container (Pod Security
  Standards, restricted);
- ``resources``: requests and limits for cpu and memory;
- ``image``: tagged (or pinned by digest), never ``latest``;
- ``probes``: readiness and liveness probes on long-running workloads (Deployments, StatefulSets,
  DaemonSets, InferenceServices); run-to-completion pods (Jobs, CronJobs, training, helm tests) need none.
- ``secretsAsFiles``: no Secret reaches a container as environment (``env[].valueFrom.secretKeyRef``,
  ``envFrom[].secretRef``; checkov CKV_K8S_35): Secrets are volumes, mounted ``readOnly``, whose files'
  mode (``defaultMode``, default 0644, and each item's ``mode``) grants nothing beyond owner read (0400),
  in a pod with an ``fsGroup`` (kubelet gives the files to that group and adds group read, which is how a
  non-root container user reads a root-owned 0400 file).

Pods are found wherever a kind embeds them, custom kinds included (InferenceService components,
TrainingRuntime replicated jobs, PyTorchJob replicas, the Job or PyTorchJob of a Katib Experiment's trial
template). A TrainJob carries no pod template: its container
comes from the TrainingRuntime it references, which must be among the checked objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet", "InferenceService"}
RULES = (
    "runAsNonRoot",
    "readOnlyRootFilesystem",
    "capabilities",
    "allowPrivilegeEscalation",
    "seccomp",
    "resources",
    "image",
    "probes",
    "runtimeRef",
    "secretsAsFiles",
)
SECRET_FILE_MODE = 0o400  # the widest mode a Secret volume's files may have (kubelet adds group read)
DEFAULT_SECRET_MODE = 0o644  # Kubernetes' defaultMode when none is given


@dataclass(frozen=True)
class Violation:
    obj: str  # Kind/name
    where: str  # path of the pod spec or container
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.obj} {self.where}: {self.rule}: {self.detail}"


@dataclass(frozen=True)
class PodRef:
    obj: Obj
    path: str  # where the pod spec sits inside obj
    spec: Obj
    long_running: bool
    labels: dict[str, str]  # the pod's labels (what Services and NetworkPolicies select)


def _ref(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def _tpl(template: Obj | None) -> tuple[Obj, dict[str, str]]:
    """A pod template's spec and labels."""
    template = template or {}
    return template.get("spec") or {}, dict((template.get("metadata") or {}).get("labels") or {})


def pod_specs(obj: Obj) -> Iterator[PodRef]:
    """Every pod spec embedded in ``obj``."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    long_running = kind in LONG_RUNNING
    if kind == "Pod":
        yield PodRef(obj, "spec", spec, False, dict(obj.get("metadata", {}).get("labels") or {}))
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        pod, labels = _tpl(spec.get("template"))
        yield PodRef(obj, "spec.template.spec", pod, long_running, labels)
    elif kind == "CronJob":
        pod, labels = _tpl(spec.get("jobTemplate", {}).get("spec", {}).get("template"))
        yield PodRef(obj, "spec.jobTemplate.spec.template.spec", pod, False, labels)
    elif kind == "InferenceService":
        # a component is an inline pod spec; KServe puts its `labels` on the pods
        for component in ("predictor", "transformer", "explainer"):
            if component in spec:
                part = spec[component] or {}
                yield PodRef(obj, f"spec.{component}", part, True, dict(part.get("labels") or {}))
    elif kind in ("TrainingRuntime", "ClusterTrainingRuntime"):
        for i, rj in enumerate(spec.get("template", {}).get("spec", {}).get("replicatedJobs") or []):
            pod, labels = _tpl(rj.get("template", {}).get("spec", {}).get("template"))
            yield PodRef(obj, f"spec.template.spec.replicatedJobs[{i}:{rj.get('name')}]", pod, False, labels)
    elif kind == "PyTorchJob":
        for role, rs in (spec.get("pytorchReplicaSpecs") or {}).items():
            pod, labels = _tpl(rs.get("template"))
            yield PodRef(obj, f"spec.pytorchReplicaSpecs.{role}", pod, False, labels)
    elif kind == "Experiment":
        # Katib's trial template: a Job or a PyTorchJob whose pods run every trial
        trial = (spec.get("trialTemplate") or {}).get("trialSpec")
        if isinstance(trial, dict) and trial.get("kind") != "Experiment":
            for pod in pod_specs(trial):
                path = f"spec.trialTemplate.trialSpec.{pod.path}"
                yield PodRef(obj, path, pod.spec, pod.long_running, pod.labels)


def _image_problem(image: Any) -> str | None:
    if not isinstance(image, str) or not image:
        return "no image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"{image!r} has no tag (means latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return f"{image!r} uses the latest tag"
    return None


def _resources_problem(res: Any) -> str | None:
    res = res or {}
    missing = [
        f"{kind}.{r}"
        for kind in ("requests", "limits")
        for r in ("cpu", "memory")
        if r not in (res.get(kind) or {})
    ]
    return f"missing {', '.join(missing)}" if missing else None


def _secret_volumes(spec: Obj) -> dict[str, list[str]]:
    """Volume name -> problems of each volume holding a Secret (``secret`` or a ``projected`` source)."""
    out: dict[str, list[str]] = {}
    for v in spec.get("volumes") or []:
        name = v.get("name")
        if "secret" in v:
            holder, items = v["secret"] or {}, (v["secret"] or {}).get("items") or []
        elif any("secret" in src for src in (v.get("projected") or {}).get("sources") or []):
            holder = v["projected"]
            items = [
                i for src in holder.get("sources") or [] for i in (src.get("secret") or {}).get("items") or []
            ]
        else:
            continue
        problems = []
        mode = holder.get("defaultMode", DEFAULT_SECRET_MODE)
        if not isinstance(mode, int) or mode & ~SECRET_FILE_MODE:
            problems.append(f"volume {name}: defaultMode {_octal(mode)} is wider than 0400")
        for i in items:
            if "mode" in i and (not isinstance(i["mode"], int) or i["mode"] & ~SECRET_FILE_MODE):
                problems.append(
                    f"volume {name}: item {i.get('key')} mode {_octal(i['mode'])} is wider than 0400"
                )
        out[name] = problems
    return out


def _octal(mode: Any) -> str:
    return f"{mode:#o}" if isinstance(mode, int) else repr(mode)


def _secret_env(c: Obj) -> list[str]:
    """What hands a Secret to container ``c`` as environment variables."""
    out = [
        f"env {e.get('name')} from secretKeyRef {e['valueFrom']['secretKeyRef'].get('name')}"
        for e in c.get("env") or []
        if (e.get("valueFrom") or {}).get("secretKeyRef")
    ]
    out += [
        f"envFrom secretRef {e['secretRef'].get('name')}"
        for e in c.get("envFrom") or []
        if e.get("secretRef")
    ]
    return out


def check_pod(pod: PodRef) -> list[Violation]:
    out: list[Violation] = []
    r = _ref(pod.obj)
    psc = pod.spec.get("securityContext") or {}
    containers = [("containers", c) for c in pod.spec.get("containers") or []]
    containers += [("initContainers", c) for c in pod.spec.get("initContainers") or []]
    if not containers:
        out.append(Violation(r, pod.path, "image", "no containers"))
    secrets = _secret_volumes(pod.spec)
    for problem in (p for problems in secrets.values() for p in problems):
        out.append(Violation(r, pod.path, "secretsAsFiles", problem))
    if secrets and psc.get("fsGroup") is None:
        out.append(
            Violation(
                r,
                pod.path,
                "secretsAsFiles",
                f"Secret volumes {sorted(secrets)} without securityContext.fsGroup: their 0400 files are "
                "root's, unreadable by a non-root container",
            )
        )
    for group, c in containers:
        where = f"{pod.path}.{group}[{c.get('name')}]"
        sc = c.get("securityContext") or {}

        def bad(rule: str, detail: str, where: str = where) -> None:
            out.append(Violation(r, where, rule, detail))

        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            bad("runAsNonRoot", f"runAsNonRoot is {non_root!r} (container or pod)")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            bad("runAsNonRoot", "runAsUser is 0")
        if sc.get("readOnlyRootFilesystem") is not True:
            bad("readOnlyRootFilesystem", f"readOnlyRootFilesystem is {sc.get('readOnlyRootFilesystem')!r}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad("capabilities", f"capabilities.drop is {caps.get('drop')!r}, not [ALL]")
        if caps.get("add"):
            bad("capabilities", f"capabilities.add is {caps['add']!r}")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad(
                "allowPrivilegeEscalation",
                f"allowPrivilegeEscalation is {sc.get('allowPrivilegeEscalation')!r}",
            )
        if sc.get("privileged"):
            bad("allowPrivilegeEscalation", "privileged is true")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad("seccomp", f"seccompProfile.type is {seccomp!r}")
        if (p := _resources_problem(c.get("resources"))) is not None:
            bad("resources", p)
        if (p := _image_problem(c.get("image"))) is not None:
            bad("image", p)
        for how in _secret_env(c):
            bad("secretsAsFiles", f"{how}: mount the Secret as a file and pass its path (NAME_FILE)")
        for m in c.get("volumeMounts") or []:
            if m.get("name") in secrets and m.get("readOnly") is not True:
                bad(
                    "secretsAsFiles",
                    f"Secret volume {m.get('name')} mounted at {m.get('mountPath')} not readOnly",
                )
        if pod.long_running and group == "containers":
            for probe in ("readinessProbe", "livenessProbe"):
                if not c.get(probe):
                    bad("probes", f"no {probe}")
    return out


def _check_trainjob(obj: Obj, runtimes: set[tuple[str, str]]) -> list[Violation]:
    out: list[Violation] = []
    r, spec = _ref(obj), obj.get("spec") or {}
    trainer = spec.get("trainer") or {}
    if "image" in trainer and (p := _image_problem(trainer["image"])) is not None:
        out.append(Violation(r, "spec.trainer", "image", p))
    if (p := _resources_problem(trainer.get("resourcesPerNode"))) is not None:
        out.append(Violation(r, "spec.trainer.resourcesPerNode", "resources", p))
    rt = spec.get("runtimeRef") or {}
    if (rt.get("kind", "ClusterTrainingRuntime"), rt.get("name")) not in runtimes:
        out.append(
            Violation(
                r,
                "spec.runtimeRef",
                "runtimeRef",
                f"{rt.get('kind', 'ClusterTrainingRuntime')}/{rt.get('name')} is not among the checked "
                "objects, so the posture of its pods cannot be checked",
            )
        )
    return out


def check_objects(objects: Iterable[Obj]) -> list[Violation]:
    """Every posture violation in ``objects`` (empty: all pods comply)."""
    objects = list(objects)
    runtimes = {
        (o["kind"], o.get("metadata", {}).get("name"))
        for o in objects
        if o.get("kind") in ("TrainingRuntime", "ClusterTrainingRuntime")
    }
    out: list[Violation] = []
    for obj in objects:
        if obj.get("kind") == "TrainJob":
            out += _check_trainjob(obj, runtimes)
        for pod in pod_specs(obj):
            out += check_pod(pod)
    return out


def count_pods(objects: Iterable[Obj]) -> int:
    return sum(1 for o in objects for _ in pod_specs(o))
