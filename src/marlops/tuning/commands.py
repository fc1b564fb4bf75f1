"""``marlops tune`` (registered by marlops.cli): options → :mod:`marlops.tuning.study` (local Optuna study),
:mod:`marlops.tuning.katib` (``--render-katib``) or one Katib trial (``--trial``).

Light to import: optuna, torch and MLflow load inside the command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from marlops.console import console, print_error


def tune_cmd(
    n_trials: Annotated[
        int,
        typer.Option(
            "--n-trials",
            min=1,
            help="Finished (complete or pruned) trials the study should hold. A resumed study (same "
            "--study-name and --storage) keeps its trials and runs only the rest.",
        ),
    ] = 12,
    timeout: Annotated[
        float | None,
        typer.Option(help="Stop starting trials after this many seconds (the running one finishes)."),
    ] = None,
    budget: Annotated[
        str,
        typer.Option(
            help="The training budget every trial runs (models/team.yaml budgets: ci | small | default | "
            "gpu); the trial's values overlay it."
        ),
    ] = "small",
    study_name: Annotated[
        str, typer.Option(help="Study name: its storage key, its folder data/tuning/<name>/, its MLflow run.")
    ] = "marlops",
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage: any RDB URL (postgresql://…, mysql://…); default "
            "sqlite:///data/tuning/<study>.db."
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(min=1, help="Worker processes sharing the storage (each trains one trial at a time)."),
    ] = 1,
    seed: Annotated[int, typer.Option(help="The TPE sampler's seed (training seeds are the budget's).")] = 0,
    out: Annotated[
        Path, typer.Option(help="Root folder of studies: <out>/<study>/ (trials, best.yaml, report.html).")
    ] = Path("data/tuning"),
    space: Annotated[
        Path | None, typer.Option(help="Search space file (default: models/search_space.yaml).")
    ] = None,
    mlflow: Annotated[
        bool, typer.Option(help="A parent MLflow run for the study, a nested run per trial.")
    ] = True,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: as marlops registry).")
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            help="Also train the budget's own configuration and score it on the same validation markets."
        ),
    ] = True,
    register: Annotated[
        bool,
        typer.Option(
            help="Retrain the best configuration, evaluate it on the held-out seeds and register it as the "
            "challenger (`marlops registry promote` then applies the gate)."
        ),
    ] = False,
    render_katib: Annotated[
        Path | None,
        typer.Option(
            "--render-katib",
            help="Write the Katib Experiment (kubeflow.org/v1beta1) of this search space to this file ('-': "
            "stdout), validated against Katib's OpenAPI schema, and exit.",
        ),
    ] = None,
    image: Annotated[str, typer.Option(help="With --render-katib: the trials' marlops image.")] = (
        "ghcr.io/marlops/marlops:0.1.0"
    ),
    katib_best: Annotated[
        Path | None,
        typer.Option(
            "--katib-best",
            help="Read a Katib Experiment (`kubectl get experiment NAME -o json`, or YAML; '-': stdin) and "
            "print its best trial's values as the JSON object the training pipeline's hyperparameters "
            "parameter takes (the `marlops train --set` form on stderr), and exit.",
        ),
    ] = None,
    trial: Annotated[
        bool,
        typer.Option(
            "--trial",
            help="Run one trial with the --set values and print 'validation_utility=<v>' after every team "
            "update and at the end (what a Katib trial runs; its StdOut collector reads those lines).",
        ),
    ] = False,
    assignments: Annotated[
        list[str] | None, typer.Option("--set", help="With --trial: NAME=VALUE of a search-space parameter.")
    ] = None,
) -> None:
    """Tune the team's hyperparameters together: an Optuna study (TPE sampler, median pruner fed by the
    team stage's validation figure after every update) over models/search_space.yaml, where one trial sets
    the shared schedule and every agent's values. The objective is the validation figure
    (validation_utility: mean return − drawdown weight × max drawdown of the greedy team on the budget's
    validation market), never the evaluation's held-out seeds. Leaves data/tuning/<study>/best.yaml (the
    best values and the whole config), best/models/ (models/ with them written in: MARLOPS_MODELS_DIR=…
    marlops train), report.html (Optuna's plots) and MLflow runs. docs/tuning.md."""
    from marlops.tuning.space import load_space

    try:
        sp = load_space(space)
    except (FileNotFoundError, ValueError) as e:
        print_error(str(e))
        raise typer.Exit(2) from None
    if render_katib is not None:
        _render(sp, render_katib, budget, n_trials, jobs, seed, study_name, image)
        return
    if katib_best is not None:
        _katib_best(sp, katib_best)
        return
    if trial:
        _one_trial(sp, budget, assignments or [])
        return
    _study(
        sp,
        n_trials,
        timeout,
        budget,
        study_name,
        storage,
        jobs,
        seed,
        out,
        mlflow,
        tracking_uri,
        baseline,
        register,
    )


def _render(
    sp: Any, path: Path, budget: str, n_trials: int, jobs: int, seed: int, name: str, image: str
) -> None:
    from marlops.tuning.katib import katib_name, render_experiment, validate_experiment

    exp = render_experiment(sp, budget, n_trials, jobs, seed, name=katib_name(name), image=image)
    try:
        problems = validate_experiment(exp)
    except FileNotFoundError as e:
        print_error(f"cannot validate the Experiment: {e} (set $MARLOPS_CRDS_DIR)")
        raise typer.Exit(1) from None
    if problems:
        for p in problems:
            print_error(p)
        raise typer.Exit(1)
    text = yaml.safe_dump(exp, sort_keys=False)
    if str(path) == "-":
        sys.stdout.write(text)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        console.print(f"Katib Experiment {exp['metadata']['name']} → {path} (valid against Katib v1beta1)")


def _katib_best(sp: Any, path: Path) -> None:
    import json

    from marlops.training.config import settings_argv
    from marlops.tuning.katib import best_values

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        experiment = yaml.safe_load(text)  # JSON is YAML
        if not isinstance(experiment, dict):
            raise ValueError(f"{path}: not a Katib Experiment object")
        values = best_values(experiment, sp)
    except (OSError, yaml.YAMLError, ValueError) as e:
        print_error(str(e))
        raise typer.Exit(2) from None
    sys.stdout.write(json.dumps(values, sort_keys=True) + "\n")
    Console(stderr=True).print("marlops train " + " ".join(settings_argv(values)), soft_wrap=True)


def _one_trial(sp: Any, budget: str, assignments: list[str]) -> None:
    import os
    import tempfile

    from marlops.training.config import parse_settings
    from marlops.tuning.study import run_trial, trial_config

    try:
        cfg = trial_config(sp, budget, parse_settings(assignments))
    except ValueError as e:
        print_error(str(e))
        raise typer.Exit(2) from None

    def report(step: int, utility: float) -> None:
        print(f"{sp.metric}={utility:.8g}", flush=True)  # Katib's StdOut collector: name=value

    out = Path(os.environ.get("MARLOPS_TRIAL_DIR") or tempfile.mkdtemp(prefix="marlops-trial-"))
    result = run_trial(cfg, out, sp.episodes_per_market, report)
    for k, v in result.figures.items():
        if k != "utility":
            print(f"validation_{k}={v:.8g}", flush=True)
    print(f"{sp.metric}={result.value:.8g}", flush=True)  # last: the metric strategy is 'latest'


def _study(
    sp: Any,
    n_trials: int,
    timeout: float | None,
    budget: str,
    study_name: str,
    storage: str | None,
    jobs: int,
    seed: int,
    out: Path,
    mlflow: bool,
    tracking_uri: str | None,
    baseline: bool,
    register: bool,
) -> None:
    import optuna

    from marlops.tuning.study import TrialEvents, TuneOptions, run_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bars and the table say it all

    opts = TuneOptions(
        study_name=study_name, budget=budget, n_trials=n_trials, timeout=timeout, storage=storage, jobs=jobs,
        seed=seed, out_root=out, mlflow=mlflow, tracking_uri=tracking_uri, baseline=baseline,
    )  # fmt: skip
    console.print(
        f"study [bold]{study_name}[/] in {opts.storage_url()} ({budget} budget, {len(sp.params)} parameters)"
    )
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[figure]}"), console=console, transient=False,
    )  # fmt: skip
    tasks: dict[int, Any] = {}

    def start(number: int, values: dict[str, Any], updates: int) -> None:
        tasks[number] = progress.add_task(f"trial {number}", total=updates, figure="")

    def update(number: int, step: int, utility: float) -> None:
        progress.update(tasks[number], completed=step, figure=f"validation {utility:+.5f}")

    def end(number: int, state: str, value: float | None, wall_s: float) -> None:
        fig = f"{state.lower()}" + ("" if value is None else f" {value:+.5f}") + f" ({wall_s:.0f} s)"
        progress.update(tasks[number], figure=fig)

    def default_starts(budget: str) -> None:
        tasks[-1] = progress.add_task(f"default ({budget} budget's own configuration)", total=None, figure="")

    try:
        with progress:
            outcome = run_study(opts, sp, TrialEvents(start, update, end, default_starts))
            if outcome.default is not None and -1 in tasks:
                progress.update(tasks[-1], total=1, completed=1, figure=f"{outcome.default.value:+.5f}")
    except ValueError as e:
        print_error(str(e))
        raise typer.Exit(2) from None
    _summary(outcome.study, sp, outcome.default, budget)
    if outcome.best_file is None:
        print_error("no trial finished")
        raise typer.Exit(1)
    models = opts.out / "best" / "models"
    console.print(f"best config → {outcome.best_file} (models: {models}); report → {outcome.report}")
    if register:
        _register(opts, sp)


def _summary(study: Any, sp: Any, default: Any, budget: str) -> None:
    """Two tables that fit a terminal: the trials (state, figures, time), then the best trial's values
    beside the budget's own (models/) — not one column per parameter."""
    table = Table(title=f"study {study.study_name}: {sp.metric} ({sp.goal})", title_justify="left")
    for col in ("trial", "state", sp.metric, "return", "max dd", "updates", "wall"):
        table.add_column(col, justify="left" if col == "state" else "right")
    best = None
    try:
        best = study.best_trial.number
    except ValueError:
        pass

    def pct(v: Any, sign: str = "+") -> str:
        return "-" if v is None else f"{100 * v:{sign}.2f} %"

    for t in study.trials:
        value = f"{t.value:+.5f}" if t.value is not None else "-"
        if t.state.name == "PRUNED" and t.intermediate_values:  # where it stood when stopped
            value = f"({t.intermediate_values[max(t.intermediate_values)]:+.5f})"
        wall = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        table.add_row(
            f"{t.number}{' *' if t.number == best else ''}", t.state.name.lower(), value,
            pct(t.user_attrs.get("validation.mean_return")),
            pct(t.user_attrs.get("validation.mean_max_drawdown"), ""),
            str(len(t.intermediate_values)), "-" if wall is None else f"{wall:.0f} s",
        )  # fmt: skip
    if default is not None:
        f = default.figures
        table.add_row(
            "default", "complete", f"{default.value:+.5f}", pct(f.get("mean_return")),
            pct(f.get("mean_max_drawdown"), ""), str(len(default.steps)), "",
        )  # fmt: skip
    console.print(table)
    if best is None:
        return
    from marlops.training.config import budget_config

    cfg = budget_config(budget)
    values = study.best_trial.user_attrs.get("overrides") or study.best_trial.params
    params = Table(title=f"best trial {best} beside models/ ({budget} budget)", title_justify="left")
    for col in ("parameter", "best", "models/"):
        params.add_column(col, justify="left" if col == "parameter" else "right")
    for name in sp.names:
        section, _, leaf = name.partition(".")
        params.add_row(name, _fmt(values.get(name)), _fmt(getattr(getattr(cfg, section), leaf)))
    console.print(params)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _register(opts: Any, sp: Any) -> None:
    """Retrain the best values under the budget, evaluate on the held-out seeds, register the challenger."""
    from marlops.evaluation.held_out import evaluate_team_held_out
    from marlops.registry import register_run
    from marlops.registry.config import resolve_tracking
    from marlops.training.market import train_team
    from marlops.tuning.study import trial_config

    best = yaml.safe_load((opts.out / "best.yaml").read_text())
    cfg = trial_config(sp, opts.budget, best["overrides"])
    run_dir, eval_dir = opts.out / "best" / "run", opts.out / "best" / "eval"
    with console.status("training the best configuration"):
        train_team(cfg, run_dir, progress=False)
    with console.status("evaluating it on the held-out seeds"):
        evaluate_team_held_out(run_dir, eval_dir, progress=False)
    reg = register_run(
        run_dir, eval_dir, {"tuning_study": opts.study_name, "tuning_trial": best["trial"]},
        resolve_tracking(opts.tracking_uri),
    )  # fmt: skip
    console.print(
        f"{reg.team} registered"
        + (" as the challenger: `marlops registry promote`" if reg.challenger else "")
    )
