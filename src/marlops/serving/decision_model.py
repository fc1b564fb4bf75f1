"""The aggregation transformer: the KServe model ``decision`` (``marlops serve decision``).

It receives a decision request (:mod:`marlops.serving.decision_request`), calls the agent predictors on
their clocks, keeps the shared context memory per instrument, runs the hub, consensus, risk gate and
decision engine (:mod:`marlops.serving.decision_service`) and answers with the TradeDecision as JSON.

- V1 ``POST /v1/models/decision:predict``: the request object in, the decision object out.
- V2 ``POST /v2/models/decision/infer`` and gRPC ``ModelInfer``: one BYTES input ``request`` holding the
  request's JSON, one BYTES output ``decision`` holding the decision's JSON.
- InferenceGraph step (manifests/serving/inference-graph.yaml): the ensemble's ``$response`` — an object
  with one key per agent, each the agent server's graph answer — see :mod:`marlops.serving.graph`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from marlops.serving import graph, metrics
from marlops.serving.clients import make_endpoint
from marlops.serving.decision_request import parse_request
from marlops.serving.decision_service import DecisionService
from marlops.serving.request_log import RequestLog
from marlops.serving.request_matrices import FeatureFetchError, FetchedMatrices
from marlops.serving.request_rules import json_body, json_problem
from marlops.serving.tensors import InputError
from marlops.team import AGENTS

DECISION_MODEL = "decision"


def feast_fetcher(repo: str | Path) -> Callable[[str], FetchedMatrices]:
    """Latest matrices of an instrument from the Feast online store in ``repo`` (one thread: the sqlite
    online store's connections belong to the thread that opened them)."""
    from marlops.features import open_store
    from marlops.features.online import (
        MissingOnlineFeatures,
        OnlineFeatureError,
        StaleOnlineFeatures,
        latest_matrices,
    )

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feast")
    store = pool.submit(open_store, repo).result()

    def fetch_in_thread(instrument: str) -> FetchedMatrices:
        try:
            m = latest_matrices(store, instrument)
        except MissingOnlineFeatures as e:
            raise FeatureFetchError("missing", str(e)) from None
        except StaleOnlineFeatures as e:
            raise FeatureFetchError("stale", str(e)) from None
        except (OnlineFeatureError, OSError, ValueError, RuntimeError) as e:
            raise FeatureFetchError("error", str(e)) from None
        return FetchedMatrices(m.bar_end, m.higher_bar_end, m.matrices, m.ready)

    def fetch(instrument: str) -> FetchedMatrices:
        return pool.submit(fetch_in_thread, instrument).result()

    return fetch


class DecisionModel(Model):
    """The decision server's one model. ``agents`` maps each agent to where it runs (see
    :func:`marlops.serving.clients.make_endpoint`)."""

    def __init__(
        self,
        agents: Mapping[str, str],
        timeouts_ms: Mapping[str, float] | None = None,
        feast_repo: str | Path | None = None,
        request_log: str | Path | None = None,
        name: str = DECISION_MODEL,
        service_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(name)
        missing = [a for a in AGENTS if a not in agents]
        if missing:
            raise ValueError(f"--agent missing for {', '.join(missing)} (NAME=URL for each of {AGENTS})")
        self.agent_specs = dict(agents)
        self.timeouts_ms = dict(timeouts_ms or {})
        self.feast_repo = feast_repo
        self.request_log_dir = request_log
        self.service_options = dict(service_options or {})
        self.service: DecisionService | None = None

    def load(self) -> bool:
        endpoints = {a: make_endpoint(a, self.agent_specs[a]) for a in AGENTS}
        self.service = DecisionService(
            endpoints,
            timeouts_ms=self.timeouts_ms,
            fetch_matrices=feast_fetcher(self.feast_repo) if self.feast_repo else None,
            request_log=RequestLog(self.request_log_dir) if self.request_log_dir else RequestLog.from_env(),
            **self.service_options,
        )

        async def warm() -> dict[str, str]:
            # a loop of its own, before the server's: clients made here are closed again, the server's
            # loop makes its own on first use
            try:
                return await self.service.warm_up()  # type: ignore[union-attr]
            finally:
                await self.service.close()  # type: ignore[union-attr]

        for agent, version in asyncio.run(warm()).items():
            if version != "?":
                metrics.model_loaded(agent, version)
        # asyncio.run leaves no current loop behind; KServe's start() asks for one before its own run
        asyncio.set_event_loop(asyncio.new_event_loop())
        self.ready = True
        return self.ready

    async def predict(
        self,
        payload: dict | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        svc = self.service
        assert svc is not None
        try:
            if isinstance(payload, InferRequest):
                return await self._v2(payload)
            payload = json_body(payload)
            if isinstance(payload, Mapping) and graph.is_ensemble_response(payload):
                return (await graph.aggregate(svc, payload)).to_json()
            req = parse_request(payload, svc.clocks)
            return (await svc.decide(req)).to_json()
        except InputError as e:
            raise InvalidInput(str(e)) from None

    async def _v2(self, payload: InferRequest) -> InferResponse:
        svc = self.service
        assert svc is not None
        inputs = {i.name: i for i in payload.inputs}
        if set(inputs) != {"request"}:
            raise InputError("inputs", f"expected one BYTES input named 'request', got {sorted(inputs)}")
        inp = inputs["request"]
        if str(inp.datatype).upper() != "BYTES":
            raise InputError(
                "inputs.request.datatype", f"{inp.datatype!r}; BYTES (the request's JSON) expected"
            )
        try:
            items = inp.as_numpy().reshape(-1)
        except (ValueError, TypeError, InvalidInput) as e:
            raise InputError("inputs.request", f"unreadable BYTES tensor: {e}") from None
        if len(items) != 1:
            raise InputError("inputs.request", f"expected one request, got {len(items)}")
        raw = items[0]
        try:
            body = orjson.loads(raw if isinstance(raw, bytes | str) else bytes(raw))
        except orjson.JSONDecodeError:
            raise json_problem(raw, "inputs.request") from None
        except TypeError as e:
            raise InputError("inputs.request", f"not JSON: {e}") from None
        out = (await svc.decide(parse_request(body, svc.clocks))).to_json()
        o = InferOutput(name="decision", shape=[1], datatype="BYTES")
        o.set_data_from_numpy(np.array([orjson.dumps(out)], dtype=np.object_), binary_data=payload.from_grpc)
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=[o],
            use_binary_outputs=payload.from_grpc,
        )

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": "request", "datatype": "BYTES", "shape": [1]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": "decision", "datatype": "BYTES", "shape": [1]}]

    async def explain(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        raise InvalidInput(f"{self.name}: no explainer is served; use :predict")
