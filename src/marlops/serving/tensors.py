"""Checking request data before any model sees it: every rejection names the field and says why.

A request that fails here is answered with HTTP 400 (gRPC INVALID_ARGUMENT): the servers turn
:class:`InputError` into KServe's ``InvalidInput``. Numbers arrive as JSON lists (V1, V2 JSON) or raw
bytes (V2 binary, gRPC); both end up as numpy arrays checked for dtype, shape and finiteness here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from marlops.market.matrices import MATRIX_SPECS


class InputError(ValueError):
    """Bad request data; ``str()`` starts with the field's path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def fmt_shape(shape: Sequence[int | str]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def as_array(
    value: Any, field: str, dtype: type, shape: Sequence[int | None], finite: bool = True
) -> np.ndarray:
    """``value`` as a ``dtype`` array of ``shape`` (None: any size on that axis), finite if float (unless
    ``finite`` is False: the caller reports NaN/inf itself).

    Rejects strings, nested objects and ragged lists (no silent parsing of "1.0"), booleans where numbers
    are expected, numbers other than 0/1 where booleans are expected, and NaN/inf.
    """
    try:
        raw = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nesting
        raise InputError(field, f"not a rectangular array ({e})") from None
    want_bool = np.dtype(dtype) == np.bool_
    kind = raw.dtype.kind
    if want_bool:
        if kind == "b":
            arr = raw
        elif kind in "iuf" and raw.size and np.isin(raw, (0, 1)).all():
            arr = raw.astype(np.bool_)
        elif kind in "iuf" and raw.size == 0:
            arr = raw.astype(np.bool_)
        else:
            raise InputError(field, f"expected booleans (true/false), got {_kind_name(raw)}")
    else:
        if kind not in "iuf":
            raise InputError(field, f"expected numbers, got {_kind_name(raw)}")
        with np.errstate(over="ignore", invalid="ignore"):
            arr = raw.astype(dtype, copy=False)
    if arr.ndim != len(shape) or any(
        w is not None and w != g for w, g in zip(shape, arr.shape, strict=False)
    ):
        want = fmt_shape(["N" if s is None else s for s in shape])
        raise InputError(field, f"expected shape {want}, got {fmt_shape(arr.shape)}")
    if finite and not want_bool and not np.isfinite(arr).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise InputError(field, f"NaN or inf at index {list(bad)} (a float32 overflow counts as inf)")
    return arr


def _kind_name(a: np.ndarray) -> str:
    return {"b": "booleans", "U": "strings", "S": "bytes", "O": "objects (nested or mixed values)"}.get(
        a.dtype.kind, str(a.dtype)
    )


def check_matrix(name: str, value: Any, field: str | None = None) -> np.ndarray:
    """One of the agents' matrices (tactical 60×7, structure 48×8, regime 96×11) as float32.

    A NaN/inf is reported with its row and column name, as in ``matrices.regime: NaN or inf at row 3,
    column 'vol_level'``.
    """
    field = field or f"matrices.{name}"
    spec = MATRIX_SPECS.get(name)
    if spec is None:
        raise InputError(field, f"unknown matrix; expected one of {sorted(MATRIX_SPECS)}")
    try:
        return as_array(value, field, np.float32, spec.shape)
    except InputError as e:
        if "NaN or inf" not in str(e):
            raise
        with np.errstate(over="ignore", invalid="ignore"):
            arr = np.asarray(value, dtype=np.float64).astype(np.float32)
        r, c = (int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise InputError(field, f"NaN or inf at row {r}, column {spec.columns[c].name!r}") from None
