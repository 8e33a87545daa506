"""The detector registry and the yolo, hog and mot detectors on PETS09-S2L1 frames and ground truth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors import create_detector, list_detectors
from detectors.base import Detector, nms
from detectors.yolo import YoloDetector, check_weights, resolve_weights
from detectors.yolo_onnx import Letterbox, letterbox
from pipeline.errors import PipelineError, WeightsError
from pipeline.messages import Detections


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) against every box in b (M, 4), both xyxy."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def recall(detections: Detections, truth: np.ndarray, threshold: float) -> float:
    """Share of ground-truth boxes that some detection covers at IoU >= threshold."""
    if len(detections) == 0:
        return 0.0
    return float((iou_matrix(truth, detections.xyxy).max(axis=1) >= threshold).mean())


@pytest.fixture(scope="module")
def pets(assets: Path) -> Path:
    return assets / "data" / "PETS09-S2L1"


@pytest.fixture(scope="module")
def pets_frames(pets: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(pets / "vtest.avi"))
    frames = [capture.read()[1] for _ in range(3)]
    capture.release()
    return frames


@pytest.fixture(scope="module")
def pets_gt(pets: Path) -> np.ndarray:
    """Ground truth rows as (frame, id, x1, y1, x2, y2)."""
    table = np.loadtxt(pets / "gt" / "gt.txt", delimiter=",")
    return np.c_[table[:, :2], table[:, 2:4], table[:, 2:4] + table[:, 4:6]]


def truth_of(gt: np.ndarray, frame: int) -> np.ndarray:
    return gt[gt[:, 0] == frame, 2:6]


@pytest.fixture(scope="module")
def yolo(assets: Path) -> Detector:
    return create_detector("yolo", weights=assets / "models" / "yolov8n_int8.onnx")


def test_registry_lists_all_three_without_importing_ultralytics():
    assert {"yolo", "hog", "mot"} <= set(list_detectors())
    code = "import sys, detectors; print(sorted(detectors.list_detectors())); print('ultralytics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[1] == "False"


def test_unknown_detector_suggests_close_name():
    with pytest.raises(KeyError, match="yolo"):
        create_detector("yollo")


def test_yolo_finds_the_people_of_frame_one(yolo, pets_frames, pets_gt):
    (detections,) = yolo.detect(pets_frames[:1])
    assert isinstance(yolo, Detector)
    assert len(detections) >= 3
    assert np.all(detections.class_id == 0)
    assert np.all((detections.confidence >= 0.25) & (detections.confidence <= 1.0))
    assert recall(detections, truth_of(pets_gt, 1), 0.5) == 1.0


def test_yolo_batch_matches_frame_by_frame(yolo, pets_frames):
    batched = yolo.detect(pets_frames, frame_indices=[1, 2, 3])
    single = [yolo.detect([frame])[0] for frame in pets_frames]
    assert len(batched) == 3
    for a, b in zip(batched, single, strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    assert yolo.detect([]) == []


@pytest.fixture(scope="module")
def pets_spread(pets: Path) -> list[np.ndarray]:
    """Frames 1, 201, 401 and 601 of PETS09-S2L1: from a few people apart to a crowd crossing."""
    capture = cv2.VideoCapture(str(pets / "vtest.avi"))
    frames = []
    for index in (0, 200, 400, 600):
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        frames.append(capture.read()[1])
    capture.release()
    return frames


@pytest.mark.parametrize(
    ("confidence", "iou", "classes"),
    [(0.25, 0.7, (0,)), (0.5, 0.45, (0,)), (0.1, 0.7, None)],
    ids=["defaults", "strict", "all-classes"],
)
def test_direct_onnx_matches_ultralytics_on_pets_frames(assets, pets_spread, confidence, iou, classes):
    weights = assets / "models" / "yolov8n_int8.onnx"
    kwargs = {"confidence": confidence, "iou": iou, "classes": classes}
    direct = YoloDetector(weights, **kwargs)
    reference = YoloDetector(weights, direct_onnx=False, **kwargs)
    assert direct._direct is not None and reference._direct is None
    for ours, theirs in zip(direct.detect(pets_spread), reference.detect(pets_spread), strict=True):
        assert len(theirs) >= 3
        assert abs(len(ours) - len(theirs)) <= 1
        assert np.all(ours.confidence > confidence)
        if classes is not None:
            assert np.all(ours.class_id == 0)
        overlap = iou_matrix(ours.xyxy, theirs.xyxy)
        best = overlap.argmax(axis=1)
        matched = overlap.max(axis=1) > 0.9
        assert matched.sum() >= min(len(ours), len(theirs)) - 1, overlap.max(axis=1)
        np.testing.assert_array_equal(ours.class_id[matched], theirs.class_id[best[matched]])
        np.testing.assert_allclose(ours.confidence[matched], theirs.confidence[best[matched]], atol=1e-3)
        kept = iou_matrix(ours.xyxy, ours.xyxy)[np.equal.outer(ours.class_id, ours.class_id)]
        assert np.all((kept <= iou + 1e-5) | np.isclose(kept, 1.0)), (
            "two kept boxes of a class overlap past iou"
        )


def test_direct_onnx_detector_does_not_import_ultralytics(assets: Path):
    code = (
        "import sys; from detectors import create_detector; import numpy as np; "
        "d = create_detector('yolo', weights=sys.argv[1]); d.detect([np.zeros((240, 320, 3), np.uint8)]); "
        "print('ultralytics' in sys.modules, 'torch' in sys.modules)"
    )
    weights = str(assets / "models" / "yolov8n_int8.onnx")
    out = subprocess.run([sys.executable, "-c", code, weights], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_letterbox_centres_the_frame_as_ultralytics_does():
    frame = np.zeros((576, 768, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    out = np.empty((3, 640, 640), np.float32)
    assert letterbox(frame, (640, 640), out) == Letterbox(640 / 768, 480 / 576, 0, 80)
    np.testing.assert_allclose(out[:, :80], 114 / 255)  # padding above
    np.testing.assert_allclose(out[:, 560:], 114 / 255)  # and below
    assert out[2, 80:560].min() == 1.0 and out[:2, 80:560].max() == 0.0  # the frame, blue first turned RGB


@pytest.mark.parametrize(
    ("iou", "kept"),
    [(0.9, [1, 0, 2]), (0.5, [1, 2]), (0.3, [1])],  # IoU of boxes 0-1: 0.82, 1-2: 0.33, 0-2: 0.25
)
def test_nms_keeps_the_most_confident_of_boxes_overlapping_past_iou(iou, kept):
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [6, 0, 16, 10]], np.float32)
    scores = np.array([0.8, 0.9, 0.7], np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, iou), kept)


def test_yolo_missing_weights_is_a_one_line_weights_error(tmp_path: Path):
    missing = tmp_path / "models" / "detector.onnx"
    with pytest.raises(WeightsError) as info:
        create_detector("yolo", weights=missing)
    message = str(info.value)
    assert str(missing) in message and "\n" not in message


def test_bare_ultralytics_name_is_left_to_ultralytics(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_weights("yolov8n.pt") == "yolov8n.pt"
    with pytest.raises(WeightsError, match=r"yolov8n\.onnx"):
        resolve_weights("yolov8n.onnx")  # exports are never downloaded: it must be a local file
    with pytest.raises(WeightsError, match="unsupported format"):
        resolve_weights("weights/yolov8n.tflite")


def test_check_weights_accepts_ultralytics_exports_and_checkpoints(assets: Path, tmp_path: Path, monkeypatch):
    onnx = assets / "models" / "yolov8n_int8.onnx"
    assert check_weights(onnx) == str(onnx)
    # A real Ultralytics checkpoint, built offline from the package's model YAML (random weights).
    script = "from ultralytics import YOLO; YOLO('yolov8n.yaml').save('yolo_random.pt')"
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    assert check_weights(tmp_path / "yolo_random.pt") == str(tmp_path / "yolo_random.pt")
    load = "from detectors import create_detector; create_detector('yolo', weights='yolo_random.pt')"
    subprocess.run([sys.executable, "-c", load], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    monkeypatch.chdir(tmp_path)
    assert check_weights("yolov8n.pt") == "yolov8n.pt"  # a bare name is left to ultralytics to download


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.with_suffix(".onnx").write_text("not a model"), "not a loadable ONNX model"),
        (lambda p: p.with_suffix(".pt").write_text("not a model"), "not a torch zip archive"),
        (lambda p: torch_save_plain(p.with_suffix(".pt")), "holds no Ultralytics model"),
        (lambda p: p.with_suffix(".engine").write_bytes(b""), "empty file"),
    ],
    ids=["text-onnx", "text-pt", "plain-torch", "empty-engine"],
)
def test_check_weights_refuses_files_that_are_not_yolo_detectors(tmp_path: Path, make, expected: str):
    make(tmp_path / "weights")
    path = next(tmp_path.iterdir())
    with pytest.raises(WeightsError, match=expected) as info:
        check_weights(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_check_weights_refuses_a_reid_model_and_a_foreign_detector(assets: Path):
    with pytest.raises(WeightsError, match=r"not a detector: output 'output' has shape \['batch', 512\]"):
        check_weights(assets / "models" / "osnet_x0_25_msmt17.onnx")
    with pytest.raises(WeightsError, match=r"not an Ultralytics YOLO export"):
        check_weights(assets / "models" / "yolox_nano.onnx")


HOSTILE_PT = """
import sys, torch
from ultralytics.nn.tasks import DetectionModel

class RunsCode:
    def __reduce__(self):
        return (exec, (f"open({sys.argv[2]!r}, 'w').write('code ran')",))

torch.save({"model": DetectionModel, "payload": RunsCode()}, sys.argv[1])
"""


def test_a_yolo_checkpoint_that_would_run_code_is_refused_by_the_check_and_the_loader(tmp_path: Path):
    evil, marker = tmp_path / "evil.pt", tmp_path / "marker"
    subprocess.run([sys.executable, "-c", HOSTILE_PT, str(evil), str(marker)], check=True, timeout=300)
    with pytest.raises(WeightsError, match=r"evil\.pt .*names __builtin__\.exec.*refusing to load it"):
        check_weights(evil)
    # The loader itself, in a fresh process as a camera builds it: ultralytics loads .pt files restricted.
    load = "import sys; from detectors import create_detector; create_detector('yolo', weights=sys.argv[1])"
    result = subprocess.run(
        [sys.executable, "-c", load, str(evil)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0 and "cannot load detector weights" in result.stderr
    assert not marker.exists(), "code from the checkpoint ran"


def torch_save_plain(path: Path) -> None:
    import torch

    torch.save({"model": {"w": torch.zeros(2)}}, path)


def test_hog_finds_people_on_an_upscaled_frame(pets_frames, pets_gt):
    hog = create_detector("hog", upscale=2.0)
    (detections,) = hog.detect(pets_frames[:1])
    assert len(detections) > 0
    assert np.all((detections.confidence >= 0) & (detections.confidence <= 1))
    assert np.all(np.diff(detections.confidence) <= 0)  # most confident first
    assert recall(detections, truth_of(pets_gt, 1), 0.5) >= 2 / 3


def test_hog_on_a_blank_image_finds_nothing():
    (detections,) = create_detector("hog", upscale=1.0).detect([np.zeros((256, 192, 3), np.uint8)])
    assert len(detections) == 0


def test_mot_returns_ground_truth_boxes(pets, pets_gt, pets_frames):
    mot = create_detector("mot", path=pets / "gt" / "gt.txt")
    first, second = mot.detect(pets_frames[:2], frame_indices=[1, 2])
    for detections, frame in ((first, 1), (second, 2)):
        truth = truth_of(pets_gt, frame)
        order = np.lexsort(truth.T[::-1])
        got = detections.xyxy[np.lexsort(detections.xyxy.T[::-1])]
        np.testing.assert_allclose(got, truth[order], atol=1e-3)
        assert np.all(detections.class_id == 0)


def test_mot_needs_frame_indices_and_handles_empty_frames(pets, pets_frames):
    mot = create_detector("mot", path=pets / "gt" / "gt.txt")
    with pytest.raises(ValueError, match="frame_indices"):
        mot.detect(pets_frames[:1])
    (nothing,) = mot.detect(pets_frames[:1], frame_indices=[100_000])
    assert len(nothing) == 0


def test_mot_min_confidence_and_clipping(tmp_path: Path):
    path = tmp_path / "det.txt"
    path.write_text(
        "1,-1,10,20,30,60,0.9,-1,-1,-1\n1,-1,50,20,30,60,0.2,-1,-1,-1\n2,-1,5,5,10,20,37.5,-1,-1,-1\n"
    )
    mot = create_detector("mot", path=path, min_confidence=0.5)
    one, two = mot.detect([np.zeros((4, 4, 3), np.uint8)] * 2, frame_indices=[1, 2])
    np.testing.assert_allclose(one.xyxy, [[10, 20, 40, 80]])
    np.testing.assert_allclose(one.confidence, [0.9])
    np.testing.assert_allclose(two.confidence, [1.0])


def test_mot_missing_or_malformed_file(tmp_path: Path):
    with pytest.raises(PipelineError, match=r"nothing\.txt"):
        create_detector("mot", path=tmp_path / "nothing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("frame id x y\n")
    with pytest.raises(PipelineError, match=r"bad\.txt"):
        create_detector("mot", path=bad)
