"""Training on data without regime labels (issue 15, part 2): the regime targets, the held-out tail of a
dataset, the causal HMM labeller, the --labels file, and evaluate's refusal of a model that saw its test.

The data is the project's synthetic market exported as a plain OHLCV CSV and imported with
`marlops data import --kind bars`: what a user's file looks like (no labels, no synthetic meta)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from marlops.agents.types import REGIME_NAMES
from marlops.cli import app
from marlops.env.market_env import MarketData, market_data_from_dataset
from marlops.env.market_slice import slice_market
from marlops.evaluation.runner import walk_forward_splits
from marlops.market.dataset import MarketDataset, aggregate_bars
from marlops.market.feed import FeedConfig, features_from_bars
from marlops.training.config import budget_config
from marlops.training.holdout import dataset_split, model_summary, overlap_error
from marlops.training.regime_targets import (
    LabelsFileError,
    hmm_labeller,
    hmm_labels,
    labels_onto_bars,
    read_regime_labels,
    resolve_targets,
)

runner = CliRunner()
DAYS = 20  # ci budget: the first half trains (8 days) and validates (2 days) after a ~4-day warm-up


@dataclasses.dataclass
class Import:
    synth: Path  # the synthetic dataset (with labels)
    imported: Path  # its bars imported from a plain CSV (no labels)
    labels_csv: Path  # the synthetic labels as a user's ts,regime file


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Import:
    root = tmp_path_factory.mktemp("regime-targets")
    synth = root / "synth"
    res = runner.invoke(app, ["data", "synth", "--days", str(DAYS), "--seed", "7", "--out", str(synth)])
    assert res.exit_code == 0, res.output
    ds = MarketDataset.load(synth)
    b = ds.base
    ts = pd.to_datetime(b["start"], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S")
    csv = root / "bars.csv"
    pd.DataFrame(
        {"ts": ts, "open": b.open, "high": b.high, "low": b.low, "close": b.close, "volume": b.volume}
    ).to_csv(csv, index=False)
    imported = root / "imported"
    res = runner.invoke(app, ["data", "import", str(csv), "--kind", "bars", "--out", str(imported)])
    assert res.exit_code == 0, res.output
    assert MarketDataset.load(imported).labels is None
    lab = ds.labels
    labels_csv = root / "labels.csv"
    pd.DataFrame(
        {
            "ts": pd.to_datetime(lab["start"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "regime": [REGIME_NAMES[r] for r in lab["regime"]],
        }
    ).to_csv(labels_csv, index=False)
    return Import(synth, imported, labels_csv)


def _train(out: Path, *args: str) -> dict:
    res = runner.invoke(app, ["train", "--budget", "ci", "--out", str(out), "--fresh", *args])
    assert res.exit_code == 0, res.output
    return json.loads((out / "summary.json").read_text())


def _check_split(summary: dict, dataset: Path) -> None:
    n = len(MarketDataset.load(dataset).base)
    split = summary["data_split"]
    first_test = walk_forward_splits(n, 4)[0].test[0]
    assert split["n_bars"] == n and split["trained"]["bars"] == [0, first_test]
    assert split["train"]["bars"][1] == split["validation"]["bars"][0] < first_test
    assert split["held_out"]["bars"] == [first_test, n]


@pytest.fixture(scope="module")
def hmm_run(data: Import, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hmm-run") / "run"
    _train(out, "--dataset", str(data.imported))  # auto on an unlabelled import: hmm
    return out


def test_auto_on_an_unlabelled_import_trains_on_hmm_labels(hmm_run: Path, data: Import) -> None:
    summary = json.loads((hmm_run / "summary.json").read_text())
    t = summary["regime_targets"]
    assert t["requested"] == "auto" and t["resolved"] == "hmm"
    assert sorted(t["state_to_regime"]) == sorted(REGIME_NAMES)  # one state per regime, by rank
    assert sum(t["label_share"].values()) == pytest.approx(1.0)
    assert summary["regime_val_balanced_accuracy"] is None  # nothing to score against
    _check_split(summary, data.imported)
    events = [json.loads(line) for line in (hmm_run / "metrics.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "regime_targets" and events[0]["resolved"] == "hmm"
    assert any(e.get("event") == "data_split" for e in events)
    assert (hmm_run / "agents" / "agents.json").exists()


def test_labels_file_target_trains_and_scores_validation(data: Import, tmp_path: Path) -> None:
    summary = _train(tmp_path / "run", "--dataset", str(data.imported), "--labels", str(data.labels_csv))
    assert summary["regime_targets"]["resolved"] == "file"
    assert 0.0 <= summary["regime_val_balanced_accuracy"] <= 1.0  # the file labels the validation slice too
    _check_split(summary, data.imported)


def test_transfer_trains_on_synthetic_then_keeps_a_warm_started_agent_frozen(
    data: Import, tmp_path: Path
) -> None:
    first = tmp_path / "transfer"
    summary = _train(first, "--dataset", str(data.imported), "--regime-targets", "transfer")
    assert summary["regime_targets"]["resolved"] == "transfer"
    assert "synthetic seeds" in summary["regime_targets"]["regime_agent"]
    again = tmp_path / "frozen"
    summary = _train(
        again,
        "--dataset",
        str(data.imported),
        "--regime-targets",
        "transfer",
        "--init-from",
        str(first),
        "--holdout-fraction",
        "0.6",
    )
    assert "frozen" in summary["regime_targets"]["regime_agent"]
    versions = [json.loads((d / "agents" / "agents.json").read_text())["versions"] for d in (first, again)]
    assert versions[0]["regime"] == versions[1]["regime"]  # the regime agent did not move
    assert versions[0]["structure"] != versions[1]["structure"]  # the rest trained on the data
    n = len(MarketDataset.load(data.imported).base)
    assert summary["data_split"]["trained"]["bars"] == [0, n - round(n * 0.6)]


def test_synthetic_dataset_auto_uses_its_own_labels(data: Import, tmp_path: Path) -> None:
    summary = _train(tmp_path / "run", "--dataset", str(data.synth))
    assert summary["regime_targets"]["resolved"] == "labels"
    assert summary["regime_val_balanced_accuracy"] is not None


def test_impossible_targets_are_refused(data: Import, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "train",
            "--budget",
            "ci",
            "--out",
            str(tmp_path),
            "--dataset",
            str(data.imported),
            "--regime-targets",
            "labels",
        ],
    )
    assert res.exit_code == 2 and "no regime labels" in res.output
    res = runner.invoke(app, ["train", "--budget", "ci", "--out", str(tmp_path), "--regime-targets", "nope"])
    assert res.exit_code == 2 and "regime.targets" in res.output
    res = runner.invoke(
        app, ["train", "--budget", "ci", "--out", str(tmp_path), "--labels", str(data.labels_csv)]
    )
    assert res.exit_code == 2 and "give --dataset" in res.output
    with pytest.raises(ValueError, match="only read with"):
        resolve_targets("hmm", False, "labels.csv")
    with pytest.raises(ValueError, match="holdout_fraction"):
        budget_config("ci", holdout_fraction=1.0)


# ------------------------------------------------------------------------------------------- causality


def _market_from_bars(base: pd.DataFrame) -> MarketData:
    cfg = FeedConfig()
    return MarketData.from_features(features_from_bars(base, aggregate_bars(base, cfg)))


def test_hmm_labels_at_t_do_not_change_when_later_bars_do(data: Import) -> None:
    base = MarketDataset.load(data.imported).base.reset_index(drop=True)
    a = _market_from_bars(base)
    t = int(len(base) * 0.7)
    other = base.copy()
    rng = np.random.default_rng(0)
    later = other.index > t
    shock = np.exp(np.cumsum(rng.normal(0, 0.01, later.sum())))  # a different future: trends and volatility
    for col in ("open", "high", "low", "close"):
        other.loc[later, col] = other.loc[later, col] * shock
    other.loc[later, "volume"] = other.loc[later, "volume"] * rng.uniform(0.2, 5.0, later.sum())
    b = _market_from_bars(other)
    end = dataset_split(len(a), 0.5, 0.2).validation_start  # the training range, before t
    clf = hmm_labeller([slice_market(a, 0, end)])
    la, lb = hmm_labels(clf, a), hmm_labels(clf, b)
    assert (la[: t + 1] == lb[: t + 1]).all()
    assert (la[t + 1 :] != lb[t + 1 :]).any()  # the test has teeth: the future did change the labels
    # a fit on the other history's training range is the same model (it never reads past `end`)
    clf_b = hmm_labeller([slice_market(b, 0, end)])
    assert (hmm_labels(clf_b, a) == la).all()
    # labelling a prefix gives the prefix of the labels (no look-ahead through the market's length)
    assert (hmm_labels(clf, slice_market(a, 0, t + 1)) == la[: t + 1]).all()


def test_hmm_labeller_ignores_existing_labels(data: Import) -> None:
    d = market_data_from_dataset(MarketDataset.load(data.synth))
    assert (d.regime_label >= 0).all()
    clf = hmm_labeller([slice_market(d, 0, len(d) // 2)])
    assert clf.mapping == "ordering"


# ------------------------------------------------------------------------------------------ --labels FILE


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "labels.csv"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ts,regime\n2025-01-02 00:00,trending\n2025-01-02 00:05,bull\n", "row 2: 'bull'"),
        ("ts,regime\n2025-01-02 00:00,trending\n2025-01-02 00:05,\n", "field 'regime'"),
        ("ts,regime\n2025-01-02 00:00,7\n", "row 1: '7'"),
        ("ts,regime\nyesterday,ranging\n", "field 'ts'"),
        ("ts,regime\n,ranging\n", "row 1: missing"),
        ("ts,regime\n2025-01-02 00:00,ranging\n2025-01-02 00:00,volatile\n", "the same time on several rows"),
        ("time,regime\n2025-01-02 00:00,ranging\n", "no column 'ts'"),
        ("ts,regime\n", "no rows"),
    ],
)
def test_bad_labels_files_name_the_row_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(LabelsFileError, match=message.replace("(", r"\(")):
        read_regime_labels(_write(tmp_path, text))


def test_labels_outside_the_data_are_refused(data: Import, tmp_path: Path) -> None:
    d = market_data_from_dataset(MarketDataset.load(data.imported))
    labels = read_regime_labels(
        _write(tmp_path, "ts,regime\n2025-01-05 00:00,ranging\n2026-06-01 00:00,trending\n")
    )
    with pytest.raises(LabelsFileError, match=r"row 2: 2026-06-01.*|outside the data"):
        labels_onto_bars(labels, d, "labels.csv")
    res = runner.invoke(
        app,
        ["train", "--budget", "ci", "--out", str(tmp_path / "r"), "--dataset", str(data.imported),
         "--labels", str(tmp_path / "labels.csv")],
    )  # fmt: skip
    assert res.exit_code == 2 and "outside the data" in res.output and "row 2" in res.output


def test_labels_are_joined_as_of_each_bar_end(data: Import, tmp_path: Path) -> None:
    d = market_data_from_dataset(MarketDataset.load(data.imported))
    p = tmp_path / "labels.parquet"
    pd.DataFrame({"TS": ["2025-01-03 00:00", "2025-01-03 12:00"], "Regime": ["Volatile", 1]}).astype(
        {"Regime": str}
    ).to_parquet(p)
    lab = labels_onto_bars(read_regime_labels(p), d, p)
    cut1, cut2 = (pd.Timestamp(s, tz="UTC").value for s in ("2025-01-03 00:00", "2025-01-03 12:00"))
    assert (lab[d.end_ns <= cut1] == -1).all()  # the bar ending at 00:00 is before the label
    assert (lab[(d.end_ns > cut1) & (d.end_ns <= cut2)] == REGIME_NAMES.index("volatile")).all()
    assert (lab[d.end_ns > cut2] == 1).all()


# ------------------------------------------------------------------------------------ evaluation refuses


def test_evaluate_refuses_a_model_trained_on_its_test_block(
    hmm_run: Path, data: Import, tmp_path: Path
) -> None:
    full = market_data_from_dataset(MarketDataset.load(data.imported))
    first_test = walk_forward_splits(len(full), 4)[0].test[0]
    honest = model_summary(hmm_run)
    assert overlap_error(honest, full, str(data.imported), first_test) is None
    model = tmp_path / "model"
    shutil.copytree(hmm_run, model)
    leaky = json.loads(json.dumps(honest))
    leaky["data_split"]["trained"]["last_end_ns"] = int(full.end_ns[first_test + 10])
    leaky["data_split"]["trained"]["last"] = "late"
    (model / "summary.json").write_text(json.dumps(leaky))
    args = [
        "evaluate",
        "--model",
        str(model),
        "--data",
        str(data.imported),
        "--folds",
        "4",
        "--out",
        str(tmp_path),
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "reaches the first test block" in res.output and "--allow-overlap" in res.output
    # a model from before ranges were recorded, trained on this very dataset, read all of it
    del leaky["data_split"]
    leaky["config"]["dataset"] = str(data.imported)
    (model / "summary.json").write_text(json.dumps(leaky))
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "trained on all of" in res.output
    # another history (a different fingerprint) is not this one's test block
    other = dataclasses.replace(full, close=full.close * 1.01)
    assert overlap_error(honest, other, "x", first_test) is None
