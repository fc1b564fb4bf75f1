"""The Feast Redis online store, against a real redis-server.

`.ci/run` installs Debian's redis-server, starts it on 127.0.0.1 and sets MARLOPS_REDIS_URL; without
that variable the test is skipped (a set but unreachable URL fails: CI must really run it). Locally::

    redis-server --bind 127.0.0.1 --port 6390 --save '' &
    MARLOPS_REDIS_URL=redis://127.0.0.1:6390/0 .venv/bin/pytest tests/test_features_redis.py
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from marlops.market.dataset import dataset_from_ticks
from marlops.market.feed import FeedConfig
from marlops.market.matrices import window
from marlops.market.synthetic import SyntheticMarketConfig, generate_market

REDIS_URL = os.environ.get("MARLOPS_REDIS_URL")

pytestmark = pytest.mark.skipif(
    not REDIS_URL,
    reason="MARLOPS_REDIS_URL is not set (.ci/run starts redis-server on 127.0.0.1 and sets it)",
)


@pytest.fixture(scope="module")
def redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as e:  # set but unreachable: a broken CI setup, not a skip
        pytest.fail(f"MARLOPS_REDIS_URL={REDIS_URL} is set but Redis does not answer: {e}")
    yield client
    client.close()


def test_redis_online_store_serves_the_batch_matrices(tmp_path: Path, redis_client) -> None:
    from marlops.features import build_features, latest_matrices, open_store, push_matrices

    m = generate_market(3, seed=5, config=SyntheticMarketConfig(ticks_per_bar=4.0))
    ds = dataset_from_ticks(tmp_path / "ds", m.ticks, FeedConfig(), {"source": "synthetic"}, m.labels)
    fs = ds.features
    ends = fs.base["end"].to_numpy()
    project = f"marlops_test_{uuid.uuid4().hex[:8]}"  # own key space on a shared server
    res = build_features(ds, "RDS", tmp_path / "feast", online=REDIS_URL, window_bars=20, project=project)
    store = open_store(tmp_path / "feast", online=REDIS_URL, project=project)
    try:
        assert res.online == "redis" and store.config.online_store.type == "redis"
        assert "type: redis" in (tmp_path / "feast/feature_store.yaml").read_text()
        assert any(True for _ in redis_client.scan_iter(count=1000))  # the values are in Redis

        def batch(k: int) -> dict[str, np.ndarray]:
            h = int(np.searchsorted(fs.higher["end"].to_numpy(), ends[k], side="right") - 1)
            return {
                "tactical": window(fs.tactical, k, 60),
                "structure": window(fs.structure, h, 48),
                "regime": window(fs.regime, h, 96),
            }

        got = latest_matrices(store, "RDS")
        assert got.bar_end == ends[-1]
        for name, expect in batch(len(ends) - 1).items():
            np.testing.assert_array_equal(got.matrices[name], expect, err_msg=name)
        # the live path through Redis: an older bar pushed later does not replace the newer one
        push_matrices(store, ds, "RDS", index=len(ends) - 5)
        assert latest_matrices(store, "RDS").bar_end == ends[-1]
        # a second instrument pushed directly
        push_matrices(store, ds, "RDS2", index=len(ends) - 2)
        got2 = latest_matrices(store, "RDS2")
        for name, expect in batch(len(ends) - 2).items():
            np.testing.assert_array_equal(got2.matrices[name], expect, err_msg=name)
    finally:
        store.teardown()  # removes this project's keys from Redis
