"""Running a KServe ModelServer for an agent or the decision model, hardened against bad requests.

KServe's ModelServer gives V1 + V2 REST, gRPC, ``/v2/health/*`` and ``/metrics``. On top of it:

- a body-size limit (``--max-body-bytes``; REST answers 400 naming ``body``, gRPC RESOURCE_EXHAUSTED);
- the content-type rule of :mod:`marlops.serving.request_rules` on every inference route (V1 ``:predict``,
  V2 ``/infer``): JSON or the V2 binary extension, anything else a 415 naming the content type;
- request decoding errors (malformed V2 binary headers, broken JSON) are 400s naming what was wrong and
  where (broken JSON: line, column, char offset and what is there), not KServe's 500s: anything that fails
  while *parsing* a request is the client's fault;
- FastAPI's 422 for a V2 body that does not fit the V2 schema becomes a 400 naming the field;
- routes that KServe answers with 5xx by design are closed with a 404 saying why: model versions
  (``/v2/models/NAME/versions/…``, not implemented by KServe's data plane), ``:explain`` (no explainer) and
  the model repository extension (``/v2/repository/…``: loading or unloading a model over HTTP would let
  anyone take a server's model away);
- per-request latency logging and the access log are off (they cost more than a decision's network hop).

KServe parses ``sys.argv`` when ``kserve.model_server`` is first imported; :func:`isolate_argv` hides
marlops's own options from it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from marlops.serving.request_rules import (
    BINARY_TYPE,
    INFERENCE_HEADER,
    JSON_TYPE,
    UnsupportedMediaType,
    check_request_shape,
    json_problem,
    parse_json,
    request_media,
)
from marlops.serving.tensors import InputError

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
_CLOSED_ROUTES = (
    (
        re.compile(r"^/v2/models/[^/]+/versions/"),
        "model versions are not addressable; every answer names the agent version it came from",
    ),
    (re.compile(r"^/v1/models/[^/]+:explain$"), "no explainer is served"),
    (re.compile(r"^/v2/repository/"), "the model repository extension is disabled on marlops servers"),
)


_V1_INFER = re.compile(r"^/v1/models/[^/]+:predict$")
_V2_INFER = re.compile(r"^/v2/models/[^/]+/infer$")


def isolate_argv() -> None:
    """Leave KServe's import-time argument parser nothing of ours to misread (it accepts prefixes)."""
    if "kserve.model_server" not in sys.modules:
        sys.argv = sys.argv[:1]


async def _send_json(send: Any, status: int, content: dict) -> None:
    body = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Pure ASGI: closed routes → 404, a content type no server reads → 415, oversized bodies → 400
    (before anything reads them)."""

    def __init__(self, app: Any, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        for pattern, why in _CLOSED_ROUTES:
            if pattern.search(path):
                await _send_json(send, 404, {"error": f"{path}: {why}"})
                return
        v1, v2 = bool(_V1_INFER.match(path)), bool(_V2_INFER.match(path))
        if (v1 or v2) and scope.get("method") == "POST":
            scope = _with_media(scope, v2)
            if "error" in scope:
                await _send_json(send, scope["status"], {"error": scope["error"]})
                return
        limit = self.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                await _send_json(send, 400, {"error": "content-length: not a number"})
                return
            if n > limit:
                await _send_json(send, 400, {"error": f"body: {n} bytes, over the limit of {limit} bytes"})
                return
            await self.app(scope, receive, send)
            return
        # no declared length (chunked): read it here, bounded, and hand it on
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_json(send, 400, {"error": f"body: over the limit of {limit} bytes"})
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _with_media(scope: dict, v2: bool) -> dict:
    """The request's scope with its content type spelled as KServe and FastAPI read it (JSON:
    ``application/json``; the binary extension: ``application/octet-stream``), or ``{"error", "status"}``."""
    headers = list(scope.get("headers") or [])
    found = {k.lower(): v for k, v in headers}
    ct = found.get(b"content-type")
    length = found.get(b"content-length")
    has_body = b"chunked" in found.get(b"transfer-encoding", b"").lower() or (
        length is not None and length.strip() not in (b"0", b"")
    )
    try:
        media = request_media(
            ct.decode("latin-1") if ct is not None else None, has_body, INFERENCE_HEADER.encode() in found, v2
        )
    except UnsupportedMediaType as e:
        return {"error": str(e), "status": 415}
    except InputError as e:
        return {"error": str(e), "status": 400}
    spelled = (JSON_TYPE if media == "json" else BINARY_TYPE).encode()
    headers = [(k, v) for k, v in headers if k.lower() != b"content-type"] + [(b"content-type", spelled)]
    return {**scope, "headers": headers}


def _validation_400(request: Any, exc: Any) -> Any:
    from fastapi.responses import JSONResponse

    if any(e.get("type") == "json_invalid" for e in exc.errors()):  # say where the JSON broke
        return JSONResponse(status_code=400, content={"error": str(json_problem(exc.body or ""))})
    parts = []
    for e in exc.errors()[:3]:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        parts.append(f"{'.'.join(loc) or 'body'}: {e.get('msg', 'invalid')}")
    return JSONResponse(status_code=400, content={"error": "; ".join(parts) or "invalid request"})


def _safe_dataplane(registry: Any) -> Any:
    from kserve.errors import InvalidInput
    from kserve.protocol.dataplane import DataPlane

    class SafeDataPlane(DataPlane):
        def decode(self, body: Any, headers: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                if isinstance(body, bytes | bytearray):
                    model = self._model_registry.get_model(kwargs.get("model_name") or "")
                    body = _pre_decode(body, headers or {}, model)
                return super().decode(body, headers, *args, **kwargs)
            except InputError as e:
                raise InvalidInput(str(e)) from None
            except InvalidInput as e:
                raise InvalidInput(f"body: {e.reason}") from None
            except Exception as e:  # a request KServe cannot parse is a bad request, not a server error
                raise InvalidInput(f"body: cannot be decoded ({type(e).__name__}: {e})") from None

    return SafeDataPlane(model_registry=registry)


def _pre_decode(body: bytes | bytearray, headers: dict[str, str], model: Any) -> Any:
    """What KServe's decoder would fail on with a vague message, checked here with a precise one: a JSON
    body is parsed (and handed on parsed); a binary body's JSON header is parsed and what it declares
    (names, datatypes, shapes) held to the model's rules, as gRPC's request is."""
    n = headers.get(INFERENCE_HEADER)
    if n is None:
        return parse_json(body) if headers.get("content-type") == JSON_TYPE else body
    try:
        size = int(n)
    except ValueError:
        raise InputError(INFERENCE_HEADER, f"{n!r}: not a number of bytes") from None
    if not 0 < size <= len(body):
        raise InputError(INFERENCE_HEADER, f"{size}: the JSON header must fit the {len(body)}-byte body")
    header = parse_json(bytes(body[:size]), "body (JSON header)")
    declared = header.get("inputs") if isinstance(header, dict) else None
    if isinstance(declared, list) and all(
        isinstance(i, dict)
        and isinstance(i.get("name"), str)
        and isinstance(i.get("datatype"), str)
        and isinstance(i.get("shape"), list)
        for i in declared
    ):
        items = [(i["name"], i["datatype"], i["shape"]) for i in declared]
        check = getattr(model, "check_declared", None)
        if check is not None:
            check(items)
        else:
            for name, _, shape in items:
                check_request_shape(f"inputs.{name}", shape)
    return body


class _OneLineBadRequests(logging.Filter):
    """KServe logs every 400 with a traceback at ERROR; a bad request is the client's, one line will do."""

    def filter(self, record: logging.LogRecord) -> bool:
        from kserve.errors import InvalidInput

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, InvalidInput):
            record.msg, record.args, record.exc_info, record.exc_text = f"bad request: {exc}", (), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_logs() -> None:
    for name, level in (("uvicorn.access", logging.WARNING), ("kserve.trace", logging.WARNING)):
        logging.getLogger(name).setLevel(level)
    kserve_logger = logging.getLogger("kserve")
    if not any(isinstance(f, _OneLineBadRequests) for f in kserve_logger.filters):
        kserve_logger.addFilter(_OneLineBadRequests())


def serve(
    models: Sequence[Any],
    http_port: int = 8080,
    grpc_port: int = 8081,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    aliases: dict[str, Sequence[str]] | None = None,
) -> None:
    """Start a ModelServer with ``models`` (already loaded: the server listens once they are ready).

    ``aliases`` registers a model under more names (the InferenceGraph calls an agent by its
    InferenceService name)."""
    isolate_argv()
    from fastapi.exceptions import RequestValidationError
    from kserve import ModelServer
    from kserve import model_server as ms

    ms.args.grpc_max_receive_message_length = max_body_bytes
    server = ModelServer(
        http_port=http_port,
        grpc_port=grpc_port,
        workers=1,
        enable_grpc=grpc_port > 0,
        enable_latency_logging=False,
        grace_period=2,
    )
    server.dataplane = _safe_dataplane(server.registered_models)
    ms.app.add_exception_handler(RequestValidationError, _validation_400)
    ms.app.add_middleware(GuardMiddleware, max_body_bytes=max_body_bytes)
    quiet_logs()
    for m in models:
        for alias in (aliases or {}).get(m.name, ()):
            server.register_model(m, name=alias)
    server.start(list(models))
