"""`marlops data import` on dirty real-world files: rejected rows counted by reason, --strict, --sort,
--rejects, column mapping by position and case, the warm-up check, and the bulk path's equality with
the live streaming path (bar for bar, matrix for matrix)."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from marlops.cli import app
from marlops.market.bulk import BulkBars, higher_bars
from marlops.market.dataset import aggregate_bars, stream_ticks
from marlops.market.feed import FeedConfig, features_from_bars
from marlops.market.importer import ImportOptions, import_bars, import_ticks
from marlops.market.readers import ColumnMap, DataFileError, read_bars, read_ticks
from marlops.market.synthetic import generate_market
from marlops.market.warmup import (
    HIGHER_BARS_TO_READY,
    REGIME_WARMUP,
    STRUCTURE_WARMUP,
    TACTICAL_WARMUP,
    WarmupError,
)

runner = CliRunner()
S = 1_000_000_000
T0 = 1_735_689_600  # 2025-01-01 00:00:00 UTC, in seconds
COLD = ImportOptions(allow_cold=True)
SMALL = FeedConfig(60 * S, 300 * S)  # 1-minute / 5-minute bars keep the fixtures small


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _ticks_csv(n: int = 20) -> list[str]:
    return [f"{T0 + 10 * i},{100 + i % 7},{1 + i % 3}" for i in range(n)]


def _meta(out: Path) -> dict:
    return json.loads((out / "meta.json").read_text())


# ------------------------------------------------------------------------------------ rejected by reason

BAD_TICK_ROWS = [
    (f"{T0 + 25},nan,1", "bad_price", "price"),
    (f"{T0 + 25},inf,1", "bad_price", "price"),
    (f"{T0 + 25},-inf,1", "bad_price", "price"),
    (f"{T0 + 25},,1", "bad_price", "price"),
    (f"{T0 + 25},0,1", "bad_price", "price"),
    (f"{T0 + 25},-2,1", "bad_price", "price"),
    (f"{T0 + 25},abc,1", "bad_price", "price"),
    (f"{T0 + 25},100,-1", "bad_size", "size"),
    (f"{T0 + 25},100,", "bad_size", "size"),
    (f"{T0 + 25},100,nan", "bad_size", "size"),
    (f"{T0 + 25},100,inf", "bad_size", "size"),
    ("yesterday,100,1", "bad_timestamp", "ts"),
    (",100,1", "bad_timestamp", "ts"),
    (f"{T0 + 25},100", "bad_shape", ""),
    (f"{T0 + 25},100,1,extra", "bad_shape", ""),
    (f"{T0 - 100},100,1", "out_of_order", "ts"),
    (f"{T0 + 20},102,3", "duplicate", "ts"),  # an exact copy of the row before it
]


@pytest.mark.parametrize("bad, reason, column", BAD_TICK_ROWS)
def test_bad_tick_row_is_rejected_and_counted(tmp_path: Path, bad: str, reason: str, column: str) -> None:
    good = _ticks_csv()
    src = _write(tmp_path / "t.csv", "ts,price,size\n" + "\n".join([*good[:3], bad, *good[3:]]) + "\n")
    clean = _write(tmp_path / "c.csv", "ts,price,size\n" + "\n".join(good) + "\n")
    rejects = tmp_path / "rejects.csv"
    ds = import_ticks(src, tmp_path / "d", SMALL, ImportOptions(rejects=rejects, allow_cold=True), {})
    ref = import_ticks(clean, tmp_path / "c", SMALL, COLD, {})
    assert ds.meta["rejected"] == {reason: 1}
    assert ds.meta["ticks_in"] == 21 and ds.meta["ticks_accepted"] == 20
    assert ds.meta["volume_accepted"] == ref.meta["volume_accepted"]
    pd.testing.assert_frame_equal(ds.base, ref.base)
    log = pd.read_csv(rejects, keep_default_na=False)
    assert log[["row", "reason", "column"]].values.tolist() == [[5, reason, column]]
    assert log["fields"].iloc[0].split(",")[0] == bad.split(",")[0]


@pytest.mark.parametrize("bad, reason, column", [b for b in BAD_TICK_ROWS if b[1] != "bad_shape"])
def test_strict_stops_at_the_bad_row_naming_row_and_column(
    tmp_path: Path, bad: str, reason: str, column: str
) -> None:
    good = _ticks_csv()
    src = _write(tmp_path / "t.csv", "ts,price,size\n" + "\n".join([*good[:3], bad, *good[3:]]) + "\n")
    with pytest.raises(DataFileError) as err:
        import_ticks(src, tmp_path / "d", SMALL, ImportOptions(strict=True, allow_cold=True), {})
    assert (err.value.row, err.value.column) == (5, column)
    assert f"row 5, column {column!r}" in str(err.value)
    assert not (tmp_path / "d" / "meta.json").exists()


def test_strict_ragged_row_names_the_line(tmp_path: Path) -> None:
    src = _write(tmp_path / "t.csv", f"ts,price,size\n{T0},1,1\n{T0 + 1},1\n")
    with pytest.raises(DataFileError, match="expected 3 fields, found 2") as err:
        import_ticks(src, tmp_path / "d", SMALL, ImportOptions(strict=True, allow_cold=True), {})
    assert err.value.row == 3


def test_strict_reports_the_earliest_bad_row_across_columns(tmp_path: Path) -> None:
    rows = [f"{T0},1,1", f"{T0 + 1},-1,1", f"{T0 + 2},1,1", "garbage,1,1"]
    src = _write(tmp_path / "t.csv", "ts,price,size\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataFileError) as err:
        read_ticks(src)
    assert (err.value.row, err.value.column) == (3, "price")


def test_out_of_order_rejected_unless_sorted_or_within_tolerance(tmp_path: Path) -> None:
    rows = [f"{T0 + t},{p},1" for t, p in [(0, 10), (5, 11), (3, 12), (8, 13), (2, 14), (9, 15)]]
    src = _write(tmp_path / "t.csv", "ts,price,size\n" + "\n".join(rows) + "\n")
    ds = import_ticks(src, tmp_path / "a", SMALL, COLD, {})
    assert ds.meta["rejected"] == {"out_of_order": 2} and ds.meta["volume_accepted"] == 4.0
    sorted_ = import_ticks(src, tmp_path / "b", SMALL, ImportOptions(sort=True, allow_cold=True), {})
    assert sorted_.meta["rejected"] == {} and sorted_.meta["volume_accepted"] == 6.0
    assert sorted_.base["open"].iloc[0] == 10 and sorted_.base["close"].iloc[0] == 15
    tolerant = FeedConfig(60 * S, 300 * S, out_of_order_tolerance_ns=3 * S)
    ds = import_ticks(src, tmp_path / "c", tolerant, COLD, {})
    assert ds.meta["rejected"] == {"out_of_order": 1}  # 3 s late is accepted, 6 s late is not


def test_duplicates_rejected_even_when_sorted(tmp_path: Path) -> None:
    rows = [f"{T0},10,1", f"{T0 + 1},11,2", f"{T0 + 1},11,2", f"{T0 + 1},12,2", f"{T0},10,1"]
    src = _write(tmp_path / "t.csv", "ts,price,size\n" + "\n".join(rows) + "\n")
    ds = import_ticks(src, tmp_path / "a", SMALL, ImportOptions(sort=True, allow_cold=True), {})
    assert ds.meta["rejected"] == {"duplicate": 2} and ds.meta["volume_accepted"] == 5.0


def test_summary_table_shows_reasons_and_costs_go_to_meta(tmp_path: Path) -> None:
    good = _ticks_csv(60)
    rows = [*good[:10], f"{T0 + 95},,1", f"{T0 + 96},100,-4", *good[10:], good[5]]
    src = _write(tmp_path / "t.csv", "ts,price,size\n" + "\n".join(rows) + "\n")
    out = tmp_path / "d"
    args = ["data", "import", str(src), "--out", str(out), "--base", "1m", "--higher", "5m", "--allow-cold"]
    costs = ["--tick-size", "0.01", "--commission-bps", "0.5", "--spread-bps", "1.5"]
    res = runner.invoke(app, [*args, *costs, "--rejects", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for line in ("ticks rejected │ 3", "bad_price │ 1", "bad_size │ 1", "out_of_order │ 1"):
        assert line in text
    meta = _meta(out)
    assert meta["rejected"] == {"bad_price": 1, "bad_size": 1, "out_of_order": 1}
    assert (meta["tick_size"], meta["commission_bps"], meta["spread_bps"]) == (0.01, 0.5, 1.5)
    assert len(pd.read_csv(tmp_path / "r.csv")) == 3


@pytest.mark.parametrize(
    "option, value",
    [("--tick-size", "0"), ("--tick-size", "nan"), ("--commission-bps", "-1"), ("--spread-bps", "inf")],
)
def test_bad_cost_options_are_refused(tmp_path: Path, option: str, value: str) -> None:
    src = _write(tmp_path / "t.csv", "ts,price,size\n" + "\n".join(_ticks_csv()) + "\n")
    res = runner.invoke(app, ["data", "import", str(src), "--out", str(tmp_path / "d"), option, value])
    assert res.exit_code == 2 and option in res.output
    assert not (tmp_path / "d" / "meta.json").exists()


# -------------------------------------------------------------------------------------------------- bars

BAR_HEADER = "ts,open,high,low,close,volume\n"


def _bar_rows(n: int = 6) -> list[str]:
    return [f"{T0 + 3600 * i},10,12,9,11,{i + 1}" for i in range(n)]


@pytest.mark.parametrize(
    "bad, reason, column",
    [
        (f"{T0 + 9000},10,10.5,9,11,5", "bad_ohlc", "high"),
        (f"{T0 + 9000},10,12,10.5,11,5", "bad_ohlc", "low"),
        (f"{T0 + 9000},10,12,9,11,-5", "bad_volume", "volume"),
        (f"{T0 + 9000},nan,12,9,11,5", "bad_price", "open"),
        (f"{T0 + 9000},10,12,9,inf,5", "bad_price", "close"),
        (f"{T0 + 3600},10,12,9,11,5", "duplicate", "ts"),
        (f"{T0},10,12,9,11,5", "duplicate", "ts"),
        ("nope,10,12,9,11,5", "bad_timestamp", "ts"),
    ],
)
def test_bad_bar_row_is_rejected_and_counted(tmp_path: Path, bad: str, reason: str, column: str) -> None:
    good = _bar_rows()
    src = _write(tmp_path / "b.csv", BAR_HEADER + "\n".join([*good[:3], bad, *good[3:]]) + "\n")
    rejects = tmp_path / "r.csv"
    cfg = FeedConfig(3600 * S, 2 * 3600 * S)
    ds = import_bars(src, tmp_path / "d", cfg, ImportOptions(rejects=rejects, allow_cold=True), {})
    assert ds.meta["rejected"] == {reason: 1}
    assert ds.meta["rows_in"] == 7 and ds.meta["rows_accepted"] == 6 and ds.meta["volume_accepted"] == 21.0
    assert ds.base["volume"].sum() == 21.0
    log = pd.read_csv(rejects, keep_default_na=False)
    assert log[["row", "reason", "column"]].values.tolist() == [[5, reason, column]]
    with pytest.raises(DataFileError) as err:
        read_bars(src, 3600 * S)
    assert (err.value.row, err.value.column) == (5, column)


def test_out_of_order_bars_rejected_unless_sorted(tmp_path: Path) -> None:
    good = _bar_rows()
    src = _write(tmp_path / "b.csv", BAR_HEADER + "\n".join([good[0], good[2], good[1], *good[3:]]) + "\n")
    rejects = []
    df = read_bars(src, 3600 * S, strict=False, sort=False)
    assert len(df) == 5 and df["volume"].tolist() == [1, 3, 4, 5, 6]
    assert len(read_bars(src, 3600 * S, strict=False, sort=True)) == 6
    with pytest.raises(DataFileError, match="out of order") as err:
        read_bars(src, 3600 * S, sort=False)
    assert err.value.row == 4 and not rejects


# ------------------------------------------------------------------------------------------ column mapping


def test_pandas_to_csv_unnamed_index_and_capitalised_headers(tmp_path: Path) -> None:
    idx = pd.date_range("2025-01-06", periods=30, freq="1h", name=None)
    c = np.linspace(1.1, 1.2, 30)
    df = pd.DataFrame({"Open": c, "High": c + 0.01, "Low": c - 0.01, "Close": c, "Volume": 5}, index=idx)
    df.to_csv(tmp_path / "fx.csv")  # header ",Open,High,Low,Close,Volume": the index column has no name
    bars = read_bars(tmp_path / "fx.csv", 3600 * S)
    assert len(bars) == 30 and bars["start"].iloc[-1] == idx[-1].value  # the last row too
    by_position = read_bars(tmp_path / "fx.csv", 3600 * S, ColumnMap.parse("ts=0,close=4,open=1"))
    pd.testing.assert_frame_equal(bars, by_position)
    df.to_parquet(tmp_path / "fx.parquet")
    pd.testing.assert_frame_equal(bars, read_bars(tmp_path / "fx.parquet", 3600 * S))


@pytest.mark.parametrize("name", ["timestamp", "Time", "DATE", "datetime", "TS"])
def test_time_column_aliases(tmp_path: Path, name: str) -> None:
    src = _write(tmp_path / "t.csv", f"{name},Price,SIZE\n{T0},1,2\n{T0 + 1},1,3\n")
    assert read_ticks(src)["size"].tolist() == [2.0, 3.0]


def test_positional_mapping_and_its_errors(tmp_path: Path) -> None:
    src = _write(tmp_path / "t.csv", f"a,b,c,d,e\nx,{T0},y,7,100\nx,{T0 + 1},y,8,101\n")
    df = read_ticks(src, ColumnMap.parse("ts=1,size=3,price=4"))
    assert df["price"].tolist() == [100.0, 101.0] and df["size"].tolist() == [7.0, 8.0]
    with pytest.raises(DataFileError, match="position 9 is out of range"):
        read_ticks(src, ColumnMap.parse("ts=9,size=3,price=4"))
    bad = _write(tmp_path / "b.csv", ",price,size\nx,1,1\ny,1,1\n")
    with pytest.raises(DataFileError) as err:
        read_ticks(bad, ColumnMap.parse("ts=0"))
    assert (err.value.row, err.value.column) == (2, "0")  # an unnamed column is named by its position


def test_unnamed_integer_index_is_not_taken_for_time(tmp_path: Path) -> None:
    pd.DataFrame({"price": [1.0, 2.0], "size": [1.0, 1.0]}).to_csv(tmp_path / "t.csv")  # index 0, 1
    with pytest.raises(DataFileError, match="missing required column") as err:
        read_ticks(tmp_path / "t.csv")
    assert "(unnamed, position 0)" in str(err.value)


def test_ambiguous_case_insensitive_name(tmp_path: Path) -> None:
    src = _write(tmp_path / "t.csv", f"ts,Price,PRICE,size\n{T0},1,2,1\n")
    with pytest.raises(DataFileError, match="several columns"):
        read_ticks(src)


@pytest.mark.parametrize("ending", ["lf", "crlf", "no-final-newline", "gz", "parquet", "tiny-chunks"])
def test_the_last_row_is_kept(tmp_path: Path, ending: str) -> None:
    rows = _ticks_csv(50)
    sep = "\r\n" if ending == "crlf" else "\n"
    text = sep.join(["ts,price,size", *rows]) + ("" if ending == "no-final-newline" else sep)
    src = tmp_path / "t.csv"
    if ending == "gz":
        src = tmp_path / "t.csv.gz"
        with gzip.open(src, "wt", newline="") as fh:
            fh.write(text)
    elif ending == "parquet":
        src = tmp_path / "t.parquet"
        pd.read_csv(pd.io.common.StringIO(text)).to_parquet(src)
    else:
        src.write_text(text, newline="")
    opts = ImportOptions(allow_cold=True, chunk_bytes=64 if ending == "tiny-chunks" else 1 << 26)
    ds = import_ticks(src, tmp_path / "d", SMALL, opts, {})
    last = rows[-1].split(",")
    assert ds.meta["ticks_accepted"] == 50 and ds.meta["volume_accepted"] == sum(1 + i % 3 for i in range(50))
    assert ds.base["close"].iloc[-1] == float(last[1])
    ticks = pd.read_parquet(tmp_path / "d" / "ticks.parquet")
    assert len(ticks) == 50 and ticks["ts"].iloc[-1] == int(last[0]) * S


# ----------------------------------------------------------------------------------------------- warm-up


def test_warmup_constants_match_the_features() -> None:
    m = generate_market(days=6, seed=2)
    feed = stream_ticks(m.ticks, FeedConfig())
    fs = features_from_bars(feed.base_frame(), feed.higher_frame())
    first = {n: int(np.argmax(getattr(fs, n))) for n in ("tactical_warm", "structure_warm", "regime_warm")}
    assert first == {
        "tactical_warm": TACTICAL_WARMUP,
        "structure_warm": STRUCTURE_WARMUP,
        "regime_warm": REGIME_WARMUP,
    }


def _hourly_fx(tmp_path: Path, days: int) -> Path:
    """Hourly FX bars, Monday to Friday (weekend hole), pandas' export: unnamed time index, capitalised."""
    idx = pd.date_range("2024-01-01", periods=days * 24, freq="1h")
    idx = idx[idx.dayofweek < 5]
    rng = np.random.default_rng(0)
    c = 1.1 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(idx))))
    df = pd.DataFrame(
        {"Open": c, "High": c * 1.001, "Low": c * 0.999, "Close": c, "Volume": rng.integers(1, 99, len(idx))},
        index=idx,
    )
    path = tmp_path / "fx.csv"
    df.to_csv(path)
    return path


def test_a_timeframe_pair_that_cannot_warm_is_refused(tmp_path: Path) -> None:
    src = _hourly_fx(tmp_path, 365)  # a year of hours: 364 closed days, the regime matrix needs 2 x 192
    with pytest.raises(WarmupError) as err:
        import_bars(src, tmp_path / "d", FeedConfig(3600 * S, 86400 * S), ImportOptions(), {})
    assert (err.value.timeframe, err.value.needed) == ("higher", 2 * HIGHER_BARS_TO_READY)
    assert 360 <= err.value.available < err.value.needed
    args = ["data", "import", str(src), "--kind", "bars", "--base", "1h", "--out"]
    res = runner.invoke(app, [*args, str(tmp_path / "d"), "--higher", "1d"])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert f"--higher 1d: the matrices need {2 * HIGHER_BARS_TO_READY} higher bars" in text
    assert f"the history has {err.value.available}" in text and "--higher 22h or shorter" in text
    assert not (tmp_path / "d" / "meta.json").exists()
    ok = runner.invoke(app, [*args, str(tmp_path / "e"), "--higher", "4h"])
    assert ok.exit_code == 0, ok.output


def test_import_raises_no_runtime_warning(tmp_path: Path) -> None:
    src = _hourly_fx(tmp_path, 60)  # weekends become flat gap bars: zero volatility, log(0) territory
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = runner.invoke(
            app,
            [
                "data",
                "import",
                str(src),
                "--kind",
                "bars",
                "--base",
                "1h",
                "--higher",
                "2h",
                "--out",
                str(tmp_path / "d"),
            ],
        )
    assert res.exit_code == 0, res.output
    assert res.exception is None


# ------------------------------------------------------------------------------- dirty copies (property)


@st.composite
def clean_and_dirty(draw: st.DrawFn) -> tuple[pd.DataFrame, list[str]]:
    """A clean tick file (strictly increasing times) and a dirty copy: the same rows with bad rows,
    exact duplicates and out-of-order copies of earlier rows inserted."""
    n = draw(st.integers(1, 60))
    steps = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    ts = T0 + np.cumsum(steps)
    price = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    size = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    clean = pd.DataFrame({"ts": ts, "price": np.array(price) * 0.5 + 99, "size": np.array(size) * 0.25})
    rows = [f"{t},{p!r},{s!r}" for t, p, s in clean.itertuples(index=False)]
    out = list(rows)
    junk = [
        f"{T0 + 1},nan,1",
        f"{T0 + 1},5,-1",
        "garbage,5,1",
        f"{T0 + 1},,1",
        f"{T0 + 1},0,2",
        f"{T0 + 1},inf,2",
    ]
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["junk", "duplicate", "older copy"]))
        at = draw(st.integers(0, len(out)))
        if kind == "junk":
            out.insert(at, draw(st.sampled_from(junk)))
            continue
        j = draw(st.integers(0, n - 1))
        where = out.index(rows[j])
        if kind == "duplicate":  # anywhere after the original: a duplicate or out of order, never new
            out.insert(draw(st.integers(where + 1, len(out))), rows[j])
        elif j + 1 < n:  # after a later original row, with a changed price: out of order
            later = out.index(rows[draw(st.integers(j + 1, n - 1))])
            t, p, s = rows[j].split(",")
            out.insert(draw(st.integers(later + 1, len(out))), f"{t},{float(p) + 0.125!r},{s}")
    return clean, out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=clean_and_dirty(), chunk=st.sampled_from([64, 256, 1 << 20]))
def test_property_dirty_copy_keeps_the_clean_volume(tmp_path: Path, case: tuple, chunk: int) -> None:
    clean, dirty_rows = case
    clean_src = tmp_path / "clean.csv"
    clean.to_csv(clean_src, index=False, float_format=None)
    dirty_src = _write(tmp_path / "dirty.csv", "ts,price,size\n" + "\n".join(dirty_rows) + "\n")
    opts = ImportOptions(allow_cold=True, chunk_bytes=chunk)
    a = import_ticks(clean_src, tmp_path / "a", SMALL, opts, {})
    b = import_ticks(dirty_src, tmp_path / "b", SMALL, opts, {})
    assert b.meta["volume_accepted"] == a.meta["volume_accepted"] == float(clean["size"].sum())
    assert b.meta["ticks_accepted"] == len(clean) and a.meta["rejected"] == {}
    assert b.meta["ticks_in"] == len(dirty_rows)
    assert sum(b.meta["rejected"].values()) == len(dirty_rows) - len(clean)
    pd.testing.assert_frame_equal(a.base, b.base, check_exact=True)
    assert b.base["volume"].sum() == pytest.approx(b.meta["volume_accepted"])


# --------------------------------------------------------------------------- bulk path == streaming path


@st.composite
def tick_streams(draw: st.DrawFn) -> pd.DataFrame:
    """Ticks in arrival order: mostly forward in time, with reorderings, copies and repeated times."""
    n = draw(st.integers(1, 120))
    steps = draw(st.lists(st.integers(-30, 40), min_size=n, max_size=n))
    ts = (T0 * S + np.cumsum(np.array(steps, np.int64) * (S // 3))).astype(np.int64)
    price = draw(st.lists(st.integers(1, 8), min_size=n, max_size=n))
    size = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5, 3.0]), min_size=n, max_size=n))
    side = draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=n, max_size=n))
    df = pd.DataFrame(
        {"ts": ts, "price": 100 + np.array(price) * 0.1, "size": size, "side": np.array(side, np.int8)}
    )
    copies = draw(st.lists(st.integers(0, n - 1), max_size=n // 3))
    return pd.concat([df, df.iloc[copies]]).sort_index(kind="stable").reset_index(drop=True)


@settings(max_examples=150, deadline=None)
@given(
    ticks=tick_streams(),
    tolerance_s=st.sampled_from([0, 1, 5, 30]),
    base_s=st.sampled_from([5, 60]),
    chunk=st.integers(1, 200),
)
def test_property_bulk_equals_streaming_bar_for_bar(
    ticks: pd.DataFrame, tolerance_s: int, base_s: int, chunk: int
) -> None:
    cfg = FeedConfig(base_s * S, 3 * base_s * S, out_of_order_tolerance_ns=tolerance_s * S)
    feed = stream_ticks(ticks, cfg)
    bulk = BulkBars(cfg.base_timeframe_ns, cfg.origin_ns, cfg.out_of_order_tolerance_ns)
    for lo in range(0, len(ticks), chunk):
        bulk.on_chunk(ticks.iloc[lo : lo + chunk])
    bulk.flush()
    base = bulk.frame()
    pd.testing.assert_frame_equal(base, feed.base_frame(), check_exact=True)
    higher, live = higher_bars(base, cfg.higher_timeframe_ns), feed.higher_frame()
    if len(live):  # (an empty live frame has no dtypes to compare)
        pd.testing.assert_frame_equal(higher, live, check_exact=True)
    assert len(higher) == len(live)
    assert {k: v for k, v in bulk.rejected.items() if v} == dict(feed.stats.rejected)
    assert (bulk.ticks_accepted, bulk.volume_accepted) == (
        feed.stats.ticks_accepted,
        feed.stats.volume_accepted,
    )


def test_bulk_equals_streaming_matrix_for_matrix_on_the_synthetic_market() -> None:
    m = generate_market(days=5, seed=4)
    cfg = FeedConfig()
    feed = stream_ticks(m.ticks, cfg)
    bulk = BulkBars(cfg.base_timeframe_ns)
    for lo in range(0, len(m.ticks), 7_001):
        bulk.on_chunk(m.ticks.iloc[lo : lo + 7_001])
    bulk.flush()
    ours = features_from_bars(bulk.frame(), higher_bars(bulk.frame(), cfg.higher_timeframe_ns))
    live = features_from_bars(feed.base_frame(), feed.higher_frame())
    for name in ("tactical", "structure", "regime", "tactical_warm", "structure_warm", "regime_warm"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(live, name), err_msg=name)
    # and the live feed's own ring matrices at the end of the stream hold the same rows
    np.testing.assert_array_equal(feed.tactical.copy(), ours.tactical[-60:].astype(np.float32))
    np.testing.assert_array_equal(feed.regime.copy(), ours.regime[-96:].astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 80),
    holes=st.lists(st.integers(0, 79), max_size=10),
    gaps=st.lists(st.integers(0, 79), max_size=10),
    offset=st.integers(0, 5),
    factor=st.sampled_from([2, 3, 4, 24]),
)
def test_property_higher_bars_equal_the_live_aggregator(
    n: int, holes: list[int], gaps: list[int], offset: int, factor: int
) -> None:
    """Including base bars with holes (a grid fill_gaps could not fill) and gap bars."""
    tf = 3600 * S
    keep = np.setdiff1d(np.arange(n), holes)
    start = (T0 * S + (offset + keep) * tf).astype(np.int64)
    rng = np.random.default_rng(n)
    c = 100 + rng.standard_normal(len(keep)).cumsum()
    base = pd.DataFrame(
        {
            "start": start,
            "end": start + tf,
            "open": c + 0.1,
            "high": c + 1,
            "low": c - 1,
            "close": c,
            "volume": rng.integers(0, 5, len(keep)) * 0.5,
            "vwap": c + 0.05,
            "ticks": rng.integers(0, 9, len(keep)),
            "gap": np.isin(keep, gaps),
        }
    )
    cfg = FeedConfig(tf, factor * tf)
    expected = aggregate_bars(base, cfg)
    got = higher_bars(base, cfg.higher_timeframe_ns)
    if len(expected) == 0:
        assert len(got) == 0
    else:
        pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_gap_filling_keeps_the_last_bar_at_real_timestamps() -> None:
    """np.arange(first, last + 1, step) sizes itself in floating point: at ~1.7e18 ns and an hourly step the
    last bucket was lost (the issue's "the last row of the file is dropped", for bar imports with gaps)."""
    from marlops.market.dataset import fill_gaps

    hour = 3_600 * S
    start = pd.Timestamp("2025-01-05 22:00", tz="UTC").value
    starts = start + hour * np.r_[np.arange(120), np.arange(168, 168 + 4319 - 168 + 1)]  # a weekend gap
    bars = pd.DataFrame(
        {
            "start": starts,
            "end": starts + hour,
            **{c: np.full(len(starts), 1.2) for c in ("open", "high", "low", "close")},
            "volume": np.ones(len(starts)),
            "vwap": np.full(len(starts), 1.2),
            "ticks": np.ones(len(starts), np.int64),
            "gap": np.zeros(len(starts), bool),
        }
    )
    full = fill_gaps(bars, hour)
    assert full["start"].iloc[-1] == starts[-1] and int((~full["gap"]).sum()) == len(starts)
    assert np.all(np.diff(full["start"]) == hour)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_bar_file_larger_than_one_read_block_is_read_whole(tmp_path: Path, suffix: str) -> None:
    """Arrow's threaded CSV reader returns a chunk per 1 MiB block: a bar file read whole must still be one
    table (a 90-day 5-minute export, ~2 MB, once failed with 'too many values to unpack')."""
    n = 30_000
    start = pd.Timestamp("2025-01-01", tz="UTC").value + 300 * S * np.arange(n, dtype=np.int64)
    close = 100.0 + np.cumsum(np.random.default_rng(0).normal(0, 0.05, n))
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(start, utc=True).strftime("%Y-%m-%d %H:%M:%S"),
            "open": close, "high": close + 0.1, "low": close - 0.1, "close": close,
            "volume": np.full(n, 12.5),
        }
    )  # fmt: skip
    src = tmp_path / f"bars.{suffix}"
    frame.to_csv(src, index=False) if suffix == "csv" else frame.to_parquet(src)
    if suffix == "csv":
        assert src.stat().st_size > 2 * 2**20
    bars = read_bars(src, 300 * S)
    assert len(bars) == n and bars["start"].iloc[-1] == start[-1] and bars["volume"].sum() == 12.5 * n
