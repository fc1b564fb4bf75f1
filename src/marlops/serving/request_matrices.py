"""The matrices a decision request is served with: its own (checked), or the Feast online store's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from marlops.serving.decision_request import DecisionRequest
from marlops.serving.tensors import InputError, check_matrix

MATRIX_NAMES: tuple[str, ...] = ("tactical", "structure", "regime")


class FeatureFetchError(Exception):
    """The online store gave no usable matrices (``kind``: missing | stale | error)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class FetchedMatrices:
    bar_end: int
    higher_bar_end: int
    matrices: dict[str, np.ndarray]
    ready: dict[str, bool]


MatrixFetcher = Callable[[str], FetchedMatrices]  # instrument -> latest matrices (blocking; run in a thread)


async def request_matrices(
    req: DecisionRequest, clocks: tuple[str, str, str], fetch: MatrixFetcher | None
) -> tuple[dict[str, np.ndarray] | None, dict[str, bool], list[str]]:
    """(matrices the clock needs or None, readiness, faults). A request that cannot be served as sent
    raises :class:`InputError`; the store's problems become faults (``features:missing`` …)."""
    tick, base, higher = clocks
    ready = {"tactical": True, "structure": True, "regime": True, **(req.ready or {})}
    if req.clock == tick:
        return None, ready, []
    need = ("tactical",) if req.clock == base else MATRIX_NAMES
    if req.matrices is not None:
        unknown = sorted(set(req.matrices) - set(MATRIX_NAMES))
        if unknown:
            raise InputError(f"matrices.{unknown[0]}", "unknown matrix; expected tactical, structure, regime")
        for name in need:
            if name not in req.matrices:
                raise InputError(f"matrices.{name}", f"missing (required for a {req.clock} decision)")
        return {n: check_matrix(n, req.matrices[n]) for n in need}, ready, []
    if fetch is None:
        raise InputError(
            "matrices",
            "required: this server has no Feast store to fetch them from (start it with --feast-repo)",
        )
    try:
        got = await asyncio.to_thread(fetch, req.instrument)
    except FeatureFetchError as e:
        return None, ready, [f"features:{e.kind}"]
    faults = []
    if got.bar_end != req.ts or (req.clock == higher and got.higher_bar_end != req.ts):
        faults.append("features:stale")  # the store has not caught up with this bar (or is ahead of it)
    ready = {**ready, **got.ready} if req.ready is None else ready
    return {n: got.matrices[n] for n in need}, ready, faults
