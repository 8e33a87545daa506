"""topology.json: written beside the store, read back, and a later matcher starting from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.calibration import ScoreCalibration
from pipeline.errors import PipelineError
from pipeline.geometry import OverlapLearner, OverlapModel
from pipeline.matcher import Matcher
from pipeline.store import EmbeddingStore
from pipeline.topology import read_topology, seed_topology, store_copy, write_topology


def learned_topology(model: str = "onnx:osnet.onnx") -> dict:
    """A topology as a matcher writes it: one overlap (b = a shifted 100 px right) and a calibration."""
    shift = np.array([[1.0, 0.0, 100.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    overlap = OverlapModel(
        "a", "b", shift / np.linalg.norm(shift), ((1, 2), (3, 4)), 40, 1.5, 3.0, 0.02, 0.05, 0.9, 0.95,
        0.25, (0.0, 100.0, 300.0, 400.0), (100.0, 100.0, 400.0, 400.0), 60.0,
    )  # fmt: skip
    learner = OverlapLearner.from_dict({"version": 1, "overlaps": [overlap.to_dict()]})
    calibration = ScoreCalibration(model=model)
    calibration.add_positive(np.full(50, 0.9))
    calibration.add_negative(np.full(80, 0.6))
    return {"schema_version": 1, "overlaps": learner.to_dict(), "score_calibration": calibration.to_dict()}


def test_written_beside_the_store_and_read_back(tmp_path: Path) -> None:
    store_path = tmp_path / "site" / "gallery.sqlite"
    store_path.parent.mkdir()
    (tmp_path / "out").mkdir()
    write_topology(learned_topology(), tmp_path / "out", store_path)
    assert json.loads((tmp_path / "out" / "topology.json").read_text()) == read_topology(
        store_copy(store_path)
    )
    assert seed_topology(None, store_path)["overlaps"]["overlaps"][0]["camera_b"] == "b"
    assert seed_topology(None, tmp_path / "other.sqlite") is None  # a store no run has learned with


def test_a_later_matcher_starts_from_what_was_learned() -> None:
    topology = learned_topology()
    matcher = Matcher(EmbeddingStore(None, dim=8), 1, learned=topology, model="onnx:osnet.onnx")
    model = matcher.geometry.model("b", "a")
    assert model is not None and np.allclose(model.project(np.array([[150.0, 200.0]])), [[50.0, 200.0]])
    assert (matcher.calibration.positives, matcher.calibration.negatives) == (50, 80)
    assert matcher.calibration.weight > 0  # it decides from the learned labels at once
    assert matcher.topology()["overlaps"] == topology["overlaps"]


def test_a_calibration_of_another_model_is_learned_anew() -> None:
    matcher = Matcher(EmbeddingStore(None, dim=8), 1, learned=learned_topology("onnx:other.onnx"), model="m")
    assert matcher.geometry.model("a", "b") is not None  # geometry belongs to the site, not the model
    assert (matcher.calibration.positives, matcher.calibration.negatives) == (0, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("not json {", "not a readable topology.json"),
        ('{"schema_version": 7}', "schema_version 1, got 7"),
        (
            '{"schema_version": 1, "overlaps": {"version": 1, "overlaps": [{"version": 1, "camera_a": "a"}]}}',
            "missing fields",
        ),
    ],
)
def test_a_bad_file_is_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "topology.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PipelineError, match=message) as error:
        read_topology(path)
    assert "\n" not in str(error.value)


def test_a_damaged_copy_beside_the_store_is_skipped(tmp_path: Path) -> None:
    store_path = tmp_path / "gallery.sqlite"
    store_copy(store_path).write_text("{")
    assert seed_topology(None, store_path) is None
    with pytest.raises(PipelineError):
        seed_topology(str(store_copy(store_path)), store_path)  # asked for by name: an error


def test_a_figure_per_camera_pair_shows_the_mapping_zones_and_transit_times(tmp_path: Path) -> None:
    import cv2

    from pipeline.sinks.topology_figures import PANEL_HEIGHT, camera_frames, write_topology_figures
    from pipeline.transit import Path as TransitPath
    from pipeline.transit import TransitModel, Zone

    topology = learned_topology()
    zones = [Zone("b", "exit", (380.0, 250.0), 40.0, 6), Zone("c", "entry", (20.0, 250.0), 40.0, 6)]
    topology["transit"] = TransitModel(zones, [TransitPath("b", 0, "c", 1, (3.0, 3.5, 4.0, 4.5))]).to_dict()
    frames = camera_frames({"a": None, "b": None, "c": tmp_path / "missing.avi"}, fallback=(480, 400))
    written = write_topology_figures(topology, frames, tmp_path / "topology")
    assert [p.name for p in written] == ["a__b.png", "b__c.png"]
    overlap, transit = (cv2.imread(str(p)) for p in written)
    assert overlap.shape[0] == PANEL_HEIGHT and overlap.shape[1] == 2 * 400 * PANEL_HEIGHT // 480
    orange = np.all(overlap == (230, 160, 30), axis=2)  # the mapped grid's dots and lines
    assert orange[:, : overlap.shape[1] // 2].any() and orange[:, overlap.shape[1] // 2 :].any()
    assert transit.shape[0] > PANEL_HEIGHT  # the transit-time histogram below the two frames
    assert np.all(transit[:PANEL_HEIGHT] == (40, 40, 230), axis=2).any()  # the exit zone, in red
