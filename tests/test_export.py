"""ONNX export of VPM-Net: onnxruntime and the pipeline's onnx embedder agree with torch."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from pipeline.embedders import create_embedder
from reid.export import INPUT_NAME, OUTPUT_NAME, check_onnx_export, export_onnx
from reid.models import create_model, save_checkpoint

logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("vpm_tiny", num_classes=4).eval()
    folder = tmp_path_factory.mktemp("export")
    return model, export_onnx(model, folder / "vpm_tiny.onnx"), save_checkpoint(model, folder / "tiny.pt")


def test_onnxruntime_matches_torch_at_any_batch_size(exported):
    import onnxruntime as ort

    model, path, _ = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == INPUT_NAME and session.get_outputs()[0].name == OUTPUT_NAME
    assert isinstance(session.get_inputs()[0].shape[0], str)  # dynamic batch axis
    for batch in (1, 5):
        images = torch.randn(batch, 3, *model.input_size)
        out = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
        assert out.shape == (batch, model.embed_dim)
        with torch.no_grad():
            assert np.abs(out - model.encode(images).numpy()).max() < 1e-4
    diff = check_onnx_export(model, path, batch_size=3)
    logger.info("onnxruntime vs torch max abs difference: %.3g", diff)
    assert diff < 1e-4
    assert session.get_modelmeta().custom_metadata_map["input_size"] == "256,128"


def test_pipeline_onnx_embedder_matches_vpm_embedder(exported):
    model, path, checkpoint = exported
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(256, 128), (120, 50), (400, 180)]]
    onnx_embedder = create_embedder(
        "onnx", weights=path, input_size=model.input_size, mean=model.mean, std=model.std, scale=1 / 255
    )
    torch_embedder = create_embedder("vpm", checkpoint=checkpoint, model="vpm_tiny", device="cpu")
    assert onnx_embedder.dim == torch_embedder.dim == model.embed_dim
    diff = float(np.abs(onnx_embedder.embed(crops) - torch_embedder.embed(crops)).max())
    logger.info("onnx embedder vs vpm embedder max abs difference: %.3g", diff)
    assert diff < 1e-4


def test_default_export_writes_opset_17_and_opset_18_uses_the_torch_export_path(exported, tmp_path):
    import onnx

    model, path, _ = exported
    assert {o.domain: o.version for o in onnx.load(str(path)).opset_import}[""] == 17
    newer = export_onnx(model, tmp_path / "vpm_tiny_18.onnx", opset=18)
    proto = onnx.load(str(newer))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 18
    assert {p.key: p.value for p in proto.metadata_props}["model"] == "vpm_tiny"
    assert check_onnx_export(model, newer, batch_size=4) < 1e-4
