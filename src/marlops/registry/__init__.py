"""MLflow glue: logging training runs, registering the four agents, aliases and the promotion gate.

MLflow takes seconds to import, so this package imports it only when a name that needs it is first
used (``gate``, ``folders`` and ``config`` never do). docs/registry.md describes the whole flow.

- where: :class:`TrackingConfig`, :func:`resolve_tracking` (embedded sqlite + local artifacts by default)
- log: :func:`log_training_run`, :func:`log_evaluation`
- register: :func:`register_agents`, :func:`register_run` (log + register + challenger)
- aliases: :func:`promote`, :func:`rollback`, :func:`list_models`
- gate: :class:`GateConfig`, :func:`evaluate_gate` (pure)
- serving: :func:`model_uri`, :func:`download_agent`, :func:`download_team`; the pyfunc format in
  :mod:`marlops.registry.onnx_model`
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "config": (
        "DEFAULT_EXPERIMENT",
        "MLFLOW_DIR_ENV",
        "TrackingConfig",
        "embedded_config",
        "resolve_tracking",
    ),
    "folders": (
        "AGENTS",
        "Evaluation",
        "RegistryError",
        "TrainingRun",
        "read_evaluation",
        "read_run",
        "team_id",
    ),
    "gate": ("GateConfig", "GateDecision", "evaluate_gate"),
    "tracking": ("log_evaluation", "log_training_run"),
    "models": (
        "CHALLENGER",
        "CHAMPION",
        "RegisteredAgent",
        "Registration",
        "model_name",
        "model_uri",
        "register_agents",
        "register_run",
    ),
    "aliases": (
        "PromotionResult",
        "RegistryListing",
        "RollbackResult",
        "VersionRow",
        "alias_team",
        "download_agent",
        "download_team",
        "list_models",
        "promote",
        "rollback",
    ),
    "onnx_model": ("AgentModel",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'marlops.registry' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"marlops.registry.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
