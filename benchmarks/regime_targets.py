r"""Regime targets on data without labels: hmm vs transfer vs the true labels (docs/training.md, "Your own
data: regime targets").

    python -m benchmarks.regime_targets prepare [ROOT]   # seed 1001 × 90 days → plain CSV → import
    cd ROOT
    marlops train --budget small --dataset imported --holdout-fraction 0 --regime-targets hmm --out hmm
    marlops train --budget small --dataset imported --holdout-fraction 0 --regime-targets transfer \
        --out transfer
    marlops train --budget small --dataset imported --holdout-fraction 0 --labels labels.csv --out labels
    python -m benchmarks.regime_targets score [ROOT]     # validation seeds 2001–2004 × 30 days

The data is the small budget's training market (seed 1001, 90 days) exported as an OHLCV CSV and imported
with ``marlops data import --kind bars``, so it carries no labels and no synthetic metadata. ``score``
measures, on the validation seeds only (never the held-out 101–104): the regime agent's balanced accuracy
on every 30-minute close, the team's Sharpe (with costs, full episodes, mean over the four markets), and
the HMM labeller's own balanced accuracy (fitted as the hmm run fitted it, mapped by rank).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path("runs/regime-targets")
SEED, DAYS = 1001, 90
VALIDATION = (2001, 2002, 2003, 2004)
VAL_DAYS = 30.0
MODES = ("hmm", "transfer", "labels")


def prepare(root: Path) -> None:
    from marlops.agents.types import REGIME_NAMES
    from marlops.env.market_env import SYNTHETIC_VOLUME_UNITS
    from marlops.market.dataset import MarketDataset

    root.mkdir(parents=True, exist_ok=True)
    synth = root / "synth"
    marlops = [sys.executable, "-m", "marlops.cli"]
    subprocess.run(
        [*marlops, "data", "synth", "--days", str(DAYS), "--seed", str(SEED), "--out", str(synth)], check=True
    )
    ds = MarketDataset.load(synth)
    b = ds.base
    ts = pd.to_datetime(b["start"], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S")
    bars = pd.DataFrame(
        {"ts": ts, "open": b.open, "high": b.high, "low": b.low, "close": b.close, "volume": b.volume}
    )
    bars.to_csv(root / "bars.csv", index=False)
    lab = ds.labels
    assert lab is not None
    pd.DataFrame(
        {
            "ts": pd.to_datetime(lab["start"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "regime": [REGIME_NAMES[r] for r in lab["regime"]],
        }
    ).to_csv(root / "labels.csv", index=False)
    subprocess.run(
        [
            *marlops,
            "data",
            "import",
            str(root / "bars.csv"),
            "--kind",
            "bars",
            # the synthetic tape's volume is relative: in instrument units as the synthetic markets count it
            "--volume-multiplier",
            str(SYNTHETIC_VOLUME_UNITS),
            "--out",
            str(root / "imported"),
        ],
        check=True,
    )


def validation_markets(root: Path) -> dict:
    """The validation seeds' markets, generated once and cached under ``root``."""
    import pickle

    from marlops.env.market_env import synthetic_market_data

    cache = root / "validation.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    val = {f"seed {s}": synthetic_market_data(s, VAL_DAYS) for s in VALIDATION}
    cache.write_bytes(pickle.dumps(val))
    return val


def score(root: Path) -> dict[str, dict[str, float]]:
    from marlops.env.market_env import market_data_from_dataset
    from marlops.env.market_slice import slice_market
    from marlops.evaluation.runner import evaluate
    from marlops.market.dataset import MarketDataset
    from marlops.training.holdout import dataset_split
    from marlops.training.market import load_models, load_team
    from marlops.training.regime import balanced_accuracy, predict, regime_samples
    from marlops.training.regime_targets import hmm_labeller, hmm_labels

    val = validation_markets(root)
    out: dict[str, dict[str, float]] = {}
    teams = {}
    for mode in MODES:
        run = root / mode
        if not (run / "summary.json").exists():
            print(f"{run}: not trained, skipped")
            continue
        models = load_models(run)
        accs = []
        for d in val.values():
            s = regime_samples(d)
            accs.append(balanced_accuracy(s.label, predict(models.regime, s.x)))
        summary = json.loads((run / "summary.json").read_text())
        out[mode] = {"regime_balanced_accuracy": float(np.mean(accs)), "wall_s": float(summary["wall_s"])}
        teams[mode] = load_team(run, mode)
    if teams:  # every team on the same full episodes, side by side
        res = evaluate(val, teams, with_costs=(True,), progress=False)
        for mode, agg in res.aggregate(True).items():
            per_market = [res.metrics[(m, mode, True)]["sharpe"] for m in val]
            out[mode].update(
                team_sharpe=float(agg["sharpe"] or float("nan")),
                team_sharpe_per_market=[float(v or float("nan")) for v in per_market],  # type: ignore[dict-item]
                team_trips_per_day=float(agg["round_trips_per_day"] or 0.0),
                team_exposure=float(agg["exposure"] or 0.0),
            )
    # the HMM labeller itself: fitted on the hmm run's training part, scored on the validation seeds
    full = market_data_from_dataset(MarketDataset.load(root / "imported"))
    sp = dataset_split(len(full), 0.0, 0.2)
    clf = hmm_labeller([slice_market(full, 0, sp.validation_start)])
    accs = []
    for d in val.values():
        closes = np.flatnonzero(d.slow_step)
        closes = closes[closes >= d.warm_from]
        accs.append(balanced_accuracy(d.regime_label[closes], hmm_labels(clf, d)[closes]))
    out["hmm labeller"] = {"regime_balanced_accuracy": float(np.mean(accs))}
    (root / "scores.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    what = args[0] if args else "score"
    root = Path(args[1]) if len(args) > 1 else ROOT
    {"prepare": prepare, "score": score, "markets": validation_markets}[what](root)


if __name__ == "__main__":
    main()
