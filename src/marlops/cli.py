"""The `marlops` command line: one entry point for every job, locally and in containers.

Every command has --help. Long work shows a progress bar; results end in a summary table and the
paths of what was written.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from marlops.agents.decision import RiskLimits
from marlops.agents.engine import AuditLog
from marlops.agents.replay import replay_ticks
from marlops.agents.runtime import AgentSet
from marlops.market.bars import parse_timeframe
from marlops.market.charts import plot_market
from marlops.market.dataset import (
    MarketDataset,
    aggregate_bars,
    dataset_from_ticks,
    dataset_summary,
    fill_gaps,
    write_dataset,
)
from marlops.market.feed import FeedConfig
from marlops.market.io import ColumnMap, DataFileError, read_bars, read_ticks
from marlops.market.synthetic import generate_market

app = typer.Typer(
    help="marlops: hierarchical multi-agent RL trading decisions and the MLOps platform around them.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Market data: generate, import and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # errors unwrapped, so the row and column stay on one line
DEFAULT_DATA = Path("data")


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every rejected tick.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s"
    )


def _tick_progress(total: int, label: str) -> tuple[Progress, callable]:
    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ticks"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task(label, total=total)
    return progress, lambda n: progress.advance(task, n)


def _feed_config(base: str, higher: str, tolerance_ms: float) -> FeedConfig:
    try:
        return FeedConfig(
            parse_timeframe(base), parse_timeframe(higher), out_of_order_tolerance_ns=int(tolerance_ms * 1e6)
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err


def _print_summary(ds: MarketDataset, title: str) -> None:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in dataset_summary(ds).items():
        table.add_row(
            k, f"{v:,}" if isinstance(v, int) else (f"{v:,.2f}" if isinstance(v, float) else str(v))
        )
    console.print(table)


BaseTf = Annotated[
    str, typer.Option("--base", help="Base bar timeframe (tactical agent): 5m, 15m, 1h, 1d ...")
]
HigherTf = Annotated[
    str, typer.Option("--higher", help="Higher timeframe (structure/regime agents), a multiple of --base.")
]
Tolerance = Annotated[float, typer.Option(help="Accept ticks up to this many milliseconds out of order.")]


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="Dataset folder to write.")] = DEFAULT_DATA / "synthetic",
    days: Annotated[float, typer.Option(min=1.0, help="Length of the market in days (24/7 trading).")] = 90.0,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same market, bit for bit.")
    ] = 0,
    start: Annotated[
        str, typer.Option(help="Start time (UTC, on a 30-minute boundary).")
    ] = "2025-01-01T00:00:00Z",
    base: BaseTf = "5m",
    higher: HigherTf = "30m",
) -> None:
    """Generate the reference synthetic regime-switching market (ticks + true regimes) and build its
    bars, indicators and matrices through the live streaming path."""
    ds = _synth(out, days, seed, start, _feed_config(base, higher, 0.0))
    _print_summary(ds, f"synthetic market → {out}")


def _synth(out: Path, days: float, seed: int, start: str, cfg: FeedConfig) -> MarketDataset:
    t0 = time.perf_counter()
    with console.status(f"generating {days:g} days of ticks (seed {seed})"):
        market = generate_market(days=days, seed=seed, start=start)
    console.print(f"generated {len(market.ticks):,} ticks in {time.perf_counter() - t0:.1f} s")
    progress, advance = _tick_progress(len(market.ticks), "bars, indicators, matrices")
    with progress:
        meta = {"source": "synthetic", "seed": seed, "days": days, "synthetic_config": market.config}
        return dataset_from_ticks(out, market.ticks, cfg, meta, market.labels, advance)


@data_app.command("import")
def data_import(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="CSV or Parquet file of ticks or bars.")
    ],
    kind: Annotated[str, typer.Option(help="What the file holds: 'ticks' or 'bars'.")] = "ticks",
    out: Annotated[Path, typer.Option(help="Dataset folder to write.")] = DEFAULT_DATA / "imported",
    columns: Annotated[str, typer.Option(help="Column mapping, e.g. 'ts=time,price=px,size=qty'.")] = "",
    tz: Annotated[str, typer.Option(help="Time zone of timestamps without an offset (IANA name).")] = "UTC",
    ts_unit: Annotated[
        str | None, typer.Option(help="Unit of numeric timestamps: s, ms, us, ns (default: inferred).")
    ] = None,
    base: BaseTf = "5m",
    higher: HigherTf = "30m",
    tolerance_ms: Tolerance = 0.0,
) -> None:
    """Import real ticks (streamed into bars) or base-timeframe bars, then build indicators and matrices."""
    cfg = _feed_config(base, higher, tolerance_ms)
    if kind not in ("ticks", "bars"):
        raise typer.BadParameter(f"must be 'ticks' or 'bars', got {kind!r}", param_hint="--kind")
    try:
        cmap = ColumnMap.parse(columns) if columns else ColumnMap()
        meta = {"source": f"import:{path.name}", "kind": kind, "tz": tz}
        if kind == "ticks":
            ticks = read_ticks(path, cmap, tz=tz, ts_unit=ts_unit)
            progress, advance = _tick_progress(len(ticks), "bars, indicators, matrices")
            with progress:
                ds = dataset_from_ticks(out, ticks, cfg, meta, progress=advance)
        else:
            bars = fill_gaps(
                read_bars(path, cfg.base_timeframe_ns, cmap, tz=tz, ts_unit=ts_unit), cfg.base_timeframe_ns
            )
            meta |= {
                "base_timeframe_ns": cfg.base_timeframe_ns,
                "higher_timeframe_ns": cfg.higher_timeframe_ns,
            }
            ds = write_dataset(out, bars, aggregate_bars(bars, cfg), meta)
    except (DataFileError, ValueError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    _print_summary(ds, f"imported {path} → {out}")


@data_app.command("inspect")
def data_inspect(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset folder (from `data synth` or `data import`).")
    ] = DEFAULT_DATA / "synthetic",
    chart: Annotated[
        Path | None, typer.Option(help="Write a chart here (.png or .html); default: DATASET/chart.png.")
    ] = None,
    timeframe: Annotated[str, typer.Option(help="Bars to chart: 'base' or 'higher'.")] = "higher",
) -> None:
    """Summary table of a dataset and a chart of price with regime shading and volume."""
    try:
        ds = MarketDataset.load(dataset)
    except FileNotFoundError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    _print_summary(ds, str(dataset))
    bars = ds.higher if timeframe == "higher" else ds.base
    path = plot_market(
        bars, chart or dataset / "chart.png", regimes=ds.labels, title=str(ds.meta.get("source", ""))
    )
    console.print(f"chart: {path}")


@app.command("decide")
def decide_cmd(
    replay: Annotated[
        Path, typer.Option(exists=True, help="Tick file (CSV/Parquet) or a dataset folder with ticks.")
    ],
    models: Annotated[
        Path | None,
        typer.Option(help="Folder of saved agents; default: untrained agents built from models/*.yaml."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the untrained agents' weights.")] = 0,
    audit: Annotated[Path | None, typer.Option(help="Append one JSON line per decision here.")] = None,
    columns: Annotated[
        str, typer.Option(help="Column mapping of a tick file, e.g. 'ts=time,price=px'.")
    ] = "",
    tz: Annotated[str, typer.Option(help="Time zone of a tick file's timestamps without an offset.")] = "UTC",
    max_position: Annotated[
        float, typer.Option(help="Hard limit: units either side.")
    ] = RiskLimits.max_position,
    max_leverage: Annotated[
        float, typer.Option(help="Hard limit: gross notional / equity.")
    ] = RiskLimits.max_leverage,
    kill_switch: Annotated[bool, typer.Option(help="Flatten and trade nothing.")] = False,
) -> None:
    """Replay ticks through the market feed and the decision engine (all four agents on their clocks)
    and print a decision summary: actions, overrides, fail-closed reasons, PnL and latency."""
    try:
        if replay.is_dir():
            ds = MarketDataset.load(replay, with_ticks=True)
            if ds.ticks is None:
                raise ValueError(
                    f"{replay}: dataset has no ticks.parquet (bar imports cannot be replayed tick by tick)"
                )
            ticks = ds.ticks
        else:
            ticks = read_ticks(replay, ColumnMap.parse(columns) if columns else ColumnMap(), tz=tz)
        limits = RiskLimits(max_position=max_position, max_leverage=max_leverage, kill_switch=kill_switch)
    except (DataFileError, ValueError, FileNotFoundError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    agents = AgentSet.load(models) if models else AgentSet.untrained(seed=seed)
    log = AuditLog(audit) if audit else None
    progress, advance = _tick_progress(len(ticks), "replaying ticks through the engine")
    try:
        with progress:
            res = replay_ticks(ticks, agents, limits, audit=log, progress=advance)
    finally:
        if log:
            log.close()
    table = Table(title=f"decisions over {replay}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in {"models": ", ".join(f"{a}={v}" for a, v in agents.versions.items()), **res.summary}.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
    console.print(table)
    if audit:
        console.print(f"audit log: {audit}")


@app.command("run")
def run(
    workdir: Annotated[Path, typer.Option(help="Where the job writes its data and reports.")] = Path(
        "runs/latest"
    ),
    days: Annotated[float, typer.Option(min=1.0, help="Days of synthetic market to generate.")] = 90.0,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic market.")] = 0,
    replay_days: Annotated[
        float, typer.Option(min=0.0, help="Replay the last N days through the decision engine (0: skip).")
    ] = 7.0,
) -> None:
    """The main job on embedded defaults. Today: synthetic market → bars → indicators → matrices → chart,
    then the last days replayed tick by tick through the four (untrained) agents and the decision engine.
    Later issues extend it into train → register → serve → decide → drift."""
    t0 = time.perf_counter()
    ds = _synth(workdir / "market", days, seed, "2025-01-01T00:00:00Z", FeedConfig())
    _print_summary(ds, "market data")
    chart = plot_market(
        ds.higher, workdir / "market_chart.png", regimes=ds.labels, title=f"synthetic market, seed {seed}"
    )
    audit_path = None
    if replay_days > 0:
        ticks = pd.read_parquet(ds.path / "ticks.parquet")
        ticks = ticks[ticks["ts"] >= ticks["ts"].iloc[-1] - int(replay_days * 86_400e9)]
        with console.status("loading the agents (the first run exports their ONNX graphs, ~15 s)"):
            agents = AgentSet.untrained(seed=seed)
        audit_path = workdir / "decisions.jsonl"
        audit_path.unlink(missing_ok=True)
        log = AuditLog(audit_path)
        progress, advance = _tick_progress(len(ticks), "decision engine replay")
        try:
            with progress:
                res = replay_ticks(ticks.reset_index(drop=True), agents, audit=log, progress=advance)
        finally:
            log.close()
        table = Table(
            title=f"decisions over the last {replay_days:g} days (untrained agents)", show_header=False
        )
        table.add_column(style="bold")
        table.add_column()
        for k, v in res.summary.items():
            table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
        console.print(table)
    console.print(
        f"[green]done[/green] in {time.perf_counter() - t0:.1f} s — dataset {ds.path}, chart {chart}"
        + (f", decisions {audit_path}" if audit_path else "")
    )


if __name__ == "__main__":
    app()
