"""EmbeddingStore: gallery search, bounded prototypes, persistence, the index file, approximate search,
retention and durability."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time

import faiss
import numpy as np
import pytest

from pipeline import gallery_file
from pipeline.errors import PipelineError
from pipeline.gallery_index import SLOT_BITS, GalleryIndex
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


@pytest.mark.parametrize("index", ["auto", "ivf", "hnsw"])
def test_approximate_index_past_the_threshold_still_finds_every_identity(tmp_path, index: str) -> None:
    rng = np.random.default_rng(4)
    n = 600
    base = unit(rng, n)
    path = tmp_path / "store.sqlite"
    store = EmbeddingStore(path, dim=DIM, index=index, approximate_threshold=400)
    gids = []
    for track, vector in enumerate(base):
        gids.append(store.new_identity(0.0))
        store.add_prototype(gids[-1], vector, (1, "a", track))
        if track == 200:
            store.search(vector[None], k=1)
            assert store.approximate == (index == "hnsw")  # auto: exact up to 400; ivf: up to 256
    noisy = base + 0.05 * unit(rng, n)
    assert [next(iter(row)) for row in store.search(noisy, k=3)] == gids
    assert store.approximate
    for track in range(100):  # an HNSW graph cannot delete: removals are masked, then rebuilt
        store.remove_prototypes((1, "a", track))
    hits = store.search(noisy, k=3)
    assert all(gids[track] not in row for track, row in enumerate(hits[:100]))
    assert [next(iter(row)) for row in hits[100:]] == gids[100:]
    store.close()
    with EmbeddingStore(path, dim=DIM, index=index, approximate_threshold=400) as reopened:
        assert reopened.approximate  # 500 left: an index switches back only below half the threshold
        assert [next(iter(row)) for row in reopened.search(noisy[100:], k=1)] == gids[100:]
        for track in range(100, 450):
            reopened.remove_prototypes((1, "a", track))
        assert reopened.approximate == (index != "auto")  # 150 left: auto is exact again
        assert [next(iter(row)) for row in reopened.search(noisy[450:], k=1)] == gids[450:]


def test_dim_mismatch_on_reopen_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "store.sqlite"
    EmbeddingStore(path, dim=512).close()
    with pytest.raises(PipelineError, match=r"store\.sqlite holds 512-dimensional features .* gives 256"):
        EmbeddingStore(path, dim=256)


def test_invalid_index_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="index must be one of auto, flat, hnsw, ivf, but got 'annoy'"):
        EmbeddingStore(None, dim=DIM, index="annoy")


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


# -- the index file ------------------------------------------------------------------------------------


def clustered(rng: np.random.Generator, identities: int, per_identity: int, dim: int) -> np.ndarray:
    """(identities, per_identity, dim) unit vectors: identity centres grouped around shared looks, each
    prototype its centre plus noise (same-identity cosine about 0.8)."""
    looks = unit(rng, max(identities // 16, 1), dim)[rng.integers(0, max(identities // 16, 1), identities)]
    centres = looks + unit(rng, identities, dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = unit(rng, identities * per_identity, dim).reshape(identities, per_identity, dim)
    samples = centres[:, None, :] + 0.5 * noise
    return (samples / np.linalg.norm(samples, axis=2, keepdims=True)).astype(np.float32)


def fill(store: EmbeddingStore, vectors: np.ndarray, camera: str = "a") -> list[int]:
    """Add (identities, per_identity, dim) vectors, one identity per row; returns the global ids."""
    gids = []
    for i, rows in enumerate(vectors):
        gids.append(store.new_identity(0.0))
        for j, vector in enumerate(rows):
            store.add_prototype(gids[-1], vector, (1, camera, i * len(rows) + j))
    return gids


def index_file(path) -> bytes:
    return path.with_name(path.name + ".faiss").read_bytes()


def store_bytes(folder) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def no_reconcile(*args) -> None:
    raise AssertionError("the index was reconciled with the database instead of loaded as it is")


def test_the_index_file_is_written_at_close_and_loaded_as_it_is(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(10)
    vectors = clustered(rng, 20, 3, DIM)
    path = tmp_path / "store.sqlite"
    with EmbeddingStore(path, dim=DIM) as store:
        gids = fill(store, vectors)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM pending_vectors").fetchone()[0] == 0  # all in the file
        columns = [r[1] for r in db.execute("PRAGMA table_info(prototypes)")]
    assert "vector" not in columns  # each vector is stored once, in the index file
    written = index_file(path)
    with EmbeddingStore(path, dim=DIM) as store:
        stored = [v.astype("<f4").tobytes() for _, _, v in store.prototypes()]
    assert len(stored) == 60 and all(v in written for v in stored)
    monkeypatch.setattr(gallery_file, "reconcile", no_reconcile)
    with EmbeddingStore(path, dim=DIM) as store:
        assert store.prototype_count() == 60
        hits = store.search(vectors[:, 0], k=1)
        assert [next(iter(row)) for row in hits] == gids
        assert [round(next(iter(row.values())), 5) for row in hits] == [1.0] * 20
    assert index_file(path) == written  # a store that changed nothing does not write the file again


def test_work_committed_after_the_file_is_caught_up_after_a_kill(tmp_path) -> None:
    rng = np.random.default_rng(11)
    a0, b0, b1, c0, c1 = unit(rng, 5)
    path = tmp_path / "store.sqlite"
    with EmbeddingStore(path, dim=DIM) as store:
        gids = [store.new_identity(0.0) for _ in range(3)]
        for gid, vector, track in zip(gids, (a0, b0, c0), (0, 1, 2), strict=True):
            store.add_prototype(gid, vector, (1, "a", track))
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from pipeline.store import EmbeddingStore
        store = EmbeddingStore({str(path)!r}, dim={DIM})
        store.remove_prototypes((1, "a", 0))
        store.add_prototype({gids[1]}, np.array({b1.tolist()}, np.float32), (1, "a", 1))  # same label again
        store.add_prototype({gids[2]}, np.array({c1.tolist()}, np.float32), (1, "b", 5))
        store.commit()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr.decode()
    with EmbeddingStore(path, dim=DIM) as store:
        assert store.prototype_count() == 3
        a, b, c = store.search(np.stack([a0, b0, c1]), k=3)
        assert gids[0] not in a and gids[0] not in b and gids[0] not in c
        assert b[gids[1]] == pytest.approx(float(b0 @ b1), abs=1e-5)  # b0 was replaced by b1
        assert c[gids[2]] == pytest.approx(1.0, abs=1e-5)
        assert store.search(c0[None], k=1)[0][gids[2]] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "missing", "foreign"])
def test_a_bad_index_file_loses_its_prototypes_but_never_answers_wrongly(tmp_path, damage, caplog) -> None:
    rng = np.random.default_rng(12)
    vectors = clustered(rng, 6, 2, DIM)
    path = tmp_path / "store.sqlite"
    with EmbeddingStore(path, dim=DIM) as store:
        gids = fill(store, vectors[:4])
    writer = EmbeddingStore(path, dim=DIM)
    late = fill(writer, vectors[4:], camera="b")  # committed, pending: not in the file yet
    writer.commit()
    faiss_path = path.with_name(path.name + ".faiss")
    data = faiss_path.read_bytes()
    if damage == "corrupt":
        faiss_path.write_bytes(data[:100] + bytes(b ^ 0xFF for b in data[100:140]) + data[140:])
    elif damage == "truncated":
        faiss_path.write_bytes(data[: len(data) // 2])
    elif damage == "missing":
        faiss_path.unlink()
    else:
        other = tmp_path / "other.sqlite"
        with EmbeddingStore(other, dim=DIM) as store:
            fill(store, vectors[1:5])  # the same labels, other vectors
        faiss_path.write_bytes(other.with_name(other.name + ".faiss").read_bytes())
    with EmbeddingStore(path, dim=DIM) as reader:
        assert "does not match the database" in caplog.text
        assert reader.prototype_count() == 4  # the pending ones; the file's are lost, not guessed
        hits = reader.search(vectors.reshape(-1, DIM), k=6)
        assert all(set(row) <= set(late) for row in hits)
        assert [next(iter(row)) for row in hits[8:]] == [late[0]] * 2 + [late[1]] * 2
    writer.close()  # the writer still holds every vector: its checkpoint writes a good file
    with EmbeddingStore(path, dim=DIM) as store:
        hits = store.search(vectors.reshape(-1, DIM), k=1)
        assert [next(iter(row)) for row in hits] == [g for g in gids + late for _ in range(2)]


def test_prototypes_lost_with_the_index_file_are_deleted_at_the_next_checkpoint(
    tmp_path, monkeypatch
) -> None:
    rng = np.random.default_rng(13)
    vectors = clustered(rng, 3, 2, DIM)
    path = tmp_path / "store.sqlite"
    with EmbeddingStore(path, dim=DIM) as store:
        fill(store, vectors[:2])
    path.with_name(path.name + ".faiss").unlink()
    with EmbeddingStore(path, dim=DIM) as store:
        assert store.prototype_count() == 0 and store.prototypes() == []
        (late,) = fill(store, vectors[2:], camera="b")
    monkeypatch.setattr(gallery_file, "reconcile", no_reconcile)
    with EmbeddingStore(path, dim=DIM) as store:
        assert [g for g, _, _ in store.prototypes()] == [late, late]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM prototypes").fetchone()[0] == 2


@pytest.mark.parametrize("renamed", [False, True])
def test_a_crash_inside_a_checkpoint_keeps_every_prototype_once(tmp_path, monkeypatch, renamed) -> None:
    rng = np.random.default_rng(14)
    vectors = clustered(rng, 4, 2, DIM)
    path = tmp_path / "store.sqlite"
    with EmbeddingStore(path, dim=DIM) as store:
        gids = fill(store, vectors[:2])
    store = EmbeddingStore(path, dim=DIM)
    gids += fill(store, vectors[2:], camera="b")
    install = GalleryIndex.install

    def crash(target) -> None:
        if renamed:
            install(target)
        raise RuntimeError("power cut")

    monkeypatch.setattr(GalleryIndex, "install", staticmethod(crash))
    with pytest.raises(RuntimeError, match="power cut"):
        store.close()
    monkeypatch.undo()
    with EmbeddingStore(path, dim=DIM) as reopened:
        assert reopened.prototype_count() == 8
        hits = reopened.search(vectors.reshape(-1, DIM), k=4)
        assert [next(iter(row)) for row in hits] == [g for g in gids for _ in range(2)]
        assert all(len(row) == 4 for row in hits)


def test_a_reader_beside_a_writer_sees_committed_work_and_writes_nothing(tmp_path) -> None:
    rng = np.random.default_rng(15)
    vectors = clustered(rng, 3, 2, DIM)
    path = tmp_path / "store.sqlite"
    with EmbeddingStore(path, dim=DIM) as store:
        gids = fill(store, vectors[:1])
    writer = EmbeddingStore(path, dim=DIM)
    gids += fill(writer, vectors[1:2], camera="b")
    writer.commit()
    before = index_file(path)
    with EmbeddingStore(path, dim=DIM) as reader:
        assert [next(iter(row)) for row in reader.search(vectors[:2, 0], k=1)] == gids
    assert index_file(path) == before
    gids += fill(writer, vectors[2:], camera="c")
    writer.close()
    with EmbeddingStore(path, dim=DIM) as store:
        assert [next(iter(row)) for row in store.search(vectors[:, 0], k=1)] == gids


def test_ivf_recall_on_clustered_data_against_exact_search(tmp_path) -> None:
    rng = np.random.default_rng(16)
    dim, identities, per_identity = 64, 500, 8
    vectors = clustered(rng, identities, per_identity, dim)
    store = EmbeddingStore(tmp_path / "store.sqlite", dim=dim, approximate_threshold=1_000)
    gids = np.array(fill(store, vectors))
    picked = rng.integers(0, identities, 200)
    noise = unit(rng, len(picked), dim)
    queries = vectors[picked, 0] + 0.5 * noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    hits = store.search(queries, k=10)
    assert store.approximate
    best = (queries @ vectors.reshape(-1, dim).T).reshape(len(queries), identities, per_identity).max(2)
    exact = np.argsort(-best, axis=1)[:, :10]
    recall = np.mean([len(set(row) & set(gids[e].tolist())) / 10 for row, e in zip(hits, exact, strict=True)])
    assert recall >= 0.95
    assert [next(iter(row)) for row in hits] == gids[picked].tolist()
    for q, row in enumerate(hits):  # similarities of 8-bit codes: close to exact, never well above it
        sims = [(sim, best[q, int(np.searchsorted(gids, gid))]) for gid, sim in row.items()]
        assert sims[0][0] == pytest.approx(sims[0][1], abs=0.01)  # the query's own identity
        assert all(sim <= exact + 0.01 for sim, exact in sims)
    store.close()


def test_forget_rewrites_the_ivf_index_file_without_the_identity_codes(tmp_path) -> None:
    rng = np.random.default_rng(17)
    vectors = clustered(rng, 60, 8, DIM)
    path = tmp_path / "store.sqlite"
    with EmbeddingStore(path, dim=DIM, approximate_threshold=100) as store:
        gids = fill(store, vectors)
        assert store.approximate
    gone = gids[7]
    index = faiss.read_index(str(path.with_name(path.name + ".faiss")))
    assert isinstance(index, faiss.IndexIVFScalarQuantizer)
    codes = []
    for list_no in range(index.nlist):
        size = index.invlists.list_size(list_no)
        ids = faiss.rev_swig_ptr(index.invlists.get_ids(list_no), size)
        raw = faiss.rev_swig_ptr(index.invlists.get_codes(list_no), size * index.code_size)
        codes += [
            raw[i * index.code_size : (i + 1) * index.code_size].tobytes()
            for i in np.flatnonzero(ids >> SLOT_BITS == gone)
        ]
    assert len(codes) == 8 and all(c in store_bytes(tmp_path) for c in codes)
    with EmbeddingStore(path, dim=DIM, approximate_threshold=100) as store:
        assert store.forget_identity(gone)["prototypes"] == 8
        on_disk = store_bytes(tmp_path)
        assert not any(c in on_disk for c in codes)
        assert not any(v.astype("<f4").tobytes() in on_disk for v in vectors[7])
        assert gone not in store.search(vectors[7], k=5)[0]


def test_a_schema_1_store_is_migrated_with_its_vectors(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(18)
    vectors = unit(rng, 4)
    path = tmp_path / "store.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE identities (global_id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL,
                last_seen REAL NOT NULL, retired INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE prototypes (id INTEGER PRIMARY KEY AUTOINCREMENT, global_id INTEGER NOT NULL,
                session INTEGER NOT NULL, camera TEXT NOT NULL, track_id INTEGER NOT NULL, vector BLOB NOT NULL,
                updated_at REAL NOT NULL, UNIQUE (session, camera, track_id));
            CREATE INDEX prototypes_identity ON prototypes (global_id);
            """
        )
        db.execute("INSERT INTO meta VALUES ('dim', ?), ('schema', '1')", (str(DIM),))
        db.executemany("INSERT INTO identities (created_at, last_seen) VALUES (0, 0)", [()] * 2)
        db.executemany(
            "INSERT INTO prototypes (global_id, session, camera, track_id, vector, updated_at) "
            "VALUES (?, 1, 'a', ?, ?, ?)",
            [(1 + i % 2, i, v.astype("<f4").tobytes(), float(i)) for i, v in enumerate(vectors)],
        )
    with EmbeddingStore(path, dim=DIM) as store:
        assert [(g, k) for g, k, _ in store.prototypes()] == [(1 + i % 2, (1, "a", i)) for i in range(4)]
        assert all(np.array_equal(v, w) for (_, _, v), w in zip(store.prototypes(), vectors, strict=True))
        assert [next(iter(row)) for row in store.search(vectors, k=1)] == [1, 2, 1, 2]
        assert store.new_identity(0.0) == 3
    monkeypatch.setattr(gallery_file, "reconcile", no_reconcile)
    with EmbeddingStore(path, dim=DIM) as store:
        assert store.prototype_count() == 4
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "prototypes_v1" not in tables
        assert db.execute("PRAGMA page_size").fetchone()[0] == 8192
