"""How the decision server reaches an agent: gRPC, V2 REST, V1 REST, or in-process (collocated).

``--agent NAME=WHERE`` picks one per agent:

Each call goes to the model of the entry its inputs pick
(:func:`~marlops.serving.agent_runner.model_for_inputs`: the risk agent's ``risk``, ``risk-encode`` or
``risk-q``; the other agents' own name).

- ``grpc://host:8081`` — Open Inference Protocol over gRPC (KServe's generated stub), raw tensor bytes:
  the fastest remote path (docs/serving.md has the figures);
- ``http://host:8080`` (or ``…/v2``) — V2 REST with the binary tensor extension (KServe's
  ``InferenceRESTClient``);
- ``http://host:8080/v1`` — V1 JSON (``{"instances": …}``), the slowest, what a naive client does;
- anything else is a model URI (``models:/…``, a folder): the agent's graphs run inside the decision server
  (collocated; no network hop).

Every call has a deadline; a failure is an :class:`AgentCallError` whose ``kind`` ends up in the decision's
fail-closed reasons: ``timeout``, ``unavailable`` (connection refused or reset), ``error:<what>``.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from marlops.serving.agent_runner import AgentRunner, model_for_inputs
from marlops.serving.model_source import resolve_agent


class AgentCallError(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class AgentEndpoint(abc.ABC):
    """One agent, wherever it runs. ``version`` is the agent version id of the last answer."""

    def __init__(self, agent: str, where: str) -> None:
        self.agent = agent
        self.where = where
        self.version: str | None = None

    @property
    @abc.abstractmethod
    def kind(self) -> str:
        """grpc | rest-v2 | rest-v1 | local"""

    @abc.abstractmethod
    async def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float) -> dict[str, np.ndarray]:
        """Named outputs for named inputs (leading batch axis on both); raises AgentCallError."""

    async def close(self) -> None:
        return None


class LocalEndpoint(AgentEndpoint):
    """The agent's graphs in this process (collocated)."""

    kind = "local"  # type: ignore[assignment]

    def __init__(self, agent: str, model_uri: str) -> None:
        super().__init__(agent, model_uri)
        self.runner = AgentRunner(resolve_agent(agent, model_uri))
        self.version = self.runner.version

    async def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float) -> dict[str, np.ndarray]:
        try:
            entry = self.runner.entry_for(set(inputs))
            return self.runner.run(entry, inputs)
        except Exception as e:  # an in-process failure is this agent's failure, not the server's
            raise AgentCallError(f"error:{type(e).__name__}") from e


def _infer_request(model: str, inputs: Mapping[str, np.ndarray], binary_outputs: bool) -> Any:
    """A KServe InferRequest with binary tensors (for the REST client)."""
    from kserve import InferInput, InferRequest

    ins = []
    for name, arr in inputs.items():
        i = InferInput(name, list(arr.shape), "BOOL" if arr.dtype == np.bool_ else "FP32")
        i.set_data_from_numpy(arr, binary_data=True)
        ins.append(i)
    return InferRequest(
        model_name=model,
        infer_inputs=ins,
        parameters={"binary_data_output": True} if binary_outputs else None,
    )


def _outputs(resp: Any) -> tuple[dict[str, np.ndarray], str | None]:
    outs = {o.name: o.as_numpy() for o in resp.outputs}
    version = None
    params = resp.parameters or {}
    v = params.get("agent_version") if hasattr(params, "get") else None
    if v is not None:
        version = getattr(v, "string_param", v) or None
    return outs, (str(version) if version else None)


class GrpcEndpoint(AgentEndpoint):
    """Open Inference Protocol over gRPC with raw tensor bytes, on KServe's generated stub.

    KServe's ``InferenceGRPCClient`` wraps the same stub in ``InferRequest``/``InferResponse`` objects;
    building the protobuf messages directly saves that conversion (~70 µs a call) and its ``wait_for`` task
    (docs/serving.md, "Latency")."""

    kind = "grpc"  # type: ignore[assignment]

    def __init__(self, agent: str, url: str) -> None:
        super().__init__(agent, url)
        self.target = urlsplit(url).netloc
        self._channel: Any = None
        self._stub: Any = None

    def _get(self) -> Any:
        if self._stub is None:  # created inside the running loop (grpc.aio binds to it)
            import grpc
            from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

            self._channel = grpc.aio.insecure_channel(
                self.target,
                options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
            )
            self._stub = GRPCInferenceServiceStub(self._channel)
        return self._stub

    def _request(self, inputs: Mapping[str, np.ndarray]) -> Any:
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

        tensors, raw = [], []
        for name, arr in inputs.items():
            dtype = "BOOL" if arr.dtype == np.bool_ else "FP32"
            tensors.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype=dtype, shape=arr.shape))
            raw.append(np.ascontiguousarray(arr).tobytes())
        model = model_for_inputs(self.agent, set(inputs))
        return pb.ModelInferRequest(model_name=model, inputs=tensors, raw_input_contents=raw)

    async def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float) -> dict[str, np.ndarray]:
        import grpc

        try:
            async with asyncio.timeout(timeout_s * 1.5):  # the gRPC deadline is the one that should fire
                resp = await self._get().ModelInfer(self._request(inputs), timeout=timeout_s)
        except TimeoutError:
            raise AgentCallError("timeout") from None
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise AgentCallError("timeout") from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise AgentCallError("unavailable") from None
            raise AgentCallError(f"error:{code.name.lower() if code else 'rpc'}") from None
        try:
            outs = _grpc_outputs(resp)
        except (ValueError, TypeError) as e:
            raise AgentCallError("error:bad_response") from e
        v = resp.parameters.get("agent_version") if resp.parameters else None
        if v is not None and v.string_param:
            self.version = v.string_param
        return outs

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None


def _grpc_outputs(resp: Any) -> dict[str, np.ndarray]:
    """Named FP32 outputs of a ModelInferResponse: raw contents (what a server sends back to raw inputs)
    or typed contents."""
    out = {}
    for i, o in enumerate(resp.outputs):
        shape = tuple(o.shape)
        if resp.raw_output_contents:
            arr = np.frombuffer(resp.raw_output_contents[i], dtype=np.float32)
        else:
            arr = np.asarray(o.contents.fp32_contents, dtype=np.float32)
        out[o.name] = arr.reshape(shape)
    return out


class RestV2Endpoint(AgentEndpoint):
    kind = "rest-v2"  # type: ignore[assignment]

    def __init__(self, agent: str, url: str) -> None:
        super().__init__(agent, url)
        parts = urlsplit(url)
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self._client: Any = None

    def _get(self) -> Any:
        if self._client is None:
            from kserve import InferenceRESTClient, RESTConfig

            self._client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=10.0, retries=0))
        return self._client

    async def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float) -> dict[str, np.ndarray]:
        import httpx

        model = model_for_inputs(self.agent, set(inputs))
        req = _infer_request(model, inputs, binary_outputs=True)
        try:
            async with asyncio.timeout(timeout_s * 1.5):
                resp = await self._get().infer(self.base_url, req, model_name=model, timeout=timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            raise AgentCallError("timeout") from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
            raise AgentCallError("unavailable") from None
        except httpx.HTTPStatusError as e:
            raise AgentCallError(f"error:http_{e.response.status_code}") from None
        except httpx.HTTPError as e:
            raise AgentCallError(f"error:{type(e).__name__}") from None
        outs, version = _outputs(resp)
        if version:
            self.version = version
        return outs

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


class RestV1Endpoint(AgentEndpoint):
    """V1 JSON: every array as nested lists, one instance per row (risk: one with its K proposals)."""

    kind = "rest-v1"  # type: ignore[assignment]

    def __init__(self, agent: str, url: str) -> None:
        super().__init__(agent, url)
        parts = urlsplit(url)
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self._client: Any = None

    async def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float) -> dict[str, np.ndarray]:
        import httpx
        import orjson

        if self._client is None:
            self._client = httpx.AsyncClient()
        proposals = "proposal" in inputs and "tactical" in inputs  # the risk_proposals entry keeps its K axis
        if proposals:
            instances = [{k: (v if k == "proposal" else v[0]).tolist() for k, v in inputs.items()}]
        else:  # one instance per row of the batch
            n = len(next(iter(inputs.values())))
            instances = [{k: v[i].tolist() for k, v in inputs.items()} for i in range(n)]
        try:
            model = model_for_inputs(self.agent, set(inputs))
            r = await self._client.post(
                f"{self.base_url}/v1/models/{model}:predict",
                content=orjson.dumps({"instances": instances}),
                headers={"content-type": "application/json"},
                timeout=timeout_s,
            )
        except httpx.TimeoutException:
            raise AgentCallError("timeout") from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
            raise AgentCallError("unavailable") from None
        if r.status_code != 200:
            raise AgentCallError(f"error:http_{r.status_code}")
        body = orjson.loads(r.content)
        self.version = body.get("version") or self.version
        preds = body["predictions"]
        if proposals:
            return {k: np.asarray(v, np.float32) if k == "q" else np.asarray(v, np.float32)[None]
                    for k, v in preds[0].items()}  # fmt: skip
        return {k: np.asarray([p[k] for p in preds], np.float32) for k in preds[0]}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def make_endpoint(agent: str, where: str) -> AgentEndpoint:
    """``grpc://…``, ``http(s)://…[/v2]``, ``http(s)://…/v1``, or a model URI (collocated)."""
    parts = urlsplit(where)
    if parts.scheme == "grpc":
        if not parts.netloc:
            raise ValueError(f"--agent {agent}={where}: expected grpc://HOST:PORT")
        return GrpcEndpoint(agent, where)
    if parts.scheme in ("http", "https"):
        if not parts.netloc:
            raise ValueError(f"--agent {agent}={where}: expected http://HOST:PORT")
        path = parts.path.rstrip("/")
        if path == "/v1":
            return RestV1Endpoint(agent, where)
        if path in ("", "/v2"):
            return RestV2Endpoint(agent, where)
        raise ValueError(f"--agent {agent}={where}: the path may be /v1 or /v2, got {parts.path!r}")
    return LocalEndpoint(agent, where)
