"""Import/export of real data files: canonical frames, timestamps, validation errors that say where."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marlops.market.bars import BAR_COLUMNS
from marlops.market.frame_store import BAR_DTYPES, TICK_DTYPES, read_frame, write_frame
from marlops.market.readers import ColumnMap, DataFileError, read_bars, read_ticks

S = 1_000_000_000
HOUR = 3600 * S
DAY = 24 * HOUR
T0 = 1_710_509_400  # 2024-03-15 13:30:00 UTC, in seconds


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _tick_frame(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": (T0 + np.arange(n)) * S,
            "price": 100.0 + np.arange(n) * 0.25,
            "size": np.arange(n, dtype=float) + 1.0,
            "side": np.array([1, -1, 0, 1, -1] * (n // 5 + 1), dtype=np.int8)[:n],
        }
    ).astype(TICK_DTYPES)


def _bar_frame(n: int = 4, tf: int = HOUR) -> pd.DataFrame:
    start = T0 // 3600 * 3600 * S + np.arange(n, dtype=np.int64) * tf
    close = 100.0 + np.arange(n)
    return pd.DataFrame(
        {
            "start": start,
            "end": start + tf,
            "open": close - 0.5,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": np.full(n, 10.0),
            "vwap": close - 0.1,
            "ticks": np.full(n, 7),
            "gap": np.zeros(n, dtype=bool),
        }
    )[list(BAR_COLUMNS)].astype(BAR_DTYPES)


# ------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["t.parquet", "t.pq", "t.csv", "sub/dir/t.csv.gz"])
def test_tick_frame_round_trip(tmp_path: Path, name: str) -> None:
    df = _tick_frame(7)
    path = write_frame(df, tmp_path / name)
    assert path.exists()
    pd.testing.assert_frame_equal(read_frame(path), df, check_exact=True)


@pytest.mark.parametrize("name", ["b.parquet", "b.csv"])
def test_bar_frame_round_trip(tmp_path: Path, name: str) -> None:
    df = _bar_frame()
    path = write_frame(df, tmp_path / name)
    back = read_frame(path)
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert tuple(back.columns) == BAR_COLUMNS


@pytest.mark.parametrize("name", ["t.parquet", "t.csv"])
def test_written_ticks_import_back_exactly(tmp_path: Path, name: str) -> None:
    df = _tick_frame(10)
    pd.testing.assert_frame_equal(read_ticks(write_frame(df, tmp_path / name)), df, check_exact=True)


@pytest.mark.parametrize("name", ["b.parquet", "b.csv"])
def test_written_bars_import_back(tmp_path: Path, name: str) -> None:
    df = _bar_frame()
    raw = df.drop(columns=["end", "gap"]).rename(columns={"start": "ts"})
    got = read_bars(write_frame(raw, tmp_path / name), HOUR)
    pd.testing.assert_frame_equal(got, df, check_exact=True)


finite = {"allow_nan": False, "allow_infinity": False}


@st.composite
def tick_frames(draw: st.DrawFn, min_size: int = 0) -> pd.DataFrame:
    n = draw(st.integers(min_size, 30))
    ts = sorted(draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n)))
    price = draw(st.lists(st.floats(min_value=1e-300, max_value=1e15, **finite), min_size=n, max_size=n))
    size = draw(st.lists(st.floats(min_value=0.0, max_value=1e15, **finite), min_size=n, max_size=n))
    side = draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=n, max_size=n))
    return pd.DataFrame(
        {
            "ts": np.array(ts, dtype=np.int64),
            "price": np.array(price, dtype=np.float64),
            "size": np.array(size, dtype=np.float64),
            "side": np.array(side, dtype=np.int8),
        }
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=tick_frames(), suffix=st.sampled_from([".parquet", ".csv"]))
def test_property_write_read_round_trip_is_exact(tmp_path: Path, df: pd.DataFrame, suffix: str) -> None:
    path = write_frame(df, tmp_path / f"prop{suffix}")
    pd.testing.assert_frame_equal(read_frame(path), df, check_exact=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=tick_frames(min_size=1), suffix=st.sampled_from([".parquet", ".csv"]))
def test_property_import_of_valid_ticks_is_exact(tmp_path: Path, df: pd.DataFrame, suffix: str) -> None:
    df = df[df["price"] > 0].reset_index(drop=True)
    path = write_frame(df, tmp_path / f"prop{suffix}")
    pd.testing.assert_frame_equal(read_ticks(path, ts_unit="ns"), df, check_exact=True)


# --------------------------------------------------------------------------------------- column mapping


def test_column_map_parse() -> None:
    cm = ColumnMap.parse(" ts=time , price=px,size=qty,side=none")
    assert (cm.ts, cm.price, cm.size, cm.side) == ("time", "px", "qty", None)
    assert cm.open == "open" and cm.vwap == "vwap"
    assert ColumnMap.parse("") == ColumnMap()


@pytest.mark.parametrize(
    "spec, match",
    [
        ("ts=time,bogus=x", "unknown key 'bogus'"),
        ("ts", "expected key=column"),
        ("price=", "required"),
        ("ts=a,ts=b", "twice"),
    ],
)
def test_column_map_parse_errors(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ColumnMap.parse(spec)


def test_read_ticks_with_mapped_columns(tmp_path: Path) -> None:
    text = f"time,px,qty,aggressor,venue\n{T0},10.5,2,BUY,x\n{T0 + 1},10.25,1,s,y\n"
    path = _write(tmp_path / "t.csv", text)
    df = read_ticks(path, ColumnMap.parse("ts=time,price=px,size=qty,side=aggressor"))
    assert df["ts"].tolist() == [T0 * S, (T0 + 1) * S]
    assert df["price"].tolist() == [10.5, 10.25]
    assert df["side"].tolist() == [1, -1]
    assert df.dtypes.astype(str).to_dict() == TICK_DTYPES


def test_side_words_numbers_and_missing_side(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.csv",
        "ts,price,size,side\n"
        + "".join(f"{T0 + i},1,1,{s}\n" for i, s in enumerate(["buy", "SELL", "b", "S", "", "1", "-1", "0"])),
    )
    assert read_ticks(path)["side"].tolist() == [1, -1, 1, -1, 0, 1, -1, 0]
    no_side = _write(tmp_path / "n.csv", f"ts,price,size\n{T0},1,1\n")
    assert read_ticks(no_side)["side"].tolist() == [0]


def test_explicitly_mapped_optional_column_must_exist(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", f"ts,price,size\n{T0},1,1\n")
    with pytest.raises(DataFileError, match="aggressor"):
        read_ticks(path, ColumnMap(side="aggressor"))


def test_bars_without_vwap_and_ticks(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.csv", f"ts,open,high,low,close,volume\n{T0},10,13,9,11,5\n")
    df = read_bars(path, 60 * S)
    assert df["vwap"].iloc[0] == pytest.approx((13 + 9 + 11) / 3)
    assert df["ticks"].iloc[0] == 0
    assert df["end"].iloc[0] - df["start"].iloc[0] == 60 * S
    assert tuple(df.columns) == BAR_COLUMNS and not df["gap"].any()


# ------------------------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    "text, tz, expected_s",
    [
        ("2024-03-15T09:30:00-04:00", "UTC", T0),
        ("2024-03-15T13:30:00Z", "UTC", T0),
        ("2024-03-15 15:30:00+0200", "America/New_York", T0),  # an offset wins over tz
        ("2024-03-15T13:30:00", "UTC", T0),
        ("2024-03-15 09:30:00", "America/New_York", T0),  # EDT (UTC-4) after 2024-03-10
        ("2024-01-15 09:30:00", "America/New_York", 1_705_329_000),  # EST (UTC-5): 14:30 UTC
    ],
)
def test_iso_timestamps_convert_to_utc_ns(tmp_path: Path, text: str, tz: str, expected_s: int) -> None:
    path = _write(tmp_path / "t.csv", f"ts,price,size\n{text},1,1\n")
    assert read_ticks(path, tz=tz)["ts"].tolist() == [expected_s * S]


def test_iso_fractions_and_mixed_offsets(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.csv", "ts,price,size\n2024-03-15T13:30:00.123456789Z,1,1\n2024-03-15 09:30:01.5,1,1\n"
    )
    ts = read_ticks(path, tz="America/New_York")["ts"].tolist()
    assert ts == [T0 * S + 123_456_789, (T0 + 1) * S + 500_000_000]


@pytest.mark.parametrize(
    "values, unit",
    [
        ([T0, T0 + 1], None),
        ([T0 * 1000, (T0 + 1) * 1000], None),
        ([T0 * 10**6, (T0 + 1) * 10**6], None),
        ([T0 * S, (T0 + 1) * S], None),
        ([T0 + 0.0, T0 + 1.0], None),
        ([T0 * 1000, (T0 + 1) * 1000], "ms"),
    ],
)
def test_epoch_units_inferred_or_given(tmp_path: Path, values: list[float], unit: str | None) -> None:
    path = _write(tmp_path / "t.csv", "ts,price,size\n" + "".join(f"{v},1,1\n" for v in values))
    assert read_ticks(path, ts_unit=unit)["ts"].tolist() == [T0 * S, (T0 + 1) * S]


def test_fractional_epoch_seconds(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", f"ts,price,size\n{T0}.25,1,1\n")
    assert read_ticks(path)["ts"].tolist() == [T0 * S + 250_000_000]


def test_mixed_epoch_units_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", f"ts,price,size\n{T0 * 1000},1,1\n{T0 * 1000 + 1},1,1\n{T0},1,1\n")
    with pytest.raises(DataFileError, match="mixes units") as err:
        read_ticks(path)
    assert err.value.row == 4 and err.value.column == "ts"


def test_parquet_datetime_columns(tmp_path: Path) -> None:
    aware = pd.DataFrame({"ts": pd.to_datetime([T0], unit="s", utc=True), "price": [1.0], "size": [1.0]})
    assert read_ticks(write_frame(aware, tmp_path / "a.parquet"))["ts"].tolist() == [T0 * S]
    naive = pd.DataFrame({"ts": [pd.Timestamp("2024-03-15 09:30")], "price": [1.0], "size": [1.0]})
    got = read_ticks(write_frame(naive, tmp_path / "n.parquet"), tz="America/New_York")
    assert got["ts"].tolist() == [T0 * S]


def test_invalid_tz_and_unit(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", f"ts,price,size\n{T0},1,1\n")
    with pytest.raises(ValueError, match="time zone 'Mars/Olympus'"):
        read_ticks(path, tz="Mars/Olympus")
    with pytest.raises(ValueError, match="ts_unit"):
        read_ticks(path, ts_unit="minutes")


@pytest.mark.parametrize("text", ["2024-11-03 01:30:00", "2024-03-10 02:30:00"])
def test_ambiguous_or_missing_local_time(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path / "t.csv", f"ts,price,size\n{text},1,1\n")
    with pytest.raises(DataFileError, match="ambiguous or does not exist") as err:
        read_ticks(path, tz="America/New_York")
    assert err.value.row == 2


# ------------------------------------------------------------------------------------------- validation

TICK_HEADER = "time,px,qty,aggressor\n"
TICK_MAP = ColumnMap.parse("ts=time,price=px,size=qty,side=aggressor")


@pytest.mark.parametrize(
    "bad_line, column, fragment",
    [
        (f"{T0 + 2},abc,1,buy", "px", "'abc'"),
        (f"{T0 + 2},,1,buy", "px", "missing value"),
        (f"{T0 + 2},nan,1,buy", "px", "missing value"),
        (f"{T0 + 2},inf,1,buy", "px", "finite"),
        (f"{T0 + 2},0,1,buy", "px", "> 0"),
        (f"{T0 + 2},-3.5,1,buy", "px", "> 0"),
        (f"{T0 + 2},10,-1,buy", "qty", ">= 0"),
        (f"{T0 + 2},10,x1,buy", "qty", "'x1'"),
        (f"{T0 + 2},10,1,hold", "aggressor", "'hold'"),
        ("yesterday-ish,10,1,buy", "time", "'yesterday-ish'"),
        (f"{T0 + 2}x,10,1,buy", "time", f"'{T0 + 2}x'"),
        (",10,1,buy", "time", "missing timestamp"),
    ],
)
def test_tick_validation_errors_name_row_and_column(
    tmp_path: Path, bad_line: str, column: str, fragment: str
) -> None:
    # line 1 header, lines 2-3 good, line 4 blank (skipped but counted), line 5 bad, line 6 good
    text = TICK_HEADER + f"{T0},10,1,buy\n{T0 + 1},10,1,sell\n\n{bad_line}\n{T0 + 3},10,1,b\n"
    path = _write(tmp_path / "t.csv", text)
    with pytest.raises(DataFileError) as err:
        read_ticks(path, TICK_MAP)
    message = str(err.value)
    assert err.value.row == 5 and err.value.column == column
    assert "row 5" in message and repr(column) in message and fragment in message and str(path) in message


def test_numeric_side_out_of_range(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", f"ts,price,size,side\n{T0},1,1,1\n{T0 + 1},1,1,2\n")
    with pytest.raises(DataFileError, match="side must be") as err:
        read_ticks(path)
    assert (err.value.row, err.value.column) == (3, "side")


def test_parquet_rows_are_one_based(tmp_path: Path) -> None:
    df = _tick_frame(5)
    df.loc[3, "price"] = -1.0
    path = write_frame(df, tmp_path / "t.parquet")
    with pytest.raises(DataFileError, match="row 4") as err:
        read_ticks(path)
    assert (err.value.row, err.value.column) == (4, "price")


def test_quoted_multiline_field_keeps_line_numbers(tmp_path: Path) -> None:
    text = f'ts,price,size,note\n{T0},1,1,"two\nlines"\n{T0 + 1},-1,1,x\n'
    with pytest.raises(DataFileError) as err:
        read_ticks(_write(tmp_path / "t.csv", text))
    assert err.value.row == 4


def test_missing_column_lists_available(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", f"time,px,volume\n{T0},1,1\n")
    with pytest.raises(DataFileError) as err:
        read_ticks(path, ColumnMap(ts="time", price="px"))
    message = str(err.value)
    assert err.value.column == "size" and "'size'" in message
    assert "available: time, px, volume" in message


def test_ragged_csv_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", f"ts,price,size\n{T0},1,1\n{T0 + 1},1\n")
    with pytest.raises(DataFileError, match="expected 3 fields") as err:
        read_ticks(path)
    assert err.value.row == 3


BAR_HEADER = "ts,open,high,low,close,volume\n"


@pytest.mark.parametrize(
    "bad_line, column, fragment",
    [
        (f"{T0 + 7200},10,10.5,9,11,5", "high", "below max(open, close)"),
        (f"{T0 + 7200},10,12,10.5,11,5", "low", "above min(open, close)"),
        (f"{T0 + 7200},10,12,9,11,-5", "volume", ">= 0"),
        (f"{T0 + 7200},0,12,9,11,5", "open", "> 0"),
        (f"{T0 + 7200},10,12,9,nan,5", "close", "missing value"),
        (f"{T0 + 7200},10,12,-9,11,5", "low", "> 0"),
        (f"{T0 + 7200},10,12,9,11,lots", "volume", "'lots'"),
        (f"{T0 + 3600},10,12,9,11,5", "ts", "duplicate bar start"),
        (f"{T0 + 7200 + 60},10,12,9,11,5", "ts", "not a whole multiple"),
    ],
)
def test_bar_validation_errors_name_row_and_column(
    tmp_path: Path, bad_line: str, column: str, fragment: str
) -> None:
    good = [f"{T0},10,12,9,11,5", f"{T0 + 3600},10,12,9,11,5"]
    text = BAR_HEADER + "\n".join([*good, bad_line, f"{T0 + 4 * 3600},10,12,9,11,5"]) + "\n"
    path = _write(tmp_path / "b.csv", text)
    with pytest.raises(DataFileError) as err:
        read_bars(path, HOUR)
    message = str(err.value)
    assert (err.value.row, err.value.column) == (4, column)
    assert "row 4" in message and repr(column) in message and fragment in message


def test_duplicate_bar_names_first_occurrence(tmp_path: Path) -> None:
    text = BAR_HEADER + f"{T0},10,12,9,11,5\n{T0 + 3600},10,12,9,11,5\n{T0},10,12,9,11,5\n"
    with pytest.raises(DataFileError, match="first at row 2") as err:
        read_bars(_write(tmp_path / "b.csv", text), HOUR)
    assert err.value.row == 4


# ------------------------------------------------------------------------------------ files and ordering


@pytest.mark.parametrize("name", ["t.txt", "t.json", "t.csv.bz2", "t"])
def test_unsupported_suffix(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, f"ts,price,size\n{T0},1,1\n")
    with pytest.raises(DataFileError, match="unsupported file type"):
        read_ticks(path)
    with pytest.raises(DataFileError, match="unsupported file type"):
        write_frame(_tick_frame(), tmp_path / name)


@pytest.mark.parametrize("content", ["", "ts,price,size\n", "ts,price,size\n\n\n"])
def test_empty_csv(tmp_path: Path, content: str) -> None:
    with pytest.raises(DataFileError, match="no rows"):
        read_ticks(_write(tmp_path / "t.csv", content))


def test_empty_parquet_and_missing_file(tmp_path: Path) -> None:
    path = write_frame(_tick_frame().iloc[:0], tmp_path / "t.parquet")
    with pytest.raises(DataFileError, match="no rows"):
        read_ticks(path)
    with pytest.raises(DataFileError, match="not found"):
        read_ticks(tmp_path / "nope.csv")


def test_gzip_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(f"ts,price,size\n{T0},1,1\n{T0 + 1},-2,1\n")
    with pytest.raises(DataFileError) as err:
        read_ticks(path)
    assert (err.value.row, err.value.column) == (3, "price")


def test_out_of_order_ticks_sorted_stably(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [(T0 + 2, 1.0), (T0, 2.0), (T0 + 1, 3.0), (T0, 4.0), (T0 + 3, 5.0), (T0 + 3, 6.0)]
    path = _write(tmp_path / "t.csv", "ts,price,size\n" + "".join(f"{t},{p},1\n" for t, p in rows))
    with caplog.at_level(logging.INFO, logger="marlops.market.readers"):
        df = read_ticks(path)
    assert df["ts"].tolist() == [t * S for t in (T0, T0, T0 + 1, T0 + 2, T0 + 3, T0 + 3)]
    assert df["price"].tolist() == [2.0, 4.0, 3.0, 1.0, 5.0, 6.0]  # equal timestamps keep file order
    assert "3 of 6 ticks were out of order" in caplog.text


def test_duplicate_tick_timestamps_kept(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", f"ts,price,size\n{T0},1,1\n{T0},1,1\n")
    assert len(read_ticks(path)) == 2


def test_negative_tick_timestamp_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "ts,price,size\n1969-12-31T23:59:59Z,1,1\n")
    with pytest.raises(DataFileError, match="1970") as err:
        read_ticks(path)
    assert (err.value.row, err.value.column) == (2, "ts")


def test_hourly_bars_with_hole_and_out_of_order(tmp_path: Path) -> None:
    lines = [f"2024-03-15T{h:02d}:00:00Z,10,12,9,11,{h}" for h in (3, 1, 2, 7)]
    df = read_bars(_write(tmp_path / "b.csv", BAR_HEADER + "\n".join(lines) + "\n"), HOUR)
    base = (T0 - 13 * 3600 - 1800) * S  # 2024-03-15 00:00 UTC
    assert df["start"].tolist() == [base + h * HOUR for h in (1, 2, 3, 7)]
    assert df["volume"].tolist() == [1.0, 2.0, 3.0, 7.0]
    assert (df["end"] - df["start"] == HOUR).all()


def test_daily_bars_in_new_york_across_dst(tmp_path: Path) -> None:
    # Local midnights 2024-03-08 (EST) .. 2024-03-12 (EDT, after the 03-10 switch); weekend hole 09/10.
    dates = ["2024-03-08", "2024-03-11", "2024-03-12"]
    text = BAR_HEADER + "".join(f"{d},10,12,9,11,5\n" for d in dates)
    df = read_bars(_write(tmp_path / "d.csv", text), DAY, tz="America/New_York")
    assert df["start"].tolist() == [1_709_874_000 * S, 1_710_129_600 * S, 1_710_129_600 * S + DAY]
    assert (df["end"] - df["start"] == DAY).all()


def test_daily_bars_utc_and_misaligned(tmp_path: Path) -> None:
    text = BAR_HEADER + "2024-03-08,10,12,9,11,5\n2024-03-09,10,12,9,11,5\n2024-03-09T12:00:00,10,12,9,11,5\n"
    path = _write(tmp_path / "d.csv", text)
    with pytest.raises(DataFileError, match="not a whole multiple") as err:
        read_bars(path, DAY)
    assert (err.value.row, err.value.column) == (4, "ts")
    ok = write_frame(
        pd.DataFrame(
            {
                "ts": ["2024-03-08", "2024-03-09"],
                "open": [1.0, 1.0],
                "high": [1.0, 1.0],
                "low": [1.0, 1.0],
                "close": [1.0, 1.0],
                "volume": [0.0, 0.0],
            }
        ),
        tmp_path / "ok.parquet",
    )
    assert read_bars(ok, DAY)["start"].diff().iloc[1] == DAY


def test_error_pickles_with_its_fields() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(DataFileError("f.csv", "bad", row=3, column="px")))
    assert (err.path, err.row, err.column, str(err)) == ("f.csv", 3, "px", "f.csv, row 3, column 'px': bad")
