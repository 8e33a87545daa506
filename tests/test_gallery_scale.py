"""Smoke run of benchmarks/gallery_scale.py's pieces on a small gallery: data, exact search, measurement."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gallery_scale


@pytest.mark.parametrize("data", ["looks", "isotropic"])
def test_synthetic_gallery_clusters_by_identity(data: str) -> None:
    gallery = gallery_scale.synthetic_gallery(3_000, 128, np.random.default_rng(0), data=data)
    assert gallery.vectors.shape == (3_000, 128) and gallery.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(gallery.vectors, axis=1), 1.0, atol=1e-5)
    counts = np.bincount(gallery.identity)
    assert counts.min() >= 1 and counts.max() <= 8 and len(counts) == len(gallery.centres)
    assert np.all(np.diff(gallery.identity) >= 0)
    first = np.searchsorted(gallery.identity, np.flatnonzero(counts >= 2))
    same = np.sum(gallery.vectors[first] * gallery.vectors[first + 1], axis=1)
    assert 0.7 <= same.mean() <= 0.9
    other = gallery.vectors[first[:200]] @ gallery.vectors[first[200:400]].T
    assert abs(other.mean()) < 0.1  # most identities are unrelated


def test_exact_top_identities_ranks_identities_by_their_best_prototype() -> None:
    vectors = np.eye(4, dtype=np.float32)
    gallery = gallery_scale.Gallery(vectors, np.array([0, 0, 1, 2]), vectors[[0, 2, 3]])
    query = np.array([[0.1, 0.9, 0.5, 0.0]], np.float32)  # best: prototype 1 (identity 0), then identity 1
    assert gallery_scale.exact_top_identities(gallery, query, k=2, per_identity=2) == [[0, 1]]


def test_measure_a_small_gallery_and_print_the_table(tmp_path) -> None:
    gallery = gallery_scale.synthetic_gallery(3_000, 64, np.random.default_rng(1))
    result = gallery_scale.measure(gallery, tmp_path, queries=50, threshold=1_000)
    assert result.size == 3_000 and result.approximate
    assert result.recall >= 0.9
    assert result.ingest_per_s > 0 and result.open_s > 0 and 0 < result.p50_ms <= result.p95_ms
    assert 0 < result.bytes_per_prototype < 1_000  # 64-dim: 64-byte codes plus the rows
    lines = gallery_scale.table([result]).splitlines()
    assert "recall@10" in lines[0] and lines[1].split()[:2] == ["3,000", "approx"]
