"""The InferenceGraph alternative: an Ensemble over the four agents, then the aggregator on ``$response``.

manifests/serving/inference-graph.yaml routes a decision request (matrices mode) like this::

    root (Sequence)
      ├─ agents (Ensemble, data $request) → regime, structure, tactical, risk   (in parallel)
      └─ decision (data $response)        → {"regime": …, "structure": …, "tactical": …, "risk": …}

Each agent server answers the decision request itself (:func:`agent_answer`): regime, structure and tactical
run their networks on the request's matrices, the risk agent encodes the matrices; every answer echoes the
request without its matrices. The aggregator (:func:`aggregate`) feeds those outputs into the same
:class:`~marlops.serving.decision_service.DecisionService` steps as the transformer (context memory, hub,
consensus, risk gate, decision engine); only the risk agent's Q-values, which need the portfolio state the
aggregator keeps, cost it one more call (and, at a base-bar close whose request carries only the tactical
matrix, the matrix encoding as well: the higher-bar matrices are in the aggregator's context memory).

The price of parallel steps: an Ensemble cannot pass one agent's output to another inside a request, so
structure and tactical run with their message inputs masked (as when a sender is absent) instead of
attending over the regime and structure messages of the same close. The transformer path keeps the
hierarchy (and is faster: one hop to the decision server, gRPC behind it); the graph trades that for
routing done by KServe. docs/serving.md compares them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from marlops.agents.hub import COMM_SOURCES
from marlops.agents.types import MESSAGE_DIM
from marlops.serving.agent_runner import AgentRunner
from marlops.serving.clients import AgentCallError, AgentEndpoint
from marlops.serving.decision_service import ENDPOINT_OVERRIDES, DecisionService
from marlops.serving.outcome import Outcome
from marlops.serving.tensors import InputError, check_matrix
from marlops.team import AGENTS


def is_graph_request(body: Any) -> bool:
    """A decision request sent to an agent by the graph router (not a V1 ``instances`` call)."""
    return isinstance(body, Mapping) and "clock" in body and "instances" not in body


def is_ensemble_response(body: Any) -> bool:
    return (
        isinstance(body, Mapping)
        and set(body) == set(AGENTS)
        and all(isinstance(v, Mapping) and "agent" in v for v in body.values())
    )


# ---------------------------------------------------------------------------------------- agent side


def agent_answer(runner: AgentRunner, body: Mapping[str, Any]) -> dict[str, Any]:
    """An agent server's answer to a decision request routed by the graph. The risk agent's answer echoes
    the request (the aggregator's only copy of it: a Sequence passes on the ensemble's response alone)."""
    mats = body.get("matrices")
    out: dict[str, Any] = {"agent": runner.agent, "version": runner.version, "outputs": None}
    if runner.agent == "risk":
        out["request"] = dict(body)
    if mats is None:  # a tick, or instrument mode: nothing for the networks to run on
        return out
    if not isinstance(mats, Mapping):
        raise InputError("matrices", "expected an object of named matrices")
    agent = runner.agent
    if agent == "risk":
        if not {"tactical", "structure", "regime"} <= set(mats):
            return out
        values = {n: check_matrix(n, mats[n])[None] for n in ("tactical", "structure", "regime")}
    else:
        name = agent
        if name not in mats:
            return out
        values = {"x": check_matrix(name, mats[name])[None]}
        if agent in COMM_SOURCES:  # no same-close messages in an ensemble: masked, as absent senders
            m = len(COMM_SOURCES[agent])
            values["msgs"] = np.zeros((1, m, MESSAGE_DIM), np.float32)
            values["mask"] = np.zeros((1, m), np.bool_)
    outs = runner.infer(values)
    out["outputs"] = {k: v.tolist() for k, v in outs.items()}
    return out


# ----------------------------------------------------------------------------------- aggregator side


class _Answered(AgentEndpoint):
    """An agent's ensemble answer, served to the DecisionService as if the agent had been called."""

    kind = "graph"  # type: ignore[assignment]

    def __init__(self, agent: str, answer: Mapping[str, Any], fallback: AgentEndpoint) -> None:
        super().__init__(agent, "graph")
        self.version = str(answer.get("version") or fallback.version or "?")
        outs = answer.get("outputs")
        self.outputs = None if outs is None else {k: np.asarray(v, np.float32) for k, v in outs.items()}
        self.fallback = fallback

    async def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float) -> dict[str, np.ndarray]:
        if self.agent == "risk":
            if "cache" in inputs:  # a tick: the Q head on the session's cached encoding
                return await self.fallback.infer(inputs, timeout_s)
            if self.outputs is None or "cache" not in self.outputs:
                # a base-bar request carries the tactical matrix only; the aggregator keeps the higher-bar
                # ones, so it asks the risk agent itself (one call, as the transformer does)
                return await self.fallback.infer(inputs, timeout_s)
            k = len(inputs["proposal"])
            cache = self.outputs["cache"]
            q = await self.fallback.infer(
                {
                    "cache": np.repeat(cache, k, axis=0),
                    "portfolio": np.repeat(inputs["portfolio"], k, axis=0),
                    "proposal": inputs["proposal"],
                },
                timeout_s,
            )
            return {"cache": cache, "q": q["q"]}
        if self.outputs is None:
            raise AgentCallError("missing")
        return self.outputs


async def aggregate(service: DecisionService, ensemble: Mapping[str, Any]) -> Outcome:
    """The decision for an ensemble's ``$response``."""
    from marlops.serving.decision_request import parse_request

    echo = ensemble["risk"].get("request")
    if not isinstance(echo, Mapping):
        raise InputError("risk.request", "missing: the risk agent's answer carries the request it served")
    req = parse_request(dict(echo), service.clocks)
    answered = {a: _Answered(a, ensemble[a], service.agents[a]) for a in AGENTS}
    token = ENDPOINT_OVERRIDES.set(answered)
    try:
        return await service.decide(req)
    finally:
        ENDPOINT_OVERRIDES.reset(token)
