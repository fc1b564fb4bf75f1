"""Measure the drift job's false-positive and detection rates on synthetic scenarios.

    python -m marlops.monitoring.calibrate --seeds 12 --days-before 30 --days-after 2

For each seed: the reference market for ``days_before`` days, then ``days_after`` days from another seed,
unshifted (the false-positive case) or with a :class:`RegimeShift` of growing size; the drift job (the
default config, or ``--config``) compares the second part with the first, once on the input features
alone (a market dataset) and once on a request log whose outputs come from a stand-in regime agent
(:func:`write_request_log`). Prints a Markdown table of how often each verdict fired; docs/monitoring.md
quotes its output.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from marlops.monitoring.config import DriftConfig, load_config
from marlops.monitoring.drift import compute_drift
from marlops.monitoring.scenarios import RegimeShift, drift_data, scenario_frames, write_request_log
from marlops.monitoring.sources import load_source

SHIFTS: dict[str, RegimeShift | None] = {
    "none": None,
    "vol×1.5": RegimeShift(vol_mult=1.5),
    "vol×2": RegimeShift(vol_mult=2.0),
    "vol×3": RegimeShift(vol_mult=3.0),
}


def measure(seeds: range, days_before: float, days_after: float, config: DriftConfig) -> pd.DataFrame:
    rows = []
    inputs_only = config.model_copy(update={"datasets": ["tactical", "structure", "regime"]})
    for seed in seeds:
        for name, shift in SHIFTS.items():
            t0 = time.perf_counter()
            sf = scenario_frames(days_before, days_after, seed, shift)
            ref, cur = sf.window("reference"), sf.window("current")
            res_in = compute_drift(drift_data(ref), drift_data(cur), inputs_only)
            with tempfile.TemporaryDirectory() as d:
                write_request_log(ref, Path(d) / "ref", seed=seed)
                write_request_log(cur, Path(d) / "cur", seed=seed + 1)
                res_log = compute_drift(
                    load_source(Path(d) / "ref", config), load_source(Path(d) / "cur", config), config
                )
            row = {"seed": seed, "shift": name, "inputs": res_in.drift, "with_predictions": res_log.drift}
            for d in res_log.datasets:
                row[f"ds:{d.name}"] = d.drifted
            for c in config.key_columns:
                try:
                    row[f"key:{c}"] = res_log.column(c).drifted
                except KeyError:
                    row[f"key:{c}"] = None
            row["s"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(row, flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--days-before", type=float, default=30.0)
    ap.add_argument("--days-after", type=float, default=2.0)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="Also write the raw rows here (CSV).")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    cfg = load_config(a.config)
    df = measure(range(a.first_seed, a.first_seed + a.seeds), a.days_before, a.days_after, cfg)
    if a.out:
        df.to_csv(a.out, index=False)
    rate = df.drop(columns=["seed", "s"]).groupby("shift", sort=False).mean(numeric_only=False)
    print(
        f"\n{a.seeds} seeds, reference {a.days_before:g} d, current {a.days_after:g} d: "
        "share of runs with drift\n"
    )
    print(rate.map(lambda v: f"{float(v):.2f}").to_markdown())


if __name__ == "__main__":
    main()
