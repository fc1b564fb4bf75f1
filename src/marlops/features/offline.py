"""Point-in-time-correct training sets from the offline store (Feast ``get_historical_features``).

For an entity row (instrument, t) every feature view contributes its latest row with
``t - ttl ≤ event timestamp ≤ t``; the event timestamp of a row is its bar's end, the instant the bar
closed and the row became known. So a row of a bar still open at t, or of any later bar, is never
joined, and rewriting the data after t cannot change the features at t (tests/test_features.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from marlops.features.schema import AGENT_SERVICES, ENTITY, EVENT_TIMESTAMP, check_instrument

if TYPE_CHECKING:
    from feast import FeatureStore

_ROW = "__marlops_row"


def _utc(ts: Sequence | np.ndarray | pd.Series | pd.DatetimeIndex) -> pd.Series:
    s = pd.Series(ts)
    if pd.api.types.is_integer_dtype(s.dtype):
        return pd.Series(pd.to_datetime(s.to_numpy(np.int64), unit="ns", utc=True))
    out = pd.to_datetime(s, utc=True)
    return out.reset_index(drop=True)


def entity_frame(
    instrument: str | Sequence[str], timestamps: Sequence | np.ndarray | pd.Series
) -> pd.DataFrame:
    """Entity rows for :func:`training_set`: ``instrument`` (one id, or one per row) and
    ``event_timestamp`` (int ns since the epoch, datetimes or ISO strings; naive = UTC)."""
    ts = _utc(timestamps)
    ids = [instrument] * len(ts) if isinstance(instrument, str) else list(instrument)
    if len(ids) != len(ts):
        raise ValueError(f"entity_frame: {len(ids)} instruments for {len(ts)} timestamps")
    for i in set(ids):
        check_instrument(i)
    return pd.DataFrame({ENTITY: ids, EVENT_TIMESTAMP: ts})


def training_set(
    store: FeatureStore,
    entities: pd.DataFrame,
    service: str = "risk",
    full_feature_names: bool = False,
) -> pd.DataFrame:
    """The features of an agent's feature service, joined point-in-time to ``entities``.

    ``entities`` needs the columns ``instrument`` and ``event_timestamp`` (see :func:`entity_frame`);
    other columns (labels, say) pass through. The result has one row per entity row, in the same
    order. Where no row is known at t (before the first bar, or older than the views' ttl) the
    features are missing (NaN / None). ``service``: regime, structure, tactical or risk (all three).
    """
    if service not in AGENT_SERVICES:
        raise ValueError(f"service {service!r}: expected one of {', '.join(AGENT_SERVICES)}")
    missing = {ENTITY, EVENT_TIMESTAMP} - set(entities.columns)
    if missing:
        raise ValueError(f"entity rows lack the column(s) {', '.join(sorted(missing))}")
    df = entities.reset_index(drop=True).copy()
    df[EVENT_TIMESTAMP] = _utc(df[EVENT_TIMESTAMP])
    keys = df[[ENTITY, EVENT_TIMESTAMP]].assign(**{_ROW: np.arange(len(df))})
    # One query per view: Feast's file (dask) store drops an entity row entirely when a view has rows
    # for the instrument but none at or before t (it keeps only rows without any match), which would
    # also lose the other views' values. Per view, such rows come back missing and are re-added here.
    parts = [df]
    for projection in store.get_feature_service(service).feature_view_projections:
        refs = [f"{projection.name_to_use()}:{f.name}" for f in projection.features]
        with warnings.catch_warnings():  # dask's pandas-deprecation noise, nothing of ours
            warnings.simplefilter("ignore", FutureWarning)
            got = store.get_historical_features(
                entity_df=keys, features=refs, full_feature_names=full_feature_names
            ).to_df()
        if got[_ROW].duplicated().any():  # never expected: one row per entity row and view
            raise RuntimeError(f"training set: {projection.name_to_use()} joined an entity row twice")
        got = got.set_index(_ROW).drop(columns=[ENTITY, EVENT_TIMESTAMP])
        parts.append(got.reindex(pd.RangeIndex(len(df))))
    out = pd.concat(parts, axis=1)
    for col in out.columns[len(df.columns) :]:  # keep ints and flags exact where rows are missing
        if col.endswith("_bar_end"):
            out[col] = out[col].astype("Int64")
        elif col.endswith("_warm"):
            out[col] = out[col].astype("boolean")
    return out
