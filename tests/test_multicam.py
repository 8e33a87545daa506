"""Multi-camera sets cut from one annotated video: videos, per-camera ground truth, manifest, CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from cli_runner import run_cli

from pipeline.errors import PipelineError
from pipeline.motchallenge import read_mot_txt, read_seqinfo
from samples.multicam import (
    Camera,
    CameraSpec,
    crop_ground_truth,
    main,
    make_multicam,
    parse_camera,
    preset_cameras,
    source_length,
)

FRAMES = 60


def _read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def pets(assets: Path) -> Path:
    """The PETS09-S2L1 source folder."""
    return assets / "data" / "PETS09-S2L1"


@pytest.fixture(scope="module")
def overlap_set(pets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-frame overlap split of PETS09-S2L1; returns the manifest path."""
    out = tmp_path_factory.mktemp("overlap")
    return make_multicam(pets / "vtest.avi", out, preset_cameras("overlap", FRAMES), max_frames=FRAMES)


def test_overlap_videos_gt_and_manifest(overlap_set: Path, pets: Path) -> None:
    manifest = yaml.safe_load(overlap_set.read_text())
    cams = {c["id"]: c for c in manifest["cameras"]}
    assert list(cams) == ["left", "right"]
    # seqinfo.ini says 7 fps; the container says 10.
    assert manifest["source"]["fps"] == 7.0
    source_ids = set(read_mot_txt(pets / "gt" / "gt.txt")[:, 1].astype(int))
    ids = {}
    for cam_id, cam in cams.items():
        x0, y0, x1, y1 = cam["crop"]
        frames = _read_video(overlap_set.parent / cam["video"])
        assert len(frames) == FRAMES == cam["frames"]
        assert frames[0].shape == (y1 - y0, x1 - x0, 3)
        assert cam["fps"] == 7.0 and cam["frame_offset"] == 0
        info = read_seqinfo(overlap_set.parent / cam["seqinfo"])
        assert (int(info["imWidth"]), int(info["imHeight"]), int(info["seqLength"])) == (
            x1 - x0,
            y1 - y0,
            FRAMES,
        )
        gt = read_mot_txt(overlap_set.parent / cam["gt"])
        assert gt.shape[1] == 9 and len(gt) == cam["boxes"] > 0
        assert gt[:, 0].min() >= 1 and gt[:, 0].max() <= FRAMES
        assert np.all(gt[:, 2:4] >= 0)
        assert np.all(gt[:, 2] + gt[:, 4] <= x1 - x0 + 1e-6)
        assert np.all(gt[:, 3] + gt[:, 5] <= y1 - y0 + 1e-6)
        assert np.all(gt[:, 8] >= 0.3) and np.all(gt[:, 7] == 1)
        ids[cam_id] = set(gt[:, 1].astype(int))
        assert ids[cam_id] <= source_ids
    assert cams["left"]["crop"][0] == 0 and cams["right"]["crop"][2] == 768
    assert ids["left"] & ids["right"], "the overlap zone should show some people in both cameras"


def test_overlap_video_is_the_crop(overlap_set: Path, pets: Path) -> None:
    right = yaml.safe_load(overlap_set.read_text())["cameras"][1]
    x0, y0, x1, y1 = right["crop"]
    written = _read_video(overlap_set.parent / right["video"])[10].astype(np.float32)
    capture = cv2.VideoCapture(str(pets / "vtest.avi"))
    for _ in range(11):
        _, source = capture.read()
    capture.release()
    right_err = np.abs(written - source[y0:y1, x0:x1]).mean()
    left_err = np.abs(written - source[y0:y1, : x1 - x0]).mean()
    assert right_err < 6 and right_err < left_err / 2


def test_gt_boxes_are_the_source_boxes_in_camera_coordinates(overlap_set: Path, pets: Path) -> None:
    right = yaml.safe_load(overlap_set.read_text())["cameras"][1]
    x0 = right["crop"][0]
    source = read_mot_txt(pets / "gt" / "gt.txt")
    gt = read_mot_txt(overlap_set.parent / right["gt"])
    full = gt[gt[:, 8] == 1]  # wholly inside the crop: same size, shifted by the crop origin
    assert len(full) > 0
    for frame, pid, x, y, w, h in full[:20, :6]:
        row = source[(source[:, 0] == frame) & (source[:, 1] == pid)][0]
        np.testing.assert_allclose([row[2] - x0, row[3], row[4], row[5]], [x, y, w, h], atol=1e-3)


def test_relay_split_on_tud_campus(assets: Path, tmp_path: Path) -> None:
    source = assets / "data" / "TUD-Campus"
    length = source_length(source / "TUD-Campus.mp4")
    assert length == 71
    manifest_path = make_multicam(
        source / "TUD-Campus.mp4", tmp_path, preset_cameras("relay", length), video_format="avi"
    )
    cams = yaml.safe_load(manifest_path.read_text())["cameras"]
    assert [(c["frames"], c["frame_offset"], c["fps"]) for c in cams] == [(35, 0, 25.0), (36, 35, 25.0)]
    source_gt = read_mot_txt(source / "gt" / "gt.txt")
    for cam in cams:
        assert len(_read_video(tmp_path / cam["video"])) == cam["frames"]
        gt = read_mot_txt(tmp_path / cam["gt"])
        assert gt[:, 0].min() >= 1 and gt[:, 0].max() <= cam["frames"]
        # Every camera box comes from a source box of the same id at the shifted frame.
        src_keys = set(zip(source_gt[:, 0].astype(int), source_gt[:, 1].astype(int)))
        assert all((int(f) + cam["frame_offset"], int(i)) in src_keys for f, i in gt[:, :2])


def test_crop_ground_truth_clips_and_drops() -> None:
    cam = Camera(id="c", x0=100, y0=0, x1=300, y1=200, first=3, last=10)
    gt = np.array(
        [
            [3, 1, 120, 10, 40, 80, 1, -1, -1, -1],  # inside
            [4, 2, 80, 10, 40, 80, 1, -1, -1, -1],  # half outside (left): kept, clipped
            [5, 3, 70, 10, 40, 80, 1, -1, -1, -1],  # a quarter visible: dropped
            [6, 4, 297, 10, 40, 80, 1, -1, -1, -1],  # 3 px wide strip: dropped
            [2, 5, 120, 10, 40, 80, 1, -1, -1, -1],  # before the camera's frames
            [11, 6, 120, 10, 40, 80, 1, -1, -1, -1],  # after them
        ],
        dtype=float,
    )
    out = crop_ground_truth(gt, cam, min_visible=0.3, min_size=4)
    np.testing.assert_allclose(out[:, :7], [[1, 1, 20, 10, 40, 80, 1], [2, 2, 0, 10, 20, 80, 1]])
    np.testing.assert_allclose(out[:, 8], [1.0, 0.5])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a:0,0,0.5,1", CameraSpec("a", (0.0, 0.0, 0.5, 1.0))),
        ("cam_b:10,20,400,300:5-90", CameraSpec("cam_b", (10.0, 20.0, 400.0, 300.0), 5, 90)),
        ("c:0,0,1,1:100-", CameraSpec("c", (0.0, 0.0, 1.0, 1.0), 100, None)),
    ],
)
def test_parse_camera(text: str, expected: CameraSpec) -> None:
    assert parse_camera(text) == expected


@pytest.mark.parametrize("text", ["a", ":0,0,1,1", "a:0,0,1", "a:0,0,1,x", "a:0,0,1,1:5", "a:0,0,1,1:x-9"])
def test_parse_camera_rejects(text: str) -> None:
    with pytest.raises(PipelineError, match="--camera"):
        parse_camera(text)


def test_cli_explicit_cameras(pets: Path, tmp_path: Path) -> None:
    argv = [str(pets / "vtest.avi"), "-o", str(tmp_path), "--max-frames", "20"]
    argv += ["--camera", "top:0,0,768,300:1-10", "--camera", "bottom:0,0.5,1,1:6-"]
    assert main(argv) == 0
    cams = {c["id"]: c for c in yaml.safe_load((tmp_path / "multicam.yaml").read_text())["cameras"]}
    assert cams["top"]["crop"] == [0, 0, 768, 300] and cams["top"]["frames"] == 10
    assert cams["bottom"]["crop"] == [0, 288, 768, 576]
    assert (cams["bottom"]["frames"], cams["bottom"]["frame_offset"]) == (15, 5)
    assert len(_read_video(tmp_path / cams["bottom"]["video"])) == 15


def test_cli_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing.avi"), "-o", str(tmp_path / "out"), "--camera", "a:0,0,1,1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing.avi" in err and "\n" not in err


def _cli_error(result) -> str:
    """The single stderr line of a command that failed as a user error."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("camera_id", "expected"),
    [
        ("../../evil", "may use only letters"),
        ("..", "may not be '.' or '..'"),
        (".", "may not be '.' or '..'"),
        ("a/b", "may use only letters"),
        ("x" * 300, "at most 64"),
    ],
    ids=["traversal", "dotdot", "dot", "slash", "overlong"],
)
def test_cli_rejects_camera_ids_that_are_not_file_names(
    pets: Path, tmp_path: Path, camera_id: str, expected: str
) -> None:
    out = tmp_path / "a" / "b" / "out"
    result = run_cli(
        "make-multicam", str(pets / "vtest.avi"), "-o", str(out), "--max-frames", "5",
        "--camera", f"{camera_id}:0,0,0.5,0.5", cwd=tmp_path,
    )  # fmt: skip
    line = _cli_error(result)
    assert "--camera id" in line and expected in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == []  # nothing written, inside -o or outside it


def test_cli_output_that_is_a_file_is_one_line(pets: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    result = run_cli("make-multicam", str(pets / "vtest.avi"), "-o", str(target), "--max-frames", "5",
                     cwd=tmp_path)  # fmt: skip
    line = _cli_error(result)
    assert str(target) in line and "is a file" in line
    assert target.read_text() == "keep me"


def test_cli_gt_that_is_a_video_is_one_line(pets: Path, tmp_path: Path) -> None:
    video = str(pets / "vtest.avi")
    result = run_cli("make-multicam", video, "-o", str(tmp_path / "out"), "--gt", video, "--max-frames", "5",
                     cwd=tmp_path)  # fmt: skip
    line = _cli_error(result)
    assert "vtest.avi is not a text file" in line
    assert not (tmp_path / "out").exists()


def test_cli_seqinfo_that_is_a_video_is_one_line(pets: Path, tmp_path: Path) -> None:
    video = str(pets / "vtest.avi")
    result = run_cli("make-multicam", video, "-o", str(tmp_path / "out"), "--seqinfo", video, cwd=tmp_path)
    assert "seqinfo" in _cli_error(result)
