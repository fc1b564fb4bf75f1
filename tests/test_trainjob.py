"""The train step's cluster path (marlops.pipeline.trainjob / kube / launch) against a recording stand-in
of the Kubernetes API: a small HTTP server with the endpoints the real ``kubernetes`` client calls (custom
objects create/get, pod read/list/log), a scripted job lifecycle, and the real client pointed at it. The
objects it receives are validated against the CRDs of ../shared/crds; the job's command line is run by the
real CLI."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from marlops.deploy import checks
from marlops.deploy.schemas import validate_objects
from marlops.pipeline import kube, launch, trainjob
from marlops.pipeline.platform import GPU_NODE_SELECTOR, GPU_TOLERATIONS, gpu_placement
from marlops.pipeline.trainjob import JobSpec, OwnerRef

ROOT = Path(__file__).resolve().parents[1]
NS = "kubeflow-user"
RUN_ID = "3f2b9c1e-7a4d-4c55-9e0f-0123456789ab"
POD = "marlops-training-abcde-system-container-impl-123"
WORKFLOW = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "marlops-training-abcde"}
KFP_ENV = {"KFP_POD_NAME": POD, "KFP_POD_UID": "pod-uid-1"}


# ------------------------------------------------------------------------------------ the stand-in


def _condition(kind: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason or kind,
        "message": message or f"job {kind.lower()}",
        "lastTransitionTime": "2026-12-05T15:00:00Z",
    }


@dataclass
class FakeCluster:
    """Jobs by (plural, namespace, name); each GET of a job moves it one step along ``lifecycle`` (a list of
    condition lists); ``on_complete`` runs once when a job reaches a Complete condition (what its pod did)."""

    lifecycle: list[list[dict[str, str]]] = field(
        default_factory=lambda: [[_condition("Created")], [_condition("Running")], [_condition("Complete")]]
    )
    on_complete: Callable[[dict[str, Any]], None] | None = None
    pod_owners: list[dict[str, str]] = field(default_factory=lambda: [{**WORKFLOW, "uid": "wf-uid-1"}])
    log_lines: list[str] = field(default_factory=lambda: ["stage regime: epoch 1", "stage team: update 1"])
    errors: list[int] = field(default_factory=list)  # status codes the next job GETs answer with
    selectors: list[str] = field(default_factory=list)  # label selectors of pod lists
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    warmed: list[Any] = field(default_factory=list)  # TrainArgs of the Feast cache warm-ups before a launch
    jobs: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    steps: dict[tuple[str, str, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self) -> list[dict[str, Any]]:
        return [body for m, _, body in self.requests if m == "POST" and body is not None]

    def handle(self, method: str, url: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        self.requests.append((method, url, body))
        u = urlparse(url)
        parts = u.path.strip("/").split("/")
        if parts[:2] == ["api", "v1"]:
            return self._core(parts[2:], parse_qs(u.query))
        if parts[0] == "apis" and len(parts) >= 6 and parts[3] == "namespaces":
            return self._jobs(method, parts[4], parts[5], parts[6] if len(parts) > 6 else None, body)
        return 404, _status(404, "NotFound", f"no route {u.path}")

    def _jobs(self, method: str, ns: str, plural: str, name: str | None, body: Any) -> tuple[int, Any]:
        if method == "POST":
            key = (plural, ns, body["metadata"]["name"])
            if key in self.jobs:
                return 409, _status(409, "AlreadyExists", f'{plural} "{key[2]}" already exists')
            self.jobs[key] = {**body, "metadata": {**body["metadata"], "uid": "job-uid"}}
            self.steps[key] = -1
            return 201, self.jobs[key]
        key = (plural, ns, name or "")
        if self.errors:
            code = self.errors.pop(0)
            return code, _status(code, "ServiceUnavailable" if code >= 500 else "NotFound", "injected")
        if key not in self.jobs:
            return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
        step = min(self.steps[key] + 1, len(self.lifecycle) - 1)
        self.steps[key] = step
        conds = self.lifecycle[step]
        job = self.jobs[key]
        done = any(c["type"] in ("Complete", "Succeeded") for c in conds)
        if done and not job.get("status", {}).get("done") and self.on_complete is not None:
            self.on_complete(job)
        job["status"] = {"conditions": conds, "done": done}
        return 200, job

    def _core(self, parts: list[str], query: dict[str, list[str]]) -> tuple[int, Any]:
        ns = parts[1]
        if parts[2:] == ["pods"]:  # list by selector: the rank-0 pod once a job runs
            selector = query.get("labelSelector", [""])[0]
            self.selectors.append(selector)
            running = any(s >= 1 for s in self.steps.values())
            items = [_pod("marlops-train-node-0-0", ns, [], "Running")] if running else []
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        if len(parts) == 4 and parts[2] == "pods":
            if parts[3] != POD:
                return 404, _status(404, "NotFound", f'pods "{parts[3]}" not found')
            return 200, _pod(POD, ns, self.pod_owners, "Running")
        if len(parts) == 5 and parts[4] == "log":
            return 200, "\n".join(self.log_lines) + "\n"
        return 404, _status(404, "NotFound", "/".join(parts))


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code,
            "message": message}  # fmt: skip


def _pod(name: str, ns: str, owners: list[dict[str, str]], phase: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": "pod-uid-1", "ownerReferences": owners},
        "spec": {"containers": [{"name": "main", "image": "x"}]},
        "status": {"phase": phase},
    }


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeCluster, client.ApiClient]]:
    fake = FakeCluster()
    # the task reads the training rows from Feast into the store's cache before launching (the job's pods
    # mount the store read-only); these datasets are stand-ins like the training, so record the call only
    monkeypatch.setattr(launch, "_warm_feast_cache", lambda p: fake.warmed.append(p.args))

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n)) if n else None
            with fake.lock:
                code, payload = fake.handle(method, self.path, body)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api = client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{server.server_port}"))
    yield fake, api
    api.close()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def crds() -> Any:
    schemas, note = checks.try_load_crds(ROOT)
    if schemas is None:
        pytest.skip(note)
    return schemas


def _valid(obj: dict[str, Any], crds: Any) -> None:
    report = validate_objects([obj], crds)
    assert report.ok, [str(p) for p in report.problems] + list(report.unchecked.values())


# ------------------------------------------------------------------------------------------ builders


def _spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = dict(
        name="marlops-train-3f2b9c1e-0123456789", namespace=NS, image="ghcr.io/marlops/marlops:0.1.0",
        args=["train", "--out", "/var/lib/marlops/runs/pipeline/runs/abc", "--budget", "gpu"],
        owner=OwnerRef("argoproj.io/v1alpha1", "Workflow", "wf", "wf-uid"),
    )  # fmt: skip
    return JobSpec(**{**base, **kw})


def test_trainjob_matches_the_chart_and_validates_against_its_crd(crds: Any) -> None:
    chart = list(yaml.safe_load_all((ROOT / "manifests/training/trainjob/training.yaml").read_text()))
    runtime = next(d for d in chart if d["kind"] == "TrainingRuntime")
    chart_job = next(d for d in chart if d["kind"] == "TrainJob")
    job = trainjob.build(_spec(nodes=2, gpus=4))
    assert job["apiVersion"] == chart_job["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert ("trainer.kubeflow.org/v1alpha1", "TrainJob") in crds.by_gvk
    assert job["spec"]["runtimeRef"] == chart_job["spec"]["runtimeRef"]
    assert job["spec"]["runtimeRef"]["name"] == runtime["metadata"]["name"] == trainjob.RUNTIME
    t = job["spec"]["trainer"]
    assert (t["numNodes"], t["numProcPerNode"]) == (2, 4)
    assert t["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 4
    assert "runtimePatches" not in job["spec"]  # the runtime's posture, volumes, placement apply
    assert job["metadata"]["ownerReferences"] == [
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "wf", "uid": "wf-uid"}
    ]
    _valid(job, crds)
    patched = trainjob.build(
        _spec(
            service_account="trainer",
            data_claim="other-data",
            node_selector={"pool": "a100"},
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        )
    )
    pod = patched["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert pod["name"] == "node"  # the runtime's replicated job
    assert pod["template"]["spec"]["template"]["spec"]["serviceAccountName"] == "trainer"
    _valid(patched, crds)


def test_pytorchjob_fallback_validates_against_its_crd(crds: Any) -> None:
    job = trainjob.build(_spec(kind="PyTorchJob", nodes=3, gpus=2))
    _valid(job, crds)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    pod = replicas["Master"]["template"]["spec"]
    assert pod["containers"][0]["args"][:1] == ["train"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}  # the chart's GPU placement
    assert {"name": "data", "mountPath": trainjob.DATA_MOUNT, "subPath": "runs"} in pod["containers"][0][
        "volumeMounts"
    ]
    assert job["spec"]["nprocPerNode"] == "2"
    chart = yaml.safe_load((ROOT / "manifests/training/pytorchjob/training.yaml").read_text())
    chart_labels = chart["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"]
    # the chart NetworkPolicy admits pods with its labels
    assert chart_labels.items() <= replicas["Worker"]["template"]["metadata"]["labels"].items()
    assert "Worker" not in trainjob.build(_spec(kind="PyTorchJob"))["spec"]["pytorchReplicaSpecs"]


def test_a_broken_spec_is_refused_by_field() -> None:
    with pytest.raises(ValueError, match=r"name: 'Bad_Name'.*kind: expected one of.*nodes: must be ≥ 1"):
        trainjob.build(_spec(name="Bad_Name", kind="MPIJob", nodes=0))


def test_job_names_follow_run_and_configuration() -> None:
    a = trainjob.job_name(RUN_ID, "aaaa")
    assert a == trainjob.job_name(RUN_ID, "aaaa")  # the retried task computes the same name
    assert a != trainjob.job_name(RUN_ID, "bbbb") and a != trainjob.job_name("other-run", "aaaa")
    assert a.startswith("marlops-train-3f2b9c1e-") and len(a) <= 63
    assert trainjob.job_name("", "k").startswith("marlops-train-norun-")


def test_job_states_of_both_kinds() -> None:
    s = trainjob.job_state
    assert s({}).phase == "Pending"
    assert s({"status": {"conditions": [_condition("Created"), _condition("Running")]}}).phase == "Running"
    failed = s({"status": {"conditions": [_condition("Running"), _condition("Failed", "OOM", "node 1")]}})
    assert (failed.phase, failed.reason, failed.message) == ("Failed", "OOM", "node 1")
    assert s({"status": {"conditions": [_condition("Succeeded")]}}).phase == "Complete"  # PyTorchJob
    off = {**_condition("Complete"), "status": "False"}
    assert s({"status": {"conditions": [off]}}).phase == "Pending"


def test_when_the_step_launches_a_job() -> None:
    yes, no = (lambda: True), (lambda: False)
    assert launch.job_kind("auto", 0, 1, yes) is None  # CPU, one node: in-process
    assert launch.job_kind("auto", 1, 1, yes) == "TrainJob"
    assert launch.job_kind("auto", 0, 2, yes) == "TrainJob"
    assert launch.job_kind("auto", 4, 2, no) is None  # locally nothing changes
    assert launch.job_kind("local", 4, 2, yes) is None
    assert launch.job_kind("PyTorchJob", 0, 1, yes) == "PyTorchJob"
    with pytest.raises(ValueError, match="launch: 'trainjob' needs a Kubernetes cluster"):
        launch.job_kind("trainjob", 1, 1, no)
    with pytest.raises(ValueError, match="launch: expected one of"):
        launch.job_kind("slurm", 1, 1, yes)
    with pytest.raises(ValueError, match="nodes ≥ 1"):
        launch.job_kind("auto", 0, 0, yes)


# ------------------------------------------------------------------ the command line is the CLI's


def _dataset(tmp_path: Path) -> Path:
    ds = tmp_path / "dataset"
    ds.mkdir()
    (ds / "meta.json").write_text(json.dumps({"source": "synthetic", "seed": 0, "days": 20}))
    (ds / "bars.parquet").write_bytes(b"bars")
    # the build step's lineage: the job reads the feature rows from its Feast store (--from-feast)
    (tmp_path / "feast").mkdir()
    lineage = {"data_hash": "d" * 64, "feast_dir": str(tmp_path / "feast"), "instrument": "SYNTH"}
    (ds / "lineage.json").write_text(json.dumps(lineage))
    return ds


def _run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``marlops <argv>`` through the real CLI, training replaced by writing what the run would: the
    configuration the CLI built lands in summary.json (as train_team records it)."""
    import marlops.training.market as market
    from marlops.cli import app

    seen: dict[str, Any] = {}

    def fake_train_team(cfg: Any, out: Path, progress: bool = True) -> Any:
        out.mkdir(parents=True, exist_ok=True)
        (out / "agents").mkdir(exist_ok=True)
        (out / "agents" / "agents.json").write_text("{}")
        (out / "critic.pt").write_bytes(b"critic")
        summary = {"config": cfg.key(), "updates": 7, "env_steps": 700, "wall_s": 1.5, "resumed_from": None,
                   "regime_val_balanced_accuracy": 0.5, "final": {"reward": 1.0}}  # fmt: skip
        (out / "summary.json").write_text(json.dumps(summary, default=str))
        seen["cfg"] = cfg
        return market.TrainSummary(out, None, 0.5, 7, 700, 1.5, {"reward": 1.0})

    with monkeypatch.context() as m:
        m.setattr(market, "train_team", fake_train_team)
        m.delenv("PET_NNODES", raising=False)
        m.delenv("PET_NPROC_PER_NODE", raising=False)
        r = CliRunner().invoke(app, argv)
    assert r.exit_code == 0, r.output
    return json.loads(json.dumps(seen["cfg"].key(), default=str))


def test_the_jobs_command_line_is_marlops_train_with_the_same_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import marlops.training.market as market
    from marlops.pipeline import steps

    ds, work = _dataset(tmp_path), tmp_path / "work"
    tuned = json.dumps({"team.lr": 2.5e-4, "risk.gamma": 0.97, "team.anneal_lr": False})  # the tuning step's
    p = launch.plan(ds, "ci", 3, 5, work, hyperparameters=tuned)
    argv = p.args.argv()
    assert argv[:3] == ["train", "--out", str(p.run_dir)]
    assert argv[argv.index("--from-feast") + 1] == str((tmp_path / "feast").resolve())
    assert argv[argv.index("--instrument") + 1] == "SYNTH"
    assert "--set" in argv and "team.lr=0.00025" in argv
    assert (p.config["team"]["lr"], p.config["risk"]["gamma"], p.config["team"]["anneal_lr"]) == (
        2.5e-4, 0.97, False,
    )  # fmt: skip
    assert _run_cli(argv, monkeypatch) == p.config  # every option exists and maps to the same config
    untuned = launch.plan(ds, "ci", 3, 5, work)
    assert untuned.run_dir != p.run_dir and "--set" not in untuned.args.argv()  # the values key the run
    # and the local path (steps.train with a work_dir) trains the same run in the same folder
    seen: dict[str, Any] = {}

    def capture(cfg: Any, run_dir: Path, progress: bool = True) -> Any:
        seen.update(cfg=cfg, run_dir=run_dir)
        return market.TrainSummary(run_dir, None, 0.5, 1, 1, 0.1)

    monkeypatch.setattr(market, "train_team", capture)
    steps.train(ds, tmp_path / "model", "ci", 3, 5, work, progress=False, hyperparameters=tuned)
    assert seen["run_dir"] == p.run_dir
    assert json.loads(json.dumps(seen["cfg"].key(), default=str)) == p.config


def test_work_dir_must_be_shared_with_the_job(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"work_dir: .*absolute path on the data volume"):
        launch.plan(_dataset(tmp_path), "ci", 0, 0, "data/pipeline")


# -------------------------------------------------------------------------- against the stand-in


def _train(
    tmp_path: Path,
    api: client.ApiClient,
    timeout_s: float = 10.0,
    kind: str = "TrainJob",
    data: str = "feast",
) -> Any:
    selector, tolerations = gpu_placement(4, json.dumps(GPU_NODE_SELECTOR), json.dumps(GPU_TOLERATIONS))
    opts = launch.ClusterOptions(
        kind=kind, gpus=4, nodes=2, timeout_s=timeout_s, run_id=RUN_ID, namespace=NS, poll_s=0.02,
        node_selector=selector, tolerations=tolerations, data_claim="prod-marlops-data",
    )  # fmt: skip
    return launch.train_on_cluster(
        tmp_path / "dataset",
        tmp_path / "model",
        "ci",
        3,
        5,
        tmp_path / "work",
        "",
        "",
        opts,
        api,
        KFP_ENV,
        data,
    )


def _cli_pod(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, Any]], None]:
    """What the job's pod does: ``marlops`` with the job's args (the image's entry point is ``marlops``)."""

    def run(job: dict[str, Any]) -> None:
        spec = job["spec"]
        args = spec["trainer"]["args"] if "trainer" in spec else _pytorch_args(job)
        _run_cli(args, monkeypatch)

    return run


def _pytorch_args(job: dict[str, Any]) -> list[str]:
    return list(job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"])


def test_the_step_creates_a_trainjob_watches_it_and_hands_the_run_on(
    cluster: tuple[FakeCluster, client.ApiClient],
    crds: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, api = cluster
    fake.on_complete = _cli_pod(monkeypatch)
    _dataset(tmp_path)
    t = _train(tmp_path, api)
    [job] = fake.posts()
    assert fake.requests[0][1].startswith(f"/api/v1/namespaces/{NS}/pods/{POD}")  # the owner is looked up
    assert fake.requests[1][1] == f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NS}/trainjobs"
    _valid(job, crds)
    p = launch.plan(tmp_path / "dataset", "ci", 3, 5, tmp_path / "work")
    meta = job["metadata"]
    assert meta["name"] == trainjob.job_name(RUN_ID, p.key) and meta["namespace"] == NS
    assert meta["labels"][trainjob.RUN_LABEL] == RUN_ID and meta["labels"][trainjob.KEY_LABEL] == p.key
    assert meta["ownerReferences"] == [{**WORKFLOW, "uid": "wf-uid-1"}]  # the run's Workflow, not the pod
    assert job["spec"]["runtimeRef"]["name"] == "marlops-torch"
    assert job["spec"]["trainer"]["args"] == p.args.argv()
    assert fake.warmed == [p.args]  # the Feast rows read once, by the task, before the job starts
    assert (job["spec"]["trainer"]["numNodes"], job["spec"]["trainer"]["numProcPerNode"]) == (2, 4)
    # the pipeline's GPU placement and data claim reach the job's pods (not the launching task's)
    [patch] = job["spec"]["runtimePatches"]
    pod = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"][
        "template"
    ]
    assert pod["spec"]["nodeSelector"] == GPU_NODE_SELECTOR and pod["spec"]["tolerations"] == GPU_TOLERATIONS
    assert pod["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "prod-marlops-data"}}
    ]
    # the Model artifact: the run's files, as the local path copies them
    model = tmp_path / "model"
    assert (model / "agents" / "agents.json").exists() and (model / "critic.pt").exists()
    assert json.loads((model / "summary.json").read_text())["config"] == p.config
    assert (t.updates, t.env_steps, t.out, t.run_dir) == (7, 700, model, p.run_dir)
    out = capsys.readouterr().out
    for line in ("created", "Created", "Running", "Complete"):
        assert line in out
    assert "[marlops-train-node-0-0] stage team: update 1" in out  # the trainer pod's log, streamed
    assert f"jobset.sigs.k8s.io/jobset-name={meta['name']}" in fake.selectors[0]


def test_a_retried_task_reattaches_instead_of_starting_twice(
    cluster: tuple[FakeCluster, client.ApiClient],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, api = cluster
    fake.on_complete = _cli_pod(monkeypatch)
    _dataset(tmp_path)
    _train(tmp_path, api)
    fake.steps = {k: 0 for k in fake.steps}  # the first attempt died while the job was running
    first = len(fake.requests)
    _train(tmp_path, api)
    assert len(fake.jobs) == 1  # one job, ever
    retry = fake.requests[first:]
    assert [m for m, _, _ in retry].count("POST") == 1  # answered 409 ...
    name = next(iter(fake.jobs))[2]
    gets = [u for m, u, _ in retry if m == "GET" and u.endswith(f"/trainjobs/{name}")]
    assert len(gets) >= 2  # ... then the existing job is read and watched
    assert "exists — re-attaching" in capsys.readouterr().out


def test_a_job_with_other_arguments_under_the_name_is_refused(
    cluster: tuple[FakeCluster, client.ApiClient],
) -> None:
    _, api = cluster
    obj = trainjob.build(_spec())
    kube.create_or_attach(api, obj, log=lambda s: None)
    other = trainjob.build(_spec(args=["train", "--budget", "ci"]))
    with pytest.raises(RuntimeError, match="exists with other arguments"):
        kube.create_or_attach(api, other, log=lambda s: None)


def test_a_failed_job_fails_the_step_with_its_reason(
    cluster: tuple[FakeCluster, client.ApiClient], tmp_path: Path
) -> None:
    fake, api = cluster
    fake.lifecycle = [
        [_condition("Created")],
        [_condition("Failed", "BackoffLimitExceeded", "node-1 exited with code 137 (OOMKilled)")],
    ]
    _dataset(tmp_path)
    with pytest.raises(kube.JobFailed, match=r"failed: BackoffLimitExceeded: node-1 exited with code 137"):
        _train(tmp_path, api)
    assert not (tmp_path / "model").exists()


def test_a_job_past_the_timeout_fails_the_step_clearly(
    cluster: tuple[FakeCluster, client.ApiClient], tmp_path: Path
) -> None:
    fake, api = cluster
    fake.lifecycle = [[_condition("Created")], [_condition("Running")]]
    fake.log_lines = []
    _dataset(tmp_path)
    with pytest.raises(kube.JobTimeout, match=r"not finished after 0.3 s \(last state Running.*re-attaches"):
        _train(tmp_path, api, timeout_s=0.3)


def test_the_pytorchjob_fallback_runs_the_same_way(
    cluster: tuple[FakeCluster, client.ApiClient], crds: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, api = cluster
    fake.on_complete = _cli_pod(monkeypatch)
    fake.lifecycle = [[_condition("Created")], [_condition("Running")], [_condition("Succeeded")]]
    _dataset(tmp_path)
    _train(tmp_path, api, kind="PyTorchJob")
    [job] = fake.posts()
    assert fake.requests[1][1] == f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs"
    _valid(job, crds)
    assert (tmp_path / "model" / "summary.json").exists()


def test_the_owner_is_the_pod_without_a_workflow_and_none_outside_kfp(
    cluster: tuple[FakeCluster, client.ApiClient],
) -> None:
    fake, api = cluster
    fake.pod_owners = []
    assert kube.task_owner(api, NS, KFP_ENV) == OwnerRef("v1", "Pod", POD, "pod-uid-1")
    assert kube.task_owner(api, NS, {}) is None
    assert kube.own_namespace({"KFP_NAMESPACE": "team-a"}) == "team-a"
    missing = {"KFP_POD_NAME": "gone", "KFP_POD_UID": "u"}
    assert kube.task_owner(api, NS, missing) == OwnerRef("v1", "Pod", "gone", "u")


def test_train_args_are_exactly_the_cli_options() -> None:
    """Every TrainArgs field is a ``marlops train`` option (and every option but the launcher's own is a
    field): parsed by the CLI's click command, each value lands on its parameter."""
    from dataclasses import fields

    import typer.main

    from marlops.cli import app
    from marlops.training.command import TrainArgs
    from marlops.training.config import parse_settings

    cmd = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    assert {f.name for f in fields(TrainArgs)} == {p.name for p in cmd.params} - {"nproc", "fresh"}
    args = TrainArgs(
        out="/runs/x", budget="ci", updates=3, days=9, dataset="/d", regime_targets="hmm", labels="/l.csv",
        holdout_fraction=0.25, seed=4, init_from="models:/marlops-{agent}@champion", checkpoint_every=2,
        threads=1, settings={"team.lr": 1e-4, "team.anneal_lr": True, "regime.epochs": 2},
    )  # fmt: skip
    ctx = cmd.make_context("train", args.argv()[1:])
    expected = {f.name: getattr(args, f.name) for f in fields(TrainArgs)}
    for name in ("out", "dataset", "labels"):
        expected[name] = Path(expected[name])
    got = {k: v for k, v in ctx.params.items() if k in expected}
    got["settings"] = parse_settings(got["settings"])  # --set NAME=VALUE, read back
    assert got == expected


def test_the_wait_outlives_api_hiccups_and_notices_a_deleted_job(
    cluster: tuple[FakeCluster, client.ApiClient], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, api = cluster
    obj = kube.create_or_attach(api, trainjob.build(_spec()), log=lambda s: None)
    fake.errors = [503, 503]
    done = kube.wait(api, obj, timeout_s=10, poll_s=0.01, follow_logs=False)
    assert trainjob.job_state(done).phase == "Complete"
    assert "API error 503" in capsys.readouterr().out
    fake.errors = [404]
    with pytest.raises(kube.JobFailed, match="deleted while this step waited"):
        kube.wait(api, obj, timeout_s=10, poll_s=0.01, follow_logs=False)


@pytest.mark.slow
def test_the_jobs_command_really_trains_what_the_step_hands_on(
    cluster: tuple[FakeCluster, client.ApiClient], tmp_path: Path
) -> None:
    """No stand-in for training: the job's pod is the real ``marlops train`` (ci budget) on a real dataset,
    and the step accepts its run only because summary.json records the configuration it planned."""
    from marlops.cli import app
    from marlops.market.dataset import dataset_from_ticks
    from marlops.market.feed import FeedConfig
    from marlops.market.synthetic import generate_market

    fake, api = cluster

    def pod(job: dict[str, Any]) -> None:
        r = CliRunner().invoke(app, job["spec"]["trainer"]["args"])
        assert r.exit_code == 0, r.output

    fake.on_complete = pod
    m = generate_market(days=12, seed=3)
    dataset_from_ticks(
        tmp_path / "dataset", m.ticks, FeedConfig(), {"source": "synthetic", "seed": 3}, m.labels
    )
    t = _train(
        tmp_path, api, data="dataset"
    )  # a dataset without a Feast store (the Feast path: test_pipeline)
    assert (tmp_path / "model" / "agents").is_dir() and t.updates > 0
    assert json.loads((tmp_path / "model" / "summary.json").read_text())["world_size"] == 1
