"""Multi-camera sets cut from one annotated video: videos, views, per-camera ground truth, manifest, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from cli_runner import run_cli

from pipeline.errors import PipelineError
from pipeline.motchallenge import read_mot_txt, read_seqinfo
from pipeline.tools.multicam import main, make_multicam, source_length
from pipeline.tools.virtual_cameras import (
    VIEW_PRESETS,
    Camera,
    CameraSpec,
    View,
    crop_ground_truth,
    parse_camera,
    parse_warp,
    preset_cameras,
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
    # A plain crop is a translation from source pixels to camera pixels.
    for cam in cams.values():
        x0, y0, x1, y1 = cam["crop"]
        assert cam["image_size"] == [x1 - x0, y1 - y0] and "view" not in cam
        np.testing.assert_allclose(cam["homography_from_source"], [[1, 0, -x0], [0, 1, -y0], [0, 0, 1]])


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


# --- views: perspective, rescale, colour -------------------------------------------------------------

SYNTHETIC_SIZE = (320, 240)
BACKGROUND = 100  # grey level of the synthetic source
# Foot points of the synthetic people (source pixels), each drawn as a white disc; they drift per frame.
FEET = np.array([[60, 80], [140, 70], [220, 90], [80, 170], [160, 200], [240, 150], [120, 125]], float)
DRIFT = np.array([3.0, 1.0])
PATCH = (260, 185, 300, 225)  # x0, y0, x1, y1 of a coloured square
PATCH_BGR = (40, 60, 200)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-frame 320x240 video of white discs at gt foot points and a red square, with gt and seqinfo."""
    root = tmp_path_factory.mktemp("synthetic")
    video = root / "source.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, SYNTHETIC_SIZE)
    rows = []
    for frame in range(1, 5):
        image = np.full((SYNTHETIC_SIZE[1], SYNTHETIC_SIZE[0], 3), BACKGROUND, np.uint8)
        image[PATCH[1] : PATCH[3], PATCH[0] : PATCH[2]] = PATCH_BGR
        for pid, (fx, fy) in enumerate(FEET + (frame - 1) * DRIFT, 1):
            cv2.circle(image, (round(fx), round(fy)), 4, (255, 255, 255), -1, lineType=cv2.LINE_AA)
            rows.append(f"{frame},{pid},{fx - 10:g},{fy - 50:g},20,50,1,-1,-1,-1")
        writer.write(image)
    writer.release()
    (root / "gt").mkdir()
    (root / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
    (root / "seqinfo.ini").write_text("[Sequence]\nname=synthetic\nframeRate=10\nseqLength=4\n")
    return video


def _blob_centres(image: np.ndarray) -> np.ndarray:
    """Centroids (N, 2) of the bright discs in a frame."""
    mask = (cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) > (BACKGROUND + 255) / 2).astype(np.uint8)
    _, _, stats, centroids = cv2.connectedComponentsWithStats(mask)
    return centroids[1:][stats[1:, cv2.CC_STAT_AREA] >= 5]


def _apply(homography, points: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(np.asarray(points, np.float64)[None], np.asarray(homography, float))[0]


SYNTHETIC_VIEWS = {
    "tilt_down": View(tilt=0.2, scale=0.75),
    "tilt_up": View(tilt=-0.15, scale=1.25),
    # A 6 degree rotation about the crop's centre with a slight perspective, in crop pixels.
    "matrix": View(homography=(0.9945, -0.1045, 15.6, 0.1045, 0.9945, -14.0, 0.0002, 0.0001, 1.0)),
}


@pytest.fixture(scope="module")
def synthetic_views(synthetic: Path) -> Path:
    """One camera per SYNTHETIC_VIEWS entry, all cropping (20, 10)-(300, 230); returns the manifest."""
    cameras = [CameraSpec(name, (20, 10, 300, 230), view=view) for name, view in SYNTHETIC_VIEWS.items()]
    return make_multicam(synthetic, synthetic.parent / "views", cameras)


@pytest.mark.parametrize("camera_id", list(SYNTHETIC_VIEWS))
def test_recorded_homography_maps_source_points_to_where_they_are_drawn(
    synthetic_views: Path, camera_id: str
) -> None:
    cam = {c["id"]: c for c in yaml.safe_load(synthetic_views.read_text())["cameras"]}[camera_id]
    width, height = cam["image_size"]
    frames = _read_video(synthetic_views.parent / cam["video"])
    assert len(frames) == 4 and frames[0].shape == (height, width, 3)
    matched = 0
    for index, image in enumerate(frames):
        expected = _apply(cam["homography_from_source"], FEET + index * DRIFT)
        inside = np.all((expected > 8) & (expected < [width - 8, height - 8]), axis=1)
        found = _blob_centres(image)
        for point in expected[inside]:
            assert np.linalg.norm(found - point, axis=1).min() < 1.0, (camera_id, index, point)
            matched += 1
        # No disc is drawn where the homography puts none (discs cut by the image edge included).
        assert all(np.linalg.norm(expected - c, axis=1).min() < 6 for c in found)
    assert matched >= 12


def test_homographies_compose_between_cameras(synthetic_views: Path) -> None:
    cams = {c["id"]: c for c in yaml.safe_load(synthetic_views.read_text())["cameras"]}
    a, b = cams["tilt_down"], cams["matrix"]
    image_a = _read_video(synthetic_views.parent / a["video"])[0]
    image_b = _read_video(synthetic_views.parent / b["video"])[0]
    a_to_b = np.asarray(b["homography_from_source"]) @ np.linalg.inv(a["homography_from_source"])
    seen_in_b = _blob_centres(image_b)
    mapped = _apply(a_to_b, _blob_centres(image_a))
    close = [np.linalg.norm(seen_in_b - p, axis=1).min() for p in mapped]
    assert sum(d < 1.5 for d in close) >= 5


@pytest.mark.parametrize("camera_id", list(SYNTHETIC_VIEWS))
def test_view_ground_truth_is_the_transformed_source_boxes(synthetic_views: Path, camera_id: str) -> None:
    cam = {c["id"]: c for c in yaml.safe_load(synthetic_views.read_text())["cameras"]}[camera_id]
    width, height = cam["image_size"]
    source = read_mot_txt(synthetic_views.parent.parent / "gt" / "gt.txt")
    gt = read_mot_txt(synthetic_views.parent / cam["gt"])
    expected = []
    for frame, pid, x, y, w, h in source[:, :6]:
        corners = _apply(cam["homography_from_source"], [[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
        (bx0, by0), (bx1, by1) = corners.min(0), corners.max(0)
        cx0, cy0, cx1, cy1 = max(bx0, 0), max(by0, 0), min(bx1, width), min(by1, height)
        visible = max(cx1 - cx0, 0) * max(cy1 - cy0, 0) / ((bx1 - bx0) * (by1 - by0))
        if visible >= 0.3 and cx1 - cx0 >= 4 and cy1 - cy0 >= 4:
            expected.append([frame, pid, cx0, cy0, cx1 - cx0, cy1 - cy0, visible])
    expected = np.array(sorted(expected, key=lambda r: (r[0], r[1])))
    assert len(gt) == len(expected) >= 12
    np.testing.assert_allclose(gt[:, :6], expected[:, :6], atol=2e-3)
    np.testing.assert_allclose(gt[:, 8], expected[:, 6], atol=2e-3)


def test_colour_shift_changes_pixel_statistics(synthetic: Path, tmp_path: Path) -> None:
    crop = (20, 10, 300, 230)
    cameras = [
        CameraSpec("plain", crop),
        CameraSpec("cast", crop, view=View(gain=(1.2, 1.0, 0.8), offset=(0, 10, 0))),
        CameraSpec("hue", crop, view=View(hue=120)),
    ]
    manifest = make_multicam(synthetic, tmp_path, cameras, video_format="avi")
    cams = {c["id"]: c for c in yaml.safe_load(manifest.read_text())["cameras"]}
    images = {name: _read_video(tmp_path / c["video"])[0].astype(np.float32) for name, c in cams.items()}
    # A colour-only view keeps the geometry: the crop's translation, the crop's boxes.
    for name in ("cast", "hue"):
        np.testing.assert_allclose(
            cams[name]["homography_from_source"], cams["plain"]["homography_from_source"]
        )
        np.testing.assert_array_equal(
            read_mot_txt(tmp_path / cams[name]["gt"]), read_mot_txt(tmp_path / cams["plain"]["gt"])
        )
    background = (slice(2, 30), slice(2, 30))  # top-left corner: no disc, no patch
    plain_bgr = images["plain"][background].reshape(-1, 3).mean(0)
    cast_bgr = images["cast"][background].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(
        cast_bgr, [plain_bgr[0] * 0.8, plain_bgr[1] + 10, plain_bgr[2] * 1.2], atol=2.5
    )
    # Hue: the red square turns 120 degrees (to green); grey stays grey.
    x0, y0, x1, y1 = (
        PATCH[0] - crop[0] + 5,
        PATCH[1] - crop[1] + 5,
        PATCH[2] - crop[0] - 5,
        PATCH[3] - crop[1] - 5,
    )
    hues = {}
    for name in ("plain", "hue"):
        hsv = cv2.cvtColor(images[name][y0:y1, x0:x1] / 255.0, cv2.COLOR_BGR2HSV)
        hues[name] = float(np.median(hsv[..., 0]))
    assert abs((hues["hue"] - hues["plain"] - 120 + 180) % 360 - 180) < 5, hues
    assert np.argmax(images["hue"][y0:y1, x0:x1].reshape(-1, 3).mean(0)) == 1  # G is now the largest
    np.testing.assert_allclose(images["hue"][background].mean(), images["plain"][background].mean(), atol=2)


@pytest.mark.parametrize(
    ("view", "box", "expected"),
    [
        (View(scale=0.5), [40, 20, 40, 80], [10, 10, 20, 40]),  # crop origin (20, 0), then halved
        (View(homography=(1, 0, 5, 0, 1, -10, 0, 0, 1)), [40, 20, 40, 80], [25, 10, 40, 80]),
        # Stretched twice as wide, then clipped to the 100 px wide image: a third of it stays.
        (View(homography=(2, 0, 0, 0, 1, 0, 0, 0, 1)), [60, 20, 30, 80], [80, 20, 20, 80]),
    ],
)
def test_crop_ground_truth_through_a_view(view: View, box: list[float], expected: list[float]) -> None:
    cam = Camera(id="c", x0=20, y0=0, x1=120, y1=200, first=1, last=5, view=view)
    out = crop_ground_truth(np.array([[1, 7, *box, 1, -1, -1, -1]], float), cam)
    np.testing.assert_allclose(out[0, 2:6], expected)


def test_boxes_behind_the_view_are_dropped() -> None:
    # Depth 1 - x/100 is negative right of x = 100: such a box has no image, whatever its projection.
    view = View(homography=(1, 0, 0, 0, 1, 0, -0.01, 0, 1))
    cam = Camera(id="c", x0=0, y0=0, x1=200, y1=200, first=1, last=1, view=view)
    gt = np.array([[1, 1, 10, 10, 20, 40, 1, -1, -1, -1], [1, 2, 150, 10, 20, 40, 1, -1, -1, -1]], float)
    assert crop_ground_truth(gt, cam)[:, 1].tolist() == [1]


def test_warped_pets_split(pets: Path, tmp_path: Path) -> None:
    manifest = make_multicam(
        pets / "vtest.avi", tmp_path, preset_cameras("warped", FRAMES), max_frames=FRAMES
    )
    cams = {c["id"]: c for c in yaml.safe_load(manifest.read_text())["cameras"]}
    left, right = cams["left"], cams["right"]
    assert "view" not in left and right["view"]["tilt"] == 0.15 and right["view"]["scale"] == 0.8
    assert right["image_size"] == [368, 460]  # 0.8 of the 460x576 crop
    frame = _read_video(tmp_path / right["video"])[3]
    assert frame.shape == (460, 368, 3)
    capture = cv2.VideoCapture(str(pets / "vtest.avi"))
    for _ in range(4):
        _, source = capture.read()
    capture.release()
    # The video is the source through the recorded homography, with the warm cast (R up, B down).
    expected = cv2.warpPerspective(source, np.asarray(right["homography_from_source"]), (368, 460))
    ratios = frame.reshape(-1, 3).mean(0) / expected.reshape(-1, 3).mean(0)
    np.testing.assert_allclose(ratios, [0.8, 1.0, 1.2], atol=0.05)
    cast = np.clip(expected.astype(np.float32) * [0.8, 1.0, 1.2], 0, 255)
    assert np.abs(frame - cast).mean() < 6
    # People seen by both cameras keep their ids; every right box is a source box through the homography.
    gt = read_mot_txt(tmp_path / right["gt"])
    assert set(gt[:, 1]) & set(read_mot_txt(tmp_path / left["gt"])[:, 1])
    source_gt = read_mot_txt(pets / "gt" / "gt.txt")
    for f, pid, x, y, w, h in gt[:, :6]:
        sx, sy, sw, sh = source_gt[(source_gt[:, 0] == f) & (source_gt[:, 1] == pid)][0, 2:6]
        corners = _apply(
            right["homography_from_source"], [[sx, sy], [sx + sw, sy], [sx + sw, sy + sh], [sx, sy + sh]]
        )
        lo, hi = np.maximum(corners.min(0), 0), np.minimum(corners.max(0), [368, 460])
        np.testing.assert_allclose([x, y, x + w, y + h], [*lo, *hi], atol=2e-3)


@pytest.mark.parametrize(
    ("text", "camera_id", "expected"),
    [
        ("right:tilt", "right", View(tilt=0.15)),
        ("right:oblique", "right", VIEW_PRESETS["oblique"]),
        ("b:oblique:hue=20", "b", View(tilt=0.15, scale=0.8, gain=(1.2, 1.0, 0.8), hue=20)),
        ("b:scale=0.8:tilt", "b", View(tilt=0.15, scale=0.8)),
        ("c:tilt=-0.1:gain=1.1:offset=0,5,-5", "c", View(tilt=-0.1, gain=(1.1,) * 3, offset=(0, 5, -5))),
        ("c:tilt=0.1:homography=1,0,5,0,1,0,0,0,1", "c", View(homography=(1, 0, 5, 0, 1, 0, 0, 0, 1))),
    ],
)
def test_parse_warp(text: str, camera_id: str, expected: View) -> None:
    assert parse_warp(text) == (camera_id, expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("right", "expected ID:ITEM"),
        ("right:", "expected ID:ITEM"),
        (":tilt", "expected ID:ITEM"),
        ("r:bogus", "cannot read 'bogus'"),
        ("r:scale=x", "cannot read 'scale=x'"),
        ("r:gain=1,2", "cannot read 'gain=1,2'"),
        ("r:homography=1,0,0", "cannot read"),
        ("r:tilt=0.7", "tilt must be a number in (-0.5, 0.5)"),
        ("r:scale=0", "scale must be in (0, 8]"),
        ("r:gain=-1", "gain must be 3 finite numbers"),
        ("r:hue=nan", "hue must be a finite number"),
        ("r:homography=1,2,3,2,4,6,0,0,1", "singular"),
        ("a/b:tilt", "--warp id"),
    ],
)
def test_parse_warp_rejects(text: str, message: str) -> None:
    with pytest.raises(PipelineError, match=re.escape(message)):
        parse_warp(text)


def test_presets_three_quad_and_warped() -> None:
    three = preset_cameras("three", 100)
    assert [c.id for c in three] == ["left", "middle", "right"] and all(c.view is None for c in three)
    assert [c.crop[0] for c in three] == [0.0, 0.3, 0.6]
    quad = preset_cameras("quad", 100)
    assert [c.id for c in quad] == ["top-left", "top-right", "bottom-left", "bottom-right"]
    assert [c.crop[:2] for c in quad] == [(0.0, 0.0), (0.44, 0.0), (0.0, 0.44), (0.44, 0.44)]
    warped = preset_cameras("warped", 100)
    assert [c.crop for c in warped] == [c.crop for c in preset_cameras("overlap", 100)]
    assert warped[0].view is None and warped[1].view == VIEW_PRESETS["oblique"]
    relay = preset_cameras("relay", 100, views={"left": View(hue=30)})
    assert relay[0].view == View(hue=30) and (relay[1].start, relay[1].view) == (51, None)
    with pytest.raises(
        PipelineError, match=r"\['middle'\] that are not among the cameras \['left', 'right'\]"
    ):
        preset_cameras("overlap", 100, views={"middle": View(hue=30)})


def test_cli_warp(pets: Path, tmp_path: Path) -> None:
    argv = [str(pets / "vtest.avi"), "-o", str(tmp_path), "--max-frames", "5", "--split", "overlap"]
    assert main([*argv, "--warp", "right:tilt:scale=0.5:hue=-30"]) == 0
    cams = {c["id"]: c for c in yaml.safe_load((tmp_path / "multicam.yaml").read_text())["cameras"]}
    assert cams["left"]["image_size"] == [460, 576] and cams["right"]["image_size"] == [230, 288]
    assert cams["right"]["view"] == {
        "tilt": 0.15, "homography": None, "scale": 0.5, "gain": [1.0, 1.0, 1.0], "offset": [0.0, 0.0, 0.0],
        "hue": -30.0,
    }  # fmt: skip
    assert _read_video(tmp_path / cams["right"]["video"])[0].shape == (288, 230, 3)
    info = read_seqinfo(tmp_path / cams["right"]["seqinfo"])
    assert (info["imWidth"], info["imHeight"]) == ("230", "288")


@pytest.mark.parametrize(
    ("warps", "expected"),
    [
        (["nobody:tilt"], "['nobody'] that are not among the cameras ['left', 'right']"),
        (["right:tilt", "right:hue=5"], "camera 'right' already has a --warp"),
        (["right:tilt=2"], "tilt must be a number in (-0.5, 0.5)"),
        (["right:scale=0.01"], "under 16 px"),
    ],
)
def test_cli_warp_errors_are_one_line(pets: Path, tmp_path: Path, warps: list[str], expected: str) -> None:
    argv = ["make-multicam", str(pets / "vtest.avi"), "-o", str(tmp_path / "out"), "--max-frames", "5"]
    for warp in warps:
        argv += ["--warp", warp]
    line = _cli_error(run_cli(*argv, cwd=tmp_path))
    assert expected in line
    assert not (tmp_path / "out").exists()
