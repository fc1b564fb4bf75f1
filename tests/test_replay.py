"""Sum-tree and prioritized replay: prefix sums vs brute force, proportional sampling, importance weights,
ring overwrite, oversized batches, priority updates and determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marlops.training.replay import PrioritizedReplay, SumTree

FIELDS = {
    "obs": ((3,), np.float32),
    "action": ((), np.int64),
    "reward": ((), np.float32),
    "done": ((), np.float32),
    "discount": ((), np.float32),
}


def transitions(n: int, start: int = 0) -> dict[str, np.ndarray]:
    """n transitions whose reward is their global sequence number (so a slot says who is in it)."""
    seq = np.arange(start, start + n)
    return {
        "obs": np.repeat(seq[:, None], 3, axis=1).astype(np.float32),
        "action": seq % 4,
        "reward": seq.astype(np.float32),
        "done": np.zeros(n, np.float32),
        "discount": np.full(n, 0.99, np.float32),
    }


def brute_find(priorities: np.ndarray, v: float) -> int:
    """The smallest j with cumsum[j] > v."""
    return int(np.searchsorted(np.cumsum(priorities), v, side="right"))


# --------------------------------------------------------------------------------------------- sum tree


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 40),
    data=st.data(),
)
def test_sumtree_total_and_find_match_brute_force(capacity: int, data: st.DataObject) -> None:
    # Integer priorities keep every partial sum exact, so the tree and the cumsum must agree bit for bit.
    tree = SumTree(capacity)
    ref = np.zeros(capacity)
    n_updates = data.draw(st.integers(1, 6))
    for _ in range(n_updates):
        idx = data.draw(st.lists(st.integers(0, capacity - 1), min_size=1, max_size=2 * capacity))
        pri = data.draw(st.lists(st.integers(0, 100), min_size=len(idx), max_size=len(idx)))
        tree.update(idx, np.array(pri, dtype=float))
        for i, p in zip(idx, pri, strict=True):  # sequential semantics: the last write wins
            ref[i] = p
    assert tree.total == ref.sum()
    np.testing.assert_array_equal(tree.get(np.arange(capacity)), ref)
    if ref.sum() == 0:
        return
    cum = np.cumsum(ref)
    # Every boundary, just below it, and random interior points.
    interior = np.array(data.draw(st.lists(st.floats(0, 1), max_size=5))) * ref.sum()
    vs = np.concatenate([[0.0], cum[:-1], np.maximum(cum - 0.5, 0), interior])
    vs = np.clip(vs, 0, ref.sum() - 1e-9)
    found = tree.find(vs)
    expected = [brute_find(ref, v) for v in vs]
    np.testing.assert_array_equal(found, expected)
    assert np.all(ref[found] > 0)


@settings(max_examples=40, deadline=None)
@given(
    priorities=st.lists(st.floats(0, 1e3, allow_subnormal=False), min_size=1, max_size=64),
    us=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20),
)
def test_sumtree_float_priorities_land_in_their_interval(priorities: list[float], us: list[float]) -> None:
    p = np.array(priorities)
    if p.sum() == 0:
        return
    tree = SumTree(len(p))
    tree.update(np.arange(len(p)), p)
    assert tree.total == pytest.approx(p.sum(), rel=1e-12)
    found = tree.find(np.array(us) * tree.total)
    assert np.all(p[found] > 0)  # never a zero-priority leaf, even at rounding boundaries
    cum = np.cumsum(p)
    for j, v in zip(found, np.array(us) * tree.total, strict=True):
        lo = cum[j - 1] if j else 0.0
        tol = 1e-9 * p.sum()
        assert lo - tol <= v < cum[j] + tol


def test_sumtree_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        SumTree(0)
    tree = SumTree(5)
    with pytest.raises(IndexError):
        tree.update([5], [1.0])
    with pytest.raises(ValueError):
        tree.update([0], [-1.0])
    with pytest.raises(ValueError):
        tree.update([0], [np.nan])


# ------------------------------------------------------------------------------------------- the replay


def test_sampling_frequencies_are_proportional_to_priorities() -> None:
    buf = PrioritizedReplay(7, FIELDS, alpha=1.0, eps=1e-9, rng=0)  # capacity not a power of two
    buf.add_batch(transitions(7))
    td = np.array([1.0, 2.0, 3.0, 4.0, 0.5, 6.0, 7.0])
    buf.update_priorities(np.arange(7), td)
    counts = np.zeros(7)
    n_draws = 0
    for _ in range(400):
        _, idx, _ = buf.sample(50, beta=0.4)
        counts += np.bincount(idx, minlength=7)
        n_draws += idx.size
    expected = n_draws * td / td.sum()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # 6 degrees of freedom: P(chi2 > 22.5) ≈ 0.001 for independent draws; stratification only lowers it.
    assert chi2 < 22.5, (counts, expected)


def test_alpha_zero_is_uniform_and_alpha_shapes_priorities() -> None:
    buf = PrioritizedReplay(4, FIELDS, alpha=0.0, rng=0)
    buf.add_batch(transitions(4))
    buf.update_priorities([0, 1, 2, 3], [0.0, 1.0, 10.0, 100.0])
    np.testing.assert_allclose(buf.priorities(), 1.0)
    buf = PrioritizedReplay(4, FIELDS, alpha=0.5, eps=0.01, rng=0)
    buf.add_batch(transitions(4))
    buf.update_priorities([0, 1, 2, 3], [0.0, -1.0, 10.0, 100.0])  # |δ|: the sign does not matter
    np.testing.assert_allclose(buf.priorities(), np.array([0.01, 1.01, 10.01, 100.01]) ** 0.5)


def test_importance_weights_match_the_formula() -> None:
    buf = PrioritizedReplay(8, FIELDS, alpha=0.6, eps=1e-6, rng=3)
    buf.add_batch(transitions(5))  # N = 5 < capacity: the formula uses the stored count
    td = np.array([0.1, 0.5, 1.0, 2.0, 4.0])
    buf.update_priorities(np.arange(5), td)
    beta = 0.7
    _, idx, w = buf.sample(16, beta)
    p = (np.abs(td) + 1e-6) ** 0.6
    prob = p / p.sum()
    raw = (5 * prob[idx]) ** -beta
    np.testing.assert_allclose(w, raw / raw.max(), rtol=1e-6)
    assert w.dtype == np.float32 and w.max() == 1.0
    # β = 0: no correction; rare transitions get the largest weights when β > 0.
    _, _, w0 = buf.sample(16, 0.0)
    np.testing.assert_array_equal(w0, 1.0)


def test_new_transitions_get_the_max_priority_seen() -> None:
    buf = PrioritizedReplay(10, FIELDS, alpha=1.0, eps=0.0 + 1e-6, rng=0)
    buf.add_batch(transitions(3))
    np.testing.assert_array_equal(buf.priorities(), 1.0)  # the initial max
    buf.update_priorities([0, 1, 2], [5.0, 0.1, 0.2])
    buf.update_priorities([0], [0.3])  # the max is the max *seen*, not the current max
    slots = buf.add_batch(transitions(2, start=3))
    np.testing.assert_allclose(buf.priorities()[slots], 5.0 + 1e-6)


def test_ring_overwrite_keeps_data_and_tree_consistent() -> None:
    buf = PrioritizedReplay(5, FIELDS, alpha=1.0, eps=1e-6, rng=0)
    buf.add_batch(transitions(5))
    buf.update_priorities(np.arange(5), [0.1, 0.2, 0.3, 0.4, 0.5])
    slots = buf.add_batch(transitions(3, start=5))  # overwrites the three oldest
    np.testing.assert_array_equal(slots, [0, 1, 2])
    assert len(buf) == 5
    np.testing.assert_array_equal(buf.data["reward"], [5, 6, 7, 3, 4])
    np.testing.assert_array_equal(buf.data["obs"][:, 0], [5, 6, 7, 3, 4])
    pri = buf.priorities()
    np.testing.assert_allclose(pri, [1.0, 1.0, 1.0, 0.4 + 1e-6, 0.5 + 1e-6])
    assert buf.tree.total == pytest.approx(pri.sum(), rel=1e-12)
    # Wrap around again, not aligned with the ring's start.
    slots = buf.add_batch(transitions(4, start=8))
    np.testing.assert_array_equal(slots, [3, 4, 0, 1])
    np.testing.assert_array_equal(buf.data["reward"], [10, 11, 7, 8, 9])
    assert buf.tree.total == pytest.approx(buf.priorities().sum(), rel=1e-12)
    batch, idx, _ = buf.sample(32, 0.5)
    np.testing.assert_array_equal(batch["reward"], buf.data["reward"][idx])
    np.testing.assert_array_equal(batch["action"], buf.data["reward"][idx].astype(np.int64) % 4)


def test_add_batch_larger_than_capacity_keeps_the_last_ones() -> None:
    ref = PrioritizedReplay(4, FIELDS, rng=0)
    buf = PrioritizedReplay(4, FIELDS, rng=0)
    buf.add_batch(transitions(2))
    ref.add_batch(transitions(2))
    slots = buf.add_batch(transitions(11, start=2))
    for i in range(2, 13):  # the same result as one at a time
        ref.add({k: v[0] for k, v in transitions(1, start=i).items()})
    assert len(buf) == 4
    np.testing.assert_array_equal(buf.data["reward"], ref.data["reward"])
    np.testing.assert_array_equal(sorted(buf.data["reward"]), [9, 10, 11, 12])
    np.testing.assert_array_equal(buf.data["reward"][slots], [9, 10, 11, 12])  # slots in input order
    assert buf._next == ref._next
    assert buf.tree.total == pytest.approx(4.0)
    # Exactly the capacity, from a non-zero ring position.
    slots = buf.add_batch(transitions(4, start=13))
    np.testing.assert_array_equal(buf.data["reward"][slots], [13, 14, 15, 16])


def test_sample_is_deterministic_for_a_seed_and_covers_only_stored_slots() -> None:
    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        buf = PrioritizedReplay(100, FIELDS, rng=np.random.default_rng(seed))
        buf.add_batch(transitions(30))
        buf.update_priorities(np.arange(30), np.linspace(0, 3, 30))
        _, idx, w = buf.sample(64, 0.4)
        return idx, w

    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].max() < 30  # the 70 empty slots (priority 0) are never drawn


def test_stratified_sampling_spans_the_total() -> None:
    buf = PrioritizedReplay(16, FIELDS, alpha=0.0, rng=0)  # uniform: segment k holds exactly slot k
    buf.add_batch(transitions(16))
    _, idx, _ = buf.sample(16, 1.0)
    np.testing.assert_array_equal(idx, np.arange(16))


def test_input_validation() -> None:
    buf = PrioritizedReplay(4, FIELDS, rng=0)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(2, 0.4)
    with pytest.raises(KeyError):
        buf.add_batch({k: v for k, v in transitions(2).items() if k != "done"})
    bad = transitions(2)
    bad["obs"] = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="obs"):
        buf.add_batch(bad)
    bad = transitions(2)
    bad["reward"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="leading"):
        buf.add_batch(bad)
    buf.add_batch(transitions(2))
    with pytest.raises(ValueError, match="finite"):
        buf.update_priorities([0], [np.inf])
    with pytest.raises(IndexError):
        buf.update_priorities([3], [1.0])
    assert buf.add_batch(transitions(0)).size == 0
