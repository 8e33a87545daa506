"""Tracking evaluation (HOTA, CLEAR MOT, identity metrics) per camera and across cameras, via trackeval."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import linear_sum_assignment

from pipeline.errors import PipelineError
from pipeline.ids import id_problem
from pipeline.motchallenge import MOT_CLASS_IDS, has_mot_classes, read_mot_txt

logger = logging.getLogger(__name__)

CROSS_CAMERA = "cross_camera"
COMBINED = "combined"
# MOT16/17 distractors: predictions matched to these are removed rather than counted as false positives.
_DISTRACTOR_CLASSES = [
    MOT_CLASS_IDS[c] for c in ("person_on_vehicle", "static_person", "distractor", "reflection")
]
_PEDESTRIAN = MOT_CLASS_IDS["pedestrian"]
_EPS = np.finfo("float").eps
SUMMARY_FIELDS = ("HOTA", "DetA", "AssA", "MOTA", "MOTP", "IDF1", "IDP", "IDR", "IDSW", "FP", "FN", "Frag")

MotInput = Path | str | np.ndarray


def evaluate(
    pred: Mapping[str, MotInput],
    gt: Mapping[str, MotInput],
    *,
    num_frames: Mapping[str, int] | None = None,
) -> dict[str, dict[str, float]]:
    """HOTA, DetA, AssA, MOTA, MOTP, IDF1, IDP, IDR, IDSW, FP, FN... per camera, combined and cross-camera.

    `pred` and `gt` map camera id -> MOT file or array (N, >=6) `frame,id,x,y,w,h[,conf,class,vis]`, frames
    from 1. Returned keys: each camera id; `combined` (per-camera results summed, ids free to differ between
    cameras); `cross_camera` (cameras laid end to end in time as one sequence, so a person must keep one id in
    every camera). `num_frames` gives each camera's length (default: its last gt or predicted frame);
    predicted boxes past it are dropped with a warning. A gt camera without predictions counts as all misses.
    """
    if not gt:
        raise PipelineError("no ground-truth cameras to evaluate")
    unknown = sorted(set(pred) - set(gt))
    if unknown and len(unknown) == len(pred):
        raise PipelineError(
            f"none of the predicted cameras {sorted(pred)} is in the ground truth {sorted(gt)}: "
            "camera ids must match"
        )
    if unknown:
        logger.warning("cameras without ground truth are not evaluated: %s", ", ".join(unknown))
    gt_arrays = {cam: _as_array(data, f"gt for camera {cam!r}") for cam, data in gt.items()}
    pred_arrays = {
        cam: _as_array(pred[cam], f"predictions for camera {cam!r}") if cam in pred else np.empty((0, 10))
        for cam in gt
    }
    for cam in gt:
        if cam not in pred:
            logger.warning("camera %s has no predictions: every gt box counts as missed", cam)

    sequences = {}
    for cam in gt:
        length = _length(cam, gt_arrays[cam], pred_arrays[cam], num_frames)
        pred_arrays[cam] = _clip_frames(cam, pred_arrays[cam], length)
        sequences[cam] = (gt_arrays[cam], pred_arrays[cam], length)

    metrics = _metrics()
    raw: dict[str, dict[str, dict]] = {}
    for cam, (gt_rows, pred_rows, length) in sequences.items():
        raw[cam] = _eval_sequence(metrics, _prepare(cam, gt_rows, pred_rows, length))
    combined = {
        name: metric.combine_sequences({c: r[name] for c, r in raw.items()})
        for name, metric in metrics.items()
    }
    cross = _eval_sequence(metrics, _prepare(CROSS_CAMERA, *_concatenate(sequences)))

    results = {cam: _summarise(res) for cam, res in raw.items()}
    results[COMBINED] = _summarise(combined)
    results[CROSS_CAMERA] = _summarise(cross)
    return results


def evaluate_run(out_dir: str | Path, gt_manifest: str | Path) -> dict[str, dict[str, float]]:
    """Evaluate `out_dir/mot/<camera>.txt` against the cameras of a multicam.yaml manifest."""
    gt, lengths = load_gt_manifest(gt_manifest)
    return evaluate(run_predictions(out_dir), gt, num_frames=lengths)


def run_predictions(out_dir: str | Path) -> dict[str, Path]:
    """Camera id -> the MOT box file a run wrote for it (`out_dir/mot/<camera>.txt`)."""
    out_dir = Path(out_dir)
    mot_dir = out_dir / "mot"
    if not mot_dir.is_dir():
        raise PipelineError(f"{mot_dir} does not exist: is {out_dir} the output folder of a run?")
    pred = {p.stem: p for p in sorted(mot_dir.glob("*.txt"))}
    if not pred:
        raise PipelineError(f"{mot_dir} holds no <camera>.txt files")
    return pred


def perfect_links(pred: Mapping[str, MotInput], gt: Mapping[str, MotInput]) -> dict[str, np.ndarray]:
    """`pred` as a perfect linker would label the same tracks: each predicted id of a camera (a track)
    takes the ground-truth id of the person it covers in most frames (IoU >= 0.5, one box per person a
    frame), ids shared across cameras as the ground truth shares them.

    Evaluated, this is what linking those tracks can reach: what is lost under it, the tracker lost (a
    linker that also drops a second box on one person may pass it). A track that covers no person, or
    whose person a track covering more of that person holds in one of its frames, keeps an id of its
    own (one box per id a frame).
    """
    gt_arrays = {cam: _as_array(data, f"gt for camera {cam!r}") for cam, data in gt.items()}
    fresh = int(max((a[:, 1].max() for a in gt_arrays.values() if len(a)), default=0)) + 1
    out = {}
    for cam, data in pred.items():
        rows = _as_array(data, f"predictions for camera {cam!r}").copy()
        truth = _with_classes(gt_arrays.get(cam, np.empty((0, 6))))
        truth = truth[(truth[:, 6] != 0) & (truth[:, 7] == _PEDESTRIAN)]  # the people `evaluate` counts
        votes: dict[int, dict[int, int]] = {}  # predicted id -> gt id -> frames
        frames: dict[int, set[int]] = {}
        for frame in np.unique(rows[:, 0]).astype(int):
            mine, theirs = rows[rows[:, 0] == frame], truth[truth[:, 0] == frame]
            for track in mine[:, 1].astype(int):
                frames.setdefault(track, set()).add(frame)
            if not len(theirs):
                continue
            ious = _box_ious(mine[:, 2:6], theirs[:, 2:6])
            for i, j in zip(*linear_sum_assignment(-ious), strict=True):
                if ious[i, j] >= 0.5 - _EPS:
                    count = votes.setdefault(int(mine[i, 1]), {})
                    count[int(theirs[j, 1])] = count.get(int(theirs[j, 1]), 0) + 1
        label, taken = {}, {}  # taken: gt id -> the frames its tracks already hold
        for track in sorted(frames, key=lambda t: -max(votes.get(t, {0: 0}).values())):
            person = max(votes[track], key=votes[track].get) if track in votes else None
            if person is not None and not taken.get(person, set()) & frames[track]:
                label[track] = person
                taken.setdefault(person, set()).update(frames[track])
            else:
                label[track], fresh = fresh, fresh + 1
        rows[:, 1] = [label[int(t)] for t in rows[:, 1]]
        out[cam] = rows
    return out


def identity_matches(
    pred: Mapping[str, MotInput],
    gt: Mapping[str, MotInput],
    *,
    num_frames: Mapping[str, int] | None = None,
) -> dict[int, int]:
    """Ground-truth id -> predicted id, as the cross-camera IDF1 pairs them (cameras laid end to end).

    IDF1 matches each ground-truth identity to at most one predicted identity so that the boxes they share
    (IoU >= 0.5, frame by frame) are as many as possible; ground-truth ids matched to nothing are left out.
    """
    gt_arrays = {cam: _as_array(data, f"gt for camera {cam!r}") for cam, data in gt.items()}
    sequences = {}
    for cam, gt_rows in gt_arrays.items():
        pred_rows = (
            _as_array(pred[cam], f"predictions for camera {cam!r}") if cam in pred else np.empty((0, 10))
        )
        length = _length(cam, gt_rows, pred_rows, num_frames)
        sequences[cam] = (gt_rows, _clip_frames(cam, pred_rows, length), length)
    data = _prepare(CROSS_CAMERA, *_concatenate(sequences))
    shared = np.zeros((data["num_gt_ids"], data["num_tracker_ids"]))
    for gt_ids, tracker_ids, sim in zip(data["gt_ids"], data["tracker_ids"], data["similarity_scores"]):
        hits = sim >= 0.5 - _EPS
        np.add.at(
            shared,
            (
                gt_ids[:, None].repeat(len(tracker_ids), 1)[hits],
                np.broadcast_to(tracker_ids, sim.shape)[hits],
            ),
            1,
        )
    rows, cols = linear_sum_assignment(-shared)
    return {
        int(data["gt_id_values"][r]): int(data["tracker_id_values"][c])
        for r, c in zip(rows, cols)
        if shared[r, c] > 0
    }


def load_gt_manifest(path: str | Path) -> tuple[dict[str, Path], dict[str, int]]:
    """Camera id -> gt file and camera id -> frame count from a multicam.yaml (paths relative to it)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"ground-truth manifest {path} does not exist: check the path")
    expected = "expected a multicam.yaml with a 'cameras' list of {id, gt, frames} entries"
    try:
        manifest = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise PipelineError(f"ground-truth manifest {path} is not a text file; {expected}") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PipelineError(f"{path}: not valid YAML ({first}); {expected}") from None
    cameras = manifest.get("cameras") if isinstance(manifest, dict) else None
    if not isinstance(cameras, list) or not cameras:
        raise PipelineError(f"{path}: {expected}")
    gt: dict[str, Path] = {}
    lengths: dict[str, int] = {}
    for i, cam in enumerate(cameras):
        if not isinstance(cam, dict) or "id" not in cam or "gt" not in cam:
            raise PipelineError(f"{path}: cameras[{i}] needs 'id' and 'gt'")
        camera_id = cam["id"]
        if id_problem(camera_id):
            raise PipelineError(f"{path}: cameras[{i}].id: {id_problem(camera_id)}")
        if camera_id in gt:
            raise PipelineError(f"{path}: cameras[{i}].id: duplicate camera id {camera_id!r}")
        if not isinstance(cam["gt"], str) or not cam["gt"]:
            raise PipelineError(
                f"{path}: cameras[{i}].gt: expected the path of a gt.txt, got {type(cam['gt']).__name__}"
            )
        gt[camera_id] = path.parent / cam["gt"]
        if "frames" in cam:
            frames = cam["frames"]
            if not isinstance(frames, int) or isinstance(frames, bool) or frames < 0:
                raise PipelineError(
                    f"{path}: cameras[{i}].frames: expected a frame count (an integer >= 0), got {frames!r}"
                )
            lengths[camera_id] = frames
    return gt, lengths


def format_table(results: Mapping[str, Mapping[str, float]], fields: tuple[str, ...] = SUMMARY_FIELDS) -> str:
    """A plain-text table: one row per camera, then combined and cross-camera; rates in percent."""
    names = [k for k in results if k not in (COMBINED, CROSS_CAMERA)]
    names += [k for k in (COMBINED, CROSS_CAMERA) if k in results]
    width = max(len(n) for n in [*names, "camera"])
    lines = ["camera".ljust(width) + "".join(f"{f:>8}" for f in fields)]
    for name in names:
        cells = []
        for field in fields:
            value = results[name].get(field, float("nan"))
            cells.append(f"{value:>8d}" if isinstance(value, int) else f"{100 * value:>8.2f}")
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)


def _metrics() -> dict:
    """The trackeval metric objects, quiet and with their default thresholds (0.5 IoU for CLEAR and ID)."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    return {
        "HOTA": HOTA({"PRINT_CONFIG": False}),
        "CLEAR": CLEAR({"PRINT_CONFIG": False}),
        "Identity": Identity({"PRINT_CONFIG": False}),
    }


def _eval_sequence(metrics: dict, data: dict) -> dict[str, dict]:
    """Run every metric on one prepared sequence."""
    return {name: metric.eval_sequence(data) for name, metric in metrics.items()}


def _summarise(res: Mapping[str, Mapping]) -> dict[str, float]:
    """Flatten trackeval's results: HOTA fields averaged over its IoU thresholds, counts as ints."""
    hota, clear, ident = res["HOTA"], res["CLEAR"], res["Identity"]
    out = {k: float(np.mean(hota[k])) for k in ("HOTA", "DetA", "AssA", "LocA")}
    out.update({k: float(clear[k]) for k in ("MOTA", "MOTP", "MODA")})
    out.update({k: float(ident[k]) for k in ("IDF1", "IDP", "IDR")})
    counts = {
        "IDSW": "IDSW",
        "FP": "CLR_FP",
        "FN": "CLR_FN",
        "TP": "CLR_TP",
        "Frag": "Frag",
        "MT": "MT",
        "ML": "ML",
    }
    out.update({k: int(clear[v]) for k, v in counts.items()})
    out.update({k: int(ident[k]) for k in ("IDTP", "IDFP", "IDFN")})
    return out


def _as_array(data: MotInput, what: str) -> np.ndarray:
    """A MOT array (N, >=6) from a path or an array."""
    if isinstance(data, (str, Path)):
        try:
            return read_mot_txt(data)
        except UnicodeDecodeError:
            raise PipelineError(f"{what}: {data} is not a text file; expected a MOT box file") from None
    rows = np.asarray(data, dtype=np.float64)
    if rows.size == 0:
        return np.empty((0, 10))
    if rows.ndim != 2 or rows.shape[1] < 6:
        raise PipelineError(
            f"{what}: expected an array (N, >=6) frame,id,x,y,w,h,..., got shape {rows.shape}"
        )
    return rows


def _length(cam: str, gt: np.ndarray, pred: np.ndarray, num_frames: Mapping[str, int] | None) -> int:
    """Frames in a camera's sequence: given, else the last gt or predicted frame."""
    if num_frames and cam in num_frames:
        return int(num_frames[cam])
    last = [int(a[:, 0].max()) for a in (gt, pred) if len(a)]
    return max(last, default=0)


def _clip_frames(cam: str, pred: np.ndarray, length: int) -> np.ndarray:
    """Drop predicted boxes outside frames 1..length (gt covers only those)."""
    frames = pred[:, 0].astype(int)
    inside = (frames >= 1) & (frames <= length)
    if not inside.all():
        logger.warning(
            "camera %s: %d predicted boxes lie outside frames 1-%d and are ignored",
            cam,
            int((~inside).sum()),
            length,
        )
    return pred[inside]


def _concatenate(
    sequences: Mapping[str, tuple[np.ndarray, np.ndarray, int]],
) -> tuple[np.ndarray, np.ndarray, int]:
    """Lay the cameras end to end in time: frames shifted by the lengths of the cameras before, ids kept."""
    gts, preds, offset = [], [], 0
    for gt, pred, length in sequences.values():
        for rows, out in ((_with_classes(gt), gts), (pred[:, :6].copy(), preds)):
            rows[:, 0] += offset
            out.append(rows)
        offset += length
    return np.concatenate(gts), np.concatenate(preds), offset


def _with_classes(gt: np.ndarray) -> np.ndarray:
    """GT as (N, 9) with MOT16+ classes; MOT15-style rows (no classes) become pedestrians of visibility 1."""
    out = np.ones((len(gt), 9))
    out[:, :6] = gt[:, :6]
    out[:, 6] = gt[:, 6] if gt.shape[1] > 6 else 1.0
    if has_mot_classes(gt):
        out[:, 7] = gt[:, 7]
        out[:, 8] = gt[:, 8] if gt.shape[1] > 8 else 1.0
    return out


def _box_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xywh boxes, zero where an area or the union is empty (as trackeval)."""
    a0, a1 = a[:, None, :2], a[:, None, :2] + a[:, None, 2:4]
    b0, b1 = b[None, :, :2], b[None, :, :2] + b[None, :, 2:4]
    wh = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)  # (A, B, 2)
    inter = wh[..., 0] * wh[..., 1]
    area_a, area_b = a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]
    union = area_a[:, None] + area_b[None, :] - inter
    inter[(area_a <= _EPS)[:, None] | (area_b <= _EPS)[None, :] | (union <= _EPS)] = 0
    return inter / np.where(union <= _EPS, 1.0, union)


def _prepare(seq: str, gt: np.ndarray, pred: np.ndarray, length: int) -> dict:
    """Per-frame data for trackeval's metrics, preprocessed as its MOTChallenge2DBox dataset does.

    Predictions matched (IoU >= 0.5, Hungarian) to distractor-class gt boxes are removed; only pedestrian gt
    boxes with a non-zero confidence flag are kept. For MOT15-style gt (no classes) only the flag applies.
    Ids are relabelled to 0..n-1.
    """
    with_classes = has_mot_classes(gt)
    gt_frames = gt[:, 0].astype(int)
    pred_frames = pred[:, 0].astype(int)
    gt_order, pred_order = np.argsort(gt_frames, kind="stable"), np.argsort(pred_frames, kind="stable")
    gt, gt_frames, pred, pred_frames = (
        gt[gt_order],
        gt_frames[gt_order],
        pred[pred_order],
        pred_frames[pred_order],
    )
    gt_bounds = np.searchsorted(gt_frames, np.arange(1, length + 2))
    pred_bounds = np.searchsorted(pred_frames, np.arange(1, length + 2))

    data: dict = {k: [] for k in ("gt_ids", "tracker_ids", "gt_dets", "tracker_dets", "similarity_scores")}
    for t in range(length):
        g = gt[gt_bounds[t] : gt_bounds[t + 1]]
        p = pred[pred_bounds[t] : pred_bounds[t + 1]]
        _check_unique(seq, t + 1, g[:, 1], "gt")
        _check_unique(seq, t + 1, p[:, 1], "predicted")
        sim = _box_ious(g[:, 2:6], p[:, 2:6])
        if with_classes and len(g) and len(p):
            scores = np.where(sim < 0.5 - _EPS, 0.0, sim)
            rows, cols = linear_sum_assignment(-scores)
            matched = scores[rows, cols] > _EPS
            rows, cols = rows[matched], cols[matched]
            drop = cols[np.isin(g[rows, 7].astype(int), _DISTRACTOR_CLASSES)]
            p, sim = np.delete(p, drop, axis=0), np.delete(sim, drop, axis=1)
        keep = g[:, 6].astype(int) != 0
        if with_classes:
            keep &= g[:, 7].astype(int) == _PEDESTRIAN
        g, sim = g[keep], sim[keep]
        data["gt_ids"].append(g[:, 1].astype(int))
        data["tracker_ids"].append(p[:, 1].astype(int))
        data["gt_dets"].append(g[:, 2:6])
        data["tracker_dets"].append(p[:, 2:6])
        data["similarity_scores"].append(sim)

    for key, count_key in (("gt_ids", "gt"), ("tracker_ids", "tracker")):
        ids = np.concatenate(data[key]) if data[key] else np.empty(0, int)
        unique = np.unique(ids)
        data[f"num_{count_key}_dets"] = len(ids)
        data[f"num_{count_key}_ids"] = len(unique)
        data[f"{count_key}_id_values"] = unique  # the original id of each relabelled one
        data[key] = [np.searchsorted(unique, frame_ids) for frame_ids in data[key]]
    data["num_timesteps"] = length
    data["seq"] = seq
    return data


def _check_unique(seq: str, frame: int, ids: np.ndarray, what: str) -> None:
    """trackeval requires one box per id per frame."""
    if len(np.unique(ids)) != len(ids):
        values, counts = np.unique(ids, return_counts=True)
        twice = values[counts > 1].astype(int).tolist()
        raise PipelineError(
            f"camera {seq}, frame {frame}: {what} id(s) {twice} appear more than once; "
            "each id may have one box per frame"
        )
