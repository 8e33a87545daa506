"""PK batch sampler: P identities x K images per batch, as metric losses on re-ID need."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKSampler(Sampler[list[int]]):
    """Yields batches of `p` distinct identities with `k` indices each (drawn with replacement if short).

    An epoch has `sum_i max(1, n_i // k) // p` batches (at least one), so every identity is seen about
    once per group of k of its images. Call `set_epoch` for a different, reproducible order each epoch.
    """

    def __init__(self, labels: Sequence[int], *, p: int = 16, k: int = 4, seed: int = 0) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"PKSampler needs p >= 1 and k >= 1, got p={p}, k={k}")
        self.index_by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(labels):
            self.index_by_pid[int(pid)].append(index)
        self.pids = sorted(self.index_by_pid)
        if len(self.pids) < p:
            raise ValueError(f"PKSampler needs at least p={p} identities, the data has {len(self.pids)}")
        self.p, self.k, self.seed, self.epoch = p, k, seed, 0
        chunks = sum(max(1, len(v) // k) for v in self.index_by_pid.values())
        self.num_batches = max(1, chunks // p)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration's order depend on `epoch` (and the seed) only."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def _chunks(self, rng: np.random.Generator) -> dict[int, list[list[int]]]:
        chunks = {}
        for pid, indices in self.index_by_pid.items():
            order = list(rng.permutation(indices))
            if len(order) < self.k:
                order += list(rng.choice(indices, size=self.k - len(order), replace=True))
            n = max(1, len(order) // self.k)
            chunks[pid] = [[int(i) for i in order[j * self.k : (j + 1) * self.k]] for j in range(n)]
        return chunks

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks = self._chunks(rng)
        for _ in range(self.num_batches):
            available = [pid for pid in self.pids if chunks[pid]]
            if len(available) < self.p:
                chunks = self._chunks(rng)
                available = self.pids
            batch = []
            for pid in rng.choice(available, size=self.p, replace=False):
                batch += chunks[int(pid)].pop()
            yield batch
