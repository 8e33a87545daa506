"""The `vpm` embedder: VPM-Net behind the Embedder protocol, on BGR crops of any size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from pipeline.embedders import Embedder, create_embedder
from pipeline.errors import ConfigError, WeightsError
from reid.models import create_model, save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("vpm_tiny", num_classes=4)
    return model, save_checkpoint(model, tmp_path_factory.mktemp("vpm") / "tiny.pt")


def _crops(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_embeds_crops_of_different_sizes(checkpoint):
    model, path = checkpoint
    embedder = create_embedder("vpm", checkpoint=path, model="vpm_tiny", device="cpu", batch_size=2)
    assert isinstance(embedder, Embedder) and embedder.dim == model.embed_dim
    crops = _crops([(256, 128), (90, 40), (300, 170), (33, 17), (128, 64)])
    features = embedder.embed(crops)
    assert features.shape == (5, model.embed_dim) and features.dtype == np.float32
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    # batching does not change results, and an empty list is an empty (0, dim) array
    single = np.concatenate([embedder.embed([c]) for c in crops])
    assert np.abs(single - features).max() < 1e-5
    assert embedder.embed([]).shape == (0, model.embed_dim)


def test_matches_the_model_on_rgb_normalised_input(checkpoint):
    model, path = checkpoint
    embedder = create_embedder("vpm", checkpoint=path, model="vpm_tiny", device="cpu")
    crop = _crops([(256, 128)], seed=1)[
        0
    ]  # already the input size: no resize, so the expected input is exact
    rgb = crop[..., ::-1].astype(np.float32) / 255.0
    x = torch.from_numpy(
        ((rgb - np.array(model.mean)) / np.array(model.std)).transpose(2, 0, 1).copy()
    ).float()
    with torch.no_grad():
        expected = model.eval().encode(x[None]).numpy()
    assert np.abs(embedder.embed([crop]) - expected).max() < 1e-5
    bgr_as_rgb = embedder.embed([np.ascontiguousarray(crop[..., ::-1])])
    assert np.abs(bgr_as_rgb - expected).max() > 1e-3  # channel order matters, so the test above can fail


def test_real_pets_crops(checkpoint, assets):
    _, path = checkpoint
    capture = cv2.VideoCapture(str(assets / "data" / "PETS09-S2L1" / "vtest.avi"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    gt = np.loadtxt(assets / "data" / "PETS09-S2L1" / "gt" / "gt.txt", delimiter=",")
    boxes = gt[gt[:, 0] == 1][:, 2:6].astype(int)
    crops = [frame[max(y, 0) : y + h, max(x, 0) : x + w] for x, y, w, h in boxes]
    crops = [c for c in crops if c.size]
    assert len(crops) >= 2
    features = create_embedder("vpm", checkpoint=path, model="vpm_tiny", device="cpu").embed(crops)
    assert features.shape[0] == len(crops) and np.isfinite(features).all()
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


def test_errors(tmp_path, checkpoint):
    _, path = checkpoint
    with pytest.raises(WeightsError, match=r"missing\.pt"):
        create_embedder("vpm", checkpoint=tmp_path / "missing.pt", model="vpm_tiny", device="cpu")
    with pytest.raises(WeightsError, match="not 'vpm_vit_b16'"):
        create_embedder("vpm", checkpoint=path, device="cpu")
    with pytest.raises(ConfigError, match="not both"):
        create_embedder("vpm", checkpoint=path, pretrained="openai", model="vpm_tiny")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            create_embedder("vpm", checkpoint=path, model="vpm_tiny", device="cuda")
    embedder = create_embedder("vpm", checkpoint=path, model="vpm_tiny", device="cpu")
    with pytest.raises(ValueError, match="crop 1"):
        embedder.embed([np.zeros((10, 5, 3), np.uint8), np.zeros((0, 5, 3), np.uint8)])
