"""How many bars the matrices need before the first decision, and the import check that uses it.

A row of a feature matrix is warm once every indicator in it has its window (features.py): the
tactical and structure rows after 48 bars (σ48 of returns), the regime rows after 96 (σ96). A matrix
is ready when all its rows are warm, so the first decision needs warm-up + rows bars of its timeframe.
``tests/test_import.py`` checks these numbers against the features themselves.
"""

from __future__ import annotations

import pandas as pd

from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL

TACTICAL_WARMUP = 48  # base bars before the first warm tactical row
STRUCTURE_WARMUP = 48  # higher bars before the first warm structure row
REGIME_WARMUP = 96  # higher bars before the first warm regime row
BASE_BARS_TO_READY = TACTICAL_WARMUP + TACTICAL.rows
HIGHER_BARS_TO_READY = max(STRUCTURE_WARMUP + STRUCTURE.rows, REGIME_WARMUP + REGIME.rows)
# The history must hold the warm-up at least twice: walk-forward evaluation trains on the first half
# of the history by default, and that half needs warm bars too.
HISTORY_FACTOR = 2


class WarmupError(ValueError):
    """The history is too short for the timeframe to warm the matrices; says needed vs available."""

    def __init__(self, timeframe: str, tf_ns: int, needed: int, available: int, base_ns: int, n_base: int):
        self.timeframe, self.needed, self.available = timeframe, needed, available
        warm = BASE_BARS_TO_READY if timeframe == "base" else HIGHER_BARS_TO_READY
        what = (
            f"the tactical matrix's {TACTICAL.rows} rows + {TACTICAL_WARMUP} bars of indicator warm-up"
            if timeframe == "base"
            else f"the regime matrix's {REGIME.rows} rows + {REGIME_WARMUP} bars of indicator warm-up"
        )
        hint = "a longer history"
        if timeframe == "higher":
            fits = n_base // needed * base_ns  # the longest higher timeframe this history would warm
            if fits >= 2 * base_ns:
                hint = f"--higher {_fmt(fits)} or shorter, or " + hint
            else:
                hint = "a shorter --base, or " + hint
        super().__init__(
            f"--{timeframe} {_fmt(tf_ns)}: the matrices need {needed} {timeframe} bars and the history "
            f"has {available}: {warm} to warm up ({what}) and as many again after it, since walk-forward "
            f"training sees the first half of the history. Use {hint}; --allow-cold imports it anyway "
            "(for inspection: it cannot be trained or evaluated)"
        )


def _fmt(ns: int) -> str:
    td = pd.Timedelta(ns)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if td.total_seconds() % size == 0:
            return f"{int(td.total_seconds() // size)}{unit}"
    return str(td)


def check_warm(n_base: int, n_higher: int, base_ns: int, higher_ns: int) -> None:
    """Raise :class:`WarmupError` unless both timeframes have HISTORY_FACTOR × their warm-up in bars."""
    need_base, need_higher = HISTORY_FACTOR * BASE_BARS_TO_READY, HISTORY_FACTOR * HIGHER_BARS_TO_READY
    if n_higher < need_higher:
        raise WarmupError("higher", higher_ns, need_higher, n_higher, base_ns, n_base)
    if n_base < need_base:
        raise WarmupError("base", base_ns, need_base, n_base, base_ns, n_base)
