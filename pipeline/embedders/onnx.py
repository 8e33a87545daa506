"""A re-ID embedder for any exported model (OSNet, an exported VPM-Net, ...) run through onnxruntime."""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
        import onnxruntime as ort

        self.weights = Path(weights).expanduser()
        if not self.weights.is_file():
            raise WeightsError(
                f"onnx embedder weights not found: {self.weights}; "
                "export the re-ID model to ONNX and set its path as the embedder's weights"
            )
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

        try:
            self.session = ort.InferenceSession(str(self.weights), session_options(), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise WeightsError(
                f"onnx embedder weights {self.weights} could not be loaded ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); check that the file is a valid ONNX model"
            ) from exc

        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        shape = list(model_input.shape)
        if len(shape) != 4 or shape[1] != 3:
            raise ConfigError(
                f"onnx embedder {self.weights}: expected an NCHW input with 3 channels, got shape {shape}"
            )
        model_hw = tuple(shape[2:])
        if all(isinstance(s, int) for s in model_hw) and model_hw != tuple(input_size):
            raise ConfigError(
                f"onnx embedder input_size {tuple(input_size)} does not match the input {model_hw} of "
                f"{self.weights}; set input_size to {model_hw}"
            )
        self.input_size = (int(input_size[0]), int(input_size[1]))
        # A fixed batch (often 1 in exported models) is run in chunks of that size; a named one is dynamic.
        self.fixed_batch: int | None = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.output_name = self.session.get_outputs()[0].name
        out_shape = self.session.get_outputs()[0].shape
        if isinstance(out_shape[-1], int) and len(out_shape) == 2:
            self.dim = int(out_shape[-1])
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
