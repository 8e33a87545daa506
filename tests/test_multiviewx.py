"""The MultiviewX sample as a multi-camera set: boxes from projected corners, ids shared, eval-ready manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.evaluation import load_gt_manifest
from pipeline.motchallenge import read_mot_txt, read_seqinfo
from pipeline.sources.images import ImageSequenceSource
from samples.multiviewx import make_multiviewx, matching_boxes, read_matchings


def _row(frame: int, pid: int, x0: float, y0: float, x1: float, y1: float) -> list[float]:
    """A matchings row whose 8 corners span (x0, y0)-(x1, y1), foot point at the bottom centre."""
    corners = [(x0, y1), (x1, y1), (x1, y1), (x0, y1), (x0, y0), (x1, y0), (x1, y0), (x0, y0)]
    return [frame, pid, *np.ravel(corners), (x0 + x1) / 2, y1]


@pytest.fixture(scope="module")
def multiviewx(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_multiviewx(assets / "data" / "MultiviewX", tmp_path_factory.mktemp("mvx"))


def test_matching_boxes_clip_and_drop() -> None:
    rows = np.array(
        [
            _row(1, -7, 100, 200, 140, 320),  # inside
            _row(1, -8, -20, 200, 20, 320),  # half outside: clipped, kept
            _row(2, -7, 90, 40, 130, 160),
            _row(2, -9, 630, 10, 670, 130),  # a quarter inside: dropped
            _row(3, -9, 637, 10, 677, 130),  # a 3 px strip: dropped
        ]
    )
    out = matching_boxes(rows, (640, 480))
    np.testing.assert_allclose(
        out,
        [
            [1, 7, 100, 200, 40, 120, 1, 1, 1],
            [1, 8, 0, 200, 20, 120, 1, 1, 0.5],
            [2, 7, 90, 40, 40, 120, 1, 1, 1],
        ],
    )


def test_six_views_with_shared_ids(multiviewx: Path, assets: Path) -> None:
    gt_files, lengths = load_gt_manifest(multiviewx)  # what `reid-pipeline eval` reads
    assert list(gt_files) == [f"C{i}" for i in range(1, 7)] and set(lengths.values()) == {10}
    cams = {c["id"]: c for c in yaml.safe_load(multiviewx.read_text())["cameras"]}
    ids = {}
    for camera_id, path in gt_files.items():
        gt = read_mot_txt(path)
        assert len(gt) == cams[camera_id]["boxes"] > 100
        assert gt[:, 0].min() == 1 and gt[:, 0].max() == 10
        assert np.all(gt[:, 2:4] >= 0) and np.all(gt[:, 2] + gt[:, 4] <= 1920 + 1e-6)
        assert np.all(gt[:, 3] + gt[:, 5] <= 1080 + 1e-6) and np.all(gt[:, 7] == 1)
        ids[camera_id] = set(gt[:, 1].astype(int))
        assert Path(cams[camera_id]["calibration"]["intrinsic"]).is_file()
    # The simulator's person ids are the cross-camera ground truth: most people are seen by several views.
    seen = [sum(pid in camera_ids for camera_ids in ids.values()) for pid in set().union(*ids.values())]
    assert np.mean(np.array(seen) >= 2) > 0.8
    # A box is the min/max of the projected corners.
    source = read_matchings(assets / "data" / "MultiviewX" / "matchings" / "Camera2.txt")
    frame, pid = int(source[5, 0]), int(source[5, 1])
    corners = source[5, 2:18].reshape(8, 2)
    gt = read_mot_txt(gt_files["C2"])
    box = gt[(gt[:, 0] == frame) & (gt[:, 1] == -pid)][0, 2:6]
    lo, hi = np.clip(corners.min(0), 0, [1920, 1080]), np.clip(corners.max(0), 0, [1920, 1080])
    np.testing.assert_allclose(box, [*lo, *(hi - lo)], atol=2e-3)


def test_views_read_as_image_sequences_at_their_rate(multiviewx: Path) -> None:
    cam = yaml.safe_load(multiviewx.read_text())["cameras"][0]
    assert read_seqinfo(multiviewx.parent / cam["seqinfo"])["frameRate"] == "2"
    with ImageSequenceSource(cam["id"], multiviewx.parent / cam["images"]) as source:
        frames = list(source.frames())
        assert source.fps == 2.0
    assert len(frames) == 10 and frames[0].image.shape == (1080, 1920, 3)
    assert frames[1].timestamp == pytest.approx(0.5)


def test_unknown_views_and_folders_are_one_line(assets: Path, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"views \['C9'\] not in"):
        make_multiviewx(assets / "data" / "MultiviewX", tmp_path, cameras=["C1", "C9"])
    with pytest.raises(PipelineError, match="no Image_subsets folder"):
        make_multiviewx(tmp_path, tmp_path / "out")
