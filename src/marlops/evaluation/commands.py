"""``marlops evaluate`` (registered by marlops.cli): options →
:func:`marlops.evaluation.held_out.evaluate_team`, then the figures as tables.

Light to import: evaluation (sklearn, hmmlearn) and torch load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from marlops.console import console, err_console, print_error

if TYPE_CHECKING:
    from marlops.evaluation import EvaluationResult


def _seeds(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        print_error(f"{what}: expected comma-separated integers, got {text!r}")
        raise typer.Exit(2) from None


def evaluate_cmd(
    model: Annotated[
        Path,
        typer.Option(help="A `marlops train` output folder (or its agents/ folder): the team to evaluate."),
    ] = Path("runs/train"),
    out: Annotated[Path, typer.Option(help="Where report.html and report.json go.")] = Path("runs/evaluate"),
    seeds: Annotated[
        str,
        typer.Option(
            help="Held-out synthetic market seeds, comma-separated (never the training seeds, never used to "
            "choose anything: the validation seeds 2001-2004 are for that)."
        ),
    ] = "101,102,103,104",
    days: Annotated[float, typer.Option(min=8.0, help="Days per held-out synthetic market.")] = 30.0,
    fit_seeds: Annotated[
        str, typer.Option(help="Synthetic seeds the HMM baseline is fitted on (training data, not held out).")
    ] = "1,2",
    data: Annotated[
        Path | None,
        typer.Option(
            help="Evaluate walk-forward over this dataset (e.g. an import) instead of synthetic seeds."
        ),
    ] = None,
    folds: Annotated[int, typer.Option(min=1, help="Walk-forward folds over --data.")] = 4,
    allow_overlap: Annotated[
        bool,
        typer.Option(
            help="With --data: evaluate even a model whose recorded training range reaches the first test "
            "block (its figures are then in-sample)."
        ),
    ] = False,
) -> None:
    """Evaluate the trained team against the baselines — buy-and-hold, random, momentum, an HMM regime
    classifier driving the momentum rule, the oracle that knows the true regime, and the team without its
    risk agent — with and without costs; write an HTML report with plots and a JSON of every figure."""
    from marlops.evaluation.held_out import EvaluationInputError, evaluate_team

    held_out, fit = _seeds(seeds, "--seeds"), _seeds(fit_seeds, "--fit-seeds")
    try:
        result = evaluate_team(
            model, out, held_out, fit, days, data, folds, allow_overlap,
            warn=lambda text: err_console.print(f"[yellow]warning[/yellow] --{text}"),
        )  # fmt: skip
    except EvaluationInputError as e:
        print_error(f"--{e}")
        raise typer.Exit(2) from None
    _print_evaluation(result)
    console.print(f"[green]done[/green] — {out / 'report.html'}, {out / 'report.json'}")


def _print_periods(result: EvaluationResult) -> None:
    """The dates of every walk-forward fold (what its figures cover), in the market's trading days."""
    if not result.folds:
        return
    from marlops.evaluation.report import market_periods

    table = Table(title="walk-forward folds (UTC)")
    for col in ("fold", "trained on", "evaluated", "bars", "trading days"):
        table.add_column(col)
    for m, p in market_periods(result).items():
        train = " – ".join(p.get("train", []))
        table.add_row(m, train, f"{p['from']} – {p['to']}", str(p["bars"]), f"{p['trading_days']:.1f}")
    console.print(table)


def _print_evaluation(result: EvaluationResult) -> None:
    table = Table(title="held-out evaluation, mean over markets (with costs | without costs)")
    cols = {
        "Sharpe": ("sharpe", 1.0),
        "Sortino": ("sortino", 1.0),
        "return %": ("total_return", 100.0),
        "max DD %": ("max_drawdown", 100.0),
        "turnover/day": ("turnover_per_day", 1.0),
        "hit rate": ("hit_rate", 1.0),
        "trips/day": ("round_trips_per_day", 1.0),
        "cost share": ("cost_share", 1.0),
        "regime bal. acc": ("regime_balanced_accuracy", 1.0),
    }
    table.add_column("policy")
    for col in [*cols, "Sharpe (no costs)"]:
        table.add_column(col, justify="right")
    with_c, without_c = result.aggregate(True), result.aggregate(False)

    def f(v: float | None, scale: float = 1.0) -> str:
        return "-" if v is None or v != v else f"{v * scale:.2f}"

    for name, m in with_c.items():
        cells = [f(m.get(key), scale) for key, scale in cols.values()]
        table.add_row(name, *cells, f(without_c.get(name, {}).get("sharpe")))
    console.print(table)
    _print_periods(result)
    if not result.goals:
        return
    from marlops.evaluation.goals import goal_table

    goals = Table(title="goals (with costs; 95 % intervals: a claim holds only if its interval does)")
    for col in ("figure", "measured [95 % interval]", "goal", "status"):
        goals.add_column(col)
    for row in goal_table(result.goals):
        color = {"pass": "green", "fail": "red"}.get(row.status, "yellow")
        why = f" — {row.reason}" if row.reason else ""
        goals.add_row(row.figure, row.measured, row.goal, f"[{color}]{row.status}[/{color}]{why}")
    console.print(goals)
    for goal, v in result.goals.items():
        if isinstance(v, dict) and "status" in v:
            color = {"pass": "green", "fail": "red"}.get(v["status"], "yellow")
            console.print(f"  goal {goal}: [{color}]{v['status']}[/{color}]")
