"""Thumbnails: the best crops per tracklet by quality, bounded in count and size, listed in tracks.json."""

from __future__ import annotations

import json

import cv2
import numpy as np

from pipeline.crop_sampler import CropSampler
from pipeline.messages import Crop, Frame, Tracks
from pipeline.sinks.exports import write_exports
from pipeline.store import EmbeddingStore
from pipeline.thumbnails import ThumbnailKeeper, remove_thumbnails, thumbnails_of


def _crop(track_id: int, frame: int, quality: float, height: int = 300) -> Crop:
    image = np.full((height, height // 2, 3), frame % 256, np.uint8)
    return Crop("cam", track_id, frame, frame / 10, image, quality)


def test_keeps_the_best_crops_of_each_track_bounded_in_count_and_size(tmp_path):
    keeper = ThumbnailKeeper(tmp_path / "thumbnails" / "cam", per_track=3, size=64)
    qualities = [0.2, 0.9, 0.5, 0.1, 0.95, 0.3, 0.6]
    for frame, quality in enumerate(qualities, start=1):
        keeper.add(_crop(7, frame, quality))
    keeper.add(_crop(8, 1, 0.4))
    kept = thumbnails_of(tmp_path, "cam", 7)
    assert [t.quality for t in kept] == [0.95, 0.9, 0.6]
    assert [t.frame for t in kept] == [5, 2, 7]
    assert sorted(p.name for p in (tmp_path / "thumbnails/cam/7").glob("*.jpg")) == [
        "000002.jpg",
        "000005.jpg",
        "000007.jpg",
    ]
    image = cv2.imread(str(tmp_path / kept[0].path))
    assert max(image.shape[:2]) == 64 and image.shape[0] == 2 * image.shape[1]
    assert [t.frame for t in thumbnails_of(tmp_path, "cam", 8)] == [1]
    assert remove_thumbnails(tmp_path, "cam", 7) == 3
    assert thumbnails_of(tmp_path, "cam", 7) == [] and not (tmp_path / "thumbnails/cam/7").exists()


def test_a_new_keeper_continues_from_the_index_on_disk(tmp_path):
    folder = tmp_path / "thumbnails" / "cam"
    first = ThumbnailKeeper(folder, per_track=2, size=32)
    first.add(_crop(1, 1, 0.5))
    first.add(_crop(1, 2, 0.7))
    second = ThumbnailKeeper(folder, per_track=2, size=32)
    assert not second.add(_crop(1, 3, 0.4))
    assert second.add(_crop(1, 4, 0.6))
    assert [t.frame for t in thumbnails_of(tmp_path, "cam", 1)] == [2, 4]
    assert len(list((folder / "1").glob("*.jpg"))) == 2


def test_the_sampler_offers_its_crops_with_their_quality(tmp_path):
    keeper = ThumbnailKeeper(tmp_path / "thumbnails" / "cam", per_track=2, size=128)
    sampler = CropSampler(min_height=64, every_k=1, thumbnails=keeper)
    image = np.random.default_rng(0).integers(0, 255, (400, 400, 3), np.uint8)
    for index, (height, conf) in enumerate([(80, 0.9), (200, 0.9), (120, 0.5), (64, 0.99)], start=1):
        tracks = Tracks(
            "cam",
            index,
            index / 10,
            np.array([[50, 50, 50 + height / 2, 50 + height]], np.float32),
            np.array([conf], np.float32),
            np.array([3], np.int64),
        )
        sampler.update(Frame("cam", index, index / 10, image), tracks)
    kept = thumbnails_of(tmp_path, "cam", 3)
    assert [t.frame for t in kept] == [2, 1]  # quality: size (saturating at 128 px) x confidence
    assert kept[0].quality > kept[1].quality


def test_tracks_json_lists_each_appearance_s_thumbnails(tmp_path):
    store = EmbeddingStore(None, dim=4)
    session = store.begin_session()
    gid = store.new_identity(0.0)
    for track_id in (1, 2):
        store.upsert_tracklet(
            session,
            "cam",
            track_id,
            global_id=gid,
            first_frame=1,
            last_frame=2,
            first_time=0.1,
            last_time=0.2,
        )
        store.add_boxes([(session, "cam", track_id, 1, 1.0, 2.0, 30.0, 60.0, 0.9)])
    keeper = ThumbnailKeeper(tmp_path / "thumbnails" / "cam", per_track=3, size=32)
    keeper.add(_crop(1, 1, 0.4))
    keeper.add(_crop(1, 2, 0.8))
    write_exports(store, session, [{"id": "cam", "source": "a.mp4", "fps": 10.0, "frames": 2}], tmp_path)
    tracks = json.loads((tmp_path / "tracks.json").read_text())
    assert tracks["schema_version"] == 1
    appearances = {a["local_track_id"]: a for a in tracks["identities"][0]["appearances"]}
    assert appearances[1]["thumbnails"] == ["thumbnails/cam/1/000002.jpg", "thumbnails/cam/1/000001.jpg"]
    assert appearances[2]["thumbnails"] == []
    assert all((tmp_path / p).is_file() for p in appearances[1]["thumbnails"])


def test_an_identity_has_one_box_a_frame_where_its_next_track_took_over(tmp_path):
    store = EmbeddingStore(None, dim=4)
    session = store.begin_session()
    gid = store.new_identity(0.0)
    for track_id, first, last in ((1, 1, 3), (2, 2, 4)):  # track 2 took over at frame 2
        store.upsert_tracklet(
            session, "cam", track_id, global_id=gid, first_frame=first, last_frame=last,
            first_time=first / 10, last_time=last / 10,
        )  # fmt: skip
        store.add_boxes(
            [
                (session, "cam", track_id, f, 10.0 * track_id, 2.0, 30.0, 60.0, 0.9)
                for f in range(first, last + 1)
            ]
        )
    write_exports(store, session, [{"id": "cam", "source": "a.mp4", "fps": 10.0, "frames": 4}], tmp_path)
    rows = [line.split(",")[:3] for line in (tmp_path / "mot" / "cam.txt").read_text().splitlines()]
    assert sorted(rows) == [
        ["1", "1", "10.00"],
        ["2", "1", "20.00"],
        ["3", "1", "20.00"],
        ["4", "1", "20.00"],
    ]
