"""Training through Feast (marlops.features.training): the train step's feature rows read back from a real
Feast store (file offline store, sqlite online store) are the dataset path's bit for bit, and the matrices
built from them are what the online store serves for the same bars."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marlops.env.market_env import MarketData, market_data_from_dataset
from marlops.features import schema
from marlops.market.dataset import MarketDataset, dataset_hash
from marlops.market.feed import FeatureSet
from synthetic_datasets import make_dataset

MATRICES = ("tactical", "structure", "regime")
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> MarketDataset:
    return make_dataset(tmp_path_factory.mktemp("ds"), 4, seed=5)


@pytest.fixture(scope="module")
def feast(tmp_path_factory, ds) -> Path:
    """A store built from ``ds`` as instrument AAA, with a window row for every base bar (online checks)."""
    from marlops.features import build_features

    root = tmp_path_factory.mktemp("feast")
    build_features(ds.path, "AAA", root, window_bars=None)
    return root


def assert_same_rows(a: FeatureSet, b: FeatureSet) -> None:
    for m in MATRICES:
        x, y = getattr(a, m), getattr(b, m)
        assert x.dtype == y.dtype == np.float64 and x.shape == y.shape, m
        # bit for bit: NaN where the dataset path has NaN, every other value identical
        assert np.array_equal(x, y, equal_nan=True), m
        assert np.array_equal(getattr(a, f"{m}_warm"), getattr(b, f"{m}_warm")), m


def test_feast_rows_and_matrices_equal_the_dataset_path(ds, feast, tmp_path) -> None:
    from marlops.features.training import load_dataset

    direct = MarketDataset.load(ds.path)
    through, src = load_dataset(ds.path, feast, "AAA", cache=False)
    assert src.source == "feast" and src.service == "risk" and src.cache == "miss"
    assert src.data_hash == dataset_hash(ds.path) and len(src.service_fingerprint) == 16
    assert_same_rows(through.features, direct.features)
    pd.testing.assert_frame_equal(through.base, direct.base)
    # the training windows (what every stage reads) are identical, float32
    a, b = market_data_from_dataset(through), market_data_from_dataset(direct)
    for m in MATRICES:
        assert getattr(a, m).dtype == np.float32
        np.testing.assert_array_equal(getattr(a, m), getattr(b, m), err_msg=m)
    np.testing.assert_array_equal(a.higher_of, b.higher_of)
    assert a.warm_from == b.warm_from


def test_historical_join_and_scan_give_the_same_rows(ds, feast) -> None:
    """Feast's own get_historical_features and the linear scan agree on every bar, and on instants
    between bars, before the first bar and beyond the ttl (missing in both)."""
    from marlops.features.offline import entity_frame, join_view, scan_view
    from marlops.features.repo import open_store
    from marlops.features.training import read_rows

    store = open_store(feast)
    b_end, h_end = ds.base["end"].to_numpy(), ds.higher["end"].to_numpy()
    hist = read_rows(store, "AAA", b_end, h_end, method="historical")
    scan = read_rows(store, "AAA", b_end, h_end, method="scan")
    for m in MATRICES:
        assert np.array_equal(hist.rows[m], scan.rows[m], equal_nan=True), m
        assert np.array_equal(hist.warm[m], scan.warm[m]), m
    first, last = int(b_end[0]), int(b_end[-1])
    ttl = int(schema.ROW_TTL.total_seconds()) * SECOND
    t = np.array(
        [first - SECOND, first, first + 60 * SECOND, int(b_end[100]) - 1000, last, last + ttl + SECOND]
    )
    keys = entity_frame("AAA", t)
    fields = [*schema.TACTICAL_FEATURES, "tactical_warm", "tactical_bar_end"]
    want = join_view(store, keys, schema.TACTICAL_VIEW, [f"{schema.TACTICAL_VIEW}:{f}" for f in fields])
    got = scan_view(store, keys, schema.TACTICAL_VIEW, fields)
    assert want["tactical_bar_end"].isna().tolist() == [True, False, False, False, False, True]
    assert got["tactical_bar_end"].isna().tolist() == want["tactical_bar_end"].isna().tolist()
    ok = want["tactical_bar_end"].notna().to_numpy()
    np.testing.assert_array_equal(
        got.loc[ok, "tactical_bar_end"].to_numpy(np.int64),
        want.loc[ok, "tactical_bar_end"].to_numpy(np.int64),
    )
    np.testing.assert_array_equal(
        got.loc[ok, list(schema.TACTICAL_FEATURES)].to_numpy(np.float64),
        want.loc[ok, list(schema.TACTICAL_FEATURES)].to_numpy(np.float64),
    )


def test_training_matrices_equal_the_online_matrices(ds, feast) -> None:
    """At a bar's close the online store serves exactly the windows training builds from Feast's rows."""
    from marlops.features import latest_matrices, materialize
    from marlops.features.repo import open_store
    from marlops.features.training import load_dataset

    through, _ = load_dataset(ds.path, feast, "AAA", cache=False)
    data = MarketData.from_features(through.features)
    store = open_store(feast)
    ends = ds.base["end"].to_numpy()
    for k in (data.warm_from, len(ends) // 2 + 3, len(ends) - 1):
        materialize(store, end=int(ends[k]) + 60 * SECOND, views=[schema.WINDOW_VIEW])
        m = latest_matrices(store, "AAA")
        assert m.bar_end == ends[k]
        h = int(data.higher_of[k])
        assert h >= 0
        np.testing.assert_array_equal(m.tactical, data.tactical[k], err_msg=f"tactical at {k}")
        np.testing.assert_array_equal(m.structure, data.structure[h], err_msg=f"structure at {k}")
        np.testing.assert_array_equal(m.regime, data.regime[h], err_msg=f"regime at {k}")


def test_cache_is_keyed_by_data_and_service_and_a_hit_needs_no_join(ds, feast, tmp_path) -> None:
    from marlops.features.training import load_dataset

    store_copy = tmp_path / "feast"
    shutil.copytree(feast, store_copy)
    first, src = load_dataset(ds.path, store_copy, "AAA")
    assert src.cache == "miss" and Path(src.cache_file).exists()
    assert Path(src.cache_file).name == f"AAA-{src.data_hash[:16]}-{src.service_fingerprint}.npz"
    # a hit reads the cache file only: with the row sources gone it still gives the same rows
    for source in (schema.BASE_SOURCE, schema.HIGHER_SOURCE):
        shutil.rmtree(store_copy / schema.source_dir(source))
    again, src2 = load_dataset(ds.path, store_copy, "AAA")
    assert src2.cache == "hit" and src2.cache_file == src.cache_file
    assert_same_rows(again.features, first.features)
    # without the cache the join is needed, and the store has no rows any more: an error naming the view
    from marlops.features.training import TrainingDataError

    with pytest.raises(TrainingDataError, match=r"tactical_features: its source .* holds no rows"):
        load_dataset(ds.path, store_copy, "AAA", cache=False)


def test_a_store_of_other_data_is_refused_by_name(ds, tmp_path) -> None:
    from marlops.features import build_features
    from marlops.features.training import TrainingDataError, load_dataset, source_digests

    other = make_dataset(tmp_path / "other", 2, seed=9)  # same start, fewer bars, other prices
    root = tmp_path / "feast"
    build_features(other.path, "AAA", root)
    with pytest.raises(
        TrainingDataError, match=r"tactical_features: tactical_bar_end: no row for instrument 'AAA'"
    ):
        load_dataset(ds.path, root, "AAA", cache=False)
    # same bars, other values: caught by the source digests the build step recorded for this dataset
    copy = tmp_path / "copy"
    shutil.copytree(other.path, copy)
    expected = {k: "0" * 64 for k in source_digests(root, "AAA")}
    (copy / "lineage.json").write_text(json.dumps({"instrument": "AAA", "feature_sources": expected}))
    with pytest.raises(TrainingDataError, match=r"feature_sources\.base_bar_features: .* another dataset"):
        load_dataset(copy, root, cache=False)
    (copy / "lineage.json").write_text(
        json.dumps({"instrument": "AAA", "feature_sources": source_digests(root, "AAA")})
    )
    got, src = load_dataset(copy, root, cache=False)
    assert src.instrument == "AAA"  # from the lineage
    assert_same_rows(got.features, other.features)
    with pytest.raises(TrainingDataError, match="feature service 'risk' is not registered"):
        load_dataset(ds.path, tmp_path / "empty", "AAA", cache=False)


def test_train_config_and_training_data_read_feast(ds, feast) -> None:
    from marlops.training.config import budget_config
    from marlops.training.market import training_data

    plain = budget_config("ci", dataset=str(ds.path), holdout_fraction=0.0)  # 4 days: regime warms in 2
    assert "feast_dir" not in plain.key() and "instrument" not in plain.key()  # old run keys unchanged
    with pytest.raises(ValueError, match=r"feast_dir: .* give a dataset too"):
        budget_config("ci", feast_dir=str(feast))  # no dataset
    cfg = dataclasses.replace(plain, feast_dir=str(feast), instrument="AAA")
    assert cfg.key()["feast_dir"] == str(feast) and cfg.key()["instrument"] == "AAA"
    a, b = training_data(cfg), training_data(plain)
    assert a.source["source"] == "feast" and a.source["data_hash"] == dataset_hash(ds.path)
    assert b.source == {"source": "dataset"}
    assert a.split == b.split
    for ma, mb in zip(a.markets + a.validation, b.markets + b.validation, strict=True):
        for m in MATRICES:
            np.testing.assert_array_equal(getattr(ma, m), getattr(mb, m), err_msg=m)


def test_pipeline_train_step_reads_the_store_the_build_step_names(ds, tmp_path) -> None:
    from marlops.pipeline import steps

    built = steps.build_features(
        tmp_path / "dataset", tmp_path / "feast", source=str(ds.path), instrument="AAA"
    )
    lineage = steps.read_lineage(built.dataset)
    assert lineage["feast_dir"] == str((tmp_path / "feast").resolve())
    assert set(lineage["feature_sources"]) == {schema.BASE_SOURCE, schema.HIGHER_SOURCE}
    assert steps._feast_source("feast", built.dataset) == {
        "feast_dir": lineage["feast_dir"],
        "instrument": "AAA",
    }
    assert steps._feast_source("dataset", built.dataset) == {}
    with pytest.raises(ValueError, match="training_data: expected one of"):
        steps._feast_source("parquet", built.dataset)
    with pytest.raises(ValueError, match=r"training_data: 'feast' needs .* no lineage.json naming one"):
        steps._feast_source("feast", ds.path)


def test_fingerprint_is_the_definitions_and_other_definitions_are_refused(ds, feast, tmp_path) -> None:
    from feast import FeatureService

    from marlops.features.definitions import tactical_features
    from marlops.features.repo import open_store
    from marlops.features.training import (
        TrainingDataError,
        definitions_fingerprint,
        load_dataset,
        service_fingerprint,
    )

    # the registry's copy (registered at another time, in another folder) hashes like the code's objects
    assert service_fingerprint(open_store(feast)) == definitions_fingerprint()
    assert definitions_fingerprint("risk") != definitions_fingerprint("tactical")
    copy = tmp_path / "feast"
    shutil.copytree(feast, copy)
    store = open_store(copy)
    store.apply([FeatureService(name="risk", features=[tactical_features], description="tactical only")])
    assert service_fingerprint(store) != definitions_fingerprint()
    with pytest.raises(TrainingDataError, match=r"feature service 'risk' in .* is not the code's definition"):
        load_dataset(ds.path, copy, "AAA")


@pytest.mark.slow
def test_cli_train_from_feast_records_the_source_and_a_rerun_hits_the_cache(tmp_path) -> None:
    """``marlops train --from-feast`` (ci budget; 10 days: the regime stage needs warm labelled bars)."""
    from typer.testing import CliRunner

    from marlops.cli import app
    from marlops.features import build_features

    ds = make_dataset(tmp_path / "ds", 10, seed=6)
    store = tmp_path / "feast"
    build_features(ds, "AAA", store)
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--budget", "ci", "--updates", "1", "--dataset", str(ds.path), "--holdout-fraction", "0"]
    r = runner.invoke(app, [*args, "--instrument", "AAA"])
    assert r.exit_code == 2 and "give --from-feast too" in r.output
    records = []
    for _ in range(2):  # the second time the finished run is found, and the rows come from the cache
        r = runner.invoke(app, [*args, "--from-feast", str(store), "--instrument", "AAA", "--out", str(out)])
        assert r.exit_code == 0, r.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["config"]["feast_dir"] == str(store.resolve())
        records.append(summary["training_data"])
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x for x in lines if x.get("event") == "training_data"] == [
        {"event": "training_data", **x} for x in records
    ]
    assert [x["cache"] for x in records] == ["miss", "hit"]
    for rec in records:
        assert rec["source"] == "feast" and rec["instrument"] == "AAA" and rec["service"] == "risk"
        assert rec["data_hash"] == dataset_hash(ds.path)
