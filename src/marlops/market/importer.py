"""`marlops data import`: a user's tick or bar file → a dataset folder, keeping going past bad rows.

Ticks go through the bulk path (:mod:`marlops.market.bulk`), chunk by chunk, so memory stays flat:
each chunk's rows are checked (readers.py), ordered like the live validator and bar builder would order
them, aggregated into base bars, and the accepted ticks appended to ``ticks.parquet``. Bars are read
whole (a bar file is small). Every rejected row is counted by reason in meta.json and, with
``rejects``, written to a CSV with its row number and raw fields; ``strict`` stops at the first.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from marlops.market.bulk import OK, REASONS, BulkBars, higher_bars
from marlops.market.data_files import DataFileError
from marlops.market.dataset import MarketDataset, fill_gaps, write_dataset
from marlops.market.feed import FeedConfig
from marlops.market.file_chunks import CHUNK_BYTES
from marlops.market.frame_store import TICK_DTYPES
from marlops.market.readers import ColumnMap, TickChunk, read_bars, scan_ticks
from marlops.market.rejects import RejectLog, join_fields
from marlops.market.warmup import check_warm

Progress = Callable[[int], None]  # called with the number of rows just processed


@dataclass(frozen=True)
class ImportOptions:
    columns: ColumnMap = field(default_factory=ColumnMap)
    tz: str = "UTC"
    ts_unit: str | None = None
    strict: bool = False  # stop at the first bad row instead of rejecting it
    sort: bool = False  # sort rows by time instead of rejecting out-of-order ones (reads the file whole)
    rejects: Path | None = None  # write every rejected row here (CSV)
    allow_cold: bool = False  # import even when the history cannot warm the matrices
    chunk_bytes: int = CHUNK_BYTES


_TICK_SCHEMA = pa.schema([(k, pa.from_numpy_dtype(np.dtype(v))) for k, v in TICK_DTYPES.items()])


def import_ticks(
    path: Path, out: Path, cfg: FeedConfig, opts: ImportOptions, meta: dict, progress: Progress | None = None
) -> MarketDataset:
    """Ticks → bars of both timeframes, features, and the dataset folder (see the module docstring)."""
    log = RejectLog(keep_rows=opts.rejects is not None)
    bulk = BulkBars(cfg.base_timeframe_ns, cfg.origin_ns, cfg.out_of_order_tolerance_ns)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "ticks.parquet.partial"  # renamed when the import succeeds: no half dataset on failure
    try:
        with pq.ParquetWriter(tmp, _TICK_SCHEMA) as writer:
            for chunk in _tick_chunks(path, opts, log):
                code = bulk.on_chunk(chunk.ticks)
                _log_order(chunk, code, opts.strict, log, path)
                kept = chunk.ticks[code == OK].astype(TICK_DTYPES)
                writer.write_table(pa.Table.from_pandas(kept, schema=_TICK_SCHEMA, preserve_index=False))
                if progress:
                    progress(len(chunk.pos))
        bulk.flush()
        base = bulk.frame()
        higher = higher_bars(base, cfg.higher_timeframe_ns, cfg.origin_ns)
        if not opts.allow_cold:
            check_warm(len(base), len(higher), cfg.base_timeframe_ns, cfg.higher_timeframe_ns)
        rejected = log.counts + Counter({k: v for k, v in bulk.rejected.items() if v})
        meta = {
            **meta,
            "base_timeframe_ns": cfg.base_timeframe_ns,
            "higher_timeframe_ns": cfg.higher_timeframe_ns,
            "ticks_in": bulk.ticks_in + log.total,
            "ticks_accepted": bulk.ticks_accepted,
            "volume_accepted": bulk.volume_accepted,
            "rejected": dict(sorted(rejected.items())),
        }
        if opts.rejects is not None:
            log.write(opts.rejects)
            meta["rejects_file"] = str(opts.rejects)
        ds = write_dataset(out, base, higher, meta)
        tmp.replace(out / "ticks.parquet")
    finally:
        tmp.unlink(missing_ok=True)
    return ds


def _tick_chunks(path: Path, opts: ImportOptions, log: RejectLog) -> Iterable[TickChunk]:
    """The file's checked rows chunk by chunk; with ``sort``, the whole file as one chunk sorted by time."""
    chunks = scan_ticks(
        path,
        opts.columns,
        opts.tz,
        opts.ts_unit,
        strict=opts.strict,
        rejects=log,
        chunk_bytes=opts.chunk_bytes,
    )
    if not opts.sort:
        return chunks
    parts = list(chunks)
    ticks = pd.concat([p.ticks for p in parts], ignore_index=True)
    pos = np.concatenate([p.pos for p in parts])
    order = np.argsort(ticks["ts"].to_numpy(), kind="stable")  # equal times keep file order
    raw = None
    if parts[0].raw is not None:
        raw = pd.concat([p.raw for p in parts], ignore_index=True).iloc[order].reset_index(drop=True)
    sorted_ticks = ticks.iloc[order].reset_index(drop=True)
    return [TickChunk(sorted_ticks, pos[order], parts[0].rows, parts[0].ts_label, raw)]


def _log_order(chunk: TickChunk, code: np.ndarray, strict: bool, log: RejectLog, path: Path) -> None:
    """Rows the ordering rejected (out of order, duplicate, late): an error in strict mode, else logged."""
    bad = np.flatnonzero(code != OK)
    if len(bad) == 0:
        return
    reasons = np.array([REASONS[int(c)] for c in code[bad]], dtype=object)
    if strict:
        i = int(bad[0])
        t = chunk.ticks.iloc[i]
        when = pd.Timestamp(int(t["ts"]), tz="UTC")
        more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
        raise DataFileError(
            path,
            f"{reasons[0].replace('_', ' ')} tick at {when} (price {t['price']!r}, size {t['size']!r}); "
            f"--sort sorts ticks, --tolerance-ms accepts small reorderings{more}",
            row=chunk.rows.row(int(chunk.pos[i])),
            column=chunk.ts_label,
        )
    fields = join_fields(chunk.raw, bad) if chunk.raw is not None else np.empty(len(bad), object)
    # counted by the bulk builder already; the log keeps the rows
    log.add(chunk.pos[bad], reasons, np.full(len(bad), chunk.ts_label, dtype=object), fields, count=False)


def import_bars(path: Path, out: Path, cfg: FeedConfig, opts: ImportOptions, meta: dict) -> MarketDataset:
    """Base-timeframe bars → gap-filled base bars, higher bars, features and the dataset folder."""
    log = RejectLog(keep_rows=opts.rejects is not None)
    tf = cfg.base_timeframe_ns
    bars = read_bars(
        path, tf, opts.columns, opts.tz, opts.ts_unit, strict=opts.strict, sort=opts.sort, rejects=log
    )
    base = fill_gaps(bars, tf)
    higher = higher_bars(base, cfg.higher_timeframe_ns, cfg.origin_ns)
    if not opts.allow_cold:
        check_warm(len(base), len(higher), tf, cfg.higher_timeframe_ns)
    meta = {
        **meta,
        "base_timeframe_ns": tf,
        "higher_timeframe_ns": cfg.higher_timeframe_ns,
        "rows_in": len(bars) + log.total,
        "rows_accepted": len(bars),
        "volume_accepted": float(bars["volume"].sum()),
        "rejected": dict(sorted(log.counts.items())),
    }
    if opts.rejects is not None:
        log.write(opts.rejects)
        meta["rejects_file"] = str(opts.rejects)
    return write_dataset(out, base, higher, meta)


class ImportSettingError(ValueError):
    """A bad import setting, named by its ``marlops data import`` option (``option``, e.g. ``--kind``)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def instrument_meta(
    tick_size: float | None = None,
    commission_bps: float | None = None,
    spread_bps: float | None = None,
    volume_multiplier: float | None = None,
) -> dict[str, float]:
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
            raise ImportSettingError("--" + name.replace("_", "-"), f"must be {rule}, got {value!r}")
        out[name] = float(value)
    return out


def import_dataset(
    path: Path,
    out: Path,
    cfg: FeedConfig,
    kind: str = "ticks",
    columns: str = "",
    opts: ImportOptions | None = None,
    instrument: dict[str, float | None] | None = None,
) -> MarketDataset:
    """``marlops data import``: a file of ``kind`` ticks or bars → the dataset folder ``out``, its meta.json
    recording the source, the time zone and the ``instrument``'s settings (:func:`instrument_meta`).

    ``columns`` is the mapping's text (:meth:`ColumnMap.parse`; it replaces ``opts.columns`` when given).
    Raises :class:`ImportSettingError` for a bad ``kind`` or instrument setting, ``DataFileError`` or
    ``ValueError`` for the file.
    """
    opts = opts or ImportOptions()
    if kind not in ("ticks", "bars"):
        raise ImportSettingError("--kind", f"must be 'ticks' or 'bars', got {kind!r}")
    meta: dict[str, object] = {"source": f"import:{path.name}", "kind": kind, "tz": opts.tz}
    meta |= instrument_meta(**(instrument or {}))
    if columns:
        opts = replace(opts, columns=ColumnMap.parse(columns))
    if kind == "ticks":
        return import_ticks(path, out, cfg, opts, meta)
    return import_bars(path, out, cfg, opts, meta)
