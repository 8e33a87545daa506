"""YOLO ONNX exports run directly with onnxruntime: letterbox, one session run per batch, numpy decode and NMS.

It reproduces what ultralytics' predictor does for an exported detector (centred letterbox padded with 114, RGB
in [0, 1], best class per anchor above the confidence, class filter, class-aware NMS, boxes scaled back and
clipped) without ultralytics' per-call machinery, torch tensors and second copy of the frame.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from detectors.base import nms
from pipeline.messages import Detections
from pipeline.ort_options import session_options

logger = logging.getLogger(__name__)

PAD_VALUE = 114  # ultralytics' letterbox grey
MAX_DETECTIONS = 300  # ultralytics' max_det
MAX_NMS = 30000  # ultralytics' max_nms: boxes kept for NMS, most confident first
CLASS_OFFSET = 7680  # ultralytics' max_wh: shifts each class's boxes apart so NMS never compares two classes


@dataclass(frozen=True)
class Letterbox:
    """Where a frame sits in the model input: scale of each side and the padding before it, in input pixels."""

    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int


def letterbox(image: np.ndarray, shape: tuple[int, int], out: np.ndarray) -> Letterbox:
    """Resize a BGR frame (H, W, 3) into `shape` (h, w) keeping its aspect, centred; write it RGB (3, h, w) in [0, 1].

    `out` is a float32 (3, h, w) array, filled in place; the rounding follows ultralytics' LetterBox.
    """
    height, width = image.shape[:2]
    ratio = min(shape[0] / height, shape[1] / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (shape[1] - new_w) / 2, (shape[0] - new_h) / 2
    top, left = round(dh - 0.1), round(dw - 0.1)
    out[...] = PAD_VALUE / 255.0
    # (h, w, 3) BGR uint8 -> (3, h, w) RGB float32 in [0, 1], straight into the padded window of `out`
    np.multiply(
        image[:, :, ::-1].transpose(2, 0, 1),
        np.float32(1 / 255),
        out=out[:, top : top + new_h, left : left + new_w],
    )
    return Letterbox(new_w / width, new_h / height, left, top)


def decode(
    output: np.ndarray,
    box: Letterbox,
    frame_shape: tuple[int, int],
    confidence: float,
    iou: float,
    classes: np.ndarray | None,
) -> Detections:
    """One image's raw output (4 + classes, anchors) to Detections in frame pixels, as ultralytics' NMS does."""
    scores = output[4:]  # (C, A)
    best = scores.max(axis=0)  # (A,)
    candidates = np.flatnonzero(best > confidence)
    if candidates.size == 0:
        return Detections.empty()
    class_id = scores[:, candidates].argmax(axis=0)  # (K,)
    conf = best[candidates]
    if classes is not None:
        wanted = np.isin(class_id, classes)
        candidates, class_id, conf = candidates[wanted], class_id[wanted], conf[wanted]
        if candidates.size == 0:
            return Detections.empty()
    if candidates.size > MAX_NMS:
        top = np.argsort(-conf, kind="stable")[:MAX_NMS]
        candidates, class_id, conf = candidates[top], class_id[top], conf[top]
    cx, cy, w, h = output[:4, candidates]  # (K,) each
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)  # (K, 4)
    keep = nms(xyxy + (class_id * CLASS_OFFSET)[:, None], conf, iou)[:MAX_DETECTIONS]
    xyxy, conf, class_id = xyxy[keep], conf[keep], class_id[keep]
    xyxy -= (box.pad_x, box.pad_y, box.pad_x, box.pad_y)
    xyxy /= (box.gain_x, box.gain_y, box.gain_x, box.gain_y)
    height, width = frame_shape
    np.clip(xyxy, 0, (width, height, width, height), out=xyxy)
    return Detections.from_arrays(xyxy, conf, class_id)


class OnnxYolo:
    """An Ultralytics YOLO detect export (.onnx) on onnxruntime's CPU provider, batched as the export allows.

    A fixed-batch export (batch 1 unless exported `dynamic`) is fed in chunks of its batch, the last chunk padded;
    a dynamic one takes all the frames of a call in one run. A fixed input size wins over `imgsz`.
    """

    def __init__(
        self,
        weights: str,
        confidence: float = 0.25,
        iou: float = 0.7,
        imgsz: int = 640,
        classes: Sequence[int] | None = None,
    ) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(weights, session_options(), providers=["CPUExecutionProvider"])
        self.confidence = confidence
        self.iou = iou
        self.classes = None if classes is None else np.asarray(list(classes), np.int64)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        batch, _, height, width = model_input.shape
        self.batch = batch if isinstance(batch, int) and batch > 0 else None
        fixed = isinstance(height, int) and isinstance(width, int)
        self.shape = (height, width) if fixed else (imgsz, imgsz)
        if fixed and (height, width) != (imgsz, imgsz):
            logger.info("%s takes %dx%d inputs; imgsz=%d is ignored", weights, width, height, imgsz)
        self._buffer = np.empty((0, 3, *self.shape), np.float32)

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Detections of each BGR frame, in frame pixels."""
        chunk = self.batch or max(len(frames), 1)
        found: list[Detections] = []
        for start in range(0, len(frames), chunk):
            part = frames[start : start + chunk]
            inputs = self._inputs(chunk)
            boxes = [letterbox(frame, self.shape, inputs[i]) for i, frame in enumerate(part)]
            inputs[len(part) :] = 0.0  # a fixed batch's unused slots
            (output,) = self.session.run(None, {self.input_name: inputs})[:1]  # (B, 4 + C, A)
            found.extend(
                decode(output[i], box, frame.shape[:2], self.confidence, self.iou, self.classes)
                for i, (frame, box) in enumerate(zip(part, boxes, strict=True))
            )
        return found

    def _inputs(self, batch: int) -> np.ndarray:
        """The (batch, 3, h, w) float32 input buffer, reused between calls."""
        if len(self._buffer) != batch:
            self._buffer = np.empty((batch, 3, *self.shape), np.float32)
        return self._buffer
