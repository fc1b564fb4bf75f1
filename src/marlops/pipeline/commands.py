"""``marlops pipeline compile|params|run|submit|list``, ``marlops run`` (the main job) and the webhook's
retraining trigger (registered by marlops.cli).

Light to import: kfp, the pipeline steps and everything they train with load inside the commands.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from marlops.console import DEFAULT_DATA, console, err_console, print_error

pipeline_app = typer.Typer(
    help="Kubeflow pipelines (training, retraining): compile the IR YAML for the Kubeflow UI, run "
    "embedded with kfp.local, or submit to a Kubeflow Pipelines host.",
    no_args_is_help=True,
)
_PIPELINE_NAMES = "training | retraining"


def _pipeline_params(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            print_error(f"--param: expected KEY=VALUE, got {p!r}")
            raise typer.Exit(2)
        out[key.strip()] = value
    return out


@pipeline_app.command("compile")
def pipeline_compile(
    names: Annotated[
        list[str] | None, typer.Argument(help=f"Pipelines ({_PIPELINE_NAMES}); default all.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the YAML (default: the checked-in files in pipelines/).")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Only check the checked-in YAML is current; exit 1 if not.")
    ] = False,
) -> None:
    """Compile the pipelines to KFP IR YAML — the files to upload in the Kubeflow UI."""
    from marlops.pipeline import definitions

    try:
        selected = [definitions.get(n).name for n in names] if names else list(definitions.PIPELINES)
    except ValueError as e:
        print_error(e)
        raise typer.Exit(2) from None
    if check:
        stale = [n for n in selected if definitions.stale(n)]
        for n in selected:
            console.print(f"{n}: {'[red]stale[/red]' if n in stale else '[green]current[/green]'}")
        if stale:
            err_console.print("run `marlops pipeline compile` and commit the YAML")
            raise typer.Exit(1)
        return
    for n in selected:
        target = definitions.compile_pipeline(n, out / definitions.get(n).yaml_name if out else None)
        console.print(f"[green]compiled[/green] {n} → {target}")


@pipeline_app.command("params")
def pipeline_params(name: Annotated[str, typer.Argument(help=_PIPELINE_NAMES)] = "training") -> None:
    """List a pipeline's parameters, their types and defaults (what --param sets)."""
    from marlops.pipeline.submit import parameters

    try:
        params = parameters(name)
    except ValueError as e:
        print_error(e)
        raise typer.Exit(2) from None
    table = Table(title=f"{name} pipeline parameters")
    for col in ("name", "type", "default"):
        table.add_column(col)
    for k, (kind, default) in params.items():
        table.add_row(k, kind, repr(default))
    console.print(table)


def _print_pipeline_run(run: object) -> None:
    table = Table(show_header=False, title="pipeline run")
    table.add_column(style="bold")
    table.add_column()
    for k, v in run.as_dict().items():  # type: ignore[attr-defined]
        if k != "parameters" and v not in (None, "", {}):
            table.add_row(k, json.dumps(v) if isinstance(v, dict) else str(v))
    console.print(table)


@pipeline_app.command("run")
def pipeline_run(
    name: Annotated[str, typer.Argument(help=_PIPELINE_NAMES)] = "training",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE, repeatable (see `pipeline params`).")
    ] = None,
    root: Annotated[Path, typer.Option(help="kfp.local pipeline root: task outputs and runs.jsonl.")] = Path(
        "data/kfp"
    ),
) -> None:
    """Run a pipeline embedded with kfp.local (every task a subprocess of this Python); blocks until done."""
    from marlops.pipeline.submit import PipelineFailed, run_local

    params = _pipeline_params(param)
    try:
        with console.status(f"running the {name} pipeline with kfp.local (task output in {root}/*.log)"):
            run = run_local(name, params, root)
    except ValueError as e:
        print_error(e)
        raise typer.Exit(2) from None
    except PipelineFailed as e:
        print_error(e, "failed")
        if e.run.log and Path(e.run.log).exists():
            err_console.print("".join(Path(e.run.log).read_text().splitlines(keepends=True)[-30:]))
        raise typer.Exit(1) from None
    _print_pipeline_run(run)


@pipeline_app.command("submit")
def pipeline_submit(
    name: Annotated[str, typer.Argument(help=_PIPELINE_NAMES)] = "training",
    host: Annotated[
        str,
        typer.Option(envvar="KFP_HOST", help="Kubeflow Pipelines API, e.g. http://ml-pipeline-ui.kubeflow"),
    ] = "",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE, repeatable.")] = None,
    experiment: Annotated[str, typer.Option(help="Kubeflow experiment.")] = "marlops",
    namespace: Annotated[str | None, typer.Option(help="Kubeflow profile namespace (multi-user).")] = None,
    token: Annotated[
        str | None, typer.Option(envvar="KF_PIPELINES_TOKEN", help="Bearer token (multi-user Kubeflow).")
    ] = None,
    service_account: Annotated[
        str | None,
        typer.Option(
            help="ServiceAccount the run's pods use (default: $MARLOPS_PIPELINE_SERVICE_ACCOUNT, else the "
            "chart's marlops-pipeline-runner)."
        ),
    ] = None,
) -> None:
    """Upload the checked-in IR YAML and create a run on a Kubeflow Pipelines host (kfp.Client)."""
    from marlops.pipeline.submit import submit_cluster

    if not host:
        print_error("--host: required (or $KFP_HOST); `pipeline run` runs locally")
        raise typer.Exit(2)
    try:
        run = submit_cluster(
            name, host, _pipeline_params(param), experiment, namespace, token, service_account
        )
    except ValueError as e:
        print_error(e)
        raise typer.Exit(2) from None
    _print_pipeline_run(run)


@pipeline_app.command("list")
def pipeline_list(
    root: Annotated[Path, typer.Option(help="kfp.local pipeline root.")] = Path("data/kfp"),
) -> None:
    """Local pipeline runs (newest last)."""
    from marlops.pipeline.submit import list_runs

    table = Table(title=f"pipeline runs in {root}")
    for col in ("started", "pipeline", "state", "wall s", "team", "promoted", "run id"):
        table.add_column(col)
    for r in list_runs(root):
        o = r.get("outputs") or {}
        table.add_row(
            r.get("started", ""), r["pipeline"], r["state"], str(r.get("wall_s", "")),
            str(o.get("team", "")), str(o.get("promoted", "")), r["run_id"],
        )  # fmt: skip
    console.print(table)


def retraining_trigger(kfp_host: str | None, params: dict[str, object]):
    """The retrain trigger's callable, wired in here: monitoring may not import the pipeline (training)."""

    def trigger(alert: object) -> object:
        from marlops.pipeline.submit import submit_retraining

        return submit_retraining(kfp_host, **{"alert_id": getattr(alert, "alert_id", ""), **params})

    return trigger


def run_cmd(
    workdir: Annotated[
        Path, typer.Option(help="Where the embedded stores live: feast/, mlflow/, kfp/, pipeline/, serving/.")
    ] = DEFAULT_DATA,
    days: Annotated[float, typer.Option(min=8.0, help="Days of synthetic market to train on.")] = 90.0,
    seed: Annotated[int, typer.Option(help="Seed of the training market.")] = 0,
    budget: Annotated[str, typer.Option(help="Training budget: ci | small | default | gpu.")] = "small",
    eval_days: Annotated[float, typer.Option(min=8.0, help="Days per held-out evaluation market.")] = 10.0,
    replay_days: Annotated[
        float,
        typer.Option(min=0.1, help="Held-out days replayed through the decision path (+2 warm-up days)."),
    ] = 1.0,
    serve: Annotated[
        bool, typer.Option(help="Replay through the local KServe servers (else the engine in-process).")
    ] = True,
    drift: Annotated[bool, typer.Option(help="Run the drift check on the replay's request log.")] = True,
    gate: Annotated[
        str,
        typer.Option(
            help="Promotion gate settings as JSON, e.g. '{\"require_trades\": false}' (fields: see "
            "`marlops registry promote --help`); the default gate refuses a team that makes no trades "
            "held-out."
        ),
    ] = "{}",
) -> None:
    """The main job on embedded defaults: synthetic market → Feast features → the training pipeline via
    kfp.local (train → evaluate → register in MLflow → promote → deploy) → the champion served by local
    KServe servers → a held-out day replayed through them over HTTP → an Evidently drift check of the
    request log against the training data. Safe to rerun: nothing is trained or registered twice."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from marlops.pipeline.main_job import MainJobConfig, run_main_job
    from marlops.pipeline.submit import PipelineFailed

    cfg = MainJobConfig(
        workdir=workdir,
        days=days,
        seed=seed,
        budget=budget,
        eval_days=eval_days,
        replay_days=replay_days,
        serve=serve,
        drift=drift,
        gate=gate,
    )
    t0 = time.perf_counter()
    status = console.status("starting")
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console,
    )  # fmt: skip
    task: list[object] = []

    def on_stage(text: str) -> None:
        console.print(f"[bold]→[/bold] {text}")
        status.update(text)

    def on_progress(n: int) -> None:
        if not task:  # one live display at a time: the spinner gives way to the replay's bar
            status.stop()
            progress.start()
            task.append(progress.add_task("ticks replayed", total=None))
        progress.advance(task[0], n)  # type: ignore[arg-type]

    status.start()
    try:
        result = run_main_job(cfg, on_stage, on_progress)
    except PipelineFailed as e:
        print_error(e, "failed")
        raise typer.Exit(1) from None
    except ValueError as e:
        print_error(e)
        raise typer.Exit(2) from None
    finally:
        status.stop()
        progress.stop()
    _print_main_job(result, time.perf_counter() - t0)


def _print_main_job(result: object, wall: float) -> None:
    r = result  # MainJobResult
    out = r.pipeline.outputs  # type: ignore[attr-defined]
    table = Table(title="marlops main job", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("team", f"{out.get('team')} ({'promoted' if out.get('promoted') else 'not promoted'})")
    table.add_row("registry", str(out.get("message")))
    ev = r.evaluation  # type: ignore[attr-defined]
    for policy in ("team", "buy_and_hold", "momentum", "hmm_momentum", "oracle"):
        if policy in ev:
            f = ev[policy]
            trips = f.get("round_trips_per_day")
            table.add_row(
                f"held-out Sharpe · {policy}",
                f"{f.get('sharpe', float('nan')):.2f} (return {100 * f.get('total_return', 0.0):.2f} %"
                + (f", {trips:.2f} round trips/day)" if trips is not None else ")"),
            )
    team = ev.get("team", {})
    if team and all(p in ev for p in ("buy_and_hold", "momentum")):
        beats = all(team.get("sharpe", -1e9) > ev[p].get("sharpe", 1e9) for p in ("buy_and_hold", "momentum"))
        trades = (team.get("round_trips_per_day") or 0.0) >= 1.0
        table.add_row(
            "team vs the small-budget goal",
            f"{'trades' if trades else 'does not trade'} (≥ 1 round trip/day), "
            f"{'beats' if beats else 'does not beat'} buy-and-hold and momentum (point estimates; these "
            "held-out markets are short: report.html has the intervals)",
        )
    for k, v in r.replay.items():  # type: ignore[attr-defined]
        table.add_row(f"replay · {k}", f"{v:,.2f}" if isinstance(v, float) else str(v))
    table.add_row("replay path", r.replay_mode)  # type: ignore[attr-defined]
    for k, v in r.drift.items():  # type: ignore[attr-defined]
        table.add_row(f"drift · {k}", str(v))
    for k, v in r.stage_s.items():  # type: ignore[attr-defined]
        table.add_row(f"time · {k}", f"{v:.1f} s")
    table.add_row("time · total", f"{wall:.1f} s")
    console.print(table)
    for k, v in r.paths.items():  # type: ignore[attr-defined]
        console.print(f"{k}: {v}", soft_wrap=True)
