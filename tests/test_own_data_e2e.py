"""A user's own files end to end (issue 15, "Done when"): an hourly FX bar CSV as a backtesting library
exports it (unnamed index column holding the time, `Open,High,Low,Close,Volume`, weekend gaps) and a dirty
tick CSV whose time column is `timestamp` go through `data import` → `train --dataset` → `evaluate --data
--folds 4` without an error, with figures in the data's own units. The fixtures are generated here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from marlops.cli import app
from marlops.market.dataset import MarketDataset
from marlops.market.synthetic import generate_market

runner = CliRunner()


def _invoke(*args: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def _fx_hours(weeks: int, seed: int) -> pd.DataFrame:
    """Hourly bars of a 1.2-priced pair, Sunday 22:00 to Friday 22:00 UTC (120 bars a week)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-05 22:00", tz="UTC")  # a Sunday
    hours = pd.DatetimeIndex(
        [start + pd.Timedelta(weeks=w, hours=h) for w in range(weeks) for h in range(120)]
    )
    # a drift that switches sign now and then, so there is something to trade
    drift = np.repeat(rng.choice([-1.0, 1.0], size=len(hours) // 60 + 1), 60)[: len(hours)] * 2e-4
    close = 1.2 * np.exp(np.cumsum(drift + rng.normal(0.0, 1.5e-3, len(hours))))
    opens = np.r_[1.2, close[:-1]]
    spread = np.abs(rng.normal(0.0, 8e-4, len(hours))) * close
    return pd.DataFrame(
        {
            "Open": opens,
            "High": np.maximum(opens, close) + spread,
            "Low": np.minimum(opens, close) - spread,
            "Close": close,
            "Volume": rng.integers(500, 5000, len(hours)).astype(float),
        },
        index=hours.tz_localize(None),  # written naive, as such exports are; --tz UTC reads them
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("own-data")


def _train_and_evaluate(root: Path, dataset: Path, name: str) -> dict:
    run, ev = root / f"{name}-run", root / f"{name}-eval"
    _invoke("train", "--budget", "ci", "--dataset", dataset, "--out", run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["regime_targets"]["resolved"] == "hmm"  # no labels in a user's file
    out = _invoke("evaluate", "--model", run, "--data", dataset, "--folds", "4", "--out", ev)
    assert "fold" in out
    report = json.loads((ev / "report.json").read_text())
    assert (ev / "report.html").stat().st_size > 10_000
    return report


def _folds(report: dict) -> list[tuple[dict, dict]]:
    """(buy-and-hold's metrics with costs, the fold's period) for each of the four folds."""
    runs = {r["market"]: r["metrics"] for r in report["runs"] if r["policy"] == "buy_and_hold" and r["costs"]}
    assert len(runs) == 4 and set(runs) <= set(report["periods"]), (list(runs), list(report["periods"]))
    return [(met, report["periods"][m]) for m, met in runs.items()]


def test_hourly_fx_bars_from_a_backtesting_export(root: Path) -> None:
    csv = root / "eurusd_1h.csv"
    _fx_hours(weeks=26, seed=5).to_csv(csv)  # the index column has no name: "",Open,High,...
    assert csv.read_text().splitlines()[0] == ",Open,High,Low,Close,Volume"
    ds_dir = root / "fx"
    out = _invoke(
        "data", "import", csv, "--kind", "bars", "--base", "1h", "--higher", "4h", "--tz", "UTC",
        "--commission-bps", "0.5", "--spread-bps", "1.0", "--tick-size", "0.00001", "--out", ds_dir,
    )  # fmt: skip
    ds = MarketDataset.load(ds_dir)
    # every row kept, the last one included; weekends are filled with flat gap bars (market closed)
    real = ds.base[~ds.base["gap"]]
    assert len(real) == 26 * 120 and pd.Timestamp(int(real["start"].iloc[-1]), tz="UTC") == pd.Timestamp(
        "2025-07-04 21:00", tz="UTC"
    ), out
    assert ds.meta["commission_bps"] == 0.5 and ds.meta["tick_size"] == 0.00001

    report = _train_and_evaluate(root, ds_dir, "fx")
    for met, period in _folds(report):
        # 1-hour bars: a fold of n bars is n / 24 days, not n / 288 (the import fills weekends with flat gap
        # bars, so the clock is 24 bars a calendar day and a fold's days are its calendar days)
        assert met["days"] == pytest.approx(period["bars"] / 24, rel=0.02), (met["days"], period)
        assert met["days"] == pytest.approx(period["calendar_days"], abs=1.0)
        assert math.isfinite(met["sharpe"]) and "train" in period


def test_dirty_tick_csv_with_a_timestamp_column(root: Path) -> None:
    ticks = generate_market(17, seed=21).ticks
    df = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(ticks["ts"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "price": ticks["price"].astype(str),
            "size": ticks["size"].astype(str),
        }
    )
    dirty = df.copy()
    bad = pd.DataFrame(
        {
            "timestamp": [df.timestamp[100], df.timestamp[200], "not a time", df.timestamp[10]],
            "price": ["", "100.0", "100.0", "100.0"],
            "size": ["1.0", "-1.0", "1.0", "1.0"],
        }
    )  # empty price, negative size, unparseable time, and a copy far out of order
    dirty = pd.concat([dirty.iloc[:300], bad, dirty.iloc[300:]], ignore_index=True)
    csv = root / "ticks.csv"
    dirty.to_csv(csv, index=False)
    ds_dir = root / "ticks"
    out = _invoke("data", "import", csv, "--out", ds_dir, "--rejects", root / "rejects.csv")
    ds = MarketDataset.load(ds_dir)
    assert ds.base["volume"].sum() == pytest.approx(ticks["size"].sum(), rel=1e-9)  # the bad rows only
    rejects = pd.read_csv(root / "rejects.csv")
    assert len(rejects) == 4, out

    report = _train_and_evaluate(root, ds_dir, "ticks")
    for met, period in _folds(report):
        assert met["days"] == pytest.approx(period["bars"] / 288, rel=0.02), (met["days"], period)
