"""Tracking evaluation: hand-computed cases, identity consistency across cameras, trackeval agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli

from pipeline.errors import PipelineError
from pipeline.evaluation import (
    COMBINED,
    CROSS_CAMERA,
    evaluate,
    evaluate_run,
    format_table,
    load_gt_manifest,
    perfect_links,
)
from pipeline.motchallenge import read_mot_txt, write_mot_txt
from pipeline.tools.multicam import make_multicam
from pipeline.tools.virtual_cameras import preset_cameras

FRAMES = 60


def _box(frame: int, pid: int, x: float, y: float = 10.0, w: float = 20.0, h: float = 40.0) -> list[float]:
    return [frame, pid, x, y, w, h, 1, -1, -1, -1]


@pytest.fixture(scope="module")
def pets_set(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-frame overlap split of PETS09-S2L1; returns the manifest path."""
    out = tmp_path_factory.mktemp("pets_eval")
    video = assets / "data" / "PETS09-S2L1" / "vtest.avi"
    return make_multicam(video, out, preset_cameras("overlap", FRAMES), max_frames=FRAMES)


@pytest.fixture(scope="module")
def pets_gt(pets_set: Path) -> dict[str, np.ndarray]:
    """Camera id -> gt array of the PETS overlap set."""
    paths, _ = load_gt_manifest(pets_set)
    return {cam: read_mot_txt(path) for cam, path in paths.items()}


def test_gt_against_itself_is_perfect(pets_set: Path, pets_gt: dict[str, np.ndarray]) -> None:
    gt_paths, lengths = load_gt_manifest(pets_set)
    results = evaluate(gt_paths, gt_paths, num_frames=lengths)
    assert set(results) == {"left", "right", COMBINED, CROSS_CAMERA}
    for name, res in results.items():
        for metric in ("IDF1", "MOTA", "HOTA", "IDP", "IDR", "DetA", "AssA"):
            assert res[metric] == pytest.approx(1.0), (name, metric)
        assert res["IDSW"] == res["FP"] == res["FN"] == 0
    assert results[CROSS_CAMERA]["TP"] == sum(len(g) for g in pets_gt.values())


def test_ids_swapped_across_cameras_lower_only_cross_camera(pets_gt: dict[str, np.ndarray]) -> None:
    shared = sorted(set(pets_gt["left"][:, 1]) & set(pets_gt["right"][:, 1]))
    assert len(shared) >= 2
    pred = {cam: g[:, :6].copy() for cam, g in pets_gt.items()}
    # The right camera sees the same people under a rotated labelling: consistent inside it, wrong across.
    rotate = dict(zip(shared, shared[1:] + shared[:1]))
    pred["right"][:, 1] = [rotate.get(i, i) for i in pred["right"][:, 1]]
    results = evaluate(pred, pets_gt)
    for name in ("left", "right", COMBINED):
        assert results[name]["IDF1"] == pytest.approx(1.0)
        assert results[name]["MOTA"] == pytest.approx(1.0)
        assert results[name]["HOTA"] == pytest.approx(1.0)
    cross = results[CROSS_CAMERA]
    assert cross["IDF1"] < 0.95 and cross["AssA"] < 0.95 and cross["IDSW"] >= len(shared)
    assert cross["DetA"] == pytest.approx(1.0)


def test_half_the_boxes_missing() -> None:
    gt = np.array([_box(f, pid, 30.0 * pid) for f in (1, 2) for pid in (1, 2)])
    pred = gt[gt[:, 1] == 1]
    res = evaluate({"a": pred}, {"a": gt})["a"]
    # MOTA = 1 - (FN + FP + IDSW) / GT = 1 - 2 / 4; IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN) = 4 / 6.
    assert res["MOTA"] == pytest.approx(0.5)
    assert (res["FN"], res["FP"], res["IDSW"]) == (2, 0, 0)
    assert res["IDR"] == pytest.approx(0.5) and res["IDP"] == pytest.approx(1.0)
    assert res["IDF1"] == pytest.approx(2 / 3)
    # Every found box is exact and its track is whole: DetA = TP / (TP + FN + FP) = 0.5, AssA = 1.
    assert res["DetA"] == pytest.approx(0.5) and res["AssA"] == pytest.approx(1.0)
    assert res["HOTA"] == pytest.approx(np.sqrt(0.5))


def test_identity_switch_and_false_positive() -> None:
    gt = np.array([_box(f, 1, 10.0 * f) for f in range(1, 5)])
    pred = np.array([_box(f, 7 if f <= 2 else 8, 10.0 * f) for f in range(1, 5)] + [_box(2, 9, 200.0)])
    res = evaluate({"a": pred}, {"a": gt})["a"]
    # One switch and one false positive over 4 gt boxes.
    assert (res["IDSW"], res["FP"], res["FN"]) == (1, 1, 0)
    assert res["MOTA"] == pytest.approx(1 - 2 / 4)
    # Best one-to-one id match covers 2 of 4 gt boxes and 2 of 5 predictions.
    assert res["IDF1"] == pytest.approx(2 * 2 / (4 + 5))
    # DetA = 4 / (4 + 0 + 1); each TP's track association A = 2 / (4 + 2 - 2) = 0.5.
    assert res["DetA"] == pytest.approx(0.8) and res["AssA"] == pytest.approx(0.5)


def test_perfect_links_label_each_track_as_its_person() -> None:
    # camera a: person 1 in tracks 5 (frames 1-3) and 8 (3-4, a second box on the person in frame 3);
    # person 2 in tracks 7 (frames 1-2) and 6 (3-4). Camera b: person 1 again, in its track 5.
    gt_a = np.array([_box(f, 1, 10.0 * f) for f in range(1, 5)] + [_box(f, 2, 200.0) for f in range(1, 5)])
    gt_b = np.array([_box(f, 1, 50.0) for f in range(1, 4)])
    pred_a = np.array(
        [_box(f, 5, 10.0 * f) for f in (1, 2, 3)]
        + [_box(3, 8, 34.0), _box(4, 8, 40.0)]
        + [_box(f, 7, 200.0) for f in (1, 2)]
        + [_box(f, 6, 200.0) for f in (3, 4)]
    )
    pred_b = np.array([_box(f, 5, 50.0) for f in range(1, 4)])
    gt = {"a": gt_a, "b": gt_b}
    linked = perfect_links({"a": pred_a, "b": pred_b}, gt)
    labels = {int(t): set(linked["a"][pred_a[:, 1] == t, 1].astype(int)) for t in (5, 6, 7, 8)}
    # the tracks of one person share its id, across cameras too
    assert labels[5] == {1} and labels[6] == labels[7] == {2}
    assert set(linked["b"][:, 1].astype(int)) == {1}
    # track 8 follows person 1 in frame 4, but a second id on person 1 in frame 3: an id of its own
    assert labels[8] == {3}
    assert np.array_equal(linked["a"][:, [0, 2, 3, 4, 5]], pred_a[:, [0, 2, 3, 4, 5]])
    unlinked = {
        "a": pred_a,
        "b": pred_b + np.array([0, 10, 0, 0, 0, 0, 0, 0, 0, 0]),
    }  # ids differ across cameras
    ceiling = evaluate(linked, gt)[CROSS_CAMERA]["IDF1"]
    assert evaluate(unlinked, gt)[CROSS_CAMERA]["IDF1"] < ceiling < 1.0  # person 1's frame 4 stays apart


def test_distractors_and_zero_marked_gt_are_ignored() -> None:
    # MOT17-style gt: person 1 a pedestrian, 2 a static person (distractor), 3 marked 0 (ignore).
    gt = np.array(
        [[f, 1, 10, 10, 20, 40, 1, 1, 1.0] for f in (1, 2)]
        + [[f, 2, 100, 10, 20, 40, 1, 7, 1.0] for f in (1, 2)]
        + [[f, 3, 200, 10, 20, 40, 0, 1, 1.0] for f in (1, 2)]
    )
    pred = np.array([_box(f, pid, x) for f in (1, 2) for pid, x in ((5, 10.0), (6, 100.0))])
    res = evaluate({"a": pred}, {"a": gt})["a"]
    # The prediction on the static person is dropped, not a false positive; ignored gt is no miss.
    assert (res["TP"], res["FP"], res["FN"]) == (2, 0, 0)
    assert res["MOTA"] == pytest.approx(1.0)
    # The ignored box (id 3, flag 0) does not remove predictions: one there is a false positive.
    pred3 = np.vstack([pred, [_box(1, 4, 200.0)]])
    assert evaluate({"a": pred3}, {"a": gt})["a"]["FP"] == 1


def _trackeval_reference(
    tmp_path: Path, gt: dict[str, np.ndarray], pred: dict[str, np.ndarray], benchmark: str
):
    """Scores from trackeval's own MOTChallenge2DBox dataset and Evaluator on a folder layout."""
    import trackeval

    lengths = {cam: int(max(g[:, 0].max(), pred[cam][:, 0].max())) for cam, g in gt.items()}
    for cam in gt:
        write_mot_txt(tmp_path / "gt" / cam / "gt" / "gt.txt", gt[cam])
        write_mot_txt(tmp_path / "trackers" / "t" / "data" / f"{cam}.txt", pred[cam])
    dataset = trackeval.datasets.MotChallenge2DBox(
        {
            "GT_FOLDER": str(tmp_path / "gt"),
            "TRACKERS_FOLDER": str(tmp_path / "trackers"),
            "BENCHMARK": benchmark,
            "SEQ_INFO": lengths,
            "SKIP_SPLIT_FOL": True,
            "PRINT_CONFIG": False,
        }
    )
    quiet = {"PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False}
    quiet.update({"OUTPUT_DETAILED": False, "PLOT_CURVES": False, "LOG_ON_ERROR": None})
    metrics = [m({"PRINT_CONFIG": False}) for m in (trackeval.metrics.HOTA, trackeval.metrics.CLEAR)]
    metrics.append(trackeval.metrics.Identity({"PRINT_CONFIG": False}))
    out, _ = trackeval.Evaluator(quiet).evaluate([dataset], metrics)
    return out["MotChallenge2DBox"]["t"], lengths


@pytest.mark.parametrize("style", ["MOT17", "MOT15"])
def test_agrees_with_trackeval_dataset_pipeline(
    style: str, assets: Path, pets_gt: dict[str, np.ndarray], tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    if style == "MOT15":  # the raw PETS gt: world coordinates where MOT17 has classes
        gt = {"pets": read_mot_txt(assets / "data" / "PETS09-S2L1" / "gt" / "gt.txt")[:600]}
    else:  # camera gt with some people turned into distractors and some boxes flagged 0
        gt = {cam: g.copy() for cam, g in pets_gt.items()}
        gt["left"][np.isin(gt["left"][:, 1], gt["left"][:2, 1]), 7] = 7
        gt["right"][rng.random(len(gt["right"])) < 0.1, 6] = 0
    pred = {}
    for cam, g in gt.items():
        p = np.full((len(g), 10), -1.0)
        p[:, :6] = g[:, :6]
        p[:, 6] = 1
        p[:, 2:4] += rng.normal(0, 3, (len(g), 2))
        p[rng.random(len(g)) < 0.2, 1] += 50  # broken tracks
        p = p[rng.random(len(g)) > 0.15]  # misses
        fps = p[rng.choice(len(p), 10, replace=False)].copy()
        fps[:, 1], fps[:, 2] = 900 + np.arange(10), fps[:, 2] + 60  # false positives
        pred[cam] = p[np.lexsort((p[:, 1], p[:, 0]))]
        pred[cam] = np.vstack([pred[cam], fps])
        _, first = np.unique(pred[cam][:, :2], axis=0, return_index=True)
        pred[cam] = pred[cam][np.sort(first)]
    ref, lengths = _trackeval_reference(tmp_path, gt, pred, style)
    ours = evaluate(pred, gt, num_frames=lengths)
    for cam in [*gt, COMBINED]:
        seq = ref["COMBINED_SEQ" if cam == COMBINED else cam]["pedestrian"]
        assert ours[cam]["HOTA"] == pytest.approx(np.mean(seq["HOTA"]["HOTA"]))
        assert ours[cam]["AssA"] == pytest.approx(np.mean(seq["HOTA"]["AssA"]))
        assert ours[cam]["MOTA"] == pytest.approx(seq["CLEAR"]["MOTA"])
        assert ours[cam]["IDSW"] == seq["CLEAR"]["IDSW"]
        assert ours[cam]["IDF1"] == pytest.approx(seq["Identity"]["IDF1"])
    assert 0.3 < ours[COMBINED]["MOTA"] < 0.95  # the perturbation is neither trivial nor total


def test_evaluate_run_reads_mot_folder(
    pets_set: Path, pets_gt: dict[str, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    write_mot_txt(out / "mot" / "left.txt", pets_gt["left"][:, :6])
    results = evaluate_run(out, pets_set)
    assert results["left"]["IDF1"] == pytest.approx(1.0)
    # The camera without a file counts as all misses.
    assert results["right"]["MOTA"] == 0.0 and results["right"]["FN"] == len(pets_gt["right"])
    table = format_table(results)
    assert table.splitlines()[0].split()[:4] == ["camera", "HOTA", "DetA", "AssA"]
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["left", "right", COMBINED, CROSS_CAMERA]


def test_user_errors() -> None:
    gt = {"a": np.array([_box(1, 1, 10.0)])}
    with pytest.raises(PipelineError, match="camera ids must match"):
        evaluate({"b": gt["a"]}, gt)
    with pytest.raises(PipelineError, match="frame 1"):
        evaluate({"a": np.array([_box(1, 3, 10.0), _box(1, 3, 50.0)])}, gt)
    with pytest.raises(PipelineError, match="does not exist"):
        evaluate_run(Path("no/such/run"), Path("no/such/multicam.yaml"))


@pytest.fixture
def run_out(tmp_path: Path) -> Path:
    """A run folder with one camera's MOT file."""
    out = tmp_path / "run"
    write_mot_txt(out / "mot" / "left.txt", np.array([_box(1, 1, 10.0)]))
    return out


def _eval_error(out: Path, manifest: Path) -> str:
    result = run_cli("eval", str(out), str(manifest), cwd=out.parent)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(manifest) in lines[0]
    return lines[0]


def test_cli_eval_a_video_as_manifest_is_one_line(run_out: Path, assets: Path) -> None:
    line = _eval_error(run_out, assets / "data" / "PETS09-S2L1" / "vtest.avi")
    assert "not a text file" in line


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("cameras: 3\n", "'cameras' list"),
        ("- a\n- b\n", "'cameras' list"),
        ("cameras: [left]\n", "cameras[0] needs 'id' and 'gt'"),
        ("cameras: [{id: left, gt: left.txt, frames: many}]\n", "cameras[0].frames"),
        ("cameras: [{id: left, gt: left.txt, frames: -3}]\n", "cameras[0].frames"),
        ("cameras: [{id: left, gt: left.txt, frames: 1.5}]\n", "cameras[0].frames"),
        ("cameras: [{id: left, gt: [1, 2]}]\n", "cameras[0].gt"),
        ("cameras: [{id: [left], gt: left.txt}]\n", "cameras[0].id"),
        ("cameras: [{id: ../left, gt: left.txt}]\n", "cameras[0].id"),
        ("cameras: [{id: left, gt: a.txt}, {id: left, gt: b.txt}]\n", "cameras[1].id: duplicate"),
        ("cameras: [{id: left, gt: left.txt}\n", "not valid YAML"),
    ],
)
def test_cli_eval_manifest_with_wrong_types_is_one_line(
    run_out: Path, tmp_path: Path, manifest: str, expected: str
) -> None:
    path = tmp_path / "multicam.yaml"
    path.write_text(manifest)
    assert expected in _eval_error(run_out, path)


def test_cli_eval_gt_that_is_a_video_is_one_line(run_out: Path, tmp_path: Path, assets: Path) -> None:
    path = tmp_path / "multicam.yaml"
    video = assets / "data" / "PETS09-S2L1" / "vtest.avi"
    path.write_text(f"cameras: [{{id: left, gt: {video}}}]\n")
    result = run_cli("eval", str(run_out), str(path), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"reid-pipeline: error: gt for camera 'left': {video} is not a text file; expected a MOT box file"
    ]
