"""The communication hub: typed messages, shared context memory, message passing and consensus.

The *learned* part of communication (an agent attending over the others' latest message vectors)
lives in the networks (``CommAttention`` in networks.py) so training reaches it end to end; the hub
decides which messages an agent sees: the latest from each of its sources, masked out when missing
or stale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from marlops.agents.types import MESSAGE_DIM, StructureOutput, TacticalAction, TacticalOutput
from marlops.team import AGENTS

# Whose messages each agent attends over, in this order (the networks' message slots).
COMM_SOURCES: dict[str, tuple[str, ...]] = {"structure": ("regime",), "tactical": ("regime", "structure")}


@dataclass(frozen=True, slots=True)
class Message:
    sender: str
    ts: int  # market time (ns) the message refers to: the bar end or tick time it was computed at
    model_version: str
    payload: object  # the sender's output record (RegimeOutput, StructureOutput, ...)
    vector: np.ndarray | None = (
        None  # (MESSAGE_DIM,) context for the learned attention, if the sender has one
    )


@dataclass
class ContextMemory:
    """The latest message of every agent; ``max_age_ns`` per sender says when one goes stale."""

    max_age_ns: dict[str, int] = field(default_factory=dict)
    _latest: dict[str, Message] = field(default_factory=dict)

    def put(self, msg: Message) -> None:
        self._latest[msg.sender] = msg

    def get(self, sender: str) -> Message | None:
        return self._latest.get(sender)

    def age_ns(self, sender: str, now: int) -> int | None:
        m = self._latest.get(sender)
        return None if m is None else now - m.ts

    def is_stale(self, sender: str, now: int) -> bool:
        """Missing, or older than its sender's max age."""
        age = self.age_ns(sender, now)
        limit = self.max_age_ns.get(sender)
        return age is None or (limit is not None and age > limit)

    def clear(self) -> None:
        self._latest.clear()


class ConsensusRule(StrEnum):
    NONE = "none"  # tactical decides alone (the risk gate still applies)
    STRUCTURE_AGREES = "structure_agrees"  # an entry must go the way structure's bias points
    RISK_APPROVES = "risk_approves"  # an entry needs the risk agent's ALLOW (MODIFY_SIZE counts as approval)
    ALL = "all"  # both of the above


@dataclass(frozen=True)
class ConsensusConfig:
    rule: ConsensusRule = ConsensusRule.STRUCTURE_AGREES
    min_bias: float = 0.05  # |structure bias| needed to count as pointing somewhere
    min_confidence: float = 0.0  # tactical confidence needed for an entry


@dataclass(frozen=True, slots=True)
class ConsensusResult:
    agree: bool
    reason: str = ""


class CommunicationHub:
    """Message passing between agents through a shared context memory.

    ``publish`` stores a message and delivers it to subscribers of its sender; ``inbox`` returns the
    stacked message vectors an agent attends over, with a mask of which are present and fresh.
    """

    def __init__(
        self, max_age_ns: dict[str, int] | None = None, consensus: ConsensusConfig | None = None
    ) -> None:
        self.memory = ContextMemory(dict(max_age_ns or {}))
        self.consensus_config = consensus or ConsensusConfig()
        self._subscribers: dict[str, list[Callable[[Message], None]]] = {}
        self._inbox_bufs = {
            k: (np.zeros((len(v), MESSAGE_DIM), np.float32), np.zeros(len(v), bool))
            for k, v in COMM_SOURCES.items()
        }

    def subscribe(self, sender: str, handler: Callable[[Message], None]) -> None:
        self._subscribers.setdefault(sender, []).append(handler)

    def publish(self, msg: Message) -> None:
        if msg.sender not in AGENTS:
            raise ValueError(f"sender: unknown agent {msg.sender!r}; expected one of {AGENTS}")
        if msg.vector is not None and msg.vector.shape != (MESSAGE_DIM,):
            raise ValueError(f"vector: expected shape ({MESSAGE_DIM},), got {msg.vector.shape}")
        self.memory.put(msg)
        for handler in self._subscribers.get(msg.sender, ()):
            handler(msg)

    def inbox(self, receiver: str, now: int) -> tuple[np.ndarray, np.ndarray]:
        """(M, MESSAGE_DIM) vectors from ``receiver``'s sources and an (M,) mask of usable ones.

        A missing, stale or non-finite message is masked out (and zeroed), never passed on.
        The arrays are reused between calls: copy them to keep them.
        """
        msgs, mask = self._inbox_bufs[receiver]
        for i, sender in enumerate(COMM_SOURCES[receiver]):
            m = self.memory.get(sender)
            ok = m is not None and m.vector is not None and not self.memory.is_stale(sender, now)
            if ok and np.isfinite(m.vector).all():
                msgs[i] = m.vector
                mask[i] = True
            else:
                msgs[i] = 0.0
                mask[i] = False
        return msgs, mask

    def consensus(
        self, tactical: TacticalOutput, structure: StructureOutput | None, risk_approves: bool
    ) -> ConsensusResult:
        """May ``tactical``'s proposed entry go ahead? Exits, holds and reductions always may."""
        cfg = self.consensus_config
        action = tactical.action
        if action not in (TacticalAction.ENTER_LONG, TacticalAction.ENTER_SHORT):
            return ConsensusResult(True)
        # written as "not >=" so a NaN confidence or bias counts as disagreement, never as agreement
        if not tactical.confidence >= cfg.min_confidence:
            return ConsensusResult(False, "tactical_confidence_low")
        if cfg.rule in (ConsensusRule.STRUCTURE_AGREES, ConsensusRule.ALL):
            direction = 1.0 if action == TacticalAction.ENTER_LONG else -1.0
            if structure is None or not direction * structure.bias >= cfg.min_bias:
                return ConsensusResult(False, "structure_disagrees")
        if cfg.rule in (ConsensusRule.RISK_APPROVES, ConsensusRule.ALL) and not risk_approves:
            return ConsensusResult(False, "risk_disapproves")
        return ConsensusResult(True)
