"""Prioritized experience replay (Schaul et al. 2016, proportional variant) over an array sum-tree.

A transition ``i`` is sampled with probability ``P(i) = p_i / Σ_k p_k`` where ``p_i = (|δ_i| + ε)^α``;
new transitions get the largest priority seen so far, so each is replayed at least once soon after it
arrives. The bias of non-uniform sampling is corrected by importance weights
``w_i = (N · P(i))^(-β) / max_j w_j``, normalised by the largest weight *in the sampled batch* (so the
loss scale only ever shrinks and no min-tree is needed).

Storage is one preallocated numpy array per field, written as a ring: the oldest transitions are
overwritten first. Each transition carries its own ``discount`` (γ^k for a k-step or semi-MDP
transition) so the learner never assumes a fixed horizon. Everything random goes through one
``np.random.Generator``: a seeded buffer samples the same indices on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

FieldSpec = tuple[tuple[int, ...], DTypeLike]


class SumTree:
    """Sums of non-negative priorities over a fixed number of leaves; O(log n) update and search.

    Laid out as one array: node 1 is the root, node ``i`` has children ``2i`` and ``2i+1``, and leaf
    ``j`` lives at ``size + j`` where ``size`` is ``capacity`` rounded up to a power of two. The padding
    leaves stay at zero, so the leaves are in index order and :meth:`find` is an exact prefix-sum
    search. Float64 keeps the root's total accurate over millions of updates, and every update
    recomputes its ancestors from their children instead of adding deltas, so no error accumulates.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity}")
        self.capacity = int(capacity)
        self._size = 1 << (self.capacity - 1).bit_length()  # smallest power of two >= capacity
        self._depth = self._size.bit_length() - 1  # edges from the root to a leaf
        self._tree = np.zeros(2 * self._size, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self._tree[1])

    def get(self, indices: ArrayLike) -> np.ndarray:
        """The priorities at ``indices`` (leaf numbers in ``[0, capacity)``)."""
        return self._tree[self._size + self._check(indices)].copy()

    def update(self, indices: ArrayLike, priorities: ArrayLike) -> None:
        """Set the leaves ``indices`` to ``priorities``; a repeated index keeps its last value."""
        idx = self._check(indices)
        pri = np.broadcast_to(np.asarray(priorities, dtype=np.float64), idx.shape).ravel()
        idx = idx.ravel()
        if idx.size == 0:
            return
        if not np.all(np.isfinite(pri)) or np.any(pri < 0):
            raise ValueError("priorities must be finite and non-negative")
        # numpy leaves the winner of a repeated fancy-index assignment unspecified: keep the last one.
        uniq, last_rev = np.unique(idx[::-1], return_index=True)
        nodes = uniq + self._size
        self._tree[nodes] = pri[::-1][last_rev]
        for _ in range(self._depth):
            nodes = np.unique(nodes >> 1)
            self._tree[nodes] = self._tree[2 * nodes] + self._tree[2 * nodes + 1]

    def find(self, values: ArrayLike) -> np.ndarray:
        """For each ``v`` in ``[0, total)``, the leaf ``j`` with ``cumsum[j-1] <= v < cumsum[j]``.

        Vectorised over ``values``: one descent step per tree level for the whole batch. Never steps
        into a zero-sum subtree, so rounding at a segment boundary cannot return a zero-priority leaf.
        """
        v = np.array(values, dtype=np.float64, copy=True).ravel()
        node = np.ones(v.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = 2 * node
            left_sum = self._tree[left]
            right = (v >= left_sum) & (self._tree[left + 1] > 0)
            v = np.where(right, v - left_sum, v)
            node = left + right
        return np.minimum(node - self._size, self.capacity - 1)

    def _check(self, indices: ArrayLike) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity):
            raise IndexError(f"leaf index out of range [0, {self.capacity})")
        return idx


class PrioritizedReplay:
    """Fixed-capacity ring of transitions with proportional prioritized sampling.

    ``fields`` maps each field name to its per-transition ``(shape, dtype)``, e.g.
    ``{"obs": ((1875,), np.float32), "action": ((), np.int64), "reward": ((), np.float32), ...}``.
    Indices returned by :meth:`sample` must be passed to :meth:`update_priorities` before more
    transitions are added, or an overwritten slot would inherit its predecessor's TD error.
    """

    def __init__(
        self,
        capacity: int,
        fields: Mapping[str, FieldSpec],
        alpha: float = 0.6,
        eps: float = 1e-6,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity}")
        if not fields:
            raise ValueError("fields must name at least one field")
        if alpha < 0 or eps <= 0:
            raise ValueError(f"need alpha >= 0 and eps > 0, got alpha={alpha}, eps={eps}")
        self.capacity = int(capacity)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.fields: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {
            name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in fields.items()
        }
        self.data: dict[str, np.ndarray] = {
            name: np.zeros((self.capacity, *shape), dtype=dtype)
            for name, (shape, dtype) in self.fields.items()
        }
        self.tree = SumTree(self.capacity)
        self.max_priority = 1.0  # in priority space, (|δ| + ε)^α; the paper's initial p_1 = 1
        self._next = 0  # the slot the next transition is written to
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def add(self, transition: Mapping[str, ArrayLike]) -> int:
        """Add one transition (no leading batch axis); returns its slot."""
        return int(self.add_batch({k: np.asarray(v)[None] for k, v in transition.items()})[0])

    def add_batch(self, transitions: Mapping[str, ArrayLike]) -> np.ndarray:
        """Add ``n`` transitions (every field with a leading axis of length ``n``) at max priority.

        Returns the slots written, in input order. When ``n > capacity`` only the last ``capacity``
        transitions survive, exactly as if they had been added one by one.
        """
        missing = self.fields.keys() - transitions.keys()
        extra = transitions.keys() - self.fields.keys()
        if missing or extra:
            raise KeyError(f"transition fields differ: missing {sorted(missing)}, unknown {sorted(extra)}")
        arrays = {k: np.asarray(transitions[k]) for k in self.fields}
        lengths = {a.shape[0] if a.ndim else -1 for a in arrays.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise ValueError(f"every field needs the same leading batch axis, got lengths {sorted(lengths)}")
        n = lengths.pop()
        for name, a in arrays.items():
            if a.shape[1:] != self.fields[name][0]:
                raise ValueError(
                    f"field {name!r}: per-transition shape {a.shape[1:]}, expected {self.fields[name][0]}"
                )
        if n == 0:
            return np.empty(0, dtype=np.int64)
        skip = max(0, n - self.capacity)  # these would be overwritten within this same call
        slots = (self._next + np.arange(skip, n)) % self.capacity
        for name, a in arrays.items():
            self.data[name][slots] = a[skip:]
        self.tree.update(slots, self.max_priority)
        self._next = (self._next + n) % self.capacity
        self._len = min(self._len + n, self.capacity)
        return slots

    def sample(self, batch_size: int, beta: float) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """``(batch, indices, weights)``: stratified proportional sampling, one draw per equal segment
        of the total priority (lower variance than ``batch_size`` independent draws); ``weights`` are
        float32 importance weights ``(N·P(i))^(-β)`` divided by their batch maximum."""
        if self._len == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        total = self.tree.total
        segment = total / batch_size
        values = (np.arange(batch_size) + self.rng.random(batch_size)) * segment
        # Guard the top of the last segment against rounding past the total.
        indices = self.tree.find(np.minimum(values, np.nextafter(total, 0.0)))
        indices = np.minimum(indices, self._len - 1)  # only reachable by rounding; slots >= len are 0
        probs = self.tree.get(indices) / total
        weights = (self._len * probs) ** (-beta)
        weights = (weights / weights.max()).astype(np.float32)
        batch = {name: arr[indices] for name, arr in self.data.items()}
        return batch, indices, weights

    def update_priorities(self, indices: ArrayLike, td_errors: ArrayLike) -> None:
        """Set ``p_i = (|δ_i| + ε)^α`` for the sampled ``indices``; raises on non-finite TD errors
        (a NaN would poison the tree's total and every later sample)."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        td = np.abs(np.asarray(td_errors, dtype=np.float64).ravel())
        if idx.shape != td.shape:
            raise ValueError(f"{idx.size} indices but {td.size} TD errors")
        if not np.all(np.isfinite(td)):
            raise ValueError("TD errors must be finite")
        if idx.size and idx.max() >= self._len:
            raise IndexError(f"index beyond the {self._len} stored transitions")
        priorities = (td + self.eps) ** self.alpha
        self.tree.update(idx, priorities)
        if priorities.size:
            self.max_priority = max(self.max_priority, float(priorities.max()))

    def priorities(self) -> np.ndarray:
        """The stored transitions' priorities, by slot (a copy)."""
        return self.tree.get(np.arange(self._len))
