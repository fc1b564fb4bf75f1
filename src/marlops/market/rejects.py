"""Rows an import rejected: counted by reason and, for ``--rejects FILE``, kept with their raw fields.

Rows are remembered by their position in the file (0-based data record) while the file is read, and
turned into the row number a user sees (CSV line, Parquet 1-based row) only when the log is written:
finding line numbers can need a second pass over the file, which only a file with rejects pays for.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

RowsOf = Callable[[np.ndarray], np.ndarray]  # record positions → row numbers as the user sees them

REJECT_COLUMNS: tuple[str, ...] = ("row", "reason", "column", "fields")


@dataclass
class RejectLog:
    """Counts by reason; with ``keep_rows`` also every rejected row (position, reason, column, raw text)."""

    keep_rows: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    _pos: list[np.ndarray] = field(default_factory=list)
    _reason: list[np.ndarray] = field(default_factory=list)
    _column: list[np.ndarray] = field(default_factory=list)
    _fields: list[np.ndarray] = field(default_factory=list)
    _lines: list[tuple[int, str, str]] = field(default_factory=list)  # rows already numbered (ragged)
    rows_of: RowsOf | None = None  # set by the reader: its positions → row numbers

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(
        self, pos: np.ndarray, reason: np.ndarray, column: np.ndarray, fields: np.ndarray, count: bool = True
    ) -> None:
        """Rejected rows of one chunk: record positions and, per row, reason, column and raw fields.
        ``count=False`` for rows a counter elsewhere has counted already (the bulk bar builder's)."""
        if len(pos) == 0:
            return
        if count:
            values, n = np.unique(reason.astype(str), return_counts=True)
            self.counts.update({str(v): int(k) for v, k in zip(values, n, strict=True)})
        if self.keep_rows:
            self._pos.append(np.asarray(pos, np.int64))
            self._reason.append(np.asarray(reason, object))
            self._column.append(np.asarray(column, object))
            self._fields.append(np.asarray(fields, object))

    def add_numbered(self, row: int, reason: str, text: str) -> None:
        """A rejected row whose number is already known (a CSV line with the wrong number of fields)."""
        self.counts[reason] += 1
        if self.keep_rows:
            self._lines.append((row, reason, text))

    def frame(self, rows_of: RowsOf | None = None) -> pd.DataFrame:
        """Every kept rejected row, in file order: row, reason, column, fields (raw, comma-joined)."""
        rows_of = rows_of or self.rows_of or (lambda pos: pos)
        parts = [pd.DataFrame(self._lines, columns=["row", "reason", "fields"]).assign(column="")]
        if self._pos:
            parts.append(
                pd.DataFrame(
                    {
                        "row": rows_of(np.concatenate(self._pos)),
                        "reason": np.concatenate(self._reason),
                        "column": np.concatenate(self._column),
                        "fields": np.concatenate(self._fields),
                    }
                )
            )
        out = pd.concat(parts, ignore_index=True)[list(REJECT_COLUMNS)]
        return out.astype({"row": np.int64}).sort_values("row", kind="stable").reset_index(drop=True)

    def write(self, path: Path, rows_of: RowsOf | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        # QUOTE_NONNUMERIC: the raw fields hold commas, and an empty string must differ from a missing row
        self.frame(rows_of).to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
        return path


def join_fields(df: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """The raw cells of ``rows`` (positions in ``df``) as one comma-joined string per row; missing → ''."""
    if len(rows) == 0:
        return np.array([], dtype=object)
    cells = [df[c].iloc[rows].astype(object).to_numpy() for c in df.columns]
    return np.array(
        [",".join("" if _missing(v) else str(v) for v in row) for row in zip(*cells, strict=True)],
        dtype=object,
    )


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v) or v is pd.NA
