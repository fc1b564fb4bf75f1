"""The train step's Kubernetes I/O: is there a cluster, who owns the job, create or re-attach, watch and
wait (:mod:`marlops.pipeline.trainjob` builds the objects)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marlops.pipeline.trainjob import (
    PYTORCH_GROUP,
    PYTORCH_VERSION,
    PYTORCHJOBS,
    TRAINER_GROUP,
    TRAINER_VERSION,
    TRAINJOBS,
    JobState,
    Obj,
    OwnerRef,
    job_state,
)

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class JobFailed(RuntimeError):
    """The job ended Failed; the message carries the job's own reason and message."""


class JobTimeout(TimeoutError):
    """The job did not finish within the step's timeout (it keeps running; a retry re-attaches)."""


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


def own_namespace(env: dict[str, str] | None = None, default: str = "default") -> str:
    """The task pod's namespace: KFP's downward-API ``KFP_NAMESPACE``, else the service account's."""
    found = (os.environ if env is None else env).get("KFP_NAMESPACE", "")
    if found:
        return found
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
