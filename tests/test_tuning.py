"""marlops tune (issue 19): the search space, a tiny study that prunes and resumes after being killed, the
objective's markets (never the held-out seeds), the Katib Experiment, the command's help."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import typer
import yaml
from typer.testing import CliRunner

from marlops.evaluation.held_out import HELD_OUT_SEEDS
from marlops.training.config import budget_config, default_config, parse_settings
from marlops.tuning.commands import tune_cmd
from marlops.tuning.katib import best_values, katib_name, render_experiment, space_of, validate_experiment
from marlops.tuning.space import load_space
from marlops.tuning.study import (
    TrialEvents,
    TuneOptions,
    make_sampler,
    open_study,
    optimize,
    sampler_seed,
    trial_config,
    write_best,
    write_models,
)
from marlops.tuning.workers import _TrialWatch, worker_config, worker_options

REPO = Path(__file__).resolve().parents[1]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("tune")(tune_cmd)

    @app.command("other")
    def other() -> None:  # two commands: typer then keeps "tune" as a subcommand name
        pass

    return app


# ------------------------------------------------------------------------------------------- the space


def test_space_suggests_every_parameter_and_honours_conditions() -> None:
    sp = load_space()
    assert sp.metric == "validation_utility" and sp.goal == "maximize"
    base = {p.name: (p.choices[0] if p.kind == "categorical" else p.low) for p in sp.params}
    on = sp.suggest(optuna.trial.FixedTrial({**base, "team.value_norm": True}))
    off = sp.suggest(optuna.trial.FixedTrial({**base, "team.value_norm": False}))
    assert set(on) == set(sp.names) and set(off) == set(sp.names) - {"team.value_clip"}
    assert sp.active({**on, "team.value_norm": False}) == {
        k: v for k, v in on.items() if k != "team.value_clip"
    } | {"team.value_norm": False}
    # every parameter is a setting of the trainer, shared (team.*) and per agent together
    cfg = trial_config(sp, "ci", on)
    for name, value in on.items():
        section, _, leaf = name.partition(".")
        assert getattr(getattr(cfg, section), leaf) == value
    assert {n.partition(".")[0] for n in sp.names} >= {"team", "regime", "structure", "tactical", "risk"}
    assert parse_settings(["team.lr=1.0e-4", "team.anneal_lr=true"]) == {
        "team.lr": 1e-4,
        "team.anneal_lr": True,
    }


def test_a_study_refuses_the_held_out_seeds(models_copy: Path) -> None:
    data = yaml.safe_load((models_copy / "team.yaml").read_text())
    data["budgets"]["ci"]["validation_seed"] = HELD_OUT_SEEDS[0]
    (models_copy / "team.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="held out"):
        trial_config(load_space(), "ci", {})


def test_best_values_are_written_where_they_live(tmp_path: Path) -> None:
    values = {"team.lr": 5e-5, "tactical.lr": 2e-4, "risk.per_alpha": 0.5, "team.anneal_lr": True}
    d = write_models(values, tmp_path / "models")
    cfg = default_config(d)
    assert (cfg.team.lr, cfg.tactical.lr, cfg.risk.per_alpha, cfg.team.anneal_lr) == (5e-5, 2e-4, 0.5, True)
    assert yaml.safe_load((d / "tactical.yaml").read_text())["training"]["lr"] == 2e-4
    assert "lr" not in (yaml.safe_load((d / "team.yaml").read_text())["risk"])


# ------------------------------------------------------------------------------------------------ Katib


@pytest.mark.parametrize("budget", ["small", "gpu"])
def test_katib_experiment_validates_and_samples_the_local_space(budget: str) -> None:
    sp = load_space()
    exp = render_experiment(sp, budget, n_trials=12, jobs=2)
    assert validate_experiment(exp) == []
    assert space_of(exp) == sp.as_dict()
    spec = exp["spec"]
    assert spec["objective"]["objectiveMetricName"] == sp.metric and spec["objective"]["type"] == sp.goal
    assert (
        spec["algorithm"]["algorithmName"] == "tpe" and spec["earlyStopping"]["algorithmName"] == "medianstop"
    )
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    trial = spec["trialTemplate"]["trialSpec"]
    assert trial["kind"] == ("PyTorchJob" if budget == "gpu" else "Job")
    # a broken Experiment is caught
    bad = yaml.safe_load(yaml.safe_dump(exp))
    bad["spec"]["parameters"][0]["feasibleSpace"]["maximum"] = "1"
    assert any("maximum" in p for p in validate_experiment(bad))


def test_katib_validation_accepts_trial_metadata_references() -> None:
    """A trial parameter may name Katib's trial metadata (``${trialSpec.Name}``: the chart's trial folder);
    references to nothing, unused trial parameters and undeclared placeholders are Katib errors."""
    exp = render_experiment(load_space(), "small")
    template = exp["spec"]["trialTemplate"]
    template["trialParameters"].append({"name": "trialName", "reference": "${trialSpec.Name}"})
    c = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    c["env"].append(
        {"name": "MARLOPS_TRIAL_DIR", "value": "/var/lib/marlops/runs/${trialParameters.trialName}"}
    )
    assert validate_experiment(exp) == []
    template["trialParameters"][-1]["reference"] = "${trialSpec.Nmae}"  # neither a parameter nor metadata
    assert [p for p in validate_experiment(exp) if "unmatched" in p], validate_experiment(exp)
    template["trialParameters"][-1]["reference"] = "${trialSpec.Name}"
    c["env"].pop()  # declared, never used
    assert [p for p in validate_experiment(exp) if "['trialName'] unused" in p]
    c["command"].append("${trialParameters.nope}")
    assert [p for p in validate_experiment(exp) if "undeclared" in p and "nope" in p]


# ------------------------------------------------------------------------------------------ the command


def test_tune_help() -> None:
    result = CliRunner().invoke(_app(), ["tune", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    for option in (
        "--n-trials",
        "--timeout",
        "--budget",
        "--study-name",
        "--storage",
        "--jobs",
        "--render-katib",
    ):
        assert option in result.output
    assert "held-out" in result.output and "Optuna" in result.output


def test_render_katib_command(tmp_path: Path) -> None:
    out = tmp_path / "experiment.yaml"
    result = CliRunner().invoke(_app(), ["tune", "--render-katib", str(out), "--budget", "small"])
    assert result.exit_code == 0, result.output
    exp = yaml.safe_load(out.read_text())
    assert exp["kind"] == "Experiment" and space_of(exp) == load_space().as_dict()


# ------------------------------------------------------------------------------ the objective's markets


def test_a_trial_touches_only_its_training_and_validation_markets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every synthetic market a Katib/Optuna trial generates is recorded: the budget's training and
    validation seeds, never a held-out one; and the trial prints Katib's name=value lines."""
    import marlops.env.market_env as market_env
    import marlops.training.market as market

    touched: list[int] = []
    real = market_env.synthetic_market_data

    def recording(seed: int, *args: Any, **kwargs: Any) -> Any:
        touched.append(seed)
        return real(seed, *args, **kwargs)

    monkeypatch.setattr(market_env, "synthetic_market_data", recording)
    monkeypatch.setattr(market, "synthetic_market_data", recording)
    result = CliRunner().invoke(_app(), ["tune", "--trial", "--budget", "ci", "--set", "team.lr=2.0e-4"])
    assert result.exit_code == 0, result.output
    cfg = budget_config("ci")
    assert touched and set(touched) <= {*cfg.train_seeds, cfg.validation_seed}
    assert cfg.validation_seed in touched and not set(touched) & set(HELD_OUT_SEEDS)
    lines = [ln for ln in result.output.splitlines() if ln.startswith("validation_utility=")]
    assert len(lines) == cfg.team.updates + 1  # one per team update, then the whole team's
    float(lines[-1].partition("=")[2])


# -------------------------------------------------------------------------- a tiny study, killed, resumed

_WORKER = """
import sys, optuna
from pathlib import Path
from marlops.tuning.space import load_space
from marlops.tuning.study import TuneOptions, optimize

class PruneNumbers(optuna.pruners.BasePruner):
    def __init__(self, numbers): self.numbers = set(numbers)
    def prune(self, study, trial): return trial.number in self.numbers

opts = TuneOptions(study_name="tiny", budget="ci", n_trials=3, out_root=Path(sys.argv[1]), mlflow=False,
                   baseline=False)
optimize(opts, load_space(), pruner=PruneNumbers([int(x) for x in sys.argv[2].split(",") if x]))
"""


class PruneNumbers(optuna.pruners.BasePruner):
    """Prunes the trials of the given numbers at their first report: deterministic pruning."""

    def __init__(self, numbers: set[int]) -> None:
        self.numbers = numbers

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number in self.numbers


@pytest.mark.slow
def test_tiny_study_prunes_and_resumes_after_being_killed(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), ""], env=env, start_new_session=True)
    opts = TuneOptions(study_name="tiny", budget="ci", n_trials=3, out_root=tmp_path, baseline=False,
                       mlflow=True, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # fmt: skip
    storage = opts.storage_url()
    try:  # kill it once trial 0 finished and trial 1 runs
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                trials = optuna.load_study(study_name="tiny", storage=storage).get_trials(deepcopy=False)
            except Exception:  # not created yet (or its tables are being created)
                trials = []
            if any(t.number == 0 and t.state.is_finished() for t in trials) and len(trials) >= 2:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the worker ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    first = next(t for t in before if t.number == 0)
    assert first.state == optuna.trial.TrialState.COMPLETE
    assert next(t for t in before if t.number == 1).state == optuna.trial.TrialState.RUNNING  # killed

    study = optimize(opts, load_space(), pruner=PruneNumbers({2}))  # the same name: continues
    states = {t.number: t.state for t in study.trials}
    assert states[0] == optuna.trial.TrialState.COMPLETE and study.trials[0].value == first.value  # kept
    assert states[2] == optuna.trial.TrialState.PRUNED and len(study.trials[2].intermediate_values) == 1
    assert states[3] == optuna.trial.TrialState.COMPLETE and len(study.trials) == 4
    assert len(study.trials[3].intermediate_values) == budget_config("ci").team.updates

    # MLflow: the study's parent run, a nested run per trial with its params and figures
    import mlflow

    client = mlflow.MlflowClient(opts.tracking_uri)
    exp = client.get_experiment_by_name("marlops-tuning")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if "marlops.trial" not in r.data.tags]
    nested = {r.data.tags["marlops.trial"]: r for r in runs if "marlops.trial" in r.data.tags}
    assert len(parent) == 1 and set(nested) == {"2", "3"}
    assert all(r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for r in nested.values())
    assert nested["2"].info.status == "KILLED" and nested["3"].info.status == "FINISHED"
    assert "team.lr" in nested["3"].data.params and "validation_utility" in nested["3"].data.metrics

    best = yaml.safe_load(write_best(study, opts, load_space(), None).read_text())
    assert best["value"] == study.best_value and best["config"]["validation_seed"] == 12
    assert Path(best["models_dir"], "team.yaml").is_file()


def test_each_worker_samples_its_own_values(tmp_path: Path) -> None:
    """``--jobs N`` workers share the storage but not the sampler seed: with one seed, all N would start
    with the same values (TPE's startup trials are random draws of that seed)."""
    sp = load_space()
    opts = TuneOptions(study_name="w", budget="ci", jobs=3, seed=7, out_root=tmp_path, mlflow=False)
    workers = [worker_config(o) for o in worker_options(opts, sp)]
    assert [w.jobs for w, _ in workers] == [1, 1, 1] and {path for _, path in workers} == {sp.source}
    assert {w.storage for w, _ in workers} == {opts.storage_url()}  # one storage, the study's
    seeds = [sampler_seed(w) for w, _ in workers]
    assert len(set(seeds)) == 3
    firsts = []
    for seed in seeds:
        study = optuna.create_study(sampler=make_sampler(sp, seed), direction=sp.goal)
        firsts.append(sp.suggest(study.ask()))
    assert all(a != b for i, a in enumerate(firsts) for b in firsts[i + 1 :])


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the workers' optimize() beats, not this test
def test_the_parent_shows_the_workers_trials_from_the_storage(tmp_path: Path) -> None:
    """What the CLI's progress bars get while --jobs workers train: each trial's start, every new team
    update's figure and its end, read from the shared storage (here trials written as a worker would)."""
    sp = load_space()
    opts = TuneOptions(study_name="watch", budget="ci", out_root=tmp_path, mlflow=False)
    study = open_study(opts, sp)
    old = study.ask()  # a resumed study's trial: not this run's
    study.tell(old, 0.5)
    told: list[tuple] = []
    events = TrialEvents(
        start=lambda n, values, updates: told.append(("start", n, updates)),
        update=lambda n, step, u: told.append(("update", n, step, u)),
        end=lambda n, state, value, wall: told.append(("end", n, state, value)),
    )
    watch = _TrialWatch(study, events, updates=3)
    worker = optuna.load_study(study_name="watch", storage=opts.storage_url())
    a, b = worker.ask(), worker.ask()
    a.report(-0.1, 1)
    watch.poll()
    a.report(-0.05, 2)
    b.report(-0.3, 1)
    worker.tell(b, state=optuna.trial.TrialState.PRUNED)
    watch.poll()
    worker.tell(a, 0.02)
    watch.poll()
    watch.poll()  # nothing new: nothing told twice
    assert told == [
        ("start", 1, 3), ("update", 1, 1, -0.1), ("start", 2, 3),
        ("update", 1, 2, -0.05), ("update", 2, 1, -0.3), ("end", 2, "PRUNED", None),
        ("end", 1, "COMPLETE", 0.02),
    ]  # fmt: skip


def test_katib_best_trial_becomes_settings_for_training(tmp_path: Path) -> None:
    """`marlops tune --katib-best`: a finished Experiment's optimal trial (Katib's names and string values)
    back as dotted settings of the right types, inactive ones dropped; what is missing is named."""
    sp = load_space()
    exp = render_experiment(sp, "small")
    chosen = {p.name: (p.choices[0] if p.kind == "categorical" else p.low) for p in sp.params}
    chosen["team.value_norm"] = False  # makes team.value_clip inactive
    by_name = {katib_name(n): v for n, v in chosen.items()}
    exp["status"] = {
        "currentOptimalTrial": {
            "bestTrialName": "marlops-tune-abc",
            "parameterAssignments": [
                {"name": k, "value": yaml.safe_dump(v).strip().removesuffix("...").strip()}
                for k, v in by_name.items()
            ],
        }
    }
    values = best_values(exp, sp)
    assert values == sp.active(chosen) and "team.value_clip" not in values
    assert isinstance(values["team.lr"], float) and values["team.anneal_lr"] is False
    trial_config(sp, "ci", values)  # settings the trainer takes

    f = tmp_path / "exp.json"
    f.write_text(json.dumps(exp))
    r = CliRunner().invoke(_app(), ["tune", "--katib-best", str(f)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[0]) == json.loads(json.dumps(values))

    exp["status"] = {}
    with pytest.raises(ValueError, match=r"no status\.currentOptimalTrial"):
        best_values(exp, sp)
    exp["status"] = {"currentOptimalTrial": {"parameterAssignments": [{"name": "team-lr", "value": "fast"}]}}
    with pytest.raises(ValueError, match=r"team\.lr: 'fast' is not a float"):
        best_values(exp, sp)
