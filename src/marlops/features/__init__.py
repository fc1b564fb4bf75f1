"""Feast glue: the feature repo's definitions, its sources, training sets and the online matrices.

Importing Feast takes seconds, so this package imports it only when a Feast-backed name is first used
(``schema`` and ``sources`` never do). docs/features.md describes the repo and every function here.

- sources: :func:`write_sources` (Parquet from a MarketDataset), :func:`windows_at`
- store: :func:`open_store`, :func:`init_repo`, :func:`apply`, :func:`materialize`, :func:`build_features`
- training sets: :func:`entity_frame`, :func:`training_set` (point-in-time join)
- online: :func:`latest_matrices`, :func:`push_matrices`, :class:`OnlineMatrices`
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "schema": (
        "AGENT_SERVICES",
        "ENTITY",
        "EVENT_TIMESTAMP",
        "FEAST_DIR_ENV",
        "ONLINE_ENV",
        "ONLINE_SERVICE",
        "PROJECT",
        "feast_dir",
    ),
    "sources": ("Windows", "source_time_range", "windows_at", "write_sources"),
    "repo": (
        "BuildResult",
        "apply",
        "build_features",
        "init_repo",
        "materialize",
        "online_store_config",
        "open_store",
        "render_feature_store_yaml",
        "repo_config",
        "view_fingerprints",
    ),
    "offline": ("entity_frame", "training_set"),
    "online": (
        "MissingOnlineFeatures",
        "OnlineFeatureError",
        "OnlineMatrices",
        "StaleOnlineFeatures",
        "latest_matrices",
        "push_matrices",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'marlops.features' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"marlops.features.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
