"""Fixed-size matrices of the latest feature rows, one per agent, with O(1) update.

Sizes (rows × columns): tactical 60 × 7 over base bars, structure 48 × 8 and regime 96 × 11 over
higher bars; the columns are documented in :mod:`marlops.market.features`. Rows are oldest first.
Before a window has filled, the missing oldest rows are zeros and the matrix is not ready.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from marlops.market.features import REGIME_COLUMNS, STRUCTURE_COLUMNS, TACTICAL_COLUMNS, Column


@dataclass(frozen=True)
class MatrixSpec:
    name: str
    rows: int
    columns: tuple[Column, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, len(self.columns))


TACTICAL = MatrixSpec("tactical", 60, TACTICAL_COLUMNS)
STRUCTURE = MatrixSpec("structure", 48, STRUCTURE_COLUMNS)
REGIME = MatrixSpec("regime", 96, REGIME_COLUMNS)
MATRIX_SPECS: dict[str, MatrixSpec] = {s.name: s for s in (TACTICAL, STRUCTURE, REGIME)}


class RingMatrix:
    """A ring buffer written twice (at i and i + rows) so the window is always one contiguous slice.

    ``push`` is O(columns); ``view`` is O(1) and returns a read-only view (``copy`` for keeping).
    """

    def __init__(self, spec: MatrixSpec, dtype: type = np.float32) -> None:
        self.spec = spec
        rows, cols = spec.shape
        self._buf = np.zeros((2 * rows, cols), dtype=dtype)
        self._i = 0
        self.count = 0  # rows pushed so far
        self.warm_count = 0  # consecutive warm rows at the end of the stream

    def push(self, row: Sequence[float], warm: bool = True) -> None:
        rows = self.spec.rows
        self._buf[self._i] = row
        self._buf[self._i + rows] = row
        self._i = (self._i + 1) % rows
        self.count += 1
        self.warm_count = self.warm_count + 1 if warm else 0

    @property
    def ready(self) -> bool:
        """Every row in the window is a real, warmed-up row."""
        return self.warm_count >= self.spec.rows

    def view(self) -> np.ndarray:
        v = self._buf[self._i : self._i + self.spec.rows]
        v.flags.writeable = False
        return v

    def copy(self) -> np.ndarray:
        return self._buf[self._i : self._i + self.spec.rows].copy()


def window(rows: np.ndarray, t: int, n: int, dtype: type = np.float32) -> np.ndarray:
    """Batch counterpart of :class:`RingMatrix`: the ``n`` rows ending at index ``t``, zero-padded on top."""
    out = np.zeros((n, rows.shape[1]), dtype=dtype)
    lo = max(0, t + 1 - n)
    out[n - (t + 1 - lo) :] = rows[lo : t + 1]
    return out


def ready_mask(warm: np.ndarray, n: int) -> np.ndarray:
    """Batch counterpart of :attr:`RingMatrix.ready` for every index."""
    run = np.zeros(len(warm), dtype=np.int64)
    count = 0
    for i, w in enumerate(warm):
        count = count + 1 if w else 0
        run[i] = count
    return run >= n
