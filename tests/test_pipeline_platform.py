"""What the pipeline's tasks get from the cluster (kfp-kubernetes platform spec of the checked-in YAML) and
that it agrees with what the chart renders: the data claim, the credential Secrets as files (names, keys,
mount paths, ``*_FILE`` variables), GPU scheduling, the pipeline-runner ServiceAccount."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from marlops.deploy.posture import pod_specs
from marlops.deploy.render import Rendered, helm_template
from marlops.deploy.tools import ToolsUnavailable, ensure_tools
from marlops.pipeline import definitions
from marlops.pipeline.platform import (
    GPU_NODE_SELECTOR,
    GPU_TOLERATIONS,
    PLATFORM,
    SERVICE_ACCOUNT_ENV,
    gpu_placement,
    service_account,
)
from marlops.secret_files import LIBRARY_SECRETS

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "marlops"
Obj = dict[str, Any]
STEPS = ("build-features", "train", "evaluate", "register", "deploy")
# every task of each pipeline (the tuning pipeline's training pipeline is a nested DAG: its tasks count)
TASKS = {"training": STEPS, "retraining": STEPS, "tuning": ("tune", *STEPS)}
MLFLOW, STORE = "mlflow_secret", "object_storage_secret"
# which Secrets each step gets: only the steps that talk to MLflow (and, through it, the object store)
CREDENTIALS = {
    "training": {"register": {MLFLOW, STORE}, "deploy": {MLFLOW}},
    # the warm start downloads the champion from the registry
    "retraining": {"train": {MLFLOW, STORE}, "register": {MLFLOW, STORE}, "deploy": {MLFLOW}},
    # the study's runs are MLflow runs (params and figures, no artifacts)
    "tuning": {"tune": {MLFLOW}, "register": {MLFLOW, STORE}, "deploy": {MLFLOW}},
}


class Compiled:
    """One checked-in pipeline: task → its container spec and its Kubernetes platform config."""

    def __init__(self, name: str) -> None:
        self.spec, platform = definitions.read_compiled(definitions.yaml_path(name))
        self.tasks: dict[str, Obj] = {}
        for task_name, task in self.spec["root"]["dag"]["tasks"].items():
            component = self.spec["components"][task["componentRef"]["name"]]
            if "dag" in component:  # a pipeline in the pipeline: its tasks (their parameters keep the names)
                self.tasks.update(component["dag"]["tasks"])
            else:
                self.tasks[task_name] = task
        self.params = self.spec["root"]["inputDefinitions"]["parameters"]
        self._k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        self._executors = self.spec["deploymentSpec"]["executors"]

    def _executor(self, task: str) -> str:
        return self.spec["components"][self.tasks[task]["componentRef"]["name"]]["executorLabel"]

    def container(self, task: str) -> Obj:
        return self._executors[self._executor(task)]["container"]

    def k8s(self, task: str) -> Obj:
        return self._k8s.get(self._executor(task), {})

    def env(self, task: str) -> dict[str, str]:
        return {
            e["name"]: e["value"] for e in self._executors[self._executor(task)]["container"].get("env", [])
        }

    def default(self, param_ref: Obj) -> Any:
        """The default of the pipeline parameter a platform setting reads (``componentInputParameter``)."""
        return self.params[param_ref["componentInputParameter"]]["defaultValue"]

    def secret_files(self, task: str) -> dict[str, tuple[str, str]]:
        """``NAME`` → (Secret, key) for each ``NAME_FILE`` of ``task``, through its Secret volumes (the
        parameter defaults naming the Secrets); a variable no volume serves fails, naming it."""
        mounts = {v["mountPath"]: v for v in self.k8s(task).get("secretAsVolume", [])}
        out = {}
        for var, path in self.env(task).items():
            if not var.endswith("_FILE"):
                continue
            vol = mounts.get(str(Path(path).parent))
            assert vol is not None, f"{task}: {var}={path}: no Secret mounted at {Path(path).parent}"
            out[var.removesuffix("_FILE")] = (self.default(vol["secretNameParameter"]), Path(path).name)
        return out


@pytest.fixture(scope="module", params=sorted(definitions.PIPELINES))
def compiled(request: pytest.FixtureRequest) -> tuple[str, Compiled]:
    return request.param, Compiled(request.param)


# ----------------------------------------------------------------------------------- the platform spec


def test_every_step_mounts_the_data_claim(compiled: tuple[str, Compiled]) -> None:
    name, c = compiled
    assert c.params["data_claim"]["defaultValue"] == PLATFORM.data_claim == "marlops-data"
    for task in TASKS[name]:
        (mount,) = c.k8s(task).get("pvcMount", [None])
        assert mount is not None, f"{name}/{task}: no pvcMount"
        assert mount["mountPath"] == PLATFORM.data_mount == "/var/lib/marlops", f"{name}/{task}"
        assert mount["pvcNameParameter"] == {"componentInputParameter": "data_claim"}, f"{name}/{task}"
    assert set(c.tasks) == set(TASKS[name])  # every task of the pipeline


def test_credentials_only_on_the_steps_that_use_mlflow(compiled: tuple[str, Compiled]) -> None:
    name, c = compiled
    for task in TASKS[name]:
        want = CREDENTIALS[name].get(task, set())
        volumes = c.k8s(task).get("secretAsVolume", [])
        got = {v["secretNameParameter"]["componentInputParameter"] for v in volumes}
        assert got == want, f"{name}/{task}: Secret volumes {sorted(got)}, expected {sorted(want)}"
        assert all(v["optional"] is True for v in volumes), f"{name}/{task}: a Secret volume is not optional"
        files = c.secret_files(task)
        expected = {k for k in LIBRARY_SECRETS if (MLFLOW in want and k.startswith("MLFLOW_"))}
        expected |= {k for k in LIBRARY_SECRETS if (STORE in want and k.startswith("AWS_"))}
        assert set(files) == expected, (
            f"{name}/{task}: *_FILE for {sorted(files)}, expected {sorted(expected)}"
        )
        # no secret value in the spec, ever: only file paths
        assert not set(c.env(task)) & set(LIBRARY_SECRETS), f"{name}/{task}"
    assert c.params[MLFLOW]["defaultValue"] == "marlops-mlflow"
    assert c.params[STORE]["defaultValue"] == "marlops-object-storage"


def test_gpu_placement_goes_to_the_trainjob_not_to_a_task(compiled: tuple[str, Compiled]) -> None:
    """The train task launches and watches the TrainJob: the job's pods hold the GPUs, so the GPU pool's
    selector and tolerations reach them (through the train component's inputs), and no task sits on a GPU
    node or asks for a GPU (a 2 × 4-GPU job on an 8-GPU pool could never schedule beside it)."""
    name, c = compiled
    inputs = c.tasks["train"]["inputs"]["parameters"]
    wired = ("node_selector", "tolerations", "data_claim")
    assert {k: inputs[k]["componentInputParameter"] for k in wired} == {
        "node_selector": "gpu_node_selector",
        "tolerations": "gpu_tolerations",
        "data_claim": "data_claim",
    }, name
    assert json.loads(c.params["gpu_node_selector"]["defaultValue"]) == GPU_NODE_SELECTOR
    assert json.loads(c.params["gpu_tolerations"]["defaultValue"]) == GPU_TOLERATIONS
    for task in TASKS[name]:
        assert "nodeSelector" not in c.k8s(task) and "tolerations" not in c.k8s(task), f"{name}/{task}"
        resources = c.container(task).get("resources", {})
        assert "accelerator" not in resources, f"{name}/{task}: asks for a GPU"


# ------------------------------------------------------------------------------------- GPU placement


def test_gpu_placement_applies_the_pool_only_when_gpus_are_asked_for() -> None:
    sel, tols = {"pool": "a100"}, [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert gpu_placement(0, sel, tols) == ({}, [])
    assert gpu_placement(4, sel, tols) == (sel, tols)
    assert gpu_placement(1, {}, []) == ({}, [])
    # as the pipeline parameters give them: JSON text
    assert gpu_placement(2, json.dumps(GPU_NODE_SELECTOR), json.dumps(GPU_TOLERATIONS)) == (
        GPU_NODE_SELECTOR,
        GPU_TOLERATIONS,
    )


@pytest.mark.parametrize(
    "selector, tolerations, message",
    [
        ({"pool": 1}, [], "gpu_node_selector: expected a map of label → string value"),
        ("{pool: a}", "[]", "gpu_node_selector: not JSON"),
        ("{}", "[{]", "gpu_tolerations: not JSON"),
        ("", "[]", "gpu_node_selector: expected a map"),
        (["pool"], [], "gpu_node_selector: expected a map"),
        ({}, {"key": "k"}, "gpu_tolerations: expected a list"),
        ({}, [{"key": "k", "operater": "Exists"}], r"gpu_tolerations\[0\]: expected a toleration with keys"),
        ({}, [{"key": "k"}, "x"], r"gpu_tolerations\[1\]: expected a toleration"),
        ({}, [{"key": "k", "operator": "In"}], r"gpu_tolerations\[0\].operator"),
        ({}, [{"key": "k", "effect": "NoRun"}], r"gpu_tolerations\[0\].effect"),
    ],
)
def test_gpu_placement_refuses_bad_parameters_by_name(selector: Any, tolerations: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gpu_placement(0, selector, tolerations)  # checked on CPU runs too: a typo shows before a GPU run


def test_service_account_explicit_then_env_then_the_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SERVICE_ACCOUNT_ENV, raising=False)
    assert service_account() == "marlops-pipeline-runner"
    monkeypatch.setenv(SERVICE_ACCOUNT_ENV, "prod-pipeline-runner")
    assert service_account() == "prod-pipeline-runner"
    assert service_account("mine") == "mine"


# --------------------------------------------------------------------------- the chart and the pipeline


@pytest.fixture(scope="module")
def renders() -> dict[str, Rendered]:
    try:
        tools = ensure_tools()
    except ToolsUnavailable as e:
        pytest.skip(f"helm/kubectl cannot be obtained here: {e}")
    return {
        "default": helm_template(tools, CHART),
        "gpu": helm_template(tools, CHART, values=[CHART / "values-gpu.yaml"]),
    }


def _containers(r: Rendered) -> list[tuple[str, Obj, Obj]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", pod.spec, c)
        for o in r.objects
        for pod in pod_specs(o)
        for c in pod.spec.get("containers") or []
    ]


def _chart_secret_files(pod: Obj, container: Obj) -> dict[str, tuple[str, str, str]]:
    """``NAME`` → (Secret, key, file path) for the library credentials a chart container gets as files."""
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts") or []}
    out = {}
    for e in container.get("env") or []:
        name = e["name"].removesuffix("_FILE")
        if name not in LIBRARY_SECRETS or not e["name"].endswith("_FILE"):
            continue
        path = Path(e["value"])
        secret = volumes[mounts[str(path.parent)]["name"]]["secret"]
        assert secret.get("optional") is True, f"{container['name']}: {secret['secretName']} not optional"
        out[name] = (secret["secretName"], path.name, str(path))
    return out


def test_claim_and_service_account_agree_with_the_chart(renders: dict[str, Rendered]) -> None:
    r = renders["default"]
    claim = r.by_kind("PersistentVolumeClaim")
    assert [c["metadata"]["name"] for c in claim] == [PLATFORM.data_claim]
    runner = [
        sa["metadata"]["name"]
        for sa in r.by_kind("ServiceAccount")
        if sa["metadata"]["labels"]["app.kubernetes.io/component"] == "pipeline-runner"
    ]
    assert runner == [PLATFORM.service_account]
    (binding,) = r.by_kind("RoleBinding")
    assert [s["name"] for s in binding["subjects"]] == [PLATFORM.service_account]
    # the retrain trigger submits retraining runs under that account
    trigger = r.get("Deployment", "marlops-retrain-trigger")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in trigger["env"]}
    assert env[SERVICE_ACCOUNT_ENV] == PLATFORM.service_account
    for name in definitions.PIPELINES:
        assert Compiled(name).params["data_claim"]["defaultValue"] == PLATFORM.data_claim


def _trigger(r: Rendered, fullname: str = "marlops") -> tuple[dict[str, str], dict[str, str]]:
    """The retrain trigger's retraining parameters (``--param``) and env."""
    (c,) = r.get("Deployment", f"{fullname}-retrain-trigger")["spec"]["template"]["spec"]["containers"]
    args = c["args"]
    params = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--param")
    return params, {e["name"]: e.get("value", "") for e in c["env"]}


@pytest.mark.parametrize("release", ["marlops", "prod"])
def test_the_retrain_trigger_submits_runs_wired_to_its_release(release: str, tmp_path: Path) -> None:
    """Drift-triggered retraining: the release's claim, Secrets, MLflow and runner account, paths under
    the claim's mount; every parameter one the retraining pipeline accepts."""
    from marlops.pipeline.submit import _check_params

    try:
        tools = ensure_tools()
    except ToolsUnavailable as e:
        pytest.skip(f"helm/kubectl cannot be obtained here: {e}")
    r = helm_template(tools, CHART, release=release)
    params, env = _trigger(r, "marlops" if release == "marlops" else f"{release}-marlops")
    _check_params("retraining", params)  # refused names would surface only at the first alert
    (claim,) = r.by_kind("PersistentVolumeClaim")
    (runner,) = [
        sa for sa in r.by_kind("ServiceAccount") if sa["metadata"]["name"].endswith("pipeline-runner")
    ]
    assert params["data_claim"] == claim["metadata"]["name"]
    assert env[SERVICE_ACCOUNT_ENV] == runner["metadata"]["name"]
    if release == "marlops":
        assert (
            params["data_claim"] == PLATFORM.data_claim
            and env[SERVICE_ACCOUNT_ENV] == PLATFORM.service_account
        )
    else:  # another release: other names, which the defaults cannot know
        assert params["data_claim"] != PLATFORM.data_claim
    assert (params["mlflow_secret"], params["object_storage_secret"]) == (
        "marlops-mlflow",
        "marlops-object-storage",
    )
    assert params["tracking_uri"] == env["MLFLOW_TRACKING_URI"] and params["namespace"] == "marlops"
    for k in ("feast_dir", "work_dir", "state_dir"):
        assert params[k].startswith(PLATFORM.data_mount + "/"), f"{k}={params[k]}: not on the mounted claim"
    # without persistence there is no claim to name: the parameter keeps its default
    (tmp_path / "v.yaml").write_text("persistence: {enabled: false}\n")
    params, _ = _trigger(helm_template(tools, CHART, values=[tmp_path / "v.yaml"]))
    assert "data_claim" not in params


def test_credential_files_agree_with_the_chart(renders: dict[str, Rendered]) -> None:
    """Every chart container that gets MLflow / object-store credentials gets them from the same Secrets,
    keys and paths as the pipeline's tasks (the training pods of values-gpu.yaml, the predictors…)."""
    c = Compiled("retraining")
    pipeline = {
        name: (secret, key, c.env("register")[name + "_FILE"])
        for name, (secret, key) in c.secret_files("register").items()
    }
    assert set(pipeline) == set(LIBRARY_SECRETS)
    seen = 0
    for r in renders.values():
        for where, pod, container in _containers(r):
            chart = _chart_secret_files(pod, container)
            if not chart:
                continue
            seen += 1
            differ = {k: (v, pipeline[k]) for k, v in chart.items() if pipeline[k] != v}
            assert not differ, f"{r.name} {where}/{container['name']}: chart vs pipeline {differ}"
    assert seen >= 2, "no chart container with credential files: the comparison checked nothing"


def test_gpu_defaults_are_the_training_scheduling_of_values_gpu(renders: dict[str, Rendered]) -> None:
    pods = [pod for o in renders["gpu"].by_kind("TrainingRuntime") for pod in pod_specs(o)]
    assert pods, "values-gpu.yaml renders no TrainingRuntime"
    for pod in pods:
        assert pod.spec["nodeSelector"] == GPU_NODE_SELECTOR
        assert pod.spec["tolerations"] == GPU_TOLERATIONS
