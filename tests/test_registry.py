"""The MLflow registry glue against a real MLflow (temporary sqlite store, local artifacts), no mocks.

Most tests use small fake run folders with the exact layout of `marlops train --out` (tiny ONNX graphs
y = c·x whose constant c tells the teams apart); the slow test registers a real trained team.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from marlops.registry import (
    AGENTS,
    GateConfig,
    RegistryError,
    TrackingConfig,
    evaluate_gate,
    read_run,
)
from marlops.registry.gate import DailyReturns, daily_returns_from_report

ENTRIES = {  # entry names and input names of the real agents (meta.json), with tiny shapes
    "regime": {"regime": ["x"]},
    "structure": {"structure": ["x", "msgs"]},
    "tactical": {"tactical": ["x", "msgs"]},
    "risk": {"risk_encode": ["tactical", "structure"], "risk_q": ["cache", "portfolio"]},
}


# ------------------------------------------------------------------------------------------ folders


def _graph(inputs: list[str], output: str, c: float) -> bytes:
    """``output = c · (sum of the inputs)``, all float32 [1, 4]."""
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in inputs]
    out = helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, 4])
    const = helper.make_tensor("c", TensorProto.FLOAT, [1], [c])
    nodes, acc = [], inputs[0]
    for i, n in enumerate(inputs[1:]):
        nodes.append(helper.make_node("Add", [acc, n], [f"s{i}"]))
        acc = f"s{i}"
    nodes.append(helper.make_node("Mul", [acc, "c"], [output]))
    model = helper.make_model(
        helper.make_graph(nodes, "g", ins, [out], [const]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def make_run(root: Path, c: float, config: dict | None = None) -> Path:
    """A fake `marlops train --out` folder whose every agent multiplies by ``c``."""
    versions = {}
    for agent, entries in ENTRIES.items():
        d = root / "agents" / agent
        d.mkdir(parents=True)
        meta_entries = {}
        for name, inputs in entries.items():
            (d / f"{name}.onnx").write_bytes(_graph(inputs, "y", c))
            meta_entries[name] = {
                "file": f"{name}.onnx",
                "exporter": "test",
                "inputs": {n: {"shape": [1, 4], "dtype": "float32"} for n in inputs},
                "outputs": ["y"],
            }
        (d / "weights.pt").write_bytes(f"{agent} {c}".encode())
        (d / "spec.yaml").write_text(f"agent: {agent}\n")
        version = f"{agent}-{hashlib.sha256(f'{agent}{c}'.encode()).hexdigest()[:12]}"
        meta = {"agent": agent, "version": version, "serving_format": "onnx", "entries": meta_entries}
        (d / "meta.json").write_text(json.dumps(meta))
        versions[agent] = version
    (root / "agents" / "agents.json").write_text(json.dumps({"versions": versions}))
    cfg = {"seed": 0, "train_seeds": [11], "validation_seed": 12, "updates": 2, "lr": 3e-4, "threads": None}
    summary = {
        "regime_val_balanced_accuracy": 0.5,
        "updates": 2,
        "workers_in_sync": True,
        "config": {**cfg, **(config or {})},
        "final": {"reward_mean": -0.01, "episode_return": float("nan")},
    }
    (root / "summary.json").write_text(json.dumps(summary))
    (root / "metrics.jsonl").write_text(
        '{"stage": "regime", "epoch": 1, "step": 1, "regime_loss": 1.5}\n'
        '{"stage": "team", "step": 2, "reward_mean": -0.02, "episode_return": NaN}\n'
        '{"stage": "team", "step": 3, "reward_mean": -0.01, "episode_return": NaN}\n'
        '{"stage": "team", "st'  # a torn last line (a killed worker) is skipped
    )
    (root / "critic.pt").write_bytes(b"critic")
    return root


TRADES = {"exposure": 0.4, "entries": 31.0, "round_trips": 30.0, "round_trips_per_day": 1.2}
NO_TRADES = {"exposure": 0.0, "entries": 0.0, "round_trips": 0.0, "round_trips_per_day": 0.0}


def make_eval(
    root: Path,
    sharpe: float,
    mdd: float = 0.1,
    acc: float = 0.6,
    markets=("seed 101",),
    trades: dict | None = None,
    daily: dict[str, np.ndarray] | None = None,
) -> Path:
    """A fake `marlops evaluate --out` folder (report.json in report.py's format); ``daily``: the team's
    daily returns per market (with costs), as the gate pairs them."""
    root.mkdir(parents=True)
    fig = {"sharpe": sharpe, "max_drawdown": mdd, "total_return": 0.01, "regime_balanced_accuracy": acc}
    fig.update(TRADES if trades is None else trades)
    report = {
        "markets": list(markets),
        "policies": ["buy_and_hold", "team"],
        "aggregate": {
            "with_costs": {
                "team": fig,
                "buy_and_hold": {"sharpe": -1.0, "max_drawdown": 0.3, "sortino": None},
            },
            "without_costs": {"team": {**fig, "sharpe": sharpe + 0.5}},
        },
        "goals": {
            "costs": True,
            "team_beats_baselines": {"status": "pass"},
            "regime_accuracy": {"status": "fail"},
        },
    }
    if daily is not None:
        report["daily_returns"] = {
            "with_costs": {"team": {m: [float(x) for x in v] for m, v in daily.items()}}
        }
        report["days"] = {m: list(range(20_000, 20_000 + len(v))) for m, v in daily.items()}
    (root / "report.json").write_text(json.dumps(report))
    (root / "report.html").write_text("<html>report</html>")
    return root


def daily_series(seed: int, mean: float, sd: float = 0.01, markets=("seed 101", "seed 102"), days: int = 26):
    """Daily returns, every market with exactly this mean and standard deviation (so Sharpes are known)."""
    rng = np.random.default_rng(seed)
    out = {}
    for m in markets:
        e = rng.standard_normal(days)
        out[m] = mean + sd * (e - e.mean()) / e.std(ddof=1)
    return out


# ------------------------------------------------------------------------------------------ stores


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow sqlite database (migrations take seconds: done once, then copied)."""
    from mlflow import MlflowClient

    d = tmp_path_factory.mktemp("mlflow-template")
    MlflowClient(tracking_uri=f"sqlite:///{d / 'mlflow.db'}").search_experiments()
    return d / "mlflow.db"


@pytest.fixture
def store(tmp_path: Path, template_db: Path, monkeypatch: pytest.MonkeyPatch) -> TrackingConfig:
    from marlops.registry import embedded_config

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    d = tmp_path / "mlflow"
    d.mkdir()
    shutil.copy(template_db, d / "mlflow.db")
    monkeypatch.setenv("MARLOPS_MLFLOW_DIR", str(d))
    return embedded_config(d)


def _alias_versions(alias: str) -> dict[str, str]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, out = MlflowClient(), {}
    for a in AGENTS:
        try:
            out[a] = client.get_model_version_by_alias(f"marlops-{a}", alias).version
        except MlflowException:
            pass
    return {a: str(v) for a, v in out.items()}


def _champion_constant(agent: str = "regime") -> float:
    """Load ``models:/marlops-<agent>@champion`` as a pyfunc and read its constant back."""
    import mlflow

    from marlops.registry import model_uri

    model = mlflow.pyfunc.load_model(model_uri(agent))
    entry = next(iter(ENTRIES[agent].items()))
    out = model.predict({n: np.ones((1, 4), np.float32) for n in entry[1]})
    return float(out["y"][0, 0]) / len(entry[1])


# ------------------------------------------------------------------------------------------ the gate (pure)


BASE = {"sharpe": 1.0, "max_drawdown": 0.10, "total_return": 0.05, "regime_balanced_accuracy": 0.80, **TRADES}


def test_gate_promotes_a_better_challenger_and_refuses_a_worse_one() -> None:
    better = {**BASE, "sharpe": 1.3, "max_drawdown": 0.11}
    d = evaluate_gate(better, BASE)
    assert d.promote and not d.first_champion and not d.reasons
    worse = {**BASE, "sharpe": 0.7}
    d = evaluate_gate(worse, BASE)
    assert not d.promote and any(r.startswith("sharpe") for r in d.reasons)
    assert not evaluate_gate(dict(BASE), BASE).promote  # a tie does not beat the champion
    # a better Sharpe bought with a much deeper drawdown, or a lost regime classifier, is refused
    assert not evaluate_gate({**better, "max_drawdown": 0.20}, BASE).promote
    d = evaluate_gate({**better, "regime_balanced_accuracy": 0.70}, BASE)
    assert [c.name for c in d.checks if not c.passed] == ["regime_balanced_accuracy"]
    # thresholds are configurable
    assert not evaluate_gate(better, BASE, GateConfig(min_sharpe_gain=0.5)).promote
    assert evaluate_gate(
        {**better, "max_drawdown": 0.20}, BASE, GateConfig(max_drawdown_increase=0.15)
    ).promote
    assert not evaluate_gate({**better, "total_return": 0.0}, BASE, GateConfig(max_return_drop=0.01)).promote
    # missing regime figures (markets without labels) skip that rule
    assert evaluate_gate({**better, "regime_balanced_accuracy": None}, BASE).promote


def test_gate_without_champion_unevaluated_goals_and_markets() -> None:
    assert evaluate_gate(BASE, None).promote and evaluate_gate(BASE, None).first_champion
    assert not evaluate_gate({}, None).promote  # never promote a team without figures
    assert not evaluate_gate({"sharpe": None}, BASE).promote
    assert not evaluate_gate(BASE, None, GateConfig(min_sharpe=2.0)).promote
    need = GateConfig(required_goals=("regime_accuracy",))
    assert not evaluate_gate(BASE, None, need, challenger_goals={"regime_accuracy": "fail"}).promote
    assert evaluate_gate(BASE, None, need, challenger_goals={"regime_accuracy": "pass"}).promote
    better = {**BASE, "sharpe": 2.0}
    d = evaluate_gate(better, BASE, challenger_markets=["seed 1"], champion_markets=["seed 2"])
    assert not d.promote and "same_markets" in d.reasons[0]
    assert evaluate_gate(
        better, BASE, GateConfig(require_same_markets=False), challenger_markets=["a"], champion_markets=["b"]
    ).promote
    with pytest.raises(ValueError):
        GateConfig(max_drawdown_increase=-1)  # pydantic validates thresholds


def test_gate_refuses_a_team_that_never_trades() -> None:
    flat = {**BASE, "sharpe": 0.0, "max_drawdown": 0.0, **NO_TRADES}
    d = evaluate_gate(flat, None)  # a first champion: registered, never promoted
    assert not d.promote and d.first_champion
    assert d.reasons == ["trades: no trades on the held-out markets"]
    # a flat team also looks "better" than a losing champion: refused all the same
    d = evaluate_gate(flat, {**BASE, "sharpe": -2.0, "max_drawdown": 0.3})
    assert not d.promote and [c.name for c in d.checks if not c.passed] == ["trades"]
    # figures without any trade count are not taken on trust
    bare = {k: v for k, v in BASE.items() if k not in TRADES}
    d = evaluate_gate(bare, None)
    assert not d.promote and "no trade figures" in d.reasons[0]
    assert evaluate_gate(bare, None, GateConfig(require_trades=False)).promote
    # one opened trip held to the end counts as trading (exposure), though no round trip closed
    assert evaluate_gate({**BASE, **NO_TRADES, "exposure": 0.9, "entries": 1.0}, None).promote


def _daily(d: dict[str, np.ndarray]) -> DailyReturns:
    return DailyReturns(
        {m: np.asarray(v) for m, v in d.items()}, {m: list(range(len(v))) for m, v in d.items()}
    )


def test_gate_compares_daily_returns_paired_with_a_noise_margin() -> None:
    champion = daily_series(1, mean=0.0005)  # daily Sharpe 0.05 × √365 ≈ 0.95
    # clearly better: the same days, 0.3 % a day more
    better = {m: v + 0.003 for m, v in champion.items()}
    d = evaluate_gate(BASE, BASE, challenger_daily=_daily(better), champion_daily=_daily(champion))
    (sharpe,) = [c for c in d.checks if c.name == "sharpe"]
    assert (
        d.promote
        and sharpe.passed
        and "paired day-block bootstrap on 52 days of 2 market(s)" in sharpe.detail
    )
    # better on the point estimate (Sharpe ≈ 1.9 vs 0.95), but on other days' luck: within noise
    lucky = daily_series(2, mean=0.001)
    d = evaluate_gate(BASE, BASE, challenger_daily=_daily(lucky), champion_daily=_daily(champion))
    (sharpe,) = [c for c in d.checks if c.name == "sharpe"]
    assert not d.promote and d.reasons == [f"sharpe: {sharpe.detail}"]
    assert "difference +0.9" in sharpe.detail and "needs > +0.000 and a lower bound > -0.500" in sharpe.detail
    # …which the means alone would have promoted, and a margin as wide as the noise lets through
    assert evaluate_gate({**BASE, "sharpe": 1.9}, {**BASE, "sharpe": 0.95}).promote
    wide = GateConfig(sharpe_noise_margin=50.0)
    assert evaluate_gate(
        BASE, BASE, wide, challenger_daily=_daily(lucky), champion_daily=_daily(champion)
    ).promote
    # worse on the point estimate: refused whatever the margin
    d = evaluate_gate(BASE, BASE, wide, challenger_daily=_daily(champion), champion_daily=_daily(better))
    assert not d.promote
    # the verdict is reproducible (seeded) and the seed is a setting
    again = evaluate_gate(BASE, BASE, challenger_daily=_daily(lucky), champion_daily=_daily(champion))
    assert (
        again.checks
        == evaluate_gate(BASE, BASE, challenger_daily=_daily(lucky), champion_daily=_daily(champion)).checks
    )


def test_gate_falls_back_to_means_and_says_why() -> None:
    better = {**BASE, "sharpe": 1.3}
    series = _daily(daily_series(1, 0.001))
    d = evaluate_gate(better, BASE, challenger_daily=series, champion_daily=None)
    (sharpe,) = [c for c in d.checks if c.name == "sharpe"]
    assert d.promote and "the champion's daily returns are unavailable" in sharpe.detail
    assert "means over markets" in sharpe.detail
    other_days = DailyReturns(series.returns, {m: [d + 100 for d in v] for m, v in series.days.items()})
    d = evaluate_gate(better, BASE, challenger_daily=series, champion_daily=other_days)
    assert d.promote and "share no held-out days" in next(c.detail for c in d.checks if c.name == "sharpe")
    assert not evaluate_gate(BASE, better, challenger_daily=series, champion_daily=None).promote
    # report.json → daily returns: the policy and cost setting of the gate, None when absent
    report = {
        "daily_returns": {"with_costs": {"team": {"a": [0.01, -0.02]}}},
        "days": {"a": [5, 6], "b": [1]},
    }
    parsed = daily_returns_from_report(report)
    assert parsed is not None and parsed.days == {"a": [5, 6]} and parsed.n_days == 2
    assert daily_returns_from_report(report, policy="momentum") is None
    assert daily_returns_from_report({"daily_returns": {"with_costs": {"team": {"a": [None]}}}}) is None
    assert daily_returns_from_report({}) is None


def test_interval_metrics_from_report_json() -> None:
    from marlops.registry.tracking import interval_metrics

    sharpe = {"point": 1.0, "low": 0.5, "high": 1.5, "level": 0.95, "method": "day-block bootstrap"}
    report = {
        "intervals": {
            "with_costs": {
                "team": "team",
                "policies": {"team": {"sharpe": sharpe, "max_drawdown_per_market": {"seed 1": 0.1}}},
                "versus": {"momentum": {"sharpe": {**sharpe, "low": None}}},
            }
        }
    }
    assert {k: v for k, v, _ in interval_metrics(report)} == {
        "eval.with_costs.team.ci.sharpe.point": 1.0,
        "eval.with_costs.team.ci.sharpe.low": 0.5,
        "eval.with_costs.team.ci.sharpe.high": 1.5,
        "eval.with_costs.team.ci.vs.momentum.sharpe.point": 1.0,  # no bound: none logged
        "eval.with_costs.team.ci.vs.momentum.sharpe.high": 1.5,
    }
    assert interval_metrics({}) == []


def test_run_folder_checks(tmp_path: Path) -> None:
    run = read_run(make_run(tmp_path / "a", 1.0))
    assert set(run.versions) == set(AGENTS) and run.team_id.startswith("team-")
    assert read_run(make_run(tmp_path / "b", 1.0)).team_id == run.team_id  # same agents, same team
    with pytest.raises(RegistryError, match="no agents/ folder"):
        read_run(tmp_path)
    (tmp_path / "a" / "agents" / "risk" / "risk_q.onnx").unlink()
    with pytest.raises(RegistryError, match="serving graphs missing"):
        read_run(tmp_path / "a")


# ------------------------------------------------------------------------------------------ MLflow


def test_every_experiment_keeps_its_artifacts_under_the_root(
    tmp_path: Path, store: TrackingConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's Default experiment (id 0) and the experiments the package creates by name put their
    artifacts under the store's artifact root, never in ./mlruns of the working directory. The store's
    database comes from a bare MlflowClient (Default at ./mlruns/0), so activate() has to repair it."""
    from mlflow import MlflowClient

    from marlops.registry import embedded_config, log_training_run
    from marlops.registry.config import activate, ensure_experiment

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    root = Path(store.artifact_root.removeprefix("file://"))
    stale = MlflowClient(tracking_uri=store.tracking_uri).get_experiment("0").artifact_location
    assert not stale.startswith(store.artifact_root)  # what MLflow itself made: the repair has work to do

    client = activate(store)
    (cwd / "note.txt").write_text("x")
    default_run = client.create_run("0").info.run_id
    client.log_artifact(default_run, str(cwd / "note.txt"))
    named = ensure_experiment(client, "by-name", store)
    named_run = client.create_run(named).info.run_id
    client.log_artifact(named_run, str(cwd / "note.txt"), "sub")
    logged = log_training_run(make_run(tmp_path / "run", 2.0), config=store)

    assert not (cwd / "mlruns").exists()
    assert (root / "0" / default_run / "artifacts" / "note.txt").is_file()
    assert (root / "by-name" / named_run / "artifacts" / "sub" / "note.txt").is_file()
    assert (root / "marlops" / logged / "artifacts" / "training" / "summary.json").is_file()
    assert client.get_experiment("0").artifact_location == f"{store.artifact_root}/0"
    activate(store)  # idempotent
    assert client.get_experiment("0").artifact_location == f"{store.artifact_root}/0"

    fresh = embedded_config(tmp_path / "fresh")  # a database MLflow creates now, in this working directory
    client = activate(fresh)
    fresh_run = client.create_run("0").info.run_id
    client.log_artifact(fresh_run, str(cwd / "note.txt"))
    assert not (cwd / "mlruns").exists()
    assert (tmp_path / "fresh" / "artifacts" / "0" / fresh_run / "artifacts" / "note.txt").is_file()


def test_activate_exports_credentials_given_as_files(
    tmp_path: Path, store: TrackingConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KFP components reach MLflow without the CLI: activate() fills MLflow's env-only settings from the
    mounted files (a file the optional Secret lacks is skipped)."""
    import os

    from marlops.registry.config import activate

    (tmp_path / "token").write_text("tok-1\n")
    for var in ("MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "")  # recorded, so what activate() sets is undone after the test
        monkeypatch.delenv(var)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY_FILE", str(tmp_path / "absent"))
    activate(store)
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "tok-1"
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ


def test_log_register_aliases_idempotent_and_champion_uri(tmp_path: Path, store: TrackingConfig) -> None:
    from mlflow import MlflowClient

    from marlops.registry import download_agent, list_models, promote, register_run

    run_dir = make_run(tmp_path / "run", 2.0)
    eval_dir = make_eval(tmp_path / "eval", sharpe=0.8)
    reg = register_run(
        run_dir, eval_dir, lineage={"data_hash": "abc123", "feature_views": {"bars_5m": "f1"}}, config=store
    )
    assert reg.challenger and reg.created and set(reg.agents) == set(AGENTS)
    assert {r.version for r in reg.agents.values()} == {"1"}
    assert _alias_versions("challenger") == dict.fromkeys(AGENTS, "1") and _alias_versions("champion") == {}

    # what the run holds: params, metrics (summary, history at steps, evaluation), lineage, artifacts
    client = MlflowClient()
    run = client.get_run(reg.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["config.updates"] == "2" and run.data.params["config.train_seeds"] == "[11]"
    m = run.data.metrics
    assert m["train.regime_val_balanced_accuracy"] == 0.5 and m["eval.with_costs.team.sharpe"] == 0.8
    assert m["eval.without_costs.team.sharpe"] == pytest.approx(1.3)
    assert "train.final.episode_return" not in m  # NaN figures are left out
    assert [x.step for x in client.get_metric_history(reg.run_id, "team.reward_mean")] == [2, 3]
    tags = run.data.tags
    assert tags["marlops.team"] == reg.team and tags["marlops.lineage.data_hash"] == "abc123"
    assert json.loads(tags["marlops.lineage.feature_views"]) == {"bars_5m": "f1"}
    assert tags["marlops.eval.goal.regime_accuracy"] == "fail" and tags["marlops.train_seeds"] == "[11]"
    assert len(tags.get("mlflow.source.git.commit", "x" * 40)) == 40
    assert tags["marlops.package_version"]
    arts = {a.path for a in client.list_artifacts(reg.run_id)}
    assert {"training", "agents", "evaluation"} <= arts
    assert {a.path for a in client.list_artifacts(reg.run_id, "evaluation")} == {
        "evaluation/report.html",
        "evaluation/report.json",
    }
    mv = client.get_model_version("marlops-risk", "1")
    assert mv.tags["serialization_format"] == "onnx" and mv.tags["team"] == reg.team
    assert mv.tags["agent_version"] == read_run(run_dir).versions["risk"] and mv.run_id == reg.run_id
    logged = client.get_logged_model(mv.source.removeprefix("models:/"))  # in the run's experiment,
    assert logged.experiment_id == run.info.experiment_id and str(logged.status) == "READY"
    assert logged.artifact_location.startswith(str(store.artifact_root))  # under the store's artifacts

    # idempotent: the same folder again adds no run and no version, and leaves the aliases alone
    again = register_run(run_dir, eval_dir, config=store)
    assert again.run_id == reg.run_id and not again.created
    assert {r.version for r in again.agents.values()} == {"1"}
    assert len(client.search_model_versions("name = 'marlops-regime'")) == 1
    assert len(client.search_runs([run.info.experiment_id])) == 1

    # first promotion (no champion): the champion URI resolves to the files of version 1
    res = promote(config=store)
    assert res.promoted and res.decision is not None and res.decision.first_champion
    assert _alias_versions("champion") == dict.fromkeys(AGENTS, "1") and _alias_versions("challenger") == {}
    assert _champion_constant("regime") == pytest.approx(2.0)
    assert _champion_constant("risk") == pytest.approx(2.0)
    folder = download_agent("risk", dst=tmp_path / "dl", config=store)
    assert json.loads((folder / "meta.json").read_text()) == json.loads(
        (run_dir / "agents" / "risk" / "meta.json").read_text()
    )
    assert (folder / "risk_q.onnx").read_bytes() == (run_dir / "agents" / "risk" / "risk_q.onnx").read_bytes()
    listing = list_models(store)
    assert listing.champion_team == reg.team and listing.consistent
    assert {r.aliases for r in listing.rows} == {("champion",)}
    assert listing.rows[0].figures["sharpe"] == 0.8


def test_gate_promotion_refusal_and_rollback(tmp_path: Path, store: TrackingConfig) -> None:
    from marlops.registry import download_team, list_models, promote, register_run, rollback

    a = register_run(make_run(tmp_path / "a", 1.0), make_eval(tmp_path / "ea", sharpe=0.5), config=store)
    assert promote(config=store).promoted
    # B beats A: all four agents move together
    b = register_run(make_run(tmp_path / "b", 2.0), make_eval(tmp_path / "eb", sharpe=0.9), config=store)
    res = promote(config=store)
    assert res.promoted and res.champion_team == a.team and res.challenger_team == b.team
    assert _alias_versions("champion") == dict.fromkeys(AGENTS, "2")
    assert _champion_constant() == pytest.approx(2.0)
    # C is worse than B: not promoted, B stays champion, C stays challenger
    c = register_run(make_run(tmp_path / "c", 3.0), make_eval(tmp_path / "ec", sharpe=0.4), config=store)
    res = promote(config=store)
    assert not res.promoted and res.decision is not None and not res.decision.promote
    assert "sharpe" in res.message
    assert _alias_versions("champion") == dict.fromkeys(AGENTS, "2")
    assert _alias_versions("challenger") == dict.fromkeys(AGENTS, "3")
    assert _champion_constant() == pytest.approx(2.0)
    listing = list_models(store)
    assert listing.challenger_team == c.team
    team = download_team(dst=tmp_path / "team", config=store)
    assert json.loads((team / "agents.json").read_text())["versions"] == read_run(tmp_path / "b").versions
    # rollback: champion back to A, B marked rolled back
    rb = rollback(config=store)
    assert rb.restored == dict.fromkeys(AGENTS, "1") and rb.demoted == dict.fromkeys(AGENTS, "2")
    assert _alias_versions("champion") == dict.fromkeys(AGENTS, "1")
    assert _champion_constant() == pytest.approx(1.0)
    assert {r.version for r in list_models(store).rows if r.rolled_back} == {"2"}
    # rerunning the job that made B does not make it the challenger again
    again = register_run(tmp_path / "b", tmp_path / "eb", config=store)
    assert not again.created and not again.challenger
    assert _alias_versions("challenger") == dict.fromkeys(AGENTS, "3")
    with pytest.raises(RegistryError, match="no previous champion"):
        rollback(config=store)  # A was the first champion


def test_promotion_reads_the_logged_daily_returns(tmp_path: Path, store: TrackingConfig) -> None:
    from mlflow import MlflowClient

    from marlops.registry import promote, register_run

    champion_days = daily_series(1, mean=0.0005)
    # a first team that never trades: registered as challenger, not promoted, with the reason
    flat = register_run(
        make_run(tmp_path / "flat", 0.5),
        make_eval(tmp_path / "ef", 0.0, mdd=0.0, trades=NO_TRADES),
        config=store,
    )
    res = promote(config=store)
    assert not res.promoted and "no trades on the held-out markets" in res.message
    assert _alias_versions("champion") == {} and _alias_versions("challenger") == dict.fromkeys(AGENTS, "1")
    gate_tag = json.loads(MlflowClient().get_model_version("marlops-risk", "1").tags["gate"])
    assert gate_tag["first_champion"] and not gate_tag["promote"]
    # A trades: the first champion
    a = register_run(
        make_run(tmp_path / "a", 1.0), make_eval(tmp_path / "ea", 0.9, daily=champion_days), config=store
    )
    assert a.team != flat.team and promote(config=store).promoted
    # B: a higher mean Sharpe, but on other days' luck: the paired bootstrap of the logged daily returns
    # refuses it (the means alone would have promoted it)
    b_eval = make_eval(tmp_path / "eb", 1.9, daily=daily_series(2, mean=0.001))
    register_run(make_run(tmp_path / "b", 2.0), b_eval, config=store)
    res = promote(config=store)
    assert not res.promoted and "paired day-block bootstrap" in res.message
    assert _alias_versions("champion") == dict.fromkeys(AGENTS, "2")
    # C: the same days as A, clearly better: promoted
    better = {m: v + 0.003 for m, v in champion_days.items()}
    register_run(make_run(tmp_path / "c", 3.0), make_eval(tmp_path / "ec", 1.0, daily=better), config=store)
    res = promote(config=store)
    assert res.promoted and res.decision is not None
    assert "paired" in next(c.detail for c in res.decision.checks if c.name == "sharpe")
    assert _alias_versions("champion") == dict.fromkeys(AGENTS, "4")


def test_unevaluated_challenger_and_later_evaluation(tmp_path: Path, store: TrackingConfig) -> None:
    from marlops.registry import log_evaluation, promote, register_run

    a = register_run(make_run(tmp_path / "a", 1.0), config=store)
    res = promote(config=store)
    assert not res.promoted and "evaluated" in res.message  # no figures, no promotion
    assert log_evaluation(a.run_id, make_eval(tmp_path / "ea", sharpe=0.1), store)
    assert not log_evaluation(a.run_id, tmp_path / "ea", store)  # the same report is not logged twice
    assert promote(config=store).promoted


def test_cli_registry(tmp_path: Path, store: TrackingConfig) -> None:
    from marlops.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["registry", "promote"])
    assert res.exit_code == 2 and "no marlops models" in res.output
    res = runner.invoke(app, ["registry", "register", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not a folder" in res.output
    res = runner.invoke(
        app, ["registry", "register", str(make_run(tmp_path / "a", 1.0)), "--lineage", "oops"]
    )
    assert res.exit_code == 2 and "KEY=VALUE" in res.output

    a = make_run(tmp_path / "a2", 1.0)
    res = runner.invoke(
        app,
        [
            "registry",
            "register",
            str(a),
            "--eval",
            str(make_eval(tmp_path / "ea", 0.5)),
            "--lineage",
            "data_hash=abc",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "challenger" in res.output
    res = runner.invoke(app, ["registry", "promote"])
    assert res.exit_code == 0 and "promoted" in res.output
    res = runner.invoke(app, ["registry", "promote"])
    assert res.exit_code == 0 and "nothing to promote" in res.output
    b = make_run(tmp_path / "b", 2.0)
    assert (
        runner.invoke(
            app, ["registry", "register", str(b), "--eval", str(make_eval(tmp_path / "eb", 0.7))]
        ).exit_code
        == 0
    )
    res = runner.invoke(app, ["registry", "promote", "--min-sharpe-gain", "0.5"])
    assert res.exit_code == 1 and "not promoted" in res.output
    res = runner.invoke(app, ["registry", "list"])
    assert res.exit_code == 0 and "champion" in res.output and "challenger" in res.output
    res = runner.invoke(app, ["registry", "list", "--json"])
    assert res.exit_code == 0 and len(json.loads(res.output)["rows"]) == 8
    res = runner.invoke(app, ["registry", "promote", "--min-sharpe-gain", "0.1"])
    assert res.exit_code == 0 and "promoted" in res.output
    res = runner.invoke(app, ["registry", "rollback", "--agent", "nope"])
    assert res.exit_code == 2 and "unknown agent" in res.output
    res = runner.invoke(app, ["registry", "rollback"])
    assert res.exit_code == 0 and "rolled back" in res.output
    res = runner.invoke(app, ["registry", "rollback"])
    assert res.exit_code == 2 and "no previous champion" in res.output


@pytest.mark.slow
def test_real_trained_team(tmp_path: Path, store: TrackingConfig) -> None:
    """A real `marlops train` output: registered, promoted, and served from models:/…@champion."""
    import mlflow

    from marlops.registry import model_uri, promote, register_run
    from marlops.training.market import budget_config, train_team

    out = tmp_path / "train"
    train_team(budget_config("ci", updates=1), out, progress=False)
    reg = register_run(out, make_eval(tmp_path / "eval", sharpe=0.2), config=store)
    assert {a: r.agent_version for a, r in reg.agents.items()} == read_run(out).versions
    assert promote(config=store).promoted
    for agent in AGENTS:
        model = mlflow.pyfunc.load_model(model_uri(agent))
        raw = model.get_raw_model()
        assert raw.version == reg.agents[agent].agent_version
        for entry in raw.entries.values():
            feeds = {n: np.zeros(s["shape"], s["dtype"]) for n, s in entry["inputs"].items()}
            outs = model.predict(feeds)
            assert set(outs) == set(entry["outputs"]) and all(np.isfinite(v).all() for v in outs.values())


def test_warm_start_from_the_registered_champion(tmp_path: Path, store: TrackingConfig) -> None:
    """`marlops train --init-from models:/marlops-{agent}@champion` starts from the champion's weights: with
    every stage set to zero steps the new run's agents are exactly the champion's (same version ids); with
    training they move on from there instead of from a fresh initialisation."""
    from marlops.registry import promote, register_run
    from marlops.training.market import budget_config, train_team
    from marlops.training.warm_start import load_initial_team

    first = tmp_path / "first"
    train_team(budget_config("ci", updates=1), first, progress=False)
    reg = register_run(first, make_eval(tmp_path / "eval", sharpe=0.3), config=store)
    assert promote(config=store).promoted
    champion = {a: r.agent_version for a, r in reg.agents.items()}

    uri = "models:/marlops-{agent}@champion"
    loaded = load_initial_team(uri)
    from marlops.agents.export import net_version

    assert {a: net_version(n) for a, n in loaded.networks().items()} == champion
    nothing = {f"{stage}.epochs": 0 for stage in ("regime", "structure", "tactical")}
    nothing.update({"team.updates": 0, "risk.steps": 0})
    same = tmp_path / "same"
    train_team(budget_config("ci", init_from=uri, **nothing), same, progress=False)
    assert read_run(same).versions == champion
    assert json.loads((same / "summary.json").read_text())["init_from"] == uri
    moved = tmp_path / "moved"
    train_team(budget_config("ci", init_from=uri, updates=1), moved, progress=False)
    assert read_run(moved).versions["tactical"] != champion["tactical"]

    with pytest.raises(ValueError, match="init_from"):
        load_initial_team("models:/marlops-risk/3")
    with pytest.raises(ValueError, match="init_from"):
        load_initial_team(str(tmp_path / "nowhere"))


def test_an_explicit_tracking_uri_is_the_registry_too(tmp_path: Path, monkeypatch) -> None:
    """MLflow writes MLFLOW_REGISTRY_URI into the environment when a store is activated: a later explicit
    tracking URI must not read the previous store's registry (it did: a deploy found another run's
    champion)."""
    from marlops.registry.config import resolve_tracking

    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:////elsewhere/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    mine = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking(mine).registry_uri == mine
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "http://registry:5000")
    assert resolve_tracking().registry_uri == "http://registry:5000"  # both from the environment: honoured
