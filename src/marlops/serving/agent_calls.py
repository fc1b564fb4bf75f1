"""The decision core's agent calls as the V2 inputs of each agent's served model, and their answers
decoded into the agents' records (:mod:`marlops.agents.types`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from marlops.agents.core import Call
from marlops.agents.hub import COMM_SOURCES
from marlops.agents.types import (
    MESSAGE_DIM,
    PORTFOLIO_FEATURES,
    Outputs,
    RegimeOutput,
    RiskOutput,
    StructureOutput,
    TacticalOutput,
)
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL

_RECORDS = {
    "regime": RegimeOutput,
    "structure": StructureOutput,
    "tactical": TacticalOutput,
    "risk_q": RiskOutput,
}


def v2_inputs(call: Call) -> dict[str, np.ndarray]:
    """A core call as the V2 inputs of the agent's served model (batch axis first)."""
    x = call.inputs
    if call.agent == "regime":
        return {"x": x[0][None]}
    if call.agent in ("structure", "tactical"):  # the hub reuses its inbox buffers: copy them
        return {"x": x[0][None], "msgs": x[1][None].copy(), "mask": x[2][None].copy()}
    if call.agent == "risk_encode":
        return {
            "tactical": x[0][None],
            "structure": x[1][None],
            "regime": x[2][None],
            "portfolio": call.portfolio[None],  # type: ignore[index]
            "proposal": call.proposals,  # type: ignore[dict-item]
        }
    return {"cache": x[0][None], "portfolio": x[1][None], "proposal": x[2][None]}


def decode(call: Call, outputs: Outputs) -> Any:
    """The record of a regime, structure, tactical or risk_q answer (KeyError/IndexError/ValueError for a
    malformed one)."""
    return _RECORDS[call.agent].from_outputs(outputs)


def zero_call(agent: str, hold: np.ndarray) -> Call:
    """A call of ``agent``'s main model with zero inputs (the decision server's warm-up)."""
    z = np.zeros
    if agent == "regime":
        return Call("regime", (z(REGIME.shape, np.float32),))
    if agent in ("structure", "tactical"):
        m = len(COMM_SOURCES[agent])
        shape = (STRUCTURE if agent == "structure" else TACTICAL).shape
        return Call(agent, (z(shape, np.float32), z((m, MESSAGE_DIM), np.float32), z(m, np.bool_)))
    matrices = tuple(z(x.shape, np.float32) for x in (TACTICAL, STRUCTURE, REGIME))
    return Call(
        "risk_encode", matrices, portfolio=z(len(PORTFOLIO_FEATURES), np.float32), proposals=hold[None]
    )
