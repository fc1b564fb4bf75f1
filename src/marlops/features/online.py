"""Online fetch of the latest agent matrices for an instrument, and pushing new ones.

An online store keeps one value per (feature view, entity): the latest row. The agents need the last
60 / 48 / 96 rows, so the online view ``matrix_windows`` holds the windows themselves: one row per
base bar with the three matrices flattened to float32 lists (plus ready flags and bar ends). A
materialization (or :func:`push_matrices`, on every bar close) leaves the latest windows in the online
store; one ``get_online_features`` call returns all three matrices of the same bar. Alternatives and the
reasons for this one: docs/features.md, "Online windows".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from marlops.features.schema import (
    ENTITY,
    WINDOW_BAR_END,
    WINDOW_FIELDS,
    WINDOW_HIGHER_END,
    WINDOW_MATRICES,
    WINDOW_VIEW,
    check_instrument,
    matrix_field,
    ready_field,
)
from marlops.features.sources import window_frame
from marlops.market.dataset import MarketDataset

if TYPE_CHECKING:
    from feast import FeatureStore

    from marlops.market.feed import FeatureSet


class OnlineFeatureError(RuntimeError):
    """The online store cannot give usable matrices for an instrument (the message says which field)."""


class MissingOnlineFeatures(OnlineFeatureError):
    pass


class StaleOnlineFeatures(OnlineFeatureError):
    pass


@dataclass(frozen=True)
class OnlineMatrices:
    """The three matrices an agent reads at the close of base bar ``bar_end`` (float32, rows oldest first)."""

    instrument: str
    bar_end: int  # ns since the epoch, UTC: the base bar whose close these describe
    higher_bar_end: int  # end of the higher bar the structure/regime windows end at (-1: none yet)
    tactical: np.ndarray  # (60, 7)
    structure: np.ndarray  # (48, 8)
    regime: np.ndarray  # (96, 11)
    ready: dict[str, bool]  # per matrix: every row warm (RingMatrix.ready)

    @property
    def matrices(self) -> dict[str, np.ndarray]:
        return {"tactical": self.tactical, "structure": self.structure, "regime": self.regime}

    @property
    def timestamp(self) -> pd.Timestamp:
        return pd.Timestamp(self.bar_end, unit="ns", tz="UTC")

    @property
    def all_ready(self) -> bool:
        return all(self.ready.values())


_REFS = [f"{WINDOW_VIEW}:{f}" for f in WINDOW_FIELDS]


def _now_ns(now: datetime | pd.Timestamp | int | None) -> int:
    if now is None:
        return pd.Timestamp(datetime.now(UTC)).value
    if isinstance(now, int | np.integer):
        return int(now)
    ts = pd.Timestamp(now)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts).value


def latest_matrices(
    store: FeatureStore,
    instrument: str,
    max_age: timedelta | None = None,
    now: datetime | pd.Timestamp | int | None = None,
    require_ready: bool = False,
) -> OnlineMatrices:
    """The latest matrices of ``instrument`` from the online store, shapes (60,7), (48,8), (96,11).

    Raises :class:`MissingOnlineFeatures` (nothing materialized or pushed for the instrument, or a field
    missing or of the wrong length), :class:`StaleOnlineFeatures` when ``max_age`` is given and the bar
    ended more than ``max_age`` before ``now`` (default: the wall clock), and :class:`OnlineFeatureError`
    when ``require_ready`` and a matrix is still in warm-up. Every message names the instrument and field.
    """
    check_instrument(instrument)
    values = store.get_online_features(features=_REFS, entity_rows=[{ENTITY: instrument}]).to_dict()
    where = f"instrument {instrument!r}"

    def get(name: str):
        v = values.get(name, [None])[0]
        if v is None:
            raise MissingOnlineFeatures(
                f"{where}: no online value for {WINDOW_VIEW}:{name} — write its sources and materialize "
                "(marlops.features.build_features), or push_matrices, first"
            )
        return v

    bar_end = int(get(WINDOW_BAR_END))
    higher_end = int(get(WINDOW_HIGHER_END))
    mats = {}
    for spec in WINDOW_MATRICES:
        name = matrix_field(spec.name)
        flat = np.asarray(get(name), np.float32)
        if flat.size != spec.rows * len(spec.columns):
            raise MissingOnlineFeatures(
                f"{where}: {WINDOW_VIEW}:{name} has {flat.size} values, expected {spec.rows}×"
                f"{len(spec.columns)} = {spec.rows * len(spec.columns)} (written by another version?)"
            )
        mats[spec.name] = flat.reshape(spec.shape)
    ready = {s.name: bool(get(ready_field(s.name))) for s in WINDOW_MATRICES}
    out = OnlineMatrices(instrument, bar_end, higher_end, ready=ready, **mats)
    if max_age is not None:
        age_ns = _now_ns(now) - bar_end
        if age_ns > pd.Timedelta(max_age).value:
            raise StaleOnlineFeatures(
                f"{where}: {WINDOW_VIEW}:{WINDOW_BAR_END} is {out.timestamp.isoformat()}, "
                f"{pd.Timedelta(age_ns, unit='ns')} old, more than max_age {max_age} — is the feed "
                "(push_matrices / materialize) running?"
            )
    if require_ready and not out.all_ready:
        cold = [ready_field(k) for k, v in ready.items() if not v]
        raise OnlineFeatureError(
            f"{where}: {', '.join(f'{WINDOW_VIEW}:{c}' for c in cold)} false at {out.timestamp.isoformat()} "
            "(the window still holds warm-up rows)"
        )
    return out


def push_matrices(
    store: FeatureStore,
    data: MarketDataset | FeatureSet,
    instrument: str,
    index: int = -1,
) -> int:
    """Write the matrices at the close of base bar ``index`` (default: the last) to the online store.

    The live path: call it at every base bar close instead of rewriting the sources and materializing.
    Returns the bar end (ns). The online store keeps the row with the newest event timestamp.
    """
    fs = data.features if isinstance(data, MarketDataset) else data
    n = len(fs.base)
    i = index + n if index < 0 else index
    if not 0 <= i < n:
        raise IndexError(f"push_matrices: base bar index {index} out of range for {n} bars")
    frame = window_frame(fs, instrument, np.array([i]))
    store.write_to_online_store(WINDOW_VIEW, frame)
    return int(frame[WINDOW_BAR_END].iloc[0])
