"""``marlops train`` (registered by marlops.cli): options → :func:`marlops.training.command.run_training`.

Light to import: torch loads inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from marlops.console import console, print_error

if TYPE_CHECKING:
    from marlops.training.command import TrainOutcome


def train_cmd(
    out: Annotated[
        Path, typer.Option(help="Run folder: checkpoints/, metrics.jsonl, agents/, summary.json.")
    ] = Path("runs/train"),
    budget: Annotated[
        str,
        typer.Option(
            help="ci (seconds, for tests) | small (the main job's, a few minutes) | default (minutes on a "
            "2-core CPU) | gpu (GPU nodes)."
        ),
    ] = "default",
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Local data-parallel workers (torchrun, gloo). In a TrainJob/PyTorchJob the "
            "PET_* variables decide instead.",
        ),
    ] = 1,
    updates: Annotated[int | None, typer.Option(min=1, help="MAPPO updates (overrides the budget).")] = None,
    days: Annotated[int | None, typer.Option(min=8, help="Days of synthetic market per worker.")] = None,
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="Train on this dataset folder (`marlops data synth|import`), not synthetic seeds: on its "
            "first 1 − --holdout-fraction of the bars only (the end of that part validates)."
        ),
    ] = None,
    from_feast: Annotated[
        Path | None,
        typer.Option(
            help="With --dataset: read its feature rows from this Feast store's offline store (the folder "
            "the pipeline's build step / marlops.features.build_features wrote from it) instead of "
            "computing them from its bars; the same matrices, cached per data hash (docs/features.md).",
        ),
    ] = None,
    instrument: Annotated[
        str | None,
        typer.Option(
            help="With --from-feast: the dataset's instrument id in the store (default: its "
            "lineage.json's, else SYNTH)."
        ),
    ] = None,
    regime_targets: Annotated[
        str | None,
        typer.Option(
            help="What the regime agent learns from: auto (default: --labels, else the data's own labels, "
            "else hmm) | labels (the data's or --labels FILE) | hmm (a Gaussian HMM fitted on the training "
            "part, filtered causally, states mapped by volatility/efficiency rank) | transfer (the agent "
            "pretrained on the synthetic reference market — --init-from's, else trained here — frozen; the "
            "rest learns your data). Trade-offs: docs/training.md.",
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Regime labels for --dataset: CSV/Parquet with columns ts,regime (trending|ranging|volatile|"
            "transition or 0-3), each in force from its ts until the next.",
        ),
    ] = None,
    holdout_fraction: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=0.99,
            help="With --dataset: the last fraction of its bars no stage reads (default 0.5 = what `marlops "
            "evaluate --data … --folds N` tests on); 0 trains on all of it.",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Initialisation and sampling seed.")] = None,
    init_from: Annotated[
        str | None,
        typer.Option(
            help="Warm start: the weights of a registered team ('models:/marlops-{agent}@champion') or of a "
            "run folder, instead of fresh networks (retraining adds to what was learned).",
        ),
    ] = None,
    checkpoint_every: Annotated[int | None, typer.Option(min=1, help="Updates between checkpoints.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch threads per worker.")] = None,
    fresh: Annotated[
        bool, typer.Option(help="Discard the folder's checkpoints instead of resuming.")
    ] = False,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="NAME=VALUE: any training setting by its dotted name (team.lr=1e-4, risk.gamma=0.99, "
            "regime.epochs=2; models/<agent>.yaml training: and models/team.yaml hold them) over the "
            "budget (an option above wins over the setting it also sets); repeatable. `marlops tune` "
            "writes its best values so (data/tuning/<study>/best.yaml). summary.json records the whole "
            "configuration.",
        ),
    ] = None,
) -> None:
    """Train the team in stages: the regime agent on its regime targets (the true regimes of synthetic data;
    on your own data an HMM's causal labels, your --labels file, or the synthetic-pretrained agent kept as it
    is: --regime-targets); structure on the forward-return utility of its bias levels; tactical on carrying
    out structure's decisions; then MAPPO fine-tunes their heads over the frozen encoders, and the risk
    agent's double DQN learns against the frozen team. Resumes from the newest checkpoint in --out when one
    exists; --init-from starts from a champion's weights. With --dataset, the last --holdout-fraction of the
    bars is never read (`marlops evaluate --data` tests there) and summary.json records the trained range.

    The same command runs single-process, as --nproc local workers, and unchanged inside a Kubeflow
    TrainJob / PyTorchJob (torchrun reads PET_NNODES, PET_NPROC_PER_NODE, PET_MASTER_ADDR …; nccl on GPUs)."""
    from marlops.training.command import TrainArgs, is_rank_zero, run_training
    from marlops.training.config import parse_settings

    def _str(p: Path | None) -> str | None:
        return str(p) if p is not None else None

    try:
        args = TrainArgs(
            out=str(out), budget=budget, updates=updates, days=days, dataset=_str(dataset),
            from_feast=_str(from_feast), instrument=instrument, regime_targets=regime_targets,
            labels=_str(labels), holdout_fraction=holdout_fraction, seed=seed, init_from=init_from,
            checkpoint_every=checkpoint_every, threads=threads, settings=parse_settings(settings or []),
        )  # fmt: skip
        done = run_training(
            args, nproc, fresh, lambda argv: console.print(f"launching torchrun {' '.join(argv)}")
        )
    except ValueError as e:
        print_error(e)
        raise typer.Exit(2) from None
    if done.launched is not None:
        summary_file = out / "summary.json"
        if summary_file.exists():
            console.print(f"[green]done[/green] — {summary_file}")
        return
    if is_rank_zero():
        _print_training(done, budget)


def _print_training(done: TrainOutcome, budget: str) -> None:
    s, out = done.summary, done.out
    assert s is not None
    table = Table(title=f"training ({budget} budget)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = {
        "resumed from checkpoint": s.resumed_from if s.resumed_from is not None else "-",
        "regime targets": _targets_row(out),
        "regime balanced accuracy (validation)": (
            f"{s.regime_val_balanced_accuracy:.3f}"
            if s.regime_val_balanced_accuracy == s.regime_val_balanced_accuracy
            else "- (validation has no labels)"
        ),
        "warm start": done.config.init_from or "-",
        "MAPPO updates": s.updates,
        "environment steps": f"{s.env_steps:,}",
        "mean step reward (last update)": f"{s.final.get('reward_mean', float('nan')):.5f}",
        "wall time": f"{s.wall_s:.1f} s",
        "agents": str(out / "agents"),
    }
    for k, v in rows.items():
        table.add_row(k, str(v))
    console.print(table)


def _targets_row(out: Path) -> str:
    """What the run's regime agent learned from and which bars it read, from its summary.json."""
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return "-"
    t = summary.get("regime_targets") or {}
    text = str(t.get("resolved", "-"))
    split = summary.get("data_split")
    if split:
        tr = split["trained"]
        text += f"; trained on bars {tr['bars']} of {split['n_bars']} (to {tr['last']})"
    return text
