"""The request rules every protocol applies alike: V1 ``:predict``, V2 REST (JSON or binary) and gRPC.

One place for them, so that the same bad request gets the same answer whichever way it came:

- **content type** (REST only; gRPC has none): ``application/json`` (charset utf-8 if one is named) or the
  V2 binary tensor extension (``application/octet-stream``, or no content type, with
  ``Inference-Header-Content-Length``: tritonclient sends binary requests without a content type).
  Anything else, or a body without a content type, is **415** naming the content type;
- **JSON**: a body that does not parse is a 400 saying where (line, column, char offset) and what is there;
- **names**: an input the model does not take, one it takes that is missing, one given twice;
- **datatype**: the one the model's metadata lists for that input (FP32 or BOOL);
- **shape**: every dimension of a request is a size, ≥ 1 (``-1`` is for metadata only, never a request);
- **batch**: 1 to :data:`MAX_BATCH` rows (V1: instances), 1 to :data:`MAX_PROPOSALS` proposals;
- **values**: finite (a float32 overflow counts as inf), booleans for BOOL, rectangular.

A refusal is an :class:`~marlops.serving.tensors.InputError` ``"FIELD: PROBLEM"``; the servers answer 400
(gRPC INVALID_ARGUMENT) with that text. The field is the protocol's path to the input (V1
``instances[3].x``, V2/gRPC ``inputs.x``); the problem text is the same on every protocol. Where a V1
instance is one row of the V2 tensor, a row-level problem names the row in the field (V1 ``instances[0].x``,
V2 ``inputs.x[0]``) so that the problem text stays the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from marlops.serving.tensors import InputError, as_array, fmt_shape

MAX_BATCH = 64
MAX_PROPOSALS = 8
N, K = "N", "K"  # symbolic leading axes: the batch, and the candidate proposals of risk_proposals

INFERENCE_HEADER = "inference-header-content-length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"

# -------------------------------------------------------------------------------------- content type


class UnsupportedMediaType(Exception):
    """A REST body in a content type no marlops server reads: HTTP 415."""


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """``("application/json", {"charset": "utf-8"})`` for ``application/json; charset=UTF-8``."""
    if not content_type:
        return "", {}
    kind, *params = content_type.split(";")
    out = {}
    for p in params:
        k, _, v = p.partition("=")
        out[k.strip().lower()] = v.strip().strip('"').lower()
    return kind.strip().lower(), out


def request_media(content_type: str | None, has_body: bool, inference_header: bool, v2: bool) -> str:
    """Which body a REST inference request carries: ``"json"`` or ``"binary"`` (the V2 binary extension);
    raises :class:`UnsupportedMediaType` (415) or :class:`InputError` (400) naming what is wrong."""
    kind, params = media_type(content_type)
    accepted = "application/json" + (
        ", or application/octet-stream with Inference-Header-Content-Length" if v2 else ""
    )
    if kind == JSON_TYPE:
        charset = params.get("charset", "utf-8")
        if charset not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(
                f"content-type: {content_type!r}: charset {charset}; JSON bodies are utf-8"
            )
        return "json"
    if v2 and kind == BINARY_TYPE:
        if not inference_header:
            raise InputError(
                INFERENCE_HEADER,
                "missing; an application/octet-stream body is the V2 binary tensor extension and needs it",
            )
        return "binary"
    if not kind:
        if v2 and inference_header:  # tritonclient's binary requests carry no content type
            return "binary"
        if not has_body:
            return "json"  # nothing to read: the body rules answer (an empty body is not JSON)
        raise UnsupportedMediaType(f"content-type: missing; {accepted} is accepted")
    raise UnsupportedMediaType(f"content-type: {content_type!r} is not accepted; {accepted} is")


# ---------------------------------------------------------------------------------------------- JSON


def json_problem(doc: str | bytes, field: str = "body") -> InputError:
    """Where ``doc`` stops being JSON: line, column, char offset and what is there (the same words
    whichever parser failed first: the standard library's)."""
    text = doc.decode("utf-8", errors="replace") if isinstance(doc, bytes | bytearray) else str(doc)
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        found = text[e.pos : e.pos + 12]
        what = f"found {found!r}" if found else "found the end of the body"
        return InputError(
            field, f"not JSON at line {e.lineno}, column {e.colno} (char {e.pos}): {e.msg}; {what}"
        )
    except RecursionError:
        return InputError(field, "not JSON: nested too deeply")
    return InputError(field, "not JSON (a number or string the server cannot read)")


def parse_json(data: bytes | bytearray | str, field: str = "body") -> Any:
    import orjson

    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise json_problem(data, field) from None


def json_body(payload: Any) -> Any:
    """A request body KServe left undecoded, parsed as JSON (a parse error says where)."""
    return parse_json(payload) if isinstance(payload, bytes | bytearray | str) else payload


# ------------------------------------------------------------------------------------------- tensors

Shape = tuple[int | str, ...]


def v2_datatype(dtype: Any) -> str:
    d = np.dtype(dtype)
    return "BOOL" if d == np.bool_ else ("FP32" if d == np.float32 else d.name.upper())


def check_names(got: Sequence[str], takes: Sequence[str], model: str, prefix: str) -> None:
    """Unknown, repeated and missing inputs, in that order (the first one found is the answer)."""
    seen: set[str] = set()
    listing = ", ".join(takes)
    for name in got:
        if name not in takes:
            raise InputError(f"{prefix}.{name}", f"unknown input; {model} takes {listing}")
        if name in seen:
            raise InputError(f"{prefix}.{name}", "given twice")
        seen.add(name)
    for name in takes:
        if name not in seen:
            raise InputError(f"{prefix}.{name}", f"missing; {model} takes {listing}")


def check_datatype(field: str, datatype: Any, expected: Any) -> None:
    want = v2_datatype(expected)
    if str(datatype).upper() != want:
        raise InputError(f"{field}.datatype", f"{datatype} where {want} is expected")


def check_request_shape(field: str, shape: Sequence[Any]) -> list[int]:
    """A request's declared shape: sizes ≥ 1 (``-1`` means "any" in metadata, never in a request)."""
    dims = list(shape)
    if any(isinstance(d, bool) or not isinstance(d, int | np.integer) for d in dims):
        raise InputError(f"{field}.shape", f"{dims}: dimensions are integers")
    if any(d < 1 for d in dims):
        raise InputError(
            f"{field}.shape",
            f"{fmt_shape(dims)}: every dimension of a request is a size ≥ 1 (-1 is for metadata only)",
        )
    return [int(d) for d in dims]


def check_lead(field: str, n: int, lead: int | str) -> None:
    if lead == N and not 1 <= n <= MAX_BATCH:
        raise InputError(field, f"batch of {n}; 1 to {MAX_BATCH} rows are served")
    if lead == K and not 1 <= n <= MAX_PROPOSALS:
        raise InputError(field, f"{n} proposals; 1 to {MAX_PROPOSALS} are served")


def check_tensor(value: Any, field: str, shape: Shape, dtype: Any, rows: bool = True) -> np.ndarray:
    """One input as a ``dtype`` array of ``shape``. ``rows``: ``value`` carries the leading axis (V2, gRPC,
    a V1 risk_proposals ``proposal``); otherwise it is one row (a V1 instance's input). A NaN/inf names
    its row in the field (``inputs.x[0]`` / ``instances[0].x``) and the index within the row."""
    lead = shape[0]
    want = [None if s in (N, K) else s for s in shape] if rows else list(shape[1:])
    a = as_array(value, field, dtype, want, finite=False)
    if rows:
        check_lead(field, a.shape[0], lead)
    if np.dtype(dtype) != np.bool_ and not np.isfinite(a).all():
        bad = [int(i) for i in np.argwhere(~np.isfinite(a))[0]]
        where, index = (f"{field}[{bad[0]}]", bad[1:]) if rows and lead in (N, 1) else (field, bad)
        raise InputError(where, f"NaN or inf at index {index} (a float32 overflow counts as inf)")
    return a


def check_batch(arrays: Mapping[str, np.ndarray], shapes: Mapping[str, Shape], prefix: str) -> None:
    """Every batched input has the same number of rows."""
    batch: int | None = None
    for name, a in arrays.items():
        if shapes[name][0] != N:
            continue
        if batch is not None and a.shape[0] != batch:
            raise InputError(f"{prefix}.{name}", f"batch of {a.shape[0]}, but the other inputs have {batch}")
        batch = a.shape[0]


def check_instances(instances: Any) -> list[Any]:
    """V1: ``instances`` is the batch, 1 to :data:`MAX_BATCH` objects."""
    if not isinstance(instances, list) or not instances:
        raise InputError("instances", "expected a non-empty list of objects of named inputs")
    check_lead("instances", len(instances), N)
    return instances
