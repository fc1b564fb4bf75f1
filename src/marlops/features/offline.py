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


def join_view(
    store: FeatureStore,
    keys: pd.DataFrame,
    view: str,
    refs: list[str],
    full_feature_names: bool = False,
) -> pd.DataFrame:
    """One view's features (``refs``) joined point-in-time to ``keys`` (instrument, event_timestamp): the
    feature columns only, one row per key row in order (index 0..n-1), missing where no row is known at t.

    One query per view: Feast's file (dask) store drops an entity row entirely when a view has rows for
    the instrument but none at or before t (it keeps only rows without any match), which would also lose
    another view's values. Per view, such rows come back missing and are re-added here.
    """
    q = keys[[ENTITY, EVENT_TIMESTAMP]].reset_index(drop=True).assign(**{_ROW: np.arange(len(keys))})
    with warnings.catch_warnings():  # dask's pandas-deprecation noise, nothing of ours
        warnings.simplefilter("ignore", FutureWarning)
        got = store.get_historical_features(
            entity_df=q, features=refs, full_feature_names=full_feature_names
        ).to_df()
    if got[_ROW].duplicated().any():  # never expected: one row per entity row and view
        raise RuntimeError(f"training set: {view} joined an entity row twice")
    got = got.set_index(_ROW).drop(columns=[ENTITY, EVENT_TIMESTAMP])
    return got.reindex(pd.RangeIndex(len(q)))


def scan_view(store: FeatureStore, keys: pd.DataFrame, view: str, fields: list[str]) -> pd.DataFrame:
    """:func:`join_view`'s result (same rows, same point-in-time rule) in O(n log n) instead of O(n·m).

    Feast's file (dask) store merges every entity row with every source row of its instrument before
    the time filter: n entity rows × m source rows per view, ~1.5 µs each here, so a year of 5 m bars
    (10⁵ × 10⁵) would take hours (docs/features.md, "Training through Feast"). This reads the view's
    rows through the same offline store (``pull_all_from_table_or_query`` over the view's registered
    source, event timestamps in [min t − ttl, max t]) and applies the rule itself: per entity row the
    latest row with t − ttl ≤ event timestamp ≤ t. Tests compare it with :func:`join_view`.
    """
    from feast.infra.offline_stores.offline_utils import get_offline_store_from_config

    q = keys[[ENTITY, EVENT_TIMESTAMP]].reset_index(drop=True)
    q = q.assign(**{EVENT_TIMESTAMP: _utc(q[EVENT_TIMESTAMP]).astype("datetime64[ns, UTC]")})
    fv = store.get_feature_view(view)
    src, ttl = fv.batch_source, fv.ttl
    if len(q) == 0:
        return pd.DataFrame(index=pd.RangeIndex(0), columns=fields)
    lo, hi = q[EVENT_TIMESTAMP].min(), q[EVENT_TIMESTAMP].max()
    offline = get_offline_store_from_config(store.config.offline_store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        rows = offline.pull_all_from_table_or_query(
            config=store.config,
            data_source=src,
            join_key_columns=[ENTITY],
            feature_name_columns=fields,
            timestamp_field=src.timestamp_field,
            start_date=(lo - ttl).to_pydatetime() if ttl else None,
            end_date=hi.to_pydatetime(),
        ).to_df()
    ts = "__marlops_ts"
    rows = rows[rows[ENTITY].isin(set(q[ENTITY]))].rename(columns={src.timestamp_field: ts})
    rows[ts] = pd.to_datetime(rows[ts], utc=True).astype("datetime64[ns, UTC]")
    rows = rows.sort_values(ts, kind="stable")
    left = q.assign(**{_ROW: np.arange(len(q))}).sort_values(EVENT_TIMESTAMP, kind="stable")
    got = pd.merge_asof(
        left,
        rows[[ENTITY, ts, *fields]],
        left_on=EVENT_TIMESTAMP,
        right_on=ts,
        by=ENTITY,
        direction="backward",  # the latest row at or before t
        allow_exact_matches=True,
        tolerance=pd.Timedelta(ttl) if ttl else None,  # t − ttl ≤ event timestamp, as Feast's ttl filter
    )
    return got.set_index(_ROW).sort_index()[fields].reindex(pd.RangeIndex(len(q)))


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
    keys = df[[ENTITY, EVENT_TIMESTAMP]]
    parts = [df]
    for projection in store.get_feature_service(service).feature_view_projections:
        refs = [f"{projection.name_to_use()}:{f.name}" for f in projection.features]
        parts.append(join_view(store, keys, projection.name_to_use(), refs, full_feature_names))
    out = pd.concat(parts, axis=1)
    for col in out.columns[len(df.columns) :]:  # keep ints and flags exact where rows are missing
        if col.endswith("_bar_end"):
            out[col] = out[col].astype("Int64")
        elif col.endswith("_warm"):
            out[col] = out[col].astype("boolean")
    return out
