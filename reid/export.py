"""ONNX export of VPM-Net's `encode` (normalised embeddings) with a dynamic batch axis, and a parity check."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


class _Encode(nn.Module):
    """Exposes `model.encode` as `forward`, the function the exporter traces."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode(images)


def _metadata(model: nn.Module) -> dict[str, str]:
    """What a consumer needs to feed the exported graph: input size, normalisation, output width."""
    return {
        "input_size": ",".join(str(v) for v in model.input_size),
        "mean": ",".join(f"{v:.8f}" for v in model.mean),
        "std": ",".join(f"{v:.8f}" for v in model.std),
        "channel_order": "rgb",
        "scale": str(1 / 255),
        "embed_dim": str(model.embed_dim),
        "model": getattr(getattr(model, "config", None), "name", type(model).__name__),
    }


def export_onnx(model: nn.Module, path: str | Path, opset: int = 17) -> Path:
    """Write `model.encode` as ONNX: input "images" (N, 3, H, W) float32 normalised, output "embeddings" (N, D).

    Opsets below 18 use torch's TorchScript-based exporter, which writes the requested opset exactly; 18 and
    above use the torch.export-based exporter (needs `onnxscript`), whose lowest opset is 18.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model = model.eval().float().cpu()
    wrapper = _Encode(model).eval()
    example = torch.randn(2, 3, *model.input_size)  # batch 2: a batch of 1 would be specialised as a constant
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": opset}
    try:
        if opset < 18:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape asserts inside attention
                torch.onnx.export(
                    wrapper,
                    (example,),
                    str(path),
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    dynamo=False,
                    **names,
                )
            _add_metadata(path, _metadata(model))
        else:
            batch = torch.export.Dim("batch", min=1, max=65536)
            program = torch.onnx.export(
                wrapper,
                (example,),
                dynamic_shapes={"images": {0: batch}},
                dynamo=True,
                verbose=False,
                **names,
            )
            program.model.metadata_props.update(_metadata(model))
            program.save(str(path), external_data=False)
    finally:
        model.train(was_training)
    logger.info("exported %s (opset %d, %.1f MB)", path, opset, path.stat().st_size / 2**20)
    return path


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Store metadata_props in an ONNX file (skipped, with a note, when the onnx package is absent)."""
    try:
        import onnx
    except ImportError:
        logger.info("onnx package not installed: %s has no metadata (input size, mean, std)", path)
        return
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(path))


def check_onnx_export(
    model: nn.Module, path: str | Path, images: torch.Tensor | None = None, batch_size: int = 3
) -> float:
    """Max absolute difference between onnxruntime on `path` and `model.encode` on a batch (random if None)."""
    import onnxruntime as ort

    if images is None:
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(batch_size, 3, *model.input_size, generator=generator)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model.encode(images.float()).cpu().numpy()
    finally:
        model.train(was_training)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: images.cpu().numpy().astype(np.float32)})[0]
    assert got.shape == expected.shape, (got.shape, expected.shape)
    return float(np.abs(got - expected).max())
