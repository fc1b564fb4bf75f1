"""``marlops data synth|import|inspect``: generate, import and inspect datasets (registered by marlops.cli).

Light to import: the market modules (pandas, matplotlib) load inside the commands.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from marlops.console import DEFAULT_DATA, console, print_error, tick_progress

if TYPE_CHECKING:
    from marlops.market.dataset import MarketDataset
    from marlops.market.feed import FeedConfig

data_app = typer.Typer(help="Market data: generate, import and inspect datasets.", no_args_is_help=True)


def _feed_config(base: str, higher: str, tolerance_ms: float) -> FeedConfig:
    from marlops.market.bars import parse_timeframe
    from marlops.market.feed import FeedConfig

    try:
        return FeedConfig(
            parse_timeframe(base), parse_timeframe(higher), out_of_order_tolerance_ns=int(tolerance_ms * 1e6)
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err


def _print_summary(ds: MarketDataset, title: str) -> None:
    from marlops.market.dataset import dataset_summary

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
    from marlops.market.dataset import dataset_from_ticks
    from marlops.market.synthetic import generate_market

    t0 = time.perf_counter()
    with console.status(f"generating {days:g} days of ticks (seed {seed})"):
        market = generate_market(days=days, seed=seed, start=start)
    console.print(f"generated {len(market.ticks):,} ticks in {time.perf_counter() - t0:.1f} s")
    progress, advance = tick_progress(len(market.ticks), "bars, indicators, matrices")
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
    from marlops.market.data_files import DataFileError
    from marlops.market.importer import ImportOptions, ImportSettingError, import_dataset

    cfg = _feed_config(base, higher, tolerance_ms)
    opts = ImportOptions(
        tz=tz, ts_unit=ts_unit, strict=strict, sort=sort, rejects=rejects, allow_cold=allow_cold
    )
    instrument = {"tick_size": tick_size, "commission_bps": commission_bps, "spread_bps": spread_bps,
                  "volume_multiplier": volume_multiplier}  # fmt: skip
    try:
        with console.status(f"importing {path}") if kind == "ticks" else nullcontext():
            ds = import_dataset(path, out, cfg, kind, columns, opts, instrument)
    except ImportSettingError as err:
        raise typer.BadParameter(str(err), param_hint=err.option) from None
    except (DataFileError, ValueError) as err:
        print_error(err, "error:")
        raise typer.Exit(2) from err
    _print_summary(ds, f"imported {path} → {out}")
    if rejects is not None:
        console.print(f"rejected rows: {rejects}")


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
    from marlops.market.charts import plot_market
    from marlops.market.dataset import MarketDataset

    try:
        ds = MarketDataset.load(dataset)
    except FileNotFoundError as err:
        print_error(err, "error:")
        raise typer.Exit(2) from err
    _print_summary(ds, str(dataset))
    bars = ds.higher if timeframe == "higher" else ds.base
    path = plot_market(
        bars, chart or dataset / "chart.png", regimes=ds.labels, title=str(ds.meta.get("source", ""))
    )
    console.print(f"chart: {path}")
