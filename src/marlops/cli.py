"""The `marlops` command line: one entry point for every job, locally and in containers.

Every command has --help. Long work shows a progress bar; results end in a summary table and the
paths of what was written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from marlops.agents.decision import RiskLimits
from marlops.deploy.commands import deploy_app
from marlops.market.bars import parse_timeframe
from marlops.market.charts import plot_market
from marlops.market.dataset import MarketDataset, dataset_from_ticks, dataset_summary
from marlops.market.feed import FeedConfig
from marlops.market.readers import ColumnMap, DataFileError, read_ticks
from marlops.market.synthetic import generate_market
from marlops.monitoring.commands import drift_cmd, webhook_app  # cheap: heavy imports run inside
from marlops.serving.commands import serve_app

if TYPE_CHECKING:  # evaluation (sklearn, hmmlearn) is imported only by the commands that need it
    from marlops.evaluation import EvaluationResult

app = typer.Typer(
    help="marlops: hierarchical multi-agent RL trading decisions and the MLOps platform around them.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Market data: generate, import and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
registry_app = typer.Typer(
    help="Model registry (MLflow): register trained teams, promote the challenger through the gate, "
    "roll back, list. Embedded sqlite store under $MARLOPS_MLFLOW_DIR (default data/mlflow) unless "
    "--tracking-uri / MLFLOW_TRACKING_URI name a server.",
    no_args_is_help=True,
)
app.add_typer(registry_app, name="registry")
app.add_typer(serve_app, name="serve")  # KServe agents, decision transformer, launcher (docs/serving.md)
app.add_typer(deploy_app, name="deploy")  # helm/kustomize render + checks (docs/deployment.md)
app.command("drift")(drift_cmd)  # Evidently drift job, signed alerts (docs/monitoring.md)


def _retraining_trigger(kfp_host: str | None, params: dict[str, object]):
    """The retrain trigger's callable, wired in here: monitoring may not import the pipeline (training)."""

    def trigger(alert: object) -> object:
        from marlops.pipeline.submit import submit_retraining

        return submit_retraining(kfp_host, **{"alert_id": getattr(alert, "alert_id", ""), **params})

    return trigger


app.add_typer(webhook_app(_retraining_trigger), name="webhook")  # retrain trigger (docs/monitoring.md)

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
    from marlops.secret_files import SecretSettingError, export_file_settings

    try:  # MLflow and boto3 read their credentials from the environment only (docs/deployment.md)
        export_file_settings()
    except SecretSettingError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None


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
    rows: dict[str, object] = {}
    for k, v in dataset_summary(ds).items():
        if k == "ticks rejected" and "rows_in" in ds.meta:  # a bar import: rows, not ticks
            rows["rows accepted / in"] = f"{ds.meta['rows_accepted']:,} / {ds.meta['rows_in']:,}"
            k = "rows rejected"
        rows[k] = v
        if k.endswith("rejected"):  # an import's rejections by reason, right under their total
            for reason, n in sorted(ds.meta.get("rejected", {}).items(), key=lambda kv: -kv[1]):
                rows[f"  {reason}"] = int(n)
    for k, v in rows.items():
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
    columns: Annotated[
        str,
        typer.Option(
            help="Column mapping by name (any case) or position, e.g. 'ts=time,price=px,size=qty' or "
            "'ts=0,price=4'. Default names: ts (or timestamp/time/date/datetime, or an unnamed first "
            "column of times), price, size, side, open, high, low, close, volume, vwap, ticks."
        ),
    ] = "",
    tz: Annotated[str, typer.Option(help="Time zone of timestamps without an offset (IANA name).")] = "UTC",
    ts_unit: Annotated[
        str | None, typer.Option(help="Unit of numeric timestamps: s, ms, us, ns (default: inferred).")
    ] = None,
    base: BaseTf = "5m",
    higher: HigherTf = "30m",
    tolerance_ms: Tolerance = 0.0,
    strict: Annotated[
        bool,
        typer.Option(help="Stop at the first bad row (naming file, row, column) instead of rejecting it."),
    ] = False,
    sort: Annotated[
        bool,
        typer.Option(help="Sort rows by time instead of rejecting out-of-order ones (reads the file whole)."),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Write every rejected row (row number, reason, column, raw fields) here."),
    ] = None,
    allow_cold: Annotated[
        bool, typer.Option(help="Import a history too short to warm the matrices (for inspection only).")
    ] = False,
    tick_size: Annotated[
        float | None, typer.Option(help="The instrument's tick size (recorded in meta.json).")
    ] = None,
    commission_bps: Annotated[
        float | None, typer.Option(help="Commission in basis points of notional (recorded in meta.json).")
    ] = None,
    spread_bps: Annotated[
        float | None, typer.Option(help="Bid-ask spread in basis points (recorded in meta.json).")
    ] = None,
    volume_multiplier: Annotated[
        float | None,
        typer.Option(
            help="Instrument units per unit of the file's volume (a contract multiplier; 1000 for the "
            "synthetic tape's relative volume): the environment's slippage reads volume × this."
        ),
    ] = None,
) -> None:
    """Import real ticks (bulk-built into bars, equal to the live path) or base-timeframe bars, then build
    indicators and matrices. Bad rows are rejected and counted by reason (--strict stops instead)."""
    from marlops.market.importer import ImportOptions, import_bars, import_ticks

    cfg = _feed_config(base, higher, tolerance_ms)
    if kind not in ("ticks", "bars"):
        raise typer.BadParameter(f"must be 'ticks' or 'bars', got {kind!r}", param_hint="--kind")
    meta: dict[str, object] = {"source": f"import:{path.name}", "kind": kind, "tz": tz}
    meta |= _instrument_meta(tick_size, commission_bps, spread_bps, volume_multiplier)
    try:
        opts = ImportOptions(
            ColumnMap.parse(columns) if columns else ColumnMap(),
            tz,
            ts_unit,
            strict,
            sort,
            rejects,
            allow_cold,
        )
        if kind == "ticks":
            with console.status(f"importing {path}"):
                ds = import_ticks(path, out, cfg, opts, meta)
        else:
            ds = import_bars(path, out, cfg, opts, meta)
    except (DataFileError, ValueError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    _print_summary(ds, f"imported {path} → {out}")
    if rejects is not None:
        console.print(f"rejected rows: {rejects}")


def _instrument_meta(
    tick_size: float | None,
    commission_bps: float | None,
    spread_bps: float | None,
    volume_multiplier: float | None,
) -> dict:
    """The instrument's tick size, costs and volume unit for meta.json: finite, bps >= 0, the rest > 0."""
    out: dict[str, float] = {}
    for name, value, positive in (
        ("tick_size", tick_size, True),
        ("commission_bps", commission_bps, False),
        ("spread_bps", spread_bps, False),
        ("volume_multiplier", volume_multiplier, True),
    ):
        if value is None:
            continue
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            rule = "finite and > 0" if positive else "finite and >= 0"
            raise typer.BadParameter(
                f"must be {rule}, got {value!r}", param_hint="--" + name.replace("_", "-")
            )
        out[name] = float(value)
    return out


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
    max_position_equity: Annotated[
        float, typer.Option(help="Hard limit: |position| × price / equity, either side.")
    ] = RiskLimits.max_position_equity,
    max_leverage: Annotated[
        float, typer.Option(help="Hard limit: gross notional / equity.")
    ] = RiskLimits.max_leverage,
    max_position: Annotated[
        float | None, typer.Option(help="Optional hard cap in instrument units, either side (default: none).")
    ] = None,
    kill_switch: Annotated[bool, typer.Option(help="Flatten and trade nothing.")] = False,
    url: Annotated[
        str | None,
        typer.Option(
            help="Send every decision to this decision server (`marlops serve`) over HTTP instead "
            "of running the engine here; the server's agents and limits decide."
        ),
    ] = None,
    instrument: Annotated[
        str | None, typer.Option(help="With --url: the instrument id sent (default: a fresh replay-<hex>).")
    ] = None,
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
        limits = RiskLimits(
            max_position_equity=max_position_equity,
            max_leverage=max_leverage,
            max_position=max_position,
            kill_switch=kill_switch,
        )
    except (DataFileError, ValueError, FileNotFoundError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    if url:
        _decide_over_http(ticks, url, instrument, audit, replay)
        return
    from marlops.agents.engine import AuditLog
    from marlops.agents.replay import replay_ticks
    from marlops.agents.runtime import AgentSet  # torch: only for the commands that run agents

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


def _decide_over_http(
    ticks: object, url: str, instrument: str | None, audit: Path | None, replay: Path
) -> None:
    import httpx

    from marlops.serving.http_replay import DecisionServerError, replay_http

    progress, advance = _tick_progress(len(ticks), f"replaying ticks through {url}")  # type: ignore[arg-type]
    try:
        with progress:
            res = replay_http(ticks, url, instrument, progress=advance, audit=audit)  # type: ignore[arg-type]
    except (DecisionServerError, httpx.HTTPError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err
    table = Table(title=f"decisions over {replay} via {url} ({res.instrument})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    versions = res.decisions[-1].model_versions if res.decisions else {}
    for k, v in {"models": ", ".join(f"{a}={v}" for a, v in versions.items()), **res.summary}.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
    console.print(table)
    if audit:
        console.print(f"decisions as returned: {audit}")


@app.command("run")
def run(
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
            "`marlops promote --help`); the default gate refuses a team that makes no trades held-out."
        ),
    ] = "{}",
) -> None:
    """The main job on embedded defaults: synthetic market → Feast features → the training pipeline via
    kfp.local (train → evaluate → register in MLflow → promote → deploy) → the champion served by local
    KServe servers → a held-out day replayed through them over HTTP → an Evidently drift check of the
    request log against the training data. Safe to rerun: nothing is trained or registered twice."""
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
        err_console.print(f"[red]failed[/red] {e}")
        raise typer.Exit(1) from None
    except ValueError as e:
        err_console.print(f"[red]error[/red] {e}")
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


@app.command("train")
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
    from marlops.training.command import TrainArgs
    from marlops.training.distributed import torchrun_args
    from marlops.training.market import budget_config, train_team

    try:
        if dataset is not None and not (dataset / "meta.json").exists():
            raise ValueError(f"dataset: {dataset} is not a dataset folder (no meta.json)")
        if labels is not None and not labels.exists():
            raise ValueError(f"labels: {labels}: file not found")
        if instrument is not None and from_feast is None:
            raise ValueError("instrument: names the dataset in a Feast store; give --from-feast too")
        cfg = budget_config(
            budget,
            updates=updates,
            days=days,
            seed=seed,
            init_from=init_from,
            checkpoint_every=checkpoint_every,
            threads=threads,
            dataset=str(dataset.resolve()) if dataset is not None else None,
            feast_dir=str(from_feast.resolve()) if from_feast is not None else None,
            instrument=instrument,
            regime_targets=regime_targets,
            labels=str(labels.resolve()) if labels is not None else None,
            holdout_fraction=holdout_fraction,
        )
    except ValueError as e:
        err_console.print(f"[red]error[/red] {e}")
        raise typer.Exit(2) from None
    worker_args = TrainArgs(
        out=str(out),
        budget=budget,
        updates=updates,
        days=days,
        dataset=str(dataset) if dataset is not None else None,
        from_feast=str(from_feast) if from_feast is not None else None,
        instrument=instrument,
        regime_targets=regime_targets,
        labels=str(labels) if labels is not None else None,
        holdout_fraction=holdout_fraction,
        seed=seed,
        init_from=init_from,
        checkpoint_every=checkpoint_every,
        threads=threads,
    ).argv()
    launch = torchrun_args(nproc, "marlops.cli", worker_args)
    if fresh:  # workers never get --fresh: only the launcher (or the single process) clears the folder
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        (out / "metrics.jsonl").unlink(missing_ok=True)
    if launch is not None:
        from torch.distributed.run import main as torchrun

        console.print(f"launching torchrun {' '.join(launch)}")
        torchrun(launch)
        summary_file = out / "summary.json"
        if summary_file.exists():
            console.print(f"[green]done[/green] — {summary_file}")
        return
    try:
        s = train_team(cfg, out)
    except ValueError as e:
        err_console.print(f"[red]error[/red] {e}")
        raise typer.Exit(2) from None
    if os.environ.get("RANK", "0") != "0":
        return
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
        "warm start": cfg.init_from or "-",
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


@app.command("evaluate")
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
    from marlops.env.market_env import env_config_for_dataset
    from marlops.evaluation import (
        default_baselines,
        evaluate_walk_forward,
        market_data_from_dataset,
        synthetic_market_data,
        walk_forward_splits,
        write_report,
    )
    from marlops.evaluation.baselines import HMMRegimeClassifier, hmm_policy
    from marlops.evaluation.goals import check_goals
    from marlops.evaluation.held_out import check_seeds, evaluate_team_held_out
    from marlops.evaluation.runner import MIN_TRAIN_DAYS
    from marlops.training.holdout import model_summary, overlap_error
    from marlops.training.market import load_team

    def _seeds(text: str, what: str) -> list[int]:
        try:
            return [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            err_console.print(f"[red]error[/red] {what}: expected comma-separated integers, got {text!r}")
            raise typer.Exit(2) from None

    try:
        team = load_team(model)
    except (FileNotFoundError, OSError, ValueError) as e:
        err_console.print(
            f"[red]error[/red] --model {model}: no trained agents there ({e}); run `marlops train`"
        )
        raise typer.Exit(2) from None
    held_out, fit = _seeds(seeds, "--seeds"), _seeds(fit_seeds, "--fit-seeds")
    try:
        check_seeds(held_out, fit, model)
    except ValueError as e:
        err_console.print(f"[red]error[/red] --{e}")
        raise typer.Exit(2) from None
    if data is None:
        result = evaluate_team_held_out(model, out, held_out, fit, days)
    else:
        baselines = default_baselines([synthetic_market_data(s, days) for s in fit])
        policies = {**baselines, "team": team, "team_no_risk": team.without_risk()}
        try:
            dataset = MarketDataset.load(data)
            full = market_data_from_dataset(dataset)
            env_config = env_config_for_dataset(dataset)  # the instrument's own costs, if meta.json has them
            # a week of the market's own trading days, not of 5-minute bars
            splits = walk_forward_splits(
                len(full), folds, min_train=round(MIN_TRAIN_DAYS * full.clock.bars_per_day)
            )
        except (FileNotFoundError, ValueError) as e:
            err_console.print(f"[red]error[/red] --data {data}: {e}")
            raise typer.Exit(2) from None
        overlap = overlap_error(model_summary(model), full, str(data), splits[0].test[0])
        if overlap and not allow_overlap:
            err_console.print(
                f"[red]error[/red] --model {model}: {overlap}; "
                "--allow-overlap evaluates it anyway (in-sample)"
            )
            raise typer.Exit(2)
        if overlap:
            err_console.print(f"[yellow]warning[/yellow] --model {model}: {overlap} (--allow-overlap)")
        wf = {k: v for k, v in policies.items() if k not in ("hmm_momentum", "oracle")}
        wf["hmm_momentum"] = lambda train: hmm_policy(HMMRegimeClassifier().fit(train))
        if (full.regime_label >= 0).any():
            wf["oracle"] = baselines["oracle"]
        result = evaluate_walk_forward(full, splits, wf, env_config=env_config, market=data.name)
        result.goals = check_goals(result)
        write_report(result, out, "team", f"marlops walk-forward evaluation — {data}")
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


# ------------------------------------------------------------------------------------------ registry

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
    err_console.print(f"[red]error[/red] {e}")
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
            err_console.print(f"[red]error[/red] --lineage: expected KEY=VALUE, got {item!r}")
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


if __name__ == "__main__":
    app()


# ---------------------------------------------------------------------------------------------- pipeline

pipeline_app = typer.Typer(
    help="Kubeflow pipelines (training, retraining): compile the IR YAML for the Kubeflow UI, run "
    "embedded with kfp.local, or submit to a Kubeflow Pipelines host.",
    no_args_is_help=True,
)
app.add_typer(pipeline_app, name="pipeline")
_PIPELINE_NAMES = "training | retraining"


def _pipeline_params(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            err_console.print(f"[red]error[/red] --param: expected KEY=VALUE, got {p!r}")
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
        err_console.print(f"[red]error[/red] {e}")
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
        err_console.print(f"[red]error[/red] {e}")
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
        err_console.print(f"[red]error[/red] {e}")
        raise typer.Exit(2) from None
    except PipelineFailed as e:
        err_console.print(f"[red]failed[/red] {e}")
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
        err_console.print("[red]error[/red] --host: required (or $KFP_HOST); `pipeline run` runs locally")
        raise typer.Exit(2)
    try:
        run = submit_cluster(
            name, host, _pipeline_params(param), experiment, namespace, token, service_account
        )
    except ValueError as e:
        err_console.print(f"[red]error[/red] {e}")
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
