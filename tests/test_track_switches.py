"""Tracks that switched people: the change point in a track's looks, on built features and PETS crops."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from pets_crops import identity_crops

from pipeline.calibration import ScoreCalibration
from pipeline.embedders.onnx import OnnxEmbedder
from pipeline.matcher import APPEARANCE_MAX_LLR, DEFAULT_THRESHOLD
from pipeline.track_switches import SWITCH_MIN_SIDE, switch_points


def prior() -> ScoreCalibration:
    """The matcher's calibration before it has learned anything: a prior around DEFAULT_THRESHOLD."""
    return ScoreCalibration(prior_threshold=DEFAULT_THRESHOLD, max_llr=APPEARANCE_MAX_LLR)


def looks(people: list[int], noise: float = 0.3, seed: int = 0) -> np.ndarray:
    """Unit features (len(people), 64): each a person's direction plus noise."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.standard_normal((64, 64)))[0][:, :3].T  # three orthogonal people
    features = directions[people] + noise * rng.standard_normal((len(people), 64)) / 8
    return features / np.linalg.norm(features, axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("people", "cuts"),
    [
        ([0] * 10, []),
        ([0] * 5 + [1] * 5, [5]),
        ([0] * 4 + [1] * 6 + [2] * 4, [4, 10]),
        ([0] * 2 + [1] * 6, [2]),
        ([0] * 6 + [1] * 1 + [0] * 3, []),  # one crop alone may be a bad one: parts average SWITCH_MIN_SIDE
        ([0] * 6 + [1] * SWITCH_MIN_SIDE, []),  # the last crops of a track may be of what hid its person
        ([0] * 6 + [1] * (SWITCH_MIN_SIDE + 1), [6]),
    ],
)
def test_a_track_is_cut_where_its_looks_change_for_good(people: list[int], cuts: list[int]) -> None:
    features = looks(people)
    assert switch_points(features, np.ones(len(people)), prior().llr) == cuts


@pytest.fixture(scope="module")
def pets_looks(assets: Path) -> tuple[np.ndarray, np.ndarray]:
    """OSNet features of PETS ground-truth crops every 6th frame, and their person ids."""
    crops = identity_crops(assets, list(range(1, 796, 6)))
    embedder = OnnxEmbedder(assets / "models" / "osnet_x0_25_msmt17.onnx")
    features = np.concatenate(
        [embedder.embed([c for *_, c in crops[i : i + 64]]) for i in range(0, len(crops), 64)]
    )
    return features, np.array([person for person, *_ in crops])


def test_pets_tracks_of_two_people_are_cut_where_they_switch_and_few_of_one_person(pets_looks) -> None:
    # Tracks of 8 crops: of one person (consecutive crops), or of two (4 of one, then 4 of another),
    # scored as the matcher does before it has learned anything. Measured: 1 of 88 tracks of one person
    # cut, and 85% of the 8760 tracks of two cut exactly where they switch (89% cut somewhere).
    features, ids = pets_looks
    llr = prior().llr
    of = {p: np.flatnonzero(ids == p) for p in np.unique(ids)}
    one = [crops[i : i + 8] for crops in of.values() for i in range(0, len(crops) - 7, 8)]
    cut_one = sum(bool(switch_points(features[t], np.ones(8), llr)) for t in one)
    two = [
        np.r_[of[a][i : i + 4], of[b][j : j + 4]]
        for a, b in itertools.permutations(of, 2)
        for i in range(0, len(of[a]) - 3, 8)
        for j in range(0, len(of[b]) - 3, 8)
    ]
    at_switch = sum(switch_points(features[t], np.ones(8), llr) == [4] for t in two)
    assert len(one) > 80 and len(two) > 8000
    assert cut_one / len(one) <= 0.05
    assert at_switch / len(two) >= 0.8
