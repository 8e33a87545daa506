"""The embedder registry and the onnx embedder, on tiny built models and the real OSNet weights."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pets_crops import identity_crops

from pipeline.embedders import Embedder, create_embedder, list_embedders
from pipeline.embedders.onnx import OnnxEmbedder, check_weights
from pipeline.errors import ConfigError, WeightsError

OSNET = Path("models") / "osnet_x0_25_msmt17.onnx"


def _pool_model(path: Path, batch: int | str, flatten: bool = True, size: tuple[int, int] = (16, 8)) -> Path:
    """An ONNX model that averages each input channel: (B, 3, H, W) -> (B, 3), or (B, 3, 1, 1) unflattened."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["pooled"])]
    if flatten:
        nodes.append(helper.make_node("Flatten", ["pooled"], ["y"], axis=1))
    else:
        nodes.append(helper.make_node("Identity", ["pooled"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, *size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3] if flatten else [batch, 3, 1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _expected_pool(
    crops: list[np.ndarray], size=(16, 8), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
):
    """What the pooling model must return for BGR crops under RGB/255 ImageNet preprocessing."""
    rows = []
    for crop in crops:
        rgb = cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)[..., ::-1] / 255.0
        rows.append(((rgb - np.array(mean)) / np.array(std)).mean(axis=(0, 1)))
    rows = np.array(rows)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _random_crops(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (int(rng.integers(20, 90)), int(rng.integers(10, 40)), 3), np.uint8)
        for _ in range(n)
    ]


def test_onnx_is_registered_and_created_lazily():
    assert "onnx" in list_embedders()
    code = (
        "import sys, pipeline.embedders as e; "
        "assert 'onnx' in e.list_embedders(); "
        "assert 'pipeline.embedders.onnx' not in sys.modules and 'onnxruntime' not in sys.modules; "
        "assert 'pipeline.embedders.vpm' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_vpm_is_listed_only_when_its_module_exists():
    exists = importlib.util.find_spec("pipeline.embedders.vpm") is not None
    assert ("vpm" in list_embedders()) == exists


def test_unknown_embedder_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean onnx"):
        create_embedder("onxx", weights="x.onnx")


def test_missing_weights_names_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "reid.onnx"
    with pytest.raises(WeightsError, match=str(missing)):
        create_embedder("onnx", weights=missing)


def test_unreadable_weights_name_the_file(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(WeightsError, match=r"broken\.onnx"):
        OnnxEmbedder(broken)


@pytest.mark.parametrize("batch", [1, 2, "batch"])
def test_preprocessing_and_batching_match_numpy(tmp_path, batch):
    embedder = OnnxEmbedder(_pool_model(tmp_path / "pool.onnx", batch), input_size=(16, 8))
    assert embedder.dim == 3
    assert embedder.fixed_batch == (batch if isinstance(batch, int) else None)
    crops = _random_crops(5)
    features = embedder.embed(crops)
    assert features.shape == (5, 3) and features.dtype == np.float32
    np.testing.assert_allclose(features, _expected_pool(crops), atol=1e-5)


def test_dim_is_probed_when_the_output_is_not_2d(tmp_path):
    embedder = OnnxEmbedder(_pool_model(tmp_path / "pool4d.onnx", 1, flatten=False), input_size=(16, 8))
    assert embedder.dim == 3
    assert embedder.embed(_random_crops(3)).shape == (3, 3)


def test_bgr_channel_order_and_custom_normalisation(tmp_path):
    embedder = OnnxEmbedder(
        _pool_model(tmp_path / "pool.onnx", "n"),
        input_size=(16, 8),
        channel_order="bgr",
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    crops = _random_crops(3, seed=1)
    expected = np.array([cv2.resize(c, (8, 16)).reshape(-1, 3).mean(axis=0) for c in crops])  # BGR order kept
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed(crops), expected, atol=1e-4)


def test_input_size_must_match_a_fixed_model_input(tmp_path):
    with pytest.raises(ConfigError, match=r"set input_size to \(16, 8\)"):
        OnnxEmbedder(_pool_model(tmp_path / "pool.onnx", 1), input_size=(256, 128))


def test_empty_crop_is_rejected(tmp_path):
    embedder = OnnxEmbedder(_pool_model(tmp_path / "pool.onnx", "n"), input_size=(16, 8))
    with pytest.raises(ValueError, match="non-empty"):
        embedder.embed([np.zeros((0, 10, 3), np.uint8)])


def test_osnet_features_are_normalised_and_batch_independent(assets):
    embedder = create_embedder("onnx", weights=assets / OSNET)
    assert isinstance(embedder, Embedder) and embedder.dim == 512
    crops = _random_crops(6, seed=2)
    batched = embedder.embed(crops)
    assert batched.shape == (6, 512) and batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    single = np.concatenate([embedder.embed([c]) for c in crops])
    np.testing.assert_allclose(batched, single, atol=1e-4)
    assert embedder.embed([]).shape == (0, 512)


def test_osnet_tells_pets_identities_apart(assets):
    crops = identity_crops(assets, list(range(1, 400, 40)), min_height=50)
    ids = np.array([c[0] for c in crops])
    frames = np.array([c[1] for c in crops])
    features = OnnxEmbedder(assets / OSNET).embed([c[2] for c in crops])
    sim = features @ features.T
    other_frame = frames[:, None] != frames[None, :]
    same = (ids[:, None] == ids[None, :]) & other_frame
    diff = (ids[:, None] != ids[None, :]) & other_frame
    gaps = []
    for person in np.unique(ids):
        rows = ids == person
        if same[rows].any():
            gaps.append(sim[rows][same[rows]].mean() - sim[rows][diff[rows]].mean())
    assert len(gaps) >= 5, f"expected at least 5 PETS ids seen twice, got {len(gaps)}"
    assert np.mean(gaps) > 0.05
    assert np.mean(np.array(gaps) > 0) >= 0.8, (
        f"same-id similarity lost for some ids: gaps {np.round(gaps, 3)}"
    )


def test_check_weights_refuses_a_detector_and_accepts_a_reid_model(assets):
    detector = assets / "models" / "yolov8n_int8.onnx"
    with pytest.raises(
        WeightsError,
        match=r"yolov8n_int8\.onnx is not a re-ID model: its output 'output0' has shape \[1, 84, 8400\]",
    ):
        check_weights(detector, input_size=(640, 640))
    osnet = assets / "models" / "osnet_x0_25_msmt17.onnx"
    assert check_weights(osnet) == osnet
    with pytest.raises(ConfigError, match=r"set input_size to \(256, 128\)"):
        check_weights(osnet, input_size=(128, 64))


def test_check_weights_and_the_embedder_expand_a_tilde(assets, tmp_path, monkeypatch):
    (tmp_path / "osnet.onnx").symlink_to(assets / "models" / "osnet_x0_25_msmt17.onnx")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_weights("~/osnet.onnx") == tmp_path / "osnet.onnx"
    assert OnnxEmbedder("~/osnet.onnx").dim == 512
