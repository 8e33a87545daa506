"""YOLO detectors: ONNX exports on the CPU through onnxruntime directly, anything else through Ultralytics."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectors.base import PERSON_CLASS_ID
from pipeline.errors import WeightsError
from pipeline.messages import Detections
from pipeline.ort_options import session_options

logger = logging.getLogger(__name__)

LOCAL_FORMATS = (".pt", ".onnx", ".engine")


class YoloDetector:
    """YOLO on a list of BGR frames, people only by default.

    An .onnx export on the CPU runs on onnxruntime directly (`detectors.yolo_onnx`: same letterbox, thresholds and
    NMS as ultralytics, without its per-call overhead) unless `direct_onnx=False`; .pt, .engine and exports on
    other devices go through one Ultralytics `predict` call per batch. Exported models with a fixed batch size
    (an ONNX export is batch 1 unless exported `dynamic`) are fed in chunks of that size, so `detect` takes any
    number of frames whatever the export.
    """

    def __init__(
        self,
        weights: str | Path,
        confidence: float = 0.25,
        iou: float = 0.7,
        imgsz: int = 640,
        device: str = "cpu",
        classes: Sequence[int] | None = (PERSON_CLASS_ID,),
        half: bool = False,
        direct_onnx: bool = True,
    ) -> None:
        self.weights = resolve_weights(weights)
        self.confidence = confidence
        self.iou = iou
        self.imgsz = imgsz
        self.device = device
        self.classes = None if classes is None else [int(c) for c in classes]
        self.half = half
        self._direct = None
        if direct_onnx and self.weights.lower().endswith(".onnx") and device == "cpu" and not half:
            from detectors.yolo_onnx import OnnxYolo

            try:
                self._direct = OnnxYolo(self.weights, confidence, iou, imgsz, self.classes)
            except Exception as error:  # onnxruntime raises its own types for unusable files
                raise WeightsError(f"cannot load detector weights {self.weights}: {error}") from error
            return
        os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # never pip-install at run time
        os.environ.setdefault("YOLO_OFFLINE", "true")
        # .pt checkpoints load with weights_only=True and ultralytics' allow-list of model classes, so a
        # checkpoint cannot run code; read when ultralytics is first imported (the detector is built first).
        os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "true")
        from ultralytics import YOLO

        try:
            self._model = YOLO(self.weights, task="detect")
        except Exception as error:  # ultralytics raises many types for unusable or undownloadable weights
            raise WeightsError(f"cannot load detector weights {self.weights}: {error}") from error
        self._exported = Path(self.weights).suffix.lower() != ".pt"
        self._session_tuned = not self.weights.lower().endswith(".onnx")

    def detect(self, frames: list[np.ndarray], frame_indices: list[int] | None = None) -> list[Detections]:
        """Detect in BGR frames; `frame_indices` is accepted for the protocol and ignored."""
        if not frames:
            return []
        if self._direct is not None:
            return self._direct.detect(frames)
        chunk = self._chunk_size() or len(frames)
        detections: list[Detections] = []
        for start in range(0, len(frames), chunk):
            results = self._model.predict(
                list(frames[start : start + chunk]),
                conf=self.confidence,
                iou=self.iou,
                imgsz=self.imgsz,
                device=self.device,
                classes=self.classes,
                verbose=False,
                **({"half": True} if self.half else {}),  # newer ultralytics warns on any `half` argument
            )
            detections.extend(_to_detections(result.boxes) for result in results)
            if not self._session_tuned:  # the first predict call loaded the model
                self._share_cpu()
        return detections

    def _share_cpu(self) -> None:
        """Recreate ultralytics' onnxruntime CPU session with options that leave cores to other stages."""
        self._session_tuned = True
        backend = getattr(getattr(getattr(self._model, "predictor", None), "model", None), "backend", None)
        session = getattr(backend, "session", None)
        if session is None or session.get_providers()[0] != "CPUExecutionProvider":
            return
        import onnxruntime as ort

        backend.session = ort.InferenceSession(
            self.weights, session_options(), providers=session.get_providers()
        )

    def _chunk_size(self) -> int | None:
        """Frames per predict call: None (all at once) unless the model is an export with a fixed batch."""
        if not self._exported:
            return None
        backend = getattr(getattr(self._model, "predictor", None), "model", None)
        if backend is None:  # not loaded yet: the first call runs one frame at a time and loads it
            return 1
        if getattr(backend, "dynamic", False):
            return None
        return max(int(getattr(backend, "batch", 1) or 1), 1)


def resolve_weights(weights: str | Path) -> str:
    """Return the weights to hand to ultralytics, or raise WeightsError for a missing local file.

    A bare Ultralytics model name (`yolov8n.pt`, no folder) with no such local file is passed through, so
    ultralytics downloads it where a network exists.
    """
    path = Path(weights).expanduser()
    if path.is_file():
        return str(path)
    if path.exists():
        raise WeightsError(f"detector weights {path} is not a file; give a .pt, .onnx or .engine file")
    if path.suffix.lower() not in LOCAL_FORMATS:
        raise WeightsError(
            f"detector weights {path} have an unsupported format; give a {', '.join(LOCAL_FORMATS)} file"
        )
    if path.parent == Path(".") and path.suffix.lower() == ".pt" and str(weights) == path.name:
        logger.info("%s is not a local file; ultralytics will try to download it", path.name)
        return path.name
    raise WeightsError(
        f"detector weights not found: {path}; give the path of a local .pt/.onnx/.engine file "
        "or a bare Ultralytics name such as yolov8n.pt to download it (needs a network)"
    )


def check_weights(weights: str | Path) -> str:
    """Resolve `weights` as the detector will and check, without ultralytics, that the file is a YOLO detector.

    An ONNX file is opened with onnxruntime: it must take images (N, 3, H, W) and return the (N, 4 + classes,
    anchors) boxes of an Ultralytics export, so a re-ID model or a foreign detector is refused. A .pt file must
    be a torch zip archive that pickles an Ultralytics model (its pickle is scanned, never run). A bare name left
    for ultralytics to download and .engine files are not opened. Returns what `resolve_weights` returns.
    """
    resolved = resolve_weights(weights)
    path = Path(resolved)
    if not path.is_file():  # a bare name ultralytics downloads
        return resolved
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise WeightsError(
            f"detector weights {path}: {suffix or 'no suffix'} is not a format ultralytics loads "
            f"({', '.join(_FORMATS)})"
        )
    if suffix == ".onnx":
        _check_onnx(path)
    elif suffix == ".pt":
        _check_pt(path)
    elif path.stat().st_size == 0:
        raise WeightsError(f"detector weights {path} are an empty file")
    return resolved


_FORMATS = (".pt", ".onnx", ".engine", ".torchscript", ".tflite", ".pb", ".mnn")  # single-file exports


_EXPECTED = "a YOLO detector takes images (N, 3, H, W) and returns boxes (N, 4 + classes, anchors)"


def _check_onnx(path: Path) -> None:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for files that are not ONNX models
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise WeightsError(
            f"detector weights {path} are not a loadable ONNX model ({exc.__class__.__name__}: {first[:160]})"
        ) from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    in_shape = list(inputs[0].shape) if inputs else []
    if len(inputs) != 1 or len(in_shape) != 4 or in_shape[1] != 3:
        raise WeightsError(
            f"detector weights {path} are not a detector: inputs {[list(i.shape) for i in inputs]}; {_EXPECTED}"
        )
    out_shape = list(outputs[0].shape)
    metadata = session.get_modelmeta().custom_metadata_map
    task = metadata.get("task")
    if len(out_shape) != 3:
        raise WeightsError(
            f"detector weights {path} are not a detector: output {outputs[0].name!r} has shape {out_shape}; "
            f"{_EXPECTED}"
        )
    if task is not None:  # an Ultralytics export says what it is
        if task != "detect":
            raise WeightsError(
                f"detector weights {path} are an Ultralytics {task!r} model; give a 'detect' model"
            )
        return
    channels, anchors = out_shape[1], out_shape[2]
    if isinstance(channels, int) and isinstance(anchors, int) and not 5 <= channels < anchors:
        raise WeightsError(
            f"detector weights {path} are not an Ultralytics YOLO export: output shape {out_shape}, no "
            f"Ultralytics metadata; {_EXPECTED}"
        )


def _check_pt(path: Path) -> None:
    import pickletools
    import zipfile

    not_yolo = f"detector weights {path} are not an Ultralytics YOLO checkpoint"
    if not zipfile.is_zipfile(path):
        raise WeightsError(
            f"{not_yolo}: not a torch zip archive; give a .pt saved by ultralytics, or an .onnx"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            data = archive.read(names[0]) if names else b""
        globals_ = _pickled_globals(pickletools.genops(data)) if data else set()
    except Exception as exc:  # a damaged archive or pickle
        raise WeightsError(f"{not_yolo}: cannot read it ({exc.__class__.__name__}: {exc})") from None
    if not any(name.startswith("ultralytics.nn.") for name in globals_):
        raise WeightsError(f"{not_yolo}: it holds no Ultralytics model")
    foreign = sorted(name for name in globals_ if not name.startswith(_CHECKPOINT_GLOBALS))
    if foreign:
        raise WeightsError(
            f"{not_yolo}: it names {', '.join(foreign[:3])}, which no Ultralytics checkpoint holds; refusing to "
            "load it, since unpickling it could run code from the file"
        )


# Modules and names an Ultralytics checkpoint's pickle refers to (its model classes, torch tensors and modules,
# numpy scalars, paths). Loading itself is restricted further by ultralytics' own allow-list.
_CHECKPOINT_GLOBALS = (
    "ultralytics.",
    "torch.",
    "torchvision.transforms.",
    "collections.OrderedDict",
    "numpy.",
    "pathlib.",
    "_codecs.encode",
    "copyreg._reconstructor",
    "builtins.getattr",
    "builtins.set",
    "builtins.frozenset",
    "builtins.slice",
    "__builtin__.set",
    "__builtin__.frozenset",
    "__builtin__.slice",
)


def _pickled_globals(ops) -> set[str]:
    """`module.name` of every class or function a pickle refers to, read from its opcodes (nothing is run)."""
    found, strings = set(), []
    for opcode, arg, _ in ops:
        if opcode.name == "GLOBAL":
            found.add(str(arg).replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.add(f"{strings[-2]}.{strings[-1]}")
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def _to_detections(boxes) -> Detections:
    """Convert an ultralytics Boxes object to our columnar Detections."""
    if boxes is None or len(boxes) == 0:
        return Detections.empty()
    return Detections.from_arrays(
        boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(), boxes.cls.cpu().numpy().astype(np.int32)
    )
