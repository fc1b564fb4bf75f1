"""Market charts: price with regime shading over volume, as PNG or as an HTML page with a summary.

Uses matplotlib's object API on a bare :class:`~matplotlib.figure.Figure` (Agg canvas): no pyplot, no
global backend switch, no display needed, and safe to call from worker threads.

Large inputs are downsampled before drawing (more than 20k bars → buckets of a whole multiple of the
bar timeframe, e.g. 5m → 30m): the close line uses the bucket's last close and a faint band shows its
high–low range, so a year of 5-minute bars plots in about a second without hiding extremes.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

REGIME_NAMES: tuple[str, ...] = ("trending", "ranging", "volatile", "transition")
# Colour-blind-friendly (Okabe–Ito) hues; light alpha keeps the price line readable on top.
REGIME_COLORS: tuple[str, ...] = ("#009E73", "#0072B2", "#D55E00", "#999999")
MAX_POINTS = 20_000
CANDLE_MAX_BARS = 500
VOLUME_BARS = 400
_NS_PER_DAY = 86_400 * 10**9
_UP, _DOWN = "#26a69a", "#ef5350"
_GAP = "#b2182b"  # darker than the down colour, so gap marks do not read as down-bar volume
_ROUND_WIDTHS_NS: tuple[int, ...] = tuple(
    int(pd.Timedelta(w).value)
    for w in (
        "1min",
        "2min",
        "5min",
        "10min",
        "15min",
        "30min",
        "1h",
        "2h",
        "4h",
        "6h",
        "12h",
        "1D",
        "2D",
        "7D",
    )
)


def _to_num(ns: np.ndarray) -> np.ndarray:
    """int64 ns (UTC) → matplotlib date numbers (days since 1970-01-01, the default epoch)."""
    return mdates.date2num(np.asarray(ns, dtype=np.int64).view("datetime64[ns]"))


def _fmt_td(ns: int) -> str:
    """5m / 30m / 4h / 1d style, falling back to pandas' form for odd widths."""
    for unit, size in (("d", _NS_PER_DAY), ("h", 3_600 * 10**9), ("m", 60 * 10**9), ("s", 10**9)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return str(pd.Timedelta(ns))


def _timeframe_ns(bars: pd.DataFrame) -> int:
    """The bar timeframe: ``end - start`` when present, else the most common start difference."""
    if "end" in bars.columns and len(bars):
        return int(np.median(bars["end"].to_numpy(np.int64) - bars["start"].to_numpy(np.int64)))
    diffs = np.diff(bars["start"].to_numpy(np.int64))
    diffs = diffs[diffs > 0]
    return int(np.median(diffs)) if len(diffs) else 60 * 10**9


def _downsample(bars: pd.DataFrame, tf: int, max_points: int = MAX_POINTS) -> tuple[pd.DataFrame, int]:
    """Aggregate to buckets of a round width (a multiple of ``tf``, e.g. 5m → 30m) so that at most about
    ``max_points`` remain. Returns the frame and the bucket width (``tf`` itself when left unchanged)."""
    if len(bars) <= max_points:
        return bars, tf
    need = int(np.ceil(len(bars) / max_points)) * tf
    round_widths = [w for w in _ROUND_WIDTHS_NS if w % tf == 0 and w >= need]
    width = min(round_widths) if round_widths else need
    start = bars["start"].to_numpy(np.int64)
    bucket = start - start % width
    first = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])  # bars are sorted: runs = buckets
    last = np.r_[first[1:] - 1, len(start) - 1]
    gap = bars["gap"].to_numpy(bool) if "gap" in bars.columns else np.zeros(len(start), bool)
    out = pd.DataFrame(
        {
            "start": bucket[first],
            "end": bucket[first] + width,
            "open": bars["open"].to_numpy(float)[first],
            "high": np.maximum.reduceat(bars["high"].to_numpy(float), first),
            "low": np.minimum.reduceat(bars["low"].to_numpy(float), first),
            "close": bars["close"].to_numpy(float)[last],
            "volume": np.add.reduceat(bars["volume"].to_numpy(float), first),
            # a bucket is flagged if any bar in it was a gap, so missing data stays visible when zoomed out
            "gap": np.logical_or.reduceat(gap, first),
        }
    )
    return out, width


def _regime_runs(regimes: pd.DataFrame, x_end_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge consecutive equal regimes into runs: (start_ns, end_ns, regime) arrays."""
    reg = regimes.sort_values("start", kind="stable")
    start = reg["start"].to_numpy(np.int64)
    code = reg["regime"].fillna(-1).to_numpy(np.int64)  # missing → -1: a run that is left unshaded
    if len(start) == 0:
        empty = np.array([], dtype=np.int64)
        return empty, empty, empty
    change = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    run_start = start[change]
    run_end = np.r_[run_start[1:], max(x_end_ns, int(start[-1]))]
    return run_start, run_end, code[change]


def _shade_regimes(ax: Axes, regimes: pd.DataFrame, lo_ns: int, hi_ns: int) -> list[Patch]:
    """Shade merged regime runs across the full panel height; one collection per regime draws fast.

    Same look as ``axvspan`` per run (x in data, y in axes coordinates) but one artist per regime,
    so thousands of runs cost no more than a handful.
    """
    run_start, run_end, code = _regime_runs(regimes, hi_ns)
    keep = (run_end > lo_ns) & (run_start < hi_ns)
    run_start = np.clip(run_start[keep], lo_ns, hi_ns)
    run_end = np.clip(run_end[keep], lo_ns, hi_ns)
    code = code[keep]
    x0, x1 = _to_num(run_start), _to_num(run_end)
    handles: list[Patch] = []
    for r, (name, color) in enumerate(zip(REGIME_NAMES, REGIME_COLORS, strict=True)):
        sel = code == r
        if not sel.any():
            continue
        verts = [((a, 0.0), (a, 1.0), (b, 1.0), (b, 0.0)) for a, b in zip(x0[sel], x1[sel], strict=True)]
        coll = PolyCollection(
            verts,
            facecolors=color,
            edgecolors="none",
            alpha=0.18,
            transform=ax.get_xaxis_transform(),
            zorder=0,
        )
        ax.add_collection(coll, autolim=False)
        share = float(np.sum(run_end[sel] - run_start[sel])) / max(hi_ns - lo_ns, 1)
        handles.append(Patch(facecolor=color, alpha=0.35, label=f"{name} ({share:.0%})"))
    return handles


def _rects(
    ax: Axes,
    x_mid: np.ndarray,
    bottom: np.ndarray,
    top: np.ndarray,
    width: float,
    colors: np.ndarray | str,
    **kw: float,
) -> None:
    """Vertical bars as one PolyCollection: same picture as ``ax.bar`` at a fraction of the cost."""
    x0, x1 = x_mid - width / 2, x_mid + width / 2
    verts = np.stack([np.c_[x0, bottom], np.c_[x0, top], np.c_[x1, top], np.c_[x1, bottom]], axis=1)
    ax.add_collection(PolyCollection(verts, facecolors=colors, edgecolors="none", **kw))
    ax.update_datalim(np.r_[verts.reshape(-1, 2)])
    ax.autoscale_view()


def _draw_candles(ax: Axes, x: np.ndarray, bars: pd.DataFrame, width_days: float) -> None:
    o, h, lo, c = (bars[k].to_numpy(float) for k in ("open", "high", "low", "close"))
    colors = np.where(c >= o, _UP, _DOWN)
    ax.vlines(x, lo, h, colors=colors, linewidth=0.8, zorder=2)
    body = np.abs(c - o)
    body = np.where(body > 0, body, (h - lo).max() * 1e-3 + 1e-12)  # doji: a hairline, not nothing
    _rects(ax, x, np.minimum(o, c), np.minimum(o, c) + body, width_days * 0.7, colors, zorder=3)


def _summary(bars: pd.DataFrame, tf: int, regimes: pd.DataFrame | None) -> list[tuple[str, str]]:
    def ts(ns: int) -> str:
        return pd.Timestamp(int(ns), tz="UTC").strftime("%Y-%m-%d %H:%M UTC")

    close = bars["close"].to_numpy(float)
    rows = [
        ("bars", f"{len(bars):,}"),
        ("timeframe", _fmt_td(tf)),
        ("first bar", ts(bars["start"].iloc[0])),
        ("last bar", ts(bars["start"].iloc[-1])),
        ("first / last close", f"{close[0]:,.4f} / {close[-1]:,.4f}"),
        ("return", f"{close[-1] / close[0] - 1:+.2%}"),
        ("low / high", f"{bars['low'].min():,.4f} / {bars['high'].max():,.4f}"),
        ("total volume", f"{bars['volume'].sum():,.2f}"),
    ]
    if "gap" in bars.columns:
        rows.append(("gap bars", f"{int(bars['gap'].sum()):,}"))
    if regimes is not None and len(regimes):
        counts = regimes["regime"].value_counts(normalize=True)
        rows.append(
            (
                "regime share (rows)",
                ", ".join(
                    f"{REGIME_NAMES[int(r)] if 0 <= int(r) < len(REGIME_NAMES) else r} {v:.0%}"
                    for r, v in counts.sort_index().items()
                ),
            )
        )
    return rows


def _render(bars: pd.DataFrame, regimes: pd.DataFrame | None, title: str) -> tuple[bytes, int]:
    for col in ("start", "open", "high", "low", "close", "volume"):
        if col not in bars.columns:
            raise ValueError(f"bars: missing column {col!r} (expected the canonical bar frame)")
    if len(bars) == 0:
        raise ValueError("bars: no rows to plot")
    bars = bars.sort_values("start", kind="stable").reset_index(drop=True)
    tf = _timeframe_ns(bars)
    plot, width = _downsample(bars, tf)
    lo_ns, hi_ns = int(plot["start"].iloc[0]), int(plot["start"].iloc[-1]) + width
    x = _to_num(plot["start"].to_numpy(np.int64))
    width_days = width / _NS_PER_DAY

    fig = Figure(figsize=(14, 7), dpi=110)
    # fixed margins: constrained layout would measure every tick label first and double the draw time
    grid = {"left": 0.07, "right": 0.985, "top": 0.95, "bottom": 0.08, "hspace": 0.06}
    ax, axv = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1), gridspec_kw=grid)
    handles: list[Patch] = []
    if regimes is not None and len(regimes):
        for col in ("start", "regime"):
            if col not in regimes.columns:
                raise ValueError(f"regimes: missing column {col!r} (expected start, regime)")
        handles = _shade_regimes(ax, regimes, lo_ns, hi_ns)

    if len(plot) <= CANDLE_MAX_BARS:
        _draw_candles(ax, x + width_days / 2, plot, width_days)
    else:
        xm = x + width_days / 2  # centre of the bucket
        ax.fill_between(
            xm,
            plot["low"].to_numpy(float),
            plot["high"].to_numpy(float),
            color="#1f3b73",
            alpha=0.15,
            linewidth=0,
            zorder=1,
            label="high–low",
        )
        ax.plot(xm, plot["close"].to_numpy(float), color="#1f3b73", linewidth=0.8, zorder=2, label="close")
    label = _fmt_td(width) if width != tf else None
    ax.set_ylabel("price")
    ax.grid(True, alpha=0.3, linewidth=0.5)
    line_handles, _ = ax.get_legend_handles_labels()
    if line_handles or handles:
        ax.legend(handles=[*line_handles, *handles], loc="upper left", fontsize=8, framealpha=0.85)
    suffix = f"  (shown at {label} resolution)" if label else ""
    ax.set_title((title or "market") + suffix, loc="left", fontsize=11)

    if len(plot) <= CANDLE_MAX_BARS:
        vol = plot["volume"].to_numpy(float)
        colors = np.where(plot["close"].to_numpy(float) >= plot["open"].to_numpy(float), _UP, _DOWN)
        _rects(axv, x + width_days / 2, np.zeros_like(vol), vol, width_days * 0.8, colors, alpha=0.8)
        axv.set_ylabel("volume")
    else:
        # Thousands of per-bar volumes are unreadable noise at this scale: sum into ~VOLUME_BARS buckets.
        vbars, vwidth = _downsample(bars, tf, VOLUME_BARS)
        xv = _to_num(vbars["start"].to_numpy(np.int64))
        vdays = vwidth / _NS_PER_DAY
        vv = vbars["volume"].to_numpy(float)
        _rects(axv, xv + vdays / 2, np.zeros_like(vv), vv, vdays * 0.85, "#5a6b8c", alpha=0.85)
        axv.set_ylabel(f"volume / {_fmt_td(vwidth)}")
    if "gap" in plot.columns and plot["gap"].any():
        xg = x[plot["gap"].to_numpy(bool)] + width_days / 2
        axv.vlines(
            xg,
            0.0,
            0.12,
            colors=_GAP,
            alpha=0.8,
            linewidth=0.8,
            zorder=4,
            transform=axv.get_xaxis_transform(),
            label=f"gap ({int(bars['gap'].sum()):,} bars)",
        )
        if len(plot) <= CANDLE_MAX_BARS:  # wide bars: also a faint full-height band, so a gap stands out
            for xi in xg:
                axv.axvspan(xi - width_days / 2, xi + width_days / 2, color=_GAP, alpha=0.12, linewidth=0)
        axv.legend(loc="upper left", fontsize=8, framealpha=0.85)
    axv.set_ylim(bottom=0)
    axv.grid(True, alpha=0.3, linewidth=0.5)

    locator = mdates.AutoDateLocator(tz="UTC")
    axv.xaxis.set_major_locator(locator)
    axv.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz="UTC"))
    axv.set_xlim(_to_num(np.array([lo_ns]))[0], _to_num(np.array([hi_ns]))[0])
    axv.set_xlabel("time (UTC)")

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue(), tf


def plot_market(
    bars: pd.DataFrame, path: str | Path, regimes: pd.DataFrame | None = None, title: str = ""
) -> Path:
    """Plot ``bars`` (canonical bar frame) with optional regime shading to ``path`` (.png or .html).

    ``regimes``: columns ``start`` (int64 ns) and ``regime`` (0..3 = trending, ranging, volatile,
    transition) at any timeframe; each regime lasts until the next row's start (the last one to the end
    of the bars). Other codes and missing values are left unshaded. Returns ``path``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise ValueError(f"plot_market: {path} must end in .png or .html")
    png, tf = _render(bars, regimes, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        path.write_bytes(png)
        return path
    ordered = bars.sort_values("start", kind="stable")
    table = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in _summary(ordered, tf, regimes)
    )
    name = html.escape(title or "market")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
img {{ max-width: 100%; height: auto; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; margin-top: 1rem; font-size: 0.9rem; }}
th, td {{ padding: 0.25rem 0.75rem; border-bottom: 1px solid #eee; text-align: left; }}
th {{ color: #555; font-weight: 600; }}
</style></head>
<body>
<h1>{name}</h1>
<img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">
<table>
{table}
</table>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


__all__ = ["REGIME_COLORS", "REGIME_NAMES", "plot_market"]
