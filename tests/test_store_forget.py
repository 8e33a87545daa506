"""EmbeddingStore.forget_identity: one identity's rows and features gone, bytes included; the rest intact."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.store import EmbeddingStore


def _unit(rng, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_forget_identity_leaves_no_byte_of_its_features(tmp_path, index):
    rng = np.random.default_rng(0)
    path = tmp_path / "gallery.sqlite"
    store = EmbeddingStore(path, dim=16, index=index)
    session = store.begin_session()
    keep, gone = store.new_identity(0.0), store.new_identity(0.0)
    vectors = {keep: _unit(rng, 3, 16), gone: _unit(rng, 3, 16)}
    for gid, rows in vectors.items():
        for n, vector in enumerate(rows):
            track = gid * 10 + n
            store.upsert_tracklet(
                session, "cam", track, global_id=gid, first_frame=1, last_frame=5, first_time=0, last_time=0.5
            )
            store.add_boxes([(session, "cam", track, f, 1, 2, 30, 60, 0.9) for f in range(1, 6)])
            store.add_prototype(gid, vector, (session, "cam", track))
    store.commit()
    erased = [v.astype("<f4").tobytes() for _, _, v in store.prototypes(global_ids=[gone])]
    assert len(erased) == 3
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert all(v in on_disk for v in erased)

    assert store.forget_identity(gone) == {"prototypes": 3, "tracklets": 3, "boxes": 15}
    assert store.search(vectors[gone], k=5) == [
        {keep: pytest.approx(s, abs=1e-5)} for s in (vectors[gone] @ vectors[keep].T).max(1)
    ]
    assert store.tracklets(global_ids=[gone]) == [] and store.prototypes(global_ids=[gone]) == []
    assert len(store.tracklets(global_ids=[keep])) == 3 and len(list(store.boxes(session, "cam"))) == 15
    assert store.identity_count() == 1
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert not any(v in on_disk for v in erased)
    store.close()
    reopened = EmbeddingStore(path, dim=16, index=index)
    assert {g for g, _, _ in reopened.prototypes()} == {keep}
    assert reopened.new_identity(1.0) > gone  # erased ids are never handed out again
    reopened.close()
