"""Run every benchmark (or the ones named): `python -m benchmarks [market ...]`."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = [
    "market",
    "agents",
    "agents_gpu",
    "env",
    "train",
    "feast_training",
    "regime_ceiling",
    "mappo_mpe",
    "serving",
]


def main(argv: list[str]) -> None:
    for name in argv or BENCHMARKS:
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {BENCHMARKS}")
        importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
