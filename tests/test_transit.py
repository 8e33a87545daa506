"""Entry/exit zones and transit times, learned from PETS09-S2L1 cut into two disjoint views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.transit import Path as TransitPath
from pipeline.transit import Sighting, TransitModel, Zone, learn_transit

FPS = 7.0


def gap_split(assets: Path) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Ground truth of the `gap` split: camera -> MOT rows in its own image, and each camera's width."""
    import cv2

    from pipeline.motchallenge import read_mot_txt
    from pipeline.tools.virtual_cameras import crop_ground_truth, preset_cameras, resolve_camera

    root = assets / "data" / "PETS09-S2L1"
    capture = cv2.VideoCapture(str(root / "vtest.avi"))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    capture.release()
    gt = read_mot_txt(root / "gt" / "gt.txt")
    frames = int(gt[:, 0].max())
    cameras = [resolve_camera(s, width, height, frames) for s in preset_cameras("gap", frames)]
    return {c.id: crop_ground_truth(gt, c) for c in cameras}, {c.id: c.x1 - c.x0 for c in cameras}


def sightings_of(rows_by_camera: dict[str, np.ndarray], rng: np.random.Generator) -> list[Sighting]:
    """Each person's runs of boxes as tracklets, cut once more where a tracker would lose them behind
    an occluder for a second (so that not every tracklet end is an exit)."""
    out = []
    for camera, rows in rows_by_camera.items():
        for person in np.unique(rows[:, 1]).astype(int):
            mine = rows[rows[:, 1] == person]
            mine = mine[np.argsort(mine[:, 0])]
            for run in np.split(mine, np.flatnonzero(np.diff(mine[:, 0]) > 1) + 1):
                pieces = [run]
                if len(run) > 30:  # an occlusion: 7 frames (1 s) lost in the middle
                    cut = int(rng.integers(10, len(run) - 17))
                    pieces = [run[:cut], run[cut + 7 :]]
                for piece in pieces:
                    first, last = piece[0], piece[-1]
                    out.append(
                        Sighting(
                            camera,
                            person,
                            (first[0] - 1) / FPS,
                            (last[0] - 1) / FPS,
                            (first[2] + first[4] / 2, first[3] + first[5]),
                            (last[2] + last[4] / 2, last[3] + last[5]),
                            float(np.median(piece[:, 5])),
                        )
                    )
    return out


def true_transits(rows_by_camera: dict[str, np.ndarray], source: str, target: str) -> list[float]:
    """Seconds from a person's last box in `source` to their next first box in `target`, per crossing."""
    out = []
    a, b = rows_by_camera[source], rows_by_camera[target]
    for person in np.intersect1d(a[:, 1], b[:, 1]):
        fa, fb = np.sort(a[a[:, 1] == person, 0]), np.sort(b[b[:, 1] == person, 0])
        for end in fa[np.flatnonzero(np.diff(fa, append=np.inf) > FPS * 3)]:  # each visit's last frame
            later = fb[fb > end]
            if len(later) and end not in fb and (later[0] - end) / FPS < 30:
                out.append((later[0] - end) / FPS)
    return out


@pytest.fixture(scope="module")
def learned(assets: Path) -> tuple[TransitModel, dict[str, np.ndarray], dict[str, int]]:
    rows, widths = gap_split(assets)
    spans = {camera: (0.0, (int(r[:, 0].max()) - 1) / FPS) for camera, r in rows.items()}
    model = learn_transit(sightings_of(rows, np.random.default_rng(0)), spans, min_links=3)
    return model, rows, widths


@pytest.mark.parametrize(("source", "target"), [("left", "right"), ("right", "left")])
def test_zones_face_the_blind_strip_and_transit_times_match_the_ground_truth(learned, source, target) -> None:
    model, rows, widths = learned
    paths = [p for p in model.paths if (p.source, p.target) == (source, target)]
    main = max(paths, key=lambda p: len(p.transits))
    exit_zone, entry_zone = model.zones[main.exit_zone], model.zones[main.entry_zone]
    # People leave `source` by the edge that faces the strip and enter `target` by its facing edge.
    facing_exit = widths[source] if source == "left" else 0.0
    facing_entry = 0.0 if target == "right" else widths[target]
    assert abs(exit_zone.centre[0] - facing_exit) < 0.2 * widths[source]
    assert abs(entry_zone.centre[0] - facing_entry) < 0.2 * widths[target]
    truth = true_transits(rows, source, target)
    assert len(truth) >= 5 and len(main.transits) >= 0.6 * len(truth)
    assert abs(main.median_s - float(np.median(truth))) < 1.0  # seconds
    print(f"{source}->{target}: learned median {main.median_s:.2f} s over {len(main.transits)} links, "
          f"truth {np.median(truth):.2f} s over {len(truth)}")  # fmt: skip


def test_an_occlusion_is_not_an_exit(learned) -> None:
    model, _, widths = learned
    for zone in model.zones:  # every zone hugs a border of its view: none in the middle of the scene
        width = widths[zone.camera]
        assert (
            min(zone.centre[0], width - zone.centre[0]) < 0.25 * width
            or zone.centre[1] < 200
            or zone.centre[1] > 450
        ), zone


def test_a_hand_over_scores_by_the_learned_path(learned) -> None:
    model, _, widths = learned
    main = max((p for p in model.paths if p.source == "left"), key=lambda p: len(p.transits))
    exit_zone, entry_zone = model.zones[main.exit_zone], model.zones[main.entry_zone]
    leaving = Sighting("left", 1, 0.0, 10.0, exit_zone.centre, exit_zone.centre, 80.0)

    def entering(after_s: float, at: tuple[float, float] = entry_zone.centre) -> Sighting:
        return Sighting("right", 2, 10.0 + after_s, 20.0 + after_s, at, at, 80.0)

    assert model.llr(leaving, entering(main.median_s)) > 1.0
    assert model.llr(leaving, entering(main.median_s + 40)) < 0.0
    assert model.llr(leaving, entering(main.median_s, at=(widths["right"] - 5.0, 300.0))) < 0.0  # wrong entry
    assert model.llr(leaving, entering(-5.0)) == 0.0  # seen at once: not a hand-over
    again = TransitModel.from_dict(model.to_dict())
    assert again.llr(leaving, entering(main.median_s)) == pytest.approx(
        model.llr(leaving, entering(main.median_s))
    )


def test_chance_links_spread_over_time_say_little() -> None:
    zones = [Zone("a", "exit", (0.0, 0.0), 10.0, 5), Zone("b", "entry", (0.0, 0.0), 10.0, 5)]
    tight = TransitModel(zones, [TransitPath("a", 0, "b", 1, (4.0, 4.2, 4.5, 4.8, 5.1))])
    spread = TransitModel(zones, [TransitPath("a", 0, "b", 1, (3.0, 25.0, 60.0, 90.0, 110.0))])
    leaving = Sighting("a", 1, 0.0, 1.0, (0.0, 0.0), (0.0, 0.0), 50.0)
    entering = Sighting("b", 1, 5.5, 6.0, (0.0, 0.0), (0.0, 0.0), 50.0)
    assert tight.llr(leaving, entering) > 2.0
    assert abs(spread.llr(leaving, entering)) < 0.5


def test_a_hand_over_is_not_vouched_for_by_its_own_link() -> None:
    # Two links at 4 s, and one at 26 s that only the hand-over being scored made: it stands alone.
    zones = [Zone("a", "exit", (0.0, 0.0), 10.0, 5), Zone("b", "entry", (0.0, 0.0), 10.0, 5)]
    model = TransitModel(zones, [TransitPath("a", 0, "b", 1, (4.0, 4.0, 26.0))])
    leaving = Sighting("a", 1, 0.0, 1.0, (0.0, 0.0), (0.0, 0.0), 50.0)

    def entering(gap_s: float) -> Sighting:
        return Sighting("b", 1, 1.0 + gap_s, 9.0 + gap_s, (0.0, 0.0), (0.0, 0.0), 50.0)

    assert model.llr(leaving, entering(26.0)) < 0.0
    assert model.llr(leaving, entering(4.0)) > 1.0  # the other link at 4 s still vouches for it
    assert model.llr(leaving, entering(26.5)) > model.llr(leaving, entering(26.0))  # not its own link
