"""`reid-pipeline forget`: an identity erased from store, faiss index, exports, thumbnails and videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
from cli_runner import run_cli

from pipeline.search import RunSearch
from pipeline.store import EmbeddingStore
from samples.queries import person_queries


def _all_bytes(out: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _frame(video: Path, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index - 1)
    ok, image = capture.read()
    capture.release()
    assert ok
    return image.astype(np.int16)


def test_forget_erases_every_trace_of_an_identity(pets_finished_run, tmp_path):
    source, manifest = pets_finished_run
    out = tmp_path / "out"
    shutil.copytree(source, out)
    # The person to erase: one whose crop the search finds first, so "not found afterwards" means something.
    with RunSearch(out) as search:
        query, gid = next(
            (q, hits[0].global_id)
            for q in person_queries(manifest)
            if (hits := search.by_image([q.image], top=1))
        )
    store_path = out / "store" / "gallery.sqlite"
    store = EmbeddingStore(store_path, dim=EmbeddingStore.stored_dim(store_path))
    vectors = [v.astype("<f4").tobytes() for _, _, v in store.prototypes(global_ids=[gid])]
    store.close()
    assert vectors
    before = _all_bytes(out)
    assert all(any(v in data for data in before.values()) for v in vectors)  # the check below can fail
    tracks = json.loads((out / "tracks.json").read_text())
    identity = next(i for i in tracks["identities"] if i["global_id"] == gid)
    thumbnails = [out / p for a in identity["appearances"] for p in a["thumbnails"]]
    assert thumbnails and all(p.is_file() for p in thumbnails)
    camera = identity["appearances"][0]["camera"]
    boxes = [b for a in identity["appearances"] if a["camera"] == camera for b in a["boxes"]]
    box_frame, *box = max(boxes, key=lambda b: b[4] - b[2])  # the tallest: most of the person to hide
    frames_before = {
        c: int(cv2.VideoCapture(str(out / "videos" / f"{c}.avi")).get(cv2.CAP_PROP_FRAME_COUNT))
        for c in ("left", "right")
    }

    result = run_cli("forget", str(out), str(gid), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"forgot identities {gid}" in result.stdout

    after = _all_bytes(out)
    for path, data in after.items():
        assert not any(v in data for v in vectors), f"{path} still holds a feature of identity {gid}"
    assert not any(p.exists() for p in thumbnails)
    rewritten = json.loads((out / "tracks.json").read_text())
    assert gid not in {i["global_id"] for i in rewritten["identities"]}
    assert len(rewritten["identities"]) == len(tracks["identities"]) - 1
    for name in ("left", "right"):
        ids = {int(line.split(",")[1]) for line in (out / "mot" / f"{name}.txt").read_text().splitlines()}
        assert gid not in ids
    with RunSearch(out) as search:
        assert gid not in [h.global_id for h in search.by_image([query.image], top=100)]
        assert search.store.tracklets(global_ids=[gid]) == []
        assert search.store.prototypes(global_ids=[gid]) == []
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert all(e.get("global_id") != gid for e in events)
    audit = events[-1]
    assert audit["kind"] == "forgotten" and audit["global_ids"] == [gid]
    counts = {"prototypes", "tracklets", "boxes", "thumbnails"}
    assert set(audit) == {"kind", "global_ids", "videos_blurred", "videos_marked", "emitted_at", *counts}
    assert all(isinstance(audit[k], int) for k in counts)  # how many records went, not the records
    # The videos were re-rendered, frame for frame, with the person pixelated and the rest left alone.
    for name, count in frames_before.items():
        assert (
            int(cv2.VideoCapture(str(out / "videos" / f"{name}.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == count
        )
    assert audit["videos_blurred"] == sorted({a["camera"] for a in identity["appearances"]})
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    old = _frame(source / "videos" / f"{camera}.avi", box_frame)[y1:y2, x1:x2]
    new = _frame(out / "videos" / f"{camera}.avi", box_frame)[y1:y2, x1:x2]
    assert np.abs(old - new).mean() > 8.0
    assert new.std(axis=(0, 1)).mean() < old.std(axis=(0, 1)).mean()  # detail gone, not just shifted
    assert (out / "report.html").is_file() and f"ID {gid} " not in (out / "report.html").read_text()


def test_forgetting_an_unknown_identity_is_one_line(pets_finished_run, tmp_path):
    source, _ = pets_finished_run
    out = tmp_path / "out"
    shutil.copytree(source, out)
    result = run_cli("forget", str(out), "99999", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "99999" in result.stderr
    assert (out / "tracks.json").read_bytes() == (source / "tracks.json").read_bytes()
