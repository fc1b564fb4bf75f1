"""The ceiling of causal regime detection on the reference market, next to the fitted HMM and a GBM.

    python -m benchmarks.regime_ceiling              (about a minute on a 2-core CPU)
    python -m benchmarks.regime_ceiling --year-days 0   (skip the one-year filter run)

1. :func:`marlops.evaluation.regime_ceiling.regime_ceiling`: HMM and GBM fitted on seeds 1001, 1002
   (45 days each), all three scored on seeds 2001–2004 (30 days each) at the warm 30-minute closes.
2. The ceiling filter alone on one long market (seed 2001, 365 days), from closes and from closes +
   volumes, both decision rules: balanced accuracy, recall per regime and the filter's wall time (the
   market build is timed separately).
"""

from __future__ import annotations

import argparse
import sys
import time

from marlops.env.market_env import synthetic_market_data
from marlops.evaluation.regime_ceiling import (
    ceiling_markdown,
    ceiling_proba,
    regime_ceiling,
    score,
    scored_closes,
)
from marlops.market.regime_filter import decide
from marlops.market.synthetic import REGIMES, SyntheticMarketConfig


def long_market(seed: int, days: float) -> None:
    t0 = time.perf_counter()
    data = synthetic_market_data(seed, days)
    built = time.perf_counter() - t0
    print(f"\nceiling filter, seed {seed}, {days:g} days ({len(data.close)} bars, built in {built:.1f} s):")
    cfg = SyntheticMarketConfig()
    truth = {f"seed {seed}": data.regime_label[scored_closes(data)]}
    for with_volume in (False, True):
        t0 = time.perf_counter()
        proba = ceiling_proba(data, cfg, with_volume=with_volume)
        secs = time.perf_counter() - t0
        for rule, prior in (("p / prior", cfg.stationary_fractions()), ("argmax", None)):
            s = score(rule, truth, {k: decide(proba, prior) for k in truth}, secs)
            recall = ", ".join(f"{r} {v:.3f}" for r, v in zip(REGIMES, s.recall, strict=True))
            name = f"{'closes + volume' if with_volume else 'closes'}, {rule}"
            print(
                f"  {name:27s} balanced accuracy {s.balanced_accuracy:.3f}  recall: {recall}  ({secs:.1f} s)"
            )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-days", type=float, default=45.0)
    ap.add_argument("--eval-days", type=float, default=30.0)
    ap.add_argument("--year-days", type=float, default=365.0, help="days of the long filter run (0: skip)")
    args = ap.parse_args([] if argv is None else argv)  # `python -m benchmarks` passes none
    t0 = time.perf_counter()
    res = regime_ceiling(train_days=args.train_days, eval_days=args.eval_days)
    total = time.perf_counter() - t0
    print(
        f"train seeds {res.setup['train_seeds']} × {args.train_days:g} days, eval seeds "
        f"{res.setup['eval_seeds']} × {args.eval_days:g} days ({total:.1f} s in all)\n"
    )
    print(ceiling_markdown(res))
    if args.year_days > 0:
        long_market(2001, args.year_days)


if __name__ == "__main__":
    main(sys.argv[1:])
