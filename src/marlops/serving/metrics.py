"""Prometheus metrics of the serving processes, on each server's HTTP port at ``/metrics``.

KServe serves the default ``prometheus_client`` registry there (with its own request histograms), so
these are registered in it. Label values are bounded: clocks, agent names, override and fault kinds
(the part before any exception name), never free text.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# from 0.25 ms to 1 s: the goals are 2 / 4 / 10 ms, the per-agent timeouts default to 50-100 ms
_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
    0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

DECISION_LATENCY = Histogram(
    "marlops_decision_latency_seconds",
    "Decision server time per decision (request parsed to response built), by clock.",
    ["clock"],
    buckets=_BUCKETS,
)
AGENT_LATENCY = Histogram(
    "marlops_agent_latency_seconds",
    "Agent inference time: in an agent server its own work, in the decision server the call as seen "
    "from there (network included).",
    ["agent"],
    buckets=_BUCKETS,
)
RISK_OVERRIDES = Counter(
    "marlops_risk_overrides_total",
    "Decisions changed by a gate, by kind (risk:force_exit, limit:max_leverage, consensus:…, fail_closed …).",
    ["kind"],
)
FAIL_CLOSED = Counter(
    "marlops_fail_closed_total",
    "Fail-closed decisions, once per reason (tactical:timeout, regime:stale, features:missing …).",
    ["reason"],
)
MODEL_INFO = Gauge("marlops_model_info", "The agent version served (value 1).", ["agent", "version"])
MODEL_LOADED = Gauge(
    "marlops_model_loaded_timestamp_seconds", "When the agent's model was loaded (Unix time).", ["agent"]
)


@functools.cache
def agent_latency(agent: str) -> Any:
    """The agent's histogram child (looked up once: ``labels()`` costs more than ``observe()``)."""
    return AGENT_LATENCY.labels(agent=agent)


@functools.cache
def decision_latency(clock: str) -> Any:
    return DECISION_LATENCY.labels(clock=clock)


def model_loaded(agent: str, version: str) -> None:
    MODEL_INFO.labels(agent=agent, version=version).set(1)
    MODEL_LOADED.labels(agent=agent).set(time.time())


def kind(label: str) -> str:
    """``"tactical:error:ConnectError"`` → ``"tactical:error"``: bounded label values."""
    return ":".join(label.split(":")[:2])


def record_decision(clock: str, seconds: float, overrides: tuple[str, ...], reasons: tuple[str, ...]) -> None:
    decision_latency(clock).observe(seconds)
    for o in overrides:
        RISK_OVERRIDES.labels(kind=kind(o)).inc()
    for r in reasons:
        FAIL_CLOSED.labels(reason=kind(r)).inc()
