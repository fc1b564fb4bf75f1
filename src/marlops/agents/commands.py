"""The agents commands: ``marlops agents quantize TEAM`` (registered by marlops.cli as the ``agents`` group).

Cheap to import: torch and ONNX Runtime load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

agents_app = typer.Typer(help="Saved agent teams: INT8 serving graphs.", no_args_is_help=True)

EXIT_ACCEPTED, EXIT_REJECTED, EXIT_ERROR = 0, 1, 2


@agents_app.callback()
def agents_group() -> None:
    """Saved agent teams: INT8 serving graphs."""  # a group even with one command: `agents quantize`


@agents_app.command("quantize")
def quantize_cmd(
    team: Annotated[
        Path,
        typer.Argument(
            help="A saved team: the agents/ folder of a training run (agents.json + one folder each)."
        ),
    ],
    days: Annotated[
        float, typer.Option(min=0.1, help="Held-out days replayed and scored (after warm-up).")
    ] = 5.0,
    seed: Annotated[int, typer.Option(help="Seed of the held-out synthetic market replayed.")] = 101,
    min_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Accept if at least this share of closes decide the same.")
    ] = 0.99,
    max_bacc_drop: Annotated[
        float, typer.Option(help="... and the regime agent's balanced accuracy drops by at most this.")
    ] = 0.01,
    per_channel: Annotated[
        bool,
        typer.Option("--per-channel/--per-tensor", help="Weight scales per output channel or per tensor."),
    ] = True,
) -> None:
    """Quantize a team's ONNX graphs to dynamic INT8 and gate them: replay held-out days with fp32 and INT8,
    accept only if the decisions agree and the regime accuracy holds. Writes TEAM/int8_gate.json always, the
    INT8 graphs (what --precision int8 loads) only when accepted. Exit 0 accepted, 1 rejected, 2 error."""
    from marlops.agents.quantize import check_int8

    try:
        r = check_int8(team, days, seed, min_share, max_bacc_drop, per_channel=per_channel)
    except (OSError, ValueError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(EXIT_ERROR) from err
    table = Table(title=f"INT8 parity gate — {team}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = {
        "accepted": "[green]yes[/green]" if r.accepted else "[red]no[/red]",
        "same decision, closes": f"{r.close_share:.4f} of {r.closes} (≥ {r.min_share})",
        "same decision, ticks": f"{r.tick_share:.4f} of {r.ticks} (not gated)",
        "regime bal. acc. fp32 / int8": f"{r.regime_bacc_fp32:.4f} / {r.regime_bacc_int8:.4f}",
        "regime bal. acc. drop": f"{r.regime_bacc_drop:+.4f} (≤ {r.max_bacc_drop})",
        "regime argmax agreement": f"{r.regime_agreement:.4f} of {r.regime_samples}",
        "replayed": f"seed {r.seed}: {r.warmup_days:g} warm-up + {r.days:g} scored days, {r.seconds:.0f} s",
        "report": str(team / "int8_gate.json"),
    }
    for k, v in rows.items():
        table.add_row(k, v)
    console.print(table)
    raise typer.Exit(EXIT_ACCEPTED if r.accepted else EXIT_REJECTED)
