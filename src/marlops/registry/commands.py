"""``marlops registry register|list|promote|rollback``: the MLflow model registry (registered by marlops.cli).

Light to import: MLflow loads inside the commands.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from marlops.console import console, err_console, print_error

registry_app = typer.Typer(
    help="Model registry (MLflow): register trained teams, promote the challenger through the gate, "
    "roll back, list. Embedded sqlite store under $MARLOPS_MLFLOW_DIR (default data/mlflow) unless "
    "--tracking-uri / MLFLOW_TRACKING_URI name a server.",
    no_args_is_help=True,
)

TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the embedded sqlite store).",
    ),
]


def _registry_config(tracking_uri: str | None):  # -> marlops.registry.TrackingConfig (imported lazily)
    from marlops.registry import resolve_tracking

    if logging.getLogger().level > logging.INFO:  # MLflow's own INFO lines and bars only with --verbose
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    return resolve_tracking(tracking_uri)


def _registry_error(e: Exception) -> typer.Exit:
    print_error(e)
    return typer.Exit(2)


def _registry_errors() -> tuple[type[Exception], ...]:
    from mlflow.exceptions import MlflowException

    from marlops.registry import RegistryError

    return (RegistryError, MlflowException)


@registry_app.command("register")
def registry_register(
    run_dir: Annotated[Path, typer.Argument(help="A `marlops train --out` folder (agents/, summary.json).")],
    eval_dir: Annotated[
        Path | None, typer.Option("--eval", help="Its `marlops evaluate --out` folder (report.json).")
    ] = None,
    lineage: Annotated[
        list[str] | None,
        typer.Option(help="Lineage facts as KEY=VALUE (repeatable), e.g. data_hash=…, dataset=…"),
    ] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment of the training run.")] = "marlops",
    tracking_uri: TrackingUri = None,
) -> None:
    """Log the run (params, metrics, artifacts, lineage) and register its four agents as
    marlops-<agent> model versions; a new team becomes the challenger. Safe to rerun."""
    from marlops.registry import register_run

    facts: dict[str, object] = {}
    for item in lineage or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print_error(f"--lineage: expected KEY=VALUE, got {item!r}")
            raise typer.Exit(2)
        facts[key] = value
    cfg = _registry_config(tracking_uri)
    try:
        with console.status(f"registering {run_dir} in {cfg.describe()}"):
            reg = register_run(run_dir, eval_dir, facts or None, cfg, experiment)
    except _registry_errors() as e:
        raise _registry_error(e) from None
    table = Table(title=f"{reg.team} (run {reg.run_id})")
    for col in ("agent", "model", "version", "agent version", "new"):
        table.add_column(col)
    for a, r in reg.agents.items():
        table.add_row(
            a, r.name, r.version, r.agent_version, "yes" if r.created else "no (already registered)"
        )
    console.print(table)
    console.print(
        f"{reg.team} is the challenger: `marlops registry promote`"
        if reg.challenger
        else f"aliases unchanged ({reg.team} is the champion or was rolled back)"
    )


@registry_app.command("list")
def registry_list(
    tracking_uri: TrackingUri = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every version of every agent: aliases, team, agent version and the team's key evaluation figures."""
    import dataclasses

    from marlops.registry import list_models

    cfg = _registry_config(tracking_uri)
    try:
        listing = list_models(cfg)
    except _registry_errors() as e:
        raise _registry_error(e) from None
    if as_json:
        console.print_json(json.dumps(dataclasses.asdict(listing), default=str))
        return
    if not listing.rows:
        console.print(f"no registered models in {listing.tracking_uri}: `marlops registry register RUN_DIR`")
        return
    table = Table(title=f"marlops models in {listing.tracking_uri}", title_justify="left")
    for col in ("agent", "ver", "aliases", "team", "Sharpe", "max DD", "reg.acc"):
        right = col in ("ver", "Sharpe", "max DD", "reg.acc")
        table.add_column(col, justify="right" if right else "left", overflow="fold")

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else fmt.format(v)

    for r in listing.rows:
        table.add_row(
            r.agent,
            r.version,
            ", ".join([*r.aliases, *(["rolled back"] if r.rolled_back else [])]),
            r.team or "-",
            f(r.figures.get("sharpe"), "{:.2f}"),
            f(r.figures.get("max_drawdown"), "{:.2%}"),
            f(r.figures.get("regime_balanced_accuracy"), "{:.3f}"),
        )
    console.print(table)
    console.print(f"champion: {listing.champion_team or '-'}, challenger: {listing.challenger_team or '-'}")
    for p in listing.problems:
        err_console.print(f"[yellow]warning[/yellow] {p}")


@registry_app.command("promote")
def registry_promote(
    min_sharpe_gain: Annotated[
        float, typer.Option(help="The challenger's Sharpe (with costs) must beat the champion's by more.")
    ] = 0.0,
    max_drawdown_increase: Annotated[
        float,
        typer.Option(min=0.0, help="Largest accepted rise of max drawdown (fraction: 0.02 = 2 points)."),
    ] = 0.02,
    max_regime_accuracy_drop: Annotated[
        float, typer.Option(min=0.0, help="Largest accepted fall of regime balanced accuracy.")
    ] = 0.02,
    max_return_drop: Annotated[
        float | None,
        typer.Option(min=0.0, help="Largest accepted fall of total return (default: unchecked)."),
    ] = None,
    min_sharpe: Annotated[
        float | None, typer.Option(help="Absolute floor on the challenger's Sharpe.")
    ] = None,
    require_goal: Annotated[
        list[str] | None, typer.Option(help="A goal of the evaluation report that must pass (repeatable).")
    ] = None,
    policy: Annotated[str, typer.Option(help="Policy of the evaluation report that is compared.")] = "team",
    force: Annotated[
        bool, typer.Option(help="Promote even if the gate refuses (recorded on the versions).")
    ] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Move `champion` to the challenger team (all four agents) if it beats the champion on the evaluation
    figures. Exit code 0: promoted or nothing to promote; 1: the gate refused; 2: an error."""
    from marlops.registry import GateConfig, promote

    try:
        gate = GateConfig(
            policy=policy,
            min_sharpe_gain=min_sharpe_gain,
            max_drawdown_increase=max_drawdown_increase,
            max_regime_accuracy_drop=max_regime_accuracy_drop,
            max_return_drop=max_return_drop,
            min_sharpe=min_sharpe,
            required_goals=tuple(require_goal or ()),
        )
        res = promote(gate, _registry_config(tracking_uri), force=force)
    except _registry_errors() as e:
        raise _registry_error(e) from None
    if res.decision is not None:
        for c in res.decision.checks:
            mark = "[green]pass[/green]" if c.passed else "[red]fail[/red]"
            console.print(f"  {mark} {c.name}: {c.detail}")
    color = "green" if res.promoted else ("red" if res.decision is not None else "yellow")
    console.print(f"[{color}]{res.message}[/{color}]")
    if res.decision is not None and not res.promoted:
        raise typer.Exit(1)


@registry_app.command("rollback")
def registry_rollback(
    agent: Annotated[
        list[str] | None,
        typer.Option(help="Roll back only this agent (repeatable; mixes teams). Default: the whole team."),
    ] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Give `champion` back to the previous champion (from each model's champion_history tag); the demoted
    versions are tagged rolled_back and never become the challenger again by re-registration."""
    from marlops.registry import rollback

    try:
        res = rollback(agent or None, _registry_config(tracking_uri))
    except _registry_errors() as e:
        raise _registry_error(e) from None
    console.print(f"[green]{res.message}[/green]")
