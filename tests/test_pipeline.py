"""Kubeflow pipelines: the checked-in IR YAML is what the definitions compile to, parameters are checked,
and the whole training pipeline runs through kfp.local (real Feast, real training, real MLflow) — then
again (idempotent), then the retraining pipeline behind a gate its challenger cannot pass."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from marlops.cli import app
from marlops.pipeline import definitions
from marlops.pipeline.deploy import load_manifests, pin_model_uris
from marlops.pipeline.images import IMAGE
from marlops.pipeline.steps import data_hash, parse_seeds
from marlops.pipeline.submit import _check_params, list_runs, run_local
from marlops.training.config import budget_config

runner = CliRunner()
AGENTS = ("regime", "structure", "tactical", "risk")


# ------------------------------------------------------------------------------------ compiled YAML


@pytest.mark.parametrize("name", sorted(definitions.PIPELINES))
def test_checked_in_yaml_is_what_the_definitions_compile_to(name: str) -> None:
    assert definitions.yaml_path(name).exists(), "run `marlops pipeline compile` and commit the YAML"
    assert not definitions.stale(name), f"pipelines/{name}.yaml is stale: run `marlops pipeline compile`"


def test_stale_detects_an_edited_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = definitions.pipelines_root()
    (tmp_path / "components").symlink_to(root / "components")
    (tmp_path / "pipelines").mkdir()
    for p in (root / "pipelines").iterdir():
        if p.suffix == ".py":
            (tmp_path / "pipelines" / p.name).symlink_to(p)
    doc, platform = definitions.read_compiled(definitions.yaml_path("training"))
    doc["root"]["inputDefinitions"]["parameters"]["budget"]["defaultValue"] = "gpu"
    (tmp_path / "pipelines" / "training.yaml").write_text(yaml.safe_dump_all([doc, platform]))
    monkeypatch.setenv(definitions.ROOT_ENV, str(tmp_path))
    assert definitions.stale("training")
    assert definitions.stale("retraining")  # absent: stale too


def test_compiled_pipeline_has_every_step_on_the_pinned_image() -> None:
    doc, _ = definitions.read_compiled(definitions.yaml_path("training"))
    tasks = doc["root"]["dag"]["tasks"]
    assert set(tasks) == {"build-features", "train", "evaluate", "register", "deploy"}
    assert tasks["evaluate"]["dependentTasks"] == ["train"]
    assert set(tasks["register"]["dependentTasks"]) == {"build-features", "evaluate", "train"}
    executors = doc["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values()}
    assert images == {IMAGE} and not IMAGE.endswith(":latest")
    train = executors["exec-train"]["container"]
    # the train task holds no GPU: with gpus > 0 (or nodes > 1) in a cluster it launches a TrainJob
    assert "accelerator" not in train["resources"]
    args = tasks["train"]["inputs"]["parameters"]
    for name in ("gpus", "nodes", "launch"):
        assert args[name]["componentInputParameter"] == name
    assert args["timeout_s"]["componentInputParameter"] == "train_timeout_s"
    assert args["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    for e in executors.values():  # the image has kfp and marlops: no pip install at task start
        assert "pip install" not in " ".join(e["container"]["command"])
    # the task bodies only call into the package
    assert "from marlops.pipeline import steps" in " ".join(executors["exec-train"]["container"]["command"])
    outputs = doc["root"]["outputDefinitions"]["parameters"]
    assert set(outputs) == {"team", "promoted", "message"}


def test_cli_compile_check_and_params() -> None:
    r = runner.invoke(app, ["pipeline", "compile", "--check"])
    assert r.exit_code == 0, r.output
    assert "training: current" in r.output and "retraining: current" in r.output
    r = runner.invoke(app, ["pipeline", "params", "retraining"])
    assert r.exit_code == 0 and "alert_id" in r.output and "budget" in r.output
    r = runner.invoke(app, ["pipeline", "compile", "nosuch"])
    assert r.exit_code == 2 and "unknown 'nosuch'" in r.output


def test_cli_compile_to_folder(tmp_path: Path) -> None:
    r = runner.invoke(app, ["pipeline", "compile", "retraining", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    doc, _ = definitions.read_compiled(tmp_path / "retraining.yaml")
    assert doc["pipelineInfo"]["name"] == "marlops-retraining"


# ----------------------------------------------------------------------------------------- params


def test_parameters_are_coerced_to_declared_types() -> None:
    p = _check_params("training", {"days": 10, "seed": "3", "budget": "ci", "eval_days": "8.5"})
    assert p == {"days": 10.0, "seed": 3, "budget": "ci", "eval_days": 8.5}
    assert isinstance(p["days"], float) and isinstance(p["seed"], int)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"nosuch": 1}, "['nosuch'] not accepted by the training pipeline"),
        ({"seed": "three"}, "seed: expected integer"),
        ({"seed": 2.5}, "seed: expected integer"),
        ({"days": "inf"}, "days: expected float"),
        ({"days": float("nan")}, "days: expected float"),
        ({"hyperparameters": '{"team.lrr": 1}'}, "hyperparameters: team.lrr: not a training setting"),
        ({"hyperparameters": '{"team.lr": "x"}'}, "hyperparameters: team.lr: expected float, got 'x'"),
        ({"hyperparameters": "team.lr=1"}, "hyperparameters: not JSON"),
    ],
)
def test_bad_parameters_are_refused_by_name(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _check_params("training", params)


def test_cli_run_refuses_bad_params_before_running(tmp_path: Path) -> None:
    r = runner.invoke(app, ["pipeline", "run", "training", "-p", "seed=x", "--root", str(tmp_path)])
    assert r.exit_code == 2 and "seed: expected integer" in r.output
    r = runner.invoke(app, ["pipeline", "run", "training", "-p", "noequals", "--root", str(tmp_path)])
    assert r.exit_code == 2 and "expected KEY=VALUE" in r.output
    r = runner.invoke(app, ["pipeline", "submit", "training"], env={"KFP_HOST": ""})
    assert r.exit_code == 2 and "--host" in r.output
    assert list_runs(tmp_path) == []


def test_parse_seeds() -> None:
    assert parse_seeds("101, 102", "seeds") == [101, 102]
    with pytest.raises(ValueError, match="seeds: expected comma-separated integers"):
        parse_seeds("1,x", "seeds")
    with pytest.raises(ValueError, match="fit_seeds: no seed"):
        parse_seeds(" ", "fit_seeds")


# ------------------------------------------------------------------------------------ lineage, deploy


def test_data_hash_follows_content_not_location(tmp_path: Path) -> None:
    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "x.parquet").write_bytes(b"123")
    (a / "sub" / "y").write_bytes(b"4")
    b = tmp_path / "b"
    (b / "sub").mkdir(parents=True)
    (b / "x.parquet").write_bytes(b"123")
    (b / "sub" / "y").write_bytes(b"4")
    assert data_hash(a) == data_hash(b)
    (b / "lineage.json").write_text("{}")  # the lineage file itself is not data
    assert data_hash(a) == data_hash(b)
    (b / "sub" / "y").write_bytes(b"5")
    assert data_hash(a) != data_hash(b)
    (b / "sub" / "y").rename(b / "sub" / "z")
    (b / "sub" / "z").write_bytes(b"4")
    assert data_hash(a) != data_hash(b)  # names count


def test_pin_model_uris_sets_every_agent_and_leaves_the_rest() -> None:
    from marlops.pipeline.deploy import _agent_of, _containers

    objects = load_manifests()
    uris = {a: f"models:/marlops-{a}/{i + 3}" for i, a in enumerate(AGENTS)}
    pinned, found = pin_model_uris(objects, uris)
    assert found == set(AGENTS)
    changed = 0
    for before, after in zip(objects, pinned, strict=True):
        agent_containers = [c for c in _containers(after) if _agent_of(c.get("args") or [])]
        for c in agent_containers:
            args = c["args"]
            assert args[args.index("--model-uri") + 1] == uris[_agent_of(args)]
        if agent_containers:
            changed += 1
            assert before != after
        else:
            assert before == after  # services, the transformer: untouched
    assert changed >= 4
    assert "@champion" in yaml.safe_dump_all(objects)  # the inputs were not modified in place


def test_pin_model_uris_appends_a_missing_flag() -> None:
    obj = {
        "kind": "InferenceService",
        "spec": {"predictor": {"containers": [{"name": "c", "args": ["serve", "agent", "risk"]}]}},
    }
    pinned, found = pin_model_uris([obj], {"risk": "models:/marlops-risk/9"})
    assert found == {"risk"}
    args = pinned[0]["spec"]["predictor"]["containers"][0]["args"]
    assert args[-2:] == ["--model-uri", "models:/marlops-risk/9"]
    assert obj["spec"]["predictor"]["containers"][0]["args"] == ["serve", "agent", "risk"]  # a copy


# ------------------------------------------------------------------------------- the pipelines, run


def test_training_then_rerun_then_gated_retraining(
    platform: Path, pipeline_params: Callable[..., dict]
) -> None:
    from mlflow import MlflowClient

    from marlops.registry import list_models, resolve_tracking

    root = platform
    # The ci-budget team is one update old: whether it trades on the held-out market is luck, and the gate
    # refuses a team that never trades (tests/test_registry.py). Here the pipeline's mechanics are tested,
    # so its first champion is let through that rule (and only that one).
    first_gate = json.dumps({"require_trades": False})
    first = run_local("training", pipeline_params(gate=first_gate), root / "kfp")
    assert first.state == "SUCCEEDED" and first.outputs["promoted"] is True
    team = first.outputs["team"]
    assert team.startswith("team-")
    run_dir = Path(first.folder)

    # every step left its artifacts: the dataset with lineage, the model, the report, the manifests
    lineage = json.loads((run_dir / "build-features" / "dataset" / "lineage.json").read_text())
    assert len(lineage["data_hash"]) == 64 and lineage["instrument"] == "SYNTH"
    assert {"regime_features", "tactical_features"} <= set(lineage["feature_views"])
    assert (run_dir / "train" / "model" / "agents" / "agents.json").exists()
    assert (run_dir / "evaluate" / "report").read_text().lstrip().lower().startswith("<!doctype html")
    report = json.loads((run_dir / "evaluate" / "evaluation" / "report.json").read_text())
    assert (
        len(report["daily_returns"]["with_costs"]["team"]["seed 101"]) == len(report["days"]["seed 101"]) > 0
    )
    assert report["goal_table"] and "intervals" in report
    assert (Path(root / "feast") / "feature_store.yaml").exists()
    champion = json.loads((root / "serving" / "champion.json").read_text())
    assert champion["team"] == team and set(champion["model_uris"]) == set(AGENTS)
    manifests = list(yaml.safe_load_all((run_dir / "deploy" / "manifests").read_text()))
    text = yaml.safe_dump_all(manifests)
    for agent, uri in champion["model_uris"].items():
        assert uri == f"models:/marlops-{agent}/1" and uri in text

    # the registry holds the team as champion, its run carries the lineage
    cfg = resolve_tracking()
    listing = list_models(cfg)
    assert listing.champion_team == team and listing.challenger_team is None
    run_id = next(r.run_id for r in listing.rows if r.agent == "regime")
    tags = MlflowClient(cfg.tracking_uri).get_run(run_id).data.tags
    assert tags["marlops.lineage.data_hash"] == lineage["data_hash"]
    assert tags["marlops.lineage.trigger"] == "training"
    assert json.loads(tags["marlops.lineage.feature_views"]) == lineage["feature_views"]
    # the train step read its feature rows from the build step's Feast store (training_data="feast")
    trained_on = json.loads(tags["marlops.lineage.training_data"])
    assert trained_on["source"] == "feast" and trained_on["service"] == "risk"
    assert trained_on["data_hash"] == lineage["data_hash"] and trained_on["feast_dir"] == lineage["feast_dir"]
    assert "mlflow.source.git.commit" in tags

    # a rerun is safe: same team, nothing registered twice, nothing promoted, same manifests
    again = run_local("training", pipeline_params(gate=first_gate), root / "kfp")
    assert again.outputs == {**again.outputs, "team": team, "promoted": False}
    assert "already the champion" in again.outputs["message"] or "no challenger" in again.outputs["message"]
    assert len(list_models(cfg).rows) == 4
    assert json.loads((root / "serving" / "champion.json").read_text()) == champion

    # retraining on another market behind a gate no challenger can pass: registered, not promoted
    retrain = run_local(
        "retraining",
        pipeline_params(
            seed=4, train_seed=5, alert_id="drift-123", gate=json.dumps({"min_sharpe_gain": 1e9})
        ),
        root / "kfp",
    )
    assert retrain.outputs["promoted"] is False and retrain.outputs["team"] != team
    assert "not promoted" in retrain.outputs["message"]
    # both reports carry daily returns of the same held-out days: the gate compared them paired
    assert "paired day-block bootstrap" in retrain.outputs["message"]
    listing = list_models(cfg)
    assert listing.champion_team == team and listing.challenger_team == retrain.outputs["team"]
    assert json.loads((root / "serving" / "champion.json").read_text()) == champion
    runs = list_runs(root / "kfp")
    assert [r["pipeline"] for r in runs] == ["training", "training", "retraining"]
    assert all(r["state"] == "SUCCEEDED" for r in runs)


def test_the_tuning_pipeline_hands_its_best_values_to_training(
    platform: Path, pipeline_params: Callable[..., dict]
) -> None:
    from mlflow import MlflowClient

    from marlops.registry import resolve_tracking

    params = pipeline_params(study_name="t2", n_trials=2, tune_budget="ci", jobs=1, tune_seed=3)
    run = run_local("tuning", params, platform / "kfp")
    assert run.state == "SUCCEEDED", run.log
    tuned = json.loads(run.outputs["hyperparameters"])
    best = yaml.safe_load((platform / "work" / "tuning" / "t2" / "best.yaml").read_text())
    assert tuned == best["overrides"] and {"team.lr", "regime.lr", "risk.gamma"} <= set(tuned)
    assert best["default_value"] is not None  # the budget's own configuration, scored beside the trials

    # the training pipeline's run trained with them (its run folder under work_dir/runs)
    (summary_file,) = (platform / "work" / "runs").glob("*/summary.json")
    config = json.loads(summary_file.read_text())["config"]
    for name, value in tuned.items():
        section, _, leaf = name.partition(".")
        assert config[section][leaf] == pytest.approx(value), name
    assert config["team"]["updates"] == budget_config("ci").team.updates  # the ci budget, tuned values over
    assert run.outputs["team"].startswith("team-")

    # each trial was a nested MLflow run under the study's
    client = MlflowClient(resolve_tracking().tracking_uri)
    exp = client.get_experiment_by_name("marlops-tuning")
    trials = [r for r in client.search_runs([exp.experiment_id]) if "marlops.trial" in r.data.tags]
    assert sorted(r.data.tags["marlops.trial"] for r in trials) == ["0", "1"]


# ------------------------------------------------------------------------------- cluster submission


class _KfpApi:
    """A stand-in for the Kubeflow Pipelines REST API (no KFP server can run here): records the requests
    kfp.Client makes and answers the few it needs, so the test sees exactly what a cluster would get."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        requests: list[tuple[str, str, dict]] = []
        self.requests = requests

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                requests.append(("GET", self.path, {}))
                self._reply({})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                requests.append(("POST", self.path, body))
                if self.path.endswith("/experiments"):
                    self._reply({"experiment_id": "exp-1", "display_name": body.get("display_name")})
                else:
                    self._reply({"run_id": "run-42", "experiment_id": "exp-1"})

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def runs(self) -> list[dict]:
        return [b for m, p, b in self.requests if m == "POST" and p.endswith("/runs")]


@pytest.fixture
def kfp_api():
    api = _KfpApi()
    yield api
    api.server.shutdown()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_submit_sends_the_checked_in_spec_and_typed_parameters(kfp_api: _KfpApi) -> None:
    from marlops.pipeline.submit import submit_cluster

    run = submit_cluster("retraining", kfp_api.url, {"alert_id": "drift-9", "gpus": "2", "eval_days": 12})
    assert run.mode == "cluster" and run.run_id == "run-42" and run.state == "SUBMITTED"
    assert run.url == f"{kfp_api.url}/#/runs/details/run-42"
    (body,) = kfp_api.runs()
    assert body["experiment_id"] == "exp-1" and body["display_name"].startswith("marlops-retraining-")
    spec, platform = definitions.read_compiled(definitions.yaml_path("retraining"))
    assert body["pipeline_spec"] == {"pipeline_spec": spec, "platform_spec": platform}
    assert body["service_account"] == "marlops-pipeline-runner"  # the chart's runner: its Role
    assert body["runtime_config"]["parameters"] == {"alert_id": "drift-9", "gpus": 2, "eval_days": 12.0}


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_cli_submit(kfp_api: _KfpApi) -> None:
    r = runner.invoke(app, ["pipeline", "submit", "training", "--host", kfp_api.url, "-p", "budget=gpu"])
    assert r.exit_code == 0, r.output
    assert "run-42" in r.output
    (body,) = kfp_api.runs()
    assert body["runtime_config"]["parameters"] == {"budget": "gpu"}
    r = runner.invoke(app, ["pipeline", "submit", "training", "--host", kfp_api.url, "-p", "gpus=two"])
    assert r.exit_code == 2 and "gpus: expected integer" in r.output
    assert len(kfp_api.runs()) == 1  # nothing sent for the refused one


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_submit_service_account_flag_then_env(kfp_api: _KfpApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's pods use the pipeline runner's account: --service-account, else the variable the chart
    sets on the retrain trigger, else the chart's default name."""
    from marlops.pipeline.submit import submit_retraining

    monkeypatch.setenv("MARLOPS_PIPELINE_SERVICE_ACCOUNT", "prod-pipeline-runner")
    submit_retraining(kfp_api.url, alert_id="drift-1")  # what the webhook's trigger calls
    r = runner.invoke(
        app, ["pipeline", "submit", "training", "--host", kfp_api.url, "--service-account", "mine"]
    )
    assert r.exit_code == 0, r.output
    assert [b["service_account"] for b in kfp_api.runs()] == ["prod-pipeline-runner", "mine"]


@pytest.mark.parametrize("param", ["data_claim", "mlflow_secret", "object_storage_secret"])
def test_an_empty_cluster_object_name_is_refused(param: str) -> None:
    with pytest.raises(ValueError, match=f"{param}: empty"):
        _check_params("retraining", {param: " "})


def test_bad_gpu_placement_is_refused_before_the_run() -> None:
    with pytest.raises(ValueError, match=r"gpu_tolerations\[0\]\.effect"):
        _check_params("training", {"gpu_tolerations": '[{"key": "k", "effect": "NoRun"}]'})
    with pytest.raises(ValueError, match="gpu_node_selector: not JSON"):
        _check_params("training", {"gpu_node_selector": "pool=a100"})


def test_deploy_without_a_champion_deploys_nothing_and_says_so(tmp_path: Path) -> None:
    """A first run whose team the gate refused (one that never trades) ends green with nothing served."""
    from marlops.pipeline.deploy import deploy

    tracking = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    (tmp_path / "mlflow").mkdir()
    d = deploy(tmp_path / "out" / "manifests.yaml", tracking, state_dir=tmp_path / "serving")
    assert (d.team, d.uris, d.objects, d.state) == (None, {}, 0, None)
    manifest = (tmp_path / "out" / "manifests.yaml").read_text()
    assert manifest.startswith("# no champion yet") and list(yaml.safe_load_all(manifest)) == []
    assert not (tmp_path / "serving" / "champion.json").exists()
