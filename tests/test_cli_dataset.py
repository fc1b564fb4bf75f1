"""The command line and datasets on disk, end to end on small data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from marlops.cli import app
from marlops.market.bars import MINUTE_NS
from marlops.market.dataset import MarketDataset, aggregate_bars, fill_gaps
from marlops.market.feed import FeedConfig
from marlops.market.matrices import MATRIX_SPECS

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _commands(typer_app) -> list[list[str]]:
    import typer.main

    group = typer.main.get_command(typer_app)
    out = [[]]
    for name, cmd in group.commands.items():
        out.append([name])
        out += [[name, sub] for sub in getattr(cmd, "commands", {})]
    return out


@pytest.mark.parametrize("args", _commands(app), ids=lambda a: " ".join(a) or "marlops")
def test_every_command_has_help(args: list[str]) -> None:
    res = runner.invoke(app, [*args, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output and len(res.output) > 200


def test_synth_then_inspect(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    res = runner.invoke(app, ["data", "synth", "--days", "6", "--seed", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "ticks accepted" in res.output
    ds = MarketDataset.load(out)
    assert len(ds.base) == 6 * 288 and len(ds.higher) == 6 * 48
    assert ds.meta["ticks_accepted"] == ds.meta["ticks_in"] > 0
    assert ds.base["volume"].sum() == pytest.approx(ds.meta["volume_accepted"])
    assert set(ds.labels["regime"]) <= {0, 1, 2, 3}
    feats = pd.read_parquet(out / "features_higher.parquet")
    assert (feats["ts"].to_numpy() == ds.higher["end"].to_numpy()).all()
    res = runner.invoke(app, ["data", "inspect", str(out), "--chart", str(tmp_path / "c.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_import_ticks_csv_and_report_rejections(tmp_path: Path) -> None:
    t0 = pd.Timestamp("2025-03-03T09:00:00", tz="America/New_York")
    rows = [(t0 + pd.Timedelta(seconds=7 * i)).tz_localize(None).isoformat() for i in range(400)]
    df = pd.DataFrame({"time": rows, "px": 100 + np.sin(np.arange(400) / 9.0), "qty": 1.5})
    df.loc[50, "qty"] = 0.0
    src = tmp_path / "t.csv"
    df.to_csv(src, index=False)
    res = runner.invoke(
        app,
        [
            "data",
            "import",
            str(src),
            "--columns",
            "ts=time,price=px,size=qty,side=",
            "--tz",
            "America/New_York",
            "--out",
            str(tmp_path / "imp"),
            "--allow-cold",  # 400 ticks cannot warm the matrices
        ],
    )
    assert res.exit_code == 0, res.output
    ds = MarketDataset.load(tmp_path / "imp")
    assert ds.base["volume"].sum() == pytest.approx(1.5 * 399)
    assert (
        ds.base["start"].iloc[0] == pd.Timestamp("2025-03-03T14:00:00Z").value
    )  # 09:00 New York = 14:00 UTC


def test_import_malformed_file_names_row_and_column(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("ts,price,size\n2025-01-01T00:00:00Z,10,1\n2025-01-01T00:00:01Z,abc,1\n")
    res = runner.invoke(app, ["data", "import", str(src), "--out", str(tmp_path / "x"), "--strict"])
    assert res.exit_code == 2
    assert "row 3" in res.output and "price" in res.output
    assert not (tmp_path / "x" / "meta.json").exists()


def test_import_hourly_bars_with_a_hole(tmp_path: Path) -> None:
    starts = pd.date_range("2025-01-06", periods=24 * 5, freq="1h", tz="UTC")
    keep = np.ones(len(starts), bool)
    keep[30:34] = False  # four missing hours
    c = 50 + np.cumsum(np.random.default_rng(0).standard_normal(len(starts)))[keep]
    df = pd.DataFrame(
        {"ts": starts[keep], "open": c, "high": c + 1, "low": c - 1, "close": c, "volume": 10.0}
    )
    src = tmp_path / "h.parquet"
    df.to_parquet(src)
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
            "1d",
            "--out",
            str(tmp_path / "h"),
            "--allow-cold",  # five days of hours cannot warm the daily matrices
        ],
    )
    assert res.exit_code == 0, res.output
    ds = MarketDataset.load(tmp_path / "h")
    assert len(ds.base) == 120 and int(ds.base["gap"].sum()) == 4
    assert len(ds.higher) == 5 and ds.higher["volume"].sum() == pytest.approx(10.0 * keep.sum())


def test_bad_options_are_clear(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "synth", "--base", "7m", "--out", str(tmp_path / "s"), "--days", "1"])
    assert res.exit_code == 2 and "multiple" in res.output
    res = runner.invoke(app, ["data", "inspect", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "meta.json" in res.output


def test_fill_gaps_and_aggregate() -> None:
    tf = 5 * MINUTE_NS
    starts = np.array([0, 1, 2, 5, 6], dtype=np.int64) * tf
    bars = pd.DataFrame(
        {
            "start": starts,
            "end": starts + tf,
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": [1.0, 1.1, 1.2, 1.3, 1.4],
            "volume": 1.0,
            "vwap": 1.0,
            "ticks": 3,
            "gap": False,
        }
    )
    filled = fill_gaps(bars, tf)
    assert len(filled) == 7 and filled["gap"].tolist() == [False] * 3 + [True] * 2 + [False] * 2
    assert filled.loc[3, "close"] == 1.2 and filled.loc[3, "volume"] == 0.0
    higher = aggregate_bars(filled, FeedConfig())
    assert len(higher) == 1 and higher["volume"].iloc[0] == 4.0  # bars 0-5 close the first 30m bucket


def test_docs_describe_every_matrix_column() -> None:
    doc = (ROOT / "docs" / "market-data.md").read_text()
    for spec in MATRIX_SPECS.values():
        assert f"{spec.rows} × {len(spec.columns)}" in doc, spec.name
        for col in spec.columns:
            assert re.search(rf"\|\s*[\d–]+\s*\|\s*[^|]*\b{col.name}\b", doc), (
                f"{spec.name}.{col.name} undocumented"
            )
