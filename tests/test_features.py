"""The Feast feature layer (marlops.features) for real: sources, apply, materialize, point-in-time
training sets, online matrices. Stores live in temp folders with the embedded sqlite online store."""

from __future__ import annotations

import dataclasses
import runpy
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marlops.features import schema
from marlops.features.sources import source_time_range, windows_at, write_sources
from marlops.market.dataset import MarketDataset, feature_frames
from marlops.market.feed import FeatureSet
from marlops.market.matrices import MATRIX_SPECS, ready_mask, window
from synthetic_datasets import make_dataset

ROOT = Path(__file__).resolve().parents[1]
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> MarketDataset:
    return make_dataset(tmp_path_factory.mktemp("ds_a"), 4, seed=2)


@pytest.fixture(scope="module")
def ds_b(tmp_path_factory) -> MarketDataset:
    return make_dataset(tmp_path_factory.mktemp("ds_b"), 2, seed=7)


@pytest.fixture(scope="module")
def store(tmp_path_factory, ds, ds_b):
    """Instrument AAA via build_features (all windows, materialized to the end); BBB via the parts."""
    from marlops.features import apply, build_features, materialize, open_store

    root = tmp_path_factory.mktemp("feast")
    res = build_features(ds.path, "AAA", root, window_bars=None)
    assert res.directory == root.resolve() and res.online == "sqlite" and res.materialized is not None
    st = open_store(root)
    write_sources(ds_b, "BBB", root, window_bars=5)
    apply(st)
    materialize(st)
    return st


def expected_rows(fs: FeatureSet, t_ns: np.ndarray) -> dict[str, np.ndarray]:
    """Index of the row a point-in-time join must pick at each t (-1: none): latest bar end ≤ t."""
    b = np.searchsorted(fs.base["end"].to_numpy(), t_ns, side="right") - 1
    h = np.searchsorted(fs.higher["end"].to_numpy(), t_ns, side="right") - 1
    return {"tactical": b, "structure": h, "regime": h}


def feature_rows(fs: FeatureSet) -> dict[str, np.ndarray]:
    return {"tactical": fs.tactical, "structure": fs.structure, "regime": fs.regime}


# --- the repo and its definitions --------------------------------------------------------------------


def test_committed_feature_repo_is_the_generated_one() -> None:
    from marlops.features.repo import DEFINITIONS_PY, render_feature_store_yaml

    assert (ROOT / "feature_repo/feature_store.yaml").read_text() == render_feature_store_yaml()
    assert (ROOT / "feature_repo/definitions.py").read_text() == DEFINITIONS_PY
    assert (ROOT / "feature_repo/.gitignore").read_text().split() == ["data/"]


def test_feast_cli_finds_every_object(monkeypatch) -> None:
    """What `feast -c feature_repo apply` would register is exactly what the package applies."""
    from feast.repo_operations import parse_repo

    from marlops.features.definitions import OBJECTS

    # as the feast CLI does: run from the repo folder with it on sys.path
    monkeypatch.chdir(ROOT / "feature_repo")
    monkeypatch.syspath_prepend(str(ROOT / "feature_repo"))
    try:
        contents = parse_repo(ROOT / "feature_repo")
    finally:
        sys.modules.pop("definitions", None)
    found = {
        (type(o).__name__, o.name)
        for group in (
            contents.entities,
            contents.data_sources,
            contents.feature_views,
            contents.feature_services,
        )
        for o in group
        if o.name != "__dummy"  # Feast's placeholder entity for entity-less views
    }
    assert found == {(type(o).__name__, o.name) for o in OBJECTS}
    ns = runpy.run_path(str(ROOT / "feature_repo/definitions.py"))
    assert {"instrument", "risk_service", "matrix_windows"} <= set(ns)


def test_views_and_services_follow_the_market_columns() -> None:
    from marlops.features.definitions import FEATURE_SERVICES, FEATURE_VIEWS

    for matrix, view in schema.ROW_VIEWS.items():
        names = [f.name for f in FEATURE_VIEWS[view].features]
        cols = [f"{matrix}_{c.name}" for c in MATRIX_SPECS[matrix].columns]
        assert names == [*cols, f"{matrix}_warm", f"{matrix}_bar_end"]
        assert FEATURE_VIEWS[view].entities == ["instrument"]
    assert [f.name for f in FEATURE_VIEWS[schema.WINDOW_VIEW].features] == list(schema.WINDOW_FIELDS)
    services = {n: [p.name for p in s.feature_view_projections] for n, s in FEATURE_SERVICES.items()}
    assert services == {
        "regime": ["regime_features"],
        "structure": ["structure_features"],
        "tactical": ["tactical_features"],
        "risk": ["tactical_features", "structure_features", "regime_features"],
        "matrices": ["matrix_windows"],
    }


def test_online_store_config_and_feast_dir(monkeypatch, tmp_path) -> None:
    from marlops.features.repo import online_store_config, repo_config

    assert online_store_config("sqlite") == {"type": "sqlite", "path": "data/online_store.db"}
    assert online_store_config("redis://127.0.0.1:6390/2") == {
        "type": "redis",
        "connection_string": "127.0.0.1:6390,db=2",
    }
    assert online_store_config("rediss://:s%40cret@cache:7000")["connection_string"] == (
        "cache:7000,password=s@cret,ssl=true"
    )
    for bad in ("memcached://x:1", "redis://", "redis://h:1/x"):
        with pytest.raises(ValueError, match="online store"):
            online_store_config(bad)
    monkeypatch.setenv(schema.ONLINE_ENV, "redis://h:1")
    assert online_store_config()["type"] == "redis"
    monkeypatch.setenv(schema.FEAST_DIR_ENV, str(tmp_path / "fd"))
    cfg = repo_config(online="sqlite")
    assert cfg.repo_path == (tmp_path / "fd").resolve() and cfg.online_store.type == "sqlite"
    with pytest.raises(ValueError, match="instrument"):
        schema.check_instrument("../etc")


# --- sources -------------------------------------------------------------------------------------------


def test_sources_hold_the_dataset_rows(tmp_path, ds) -> None:
    paths = write_sources(ds, "AAA", tmp_path, window_bars=10)
    base = pd.read_parquet(paths[schema.BASE_SOURCE])
    higher = pd.read_parquet(paths[schema.HIGHER_SOURCE])
    win = pd.read_parquet(paths[schema.WINDOW_SOURCE])
    fb, fh = feature_frames(ds.features)  # what `data synth` wrote as features_*.parquet
    assert (base["instrument"] == "AAA").all() and str(base["event_timestamp"].dt.tz) == "UTC"
    assert (base["event_timestamp"].astype("int64").to_numpy() == fb["ts"].to_numpy()).all()
    pd.testing.assert_frame_equal(base[fb.columns[1:]], fb[fb.columns[1:]])
    assert (higher["event_timestamp"].astype("int64").to_numpy() == fh["ts"].to_numpy()).all()
    pd.testing.assert_frame_equal(higher[fh.columns[1:]], fh[fh.columns[1:]])
    assert len(win) == 10 and (win["bar_end"].to_numpy() == ds.base["end"].to_numpy()[-10:]).all()
    assert len(win["regime_matrix"].iloc[0]) == 96 * 11
    assert source_time_range(tmp_path) == (int(ds.base["end"].iloc[0]), int(ds.base["end"].iloc[-1]))
    with pytest.raises(ValueError, match="window_bars"):
        write_sources(ds, "AAA", tmp_path, window_bars=0)


def test_windows_are_the_market_batch_windows(ds) -> None:
    fs = ds.features
    idx = np.array([0, 5, 59, 400, len(fs.base) - 1])
    w = windows_at(ds, idx)
    h = np.searchsorted(fs.higher["end"].to_numpy(), fs.base["end"].to_numpy()[idx], side="right") - 1
    for j, t in enumerate(idx):
        np.testing.assert_array_equal(w.matrices["tactical"][j], window(fs.tactical, t, 60))
        for name, rows in (("structure", fs.structure), ("regime", fs.regime)):
            n = MATRIX_SPECS[name].rows
            expect = window(rows, h[j], n) if h[j] >= 0 else np.zeros(MATRIX_SPECS[name].shape, np.float32)
            np.testing.assert_array_equal(w.matrices[name][j], expect)
    assert w.higher_end[0] == -1 and not w.ready["regime"][0]
    assert w.ready["tactical"][-1] == ready_mask(fs.tactical_warm, 60)[-1]


# --- point-in-time training sets -----------------------------------------------------------------------


def test_point_in_time_join_picks_the_latest_closed_bar(store, ds, ds_b) -> None:
    from marlops.features import entity_frame, training_set

    fs = ds.features
    ends = fs.base["end"].to_numpy()
    t = np.concatenate(
        [
            [ends[0] - SECOND],  # before any bar: nothing known
            ends[::37],  # exactly at a bar end: that bar has closed, it is joined
            ends[5::41] - 1_000,  # 1 µs before a bar end: that bar is still open, never joined
            ends[3::53] + 150 * SECOND,  # mid-bar
        ]
    )
    ent = pd.concat([entity_frame("AAA", t), entity_frame("BBB", ds_b.features.base["end"].to_numpy()[-3:])])
    ent["label"] = np.arange(len(ent))  # extra columns pass through, order is kept
    out = training_set(store, ent, "risk")
    assert len(out) == len(ent) and (out["label"].to_numpy() == np.arange(len(ent))).all()
    a = out.iloc[: len(t)]
    exp = expected_rows(fs, t)
    rows = feature_rows(fs)
    for matrix, cols in schema.ROW_FEATURES.items():
        k = exp[matrix]
        got_end = a[f"{matrix}_bar_end"].to_numpy(dtype="float64", na_value=np.nan)
        known = k >= 0
        assert np.isnan(got_end[~known]).all() and a.loc[~known, list(cols)].isna().all().all()
        end_col = fs.base["end"] if matrix == "tactical" else fs.higher["end"]
        assert (got_end[known] == end_col.to_numpy()[k[known]]).all()
        assert (got_end[known] <= t[known]).all()  # never a row from after the entity timestamp
        np.testing.assert_array_equal(a.loc[known, list(cols)].to_numpy(np.float64), rows[matrix][k[known]])
    # the other instrument's rows are its own
    b = out.iloc[len(t) :]
    np.testing.assert_array_equal(
        b[list(schema.TACTICAL_FEATURES)].to_numpy(np.float64), ds_b.features.tactical[-3:]
    )
    # an agent's service has only its own view
    reg = training_set(store, entity_frame("AAA", ends[-2:]), "regime")
    assert set(schema.REGIME_FEATURES) <= set(reg.columns)
    assert not set(schema.TACTICAL_FEATURES) & set(reg.columns)
    with pytest.raises(ValueError, match="service"):
        training_set(store, ent, "nope")


def test_no_future_leakage(store, ds, tmp_path) -> None:
    """Rewriting every row after t (values, warm flags) leaves the training set at ≤ t unchanged."""
    from marlops.features import entity_frame, open_store, training_set

    fs = ds.features
    ends = fs.base["end"].to_numpy()
    cut = int(ends[len(ends) // 2])
    t = np.concatenate([ends[: len(ends) // 2 + 1 : 7], [cut, cut - 1_000, cut + 0]])
    b_future = fs.base["end"].to_numpy() > cut
    h_future = fs.higher["end"].to_numpy() > cut
    rng = np.random.default_rng(0)
    future = dataclasses.replace(
        fs,
        tactical=np.where(b_future[:, None], rng.normal(size=fs.tactical.shape), fs.tactical),
        tactical_warm=np.where(b_future, ~fs.tactical_warm, fs.tactical_warm),
        structure=np.where(h_future[:, None], 99.0, fs.structure),
        regime=np.where(h_future[:, None], -99.0, fs.regime),
    )
    other = open_store(tmp_path)
    write_sources(future, "AAA", tmp_path, window_bars=3)
    from marlops.features import apply

    apply(other)
    before = training_set(store, entity_frame("AAA", t), "risk")
    after = training_set(other, entity_frame("AAA", t), "risk")
    pd.testing.assert_frame_equal(before, after)
    # and the future rows are really different: an entity row after the cut sees them
    late = entity_frame("AAA", [int(ends[-1])])
    assert not training_set(store, late, "risk").equals(training_set(other, late, "risk"))


# --- online matrices -----------------------------------------------------------------------------------


def _batch_matrices(fs: FeatureSet, k: int) -> dict[str, np.ndarray]:
    h = int(np.searchsorted(fs.higher["end"].to_numpy(), fs.base["end"].to_numpy()[k], side="right") - 1)
    return {
        "tactical": window(fs.tactical, k, 60),
        "structure": window(fs.structure, h, 48),
        "regime": window(fs.regime, h, 96),
    }


def test_online_matrices_equal_the_batch_matrices(store, ds, ds_b) -> None:
    from marlops.features import latest_matrices, materialize, push_matrices

    fs = ds.features
    ends = fs.base["end"].to_numpy()
    # materialize up to a bar in the middle: the online matrices are those at that bar's close
    k = len(ends) - 200
    materialize(store, end=int(ends[k]) + 60 * SECOND, views=[schema.WINDOW_VIEW])
    m = latest_matrices(store, "AAA")
    assert m.bar_end == ends[k] and m.timestamp == pd.Timestamp(ends[k], unit="ns", tz="UTC")
    assert m.tactical.shape == (60, 7) and m.structure.shape == (48, 8) and m.regime.shape == (96, 11)
    assert m.tactical.dtype == np.float32
    for name, expect in _batch_matrices(fs, k).items():
        np.testing.assert_array_equal(m.matrices[name], expect, err_msg=name)
    h = np.searchsorted(fs.higher["end"].to_numpy(), ends[k], side="right") - 1
    assert m.higher_bar_end == fs.higher["end"].iloc[h]
    assert m.ready == {
        "tactical": bool(ready_mask(fs.tactical_warm, 60)[k]),
        "structure": bool(ready_mask(fs.structure_warm, 48)[h]),
        "regime": bool(ready_mask(fs.regime_warm, 96)[h]),
    }
    # the live path: push the next bar's windows
    assert push_matrices(store, ds, "AAA", index=k + 1) == ends[k + 1]
    m2 = latest_matrices(store, "AAA")
    assert m2.bar_end == ends[k + 1]
    for name, expect in _batch_matrices(fs, k + 1).items():
        np.testing.assert_array_equal(m2.matrices[name], expect, err_msg=name)
    # materializing to the end serves the last bar; BBB (5 windows written) has its own last bar
    materialize(store, views=[schema.WINDOW_VIEW])
    assert latest_matrices(store, "AAA").bar_end == ends[-1]
    mb = latest_matrices(store, "BBB")
    assert mb.bar_end == ds_b.features.base["end"].iloc[-1]
    for name, expect in _batch_matrices(ds_b.features, len(ds_b.features.base) - 1).items():
        np.testing.assert_array_equal(mb.matrices[name], expect, err_msg=name)


def test_online_errors_name_the_instrument_and_field(store, ds) -> None:
    from marlops.features import (
        MissingOnlineFeatures,
        OnlineFeatureError,
        StaleOnlineFeatures,
        latest_matrices,
        push_matrices,
    )

    with pytest.raises(MissingOnlineFeatures, match=r"instrument 'ZZZ'.*matrix_windows:bar_end"):
        latest_matrices(store, "ZZZ")
    last = int(ds.base["end"].iloc[-1])
    push_matrices(store, ds, "CCC", index=3)  # an early bar: windows still warming up
    m = latest_matrices(store, "CCC", max_age=timedelta(minutes=10), now=int(ds.base["end"].iloc[3]))
    assert not m.all_ready
    with pytest.raises(StaleOnlineFeatures, match=r"instrument 'CCC'.*bar_end.*max_age"):
        latest_matrices(store, "CCC", max_age=timedelta(minutes=10), now=last)
    with pytest.raises(OnlineFeatureError, match=r"instrument 'CCC'.*tactical_ready"):
        latest_matrices(store, "CCC", require_ready=True)
    with pytest.raises(IndexError):
        push_matrices(store, ds, "CCC", index=10**6)


def test_build_features_is_idempotent(store, ds) -> None:
    from marlops.features import build_features, view_fingerprints

    before = {v.name for v in store.list_feature_views()}
    res = build_features(ds, "AAA", store.config.repo_path, window_bars=None)
    store.refresh_registry()
    assert (
        {v.name for v in store.list_feature_views()}
        == before
        == set(schema.ROW_VIEWS.values()) | {schema.WINDOW_VIEW}
    )
    assert {s.name for s in store.list_feature_services()} == {*schema.AGENT_SERVICES, schema.ONLINE_SERVICE}
    assert res.fingerprints == view_fingerprints() and len(set(res.fingerprints.values())) == 9
