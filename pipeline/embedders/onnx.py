"""A re-ID embedder for any exported model (OSNet, an exported VPM-Net, ...) run through onnxruntime."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.embedders.base import crops_to_batch, l2_normalize, register_embedder
from pipeline.errors import ConfigError, WeightsError
from pipeline.ort_options import session_options

logger = logging.getLogger(__name__)

_CHANNEL_ORDERS = ("rgb", "bgr")


def _providers_for(device: str) -> tuple[list, str]:
    """onnxruntime execution providers for a device string ("cpu", "cuda", "cuda:1") and the device used."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], device
        logger.warning("onnxruntime has no CUDA provider here; the onnx embedder runs on the cpu")
        return ["CPUExecutionProvider"], "cpu"
    raise ConfigError(f"onnx embedder device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")


@dataclass(frozen=True)
class ModelIO:
    """What the embedder needs to know of a re-ID graph: tensor names, fixed batch (or None), width (or None)."""

    input_name: str
    output_name: str
    fixed_batch: int | None
    dim: int | None


def resolve_weights(weights: str | Path) -> Path:
    """The local re-ID model file `weights` names (`~` expanded), or WeightsError when there is none."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"onnx embedder weights not found: {path}; "
            "export the re-ID model to ONNX and set its path as the embedder's weights"
        )
    return path


def open_session(weights: Path, providers: list | None = None):
    """An onnxruntime session on `weights`, or WeightsError naming the file when it is not an ONNX model."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(
            str(weights), session_options(), providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise WeightsError(
            f"onnx embedder weights {weights} could not be loaded ({exc.__class__.__name__}: "
            f"{first[:200]}); check that the file is a valid ONNX model"
        ) from None


def check_reid_model(session, weights: Path, input_size: Sequence[int]) -> ModelIO:
    """Check that `session` is a re-ID model: one (N, 3, H, W) image input, a (N, D) feature output.

    A detector (a (1, 84, 8400) output) or any other graph is a WeightsError naming `weights`; an input
    of fixed size other than `input_size` is a ConfigError saying what to set.
    """
    inputs, outputs = session.get_inputs(), session.get_outputs()
    expected = "a re-ID model takes images (N, 3, H, W) and returns features (N, D)"
    in_shape = list(inputs[0].shape) if len(inputs) == 1 else None
    if in_shape is None or len(in_shape) != 4 or in_shape[1] != 3:
        shapes = [list(i.shape) for i in inputs]
        raise WeightsError(f"{weights} is not a re-ID model: its inputs are {shapes}; {expected}")
    out_shape = list(outputs[0].shape)
    features = [d for d in out_shape[1:] if d != 1]
    if len(out_shape) < 2 or len(features) != 1:
        raise WeightsError(
            f"{weights} is not a re-ID model: its output {outputs[0].name!r} has shape {out_shape}; {expected}"
        )
    model_hw = tuple(in_shape[2:])
    if all(isinstance(s, int) for s in model_hw) and model_hw != tuple(input_size):
        raise ConfigError(
            f"onnx embedder input_size {tuple(input_size)} does not match the input {model_hw} of "
            f"{weights}; set input_size to {model_hw}"
        )
    batch = in_shape[0]
    return ModelIO(
        input_name=inputs[0].name,
        output_name=outputs[0].name,
        fixed_batch=batch if isinstance(batch, int) and batch > 0 else None,
        dim=int(features[0]) if isinstance(features[0], int) else None,
    )


def check_weights(weights: str | Path, input_size: Sequence[int] = (256, 128)) -> Path:
    """Open `weights` on the CPU and check it is a re-ID model fitting `input_size`; returns the resolved path."""
    path = resolve_weights(weights)
    check_reid_model(open_session(path), path, input_size)
    return path


@register_embedder("onnx")
class OnnxEmbedder:
    """Embeds BGR person crops with an ONNX re-ID model; features are L2-normalised float32 (N, dim)."""

    def __init__(
        self,
        weights: str | Path,
        input_size: tuple[int, int] = (256, 128),
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        scale: float = 1 / 255,
        channel_order: str = "rgb",
        providers: list | None = None,
        device: str = "cpu",
    ) -> None:
        self.weights = resolve_weights(weights)
        if channel_order not in _CHANNEL_ORDERS:
            raise ConfigError(f"onnx embedder channel_order: expected 'rgb' or 'bgr', got {channel_order!r}")
        if len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std):
            raise ConfigError(
                f"onnx embedder mean/std: expected 3 values each, std non-zero, got {mean}, {std}"
            )
        if providers is None:
            providers, device = _providers_for(device)
        self.device = device
        self.channel_order = channel_order
        self.scale = float(scale)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

        self.session = open_session(self.weights, providers)
        io = check_reid_model(self.session, self.weights, input_size)
        self.input_name, self.output_name = io.input_name, io.output_name
        self.input_size = (int(input_size[0]), int(input_size[1]))
        # A fixed batch (often 1 in exported models) is run in chunks of that size; a named one is dynamic.
        self.fixed_batch: int | None = io.fixed_batch
        if io.dim is not None:
            self.dim = io.dim
        else:
            probe = np.zeros((self.fixed_batch or 1, 3, *self.input_size), np.float32)
            self.dim = int(self._run(probe).shape[1])
        logger.info(
            "onnx embedder %s: input %s %s, batch %s, dim %d, providers %s",
            self.weights.name,
            self.input_name,
            self.input_size,
            self.fixed_batch or "dynamic",
            self.dim,
            self.session.get_providers(),
        )

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """BGR uint8 crops of any size -> the model's input batch (N, 3, H, W) float32."""
        return crops_to_batch(
            crops, self.input_size, self.mean, self.std, self.scale, rgb=self.channel_order == "rgb"
        )

    def _run(self, batch: np.ndarray) -> np.ndarray:
        output = self.session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(output, np.float32).reshape(len(batch), -1)  # (N, D)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """L2-normalised features (N, dim) of BGR crops of any sizes."""
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        batch = self.preprocess(crops)
        if self.fixed_batch is None:
            return l2_normalize(self._run(batch))
        chunks = []
        size = self.fixed_batch
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            n = len(chunk)
            if n < size:  # pad the last chunk up to the model's fixed batch, then drop the padding rows
                chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), np.float32)])
            chunks.append(self._run(chunk)[:n])
        return l2_normalize(np.concatenate(chunks))
