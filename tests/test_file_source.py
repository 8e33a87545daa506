"""FileSource and create_source on real footage and on small videos the tests write themselves."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline import build
from pipeline.config import CameraConfig
from pipeline.errors import SourceError
from pipeline.sources import FileSource, ImageSequenceSource, SourceSpec, create_source, parse_source


def _write_video(path: Path, n_frames: int, fps: float) -> list[np.ndarray]:
    """Write an MJPG AVI of noise frames (large next to the header); return the written images."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    images = []
    for _ in range(n_frames):
        image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        writer.write(image)
        images.append(image)
    writer.release()
    return images


@pytest.fixture
def pets_video(assets: Path) -> Path:
    return assets / "data" / "PETS09-S2L1" / "vtest.avi"


def _read_directly(path: Path, n: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    images = [capture.read()[1] for _ in range(n)]
    capture.release()
    return images


def test_pets_indices_timestamps_and_pixels(pets_video: Path):
    expected = _read_directly(pets_video, 5)
    with FileSource("cam_a", pets_video, max_frames=5) as source:
        frames = list(source.frames())
        assert source.fps > 0
        assert source.frame_count > 5
    assert [f.index for f in frames] == [1, 2, 3, 4, 5]
    assert [f.timestamp for f in frames] == pytest.approx([(f.index - 1) / source.fps for f in frames])
    assert all(f.camera_id == "cam_a" for f in frames)
    for frame, image in zip(frames, expected, strict=True):
        assert np.array_equal(frame.image, image)
    assert source.state == "ended"
    assert (source.frames_failed, source.frames_skipped, source.frames_read) == (0, 0, 5)


def test_start_frame_keeps_file_indices(pets_video: Path):
    expected = _read_directly(pets_video, 8)
    source = FileSource("cam_a", pets_video, start_frame=5, max_frames=3)
    source.open()
    frames = list(source.frames())
    assert [f.index for f in frames] == [5, 6, 7]
    assert frames[0].timestamp == pytest.approx(4 / source.fps)
    assert np.array_equal(frames[0].image, expected[4])


def test_fps_override_sets_timestamps(pets_video: Path):
    with FileSource("cam_a", pets_video, max_frames=3, fps=7.0) as source:
        frames = list(source.frames())
    assert source.fps == 7.0
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 1 / 7, 2 / 7])


def test_fps_cap_skips_and_counts(tmp_path: Path):
    path = tmp_path / "ten_fps.avi"
    _write_video(path, 20, fps=10.0)
    with FileSource("cam_b", path, fps_cap=3.0) as source:
        kept = list(source.frames())
    # timeline 0.0, 0.1, ... 1.9 s; a frame is kept once 1/3 s has passed since the last kept one
    assert [f.index for f in kept] == [1, 5, 9, 13, 17]
    assert source.frames_skipped == 20 - len(kept)
    assert source.frames_read == 20
    gaps = np.diff([f.timestamp for f in kept])
    assert np.all(gaps >= 1 / 3 - 1e-9)


def test_fps_cap_above_source_rate_keeps_everything(tmp_path: Path):
    path = tmp_path / "five_fps.avi"
    _write_video(path, 6, fps=5.0)
    with FileSource("cam_b", path, fps_cap=25.0) as source:
        assert [f.index for f in source.frames()] == [1, 2, 3, 4, 5, 6]
    assert source.frames_skipped == 0


def test_missing_file_names_camera_and_path(tmp_path: Path):
    missing = tmp_path / "nowhere.mp4"
    source = FileSource("cam_missing", missing)
    with pytest.raises(SourceError, match="cam_missing") as info:
        source.open()
    assert str(missing) in str(info.value)


def test_not_a_video_is_a_source_error(tmp_path: Path):
    fake = tmp_path / "notes.avi"
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(SourceError, match=r"cam_x.*notes\.avi"):
        FileSource("cam_x", fake).open()


def test_truncated_video_ends_cleanly(tmp_path: Path):
    path = tmp_path / "whole.avi"
    _write_video(path, 20, fps=5.0)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with FileSource("cam_cut", cut) as source:
        frames = list(source.frames())
    assert 0 < len(frames) < 20
    assert [f.index for f in frames] == list(range(1, len(frames) + 1))
    assert source.frames_failed > 0  # the header still promises 20 frames
    assert len(frames) + source.frames_failed <= 20
    assert source.state == "ended"


def test_close_stops_iteration(tmp_path: Path):
    path = tmp_path / "clip.avi"
    _write_video(path, 10, fps=5.0)
    source = FileSource("cam_c", path)
    source.open()
    seen = []
    for frame in source.frames():
        seen.append(frame.index)
        if frame.index == 3:
            source.close()
    assert seen == [1, 2, 3]
    source.close()  # a second close is harmless


def test_create_source_builds_file_source(tmp_path: Path):
    path = tmp_path / "clip.avi"
    _write_video(path, 3, fps=5.0)
    source = create_source("cam_f", str(path), max_frames=2)
    assert isinstance(source, FileSource)
    with source:
        assert [f.index for f in source.frames()] == [1, 2]


@pytest.mark.parametrize("spec", ["rtsp://127.0.0.1:8554/live", "https://example.com/cam.m3u8", 0, "1"])
def test_create_source_sends_streams_and_webcams_to_live_source(monkeypatch, spec):
    calls = []

    class FakeLiveSource:
        def __init__(self, camera_id, source, **kwargs):
            calls.append((camera_id, source, kwargs))

    module = types.ModuleType("pipeline.sources.live")
    module.LiveSource = FakeLiveSource
    monkeypatch.setitem(sys.modules, "pipeline.sources.live", module)
    source = create_source("cam_live", spec, fps_cap=5.0)
    assert isinstance(source, FakeLiveSource)
    expected = int(spec) if isinstance(spec, str) and spec.isdigit() else spec
    assert calls == [("cam_live", expected, {"fps_cap": 5.0})]


def test_create_source_rejects_unknown_scheme():
    with pytest.raises(SourceError, match=r"cam_u.*ftp"):
        create_source("cam_u", "ftp://example.com/video.mp4")


def test_loop_keeps_counting_indices_and_time(tmp_path: Path):
    path = tmp_path / "clip.avi"
    _write_video(path, 6, fps=10.0)
    source = FileSource("cam", path, max_frames=15, loop=True, time_offset_s=100.0)
    frames = list(source.frames())
    assert [f.index for f in frames] == list(range(1, 16))
    assert frames[7].timestamp == pytest.approx(100.7)
    assert np.array_equal(frames[6].image, frames[0].image)  # lap 2 starts over
    assert source.frames_failed == 0


@pytest.mark.parametrize(
    ("spec", "kind", "target"),
    [
        ("file:///data/x.mp4", "video", Path("/data/x.mp4")),
        ("file://localhost/data/my%20clip.mp4", "video", Path("/data/my clip.mp4")),
        ("~/videos/a.mp4", "video", Path.home() / "videos/a.mp4"),
        ("videos/a.mp4", "video", Path("videos/a.mp4")),
        ("0", "webcam", 0),
        (" 2 ", "webcam", 2),
        (0, "webcam", 0),
        ("rtsp://admin:pw@cam/x", "stream", "rtsp://admin:pw@cam/x"),
        ("HTTPS://cam/live.m3u8", "stream", "HTTPS://cam/live.m3u8"),
        ("img1/%06d.jpg", "images", Path("img1/%06d.jpg")),
        ("~/frames/*.png", "images", Path.home() / "frames/*.png"),
    ],
)
def test_parse_source_decides_the_kind(spec, kind, target):
    assert parse_source("cam", spec) == SourceSpec(kind, target)


def test_parse_source_takes_an_existing_folder_for_an_image_sequence(tmp_path: Path):
    assert parse_source("cam", str(tmp_path)) == SourceSpec("images", tmp_path)
    assert parse_source("cam", f"file://{tmp_path}").kind == "images"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (True, "must be a path, URL or webcam index"),
        (-1, "webcam index must be >= 0"),
        ("", "source is empty"),
        ("ftp://admin:s3cret@host/x.mp4", "unsupported source URL scheme 'ftp'"),
        ("rtps://admin:s3cret@host/x", "unsupported source URL scheme 'rtps'"),
        ("rtsp:/admin:s3cret@host/x", "looks like a rtsp URL without '//'"),
        ("file://nas/admin:s3cret@x.mp4", "only local files"),
    ],
)
def test_parse_source_rejects_what_it_cannot_read_without_leaking_passwords(spec, message):
    with pytest.raises(SourceError, match="camera cam_p") as info:
        parse_source("cam_p", spec)
    assert message in str(info.value)
    assert "s3cret" not in str(info.value)


def test_build_source_reads_file_urls_and_tilde_paths(tmp_path: Path, monkeypatch):
    path = tmp_path / "clip.avi"
    _write_video(path, 3, fps=5.0)
    source = build.build_source(CameraConfig(id="cam_u", source=f"file://{path}"), max_frames=2)
    assert isinstance(source, FileSource)
    with source:
        assert [f.index for f in source.frames()] == [1, 2]
    monkeypatch.setenv("HOME", str(tmp_path))
    source = build.build_source(CameraConfig(id="cam_t", source="~/clip.avi"))
    assert isinstance(source, FileSource) and source.path == path


def test_build_source_gives_image_sequences_the_file_options(tmp_path: Path):
    (tmp_path / "img1").mkdir()
    for i in range(1, 5):
        cv2.imwrite(str(tmp_path / f"img1/{i:06d}.png"), np.zeros((8, 8, 3), np.uint8))
    camera = CameraConfig(id="cam_s", source=f"{tmp_path}/img1/%06d.png", start_frame=2, fps=4.0)
    source = build.build_source(camera, max_frames=2)
    assert isinstance(source, ImageSequenceSource)
    with source:
        frames = list(source.frames())
    assert [f.index for f in frames] == [2, 3]
    assert source.fps == 4.0  # no seqinfo.ini: the camera's fps is the sequence's rate


def test_a_file_named_like_a_webcam_index_needs_a_path(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "0").write_bytes(b"a video named 0")
    assert parse_source("cam", "0") == SourceSpec("webcam", 0)
    assert parse_source("cam", "./0") == SourceSpec("video", Path("0"))
