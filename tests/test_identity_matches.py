"""identity_matches: the cross-camera IDF1 pairing of ground-truth and predicted ids, on hand-built cases."""

from __future__ import annotations

import numpy as np

from pipeline.evaluation import identity_matches


def _rows(items):
    """MOT rows (frame, id, x, y, w, h, conf, -1, -1, -1) from (frame, id, x) with 10x20 boxes."""
    return np.array([[f, i, x, 0, 10, 20, 1, -1, -1, -1] for f, i, x in items], float)


def test_each_gt_id_gets_the_predicted_id_sharing_most_boxes_across_cameras():
    gt = {
        "a": _rows([(f, 1, 0) for f in range(1, 6)] + [(f, 2, 50) for f in range(1, 6)]),
        "b": _rows([(f, 1, 0) for f in range(1, 4)]),
    }
    pred = {
        # gt 1 is predicted 10 in camera a (5 boxes) and 20 in camera b (3 boxes); gt 2 is 20 in a (5 boxes).
        "a": _rows([(f, 10, 1) for f in range(1, 6)] + [(f, 20, 51) for f in range(1, 6)]),
        "b": _rows([(f, 20, 1) for f in range(1, 4)]),
    }
    assert identity_matches(pred, gt, num_frames={"a": 5, "b": 3}) == {1: 10, 2: 20}


def test_the_matching_is_one_to_one_and_leaves_out_unmatched_people():
    gt = {"a": _rows([(f, 1, 0) for f in range(1, 5)] + [(f, 2, 100) for f in range(1, 3)] + [(1, 3, 300)])}
    # One predicted id covers gt 1 for 4 frames and gt 2 for 2 frames; another overlaps nothing.
    pred = {"a": _rows([(f, 7, 0) for f in range(1, 5)] + [(f, 7, 100) for f in range(5, 7)] + [(1, 8, 200)])}
    gt["a"] = np.concatenate([gt["a"], _rows([(f, 2, 100) for f in range(5, 7)])])
    assert identity_matches(pred, gt, num_frames={"a": 6}) == {1: 7}
