"""Image sequences as cameras: folders of frames, printf patterns and globs, as MOTChallenge ships img1/."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_runner import run_cli, write_run_config

from pipeline.errors import SourceError
from pipeline.sources import ImageSequenceSource, create_source

PETS_SEQINFO = "[Sequence]\nname=PETS09-S2L1\nimDir=img1\nframeRate=7\nseqLength=795\nimExt=.jpg\n"


def _write_frames(folder: Path, names: list[str], size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Write one distinct noise image per name (PNG is lossless, so pixels can be compared)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for name in names:
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / name), image)
        images.append(image)
    return images


def _read(source: ImageSequenceSource) -> list:
    with source:
        return list(source.frames())


def test_folder_in_natural_order_with_pixels(tmp_path: Path):
    names = ["f1.png", "f2.png", "f10.png", "f11.png"]
    images = _write_frames(tmp_path / "frames", names)
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")
    frames = _read(ImageSequenceSource("cam_i", tmp_path / "frames"))
    assert [f.index for f in frames] == [1, 2, 3, 4]
    for frame, image in zip(frames, images, strict=True):  # f2 before f10
        assert np.array_equal(frame.image, image)
    assert all(f.camera_id == "cam_i" for f in frames)


def test_seqinfo_frame_rate_gives_the_timestamps(tmp_path: Path):
    _write_frames(tmp_path / "seq" / "img1", [f"{i:06d}.png" for i in range(1, 5)])
    (tmp_path / "seq" / "seqinfo.ini").write_text(PETS_SEQINFO)
    source = ImageSequenceSource("cam", tmp_path / "seq" / "img1", fps_cap=100.0)
    frames = _read(source)
    assert source.fps == 7.0
    assert [f.timestamp for f in frames] == pytest.approx([0, 1 / 7, 2 / 7, 3 / 7])
    # The MOTChallenge sequence folder itself reads its img1/.
    assert len(_read(ImageSequenceSource("cam", tmp_path / "seq"))) == 4


@pytest.mark.parametrize(
    ("kwargs", "expected_fps"),
    [({}, 25.0), ({"fps_cap": 5.0}, 5.0), ({"fps": 12.0, "fps_cap": 50.0}, 12.0)],
    ids=["default", "fps-as-rate", "explicit-rate"],
)
def test_frame_rate_without_seqinfo(tmp_path: Path, kwargs, expected_fps):
    _write_frames(tmp_path / "frames", ["a.png", "b.png"])
    source = ImageSequenceSource("cam", tmp_path / "frames", **kwargs)
    frames = _read(source)
    assert source.fps == expected_fps
    assert frames[1].timestamp == pytest.approx(1 / expected_fps)


def test_printf_pattern_keeps_numbers_and_counts_gaps_as_failed(tmp_path: Path):
    images = _write_frames(tmp_path / "img1", ["000001.png", "000002.png", "000004.png", "x.png"])
    source = ImageSequenceSource("cam", tmp_path / "img1" / "%06d.png")
    frames = _read(source)
    assert [f.index for f in frames] == [1, 2, 4]  # 000003 is missing: indices stay the file numbers
    assert np.array_equal(frames[2].image, images[2])
    assert source.frames_failed == 1


def test_glob_in_natural_order(tmp_path: Path):
    images = _write_frames(tmp_path / "frames", ["c9.png", "c10.png", "d1.jpg"])
    frames = _read(ImageSequenceSource("cam", tmp_path / "frames" / "c*.png"))
    assert len(frames) == 2
    assert np.array_equal(frames[0].image, images[0]) and np.array_equal(frames[1].image, images[1])


def test_start_frame_max_frames_cap_loop_and_offset(tmp_path: Path):
    images = _write_frames(tmp_path / "frames", [f"{i:03d}.png" for i in range(1, 7)])
    frames = _read(ImageSequenceSource("cam", tmp_path / "frames", start_frame=3, max_frames=2, fps=10.0))
    assert [f.index for f in frames] == [3, 4]
    assert frames[0].timestamp == pytest.approx(0.2)
    assert np.array_equal(frames[0].image, images[2])

    source = ImageSequenceSource("cam", tmp_path / "frames", fps=10.0, fps_cap=5.0)
    assert [f.index for f in _read(source)] == [1, 3, 5]
    assert source.frames_skipped == 3

    looped = _read(
        ImageSequenceSource(
            "cam", tmp_path / "frames", fps=10.0, loop=True, max_frames=14, time_offset_s=100.0
        )
    )
    assert [f.index for f in looped] == list(range(1, 15))
    assert looped[7].timestamp == pytest.approx(100.7)
    assert np.array_equal(looped[6].image, images[0])  # lap 2 starts over


def test_corrupt_and_odd_sized_images_count_as_failed_frames(tmp_path: Path):
    folder = tmp_path / "img1"
    _write_frames(folder, [f"{i:06d}.jpg" for i in range(1, 8)])
    (folder / "000002.jpg").write_bytes(b"not an image at all")
    data = (folder / "000004.jpg").read_bytes()
    (folder / "000004.jpg").write_bytes(data[: len(data) // 2])  # cut short
    _write_frames(tmp_path / "other", ["big.jpg"], size=(96, 128))
    (tmp_path / "other" / "big.jpg").replace(folder / "000006.jpg")
    source = ImageSequenceSource("cam", folder / "%06d.jpg")
    frames = _read(source)
    assert [f.index for f in frames] == [1, 3, 5, 7]
    assert source.frames_failed == 3
    assert source.state == "ended"


def test_a_sequence_of_nothing_but_corrupt_images_does_not_loop_forever(tmp_path: Path):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "1.png").write_bytes(b"garbage")
    source = ImageSequenceSource("cam", tmp_path / "frames", loop=True)
    assert _read(source) == []
    assert source.frames_failed == 1


@pytest.mark.parametrize(
    ("make", "spec", "message"),
    [
        (lambda root: (root / "empty").mkdir(), "empty", "holds no images"),
        (lambda root: (root / "empty").mkdir(), "empty/%06d.jpg", "matches no image file"),
        (lambda root: (root / "empty").mkdir(), "empty/*.png", "matches no image file"),
        (lambda root: None, "missing/%06d.jpg", "does not exist"),
    ],
    ids=["empty-folder", "pattern-no-match", "glob-no-match", "pattern-no-folder"],
)
def test_nothing_to_read_is_a_source_error_naming_the_camera(tmp_path: Path, make, spec, message):
    make(tmp_path)
    source = create_source("cam_empty", str(tmp_path / spec))
    with pytest.raises(SourceError, match=rf"camera cam_empty: .*{message}"):
        source.open()


@pytest.fixture
def pets_sequence(tmp_path: Path, assets: Path) -> Path:
    """A MOTChallenge-style sequence: seq/img1/000001.jpg.. from PETS, seqinfo.ini, one frame corrupt."""
    capture = cv2.VideoCapture(str(assets / "data/PETS09-S2L1/vtest.avi"))
    (tmp_path / "seq/img1").mkdir(parents=True)
    for i in range(1, 6):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(tmp_path / f"seq/img1/{i:06d}.jpg"), image)
    capture.release()
    (tmp_path / "seq/img1/000003.jpg").write_bytes(b"corrupt")
    (tmp_path / "seq/seqinfo.ini").write_text(PETS_SEQINFO)
    write_run_config(
        tmp_path,
        assets,
        "  - id: cam_seq\n    source: seq/img1/%06d.jpg\n",
    )
    return tmp_path


def test_cli_runs_a_motchallenge_image_sequence(pets_sequence: Path):
    result = run_cli("-q", "run", "cameras.yaml", "-o", "out", "--no-progress", cwd=pets_sequence)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    info = json.loads((pets_sequence / "out/run.json").read_text())
    camera = info["cameras"]["cam_seq"]
    assert (camera["frames_processed"], camera["frames_failed"], camera["fps"]) == (4, 1, 7.0)
    frames = {int(line.split(",")[0]) for line in (pets_sequence / "out/mot/cam_seq.txt").open()}
    assert frames <= {1, 2, 4, 5} and frames  # the MOT file keeps the sequence's frame numbers
    video = cv2.VideoCapture(str(pets_sequence / "out/videos/cam_seq.avi"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_cli_empty_folder_is_one_line(pets_sequence: Path):
    (pets_sequence / "no_frames").mkdir()
    config = pets_sequence / "cameras.yaml"
    config.write_text(config.read_text().replace("seq/img1/%06d.jpg", "no_frames/"))
    result = run_cli("run", "cameras.yaml", "-o", "out", cwd=pets_sequence)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "camera cam_seq" in lines[0] and "no_frames holds no images" in lines[0]
