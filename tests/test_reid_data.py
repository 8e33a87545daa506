"""Re-ID data: the dataset readers on folders the tests build, the PK sampler, transforms, the MOT converter."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.errors import PipelineError
from reid.data import PKSampler, build_transforms, list_dataset_formats, load_dataset, load_image
from reid.data.from_mot import (
    CameraView,
    convert_mot_to_market,
    open_sequence,
    parse_camera_spec,
    read_mot_gt,
    split_time,
    split_views,
)


def _image(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 8, 3), value, np.uint8))


def _market(root: Path) -> None:
    for name in ("0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s2_000101_00.jpg"):
        _image(root / "bounding_box_train" / name)
    _image(root / "query" / "0010_c1s1_000100_00.jpg")
    for name in ("0010_c2s1_000200_00.jpg", "0000_c3s1_000300_00.jpg", "-1_c1s1_000400_00.jpg"):
        _image(root / "bounding_box_test" / name)


@pytest.mark.parametrize("fmt", ["market1501", "dukemtmc"])
def test_market_layout_relabels_train_and_handles_junk_and_distractors(tmp_path: Path, fmt: str) -> None:
    _market(tmp_path)
    dataset = load_dataset(fmt, tmp_path)
    assert sorted((s.pid, s.camid) for s in dataset.train) == [(0, 0), (0, 1), (1, 2)]
    assert [(s.pid, s.camid) for s in dataset.query] == [(10, 0)]
    # pid -1 (junk) is dropped, pid 0 (distractor) stays in the gallery
    assert sorted((s.pid, s.camid) for s in dataset.gallery) == [(0, 2), (10, 1)]
    assert dataset.num_train_pids == 2 and dataset.num_train_cams == 3


def test_wrong_layout_names_the_folder_and_the_expected_layout(tmp_path: Path) -> None:
    (tmp_path / "query").mkdir()
    with pytest.raises(PipelineError, match=rf"{tmp_path}.*bounding_box_train.*expected"):
        load_dataset("market1501", tmp_path)
    with pytest.raises(PipelineError, match="did you mean market1501"):
        load_dataset("market", tmp_path)
    with pytest.raises(PipelineError, match=r"expected .*list_train\.txt"):
        load_dataset("msmt17", tmp_path)
    _image(tmp_path / "bounding_box_train" / "person.jpg")
    (tmp_path / "bounding_box_test").mkdir()
    with pytest.raises(PipelineError, match=r"person\.jpg is not named like"):
        load_dataset("market1501", tmp_path)


@pytest.mark.parametrize(("train_dir", "test_dir"), [("train", "test"), ("mask_train_v2", "mask_test_v2")])
def test_msmt17_list_files(tmp_path: Path, train_dir: str, test_dir: str) -> None:
    lists = {
        "train": ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0001/0001_000_05_0303noon_0020_1.jpg 1"],
        "val": ["0001/0001_001_02_0303noon_0030_1.jpg 1"],
        "query": ["0005/0005_000_03_0303morning_0001_0.jpg 5"],
        "gallery": ["0005/0005_001_07_0303morning_0002_0.jpg 5"],
    }
    for split, lines in lists.items():
        (tmp_path / f"list_{split}.txt").write_text("\n".join(lines) + "\n")
        folder = train_dir if split in ("train", "val") else test_dir
        for line in lines:
            _image(tmp_path / folder / line.split()[0])
    dataset = load_dataset("msmt17", tmp_path)
    assert sorted((s.pid, s.camid) for s in dataset.train) == [(0, 0), (1, 1), (1, 4)]
    assert [(s.pid, s.camid) for s in dataset.query] == [(5, 2)]
    assert [(s.pid, s.camid) for s in dataset.gallery] == [(5, 6)]


def test_folder_layout_cameras_from_prefix_or_subfolder(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "alice" / "camA_001.jpg")
    _image(tmp_path / "train" / "alice" / "camB" / "002.jpg")
    _image(tmp_path / "train" / "bob" / "camB_003.png")
    _image(tmp_path / "query" / "carol" / "camA_004.jpg")
    _image(tmp_path / "gallery" / "carol" / "camB_005.jpg")
    _image(tmp_path / "gallery" / "dave" / "camA_006.jpg")
    dataset = load_dataset("folder", tmp_path)
    assert sorted((Path(s.path).name, s.pid, s.camid) for s in dataset.train) == [
        ("002.jpg", 0, 1), ("camA_001.jpg", 0, 0), ("camB_003.png", 1, 1)
    ]  # fmt: skip
    assert [(s.pid, s.camid) for s in dataset.query] == [(0, 0)]
    assert sorted((s.pid, s.camid) for s in dataset.gallery) == [(0, 1), (1, 0)]
    (tmp_path / "train" / "erin").mkdir()
    with pytest.raises(PipelineError, match=r"identity folder .*erin holds no images"):
        load_dataset("folder", tmp_path)
    assert "folder" in list_dataset_formats()


def test_undecodable_image_is_one_line_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "0001_c1s1_000001_00.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(PipelineError, match=rf"cannot decode image {bad}") as info:
        load_image(bad)
    assert "\n" not in str(info.value)


def test_pk_sampler_batches_p_identities_with_k_images() -> None:
    labels = [0] * 10 + [1] * 2 + [2] * 6 + [3] * 4 + [4] * 1
    sampler = PKSampler(labels, p=3, k=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == (2 + 1 + 1 + 1 + 1) // 3
    for batch in batches:
        counts = Counter(labels[i] for i in batch)
        assert len(batch) == 12 and len(counts) == 3 and set(counts.values()) == {4}
    sampler.set_epoch(1)
    again = PKSampler(labels, p=3, k=4, seed=1)
    again.set_epoch(1)
    assert list(sampler) == list(again)
    with pytest.raises(ValueError, match="at least p=6"):
        PKSampler(labels, p=6, k=2)


def test_transforms_give_the_input_size_and_augment_only_in_training() -> None:
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 40, 3), dtype=np.uint8))
    kwargs = dict(input_size=(64, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    test_tf = build_transforms(train=False, **kwargs)
    assert test_tf(image).shape == (3, 64, 32)
    assert torch.equal(test_tf(image), test_tf(image))
    train_tf = build_transforms(train=True, **kwargs)
    torch.manual_seed(0)
    outputs = [train_tf(image) for _ in range(4)]
    assert all(o.shape == (3, 64, 32) for o in outputs)
    assert not all(torch.equal(outputs[0], o) for o in outputs[1:])


def test_camera_specs_and_splits(assets: Path) -> None:
    assert parse_camera_spec("0,0,400,576@1-300") == CameraView(region=(0, 0, 400, 576), frames=(1, 300))
    assert parse_camera_spec("@5-9") == CameraView(frames=(5, 9))
    with pytest.raises(PipelineError, match="camera spec"):
        parse_camera_spec("0,0,400")
    sequence = open_sequence(assets / "data" / "PETS09-S2L1")
    assert (sequence.width, sequence.height, sequence.num_frames) == (768, 576, 795)
    assert split_views(sequence, 2) == (
        CameraView(region=(0, 0, 384, 576)),
        CameraView(region=(384, 0, 768, 576)),
    )
    assert split_time(sequence, 2) == (CameraView(frames=(1, 398)), CameraView(frames=(399, 795)))
    rows = read_mot_gt(sequence.gt)
    assert rows.shape == (4650, 7) and np.all(rows[:, 6] == 1)  # MOT15-style: every box, visibility 1
    with pytest.raises(PipelineError, match=r"has no gt/gt\.txt"):
        open_sequence(assets / "data")


def test_mot16_gt_keeps_pedestrians_and_reads_visibility(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text(
        "1,1,10,10,20,60,1,1,0.9\n1,2,10,10,20,60,0,1,1.0\n1,3,10,10,20,60,1,3,1.0\n2,1,12,10,20,60,1,1,0.2\n"
    )
    rows = read_mot_gt(gt)
    assert rows[:, 1].tolist() == [1, 1] and rows[:, 6].tolist() == [0.9, 0.2]


def test_converter_writes_a_market_dataset_the_reader_reads_back(assets: Path, tmp_path: Path) -> None:
    sequence = open_sequence(assets / "data" / "TUD-Campus")
    out = tmp_path / "tud"
    summary = convert_mot_to_market(
        [sequence], out, cameras=[split_time(sequence, 2)], frame_step=2, min_height=60, test_fraction=0.4,
        queries_per_camera=1, image_size=(64, 32), seed=3,
    )  # fmt: skip
    dataset = load_dataset("market1501", out)
    assert len(dataset.train) == summary["counts"]["train"] > 0
    assert len(dataset.query) == summary["counts"]["query"] > 0
    assert len(dataset.gallery) == summary["counts"]["gallery"] > 0
    test_ids, train_ids = set(summary["test_ids"]), set(summary["train_ids"])
    assert not test_ids & train_ids and len(test_ids) == round(0.4 * len(test_ids | train_ids))
    assert {s.pid for s in dataset.query} <= test_ids and {s.pid for s in dataset.gallery} == test_ids
    # one query per test identity and camera, and each query has a match in the other camera
    per_id_cam = Counter((s.pid, s.camid) for s in dataset.query)
    assert set(per_id_cam.values()) == {1}
    for s in dataset.query:
        assert any(g.pid == s.pid and g.camid != s.camid for g in dataset.gallery)
    assert {s.camid for s in dataset.train + dataset.query} == {0, 1}
    assert load_image(dataset.query[0].path).size == (32, 64)
    frames = {int(Path(s.path).name.split("_")[2]) for s in dataset.train}
    assert all((f - 1) % 2 == 0 for f in frames)
    with pytest.raises(PipelineError, match="not empty"):
        convert_mot_to_market([sequence], out, cameras=[split_time(sequence, 2)])
