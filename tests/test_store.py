"""EmbeddingStore: gallery search, bounded prototypes, persistence, HNSW, retention and durability."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.store import EmbeddingStore

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_search_returns_best_similarity_per_identity_and_honours_exclude() -> None:
    rng = np.random.default_rng(0)
    base = unit(rng, 3)
    store = EmbeddingStore(None, dim=DIM)
    session = store.begin_session()
    gids = [store.new_identity(0.0) for _ in range(3)]
    for track, (gid, vector) in enumerate(zip(gids, base, strict=True)):
        store.add_prototype(gid, vector, (session, "a", track))
    # a second, noisier prototype of identity 0 must not displace its best match
    store.add_prototype(gids[0], base[0] + 0.5 * unit(rng, 1)[0], (session, "b", 9))
    hits = store.search(base, k=2)
    for gid, row in zip(gids, hits, strict=True):
        assert next(iter(row)) == gid
        assert row[gid] == pytest.approx(1.0, abs=1e-5)
        assert len(row) == 2
    excluded = store.search(base[:1], k=3, exclude=[(session, "a", 0)])[0]
    assert excluded[gids[0]] < 0.99  # only the noisy prototype of identity 0 is left to find
    assert store.identity_count() == 3


def test_prototypes_per_identity_are_bounded_and_replaced_per_tracklet() -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 5)
    store = EmbeddingStore(None, dim=DIM, max_prototypes=3)
    gid = store.new_identity(0.0)
    for i, vector in enumerate(vectors):
        store.add_prototype(gid, vector, (1, "a", i), timestamp=100.0 + i)
    assert store.prototype_count() == 3
    sims = store.search(vectors, k=1)
    assert [round(row[gid], 3) for row in sims[2:]] == [1.0, 1.0, 1.0]  # the most recent ones stay
    assert all(row[gid] < 0.99 for row in sims[:2])
    store.add_prototype(gid, vectors[0], (1, "a", 4), timestamp=200.0)  # tracklet 4 updates its feature
    assert store.prototype_count() == 3
    assert store.search(vectors[4:], k=1)[0][gid] < 0.99
    store.remove_prototypes((1, "a", 4))
    assert store.prototype_count() == 2


def test_reopen_keeps_gallery_sessions_and_identity_counter(tmp_path) -> None:
    rng = np.random.default_rng(2)
    base = unit(rng, 3)
    path = tmp_path / "store.sqlite"
    with EmbeddingStore(path, dim=DIM) as store:
        session = store.begin_session()
        gids = [store.new_identity(float(i)) for i in range(3)]
        for track, (gid, vector) in enumerate(zip(gids, base, strict=True)):
            store.add_prototype(gid, vector, (session, "a", track))
            store.upsert_tracklet(
                session, "a", track, global_id=gid, first_frame=1, last_frame=5, first_time=0.0,
                last_time=0.4, closed=True,
            )  # fmt: skip
    with EmbeddingStore(path, dim=DIM) as store:
        assert store.begin_session() == session + 1
        hits = store.search(base, k=1)
        assert [next(iter(row)) for row in hits] == gids
        assert store.new_identity(9.0) == gids[-1] + 1
        assert [t.global_id for t in store.tracklets(session=session)] == gids


def test_retired_identity_ids_are_never_reused(tmp_path) -> None:
    rng = np.random.default_rng(3)
    store = EmbeddingStore(tmp_path / "s.sqlite", dim=DIM)
    first, second = store.new_identity(0.0), store.new_identity(0.0)
    store.add_prototype(second, unit(rng, 1)[0], (1, "a", 1))
    store.retire_identity(second)
    assert store.identity_count() == 1
    assert store.prototype_count() == 0
    store.commit()
    store.close()
    store = EmbeddingStore(tmp_path / "s.sqlite", dim=DIM)
    assert store.new_identity(0.0) == second + 1 > first
    store.close()


@pytest.mark.parametrize("index", ["auto", "hnsw"])
def test_hnsw_past_the_threshold_still_finds_every_identity(tmp_path, index: str) -> None:
    rng = np.random.default_rng(4)
    base = unit(rng, 80)
    path = tmp_path / "store.sqlite"
    store = EmbeddingStore(path, dim=DIM, index=index, approximate_threshold=50)
    gids = []
    for track, vector in enumerate(base):
        assert store.approximate == (index == "hnsw" or track > 50)
        gids.append(store.new_identity(0.0))
        store.add_prototype(gids[-1], vector, (1, "a", track))
    assert store.approximate
    noisy = base + 0.05 * unit(rng, 80)
    assert [next(iter(row)) for row in store.search(noisy, k=3)] == gids
    for track in range(30):  # an HNSW graph cannot delete: removals are masked, then rebuilt
        store.remove_prototypes((1, "a", track))
    hits = store.search(noisy, k=3)
    assert all(gids[track] not in row for track, row in enumerate(hits[:30]))
    assert [next(iter(row)) for row in hits[30:]] == gids[30:]
    store.close()
    with EmbeddingStore(path, dim=DIM, index=index, approximate_threshold=50) as reopened:
        assert reopened.approximate == (index == "hnsw")  # 50 left: "auto" is exact again
        assert [next(iter(row)) for row in reopened.search(noisy[30:], k=1)] == gids[30:]


def test_dim_mismatch_on_reopen_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "store.sqlite"
    EmbeddingStore(path, dim=512).close()
    with pytest.raises(PipelineError, match=r"store\.sqlite holds 512-dimensional features .* gives 256"):
        EmbeddingStore(path, dim=256)


def test_invalid_index_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="index must be one of auto, flat, hnsw"):
        EmbeddingStore(None, dim=DIM, index="ivf")


def test_retention_drops_old_prototypes() -> None:
    rng = np.random.default_rng(5)
    store = EmbeddingStore(None, dim=DIM)
    old, new = store.new_identity(0.0), store.new_identity(0.0)
    vectors = unit(rng, 2)
    store.add_prototype(old, vectors[0], (1, "a", 1), timestamp=time.time() - 86_400 * 40)
    store.add_prototype(new, vectors[1], (1, "a", 2))
    assert store.delete_older_than(time.time() - 86_400 * 30) == 1
    assert [list(row) for row in store.search(vectors, k=2)] == [[new], [new]]


def test_tracklets_and_boxes_round_trip_in_frame_order() -> None:
    store = EmbeddingStore(None, dim=DIM)
    session = store.begin_session()
    gid = store.new_identity(0.0)
    store.upsert_tracklet(
        session, "a", 7, global_id=None, first_frame=3, last_frame=4, first_time=0.3, last_time=0.4
    )
    store.upsert_tracklet(
        session,
        "a",
        7,
        global_id=gid,
        first_frame=3,
        last_frame=9,
        first_time=0.3,
        last_time=0.9,
        closed=True,
    )
    store.add_boxes([(session, "a", 7, f, 1.0, 2.0, 3.0, 4.0, 0.9) for f in (9, 3, 5)])
    store.add_boxes([(session, "a", 8, 4, 0.0, 0.0, 1.0, 1.0, 0.5), (session, "b", 1, 1, 0, 0, 1, 1, 1.0)])
    (record,) = store.tracklets(session=session, global_ids=[gid])
    assert (record.global_id, record.last_frame, record.closed) == (gid, 9, True)
    assert [(t, f) for t, f, *_ in store.boxes(session, "a")] == [(7, 3), (8, 4), (7, 5), (7, 9)]
    assert store.tracklets(session=session + 1) == []


def test_committed_work_survives_kill_9(tmp_path) -> None:
    path = tmp_path / "store.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from pipeline.store import EmbeddingStore
        store = EmbeddingStore({str(path)!r}, dim={DIM})
        session = store.begin_session()
        gid = store.new_identity(0.0)
        store.add_prototype(gid, np.ones({DIM}, np.float32), (session, "a", 1))
        store.add_boxes([(session, "a", 1, 1, 0, 0, 1, 1, 1.0)])
        store.commit()
        store.new_identity(1.0)
        store.add_boxes([(session, "a", 1, 2, 0, 0, 1, 1, 1.0)])
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr.decode()
    with EmbeddingStore(path, dim=DIM) as store:
        assert store.identity_count() == 1
        assert len(list(store.boxes(1, "a"))) == 1
        assert next(iter(store.search(np.ones((1, DIM), np.float32), k=1)[0])) == 1
