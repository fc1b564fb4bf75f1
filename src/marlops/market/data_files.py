"""A data file as the readers see it: its format, rows numbered as a user sees them, and
one chunk of mapped columns with the rows rejected so far.

The rules for reading tick and bar files are in :mod:`marlops.market.readers`; column resolution and the
chunked Arrow read in :mod:`marlops.market.file_chunks`; timestamps in :mod:`marlops.market.timestamps`.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from marlops.market.rejects import RejectLog, join_fields

_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")


class DataFileError(ValueError):
    """A data file that cannot be imported; says where (file, row as the user sees it, column)."""

    def __init__(
        self, path: str | Path, message: str, *, row: int | None = None, column: str | None = None
    ) -> None:
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.row = row
        self.column = column
        self._message = message

    def __reduce__(self) -> tuple[type[DataFileError], tuple[str, str], dict[str, int | str | None]]:
        # keyword-only fields would be lost by the default exception pickling (multiprocessing)
        return (
            DataFileError,
            (self.path, self._message),
            {"row": self.row, "column": self.column, "args": self.args},
        )


# ----------------------------------------------------------------------------------------------- reading


def suffix_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    suffixes = ", ".join(_CSV_SUFFIXES + _PARQUET_SUFFIXES)
    raise DataFileError(path, f"unsupported file type (use one of {suffixes})")


def _open_text(path: Path) -> IO[str]:
    return gzip.open(path, "rt", newline="") if path.name.lower().endswith(".gz") else open(path, newline="")


def csv_head(path: Path) -> tuple[list[str], list[str] | None]:
    """The header and the first data record (None if there is none)."""
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        first = next((r for r in reader if r), None)
    if not header:
        raise DataFileError(path, "no rows")
    return header, first


def _csv_line(path: Path, pos: int) -> int:
    """Line number (1-based, header = 1) where data record ``pos`` (0-based, blank lines skipped) starts.

    Only called on the error path, so a Python scan is fine; it is exact with quoted newlines too.
    """
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        next(reader, None)
        k = -1
        while True:
            line = reader.line_num + 1
            record = next(reader, None)
            if record is None:
                return line
            if record:  # csv yields [] for a blank line, which Arrow skips too
                k += 1
                if k == pos:
                    return line


def _csv_scan(path: Path, width: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Line numbers of the records Arrow keeps (right width), and (line, text) of the ragged ones."""
    good: list[int] = []
    ragged: list[tuple[int, str]] = []
    for line, record in _records(path):
        if len(record) == width:
            good.append(line)
        elif record:
            ragged.append((line, ",".join(record)))
    return np.asarray(good, np.int64), ragged


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number of the record's first line, fields) of every record after the header."""
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        next(reader, None)
        while True:
            line = reader.line_num + 1
            record = next(reader, None)
            if record is None:
                return
            yield line, record


def _physical_lines(path: Path) -> int:
    """Number of lines in the file (a last line without a newline counts), counted in binary chunks."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    count, last = 0, b"\n"
    with opener(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def csv_bad_record(path: Path, width: int) -> tuple[int | None, int]:
    """(line, number of fields) of the first record whose width differs from the header's."""
    for line, record in _records(path):
        if record and len(record) != width:
            return line, len(record)
    return None, 0


@dataclass
class Rows:
    """Record positions (0-based, as Arrow reads them) → row numbers as the user sees them.

    Parquet: 1-based row. CSV: the line number (header = 1). When the file has no blank lines, quoted
    newlines or skipped ragged records, record k is on line k + 2; otherwise one Python pass over the
    file maps them (only a file with rejects or an error pays for it).
    """

    path: Path
    is_csv: bool
    width: int = 0
    records: int = 0  # records read so far (set by the reader)
    ragged: int = 0  # ragged records skipped (lenient CSV)
    _lines: np.ndarray | None = None
    _ragged_lines: list[tuple[int, str]] = field(default_factory=list)

    def row(self, pos: int) -> int:
        """Exact row of one record, at any time during the read (the error path)."""
        if not self.is_csv:
            return pos + 1
        if self.ragged:
            return int(self._map()[pos])
        return _csv_line(self.path, pos)

    def rows(self, pos: np.ndarray) -> np.ndarray:
        """Rows of many records, once the whole file has been read."""
        pos = np.asarray(pos, np.int64)
        if not self.is_csv:
            return pos + 1
        if not self.ragged and _physical_lines(self.path) == self.records + 1:
            return pos + 2
        return self._map()[pos]

    def ragged_lines(self) -> list[tuple[int, str]]:
        self._map()
        return self._ragged_lines

    def _map(self) -> np.ndarray:
        if self._lines is None:
            self._lines, self._ragged_lines = _csv_scan(self.path, self.width)
        return self._lines


_NO_REASON = 0


@dataclass
class CheckedTable:
    """One chunk of a file's mapped columns (named by canonical key), with its rejected rows so far.

    Checks call :meth:`flag`: in strict mode the first flagged row raises a :class:`DataFileError`,
    otherwise every flagged row keeps its first reason and column and the row is dropped later.
    """

    path: Path
    df: pd.DataFrame
    labels: dict[str, str]  # canonical key → the column as the user names it
    rows: Rows
    offset: int = 0  # records before this chunk
    strict: bool = True
    ts_unit: str | None = None  # epoch unit, inferred from the first chunk and kept for the rest
    ts_kind: str | None = None  # a text time column: 'epoch' or 'iso', decided once (see _timestamps)
    reasons: list[str] = field(default_factory=lambda: [""])
    code: np.ndarray = field(init=False)  # per row: index into ``reasons`` (0 = accepted so far)
    column: np.ndarray = field(init=False)  # per row: the key of the column that rejected it
    _error: tuple[int, int, str, str] | None = None  # strict mode: earliest (row, count, key, message)

    def __post_init__(self) -> None:
        self.code = np.zeros(len(self.df), dtype=np.int16)
        self.column = np.full(len(self.df), "", dtype=object)

    def fail(
        self, message: str, pos: int | None = None, key: str | None = None, count: int = 1
    ) -> DataFileError:
        more = f" (and {count - 1} more rows)" if count > 1 else ""
        row = None if pos is None else self.rows.row(self.offset + int(pos))
        label = None if key is None else self.labels.get(key, key)
        return DataFileError(self.path, message + more, row=row, column=label)

    def flag(self, bad: np.ndarray, key: str, reason: str, message: Callable[[int], str]) -> None:
        """Reject the rows in ``bad`` for ``reason``; ``message(i)`` describes row i for strict mode,
        which raises for the earliest bad row once every check has run (:meth:`raise_first`)."""
        if not bad.any():
            return
        if self.strict:
            i, n = first_true(bad & self.ok) if (bad & self.ok).any() else first_true(bad)
            if self._error is None or i < self._error[0]:
                self._error = (i, n, key, message(i))
        if reason not in self.reasons:
            self.reasons.append(reason)
        new = bad & (self.code == _NO_REASON)
        self.code[new] = self.reasons.index(reason)
        self.column[new] = self.labels.get(key, key)

    @property
    def ok(self) -> np.ndarray:
        return self.code == _NO_REASON

    def raisefirst_true(self) -> None:
        """Strict mode: the error of the earliest bad row, if any."""
        if self._error is not None:
            i, n, key, message = self._error
            raise self.fail(message, i, key, n)

    def log_rejects(self, log_: RejectLog | None) -> None:
        if log_ is None:
            return
        log_.rows_of = self.rows.rows
        bad = np.flatnonzero(~self.ok)
        reasons = np.asarray(self.reasons, dtype=object)[self.code[bad]]
        fields_ = join_fields(self.df, bad) if log_.keep_rows else np.empty(len(bad), object)
        log_.add(bad + self.offset, reasons, self.column[bad], fields_)


def first_true(mask: np.ndarray) -> tuple[int, int]:
    """Index of the first True and how many there are (mask known to have at least one)."""
    idx = np.flatnonzero(mask)
    return int(idx[0]), len(idx)


def check_rule(t: CheckedTable, bad: np.ndarray, key: str, reason: str, rule: str, vals: np.ndarray) -> None:
    """Flag the rows in ``bad`` for ``reason``; strict mode says "``rule``, got <value>"."""
    t.flag(bad, key, reason, lambda i: f"{rule}, got {vals[i]!r}")


def is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


__all__ = ["DataFileError", "Rows"]
