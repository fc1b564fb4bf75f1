"""Training through Feast: a dataset's feature rows read back from the offline store for the train step.

The agents' matrices are windows over per-bar feature rows (tactical: the last 60 base rows; structure
and regime: the last 48 / 96 higher rows). Here the rows come from the offline store through the ``risk``
feature service, every matrix's row view (the online ``matrices`` windows are built from the same rows),
joined point-in-time to one entity row per bar end of the dataset: base bar ends for the tactical view,
higher bar ends for the structure and regime views. A row's event timestamp is its bar's end, so each join
must return exactly that bar's row; this is checked on the ``*_bar_end`` field of every row, and an error
names the view, the field and the bar. The sources hold the rows as Float64, so the windows built from
them are the dataset path's bit for bit (tests/test_feast_training.py).

Two ways to join, the same rows: ``get_historical_features`` ("historical"), which Feast's file store
answers in O(n·m) per instrument (every entity row × every source row: ~2 min for a month of 5 m bars,
hours for a year), and "scan" (the default): the views' rows read through the same offline store and
joined with Feast's rule in O(n log n) (:func:`marlops.features.offline.scan_view`).

Why not the window view itself: its offline copy keeps only the latest day of windows (1,860 float32 per
base bar: ~0.8 GB per year of 5 m bars), and the windows are a function of these rows.

The rows are cached per (instrument, data hash, feature service fingerprint) in ``FEAST_DIR/data/training/``:
a rerun or a retried train step reads one file instead of joining again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from marlops.features.offline import entity_frame, join_view, scan_view
from marlops.features.schema import (
    BASE_SOURCE,
    DATA_DIR,
    DEFAULT_INSTRUMENT,
    HIGHER_SOURCE,
    REGIME_VIEW,
    ROW_FEATURES,
    ROW_VIEWS,
    STRUCTURE_VIEW,
    TACTICAL_VIEW,
    bar_end_field,
    check_instrument,
    feast_dir,
    warm_field,
)
from marlops.features.sources import source_file
from marlops.market.dataset import MarketDataset, dataset_hash
from marlops.market.feed import FeatureSet

if TYPE_CHECKING:
    from feast import FeatureStore

TRAINING_SERVICE = "risk"  # every matrix's rows: what each agent reads, and what the online windows hold
CACHE_DIR = f"{DATA_DIR}/training"
METHODS = ("scan", "historical")
_MATRIX_OF_VIEW = {view: matrix for matrix, view in ROW_VIEWS.items()}
_HIGHER_VIEWS = (STRUCTURE_VIEW, REGIME_VIEW)  # rows per higher bar; tactical's per base bar

log = logging.getLogger(__name__)


class TrainingDataError(RuntimeError):
    """The Feast store cannot give a dataset's rows (the message names the view, the field and the bar)."""


@dataclass(frozen=True)
class TrainingRows:
    """Per matrix (tactical, structure, regime): its feature rows (n, C) float64 and warm flags (n,)."""

    rows: dict[str, np.ndarray]
    warm: dict[str, np.ndarray]


@dataclass(frozen=True)
class TrainingSource:
    """Where a run's feature rows came from: what the lineage records (reproducible from Feast alone)."""

    source: str  # "feast"
    feast_dir: str
    instrument: str
    service: str
    service_fingerprint: str  # the registered service and its views (see :func:`service_fingerprint`)
    data_hash: str  # the dataset folder's hash (marlops.market.dataset.dataset_hash)
    method: str  # how a miss joined: "scan" or "historical" (read_rows)
    cache: str  # "hit": read from the cache file, "miss": joined in the offline store (and cached)
    cache_file: str
    seconds: float  # to get the rows (join or cache read), fingerprint and hash included

    def record(self) -> dict[str, Any]:
        return asdict(self)


def service_fingerprint(store: FeatureStore, service: str = TRAINING_SERVICE) -> str:
    """SHA-256 (16 hex) over the registered feature service's spec and the specs of its views: the
    definitions a training set was read with, as the store's registry holds them (the data sources'
    registration times left out, so stores with the same definitions share it)."""
    fs = store.get_feature_service(service)
    views = [store.get_feature_view(p.name) for p in fs.feature_view_projections]
    return _digest([fs.to_proto().spec, *(v.to_proto().spec for v in views)])


def definitions_fingerprint(service: str = TRAINING_SERVICE) -> str:
    """:func:`service_fingerprint` of the code's definitions (marlops.features.definitions)."""
    from marlops.features.definitions import FEATURE_SERVICES, FEATURE_VIEWS

    fs = FEATURE_SERVICES[service]
    views = [FEATURE_VIEWS[p.name] for p in fs.feature_view_projections]
    return _digest([fs.to_proto().spec, *(v.to_proto().spec for v in views)])


def _digest(specs: list[Any]) -> str:
    h = hashlib.sha256()
    for spec in sorted((_without_source_meta(s) for s in specs), key=lambda s: s.name):
        h.update(spec.SerializeToString(deterministic=True))
    return h.hexdigest()[:16]


def _without_source_meta(message: Any) -> Any:
    """A copy with every DataSource's ``meta`` (created/updated timestamps) cleared."""
    out = type(message)()
    out.CopyFrom(message)
    _clear_source_meta(out)
    return out


def _repeated(field: Any) -> bool:
    r = getattr(field, "is_repeated", None)  # newer protobuf (``label`` is deprecated there)
    if r is None:
        return field.label == field.LABEL_REPEATED
    return bool(r() if callable(r) else r)


def _clear_source_meta(message: Any) -> None:
    if message.DESCRIPTOR.full_name == "feast.core.DataSource" and message.HasField("meta"):
        message.ClearField("meta")
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if _repeated(field):
            if field.message_type.GetOptions().map_entry:
                continue
            for item in value:
                _clear_source_meta(item)
        else:
            _clear_source_meta(value)


def read_rows(
    store: FeatureStore,
    instrument: str,
    base_end: np.ndarray,
    higher_end: np.ndarray,
    service: str = TRAINING_SERVICE,
    method: str = "scan",
) -> TrainingRows:
    """The rows of every bar: point-in-time joins over ``service``'s views at the bars' ends (int64 ns).

    ``method``: "historical" joins with Feast's ``get_historical_features`` (:func:`join_view`: O(n·m) in
    the file store, minutes for a month of bars), "scan" reads the views' rows through the same offline
    store and joins them with the same rule (:func:`scan_view`: O(n log n); the default).

    Raises :class:`TrainingDataError` where a bar has no row or a later/earlier bar's row was joined
    (the store holds other data for the instrument than these bars).
    """
    check_instrument(instrument)
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    ends = {TACTICAL_VIEW: np.asarray(base_end, np.int64)}
    ends.update({v: np.asarray(higher_end, np.int64) for v in _HIGHER_VIEWS})
    projections = store.get_feature_service(service).feature_view_projections
    absent = set(ROW_VIEWS.values()) - {p.name for p in projections}
    if absent:
        raise TrainingDataError(f"feature service {service!r} lacks the view(s) {', '.join(sorted(absent))}")
    rows: dict[str, np.ndarray] = {}
    warm: dict[str, np.ndarray] = {}
    for projection in projections:
        view = projection.name_to_use()
        matrix = _MATRIX_OF_VIEW.get(projection.name)
        if matrix is None:
            raise TrainingDataError(
                f"feature service {service!r}: view {view!r} holds no matrix rows "
                f"(expected views of {', '.join(ROW_VIEWS.values())})"
            )
        t = ends[projection.name]
        _check_source(store, projection.name)
        keys = entity_frame(instrument, t)
        if method == "scan":
            got = scan_view(store, keys, projection.name, [f.name for f in projection.features])
        else:
            got = join_view(store, keys, view, [f"{view}:{f.name}" for f in projection.features])
        _check_bar_ends(got, view, matrix, instrument, t)
        names = ROW_FEATURES[matrix]
        missing = [c for c in (*names, warm_field(matrix)) if c not in got.columns]
        if missing:
            raise TrainingDataError(f"{view}: the service gives no field {', '.join(missing)}")
        flags = got[warm_field(matrix)]
        if flags.isna().any():
            i = int(np.flatnonzero(flags.isna().to_numpy())[0])
            raise TrainingDataError(f"{view}: {warm_field(matrix)} missing at bar end {_iso(t[i])}")
        rows[matrix] = got[list(names)].to_numpy(np.float64)
        warm[matrix] = flags.to_numpy(bool)
    return TrainingRows(rows, warm)


def _check_source(store: FeatureStore, view: str) -> None:
    folder = Path(store.config.repo_path) / store.get_feature_view(view).batch_source.path
    if not any(folder.glob("*.parquet")):
        raise TrainingDataError(f"{view}: its source {folder} holds no rows (build the store from the data)")


def _check_bar_ends(got: pd.DataFrame, view: str, matrix: str, instrument: str, t: np.ndarray) -> None:
    field = bar_end_field(matrix)
    if field not in got.columns:
        raise TrainingDataError(f"{view}: the service gives no field {field}")
    joined = got[field]
    none = joined.isna().to_numpy()
    if none.any():
        i = int(np.flatnonzero(none)[0])
        raise TrainingDataError(
            f"{view}: {field}: no row for instrument {instrument!r} at bar end {_iso(t[i])} "
            f"({int(none.sum())} of {len(t)} bars): the store was not built from this dataset"
        )
    wrong = joined.to_numpy(np.int64) != t
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise TrainingDataError(
            f"{view}: {field}: the row joined at bar end {_iso(t[i])} is the bar ending "
            f"{_iso(joined.iloc[i])} ({int(wrong.sum())} of {len(t)} bars): the store holds other bars "
            f"for instrument {instrument!r} than this dataset"
        )


def _iso(ns: Any) -> str:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat()


def feature_set(rows: TrainingRows, base: pd.DataFrame, higher: pd.DataFrame) -> FeatureSet:
    """A FeatureSet over the dataset's bars with the rows read from Feast (what the environment reads)."""
    for matrix, n in (("tactical", len(base)), ("structure", len(higher)), ("regime", len(higher))):
        if len(rows.rows[matrix]) != n:
            raise TrainingDataError(f"{matrix}: {len(rows.rows[matrix])} rows for {n} bars")
    r, w = rows.rows, rows.warm
    return FeatureSet(
        base, higher, r["tactical"], w["tactical"], r["structure"], w["structure"], r["regime"], w["regime"]
    )


def source_digests(directory: str | os.PathLike[str] | None, instrument: str) -> dict[str, str]:
    """SHA-256 of the instrument's row sources (base and higher bars): the build step records them, the
    train step checks them, so rows another dataset wrote for the same instrument are never read."""
    out = {}
    for source in (BASE_SOURCE, HIGHER_SOURCE):
        path = source_file(source, instrument, directory)
        out[source] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""
    return out


def check_sources(
    directory: str | os.PathLike[str] | None, instrument: str, expected: dict[str, str]
) -> None:
    now = source_digests(directory, instrument)
    for source, digest in expected.items():
        if now.get(source) != digest:
            raise TrainingDataError(
                f"feature_sources.{source}: {source_file(source, instrument, directory)} is not the file the "
                f"build step wrote for this dataset (sha256 {now.get(source, '')[:12] or 'absent'}, "
                f"recorded {digest[:12]}): another dataset was written for instrument {instrument!r} since; "
                "rebuild the features from this dataset"
            )


# ----------------------------------------------------------------------------------------------- cache


def cache_file(
    directory: str | os.PathLike[str] | None, instrument: str, data: str, fingerprint: str
) -> Path:
    return feast_dir(directory) / CACHE_DIR / f"{check_instrument(instrument)}-{data[:16]}-{fingerprint}.npz"


def _save(path: Path, rows: TrainingRows, base_end: np.ndarray, higher_end: np.ndarray) -> None:
    arrays = {"base_end": base_end, "higher_end": higher_end}
    for m in rows.rows:
        arrays[f"{m}_rows"], arrays[f"{m}_warm"] = rows.rows[m], rows.warm[m]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # atomic: a parallel worker never reads half
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _load(path: Path, base_end: np.ndarray, higher_end: np.ndarray) -> TrainingRows | None:
    """The cached rows, None when absent or not for these bars (then they are joined again)."""
    if not path.exists():
        return None
    with np.load(path) as z:
        if not (np.array_equal(z["base_end"], base_end) and np.array_equal(z["higher_end"], higher_end)):
            return None
        ms = ROW_VIEWS.keys()
        return TrainingRows({m: z[f"{m}_rows"] for m in ms}, {m: z[f"{m}_warm"] for m in ms})


def feast_features(
    base: pd.DataFrame,
    higher: pd.DataFrame,
    data_hash: str,
    directory: str | os.PathLike[str] | None = None,
    instrument: str = DEFAULT_INSTRUMENT,
    service: str = TRAINING_SERVICE,
    cache: bool = True,
    method: str = "scan",
    sources: dict[str, str] | None = None,
) -> tuple[FeatureSet, TrainingSource]:
    """The FeatureSet of these bars with every feature row read from the Feast store in ``directory``.

    ``data_hash`` names the data in the cache key. ``cache``: read/write the cache file. ``method``:
    :func:`read_rows` (both give the same rows, so the cache does not depend on it). ``sources``: the
    :func:`source_digests` the build step recorded; checked before the store is read.
    """
    from marlops.features.repo import open_store

    start = time.perf_counter()
    check_instrument(instrument)
    base_end = base["end"].to_numpy(np.int64)
    higher_end = higher["end"].to_numpy(np.int64)
    store = open_store(directory)
    try:
        fingerprint = service_fingerprint(store, service)
    except Exception as e:  # feast raises its own "not found" types
        raise TrainingDataError(
            f"feature service {service!r} is not registered in {feast_dir(directory)} ({e}); "
            "build the store from this dataset first (the pipeline's build step)"
        ) from e
    code = definitions_fingerprint(service)
    if fingerprint != code:  # the online path serves the code's definitions: train on the same
        raise TrainingDataError(
            f"feature service {service!r} in {feast_dir(directory)} is not the code's definition "
            f"(fingerprint {fingerprint}, code {code}): apply them (the pipeline's build step) first"
        )
    path = cache_file(directory, instrument, data_hash, fingerprint)
    rows = _load(path, base_end, higher_end) if cache else None
    hit = rows is not None
    if rows is None:
        if sources:
            check_sources(directory, instrument, sources)
        rows = read_rows(store, instrument, base_end, higher_end, service, method)
        if cache:
            try:
                _save(path, rows, base_end, higher_end)
            except OSError as e:  # a read-only store (a TrainJob's pods mount it so): train without the cache
                log.warning("training rows not cached at %s: %s", path, e)
    src = TrainingSource(
        "feast",
        str(feast_dir(directory)),
        instrument,
        service,
        fingerprint,
        data_hash,
        method,
        "hit" if hit else "miss",
        str(path),
        time.perf_counter() - start,
    )
    return feature_set(rows, base, higher), src


def load_dataset(
    path: str | os.PathLike[str],
    directory: str | os.PathLike[str] | None = None,
    instrument: str | None = None,
    service: str = TRAINING_SERVICE,
    cache: bool = True,
    method: str = "scan",
) -> tuple[MarketDataset, TrainingSource]:
    """A dataset folder whose feature rows come from Feast (its bars, labels and meta from the folder).

    ``instrument``: default the folder's lineage.json entry (the pipeline's build step), else SYNTH.
    The data hash in the cache key and the record is the folder's (:func:`dataset_hash`); where the
    lineage records the sources' digests (``feature_sources``), the store's files must still be those.
    """
    lineage = _lineage(Path(path))
    instrument = instrument or lineage.get("instrument") or DEFAULT_INSTRUMENT
    sources = lineage.get("feature_sources") if lineage.get("instrument", instrument) == instrument else None
    digest = dataset_hash(path)
    got: list[TrainingSource] = []

    def from_feast(base: pd.DataFrame, higher: pd.DataFrame) -> FeatureSet:
        fs, src = feast_features(base, higher, digest, directory, instrument, service, cache, method, sources)
        got.append(src)
        return fs

    ds = MarketDataset.load(path, features=from_feast)
    return ds, got[0]


def _lineage(path: Path) -> dict[str, Any]:
    import json

    p = Path(path) / "lineage.json"  # the pipeline's build step: data hash, instrument, feature views
    return json.loads(p.read_text()) if p.exists() else {}
