"""What the frozen parts of the team say about one market history, computed once in large batches.

None of regime, structure or tactical reads the portfolio: their outputs over a history depend on the
market alone. Once an agent's encoder is trained and frozen, its encoding of every bar can therefore be
computed once (batched over the whole history, thousands of rows per call instead of ``n_envs`` per env
step) and every later stage reads rows of these arrays: the team stage fine-tunes only communication and
heads on top of them (:meth:`StructureNet.head`, :meth:`TacticalNet.head`), which costs a fraction of a
MFLOP per decision instead of the encoders' ~100.

Per higher bar ``h`` (the context memory after bar h closed): regime probabilities, its message and its
pooled encoding; structure's encoding. Per base bar ``t``: tactical's encoding. Rows before the warm-up
(never read by the environment) are zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from marlops.agents.networks import RegimeNet, StructureNet, TacticalNet
from marlops.agents.types import MESSAGE_DIM
from marlops.env.market_env import MarketData

BATCH = 512


def _t(x: np.ndarray) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)


def used_higher_bars(data: MarketData) -> np.ndarray:
    """Higher bars the environment can read: the latest closed one of every base bar from the warm-up on."""
    hs = np.unique(data.higher_of[max(data.warm_from, 0) :])
    return hs[hs >= 0]


def used_base_bars(data: MarketData) -> np.ndarray:
    return np.arange(max(data.warm_from, 0), len(data))


@torch.no_grad()
def _batched(fn: Callable[[np.ndarray], Tensor], rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    for i in range(0, len(rows), BATCH):
        r = rows[i : i + BATCH]
        out[r] = fn(r).numpy()
    return out


@dataclass
class RegimeEncoding:
    pooled: np.ndarray  # (H, d_model)
    probs: np.ndarray  # (H, 4)
    message: np.ndarray  # (H, MESSAGE_DIM)


@torch.no_grad()
def encode_regime(net: RegimeNet, data: MarketData) -> RegimeEncoding:
    """The regime agent over every used higher bar (eval mode)."""
    net.eval()
    hs = used_higher_bars(data)
    n = len(data.regime)
    pooled = _batched(
        lambda r: net.encode(_t(data.regime[r])), hs, np.zeros((n, net.cls_head.in_features), np.float32)
    )
    out = net.head(_t(pooled))
    probs = torch.softmax(out.logits, -1).numpy()
    probs[np.setdiff1d(np.arange(n), hs)] = 1.0 / probs.shape[1]
    message = out.message.numpy()
    message[np.setdiff1d(np.arange(n), hs)] = 0.0
    return RegimeEncoding(pooled, probs, message)


@torch.no_grad()
def encode_structure(net: StructureNet, data: MarketData) -> np.ndarray:
    """(H, lstm_hidden) structure encodings (before communication) of every used higher bar."""
    net.eval()
    hs = used_higher_bars(data)
    width = net.norm.normalized_shape[0]
    return _batched(
        lambda r: net.encode(_t(data.structure[r])), hs, np.zeros((len(data.structure), width), np.float32)
    )


@torch.no_grad()
def encode_tactical(net: TacticalNet, data: MarketData) -> np.ndarray:
    """(T, d_model) tactical encodings of every base bar from the warm-up on."""
    net.eval()
    ts = used_base_bars(data)
    width = net.norm.normalized_shape[0]
    return _batched(lambda r: net.encode(_t(data.tactical[r])), ts, np.zeros((len(data), width), np.float32))


@dataclass
class StructureSays:
    """Structure's outputs per higher bar, given its encodings and the regime messages."""

    probs: np.ndarray  # (H, 5) over the bias levels
    size: np.ndarray  # (H,)
    confidence: np.ndarray  # (H,)
    message: np.ndarray  # (H, MESSAGE_DIM)


@torch.no_grad()
def structure_outputs(net: StructureNet, h: np.ndarray, regime_message: np.ndarray) -> StructureSays:
    """:meth:`StructureNet.head` over cached encodings (every row; cheap)."""
    net.eval()
    n = len(h)
    msgs = _t(regime_message).reshape(n, 1, MESSAGE_DIM)
    out = net.head(_t(h), msgs, torch.ones(n, 1, dtype=torch.bool))
    return StructureSays(
        torch.softmax(out.logits, -1).numpy(),
        out.size.numpy(),
        out.confidence.numpy(),
        out.message.numpy(),
    )


@dataclass
class MarketEncodings:
    """Every cached encoding of one history (see the module docstring)."""

    regime: RegimeEncoding
    structure_h: np.ndarray  # (H, lstm_hidden)
    tactical_h: np.ndarray  # (T, d_model)


def encode_market(
    regime: RegimeNet, structure: StructureNet, tactical: TacticalNet, data: MarketData
) -> MarketEncodings:
    return MarketEncodings(
        encode_regime(regime, data), encode_structure(structure, data), encode_tactical(tactical, data)
    )
