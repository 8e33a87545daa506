"""Turn MOTChallenge-style annotated videos into a Market-1501-layout re-ID dataset.

A sequence is a folder with a video file (or MOTChallenge's ``img1/000001.jpg`` frames) and ``gt/gt.txt``
(``frame,id,x,y,w,h,...``, frames 1-based). Each sequence is cut into cameras: regions of the frame
(``views``) or consecutive frame ranges (``time``), or explicit `CameraView`s. A box belongs to every
camera whose frame range holds its frame and whose region holds its centre; its crop is clipped to that
region. Identities seen in at least two cameras are candidates for the held-apart test split (single-camera
identities cannot be queried, so they train). For each test identity and camera, `queries_per_camera`
random images form the query set and the rest the gallery. Files are named like Market-1501
(``0007_c3s1_000125_00.jpg``), so `load_dataset("market1501", out_dir)` reads the result back; cameras are
numbered across all sequences and pids start at 1. ``dataset.json`` records the sources and settings.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import PipelineError
from pipeline.motchallenge import MOT_CLASS_IDS, has_mot_classes, read_mot_txt

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".webm")
_CAMERA_SPEC = re.compile(r"^(?:(\d+),(\d+),(\d+),(\d+))?(?:@(\d+)-(\d+))?$")


@dataclass(frozen=True)
class CameraView:
    """One synthetic camera: a frame region (x1, y1, x2, y2 pixels) and/or a 1-based inclusive frame range."""

    region: tuple[int, int, int, int] | None = None
    frames: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.region is not None and not (
            self.region[0] < self.region[2] and self.region[1] < self.region[3]
        ):
            raise ValueError(f"camera region must be x1,y1,x2,y2 with x1<x2 and y1<y2, got {self.region}")
        if self.frames is not None and not (1 <= self.frames[0] <= self.frames[1]):
            raise ValueError(f"camera frames must be start-end with 1 <= start <= end, got {self.frames}")


@dataclass(frozen=True)
class MotSequence:
    """An annotated video: its frames (video file or image pattern), ground truth and size."""

    name: str
    video: Path
    gt: Path
    width: int
    height: int
    num_frames: int


def parse_camera_spec(spec: str) -> CameraView:
    """Parse ``x1,y1,x2,y2``, ``@start-end`` or ``x1,y1,x2,y2@start-end`` into a CameraView."""
    match = _CAMERA_SPEC.match(spec.replace(" ", ""))
    if match is None or not spec.strip():
        raise PipelineError(
            f"camera spec {spec!r}: expected x1,y1,x2,y2 and/or @start-end (e.g. 0,0,400,576@1-400)"
        )
    g = match.groups()
    region = tuple(int(v) for v in g[:4]) if g[0] is not None else None
    frames = (int(g[4]), int(g[5])) if g[4] is not None else None
    try:
        return CameraView(region=region, frames=frames)  # type: ignore[arg-type]
    except ValueError as exc:
        raise PipelineError(f"camera spec {spec!r}: {exc}") from None


def open_sequence(folder: str | Path) -> MotSequence:
    """Find the video (or img1/ frames) and gt/gt.txt of a MOTChallenge-style sequence folder."""
    folder = Path(folder)
    gt = folder / "gt" / "gt.txt"
    expected = "a video file (or img1/000001.jpg ...) and gt/gt.txt"
    if not folder.is_dir():
        raise PipelineError(f"sequence folder {folder} does not exist; expected {expected}")
    if not gt.is_file():
        raise PipelineError(f"sequence folder {folder} has no gt/gt.txt; expected {expected}")
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if len(videos) > 1:
        raise PipelineError(
            f"sequence folder {folder} holds several videos ({', '.join(p.name for p in videos)})"
        )
    if videos:
        video = videos[0]
    elif (folder / "img1").is_dir():
        video = folder / "img1" / "%06d.jpg"
    else:
        raise PipelineError(
            f"sequence folder {folder} has no video file or img1/ folder; expected {expected}"
        )
    capture = cv2.VideoCapture(str(video))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    num_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    if width <= 0 or height <= 0:
        raise PipelineError(f"cannot decode video {video}")
    return MotSequence(folder.name, video, gt, width, height, num_frames)


def split_views(sequence: MotSequence, num_cameras: int) -> tuple[CameraView, ...]:
    """Side-by-side vertical strips of the frame, one camera each."""
    edges = np.linspace(0, sequence.width, num_cameras + 1).round().astype(int)
    return tuple(
        CameraView(region=(int(a), 0, int(b), sequence.height)) for a, b in itertools.pairwise(edges)
    )


def split_time(sequence: MotSequence, num_cameras: int) -> tuple[CameraView, ...]:
    """Consecutive, equal frame ranges, one camera each."""
    edges = np.linspace(0, sequence.num_frames, num_cameras + 1).round().astype(int)
    return tuple(CameraView(frames=(int(a) + 1, int(b))) for a, b in itertools.pairwise(edges))


def read_mot_gt(path: Path) -> np.ndarray:
    """Rows (frame, id, x, y, w, h, visibility) of the person boxes to keep, float64 (N, 7).

    MOT16+ files (class in column 8, visibility in column 9) keep pedestrians (class 1) not flagged 0;
    MOT15-style files (world coordinates there instead) keep every box, with visibility 1.
    """
    table = read_mot_txt(path)
    if len(table) == 0:
        return np.zeros((0, 7))
    visibility = np.ones(len(table))
    keep = np.ones(len(table), dtype=bool)
    if table.shape[1] >= 9 and has_mot_classes(table):
        keep = (table[:, 6] != 0) & (table[:, 7] == MOT_CLASS_IDS["pedestrian"])
        visibility = table[:, 8]
    return np.column_stack([table[:, :6], visibility])[keep]


def _clip_box(box: np.ndarray, region: tuple[int, int, int, int]) -> tuple[tuple[int, int, int, int], float]:
    """The box (x, y, w, h) clipped to `region`, as integer x1,y1,x2,y2, and the kept fraction of its area."""
    x, y, w, h = box
    x1, y1 = max(x, region[0]), max(y, region[1])
    x2, y2 = min(x + w, region[2]), min(y + h, region[3])
    kept = max(0.0, x2 - x1) * max(0.0, y2 - y1) / max(w * h, 1e-9)
    return (round(x1), round(y1), round(x2), round(y2)), kept


def _plan_crops(
    sequences: list[MotSequence],
    cameras: list[tuple[CameraView, ...]],
    *,
    frame_step: int,
    min_height: int,
    min_visibility: float,
) -> list[dict]:
    """Every crop to write: sequence, frame, global pid, global camera, clipped box."""
    crops, pid_of, cam_base = [], {}, 0
    for seq_index, (sequence, views) in enumerate(zip(sequences, cameras, strict=True)):
        rows = read_mot_gt(sequence.gt)
        full = (0, 0, sequence.width, sequence.height)
        for frame, track, x, y, w, h, vis in rows:
            if (int(frame) - 1) % frame_step:
                continue
            for cam_index, view in enumerate(views):
                if view.frames is not None and not view.frames[0] <= frame <= view.frames[1]:
                    continue
                region = view.region or full
                cx, cy = x + w / 2, y + h / 2
                if not (region[0] <= cx < region[2] and region[1] <= cy < region[3]):
                    continue
                region = (
                    max(region[0], 0),
                    max(region[1], 0),
                    min(region[2], full[2]),
                    min(region[3], full[3]),
                )
                box, kept = _clip_box(np.array([x, y, w, h]), region)
                if box[3] - box[1] < min_height or box[2] - box[0] < 2 or vis * kept < min_visibility:
                    continue
                pid = pid_of.setdefault((seq_index, int(track)), len(pid_of) + 1)
                crops.append(
                    dict(seq=seq_index, frame=int(frame), pid=pid, cam=cam_base + cam_index + 1, box=box)
                )
        cam_base += len(views)
    return crops


def _split_ids(crops: list[dict], *, test_fraction: float, queries_per_camera: int, seed: int) -> None:
    """Mark each crop's split (train / query / gallery) in place."""
    rng = np.random.default_rng(seed)
    cams_of: dict[int, set[int]] = defaultdict(set)
    for crop in crops:
        cams_of[crop["pid"]].add(crop["cam"])
    candidates = sorted(pid for pid, cams in cams_of.items() if len(cams) >= 2)
    num_test = min(len(candidates), round(test_fraction * len(cams_of)))
    if test_fraction > 0 and num_test == 0:
        raise PipelineError(
            "no identity appears in two cameras after filtering; use other cameras, a smaller "
            "min height / visibility or a smaller frame step"
        )
    test_ids = set(rng.choice(candidates, size=num_test, replace=False).tolist()) if num_test else set()
    by_pid_cam: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for crop in crops:
        crop["split"] = "train" if crop["pid"] not in test_ids else "gallery"
        if crop["pid"] in test_ids:
            by_pid_cam[(crop["pid"], crop["cam"])].append(crop)
    for key in sorted(by_pid_cam):
        group = by_pid_cam[key]
        for i in rng.choice(len(group), size=min(queries_per_camera, len(group) - 1), replace=False):
            group[int(i)]["split"] = "query"


def _write_crops(
    sequences: list[MotSequence], crops: list[dict], out_dir: Path, size: tuple[int, int] | None
) -> None:
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for folder in folders.values():
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    by_seq_frame: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for crop in crops:
        by_seq_frame[(crop["seq"], crop["frame"])].append(crop)
    for seq_index, sequence in enumerate(sequences):
        capture, frame_no = cv2.VideoCapture(str(sequence.video)), 0
        wanted = sorted(f for s, f in by_seq_frame if s == seq_index)
        for target in wanted:
            image = None
            while frame_no < target:
                if not capture.grab():
                    break
                frame_no += 1
            if frame_no == target:
                ok, image = capture.retrieve()
                image = image if ok else None
            if image is None:
                logger.warning(
                    "%s: video ends before frame %d named in %s", sequence.video, target, sequence.gt
                )
                break
            for k, crop in enumerate(by_seq_frame[(seq_index, target)]):
                x1, y1, x2, y2 = crop["box"]
                patch = image[y1:y2, x1:x2]
                if size is not None:
                    patch = cv2.resize(patch, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                name = f"{crop['pid']:04d}_c{crop['cam']}s{seq_index + 1}_{target:06d}_{k:02d}.jpg"
                cv2.imwrite(str(out_dir / folders[crop["split"]] / name), patch)
        capture.release()


def convert_mot_to_market(
    sequences: list[MotSequence],
    out_dir: str | Path,
    *,
    cameras: list[tuple[CameraView, ...]],
    frame_step: int = 5,
    min_height: int = 32,
    min_visibility: float = 0.5,
    test_fraction: float = 0.33,
    queries_per_camera: int = 1,
    image_size: tuple[int, int] | None = None,
    seed: int = 0,
) -> dict:
    """Write the Market-1501-layout dataset to `out_dir` (which must be empty or new); returns its summary."""
    out_dir = Path(out_dir)
    if len(cameras) != len(sequences):
        raise ValueError(f"need one camera tuple per sequence, got {len(cameras)} for {len(sequences)}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PipelineError(f"output folder {out_dir} is not empty; choose a new folder")
    if frame_step < 1 or queries_per_camera < 1 or not 0 <= test_fraction < 1:
        raise PipelineError("need frame_step >= 1, queries_per_camera >= 1 and 0 <= test_fraction < 1")
    crops = _plan_crops(
        sequences, cameras, frame_step=frame_step, min_height=min_height, min_visibility=min_visibility
    )
    if not crops:
        raise PipelineError(
            f"no box of {', '.join(str(s.gt) for s in sequences)} passes the filters "
            f"(min height {min_height}, min visibility {min_visibility})"
        )
    _split_ids(crops, test_fraction=test_fraction, queries_per_camera=queries_per_camera, seed=seed)
    _write_crops(sequences, crops, out_dir, image_size)
    summary = {
        "format": "market1501",
        "sequences": [
            {"name": s.name, "video": str(s.video), "gt": str(s.gt), "cameras": [asdict(v) for v in views]}
            for s, views in zip(sequences, cameras, strict=True)
        ],
        "settings": {
            "frame_step": frame_step,
            "min_height": min_height,
            "min_visibility": min_visibility,
            "test_fraction": test_fraction,
            "queries_per_camera": queries_per_camera,
            "image_size": image_size,
            "seed": seed,
        },
        "counts": {split: sum(c["split"] == split for c in crops) for split in ("train", "query", "gallery")},
        "train_ids": sorted({c["pid"] for c in crops if c["split"] == "train"}),
        "test_ids": sorted({c["pid"] for c in crops if c["split"] != "train"}),
    }
    (out_dir / "dataset.json").write_text(json.dumps(summary, indent=2))
    logger.info("wrote %s: %s", out_dir, summary["counts"])
    return summary
