"""Score calibration: known Gaussians, the prior fallback, free labels from tracklets, and PETS crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pets_crops import identity_crops

from pipeline.calibration import ScoreCalibration
from pipeline.embedders.onnx import OnnxEmbedder

OSNET = Path("models") / "osnet_x0_25_msmt17.onnx"
PETS_FPS = 7.0
SIMS = np.linspace(-0.99, 0.999, 2001)


def _gaussian_sims(rng: np.random.Generator, mean_z: float, std_z: float, n: int) -> np.ndarray:
    """Cosines whose Fisher z is normal: tanh(N(mean_z, std_z))."""
    return np.tanh(rng.normal(mean_z, std_z, n))


def _unit(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    x = rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _tracklet(rng: np.random.Generator, person: np.ndarray, n: int = 6, noise: float = 0.3) -> np.ndarray:
    """n noisy unit embeddings (n, D) of one person."""
    x = person + noise * rng.normal(size=(n, len(person))) / np.sqrt(len(person))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- synthetic ---------------------------------------------------------------------------------------


def test_known_gaussians_give_the_analytic_ratio():
    rng = np.random.default_rng(0)
    calibration = ScoreCalibration()
    # equal spreads in z: the true LLR is linear in z, (mu1 - mu0) / var * (z - midpoint)
    calibration.add_positive(_gaussian_sims(rng, 1.5, 0.2, 5000))
    calibration.add_negative(_gaussian_sims(rng, 0.7, 0.2, 5000))
    llr = calibration.llr(SIMS)
    assert llr.shape == SIMS.shape
    assert np.all(np.diff(llr) >= 0), "the score must not decrease with similarity"
    assert calibration.llr(0.95) > 0 > calibration.llr(0.6)
    assert calibration.threshold_at(0.0) == pytest.approx(np.tanh(1.1), abs=0.01)
    for z in (0.95, 1.0, 1.2, 1.25):
        assert calibration.llr(np.tanh(z)) == pytest.approx(20 * (z - 1.1), abs=0.5), z
    summary = calibration.summary()
    assert summary.positives == summary.negatives == 5000
    assert summary.weight == pytest.approx(1 - 30 / 5000)
    assert summary.positive_median == pytest.approx(np.tanh(1.5), abs=0.01)
    assert summary.negative_median == pytest.approx(np.tanh(0.7), abs=0.01)
    assert summary.d_prime == pytest.approx(4.0, rel=0.1)
    assert summary.learned_threshold == pytest.approx(np.tanh(1.1), abs=0.01)


def test_unequal_spreads_and_outliers_still_give_a_monotone_clipped_score():
    rng = np.random.default_rng(1)
    calibration = ScoreCalibration(max_llr=5.0)
    # a narrow positive class with a few mislabelled pairs (tracker id switches) far down
    calibration.add_positive(np.concatenate([_gaussian_sims(rng, 1.6, 0.15, 800), rng.uniform(0.2, 0.6, 20)]))
    calibration.add_negative(_gaussian_sims(rng, 0.6, 0.35, 3000))
    llr = calibration.llr(SIMS)
    assert np.all(np.diff(llr) >= 0)
    assert llr.min() >= -5.0 and llr.max() <= 5.0
    assert llr[0] < -4 and llr[-1] > 4  # the outliers do not make low similarities evidence of "same"
    assert 0.6 < calibration.threshold_at(0.0) < np.tanh(1.6)


def test_prior_before_enough_labels_then_a_blend_that_grows():
    rng = np.random.default_rng(2)
    calibration = ScoreCalibration(prior_threshold=0.85, prior_scale=0.05, max_llr=6.0)
    assert calibration.weight == 0.0
    np.testing.assert_allclose(calibration.llr(SIMS), np.clip((SIMS - 0.85) / 0.05, -6, 6))
    assert calibration.threshold_at(0.0) == pytest.approx(0.85, abs=1e-6)
    assert calibration.threshold_at(2.0) == pytest.approx(0.95, abs=1e-6)
    assert calibration.summary().learned_threshold is None

    # the learned crossing is at tanh(0.6) = 0.537, far below the prior's
    calibration.add_positive(_gaussian_sims(rng, 1.0, 0.2, 200))
    calibration.add_negative(_gaussian_sims(rng, 0.2, 0.2, 29))
    assert calibration.weight == 0.0, "29 negatives are not enough"
    assert calibration.threshold_at(0.0) == pytest.approx(0.85, abs=1e-6)

    thresholds = []
    for _ in range(4):
        calibration.add_negative(_gaussian_sims(rng, 0.2, 0.2, 60))
        thresholds.append(calibration.threshold_at(0.0))
    weights = 1 - 30 / np.array([89, 149, 200, 200])
    assert calibration.weight == pytest.approx(weights[-1])
    learned = calibration.summary().learned_threshold
    assert learned == pytest.approx(np.tanh(0.6), abs=0.05)
    assert thresholds[0] < 0.85 and bool(np.all(np.diff(thresholds) <= 1e-3))
    assert learned < thresholds[-1] < 0.85  # a blend: between the learned and the prior threshold

    fixed = ScoreCalibration(prior_threshold=0.7, min_labels=None)
    fixed.add_positive(_gaussian_sims(rng, 1.0, 0.2, 500))
    fixed.add_negative(_gaussian_sims(rng, 0.2, 0.2, 500))
    assert fixed.weight == 0.0 and fixed.threshold_at(0.0) == pytest.approx(0.7, abs=1e-6)


def test_scalar_in_scalar_out():
    calibration = ScoreCalibration()
    assert isinstance(calibration.llr(0.9), float)
    assert calibration.llr(np.array([[0.9]])).shape == (1, 1)


def test_observe_tracklet_labels_halves_and_simultaneous_tracklets():
    rng = np.random.default_rng(3)
    people = _unit(rng, 5)
    calibration = ScoreCalibration(non_overlapping=[("a", "c")])
    assert calibration.observe_tracklet(("a", 1), "a", 0.0, 10.0, _tracklet(rng, people[0])) == (1, 0)
    # same camera, overlapping in time: a negative
    assert calibration.observe_tracklet(("a", 2), "a", 5.0, 12.0, _tracklet(rng, people[1])) == (1, 1)
    # same camera, after both: nothing to pair with (it may be either of them again)
    assert calibration.observe_tracklet(("a", 3), "a", 12.5, 20.0, _tracklet(rng, people[2])) == (1, 0)
    # another camera, not declared disjoint: it may overlap, so no label
    assert calibration.observe_tracklet(("b", 1), "b", 0.0, 20.0, _tracklet(rng, people[3])) == (1, 0)
    # a camera declared not to overlap camera a, at the same time as all three of a's tracklets
    assert calibration.observe_tracklet(("c", 1), "c", 0.0, 20.0, _tracklet(rng, people[4])) == (1, 3)
    # too short for two halves, and a key seen before: ignored
    assert calibration.observe_tracklet(("a", 4), "a", 0.0, 20.0, _tracklet(rng, people[0], n=3)) == (0, 0)
    assert calibration.observe_tracklet(("a", 1), "a", 0.0, 10.0, _tracklet(rng, people[0])) == (0, 0)
    assert (calibration.positives, calibration.negatives) == (5, 4)

    # halves of one person are alike, tracklets of two people are not
    summary = calibration.summary()
    assert summary.positive_median > 0.9 > summary.negative_median


def test_touching_spans_are_no_negative_and_memory_is_bounded():
    rng = np.random.default_rng(4)
    people = _unit(rng, 4)
    calibration = ScoreCalibration(memory=2, min_overlap_s=0.5)
    calibration.observe_tracklet(1, "a", 0.0, 10.0, _tracklet(rng, people[0]))
    # a track that starts where another ended may be the same person under a new tracker id
    assert calibration.observe_tracklet(2, "a", 10.0, 20.0, _tracklet(rng, people[1])) == (1, 0)
    assert calibration.observe_tracklet(3, "a", 9.6, 30.0, _tracklet(rng, people[2])) == (
        1,
        1,
    )  # 0.4 s with 1: too short
    # tracklet 1 has left the memory of two: only 2 and 3 can be paired with
    assert calibration.observe_tracklet(4, "a", 0.0, 40.0, _tracklet(rng, people[3])) == (1, 2)


def test_observe_tracklet_checks_shapes():
    calibration = ScoreCalibration()
    with pytest.raises(ValueError, match=r"shape \(N, D\), but got shape \(8,\)"):
        calibration.observe_tracklet(1, "a", 0.0, 1.0, np.ones(8))
    with pytest.raises(ValueError, match=r"weights must have shape \(6,\), but got shape \(5,\)"):
        calibration.observe_tracklet(1, "a", 0.0, 1.0, np.ones((6, 4)), np.ones(5))
    with pytest.raises(ValueError, match="last_time must be >= first_time"):
        calibration.observe_tracklet(1, "a", 2.0, 1.0, np.ones((6, 4)))
    with pytest.raises(ValueError, match="prior_threshold must be in"):
        ScoreCalibration(prior_threshold=1.0)


def test_to_dict_round_trips_through_json():
    rng = np.random.default_rng(5)
    calibration = ScoreCalibration(prior_threshold=0.8, model="osnet_x0_25_msmt17.onnx")
    calibration.add_positive(_gaussian_sims(rng, 1.4, 0.25, 300))
    calibration.add_negative(_gaussian_sims(rng, 0.6, 0.2, 900))
    record = json.loads(json.dumps(calibration.to_dict()))
    assert record["version"] == 1 and record["summary"]["positives"] == 300
    restored = ScoreCalibration.from_dict(record)
    assert restored.model == "osnet_x0_25_msmt17.onnx" and restored.prior_threshold == 0.8
    np.testing.assert_allclose(restored.llr(SIMS), calibration.llr(SIMS))
    assert restored.summary() == calibration.summary()
    assert ScoreCalibration.from_dict(record, min_labels=None).weight == 0.0

    with pytest.raises(ValueError, match="version must be 1, but got 7"):
        ScoreCalibration.from_dict({**record, "version": 7})
    with pytest.raises(ValueError, match="bins must be 380"):
        ScoreCalibration.from_dict({**record, "bins": {"count": 100, "z_max": 3.8}})
    with pytest.raises(ValueError, match="positives: bins and counts"):
        ScoreCalibration.from_dict({**record, "positives": {"bins": [1, 2], "counts": [3]}})


# -- PETS09-S2L1 ground-truth crops through OSNet ----------------------------------------------------


def _chunks(ids: np.ndarray, frames: np.ndarray, step: int, length: int) -> list[np.ndarray]:
    """Local track pieces: each id's crops in frame order, cut every `length` frames and at gaps."""
    out = []
    for person in np.unique(ids):
        rows = np.flatnonzero(ids == person)
        rows = rows[np.argsort(frames[rows])]
        piece = [rows[0]]
        for row in rows[1:]:
            if frames[row] - frames[piece[0]] >= length or frames[row] - frames[piece[-1]] > 2 * step:
                out.append(np.array(piece))
                piece = []
            piece.append(row)
        out.append(np.array(piece))
    return out


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve, ties counted half."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _balanced_accuracy(decision: np.ndarray, positive: np.ndarray) -> float:
    return float((decision[positive].mean() + (~decision[~positive]).mean()) / 2)


def _f1(decision: np.ndarray, positive: np.ndarray) -> float:
    tp = (decision & positive).sum()
    return float(2 * tp / (2 * tp + (decision & ~positive).sum() + (~decision & positive).sum()))


@pytest.fixture(scope="module")
def pets_chunks(assets):
    """Chunks of PETS ground-truth tracks embedded by OSNet: (ids, first and last frame, features per chunk).

    Every 12th frame (about 390 crops) and pieces of 60 frames (8.6 s at 7 fps), as a tracker might
    leave a track broken by occlusions.
    """
    step = 12
    crops = identity_crops(assets, list(range(1, 796, step)), min_height=50)
    ids = np.array([c[0] for c in crops])
    frames = np.array([c[1] for c in crops])
    features = OnnxEmbedder(assets / OSNET).embed([c[2] for c in crops])  # (N, 512)
    chunks = [rows for rows in _chunks(ids, frames, step, 60) if len(rows) >= 4]
    return (
        np.array([ids[rows[0]] for rows in chunks]),
        np.array([frames[rows[0]] for rows in chunks]),
        np.array([frames[rows[-1]] for rows in chunks]),
        [features[rows] for rows in chunks],
    )


def test_calibration_from_free_labels_separates_pets_people_better_than_the_raw_threshold(pets_chunks):
    """Learned only from what the constraints give (halves of one chunk, chunks seen at once), checked on
    what the matcher decides: chunks of different times, same ground-truth id or not.

    Measured (OSNet x0.25 ONNX): 75 chunks, 75 positives, 257 negatives, weight 0.6; threshold 0.74
    (learned alone 0.68) against 0.85; over 2450 pairs of chunks (160 of one person), balanced accuracy
    0.93 against 0.84 at 0.85 (true-positive rate 0.98 against 0.74, true-negative rate 0.88 against 0.95).
    F1 is 0.52 against 0.60: llr > 0 assumes even odds, while here 1 pair in 15 is one person; the matcher
    carries those odds in its new-identity cost. AUC 0.96 either way. Linking each chunk to its most
    similar earlier one or to no one, 0.71 of 69 chunks are decided right against 0.68 at 0.85 (most of
    the rest are rank-1 errors no threshold mends).
    """
    ids, first, last, features = pets_chunks
    calibration = ScoreCalibration(prior_threshold=0.85, model=OSNET.name)
    for key, (start, end, embeddings) in enumerate(zip(first, last, features, strict=True)):
        calibration.observe_tracklet(key, "pets", start / PETS_FPS, end / PETS_FPS, embeddings)
    summary = calibration.summary()
    assert summary.positives == len(ids) >= 60 and summary.negatives >= 200
    assert 0.5 <= summary.weight < 1.0
    assert np.all(np.diff(calibration.llr(SIMS)) >= 0)

    # 0.85 sits above the typical similarity of two halves of one track: the default rejects half of them
    assert summary.negative_median < summary.learned_threshold < summary.positive_median < 0.85
    assert summary.learned_threshold < summary.threshold < 0.85 - 0.05

    means = np.stack([f.mean(axis=0) / np.linalg.norm(f.mean(axis=0)) for f in features])  # (C, 512)
    apart = last[:, None] < first[None, :]  # held-out: pairs the calibration never saw
    sims = (means @ means.T)[apart]
    same = (ids[:, None] == ids[None, :])[apart]
    assert same.sum() >= 100 and (~same).sum() >= 1000

    raw, calibrated = sims >= 0.85, calibration.llr(sims) > 0
    raw_ba, calibrated_ba = _balanced_accuracy(raw, same), _balanced_accuracy(calibrated, same)
    assert calibrated_ba > raw_ba + 0.05, (
        f"balanced accuracy: calibrated {calibrated_ba:.3f} (at {summary.threshold:.3f}), raw 0.85 {raw_ba:.3f}; "
        f"F1 {_f1(calibrated, same):.3f} against {_f1(raw, same):.3f}"
    )
    assert _auc(calibration.llr(sims), same) == pytest.approx(_auc(sims, same), abs=0.01)

    # the matcher's own question: link each chunk to its best earlier chunk, or call it someone new
    raw_right = _open_set_accuracy(means, ids, first, last, lambda s: s >= 0.85)
    calibrated_right = _open_set_accuracy(means, ids, first, last, lambda s: calibration.llr(s) > 0)
    assert calibrated_right >= raw_right, f"calibrated {calibrated_right:.3f}, raw 0.85 {raw_right:.3f}"


def _open_set_accuracy(means, ids, first, last, link) -> float:
    """The share of chunks decided right when each is linked to its most similar earlier chunk or not.

    Right: linked to a chunk of its own id, or left alone when no earlier chunk has its id.
    """
    right = total = 0
    for query in range(len(ids)):
        gallery = np.flatnonzero(last < first[query])
        if not len(gallery):
            continue
        best = gallery[np.argmax(means[gallery] @ means[query])]
        linked = bool(link(float(means[best] @ means[query])))
        right += ids[best] == ids[query] if linked else not (ids[gallery] == ids[query]).any()
        total += 1
    return right / total


def test_a_brief_sighting_is_read_as_one(pets_chunks):
    """A single crop looks less like its person than a tracklet's half does; read against the positives
    of single crops, a comparison of one crop with a tracklet is decided better than against all of them.

    Measured (OSNet x0.25 ONNX, the chunks above, 4-5 crops each: only single crops get positives): over
    4900 pairs of a chunk's first crop and another chunk of other times (320 of one person), balanced
    accuracy 0.889 against 0.854 (true-positive rate 0.888 against 0.781, true-negative rate 0.890
    against 0.926).
    """
    ids, first, last, features = pets_chunks
    calibration = ScoreCalibration(prior_threshold=0.85, model=OSNET.name)
    for key, (start, end, embeddings) in enumerate(zip(first, last, features, strict=True)):
        calibration.observe_tracklet(key, "pets", start / PETS_FPS, end / PETS_FPS, embeddings)
    means = np.stack([f.mean(axis=0) / np.linalg.norm(f.mean(axis=0)) for f in features])  # (C, 512)
    single = np.stack([f[0] / np.linalg.norm(f[0]) for f in features])
    apart = (last[:, None] < first[None, :]) | (last[None, :] < first[:, None])
    sims = (single @ means.T)[apart]
    same = (ids[:, None] == ids[None, :])[apart]
    assert same.sum() >= 200 and (~same).sum() >= 2000

    as_tracklets, as_brief = calibration.llr(sims) > 0, calibration.llr(sims, crops=1) > 0
    tracklets_ba, brief_ba = _balanced_accuracy(as_tracklets, same), _balanced_accuracy(as_brief, same)
    assert brief_ba > tracklets_ba + 0.02, f"brief {brief_ba:.3f}, as tracklets {tracklets_ba:.3f}"
    # no brief positives of 2 crops here: such comparisons read as before
    assert np.array_equal(calibration.llr(sims, crops=2), calibration.llr(sims))
    assert np.all(np.diff(calibration.llr(SIMS, crops=1)) >= 0)
    # learned again from what to_dict keeps
    copy = ScoreCalibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert np.allclose(copy.llr(sims, crops=1), calibration.llr(sims, crops=1))
